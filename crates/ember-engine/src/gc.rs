//! Garbage collection: remove packs that no backup references.
//!
//! Safe beside running backups (the argument is in docs/format.md):
//! 1. note the time `t0` and the running writers; the cutoff is the
//!    earliest of `t0` and their start times, minus the grace period;
//! 2. mark every pack named by every committed manifest;
//! 3. look at the running writers again: the parent of each must exist
//!    (and is marked), else gc refuses to run;
//! 4. delete unmarked packs last written or touched before the cutoff,
//!    through the store's race-free conditional delete (a backup touches a
//!    pack before it reuses a chunk from it).
//!
//! A pack some of whose chunks are still referenced is kept whole.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use ember_format::PackId;
use ember_repo::{RepoError, Repository, WriterInfo};
use ember_types::BackupId;
use serde::Serialize;

use crate::{EngineError, Progress};

/// What garbage collection found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Backups whose packs were kept.
    pub backups: u64,
    /// Distinct packs referenced by them.
    pub packs_in_use: u64,
    /// Unreferenced packs removed (or, in a dry run, that would be).
    pub packs_removed: u64,
    /// Bytes those packs took.
    pub bytes_removed: u64,
    /// Unreferenced packs kept because they are newer than the cutoff
    /// (a running or very recent backup may use them).
    pub packs_kept_recent: u64,
    /// Leftovers of interrupted writes removed.
    pub temporaries_removed: u64,
    /// Whether nothing was removed on purpose.
    pub dry_run: bool,
}

/// Removes unreferenced packs older than the cutoff (see the module docs).
pub fn run_gc(
    repo: &Repository,
    grace: Duration,
    dry_run: bool,
    progress: &Progress,
) -> Result<GcReport, EngineError> {
    let t0 = SystemTime::now();
    let writers_before = repo.live_writers()?;
    let oldest_writer = writers_before
        .iter()
        .map(|w| SystemTime::from(w.started_at))
        .min()
        .unwrap_or(t0);
    let cutoff = t0
        .min(oldest_writer)
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);

    let mut report = GcReport {
        dry_run,
        ..GcReport::default()
    };
    let mut marked: HashSet<PackId> = HashSet::new();
    let mut marked_backups: HashSet<BackupId> = HashSet::new();
    for id in repo.backup_ids()? {
        if mark_backup(repo, &id, &mut marked)? {
            marked_backups.insert(id);
        }
    }
    let mut writers: HashMap<BackupId, WriterInfo> = HashMap::new();
    for writer in writers_before.into_iter().chain(repo.live_writers()?) {
        writers.insert(writer.backup, writer);
    }
    for writer in writers.values() {
        let Some(parent) = writer.parent else {
            continue;
        };
        if marked_backups.contains(&parent) {
            continue;
        }
        if !mark_backup(repo, &parent, &mut marked)? {
            return Err(EngineError::GcRefused(format!(
                "backup {} is running on top of backup {parent}, which was deleted meanwhile; \
                 run gc again once that backup has ended",
                writer.backup
            )));
        }
        marked_backups.insert(parent);
    }
    report.backups = marked_backups.len() as u64;
    report.packs_in_use = marked.len() as u64;

    let mut candidates = Vec::new();
    for pack in repo.list_packs()? {
        if marked.contains(&pack.id) {
            continue;
        }
        if pack.modified >= cutoff {
            report.packs_kept_recent += 1;
        } else {
            candidates.push(pack);
        }
    }
    progress.set_total(candidates.len() as u64);
    for pack in candidates {
        let removed = dry_run || repo.delete_pack_if_untouched_since(&pack.id, cutoff)?;
        if removed {
            report.packs_removed += 1;
            report.bytes_removed += pack.size;
        } else {
            report.packs_kept_recent += 1;
        }
        progress.advance(1);
    }
    if !dry_run {
        let store = repo.store();
        report.temporaries_removed = store.remove_stale_temporaries(cutoff)?;
        store.sync()?;
    }
    Ok(report)
}

/// Marks every pack backup `id` uses; `false` if the backup does not exist.
/// A damaged manifest stops gc: it cannot tell which packs that backup needs.
fn mark_backup(
    repo: &Repository,
    id: &BackupId,
    marked: &mut HashSet<PackId>,
) -> Result<bool, EngineError> {
    let refuse = |e: RepoError| {
        EngineError::GcRefused(format!(
            "{e}; gc cannot tell which packs that backup needs (run `ember repo verify`, then delete or repair it)"
        ))
    };
    let mut entries = match repo.open_entries(id) {
        Ok(entries) => entries,
        Err(RepoError::BackupNotFound(_)) => return Ok(false),
        Err(e @ RepoError::DamagedManifest { .. }) => return Err(refuse(e)),
        Err(e) => return Err(e.into()),
    };
    loop {
        match entries.next_entry() {
            Ok(Some(entry)) => {
                if let Some(location) = entry.location {
                    marked.insert(location.pack);
                }
            }
            Ok(None) => return Ok(true),
            Err(e) => return Err(refuse(e)),
        }
    }
}
