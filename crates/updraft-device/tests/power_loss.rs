//! The MCUboot-simulator method: count every flash write and erase of a full update, then cut
//! the power at each one in turn, reboot, continue, and check the device.
//!
//! Run with `--nocapture` to see the numbers.

mod common;

use common::*;
use updraft_device::sim::SimDevice;
use updraft_device::update::Step;
use updraft_device::{Action, Event, Layout, Slot, State, UpdateResult};
use updraft_manifest::PublicKey;

#[derive(Default, Debug)]
struct Tally {
    cut_points: u64,
    on_new_image: u64,
    on_old_image: u64,
    needed_server_retry: u64,
    power_cuts: u64,
    boots: u64,
}

/// Which image runs: `Some(true)` new, `Some(false)` old, `None` neither (bricked).
fn running_image<const E: usize, const W: usize>(
    dev: &mut SimDevice<'_, E, W>,
    old: &[u8],
    new: &[u8],
) -> Option<bool> {
    if dev.booted_digest(new.len()) == Some(sha256(new)) {
        Some(true)
    } else if dev.booted_digest(old.len()) == Some(sha256(old)) {
        Some(false)
    } else {
        None
    }
}

/// Check the invariants of a quiet device; `passes` is whether the new image's self-test passes.
fn check<const E: usize, const W: usize>(
    dev: &mut SimDevice<'_, E, W>,
    old: &[u8],
    new: &[u8],
    passes: bool,
    label: &str,
) -> bool {
    let on_new =
        running_image(dev, old, new).unwrap_or_else(|| panic!("{label}: boots no valid image"));
    let st = dev.boot_state();
    let (state, result) = (dev.core().state(), dev.core().result());
    let step = dev.core().step();
    assert_eq!(
        state,
        State::Idle,
        "{label}: not idle when quiet ({step:?})"
    );
    assert_eq!(
        dev.flash.nor_violations(),
        0,
        "{label}: a write over unerased flash"
    );
    // The anti-rollback counter never runs ahead of a confirmed image, at any boot.
    for b in &dev.boot_log {
        if b.installed_sequence == NEW_SEQ {
            assert!(
                passes && b.active == Slot::B,
                "{label}: counter moved without a confirm"
            );
        } else {
            assert_eq!(
                (b.installed_sequence, b.active),
                (OLD_SEQ, Slot::A),
                "{label}"
            );
        }
    }
    if on_new {
        assert!(passes, "{label}: a rejected image runs");
        assert_eq!(st.active, Slot::B, "{label}");
        assert_eq!(st.installed_sequence, NEW_SEQ, "{label}");
        assert_eq!(result, UpdateResult::Success, "{label}");
    } else {
        assert_eq!(
            st.installed_sequence, OLD_SEQ,
            "{label}: counter moved without a confirm"
        );
        assert_eq!(st.active, Slot::A, "{label}");
        assert_ne!(
            result,
            UpdateResult::Success,
            "{label}: success reported on the old image"
        );
    }
    on_new
}

/// One update with an optional power cut at flash operation `cut` (counted from the URI
/// write). Returns the operations the update took.
fn update_with_cut<const E: usize, const W: usize>(
    keys: &[PublicKey],
    passes: bool,
    cut: Option<u64>,
    tally: &mut Tally,
) -> u64 {
    let (old, new) = (old_image(), new_image());
    let mut cfg = config(keys);
    cfg.layout = Layout::packed(SLOT_SIZE, E as u32);
    let mut dev = device_on::<E, W>(cfg, server(&new));
    dev.app.self_test_passes = passes;
    let start = dev.flash.ops();
    if let Some(i) = cut {
        dev.flash.seed(i.wrapping_mul(0x9E37_79B9) + 1);
        dev.flash.cut_power_at(i);
    }
    dev.send(Event::WritePackageUri(URI)).ok();
    dev.run(100_000);
    let ops = dev.flash.ops() - start;
    let label = format!("E={E} W={W} passes={passes} cut={cut:?}");
    let on_new = check(&mut dev, &old, &new, passes, &label);
    let expected = if passes {
        UpdateResult::Success
    } else {
        UpdateResult::UpdateFailed
    };
    if dev.core().result() != expected {
        // The cut lost the update before it was durable (or it reverted a trial whose confirm
        // was cut): the device is Idle on the old image, and the server sends the update
        // again, which must now go through.
        assert!(!on_new, "{label}");
        tally.needed_server_retry += 1;
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(100_000);
        let on_new = check(&mut dev, &old, &new, passes, &format!("{label} retry"));
        assert_eq!(on_new, passes, "{label}: retry");
        assert_eq!(dev.core().result(), expected, "{label}: retry");
    }
    if cut.is_some() {
        tally.cut_points += 1;
        tally.power_cuts += u64::from(dev.power_cuts);
        tally.boots += dev.boot_log.len() as u64;
        if running_image(&mut dev, &old, &new) == Some(true) {
            tally.on_new_image += 1;
        } else {
            tally.on_old_image += 1;
        }
    }
    ops
}

