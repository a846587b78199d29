//! Authorization, resume, statistics, trial boot and anti-rollback, end to end on the
//! simulated device.

mod common;

use common::*;
use updraft_device::update::{StartError, Step};
use updraft_device::{
    Action, Decision, Event, ImageState, ResumeMode, Slot, State, UpdateCore, UpdateResult,
};

fn count(log: &[Action], f: impl Fn(&Action) -> bool) -> usize {
    log.iter().filter(|a| f(a)).count()
}

fn asked_download(log: &[Action]) -> usize {
    count(log, |a| matches!(a, Action::AuthorizeDownload { .. }))
}

fn run_until_served(dev: &mut Device<'_>, blocks: usize) {
    while dev.served.len() < blocks {
        assert!(dev.run(1) > 0, "stalled");
    }
}

fn assert_new_image_running(dev: &mut Device<'_>, img: &[u8]) {
    assert_eq!(
        (dev.core().state(), dev.core().result()),
        (State::Idle, UpdateResult::Success)
    );
    assert_eq!(dev.booted_digest(img.len()), Some(sha256(img)));
    assert_eq!(dev.boot_state().installed_sequence, NEW_SEQ);
}

fn first_fetch(actions: &[Action]) -> Option<u32> {
    actions.iter().find_map(|a| match a {
        Action::FetchBlock { offset, .. } => Some(*offset),
        _ => None,
    })
}

#[test]
fn full_update_installs_boots_confirms_and_reports_success() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(10_000);
        assert_new_image_running(&mut dev, &img);
        assert_eq!(dev.reboots, 1);
        assert_eq!(count(&dev.log, |a| matches!(a, Action::Completed(_))), 1);
    });
}

#[test]
fn download_reject_discards_and_the_same_manifest_is_never_asked_again() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        dev.app.download = Decision::Reject;
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(100);
        assert_eq!(
            (dev.core().state(), dev.core().result()),
            (State::Idle, UpdateResult::Cancelled)
        );
        assert!(
            dev.log
                .contains(&Action::Completed(UpdateResult::Cancelled))
        );
        dev.power_on();
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(100);
        assert_eq!(asked_download(&dev.log), 1, "remembered across a reboot");
        assert_eq!(dev.core().result(), UpdateResult::Cancelled);
        assert!(dev.served.is_empty());
    });
}

#[test]
fn download_defer_keeps_the_manifest_and_an_explicit_resume_asks_again() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        dev.send(Event::WriteMaxDeferPeriod(3600)).ok();
        dev.app.download = Decision::Defer;
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(100);
        assert_eq!(step(&dev), Step::DownloadDeferred);
        assert_eq!(dev.core().result(), UpdateResult::Deferred);
        assert!(dev.served.is_empty());
        dev.app.download = Decision::Authorize;
        dev.send(Event::Resume).ok();
        dev.run(10_000);
        assert_eq!(asked_download(&dev.log), 2);
        assert_new_image_running(&mut dev, &img);
    });
}

#[test]
fn download_defer_continues_on_the_next_boot() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        dev.send(Event::WriteMaxDeferPeriod(3600)).ok();
        dev.app.download = Decision::Defer;
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(100);
        dev.app.download = Decision::Authorize;
        dev.power_on();
        assert_eq!(dev.core().result(), UpdateResult::Deferred);
        dev.run(10_000);
        assert_new_image_running(&mut dev, &img);
    });
}

#[test]
fn download_defer_continues_on_the_next_registration_update() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        dev.send(Event::WriteMaxDeferPeriod(3600)).ok();
        dev.app.download = Decision::Defer;
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(100);
        dev.app.download = Decision::Authorize;
        dev.send(Event::RegistrationUpdated).ok();
        dev.run(10_000);
        assert_new_image_running(&mut dev, &img);
    });
}

