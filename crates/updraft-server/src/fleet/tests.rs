//! Fleet tests on SQLite and a throwaway PostgreSQL.

use super::*;
use crate::store::NewRelease;
use crate::testing::on_each_backend;

async fn release(store: &Store) -> Release {
    let key = store.add_key("k", "ed25519", "fp", "pem").await.unwrap();
    store
        .create_release(&NewRelease {
            version: "2.0.0".into(),
            sequence: 2,
            manifest_digest: "digest".into(),
            filename: "fw.bin".into(),
            image_size: 3,
            image_sha256: "aa".into(),
            image_sha1: "bb".into(),
            image_md5: "cc".into(),
            blob_key: "sha256/aa".into(),
            envelope: vec![1, 2, 3],
            key_id: key.id,
            vendor_id: None,
            class_id: None,
        })
        .await
        .unwrap()
}

/// `n` devices, each with an open action of one rollout, moved to downloading by a report.
async fn downloading_fleet(store: &Store, n: usize) -> (Fleet, i64, Vec<(Device, i64)>) {
    let fleet = Fleet::new(store.clone(), tokens::hash("gateway").into());
    let release = release(store).await;
    let mut devices = Vec::new();
    for i in 0..n {
        let token = format!("token-{i}");
        let d = store
            .create_device(&format!("d{i}"), "", &tokens::hash(&token), &[])
            .await
            .unwrap();
        devices.push(d);
    }
    let ids: Vec<i64> = devices.iter().map(|d| d.id).collect();
    let (rollout, outcome) = fleet.deploy(&release, "test", &ids).await.unwrap();
    let mut out = Vec::new();
    for d in devices {
        let action = outcome
            .created
            .iter()
            .find(|(_, dev)| *dev == d.id)
            .unwrap()
            .0;
        fleet.retrieve(&d, action).await.unwrap();
        fleet
            .report(
                &d,
                action,
                DeviceReport::Downloading { percent: Some(10) },
                None,
            )
            .await
            .unwrap();
        out.push((d, action));
    }
    (fleet, rollout, out)
}

