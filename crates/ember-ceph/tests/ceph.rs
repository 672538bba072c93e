//! The bindings against a real Ceph cluster: the one `CEPH_CONF` names, or
//! else the throw-away cluster of `shared/ceph/ceph-up.sh` (started here if
//! it is not running). Without the Ceph binaries (or built without
//! librados) the tests skip, saying why — unless `EMBER_REQUIRE_CEPH=1`,
//! as in CI, where that is a failure.
//!
//! Every test uses its own uuid-named images and objects, so they run in
//! parallel, and removes them even when it fails.

use ember_ceph::dev_cluster::{pattern, unique_name as unique};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ember_ceph::{
    rbd, CephConfig, CephError, CreateOptions, DiffError, DiffExtent, DiffOptions, Features, Image,
    IoCtx, ReadOp, WriteOp, WriteQueue, XattrCmp,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

// ---------------------------------------------------------------- cluster

/// The cluster the tests use.
type Cluster = ember_ceph::dev_cluster::DevCluster;

/// The cluster, or `None` (after printing why) when the tests must skip.
fn cluster(test: &str) -> Option<&'static Cluster> {
    ember_ceph::dev_cluster::for_test(test)
}

/// Test helpers on the shared cluster.
trait ClusterExt {
    /// An [`IoCtx`] on `pool` as the admin user.
    fn connect(&self, pool: &str) -> IoCtx;
    /// Runs the `rbd` CLI on this cluster; its stdout.
    fn rbd_cli(&self, args: &[&str]) -> String;
}

impl ClusterExt for Cluster {
    fn connect(&self, pool: &str) -> IoCtx {
        self.config(pool)
            .connect()
            .unwrap_or_else(|e| panic!("connect: {e}"))
    }

    fn rbd_cli(&self, args: &[&str]) -> String {
        self.cli("rbd", args)
    }
}

// ---------------------------------------------------------------- helpers

fn read_at(image: &Image, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0xAAu8; len];
    let got = image
        .read(offset, &mut buf)
        .unwrap_or_else(|e| panic!("read: {e}"));
    assert_eq!(got, len, "short read at {offset}");
    buf
}

fn is_zero(buf: &[u8]) -> bool {
    buf.iter().all(|&b| b == 0)
}

/// Removes an image, its snapshots (unprotected first) and its clones'
/// leftovers on drop, ignoring errors: the clean-up of a failed test.
struct ImageGuard<'a> {
    io: &'a IoCtx,
    name: String,
}

impl<'a> ImageGuard<'a> {
    /// Creates the image and guards it.
    fn create(io: &'a IoCtx, name: &str, size: u64, opts: &CreateOptions) -> Self {
        rbd::create(io, name, size, opts).unwrap_or_else(|e| panic!("create: {e}"));
        ImageGuard {
            io,
            name: name.to_string(),
        }
    }

    fn open(&self) -> Image {
        Image::open(self.io, &self.name).unwrap_or_else(|e| panic!("open: {e}"))
    }
}

impl Drop for ImageGuard<'_> {
    fn drop(&mut self) {
        ember_ceph::dev_cluster::remove_image(self.io, &self.name);
    }
}

/// Removes objects on drop, ignoring errors.
struct ObjectGuard<'a> {
    io: &'a IoCtx,
    names: Vec<String>,
}

impl Drop for ObjectGuard<'_> {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = self.io.remove(name);
        }
    }
}

fn assert_send<T: Send>() {}
fn assert_sync<T: Sync>() {}

// ---------------------------------------------------------------- RBD

#[test]
fn handles_have_the_documented_thread_bounds() {
    assert_send::<ember_ceph::Rados>();
    assert_sync::<ember_ceph::Rados>();
    assert_send::<IoCtx>();
    assert_sync::<IoCtx>();
    assert_send::<Image>();
    let versions = (ember_ceph::rados_version(), rbd::rbd_version());
    if ember_ceph::LINKED {
        assert!(
            versions.0 .0 >= 3 && versions.1 .0 >= 1,
            "library versions {versions:?}"
        );
    }
    println!("librados {:?}, librbd {:?}", versions.0, versions.1);
    if !ember_ceph::LINKED {
        // Built without the libraries: every call says so.
        let err = CephConfig::new("/nonexistent/ceph.conf", "admin", "volumes")
            .connect()
            .expect_err("stub");
        assert_eq!(err.errno(), Some(38), "{err}");
        assert!(
            err.to_string().contains("built without librados/librbd"),
            "{err}"
        );
    }
}

