//! The C API's own checks, called from Rust as C would call them: what `updraft_start` refuses,
//! calls on a device that was never started, and the core's /5 refusals as return codes.

use std::ffi::c_void;

use updraft_device_ffi::*;

struct Mem(Vec<u8>);

unsafe extern "C" fn read(ctx: *mut c_void, offset: u32, buf: *mut u8, len: usize) -> i32 {
    // SAFETY: `ctx` is the `Mem` of the test; the library checked the bounds.
    let m = unsafe { &*(ctx as *const Mem) };
    let src = &m.0[offset as usize..offset as usize + len];
    // SAFETY: `buf` holds `len` bytes.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), buf, len) };
    0
}

unsafe extern "C" fn write(ctx: *mut c_void, offset: u32, data: *const u8, len: usize) -> i32 {
    // SAFETY: as in `read`.
    let m = unsafe { &mut *(ctx as *mut Mem) };
    // SAFETY: `data` holds `len` bytes.
    let data = unsafe { std::slice::from_raw_parts(data, len) };
    for (d, s) in m.0[offset as usize..].iter_mut().zip(data) {
        *d &= s;
    }
    0
}

unsafe extern "C" fn erase(ctx: *mut c_void, from: u32, to: u32) -> i32 {
    // SAFETY: as in `read`.
    let m = unsafe { &mut *(ctx as *mut Mem) };
    m.0[from as usize..to as usize].fill(0xFF);
    0
}

const SLOT: u32 = 64 * 1024;

fn flash(mem: &mut Mem) -> UpdraftFlash {
    UpdraftFlash {
        ctx: (mem as *mut Mem).cast(),
        read: Some(read),
        write: Some(write),
        erase: Some(erase),
        capacity: mem.0.len() as u32,
        write_size: updraft_flash_write_size(),
        erase_size: updraft_flash_erase_size(),
    }
}

fn mem() -> Mem {
    let layout = updraft_layout_packed(SLOT, updraft_flash_erase_size());
    Mem(vec![
        0xFF;
        (layout.envelope.offset + layout.envelope.size) as usize
    ])
}

const KEY: [u8; 32] = [
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
    0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
];

fn config(key: &UpdraftKey) -> UpdraftConfig {
    UpdraftConfig {
        layout: updraft_layout_packed(SLOT, updraft_flash_erase_size()),
        keys: key,
        key_count: 1,
        vendor_id: [0x11; 16],
        class_id: [0x22; 16],
        resume: UPDRAFT_RESUME,
        block_size: 512,
        protocols: UPDRAFT_PROTOCOL_COAP,
        auto_execute: 0,
    }
}

fn key() -> UpdraftKey {
    UpdraftKey {
        algorithm: UPDRAFT_ALG_ED25519,
        bytes: KEY.as_ptr(),
        len: KEY.len(),
    }
}

fn device() -> Box<UpdraftDevice> {
    Box::new(UpdraftDevice {
        _private: [0; UPDRAFT_DEVICE_WORDS],
    })
}

#[test]
fn start_refuses_what_the_core_cannot_run_on() {
    let mut m = mem();
    let k = key();
    let mut dev = device();
    let start = |dev: &mut UpdraftDevice, f: &UpdraftFlash, c: &UpdraftConfig| {
        // SAFETY: valid pointers for the duration of the call.
        unsafe { updraft_start(dev, f, c, UPDRAFT_TIME_UNKNOWN) }
    };
    let good = flash(&mut m);

    let other_sector = UpdraftFlash {
        erase_size: updraft_flash_erase_size() * 2,
        ..good
    };
    assert_eq!(
        start(&mut dev, &other_sector, &config(&k)),
        UPDRAFT_ERR_GEOMETRY
    );
    let other_word = UpdraftFlash {
        write_size: 8,
        ..good
    };
    assert_eq!(
        start(&mut dev, &other_word, &config(&k)),
        UPDRAFT_ERR_GEOMETRY
    );
    let no_erase = UpdraftFlash {
        erase: None,
        ..good
    };
    assert_eq!(start(&mut dev, &no_erase, &config(&k)), UPDRAFT_ERR_NULL);
    let small = UpdraftFlash {
        capacity: 2 * SLOT,
        ..good
    };
    assert_eq!(start(&mut dev, &small, &config(&k)), UPDRAFT_ERR_LAYOUT);

    let short_key = UpdraftKey { len: 31, ..k };
    assert_eq!(start(&mut dev, &good, &config(&short_key)), UPDRAFT_ERR_KEY);
    let unknown_alg = UpdraftKey { algorithm: 9, ..k };
    assert_eq!(
        start(&mut dev, &good, &config(&unknown_alg)),
        UPDRAFT_ERR_INVALID_ARGUMENT
    );
    let odd_block = UpdraftConfig {
        block_size: 3,
        ..config(&k)
    };
    assert_eq!(start(&mut dev, &good, &odd_block), UPDRAFT_ERR_BLOCK_SIZE);
    let too_many = UpdraftConfig {
        key_count: UPDRAFT_MAX_KEYS + 1,
        ..config(&k)
    };
    assert_eq!(
        start(&mut dev, &good, &too_many),
        UPDRAFT_ERR_INVALID_ARGUMENT
    );
    let bad_resume = UpdraftConfig {
        resume: 7,
        ..config(&k)
    };
    assert_eq!(
        start(&mut dev, &good, &bad_resume),
        UPDRAFT_ERR_INVALID_ARGUMENT
    );

    // A failed start leaves the device unstarted, even after an earlier good start.
    assert_eq!(start(&mut dev, &good, &config(&k)), UPDRAFT_OK);
    // SAFETY: a valid device.
    assert_eq!(unsafe { updraft_state(&mut *dev) }, 0);
    assert_eq!(start(&mut dev, &good, &config(&short_key)), UPDRAFT_ERR_KEY);
    // SAFETY: a valid device.
    assert_eq!(unsafe { updraft_state(&mut *dev) }, UPDRAFT_ERR_NOT_STARTED);
}

