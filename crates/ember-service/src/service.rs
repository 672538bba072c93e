//! The service object, start-up clean-up, heartbeats and service listing.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ember_meta::{BackupRecord, Database, SnapshotRecord, VolumeRecord};
use ember_repo::Repository;
use ember_store::PosixStore;
use tokio::sync::Semaphore;

use crate::jobs::Jobs;
use crate::volumes::FileVolumes;
use crate::{Caller, ServiceConfig, ServiceError};

/// The `backup_service` name in export records (Cinder: the driver module).
pub const BACKUP_SERVICE_NAME: &str = "ember.backup.drivers.posix";

/// Binaries whose heartbeats `os-services` reports.
const SERVICE_BINARIES: [&str; 2] = ["cinder-backup", "cinder-volume"];

/// Everything `ember serve` runs on: database, repository, volumes, jobs.
pub struct Ember {
    pub(crate) db: Database,
    pub(crate) repo: Repository,
    pub(crate) config: ServiceConfig,
    pub(crate) volumes: FileVolumes,
    pub(crate) jobs: Arc<Jobs>,
    pub(crate) limiter: Arc<Semaphore>,
    pub(crate) host: String,
}

/// One row of `os-services`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceStatus {
    /// `cinder-backup` or `cinder-volume`.
    pub binary: String,
    /// Host name.
    pub host: String,
    /// Availability zone.
    pub zone: String,
    /// Whether it heartbeated within `service_down_time`.
    pub up: bool,
    /// Disabled by an operator.
    pub disabled: bool,
    /// Why.
    pub disabled_reason: Option<String>,
    /// Last heartbeat.
    pub updated_at: DateTime<Utc>,
}

impl Ember {
    /// Connects the database (creating and migrating it), opens or creates
    /// the repository and the volume directory.
    pub async fn open(config: ServiceConfig) -> Result<Arc<Ember>, ServiceError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            ServiceError::Config(format!("data directory {}: {e}", config.data_dir.display()))
        })?;
        let db = Database::connect(&config.database_url()).await?;
        let store = PosixStore::create(config.repository_dir())
            .map_err(|e| ServiceError::Config(format!("repository: {e}")))?;
        let repo = Repository::open_or_init(Arc::new(store), ember_engine::DEFAULT_CHUNK_SIZE)?;
        let volumes = FileVolumes::open(config.volume_dir())?;
        let permits = match config.backup_max_operations {
            0 => Semaphore::MAX_PERMITS,
            n => n,
        };
        Ok(Arc::new(Ember {
            db,
            repo,
            host: config.host_name(),
            volumes,
            jobs: Arc::new(Jobs::default()),
            limiter: Arc::new(Semaphore::new(permits)),
            config,
        }))
    }

    /// The configuration in effect.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The metadata database.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Cleans up what a previous run left unfinished (as Cinder's
    /// `init_host`), then heartbeats in the background.
    pub async fn start(self: &Arc<Self>) -> Result<(), ServiceError> {
        self.clean_up_interrupted().await?;
        self.heartbeat().await?;
        let me = self.clone();
        tokio::spawn(async move {
            let period = std::time::Duration::from_secs(me.config.report_interval.max(1));
            loop {
                tokio::time::sleep(period).await;
                if let Err(e) = me.heartbeat().await {
                    tracing::warn!("heartbeat failed: {e}");
                }
            }
        });
        Ok(())
    }

    async fn heartbeat(&self) -> Result<(), ServiceError> {
        for binary in SERVICE_BINARIES {
            self.db
                .heartbeat(&self.host, binary, &self.config.storage_availability_zone)
                .await?;
        }
        Ok(())
    }

    /// Cinder's restart rules: an interrupted backup becomes `error`, an
    /// interrupted restore gives the backup back (`available`) and marks
    /// the volume `error_restoring`, an interrupted delete is resumed.
    async fn clean_up_interrupted(self: &Arc<Self>) -> Result<(), ServiceError> {
        for backup in self
            .db
            .backups_in_status(&["creating", "restoring", "deleting"])
            .await?
        {
            match backup.status.as_str() {
                "creating" => {
                    self.fail_backup(
                        &backup.id,
                        "creating",
                        "incomplete backup reset on manager restart",
                    )
                    .await?;
                    self.return_volume_from_backup(&backup.volume_id).await?;
                    if let Some(snapshot) = &backup.snapshot_id {
                        self.db
                            .set_snapshot_status(snapshot, &["backing-up"], "available")
                            .await?;
                    }
                }
                "restoring" => {
                    self.db
                        .set_backup_status(&backup.id, &["restoring"], "available")
                        .await?;
                    if let Some(volume) = &backup.restore_volume_id {
                        self.db
                            .set_volume_status(
                                volume,
                                &["restoring-backup", "creating"],
                                "error_restoring",
                            )
                            .await?;
                    }
                }
                _ => self.spawn_delete(backup.id.clone()),
            }
            tracing::info!(backup = %backup.id, status = %backup.status, "cleaned up after restart");
        }
        Ok(())
    }

    /// The services and whether they are up.
    pub async fn list_services(&self) -> Result<Vec<ServiceStatus>, ServiceError> {
        let now = Utc::now();
        let down_after = chrono::Duration::seconds(self.config.service_down_time as i64);
        Ok(self
            .db
            .list_services()
            .await?
            .into_iter()
            .map(|s| ServiceStatus {
                up: now - s.updated_at < down_after,
                binary: s.binary,
                host: s.host,
                zone: s.zone,
                disabled: s.disabled,
                disabled_reason: s.disabled_reason,
                updated_at: s.updated_at,
            })
            .collect())
    }

    /// The caller's volume `id`, or NotFound (another project's too).
    pub(crate) async fn volume_of(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<VolumeRecord, ServiceError> {
        match self.db.get_volume(id).await? {
            Some(v) if v.project_id == caller.project_id => Ok(v),
            _ => Err(ServiceError::NotFound(format!(
                "Volume {id} could not be found."
            ))),
        }
    }

    /// The caller's snapshot `id`, or NotFound.
    pub(crate) async fn snapshot_of(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<SnapshotRecord, ServiceError> {
        match self.db.get_snapshot(id).await? {
            Some(s) if s.project_id == caller.project_id => Ok(s),
            _ => Err(ServiceError::NotFound(format!(
                "Snapshot {id} could not be found."
            ))),
        }
    }

    /// The caller's backup `id`, or NotFound.
    pub(crate) async fn backup_of(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<BackupRecord, ServiceError> {
        match self.db.get_backup(id).await? {
            Some(b) if b.project_id == caller.project_id => Ok(b),
            _ => Err(ServiceError::NotFound(format!(
                "Backup {id} could not be found."
            ))),
        }
    }

    /// Refuses admin-only actions to non-admins.
    pub(crate) fn require_admin(caller: &Caller, action: &str) -> Result<(), ServiceError> {
        if caller.is_admin {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(format!(
                "Policy doesn't allow {action} to be performed."
            )))
        }
    }
}
