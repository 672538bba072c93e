//! Cinder's Ceph backup driver, with Cinder's layout on the backup cluster
//! (`cinder/backup/drivers/ceph.py`; spec §3.10), so that backups made by
//! Cinder restore here and backups made here restore with Cinder (or with
//! `rbd export` alone):
//!
//! - An RBD source volume is snapshotted as `backup.<backup_id>.snap.<ts>`
//!   and copied into the per-volume base image
//!   `volume-<volume_id>.backup.base` of the backup pool, which then gets a
//!   snapshot of the same name: the backup. The first backup copies the
//!   allocated extents only; the next ones apply the RBD diff between the
//!   source's previous backup snapshot and the new one (what Cinder pipes
//!   through `rbd export-diff | rbd import-diff`). Only the newest backup
//!   snapshot is kept on the source.
//! - A file or block-device source is copied whole, holes kept as holes,
//!   into `volume-<volume_id>.backup.<backup_id>`, without snapshot.
//! - The volume metadata JSON is the RADOS object `backup.<backup_id>.meta`.
//!
//! Unlike Cinder, an incremental that cannot be done is never silently a
//! full backup: [`BackupOutcome::kind`] says which was done and why
//! ([`FullReason`]). Restores zero every hole of the backup on a used
//! target (Cinder's sparse-restore bug 2155612 left old data or shifted
//! chunks there), and a failed or cancelled backup removes what it created
//! (snapshots included).
//!
//! Everything is synchronous; data is copied by a few reader threads and
//! one writer, in [`RbdBackupConfig::chunk_size`] pieces.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backup;
mod catalog;
mod config;
mod copy;
mod delete;
mod error;
mod names;
mod ranges;
mod restore;

use ember_ceph::{rbd, IoCtx};

pub use backup::{BackupKind, BackupOutcome, BackupRequest, BackupSource, FullReason};
pub use catalog::BackupEntry;
pub use config::{RbdBackupConfig, DEFAULT_CHUNK_SIZE};
pub use copy::{Control, Progress, TransferStats};
pub use delete::DeleteOutcome;
pub use ember_volume::{new_snapshot_name, parse_snapshot_name};
pub use error::RbdBackupError;
pub use names::{base_image_name, full_image_name, metadata_object_name};
pub use restore::{RestoreMethod, RestoreOutcome, RestoreTarget};

/// An RBD image in some pool of some cluster (the pool's [`IoCtx`] says
/// which).
#[derive(Clone, Copy, Debug)]
pub struct RbdImage<'a> {
    /// The pool.
    pub io: &'a IoCtx,
    /// The image's name.
    pub image: &'a str,
}

/// The driver, connected to its backup pool.
#[derive(Debug)]
pub struct RbdBackupDriver {
    config: RbdBackupConfig,
    io: IoCtx,
}

impl RbdBackupDriver {
    /// Connects to the backup cluster and opens the backup pool, checking
    /// that its images can be listed: a wrong user or key, unreachable
    /// monitors, a missing pool or missing capabilities fail here
    /// ([`RbdBackupError::Connect`]), and the backend is down.
    pub fn connect(config: RbdBackupConfig) -> Result<Self, RbdBackupError> {
        let pool = config.cluster.pool.clone();
        let fail = |source| RbdBackupError::Connect {
            pool: pool.clone(),
            source,
        };
        let io = config.cluster.connect().map_err(fail)?;
        rbd::list(&io).map_err(fail)?;
        Ok(RbdBackupDriver { config, io })
    }

    /// Lists the backup pool's images: whether the pool can still be used
    /// through this connection (for health checks).
    pub fn check(&self) -> Result<(), RbdBackupError> {
        rbd::list(&self.io)
            .map(drop)
            .map_err(|source| RbdBackupError::Connect {
                pool: self.pool().to_string(),
                source,
            })
    }

    /// The configuration.
    pub fn config(&self) -> &RbdBackupConfig {
        &self.config
    }

    /// The backup pool's name.
    pub fn pool(&self) -> &str {
        self.io.pool()
    }
}
