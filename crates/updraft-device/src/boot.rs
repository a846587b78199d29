//! A/B slots and the boot state: which slot is active, the candidate on trial, the
//! anti-rollback counter, and the outcome of the last trial.
//!
//! Trial boot (the embassy-boot / MCUboot "test" shape, without a swap: each slot runs in place):
//! 1. install: the candidate is marked `Trial::Pending`, then the device reboots;
//! 2. [`select_boot_slot`] (what a bootloader does) checks the candidate's digest, marks it
//!    `Trial::Booted` *before* running it, and runs it once in test mode;
//! 3. the new image's self-test confirms ([`confirm`]: the slot becomes active and the
//!    anti-rollback counter moves) or rejects it ([`reject`]: back to the old slot);
//! 4. a trial that is still `Booted` at the next boot was never confirmed: it is reverted.
//!
//! Each step is one record write (see [`crate::record`]), so a cut leaves the step done or not.
//!
//! # Failing closed
//!
//! A boot-state area with no valid copy is the factory default (slot A, counter 0) only when it
//! is fully erased. Anything else (both copies damaged) is [`BootError::Corrupt`]: slot
//! selection, the core's start, confirm and reject refuse to go on, because falling back to
//! counter 0 would accept any signed downgrade. The runtime must handle it (report, keep the
//! device out of updates, re-provision from a trusted source); [`provision`] rewrites the area.

use embedded_storage::nor_flash::NorFlash;
use sha2::{Digest as _, Sha256};
use updraft_manifest::Digest;

use crate::journal::{Reader, Writer};
use crate::layout::{Layout, Slot, read_chunks};
use crate::record::{RecordStore, Stored};

/// Magic of the boot-state records (see [`RecordStore`]).
pub const BOOT_MAGIC: u32 = 0x5442_4F42; // "BOBT"
/// Bytes of an encoded boot state (the record payload).
pub const ENCODED_LEN: usize = 1 + 8 + 32 + 1 + CANDIDATE_LEN + 1 + 32;
const CANDIDATE_LEN: usize = 1 + 8 + 32 + 32 + 4;

/// Image states reported to the application and the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageState {
    /// The new image runs once in test mode.
    Testing,
    /// The self-test confirmed the new image; it is now the active one.
    Accepted,
    /// The self-test failed or never confirmed: reverted to the old image.
    Rejected,
    /// The install never booted (the candidate failed its boot-time check).
    Aborted,
}

impl ImageState {
    fn to_u8(self) -> u8 {
        match self {
            ImageState::Testing => 1,
            ImageState::Accepted => 2,
            ImageState::Rejected => 3,
            ImageState::Aborted => 4,
        }
    }
    fn from_u8(v: u8) -> Option<ImageState> {
        Some(match v {
            1 => ImageState::Testing,
            2 => ImageState::Accepted,
            3 => ImageState::Rejected,
            4 => ImageState::Aborted,
            _ => return None,
        })
    }
}

/// An installed-but-unconfirmed image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The slot it is in.
    pub slot: Slot,
    /// Its manifest sequence number (becomes the anti-rollback counter on confirm).
    pub sequence: u64,
    /// SHA-256 of the image.
    pub image_digest: Digest,
    /// SUIT digest of its manifest (identifies the update).
    pub manifest_digest: Digest,
    /// Image size in bytes.
    pub size: u32,
}

/// Where a trial stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trial {
    /// Installed; boots in test mode at the next boot.
    Pending(Candidate),
    /// Booted once in test mode; not confirmed yet.
    Booted(Candidate),
}

/// The persisted boot state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootState {
    /// The confirmed slot.
    pub active: Slot,
    /// Anti-rollback counter: the sequence of the confirmed image.
    pub installed_sequence: u64,
    /// SHA-256 of the active image (informational).
    pub active_digest: Digest,
    /// The candidate on trial, if any.
    pub trial: Option<Trial>,
    /// Outcome of the last trial and the manifest digest it belongs to.
    pub last: Option<(ImageState, Digest)>,
}

impl Default for BootState {
    fn default() -> Self {
        Self {
            active: Slot::A,
            installed_sequence: 0,
            active_digest: [0; 32],
            trial: None,
            last: None,
        }
    }
}

/// Boot state or flash failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError<E> {
    /// The flash failed.
    Flash(E),
    /// There is no trial to confirm or reject.
    NoTrial,
    /// No valid boot-state copy, and the area is not erased: it was damaged. Never read as
    /// the factory default (that would reset the anti-rollback counter to 0).
    Corrupt,
}

impl<E: core::fmt::Display> core::fmt::Display for BootError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootError::Flash(e) => write!(f, "flash error: {e}"),
            BootError::NoTrial => f.write_str("no trial image to confirm or reject"),
            BootError::Corrupt => {
                f.write_str("the boot state is corrupt (no valid copy, area not erased)")
            }
        }
    }
}

