//! Shared test harness: a real server on a free port of 127.0.0.1 in its own temp data dir.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::pkcs8::EncodePublicKey;
use serde_json::{Value, json};
use updraft_server::server::AppState;
use updraft_server::store::{NewRelease, Release};
use updraft_server::{Config, Server};

/// A running server; stopped on drop.
pub struct TestServer {
    pub url: String,
    pub admin: String,
    pub state: AppState,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    /// Start on SQLite in a temp dir, or on `database` when given.
    pub async fn start(database: Option<String>) -> TestServer {
        Self::start_with(database, |_| {}).await
    }

    /// Start with a config tweak.
    pub async fn start_with(
        database: Option<String>,
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().join("data"));
        config.http = "127.0.0.1:0".parse().unwrap();
        config.database = database;
        config.poll_interval = Duration::from_secs(1);
        tweak(&mut config);
        let server = Server::bind(config).await.unwrap();
        let url = format!("http://{}", server.local_addr().unwrap());
        let admin = server.admin_token().to_string();
        let state = server.state().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        TestServer {
            url,
            admin,
            state,
            client: reqwest::Client::new(),
            dir,
            stop: Some(stop),
        }
    }

    /// Stop serving, keeping the data directory (to start another server on it).
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url)
    }

    pub fn ddi(&self, controller: &str, rest: &str) -> String {
        format!("{}/DEFAULT/controller/v1/{controller}{rest}", self.url)
    }

    /// An admin request.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.api(path))
            .bearer_auth(&self.admin)
    }

    /// POST JSON as admin; returns status and JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .admin(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// GET as admin; returns status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.admin(reqwest::Method::GET, path).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Create a device; returns its token.
    pub async fn device(&self, id: &str, tags: &[&str]) -> String {
        let (status, body) = self
            .post("/devices", json!({"controller_id": id, "tags": tags}))
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    /// Store a release directly (bypassing the signed upload), with `image` as its blob.
    pub async fn seed_release(&self, version: &str, image: &[u8]) -> Release {
        let store = &self.state.store;
        let key = match store.keys().await.unwrap().into_iter().next() {
            Some(k) => k,
            None => {
                let sk = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
                let pem = sk
                    .verifying_key()
                    .to_public_key_pem(Default::default())
                    .unwrap();
                let parsed = updraft_server::keys::parse_pem(&pem).unwrap();
                store
                    .add_key("seed", parsed.algorithm, &parsed.fingerprint, &pem)
                    .await
                    .unwrap()
            }
        };
        let parts: Vec<Result<Bytes, std::io::Error>> = image
            .chunks(8192)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let staged = self
            .state
            .blobs
            .stage(futures_util::stream::iter(parts), u64::MAX)
            .await
            .unwrap();
        let new = NewRelease {
            version: version.into(),
            sequence: 1,
            manifest_digest: format!("seed-{version}"),
            filename: format!("fw-{version}.bin"),
            image_size: staged.size,
            image_sha256: hex::encode(staged.sha256),
            image_sha1: hex::encode(staged.sha1),
            image_md5: hex::encode(staged.md5),
            blob_key: staged.final_key(),
            envelope: format!("envelope of {version}").into_bytes(),
            key_id: key.id,
            vendor_id: None,
            class_id: None,
        };
        self.state.blobs.commit(staged).await.unwrap();
        store.create_release(&new).await.unwrap()
    }

    /// Assign a release to devices; returns the action ids in device order.
    pub async fn deploy(&self, version: &str, devices: &[&str]) -> Vec<i64> {
        let (status, body) = self
            .post(
                "/deployments",
                json!({"release": version, "devices": devices}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_i64().unwrap())
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Deterministic test image bytes.
pub fn image(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 253) as u8).collect()
}
