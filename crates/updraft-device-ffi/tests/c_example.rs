//! The C example (`examples/c-device`), built with the host's `gcc` against this crate's static
//! library and header, runs a whole update through the C API on a simulated flash (a C array):
//! a genuinely signed envelope, a deferred download, a power cut halfway and a resume, the
//! install, the trial boot and the confirm. The flash it leaves behind is then read back with
//! the Rust core's own API, so the test does not take the C program's word for the outcome.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use sha2::{Digest as _, Sha256};
use updraft_device::boot::BootState;
use updraft_device::{Layout, Slot, select_boot_slot};
use updraft_manifest::{Algorithm, ManifestSpec, PublicKey, SigningKey, Uuid, sign};

/// As in `host_main.c`.
const SLOT_SIZE: u32 = 64 * 1024;
const SECTOR: u32 = 4096;
const BLOCK: u64 = 512;
const SEQUENCE: u64 = 7;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The static library cargo built for this test run: the newest `libupdraft_device_ffi-*.a`
/// next to the test executable (cargo builds the `staticlib` crate type with the `rlib`).
fn static_library() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps directory");
    let newest = std::fs::read_dir(deps)
        .expect("read the deps directory")
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("libupdraft_device_ffi-") && name.ends_with(".a")
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
    newest
        .map(|e| e.path())
        .unwrap_or_else(|| panic!("no libupdraft_device_ffi-*.a in {}", deps.display()))
}

/// `gcc`, or `None` after a loud notice (a failure under CI, where `.ci/run` installs it).
fn gcc() -> Option<&'static str> {
    if Command::new("gcc").arg("--version").output().is_ok() {
        return Some("gcc");
    }
    let notice = "NOTICE: gcc is not installed: the C API example was NOT built or run";
    assert!(std::env::var_os("CI").is_none(), "{notice} (CI is set)");
    eprintln!("\n{notice}\n");
    None
}

/// Build the C example once per test process.
fn c_program() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let gcc = gcc()?;
            let src = crate_dir().join("../../examples/c-device");
            let out = std::env::temp_dir().join(format!("updraft-c-device-{}", std::process::id()));
            let lib = static_library();
            let status = Command::new(gcc)
                .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
                .arg(crate_dir().join("include"))
                .arg("-I")
                .arg(&src)
                .arg(src.join("example.c"))
                .arg(src.join("host_main.c"))
                .arg(&lib)
                // What a Rust static library needs from the C library on Linux.
                .args(["-lpthread", "-ldl", "-lm", "-lrt", "-lutil", "-o"])
                .arg(&out)
                .status()
                .expect("run gcc");
            assert!(
                status.success(),
                "gcc failed to build the C example with {}",
                lib.display()
            );
            Some(out)
        })
        .as_deref()
}

fn image(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn raw_public_key(key: &SigningKey) -> Vec<u8> {
    match key.public_key() {
        PublicKey::Ed25519(k) => k.to_bytes().to_vec(),
        PublicKey::Es256(k) => k.to_encoded_point(false).as_bytes().to_vec(),
    }
}

fn envelope(key: &SigningKey, image: &[u8]) -> Vec<u8> {
    let spec = ManifestSpec {
        sequence: SEQUENCE,
        vendor_id: Uuid([0x11; 16]),
        class_id: Uuid([0x22; 16]),
        component_id: vec![b"app".to_vec()],
        image_digest: Sha256::digest(image).into(),
        image_size: image.len() as u64,
        uri: Some("coaps://updates.example/fw.bin".into()),
        version: Some("2.0.0".into()),
        precursor_digest: None,
        expires_at: Some(2_100_000_000),
    };
    sign(&spec, key)
}

/// What the C program printed and left on its flash.
struct Run {
    status: Option<i32>,
    stdout: String,
    flash: Vec<u8>,
}

fn run(alg: Algorithm, signed_image: &[u8], served_image: &[u8]) -> Option<Run> {
    let program = c_program()?;
    let key = SigningKey::generate(alg);
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    std::fs::write(d.join("key.bin"), raw_public_key(&key)).expect("write key");
    std::fs::write(d.join("fw.suit"), envelope(&key, signed_image)).expect("write envelope");
    std::fs::write(d.join("fw.bin"), served_image).expect("write image");
    let out = Command::new(program)
        .arg(alg.name())
        .args(["key.bin", "fw.suit", "fw.bin", "flash.bin"])
        .current_dir(d)
        .output()
        .expect("run the C example");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "--- c-device {alg} ---\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flash = std::fs::read(d.join("flash.bin")).unwrap_or_default();
    Some(Run {
        status: out.status.code(),
        stdout,
        flash,
    })
}

/// The flash the C program wrote, behind the core's flash trait (read-only use).
struct Dump(Vec<u8>);

#[derive(Debug)]
struct DumpError;

impl NorFlashError for DumpError {
    fn kind(&self) -> NorFlashErrorKind {
        NorFlashErrorKind::Other
    }
}

impl ErrorType for Dump {
    type Error = DumpError;
}

impl ReadNorFlash for Dump {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), DumpError> {
        let src = self
            .0
            .get(offset as usize..offset as usize + bytes.len())
            .ok_or(DumpError)?;
        bytes.copy_from_slice(src);
        Ok(())
    }
    fn capacity(&self) -> usize {
        self.0.len()
    }
}

