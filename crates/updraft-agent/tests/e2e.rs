//! The end-to-end test through the real binaries: `updraft serve`, the `updraft` command line
//! and two `updraft-agent` processes, once on the embedded defaults (SQLite, blobs in the data
//! dir) and once on PostgreSQL.
//!
//! # Why it lives in the agent's tests
//!
//! The device side needs the most fixture: script images, device configs, `provision`, `boot`,
//! `status` and SIGKILL are `tests/common` (shared with `tests/update.rs`, which runs the same
//! scenarios against a DDI stand-in), and cargo hands this crate's tests the agent binary
//! (`CARGO_BIN_EXE_updraft-agent`). The server side is one child process and CLI calls. The
//! `updraft` binary is its sibling in the same target directory: [`updraft_bin`] runs
//! `cargo build -p updraft` once per test process (a no-op when it is fresh), so a stale server
//! is never what gets tested. The PostgreSQL run uses `updraft_server::testing` (a throwaway
//! cluster: skipped with a notice without PostgreSQL binaries, required when `CI` is set).
//!
//! # What is observed, and how
//!
//! Nothing waits by sleeping: every wait polls a condition (`updraft status`, `updraft-agent
//! status`) with a bounded timeout. The kill lands mid-download because the test polls the
//! agent's durable journal offset and SIGKILLs once a quarter of the image is in. "Re-downloaded
//! at most one block" is counted on the server side: `updraft serve` logs every artifact range
//! it serves at debug level, and the ranges of the killed device's image add up to at most the
//! image size plus one block.
//!
//! Every child (server, agents) is killed by a guard's `Drop`, on success and on panic alike;
//! temporary directories go with their `TempDir`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use updraft_server::testing::TempPostgres;

/// Bound of every wait.
const T: Duration = Duration::from_secs(60);
/// Agent block size: small, so the image takes a few hundred Range requests.
const BLOCK: u64 = 1024;

/// The `updraft` binary next to the agent's, built (or found fresh) once per test process.
fn updraft_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let agent = Path::new(env!("CARGO_BIN_EXE_updraft-agent"));
        let dir = agent.parent().expect("the agent binary's directory");
        // `cargo test` builds the agent with the `test` profile into `debug/`: the same
        // profile keeps the two binaries alike and spares a second build of the dependencies.
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "test".to_string(),
            Some(p) => p.to_string(),
        };
        let target_dir = dir.parent().expect("the target directory");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "--quiet", "-p", "updraft", "--bin", "updraft"])
            .args(["--profile", &profile, "--target-dir"])
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .output()
            .expect("running cargo build -p updraft");
        assert!(
            out.status.success(),
            "cargo build -p updraft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = dir.join("updraft");
        assert!(bin.is_file(), "{} missing after the build", bin.display());
        bin
    })
}

