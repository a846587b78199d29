//! Encoding and signing (`alloc`): a [`ManifestSpec`] becomes the envelope described in the
//! crate docs, in deterministic CBOR (definite lengths, shortest integers, map keys in
//! ascending order), so the same spec and key always give the same manifest bytes.

use crate::labels::*;
use crate::{
    ComponentId, Digest, Error, MAX_SEGMENT_LEN, MAX_URI_LEN, MAX_VERSION_LEN, SigningKey, Uuid,
    cose,
};
use alloc::{string::String, vec, vec::Vec};
use minicbor::Encoder;
use minicbor::data::Tag;
use sha2::{Digest as _, Sha256};

/// An owned manifest to be encoded and signed.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ManifestSpec {
    /// Monotonic sequence number.
    pub sequence: u64,
    /// Vendor id.
    pub vendor_id: Uuid,
    /// Class id.
    pub class_id: Uuid,
    /// Component identifier segments; empty means `[h'00']`, the usual single image.
    pub component_id: Vec<Vec<u8>>,
    /// SHA-256 of the image.
    pub image_digest: Digest,
    /// Image size in bytes.
    pub image_size: u64,
    /// Where the device fetches the image.
    pub uri: Option<String>,
    /// Human version string.
    pub version: Option<String>,
    /// Digest of the image a delta applies to.
    pub precursor_digest: Option<Digest>,
    /// Unix seconds from which the manifest must not be installed.
    pub expires_at: Option<u64>,
}

impl ManifestSpec {
    /// Check the limits the decoder enforces, so that a spec that passes signs into an envelope
    /// that [`crate::verify`] accepts.
    pub fn validate(&self) -> Result<(), Error> {
        if self.component_id.len() > ComponentId::MAX_SEGMENTS {
            return Err(Error::FieldTooLong {
                field: "component identifier",
                max: ComponentId::MAX_SEGMENTS,
            });
        }
        if self.component_id.iter().any(|s| s.len() > MAX_SEGMENT_LEN) {
            return Err(Error::FieldTooLong {
                field: "component identifier segment",
                max: MAX_SEGMENT_LEN,
            });
        }
        if self.uri.as_ref().is_some_and(|u| u.len() > MAX_URI_LEN) {
            return Err(Error::FieldTooLong {
                field: "uri",
                max: MAX_URI_LEN,
            });
        }
        if self
            .version
            .as_ref()
            .is_some_and(|v| v.len() > MAX_VERSION_LEN)
        {
            return Err(Error::FieldTooLong {
                field: "component-version",
                max: MAX_VERSION_LEN,
            });
        }
        let len = encode_manifest(self).len() + 200;
        if len > crate::MAX_ENVELOPE_LEN {
            return Err(Error::TooLarge(len));
        }
        Ok(())
    }

    fn segments(&self) -> Vec<&[u8]> {
        if self.component_id.is_empty() {
            vec![&[0u8][..]]
        } else {
            self.component_id.iter().map(Vec::as_slice).collect()
        }
    }
}

/// Encode `spec` as a SUIT envelope signed with `key`.
///
/// A spec beyond the decoder's limits still encodes, but [`crate::verify`] will refuse the
/// result: call [`ManifestSpec::validate`] first on input from people.
pub fn sign(spec: &ManifestSpec, key: &SigningKey) -> Vec<u8> {
    let manifest = encode_manifest(spec);
    let manifest_wrapped = bstr(&manifest);
    let digest = encode_digest(&Sha256::digest(&manifest_wrapped).into());
    let sign1 = cose::sign1(key, &digest);

    let mut auth = Encoder::new(Vec::new());
    let _ = auth
        .array(2)
        .and_then(|e| e.bytes(&digest))
        .and_then(|e| e.bytes(&sign1));
    let auth = auth.into_writer();

    let mut e = Encoder::new(Vec::new());
    let _ = e
        .tag(Tag::new(TAG_ENVELOPE))
        .and_then(|e| e.map(2))
        .and_then(|e| e.i64(ENVELOPE_AUTH))
        .and_then(|e| e.bytes(&auth))
        .and_then(|e| e.i64(ENVELOPE_MANIFEST));
    let mut out = e.into_writer();
    out.extend_from_slice(&manifest_wrapped);
    out
}

// Writing into a Vec cannot fail, so the encoder results below are discarded.

fn bstr(content: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    let _ = e.bytes(content);
    e.into_writer()
}

fn encode_digest(d: &Digest) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    let _ = e
        .array(2)
        .and_then(|e| e.i64(DIGEST_SHA256))
        .and_then(|e| e.bytes(d));
    e.into_writer()
}

fn encode_component_id(e: &mut Encoder<Vec<u8>>, segments: &[&[u8]]) {
    let _ = e.array(segments.len() as u64);
    for s in segments {
        let _ = e.bytes(s);
    }
}

