//! Ember's metadata database: the volumes, snapshots, backups and services
//! the Cinder-compatible service keeps, on SQLite (one file, WAL mode) or
//! PostgreSQL.
//!
//! [`Database::connect`] opens either from a URL and brings the schema up
//! to date (one set of embedded migrations serves both engines). Records
//! ([`VolumeRecord`], [`SnapshotRecord`], [`BackupRecord`],
//! [`ServiceRecord`]) go in and out whole; status changes that race are
//! made atomic by compare-and-set (`set_*_status`). Volumes, snapshots and
//! backups are deleted softly: gone from gets and lists, their ids never
//! reused. Lists ([`ListQuery`]) filter, sort on whitelisted keys with ids
//! breaking ties, and page by marker, offset and limit.
//!
//! Stored forms, the same on both engines: timestamps as fixed-width UTC
//! text with nanoseconds (`2026-11-22T03:39:11.123456789Z`, so a record
//! reads back exactly as written and text order is time order), booleans
//! as 0/1, metadata as JSON text. Text is compared and sorted byte by byte
//! on both engines.
#![forbid(unsafe_code)]

mod backups;
mod codec;
mod database;
mod error;
pub mod records;
mod services;
mod snapshots;
mod table;
mod volumes;

pub use database::{Database, Engine};
pub use error::MetaError;
pub use records::*;