#[test]
fn image_lifecycle_write_read_resize_discard_remove() {
    let Some(cluster) = cluster("image_lifecycle") else {
        return;
    };
    let io = cluster.connect("volumes");
    let name = unique("life");
    let guard = ImageGuard::create(&io, &name, 64 * MIB, &CreateOptions::default());

    // Created: listed by the bindings and by the rbd CLI.
    let listed = rbd::list(&io).expect("list");
    assert!(
        listed
            .iter()
            .any(|spec| spec.name == name && !spec.id.is_empty()),
        "{name} not in {listed:?}"
    );
    assert!(cluster
        .rbd_cli(&["ls", "volumes"])
        .lines()
        .any(|l| l == name));
    assert!(cluster
        .rbd_cli(&["info", &format!("volumes/{name}")])
        .contains("size 64 MiB"));

    let image = guard.open();
    let info = image.stat().expect("stat");
    assert_eq!(
        (info.size, info.object_size, info.order, info.num_objects),
        (64 * MIB, 4 * MIB, 22, 16)
    );
    assert!(image
        .features()
        .expect("features")
        .contains(Features::LAYERING | Features::EXCLUSIVE_LOCK));

    // Unwritten space reads as zeros; data reads back, also across objects.
    assert!(is_zero(&read_at(&image, 10 * MIB, 64 * KIB as usize)));
    let blocks = [
        (0, 4 * KIB),
        (4 * MIB - 2 * KIB, 8 * KIB),
        (33 * MIB + 123, 3 * MIB),
        (64 * MIB - 4 * KIB, 4 * KIB),
    ];
    for (i, &(offset, len)) in blocks.iter().enumerate() {
        image
            .write(offset, &pattern(i as u64, len as usize))
            .expect("write");
    }
    image.flush().expect("flush");
    for (i, &(offset, len)) in blocks.iter().enumerate() {
        assert!(
            read_at(&image, offset, len as usize) == pattern(i as u64, len as usize),
            "block {i}"
        );
    }

    // A read across the end is short, one at the end fails (EINVAL, as
    // librbd has it); a write past the end is refused.
    let mut tail = vec![0u8; 16 * KIB as usize];
    assert_eq!(
        image
            .read(64 * MIB - 4 * KIB, &mut tail)
            .expect("read tail"),
        4 * KIB as usize
    );
    assert_eq!(
        image
            .read(64 * MIB, &mut tail)
            .expect_err("read at end")
            .errno(),
        Some(22)
    );
    match image.write(64 * MIB - 4 * KIB, &[7u8; 8192]) {
        Err(e @ (CephError::Short { .. } | CephError::Call { .. })) => {
            println!("write past the end: {e}")
        }
        other => panic!("write past the end: {other:?}"),
    }

    // Grow, write in the new space; shrink, and the tail is gone.
    image.resize(96 * MIB).expect("grow");
    assert_eq!(image.size().expect("size"), 96 * MIB);
    image
        .write(90 * MIB, &pattern(9, 64 * KIB as usize))
        .expect("write grown");
    assert!(read_at(&image, 90 * MIB, 64 * KIB as usize) == pattern(9, 64 * KIB as usize));
    image.resize(48 * MIB).expect("shrink");
    assert_eq!(image.size().expect("size"), 48 * MIB);
    assert_eq!(
        image
            .read(48 * MIB - 8 * KIB, &mut tail)
            .expect("read across shrunk end"),
        8 * KIB as usize
    );
    assert!(read_at(&image, 33 * MIB + 123, 3 * MIB as usize) == pattern(2, 3 * MIB as usize));

    // Discard whole objects and write zeroes to an unaligned range: both
    // read back as zeros, and the data around them stays.
    image
        .write(8 * MIB, &pattern(20, 8 * MIB as usize))
        .expect("write 8..16 MiB");
    image.discard(8 * MIB, 4 * MIB).expect("discard");
    assert!(
        is_zero(&read_at(&image, 8 * MIB, 4 * MIB as usize)),
        "discarded object reads as zeros"
    );
    image
        .write_zeroes(12 * MIB + 5 * KIB, 6 * KIB)
        .expect("write_zeroes");
    assert!(is_zero(&read_at(
        &image,
        12 * MIB + 5 * KIB,
        6 * KIB as usize
    )));
    let around = read_at(&image, 12 * MIB, 5 * KIB as usize);
    assert!(
        around == pattern(20, 8 * MIB as usize)[4 * MIB as usize..(4 * MIB + 5 * KIB) as usize]
    );
    // A small unaligned discard is below librbd's discard granularity
    // (64 KiB): it may leave the data (observed: it does). Whatever it does,
    // it must not fail or touch anything outside the range.
    image
        .discard(14 * MIB + 4 * KIB, 4 * KIB)
        .expect("small discard");
    let small = read_at(&image, 14 * MIB + 4 * KIB, 4 * KIB as usize);
    println!(
        "4 KiB discard inside an object reads back as zeros: {}",
        is_zero(&small)
    );
    let after = read_at(&image, 14 * MIB + 8 * KIB, 4 * KIB as usize);
    assert!(
        after
            == pattern(20, 8 * MIB as usize)
                [(6 * MIB + 8 * KIB) as usize..(6 * MIB + 12 * KIB) as usize]
    );

    // Removing an open image fails (EBUSY); closed, it goes.
    let busy = rbd::remove(&io, &name).expect_err("remove while open");
    assert!(busy.is_busy(), "{busy}");
    image.close().expect("close");
    rbd::remove(&io, &name).expect("remove");
    assert!(!rbd::list(&io)
        .expect("list")
        .iter()
        .any(|spec| spec.name == name));

    // A missing image: ENOENT, named.
    let missing = Image::open(&io, &name).expect_err("open removed image");
    assert!(missing.is_not_found());
    assert_eq!(
        missing.to_string(),
        format!("rbd_open volumes/{name}: No such file or directory (errno 2)")
    );
    let missing = rbd::remove(&io, &name).expect_err("remove twice");
    assert!(missing.is_not_found(), "{missing}");
}

#[test]
fn image_moves_to_another_thread() {
    let Some(cluster) = cluster("image_moves_to_another_thread") else {
        return;
    };
    let io = cluster.connect("volumes");
    let guard = ImageGuard::create(&io, &unique("thread"), 8 * MIB, &CreateOptions::default());
    let image = guard.open();
    let data = pattern(5, 64 * KIB as usize);
    let expected = data.clone();
    let image = std::thread::spawn(move || {
        image.write(MIB, &data).expect("write in thread");
        image
    })
    .join()
    .expect("thread");
    assert!(read_at(&image, MIB, 64 * KIB as usize) == expected);
}

#[test]
fn create_options_striping_and_features() {
    let Some(cluster) = cluster("create_options") else {
        return;
    };
    let io = cluster.connect("volumes");
    let opts = CreateOptions {
        features: Some(
            Features::LAYERING
                | Features::STRIPINGV2
                | Features::EXCLUSIVE_LOCK
                | Features::JOURNALING,
        ),
        order: Some(20),
        stripe_unit: Some(64 * KIB),
        stripe_count: Some(4),
        data_pool: None,
    };
    let guard = ImageGuard::create(&io, &unique("striped"), 16 * MIB, &opts);
    let image = guard.open();
    let features = image.features().expect("features");
    assert!(
        features.contains(Features::STRIPINGV2 | Features::EXCLUSIVE_LOCK | Features::JOURNALING),
        "{features:?}"
    );
    assert!(!features.contains(Features::OBJECT_MAP), "{features:?}");
    assert_eq!(image.striping().expect("striping"), (64 * KIB, 4));
    assert_eq!(image.stat().expect("stat").object_size, MIB);
    // Data spanning many stripe units reads back.
    let data = pattern(11, 3 * MIB as usize + 4321);
    image.write(MIB + 17, &data).expect("write");
    assert!(read_at(&image, MIB + 17, data.len()) == data);
    drop(image);

    // Journaling without exclusive-lock is refused, by name.
    let bad = CreateOptions {
        features: Some(Features::LAYERING | Features::JOURNALING),
        ..CreateOptions::default()
    };
    let name = unique("nolock");
    let err = rbd::create(&io, &name, 16 * MIB, &bad).expect_err("journaling needs exclusive-lock");
    let _ = rbd::remove(&io, &name);
    assert_eq!(err.errno(), Some(22), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "rbd_create4 volumes/{name}: Invalid argument (errno 22)"
        )),
        "{err}"
    );
}

