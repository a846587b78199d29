//! Fixtures shared by the integration tests: keys, images, signed envelopes, a provisioned
//! simulated device.
#![allow(dead_code)]

use std::cell::Cell;

use updraft_device::object5::Protocols;
use updraft_device::sim::{Programming, SimDevice, SimFlash, SimServer};
use updraft_device::update::Step;
use updraft_device::{Action, Config, Layout, ResumeMode, UpdateCore};
use updraft_manifest::{ManifestSpec, PublicKey, SigningKey, Uuid};

pub const ERASE: usize = 1024;
pub const WRITE: usize = 4;
pub type Flash = SimFlash<ERASE, WRITE>;
pub type Device<'k> = SimDevice<'k, ERASE, WRITE>;

pub const SLOT_SIZE: u32 = 16 * 1024;
pub const BLOCK: u32 = 512;
pub const VENDOR: Uuid = Uuid([0x11; 16]);
pub const CLASS: Uuid = Uuid([0x22; 16]);
pub const OLD_SEQ: u64 = 1;
pub const NEW_SEQ: u64 = 2;
pub const URI: &str = "coap://fw.example/pkg";
pub const IMAGE_URI: &str = "coap://fw.example/image.bin";

pub fn signing_key() -> SigningKey {
    SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[7; 32]))
}

pub fn other_key() -> SigningKey {
    SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[8; 32]))
}

pub fn trusted_keys() -> Vec<PublicKey> {
    vec![signing_key().public_key()]
}

/// The flash modes every device test runs on: plain NOR, and write-once per erase (ECC words)
/// with 8-byte and 32-byte words.
pub const FLASH_MODES: [Programming; 3] = [
    Programming::Nor,
    Programming::WriteOnce { word: 8 },
    Programming::WriteOnce { word: 32 },
];

thread_local! {
    static MODE: Cell<Programming> = const { Cell::new(Programming::Nor) };
}

/// The flash mode the fixtures of this test thread build.
pub fn flash_mode() -> Programming {
    MODE.with(Cell::get)
}

/// Set the flash mode of this test thread's fixtures.
pub fn set_flash_mode(mode: Programming) {
    MODE.with(|m| m.set(mode));
}

/// Run `f` once on each flash mode (the fixtures build devices on it); a failure names it.
pub fn each_flash(f: impl Fn()) {
    for mode in FLASH_MODES {
        eprintln!("flash mode: {mode:?}");
        set_flash_mode(mode);
        f();
    }
    set_flash_mode(Programming::Nor);
}

/// Whether the current mode lets the core rewrite interrupted words (see `Layout::multiwrite`).
pub fn multiwrite() -> bool {
    flash_mode() == Programming::Nor
}

/// Where a download whose durable offset is `durable` resumes after a power cycle, on the
/// current flash mode: there on NOR, at the start of its sector on write-once flash.
pub fn resume_offset(durable: u32) -> u32 {
    if multiwrite() {
        durable
    } else {
        durable / ERASE as u32 * ERASE as u32
    }
}

/// A layout for a flash of `sector`-byte sectors on the current flash mode.
pub fn layout_on(sector: u32) -> Layout {
    let mut l = Layout::packed(SLOT_SIZE, sector);
    l.multiwrite = multiwrite();
    l
}

pub fn layout() -> Layout {
    layout_on(ERASE as u32)
}

pub fn config(keys: &[PublicKey]) -> Config<'_> {
    Config {
        layout: layout(),
        trusted_keys: keys,
        vendor_id: VENDOR,
        class_id: CLASS,
        resume: ResumeMode::Resume,
        block_size: BLOCK,
        protocols: Protocols(Protocols::COAP | Protocols::COAPS),
        auto_execute: true,
    }
}

/// A deterministic pseudo-random image.
pub fn image(len: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x2545_F491_4F6C_DD1Du64 ^ u64::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn old_image() -> Vec<u8> {
    image(5000, 1)
}

pub fn new_image() -> Vec<u8> {
    image(7 * 1024 + 300, 2)
}

pub fn sha256(b: &[u8]) -> [u8; 32] {
    updraft_device::verify::sha256(b)
}

pub fn spec(sequence: u64, img: &[u8]) -> ManifestSpec {
    ManifestSpec {
        sequence,
        vendor_id: VENDOR,
        class_id: CLASS,
        component_id: vec![b"fw".to_vec()],
        image_digest: sha256(img),
        image_size: img.len() as u64,
        uri: Some(IMAGE_URI.into()),
        version: Some("2.0.0".into()),
        precursor_digest: None,
        expires_at: None,
    }
}

pub fn envelope(spec: &ManifestSpec) -> Vec<u8> {
    updraft_manifest::sign(spec, &signing_key())
}

pub fn server(img: &[u8]) -> SimServer {
    SimServer {
        envelope: envelope(&spec(NEW_SEQ, img)),
        image: img.to_vec(),
        token: b"etag-1".to_vec(),
    }
}

/// A device running the old image (sequence 1), powered on, initial actions drained.
pub fn device<'k>(keys: &'k [PublicKey], server: SimServer) -> Device<'k> {
    device_with(config(keys), server)
}

pub fn device_with<'k>(config: Config<'k>, server: SimServer) -> Device<'k> {
    device_on::<ERASE, WRITE>(config, server)
}

/// A provisioned, powered-on device on a flash of any geometry.
pub fn device_on<'k, const E: usize, const W: usize>(
    config: Config<'k>,
    server: SimServer,
) -> SimDevice<'k, E, W> {
    let mode = match flash_mode() {
        Programming::WriteOnce { word } => Programming::WriteOnce { word: word.max(W) },
        Programming::Nor => Programming::Nor,
    };
    let flash = SimFlash::<E, W>::with_programming(config.layout.end() as usize, mode);
    let mut dev = SimDevice::new(flash, config, server);
    dev.provision(&old_image(), OLD_SEQ).expect("provision");
    dev.power_on();
    drain(&mut dev);
    dev
}

/// Pop every queued action without serving it.
pub fn drain<const E: usize, const W: usize>(dev: &mut SimDevice<'_, E, W>) -> Vec<Action> {
    let mut out = Vec::new();
    if let Some(core) = dev.core.as_mut() {
        while let Some(a) = core.poll_action() {
            out.push(a);
        }
    }
    out
}

pub fn core<'a, 'k>(dev: &'a mut Device<'k>) -> &'a mut UpdateCore<'k> {
    dev.core.as_mut().expect("powered on")
}

pub fn step(dev: &Device<'_>) -> Step {
    dev.core().step()
}

/// The push package: `u32 BE envelope length | envelope | image`.
pub fn push_package(env: &[u8], img: &[u8]) -> Vec<u8> {
    let mut p = (env.len() as u32).to_be_bytes().to_vec();
    p.extend_from_slice(env);
    p.extend_from_slice(img);
    p
}
