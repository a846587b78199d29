//! The QEMU run (`--features qemu`, machine `mps2-an386`): a whole update through the core on
//! the target, with the fixtures `build.rs` signed, reporting over Arm semihosting.
//!
//! Run by `bench/device.sh` and CI:
//! `qemu-system-arm -M mps2-an386 -nographic -semihosting-config enable=on,target=native
//! -icount shift=0 -kernel firmware-thumbv7em`. The exit status is 0 only if every check passed;
//! the script compares the stack peak it prints with its budget.

use super::*;
use updraft_device::boot::{self, BootState};
use updraft_device::{BootDecision, Slot, UpdateResult};

/// The release: signed for this firmware's vendor and class, sequence 2, pointing at IMAGE.
const RELEASE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/release.suit"));
/// The same manifest signed with a key the firmware does not trust.
const FORGED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/forged.suit"));
/// The new image (RELEASE's digest and size) and the factory image.
const IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/image.bin"));
const FACTORY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/factory.bin"));
const RELEASE_URI: &str = "coaps://fw.example/release.suit";
const FORGED_URI: &str = "coaps://fw.example/forged.suit";
const FACTORY_SEQUENCE: u64 = 1;
const RELEASE_SEQUENCE: u64 = 2;

// ---- semihosting ----------------------------------------------------------------------------

const SYS_WRITE0: u32 = 0x04;
const SYS_EXIT: u32 = 0x18;
const ADP_STOPPED_APPLICATION_EXIT: usize = 0x2_0026;
const ADP_STOPPED_RUN_TIME_ERROR: usize = 0x2_0023;

fn semihost(op: u32, arg: usize) {
    // SAFETY: the Arm semihosting call; QEMU with `-semihosting-config enable=on` serves it.
    unsafe {
        core::arch::asm!("bkpt #0xab", inout("r0") op => _, in("r1") arg, options(nostack));
    }
}

/// A line printed on the host's stdout, built without `core::fmt`.
struct Line {
    buf: [u8; 120],
    len: usize,
}

impl Line {
    fn new() -> Self {
        Line {
            buf: [0; 120],
            len: 0,
        }
    }

    fn s(mut self, text: &str) -> Self {
        for &b in text.as_bytes() {
            if self.len + 2 < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        self
    }

    fn n(self, mut value: u64) -> Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        // The digits are ASCII.
        self.s(core::str::from_utf8(&digits[i..]).unwrap_or("?"))
    }

    fn print(mut self) {
        self.buf[self.len] = b'\n';
        self.buf[self.len + 1] = 0;
        self.len += 2;
        semihost(SYS_WRITE0, self.buf.as_ptr() as usize);
    }
}

fn exit(ok: bool) -> ! {
    let reason = if ok {
        ADP_STOPPED_APPLICATION_EXIT
    } else {
        ADP_STOPPED_RUN_TIME_ERROR
    };
    semihost(SYS_EXIT, reason);
    loop {
        core::hint::spin_loop();
    }
}

/// Print why and exit with a failure status.
pub fn fail(what: &str) -> ! {
    Line::new().s("FAIL: ").s(what).print();
    exit(false)
}

fn expect(ok: bool, what: &str) {
    if ok {
        Line::new().s("ok: ").s(what).print();
    } else {
        fail(what)
    }
}

// ---- stack high-water mark ------------------------------------------------------------------

unsafe extern "C" {
    /// cortex-m-rt: the lowest address the stack may grow to (end of the statics).
    static _stack_end: u32;
    /// cortex-m-rt: the initial stack pointer (top of RAM).
    static _stack_start: u32;
}

const PAINT: u32 = 0x5AC3_A55A;

/// Fill the free stack below the current stack pointer with a pattern.
#[inline(never)]
fn paint_stack() {
    let sp: usize;
    // SAFETY: reads the stack pointer.
    unsafe { core::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack)) };
    // Stay clear of this function's own frame, which the compiler may push after reading sp.
    let below = sp - 256;
    let mut at = (&raw const _stack_end) as usize;
    while at + 4 <= below {
        // SAFETY: between the end of the statics and the stack pointer: RAM nothing uses yet.
        unsafe { write_volatile(at as *mut u32, PAINT) };
        at += 4;
    }
}

/// Bytes of stack ever used since reset: from the top of RAM down to the lowest word whose
/// paint was overwritten.
fn stack_peak() -> usize {
    let top = (&raw const _stack_start) as usize;
    let mut at = (&raw const _stack_end) as usize;
    // SAFETY: reads RAM between the end of the statics and the top of the stack.
    while at < top && unsafe { read_volatile(at as *const u32) } == PAINT {
        at += 4;
    }
    top - at
}

// ---- instruction count ----------------------------------------------------------------------

const SYST_CSR: usize = 0xE000_E010;
const SYST_RVR: usize = 0xE000_E014;
const SYST_CVR: usize = 0xE000_E018;

