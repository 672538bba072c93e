//! Finding backups in the backup pool (Cinder's and Ember's alike), and
//! their metadata objects.

use ember_ceph::{rbd, Image, SnapInfo};
use ember_types::BackupId;

use ember_volume::parse_snapshot_name;

use crate::names::{
    base_image_name, check_volume_id, full_image_name, image_prefix, metadata_object_name,
};
use crate::{RbdBackupDriver, RbdBackupError};

/// One backup found in the backup pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupEntry {
    /// The backup.
    pub backup_id: BackupId,
    /// The image holding it: the volume's base image, or a full-backup
    /// image `volume-<volume_id>.backup.<backup_id>`.
    pub image: String,
    /// Its snapshot on that image (`backup.<backup_id>.snap.<ts>`); `None`
    /// for a full backup of a non-RBD source, which is the image's head.
    pub snapshot: Option<String>,
    /// The backed-up volume's size in bytes.
    pub size: u64,
}

/// The backup snapshots of `image` with their backup ids, newest (highest
/// snapshot id) first.
pub(crate) fn backup_snaps(image: &Image) -> Result<Vec<(SnapInfo, BackupId)>, RbdBackupError> {
    let mut snaps: Vec<(SnapInfo, BackupId)> = image
        .snap_list()?
        .into_iter()
        .filter_map(|snap| parse_snapshot_name(&snap.name).map(|id| (snap, id)))
        .collect();
    snaps.sort_by_key(|(snap, _)| std::cmp::Reverse(snap.id));
    Ok(snaps)
}

impl RbdBackupDriver {
    /// The backups of `volume_id` in the backup pool: every backup snapshot
    /// of its images `volume-<volume_id>.backup.*`, and its snapshot-less
    /// full-backup images. This is what an import of Cinder-made backups
    /// needs.
    pub fn list(&self, volume_id: &str) -> Result<Vec<BackupEntry>, RbdBackupError> {
        check_volume_id(volume_id)?;
        let mut entries = Vec::new();
        for image in self.backup_images(volume_id)? {
            entries.extend(self.entries_of(volume_id, &image)?);
        }
        Ok(entries)
    }

    /// Backup `backup_id` of `volume_id`, wherever Cinder or Ember put it:
    /// the image `volume-<volume_id>.backup.<backup_id>` (its snapshot for
    /// the backup, or its head if it has no snapshot at all), the base image
    /// `volume-<volume_id>.backup.base`, or any other image of the volume
    /// (the base of a chain Cinder started with a full backup). `None` if
    /// there is none.
    pub fn find(
        &self,
        backup_id: &BackupId,
        volume_id: &str,
    ) -> Result<Option<BackupEntry>, RbdBackupError> {
        check_volume_id(volume_id)?;
        let likely = [
            full_image_name(volume_id, backup_id),
            base_image_name(volume_id),
        ];
        for image in &likely {
            if let Some(found) = self.entry_in(volume_id, image, backup_id)? {
                return Ok(Some(found));
            }
        }
        for image in self.backup_images(volume_id)? {
            if likely.contains(&image) {
                continue;
            }
            if let Some(found) = self.entry_in(volume_id, &image, backup_id)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The names of the images `volume-<volume_id>.backup.*` in the backup
    /// pool, the base image first.
    pub(crate) fn backup_images(&self, volume_id: &str) -> Result<Vec<String>, RbdBackupError> {
        let prefix = image_prefix(volume_id);
        let base = base_image_name(volume_id);
        let mut names: Vec<String> = rbd::list(&self.io)?
            .into_iter()
            .map(|spec| spec.name)
            .filter(|name| name.starts_with(&prefix))
            .collect();
        names.sort_by_key(|name| (*name != base, name.clone()));
        Ok(names)
    }

    /// Backup `backup_id` in `image`, if there.
    fn entry_in(
        &self,
        volume_id: &str,
        image: &str,
        backup_id: &BackupId,
    ) -> Result<Option<BackupEntry>, RbdBackupError> {
        Ok(self
            .entries_of(volume_id, image)?
            .into_iter()
            .find(|entry| entry.backup_id == *backup_id))
    }

    /// The backups held by `image` (none if it does not exist).
    fn entries_of(&self, volume_id: &str, image: &str) -> Result<Vec<BackupEntry>, RbdBackupError> {
        let handle = match Image::open_read_only(&self.io, image, None) {
            Ok(handle) => handle,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let snaps = backup_snaps(&handle)?;
        if !snaps.is_empty() {
            return Ok(snaps
                .into_iter()
                .map(|(snap, backup_id)| BackupEntry {
                    backup_id,
                    image: image.to_string(),
                    snapshot: Some(snap.name),
                    size: snap.size,
                })
                .collect());
        }
        // A full backup of a non-RBD source: named by its backup, no
        // snapshot at all.
        let headless = image
            .strip_prefix(&image_prefix(volume_id))
            .and_then(|id| id.parse::<BackupId>().ok())
            .filter(|id| full_image_name(volume_id, id) == image);
        match headless {
            Some(backup_id) if handle.snap_list()?.is_empty() => Ok(vec![BackupEntry {
                backup_id,
                image: image.to_string(),
                snapshot: None,
                size: handle.size()?,
            }]),
            _ => Ok(Vec::new()),
        }
    }

    /// Writes the volume metadata JSON of a backup as the object
    /// `backup.<backup_id>.meta`, once: [`RbdBackupError::MetadataExists`]
    /// if it exists (Cinder's `VolumeMetadataBackupExists`).
    pub fn put_metadata(&self, backup_id: &BackupId, json: &str) -> Result<(), RbdBackupError> {
        let name = metadata_object_name(backup_id);
        match self.io.stat(&name) {
            Ok(_) => return Err(RbdBackupError::MetadataExists(name)),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(self.io.write_full(&name, json.as_bytes())?)
    }

    /// The volume metadata JSON of a backup; `None` if it has none.
    pub fn get_metadata(&self, backup_id: &BackupId) -> Result<Option<String>, RbdBackupError> {
        let name = metadata_object_name(backup_id);
        match self.io.read_full(&name) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
