//! The management API client the admin subcommands share: server URL, admin token, requests,
//! and turning the server's JSON errors into messages a person can act on.

use std::path::PathBuf;

use anyhow::{Context, bail};
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::Value;

/// Where the server is and how to authenticate (shared by the admin subcommands).
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Base URL of the Updraft server.
    #[arg(
        long,
        global = true,
        env = "UPDRAFT_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// File holding the admin token (written by `updraft serve` at first start).
    #[arg(
        long,
        global = true,
        env = "UPDRAFT_TOKEN_FILE",
        default_value = "./updraft-data/admin-token"
    )]
    pub token_file: PathBuf,
    /// Print JSON (lists as `{"items": [...]}`, times in RFC 3339) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A connected client.
pub struct Api {
    base: String,
    token: String,
    http: Client,
}

impl Api {
    /// Read the token and prepare the client.
    pub fn new(args: &ServerArgs) -> anyhow::Result<Api> {
        let token = std::fs::read_to_string(&args.token_file)
            .with_context(|| {
                format!(
                    "reading the admin token from {} (pass --token-file, or run this next to the server's data dir)",
                    args.token_file.display()
                )
            })?
            .trim()
            .to_string();
        let http = Client::builder()
            .timeout(None)
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            base: args.server.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    /// The server's base URL, for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The admin token (the upload builds its own request).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A request to `/api/v1{path}` with the admin token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Send, and return the JSON answer or the server's error as a message.
    pub fn send(&self, request: RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .send()
            .with_context(|| format!("contacting the server at {}", self.base))?;
        answer(response)
    }
}

fn answer(response: Response) -> anyhow::Result<Value> {
    let status = response.status().as_u16();
    let text = response.text().context("reading the server's answer")?;
    interpret(status, text)
}

/// The JSON of a successful answer, or the server's refusal (status, message and code from its
/// JSON error body) as the error.
pub fn interpret(status: u16, text: String) -> anyhow::Result<Value> {
    let status = reqwest::StatusCode::from_u16(status)
        .context("the server answered an invalid status code")?;
    if status.is_success() {
        if text.is_empty() {
            return Ok(Value::Null);
        }
        return serde_json::from_str(&text).context("the server's answer is not JSON");
    }
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| {
            let e = &v["error"];
            Some(format!(
                "{} ({})",
                e["message"].as_str()?,
                e["code"].as_str()?
            ))
        })
        .unwrap_or(text);
    bail!("the server refused: {status}: {message}")
}
