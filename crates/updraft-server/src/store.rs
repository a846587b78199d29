//! The store: devices, trusted keys, releases, rollouts, per-device actions and their events.
//!
//! One code path for both backends: the store talks to an `sqlx::AnyPool`, every query uses `$n`
//! placeholders and types both SQLite and PostgreSQL understand (`BIGINT`, `TEXT`, bytes), and
//! each backend has its own migrations (`migrations/sqlite`, `migrations/postgres`), run at open.
//! Times are Unix milliseconds. Rollout counters are updated in the same transaction as the action
//! they count, so reading progress never scans the actions.

use std::str::FromStr;

use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// The configData attribute in which a device reports the version it runs (the Updraft agent
/// sends it at first contact and after every update).
pub const INSTALLED_VERSION_KEY: &str = "updraft.installed_version";
/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or refused a query.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The URL names no supported database.
    #[error("unsupported database URL (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    /// A unique constraint was hit (e.g. a controller id or version that exists).
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// A value in the database is not one the store wrote.
    #[error("corrupt value in column {0}")]
    Corrupt(&'static str),
    /// A release's sequence does not rise above an existing release of the same vendor and
    /// class: every device of that class would refuse it as a downgrade or a replay.
    #[error(
        "sequence {sequence} is not above release {existing_version} (sequence {existing_sequence}) \
         of the same vendor and class; devices would refuse it"
    )]
    StaleSequence {
        /// The refused release's sequence.
        sequence: i64,
        /// The existing release with the highest sequence of the class.
        existing_version: String,
        /// Its sequence.
        existing_sequence: i64,
    },
    /// A re-sign at the same sequence was allowed, but the image differs from the existing one.
    #[error(
        "a re-sign at sequence {existing_sequence} must carry the same image as release \
         {existing_version}; this image differs"
    )]
    ResignDiffers {
        /// The existing release at that sequence.
        existing_version: String,
        /// Its sequence.
        existing_sequence: i64,
    },
    /// A device's configuration data would grow past [`MAX_CONFIG_ENTRIES`] or
    /// [`MAX_CONFIG_BYTES`]; nothing was changed.
    #[error(
        "the device's configuration data would hold {entries} entries of {bytes} bytes; \
         the limits are {max_entries} entries and {max_bytes} bytes of keys and values",
        max_entries = MAX_CONFIG_ENTRIES,
        max_bytes = MAX_CONFIG_BYTES
    )]
    ConfigTooLarge {
        /// Entries after the refused change.
        entries: usize,
        /// Bytes of keys and values after the refused change.
        bytes: usize,
    },
}

/// Most configuration entries (DDI `configData`) one device may have stored.
pub const MAX_CONFIG_ENTRIES: usize = 256;
/// Most bytes of keys plus values of one device's stored configuration data.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

type Result<T> = std::result::Result<T, StoreError>;

/// Which database the store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Status of one device's deployment (a hawkBit "action").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Assigned; the device has not fetched it yet.
    #[default]
    Pending,
    /// The device fetched the deployment.
    Notified,
    /// The device is downloading (see `progress`).
    Downloading,
    /// The image is downloaded and verified on the device.
    Downloaded,
    /// The device is installing.
    Updating,
    /// The device deferred the update; it stays assigned.
    Deferred,
    /// A cancel was requested; waiting for the device to confirm it.
    Canceling,
    /// The device runs the new release.
    Succeeded,
    /// The update failed (see `reason`).
    Failed,
    /// The device refused the update (see `reason`).
    Rejected,
    /// The deployment was cancelled.
    Cancelled,
}

impl ActionStatus {
    /// All statuses, in lifecycle order.
    pub const ALL: [ActionStatus; 11] = [
        Self::Pending,
        Self::Notified,
        Self::Downloading,
        Self::Downloaded,
        Self::Updating,
        Self::Deferred,
        Self::Canceling,
        Self::Succeeded,
        Self::Failed,
        Self::Rejected,
        Self::Cancelled,
    ];

