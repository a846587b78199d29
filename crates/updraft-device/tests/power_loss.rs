//! The MCUboot-simulator method: count every flash write and erase of an update path, then cut
//! the power at each one in turn (every one, not a sample), reboot, continue, and check the
//! device; then cut a second time at every operation of the recovery that follows each first
//! cut (the double-cut sweep).
//!
//! Paths: a pulled update that confirms, one whose self-test fails (revert), a pushed update,
//! a deferred install, a download cancelled by the server, an update long enough that the
//! journal's entry slots fill and the record is rewritten mid-download, and the confirm itself
//! (where the anti-rollback counter moves). Each runs on plain NOR flash and on write-once
//! (ECC-word) flash with 8- and 32-byte words.
//!
//! Every run checks: the device ends quiet on a valid image; every boot ran a known image (the
//! new one on a trial boot, the active slot's otherwise) with the anti-rollback counter never
//! ahead of a confirmed image; no write over unerased flash and no word programmed twice; and
//! a pulled download downloaded again at most one block per power cut (on write-once flash, at
//! most one sector: it resumes from the start of the interrupted sector).
//!
//! Run with `--nocapture` to see the cut points per path.

mod common;

use common::*;
use updraft_device::boot::{BootState, Trial};
use updraft_device::journal::{self, Journal, Phase};
use updraft_device::record::{ENTRY_LEN, HEADER_SPACE};
use updraft_device::sim::{Programming, SimDevice};
use updraft_device::update::Step;
use updraft_device::{Event, ImageState, Layout, Slot, State, UpdateResult};
use updraft_manifest::PublicKey;

/// Extra operations after the recovery boot a second cut is also placed at (the first block
/// written and journaled after a resumed download, or the next record write).
const AFTER_RECOVERY: u64 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// Pull, install, trial boot, self-test passes, confirm.
    Update,
    /// Pull, install, trial boot, self-test fails, revert.
    Revert,
    /// The package pushed in blocks (/5/0/0), then install and confirm.
    Push,
    /// Install deferred by the application, installed at the next reboot.
    DeferredInstall,
    /// The server cancels after a few blocks; then a new update goes through.
    Cancel,
    /// An image long enough to fill the journal's entry slots (record rewritten mid-download).
    JournalRewrite,
    /// Only the trial boot: bootloader marks, self-test passes, confirm moves the counter.
    Confirm,
}

impl Path {
    fn image(self) -> Vec<u8> {
        match self {
            Path::JournalRewrite => image(15 * 1024 + 100, 6),
            _ => new_image(),
        }
    }

    fn passes(self) -> bool {
        self != Path::Revert
    }

    /// What the update ends with, when nothing is lost.
    fn expected(self) -> UpdateResult {
        match self {
            Path::Revert => UpdateResult::UpdateFailed,
            _ => UpdateResult::Success,
        }
    }

    fn pulled(self) -> bool {
        self != Path::Push
    }
}

/// A flash a sweep runs on.
#[derive(Clone, Copy, Debug)]
struct Flash {
    mode: Programming,
    label: &'static str,
}

const NOR: Flash = Flash {
    mode: Programming::Nor,
    label: "NOR",
};
const ECC8: Flash = Flash {
    mode: Programming::WriteOnce { word: 8 },
    label: "write-once, 8-byte words",
};
const ECC32: Flash = Flash {
    mode: Programming::WriteOnce { word: 32 },
    label: "write-once, 32-byte words",
};

#[derive(Default, Debug)]
struct Tally {
    cut_points: u64,
    double_cut_points: u64,
    on_new_image: u64,
    on_old_image: u64,
    needed_server_retry: u64,
    power_cuts: u64,
    boots: u64,
    redownloaded_bytes: u64,
    max_redownloaded: u64,
    reports_lost: u64,
}

/// What one run left behind.
struct Run {
    ops: u64,
    recovery_ops: Option<u64>,
}

fn make<const E: usize, const W: usize>(
    keys: &[PublicKey],
    path: Path,
    flash: Flash,
) -> SimDevice<'_, E, W> {
    set_flash_mode(flash.mode);
    let img = path.image();
    let mut cfg = config(keys);
    cfg.layout = Layout::packed(SLOT_SIZE, E as u32);
    cfg.layout.multiwrite = flash.mode == Programming::Nor;
    let mut dev = device_on::<E, W>(cfg, server(&img));
    dev.app.self_test_passes = path.passes();
    dev.known_images = vec![old_image(), img];
    // Boot again, now that the harness knows the images, so every boot is checked.
    dev.boots.clear();
    dev.boot_log.clear();
    dev.power_on();
    drain(&mut dev);
    dev
}

