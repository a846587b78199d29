//! Benchmark: DDI feedback reports per second, SQLite against PostgreSQL, in one run.
//!
//! `cargo run --release -p updraft-server --example feedback_ingest [DEVICES] [REPORTS_PER_DEVICE]`
//!
//! Starts the server in-process on each backend (PostgreSQL is a throwaway cluster, see
//! `updraft_server::testing`), gives every device an open deployment, then lets one client task
//! per device post progress reports (each a real change: 1 %, 2 %, ...) over HTTP, and prints
//! reports/s for each backend and their ratio.
//!
//! A report is one DDI `POST .../deploymentBase/{id}/feedback` (`proceeding` with a new
//! `progress`), authenticated by the device's `TargetToken`, answered once its transaction has
//! committed. SQLite runs as `updraft serve` runs it (WAL, `synchronous=FULL`: a sync per
//! commit). PostgreSQL runs twice on throwaway clusters: with `fsync=off` (how the tests
//! start it) and on a second cluster with `fsync=on` (durable commits, comparable to SQLite).

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use updraft_server::store::NewRelease;
use updraft_server::testing::TempPostgres;
use updraft_server::{Config, Server};

async fn run(database: Option<String>, devices: usize, reports: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::new(dir.path().join("data"));
    config.http = "127.0.0.1:0".parse().expect("address");
    config.database = database;
    config.poll_interval = Duration::from_secs(1);
    let server = Server::bind(config).await.expect("server");
    let base = format!("http://{}", server.local_addr().expect("address"));
    let state = server.state().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    let store = &state.store;
    let key = store
        .add_key("bench", "ed25519", "bench", "unused")
        .await
        .expect("key");
    let staged = state
        .blobs
        .stage(
            futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"image"))]),
            1 << 20,
        )
        .await
        .expect("blob");
    let release = store
        .create_release(&NewRelease {
            version: "1.0.0".into(),
            sequence: 1,
            manifest_digest: "bench".into(),
            filename: "fw.bin".into(),
            image_size: staged.size,
            image_sha256: hex::encode(staged.sha256),
            image_sha1: hex::encode(staged.sha1),
            image_md5: hex::encode(staged.md5),
            blob_key: staged.final_key(),
            envelope: b"bench".to_vec(),
            key_id: key.id,
            vendor_id: None,
            class_id: None,
        })
        .await
        .expect("release");
    let mut targets = Vec::new();
    for i in 0..devices {
        let token = updraft_server::tokens::generate();
        let d = store
            .create_device(
                &format!("dev-{i}"),
                "",
                &updraft_server::tokens::hash(&token),
                &[],
            )
            .await
            .expect("device");
        targets.push((d, token));
    }
    let ids: Vec<i64> = targets.iter().map(|(d, _)| d.id).collect();
    let rollout = store
        .create_rollout(release.id, "bench")
        .await
        .expect("rollout");
    let mut created = store.assign(rollout, &ids).await.expect("assign").created;
    created.sort_by_key(|&(_, device)| device);
    let actions: Vec<i64> = created.into_iter().map(|(action, _)| action).collect();

    let client = reqwest::Client::new();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for ((device, token), action) in targets.into_iter().zip(actions) {
        let client = client.clone();
        let url = format!(
            "{base}/DEFAULT/controller/v1/{}/deploymentBase/{}/feedback",
            device.controller_id, action
        );
        tasks.push(tokio::spawn(async move {
            for n in 1..=reports {
                let body = json!({"id": action.to_string(), "status": {"execution": "proceeding",
                    "result": {"finished": "none", "progress": {"cnt": n, "of": reports + 1}}}});
                let r = client
                    .post(&url)
                    .header("authorization", format!("TargetToken {token}"))
                    .json(&body)
                    .send()
                    .await
                    .expect("request");
                assert!(r.status().is_success(), "{}", r.status());
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let _ = stop.send(());
    let _ = running.await;
    (devices * reports) as f64 / elapsed
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let devices: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let reports: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(40);
    println!("feedback ingest: {devices} devices x {reports} progress reports, over HTTP");
    let sqlite = run(None, devices, reports).await;
    println!(
        "  {:<32} {sqlite:8.0} reports/s",
        "SQLite (WAL, synchronous=FULL):"
    );
    for fsync in [false, true] {
        let pg = if fsync {
            TempPostgres::start_durable()
        } else {
            TempPostgres::start()
        };
        let Some(pg) = pg else {
            println!("  PostgreSQL: skipped (no initdb/pg_ctl)");
            break;
        };
        let url = pg.create_database("bench").expect("createdb");
        let postgres = run(Some(url), devices, reports).await;
        let label = format!("PostgreSQL (fsync={}):", if fsync { "on" } else { "off" });
        println!(
            "  {label:<32} {postgres:8.0} reports/s   ratio to SQLite: {:.2}",
            postgres / sqlite
        );
    }
}
