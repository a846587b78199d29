//! Puts the memory map where cortex-m-rt's `link.x` finds it (`memory-mcu.x`, or `memory-qemu.x`
//! for the QEMU run) and, for the QEMU run, makes its fixtures: a factory image, a new image,
//! the release envelope signed for it with the manifest crate, the same manifest signed by an
//! untrusted key, and the trusted public key.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let qemu = env::var_os("CARGO_FEATURE_QEMU").is_some();
    let memory = if qemu {
        "memory-qemu.x"
    } else {
        "memory-mcu.x"
    };
    fs::copy(memory, out.join("memory.x")).expect("the memory maps are next to build.rs");
    // cortex-m-rt's `device` feature includes a PAC's `device.x`; the handlers here are all
    // `DefaultHandler`, so it names none.
    fs::write(out.join("device.x"), "").expect("OUT_DIR is writable");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory-mcu.x");
    println!("cargo:rerun-if-changed=memory-qemu.x");
    #[cfg(feature = "qemu")]
    fixtures::write(&out);
}

#[cfg(feature = "qemu")]
mod fixtures {
    use sha2::{Digest as _, Sha256};
    use std::{env, fs, path::Path};
    use updraft_manifest::{ManifestSpec, SigningKey, Uuid};

    /// A deterministic pseudo-random image (xorshift).
    fn image(len: usize, seed: u64) -> Vec<u8> {
        let mut x = 0x2545_F491_4F6C_DD1D ^ seed;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Ed25519 unless the firmware trusts ES256 only (the firmware's own choice rule).
    fn keys() -> (SigningKey, SigningKey, Vec<u8>) {
        let ed25519 = env::var_os("CARGO_FEATURE_ED25519_COMPACT_SPEED").is_some()
            || env::var_os("CARGO_FEATURE_ED25519_DALEK").is_some();
        if ed25519 {
            let trusted = dalek_host::SigningKey::from_bytes(&[7; 32]);
            let other = dalek_host::SigningKey::from_bytes(&[8; 32]);
            let raw = trusted.verifying_key().to_bytes().to_vec();
            (
                SigningKey::Ed25519(trusted),
                SigningKey::Ed25519(other),
                raw,
            )
        } else {
            let trusted =
                p256_host::ecdsa::SigningKey::from_slice(&[9; 32]).expect("a valid scalar");
            let other =
                p256_host::ecdsa::SigningKey::from_slice(&[10; 32]).expect("a valid scalar");
            let raw = trusted
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec();
            (SigningKey::Es256(trusted), SigningKey::Es256(other), raw)
        }
    }

    pub fn write(out: &Path) {
        let factory = image(20 * 1024 + 12, 1);
        let new = image(48 * 1024 + 300, 2);
        let spec = ManifestSpec {
            sequence: 2,
            vendor_id: Uuid([0x11; 16]),
            class_id: Uuid([0x22; 16]),
            component_id: vec![b"fw".to_vec()],
            image_digest: Sha256::digest(&new).into(),
            image_size: new.len() as u64,
            uri: Some("coaps://fw.example/image.bin".into()),
            version: Some("2.0.0".into()),
            precursor_digest: None,
            expires_at: None,
        };
        let (trusted, other, raw) = keys();
        let put = |name: &str, bytes: &[u8]| fs::write(out.join(name), bytes).expect("OUT_DIR");
        put("factory.bin", &factory);
        put("image.bin", &new);
        put("release.suit", &updraft_manifest::sign(&spec, &trusted));
        put("forged.suit", &updraft_manifest::sign(&spec, &other));
        put("trusted-key.bin", &raw);
    }
}
