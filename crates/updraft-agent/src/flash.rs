//! The device core's flash, on Linux files: [`FileFlash`] implements `embedded-storage`'s
//! [`NorFlash`] over the two slot paths and a state file.
//!
//! The core's [`Layout`] address space is cut in three:
//!
//! ```text
//! | slot A (slot_size) | slot B (slot_size) | boot state | journal | envelope |
//!   slot_a path          slot_b path          <state_dir>/flash-state.bin
//! ```
//!
//! # What the core expects, and how files give it
//!
//! * **NOR semantics.** Erase sets a sector to 0xFF; a write can only clear bits. The file
//!   backend writes `old & new` (read, AND, `pwrite`), so a file behaves exactly like the NOR the
//!   core's records were designed and power-cut tested on (`sim`). Bytes past the end of a file
//!   read as 0xFF (erased); erasing a range that reaches the end of a regular file truncates it
//!   there instead of writing 0xFF, so a slot file holds exactly the image bytes (a script stays a
//!   script) and a 64 MiB slot costs only what it holds. A write past the end fills the gap
//!   with 0xFF (never a zero-filled hole).
//! * **Write-through.** Every `write`/`erase` is a `pwrite`/`ftruncate` at once (no cache in the
//!   agent), so a SIGKILL loses nothing the core has been told is written.
//! * **Order survives power loss.** The core's safety rests on the order of its writes: image
//!   bytes before the journal entry that covers them; a record's payload and header before the
//!   next record write erases the other copy. So before any write or erase of the state file, the
//!   slot files written since are `fdatasync`ed, and after it the state file is `fdatasync`ed:
//!   every state-file operation is durable, in order, and after the image data it vouches for.
//! * **The running image is never opened for writing.** Slots are opened read-only; a slot is
//!   opened for writing only when the core first writes or erases it, which is only ever the
//!   candidate (an executable image that is running would fail with "text file busy").

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use updraft_device::Layout;

use crate::config::SECTOR;

/// The file under the state directory that holds the record regions.
pub const STATE_FILE: &str = "flash-state.bin";

/// A flash failure: the I/O error and where it happened.
#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    /// Outside the layout.
    #[error("flash access at {offset:#x} (+{len}) is outside the layout")]
    OutOfBounds {
        /// Address.
        offset: u32,
        /// Length.
        len: usize,
    },
    /// An erase not on sector boundaries.
    #[error("erase {from:#x}..{to:#x} is not sector aligned")]
    NotAligned {
        /// Start.
        from: u32,
        /// End.
        to: u32,
    },
    /// The file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            FlashError::OutOfBounds { .. } => NorFlashErrorKind::OutOfBounds,
            FlashError::NotAligned { .. } => NorFlashErrorKind::NotAligned,
            FlashError::Io { .. } => NorFlashErrorKind::Other,
        }
    }
}

/// The size of a block device, or `None` for anything else.
pub fn block_device_size(path: &Path) -> Option<u64> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.file_type().is_block_device() {
        return None;
    }
    let f = File::open(path).ok()?;
    use std::io::Seek;
    (&f).seek(io::SeekFrom::End(0)).ok()
}

/// One file backing a region of the address space.
#[derive(Debug)]
struct Backing {
    path: PathBuf,
    /// First address of the region.
    start: u32,
    /// Region length.
    size: u32,
    read: Option<File>,
    write: Option<File>,
    /// Written since the last `fdatasync`.
    dirty: bool,
    /// Records: synced after every operation.
    state: bool,
}

impl Backing {
    fn new(path: PathBuf, start: u32, size: u32, state: bool) -> Self {
        Backing {
            path,
            start,
            size,
            read: None,
            write: None,
            dirty: false,
            state,
        }
    }

