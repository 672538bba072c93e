//! Where backups go: Ember's deduplicating repository
//! (`backup_driver = "posix"`: a POSIX directory, also NFS or GlusterFS)
//! or Cinder's Ceph layout (`backup_driver = "ceph"`: RBD images and
//! snapshots in a backup pool, possibly of another cluster).

use std::sync::{Arc, Mutex, MutexGuard};

use ember_ceph::CephConfig;
use ember_rbd_backup::{RbdBackupConfig, RbdBackupDriver};
use ember_repo::Repository;

use crate::{ServiceConfig, ServiceError};

/// The `backup_service` name of export records from the repository.
pub const BACKUP_SERVICE_NAME: &str = "ember.backup.drivers.posix";
/// The `backup_service` name of export records from the Ceph driver.
pub const CEPH_BACKUP_SERVICE_NAME: &str = "ember.backup.drivers.ceph";

/// The service's backup target.
pub(crate) enum BackupTarget {
    /// Ember's repository.
    Repository(Repository),
    /// Cinder's Ceph backup layout.
    Ceph(CephBackups),
}

impl BackupTarget {
    /// The `backup_service` name export records carry.
    pub(crate) fn service_name(&self) -> &'static str {
        match self {
            BackupTarget::Repository(_) => BACKUP_SERVICE_NAME,
            BackupTarget::Ceph(_) => CEPH_BACKUP_SERVICE_NAME,
        }
    }

    /// Where the backups are, for export records.
    pub(crate) fn location(&self) -> String {
        match self {
            BackupTarget::Repository(repo) => repo.location(),
            BackupTarget::Ceph(ceph) => format!("rbd:{}", ceph.config.cluster.pool),
        }
    }

    /// Whether backups can be made now; why not, if they cannot.
    pub(crate) fn check(&self) -> Result<(), String> {
        match self {
            BackupTarget::Repository(repo) => repo.check().map_err(|e| e.to_string()),
            BackupTarget::Ceph(ceph) => ceph.check(),
        }
    }
}

/// The Ceph backup driver, connected when first needed and again after a
/// failure.
pub(crate) struct CephBackups {
    config: RbdBackupConfig,
    driver: Mutex<Option<Arc<RbdBackupDriver>>>,
}

impl CephBackups {
    /// The driver as `backup_ceph_*` configure it (not connected yet).
    pub(crate) fn new(config: &ServiceConfig) -> Self {
        let mut cluster = CephConfig::new(
            &config.backup_ceph_conf,
            &config.backup_ceph_user,
            &config.backup_ceph_pool,
        );
        if let Some(keyring) = &config.backup_ceph_keyring {
            cluster = cluster.with_keyring(keyring);
        }
        let mut driver = RbdBackupConfig::new(cluster);
        driver.stripe_unit =
            (config.backup_ceph_stripe_unit > 0).then_some(config.backup_ceph_stripe_unit);
        driver.stripe_count =
            (config.backup_ceph_stripe_count > 0).then_some(config.backup_ceph_stripe_count);
        driver.image_journals = config.backup_ceph_image_journals;
        driver.chunk_size = config.backup_ceph_chunk_size as usize;
        driver.restore_discard_excess_bytes = config.restore_discard_excess_bytes;
        CephBackups {
            config: driver,
            driver: Mutex::new(None),
        }
    }

    /// The connected driver. Connecting checks the user, key, pool and
    /// capabilities; a failure is [`ServiceError::Backend`], retried at
    /// the next call.
    pub(crate) fn driver(&self) -> Result<Arc<RbdBackupDriver>, ServiceError> {
        let mut driver = self.lock();
        if let Some(driver) = driver.as_ref() {
            return Ok(driver.clone());
        }
        let connected = Arc::new(
            RbdBackupDriver::connect(self.config.clone())
                .map_err(|e| ServiceError::Backend(e.to_string()))?,
        );
        *driver = Some(connected.clone());
        Ok(connected)
    }

    /// Connects if needed and lists the backup pool; a failure drops the
    /// connection, so the next use connects anew.
    pub(crate) fn check(&self) -> Result<(), String> {
        let checked = self.driver().and_then(|driver| {
            driver
                .check()
                .map_err(|e| ServiceError::Backend(e.to_string()))
        });
        checked.map_err(|e| {
            self.reset();
            e.to_string()
        })
    }

    /// Drops the connection after a failure that may be the cluster's, so
    /// the next use connects (and checks) anew.
    pub(crate) fn reset(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> MutexGuard<'_, Option<Arc<RbdBackupDriver>>> {
        self.driver.lock().unwrap_or_else(|p| p.into_inner())
    }
}
