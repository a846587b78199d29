//! Benchmark: the device core's streaming image verification against `sha256sum` on the same
//! file, in one run. Prints throughputs and their ratio (not a test: no thresholds).
//!
//! `cargo run --release -p updraft-device --example verify_throughput -- [FILE] [BLOCK]`
//! (default: a 64 MiB file of pseudo-random bytes in a temporary directory, 1024-byte blocks,
//! the largest CoAP block a device receives).
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use updraft_device::UpdateCore;
use updraft_device::verify::{ImageVerifier, sha256};

const SIZE: usize = 64 * 1024 * 1024;
const RUNS: usize = 5;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = match args.next() {
        Some(p) => PathBuf::from(p),
        None => make_file()?,
    };
    let block: usize = args.next().and_then(|b| b.parse().ok()).unwrap_or(1024);
    let len = std::fs::metadata(&path)?.len();

    // The signed digest the device is given; computed once with the one-shot function.
    let expected = sha256(&std::fs::read(&path)?);

    let ours = best_of(|| {
        let mut verifier = ImageVerifier::new(len as u32, expected);
        let mut file = File::open(&path).expect("open");
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            for chunk in buf[..n].chunks(block) {
                verifier.update(chunk).expect("within the signed size");
            }
        }
        verifier.finish().expect("digest matches");
    });
    let peer = best_of(|| {
        let out = Command::new("sha256sum")
            .arg(&path)
            .output()
            .expect("sha256sum runs");
        assert!(out.status.success(), "sha256sum failed");
    });

    let mib = len as f64 / (1024.0 * 1024.0);
    let rate = |d: Duration| mib / d.as_secs_f64();
    println!("streaming verify of {mib:.0} MiB in {block}-byte blocks, best of {RUNS} runs");
    println!("  updraft-device ImageVerifier: {:8.1} MiB/s", rate(ours));
    println!("  sha256sum (coreutils):        {:8.1} MiB/s", rate(peer));
    println!(
        "  ratio updraft / sha256sum:    {:8.2}",
        rate(ours) / rate(peer)
    );
    println!(
        "core state: size_of::<UpdateCore>() = {} bytes",
        std::mem::size_of::<UpdateCore<'static>>()
    );
    Ok(())
}

fn best_of(mut f: impl FnMut()) -> Duration {
    (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// A 64 MiB file of xorshift bytes (incompressible, reproducible).
fn make_file() -> std::io::Result<PathBuf> {
    let path = std::env::temp_dir().join("updraft-verify-bench.bin");
    if std::fs::metadata(&path)
        .map(|m| m.len() as usize == SIZE)
        .unwrap_or(false)
    {
        return Ok(path);
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut data = Vec::with_capacity(SIZE);
    while data.len() < SIZE {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    std::fs::write(&path, &data)?;
    Ok(path)
}
