//! A C API over the Updraft device core (`updraft-device`): `no_std`, no allocation, no globals.
//!
//! A C firmware or host program links the static library this crate builds and includes
//! `include/updraft_device.h` (generated from this file by cbindgen; a test checks it is up to
//! date). The shape is the Rust core's: the program feeds events (`updraft_write_package_uri`,
//! `updraft_block`, `updraft_download_authorization`, ...) and drains actions with
//! `updraft_poll_action` after every event; the core touches flash itself, through the
//! program's `read` / `write` / `erase` callbacks, because power-loss safety lies in the order
//! of its writes.
//!
//! # Map
//!
//! | item | what |
//! | --- | --- |
//! | [`UpdraftDevice`] | caller-provided memory holding the core and its trusted keys (`UPDRAFT_DEVICE_SIZE` bytes) |
//! | [`UpdraftFlash`] | the C flash: callbacks, capacity, write and erase sizes |
//! | [`UpdraftConfig`] | layout, trusted keys, vendor and class ids, resume mode, block size |
//! | [`updraft_start`] | load the boot state and journal, continue what was in progress |
//! | `updraft_*` event functions | one per [`updraft_device::Event`] |
//! | [`updraft_poll_action`] / [`UpdraftAction`] | the next action, flattened into one struct |
//! | [`updraft_select_boot_slot`] | the bootloader half: the slot to run |
//!
//! # Rules a C caller follows
//!
//! * `UpdraftDevice` is started once with [`updraft_start`] and must not be moved or copied
//!   afterwards (the core refers to the keys stored inside it). Starting it again (after a
//!   reboot) is allowed.
//! * All functions return `UPDRAFT_OK` (0) or a negative `UPDRAFT_ERR_*`; the four first error
//!   codes are the /5 operation refusals of the core (CoAP 4.00, 4.05, 5.03, 5.00).
//! * Times are Unix seconds; `UPDRAFT_TIME_UNKNOWN` when the device has no clock.
//! * The flash geometry (write and erase size) is fixed when the library is built
//!   (`UPDRAFT_FFI_WRITE_SIZE`, `UPDRAFT_FFI_ERASE_SIZE`; 4 and 4096 by default), because the
//!   core lays records and sector erases out with them as constants; `updraft_start` refuses a
//!   flash whose geometry differs (`UPDRAFT_ERR_GEOMETRY`).
//! * `updraft_start` builds the core in place in `dev` (`UpdateCore::start_in`), so no copy of
//!   the core's state (about 5.8 KB) passes over the C caller's stack; the stack peak of the C
//!   path has not been measured.
//! * The library is not reentrant for one `UpdraftDevice`: one thread (or the main loop) drives
//!   it; several devices in one program are independent.
#![no_std]
#![warn(missing_docs)]
#![allow(clippy::missing_safety_doc)] // The header and the crate docs state the C contract.

// On hosts the static library carries std (its panic handler, for the C programs that link it);
// on a microcontroller it is `no_std` with the handler below.
#[cfg(not(target_os = "none"))]
extern crate std;

use core::ffi::c_void;
use core::mem::{MaybeUninit, align_of, size_of};
use core::ptr::{addr_of, addr_of_mut};

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use updraft_device::boot::{self as boot_state, BootState};
use updraft_device::object5::Protocols;
use updraft_device::update::StartError;
use updraft_device::{
    Action, Config, Decision, DownloadFailure, Event, ImageState, Layout, OpError, Region,
    ResumeMode, Slot, UpdateCore, select_boot_slot,
};
use updraft_manifest::{Algorithm, PublicKey, Uuid};

/// The flash geometry compiled in (see the build script).
mod geometry {
    include!(concat!(env!("OUT_DIR"), "/geometry.rs"));
}

// ---- return codes ------------------------------------------------------------------------------

/// Success.
pub const UPDRAFT_OK: i32 = 0;
/// The core refused the operation as a bad request (CoAP 4.00): e.g. a URI written while
/// downloading, an invalid value, a URI that is not UTF-8.
pub const UPDRAFT_ERR_BAD_REQUEST: i32 = -1;
/// The operation is not allowed in this state (CoAP 4.05): e.g. Execute before Downloaded.
pub const UPDRAFT_ERR_METHOD_NOT_ALLOWED: i32 = -2;
/// A pushed block cannot be taken yet (CoAP 5.03): the server retries it later.
pub const UPDRAFT_ERR_SERVICE_UNAVAILABLE: i32 = -3;
/// The flash failed while handling the operation (CoAP 5.00; the result becomes 8).
pub const UPDRAFT_ERR_INTERNAL: i32 = -4;
/// A required pointer is NULL.
pub const UPDRAFT_ERR_NULL: i32 = -10;
/// The `UpdraftDevice` was not started with `updraft_start`.
pub const UPDRAFT_ERR_NOT_STARTED: i32 = -11;
/// An argument is out of range (an unknown constant, no keys or more than
/// `UPDRAFT_MAX_KEYS`).
pub const UPDRAFT_ERR_INVALID_ARGUMENT: i32 = -12;
/// A trusted key is not a valid key of its algorithm, or its algorithm is not compiled in.
pub const UPDRAFT_ERR_KEY: i32 = -13;
/// The flash's write or erase size is not the one the library was built for.
pub const UPDRAFT_ERR_GEOMETRY: i32 = -14;
/// The layout does not fit the flash (alignment, overlap, capacity, record sizes).
pub const UPDRAFT_ERR_LAYOUT: i32 = -15;
/// The block size is zero or not a multiple of the flash write size.
pub const UPDRAFT_ERR_BLOCK_SIZE: i32 = -16;
/// A flash callback failed while starting or selecting the boot slot.
pub const UPDRAFT_ERR_FLASH: i32 = -17;
/// The boot state area is neither erased nor valid: the device must not guess a slot or an
/// anti-rollback counter (re-provision it).
pub const UPDRAFT_ERR_BOOT_STATE_CORRUPT: i32 = -18;

// ---- constants of the inputs -------------------------------------------------------------------

/// `now` when the device does not know the time.
pub const UPDRAFT_TIME_UNKNOWN: u64 = u64::MAX;
/// Most trusted keys one device holds.
pub const UPDRAFT_MAX_KEYS: usize = 2;

/// Key algorithm: Ed25519 (32-byte raw public key).
pub const UPDRAFT_ALG_ED25519: u32 = 1;
/// Key algorithm: ECDSA P-256 / ES256 (SEC1 point, 33 or 65 bytes).
pub const UPDRAFT_ALG_ES256: u32 = 2;

