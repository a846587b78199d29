//! Release upload: a signed SUIT envelope plus the image, streamed, verified, stored whole or not
//! at all.

mod common;

use common::{TestServer, image};
use ed25519_dalek::pkcs8::EncodePublicKey;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use updraft_manifest::{ManifestSpec, SigningKey, Uuid, sign};

fn ed25519(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn pem(key: &ed25519_dalek::SigningKey) -> String {
    key.verifying_key()
        .to_public_key_pem(Default::default())
        .unwrap()
}

fn envelope(key: &ed25519_dalek::SigningKey, version: &str, sequence: u64, img: &[u8]) -> Vec<u8> {
    let spec = ManifestSpec {
        sequence,
        vendor_id: Uuid([1; 16]),
        class_id: Uuid([2; 16]),
        component_id: vec![b"fw".to_vec()],
        image_digest: Sha256::digest(img).into(),
        image_size: img.len() as u64,
        version: Some(version.to_string()),
        ..Default::default()
    };
    sign(&spec, &SigningKey::Ed25519(key.clone()))
}

async fn upload(s: &TestServer, form: Form) -> (u16, Value) {
    let r = s
        .admin(reqwest::Method::POST, "/releases")
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Envelope part first, then the image (the usual order: the server verifies before it reads
/// the image).
fn form(envelope: Option<Vec<u8>>, img: Option<Vec<u8>>, filename: &str) -> Form {
    let mut f = Form::new();
    if let Some(e) = envelope {
        f = f.part("envelope", Part::bytes(e));
    }
    if let Some(i) = img {
        f = f.part("image", Part::bytes(i).file_name(filename.to_string()));
    }
    f
}

/// Image part first: the envelope is checked after the image was streamed and hashed.
fn image_first(envelope: Vec<u8>, img: Vec<u8>, filename: &str) -> Form {
    Form::new()
        .part("image", Part::bytes(img).file_name(filename.to_string()))
        .part("envelope", Part::bytes(envelope))
}

/// Files under the blob directory (a refused upload must leave none).
fn blob_files(s: &TestServer) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    let mut out = Vec::new();
    walk(&s.dir.path().join("data/blobs"), &mut out);
    out
}

async fn assert_nothing_stored(s: &TestServer) {
    let (_, releases) = s.get("/releases").await;
    assert_eq!(releases, json!([]));
    assert!(blob_files(s).is_empty(), "{:?}", blob_files(s));
}

#[tokio::test]
async fn malformed_uploads_are_refused_before_anything_is_kept() {
    let s = TestServer::start_with(None, |c| c.max_upload_bytes = 1 << 20).await;
    let img = image(4096);
    let env = b"not even cbor".to_vec();

    // No trusted key yet.
    let (status, body) = upload(&s, form(Some(env.clone()), Some(img.clone()), "fw.bin")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("no_trusted_keys"))
    );
    s.post("/keys", json!({"name": "k", "pem": pem(&ed25519(1))}))
        .await;

    let big = image(2 << 20);
    let cases: Vec<(Form, u16, &str)> = vec![
        (form(None, Some(img.clone()), "fw.bin"), 400, "missing_part"),
        (form(Some(env.clone()), None, "fw.bin"), 400, "missing_part"),
        (
            form(Some(env.clone()), Some(img.clone()), "../../etc/passwd"),
            400,
            "invalid_name",
        ),
        (
            form(Some(env.clone()), Some(img.clone()), ".hidden"),
            400,
            "invalid_name",
        ),
        (
            form(Some(vec![0; 5000]), Some(img.clone()), "fw.bin"),
            413,
            "too_large",
        ),
        // Not an envelope: refused before the image is read, or after it was, by part order.
        (
            form(Some(env.clone()), Some(img.clone()), "fw.bin"),
            422,
            "bad_envelope",
        ),
        (
            image_first(env.clone(), img.clone(), "fw.bin"),
            422,
            "bad_envelope",
        ),
        // Over the configured limit while streaming.
        (
            image_first(env.clone(), big.clone(), "fw.bin"),
            413,
            "too_large",
        ),
        // A signed manifest announcing more than the limit: refused before the image is read.
        (
            form(
                Some(envelope(&ed25519(1), "9.0.0", 9, &big)),
                Some(big.clone()),
                "fw.bin",
            ),
            413,
            "too_large",
        ),
        (
            image_first(env.clone(), img.clone(), "fw.bin").text("extra", "x"),
            400,
            "bad_multipart",
        ),
        (
            Form::new()
                .part("image", Part::bytes(img.clone()).file_name("a.bin"))
                .part("image", Part::bytes(img.clone()).file_name("b.bin")),
            400,
            "bad_multipart",
        ),
    ];
    for (i, (f, status, code)) in cases.into_iter().enumerate() {
        let (got, body) = upload(&s, f).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "case {i}: {body}"
        );
        assert_nothing_stored(&s).await;
    }
    // Not multipart at all.
    let r = s
        .admin(reqwest::Method::POST, "/releases")
        .json(&json!({"version": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_multipart");
    assert_nothing_stored(&s).await;
    // The server keeps serving.
    let (status, _) = s.get("/releases").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_signed_release_is_verified_stored_and_served() {
    let s = TestServer::start(None).await;
    let key = ed25519(1);
    s.post("/keys", json!({"name": "k", "pem": pem(&key)}))
        .await;
    let img = image(300_000);
    let env = envelope(&key, "2.1.0", 21, &img);
    // Image first, envelope second: the order of the parts does not matter.
    let f = Form::new()
        .part("image", Part::bytes(img.clone()).file_name("pump.bin"))
        .part("envelope", Part::bytes(env.clone()));
    let (status, release) = upload(&s, f).await;
    assert_eq!(status, 201, "{release}");
    assert_eq!(release["version"], "2.1.0");
    assert_eq!(release["sequence"], 21);
    assert_eq!(release["filename"], "pump.bin");
    assert_eq!(release["image_size"], 300_000);
    assert_eq!(release["image_sha256"], hex::encode(Sha256::digest(&img)));

    // The same version again is a conflict and keeps the first.
    let (status, _) = upload(&s, form(Some(env.clone()), Some(img.clone()), "pump.bin")).await;
    assert_eq!(status, 409);
    let (_, releases) = s.get("/releases").await;
    assert_eq!(releases.as_array().unwrap().len(), 1);

    // A device gets the envelope and the image.
    let token = s.device("d", &[]).await;
    s.deploy("2.1.0", &["d"]).await;
    let id = release["id"].as_i64().unwrap();
    for (name, expected) in [("pump.bin.suit", &env), ("pump.bin", &img)] {
        let got = s
            .client
            .get(s.ddi("d", &format!("/softwaremodules/{id}/artifacts/{name}")))
            .header("authorization", format!("TargetToken {token}"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&got[..], &expected[..], "{name}");
    }
}

#[tokio::test]
async fn unknown_keys_tampering_and_mismatches_are_refused_and_store_nothing() {
    let s = TestServer::start(None).await;
    let key = ed25519(1);
    s.post("/keys", json!({"name": "k", "pem": pem(&key)}))
        .await;
    let img = image(50_000);

    let stranger = envelope(&ed25519(9), "1.0.0", 1, &img);
    let (status, body) = upload(&s, form(Some(stranger), Some(img.clone()), "fw.bin")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("untrusted_signature"))
    );

    let mut tampered = envelope(&key, "1.0.0", 1, &img);
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let (status, _) = upload(&s, form(Some(tampered), Some(img.clone()), "fw.bin")).await;
    assert_eq!(status, 422);

    let mut other = img.clone();
    other[10] ^= 0xff;
    let env = envelope(&key, "1.0.0", 1, &img);
    let (status, body) = upload(&s, form(Some(env.clone()), Some(other), "fw.bin")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("digest_mismatch"))
    );

    let mut longer = img.clone();
    longer.push(0);
    let (status, body) = upload(&s, form(Some(env), Some(longer), "fw.bin")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("size_mismatch"))
    );

    // The same refusals when the image comes before the envelope.
    let mut other = img.clone();
    other[0] ^= 1;
    let env = envelope(&key, "1.0.0", 1, &img);
    let (status, body) = upload(&s, image_first(env.clone(), other, "fw.bin")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("digest_mismatch"))
    );
    let (status, body) = upload(&s, image_first(env, img[1..].to_vec(), "fw.bin")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("size_mismatch"))
    );
    let stranger = envelope(&ed25519(9), "1.0.0", 1, &img);
    let (status, body) = upload(&s, image_first(stranger, img.clone(), "fw.bin")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("untrusted_signature"))
    );

    assert_nothing_stored(&s).await;
}

