//! Backups: Cinder's backup API rules (`cinder/backup/api.py`): what is
//! checked before answering, and which statuses change synchronously.

use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ember_meta::{BackupRecord, ListQuery, Page, VolumeRecord};
use serde::{Deserialize, Serialize};

use crate::volume_ops::scope;
use crate::{
    BackupCreate, BackupUpdate, Caller, Ember, ExportRecord, RestoreRequest, ServiceError,
};

/// Every status a backup row can have; force-delete accepts any of them.
const ANY_BACKUP_STATUS: [&str; 6] = [
    "creating",
    "available",
    "deleting",
    "error",
    "error_deleting",
    "restoring",
];

/// What an export record carries (base64 JSON in `backup_url`): enough for
/// another Ember service on the same repository to list and restore it.
#[derive(Serialize, Deserialize)]
struct RecordFields {
    id: String,
    size: i64,
    display_name: Option<String>,
    display_description: Option<String>,
    container: Option<String>,
    object_count: i64,
    service_metadata: String,
    volume_id: String,
    snapshot_id: Option<String>,
    parent_id: Option<String>,
    availability_zone: Option<String>,
    data_timestamp: DateTime<Utc>,
    created_at: DateTime<Utc>,
    #[serde(default)]
    metadata: std::collections::BTreeMap<String, String>,
}

impl Ember {
    /// Starts a backup of a volume (or of one of its snapshots): checks the
    /// statuses, the quota and (for an incremental) that there is a parent,
    /// marks the volume `backing-up` and the backup `creating`, and runs the
    /// data work in the background.
    pub async fn create_backup(
        self: &Arc<Self>,
        caller: &Caller,
        request: BackupCreate,
    ) -> Result<BackupRecord, ServiceError> {
        let volume = self.volume_of(caller, &request.volume_id).await?;
        self.require_backup_backend()?;
        let snapshot = match &request.snapshot_id {
            Some(id) => {
                let snapshot = self.snapshot_of(caller, id).await?;
                if snapshot.volume_id != volume.id {
                    return Err(ServiceError::bad(format!(
                        "Invalid snapshot: Snapshot {id} is not a snapshot of volume {}.",
                        volume.id
                    )));
                }
                if snapshot.status != "available" {
                    return Err(ServiceError::bad(format!(
                        "Invalid snapshot: Snapshot to be backed up must be available, but the current status is \"{}\".",
                        snapshot.status
                    )));
                }
                Some(snapshot)
            }
            None => {
                if volume.status != "available" && volume.status != "in-use" {
                    return Err(ServiceError::bad(format!(
                        "Invalid volume: Volume to be backed up must be available or in-use, but the current status is \"{}\".",
                        volume.status
                    )));
                }
                if volume.status == "in-use" && !request.force {
                    return Err(ServiceError::bad(
                        "Invalid volume: Backing up an in-use volume must use the force flag.",
                    ));
                }
                None
            }
        };
        self.check_backup_quota(caller, volume.size_gib).await?;
        let data_timestamp = snapshot
            .as_ref()
            .map(|s| s.created_at)
            .unwrap_or_else(Utc::now);
        let parent = if request.incremental {
            let before = snapshot.as_ref().map(|s| s.created_at);
            match self
                .db
                .latest_available_backup(&caller.project_id, &volume.id, before)
                .await?
            {
                Some(parent) => Some(parent.id),
                None => {
                    return Err(ServiceError::bad(
                        "Invalid backup: No backups available to do an incremental backup.",
                    ))
                }
            }
        } else {
            None
        };

        // Take the source: a snapshot, or the volume itself.
        let source = match &snapshot {
            Some(snapshot) => {
                if !self
                    .db
                    .set_snapshot_status(&snapshot.id, &["available"], "backing-up")
                    .await?
                {
                    return Err(ServiceError::bad(
                        "Invalid snapshot: Snapshot to be backed up must be available.",
                    ));
                }
                snapshot.path.clone()
            }
            None => {
                if !self
                    .db
                    .set_volume_status(&volume.id, &[volume.status.as_str()], "backing-up")
                    .await?
                {
                    return Err(ServiceError::bad(
                        "Invalid volume: Volume status changed while the backup was requested.",
                    ));
                }
                let mut marked = volume.clone();
                marked.status = "backing-up".into();
                marked.previous_status = Some(volume.status.clone());
                self.db.update_volume(&marked).await?;
                volume.path.clone()
            }
        };
        let now = Utc::now();
        let record = BackupRecord {
            id: uuid::Uuid::new_v4().to_string(),
            project_id: caller.project_id.clone(),
            user_id: caller.user_id.clone(),
            volume_id: volume.id.clone(),
            snapshot_id: request.snapshot_id,
            parent_id: parent,
            status: "creating".into(),
            name: request.name,
            description: request.description,
            container: request.container,
            availability_zone: Some(
                request
                    .availability_zone
                    .unwrap_or_else(|| self.config.storage_availability_zone.clone()),
            ),
            size_gib: volume.size_gib,
            object_count: 0,
            fail_reason: None,
            data_timestamp,
            metadata: request.metadata,
            restore_volume_id: None,
            temp_snapshot_id: None,
            host: Some(self.host.clone()),
            progress_done: 0,
            progress_total: 0,
            created_at: now,
            updated_at: now,
            full_reason: None,
        };
        if let Err(e) = self.db.insert_backup(&record).await {
            self.return_source(&record).await?;
            return Err(e.into());
        }
        let in_use = volume.status == "in-use";
        self.spawn_backup(record.clone(), source, in_use);
        Ok(record)
    }

