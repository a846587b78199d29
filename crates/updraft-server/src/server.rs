//! Assembling and running the server: data directory, tokens, store, blobs, the HTTP router, and
//! graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::blobs::{BlobError, Blobs};
use crate::fleet::Fleet;
use crate::store::{Store, StoreError};
use crate::tokens;

/// Default upload limit: 1 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 1 << 30;

/// How the server is set up.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the SQLite database, the blobs and the token files live.
    pub data_dir: PathBuf,
    /// HTTP listen address (port 0 picks a free port).
    pub http: SocketAddr,
    /// Database URL; `None` means SQLite in the data dir.
    pub database: Option<String>,
    /// Largest accepted firmware image.
    pub max_upload_bytes: u64,
    /// The hawkBit tenant name devices use in their URLs.
    pub tenant: String,
    /// The polling interval told to DDI devices.
    pub poll_interval: Duration,
    /// How often the campaign scheduler ticks (starts, timeouts, reports fed to the engine).
    pub campaign_tick: Duration,
    /// How old an image blob no release points at must be before the start-up reconciliation
    /// removes it (a younger one may be an upload another server is finishing).
    pub orphan_blob_grace: Duration,
}

/// Default [`Config::orphan_blob_grace`]: 10 minutes.
pub const DEFAULT_ORPHAN_BLOB_GRACE: Duration = Duration::from_secs(600);

impl Config {
    /// Defaults for a data dir: 127.0.0.1:8080, SQLite, 1 GiB uploads, tenant `DEFAULT`, 60 s
    /// polling, orphan blobs removed at start once 10 minutes old.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database: None,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            tenant: "DEFAULT".into(),
            poll_interval: Duration::from_secs(60),
            campaign_tick: Duration::from_secs(1),
            orphan_blob_grace: DEFAULT_ORPHAN_BLOB_GRACE,
        }
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        match &self.database {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("updraft.db").display()),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data dir or a token file could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// The blob directory could not be used.
    #[error("blobs: {0}")]
    Blobs(#[from] BlobError),
}

/// Shared state of the request handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The firmware images.
    pub blobs: Blobs,
    /// The configuration.
    pub config: Arc<Config>,
    /// SHA-256 (hex) of the admin token.
    pub admin_token_hash: Arc<str>,
    /// SHA-256 (hex) of the DDI gateway token.
    pub gateway_token_hash: Arc<str>,
    /// The fleet layer: the device fronts' only way to the store.
    pub fleet: Fleet,
    /// Request counters and the metrics token (`/metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// A server bound to its port, ready to run.