#[test]
fn zero_maximum_defer_period_does_not_allow_deferring() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        assert_eq!(dev.core().max_defer_period(), 0);
        dev.app.download = Decision::Defer;
        dev.app.install = Decision::Defer;
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(10_000);
        assert_new_image_running(&mut dev, &img);
        assert!(!dev.log.iter().any(|a| matches!(
            a,
            Action::Notify {
                result: UpdateResult::Deferred,
                ..
            }
        )));
    });
}

#[test]
fn install_defer_keeps_the_verified_candidate_and_installs_at_the_next_reboot() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        dev.send(Event::WriteMaxDeferPeriod(3600)).ok();
        dev.app.install = Decision::Defer;
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(10_000);
        assert_eq!(
            (dev.core().state(), dev.core().result()),
            (State::Downloaded, UpdateResult::Deferred)
        );
        assert_eq!(dev.reboots, 0);
        dev.power_on(); // the application reboots when it suits it
        dev.run(100);
        assert_new_image_running(&mut dev, &img);
    });
}

#[test]
fn install_defer_then_resume_asks_again_and_installs_now() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        dev.send(Event::WriteMaxDeferPeriod(3600)).ok();
        dev.app.install = Decision::Defer;
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(10_000);
        dev.app.install = Decision::Authorize;
        dev.send(Event::Resume).ok();
        dev.run(100);
        assert_eq!(
            count(&dev.log, |a| matches!(a, Action::AuthorizeInstall { .. })),
            2
        );
        assert_eq!(dev.reboots, 1);
        assert_new_image_running(&mut dev, &img);
    });
}

#[test]
fn install_reject_discards_the_candidate_and_keeps_the_old_image() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        dev.app.install = Decision::Reject;
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(10_000);
        assert_eq!(
            (dev.core().state(), dev.core().result()),
            (State::Idle, UpdateResult::Cancelled)
        );
        assert_eq!(dev.boot_state().trial, None);
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(100);
        assert_eq!(asked_download(&dev.log), 1);
    });
}

#[test]
fn progress_is_reported_about_every_5_percent_and_completion_once() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = image(16 * 1024 - 100, 9);
        let mut dev = device(&keys, server(&img));
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(10_000);
        let percents: Vec<u8> = dev
            .log
            .iter()
            .filter_map(|a| match a {
                Action::Progress { percent } => Some(*percent),
                _ => None,
            })
            .collect();
        assert_eq!(percents.last(), Some(&100));
        assert!(
            percents
                .windows(2)
                .all(|w| w[0] < w[1] && w[1] - w[0] <= 10),
            "{percents:?}"
        );
        assert!(percents.iter().all(|p| p % 5 == 0));
        assert!(percents.len() >= 19, "{percents:?}");
        assert_eq!(count(&dev.log, |a| matches!(a, Action::Completed(_))), 1);
    });
}

#[test]
fn statistics_count_received_queued_processed_and_dropped_blocks() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        dev.send(Event::WritePackageUri(URI)).ok();
        run_until_served(&mut dev, 3);
        dev.send(Event::Block {
            offset: 99,
            data: &[1, 2, 3],
            token: b"etag-1",
        })
        .ok();
        let s = dev.core().stats();
        assert_eq!(
            (s.blocks_received, s.blocks_processed, s.blocks_dropped),
            (4, 3, 1)
        );
        assert!(s.blocks_queued >= 4);
        let blocks = img.len().div_ceil(BLOCK as usize) as u32;
        while step(&dev) == Step::Downloading {
            dev.run(1);
        }
        let s = dev.core().stats();
        assert_eq!(s.blocks_processed, blocks);
        assert_eq!(s.blocks_received, s.blocks_processed + s.blocks_dropped);
    });
}