    async fn check_backup_quota(&self, caller: &Caller, size_gib: i64) -> Result<(), ServiceError> {
        let (count, gigabytes) = self.db.backup_usage(&caller.project_id).await?;
        let backups = self.config.quota_backups;
        if backups >= 0 && count as i64 + 1 > backups {
            return Err(ServiceError::OverQuota(format!(
                "BackupLimitExceeded: Maximum number of backups allowed ({backups}) exceeded"
            )));
        }
        let quota = self.config.quota_backup_gigabytes;
        if quota >= 0 && gigabytes + size_gib > quota {
            return Err(ServiceError::OverQuota(format!(
                "VolumeBackupSizeExceedsAvailableQuota: Requested backup exceeds allowed Backup gigabytes quota. Requested {size_gib}G, quota is {quota}G and {gigabytes}G has been consumed."
            )));
        }
        Ok(())
    }

    /// The caller's backup.
    pub async fn get_backup(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<BackupRecord, ServiceError> {
        self.backup_of(caller, id).await
    }

    /// The caller's backups (every project's with `all_tenants` as admin).
    pub async fn list_backups(
        &self,
        caller: &Caller,
        mut query: ListQuery,
        all_tenants: bool,
    ) -> Result<Page<BackupRecord>, ServiceError> {
        query.project_id = scope(caller, all_tenants)?;
        Ok(self.db.list_backups(&query).await?)
    }

    /// Whether some backup was taken incrementally on top of `id`.
    pub async fn has_dependent_backups(&self, id: &str) -> Result<bool, ServiceError> {
        Ok(self.db.count_dependent_backups(id).await? > 0)
    }

    /// Bytes done and total of the job running for backup `id`, if any.
    pub fn progress(&self, id: &str) -> Option<(u64, u64)> {
        self.jobs
            .get(id)
            .map(|job| (job.progress.done(), job.progress.total()))
    }

    /// Changes a backup's name, description or metadata.
    pub async fn update_backup(
        &self,
        caller: &Caller,
        id: &str,
        update: BackupUpdate,
    ) -> Result<BackupRecord, ServiceError> {
        let mut backup = self.backup_of(caller, id).await?;
        if let Some(name) = update.name {
            backup.name = Some(name);
        }
        if let Some(description) = update.description {
            backup.description = Some(description);
        }
        if let Some(metadata) = update.metadata {
            backup.metadata = metadata;
        }
        Ok(self.db.update_backup(&backup).await?)
    }

    /// Deletes a backup (`force`: from any status, cancelling its job; admin
    /// only). A backup others were taken incrementally on is refused, as in
    /// Cinder, though Ember's repository would not need it.
    pub async fn delete_backup(
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
        force: bool,
    ) -> Result<(), ServiceError> {
        let backup = self.backup_of(caller, id).await?;
        if force {
            Self::require_admin(caller, "backup:force_delete")?;
        } else if backup.status != "available" && backup.status != "error" {
            return Err(ServiceError::bad(
                "Invalid backup: Backup status must be available or error",
            ));
        }
        if self.has_dependent_backups(id).await? {
            return Err(ServiceError::bad(
                "Invalid backup: Incremental backups exist for this backup.",
            ));
        }
        let expected: &[&str] = if force {
            &ANY_BACKUP_STATUS
        } else {
            &["available", "error"]
        };
        if !self.db.set_backup_status(id, expected, "deleting").await? {
            return Err(ServiceError::bad(
                "Invalid backup: Backup status must be available or error",
            ));
        }
        match self.jobs.get(id) {
            // The running job sees `deleting` when it stops and finishes the delete.
            Some(job) => job.cancel.cancel(),
            None => self.spawn_delete(id.to_string()),
        }
        Ok(())
    }

    /// Restores a backup into an existing volume or a new one. The backup
    /// is `restoring` and the volume `restoring-backup` when this returns.
    pub async fn restore_backup(
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
        request: RestoreRequest,
    ) -> Result<(BackupRecord, VolumeRecord), ServiceError> {
        let backup = self.backup_of(caller, id).await?;
        if backup.status != "available" {
            return Err(ServiceError::bad(
                "Invalid backup: Backup status must be available",
            ));
        }
        self.require_backup_backend()?;
        let (volume, created) = match &request.volume_id {
            Some(volume_id) => {
                let volume = self.volume_of(caller, volume_id).await?;
                if volume.status != "available" {
                    return Err(ServiceError::bad(format!(
                        "Invalid volume: Volume to be restored to must be available, but the current status is \"{}\".",
                        volume.status
                    )));
                }
                if volume.size_gib < backup.size_gib {
                    return Err(ServiceError::bad(format!(
                        "Invalid volume: volume size {}GB is too small to restore backup of size {}GB.",
                        volume.size_gib, backup.size_gib
                    )));
                }
                if !self
                    .db
                    .set_volume_status(&volume.id, &["available"], "restoring-backup")
                    .await?
                {
                    return Err(ServiceError::bad(
                        "Invalid volume: Volume to be restored to must be available.",
                    ));
                }
                (volume, false)
            }
            None => {
                let name = request
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("restore_backup_{id}"));
                let created = self
                    .create_volume(
                        caller,
                        crate::VolumeCreate {
                            size_gib: backup.size_gib,
                            name: Some(name),
                            description: Some("auto-created_from_restore_from_backup".into()),
                            ..Default::default()
                        },
                    )
                    .await?;
                self.db
                    .set_volume_status(&created.id, &["available"], "restoring-backup")
                    .await?;
                (created, true)
            }
        };
        let mut volume = volume;
        volume.status = "restoring-backup".into();
        let backup = self.begin_restore(backup, volume.clone(), created).await?;
        Ok((backup, volume))
    }

