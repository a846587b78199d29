//! Power-loss-safe records: two alternating copies, each `[header | payload | entries]`, where
//! the header is `magic u32 | sequence u32 | length u32 | crc32 u32` (little endian, CRC-32 over
//! sequence, length and payload).
//!
//! Every part is padded to whole [`PROGRAM_UNIT`](crate::layout::PROGRAM_UNIT)s and each unit is
//! programmed once per erase (flash with ECC words allows no second program): the header has a
//! unit of its own ([`HEADER_SPACE`]), the payload starts on the next one, and each entry is one
//! unit.
//!
//! After the payload, a copy has room for small fixed-size *entries* appended without an erase
//! ([`RecordStore::append`]): the journal uses them for the durable offset, so a block costs one
//! write instead of an erase and two writes (flash wear). Each entry must carry its own
//! validity check (the journal writes `offset | !offset`, which detects any partial program).
//! Rewriting the record erases its copy and so starts a fresh entry list. An entry slot that a
//! power cut interrupted may read as erased and still be programmed (an ECC word half written):
//! append only to a copy written since the last power-up (the core rewrites the record before
//! its first append after every start).
//!
//! A write goes to the copy that is *not* the newest valid one: erase it, write the payload,
//! then the header last. A cut anywhere leaves either the old copy (newest valid) or the new
//! one; the only valid copy is never erased. Reading picks the valid copy with the higher
//! sequence (wrapping comparison).

use embedded_storage::nor_flash::NorFlash;

use crate::layout::{Region, read_chunks, write_padded};

/// Bytes of the record header.
pub const HEADER_LEN: u32 = 16;

/// Bytes the header occupies: one program unit (the payload starts on the next unit, so the
/// header, written last, programs no unit the payload wrote).
pub const HEADER_SPACE: u32 = crate::layout::PROGRAM_UNIT as u32;

/// Bytes of an appended entry (one program unit).
pub const ENTRY_LEN: u32 = crate::layout::PROGRAM_UNIT as u32;

/// What a record area holds when no copy is valid, or the valid one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// A valid copy: its payload length.
    Valid(usize),
    /// Both copies fully erased (a factory-fresh area).
    Erased,
    /// No valid copy, and not erased: a damaged area (or one whose very first write was cut).
    Corrupt,
}

/// CRC-32 (IEEE, reflected), bitwise: small code, records are short.
#[derive(Clone, Copy)]
pub(crate) struct Crc32(u32);

impl Crc32 {
    pub(crate) fn new() -> Self {
        Crc32(0xFFFF_FFFF)
    }
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u32::from(b);
            for _ in 0..8 {
                let mask = (self.0 & 1).wrapping_neg();
                self.0 = (self.0 >> 1) ^ (0xEDB8_8320 & mask);
            }
        }
    }
    pub(crate) fn finish(self) -> u32 {
        !self.0
    }
}

/// A record area: a region split into two copies.
#[derive(Clone, Copy, Debug)]
pub struct RecordStore {
    region: Region,
    magic: u32,
}

#[derive(Clone, Copy, Debug)]
struct Found {
    copy: u32,
    seq: u32,
    len: u32,
}

impl RecordStore {
    /// A store over `region` whose records carry `magic`.
    pub fn new(region: Region, magic: u32) -> Self {
        Self { region, magic }
    }

    fn copy_size(&self) -> u32 {
        self.region.size / 2
    }

    fn copy_offset(&self, copy: u32) -> u32 {
        self.region.offset + copy * self.copy_size()
    }

    fn check_copy<F: NorFlash>(&self, flash: &mut F, copy: u32) -> Result<Option<Found>, F::Error> {
        let base = self.copy_offset(copy);
        let mut h = [0u8; HEADER_LEN as usize];
        flash.read(base, &mut h)?;
        let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let (magic, seq, len, crc) = (word(0), word(4), word(8), word(12));
        if magic != self.magic || len > self.copy_size().saturating_sub(HEADER_SPACE) {
            return Ok(None);
        }
        let mut c = Crc32::new();
        c.update(&h[4..12]);
        read_chunks(flash, base + HEADER_SPACE, len, |b| c.update(b))?;
        Ok((c.finish() == crc).then_some(Found { copy, seq, len }))
    }

    fn newest<F: NorFlash>(&self, flash: &mut F) -> Result<Option<Found>, F::Error> {
        let a = self.check_copy(flash, 0)?;
        let b = self.check_copy(flash, 1)?;
        Ok(match (a, b) {
            (Some(a), Some(b)) => {
                if (b.seq.wrapping_sub(a.seq) as i32) > 0 {
                    Some(b)
                } else {
                    Some(a)
                }
            }
            (a, b) => a.or(b),
        })
    }

