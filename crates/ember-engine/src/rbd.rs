//! Backing up an RBD image into the repository: which snapshot to read,
//! which older snapshot to diff from, and which to remove afterwards.
//!
//! A backup reads a snapshot, never the live image: the one named, or else
//! one it takes, named as Cinder's Ceph driver names them
//! (`backup.<backup id>.snap.<unix time>`). An incremental backup of the
//! same image reads only what changed since its parent's snapshot, while
//! that snapshot is still on the image. After a successful backup the
//! older snapshots taken by this repository's backups of the image are
//! removed (only the newest is needed), as Cinder keeps only the latest.
//! The command line and the service share these steps.

use ember_ceph::{CephError, Image, IoCtx};
use ember_repo::Repository;
use ember_types::BackupId;
use ember_volume::{new_snapshot_name, parse_snapshot_name, RbdSource, RbdSpec, UnchangedSince};

use crate::EngineError;

/// The snapshot a backup of an RBD image reads, and what it is compared with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RbdBackupPlan {
    /// The snapshot read.
    pub snapshot: String,
    /// Whether this backup took it (and removes it again if it fails).
    pub taken: bool,
    /// The parent's snapshot to diff from, or why none can be used;
    /// `None` without a parent.
    pub diff_base: Option<Result<UnchangedSince, String>>,
}

/// Older snapshots removed after a backup, and the removals that failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrunedSnapshots {
    /// Names of the snapshots removed.
    pub removed: Vec<String>,
    /// What could not be removed, and why (the backup is done regardless).
    pub warnings: Vec<String>,
}

impl RbdBackupPlan {
    /// Settles the snapshot backup `id` of `spec` reads (taking one unless
    /// `spec` names one) and, with a `parent`, the parent's snapshot to
    /// diff from.
    pub fn prepare(
        repo: &Repository,
        image: &Image,
        spec: &RbdSpec,
        id: BackupId,
        parent: Option<BackupId>,
    ) -> Result<Self, EngineError> {
        let (snapshot, taken) = match &spec.snap {
            Some(snap) => (snap.clone(), false),
            None => {
                let name = new_snapshot_name(&id);
                image
                    .snap_create(&name)
                    .map_err(ember_volume::VolumeError::from)?;
                (name, true)
            }
        };
        let diff_base = parent.map(|parent| diff_base(repo, image, spec, parent, &snapshot));
        Ok(RbdBackupPlan {
            snapshot,
            taken,
            diff_base,
        })
    }

    /// Opens the snapshot as the backup's source, diffing from the
    /// parent's snapshot when there is one to use.
    pub fn open_source(&self, io: &IoCtx, spec: &RbdSpec) -> Result<RbdSource, EngineError> {
        let since = self.diff_base.clone().and_then(Result::ok);
        Ok(RbdSource::open(io, &spec.image, &self.snapshot, since)?)
    }

    /// After a failed backup: removes the snapshot if this backup took it.
    pub fn abandon(&self, image: &Image) -> Result<(), CephError> {
        if self.taken {
            image.snap_remove(&self.snapshot)?;
        }
        Ok(())
    }

    /// After a successful backup that took its snapshot: removes the
    /// snapshots that earlier backups of this repository took of the
    /// image (snapshots of Cinder's backups, of deleted backups, or named
    /// by the user are left alone).
    pub fn prune_older(&self, repo: &Repository, image: &Image, spec: &RbdSpec) -> PrunedSnapshots {
        let mut pruned = PrunedSnapshots::default();
        if !self.taken {
            return pruned;
        }
        let older = match older_snapshots(repo, image, spec, &self.snapshot) {
            Ok(older) => older,
            Err(e) => {
                pruned
                    .warnings
                    .push(format!("older backup snapshots not removed: {e}"));
                return pruned;
            }
        };
        for name in older {
            match image.snap_remove(&name) {
                Ok(()) => pruned.removed.push(name),
                Err(e) => pruned
                    .warnings
                    .push(format!("older backup snapshot {name} not removed: {e}")),
            }
        }
        pruned
    }
}

/// Removes the snapshots backup `id` took of image `image` (when the
/// backup is deleted; an image or snapshot gone already is fine). Returns
/// their names.
pub fn remove_backup_snapshots(
    io: &IoCtx,
    image: &str,
    id: &BackupId,
) -> Result<Vec<String>, CephError> {
    let image = match Image::open(io, image) {
        Ok(image) => image,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    for snap in image.snap_list()? {
        if parse_snapshot_name(&snap.name) == Some(*id) {
            match image.snap_remove(&snap.name) {
                Err(e) if !e.is_not_found() => return Err(e),
                _ => removed.push(snap.name),
            }
        }
    }
    Ok(removed)
}

/// The parent's snapshot to diff from, or why there is none to use.
fn diff_base(
    repo: &Repository,
    image: &Image,
    spec: &RbdSpec,
    parent: BackupId,
    snapshot: &str,
) -> Result<UnchangedSince, String> {
    let label = spec.label();
    let parent_source = repo.backup_info(&parent).map_err(|e| e.to_string())?.source;
    if parent_source != label {
        return Err(format!(
            "the parent backup {parent} was taken from {parent_source}, not {label}"
        ));
    }
    let snaps = image.snap_list().map_err(|e| e.to_string())?;
    let Some(base) = snaps
        .iter()
        .find(|s| parse_snapshot_name(&s.name) == Some(parent))
    else {
        return Err(format!(
            "the parent's snapshot (backup.{parent}.snap.*) is no longer on {}/{}",
            spec.pool, spec.image
        ));
    };
    match snaps.iter().find(|s| s.name == snapshot) {
        Some(read) if base.id < read.id => Ok(UnchangedSince {
            snapshot: base.name.clone(),
            backup: parent,
        }),
        _ => Err(format!(
            "the parent's snapshot {} is not older than {snapshot}",
            base.name
        )),
    }
}

/// The image's snapshots other than `newest` named after a backup of this
/// repository taken from this image.
fn older_snapshots(
    repo: &Repository,
    image: &Image,
    spec: &RbdSpec,
    newest: &str,
) -> Result<Vec<String>, EngineError> {
    let backups = repo.list_backups()?.backups;
    let label = spec.label();
    let ours = |id: BackupId| backups.iter().any(|b| b.id == id && b.source == label);
    Ok(image
        .snap_list()
        .map_err(ember_volume::VolumeError::from)?
        .into_iter()
        .filter(|s| s.name != newest && parse_snapshot_name(&s.name).is_some_and(ours))
        .map(|s| s.name)
        .collect())
}
