//! The Ceph backup driver from the command line, for `bench/rbd.sh`: one
//! backup, restore or delete per run, Cinder's layout in the backup pool.
//!
//! ```text
//! rbd-backup backup  POOL/IMAGE VOLUME_ID BACKUP_ID [--incremental]
//! rbd-backup restore VOLUME_ID BACKUP_ID POOL/IMAGE   (created if missing)
//! rbd-backup delete  VOLUME_ID BACKUP_ID [POOL/IMAGE]  (the source, to drop its snapshot)
//! ```
//!
//! The cluster is the one `$CEPH_CONF` (default `/etc/ceph/ceph.conf`)
//! describes, reached as `$CEPH_USER` (default `admin`); the backup pool is
//! `$EMBER_RBD_BACKUP_POOL` (default `backups`). Prints what was done as
//! one line; exits with 1 and the error on stderr when it fails, 2 on bad
//! usage.

use std::process::ExitCode;

use ember_ceph::{rbd, CephConfig, CreateOptions, IoCtx};
use ember_rbd_backup::{
    BackupRequest, BackupSource, Control, RbdBackupConfig, RbdBackupDriver, RbdImage, RestoreTarget,
};
use ember_types::BackupId;

const USAGE: &str = "usage: rbd-backup backup POOL/IMAGE VOLUME_ID BACKUP_ID [--incremental]
       rbd-backup restore VOLUME_ID BACKUP_ID POOL/IMAGE
       rbd-backup delete VOLUME_ID BACKUP_ID [POOL/IMAGE]";

type Error = Box<dyn std::error::Error>;

/// The cluster's configuration for `pool`, from the environment.
fn cluster(pool: &str) -> CephConfig {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    CephConfig::new(
        var("CEPH_CONF", "/etc/ceph/ceph.conf"),
        var("CEPH_USER", "admin"),
        pool,
    )
}

/// `POOL/IMAGE` split, its pool opened.
fn image_spec(spec: &str) -> Result<(IoCtx, String), Error> {
    let (pool, image) = spec
        .split_once('/')
        .ok_or_else(|| format!("{spec}: not POOL/IMAGE"))?;
    Ok((cluster(pool).connect()?, image.to_string()))
}

fn run(args: &[String]) -> Result<Option<String>, Error> {
    let pool = std::env::var("EMBER_RBD_BACKUP_POOL").unwrap_or_else(|_| "backups".into());
    let driver = || RbdBackupDriver::connect(RbdBackupConfig::new(cluster(&pool)));
    let control = Control::new();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = match args.as_slice() {
        ["backup", source, volume_id, backup_id, rest @ ..]
            if rest.is_empty() || rest == ["--incremental"] =>
        {
            let (io, image) = image_spec(source)?;
            let request = BackupRequest {
                backup_id: backup_id.parse::<BackupId>()?,
                volume_id,
                source: BackupSource::Rbd(RbdImage {
                    io: &io,
                    image: &image,
                }),
                incremental: !rest.is_empty(),
                metadata: None,
            };
            let outcome = driver()?.backup(&request, &control)?;
            format!(
                "{:?} into {}: {:?}",
                outcome.kind, outcome.image, outcome.stats
            )
        }
        ["restore", volume_id, backup_id, target] => {
            let driver = driver()?;
            let backup_id = backup_id.parse::<BackupId>()?;
            let (io, image) = image_spec(target)?;
            if let Some(entry) = driver.find(&backup_id, volume_id)? {
                if !rbd::list(&io)?.iter().any(|spec| spec.name == image) {
                    rbd::create(&io, &image, entry.size, &CreateOptions::default())?;
                }
            }
            let target = RestoreTarget::Rbd(RbdImage {
                io: &io,
                image: &image,
            });
            let outcome = driver.restore(&backup_id, volume_id, target, &control)?;
            format!("{:?} restore: {:?}", outcome.method, outcome.stats)
        }
        ["delete", volume_id, backup_id, source @ ..] if source.len() <= 1 => {
            let source = source.first().map(|spec| image_spec(spec)).transpose()?;
            let source = source.as_ref().map(|(io, image)| RbdImage { io, image });
            let outcome = driver()?.delete(&backup_id.parse::<BackupId>()?, volume_id, source)?;
            format!("deleted: {outcome:?}")
        }
        _ => return Ok(None),
    };
    Ok(Some(report))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(Some(report)) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("rbd-backup: error: {e}");
            ExitCode::FAILURE
        }
    }
}