#[test]
fn calls_on_a_device_never_started_are_refused() {
    let mut dev = device();
    let mut action = std::mem::MaybeUninit::<UpdraftAction>::uninit();
    // SAFETY: valid pointers; the memory is zeroed, not started.
    unsafe {
        assert_eq!(updraft_execute(&mut *dev, 0), UPDRAFT_ERR_NOT_STARTED);
        assert_eq!(
            updraft_poll_action(&mut *dev, action.as_mut_ptr()),
            UPDRAFT_ERR_NOT_STARTED
        );
        assert_eq!(updraft_result(&mut *dev), UPDRAFT_ERR_NOT_STARTED);
        assert_eq!(updraft_execute(std::ptr::null_mut(), 0), UPDRAFT_ERR_NULL);
    }
}

#[test]
fn core_refusals_come_back_as_their_codes() {
    let mut m = mem();
    let k = key();
    let f = flash(&mut m);
    let c = config(&k);
    let mut dev = device();
    let d: *mut UpdraftDevice = &mut *dev;
    let mut a = std::mem::MaybeUninit::<UpdraftAction>::uninit();
    // SAFETY: valid pointers throughout; `dev` stays in its box.
    unsafe {
        assert_eq!(updraft_start(d, &f, &c, 1_800_000_000), UPDRAFT_OK);
        // The first action is the initial notify: Idle, result 0, at the time given.
        assert_eq!(updraft_poll_action(d, a.as_mut_ptr()), 1);
        let first = a.assume_init();
        assert_eq!(first.kind, UpdraftActionKind::Notify);
        assert_eq!((first.state, first.result), (0, 0));
        assert_eq!((first.has_changed_at, first.changed_at), (1, 1_800_000_000));
        assert_eq!(updraft_poll_action(d, a.as_mut_ptr()), 0);

        assert_eq!(updraft_execute(d, 0), UPDRAFT_ERR_METHOD_NOT_ALLOWED);
        assert_eq!(updraft_cancel(d, 0), UPDRAFT_ERR_METHOD_NOT_ALLOWED);
        assert_eq!(updraft_write_severity(d, 0, 3), UPDRAFT_ERR_BAD_REQUEST);
        let not_utf8 = [0xC3u8, 0x28];
        assert_eq!(
            updraft_write_package_uri(d, 0, not_utf8.as_ptr(), not_utf8.len()),
            UPDRAFT_ERR_BAD_REQUEST
        );
        assert_eq!(
            updraft_download_authorization(d, 0, 9),
            UPDRAFT_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            updraft_block(d, 0, 0, std::ptr::null(), 4, std::ptr::null(), 0),
            UPDRAFT_ERR_NULL
        );

        // A Package URI is taken and read back; the core asks for the envelope.
        let uri = b"coap://updates.example/fw.suit";
        assert_eq!(
            updraft_write_package_uri(d, 0, uri.as_ptr(), uri.len()),
            UPDRAFT_OK
        );
        let (mut p, mut n) = (std::ptr::null(), 0usize);
        assert_eq!(
            updraft_string(d, UPDRAFT_STRING_PACKAGE_URI, &mut p, &mut n),
            1
        );
        assert_eq!(std::slice::from_raw_parts(p, n), uri);
        let mut kinds = Vec::new();
        while updraft_poll_action(d, a.as_mut_ptr()) == 1 {
            kinds.push(a.assume_init().kind);
        }
        assert!(
            kinds.contains(&UpdraftActionKind::FetchManifest),
            "{kinds:?}"
        );
        // Garbage instead of an envelope: Idle again with result 6 (unsupported package).
        let junk = [0u8; 16];
        assert_eq!(
            updraft_manifest_fetched(d, 0, junk.as_ptr(), junk.len()),
            UPDRAFT_OK
        );
        assert_eq!(updraft_state(d), 0);
        assert_eq!(updraft_result(d), 6);
    }
}