/// Authorization answer: go ahead.
pub const UPDRAFT_DECISION_AUTHORIZE: u32 = 0;
/// Authorization answer: discard this manifest, never ask about it again.
pub const UPDRAFT_DECISION_REJECT: u32 = 1;
/// Authorization answer: not now (bounded by the Maximum Defer Period /5/0/13).
pub const UPDRAFT_DECISION_DEFER: u32 = 2;

/// Download failure: the connection was lost (result 4; the journal is kept for a resume).
pub const UPDRAFT_FAILURE_CONNECTION_LOST: u32 = 0;
/// Download failure: the resource does not exist (result 7).
pub const UPDRAFT_FAILURE_NOT_FOUND: u32 = 1;
/// Download failure: the transport is not supported (result 9).
pub const UPDRAFT_FAILURE_UNSUPPORTED_PROTOCOL: u32 = 2;

/// After a reboot, continue an interrupted download from its durable offset.
pub const UPDRAFT_RESUME: u32 = 0;
/// After a reboot, download the same manifest again from byte 0.
pub const UPDRAFT_RESUME_RESTART: u32 = 1;
/// After a reboot, give up an interrupted download (result 4).
pub const UPDRAFT_RESUME_UNSUPPORTED: u32 = 2;

/// Package URI protocol bit: CoAP.
pub const UPDRAFT_PROTOCOL_COAP: u8 = 1 << 0;
/// Package URI protocol bit: CoAPS.
pub const UPDRAFT_PROTOCOL_COAPS: u8 = 1 << 1;
/// Package URI protocol bit: HTTP.
pub const UPDRAFT_PROTOCOL_HTTP: u8 = 1 << 2;
/// Package URI protocol bit: HTTPS.
pub const UPDRAFT_PROTOCOL_HTTPS: u8 = 1 << 3;
/// Package URI protocol bit: CoAP over TCP.
pub const UPDRAFT_PROTOCOL_COAP_TCP: u8 = 1 << 4;
/// Package URI protocol bit: CoAP over TLS.
pub const UPDRAFT_PROTOCOL_COAP_TLS: u8 = 1 << 5;

// The header needs literal values; these keep them equal to the core's.
const _: () = assert!(
    UPDRAFT_PROTOCOL_COAP == Protocols::COAP
        && UPDRAFT_PROTOCOL_COAPS == Protocols::COAPS
        && UPDRAFT_PROTOCOL_HTTP == Protocols::HTTP
        && UPDRAFT_PROTOCOL_HTTPS == Protocols::HTTPS
        && UPDRAFT_PROTOCOL_COAP_TCP == Protocols::COAP_TCP
        && UPDRAFT_PROTOCOL_COAP_TLS == Protocols::COAP_TLS
);

/// Slot A.
pub const UPDRAFT_SLOT_A: u8 = 0;
/// Slot B.
pub const UPDRAFT_SLOT_B: u8 = 1;

/// Image state: the new image runs once in test mode.
pub const UPDRAFT_IMAGE_TESTING: u8 = 1;
/// Image state: the self-test confirmed the new image; it is the active one now.
pub const UPDRAFT_IMAGE_ACCEPTED: u8 = 2;
/// Image state: the self-test failed or never confirmed; the old image runs again.
pub const UPDRAFT_IMAGE_REJECTED: u8 = 3;
/// Image state: the install never booted (the candidate failed its boot-time check).
pub const UPDRAFT_IMAGE_ABORTED: u8 = 4;

// ---- the device memory -------------------------------------------------------------------------

/// Size in bytes of [`UpdraftDevice`]: the core's state (about 5.8 KB, most of it the envelope
/// buffer), the trusted keys and the flash callbacks. A compile-time check keeps it true.
pub const UPDRAFT_DEVICE_SIZE: usize = UPDRAFT_DEVICE_WORDS * 8;
/// [`UPDRAFT_DEVICE_SIZE`] in 8-byte words (the memory is 8-byte aligned).
pub const UPDRAFT_DEVICE_WORDS: usize = 832;

/// The memory of one device, provided by the caller (a `static`, or on the stack of `main`);
/// its contents are private. Start it with [`updraft_start`]; never move or copy it after.
#[repr(C)]
pub struct UpdraftDevice {
    /// Private to the library.
    pub _private: [u64; UPDRAFT_DEVICE_WORDS],
}

const MAGIC: u32 = 0x5550_4446; // "UPDF"

/// What lives in an `UpdraftDevice`.
struct Device {
    magic: u32,
    flash: CFlash,
    keys: [MaybeUninit<PublicKey>; UPDRAFT_MAX_KEYS],
    core: MaybeUninit<UpdateCore<'static>>,
}

const _: () = assert!(size_of::<Device>() <= size_of::<UpdraftDevice>());
const _: () = assert!(align_of::<Device>() <= align_of::<UpdraftDevice>());

/// The exact number of bytes of `UpdraftDevice` in use in this build (at most
/// `UPDRAFT_DEVICE_SIZE`), for a firmware that reports its RAM budget.
#[unsafe(no_mangle)]
pub extern "C" fn updraft_device_used_size() -> usize {
    size_of::<Device>()
}

/// The flash write size this library was built for (`UPDRAFT_FFI_WRITE_SIZE`).
#[unsafe(no_mangle)]
pub extern "C" fn updraft_flash_write_size() -> u32 {
    geometry::WRITE_SIZE as u32
}

/// The flash erase (sector) size this library was built for (`UPDRAFT_FFI_ERASE_SIZE`).
#[unsafe(no_mangle)]
pub extern "C" fn updraft_flash_erase_size() -> u32 {
    geometry::ERASE_SIZE as u32
}

// ---- flash -------------------------------------------------------------------------------------

/// Read `len` bytes at `offset` into `buf`; return 0 on success.
pub type UpdraftFlashRead =
    Option<unsafe extern "C" fn(ctx: *mut c_void, offset: u32, buf: *mut u8, len: usize) -> i32>;
/// Program `len` bytes at `offset` (aligned to the write size; the area was erased); return 0
/// on success.
pub type UpdraftFlashWrite =
    Option<unsafe extern "C" fn(ctx: *mut c_void, offset: u32, data: *const u8, len: usize) -> i32>;
/// Erase `[from, to)` (aligned to the erase size) to 0xFF; return 0 on success.
pub type UpdraftFlashErase =
    Option<unsafe extern "C" fn(ctx: *mut c_void, from: u32, to: u32) -> i32>;

