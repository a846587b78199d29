//! Arbitrary event sequences with arbitrary bytes (what a network can send) never panic the
//! core, never write over unerased flash, and keep the /5 State and the step consistent.

mod common;

use common::*;
use proptest::prelude::*;
use updraft_device::update::DownloadFailure;
use updraft_device::{Decision, Event, State};

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
}

fn decision(v: u8) -> Decision {
    [Decision::Authorize, Decision::Reject, Decision::Defer][usize::from(v % 3)]
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        prop_oneof![Just(URI.to_string()), Just(String::new()), ".{0,40}"].prop_map(Input::Uri),
        (0u32..9000, proptest::collection::vec(any::<u8>(), 0..700))
            .prop_map(|(o, d)| Input::Package(o, d)),
        proptest::collection::vec(any::<u8>(), 0..600).prop_map(Input::Manifest),
        (
            0u32..9000,
            proptest::collection::vec(any::<u8>(), 0..700),
            proptest::collection::vec(any::<u8>(), 0..80)
        )
            .prop_map(|(o, d, t)| Input::Block(o, d, t)),
        Just(Input::Execute),
        Just(Input::Cancel),
        (0u8..3).prop_map(Input::Failed),
        any::<u8>().prop_map(Input::DownloadAuth),
        any::<u8>().prop_map(Input::InstallAuth),
        any::<bool>().prop_map(Input::SelfTest),
        Just(Input::Resume),
        Just(Input::Reboot),
        (1u8..40).prop_map(Input::Serve),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_event_sequences_never_panic_or_violate_nor_rules(
        inputs in proptest::collection::vec(input(), 1..40)
    ) {
        let keys = trusted_keys();
        let img = new_image();
        let mut dev = device(&keys, server(&img));
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
                Input::Serve(n) => {
                    dev.run(usize::from(*n));
                    Ok(())
                }
            };
            prop_assert_eq!(dev.flash.nor_violations(), 0);
            let core = dev.core();
            prop_assert!(matches!(core.state(), State::Idle | State::Downloading | State::Downloaded | State::Updating));
        }
        // Whatever happened, the device still boots a valid image.
        let old = old_image();
        let on_old = dev.booted_digest(old.len()) == Some(sha256(&old));
        let on_new = dev.booted_digest(img.len()) == Some(sha256(&img));
        prop_assert!(on_old || on_new);
    }
}
