//! A minimal Cortex-M4F firmware that links the Updraft device core.
//!
//! It exists so that CI proves the core builds, links and runs on a microcontroller without
//! `std` or an allocator, and so that BENCHMARKS.md can size the core (flash, static RAM, stack).
//!
//! Two builds of one program:
//!
//! * the default one is the size reference: the board parts a product supplies (transport,
//!   clock, reset, self-test) are stand-ins, and the flash driver writes the MCU's
//!   memory-mapped flash the way a flash controller in programming mode would;
//! * `--features qemu` runs on QEMU's `mps2-an386` (Cortex-M4F). Its "flash" is a RAM region,
//!   its transport serves envelopes and an image that `build.rs` made and signed with the
//!   manifest crate. It refuses a forged envelope and a corrupted image, installs the real
//!   update, reboots into it, confirms it, checks the installed slot against the image digest
//!   and reports the stack high-water mark over semihosting, then exits with the verdict.
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
    Action, BootDecision, Config, Decision, Event, Layout, ResumeMode, State, UpdateCore,
    select_boot_slot,
};
use updraft_manifest::{Algorithm, PublicKey, Uuid};

#[cfg(feature = "qemu")]
mod qemu;

#[cfg(not(any(
    feature = "ed25519-compact-speed",
    feature = "ed25519-dalek",
    feature = "es256"
)))]
compile_error!(
    "enable one of the features `ed25519`, `ed25519-compact-speed`, `ed25519-dalek`, `es256`"
);

/// Where the update area starts: after the first 128 KiB holding this program. Under QEMU, a
/// RAM region of the board stands in for the flash.
#[cfg(not(feature = "qemu"))]
const FLASH_BASE: usize = 0x0802_0000;
#[cfg(feature = "qemu")]
const FLASH_BASE: usize = 0x2100_0000;
/// Two 384 KiB slots plus the state records, in 16 KiB sectors.
const SLOT_SIZE: u32 = 384 * 1024;
const SECTOR: u32 = 16 * 1024;
const FLASH_SIZE: usize = 896 * 1024;
/// The transfer block: what one CoAP Block2 payload carries.
const BLOCK: usize = 512;

#[cfg(any(feature = "ed25519-compact-speed", feature = "ed25519-dalek"))]
const KEY_ALGORITHM: Algorithm = Algorithm::Ed25519;
#[cfg(all(
    feature = "es256",
    not(any(feature = "ed25519-compact-speed", feature = "ed25519-dalek"))
))]
const KEY_ALGORITHM: Algorithm = Algorithm::Es256;

/// The trusted key: the one `build.rs` signed the QEMU fixtures with.
#[cfg(feature = "qemu")]
const TRUSTED_KEY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/trusted-key.bin"));
#[cfg(all(
    not(feature = "qemu"),
    any(feature = "ed25519-compact-speed", feature = "ed25519-dalek")
))]
const TRUSTED_KEY: &[u8] = &[
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
    0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
];
/// An uncompressed SEC1 P-256 point (the generator, a valid public key).
#[cfg(all(
    not(feature = "qemu"),
    feature = "es256",
    not(any(feature = "ed25519-compact-speed", feature = "ed25519-dalek"))
))]
const TRUSTED_KEY: &[u8] = &[
    0x04, 0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4, 0x40,
    0xf2, 0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2,
    0x96, 0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a, 0x7c, 0x0f, 0x9e,
    0x16, 0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51,
    0xf5,
];

const VENDOR_ID: Uuid = Uuid([0x11; 16]);
const CLASS_ID: Uuid = Uuid([0x22; 16]);

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
            let at = (base + 4 * i) as *mut u32;
            // The RAM that stands in for flash under QEMU keeps NOR's rule: programming only
            // clears bits, so a write over a 0 bit without an erase is an error.
            // SAFETY: inside the update area and word aligned (checked above).
            #[cfg(feature = "qemu")]
            if word & !unsafe { read_volatile(at) } != 0 {
                return Err(FlashError(NorFlashErrorKind::Other));
            }
            // SAFETY: inside the update area and word aligned (checked above).
            unsafe { write_volatile(at, word) };
        }
        Ok(())
    }
}

/// Interrupt vectors of an STM32F407-class part (82); a product's PAC provides this table.
const INTERRUPTS: usize = 82;

unsafe extern "C" {
    /// cortex-m-rt's default exception and interrupt handler.
    fn DefaultHandler();
}

#[unsafe(link_section = ".vector_table.interrupts")]
#[unsafe(no_mangle)]
static __INTERRUPTS: [unsafe extern "C" fn(); INTERRUPTS] = [DefaultHandler; INTERRUPTS];

/// What a product wires to the core: transport, clock, self-test, reporting.
trait Board {
    /// The current time (Unix seconds) if the board has a clock.
    fn now(&self) -> Option<u64>;
    /// The envelope at `uri` into `buf`; its length.
    fn fetch_manifest(&mut self, uri: &str, buf: &mut [u8]) -> usize;
    /// Image bytes of `uri` at `offset` into `buf`; their length.
    fn fetch_block(&mut self, uri: &str, offset: u32, buf: &mut [u8]) -> usize;
    /// Whether the new image works (run once in a trial boot).
    fn self_test(&mut self) -> bool;
    /// Tell the server (Notify, Progress, ImageState, Completed).
    fn report(&mut self, action: &Action);
}

