//! The resume journal: which manifest is in progress, in which phase, the transport's resume
//! token (e.g. an ETag) and the durable offset (every byte before it is in the candidate slot).
//! It is rewritten after each block is written, so a cut re-downloads at most that block.
//!
//! The journal also remembers the digests of rejected manifests (never asked again) and when a
//! deferral started (Maximum Defer Period). The verified envelope itself is kept in its own
//! record area ([`EnvelopeStore`]), written once per manifest, so journal writes stay small.

use embedded_storage::nor_flash::NorFlash;
use updraft_manifest::{Digest, MAX_ENVELOPE_LEN};

use crate::layout::Layout;
use crate::record::{ENTRY_LEN, RecordStore};

/// Longest resume token kept (an ETag is at most 8 bytes in CoAP; HTTP ETags are longer).
pub const MAX_TOKEN_LEN: usize = 64;
/// How many rejected manifest digests are remembered (oldest forgotten first).
pub const REJECTED_CAPACITY: usize = 4;
/// Bytes a journal or boot-state record copy must hold (header included).
pub const RECORD_CAPACITY: u32 = 512;

/// Magic of the journal records (see [`RecordStore`]).
pub const JOURNAL_MAGIC: u32 = 0x4C4E_524A; // "JRNL"
const ENVELOPE_MAGIC: u32 = 0x4C56_4E45; // "ENVL"
/// Bytes of an encoded journal (the record payload).
pub const ENCODED_LEN: usize = 1 + 32 + 1 + MAX_TOKEN_LEN + 4 + 8 + 1 + 32 * REJECTED_CAPACITY;

/// Where the update in progress stands, as persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Nothing in progress.
    None = 0,
    /// Manifest verified, download authorization asked.
    AwaitDownloadAuth = 1,
    /// Download deferred by the application.
    DownloadDeferred = 2,
    /// Download in progress up to `offset`.
    Downloading = 3,
    /// Image complete and verified in the candidate slot.
    Downloaded = 4,
    /// Install deferred; the candidate is marked to install at the next reboot.
    InstallDeferred = 5,
}

impl Phase {
    fn from_u8(v: u8) -> Option<Phase> {
        Some(match v {
            0 => Phase::None,
            1 => Phase::AwaitDownloadAuth,
            2 => Phase::DownloadDeferred,
            3 => Phase::Downloading,
            4 => Phase::Downloaded,
            5 => Phase::InstallDeferred,
            _ => return None,
        })
    }
}

/// A bounded resume token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    len: u8,
    bytes: [u8; MAX_TOKEN_LEN],
}

impl Default for Token {
    fn default() -> Self {
        Self {
            len: 0,
            bytes: [0; MAX_TOKEN_LEN],
        }
    }
}

impl Token {
    /// A token from transport bytes; `None` if longer than [`MAX_TOKEN_LEN`].
    pub fn new(bytes: &[u8]) -> Option<Token> {
        let mut t = Token::default();
        t.bytes.get_mut(..bytes.len())?.copy_from_slice(bytes);
        t.len = bytes.len() as u8;
        Some(t)
    }

    /// The token bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

/// The persisted journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Journal {
    /// Phase of the update in progress.
    pub phase: Phase,
    /// SUIT digest of the manifest in progress.
    pub manifest_digest: Digest,
    /// Transport resume token of the download.
    pub token: Token,
    /// Bytes durably written to the candidate slot.
    pub offset: u32,
    /// When the current deferral started (event time), if any.
    pub deferred_since: Option<u64>,
    rejected_next: u8,
    rejected: [Digest; REJECTED_CAPACITY],
}

impl Default for Journal {
    fn default() -> Self {
        Self {
            phase: Phase::None,
            manifest_digest: [0; 32],
            token: Token::default(),
            offset: 0,
            deferred_since: None,
            rejected_next: 0,
            rejected: [[0; 32]; REJECTED_CAPACITY],
        }
    }
}

impl Journal {
    /// Forget the update in progress (keeps the rejected list).
    pub fn clear(&mut self) {
        *self = Journal {
            rejected_next: self.rejected_next,
            rejected: self.rejected,
            ..Journal::default()
        };
    }

    /// Remember a rejected manifest.
    pub fn reject(&mut self, digest: Digest) {
        let i = usize::from(self.rejected_next) % REJECTED_CAPACITY;
        if let Some(slot) = self.rejected.get_mut(i) {
            *slot = digest;
        }
        self.rejected_next = ((i + 1) % REJECTED_CAPACITY) as u8;
    }

    /// Whether a manifest was rejected before.
    pub fn is_rejected(&self, digest: &Digest) -> bool {
        digest != &[0; 32] && self.rejected.iter().any(|d| d == digest)
    }