    fn io(&self, source: io::Error) -> FlashError {
        FlashError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn reader(&mut self) -> Result<Option<&File>, FlashError> {
        if self.write.is_some() {
            return Ok(self.write.as_ref());
        }
        if self.read.is_none() {
            match File::open(&self.path) {
                Ok(f) => self.read = Some(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(self.read.as_ref())
    }

    fn writer(&mut self) -> Result<&File, FlashError> {
        if self.write.is_none() {
            // 0755: a slot may hold an executable image (see the crate docs).
            let mode = if self.state { 0o644 } else { 0o755 };
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(mode)
                .open(&self.path)
                .map_err(|e| self.io(e))?;
            self.read = None;
            self.write = Some(f);
        }
        match self.write.as_ref() {
            Some(f) => Ok(f),
            None => Err(self.io(io::Error::other("file not open"))),
        }
    }

    fn len(&mut self) -> Result<(u64, bool), FlashError> {
        let Some(f) = self.reader()? else {
            return Ok((0, false));
        };
        let meta = f.metadata().map_err(|e| self.io(e))?;
        if meta.file_type().is_block_device() {
            Ok((u64::MAX, true))
        } else {
            Ok((meta.len(), false))
        }
    }

    /// Read `buf` at region-relative `pos`; bytes past the end of the file read as 0xFF.
    fn read(&mut self, pos: u64, buf: &mut [u8]) -> Result<(), FlashError> {
        buf.fill(0xFF);
        let Some(f) = self.reader()? else {
            return Ok(());
        };
        let mut done = 0;
        while done < buf.len() {
            let Some(rest) = buf.get_mut(done..) else {
                break;
            };
            match f.read_at(rest, pos + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        if let Some(rest) = buf.get_mut(done..) {
            rest.fill(0xFF);
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), FlashError> {
        if self.dirty
            && let Some(f) = &self.write
        {
            f.sync_data().map_err(|e| FlashError::Io {
                path: self.path.clone(),
                source: e,
            })?;
        }
        self.dirty = false;
        Ok(())
    }

    /// NOR write: the bytes become `old & data`.
    fn write(&mut self, pos: u64, data: &[u8]) -> Result<(), FlashError> {
        let mut merged = vec![0xFF; data.len()];
        self.read(pos, &mut merged)?;
        for (m, d) in merged.iter_mut().zip(data) {
            *m &= *d;
        }
        let (len, device) = self.len()?;
        let f = self.writer()?;
        let mut r = Ok(());
        if !device && pos > len {
            // Bytes between the end of the file and `pos` are erased: 0xFF, not a zero hole.
            let ones = vec![0xFF; 64 * 1024];
            let mut at = len;
            while at < pos && r.is_ok() {
                let n = (pos - at).min(ones.len() as u64) as usize;
                r = f.write_all_at(ones.get(..n).unwrap_or(&[]), at);
                at += n as u64;
            }
        }
        let r = r.and_then(|()| f.write_all_at(&merged, pos));
        r.map_err(|e| self.io(e))?;
        self.dirty = true;
        Ok(())
    }

    fn erase(&mut self, from: u64, to: u64) -> Result<(), FlashError> {
        let (len, device) = self.len()?;
        if from >= len {
            return Ok(()); // already erased: past the end of the file
        }
        let f = self.writer()?;
        let r = if !device && to >= len {
            f.set_len(from)
        } else {
            let ones = vec![0xFF; (to.min(len) - from) as usize];
            f.write_all_at(&ones, from)
        };
        r.map_err(|e| self.io(e))?;
        self.dirty = true;
        Ok(())
    }
}

/// `NorFlash` over slot files and a state file; see the module docs.
#[derive(Debug)]
pub struct FileFlash {
    files: [Backing; 3],
    capacity: u32,
}

impl FileFlash {
    /// The flash for `layout` (from [`Layout::packed`] with `SECTOR`): slot A and B at their
    /// paths, the record regions in `state_dir/flash-state.bin`. Creates `state_dir`.
    pub fn open(
        layout: &Layout,
        slot_a: &Path,
        slot_b: &Path,
        state_dir: &Path,
    ) -> Result<Self, FlashError> {
        std::fs::create_dir_all(state_dir).map_err(|e| FlashError::Io {
            path: state_dir.to_path_buf(),
            source: e,
        })?;
        let records = layout.boot_state.offset;
        Ok(FileFlash {
            files: [
                Backing::new(
                    slot_a.to_path_buf(),
                    layout.slot_a.offset,
                    layout.slot_a.size,
                    false,
                ),
                Backing::new(
                    slot_b.to_path_buf(),
                    layout.slot_b.offset,
                    layout.slot_b.size,
                    false,
                ),
                Backing::new(
                    state_dir.join(STATE_FILE),
                    records,
                    layout.end() - records,
                    true,
                ),
            ],
            capacity: layout.end(),
        })
    }

    /// Split `[offset, offset+len)` over the backing files: `(file index, file position,
    /// range in the caller's buffer)`.
    fn pieces(
        &self,
        offset: u32,
        len: usize,
    ) -> Result<Vec<(usize, u64, std::ops::Range<usize>)>, FlashError> {
        let end = u64::from(offset) + len as u64;
        if end > u64::from(self.capacity) {
            return Err(FlashError::OutOfBounds { offset, len });
        }
        let mut out = Vec::new();
        for (i, b) in self.files.iter().enumerate() {
            let (bs, be) = (u64::from(b.start), u64::from(b.start) + u64::from(b.size));
            let (s, e) = (u64::from(offset).max(bs), end.min(be));
            if s < e {
                let buf = (s - u64::from(offset)) as usize..(e - u64::from(offset)) as usize;
                out.push((i, s - bs, buf));
            }
        }
        Ok(out)
    }

    /// Before touching the state file: make the slot writes durable first.
    fn before(&mut self, file: usize) -> Result<(), FlashError> {
        if self.files.get(file).is_some_and(|b| b.state) {
            for b in self.files.iter_mut().filter(|b| !b.state) {
                b.sync()?;
            }
        }
        Ok(())
    }

    fn after(&mut self, file: usize) -> Result<(), FlashError> {
        match self.files.get_mut(file) {
            Some(b) if b.state => b.sync(),
            _ => Ok(()),
        }
    }
}

impl ErrorType for FileFlash {
    type Error = FlashError;
}

impl ReadNorFlash for FileFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        for (i, pos, range) in self.pieces(offset, bytes.len())? {
            if let (Some(b), Some(buf)) = (self.files.get_mut(i), bytes.get_mut(range)) {
                b.read(pos, buf)?;
            }
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.capacity as usize
    }
}

impl NorFlash for FileFlash {
    // Byte-granular writes keep a slot file exactly as long as its image.
    const WRITE_SIZE: usize = 1;
    const ERASE_SIZE: usize = SECTOR as usize;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        if from > to || !from.is_multiple_of(SECTOR) || !to.is_multiple_of(SECTOR) {
            return Err(FlashError::NotAligned { from, to });
        }
        for (i, pos, range) in self.pieces(from, (to - from) as usize)? {
            self.before(i)?;
            if let Some(b) = self.files.get_mut(i) {
                b.erase(pos, pos + range.len() as u64)?;
            }
            self.after(i)?;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        for (i, pos, range) in self.pieces(offset, bytes.len())? {
            self.before(i)?;
            if let (Some(b), Some(data)) = (self.files.get_mut(i), bytes.get(range)) {
                b.write(pos, data)?;
            }
            self.after(i)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flash(dir: &Path) -> (FileFlash, Layout) {
        let layout = Layout::packed(4 * SECTOR, SECTOR);
        let f = FileFlash::open(&layout, &dir.join("a"), &dir.join("b"), &dir.join("state"));
        (f.unwrap(), layout)
    }

    #[test]
    fn missing_files_read_as_erased_and_writes_are_nor_and() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, layout) = flash(dir.path());
        let mut b = [0u8; 8];
        f.read(layout.slot_b.offset, &mut b).unwrap();
        assert_eq!(b, [0xFF; 8]);
        f.write(layout.slot_b.offset + 2, &[0x0F, 0xF0]).unwrap();
        f.write(layout.slot_b.offset + 2, &[0xF3, 0x3F]).unwrap();
        f.read(layout.slot_b.offset, &mut b).unwrap();
        assert_eq!(b, [0xFF, 0xFF, 0x03, 0x30, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap().len(), 4);
    }
}