    /// The name stored in the database and shown in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Notified => "notified",
            Self::Downloading => "downloading",
            Self::Downloaded => "downloaded",
            Self::Updating => "updating",
            Self::Deferred => "deferred",
            Self::Canceling => "canceling",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
        }
    }

    /// A final status: the action is closed and no longer accepts feedback.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Rejected | Self::Cancelled
        )
    }
}

impl FromStr for ActionStatus {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        Self::ALL.into_iter().find(|a| a.as_str() == s).ok_or(())
    }
}

/// The update state of a device with no deployment yet.
pub const IDLE: &str = "idle";

/// A registered device.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Device {
    /// Internal id.
    #[serde(skip)]
    pub id: i64,
    /// The id the device uses on the wire (hawkBit controller id).
    pub controller_id: String,
    /// Human name.
    pub name: String,
    /// Tags (sorted).
    pub tags: Vec<String>,
    /// Version it reported last, if any.
    pub current_version: Option<String>,
    /// Status of its latest deployment, or `idle`.
    pub update_state: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds of the last request from the device.
    pub last_seen: Option<i64>,
}

/// Filters and page of a device listing.
#[derive(Clone, Debug, Default)]
pub struct DeviceFilter {
    /// Only devices with this tag.
    pub tag: Option<String>,
    /// Only devices on this version.
    pub current_version: Option<String>,
    /// Only devices in this update state.
    pub update_state: Option<String>,
    /// Only devices seen at or after this time (Unix ms).
    pub seen_since: Option<i64>,
    /// Devices with an internal id above this cursor.
    pub after: Option<i64>,
    /// Page size.
    pub limit: i64,
}

