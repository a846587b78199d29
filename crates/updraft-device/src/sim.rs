//! Simulated NOR flash with fault injection, and a simulated device (the test harness the
//! power-loss sweep and the fleet simulator build on). Feature `sim`; uses `std`.
//!
//! The flash behaves like NOR: erase sets a sector to 0xFF, a write can only clear bits
//! (writing a 1 over a 0 is an error), every write and erase is counted (and per-sector wear).
//! It has two programming modes ([`Programming`]): plain NOR ([`SimFlash::new`]), where a word
//! may be programmed again (`old & new`), and write-once per erase with a word size
//! ([`SimFlash::new_write_once`], flash with ECC words such as STM32L4/G4/H7/U5): programming
//! any byte of a word that was programmed since its last erase is an error
//! ([`SimError::WordProgrammed`]), not a silent `old & new`.
//! [`SimFlash::cut_power_at`] makes the n-th next operation fail half-done (a write leaves a
//! prefix of its bytes and one partially programmed byte; an erase leaves the sector partially
//! erased) and every later operation fail until [`SimFlash::reboot`]; in write-once mode every
//! word the cut write reached counts as programmed (even if it still reads 0xFF, as a half
//! programmed ECC word can), and a cut erase leaves the whole sector programmed (it must be
//! erased again). [`SimFlash::then_cut_after_reboot`] schedules a second cut in the boot that
//! follows. Contents survive reboots.

use std::vec;
use std::vec::Vec;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

use crate::auth::Decision;
use crate::boot::{self, BootDecision, BootError, BootState};
use crate::layout::Slot;
use crate::object5::OpError;
use crate::update::{Action, Config, Event, UpdateCore};

/// A simulated flash failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimError {
    /// Outside the flash.
    OutOfBounds,
    /// Offset or length not aligned to the write or erase size.
    NotAligned,
    /// A write would turn a 0 bit into 1 (NOR needs an erase first).
    NotErased {
        /// Address of the first offending byte.
        offset: u32,
    },
    /// Write-once mode: the word at `offset` was already programmed since its last erase.
    WordProgrammed {
        /// Address of the first byte of the word.
        offset: u32,
    },
    /// The power is off (a cut happened, [`SimFlash::reboot`] not called yet).
    PowerCut,
}

/// How the simulated flash may be programmed between two erases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Programming {
    /// Plain NOR: a word may be programmed again, clearing more bits (`old & new`).
    Nor,
    /// One program per `word`-byte word per erase (flash with ECC words).
    WriteOnce {
        /// Word size in bytes (a power of two, a multiple of the write size).
        word: usize,
    },
}

impl NorFlashError for SimError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            SimError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            SimError::NotAligned => NorFlashErrorKind::NotAligned,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// Simulated NOR flash: `ERASE`-byte sectors, `WRITE`-byte write granularity.
#[derive(Clone, Debug)]
pub struct SimFlash<const ERASE: usize = 4096, const WRITE: usize = 4> {
    mem: Vec<u8>,
    wear: Vec<u32>,
    writes: u64,
    erases: u64,
    cut_at: Option<u64>,
    dead: bool,
    rng: u64,
    violations: u64,
    word_violations: u64,
    programming: Programming,
    programmed: Vec<bool>,
    cut_after_reboot: Option<u64>,
}

impl<const ERASE: usize, const WRITE: usize> SimFlash<ERASE, WRITE> {
    /// An erased plain NOR flash of `size` bytes (rounded up to whole sectors).
    pub fn new(size: usize) -> Self {
        Self::with_programming(size, Programming::Nor)
    }

    /// An erased write-once flash of `size` bytes with `word`-byte words: a word is programmed
    /// at most once between two erases of its sector.
    ///
    /// # Panics
    /// If `word` is not a power of two that is a multiple of `WRITE` and divides `ERASE`.
    pub fn new_write_once(size: usize, word: usize) -> Self {
        Self::with_programming(size, Programming::WriteOnce { word })
    }

