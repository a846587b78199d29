//! A minimal Cortex-M4F firmware that links the Updraft device core.
//!
//! It exists so that CI proves the core builds and links for a real microcontroller without
//! `std` or an allocator, and so that BENCHMARKS.md can size the core (flash and static RAM).
//! The board parts a product supplies (transport, clock, reset, self-test) are stand-ins; the
//! flash driver writes the MCU's memory-mapped flash the way a flash controller in programming
//! mode would.
#![no_std]
#![no_main]

use core::panic::PanicInfo;
use core::ptr::{read_volatile, write_volatile};

use cortex_m_rt::entry;
use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use updraft_device::object5::Protocols;
use updraft_device::{
    Action, Config, Decision, Event, Layout, ResumeMode, State, UpdateCore, select_boot_slot,
};
use updraft_manifest::{Algorithm, PublicKey, Uuid};

/// Where the update area starts: after the first 128 KiB holding this program.
const FLASH_BASE: usize = 0x0802_0000;
/// Two 384 KiB slots plus the state records, in 16 KiB sectors.
const SLOT_SIZE: u32 = 384 * 1024;
const SECTOR: u32 = 16 * 1024;
const FLASH_SIZE: usize = 896 * 1024;

#[cfg(feature = "ed25519")]
const KEY_ALGORITHM: Algorithm = Algorithm::Ed25519;
#[cfg(feature = "ed25519")]
const TRUSTED_KEY: [u8; 32] = [
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
    0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
];
#[cfg(all(feature = "es256", not(feature = "ed25519")))]
const KEY_ALGORITHM: Algorithm = Algorithm::Es256;
/// An uncompressed SEC1 P-256 point (the generator, a valid public key).
#[cfg(all(feature = "es256", not(feature = "ed25519")))]
const TRUSTED_KEY: [u8; 65] = [
    0x04, 0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4, 0x40,
    0xf2, 0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2,
    0x96, 0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a, 0x7c, 0x0f, 0x9e,
    0x16, 0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51,
    0xf5,
];

/// Memory-mapped internal flash, programmed word by word.
struct McuFlash;

#[derive(Debug)]
struct FlashError(NorFlashErrorKind);

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        self.0
    }
}

impl ErrorType for McuFlash {
    type Error = FlashError;
}

fn check(offset: u32, len: usize, align: usize) -> Result<usize, FlashError> {
    let start = offset as usize;
    let end = start
        .checked_add(len)
        .ok_or(FlashError(NorFlashErrorKind::OutOfBounds))?;
    if end > FLASH_SIZE {
        return Err(FlashError(NorFlashErrorKind::OutOfBounds));
    }
    if !start.is_multiple_of(align) || !len.is_multiple_of(align) {
        return Err(FlashError(NorFlashErrorKind::NotAligned));
    }
    Ok(FLASH_BASE + start)
}

impl ReadNorFlash for McuFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let base = check(offset, bytes.len(), 1)?;
        for (i, byte) in bytes.iter_mut().enumerate() {
            // SAFETY: `check` keeps the address inside the update area of the flash.
            *byte = unsafe { read_volatile((base + i) as *const u8) };
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        FLASH_SIZE
    }
}

impl NorFlash for McuFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = SECTOR as usize;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let len = to
            .checked_sub(from)
            .ok_or(FlashError(NorFlashErrorKind::Other))? as usize;
        let base = check(from, len, Self::ERASE_SIZE)?;
        for word in (0..len).step_by(4) {
            // SAFETY: inside the update area; a real driver starts a sector erase here.
            unsafe { write_volatile((base + word) as *mut u32, u32::MAX) };
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let base = check(offset, bytes.len(), Self::WRITE_SIZE)?;
        for (i, chunk) in bytes.chunks_exact(4).enumerate() {
            let word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            // SAFETY: inside the update area and word aligned (checked above).
            unsafe { write_volatile((base + 4 * i) as *mut u32, word) };
        }
        Ok(())
    }
}

/// Board stand-ins: a product wires its transport, clock and reset here.
fn now() -> Option<u64> {
    None
}

fn receive(buf: &mut [u8]) -> usize {
    // SAFETY: reading a device register stand-in keeps the receive path from being optimized out.
    let n = unsafe { read_volatile(0x4001_1004 as *const u8) } as usize;
    n.min(buf.len())
}

fn report(action: &Action) {
    let code = match action {
        Action::Notify { state, .. } => *state as u8,
        Action::Progress { percent } => *percent,
        _ => 0,
    };
    // SAFETY: a write to a (stand-in) transmit register.
    unsafe { write_volatile(0x4001_1004 as *mut u8, code) };
}

fn reset() -> ! {
    // A product calls cortex_m::peripheral::SCB::sys_reset() here.
    loop {
        core::hint::spin_loop();
    }
}

#[entry]
fn main() -> ! {
    let mut flash = McuFlash;
    let Some(key) = PublicKey::from_raw(KEY_ALGORITHM, &TRUSTED_KEY) else {
        reset()
    };
    let keys = [key];
    let config = Config {
        layout: Layout::packed(SLOT_SIZE, SECTOR),
        trusted_keys: &keys,
        vendor_id: Uuid([0x11; 16]),
        class_id: Uuid([0x22; 16]),
        resume: ResumeMode::Resume,
        block_size: 512,
        protocols: Protocols(Protocols::COAP | Protocols::COAPS),
        auto_execute: false,
    };
    let _slot = select_boot_slot(&mut flash, &config.layout);
    let Ok(mut core) = UpdateCore::start(&mut flash, config, now()) else {
        reset()
    };
    if core.state() == State::Updating {
        let _ = core.handle(&mut flash, now(), Event::SelfTest { passed: true });
    }
    let mut buf = [0u8; 512];
    loop {
        let n = receive(&mut buf);
        if n > 0 {
            let _ = core.handle(
                &mut flash,
                now(),
                Event::WritePackage {
                    offset: 0,
                    data: &buf[..n],
                },
            );
        }
        while let Some(action) = core.poll_action() {
            let event = match action {
                Action::FetchManifest => {
                    let n = receive(&mut buf);
                    Event::ManifestFetched(&buf[..n])
                }
                Action::FetchBlock { offset, .. } => {
                    let n = receive(&mut buf);
                    Event::Block {
                        offset,
                        data: &buf[..n],
                        token: b"",
                    }
                }
                Action::AuthorizeDownload { .. } => {
                    Event::DownloadAuthorization(Decision::Authorize)
                }
                Action::AuthorizeInstall { .. } => Event::InstallAuthorization(Decision::Authorize),
                Action::Reboot => reset(),
                other => {
                    report(&other);
                    continue;
                }
            };
            let _ = core.handle(&mut flash, now(), event);
        }
    }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
