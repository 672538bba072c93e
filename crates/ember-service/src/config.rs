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

        std::fs::write(&path, "backup_max_operation = 2\n").expect("write");
        let err = ServiceConfig::from_file(&path).expect_err("typo");
        assert!(err.to_string().contains("backup_max_operation"), "{err}");
    }
}
