//! A blocking hawkBit DDI v1 client: poll, deployment, artifact download with Range/If-Range,
//! feedback (protocols.md §3).
//!
//! Everything the server sends is parsed here, once, into small owned types; a missing or
//! malformed field is a [`DdiError`], never a panic. Bodies are read with size limits, and image
//! blocks are read into the caller's block buffer.

use std::io::Read;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::AgentConfig;

/// Largest JSON answer read from the server.
const MAX_JSON: u64 = 1024 * 1024;

/// Why a DDI exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum DdiError {
    /// The connection failed or timed out.
    #[error("{url}: {source}")]
    Transport {
        /// The URL.
        url: String,
        /// Why.
        source: Box<ureq::Error>,
    },
    /// The server answered with an unexpected status.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The answer is not the JSON DDI specifies.
    #[error("{url}: unexpected answer: {message}")]
    Malformed {
        /// The URL.
        url: String,
        /// What is wrong.
        message: String,
    },
}

impl DdiError {
    /// 410 Gone: the action is no longer active.
    pub fn is_gone(&self) -> bool {
        matches!(self, DdiError::Status { status: 410, .. })
    }

    /// 404 Not Found.
    pub fn is_not_found(&self) -> bool {
        matches!(self, DdiError::Status { status: 404, .. })
    }
}

/// The poll answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollAnswer {
    /// `config.polling.sleep`.
    pub sleep: Option<Duration>,
    /// `_links.deploymentBase.href`.
    pub deployment: Option<String>,
    /// `_links.cancelAction.href`.
    pub cancel: Option<String>,
    /// `_links.installedBase.href`.
    pub installed: Option<String>,
    /// `_links.configData.href` (the server asks for the device's attributes).
    pub config_data: Option<String>,
}

/// A deployment, reduced to what the agent needs; persisted in the state directory so that a
/// restarted or rebooted agent can continue and report without the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Action id.
    pub action_id: String,
    /// The chunk's version (informational: the device trusts the signed manifest).
    pub version: String,
    /// The signed SUIT envelope artifact.
    pub manifest_url: String,
    /// The image artifact.
    pub image_url: String,
    /// `deployment.update` (`skip` | `attempt` | `forced`).
    pub update: String,
    /// `deployment.maintenanceWindow`, if given.
    pub maintenance_window: Option<String>,
}

/// One feedback report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    /// `status.execution`.
    pub execution: String,
    /// `status.result.finished`.
    pub finished: String,
    /// `status.result.progress` (cnt, of).
    pub progress: Option<(u32, u32)>,
    /// `status.code`.
    pub code: Option<i64>,
    /// `status.details`.
    pub details: Vec<String>,
}

impl Feedback {
    /// A report without progress.
    pub fn new(execution: &str, finished: &str, details: impl Into<Vec<String>>) -> Feedback {
        Feedback {
            execution: execution.into(),
            finished: finished.into(),
            progress: None,
            code: None,
            details: details.into(),
        }
    }

    /// Whether it closes the action on the server.
    pub fn is_final(&self) -> bool {
        self.execution == "closed" || self.execution == "rejected" || self.finished == "failure"
    }

    fn to_json(&self, id: &str) -> Value {
        let mut result = json!({"finished": self.finished});
        if let Some((cnt, of)) = self.progress {
            result["progress"] = json!({"cnt": cnt, "of": of});
        }
        let mut status = json!({
            "execution": self.execution,
            "result": result,
            "details": self.details,
        });
        if let Some(code) = self.code {
            status["code"] = json!(code);
        }
        json!({
            "id": id,
            "time": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            "status": status,
        })
    }
}

/// What a Range request brought.
#[derive(Debug, PartialEq, Eq)]
pub struct Block {
    /// The image offset of the bytes (the requested offset).
    pub offset: u32,
    /// Bytes read into the buffer.
    pub len: usize,
    /// The resource's ETag, if any.
    pub etag: Option<String>,
}

