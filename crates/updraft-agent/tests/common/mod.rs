//! Test harness: a minimal hawkBit DDI stand-in (std TCP, one thread per connection, one
//! response per connection) that serves one deployment, records feedback and every image byte
//! it writes; and a device fixture (keys, images as shell scripts, config, the real binary).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use updraft_manifest::{Algorithm, ManifestSpec, SigningKey, Uuid};

pub const TOKEN: &str = "device-secret";
pub const DEVICE: &str = "dev-1";
pub const VENDOR: &str = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe";
pub const CLASS: &str = "linux-test-device";

/// One image response: which agent run asked (epoch), the range start, bytes written.
#[derive(Clone, Copy, Debug)]
pub struct Served {
    pub epoch: u32,
    pub start: u64,
    pub written: u64,
}

#[derive(Default)]
pub struct DdiState {
    pub action_id: u32,
    pub active: bool,
    pub version: String,
    pub envelope: Vec<u8>,
    pub image: Vec<u8>,
    pub feedback: Vec<Value>,
    /// The server asks the device to cancel the action.
    pub cancel: bool,
    pub cancel_feedback: Vec<Value>,
    /// The last `PUT configData` body (the link is offered until one arrives).
    pub config_data: Option<Value>,
    pub served: Vec<Served>,
    pub epoch: u32,
    /// Pause per KiB of image written (so a kill lands mid-download).
    pub throttle: Option<Duration>,
}

pub struct DdiServer {
    pub url: String,
    pub state: Arc<Mutex<DdiState>>,
}

