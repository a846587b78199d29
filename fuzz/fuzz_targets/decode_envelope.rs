//! `verify` with a fixed trusted key, on two inputs per run:
//!
//! 1. the fuzzer's bytes as an envelope: the whole outer layer (tag, maps, wrapper, digest,
//!    COSE parsing) must be total;
//! 2. the fuzzer's bytes as the *manifest* inside an envelope that this target wraps, hashes and
//!    signs with the trusted key. Without this the manifest decoder would be unreachable: a
//!    fuzzer cannot forge a SHA-256 digest, and the manifest is decoded only after the digest
//!    and the signature check out.
#![no_main]

use ed25519_dalek::Signer;
use libfuzzer_sys::fuzz_target;
use minicbor::Encoder;
use minicbor::data::Tag;
use sha2::{Digest, Sha256};
use updraft_manifest::{MAX_ENVELOPE_LEN, PublicKey, verify};

fn signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[0x5e; 32])
}

fn envelope_around(manifest: &[u8], key: &ed25519_dalek::SigningKey) -> Vec<u8> {
    let mut w = Encoder::new(Vec::new());
    w.bytes(manifest).unwrap();
    let wrapped = w.into_writer();
    let mut d = Encoder::new(Vec::new());
    d.array(2)
        .unwrap()
        .i64(-16)
        .unwrap()
        .bytes(&Sha256::digest(&wrapped))
        .unwrap();
    let digest = d.into_writer();
    let protected = [0xa1, 0x01, 0x32]; // {1: -19}
    let mut s = Encoder::new(Vec::new());
    s.array(4)
        .unwrap()
        .str("Signature1")
        .unwrap()
        .bytes(&protected)
        .unwrap();
    s.bytes(&[]).unwrap().bytes(&digest).unwrap();
    let signature = key.sign(&s.into_writer()).to_bytes();
    let mut c = Encoder::new(Vec::new());
    c.tag(Tag::new(18))
        .unwrap()
        .array(4)
        .unwrap()
        .bytes(&protected)
        .unwrap();
    c.map(0).unwrap().null().unwrap().bytes(&signature).unwrap();
    let cose = c.into_writer();
    let mut a = Encoder::new(Vec::new());
    a.array(2)
        .unwrap()
        .bytes(&digest)
        .unwrap()
        .bytes(&cose)
        .unwrap();
    let auth = a.into_writer();
    let mut e = Encoder::new(Vec::new());
    e.tag(Tag::new(107))
        .unwrap()
        .map(2)
        .unwrap()
        .i64(2)
        .unwrap()
        .bytes(&auth)
        .unwrap();
    e.i64(3).unwrap();
    let mut out = e.into_writer();
    out.extend_from_slice(&wrapped);
    out
}

fuzz_target!(|data: &[u8]| {
    let key = signing_key();
    let trusted = [PublicKey::Ed25519(key.verifying_key())];
    let _ = verify(data, &trusted);
    let _ = updraft_manifest::decode_unverified(data);
    if data.len() < MAX_ENVELOPE_LEN - 200 {
        let envelope = envelope_around(data, &key);
        if let Ok(v) = verify(&envelope, &trusted) {
            // Whatever decodes is bounded.
            assert!(v.manifest.uri.is_none_or(|u| u.len() <= 255));
            assert!(v.manifest.version.is_none_or(|s| s.len() <= 64));
        }
    }
});
