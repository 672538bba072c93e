//! Volumes and snapshots: the subset of Cinder's volume API backups need.

use std::sync::Arc;

use chrono::Utc;
use ember_meta::{ListQuery, Page, SnapshotRecord, VolumeRecord};

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
            self.require_backup_backend()?;
        }
        if let Some(snapshot) = &snapshot {
            if snapshot.status != "available" {
                return Err(ServiceError::bad(
                    "Originating snapshot status must be one of 'available' values",
                ));
            }
        }

        let id = uuid::Uuid::new_v4().to_string();
        let me = self.clone();
        let (new_id, from) = (id.clone(), snapshot.as_ref().map(|s| s.path.clone()));
        let path = blocking(move || {
            let volumes = me.volumes.backend();
            match &from {
                Some(snapshot) => volumes.create_from_snapshot(snapshot, &new_id, size_gib),
                None => volumes.create(&new_id, size_gib),
            }
        })
        .await?;
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
            path: path.clone(),
            owns_data: true,
            source_backup_id: request.backup_id.clone(),
            snapshot_id: request.snapshot_id,
            metadata: request.metadata,
            created_at: now,
            updated_at: now,
        };
        if let Err(e) = self.db.insert_volume(&record).await {
            let _ = self.volumes.backend().remove_volume(&path);
            return Err(e.into());
        }
        if let Some(backup) = backup {
            self.begin_restore(backup, record.clone(), true).await?;
        }
        Ok(record)
    }

    /// Brings existing data under management as a volume (its size
    /// rounded up to whole GiB): an image file or block device, or with
    /// RBD volumes an image of `rbd_pool` (or `rbd:POOL/IMAGE`). Deleting
    /// the volume later leaves the data in place.
    pub async fn manage_volume(
        self: &Arc<Self>,
        caller: &Caller,
        reference: &str,
        name: Option<String>,
    ) -> Result<VolumeRecord, ServiceError> {
        Self::require_admin(caller, "volume_extension:volume_manage")?;
        let (me, reference) = (self.clone(), reference.to_string());
        let (location, size) = blocking(move || me.volumes.backend().manage(&reference)).await?;
        let now = Utc::now();
        let record = VolumeRecord {
            id: uuid::Uuid::new_v4().to_string(),
            project_id: caller.project_id.clone(),
            user_id: caller.user_id.clone(),
            name,
            description: None,
            size_gib: size.div_ceil(GIB).max(1) as i64,
            status: "available".into(),
            previous_status: None,
            availability_zone: self.config.storage_availability_zone.clone(),
            volume_type: None,
            path: location,
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
    pub async fn delete_volume(
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
    ) -> Result<(), ServiceError> {
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
            let me = self.clone();
            let location = volume.path.clone();
            if let Err(e) = blocking(move || me.volumes.backend().remove_volume(&location)).await {
                self.db
                    .set_volume_status(id, &["deleting"], "error_deleting")
                    .await?;
                return Err(e);
            }
        }
        Ok(self.db.delete_volume(id).await?)
    }

    /// Takes a snapshot: a sparse copy of the volume's data now.
    pub async fn create_snapshot(
        self: &Arc<Self>,
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
        let (me, snapshot_id, from) = (self.clone(), id.clone(), volume.path.clone());
        let path = blocking(move || me.volumes.backend().snapshot(&from, &snapshot_id)).await?;
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
            path: path.clone(),
            metadata: request.metadata,
            created_at: now,
            updated_at: now,
        };
        if let Err(e) = self.db.insert_snapshot(&record).await {
            let _ = self.volumes.backend().remove_snapshot(&path);
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
    pub async fn delete_snapshot(
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
    ) -> Result<(), ServiceError> {
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
        let (me, location) = (self.clone(), snapshot.path.clone());
        if let Err(e) = blocking(move || me.volumes.backend().remove_snapshot(&location)).await {
            self.db
                .set_snapshot_status(id, &["deleting"], "error_deleting")
                .await?;
            return Err(e);
        }
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

/// Runs volume work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ServiceError::Volume(format!("worker failed: {e}")))?
}
