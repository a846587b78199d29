//! Trusted public keys: parsing PEM (SubjectPublicKeyInfo) into manifest verification keys.

use ed25519_dalek::pkcs8::DecodePublicKey as _;
use p256::pkcs8::EncodePublicKey as _;
use sha2::{Digest, Sha256};
use updraft_manifest::PublicKey;

/// A parsed public key with its algorithm name and fingerprint.
#[derive(Debug, Clone)]
pub struct ParsedKey {
    /// The verification key.
    pub key: PublicKey,
    /// `ed25519` or `es256`.
    pub algorithm: &'static str,
    /// SHA-256 of the DER SubjectPublicKeyInfo, hex.
    pub fingerprint: String,
}

/// Why a key was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "not a PEM Ed25519 or P-256 public key (SubjectPublicKeyInfo, \"-----BEGIN PUBLIC KEY-----\")"
)]
pub struct KeyError;

/// Parse a PEM public key (Ed25519 or P-256).
pub fn parse_pem(pem: &str) -> Result<ParsedKey, KeyError> {
    if pem.len() > 4096 {
        return Err(KeyError);
    }
    if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(pem) {
        let der =
            ed25519_dalek::pkcs8::EncodePublicKey::to_public_key_der(&k).map_err(|_| KeyError)?;
        return Ok(ParsedKey {
            key: PublicKey::Ed25519(k),
            algorithm: "ed25519",
            fingerprint: hex::encode(Sha256::digest(der.as_bytes())),
        });
    }
    if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(pem) {
        let der = k.to_public_key_der().map_err(|_| KeyError)?;
        return Ok(ParsedKey {
            key: PublicKey::Es256(k),
            algorithm: "es256",
            fingerprint: hex::encode(Sha256::digest(der.as_bytes())),
        });
    }
    Err(KeyError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::EncodePublicKey;

    #[test]
    fn ed25519_and_p256_pem_keys_parse_and_garbage_does_not() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let pem = sk
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        let parsed = parse_pem(&pem).unwrap();
        assert_eq!(parsed.algorithm, "ed25519");
        assert_eq!(parsed.fingerprint.len(), 64);

        let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let pem = sk
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        assert_eq!(parse_pem(&pem).unwrap().algorithm, "es256");

        assert!(parse_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").is_err());
        assert!(parse_pem("hello").is_err());
    }
}
