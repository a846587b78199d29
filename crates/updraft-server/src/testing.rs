//! Test support: a throwaway PostgreSQL server, and the list of database URLs a test should run
//! against.
//!
//! [`TempPostgres::start`] runs `initdb` and `pg_ctl` (from `UPDRAFT_PG_BIN`,
//! `/usr/lib/postgresql/{17,16,15}/bin` or `PATH`) on a temporary directory and a free port on
//! 127.0.0.1, with the socket directory inside the temporary directory. PostgreSQL refuses to run
//! as root, so when the effective user is root the cluster runs as the `postgres` OS user through
//! `runuser`, with the directory handed to that user. The server is stopped when the value drops.
//!
//! When the binaries are absent, [`TempPostgres::start`] prints a notice and returns `None` (the
//! caller skips its PostgreSQL half) unless the `CI` environment variable is set: then it panics,
//! because CI must prove both backends.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running throwaway PostgreSQL cluster.
#[derive(Debug)]
pub struct TempPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    port: u16,
}

fn find_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("UPDRAFT_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    for v in ["17", "16", "15", "14"] {
        let dir = PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"));
        if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
            return Some(dir);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
}

fn is_root() -> bool {
    // No libc dependency: ask the kernel through /proc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// What to do when PostgreSQL cannot be used: skip with a notice, or fail under CI.
fn unavailable(why: &str) -> Option<TempPostgres> {
    if std::env::var_os("CI").is_some() {
        panic!("PostgreSQL is required when CI is set: {why}");
    }
    eprintln!("NOTICE: skipping the PostgreSQL half of this test: {why}");
    None
}

impl TempPostgres {
    /// Start a cluster, or `None` (after a notice) when PostgreSQL is not installed and `CI` is
    /// unset.
    /// It runs with `fsync=off`: tests need no durability.
    pub fn start() -> Option<TempPostgres> {
        Self::start_with(false)
    }

    /// Like [`TempPostgres::start`], but with `fsync=on` (durable commits), for benchmarks that
    /// compare against SQLite syncing each commit.
    pub fn start_durable() -> Option<TempPostgres> {
        Self::start_with(true)
    }

    fn start_with(fsync: bool) -> Option<TempPostgres> {
        let Some(bin) = find_bin_dir() else {
            return unavailable(
                "initdb/pg_ctl not found (set UPDRAFT_PG_BIN or install PostgreSQL)",
            );
        };
        match Self::start_in(bin, fsync) {
            Ok(pg) => Some(pg),
            Err(e) => unavailable(&e),
        }
    }

    fn command(&self, tool: &str) -> Command {
        pg_command(&self.bin, tool, self.as_postgres)
    }

    fn start_in(bin: PathBuf, fsync: bool) -> Result<TempPostgres, String> {
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("updraft-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        if as_postgres {
            let status = Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !status.success() {
                return Err("chown of the temp dir to the postgres user failed".into());
            }
        }
        let data = dir.path().join("data");
        let out = pg_command(&bin, "initdb", as_postgres)
            .arg("-D")
            .arg(&data)
            .args(["-U", "updraft", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let port = free_port().map_err(|e| format!("free port: {e}"))?;
        let pg = TempPostgres {
            dir,
            bin,
            as_postgres,
            port,
        };
        let out = pg
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-o")
            .arg(format!(
                "-k {} -c listen_addresses=127.0.0.1 -p {port} -c fsync={}",
                pg.dir.path().display(),
                if fsync { "on" } else { "off" }
            ))
            .arg("-l")
            .arg(pg.dir.path().join("log"))
            .args(["-w", "-t", "60", "start"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pg_ctl start failed: {} {}",
                String::from_utf8_lossy(&out.stdout),
                std::fs::read_to_string(pg.dir.path().join("log")).unwrap_or_default()
            ));
        }
        Ok(pg)
    }

    /// URL of the `postgres` database of this cluster.
    pub fn url(&self) -> String {
        format!("postgres://updraft@127.0.0.1:{}/postgres", self.port)
    }

    /// Create a fresh database and return its URL (one per test keeps tests independent).
    pub fn create_database(&self, name: &str) -> Result<String, String> {
        let out = self
            .command("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "updraft",
                name,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("createdb: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(format!("postgres://updraft@127.0.0.1:{}/{name}", self.port))
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn pg_command(bin: &Path, tool: &str, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Database URLs a store test should run against: a SQLite file in `dir`, and a fresh database
/// on `pg` when there is one.
pub fn database_urls(dir: &Path, pg: Option<&TempPostgres>, name: &str) -> Vec<String> {
    let mut urls = vec![format!(
        "sqlite://{}",
        dir.join(format!("{name}.db")).display()
    )];
    if let Some(pg) = pg {
        match pg.create_database(name) {
            Ok(url) => urls.push(url),
            Err(e) => panic!("createdb {name}: {e}"),
        }
    }
    urls
}

/// Run `body` once per backend, each on a fresh database: SQLite in a temporary directory, and
/// a throwaway PostgreSQL when its binaries are there (required under `CI`).
pub async fn on_each_backend<F, Fut>(name: &str, body: F)
where
    F: Fn(crate::store::Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let pg = TempPostgres::start();
    let urls = database_urls(dir.path(), pg.as_ref(), name);
    for url in urls {
        let store = crate::store::Store::open(&url).await.expect("open store");
        eprintln!("running {name} on {:?}", store.backend());
        body(store.clone()).await;
        store.close().await;
    }
}