/// The program's flash, as NOR flash: offsets are relative to the update area.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UpdraftFlash {
    /// Passed back to every callback.
    pub ctx: *mut c_void,
    /// Read callback.
    pub read: UpdraftFlashRead,
    /// Write (program) callback.
    pub write: UpdraftFlashWrite,
    /// Erase callback.
    pub erase: UpdraftFlashErase,
    /// Size of the update area in bytes.
    pub capacity: u32,
    /// Write granularity in bytes; must equal `updraft_flash_write_size()`.
    pub write_size: u32,
    /// Erase (sector) size in bytes; must equal `updraft_flash_erase_size()`.
    pub erase_size: u32,
}

/// The C flash behind the core's `NorFlash` trait. Calls are checked for bounds and alignment
/// before they reach C, so a callback only ever sees requests inside its area.
#[derive(Clone, Copy)]
struct CFlash {
    ctx: *mut c_void,
    read: unsafe extern "C" fn(*mut c_void, u32, *mut u8, usize) -> i32,
    write: unsafe extern "C" fn(*mut c_void, u32, *const u8, usize) -> i32,
    erase: unsafe extern "C" fn(*mut c_void, u32, u32) -> i32,
    capacity: u32,
}

/// A flash operation that failed, or was refused before reaching C.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CFlashError(NorFlashErrorKind);

impl NorFlashError for CFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        self.0
    }
}

impl CFlash {
    fn from_c(f: &UpdraftFlash) -> Result<CFlash, i32> {
        let (Some(read), Some(write), Some(erase)) = (f.read, f.write, f.erase) else {
            return Err(UPDRAFT_ERR_NULL);
        };
        if f.write_size as usize != geometry::WRITE_SIZE
            || f.erase_size as usize != geometry::ERASE_SIZE
        {
            return Err(UPDRAFT_ERR_GEOMETRY);
        }
        Ok(CFlash {
            ctx: f.ctx,
            read,
            write,
            erase,
            capacity: f.capacity,
        })
    }

    fn check(&self, offset: u32, len: usize, align: usize) -> Result<(), CFlashError> {
        let end = (offset as usize)
            .checked_add(len)
            .ok_or(CFlashError(NorFlashErrorKind::OutOfBounds))?;
        if end > self.capacity as usize {
            return Err(CFlashError(NorFlashErrorKind::OutOfBounds));
        }
        if !(offset as usize).is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(CFlashError(NorFlashErrorKind::NotAligned));
        }
        Ok(())
    }
}

fn status(rc: i32) -> Result<(), CFlashError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(CFlashError(NorFlashErrorKind::Other))
    }
}

impl ErrorType for CFlash {
    type Error = CFlashError;
}

impl ReadNorFlash for CFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), CFlashError> {
        self.check(offset, bytes.len(), 1)?;
        if bytes.is_empty() {
            return Ok(());
        }
        // SAFETY: the callback was given by the program for this flash; `bytes` is a valid
        // buffer of `len` bytes for the duration of the call.
        status(unsafe { (self.read)(self.ctx, offset, bytes.as_mut_ptr(), bytes.len()) })
    }

    fn capacity(&self) -> usize {
        self.capacity as usize
    }
}

impl NorFlash for CFlash {
    const WRITE_SIZE: usize = geometry::WRITE_SIZE;
    const ERASE_SIZE: usize = geometry::ERASE_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), CFlashError> {
        let len = to
            .checked_sub(from)
            .ok_or(CFlashError(NorFlashErrorKind::OutOfBounds))?;
        self.check(from, len as usize, Self::ERASE_SIZE)?;
        // SAFETY: as for `read`.
        status(unsafe { (self.erase)(self.ctx, from, to) })
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), CFlashError> {
        self.check(offset, bytes.len(), Self::WRITE_SIZE)?;
        if bytes.is_empty() {
            return Ok(());
        }
        // SAFETY: as for `read`.
        status(unsafe { (self.write)(self.ctx, offset, bytes.as_ptr(), bytes.len()) })
    }
}

// ---- configuration -----------------------------------------------------------------------------

/// A region of the update area.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdraftRegion {
    /// Start, from the beginning of the update area.
    pub offset: u32,
    /// Length in bytes.
    pub size: u32,
}

/// Where the slots and the records live (each region a whole number of sectors).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdraftLayout {
    /// Slot A.
    pub slot_a: UpdraftRegion,
    /// Slot B.
    pub slot_b: UpdraftRegion,
    /// Boot state record (two copies).
    pub boot_state: UpdraftRegion,
    /// Resume journal record (two copies).
    pub journal: UpdraftRegion,
    /// Persisted envelope (two copies).
    pub envelope: UpdraftRegion,
}

fn region_in(r: UpdraftRegion) -> Region {
    Region {
        offset: r.offset,
        size: r.size,
    }
}

fn region_out(r: Region) -> UpdraftRegion {
    UpdraftRegion {
        offset: r.offset,
        size: r.size,
    }
}

impl UpdraftLayout {
    fn to_core(self) -> Layout {
        Layout {
            slot_a: region_in(self.slot_a),
            slot_b: region_in(self.slot_b),
            boot_state: region_in(self.boot_state),
            journal: region_in(self.journal),
            envelope: region_in(self.envelope),
            // Conservative for C flash drivers: never program a word twice between erases
            // (ECC flash); a resume restarts at the sector holding the durable offset.
            multiwrite: false,
        }
    }
}

/// A layout packing two slots of `slot_size` bytes and the records from offset 0, in sectors
/// of `sector` bytes (records rounded up to whole sectors); its end is the flash needed.
#[unsafe(no_mangle)]
pub extern "C" fn updraft_layout_packed(slot_size: u32, sector: u32) -> UpdraftLayout {
    let l = Layout::packed(slot_size, sector.max(1));
    UpdraftLayout {
        slot_a: region_out(l.slot_a),
        slot_b: region_out(l.slot_b),
        boot_state: region_out(l.boot_state),
        journal: region_out(l.journal),
        envelope: region_out(l.envelope),
    }
}

/// One trusted public key, by its raw bytes (copied at start).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UpdraftKey {
    /// `UPDRAFT_ALG_ED25519` or `UPDRAFT_ALG_ES256`.
    pub algorithm: u32,
    /// The key: 32 bytes (Ed25519) or a SEC1 point of 33 or 65 bytes (P-256).
    pub bytes: *const u8,
    /// Length of `bytes`.
    pub len: usize,
}

