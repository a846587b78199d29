//! Streaming image verification: SHA-256 over the bytes as they arrive, bounded by the signed
//! size. Nothing after the signed size is ever hashed or written (RFC 9124: data appended after
//! the image, endless data).

use sha2::{Digest as _, Sha256};
use updraft_manifest::Digest;

/// Why the image failed verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// More bytes than the signed size.
    TooLong,
    /// Complete, but the SHA-256 differs from the signed digest.
    DigestMismatch,
    /// `finish` before all signed bytes arrived.
    Incomplete,
}

/// SHA-256 of an image in progress, with its signed size and digest.
#[derive(Clone)]
pub struct ImageVerifier {
    hasher: Sha256,
    received: u32,
    size: u32,
    digest: Digest,
}

impl ImageVerifier {
    /// Start verifying an image of `size` bytes that must hash to `digest`.
    pub fn new(size: u32, digest: Digest) -> Self {
        Self {
            hasher: Sha256::new(),
            received: 0,
            size,
            digest,
        }
    }

    /// Hash the next bytes; refuses (and hashes nothing) if they go beyond the signed size.
    pub fn update(&mut self, bytes: &[u8]) -> Result<(), VerifyError> {
        let len = u32::try_from(bytes.len()).map_err(|_| VerifyError::TooLong)?;
        let total = self.received.checked_add(len).ok_or(VerifyError::TooLong)?;
        if total > self.size {
            return Err(VerifyError::TooLong);
        }
        self.hasher.update(bytes);
        self.received = total;
        Ok(())
    }

    /// Bytes hashed so far.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// The signed size.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Whether all signed bytes arrived.
    pub fn is_complete(&self) -> bool {
        self.received == self.size
    }

    /// Compare the digest once every byte arrived.
    pub fn finish(&self) -> Result<(), VerifyError> {
        if !self.is_complete() {
            return Err(VerifyError::Incomplete);
        }
        let got: [u8; 32] = self.hasher.clone().finalize().into();
        if got == self.digest {
            Ok(())
        } else {
            Err(VerifyError::DigestMismatch)
        }
    }
}

/// SHA-256 of a byte string (used for whole-slot checks at boot).
pub fn sha256(bytes: &[u8]) -> Digest {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_digest_matches_one_shot_digest() {
        let data = [7u8; 1000];
        let mut v = ImageVerifier::new(1000, sha256(&data));
        for chunk in data.chunks(77) {
            assert_eq!(v.update(chunk), Ok(()));
        }
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn bytes_beyond_signed_size_are_refused() {
        let mut v = ImageVerifier::new(10, [0; 32]);
        assert_eq!(v.update(&[0; 8]), Ok(()));
        assert_eq!(v.update(&[0; 3]), Err(VerifyError::TooLong));
        assert_eq!(v.received(), 8);
    }

    #[test]
    fn wrong_digest_is_a_mismatch_and_incomplete_is_not_accepted() {
        let mut v = ImageVerifier::new(4, [0; 32]);
        assert_eq!(v.finish(), Err(VerifyError::Incomplete));
        assert_eq!(v.update(&[1, 2, 3, 4]), Ok(()));
        assert_eq!(v.finish(), Err(VerifyError::DigestMismatch));
    }
}
