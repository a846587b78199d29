//! CBOR key numbers and identifiers, from the CDDL of draft-ietf-suit-manifest-34 (the draft the
//! independent `suit_validator` implements), draft-ietf-suit-update-management and RFC 9052/9053.

/// CBOR tag of a SUIT_Envelope.
pub const TAG_ENVELOPE: u64 = 107;
/// CBOR tag of a COSE_Sign1.
pub const TAG_COSE_SIGN1: u64 = 18;

/// Envelope: suit-authentication-wrapper.
pub const ENVELOPE_AUTH: i64 = 2;
/// Envelope: suit-manifest.
pub const ENVELOPE_MANIFEST: i64 = 3;

/// Manifest: suit-manifest-version.
pub const MANIFEST_VERSION: i64 = 1;
/// Manifest: suit-manifest-sequence-number.
pub const MANIFEST_SEQUENCE: i64 = 2;
/// Manifest: suit-common.
pub const MANIFEST_COMMON: i64 = 3;
/// Manifest: suit-reference-uri.
pub const MANIFEST_REFERENCE_URI: i64 = 4;
/// Manifest: suit-validate.
pub const MANIFEST_VALIDATE: i64 = 7;
/// Manifest: suit-invoke.
pub const MANIFEST_INVOKE: i64 = 9;
/// Manifest: suit-payload-fetch.
pub const MANIFEST_PAYLOAD_FETCH: i64 = 16;
/// Manifest: suit-install.
pub const MANIFEST_INSTALL: i64 = 20;
/// Manifest: suit-text.
pub const MANIFEST_TEXT: i64 = 23;

/// The only manifest version this crate (and draft-34) knows.
pub const SUIT_MANIFEST_VERSION: u64 = 1;

/// Common: suit-components.
pub const COMMON_COMPONENTS: i64 = 2;
/// Common: suit-shared-sequence.
pub const COMMON_SHARED_SEQUENCE: i64 = 4;

/// Condition: vendor identifier.
pub const COND_VENDOR_ID: u64 = 1;
/// Condition: class identifier.
pub const COND_CLASS_ID: u64 = 2;
/// Condition: image match.
pub const COND_IMAGE_MATCH: u64 = 3;
/// Condition: use before (draft-ietf-suit-update-management).
pub const COND_USE_BEFORE: u64 = 4;
/// Condition: abort.
pub const COND_ABORT: u64 = 14;
/// Directive: set component index.
pub const DIR_SET_COMPONENT_INDEX: u64 = 12;
/// Directive: override parameters.
pub const DIR_OVERRIDE_PARAMETERS: u64 = 20;
/// Directive: fetch.
pub const DIR_FETCH: u64 = 21;
/// Directive: invoke.
pub const DIR_INVOKE: u64 = 23;

/// Reporting policy used for conditions: send-record-success | failure | sysinfo-success | failure.
pub const REPORT_ALL: u64 = 15;
/// Reporting policy used for fetch: send-record-on-failure.
pub const REPORT_FETCH: u64 = 2;

/// Parameter: vendor identifier.
pub const PARAM_VENDOR_ID: i64 = 1;
/// Parameter: class identifier.
pub const PARAM_CLASS_ID: i64 = 2;
/// Parameter: image digest.
pub const PARAM_IMAGE_DIGEST: i64 = 3;
/// Parameter: use before (draft-ietf-suit-update-management), POSIX seconds.
pub const PARAM_USE_BEFORE: i64 = 4;
/// Parameter: image size.
pub const PARAM_IMAGE_SIZE: i64 = 14;
/// Parameter: URI.
pub const PARAM_URI: i64 = 21;
/// Parameter (custom, private use): precursor image digest, a bstr-wrapped SUIT_Digest.
pub const PARAM_PRECURSOR_DIGEST: i64 = -256;

/// Text: suit-text-component-version.
pub const TEXT_COMPONENT_VERSION: i64 = 6;
/// Language tag used for the text map we write.
pub const TEXT_LANGUAGE: &str = "en";

/// SUIT_Digest algorithm: SHA-256.
pub const DIGEST_SHA256: i64 = -16;

/// COSE header: alg.
pub const COSE_HEADER_ALG: i64 = 1;
/// COSE header: crit.
pub const COSE_HEADER_CRIT: i64 = 2;
/// COSE header: kid.
pub const COSE_HEADER_KID: i64 = 4;
/// COSE alg: ES256.
pub const COSE_ALG_ES256: i64 = -7;
/// COSE alg: Ed25519 (fully specified).
pub const COSE_ALG_ED25519: i64 = -19;
