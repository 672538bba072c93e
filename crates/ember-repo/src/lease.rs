//! Leases of running writers.

use chrono::{DateTime, Utc};
use ember_store::Lease;
use ember_types::BackupId;
use serde::{Deserialize, Serialize};

/// What a running backup announces about itself while it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterInfo {
    /// The backup being written.
    pub backup: BackupId,
    /// The parent whose manifest it reads (its chunks are reused untouched).
    pub parent: Option<BackupId>,
    /// When it started; every chunk it writes or reuses by lookup is newer.
    pub started_at: DateTime<Utc>,
    /// Process id, for operators.
    pub pid: u32,
}

/// Held for the whole life of a backup; dropping it ends the lease.
pub struct WriterLease {
    pub(crate) _lease: Box<dyn Lease>,
}
