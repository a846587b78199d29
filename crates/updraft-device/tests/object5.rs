//! Object /5 transitions (protocols.md section 1) and the refusals, driven through the core.

mod common;

use common::*;
use updraft_device::object5::OpError;
use updraft_device::update::{DownloadFailure, Step};
use updraft_device::{Action, Decision, Event, ImageState, State, UpdateResult};
use updraft_manifest::PublicKey;

fn lwm2m_device<'k>(keys: &'k [PublicKey], img: &[u8]) -> Device<'k> {
    let mut cfg = config(keys);
    cfg.auto_execute = false;
    device_with(cfg, server(img))
}

fn notifies(log: &[Action]) -> Vec<(State, UpdateResult)> {
    log.iter()
        .filter_map(|a| match a {
            Action::Notify { state, result, .. } => Some((*state, *result)),
            _ => None,
        })
        .collect()
}

fn status(dev: &Device<'_>) -> (State, UpdateResult) {
    (dev.core().state(), dev.core().result())
}

/// Drive to Downloaded (LwM2M flavour: waits for Execute).
fn downloaded<'k>(keys: &'k [PublicKey], img: &[u8]) -> Device<'k> {
    let mut dev = lwm2m_device(keys, img);
    assert_eq!(dev.send(Event::WritePackageUri(URI)), Ok(()));
    dev.run(10_000);
    assert_eq!(status(&dev), (State::Downloaded, UpdateResult::Initial));
    dev
}

/// Drive to Updating: install authorized, the reboot not yet carried out.
fn updating<'k>(keys: &'k [PublicKey], img: &[u8]) -> Device<'k> {
    let mut dev = downloaded(keys, img);
    assert_eq!(dev.send(Event::Execute), Ok(()));
    let asked = drain(&mut dev);
    assert!(
        asked
            .iter()
            .any(|a| matches!(a, Action::AuthorizeInstall { .. }))
    );
    assert_eq!(
        dev.send(Event::InstallAuthorization(Decision::Authorize)),
        Ok(())
    );
    let acts = drain(&mut dev);
    assert!(acts.contains(&Action::Reboot));
    assert_eq!(status(&dev), (State::Updating, UpdateResult::Initial));
    dev
}

#[test]
fn package_uri_write_moves_idle_to_downloading_and_asks_for_the_manifest() {
    each_flash(|| {
        let keys = trusted_keys();
        let mut dev = lwm2m_device(&keys, &new_image());
        assert_eq!(dev.send(Event::WritePackageUri(URI)), Ok(()));
        let t = dev.now;
        assert_eq!(status(&dev), (State::Downloading, UpdateResult::Initial));
        assert_eq!(dev.core().last_state_change_time(), Some(t));
        assert_eq!(dev.core().package_uri(), URI);
        let acts = drain(&mut dev);
        assert_eq!(
            acts,
            vec![
                Action::Notify {
                    state: State::Downloading,
                    result: UpdateResult::Initial,
                    changed_at: Some(t)
                },
                Action::FetchManifest,
            ]
        );
    });
}

#[test]
fn verified_download_moves_downloading_to_downloaded_with_result_0() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = downloaded(&keys, &img);
        let slot_b = dev.config.layout.slot_b;
        let range = slot_b.offset as usize..slot_b.offset as usize + img.len();
        assert_eq!(&dev.flash.contents()[range], &img[..]);
        assert_eq!(dev.core().image_uri(), Some(IMAGE_URI));
        assert_eq!(dev.core().pkg_version(), Some("2.0.0"));
        assert!(
            dev.log
                .iter()
                .any(|a| matches!(a, Action::AuthorizeDownload { .. }))
        );
        assert!(
            !dev.log
                .iter()
                .any(|a| matches!(a, Action::AuthorizeInstall { .. }))
        );
        assert_eq!(drain(&mut dev), vec![]);
    });
}

