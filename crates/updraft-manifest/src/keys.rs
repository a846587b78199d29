//! Keys: trusted public keys (always), private signing keys (`alloc`), PEM files and key
//! generation (`pem`).
//!
//! PEM files are the usual ones so that other tools read them: PKCS#8 `PRIVATE KEY` for private
//! keys, SPKI `PUBLIC KEY` for public keys (`openssl pkey -in KEY.pem -pubout` gives the same).

use crate::Algorithm;

#[cfg(not(any(feature = "ed25519", feature = "ed25519-compact", feature = "es256")))]
compile_error!(
    "updraft-manifest needs at least one of the features `ed25519`, `ed25519-compact` and `es256`"
);

/// The Ed25519 public key type of the build: ed25519-dalek's (feature `ed25519`, what hosts
/// use, and the one whenever that feature is on) or ed25519-compact's (feature
/// `ed25519-compact` alone: less stack and fewer cycles, for firmware; see BENCHMARKS.md).
#[cfg(feature = "ed25519")]
pub type Ed25519Key = ed25519_dalek::VerifyingKey;
/// The Ed25519 public key type of the build: ed25519-compact's (feature `ed25519-compact`
/// without `ed25519`: a small verifier for firmware; see BENCHMARKS.md).
#[cfg(all(feature = "ed25519-compact", not(feature = "ed25519")))]
pub type Ed25519Key = ed25519_compact::PublicKey;

/// A trusted public key. Each variant exists only with its algorithm's feature, so a firmware
/// links only the verifier it trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// An Ed25519 key (COSE OKP, crv 6).
    #[cfg(any(feature = "ed25519", feature = "ed25519-compact"))]
    Ed25519(Ed25519Key),
    /// A P-256 key for ES256.
    #[cfg(feature = "es256")]
    Es256(p256::ecdsa::VerifyingKey),
}

