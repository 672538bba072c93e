//! Errors of the RBD backup driver.

use ember_ceph::CephError;
use ember_types::BackupId;
use ember_volume::VolumeError;

/// Why a backup, restore or delete on the backup cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum RbdBackupError {
    /// The backup cluster or its pool cannot be used (wrong user or key,
    /// unreachable monitors, missing pool, no capability on it): the
    /// backend is down.
    #[error("backup pool {pool} is unusable: {source}")]
    Connect {
        /// The backup pool.
        pool: String,
        /// What Ceph said.
        #[source]
        source: CephError,
    },
    /// A Ceph call failed (the error names the call, image and errno).
    #[error(transparent)]
    Ceph(#[from] CephError),
    /// Reading a file or block device source, or writing such a target,
    /// failed.
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// A volume id that cannot be part of Cinder's image names.
    #[error("'{0}' cannot be a volume id (letters, digits, '-' and '_' only)")]
    InvalidVolumeId(String),
    /// The backup pool holds no snapshot or image of this backup.
    #[error("backup {backup_id} of volume {volume_id} is not in pool {pool}")]
    NotFound {
        /// The backup.
        backup_id: BackupId,
        /// Its volume.
        volume_id: String,
        /// The backup pool.
        pool: String,
    },
    /// The backup id was used already: its snapshot or image exists.
    #[error("backup {backup_id} exists already ({what})")]
    AlreadyExists {
        /// The backup.
        backup_id: BackupId,
        /// The snapshot or image found.
        what: String,
    },
    /// The metadata object of the backup exists already (it is written
    /// once, as Cinder's `VolumeMetadataBackupExists`).
    #[error("metadata object {0} exists already")]
    MetadataExists(String),
    /// The restore target is smaller than the backed-up volume.
    #[error(
        "restore target {target} holds {target_size} bytes, backup {backup_id} needs {needed}"
    )]
    TargetTooSmall {
        /// The target.
        target: String,
        /// Its size.
        target_size: u64,
        /// The backed-up volume's size.
        needed: u64,
        /// The backup.
        backup_id: BackupId,
    },
    /// A read returned fewer bytes than the image holds there.
    #[error("{target}: read {got} of {wanted} bytes at offset {offset}")]
    ShortRead {
        /// The image.
        target: String,
        /// Where.
        offset: u64,
        /// Bytes asked for.
        wanted: usize,
        /// Bytes read.
        got: usize,
    },
    /// The caller's cancel flag was raised; what was created is removed.
    #[error("cancelled")]
    Cancelled,
    /// A reader thread panicked.
    #[error("a reader thread panicked")]
    ReaderPanicked,
}

impl RbdBackupError {
    /// Whether the failure may be the cluster connection's (see
    /// [`CephError::is_connection_failure`]): the caller should connect
    /// anew before the next backup.
    pub fn is_connection_failure(&self) -> bool {
        match self {
            RbdBackupError::Connect { .. } => true,
            RbdBackupError::Ceph(e) | RbdBackupError::Volume(VolumeError::Ceph(e)) => {
                e.is_connection_failure()
            }
            _ => false,
        }
    }
}