fn config(keys: &[PublicKey]) -> Config<'_> {
    Config {
        layout: Layout::packed(SLOT_SIZE, SECTOR),
        trusted_keys: keys,
        vendor_id: VENDOR_ID,
        class_id: CLASS_ID,
        resume: ResumeMode::Resume,
        block_size: BLOCK as u32,
        protocols: Protocols(Protocols::COAP | Protocols::COAPS),
        auto_execute: false,
    }
}

/// What a boot does before the main loop: the bootloader half picks the slot, the core resumes
/// whatever was in progress, a trial image tests itself; then `main_loop` runs with the core.
/// The core is built in place (`UpdateCore::start_in`) and never moved: it is most of the RAM
/// the update path needs, and each move would hold another copy of it in some frame. `None` if
/// the boot state cannot be read or the core cannot start.
#[inline(always)]
fn boot<B: Board, R>(
    flash: &mut McuFlash,
    board: &mut B,
    config: Config<'_>,
    main_loop: impl FnOnce(BootDecision, &mut UpdateCore<'_>, &mut McuFlash, &mut B) -> R,
) -> Option<R> {
    let decision = select_boot_slot(flash, &config.layout).ok()?;
    let mut place = core::mem::MaybeUninit::uninit();
    let core = UpdateCore::start_in(&mut place, flash, config, board.now()).ok()?;
    if core.state() == State::Updating {
        let passed = board.self_test();
        let _ = core.handle(flash, board.now(), Event::SelfTest { passed });
    }
    Some(main_loop(decision, core, flash, board))
}

/// Why [`serve`] returned.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Served {
    /// The core has nothing more to ask.
    Idle,
    /// The core asked for a reboot (into the new image).
    Reboot,
}

/// Carry out the core's actions until it has none left or asks for a reboot.
fn serve<B: Board>(core: &mut UpdateCore<'_>, flash: &mut McuFlash, board: &mut B) -> Served {
    let mut buf = [0u8; BLOCK];
    while let Some(action) = core.poll_action() {
        let event = match action {
            Action::FetchManifest => {
                let n = board.fetch_manifest(core.package_uri(), &mut buf);
                Event::ManifestFetched(&buf[..n])
            }
            Action::FetchBlock { offset, len } => {
                let len = (len as usize).min(BLOCK);
                let n = board.fetch_block(core.image_uri().unwrap_or(""), offset, &mut buf[..len]);
                Event::Block {
                    offset,
                    data: &buf[..n],
                    token: b"",
                }
            }
            Action::AuthorizeDownload { .. } => Event::DownloadAuthorization(Decision::Authorize),
            Action::AuthorizeInstall { .. } => Event::InstallAuthorization(Decision::Authorize),
            Action::Reboot => return Served::Reboot,
            other => {
                board.report(&other);
                continue;
            }
        };
        let _ = core.handle(flash, board.now(), event);
    }
    Served::Idle
}

fn trusted_key() -> Option<PublicKey> {
    PublicKey::from_raw(KEY_ALGORITHM, TRUSTED_KEY)
}

/// The size reference: stand-ins for the transport and the reset.
#[cfg(not(feature = "qemu"))]
mod standin {
    use super::*;

    /// A stand-in device register (transport, reporting) that keeps the paths from being
    /// optimized out.
    const REGISTER: usize = 0x4001_1004;

    pub struct StandIn;

    fn receive(buf: &mut [u8]) -> usize {
        // SAFETY: reading a device register stand-in.
        let n = unsafe { read_volatile(REGISTER as *const u8) } as usize;
        n.min(buf.len())
    }

    impl Board for StandIn {
        fn now(&self) -> Option<u64> {
            None
        }
        fn fetch_manifest(&mut self, _uri: &str, buf: &mut [u8]) -> usize {
            receive(buf)
        }
        fn fetch_block(&mut self, _uri: &str, _offset: u32, buf: &mut [u8]) -> usize {
            receive(buf)
        }
        fn self_test(&mut self) -> bool {
            true
        }
        fn report(&mut self, action: &Action) {
            let code = match action {
                Action::Notify { state, .. } => *state as u8,
                Action::Progress { percent } => *percent,
                _ => 0,
            };
            // SAFETY: a write to a (stand-in) transmit register.
            unsafe { write_volatile(REGISTER as *mut u8, code) };
        }
    }

    pub fn reset() -> ! {
        // A product calls cortex_m::peripheral::SCB::sys_reset() here.
        loop {
            core::hint::spin_loop();
        }
    }

    pub fn run() -> ! {
        let mut flash = McuFlash;
        let mut board = StandIn;
        let Some(key) = trusted_key() else { reset() };
        let keys = [key];
        let _ = boot(
            &mut flash,
            &mut board,
            config(&keys),
            |_, core, flash, board| {
                let mut buf = [0u8; BLOCK];
                loop {
                    // A push transfer (LwM2M write of /5/0/0) arriving over the transport.
                    let n = receive(&mut buf);
                    if n > 0 {
                        let _ = core.handle(
                            flash,
                            board.now(),
                            Event::WritePackage {
                                offset: 0,
                                data: &buf[..n],
                            },
                        );
                    }
                    if serve(core, flash, board) == Served::Reboot {
                        reset();
                    }
                }
            },
        );
        reset()
    }
}

#[entry]
fn main() -> ! {
    #[cfg(not(feature = "qemu"))]
    standin::run();
    #[cfg(feature = "qemu")]
    qemu::run();
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    #[cfg(feature = "qemu")]
    qemu::fail("panic");
    #[cfg(not(feature = "qemu"))]
    loop {
        core::hint::spin_loop();
    }
}
