//! Sign then verify, with both algorithms, and every tamper an attacker can try on the bytes.

use updraft_manifest::{
    Algorithm, Error, ManifestSpec, PublicKey, SigningKey, Uuid, class_id, decode_unverified, sign,
    verify,
};

fn ed_key(seed: u8) -> SigningKey {
    SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
}

fn es_key(seed: u8) -> SigningKey {
    SigningKey::Es256(p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
}

fn spec() -> ManifestSpec {
    let vendor = Uuid::parse_str("fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe").unwrap();
    ManifestSpec {
        sequence: 42,
        vendor_id: vendor,
        class_id: class_id(&vendor, "gateway-v2"),
        component_id: vec![b"fw".to_vec(), vec![0]],
        image_digest: [0xab; 32],
        image_size: 123_456,
        uri: Some("https://updates.example/gw/2.1.0.bin".into()),
        version: Some("2.1.0".into()),
        precursor_digest: Some([0xcd; 32]),
        expires_at: Some(1_900_000_000),
    }
}

/// Offsets of the parts of an envelope: (auth content, manifest content).
fn regions(env: &[u8]) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    let mut d = minicbor::Decoder::new(env);
    d.tag().unwrap();
    d.map().unwrap();
    d.u8().unwrap();
    let auth = d.bytes().unwrap();
    d.u8().unwrap();
    let manifest = d.bytes().unwrap();
    let off = |s: &[u8]| s.as_ptr() as usize - env.as_ptr() as usize;
    (
        off(auth)..off(auth) + auth.len(),
        off(manifest)..off(manifest) + manifest.len(),
    )
}

fn keys() -> Vec<(SigningKey, PublicKey)> {
    [ed_key(1), es_key(2)]
        .into_iter()
        .map(|k| {
            let p = k.public_key();
            (k, p)
        })
        .collect()
}

#[test]
fn round_trip_keeps_every_field_for_both_algorithms() {
    for (key, public) in keys() {
        let env = sign(&spec(), &key);
        let v = verify(&env, &[public]).unwrap();
        let m = &v.manifest;
        let s = spec();
        assert_eq!(m.sequence, s.sequence);
        assert_eq!(m.vendor_id, s.vendor_id);
        assert_eq!(m.class_id, s.class_id);
        let expected: [&[u8]; 2] = [b"fw", &[0]];
        assert_eq!(m.component_id.segments(), &expected);
        assert_eq!(m.image_digest, s.image_digest);
        assert_eq!(m.image_size, s.image_size);
        assert_eq!(m.uri, s.uri.as_deref());
        assert_eq!(m.version, s.version.as_deref());
        assert_eq!(m.precursor_digest, s.precursor_digest);
        assert_eq!(m.expires_at, s.expires_at);
        assert_eq!(v.key_index, 0);
        assert_eq!(decode_unverified(&env).unwrap().manifest, v.manifest);
    }
}

#[test]
fn minimal_spec_round_trips_with_the_default_component() {
    let s = ManifestSpec {
        uri: None,
        version: None,
        precursor_digest: None,
        expires_at: None,
        component_id: vec![],
        ..spec()
    };
    let k = ed_key(3);
    let env = sign(&s, &k);
    let v = verify(&env, &[k.public_key()]).unwrap();
    assert_eq!(v.manifest.component_id.segments(), &[&[0u8][..]]);
    assert_eq!(
        (v.manifest.uri, v.manifest.version, v.manifest.expires_at),
        (None, None, None)
    );
}

#[test]
fn key_index_names_the_key_that_verified() {
    let k = es_key(5);
    let trusted = [
        ed_key(4).public_key(),
        es_key(6).public_key(),
        k.public_key(),
    ];
    assert_eq!(verify(&sign(&spec(), &k), &trusted).unwrap().key_index, 2);
}

#[test]
fn flipping_any_manifest_byte_is_a_digest_mismatch() {
    for (key, public) in keys() {
        let env = sign(&spec(), &key);
        let (_, manifest) = regions(&env);
        for i in manifest {
            let mut bad = env.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                verify(&bad, std::slice::from_ref(&public)),
                Err(Error::DigestMismatch),
                "byte {i}"
            );
        }
    }
}

#[test]
fn flipping_any_signature_byte_is_a_bad_signature() {
    for (key, public) in keys() {
        let env = sign(&spec(), &key);
        let (auth, _) = regions(&env);
        for i in auth.end - 64..auth.end {
            let mut bad = env.clone();
            bad[i] ^= 0x80;
            assert_eq!(
                verify(&bad, std::slice::from_ref(&public)),
                Err(Error::BadSignature),
                "byte {i}"
            );
        }
    }
}