    /// An erased flash of `size` bytes in the given programming mode.
    ///
    /// # Panics
    /// On a write-once word size that is not a power of two, a multiple of `WRITE` and a
    /// divisor of `ERASE` (a harness configuration error).
    pub fn with_programming(size: usize, programming: Programming) -> Self {
        if let Programming::WriteOnce { word } = programming {
            assert!(
                word.is_power_of_two() && word.is_multiple_of(WRITE) && ERASE.is_multiple_of(word),
                "word size {word} does not fit writes of {WRITE} and sectors of {ERASE}"
            );
        }
        let sectors = size.div_ceil(ERASE);
        Self {
            mem: vec![0xFF; sectors * ERASE],
            wear: vec![0; sectors],
            writes: 0,
            erases: 0,
            cut_at: None,
            dead: false,
            rng: 0x9E37_79B9_7F4A_7C15,
            violations: 0,
            word_violations: 0,
            programming,
            programmed: vec![false; sectors * ERASE / Self::word_of(programming)],
            cut_after_reboot: None,
        }
    }

    fn word_of(p: Programming) -> usize {
        match p {
            Programming::Nor => WRITE.max(1),
            Programming::WriteOnce { word } => word,
        }
    }

    /// The programming mode.
    pub fn programming(&self) -> Programming {
        self.programming
    }

    /// Write-once mode: writes refused because they would program a word a second time
    /// between erases (a bug in the writer). Always 0 in NOR mode.
    pub fn word_violations(&self) -> u64 {
        self.word_violations
    }

    /// Flip bits of a stored byte (`byte ^= mask`), as bit rot or a bad copy would: no
    /// operation is counted. Out-of-range offsets are ignored.
    pub fn corrupt(&mut self, offset: u32, mask: u8) {
        if let Some(b) = self.mem.get_mut(offset as usize) {
            *b ^= mask;
        }
    }

    /// After the next cut, when [`reboot`](Self::reboot) powers the flash on again, make the
    /// `n`-th operation from then on (1-based) fail half-done too (a cut during recovery).
    pub fn then_cut_after_reboot(&mut self, n: u64) {
        self.cut_after_reboot = Some(n.max(1));
    }

    /// Writes plus erases so far.
    pub fn ops(&self) -> u64 {
        self.writes + self.erases
    }

    /// Writes so far.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Erases so far.
    pub fn erases(&self) -> u64 {
        self.erases
    }

    /// Writes refused because they would set a 0 bit to 1 (a bug in the writer).
    pub fn nor_violations(&self) -> u64 {
        self.violations
    }

    /// Erase count of each sector.
    pub fn wear(&self) -> &[u32] {
        &self.wear
    }

    /// The raw contents.
    pub fn contents(&self) -> &[u8] {
        &self.mem
    }

    /// Make the `n`-th next write or erase (1-based) fail half-done, and everything after it
    /// fail until [`reboot`](Self::reboot).
    pub fn cut_power_at(&mut self, n: u64) {
        self.cut_at = Some(self.ops() + n.max(1));
    }

    /// Seed the garbage a cut leaves behind.
    pub fn seed(&mut self, seed: u64) {
        self.rng = seed | 1;
    }

    /// Whether the power is off.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Power back on. Contents are kept; a cut scheduled for a later operation stays
    /// scheduled (so a sweep also reaches the operations after a requested reboot). After a
    /// cut, a cut requested with [`then_cut_after_reboot`](Self::then_cut_after_reboot) is
    /// scheduled now.
    pub fn reboot(&mut self) {
        if self.dead
            && let Some(n) = self.cut_after_reboot.take()
        {
            self.cut_at = Some(self.ops() + n);
        }
        self.dead = false;
    }

    /// Write-once mode: mark the words overlapping `[from, to)` programmed or erased.
    fn mark(&mut self, from: usize, to: usize, programmed: bool) {
        if let Programming::WriteOnce { word } = self.programming {
            if to <= from {
                return;
            }
            for w in from / word..to.div_ceil(word) {
                if let Some(p) = self.programmed.get_mut(w) {
                    *p = programmed;
                }
            }
        }
    }

