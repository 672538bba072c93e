//! RBD images on the command line: `rbd:POOL/IMAGE[@SNAP]`, on the cluster
//! of `$CEPH_CONF` (default `/etc/ceph/ceph.conf`) as `$CEPH_USER`
//! (default `admin`). Which snapshot a backup reads and which it removes
//! afterwards is [`RbdBackupPlan`]'s business (shared with the service).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use ember_ceph::{CephConfig, Image, IoCtx};
use ember_engine::{remove_backup_snapshots, resolve_parent, ParentChoice, RbdBackupPlan};
use ember_types::BackupId;
use ember_volume::{RbdSpec, RbdTarget, RestoreTarget, VolumeError};
use serde_json::json;

use crate::args::CreateArgs;
use crate::commands::{back_up, backup_request, parent_choice, print_backup, Context};
use crate::output;

/// The image `arg` names if it starts with `rbd:` (a file whose name
/// starts so can be given as `./rbd:…`); `None` for a path.
pub fn spec_of(arg: &Path) -> anyhow::Result<Option<RbdSpec>> {
    match arg.to_str() {
        Some(text) => RbdSpec::parse(text).map_err(anyhow::Error::msg),
        None => Ok(None),
    }
}

/// Connects to the cluster and opens the pool of `spec`.
fn connect(spec: &RbdSpec) -> anyhow::Result<IoCtx> {
    let conf = std::env::var_os("CEPH_CONF")
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "/etc/ceph/ceph.conf".into());
    let user = std::env::var("CEPH_USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "admin".into());
    Ok(CephConfig::new(conf, user, &spec.pool).connect()?)
}

/// `ember backup create rbd:…`.
pub fn create(ctx: &Context, args: CreateArgs, spec: &RbdSpec) -> anyhow::Result<ExitCode> {
    let io = connect(spec)?;
    let image = Image::open(&io, &spec.image)?;
    let repo = ctx.repository(true)?;
    let id = BackupId::new_random();
    let mut request = backup_request(&args, spec.label(), parent_choice(&repo, &args)?);
    request.id = Some(id);
    // The parent is settled now, as the diff must be from its snapshot.
    let parent = resolve_parent(&repo, &request)?;
    request.parent = parent.map_or(ParentChoice::None, ParentChoice::Backup);
    let plan = RbdBackupPlan::prepare(&repo, &image, spec, id, parent)?;
    let read = || -> anyhow::Result<_> {
        let source = plan.open_source(&io, spec)?;
        let (info, seconds) = back_up(ctx, &repo, &source, &request)?;
        Ok((info, seconds, source.changed_bytes()))
    };
    let (info, seconds, changed_bytes) = match read() {
        Ok(done) => done,
        Err(error) => {
            if let Err(e) = plan.abandon(&image) {
                eprintln!("ember: warning: the snapshot taken for the failed backup stays: {e}");
            }
            return Err(error);
        }
    };
    let pruned = plan.prune_older(&repo, &image, spec);
    for warning in &pruned.warnings {
        eprintln!("ember: warning: {warning}");
    }
    let (snapshot, taken, base, removed) =
        (&plan.snapshot, plan.taken, &plan.diff_base, &pruned.removed);

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

/// After backup `id` of `source` is deleted: removes the snapshot it took
/// of its RBD image, if any (a snapshot that cannot be removed is a
/// warning: the backup is gone). Returns the names removed.
pub fn remove_source_snapshots(source: &str, id: &BackupId) -> Vec<String> {
    let Ok(Some(spec)) = RbdSpec::parse(source) else {
        return Vec::new();
    };
    let removed = connect(&spec).and_then(|io| Ok(remove_backup_snapshots(&io, &spec.image, id)?));
    removed.unwrap_or_else(|e| {
        eprintln!("ember: warning: the backup's snapshot of {source} stays: {e:#}");
        Vec::new()
    })
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
    let io = connect(spec)?;
    let target = match RbdTarget::open_existing(&io, &spec.image, data_size) {
        Err(VolumeError::Ceph(e)) if e.is_not_found() => {
            RbdTarget::create(&io, &spec.image, data_size)
                .with_context(|| format!("create {}", spec.label()))?
        }
        other => other?,
    };
    Ok(Box::new(target))
}