/// A trusted public key.
#[derive(Clone, Debug, Serialize)]
pub struct TrustedKey {
    /// Internal id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// `ed25519` or `es256`.
    pub algorithm: String,
    /// SHA-256 of the SubjectPublicKeyInfo DER, hex.
    pub fingerprint: String,
    /// The PEM text.
    pub pem: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A release to be inserted.
#[derive(Clone, Debug)]
pub struct NewRelease {
    /// Version string (unique).
    pub version: String,
    /// Manifest sequence number.
    pub sequence: u64,
    /// SUIT manifest digest, hex.
    pub manifest_digest: String,
    /// Artifact file name served to devices.
    pub filename: String,
    /// Image size in bytes.
    pub image_size: u64,
    /// Hashes of the image, hex.
    pub image_sha256: String,
    /// SHA-1, hex (hawkBit clients want it).
    pub image_sha1: String,
    /// MD5, hex (hawkBit clients want it).
    pub image_md5: String,
    /// Key of the image in the blob store.
    pub blob_key: String,
    /// The signed SUIT envelope.
    pub envelope: Vec<u8>,
    /// The trusted key that verified it.
    pub key_id: i64,
    /// The manifest's vendor id (hyphenated UUID); `None` when unknown.
    pub vendor_id: Option<String>,
    /// The manifest's class id (hyphenated UUID); `None` when unknown.
    pub class_id: Option<String>,
}

/// A stored release.
#[derive(Clone, Debug, Serialize)]
pub struct Release {
    /// Internal id (also the hawkBit software module id).
    pub id: i64,
    /// Version string.
    pub version: String,
    /// Manifest sequence number.
    pub sequence: i64,
    /// SUIT manifest digest, hex.
    pub manifest_digest: String,
    /// Artifact file name.
    pub filename: String,
    /// Image size in bytes.
    pub image_size: i64,
    /// SHA-256 of the image, hex.
    pub image_sha256: String,
    /// SHA-1 of the image, hex.
    pub image_sha1: String,
    /// MD5 of the image, hex.
    pub image_md5: String,
    /// Blob store key.
    #[serde(skip)]
    pub blob_key: String,
    /// The trusted key that verified the envelope.
    pub key_id: i64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// The manifest's vendor id (hyphenated UUID); `None` when unknown.
    pub vendor_id: Option<String>,
    /// The manifest's class id (hyphenated UUID); `None` when unknown.
    pub class_id: Option<String>,
}

/// One assignment of a release to devices, with its counters.
#[derive(Clone, Debug, Serialize)]
pub struct Rollout {
    /// Id.
    pub id: i64,
    /// Release version.
    pub release: String,
    /// What was targeted, as given (`device:x`, `devices:a,b`, `tag:t`).
    pub target: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Number of actions created.
    pub total: i64,
    /// Actions that succeeded.
    pub succeeded: i64,
    /// Actions that failed.
    pub failed: i64,
    /// Actions the device rejected.
    pub rejected: i64,
    /// Actions cancelled.
    pub cancelled: i64,
}

/// A device's deployment of one release.
#[derive(Clone, Debug, Serialize)]
pub struct Action {
    /// Id (the hawkBit action id).
    pub id: i64,
    /// The rollout it belongs to.
    pub rollout_id: i64,
    /// Internal device id.
    #[serde(skip)]
    pub device_id: i64,
    /// The device's controller id.
    pub controller_id: String,
    /// Internal release id.
    #[serde(skip)]
    pub release_id: i64,
    /// Release version.
    pub release: String,
    /// Current status.
    pub status: ActionStatus,
    /// Download progress in percent, when known.
    pub progress: Option<i64>,
    /// Why it failed or was rejected.
    pub reason: Option<String>,
    /// The kind of failure (`integrity`, `timed_out`, ...), when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_kind: Option<String>,
    /// Open (accepts feedback) or closed.
    pub active: bool,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

/// One entry of an action's history.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ActionEvent {
    /// Unix milliseconds.
    pub at: i64,
    /// Status entered (or kept, for progress).
    pub status: ActionStatus,
    /// Progress in percent.
    pub progress: Option<i64>,
    /// Reason or device message.
    pub message: Option<String>,
}

/// A requested change of an action's status.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Transition {
    /// New status.
    pub status: ActionStatus,
    /// New progress.
    pub progress: Option<i64>,
    /// Reason or message, recorded in the event (and as the action's reason when final).
    pub message: Option<String>,
    /// The kind of a failure (`integrity`, `timed_out`, ...), kept with a final failed status.
    pub failure_kind: Option<String>,
    /// Whether the device's next work changes (a cancel): push fronts learn it from the
    /// `work_changed` outbox, written in the same transaction.
    pub notify: bool,
    /// A change the campaign engine decided itself (a timeout, an abort's cancel): not fed
    /// back to the engine as a device report.
    pub quiet: bool,
}

