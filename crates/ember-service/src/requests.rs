//! What callers ask of the service, already parsed (the HTTP layer builds
//! these from Cinder's JSON bodies).

use std::collections::BTreeMap;

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The project resources are scoped to.
    pub project_id: String,
    /// The user.
    pub user_id: String,
    /// Whether admin-only actions are allowed (noauth grants it, as Cinder's).
    pub is_admin: bool,
}

/// `POST /volumes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeCreate {
    /// Size in GiB (at least 1).
    pub size_gib: i64,
    /// Display name.
    pub name: Option<String>,
    /// Display description.
    pub description: Option<String>,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// Availability zone (default the service's).
    pub availability_zone: Option<String>,
    /// Volume type name.
    pub volume_type: Option<String>,
    /// Create by restoring this backup (3.47).
    pub backup_id: Option<String>,
    /// Create as a copy of this snapshot.
    pub snapshot_id: Option<String>,
}

/// `PUT /volumes/{id}`: fields given are replaced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeUpdate {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New metadata (replaces all).
    pub metadata: Option<BTreeMap<String, String>>,
}

/// `POST /snapshots`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotCreate {
    /// The volume to copy.
    pub volume_id: String,
    /// Display name.
    pub name: Option<String>,
    /// Display description.
    pub description: Option<String>,
    /// Allow an in-use volume.
    pub force: bool,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
}

/// `POST /backups`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupCreate {
    /// Source volume.
    pub volume_id: String,
    /// Container (recorded; Ember's repository is the service's).
    pub container: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// Display description.
    pub description: Option<String>,
    /// Incremental on the latest available backup of the volume.
    pub incremental: bool,
    /// Allow an in-use volume (backed up from a temporary snapshot).
    pub force: bool,
    /// Back up this snapshot of the volume instead of the volume.
    pub snapshot_id: Option<String>,
    /// User metadata (3.43).
    pub metadata: BTreeMap<String, String>,
    /// Availability zone (3.51).
    pub availability_zone: Option<String>,
}

/// `PUT /backups/{id}` (3.9): fields given are replaced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupUpdate {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New metadata (3.43; replaces all).
    pub metadata: Option<BTreeMap<String, String>>,
}

/// `POST /backups/{id}/restore`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreRequest {
    /// Existing volume to restore into; `None` creates one.
    pub volume_id: Option<String>,
    /// Name of the volume created when `volume_id` is `None`.
    pub name: Option<String>,
}

/// `GET /backups/{id}/export_record` result and `import_record` input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportRecord {
    /// The backup driver's name.
    pub backup_service: String,
    /// The encoded record.
    pub backup_url: String,
}