#[test]
fn snapshots_create_list_read_remove() {
    let Some(cluster) = cluster("snapshots") else {
        return;
    };
    let io = cluster.connect("volumes");
    let name = unique("snaps");
    let guard = ImageGuard::create(&io, &name, 16 * MIB, &CreateOptions::default());
    let mut image = guard.open();
    let len = 64 * KIB as usize;
    let at = 5 * MIB;

    image.write(at, &pattern(1, len)).expect("write v1");
    image.snap_create("one").expect("snap one");
    image.write(at, &pattern(2, len)).expect("write v2");
    image.resize(32 * MIB).expect("grow");
    image.snap_create("two").expect("snap two");
    image.write(at, &pattern(3, len)).expect("write v3");

    let snaps = image.snap_list().expect("snap_list");
    let names: Vec<&str> = snaps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["one", "two"]);
    assert!(snaps[0].id < snaps[1].id);
    assert_eq!((snaps[0].size, snaps[1].size), (16 * MIB, 32 * MIB));
    let dup = image.snap_create("one").expect_err("duplicate snapshot");
    assert!(dup.is_exists(), "{dup}");

    // Reading at a snapshot sees the data of then: a read-only handle…
    let old = Image::open_read_only(&io, &name, Some("one")).expect("open at one");
    assert!(read_at(&old, at, len) == pattern(1, len));
    assert_eq!(old.size().expect("size at one"), 16 * MIB);
    let erofs = old.write(at, &[1u8; 512]).expect_err("write to a snapshot");
    assert_eq!(erofs.errno(), Some(30), "{erofs}");
    drop(old);
    // … or the same handle set to the snapshot, and back to the head.
    image.snap_set(Some("two")).expect("snap_set two");
    assert!(read_at(&image, at, len) == pattern(2, len));
    assert_eq!(image.size().expect("size at two"), 32 * MIB);
    assert!(
        image.write(at, &[1u8; 512]).is_err(),
        "writes fail while a snapshot is set"
    );
    image.snap_set(None).expect("snap_set head");
    assert!(read_at(&image, at, len) == pattern(3, len));
    let missing = image
        .snap_set(Some("nosuch"))
        .expect_err("unknown snapshot");
    assert!(missing.is_not_found(), "{missing}");
    assert!(Image::open_read_only(&io, &name, Some("nosuch"))
        .expect_err("open at unknown snap")
        .is_not_found());

    // An image with snapshots cannot be removed.
    image.snap_remove("one").expect("remove one");
    let names: Vec<String> = image
        .snap_list()
        .expect("snap_list")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["two"]);
    assert!(image
        .snap_remove("one")
        .expect_err("remove twice")
        .is_not_found());
    image.close().expect("close");
    let err = rbd::remove(&io, &name).expect_err("remove with a snapshot");
    assert_eq!(err.errno(), Some(39), "ENOTEMPTY expected: {err}");
    let image = guard.open();
    image.snap_remove("two").expect("remove two");
    assert!(image.snap_list().expect("snap_list").is_empty());
}

#[test]
fn remove_with_snapshots_takes_protected_ones_too() {
    let Some(cluster) = cluster("remove_with_snapshots") else {
        return;
    };
    let io = cluster.connect("volumes");
    let name = unique("snapped");
    let guard = ImageGuard::create(&io, &name, 8 * MIB, &CreateOptions::default());
    let image = guard.open();
    image.write(MIB, &pattern(1, 4096)).expect("write");
    image.snap_create("plain").expect("snap plain");
    image.snap_create("kept").expect("snap kept");
    image.snap_protect("kept").expect("protect");
    image.close().expect("close");

    rbd::remove_with_snapshots(&io, &name).expect("remove with snapshots");
    let gone = Image::open(&io, &name).expect_err("open a removed image");
    assert!(gone.is_not_found(), "{gone}");
    let again = rbd::remove_with_snapshots(&io, &name).expect_err("remove twice");
    assert!(again.is_not_found(), "{again}");
}

