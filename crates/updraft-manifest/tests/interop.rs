//! Interoperability with `suit_validator` 0.1.3, an independent SUIT (draft-34) implementation.
//!
//! It accepts what we sign (Ed25519 and ES256) and refuses tampered envelopes; and we accept
//! the signed example envelope from its own test suite (`tests/fixtures/README.md`). It is
//! lenient in ways ours is not (see `/work/shared/peers.md`), so it proves compatibility, never
//! that we refuse enough: the strictness tests are in `src/envelope.rs`.

use cose_minicbor::cose_keys::{CoseAlg, CoseKey, CoseKeySetBuilder, Curve, KeyType};
use std::cell::RefCell;
use suit_validator::SuitError;
use suit_validator::crypto::CoseCrypto;
use suit_validator::handler::{PairView, SuitSharedSequenceHandler, SuitStartHandler};
use suit_validator::suit_manifest::{SuitCondition, SuitEnvelope, SuitManifest, SuitSharedCommand};
use updraft_manifest::{
    Algorithm, Error, ManifestSpec, PublicKey, SigningKey, Uuid, class_id, sign, verify,
};

const EXAMPLE_1: &[u8] = include_bytes!("fixtures/suit_validator_example_1.cbor");

/// What the peer saw in an envelope it accepted.
#[derive(Default, Debug, PartialEq)]
struct Seen {
    version: u64,
    sequence: u64,
    vendor: Vec<u8>,
    class: Option<[u8; 16]>,
    image_size: Option<u64>,
    image_digest: Vec<u8>,
    conditions: usize,
}

#[derive(Default)]
struct Recorder {
    seen: RefCell<Seen>,
    /// Also decode and dispatch the shared sequence (the peer's deepest parsing).
    dispatch_shared: bool,
}

impl SuitSharedSequenceHandler for &Recorder {
    fn on_commands<'a>(
        &mut self,
        commands: impl Iterator<Item = PairView<'a, SuitSharedCommand<'a>>>,
    ) -> Result<(), SuitError> {
        for c in commands {
            if let SuitSharedCommand::OverrideParameters(p) = c.get()? {
                let mut s = self.seen.borrow_mut();
                s.vendor = p.vendor_identifier.unwrap_or_default().to_vec();
                s.class = p.class_identifier;
                s.image_size = p.image_size;
                if let Some(d) = p.image_digest.as_ref() {
                    s.image_digest = d.get()?.bytes.to_vec();
                }
            }
        }
        Ok(())
    }

    fn on_conditions<'a>(
        &mut self,
        conditions: impl Iterator<Item = PairView<'a, SuitCondition>>,
    ) -> Result<(), SuitError> {
        for c in conditions {
            c.get()?;
            self.seen.borrow_mut().conditions += 1;
        }
        Ok(())
    }
}

impl SuitStartHandler for &Recorder {
    fn on_envelope<'a>(&mut self, envelope: SuitEnvelope<'a>) -> Result<(), SuitError> {
        let manifest = envelope.manifest.get()?;
        {
            let mut s = self.seen.borrow_mut();
            s.version = manifest.version;
            s.sequence = manifest.sequence_number;
        }
        if self.dispatch_shared {
            let common = manifest.common.get()?;
            if let Some(shared) = common.shared_seq {
                let mut me = *self;
                shared.get()?.decode_and_dispatch(&mut me)?;
            }
        }
        Ok(())
    }

    fn on_manifest<'a>(&mut self, _manifest: SuitManifest<'a>) -> Result<(), SuitError> {
        Err(SuitError::default().with_ctx("expected an envelope"))
    }
}

/// The peer's key set (a CBOR COSE_KeySet) for one of our public keys.
fn peer_keys(key: &PublicKey) -> Vec<u8> {
    let mut set: CoseKeySetBuilder<256> = CoseKeySetBuilder::try_new().unwrap();
    let (x, y);
    let mut k;
    match key {
        PublicKey::Ed25519(p) => {
            x = p.as_bytes().to_vec();
            k = CoseKey::new(KeyType::Okp);
            k.alg(CoseAlg::ED25519);
            k.crv(Curve::Ed25519).unwrap();
            k.x(&x).unwrap();
        }
        PublicKey::Es256(p) => {
            let point = p.to_encoded_point(false);
            x = point.x().unwrap().to_vec();
            y = point.y().unwrap().to_vec();
            k = CoseKey::new(KeyType::Ec2);
            k.alg(CoseAlg::ES256);
            k.crv(Curve::P256).unwrap();
            k.x(&x).unwrap();
            k.y(y.as_slice()).unwrap();
        }
    }
    set.push_key(k).unwrap();
    set.into_bytes().unwrap().to_vec()
}

fn peer_verify(envelope: &[u8], key: &PublicKey, dispatch_shared: bool) -> Result<Seen, SuitError> {
    let keys = peer_keys(key);
    let mut crypto = CoseCrypto::new(&keys);
    let recorder = Recorder {
        dispatch_shared,
        ..Default::default()
    };
    let mut handler = &recorder;
    suit_validator::suit_decode(envelope, &mut handler, &mut crypto)?;
    Ok(recorder.seen.into_inner())
}

