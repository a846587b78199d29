//! SUIT manifests for Updraft (draft-ietf-suit-manifest-34, RFC 9019 / RFC 9124).
//!
//! A release is a signed SUIT envelope that says which image a device may install: its digest,
//! size and location, the vendor and class of device it is for, and a sequence number that only
//! goes up. This crate writes such envelopes (server, CLI) and, on the device, checks them before
//! anything else happens.
//!
//! # Map
//!
//! - `cbor` (private): a bounded reader over `minicbor` that refuses indefinite
//!   lengths, oversized fields, duplicate keys and trailing bytes, and names what was wrong.
//! - `envelope`: splits the envelope (tag 107) into the authentication wrapper and the manifest;
//!   [`verify`] and [`decode_unverified`] live there.
//! - `cose`: COSE_Sign1 (tag 18) with a detached payload: header checks, the `Sig_structure`,
//!   Ed25519 / ES256 verification (and signing with `alloc`).
//! - `manifest`: decodes the manifest (common, shared sequence, command sequences, text) into a
//!   borrowed [`Manifest`]; the CBOR key numbers are in [`labels`].
//! - `policy`: [`Manifest::check_policy`], the device's own acceptance rules.
//! - `keys`: [`PublicKey`] (and, with `alloc`/`pem`, [`SigningKey`], PEM files, generation).
//!   Ed25519 is verified by ed25519-dalek (feature `ed25519`, which `alloc` and `std` pull in)
//!   or, when `ed25519-compact` is on without it, by ed25519-compact: about the same flash as
//!   dalek without its tables, less stack, fewer cycles (BENCHMARKS.md); a firmware picks one.
//! - `uuid`: [`Uuid`] parsing and printing, [`class_id`] (UUIDv5).
//! - `sign` (`alloc`): [`ManifestSpec`] and [`sign`].
//!
//! # Why it is shaped this way
//!
//! Decoding and verifying are `no_std` and never allocate: a device verifies the envelope in the
//! buffer it received it in, and [`Manifest`] borrows from that buffer. The manifest that is
//! returned is decoded from exactly the bytes whose SHA-256 the signature covers, after the
//! signature was checked, so there is no second copy that could differ (RFC 9124 TOCTOU threat).
//! The decoder accepts only the structures Updraft understands and refuses anything else by name,
//! rather than skipping what it does not know: a SUIT processor that ignores a command it does
//! not understand would install an image under conditions the author did not intend.
//!
//! # Wire layout
//!
//! ```text
//! 107({                                         SUIT_Envelope
//!   2: << [ << [-16, h'sha256'] >>,             authentication wrapper: SUIT_Digest of the
//!           << 18([ << {1: alg} >>, {},             bstr-wrapped manifest, COSE_Sign1 with a nil
//!                   nil, h'signature' ]) >> ] >>,   (detached) payload; alg -19 Ed25519, -7 ES256
//!   3: << {                                     SUIT_Manifest
//!     1: 1,                                     manifest-version (only 1)
//!     2: sequence,                              manifest-sequence-number
//!     3: << {                                   common
//!       2: [ [ h'segment', ... ] ],             components (exactly one)
//!       4: << [                                 shared sequence
//!         20, { 1: vendor-uuid, 2: class-uuid,  directive-override-parameters
//!               3: << [-16, h'image sha256'] >>,
//!               4: use-before (expiry),         suit-parameter-use-before (update-management)
//!               14: image-size,
//!               -256: << [-16, h'precursor'] >> custom: precursor image digest (deltas)
//!         },
//!         1, 15,  2, 15,  [4, 15]               condition vendor / class / [use-before]
//!       ] >>
//!     } >>,
//!     7: << [3, 15] >>,                         validate: condition-image-match
//!     20: << [20, {21: "uri"}, 21, 2, 3, 15] >> install: set uri, fetch, image-match
//!     23: << { "en": { [segments]: { 6: "2.1.0" } } } >>   text: component-version
//!   } >>
//! })
//! ```
//!
//! - The human version string is `suit-text-component-version` (6) in `suit-text` (23), keyed by
//!   the component identifier under the language tag `"en"`.
//! - Expiry is `suit-parameter-use-before` (4, POSIX seconds) with `suit-condition-use-before`
//!   (4), both from draft-ietf-suit-update-management.
//! - The precursor digest (the image a delta applies to) has no parameter of its own in the
//!   drafts (they model it with a second component and `suit-parameter-source-component`), so it
//!   is the custom parameter **-256** (`suit-parameter-custom` is a negative integer; IANA keeps
//!   labels below -255 for private use), holding a bstr-wrapped SUIT_Digest like image-digest.
//! - The decoder also accepts `invoke` (9), `payload-fetch` (16), `reference-uri` (4),
//!   `set-component-index 0`, `directive-invoke` (23), `condition-abort` (14), and reads the URI
//!   and other parameters from whichever sequence sets them, each parameter at most once.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod cbor;
mod cose;
mod envelope;
mod error;
mod keys;
pub mod labels;
mod manifest;
mod policy;
#[cfg(feature = "alloc")]
mod sign;
mod uuid;