/// The fixed configuration of a device.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UpdraftConfig {
    /// Where slots and records live.
    pub layout: UpdraftLayout,
    /// Trusted keys (1 to `UPDRAFT_MAX_KEYS`); a manifest must be signed by one of them.
    pub keys: *const UpdraftKey,
    /// Number of `keys`.
    pub key_count: usize,
    /// This device's vendor id (UUID bytes).
    pub vendor_id: [u8; 16],
    /// This device's class id (UUID bytes).
    pub class_id: [u8; 16],
    /// `UPDRAFT_RESUME`, `UPDRAFT_RESUME_RESTART` or `UPDRAFT_RESUME_UNSUPPORTED`.
    pub resume: u32,
    /// Bytes asked per pulled block; a multiple of the flash write size.
    pub block_size: u32,
    /// Package URI protocols accepted (`UPDRAFT_PROTOCOL_*` bits).
    pub protocols: u8,
    /// Nonzero: ask for the install as soon as the image is verified, without waiting for
    /// Execute /5/0/2 (runtimes without LwM2M).
    pub auto_execute: u8,
}

// ---- helpers -----------------------------------------------------------------------------------

fn time(now: u64) -> Option<u64> {
    (now != UPDRAFT_TIME_UNKNOWN).then_some(now)
}

/// A byte slice from C: empty when `len` is 0 (any pointer), `None` for NULL with a length.
///
/// # Safety
/// If not NULL, `ptr` points to `len` readable bytes that stay valid for `'a`.
unsafe fn c_bytes<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        Some(&[])
    } else if ptr.is_null() {
        None
    } else {
        // SAFETY: the caller's contract.
        Some(unsafe { core::slice::from_raw_parts(ptr, len) })
    }
}

fn op_code(r: Result<(), OpError>) -> i32 {
    match r {
        Ok(()) => UPDRAFT_OK,
        Err(OpError::BadRequest) => UPDRAFT_ERR_BAD_REQUEST,
        Err(OpError::MethodNotAllowed) => UPDRAFT_ERR_METHOD_NOT_ALLOWED,
        Err(OpError::ServiceUnavailable) => UPDRAFT_ERR_SERVICE_UNAVAILABLE,
        Err(OpError::Internal) => UPDRAFT_ERR_INTERNAL,
    }
}

/// The started device behind a handle.
///
/// # Safety
/// `dev` is NULL or points to an `UpdraftDevice` that no other call uses at the same time.
unsafe fn started(dev: *mut UpdraftDevice) -> Result<*mut Device, i32> {
    if dev.is_null() {
        return Err(UPDRAFT_ERR_NULL);
    }
    let d = dev.cast::<Device>();
    // SAFETY: `dev` is valid for reads of `UPDRAFT_DEVICE_SIZE` bytes and suitably aligned (the
    // asserts above); `magic` is a plain integer at the start.
    if unsafe { addr_of!((*d).magic).read() } != MAGIC {
        return Err(UPDRAFT_ERR_NOT_STARTED);
    }
    Ok(d)
}

/// Run `f` on the core and the flash of a started device. Only the `core` and `flash` fields
/// are borrowed mutably: the core keeps a shared borrow of `keys`.
///
/// # Safety
/// As for [`started`].
unsafe fn with_core<R>(
    dev: *mut UpdraftDevice,
    f: impl FnOnce(&mut UpdateCore<'static>, &mut CFlash) -> R,
) -> Result<R, i32> {
    // SAFETY: the caller's contract.
    let d = unsafe { started(dev)? };
    // SAFETY: a started device has an initialized core (`updraft_start` writes it before the
    // magic); the two fields are disjoint.
    let (core, flash) = unsafe {
        (
            (*addr_of_mut!((*d).core)).assume_init_mut(),
            &mut *addr_of_mut!((*d).flash),
        )
    };
    Ok(f(core, flash))
}

/// Feed one event and turn the outcome into a return code.
///
/// # Safety
/// As for [`started`].
unsafe fn feed(dev: *mut UpdraftDevice, now: u64, event: Event<'_>) -> i32 {
    // SAFETY: the caller's contract.
    match unsafe { with_core(dev, |core, flash| core.handle(flash, time(now), event)) } {
        Ok(r) => op_code(r),
        Err(code) => code,
    }
}

// ---- start -------------------------------------------------------------------------------------

/// Start the core after boot, in the caller's `dev` memory: check the flash and the layout,
/// load the boot state and the journal, report the outcome of a trial boot, and continue what
/// was in progress (resume a download, ask a deferred authorization again). Drain the actions
/// with `updraft_poll_action` afterwards. Calling it again on the same memory (after a reboot)
/// starts afresh.
///
/// # Safety
/// `dev`, `flash` and `config` are valid pointers; `config->keys` points to `key_count` keys
/// whose `bytes` are readable (they are copied); the callbacks in `flash` stay callable, and
/// `flash->ctx` valid, for as long as `dev` is used.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_start(
    dev: *mut UpdraftDevice,
    flash: *const UpdraftFlash,
    config: *const UpdraftConfig,
    now: u64,
) -> i32 {
    if dev.is_null() || flash.is_null() || config.is_null() {
        return UPDRAFT_ERR_NULL;
    }
    // SAFETY: non-NULL, and valid by the contract.
    let (flash, config) = unsafe { (&*flash, &*config) };
    let mut cflash = match CFlash::from_c(flash) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let resume = match config.resume {
        UPDRAFT_RESUME => ResumeMode::Resume,
        UPDRAFT_RESUME_RESTART => ResumeMode::Restart,
        UPDRAFT_RESUME_UNSUPPORTED => ResumeMode::Unsupported,
        _ => return UPDRAFT_ERR_INVALID_ARGUMENT,
    };
    if config.key_count == 0 || config.key_count > UPDRAFT_MAX_KEYS {
        return UPDRAFT_ERR_INVALID_ARGUMENT;
    }
    if config.keys.is_null() {
        return UPDRAFT_ERR_NULL;
    }
    // SAFETY: `keys` points to `key_count` keys (contract).
    let c_keys = unsafe { core::slice::from_raw_parts(config.keys, config.key_count) };

    let d = dev.cast::<Device>();
    // SAFETY: `dev` is valid for writes of `UPDRAFT_DEVICE_SIZE` bytes and aligned (asserts
    // above). Clearing the magic first makes a failed start leave an unstarted device; the
    // previous core and keys (if any) are plain data without destructors.
    unsafe { addr_of_mut!((*d).magic).write(0) };
    // SAFETY: as above; only the `keys` field is borrowed here, before any core refers to it.
    let keys = unsafe { &mut *addr_of_mut!((*d).keys) };
    for (slot, k) in keys.iter_mut().zip(c_keys) {
        let algorithm = match k.algorithm {
            UPDRAFT_ALG_ED25519 => Algorithm::Ed25519,
            UPDRAFT_ALG_ES256 => Algorithm::Es256,
            _ => return UPDRAFT_ERR_INVALID_ARGUMENT,
        };
        // SAFETY: `bytes` points to `len` readable bytes (contract).
        let Some(bytes) = (unsafe { c_bytes(k.bytes, k.len) }) else {
            return UPDRAFT_ERR_NULL;
        };
        let Some(key) = PublicKey::from_raw(algorithm, bytes) else {
            return UPDRAFT_ERR_KEY;
        };
        slot.write(key);
    }
    // SAFETY: the first `key_count` keys were just initialized; they live in `dev`, which the
    // caller never moves after start, and are never written again while this core exists (a new
    // start clears the magic, so no call reaches the old core while the keys are rewritten).
    let trusted: &'static [PublicKey] = unsafe {
        core::slice::from_raw_parts(addr_of!((*d).keys).cast::<PublicKey>(), config.key_count)
    };
    let core_config = Config {
        layout: config.layout.to_core(),
        trusted_keys: trusted,
        vendor_id: Uuid(config.vendor_id),
        class_id: Uuid(config.class_id),
        resume,
        block_size: config.block_size,
        protocols: Protocols(config.protocols),
        auto_execute: config.auto_execute != 0,
    };
    // Built in place in `dev` (no copy of the core on this stack); only the `core` field is
    // borrowed, and only until the start returns.
    // SAFETY: `dev` is valid and aligned (contract and asserts); the field is disjoint from
    // the keys borrowed above.
    let place = unsafe { &mut *addr_of_mut!((*d).core) };
    match UpdateCore::start_in(place, &mut cflash, core_config, time(now)) {
        Ok(_) => {}
        Err(StartError::Layout(_)) => return UPDRAFT_ERR_LAYOUT,
        Err(StartError::BlockSize) => return UPDRAFT_ERR_BLOCK_SIZE,
        Err(StartError::Flash(_)) => return UPDRAFT_ERR_FLASH,
        Err(StartError::BootStateCorrupt) => return UPDRAFT_ERR_BOOT_STATE_CORRUPT,
    };
    // SAFETY: disjoint fields of `dev`, written before the magic marks it started.
    unsafe {
        addr_of_mut!((*d).flash).write(cflash);
        addr_of_mut!((*d).magic).write(MAGIC);
    }
    UPDRAFT_OK
}

