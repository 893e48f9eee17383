//! The one integration-test binary. Each module drives the real `cairn`
//! binary (or the library, for format vectors) on temporary repositories.

mod common;

mod backup_restore;
mod browse;
mod check;
mod chunkers;
mod cli;
mod compat;
mod copy;
mod crash;
mod damage;
mod dedup;
mod exit_codes;
mod faults;
mod filters;
mod fixtures;
mod forget;
mod habits;
mod job;
mod job_pg;
mod lists;
mod locks;
mod migrate;
mod mount;
mod multi_stream;
mod nightly;
mod permissions;
mod pg_source;
mod pitr;
mod postgres;
mod prune;
mod redis;
mod repair;
mod s3;
mod schedule;
mod signals;
mod soak;
mod status;
mod streams;
