//! RBD sources and targets against a real Ceph cluster (the one
//! `CEPH_CONF` names, or the dev cluster of `shared/ceph/ceph-up.sh`).
//! Without one the tests skip, saying why, unless `EMBER_REQUIRE_CEPH=1`.
//! Each test uses its own uuid-named images and removes them.

use ember_ceph::dev_cluster::unique_name as unique;
use ember_ceph::{rbd, CreateOptions, Image, IoCtx};
use ember_types::BackupId;
use ember_volume::{
    RbdSource, RbdTarget, RestoreTarget, UnchangedSince, VolumeError, VolumeSource,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// The `volumes` pool of the test cluster, or `None` to skip.
fn volumes(test: &str) -> Option<IoCtx> {
    let cluster = ember_ceph::dev_cluster::for_test(test)?;
    Some(
        cluster
            .config("volumes")
            .connect()
            .unwrap_or_else(|e| panic!("connect: {e}")),
    )
}

/// Removes the image and its snapshots when dropped.
struct Guard<'a> {
    io: &'a IoCtx,
    name: String,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        ember_ceph::dev_cluster::remove_image(self.io, &self.name);
    }
}

fn create<'a>(io: &'a IoCtx, label: &str, size: u64) -> (Guard<'a>, Image) {
    let name = unique(label);
    rbd::create(io, &name, size, &CreateOptions::default()).expect("create image");
    let image = Image::open(io, &name).expect("open image");
    (Guard { io, name }, image)
}

fn read(image: &Image, offset: u64, len: u64) -> Vec<u8> {
    let mut buf = vec![0xAA; len as usize];
    assert_eq!(image.read(offset, &mut buf).expect("read"), len as usize);
    buf
}

fn read_source(source: &dyn VolumeSource, offset: u64, len: u64) -> Vec<u8> {
    let mut buf = vec![0xAA; len as usize];
    source.read_at(&mut buf, offset).expect("read source");
    buf
}