#[test]
fn resume_after_reboot_rehashes_the_prefix_and_asks_for_the_next_block() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        dev.send(Event::WritePackageUri(URI)).ok();
        run_until_served(&mut dev, 5);
        dev.power_on();
        assert_eq!(dev.core().state(), State::Downloading);
        let acts = drain(&mut dev);
        // 5 blocks are durable; write-once flash goes back to the start of their sector.
        let at = resume_offset(5 * BLOCK);
        assert_eq!(first_fetch(&acts), Some(at));
        assert_eq!(dev.core().resume_token(), b"etag-1");
        assert_eq!(dev.core().download_progress(), Some((at, img.len() as u32)));
        // Serve the fetch drained above by hand, then let the loop finish.
        let off = at as usize;
        dev.send(Event::Block {
            offset: off as u32,
            data: &img[off..off + BLOCK as usize],
            token: b"etag-1",
        })
        .ok();
        dev.run(10_000);
        assert_new_image_running(&mut dev, &img);
        assert_eq!(
            asked_download(&dev.log),
            1,
            "a resumed download is not re-authorized"
        );
    });
}

#[test]
fn changed_resume_token_restarts_the_download_from_zero() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        dev.send(Event::WritePackageUri(URI)).ok();
        run_until_served(&mut dev, 5);
        dev.server.token = b"etag-2".to_vec();
        dev.run(10_000);
        assert_eq!(dev.served.iter().filter(|&&o| o == 0).count(), 2);
        assert_new_image_running(&mut dev, &img);
    });
}

#[test]
fn restart_mode_downloads_again_from_zero_after_a_reboot() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut cfg = config(&keys);
        cfg.resume = ResumeMode::Restart;
        let mut dev = device_with(cfg, server(&img));
        dev.send(Event::WritePackageUri(URI)).ok();
        run_until_served(&mut dev, 5);
        dev.power_on();
        assert_eq!(first_fetch(&drain(&mut dev)), Some(0));
    });
}

#[test]
fn unsupported_resume_mode_reports_connection_lost_after_a_reboot() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut cfg = config(&keys);
        cfg.resume = ResumeMode::Unsupported;
        let mut dev = device_with(cfg, server(&img));
        dev.send(Event::WritePackageUri(URI)).ok();
        run_until_served(&mut dev, 5);
        dev.power_on();
        assert_eq!(
            (dev.core().state(), dev.core().result()),
            (State::Idle, UpdateResult::ConnectionLost)
        );
        assert_eq!(first_fetch(&drain(&mut dev)), None);
    });
}

#[test]
fn a_download_without_a_manifest_uri_resumes_when_the_same_manifest_comes_again_after_a_reboot() {
    each_flash(|| {
        // DDI and MQTT runtimes know the image location from the server, not from the manifest.
        let keys = trusted_keys();
        let img = new_image();
        let mut srv = server(&img);
        let mut s = spec(NEW_SEQ, &img);
        s.uri = None;
        srv.envelope = envelope(&s);
        let mut dev = device(&keys, srv);
        dev.send(Event::WritePackageUri(URI)).ok();
        run_until_served(&mut dev, 5);
        dev.power_on();
        assert_eq!(
            (dev.core().state(), dev.core().result()),
            (State::Idle, UpdateResult::ConnectionLost)
        );
        assert_eq!(first_fetch(&drain(&mut dev)), None);
        let before = dev.served.len();
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(10_000);
        let resumed_at = dev.served.get(before).copied();
        assert!(resumed_at >= Some(4 * BLOCK), "resumed at {resumed_at:?}");
        assert_eq!(asked_download(&dev.log), 1);
        assert_new_image_running(&mut dev, &img);
    });
}

#[test]
fn connection_lost_then_the_same_manifest_continues_from_the_durable_offset() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        dev.send(Event::WritePackageUri(URI)).ok();
        run_until_served(&mut dev, 5);
        drain(&mut dev);
        dev.send(Event::DownloadFailed(
            updraft_device::DownloadFailure::ConnectionLost,
        ))
        .ok();
        assert_eq!(dev.core().result(), UpdateResult::ConnectionLost);
        let before = dev.served.len();
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(10_000);
        assert_eq!(dev.served.get(before), Some(&(5 * BLOCK)));
        assert_eq!(asked_download(&dev.log), 1);
        assert_new_image_running(&mut dev, &img);
    });
}