    /// Write-once mode: the first programmed word overlapping `[from, to)`.
    fn first_programmed(&self, from: usize, to: usize) -> Option<u32> {
        let Programming::WriteOnce { word } = self.programming else {
            return None;
        };
        (from / word..to.div_ceil(word))
            .find(|&w| self.programmed.get(w).copied().unwrap_or(false))
            .map(|w| (w * word) as u32)
    }

    fn next_rand(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Count an operation; whether this one is cut.
    fn begin(&mut self) -> Result<bool, SimError> {
        if self.dead {
            return Err(SimError::PowerCut);
        }
        Ok(self.cut_at == Some(self.ops() + 1))
    }
}

impl<const ERASE: usize, const WRITE: usize> ErrorType for SimFlash<ERASE, WRITE> {
    type Error = SimError;
}

impl<const ERASE: usize, const WRITE: usize> ReadNorFlash for SimFlash<ERASE, WRITE> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        if self.dead {
            return Err(SimError::PowerCut);
        }
        let start = offset as usize;
        let src = self
            .mem
            .get(start..start + bytes.len())
            .ok_or(SimError::OutOfBounds)?;
        bytes.copy_from_slice(src);
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.mem.len()
    }
}

impl<const ERASE: usize, const WRITE: usize> NorFlash for SimFlash<ERASE, WRITE> {
    const WRITE_SIZE: usize = WRITE;
    const ERASE_SIZE: usize = ERASE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        let (from, to) = (from as usize, to as usize);
        if from % ERASE != 0 || to % ERASE != 0 || from > to {
            return Err(SimError::NotAligned);
        }
        if to > self.mem.len() {
            return Err(SimError::OutOfBounds);
        }
        let cut = self.begin()?;
        self.erases += 1;
        for s in from / ERASE..to / ERASE {
            if let Some(w) = self.wear.get_mut(s) {
                *w += 1;
            }
        }
        if cut {
            let keep = (self.next_rand() as usize) % (to - from).max(1);
            for i in from..to {
                let noise = self.next_rand() as u8;
                if let Some(b) = self.mem.get_mut(i) {
                    *b = if i < from + keep { 0xFF } else { *b | noise };
                }
            }
            // Half erased: nothing in it may be programmed before a complete erase.
            self.mark(from, to, true);
            self.dead = true;
            return Err(SimError::PowerCut);
        }
        self.mem[from..to].fill(0xFF);
        self.mark(from, to, false);
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        let start = offset as usize;
        if !start.is_multiple_of(WRITE) || !bytes.len().is_multiple_of(WRITE) {
            return Err(SimError::NotAligned);
        }
        if start + bytes.len() > self.mem.len() {
            return Err(SimError::OutOfBounds);
        }
        let cut = self.begin()?;
        self.writes += 1;
        if bytes.is_empty() {
            return Ok(());
        }
        if let Some(word) = self.first_programmed(start, start + bytes.len()) {
            self.word_violations += 1;
            return Err(SimError::WordProgrammed { offset: word });
        }
        for (i, (&old, &new)) in self.mem[start..].iter().zip(bytes).enumerate() {
            if new & !old != 0 {
                self.violations += 1;
                return Err(SimError::NotErased {
                    offset: offset + i as u32,
                });
            }
        }
        if cut {
            let done = (self.next_rand() as usize) % bytes.len().max(1);
            for (i, &new) in bytes.iter().enumerate().take(done + 1) {
                let noise = if i == done { self.next_rand() as u8 } else { 0 };
                self.mem[start + i] &= new | noise;
            }
            self.mark(start, start + done + 1, true);
            self.dead = true;
            return Err(SimError::PowerCut);
        }
        for (m, &new) in self.mem[start..].iter_mut().zip(bytes) {
            *m &= new;
        }
        self.mark(start, start + bytes.len(), true);
        Ok(())
    }
}

/// What the simulated application answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppPolicy {
    /// Answer to download authorization.
    pub download: Decision,
    /// Answer to install authorization.
    pub install: Decision,
    /// Whether a trial image's self-test passes.
    pub self_test_passes: bool,
}

impl Default for AppPolicy {
    fn default() -> Self {
        Self {
            download: Decision::Authorize,
            install: Decision::Authorize,
            self_test_passes: true,
        }
    }
}