#[test]
fn source_reads_its_snapshot_reports_extents_and_what_is_unchanged() {
    let Some(io) = volumes("source_reads_its_snapshot") else {
        return;
    };
    let (guard, image) = create(&io, "src", 64 * MIB);
    let name = guard.name.clone();
    image.write(0, &pattern(1, 6 * MIB)).expect("write");
    image.write(20 * MIB, &pattern(2, 4 * KIB)).expect("write");
    image
        .write(64 * MIB - 4 * KIB, &pattern(3, 4 * KIB))
        .expect("write");
    image.snap_create("s1").expect("s1");
    // Between s1 and s2: a block inside an object of s1, a block at the
    // start of a new object, zeros written inside an object, a whole
    // object discarded, and the image grown with data in the new space.
    image
        .write(MIB + 8 * KIB, &pattern(4, 4 * KIB))
        .expect("write");
    image.write(40 * MIB, &pattern(5, 4 * KIB)).expect("write");
    image.write_zeroes(3 * MIB, 4 * KIB).expect("zeroes");
    image.discard(4 * MIB, 4 * MIB).expect("discard");
    image.resize(72 * MIB).expect("grow");
    image.write(70 * MIB, &pattern(6, 4 * KIB)).expect("write");
    image.snap_create("s2").expect("s2");
    // After s2: seen by neither snapshot.
    image
        .write(MIB + 8 * KIB, &pattern(7, 4 * KIB))
        .expect("write");

    let s1 = RbdSource::open(&io, &name, "s1", None).expect("open s1");
    assert_eq!(s1.size(), 64 * MIB);
    assert_eq!(s1.label(), format!("rbd:volumes/{name}@s1"));
    assert_eq!(s1.unchanged_since(), None);
    assert_eq!(s1.changed_bytes(), None);
    // Allocated extents: the objects written, each from its start up to
    // its last write.
    assert_eq!(s1.next_data(0).expect("next"), Some((0, 6 * MIB)));
    assert_eq!(
        s1.next_data(5 * MIB).expect("next"),
        Some((5 * MIB, 6 * MIB))
    );
    assert_eq!(
        s1.next_data(6 * MIB).expect("next"),
        Some((20 * MIB, 20 * MIB + 4 * KIB))
    );
    assert_eq!(
        s1.next_data(21 * MIB).expect("next"),
        Some((60 * MIB, 64 * MIB))
    );
    assert_eq!(s1.next_data(64 * MIB).expect("next"), None);
    assert_eq!(s1.allocated_bytes(), 10 * MIB + 4 * KIB);
    assert!(
        !s1.unchanged(0, 4 * KIB),
        "nothing is unchanged without a base"
    );
    // The snapshot's data, not the head's.
    assert!(
        read_source(&s1, MIB + 8 * KIB, 4 * KIB)
            == pattern(1, 6 * MIB)[(MIB + 8 * KIB) as usize..(MIB + 12 * KIB) as usize]
    );
    assert!(read_source(&s1, 64 * MIB - 4 * KIB, 4 * KIB) == pattern(3, 4 * KIB));

    let base = BackupId::new_random();
    let since = UnchangedSince {
        snapshot: "s1".into(),
        backup: base,
    };
    let s2 = RbdSource::open(&io, &name, "s2", Some(since.clone())).expect("open s2");
    assert_eq!(s2.size(), 72 * MIB);
    assert_eq!(s2.unchanged_since(), Some(base));
    let changed = s2.changed_bytes().expect("changed");
    println!("s1 → s2: {changed} bytes changed");
    assert!(changed < 8 * MIB, "{changed}");
    for (offset, len, unchanged) in [
        (0, MIB, true),
        (MIB, 64 * KIB, false),
        (MIB + 8 * KIB, 4 * KIB, false),
        (MIB + 12 * KIB, 4 * KIB, true),
        (3 * MIB, 4 * KIB, false),
        (3 * MIB + 4 * KIB, 4 * KIB, true),
        (4 * MIB, 4 * MIB, false),
        (5 * MIB, 4 * KIB, false),
        // Past the discarded object's end at s1: zeros before and after.
        (6 * MIB, 4 * KIB, true),
        (20 * MIB, 4 * KIB, true),
        (40 * MIB, 4 * KIB, false),
        (50 * MIB, MIB, true),
        (63 * MIB, MIB, true),
        (64 * MIB - 4 * KIB, 8 * KIB, false),
        (66 * MIB, 4 * KIB, false),
        (70 * MIB, 4 * KIB, false),
        (0, 0, false),
    ] {
        assert_eq!(
            s2.unchanged(offset, len),
            unchanged,
            "unchanged({offset}, {len})"
        );
    }
    assert!(read_source(&s2, 4 * MIB, 4 * KIB).iter().all(|&b| b == 0));
    assert!(read_source(&s2, 3 * MIB, 4 * KIB).iter().all(|&b| b == 0));
    assert!(read_source(&s2, 70 * MIB, 4 * KIB) == pattern(6, 4 * KIB));
    assert!(read_source(&s2, MIB + 8 * KIB, 4 * KIB) == pattern(4, 4 * KIB));
    // The discarded object holds no data any more.
    let after = s2.next_data(4 * MIB).expect("next").expect("some");
    assert!(after.0 >= 8 * MIB, "{after:?}");
    drop((s1, s2));

    // A base snapshot that is gone, or newer than the one read: refused.
    let gone = UnchangedSince {
        snapshot: "nosuch".into(),
        backup: base,
    };
    assert!(matches!(
        RbdSource::open(&io, &name, "s2", Some(gone)),
        Err(VolumeError::Rbd { .. })
    ));
    let newer = UnchangedSince {
        snapshot: "s2".into(),
        backup: base,
    };
    assert!(RbdSource::open(&io, &name, "s1", Some(newer)).is_err());
    // A missing snapshot to read.
    assert!(matches!(
        RbdSource::open(&io, &name, "nosuch", None),
        Err(VolumeError::Ceph(e)) if e.is_not_found()
    ));
}

