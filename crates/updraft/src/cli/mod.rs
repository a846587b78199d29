//! Subcommands of the `updraft` command line, one module each.
//!
//! - `serve`: run the server;
//! - `devices`, `release`, `deploy` (with `status`): the management API from the shell, through
//!   `client` (server URL, admin token file, error messages).

pub mod client;
pub mod deploy;
pub mod devices;
pub mod release;
pub mod serve;