    /// Read the newest valid payload into `buf`; its length, or `None` if there is no valid
    /// record (or it does not fit `buf`).
    pub fn read<F: NorFlash>(
        &self,
        flash: &mut F,
        buf: &mut [u8],
    ) -> Result<Option<usize>, F::Error> {
        let Some(found) = self.newest(flash)? else {
            return Ok(None);
        };
        let Some(dst) = buf.get_mut(..found.len as usize) else {
            return Ok(None);
        };
        flash.read(self.copy_offset(found.copy) + HEADER_SPACE, dst)?;
        Ok(Some(found.len as usize))
    }

    /// Like [`read`](Self::read), but tells an erased area from a damaged one when no copy is
    /// valid.
    pub fn read_stored<F: NorFlash>(
        &self,
        flash: &mut F,
        buf: &mut [u8],
    ) -> Result<Stored, F::Error> {
        if let Some(n) = self.read(flash, buf)? {
            return Ok(Stored::Valid(n));
        }
        let mut erased = true;
        read_chunks(flash, self.region.offset, self.region.size, |b| {
            erased &= b.iter().all(|&x| x == 0xFF);
        })?;
        Ok(if erased {
            Stored::Erased
        } else {
            Stored::Corrupt
        })
    }

    fn entries_start(&self, found: &Found) -> u32 {
        (HEADER_SPACE + found.len).div_ceil(ENTRY_LEN) * ENTRY_LEN
    }

    /// Read the newest valid payload into `buf` and hand every appended entry after it (in
    /// order, including partially written ones: the caller validates) to `on_entry`.
    pub fn read_with_entries<F: NorFlash>(
        &self,
        flash: &mut F,
        buf: &mut [u8],
        mut on_entry: impl FnMut(&[u8; ENTRY_LEN as usize]),
    ) -> Result<Option<usize>, F::Error> {
        let Some(found) = self.newest(flash)? else {
            return Ok(None);
        };
        let Some(dst) = buf.get_mut(..found.len as usize) else {
            return Ok(None);
        };
        let base = self.copy_offset(found.copy);
        flash.read(base + HEADER_SPACE, dst)?;
        let mut pos = self.entries_start(&found);
        while pos + ENTRY_LEN <= self.copy_size() {
            let mut e = [0u8; ENTRY_LEN as usize];
            flash.read(base + pos, &mut e)?;
            if e.iter().all(|&b| b == 0xFF) {
                break;
            }
            on_entry(&e);
            pos += ENTRY_LEN;
        }
        Ok(Some(found.len as usize))
    }

    /// Append an entry after the newest record, in the first erased entry slot. `Ok(false)` if
    /// there is no valid record or no room left (the caller then rewrites the record).
    pub fn append<F: NorFlash>(
        &self,
        flash: &mut F,
        entry: &[u8; ENTRY_LEN as usize],
    ) -> Result<bool, F::Error> {
        let Some(found) = self.newest(flash)? else {
            return Ok(false);
        };
        let base = self.copy_offset(found.copy);
        let mut pos = self.entries_start(&found);
        while pos + ENTRY_LEN <= self.copy_size() {
            let mut e = [0u8; ENTRY_LEN as usize];
            flash.read(base + pos, &mut e)?;
            if e.iter().all(|&b| b == 0xFF) {
                write_padded(flash, base + pos, entry)?;
                return Ok(true);
            }
            pos += ENTRY_LEN;
        }
        Ok(false)
    }

