//! The service's configuration file (TOML). Option names follow Cinder's
//! where Cinder has one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ember_types::Codec;
use serde::Deserialize;

use crate::ServiceError;

/// Settings of `ember serve`. Every field has a default, so an empty file
/// (or none) gives a working service in the data directory.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Address the API listens on.
    pub listen: SocketAddr,
    /// Directory for the database, the repository and the volumes, unless
    /// set separately.
    pub data_dir: PathBuf,
    /// Metadata database URL: `sqlite://PATH` or `postgres://…` (default:
    /// SQLite in the data directory).
    pub database: Option<String>,
    /// Repository directory (Cinder: `backup_posix_path`; default
    /// `DATA_DIR/backups`).
    pub backup_posix_path: Option<PathBuf>,
    /// Directory of file volumes (default `DATA_DIR/volumes`).
    pub volume_dir: Option<PathBuf>,
    /// Codec for new chunks (Cinder: `backup_compression_algorithm`).
    pub backup_compression_algorithm: Codec,
    /// Compression level.
    pub backup_compression_level: i32,
    /// Backups and restores running at once (Cinder: `backup_max_operations`; 0 = unlimited).
    pub backup_max_operations: usize,
    /// Worker threads of each backup or restore (default: two per core).
    pub backup_threads: Option<usize>,
    /// Backups per project (Cinder: `quota_backups`; -1 = unlimited).
    pub quota_backups: i64,
    /// GiB of backups per project (Cinder: `quota_backup_gigabytes`; -1 = unlimited).
    pub quota_backup_gigabytes: i64,
    /// Host name reported in `os-services` (default: the machine's).
    pub host: Option<String>,
    /// Availability zone of the service (Cinder: `storage_availability_zone`).
    pub storage_availability_zone: String,
    /// Seconds between heartbeats (Cinder: `report_interval`).
    pub report_interval: u64,
    /// Seconds without a heartbeat before a service is down (Cinder: `service_down_time`).
    pub service_down_time: u64,
    /// Where volumes live: `file` (sparse files in `volume_dir`) or `rbd`
    /// (RBD images in `rbd_pool`). Cinder's driver class names are accepted.
    pub volume_driver: VolumeDriver,
    /// Pool of RBD volumes (Cinder: `rbd_pool`).
    pub rbd_pool: String,
    /// Ceph configuration of the volumes' cluster (Cinder: `rbd_ceph_conf`).
    pub rbd_ceph_conf: PathBuf,
    /// cephx user of the volumes' cluster, without `client.` (Cinder: `rbd_user`).
    pub rbd_user: String,
    /// Keyring of that user, if `rbd_ceph_conf` does not name one (Cinder: `rbd_keyring_conf`).
    pub rbd_keyring_conf: Option<PathBuf>,
    /// Where backups go: `posix` (Ember's deduplicating repository at
    /// `backup_posix_path`) or `ceph` (Cinder's Ceph layout: RBD images in
    /// `backup_ceph_pool`). Cinder's driver class names are accepted.
    pub backup_driver: BackupDriver,
    /// Ceph configuration of the backup cluster (Cinder: `backup_ceph_conf`).
    pub backup_ceph_conf: PathBuf,
    /// cephx user of the backup cluster (Cinder: `backup_ceph_user`).
    pub backup_ceph_user: String,
    /// Keyring of that user, if `backup_ceph_conf` does not name one.
    pub backup_ceph_keyring: Option<PathBuf>,
    /// Pool of backup images (Cinder: `backup_ceph_pool`).
    pub backup_ceph_pool: String,
    /// Bytes copied at once by full copies (Cinder: `backup_ceph_chunk_size`).
    pub backup_ceph_chunk_size: u64,
    /// RBD stripe unit of backup images, 0 = default (Cinder: `backup_ceph_stripe_unit`).
    pub backup_ceph_stripe_unit: u64,
    /// RBD stripe count of backup images, 0 = default (Cinder: `backup_ceph_stripe_count`).
    pub backup_ceph_stripe_count: u64,
    /// Backup images get the exclusive-lock and journaling features
    /// (Cinder: `backup_ceph_image_journals`).
    pub backup_ceph_image_journals: bool,
    /// Zero or discard what lies beyond the backup on a larger restore
    /// target (Cinder: `restore_discard_excess_bytes`).
    pub restore_discard_excess_bytes: bool,
}

/// Where the service keeps volumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeDriver {
    /// Sparse raw files in the volume directory.
    File,
    /// RBD images in a Ceph pool.
    Rbd,
}

/// Where the service stores backups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupDriver {
    /// Ember's deduplicating repository (a POSIX directory, also NFS or
    /// GlusterFS).
    Posix,
    /// Cinder's Ceph backup layout: RBD images and snapshots in a pool.
    Ceph,
}