/// What the simulated server serves.
#[derive(Clone, Debug, Default)]
pub struct SimServer {
    /// The signed envelope served for any Package URI.
    pub envelope: Vec<u8>,
    /// The image served for the manifest's URI.
    pub image: Vec<u8>,
    /// The resume token (ETag) served with each block.
    pub token: Vec<u8>,
}

/// Where a download restarted after a power cut: the highest block offset served before the
/// cut and the first offset asked after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumePoint {
    /// Highest offset served before the cut.
    pub served_before: u32,
    /// First offset fetched after it.
    pub fetched_after: u32,
}

/// One boot of a [`SimDevice`]: the bootloader's decision and which known image (an index into
/// [`SimDevice::known_images`]) the booted slot holds, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootRecord {
    /// The slot selection.
    pub decision: BootDecision,
    /// Index of the known image whose digest the booted slot has; `None`: none of them.
    pub image: Option<usize>,
}

/// A simulated device: the core over a simulated flash, with a runtime loop that serves the
/// core's actions (manifest, blocks, authorization, reboots with boot-time slot selection and a
/// self-test), and that power-cycles the device when the flash loses power.
pub struct SimDevice<'k, const ERASE: usize = 4096, const WRITE: usize = 4> {
    /// The flash (survives reboots).
    pub flash: SimFlash<ERASE, WRITE>,
    /// Configuration the core is started with.
    pub config: Config<'k>,
    /// The running core (`None` while off).
    pub core: Option<UpdateCore<'k>>,
    /// Simulated Unix time, advanced by one per step.
    pub now: u64,
    /// The server.
    pub server: SimServer,
    /// The application's answers.
    pub app: AppPolicy,
    /// The last boot decision.
    pub booted: Option<BootDecision>,
    /// Every action seen, in order.
    pub log: Vec<Action>,
    /// Offsets of all blocks served.
    pub served: Vec<u32>,
    /// Power cuts survived.
    pub power_cuts: u32,
    /// Requested reboots.
    pub reboots: u32,
    /// Restart points of downloads after power cuts.
    pub resume_points: Vec<ResumePoint>,
    /// The boot state found at every boot (after the slot selection).
    pub boot_log: Vec<BootState>,
    /// Images the harness recognises in a booted slot (see [`boots`](Self::boots)).
    pub known_images: Vec<Vec<u8>>,
    /// Every completed slot selection, with the image the booted slot holds.
    pub boots: Vec<BootRecord>,
    /// Flash operations taken by each [`power_on`](Self::power_on) (slot selection, core start,
    /// self-test and confirm or reject), power cuts during it included.
    pub boot_ops: Vec<u64>,
    /// The boot state was found corrupt at a power-on: the device stays off (fails closed).
    pub boot_state_corrupt: bool,
    /// Flash operations of the recovery after the first power cut: from the power-on after it
    /// to the end of that boot (slot selection, core start, self-test), cuts included.
    pub recovery_ops: Option<u64>,
    recovery_start: Option<u64>,
    awaiting_resume: Option<u32>,
}

impl<'k, const ERASE: usize, const WRITE: usize> SimDevice<'k, ERASE, WRITE> {
    /// A device with `flash`; call [`provision`](Self::provision) then [`power_on`](Self::power_on).
    pub fn new(flash: SimFlash<ERASE, WRITE>, config: Config<'k>, server: SimServer) -> Self {
        Self {
            flash,
            config,
            core: None,
            now: 1_700_000_000,
            server,
            app: AppPolicy::default(),
            booted: None,
            log: Vec::new(),
            served: Vec::new(),
            power_cuts: 0,
            reboots: 0,
            resume_points: Vec::new(),
            boot_log: Vec::new(),
            known_images: Vec::new(),
            boots: Vec::new(),
            boot_ops: Vec::new(),
            boot_state_corrupt: false,
            recovery_ops: None,
            recovery_start: None,
            awaiting_resume: None,
        }
    }

