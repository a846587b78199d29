//! `updraft campaign` through the real binary against a real `updraft serve`, with devices
//! driven over DDI: phases, approval, status (with `--watch`), pause, resume and abort.

mod common;

use common::Served;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn serve(dir: &Path) -> Served {
    common::serve_with(dir, &["--campaign-tick-ms", "50"])
}

fn run(s: &Served, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args(args)
        .arg("--server")
        .arg(format!("http://{}", s.addr))
        .arg("--token-file")
        .arg(s.data.join("admin-token"))
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_of(s: &Served, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&ok(&run(s, &all))).unwrap()
}

struct Device {
    id: String,
    token: String,
}

/// Poll as the device; the deployment's action id if one is offered.
fn poll(s: &Served, http: &reqwest::blocking::Client, d: &Device) -> Option<i64> {
    let body: Value = http
        .get(format!("http://{}/DEFAULT/controller/v1/{}", s.addr, d.id))
        .header("Authorization", format!("TargetToken {}", d.token))
        .send()
        .unwrap()
        .json()
        .unwrap();
    body["_links"]["deploymentBase"]["href"].as_str().map(|h| {
        h.rsplit('/')
            .next()
            .unwrap()
            .split('?')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    })
}

fn report(s: &Served, http: &reqwest::blocking::Client, d: &Device, action: i64, finished: &str) {
    let r = http
        .post(format!(
            "http://{}/DEFAULT/controller/v1/{}/deploymentBase/{action}/feedback",
            s.addr, d.id
        ))
        .header("Authorization", format!("TargetToken {}", d.token))
        .json(&json!({"status": {"execution": "closed", "result": {"finished": finished}}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Every device with a deployment offered reports `finished`; returns how many did.
fn drive(s: &Served, http: &reqwest::blocking::Client, devs: &[Device], finished: &str) -> usize {
    let mut n = 0;
    for d in devs {
        if let Some(a) = poll(s, http, d) {
            report(s, http, d, a, finished);
            n += 1;
        }
    }
    n
}

fn wait(s: &Served, id: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let c = json_of(s, &["campaign", "status", id]);
        if ok(&c) {
            return c;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{what}: {c:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_campaign_from_the_command_line_with_devices_over_ddi() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path());
    let key = dir.path().join("release.pem");
    let out = Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args(["keys", "generate", "--out", key.to_str().unwrap()])
        .output()
        .unwrap();
    ok(&out);
    let public = dir.path().join("release.pub.pem");
    ok(&run(&s, &["keys", "trust", "k", public.to_str().unwrap()]));
    let fw = dir.path().join("fw.bin");
    std::fs::write(&fw, vec![7u8; 5000]).unwrap();
    ok(&run(
        &s,
        &[
            "release",
            "create",
            "--quiet",
            "--key",
            key.to_str().unwrap(),
            "--vendor-id",
            "4f0e2c1a-7d35-4c8e-9b21-3a6f5e8d9c10",
            "--class",
            "pump",
            "--version",
            "2.0.0",
            fw.to_str().unwrap(),
        ],
    ));
    let mut devs = Vec::new();
    for i in 0..6 {
        let id = format!("pump-{i}");
        let added = json_of(&s, &["devices", "add", &id, "--tag", "pumps"]);
        devs.push(Device {
            id,
            token: added["token"].as_str().unwrap().to_string(),
        });
    }
    let http = reqwest::blocking::Client::new();

    // Bad flags are refused before anything is sent.
    for bad in [
        &["--phases", "10%,5%"][..],
        &["--error-threshold", "0%"],
        &["--rate", "fast"],
        &["--window", "Someday 25:00-26:00"],
    ] {
        let mut args = vec!["campaign", "create", "--release", "2.0.0", "--tag", "pumps"];
        args.extend_from_slice(bad);
        let out = run(&s, &args);
        assert!(!out.status.success(), "{bad:?} accepted");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    }
    assert_eq!(
        json_of(&s, &["campaign", "list"])["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    let created = json_of(
        &s,
        &[
            "campaign",
            "create",
            "--release",
            "2.0.0",
            "--tag",
            "pumps",
            "--phases",
            "2,all",
            "--approve-phases",
            "--error-threshold",
            "50%",
            "--min-finished",
            "4",
            "--start",
        ],
    );
    let id = created["id"].to_string();
    assert_eq!(created["summary"]["status"], "running");
    wait(&s, &id, "phase 1", |c| c["summary"]["phase"] == 1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(drive(&s, &http, &devs, "success"), 2);
    // Phase 2 waits for an approval: nobody else starts.
    let waiting = wait(&s, &id, "approval", |c| {
        c["summary"]["awaiting_approval"] == 2
    });
    assert_eq!(waiting["summary"]["totals"]["succeeded"], 2);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(drive(&s, &http, &devs, "success"), 0);
    // The human view names the waiting phase.
    let shown = ok(&run(&s, &["campaign", "status", &id]));
    assert!(shown.contains("phase 2 awaits approval"), "{shown}");

    ok(&run(&s, &["campaign", "approve", &id]));
    wait(&s, &id, "phase 2", |c| c["summary"]["phase"] == 2);
    // Pause and resume from the command line.
    let paused = json_of(&s, &["campaign", "pause", &id]);
    assert_eq!(paused["summary"]["status"], "paused");
    let out = run(&s, &["campaign", "pause", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot pause a paused campaign"));
    json_of(&s, &["campaign", "resume", &id]);
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let mut reported = 0;
    while reported < 4 {
        assert!(start.elapsed() < Duration::from_secs(30));
        reported += drive(&s, &http, &devs, "success");
        std::thread::sleep(Duration::from_millis(50));
    }
    // `status --watch` (not a terminal: one line per change) ends when the campaign does.
    let watched = ok(&run(
        &s,
        &["campaign", "status", &id, "--watch", "--interval", "0.1"],
    ));
    let last = watched.lines().last().unwrap();
    assert!(last.contains("completed"), "{watched}");
    assert!(
        last.contains("phase 2: 4/4 finished (4 succeeded"),
        "{watched}"
    );
    let listed = ok(&run(&s, &["campaign", "list"]));
    assert!(listed.lines().next().unwrap().starts_with("CAMPAIGN"));
    assert!(listed.contains("completed"), "{listed}");

    // A second campaign to a newer release is aborted: nobody installs it.
    std::fs::write(&fw, vec![8u8; 5000]).unwrap();
    ok(&run(
        &s,
        &[
            "release",
            "create",
            "--quiet",
            "--key",
            key.to_str().unwrap(),
            "--vendor-id",
            "4f0e2c1a-7d35-4c8e-9b21-3a6f5e8d9c10",
            "--class",
            "pump",
            "--version",
            "3.0.0",
            fw.to_str().unwrap(),
        ],
    ));
    let second = json_of(
        &s,
        &[
            "campaign",
            "create",
            "--release",
            "3.0.0",
            "--tag",
            "pumps",
            "--start",
        ],
    );
    let id2 = second["id"].to_string();
    wait(&s, &id2, "start", |c| c["summary"]["phase"] == 1);
    let aborted = json_of(&s, &["campaign", "abort", &id2]);
    assert_eq!(aborted["summary"]["status"], "aborted");
    assert_eq!(drive(&s, &http, &devs, "success"), 0);
    let c = wait(&s, &id2, "cancels counted", |c| {
        c["summary"]["totals"]["cancelled"] == 6
    });
    assert_eq!(c["deployment"]["cancelled"], 6);
}
