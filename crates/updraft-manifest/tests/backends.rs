//! The small Ed25519 verifier (feature `ed25519-compact`, what the firmware links) against the
//! hosts' one (ed25519-dalek's `verify_strict`, what `PublicKey` uses whenever `ed25519` is
//! on): the same keys decode, the same signatures verify, the same tampered ones are refused.
#![cfg(feature = "ed25519-compact")]

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::scalar::Scalar;
use proptest::prelude::*;
use sha2::{Digest as _, Sha512};
use updraft_manifest::ed25519_compact_backend as compact;
use updraft_manifest::{Algorithm, ManifestSpec, PublicKey, SigningKey, Uuid, sign, verify};

fn dalek_accepts(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(key) else {
        return false;
    };
    key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature))
        .is_ok()
}

fn compact_accepts(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    compact::key_from_raw(key).is_some_and(|key| compact::verify(&key, message, signature))
}

fn signed(seed: [u8; 32], message: &[u8]) -> ([u8; 32], [u8; 64]) {
    use ed25519_dalek::Signer as _;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    (key.verifying_key().to_bytes(), key.sign(message).to_bytes())
}

proptest! {
    #[test]
    fn both_verify_what_is_signed(seed in any::<[u8; 32]>(), message in prop::collection::vec(any::<u8>(), 0..300)) {
        let (key, sig) = signed(seed, &message);
        prop_assert!(dalek_accepts(&key, &message, &sig));
        prop_assert!(compact_accepts(&key, &message, &sig));
    }

    #[test]
    fn both_refuse_any_flipped_bit(
        seed in any::<[u8; 32]>(),
        message in prop::collection::vec(any::<u8>(), 1..300),
        bit in any::<prop::sample::Index>(),
        target in 0..3usize,
    ) {
        let (mut key, mut sig) = signed(seed, &message);
        let mut message = message;
        match target {
            0 => { let i = bit.index(256); key[i / 8] ^= 1 << (i % 8); }
            1 => { let i = bit.index(512); sig[i / 8] ^= 1 << (i % 8); }
            _ => { let i = bit.index(message.len() * 8); message[i / 8] ^= 1 << (i % 8); }
        }
        prop_assert!(!dalek_accepts(&key, &message, &sig));
        prop_assert!(!compact_accepts(&key, &message, &sig));
    }

    #[test]
    fn both_decode_the_same_keys(bytes in any::<[u8; 32]>()) {
        prop_assert_eq!(
            ed25519_dalek::VerifyingKey::from_bytes(&bytes).is_ok(),
            compact::key_from_raw(&bytes).is_some()
        );
    }
}

#[test]
fn both_refuse_a_non_canonical_s() {
    let message = b"release";
    let (key, mut sig) = signed([3; 32], message);
    // S + L encodes the same scalar mod L; strict verifiers refuse it.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (s, l) in sig[32..].iter_mut().zip(L) {
        let v = u16::from(*s) + u16::from(l) + carry;
        *s = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0, "S + L fits 256 bits for this signature");
    assert!(!dalek_accepts(&key, message, &sig));
    assert!(!compact_accepts(&key, message, &sig));
}

#[test]
fn both_keep_a_small_order_key_and_refuse_everything_under_it() {
    // The identity point: a valid encoding of a point of order 1.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(ed25519_dalek::VerifyingKey::from_bytes(&identity).is_ok());
    assert!(compact::key_from_raw(&identity).is_some());
    // With A = identity, R = identity, S = 0 satisfies the unstrict equation for any message.
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&identity);
    assert!(!dalek_accepts(&identity, b"anything", &sig));
    assert!(!compact_accepts(&identity, b"anything", &sig));
}

#[test]
fn both_refuse_a_key_that_is_not_a_point() {
    // y = 2 has no x on the curve.
    let mut bytes = [0u8; 32];
    bytes[0] = 2;
    assert!(ed25519_dalek::VerifyingKey::from_bytes(&bytes).is_err());
    assert!(compact::key_from_raw(&bytes).is_none());
}

