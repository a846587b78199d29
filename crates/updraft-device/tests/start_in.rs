//! `UpdateCore::start_in` (the core built in caller-provided memory, for firmware that counts
//! its stack) starts exactly as `UpdateCore::start`: same state, same queued actions, same
//! continuation of an interrupted download, and the same refusals.

mod common;

use common::*;
use core::mem::MaybeUninit;
use updraft_device::update::StartError;
use updraft_device::{Action, Event, Layout, UpdateCore};

fn drain_core(core: &mut UpdateCore<'_>) -> Vec<Action> {
    std::iter::from_fn(|| core.poll_action()).collect()
}

/// Start both ways on two copies of `flash`; the actions and the state after start.
fn both_ways(flash: &Flash, keys: &[updraft_manifest::PublicKey]) -> [(Vec<Action>, String); 2] {
    let mut by_value = flash.clone();
    let mut core = UpdateCore::start(&mut by_value, config(keys), Some(42)).expect("starts");
    let a = (
        drain_core(&mut core),
        format!("{:?}", (core.step(), core.result())),
    );
    let mut in_place = flash.clone();
    let mut place = MaybeUninit::uninit();
    let core =
        UpdateCore::start_in(&mut place, &mut in_place, config(keys), Some(42)).expect("starts");
    let b = (
        drain_core(core),
        format!("{:?}", (core.step(), core.result())),
    );
    [a, b]
}

#[test]
fn start_in_starts_an_idle_device_like_start() {
    let keys = trusted_keys();
    let dev = device(&keys, server(&new_image()));
    let [a, b] = both_ways(&dev.flash, &keys);
    assert!(!a.0.is_empty(), "start queues the initial notification");
    assert_eq!(a, b);
}

#[test]
fn start_in_resumes_an_interrupted_download_like_start() {
    let keys = trusted_keys();
    let img = new_image();
    let mut dev = device(&keys, server(&img));
    dev.send(Event::WritePackageUri(URI)).ok();
    while dev.served.len() < 5 {
        assert!(dev.run(1) > 0, "stalled");
    }
    let [a, b] = both_ways(&dev.flash, &keys);
    assert!(
        a.0.iter()
            .any(|x| matches!(x, Action::FetchBlock { offset, .. } if *offset > 0)),
        "start resumes past the first block: {:?}",
        a.0
    );
    assert_eq!(a, b);
}

#[test]
fn start_in_refuses_what_start_refuses() {
    let keys = trusted_keys();
    let mut flash = Flash::new(layout().end() as usize);
    let mut bad = config(&keys);
    bad.block_size = 3;
    let mut place = MaybeUninit::uninit();
    assert!(matches!(
        UpdateCore::start_in(&mut place, &mut flash, bad, None),
        Err(StartError::BlockSize)
    ));
    let mut small = config(&keys);
    small.layout = Layout::packed(1 << 20, ERASE as u32);
    assert!(matches!(
        UpdateCore::start_in(&mut place, &mut flash, small, None),
        Err(StartError::Layout(_))
    ));
}