    /// The record payload (fixed length, little endian).
    pub fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        let mut w = Writer {
            buf: &mut out,
            pos: 0,
        };
        w.put(&[self.phase as u8]);
        w.put(&self.manifest_digest);
        w.put(&[self.token.len]);
        w.put(&self.token.bytes);
        w.put(&self.offset.to_le_bytes());
        w.put(&self.deferred_since.unwrap_or(u64::MAX).to_le_bytes());
        w.put(&[self.rejected_next]);
        for d in &self.rejected {
            w.put(d);
        }
        out
    }

    /// Decode a record payload; `None` unless it is exactly one well-formed journal.
    pub fn decode(b: &[u8]) -> Option<Journal> {
        if b.len() != ENCODED_LEN {
            return None;
        }
        let mut r = Reader { buf: b, pos: 0 };
        let phase = Phase::from_u8(r.u8()?)?;
        let manifest_digest = r.array::<32>()?;
        let len = r.u8()?;
        let bytes = r.array::<MAX_TOKEN_LEN>()?;
        if usize::from(len) > MAX_TOKEN_LEN {
            return None;
        }
        let offset = u32::from_le_bytes(r.array()?);
        let since = u64::from_le_bytes(r.array()?);
        let rejected_next = r.u8()?;
        let mut rejected = [[0; 32]; REJECTED_CAPACITY];
        for d in &mut rejected {
            *d = r.array()?;
        }
        Some(Journal {
            phase,
            manifest_digest,
            token: Token { len, bytes },
            offset,
            deferred_since: (since != u64::MAX).then_some(since),
            rejected_next,
            rejected,
        })
    }

    /// Load the newest valid journal (with the last valid appended offset); an empty one if
    /// there is none.
    pub fn load<F: NorFlash>(flash: &mut F, layout: &Layout) -> Result<Journal, F::Error> {
        let mut buf = [0u8; ENCODED_LEN];
        let mut offset = None;
        let n = RecordStore::new(layout.journal, JOURNAL_MAGIC).read_with_entries(
            flash,
            &mut buf,
            |e| {
                if let Some(o) = decode_offset_entry(e) {
                    offset = Some(o);
                }
            },
        )?;
        let mut j = n
            .and_then(|n| buf.get(..n))
            .and_then(Journal::decode)
            .unwrap_or_default();
        if let Some(o) = offset {
            j.offset = o;
        }
        Ok(j)
    }

    /// Persist only a new durable offset, as an appended entry (one write, no erase).
    /// `Ok(false)`: no room; call [`store`](Self::store) instead.
    pub fn append_offset<F: NorFlash>(
        &self,
        flash: &mut F,
        layout: &Layout,
    ) -> Result<bool, F::Error> {
        if self.offset == 0 {
            return Ok(false);
        }
        let mut e = [0xFFu8; ENTRY_LEN as usize];
        e[0..4].copy_from_slice(&self.offset.to_le_bytes());
        e[4..8].copy_from_slice(&(!self.offset).to_le_bytes());
        RecordStore::new(layout.journal, JOURNAL_MAGIC).append(flash, &e)
    }

    /// Persist (power-loss safe).
    pub fn store<F: NorFlash>(&self, flash: &mut F, layout: &Layout) -> Result<(), F::Error> {
        RecordStore::new(layout.journal, JOURNAL_MAGIC).write(flash, &self.encode())
    }
}

/// Decode an appended offset entry: `offset | !offset` (little endian), offset non-zero, the
/// rest of the unit erased. Under NOR programming (bits only go 1 -> 0), any partially written
/// entry fails this check.
pub fn decode_offset_entry(e: &[u8; ENTRY_LEN as usize]) -> Option<u32> {
    if e.get(8..)
        .is_some_and(|rest| rest.iter().any(|&b| b != 0xFF))
    {
        return None;
    }
    let a = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
    let b = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
    (a != 0 && a == !b).then_some(a)
}

/// The persisted manifest envelope (needed to resume or install after a reboot).
pub struct EnvelopeStore;

impl EnvelopeStore {
    /// Persist an envelope.
    pub fn store<F: NorFlash>(
        flash: &mut F,
        layout: &Layout,
        envelope: &[u8],
    ) -> Result<(), F::Error> {
        RecordStore::new(layout.envelope, ENVELOPE_MAGIC).write(flash, envelope)
    }

    /// Load the persisted envelope into `buf`; its length.
    pub fn load<F: NorFlash>(
        flash: &mut F,
        layout: &Layout,
        buf: &mut [u8; MAX_ENVELOPE_LEN],
    ) -> Result<Option<usize>, F::Error> {
        RecordStore::new(layout.envelope, ENVELOPE_MAGIC).read(flash, buf)
    }
}

pub(crate) struct Writer<'b> {
    pub(crate) buf: &'b mut [u8],
    pub(crate) pos: usize,
}

impl Writer<'_> {
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.pos..self.pos + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        self.pos += bytes.len();
    }
}

pub(crate) struct Reader<'b> {
    pub(crate) buf: &'b [u8],
    pub(crate) pos: usize,
}