impl<'de> Deserialize<'de> for VolumeDriver {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        match name.as_str() {
            "file" => Ok(VolumeDriver::File),
            "rbd" | "cinder.volume.drivers.rbd.RBDDriver" => Ok(VolumeDriver::Rbd),
            other => Err(serde::de::Error::custom(format!(
                "unknown volume_driver {other:?} (file or rbd)"
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for BackupDriver {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        match name.as_str() {
            "posix"
            | "cinder.backup.drivers.posix.PosixBackupDriver"
            | "cinder.backup.drivers.nfs.NFSBackupDriver"
            | "cinder.backup.drivers.glusterfs.GlusterfsBackupDriver" => Ok(BackupDriver::Posix),
            "ceph" | "cinder.backup.drivers.ceph.CephBackupDriver" => Ok(BackupDriver::Ceph),
            other => Err(serde::de::Error::custom(format!(
                "unknown backup_driver {other:?} (posix or ceph)"
            ))),
        }
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8776)),
            data_dir: default_data_dir(),
            database: None,
            backup_posix_path: None,
            volume_dir: None,
            backup_compression_algorithm: Codec::Zstd,
            backup_compression_level: 1,
            backup_max_operations: 15,
            backup_threads: None,
            quota_backups: 10,
            quota_backup_gigabytes: 1000,
            host: None,
            storage_availability_zone: "nova".into(),
            report_interval: 10,
            service_down_time: 60,
            volume_driver: VolumeDriver::File,
            rbd_pool: "volumes".into(),
            rbd_ceph_conf: PathBuf::from("/etc/ceph/ceph.conf"),
            rbd_user: "admin".into(),
            rbd_keyring_conf: None,
            backup_driver: BackupDriver::Posix,
            backup_ceph_conf: PathBuf::from("/etc/ceph/ceph.conf"),
            backup_ceph_user: "admin".into(),
            backup_ceph_keyring: None,
            backup_ceph_pool: "backups".into(),
            backup_ceph_chunk_size: 128 << 20,
            backup_ceph_stripe_unit: 0,
            backup_ceph_stripe_count: 0,
            backup_ceph_image_journals: false,
            restore_discard_excess_bytes: true,
        }
    }
}

fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib"))
        .join(".local/share/ember/service")
}

impl ServiceConfig {
    /// Reads a TOML file; unknown options are errors (a misspelt option
    /// must not be silently ignored).
    pub fn from_file(path: &Path) -> Result<Self, ServiceError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServiceError::Config(format!("{}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| ServiceError::Config(format!("{}: {e}", path.display())))
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("ember.db").display()))
    }

    /// The repository directory in effect.
    pub fn repository_dir(&self) -> PathBuf {
        self.backup_posix_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("backups"))
    }

    /// The volume directory in effect.
    pub fn volume_dir(&self) -> PathBuf {
        self.volume_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("volumes"))
    }

    /// The host name in effect.
    pub fn host_name(&self) -> String {
        self.host.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cinder_option_names_parse_and_unknown_ones_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ember.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/srv/ember\"\nbackup_compression_algorithm = \"zlib\"\nbackup_max_operations = 2\nquota_backups = 3\n",
        )
        .expect("write");
        let config = ServiceConfig::from_file(&path).expect("parse");
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.backup_compression_algorithm, Codec::Zlib);
        assert_eq!(config.backup_max_operations, 2);
        assert_eq!(config.quota_backups, 3);
        assert_eq!(config.repository_dir(), PathBuf::from("/srv/ember/backups"));
        assert_eq!(config.database_url(), "sqlite:///srv/ember/ember.db");

        std::fs::write(
            &path,
            "volume_driver = \"cinder.volume.drivers.rbd.RBDDriver\"\nbackup_driver = \"ceph\"\nrbd_pool = \"vols\"\n",
        )
        .expect("write");
        let config = ServiceConfig::from_file(&path).expect("parse");
        assert_eq!(config.volume_driver, VolumeDriver::Rbd);
        assert_eq!(config.backup_driver, BackupDriver::Ceph);
        assert_eq!(config.rbd_pool, "vols");
        std::fs::write(&path, "backup_driver = \"swift\"\n").expect("write");
        let err = ServiceConfig::from_file(&path).expect_err("unknown driver");
        assert!(err.to_string().contains("posix or ceph"), "{err}");

        std::fs::write(&path, "backup_max_operation = 2\n").expect("write");
        let err = ServiceConfig::from_file(&path).expect_err("typo");
        assert!(err.to_string().contains("backup_max_operation"), "{err}");
    }
}