#[derive(Debug)]
pub struct Server {
    state: AppState,
    listener: TcpListener,
    admin_token: String,
    admin_token_created: bool,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Server {
    /// Prepare the data dir (owner-only modes, tokens, database with migrations, blobs
    /// reconciled with the release rows) and bind the listener.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        let data = &config.data_dir;
        crate::perms::private_dir(data).map_err(io_err(data))?;
        let admin_path = data.join("admin-token");
        let (admin_token, admin_token_created) =
            tokens::load_or_create(&admin_path).map_err(io_err(&admin_path))?;
        let gateway_path = data.join("gateway-token");
        let (gateway_token, _) =
            tokens::load_or_create(&gateway_path).map_err(io_err(&gateway_path))?;
        let metrics_path = data.join("metrics-token");
        let (metrics_token, _) =
            tokens::load_or_create(&metrics_path).map_err(io_err(&metrics_path))?;
        if config.database.is_none() {
            // SQLite gives its -wal and -shm files the mode of the database file.
            let db = data.join("updraft.db");
            crate::perms::create_private_file(&db).map_err(io_err(&db))?;
            for extra in ["updraft.db-wal", "updraft.db-shm"] {
                let p = data.join(extra);
                crate::perms::private_file(&p).map_err(io_err(&p))?;
            }
        }
        let store = Store::open(&config.database_url()).await?;
        let filled = store.backfill_release_classes().await?;
        if filled > 0 {
            tracing::info!(
                releases = filled,
                "recorded vendor and class of older releases"
            );
        }
        let blobs = Blobs::local(&data.join("blobs"))?;
        let referenced = store.release_blob_keys().await?;
        blobs
            .remove_orphans(&referenced, config.orphan_blob_grace)
            .await?;
        let listener = TcpListener::bind(config.http)
            .await
            .map_err(|source| ServerError::Io {
                path: PathBuf::from(config.http.to_string()),
                source,
            })?;
        let gateway_token_hash: Arc<str> = tokens::hash(&gateway_token).into();
        Ok(Server {
            state: AppState {
                fleet: Fleet::new(store.clone(), gateway_token_hash.clone()),
                store,
                blobs,
                config: Arc::new(config),
                admin_token_hash: tokens::hash(&admin_token).into(),
                gateway_token_hash,
                metrics: Arc::new(crate::metrics::Metrics::new(tokens::hash(&metrics_token))),
            },
            listener,
            admin_token,
            admin_token_created,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The admin token (for tests and the CLI; people read it from the file).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Whether this start created the admin token file.
    pub fn admin_token_created(&self) -> bool {
        self.admin_token_created
    }

    /// Path of the admin token file.
    pub fn admin_token_path(&self) -> PathBuf {
        self.state.config.data_dir.join("admin-token")
    }

    /// Path of the metrics token file (`/metrics` scrapes).
    pub fn metrics_token_path(&self) -> PathBuf {
        self.state.config.data_dir.join("metrics-token")
    }

    /// Path of the DDI gateway token file.
    pub fn gateway_token_path(&self) -> PathBuf {
        self.state.config.data_dir.join("gateway-token")
    }

    /// What `updraft serve` prints at start: the URLs, where the tokens are, how to add a device.
    pub fn banner(&self) -> String {
        let addr = self
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| self.state.config.http.to_string());
        let config = &self.state.config;
        let admin = self.admin_token_path();
        let backend = match self.state.store.backend() {
            crate::store::Backend::Sqlite => "SQLite",
            crate::store::Backend::Postgres => "PostgreSQL",
        };
        format!(
            "Updraft server listening on http://{addr}\n\
             \x20 management API:  http://{addr}/api/v1  (OpenAPI: http://{addr}/api/v1/openapi.json)\n\
             \x20 hawkBit DDI:     http://{addr}/{tenant}/controller/v1/<controller-id>\n\
             \x20 data dir:        {data}  (database: {backend}, blobs: {data}/blobs)\n\
             \x20 admin token:     {admin}{new}\n\
             \x20 gateway token:   {gateway}\n\
             Add a device (the answer holds its DDI TargetToken, shown once):\n\
             \x20 curl -s -H \"Authorization: Bearer $(cat {admin})\" -H 'Content-Type: application/json' \\\n\
             \x20      -d '{{\"controller_id\":\"device-1\"}}' http://{addr}/api/v1/devices\n\
             Prometheus metrics: http://{addr}/metrics  (bearer token: {metrics})\n",
            tenant = config.tenant,
            data = config.data_dir.display(),
            admin = admin.display(),
            new = if self.admin_token_created {
                " (created now, mode 0600)"
            } else {
                ""
            },
            gateway = self.gateway_token_path().display(),
            metrics = self.metrics_token_path().display(),
        )
    }

    /// The handlers' state (tests use the store directly).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serve until `shutdown` completes, then finish in-flight requests and close the database.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let store = self.state.store.clone();
        let (stop_ticks, ticks_stopped) = tokio::sync::watch::channel(false);
        let scheduler = tokio::spawn(campaign_scheduler(
            self.state.fleet.clone(),
            self.state.config.campaign_tick,
            ticks_stopped,
        ));
        let app = router(self.state);
        let result = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        let _ = stop_ticks.send(true);
        let _ = scheduler.await;
        store.close().await;
        result
    }
}

/// Tick the campaigns every `every` until `stop` turns true. Each campaign is claimed with a
/// row lock, so several instances on one PostgreSQL can all run this.
async fn campaign_scheduler(
    fleet: Fleet,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = fleet.tick_campaigns(crate::store::now_ms()).await {
            tracing::warn!(error = %e, "campaign tick failed; retrying at the next tick");
        }
    }
}

/// The whole HTTP surface: the management API under `/api/v1` and the DDI device API.
/// The whole HTTP surface: the management API under `/api/v1`, the DDI device API and
/// `/metrics`, every request counted by front and status.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(crate::api::router(state.clone()))
        .merge(crate::ddi::router(state.clone()))
        .route("/metrics", axum::routing::get(crate::metrics::scrape))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::count_requests,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