#[test]
fn swapping_the_digest_is_refused() {
    for (key, public) in keys() {
        let env = sign(&spec(), &key);
        let digest = verify(&env, std::slice::from_ref(&public))
            .unwrap()
            .manifest_digest;
        let at = env.windows(32).position(|w| w == digest).unwrap();
        let mut bad = env.clone();
        bad[at..at + 32].copy_from_slice(&[0x11; 32]);
        assert_eq!(
            verify(&bad, std::slice::from_ref(&public)),
            Err(Error::DigestMismatch)
        );
    }
}

#[test]
fn another_manifest_under_a_genuine_signature_is_refused() {
    // The attacker keeps a genuine wrapper, puts in their own manifest and fixes the digest to
    // match it: the signature, which covers the digest, no longer verifies.
    for (key, public) in keys() {
        let genuine = sign(&spec(), &key);
        let evil_spec = ManifestSpec {
            uri: Some("https://evil.example/x.bin".into()),
            ..spec()
        };
        let evil = sign(&evil_spec, &ed_key(99));
        let (g_auth, g_manifest) = regions(&genuine);
        let (_, e_manifest) = regions(&evil);
        let evil_digest = decode_unverified(&evil).unwrap().manifest_digest;
        let genuine_digest = decode_unverified(&genuine).unwrap().manifest_digest;
        let header = |len: usize| {
            if len < 24 {
                1
            } else if len < 256 {
                2
            } else {
                3
            }
        };
        // Keep everything up to the manifest's bstr header, then the evil manifest bstr.
        let mut forged = genuine[..g_manifest.start - header(g_manifest.len())].to_vec();
        forged.extend_from_slice(&evil[e_manifest.start - header(e_manifest.len())..]);
        // Without fixing the digest: mismatch.
        assert_eq!(
            verify(&forged, std::slice::from_ref(&public)),
            Err(Error::DigestMismatch)
        );
        // With the digest fixed: the signature fails.
        let at = forged[g_auth.clone()]
            .windows(32)
            .position(|w| w == genuine_digest)
            .unwrap()
            + g_auth.start;
        forged[at..at + 32].copy_from_slice(&evil_digest);
        assert_eq!(
            verify(&forged, std::slice::from_ref(&public)),
            Err(Error::BadSignature)
        );
    }
}

#[test]
fn wrong_key_is_a_bad_signature_and_wrong_algorithm_has_no_key() {
    let env = sign(&spec(), &ed_key(1));
    assert_eq!(
        verify(&env, &[ed_key(2).public_key()]),
        Err(Error::BadSignature)
    );
    assert_eq!(
        verify(&env, &[es_key(2).public_key()]),
        Err(Error::NoKeyForAlgorithm(Algorithm::Ed25519))
    );
    assert_eq!(
        verify(&env, &[]),
        Err(Error::NoKeyForAlgorithm(Algorithm::Ed25519))
    );
    let env = sign(&spec(), &es_key(1));
    assert_eq!(
        verify(&env, &[es_key(2).public_key()]),
        Err(Error::BadSignature)
    );
    assert_eq!(
        verify(&env, &[ed_key(1).public_key()]),
        Err(Error::NoKeyForAlgorithm(Algorithm::Es256))
    );
}

#[test]
fn signing_is_deterministic_for_ed25519() {
    assert_eq!(sign(&spec(), &ed_key(1)), sign(&spec(), &ed_key(1)));
}

#[test]
fn raw_public_keys_load() {
    let k = ed_key(1);
    let PublicKey::Ed25519(p) = k.public_key() else {
        unreachable!()
    };
    assert_eq!(
        PublicKey::from_raw(Algorithm::Ed25519, p.as_bytes()),
        Some(k.public_key())
    );
    let k = es_key(1);
    let PublicKey::Es256(p) = k.public_key() else {
        unreachable!()
    };
    let sec1 = p.to_encoded_point(true);
    assert_eq!(
        PublicKey::from_raw(Algorithm::Es256, sec1.as_bytes()),
        Some(k.public_key())
    );
    assert_eq!(PublicKey::from_raw(Algorithm::Es256, &[4; 65]), None);
}

#[test]
fn pem_keys_round_trip() {
    for alg in [Algorithm::Ed25519, Algorithm::Es256] {
        let k = SigningKey::generate(alg);
        let pem = k.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.public_key(), k.public_key());
        let pub_pem = k.public_key().to_public_key_pem().unwrap();
        assert!(pub_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(
            PublicKey::from_public_key_pem(&pub_pem).unwrap(),
            k.public_key()
        );
        assert!(PublicKey::from_public_key_pem(&pem).is_err());
        assert!(SigningKey::from_pkcs8_pem(&pub_pem).is_err());
    }
}
