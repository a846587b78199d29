//! The Updraft device update core (no_std, sans-IO).
#![no_std]
