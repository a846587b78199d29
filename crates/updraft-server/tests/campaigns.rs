//! Campaigns end to end through the management API, with devices driven over DDI: phases,
//! the error threshold, pause, abort; and two server instances ticking one PostgreSQL.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{TestServer, image};
use serde_json::{Value, json};
use updraft_server::testing::TempPostgres;

/// A server whose campaign scheduler ticks every 20 ms.
async fn fast(database: Option<String>) -> TestServer {
    TestServer::start_with(database, |c| c.campaign_tick = Duration::from_millis(20)).await
}

struct Dev {
    id: String,
    token: String,
}

async fn devices(s: &TestServer, n: usize, tag: &str) -> Vec<Dev> {
    let mut out = Vec::new();
    for i in 0..n {
        let id = format!("{tag}-{i:03}");
        let token = s.device(&id, &[tag]).await;
        out.push(Dev { id, token });
    }
    out
}

/// The device polls `s`; returns the deployment's action id when it has one.
async fn poll(s: &TestServer, d: &Dev) -> (Option<i64>, Option<i64>) {
    let r = s
        .client
        .get(s.ddi(&d.id, ""))
        .header("Authorization", format!("TargetToken {}", d.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let id_of = |link: &str| {
        body["_links"][link]["href"].as_str().map(|h| {
            let tail = h.rsplit('/').next().unwrap();
            tail.split('?').next().unwrap().parse::<i64>().unwrap()
        })
    };
    (id_of("deploymentBase"), id_of("cancelAction"))
}

/// The device reports `execution`/`finished` on its action.
async fn feedback(s: &TestServer, d: &Dev, action: i64, execution: &str, finished: &str) -> u16 {
    s.client
        .post(s.ddi(&d.id, &format!("/deploymentBase/{action}/feedback")))
        .header("Authorization", format!("TargetToken {}", d.token))
        .json(&json!({"status": {"execution": execution, "result": {"finished": finished}}}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn campaign(s: &TestServer, id: i64) -> Value {
    let (status, body) = s.get(&format!("/campaigns/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Wait until `ok` holds for the campaign (the scheduler runs in the background).
async fn wait_for(s: &TestServer, id: i64, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let c = campaign(s, id).await;
        if ok(&c) {
            return c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}: {c:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Which devices have a deployment offered now.
async fn offered(s: &TestServer, devs: &[Dev]) -> HashMap<String, i64> {
    let mut out = HashMap::new();
    for d in devs {
        if let (Some(a), _) = poll(s, d).await {
            out.insert(d.id.clone(), a);
        }
    }
    out
}

async fn phases_threshold_pause_abort(s: TestServer) {
    let devs = devices(&s, 10, "fleet").await;
    s.seed_release("2.0.0", &image(100)).await;

    // Bad input is refused and creates nothing.
    for bad in [
        json!({"release": "9.9.9", "target": {"tag": "fleet"}, "policy": {"phases": [{"size": "all"}]}}),
        json!({"release": "2.0.0", "target": {"tag": "nobody"}, "policy": {"phases": [{"size": "all"}]}}),
        json!({"release": "2.0.0", "target": {"tag": "fleet"}, "policy": {"phases": []}}),
        json!({"release": "2.0.0", "target": {"tag": "fleet", "devices": ["fleet-000"]}, "policy": {"phases": [{"size": "all"}]}}),
        json!({"release": "2.0.0", "target": {"tag": "fleet"}, "policy": {"phases": [{"size": "all"}], "bogus": 1}}),
    ] {
        let (status, body) = s.post("/campaigns", bad.clone()).await;
        assert!((400..500).contains(&status), "{bad} -> {status} {body}");
    }
    let (_, list) = s.get("/campaigns").await;
    assert_eq!(list.as_array().unwrap().len(), 0);

    let (status, created) = s
        .post(
            "/campaigns",
            json!({
                "release": "2.0.0",
                "target": {"tag": "fleet"},
                "policy": {
                    "phases": [{"size": "20%"}, {"size": "all"}],
                    "error_threshold": {"limit": 2, "min_finished": 3, "action": "pause"}
                }
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["summary"]["status"], "draft");
    assert_eq!(created["summary"]["members"], 10);
    // A draft starts nobody.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(offered(&s, &devs).await.is_empty());

    let (status, body) = s
        .post(&format!("/campaigns/{id}/start"), json!({"by": "alice"}))
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for(&s, id, "phase 1", |c| c["summary"]["phase"] == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let first = offered(&s, &devs).await;
    assert_eq!(first.len(), 2, "phase 1 is 20 % of 10: {first:?}");

    // Phase 1 succeeds: phase 2 starts the other eight.
    for d in devs.iter().filter(|d| first.contains_key(&d.id)) {
        assert_eq!(
            feedback(&s, d, first[&d.id], "closed", "success").await,
            200
        );
    }
    wait_for(&s, id, "phase 2", |c| c["summary"]["phase"] == 2).await;
    let second = wait_until_offered(&s, &devs, 8).await;
    assert!(second.keys().all(|k| !first.contains_key(k)));

    // Two failures after three finished: the error threshold pauses the campaign.
    let rest: Vec<&Dev> = devs.iter().filter(|d| second.contains_key(&d.id)).collect();
    assert_eq!(
        feedback(&s, rest[0], second[&rest[0].id], "closed", "success").await,
        200
    );
    assert_eq!(
        feedback(&s, rest[1], second[&rest[1].id], "closed", "failure").await,
        200
    );
    assert_eq!(
        feedback(&s, rest[2], second[&rest[2].id], "closed", "failure").await,
        200
    );
    let paused = wait_for(&s, id, "the brake", |c| c["summary"]["status"] == "paused").await;
    let totals = &paused["summary"]["totals"];
    assert_eq!(totals["succeeded"], 3, "{paused:#}");
    assert_eq!(totals["failed"], 2, "{paused:#}");
    assert_eq!(paused["deployment"]["failed"], 2);
    // A paused campaign refuses a second pause; the log says who did what.
    let (status, _) = s.post(&format!("/campaigns/{id}/pause"), json!({})).await;
    assert_eq!(status, 409);
    let log: Vec<String> = paused["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                e["actor"].as_str().unwrap(),
                e["what"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        log.iter().any(|l| l == "alice: draft -> running (command)"),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("engine: running -> paused (error_threshold)")),
        "{log:?}"
    );

    // One device installs before the abort; the abort cancels the others that have not.
    let installing = rest[3];
    assert_eq!(
        feedback(&s, installing, second[&installing.id], "proceeding", "none").await,
        200
    );
    assert_eq!(
        feedback(&s, installing, second[&installing.id], "downloaded", "none").await,
        200
    );
    assert_eq!(
        feedback(&s, installing, second[&installing.id], "proceeding", "none").await,
        200
    );
    // Wait until the scheduler has fed those reports to the engine.
    let start = Instant::now();
    while s.state.store.pending_campaign_events(id).await.unwrap() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "reports not consumed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // One device fetched its deployment (it must be asked to cancel); the others never did
    // (they are cancelled at once).
    let fetched = rest[4];
    let r = s
        .client
        .get(s.ddi(
            &fetched.id,
            &format!("/deploymentBase/{}", second[&fetched.id]),
        ))
        .header("Authorization", format!("TargetToken {}", fetched.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, aborted) = s.post(&format!("/campaigns/{id}/abort"), json!({})).await;
    assert_eq!(status, 200, "{aborted}");
    assert_eq!(aborted["summary"]["status"], "aborted");
    let (deploy, cancel) = poll(&s, fetched).await;
    assert_eq!((deploy, cancel), (None, Some(second[&fetched.id])));
    for d in &rest[5..] {
        let (deploy, cancel) = poll(&s, d).await;
        assert_eq!((deploy, cancel), (None, None), "{}", d.id);
        let (_, a) = s.get(&format!("/actions/{}", second[&d.id])).await;
        assert_eq!(a["status"], "cancelled", "{a}");
    }
    // The installing device is left to finish: it still has its deployment and succeeds.
    let (deploy, cancel) = poll(&s, installing).await;
    assert_eq!((deploy, cancel), (Some(second[&installing.id]), None));
    assert_eq!(
        feedback(&s, installing, second[&installing.id], "closed", "success").await,
        200
    );
    let (status, _) = s.post(&format!("/campaigns/{id}/resume"), json!({})).await;
    assert_eq!(status, 409);
    // The engine hears the device's late success and the cancels: the counters add up.
    let c = wait_for(&s, id, "the last reports", |c| {
        c["summary"]["totals"]["succeeded"] == 4
    })
    .await;
    let totals = &c["summary"]["totals"];
    assert_eq!(totals["cancelled"], 3, "{c:#}");
    assert_eq!(totals["canceling"], 1, "{c:#}");
    assert_eq!(c["deployment"]["cancelled"], 3);

    // /metrics shows the campaign's progress from the same counters.
    let text = s
        .client
        .get(format!("{}/metrics", s.url))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        format!(
            "updraft_campaign_devices{{campaign=\"{id}\",release=\"2.0.0\",state=\"succeeded\"}} 4"
        ),
        format!(
            "updraft_campaign_devices{{campaign=\"{id}\",release=\"2.0.0\",state=\"cancelled\"}} 3"
        ),
        format!(
            "updraft_campaign_devices{{campaign=\"{id}\",release=\"2.0.0\",state=\"failed\"}} 2"
        ),
        format!("updraft_campaign_phase{{campaign=\"{id}\",status=\"aborted\"}} 2"),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    }
}

async fn wait_until_offered(s: &TestServer, devs: &[Dev], n: usize) -> HashMap<String, i64> {
    let start = Instant::now();
    loop {
        let o = offered(s, devs).await;
        if o.len() >= n || start.elapsed() > Duration::from_secs(30) {
            assert_eq!(o.len(), n, "{o:?}");
            return o;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_campaign_runs_in_phases_pauses_on_errors_and_aborts() {
    phases_threshold_pause_abort(fast(None).await).await;
}

#[tokio::test]
async fn a_campaign_runs_in_phases_pauses_on_errors_and_aborts_on_postgresql() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let url = pg.create_database("campaign_flow").unwrap();
    phases_threshold_pause_abort(fast(Some(url)).await).await;
}

/// Two `updraft serve` instances on one PostgreSQL, both ticking: devices poll either one.
/// No device is started twice, and the phases start in order, each once.
#[tokio::test]
async fn two_instances_on_one_postgresql_share_a_campaign() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let url = pg.create_database("two_instances").unwrap();
    let a = fast(Some(url.clone())).await;
    let b = fast(Some(url)).await;
    let devs = devices(&a, 40, "pair").await;
    a.seed_release("3.0.0", &image(100)).await;
    let (status, created) = a
        .post(
            "/campaigns",
            json!({
                "release": "3.0.0",
                "target": {"tag": "pair"},
                "policy": {"phases": [{"size": "10%"}, {"size": "50%"}, {"size": "all"}],
                           "rate": {"max_per_minute": 6000}}
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    let (status, _) = b.post(&format!("/campaigns/{id}/start"), json!({})).await;
    assert_eq!(status, 200);

    let start = Instant::now();
    let mut done = 0;
    while done < devs.len() {
        assert!(start.elapsed() < Duration::from_secs(60), "stuck at {done}");
        for (i, d) in devs.iter().enumerate() {
            let s = if i % 2 == 0 { &a } else { &b };
            if let (Some(action), _) = poll(s, d).await {
                assert_eq!(feedback(s, d, action, "closed", "success").await, 200);
                done += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let c = wait_for(&a, id, "completion", |c| {
        c["summary"]["status"] == "completed"
    })
    .await;
    assert_eq!(c["summary"]["totals"]["succeeded"], 40);
    assert_eq!(
        c["deployment"]["total"], 40,
        "a device was started twice: {c:#}"
    );
    let rollout = c["deployment"]["id"].as_i64().unwrap();
    let (_, detail) = a.get(&format!("/deployments/{rollout}")).await;
    let mut per_device: HashMap<String, usize> = HashMap::new();
    for act in detail["actions"].as_array().unwrap() {
        *per_device
            .entry(act["controller_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(per_device.len(), 40);
    assert!(per_device.values().all(|&n| n == 1), "{per_device:?}");
    let phases: Vec<String> = c["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["what"].as_str())
        .filter(|w| w.starts_with("phase "))
        .map(str::to_string)
        .collect();
    assert_eq!(
        phases,
        ["phase 1 started", "phase 2 started", "phase 3 started"]
    );
    let sizes: Vec<u64> = c["summary"]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["counters"]["succeeded"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, [4, 16, 20]);
}