/// Writes scattered 4 KiB blocks between two snapshots and checks what the
/// diff reports, exact and by whole objects.
fn diff_between_snapshots(io: &IoCtx, features: Features) {
    let name = unique("diff");
    let opts = CreateOptions {
        features: Some(features),
        ..CreateOptions::default()
    };
    let guard = ImageGuard::create(io, &name, 256 * MIB, &opts);
    let mut image = guard.open();
    // Base data in a few objects, then snapshot a.
    image
        .write(0, &pattern(100, 8 * MIB as usize))
        .expect("base");
    image
        .write(100 * MIB, &pattern(101, 4 * MIB as usize))
        .expect("base");
    image.snap_create("a").expect("snap a");
    // Scattered 4 KiB blocks: inside base data, in fresh objects, at an
    // object's last block and at the image's last block.
    let blocks = [
        MIB + 4 * KIB,
        37 * MIB,
        100 * MIB + 12 * KIB,
        200 * MIB - 4 * KIB,
        256 * MIB - 4 * KIB,
    ];
    for (i, &offset) in blocks.iter().enumerate() {
        image
            .write(offset, &pattern(200 + i as u64, 4 * KIB as usize))
            .expect("block");
    }
    image.snap_create("b").expect("snap b");
    // After b: must not show in a → b.
    image
        .write(150 * MIB, &pattern(300, 4 * KIB as usize))
        .expect("after b");
    image.discard(100 * MIB, 4 * MIB).expect("discard after b");

    image.snap_set(Some("b")).expect("snap_set b");
    let exact = image
        .diff(Some("a"), DiffOptions::default())
        .expect("diff a..b");
    println!("{features:?}: exact diff a..b: {exact:?}");
    assert!(exact.iter().all(|e| e.exists && e.len > 0));
    for &offset in &blocks {
        let covered = exact
            .iter()
            .any(|e| e.offset <= offset && offset + 4 * KIB <= e.offset + e.len);
        assert!(covered, "block at {offset} not covered by {exact:?}");
    }
    // Nothing far from a written block. In an object that existed at a,
    // the extent is exactly the block written (RADOS records the write
    // ranges of cloned objects); an object created since is reported from
    // its start to its end (its size), zeros included.
    let existed_at_a = |offset: u64| offset < 8 * MIB || (100 * MIB..104 * MIB).contains(&offset);
    for e in &exact {
        let object = e.offset / (4 * MIB);
        assert_eq!(
            object,
            (e.offset + e.len - 1) / (4 * MIB),
            "extent {e:?} spans objects"
        );
        let block = blocks.iter().find(|&&b| {
            b / (4 * MIB) == object && e.offset <= b && b + 4 * KIB <= e.offset + e.len
        });
        assert!(
            block.is_some(),
            "extent {e:?} holds no written block of {blocks:?}"
        );
        if existed_at_a(e.offset) {
            assert_eq!(
                Some(&e.offset),
                block,
                "extent {e:?} in an object of a is not exactly the block"
            );
            assert_eq!(e.len, 4 * KIB, "{e:?}");
        } else {
            assert_eq!(
                e.offset,
                object * 4 * MIB,
                "a new object's extent starts at the object: {e:?}"
            );
        }
    }

    // Whole objects: exactly the objects holding the blocks.
    let whole = image
        .diff(
            Some("a"),
            DiffOptions {
                whole_object: true,
                include_parent: false,
            },
        )
        .expect("whole");
    let objects: BTreeSet<u64> = blocks.iter().map(|b| b / (4 * MIB)).collect();
    let reported: BTreeSet<u64> = whole.iter().map(|e| e.offset / (4 * MIB)).collect();
    assert_eq!(reported, objects, "{whole:?}");
    assert!(
        whole
            .iter()
            .all(|e| e.len == 4 * MIB && e.offset % (4 * MIB) == 0 && e.exists),
        "{whole:?}"
    );

    // From the beginning of time to b: everything written up to b.
    let all = image.diff(None, DiffOptions::default()).expect("diff ..b");
    let total: u64 = all.iter().map(|e| e.len).sum();
    assert!(total >= 12 * MIB, "{all:?}");
    assert!(
        !all.iter()
            .any(|e| e.offset <= 150 * MIB && 150 * MIB < e.offset + e.len),
        "{all:?}"
    );

    // b → head: the write after b, and the discarded object as a hole.
    image.snap_set(None).expect("head");
    let since_b = image
        .diff(Some("b"), DiffOptions::default())
        .expect("diff b..head");
    println!("{features:?}: diff b..head: {since_b:?}");
    // (150 MiB is in a new object: reported from the object's start.)
    assert!(
        since_b.contains(&DiffExtent {
            offset: 148 * MIB,
            len: 2 * MIB + 4 * KIB,
            exists: true
        }),
        "{since_b:?}"
    );
    assert!(
        since_b.contains(&DiffExtent {
            offset: 100 * MIB,
            len: 4 * MIB,
            exists: false
        }),
        "{since_b:?}"
    );
    assert_eq!(since_b.len(), 2, "{since_b:?}");
    // Same snapshot at both ends: nothing.
    image.snap_set(Some("b")).expect("snap_set b");
    assert!(image
        .diff(Some("b"), DiffOptions::default())
        .expect("b..b")
        .is_empty());
    // Later snapshot as the start: refused.
    image.snap_set(Some("a")).expect("snap_set a");
    let err = image
        .diff(Some("b"), DiffOptions::default())
        .expect_err("b..a");
    assert_eq!(err.errno(), Some(22), "{err}");
    let err = image
        .diff(Some("nosuch"), DiffOptions::default())
        .expect_err("unknown snapshot");
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("volumes/{name}@a from nosuch")),
        "{err}"
    );

    // A callback error stops the iteration and comes back as such.
    image.snap_set(Some("b")).expect("snap_set b");
    let mut calls = 0;
    let result = image.diff_iterate(Some("a"), 0, 256 * MIB, DiffOptions::default(), |_| {
        calls += 1;
        Err("enough")
    });
    match result {
        Err(DiffError::Callback("enough")) => assert_eq!(calls, 1),
        other => panic!("callback error: {other:?}"),
    }
    // Where callbacks run: the calling thread or librados' (one at a time).
    let caller = std::thread::current().id();
    let mut threads = Vec::new();
    image
        .diff_iterate(None, 0, 256 * MIB, DiffOptions::default(), |_| {
            threads.push(std::thread::current().id());
            Ok::<(), ()>(())
        })
        .expect("diff with thread ids");
    let elsewhere = threads.iter().filter(|&&t| t != caller).count();
    println!(
        "{features:?}: {} callbacks, {elsewhere} of them off the calling thread",
        threads.len()
    );
    // A panicking callback resumes unwinding in the caller.
    println!("{features:?}: the next panic message (\"callback panic\") is expected");
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = image.diff_iterate(
            Some("a"),
            0,
            256 * MIB,
            DiffOptions::default(),
            |_| -> Result<(), ()> { panic!("callback panic") },
        );
    }));
    assert!(panicked.is_err());
    // The handle still works afterwards.
    assert_eq!(
        image
            .diff(Some("a"), DiffOptions::default())
            .expect("diff again"),
        exact
    );
}

#[test]
fn diff_iterate_with_fast_diff() {
    let Some(cluster) = cluster("diff_iterate_with_fast_diff") else {
        return;
    };
    let io = cluster.connect("volumes");
    diff_between_snapshots(&io, Features::DEFAULT);
}

