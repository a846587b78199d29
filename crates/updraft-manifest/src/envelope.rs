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
    let n = r.map(WHAT, 2)?;
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
