//! Copying ranges of a volume from an origin (an RBD image or snapshot, a
//! file or device) into a sink (an RBD image, a restore target): several
//! reader threads, one writer (an RBD image with exclusive-lock has one
//! writer at a time anyway), all-zero runs skipped on a fresh sink and
//! zeroed (deallocated) on a used one.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use ember_ceph::{Image, IoCtx, WriteQueue};
use ember_volume::{Source, Target, VolumeSource as _};

use crate::ranges::total;
use crate::RbdBackupError;

/// Reader threads per copy (each with its own image handle).
const READERS: usize = 4;
/// Pieces read ahead of the writer, waiting in the channel.
const QUEUED: usize = 2 * READERS;
/// Writes in flight at once on an RBD image: an image with exclusive-lock
/// has one writer, so its writes are asynchronous rather than parallel.
const WRITE_DEPTH: usize = 16;
/// Bytes a copy into an RBD image keeps in flight ([`copy_into_image`]),
/// copied out of the pieces read: the writer goes on to the next piece
/// meanwhile.
const WRITE_BYTES: usize = 32 << 20;
/// Small pieces a reader reads at once (with librbd's asynchronous reads
/// on an RBD origin), up to a chunk's worth of bytes.
const READ_GROUP: usize = 16;
/// Granularity of the zero detection.
const BLOCK: usize = 4 << 10;
/// Shorter runs of zeros between data are written with it: one call
/// instead of three.
const MIN_ZERO_RUN: usize = 64 << 10;
/// Ranges zeroed by one call are up to this many chunks long.
const ZERO_CHUNKS_PER_CALL: u64 = 16;

static ZEROS: [u8; BLOCK] = [0; BLOCK];

/// How far a copy has come, in bytes (data copied plus ranges zeroed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes handled so far.
    pub done: u64,
    /// Bytes to handle in all.
    pub total: u64,
}

/// Progress reporting and cancellation of a backup or restore.
#[derive(Clone, Copy, Default)]
pub struct Control<'a> {
    progress: Option<&'a dyn Fn(Progress)>,
    cancel: Option<&'a AtomicBool>,
}

impl std::fmt::Debug for Control<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("progress", &self.progress.is_some())
            .field("cancel", &self.cancel)
            .finish()
    }
}

impl<'a> Control<'a> {
    /// No progress reported, never cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reports progress to `report`, called on the caller's thread after
    /// every chunk.
    pub fn with_progress(mut self, report: &'a dyn Fn(Progress)) -> Self {
        self.progress = Some(report);
        self
    }

    /// Stops (with [`RbdBackupError::Cancelled`]) at the next chunk once
    /// `flag` is set.
    pub fn with_cancel(mut self, flag: &'a AtomicBool) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// The same cancellation without progress reports (for preparatory
    /// copies).
    pub(crate) fn cancel_only(&self) -> Control<'a> {
        Control {
            progress: None,
            cancel: self.cancel,
        }
    }

    fn check(&self) -> Result<(), RbdBackupError> {
        match self.cancel {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(RbdBackupError::Cancelled),
            _ => Ok(()),
        }
    }

    fn report(&self, done: u64, total: u64) {
        if let Some(report) = self.progress {
            report(Progress { done, total });
        }
    }
}

/// What a copy moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransferStats {
    /// Bytes read from the origin (its allocated or changed extents).
    pub bytes_read: u64,
    /// Bytes written to the destination.
    pub bytes_written: u64,
    /// Bytes zeroed (deallocated) on the destination: holes and zero runs
    /// over old data.
    pub bytes_zeroed: u64,
    /// Bytes of zeros read but not written, the destination reading as
    /// zeros there already.
    pub bytes_skipped: u64,
}

/// What to copy: `data` is read from the origin and written, `zero` is
/// made to read as zeros. Both normalized and disjoint.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub data: Vec<Range<u64>>,
    pub zero: Vec<Range<u64>>,
    /// Whether the sink reads as zeros wherever it is not written (a new
    /// or empty image, a new file): zero runs are then skipped.
    pub fresh: bool,
}

/// Where data is read from; opened once per reader thread.
pub(crate) trait Origin: Sync {
    fn open(&self) -> Result<Box<dyn ReadAt + '_>, RbdBackupError>;
}

