//! `include/updraft_device.h` is what cbindgen makes of `src/lib.rs` today: a C program never
//! compiles against a stale header. `UPDRAFT_BLESS=1` rewrites it.

use std::path::Path;

#[test]
fn header_is_generated_from_the_current_source() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen parses src/lib.rs");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = dir.join("include/updraft_device.h");
    if std::env::var_os("UPDRAFT_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write the header");
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with src/lib.rs: run `UPDRAFT_BLESS=1 cargo test -p updraft-device-ffi --test header` and commit it",
        path.display()
    );
}