#[test]
fn execute_in_downloaded_updates_and_reports_success_after_the_trial_boot() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = updating(&keys, &img);
        dev.log.clear();
        dev.power_on();
        dev.run(100);
        assert_eq!(status(&dev), (State::Idle, UpdateResult::Success));
        assert_eq!(dev.booted.map(|b| b.slot), Some(updraft_device::Slot::B));
        assert_eq!(dev.booted_digest(img.len()), Some(sha256(&img)));
        assert_eq!(dev.boot_state().installed_sequence, NEW_SEQ);
        assert!(dev.log.contains(&Action::ImageState(ImageState::Testing)));
        assert!(dev.log.contains(&Action::ImageState(ImageState::Accepted)));
        assert!(dev.log.contains(&Action::Completed(UpdateResult::Success)));
        assert_eq!(
            notifies(&dev.log),
            vec![
                (State::Idle, UpdateResult::Initial),
                (State::Updating, UpdateResult::Initial),
                (State::Idle, UpdateResult::Success)
            ]
        );
    });
}

#[test]
fn first_pushed_block_moves_idle_to_downloading_and_the_push_completes_the_download() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = lwm2m_device(&keys, &img);
        let pkg = push_package(&envelope(&spec(NEW_SEQ, &img)), &img);
        let mut off = 0usize;
        let mut refused = 0;
        while off < pkg.len() {
            let end = (off + 512).min(pkg.len());
            let r = dev.send(Event::WritePackage {
                offset: off as u32,
                data: &pkg[off..end],
            });
            if off == 0 {
                assert_eq!(status(&dev).0, State::Downloading);
            }
            for a in drain(&mut dev) {
                if matches!(a, Action::AuthorizeDownload { .. }) {
                    dev.send(Event::DownloadAuthorization(Decision::Authorize))
                        .ok();
                }
            }
            match r {
                Err(OpError::ServiceUnavailable) => refused += 1,
                other => {
                    assert_eq!(other, Ok(()));
                    off = end;
                }
            }
        }
        assert_eq!(
            refused, 1,
            "the block after the envelope waits for authorization once"
        );
        assert_eq!(status(&dev), (State::Downloaded, UpdateResult::Initial));
    });
}

#[test]
fn pushed_bytes_beyond_the_signed_size_are_refused_with_result_5() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = lwm2m_device(&keys, &img);
        let mut pkg = push_package(&envelope(&spec(NEW_SEQ, &img)), &img);
        pkg.extend_from_slice(b"appended");
        let env_end = 4 + envelope(&spec(NEW_SEQ, &img)).len();
        dev.send(Event::WritePackage {
            offset: 0,
            data: &pkg[..env_end],
        })
        .ok();
        dev.send(Event::DownloadAuthorization(Decision::Authorize))
            .ok();
        dev.send(Event::WritePackage {
            offset: env_end as u32,
            data: &pkg[env_end..],
        })
        .ok();
        assert_eq!(status(&dev), (State::Idle, UpdateResult::IntegrityFailure));
        assert_eq!(dev.boot_state().trial, None);
    });
}

#[test]
fn uri_with_unsupported_scheme_is_refused_with_result_9_and_state_stays_idle() {
    each_flash(|| {
        let keys = trusted_keys();
        let mut dev = lwm2m_device(&keys, &new_image());
        assert_eq!(
            dev.send(Event::WritePackageUri("https://fw.example/x")),
            Err(OpError::BadRequest)
        );
        assert_eq!(
            status(&dev),
            (State::Idle, UpdateResult::UnsupportedProtocol)
        );
    });
}

#[test]
fn malformed_uri_is_refused_with_result_7() {
    each_flash(|| {
        let keys = trusted_keys();
        let mut dev = lwm2m_device(&keys, &new_image());
        assert_eq!(
            dev.send(Event::WritePackageUri("not a uri")),
            Err(OpError::BadRequest)
        );
        assert_eq!(status(&dev), (State::Idle, UpdateResult::InvalidUri));
    });
}

/// Serve `env` as the manifest; the outcome and the flash ops it caused.
fn manifest_outcome(env: Vec<u8>) -> ((State, UpdateResult), u64) {
    let keys = trusted_keys();
    let img = new_image();
    let mut srv = server(&img);
    srv.envelope = env;
    let mut cfg = config(&keys);
    cfg.auto_execute = false;
    let mut dev = device_with(cfg, srv);
    let before = dev.flash.ops();
    dev.send(Event::WritePackageUri(URI)).ok();
    dev.run(10_000);
    assert!(!dev.log.iter().any(|a| matches!(
        a,
        Action::AuthorizeDownload { .. } | Action::FetchBlock { .. }
    )));
    (status(&dev), dev.flash.ops() - before)
}