/// One reader's handle on an [`Origin`].
pub(crate) trait ReadAt {
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), RbdBackupError>;

    /// Fills each `(offset, buf)`, in any order.
    fn read_many_exact(&mut self, reads: &mut [(u64, &mut [u8])]) -> Result<(), RbdBackupError> {
        for (offset, buf) in reads.iter_mut() {
            self.read_exact_at(*offset, buf)?;
        }
        Ok(())
    }
}

/// Where data is written.
pub(crate) trait Sink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), RbdBackupError>;
    fn zero(&mut self, offset: u64, len: u64) -> Result<(), RbdBackupError>;

    /// Writes each `(offset, data)`, in any order.
    fn write_batch(&mut self, writes: &[(u64, &[u8])]) -> Result<(), RbdBackupError> {
        for &(offset, data) in writes {
            self.write_at(offset, data)?;
        }
        Ok(())
    }
}

/// An RBD image (at a snapshot, or its head) as an origin.
pub(crate) struct RbdOrigin<'a> {
    pub io: &'a IoCtx,
    pub image: &'a str,
    pub snap: Option<&'a str>,
}

impl Origin for RbdOrigin<'_> {
    fn open(&self) -> Result<Box<dyn ReadAt + '_>, RbdBackupError> {
        Ok(Box::new(Image::open_read_only(
            self.io, self.image, self.snap,
        )?))
    }
}

impl ReadAt for Image {
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), RbdBackupError> {
        let got = self.read(offset, buf)?;
        if got == buf.len() {
            Ok(())
        } else {
            Err(RbdBackupError::ShortRead {
                target: self.target(),
                offset,
                wanted: buf.len(),
                got,
            })
        }
    }

    /// All of `reads` in flight at once.
    fn read_many_exact(&mut self, reads: &mut [(u64, &mut [u8])]) -> Result<(), RbdBackupError> {
        let depth = reads.len();
        Ok(self.read_many(reads, depth)?)
    }
}

impl Sink for Image {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), RbdBackupError> {
        Ok(self.write(offset, data)?)
    }

    /// `write_zeroes`, exact whatever the alignment (a small discard may do
    /// nothing).
    fn zero(&mut self, offset: u64, len: u64) -> Result<(), RbdBackupError> {
        Ok(self.write_zeroes(offset, len)?)
    }

    fn write_batch(&mut self, writes: &[(u64, &[u8])]) -> Result<(), RbdBackupError> {
        Ok(self.write_many(writes, WRITE_DEPTH)?)
    }
}

impl Sink for WriteQueue {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), RbdBackupError> {
        Ok(self.write(offset, data)?)
    }

    /// As for [`Image`]; the ranges zeroed are not those written.
    fn zero(&mut self, offset: u64, len: u64) -> Result<(), RbdBackupError> {
        Ok(self.image().write_zeroes(offset, len)?)
    }
}

/// A file or block device source: `pread` is thread-safe, so the readers
/// share it.
struct SourceReader<'a>(&'a Source);

impl Origin for Source {
    fn open(&self) -> Result<Box<dyn ReadAt + '_>, RbdBackupError> {
        Ok(Box::new(SourceReader(self)))
    }
}

impl ReadAt for SourceReader<'_> {
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), RbdBackupError> {
        Ok(self.0.read_at(buf, offset)?)
    }
}

impl Sink for Target {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), RbdBackupError> {
        Ok(ember_volume::RestoreTarget::write_at(self, data, offset)?)
    }

    fn zero(&mut self, offset: u64, len: u64) -> Result<(), RbdBackupError> {
        Ok(ember_volume::RestoreTarget::zero(self, offset, len)?)
    }
}

/// `ranges` cut into pieces of at most `max` bytes.
fn pieces(ranges: &[Range<u64>], max: u64) -> Vec<Range<u64>> {
    let max = max.max(1);
    let mut out = Vec::new();
    for range in ranges {
        let mut at = range.start;
        while at < range.end {
            let end = range.end.min(at + max);
            out.push(at..end);
            at = end;
        }
    }
    out
}

/// A piece read by a reader thread.
type ReadPiece = Result<(Range<u64>, Vec<u8>), RbdBackupError>;