#[test]
fn anti_rollback_counter_moves_only_after_the_confirm() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        dev.send(Event::WritePackageUri(URI)).ok();
        while !dev.log.contains(&Action::Reboot) {
            dev.run(1);
        }
        // The harness rebooted into the trial and the self-test confirmed it; replay step by step.
        let keys2 = trusted_keys();
        let mut dev2 = device(&keys2, server(&img));
        dev2.send(Event::WritePackageUri(URI)).ok();
        while !matches!(dev2.core().step(), Step::Rebooting) {
            dev2.run(1);
        }
        assert_eq!(
            dev2.boot_state().installed_sequence,
            OLD_SEQ,
            "installed, not confirmed"
        );
        dev2.flash.reboot();
        let d = updraft_device::select_boot_slot(&mut dev2.flash, &dev2.config.layout).ok();
        assert_eq!(d.map(|d| (d.slot, d.trial)), Some((Slot::B, true)));
        dev2.core = UpdateCore::start(&mut dev2.flash, dev2.config, Some(1)).ok();
        assert_eq!(step(&dev2), Step::Testing);
        assert_eq!(
            dev2.boot_state().installed_sequence,
            OLD_SEQ,
            "testing, not confirmed"
        );
        dev2.send(Event::SelfTest { passed: true }).ok();
        assert_eq!(dev2.boot_state().installed_sequence, NEW_SEQ);
        assert_eq!(dev2.boot_state().active, Slot::B);
        assert_new_image_running(&mut dev, &img);
    });
}

#[test]
fn unconfirmed_trial_image_is_reverted_on_the_next_boot() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        dev.send(Event::WritePackageUri(URI)).ok();
        while !matches!(dev.core().step(), Step::Rebooting) {
            dev.run(1);
        }
        dev.flash.reboot();
        updraft_device::select_boot_slot(&mut dev.flash, &dev.config.layout).ok();
        // The trial image hangs before its self-test; the watchdog resets the device.
        dev.log.clear();
        dev.power_on();
        dev.run(100);
        assert_eq!(
            dev.booted.map(|d| (d.slot, d.image_state)),
            Some((Slot::A, Some(ImageState::Rejected)))
        );
        assert_eq!(
            (dev.core().state(), dev.core().result()),
            (State::Idle, UpdateResult::UpdateFailed)
        );
        assert_eq!(dev.boot_state().installed_sequence, OLD_SEQ);
    });
}

#[test]
fn a_second_update_goes_to_the_other_slot_and_needs_a_higher_sequence() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(10_000);
        let third = image(3000, 3);
        dev.server = server(&third);
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(100);
        assert_eq!(
            dev.core().result(),
            UpdateResult::IntegrityFailure,
            "sequence 2 again is a replay"
        );
        dev.server.envelope = envelope(&spec(3, &third));
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(10_000);
        assert_eq!(dev.booted.map(|d| d.slot), Some(Slot::A));
        assert_eq!(dev.booted_digest(third.len()), Some(sha256(&third)));
        assert_eq!(dev.boot_state().installed_sequence, 3);
    });
}

#[test]
fn core_state_size_for_a_typical_configuration() {
    // Independent of the flash mode.
    let size = core::mem::size_of::<UpdateCore<'static>>();
    println!(
        "size_of::<UpdateCore>() = {size} bytes (envelope buffer {} + state)",
        updraft_manifest::MAX_ENVELOPE_LEN
    );
    assert!(size < 6 * 1024);
}

#[test]
fn es256_signed_manifest_installs_like_ed25519() {
    each_flash(|| {
        let key = updraft_manifest::SigningKey::Es256(
            p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).expect("valid scalar"),
        );
        let keys = vec![signing_key().public_key(), key.public_key()];
        let img = new_image();
        let mut srv = server(&img);
        srv.envelope = updraft_manifest::sign(&spec(NEW_SEQ, &img), &key);
        let mut dev = device(&keys, srv);
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(10_000);
        assert_new_image_running(&mut dev, &img);
    });
}