impl PublicKey {
    /// The signature algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            #[cfg(any(feature = "ed25519", feature = "ed25519-compact"))]
            PublicKey::Ed25519(_) => Algorithm::Ed25519,
            #[cfg(feature = "es256")]
            PublicKey::Es256(_) => Algorithm::Es256,
        }
    }

    /// A key from its raw encoding: 32 bytes for Ed25519, a SEC1 point (33 or 65 bytes) for
    /// ES256. `None` if the bytes are not a valid key, or the algorithm is not compiled in.
    /// For firmware that embeds its keys.
    pub fn from_raw(algorithm: Algorithm, bytes: &[u8]) -> Option<Self> {
        match algorithm {
            #[cfg(feature = "ed25519")]
            Algorithm::Ed25519 => {
                let bytes: &[u8; 32] = bytes.try_into().ok()?;
                ed25519_dalek::VerifyingKey::from_bytes(bytes)
                    .ok()
                    .map(PublicKey::Ed25519)
            }
            #[cfg(all(feature = "ed25519-compact", not(feature = "ed25519")))]
            Algorithm::Ed25519 => compact::key_from_raw(bytes).map(PublicKey::Ed25519),
            #[cfg(feature = "es256")]
            Algorithm::Es256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                .ok()
                .map(PublicKey::Es256),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Verify a raw 64-byte signature over `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        match self {
            #[cfg(feature = "ed25519")]
            PublicKey::Ed25519(key) => {
                let sig = ed25519_dalek::Signature::from_bytes(signature);
                // Strict: refuses small-order keys and non-canonical signatures.
                key.verify_strict(message, &sig).is_ok()
            }
            #[cfg(all(feature = "ed25519-compact", not(feature = "ed25519")))]
            PublicKey::Ed25519(key) => compact::verify(key, message, signature),
            #[cfg(feature = "es256")]
            PublicKey::Es256(key) => {
                use p256::ecdsa::signature::Verifier;
                match p256::ecdsa::Signature::from_slice(signature) {
                    Ok(sig) => key.verify(message, &sig).is_ok(),
                    Err(_) => false,
                }
            }
        }
    }
}

/// The small Ed25519 verifier (ed25519-compact). Compiled whenever its feature is on, so that
/// a build with both backends can check that they agree (`tests/backends.rs`).
#[cfg(feature = "ed25519-compact")]
pub mod compact {
    /// An ed25519-compact key from 32 raw bytes: `None` where ed25519-dalek's `from_bytes`
    /// also refuses (not 32 bytes, not a point). Small-order keys are kept, as dalek keeps
    /// them: [`verify`] refuses every signature under them.
    pub fn key_from_raw(bytes: &[u8]) -> Option<ed25519_compact::PublicKey> {
        let key = ed25519_compact::PublicKey::from_slice(bytes).ok()?;
        match key.validate() {
            Ok(()) | Err(ed25519_compact::Error::WeakPublicKey) => Some(key),
            Err(_) => None,
        }
    }

    /// Verify a raw 64-byte signature. ed25519-compact refuses non-canonical `S`, small-order
    /// keys and small-order `R`, as ed25519-dalek's `verify_strict` does. One difference: its
    /// equation is cofactored, so it also accepts a signature whose `R` the key holder moved by
    /// a small-order point, which `verify_strict` refuses; no one without the key can make
    /// either (`tests/backends.rs` pins both behaviours).
    pub fn verify(key: &ed25519_compact::PublicKey, message: &[u8], signature: &[u8; 64]) -> bool {
        key.verify(message, &ed25519_compact::Signature::new(*signature))
            .is_ok()
    }
}

#[cfg(feature = "alloc")]
pub use signing::SigningKey;

#[cfg(feature = "alloc")]
mod signing {
    use super::*;

    /// A private signing key.
    pub enum SigningKey {
        /// Ed25519.
        Ed25519(ed25519_dalek::SigningKey),
        /// ECDSA P-256 (ES256).
        Es256(p256::ecdsa::SigningKey),
    }

    impl core::fmt::Debug for SigningKey {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            // Never print the secret.
            write!(f, "SigningKey({})", self.algorithm())
        }
    }

    impl SigningKey {
        /// The public half, to give to devices and servers.
        pub fn public_key(&self) -> PublicKey {
            match self {
                SigningKey::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
                SigningKey::Es256(k) => PublicKey::Es256(*k.verifying_key()),
            }
        }

        /// The algorithm this key signs with.
        pub fn algorithm(&self) -> Algorithm {
            match self {
                SigningKey::Ed25519(_) => Algorithm::Ed25519,
                SigningKey::Es256(_) => Algorithm::Es256,
            }
        }

        /// A raw 64-byte signature (Ed25519, or ES256 `r || s`) over `message`.
        pub(crate) fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
            use ed25519_dalek::Signer as _;
            match self {
                SigningKey::Ed25519(k) => k.sign(message).to_bytes(),
                SigningKey::Es256(k) => {
                    let sig: p256::ecdsa::Signature =
                        p256::ecdsa::signature::Signer::sign(k, message);
                    let mut out = [0u8; 64];
                    out.copy_from_slice(&sig.to_bytes());
                    out
                }
            }
        }
    }
}

#[cfg(feature = "pem")]
pub use pem::KeyError;

#[cfg(feature = "pem")]
mod pem {
    use super::*;
    use alloc::string::String;
    use ed25519_dalek::pkcs8::{
        DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey,
        spki::der::pem::LineEnding,
    };

    /// Why a key file could not be read or written.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum KeyError {
        /// The text is not a PKCS#8 private key of a supported algorithm.
        #[error(
            "not a PKCS#8 PEM private key for Ed25519 or P-256 (expected '-----BEGIN PRIVATE KEY-----')"
        )]
        NotAPrivateKey,
        /// The text is not an SPKI public key of a supported algorithm.
        #[error(
            "not an SPKI PEM public key for Ed25519 or P-256 (expected '-----BEGIN PUBLIC KEY-----')"
        )]
        NotAPublicKey,
        /// Encoding failed.
        #[error("could not encode the key")]
        Encode,
    }

    impl SigningKey {
        /// A fresh key from the operating system's random source.
        pub fn generate(algorithm: Algorithm) -> Self {
            let mut rng = rand_core::OsRng;
            match algorithm {
                Algorithm::Ed25519 => {
                    SigningKey::Ed25519(ed25519_dalek::SigningKey::generate(&mut rng))
                }
                Algorithm::Es256 => SigningKey::Es256(p256::ecdsa::SigningKey::random(&mut rng)),
            }
        }

        /// Read a PKCS#8 PEM private key (Ed25519 or P-256).
        pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
            if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
                return Ok(SigningKey::Ed25519(k));
            }
            if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
                return Ok(SigningKey::Es256(k));
            }
            Err(KeyError::NotAPrivateKey)
        }

        /// Write the key as PKCS#8 PEM.
        pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
            let pem = match self {
                SigningKey::Ed25519(k) => k.to_pkcs8_pem(LineEnding::LF),
                SigningKey::Es256(k) => k.to_pkcs8_pem(LineEnding::LF),
            };
            pem.map(|z| String::from(z.as_str()))
                .map_err(|_| KeyError::Encode)
        }
    }

    impl PublicKey {
        /// Read an SPKI PEM public key (Ed25519 or P-256).
        pub fn from_public_key_pem(pem: &str) -> Result<Self, KeyError> {
            if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(pem) {
                return Ok(PublicKey::Ed25519(k));
            }
            if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(pem) {
                return Ok(PublicKey::Es256(k));
            }
            Err(KeyError::NotAPublicKey)
        }

        /// Write the key as SPKI PEM.
        pub fn to_public_key_pem(&self) -> Result<String, KeyError> {
            match self {
                PublicKey::Ed25519(k) => k.to_public_key_pem(LineEnding::LF),
                PublicKey::Es256(k) => k.to_public_key_pem(LineEnding::LF),
            }
            .map_err(|_| KeyError::Encode)
        }
    }
}
