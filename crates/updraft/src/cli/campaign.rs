//! `updraft campaign`: staged rollouts with a brake (create, start, pause, resume, abort,
//! approve, list, status with a live view).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value, json};
use updraft_server::campaign::{
    ErrorThreshold, FailureKind, Handling, Limit, MaintenanceWindow, Policy, Rate, ThresholdAction,
    parse_phases, parse_rate,
};

use super::client::{Api, ServerArgs};
use super::output::{self, Columns};

/// `updraft campaign ...`
#[derive(clap::Subcommand, Debug)]
pub enum CampaignCommand {
    /// Create a campaign (a draft; `--start` starts it at once).
    Create(Box<CreateArgs>),
    /// Start a draft or scheduled campaign.
    Start(IdArgs),
    /// Pause: no new device starts (running devices go on).
    Pause(IdArgs),
    /// Resume a paused campaign.
    Resume(IdArgs),
    /// Abort: cancel the devices that have not installed; those that did stay as they are.
    Abort(IdArgs),
    /// Approve the phase that waits for an approval.
    Approve(ApproveArgs),
    /// List campaigns, newest first.
    List(ListArgs),
    /// Show a campaign's progress per phase (`--watch`: live until it ends).
    Status(StatusArgs),
}

/// `updraft campaign create`
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The release version to roll out.
    #[arg(long)]
    release: String,
    /// Target the devices with this tag.
    #[arg(long, required_unless_present_any = ["devices", "current_version", "class_id"])]
    tag: Option<String>,
    /// Target these devices (repeat for several).
    #[arg(long = "device", conflicts_with_all = ["tag", "current_version", "class_id"])]
    devices: Vec<String>,
    /// Target the devices whose current version is a release of this class (a UUID).
    #[arg(long)]
    class_id: Option<String>,
    /// Target the devices on this version (with `--tag`: both must match).
    #[arg(long)]
    current_version: Option<String>,
    /// Devices that match the tag/version later join the campaign.
    #[arg(long)]
    dynamic: bool,
    /// Phases, cumulative: counts, percentages or `all` (e.g. `1%,10%,100%`).
    #[arg(long, default_value = "all")]
    phases: String,
    /// Each phase but the first waits for `updraft campaign approve`.
    #[arg(long)]
    approve_phases: bool,
    /// Failures (count, or share of finished devices like `5%`) that stop the campaign.
    #[arg(long)]
    error_threshold: Option<String>,
    /// The error threshold applies once this many devices finished.
    #[arg(long, default_value_t = 0, requires = "error_threshold")]
    min_finished: u64,
    /// Abort (instead of pause) when the error threshold is reached.
    #[arg(long, requires = "error_threshold")]
    abort_on_errors: bool,
    /// Start at most this many devices per minute (`N/min`).
    #[arg(long)]
    rate: Option<String>,
    /// A device stuck in one state this long (seconds) fails as timed out.
    #[arg(long)]
    timeout: Option<u64>,
    /// Assign a failed or timed-out device again, up to this many times.
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// Trigger installs only inside this window (e.g. `Mon-Fri 02:00-05:00 +01:00`).
    #[arg(long)]
    window: Option<String>,
    /// The device must confirm before it downloads.
    #[arg(long)]
    consent: bool,
    /// A name for people.
    #[arg(long)]
    name: Option<String>,
    /// Start it right away.
    #[arg(long)]
    start: bool,
}

/// A campaign id.
#[derive(clap::Args, Debug)]
pub struct IdArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Campaign id.
    id: i64,
}

/// `updraft campaign approve ID [--phase N]`
#[derive(clap::Args, Debug)]
pub struct ApproveArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Campaign id.
    id: i64,
    /// The phase to approve (default: the one waiting).
    #[arg(long)]
    phase: Option<u32>,
}

/// `updraft campaign list`
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    server: ServerArgs,
}

/// `updraft campaign status ID [--watch]`
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Campaign id.
    id: i64,
    /// Follow it until it completes or is aborted: progress bars on a terminal, one line per
    /// change otherwise.
    #[arg(long)]
    watch: bool,
    /// Seconds between two looks with `--watch`.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
}

/// Run `updraft campaign ...`.
pub fn run(command: CampaignCommand) -> anyhow::Result<()> {
    match command {
        CampaignCommand::Create(a) => create(*a),
        CampaignCommand::Start(a) => command_of(&a.server, a.id, "start", json!({})),
        CampaignCommand::Pause(a) => command_of(&a.server, a.id, "pause", json!({})),
        CampaignCommand::Resume(a) => command_of(&a.server, a.id, "resume", json!({})),
        CampaignCommand::Abort(a) => command_of(&a.server, a.id, "abort", json!({})),
        CampaignCommand::Approve(a) => {
            let body = match a.phase {
                Some(p) => json!({"phase": p}),
                None => json!({}),
            };
            command_of(&a.server, a.id, "approve", body)
        }
        CampaignCommand::List(a) => list(a),
        CampaignCommand::Status(a) => status(a),
    }
}

