//! The SUIT_Envelope (tag 107): splitting it into the authentication wrapper and the manifest,
//! and the order of checks in [`verify`]:
//!
//! 1. size limit, strict envelope shape (keys 2 and 3 only, no duplicates, no trailing bytes);
//! 2. the wrapper's SUIT_Digest equals SHA-256 of the bstr-wrapped manifest (header included);
//! 3. the COSE_Sign1 over that digest verifies with a trusted key of the envelope's algorithm;
//! 4. only then the manifest is decoded, from the same bytes that were hashed.

use crate::cbor::{Reader, SeenKeys};
use crate::labels::*;
use crate::{
    Algorithm, Digest, Error, MAX_ENVELOPE_LEN, Manifest, PublicKey, Verified, cose, manifest,
};
use sha2::{Digest as _, Sha256};

/// The parts of an envelope, as byte slices into it.
pub(crate) struct Parts<'a> {
    /// The encoded SUIT_Digest (content of the wrapper's first bstr).
    pub digest: &'a [u8],
    /// The tagged COSE_Sign1 (content of the wrapper's second bstr).
    pub cose: &'a [u8],
    /// The manifest bstr including its CBOR header: what the digest covers.
    pub manifest_wrapped: &'a [u8],
    /// The manifest map itself.
    pub manifest: &'a [u8],
}

pub(crate) fn split(envelope: &[u8]) -> Result<Parts<'_>, Error> {
    const WHAT: &str = "envelope";
    if envelope.len() > MAX_ENVELOPE_LEN {
        return Err(Error::TooLarge(envelope.len()));
    }
    let mut r = Reader::new(envelope);
    if r.tag("envelope: expected tag 107")? != TAG_ENVELOPE {
        return Err(Error::Malformed("envelope: expected tag 107"));
    }
    // Room for more than the two known keys, so a repeated key is reported as such.
    let n = r.map(WHAT, 4)?;
    let mut seen = SeenKeys::new(WHAT);
    let mut auth = None;
    let mut manifest = None;
    for _ in 0..n {
        let key = r.int(WHAT)?;
        seen.insert(key)?;
        match key {
            ENVELOPE_AUTH => auth = Some(r.bytes("authentication wrapper", usize::MAX)?),
            ENVELOPE_MANIFEST => {
                let start = r.position();
                let inner = r.bytes("manifest", usize::MAX)?;
                let wrapped = r
                    .input()
                    .get(start..r.position())
                    .ok_or(Error::Malformed("manifest"))?;
                manifest = Some((wrapped, inner));
            }
            other => return Err(seen.unknown(other)),
        }
    }
    r.finish(WHAT)?;
    let auth = auth.ok_or(Error::Missing("authentication wrapper"))?;
    let (manifest_wrapped, manifest) = manifest.ok_or(Error::Missing("manifest"))?;

    const AUTH: &str = "authentication wrapper";
    let mut a = Reader::new(auth);
    let blocks = a.array(AUTH, 2)?;
    if blocks < 2 {
        return Err(Error::Missing("authentication block (signature)"));
    }
    let digest = a.bytes("authentication wrapper digest", 64)?;
    let cose = a.bytes("authentication block", usize::MAX)?;
    a.finish(AUTH)?;
    Ok(Parts {
        digest,
        cose,
        manifest_wrapped,
        manifest,
    })
}

/// Check the digest in the wrapper against the manifest bytes; the digest on success.
fn check_digest(parts: &Parts<'_>) -> Result<Digest, Error> {
    let claimed = manifest::decode_digest(parts.digest)?;
    let actual: Digest = Sha256::digest(parts.manifest_wrapped).into();
    if claimed != actual {
        return Err(Error::DigestMismatch);
    }
    Ok(actual)
}

/// Decode and verify a signed envelope against trusted keys. Bounded, total, allocation-free.
///
/// `key_index` in the result is the position in `keys` of the key that verified it.
pub fn verify<'a>(envelope: &'a [u8], keys: &[PublicKey]) -> Result<Verified<'a>, Error> {
    let parts = split(envelope)?;
    let manifest_digest = check_digest(&parts)?;
    let sign1 = cose::parse_sign1(parts.cose)?;
    let key_index = cose::verify_sign1(&sign1, parts.digest, keys)?;
    let manifest = manifest::decode(parts.manifest)?;
    Ok(Verified {
        manifest,
        manifest_digest,
        key_index,
    })
}

/// An envelope decoded WITHOUT checking its signature: for inspection tools only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unverified<'a> {
    /// The manifest, which nobody has vouched for.
    pub manifest: Manifest<'a>,
    /// SHA-256 of the bstr-wrapped manifest; it matches the wrapper's digest.
    pub manifest_digest: Digest,
    /// The algorithm the COSE_Sign1 claims.
    pub algorithm: Algorithm,
}

