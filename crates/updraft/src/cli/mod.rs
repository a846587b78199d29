//! Subcommands of the `updraft` command line, one module each.

pub mod serve;
