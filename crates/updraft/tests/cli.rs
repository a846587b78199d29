//! The real `updraft` binary, run in a temporary directory: keys, sign, verify, inspect, and the
//! errors a person meets (wrong key, corrupt file, altered image, missing file).

use std::path::Path;
use std::process::{Command, Output};

fn updraft(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run updraft")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = updraft(dir, args);
    assert!(
        out.status.success(),
        "updraft {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let out = updraft(dir, args);
    assert!(!out.status.success(), "updraft {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

const VENDOR: &str = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe";

fn setup(alg: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let image: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.path().join("fw.bin"), image).unwrap();
    ok(
        dir.path(),
        &["keys", "generate", "--alg", alg, "--out", "release.pem"],
    );
    dir
}

fn sign(dir: &Path) {
    ok(
        dir,
        &[
            "manifest",
            "sign",
            "--key",
            "release.pem",
            "--vendor-id",
            VENDOR,
            "--class",
            "gateway",
            "--sequence",
            "7",
            "--version",
            "2.1.0",
            "--uri",
            "https://updates.example/fw.bin",
            "--expires",
            "2030-01-01T00:00:00Z",
            "fw.bin",
        ],
    );
}

#[test]
fn generate_sign_verify_inspect_with_both_algorithms() {
    for alg in ["ed25519", "es256"] {
        let dir = setup(alg);
        let d = dir.path();
        let private = std::fs::read_to_string(d.join("release.pem")).unwrap();
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
        let public = std::fs::read_to_string(d.join("release.pub.pem")).unwrap();
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.join("release.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "private key is readable by others");
        }

        sign(d);
        assert!(d.join("fw.bin.suit").exists());
        let out = ok(
            d,
            &[
                "manifest",
                "verify",
                "--key",
                "release.pub.pem",
                "fw.bin.suit",
                "--image",
                "fw.bin",
            ],
        );
        assert!(out.contains("signature OK"), "{out}");
        assert!(out.contains("image OK"), "{out}");

        let json = ok(
            d,
            &[
                "manifest",
                "inspect",
                "fw.bin.suit",
                "--json",
                "--key",
                "release.pub.pem",
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["signature"], "verified");
        assert_eq!(v["algorithm"], alg);
        assert_eq!(v["sequence"], 7);
        assert_eq!(v["version"], "2.1.0");
        assert_eq!(v["vendor_id"], VENDOR);
        assert_eq!(v["image_size"], 200_000);
        assert_eq!(v["uri"], "https://updates.example/fw.bin");
        assert_eq!(v["expires_at"], 1_893_456_000u64);
        assert_eq!(v["expires_at_rfc3339"], "2030-01-01T00:00:00Z");
        assert_eq!(v["component_id"], serde_json::json!(["00"]));

        let unchecked = ok(d, &["manifest", "inspect", "fw.bin.suit", "--json"]);
        let u: serde_json::Value = serde_json::from_str(&unchecked).unwrap();
        assert_eq!(u["signature"], "not_checked");
        assert_eq!(u["image_digest"], v["image_digest"]);
        let text = ok(d, &["manifest", "inspect", "fw.bin.suit"]);
        assert!(text.contains("NOT checked"), "{text}");
    }
}

#[test]
fn class_name_and_class_id_give_the_same_class() {
    let dir = setup("ed25519");
    let d = dir.path();
    sign(d);
    let by_name: serde_json::Value =
        serde_json::from_str(&ok(d, &["manifest", "inspect", "fw.bin.suit", "--json"])).unwrap();
    let class = by_name["class_id"].as_str().unwrap().to_owned();
    ok(
        d,
        &[
            "manifest",
            "sign",
            "--key",
            "release.pem",
            "--vendor-id",
            VENDOR,
            "--class-id",
            &class,
            "--sequence",
            "8",
            "--version",
            "2.1.1",
            "--component",
            "app",
            "--component",
            "b",
            "fw.bin",
            "-o",
            "by-id.suit",
        ],
    );
    let by_id: serde_json::Value =
        serde_json::from_str(&ok(d, &["manifest", "inspect", "by-id.suit", "--json"])).unwrap();
    assert_eq!(by_id["class_id"], by_name["class_id"]);
    assert_eq!(by_id["component_id"], serde_json::json!(["617070", "62"]));
}

#[test]
fn keys_are_not_overwritten_without_force() {
    let dir = setup("ed25519");
    let d = dir.path();
    let before = std::fs::read(d.join("release.pem")).unwrap();
    let err = fails(
        d,
        &["keys", "generate", "--alg", "es256", "--out", "release.pem"],
    );
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(d.join("release.pem")).unwrap(), before);
    ok(
        d,
        &[
            "keys",
            "generate",
            "--alg",
            "es256",
            "--out",
            "release.pem",
            "--force",
        ],
    );
    assert_ne!(std::fs::read(d.join("release.pem")).unwrap(), before);
}

#[test]
fn wrong_key_is_reported() {
    let dir = setup("ed25519");
    let d = dir.path();
    sign(d);
    ok(
        d,
        &["keys", "generate", "--alg", "ed25519", "--out", "other.pem"],
    );
    let err = fails(
        d,
        &[
            "manifest",
            "verify",
            "--key",
            "other.pub.pem",
            "fw.bin.suit",
        ],
    );
    assert!(err.contains("signature does not verify"), "{err}");
    ok(
        d,
        &["keys", "generate", "--alg", "es256", "--out", "ec.pem"],
    );
    let err = fails(
        d,
        &["manifest", "verify", "--key", "ec.pub.pem", "fw.bin.suit"],
    );
    assert!(
        err.contains("signed with ed25519") && err.contains("es256"),
        "{err}"
    );
    // Several keys: the right one among them is found.
    ok(
        d,
        &[
            "manifest",
            "verify",
            "--key",
            "ec.pub.pem",
            "--key",
            "release.pub.pem",
            "fw.bin.suit",
        ],
    );
    // A private key where a public key belongs.
    let err = fails(
        d,
        &["manifest", "verify", "--key", "release.pem", "fw.bin.suit"],
    );
    assert!(
        err.contains("private key") && err.contains("pub.pem"),
        "{err}"
    );
}

#[test]
fn corrupt_envelope_and_altered_image_are_reported() {
    let dir = setup("es256");
    let d = dir.path();
    sign(d);
    let mut env = std::fs::read(d.join("fw.bin.suit")).unwrap();
    let last = env.len() - 1;
    env[last] ^= 1;
    std::fs::write(d.join("altered.suit"), &env).unwrap();
    let err = fails(
        d,
        &[
            "manifest",
            "verify",
            "--key",
            "release.pub.pem",
            "altered.suit",
        ],
    );
    assert!(err.contains("altered after signing"), "{err}");
    std::fs::write(d.join("garbage.suit"), b"hello, world").unwrap();
    let err = fails(
        d,
        &[
            "manifest",
            "verify",
            "--key",
            "release.pub.pem",
            "garbage.suit",
        ],
    );
    assert!(err.contains("not a valid Updraft SUIT envelope"), "{err}");
    let err = fails(d, &["manifest", "inspect", "garbage.suit"]);
    assert!(err.contains("not a valid Updraft SUIT envelope"), "{err}");

    let mut image = std::fs::read(d.join("fw.bin")).unwrap();
    image[1000] ^= 1;
    std::fs::write(d.join("fw2.bin"), &image).unwrap();
    let err = fails(
        d,
        &[
            "manifest",
            "verify",
            "--key",
            "release.pub.pem",
            "fw.bin.suit",
            "--image",
            "fw2.bin",
        ],
    );
    assert!(
        err.contains("does not match the manifest") && err.contains("sha256"),
        "{err}"
    );
    image.push(0);
    std::fs::write(d.join("fw3.bin"), &image).unwrap();
    let err = fails(
        d,
        &[
            "manifest",
            "verify",
            "--key",
            "release.pub.pem",
            "fw.bin.suit",
            "--image",
            "fw3.bin",
        ],
    );
    assert!(err.contains("200001 bytes"), "{err}");
}

#[test]
fn missing_files_and_bad_arguments_are_reported() {
    let dir = setup("ed25519");
    let d = dir.path();
    let err = fails(
        d,
        &[
            "manifest",
            "verify",
            "--key",
            "release.pub.pem",
            "nope.suit",
        ],
    );
    assert!(err.contains("cannot read nope.suit"), "{err}");
    let err = fails(
        d,
        &[
            "manifest",
            "verify",
            "--key",
            "missing.pub.pem",
            "nope.suit",
        ],
    );
    assert!(err.contains("cannot read missing.pub.pem"), "{err}");
    let base = [
        "manifest",
        "sign",
        "--key",
        "release.pem",
        "--vendor-id",
        VENDOR,
        "--class",
        "c",
        "--sequence",
        "1",
        "--version",
        "1",
    ];
    let err = fails(d, &[&base[..], &["missing.bin"]].concat());
    assert!(err.contains("cannot read missing.bin"), "{err}");
    let err = fails(
        d,
        &[&base[..], &["--uri", &"x".repeat(300), "fw.bin"]].concat(),
    );
    assert!(err.contains("uri is longer than 255"), "{err}");
    let err = fails(
        d,
        &[&base[..], &["--expires", "someday", "fw.bin"]].concat(),
    );
    assert!(err.contains("RFC 3339"), "{err}");
    let mut bad_vendor = base.to_vec();
    bad_vendor[5] = "not-a-uuid";
    let err = fails(d, &[&bad_vendor[..], &["fw.bin"]].concat());
    assert!(err.contains("not a UUID"), "{err}");
    let err = fails(
        d,
        &[
            "manifest",
            "sign",
            "--key",
            "release.pub.pem",
            "--vendor-id",
            VENDOR,
            "--class",
            "c",
            "--sequence",
            "1",
            "--version",
            "1",
            "fw.bin",
        ],
    );
    assert!(err.contains("public key"), "{err}");
    // Neither --class nor --class-id.
    fails(
        d,
        &[
            "manifest",
            "sign",
            "--key",
            "release.pem",
            "--vendor-id",
            VENDOR,
            "--sequence",
            "1",
            "--version",
            "1",
            "fw.bin",
        ],
    );
}

/// `verify` with a device's policy, for the envelope `sign` made (vendor VENDOR, class
/// "gateway", sequence 7, expires 2030-01-01, 200,000-byte image).
fn verify_as_device(d: &Path, policy: &[&str]) -> Output {
    let mut args = vec![
        "manifest",
        "verify",
        "--key",
        "release.pub.pem",
        "fw.bin.suit",
    ];
    args.extend_from_slice(policy);
    updraft(d, &args)
}

fn stderr_of(out: &Output) -> String {
    assert!(!out.status.success(), "should have been refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn verify_applies_the_device_policy() {
    let dir = setup("ed25519");
    let d = dir.path();
    sign(d);
    let device = [
        "--vendor-id",
        VENDOR,
        "--class",
        "gateway",
        "--installed-seq",
        "6",
        "--now",
        "2029-12-31T23:59:59Z",
        "--slot-size",
        "200000",
    ];
    let out = verify_as_device(d, &device);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("device policy OK"), "{stdout}");
    assert!(stdout.contains("sequence 7 above installed 6"), "{stdout}");

    // The class id of "gateway" under VENDOR, given as a UUID, is the same class.
    let inspected: serde_json::Value =
        serde_json::from_str(&ok(d, &["manifest", "inspect", "fw.bin.suit", "--json"])).unwrap();
    let class_id = inspected["class_id"].as_str().unwrap().to_owned();
    let by_id = verify_as_device(d, &["--vendor-id", VENDOR, "--class-id", &class_id]);
    assert!(by_id.status.success());

    // Each rule of the core, broken one at a time.
    let with = |flag: &str, value: &str| -> Vec<String> {
        let mut v: Vec<String> = device.iter().map(|s| s.to_string()).collect();
        let i = v.iter().position(|a| a == flag).unwrap();
        v[i + 1] = value.to_owned();
        v
    };
    let refused = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        stderr_of(&verify_as_device(d, &args))
    };
    let e = refused(with("--installed-seq", "7"));
    assert!(
        e.contains("rollback") && e.contains("sequence 7 is not above the installed 7"),
        "{e}"
    );
    let e = refused(with("--class", "sensor"));
    assert!(e.contains("the manifest is for class"), "{e}");
    let e = refused(with("--vendor-id", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"));
    assert!(e.contains("the manifest is for vendor"), "{e}");
    let e = refused(with("--now", "2030-01-01T00:00:00Z"));
    assert!(e.contains("expired at 2030-01-01T00:00:00Z"), "{e}");
    let e = refused(with("--slot-size", "199999"));
    assert!(
        e.contains("the image is 200000 bytes, the slot holds 199999"),
        "{e}"
    );
    // Without --now the expiry cannot be checked, as on a device without a clock.
    let no_clock = verify_as_device(d, &["--vendor-id", VENDOR, "--class", "gateway"]);
    assert!(no_clock.status.success());
    assert!(String::from_utf8_lossy(&no_clock.stdout).contains("not checked: no --now"));
}

#[test]
fn verify_policy_needs_the_device_identity() {
    let dir = setup("es256");
    let d = dir.path();
    sign(d);
    let e = stderr_of(&verify_as_device(d, &["--installed-seq", "3"]));
    assert!(e.contains("needs the device's --vendor-id"), "{e}");
    let e = stderr_of(&verify_as_device(d, &["--vendor-id", VENDOR]));
    assert!(e.contains("needs the device's class"), "{e}");
    let e = stderr_of(&verify_as_device(
        d,
        &["--vendor-id", VENDOR, "--class", "gateway", "--now", "soon"],
    ));
    assert!(e.contains("--now \"soon\""), "{e}");
    let e = stderr_of(&verify_as_device(
        d,
        &[
            "--vendor-id",
            VENDOR,
            "--class",
            "gateway",
            "--class-id",
            VENDOR,
        ],
    ));
    assert!(e.contains("cannot be used with"), "{e}");
}