/// An operator's cancel and a device's progress report race on each action. Whichever comes
/// first, the cancel is never lost: a report decided on the old status misses its
/// compare-and-set and is decided again from `canceling`, which keeps the cancel pending.
#[tokio::test]
async fn an_admin_cancel_is_never_lost_to_a_report_in_flight() {
    on_each_backend("fleet_race", |store| async move {
        let (fleet, rollout, devices) = downloading_fleet(&store, 40).await;
        let mut tasks = Vec::new();
        for (i, (device, action)) in devices.iter().cloned().enumerate() {
            let (f1, f2) = (fleet.clone(), fleet.clone());
            tasks.push(tokio::spawn(async move {
                let report = async {
                    f2.report(
                        &device,
                        action,
                        DeviceReport::Downloading { percent: Some(60) },
                        None,
                    )
                    .await
                    .unwrap()
                };
                let cancel = async { f1.request_cancel(action).await.unwrap() };
                // Alternate which side starts first.
                if i % 2 == 0 {
                    tokio::join!(report, cancel);
                } else {
                    tokio::join!(cancel, report);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for (device, action) in &devices {
            let a = store.action(*action).await.unwrap().unwrap();
            assert_eq!(
                a.status,
                ActionStatus::Canceling,
                "{}",
                device.controller_id
            );
            let history = store.action_events(*action).await.unwrap();
            assert_eq!(history.last().unwrap().status, ActionStatus::Canceling);
            assert!(matches!(
                fleet.next_work(device).await.unwrap(),
                Work::Cancel(_)
            ));
        }
        // The devices confirm: every action is cancelled once, and counted once.
        for (device, action) in &devices {
            fleet
                .report(device, *action, DeviceReport::CancelAccepted, None)
                .await
                .unwrap();
        }
        let r = store.rollout(rollout).await.unwrap().unwrap();
        assert_eq!((r.total, r.cancelled), (40, 40));
    })
    .await;
}

/// A final report racing a cancel: the report's end stands (the device did install), the
/// cancel is refused as too late, and nothing is counted twice.
#[tokio::test]
async fn a_final_report_racing_a_cancel_counts_once() {
    on_each_backend("fleet_race_final", |store| async move {
        let (fleet, rollout, devices) = downloading_fleet(&store, 20).await;
        let mut tasks = Vec::new();
        for (device, action) in devices.iter().cloned() {
            let (f1, f2) = (fleet.clone(), fleet.clone());
            tasks.push(tokio::spawn(async move {
                let (reported, _) = tokio::join!(
                    f2.report(&device, action, DeviceReport::Succeeded, None),
                    f1.request_cancel(action)
                );
                reported.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for (_, action) in &devices {
            assert_eq!(
                store.action(*action).await.unwrap().unwrap().status,
                ActionStatus::Succeeded
            );
        }
        let r = store.rollout(rollout).await.unwrap().unwrap();
        assert_eq!((r.succeeded, r.cancelled), (20, 0));
    })
    .await;
}

#[tokio::test]
async fn reports_follow_the_rules_and_closed_actions_refuse() {
    on_each_backend("fleet_reports", |store| async move {
        let (fleet, _, devices) = downloading_fleet(&store, 2).await;
        let (d, action) = &devices[0];
        let (other, _) = &devices[1];
        // Another device's action is refused.
        assert!(matches!(
            fleet
                .report(other, *action, DeviceReport::Downloaded, None)
                .await,
            Err(FleetError::Forbidden(_))
        ));
        // A cancel answer with no cancel pending is refused and changes nothing.
        assert!(matches!(
            fleet
                .report(d, *action, DeviceReport::CancelAccepted, None)
                .await,
            Err(FleetError::NoCancelPending)
        ));
        // Busy without a figure keeps the status and progress: nothing recorded.
        assert_eq!(
            fleet
                .report(d, *action, DeviceReport::Working, None)
                .await
                .unwrap(),
            Reported::Kept
        );
        let long = "x".repeat(MAX_MESSAGE * 2);
        fleet
            .report(
                d,
                *action,
                DeviceReport::Failed(FailureKind::Integrity),
                Some(long),
            )
            .await
            .unwrap();
        let a = store.action(*action).await.unwrap().unwrap();
        assert_eq!(a.status, ActionStatus::Failed);
        assert_eq!(a.failure_kind.as_deref(), Some("integrity"));
        assert!(a.reason.unwrap().len() <= MAX_MESSAGE + "…".len());
        assert!(matches!(
            fleet
                .report(d, *action, DeviceReport::Succeeded, None)
                .await,
            Err(FleetError::Closed)
        ));
        assert!(matches!(fleet.next_work(d).await.unwrap(), Work::None));
        // Authentication: the device's token opens it only, the gateway token every device.
        assert_eq!(
            fleet
                .authenticate("d0", Credential::DeviceToken("token-0"))
                .await
                .unwrap()
                .id,
            d.id
        );
        assert!(matches!(
            fleet
                .authenticate("d1", Credential::DeviceToken("token-0"))
                .await,
            Err(FleetError::Forbidden(_))
        ));
        assert!(matches!(
            fleet
                .authenticate("d0", Credential::DeviceToken("wrong"))
                .await,
            Err(FleetError::Unauthorized(_))
        ));
        assert_eq!(
            fleet
                .authenticate("d1", Credential::GatewayToken("gateway"))
                .await
                .unwrap()
                .id,
            other.id
        );
        assert!(matches!(
            fleet
                .authenticate("d1", Credential::GatewayToken("nope"))
                .await,
            Err(FleetError::Unauthorized(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn artifacts_open_only_for_an_assigned_release() {
    on_each_backend("fleet_artifacts", |store| async move {
        let (fleet, _, devices) = downloading_fleet(&store, 1).await;
        let (d, action) = &devices[0];
        let release = fleet
            .release_of(&store.action(*action).await.unwrap().unwrap())
            .await
            .unwrap();
        assert!(matches!(
            fleet
                .open_artifact(d, release.id, "fw.bin")
                .await
                .unwrap()
                .kind,
            ArtifactKind::Image
        ));
        assert!(matches!(
            fleet.open_artifact(d, release.id, "fw.bin.suit").await.unwrap().kind,
            ArtifactKind::Envelope(e) if e == [1, 2, 3]
        ));
        assert!(matches!(
            fleet.open_artifact(d, release.id, "other.bin").await,
            Err(FleetError::NotFound(_))
        ));
        let stranger = store.create_device("s", "", "hs", &[]).await.unwrap();
        assert!(matches!(
            fleet.open_artifact(&stranger, release.id, "fw.bin").await,
            Err(FleetError::Forbidden(_))
        ));
        assert!(matches!(
            fleet.open_artifact(d, 9999, "fw.bin").await,
            Err(FleetError::NotFound(_))
        ));
    })
    .await;
}

/// A campaign can target the devices whose current version is a release of a class.
#[tokio::test]
async fn a_campaign_targets_a_class_through_the_devices_current_release() {
    on_each_backend("fleet_class_target", |store| async move {
        let fleet = Fleet::new(store.clone(), tokens::hash("gateway").into());
        let key = store.add_key("k", "ed25519", "fp", "pem").await.unwrap();
        let class_a = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
        let class_b = "6ba7b811-9dad-11d1-80b4-00c04fd430c8";
        for (version, seq, class) in [
            ("1.0.0", 1, class_a),
            ("2.0.0", 2, class_b),
            ("3.0.0", 3, class_a),
        ] {
            store
                .create_release(&NewRelease {
                    version: version.into(),
                    sequence: seq,
                    manifest_digest: format!("d-{version}"),
                    filename: "fw.bin".into(),
                    image_size: 3,
                    image_sha256: "aa".into(),
                    image_sha1: "bb".into(),
                    image_md5: "cc".into(),
                    blob_key: "sha256/aa".into(),
                    envelope: vec![1],
                    key_id: key.id,
                    vendor_id: None,
                    class_id: Some(class.into()),
                })
                .await
                .unwrap();
        }
        for (id, version) in [("a1", Some("1.0.0")), ("b2", Some("2.0.0")), ("none", None)] {
            let d = store
                .create_device(id, "", &format!("h-{id}"), &[])
                .await
                .unwrap();
            if let Some(v) = version {
                store
                    .update_config_data(
                        d.id,
                        crate::store::ConfigMode::Merge,
                        &[(crate::store::INSTALLED_VERSION_KEY.into(), v.into())],
                    )
                    .await
                    .unwrap();
            }
        }
        let new = |class: &str| campaigns::NewCampaign {
            name: None,
            release: "3.0.0".into(),
            target: campaigns::Target {
                class_id: Some(class.into()),
                ..Default::default()
            },
            policy: crate::campaign::Policy::immediate(),
        };
        // Given in upper case, compared as stored.
        let id = fleet
            .create_campaign(new(&class_a.to_uppercase()))
            .await
            .unwrap();
        let c = fleet.campaign(id).await.unwrap();
        assert_eq!(c.summary.members, 1);
        assert_eq!(c.target.class_id.as_deref(), Some(class_a));
        assert!(matches!(
            fleet.create_campaign(new("not-a-uuid")).await,
            Err(FleetError::Invalid(_))
        ));
        // No device runs a release of an unknown class: refused, nothing created.
        assert!(matches!(
            fleet
                .create_campaign(new("00000000-0000-0000-0000-000000000000"))
                .await,
            Err(FleetError::Invalid(_))
        ));
        assert_eq!(fleet.campaigns(None, 10).await.unwrap().len(), 1);
    })
    .await;
}