#[test]
fn bad_signature_ends_idle_with_result_5_and_writes_nothing() {
    each_flash(|| {
        let img = new_image();
        let env = updraft_manifest::sign(&spec(NEW_SEQ, &img), &other_key());
        assert_eq!(
            manifest_outcome(env),
            ((State::Idle, UpdateResult::IntegrityFailure), 0)
        );
    });
}

#[test]
fn manifest_for_another_class_ends_idle_with_result_6_and_writes_nothing() {
    each_flash(|| {
        let img = new_image();
        let mut s = spec(NEW_SEQ, &img);
        s.class_id = updraft_manifest::Uuid([0x99; 16]);
        assert_eq!(
            manifest_outcome(envelope(&s)),
            ((State::Idle, UpdateResult::UnsupportedPackage), 0)
        );
    });
}

#[test]
fn malformed_envelope_ends_idle_with_result_6_and_writes_nothing() {
    each_flash(|| {
        assert_eq!(
            manifest_outcome(b"\xd8\x6b\xa0 garbage".to_vec()).0.1,
            UpdateResult::UnsupportedPackage
        );
        let oversized = vec![0u8; updraft_manifest::MAX_ENVELOPE_LEN + 1];
        assert_eq!(
            manifest_outcome(oversized),
            ((State::Idle, UpdateResult::UnsupportedPackage), 0)
        );
    });
}

#[test]
fn image_larger_than_the_candidate_slot_ends_idle_with_result_2_and_writes_nothing() {
    each_flash(|| {
        let img = new_image();
        let mut s = spec(NEW_SEQ, &img);
        s.image_size = u64::from(SLOT_SIZE) + 1;
        assert_eq!(
            manifest_outcome(envelope(&s)),
            ((State::Idle, UpdateResult::NotEnoughFlash), 0)
        );
    });
}

#[test]
fn replayed_sequence_not_above_installed_ends_idle_with_result_5_and_writes_nothing() {
    each_flash(|| {
        let img = new_image();
        assert_eq!(
            manifest_outcome(envelope(&spec(OLD_SEQ, &img))),
            ((State::Idle, UpdateResult::IntegrityFailure), 0)
        );
    });
}

#[test]
fn expired_manifest_ends_idle_with_result_5_when_time_is_known() {
    each_flash(|| {
        let img = new_image();
        let mut s = spec(NEW_SEQ, &img);
        s.expires_at = Some(1_000);
        assert_eq!(
            manifest_outcome(envelope(&s)),
            ((State::Idle, UpdateResult::IntegrityFailure), 0)
        );
    });
}

#[test]
fn digest_mismatch_ends_idle_with_result_5_and_nothing_is_installed() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut srv = server(&img);
        srv.image[100] ^= 1;
        let mut dev = device(&keys, srv);
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(10_000);
        assert_eq!(status(&dev), (State::Idle, UpdateResult::IntegrityFailure));
        assert!(
            dev.log
                .contains(&Action::Completed(UpdateResult::IntegrityFailure))
        );
        assert!(
            !dev.log
                .iter()
                .any(|a| matches!(a, Action::AuthorizeInstall { .. } | Action::Reboot))
        );
        assert_eq!(dev.boot_state().trial, None);
        dev.power_on();
        dev.run(100);
        assert_eq!(
            dev.booted_digest(old_image().len()),
            Some(sha256(&old_image()))
        );
        assert_eq!(step(&dev), Step::Idle);
    });
}

#[test]
fn transfer_failures_end_idle_with_results_4_7_and_9() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        for (why, result) in [
            (
                DownloadFailure::ConnectionLost,
                UpdateResult::ConnectionLost,
            ),
            (DownloadFailure::NotFound, UpdateResult::InvalidUri),
            (
                DownloadFailure::UnsupportedProtocol,
                UpdateResult::UnsupportedProtocol,
            ),
        ] {
            let mut dev = lwm2m_device(&keys, &img);
            dev.send(Event::WritePackageUri(URI)).ok();
            drain(&mut dev);
            dev.send(Event::DownloadFailed(why)).ok();
            assert_eq!(status(&dev), (State::Idle, result), "{why:?}");
        }
    });
}

#[test]
fn connection_lost_during_image_download_ends_idle_with_result_4() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = lwm2m_device(&keys, &img);
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(4);
        assert_eq!(step(&dev), Step::Downloading);
        drain(&mut dev);
        dev.send(Event::DownloadFailed(DownloadFailure::ConnectionLost))
            .ok();
        assert_eq!(status(&dev), (State::Idle, UpdateResult::ConnectionLost));
    });
}

