//! `/metrics`: the Prometheus text exposition format 0.0.4.
//!
//! Two kinds of figures:
//! - counters kept in process by a middleware around every route: HTTP requests by front
//!   (`api`, `ddi`, `metrics`, `other`) and status code, server errors (5xx) by front, and DDI
//!   status reports (feedback requests) received. They start at zero with each process, as
//!   Prometheus counters may;
//! - gauges read from the store at each scrape ([`crate::store::Store::fleet_counts`]):
//!   devices by update state and by version, actions by status (GROUP BY over indexed
//!   columns, so a scrape costs a few index scans, not a pass per device) and the counters of
//!   the [`ROLLOUTS_SHOWN`] newest rollouts.
//!
//! The scrape needs `Authorization: Bearer` with the metrics token (`<data-dir>/metrics-token`,
//! read-only: it opens nothing else) or the admin token: device counts and versions say a lot
//! about a fleet, so they are not public.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::ApiError;
use crate::server::AppState;
use crate::tokens;

/// How many of the newest rollouts `/metrics` lists (bounds the series per scrape).
pub const ROLLOUTS_SHOWN: i64 = 50;

/// The part of the server a request went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Front {
    /// The management API (`/api/v1`).
    Api,
    /// The hawkBit DDI device API.
    Ddi,
    /// `/metrics` itself.
    Metrics,
    /// Anything else (unknown paths).
    Other,
}

impl Front {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Front::Api => "api",
            Front::Ddi => "ddi",
            Front::Metrics => "metrics",
            Front::Other => "other",
        }
    }

    /// Which front serves `path` (`/{tenant}/controller/v1/...` is DDI).
    pub fn of(path: &str) -> Front {
        if path == "/metrics" {
            Front::Metrics
        } else if path == "/api" || path.starts_with("/api/") {
            Front::Api
        } else if path.split('/').nth(2).is_some_and(|s| s == "controller")
            && path.split('/').nth(3) == Some("v1")
        {
            Front::Ddi
        } else {
            Front::Other
        }
    }
}

/// The in-process counters and the metrics token.
#[derive(Debug)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(Front, u16), u64>>,
    reports: AtomicU64,
    token_hash: String,
}

