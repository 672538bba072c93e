//! The restore pipeline.
//!
//! ```text
//! manifest ──batches of entries──▶ workers (×threads): read the frames of
//!                                  consecutive chunks in one range read,
//!                                  check CRC, decompress, check SHA-256,
//!                                  write runs, zero holes (skipped on a
//!                                  fresh target)
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crossbeam_channel::{bounded, Receiver};
use ember_format::{ChunkDecoder, ChunkError, ChunkLocation, ChunkRef};
use ember_repo::{RepoError, Repository};
use ember_types::{AlignedBuf, BackupId};
use ember_volume::RestoreTarget;
use serde::Serialize;

use crate::{CancelToken, EngineError, Progress, Tuning};

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// The backup restored.
    pub backup: Option<BackupId>,
    /// Bytes of volume restored (the backup's volume size).
    pub volume_size: u64,
    /// Chunks fetched, verified and written.
    pub data_chunks: u64,
    /// Chunks of zeros (holes; not written to a fresh target).
    pub zero_chunks: u64,
}

/// Largest range of a pack read at once.
const MAX_READ: u64 = 4 << 20;

struct RestoreBatch {
    first_index: u64,
    entries: Vec<ChunkRef>,
}

/// Restores backup `id` into `target`, verifying every chunk against its
/// digest, then makes the target durable (a new volume appears only then).
/// On error the target is abandoned: a new volume is removed.
pub fn run_restore(
    repo: &Repository,
    id: &BackupId,
    target: Box<dyn RestoreTarget>,
    tuning: Tuning,
    progress: &Progress,
    cancel: &CancelToken,
) -> Result<RestoreReport, EngineError> {
    let mut entries = repo.open_entries(id)?;
    let info = entries.info().clone();
    if target.size() < info.volume_size {
        return Err(EngineError::Volume(ember_volume::VolumeError::TooSmall {
            target: target.label(),
            target_size: target.size(),
            needed: info.volume_size,
        }));
    }
    progress.set_total(info.volume_size);
    let per_batch = tuning.chunks_per_batch(info.chunk_size);
    let (work_tx, work_rx) = bounded::<RestoreBatch>(tuning.queue_depth());
    let failure: Mutex<Option<EngineError>> = Mutex::new(None);
    let abort = AtomicBool::new(false);
    let fail = |error: EngineError| {
        abort.store(true, Ordering::Relaxed);
        let mut slot = failure.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(error);
    };
    let job = Job {
        repo,
        info: &info,
        target: &*target,
        write_turn: Mutex::new(()),
        progress,
    };

    let counts = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..tuning.threads.max(1))
            .map(|_| {
                let work_rx = work_rx.clone();
                let (job, abort, fail) = (&job, &abort, &fail);
                scope.spawn(move || restore_worker(job, &work_rx, abort, fail))
            })
            .collect();
        drop(work_rx);
        let mut index = 0u64;
        'feed: while !abort.load(Ordering::Relaxed) {
            if cancel.is_cancelled() {
                fail(EngineError::Cancelled);
                break;
            }
            let mut batch = Vec::with_capacity(per_batch);
            while batch.len() < per_batch {
                match entries.next_entry() {
                    Ok(Some(entry)) => batch.push(entry),
                    Ok(None) => break,
                    Err(e) => {
                        fail(e.into());
                        break 'feed;
                    }
                }
            }
            if batch.is_empty() {
                break;
            }
            let count = batch.len() as u64;
            prefetch(repo, &batch);
            if work_tx
                .send(RestoreBatch {
                    first_index: index,
                    entries: batch,
                })
                .is_err()
            {
                break;
            }
            index += count;
        }
        drop(work_tx);
        let mut counts = (0u64, 0u64);
        for handle in workers {
            match handle.join() {
                Ok((data, zero)) => {
                    counts.0 += data;
                    counts.1 += zero;
                }
                Err(_) => fail(EngineError::WorkerPanicked),
            }
        }
        counts
    });
    if let Some(error) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(error);
    }
    target.finish()?;
    Ok(RestoreReport {
        backup: Some(*id),
        volume_size: info.volume_size,
        data_chunks: counts.0,
        zero_chunks: counts.1,
    })
}

/// What every restore worker shares.
struct Job<'a> {
    repo: &'a Repository,
    info: &'a ember_types::BackupInfo,
    target: &'a dyn RestoreTarget,
    /// Writes into one file take its inode lock, on which concurrent
    /// writers spin in the kernel; taking turns here parks them instead
    /// (measured: a fifth of restore CPU time went to that spinning).
    write_turn: Mutex<()>,
    progress: &'a Progress,
}

/// Restores batches until the feed ends; returns (data, zero) chunk counts.
fn restore_worker(
    job: &Job<'_>,
    work_rx: &Receiver<RestoreBatch>,
    abort: &AtomicBool,
    fail: &(dyn Fn(EngineError) + Sync),
) -> (u64, u64) {
    let decoder = match ChunkDecoder::new() {
        Ok(decoder) => decoder,
        Err(e) => {
            fail(EngineError::InvalidOption(format!("decompression: {e}")));
            return (0, 0);
        }
    };
    let mut scratch = Scratch {
        decoder,
        run: AlignedBuf::new(),
        frames: Vec::new(),
    };
    let mut counts = (0, 0);
    for batch in work_rx {
        if abort.load(Ordering::Relaxed) {
            break;
        }
        match restore_batch(job, &batch, &mut scratch) {
            Ok((data, zero)) => {
                counts.0 += data;
                counts.1 += zero;
            }
            Err(e) => {
                fail(e);
                break;
            }
        }
    }
    counts
}