/// Push the package in 512-byte Block1 writes (the envelope first, then the image), the way an
/// LwM2M server does, serving the core's other actions in between. Stops at a power cut (the
/// core then continues by pulling the signed URI, or the server pushes again).
fn push<const E: usize, const W: usize>(dev: &mut SimDevice<'_, E, W>, img: &[u8]) {
    let env = dev.server.envelope.clone();
    let pkg = push_package(&env, img);
    let env_end = pkg.len() - img.len();
    let cuts = dev.power_cuts;
    let mut chunks = Vec::new();
    let mut off = 0;
    while off < pkg.len() {
        let end = if off < env_end {
            (off + 512).min(env_end)
        } else {
            (off + 512).min(pkg.len())
        };
        chunks.push((off, end));
        off = end;
    }
    for (start, end) in chunks {
        if dev.power_cuts != cuts || dev.core.is_none() {
            return;
        }
        let r = dev.send(Event::WritePackage {
            offset: start as u32,
            data: &pkg[start..end],
        });
        dev.run(100_000);
        if r == Err(updraft_device::OpError::ServiceUnavailable) && dev.power_cuts == cuts {
            // Authorization was pending: the server sends the block again.
            dev.send(Event::WritePackage {
                offset: start as u32,
                data: &pkg[start..end],
            })
            .ok();
            dev.run(100_000);
        }
    }
}

/// Serve pulled blocks until at least `blocks` were served or the download stopped.
fn serve_blocks<const E: usize, const W: usize>(dev: &mut SimDevice<'_, E, W>, blocks: usize) {
    let mut steps = 0;
    while dev.served.len() < blocks && steps < 100_000 {
        if dev.run(1) == 0 {
            break;
        }
        steps += 1;
    }
}

/// Drive the path once (what the server and the application do).
fn drive<const E: usize, const W: usize>(dev: &mut SimDevice<'_, E, W>, path: Path, img: &[u8]) {
    match path {
        Path::Update | Path::Revert | Path::JournalRewrite | Path::Confirm => {
            dev.send(Event::WritePackageUri(URI)).ok();
            dev.run(100_000);
        }
        Path::Push => {
            push(dev, img);
            dev.run(100_000);
        }
        Path::DeferredInstall => {
            dev.app.install = updraft_device::Decision::Defer;
            dev.send(Event::WriteMaxDeferPeriod(3600)).ok();
            dev.send(Event::WritePackageUri(URI)).ok();
            dev.run(100_000);
            // Installed at the next reboot, whenever that comes (a cut may have come first:
            // the defer period is not persisted, so the install then went ahead at once).
            dev.app.install = updraft_device::Decision::Authorize;
            if dev
                .core
                .as_ref()
                .is_some_and(|c| c.step() == Step::InstallDeferred)
            {
                dev.reboots += 1;
                dev.power_on();
                dev.run(100_000);
            }
        }
        Path::Cancel => {
            dev.send(Event::WritePackageUri(URI)).ok();
            // The server cancels after 6 blocks, again until the cancel sticks (a cut during
            // the cancel loses it: the device continues the download after its reboot).
            for _ in 0..10 {
                serve_blocks(dev, 6);
                if dev.core.as_ref().is_some_and(|c| c.state() == State::Idle) {
                    break;
                }
                dev.send(Event::Cancel).ok();
                if dev.core.as_ref().is_some_and(|c| {
                    c.state() == State::Idle && c.result() == UpdateResult::Cancelled
                }) {
                    break;
                }
            }
            dev.run(100_000);
        }
    }
}