/// Carries out `plan` from `origin` into `sink`, `chunk_size` bytes at a
/// time; on error or cancellation the sink is left partly written.
pub(crate) fn copy(
    origin: &dyn Origin,
    sink: &mut dyn Sink,
    plan: &Plan,
    chunk_size: usize,
    control: &Control<'_>,
) -> Result<TransferStats, RbdBackupError> {
    control.check()?;
    let chunk = chunk_size.max(BLOCK) as u64;
    let work = pieces(&plan.data, chunk);
    let zero_work = pieces(&plan.zero, chunk * ZERO_CHUNKS_PER_CALL);
    let all = total(&plan.data) + total(&plan.zero);
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let groups = groups(&work, chunk);
    let readers = READERS.min(groups.len());
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<ReadPiece>(QUEUED);
        let handles: Vec<_> = (0..readers)
            .map(|_| {
                let tx = tx.clone();
                let (work, groups, next, abort) = (&work, &groups, &next, &abort);
                scope.spawn(move || read_pieces(origin, work, groups, next, abort, tx))
            })
            .collect();
        drop(tx);
        let result = write_pieces(sink, &zero_work, rx, plan.fresh, chunk, all, control);
        if result.is_err() {
            abort.store(true, Ordering::Relaxed);
        }
        // The receiver is gone: a reader blocked on sending gives up.
        let mut panicked = false;
        for handle in handles {
            panicked |= handle.join().is_err();
        }
        match result {
            Ok(_) if panicked => Err(RbdBackupError::ReaderPanicked),
            other => other,
        }
    })
}

/// [`copy`] into `image` with its writes in flight while the next pieces
/// are handled (up to [`WRITE_BYTES`]); returns the image once every write
/// is done.
pub(crate) fn copy_into_image(
    origin: &dyn Origin,
    image: Image,
    plan: &Plan,
    chunk_size: usize,
    control: &Control<'_>,
) -> Result<(TransferStats, Image), RbdBackupError> {
    let mut queue = WriteQueue::new(image, WRITE_DEPTH, WRITE_BYTES)?;
    let stats = copy(origin, &mut queue, plan, chunk_size, control)?;
    Ok((stats, queue.into_image()?))
}

/// A reader thread: takes the next group of pieces, reads them at once,
/// hands each over, until none is left, the writer stops listening or
/// `abort` is set.
fn read_pieces(
    origin: &dyn Origin,
    work: &[Range<u64>],
    groups: &[Range<usize>],
    next: &AtomicUsize,
    abort: &AtomicBool,
    tx: SyncSender<ReadPiece>,
) {
    let mut reader = match origin.open() {
        Ok(reader) => reader,
        Err(e) => {
            let _ = tx.send(Err(e));
            return;
        }
    };
    while !abort.load(Ordering::Relaxed) {
        let Some(group) = groups.get(next.fetch_add(1, Ordering::Relaxed)) else {
            return;
        };
        let ranges = &work[group.clone()];
        let mut bufs: Vec<Vec<u8>> = ranges
            .iter()
            .map(|range| vec![0u8; (range.end - range.start) as usize])
            .collect();
        let mut reads: Vec<(u64, &mut [u8])> = ranges
            .iter()
            .zip(bufs.iter_mut())
            .map(|(range, buf)| (range.start, buf.as_mut_slice()))
            .collect();
        if let Err(e) = reader.read_many_exact(&mut reads) {
            let _ = tx.send(Err(e));
            return;
        }
        for (range, buf) in ranges.iter().zip(bufs) {
            if tx.send(Ok((range.clone(), buf))).is_err() {
                return;
            }
        }
    }
}

/// `work` as groups of consecutive pieces read at once: up to
/// [`READ_GROUP`] pieces and `chunk` bytes (a whole piece at least).
fn groups(work: &[Range<u64>], chunk: u64) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut bytes = 0u64;
    for (i, range) in work.iter().enumerate() {
        let len = range.end - range.start;
        match out.last_mut() {
            Some(group) if group.len() < READ_GROUP && bytes + len <= chunk => {
                group.end = i + 1;
                bytes += len;
            }
            _ => {
                out.push(i..i + 1);
                bytes = len;
            }
        }
    }
    out
}

