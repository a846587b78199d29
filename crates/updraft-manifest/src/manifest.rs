//! Decoding of the SUIT_Manifest (the bytes inside envelope key 3) into a borrowed [`Manifest`].
//!
//! The decoder walks the structures it knows (common, components, shared sequence, the command
//! sequences, parameters, text) with one function each and refuses every key, command or form
//! it does not know. Parameters may come from any `directive-override-parameters`, but each
//! parameter at most once, so the manifest has one meaning whatever order a processor runs the
//! sequences in. Only one component is supported.

use crate::cbor::{Reader, SeenKeys, set_once};
use crate::labels::*;
use crate::{
    ComponentId, Digest, Error, MAX_SEGMENT_LEN, MAX_URI_LEN, MAX_VERSION_LEN, Manifest, Uuid,
};
use minicbor::data::Type;

/// Most commands (pairs) in one command sequence.
const MAX_COMMANDS: u64 = 16;
/// Longest text (descriptions, language tags) read and ignored in suit-text.
const MAX_TEXT_LEN: usize = 255;

/// Parameters gathered from all override-parameters directives.
#[derive(Default)]
struct Params<'a> {
    vendor_id: Option<Uuid>,
    class_id: Option<Uuid>,
    image_digest: Option<Digest>,
    image_size: Option<u64>,
    uri: Option<&'a str>,
    use_before: Option<u64>,
    precursor: Option<Digest>,
}

/// Which sequence is being read: the shared sequence may only set parameters and check
/// conditions (draft-34 §8.4.5: no side effects).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sequence {
    Shared,
    Validate,
    Invoke,
    PayloadFetch,
    Install,
}

impl Sequence {
    fn name(self) -> &'static str {
        match self {
            Sequence::Shared => "shared sequence",
            Sequence::Validate => "validate sequence",
            Sequence::Invoke => "invoke sequence",
            Sequence::PayloadFetch => "payload-fetch sequence",
            Sequence::Install => "install sequence",
        }
    }
}

/// Decode the manifest map (the content of the envelope's key-3 bstr).
pub fn decode(bytes: &[u8]) -> Result<Manifest<'_>, Error> {
    const WHAT: &str = "manifest";
    let mut r = Reader::new(bytes);
    let n = r.map(WHAT, 12)?;
    let mut seen = SeenKeys::new(WHAT);
    let mut version = None;
    let mut sequence = None;
    let mut component = None;
    let mut text_version = None;
    let mut params = Params::default();
    for _ in 0..n {
        let key = r.int(WHAT)?;
        seen.insert(key)?;
        match key {
            MANIFEST_VERSION => {
                let v = r.u64("manifest-version")?;
                if v != SUIT_MANIFEST_VERSION {
                    return Err(Error::UnsupportedVersion(v));
                }
                version = Some(v);
            }
            MANIFEST_SEQUENCE => sequence = Some(r.u64("manifest-sequence-number")?),
            MANIFEST_COMMON => {
                let common = r.bytes("common", usize::MAX)?;
                component = Some(decode_common(common, &mut params)?);
            }
            MANIFEST_REFERENCE_URI => {
                r.str("reference-uri", MAX_URI_LEN)?;
            }
            MANIFEST_VALIDATE => sequence_in(&mut r, Sequence::Validate, &mut params)?,
            MANIFEST_INVOKE => sequence_in(&mut r, Sequence::Invoke, &mut params)?,
            MANIFEST_PAYLOAD_FETCH => sequence_in(&mut r, Sequence::PayloadFetch, &mut params)?,
            MANIFEST_INSTALL => sequence_in(&mut r, Sequence::Install, &mut params)?,
            MANIFEST_TEXT => {
                if r.datatype("text")? == Type::Array {
                    return Err(Error::Unsupported(
                        "severed suit-text (digest instead of text)",
                    ));
                }
                let text = r.bytes("text", usize::MAX)?;
                text_version = decode_text(text)?;
            }
            other => return Err(seen.unknown(other)),
        }
    }
    r.finish(WHAT)?;
    version.ok_or(Error::Missing("manifest-version"))?;
    Ok(Manifest {
        sequence: sequence.ok_or(Error::Missing("manifest-sequence-number"))?,
        component_id: component.ok_or(Error::Missing("common"))?,
        vendor_id: params
            .vendor_id
            .ok_or(Error::Missing("vendor-id parameter"))?,
        class_id: params
            .class_id
            .ok_or(Error::Missing("class-id parameter"))?,
        image_digest: params
            .image_digest
            .ok_or(Error::Missing("image-digest parameter"))?,
        image_size: params
            .image_size
            .ok_or(Error::Missing("image-size parameter"))?,
        uri: params.uri,
        version: text_version,
        precursor_digest: params.precursor,
        expires_at: params.use_before,
    })
}

