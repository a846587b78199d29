//! The admin subcommands (`devices`, `release`, `deploy`, `status`) through the real binary
//! against a real `updraft serve`.

mod common;

use common::{Served, serve};

use std::path::Path;
use std::process::{Command, Output};

/// An admin command with `--json` (what scripts use).
fn updraft(s: &Served, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.push("--json");
    human(s, &all)
}

/// An admin command as a person runs it: tables and `key: value` lines.
fn human(s: &Served, args: &[&str]) -> Output {
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
    assert_eq!(releases["items"].as_array().unwrap().len(), 1);

    let deployed = ok(&updraft(&s, &["deploy", "1.2.0", "--tag", "lab"]));
    assert_eq!(deployed["rollout"]["total"], 1);
    let status = ok(&updraft(&s, &["status", "--device", "dev-1"]));
    assert_eq!(status["items"][0]["status"], "pending");
    assert_eq!(status["items"][0]["events"][0]["status"], "pending");
    let all = ok(&updraft(&s, &["status"]));
    assert_eq!(all["items"][0]["release"], "1.2.0");

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

fn generate_key(dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(format!("{name}.pem"));
    let out = Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args(["keys", "generate", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = dir.join(format!("{name}.pub.pem"));
    (
        key.to_str().unwrap().to_string(),
        public.to_str().unwrap().to_string(),
    )
}

fn stored_images(s: &Served) -> usize {
    std::fs::read_dir(s.data.join("blobs/images"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn release_create_signs_and_uploads_in_one_step() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path());
    let (key, public) = generate_key(dir.path(), "release");
    ok(&updraft(&s, &["keys", "trust", "release-key", &public]));

    let image: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let fw = dir.path().join("fw.bin");
    std::fs::write(&fw, &image).unwrap();
    let fw = fw.to_str().unwrap();
    let vendor = "4f0e2c1a-7d35-4c8e-9b21-3a6f5e8d9c10";
    let create = |version: &str, extra: &[&str]| {
        let mut args = vec![
            "release",
            "create",
            "--quiet",
            "--key",
            &key,
            "--vendor-id",
            vendor,
            "--class",
            "pump",
            "--version",
            version,
        ];
        args.extend_from_slice(extra);
        args.push(fw);
        updraft(&s, &args)
    };

    // No --sequence on an empty server: sequence 1.
    let out = create("1.0.0", &[]);
    let created = ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("as sequence 1 version 1.0.0"));
    assert_eq!(created["version"], "1.0.0");
    assert_eq!(created["sequence"], 1);
    // Then the server's highest plus one, or what --sequence says.
    assert_eq!(ok(&create("1.1.0", &[]))["sequence"], 2);
    assert_eq!(ok(&create("2.0.0", &["--sequence", "10"]))["sequence"], 10);

    let digest = hex::encode(Sha256::digest(&image));
    let listed = ok(&updraft(&s, &["release", "list"]));
    let listed = listed["items"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    let first = listed.iter().find(|r| r["version"] == "1.0.0").unwrap();
    assert_eq!(first["image_sha256"], digest.as_str());
    assert_eq!(first["image_size"], 300_000);
    assert_eq!(first["filename"], "fw.bin");
    // The same image under three versions is stored once.
    assert_eq!(stored_images(&s), 1);

    let shown = ok(&updraft(&s, &["release", "show", "2.0.0"]));
    assert_eq!(shown["image_sha256"], digest.as_str());

    // A version that exists: the server's conflict, nothing more stored.
    let out = create("1.0.0", &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("409"), "{stderr}");
    assert_eq!(
        ok(&updraft(&s, &["release", "list"]))["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn release_create_with_an_untrusted_key_says_so_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path());
    let (_, trusted_public) = generate_key(dir.path(), "release");
    ok(&updraft(
        &s,
        &["keys", "trust", "release-key", &trusted_public],
    ));
    let (other, _) = generate_key(dir.path(), "other");
    let fw = dir.path().join("fw.bin");
    std::fs::write(&fw, vec![7u8; 50_000]).unwrap();
    let fw = fw.to_str().unwrap();
    let vendor = "4f0e2c1a-7d35-4c8e-9b21-3a6f5e8d9c10";

    let out = updraft(
        &s,
        &[
            "release",
            "create",
            "--quiet",
            "--key",
            &other,
            "--vendor-id",
            vendor,
            "--class",
            "pump",
            "--version",
            "1.0.0",
            fw,
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not trust"), "{stderr}");
    assert!(stderr.contains("updraft keys trust NAME"), "{stderr}");
    assert!(stderr.contains("other.pub.pem"), "{stderr}");
    let releases = ok(&updraft(&s, &["release", "list"]));
    assert_eq!(releases, serde_json::json!({"items": []}));
    assert_eq!(stored_images(&s), 0);

    // Vendor and class have no default: clap names what is missing, nothing is sent.
    let out = updraft(
        &s,
        &[
            "release",
            "create",
            "--key",
            &other,
            "--version",
            "1.0.0",
            fw,
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--vendor-id"), "{stderr}");
}

fn sign(key: &str, version: &str, sequence: &str, image: &Path, out: &Path) {
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
            sequence,
            "--version",
            version,
        ])
        .arg(image)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_upload_refused_before_the_image_is_sent_shows_the_servers_reason() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path());
    let (_, trusted) = generate_key(dir.path(), "release");
    ok(&updraft(&s, &["keys", "trust", "release-key", &trusted]));
    let (stranger, _) = generate_key(dir.path(), "stranger");
    let signer = dir.path().join("release.pem").to_str().unwrap().to_string();

    // 48 MiB: far more than the socket buffers hold, so the server answers while the CLI is
    // still sending, and closes.
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![0x5au8; 48 << 20]).unwrap();
    let suit = dir.path().join("big.suit");
    sign(&stranger, "1.0.0", "1", &big, &suit);
    let out = human(
        &s,
        &[
            "release",
            "upload",
            "--quiet",
            "--envelope",
            suit.to_str().unwrap(),
            big.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("422") && stderr.contains("untrusted_signature"),
        "{stderr}"
    );

    // An image longer than its manifest says: refused once it passes the signed size.
    let small = dir.path().join("small.bin");
    std::fs::write(&small, vec![0x5au8; 1000]).unwrap();
    let suit = dir.path().join("small.suit");
    sign(&signer, "1.0.0", "1", &small, &suit);
    let out = human(
        &s,
        &[
            "release",
            "upload",
            "--quiet",
            "--envelope",
            suit.to_str().unwrap(),
            big.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("422") && stderr.contains("size_mismatch"),
        "{stderr}"
    );
    assert_eq!(stored_images(&s), 0);
    // The right image with it is accepted.
    let release = ok(&updraft(
        &s,
        &[
            "release",
            "upload",
            "--quiet",
            "--envelope",
            suit.to_str().unwrap(),
            small.to_str().unwrap(),
        ],
    ));
    assert_eq!(release["image_size"], 1000);
}

#[test]
fn a_stale_sequence_is_refused_naming_the_release_and_a_resign_needs_the_same_image() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path());
    let (key, public) = generate_key(dir.path(), "release");
    ok(&updraft(&s, &["keys", "trust", "release-key", &public]));
    let fw = dir.path().join("fw.bin");
    std::fs::write(&fw, vec![1u8; 5000]).unwrap();
    let other = dir.path().join("other.bin");
    std::fs::write(&other, vec![2u8; 5000]).unwrap();
    let create = |version: &str, image: &Path, extra: &[&str]| {
        let mut args = vec![
            "release",
            "create",
            "--quiet",
            "--key",
            &key,
            "--vendor-id",
            "4f0e2c1a-7d35-4c8e-9b21-3a6f5e8d9c10",
            "--class",
            "pump",
            "--version",
            version,
            "--sequence",
            "5",
        ];
        args.extend_from_slice(extra);
        args.push(image.to_str().unwrap());
        updraft(&s, &args)
    };
    ok(&create("1.0.0", &fw, &[]));
    let out = create("1.0.1", &other, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("409")
            && stderr.contains("stale_sequence")
            && stderr.contains("release 1.0.0 (sequence 5)"),
        "{stderr}"
    );
    let out = create("1.0.0-resigned", &other, &["--allow-resign"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("resign_image_differs"), "{stderr}");
    let resigned = ok(&create("1.0.0-resigned", &fw, &["--allow-resign"]));
    assert_eq!(resigned["sequence"], 5);
    assert_eq!(stored_images(&s), 1);
}

fn is_rfc3339(v: &serde_json::Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T' && s.starts_with("20")
    })
}

#[test]
fn admin_commands_print_tables_by_default_and_one_json_shape_with_rfc3339_times() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path());
    let (key, public) = generate_key(dir.path(), "release");
    let text = |out: Output| -> String {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };

    let trusted = text(human(&s, &["keys", "trust", "release-key", &public]));
    assert!(
        trusted.contains("ALGORITHM") && trusted.contains("ed25519"),
        "{trusted}"
    );
    let keys = ok(&updraft(&s, &["keys", "list"]));
    assert_eq!(keys["items"][0]["name"], "release-key");
    assert!(keys["items"][0].get("pem").is_none());
    assert!(is_rfc3339(&keys["items"][0]["created_at"]), "{keys}");

    let added = text(human(&s, &["devices", "add", "dev-1", "--tag", "lab"]));
    assert!(added.contains("DDI TargetToken"), "{added}");
    text(human(&s, &["devices", "add", "dev-2"]));
    let table = text(human(&s, &["devices", "list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("CONTROLLER ID") && lines[0].contains("LAST SEEN"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("dev-1 ") && lines[1].contains(" lab "),
        "{table}"
    );
    // Columns line up: every row's state column starts where the header's does.
    let col = lines[0].find("STATE").unwrap();
    assert_eq!(&lines[1][col..col + 4], "idle", "{table}");
    assert!(
        lines[1].contains("T") && lines[1].trim_end().ends_with('Z'),
        "{table}"
    );

    let listed = ok(&updraft(&s, &["devices", "list", "--limit", "1"]));
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert!(listed["next_after"].is_i64(), "{listed}");
    assert!(is_rfc3339(&listed["items"][0]["created_at"]), "{listed}");
    assert!(listed["items"][0]["last_seen"].is_null());
    let paged = text(human(&s, &["devices", "list", "--limit", "1"]));
    assert!(paged.contains("(more: --after "), "{paged}");

    let shown = text(human(&s, &["devices", "show", "dev-1"]));
    assert!(
        shown.contains("controller id:") && shown.contains("config data:"),
        "{shown}"
    );

    let fw = dir.path().join("fw.bin");
    std::fs::write(&fw, vec![3u8; 4096]).unwrap();
    let created = text(human(
        &s,
        &[
            "release",
            "create",
            "--quiet",
            "--key",
            &key,
            "--vendor-id",
            "4f0e2c1a-7d35-4c8e-9b21-3a6f5e8d9c10",
            "--class",
            "pump",
            "--version",
            "1.0.0",
            fw.to_str().unwrap(),
        ],
    ));
    assert!(
        created.contains("version:") && created.contains("1.0.0"),
        "{created}"
    );
    assert!(created.contains("class id:"), "{created}");
    let releases = text(human(&s, &["release", "list"]));
    assert!(
        releases.starts_with("VERSION") && releases.contains("\n1.0.0 "),
        "{releases}"
    );
    let release = ok(&updraft(&s, &["release", "show", "1.0.0"]));
    assert!(is_rfc3339(&release["created_at"]), "{release}");

    let deployed = text(human(&s, &["deploy", "1.0.0", "--tag", "lab"]));
    assert!(
        deployed.contains("total:") && deployed.contains("dev-1"),
        "{deployed}"
    );
    let rollouts = text(human(&s, &["status"]));
    assert!(
        rollouts.starts_with("DEPLOYMENT") && rollouts.contains("tag:lab"),
        "{rollouts}"
    );
    let history = ok(&updraft(&s, &["status", "--device", "dev-1"]));
    let action = &history["items"][0];
    assert!(is_rfc3339(&action["updated_at"]), "{history}");
    assert!(is_rfc3339(&action["events"][0]["at"]), "{history}");
    let id = action["id"].as_i64().unwrap().to_string();
    let detail = text(human(&s, &["status", "--action", &id]));
    assert!(
        detail.contains("status:") && detail.contains("pending"),
        "{detail}"
    );
    assert!(
        detail.contains("AT ") && detail.contains("MESSAGE"),
        "{detail}"
    );
    let all = ok(&updraft(&s, &["status"]));
    assert!(is_rfc3339(&all["items"][0]["created_at"]), "{all}");
}
