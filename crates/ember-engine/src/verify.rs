//! Verification: read back every frame and prove it against its digest,
//! then check that every manifest entry names a sound frame.
//!
//! 1. Every pack in scope is read whole; its index is checked and each
//!    frame is decoded and hashed (workers in parallel, one pack each).
//! 2. Every manifest in scope is streamed; each data entry must name a pack
//!    that exists, a frame that passed step 1, with the entry's digest and
//!    length in the pack's index.
//!
//! Memory: the list of packs, the problems found, and a few pack indexes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use crossbeam_channel::{bounded, Receiver};
use ember_format::pack::index_of_pack;
use ember_format::{ChunkDecoder, ChunkRef, PackId};
use ember_repo::{RepoError, Repository};
use ember_types::{BackupId, ChunkDigest};
use serde::Serialize;

use crate::{EngineError, Progress, Tuning};

/// Pack indexes kept for step 2 (each a few tens of KiB).
const INDEX_CACHE_PACKS: usize = 64;

/// What to verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyScope {
    /// Every manifest and every stored pack, referenced or not.
    All,
    /// One backup's manifest and the packs it uses.
    Backup(BackupId),
}

/// What is wrong with a chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkProblem {
    /// Not in the repository (its pack is gone).
    Missing,
    /// Present but fails its checks (the reason).
    Damaged(String),
}

/// A chunk that failed verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BadChunk {
    /// The chunk.
    pub digest: ChunkDigest,
    /// The pack that should hold it.
    pub pack: String,
    /// Offset of its frame in that pack.
    pub offset: u32,
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
    /// Packs read.
    pub packs_checked: u64,
    /// Chunk frames read and proven (or found bad).
    pub chunks_checked: u64,
    /// Chunks referenced by a backup that are missing or damaged.
    pub bad_chunks: Vec<BadChunk>,
    /// Damaged chunks no backup references (left by an interrupted backup,
    /// or no longer needed; harmless).
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

/// Where a frame is: (pack, offset).
type FrameKey = (PackId, u32);

/// What step 1 found.
#[derive(Default)]
struct PackFindings {
    /// Packs whose index cannot be read, with why.
    unreadable: HashMap<PackId, String>,
    /// Frames that fail their checks.
    bad_frames: HashMap<FrameKey, (ChunkDigest, String)>,
    frames_checked: u64,
}

/// Verifies the packs and manifests in `scope` and reports what is missing
/// or damaged and which backups that affects.
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
    let stored: HashMap<PackId, u64> = repo
        .list_packs()?
        .into_iter()
        .map(|pack| (pack.id, pack.size))
        .collect();
    let mut packs: Vec<(PackId, u64)> = match scope {
        VerifyScope::All => stored.iter().map(|(id, size)| (*id, *size)).collect(),
        VerifyScope::Backup(id) => packs_of(repo, &id)?
            .into_iter()
            .filter_map(|pack| stored.get(&pack).map(|size| (pack, *size)))
            .collect(),
    };
    packs.sort();
    let findings = check_packs(repo, &packs, tuning, progress);

    let mut report = VerifyReport {
        packs_checked: packs.len() as u64,
        chunks_checked: findings.frames_checked,
        ..VerifyReport::default()
    };
    let mut referenced_bad: BTreeMap<FrameKey, BadChunk> = BTreeMap::new();
    let mut indexes = IndexCache::default();
    for id in &ids {
        let mut entries = match repo.open_entries(id) {
            Ok(entries) => entries,
            Err(RepoError::BackupNotFound(_)) => continue,
            Err(e @ RepoError::DamagedManifest { .. }) => {
                report.affected_backups.push(AffectedBackup {
                    id: *id,
                    reason: format!("manifest damaged: {e}"),
                });
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        report.backups_checked += 1;
        let mut bad_entries = 0u64;
        loop {
            let entry = match entries.next_entry() {
                Ok(Some(entry)) => entry,
                Ok(None) => break,
                Err(e) => {
                    report.affected_backups.push(AffectedBackup {
                        id: *id,
                        reason: format!("manifest damaged: {e}"),
                    });
                    break;
                }
            };
            if let Some(bad) = check_entry(repo, &entry, &stored, &findings, &mut indexes)? {
                bad_entries += 1;
                referenced_bad.entry((bad.0, bad.1.offset)).or_insert(bad.1);
            }
        }
        if bad_entries > 0 {
            report.affected_backups.push(AffectedBackup {
                id: *id,
                reason: format!("{bad_entries} chunk entries missing or damaged"),
            });
        }
    }
    for ((pack, offset), (digest, reason)) in findings.bad_frames {
        if !referenced_bad.contains_key(&(pack, offset)) && scope == VerifyScope::All {
            report.bad_unreferenced_chunks.push(BadChunk {
                digest,
                pack: pack.to_string(),
                offset,
                problem: ChunkProblem::Damaged(reason),
            });
        }
    }
    report.bad_chunks = referenced_bad.into_values().collect();
    report
        .bad_unreferenced_chunks
        .sort_by(|a, b| (&a.pack, a.offset).cmp(&(&b.pack, b.offset)));
    Ok(report)
}

/// The packs backup `id` uses.
fn packs_of(repo: &Repository, id: &BackupId) -> Result<HashSet<PackId>, EngineError> {
    let mut packs = HashSet::new();
    let mut entries = match repo.open_entries(id) {
        Ok(entries) => entries,
        // Reported in step 2.
        Err(RepoError::DamagedManifest { .. }) => return Ok(packs),
        Err(e) => return Err(e.into()),
    };
    while let Ok(Some(entry)) = entries.next_entry() {
        if let Some(location) = entry.location {
            packs.insert(location.pack);
        }
    }
    Ok(packs)
}

/// Step 1: reads and checks every pack, `threads` at a time.
fn check_packs(
    repo: &Repository,
    packs: &[(PackId, u64)],
    tuning: Tuning,
    progress: &Progress,
) -> PackFindings {
    progress.set_total(packs.iter().map(|(_, size)| size).sum());
    let findings = Mutex::new(PackFindings::default());
    let (work_tx, work_rx) = bounded::<(PackId, u64)>(tuning.threads.max(1));
    std::thread::scope(|threads| {
        for _ in 0..tuning.threads.max(1) {
            let (work_rx, findings) = (work_rx.clone(), &findings);
            threads.spawn(move || pack_worker(repo, &work_rx, findings, progress));
        }
        drop(work_rx);
        for pack in packs {
            // Fails only if every worker is gone, which only a panic does.
            let _ = work_tx.send(*pack);
        }
        drop(work_tx);
    });
    findings.into_inner().unwrap_or_else(|p| p.into_inner())
}

fn pack_worker(
    repo: &Repository,
    work_rx: &Receiver<(PackId, u64)>,
    findings: &Mutex<PackFindings>,
    progress: &Progress,
) {
    let mut decoder = ChunkDecoder::new();
    let mut plain = Vec::new();
    for (pack, size) in work_rx {
        let outcome = match decoder.as_mut() {
            Ok(decoder) => check_pack(repo, &pack, decoder, &mut plain),
            Err(e) => Err(format!("cannot start a decoder: {e}")),
        };
        let mut found = findings.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok((checked, bad)) => {
                found.frames_checked += checked;
                for (offset, digest, reason) in bad {
                    found.bad_frames.insert((pack, offset), (digest, reason));
                }
            }
            Err(reason) => {
                found.unreadable.insert(pack, reason);
            }
        }
        progress.advance(size);
    }
}

