//! Engine errors.

use ember_repo::RepoError;
use ember_types::BackupId;
use ember_volume::VolumeError;

/// Why an operation failed. Whatever the error, the repository is left
/// consistent: a failed backup is never listed, its chunks are orphans
/// that garbage collection removes.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The repository or its storage failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The storage target failed.
    #[error(transparent)]
    Store(#[from] ember_store::StoreError),
    /// The volume could not be read or written.
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// A chunk of a backup being restored is missing or damaged.
    #[error("backup {backup}: chunk #{index} (volume offset {offset}): {source}")]
    BadChunk {
        /// The backup being read.
        backup: BackupId,
        /// The chunk's position in the volume.
        index: u64,
        /// Its byte offset in the volume.
        offset: u64,
        /// What is wrong with it.
        #[source]
        source: RepoError,
    },
    /// An option or argument is not acceptable.
    #[error("{0}")]
    InvalidOption(String),
    /// An incremental backup was asked for with no backup to build on.
    #[error(
        "no earlier backup of {0} to take an incremental backup against; take a full backup first"
    )]
    NoParent(String),
    /// Garbage collection declined to run, with why.
    #[error("garbage collection refused: {0}")]
    GcRefused(String),
    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A worker thread panicked (a bug).
    #[error("internal error: a worker thread failed")]
    WorkerPanicked,
}