fn sweep<const E: usize, const W: usize>(passes: bool) -> (u64, Tally) {
    let keys = trusted_keys();
    let mut tally = Tally::default();
    let total = update_with_cut::<E, W>(&keys, passes, None, &mut tally);
    assert!(total > 0);
    for i in 1..=total {
        update_with_cut::<E, W>(&keys, passes, Some(i), &mut tally);
    }
    (total, tally)
}

fn report(path: &str, geometry: &str, ops: u64, t: &Tally) {
    println!(
        "power-loss sweep, {path} path, {geometry}: {ops} flash operations, {} cut points \
         covered, {} power cuts taken, {} boots; {} ended on the new image, {} on the old one; \
         {} needed the server to send the update again",
        t.cut_points, t.power_cuts, t.boots, t.on_new_image, t.on_old_image, t.needed_server_retry
    );
}

#[test]
fn power_cut_at_every_flash_operation_of_a_successful_update_keeps_a_bootable_device() {
    let (ops, t) = sweep::<ERASE, WRITE>(true);
    report("update", "1 KiB sectors, 4-byte writes", ops, &t);
    assert!(t.cut_points > 0);
    assert_eq!(t.cut_points, ops);
    assert_eq!(t.power_cuts, ops, "every cut point took exactly one cut");
    assert_eq!(
        t.on_new_image, ops,
        "every cut ends on the confirmed new image"
    );
}

#[test]
fn power_cut_at_every_flash_operation_of_a_reverted_update_keeps_the_old_image() {
    let (ops, t) = sweep::<ERASE, WRITE>(false);
    report("revert", "1 KiB sectors, 4-byte writes", ops, &t);
    assert!(t.cut_points > 0);
    assert_eq!(t.cut_points, ops);
    assert_eq!(t.power_cuts, ops);
    assert_eq!(t.on_old_image, ops);
}

#[test]
fn power_cut_sweep_with_small_sectors_and_16_byte_writes_keeps_a_bootable_device() {
    // 256-byte sectors: every 512-byte block spans two sectors; 16-byte writes pad the tail.
    let (ops, t) = sweep::<256, 16>(true);
    report("update", "256 B sectors, 16-byte writes", ops, &t);
    assert!(ops > 0);
    assert_eq!(
        (t.cut_points, t.power_cuts, t.on_new_image),
        (ops, ops, ops)
    );
    let (ops, t) = sweep::<256, 16>(false);
    report("revert", "256 B sectors, 16-byte writes", ops, &t);
    assert!(ops > 0);
    assert_eq!(
        (t.cut_points, t.power_cuts, t.on_old_image),
        (ops, ops, ops)
    );
}

/// A small deterministic PRNG (xorshift64*), so the test needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn resume_after_power_cut_redownloads_at_most_one_block() {
    let keys = trusted_keys();
    let (old, new) = (old_image(), image(16 * 1024 - 7, 5));
    let blocks = new.len().div_ceil(BLOCK as usize);
    let mut total_cuts = 0;
    let mut total_redownloaded = 0;
    for seed in 1..=24u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut dev = device(&keys, server(&new));
        dev.flash.seed(seed);
        dev.send(Event::WritePackageUri(URI)).ok();
        while dev.served.is_empty() {
            assert!(dev.run(1) > 0);
        }
        let mut cuts_seen = 0;
        dev.flash.cut_power_at(1 + rng.below(12));
        let mut steps = 0;
        while dev.run(1) > 0 {
            steps += 1;
            assert!(steps < 100_000, "seed {seed}: stalled");
            if dev.power_cuts > cuts_seen {
                cuts_seen = dev.power_cuts;
                if dev
                    .core
                    .as_ref()
                    .is_some_and(|c| c.step() == Step::Downloading)
                {
                    dev.flash.cut_power_at(1 + rng.below(12));
                }
            }
        }
        for p in &dev.resume_points {
            assert!(
                p.fetched_after >= p.served_before && p.fetched_after <= p.served_before + BLOCK,
                "seed {seed}: served up to {} before the cut, resumed at {}",
                p.served_before,
                p.fetched_after
            );
        }
        let redownloaded = dev.served.len() - blocks;
        assert!(redownloaded <= dev.resume_points.len(), "seed {seed}");
        assert!(check(&mut dev, &old, &new, true, &format!("seed {seed}")));
        assert!(dev.log.contains(&Action::Completed(UpdateResult::Success)));
        total_cuts += dev.power_cuts;
        total_redownloaded += redownloaded;
    }
    println!(
        "random cuts during download: 24 seeds, {total_cuts} power cuts, \
         {total_redownloaded} blocks downloaded twice"
    );
    assert!(total_cuts >= 24);
}
