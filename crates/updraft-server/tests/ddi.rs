//! The hawkBit DDI device API, driven by the independent `hawkbit` crate (a DDI client we did
//! not write) and by raw HTTP for the edges the client does not exercise.

mod common;

use common::{TestServer, image};
use hawkbit::ddi::{Client, ClientAuthorization, Execution, Finished, Mode};
use serde_json::{Value, json};
use updraft_server::store::Backend;
use updraft_server::testing::TempPostgres;

fn client(s: &TestServer, controller: &str, token: &str) -> Client {
    Client::new(
        &s.url,
        "DEFAULT",
        controller,
        ClientAuthorization::TargetToken(token.to_string()),
        None,
        None,
        None,
    )
    .unwrap()
}

#[derive(serde::Serialize)]
struct Progress {
    cnt: u32,
    of: u32,
}

async fn action(s: &TestServer, id: i64) -> Value {
    let (status, body) = s.get(&format!("/actions/{id}")).await;
    assert_eq!(status, 200);
    body
}

#[tokio::test]
async fn hawkbit_client_polls_downloads_and_reports_success_and_failure() {
    poll_download_report(TestServer::start(None).await).await;
}

#[tokio::test]
async fn hawkbit_client_flow_on_postgresql() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let url = pg.create_database("ddi_flow").unwrap();
    let s = TestServer::start(Some(url)).await;
    assert_eq!(s.state.store.backend(), Backend::Postgres);
    poll_download_report(s).await;
    drop(pg);
}

