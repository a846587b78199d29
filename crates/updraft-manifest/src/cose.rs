//! COSE_Sign1 (RFC 9052, tag 18) as SUIT uses it: the payload is detached (nil) and is the
//! encoded SUIT_Digest from the authentication wrapper.
//!
//! The signed bytes are `Sig_structure = ["Signature1", protected, h'', digest]`, built in a
//! fixed stack buffer so that verification never allocates. Headers are checked strictly: `alg`
//! must be protected and match a trusted key, `crit` is refused (we understand no extension),
//! and the only other header accepted is `kid`.

use crate::cbor::{Reader, SeenKeys};
use crate::labels::*;
use crate::{Algorithm, Error, PublicKey};
use minicbor::data::Type;

/// Longest protected header accepted.
const MAX_PROTECTED_LEN: usize = 64;
/// Longest `kid` accepted.
const MAX_KID_LEN: usize = 64;
/// Longest encoded SUIT_Digest accepted as the detached payload.
const MAX_DIGEST_LEN: usize = 64;
/// Room for the Sig_structure: array(1) + "Signature1"(11) + 3 bstr headers + contents.
pub(crate) const SIG_STRUCTURE_CAP: usize = 16 + 11 + MAX_PROTECTED_LEN + MAX_DIGEST_LEN;
/// Ed25519 and ES256 (r || s) signatures are both 64 bytes.
const SIGNATURE_LEN: usize = 64;

/// A parsed COSE_Sign1, not yet verified.
pub struct Sign1<'a> {
    pub protected: &'a [u8],
    pub algorithm: Algorithm,
    pub signature: &'a [u8; SIGNATURE_LEN],
}

/// Parse a tagged COSE_Sign1 with a nil payload.
pub fn parse_sign1(bytes: &[u8]) -> Result<Sign1<'_>, Error> {
    const WHAT: &str = "COSE_Sign1";
    let mut r = Reader::new(bytes);
    if r.tag(WHAT)? != TAG_COSE_SIGN1 {
        return Err(Error::Malformed("COSE_Sign1: expected tag 18"));
    }
    r.array_of(
        "COSE_Sign1: expected [protected, unprotected, payload, signature]",
        4,
    )?;
    let protected = r.bytes("COSE protected header", MAX_PROTECTED_LEN)?;
    let alg = parse_protected(protected)?;
    parse_unprotected(&mut r)?;
    match r.datatype("COSE payload")? {
        Type::Null => r.null("COSE payload")?,
        Type::Bytes | Type::BytesIndef => return Err(Error::AttachedPayload),
        _ => return Err(Error::Malformed("COSE payload: expected nil")),
    }
    let signature = r.bytes("COSE signature", SIGNATURE_LEN)?;
    let signature: &[u8; SIGNATURE_LEN] = signature
        .try_into()
        .map_err(|_| Error::Malformed("COSE signature: expected 64 bytes"))?;
    r.finish(WHAT)?;
    let algorithm = Algorithm::from_cose_alg(alg).ok_or(Error::UnsupportedAlgorithm(alg))?;
    Ok(Sign1 {
        protected,
        algorithm,
        signature,
    })
}

fn parse_protected(bytes: &[u8]) -> Result<i64, Error> {
    const WHAT: &str = "COSE protected header";
    let mut r = Reader::new(bytes);
    let n = r.map(WHAT, 4)?;
    let mut seen = SeenKeys::new(WHAT);
    let mut alg = None;
    for _ in 0..n {
        let key = r.int(WHAT)?;
        seen.insert(key)?;
        match key {
            COSE_HEADER_ALG => alg = Some(r.int("COSE alg")?),
            COSE_HEADER_CRIT => return Err(Error::CritHeader),
            COSE_HEADER_KID => {
                r.bytes("COSE kid", MAX_KID_LEN)?;
            }
            other => return Err(seen.unknown(other)),
        }
    }
    r.finish(WHAT)?;
    alg.ok_or(Error::Missing("COSE alg in the protected header"))
}

