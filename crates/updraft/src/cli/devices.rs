//! `updraft devices`: register, list, show, tag and remove devices on a server.

use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Api, ServerArgs};
use super::output::{self, Columns};

/// `updraft devices ...`
#[derive(clap::Args, Debug)]
pub struct DevicesArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: DevicesCommand,
}

#[derive(clap::Subcommand, Debug)]
enum DevicesCommand {
    /// Register a device; prints its DDI token (shown only this once).
    Add {
        /// The controller id the device uses in its URLs.
        controller_id: String,
        /// Human name.
        #[arg(long)]
        name: Option<String>,
        /// Tags (repeat for several).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// List devices.
    List {
        /// Only devices with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only devices on this version.
        #[arg(long)]
        version: Option<String>,
        /// Only devices in this update state (idle, pending, downloading, succeeded, ...).
        #[arg(long)]
        state: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Cursor from the previous page's `next_after`.
        #[arg(long)]
        after: Option<i64>,
    },
    /// Show one device with its configuration data.
    Show {
        /// Controller id.
        controller_id: String,
    },
    /// Replace a device's tags.
    Tag {
        /// Controller id.
        controller_id: String,
        /// The new tags (none clears them).
        tags: Vec<String>,
    },
    /// Delete a device and its deployments.
    Rm {
        /// Controller id.
        controller_id: String,
    },
}

const DEVICE_COLUMNS: Columns<'static> = &[
    ("CONTROLLER ID", "controller_id"),
    ("NAME", "name"),
    ("TAGS", "tags"),
    ("VERSION", "current_version"),
    ("STATE", "update_state"),
    ("LAST SEEN", "last_seen"),
    ("CREATED", "created_at"),
];

const DEVICE_FIELDS: Columns<'static> = &[
    ("controller id", "controller_id"),
    ("name", "name"),
    ("tags", "tags"),
    ("version", "current_version"),
    ("update state", "update_state"),
    ("last seen", "last_seen"),
    ("created", "created_at"),
];

/// Print one device (with its configuration data when the answer has it).
fn print_device(device: &Value) {
    print!("{}", output::fields(device, DEVICE_FIELDS));
    if let Some(config) = device["config_data"].as_object() {
        if config.is_empty() {
            println!("config data:    -");
        } else {
            println!("config data:");
            print!("{}", output::map_table(config, "KEY", "VALUE"));
        }
    }
}

/// Run `updraft devices`.
pub fn run(args: DevicesArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.server)?;
    let json = args.server.json;
    match args.command {
        DevicesCommand::Add {
            controller_id,
            name,
            tags,
        } => {
            let mut body = json!({"controller_id": controller_id, "tags": tags});
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            let answer = api.send(api.request(Method::POST, "/devices").json(&body))?;
            if json {
                return output::print_json(answer);
            }
            println!("created device {controller_id}");
            print_device(&answer["device"]);
            println!(
                "DDI TargetToken (shown only now; the server keeps its hash): {}",
                output::cell(&answer["token"], "token")
            );
        }
        DevicesCommand::List {
            tag,
            version,
            state,
            limit,
            after,
        } => {
            let mut query: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            if let Some(t) = tag {
                query.push(("tag", t));
            }
            if let Some(v) = version {
                query.push(("current_version", v));
            }
            if let Some(s) = state {
                query.push(("update_state", s));
            }
            if let Some(a) = after {
                query.push(("after", a.to_string()));
            }
            let answer = api.send(api.request(Method::GET, "/devices").query(&query))?;
            let items = answer["items"].as_array().cloned().unwrap_or_default();
            if json {
                return output::print_json(output::list_json(items, answer.get("next_after")));
            }
            print!("{}", output::table(DEVICE_COLUMNS, &items));
            if let Some(next) = answer["next_after"].as_i64() {
                println!("(more: --after {next})");
            }
        }
        DevicesCommand::Show { controller_id } => {
            let answer = api.send(api.request(
                Method::GET,
                &format!("/devices/{}", segment(&controller_id)),
            ))?;
            if json {
                return output::print_json(answer);
            }
            print_device(&answer);
        }
        DevicesCommand::Tag {
            controller_id,
            tags,
        } => {
            let answer = api.send(
                api.request(
                    Method::PUT,
                    &format!("/devices/{}/tags", segment(&controller_id)),
                )
                .json(&json!({"tags": tags})),
            )?;
            if json {
                return output::print_json(answer);
            }
            print_device(&answer);
        }
        DevicesCommand::Rm { controller_id } => {
            api.send(api.request(
                Method::DELETE,
                &format!("/devices/{}", segment(&controller_id)),
            ))?;
            if json {
                return output::print_json(json!({"deleted": controller_id}));
            }
            println!("deleted {controller_id}");
        }
    }
    Ok(())
}

/// Percent-encode a path segment (ids are validated by the server; this keeps odd input from
/// changing the path).
pub fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