    /// Factory image: write `image` to slot A and make it active with counter `sequence`.
    pub fn provision(&mut self, image: &[u8], sequence: u64) -> Result<(), SimError> {
        let slot = self.config.layout.slot_a;
        self.flash.erase(slot.offset, slot.end())?;
        let mut padded = image.to_vec();
        padded.resize(image.len().div_ceil(WRITE) * WRITE, 0xFF);
        self.flash.write(slot.offset, &padded)?;
        let digest = crate::verify::sha256(image);
        boot::provision(
            &mut self.flash,
            &self.config.layout,
            Slot::A,
            digest,
            sequence,
        )
    }

    /// Boot: the bootloader picks a slot, the core starts, a trial image runs its self-test.
    /// Repeats after a power cut during any of it. A corrupt boot state stops it: the device
    /// stays off ([`boot_state_corrupt`](Self::boot_state_corrupt)).
    pub fn power_on(&mut self) {
        let before = self.flash.ops();
        self.power_on_inner();
        self.boot_ops.push(self.flash.ops() - before);
        if let Some(start) = self.recovery_start.take() {
            self.recovery_ops = Some(self.flash.ops() - start);
        }
    }

    fn power_on_inner(&mut self) {
        for _ in 0..100 {
            self.core = None;
            if self.flash.is_dead() && self.recovery_ops.is_none() && self.recovery_start.is_none()
            {
                self.recovery_start = Some(self.flash.ops());
            }
            self.flash.reboot();
            let decision = match boot::select_boot_slot(&mut self.flash, &self.config.layout) {
                Ok(d) => d,
                Err(BootError::Corrupt) => {
                    self.boot_state_corrupt = true;
                    return;
                }
                Err(_) => {
                    self.power_cuts += 1;
                    continue;
                }
            };
            self.booted = Some(decision);
            let slot = self.config.layout.slot(decision.slot);
            let image = (0..self.known_images.len()).find(|&i| {
                let img = &self.known_images[i];
                let len = img.len() as u32;
                len <= slot.size
                    && boot::slot_digest(&mut self.flash, &self.config.layout, decision.slot, len)
                        .is_ok_and(|d| d == crate::verify::sha256(img))
            });
            self.boots.push(BootRecord { decision, image });
            if let Ok(st) = BootState::load(&mut self.flash, &self.config.layout) {
                self.boot_log.push(st);
            }
            self.now += 1;
            match UpdateCore::start(&mut self.flash, self.config, Some(self.now)) {
                Ok(core) => self.core = Some(core),
                Err(_) => {
                    self.power_cuts += 1;
                    continue;
                }
            }
            if self.flash.is_dead() {
                self.power_cuts += 1;
                self.mark_cut();
                continue;
            }
            if let Some(core) = &self.core
                && core.step() == crate::update::Step::Testing
            {
                let passed = self.app.self_test_passes;
                let _ = self.send(Event::SelfTest { passed });
            }
            if self.core.is_some() {
                return;
            }
        }
    }

    fn mark_cut(&mut self) {
        if self.awaiting_resume.is_none() {
            self.awaiting_resume = self.served.last().copied();
        }
    }

    /// Hand an event to the core; on a power cut, reboot the device.
    pub fn send(&mut self, event: Event<'_>) -> Result<(), OpError> {
        self.now += 1;
        let now = Some(self.now);
        let Some(core) = self.core.as_mut() else {
            return Err(OpError::ServiceUnavailable);
        };
        let r = core.handle(&mut self.flash, now, event);
        if self.flash.is_dead() {
            self.power_cuts += 1;
            self.mark_cut();
            self.power_on();
        }
        r
    }

