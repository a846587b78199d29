//! The file flash backend keeps NOR semantics, so the device core's records work on it.

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use updraft_agent::flash::{FileFlash, STATE_FILE};
use updraft_device::boot::{self, BootState};
use updraft_device::journal::Journal;
use updraft_device::{Layout, Slot};

const SECTOR: u32 = 4096;

fn open(dir: &std::path::Path) -> (FileFlash, Layout) {
    let layout = Layout::packed(8 * SECTOR, SECTOR);
    let f = FileFlash::open(&layout, &dir.join("a"), &dir.join("b"), &dir.join("state")).unwrap();
    (f, layout)
}

fn read(f: &mut FileFlash, at: u32, n: usize) -> Vec<u8> {
    let mut b = vec![0; n];
    f.read(at, &mut b).unwrap();
    b
}

#[test]
fn the_address_space_maps_onto_the_two_slots_and_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let (mut f, layout) = open(dir.path());
    assert_eq!(f.capacity(), layout.end() as usize);
    f.write(layout.slot_a.offset, b"AAAA").unwrap();
    f.write(layout.slot_b.offset + 1, b"BB").unwrap();
    f.write(layout.journal.offset, b"J").unwrap();
    assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"AAAA");
    assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), b"\xffBB");
    let state = std::fs::read(dir.path().join("state").join(STATE_FILE)).unwrap();
    let at = (layout.journal.offset - layout.boot_state.offset) as usize;
    assert_eq!(state.len(), at + 1);
    assert!(
        state[..at].iter().all(|&b| b == 0xFF),
        "the gap reads erased"
    );
    assert_eq!(state[at], b'J');
}

#[test]
fn writes_only_clear_bits_and_erase_sets_ones_like_nor() {
    let dir = tempfile::tempdir().unwrap();
    let (mut f, layout) = open(dir.path());
    let b = layout.slot_b.offset;
    f.write(b, &[0b1100_1100; 3 * SECTOR as usize]).unwrap();
    f.write(b, &[0b1010_1010]).unwrap();
    assert_eq!(read(&mut f, b, 2), [0b1000_1000, 0b1100_1100]);
    // An erase in the middle writes 0xFF; an erase reaching the end truncates the file.
    f.erase(b + SECTOR, b + 2 * SECTOR).unwrap();
    assert_eq!(read(&mut f, b + SECTOR, 2), [0xFF, 0xFF]);
    assert_eq!(read(&mut f, b + 2 * SECTOR, 1), [0b1100_1100]);
    f.erase(b + 2 * SECTOR, b + 4 * SECTOR).unwrap();
    assert_eq!(
        std::fs::metadata(dir.path().join("b")).unwrap().len(),
        2 * u64::from(SECTOR)
    );
    assert_eq!(read(&mut f, b + 3 * SECTOR, 4), [0xFF; 4]);
    assert!(f.erase(b + 1, b + SECTOR).is_err(), "unaligned erase");
    assert!(
        f.read(layout.end() - 1, &mut [0; 2]).is_err(),
        "past the end"
    );
}

#[test]
fn core_records_survive_reopening_and_slots_are_never_opened_for_writing_until_written() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut f, layout) = open(dir.path());
        boot::provision(&mut f, &layout, Slot::A, [7; 32], 3).unwrap();
        assert!(!dir.path().join("a").exists() && !dir.path().join("b").exists());
    }
    let (mut f, layout) = open(dir.path());
    let st = BootState::load(&mut f, &layout).unwrap();
    assert_eq!(
        (st.active, st.installed_sequence, st.active_digest),
        (Slot::A, 3, [7; 32])
    );
    assert_eq!(
        Journal::load(&mut f, &layout).unwrap().phase,
        updraft_device::journal::Phase::None
    );
}
