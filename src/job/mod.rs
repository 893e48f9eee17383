//! The nightly job: its config file, hooks and notifications. `cairn run`
//! (src/cli/run.rs) sequences them around the backups, forget and check.

pub mod config;
pub mod hooks;
pub mod notify;
pub mod state;
