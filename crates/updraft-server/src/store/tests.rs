//! Store tests; each runs on SQLite and on a throwaway PostgreSQL.

use super::*;
use crate::testing::{TempPostgres, database_urls};

/// Run `body` once per backend, each on a fresh database.
async fn on_each_backend<F, Fut>(name: &str, body: F)
where
    F: Fn(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let pg = TempPostgres::start();
    let urls = database_urls(dir.path(), pg.as_ref(), name);
    for url in urls {
        let store = Store::open(&url).await.unwrap();
        eprintln!("running {name} on {:?}", store.backend());
        body(store.clone()).await;
        store.close().await;
    }
}

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

        assert!(store.delete_device("dev-a").await.unwrap());
        assert!(!store.delete_device("dev-a").await.unwrap());
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

#[tokio::test]
async fn deployment_lifecycle_records_events_counters_and_version() {
    on_each_backend("lifecycle", |store| async move {
        let r = seed_release(&store, "2.0.0").await;
        let a = store.create_device("a", "", "ha", &[]).await.unwrap();
        let b = store.create_device("b", "", "hb", &[]).await.unwrap();
        let (rollout, actions, skipped) = store
            .create_rollout(r.id, "devices:a,b", &[a.id, b.id])
            .await
            .unwrap();
        assert_eq!((rollout.total, actions.len(), skipped.len()), (2, 2, 0));
        // A device with an open action is skipped by the next assignment.
        let (_, none, skipped) = store
            .create_rollout(r.id, "device:a", &[a.id])
            .await
            .unwrap();
        assert!(none.is_empty());
        assert_eq!(skipped, [a.id]);

        let act_a = store.active_action(a.id).await.unwrap().unwrap();
        let t = |status, progress: Option<i64>, msg: Option<&str>| Transition {
            status,
            progress,
            message: msg.map(str::to_string),
        };
        use ActionStatus::*;
        assert_eq!(
            store
                .apply_transition(act_a.id, &t(Notified, None, None))
                .await
                .unwrap(),
            Applied::Changed
        );
        assert_eq!(
            store
                .apply_transition(act_a.id, &t(Downloading, Some(50), None))
                .await
                .unwrap(),
            Applied::Changed
        );
        // The same report twice is recorded once.
        assert_eq!(
            store
                .apply_transition(act_a.id, &t(Downloading, Some(50), None))
                .await
                .unwrap(),
            Applied::Unchanged
        );
        assert_eq!(
            store
                .apply_transition(act_a.id, &t(Succeeded, None, Some("ok")))
                .await
                .unwrap(),
            Applied::Changed
        );
        // Closed: further reports change nothing.
        assert_eq!(
            store
                .apply_transition(act_a.id, &t(Failed, None, Some("late")))
                .await
                .unwrap(),
            Applied::NotActive
        );
        assert_eq!(
            store
                .apply_transition(999_999, &t(Failed, None, None))
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

        let act_b = store.active_action(b.id).await.unwrap().unwrap();
        store
            .apply_transition(act_b.id, &t(Failed, None, Some("integrity check failed")))
            .await
            .unwrap();
        let closed_b = store.action(act_b.id).await.unwrap().unwrap();
        assert_eq!(closed_b.reason.as_deref(), Some("integrity check failed"));
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

        let rollout = store.rollout(rollout.id).await.unwrap().unwrap();
        assert_eq!(
            (rollout.total, rollout.succeeded, rollout.failed),
            (2, 1, 1)
        );
        assert_eq!(store.rollout_actions(rollout.id).await.unwrap().len(), 2);
        assert!(store.device_has_release(b.id, r.id).await.unwrap());

        // Both closed: a new assignment is accepted again.
        let (_, again, _) = store
            .create_rollout(r.id, "device:b", &[b.id])
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(store.device_actions(b.id).await.unwrap().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn racing_reports_count_a_final_status_once() {
    on_each_backend("race", |store| async move {
        let r = seed_release(&store, "3.0.0").await;
        let d = store.create_device("d", "", "hd", &[]).await.unwrap();
        let (rollout, actions, _) = store
            .create_rollout(r.id, "device:d", &[d.id])
            .await
            .unwrap();
        let id = actions[0].id;
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .apply_transition(
                        id,
                        &Transition {
                            status: ActionStatus::Succeeded,
                            progress: None,
                            message: None,
                        },
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
        assert_eq!(
            store.rollout(rollout.id).await.unwrap().unwrap().succeeded,
            1
        );
    })
    .await;
}
