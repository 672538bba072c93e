//! RBD images on the command line: `rbd:POOL/IMAGE[@SNAP]`, on the cluster
//! of `$CEPH_CONF` (default `/etc/ceph/ceph.conf`) as `$CEPH_USER`
//! (default `admin`).
//!
//! A backup reads a snapshot, never the live image: the one named, or else
//! one it takes, named as Cinder's Ceph driver names them,
//! `backup.<backup id>.snap.<unix time>`. An incremental backup of the same
//! image reads only what changed since its parent's snapshot, while that
//! snapshot is still on the image. After a successful backup the older
//! snapshots taken by Ember's backups of the image are removed (only the
//! newest is needed), as Cinder keeps only the latest.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};
use ember_ceph::{CephConfig, Image, IoCtx};
use ember_engine::{resolve_parent, ParentChoice};
use ember_repo::Repository;
use ember_types::BackupId;
use ember_volume::{RbdSource, RbdTarget, RestoreTarget, UnchangedSince, VolumeError};
use serde_json::json;

use crate::args::CreateArgs;
use crate::commands::{back_up, backup_request, parent_choice, print_backup, Context};
use crate::output;

/// What `rbd:` names.
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
    /// The image `arg` names if it starts with `rbd:` (a file whose name
    /// starts so can be given as `./rbd:…`); `None` for a path.
    pub fn from_arg(arg: &Path) -> anyhow::Result<Option<Self>> {
        let Some(spec) = arg.to_str().and_then(|s| s.strip_prefix("rbd:")) else {
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
            None => bail!(
                "'{}' is not an RBD image: expected rbd:POOL/IMAGE[@SNAPSHOT]",
                arg.display()
            ),
        }
    }

    /// How backups of the image record their source: `rbd:POOL/IMAGE`,
    /// whichever snapshot they read (so `--incremental` finds the parent).
    pub fn label(&self) -> String {
        format!("rbd:{}/{}", self.pool, self.image)
    }

    /// Connects to the cluster and opens the pool.
    fn connect(&self) -> anyhow::Result<IoCtx> {
        let conf = std::env::var_os("CEPH_CONF")
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "/etc/ceph/ceph.conf".into());
        let user = std::env::var("CEPH_USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "admin".into());
        Ok(CephConfig::new(conf, user, &self.pool).connect()?)
    }
}

/// The name of the snapshot backup `id` takes at `at` (Cinder's form, the
/// time in seconds with microseconds).
pub fn snapshot_name(id: &BackupId, at: DateTime<Utc>) -> String {
    format!(
        "backup.{id}.snap.{}.{:06}",
        at.timestamp(),
        at.timestamp_subsec_micros()
    )
}

/// The backup a snapshot named `backup.<id>.snap.<time>` was taken for.
pub fn snapshot_backup(name: &str) -> Option<BackupId> {
    let (id, _time) = name.strip_prefix("backup.")?.split_once(".snap.")?;
    id.parse().ok()
}

/// `ember backup create rbd:…`.
pub fn create(ctx: &Context, args: CreateArgs, spec: &RbdSpec) -> anyhow::Result<ExitCode> {
    let io = spec.connect()?;
    let image = Image::open(&io, &spec.image)?;
    let repo = ctx.repository(true)?;
    let id = BackupId::new_random();
    let mut request = backup_request(&args, spec.label(), parent_choice(&repo, &args)?);
    request.id = Some(id);
    // The parent is settled now, as the diff must be from its snapshot.
    let parent = resolve_parent(&repo, &request)?;
    request.parent = parent.map_or(ParentChoice::None, ParentChoice::Backup);
    let (snapshot, taken) = match &spec.snap {
        Some(snap) => (snap.clone(), false),
        None => {
            let name = snapshot_name(&id, Utc::now());
            image.snap_create(&name)?;
            (name, true)
        }
    };
    let base = parent.map(|parent| diff_base(&repo, &image, spec, parent, &snapshot));
    let read = || -> anyhow::Result<_> {
        let since = base.clone().and_then(Result::ok);
        let source = RbdSource::open(&io, &spec.image, &snapshot, since)?;
        let (info, seconds) = back_up(ctx, &repo, &source, &request)?;
        Ok((info, seconds, source.changed_bytes()))
    };
    let (info, seconds, changed_bytes) = match read() {
        Ok(done) => done,
        Err(error) => {
            if taken {
                if let Err(e) = image.snap_remove(&snapshot) {
                    eprintln!(
                        "ember: warning: the snapshot taken for the failed backup stays: {e}"
                    );
                }
            }
            return Err(error);
        }
    };
    let removed = if taken {
        prune_snapshots(&repo, &image, spec, &snapshot)
    } else {
        Vec::new()
    };

    let mut notes = vec![format!(
        "read snapshot {snapshot} of {}/{}{}",
        spec.pool,
        spec.image,
        if taken {
            " (taken for this backup)"
        } else {
            ""
        }
    )];
    match &base {
        Some(Ok(since)) => notes.push(format!(
            "RBD diff: {} changed since the parent's snapshot {}; only the chunks holding it were read",
            output::bytes(changed_bytes.unwrap_or_default()),
            since.snapshot
        )),
        Some(Err(why)) => notes.push(format!(
            "RBD diff not used: {why}; read the whole snapshot and compared it with the parent"
        )),
        None => {}
    }
    if !removed.is_empty() {
        notes.push(format!(
            "removed older backup snapshots: {}",
            removed.join(", ")
        ));
    }
    let rbd = json!({
        "snapshot": snapshot,
        "snapshot_taken": taken,
        "diff_from": base.as_ref().and_then(|b| b.as_ref().ok()).map(|s| &s.snapshot),
        "diff_not_used": base.as_ref().and_then(|b| b.as_ref().err()),
        "removed_snapshots": removed,
    });
    print_backup(ctx, &info, seconds, rbd, &notes);
    Ok(ExitCode::SUCCESS)
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
        .find(|s| snapshot_backup(&s.name) == Some(parent))
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

/// Removes the snapshots that Ember's earlier backups of the image took,
/// keeping `newest`; returns their names. Failures are warnings: the
/// backup is done.
fn prune_snapshots(repo: &Repository, image: &Image, spec: &RbdSpec, newest: &str) -> Vec<String> {
    let older = match older_snapshots(repo, image, spec, newest) {
        Ok(older) => older,
        Err(e) => {
            eprintln!("ember: warning: older backup snapshots not removed: {e}");
            return Vec::new();
        }
    };
    older
        .into_iter()
        .filter(|name| match image.snap_remove(name) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("ember: warning: older backup snapshot not removed: {e}");
                false
            }
        })
        .collect()
}

