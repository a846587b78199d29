//! The Updraft device update core (`no_std`, no allocation, sans-IO).
#![no_std]

#[cfg(any(test, feature = "sim"))]
extern crate std;

pub mod auth;
pub mod boot;
pub mod journal;
pub mod layout;
pub mod object5;
pub mod record;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod stats;
pub mod update;
pub mod verify;

pub use auth::Decision;
pub use boot::{BootDecision, ImageState, select_boot_slot};
pub use layout::{Layout, Region, Slot};
pub use object5::{OpError, Severity, State, UpdateResult};
pub use update::{Action, Config, DownloadFailure, Event, ResumeMode, UpdateCore};
