//! The admin subcommands (`devices`, `release`, `deploy`, `status`) through the real binary
//! against a real `updraft serve`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use ed25519_dalek::pkcs8::EncodePublicKey;
use sha2::{Digest, Sha256};
use updraft_manifest::{ManifestSpec, SigningKey, Uuid, sign};

struct Served {
    child: Child,
    addr: String,
    data: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path) -> Served {
    let data = dir.join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args(["serve", "--http", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first.rsplit("http://").next().unwrap().trim().to_string();
    // Keep draining the banner so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Served { child, addr, data }
}

fn updraft(s: &Served, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args(args)
        .arg("--server")
        .arg(format!("http://{}", s.addr))
        .arg("--token-file")
        .arg(s.data.join("admin-token"))
        .output()
        .unwrap()
}

fn ok(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text.into_owned()))
}

fn post_json(s: &Served, path: &str, body: &str) -> String {
    let token = std::fs::read_to_string(s.data.join("admin-token")).unwrap();
    let mut c = TcpStream::connect(&s.addr).unwrap();
    write!(
        c,
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        s.addr,
        token.trim(),
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn devices_release_deploy_and_status_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path());

    let sk = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
    let pem = sk
        .verifying_key()
        .to_public_key_pem(Default::default())
        .unwrap();
    let body = serde_json::json!({"name": "release-key", "pem": pem}).to_string();
    assert!(post_json(&s, "/api/v1/keys", &body).starts_with("HTTP/1.1 201"));

    let added = ok(&updraft(&s, &["devices", "add", "dev-1", "--tag", "lab"]));
    assert_eq!(added["token"].as_str().unwrap().len(), 64);
    ok(&updraft(&s, &["devices", "add", "dev-2"]));
    let listed = ok(&updraft(&s, &["devices", "list", "--tag", "lab"]));
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["controller_id"], "dev-1");

    let image: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let spec = ManifestSpec {
        sequence: 5,
        vendor_id: Uuid([1; 16]),
        class_id: Uuid([2; 16]),
        image_digest: Sha256::digest(&image).into(),
        image_size: image.len() as u64,
        version: Some("1.2.0".into()),
        ..Default::default()
    };
    let envelope = sign(&spec, &SigningKey::Ed25519(sk));
    std::fs::write(dir.path().join("fw.bin"), &image).unwrap();
    std::fs::write(dir.path().join("fw.suit"), &envelope).unwrap();
    let fw = dir.path().join("fw.bin");
    let suit = dir.path().join("fw.suit");
    let (fw, suit) = (fw.to_str().unwrap(), suit.to_str().unwrap());

    let release = ok(&updraft(
        &s,
        &["release", "upload", "--quiet", "--envelope", suit, fw],
    ));
    assert_eq!(release["version"], "1.2.0");
    assert_eq!(release["image_size"], 200_000);

    // A tampered image is refused with the server's reason, and the CLI fails.
    let mut bad = image.clone();
    bad[7] ^= 1;
    std::fs::write(dir.path().join("bad.bin"), &bad).unwrap();
    let bad_path = dir.path().join("bad.bin");
    let out = updraft(
        &s,
        &[
            "release",
            "upload",
            "--quiet",
            "--envelope",
            suit,
            bad_path.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("digest_mismatch"), "{stderr}");
    let releases = ok(&updraft(&s, &["release", "list"]));
    assert_eq!(releases.as_array().unwrap().len(), 1);

    let deployed = ok(&updraft(&s, &["deploy", "1.2.0", "--tag", "lab"]));
    assert_eq!(deployed["rollout"]["total"], 1);
    let status = ok(&updraft(&s, &["status", "--device", "dev-1"]));
    assert_eq!(status[0]["status"], "pending");
    assert_eq!(status[0]["events"][0]["status"], "pending");
    let all = ok(&updraft(&s, &["status"]));
    assert_eq!(all[0]["release"], "1.2.0");

    let out = updraft(&s, &["deploy", "1.2.0"]);
    assert!(!out.status.success(), "a target is required");

    let tagged = ok(&updraft(&s, &["devices", "tag", "dev-2", "lab", "eu"]));
    assert_eq!(tagged["tags"], serde_json::json!(["eu", "lab"]));
    let out = updraft(&s, &["devices", "rm", "dev-2"]);
    assert!(out.status.success());
    let out = updraft(&s, &["devices", "show", "dev-2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));

    // Without the token file the message says where it was looked for.
    let out = Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args([
            "devices",
            "list",
            "--server",
            &format!("http://{}", s.addr),
            "--token-file",
        ])
        .arg(dir.path().join("missing"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token-file"));
}