/// The image's snapshots other than `newest` named after a backup of this
/// repository taken from this image: those Ember took. (Snapshots of
/// Cinder's backups, or of deleted backups, are left alone.)
fn older_snapshots(
    repo: &Repository,
    image: &Image,
    spec: &RbdSpec,
    newest: &str,
) -> anyhow::Result<Vec<String>> {
    let backups = repo.list_backups()?.backups;
    let label = spec.label();
    let ours = |id: BackupId| backups.iter().any(|b| b.id == id && b.source == label);
    Ok(image
        .snap_list()?
        .into_iter()
        .filter(|s| s.name != newest && snapshot_backup(&s.name).is_some_and(ours))
        .map(|s| s.name)
        .collect())
}

/// The image to restore `data_size` bytes into: the existing one (at least
/// that large), or else a new one of that size.
pub fn restore_target(spec: &RbdSpec, data_size: u64) -> anyhow::Result<Box<dyn RestoreTarget>> {
    if let Some(snap) = &spec.snap {
        bail!(
            "cannot restore into snapshot {snap} of {}: name the image",
            spec.label()
        );
    }
    let io = spec.connect()?;
    let target = match RbdTarget::open_existing(&io, &spec.image, data_size) {
        Err(VolumeError::Ceph(e)) if e.is_not_found() => {
            RbdTarget::create(&io, &spec.image, data_size)
                .with_context(|| format!("create {}", spec.label()))?
        }
        other => other?,
    };
    Ok(Box::new(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rbd_arguments_parse_or_are_refused() {
        let parse = |s: &str| RbdSpec::from_arg(Path::new(s));
        assert_eq!(parse("vol.img").expect("path"), None);
        assert_eq!(parse("./rbd:x/y").expect("path"), None);
        assert_eq!(
            parse("rbd:volumes/vol-1").expect("rbd"),
            Some(RbdSpec {
                pool: "volumes".into(),
                image: "vol-1".into(),
                snap: None
            })
        );
        let spec = parse("rbd:volumes/vol-1@s1").expect("rbd").expect("some");
        assert_eq!(spec.snap.as_deref(), Some("s1"));
        assert_eq!(spec.label(), "rbd:volumes/vol-1");
        for bad in [
            "rbd:",
            "rbd:vol",
            "rbd:/x",
            "rbd:p/",
            "rbd:p/x@",
            "rbd:p/x/y",
            "rbd:p/x@a@b",
        ] {
            let err = parse(bad).expect_err(bad).to_string();
            assert!(err.contains("rbd:POOL/IMAGE"), "{bad}: {err}");
        }
    }

    #[test]
    fn snapshot_names_follow_cinder_and_name_their_backup() {
        let id = BackupId::new_random();
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_000).expect("time");
        let name = snapshot_name(&id, at);
        assert_eq!(name, format!("backup.{id}.snap.1700000000.123456"));
        assert_eq!(snapshot_backup(&name), Some(id));
        assert_eq!(snapshot_backup("backup.nope.snap.1"), None);
        assert_eq!(snapshot_backup("mine"), None);
        assert_eq!(snapshot_backup(&format!("backup.{id}.1")), None);
    }
}