/// The policy the flags describe (checked here with the server's own parsers).
fn policy(a: &CreateArgs) -> anyhow::Result<Policy> {
    let mut p = Policy::immediate();
    p.phases = parse_phases(&a.phases, a.approve_phases).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(limit) = &a.error_threshold {
        p.error_threshold = Some(ErrorThreshold {
            limit: Limit::parse(limit).map_err(|e| anyhow::anyhow!("{e}"))?,
            min_finished: a.min_finished,
            kinds: vec![
                FailureKind::Failed,
                FailureKind::Rejected,
                FailureKind::TimedOut,
            ],
            action: if a.abort_on_errors {
                ThresholdAction::Abort
            } else {
                ThresholdAction::Pause
            },
        });
    }
    if let Some(rate) = &a.rate {
        p.rate = Some(Rate {
            max_per_minute: parse_rate(rate).map_err(|e| anyhow::anyhow!("{e}"))?,
            ramp: None,
        });
    }
    if let Some(w) = &a.window {
        p.maintenance_window =
            Some(MaintenanceWindow::parse(w).map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    p.device_timeout_s = a.timeout;
    p.retries = a.retries;
    p.consent = a.consent;
    p.dynamic = a.dynamic;
    p.download = Handling::Forced;
    p.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(p)
}

fn create(a: CreateArgs) -> anyhow::Result<()> {
    let policy = policy(&a)?;
    let mut target = serde_json::Map::new();
    if let Some(t) = &a.tag {
        target.insert("tag".into(), json!(t));
    }
    if let Some(v) = &a.current_version {
        target.insert("current_version".into(), json!(v));
    }
    if let Some(c) = &a.class_id {
        target.insert("class_id".into(), json!(c));
    }
    if !a.devices.is_empty() {
        target.insert("devices".into(), json!(a.devices));
    }
    let mut body = json!({"release": a.release, "target": target, "policy": policy});
    if let Some(n) = &a.name {
        body["name"] = json!(n);
    }
    let api = Api::new(&a.server)?;
    let mut answer = api.send(api.request(Method::POST, "/campaigns").json(&body))?;
    if a.start {
        let id = answer["id"]
            .as_i64()
            .context("the server answered no campaign id")?;
        answer = api.send(
            api.request(Method::POST, &format!("/campaigns/{id}/start"))
                .json(&json!({"by": who()})),
        )?;
    }
    show(&a.server, &answer)
}

/// Who runs the command, for the campaign's log.
fn who() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty() && u.len() <= 64)
        .unwrap_or_else(|| "admin".into())
}

fn command_of(server: &ServerArgs, id: i64, command: &str, mut body: Value) -> anyhow::Result<()> {
    body["by"] = json!(who());
    let api = Api::new(server)?;
    let answer = api.send(
        api.request(Method::POST, &format!("/campaigns/{id}/{command}"))
            .json(&body),
    )?;
    show(server, &answer)
}

const LIST_COLUMNS: Columns<'static> = &[
    ("CAMPAIGN", "id"),
    ("NAME", "name"),
    ("RELEASE", "release"),
    ("STATUS", "status"),
    ("PHASE", "phase"),
    ("DEVICES", "members"),
    ("SUCCEEDED", "succeeded"),
    ("FAILED", "failed"),
    ("CREATED", "created_at"),
];

/// A flat row of a campaign for tables.
fn row(c: &Value) -> Value {
    let s = &c["summary"];
    json!({
        "id": c["id"], "name": c["name"], "release": c["release"],
        "status": s["status"], "phase": s["phase"], "members": s["members"],
        "succeeded": s["totals"]["succeeded"],
        "failed": s["totals"]["failed"].as_u64().unwrap_or(0)
            + s["totals"]["timed_out"].as_u64().unwrap_or(0),
        "created_at": c["created_at"],
    })
}

fn list(a: ListArgs) -> anyhow::Result<()> {
    let api = Api::new(&a.server)?;
    let answer = api.send(api.request(Method::GET, "/campaigns"))?;
    let items = answer.as_array().cloned().unwrap_or_default();
    if a.server.json {
        return output::print_json(output::list_json(items, None));
    }
    let rows: Vec<Value> = items.iter().map(row).collect();
    print!("{}", output::table(LIST_COLUMNS, &rows));
    Ok(())
}

/// Finished devices of a phase's counters.
fn finished(c: &Value) -> u64 {
    ["succeeded", "failed", "rejected", "timed_out", "cancelled"]
        .iter()
        .map(|k| c[*k].as_u64().unwrap_or(0))
        .sum()
}

