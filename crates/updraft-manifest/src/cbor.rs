//! A bounded, strict CBOR reader over `minicbor::Decoder`.
//!
//! Every method names the structure it reads so that errors say where the input went wrong.
//! It accepts definite lengths only, bounds every count, and [`Reader::finish`] refuses trailing
//! bytes. Nesting depth is bounded by construction: the decoders that use it call one function
//! per SUIT structure and never recurse on input-controlled depth.

use crate::Error;
use minicbor::Decoder;
use minicbor::data::Type;

/// Most entries any map or array in an envelope may have.
pub const MAX_ENTRIES: u64 = 32;

pub struct Reader<'a> {
    d: Decoder<'a>,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader {
            d: Decoder::new(bytes),
        }
    }

    pub fn position(&self) -> usize {
        self.d.position()
    }

    pub fn input(&self) -> &'a [u8] {
        self.d.input()
    }

    pub fn datatype(&self, what: &'static str) -> Result<Type, Error> {
        self.d.datatype().map_err(|_| Error::Malformed(what))
    }

    pub fn tag(&mut self, what: &'static str) -> Result<u64, Error> {
        self.d
            .tag()
            .map(|t| t.as_u64())
            .map_err(|_| Error::Malformed(what))
    }

    /// A definite-length map with at most `max` entries.
    pub fn map(&mut self, what: &'static str, max: u64) -> Result<u64, Error> {
        match self.d.map() {
            Ok(Some(n)) if n <= max.min(MAX_ENTRIES) => Ok(n),
            Ok(Some(_)) => Err(Error::FieldTooLong {
                field: what,
                max: max.min(MAX_ENTRIES) as usize,
            }),
            Ok(None) => Err(Error::Unsupported("indefinite-length map")),
            Err(_) => Err(Error::Malformed(what)),
        }
    }

    /// A definite-length array with at most `max` entries.
    pub fn array(&mut self, what: &'static str, max: u64) -> Result<u64, Error> {
        match self.d.array() {
            Ok(Some(n)) if n <= max.min(MAX_ENTRIES) => Ok(n),
            Ok(Some(_)) => Err(Error::FieldTooLong {
                field: what,
                max: max.min(MAX_ENTRIES) as usize,
            }),
            Ok(None) => Err(Error::Unsupported("indefinite-length array")),
            Err(_) => Err(Error::Malformed(what)),
        }
    }

    /// An array of exactly `n` entries.
    pub fn array_of(&mut self, what: &'static str, n: u64) -> Result<(), Error> {
        match self.d.array() {
            Ok(Some(m)) if m == n => Ok(()),
            Ok(None) => Err(Error::Unsupported("indefinite-length array")),
            _ => Err(Error::Malformed(what)),
        }
    }

    /// A definite-length byte string of at most `max` bytes.
    pub fn bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], Error> {
        match self.d.bytes() {
            Ok(b) if b.len() <= max => Ok(b),
            Ok(_) => Err(Error::FieldTooLong { field: what, max }),
            Err(_) => Err(Error::Malformed(what)),
        }
    }

    /// A byte string of exactly `N` bytes.
    pub fn bytes_array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let b = self.d.bytes().map_err(|_| Error::Malformed(what))?;
        <[u8; N]>::try_from(b).map_err(|_| Error::Malformed(what))
    }

    /// A definite-length UTF-8 text string of at most `max` bytes.
    pub fn str(&mut self, what: &'static str, max: usize) -> Result<&'a str, Error> {
        match self.d.str() {
            Ok(s) if s.len() <= max => Ok(s),
            Ok(_) => Err(Error::FieldTooLong { field: what, max }),
            Err(_) => Err(Error::Malformed(what)),
        }
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, Error> {
        match self.d.datatype() {
            Ok(Type::U8 | Type::U16 | Type::U32 | Type::U64) => {
                self.d.u64().map_err(|_| Error::Malformed(what))
            }
            _ => Err(Error::Malformed(what)),
        }
    }

    /// An integer (map key, algorithm id) that fits an `i64`.
    pub fn int(&mut self, what: &'static str) -> Result<i64, Error> {
        match self.d.datatype() {
            Ok(
                Type::U8
                | Type::U16
                | Type::U32
                | Type::U64
                | Type::I8
                | Type::I16
                | Type::I32
                | Type::I64,
            ) => self.d.i64().map_err(|_| Error::Malformed(what)),
            _ => Err(Error::Malformed(what)),
        }
    }

    pub fn null(&mut self, what: &'static str) -> Result<(), Error> {
        self.d.null().map_err(|_| Error::Malformed(what))
    }

    /// Refuse anything after the item that was read.
    pub fn finish(&self, what: &'static str) -> Result<(), Error> {
        if self.d.position() == self.d.input().len() {
            Ok(())
        } else {
            Err(Error::TrailingBytes(what))
        }
    }
}

/// The keys already seen in one map, to refuse duplicates.
pub struct SeenKeys {
    keys: [i64; MAX_ENTRIES as usize],
    len: usize,
    within: &'static str,
}

impl SeenKeys {
    pub fn new(within: &'static str) -> Self {
        SeenKeys {
            keys: [0; MAX_ENTRIES as usize],
            len: 0,
            within,
        }
    }

    pub fn insert(&mut self, key: i64) -> Result<(), Error> {
        let seen = self.keys.get(..self.len).unwrap_or(&[]);
        if seen.contains(&key) {
            return Err(Error::DuplicateKey {
                within: self.within,
                key,
            });
        }
        match self.keys.get_mut(self.len) {
            Some(slot) => {
                *slot = key;
                self.len += 1;
                Ok(())
            }
            None => Err(Error::FieldTooLong {
                field: self.within,
                max: MAX_ENTRIES as usize,
            }),
        }
    }

    pub fn unknown(&self, key: i64) -> Error {
        Error::UnknownKey {
            within: self.within,
            key,
        }
    }
}

/// A parameter or field that may be set at most once.
pub fn set_once<T>(slot: &mut Option<T>, value: T, key: i64) -> Result<(), Error> {
    if slot.is_some() {
        return Err(Error::ParameterRepeated(key));
    }
    *slot = Some(value);
    Ok(())
}