/// The DDI client of one device.
pub struct DdiClient {
    agent: ureq::Agent,
    base: String,
    auth: String,
    /// `scheme://host[:port]` of the configured server: the only place the token is sent.
    origin: String,
}

/// `scheme://authority` of an absolute URL, lowercased (`None` if it has no scheme).
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    Some(format!("{scheme}://{authority}").to_ascii_lowercase())
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    match cur {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parse `HH:MM:SS`.
pub fn parse_sleep(s: &str) -> Option<Duration> {
    let mut parts = s.trim().split(':');
    let mut secs = 0u64;
    for _ in 0..3 {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 6 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        secs = secs.checked_mul(60)?.checked_add(p.parse().ok()?)?;
    }
    parts.next().is_none().then_some(Duration::from_secs(secs))
}

impl DdiClient {
    /// A client for the device of `config`.
    pub fn new(config: &AgentConfig) -> DdiClient {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(30)))
            .timeout_recv_body(Some(Duration::from_secs(60)))
            .user_agent(concat!("updraft-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        DdiClient {
            agent,
            base: format!(
                "{}/{}/controller/v1/{}",
                config.server_url, config.tenant, config.controller_id
            ),
            auth: format!("TargetToken {}", config.token),
            origin: origin_of(&config.server_url).unwrap_or_default(),
        }
    }

    /// The `Authorization` value for `url`: only for the configured server's origin, so a link
    /// to another host (a CDN, or a hostile redirect in a tampered answer) never sees the token.
    /// Images need no secret to be safe: the signed manifest authenticates them.
    fn auth_for(&self, url: &str) -> Option<&str> {
        (!self.origin.is_empty() && origin_of(url).as_deref() == Some(self.origin.as_str()))
            .then_some(self.auth.as_str())
    }

    /// A GET of `url`, with the token when `url` is on the configured server.
    fn get(&self, url: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let req = self.agent.get(url);
        match self.auth_for(url) {
            Some(auth) => req.header("Authorization", auth),
            None => req,
        }
    }

    /// The controller base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn transport(url: &str, e: ureq::Error) -> DdiError {
        DdiError::Transport {
            url: url.to_string(),
            source: Box::new(e),
        }
    }

    fn status_error(url: &str, resp: &mut ureq::http::Response<ureq::Body>) -> DdiError {
        let body = resp
            .body_mut()
            .with_config()
            .limit(512)
            .lossy_utf8(true)
            .read_to_string()
            .unwrap_or_default();
        DdiError::Status {
            url: url.to_string(),
            status: resp.status().as_u16(),
            body: body.chars().take(200).collect(),
        }
    }

    fn get_json(&self, url: &str) -> Result<Value, DdiError> {
        let mut resp = self
            .get(url)
            .header("Accept", "application/hal+json, application/json")
            .call()
            .map_err(|e| Self::transport(url, e))?;
        if resp.status().as_u16() != 200 {
            return Err(Self::status_error(url, &mut resp));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_JSON)
            .read_to_vec()
            .map_err(|e| Self::transport(url, e))?;
        serde_json::from_slice(&body).map_err(|e| DdiError::Malformed {
            url: url.to_string(),
            message: e.to_string(),
        })
    }

    /// `GET base`.
    pub fn poll(&self) -> Result<PollAnswer, DdiError> {
        let v = self.get_json(&self.base)?;
        let link = |name: &str| text(&v, &["_links", name, "href"]);
        Ok(PollAnswer {
            sleep: text(&v, &["config", "polling", "sleep"]).and_then(|s| parse_sleep(&s)),
            deployment: link("deploymentBase"),
            cancel: link("cancelAction"),
            installed: link("installedBase"),
            config_data: link("configData"),
        })
    }

    /// `GET deploymentBase/{id}`: the SUIT envelope artifact (`*.suit`) and the image artifact.
    pub fn deployment(&self, url: &str) -> Result<Deployment, DdiError> {
        let v = self.get_json(url)?;
        let bad = |message: &str| DdiError::Malformed {
            url: url.to_string(),
            message: message.to_string(),
        };
        let action_id = text(&v, &["id"]).ok_or_else(|| bad("no `id`"))?;
        let d = v.get("deployment").ok_or_else(|| bad("no `deployment`"))?;
        let chunk = d
            .get("chunks")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
            .ok_or_else(|| bad("no `deployment.chunks`"))?;
        let artifacts = chunk
            .get("artifacts")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no `artifacts` in the chunk"))?;
        let href = |a: &Value| {
            text(a, &["_links", "download-http", "href"])
                .or_else(|| text(a, &["_links", "download", "href"]))
        };
        let name = |a: &Value| text(a, &["filename"]).unwrap_or_default();
        let manifest = artifacts
            .iter()
            .find(|a| name(a).ends_with(".suit"))
            .ok_or_else(|| bad("no `.suit` manifest artifact"))?;
        let manifest_name = name(manifest);
        let image_name = manifest_name.trim_end_matches(".suit");
        let image = artifacts
            .iter()
            .find(|a| name(a) == image_name)
            .or_else(|| artifacts.iter().find(|a| !name(a).ends_with(".suit")))
            .ok_or_else(|| bad("no image artifact"))?;
        Ok(Deployment {
            action_id,
            version: text(chunk, &["version"]).unwrap_or_default(),
            manifest_url: href(manifest).ok_or_else(|| bad("no manifest download link"))?,
            image_url: href(image).ok_or_else(|| bad("no image download link"))?,
            update: text(d, &["update"]).unwrap_or_else(|| "forced".into()),
            maintenance_window: text(d, &["maintenanceWindow"]),
        })
    }

    /// `GET cancelAction/{id}`: the action id to stop.
    pub fn cancel_action(&self, url: &str) -> Result<String, DdiError> {
        let v = self.get_json(url)?;
        text(&v, &["cancelAction", "stopId"])
            .or_else(|| text(&v, &["id"]))
            .ok_or_else(|| DdiError::Malformed {
                url: url.to_string(),
                message: "no `cancelAction.stopId`".into(),
            })
    }

    /// A small artifact (the envelope), at most `limit` bytes.
    pub fn fetch_small(&self, url: &str, limit: u64) -> Result<Vec<u8>, DdiError> {
        let mut resp = self.get(url).call().map_err(|e| Self::transport(url, e))?;
        if resp.status().as_u16() != 200 {
            return Err(Self::status_error(url, &mut resp));
        }
        resp.body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| Self::transport(url, e))
    }

    /// Read image bytes at `offset` into `buf` (`Range: bytes=offset-`, `If-Range: etag`).
    /// A 200 answer (no range support, or the resource changed) is read from 0 and skipped to
    /// `offset`; the core notices a changed ETag and starts again. Reads at most `buf.len()`
    /// bytes: memory stays bounded by the block size. `len == 0` means the resource ended.
    pub fn fetch_block(
        &self,
        url: &str,
        offset: u32,
        buf: &mut [u8],
        if_range: Option<&str>,
    ) -> Result<Block, DdiError> {
        let last = u64::from(offset) + buf.len().max(1) as u64 - 1;
        let mut req = self
            .get(url)
            .header("Range", format!("bytes={offset}-{last}"));
        if let Some(tag) = if_range {
            req = req.header("If-Range", tag);
        }
        let mut resp = req.call().map_err(|e| Self::transport(url, e))?;
        let status = resp.status().as_u16();
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let skip = match status {
            206 => {
                let start = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if start != Some(u64::from(offset)) {
                    return Err(DdiError::Malformed {
                        url: url.to_string(),
                        message: format!("206 for offset {offset} with Content-Range {start:?}"),
                    });
                }
                0
            }
            200 => u64::from(offset),
            416 => {
                return Ok(Block {
                    offset,
                    len: 0,
                    etag,
                });
            }
            _ => return Err(Self::status_error(url, &mut resp)),
        };
        let mut reader = resp.body_mut().as_reader();
        if skip > 0 {
            let skipped = std::io::copy(&mut (&mut reader).take(skip), &mut std::io::sink())
                .map_err(|e| DdiError::Malformed {
                    url: url.to_string(),
                    message: e.to_string(),
                })?;
            if skipped < skip {
                return Ok(Block {
                    offset,
                    len: 0,
                    etag,
                });
            }
        }
        let mut len = 0;
        while len < buf.len() {
            let Some(rest) = buf.get_mut(len..) else {
                break;
            };
            match reader.read(rest) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(DdiError::Malformed {
                        url: url.to_string(),
                        message: format!("body: {e}"),
                    });
                }
            }
        }
        Ok(Block { offset, len, etag })
    }

    /// `POST deploymentBase/{id}/feedback`.
    pub fn feedback(&self, action_id: &str, fb: &Feedback) -> Result<(), DdiError> {
        let url = format!("{}/deploymentBase/{action_id}/feedback", self.base);
        self.post(&url, &fb.to_json(action_id))
    }

    /// `POST cancelAction/{id}/feedback`.
    pub fn cancel_feedback(&self, action_id: &str, fb: &Feedback) -> Result<(), DdiError> {
        let url = format!("{}/cancelAction/{action_id}/feedback", self.base);
        self.post(&url, &fb.to_json(action_id))
    }

    /// `PUT configData` with `mode: merge`.
    pub fn config_data(&self, url: &str, attributes: &[(&str, String)]) -> Result<(), DdiError> {
        let data: serde_json::Map<String, Value> = attributes
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::String(v.clone())))
            .collect();
        self.send(
            self.agent.put(url),
            url,
            &json!({"mode": "merge", "data": data}),
        )
    }

    fn post(&self, url: &str, body: &Value) -> Result<(), DdiError> {
        self.send(self.agent.post(url), url, body)
    }

    fn send(
        &self,
        req: ureq::RequestBuilder<ureq::typestate::WithBody>,
        url: &str,
        body: &Value,
    ) -> Result<(), DdiError> {
        let req = match self.auth_for(url) {
            Some(auth) => req.header("Authorization", auth),
            None => req,
        };
        let mut resp = req
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .map_err(|e| Self::transport(url, e))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(Self::status_error(url, &mut resp))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_sleep_parses_hh_mm_ss_only() {
        assert_eq!(parse_sleep("00:05:00"), Some(Duration::from_secs(300)));
        assert_eq!(parse_sleep("01:00:01"), Some(Duration::from_secs(3601)));
        assert_eq!(parse_sleep("00:00:01"), Some(Duration::from_secs(1)));
        for bad in [
            "",
            "5",
            "00:05",
            "00:05:00:00",
            "aa:bb:cc",
            "-1:00:00",
            "00: 5:00",
        ] {
            assert_eq!(parse_sleep(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_token_goes_only_to_the_configured_server() {
        let client = DdiClient {
            agent: ureq::Agent::new_with_defaults(),
            base: "http://127.0.0.1:8080/DEFAULT/controller/v1/dev".into(),
            auth: "TargetToken secret".into(),
            origin: origin_of("http://127.0.0.1:8080").unwrap_or_default(),
        };
        let ours = "http://127.0.0.1:8080/DEFAULT/controller/v1/dev/softwaremodules/1/artifacts/a";
        assert_eq!(client.auth_for(ours), Some("TargetToken secret"));
        assert_eq!(
            client.auth_for("HTTP://127.0.0.1:8080?x=1"),
            Some("TargetToken secret")
        );
        for other in [
            "http://127.0.0.1:8081/DEFAULT/controller/v1/dev",
            "https://127.0.0.1:8080/DEFAULT/controller/v1/dev",
            "http://127.0.0.1:8080.evil.example/DEFAULT",
            "http://evil.example/?http://127.0.0.1:8080/",
            "http://user@127.0.0.1:8080/",
            "/relative/path",
        ] {
            assert_eq!(client.auth_for(other), None, "{other}");
        }
    }
}
