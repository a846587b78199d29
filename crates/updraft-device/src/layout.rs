//! Flash layout: two image slots and three record areas, plus the few flash helpers every
//! writer shares (padded writes, chunked reads).
//!
//! ```text
//! | slot A | slot B | boot state (2 copies) | journal (2 copies) | envelope (2 copies) |
//! ```
//! Every region starts and ends on an erase-sector boundary, so erasing one never touches
//! another: the boot state and the resume journal live in different sectors.
//!
//! # Program units
//!
//! Many microcontroller flashes (STM32L4/G4/H7/U5, nRF parts with ECC) allow one program per
//! flash word (8 to 32 bytes) per erase, and the `embedded-storage` `NorFlash` contract forbids
//! writing a word twice unless the driver is a `MultiwriteNorFlash`. The core therefore writes
//! the flash in aligned [`PROGRAM_UNIT`]-byte units (32 bytes, the largest word in use), each
//! unit in one write call and at most once between two erases of its sector, whatever
//! `WRITE_SIZE` the driver declares: records pad their header and payload to whole units,
//! journal entries are one unit each, image bytes are written in whole units. The one place
//! where this costs something is the resume of an interrupted download (see
//! [`Layout::multiwrite`]).

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};

/// A byte range of the flash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub offset: u32,
    /// Length in bytes.
    pub size: u32,
}

impl Region {
    /// One past the last byte.
    pub fn end(&self) -> u32 {
        self.offset.saturating_add(self.size)
    }

    fn overlaps(&self, other: &Region) -> bool {
        self.offset < other.end() && other.offset < self.end()
    }
}

/// One of the two image slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Slot A.
    A,
    /// Slot B.
    B,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Option<Slot> {
        match v {
            0 => Some(Slot::A),
            1 => Some(Slot::B),
            _ => None,
        }
    }
}

/// Where everything lives on the flash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Slot A.
    pub slot_a: Region,
    /// Slot B.
    pub slot_b: Region,
    /// Boot state: two alternating copies (first half, second half).
    pub boot_state: Region,
    /// Resume journal: two alternating copies.
    pub journal: Region,
    /// The persisted manifest envelope: two alternating copies.
    pub envelope: Region,
    /// Whether the flash may program a word again without an erase (bits only go 1 -> 0, the
    /// `embedded-storage` `MultiwriteNorFlash` property: plain NOR, the agent's file flash).
    /// `false` ([`Layout::packed`]'s default, right for every flash): an interrupted download
    /// resumes from the start of the sector holding the durable offset (the words after that
    /// offset may have been programmed, or half programmed, by the write the cut interrupted),
    /// so it downloads again up to one sector plus one block (one block when the block size is a
    /// multiple of the sector size). `true`: it resumes at the durable offset and downloads at
    /// most one block again, rewriting the interrupted words with the same bytes.
    pub multiwrite: bool,
}

/// Why a layout does not fit the flash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// A region is not aligned to the erase size, or a record region is not two whole copies.
    NotAligned,
    /// Regions overlap or pass the end of the flash.
    Overlap,
    /// A record copy is too small for its record (the envelope needs `MAX_ENVELOPE_LEN` + 16).
    TooSmall,
    /// The flash write granularity is not a divisor of [`PROGRAM_UNIT`] bytes, or the erase
    /// size not a multiple of it.
    UnsupportedWriteSize,
}

/// The unit the core programs flash in (aligned, whole, at most once per erase): 32 bytes, the
/// largest flash word of the microcontrollers in use (STM32H7), a multiple of every smaller one.
pub const PROGRAM_UNIT: usize = 32;

/// Largest write granularity supported (the program unit).
pub const MAX_WRITE_SIZE: usize = PROGRAM_UNIT;

