//! The management API through real HTTP: auth, devices, keys, deployments, bad input, OpenAPI.

mod common;

use common::{TestServer, image};
use ed25519_dalek::pkcs8::EncodePublicKey;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn every_path_in_the_openapi_document_is_served() {
    let s = TestServer::start(None).await;
    s.device("dev-1", &["lab"]).await;
    s.seed_release("1.0.0", &image(100)).await;
    s.deploy("1.0.0", &["dev-1"]).await;
    let doc: Value = s
        .client
        .get(s.api("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 12);
    let mut checked = 0;
    for (path, ops) in paths {
        for (method, _) in ops.as_object().unwrap() {
            let concrete = path
                .trim_start_matches("/api/v1")
                .replace("{controller_id}", "dev-1")
                .replace("{version}", "1.0.0")
                .replace("{id}", "1");
            let method: Method = method.to_uppercase().parse().unwrap();
            let mut req = s.admin(method.clone(), &concrete);
            if method == Method::POST || method == Method::PUT {
                req = req.json(&json!({}));
            }
            // DELETE last would remove the device others use: skip its effect by using a ghost.
            if method == Method::DELETE {
                req = s.admin(method.clone(), &concrete.replace("dev-1", "ghost"));
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            // A route that does not exist answers 404/405 with an empty body; ours answer JSON.
            assert_ne!(status, 405, "{method} {path}");
            if status == 404 {
                let v: Value = serde_json::from_str(&body)
                    .unwrap_or_else(|_| panic!("{method} {path} is not routed"));
                assert!(v["error"]["code"].is_string(), "{method} {path}: {body}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 18, "{checked}");
}

#[tokio::test]
async fn the_admin_token_is_required_and_stored_privately() {
    let s = TestServer::start(None).await;
    let r = s.client.get(s.api("/devices")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let r = s
        .client
        .get(s.api("/devices"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let path = s.dir.path().join("data/admin-token");
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), s.admin);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test]
async fn devices_are_created_listed_with_filters_and_pages_tagged_and_deleted() {
    let s = TestServer::start(None).await;
    let (status, body) = s
        .post(
            "/devices",
            json!({"controller_id": "dev-1", "name": "Pump 1", "tags": ["eu", "lab"]}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(body["token"].as_str().unwrap().len(), 64);
    assert_eq!(body["device"]["update_state"], "idle");
    for i in 2..=5 {
        s.device(&format!("dev-{i}"), if i % 2 == 0 { &["eu"] } else { &[] })
            .await;
    }
    let (status, _) = s.post("/devices", json!({"controller_id": "dev-1"})).await;
    assert_eq!(status, 409);

    let (_, page) = s.get("/devices?tag=eu").await;
    let ids: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["controller_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["dev-1", "dev-2", "dev-4"]);

    // Pages of two walk all five devices once.
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = s.get(&format!("/devices?limit=2{cursor}")).await;
        assert_eq!(status, 200);
        all.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["controller_id"].as_str().unwrap().to_string()),
        );
        match page["next_after"].as_i64() {
            Some(n) => cursor = format!("&after={n}"),
            None => break,
        }
    }
    assert_eq!(all, ["dev-1", "dev-2", "dev-3", "dev-4", "dev-5"]);

    let (status, _) = s
        .get("/devices?update_state=idle&current_version=1.0")
        .await;
    assert_eq!(status, 200);
    let (status, body) = s.get("/devices?update_state=sleepy").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_query"))
    );
    let (status, _) = s.get("/devices?limit=abc").await;
    assert_eq!(status, 400);

    let r = s
        .admin(Method::PUT, "/devices/dev-3/tags")
        .json(&json!({"tags": ["eu"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, page) = s.get("/devices?tag=eu").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 4);

    let (status, dev) = s.get("/devices/dev-1").await;
    assert_eq!(status, 200);
    assert_eq!(dev["name"], "Pump 1");
    assert_eq!(dev["tags"], json!(["eu", "lab"]));

    let r = s
        .admin(Method::DELETE, "/devices/dev-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, _) = s.get("/devices/dev-1").await;
    assert_eq!(status, 404);
    let r = s
        .admin(Method::DELETE, "/devices/dev-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn bad_device_input_is_refused_and_changes_nothing() {
    let s = TestServer::start(None).await;
    let cases = [
        json!({"controller_id": "../etc"}),
        json!({"controller_id": "a/b"}),
        json!({"controller_id": ""}),
        json!({"controller_id": 42}),
        json!({"controller_id": "ok", "admin": true}),
        json!({"controller_id": "ok", "tags": ["bad tag"]}),
        json!({"controller_id": "ok", "tags": "eu"}),
    ];
    for body in cases {
        let (status, answer) = s.post("/devices", body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert!(answer["error"]["message"].is_string());
    }
    let r = s
        .admin(Method::POST, "/devices")
        .header("content-type", "application/json")
        .body("{\"controller_id\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = s
        .admin(Method::POST, "/devices")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let huge = json!({"controller_id": "x".repeat(100_000)});
    let (status, _) = s.post("/devices", huge).await;
    assert_eq!(status, 413);
    let (_, page) = s.get("/devices").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn trusted_keys_accept_pem_public_keys_only() {
    let s = TestServer::start(None).await;
    let sk = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
    let pem = sk
        .verifying_key()
        .to_public_key_pem(Default::default())
        .unwrap();
    let (status, key) = s
        .post("/keys", json!({"name": "release-2026", "pem": pem}))
        .await;
    assert_eq!(status, 201, "{key}");
    assert_eq!(key["algorithm"], "ed25519");
    let (status, _) = s.post("/keys", json!({"name": "again", "pem": pem})).await;
    assert_eq!(status, 409);
    let (status, body) = s.post("/keys", json!({"name": "junk", "pem": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_key"))
    );
    let (_, keys) = s.get("/keys").await;
    assert_eq!(keys.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn deployments_target_devices_or_tags_and_cancel() {
    deployments_and_cancel(TestServer::start(None).await).await;
}

#[tokio::test]
async fn deployments_target_devices_or_tags_and_cancel_on_postgresql() {
    let Some(pg) = updraft_server::testing::TempPostgres::start() else {
        return;
    };
    let url = pg.create_database("deployments").unwrap();
    deployments_and_cancel(TestServer::start(Some(url)).await).await;
}

async fn deployments_and_cancel(s: TestServer) {
    for (id, tags) in [("a", &["eu"][..]), ("b", &["eu"]), ("c", &[])] {
        s.device(id, tags).await;
    }
    s.seed_release("2.0.0", &image(1000)).await;

    // Refusals create nothing.
    let (status, _) = s
        .post(
            "/deployments",
            json!({"release": "9.9.9", "devices": ["a"]}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .post(
            "/deployments",
            json!({"release": "2.0.0", "devices": ["a", "ghost"]}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .post(
            "/deployments",
            json!({"release": "2.0.0", "devices": ["a"], "tag": "eu"}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = s.post("/deployments", json!({"release": "2.0.0"})).await;
    assert_eq!(status, 400);
    let (_, rollouts) = s.get("/deployments").await;
    assert_eq!(rollouts.as_array().unwrap().len(), 0);

    let (status, created) = s
        .post("/deployments", json!({"release": "2.0.0", "tag": "eu"}))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["rollout"]["total"], 2);
    let rollout_id = created["rollout"]["id"].as_i64().unwrap();
    // a and b are busy now: c alone is assigned, a is reported skipped.
    let (status, created) = s
        .post(
            "/deployments",
            json!({"release": "2.0.0", "devices": ["a", "c"]}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(created["skipped"][0]["controller_id"], "a");
    assert_eq!(created["actions"].as_array().unwrap().len(), 1);
    let (status, _) = s
        .post(
            "/deployments",
            json!({"release": "2.0.0", "devices": ["a"]}),
        )
        .await;
    assert_eq!(status, 409);

    let (_, dev) = s.get("/devices/a").await;
    assert_eq!(dev["update_state"], "pending");

    // Cancelling a pending deployment closes it at once and counts it.
    let (status, detail) = s
        .post(&format!("/deployments/{rollout_id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(detail["cancelled"], 2);
    let action_id = detail["actions"][0]["id"].as_i64().unwrap();
    let (_, action) = s.get(&format!("/actions/{action_id}")).await;
    assert_eq!(action["status"], "cancelled");
    let history: Vec<_> = action["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["pending", "cancelled"]);
    let (status, _) = s
        .post(&format!("/actions/{action_id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 409);
    let (status, _) = s.get("/actions/notanumber").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn the_start_banner_tells_urls_token_path_and_how_to_add_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = updraft_server::Config::new(dir.path().join("data"));
    config.http = "127.0.0.1:0".parse().unwrap();
    let server = updraft_server::Server::bind(config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let banner = server.banner();
    assert!(
        banner.contains(&format!("http://{addr}/api/v1")),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("http://{addr}/DEFAULT/controller/v1/")),
        "{banner}"
    );
    assert!(
        banner.contains(&dir.path().join("data/admin-token").display().to_string()),
        "{banner}"
    );
    assert!(banner.contains("controller_id"), "{banner}");
    assert!(
        !banner.contains(server.admin_token()),
        "the banner must not print the token"
    );
}

#[tokio::test]
async fn the_server_stops_gracefully_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = updraft_server::Config::new(dir.path().join("data"));
    config.http = "127.0.0.1:0".parse().unwrap();
    let server = updraft_server::Server::bind(config).await.unwrap();
    let url = format!(
        "http://{}/api/v1/openapi.json",
        server.local_addr().unwrap()
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), running)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
    assert!(
        reqwest::get(&url).await.is_err(),
        "nothing listens any more"
    );
    // A restart on the same data dir keeps the admin token.
    let first = std::fs::read_to_string(dir.path().join("data/admin-token")).unwrap();
    let mut config = updraft_server::Config::new(dir.path().join("data"));
    config.http = "127.0.0.1:0".parse().unwrap();
    let again = updraft_server::Server::bind(config).await.unwrap();
    assert_eq!(again.admin_token(), first.trim());
    assert!(!again.admin_token_created());
}