fn sequence_in<'a>(
    r: &mut Reader<'a>,
    which: Sequence,
    params: &mut Params<'a>,
) -> Result<(), Error> {
    if r.datatype(which.name())? == Type::Array {
        return Err(Error::Unsupported(
            "severed command sequence (digest instead of commands)",
        ));
    }
    let bytes = r.bytes(which.name(), usize::MAX)?;
    decode_sequence(bytes, which, params)
}

fn decode_common<'a>(bytes: &'a [u8], params: &mut Params<'a>) -> Result<ComponentId<'a>, Error> {
    const WHAT: &str = "common";
    let mut r = Reader::new(bytes);
    let n = r.map(WHAT, 2)?;
    let mut seen = SeenKeys::new(WHAT);
    let mut component = None;
    for _ in 0..n {
        let key = r.int(WHAT)?;
        seen.insert(key)?;
        match key {
            COMMON_COMPONENTS => {
                let count = r.array("components", 1)?;
                if count != 1 {
                    return Err(Error::Missing("component (exactly one is supported)"));
                }
                component = Some(decode_component_id(&mut r)?);
            }
            COMMON_SHARED_SEQUENCE => {
                let seq = r.bytes("shared sequence", usize::MAX)?;
                decode_sequence(seq, Sequence::Shared, params)?;
            }
            other => return Err(seen.unknown(other)),
        }
    }
    r.finish(WHAT)?;
    component.ok_or(Error::Missing("components"))
}

fn decode_component_id<'a>(r: &mut Reader<'a>) -> Result<ComponentId<'a>, Error> {
    let segments = r.array("component identifier", ComponentId::MAX_SEGMENTS as u64)?;
    if segments == 0 {
        return Err(Error::Missing("component identifier segment"));
    }
    let mut id = ComponentId::default();
    for _ in 0..segments {
        let seg = r.bytes("component identifier segment", MAX_SEGMENT_LEN)?;
        if !id.push(seg) {
            return Err(Error::FieldTooLong {
                field: "component identifier",
                max: ComponentId::MAX_SEGMENTS,
            });
        }
    }
    Ok(id)
}

fn decode_sequence<'a>(
    bytes: &'a [u8],
    which: Sequence,
    params: &mut Params<'a>,
) -> Result<(), Error> {
    let what = which.name();
    let mut r = Reader::new(bytes);
    let items = r.array(what, MAX_COMMANDS * 2)?;
    if items % 2 != 0 {
        return Err(Error::Malformed("command sequence: odd number of items"));
    }
    for _ in 0..items / 2 {
        let command = r.u64(what)?;
        match command {
            COND_VENDOR_ID | COND_CLASS_ID | COND_IMAGE_MATCH | COND_USE_BEFORE | COND_ABORT => {
                reporting_policy(&mut r)?;
            }
            DIR_SET_COMPONENT_INDEX => {
                if r.u64("set-component-index")? != 0 {
                    return Err(Error::Unsupported("component index other than 0"));
                }
            }
            DIR_OVERRIDE_PARAMETERS => decode_parameters(&mut r, params)?,
            DIR_FETCH | DIR_INVOKE if which != Sequence::Shared => {
                reporting_policy(&mut r)?;
            }
            _ => {
                return Err(Error::UnsupportedCommand {
                    within: what,
                    command,
                });
            }
        }
    }
    r.finish(what)
}

fn reporting_policy(r: &mut Reader<'_>) -> Result<(), Error> {
    if r.u64("reporting policy")? > 15 {
        return Err(Error::Malformed("reporting policy: unknown bits"));
    }
    Ok(())
}

fn decode_parameters<'a>(r: &mut Reader<'a>, p: &mut Params<'a>) -> Result<(), Error> {
    const WHAT: &str = "parameters";
    let n = r.map(WHAT, 8)?;
    let mut seen = SeenKeys::new(WHAT);
    for _ in 0..n {
        let key = r.int(WHAT)?;
        seen.insert(key)?;
        match key {
            PARAM_VENDOR_ID => {
                if r.datatype("vendor-id")? == Type::Tag {
                    return Err(Error::Unsupported(
                        "CBOR-PEN vendor id (only RFC 4122 UUIDs)",
                    ));
                }
                set_once(
                    &mut p.vendor_id,
                    Uuid(r.bytes_array("vendor-id: expected 16 bytes")?),
                    key,
                )?
            }
            PARAM_CLASS_ID => set_once(
                &mut p.class_id,
                Uuid(r.bytes_array("class-id: expected 16 bytes")?),
                key,
            )?,
            PARAM_IMAGE_DIGEST => {
                let d = decode_digest(r.bytes("image-digest", 64)?)?;
                set_once(&mut p.image_digest, d, key)?
            }
            PARAM_USE_BEFORE => set_once(&mut p.use_before, r.u64("use-before")?, key)?,
            PARAM_IMAGE_SIZE => set_once(&mut p.image_size, r.u64("image-size")?, key)?,
            PARAM_URI => set_once(&mut p.uri, r.str("uri", MAX_URI_LEN)?, key)?,
            PARAM_PRECURSOR_DIGEST => {
                let d = decode_digest(r.bytes("precursor-digest", 64)?)?;
                set_once(&mut p.precursor, d, key)?
            }
            other => return Err(seen.unknown(other)),
        }
    }
    Ok(())
}