/// A running `updraft serve`; killed (and reaped) on drop.
struct Server {
    child: Child,
    url: String,
    data: PathBuf,
    log: PathBuf,
    banner: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `updraft serve` on a fresh data dir under `dir` and a free port, telling devices to poll
    /// every second; on `database` when given, else SQLite in the data dir.
    fn start(dir: &Path, database: Option<&str>) -> Server {
        let data = dir.join("data");
        let log = dir.join("server.log");
        let mut cmd = Command::new(updraft_bin());
        cmd.args(["serve", "--http", "127.0.0.1:0", "--poll-interval", "1"])
            .arg("--data-dir")
            .arg(&data);
        if let Some(db) = database {
            cmd.args(["--database", db]);
        }
        let mut child = cmd
            .env("RUST_LOG", "info,updraft_server::ddi=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = Vec::new();
        for line in lines.by_ref().map_while(Result::ok) {
            let end = line.starts_with("  gateway token");
            banner.push(line);
            if end {
                break;
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let banner = banner.join("\n");
        let addr = banner
            .lines()
            .next()
            .and_then(|l| l.rsplit("http://").next())
            .filter(|a| a.contains(':'))
            .map(|a| a.trim().to_string());
        let mut server = Server {
            child,
            url: String::new(),
            data,
            log,
            banner,
        };
        match addr {
            Some(addr) => server.url = format!("http://{addr}"),
            None => panic!(
                "the server did not start: {}\n{}",
                server.banner,
                server.log()
            ),
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Run an admin command of the `updraft` CLI against this server.
    fn cli_output(&self, args: &[&str]) -> Output {
        Command::new(updraft_bin())
            .args(args)
            .arg("--server")
            .arg(&self.url)
            .arg("--token-file")
            .arg(self.data.join("admin-token"))
            .arg("--json")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Run an admin command that must succeed; its JSON answer (`--json`).
    fn cli(&self, args: &[&str]) -> Value {
        let out = self.cli_output(args);
        assert!(
            out.status.success(),
            "updraft {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "updraft {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// `updraft status --action ID`, polled until the action is closed.
    fn wait_closed(&self, action: i64) -> Value {
        let id = action.to_string();
        let start = Instant::now();
        loop {
            let a = self.cli(&["status", "--action", &id]);
            if a["active"] == false {
                return a;
            }
            assert!(
                start.elapsed() < T,
                "action {action} still open: {a:#}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The artifact ranges served to `device` for `artifact`, from the server's debug log.
    fn served_ranges(&self, device: &str, artifact: &str) -> Vec<(u64, u64)> {
        let field = |line: &str, key: &str| -> Option<String> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(|v| v.trim_matches('"').to_string())
        };
        self.log()
            .lines()
            .filter(|l| l.contains("artifact download"))
            .filter(|l| field(l, "device=").as_deref() == Some(device))
            .filter(|l| field(l, "artifact=").as_deref() == Some(artifact))
            .filter_map(|l| {
                let start = field(l, "start=")?.parse().ok()?;
                let end = field(l, "end=")?.parse().ok()?;
                Some((start, end))
            })
            .collect()
    }
}

/// Run `updraft` without a server (`keys generate`).
fn updraft_local(args: &[&str]) {
    let out = Command::new(updraft_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "updraft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Poll `f` until it answers, at most [`T`].
fn poll<V>(what: &str, mut f: impl FnMut() -> Option<V>) -> V {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < T, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The journal line of `updraft-agent status`: phase and durable offset.
fn journal(dev: &Device) -> (String, u64) {
    let status = dev.status();
    let line = status_line(&status, "journal");
    let (phase, offset) = line.split_once(" at offset ").unwrap_or((line, "0"));
    (phase.to_string(), offset.trim().parse().unwrap_or(0))
}

/// `blocks: received R queued Q processed P ...` → P.
fn blocks_processed(dev: &Device) -> u64 {
    let status = dev.status();
    let line = status_line(&status, "blocks");
    line.split_whitespace()
        .skip_while(|w| *w != "processed")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no block statistics in {status}"))
}

fn release_create(
    s: &Server,
    key: &Path,
    dir: &Path,
    file: &str,
    version: &str,
    seq: u64,
    image: &[u8],
) -> Value {
    let path = dir.join(file);
    std::fs::write(&path, image).unwrap();
    let created = s.cli(&[
        "release",
        "create",
        "--quiet",
        "--key",
        key.to_str().unwrap(),
        "--vendor-id",
        VENDOR,
        "--class",
        CLASS,
        "--version",
        version,
        "--sequence",
        &seq.to_string(),
        path.to_str().unwrap(),
    ]);
    assert_eq!(created["version"], version, "{created}");
    assert_eq!(created["sequence"], seq, "{created}");
    created
}

/// Deploy `version` to `devices`; the action ids in the order of `devices`.
fn deploy(s: &Server, version: &str, devices: &[&str]) -> (i64, Vec<i64>) {
    let mut args = vec!["deploy", version];
    for d in devices {
        args.extend(["--device", d]);
    }
    let out = s.cli(&args);
    assert_eq!(out["skipped"].as_array().map(Vec::len), Some(0), "{out}");
    let actions = out["actions"].as_array().unwrap();
    let ids = devices
        .iter()
        .map(|d| {
            actions
                .iter()
                .find(|a| a["controller_id"] == *d)
                .and_then(|a| a["id"].as_i64())
                .unwrap_or_else(|| panic!("no action for {d}: {out}"))
        })
        .collect();
    (out["rollout"]["id"].as_i64().unwrap(), ids)
}

/// The statuses an action went through, from its event history.
fn events(action: &Value) -> Vec<String> {
    action["events"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|e| e["status"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The deployment's counters: `(total, succeeded, failed, rejected)`.
fn counters(s: &Server, rollout: i64) -> (i64, i64, i64, i64) {
    let r = s.cli(&["status", "--deployment", &rollout.to_string()]);
    let n = |k: &str| r[k].as_i64().unwrap_or_else(|| panic!("no {k} in {r:#}"));
    (n("total"), n("succeeded"), n("failed"), n("rejected"))
}

fn current_version(s: &Server, device: &str) -> Value {
    s.cli(&["devices", "show", device])["current_version"].clone()
}

/// The agent's status agrees: running slot, anti-rollback counter, version.
fn assert_device_on(dev: &Device, slot: &str, sequence: u64, version: &str) {
    let status = dev.status();
    assert_eq!(status_line(&status, "active slot"), slot, "{status}");
    assert_eq!(
        status_line(&status, "installed sequence"),
        sequence.to_string(),
        "{status}"
    );
    assert_eq!(
        status_line(&status, "installed version"),
        version,
        "{status}"
    );
    assert_eq!(status_line(&status, "trial"), "none", "{status}");
}

/// The whole story on one server: `database` is `None` for the embedded defaults.
fn scenario(database: Option<&str>, backend: &str) {
    updraft_bin();
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), database);
    assert!(
        s.banner.contains(&format!("database: {backend}")),
        "{}",
        s.banner
    );

    // Keys: generated and trusted through the CLI.
    let key = dir.path().join("release.pem");
    updraft_local(&["keys", "generate", "--out", key.to_str().unwrap()]);
    let public = dir.path().join("release.pub.pem");
    s.cli(&["keys", "trust", "release-key", public.to_str().unwrap()]);
    let public_pem = std::fs::read_to_string(&public).unwrap();

    // Releases v1 and v2 (v2 large: ~700 Range requests of 1 KiB).
    let v1 = script_image("1.0.0", true, 0);
    let v2 = script_image("2.0.0", true, 700 * 1024);
    release_create(&s, &key, dir.path(), "fw-1.bin", "1.0.0", 1, &v1);
    release_create(&s, &key, dir.path(), "fw-2.bin", "2.0.0", 2, &v2);

    // Two devices, their tokens from the server, two agents provisioned with v1 and booted.
    let mut devs = Vec::new();
    for name in ["dev-a", "dev-b"] {
        let added = s.cli(&["devices", "add", name]);
        let token = added["token"].as_str().unwrap().to_string();
        let target = Target {
            url: &s.url,
            controller_id: name,
            token: &token,
        };
        let mut dev = Device::provision(&target, &public_pem, &v1, 1, BLOCK as u32);
        dev.boot();
        devs.push(dev);
    }
    let [a, b] = &mut devs[..] else {
        unreachable!()
    };
    // Both agents have polled (last seen) and reported v1 through configData.
    for name in ["dev-a", "dev-b"] {
        poll(&format!("{name} to report version 1.0.0"), || {
            let device = s.cli(&["devices", "show", name]);
            (!device["last_seen"].is_null() && device["current_version"] == "1.0.0").then_some(())
        });
    }

    // ---- v2 to both; dev-b is SIGKILLed mid-download and restarted --------------------------
    let (rollout, actions) = deploy(&s, "2.0.0", &["dev-a", "dev-b"]);
    let size = v2.len() as u64;
    let killed_at = poll("dev-b a quarter into the download", || {
        let (phase, offset) = journal(b);
        (phase == "Downloading" && offset >= size / 4).then_some(offset)
    });
    b.kill();
    let (phase, offset) = journal(b);
    assert_eq!(phase, "Downloading", "killed mid-download");
    assert!(
        offset >= killed_at && offset < size,
        "the kill landed mid-download: journal at {offset} of {size}"
    );
    let processed_before = blocks_processed(b);
    b.boot();

    for (name, action) in ["dev-a", "dev-b"].iter().zip(&actions) {
        let a = s.wait_closed(*action);
        assert_eq!(a["status"], "succeeded", "{name}: {a:#}\n{}", s.log());
        let ev = events(&a);
        for want in [
            "pending",
            "notified",
            "downloading",
            "downloaded",
            "updating",
        ] {
            assert!(
                ev.iter().any(|e| e == want),
                "{name}: {want} missing: {ev:?}"
            );
        }
        assert!(
            a["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["progress"].as_i64().is_some_and(|p| p > 0 && p < 100)),
            "{name}: download progress reported: {a:#}"
        );
        assert_eq!(current_version(&s, name), "2.0.0");
    }
    assert_eq!(counters(&s, rollout), (2, 2, 0, 0), "both succeeded");
    for dev in [&mut *a, &mut *b] {
        assert_device_on(dev, "B", 2, "2.0.0");
        assert_eq!(slot(dev, "slot-b"), v2, "slot B holds exactly v2");
        assert!(dev.is_running(), "v2 runs the agent:\n{}", dev.log());
    }

    // Resumed, not restarted: the server served dev-b's image once over, plus at most one
    // block; only the first range started at 0.
    let ranges = s.served_ranges("dev-b", "fw-2.bin");
    let served: u64 = ranges.iter().map(|(a, b)| b - a).sum();
    let from_zero = ranges.iter().filter(|(a, _)| *a == 0).count();
    eprintln!(
        "{backend}: dev-b killed with {offset} of {size} bytes journaled; the server served {served} bytes in {} ranges",
        ranges.len()
    );
    assert!(!ranges.is_empty(), "no artifact log lines:\n{}", s.log());
    assert_eq!(from_zero, 1, "the download restarted from 0: {ranges:?}");
    assert!(
        served >= size && served <= size + BLOCK,
        "served {served} bytes for a {size}-byte image (block {BLOCK})"
    );
    // The agent's own count agrees: after the restart it processed only what the journal
    // did not have.
    let after = blocks_processed(b) - processed_before;
    assert_eq!(
        after,
        (size - offset).div_ceil(BLOCK),
        "blocks after the restart"
    );

    // ---- a tampered artifact: corrupted in the blob store after the upload -----------------
    let v3 = script_image("3.0.0", true, 20 * 1024);
    let created = release_create(&s, &key, dir.path(), "fw-3.bin", "3.0.0", 3, &v3);
    let blob = s
        .data
        .join("blobs/images")
        .join(created["image_sha256"].as_str().unwrap());
    let mut stored = std::fs::read(&blob).unwrap();
    assert_eq!(stored, v3, "the blob store holds the image as uploaded");
    stored[10_000] ^= 0x20;
    std::fs::write(&blob, &stored).unwrap();
    let (rollout, ids) = deploy(&s, "3.0.0", &["dev-a"]);
    let act = s.wait_closed(ids[0]);
    assert_eq!(act["status"], "failed", "{act:#}");
    let reason = act["reason"].as_str().unwrap_or("");
    assert!(reason.contains("integrity"), "{act:#}");
    assert!(
        !events(&act)
            .iter()
            .any(|e| e == "downloaded" || e == "updating"),
        "nothing installed: {act:#}"
    );
    assert_eq!(counters(&s, rollout), (1, 0, 1, 0));
    assert_eq!(current_version(&s, "dev-a"), "2.0.0");
    assert_device_on(a, "B", 2, "2.0.0");
    assert!(a.is_running(), "v2 keeps running:\n{}", a.log());

    // ---- a downgrade: v1 (sequence 1) to a device on sequence 2 -----------------------------
    let (rollout, ids) = deploy(&s, "1.0.0", &["dev-a"]);
    let act = s.wait_closed(ids[0]);
    assert_eq!(act["status"], "rejected", "{act:#}");
    let reason = act["reason"].as_str().unwrap_or("");
    assert!(reason.contains("downgrade"), "{act:#}");
    assert!(
        s.served_ranges("dev-a", "fw-1.bin").is_empty(),
        "no byte of the downgrade image downloaded"
    );
    assert_eq!(counters(&s, rollout), (1, 0, 0, 1));
    assert_eq!(current_version(&s, "dev-a"), "2.0.0");
    assert_device_on(a, "B", 2, "2.0.0");

    // ---- an image whose self-test fails: installed, tried, reverted to v2 -------------------
    let v4 = script_image("4.0.0", false, 0);
    release_create(&s, &key, dir.path(), "fw-4.bin", "4.0.0", 4, &v4);
    let (rollout, ids) = deploy(&s, "4.0.0", &["dev-a"]);
    let act = s.wait_closed(ids[0]);
    assert_eq!(act["status"], "failed", "{act:#}\n{}", a.log());
    let reason = act["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("self-test failed") && reason.contains("reverted to version 2.0.0"),
        "{act:#}"
    );
    assert!(
        events(&act).iter().any(|e| e == "updating"),
        "installed and tried before the revert: {act:#}"
    );
    assert_eq!(counters(&s, rollout), (1, 0, 1, 0));
    assert_eq!(current_version(&s, "dev-a"), "2.0.0");
    assert_device_on(a, "B", 2, "2.0.0");
    assert_eq!(status_line(&a.status(), "last trial"), "Rejected");
    assert!(a.is_running(), "v2 runs again:\n{}", a.log());

    eprintln!(
        "{backend}: end-to-end scenario took {:?}",
        started.elapsed()
    );
}

#[test]
fn end_to_end_on_embedded_defaults_sqlite() {
    scenario(None, "SQLite");
}

#[test]
fn end_to_end_on_postgresql() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let url = pg.create_database("updraft_e2e").unwrap();
    scenario(Some(&url), "PostgreSQL");
}