/// One line per phase: `phase 2: 40/100 finished (38 succeeded, 2 failed), 10 running`.
fn phase_lines(c: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in c["summary"]["phases"].as_array().into_iter().flatten() {
        let k = &p["counters"];
        let failed = k["failed"].as_u64().unwrap_or(0) + k["timed_out"].as_u64().unwrap_or(0);
        out.push(format!(
            "phase {}: {}/{} finished ({} succeeded, {} failed, {} rejected, {} cancelled), {} running",
            p["phase"],
            finished(k),
            p["target"],
            k["succeeded"],
            failed,
            k["rejected"],
            k["cancelled"],
            k["active"].as_u64().unwrap_or(0) + k["canceling"].as_u64().unwrap_or(0),
        ));
    }
    out
}

fn headline(c: &Value) -> String {
    let s = &c["summary"];
    let mut line = format!(
        "campaign {} ({}): {} {}, phase {}/{}",
        c["id"],
        output::cell(&c["name"], ""),
        output::cell(&c["release"], ""),
        output::cell(&s["status"], ""),
        s["phase"],
        s["phases"].as_array().map_or(0, Vec::len)
    );
    if let Some(p) = s["awaiting_approval"].as_u64() {
        line.push_str(&format!(", phase {p} awaits approval"));
    }
    line
}

fn show(server: &ServerArgs, c: &Value) -> anyhow::Result<()> {
    if server.json {
        return output::print_json(c.clone());
    }
    println!("{}", headline(c));
    for l in phase_lines(c) {
        println!("  {l}");
    }
    for e in c["log"].as_array().into_iter().flatten() {
        println!(
            "  {}  {}  {}",
            output::cell(&e["at"], "at"),
            output::cell(&e["actor"], ""),
            output::cell(&e["what"], "")
        );
    }
    Ok(())
}

fn is_final(c: &Value) -> bool {
    matches!(
        c["summary"]["status"].as_str(),
        Some("completed" | "aborted")
    )
}

fn status(a: StatusArgs) -> anyhow::Result<()> {
    let api = Api::new(&a.server)?;
    let path = format!("/campaigns/{}", a.id);
    let c = api.send(api.request(Method::GET, &path))?;
    if !a.watch {
        return show(&a.server, &c);
    }
    if !(0.05..=3600.0).contains(&a.interval) {
        bail!("--interval is 0.05 to 3600 seconds");
    }
    let every = Duration::from_secs_f64(a.interval);
    if std::io::stdout().is_terminal() && !a.server.json {
        watch_bars(&api, &path, c, every)
    } else {
        // One line per change, for logs and pipes.
        let mut last = String::new();
        let mut c = c;
        loop {
            let now = if a.server.json {
                let mut v = c["summary"].clone();
                output::convert_times(&mut v);
                serde_json::to_string(&v)?
            } else {
                format!("{} | {}", headline(&c), phase_lines(&c).join(" | "))
            };
            if now != last {
                println!("{now}");
                last = now;
            }
            if is_final(&c) {
                return Ok(());
            }
            std::thread::sleep(every);
            c = api.send(api.request(Method::GET, &path))?;
        }
    }
}

fn watch_bars(api: &Api, path: &str, mut c: Value, every: Duration) -> anyhow::Result<()> {
    let multi = indicatif::MultiProgress::new();
    let head = multi.add(indicatif::ProgressBar::new_spinner());
    let style = indicatif::ProgressStyle::with_template(
        "{prefix:>8} [{bar:40.green/red}] {pos}/{len} {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    let mut bars: BTreeMap<u64, indicatif::ProgressBar> = BTreeMap::new();
    loop {
        head.set_message(headline(&c));
        for p in c["summary"]["phases"].as_array().into_iter().flatten() {
            let n = p["phase"].as_u64().unwrap_or(0);
            let bar = bars.entry(n).or_insert_with(|| {
                let b = multi.add(indicatif::ProgressBar::new(0));
                b.set_style(style.clone());
                b.set_prefix(format!("phase {n}"));
                b
            });
            let k = &p["counters"];
            bar.set_length(p["target"].as_u64().unwrap_or(0));
            bar.set_position(finished(k));
            bar.set_message(format!(
                "{} ok, {} failed, {} running",
                k["succeeded"],
                k["failed"].as_u64().unwrap_or(0) + k["timed_out"].as_u64().unwrap_or(0),
                k["active"]
            ));
        }
        if is_final(&c) {
            for b in bars.values() {
                b.abandon();
            }
            head.abandon();
            println!("{}", headline(&c));
            return Ok(());
        }
        std::thread::sleep(every);
        c = api.send(api.request(Method::GET, path))?;
    }
}