pub(crate) fn encode_manifest(spec: &ManifestSpec) -> Vec<u8> {
    let segments = spec.segments();
    let common = encode_common(spec, &segments);
    let validate = {
        let mut e = Encoder::new(Vec::new());
        let _ = e
            .array(2)
            .and_then(|e| e.u64(COND_IMAGE_MATCH))
            .and_then(|e| e.u64(REPORT_ALL));
        e.into_writer()
    };
    let install = spec.uri.as_ref().map(|uri| {
        let mut e = Encoder::new(Vec::new());
        let _ = e
            .array(6)
            .and_then(|e| e.u64(DIR_OVERRIDE_PARAMETERS))
            .and_then(|e| e.map(1))
            .and_then(|e| e.i64(PARAM_URI))
            .and_then(|e| e.str(uri))
            .and_then(|e| e.u64(DIR_FETCH))
            .and_then(|e| e.u64(REPORT_FETCH))
            .and_then(|e| e.u64(COND_IMAGE_MATCH))
            .and_then(|e| e.u64(REPORT_ALL));
        e.into_writer()
    });
    let text = spec.version.as_ref().map(|v| {
        let mut e = Encoder::new(Vec::new());
        let _ = e
            .map(1)
            .and_then(|e| e.str(TEXT_LANGUAGE))
            .and_then(|e| e.map(1));
        encode_component_id(&mut e, &segments);
        let _ = e
            .map(1)
            .and_then(|e| e.i64(TEXT_COMPONENT_VERSION))
            .and_then(|e| e.str(v));
        e.into_writer()
    });

    let entries = 4 + u64::from(install.is_some()) + u64::from(text.is_some());
    let mut e = Encoder::new(Vec::new());
    let _ = e
        .map(entries)
        .and_then(|e| e.i64(MANIFEST_VERSION))
        .and_then(|e| e.u64(SUIT_MANIFEST_VERSION))
        .and_then(|e| e.i64(MANIFEST_SEQUENCE))
        .and_then(|e| e.u64(spec.sequence))
        .and_then(|e| e.i64(MANIFEST_COMMON))
        .and_then(|e| e.bytes(&common))
        .and_then(|e| e.i64(MANIFEST_VALIDATE))
        .and_then(|e| e.bytes(&validate));
    if let Some(install) = &install {
        let _ = e.i64(MANIFEST_INSTALL).and_then(|e| e.bytes(install));
    }
    if let Some(text) = &text {
        let _ = e.i64(MANIFEST_TEXT).and_then(|e| e.bytes(text));
    }
    e.into_writer()
}

fn encode_common(spec: &ManifestSpec, segments: &[&[u8]]) -> Vec<u8> {
    let params =
        4 + u64::from(spec.expires_at.is_some()) + u64::from(spec.precursor_digest.is_some());
    let mut s = Encoder::new(Vec::new());
    let commands = 3 + u64::from(spec.expires_at.is_some());
    let _ = s
        .array(commands * 2)
        .and_then(|e| e.u64(DIR_OVERRIDE_PARAMETERS))
        .and_then(|e| e.map(params))
        .and_then(|e| e.i64(PARAM_VENDOR_ID))
        .and_then(|e| e.bytes(&spec.vendor_id.0))
        .and_then(|e| e.i64(PARAM_CLASS_ID))
        .and_then(|e| e.bytes(&spec.class_id.0))
        .and_then(|e| e.i64(PARAM_IMAGE_DIGEST))
        .and_then(|e| e.bytes(&encode_digest(&spec.image_digest)));
    if let Some(t) = spec.expires_at {
        let _ = s.i64(PARAM_USE_BEFORE).and_then(|e| e.u64(t));
    }
    let _ = s.i64(PARAM_IMAGE_SIZE).and_then(|e| e.u64(spec.image_size));
    if let Some(p) = &spec.precursor_digest {
        let _ = s
            .i64(PARAM_PRECURSOR_DIGEST)
            .and_then(|e| e.bytes(&encode_digest(p)));
    }
    let _ = s
        .u64(COND_VENDOR_ID)
        .and_then(|e| e.u64(REPORT_ALL))
        .and_then(|e| e.u64(COND_CLASS_ID))
        .and_then(|e| e.u64(REPORT_ALL));
    if spec.expires_at.is_some() {
        let _ = s.u64(COND_USE_BEFORE).and_then(|e| e.u64(REPORT_ALL));
    }
    let shared = s.into_writer();

    let mut e = Encoder::new(Vec::new());
    let _ = e
        .map(2)
        .and_then(|e| e.i64(COMMON_COMPONENTS))
        .and_then(|e| e.array(1));
    encode_component_id(&mut e, segments);
    let _ = e.i64(COMMON_SHARED_SEQUENCE).and_then(|e| e.bytes(&shared));
    e.into_writer()
}
