//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ember_store::StoreSpec;
use ember_types::Codec;

/// Ember backs up block volumes (raw images, block devices) into a
/// deduplicating, verified repository and restores them.
#[derive(Debug, Parser)]
#[command(name = "ember", version, about)]
pub struct Cli {
    /// Repository: a directory (default: $EMBER_REPO, else ember/repo under
    /// the user's data directory, created on first use), or objects in a
    /// Ceph pool: rados:POOL[/PREFIX][?conf=FILE&user=NAME&keyring=FILE]
    /// (conf defaults to $CEPH_CONF, else /etc/ceph/ceph.conf; user to
    /// $CEPH_USER, else admin; e.g. rados:backups/ember?user=cinder-backup).
    #[arg(long, global = true, env = "EMBER_REPO", value_name = "REPO")]
    pub repo: Option<StoreSpec>,

    /// Print results as JSON, for scripts.
    #[arg(long, global = true)]
    pub json: bool,

    /// Worker threads (default: two per core).
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,

    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, show, restore and delete backups.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Create, verify and clean up the repository.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Run the service: OpenStack Cinder's Block Storage API v3 for backups.
    Serve(ServeArgs),
    /// Volumes of the service.
    #[command(subcommand)]
    Volume(VolumeCommand),
}

/// Where the service's settings come from.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Configuration file (TOML; option names follow Cinder's).
    #[arg(long, env = "EMBER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (database, repository, volumes); overrides the file.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Settings.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Address to listen on (default 127.0.0.1:8776); overrides the file.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
}

/// Volume commands.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Print the path of a volume's data (a file or a block device).
    Path {
        /// Volume id.
        id: String,
        /// Settings.
        #[command(flatten)]
        service: ServiceArgs,
    },
}

/// Backup commands.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back up a raw image file, a block device or an RBD image; prints the
    /// new backup id as the last line.
    Create(CreateArgs),
    /// List the backups in the repository, oldest first.
    List,
    /// Show one backup.
    Show {
        /// Backup id (or a unique prefix of it).
        id: String,
    },
    /// Restore a backup into a new file or RBD image, or into an existing
    /// file, block device or RBD image at least as large as the backed-up
    /// volume (anything beyond is zeroed).
    Restore {
        /// Backup id (or a unique prefix of it).
        id: String,
        /// Where to restore: a path, or rbd:POOL/IMAGE (the cluster of
        /// $CEPH_CONF, default /etc/ceph/ceph.conf, as $CEPH_USER, default
        /// admin).
        target: PathBuf,
    },
    /// Delete a backup. Other backups, its descendants included, are not
    /// affected; `repo gc` frees the space.
    Delete {
        /// Backup id (or a unique prefix of it).
        id: String,
    },
}

/// Arguments of `backup create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The volume: a raw image file, a block device, or rbd:POOL/IMAGE
    /// [@SNAPSHOT] (the cluster of $CEPH_CONF, default /etc/ceph/ceph.conf,
    /// as $CEPH_USER, default admin). Without a snapshot one is taken,
    /// named backup.<id>.snap.<time> as Cinder does; an --incremental
    /// backup of the same image then reads only what changed since its
    /// parent's snapshot, and after each backup only the newest such
    /// snapshot is kept.
    pub source: PathBuf,
    /// Incremental backup on top of PARENT_ID, or without an id on top of
    /// the newest backup of the same source. Only changed chunks are stored.
    #[arg(long, value_name = "PARENT_ID", num_args = 0..=1, default_missing_value = "")]
    pub incremental: Option<String>,
    /// Name to record with the backup.
    #[arg(long)]
    pub name: Option<String>,
    /// Description to record with the backup.
    #[arg(long)]
    pub description: Option<String>,
    /// Compression of new chunks: zstd, zlib, bz2 or none.
    #[arg(long, default_value = "zstd")]
    pub compression: Codec,
    /// Compression level (zstd 1-19, zlib and bz2 1-9).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// Chunk size in bytes for a full backup (a power of two, 4096 to
    /// 67108864; default the repository's).
    #[arg(long, value_name = "BYTES")]
    pub chunk_size: Option<u32>,
    /// Volume id to record (finds the parent of --incremental by volume
    /// rather than by source path).
    #[arg(long)]
    pub volume_id: Option<String>,
}

/// Repository commands.
#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Create a repository (done automatically on first backup).
    Init {
        /// Default chunk size in bytes for full backups.
        #[arg(long, value_name = "BYTES")]
        chunk_size: Option<u32>,
    },
    /// Read back every chunk (of the repository, or of one backup) and
    /// report missing or damaged ones and the backups they affect.
    Verify {
        /// Only this backup.
        #[arg(long, value_name = "ID")]
        backup: Option<String>,
    },
    /// Remove chunks that no backup references.
    Gc {
        /// Keep unreferenced chunks written or used this recently (e.g.
        /// "1h", "10m", "0s"); guards against clock skew on shared storage.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
        /// Report what would be removed without removing it.
        #[arg(long)]
        dry_run: bool,
    },
}