#[test]
fn empty_uri_resets_downloading_and_downloaded_to_idle_with_result_0() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = lwm2m_device(&keys, &img);
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(6);
        assert_eq!(status(&dev).0, State::Downloading);
        assert_eq!(dev.send(Event::WritePackageUri("")), Ok(()));
        assert_eq!(status(&dev), (State::Idle, UpdateResult::Initial));

        let mut dev = downloaded(&keys, &img);
        assert_eq!(dev.send(Event::WritePackageUri("")), Ok(()));
        assert_eq!(status(&dev), (State::Idle, UpdateResult::Initial));
        dev.power_on();
        assert_eq!(
            status(&dev),
            (State::Idle, UpdateResult::Initial),
            "the image is discarded"
        );
    });
}

#[test]
fn single_zero_byte_package_write_resets_to_idle_with_result_0() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = downloaded(&keys, &img);
        assert_eq!(
            dev.send(Event::WritePackage {
                offset: 0,
                data: &[0]
            }),
            Ok(())
        );
        assert_eq!(status(&dev), (State::Idle, UpdateResult::Initial));
    });
}

#[test]
fn writes_resets_cancel_and_execute_are_method_not_allowed_while_updating() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = updating(&keys, &img);
        assert_eq!(
            dev.send(Event::WritePackageUri("")),
            Err(OpError::MethodNotAllowed)
        );
        assert_eq!(
            dev.send(Event::WritePackageUri(URI)),
            Err(OpError::MethodNotAllowed)
        );
        assert_eq!(
            dev.send(Event::WritePackage {
                offset: 0,
                data: &[0]
            }),
            Err(OpError::MethodNotAllowed)
        );
        assert_eq!(
            dev.send(Event::WritePackage {
                offset: 0,
                data: &[1, 2]
            }),
            Err(OpError::MethodNotAllowed)
        );
        assert_eq!(dev.send(Event::Cancel), Err(OpError::MethodNotAllowed));
        assert_eq!(dev.send(Event::Execute), Err(OpError::MethodNotAllowed));
        assert_eq!(status(&dev), (State::Updating, UpdateResult::Initial));
    });
}

#[test]
fn cancel_after_update_while_testing_is_method_not_allowed() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = updating(&keys, &img);
        dev.app.self_test_passes = true;
        // Boot into the trial without running the self-test yet.
        dev.flash.reboot();
        updraft_device::select_boot_slot(&mut dev.flash, &dev.config.layout).ok();
        dev.core = updraft_device::UpdateCore::start(&mut dev.flash, dev.config, Some(5)).ok();
        assert_eq!(step(&dev), Step::Testing);
        assert_eq!(dev.send(Event::Cancel), Err(OpError::MethodNotAllowed));
        assert_eq!(
            dev.send(Event::WritePackageUri(URI)),
            Err(OpError::MethodNotAllowed)
        );
    });
}

#[test]
fn write_uri_while_downloading_is_bad_request() {
    each_flash(|| {
        let keys = trusted_keys();
        let mut dev = lwm2m_device(&keys, &new_image());
        dev.send(Event::WritePackageUri(URI)).ok();
        assert_eq!(
            dev.send(Event::WritePackageUri(URI)),
            Err(OpError::BadRequest)
        );
        assert_eq!(status(&dev), (State::Downloading, UpdateResult::Initial));
    });
}

#[test]
fn execute_when_not_downloaded_is_method_not_allowed() {
    each_flash(|| {
        let keys = trusted_keys();
        let mut dev = lwm2m_device(&keys, &new_image());
        assert_eq!(dev.send(Event::Execute), Err(OpError::MethodNotAllowed));
        dev.send(Event::WritePackageUri(URI)).ok();
        assert_eq!(dev.send(Event::Execute), Err(OpError::MethodNotAllowed));
    });
}

#[test]
fn cancel_before_update_goes_idle_with_result_10() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = lwm2m_device(&keys, &img);
        assert_eq!(
            dev.send(Event::Cancel),
            Err(OpError::MethodNotAllowed),
            "nothing to cancel"
        );
        dev.send(Event::WritePackageUri(URI)).ok();
        assert_eq!(dev.send(Event::Cancel), Ok(()));
        assert_eq!(status(&dev), (State::Idle, UpdateResult::Cancelled));

        let mut dev = downloaded(&keys, &img);
        assert_eq!(dev.send(Event::Cancel), Ok(()));
        assert_eq!(status(&dev), (State::Idle, UpdateResult::Cancelled));
        assert!(drain(&mut dev).contains(&Action::Completed(UpdateResult::Cancelled)));
    });
}

