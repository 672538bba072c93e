//! The deduplication index: which chunks are stored already, and where.
//!
//! Loaded when a backup starts from the indexes at the end of the
//! repository's packs (newest first) and extended with the chunks the
//! backup writes. Its size is capped (`capacity` entries, 44 bytes each),
//! so memory stays bounded however large the repository grows: past the
//! cap, a chunk that is stored already may be stored again. That costs
//! space, never correctness.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use ember_format::{ChunkLocation, PackId};
use ember_types::ChunkDigest;

use crate::{RepoError, Repository};

const UNTOUCHED: u8 = 0;
const TOUCHED: u8 = 1;
const GONE: u8 = 2;

/// One chunk stored before this backup started.
#[derive(Clone, Copy)]
struct Known {
    digest: ChunkDigest,
    pack: u32,
    offset: u32,
    len: u32,
}

/// Chunks a backup may reuse instead of storing them again.
pub struct DedupIndex {
    packs: Vec<PackId>,
    /// Per pack: whether this backup has touched it yet (see `find`).
    pack_state: Vec<AtomicU8>,
    /// Sorted by digest.
    known: Vec<Known>,
    fresh: Mutex<HashMap<ChunkDigest, ChunkLocation>>,
    fresh_room: usize,
    /// Packs whose index could not be read (left out).
    unreadable_packs: u64,
}

impl DedupIndex {
    /// Reads the index of every pack in `repo`, newest first, keeping at
    /// most `capacity` entries in all (including chunks added later).
    pub fn load(repo: &Repository, capacity: usize) -> Result<Self, RepoError> {
        let mut packs = repo.list_packs()?;
        packs.sort_by_key(|pack| std::cmp::Reverse(pack.modified));
        let mut index = DedupIndex {
            packs: Vec::new(),
            pack_state: Vec::new(),
            known: Vec::new(),
            fresh: Mutex::new(HashMap::new()),
            fresh_room: 0,
            unreadable_packs: 0,
        };
        for pack in packs {
            if index.known.len() >= capacity {
                break;
            }
            let entries = match repo.pack_index(&pack.id, pack.size) {
                Ok(entries) => entries,
                // Deleted meanwhile, or torn: nothing to reuse there.
                Err(RepoError::MissingPack(_) | RepoError::DamagedPack { .. }) => {
                    index.unreadable_packs += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let ordinal = index.packs.len() as u32;
            index.packs.push(pack.id);
            index.pack_state.push(AtomicU8::new(UNTOUCHED));
            let room = capacity - index.known.len();
            index
                .known
                .extend(entries.into_iter().take(room).map(|entry| Known {
                    digest: entry.digest,
                    pack: ordinal,
                    offset: entry.offset,
                    len: entry.len,
                }));
        }
        index.known.sort_unstable_by_key(|k| k.digest);
        index.known.dedup_by_key(|k| k.digest);
        index.fresh_room = capacity.saturating_sub(index.known.len());
        Ok(index)
    }

    /// Chunks indexed so far.
    pub fn len(&self) -> usize {
        self.known.len() + self.lock_fresh().len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Packs left out because their index could not be read.
    pub fn unreadable_packs(&self) -> u64 {
        self.unreadable_packs
    }

    /// Where a stored copy of `digest` is, if one is known. A pack found
    /// this way is touched (once per backup) before it is relied on, so a
    /// concurrent garbage collection keeps it; a pack collected already
    /// counts as absent.
    pub fn find(
        &self,
        repo: &Repository,
        digest: &ChunkDigest,
    ) -> Result<Option<ChunkLocation>, RepoError> {
        if let Some(location) = self.lock_fresh().get(digest) {
            return Ok(Some(*location));
        }
        let Ok(at) = self.known.binary_search_by_key(digest, |k| k.digest) else {
            return Ok(None);
        };
        let known = self.known[at];
        let state = &self.pack_state[known.pack as usize];
        let pack = self.packs[known.pack as usize];
        if state.load(Ordering::Acquire) == UNTOUCHED {
            let kept = repo.touch_pack(&pack)?;
            state.store(if kept { TOUCHED } else { GONE }, Ordering::Release);
        }
        if state.load(Ordering::Acquire) == GONE {
            return Ok(None);
        }
        Ok(Some(ChunkLocation {
            pack,
            offset: known.offset,
            len: known.len,
        }))
    }

    /// Records a chunk this backup has just written (while there is room).
    pub fn insert(&self, digest: ChunkDigest, location: ChunkLocation) {
        let mut fresh = self.lock_fresh();
        if fresh.len() < self.fresh_room {
            fresh.insert(digest, location);
        }
    }

    fn lock_fresh(&self) -> std::sync::MutexGuard<'_, HashMap<ChunkDigest, ChunkLocation>> {
        self.fresh.lock().unwrap_or_else(|p| p.into_inner())
    }
}
