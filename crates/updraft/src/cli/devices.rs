//! `updraft devices`: register, list, show, tag and remove devices on a server.

use reqwest::Method;
use serde_json::json;

use super::client::{Api, ServerArgs, print};

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

/// Run `updraft devices`.
pub fn run(args: DevicesArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.server)?;
    let answer = match args.command {
        DevicesCommand::Add {
            controller_id,
            name,
            tags,
        } => {
            let mut body = json!({"controller_id": controller_id, "tags": tags});
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            api.send(api.request(Method::POST, "/devices").json(&body))?
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
            api.send(api.request(Method::GET, "/devices").query(&query))?
        }
        DevicesCommand::Show { controller_id } => api.send(api.request(
            Method::GET,
            &format!("/devices/{}", segment(&controller_id)),
        ))?,
        DevicesCommand::Tag {
            controller_id,
            tags,
        } => api.send(
            api.request(
                Method::PUT,
                &format!("/devices/{}/tags", segment(&controller_id)),
            )
            .json(&json!({"tags": tags})),
        )?,
        DevicesCommand::Rm { controller_id } => {
            api.send(api.request(
                Method::DELETE,
                &format!("/devices/{}", segment(&controller_id)),
            ))?;
            println!("deleted {controller_id}");
            serde_json::Value::Null
        }
    };
    print(&answer)
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