// ---- events ------------------------------------------------------------------------------------

/// Write /5/0/1 Package URI (`len` bytes of UTF-8, no terminator needed; empty resets).
///
/// # Safety
/// `dev` was started; `uri` points to `len` readable bytes (or `len` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_write_package_uri(
    dev: *mut UpdraftDevice,
    now: u64,
    uri: *const u8,
    len: usize,
) -> i32 {
    // SAFETY: the caller's contract.
    let Some(bytes) = (unsafe { c_bytes(uri, len) }) else {
        return UPDRAFT_ERR_NULL;
    };
    let Ok(uri) = core::str::from_utf8(bytes) else {
        return UPDRAFT_ERR_BAD_REQUEST;
    };
    // SAFETY: the caller's contract.
    unsafe { feed(dev, now, Event::WritePackageUri(uri)) }
}

/// Write /5/0/0 Package: one Block1 payload at `offset` of the push package
/// (`u32 big-endian envelope length | envelope | image`). A single zero byte at offset 0 resets.
///
/// # Safety
/// `dev` was started; `data` points to `len` readable bytes (or `len` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_write_package(
    dev: *mut UpdraftDevice,
    now: u64,
    offset: u32,
    data: *const u8,
    len: usize,
) -> i32 {
    // SAFETY: the caller's contract.
    let Some(data) = (unsafe { c_bytes(data, len) }) else {
        return UPDRAFT_ERR_NULL;
    };
    // SAFETY: the caller's contract.
    unsafe { feed(dev, now, Event::WritePackage { offset, data }) }
}

/// Execute /5/0/2 Update.
///
/// # Safety
/// `dev` was started.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_execute(dev: *mut UpdraftDevice, now: u64) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { feed(dev, now, Event::Execute) }
}

/// Execute /5/0/10 Cancel.
///
/// # Safety
/// `dev` was started.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_cancel(dev: *mut UpdraftDevice, now: u64) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { feed(dev, now, Event::Cancel) }
}

/// Write /5/0/11 Severity (0 critical, 1 mandatory, 2 optional).
///
/// # Safety
/// `dev` was started.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_write_severity(
    dev: *mut UpdraftDevice,
    now: u64,
    severity: u8,
) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { feed(dev, now, Event::WriteSeverity(severity)) }
}

/// Write /5/0/13 Maximum Defer Period (seconds; 0: the device may not defer).
///
/// # Safety
/// `dev` was started.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_write_max_defer_period(
    dev: *mut UpdraftDevice,
    now: u64,
    seconds: u32,
) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { feed(dev, now, Event::WriteMaxDeferPeriod(seconds)) }
}

/// The envelope fetched from the Package URI (the answer to `UPDRAFT_ACTION_FETCH_MANIFEST`).
///
/// # Safety
/// `dev` was started; `envelope` points to `len` readable bytes (or `len` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_manifest_fetched(
    dev: *mut UpdraftDevice,
    now: u64,
    envelope: *const u8,
    len: usize,
) -> i32 {
    // SAFETY: the caller's contract.
    let Some(bytes) = (unsafe { c_bytes(envelope, len) }) else {
        return UPDRAFT_ERR_NULL;
    };
    // SAFETY: the caller's contract.
    unsafe { feed(dev, now, Event::ManifestFetched(bytes)) }
}

/// Image bytes at `offset` (the answer to `UPDRAFT_ACTION_FETCH_BLOCK`), with the transport's
/// resume token (ETag; `token_len` 0 if none).
///
/// # Safety
/// `dev` was started; `data` and `token` point to `len` and `token_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_block(
    dev: *mut UpdraftDevice,
    now: u64,
    offset: u32,
    data: *const u8,
    len: usize,
    token: *const u8,
    token_len: usize,
) -> i32 {
    // SAFETY: the caller's contract.
    let (Some(data), Some(token)) = (unsafe { c_bytes(data, len) }, unsafe {
        c_bytes(token, token_len)
    }) else {
        return UPDRAFT_ERR_NULL;
    };
    // SAFETY: the caller's contract.
    unsafe {
        feed(
            dev,
            now,
            Event::Block {
                offset,
                data,
                token,
            },
        )
    }
}