#[test]
fn diff_iterate_without_object_map() {
    let Some(cluster) = cluster("diff_iterate_without_object_map") else {
        return;
    };
    let io = cluster.connect("volumes");
    diff_between_snapshots(&io, Features::LAYERING);
}

#[test]
fn clone_of_a_protected_snapshot() {
    let Some(cluster) = cluster("clone") else {
        return;
    };
    let io = cluster.connect("volumes");
    let parent_name = unique("parent");
    let child_name = unique("child");
    let parent_guard = ImageGuard::create(&io, &parent_name, 32 * MIB, &CreateOptions::default());
    let parent = parent_guard.open();
    parent
        .write(4 * MIB, &pattern(1, MIB as usize))
        .expect("parent data");
    parent
        .write(12 * MIB, &pattern(3, MIB as usize))
        .expect("parent data");
    parent.snap_create("base").expect("snap");
    assert!(!parent.snap_is_protected("base").expect("is_protected"));
    parent.snap_protect("base").expect("protect");
    assert!(parent.snap_is_protected("base").expect("is_protected"));
    let err = parent
        .snap_remove("base")
        .expect_err("remove a protected snapshot");
    assert!(err.is_busy(), "{err}");

    rbd::clone(
        &io,
        &parent_name,
        "base",
        &io,
        &child_name,
        &CreateOptions::default(),
    )
    .expect("clone");
    let child_guard = ImageGuard {
        io: &io,
        name: child_name.clone(),
    };
    let child = child_guard.open();
    assert_eq!(child.size().expect("size"), 32 * MIB);
    // The clone reads the parent's data; its own writes stay its own.
    assert!(read_at(&child, 4 * MIB, MIB as usize) == pattern(1, MIB as usize));
    child
        .write(4 * MIB + 8 * KIB, &pattern(2, 4 * KIB as usize))
        .expect("child write");
    assert!(read_at(&child, 4 * MIB + 8 * KIB, 4 * KIB as usize) == pattern(2, 4 * KIB as usize));
    assert!(read_at(&parent, 4 * MIB, MIB as usize) == pattern(1, MIB as usize));
    // Its diff from the beginning includes the parent's data only when
    // asked. (The child's first write to an object copies the parent's
    // object up, so its own diff covers that whole object's data.)
    let covers = |extents: &[DiffExtent], offset: u64| {
        extents
            .iter()
            .any(|e| e.offset <= offset && offset < e.offset + e.len)
    };
    let own = child.diff(None, DiffOptions::default()).expect("diff");
    let with_parent = child
        .diff(
            None,
            DiffOptions {
                include_parent: true,
                whole_object: false,
            },
        )
        .expect("diff");
    println!("clone diff: own {own:?}, with parent {with_parent:?}");
    assert!(
        covers(&own, 4 * MIB + 8 * KIB) && !covers(&own, 12 * MIB),
        "{own:?}"
    );
    assert!(
        covers(&with_parent, 4 * MIB + 8 * KIB) && covers(&with_parent, 12 * MIB),
        "{with_parent:?}"
    );
    assert!(read_at(&child, 12 * MIB, MIB as usize) == pattern(3, MIB as usize));

    // The snapshot cannot be unprotected while the clone exists.
    let err = parent
        .snap_unprotect("base")
        .expect_err("unprotect with a clone");
    assert!(err.is_busy(), "{err}");
    drop(child);
    drop(child_guard);
    parent.snap_unprotect("base").expect("unprotect");
    parent.snap_remove("base").expect("snap remove");
    drop(parent);
    drop(parent_guard);
    assert!(!rbd::list(&io)
        .expect("list")
        .iter()
        .any(|s| s.name == parent_name || s.name == child_name));
}

// ---------------------------------------------------------------- RADOS

#[test]
fn rados_objects_write_read_stat_list_remove() {
    let Some(cluster) = cluster("rados_objects") else {
        return;
    };
    let io = cluster.connect("backups");
    assert_eq!(io.pool(), "backups");
    let prefix = unique("obj");
    let names: Vec<String> = (0..3).map(|i| format!("{prefix}-{i}")).collect();
    let _guard = ObjectGuard {
        io: &io,
        names: names.clone(),
    };
    let data = pattern(7, 3 * MIB as usize + 17);
    let before = std::time::SystemTime::now() - Duration::from_secs(5);
    io.write_full(&names[0], &data).expect("write_full");
    io.write_full(&names[1], b"small").expect("write_full");
    io.write_full(&names[2], b"").expect("write_full empty");

    let stat = io.stat(&names[0]).expect("stat");
    assert_eq!(stat.size, data.len() as u64);
    assert!(stat.mtime >= before, "{stat:?}");
    assert_eq!(io.stat(&names[2]).expect("stat empty").size, 0);
    assert!(io.read_full(&names[0]).expect("read_full") == data);
    assert!(io.read_full(&names[2]).expect("read_full empty").is_empty());
    // Ranges: inside, across the end, past the end.
    let mut buf = vec![0u8; 100_000];
    assert_eq!(
        io.read(&names[0], 1_000_000, &mut buf).expect("read"),
        buf.len()
    );
    assert!(buf[..] == data[1_000_000..1_100_000]);
    let n = io
        .read(&names[0], data.len() as u64 - 10, &mut buf)
        .expect("read tail");
    assert_eq!(n, 10);
    assert!(buf[..10] == data[data.len() - 10..]);
    assert_eq!(
        io.read(&names[0], data.len() as u64 + 5, &mut buf)
            .expect("read past"),
        0
    );
    // write_full replaces, write patches.
    io.write_full(&names[1], b"replaced content")
        .expect("replace");
    io.write(&names[1], 9, b"CONTENT").expect("patch");
    assert_eq!(io.read_full(&names[1]).expect("read"), b"replaced CONTENT");
    // xattrs.
    io.set_xattr(&names[1], "ember.kind", b"chunk")
        .expect("setxattr");
    assert_eq!(
        io.get_xattr(&names[1], "ember.kind").expect("getxattr"),
        b"chunk"
    );
    let big = pattern(8, 4000);
    io.set_xattr(&names[1], "ember.big", &big)
        .expect("setxattr big");
    assert!(io.get_xattr(&names[1], "ember.big").expect("getxattr big") == big);
    assert!(io.get_xattr(&names[1], "ember.nosuch").is_err());

    // Listing finds them all.
    let listed: BTreeSet<String> = io
        .list_objects()
        .expect("list")
        .map(|r| r.expect("list entry"))
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert_eq!(listed, names.iter().cloned().collect::<BTreeSet<_>>());
    // An abandoned listing is closed without trouble.
    let mut partial = io.list_objects().expect("list");
    let _ = partial.next();
    drop(partial);

    // Remove; then stat, read and remove say "not found", by name.
    for name in &names {
        io.remove(name).expect("remove");
    }
    let err = io.stat(&names[0]).expect_err("stat removed");
    assert!(err.is_not_found());
    assert_eq!(
        err.to_string(),
        format!(
            "rados_stat backups/{}: No such file or directory (errno 2)",
            names[0]
        )
    );
    assert!(io
        .read_full(&names[0])
        .expect_err("read removed")
        .is_not_found());
    assert!(io
        .remove(&names[0])
        .expect_err("remove twice")
        .is_not_found());
    assert!(!io
        .list_objects()
        .expect("list")
        .map(|r| r.expect("entry"))
        .any(|n| n.starts_with(&prefix)));
    // Names C cannot carry are refused before any call.
    assert!(matches!(io.stat("a\0b"), Err(CephError::NulByte { .. })));
}

