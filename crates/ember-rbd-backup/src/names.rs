//! Cinder's names on the backup cluster (`cinder/backup/drivers/ceph.py`,
//! spec §3.10): images, snapshots and the metadata object.

use std::time::{SystemTime, UNIX_EPOCH};

use ember_types::BackupId;

use crate::RbdBackupError;

/// Prefix of a backup snapshot's name (`backup.<backup_id>.snap.<ts>`).
const SNAP_PREFIX: &str = "backup.";
/// What separates the backup id from the timestamp in a snapshot's name.
const SNAP_INFIX: &str = ".snap.";

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

/// `backup.<backup_id>.snap.<unix time>`: a new backup snapshot name, the
/// time written as Python's `str(time.time())` does (seconds, a point and
/// up to six decimals, trailing zeros dropped but one).
pub fn new_snapshot_name(backup_id: &BackupId) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let micros = format!("{:06}", now.subsec_micros());
    let micros = micros.trim_end_matches('0');
    let micros = if micros.is_empty() { "0" } else { micros };
    format!(
        "{SNAP_PREFIX}{backup_id}{SNAP_INFIX}{}.{micros}",
        now.as_secs()
    )
}

/// The backup id of a backup snapshot's name, as Cinder's regex
/// `^backup\.([a-z0-9\-]+?)\.snap\.(.+)$` reads it; `None` for other
/// snapshots and for ids that are not UUIDs (Cinder never makes those).
pub fn parse_snapshot_name(name: &str) -> Option<BackupId> {
    let rest = name.strip_prefix(SNAP_PREFIX)?;
    let (id, timestamp) = rest.split_once(SNAP_INFIX)?;
    let id_ok = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !id_ok || timestamp.is_empty() {
        return None;
    }
    id.parse().ok()
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
        let snap = new_snapshot_name(&id);
        assert!(snap.starts_with("backup.3052c307-119e-4f78-960e-972078aa15a8.snap.1"));
        let ts = snap.rsplit_once(".snap.").expect("ts").1;
        assert!(ts.parse::<f64>().is_ok(), "{ts}");
        assert!(!ts.ends_with("00"), "{ts}");
        assert_eq!(parse_snapshot_name(&snap), Some(id));
    }

    #[test]
    fn snapshot_names_parse_like_cinders_regex() {
        let id = "3052c307-119e-4f78-960e-972078aa15a8";
        assert!(parse_snapshot_name(&format!("backup.{id}.snap.1712345678.25")).is_some());
        assert!(parse_snapshot_name(&format!("backup.{id}.snap.x.y")).is_some());
        for other in [
            format!("backup.{id}.snap."),
            format!("backup.{id}.snip.1"),
            format!("backup.{}.snap.1", id.to_uppercase()),
            "backup..snap.1".to_string(),
            "backup.not-a-uuid.snap.1".to_string(),
            "snap1".to_string(),
        ] {
            assert_eq!(parse_snapshot_name(&other), None, "{other}");
        }
    }

    #[test]
    fn volume_ids_must_be_name_safe() {
        assert!(check_volume_id("3052c307-119e-4f78-960e-972078aa15a8").is_ok());
        for bad in ["", "a.b", "a/b", "a@b", "a b"] {
            assert!(check_volume_id(bad).is_err(), "{bad}");
        }
    }
}