/// A pull transfer failed (`UPDRAFT_FAILURE_*`).
///
/// # Safety
/// `dev` was started.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_download_failed(
    dev: *mut UpdraftDevice,
    now: u64,
    failure: u32,
) -> i32 {
    let why = match failure {
        UPDRAFT_FAILURE_CONNECTION_LOST => DownloadFailure::ConnectionLost,
        UPDRAFT_FAILURE_NOT_FOUND => DownloadFailure::NotFound,
        UPDRAFT_FAILURE_UNSUPPORTED_PROTOCOL => DownloadFailure::UnsupportedProtocol,
        _ => return UPDRAFT_ERR_INVALID_ARGUMENT,
    };
    // SAFETY: the caller's contract.
    unsafe { feed(dev, now, Event::DownloadFailed(why)) }
}

fn decision(d: u32) -> Option<Decision> {
    match d {
        UPDRAFT_DECISION_AUTHORIZE => Some(Decision::Authorize),
        UPDRAFT_DECISION_REJECT => Some(Decision::Reject),
        UPDRAFT_DECISION_DEFER => Some(Decision::Defer),
        _ => None,
    }
}

/// The application's answer (`UPDRAFT_DECISION_*`) to `UPDRAFT_ACTION_AUTHORIZE_DOWNLOAD`.
///
/// # Safety
/// `dev` was started.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_download_authorization(
    dev: *mut UpdraftDevice,
    now: u64,
    answer: u32,
) -> i32 {
    let Some(d) = decision(answer) else {
        return UPDRAFT_ERR_INVALID_ARGUMENT;
    };
    // SAFETY: the caller's contract.
    unsafe { feed(dev, now, Event::DownloadAuthorization(d)) }
}

/// The application's answer (`UPDRAFT_DECISION_*`) to `UPDRAFT_ACTION_AUTHORIZE_INSTALL`.
///
/// # Safety
/// `dev` was started.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_install_authorization(
    dev: *mut UpdraftDevice,
    now: u64,
    answer: u32,
) -> i32 {
    let Some(d) = decision(answer) else {
        return UPDRAFT_ERR_INVALID_ARGUMENT;
    };
    // SAFETY: the caller's contract.
    unsafe { feed(dev, now, Event::InstallAuthorization(d)) }
}

/// The self-test result of a trial image (nonzero: it works; it becomes the active image).
///
/// # Safety
/// `dev` was started.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_self_test(dev: *mut UpdraftDevice, now: u64, passed: u8) -> i32 {
    // SAFETY: the caller's contract.
    unsafe {
        feed(
            dev,
            now,
            Event::SelfTest {
                passed: passed != 0,
            },
        )
    }
}

/// Continue a deferred or interrupted update now.
///
/// # Safety
/// `dev` was started.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_resume(dev: *mut UpdraftDevice, now: u64) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { feed(dev, now, Event::Resume) }
}

/// The LwM2M registration was updated (continues deferred updates too).
///
/// # Safety
/// `dev` was started.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_registration_updated(dev: *mut UpdraftDevice, now: u64) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { feed(dev, now, Event::RegistrationUpdated) }
}

// ---- actions -----------------------------------------------------------------------------------

/// What an [`UpdraftAction`] asks for.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdraftActionKind {
    /// Notify observers of /5/0/3 (`state`), /5/0/5 (`result`) and /5/0/12 (`changed_at`).
    Notify = 1,
    /// Fetch the envelope at `updraft_package_uri`; answer with `updraft_manifest_fetched`.
    FetchManifest = 2,
    /// Fetch `len` image bytes at `offset` from `updraft_image_uri`; answer with
    /// `updraft_block`.
    FetchBlock = 3,
    /// Ask the application whether to download (`sequence`, `image_size`,
    /// `manifest_digest`); answer with `updraft_download_authorization`.
    AuthorizeDownload = 4,
    /// Ask the application whether to install (`sequence`, `manifest_digest`); answer with
    /// `updraft_install_authorization`.
    AuthorizeInstall = 5,
    /// Download progress (`percent`, a multiple of 5).
    Progress = 6,
    /// An image state to report (`image_state`, `UPDRAFT_IMAGE_*`).
    ImageState = 7,
    /// Reboot the device (after an install, or to leave a rejected trial).
    Reboot = 8,
    /// The update flow ended with `result`; the application can return to normal work.
    Completed = 9,
}

/// One action of the core, flattened: `kind` says which fields are set (the others are 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdraftAction {
    /// What to do.
    pub kind: UpdraftActionKind,
    /// NOTIFY: /5/0/3 State (0 idle, 1 downloading, 2 downloaded, 3 updating).
    pub state: u8,
    /// NOTIFY, COMPLETED: /5/0/5 Update Result (0 to 11).
    pub result: u8,
    /// PROGRESS: percent done.
    pub percent: u8,
    /// IMAGE_STATE: `UPDRAFT_IMAGE_*`.
    pub image_state: u8,
    /// NOTIFY: nonzero if `changed_at` is known.
    pub has_changed_at: u8,
    /// NOTIFY: /5/0/12 Last State Change Time (Unix seconds).
    pub changed_at: u64,
    /// FETCH_BLOCK: image offset.
    pub offset: u32,
    /// FETCH_BLOCK: bytes wanted.
    pub len: u32,
    /// AUTHORIZE_DOWNLOAD: image size.
    pub image_size: u32,
    /// AUTHORIZE_DOWNLOAD, AUTHORIZE_INSTALL: manifest sequence number.
    pub sequence: u64,
    /// AUTHORIZE_DOWNLOAD, AUTHORIZE_INSTALL: SUIT digest of the manifest.
    pub manifest_digest: [u8; 32],
}

fn image_state_code(s: ImageState) -> u8 {
    match s {
        ImageState::Testing => UPDRAFT_IMAGE_TESTING,
        ImageState::Accepted => UPDRAFT_IMAGE_ACCEPTED,
        ImageState::Rejected => UPDRAFT_IMAGE_REJECTED,
        ImageState::Aborted => UPDRAFT_IMAGE_ABORTED,
    }
}

