//! What a new user runs into: per-device configuration growth, orphan blobs after a crash,
//! owner-only data files.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{TestServer, image};
use serde_json::{Value, json};
use updraft_server::store::{MAX_CONFIG_BYTES, MAX_CONFIG_ENTRIES};
use updraft_server::testing::TempPostgres;
use updraft_server::{Config, Server};

async fn put_config(s: &TestServer, token: &str, body: Value) -> (u16, Value) {
    let reply = s
        .client
        .put(s.ddi("dev", "/configData"))
        .header("Authorization", format!("TargetToken {token}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or(Value::Null))
}

async fn config_growth_is_refused_past_the_cap(s: TestServer) {
    let token = s.device("dev", &[]).await;
    let batch = |from: usize, to: usize, value: &str| -> Value {
        let map: serde_json::Map<String, Value> = (from..to)
            .map(|i| (format!("key-{i:04}"), json!(value)))
            .collect();
        json!({"mode": "merge", "data": map})
    };
    // Repeated merges of new keys grow the stored data up to the entry cap, not past it.
    for start in (0..MAX_CONFIG_ENTRIES).step_by(64) {
        let (status, body) = put_config(&s, &token, batch(start, start + 64, "v")).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = put_config(&s, &token, batch(1000, 1001, "v")).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "config_too_large");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{MAX_CONFIG_ENTRIES} entries"))
            && message.contains(&format!("{MAX_CONFIG_BYTES} bytes")),
        "{message}"
    );
    let (_, device) = s.get("/devices/dev").await;
    let stored = device["config_data"].as_object().unwrap();
    assert_eq!(stored.len(), MAX_CONFIG_ENTRIES);
    assert!(!stored.contains_key("key-1000"));

    // The byte cap: values of 1 KiB reach 64 KiB long before 256 entries.
    let big = "x".repeat(1024);
    let (status, _) = put_config(
        &s,
        &token,
        json!({"mode": "replace", "data": {"key-a": big.clone()}}),
    )
    .await;
    assert_eq!(status, 200);
    let mut refused = None;
    for start in (0..100).step_by(10) {
        let (status, body) = put_config(&s, &token, batch(start, start + 10, &big)).await;
        if status != 200 {
            refused = Some((status, body, start));
            break;
        }
    }
    let (status, body, start) = refused.expect("the byte cap was never reached");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("config_too_large"))
    );
    let (_, device) = s.get("/devices/dev").await;
    let stored = device["config_data"].as_object().unwrap();
    assert_eq!(stored.len(), 1 + start, "the refused merge stored nothing");
    let bytes: usize = stored
        .iter()
        .map(|(k, v)| k.len() + v.as_str().unwrap().len())
        .sum();
    assert!(bytes <= MAX_CONFIG_BYTES, "{bytes}");
    // Removing keys is always accepted and makes room again.
    let (status, _) = put_config(
        &s,
        &token,
        json!({"mode": "remove", "data": {"key-0000": "", "key-0001": ""}}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = put_config(&s, &token, batch(start, start + 1, &big)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn ddi_config_data_is_capped_per_device_on_sqlite() {
    config_growth_is_refused_past_the_cap(TestServer::start(None).await).await;
}

#[tokio::test]
async fn ddi_config_data_is_capped_per_device_on_postgresql() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let url = pg.create_database("config_cap").unwrap();
    config_growth_is_refused_past_the_cap(TestServer::start(Some(url)).await).await;
    drop(pg);
}

fn config(data: &Path, grace: Duration) -> Config {
    let mut config = Config::new(data);
    config.http = "127.0.0.1:0".parse().unwrap();
    config.orphan_blob_grace = grace;
    config
}

#[tokio::test]
async fn start_up_removes_image_blobs_no_release_points_at() {
    let mut s = TestServer::start(None).await;
    let kept = s.seed_release("1.0.0", &image(10_000)).await;
    let data = s.state.config.data_dir.clone();
    s.stop().await;

    // What a crash between storing an image and writing its row leaves behind.
    let orphan = data.join("blobs/images").join("ab".repeat(32));
    std::fs::write(&orphan, b"an image nobody refers to").unwrap();
    let kept_path = data.join("blobs").join(&kept.blob_key);
    assert!(kept_path.exists());

    // Within the grace period (another server may be finishing that upload) it stays.
    let server = Server::bind(config(&data, Duration::from_secs(3600)))
        .await
        .unwrap();
    assert!(orphan.exists());
    drop(server);

    let server = Server::bind(config(&data, Duration::ZERO)).await.unwrap();
    assert!(!orphan.exists(), "the orphan was removed at start");
    assert!(kept_path.exists(), "a release's blob is kept");
    let release = server
        .state()
        .store
        .release("1.0.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(release.blob_key, kept.blob_key);
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_its_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mut s = TestServer::start(None).await;
    let release = s.seed_release("1.0.0", &image(5_000)).await;
    // Make SQLite write its WAL.
    s.device("dev", &[]).await;
    let data = s.state.config.data_dir.clone();
    let check = |data: &Path| {
        for dir in ["", "blobs", "blobs/images", "blobs/staging"] {
            assert_eq!(mode(&data.join(dir)), 0o700, "{dir}/");
        }
        for file in [
            "admin-token",
            "gateway-token",
            "metrics-token",
            "updraft.db",
        ] {
            assert_eq!(mode(&data.join(file)), 0o600, "{file}");
        }
        for file in ["updraft.db-wal", "updraft.db-shm"] {
            let p = data.join(file);
            if p.exists() {
                assert_eq!(mode(&p) & 0o077, 0, "{file}");
            }
        }
        assert_eq!(mode(&data.join("blobs").join(&release.blob_key)), 0o600);
    };
    check(&data);
    s.stop().await;

    // A directory opened up by hand is narrowed again at the next start.
    let open = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    open(&data, 0o755).unwrap();
    open(&data.join("blobs"), 0o777).unwrap();
    open(&data.join("admin-token"), 0o644).unwrap();
    open(&data.join("updraft.db"), 0o644).unwrap();
    open(&data.join("blobs").join(&release.blob_key), 0o644).unwrap();
    let _server = Server::bind(config(&data, Duration::from_secs(3600)))
        .await
        .unwrap();
    check(&data);
}
