//! The Updraft update server.
//!
//! Map of the crate, from the outside in:
//! - [`server`]: configuration, the data directory (database, blobs, token files), the router
//!   and graceful shutdown; start here;
//! - [`api`]: the management API under `/api/v1` (admin bearer token), with its OpenAPI
//!   document;
//! - [`ddi`]: the hawkBit DDI v1 device API (`TargetToken` / `GatewayToken`);
//! - [`http`]: the JSON error type and extractors both APIs share;
//! - [`store`]: devices, trusted keys, releases, rollouts and per-device actions with their event
//!   history, on SQLite or PostgreSQL through one code path;
//! - [`blobs`]: firmware images in an object store, streamed and hashed on the way in;
//! - [`keys`], [`tokens`]: trusted public keys (PEM) and secret tokens;
//! - [`metrics`]: `/metrics` in the Prometheus text format (request counters, fleet gauges);
//! - [`perms`]: owner-only modes for the data directory and its files;
//! - [`testing`]: a throwaway PostgreSQL for tests.

#![warn(missing_docs)]

pub mod api;
pub mod blobs;
pub mod ddi;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod perms;
pub mod server;
pub mod store;
pub mod testing;
pub mod tokens;

pub use server::{Config, Server, ServerError, shutdown_signal};