impl Layout {
    /// A layout that packs two slots of `slot_size` bytes and the record areas from offset 0;
    /// `sector` is the erase size. Record copies are rounded up to whole sectors.
    pub fn packed(slot_size: u32, sector: u32) -> Layout {
        let round = |n: u32| n.div_ceil(sector) * sector;
        let small = round(crate::journal::RECORD_CAPACITY);
        let env = round(updraft_manifest::MAX_ENVELOPE_LEN as u32 + crate::record::HEADER_SPACE);
        let slot_a = Region {
            offset: 0,
            size: slot_size,
        };
        let slot_b = Region {
            offset: slot_size,
            size: slot_size,
        };
        let boot_state = Region {
            offset: 2 * slot_size,
            size: 2 * small,
        };
        let journal = Region {
            offset: boot_state.end(),
            size: 2 * small,
        };
        let envelope = Region {
            offset: journal.end(),
            size: 2 * env,
        };
        Layout {
            slot_a,
            slot_b,
            boot_state,
            journal,
            envelope,
            multiwrite: false,
        }
    }

    /// One past the last byte used.
    pub fn end(&self) -> u32 {
        self.envelope.end()
    }

    /// The region of a slot.
    pub fn slot(&self, slot: Slot) -> Region {
        match slot {
            Slot::A => self.slot_a,
            Slot::B => self.slot_b,
        }
    }

    /// Check the layout against a flash of this type and capacity.
    pub fn check<F: NorFlash>(&self, capacity: usize) -> Result<(), LayoutError> {
        let erase = F::ERASE_SIZE as u32;
        if F::WRITE_SIZE == 0
            || F::WRITE_SIZE > MAX_WRITE_SIZE
            || !MAX_WRITE_SIZE.is_multiple_of(F::WRITE_SIZE)
            || !F::ERASE_SIZE.is_multiple_of(PROGRAM_UNIT)
        {
            return Err(LayoutError::UnsupportedWriteSize);
        }
        let all = [
            self.slot_a,
            self.slot_b,
            self.boot_state,
            self.journal,
            self.envelope,
        ];
        for r in &all {
            if erase == 0 || r.offset % erase != 0 || r.size % erase != 0 || r.size == 0 {
                return Err(LayoutError::NotAligned);
            }
            if r.end() as usize > capacity || r.offset.checked_add(r.size).is_none() {
                return Err(LayoutError::Overlap);
            }
        }
        for r in &all[2..] {
            if (r.size / 2) % erase != 0 {
                return Err(LayoutError::NotAligned);
            }
        }
        for (i, a) in all.iter().enumerate() {
            for b in all.iter().skip(i + 1) {
                if a.overlaps(b) {
                    return Err(LayoutError::Overlap);
                }
            }
        }
        let copy = |r: &Region| r.size / 2;
        if copy(&self.envelope)
            < updraft_manifest::MAX_ENVELOPE_LEN as u32 + crate::record::HEADER_SPACE
            || copy(&self.journal) < crate::journal::RECORD_CAPACITY
            || copy(&self.boot_state) < crate::journal::RECORD_CAPACITY
        {
            return Err(LayoutError::TooSmall);
        }
        Ok(())
    }
}

/// Write `data` at an offset aligned to [`PROGRAM_UNIT`], padded with 0xFF to whole units: the
/// aligned head in one write, the last partial unit padded in a second one, so no unit is
/// programmed twice. The layout check guarantees `F::WRITE_SIZE` divides the unit.
pub(crate) fn write_padded<F: NorFlash>(
    flash: &mut F,
    offset: u32,
    data: &[u8],
) -> Result<(), F::Error> {
    let w = PROGRAM_UNIT;
    let aligned = data.len() - data.len() % w;
    let (head, tail) = data.split_at(aligned);
    if !head.is_empty() {
        flash.write(offset, head)?;
    }
    if !tail.is_empty() {
        let mut buf = [0xFFu8; MAX_WRITE_SIZE];
        if let Some(dst) = buf.get_mut(..tail.len()) {
            dst.copy_from_slice(tail);
        }
        flash.write(offset + aligned as u32, buf.get(..w).unwrap_or(&[]))?;
    }
    Ok(())
}

/// Feed `len` bytes of flash from `offset` to `f`, in small chunks (no large buffer).
pub(crate) fn read_chunks<F: ReadNorFlash>(
    flash: &mut F,
    offset: u32,
    len: u32,
    mut f: impl FnMut(&[u8]),
) -> Result<(), F::Error> {
    let mut buf = [0u8; 64];
    let mut done = 0u32;
    while done < len {
        let n = (len - done).min(buf.len() as u32);
        let chunk = &mut buf[..n as usize];
        flash.read(offset + done, chunk)?;
        f(chunk);
        done += n;
    }
    Ok(())
}
