//! Repository errors.

use ember_format::{ChunkError, ManifestError, PackError, PackId, FORMAT_VERSION};
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
    /// Written with another version of the format.
    #[error("repository format version {0} is not the one this Ember reads ({FORMAT_VERSION})")]
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
    /// A pack is missing from the store.
    #[error("pack {0} is missing")]
    MissingPack(PackId),
    /// A pack's index cannot be trusted.
    #[error("pack {pack} is damaged: {source}")]
    DamagedPack {
        /// The pack.
        pack: PackId,
        /// What is wrong.
        #[source]
        source: PackError,
    },
    /// A frame does not fit in a pack (cannot happen with the format's
    /// limits: packs are sealed at 16 MiB, frames are at most 64 MiB).
    #[error("chunk frame does not fit in pack {0}")]
    PackOverflow(PackId),
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
