//! 16-byte UUIDs as SUIT uses them for vendor and class ids, and UUIDv5 class ids (RFC 9562).

use sha1::{Digest as _, Sha1};

/// A 16-byte UUID (vendor id, class id).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Uuid(pub [u8; 16]);

/// The text was not a UUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` or 32 hex digits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a UUID: expected 32 hex digits, optionally as 8-4-4-4-12 with dashes")]
pub struct UuidParseError;

impl Uuid {
    /// Parse the hyphenated form or 32 bare hex digits.
    pub fn parse_str(s: &str) -> Result<Self, UuidParseError> {
        let s = s.as_bytes();
        let hyphenated = s.len() == 36;
        if !hyphenated && s.len() != 32 {
            return Err(UuidParseError);
        }
        let mut out = [0u8; 16];
        let mut nibbles = 0usize;
        for (i, &c) in s.iter().enumerate() {
            if hyphenated && matches!(i, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return Err(UuidParseError);
                }
                continue;
            }
            let v = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(UuidParseError),
            };
            let byte = out.get_mut(nibbles / 2).ok_or(UuidParseError)?;
            *byte = (*byte << 4) | v;
            nibbles += 1;
        }
        if nibbles != 32 {
            return Err(UuidParseError);
        }
        Ok(Uuid(out))
    }
}

impl core::str::FromStr for Uuid {
    type Err = UuidParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
    }
}

impl core::fmt::Display for Uuid {
    /// Lowercase hyphenated form.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The class id of a device class: UUIDv5 of `name` in the vendor's namespace.
pub fn class_id(vendor_id: &Uuid, name: &str) -> Uuid {
    let hash = Sha1::new()
        .chain_update(vendor_id.0)
        .chain_update(name.as_bytes())
        .finalize();
    let mut out = [0u8; 16];
    for (o, h) in out.iter_mut().zip(hash.iter()) {
        *o = *h;
    }
    out[6] = (out[6] & 0x0f) | 0x50; // version 5
    out[8] = (out[8] & 0x3f) | 0x80; // RFC 4122 variant
    Uuid(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v5_matches_the_rfc_dns_example() {
        // uuid5(NAMESPACE_DNS, "python.org"), as computed by Python's uuid module.
        let dns = Uuid::parse_str("6ba7b810-9dad-11d1-80b4-00c04fd430c8").unwrap();
        let id = class_id(&dns, "python.org");
        assert_eq!(
            id,
            Uuid::parse_str("886313e1-3b8a-5372-9b90-0c9aee199e5d").unwrap()
        );
    }

    #[test]
    fn uuid_display_round_trips() {
        let s = "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ffe";
        let u = Uuid::parse_str(s).unwrap();
        assert_eq!(u.to_string(), s);
        assert_eq!(Uuid::parse_str("fa6b4a53d5ad5fdfbe9de663e4d41ffe"), Ok(u));
    }

    #[test]
    fn uuid_parse_refuses_garbage() {
        for bad in [
            "",
            "xyz",
            "fa6b4a53-d5ad-5fdf-be9d-e663e4d41ff",
            "fa6b4a53xd5ad-5fdf-be9d-e663e4d41ffe",
            "ga6b4a53-d5ad-5fdf-be9d-e663e4d41ffe",
        ] {
            assert_eq!(Uuid::parse_str(bad), Err(UuidParseError), "{bad}");
        }
    }
}