fn flatten(a: Action) -> UpdraftAction {
    let mut out = UpdraftAction {
        kind: UpdraftActionKind::Reboot,
        state: 0,
        result: 0,
        percent: 0,
        image_state: 0,
        has_changed_at: 0,
        changed_at: 0,
        offset: 0,
        len: 0,
        image_size: 0,
        sequence: 0,
        manifest_digest: [0; 32],
    };
    match a {
        Action::Notify {
            state,
            result,
            changed_at,
        } => {
            out.kind = UpdraftActionKind::Notify;
            out.state = state as u8;
            out.result = result as u8;
            out.has_changed_at = u8::from(changed_at.is_some());
            out.changed_at = changed_at.unwrap_or(0);
        }
        Action::FetchManifest => out.kind = UpdraftActionKind::FetchManifest,
        Action::FetchBlock { offset, len } => {
            out.kind = UpdraftActionKind::FetchBlock;
            out.offset = offset;
            out.len = len;
        }
        Action::AuthorizeDownload {
            sequence,
            image_size,
            manifest_digest,
        } => {
            out.kind = UpdraftActionKind::AuthorizeDownload;
            out.sequence = sequence;
            out.image_size = image_size;
            out.manifest_digest = manifest_digest;
        }
        Action::AuthorizeInstall {
            sequence,
            manifest_digest,
        } => {
            out.kind = UpdraftActionKind::AuthorizeInstall;
            out.sequence = sequence;
            out.manifest_digest = manifest_digest;
        }
        Action::Progress { percent } => {
            out.kind = UpdraftActionKind::Progress;
            out.percent = percent;
        }
        Action::ImageState(s) => {
            out.kind = UpdraftActionKind::ImageState;
            out.image_state = image_state_code(s);
        }
        Action::Reboot => out.kind = UpdraftActionKind::Reboot,
        Action::Completed(result) => {
            out.kind = UpdraftActionKind::Completed;
            out.result = result as u8;
        }
    }
    out
}

/// Take the next action, oldest first, into `out`: 1 if one was written, 0 if there is none,
/// or a negative error. Drain after every event.
///
/// # Safety
/// `dev` was started; `out` is a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_poll_action(
    dev: *mut UpdraftDevice,
    out: *mut UpdraftAction,
) -> i32 {
    if out.is_null() {
        return UPDRAFT_ERR_NULL;
    }
    // SAFETY: the caller's contract.
    match unsafe { with_core(dev, |core, _| core.poll_action()) } {
        Ok(Some(a)) => {
            // SAFETY: `out` is a valid pointer (contract).
            unsafe { out.write(flatten(a)) };
            1
        }
        Ok(None) => 0,
        Err(code) => code,
    }
}

// ---- reading the state -------------------------------------------------------------------------

/// /5/0/3 State (0 to 3), or a negative error.
///
/// # Safety
/// `dev` was started.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_state(dev: *mut UpdraftDevice) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { with_core(dev, |core, _| core.state() as i32) }.unwrap_or_else(|e| e)
}

/// /5/0/5 Update Result (0 to 11), or a negative error.
///
/// # Safety
/// `dev` was started.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_result(dev: *mut UpdraftDevice) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { with_core(dev, |core, _| core.result() as i32) }.unwrap_or_else(|e| e)
}

/// Hand out a borrowed byte string of the core: 1 and (`*ptr`, `*len`) if present, 0 if not.
///
/// # Safety
/// `ptr` and `len` are valid pointers.
unsafe fn hand_out(s: Option<&[u8]>, ptr: *mut *const u8, len: *mut usize) -> i32 {
    let s = s.unwrap_or(&[]);
    // SAFETY: the caller's contract.
    unsafe {
        ptr.write(s.as_ptr());
        len.write(s.len());
    }
    i32::from(!s.is_empty())
}

/// `updraft_string`: /5/0/1 Package URI.
pub const UPDRAFT_STRING_PACKAGE_URI: u32 = 0;
/// `updraft_string`: the image URI from the signed manifest (where blocks are fetched from).
pub const UPDRAFT_STRING_IMAGE_URI: u32 = 1;
/// `updraft_string`: /5/0/7 PkgVersion of the manifest in progress.
pub const UPDRAFT_STRING_PKG_VERSION: u32 = 2;
/// `updraft_string`: the resume token (ETag) recorded for the download.
pub const UPDRAFT_STRING_RESUME_TOKEN: u32 = 3;

/// Point `*ptr` / `*len` at one of the core's strings (not NUL-terminated; valid until the
/// next call on `dev`): 1 if it is set, 0 if empty or absent, or a negative error.
///
/// # Safety
/// `dev` was started; `ptr` and `len` are valid pointers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_string(
    dev: *mut UpdraftDevice,
    which: u32,
    ptr: *mut *const u8,
    len: *mut usize,
) -> i32 {
    if ptr.is_null() || len.is_null() {
        return UPDRAFT_ERR_NULL;
    }
    if which > UPDRAFT_STRING_RESUME_TOKEN {
        return UPDRAFT_ERR_INVALID_ARGUMENT;
    }
    // SAFETY: the caller's contract.
    let r = unsafe {
        with_core(dev, |core, _| {
            let s: Option<&[u8]> = match which {
                UPDRAFT_STRING_PACKAGE_URI => Some(core.package_uri().as_bytes()),
                UPDRAFT_STRING_IMAGE_URI => core.image_uri().map(str::as_bytes),
                UPDRAFT_STRING_PKG_VERSION => core.pkg_version().map(str::as_bytes),
                _ => Some(core.resume_token()),
            };
            // `ptr` and `len` are valid (checked non-NULL, contract); the bytes live in `dev`
            // until the next call changes them.
            hand_out(s, ptr, len)
        })
    };
    r.unwrap_or_else(|e| e)
}

/// Image bytes received and hashed so far and the signed size: 1 while downloading, 0 if no
/// download is in progress, or a negative error.
///
/// # Safety
/// `dev` was started; `received` and `size` are valid pointers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_download_progress(
    dev: *mut UpdraftDevice,
    received: *mut u32,
    size: *mut u32,
) -> i32 {
    if received.is_null() || size.is_null() {
        return UPDRAFT_ERR_NULL;
    }
    // SAFETY: the caller's contract.
    match unsafe { with_core(dev, |core, _| core.download_progress()) } {
        Ok(Some((r, s))) => {
            // SAFETY: valid pointers (contract).
            unsafe {
                received.write(r);
                size.write(s);
            }
            1
        }
        Ok(None) => 0,
        Err(code) => code,
    }
}

