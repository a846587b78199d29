//! The hawkBit DDI device API against swupdate's suricatta (Debian `swupdate`), a DDI client we
//! did not write: it polls, downloads a signed `.swu`, installs it, reports progress, and after a
//! "restart" (`-c 2`) closes the action; an incompatible device reports failure.
//!
//! Skipped with a notice when `swupdate`, `openssl` or `cpio` is missing, unless `CI` is set.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;
use ed25519_dalek::pkcs8::EncodePublicKey;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use updraft_manifest::{ManifestSpec, SigningKey, Uuid, sign};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A signed `.swu` whose one file is installed to `target`.
fn build_swu(dir: &Path, payload: &[u8], target: &Path) -> PathBuf {
    run(Command::new("openssl").current_dir(dir).args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "cert.pem",
        "-subj",
        "/CN=updraft-test",
        "-days",
        "2",
        "-addext",
        "keyUsage=digitalSignature",
        "-addext",
        "extendedKeyUsage=emailProtection",
    ]));
    std::fs::write(dir.join("payload.bin"), payload).unwrap();
    let description = format!(
        "software =\n{{\n\tversion = \"2.0.0\";\n\thardware-compatibility: [ \"1.0\" ];\n\tfiles: (\n\t\t{{\n\t\t\tfilename = \"payload.bin\";\n\t\t\tpath = \"{}\";\n\t\t\tsha256 = \"{}\";\n\t\t}}\n\t);\n}}\n",
        target.display(),
        hex::encode(Sha256::digest(payload))
    );
    std::fs::write(dir.join("sw-description"), description).unwrap();
    run(Command::new("openssl").current_dir(dir).args([
        "cms",
        "-sign",
        "-in",
        "sw-description",
        "-out",
        "sw-description.sig",
        "-signer",
        "cert.pem",
        "-inkey",
        "key.pem",
        "-outform",
        "DER",
        "-nosmimecap",
        "-binary",
    ]));
    run(Command::new("sh").current_dir(dir).args([
        "-c",
        "printf 'sw-description\\nsw-description.sig\\npayload.bin\\n' | cpio -o -H crc > update.swu 2>/dev/null",
    ]));
    dir.join("update.swu")
}

/// swupdate in its own process group, so that stopping it stops its helpers too.
struct Suricatta(Child);

impl Suricatta {
    fn start(
        dir: &Path,
        tmp: &Path,
        s: &TestServer,
        id: &str,
        token: &str,
        board: &str,
        extra: &str,
    ) -> Suricatta {
        use std::os::unix::process::CommandExt;
        std::fs::create_dir_all(tmp).unwrap();
        let child = Command::new("swupdate")
            .current_dir(dir)
            .env("TMPDIR", tmp)
            .args(["-v", "-H", board, "-k", "cert.pem", "-u"])
            .arg(format!(
                "-t DEFAULT -u {} -i {id} -k {token} -p 1 {extra}",
                s.url
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        Suricatta(child)
    }
}

impl Drop for Suricatta {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

async fn wait_for(s: &TestServer, device: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, actions) = s.get(&format!("/devices/{device}/deployments")).await;
        if ok(&actions[0]) {
            return actions[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {actions}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn swupdate_suricatta_installs_reports_success_and_failure() {
    if !(have("swupdate") && have("openssl") && have("cpio")) {
        assert!(
            std::env::var_os("CI").is_none(),
            "swupdate, openssl and cpio are required when CI is set"
        );
        eprintln!("NOTICE: skipping the swupdate test: swupdate, openssl or cpio not installed");
        return;
    }
    let s = TestServer::start(None).await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let payload: Vec<u8> = (0..150_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let installed = dir.join("installed.bin");
    let swu = build_swu(dir, &payload, &installed);
    let swu_bytes = std::fs::read(&swu).unwrap();

    // Publish the .swu as a release, signed with a SUIT envelope like any other image.
    let key = ed25519_dalek::SigningKey::from_bytes(&[4u8; 32]);
    let pem = key
        .verifying_key()
        .to_public_key_pem(Default::default())
        .unwrap();
    let (status, _) = s.post("/keys", json!({"name": "k", "pem": pem})).await;
    assert_eq!(status, 201);
    let envelope = sign(
        &ManifestSpec {
            sequence: 2,
            vendor_id: Uuid([1; 16]),
            class_id: Uuid([2; 16]),
            image_digest: Sha256::digest(&swu_bytes).into(),
            image_size: swu_bytes.len() as u64,
            version: Some("2.0.0".into()),
            ..Default::default()
        },
        &SigningKey::Ed25519(key),
    );
    let form = Form::new()
        .part("envelope", Part::bytes(envelope))
        .part("image", Part::bytes(swu_bytes).file_name("update.swu"));
    let r = s
        .admin(reqwest::Method::POST, "/releases")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let good = s.device("board-ok", &[]).await;
    let bad = s.device("board-bad", &[]).await;
    s.deploy("2.0.0", &["board-ok", "board-bad"]).await;

    // First run: download, install, report progress; the action stays open until a restart.
    {
        let _swupdate = Suricatta::start(
            dir,
            &dir.join("tmp-ok"),
            &s,
            "board-ok",
            &good,
            "board:1.0",
            "",
        );
        wait_for(&s, "board-ok", "the installed chunk", |a| {
            a["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["message"] == "Installed Chunk.")
        })
        .await;
    }
    assert_eq!(std::fs::read(&installed).unwrap(), payload);
    // Second run after the "restart": the update is confirmed, the action closes.
    {
        let _swupdate = Suricatta::start(
            dir,
            &dir.join("tmp-ok"),
            &s,
            "board-ok",
            &good,
            "board:1.0",
            "-c 2",
        );
        let action = wait_for(&s, "board-ok", "success", |a| a["status"] == "succeeded").await;
        assert_eq!(action["active"], false);
    }
    let (_, device) = s.get("/devices/board-ok").await;
    assert_eq!(device["current_version"], "2.0.0");

    // A board the image is not for: swupdate refuses it and reports the failure.
    {
        let _swupdate = Suricatta::start(
            dir,
            &dir.join("tmp-bad"),
            &s,
            "board-bad",
            &bad,
            "board:9.9",
            "",
        );
        let action = wait_for(&s, "board-bad", "failure", |a| a["status"] == "failed").await;
        assert!(
            action["reason"].as_str().unwrap().contains(".swu"),
            "{action}"
        );
        assert!(
            action["events"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["message"].as_str().is_none_or(|m| m.len() <= 2052))
        );
    }
    let (_, device) = s.get("/devices/board-bad").await;
    assert!(device["current_version"].is_null());
}