/// Decode an envelope without verifying the signature. The structure, the digest and the COSE
/// headers are checked as in [`verify`]; the signature is not. Never act on the result: it is
/// for showing a person what a file contains.
pub fn decode_unverified(envelope: &[u8]) -> Result<Unverified<'_>, Error> {
    let parts = split(envelope)?;
    let manifest_digest = check_digest(&parts)?;
    let sign1 = cose::parse_sign1(parts.cose)?;
    let manifest = manifest::decode(parts.manifest)?;
    Ok(Unverified {
        manifest,
        manifest_digest,
        algorithm: sign1.algorithm,
    })
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::{ManifestSpec, SigningKey, Uuid, sign::encode_manifest};
    use alloc::vec::Vec;
    use minicbor::Encoder;

    fn ed_key() -> SigningKey {
        SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[7; 32]))
    }

    fn es_key() -> SigningKey {
        SigningKey::Es256(p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap())
    }

    fn spec() -> ManifestSpec {
        ManifestSpec {
            sequence: 3,
            vendor_id: Uuid([1; 16]),
            class_id: Uuid([2; 16]),
            image_digest: [3; 32],
            image_size: 1234,
            uri: Some("https://updates.example/fw.bin".into()),
            version: Some("1.2.3".into()),
            ..Default::default()
        }
    }

    /// A COSE_Sign1 envelope put together by hand, genuinely signed with `key`, so that each
    /// test changes exactly one thing a lenient verifier would let through.
    struct Craft<'k> {
        manifest: Vec<u8>,
        protected: Vec<u8>,
        unprotected: Vec<u8>,
        attach_payload: bool,
        key: &'k SigningKey,
        trailing: Vec<u8>,
    }

    impl<'k> Craft<'k> {
        fn new(key: &'k SigningKey) -> Self {
            Craft {
                manifest: encode_manifest(&spec()),
                protected: cose::protected_header(key.algorithm()),
                unprotected: alloc::vec![0xa0],
                attach_payload: false,
                key,
                trailing: Vec::new(),
            }
        }

        fn build(&self) -> Vec<u8> {
            let mut wrapped = Encoder::new(Vec::new());
            wrapped.bytes(&self.manifest).unwrap();
            let wrapped = wrapped.into_writer();
            let mut digest = Encoder::new(Vec::new());
            let d: Digest = Sha256::digest(&wrapped).into();
            digest
                .array(2)
                .unwrap()
                .i64(-16)
                .unwrap()
                .bytes(&d)
                .unwrap();
            let digest = digest.into_writer();
            let mut buf = [0u8; cose::SIG_STRUCTURE_CAP];
            let msg = cose::sig_structure(&mut buf, &self.protected, &digest).unwrap();
            let sig = self.key.sign_raw(msg);
            let mut c = Encoder::new(Vec::new());
            c.tag(minicbor::data::Tag::new(18))
                .unwrap()
                .array(4)
                .unwrap()
                .bytes(&self.protected)
                .unwrap();
            let mut c = c.into_writer();
            c.extend_from_slice(&self.unprotected);
            let mut c = Encoder::new(c);
            if self.attach_payload {
                c.bytes(&digest).unwrap();
            } else {
                c.null().unwrap();
            }
            c.bytes(&sig).unwrap();
            let c = c.into_writer();
            let mut auth = Encoder::new(Vec::new());
            auth.array(2)
                .unwrap()
                .bytes(&digest)
                .unwrap()
                .bytes(&c)
                .unwrap();
            let auth = auth.into_writer();
            let mut e = Encoder::new(Vec::new());
            e.tag(minicbor::data::Tag::new(107))
                .unwrap()
                .map(2)
                .unwrap()
                .i64(2)
                .unwrap()
                .bytes(&auth)
                .unwrap()
                .i64(3)
                .unwrap();
            let mut out = e.into_writer();
            out.extend_from_slice(&wrapped);
            out.extend_from_slice(&self.trailing);
            out
        }
    }

    fn keys(k: &SigningKey) -> [PublicKey; 1] {
        [k.public_key()]
    }

    #[test]
    fn crafted_baseline_verifies() {
        for k in [ed_key(), es_key()] {
            let env = Craft::new(&k).build();
            assert_eq!(env, crate::sign(&spec(), &k), "hand-built and sign() agree");
            let v = verify(&env, &keys(&k)).unwrap();
            assert_eq!(v.manifest.version, Some("1.2.3"));
        }
    }

    #[test]
    fn trailing_bytes_after_the_envelope_are_refused() {
        let k = ed_key();
        let mut c = Craft::new(&k);
        c.trailing = alloc::vec![0x00];
        assert_eq!(
            verify(&c.build(), &keys(&k)),
            Err(Error::TrailingBytes("envelope"))
        );
    }

    #[test]
    fn duplicate_envelope_key_is_refused() {
        let k = ed_key();
        let mut env = Craft::new(&k).build();
        // Turn map(2) into map(3) and repeat the manifest entry.
        let at = env.iter().position(|&b| b == 0xa2).unwrap();
        env[at] = 0xa3;
        let manifest_entry = env[env.len() - (encode_manifest(&spec()).len() + 3)..].to_vec();
        env.extend_from_slice(&manifest_entry);
        assert!(matches!(
            verify(&env, &keys(&k)),
            Err(Error::DuplicateKey {
                within: "envelope",
                key: 3
            })
        ));
    }

    #[test]
    fn duplicate_manifest_key_is_refused_even_when_signed() {
        let k = es_key();
        let mut c = Craft::new(&k);
        c.manifest[0] += 1; // one more entry...
        c.manifest.extend_from_slice(&[0x02, 0x18, 0x63]); // ...a second sequence number, 99
        assert_eq!(
            verify(&c.build(), &keys(&k)),
            Err(Error::DuplicateKey {
                within: "manifest",
                key: 2
            })
        );
    }

    #[test]
    fn unknown_manifest_version_is_refused_even_when_signed() {
        let k = ed_key();
        let mut c = Craft::new(&k);
        assert_eq!(&c.manifest[1..3], &[0x01, 0x01]);
        c.manifest[2] = 0x02;
        assert_eq!(
            verify(&c.build(), &keys(&k)),
            Err(Error::UnsupportedVersion(2))
        );
    }

    #[test]
    fn unknown_manifest_key_is_refused() {
        let k = ed_key();
        let mut c = Craft::new(&k);
        c.manifest[0] += 1;
        c.manifest.extend_from_slice(&[0x18, 0x63, 0x00]);
        assert_eq!(
            verify(&c.build(), &keys(&k)),
            Err(Error::UnknownKey {
                within: "manifest",
                key: 99
            })
        );
    }

    #[test]
    fn crit_header_is_refused_protected_or_not() {
        let k = ed_key();
        let mut c = Craft::new(&k);
        // {1: -19, 2: [99]}
        c.protected = alloc::vec![0xa2, 0x01, 0x32, 0x02, 0x81, 0x18, 0x63];
        assert_eq!(verify(&c.build(), &keys(&k)), Err(Error::CritHeader));
        let mut c = Craft::new(&k);
        c.unprotected = alloc::vec![0xa1, 0x02, 0x81, 0x18, 0x63];
        assert_eq!(verify(&c.build(), &keys(&k)), Err(Error::CritHeader));
    }

    #[test]
    fn attached_payload_is_refused() {
        let k = es_key();
        let mut c = Craft::new(&k);
        c.attach_payload = true;
        assert_eq!(verify(&c.build(), &keys(&k)), Err(Error::AttachedPayload));
    }

    #[test]
    fn eddsa_minus_8_and_unknown_algorithms_are_refused() {
        let k = ed_key();
        let mut c = Craft::new(&k);
        c.protected = alloc::vec![0xa1, 0x01, 0x27]; // alg -8
        assert_eq!(
            verify(&c.build(), &keys(&k)),
            Err(Error::UnsupportedAlgorithm(-8))
        );
    }

    #[test]
    fn alg_that_does_not_match_the_key_is_refused() {
        // Signed with Ed25519 but claims ES256: no ES256 key is trusted.
        let k = ed_key();
        let mut c = Craft::new(&k);
        c.protected = cose::protected_header(Algorithm::Es256);
        assert_eq!(
            verify(&c.build(), &keys(&k)),
            Err(Error::NoKeyForAlgorithm(Algorithm::Es256))
        );
        // An ES256 key is trusted too, but it did not sign.
        let both = [k.public_key(), es_key().public_key()];
        assert_eq!(verify(&c.build(), &both), Err(Error::BadSignature));
    }

    #[test]
    fn alg_in_the_unprotected_header_is_refused() {
        let k = ed_key();
        let mut c = Craft::new(&k);
        c.unprotected = alloc::vec![0xa1, 0x01, 0x32];
        assert_eq!(
            verify(&c.build(), &keys(&k)),
            Err(Error::UnknownKey {
                within: "COSE unprotected header",
                key: 1
            })
        );
    }

    #[test]
    fn oversized_envelope_is_refused_before_parsing() {
        let big = alloc::vec![0u8; crate::MAX_ENVELOPE_LEN + 1];
        assert_eq!(
            verify(&big, &[]),
            Err(Error::TooLarge(crate::MAX_ENVELOPE_LEN + 1))
        );
    }

    #[test]
    fn overlong_uri_is_refused_even_when_signed() {
        let k = ed_key();
        let long = ManifestSpec {
            uri: Some("u".repeat(256)),
            ..spec()
        };
        assert!(long.validate().is_err());
        let env = crate::sign(&long, &k);
        assert_eq!(
            verify(&env, &keys(&k)),
            Err(Error::FieldTooLong {
                field: "uri",
                max: 255
            })
        );
    }

    #[test]
    fn decode_unverified_reads_without_a_key() {
        let env = crate::sign(&spec(), &es_key());
        let u = decode_unverified(&env).unwrap();
        assert_eq!(u.algorithm, Algorithm::Es256);
        assert_eq!(u.manifest.sequence, 3);
    }

    #[test]
    fn empty_and_garbage_input_give_malformed() {
        assert!(matches!(verify(&[], &[]), Err(Error::Malformed(_))));
        assert!(matches!(
            verify(&[0xd8, 0x6b, 0x00], &[]),
            Err(Error::Malformed(_))
        ));
    }
}