    /// Write a new record (the older copy is replaced; the newest valid one is kept until the
    /// new one is complete).
    pub fn write<F: NorFlash>(&self, flash: &mut F, payload: &[u8]) -> Result<(), F::Error> {
        let newest = self.newest(flash)?;
        let (copy, seq) = match newest {
            Some(f) => (1 - f.copy, f.seq.wrapping_add(1)),
            None => (0, 1),
        };
        let len = payload.len() as u32;
        let base = self.copy_offset(copy);
        flash.erase(base, base + self.copy_size())?;
        write_padded(flash, base + HEADER_SPACE, payload)?;
        let mut c = Crc32::new();
        c.update(&seq.to_le_bytes());
        c.update(&len.to_le_bytes());
        c.update(payload);
        let mut h = [0u8; HEADER_LEN as usize];
        h[0..4].copy_from_slice(&self.magic.to_le_bytes());
        h[4..8].copy_from_slice(&seq.to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12..16].copy_from_slice(&c.finish().to_le_bytes());
        write_padded(flash, base, &h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimFlash;

    fn store() -> RecordStore {
        RecordStore::new(
            Region {
                offset: 0,
                size: 2048,
            },
            0x5550_4452,
        )
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        let mut c = Crc32::new();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xCBF4_3926);
    }

    #[test]
    fn newest_record_wins_and_alternates_copies() {
        let mut f = SimFlash::<1024, 4>::new(4096);
        let s = store();
        let mut buf = [0u8; 64];
        assert_eq!(s.read(&mut f, &mut buf).ok(), Some(None));
        for i in 0..5u8 {
            s.write(&mut f, &[i; 10]).ok();
            assert_eq!(s.read(&mut f, &mut buf).ok(), Some(Some(10)));
            assert_eq!(buf[..10], [i; 10]);
        }
    }

    fn flashes() -> [SimFlash<1024, 4>; 3] {
        [
            SimFlash::new(4096),
            SimFlash::new_write_once(4096, 8),
            SimFlash::new_write_once(4096, 32),
        ]
    }

    #[test]
    fn power_cut_at_every_operation_of_a_record_write_keeps_the_old_record() {
        for fresh in flashes() {
            let mode = fresh.programming();
            let s = store();
            let new = b"new record, 41 bytes long, spans 2 units";
            // Count the operations of an uncut write: erase, payload, header (last).
            let mut f = fresh.clone();
            s.write(&mut f, b"old record").ok();
            let before = f.ops();
            assert_eq!(s.write(&mut f, new), Ok(()));
            let ops = f.ops() - before;
            assert_eq!(
                ops, 4,
                "{mode:?}: erase, payload head, payload tail, header"
            );
            for cut in 1..=ops {
                for seed in 1..=8u64 {
                    let mut f = fresh.clone();
                    f.seed(seed);
                    s.write(&mut f, b"old record").ok();
                    f.cut_power_at(cut);
                    assert!(s.write(&mut f, new).is_err());
                    f.reboot();
                    let mut buf = [0u8; 64];
                    let n = s.read(&mut f, &mut buf).ok().flatten();
                    assert_eq!(n, Some(10), "{mode:?} cut {cut}: the old record is kept");
                    assert_eq!(&buf[..10], b"old record");
                    if cut == ops {
                        // The cut hit the header: the new payload was already complete.
                        let base = (s.copy_size() + HEADER_SPACE) as usize;
                        assert_eq!(&f.contents()[base..base + new.len()], new);
                    }
                    // The next write goes through, on every flash mode.
                    assert_eq!(s.write(&mut f, b"third"), Ok(()), "{mode:?} cut {cut}");
                    assert_eq!(s.read(&mut f, &mut buf).ok().flatten(), Some(5));
                    assert_eq!(&buf[..5], b"third");
                    assert_eq!((f.nor_violations(), f.word_violations()), (0, 0));
                }
            }
        }
    }

    #[test]
    fn an_erased_area_is_told_from_a_damaged_one() {
        for mut f in flashes() {
            let s = store();
            let mut buf = [0u8; 64];
            assert_eq!(s.read_stored(&mut f, &mut buf), Ok(Stored::Erased));
            s.write(&mut f, b"record").ok();
            assert_eq!(s.read_stored(&mut f, &mut buf), Ok(Stored::Valid(6)));
            // One flipped payload bit invalidates the only copy.
            f.corrupt(HEADER_SPACE + 2, 0x04);
            assert_eq!(s.read_stored(&mut f, &mut buf), Ok(Stored::Corrupt));
            f.corrupt(HEADER_SPACE + 2, 0x04);
            assert_eq!(s.read_stored(&mut f, &mut buf), Ok(Stored::Valid(6)));
            // A stray programmed byte anywhere in an otherwise erased area is not "erased".
            let mut g = SimFlash::<1024, 4>::new(4096);
            g.corrupt(2047, 0x01);
            assert_eq!(s.read_stored(&mut g, &mut buf), Ok(Stored::Corrupt));
        }
    }

    #[test]
    fn every_part_of_a_copy_is_written_in_whole_units_on_write_once_flash() {
        let s = store();
        for word in [8, 16, 32] {
            let mut f = SimFlash::<1024, 4>::new_write_once(4096, word);
            for i in 0..6u8 {
                assert_eq!(s.write(&mut f, &[i; 37]), Ok(()));
                for e in 0..8u8 {
                    let mut entry = [0xFF; ENTRY_LEN as usize];
                    entry[0] = e;
                    assert_eq!(s.append(&mut f, &entry), Ok(true), "word {word}");
                }
            }
            assert_eq!(f.word_violations(), 0, "word {word}");
            let mut seen = 0;
            let mut buf = [0u8; 64];
            s.read_with_entries(&mut f, &mut buf, |e| {
                assert_eq!(e[0], seen);
                seen += 1;
            })
            .ok();
            assert_eq!(seen, 8);
            assert_eq!(buf[..37], [5; 37]);
        }
    }
}
