//! `updraft deploy` assigns a release to devices or a tag; `updraft status` shows deployments.

use reqwest::Method;
use serde_json::json;

use super::client::{Api, ServerArgs, print};
use super::devices::segment;

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
    print(&api.send(api.request(Method::POST, "/deployments").json(&body))?)
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
    let path = match (args.device, args.deployment, args.action) {
        (Some(d), _, _) => format!("/devices/{}/deployments", segment(&d)),
        (_, Some(n), _) => format!("/deployments/{n}"),
        (_, _, Some(n)) => format!("/actions/{n}"),
        _ => "/deployments".to_string(),
    };
    print(&api.send(api.request(Method::GET, &path))?)
}
