//! The device core fed what a network and a server can send: the fuzzer's bytes become a
//! sequence of events (URI writes, pushed blocks, fetched manifests, pulled blocks with tokens,
//! executes, cancels, authorization answers, self-test results, reboots, and rounds of a
//! simulated server that serves a genuinely signed update), on NOR or write-once flash. Whatever
//! arrives, the core must not panic, must not write over unerased flash nor program a word
//! twice, and the device must still boot a valid image.
#![no_main]

use libfuzzer_sys::fuzz_target;
use updraft_device::object5::Protocols;
use updraft_device::sim::{SimDevice, SimFlash, SimServer};
use updraft_device::update::DownloadFailure;
use updraft_device::verify::sha256;
use updraft_device::{Config, Decision, Event, Layout, ResumeMode};
use updraft_manifest::{ManifestSpec, PublicKey, SigningKey, Uuid};

const ERASE: usize = 1024;
const SLOT: u32 = 8 * 1024;
const VENDOR: Uuid = Uuid([0x11; 16]);
const CLASS: Uuid = Uuid([0x22; 16]);

fn key() -> SigningKey {
    SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[7; 32]))
}

fn image(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// Splits the input into events: one selector byte, then what that event needs.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn bytes(&mut self) -> &'a [u8] {
        let len = usize::from(self.byte().unwrap_or(0)) * 4;
        let (head, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        head
    }
    fn offset(&mut self) -> u32 {
        u32::from(self.byte().unwrap_or(0)) * 64
    }
}

fn decision(b: u8) -> Decision {
    match b % 3 {
        0 => Decision::Authorize,
        1 => Decision::Reject,
        _ => Decision::Defer,
    }
}

fuzz_target!(|data: &[u8]| {
    let keys: Vec<PublicKey> = vec![key().public_key()];
    let old = image(3000, 1);
    let new = image(5000, 2);
    let spec = ManifestSpec {
        sequence: 2,
        vendor_id: VENDOR,
        class_id: CLASS,
        component_id: vec![b"fw".to_vec()],
        image_digest: sha256(&new),
        image_size: new.len() as u64,
        uri: Some("coap://fw.example/image.bin".into()),
        version: Some("2.0.0".into()),
        precursor_digest: None,
        expires_at: None,
    };
    let config = Config {
        layout: Layout::packed(SLOT, ERASE as u32),
        trusted_keys: &keys,
        vendor_id: VENDOR,
        class_id: CLASS,
        resume: ResumeMode::Resume,
        block_size: 512,
        protocols: Protocols(Protocols::COAP | Protocols::COAPS),
        auto_execute: data.first().is_some_and(|b| b & 1 == 1),
    };
    let server = SimServer {
        envelope: updraft_manifest::sign(&spec, &key()),
        image: new.clone(),
        token: b"etag-1".to_vec(),
    };
    // The second byte picks the flash: plain NOR or write-once words (8 or 32 bytes).
    let size = config.layout.end() as usize;
    let flash = match data.get(1).map(|b| b % 3) {
        Some(1) => SimFlash::<ERASE, 4>::new_write_once(size, 8),
        Some(2) => SimFlash::<ERASE, 4>::new_write_once(size, 32),
        _ => SimFlash::<ERASE, 4>::new(size),
    };
    let mut dev = SimDevice::new(flash, config, server);
    if dev.provision(&old, 1).is_err() {
        return;
    }
    dev.power_on();

    let mut input = Input(data);
    let mut events = 0;
    while let Some(selector) = input.byte() {
        events += 1;
        if events > 64 {
            break;
        }
        let _ = match selector % 14 {
            0 => dev.send(Event::WritePackageUri(
                core::str::from_utf8(input.bytes()).unwrap_or("coap://fw.example/pkg"),
            )),
            1 => {
                let offset = input.offset();
                dev.send(Event::WritePackage {
                    offset,
                    data: input.bytes(),
                })
            }
            2 => dev.send(Event::ManifestFetched(input.bytes())),
            3 => {
                let offset = input.offset();
                let data = input.bytes();
                let token = input.bytes();
                dev.send(Event::Block {
                    offset,
                    data,
                    token,
                })
            }
            4 => dev.send(Event::Execute),
            5 => dev.send(Event::Cancel),
            6 => dev.send(Event::DownloadFailed(match input.byte().unwrap_or(0) % 3 {
                0 => DownloadFailure::ConnectionLost,
                1 => DownloadFailure::NotFound,
                _ => DownloadFailure::UnsupportedProtocol,
            })),
            7 => dev.send(Event::DownloadAuthorization(decision(
                input.byte().unwrap_or(0),
            ))),
            8 => dev.send(Event::InstallAuthorization(decision(
                input.byte().unwrap_or(0),
            ))),
            9 => dev.send(Event::SelfTest {
                passed: input.byte().unwrap_or(0) & 1 == 0,
            }),
            10 => dev.send(Event::Resume),
            11 => {
                dev.power_on();
                Ok(())
            }
            12 => dev.send(Event::WritePackageUri("coap://fw.example/pkg")),
            _ => {
                dev.run(usize::from(input.byte().unwrap_or(0) % 40));
                Ok(())
            }
        };
        assert_eq!(dev.flash.nor_violations(), 0, "wrote over unerased flash");
        assert_eq!(dev.flash.word_violations(), 0, "programmed a word twice");
    }
    let on_old = dev.booted_digest(old.len()) == Some(sha256(&old));
    let on_new = dev.booted_digest(new.len()) == Some(sha256(&new));
    assert!(on_old || on_new, "the device no longer boots a valid image");
});