impl<E> From<E> for BootError<E> {
    fn from(e: E) -> Self {
        BootError::Flash(e)
    }
}

fn put_candidate(w: &mut Writer<'_>, c: &Candidate) {
    w.put(&[c.slot.to_u8()]);
    w.put(&c.sequence.to_le_bytes());
    w.put(&c.image_digest);
    w.put(&c.manifest_digest);
    w.put(&c.size.to_le_bytes());
}

fn get_candidate(r: &mut Reader<'_>) -> Option<Candidate> {
    Some(Candidate {
        slot: Slot::from_u8(r.u8()?)?,
        sequence: u64::from_le_bytes(r.array()?),
        image_digest: r.array()?,
        manifest_digest: r.array()?,
        size: u32::from_le_bytes(r.array()?),
    })
}

impl BootState {
    /// The record payload (fixed length, little endian).
    pub fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        let mut w = Writer {
            buf: &mut out,
            pos: 0,
        };
        w.put(&[self.active.to_u8()]);
        w.put(&self.installed_sequence.to_le_bytes());
        w.put(&self.active_digest);
        let none = Candidate {
            slot: Slot::A,
            sequence: 0,
            image_digest: [0; 32],
            manifest_digest: [0; 32],
            size: 0,
        };
        match &self.trial {
            None => {
                w.put(&[0]);
                put_candidate(&mut w, &none);
            }
            Some(Trial::Pending(c)) => {
                w.put(&[1]);
                put_candidate(&mut w, c);
            }
            Some(Trial::Booted(c)) => {
                w.put(&[2]);
                put_candidate(&mut w, c);
            }
        }
        match &self.last {
            None => {
                w.put(&[0]);
                w.put(&[0; 32]);
            }
            Some((s, d)) => {
                w.put(&[s.to_u8()]);
                w.put(d);
            }
        }
        out
    }

    /// Decode a record payload; `None` unless it is exactly one well-formed boot state.
    pub fn decode(b: &[u8]) -> Option<BootState> {
        if b.len() != ENCODED_LEN {
            return None;
        }
        let mut r = Reader { buf: b, pos: 0 };
        let active = Slot::from_u8(r.u8()?)?;
        let installed_sequence = u64::from_le_bytes(r.array()?);
        let active_digest = r.array()?;
        let kind = r.u8()?;
        let c = get_candidate(&mut r)?;
        let trial = match kind {
            0 => None,
            1 => Some(Trial::Pending(c)),
            2 => Some(Trial::Booted(c)),
            _ => return None,
        };
        let last_kind = r.u8()?;
        let last_digest = r.array()?;
        let last = match last_kind {
            0 => None,
            k => Some((ImageState::from_u8(k)?, last_digest)),
        };
        Some(BootState {
            active,
            installed_sequence,
            active_digest,
            trial,
            last,
        })
    }

    /// Load the newest valid boot state; the factory default (slot A, counter 0) only if the
    /// area is fully erased; [`BootError::Corrupt`] if no copy is valid and it is not erased.
    pub fn load<F: NorFlash>(
        flash: &mut F,
        layout: &Layout,
    ) -> Result<BootState, BootError<F::Error>> {
        let mut buf = [0u8; ENCODED_LEN];
        match RecordStore::new(layout.boot_state, BOOT_MAGIC).read_stored(flash, &mut buf)? {
            Stored::Valid(n) => buf
                .get(..n)
                .and_then(BootState::decode)
                .ok_or(BootError::Corrupt),
            Stored::Erased => Ok(BootState::default()),
            Stored::Corrupt => Err(BootError::Corrupt),
        }
    }

    /// Persist (power-loss safe).
    pub fn store<F: NorFlash>(&self, flash: &mut F, layout: &Layout) -> Result<(), F::Error> {
        RecordStore::new(layout.boot_state, BOOT_MAGIC).write(flash, &self.encode())
    }

    /// The candidate slot (the one that is not active).
    pub fn candidate_slot(&self) -> Slot {
        self.active.other()
    }
}

/// What the bootloader decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootDecision {
    /// The slot to run.
    pub slot: Slot,
    /// Whether it runs in test mode (a trial: it must confirm itself).
    pub trial: bool,
    /// The image state this boot produced, if any (Testing, Rejected on revert, Aborted).
    pub image_state: Option<ImageState>,
}

/// SHA-256 of the first `size` bytes of a slot.
pub fn slot_digest<F: NorFlash>(
    flash: &mut F,
    layout: &Layout,
    slot: Slot,
    size: u32,
) -> Result<Digest, F::Error> {
    let region = layout.slot(slot);
    let mut h = Sha256::new();
    read_chunks(flash, region.offset, size.min(region.size), |b| h.update(b))?;
    Ok(h.finalize().into())
}