#[tokio::test]
async fn a_sequence_not_above_the_class_highest_is_refused_with_the_existing_release() {
    let s = TestServer::start(None).await;
    let key = ed25519(1);
    s.post("/keys", json!({"name": "k", "pem": pem(&key)}))
        .await;
    let img = image(40_000);
    let (status, first) = upload(
        &s,
        form(
            Some(envelope(&key, "1.0.0", 5, &img)),
            Some(img.clone()),
            "fw.bin",
        ),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["vendor_id"], Uuid([1; 16]).to_string());
    assert_eq!(first["class_id"], Uuid([2; 16]).to_string());

    // Equal and lower sequences: every device of the class would refuse them.
    let other = image(41_000);
    for (version, sequence) in [("1.0.1", 5), ("0.9.0", 3)] {
        let (status, body) = upload(
            &s,
            form(
                Some(envelope(&key, version, sequence, &other)),
                Some(other.clone()),
                "fw.bin",
            ),
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (409, Some("stale_sequence")),
            "{body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("release 1.0.0 (sequence 5)"), "{message}");
    }
    // The refused image was not kept.
    assert_eq!(blob_files(&s).len(), 1, "{:?}", blob_files(&s));

    // A re-sign at the same sequence: only with the flag, only with the same image.
    let resign = |version: &str, img: &[u8]| {
        form(
            Some(envelope(&key, version, 5, img)),
            Some(img.to_vec()),
            "fw.bin",
        )
    };
    let flagged = |f: Form| {
        let s = &s;
        async move {
            let r = s
                .client
                .post(s.api("/releases?allow_same_sequence=true"))
                .bearer_auth(&s.admin)
                .multipart(f)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = flagged(resign("1.0.0-r2", &other)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("resign_image_differs")),
        "{body}"
    );
    let (status, body) = upload(&s, resign("1.0.0-r2", &img)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("stale_sequence")),
        "{body}"
    );
    let (status, body) = flagged(resign("1.0.0-r2", &img)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["sequence"], 5);
    // The version stays unique even then.
    let (status, _) = flagged(resign("1.0.0", &img)).await;
    assert_eq!(status, 409);

    // Another class keeps its own sequence.
    let spec_other_class = ManifestSpec {
        sequence: 1,
        vendor_id: Uuid([1; 16]),
        class_id: Uuid([3; 16]),
        component_id: vec![b"fw".to_vec()],
        image_digest: Sha256::digest(&other).into(),
        image_size: other.len() as u64,
        version: Some("cam-1".into()),
        ..Default::default()
    };
    let env = sign(&spec_other_class, &SigningKey::Ed25519(key.clone()));
    let (status, body) = upload(&s, form(Some(env), Some(other.clone()), "cam.bin")).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = upload(
        &s,
        form(
            Some(envelope(&key, "1.1.0", 6, &other)),
            Some(other.clone()),
            "fw.bin",
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (_, releases) = s.get("/releases").await;
    assert_eq!(releases.as_array().unwrap().len(), 4);
}