/// A write operation built for a test (allocation cannot fail with the
/// library linked).
fn write_op<'a>() -> WriteOp<'a> {
    WriteOp::new().expect("new write op")
}

fn read_op<'a>() -> ReadOp<'a> {
    ReadOp::new().expect("new read op")
}

#[test]
fn rados_compound_operations_check_and_change_atomically() {
    let Some(cluster) = cluster("rados_compound_operations") else {
        return;
    };
    let io = cluster.connect("backups");
    let name = unique("op");
    let _guard = ObjectGuard {
        io: &io,
        names: vec![name.clone()],
    };
    const T: &str = "ember.t";

    // Exclusive create with a first write; a second one fails, changing
    // nothing.
    write_op()
        .create(true)
        .write(0, b"first")
        .operate(&io, &name)
        .expect("create");
    let err = write_op()
        .create(true)
        .write(0, b"SECOND")
        .operate(&io, &name)
        .expect_err("exists");
    assert!(err.is_exists(), "{err}");
    assert_eq!(io.read_full(&name).expect("read"), b"first");

    // A failed comparison cancels every step; an absent attribute compares
    // as empty.
    let err = write_op()
        .cmp_xattr(T, XattrCmp::Ne, b"")
        .write_full(b"whole")
        .set_xattr(T, b"1")
        .operate(&io, &name)
        .expect_err("absent is empty");
    assert!(err.is_canceled(), "{err}");
    assert_eq!(io.read_full(&name).expect("read"), b"first");
    assert!(io.get_xattr(&name, T).is_err(), "no step took effect");
    write_op()
        .cmp_xattr(T, XattrCmp::Eq, b"")
        .write_full(b"whole")
        .set_xattr(T, b"1")
        .operate(&io, &name)
        .expect("absent equals empty");
    assert_eq!(io.read_full(&name).expect("read"), b"whole");
    assert_eq!(io.get_xattr(&name, T).expect("xattr"), b"1");

    // A checked read: one round trip, nothing read when the check fails.
    let mut buf = [0u8; 16];
    let got = read_op()
        .cmp_xattr(T, XattrCmp::Ne, b"")
        .read(1, &mut buf)
        .operate(&io, &name)
        .expect("checked read");
    assert_eq!(got, vec![4]);
    assert_eq!(&buf[..4], b"hole");
    let mut buf = [0u8; 16];
    let err = read_op()
        .cmp_xattr(T, XattrCmp::Eq, b"0")
        .read(0, &mut buf)
        .operate(&io, &name)
        .expect_err("check fails");
    assert!(err.is_canceled(), "{err}");

    // Compare-and-remove: a stale value keeps the object, the current one
    // removes it.
    let err = write_op()
        .cmp_xattr(T, XattrCmp::Eq, b"0")
        .remove()
        .operate(&io, &name)
        .expect_err("stale value");
    assert!(err.is_canceled(), "{err}");
    assert!(io.stat(&name).is_ok());
    write_op()
        .cmp_xattr(T, XattrCmp::Eq, b"1")
        .remove()
        .operate(&io, &name)
        .expect("remove");
    assert!(io.stat(&name).expect_err("removed").is_not_found());

    // On a missing object an existence check fails and creates nothing, as
    // do comparisons and checked reads.
    let err = write_op()
        .assert_exists()
        .set_xattr(T, b"2")
        .operate(&io, &name)
        .expect_err("missing");
    assert!(err.is_not_found(), "{err}");
    let err = write_op()
        .cmp_xattr(T, XattrCmp::Eq, b"")
        .remove()
        .operate(&io, &name)
        .expect_err("missing");
    assert!(err.is_not_found(), "{err}");
    let err = read_op()
        .cmp_xattr(T, XattrCmp::Ne, b"")
        .read(0, &mut buf)
        .operate(&io, &name)
        .expect_err("missing");
    assert!(err.is_not_found(), "{err}");
    assert!(io.stat(&name).expect_err("still missing").is_not_found());

    // Names C cannot carry are reported when the operation runs.
    let err = write_op()
        .set_xattr("a\0b", b"")
        .operate(&io, &name)
        .expect_err("NUL");
    assert!(matches!(err, CephError::NulByte { .. }), "{err}");
}