    /// Marks the backup `restoring` into `volume` and starts the job.
    pub(crate) async fn begin_restore(
        self: &Arc<Self>,
        backup: BackupRecord,
        volume: VolumeRecord,
        created: bool,
    ) -> Result<BackupRecord, ServiceError> {
        if !self
            .db
            .set_backup_status(&backup.id, &["available"], "restoring")
            .await?
        {
            self.db
                .set_volume_status(
                    &volume.id,
                    &["restoring-backup", "creating"],
                    if created { "error" } else { "available" },
                )
                .await?;
            return Err(ServiceError::bad(
                "Invalid backup: Backup status must be available",
            ));
        }
        let mut restoring = self.db.get_backup(&backup.id).await?.ok_or_else(|| {
            ServiceError::NotFound(format!("Backup {} could not be found.", backup.id))
        })?;
        restoring.restore_volume_id = Some(volume.id.clone());
        let restoring = self.db.update_backup(&restoring).await?;
        self.spawn_restore(restoring.clone(), volume, created);
        Ok(restoring)
    }

    /// Sets a backup's status to `available` or `error` (admin). A running
    /// job of that backup is cancelled. `available` requires the backup's
    /// data to be whole in the repository: a reset never lists a backup
    /// that cannot be restored.
    pub async fn reset_backup_status(
        self: &Arc<Self>,
        caller: &Caller,
        id: &str,
        status: &str,
    ) -> Result<(), ServiceError> {
        Self::require_admin(caller, "volume_extension:backup_admin_actions:reset_status")?;
        let backup = self.backup_of(caller, id).await?;
        let status = status.to_ascii_lowercase();
        if status != "available" && status != "error" {
            return Err(ServiceError::bad(format!(
                "Invalid input received: Invalid backup status '{status}': must be available or error"
            )));
        }
        if status == "available"
            && backup.status != "restoring"
            && self.stored_backup(id, &backup.volume_id).await?.is_err()
        {
            return Err(ServiceError::bad(format!(
                "Invalid backup: backup {id} has no complete data in the repository; it can only be reset to error"
            )));
        }
        if let Some(job) = self.jobs.get(id) {
            job.cancel.cancel();
        }
        self.db
            .set_backup_status(id, &ANY_BACKUP_STATUS, &status)
            .await?;
        Ok(())
    }