pub use envelope::{Unverified, decode_unverified, verify};
pub use error::{Error, PolicyError};
#[cfg(any(feature = "ed25519", feature = "ed25519-compact"))]
pub use keys::Ed25519Key;
#[cfg(feature = "pem")]
pub use keys::KeyError;
pub use keys::PublicKey;
#[cfg(feature = "alloc")]
pub use keys::SigningKey;
/// The small Ed25519 verifier on its own, so that a build with both backends can check that
/// they agree.
#[cfg(feature = "ed25519-compact")]
#[doc(hidden)]
pub use keys::compact as ed25519_compact_backend;
#[cfg(feature = "alloc")]
pub use sign::{ManifestSpec, sign};
pub use uuid::{Uuid, UuidParseError, class_id};

/// Largest envelope accepted by the decoder, in bytes.
pub const MAX_ENVELOPE_LEN: usize = 4096;
/// Longest URI accepted, in bytes.
pub const MAX_URI_LEN: usize = 255;
/// Longest human version string accepted, in bytes.
pub const MAX_VERSION_LEN: usize = 64;
/// Longest component identifier segment accepted, in bytes.
pub const MAX_SEGMENT_LEN: usize = 64;

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

impl Algorithm {
    /// The COSE algorithm identifier.
    pub const fn cose_alg(self) -> i64 {
        match self {
            Algorithm::Ed25519 => labels::COSE_ALG_ED25519,
            Algorithm::Es256 => labels::COSE_ALG_ES256,
        }
    }

    /// The algorithm of a COSE identifier, if Updraft supports it.
    pub const fn from_cose_alg(alg: i64) -> Option<Self> {
        match alg {
            labels::COSE_ALG_ED25519 => Some(Algorithm::Ed25519),
            labels::COSE_ALG_ES256 => Some(Algorithm::Es256),
            _ => None,
        }
    }

    /// Short lowercase name (`ed25519`, `es256`).
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Es256 => "es256",
        }
    }
}

impl core::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A manifest decoded from a verified envelope; borrows from the envelope bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest<'a> {
    /// Monotonic sequence number (anti-rollback).
    pub sequence: u64,
    /// Vendor of the device (suit-parameter-vendor-identifier).
    pub vendor_id: Uuid,
    /// Device class (suit-parameter-class-identifier), UUIDv5 of the class name under the vendor.
    pub class_id: Uuid,
    /// The component identifier (a SUIT array of byte strings), as its segments.
    pub component_id: ComponentId<'a>,
    /// SHA-256 of the image.
    pub image_digest: Digest,
    /// Exact size of the image in bytes.
    pub image_size: u64,
    /// Where to fetch the image from (suit-parameter-uri), if the manifest says.
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
    /// Most segments a component identifier may have.
    pub const MAX_SEGMENTS: usize = 4;

    /// The segments, in order.
    pub fn segments(&self) -> &[&'a [u8]] {
        self.segments.get(..self.len).unwrap_or(&[])
    }

    /// Append a segment; `false` if the identifier is already full.
    pub(crate) fn push(&mut self, segment: &'a [u8]) -> bool {
        match self.segments.get_mut(self.len) {
            Some(slot) => {
                *slot = segment;
                self.len += 1;
                true
            }
            None => false,
        }
    }
}

/// The result of [`verify`]: the manifest plus facts about the envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified<'a> {
    /// The authenticated manifest.
    pub manifest: Manifest<'a>,
    /// SHA-256 of the bstr-wrapped manifest (the SUIT digest); identifies this release.
    pub manifest_digest: Digest,
    /// Index into the key list of the key that verified it.
    pub key_index: usize,
}

/// What a device accepts (RFC 9124 threats: replay, wrong device, oversize, expiry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The device's vendor.
    pub vendor_id: Uuid,
    /// The device's class.
    pub class_id: Uuid,
    /// Sequence number of the installed image; a manifest must be strictly above it.
    pub installed_sequence: u64,
    /// Largest image the device can hold.
    pub max_image_size: u64,
    /// Current Unix time, if the device knows it (expiry is checked only then).
    pub now: Option<u64>,
}
