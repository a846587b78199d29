//! The journal decoders fed arbitrary bytes: as a record payload (`Journal::decode`), as
//! appended offset entries (`decode_offset_entry`), as the raw contents of the journal area
//! (`Journal::load`, which reads the newest valid copy and its entries), and as a payload
//! wrapped in a valid record followed by the bytes as entry slots. No panic; a decoded journal
//! encodes back to itself; the loaded offset is the last valid entry before the first erased
//! slot; what loads stores and loads back, on NOR and on write-once flash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use updraft_device::Layout;
use updraft_device::journal::{self, JOURNAL_MAGIC, Journal};
use updraft_device::record::{ENTRY_LEN, HEADER_SPACE, RecordStore};
use updraft_device::sim::SimFlash;

const ERASE: usize = 1024;

fuzz_target!(|data: &[u8]| {
    if let Some(j) = Journal::decode(data) {
        assert_eq!(
            Journal::decode(&j.encode()),
            Some(j),
            "decode/encode round trip"
        );
    }
    for chunk in data.chunks_exact(ENTRY_LEN as usize) {
        let e: &[u8; ENTRY_LEN as usize] = chunk.try_into().expect("entry-sized chunk");
        if let Some(o) = journal::decode_offset_entry(e) {
            assert!(o != 0);
        }
    }
    let layout = Layout::packed(4096, ERASE as u32);
    let region = layout.journal;
    let write_once = data.first().is_some_and(|b| b & 1 == 1);
    let fresh = || {
        if write_once {
            SimFlash::<ERASE, 4>::new_write_once(layout.end() as usize, 32)
        } else {
            SimFlash::<ERASE, 4>::new(layout.end() as usize)
        }
    };

    // 1. The bytes are the area's contents.
    let mut flash = fresh();
    for (i, &b) in data.iter().take(region.size as usize).enumerate() {
        flash.corrupt(region.offset + i as u32, 0xFF ^ b);
    }
    round_trip(&mut flash, &layout);

    // 2. A valid record of the default journal, the bytes after it as entry slots.
    let mut flash = fresh();
    let store = RecordStore::new(region, JOURNAL_MAGIC);
    let base = Journal::default();
    if store.write(&mut flash, &base.encode()).is_ok() {
        let first = (HEADER_SPACE + journal::ENCODED_LEN as u32).div_ceil(ENTRY_LEN) * ENTRY_LEN;
        let copy_end = region.offset + region.size / 2;
        let mut expected = None;
        let mut pos = region.offset + first;
        for chunk in data.chunks_exact(ENTRY_LEN as usize) {
            if pos + ENTRY_LEN > copy_end {
                break;
            }
            let e: &[u8; ENTRY_LEN as usize] = chunk.try_into().expect("entry-sized chunk");
            if e.iter().all(|&b| b == 0xFF) {
                break;
            }
            for (i, &b) in e.iter().enumerate() {
                flash.corrupt(pos + i as u32, 0xFF ^ b);
            }
            if let Some(o) = journal::decode_offset_entry(e) {
                expected = Some(o);
            }
            pos += ENTRY_LEN;
        }
        let loaded = Journal::load(&mut flash, &layout).expect("sim flash reads");
        assert_eq!(loaded.offset, expected.unwrap_or(base.offset));
        assert_eq!(loaded.phase, base.phase);
    }
});

fn round_trip(flash: &mut SimFlash<ERASE, 4>, layout: &Layout) {
    let j = Journal::load(flash, layout).expect("sim flash reads");
    assert_eq!(j.store(flash, layout), Ok(()));
    assert_eq!(Journal::load(flash, layout), Ok(j));
    assert_eq!((flash.nor_violations(), flash.word_violations()), (0, 0));
}