/// The writer: zeroes `zero_work`, then writes what the readers send, in
/// batches of what has arrived (up to `2 × chunk` bytes).
fn write_pieces(
    sink: &mut dyn Sink,
    zero_work: &[Range<u64>],
    rx: Receiver<ReadPiece>,
    fresh: bool,
    chunk: u64,
    all: u64,
    control: &Control<'_>,
) -> Result<TransferStats, RbdBackupError> {
    let mut stats = TransferStats::default();
    let mut done = 0u64;
    for range in zero_work {
        control.check()?;
        sink.zero(range.start, range.end - range.start)?;
        stats.bytes_zeroed += range.end - range.start;
        done += range.end - range.start;
        control.report(done, all);
    }
    while let Ok(first) = rx.recv() {
        control.check()?;
        let mut batch = vec![first?];
        let mut bytes = batch[0].1.len() as u64;
        while bytes < 2 * chunk {
            let Ok(more) = rx.try_recv() else { break };
            let more = more?;
            bytes += more.1.len() as u64;
            batch.push(more);
        }
        let mut writes: Vec<(u64, &[u8])> = Vec::new();
        for (range, buf) in &batch {
            stats.bytes_read += buf.len() as u64;
            for segment in segments(buf) {
                let offset = range.start + segment.range.start as u64;
                let len = (segment.range.end - segment.range.start) as u64;
                match (segment.zero, fresh) {
                    (false, _) => {
                        writes.push((offset, &buf[segment.range]));
                        stats.bytes_written += len;
                    }
                    (true, true) => stats.bytes_skipped += len,
                    (true, false) => {
                        sink.zero(offset, len)?;
                        stats.bytes_zeroed += len;
                    }
                }
            }
        }
        sink.write_batch(&writes)?;
        done += bytes;
        control.report(done, all);
    }
    Ok(stats)
}

/// A part of a buffer: data to write, or zeros worth skipping.
struct Segment {
    range: Range<usize>,
    zero: bool,
}

/// `buf` cut into data and long zero runs.
fn segments(buf: &[u8]) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut data_start = 0usize;
    for run in zero_runs(buf) {
        if run.start > data_start {
            out.push(Segment {
                range: data_start..run.start,
                zero: false,
            });
        }
        data_start = run.end;
        out.push(Segment {
            range: run,
            zero: true,
        });
    }
    if data_start < buf.len() {
        out.push(Segment {
            range: data_start..buf.len(),
            zero: false,
        });
    }
    out
}

