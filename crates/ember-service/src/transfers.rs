//! The data work of backups, restores and deletes, for each pairing of
//! volume storage (files, RBD images) and backup target (Ember's
//! repository, Cinder's Ceph layout). Everything here blocks: the jobs in
//! `job_runs` run it off the async threads and record its outcome.

use ember_ceph::{Image, IoCtx};
use ember_engine::{
    remove_backup_snapshots, run_backup, run_restore, BackupRequest, EngineError, ParentChoice,
    RbdBackupPlan, Tuning,
};
use ember_meta::BackupRecord;
use ember_rbd_backup::{
    BackupKind, BackupSource, Control, RbdBackupDriver, RbdBackupError, RbdImage,
};
use ember_types::BackupId;
use ember_volume::{RbdSpec, Source, Target};

use crate::backup_ops::parse_backup_id;
use crate::jobs::RunningJob;
use crate::service::Volumes;
use crate::targets::BackupTarget;
use crate::volumes::Location;
use crate::Ember;

/// The failure text of a cancelled job.
pub(crate) const CANCELLED: &str = "cancelled";

/// What a finished backup records.
#[derive(Debug)]
pub(crate) struct BackupDone {
    /// The volume's size in bytes.
    pub(crate) size: u64,
    /// Objects newly stored (Cinder's `object_count`).
    pub(crate) object_count: i64,
    /// The backup it is incremental on, as done (the Ceph driver may have
    /// had to take a full backup instead).
    pub(crate) parent_id: Option<String>,
    /// Why it is full although an incremental was asked for.
    pub(crate) full_reason: Option<String>,
}

impl Ember {
    fn tuning(&self) -> Tuning {
        let mut tuning = Tuning::default();
        if let Some(threads) = self.config.backup_threads {
            tuning.threads = threads.max(1);
        }
        tuning
    }

    /// An I/O context on `pool` of the volumes' cluster.
    fn volume_io(&self, pool: &str) -> Result<IoCtx, String> {
        match &self.volumes {
            Volumes::Rbd(rbd) => rbd.connection().io(pool).map_err(|e| e.to_string()),
            Volumes::Files(_) => Err(format!(
                "rbd:{pool}/…: RBD volumes need volume_driver = \"rbd\""
            )),
        }
    }

    /// Backs up `backup` from `source` (the volume's or snapshot's
    /// location). An in-use file volume is read from a temporary copy; RBD
    /// images are always read from a snapshot.
    pub(crate) fn back_up_data(
        &self,
        backup: &BackupRecord,
        source: &str,
        in_use: bool,
        volume_metadata: Option<&str>,
        job: &RunningJob,
    ) -> Result<BackupDone, String> {
        let id = parse_backup_id(&backup.id).map_err(|e| e.to_string())?;
        match Location::parse(source).map_err(|e| e.to_string())? {
            Location::Path(path) => {
                // Recorded as the volume's path, even when read from a copy.
                let label = path.display().to_string();
                let temp = in_use.then(|| self.scratch.snapshot_path_for(&format!("backup-{id}")));
                let read_from = match &temp {
                    Some(copy) => {
                        self.scratch.copy(&path, copy).map_err(|e| e.to_string())?;
                        copy.clone()
                    }
                    None => path,
                };
                let done = Source::open(&read_from)
                    .map_err(|e| e.to_string())
                    .and_then(|source| match &self.target {
                        BackupTarget::Repository(repo) => {
                            let request = self.engine_request(backup, id, label)?;
                            self.repository_backup(repo, &source, &request, job)
                        }
                        BackupTarget::Ceph(_) => self.ceph_backup(
                            backup,
                            id,
                            BackupSource::File(&source),
                            volume_metadata,
                            job,
                        ),
                    });
                if let Some(temp) = &temp {
                    let _ = self.scratch.remove(temp);
                }
                done
            }
            Location::Rbd(spec) => {
                let io = self.volume_io(&spec.pool)?;
                match &self.target {
                    BackupTarget::Repository(repo) => {
                        self.rbd_repository_backup(repo, &io, &spec, backup, id, job)
                    }
                    BackupTarget::Ceph(_) => match &spec.snap {
                        None => self.ceph_backup(
                            backup,
                            id,
                            BackupSource::Rbd(RbdImage {
                                io: &io,
                                image: &spec.image,
                            }),
                            volume_metadata,
                            job,
                        ),
                        Some(snap) => self.ceph_backup_of_snapshot(
                            &io,
                            &spec,
                            snap,
                            backup,
                            id,
                            volume_metadata,
                            job,
                        ),
                    },
                }
            }
        }
    }

