//! The rows the service keeps: volumes, snapshots, backups and services.
//!
//! Statuses are Cinder's strings (see `../shared/spec/cinder-and-peers.md`
//! §2.1); the API layer decides which transitions are allowed and uses the
//! compare-and-set methods of [`crate::Database`] to make them atomic.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// A volume managed by the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeRecord {
    /// UUID.
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Creating user.
    pub user_id: String,
    /// Display name.
    pub name: Option<String>,
    /// Display description.
    pub description: Option<String>,
    /// Size in GiB.
    pub size_gib: i64,
    /// Cinder volume status (`creating`, `available`, `backing-up`, …).
    pub status: String,
    /// Status to return to after a backup (Cinder's `previous_status`).
    pub previous_status: Option<String>,
    /// Availability zone.
    pub availability_zone: String,
    /// Volume type name, if any.
    pub volume_type: Option<String>,
    /// Where the volume's data is: a file or a block device.
    pub path: String,
    /// Whether deleting the volume deletes its data (false for volumes
    /// brought under management from an existing image or device).
    pub owns_data: bool,
    /// Backup it was restored from, if any (Cinder's `src_backup_id`).
    pub source_backup_id: Option<String>,
    /// Snapshot it was created from, if any.
    pub snapshot_id: Option<String>,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A point-in-time copy of a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// UUID.
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Creating user.
    pub user_id: String,
    /// The volume it copies.
    pub volume_id: String,
    /// Display name.
    pub name: Option<String>,
    /// Display description.
    pub description: Option<String>,
    /// Size in GiB (the volume's at the time).
    pub size_gib: i64,
    /// Cinder snapshot status (`creating`, `available`, `backing-up`, `deleting`, `error`).
    pub status: String,
    /// Where the copy's data is.
    pub path: String,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// Creation time (a backup of the snapshot takes it as `data_timestamp`).
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A backup as the API knows it. Its data lives in the repository under
/// the same id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupRecord {
    /// UUID (also the repository's backup id).
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Creating user.
    pub user_id: String,
    /// Source volume (zeros UUID while an import runs).
    pub volume_id: String,
    /// Source snapshot, if the backup was taken from one.
    pub snapshot_id: Option<String>,
    /// Parent backup of an incremental.
    pub parent_id: Option<String>,
    /// Cinder backup status (`creating`, `available`, `deleting`, `error`,
    /// `error_deleting`, `restoring`).
    pub status: String,
    /// Display name.
    pub name: Option<String>,
    /// Display description.
    pub description: Option<String>,
    /// Container given at create.
    pub container: Option<String>,
    /// Availability zone of the backup service.
    pub availability_zone: Option<String>,
    /// Size in GiB (the source volume's).
    pub size_gib: i64,
    /// Objects written (Ember: chunks newly stored).
    pub object_count: i64,
    /// Last error text.
    pub fail_reason: Option<String>,
    /// Point in time of the data (creation, or the snapshot's creation).
    pub data_timestamp: DateTime<Utc>,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// Volume being restored into while `restoring`.
    pub restore_volume_id: Option<String>,
    /// Temporary snapshot taken for an in-use volume, to clean up.
    pub temp_snapshot_id: Option<String>,
    /// Service host that runs or ran the job.
    pub host: Option<String>,
    /// Bytes processed by the running job.
    pub progress_done: i64,
    /// Bytes the running job will process.
    pub progress_total: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Why the backup is full although an incremental was asked for
    /// (only the Ceph driver ever does that, and says why); set by
    /// [`crate::Database::set_backup_kind`].
    pub full_reason: Option<String>,
}

/// A running (or once running) Ember service, for `os-services`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRecord {
    /// Host name.
    pub host: String,
    /// Binary (`cinder-backup`, `cinder-volume`).
    pub binary: String,
    /// Availability zone.
    pub zone: String,
    /// Disabled by an operator.
    pub disabled: bool,
    /// Why it is disabled.
    pub disabled_reason: Option<String>,
    /// First heartbeat.
    pub created_at: DateTime<Utc>,
    /// Last heartbeat.
    pub updated_at: DateTime<Utc>,
}

/// Sort direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortDir {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

/// Columns lists can be sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// Creation time.
    CreatedAt,
    /// Last change.
    UpdatedAt,
    /// Display name.
    Name,
    /// Status.
    Status,
    /// Size.
    Size,
    /// Id.
    Id,
    /// Data timestamp (backups only; others use creation time).
    DataTimestamp,
}

/// Which backups (or volumes, or snapshots) to list and how.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this project's rows; `None` = every project (admin `all_tenants`).
    pub project_id: Option<String>,
    /// Exact display name.
    pub name: Option<String>,
    /// Display name containing this text (Cinder's `name~`).
    pub name_like: Option<String>,
    /// Exact status.
    pub status: Option<String>,
    /// Rows of this volume (backups and snapshots).
    pub volume_id: Option<String>,
    /// Sort order, most significant first; empty = created_at desc. Ties
    /// are always broken by id, so pages are stable.
    pub sort: Vec<(SortKey, SortDir)>,
    /// Only rows after the row with this id in sort order; a marker that
    /// matches no row is an error ([`crate::MetaError::MarkerNotFound`]).
    pub marker: Option<String>,
    /// Rows to skip (after the marker).
    pub offset: Option<u64>,
    /// At most this many rows.
    pub limit: Option<u64>,
}

/// A page of a list and how many rows matched before paging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// Rows matching the filters, before marker, offset and limit.
    pub total: u64,
}