fn parse_unprotected(r: &mut Reader<'_>) -> Result<(), Error> {
    const WHAT: &str = "COSE unprotected header";
    let n = r.map(WHAT, 4)?;
    let mut seen = SeenKeys::new(WHAT);
    for _ in 0..n {
        let key = r.int(WHAT)?;
        seen.insert(key)?;
        match key {
            COSE_HEADER_CRIT => return Err(Error::CritHeader),
            COSE_HEADER_KID => {
                r.bytes("COSE kid", MAX_KID_LEN)?;
            }
            // alg (1) included: it must be protected.
            other => return Err(seen.unknown(other)),
        }
    }
    Ok(())
}

/// Encode `["Signature1", protected, h'', payload]` into `buf`; returns the used prefix.
pub fn sig_structure<'b>(
    buf: &'b mut [u8; SIG_STRUCTURE_CAP],
    protected: &[u8],
    payload: &[u8],
) -> Result<&'b [u8], Error> {
    if protected.len() > MAX_PROTECTED_LEN || payload.len() > MAX_DIGEST_LEN {
        return Err(Error::FieldTooLong {
            field: "Sig_structure",
            max: SIG_STRUCTURE_CAP,
        });
    }
    let mut e = minicbor::Encoder::new(minicbor::encode::write::Cursor::new(&mut buf[..]));
    let ok = e
        .array(4)
        .and_then(|e| e.str("Signature1"))
        .and_then(|e| e.bytes(protected))
        .and_then(|e| e.bytes(&[]))
        .and_then(|e| e.bytes(payload))
        .is_ok();
    if !ok {
        return Err(Error::Malformed("Sig_structure does not fit"));
    }
    let len = e.writer().position();
    buf.get(..len)
        .ok_or(Error::Malformed("Sig_structure does not fit"))
}

/// Check the signature with each trusted key of the right algorithm; the index of the first
/// key that verifies it.
pub fn verify_sign1(sign1: &Sign1<'_>, payload: &[u8], keys: &[PublicKey]) -> Result<usize, Error> {
    let mut buf = [0u8; SIG_STRUCTURE_CAP];
    let message = sig_structure(&mut buf, sign1.protected, payload)?;
    let mut any_of_alg = false;
    for (index, key) in keys.iter().enumerate() {
        if key.algorithm() != sign1.algorithm {
            continue;
        }
        any_of_alg = true;
        if key.verify(message, sign1.signature) {
            return Ok(index);
        }
    }
    if any_of_alg {
        Err(Error::BadSignature)
    } else {
        Err(Error::NoKeyForAlgorithm(sign1.algorithm))
    }
}

/// Encode a protected header `{1: alg}`.
#[cfg(feature = "alloc")]
pub fn protected_header(alg: Algorithm) -> alloc::vec::Vec<u8> {
    let mut e = minicbor::Encoder::new(alloc::vec::Vec::new());
    // Writing to a Vec cannot fail.
    let _ = e
        .map(1)
        .and_then(|e| e.i64(COSE_HEADER_ALG))
        .and_then(|e| e.i64(alg.cose_alg()));
    e.into_writer()
}

/// Sign `payload` (the encoded SUIT_Digest) and encode the tagged COSE_Sign1.
#[cfg(feature = "alloc")]
pub fn sign1(key: &crate::SigningKey, payload: &[u8]) -> alloc::vec::Vec<u8> {
    let protected = protected_header(key.algorithm());
    let mut buf = [0u8; SIG_STRUCTURE_CAP];
    // Both inputs are ours and far below the limits.
    let message = sig_structure(&mut buf, &protected, payload).unwrap_or(&[]);
    let signature = key.sign_raw(message);
    let mut e = minicbor::Encoder::new(alloc::vec::Vec::new());
    let _ = e
        .tag(minicbor::data::Tag::new(TAG_COSE_SIGN1))
        .and_then(|e| e.array(4))
        .and_then(|e| e.bytes(&protected))
        .and_then(|e| e.map(0))
        .and_then(|e| e.null())
        .and_then(|e| e.bytes(&signature));
    e.into_writer()
}
