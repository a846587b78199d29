//! Arbitrary event sequences with arbitrary bytes (what a network can send) never panic the
//! core, never write over unerased flash nor program a word twice, and keep the core's step
//! consistent with what is on the flash (boot state, journal, slots) after every event.

mod common;

use common::*;
use proptest::prelude::*;
use updraft_device::boot::{BootState, Trial};
use updraft_device::journal::{Journal, Phase};
use updraft_device::update::{DownloadFailure, Step};
use updraft_device::{Decision, Event, ImageState, Slot, UpdateResult};

/// The core's step against the persisted boot state and journal, and the slots' contents.
fn consistent(dev: &mut Device<'_>, img: &[u8]) -> Result<(), String> {
    let layout = dev.config.layout;
    let st = BootState::load(&mut dev.flash, &layout).map_err(|e| format!("boot state: {e:?}"))?;
    let j = Journal::load(&mut dev.flash, &layout).map_err(|e| format!("journal: {e:?}"))?;
    let new_digest = sha256(img);
    let digest = |dev: &mut Device<'_>, slot: Slot| {
        updraft_device::boot::slot_digest(&mut dev.flash, &layout, slot, img.len() as u32).ok()
    };
    let core = dev.core();
    let (step, result) = (core.step(), core.result());
    if core.boot_state() != &st {
        return Err(format!(
            "core's boot state {:?} is not the flash's {st:?}",
            core.boot_state()
        ));
    }
    let fail = |what: &str| {
        Err(format!(
            "{what}: step {step:?}, result {result:?}, boot {st:?}, journal phase {:?}",
            j.phase
        ))
    };
    match (st.installed_sequence, st.active) {
        (OLD_SEQ, Slot::A) => {}
        (NEW_SEQ, Slot::B) if digest(dev, Slot::B) == Some(new_digest) => {}
        _ => return fail("counter and active slot"),
    }
    let candidate_ok = digest(dev, Slot::B) == Some(new_digest);
    let ok = match step {
        Step::Testing => {
            matches!(st.trial, Some(Trial::Booted(c)) if c.slot == Slot::B)
                && dev.booted.is_some_and(|d| d.slot == Slot::B && d.trial)
                && candidate_ok
        }
        Step::Rebooting => match st.trial {
            Some(Trial::Pending(c)) => c.slot == Slot::B && candidate_ok,
            None => matches!(st.last, Some((ImageState::Rejected, _))),
            Some(Trial::Booted(_)) => false,
        },
        Step::InstallDeferred => {
            j.phase == Phase::InstallDeferred && matches!(st.trial, Some(Trial::Pending(_)))
        }
        Step::Downloaded | Step::AwaitInstallAuth => {
            matches!(j.phase, Phase::Downloaded | Phase::InstallDeferred) && candidate_ok
        }
        Step::Downloading => {
            j.phase == Phase::Downloading
                && dev.core().download_progress().is_none_or(|(got, size)| {
                    j.offset <= got.max(j.offset.min(size)) && got <= size
                })
        }
        Step::AwaitDownloadAuth => {
            matches!(j.phase, Phase::AwaitDownloadAuth | Phase::DownloadDeferred)
        }
        Step::DownloadDeferred => j.phase == Phase::DownloadDeferred,
        Step::Idle => st.trial.is_none(),
        Step::FetchingManifest | Step::ReceivingPush => st.trial.is_none(),
    };
    if !ok {
        return fail("step against the flash");
    }
    if result == UpdateResult::Success
        && !(st.active == Slot::B && dev.booted.is_some_and(|d| d.slot == Slot::B))
    {
        return fail("success reported, not running the new image");
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum Input {
    Uri(String),
    Package(u32, Vec<u8>),
    Manifest(Vec<u8>),
    Block(u32, Vec<u8>, Vec<u8>),
    Execute,
    Cancel,
    Failed(u8),
    DownloadAuth(u8),
    InstallAuth(u8),
    SelfTest(bool),
    Resume,
    Reboot,
    Serve(u8),
    MaxDefer(u32),
}

fn decision(v: u8) -> Decision {
    [Decision::Authorize, Decision::Reject, Decision::Defer][usize::from(v % 3)]
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        // The real URI and server rounds often enough that whole updates happen in between.
        3 => Just(Input::Uri(URI.to_string())),
        1 => prop_oneof![Just(String::new()), ".{0,40}"].prop_map(Input::Uri),
        1 => (0u32..9000, proptest::collection::vec(any::<u8>(), 0..700))
            .prop_map(|(o, d)| Input::Package(o, d)),
        1 => proptest::collection::vec(any::<u8>(), 0..600).prop_map(Input::Manifest),
        1 => (
            0u32..9000,
            proptest::collection::vec(any::<u8>(), 0..700),
            proptest::collection::vec(any::<u8>(), 0..80)
        )
            .prop_map(|(o, d, t)| Input::Block(o, d, t)),
        1 => Just(Input::Execute),
        1 => any::<u32>().prop_map(Input::MaxDefer),
        1 => Just(Input::Cancel),
        1 => (0u8..3).prop_map(Input::Failed),
        1 => any::<u8>().prop_map(Input::DownloadAuth),
        1 => any::<u8>().prop_map(Input::InstallAuth),
        1 => any::<bool>().prop_map(Input::SelfTest),
        1 => Just(Input::Resume),
        1 => Just(Input::Reboot),
        6 => (1u8..80).prop_map(Input::Serve),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_event_sequences_never_panic_or_violate_nor_rules(
        mode in 0..FLASH_MODES.len(),
        app in (any::<u8>(), any::<u8>(), any::<bool>(), prop_oneof![Just(0u32), Just(3600u32), 0u32..20]),
        inputs in proptest::collection::vec(input(), 1..40)
    ) {
        set_flash_mode(FLASH_MODES[mode]);
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
        // What the simulated application answers when the server rounds run.
        dev.app.download = decision(app.0);
        dev.app.install = decision(app.1);
        dev.app.self_test_passes = app.2;
        dev.send(Event::WriteMaxDeferPeriod(app.3)).ok();
        for i in inputs {
            let _ = match &i {
                Input::Uri(u) => dev.send(Event::WritePackageUri(u)),
                Input::Package(o, d) => dev.send(Event::WritePackage { offset: *o, data: d }),
                Input::Manifest(m) => dev.send(Event::ManifestFetched(m)),
                Input::Block(o, d, t) => dev.send(Event::Block { offset: *o, data: d, token: t }),
                Input::Execute => dev.send(Event::Execute),
                Input::Cancel => dev.send(Event::Cancel),
                Input::Failed(k) => dev.send(Event::DownloadFailed(
                    [DownloadFailure::ConnectionLost, DownloadFailure::NotFound, DownloadFailure::UnsupportedProtocol][usize::from(*k % 3)],
                )),
                Input::DownloadAuth(v) => dev.send(Event::DownloadAuthorization(decision(*v))),
                Input::InstallAuth(v) => dev.send(Event::InstallAuthorization(decision(*v))),
                Input::SelfTest(p) => dev.send(Event::SelfTest { passed: *p }),
                Input::Resume => dev.send(Event::Resume),
                Input::Reboot => {
                    dev.power_on();
                    Ok(())
                }
                Input::MaxDefer(v) => dev.send(Event::WriteMaxDeferPeriod(*v)),
                Input::Serve(n) => {
                    dev.run(usize::from(*n));
                    Ok(())
                }
            };
            prop_assert_eq!(dev.flash.nor_violations(), 0);
            prop_assert_eq!(dev.flash.word_violations(), 0);
            if let Err(e) = consistent(&mut dev, &img) {
                prop_assert!(false, "after {:?}: {}", i, e);
            }
        }
        // Whatever happened, the device still boots a valid image.
        let old = old_image();
        let on_old = dev.booted_digest(old.len()) == Some(sha256(&old));
        let on_new = dev.booted_digest(img.len()) == Some(sha256(&img));
        prop_assert!(on_old || on_new);
    }
}
