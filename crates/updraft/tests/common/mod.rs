//! A real `updraft serve` for the CLI tests: started on a free port in a temporary data
//! directory, stopped (SIGTERM) on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Served {
    pub child: Child,
    pub addr: String,
    pub data: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// `updraft serve` on its defaults, data in `dir/data`.
pub fn serve(dir: &Path) -> Served {
    serve_with(dir, &[])
}

/// `updraft serve` with extra arguments.
pub fn serve_with(dir: &Path, extra: &[&str]) -> Served {
    let data = dir.join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_updraft"))
        .args(["serve", "--http", "127.0.0.1:0"])
        .args(extra)
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first.rsplit("http://").next().unwrap().trim().to_string();
    // Keep draining the banner so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Served { child, addr, data }
}