/// Check every boot and the quiet device; whether it runs the new image. `reports_lost`
/// counts runs on the confirmed new image whose Success report was lost (see below).
fn check<const E: usize, const W: usize>(
    dev: &mut SimDevice<'_, E, W>,
    passes: bool,
    label: &str,
    reports_lost: &mut u64,
) -> bool {
    assert!(!dev.boot_state_corrupt, "{label}: boot state corrupt");
    let (state, result, step) = {
        let core = dev
            .core
            .as_ref()
            .unwrap_or_else(|| panic!("{label}: device off"));
        (core.state(), core.result(), core.step())
    };
    assert_eq!(
        state,
        State::Idle,
        "{label}: not idle when quiet ({step:?})"
    );
    assert_eq!(
        (dev.flash.nor_violations(), dev.flash.word_violations()),
        (0, 0),
        "{label}: a write over unerased flash or a word programmed twice"
    );
    assert_eq!(
        dev.boots.len(),
        dev.boot_log.len(),
        "{label}: a boot state unreadable after a slot selection"
    );
    // Every boot: the image it ran, against the boot state it left.
    for (i, (b, st)) in dev.boots.iter().zip(&dev.boot_log).enumerate() {
        let ran = b
            .image
            .unwrap_or_else(|| panic!("{label}: boot {i} ran no known image ({b:?})"));
        if b.decision.trial {
            assert_eq!(ran, 1, "{label}: boot {i}: a trial boot of something else");
            assert!(
                matches!(st.trial, Some(Trial::Booted(c)) if c.slot == b.decision.slot),
                "{label}: boot {i}: trial boot not marked booted first"
            );
        } else {
            let active = if st.active == Slot::A { 0 } else { 1 };
            assert_eq!(
                ran, active,
                "{label}: boot {i}: ran a slot that is not active"
            );
            assert_eq!(b.decision.slot, st.active, "{label}: boot {i}");
        }
        // The anti-rollback counter never runs ahead of a confirmed image.
        if st.installed_sequence == NEW_SEQ {
            assert!(
                passes && st.active == Slot::B,
                "{label}: boot {i}: counter moved without a confirm"
            );
        } else {
            assert_eq!(
                (st.installed_sequence, st.active),
                (OLD_SEQ, Slot::A),
                "{label}: boot {i}"
            );
        }
    }
    let last = dev.boots.last().copied().expect("booted");
    let on_new = last.image == Some(1);
    let st = dev.boot_state();
    if on_new {
        assert!(passes, "{label}: a rejected image runs");
        assert_eq!(
            (st.active, st.installed_sequence),
            (Slot::B, NEW_SEQ),
            "{label}"
        );
        let journal = Journal::load(&mut dev.flash, &dev.config.layout).expect("journal");
        if result == UpdateResult::Initial
            && journal.phase == Phase::None
            && matches!(st.last, Some((ImageState::Accepted, _)))
        {
            // The cut came after the confirm's last write was complete (a cut write whose
            // missing bytes were padding): everything is durable, only the report of the
            // outcome, held in RAM, went with the power.
            *reports_lost += 1;
        } else {
            assert_eq!(
                result,
                UpdateResult::Success,
                "{label}: last actions {:?}",
                &dev.log[dev.log.len().saturating_sub(8)..]
            );
        }
    } else {
        assert_eq!(
            (st.active, st.installed_sequence),
            (Slot::A, OLD_SEQ),
            "{label}"
        );
        assert_ne!(
            result,
            UpdateResult::Success,
            "{label}: success on the old image"
        );
    }
    on_new
}

/// Bytes served more than once (pulled downloads).
fn redownloaded<const E: usize, const W: usize>(dev: &SimDevice<'_, E, W>, len: usize) -> u64 {
    let served: u64 = dev
        .served
        .iter()
        .map(|&o| (len - o as usize).min(BLOCK as usize) as u64)
        .sum();
    served.saturating_sub(len as u64)
}

