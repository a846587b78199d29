//! The Updraft update server.
//!
//! Map of the crate, from the outside in:
//! - [`server`]: configuration, the data directory (database, blobs, token files), the router
//!   and graceful shutdown; start here;
//! - [`api`]: the management API under `/api/v1` (admin bearer token), with its OpenAPI
//!   document;
//! - [`ddi`]: the hawkBit DDI v1 device API (`TargetToken` / `GatewayToken`): HTTP and JSON
//!   only, translated into fleet calls;
//! - [`fleet`]: every deployment rule, once, for every front: authentication, the next work of
//!   a device, device reports through one transition function, cancels, artifacts, the
//!   `work_changed` outbox;
//! - [`http`]: the JSON error type and extractors both APIs share;
//! - [`store`]: devices, trusted keys, releases, rollouts and per-device actions with their event
//!   history, on SQLite or PostgreSQL through one code path;
//! - [`blobs`]: firmware images in an object store, streamed and hashed on the way in;
//! - [`campaign`]: the campaign engine (phases, thresholds, rate, retries, timeouts,
//!   maintenance window), a deterministic state machine with no store and no clock;
//! - [`keys`], [`tokens`]: trusted public keys (PEM) and secret tokens;
//! - [`metrics`]: `/metrics` in the Prometheus text format (request counters, fleet gauges);
//! - [`perms`]: owner-only modes for the data directory and its files;
//! - [`testing`]: a throwaway PostgreSQL for tests.

#![warn(missing_docs)]

pub mod api;
pub mod blobs;
pub mod campaign;
pub mod ddi;
pub mod fleet;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod perms;
pub mod server;
pub mod store;
pub mod testing;
pub mod tokens;

pub use server::{Config, Server, ServerError, shutdown_signal};