#[test]
fn new_target_image_is_fresh_and_removed_unless_finished() {
    let Some(io) = volumes("new_target_image") else {
        return;
    };
    let name = unique("new");
    let _guard = Guard {
        io: &io,
        name: name.clone(),
    };
    let exists = || rbd::list(&io).expect("list").iter().any(|i| i.name == name);

    let target = RbdTarget::create(&io, &name, 8 * MIB).expect("create");
    assert!(target.is_fresh());
    assert_eq!(target.size(), 8 * MIB);
    assert_eq!(target.label(), format!("rbd:volumes/{name}"));
    target
        .write_at(&pattern(1, 4 * KIB), 4 * KIB)
        .expect("write");
    assert!(exists());
    drop(target);
    assert!(!exists(), "an unfinished new image is removed");

    let target = RbdTarget::create(&io, &name, 8 * MIB).expect("create");
    target
        .write_at(&pattern(2, 8 * KIB), 4 * MIB)
        .expect("write");
    target.zero(0, MIB).expect("zero is a no-op");
    Box::new(target).finish().expect("finish");
    let image = Image::open(&io, &name).expect("open");
    assert_eq!(image.size().expect("size"), 8 * MIB);
    assert!(read(&image, 4 * MIB, 8 * KIB) == pattern(2, 8 * KIB));
    assert!(read(&image, 0, 4 * MIB).iter().all(|&b| b == 0));
    drop(image);
    assert!(
        RbdTarget::create(&io, &name, MIB).is_err(),
        "an existing image is not created again"
    );
    assert!(exists(), "and a failed create leaves it alone");
}

#[test]
fn existing_target_image_is_zeroed_exactly_and_must_be_large_enough() {
    let Some(io) = volumes("existing_target_image") else {
        return;
    };
    let (guard, image) = create(&io, "old", 16 * MIB);
    let old = pattern(9, 16 * MIB);
    image.write(0, &old).expect("fill");

    match RbdTarget::open_existing(&io, &guard.name, 16 * MIB + 1) {
        Err(VolumeError::TooSmall {
            target,
            target_size,
            needed,
        }) => {
            assert_eq!(target, format!("rbd:volumes/{}", guard.name));
            assert_eq!((target_size, needed), (16 * MIB, 16 * MIB + 1));
        }
        other => panic!("expected TooSmall: {other:?}"),
    }

    let data_size = 8 * MIB + 6 * KIB;
    let target = RbdTarget::open_existing(&io, &guard.name, data_size).expect("open");
    assert!(!target.is_fresh());
    assert_eq!(target.size(), 16 * MIB);
    let new = pattern(10, 64 * KIB);
    target.write_at(&new, 0).expect("write");
    // Unaligned and small: still exact.
    target.zero(64 * KIB + 512, 4 * KIB).expect("zero");
    target.zero(MIB, 3 * MIB).expect("zero");
    Box::new(target).finish().expect("finish");

    let got = read(&image, 0, 16 * MIB);
    let zero = |from: u64, to: u64| got[from as usize..to as usize].iter().all(|&b| b == 0);
    let same =
        |from: u64, to: u64| got[from as usize..to as usize] == old[from as usize..to as usize];
    assert!(got[..new.len()] == new[..]);
    assert!(same(64 * KIB, 64 * KIB + 512));
    assert!(zero(64 * KIB + 512, 68 * KIB + 512));
    assert!(same(68 * KIB + 512, MIB));
    assert!(zero(MIB, 4 * MIB));
    assert!(same(4 * MIB, data_size));
    assert!(zero(data_size, 16 * MIB), "the tail is zeroed");
    assert_eq!(image.size().expect("size"), 16 * MIB, "its size is kept");
}

/// [`ember_ceph::dev_cluster::pattern`] with a `u64` length.
fn pattern(seed: u64, len: u64) -> Vec<u8> {
    ember_ceph::dev_cluster::pattern(seed, len as usize)
}
