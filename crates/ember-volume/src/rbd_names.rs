//! How RBD images are named: `rbd:POOL/IMAGE[@SNAPSHOT]` locations, and the
//! snapshots backups take on their source images, named as Cinder's Ceph
//! driver names them (`backup.<backup_id>.snap.<unix time>`), so that
//! Cinder and Ember recognise each other's.

use std::time::{SystemTime, UNIX_EPOCH};

use ember_types::BackupId;

/// Prefix of a backup snapshot's name (`backup.<backup_id>.snap.<ts>`).
const SNAP_PREFIX: &str = "backup.";
/// What separates the backup id from the timestamp in a snapshot's name.
const SNAP_INFIX: &str = ".snap.";

/// An RBD image (or one of its snapshots) as Ember names it:
/// `rbd:POOL/IMAGE[@SNAPSHOT]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RbdSpec {
    /// The pool.
    pub pool: String,
    /// The image in the pool.
    pub image: String,
    /// A snapshot of the image, if one was named.
    pub snap: Option<String>,
}

impl RbdSpec {
    /// The image `text` names if it starts with `rbd:`; `None` for anything
    /// else (a path: a file whose name starts so is given as `./rbd:…`);
    /// an error naming the expected form for a malformed `rbd:` text.
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        let Some(spec) = text.strip_prefix("rbd:") else {
            return Ok(None);
        };
        let (image, snap) = match spec.split_once('@') {
            Some((image, snap)) => (image, Some(snap)),
            None => (spec, None),
        };
        let parsed = image.split_once('/').and_then(|(pool, image)| {
            let valid = |s: &str| !s.is_empty() && !s.contains(['/', '@']);
            (valid(pool) && valid(image) && snap.is_none_or(valid)).then(|| RbdSpec {
                pool: pool.to_string(),
                image: image.to_string(),
                snap: snap.map(str::to_string),
            })
        });
        match parsed {
            Some(spec) => Ok(Some(spec)),
            None => Err(format!(
                "'{text}' is not an RBD image: expected rbd:POOL/IMAGE[@SNAPSHOT]"
            )),
        }
    }

    /// The image, without snapshot: `rbd:POOL/IMAGE`. Backups record their
    /// source so, whichever snapshot they read, so that an incremental
    /// finds its parent.
    pub fn label(&self) -> String {
        format!("rbd:{}/{}", self.pool, self.image)
    }
}

impl std::fmt::Display for RbdSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.label())?;
        match &self.snap {
            Some(snap) => write!(f, "@{snap}"),
            None => Ok(()),
        }
    }
}

/// `backup.<backup_id>.snap.<unix time>`: the name of the snapshot a
/// backup takes of its source now, the time written as Python's
/// `str(time.time())` does (seconds, a point and up to six decimals,
/// trailing zeros dropped but one), as Cinder writes it.
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
    fn rbd_specs_parse_or_are_refused() {
        assert_eq!(RbdSpec::parse("vol.img").expect("path"), None);
        assert_eq!(RbdSpec::parse("./rbd:x/y").expect("path"), None);
        assert_eq!(
            RbdSpec::parse("rbd:volumes/vol-1").expect("rbd"),
            Some(RbdSpec {
                pool: "volumes".into(),
                image: "vol-1".into(),
                snap: None
            })
        );
        let spec = RbdSpec::parse("rbd:volumes/vol-1@s1")
            .expect("rbd")
            .expect("some");
        assert_eq!(spec.snap.as_deref(), Some("s1"));
        assert_eq!(spec.label(), "rbd:volumes/vol-1");
        assert_eq!(spec.to_string(), "rbd:volumes/vol-1@s1");
        for bad in [
            "rbd:",
            "rbd:vol",
            "rbd:/x",
            "rbd:p/",
            "rbd:p/x@",
            "rbd:p/x/y",
            "rbd:p/x@a@b",
        ] {
            let err = RbdSpec::parse(bad).expect_err(bad);
            assert!(err.contains("rbd:POOL/IMAGE"), "{bad}: {err}");
        }
    }

    #[test]
    fn snapshot_names_are_cinders() {
        let id: BackupId = "3052c307-119e-4f78-960e-972078aa15a8".parse().expect("id");
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
}