    fn engine_request(
        &self,
        backup: &BackupRecord,
        id: BackupId,
        source_label: String,
    ) -> Result<BackupRequest, String> {
        Ok(BackupRequest {
            id: Some(id),
            source_label,
            volume_id: Some(backup.volume_id.clone()),
            parent: match &backup.parent_id {
                Some(parent) => {
                    ParentChoice::Backup(parse_backup_id(parent).map_err(|e| e.to_string())?)
                }
                None => ParentChoice::None,
            },
            name: backup.name.clone(),
            description: backup.description.clone(),
            codec: self.config.backup_compression_algorithm,
            level: self.config.backup_compression_level,
            chunk_size: None,
        })
    }

    fn repository_backup(
        &self,
        repo: &ember_repo::Repository,
        source: &dyn ember_volume::VolumeSource,
        request: &BackupRequest,
        job: &RunningJob,
    ) -> Result<BackupDone, String> {
        let info = run_backup(
            repo,
            source,
            request,
            self.tuning(),
            &job.progress,
            &job.cancel,
        )
        .map_err(|e| self.engine_failure(e))?;
        Ok(BackupDone {
            size: info.volume_size,
            object_count: info.stats.new_chunks as i64,
            parent_id: info.parent.map(|p| p.to_string()),
            full_reason: None,
        })
    }

    /// An RBD image into the repository: read from a snapshot, only where
    /// it changed since the parent's snapshot when that is still there.
    fn rbd_repository_backup(
        &self,
        repo: &ember_repo::Repository,
        io: &IoCtx,
        spec: &RbdSpec,
        backup: &BackupRecord,
        id: BackupId,
        job: &RunningJob,
    ) -> Result<BackupDone, String> {
        let image = Image::open(io, &spec.image).map_err(|e| e.to_string())?;
        let request = self.engine_request(backup, id, spec.label())?;
        let parent = match request.parent {
            ParentChoice::Backup(parent) => Some(parent),
            _ => None,
        };
        let plan = RbdBackupPlan::prepare(repo, &image, spec, id, parent)
            .map_err(|e| self.engine_failure(e))?;
        if let Some(Err(why)) = &plan.diff_base {
            tracing::info!(backup = %id, "RBD diff not used: {why}; reading the whole snapshot");
        }
        let done = plan
            .open_source(io, spec)
            .map_err(|e| self.engine_failure(e))
            .and_then(|source| self.repository_backup(repo, &source, &request, job));
        match &done {
            Ok(_) => {
                for warning in plan.prune_older(repo, &image, spec).warnings {
                    tracing::warn!(backup = %id, "{warning}");
                }
            }
            Err(_) => {
                if let Err(e) = plan.abandon(&image) {
                    tracing::warn!(backup = %id, "the snapshot taken for the failed backup stays: {e}");
                }
            }
        }
        done
    }

    fn ceph_driver(&self) -> Result<std::sync::Arc<RbdBackupDriver>, String> {
        match &self.target {
            BackupTarget::Ceph(ceph) => ceph.driver().map_err(|e| e.to_string()),
            BackupTarget::Repository(_) => Err("the backup target is not Ceph".into()),
        }
    }

