//! When the backup reader trusts a source's `unchanged` and reuses the
//! parent's entries without reading, and when it does not.

mod common;

use common::*;
use ember_engine::{run_backup, BackupRequest, CancelToken, EngineError, ParentChoice, Progress};
use ember_types::{BackupId, BackupInfo};
use std::sync::Mutex;

use ember_volume::{VolumeError, VolumeSource};

/// A volume in memory that claims every range unchanged except `changed`
/// since backup `since` (true of the data where the test makes it so). With
/// `in_flight` above 1 it asks for its reads to be gathered, and logs each
/// `read_many` call's reads.
#[derive(Default)]
struct MemSource {
    data: Vec<u8>,
    since: Option<BackupId>,
    changed: Vec<(u64, u64)>,
    in_flight: usize,
    calls: Mutex<Vec<Vec<(u64, usize)>>>,
}

impl VolumeSource for MemSource {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    fn label(&self) -> String {
        "memory".into()
    }

    fn next_data(&self, offset: u64) -> Result<Option<(u64, u64)>, VolumeError> {
        Ok((offset < self.size()).then_some((offset, self.size())))
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), VolumeError> {
        let at = offset as usize;
        buf.copy_from_slice(&self.data[at..at + buf.len()]);
        Ok(())
    }

    fn read_many(&self, reads: &mut [(u64, &mut [u8])]) -> Result<(), VolumeError> {
        let log = reads.iter().map(|(offset, buf)| (*offset, buf.len()));
        self.calls.lock().expect("log").push(log.collect());
        for (offset, buf) in reads.iter_mut() {
            self.read_at(buf, *offset)?;
        }
        Ok(())
    }

    fn reads_in_flight(&self) -> usize {
        self.in_flight.max(1)
    }

    fn unchanged(&self, offset: u64, len: u64) -> bool {
        let end = offset + len;
        !self.changed.iter().any(|&(s, e)| s < end && offset < e)
    }

    fn unchanged_since(&self) -> Option<BackupId> {
        self.since
    }
}

fn backup_mem(fx: &Fixture, source: &MemSource, parent: ParentChoice) -> BackupInfo {
    try_backup_mem(fx, source, parent).expect("backup")
}

fn try_backup_mem(
    fx: &Fixture,
    source: &MemSource,
    parent: ParentChoice,
) -> Result<BackupInfo, EngineError> {
    let mut request = BackupRequest::full("memory");
    request.parent = parent;
    run_backup(
        &fx.repo,
        source,
        &request,
        tuning(),
        &Progress::new(),
        &CancelToken::new(),
    )
}

/// A full backup of `data` from a source that knows nothing.
fn full(fx: &Fixture, data: &[u8]) -> BackupInfo {
    let source = MemSource {
        data: data.to_vec(),
        since: None,
        changed: Vec::new(),
        ..MemSource::default()
    };
    backup_mem(fx, &source, ParentChoice::None)
}

const C: usize = CHUNK as usize;

#[test]
fn unchanged_chunks_are_not_read_and_the_parent_entries_are_reused() {
    let fx = Fixture::new();
    // 64 chunks and a short tail; every fourth chunk zeros.
    let mut data = volume_bytes(1, 64);
    let parent = full(&fx, &data);
    // Change three chunks, one of them to zeros.
    for (chunk, fill) in [(5usize, 0x11u8), (40, 0x22), (41, 0)] {
        data[chunk * C..(chunk + 1) * C].fill(fill);
    }
    let changed = vec![
        (5 * C as u64, 6 * C as u64),
        (40 * C as u64 + 100, 41 * C as u64 + 1),
    ];
    let source = MemSource {
        data: data.clone(),
        since: Some(parent.id),
        changed,
        ..MemSource::default()
    };
    let info = backup_mem(&fx, &source, ParentChoice::Backup(parent.id));
    assert_eq!(info.parent, Some(parent.id));
    assert_eq!(info.stats.bytes_read, 3 * CHUNK as u64, "{:?}", info.stats);
    assert_eq!(info.stats.new_chunks, 2, "{:?}", info.stats);
    // 16 zero chunks of the parent reused as holes, one new zero chunk.
    assert_eq!(info.stats.zero_chunks, 17, "{:?}", info.stats);
    assert_eq!(info.stats.unchanged_chunks, 65 - 17 - 2, "{:?}", info.stats);
    assert!(fx.restore(&info.id) == data);
}