/// A frame that fails its checks: its offset, its chunk and why.
type BadFrame = (u32, ChunkDigest, String);

/// Reads pack `pack` and decodes every frame; returns how many frames it
/// checked and the bad ones, or why the pack as a whole cannot be read.
fn check_pack(
    repo: &Repository,
    pack: &PackId,
    decoder: &mut ChunkDecoder,
    plain: &mut Vec<u8>,
) -> Result<(u64, Vec<BadFrame>), String> {
    let bytes = repo.read_pack(pack).map_err(|e| e.to_string())?;
    let index = index_of_pack(&bytes).map_err(|e| e.to_string())?;
    let mut bad = Vec::new();
    for entry in &index {
        let frame = &bytes[entry.offset as usize..(entry.offset + entry.len) as usize];
        if let Err(e) = decoder.decode_into(frame, &entry.digest, plain) {
            bad.push((entry.offset, entry.digest, e.to_string()));
        }
    }
    Ok((index.len() as u64, bad))
}

/// Step 2 for one entry: what is wrong with the chunk it names, if anything.
fn check_entry(
    repo: &Repository,
    entry: &ChunkRef,
    stored: &HashMap<PackId, u64>,
    findings: &PackFindings,
    indexes: &mut IndexCache,
) -> Result<Option<(PackId, BadChunk)>, EngineError> {
    let Some(location) = entry.location else {
        return Ok(None);
    };
    let bad = |problem| {
        Some((
            location.pack,
            BadChunk {
                digest: entry.digest,
                pack: location.pack.to_string(),
                offset: location.offset,
                problem,
            },
        ))
    };
    let Some(size) = stored.get(&location.pack) else {
        return Ok(bad(ChunkProblem::Missing));
    };
    if let Some(reason) = findings.unreadable.get(&location.pack) {
        return Ok(bad(ChunkProblem::Damaged(reason.clone())));
    }
    if let Some((_, reason)) = findings.bad_frames.get(&(location.pack, location.offset)) {
        return Ok(bad(ChunkProblem::Damaged(reason.clone())));
    }
    let index = indexes.get(repo, &location.pack, *size)?;
    match index.get(&location.offset) {
        Some(&(len, digest)) if len == location.len && digest == entry.digest => Ok(None),
        _ => Ok(bad(ChunkProblem::Damaged(
            "the pack holds no such frame at that offset".into(),
        ))),
    }
}

/// The indexes of the packs step 2 looked at last: offset → (length, digest).
#[derive(Default)]
struct IndexCache {
    packs: HashMap<PackId, HashMap<u32, (u32, ChunkDigest)>>,
}

impl IndexCache {
    fn get(
        &mut self,
        repo: &Repository,
        pack: &PackId,
        size: u64,
    ) -> Result<&HashMap<u32, (u32, ChunkDigest)>, EngineError> {
        if !self.packs.contains_key(pack) {
            if self.packs.len() >= INDEX_CACHE_PACKS {
                self.packs.clear();
            }
            let index = match repo.pack_index(pack, size) {
                Ok(index) => index,
                // Read and judged in step 1; gone or damaged since.
                Err(RepoError::MissingPack(_) | RepoError::DamagedPack { .. }) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            let by_offset = index
                .into_iter()
                .map(|e| (e.offset, (e.len, e.digest)))
                .collect();
            self.packs.insert(*pack, by_offset);
        }
        Ok(&self.packs[pack])
    }
}