/// One run with up to two cuts: `first` counted from the start of the path, `second` from the
/// power-on after the first.
fn run_path<const E: usize, const W: usize>(
    keys: &[PublicKey],
    path: Path,
    flash: Flash,
    first: Option<u64>,
    second: Option<u64>,
    tally: &mut Tally,
) -> Run {
    let img = path.image();
    let mut dev = make::<E, W>(keys, path, flash);
    if path == Path::Confirm {
        // Set up without cuts: installed, the reboot into the trial not carried out yet.
        dev.send(Event::WritePackageUri(URI)).ok();
        while dev
            .core
            .as_ref()
            .is_some_and(|c| c.step() != Step::Rebooting)
        {
            assert!(dev.run(1) > 0, "stalled before the install");
        }
        assert!(matches!(dev.boot_state().trial, Some(Trial::Pending(_))));
    }
    let start = dev.flash.ops();
    let cuts_before = dev.power_cuts;
    if let Some(i) = first {
        // The same garbage for a first cut with or without a second one.
        dev.flash.seed(i.wrapping_mul(0x9E37_79B9) + 1);
        dev.flash.cut_power_at(i);
        if let Some(j) = second {
            dev.flash.then_cut_after_reboot(j);
        }
    }
    if path == Path::Confirm {
        dev.reboots += 1;
        dev.power_on();
        dev.run(100_000);
    } else {
        drive(&mut dev, path, &img);
    }
    let ops = dev.flash.ops() - start;
    let label = format!(
        "{path:?} on {} (E={E} W={W}), cuts {first:?} then {second:?}",
        flash.label
    );
    let cuts = u64::from(dev.power_cuts - cuts_before);
    if first.is_some() {
        assert!(cuts >= 1, "{label}: the cut was not taken");
    }
    assert!(
        cuts <= 1 + u64::from(second.is_some()),
        "{label}: {cuts} cuts"
    );
    let passes = path.passes();
    let on_new = check(&mut dev, passes, &label, &mut tally.reports_lost);
    // At most one block (NOR) or one sector (write-once) downloaded again per cut.
    if path.pulled() {
        let per_cut = if flash.mode == Programming::Nor {
            BLOCK
        } else {
            BLOCK.max(E as u32)
        };
        let again = redownloaded(&dev, img.len());
        assert!(
            again <= cuts * u64::from(per_cut),
            "{label}: {again} bytes downloaded again for {cuts} cuts (at most {per_cut} each)"
        );
        tally.redownloaded_bytes += again;
        tally.max_redownloaded = tally.max_redownloaded.max(again);
    }
    let result = dev.core().result();
    let expected = path.expected();
    if path == Path::Cancel {
        assert!(!on_new, "{label}: a cancelled update runs");
        // Cancelled, or the cut lost the update before the server's cancel (Idle, Initial).
        assert!(
            matches!(result, UpdateResult::Cancelled | UpdateResult::Initial),
            "{label}: {result:?}"
        );
        let j = Journal::load(&mut dev.flash, &dev.config.layout).expect("journal");
        assert_eq!(j.phase, Phase::None, "{label}: the cancel left a journal");
    } else if result != expected && !on_new {
        // The cut lost the update before it was durable (or reverted a trial whose confirm was
        // cut): Idle on the old image; the server sends the update again and it goes through.
        assert!(!on_new, "{label}");
        tally.needed_server_retry += 1;
    }
    if path == Path::Cancel || (result != expected && !on_new) {
        dev.app.install = updraft_device::Decision::Authorize;
        let want = if path == Path::Cancel {
            UpdateResult::Success
        } else {
            expected
        };
        // The server sends the update again until it goes through (a second cut scheduled
        // past the recovery can hit the first resend too).
        for _ in 0..3 {
            if path == Path::Push {
                push(&mut dev, &img);
            } else {
                dev.send(Event::WritePackageUri(URI)).ok();
            }
            dev.run(100_000);
            if dev.core().result() == want {
                break;
            }
        }
        let retry = format!("{label}, then again");
        let on_new = check(&mut dev, passes, &retry, &mut tally.reports_lost);
        assert_eq!(on_new, passes, "{retry}");
        assert_eq!(dev.core().result(), want, "{retry}");
    }
    if first.is_some() {
        tally.power_cuts += cuts;
        tally.boots += dev.boots.len() as u64;
        if dev.boots.last().is_some_and(|b| b.image == Some(1)) {
            tally.on_new_image += 1;
        } else {
            tally.on_old_image += 1;
        }
    }
    Run {
        ops,
        recovery_ops: dev.recovery_ops,
    }
}

/// Cut at every operation of the path; with `double`, also a second cut at every operation of
/// each recovery. Returns the operations of the uncut path.
fn sweep<const E: usize, const W: usize>(path: Path, flash: Flash, double: bool) -> (u64, Tally) {
    let keys = trusted_keys();
    let mut tally = Tally::default();
    let total = run_path::<E, W>(&keys, path, flash, None, None, &mut tally).ops;
    assert!(total > 0);
    for i in 1..=total {
        let run = run_path::<E, W>(&keys, path, flash, Some(i), None, &mut tally);
        tally.cut_points += 1;
        if double {
            let recovery = run.recovery_ops.unwrap_or(0) + AFTER_RECOVERY;
            for j in 1..=recovery {
                run_path::<E, W>(&keys, path, flash, Some(i), Some(j), &mut tally);
                tally.double_cut_points += 1;
            }
        }
    }
    report(path, flash, E, W, total, &tally);
    assert_eq!(tally.cut_points, total);
    (total, tally)
}

fn report(path: Path, flash: Flash, e: usize, w: usize, ops: u64, t: &Tally) {
    eprintln!(
        "power-loss sweep, {path:?} path, {} ({e} B sectors, {w}-byte writes): {ops} flash \
         operations = {} cut points, {} double-cut points, {} power cuts taken, {} boots; {} \
         ended on the new image, {} on the old one; {} needed the server to send the update \
         again; {} lost only the outcome report (cut after the last write completed); {} bytes \
         downloaded again in all (at most {} in one run)",
        flash.label,
        t.cut_points,
        t.double_cut_points,
        t.power_cuts,
        t.boots,
        t.on_new_image,
        t.on_old_image,
        t.needed_server_retry,
        t.reports_lost,
        t.redownloaded_bytes,
        t.max_redownloaded
    );
}

