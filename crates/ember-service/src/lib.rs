//! The core of `ember serve`: what Cinder's backup API and backup manager
//! do, without HTTP.
//!
//! [`Ember`] checks every request against Cinder's state machine and rules
//! (`../shared/spec/cinder-and-peers.md` §2), makes the synchronous status
//! changes atomically in the metadata database, and runs the data work
//! (backup, restore, delete) as background jobs on the engine, at most
//! `backup_max_operations` at a time, with progress and cancellation.
//! Volumes are sparse raw files in the data directory or RBD images (or
//! existing images and devices brought under management); backups go to
//! Ember's repository or to Cinder's Ceph layout.
#![forbid(unsafe_code)]

mod backup_ops;
mod config;
mod error;
mod job_runs;
mod jobs;
mod rbd_volumes;
mod requests;
mod service;
mod targets;
mod transfers;
mod volume_ops;
mod volumes;

pub use config::{BackupDriver, ServiceConfig, VolumeDriver};
pub use error::ServiceError;
pub use requests::{
    BackupCreate, BackupUpdate, Caller, ExportRecord, RestoreRequest, SnapshotCreate, VolumeCreate,
    VolumeUpdate,
};
pub use service::{Ember, ServiceStatus};
pub use targets::{BACKUP_SERVICE_NAME, CEPH_BACKUP_SERVICE_NAME};