/// The boot-time slot selection (what a bootloader does before jumping to an image).
/// [`BootError::Corrupt`] if the boot state is damaged (see the module docs: fail closed).
pub fn select_boot_slot<F: NorFlash>(
    flash: &mut F,
    layout: &Layout,
) -> Result<BootDecision, BootError<F::Error>> {
    let mut st = BootState::load(flash, layout)?;
    match st.trial {
        None => Ok(BootDecision {
            slot: st.active,
            trial: false,
            image_state: None,
        }),
        Some(Trial::Pending(c)) => {
            let ok = c.slot != st.active
                && slot_digest(flash, layout, c.slot, c.size)? == c.image_digest;
            if ok {
                st.trial = Some(Trial::Booted(c));
                st.last = Some((ImageState::Testing, c.manifest_digest));
                st.store(flash, layout)?;
                Ok(BootDecision {
                    slot: c.slot,
                    trial: true,
                    image_state: Some(ImageState::Testing),
                })
            } else {
                st.trial = None;
                st.last = Some((ImageState::Aborted, c.manifest_digest));
                st.store(flash, layout)?;
                Ok(BootDecision {
                    slot: st.active,
                    trial: false,
                    image_state: Some(ImageState::Aborted),
                })
            }
        }
        Some(Trial::Booted(c)) => {
            // Ran once and never confirmed (crash, hang, cut): revert.
            st.trial = None;
            st.last = Some((ImageState::Rejected, c.manifest_digest));
            st.store(flash, layout)?;
            Ok(BootDecision {
                slot: st.active,
                trial: false,
                image_state: Some(ImageState::Rejected),
            })
        }
    }
}

/// Confirm the running trial image: it becomes active and the anti-rollback counter moves.
pub fn confirm<F: NorFlash>(
    flash: &mut F,
    layout: &Layout,
) -> Result<BootState, BootError<F::Error>> {
    let mut st = BootState::load(flash, layout)?;
    let Some(Trial::Booted(c)) = st.trial else {
        return Err(BootError::NoTrial);
    };
    st.active = c.slot;
    st.installed_sequence = st.installed_sequence.max(c.sequence);
    st.active_digest = c.image_digest;
    st.trial = None;
    st.last = Some((ImageState::Accepted, c.manifest_digest));
    st.store(flash, layout)?;
    Ok(st)
}

/// Reject the running trial image: the next boot runs the old slot again.
pub fn reject<F: NorFlash>(
    flash: &mut F,
    layout: &Layout,
) -> Result<BootState, BootError<F::Error>> {
    let mut st = BootState::load(flash, layout)?;
    let Some(Trial::Booted(c)) = st.trial else {
        return Err(BootError::NoTrial);
    };
    st.trial = None;
    st.last = Some((ImageState::Rejected, c.manifest_digest));
    st.store(flash, layout)?;
    Ok(st)
}