/// Decode an encoded SUIT_Digest `[-16, h'32 bytes']`.
pub fn decode_digest(bytes: &[u8]) -> Result<Digest, Error> {
    let mut r = Reader::new(bytes);
    r.array_of("SUIT_Digest: expected [algorithm, bytes]", 2)?;
    let alg = r.int("SUIT_Digest algorithm")?;
    if alg != DIGEST_SHA256 {
        return Err(Error::UnsupportedDigest(alg));
    }
    let d = r.bytes_array("SUIT_Digest: expected 32 bytes of SHA-256")?;
    r.finish("SUIT_Digest")?;
    Ok(d)
}

/// `{ + language => { * text-key => tstr, * component-id => { * component-text-key => tstr } } }`;
/// returns the component-version, which must agree across languages.
fn decode_text(bytes: &[u8]) -> Result<Option<&str>, Error> {
    const WHAT: &str = "text";
    let mut r = Reader::new(bytes);
    let languages = r.map(WHAT, 4)?;
    let mut version: Option<&str> = None;
    for _ in 0..languages {
        r.str("text language tag", 35)?;
        let entries = r.map("text map", 8)?;
        let mut seen = SeenKeys::new("text map");
        for _ in 0..entries {
            match r.datatype("text map")? {
                Type::Array => {
                    decode_component_id(&mut r)?;
                    let keys = r.map("component text", 6)?;
                    let mut seen_c = SeenKeys::new("component text");
                    for _ in 0..keys {
                        let key = r.int("component text")?;
                        seen_c.insert(key)?;
                        match key {
                            TEXT_COMPONENT_VERSION => {
                                let v = r.str("component-version", MAX_VERSION_LEN)?;
                                if version.is_some_and(|old| old != v) {
                                    return Err(Error::Malformed(
                                        "text: component versions disagree",
                                    ));
                                }
                                version = Some(v);
                            }
                            1..=5 => {
                                r.str("component text", MAX_TEXT_LEN)?;
                            }
                            other => return Err(seen_c.unknown(other)),
                        }
                    }
                }
                _ => {
                    let key = r.int("text map")?;
                    seen.insert(key)?;
                    match key {
                        1..=4 => {
                            r.str("manifest text", MAX_TEXT_LEN)?;
                        }
                        other => return Err(seen.unknown(other)),
                    }
                }
            }
        }
    }
    r.finish(WHAT)?;
    Ok(version)
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use minicbor::Encoder;

    fn digest() -> Vec<u8> {
        let mut e = Encoder::new(Vec::new());
        e.array(2)
            .unwrap()
            .i64(-16)
            .unwrap()
            .bytes(&[7; 32])
            .unwrap();
        e.into_writer()
    }

    fn params(e: &mut Encoder<Vec<u8>>, vendor: bool) {
        let n = if vendor { 4 } else { 3 };
        e.map(n).unwrap();
        if vendor {
            e.u8(1).unwrap().bytes(&[1; 16]).unwrap();
        }
        e.u8(2).unwrap().bytes(&[2; 16]).unwrap();
        e.u8(3).unwrap().bytes(&digest()).unwrap();
        e.u8(14).unwrap().u64(10).unwrap();
    }

    /// A manifest whose shared sequence is `[20, params]` followed by `extra_shared` commands,
    /// with `components` and an optional install sequence.
    fn manifest(components: &[&[&[u8]]], extra_shared: &[u8], install: Option<&[u8]>) -> Vec<u8> {
        let mut s = Encoder::new(Vec::new());
        let extra_items = if extra_shared.is_empty() { 0 } else { 2 };
        s.array(2 + extra_items).unwrap().u8(20).unwrap();
        params(&mut s, true);
        let mut shared = s.into_writer();
        shared.extend_from_slice(extra_shared);
        let mut c = Encoder::new(Vec::new());
        c.map(2)
            .unwrap()
            .u8(2)
            .unwrap()
            .array(components.len() as u64)
            .unwrap();
        for id in components {
            c.array(id.len() as u64).unwrap();
            for seg in *id {
                c.bytes(seg).unwrap();
            }
        }
        c.u8(4).unwrap().bytes(&shared).unwrap();
        let common = c.into_writer();
        let mut m = Encoder::new(Vec::new());
        m.map(if install.is_some() { 4 } else { 3 }).unwrap();
        m.u8(1)
            .unwrap()
            .u8(1)
            .unwrap()
            .u8(2)
            .unwrap()
            .u8(5)
            .unwrap();
        m.u8(3).unwrap().bytes(&common).unwrap();
        if let Some(i) = install {
            m.u8(20).unwrap().bytes(i).unwrap();
        }
        m.into_writer()
    }

    #[test]
    fn minimal_manifest_decodes() {
        let m = manifest(&[&[&[0]]], &[], None);
        let d = decode(&m).unwrap();
        assert_eq!((d.sequence, d.image_size, d.uri), (5, 10, None));
    }

    #[test]
    fn second_component_is_unsupported() {
        let m = manifest(&[&[&[0]], &[&[1]]], &[], None);
        assert_eq!(
            decode(&m),
            Err(Error::FieldTooLong {
                field: "components",
                max: 1
            })
        );
    }

    #[test]
    fn five_segments_are_too_many() {
        let m = manifest(&[&[&[0], &[1], &[2], &[3], &[4]]], &[], None);
        assert!(matches!(
            decode(&m),
            Err(Error::FieldTooLong {
                field: "component identifier",
                ..
            })
        ));
    }

    #[test]
    fn unknown_command_is_refused_not_skipped() {
        // directive-swap (31) with a reporting policy.
        let m = manifest(&[&[&[0]]], &[0x18, 31, 0x0f], None);
        assert_eq!(
            decode(&m),
            Err(Error::UnsupportedCommand {
                within: "shared sequence",
                command: 31
            })
        );
    }

    #[test]
    fn fetch_in_the_shared_sequence_is_refused() {
        let m = manifest(&[&[&[0]]], &[0x15, 0x02], None);
        assert_eq!(
            decode(&m),
            Err(Error::UnsupportedCommand {
                within: "shared sequence",
                command: 21
            })
        );
    }

    #[test]
    fn a_parameter_set_in_two_sequences_is_refused() {
        // The install sequence sets the image size again.
        let install = [0x82, 0x14, 0xa1, 0x0e, 0x18, 0x63];
        let m = manifest(&[&[&[0]]], &[], Some(&install));
        assert_eq!(decode(&m), Err(Error::ParameterRepeated(14)));
    }

    #[test]
    fn severed_install_sequence_is_unsupported() {
        let mut m = manifest(&[&[&[0]]], &[], None);
        m[0] += 1;
        m.push(0x14);
        m.extend_from_slice(&digest());
        assert!(matches!(decode(&m), Err(Error::Unsupported(_))));
    }

    #[test]
    fn indefinite_length_manifest_map_is_unsupported() {
        let mut m = manifest(&[&[&[0]]], &[], None);
        m[0] = 0xbf;
        m.push(0xff);
        assert_eq!(decode(&m), Err(Error::Unsupported("indefinite-length map")));
    }

    #[test]
    fn missing_vendor_is_named() {
        let mut s = Encoder::new(Vec::new());
        s.array(2).unwrap().u8(20).unwrap();
        params(&mut s, false);
        let mut c = Encoder::new(Vec::new());
        c.map(2)
            .unwrap()
            .u8(2)
            .unwrap()
            .array(1)
            .unwrap()
            .array(1)
            .unwrap()
            .bytes(&[0])
            .unwrap();
        c.u8(4).unwrap().bytes(&s.into_writer()).unwrap();
        let mut m = Encoder::new(Vec::new());
        m.map(3)
            .unwrap()
            .u8(1)
            .unwrap()
            .u8(1)
            .unwrap()
            .u8(2)
            .unwrap()
            .u8(0)
            .unwrap();
        m.u8(3).unwrap().bytes(&c.into_writer()).unwrap();
        assert_eq!(
            decode(&m.into_writer()),
            Err(Error::Missing("vendor-id parameter"))
        );
    }

    #[test]
    fn digest_other_than_sha256_is_unsupported() {
        let mut e = Encoder::new(Vec::new());
        e.array(2)
            .unwrap()
            .i64(-44)
            .unwrap()
            .bytes(&[0; 64])
            .unwrap();
        assert_eq!(
            decode_digest(&e.into_writer()),
            Err(Error::UnsupportedDigest(-44))
        );
    }
}
