//! The flash geometry is a build-time setting: the core's flash trait has the write and erase
//! sizes as constants (records and lazy sector erases are laid out with them), so a C firmware
//! chooses them when it builds the library, as it would in a `config.h`. `updraft_start` checks
//! that the geometry the C flash reports is the one compiled in.
use std::{env, fs, path::PathBuf};

fn setting(name: &str, default: u32) -> u32 {
    println!("cargo:rerun-if-env-changed={name}");
    match env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number of bytes")),
        Err(_) => default,
    }
}

fn main() {
    let write = setting("UPDRAFT_FFI_WRITE_SIZE", 4);
    let erase = setting("UPDRAFT_FFI_ERASE_SIZE", 4096);
    assert!(
        write.is_power_of_two(),
        "UPDRAFT_FFI_WRITE_SIZE={write}: a power of two (the core checks its own limit at start)"
    );
    assert!(
        erase.is_power_of_two() && erase >= write,
        "UPDRAFT_FFI_ERASE_SIZE={erase}: a power of two, at least the write size"
    );
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(
        out.join("geometry.rs"),
        format!(
            "/// Flash write granularity compiled in (`UPDRAFT_FFI_WRITE_SIZE`).\n\
             pub const WRITE_SIZE: usize = {write};\n\
             /// Flash erase (sector) size compiled in (`UPDRAFT_FFI_ERASE_SIZE`).\n\
             pub const ERASE_SIZE: usize = {erase};\n"
        ),
    )
    .expect("write geometry.rs");
}
