//! The service object, start-up clean-up, heartbeats and service listing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use ember_ceph::CephConfig;
use ember_meta::{BackupRecord, Database, SnapshotRecord, VolumeRecord};
use ember_repo::Repository;
use ember_store::PosixStore;
use tokio::sync::Semaphore;

use crate::config::{BackupDriver, VolumeDriver};
use crate::jobs::Jobs;
use crate::rbd_volumes::RbdVolumes;
use crate::targets::{BackupTarget, CephBackups};
use crate::volumes::{FileVolumes, VolumeBackend};
use crate::{Caller, ServiceConfig, ServiceError};

/// The binary whose backend is the backup target.
pub(crate) const BACKUP_BINARY: &str = "cinder-backup";
/// The binary whose backend is the volume storage.
const VOLUME_BINARY: &str = "cinder-volume";

/// Where volume data lives.
pub(crate) enum Volumes {
    /// Sparse files in the volume directory.
    Files(FileVolumes),
    /// RBD images.
    Rbd(RbdVolumes),
}

impl Volumes {
    /// The backend's operations.
    pub(crate) fn backend(&self) -> &dyn VolumeBackend {
        match self {
            Volumes::Files(files) => files,
            Volumes::Rbd(rbd) => rbd,
        }
    }
}

/// Everything `ember serve` runs on: database, backup target, volumes, jobs.
pub struct Ember {
    pub(crate) db: Database,
    pub(crate) target: BackupTarget,
    pub(crate) config: ServiceConfig,
    pub(crate) volumes: Volumes,
    /// Where temporary copies of in-use file volumes go.
    pub(crate) scratch: FileVolumes,
    pub(crate) jobs: Arc<Jobs>,
    pub(crate) limiter: Arc<Semaphore>,
    pub(crate) host: String,
    /// Why a binary's backend is down, by binary (absent: up).
    pub(crate) down: Mutex<HashMap<&'static str, String>>,
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
    /// Whether it heartbeated within `service_down_time` and (for this
    /// host's) its backend works.
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
    /// the repository (or prepares the Ceph backup driver) and the volume
    /// storage. A Ceph cluster is only connected by [`Ember::start`]'s
    /// first health check: one that is down or refuses the credentials
    /// leaves its service down, not the whole service unstarted.
    pub async fn open(config: ServiceConfig) -> Result<Arc<Ember>, ServiceError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            ServiceError::Config(format!("data directory {}: {e}", config.data_dir.display()))
        })?;
        let db = Database::connect(&config.database_url()).await?;
        let target = match config.backup_driver {
            BackupDriver::Posix => {
                let store = PosixStore::create(config.repository_dir())
                    .map_err(|e| ServiceError::Config(format!("repository: {e}")))?;
                BackupTarget::Repository(Repository::open_or_init(
                    Arc::new(store),
                    ember_engine::DEFAULT_CHUNK_SIZE,
                )?)
            }
            BackupDriver::Ceph => BackupTarget::Ceph(CephBackups::new(&config)),
        };
        let scratch = FileVolumes::open(config.volume_dir())?;
        let volumes = match config.volume_driver {
            VolumeDriver::File => Volumes::Files(scratch.clone()),
            VolumeDriver::Rbd => {
                let mut ceph =
                    CephConfig::new(&config.rbd_ceph_conf, &config.rbd_user, &config.rbd_pool);
                if let Some(keyring) = &config.rbd_keyring_conf {
                    ceph = ceph.with_keyring(keyring);
                }
                Volumes::Rbd(RbdVolumes::new(ceph))
            }
        };
        let permits = match config.backup_max_operations {
            0 => Semaphore::MAX_PERMITS,
            n => n,
        };
        Ok(Arc::new(Ember {
            db,
            target,
            host: config.host_name(),
            volumes,
            scratch,
            jobs: Arc::new(Jobs::default()),
            limiter: Arc::new(Semaphore::new(permits)),
            down: Mutex::new(HashMap::new()),
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

    /// Checks both backends, then records a heartbeat for each binary
    /// (its row exists even while its backend is down; `os-services` then
    /// reports it down, see [`Ember::list_services`]).
    async fn heartbeat(self: &Arc<Self>) -> Result<(), ServiceError> {
        let me = self.clone();
        let checks = tokio::task::spawn_blocking(move || {
            [
                (VOLUME_BINARY, me.volumes.backend().check()),
                (BACKUP_BINARY, me.target.check()),
            ]
        })
        .await
        .map_err(|e| ServiceError::Backend(format!("health check failed: {e}")))?;
        for (binary, health) in checks {
            self.record_health(binary, health);
            self.db
                .heartbeat(&self.host, binary, &self.config.storage_availability_zone)
                .await?;
        }
        Ok(())
    }

    /// Remembers whether `binary`'s backend works, logging changes.
    fn record_health(&self, binary: &'static str, health: Result<(), String>) {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        match health {
            Ok(()) => {
                if down.remove(binary).is_some() {
                    tracing::info!("{binary}: backend up again");
                }
            }
            Err(why) => {
                if down.get(binary) != Some(&why) {
                    tracing::error!("{binary}: backend down: {why}");
                }
                down.insert(binary, why);
            }
        }
    }

    /// Why `binary`'s backend is down, if it is.
    pub fn backend_down(&self, binary: &str) -> Option<String> {
        self.down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(binary)
            .cloned()
    }

    /// Refuses new backup work while the backup target is down (as Cinder
    /// refuses it without a live `cinder-backup`), saying why.
    pub(crate) fn require_backup_backend(&self) -> Result<(), ServiceError> {
        match self.backend_down(BACKUP_BINARY) {
            Some(why) => Err(ServiceError::Backend(format!(
                "cinder-backup is down: {why}"
            ))),
            None => Ok(()),
        }
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
                up: now - s.updated_at < down_after
                    && !(s.host == self.host && self.backend_down(&s.binary).is_some()),
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