    /// A backup by the Ceph driver. Which kind it made is recorded: a full
    /// backup made although an incremental was asked for says why.
    fn ceph_backup(
        &self,
        backup: &BackupRecord,
        id: BackupId,
        source: BackupSource<'_>,
        volume_metadata: Option<&str>,
        job: &RunningJob,
    ) -> Result<BackupDone, String> {
        let driver = self.ceph_driver()?;
        let report = |p: ember_rbd_backup::Progress| job.progress.report(p.done, p.total);
        let control = Control::new()
            .with_progress(&report)
            .with_cancel(job.cancel.flag());
        let request = ember_rbd_backup::BackupRequest {
            backup_id: id,
            volume_id: &backup.volume_id,
            source,
            incremental: backup.parent_id.is_some(),
            metadata: volume_metadata,
        };
        let outcome = driver
            .backup(&request, &control)
            .map_err(|e| self.ceph_failure(e))?;
        for warning in &outcome.warnings {
            tracing::warn!(backup = %id, "{warning}");
        }
        let (parent_id, full_reason) = match outcome.kind {
            BackupKind::Incremental { parent, .. } => (Some(parent.to_string()), None),
            BackupKind::Full { reason } => {
                let asked = backup.parent_id.is_some();
                if asked {
                    tracing::warn!(backup = %id, "full backup instead of incremental: {reason}");
                }
                (None, asked.then(|| reason.to_string()))
            }
        };
        Ok(BackupDone {
            size: outcome.size,
            object_count: 0,
            parent_id,
            full_reason,
        })
    }

    /// A backup of a snapshot of an RBD volume by the Ceph driver: the
    /// driver backs up images, so the snapshot is cloned into a temporary
    /// image first (as Cinder backs up a snapshot through a temporary
    /// volume), removed afterwards.
    #[allow(clippy::too_many_arguments)]
    fn ceph_backup_of_snapshot(
        &self,
        io: &IoCtx,
        spec: &RbdSpec,
        snap: &str,
        backup: &BackupRecord,
        id: BackupId,
        volume_metadata: Option<&str>,
        job: &RunningJob,
    ) -> Result<BackupDone, String> {
        let temp = format!("{}.backup-source.{id}", spec.image);
        ember_ceph::rbd::clone(io, &spec.image, snap, io, &temp, &Default::default())
            .map_err(|e| e.to_string())?;
        let done = self.ceph_backup(
            backup,
            id,
            BackupSource::Rbd(RbdImage { io, image: &temp }),
            volume_metadata,
            job,
        );
        if let Err(e) = ember_ceph::rbd::remove_with_snapshots(io, &temp) {
            tracing::warn!(backup = %id, "temporary image {}/{temp} not removed: {e}", spec.pool);
        }
        done
    }

    /// The text of a failed Ceph driver operation; a failure that may be
    /// the connections' drops them (see [`Ember::reconnect_ceph`]).
    fn ceph_failure(&self, e: RbdBackupError) -> String {
        if matches!(e, RbdBackupError::Cancelled) {
            return CANCELLED.to_string();
        }
        if e.is_connection_failure() {
            self.reconnect_ceph();
        }
        e.to_string()
    }

    /// The text of a failed engine operation (`cancelled` for a cancelled
    /// one); a Ceph failure that may be the connection's drops it.
    fn engine_failure(&self, e: EngineError) -> String {
        match e {
            EngineError::Cancelled => CANCELLED.to_string(),
            EngineError::Volume(ember_volume::VolumeError::Ceph(ceph))
                if ceph.is_connection_failure() =>
            {
                self.reconnect_ceph();
                ceph.to_string()
            }
            other => other.to_string(),
        }
    }

    /// Drops the Ceph connections (volumes' and backup target's), so that
    /// the next operation connects anew: after an outage a client may hold
    /// a stale exclusive lock on an image that only a new client (a new
    /// address) can break.
    fn reconnect_ceph(&self) {
        tracing::warn!("dropping the Ceph connections after a failure; the next use reconnects");
        if let Volumes::Rbd(rbd) = &self.volumes {
            rbd.connection().reset();
        }
        if let BackupTarget::Ceph(ceph) = &self.target {
            ceph.reset();
        }
    }