async fn poll_download_report(s: TestServer) {
    let ok_token = s.device("ok-1", &[]).await;
    let bad_token = s.device("bad-1", &[]).await;
    let data = image(300_000);
    let release = s.seed_release("2.0.0", &data).await;

    // Nothing assigned yet: the poll has a sleep and no deployment.
    let dev = client(&s, "ok-1", &ok_token);
    let reply = dev.poll().await.unwrap();
    assert_eq!(
        reply.polling_sleep().unwrap(),
        std::time::Duration::from_secs(1)
    );
    assert!(reply.update().is_none());
    assert!(reply.config_data_request().is_some());

    let actions = s.deploy("2.0.0", &["ok-1", "bad-1"]).await;

    // Success path.
    let reply = dev.poll().await.unwrap();
    let update = reply
        .update()
        .expect("a deployment link")
        .fetch()
        .await
        .unwrap();
    assert_eq!(update.action_id(), actions[0].to_string());
    let chunk = update.chunks().next().unwrap();
    assert_eq!(chunk.version(), "2.0.0");
    let names: Vec<_> = chunk
        .artifacts()
        .map(|a| a.filename().to_string())
        .collect();
    assert_eq!(
        names,
        [
            format!("{}.suit", release.filename),
            release.filename.clone()
        ]
    );
    assert_eq!(action(&s, actions[0]).await["status"], "notified");

    let dir = tempfile::tempdir().unwrap();
    let files = update.download(dir.path()).await.unwrap();
    assert_eq!(files.len(), 2);
    for f in &files {
        f.check_sha256().await.unwrap();
        f.check_sha1().await.unwrap();
        f.check_md5().await.unwrap();
    }
    assert_eq!(std::fs::read(files[1].file()).unwrap(), data);
    assert_eq!(
        std::fs::read(files[0].file()).unwrap(),
        b"envelope of 2.0.0"
    );

    update
        .send_feedback_with_progress(
            Execution::Proceeding,
            Finished::None,
            Progress { cnt: 1, of: 2 },
            vec!["half"],
        )
        .await
        .unwrap();
    // The same report again is accepted and recorded once.
    update
        .send_feedback_with_progress(
            Execution::Proceeding,
            Finished::None,
            Progress { cnt: 1, of: 2 },
            vec!["half"],
        )
        .await
        .unwrap();
    update
        .send_feedback(Execution::Downloaded, Finished::None, vec![])
        .await
        .unwrap();
    update
        .send_feedback(Execution::Closed, Finished::Success, vec!["installed"])
        .await
        .unwrap();

    let a = action(&s, actions[0]).await;
    assert_eq!(a["status"], "succeeded");
    let history: Vec<_> = a["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["status"].as_str().unwrap().to_string(),
                e["progress"].as_i64(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            ("pending".to_string(), None),
            ("notified".to_string(), None),
            ("downloading".to_string(), Some(50)),
            ("downloaded".to_string(), None),
            ("succeeded".to_string(), None),
        ]
    );
    let (_, device) = s.get("/devices/ok-1").await;
    assert_eq!(device["current_version"], "2.0.0");
    assert_eq!(device["update_state"], "succeeded");
    assert!(device["last_seen"].is_i64());

    // The action is closed: a late report is 410 Gone and changes nothing.
    let err = update
        .send_feedback(Execution::Closed, Finished::Failure, vec!["late"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("410"), "{err}");
    assert_eq!(action(&s, actions[0]).await["status"], "succeeded");
    // The poll no longer offers it, but offers the installed base.
    let reply = dev.poll().await.unwrap();
    assert!(reply.update().is_none());
    let poll: Value = s
        .client
        .get(s.ddi("ok-1", ""))
        .header("authorization", format!("TargetToken {ok_token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let installed = poll["_links"]["installedBase"]["href"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        installed.ends_with(&format!("/installedBase/{}", actions[0])),
        "{installed}"
    );
    let base: Value = s
        .client
        .get(&installed)
        .header("authorization", format!("TargetToken {ok_token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(base["deployment"]["chunks"][0]["version"], "2.0.0");
    assert_eq!(base["actionHistory"]["status"], "FINISHED");

    // Failure path.
    let bad = client(&s, "bad-1", &bad_token);
    let update = bad
        .poll()
        .await
        .unwrap()
        .update()
        .unwrap()
        .fetch()
        .await
        .unwrap();
    update
        .send_feedback(
            Execution::Closed,
            Finished::Failure,
            vec!["integrity check failed: digest mismatch"],
        )
        .await
        .unwrap();
    let a = action(&s, actions[1]).await;
    assert_eq!(a["status"], "failed");
    assert_eq!(a["reason"], "integrity check failed: digest mismatch");
    let (_, device) = s.get("/devices/bad-1").await;
    assert!(device["current_version"].is_null());
    // A failed action is not an installed base.
    let r = s
        .client
        .get(s.ddi("bad-1", &format!("/installedBase/{}", actions[1])))
        .header("authorization", format!("TargetToken {bad_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let (_, rollout) = s.get(&format!("/deployments/{}", a["rollout_id"])).await;
    assert_eq!(
        (rollout["succeeded"].as_i64(), rollout["failed"].as_i64()),
        (Some(1), Some(1))
    );
}

#[tokio::test]
async fn hawkbit_client_resumes_a_download_with_range() {
    let s = TestServer::start(None).await;
    let token = s.device("dev", &[]).await;
    let data = image(200_000);
    let release = s.seed_release("3.0.0", &data).await;
    s.deploy("3.0.0", &["dev"]).await;
    let dev = client(&s, "dev", &token);
    let update = dev
        .poll()
        .await
        .unwrap()
        .update()
        .unwrap()
        .fetch()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A download interrupted after 70,000 bytes: the client continues with `Range: bytes=70000-`
    // and appends. The kept prefix is marked, so the result proves only the rest was sent.
    let chunk_dir = dir.path().join("firmware");
    std::fs::create_dir_all(&chunk_dir).unwrap();
    std::fs::write(
        chunk_dir.join(format!("{}.part", release.filename)),
        vec![0xAA; 70_000],
    )
    .unwrap();
    let files = update.download(dir.path()).await.unwrap();
    let image_file = files
        .iter()
        .find(|f| f.file().ends_with(&release.filename))
        .unwrap();
    let got = std::fs::read(image_file.file()).unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got[..70_000].iter().all(|&b| b == 0xAA));
    assert_eq!(&got[70_000..], &data[70_000..]);
    // A clean download from the start verifies.
    let fresh = tempfile::tempdir().unwrap();
    let files = update.download(fresh.path()).await.unwrap();
    for f in &files {
        f.check_sha256().await.unwrap();
    }
}

#[tokio::test]
async fn hawkbit_client_uploads_config_data_and_accepts_a_cancel() {
    let s = TestServer::start(None).await;
    let token = s.device("dev", &[]).await;
    s.seed_release("4.0.0", &image(10)).await;
    let dev = client(&s, "dev", &token);
    let request = dev.poll().await.unwrap().config_data_request().unwrap();
    request
        .upload(
            Execution::Closed,
            Finished::Success,
            Some(Mode::Merge),
            json!({"hw": "rev-b", "serial": "42"}),
            vec![],
        )
        .await
        .unwrap();
    let (_, device) = s.get("/devices/dev").await;
    assert_eq!(
        device["config_data"],
        json!({"hw": "rev-b", "serial": "42"})
    );
    assert!(dev.poll().await.unwrap().config_data_request().is_none());

    let actions = s.deploy("4.0.0", &["dev"]).await;
    let update = dev
        .poll()
        .await
        .unwrap()
        .update()
        .unwrap()
        .fetch()
        .await
        .unwrap();
    update
        .send_feedback(Execution::Download, Finished::None, vec![])
        .await
        .unwrap();
    let (status, _) = s
        .post(&format!("/actions/{}/cancel", actions[0]), json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(action(&s, actions[0]).await["status"], "canceling");

    let reply = dev.poll().await.unwrap();
    assert!(reply.update().is_none());
    let cancel = reply.cancel_action().expect("a cancel link");
    assert_eq!(cancel.id().await.unwrap(), actions[0].to_string());
    cancel
        .send_feedback(Execution::Closed, Finished::Success, vec![])
        .await
        .unwrap();
    let a = action(&s, actions[0]).await;
    assert_eq!(a["status"], "cancelled");
    assert_eq!(a["active"], false);
    assert!(dev.poll().await.unwrap().cancel_action().is_none());
}

#[tokio::test]
async fn a_reported_installed_version_becomes_the_current_version() {
    let s = TestServer::start(None).await;
    let token = s.device("dev", &[]).await;
    let (_, device) = s.get("/devices/dev").await;
    assert!(device["current_version"].is_null());
    let dev = client(&s, "dev", &token);
    let request = dev.poll().await.unwrap().config_data_request().unwrap();
    request
        .upload(
            Execution::Closed,
            Finished::Success,
            Some(Mode::Merge),
            json!({"updraft.installed_version": "1.0.0"}),
            vec![],
        )
        .await
        .unwrap();
    let (_, device) = s.get("/devices/dev").await;
    assert_eq!(device["current_version"], "1.0.0");
    let (_, list) = s.get("/devices?current_version=1.0.0").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");

    // An oversized version is refused and changes nothing.
    let request = dev.poll().await.unwrap().config_data_request();
    assert!(request.is_none());
    let url = s.ddi("dev", "/configData");
    let reply = s
        .client
        .put(url)
        .header("Authorization", format!("TargetToken {token}"))
        .json(&json!({"mode": "merge", "data": {"updraft.installed_version": "x".repeat(65)}}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
    let (_, device) = s.get("/devices/dev").await;
    assert_eq!(device["current_version"], "1.0.0");
}

#[tokio::test]
async fn tokens_open_only_their_own_device() {
    let s = TestServer::start(None).await;
    let a_token = s.device("a", &[]).await;
    s.device("b", &[]).await;
    s.seed_release("1.0.0", &image(64)).await;
    let actions = s.deploy("1.0.0", &["a", "b"]).await;
    let get = |url: String, auth: String| {
        let c = s.client.clone();
        async move {
            c.get(url)
                .header("authorization", auth)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let target = format!("TargetToken {a_token}");
    assert_eq!(get(s.ddi("a", ""), target.clone()).await, 200);
    assert_eq!(get(s.ddi("b", ""), target.clone()).await, 403);
    assert_eq!(
        get(
            s.ddi("b", &format!("/deploymentBase/{}", actions[1])),
            target.clone()
        )
        .await,
        403
    );
    // a's token on a's URL but b's action.
    assert_eq!(
        get(
            s.ddi("a", &format!("/deploymentBase/{}", actions[1])),
            target.clone()
        )
        .await,
        403
    );
    assert_eq!(get(s.ddi("a", ""), "TargetToken nope".into()).await, 401);
    assert_eq!(get(s.ddi("a", ""), "Bearer x".into()).await, 401);
    assert_eq!(
        get(s.url.clone() + "/OTHER/controller/v1/a", target.clone()).await,
        404
    );
    let gateway = std::fs::read_to_string(s.dir.path().join("data/gateway-token")).unwrap();
    let gw = format!("GatewayToken {}", gateway.trim());
    assert_eq!(get(s.ddi("b", ""), gw.clone()).await, 200);
    assert_eq!(get(s.ddi("ghost", ""), gw).await, 404);
    // The hawkbit client with the gateway token reaches b's deployment.
    let gateway_client = Client::new(
        &s.url,
        "DEFAULT",
        "b",
        ClientAuthorization::GatewayToken(gateway.trim().to_string()),
        None,
        None,
        None,
    )
    .unwrap();
    let update = gateway_client
        .poll()
        .await
        .unwrap()
        .update()
        .unwrap()
        .fetch()
        .await
        .unwrap();
    assert_eq!(update.action_id(), actions[1].to_string());
}

#[tokio::test]
async fn artifacts_serve_ranges_etags_and_md5sums() {
    let s = TestServer::start(None).await;
    let token = s.device("d", &[]).await;
    let data = image(5000);
    let release = s.seed_release("1.0.0", &data).await;
    s.deploy("1.0.0", &["d"]).await;
    let url = s.ddi(
        "d",
        &format!(
            "/softwaremodules/{}/artifacts/{}",
            release.id, release.filename
        ),
    );
    let req = |range: Option<&str>, if_range: Option<&str>| {
        let mut r = s
            .client
            .get(&url)
            .header("authorization", format!("TargetToken {token}"));
        if let Some(v) = range {
            r = r.header("range", v);
        }
        if let Some(v) = if_range {
            r = r.header("if-range", v);
        }
        r.send()
    };
    let full = req(None, None).await.unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(full.headers()["content-length"], "5000");
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    let etag = full.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{}\"", release.image_sha256));
    assert_eq!(full.bytes().await.unwrap(), data);

    let part = req(Some("bytes=100-199"), None).await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 100-199/5000");
    assert_eq!(part.headers()["content-length"], "100");
    assert_eq!(part.bytes().await.unwrap(), &data[100..200]);

    let tail = req(Some("bytes=-10"), Some(&etag)).await.unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap(), &data[4990..]);
    // A stale If-Range gets the whole, current artifact.
    let stale = req(Some("bytes=0-9"), Some("\"old\"")).await.unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.bytes().await.unwrap().len(), 5000);

    for bad in [
        "bytes=5000-",
        "bytes=10-5",
        "bytes=99999999999999999999999999-",
    ] {
        let r = req(Some(bad), None).await.unwrap();
        assert_eq!(r.status(), 416, "{bad}");
        assert_eq!(r.headers()["content-range"], "bytes */5000");
    }

    let md5 = s
        .client
        .get(format!("{url}.MD5SUM"))
        .header("authorization", format!("TargetToken {token}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        md5,
        format!("{}  {}\n", release.image_md5, release.filename)
    );

    let suit = s
        .client
        .get(s.ddi(
            "d",
            &format!(
                "/softwaremodules/{}/artifacts/{}.suit",
                release.id, release.filename
            ),
        ))
        .header("authorization", format!("TargetToken {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(suit.status(), 200);
    assert_eq!(suit.bytes().await.unwrap(), "envelope of 1.0.0".as_bytes());

    for name in ["..%2F..%2Fadmin-token", "other.bin", "%2E%2E"] {
        let r = s
            .client
            .get(s.ddi(
                "d",
                &format!("/softwaremodules/{}/artifacts/{name}", release.id),
            ))
            .header("authorization", format!("TargetToken {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{name}");
    }
    // A module not assigned to this device.
    let other = s.seed_release("9.0.0", &image(10)).await;
    let r = s
        .client
        .get(s.ddi(
            "d",
            &format!("/softwaremodules/{}/artifacts/{}", other.id, other.filename),
        ))
        .header("authorization", format!("TargetToken {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn swupdate_style_feedback_with_numeric_id_and_compact_time_is_accepted() {
    let s = TestServer::start(None).await;
    let token = s.device("d", &[]).await;
    s.seed_release("1.0.0", &image(64)).await;
    let actions = s.deploy("1.0.0", &["d"]).await;
    let id = actions[0];
    let url = s.ddi("d", &format!("/deploymentBase/{id}/feedback"));
    let post = |body: Value| {
        s.client
            .post(&url)
            .header("authorization", format!("TargetToken {token}"))
            .json(&body)
            .send()
    };
    // GETs with a query string are idempotent.
    let base = s.ddi("d", &format!("/deploymentBase/{id}?c=-123"));
    for _ in 0..3 {
        let r = s
            .client
            .get(&base)
            .header("authorization", format!("TargetToken {token}"))
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(action(&s, id).await["events"].as_array().unwrap().len(), 2);

    let proceeding = json!({"id": id, "time": "20261123T193932", "status": {"execution": "proceeding", "result": {"finished": "none", "progress": {"cnt": 3, "of": 4}}, "details": []}});
    assert_eq!(post(proceeding).await.unwrap().status(), 200);
    assert_eq!(action(&s, id).await["progress"], 75);
    let iso = json!({"id": id.to_string(), "time": "2026-11-23T19:39:32Z", "status": {"execution": "downloaded", "result": {"finished": "none"}}});
    assert_eq!(post(iso).await.unwrap().status(), 200);
    let wrong_id = json!({"id": id + 100, "status": {"execution": "closed", "result": {"finished": "success"}}});
    assert_eq!(post(wrong_id).await.unwrap().status(), 400);
    let garbage = json!({"status": {"execution": "exploded", "result": {"finished": "success"}}});
    assert_eq!(post(garbage).await.unwrap().status(), 400);
    assert_eq!(action(&s, id).await["status"], "downloaded");
    let closed = json!({"id": id, "status": {"execution": "closed", "result": {"finished": "failure"}, "code": 3, "details": ["self-test failed"]}});
    assert_eq!(post(closed.clone()).await.unwrap().status(), 200);
    assert_eq!(post(closed).await.unwrap().status(), 410);
    let a = action(&s, id).await;
    assert_eq!(a["reason"], "code 3: self-test failed");
    let (_, rollout) = s.get(&format!("/deployments/{}", a["rollout_id"])).await;
    assert_eq!(rollout["failed"], 1);
}

/// Feedback read as hawkBit reads it: `progress` in any shape, `details: null`, no `id`,
/// `closed` + `none` as success, a failure on a step that is not `closed` keeps the action
/// running; the tenant in any case; artifacts carry Content-Disposition and Last-Modified.
#[tokio::test]
async fn feedback_and_artifacts_as_hawkbit_clients_expect() {
    let s = TestServer::start(None).await;
    let token = s.device("lenient-1", &[]).await;
    s.seed_release("2.0.0", &image(1000)).await;
    let actions = s.deploy("2.0.0", &["lenient-1"]).await;
    let id = actions[0];
    let post = |body: Value, tenant: &'static str| {
        let s = &s;
        let token = token.clone();
        async move {
            s.client
                .post(format!(
                    "{}/{tenant}/controller/v1/lenient-1/deploymentBase/{id}/feedback",
                    s.url
                ))
                .header("authorization", format!("TargetToken {token}"))
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Each shape of `progress` is accepted; a percentage is taken where there is one.
    for (progress, want) in [
        (json!({}), Value::Null),
        (json!({"cnt": 3}), Value::Null),
        (json!({"percentage": 42}), json!(42)),
        (json!({"cnt": 1, "of": 4}), json!(25)),
    ] {
        let body = json!({"status": {"execution": "proceeding", "result": {"finished": "none", "progress": progress}, "details": null}});
        assert_eq!(post(body, "default").await, 200, "{progress}");
        let a = action(&s, id).await;
        assert_eq!(a["status"], "downloading");
        assert_eq!(a["progress"], want, "{progress}");
    }
    // A failure on a step that is not `closed` keeps the action running.
    let body = json!({"status": {"execution": "proceeding", "result": {"finished": "failure"}, "details": ["retrying"]}});
    assert_eq!(post(body, "DeFaUlT").await, 200);
    let a = action(&s, id).await;
    assert_eq!(a["active"], true);
    assert_ne!(a["status"], "failed");

    // Artifacts name themselves and their age.
    let r = s
        .client
        .get(s.ddi("lenient-1", "/softwaremodules/1/artifacts/fw-2.0.0.bin"))
        .header("authorization", format!("TargetToken {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"fw-2.0.0.bin\""
    );
    assert!(
        r.headers()["last-modified"]
            .to_str()
            .unwrap()
            .ends_with(" GMT")
    );

    // `closed` with `none` is success.
    let body = json!({"status": {"execution": "closed", "result": {"finished": "none"}}});
    assert_eq!(post(body, "default").await, 200);
    assert_eq!(action(&s, id).await["status"], "succeeded");
}