/// The outcome of [`Store::apply_transition`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The status changed and an event was recorded.
    Changed,
    /// The action already had that status and progress: nothing recorded (idempotent feedback).
    Unchanged,
    /// The action is no longer in the status the change was decided from (it moved meanwhile,
    /// e.g. an admin cancel raced a device report): nothing changed; re-decide from this status.
    Stale(ActionStatus),
    /// The action is closed or unknown: nothing changed.
    NotActive,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn conflict(e: sqlx::Error, what: &'static str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        _ => StoreError::Database(e),
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

const DEVICE_COLUMNS: &str =
    "d.id, d.controller_id, d.name, d.current_version, d.update_state, d.created_at, d.last_seen";
const ACTION_COLUMNS: &str = "a.id, a.rollout_id, a.device_id, d.controller_id, a.release_id, \
    r.version, a.status, a.progress, a.reason, a.active, a.created_at, a.updated_at, a.failure_kind";
const ACTION_FROM: &str =
    "FROM actions a JOIN devices d ON d.id = a.device_id JOIN releases r ON r.id = a.release_id";
const RELEASE_COLUMNS: &str = "id, version, sequence, manifest_digest, filename, image_size, \
    image_sha256, image_sha1, image_md5, blob_key, key_id, created_at, vendor_id, class_id";

/// PostgreSQL advisory lock key held while a release is inserted and its sequence checked.
const RELEASE_INSERT_LOCK: i64 = 0x7570_6472_6166_7401;

/// The database handle. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Open (creating a SQLite file if needed) and migrate the database at `url`
    /// (`sqlite://path` or `postgres://...`).
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let max = match backend {
            // One writer at a time on SQLite anyway; a few readers keep the API responsive.
            Backend::Sqlite => 4,
            Backend::Postgres => 10,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        match backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("migrations/postgres").run(&pool).await?,
        }
        Ok(Store { pool, backend })
    }

    /// Which backend this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Close the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- devices ----

    /// Register a device with the SHA-256 hash of its token.
    pub async fn create_device(
        &self,
        controller_id: &str,
        name: &str,
        token_hash: &str,
        tags: &[String],
    ) -> Result<Device> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "INSERT INTO devices (controller_id, name, token_hash, update_state, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(controller_id)
        .bind(name)
        .bind(token_hash)
        .bind(IDLE)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict(e, "device"))?;
        let id: i64 = row.try_get(0)?;
        let mut tags = tags.to_vec();
        tags.sort();
        tags.dedup();
        for tag in &tags {
            sqlx::query("INSERT INTO device_tags (device_id, tag) VALUES ($1, $2)")
                .bind(id)
                .bind(tag)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Device {
            id,
            controller_id: controller_id.to_string(),
            name: name.to_string(),
            tags,
            current_version: None,
            update_state: IDLE.to_string(),
            created_at: now,
            last_seen: None,
        })
    }

    async fn tags_of(&self, device_id: i64) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT tag FROM device_tags WHERE device_id = $1 ORDER BY tag")
            .bind(device_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(Into::into))
            .collect()
    }

    fn device_from_row(row: &AnyRow) -> Result<Device> {
        Ok(Device {
            id: row.try_get(0)?,
            controller_id: row.try_get(1)?,
            name: row.try_get(2)?,
            tags: Vec::new(),
            current_version: row.try_get(3)?,
            update_state: row.try_get(4)?,
            created_at: row.try_get(5)?,
            last_seen: row.try_get(6)?,
        })
    }

    /// A device by controller id.
    pub async fn device(&self, controller_id: &str) -> Result<Option<Device>> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.controller_id = $1"
        ))
        .bind(controller_id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(None),
            Some(row) => {
                let mut d = Self::device_from_row(&row)?;
                d.tags = self.tags_of(d.id).await?;
                Ok(Some(d))
            }
        }
    }

    /// The device whose token has this hash.
    pub async fn device_by_token_hash(&self, token_hash: &str) -> Result<Option<Device>> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Self::device_from_row(&r)).transpose()
    }

    /// Devices matching `filter`, ordered by internal id (use the last id as the next cursor).
    pub async fn list_devices(&self, filter: &DeviceFilter) -> Result<Vec<Device>> {
        // Every filter is bound; an absent one is NULL and matches everything.
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices d \
             WHERE ($1 IS NULL OR EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = d.id AND t.tag = $1)) \
             AND ($2 IS NULL OR d.current_version = $2) \
             AND ($3 IS NULL OR d.update_state = $3) \
             AND ($4 IS NULL OR d.last_seen >= $4) \
             AND d.deleted_at IS NULL AND d.id > $5 ORDER BY d.id LIMIT $6"
        );
        let rows = sqlx::query(&sql)
            .bind(filter.tag.clone())
            .bind(filter.current_version.clone())
            .bind(filter.update_state.clone())
            .bind(filter.seen_since)
            .bind(filter.after.unwrap_or(0))
            .bind(filter.limit)
            .fetch_all(&self.pool)
            .await?;
        let mut out = rows
            .iter()
            .map(Self::device_from_row)
            .collect::<Result<Vec<_>>>()?;
        // One query for the tags of the whole page (ids are sorted, so a range covers it).
        if let (Some(first), Some(last)) = (out.first().map(|d| d.id), out.last().map(|d| d.id)) {
            let tags = sqlx::query(
                "SELECT device_id, tag FROM device_tags WHERE device_id >= $1 AND device_id <= $2 \
                 ORDER BY device_id, tag",
            )
            .bind(first)
            .bind(last)
            .fetch_all(&self.pool)
            .await?;
            let mut by_device: std::collections::HashMap<i64, Vec<String>> = Default::default();
            for t in &tags {
                by_device
                    .entry(t.try_get(0)?)
                    .or_default()
                    .push(t.try_get(1)?);
            }
            for d in &mut out {
                d.tags = by_device.remove(&d.id).unwrap_or_default();
            }
        }
        Ok(out)
    }

    /// Internal ids of the devices with `tag`.
    pub async fn device_ids_with_tag(&self, tag: &str) -> Result<Vec<i64>> {
        let rows =
            sqlx::query("SELECT device_id FROM device_tags WHERE tag = $1 ORDER BY device_id")
                .bind(tag)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map_err(Into::into))
            .collect()
    }

    /// Replace a device's tags. False when the device does not exist.
    pub async fn set_tags(&self, controller_id: &str, tags: &[String]) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query("SELECT id FROM devices WHERE controller_id = $1")
            .bind(controller_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(false);
        };
        let id: i64 = row.try_get(0)?;
        sqlx::query("DELETE FROM device_tags WHERE device_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let mut tags = tags.to_vec();
        tags.sort();
        tags.dedup();
        for tag in &tags {
            sqlx::query("INSERT INTO device_tags (device_id, tag) VALUES ($1, $2)")
                .bind(id)
                .bind(tag)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Record that the device talked to us.
    pub async fn touch_device(&self, device_id: i64) -> Result<()> {
        sqlx::query("UPDATE devices SET last_seen = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(device_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The device's configuration data (hawkBit `configData`), sorted by key.
    pub async fn config_data(&self, device_id: i64) -> Result<Vec<(String, String)>> {
        let rows =
            sqlx::query("SELECT key, value FROM device_config WHERE device_id = $1 ORDER BY key")
                .bind(device_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Change configuration data: `merge` upserts, `replace` replaces all, `remove` deletes the keys.
    ///
    /// A device that reports [`INSTALLED_VERSION_KEY`] has it recorded as its current version,
    /// so a fleet provisioned at the factory is known (and filterable) before its first update.
    ///
    /// The result may hold at most [`MAX_CONFIG_ENTRIES`] entries and [`MAX_CONFIG_BYTES`] of
    /// keys and values; past either, nothing changes ([`StoreError::ConfigTooLarge`]). The
    /// device row is locked first, so concurrent merges are decided one after the other.
    pub async fn update_config_data(
        &self,
        device_id: i64,
        mode: ConfigMode,
        data: &[(String, String)],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // A no-op write: the row lock (PostgreSQL) or the write lock (SQLite) until commit.
        sqlx::query("UPDATE devices SET last_seen = last_seen WHERE id = $1")
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        if mode == ConfigMode::Replace {
            sqlx::query("DELETE FROM device_config WHERE device_id = $1")
                .bind(device_id)
                .execute(&mut *tx)
                .await?;
        }
        for (k, v) in data {
            if mode == ConfigMode::Remove {
                sqlx::query("DELETE FROM device_config WHERE device_id = $1 AND key = $2")
                    .bind(device_id)
                    .bind(k)
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query(
                    "INSERT INTO device_config (device_id, key, value) VALUES ($1, $2, $3) \
                     ON CONFLICT (device_id, key) DO UPDATE SET value = excluded.value",
                )
                .bind(device_id)
                .bind(k)
                .bind(v)
                .execute(&mut *tx)
                .await?;
                if k == INSTALLED_VERSION_KEY && !v.is_empty() {
                    sqlx::query("UPDATE devices SET current_version = $1 WHERE id = $2")
                        .bind(v)
                        .bind(device_id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        if mode != ConfigMode::Remove {
            // Bounded: at most the cap plus one request's entries.
            let rows = sqlx::query("SELECT key, value FROM device_config WHERE device_id = $1")
                .bind(device_id)
                .fetch_all(&mut *tx)
                .await?;
            let mut bytes = 0usize;
            for r in &rows {
                bytes += r.try_get::<String, _>(0)?.len() + r.try_get::<String, _>(1)?.len();
            }
            if rows.len() > MAX_CONFIG_ENTRIES || bytes > MAX_CONFIG_BYTES {
                // Dropping the transaction rolls every change of this call back.
                return Err(StoreError::ConfigTooLarge {
                    entries: rows.len(),
                    bytes,
                });
            }
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- trusted keys ----

    /// Add a trusted key.
    pub async fn add_key(
        &self,
        name: &str,
        algorithm: &str,
        fingerprint: &str,
        pem: &str,
    ) -> Result<TrustedKey> {
        let now = now_ms();
        let row = sqlx::query(
            "INSERT INTO trusted_keys (name, algorithm, fingerprint, pem, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(name)
        .bind(algorithm)
        .bind(fingerprint)
        .bind(pem)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| conflict(e, "key"))?;
        Ok(TrustedKey {
            id: row.try_get(0)?,
            name: name.into(),
            algorithm: algorithm.into(),
            fingerprint: fingerprint.into(),
            pem: pem.into(),
            created_at: now,
        })
    }

    /// All trusted keys, oldest first.
    pub async fn keys(&self) -> Result<Vec<TrustedKey>> {
        let rows = sqlx::query(
            "SELECT id, name, algorithm, fingerprint, pem, created_at FROM trusted_keys ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TrustedKey {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    algorithm: r.try_get(2)?,
                    fingerprint: r.try_get(3)?,
                    pem: r.try_get(4)?,
                    created_at: r.try_get(5)?,
                })
            })
            .collect()
    }

    // ---- releases ----

    /// Insert a release whose sequence rises above every release of its vendor and class
    /// (see [`Store::create_release_with`]).
    pub async fn create_release(&self, r: &NewRelease) -> Result<Release> {
        self.create_release_with(r, false).await
    }

    /// Insert a release. When its vendor and class are known, its sequence must be above every
    /// existing release of the same vendor and class ([`StoreError::StaleSequence`]); with
    /// `allow_same_sequence`, equal to the highest is accepted if the image is the same
    /// (a re-sign, e.g. with a new key: [`StoreError::ResignDiffers`] otherwise). Releases of
    /// unknown class are never compared.
    ///
    /// The row is inserted first and the check runs after it in the same transaction, so the
    /// write lock (SQLite) or the advisory lock (PostgreSQL) is held while deciding: two
    /// uploads racing with the same sequence cannot both pass.
    pub async fn create_release_with(
        &self,
        r: &NewRelease,
        allow_same_sequence: bool,
    ) -> Result<Release> {
        let now = now_ms();
        let sequence = to_i64(r.sequence);
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            // Serializes release inserts across every server on this database.
            sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1)")
                .bind(RELEASE_INSERT_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        let row = sqlx::query(
            "INSERT INTO releases (version, sequence, manifest_digest, filename, image_size, \
             image_sha256, image_sha1, image_md5, blob_key, envelope, key_id, created_at, \
             vendor_id, class_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        )
        .bind(&r.version)
        .bind(sequence)
        .bind(&r.manifest_digest)
        .bind(&r.filename)
        .bind(to_i64(r.image_size))
        .bind(&r.image_sha256)
        .bind(&r.image_sha1)
        .bind(&r.image_md5)
        .bind(&r.blob_key)
        .bind(r.envelope.clone())
        .bind(r.key_id)
        .bind(now)
        .bind(r.vendor_id.clone())
        .bind(r.class_id.clone())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict(e, "release (version or manifest)"))?;
        let id: i64 = row.try_get(0)?;
        if let (Some(vendor), Some(class)) = (&r.vendor_id, &r.class_id) {
            let others = sqlx::query(
                "SELECT version, sequence, image_sha256 FROM releases \
                 WHERE vendor_id = $1 AND class_id = $2 AND sequence >= $3 AND id <> $4 \
                 ORDER BY sequence DESC, id DESC",
            )
            .bind(vendor)
            .bind(class)
            .bind(sequence)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            if let Some(highest) = others.first() {
                let existing_version: String = highest.try_get(0)?;
                let existing_sequence: i64 = highest.try_get(1)?;
                if existing_sequence > sequence || !allow_same_sequence {
                    return Err(StoreError::StaleSequence {
                        sequence,
                        existing_version,
                        existing_sequence,
                    });
                }
                for other in &others {
                    if other.try_get::<String, _>(2)? != r.image_sha256 {
                        return Err(StoreError::ResignDiffers {
                            existing_version: other.try_get(0)?,
                            existing_sequence,
                        });
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(Release {
            id,
            version: r.version.clone(),
            sequence,
            manifest_digest: r.manifest_digest.clone(),
            filename: r.filename.clone(),
            image_size: to_i64(r.image_size),
            image_sha256: r.image_sha256.clone(),
            image_sha1: r.image_sha1.clone(),
            image_md5: r.image_md5.clone(),
            blob_key: r.blob_key.clone(),
            key_id: r.key_id,
            created_at: now,
            vendor_id: r.vendor_id.clone(),
            class_id: r.class_id.clone(),
        })
    }

    /// Fill the vendor and class of releases stored before they were recorded, from their
    /// envelopes (verified when they were uploaded). Envelopes that do not decode stay unknown
    /// (NULL). Returns how many releases were filled.
    pub async fn backfill_release_classes(&self) -> Result<usize> {
        let rows = sqlx::query(
            "SELECT id, envelope FROM releases WHERE vendor_id IS NULL OR class_id IS NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut filled = 0;
        for row in &rows {
            let id: i64 = row.try_get(0)?;
            let envelope: Vec<u8> = row.try_get(1)?;
            let Ok(decoded) = updraft_manifest::decode_unverified(&envelope) else {
                continue;
            };
            sqlx::query("UPDATE releases SET vendor_id = $1, class_id = $2 WHERE id = $3")
                .bind(decoded.manifest.vendor_id.to_string())
                .bind(decoded.manifest.class_id.to_string())
                .bind(id)
                .execute(&self.pool)
                .await?;
            filled += 1;
        }
        Ok(filled)
    }

    /// Every blob key a release points at.
    pub async fn release_blob_keys(&self) -> Result<std::collections::HashSet<String>> {
        let rows = sqlx::query("SELECT DISTINCT blob_key FROM releases")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(Into::into))
            .collect()
    }

    fn release_from_row(r: &AnyRow) -> Result<Release> {
        Ok(Release {
            id: r.try_get(0)?,
            version: r.try_get(1)?,
            sequence: r.try_get(2)?,
            manifest_digest: r.try_get(3)?,
            filename: r.try_get(4)?,
            image_size: r.try_get(5)?,
            image_sha256: r.try_get(6)?,
            image_sha1: r.try_get(7)?,
            image_md5: r.try_get(8)?,
            blob_key: r.try_get(9)?,
            key_id: r.try_get(10)?,
            created_at: r.try_get(11)?,
            vendor_id: r.try_get(12)?,
            class_id: r.try_get(13)?,
        })
    }

    /// A release by version.
    pub async fn release(&self, version: &str) -> Result<Option<Release>> {
        let row = sqlx::query(&format!(
            "SELECT {RELEASE_COLUMNS} FROM releases WHERE version = $1"
        ))
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Self::release_from_row(&r)).transpose()
    }

    /// A release by id.
    pub async fn release_by_id(&self, id: i64) -> Result<Option<Release>> {
        let row = sqlx::query(&format!(
            "SELECT {RELEASE_COLUMNS} FROM releases WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Self::release_from_row(&r)).transpose()
    }

    /// All releases, newest first.
    pub async fn releases(&self) -> Result<Vec<Release>> {
        let rows = sqlx::query(&format!(
            "SELECT {RELEASE_COLUMNS} FROM releases ORDER BY id DESC"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::release_from_row).collect()
    }

    /// Whether any release uses this blob.
    pub async fn blob_in_use(&self, blob_key: &str) -> Result<bool> {
        let row = sqlx::query("SELECT COUNT(*) FROM releases WHERE blob_key = $1")
            .bind(blob_key)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }

    /// The signed envelope of a release.
    pub async fn envelope(&self, release_id: i64) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT envelope FROM releases WHERE id = $1")
            .bind(release_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get::<Vec<u8>, _>(0).map_err(Into::into))
            .transpose()
    }
}

impl Store {
    // ---- metrics ----

    /// What `/metrics` shows from the database: devices by update state and by version,
    /// actions by status (GROUP BY over indexed columns) and the counters of the newest
    /// `rollouts` rollouts (kept as events happen, so no scan of the actions).
    pub async fn fleet_counts(&self, rollouts: i64) -> Result<FleetCounts> {
        let pairs = |rows: Vec<AnyRow>| -> Result<Vec<(Option<String>, i64)>> {
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        };
        let devices_by_state = pairs(
            sqlx::query(
                "SELECT update_state, COUNT(*) FROM devices WHERE deleted_at IS NULL GROUP BY update_state ORDER BY update_state",
            )
            .fetch_all(&self.pool)
            .await?,
        )?;
        let devices_by_version = pairs(
            sqlx::query(
                "SELECT current_version, COUNT(*) FROM devices WHERE deleted_at IS NULL GROUP BY current_version \
                 ORDER BY current_version",
            )
            .fetch_all(&self.pool)
            .await?,
        )?;
        let actions_by_status = pairs(
            sqlx::query("SELECT status, COUNT(*) FROM actions GROUP BY status ORDER BY status")
                .fetch_all(&self.pool)
                .await?,
        )?;
        let rows = sqlx::query(&format!(
            "{} ORDER BY o.id DESC LIMIT $1",
            Self::ROLLOUT_SELECT
        ))
        .bind(rollouts)
        .fetch_all(&self.pool)
        .await?;
        let rollouts = rows
            .iter()
            .map(Self::rollout_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(FleetCounts {
            devices_by_state: devices_by_state
                .into_iter()
                .map(|(k, n)| (k.unwrap_or_default(), n))
                .collect(),
            devices_by_version,
            actions_by_status: actions_by_status
                .into_iter()
                .map(|(k, n)| (k.unwrap_or_default(), n))
                .collect(),
            rollouts,
        })
    }
}

/// The fleet's counts at one instant, for `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct FleetCounts {
    /// `(update state, devices)`.
    pub devices_by_state: Vec<(String, i64)>,
    /// `(current version or none, devices)`.
    pub devices_by_version: Vec<(Option<String>, i64)>,
    /// `(action status, actions)`.
    pub actions_by_status: Vec<(String, i64)>,
    /// The newest rollouts with their counters.
    pub rollouts: Vec<Rollout>,
}

/// How `configData` changes the stored data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ConfigMode {
    /// Upsert the given keys.
    #[default]
    Merge,
    /// Replace all data.
    Replace,
    /// Delete the given keys.
    Remove,
}

mod campaigns;
mod deploy;
pub use campaigns::{CampaignEvent, CampaignLogEntry, CampaignRow, DeviceMatch, MemberQuery};
pub(crate) use campaigns::{
    load_members, load_members_of, log as campaign_log_entry, save_campaign, save_members,
    take_events,
};
pub use deploy::{AssignOutcome, CHUNK, SKIP_BUSY, SKIP_INSTALLED, Skip, WorkChange};
pub(crate) use deploy::{assign_in, transition_devices_in};

#[cfg(test)]
mod tests;