    /// Serve actions until the core has nothing more to ask (at most `limit` actions).
    pub fn run(&mut self, limit: usize) -> usize {
        let mut steps = 0;
        while steps < limit {
            if self.core.is_none() {
                self.power_on();
            }
            let Some(action) = self.core.as_mut().and_then(UpdateCore::poll_action) else {
                break;
            };
            steps += 1;
            self.log.push(action);
            match action {
                Action::FetchManifest => {
                    let env = self.server.envelope.clone();
                    let _ = self.send(Event::ManifestFetched(&env));
                }
                Action::FetchBlock { offset, len } => {
                    if let Some(before) = self.awaiting_resume.take() {
                        self.resume_points.push(ResumePoint {
                            served_before: before,
                            fetched_after: offset,
                        });
                    }
                    let start = (offset as usize).min(self.server.image.len());
                    let end = (start + len as usize).min(self.server.image.len());
                    let data = self.server.image[start..end].to_vec();
                    let token = self.server.token.clone();
                    self.served.push(offset);
                    let _ = self.send(Event::Block {
                        offset,
                        data: &data,
                        token: &token,
                    });
                }
                Action::AuthorizeDownload { .. } => {
                    let d = self.app.download;
                    let _ = self.send(Event::DownloadAuthorization(d));
                }
                Action::AuthorizeInstall { .. } => {
                    let d = self.app.install;
                    let _ = self.send(Event::InstallAuthorization(d));
                }
                Action::Reboot => {
                    self.reboots += 1;
                    self.power_on();
                }
                Action::Notify { .. }
                | Action::Progress { .. }
                | Action::ImageState(_)
                | Action::Completed(_) => {}
            }
        }
        steps
    }

    /// The persisted boot state. Panics if it cannot be read (harness use only).
    pub fn boot_state(&mut self) -> BootState {
        BootState::load(&mut self.flash, &self.config.layout).expect("boot state readable")
    }

    /// SHA-256 of the first `len` bytes of the slot that booted last.
    pub fn booted_digest(&mut self, len: usize) -> Option<[u8; 32]> {
        let slot = self.booted?.slot;
        boot::slot_digest(&mut self.flash, &self.config.layout, slot, len as u32).ok()
    }

    /// The running core. Panics if the device is off (harness use only).
    pub fn core(&self) -> &UpdateCore<'k> {
        self.core.as_ref().expect("device is powered on")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writing_a_one_over_a_zero_is_refused_like_nor() {
        let mut f = SimFlash::<256, 4>::new(1024);
        assert_eq!(f.write(0, &[0x0F; 4]), Ok(()));
        assert_eq!(f.write(0, &[0x0F; 4]), Ok(()));
        assert_eq!(
            f.write(0, &[0xF0; 4]),
            Err(SimError::NotErased { offset: 0 })
        );
        assert_eq!(f.erase(0, 256), Ok(()));
        assert_eq!(f.write(0, &[0xF0; 4]), Ok(()));
        assert_eq!(f.write(2, &[0; 4]), Err(SimError::NotAligned));
        assert_eq!((f.writes(), f.erases(), f.wear()[0]), (4, 1, 1));
    }

    #[test]
    fn cut_write_leaves_a_prefix_and_fails_until_reboot() {
        let mut f = SimFlash::<256, 4>::new(1024);
        f.cut_power_at(2);
        assert_eq!(f.write(0, &[0; 8]), Ok(()));
        assert_eq!(f.write(8, &[0; 64]), Err(SimError::PowerCut));
        assert!(f.is_dead());
        let mut b = [0u8; 4];
        assert_eq!(f.read(0, &mut b), Err(SimError::PowerCut));
        assert_eq!(f.erase(0, 256), Err(SimError::PowerCut));
        f.reboot();
        assert_eq!(f.read(0, &mut b), Ok(()));
        assert_eq!(b, [0; 4]);
        assert!(f.contents()[8 + 64..].iter().all(|&x| x == 0xFF));
    }

    #[test]
    fn cut_erase_leaves_the_sector_partially_erased() {
        for seed in 1..=16u64 {
            let mut f = SimFlash::<256, 4>::new(1024);
            f.seed(seed);
            f.write(0, &[0; 256]).ok();
            f.cut_power_at(1);
            assert_eq!(f.erase(0, 256), Err(SimError::PowerCut));
            f.reboot();
            let s = &f.contents()[..256];
            // Neither done nor untouched: an erased prefix, then bits set at random.
            assert_ne!(s, &[0xFF; 256][..], "seed {seed}: the cut erase completed");
            assert_ne!(
                s,
                &[0x00; 256][..],
                "seed {seed}: the cut erase did nothing"
            );
            assert_eq!(f.erase(0, 256), Ok(()));
            assert!(f.contents()[..256].iter().all(|&b| b == 0xFF));
            assert_eq!(f.wear()[0], 2);
        }
    }

