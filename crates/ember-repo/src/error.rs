//! Repository errors.

use ember_format::{ChunkError, ManifestError};
use ember_store::StoreError;
use ember_types::{BackupId, ChunkDigest};

/// Why a repository operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The location holds no Ember repository.
    #[error("{0} is not an Ember repository (no config object)")]
    NotARepository(String),
    /// `init` on a location that already holds a repository.
    #[error("{0} already holds an Ember repository")]
    AlreadyInitialized(String),
    /// The repository config cannot be read.
    #[error("repository config is damaged: {0}")]
    BadConfig(String),
    /// Written by a newer Ember.
    #[error("repository format version {0} is newer than this Ember understands")]
    UnsupportedVersion(u32),
    /// No backup with this id.
    #[error("backup {0} does not exist")]
    BackupNotFound(String),
    /// A prefix matching several backups.
    #[error("'{0}' matches several backups; give more of the id")]
    AmbiguousId(String),
    /// A manifest cannot be trusted.
    #[error("manifest of backup {id} is damaged: {source}")]
    DamagedManifest {
        /// Its backup.
        id: BackupId,
        /// What is wrong.
        #[source]
        source: ManifestError,
    },
    /// A chunk is missing from the store.
    #[error("chunk {0} is missing")]
    MissingChunk(ChunkDigest),
    /// A chunk is present but fails its checks.
    #[error("chunk {digest} is damaged: {source}")]
    DamagedChunk {
        /// The chunk.
        digest: ChunkDigest,
        /// What is wrong.
        #[source]
        source: ChunkError,
    },
    /// The storage target failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