impl NorFlash for Dump {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = SECTOR as usize;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), DumpError> {
        self.0
            .get_mut(from as usize..to as usize)
            .ok_or(DumpError)?
            .fill(0xFF);
        Ok(())
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), DumpError> {
        let dst = self
            .0
            .get_mut(offset as usize..offset as usize + bytes.len())
            .ok_or(DumpError)?;
        dst.iter_mut().zip(bytes).for_each(|(d, b)| *d &= b);
        Ok(())
    }
}

fn number_after(stdout: &str, prefix: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in the output"))
}

#[test]
fn full_update_through_the_c_api_installs_the_signed_image() {
    for alg in [Algorithm::Ed25519, Algorithm::Es256] {
        let img = image(40_000);
        let Some(run) = run(alg, &img, &img) else {
            return;
        };
        assert_eq!(
            run.status,
            Some(0),
            "{alg}: the update did not complete with success"
        );
        assert!(
            run.stdout.contains("  -> defer\n"),
            "{alg}: the deferral was not exercised"
        );
        assert!(run.stdout.contains("completed result 1\n"));

        // The power cut halfway re-downloads at most one block.
        let served = number_after(&run.stdout, "power cut after ");
        let resumed = number_after(&run.stdout, "first block after the cut at ");
        assert!(
            resumed > 0,
            "{alg}: the download restarted from 0 after the cut"
        );
        assert!(
            served - resumed <= BLOCK,
            "{alg}: served {served} bytes before the cut, resumed at {resumed}"
        );

        // The flash, read with the Rust core: slot B holds exactly the image and is active.
        let layout = Layout::packed(SLOT_SIZE, SECTOR);
        assert_eq!(run.flash.len(), layout.end() as usize);
        let b = layout.slot(Slot::B);
        assert_eq!(
            &run.flash[b.offset as usize..b.offset as usize + img.len()],
            &img[..],
            "{alg}: slot B differs from the image"
        );
        let mut flash = Dump(run.flash);
        let st = BootState::load(&mut flash, &layout).expect("read boot state");
        assert_eq!(
            st.active,
            Slot::B,
            "{alg}: the new image is not the active one"
        );
        assert_eq!(st.installed_sequence, SEQUENCE);
        assert_eq!(st.active_digest, <[u8; 32]>::from(Sha256::digest(&img)));
        assert!(st.trial.is_none());
        let next = select_boot_slot(&mut flash, &layout).expect("select");
        assert_eq!((next.slot, next.trial), (Slot::B, false));
    }
}

#[test]
fn tampered_image_is_refused_through_the_c_api() {
    let img = image(40_000);
    let mut tampered = img.clone();
    tampered[30_001] ^= 0x01;
    let Some(run) = run(Algorithm::Ed25519, &img, &tampered) else {
        return;
    };
    assert_eq!(run.status, Some(3), "the tampered image was not refused");
    assert!(
        run.stdout.contains("completed result 5\n"),
        "expected result 5 (integrity failure)"
    );
    assert!(
        !run.stdout.contains("(trial)"),
        "a tampered image was booted"
    );
    let layout = Layout::packed(SLOT_SIZE, SECTOR);
    let mut flash = Dump(run.flash);
    let st = BootState::load(&mut flash, &layout).expect("read boot state");
    assert_eq!(st.active, Slot::A);
    assert_eq!(st.installed_sequence, 0);
    assert!(
        st.trial.is_none(),
        "a trial of the tampered image is pending"
    );
    let next = select_boot_slot(&mut flash, &layout).expect("select");
    assert_eq!((next.slot, next.trial), (Slot::A, false));
}