/// A restore worker's buffers and decompressor, reused for every batch
/// (fresh buffers would cost a page fault per page on first touch).
struct Scratch {
    decoder: ChunkDecoder,
    /// Plaintext of a run of chunks, aligned for a direct write.
    run: AlignedBuf,
    /// Frames read from a pack.
    frames: Vec<u8>,
}

/// Writes one batch: each run of data chunks with one write, each run of
/// zero chunks with one zeroing call.
fn restore_batch(
    job: &Job<'_>,
    batch: &RestoreBatch,
    scratch: &mut Scratch,
) -> Result<(u64, u64), EngineError> {
    let chunk = u64::from(job.info.chunk_size);
    let size = job.info.volume_size;
    let entries = &batch.entries;
    let batch_start = batch.first_index * chunk;
    let batch_end = (batch_start + entries.len() as u64 * chunk).min(size);
    scratch.run.resize(entries.len() * chunk as usize);
    let run = scratch.run.as_mut_slice();
    let (mut data_chunks, mut zero_chunks) = (0, 0);
    let mut i = 0;
    while i < entries.len() {
        let hole = entries[i].is_hole();
        let run_start = batch_start + i as u64 * chunk;
        let first = i;
        while i < entries.len() && entries[i].is_hole() == hole {
            i += 1;
        }
        let run_end = (batch_start + i as u64 * chunk).min(batch_end);
        if hole {
            zero_chunks += (i - first) as u64;
        } else {
            let len = (run_end - run_start) as usize;
            fetch_run(
                job,
                batch.first_index + first as u64,
                &entries[first..i],
                &mut scratch.decoder,
                &mut scratch.frames,
                &mut run[..len],
            )?;
            data_chunks += (i - first) as u64;
        }
        let _turn = job.write_turn.lock().unwrap_or_else(|p| p.into_inner());
        if hole {
            job.target.zero(run_start, run_end - run_start)?;
        } else {
            job.target
                .write_at(&run[..(run_end - run_start) as usize], run_start)?;
        }
    }
    job.progress.advance(batch_end - batch_start);
    Ok((data_chunks, zero_chunks))
}

/// Fills `out` with the plaintext of consecutive data chunks, the first of
/// which is chunk `first_index` of the volume: frames that lie back to back
/// in one pack are read with one range read, then each is checked and
/// decoded into its place.
fn fetch_run(
    job: &Job<'_>,
    first_index: u64,
    entries: &[ChunkRef],
    decoder: &mut ChunkDecoder,
    frames: &mut Vec<u8>,
    out: &mut [u8],
) -> Result<(), EngineError> {
    let chunk = job.info.chunk_size as usize;
    let out_len = out.len();
    let mut i = 0;
    while i < entries.len() {
        let bad_chunk = |at: usize, source| {
            let index = first_index + at as u64;
            EngineError::BadChunk {
                backup: job.info.id,
                index,
                offset: index * chunk as u64,
                source,
            }
        };
        let Some((start, end, next)) = next_read(entries, i) else {
            return Err(bad_chunk(
                i,
                RepoError::DamagedChunk {
                    digest: entries[i].digest,
                    source: ChunkError::Truncated(0),
                },
            ));
        };
        frames.resize((end - u64::from(start.offset)) as usize, 0);
        let read = job
            .repo
            .read_pack_range_into(&start.pack, u64::from(start.offset), frames)
            .map_err(|e| bad_chunk(i, e))?;
        let bytes = &frames[..read];
        for at in i..next {
            let entry = &entries[at];
            let location = entry.location.unwrap_or(start);
            let from = (location.offset - start.offset) as usize;
            let frame = bytes
                .get(from..from + location.len as usize)
                .unwrap_or_else(|| bytes.get(from..).unwrap_or_default());
            let room = &mut out[at * chunk..((at + 1) * chunk).min(out_len)];
            let expected = room.len();
            let damaged = |source| {
                bad_chunk(
                    at,
                    RepoError::DamagedChunk {
                        digest: entry.digest,
                        source,
                    },
                )
            };
            let got = decoder
                .decode_to(frame, &entry.digest, room)
                .map_err(damaged)?;
            if got != expected {
                return Err(damaged(ChunkError::LengthMismatch {
                    expected,
                    actual: got,
                }));
            }
        }
        i = next;
    }
    Ok(())
}

/// The read that starts at data entry `i`: its first frame's location, the
/// end offset of the frames read with it (back to back in the same pack, up
/// to [`MAX_READ`]) and the index after its last entry. `None` if entry `i`
/// is a hole.
fn next_read(entries: &[ChunkRef], i: usize) -> Option<(ChunkLocation, u64, usize)> {
    let start = entries.get(i)?.location?;
    let mut end = start.end();
    let mut next = i + 1;
    while let Some(Some(location)) = entries.get(next).map(|e| e.location) {
        if location.pack != start.pack
            || u64::from(location.offset) != end
            || location.end() - u64::from(start.offset) > MAX_READ
        {
            break;
        }
        end = location.end();
        next += 1;
    }
    Some((start, end, next))
}

/// Announces the reads a batch will make, so the store fetches them while
/// the workers are busy with earlier batches.
fn prefetch(repo: &Repository, entries: &[ChunkRef]) {
    let mut i = 0;
    while i < entries.len() {
        match next_read(entries, i) {
            Some((start, end, next)) => {
                let offset = u64::from(start.offset);
                repo.prefetch_pack_range(&start.pack, offset, end - offset);
                i = next;
            }
            None => i += 1,
        }
    }
}