#[test]
fn rados_locks_are_exclusive_and_expire_unless_renewed() {
    let Some(cluster) = cluster("rados_locks") else {
        return;
    };
    let io = cluster.connect("backups");
    let name = unique("lock");
    let _guard = ObjectGuard {
        io: &io,
        names: vec![name.clone()],
    };
    const LOCK: &str = "ember.test";
    let hold = Duration::from_secs(3);

    io.lock_exclusive(&name, LOCK, "cookie-a", "a test", hold, false)
        .expect("lock");
    assert_eq!(io.stat(&name).expect("created").size, 0);
    let lockers = io.list_lockers(&name, LOCK).expect("lockers");
    assert_eq!(lockers.len(), 1, "{lockers:?}");
    assert_eq!(lockers[0].cookie, "cookie-a");
    assert!(lockers[0].client.starts_with("client."), "{lockers:?}");
    let err = io
        .lock_exclusive(&name, LOCK, "cookie-b", "a test", hold, false)
        .expect_err("held by another");
    assert!(err.is_busy(), "{err}");

    // Renewed, it outlives its first expiry; unrenewed, it expires: no
    // holder is listed and renewing fails.
    let started = Instant::now();
    while started.elapsed() < hold + Duration::from_secs(1) {
        io.lock_exclusive(&name, LOCK, "cookie-a", "a test", hold, true)
            .expect("renew");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(io.list_lockers(&name, LOCK).expect("lockers").len(), 1);
    std::thread::sleep(hold + Duration::from_millis(500));
    assert!(io.list_lockers(&name, LOCK).expect("lockers").is_empty());
    let err = io
        .lock_exclusive(&name, LOCK, "cookie-a", "a test", hold, true)
        .expect_err("expired");
    assert!(err.is_not_found(), "{err}");
    // Anyone may take an expired lock afresh.
    io.lock_exclusive(&name, LOCK, "cookie-b", "a test", hold, false)
        .expect("lock again");
    io.remove(&name).expect("remove");
    let err = io.list_lockers(&name, LOCK).expect_err("missing object");
    assert!(err.is_not_found(), "{err}");
}

// ---------------------------------------------------------------- connecting

/// Connecting must fail within the timeout, not hang.
fn assert_fails_fast(config: &CephConfig, what: &str) -> CephError {
    let started = Instant::now();
    let err = config.connect().expect_err(what);
    let took = started.elapsed();
    println!("{what}: {err} (after {:.2} s)", took.as_secs_f64());
    assert!(took < Duration::from_secs(20), "{what} took {took:?}");
    err
}

#[test]
fn wrong_user_or_key_fails_fast_and_clearly() {
    let Some(cluster) = cluster("wrong_user") else {
        return;
    };
    let timeout = Duration::from_secs(3);
    let dir = std::env::temp_dir().join(unique("keys"));
    std::fs::create_dir_all(&dir).expect("mkdir");

    // A user the cluster does not know (the keyring has no key for it).
    let user = unique("nouser");
    let config = cluster.config("volumes");
    let config = CephConfig {
        user: user.clone(),
        ..config
    }
    .with_connect_timeout(timeout);
    let err = assert_fails_fast(&config, "unknown user");
    assert_eq!(err.errno(), Some(13), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "rados_connect client.{user} (conf {}): Permission denied (errno 13)",
            cluster.conf.display()
        )),
        "{text}"
    );
    assert!(text.contains("check the user name and its key"), "{text}");
    // "client." given or not is the same user.
    let config = CephConfig {
        user: format!("client.{user}"),
        ..config
    };
    assert_eq!(
        assert_fails_fast(&config, "unknown client.user").errno(),
        Some(13)
    );

    // The admin user with a wrong key.
    let keyring = dir.join("wrong.keyring");
    std::fs::write(
        &keyring,
        "[client.admin]\n\tkey = AQBjzjRoAAAAABAAbGjbcZ3hiSIfh5HxbB1lEw==\n",
    )
    .expect("keyring");
    let config = cluster
        .config("volumes")
        .with_keyring(&keyring)
        .with_connect_timeout(timeout);
    let err = assert_fails_fast(&config, "wrong key");
    assert_eq!(err.errno(), Some(13), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("keyring {}", keyring.display())),
        "{err}"
    );

    // A keyring path that does not exist.
    let config = cluster
        .config("volumes")
        .with_keyring(dir.join("missing.keyring"))
        .with_connect_timeout(timeout);
    let err = assert_fails_fast(&config, "missing keyring");
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.to_string()
            .contains("no keyring with a key for this user"),
        "{err}"
    );

    // No monitor at the address.
    let conf = dir.join("ceph.conf");
    std::fs::write(
        &conf,
        "[global]\nmon host = 127.0.0.1:9\nauth client required = cephx\n",
    )
    .expect("conf");
    let config = CephConfig::new(&conf, "admin", "volumes")
        .with_keyring(&keyring)
        .with_connect_timeout(timeout);
    let started = Instant::now();
    let err = assert_fails_fast(&config, "no monitor");
    assert_eq!(err.errno(), Some(110), "ETIMEDOUT expected: {err}");
    assert!(
        started.elapsed() < timeout + Duration::from_secs(5),
        "the timeout was not applied"
    );
    assert!(
        err.to_string().contains("no monitor answered in time"),
        "{err}"
    );

    let config = CephConfig::new(dir.join("nosuch.conf"), "admin", "volumes");
    let err = assert_fails_fast(&config, "missing conf");
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.to_string().starts_with("rados_conf_read_file "),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_pool_fails_clearly() {
    let Some(cluster) = cluster("missing_pool") else {
        return;
    };
    let pool = unique("nopool");
    let err = assert_fails_fast(&cluster.config(&pool), "missing pool");
    assert!(err.is_not_found(), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("rados_ioctx_create pool {pool} as client.admin")),
        "{text}"
    );
    assert!(
        text.ends_with("No such file or directory (errno 2); the pool does not exist"),
        "{text}"
    );
}