fn spec() -> ManifestSpec {
    let vendor = Uuid::parse_str("fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe").unwrap();
    ManifestSpec {
        sequence: 17,
        vendor_id: vendor,
        class_id: class_id(&vendor, "sensor-hub"),
        component_id: vec![vec![0]],
        image_digest: [0x5a; 32],
        image_size: 65_536,
        uri: Some("https://updates.example/sensor-hub/3.0.0.bin".into()),
        version: Some("3.0.0".into()),
        precursor_digest: None,
        expires_at: None,
    }
}

fn our_keys() -> Vec<SigningKey> {
    vec![
        SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[0x21; 32])),
        SigningKey::Es256(p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap()),
    ]
}

#[test]
fn peer_accepts_what_we_sign_with_ed25519_and_es256() {
    for key in our_keys() {
        let env = sign(&spec(), &key);
        let seen = peer_verify(&env, &key.public_key(), true).unwrap_or_else(|e| {
            panic!(
                "{} envelope refused by suit_validator: {e:?}",
                key.algorithm()
            )
        });
        let s = spec();
        assert_eq!(
            seen,
            Seen {
                version: 1,
                sequence: s.sequence,
                vendor: s.vendor_id.0.to_vec(),
                class: Some(s.class_id.0),
                image_size: Some(s.image_size),
                image_digest: s.image_digest.to_vec(),
                conditions: 2,
            }
        );
    }
}

#[test]
fn peer_accepts_our_optional_fields_in_the_authenticated_layer() {
    // Expiry (use-before parameter and condition, 4) and the custom precursor parameter
    // (-256): the peer verifies them and still decodes and dispatches the shared sequence.
    let s = ManifestSpec {
        expires_at: Some(1_900_000_000),
        precursor_digest: Some([7; 32]),
        component_id: vec![b"app".to_vec(), b"slot-b".to_vec()],
        ..spec()
    };
    for key in our_keys() {
        let env = sign(&s, &key);
        let seen = peer_verify(&env, &key.public_key(), true).expect("accepted");
        assert_eq!(seen.sequence, s.sequence);
    }
}

#[test]
fn peer_refuses_tampered_envelopes() {
    for key in our_keys() {
        let env = sign(&spec(), &key);
        let public = key.public_key();
        // A byte of the manifest (the last byte is inside the version text).
        let mut bad = env.clone();
        *bad.last_mut().unwrap() ^= 0x01;
        assert!(peer_verify(&bad, &public, false).is_err());
        assert!(verify(&bad, std::slice::from_ref(&public)).is_err());
        // A byte of the signature: it ends the authentication wrapper, which ends 64 bytes
        // after the last occurrence of the 0x58 0x40 bstr header.
        let at = env.windows(2).rposition(|w| w == [0x58, 0x40]).unwrap() + 2;
        let mut bad = env.clone();
        bad[at + 10] ^= 0x01;
        assert!(peer_verify(&bad, &public, false).is_err());
        assert_eq!(
            verify(&bad, std::slice::from_ref(&public)),
            Err(Error::BadSignature)
        );
        // Another key.
        let other = match key.algorithm() {
            Algorithm::Ed25519 => {
                SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[9; 32]))
            }
            Algorithm::Es256 => {
                SigningKey::Es256(p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap())
            }
        };
        assert!(peer_verify(&env, &other.public_key(), false).is_err());
    }
}

fn example_key() -> PublicKey {
    let mut sec1 = vec![0x04];
    sec1.extend_from_slice(&hex(
        "8496811aae0baaabd26157189eecda26beaa8bf11b6f3fe6e2b5659c85dbc0ad",
    ));
    sec1.extend_from_slice(&hex(
        "3b1f2a4b6c098131c0a36dacd1d78bd381dcdfb09c052db33991db7338b4a896",
    ));
    PublicKey::from_raw(Algorithm::Es256, &sec1).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn we_accept_the_peers_signed_example_1() {
    let key = example_key();
    // The fixture is what the peer's own test accepts.
    let seen = peer_verify(EXAMPLE_1, &key, true).expect("peer accepts its own example");
    assert_eq!(seen.sequence, 1);

    let v = verify(EXAMPLE_1, &[key]).expect("we accept the peer's example");
    let m = &v.manifest;
    assert_eq!(m.sequence, 1);
    assert_eq!(
        m.vendor_id,
        Uuid::parse_str("fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe").unwrap()
    );
    assert_eq!(
        m.class_id,
        Uuid::parse_str("1492af14-2569-5e48-bf42-9b2d51f2ab45").unwrap()
    );
    assert_eq!(m.component_id.segments(), &[&[0u8][..]]);
    assert_eq!(
        m.image_digest.to_vec(),
        hex("00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210")
    );
    assert_eq!(m.image_size, 34768);
    assert_eq!(m.uri, Some("http://example.com/file.bin"));
    assert_eq!(
        (m.version, m.precursor_digest, m.expires_at),
        (None, None, None)
    );
    assert_eq!(
        hex("1f2e7acca0dc2786f2fe4eb947f50873a6a3cfaa98866c5b02e621f42074daf2"),
        v.manifest_digest.to_vec()
    );
}

#[test]
fn the_peers_example_with_a_wrong_key_is_refused_by_both() {
    let wrong =
        SigningKey::Es256(p256::ecdsa::SigningKey::from_slice(&[3; 32]).unwrap()).public_key();
    assert!(peer_verify(EXAMPLE_1, &wrong, false).is_err());
    assert_eq!(verify(EXAMPLE_1, &[wrong]), Err(Error::BadSignature));
}
