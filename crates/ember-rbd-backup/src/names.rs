//! Cinder's names on the backup cluster (`cinder/backup/drivers/ceph.py`,
//! spec §3.10): images and the metadata object. Backup snapshots are
//! named by [`ember_volume::new_snapshot_name`], shared with the chunked
//! repository's RBD backups.

use ember_types::BackupId;

use crate::RbdBackupError;

/// Refuses a volume id that cannot be part of an image name: Cinder's are
/// UUIDs; anything beyond letters, digits, `-` and `_` is refused so that
/// names parse back unambiguously.
pub(crate) fn check_volume_id(volume_id: &str) -> Result<(), RbdBackupError> {
    let ok = !volume_id.is_empty()
        && volume_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(RbdBackupError::InvalidVolumeId(volume_id.to_string()))
    }
}

/// `volume-<volume_id>.backup.`: the prefix of every backup image of the
/// volume in the backup pool.
pub(crate) fn image_prefix(volume_id: &str) -> String {
    format!("volume-{volume_id}.backup.")
}

/// `volume-<volume_id>.backup.base`: the per-volume base image that RBD
/// sources are backed up into (Cinder's "diff format" base).
pub fn base_image_name(volume_id: &str) -> String {
    format!("{}base", image_prefix(volume_id))
}

/// `volume-<volume_id>.backup.<backup_id>`: the image of a full backup of a
/// non-RBD source (Cinder's `_full_backup`), and the base of a full RBD
/// backup made by Cinder since its incremental rework.
pub fn full_image_name(volume_id: &str, backup_id: &BackupId) -> String {
    format!("{}{backup_id}", image_prefix(volume_id))
}

/// `backup.<backup_id>.meta`: the RADOS object holding the volume
/// metadata JSON of a backup.
pub fn metadata_object_name(backup_id: &BackupId) -> String {
    format!("backup.{backup_id}.meta")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cinders() {
        let id: BackupId = "3052c307-119e-4f78-960e-972078aa15a8".parse().expect("id");
        assert_eq!(base_image_name("v1"), "volume-v1.backup.base");
        assert_eq!(
            full_image_name("v1", &id),
            "volume-v1.backup.3052c307-119e-4f78-960e-972078aa15a8"
        );
        assert_eq!(
            metadata_object_name(&id),
            "backup.3052c307-119e-4f78-960e-972078aa15a8.meta"
        );
    }

    #[test]
    fn volume_ids_must_be_name_safe() {
        assert!(check_volume_id("3052c307-119e-4f78-960e-972078aa15a8").is_ok());
        for bad in ["", "a.b", "a/b", "a@b", "a b"] {
            assert!(check_volume_id(bad).is_err(), "{bad}");
        }
    }
}