impl DdiServer {
    pub fn start() -> DdiServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(DdiState::default()));
        let (st, base) = (state.clone(), url.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (st, base) = (st.clone(), base.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &st, &base);
                });
            }
        });
        DdiServer { url, state }
    }

    pub fn deploy(&self, action_id: u32, version: &str, envelope: Vec<u8>, image: Vec<u8>) {
        let mut s = self.state.lock().unwrap();
        s.action_id = action_id;
        s.active = true;
        s.version = version.into();
        s.envelope = envelope;
        s.image = image;
    }

    pub fn feedback(&self) -> Vec<Value> {
        self.state.lock().unwrap().feedback.clone()
    }

    /// Wait for a final report (closed, rejected or failure); panics after `timeout`.
    pub fn wait_final(&self, timeout: Duration) -> Value {
        let t = Instant::now();
        loop {
            if let Some(f) = self.feedback().into_iter().find(is_final) {
                return f;
            }
            assert!(
                t.elapsed() < timeout,
                "no final feedback; got {:#?}",
                self.feedback()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn is_final(f: &Value) -> bool {
    let ex = f["status"]["execution"].as_str().unwrap_or("");
    ex == "closed" || ex == "rejected" || f["status"]["result"]["finished"] == "failure"
}

pub fn details(f: &Value) -> String {
    f["status"]["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

fn respond(
    s: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)
}

fn serve(stream: TcpStream, st: &Mutex<DdiState>, base: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let path = target.split('?').next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = vec![
        0;
        header("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0)
    ];
    reader.read_exact(&mut body)?;
    if header("authorization").as_deref() != Some(&format!("TargetToken {TOKEN}")) {
        return respond(&mut out, "401 Unauthorized", &[], b"{}");
    }
    let ctl = format!("/DEFAULT/controller/v1/{DEVICE}");
    let Some(rest) = path.strip_prefix(&ctl) else {
        return respond(&mut out, "404 Not Found", &[], b"{}");
    };
    let json_ok = |out: &mut TcpStream, v: Value| {
        respond(
            out,
            "200 OK",
            &[("Content-Type", "application/json".into())],
            v.to_string().as_bytes(),
        )
    };
    let (action, active, version) = {
        let s = st.lock().unwrap();
        (s.action_id, s.active, s.version.clone())
    };
    let dir = format!("{base}{ctl}/softwaremodules/1/artifacts");
    match (method.as_str(), rest) {
        ("GET", "") => {
            let mut links = json!({});
            let (cancel, asked) = {
                let s = st.lock().unwrap();
                (s.cancel, s.config_data.is_none())
            };
            if asked {
                links["configData"] = json!({"href": format!("{base}{ctl}/configData")});
            }
            if active && cancel {
                links["cancelAction"] =
                    json!({"href": format!("{base}{ctl}/cancelAction/{action}")});
            } else if active {
                links["deploymentBase"] =
                    json!({"href": format!("{base}{ctl}/deploymentBase/{action}?c=1")});
            }
            json_ok(
                &mut out,
                json!({"config": {"polling": {"sleep": "00:00:01"}}, "_links": links}),
            )
        }
        ("GET", r) if r == format!("/deploymentBase/{action}") => {
            let art = |name: &str| {
                json!({"filename": name, "size": 0, "hashes": {},
                       "_links": {"download-http": {"href": format!("{dir}/{name}")}}})
            };
            json_ok(
                &mut out,
                json!({"id": action.to_string(), "deployment": {"download": "forced", "update": "forced",
                    "chunks": [{"part": "os", "version": version, "name": "firmware",
                                "artifacts": [art("fw.bin.suit"), art("fw.bin")]}]},
                    "actionHistory": {"status": "RUNNING", "messages": []}}),
            )
        }
        ("POST", r) if r == format!("/deploymentBase/{action}/feedback") => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut s = st.lock().unwrap();
            if !s.active {
                drop(s);
                return respond(&mut out, "410 Gone", &[], b"{}");
            }
            if is_final(&v) {
                s.active = false;
            }
            s.feedback.push(v);
            drop(s);
            respond(&mut out, "200 OK", &[], b"")
        }
        ("PUT", "/configData") => {
            st.lock().unwrap().config_data = serde_json::from_slice(&body).ok();
            respond(&mut out, "200 OK", &[], b"")
        }
        ("GET", r) if r == format!("/cancelAction/{action}") => json_ok(
            &mut out,
            json!({"id": action.to_string(), "cancelAction": {"stopId": action.to_string()}}),
        ),
        ("POST", r) if r == format!("/cancelAction/{action}/feedback") => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut s = st.lock().unwrap();
            if v["status"]["execution"] == "closed" {
                s.active = false;
            }
            s.cancel_feedback.push(v);
            drop(s);
            respond(&mut out, "200 OK", &[], b"")
        }
        ("GET", "/softwaremodules/1/artifacts/fw.bin.suit") => {
            let env = st.lock().unwrap().envelope.clone();
            respond(&mut out, "200 OK", &[], &env)
        }
        ("GET", "/softwaremodules/1/artifacts/fw.bin") => serve_image(&mut out, st, &header),
        _ => respond(&mut out, "404 Not Found", &[], b"{}"),
    }
}

fn serve_image(
    out: &mut TcpStream,
    st: &Mutex<DdiState>,
    header: &dyn Fn(&str) -> Option<String>,
) -> std::io::Result<()> {
    let (image, throttle, epoch) = {
        let s = st.lock().unwrap();
        (s.image.clone(), s.throttle, s.epoch)
    };
    let etag = format!(
        "\"{}\"",
        hex::encode(updraft_device::verify::sha256(&image))
    );
    let size = image.len() as u64;
    let if_range_ok = header("if-range").is_none_or(|t| t == etag);
    let range = header("range").filter(|_| if_range_ok).and_then(|r| {
        let r = r.strip_prefix("bytes=")?.to_string();
        let (a, b) = r.split_once('-')?;
        let a: u64 = a.parse().ok()?;
        let b: u64 = b.parse::<u64>().ok().unwrap_or(size - 1).min(size - 1);
        Some((a, b))
    });
    let (status, start, end) = match range {
        Some((a, _)) if a >= size => {
            return respond(out, "416 Range Not Satisfiable", &[], b"");
        }
        Some((a, b)) => ("206 Partial Content", a, b + 1),
        None => ("200 OK", 0, size),
    };
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nETag: {etag}\r\nConnection: close\r\n",
        end - start
    );
    if range.is_some() {
        head.push_str(&format!(
            "Content-Range: bytes {start}-{}/{size}\r\n",
            end - 1
        ));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    let mut written = 0u64;
    let mut result = Ok(());
    for chunk in image[start as usize..end as usize].chunks(1024) {
        if let Some(t) = throttle {
            std::thread::sleep(t);
        }
        if let Err(e) = out.write_all(chunk) {
            result = Err(e);
            break;
        }
        written += chunk.len() as u64;
    }
    st.lock().unwrap().served.push(Served {
        epoch,
        start,
        written,
    });
    result
}

/// An image that is a program: prints `version`, passes or fails `--self-test`, otherwise
/// execs the agent's `run` step. `pad` bytes of comment make it larger.
pub fn script_image(version: &str, self_test_passes: bool, pad: usize) -> Vec<u8> {
    let mut s = format!(
        "#!/bin/sh\ncase \"$1\" in\n--version) echo {version}; exit 0;;\n--self-test) exit {};;\nesac\nexec \"$UPDRAFT_AGENT\" run \"$@\"\n",
        if self_test_passes { 0 } else { 1 }
    )
    .into_bytes();
    let mut i = 0u32;
    while s.len() < pad {
        s.extend_from_slice(format!("# padding line {i} {version}\n").as_bytes());
        i += 1;
    }
    s
}

pub struct Device {
    pub dir: tempfile::TempDir,
    /// The release key of a device made by [`Device::new`] (signs envelopes for the stand-in).
    pub key: Option<SigningKey>,
    pub config: PathBuf,
    pub child: Option<Child>,
}

pub fn vendor() -> Uuid {
    Uuid::parse_str(VENDOR).unwrap()
}

/// Where a device polls and who it is there.
pub struct Target<'a> {
    pub url: &'a str,
    pub controller_id: &'a str,
    pub token: &'a str,
}

impl Device {
    /// A device of the DDI stand-in with `v1` provisioned in slot A (anti-rollback counter
    /// `sequence`), trusting a release key of its own ([`Device::envelope`] signs with it).
    pub fn new(server: &DdiServer, v1: &[u8], sequence: u64, block_size: u32) -> Device {
        let key = SigningKey::generate(Algorithm::Ed25519);
        let target = Target {
            url: &server.url,
            controller_id: DEVICE,
            token: TOKEN,
        };
        let public = key.public_key().to_public_key_pem().unwrap();
        let mut dev = Device::provision(&target, &public, v1, sequence, block_size);
        dev.key = Some(key);
        dev
    }

    /// A device polling `target`, trusting the public key `trusted_key_pem`, with `v1`
    /// provisioned in slot A (anti-rollback counter `sequence`). Not started: see
    /// [`Device::boot`].
    pub fn provision(
        target: &Target<'_>,
        trusted_key_pem: &str,
        v1: &[u8],
        sequence: u64,
        block_size: u32,
    ) -> Device {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("release.pub.pem"), trusted_key_pem).unwrap();
        let config = dir.path().join("agent.toml");
        std::fs::write(
            &config,
            format!(
                r#"[server]
url = "{url}"
controller_id = "{controller_id}"
token = "{token}"

[device]
vendor_id = "{VENDOR}"
class = "{CLASS}"
trusted_keys = ["release.pub.pem"]
slot_a = "slot-a"
slot_b = "slot-b"
slot_size = 1048576
state_dir = "state"

[hooks]
self_test = '"$UPDRAFT_IMAGE" --self-test'

[update]
block_size = {block_size}
poll_interval = "200ms"
poll_jitter = "0s"
"#,
                url = target.url,
                controller_id = target.controller_id,
                token = target.token,
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("v1.img"), v1).unwrap();
        let out = agent()
            .args(["provision", "--config"])
            .arg(&config)
            .arg("--image")
            .arg(dir.path().join("v1.img"))
            .args(["--sequence", &sequence.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Device {
            dir,
            key: None,
            config,
            child: None,
        }
    }

    /// Add an `authorize` hook command to the config.
    pub fn set_authorize(&self, cmd: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let text = text.replace("[hooks]\n", &format!("[hooks]\nauthorize = '{cmd}'\n"));
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A signed envelope for `image` (no URI: the DDI link says where it is).
    pub fn envelope(&self, image: &[u8], sequence: u64, version: &str) -> Vec<u8> {
        let spec = ManifestSpec {
            sequence,
            vendor_id: vendor(),
            class_id: updraft_manifest::class_id(&vendor(), CLASS),
            component_id: Vec::new(),
            image_digest: updraft_device::verify::sha256(image),
            image_size: image.len() as u64,
            uri: None,
            version: Some(version.into()),
            precursor_digest: None,
            expires_at: None,
        };
        let key = self.key.as_ref().expect("a device made by Device::new");
        updraft_manifest::sign(&spec, key)
    }

    /// Start `updraft-agent boot` (it execs the image, which execs `run`: one pid throughout).
    pub fn boot(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("agent.log"))
            .unwrap();
        let child = agent()
            .args(["boot", "--config"])
            .arg(&self.config)
            .env("UPDRAFT_AGENT", env!("CARGO_BIN_EXE_updraft-agent"))
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL the agent.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn status(&self) -> String {
        let out = agent()
            .args(["status", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("agent.log")).unwrap_or_default()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn agent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_updraft-agent"));
    c.stdin(Stdio::null());
    c
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

pub fn status_line<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim_start_matches(':').trim())
        .unwrap_or("")
}

pub fn slot(dev: &Device, name: &str) -> Vec<u8> {
    std::fs::read(dev.path(name)).unwrap_or_default()
}

pub fn file_exists(p: &Path) -> bool {
    p.exists()
}
