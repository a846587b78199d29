//! Why an envelope or a manifest was refused.
//!
//! Every variant is `Copy` and carries only static text and numbers, so a device can log or
//! report it without allocating. `&'static str` fields name the structure that was being read
//! ("COSE protected header", "shared sequence", ...).

use crate::Algorithm;

/// Why an envelope was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The envelope is larger than [`crate::MAX_ENVELOPE_LEN`].
    #[error("envelope is {0} bytes, more than the limit")]
    TooLarge(usize),
    /// The CBOR does not have the expected shape.
    #[error("malformed envelope: {0}")]
    Malformed(&'static str),
    /// No trusted key of the envelope's algorithm verifies the signature.
    #[error("no trusted key verifies the signature")]
    BadSignature,
    /// The manifest bytes do not hash to the digest that the signature covers.
    #[error("the manifest does not match the authenticated digest")]
    DigestMismatch,
    /// Bytes follow a complete CBOR item.
    #[error("{0}: trailing bytes after the end")]
    TrailingBytes(&'static str),
    /// A map holds the same key twice.
    #[error("{within}: duplicate key {key}")]
    DuplicateKey {
        /// The map being read.
        within: &'static str,
        /// The repeated key.
        key: i64,
    },
    /// A map holds a key this decoder does not know; it refuses rather than ignores it.
    #[error("{within}: unsupported key {key}")]
    UnknownKey {
        /// The map being read.
        within: &'static str,
        /// The key.
        key: i64,
    },
    /// A required field is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A field is longer than its limit (or a list has too many entries).
    #[error("{field} is longer than {max}")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its limit (bytes or entries).
        max: usize,
    },
    /// A structure is too deeply nested or uses a form Updraft does not support.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// The manifest version is not 1.
    #[error("manifest version {0} is not supported (only 1)")]
    UnsupportedVersion(u64),
    /// A SUIT command this decoder does not know.
    #[error("{within}: unsupported command {command}")]
    UnsupportedCommand {
        /// The sequence being read.
        within: &'static str,
        /// The command number.
        command: u64,
    },
    /// A digest algorithm other than SHA-256.
    #[error("digest algorithm {0} is not supported (only SHA-256, -16)")]
    UnsupportedDigest(i64),
    /// A COSE algorithm other than Ed25519 (-19) and ES256 (-7).
    #[error("COSE algorithm {0} is not supported (only -19 Ed25519, -7 ES256)")]
    UnsupportedAlgorithm(i64),
    /// The COSE_Sign1 has a `crit` header: this verifier understands no extensions.
    #[error("COSE_Sign1 has a crit header")]
    CritHeader,
    /// The COSE_Sign1 carries its payload instead of nil: the signature must cover the digest of
    /// this manifest, never another payload.
    #[error("COSE_Sign1 payload is attached; SUIT requires a detached (nil) payload")]
    AttachedPayload,
    /// No trusted key is of the algorithm the envelope was signed with.
    #[error("the envelope is signed with {0}, and no trusted key is of that algorithm")]
    NoKeyForAlgorithm(Algorithm),
    /// A parameter is set twice (in one map or across sequences).
    #[error("parameter {0} is set more than once")]
    ParameterRepeated(i64),
}

/// Why a verified manifest does not fit this device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The manifest is for another vendor.
    #[error("vendor id does not match")]
    WrongVendor,
    /// The manifest is for another device class.
    #[error("class id does not match")]
    WrongClass,
    /// The sequence number is not above the installed one (replay or downgrade).
    #[error("sequence number {found} is not above the installed {installed}")]
    Rollback {
        /// Installed sequence number.
        installed: u64,
        /// The manifest's sequence number.
        found: u64,
    },
    /// The image does not fit the device.
    #[error("image of {size} bytes is larger than {max}")]
    TooLarge {
        /// Image size.
        size: u64,
        /// Largest accepted.
        max: u64,
    },
    /// The manifest's use-before time has passed.
    #[error("manifest expired at {0}")]
    Expired(u64),
}