    /// Restores `backup` into the volume at `volume`.
    pub(crate) fn restore_data(
        &self,
        backup: &BackupRecord,
        volume: &str,
        job: &RunningJob,
    ) -> Result<(), String> {
        let id = parse_backup_id(&backup.id).map_err(|e| e.to_string())?;
        match &self.target {
            BackupTarget::Repository(repo) => {
                let info = repo.backup_info(&id).map_err(|e| e.to_string())?;
                let target = self
                    .volumes
                    .backend()
                    .open_target(volume, info.volume_size)
                    .map_err(|e| e.to_string())?;
                run_restore(repo, &id, target, self.tuning(), &job.progress, &job.cancel)
                    .map(drop)
                    .map_err(|e| self.engine_failure(e))
            }
            BackupTarget::Ceph(_) => {
                let driver = self.ceph_driver()?;
                let report = |p: ember_rbd_backup::Progress| job.progress.report(p.done, p.total);
                let control = Control::new()
                    .with_progress(&report)
                    .with_cancel(job.cancel.flag());
                let restore = |target| {
                    driver
                        .restore(&id, &backup.volume_id, target, &control)
                        .map(drop)
                        .map_err(|e| self.ceph_failure(e))
                };
                match Location::parse(volume).map_err(|e| e.to_string())? {
                    Location::Rbd(spec) => {
                        let io = self.volume_io(&spec.pool)?;
                        restore(ember_rbd_backup::RestoreTarget::Rbd(RbdImage {
                            io: &io,
                            image: &spec.image,
                        }))
                    }
                    Location::Path(path) => {
                        let entry = driver
                            .find(&id, &backup.volume_id)
                            .map_err(|e| self.ceph_failure(e))?
                            .ok_or_else(|| format!("backup {id} is not in the backup pool"))?;
                        let target =
                            Target::open_existing(&path, entry.size).map_err(|e| e.to_string())?;
                        restore(ember_rbd_backup::RestoreTarget::File(target))
                    }
                }
            }
        }
    }

    /// Removes backup `id`'s data (gone already is fine), and the snapshot
    /// it took of its source volume at `source` (if that is an RBD image
    /// still there).
    pub(crate) fn delete_data(
        &self,
        id: &str,
        volume_id: &str,
        source: Option<&str>,
    ) -> Result<(), String> {
        let repo_id = parse_backup_id(id).map_err(|e| e.to_string())?;
        let source = match source.map(Location::parse) {
            Some(Ok(Location::Rbd(spec))) => Some(spec),
            _ => None,
        };
        let source_io = match &source {
            Some(spec) => Some(self.volume_io(&spec.pool)?),
            None => None,
        };
        match &self.target {
            BackupTarget::Repository(repo) => {
                match repo.delete_backup(&repo_id) {
                    Ok(()) | Err(ember_repo::RepoError::BackupNotFound(_)) => {}
                    Err(e) => return Err(e.to_string()),
                }
                if let (Some(spec), Some(io)) = (&source, &source_io) {
                    remove_backup_snapshots(io, &spec.image, &repo_id)
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            BackupTarget::Ceph(_) => {
                let driver = self.ceph_driver()?;
                let source = match (&source, &source_io) {
                    (Some(spec), Some(io)) => Some(RbdImage {
                        io,
                        image: &spec.image,
                    }),
                    _ => None,
                };
                driver
                    .delete(&repo_id, volume_id, source)
                    .map(drop)
                    .map_err(|e| self.ceph_failure(e))
            }
        }
    }

    /// Whether backup `id` of `volume_id` is whole on the target; why
    /// not, if it is not.
    pub(crate) fn backup_data_status(&self, id: &str, volume_id: &str) -> Result<(), String> {
        let repo_id = parse_backup_id(id).map_err(|e| e.to_string())?;
        match &self.target {
            BackupTarget::Repository(repo) => repo
                .backup_info(&repo_id)
                .map(drop)
                .map_err(|e| e.to_string()),
            BackupTarget::Ceph(_) => match self
                .ceph_driver()?
                .find(&repo_id, volume_id)
                .map_err(|e| e.to_string())?
            {
                Some(_) => Ok(()),
                None => Err(format!("backup {id} is not in the backup pool")),
            },
        }
    }
}