/// Factory provisioning: the image in `slot` is active with anti-rollback counter `sequence`.
pub fn provision<F: NorFlash>(
    flash: &mut F,
    layout: &Layout,
    slot: Slot,
    image_digest: Digest,
    sequence: u64,
) -> Result<(), F::Error> {
    BootState {
        active: slot,
        installed_sequence: sequence,
        active_digest: image_digest,
        trial: None,
        last: None,
    }
    .store(flash, layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_state_round_trips_through_its_encoding() {
        let c = Candidate {
            slot: Slot::B,
            sequence: 9,
            image_digest: [1; 32],
            manifest_digest: [2; 32],
            size: 1234,
        };
        let st = BootState {
            active: Slot::A,
            installed_sequence: 8,
            active_digest: [4; 32],
            trial: Some(Trial::Booted(c)),
            last: Some((ImageState::Testing, [2; 32])),
        };
        assert_eq!(BootState::decode(&st.encode()), Some(st));
        assert!(
            ENCODED_LEN as u32 + crate::record::HEADER_SPACE <= crate::journal::RECORD_CAPACITY
        );
    }

    #[test]
    fn an_erased_boot_state_is_the_factory_default_and_a_damaged_one_fails_closed() {
        use crate::sim::SimFlash;
        let layout = Layout::packed(4096, 1024);
        for mut f in [
            SimFlash::<1024, 4>::new(layout.end() as usize),
            SimFlash::<1024, 4>::new_write_once(layout.end() as usize, 32),
        ] {
            // Factory-fresh: slot A, counter 0.
            assert_eq!(BootState::load(&mut f, &layout), Ok(BootState::default()));
            let d = select_boot_slot(&mut f, &layout);
            assert_eq!(d.map(|d| (d.slot, d.trial)), Ok((Slot::A, false)));
            // Provisioned in slot B with counter 7, then stored again (two valid copies).
            provision(&mut f, &layout, Slot::B, [3; 32], 7).ok();
            let st = BootState::load(&mut f, &layout).ok();
            assert_eq!(
                st.map(|s| (s.active, s.installed_sequence)),
                Some((Slot::B, 7))
            );
            st.map(|s| s.store(&mut f, &layout));
            // Damage both copies: never slot A with counter 0 again.
            let copy = layout.boot_state.size / 2;
            f.corrupt(layout.boot_state.offset + 40, 0x10);
            assert_eq!(
                BootState::load(&mut f, &layout).map(|s| s.installed_sequence),
                Ok(7),
                "one damaged copy: the other one is used"
            );
            f.corrupt(layout.boot_state.offset + copy + 40, 0x10);
            assert_eq!(BootState::load(&mut f, &layout), Err(BootError::Corrupt));
            assert_eq!(select_boot_slot(&mut f, &layout), Err(BootError::Corrupt));
            assert_eq!(confirm(&mut f, &layout), Err(BootError::Corrupt));
            assert_eq!(reject(&mut f, &layout), Err(BootError::Corrupt));
            // Re-provisioning from a trusted source is the way back.
            provision(&mut f, &layout, Slot::B, [3; 32], 7).ok();
            assert_eq!(
                BootState::load(&mut f, &layout).map(|s| (s.active, s.installed_sequence)),
                Ok((Slot::B, 7))
            );
        }
    }

    #[test]
    fn a_valid_record_that_is_not_a_boot_state_fails_closed() {
        use crate::sim::SimFlash;
        let layout = Layout::packed(4096, 1024);
        let mut f = SimFlash::<1024, 4>::new(layout.end() as usize);
        let mut bad = BootState::default().encode();
        bad[0] = 9; // no such slot
        RecordStore::new(layout.boot_state, BOOT_MAGIC)
            .write(&mut f, &bad)
            .ok();
        assert_eq!(BootState::load(&mut f, &layout), Err(BootError::Corrupt));
    }

    fn slot(b: bool) -> Slot {
        if b { Slot::B } else { Slot::A }
    }

    proptest::proptest! {
        #[test]
        fn any_boot_state_round_trips_through_its_encoding(
            active: bool, seq: u64, digest: [u8; 32], kind in 0u8..3,
            c in (proptest::prelude::any::<bool>(), proptest::prelude::any::<u64>(),
                  proptest::prelude::any::<[u8; 32]>(), proptest::prelude::any::<u32>()),
            last in 0u8..5, last_digest: [u8; 32],
        ) {
            let cand = Candidate { slot: slot(c.0), sequence: c.1, image_digest: c.2, manifest_digest: digest, size: c.3 };
            let st = BootState {
                active: slot(active),
                installed_sequence: seq,
                active_digest: digest,
                trial: match kind { 0 => None, 1 => Some(Trial::Pending(cand)), _ => Some(Trial::Booted(cand)) },
                last: ImageState::from_u8(last).map(|s| (s, last_digest)),
            };
            proptest::prop_assert_eq!(BootState::decode(&st.encode()), Some(st));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics_and_what_decodes_round_trips(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)
        ) {
            if let Some(st) = BootState::decode(&bytes) {
                proptest::prop_assert_eq!(bytes.len(), ENCODED_LEN);
                proptest::prop_assert_eq!(BootState::decode(&st.encode()), Some(st));
            }
        }

        #[test]
        fn arbitrary_area_contents_load_as_a_state_or_as_corrupt_never_as_a_guess(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            use crate::sim::SimFlash;
            let layout = Layout::packed(4096, 1024);
            let mut f = SimFlash::<1024, 4>::new(layout.end() as usize);
            for (i, &b) in bytes.iter().enumerate() {
                f.corrupt(layout.boot_state.offset + i as u32, 0xFF ^ b);
            }
            let erased = bytes.iter().all(|&b| b == 0xFF);
            match BootState::load(&mut f, &layout) {
                Ok(st) if erased => proptest::prop_assert_eq!(st, BootState::default()),
                Ok(_) => {}
                Err(e) => {
                    proptest::prop_assert_eq!(e, BootError::Corrupt);
                    proptest::prop_assert!(!erased);
                }
            }
            // A record with a valid CRC whose payload is not a boot state is corrupt too.
            let mut g = SimFlash::<1024, 4>::new(layout.end() as usize);
            RecordStore::new(layout.boot_state, BOOT_MAGIC).write(&mut g, &payload).ok();
            let want = BootState::decode(&payload).ok_or(BootError::Corrupt);
            proptest::prop_assert_eq!(BootState::load(&mut g, &layout), want);
        }
    }
}