#[test]
fn a_source_with_reads_in_flight_gets_them_gathered_across_batches() {
    let fx = Fixture::new();
    let mut data = volume_bytes(4, 64);
    let parent = full(&fx, &data);
    // Every third chunk changes: short runs scattered over many batches.
    let changed: Vec<(u64, u64)> = (0..64u64)
        .step_by(3)
        .map(|c| (c * CHUNK as u64, (c + 1) * CHUNK as u64))
        .collect();
    for &(start, end) in &changed {
        data[start as usize..end as usize].fill(start as u8 | 1);
    }
    let backup = |in_flight: usize| {
        let source = MemSource {
            data: data.clone(),
            since: Some(parent.id),
            changed: changed.clone(),
            in_flight,
            ..MemSource::default()
        };
        let info = backup_mem(&fx, &source, ParentChoice::Backup(parent.id));
        assert_eq!(info.stats.bytes_read, 22 * CHUNK as u64, "{:?}", info.stats);
        assert!(
            fx.restore(&info.id) == data,
            "restores with {in_flight} in flight"
        );
        source.calls.into_inner().expect("log")
    };
    // The bytes from a call's first read to the end of its last.
    let span = |reads: &Vec<(u64, usize)>| match (reads.first(), reads.last()) {
        (Some(first), Some(last)) => last.0 + last.1 as u64 - first.0,
        _ => 0,
    };
    let batch = 16 * 1024; // tuning().batch_bytes
                           // One batch per call, as before, for a source that does not ask.
    let one = backup(1);
    assert!(one.iter().all(|reads| span(reads) <= batch), "{one:?}");
    // Several batches per call, about 8 reads (the batch that reaches 8 may
    // add one more: a batch of 4 chunks has at most 2 runs here), each
    // read once.
    let gathered = backup(8);
    assert!(
        gathered.iter().any(|reads| span(reads) > batch),
        "{gathered:?}"
    );
    assert!(
        gathered.iter().all(|reads| reads.len() <= 9),
        "{gathered:?}"
    );
    let mut reads: Vec<(u64, usize)> = gathered.into_iter().flatten().collect();
    reads.sort_unstable();
    assert_eq!(reads, one.into_iter().flatten().collect::<Vec<_>>());
}

#[test]
fn chunks_past_the_parent_or_cut_short_are_read_whatever_the_source_claims() {
    let fx = Fixture::new();
    // The parent ends 1000 bytes into chunk 16.
    let base = volume_bytes(2, 16);
    let parent = full(&fx, &base);

    // Grown: the first 16 chunks are unchanged and reused; the parent's
    // short last chunk is now a whole one, and the chunks after it have no
    // parent entry: read, though the source claims all is unchanged.
    let mut grown = base.clone();
    grown.extend(noise(3, 8 * C));
    let source = MemSource {
        data: grown.clone(),
        since: Some(parent.id),
        changed: Vec::new(),
        ..MemSource::default()
    };
    let info = backup_mem(&fx, &source, ParentChoice::Backup(parent.id));
    assert_eq!(
        info.stats.bytes_read,
        grown.len() as u64 - 16 * CHUNK as u64,
        "{:?}",
        info.stats
    );
    assert!(fx.restore(&info.id) == grown, "grown volume restores");

    // Shrunk into chunk 10: its last chunk is shorter than the parent's
    // chunk 10, so it is read.
    let shrunk = base[..10 * C + 512].to_vec();
    let source = MemSource {
        data: shrunk.clone(),
        since: Some(parent.id),
        changed: Vec::new(),
        ..MemSource::default()
    };
    let info = backup_mem(&fx, &source, ParentChoice::Backup(parent.id));
    assert_eq!(info.stats.bytes_read, 512, "{:?}", info.stats);
    assert!(fx.restore(&info.id) == shrunk, "shrunk volume restores");
}

#[test]
fn a_source_diffing_against_another_backup_is_refused() {
    let fx = Fixture::new();
    let data = volume_bytes(4, 8);
    let parent = full(&fx, &data);
    let other = full(&fx, &data);
    for (since, choice) in [
        (parent.id, ParentChoice::None),
        (parent.id, ParentChoice::Backup(other.id)),
        (other.id, ParentChoice::Latest),
    ] {
        let source = MemSource {
            data: data.clone(),
            since: Some(since),
            changed: Vec::new(),
            ..MemSource::default()
        };
        let latest = matches!(choice, ParentChoice::Latest);
        match try_backup_mem(&fx, &source, choice) {
            // Latest is the newest backup of "memory": `other` itself.
            Ok(info) if latest => assert_eq!(info.parent, Some(other.id)),
            Err(EngineError::InvalidOption(why)) => {
                assert!(why.contains("reports changes since backup"), "{why}")
            }
            result => panic!("expected a refusal: {result:?}"),
        }
    }
    assert_eq!(
        fx.repo.list_backups().expect("list").backups.len(),
        3,
        "nothing refused was committed"
    );
}
