//! Store tests; each runs on SQLite and on a throwaway PostgreSQL.

use super::*;
use crate::testing::on_each_backend;

async fn seed_release(store: &Store, version: &str) -> Release {
    let key = match store.keys().await.unwrap().into_iter().next() {
        Some(k) => k,
        None => store.add_key("k", "ed25519", "fp", "pem").await.unwrap(),
    };
    store
        .create_release(&NewRelease {
            version: version.into(),
            sequence: 7,
            manifest_digest: format!("digest-{version}"),
            filename: "fw.bin".into(),
            image_size: 13,
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

#[tokio::test]
async fn devices_are_created_listed_filtered_paged_and_deleted() {
    on_each_backend("devices", |store| async move {
        let a = store
            .create_device(
                "dev-a",
                "A",
                "hash-a",
                &["lab".into(), "eu".into(), "lab".into()],
            )
            .await
            .unwrap();
        assert_eq!(a.tags, vec!["eu".to_string(), "lab".to_string()]);
        store
            .create_device("dev-b", "B", "hash-b", &["eu".into()])
            .await
            .unwrap();
        store
            .create_device("dev-c", "C", "hash-c", &[])
            .await
            .unwrap();
        // The controller id and the token hash are unique.
        assert!(matches!(
            store.create_device("dev-a", "again", "hash-z", &[]).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store.create_device("dev-z", "z", "hash-a", &[]).await,
            Err(StoreError::Conflict(_))
        ));

        let by_token = store.device_by_token_hash("hash-b").await.unwrap().unwrap();
        assert_eq!(by_token.controller_id, "dev-b");
        assert!(store.device_by_token_hash("nope").await.unwrap().is_none());

        let eu = store
            .list_devices(&DeviceFilter {
                tag: Some("eu".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            eu.iter()
                .map(|d| d.controller_id.as_str())
                .collect::<Vec<_>>(),
            ["dev-a", "dev-b"]
        );

        // Pagination by cursor walks every device exactly once.
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .list_devices(&DeviceFilter {
                    after,
                    limit: 2,
                    ..Default::default()
                })
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().map(|d| d.id);
            seen.extend(page.into_iter().map(|d| d.controller_id));
        }
        assert_eq!(seen, ["dev-a", "dev-b", "dev-c"]);

        let idle = store
            .list_devices(&DeviceFilter {
                update_state: Some("idle".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(idle.len(), 3);
        store.touch_device(a.id).await.unwrap();
        let recent = store
            .list_devices(&DeviceFilter {
                seen_since: Some(now_ms() - 60_000),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(recent.len(), 1);

        assert!(store.set_tags("dev-c", &["lab".into()]).await.unwrap());
        assert_eq!(store.device("dev-c").await.unwrap().unwrap().tags, ["lab"]);
        assert!(!store.set_tags("ghost", &[]).await.unwrap());

        let close = Transition {
            status: ActionStatus::Cancelled,
            ..Transition::default()
        };
        assert!(store.delete_device("dev-a", &close).await.unwrap());
        assert!(!store.delete_device("dev-a", &close).await.unwrap());
        assert!(store.device("dev-a").await.unwrap().is_none());
        assert_eq!(store.device_ids_with_tag("eu").await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn config_data_merges_replaces_and_removes() {
    on_each_backend("config", |store| async move {
        let d = store.create_device("dev", "", "h", &[]).await.unwrap();
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        store
            .update_config_data(d.id, ConfigMode::Merge, &[kv("a", "1"), kv("b", "2")])
            .await
            .unwrap();
        store
            .update_config_data(d.id, ConfigMode::Merge, &[kv("b", "3")])
            .await
            .unwrap();
        assert_eq!(
            store.config_data(d.id).await.unwrap(),
            [kv("a", "1"), kv("b", "3")]
        );
        store
            .update_config_data(d.id, ConfigMode::Remove, &[kv("a", "")])
            .await
            .unwrap();
        assert_eq!(store.config_data(d.id).await.unwrap(), [kv("b", "3")]);
        store
            .update_config_data(d.id, ConfigMode::Replace, &[kv("c", "4")])
            .await
            .unwrap();
        assert_eq!(store.config_data(d.id).await.unwrap(), [kv("c", "4")]);
    })
    .await;
}

#[tokio::test]
async fn config_data_is_capped_in_entries_and_bytes_and_a_refusal_changes_nothing() {
    on_each_backend("config_cap", |store| async move {
        let d = store.create_device("dev", "", "h", &[]).await.unwrap();
        let entries = |range: std::ops::Range<usize>, value: &str| -> Vec<(String, String)> {
            range
                .map(|i| (format!("k{i:04}"), value.to_string()))
                .collect()
        };
        // Up to the entry cap, in several merges.
        store
            .update_config_data(d.id, ConfigMode::Merge, &entries(0..200, "v"))
            .await
            .unwrap();
        store
            .update_config_data(
                d.id,
                ConfigMode::Merge,
                &entries(200..MAX_CONFIG_ENTRIES, "v"),
            )
            .await
            .unwrap();
        assert_eq!(
            store.config_data(d.id).await.unwrap().len(),
            MAX_CONFIG_ENTRIES
        );
        // Updating existing keys is fine; one new key is one too many, and nothing changes.
        store
            .update_config_data(d.id, ConfigMode::Merge, &entries(0..10, "w"))
            .await
            .unwrap();
        let before = store.config_data(d.id).await.unwrap();
        let mut batch = entries(10..20, "x");
        batch.push(("new".into(), "1".into()));
        let err = store
            .update_config_data(d.id, ConfigMode::Merge, &batch)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::ConfigTooLarge {
                    entries,
                    ..
                } if entries == MAX_CONFIG_ENTRIES + 1
            ),
            "{err}"
        );
        assert!(err.to_string().contains("256 entries"), "{err}");
        assert_eq!(store.config_data(d.id).await.unwrap(), before);
        // Removing keys always works; replace starts over.
        store
            .update_config_data(d.id, ConfigMode::Remove, &entries(0..100, ""))
            .await
            .unwrap();
        assert_eq!(store.config_data(d.id).await.unwrap().len(), 156);

        // The byte cap: 100 entries of about 1 KiB pass 64 KiB; the version key is not recorded.
        let big = "v".repeat(1000);
        store
            .update_config_data(d.id, ConfigMode::Replace, &entries(0..60, &big))
            .await
            .unwrap();
        let mut batch = entries(60..100, &big);
        batch.push((INSTALLED_VERSION_KEY.into(), "9.9.9".into()));
        let err = store
            .update_config_data(d.id, ConfigMode::Merge, &batch)
            .await
            .unwrap_err();
        match err {
            StoreError::ConfigTooLarge { entries, bytes } => {
                assert_eq!(entries, 101);
                assert!(bytes > MAX_CONFIG_BYTES, "{bytes}");
            }
            other => panic!("{other}"),
        }
        assert_eq!(store.config_data(d.id).await.unwrap().len(), 60);
        let device = store.device("dev").await.unwrap().unwrap();
        assert_eq!(
            device.current_version, None,
            "the refused merge changed nothing"
        );
    })
    .await;
}

#[tokio::test]
async fn concurrent_config_merges_cannot_pass_the_cap_together() {
    on_each_backend("config_race", |store| async move {
        let d = store.create_device("dev", "", "h", &[]).await.unwrap();
        // Eight merges of 40 new keys each: at most six fit under 256 entries.
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    let batch: Vec<(String, String)> = (0..40)
                        .map(|i| (format!("t{t}-{i:02}"), "v".to_string()))
                        .collect();
                    store
                        .update_config_data(d.id, ConfigMode::Merge, &batch)
                        .await
                })
            })
            .collect();
        let mut accepted = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => accepted += 1,
                Err(StoreError::ConfigTooLarge { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        let stored = store.config_data(d.id).await.unwrap().len();
        assert_eq!(stored, accepted * 40);
        assert_eq!(
            accepted, 6,
            "each merge is decided on what the others stored"
        );
    })
    .await;
}

async fn class_release(
    store: &Store,
    version: &str,
    sequence: u64,
    class: &str,
    sha: &str,
    allow_same: bool,
) -> Result<Release> {
    let key = match store.keys().await.unwrap().into_iter().next() {
        Some(k) => k,
        None => store.add_key("k", "ed25519", "fp", "pem").await.unwrap(),
    };
    store
        .create_release_with(
            &NewRelease {
                version: version.into(),
                sequence,
                manifest_digest: format!("digest-{version}"),
                filename: "fw.bin".into(),
                image_size: 13,
                image_sha256: sha.into(),
                image_sha1: "bb".into(),
                image_md5: "cc".into(),
                blob_key: format!("images/{sha}"),
                envelope: vec![1, 2, 3],
                key_id: key.id,
                vendor_id: Some("vendor".into()),
                class_id: Some(class.into()),
            },
            allow_same,
        )
        .await
}

#[tokio::test]
async fn a_release_sequence_must_rise_within_its_vendor_and_class() {
    on_each_backend("sequence", |store| async move {
        class_release(&store, "1.0.0", 5, "pump", "aa", false)
            .await
            .unwrap();
        for (version, sequence) in [("0.9.0", 4), ("1.0.1", 5)] {
            match class_release(&store, version, sequence, "pump", "aa", false).await {
                Err(StoreError::StaleSequence {
                    sequence: s,
                    existing_version,
                    existing_sequence,
                }) => {
                    assert_eq!((s, existing_sequence), (sequence as i64, 5));
                    assert_eq!(existing_version, "1.0.0");
                }
                other => panic!("{version}: {other:?}"),
            }
        }
        // Another class has its own sequence; unknown classes are not compared.
        class_release(&store, "cam-1", 1, "camera", "dd", false)
            .await
            .unwrap();
        seed_release(&store, "legacy").await;
        // A re-sign at the same sequence needs the flag and the same image.
        assert!(matches!(
            class_release(&store, "1.0.0-resigned", 5, "pump", "ee", true).await,
            Err(StoreError::ResignDiffers {
                existing_sequence: 5,
                ..
            })
        ));
        class_release(&store, "1.0.0-resigned", 5, "pump", "aa", true)
            .await
            .unwrap();
        // Below the highest stays refused, flag or not.
        assert!(matches!(
            class_release(&store, "0.8.0", 4, "pump", "aa", true).await,
            Err(StoreError::StaleSequence { .. })
        ));
        class_release(&store, "1.1.0", 6, "pump", "ff", false)
            .await
            .unwrap();
        let versions: Vec<String> = store
            .releases()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.version)
            .collect();
        assert_eq!(
            versions,
            ["1.1.0", "1.0.0-resigned", "legacy", "cam-1", "1.0.0"]
        );
        let r = store.release("1.1.0").await.unwrap().unwrap();
        assert_eq!(
            (r.vendor_id.as_deref(), r.class_id.as_deref()),
            (Some("vendor"), Some("pump"))
        );
    })
    .await;
}

#[tokio::test]
async fn racing_uploads_of_one_sequence_store_one_release() {
    on_each_backend("sequence_race", |store| async move {
        store.add_key("k", "ed25519", "fp", "pem").await.unwrap();
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    class_release(&store, &format!("v{i}"), 9, "pump", &format!("s{i}"), false)
                        .await
                })
            })
            .collect();
        let mut stored = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => stored += 1,
                Err(StoreError::StaleSequence { .. }) => {}
                // SQLite may refuse a writer that lost the race outright.
                Err(StoreError::Database(e)) if store.backend() == Backend::Sqlite => {
                    eprintln!("busy: {e}")
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(stored, 1);
        assert_eq!(store.releases().await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn releases_and_keys_are_unique_and_round_trip() {
    on_each_backend("releases", |store| async move {
        store.add_key("k", "ed25519", "fp", "pem").await.unwrap();
        assert!(matches!(
            store.add_key("k2", "ed25519", "fp", "pem").await,
            Err(StoreError::Conflict(_))
        ));
        let r = seed_release(&store, "1.0.0").await;
        let again = store.release("1.0.0").await.unwrap().unwrap();
        assert_eq!(again.id, r.id);
        assert_eq!(again.image_size, 13);
        assert_eq!(store.envelope(r.id).await.unwrap().unwrap(), [1, 2, 3]);
        assert!(store.blob_in_use("sha256/aa").await.unwrap());
        assert!(!store.blob_in_use("sha256/bb").await.unwrap());
        let dup = store
            .create_release(&NewRelease {
                version: "1.0.0".into(),
                sequence: 1,
                manifest_digest: "other".into(),
                filename: "f".into(),
                image_size: 1,
                image_sha256: String::new(),
                image_sha1: String::new(),
                image_md5: String::new(),
                blob_key: String::new(),
                envelope: vec![],
                key_id: r.key_id,
                vendor_id: None,
                class_id: None,
            })
            .await;
        assert!(matches!(dup, Err(StoreError::Conflict(_))));
        assert_eq!(store.releases().await.unwrap().len(), 1);
    })
    .await;
}

fn t(status: ActionStatus, progress: Option<i64>, msg: Option<&str>) -> Transition {
    Transition {
        status,
        progress,
        message: msg.map(str::to_string),
        ..Transition::default()
    }
}

/// A rollout of `release` assigned to `devices`.
async fn rollout_of(store: &Store, release: &Release, devices: &[i64]) -> (i64, AssignOutcome) {
    let id = store.create_rollout(release.id, "test").await.unwrap();
    let outcome = store.assign(id, devices).await.unwrap();
    (id, outcome)
}

#[tokio::test]
async fn deployment_lifecycle_records_events_counters_and_version() {
    on_each_backend("lifecycle", |store| async move {
        let r = seed_release(&store, "2.0.0").await;
        let a = store.create_device("a", "", "ha", &[]).await.unwrap();
        let b = store.create_device("b", "", "hb", &[]).await.unwrap();
        let (rollout, outcome) = rollout_of(&store, &r, &[a.id, b.id]).await;
        assert_eq!(outcome.created.len(), 2);
        assert!(outcome.skipped.is_empty());
        assert_eq!(store.rollout(rollout).await.unwrap().unwrap().total, 2);
        // A device with an open action is skipped by the next assignment, and says why.
        let (_, again) = rollout_of(&store, &r, &[a.id]).await;
        assert!(again.created.is_empty());
        assert_eq!(
            again.skipped,
            [Skip {
                device_id: a.id,
                controller_id: "a".into(),
                reason: SKIP_BUSY
            }]
        );

        let act_a = store.active_action(a.id).await.unwrap().unwrap();
        use ActionStatus::*;
        let apply = |from, tr: Transition| {
            let store = store.clone();
            async move { store.apply_transition(act_a.id, from, &tr).await.unwrap() }
        };
        assert_eq!(
            apply(Pending, t(Notified, None, None)).await,
            Applied::Changed
        );
        assert_eq!(
            apply(Notified, t(Downloading, Some(50), None)).await,
            Applied::Changed
        );
        // The same report twice is recorded once.
        assert_eq!(
            apply(Downloading, t(Downloading, Some(50), None)).await,
            Applied::Unchanged
        );
        // Decided from a status the action has left: refused, and told where it is now.
        assert_eq!(
            apply(Notified, t(Downloaded, None, None)).await,
            Applied::Stale(Downloading)
        );
        assert_eq!(
            apply(Downloading, t(Succeeded, None, Some("ok"))).await,
            Applied::Changed
        );
        // Closed: further reports change nothing.
        assert_eq!(
            apply(Succeeded, t(Failed, None, Some("late"))).await,
            Applied::NotActive
        );
        assert_eq!(
            store
                .apply_transition(999_999, Pending, &t(Failed, None, None))
                .await
                .unwrap(),
            Applied::NotActive
        );

        let events = store.action_events(act_a.id).await.unwrap();
        let statuses: Vec<_> = events.iter().map(|e| (e.status, e.progress)).collect();
        assert_eq!(
            statuses,
            [
                (Pending, None),
                (Notified, None),
                (Downloading, Some(50)),
                (Succeeded, None)
            ]
        );
        let dev_a = store.device("a").await.unwrap().unwrap();
        assert_eq!(dev_a.current_version.as_deref(), Some("2.0.0"));
        assert_eq!(dev_a.update_state, "succeeded");
        assert_eq!(
            store.installed_action(a.id).await.unwrap().unwrap().id,
            act_a.id
        );
        assert!(store.active_action(a.id).await.unwrap().is_none());
        // a runs 2.0.0 now: assigning it again is skipped as installed.
        let (_, installed) = rollout_of(&store, &r, &[a.id]).await;
        assert_eq!(installed.skipped[0].reason, SKIP_INSTALLED);

        let act_b = store.active_action(b.id).await.unwrap().unwrap();
        let failed = Transition {
            failure_kind: Some("integrity".into()),
            ..t(Failed, None, Some("integrity check failed"))
        };
        store
            .apply_transition(act_b.id, Pending, &failed)
            .await
            .unwrap();
        let closed_b = store.action(act_b.id).await.unwrap().unwrap();
        assert_eq!(closed_b.reason.as_deref(), Some("integrity check failed"));
        assert_eq!(closed_b.failure_kind.as_deref(), Some("integrity"));
        assert!(!closed_b.active);
        assert!(
            store
                .device("b")
                .await
                .unwrap()
                .unwrap()
                .current_version
                .is_none()
        );

        let counted = store.rollout(rollout).await.unwrap().unwrap();
        assert_eq!(
            (counted.total, counted.succeeded, counted.failed),
            (2, 1, 1)
        );
        assert_eq!(
            store
                .rollout_actions(rollout, None, 10)
                .await
                .unwrap()
                .len(),
            2
        );
        // Paged: one per page, the second page starts after the first id.
        let first = store.rollout_actions(rollout, None, 1).await.unwrap();
        let second = store
            .rollout_actions(rollout, Some(first[0].id), 1)
            .await
            .unwrap();
        assert!(second[0].id > first[0].id);
        assert!(store.device_has_release(b.id, r.id).await.unwrap());

        // Both closed: a new assignment is accepted again.
        let (_, again) = rollout_of(&store, &r, &[b.id]).await;
        assert_eq!(again.created.len(), 1);
        assert_eq!(store.device_actions(b.id, 10).await.unwrap().len(), 2);
        let ids: Vec<i64> = store
            .device_actions(b.id, 10)
            .await
            .unwrap()
            .iter()
            .map(|a| a.id)
            .collect();
        let events = store.events_of(&ids).await.unwrap();
        // b: pending + failed, then pending of the new one.
        assert_eq!(events.len(), 3);
    })
    .await;
}

#[tokio::test]
async fn racing_reports_count_a_final_status_once() {
    on_each_backend("race", |store| async move {
        let r = seed_release(&store, "3.0.0").await;
        let d = store.create_device("d", "", "hd", &[]).await.unwrap();
        let (rollout, outcome) = rollout_of(&store, &r, &[d.id]).await;
        let id = outcome.created[0].0;
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .apply_transition(
                        id,
                        ActionStatus::Pending,
                        &t(ActionStatus::Succeeded, None, None),
                    )
                    .await
                    .unwrap()
            }));
        }
        let mut changed = 0;
        for t in tasks {
            if t.await.unwrap() == Applied::Changed {
                changed += 1;
            }
        }
        assert_eq!(changed, 1);
        assert_eq!(store.rollout(rollout).await.unwrap().unwrap().succeeded, 1);
    })
    .await;
}

#[tokio::test]
async fn assignments_and_cancels_write_the_outbox_and_claims_are_disjoint() {
    on_each_backend("outbox", |store| async move {
        let r = seed_release(&store, "4.0.0").await;
        let mut ids = Vec::new();
        for i in 0..30 {
            let d = store
                .create_device(&format!("o{i}"), "", &format!("ho{i}"), &[])
                .await
                .unwrap();
            ids.push(d.id);
        }
        assert_eq!(store.pending_work_changes().await.unwrap(), 0);
        let (rollout, outcome) = rollout_of(&store, &r, &ids).await;
        assert_eq!(outcome.created.len(), 30);
        // Written with the assignment: one entry per device.
        assert_eq!(store.pending_work_changes().await.unwrap(), 30);

        // Two consumers claim at once: disjoint sets, and an entry under lease is not claimed.
        let now = now_ms();
        let (a, b) = tokio::join!(
            store.claim_work_changes("one", 20, now, 60_000),
            store.claim_work_changes("two", 20, now, 60_000)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let mut all: Vec<i64> = a.iter().chain(&b).map(|c| c.device_id).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), a.len() + b.len(), "a device claimed twice");
        assert_eq!(all.len(), 30);
        assert!(
            store
                .claim_work_changes("three", 50, now, 60_000)
                .await
                .unwrap()
                .is_empty()
        );
        // A lease that ran out is claimed again.
        assert_eq!(
            store
                .claim_work_changes("three", 50, now + 60_001, 1000)
                .await
                .unwrap()
                .len(),
            30
        );

        // Delivered: acked entries go, except where a newer change came in meanwhile.
        let first = a[0];
        sqlx::query("UPDATE actions SET status = 'notified' WHERE device_id = $1")
            .bind(first.device_id)
            .execute(&store.pool)
            .await
            .unwrap();
        let cancel = Transition {
            notify: true,
            ..t(ActionStatus::Canceling, None, None)
        };
        assert_eq!(
            store
                .bulk_transition(rollout, ActionStatus::Notified, &cancel)
                .await
                .unwrap(),
            1
        );
        for c in a.iter().chain(&b) {
            store.ack_work_change(*c).await.unwrap();
        }
        // The cancel came after the claim: its entry stays, and is claimable at once.
        assert_eq!(store.pending_work_changes().await.unwrap(), 1);
        let again = store
            .claim_work_changes("one", 10, now, 1000)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].device_id, first.device_id);
        assert!(again[0].seq > first.seq);
    })
    .await;
}

#[tokio::test]
async fn deleting_a_device_cancels_its_deployment_and_keeps_its_history() {
    on_each_backend("soft_delete", |store| async move {
        let r = seed_release(&store, "5.0.0").await;
        let d = store
            .create_device("gone", "", "hgone", &["lab".into()])
            .await
            .unwrap();
        let (rollout, outcome) = rollout_of(&store, &r, &[d.id]).await;
        let action = outcome.created[0].0;
        let close = Transition {
            status: ActionStatus::Cancelled,
            message: Some("device deleted".into()),
            ..Transition::default()
        };
        assert!(store.delete_device("gone", &close).await.unwrap());
        let counted = store.rollout(rollout).await.unwrap().unwrap();
        assert_eq!((counted.total, counted.cancelled), (1, 1));
        let a = store.action(action).await.unwrap().unwrap();
        assert_eq!(a.status, ActionStatus::Cancelled);
        assert!(!a.active);
        assert_eq!(store.action_events(action).await.unwrap().len(), 2);
        // Gone from lookups, lists, tags and token; the id can be registered again.
        assert!(store.device("gone").await.unwrap().is_none());
        assert!(store.device_by_token_hash("hgone").await.unwrap().is_none());
        assert!(store.device_ids_with_tag("lab").await.unwrap().is_empty());
        let listed = store
            .list_devices(&DeviceFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(listed.is_empty());
        let again = store.create_device("gone", "", "hgone", &[]).await.unwrap();
        assert_ne!(again.id, d.id);
        // A deleted device is never assigned.
        let (_, none) = rollout_of(&store, &r, &[d.id]).await;
        assert!(none.created.is_empty() && none.skipped.is_empty());
    })
    .await;
}
