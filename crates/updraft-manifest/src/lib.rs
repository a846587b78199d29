//! SUIT manifests for Updraft (draft-ietf-suit-manifest, RFC 9019 / RFC 9124).
//!
//! API CONTRACT (skeleton; the implementation fills the bodies, the signatures are agreed):
//! - decoding and verification are `no_std` and allocation-free: [`Manifest`] borrows from the
//!   envelope bytes, so a device can verify in place;
//! - encoding and signing (`alloc` feature) are for the server, the CLI and tests.
#![cfg_attr(not(feature = "std"), no_std)]

#[cfg(feature = "alloc")]
extern crate alloc;

/// Largest envelope accepted by the decoder, in bytes.
pub const MAX_ENVELOPE_LEN: usize = 4096;

/// A 16-byte UUID (vendor id, class id).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Uuid(pub [u8; 16]);

/// SHA-256 digest bytes.
pub type Digest = [u8; 32];

/// Signature algorithm of a key or a COSE_Sign1.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Algorithm {
    /// Ed25519 (COSE alg -19, OKP crv 6).
    Ed25519,
    /// ECDSA P-256 with SHA-256 (COSE alg -7).
    Es256,
}

/// A trusted public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    Es256(p256::ecdsa::VerifyingKey),
}

/// A manifest decoded from a verified envelope; borrows from the envelope bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest<'a> {
    /// Monotonic sequence number (anti-rollback).
    pub sequence: u64,
    pub vendor_id: Uuid,
    pub class_id: Uuid,
    /// The component identifier (a SUIT array of byte strings), as its segments.
    pub component_id: ComponentId<'a>,
    pub image_digest: Digest,
    pub image_size: u64,
    pub uri: Option<&'a str>,
    /// Human version string, e.g. "2.1.0".
    pub version: Option<&'a str>,
    /// Digest of the image a delta applies to.
    pub precursor_digest: Option<Digest>,
    /// Unix seconds after which the manifest must not be installed.
    pub expires_at: Option<u64>,
}

/// A SUIT component identifier: up to [`ComponentId::MAX_SEGMENTS`] byte strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ComponentId<'a> {
    segments: [&'a [u8]; ComponentId::MAX_SEGMENTS],
    len: usize,
}

impl<'a> ComponentId<'a> {
    pub const MAX_SEGMENTS: usize = 4;
    pub fn segments(&self) -> &[&'a [u8]] {
        &self.segments[..self.len]
    }
}

/// The result of [`verify`]: the manifest plus facts about the envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified<'a> {
    pub manifest: Manifest<'a>,
    /// SHA-256 of the bstr-wrapped manifest (the SUIT digest); identifies this release.
    pub manifest_digest: Digest,
    /// Index into the key list of the key that verified it.
    pub key_index: usize,
}

/// What a device accepts (RFC 9124 threats: replay, wrong device, oversize, expiry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub vendor_id: Uuid,
    pub class_id: Uuid,
    /// Sequence number of the installed image; a manifest must be strictly above it.
    pub installed_sequence: u64,
    /// Largest image the device can hold.
    pub max_image_size: u64,
    /// Current Unix time, if the device knows it (expiry is checked only then).
    pub now: Option<u64>,
}

/// Decode and verify a signed envelope against trusted keys. Bounded, total, allocation-free.
pub fn verify<'a>(envelope: &'a [u8], keys: &[PublicKey]) -> Result<Verified<'a>, Error> {
    let _ = (envelope, keys);
    todo!()
}

impl Manifest<'_> {
    /// Check a verified manifest against the device's policy.
    pub fn check_policy(&self, policy: &Policy) -> Result<(), PolicyError> {
        let _ = policy;
        todo!()
    }
}

/// Why an envelope was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("envelope is {0} bytes, more than the limit")]
    TooLarge(usize),
    #[error("malformed envelope: {0}")]
    Malformed(&'static str),
    #[error("no trusted key verifies the signature")]
    BadSignature,
    #[error("the manifest does not match the authenticated digest")]
    DigestMismatch,
}

/// Why a verified manifest does not fit this device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("vendor id does not match")]
    WrongVendor,
    #[error("class id does not match")]
    WrongClass,
    #[error("sequence number {found} is not above the installed {installed}")]
    Rollback { installed: u64, found: u64 },
    #[error("image of {size} bytes is larger than {max}")]
    TooLarge { size: u64, max: u64 },
    #[error("manifest expired at {0}")]
    Expired(u64),
}

/// Encoding and signing (`alloc`).
#[cfg(feature = "alloc")]
mod sign_api {
    use super::*;
    use alloc::{string::String, vec::Vec};

    /// An owned manifest to be encoded and signed.
    #[derive(Clone, Debug, PartialEq, Eq, Default)]
    pub struct ManifestSpec {
        pub sequence: u64,
        pub vendor_id: Uuid,
        pub class_id: Uuid,
        pub component_id: Vec<Vec<u8>>,
        pub image_digest: Digest,
        pub image_size: u64,
        pub uri: Option<String>,
        pub version: Option<String>,
        pub precursor_digest: Option<Digest>,
        pub expires_at: Option<u64>,
    }

    /// A private signing key.
    pub enum SigningKey {
        Ed25519(ed25519_dalek::SigningKey),
        Es256(p256::ecdsa::SigningKey),
    }

    impl SigningKey {
        pub fn public_key(&self) -> PublicKey {
            todo!()
        }
    }

    /// Encode `spec` as a SUIT envelope signed with `key`.
    pub fn sign(spec: &ManifestSpec, key: &SigningKey) -> Vec<u8> {
        let _ = (spec, key);
        todo!()
    }

    /// The class id of a device class: UUIDv5 of `name` in the vendor's namespace.
    pub fn class_id(vendor_id: &Uuid, name: &str) -> Uuid {
        let _ = (vendor_id, name);
        todo!()
    }
}
#[cfg(feature = "alloc")]
pub use sign_api::*;
