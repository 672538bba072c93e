//! Restores, from a backup snapshot (or a full-backup image's head) into
//! an RBD image or a file or block device.

use ember_ceph::Image;
use ember_types::BackupId;
use ember_volume::{RestoreTarget as _, Target};

use crate::catalog::BackupEntry;
use crate::copy::{copy, copy_into_image, Control, Plan, RbdOrigin, TransferStats};
use crate::ranges::{allocated, changed_extents, clip, subtract};
use crate::{RbdBackupDriver, RbdBackupError, RbdImage};

/// Where to restore to.
#[derive(Debug)]
pub enum RestoreTarget<'a> {
    /// An existing RBD image at least as large as the backup, in this
    /// cluster or another. It keeps its size; what lies beyond the backup
    /// is zeroed when [`crate::RbdBackupConfig::restore_discard_excess_bytes`]
    /// is set (as in Cinder, the default).
    Rbd(RbdImage<'a>),
    /// A file or block device, opened with the backup's size as its data
    /// size ([`crate::BackupEntry::size`], from [`RbdBackupDriver::find`]);
    /// finished (made durable, a new file moved into place) by the restore.
    File(Target),
}

/// How the target was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreMethod {
    /// The target read as zeros everywhere (a new file, an RBD image with
    /// no data): only the backup's data was written, holes left as holes
    /// (Cinder's diff restore into an empty volume).
    Sparse,
    /// The target held data: the backup's data was written and every hole
    /// of the backup (and what lies beyond it) zeroed.
    Overwrite,
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreOutcome {
    /// The backup restored, and where it was found.
    pub backup: BackupEntry,
    /// How the target was written.
    pub method: RestoreMethod,
    /// The target's size in bytes (at least the backup's).
    pub target_size: u64,
    /// What was read and written.
    pub stats: TransferStats,
}

impl RbdBackupDriver {
    /// Restores backup `backup_id` of `volume_id` into `target`: the
    /// target then reads exactly as the volume did at the backup, up to the
    /// backup's size. Only the backup's allocated extents are read; on a
    /// target that held data its holes are zeroed (deallocated).
    pub fn restore(
        &self,
        backup_id: &BackupId,
        volume_id: &str,
        target: RestoreTarget<'_>,
        control: &Control<'_>,
    ) -> Result<RestoreOutcome, RbdBackupError> {
        let backup = self
            .find(backup_id, volume_id)?
            .ok_or_else(|| RbdBackupError::NotFound {
                backup_id: *backup_id,
                volume_id: volume_id.to_string(),
                pool: self.pool().to_string(),
            })?;
        let origin = RbdOrigin {
            io: &self.io,
            image: &backup.image,
            snap: backup.snapshot.as_deref(),
        };
        let (data, _) = changed_extents(
            &Image::open_read_only(&self.io, &backup.image, backup.snapshot.as_deref())?,
            None,
        )?;
        let size = backup.size;
        let too_small = |target: String, target_size: u64| RbdBackupError::TargetTooSmall {
            target,
            target_size,
            needed: size,
            backup_id: *backup_id,
        };
        let chunk_size = self.config.chunk_size;
        let (method, target_size, stats) = match target {
            RestoreTarget::Rbd(rbd) => {
                let image = Image::open(rbd.io, rbd.image)?;
                let target_size = image.size()?;
                if target_size < size {
                    return Err(too_small(image.target(), target_size));
                }
                let used = allocated(&image)?;
                let (method, plan) = if used.is_empty() {
                    let plan = Plan {
                        data,
                        zero: Vec::new(),
                        fresh: true,
                    };
                    (RestoreMethod::Sparse, plan)
                } else {
                    let end = if self.config.restore_discard_excess_bytes {
                        target_size
                    } else {
                        size
                    };
                    let zero = subtract(&clip(used, end), &data);
                    let plan = Plan {
                        data,
                        zero,
                        fresh: false,
                    };
                    (RestoreMethod::Overwrite, plan)
                };
                let (stats, image) = copy_into_image(&origin, image, &plan, chunk_size, control)?;
                image.flush()?;
                image.close()?;
                (method, target_size, stats)
            }
            RestoreTarget::File(mut file) => {
                let target_size = file.size();
                if target_size < size {
                    return Err(too_small(file.path().display().to_string(), target_size));
                }
                let (method, zero) = if file.is_fresh() {
                    (RestoreMethod::Sparse, Vec::new())
                } else {
                    (
                        RestoreMethod::Overwrite,
                        subtract(std::slice::from_ref(&(0..size)), &data),
                    )
                };
                let plan = Plan {
                    fresh: method == RestoreMethod::Sparse,
                    data,
                    zero,
                };
                let stats = copy(&origin, &mut file, &plan, chunk_size, control)?;
                Box::new(file).finish()?;
                (method, target_size, stats)
            }
        };
        Ok(RestoreOutcome {
            backup,
            method,
            target_size,
            stats,
        })
    }
}
