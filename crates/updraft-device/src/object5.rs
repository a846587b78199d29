//! LwM2M Firmware Update object /5 (version 1.1): the resources, their value types and the
//! errors an operation is refused with.
//!
//! This module only holds the vocabulary; which operation is allowed in which state is decided
//! by [`crate::update::UpdateCore`], which owns the transitions (protocols.md section 1).

/// Resource ids of object /5 (there is no resource 4).
pub mod resource {
    /// Package (W, push delivery).
    pub const PACKAGE: u16 = 0;
    /// Package URI (RW, pull delivery).
    pub const PACKAGE_URI: u16 = 1;
    /// Update (E).
    pub const UPDATE: u16 = 2;
    /// State (R).
    pub const STATE: u16 = 3;
    /// Update Result (R).
    pub const UPDATE_RESULT: u16 = 5;
    /// PkgName (R).
    pub const PKG_NAME: u16 = 6;
    /// PkgVersion (R).
    pub const PKG_VERSION: u16 = 7;
    /// Firmware Update Protocol Support (R, multiple).
    pub const PROTOCOL_SUPPORT: u16 = 8;
    /// Firmware Update Delivery Method (R).
    pub const DELIVERY_METHOD: u16 = 9;
    /// Cancel (E, 1.1).
    pub const CANCEL: u16 = 10;
    /// Severity (RW, 1.1).
    pub const SEVERITY: u16 = 11;
    /// Last State Change Time (R, 1.1).
    pub const LAST_STATE_CHANGE_TIME: u16 = 12;
    /// Maximum Defer Period (RW, 1.1).
    pub const MAXIMUM_DEFER_PERIOD: u16 = 13;
}

/// /5/0/3 State.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// 0: nothing in progress.
    Idle = 0,
    /// 1: a package is being fetched or received.
    Downloading = 1,
    /// 2: a verified package waits for Update.
    Downloaded = 2,
    /// 3: the package is being installed (trial boot, self-test).
    Updating = 3,
}

/// /5/0/5 Update Result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum UpdateResult {
    /// 0: initial value.
    Initial = 0,
    /// 1: firmware updated successfully.
    Success = 1,
    /// 2: not enough flash memory for the new package.
    NotEnoughFlash = 2,
    /// 3: out of RAM during download.
    OutOfRam = 3,
    /// 4: connection lost during download.
    ConnectionLost = 4,
    /// 5: integrity check failure (signature, digest, size, replay).
    IntegrityFailure = 5,
    /// 6: unsupported package type (malformed envelope, wrong device).
    UnsupportedPackage = 6,
    /// 7: invalid URI.
    InvalidUri = 7,
    /// 8: firmware update failed.
    UpdateFailed = 8,
    /// 9: unsupported protocol.
    UnsupportedProtocol = 9,
    /// 10: update cancelled.
    Cancelled = 10,
    /// 11: update deferred.
    Deferred = 11,
}

/// /5/0/11 Severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Severity {
    /// 0: critical.
    Critical = 0,
    /// 1: mandatory (the default).
    Mandatory = 1,
    /// 2: optional.
    Optional = 2,
}

impl Severity {
    /// Parse a written value; `None` for anything but 0, 1, 2.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Critical),
            1 => Some(Self::Mandatory),
            2 => Some(Self::Optional),
            _ => None,
        }
    }
}

/// /5/0/8 Protocol Support values, as a set (bit n = protocol n).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocols(pub u8);

impl Protocols {
    /// CoAP (0).
    pub const COAP: u8 = 1 << 0;
    /// CoAPS (1).
    pub const COAPS: u8 = 1 << 1;
    /// HTTP/1.1 (2).
    pub const HTTP: u8 = 1 << 2;
    /// HTTPS/1.1 (3).
    pub const HTTPS: u8 = 1 << 3;
    /// CoAP over TCP (4).
    pub const COAP_TCP: u8 = 1 << 4;
    /// CoAP over TLS (5).
    pub const COAP_TLS: u8 = 1 << 5;

    /// Whether the protocol a URI scheme names is in the set.
    pub fn supports_scheme(self, scheme: &str) -> bool {
        let bit = match scheme {
            "coap" => Self::COAP,
            "coaps" => Self::COAPS,
            "http" => Self::HTTP,
            "https" => Self::HTTPS,
            "coap+tcp" => Self::COAP_TCP,
            "coaps+tcp" => Self::COAP_TLS,
            _ => 0,
        };
        bit != 0 && self.0 & bit != 0
    }
}

/// Why a Package URI was refused (the result it sets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriError {
    /// Malformed or longer than 255 bytes: result 7.
    Invalid,
    /// A scheme the device did not list in /5/0/8: result 9.
    UnsupportedScheme,
}

/// Longest Package URI (/5/0/1 is a string of at most 255 bytes).
pub const MAX_URI_LEN: usize = 255;

/// Check a non-empty Package URI: `scheme://host...` with a supported scheme.
pub fn check_uri(uri: &str, protocols: Protocols) -> Result<(), UriError> {
    if uri.len() > MAX_URI_LEN {
        return Err(UriError::Invalid);
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(UriError::Invalid);
    };
    let scheme_ok = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.');
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if !scheme_ok || host.is_empty() || uri.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(UriError::Invalid);
    }
    if !protocols.supports_scheme(scheme) {
        return Err(UriError::UnsupportedScheme);
    }
    Ok(())
}

/// Why an operation on /5 was refused; maps to a CoAP response code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpError {
    /// 4.00 Bad Request (e.g. Write URI while Downloading, an invalid value).
    BadRequest,
    /// 4.05 Method Not Allowed (Execute when not Downloaded, Write while Updating, Cancel after
    /// Update).
    MethodNotAllowed,
    /// 5.03 Service Unavailable: a pushed block cannot be taken yet (authorization pending);
    /// the server retries the same block later.
    ServiceUnavailable,
    /// 5.00: flash failed while handling the operation.
    Internal,
}

impl OpError {
    /// The CoAP response code as (class, detail).
    pub fn coap_code(self) -> (u8, u8) {
        match self {
            Self::BadRequest => (4, 0),
            Self::MethodNotAllowed => (4, 5),
            Self::ServiceUnavailable => (5, 3),
            Self::Internal => (5, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Protocols = Protocols(0x3f);

    #[test]
    fn uri_with_unsupported_scheme_is_refused_as_unsupported_protocol() {
        let coap_only = Protocols(Protocols::COAP);
        assert_eq!(
            check_uri("https://h/x", coap_only),
            Err(UriError::UnsupportedScheme)
        );
        assert_eq!(check_uri("coap://h/x", coap_only), Ok(()));
    }

    #[test]
    fn malformed_or_overlong_uri_is_invalid() {
        assert_eq!(check_uri("no-scheme", ALL), Err(UriError::Invalid));
        assert_eq!(check_uri("coap:///path", ALL), Err(UriError::Invalid));
        assert_eq!(check_uri("coap://h o/st", ALL), Err(UriError::Invalid));
        let long = [b'a'; 300];
        let long = core::str::from_utf8(&long).unwrap_or("");
        assert_eq!(check_uri(long, ALL), Err(UriError::Invalid));
    }

    #[test]
    fn op_errors_map_to_coap_codes() {
        assert_eq!(OpError::BadRequest.coap_code(), (4, 0));
        assert_eq!(OpError::MethodNotAllowed.coap_code(), (4, 5));
    }
}
