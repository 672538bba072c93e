//! Backups of RBD snapshots, incrementals that read only what the RBD diff
//! reports, and restores into new and existing images and files, against
//! a real Ceph cluster (skipped without one unless `EMBER_REQUIRE_CEPH=1`).

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::noise;
use ember_ceph::dev_cluster::DevCluster;
use ember_ceph::{rbd, CreateOptions, Image, IoCtx};
use ember_engine::{
    run_backup, run_restore, BackupRequest, CancelToken, ParentChoice, Progress, Tuning,
};
use ember_repo::Repository;
use ember_store::PosixStore;
use ember_types::{BackupId, BackupInfo};
use ember_volume::{
    RbdSource, RbdTarget, RestoreTarget, Target, UnchangedSince, VolumeError, VolumeSource,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const SIZE: u64 = 128 * MIB;
const CHUNK: u64 = 32 * KIB;

/// Removes the image and its snapshots when dropped.
struct Guard<'a> {
    io: &'a IoCtx,
    name: String,
}

impl<'a> Guard<'a> {
    fn new(io: &'a IoCtx, label: &str) -> Self {
        Guard {
            io,
            name: format!("ember-test-{label}-{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        ember_ceph::dev_cluster::remove_image(self.io, &self.name);
    }
}

fn tuning() -> Tuning {
    Tuning {
        threads: 2,
        batch_bytes: MIB as usize,
        dedup_entries: 1 << 16,
    }
}

fn backup(
    repo: &Repository,
    source: &dyn VolumeSource,
    label: &str,
    parent: ParentChoice,
) -> BackupInfo {
    let mut request = BackupRequest::full(label);
    request.parent = parent;
    let started = Instant::now();
    let info = run_backup(
        repo,
        source,
        &request,
        tuning(),
        &Progress::new(),
        &CancelToken::new(),
    )
    .expect("backup");
    println!(
        "backup of {} in {:.2} s: {:?}",
        source.label(),
        started.elapsed().as_secs_f64(),
        info.stats
    );
    info
}

fn restore(repo: &Repository, id: &BackupId, target: Box<dyn RestoreTarget>) {
    let label = target.label();
    let started = Instant::now();
    run_restore(
        repo,
        id,
        target,
        tuning(),
        &Progress::new(),
        &CancelToken::new(),
    )
    .expect("restore");
    println!(
        "restore into {label} in {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

/// Reads `len` bytes at `offset` of `image` in 4 MiB pieces.
fn read(image: &Image, offset: u64, len: u64) -> Vec<u8> {
    let mut out = vec![0u8; len as usize];
    for (i, piece) in out.chunks_mut(4 * MIB as usize).enumerate() {
        let at = offset + i as u64 * 4 * MIB;
        assert_eq!(image.read(at, piece).expect("read"), piece.len());
    }
    out
}

/// Asserts `got` equals `want`, naming the first differing 4 KiB block.
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(block) = got
        .chunks(4096)
        .zip(want.chunks(4096))
        .position(|(a, b)| a != b)
    {
        panic!("{what}: differs in the 4 KiB block at {}", block * 4096);
    }
}

/// An image of `size` bytes holding `0xEE` in the ranges given.
fn image_with_old_data(io: &IoCtx, name: &str, size: u64, ranges: &[(u64, u64)]) {
    rbd::create(io, name, size, &CreateOptions::default()).expect("create");
    let image = Image::open(io, name).expect("open");
    for &(offset, len) in ranges {
        image
            .write(offset, &vec![0xEE; len as usize])
            .expect("old data");
    }
}

/// The volume of the test: data, text, written zeros, holes.
fn fill(image: &Image) {
    image.write(0, &noise(1, 8 * MIB as usize)).expect("noise");
    let text: Vec<u8> = b"an RBD volume holds text that compresses\n"
        .iter()
        .copied()
        .cycle()
        .take(4 * MIB as usize)
        .collect();
    image.write(8 * MIB, &text).expect("text");
    image
        .write(16 * MIB, &vec![0u8; 4 * MIB as usize])
        .expect("zeros");
    image
        .write(40 * MIB, &noise(2, MIB as usize))
        .expect("noise");
    image
        .write(96 * MIB, &noise(3, 4 * MIB as usize))
        .expect("noise");
    image
        .write(SIZE - 4 * KIB, &noise(4, 4 * KIB as usize))
        .expect("last block");
}

/// Scattered 4 KiB blocks, each in a chunk of its own: in data, in text,
/// in the written zeros, at the start of new objects (holes before), and
/// in the object of the last block.
const BLOCKS: [u64; 10] = [
    4 * KIB,
    3 * MIB + 64 * KIB,
    7 * MIB + 512 * KIB,
    9 * MIB + 4 * KIB,
    17 * MIB,
    28 * MIB,
    68 * MIB,
    97 * MIB + 36 * KIB,
    99 * MIB,
    127 * MIB,
];

#[test]
fn rbd_incrementals_read_only_changes_and_restore_everywhere() {
    let Some(cluster) = ember_ceph::dev_cluster::for_test("rbd_incrementals") else {
        return;
    };
    let io = cluster
        .config("volumes")
        .connect()
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let store = PosixStore::create(dir.path().join("repo")).expect("store");
    let repo = Repository::init(Arc::new(store), CHUNK as u32).expect("init");

    let volume = Guard::new(&io, "vol");
    rbd::create(&io, &volume.name, SIZE, &CreateOptions::default()).expect("create");
    let image = Image::open(&io, &volume.name).expect("open");
    fill(&image);
    image.snap_create("s1").expect("s1");
    let label = format!("rbd:volumes/{}", volume.name);

    // Full backup of s1: reads the allocated objects only.
    let s1 = RbdSource::open(&io, &volume.name, "s1", None).expect("source s1");
    let full = backup(&repo, &s1, &label, ParentChoice::None);
    let allocated = s1.allocated_bytes();
    assert!(full.stats.bytes_read <= allocated, "{:?}", full.stats);
    assert!(full.stats.bytes_read >= 21 * MIB, "{:?}", full.stats);
    assert!(
        full.stats.zero_chunks >= (SIZE - allocated) / CHUNK + 4 * MIB / CHUNK,
        "holes and written zeros: {:?}",
        full.stats
    );
    drop(s1);

    // Scattered changes, zeros written over data, a discarded object.
    for (i, &offset) in BLOCKS.iter().enumerate() {
        image
            .write(offset, &noise(100 + i as u64, 4 * KIB as usize))
            .expect("block");
    }
    image.write_zeroes(5 * MIB, 4 * KIB).expect("zeroes");
    image.discard(40 * MIB, 4 * MIB).expect("discard");
    image.snap_create("s2").expect("s2");
    // After s2: in neither backup.
    image
        .write(0, &noise(200, 64 * KIB as usize))
        .expect("head");

    // Incremental with the RBD diff: reads only the changed chunks.
    let since = UnchangedSince {
        snapshot: "s1".into(),
        backup: full.id,
    };
    let s2 = RbdSource::open(&io, &volume.name, "s2", Some(since)).expect("source s2");
    let incr = backup(&repo, &s2, &label, ParentChoice::Backup(full.id));
    let changed_chunks = BLOCKS.len() as u64 + 1;
    assert_eq!(
        incr.stats.bytes_read,
        changed_chunks * CHUNK,
        "{:?}",
        incr.stats
    );
    assert_eq!(incr.stats.new_chunks, changed_chunks, "{:?}", incr.stats);
    assert!(incr.stats.unchanged_chunks > 500, "{:?}", incr.stats);
    drop(s2);

    // The same incremental without the diff reads everything and finds the
    // same chunks: the two manifests are identical.
    let s2_whole = RbdSource::open(&io, &volume.name, "s2", None).expect("source s2");
    let compared = backup(&repo, &s2_whole, &label, ParentChoice::Backup(full.id));
    assert!(compared.stats.bytes_read > 15 * MIB, "{:?}", compared.stats);
    assert_eq!(compared.stats.new_chunks, 0, "{:?}", compared.stats);
    drop(s2_whole);
    let entries = |id: &BackupId| {
        let mut reader = repo.open_entries(id).expect("entries");
        let mut all = Vec::new();
        while let Some(entry) = reader.next_entry().expect("entry") {
            all.push(entry);
        }
        all
    };
    assert!(
        entries(&incr.id) == entries(&compared.id),
        "the diff and a full read agree chunk for chunk"
    );

    // Restores of both backups.
    let snapshot = |snap: &str| {
        let at = Image::open_read_only(&io, &volume.name, Some(snap)).expect("open snapshot");
        read(&at, 0, SIZE)
    };
    for (info, snap) in [(&full, "s1"), (&incr, "s2")] {
        let want = snapshot(snap);
        restore_into_new_image(&io, &repo, info, &want);
        restore_into_larger_image(&io, &repo, info, &want);
        restore_into_file(cluster, &repo, info, &volume.name, snap, dir.path());
    }
}

/// (a) A new image of the backup's size.
fn restore_into_new_image(io: &IoCtx, repo: &Repository, info: &BackupInfo, want: &[u8]) {
    let new = Guard::new(io, "new");
    let target = RbdTarget::create(io, &new.name, info.volume_size).expect("target");
    assert!(target.is_fresh());
    restore(repo, &info.id, Box::new(target));
    let image = Image::open(io, &new.name).expect("open restored");
    assert_eq!(image.size().expect("size"), SIZE);
    assert_same(&read(&image, 0, SIZE), want, "new image");
}

/// (b) An existing, larger image full of old data where the backup has
/// holes, and beyond it: the holes and the tail are zeroed, its size kept.
/// One too small is refused.
fn restore_into_larger_image(io: &IoCtx, repo: &Repository, info: &BackupInfo, want: &[u8]) {
    let small = Guard::new(io, "small");
    image_with_old_data(io, &small.name, SIZE - 4 * KIB, &[(0, MIB)]);
    assert!(matches!(
        RbdTarget::open_existing(io, &small.name, info.volume_size),
        Err(VolumeError::TooSmall { .. })
    ));

    let large = Guard::new(io, "large");
    let old = [
        (12 * MIB, 4 * MIB),
        (30 * MIB, MIB),
        (40 * MIB, 2 * MIB),
        (127 * MIB, MIB),
        (SIZE, 4 * MIB),
        (SIZE + 31 * MIB, MIB),
    ];
    image_with_old_data(io, &large.name, SIZE + 32 * MIB, &old);
    let target = RbdTarget::open_existing(io, &large.name, info.volume_size).expect("target");
    assert!(!target.is_fresh());
    restore(repo, &info.id, Box::new(target));
    let image = Image::open(io, &large.name).expect("open restored");
    assert_eq!(image.size().expect("size"), SIZE + 32 * MIB, "size kept");
    let got = read(&image, 0, SIZE + 32 * MIB);
    assert_same(&got[..SIZE as usize], want, "larger image");
    assert!(
        got[SIZE as usize..].iter().all(|&b| b == 0),
        "the tail is zeroed"
    );
}

/// (c) A new file, compared with `rbd export` of the snapshot.
fn restore_into_file(
    cluster: &DevCluster,
    repo: &Repository,
    info: &BackupInfo,
    image: &str,
    snap: &str,
    dir: &std::path::Path,
) {
    let file = dir.join(format!("restored-{snap}.img"));
    let target = Target::create(&file, info.volume_size).expect("target");
    restore(repo, &info.id, Box::new(target));
    let exported = dir.join(format!("exported-{snap}.img"));
    let spec = format!("volumes/{image}@{snap}");
    cluster.cli("rbd", &["export", &spec, exported.to_str().expect("utf8")]);
    let got = std::fs::read(&file).expect("read restored");
    let want = std::fs::read(&exported).expect("read export");
    assert_same(&got, &want, "file vs rbd export");
    std::fs::remove_file(&file).expect("remove");
    std::fs::remove_file(&exported).expect("remove");
}