#[test]
fn deferred_install_stays_downloaded_with_result_11() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = downloaded(&keys, &img);
        dev.send(Event::WriteMaxDeferPeriod(3600)).ok();
        dev.send(Event::Execute).ok();
        dev.send(Event::InstallAuthorization(Decision::Defer)).ok();
        assert_eq!(status(&dev), (State::Downloaded, UpdateResult::Deferred));
    });
}

#[test]
fn failed_install_goes_from_updating_back_to_downloaded_with_result_8() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = downloaded(&keys, &img);
        dev.send(Event::Execute).ok();
        drain(&mut dev);
        dev.flash.cut_power_at(1); // the boot-state write fails
        let core = dev.core.as_mut().expect("on");
        let r = core.handle(
            &mut dev.flash,
            Some(9),
            Event::InstallAuthorization(Decision::Authorize),
        );
        assert_eq!(r, Err(OpError::Internal));
        let seen = notifies(&drain(&mut dev));
        assert_eq!(
            seen,
            vec![
                (State::Updating, UpdateResult::Initial),
                (State::Downloaded, UpdateResult::UpdateFailed)
            ]
        );
    });
}

#[test]
fn rejected_self_test_reverts_and_reports_idle_with_result_8() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = updating(&keys, &img);
        dev.app.self_test_passes = false;
        dev.log.clear();
        dev.power_on();
        dev.run(100);
        assert_eq!(status(&dev), (State::Idle, UpdateResult::UpdateFailed));
        assert!(dev.log.contains(&Action::ImageState(ImageState::Rejected)));
        assert_eq!(
            dev.booted_digest(old_image().len()),
            Some(sha256(&old_image()))
        );
        assert_eq!(dev.boot_state().installed_sequence, OLD_SEQ);
    });
}

#[test]
fn install_that_never_boots_is_aborted_and_reports_idle_with_result_5() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = updating(&keys, &img);
        let b = dev.config.layout.slot_b.offset;
        dev.flash.corrupt(b, 0x5A); // the candidate is damaged after its check
        dev.log.clear();
        dev.power_on();
        dev.run(100);
        assert_eq!(
            dev.booted.map(|d| d.image_state),
            Some(Some(ImageState::Aborted))
        );
        assert!(dev.log.contains(&Action::ImageState(ImageState::Aborted)));
        assert_eq!(status(&dev), (State::Idle, UpdateResult::IntegrityFailure));
        assert_eq!(
            dev.booted_digest(old_image().len()),
            Some(sha256(&old_image()))
        );
    });
}

#[test]
fn every_state_or_result_change_is_notified_with_the_event_time() {
    each_flash(|| {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        dev.send(Event::WritePackageUri(URI)).ok();
        dev.run(10_000);
        let mut last: Option<(State, UpdateResult)> = None;
        let mut count = 0;
        for a in &dev.log {
            if let Action::Notify {
                state,
                result,
                changed_at,
            } = a
            {
                assert!(changed_at.is_some());
                assert_ne!(last, Some((*state, *result)), "a notify without a change");
                last = Some((*state, *result));
                count += 1;
            }
        }
        assert!(count >= 4, "{count}");
        assert_eq!(last, Some((State::Idle, UpdateResult::Success)));
        assert!(dev.core().last_state_change_time().is_some());
    });
}

#[test]
fn severity_and_max_defer_period_are_writable_and_a_bad_severity_is_bad_request() {
    each_flash(|| {
        let keys = trusted_keys();
        let mut dev = lwm2m_device(&keys, &new_image());
        assert_eq!(dev.core().severity(), updraft_device::Severity::Mandatory);
        assert_eq!(dev.send(Event::WriteSeverity(0)), Ok(()));
        assert_eq!(dev.core().severity(), updraft_device::Severity::Critical);
        assert_eq!(dev.send(Event::WriteSeverity(3)), Err(OpError::BadRequest));
        assert_eq!(dev.send(Event::WriteMaxDeferPeriod(60)), Ok(()));
        assert_eq!(dev.core().max_defer_period(), 60);
    });
}