    /// The record another Ember service on the same repository imports.
    pub async fn export_backup(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<ExportRecord, ServiceError> {
        Self::require_admin(caller, "backup:export-import")?;
        let backup = self.backup_of(caller, id).await?;
        if backup.status != "available" {
            return Err(ServiceError::bad(
                "Invalid backup: Backup status must be available",
            ));
        }
        let fields = RecordFields {
            id: backup.id,
            size: backup.size_gib,
            display_name: backup.name,
            display_description: backup.description,
            container: backup.container,
            object_count: backup.object_count,
            service_metadata: self.target.location(),
            volume_id: backup.volume_id,
            snapshot_id: backup.snapshot_id,
            parent_id: backup.parent_id,
            availability_zone: backup.availability_zone,
            data_timestamp: backup.data_timestamp,
            created_at: backup.created_at,
            metadata: backup.metadata,
        };
        let json = serde_json::to_vec(&fields).map_err(|e| ServiceError::bad(e.to_string()))?;
        Ok(ExportRecord {
            backup_service: self.target.service_name().into(),
            backup_url: base64::engine::general_purpose::STANDARD.encode(json),
        })
    }

    /// Recreates a backup from an export record, with its original id, into
    /// the caller's project. Its data must be in this service's repository.
    pub async fn import_backup(
        self: &Arc<Self>,
        caller: &Caller,
        record: ExportRecord,
    ) -> Result<BackupRecord, ServiceError> {
        Self::require_admin(caller, "backup:backup-import")?;
        let service = self.target.service_name();
        if record.backup_service != service {
            return Err(ServiceError::bad(format!(
                "Invalid backup: Unsupported backup service '{}' (this service is {service})",
                record.backup_service
            )));
        }
        let fields: RecordFields = base64::engine::general_purpose::STANDARD
            .decode(record.backup_url.trim())
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(|| {
                ServiceError::bad("Invalid input received: Can't parse backup record.")
            })?;
        if self.db.get_backup(&fields.id).await?.is_some() {
            return Err(ServiceError::bad(
                "Invalid backup: Backup already exists in database.",
            ));
        }
        if let Err(e) = self.stored_backup(&fields.id, &fields.volume_id).await? {
            return Err(ServiceError::bad(format!(
                "Invalid backup: the backup's data cannot be used: {e}"
            )));
        }
        let now = Utc::now();
        let backup = BackupRecord {
            id: fields.id,
            project_id: caller.project_id.clone(),
            user_id: caller.user_id.clone(),
            volume_id: fields.volume_id,
            snapshot_id: fields.snapshot_id,
            parent_id: fields.parent_id,
            status: "available".into(),
            name: fields.display_name,
            description: fields.display_description,
            container: fields.container,
            availability_zone: fields.availability_zone,
            size_gib: fields.size,
            object_count: fields.object_count,
            fail_reason: None,
            data_timestamp: fields.data_timestamp,
            metadata: fields.metadata,
            restore_volume_id: None,
            temp_snapshot_id: None,
            host: Some(self.host.clone()),
            progress_done: 0,
            progress_total: 0,
            created_at: fields.created_at,
            updated_at: now,
            full_reason: None,
        };
        self.db.import_backup(&backup).await?;
        Ok(backup)
    }
}

impl Ember {
    /// Whether the backup target holds backup `id` of `volume_id` whole;
    /// why not, if it does not.
    async fn stored_backup(
        self: &Arc<Self>,
        id: &str,
        volume_id: &str,
    ) -> Result<Result<(), String>, ServiceError> {
        let (me, id, volume_id) = (self.clone(), id.to_string(), volume_id.to_string());
        tokio::task::spawn_blocking(move || me.backup_data_status(&id, &volume_id))
            .await
            .map_err(|e| ServiceError::Volume(format!("worker failed: {e}")))
    }
}

/// The repository id of backup `id` (the API's ids are the repository's).
pub(crate) fn parse_backup_id(id: &str) -> Result<ember_types::BackupId, ServiceError> {
    id.parse()
        .map_err(|_| ServiceError::NotFound(format!("Backup {id} could not be found.")))
}
