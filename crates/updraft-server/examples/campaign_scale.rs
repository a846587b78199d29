//! Benchmark: a campaign over a large registry, SQLite against PostgreSQL, in one run.
//!
//! `cargo run --release -p updraft-server --example campaign_scale [DEVICES] [REPORTING]`
//!
//! For each backend (PostgreSQL on a throwaway cluster with `fsync=off`, as the tests run it,
//! and SQLite as `updraft serve` runs it): registers DEVICES devices (default 100,000) with one
//! tag by bulk SQL, then measures through the fleet layer (the calls the API makes, without
//! HTTP):
//! - creating a one-phase campaign over every device (target: the tag);
//! - starting it and ticking the scheduler until every device is assigned;
//! - the campaign status call (`Fleet::campaign`: summary, counters, log), mean of 200 calls;
//! - device reports ingested per second while the campaign runs (REPORTING devices, default
//!   2,000, five progress reports each, 32 at a time, the scheduler ticking beside them);
//! - the process's peak RSS (VmHWM) after the backend's run.
//!
//! It prints the CPU model first: ratios can differ between Intel and AMD machines.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sqlx::Row;
use updraft_server::campaign::{Command, Policy};
use updraft_server::fleet::DeviceReport;
use updraft_server::fleet::campaigns::{NewCampaign, Target};
use updraft_server::store::NewRelease;
use updraft_server::testing::TempPostgres;
use updraft_server::{Config, Server};

struct Figures {
    create: Duration,
    start: Duration,
    status: Duration,
    reports_per_s: f64,
    rss_kib: u64,
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn register(url: &str, devices: usize) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.expect("connect");
    let now = updraft_server::store::now_ms();
    let chunk = 500;
    for start in (0..devices).step_by(chunk) {
        let end = (start + chunk).min(devices);
        let mut tx = pool.begin().await.expect("begin");
        let values: Vec<String> = (start..end)
            .map(|i| format!("('dev-{i}', 'dev-{i}', 'hash-{i}', 'idle', {now})"))
            .collect();
        let ids = sqlx::query(&format!(
            "INSERT INTO devices (controller_id, name, token_hash, update_state, created_at) \
             VALUES {} RETURNING id",
            values.join(", ")
        ))
        .fetch_all(&mut *tx)
        .await
        .expect("devices");
        let tags: Vec<String> = ids
            .iter()
            .map(|r| format!("({}, 'fleet')", r.get::<i64, _>(0)))
            .collect();
        sqlx::query(&format!(
            "INSERT INTO device_tags (device_id, tag) VALUES {}",
            tags.join(", ")
        ))
        .execute(&mut *tx)
        .await
        .expect("tags");
        tx.commit().await.expect("commit");
    }
    pool.close().await;
}

async fn run(database: Option<String>, devices: usize, reporting: usize) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::new(dir.path().join("data"));
    config.http = "127.0.0.1:0".parse().expect("address");
    config.database = database;
    let url = config.database_url();
    let server = Server::bind(config).await.expect("server");
    let state = server.state().clone();
    register(&url, devices).await;

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
    store
        .create_release(&NewRelease {
            version: "2.0.0".into(),
            sequence: 2,
            manifest_digest: "bench".into(),
            filename: "fw.bin".into(),
            image_size: staged.size,
            image_sha256: hex::encode(staged.sha256),
            image_sha1: hex::encode(staged.sha1),
            image_md5: hex::encode(staged.md5),
            blob_key: staged.final_key(),
            envelope: b"envelope".to_vec(),
            key_id: key.id,
            vendor_id: None,
            class_id: None,
        })
        .await
        .expect("release");
    state.blobs.commit(staged).await.expect("commit blob");
    let fleet = state.fleet.clone();

    let t = Instant::now();
    let id = fleet
        .create_campaign(NewCampaign {
            name: Some("bench".into()),
            release: "2.0.0".into(),
            target: Target {
                tag: Some("fleet".into()),
                ..Target::default()
            },
            policy: Policy::immediate(),
        })
        .await
        .expect("create");
    let create = t.elapsed();

    let t = Instant::now();
    fleet
        .campaign_command(id, Command::Start, "bench")
        .await
        .expect("start");
    loop {
        fleet
            .tick_campaigns(updraft_server::store::now_ms())
            .await
            .expect("tick");
        let c = fleet.campaign(id).await.expect("status");
        if c.deployment.total as usize >= devices {
            break;
        }
    }
    let start = t.elapsed();

    let t = Instant::now();
    for _ in 0..200 {
        std::hint::black_box(fleet.campaign(id).await.expect("status"));
    }
    let status = t.elapsed() / 200;

    // Reports while the scheduler ticks beside them.
    let mut targets = Vec::with_capacity(reporting);
    for i in 0..reporting.min(devices) {
        let d = store
            .device(&format!("dev-{i}"))
            .await
            .expect("device")
            .expect("device exists");
        let a = store
            .active_action(d.id)
            .await
            .expect("action")
            .expect("assigned");
        targets.push((d, a.id));
    }
    let ticking = {
        let fleet = fleet.clone();
        tokio::spawn(async move {
            loop {
                let _ = fleet.tick_campaigns(updraft_server::store::now_ms()).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let t = Instant::now();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for (d, action) in targets.clone() {
        let fleet = fleet.clone();
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.expect("semaphore");
            for p in [10u8, 30, 50, 70, 90] {
                fleet
                    .report(
                        &d,
                        action,
                        DeviceReport::Downloading { percent: Some(p) },
                        None,
                    )
                    .await
                    .expect("report");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let reports_per_s = (targets.len() * 5) as f64 / t.elapsed().as_secs_f64();
    ticking.abort();
    state.store.close().await;
    Figures {
        create,
        start,
        status,
        reports_per_s,
        rss_kib: peak_rss_kib(),
    }
}

fn print(name: &str, devices: usize, f: &Figures) {
    println!(
        "{name:<22} devices {devices:>7}  create {:>8.2} s  start until all assigned {:>8.2} s  \
         status {:>7.2} ms  reports {:>8.0}/s  peak RSS {:>7} KiB",
        f.create.as_secs_f64(),
        f.start.as_secs_f64(),
        f.status.as_secs_f64() * 1000.0,
        f.reports_per_s,
        f.rss_kib
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let devices: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let reporting: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("CPU: {cpu}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let sqlite = run(None, devices, reporting).await;
        print("SQLite", devices, &sqlite);
        let pg = TempPostgres::start().expect("PostgreSQL binaries (initdb, pg_ctl) are needed");
        let url = pg.create_database("campaign_scale").expect("createdb");
        let postgres = run(Some(url), devices, reporting).await;
        print("PostgreSQL (fsync=off)", devices, &postgres);
        println!(
            "PostgreSQL / SQLite: create {:.2}x  start {:.2}x  status {:.2}x  reports {:.2}x",
            postgres.create.as_secs_f64() / sqlite.create.as_secs_f64(),
            postgres.start.as_secs_f64() / sqlite.start.as_secs_f64(),
            postgres.status.as_secs_f64() / sqlite.status.as_secs_f64(),
            postgres.reports_per_s / sqlite.reports_per_s
        );
    });
}
