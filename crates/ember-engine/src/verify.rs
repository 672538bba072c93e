//! Verification: read back chunks and prove them against their digests.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crossbeam_channel::{bounded, Receiver, Sender};
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
    /// Chunks referenced by a backup that are missing or damaged.
    pub bad_chunks: Vec<BadChunk>,
    /// Damaged chunks no backup references (left by an interrupted backup;
    /// harmless, `repo gc` removes them).
    pub bad_unreferenced_chunks: Vec<BadChunk>,
    /// Backups that cannot be restored intact, with why.
    pub affected_backups: Vec<AffectedBackup>,
}

impl VerifyReport {
    /// Whether every backup can be restored intact.
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
    let mut referenced: HashSet<ChunkDigest> = HashSet::new();
    let mut unreferenced: HashSet<ChunkDigest> = HashSet::new();
    let (work_tx, work_rx) = bounded::<Vec<ChunkDigest>>(tuning.queue_depth());

    std::thread::scope(|threads| -> Result<(), EngineError> {
        for _ in 0..tuning.threads.max(1) {
            let (work_rx, bad) = (work_rx.clone(), &bad);
            threads.spawn(move || verify_worker(repo, &work_rx, bad, progress));
        }
        drop(work_rx);
        let mut feeder = Feeder {
            work_tx,
            batch: Vec::with_capacity(VERIFY_BATCH),
            queued: 0,
            progress,
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
                    Ok(Some(digest)) if !digest.is_zero_chunk() && referenced.insert(digest) => {
                        feeder.queue(digest)
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        damaged_manifests.push((*id, e.to_string()));
                        break;
                    }
                }
            }
        }
        if scope == VerifyScope::All {
            repo.store().list(ObjectKind::Chunk, &mut |meta| {
                if let Ok(digest) = meta.name.parse::<ChunkDigest>() {
                    if !referenced.contains(&digest) {
                        unreferenced.insert(digest);
                    }
                }
                Ok(())
            })?;
            for digest in &unreferenced {
                feeder.queue(*digest);
            }
        }
        feeder.flush();
        Ok(())
    })?;

    report.chunks_checked = (referenced.len() + unreferenced.len()) as u64;
    let bad = bad.into_inner().unwrap_or_else(|p| p.into_inner());
    for (id, reason) in damaged_manifests {
        report.affected_backups.push(AffectedBackup {
            id,
            reason: format!("manifest damaged: {reason}"),
        });
    }
    if bad.keys().any(|digest| referenced.contains(digest)) {
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
    for (digest, problem) in bad {
        let list = if referenced.contains(&digest) {
            &mut report.bad_chunks
        } else {
            &mut report.bad_unreferenced_chunks
        };
        list.push(BadChunk { digest, problem });
    }
    report.bad_chunks.sort_by_key(|b| b.digest);
    report.bad_unreferenced_chunks.sort_by_key(|b| b.digest);
    Ok(report)
}

/// Hands digests to the verify workers in batches.
struct Feeder<'a> {
    work_tx: Sender<Vec<ChunkDigest>>,
    batch: Vec<ChunkDigest>,
    queued: u64,
    progress: &'a Progress,
}

impl Feeder<'_> {
    fn queue(&mut self, digest: ChunkDigest) {
        self.queued += 1;
        self.progress.set_total(self.queued);
        self.batch.push(digest);
        if self.batch.len() == VERIFY_BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.batch.is_empty() {
            let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(VERIFY_BATCH));
            // Fails only if every worker is gone, which only a panic does.
            let _ = self.work_tx.send(batch);
        }
    }
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
