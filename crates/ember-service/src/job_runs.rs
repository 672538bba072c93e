//! The background jobs: the data work of a backup, a restore or a delete,
//! and the status changes when it ends (Cinder's backup manager).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ember_engine::{run_backup, run_restore, BackupRequest, EngineError, ParentChoice, Tuning};
use ember_meta::{BackupRecord, VolumeRecord};
use ember_volume::{Source, Target};

use crate::backup_ops::parse_backup_id;
use crate::jobs::RunningJob;
use crate::{Ember, ServiceError};

/// How often a running job's progress is written to the database.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Every how many progress updates the progress is also logged.
const PROGRESS_LOG_EVERY: u64 = 10;

impl Ember {
    fn tuning(&self) -> Tuning {
        let mut tuning = Tuning::default();
        if let Some(threads) = self.config.backup_threads {
            tuning.threads = threads.max(1);
        }
        tuning
    }

    /// Runs the backup of `backup` from `source` in the background.
    pub(crate) fn spawn_backup(
        self: &Arc<Self>,
        backup: BackupRecord,
        source: PathBuf,
        from_temp_copy: bool,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.backup_job(&backup, source, from_temp_copy).await {
                tracing::error!(backup = %backup.id, "backup job failed to record its outcome: {e}");
            }
        });
    }

    async fn backup_job(
        self: &Arc<Self>,
        backup: &BackupRecord,
        source: PathBuf,
        from_temp_copy: bool,
    ) -> Result<(), ServiceError> {
        let _permit = self.limiter.clone().acquire_owned().await;
        let (job, _registered) = self.jobs.register(&backup.id);
        if self.current_status(&backup.id).await?.as_deref() != Some("creating") {
            // Force-deleted (or reset) while it waited for its turn.
            self.return_source(backup).await?;
            return self.finish_if_deleting(&backup.id).await;
        }
        tracing::info!(backup = %backup.id, volume = %backup.volume_id, "backup started");
        let temp = from_temp_copy.then(|| {
            self.volumes
                .snapshot_path_for(&format!("backup-{}", backup.id))
        });
        let request = BackupRequest {
            id: Some(parse_backup_id(&backup.id)?),
            source_label: source.display().to_string(),
            volume_id: Some(backup.volume_id.clone()),
            parent: match &backup.parent_id {
                Some(parent) => ParentChoice::Backup(parse_backup_id(parent)?),
                None => ParentChoice::None,
            },
            name: backup.name.clone(),
            description: backup.description.clone(),
            codec: self.config.backup_compression_algorithm,
            level: self.config.backup_compression_level,
            chunk_size: None,
        };
        let (repo, tuning, work_job, volumes) = (
            self.repo.clone(),
            self.tuning(),
            job.clone(),
            self.volumes.clone(),
        );
        let temp_copy = temp.clone();
        let work =
            tokio::task::spawn_blocking(move || -> Result<ember_types::BackupInfo, String> {
                let read_from = match &temp_copy {
                    Some(copy) => {
                        volumes.copy(&source, copy).map_err(|e| e.to_string())?;
                        copy.clone()
                    }
                    None => source,
                };
                let source = Source::open(&read_from).map_err(|e| e.to_string())?;
                run_backup(
                    &repo,
                    &source,
                    &request,
                    tuning,
                    &work_job.progress,
                    &work_job.cancel,
                )
                .map_err(|e| match e {
                    EngineError::Cancelled => CANCELLED.to_string(),
                    other => other.to_string(),
                })
            });
        let outcome = self.report_progress_until(&backup.id, &job, work).await;
        if let Some(temp) = &temp {
            let _ = self.volumes.remove(temp);
        }
        self.return_source(backup).await?;
        match outcome {
            Ok(info) => {
                // Counts first (they touch no status), so whoever sees the
                // backup available sees its counts.
                let size = info.volume_size as i64;
                ignore_missing(
                    self.db
                        .set_backup_outcome(&backup.id, info.stats.new_chunks as i64, None)
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
        let (repo, tuning, work_job) = (self.repo.clone(), self.tuning(), job.clone());
        let repo_id = parse_backup_id(&backup.id)?;
        let path = PathBuf::from(&volume.path);
        let work = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let info = repo.backup_info(&repo_id).map_err(|e| e.to_string())?;
            let target =
                Target::open_existing(&path, info.volume_size).map_err(|e| e.to_string())?;
            run_restore(
                &repo,
                &repo_id,
                Box::new(target),
                tuning,
                &work_job.progress,
                &work_job.cancel,
            )
            .map(|_| ())
            .map_err(|e| match e {
                EngineError::Cancelled => CANCELLED.to_string(),
                other => other.to_string(),
            })
        });
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
    async fn finish_if_deleting(&self, id: &str) -> Result<(), ServiceError> {
        if self.current_status(id).await?.as_deref() != Some("deleting") {
            return Ok(());
        }
        let repo = self.repo.clone();
        let repo_id = parse_backup_id(id)?;
        let removed = tokio::task::spawn_blocking(move || match repo.delete_backup(&repo_id) {
            Ok(()) | Err(ember_repo::RepoError::BackupNotFound(_)) => Ok(()),
            Err(e) => Err(e.to_string()),
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
        if self.db.set_backup_status(id, &[from], status).await? {
            ignore_missing(self.db.set_backup_outcome(id, 0, Some(reason)).await)?;
        }
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

/// The failure text of a cancelled job.
const CANCELLED: &str = "cancelled";

/// A row deleted meanwhile needs no update.
fn ignore_missing(result: Result<(), ember_meta::MetaError>) -> Result<(), ServiceError> {
    match result {
        Err(ember_meta::MetaError::NotFound) => Ok(()),
        other => other.map_err(ServiceError::from),
    }
}
