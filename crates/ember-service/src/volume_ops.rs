//! Volumes and snapshots: the subset of Cinder's volume API backups need.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use ember_meta::{ListQuery, Page, SnapshotRecord, VolumeRecord};
use ember_volume::VolumeSource as _;

use crate::volumes::GIB;
use crate::{Caller, Ember, ServiceError, SnapshotCreate, VolumeCreate, VolumeUpdate};

/// Volume statuses from which a volume may be deleted (Cinder's list).
const DELETABLE_VOLUME: [&str; 5] = [
    "available",
    "error",
    "error_restoring",
    "error_extending",
    "error_managing",
];

impl Ember {
    /// Creates a volume: empty, a copy of a snapshot, or restored from a
    /// backup (the restore then runs in the background; the volume is
    /// `creating` until it ends).
    pub async fn create_volume(
        self: &Arc<Self>,
        caller: &Caller,
        request: VolumeCreate,
    ) -> Result<VolumeRecord, ServiceError> {
        let snapshot = match &request.snapshot_id {
            Some(id) => Some(self.snapshot_of(caller, id).await?),
            None => None,
        };
        let backup = match &request.backup_id {
            Some(id) => Some(self.backup_of(caller, id).await?),
            None => None,
        };
        let minimum = snapshot
            .as_ref()
            .map(|s| s.size_gib)
            .or(backup.as_ref().map(|b| b.size_gib))
            .unwrap_or(1);
        let size_gib = if request.size_gib == 0 && (snapshot.is_some() || backup.is_some()) {
            minimum
        } else {
            request.size_gib
        };
        if size_gib < 1 {
            return Err(ServiceError::bad(format!(
                "Invalid input received: Volume size '{}' must be an integer and greater than 0.",
                request.size_gib
            )));
        }
        if size_gib < minimum {
            return Err(ServiceError::bad(format!(
                "Volume size {size_gib}GB cannot be smaller than the source size {minimum}GB."
            )));
        }
        if let Some(backup) = &backup {
            if backup.status != "available" {
                return Err(ServiceError::bad("Backup status must be available"));
            }
        }
        if let Some(snapshot) = &snapshot {
            if snapshot.status != "available" {
                return Err(ServiceError::bad(
                    "Originating snapshot status must be one of 'available' values",
                ));
            }
        }

        let id = uuid::Uuid::new_v4().to_string();
        let path = self.volumes.path_for(&id);
        match &snapshot {
            Some(snapshot) => {
                let (volumes, from, to) = (
                    self.volumes.clone(),
                    PathBuf::from(&snapshot.path),
                    path.clone(),
                );
                blocking(move || {
                    volumes.copy(&from, &to)?;
                    volumes.grow(&to, size_gib)
                })
                .await?;
            }
            None => {
                self.volumes.create(&id, size_gib)?;
            }
        }
        let now = Utc::now();
        let record = VolumeRecord {
            id: id.clone(),
            project_id: caller.project_id.clone(),
            user_id: caller.user_id.clone(),
            name: request.name,
            description: request.description,
            size_gib,
            status: if backup.is_some() {
                "creating"
            } else {
                "available"
            }
            .into(),
            previous_status: None,
            availability_zone: request
                .availability_zone
                .unwrap_or_else(|| self.config.storage_availability_zone.clone()),
            volume_type: request.volume_type,
            path: path.display().to_string(),
            owns_data: true,
            source_backup_id: request.backup_id.clone(),
            snapshot_id: request.snapshot_id,
            metadata: request.metadata,
            created_at: now,
            updated_at: now,
        };
        if let Err(e) = self.db.insert_volume(&record).await {
            let _ = self.volumes.remove(&path);
            return Err(e.into());
        }
        if let Some(backup) = backup {
            self.begin_restore(backup, record.clone(), true).await?;
        }
        Ok(record)
    }

    /// Brings an existing image file or block device under management as a
    /// volume (its size rounded up to whole GiB); deleting the volume later
    /// leaves the data in place.
    pub async fn manage_volume(
        &self,
        caller: &Caller,
        path: &Path,
        name: Option<String>,
    ) -> Result<VolumeRecord, ServiceError> {
        Self::require_admin(caller, "volume_extension:volume_manage")?;
        let source =
            ember_volume::Source::open(path).map_err(|e| ServiceError::bad(e.to_string()))?;
        let now = Utc::now();
        let record = VolumeRecord {
            id: uuid::Uuid::new_v4().to_string(),
            project_id: caller.project_id.clone(),
            user_id: caller.user_id.clone(),
            name,
            description: None,
            size_gib: source.size().div_ceil(GIB).max(1) as i64,
            status: "available".into(),
            previous_status: None,
            availability_zone: self.config.storage_availability_zone.clone(),
            volume_type: None,
            path: path.display().to_string(),
            owns_data: false,
            source_backup_id: None,
            snapshot_id: None,
            metadata: Default::default(),
            created_at: now,
            updated_at: now,
        };
        self.db.insert_volume(&record).await?;
        Ok(record)
    }

