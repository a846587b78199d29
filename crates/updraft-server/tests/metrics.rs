//! `/metrics` after known traffic: exact counters and gauges in the Prometheus text format.

mod common;

use common::{TestServer, image};
use serde_json::{Value, json};

async fn scrape(s: &TestServer, token: Option<&str>) -> (u16, String, String) {
    let mut request = s.client.get(format!("{}/metrics", s.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let reply = request.send().await.unwrap();
    let status = reply.status().as_u16();
    let content_type = reply
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, reply.text().await.unwrap())
}

/// The sample lines of a family (no comments), sorted.
fn samples(text: &str, family: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(family))
        .map(str::to_string)
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn metrics_count_requests_reports_devices_and_deployments_exactly() {
    let s = TestServer::start(None).await;
    let metrics_token = std::fs::read_to_string(s.state.config.data_dir.join("metrics-token"))
        .unwrap()
        .trim()
        .to_string();
    // Without a token, or with a device's: refused (and counted under `metrics`).
    let (status, _, _) = scrape(&s, None).await;
    assert_eq!(status, 401);

    // api: 3 devices (201), one 404, one deployment (201).
    let token_a = s.device("a", &["lab"]).await;
    let token_b = s.device("b", &["lab"]).await;
    s.device("c", &[]).await;
    let (status, _) = s.get("/devices/nope").await;
    assert_eq!(status, 404);
    let (status, _, _) = scrape(&s, Some(&token_a)).await;
    assert_eq!(status, 401);
    s.seed_release("1.0.0", &image(64)).await;
    let actions = s.deploy("1.0.0", &["a", "b"]).await;

    // ddi: a polls, reports downloaded then success (2 reports); b fails (1 report) and then
    // reports again on its closed action (410, still a report).
    let post = |device: &str, token: &str, id: i64, body: Value| {
        s.client
            .post(s.ddi(device, &format!("/deploymentBase/{id}/feedback")))
            .header("authorization", format!("TargetToken {token}"))
            .json(&body)
            .send()
    };
    let poll = s
        .client
        .get(s.ddi("a", ""))
        .header("authorization", format!("TargetToken {token_a}"))
        .send()
        .await
        .unwrap();
    assert_eq!(poll.status(), 200);
    let downloaded = json!({"id": actions[0], "status": {"execution": "downloaded", "result": {"finished": "none"}}});
    let success = json!({"id": actions[0], "status": {"execution": "closed", "result": {"finished": "success"}}});
    let failure = json!({"id": actions[1], "status": {"execution": "closed", "result": {"finished": "failure"}, "details": ["no space"]}});
    assert_eq!(
        post("a", &token_a, actions[0], downloaded)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        post("a", &token_a, actions[0], success)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        post("b", &token_b, actions[1], failure.clone())
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        post("b", &token_b, actions[1], failure)
            .await
            .unwrap()
            .status(),
        410
    );
    // Another device's token: 403 (a request, and a report that changed nothing).
    let again = json!({"id": actions[0], "status": {"execution": "closed", "result": {"finished": "success"}}});
    assert_eq!(
        post("a", &token_b, actions[0], again)
            .await
            .unwrap()
            .status(),
        403
    );

    let (status, content_type, text) = scrape(&s, Some(&metrics_token)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(
        samples(&text, "updraft_http_requests_total"),
        [
            r#"updraft_http_requests_total{front="api",code="201"} 4"#,
            r#"updraft_http_requests_total{front="api",code="404"} 1"#,
            r#"updraft_http_requests_total{front="ddi",code="200"} 4"#,
            r#"updraft_http_requests_total{front="ddi",code="403"} 1"#,
            r#"updraft_http_requests_total{front="ddi",code="410"} 1"#,
            r#"updraft_http_requests_total{front="metrics",code="401"} 2"#,
        ]
    );
    assert_eq!(
        samples(&text, "updraft_reports_total"),
        [r#"updraft_reports_total{front="ddi"} 5"#]
    );
    assert!(samples(&text, "updraft_http_server_errors_total").is_empty());
    assert_eq!(
        samples(&text, "updraft_devices"),
        [
            r#"updraft_devices{state="failed"} 1"#,
            r#"updraft_devices{state="idle"} 1"#,
            r#"updraft_devices{state="succeeded"} 1"#,
        ]
    );
    assert_eq!(
        samples(&text, "updraft_devices_by_version"),
        [
            r#"updraft_devices_by_version{version=""} 2"#,
            r#"updraft_devices_by_version{version="1.0.0"} 1"#,
        ]
    );
    assert_eq!(
        samples(&text, "updraft_actions"),
        [
            r#"updraft_actions{status="failed"} 1"#,
            r#"updraft_actions{status="succeeded"} 1"#,
        ]
    );
    assert_eq!(
        samples(&text, "updraft_rollout_devices"),
        [
            r#"updraft_rollout_devices{rollout="1",release="1.0.0",outcome="cancelled"} 0"#,
            r#"updraft_rollout_devices{rollout="1",release="1.0.0",outcome="failed"} 1"#,
            r#"updraft_rollout_devices{rollout="1",release="1.0.0",outcome="rejected"} 0"#,
            r#"updraft_rollout_devices{rollout="1",release="1.0.0",outcome="succeeded"} 1"#,
            r#"updraft_rollout_devices{rollout="1",release="1.0.0",outcome="total"} 2"#,
        ]
    );
    for family in [
        "updraft_http_requests_total",
        "updraft_reports_total",
        "updraft_devices",
        "updraft_actions",
    ] {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
    }

    // The admin token opens it too; the scrape that just succeeded is counted now.
    let (status, _, text) = scrape(&s, Some(&s.admin)).await;
    assert_eq!(status, 200);
    assert!(
        text.contains(r#"updraft_http_requests_total{front="metrics",code="200"} 1"#),
        "{text}"
    );
}
