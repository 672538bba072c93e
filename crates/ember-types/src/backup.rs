//! What a backup is: its record, as kept in the repository's manifest.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{BackupId, Codec};

/// Everything known about one completed backup. It is written into the
/// backup's manifest, so the repository alone describes its backups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// The backup's id.
    pub id: BackupId,
    /// The backup this one was taken incrementally against, if any. Only a
    /// hint of lineage: every backup lists all of its chunks, so it can be
    /// restored (and its parent deleted) on its own.
    pub parent: Option<BackupId>,
    /// Free-form name given by the user.
    pub name: Option<String>,
    /// Free-form description given by the user.
    pub description: Option<String>,
    /// Where the data came from (a path), used to find the parent of
    /// `--incremental` without an explicit id.
    pub source: String,
    /// Volume id given by a caller that manages volumes (the Cinder API).
    #[serde(default)]
    pub volume_id: Option<String>,
    /// Size of the backed-up volume in bytes.
    pub volume_size: u64,
    /// Size of every chunk but the last, in bytes.
    pub chunk_size: u32,
    /// Codec asked for when the backup was taken (each chunk records its own).
    pub codec: Codec,
    /// When the backup started reading its source.
    pub started_at: DateTime<Utc>,
    /// When the backup was committed.
    pub completed_at: DateTime<Utc>,
    /// What the backup did.
    pub stats: BackupStats,
}

impl BackupInfo {
    /// Number of chunk entries in the backup's manifest.
    pub fn chunk_count(&self) -> u64 {
        self.volume_size.div_ceil(u64::from(self.chunk_size))
    }
}

/// Counts describing the work one backup did and the space it added.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStats {
    /// Chunks that were all zeros or unallocated (never stored).
    pub zero_chunks: u64,
    /// Chunks unchanged since the parent backup (not looked up again).
    pub unchanged_chunks: u64,
    /// Changed chunks whose content was already in the repository.
    pub deduplicated_chunks: u64,
    /// Chunks newly written to the repository.
    pub new_chunks: u64,
    /// Bytes read from the source (unallocated regions are not read).
    pub bytes_read: u64,
    /// Plaintext bytes of the newly written chunks.
    pub new_bytes: u64,
    /// Bytes the newly written chunks take in the repository.
    pub stored_bytes: u64,
}