impl Reader<'_> {
    pub(crate) fn u8(&mut self) -> Option<u8> {
        let [b] = self.array::<1>()?;
        Some(b)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(N)?)?;
        self.pos += N;
        s.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_round_trips_through_its_encoding() {
        let mut j = Journal {
            phase: Phase::Downloading,
            manifest_digest: [3; 32],
            token: Token::new(b"etag-1").unwrap_or_default(),
            offset: 4096,
            deferred_since: Some(77),
            ..Journal::default()
        };
        j.reject([9; 32]);
        assert_eq!(Journal::decode(&j.encode()), Some(j));
        assert!(ENCODED_LEN as u32 + crate::record::HEADER_SPACE <= RECORD_CAPACITY);
    }

    #[test]
    fn appended_offsets_win_and_a_cut_entry_keeps_the_previous_or_the_new_offset() {
        use crate::sim::SimFlash;
        let layout = Layout::packed(4096, 1024);
        let mut kept_previous = 0;
        for seed in 0..32u64 {
            let mut f = SimFlash::<1024, 4>::new(layout.end() as usize);
            f.seed(seed * 7919 + 1);
            let mut j = Journal {
                phase: Phase::Downloading,
                offset: 0,
                ..Journal::default()
            };
            assert_eq!(j.store(&mut f, &layout), Ok(()));
            j.offset = 512;
            assert_eq!(j.append_offset(&mut f, &layout), Ok(true));
            j.offset = 1024;
            f.cut_power_at(1);
            assert!(j.append_offset(&mut f, &layout).is_err());
            f.reboot();
            let loaded = Journal::load(&mut f, &layout).map(|j| j.offset);
            assert!(loaded == Ok(512) || loaded == Ok(1024), "{loaded:?}");
            kept_previous += usize::from(loaded == Ok(512));
            // The next append goes after the cut entry, and wins.
            j.offset = 1536;
            assert_eq!(j.append_offset(&mut f, &layout), Ok(true));
            assert_eq!(Journal::load(&mut f, &layout).map(|j| j.offset), Ok(1536));
        }
        assert!(kept_previous > 0);
    }

    #[test]
    fn a_full_entry_area_asks_for_a_record_rewrite() {
        use crate::sim::SimFlash;
        let layout = Layout::packed(4096, 1024);
        let mut f = SimFlash::<1024, 4>::new(layout.end() as usize);
        let mut j = Journal {
            phase: Phase::Downloading,
            ..Journal::default()
        };
        j.store(&mut f, &layout).ok();
        let mut appended = 0;
        loop {
            j.offset += 1;
            match j.append_offset(&mut f, &layout) {
                Ok(true) => appended += 1,
                _ => break,
            }
        }
        assert!(appended > 10);
        j.store(&mut f, &layout).ok();
        assert_eq!(
            Journal::load(&mut f, &layout).map(|l| l.offset),
            Ok(j.offset)
        );
    }

    #[test]
    fn rejected_list_forgets_oldest_and_survives_clear() {
        let mut j = Journal::default();
        for i in 1..=5u8 {
            j.reject([i; 32]);
        }
        assert!(!j.is_rejected(&[1; 32]));
        assert!(j.is_rejected(&[5; 32]));
        j.clear();
        assert!(j.is_rejected(&[2; 32]));
        assert!(Token::new(&[0; 65]).is_none());
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics_and_what_decodes_round_trips(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)
        ) {
            if let Some(j) = Journal::decode(&bytes) {
                proptest::prop_assert_eq!(bytes.len(), ENCODED_LEN);
                proptest::prop_assert_eq!(Journal::decode(&j.encode()), Some(j));
            }
        }

        #[test]
        fn offset_entries_decode_only_when_whole(
            offset in 1u32.., cut in 0usize..ENTRY_LEN as usize, noise: u8
        ) {
            let mut e = [0xFFu8; ENTRY_LEN as usize];
            e[0..4].copy_from_slice(&offset.to_le_bytes());
            e[4..8].copy_from_slice(&(!offset).to_le_bytes());
            proptest::prop_assert_eq!(decode_offset_entry(&e), Some(offset));
            // What a cut leaves: a programmed prefix, then a byte with only some bits cleared.
            let mut partial = [0xFFu8; ENTRY_LEN as usize];
            partial[..cut].copy_from_slice(&e[..cut]);
            partial[cut] = e[cut] | noise;
            if partial != e {
                proptest::prop_assert_eq!(decode_offset_entry(&partial), None);
            }
        }

        #[test]
        fn arbitrary_area_contents_load_without_panicking_and_store_back(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
        ) {
            use crate::sim::SimFlash;
            let layout = Layout::packed(4096, 1024);
            let mut f = SimFlash::<1024, 4>::new_write_once(layout.end() as usize, 32);
            for (i, &b) in bytes.iter().enumerate() {
                f.corrupt(layout.journal.offset + i as u32, 0xFF ^ b);
            }
            let j = Journal::load(&mut f, &layout);
            proptest::prop_assert!(j.is_ok());
            let j = j.unwrap_or_default();
            proptest::prop_assert_eq!(j.store(&mut f, &layout), Ok(()));
            proptest::prop_assert_eq!(Journal::load(&mut f, &layout), Ok(j));
        }
    }
}
