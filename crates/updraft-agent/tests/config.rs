//! Config file errors: each names the file and the field, through the library and the binary.

mod common;

use std::path::Path;

use updraft_agent::config::{AgentConfig, ConfigError};

fn dir_with_key() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let key = updraft_manifest::SigningKey::generate(updraft_manifest::Algorithm::Es256);
    std::fs::write(
        dir.path().join("k.pem"),
        key.public_key().to_public_key_pem().unwrap(),
    )
    .unwrap();
    dir
}

const GOOD: &str = r#"
[server]
url = "https://updates.example.com/"
controller_id = "dev-1"
token = "abc"

[device]
vendor_id = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe"
class = "sensor"
trusted_keys = ["k.pem"]
slot_a = "a"
slot_b = "b"
slot_size = 65536
state_dir = "state"
"#;

fn parse(dir: &Path, text: &str) -> Result<AgentConfig, ConfigError> {
    AgentConfig::parse(&dir.join("agent.toml"), text)
}

fn error(text: &str) -> String {
    let dir = dir_with_key();
    match parse(dir.path(), text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_good_config_resolves_paths_defaults_and_the_class_name() {
    let dir = dir_with_key();
    let c = parse(dir.path(), GOOD).unwrap();
    assert_eq!(c.server_url, "https://updates.example.com");
    assert_eq!(c.tenant, "DEFAULT");
    assert_eq!(c.slot_a, dir.path().join("a"));
    assert_eq!(c.state_dir, dir.path().join("state"));
    assert_eq!(
        c.class_id,
        updraft_manifest::class_id(&c.vendor_id, "sensor")
    );
    assert_eq!(c.block_size, 16 * 1024);
    assert_eq!(c.resume, updraft_device::ResumeMode::Resume);
    assert_eq!(c.poll_interval, None);
    assert_eq!(c.trusted_keys.len(), 1);
}

#[test]
fn a_relative_config_path_gives_absolute_slot_paths() {
    let dir = dir_with_key();
    let cwd = std::env::current_dir().unwrap();
    let rel = pathdiff(dir.path(), &cwd).join("agent.toml");
    let c = parse_at(&rel, GOOD);
    assert!(c.slot_a.is_absolute() && c.path.is_absolute(), "{c:?}");
    let parent = c.slot_a.parent().unwrap().canonicalize().unwrap();
    assert_eq!(parent, dir.path().canonicalize().unwrap());
}

fn parse_at(path: &Path, text: &str) -> AgentConfig {
    AgentConfig::parse(path, text).unwrap()
}

/// `to` relative to `from` (both absolute), with `..` as needed.
fn pathdiff(to: &Path, from: &Path) -> std::path::PathBuf {
    let common = to
        .components()
        .zip(from.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = std::path::PathBuf::new();
    for _ in from.components().skip(common) {
        out.push("..");
    }
    for c in to.components().skip(common) {
        out.push(c);
    }
    out
}

#[test]
fn bad_values_are_refused_with_the_field_named() {
    let cases = [
        (
            GOOD.replace("https://updates", "ftp://updates"),
            "server.url",
        ),
        (
            GOOD.replace("\"dev-1\"", "\"dev 1/..\""),
            "server.controller_id",
        ),
        (GOOD.replace("token = \"abc\"\n", ""), "server.token"),
        (
            GOOD.replace("fa6b4a53-d5ad", "not-a-uuid"),
            "device.vendor_id",
        ),
        (GOOD.replace("class = \"sensor\"\n", ""), "device.class"),
        (
            GOOD.replace("[\"k.pem\"]", "[\"missing.pem\"]"),
            "device.trusted_keys",
        ),
        (GOOD.replace("[\"k.pem\"]", "[]"), "device.trusted_keys"),
        (
            GOOD.replace("slot_b = \"b\"", "slot_b = \"a\""),
            "device.slot_b",
        ),
        (GOOD.replace("65536", "65537"), "device.slot_size"),
        (
            format!("{GOOD}[update]\nresume = \"sometimes\"\n"),
            "update.resume",
        ),
        (
            format!("{GOOD}[update]\nblock_size = 7\n"),
            "update.block_size",
        ),
        (
            format!("{GOOD}[update]\npoll_interval = \"soon\"\n"),
            "update.poll_interval",
        ),
        (
            format!("{GOOD}[update]\nmax_defer = \"1000000000h\"\n"),
            "update.max_defer",
        ),
    ];
    for (text, field) in cases {
        let e = error(&text);
        assert!(e.contains(&format!("`{field}`")), "{field}: {e}");
        assert!(e.contains("agent.toml"), "names the file: {e}");
    }
}

#[test]
fn a_key_file_that_is_not_a_public_key_is_refused() {
    let dir = dir_with_key();
    std::fs::write(dir.path().join("k.pem"), "-----BEGIN PRIVATE KEY-----\n").unwrap();
    let e = parse(dir.path(), GOOD).unwrap_err().to_string();
    assert!(
        e.contains("device.trusted_keys") && e.contains("SPKI"),
        "{e}"
    );
}

#[test]
fn unknown_fields_and_syntax_errors_are_refused_with_the_position() {
    let e = error(&format!("{GOOD}[hooks]\nauthorise = \"x\"\n"));
    assert!(e.contains("authorise") && e.contains("line"), "{e}");
    let e = error("[server\nurl = 1");
    assert!(e.contains("agent.toml") && e.contains("line"), "{e}");
    let e = error("[server]\nurl = \"http://x\"\n");
    assert!(e.contains("missing field"), "{e}");
}

#[test]
fn the_binary_exits_non_zero_with_the_message_for_a_bad_config() {
    let dir = dir_with_key();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, GOOD.replace("65536", "100")).unwrap();
    let out = common::agent()
        .args(["status", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`device.slot_size`") && err.contains("4096"),
        "{err}"
    );

    let out = common::agent()
        .args(["run", "--config"])
        .arg(dir.path().join("nope.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read config file") && err.contains("nope.toml"),
        "{err}"
    );
}