impl Metrics {
    /// Counters at zero; scrapes authenticate with the token whose SHA-256 (hex) is given.
    pub fn new(token_hash: String) -> Metrics {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            reports: AtomicU64::new(0),
            token_hash,
        }
    }

    /// Count one answered request.
    pub fn count(&self, front: Front, status: u16, is_report: bool) {
        if let Ok(mut map) = self.requests.lock() {
            *map.entry((front, status)).or_insert(0) += 1;
        }
        if is_report {
            self.reports.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> BTreeMap<(Front, u16), u64> {
        self.requests.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// Whether a DDI request is a status report (`.../deploymentBase/{id}/feedback` or
/// `.../cancelAction/{id}/feedback`).
fn is_report(method: &Method, path: &str) -> bool {
    method == Method::POST && path.ends_with("/feedback")
}

/// Middleware: count every request by front and answered status.
pub async fn count_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let front = Front::of(path);
    let report = front == Front::Ddi && is_report(request.method(), path);
    let response = next.run(request).await;
    state
        .metrics
        .count(front, response.status().as_u16(), report);
    response
}

/// `GET /metrics`.
pub async fn scrape(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| tokens::hash(t.trim()));
    let allowed = presented.is_some_and(|h| {
        tokens::equal(h.as_bytes(), state.metrics.token_hash.as_bytes())
            || tokens::equal(h.as_bytes(), state.admin_token_hash.as_bytes())
    });
    if !allowed {
        return ApiError::unauthorized(
            "`Authorization: Bearer <token>` with the metrics token (<data-dir>/metrics-token) \
             or the admin token",
        )
        .into_response();
    }
    match render(&state).await {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The whole exposition.
pub async fn render(state: &AppState) -> Result<String, crate::store::StoreError> {
    let counts = state.store.fleet_counts(ROLLOUTS_SHOWN).await?;
    let requests = state.metrics.snapshot();
    let mut out = String::new();

    family(
        &mut out,
        "updraft_http_requests_total",
        "counter",
        "HTTP requests answered, by front and status code.",
    );
    for ((front, status), n) in &requests {
        let _ = writeln!(
            out,
            "updraft_http_requests_total{{front=\"{}\",code=\"{status}\"}} {n}",
            front.as_str()
        );
    }
    family(
        &mut out,
        "updraft_http_server_errors_total",
        "counter",
        "HTTP requests answered with a 5xx status, by front.",
    );
    let mut errors: BTreeMap<Front, u64> = BTreeMap::new();
    for ((front, status), n) in &requests {
        if *status >= 500 {
            *errors.entry(*front).or_insert(0) += n;
        }
    }
    for (front, n) in &errors {
        let _ = writeln!(
            out,
            "updraft_http_server_errors_total{{front=\"{}\"}} {n}",
            front.as_str()
        );
    }
    family(
        &mut out,
        "updraft_reports_total",
        "counter",
        "Device status reports received (DDI feedback requests).",
    );
    let _ = writeln!(
        out,
        "updraft_reports_total{{front=\"ddi\"}} {}",
        state.metrics.reports.load(Ordering::Relaxed)
    );

    family(
        &mut out,
        "updraft_devices",
        "gauge",
        "Registered devices by update state.",
    );
    for (s, n) in &counts.devices_by_state {
        let _ = writeln!(out, "updraft_devices{{state=\"{}\"}} {n}", label(s));
    }
    family(
        &mut out,
        "updraft_devices_by_version",
        "gauge",
        "Registered devices by the version they run (empty: not known yet).",
    );
    for (v, n) in &counts.devices_by_version {
        let _ = writeln!(
            out,
            "updraft_devices_by_version{{version=\"{}\"}} {n}",
            label(v.as_deref().unwrap_or(""))
        );
    }
    family(
        &mut out,
        "updraft_actions",
        "gauge",
        "Per-device deployments (actions) by status.",
    );
    for (s, n) in &counts.actions_by_status {
        let _ = writeln!(out, "updraft_actions{{status=\"{}\"}} {n}", label(s));
    }
    family(
        &mut out,
        "updraft_rollout_devices",
        "gauge",
        "Devices of each of the newest rollouts, by outcome (total = all targeted).",
    );
    for r in &counts.rollouts {
        for (outcome, n) in [
            ("total", r.total),
            ("succeeded", r.succeeded),
            ("failed", r.failed),
            ("rejected", r.rejected),
            ("cancelled", r.cancelled),
        ] {
            let _ = writeln!(
                out,
                "updraft_rollout_devices{{rollout=\"{}\",release=\"{}\",outcome=\"{outcome}\"}} {n}",
                r.id,
                label(&r.release)
            );
        }
    }
    family(
        &mut out,
        "updraft_campaign_devices",
        "gauge",
        "Devices of each of the newest campaigns, by where they are (from the campaign's counters).",
    );
    family(
        &mut out,
        "updraft_campaign_phase",
        "gauge",
        "The highest phase each of the newest campaigns has started (0: none), labelled by status.",
    );
    let campaigns = match state.fleet.campaigns(None, ROLLOUTS_SHOWN).await {
        Ok(c) => c,
        Err(crate::fleet::FleetError::Store(e)) => return Err(e),
        Err(_) => return Err(crate::store::StoreError::Corrupt("campaigns.state")),
    };
    for c in campaigns {
        let t = &c.summary.totals;
        for (state, n) in [
            ("members", c.summary.members),
            ("queued", c.summary.queued),
            ("active", t.active),
            ("retry_wait", t.retry_wait),
            ("canceling", t.canceling),
            ("succeeded", t.succeeded),
            ("failed", t.failed),
            ("rejected", t.rejected),
            ("timed_out", t.timed_out),
            ("cancelled", t.cancelled),
            ("skipped", c.summary.skipped),
        ] {
            let _ = writeln!(
                out,
                "updraft_campaign_devices{{campaign=\"{}\",release=\"{}\",state=\"{state}\"}} {n}",
                c.id,
                label(&c.release)
            );
        }
        let _ = writeln!(
            out,
            "updraft_campaign_phase{{campaign=\"{}\",status=\"{}\"}} {}",
            c.id,
            c.summary.status.as_str(),
            c.summary.phase
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_their_front() {
        assert_eq!(Front::of("/api/v1/devices"), Front::Api);
        assert_eq!(Front::of("/DEFAULT/controller/v1/dev-1"), Front::Ddi);
        assert_eq!(
            Front::of("/t/controller/v1/d/deploymentBase/3/feedback"),
            Front::Ddi
        );
        assert_eq!(Front::of("/metrics"), Front::Metrics);
        assert_eq!(Front::of("/"), Front::Other);
        assert_eq!(Front::of("/apix"), Front::Other);
        assert_eq!(Front::of("/t/controller/v2/d"), Front::Other);
        assert!(is_report(
            &Method::POST,
            "/t/controller/v1/d/cancelAction/1/feedback"
        ));
        assert!(!is_report(
            &Method::GET,
            "/t/controller/v1/d/deploymentBase/1"
        ));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(label("1.2.0"), "1.2.0");
    }
}
