//! Deleting backups, as Cinder's `delete_backup` does, idempotently.

use std::time::Duration;

use ember_ceph::{rbd, Image};
use ember_types::BackupId;

use crate::catalog::backup_snaps;
use crate::names::{check_volume_id, full_image_name, metadata_object_name};
use crate::{RbdBackupDriver, RbdBackupError, RbdImage};

/// Retries of an image removal refused because the image is open elsewhere
/// (Cinder: 3 retries, 5 s apart).
const BUSY_RETRIES: u32 = 3;
/// Pause between those retries.
const BUSY_DELAY: Duration = Duration::from_secs(5);

/// What a delete removed (all empty when the backup was gone already).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// The backup's snapshots removed from backup images, as
    /// `image@snapshot`.
    pub removed_snapshots: Vec<String>,
    /// Backup images removed: the backup's own full-backup image, or a base
    /// image left without snapshots.
    pub removed_images: Vec<String>,
    /// The backup's snapshots removed from the source image.
    pub removed_source_snapshots: Vec<String>,
    /// Whether the metadata object was removed.
    pub removed_metadata: bool,
}

impl RbdBackupDriver {
    /// Deletes backup `backup_id` of `volume_id`: its snapshot on its
    /// backup image, that image once it has no snapshot left (or the
    /// backup's own full-backup image), the backup's snapshot on `source`
    /// if given (and still there), and its metadata object. Deleting what is gone already is
    /// no error, so a delete can be retried. A backup image left with only
    /// snapshots that are not backups' is kept.
    pub fn delete(
        &self,
        backup_id: &BackupId,
        volume_id: &str,
        source: Option<RbdImage<'_>>,
    ) -> Result<DeleteOutcome, RbdBackupError> {
        check_volume_id(volume_id)?;
        let mut outcome = DeleteOutcome::default();
        let own_image = full_image_name(volume_id, backup_id);
        for name in self.backup_images(volume_id)? {
            let image = match Image::open(&self.io, &name) {
                Ok(image) => image,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let mine = backup_snaps(&image)?
                .into_iter()
                .filter(|(_, id)| id == backup_id)
                .map(|(snap, _)| snap.name);
            let mut touched = false;
            for snap in mine {
                remove_snapshot(&image, &snap)?;
                outcome.removed_snapshots.push(format!("{name}@{snap}"));
                touched = true;
            }
            if (touched || name == own_image) && image.snap_list()?.is_empty() {
                image.close()?;
                if self.remove_image(&name)? {
                    outcome.removed_images.push(name);
                }
            }
        }
        let source_image = match source.map(|s| Image::open(s.io, s.image)) {
            Some(Err(e)) if e.is_not_found() => None,
            other => other.transpose()?,
        };
        if let Some(image) = source_image {
            for (snap, id) in backup_snaps(&image)? {
                if id == *backup_id {
                    remove_snapshot(&image, &snap.name)?;
                    outcome.removed_source_snapshots.push(snap.name);
                }
            }
        }
        match self.io.remove(&metadata_object_name(backup_id)) {
            Ok(()) => outcome.removed_metadata = true,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(outcome)
    }

    /// Removes a backup image, retrying while it is busy; `false` if it
    /// was gone.
    fn remove_image(&self, name: &str) -> Result<bool, RbdBackupError> {
        let mut retries = 0;
        loop {
            match rbd::remove(&self.io, name) {
                Ok(()) => return Ok(true),
                Err(e) if e.is_not_found() => return Ok(false),
                Err(e) if e.is_busy() && retries < BUSY_RETRIES => {
                    retries += 1;
                    std::thread::sleep(BUSY_DELAY);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Removes a snapshot; one removed meanwhile is fine.
fn remove_snapshot(image: &Image, snap: &str) -> Result<(), RbdBackupError> {
    match image.snap_remove(snap) {
        Err(e) if !e.is_not_found() => Err(e.into()),
        _ => Ok(()),
    }
}