#[test]
fn deferral_past_the_maximum_defer_period_counts_as_authorization() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        dev.send(Event::WriteMaxDeferPeriod(30)).ok();
        dev.app.download = Decision::Defer;
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(100);
        assert_eq!(step(&dev), Step::DownloadDeferred);
        dev.send(Event::Resume).ok();
        dev.run(100);
        assert_eq!(
            step(&dev),
            Step::DownloadDeferred,
            "still within the period"
        );
        dev.now += 60;
        dev.send(Event::Resume).ok();
        dev.run(10_000);
        assert_new_image_running(&mut dev, &img);
    });
}

#[test]
fn journal_progress_costs_one_write_per_block_and_few_erases() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = image(16 * 1024 - 7, 4);
        let mut dev = device(&keys, server(&img));
        let journal = dev.config.layout.journal;
        let sectors = journal.offset as usize / ERASE..journal.end() as usize / ERASE;
        let before: u32 = dev.flash.wear()[sectors.clone()].iter().sum();
        let (w0, e0) = (dev.flash.writes(), dev.flash.erases());
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(10_000);
        assert_new_image_running(&mut dev, &img);
        let journal_erases: u32 = dev.flash.wear()[sectors].iter().sum::<u32>() - before;
        let blocks = img.len().div_ceil(BLOCK as usize) as u32;
        println!(
            "one update of {blocks} blocks: {} writes, {} erases, {journal_erases} journal-sector erases",
            dev.flash.writes() - w0,
            dev.flash.erases() - e0
        );
        assert!(
            journal_erases * 4 < blocks,
            "{journal_erases} journal erases for {blocks} blocks"
        );
    });
}

#[test]
fn pushed_download_interrupted_by_a_reboot_resumes_by_pulling_the_signed_uri() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        let pkg = push_package(&envelope(&spec(NEW_SEQ, &img)), &img);
        let env_end = pkg.len() - img.len();
        dev.send(Event::WritePackage {
            offset: 0,
            data: &pkg[..env_end],
        })
        .ok();
        dev.send(Event::DownloadAuthorization(Decision::Authorize))
            .ok();
        dev.send(Event::WritePackage {
            offset: env_end as u32,
            data: &pkg[env_end..env_end + 2048],
        })
        .ok();
        assert_eq!(
            dev.core().download_progress(),
            Some((2048, img.len() as u32))
        );
        dev.power_on();
        let acts = drain(&mut dev);
        assert!(acts.contains(&Action::FetchBlock {
            offset: 2048,
            len: BLOCK
        }));
        dev.send(Event::Resume).ok();
        dev.run(10_000);
        assert_new_image_running(&mut dev, &img);
    });
}

#[test]
fn a_damaged_boot_state_keeps_the_device_off_instead_of_resetting_the_counter() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        let region = dev.config.layout.boot_state;
        // Bit rot in both copies (only copy 0 was written at provisioning: damage it, and
        // leave copy 1 not erased either).
        dev.flash.corrupt(region.offset + 36, 0x01);
        dev.flash.corrupt(region.offset + region.size / 2 + 7, 0x80);
        dev.power_on();
        assert!(dev.boot_state_corrupt);
        assert!(
            dev.core.is_none(),
            "the core does not start on a guessed state"
        );
        let started = UpdateCore::start(&mut dev.flash, dev.config, Some(1));
        assert!(matches!(started, Err(StartError::BootStateCorrupt)));
        // A factory-erased area is the default state instead.
        let mut fresh = device(&keys, server(&img));
        let end = fresh.config.layout.boot_state.end();
        use embedded_storage::nor_flash::NorFlash;
        fresh.flash.erase(region.offset, end).ok();
        fresh.power_on();
        assert!(!fresh.boot_state_corrupt);
        assert_eq!(fresh.boot_state().installed_sequence, 0);
    });
}