/// The sweep of `path` on NOR (two geometries) and on write-once flash (8- and 32-byte words).
fn on_every_flash(path: Path, double: bool) -> Vec<(u64, Tally)> {
    vec![
        sweep::<ERASE, WRITE>(path, NOR, double),
        sweep::<256, 16>(path, NOR, double),
        sweep::<2048, 8>(path, ECC8, double),
        sweep::<ERASE, 32>(path, ECC32, double),
    ]
}

#[test]
fn power_cut_at_every_flash_operation_of_a_successful_update_keeps_a_bootable_device() {
    for (ops, t) in on_every_flash(Path::Update, true) {
        assert_eq!(
            t.on_new_image,
            ops + t.double_cut_points,
            "every cut ends on the new image"
        );
    }
}

#[test]
fn power_cut_at_every_flash_operation_of_a_reverted_update_keeps_the_old_image() {
    for (ops, t) in on_every_flash(Path::Revert, true) {
        assert_eq!(t.on_old_image, ops + t.double_cut_points);
    }
}

#[test]
fn power_cut_at_every_flash_operation_of_a_pushed_update_keeps_a_bootable_device() {
    for (ops, t) in on_every_flash(Path::Push, true) {
        assert_eq!(t.on_new_image, ops + t.double_cut_points);
    }
}

#[test]
fn power_cut_at_every_flash_operation_of_a_deferred_install_keeps_a_bootable_device() {
    for (ops, t) in on_every_flash(Path::DeferredInstall, true) {
        assert_eq!(t.on_new_image, ops + t.double_cut_points);
    }
}

#[test]
fn power_cut_at_every_flash_operation_of_a_cancel_leaves_the_old_image_and_a_clean_journal() {
    for (ops, t) in on_every_flash(Path::Cancel, true) {
        // Checked after the cancel; the update sent afterwards then ends on the new image.
        assert_eq!(t.on_new_image, ops + t.double_cut_points);
    }
}

#[test]
fn power_cut_at_every_flash_operation_of_an_update_that_rewrites_the_journal() {
    // The image needs more offset entries than a journal copy holds.
    let layout = Layout::packed(SLOT_SIZE, ERASE as u32);
    let first_entry = (HEADER_SPACE + journal::ENCODED_LEN as u32).div_ceil(ENTRY_LEN) * ENTRY_LEN;
    let slots = (layout.journal.size / 2 - first_entry) / ENTRY_LEN;
    let blocks = Path::JournalRewrite.image().len().div_ceil(BLOCK as usize) as u32;
    eprintln!("journal rewrite path: {blocks} blocks, {slots} entry slots per journal copy");
    assert!(blocks > slots + 2, "{blocks} blocks, {slots} slots");
    for (ops, t) in on_every_flash(Path::JournalRewrite, true) {
        assert_eq!(t.on_new_image, ops + t.double_cut_points);
    }
}

#[test]
fn power_cut_at_every_flash_operation_of_the_confirm_moves_the_counter_with_the_slot() {
    for (ops, t) in on_every_flash(Path::Confirm, true) {
        assert!(
            ops >= 4,
            "bootloader mark, confirm and journal records: {ops}"
        );
        assert_eq!(t.on_new_image, ops + t.double_cut_points);
    }
}

#[test]
fn the_journal_rewrite_branch_is_taken_mid_download() {
    // Without cuts: the long update erases a journal copy once more than the short one (the
    // entry slots filled up and the record was rewritten), on every flash mode.
    let keys = trusted_keys();
    for flash in [NOR, ECC8, ECC32] {
        let mut erases = Vec::new();
        for path in [Path::Update, Path::JournalRewrite] {
            let mut dev = make::<ERASE, 32>(&keys, path, flash);
            let journal = dev.config.layout.journal;
            let sectors = journal.offset as usize / ERASE..journal.end() as usize / ERASE;
            let before: u32 = dev.flash.wear()[sectors.clone()].iter().sum();
            drive(&mut dev, path, &path.image());
            erases.push(dev.flash.wear()[sectors].iter().sum::<u32>() - before);
            let st: BootState = dev.boot_state();
            assert_eq!(st.installed_sequence, NEW_SEQ, "{path:?}");
        }
        eprintln!("journal copy erases, {}: {erases:?}", flash.label);
        assert_eq!(erases[1], erases[0] + 1, "{}", flash.label);
    }
}
