//! The `updraft` command line.
fn main() {}