/// The boot state as the core last read or wrote it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdraftBootInfo {
    /// The active (confirmed) slot, `UPDRAFT_SLOT_A` or `UPDRAFT_SLOT_B`.
    pub active_slot: u8,
    /// Nonzero while a trial is pending or running.
    pub trial: u8,
    /// The anti-rollback counter: sequence number of the confirmed image.
    pub installed_sequence: u64,
    /// SHA-256 of the active image (zero for a factory image never provisioned).
    pub active_digest: [u8; 32],
}

fn slot_code(s: Slot) -> u8 {
    match s {
        Slot::A => UPDRAFT_SLOT_A,
        Slot::B => UPDRAFT_SLOT_B,
    }
}

fn boot_info(b: &BootState) -> UpdraftBootInfo {
    UpdraftBootInfo {
        active_slot: slot_code(b.active),
        trial: u8::from(b.trial.is_some()),
        installed_sequence: b.installed_sequence,
        active_digest: b.active_digest,
    }
}

/// Copy the boot state into `out`.
///
/// # Safety
/// `dev` was started; `out` is a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_boot_info(
    dev: *mut UpdraftDevice,
    out: *mut UpdraftBootInfo,
) -> i32 {
    if out.is_null() {
        return UPDRAFT_ERR_NULL;
    }
    // SAFETY: the caller's contract.
    match unsafe { with_core(dev, |core, _| boot_info(core.boot_state())) } {
        Ok(info) => {
            // SAFETY: valid pointer (contract).
            unsafe { out.write(info) };
            UPDRAFT_OK
        }
        Err(code) => code,
    }
}

/// Download counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdraftStats {
    /// Blocks handed to the core.
    pub blocks_received: u32,
    /// Block fetches the core asked for (pull).
    pub blocks_queued: u32,
    /// Blocks hashed and written to the candidate slot.
    pub blocks_processed: u32,
    /// Blocks refused (wrong offset or state, beyond the signed size, duplicate).
    pub blocks_dropped: u32,
    /// Actions lost because the program did not drain the queue.
    pub actions_dropped: u32,
}

/// Copy the download counters into `out`.
///
/// # Safety
/// `dev` was started; `out` is a valid pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_stats(dev: *mut UpdraftDevice, out: *mut UpdraftStats) -> i32 {
    if out.is_null() {
        return UPDRAFT_ERR_NULL;
    }
    // SAFETY: the caller's contract.
    match unsafe { with_core(dev, |core, _| core.stats()) } {
        Ok(s) => {
            // SAFETY: valid pointer (contract).
            unsafe {
                out.write(UpdraftStats {
                    blocks_received: s.blocks_received,
                    blocks_queued: s.blocks_queued,
                    blocks_processed: s.blocks_processed,
                    blocks_dropped: s.blocks_dropped,
                    actions_dropped: s.actions_dropped,
                })
            };
            UPDRAFT_OK
        }
        Err(code) => code,
    }
}

// ---- the bootloader half -----------------------------------------------------------------------

/// What the boot-time selection decided.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdraftBootDecision {
    /// The slot to run, `UPDRAFT_SLOT_A` or `UPDRAFT_SLOT_B`.
    pub slot: u8,
    /// Nonzero: the image runs on trial and must confirm itself (`updraft_self_test`).
    pub trial: u8,
    /// The image state this boot produced (`UPDRAFT_IMAGE_*`), 0 if none.
    pub image_state: u8,
}

/// The boot-time slot selection (what a bootloader does before it jumps to an image): a
/// pending trial whose slot still hashes to its digest runs once on trial; an unconfirmed
/// trial reverts. It writes the boot state, so it runs once per boot, before `updraft_start`.
///
/// # Safety
/// `flash`, `layout` and `out` are valid pointers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_select_boot_slot(
    flash: *const UpdraftFlash,
    layout: *const UpdraftLayout,
    out: *mut UpdraftBootDecision,
) -> i32 {
    if flash.is_null() || layout.is_null() || out.is_null() {
        return UPDRAFT_ERR_NULL;
    }
    // SAFETY: non-NULL, valid by the contract.
    let (flash, layout) = unsafe { (&*flash, (*layout).to_core()) };
    let mut f = match CFlash::from_c(flash) {
        Ok(f) => f,
        Err(code) => return code,
    };
    if layout.check::<CFlash>(f.capacity()).is_err() {
        return UPDRAFT_ERR_LAYOUT;
    }
    match select_boot_slot(&mut f, &layout) {
        Ok(d) => {
            // SAFETY: valid pointer (contract).
            unsafe {
                out.write(UpdraftBootDecision {
                    slot: slot_code(d.slot),
                    trial: u8::from(d.trial),
                    image_state: d.image_state.map(image_state_code).unwrap_or(0),
                })
            };
            UPDRAFT_OK
        }
        Err(_) => UPDRAFT_ERR_FLASH,
    }
}

/// Factory provisioning: the image in `slot` (SHA-256 `image_digest`, 32 bytes) is the active
/// one, with anti-rollback counter `sequence`.
///
/// # Safety
/// `flash` and `layout` are valid pointers; `image_digest` points to 32 readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn updraft_provision(
    flash: *const UpdraftFlash,
    layout: *const UpdraftLayout,
    slot: u8,
    image_digest: *const u8,
    sequence: u64,
) -> i32 {
    if flash.is_null() || layout.is_null() || image_digest.is_null() {
        return UPDRAFT_ERR_NULL;
    }
    let slot = match slot {
        UPDRAFT_SLOT_A => Slot::A,
        UPDRAFT_SLOT_B => Slot::B,
        _ => return UPDRAFT_ERR_INVALID_ARGUMENT,
    };
    // SAFETY: non-NULL, valid by the contract; 32 readable bytes at `image_digest`.
    let (flash, layout, digest) = unsafe {
        (
            &*flash,
            (*layout).to_core(),
            image_digest.cast::<[u8; 32]>().read_unaligned(),
        )
    };
    let mut f = match CFlash::from_c(flash) {
        Ok(f) => f,
        Err(code) => return code,
    };
    if layout.check::<CFlash>(f.capacity()).is_err() {
        return UPDRAFT_ERR_LAYOUT;
    }
    match boot_state::provision(&mut f, &layout, slot, digest, sequence) {
        Ok(()) => UPDRAFT_OK,
        Err(_) => UPDRAFT_ERR_FLASH,
    }
}

#[cfg(all(target_os = "none", feature = "panic-handler", not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
