//! `updraft serve`: the update server in one process, on embedded defaults (SQLite and a blob
//! directory under `--data-dir`, HTTP on 127.0.0.1:8080), or on PostgreSQL with `--database`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use updraft_server::server::DEFAULT_MAX_UPLOAD_BYTES;
use updraft_server::{Config, Server, shutdown_signal};

/// Options of `updraft serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Data directory: the SQLite database, the firmware blobs and the token files.
    #[arg(long, default_value = "./updraft-data")]
    pub data_dir: PathBuf,
    /// HTTP listen address (management API and hawkBit DDI).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Database URL: `postgres://user@host/db`, or `sqlite://path` (default: SQLite in the data
    /// dir).
    #[arg(long)]
    pub database: Option<String>,
    /// Largest firmware image accepted by the release upload, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_UPLOAD_BYTES)]
    pub max_upload_bytes: u64,
    /// The hawkBit tenant in device URLs.
    #[arg(long, default_value = "DEFAULT")]
    pub tenant: String,
    /// Polling interval told to DDI devices, in seconds.
    #[arg(long, default_value_t = 60)]
    pub poll_interval: u64,
    /// How often the campaign scheduler runs (starts, timeouts, reports), in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub campaign_tick_ms: u64,
}

/// Run the server until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or journald gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut config = Config::new(&args.data_dir);
    config.http = args.http;
    config.database = args.database;
    config.max_upload_bytes = args.max_upload_bytes;
    config.tenant = args.tenant;
    config.poll_interval = Duration::from_secs(args.poll_interval.max(1));
    config.campaign_tick = Duration::from_millis(args.campaign_tick_ms);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let server = Server::bind(config)
            .await
            .with_context(|| format!("starting the server in {}", args.data_dir.display()))?;
        let mut out = std::io::stdout().lock();
        write!(out, "{}", server.banner())?;
        out.flush()?;
        drop(out);
        server
            .run(shutdown_signal())
            .await
            .context("serving HTTP")?;
        println!("Updraft server stopped.");
        Ok(())
    })
}