/// The one known difference, kept visible: a key holder can sign with R moved by a small-order
/// point. ed25519-compact's equation is cofactored and accepts it; dalek's `verify_strict`
/// compares R exactly and refuses it. Neither accepts anything the key holder did not sign.
#[test]
fn a_signature_with_a_torsion_component_in_r_is_the_known_difference() {
    let secret = Scalar::from_bytes_mod_order([5; 32]);
    let a = (secret * ED25519_BASEPOINT_POINT).compress().to_bytes();
    let nonce = Scalar::from_bytes_mod_order([6; 32]);
    let r = (nonce * ED25519_BASEPOINT_POINT + EIGHT_TORSION[1])
        .compress()
        .to_bytes();
    let message = b"release";
    let k = Scalar::from_hash(
        Sha512::new()
            .chain_update(r)
            .chain_update(a)
            .chain_update(message),
    );
    let s = nonce + k * secret;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r);
    sig[32..].copy_from_slice(s.as_bytes());
    assert!(!dalek_accepts(&a, message, &sig));
    assert!(compact_accepts(&a, message, &sig));
}

/// Envelopes: the raw check both backends run is the one `verify` runs, so an envelope signed
/// by the trusted key passes `verify`, and one signed by another key is refused by both.
#[test]
fn envelopes_verify_the_same_way_in_both() {
    let spec = ManifestSpec {
        sequence: 2,
        vendor_id: Uuid([0x11; 16]),
        class_id: Uuid([0x22; 16]),
        component_id: vec![b"fw".to_vec()],
        image_digest: [7; 32],
        image_size: 1000,
        uri: Some("coaps://fw.example/image.bin".into()),
        version: Some("2.0.0".into()),
        precursor_digest: None,
        expires_at: None,
    };
    let trusted = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let raw = trusted.verifying_key().to_bytes();
    let key = PublicKey::from_raw(Algorithm::Ed25519, &raw).expect("a valid key");
    let good = sign(&spec, &SigningKey::Ed25519(trusted));
    let forged = sign(
        &spec,
        &SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[8; 32])),
    );
    assert!(verify(&good, std::slice::from_ref(&key)).is_ok());
    assert!(verify(&forged, std::slice::from_ref(&key)).is_err());
    // The signature and the signed bytes are the envelope's last 64 bytes before the manifest;
    // find them by verifying every 64-byte window, which only the real signature passes.
    let message = sig_structure_of(&good);
    let windows = good.windows(64).filter(|w| {
        let sig: &[u8; 64] = (*w).try_into().expect("64 bytes");
        dalek_accepts(&raw, &message, sig)
    });
    let found: Vec<[u8; 64]> = windows.map(|w| w.try_into().expect("64 bytes")).collect();
    assert_eq!(found.len(), 1, "exactly one window is the signature");
    assert!(compact_accepts(&raw, &message, &found[0]));
    let forged_message = sig_structure_of(&forged);
    assert!(forged.windows(64).all(|w| {
        let sig: &[u8; 64] = w.try_into().expect("64 bytes");
        !compact_accepts(&raw, &forged_message, sig)
    }));
}

/// The COSE Sig_structure of an envelope: `["Signature1", {1: -19}, h'', SUIT_Digest]`, with
/// the digest of the manifest as the envelope's authentication wrapper carries it.
fn sig_structure_of(envelope: &[u8]) -> Vec<u8> {
    let parts = updraft_manifest::decode_unverified(envelope).expect("decodes");
    let digest = parts.manifest_digest;
    let mut suit_digest = minicbor::Encoder::new(Vec::new());
    suit_digest
        .array(2)
        .and_then(|e| e.i64(-16))
        .and_then(|e| e.bytes(&digest))
        .expect("encodes");
    let mut protected = minicbor::Encoder::new(Vec::new());
    protected
        .map(1)
        .and_then(|e| e.i64(1))
        .and_then(|e| e.i64(-19))
        .expect("encodes");
    let mut e = minicbor::Encoder::new(Vec::new());
    e.array(4)
        .and_then(|e| e.str("Signature1"))
        .and_then(|e| e.bytes(protected.writer()))
        .and_then(|e| e.bytes(&[]))
        .and_then(|e| e.bytes(suit_digest.writer()))
        .expect("encodes");
    e.into_writer()
}
