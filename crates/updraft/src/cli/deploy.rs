//! `updraft deploy` assigns a release to devices or a tag; `updraft status` shows deployments.

use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Api, ServerArgs};
use super::devices::segment;
use super::output::{self, Columns};

/// `updraft deploy RELEASE (--device ID ... | --tag TAG)`
#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The release version to deploy.
    release: String,
    /// Target devices (repeat for several).
    #[arg(
        long = "device",
        conflicts_with = "tag",
        required_unless_present = "tag"
    )]
    devices: Vec<String>,
    /// Target every device with this tag.
    #[arg(long)]
    tag: Option<String>,
}

/// Run `updraft deploy`.
pub fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.server)?;
    let body = match args.tag {
        Some(tag) => json!({"release": args.release, "tag": tag}),
        None => json!({"release": args.release, "devices": args.devices}),
    };
    let answer = api.send(api.request(Method::POST, "/deployments").json(&body))?;
    if args.server.json {
        return output::print_json(answer);
    }
    print!("{}", output::fields(&answer["rollout"], ROLLOUT_FIELDS));
    let actions = answer["actions"].as_array().cloned().unwrap_or_default();
    print!("{}", output::table(ACTION_COLUMNS, &actions));
    for s in answer["skipped"].as_array().into_iter().flatten() {
        println!(
            "skipped {}: {}",
            output::cell(&s["controller_id"], ""),
            output::cell(&s["reason"], "")
        );
    }
    Ok(())
}

const ROLLOUT_COLUMNS: Columns<'static> = &[
    ("DEPLOYMENT", "id"),
    ("RELEASE", "release"),
    ("TARGET", "target"),
    ("TOTAL", "total"),
    ("SUCCEEDED", "succeeded"),
    ("FAILED", "failed"),
    ("REJECTED", "rejected"),
    ("CANCELLED", "cancelled"),
    ("CREATED", "created_at"),
];

const ROLLOUT_FIELDS: Columns<'static> = &[
    ("deployment", "id"),
    ("release", "release"),
    ("target", "target"),
    ("created", "created_at"),
    ("total", "total"),
    ("succeeded", "succeeded"),
    ("failed", "failed"),
    ("rejected", "rejected"),
    ("cancelled", "cancelled"),
];

const ACTION_COLUMNS: Columns<'static> = &[
    ("ACTION", "id"),
    ("DEVICE", "controller_id"),
    ("RELEASE", "release"),
    ("STATUS", "status"),
    ("PROGRESS", "progress"),
    ("REASON", "reason"),
    ("UPDATED", "updated_at"),
];

const ACTION_FIELDS: Columns<'static> = &[
    ("action", "id"),
    ("deployment", "rollout_id"),
    ("device", "controller_id"),
    ("release", "release"),
    ("status", "status"),
    ("progress", "progress"),
    ("reason", "reason"),
    ("open", "active"),
    ("created", "created_at"),
    ("updated", "updated_at"),
];

const EVENT_COLUMNS: Columns<'static> = &[
    ("AT", "at"),
    ("STATUS", "status"),
    ("PROGRESS", "progress"),
    ("MESSAGE", "message"),
];

fn print_action(action: &Value) {
    print!("{}", output::fields(action, ACTION_FIELDS));
    let events = action["events"].as_array().cloned().unwrap_or_default();
    print!("{}", output::table(EVENT_COLUMNS, &events));
}

/// `updraft status [--device ID | --deployment N | --action N]`
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// A device's deployments with their history.
    #[arg(long, conflicts_with_all = ["deployment", "action"])]
    device: Option<String>,
    /// One deployment with its counters and per-device status.
    #[arg(long, conflicts_with = "action")]
    deployment: Option<i64>,
    /// One device's deployment with its history.
    #[arg(long)]
    action: Option<i64>,
}

/// Run `updraft status` (all deployments when no option is given).
pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.server)?;
    let json = args.server.json;
    match (args.device, args.deployment, args.action) {
        (Some(d), _, _) => {
            let answer = api.send(api.request(
                Method::GET,
                &format!("/devices/{}/deployments", segment(&d)),
            ))?;
            let items = answer.as_array().cloned().unwrap_or_default();
            if json {
                return output::print_json(output::list_json(items, None));
            }
            print!("{}", output::table(ACTION_COLUMNS, &items));
        }
        (_, Some(n), _) => {
            let answer = api.send(api.request(Method::GET, &format!("/deployments/{n}")))?;
            if json {
                return output::print_json(answer);
            }
            print!("{}", output::fields(&answer, ROLLOUT_FIELDS));
            let actions = answer["actions"].as_array().cloned().unwrap_or_default();
            print!("{}", output::table(ACTION_COLUMNS, &actions));
        }
        (_, _, Some(n)) => {
            let answer = api.send(api.request(Method::GET, &format!("/actions/{n}")))?;
            if json {
                return output::print_json(answer);
            }
            print_action(&answer);
        }
        _ => {
            let answer = api.send(api.request(Method::GET, "/deployments"))?;
            let items = answer.as_array().cloned().unwrap_or_default();
            if json {
                return output::print_json(output::list_json(items, None));
            }
            print!("{}", output::table(ROLLOUT_COLUMNS, &items));
        }
    }
    Ok(())
}
