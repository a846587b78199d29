//! The Updraft update server.
//!
//! Map of the crate:
//! - [`store`]: devices, trusted keys, releases, rollouts and per-device actions with their event
//!   history, on SQLite or PostgreSQL through one code path;
//! - [`testing`]: a throwaway PostgreSQL for tests.

pub mod blobs;
pub mod store;
pub mod testing;