/// SysTick on the processor clock, free running from 2^24 - 1 down.
fn systick_start() {
    // SAFETY: the architectural SysTick registers.
    unsafe {
        write_volatile(SYST_RVR as *mut u32, 0x00FF_FFFF);
        write_volatile(SYST_CVR as *mut u32, 0);
        write_volatile(SYST_CSR as *mut u32, 0b101);
    }
}

fn systick_now() -> u32 {
    // SAFETY: the architectural SysTick current value register.
    unsafe { read_volatile(SYST_CVR as *const u32) }
}

fn ticks_since(start: u32) -> u32 {
    start.wrapping_sub(systick_now()) & 0x00FF_FFFF
}

/// SysTick ticks of `f`. Under `-icount shift=0` QEMU's clock advances 1 ns per instruction, so
/// ticks are proportional to instructions; `calibrate` gives the factor.
fn ticks<R>(f: impl FnOnce() -> R) -> (R, u32) {
    let start = systick_now();
    let r = f();
    (r, ticks_since(start))
}

/// Ticks of a loop of exactly 2,000,000 instructions (`subs` + taken `bne`, 1,000,000 times).
fn calibrate() -> u32 {
    let start = systick_now();
    // SAFETY: a counted loop on a scratch register.
    unsafe {
        core::arch::asm!(
            "1:",
            "subs {n}, {n}, #1",
            "bne 1b",
            n = inout(reg) 1_000_000u32 => _,
            options(nomem, nostack),
        );
    }
    ticks_since(start)
}

// ---- the board ------------------------------------------------------------------------------

struct Fixture {
    /// Flip one image byte in transit (a corrupted download).
    corrupt: bool,
    /// Blocks served since the last reset of this counter.
    blocks: u32,
    completed: Option<UpdateResult>,
}

impl Board for Fixture {
    fn now(&self) -> Option<u64> {
        Some(1_800_000_000)
    }

    fn fetch_manifest(&mut self, uri: &str, buf: &mut [u8]) -> usize {
        let envelope = match uri {
            RELEASE_URI => RELEASE,
            FORGED_URI => FORGED,
            _ => &[],
        };
        let n = envelope.len().min(buf.len());
        buf[..n].copy_from_slice(&envelope[..n]);
        n
    }

    fn fetch_block(&mut self, _uri: &str, offset: u32, buf: &mut [u8]) -> usize {
        let start = (offset as usize).min(IMAGE.len());
        let data = &IMAGE[start..(start + buf.len()).min(IMAGE.len())];
        buf[..data.len()].copy_from_slice(data);
        if self.corrupt && start == 0 && !data.is_empty() {
            buf[data.len() / 2] ^= 0x01;
        }
        self.blocks += 1;
        data.len()
    }

    fn self_test(&mut self) -> bool {
        true
    }

    fn report(&mut self, action: &Action) {
        if let Action::Completed(result) = action {
            self.completed = Some(*result);
        }
    }
}

