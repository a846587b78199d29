//! Property tests: the decoder is total, valid specs round-trip, and no single-byte change to a
//! signed envelope is ever accepted.

use proptest::prelude::*;
use updraft_manifest::{
    ManifestSpec, PublicKey, SigningKey, Uuid, decode_unverified, sign, verify,
};

fn ed_key() -> SigningKey {
    SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[1; 32]))
}

fn es_key() -> SigningKey {
    SigningKey::Es256(p256::ecdsa::SigningKey::from_slice(&[2; 32]).unwrap())
}

fn trusted() -> [PublicKey; 2] {
    [ed_key().public_key(), es_key().public_key()]
}

fn spec_strategy() -> impl Strategy<Value = ManifestSpec> {
    (
        any::<u64>(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..=64), 1..=4),
        any::<[u8; 32]>(),
        any::<u64>(),
        prop::option::of("[ -~]{0,255}"),
        prop::option::of("[0-9a-z.+-]{0,64}"),
        prop::option::of(any::<[u8; 32]>()),
        prop::option::of(any::<u64>()),
    )
        .prop_map(
            |(
                sequence,
                v,
                c,
                component_id,
                image_digest,
                image_size,
                uri,
                version,
                precursor_digest,
                expires_at,
            )| {
                ManifestSpec {
                    sequence,
                    vendor_id: Uuid(v),
                    class_id: Uuid(c),
                    component_id,
                    image_digest,
                    image_size,
                    uri,
                    version,
                    precursor_digest,
                    expires_at,
                }
            },
        )
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = verify(&bytes, &trusted());
        let _ = decode_unverified(&bytes);
    }

    #[test]
    fn random_bytes_behind_the_envelope_tag_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut env = vec![0xd8, 0x6b, 0xa2, 0x02];
        env.extend_from_slice(&bytes);
        let _ = verify(&env, &trusted());
        let _ = decode_unverified(&env);
    }

    #[test]
    fn valid_specs_round_trip(spec in spec_strategy(), use_ed in any::<bool>()) {
        prop_assume!(spec.validate().is_ok());
        let key = if use_ed { ed_key() } else { es_key() };
        let env = sign(&spec, &key);
        let v = verify(&env, &trusted()).expect("a signed valid spec verifies");
        let m = v.manifest;
        prop_assert_eq!(m.sequence, spec.sequence);
        prop_assert_eq!(m.vendor_id, spec.vendor_id);
        prop_assert_eq!(m.class_id, spec.class_id);
        let segments: Vec<Vec<u8>> = m.component_id.segments().iter().map(|s| s.to_vec()).collect();
        prop_assert_eq!(segments, spec.component_id.clone());
        prop_assert_eq!(m.image_digest, spec.image_digest);
        prop_assert_eq!(m.image_size, spec.image_size);
        prop_assert_eq!(m.uri, spec.uri.as_deref());
        prop_assert_eq!(m.version, spec.version.as_deref());
        prop_assert_eq!(m.precursor_digest, spec.precursor_digest);
        prop_assert_eq!(m.expires_at, spec.expires_at);
    }

    #[test]
    fn random_corruptions_of_a_valid_envelope_never_panic_nor_pass(
        spec in spec_strategy(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        prop_assume!(spec.validate().is_ok());
        let original = sign(&spec, &ed_key());
        let mut env = original.clone();
        for (at, x) in edits {
            let i = at.index(env.len());
            env[i] ^= x;
        }
        // Sometimes also truncate.
        if cut.index(4) == 0 {
            env.truncate(cut.index(env.len()));
        }
        prop_assume!(env != original);
        prop_assert!(verify(&env, &trusted()).is_err());
    }
}

/// Every single-byte change, at every position, to every value, is refused. Why it can never
/// succeed: a change inside the manifest changes its SHA-256 (digest mismatch); inside the digest
/// it no longer matches; inside the protected header or the signature the Ed25519 signature no
/// longer verifies (it covers the protected header and the digest, and strict verification
/// admits one encoding per signature); anywhere else it changes CBOR structure (a tag, a length,
/// a map key, the empty unprotected map, the nil payload), which the strict decoder refuses, for
/// example `a0` (empty map) becomes a non-empty map that eats the payload, or `f6` (nil)
/// becomes another simple value. An unauthenticated `kid` in the unprotected header would be
/// the one place a change could pass (and give the identical manifest); we never write one.
#[test]
fn every_single_byte_mutation_is_refused() {
    for key in [ed_key(), es_key()] {
        let spec = ManifestSpec {
            sequence: 7,
            vendor_id: Uuid([1; 16]),
            class_id: Uuid([2; 16]),
            component_id: vec![vec![0]],
            image_digest: [3; 32],
            image_size: 4096,
            uri: Some("coap://[::1]/fw".into()),
            version: Some("1.0.0".into()),
            precursor_digest: Some([4; 32]),
            expires_at: Some(2_000_000_000),
        };
        let env = sign(&spec, &key);
        let expected = verify(&env, &trusted()).unwrap().manifest;
        let mut accepted = 0usize;
        for i in 0..env.len() {
            // All 255 other values for Ed25519 (cheap); a spread of them for ES256.
            let deltas: Vec<u8> = match key {
                SigningKey::Ed25519(_) => (1..=255).collect(),
                SigningKey::Es256(_) => vec![0x01, 0x02, 0x10, 0x20, 0x40, 0x80, 0xff, 0x55],
            };
            for d in deltas {
                let mut bad = env.clone();
                bad[i] ^= d;
                if let Ok(v) = verify(&bad, &trusted()) {
                    // If it ever passed it would have to be the very same manifest.
                    assert_eq!(
                        v.manifest, expected,
                        "byte {i} ^ {d:#x} changed the manifest"
                    );
                    accepted += 1;
                }
            }
        }
        assert_eq!(accepted, 0, "a single-byte mutation was accepted");
    }
}
