//! Verification: read back chunks and prove them against their digests.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crossbeam_channel::{bounded, Receiver};
use ember_format::ChunkDecoder;
use ember_repo::{RepoError, Repository};
use ember_store::ObjectKind;
use ember_types::{BackupId, ChunkDigest};
use serde::Serialize;

use crate::{EngineError, Progress, Tuning};

/// Digests handed to a verify worker at once.
const VERIFY_BATCH: usize = 64;

/// What to verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyScope {
    /// Every manifest and every stored chunk, referenced or not.
    All,
    /// One backup's manifest and chunks.
    Backup(BackupId),
}

/// What is wrong with a chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkProblem {
    /// Not in the repository.
    Missing,
    /// Present but fails its checks (the reason).
    Damaged(String),
}

/// A chunk that failed verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BadChunk {
    /// The chunk.
    pub digest: ChunkDigest,
    /// What is wrong.
    pub problem: ChunkProblem,
}

/// A backup that cannot be restored intact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AffectedBackup {
    /// The backup.
    pub id: BackupId,
    /// Why: its manifest is damaged, or how many of its chunk entries are bad.
    pub reason: String,
}

/// The outcome of a verification.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Manifests read.
    pub backups_checked: u64,
    /// Distinct chunks read and proven (or found bad).
    pub chunks_checked: u64,
    /// Chunks missing or damaged.
    pub bad_chunks: Vec<BadChunk>,
    /// Backups that cannot be restored intact, with why.
    pub affected_backups: Vec<AffectedBackup>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.bad_chunks.is_empty() && self.affected_backups.is_empty()
    }
}

/// Reads every chunk in `scope` (each distinct chunk once), decompresses it
/// and checks its SHA-256, and reports what is missing or damaged and which
/// backups that affects. Memory grows with the number of distinct chunks
/// (one digest each).
pub fn run_verify(
    repo: &Repository,
    scope: VerifyScope,
    tuning: Tuning,
    progress: &Progress,
) -> Result<VerifyReport, EngineError> {
    let ids = match scope {
        VerifyScope::All => repo.backup_ids()?,
        VerifyScope::Backup(id) => {
            repo.backup_info(&id)?;
            vec![id]
        }
    };
    let mut report = VerifyReport::default();
    let mut damaged_manifests = Vec::new();
    let bad: Mutex<HashMap<ChunkDigest, ChunkProblem>> = Mutex::new(HashMap::new());
    let mut seen: HashSet<ChunkDigest> = HashSet::new();
    let (work_tx, work_rx) = bounded::<Vec<ChunkDigest>>(tuning.queue_depth());

    std::thread::scope(|threads| -> Result<(), EngineError> {
        for _ in 0..tuning.threads.max(1) {
            let (work_rx, bad) = (work_rx.clone(), &bad);
            threads.spawn(move || verify_worker(repo, &work_rx, bad, progress));
        }
        drop(work_rx);
        let mut batch = Vec::with_capacity(VERIFY_BATCH);
        let mut queue = |digest: ChunkDigest, batch: &mut Vec<ChunkDigest>| {
            if digest.is_zero_chunk() || !seen.insert(digest) {
                return;
            }
            progress.set_total(seen.len() as u64);
            batch.push(digest);
            if batch.len() == VERIFY_BATCH {
                let _ = work_tx.send(std::mem::replace(batch, Vec::with_capacity(VERIFY_BATCH)));
            }
        };
        for id in &ids {
            let mut entries = match repo.open_entries(id) {
                Ok(entries) => entries,
                Err(RepoError::BackupNotFound(_)) => continue,
                Err(e @ RepoError::DamagedManifest { .. }) => {
                    damaged_manifests.push((*id, e.to_string()));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            report.backups_checked += 1;
            loop {
                match entries.next_digest() {
                    Ok(Some(digest)) => queue(digest, &mut batch),
                    Ok(None) => break,
                    Err(e) => {
                        damaged_manifests.push((*id, e.to_string()));
                        break;
                    }
                }
            }
        }
        if scope == VerifyScope::All {
            let mut stored = Vec::new();
            repo.store().list(ObjectKind::Chunk, &mut |meta| {
                if let Ok(digest) = meta.name.parse::<ChunkDigest>() {
                    stored.push(digest);
                }
                Ok(())
            })?;
            for digest in stored {
                queue(digest, &mut batch);
            }
        }
        if !batch.is_empty() {
            let _ = work_tx.send(batch);
        }
        drop(work_tx);
        Ok(())
    })?;

    report.chunks_checked = seen.len() as u64;
    let bad = bad.into_inner().unwrap_or_else(|p| p.into_inner());
    for (id, reason) in damaged_manifests {
        report.affected_backups.push(AffectedBackup {
            id,
            reason: format!("manifest damaged: {reason}"),
        });
    }
    if !bad.is_empty() {
        for id in &ids {
            let Ok(mut entries) = repo.open_entries(id) else {
                continue;
            };
            let mut count = 0u64;
            while let Ok(Some(digest)) = entries.next_digest() {
                count += u64::from(bad.contains_key(&digest));
            }
            if count > 0 {
                report.affected_backups.push(AffectedBackup {
                    id: *id,
                    reason: format!("{count} chunk entries missing or damaged"),
                });
            }
        }
    }
    let mut bad: Vec<BadChunk> = bad
        .into_iter()
        .map(|(digest, problem)| BadChunk { digest, problem })
        .collect();
    bad.sort_by_key(|b| b.digest);
    report.bad_chunks = bad;
    Ok(report)
}

fn verify_worker(
    repo: &Repository,
    work_rx: &Receiver<Vec<ChunkDigest>>,
    bad: &Mutex<HashMap<ChunkDigest, ChunkProblem>>,
    progress: &Progress,
) {
    let mut plain = Vec::new();
    let mut decoder = ChunkDecoder::new();
    for batch in work_rx {
        for digest in batch {
            let read = match decoder.as_mut() {
                Ok(decoder) => repo.read_chunk(&digest, decoder, &mut plain),
                Err(e) => Err(RepoError::Store(ember_store::StoreError::io(
                    "start a decoder",
                    std::io::Error::new(e.kind(), e.to_string()),
                ))),
            };
            let problem = match read {
                Ok(()) => None,
                Err(RepoError::MissingChunk(_)) => Some(ChunkProblem::Missing),
                Err(RepoError::DamagedChunk { source, .. }) => {
                    Some(ChunkProblem::Damaged(source.to_string()))
                }
                Err(other) => Some(ChunkProblem::Damaged(format!("cannot be read: {other}"))),
            };
            if let Some(problem) = problem {
                bad.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(digest, problem);
            }
            progress.advance(1);
        }
    }
}