    /// The caller's volume.
    pub async fn get_volume(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<VolumeRecord, ServiceError> {
        self.volume_of(caller, id).await
    }

    /// Where volume `id`'s data is, whoever owns it (for the operator's
    /// `ember volume path`).
    pub async fn volume_path(&self, id: &str) -> Result<String, ServiceError> {
        match self.db.get_volume(id).await? {
            Some(volume) => Ok(volume.path),
            None => Err(ServiceError::NotFound(format!(
                "Volume {id} could not be found."
            ))),
        }
    }

    /// The caller's volumes (every project's with `all_tenants` as admin).
    pub async fn list_volumes(
        &self,
        caller: &Caller,
        mut query: ListQuery,
        all_tenants: bool,
    ) -> Result<Page<VolumeRecord>, ServiceError> {
        query.project_id = scope(caller, all_tenants)?;
        Ok(self.db.list_volumes(&query).await?)
    }

    /// Changes a volume's name, description or metadata.
    pub async fn update_volume(
        &self,
        caller: &Caller,
        id: &str,
        update: VolumeUpdate,
    ) -> Result<VolumeRecord, ServiceError> {
        let mut volume = self.volume_of(caller, id).await?;
        if let Some(name) = update.name {
            volume.name = Some(name);
        }
        if let Some(description) = update.description {
            volume.description = Some(description);
        }
        if let Some(metadata) = update.metadata {
            volume.metadata = metadata;
        }
        Ok(self.db.update_volume(&volume).await?)
    }

    /// Deletes a volume that is not busy and has no snapshots; its data goes
    /// too unless it was brought under management.
    pub async fn delete_volume(&self, caller: &Caller, id: &str) -> Result<(), ServiceError> {
        let volume = self.volume_of(caller, id).await?;
        let snapshots = self
            .db
            .list_snapshots(&ListQuery {
                volume_id: Some(id.to_string()),
                ..ListQuery::default()
            })
            .await?;
        if snapshots.total > 0 {
            return Err(ServiceError::bad(format!(
                "Invalid volume: Volume still has {} dependent snapshots.",
                snapshots.total
            )));
        }
        if !self
            .db
            .set_volume_status(id, &DELETABLE_VOLUME, "deleting")
            .await?
        {
            return Err(ServiceError::bad(format!(
                "Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots, awaiting a transfer, or be disassociated from snapshots after volume transfer, but current status is: {}.",
                volume.status
            )));
        }
        if volume.owns_data {
            self.volumes.remove(Path::new(&volume.path))?;
        }
        Ok(self.db.delete_volume(id).await?)
    }

    /// Takes a snapshot: a sparse copy of the volume's data now.
    pub async fn create_snapshot(
        &self,
        caller: &Caller,
        request: SnapshotCreate,
    ) -> Result<SnapshotRecord, ServiceError> {
        let volume = self.volume_of(caller, &request.volume_id).await?;
        let allowed = volume.status == "available" || (volume.status == "in-use" && request.force);
        if !allowed {
            return Err(ServiceError::bad(format!(
                "Invalid volume: Volume {} status must be available, but current status is: {}.",
                volume.id, volume.status
            )));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let path = self.volumes.snapshot_path_for(&id);
        let (volumes, from, to) = (
            self.volumes.clone(),
            PathBuf::from(&volume.path),
            path.clone(),
        );
        blocking(move || volumes.copy(&from, &to)).await?;
        let now = Utc::now();
        let record = SnapshotRecord {
            id,
            project_id: caller.project_id.clone(),
            user_id: caller.user_id.clone(),
            volume_id: volume.id,
            name: request.name,
            description: request.description,
            size_gib: volume.size_gib,
            status: "available".into(),
            path: path.display().to_string(),
            metadata: request.metadata,
            created_at: now,
            updated_at: now,
        };
        if let Err(e) = self.db.insert_snapshot(&record).await {
            let _ = self.volumes.remove(&path);
            return Err(e.into());
        }
        Ok(record)
    }

    /// The caller's snapshot.
    pub async fn get_snapshot(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<SnapshotRecord, ServiceError> {
        self.snapshot_of(caller, id).await
    }

    /// The caller's snapshots (every project's with `all_tenants` as admin).
    pub async fn list_snapshots(
        &self,
        caller: &Caller,
        mut query: ListQuery,
        all_tenants: bool,
    ) -> Result<Page<SnapshotRecord>, ServiceError> {
        query.project_id = scope(caller, all_tenants)?;
        Ok(self.db.list_snapshots(&query).await?)
    }

    /// Deletes a snapshot that is not being backed up.
    pub async fn delete_snapshot(&self, caller: &Caller, id: &str) -> Result<(), ServiceError> {
        let snapshot = self.snapshot_of(caller, id).await?;
        if !self
            .db
            .set_snapshot_status(id, &["available", "error"], "deleting")
            .await?
        {
            return Err(ServiceError::bad(format!(
                "Invalid snapshot: Snapshot status must be available or error, but current status is: {}.",
                snapshot.status
            )));
        }
        self.volumes.remove(Path::new(&snapshot.path))?;
        Ok(self.db.delete_snapshot(id).await?)
    }
}

/// The project a list is limited to: the caller's, or none for an admin's
/// `all_tenants`.
pub(crate) fn scope(caller: &Caller, all_tenants: bool) -> Result<Option<String>, ServiceError> {
    if !all_tenants {
        return Ok(Some(caller.project_id.clone()));
    }
    Ember::require_admin(caller, "all_tenants")?;
    Ok(None)
}

/// Runs file work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ServiceError::Volume(format!("worker failed: {e}")))?
}