#[test]
fn write_many_writes_scattered_pieces_asynchronously() {
    let Some(cluster) = cluster("write_many") else {
        return;
    };
    let io = cluster.connect("volumes");
    let name = unique("aio");
    let guard = ImageGuard::create(&io, &name, 32 * MIB, &CreateOptions::default());
    let image = guard.open();
    let pieces: Vec<(u64, Vec<u8>)> = (0..40u64)
        .map(|i| {
            (
                (i * 797 * KIB) % (32 * MIB - 64 * KIB),
                pattern(i, (i as usize % 7 + 1) * 4096),
            )
        })
        .collect();
    // Later pieces win where they overlap, as with sequential writes.
    let mut expected = vec![0u8; 32 * MIB as usize];
    for (offset, data) in &pieces {
        expected[*offset as usize..*offset as usize + data.len()].copy_from_slice(data);
    }
    let writes: Vec<(u64, &[u8])> = pieces.iter().map(|(o, d)| (*o, d.as_slice())).collect();
    // Non-overlapping pieces only are in flight together in any order;
    // overlapping ones are written with depth 1 to keep their order.
    image.write_many(&writes, 1).expect("write_many depth 1");
    assert!(read_at(&image, 0, 32 * MIB as usize) == expected);
    let disjoint: Vec<(u64, &[u8])> = (0..64u64)
        .map(|i| (i * 512 * KIB + 4 * KIB, &expected[..8192]))
        .collect();
    image
        .write_many(&disjoint, 16)
        .expect("write_many depth 16");
    for (offset, data) in &disjoint {
        assert!(read_at(&image, *offset, data.len()) == *data, "at {offset}");
    }
    // Past the end: refused, nothing written.
    let err = image
        .write_many(
            &[
                (0, &[9u8; 4096][..]),
                (32 * MIB - 4 * KIB, &[9u8; 8192][..]),
            ],
            4,
        )
        .expect_err("past the end");
    assert!(matches!(err, CephError::Short { done: 0, .. }), "{err}");
    assert!(read_at(&image, 0, 4096) != vec![9u8; 4096]);
}

#[test]
fn read_many_reads_scattered_and_large_pieces_asynchronously() {
    let Some(cluster) = cluster("read_many") else {
        return;
    };
    let io = cluster.connect("volumes");
    let size = 24 * MIB;
    let guard = ImageGuard::create(&io, &unique("aio-read"), size, &CreateOptions::default());
    let image = guard.open();
    // Data in the first 16 MiB; the rest never written (reads as zeros).
    let mut expected = pattern(7, 16 * MIB as usize);
    expected.resize(size as usize, 0);
    image
        .write(0, &expected[..16 * MIB as usize])
        .expect("fill");
    let snap = unique("s");
    image.snap_create(&snap).expect("snapshot");
    let snapshot = Image::open_read_only(&io, &guard.name, Some(&snap)).expect("open snapshot");

    // 4 KiB pieces scattered over objects, a piece crossing an object
    // boundary into the unwritten part, one of 9 MiB over three objects,
    // and an empty one at the very end.
    let mut wanted: Vec<(u64, usize)> = (0..200u64)
        .map(|i| ((i * 7919 * 4 * KIB) % (size - 4 * KIB), 4096))
        .collect();
    wanted.push((16 * MIB - 100, 200));
    wanted.push((2 * MIB, 9 * MIB as usize));
    wanted.push((size, 0));
    let mut buffers: Vec<Vec<u8>> = wanted.iter().map(|&(_, len)| vec![0xAA; len]).collect();
    {
        let mut reads: Vec<(u64, &mut [u8])> = wanted
            .iter()
            .zip(buffers.iter_mut())
            .map(|(&(offset, _), buf)| (offset, buf.as_mut_slice()))
            .collect();
        snapshot.read_many(&mut reads, 16).expect("read_many");
    }
    for (&(offset, len), buf) in wanted.iter().zip(&buffers) {
        assert!(
            buf[..] == expected[offset as usize..offset as usize + len],
            "{len} bytes at {offset}"
        );
    }

    // Past the end: refused before anything is read, the buffers untouched.
    let mut inside = vec![0xAAu8; 4096];
    let mut across = vec![0xAAu8; 8192];
    let err = snapshot
        .read_many(
            &mut [(0, &mut inside[..]), (size - 4 * KIB, &mut across[..])],
            4,
        )
        .expect_err("past the end");
    assert!(
        matches!(
            err,
            CephError::Short {
                call: "rbd_aio_read2",
                done: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(inside.iter().all(|&b| b == 0xAA));
    drop(snapshot);
    image.snap_remove(&snap).expect("snap rm");
}

#[test]
fn write_queue_writes_copies_in_flight_and_reports_failures() {
    let Some(cluster) = cluster("write_queue") else {
        return;
    };
    let io = cluster.connect("volumes");
    let size = 16 * MIB;
    let guard = ImageGuard::create(&io, &unique("aio-queue"), size, &CreateOptions::default());
    let mut queue = WriteQueue::new(guard.open(), 4, 256 * KIB as usize).expect("queue");
    let mut expected = vec![0u8; size as usize];
    // The caller's buffer is reused at once: the queue wrote a copy.
    let mut buf = Vec::new();
    for i in 0..48u64 {
        let offset = i * 320 * KIB;
        buf.clear();
        buf.extend(pattern(i, 96 * KIB as usize));
        queue.write(offset, &buf).expect("write");
        expected[offset as usize..offset as usize + buf.len()].copy_from_slice(&buf);
    }
    let err = queue
        .write(size - 4 * KIB, &[1u8; 8192])
        .expect_err("past the end");
    assert!(matches!(err, CephError::Short { done: 0, .. }), "{err}");
    let image = queue.into_image().expect("drain");
    assert!(read_at(&image, 0, size as usize) == expected);
    drop(image);

    // A failed write (a read-only handle) is reported by a later call.
    let read_only = Image::open_read_only(&io, &guard.name, None).expect("open");
    let mut queue = WriteQueue::new(read_only, 2, MIB as usize).expect("queue");
    let failed = (0..4u64)
        .map(|i| queue.write(i * MIB, &[7u8; 4096]))
        .find_map(Result::err)
        .unwrap_or_else(|| queue.drain().expect_err("EROFS"));
    assert!(
        matches!(failed, CephError::Call { call: "rbd_aio_write2", errno, .. } if errno == 30),
        "{failed}"
    );
    assert!(queue.drain().is_err(), "the failure stays");
}