/// The runs of zero blocks in `buf` worth skipping: at least
/// [`MIN_ZERO_RUN`] long, or the whole buffer.
fn zero_runs(buf: &[u8]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut run_start: Option<usize> = None;
    let mut at = 0usize;
    let close = |start: usize, end: usize, runs: &mut Vec<Range<usize>>| {
        if end - start >= MIN_ZERO_RUN || (start == 0 && end == buf.len()) {
            runs.push(start..end);
        }
    };
    while at < buf.len() {
        let end = (at + BLOCK).min(buf.len());
        let zero = buf[at..end] == ZEROS[..end - at];
        match (zero, run_start) {
            (true, None) => run_start = Some(at),
            (false, Some(start)) => {
                close(start, at, &mut runs);
                run_start = None;
            }
            _ => {}
        }
        at = end;
    }
    if let Some(start) = run_start {
        close(start, buf.len(), &mut runs);
    }
    runs
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // one-range lists are the point
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An in-memory volume.
    struct Memory(Mutex<Vec<u8>>);

    impl Origin for Memory {
        fn open(&self) -> Result<Box<dyn ReadAt + '_>, RbdBackupError> {
            Ok(Box::new(MemoryReader(self)))
        }
    }

    struct MemoryReader<'a>(&'a Memory);

    impl ReadAt for MemoryReader<'_> {
        fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), RbdBackupError> {
            let data = self.0 .0.lock().expect("lock");
            buf.copy_from_slice(&data[offset as usize..offset as usize + buf.len()]);
            Ok(())
        }
    }

    /// A sink recording its calls.
    #[derive(Default)]
    struct Recorder {
        bytes: Vec<u8>,
        writes: Vec<Range<u64>>,
        zeroes: Vec<Range<u64>>,
    }

    impl Sink for Recorder {
        fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), RbdBackupError> {
            let at = offset as usize;
            self.bytes[at..at + data.len()].copy_from_slice(data);
            self.writes.push(offset..offset + data.len() as u64);
            Ok(())
        }

        fn zero(&mut self, offset: u64, len: u64) -> Result<(), RbdBackupError> {
            self.bytes[offset as usize..(offset + len) as usize].fill(0);
            self.zeroes.push(offset..offset + len);
            Ok(())
        }
    }

    #[test]
    fn zero_runs_are_long_ones_or_the_whole_buffer() {
        let mut buf = vec![0u8; 320 << 10];
        buf[0] = 1; // block 0: data
        buf[(8 << 10) + 5] = 1; // block 2: data; the one zero block between is written
        buf[200 << 10] = 1; // a long run 12K..200K
        buf[(250 << 10) + 1] = 2; // a short run 204K..248K, then a long tail
        assert_eq!(
            zero_runs(&buf),
            vec![(12 << 10)..(200 << 10), (252 << 10)..(320 << 10)]
        );
        assert_eq!(zero_runs(&[0u8; 100]), vec![0..100]);
        assert!(zero_runs(&[1u8; 100]).is_empty());
    }

    #[test]
    fn small_pieces_are_grouped_up_to_a_count_and_a_chunk() {
        let small: Vec<Range<u64>> = (0..40u64).map(|i| i * 8192..i * 8192 + 4096).collect();
        assert_eq!(groups(&small, 1 << 20), vec![0..16, 16..32, 32..40]);
        let mixed = vec![
            0..4096,
            8192..(8192 + (1 << 20)),
            (2 << 20)..(2 << 20) + 4096,
        ];
        assert_eq!(groups(&mixed, 1 << 20), vec![0..1, 1..2, 2..3]);
        assert!(groups(&[], 1 << 20).is_empty());
    }

    #[test]
    fn copy_writes_data_zeroes_holes_and_skips_zeros_on_fresh_sinks() {
        let size = 8usize << 20;
        let mut data = vec![0u8; size];
        data[..(1 << 20)].fill(7);
        data[(3 << 20)..(3 << 20) + 100].fill(9);
        let origin = Memory(Mutex::new(data.clone()));
        let plan = |fresh| Plan {
            data: vec![0..(2 << 20), (3 << 20)..(4 << 20)],
            zero: vec![(2 << 20)..(3 << 20), (4 << 20)..(size as u64)],
            fresh,
        };
        for fresh in [true, false] {
            let mut sink = Recorder {
                bytes: vec![if fresh { 0 } else { 0xEE }; size],
                ..Recorder::default()
            };
            let progress = Mutex::new(Vec::new());
            let report = |p: Progress| progress.lock().expect("lock").push(p);
            let control = Control::new().with_progress(&report);
            let stats = copy(&origin, &mut sink, &plan(fresh), 256 << 10, &control).expect("copy");
            assert!(sink.bytes == data, "fresh={fresh}");
            assert_eq!(stats.bytes_read, 3 << 20);
            assert_eq!(
                stats.bytes_written + stats.bytes_skipped + stats.bytes_zeroed,
                size as u64
            );
            let last = *progress.lock().expect("lock").last().expect("progress");
            assert_eq!(
                last,
                Progress {
                    done: size as u64,
                    total: size as u64
                }
            );
            if fresh {
                // 1 MiB of sevens and the block holding the nines.
                assert_eq!(stats.bytes_written, (1 << 20) + 4096);
            }
        }
    }

    #[test]
    fn a_cancelled_copy_stops() {
        let origin = Memory(Mutex::new(vec![1u8; 1 << 20]));
        let mut sink = Recorder {
            bytes: vec![0; 1 << 20],
            ..Recorder::default()
        };
        let cancel = AtomicBool::new(true);
        let plan = Plan {
            data: vec![0..(1 << 20)],
            ..Plan::default()
        };
        let result = copy(
            &origin,
            &mut sink,
            &plan,
            4096,
            &Control::new().with_cancel(&cancel),
        );
        assert!(matches!(result, Err(RbdBackupError::Cancelled)));
        assert!(sink.writes.is_empty() && sink.zeroes.is_empty());
    }
}