    #[test]
    fn write_once_mode_refuses_a_second_program_of_a_word_until_its_erase() {
        let mut f = SimFlash::<256, 4>::new_write_once(1024, 16);
        assert_eq!(f.write(0, &[0xFF, 0x0F, 0xFF, 0xFF]), Ok(()));
        // Same word (bytes 0..16), other bytes, even bits still at 1: refused.
        assert_eq!(
            f.write(4, &[0x00; 4]),
            Err(SimError::WordProgrammed { offset: 0 })
        );
        assert_eq!(
            f.write(0, &[0x0F, 0x0F, 0xFF, 0xFF]),
            Err(SimError::WordProgrammed { offset: 0 })
        );
        // A write spanning a programmed word is refused as a whole.
        assert_eq!(
            f.write(12, &[0; 8]),
            Err(SimError::WordProgrammed { offset: 0 })
        );
        assert_eq!(f.contents()[12..20], [0xFF; 8]);
        assert_eq!(f.word_violations(), 3);
        assert_eq!(f.write(16, &[0; 16]), Ok(()));
        assert_eq!(f.erase(0, 256), Ok(()));
        assert_eq!(f.write(4, &[0x00; 4]), Ok(()));
        assert_eq!(f.write(32, &[0x00; 4]), Ok(()));
        // The same sequence is fine on NOR.
        let mut n = SimFlash::<256, 4>::new(1024);
        assert_eq!(n.write(0, &[0xFF, 0x0F, 0xFF, 0xFF]), Ok(()));
        assert_eq!(n.write(4, &[0x00; 4]), Ok(()));
        assert_eq!(n.write(0, &[0x0F, 0x0F, 0xFF, 0xFF]), Ok(()));
        assert_eq!(n.word_violations(), 0);
    }

    #[test]
    fn write_once_mode_counts_every_word_a_cut_reached_as_programmed() {
        for seed in 1..=16u64 {
            let mut f = SimFlash::<256, 8>::new_write_once(1024, 8);
            f.seed(seed);
            f.cut_power_at(1);
            assert_eq!(f.write(0, &[0x00; 64]), Err(SimError::PowerCut));
            f.reboot();
            let reached = f.contents()[..64]
                .iter()
                .rposition(|&b| b != 0xFF)
                .map_or(0, |i| i / 8 + 1);
            // Every word up to the last one that changed is programmed (so may be the next:
            // the cut's partial byte can still read 0xFF).
            for w in 0..reached {
                assert_eq!(
                    f.write(w as u32 * 8, &[0; 8]),
                    Err(SimError::WordProgrammed {
                        offset: w as u32 * 8
                    }),
                    "seed {seed} word {w}"
                );
            }
            // A cut erase leaves the sector to be erased again before any program.
            f.cut_power_at(1);
            assert_eq!(f.erase(0, 256), Err(SimError::PowerCut));
            f.reboot();
            assert_eq!(
                f.write(128, &[0; 8]),
                Err(SimError::WordProgrammed { offset: 128 })
            );
            assert_eq!(f.erase(0, 256), Ok(()));
            assert_eq!(f.write(128, &[0; 8]), Ok(()));
        }
    }

    #[test]
    fn a_second_cut_can_be_scheduled_in_the_boot_after_the_first() {
        let mut f = SimFlash::<256, 4>::new(1024);
        f.cut_power_at(2);
        f.then_cut_after_reboot(3);
        assert_eq!(f.write(0, &[0; 4]), Ok(()));
        assert_eq!(f.write(4, &[0; 4]), Err(SimError::PowerCut));
        f.reboot();
        assert_eq!(f.write(8, &[0; 4]), Ok(()));
        assert_eq!(f.write(12, &[0; 4]), Ok(()));
        assert_eq!(f.write(16, &[0; 4]), Err(SimError::PowerCut));
        f.reboot();
        assert_eq!(f.write(20, &[0; 4]), Ok(()));
        assert!(!f.is_dead());
    }
}
