//! The admin subcommands (`devices`, `release`, `deploy`, `status`) through the real binary
//! against a real `updraft serve`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

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

#[test]
fn devices_release_deploy_and_status_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path());

    // The whole publishing path through the CLI: generate, trust, sign, upload.
    let key = dir.path().join("release.pem");
    let key = key.to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args(["keys", "generate", "--out", key])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = dir.path().join("release.pub.pem");
    let trusted = ok(&updraft(
        &s,
        &["keys", "trust", "release-key", public.to_str().unwrap()],
    ));
    assert_eq!(trusted["algorithm"], "ed25519");
    // An unparsable key is refused by the server with its reason.
    std::fs::write(dir.path().join("junk.pem"), "junk").unwrap();
    let out = updraft(
        &s,
        &[
            "keys",
            "trust",
            "junk",
            dir.path().join("junk.pem").to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad_key"));

    let added = ok(&updraft(&s, &["devices", "add", "dev-1", "--tag", "lab"]));
    assert_eq!(added["token"].as_str().unwrap().len(), 64);
    ok(&updraft(&s, &["devices", "add", "dev-2"]));
    let listed = ok(&updraft(&s, &["devices", "list", "--tag", "lab"]));
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["controller_id"], "dev-1");

    let image: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("fw.bin"), &image).unwrap();
    let fw = dir.path().join("fw.bin");
    let suit = dir.path().join("fw.suit");
    let (fw, suit) = (fw.to_str().unwrap(), suit.to_str().unwrap());
    let out = Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args([
            "manifest",
            "sign",
            "--key",
            key,
            "--vendor-id",
            "4f0e2c1a-7d35-4c8e-9b21-3a6f5e8d9c10",
            "--class",
            "pump",
            "--sequence",
            "5",
            "--version",
            "1.2.0",
            fw,
            "-o",
            suit,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

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
