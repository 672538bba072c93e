//! The background jobs: a backup, a restore or a delete, and the status
//! changes when it ends (Cinder's backup manager). The data work itself is
//! in `transfers`.

use std::sync::Arc;
use std::time::Duration;

use ember_meta::{BackupRecord, VolumeRecord};

use crate::jobs::RunningJob;
use crate::transfers::CANCELLED;
use crate::{Ember, ServiceError};

/// How often a running job's progress is written to the database.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Every how many progress updates the progress is also logged.
const PROGRESS_LOG_EVERY: u64 = 10;

impl Ember {
    /// Runs the backup of `backup` from `source` (a location) in the
    /// background; `in_use`: the volume is attached (a file volume is then
    /// read from a temporary copy).
    pub(crate) fn spawn_backup(
        self: &Arc<Self>,
        backup: BackupRecord,
        source: String,
        in_use: bool,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.backup_job(&backup, source, in_use).await {
                tracing::error!(backup = %backup.id, "backup job failed to record its outcome: {e}");
            }
        });
    }

    async fn backup_job(
        self: &Arc<Self>,
        backup: &BackupRecord,
        source: String,
        in_use: bool,
    ) -> Result<(), ServiceError> {
        let _permit = self.limiter.clone().acquire_owned().await;
        let (job, _registered) = self.jobs.register(&backup.id);
        if self.current_status(&backup.id).await?.as_deref() != Some("creating") {
            // Force-deleted (or reset) while it waited for its turn.
            self.return_source(backup).await?;
            return self.finish_if_deleting(&backup.id).await;
        }
        tracing::info!(backup = %backup.id, volume = %backup.volume_id, "backup started");
        let volume_metadata = self
            .db
            .get_volume(&backup.volume_id)
            .await?
            .and_then(|volume| serde_json::to_string(&volume.metadata).ok());
        let (me, work_job, record) = (self.clone(), job.clone(), backup.clone());
        let work = tokio::task::spawn_blocking(move || {
            me.back_up_data(
                &record,
                &source,
                in_use,
                volume_metadata.as_deref(),
                &work_job,
            )
        });
        let outcome = self.report_progress_until(&backup.id, &job, work).await;
        self.return_source(backup).await?;
        match outcome {
            Ok(done) => {
                // Counts and kind first (they touch no status), so whoever
                // sees the backup available sees them.
                let size = done.size as i64;
                ignore_missing(
                    self.db
                        .set_backup_outcome(&backup.id, done.object_count, None)
                        .await,
                )?;
                ignore_missing(
                    self.db
                        .set_backup_kind(
                            &backup.id,
                            done.parent_id.as_deref(),
                            done.full_reason.as_deref(),
                        )
                        .await,
                )?;
                ignore_missing(self.db.set_backup_progress(&backup.id, size, size).await)?;
                if self
                    .db
                    .set_backup_status(&backup.id, &["creating"], "available")
                    .await?
                {
                    tracing::info!(backup = %backup.id, "backup available");
                    Ok(())
                } else {
                    self.finish_if_deleting(&backup.id).await
                }
            }
            Err(reason) => {
                if self.current_status(&backup.id).await?.as_deref() == Some("deleting") {
                    return self.finish_if_deleting(&backup.id).await;
                }
                tracing::warn!(backup = %backup.id, "backup failed: {reason}");
                self.fail_backup(&backup.id, "creating", &reason).await
            }
        }
    }

    /// Runs the restore of `backup` into `volume` in the background.
    pub(crate) fn spawn_restore(
        self: &Arc<Self>,
        backup: BackupRecord,
        volume: VolumeRecord,
        created: bool,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.restore_job(&backup, &volume, created).await {
                tracing::error!(backup = %backup.id, "restore job failed to record its outcome: {e}");
            }
        });
    }

    async fn restore_job(
        self: &Arc<Self>,
        backup: &BackupRecord,
        volume: &VolumeRecord,
        created: bool,
    ) -> Result<(), ServiceError> {
        let _permit = self.limiter.clone().acquire_owned().await;
        let (job, _registered) = self.jobs.register(&backup.id);
        tracing::info!(backup = %backup.id, volume = %volume.id, "restore started");
        let (me, work_job, record, location) = (
            self.clone(),
            job.clone(),
            backup.clone(),
            volume.path.clone(),
        );
        let work =
            tokio::task::spawn_blocking(move || me.restore_data(&record, &location, &work_job));
        let outcome = self.report_progress_until(&backup.id, &job, work).await;
        let during = ["restoring-backup", "creating"];
        match &outcome {
            Ok(()) => {
                // Record where the data came from before the volume shows
                // `available`, so whoever sees it available sees it whole.
                if let Some(mut restored) = self.db.get_volume(&volume.id).await? {
                    restored.source_backup_id = Some(backup.id.clone());
                    // As Cinder, the restored volume takes the backed-up
                    // volume's metadata (its current one, if it still exists).
                    if let Some(source) = self.db.get_volume(&backup.volume_id).await? {
                        restored.metadata.extend(source.metadata);
                    }
                    self.db.update_volume(&restored).await?;
                }
                self.db
                    .set_volume_status(&volume.id, &during, "available")
                    .await?;
                tracing::info!(backup = %backup.id, volume = %volume.id, "restore done");
            }
            Err(reason) => {
                let status = if created || reason == CANCELLED {
                    "error"
                } else {
                    "error_restoring"
                };
                tracing::warn!(backup = %backup.id, volume = %volume.id, "restore failed: {reason}");
                self.db
                    .set_volume_status(&volume.id, &during, status)
                    .await?;
            }
        }
        if !self
            .db
            .set_backup_status(&backup.id, &["restoring"], "available")
            .await?
        {
            self.finish_if_deleting(&backup.id).await?;
        }
        Ok(())
    }

    /// Removes backup `id` from the repository and the database in the background.
    pub(crate) fn spawn_delete(self: &Arc<Self>, id: String) {
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.finish_if_deleting(&id).await {
                tracing::error!(backup = %id, "delete failed: {e}");
            }
        });
    }

    /// If backup `id` is `deleting`, removes its data and its row; a
    /// failure leaves it `error_deleting` with the reason.
    async fn finish_if_deleting(self: &Arc<Self>, id: &str) -> Result<(), ServiceError> {
        if self.current_status(id).await?.as_deref() != Some("deleting") {
            return Ok(());
        }
        let Some(backup) = self.db.get_backup(id).await? else {
            return Ok(());
        };
        let source = self
            .db
            .get_volume(&backup.volume_id)
            .await?
            .map(|volume| volume.path);
        let me = self.clone();
        let (id_owned, volume_id) = (id.to_string(), backup.volume_id.clone());
        let removed = tokio::task::spawn_blocking(move || {
            me.delete_data(&id_owned, &volume_id, source.as_deref())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match removed {
            Ok(()) => {
                self.db.delete_backup(id).await?;
                tracing::info!(backup = %id, "backup deleted");
                Ok(())
            }
            Err(reason) => self.fail_backup(id, "deleting", &reason).await.map(|_| ()),
        }
    }

    /// Sets backup `id` from `from` to `error` (from `deleting`:
    /// `error_deleting`) with `reason`.
    pub(crate) async fn fail_backup(
        &self,
        id: &str,
        from: &str,
        reason: &str,
    ) -> Result<(), ServiceError> {
        let status = if from == "deleting" {
            "error_deleting"
        } else {
            "error"
        };
        self.db.fail_backup(id, &[from], status, reason).await?;
        Ok(())
    }

    /// Gives the source back after a backup: the snapshot `available`, the
    /// volume its status from before.
    pub(crate) async fn return_source(&self, backup: &BackupRecord) -> Result<(), ServiceError> {
        match &backup.snapshot_id {
            Some(snapshot) => {
                self.db
                    .set_snapshot_status(snapshot, &["backing-up"], "available")
                    .await?;
                Ok(())
            }
            None => self.return_volume_from_backup(&backup.volume_id).await,
        }
    }

    /// Puts a `backing-up` volume back in its previous status.
    pub(crate) async fn return_volume_from_backup(
        &self,
        volume_id: &str,
    ) -> Result<(), ServiceError> {
        if let Some(volume) = self.db.get_volume(volume_id).await? {
            let previous = volume
                .previous_status
                .clone()
                .unwrap_or_else(|| "available".into());
            self.db
                .set_volume_status(volume_id, &["backing-up"], &previous)
                .await?;
        }
        Ok(())
    }

    async fn current_status(&self, id: &str) -> Result<Option<String>, ServiceError> {
        Ok(self.db.get_backup(id).await?.map(|b| b.status))
    }

    /// Awaits `work`, writing the job's progress to the database meanwhile.
    async fn report_progress_until<T>(
        &self,
        id: &str,
        job: &RunningJob,
        work: tokio::task::JoinHandle<Result<T, String>>,
    ) -> Result<T, String> {
        tokio::pin!(work);
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                joined = &mut work => {
                    return joined.map_err(|e| format!("worker failed: {e}")).and_then(|r| r);
                }
                _ = tokio::time::sleep(PROGRESS_INTERVAL) => {
                    let (done, total) = (job.progress.done() as i64, job.progress.total() as i64);
                    if let Err(e) = self.db.set_backup_progress(id, done, total).await {
                        tracing::warn!(backup = %id, "cannot record progress: {e}");
                    }
                    ticks += 1;
                    if ticks.is_multiple_of(PROGRESS_LOG_EVERY) && total > 0 {
                        tracing::info!(backup = %id, done, total, "{}% done", done * 100 / total);
                    }
                }
            }
        }
    }
}

/// A row deleted meanwhile needs no update.
fn ignore_missing(result: Result<(), ember_meta::MetaError>) -> Result<(), ServiceError> {
    match result {
        Err(ember_meta::MetaError::NotFound) => Ok(()),
        other => other.map_err(ServiceError::from),
    }
}
