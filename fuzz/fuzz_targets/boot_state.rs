//! The boot-state decoders fed arbitrary bytes, three ways: as a record payload
//! (`BootState::decode`), as the raw contents of the boot-state area (header, CRC, two copies:
//! `BootState::load` and the bootloader's `select_boot_slot`), and as a payload wrapped in a
//! record with a valid CRC (what a fuzzer cannot forge). Whatever the bytes: no panic; a decoded
//! state encodes back to itself; an area is the factory default only when erased, corrupt
//! otherwise (never a silent fallback to slot A with counter 0); what loads stores and loads
//! back unchanged, on NOR and on write-once flash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use updraft_device::Layout;
use updraft_device::boot::{self, BOOT_MAGIC, BootError, BootState};
use updraft_device::record::RecordStore;
use updraft_device::sim::SimFlash;

const ERASE: usize = 1024;

fuzz_target!(|data: &[u8]| {
    if let Some(st) = BootState::decode(data) {
        assert_eq!(
            BootState::decode(&st.encode()),
            Some(st),
            "decode/encode round trip"
        );
    }
    let layout = Layout::packed(4096, ERASE as u32);
    let region = layout.boot_state;
    let write_once = data.first().is_some_and(|b| b & 1 == 1);
    let fresh = || {
        if write_once {
            SimFlash::<ERASE, 4>::new_write_once(layout.end() as usize, 32)
        } else {
            SimFlash::<ERASE, 4>::new(layout.end() as usize)
        }
    };

    // 1. The bytes are the area's contents (the rest stays erased).
    let mut flash = fresh();
    for (i, &b) in data.iter().take(region.size as usize).enumerate() {
        flash.corrupt(region.offset + i as u32, 0xFF ^ b);
    }
    let erased = data.iter().take(region.size as usize).all(|&b| b == 0xFF);
    check(&mut flash, &layout, erased);

    // 2. The bytes are the payload of a record with a valid header and CRC.
    let mut flash = fresh();
    let payload = &data[..data.len().min(256)];
    if RecordStore::new(region, BOOT_MAGIC)
        .write(&mut flash, payload)
        .is_ok()
    {
        let loaded = BootState::load(&mut flash, &layout);
        match BootState::decode(payload) {
            Some(st) => assert_eq!(loaded, Ok(st)),
            None => assert_eq!(loaded, Err(BootError::Corrupt)),
        }
        check(&mut flash, &layout, false);
    }
});

fn check(flash: &mut SimFlash<ERASE, 4>, layout: &Layout, erased: bool) {
    match BootState::load(flash, layout) {
        Ok(st) => {
            if erased {
                assert_eq!(st, BootState::default());
            }
            // What loads survives a store and a load, and the bootloader can run on it.
            assert_eq!(st.store(flash, layout), Ok(()));
            assert_eq!(BootState::load(flash, layout), Ok(st));
            let decision = boot::select_boot_slot(flash, layout);
            assert!(decision.is_ok(), "{decision:?}");
            assert!(BootState::load(flash, layout).is_ok());
        }
        Err(e) => {
            assert_eq!(e, BootError::Corrupt);
            assert!(!erased, "an erased area is the factory default");
            assert_eq!(
                boot::select_boot_slot(flash, layout),
                Err(BootError::Corrupt)
            );
        }
    }
    assert_eq!((flash.nor_violations(), flash.word_violations()), (0, 0));
}