/// The factory state: FACTORY in slot A, active, counter at FACTORY_SEQUENCE.
fn provision(flash: &mut McuFlash, layout: &Layout) -> bool {
    let slot = layout.slot_a;
    let mut word = [0xFF; 4];
    let ok = flash.erase(0, FLASH_SIZE as u32).is_ok()
        && FACTORY.chunks(4).enumerate().all(|(i, chunk)| {
            word = [0xFF; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            flash.write(slot.offset + 4 * i as u32, &word).is_ok()
        });
    let digest = updraft_device::verify::sha256(FACTORY);
    ok && boot::provision(flash, layout, Slot::A, digest, FACTORY_SEQUENCE).is_ok()
}

fn slot_holds(flash: &mut McuFlash, layout: &Layout, slot: Slot, image: &[u8]) -> bool {
    boot::slot_digest(flash, layout, slot, image.len() as u32).ok()
        == Some(updraft_device::verify::sha256(image))
}

/// The first boot (factory image): a forged envelope and a corrupted transfer are refused, then
/// the real update is downloaded and installed. Its own frame, so that only one core is on the
/// stack at a time, as in a product. Returns the number of blocks the real download took.
#[inline(never)]
fn update_from_factory(flash: &mut McuFlash, board: &mut Fixture, config: Config<'_>) -> u32 {
    let layout = config.layout;
    let booted = boot(flash, board, config, |decision, core, flash, board| {
        update_from_factory_with(decision, core, flash, board, &layout)
    });
    booted.unwrap_or_else(|| fail("boot state readable, core starts"))
}

fn update_from_factory_with(
    decision: BootDecision,
    core: &mut UpdateCore<'_>,
    flash: &mut McuFlash,
    board: &mut Fixture,
    layout: &Layout,
) -> u32 {
    expect(
        decision.slot == Slot::A && !decision.trial,
        "first boot runs slot A",
    );

    // A forged envelope: refused before anything is downloaded.
    let _ = core.handle(flash, board.now(), Event::WritePackageUri(FORGED_URI));
    let served = serve(core, flash, board);
    expect(
        served == Served::Idle
            && core.result() == UpdateResult::IntegrityFailure
            && board.blocks == 0,
        "forged envelope refused, nothing downloaded",
    );

    // The real envelope over a corrupted transfer: downloaded, refused at the digest.
    board.corrupt = true;
    let _ = core.handle(flash, board.now(), Event::WritePackageUri(RELEASE_URI));
    let _ = serve(core, flash, board);
    let _ = core.handle(flash, board.now(), Event::Execute);
    let served = serve(core, flash, board);
    expect(
        served == Served::Idle
            && core.result() == UpdateResult::IntegrityFailure
            && board.blocks > 0,
        "corrupted image refused at its digest",
    );
    let st = BootState::load(flash, layout).unwrap_or_default();
    expect(
        st.installed_sequence == FACTORY_SEQUENCE && slot_holds(flash, layout, Slot::A, FACTORY),
        "nothing installed, slot A intact",
    );

    // The real update.
    board.corrupt = false;
    board.blocks = 0;
    let _ = core.handle(flash, board.now(), Event::WritePackageUri(RELEASE_URI));
    let _ = serve(core, flash, board);
    let blocks = board.blocks;
    expect(
        blocks as usize == IMAGE.len().div_ceil(BLOCK),
        "image streamed block by block",
    );
    let _ = core.handle(flash, board.now(), Event::Execute);
    let served = serve(core, flash, board);
    expect(
        served == Served::Reboot,
        "installed, the core asks for a reboot",
    );
    blocks
}

/// The reboot into the new image: it runs on trial, tests itself and confirms.
#[inline(never)]
fn trial_boot(flash: &mut McuFlash, board: &mut Fixture, config: Config<'_>) {
    let layout = config.layout;
    let booted = boot(flash, board, config, |decision, core, flash, board| {
        let _ = serve(core, flash, board);
        (decision, core.state(), core.result())
    });
    let Some((decision, state, result)) = booted else {
        fail("boot state readable, core starts")
    };
    let st = BootState::load(flash, &layout).unwrap_or_default();
    expect(
        decision.slot == Slot::B && decision.trial,
        "second boot runs slot B on trial",
    );
    expect(
        state == State::Idle
            && result == UpdateResult::Success
            && board.completed == Some(UpdateResult::Success),
        "trial confirmed, update reported successful",
    );
    expect(
        st.installed_sequence == RELEASE_SEQUENCE,
        "anti-rollback counter moved to the release's sequence",
    );
    expect(
        slot_holds(flash, &layout, Slot::B, IMAGE),
        "slot B holds the signed image (SHA-256 matches)",
    );
}

/// A third boot stays on B, no longer on trial.
#[inline(never)]
fn confirmed_boot(flash: &mut McuFlash, board: &mut Fixture, config: Config<'_>) {
    let booted = boot(flash, board, config, |decision, core, _, _| {
        (decision, core.state())
    });
    let Some((decision, state)) = booted else {
        fail("boot state readable, core starts")
    };
    expect(
        decision.slot == Slot::B && !decision.trial && state == State::Idle,
        "third boot runs slot B, confirmed",
    );
}

pub fn run() -> ! {
    paint_stack();
    systick_start();
    let mut flash = McuFlash;
    let mut board = Fixture {
        corrupt: false,
        blocks: 0,
        completed: None,
    };
    let Some(key) = trusted_key() else {
        fail("trusted key decodes")
    };
    let keys = [key];
    let config = config(&keys);
    expect(
        provision(&mut flash, &config.layout),
        "factory image provisioned in slot A",
    );

    // The signature check alone, timed.
    let calibration = calibrate();
    let (verified, verify_ticks) = ticks(|| updraft_manifest::verify(RELEASE, &keys).is_ok());
    expect(verified, "release envelope verifies");
    expect(
        updraft_manifest::verify(FORGED, &keys).is_err(),
        "forged envelope is refused by the verifier",
    );

    let blocks = update_from_factory(&mut flash, &mut board, config);
    trial_boot(&mut flash, &mut board, config);
    confirmed_boot(&mut flash, &mut board, config);

    let peak = stack_peak();
    Line::new().s("algorithm: ").s(KEY_ALGORITHM.name()).print();
    Line::new()
        .s("image bytes: ")
        .n(IMAGE.len() as u64)
        .s(", blocks: ")
        .n(u64::from(blocks))
        .print();
    Line::new()
        .s("UpdateCore bytes: ")
        .n(core::mem::size_of::<UpdateCore<'_>>() as u64)
        .print();
    Line::new().s("stack peak bytes: ").n(peak as u64).print();
    Line::new()
        .s("verify systick ticks: ")
        .n(u64::from(verify_ticks))
        .s(" (2,000,000-instruction loop: ")
        .n(u64::from(calibration))
        .s(" ticks)")
        .print();
    if calibration > 0 {
        Line::new()
            .s("verify instructions: ")
            .n(u64::from(verify_ticks) * 2_000_000 / u64::from(calibration))
            .print();
    }
    exit(true)
}
