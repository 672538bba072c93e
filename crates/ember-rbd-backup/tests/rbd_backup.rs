//! The driver against a real Ceph cluster (the one `CEPH_CONF` names, or
//! the throw-away cluster of `shared/ceph/ceph-up.sh`): sources and
//! targets in pool `volumes`, backups in pool `backups`. Without Ceph the
//! tests skip, saying why, unless `EMBER_REQUIRE_CEPH=1`.
//!
//! Every test uses its own volume id and image names, so they run in
//! parallel, and removes what it made even when it fails. Expected contents
//! come from `rbd export` of reference snapshots of the source, taken right
//! before each backup.

use ember_ceph::dev_cluster::unique_name as unique;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use ember_ceph::dev_cluster::{remove_image, DevCluster};
use ember_ceph::{rbd, CephConfig, CreateOptions, DiffOptions, Features, Image, IoCtx};
use ember_rbd_backup::{
    base_image_name, full_image_name, metadata_object_name, parse_snapshot_name, BackupKind,
    BackupOutcome, BackupRequest, BackupSource, Control, FullReason, Progress, RbdBackupConfig,
    RbdBackupDriver, RbdBackupError, RbdImage, RestoreMethod, RestoreOutcome, RestoreTarget,
};
use ember_types::BackupId;
use ember_volume::{Source, Target};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

// ---------------------------------------------------------------- helpers

/// The cluster, or `None` (after printing why) when the test must skip.
fn cluster(test: &str) -> Option<&'static DevCluster> {
    ember_ceph::dev_cluster::for_test(test)
}

fn connect(cluster: &DevCluster, pool: &str) -> IoCtx {
    cluster
        .config(pool)
        .connect()
        .unwrap_or_else(|e| panic!("connect {pool}: {e}"))
}

/// Where `a` and `b` first differ, for messages.
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y).or_else(|| {
        if a.len() == b.len() {
            None
        } else {
            Some(a.len().min(b.len()))
        }
    })
}

fn assert_same(got: &[u8], expected: &[u8], what: &str) {
    if let Some(at) = first_difference(got, expected) {
        panic!(
            "{what}: differs at byte {at} (object {}, got {} bytes, expected {})",
            at as u64 / (4 * MIB),
            got.len(),
            expected.len()
        );
    }
}

fn is_zero(buf: &[u8]) -> bool {
    buf.iter().all(|&b| b == 0)
}

/// Reads a whole image (at a snapshot) through the bindings.
fn read_image(io: &IoCtx, name: &str, snap: Option<&str>) -> Vec<u8> {
    let image = Image::open_read_only(io, name, snap).expect("open");
    let mut buf = vec![0u8; image.size().expect("size") as usize];
    if !buf.is_empty() {
        assert_eq!(image.read(0, &mut buf).expect("read"), buf.len());
    }
    buf
}

/// One volume's world: its source image in `volumes`, its backups in
/// `backups`, the targets restored into; all removed on drop.
struct Scene {
    cluster: &'static DevCluster,
    volumes: IoCtx,
    backups: IoCtx,
    driver: RbdBackupDriver,
    volume_id: String,
    source: String,
    /// Further images in `volumes`, removed after the source.
    images: RefCell<Vec<String>>,
    backup_ids: RefCell<Vec<BackupId>>,
}

impl Scene {
    /// A scene with a new empty source image of `size` bytes.
    fn new(cluster: &'static DevCluster, label: &str, size: u64) -> Scene {
        let scene = Scene::without_source(cluster, label);
        rbd::create(
            &scene.volumes,
            &scene.source,
            size,
            &CreateOptions {
                features: Some(Features::DEFAULT),
                ..CreateOptions::default()
            },
        )
        .expect("create source");
        scene
    }

    /// A scene whose source image the test creates itself.
    fn without_source(cluster: &'static DevCluster, label: &str) -> Scene {
        let config = RbdBackupConfig {
            // Small pieces: many of them, and holes across their edges.
            chunk_size: MIB as usize,
            ..RbdBackupConfig::new(cluster.config("backups"))
        };
        Scene {
            cluster,
            volumes: connect(cluster, "volumes"),
            backups: connect(cluster, "backups"),
            driver: RbdBackupDriver::connect(config).expect("driver"),
            volume_id: uuid::Uuid::new_v4().to_string(),
            source: unique(label),
            images: RefCell::new(Vec::new()),
            backup_ids: RefCell::new(Vec::new()),
        }
    }

    fn src(&self) -> RbdImage<'_> {
        RbdImage {
            io: &self.volumes,
            image: &self.source,
        }
    }

    fn source_image(&self) -> Image {
        Image::open(&self.volumes, &self.source).expect("open source")
    }

    fn new_backup_id(&self) -> BackupId {
        let id = BackupId::new_random();
        self.backup_ids.borrow_mut().push(id);
        id
    }

    fn request(&self, id: BackupId, incremental: bool) -> BackupRequest<'_> {
        BackupRequest {
            backup_id: id,
            volume_id: &self.volume_id,
            source: BackupSource::Rbd(self.src()),
            incremental,
            metadata: None,
        }
    }

    /// Takes reference snapshot `name` of the source, then backs it up.
    fn backup(&self, reference: &str, incremental: bool) -> (BackupId, BackupOutcome) {
        self.source_image()
            .snap_create(reference)
            .expect("ref snap");
        let id = self.new_backup_id();
        let outcome = self
            .driver
            .backup(&self.request(id, incremental), &Control::new())
            .unwrap_or_else(|e| panic!("backup {reference}: {e}"));
        println!(
            "{reference}: {:?} into {} ({:?})",
            outcome.kind, outcome.image, outcome.stats
        );
        (id, outcome)
    }

    fn rbd(&self, args: &[&str]) -> String {
        self.cluster.cli("rbd", args)
    }

    /// `rbd export` of `spec` (pool/image[@snap]).
    fn export(&self, spec: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("export.img");
        let path_str = path.to_str().expect("utf-8 path");
        self.rbd(&["export", "--no-progress", spec, path_str]);
        std::fs::read(&path).expect("read export")
    }

    /// The source at reference snapshot `reference`, by `rbd export`.
    fn expected(&self, reference: &str) -> Vec<u8> {
        self.export(&format!("volumes/{}@{reference}", self.source))
    }

    /// A new target image of `size` bytes in `volumes`, removed at the end.
    fn target(&self, label: &str, size: u64) -> String {
        let name = unique(label);
        rbd::create(&self.volumes, &name, size, &CreateOptions::default()).expect("create target");
        self.images.borrow_mut().push(name.clone());
        name
    }

    /// Fills an image with a pattern that is no backup's.
    fn dirty(&self, name: &str) {
        let image = Image::open(&self.volumes, name).expect("open");
        let size = image.size().expect("size");
        let mut at = 0;
        while at < size {
            let len = (4 * MIB).min(size - at);
            image.write(at, &pattern(0xEE ^ at, len)).expect("dirty");
            at += len;
        }
    }

    /// Restores backup `id` into a target of `size` bytes (filled with old
    /// data first if `dirty`), checks it against `expected` and zeros
    /// beyond, removes it.
    fn check_restore(
        &self,
        id: &BackupId,
        expected: &[u8],
        size: u64,
        dirty: bool,
        what: &str,
    ) -> RestoreOutcome {
        let name = self.target("target", size);
        if dirty {
            self.dirty(&name);
        }
        let target = RestoreTarget::Rbd(RbdImage {
            io: &self.volumes,
            image: &name,
        });
        let outcome = self
            .driver
            .restore(id, &self.volume_id, target, &Control::new())
            .unwrap_or_else(|e| panic!("restore {what}: {e}"));
        let got = self.export(&format!("volumes/{name}"));
        assert_eq!(got.len() as u64, size, "{what}: the target keeps its size");
        assert_same(&got[..expected.len()], expected, what);
        assert!(
            is_zero(&got[expected.len()..]),
            "{what}: not zero beyond the backup"
        );
        let method = if dirty {
            RestoreMethod::Overwrite
        } else {
            RestoreMethod::Sparse
        };
        assert_eq!(outcome.method, method, "{what}");
        remove_image(&self.volumes, &name);
        outcome
    }

    /// The backup snapshots on the source (none without a source).
    fn source_backup_snaps(&self) -> Vec<String> {
        let image = match Image::open(&self.volumes, &self.source) {
            Err(e) if e.is_not_found() => return Vec::new(),
            other => other.expect("open source"),
        };
        image
            .snap_list()
            .expect("snaps")
            .into_iter()
            .map(|s| s.name)
            .filter(|n| parse_snapshot_name(n).is_some())
            .collect()
    }

    /// The snapshots of a backup image (by the `rbd` CLI).
    fn snaps_of(&self, image: &str) -> Vec<String> {
        self.rbd(&["snap", "ls", &format!("backups/{image}")])
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .collect()
    }

    /// The volume's images in the backup pool (by the `rbd` CLI).
    fn backup_images(&self) -> Vec<String> {
        let prefix = format!("volume-{}.backup.", self.volume_id);
        self.rbd(&["ls", "backups"])
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .map(str::to_string)
            .collect()
    }

    /// Nothing of the volume's backups is left anywhere.
    fn assert_nothing_left(&self) {
        assert_eq!(
            self.backup_images(),
            Vec::<String>::new(),
            "backup images left"
        );
        assert_eq!(
            self.source_backup_snaps(),
            Vec::<String>::new(),
            "source snapshots left"
        );
        for id in self.backup_ids.borrow().iter() {
            let name = metadata_object_name(id);
            assert!(
                self.backups.stat(&name).is_err_and(|e| e.is_not_found()),
                "{name} left"
            );
        }
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        remove_image(&self.volumes, &self.source);
        for name in self.images.borrow().iter().rev() {
            remove_image(&self.volumes, name);
        }
        let prefix = format!("volume-{}.backup.", self.volume_id);
        for spec in rbd::list(&self.backups).unwrap_or_default() {
            if spec.name.starts_with(&prefix) {
                remove_image(&self.backups, &spec.name);
            }
        }
        for id in self.backup_ids.borrow().iter() {
            let _ = self.backups.remove(&metadata_object_name(id));
        }
    }
}

fn is_full(outcome: &BackupOutcome, reason: FullReason) {
    assert_eq!(outcome.kind, BackupKind::Full { reason }, "{outcome:?}");
}

fn is_incremental_on(outcome: &BackupOutcome, parent: &BackupId) {
    match &outcome.kind {
        BackupKind::Incremental {
            parent: got,
            from_snapshot,
        } => {
            assert_eq!(got, parent, "{outcome:?}");
            assert_eq!(parse_snapshot_name(from_snapshot), Some(*parent));
        }
        other => panic!("expected an incremental on {parent}, got {other:?}"),
    }
}

// ---------------------------------------------------------------- tests

/// A full backup and three incrementals of a volume with data, holes,
/// written zeros, discarded objects and zeroed ranges; each restored into
/// a new image, a larger image full of old data, and a larger empty image,
/// and compared with `rbd export` of the source at that point. The backups
/// also read back with `rbd export` of the base snapshots alone.
#[test]
fn full_and_three_incrementals_restore_exactly() {
    let Some(cluster) = cluster("full_and_three_incrementals_restore_exactly") else {
        return;
    };
    let size = 40 * MIB;
    let scene = Scene::new(cluster, "chain", size);
    let source = scene.source_image();

    // Full: data, written zeros, a partial object, the last block.
    source.write(0, &pattern(1, 6 * MIB)).expect("write");
    source
        .write(8 * MIB, &vec![0u8; MIB as usize])
        .expect("zeros");
    source
        .write(13 * MIB + 5 * KIB, &pattern(2, 300 * KIB))
        .expect("write");
    source
        .write(size - 4 * KIB, &pattern(3, 4 * KIB))
        .expect("write");
    let progress = RefCell::new(Vec::new());
    let report = |p: Progress| progress.borrow_mut().push(p);
    source.snap_create("ref0").expect("ref0");
    let id0 = scene.new_backup_id();
    let request = BackupRequest {
        metadata: Some(r#"{"version": 2, "volume-base-metadata": {}}"#),
        ..scene.request(id0, false)
    };
    let full = scene
        .driver
        .backup(&request, &Control::new().with_progress(&report))
        .expect("full");
    is_full(&full, FullReason::NotRequested);
    assert_eq!(full.image, base_image_name(&scene.volume_id));
    assert_eq!(
        full.service_metadata(),
        Some(format!(
            "{{\"base\": \"volume-{}.backup.base\"}}",
            scene.volume_id
        ))
    );
    // Only allocated extents are read (new objects up to their end), and
    // only the non-zero data is written.
    assert!(full.stats.bytes_read < 16 * MIB, "{:?}", full.stats);
    assert!(full.stats.bytes_written < 7 * MIB, "{:?}", full.stats);
    let last = *progress.borrow().last().expect("progress reported");
    assert_eq!(last.done, last.total);
    assert_eq!(
        scene.driver.get_metadata(&id0).expect("meta").as_deref(),
        request.metadata
    );
    assert!(matches!(
        scene.driver.put_metadata(&id0, "{}"),
        Err(RbdBackupError::MetadataExists(_))
    ));

    // Incremental 1: overwrite, discard an object, zero a partial range,
    // fill a hole.
    source
        .write(MIB + 4 * KIB, &pattern(10, 64 * KIB))
        .expect("write");
    source.discard(4 * MIB, 4 * MIB).expect("discard");
    source
        .write_zeroes(13 * MIB + 100 * KIB, 8 * KIB)
        .expect("zeroes");
    source.write(20 * MIB, &pattern(11, MIB)).expect("write");
    let (id1, inc1) = scene.backup("ref1", true);
    is_incremental_on(&inc1, &id0);
    assert!(inc1.stats.bytes_written < 2 * MIB, "{:?}", inc1.stats);

    // Incremental 2: data into the discarded object, zeros written over
    // data, another object discarded.
    source
        .write(5 * MIB, &pattern(20, 512 * KIB))
        .expect("write");
    source
        .write(0, &vec![0u8; 256 * KIB as usize])
        .expect("zeros");
    source.discard(20 * MIB, 4 * MIB).expect("discard");
    let (id2, inc2) = scene.backup("ref2", true);
    is_incremental_on(&inc2, &id1);

    // Incremental 3: scattered blocks, the last block zeroed.
    for i in 0..10 {
        source
            .write(i * 3 * MIB + 12 * KIB, &pattern(30 + i, 4 * KIB))
            .expect("write");
    }
    source
        .write_zeroes(size - 4 * KIB, 4 * KIB)
        .expect("zeroes");
    let (id3, inc3) = scene.backup("ref3", true);
    is_incremental_on(&inc3, &id2);
    assert!(inc3.stats.bytes_written < MIB, "{:?}", inc3.stats);
    drop(source);

    // Only the newest backup snapshot stays on the source; every backup's
    // snapshot is on the base image.
    let snaps: Vec<_> = [&full, &inc1, &inc2, &inc3]
        .iter()
        .map(|o| o.snapshot.clone().expect("snapshot"))
        .collect();
    assert_eq!(scene.source_backup_snaps(), vec![snaps[3].clone()]);
    assert_eq!(inc3.removed_source_snapshots, vec![snaps[2].clone()]);
    let base = base_image_name(&scene.volume_id);
    assert_eq!(scene.snaps_of(&base), snaps);
    assert_eq!(scene.backup_images(), vec![base.clone()]);
    assert_eq!(scene.driver.list(&scene.volume_id).expect("list").len(), 4);

    for (i, id) in [id0, id1, id2, id3].iter().enumerate() {
        let expected = scene.expected(&format!("ref{i}"));
        let by_rbd = scene.export(&format!("backups/{base}@{}", snaps[i]));
        assert_same(&by_rbd, &expected, &format!("rbd export of backup {i}"));
        let new = scene.check_restore(id, &expected, size, false, &format!("{i} into new"));
        assert_eq!(new.backup.snapshot.as_deref(), Some(snaps[i].as_str()));
        let larger = scene.check_restore(
            id,
            &expected,
            size + 8 * MIB,
            true,
            &format!("{i} into old data"),
        );
        assert!(larger.stats.bytes_zeroed > 0, "{larger:?}");
        scene.check_restore(
            id,
            &expected,
            size + 8 * MIB,
            false,
            &format!("{i} into empty"),
        );
    }

    // Too small a target is refused.
    let small = scene.target("small", size - MIB);
    let err = scene
        .driver
        .restore(
            &id3,
            &scene.volume_id,
            RestoreTarget::Rbd(RbdImage {
                io: &scene.volumes,
                image: &small,
            }),
            &Control::new(),
        )
        .expect_err("too small");
    assert!(
        matches!(err, RbdBackupError::TargetTooSmall { .. }),
        "{err}"
    );

    // Newest first, as Cinder allows: nothing is left.
    for id in [id3, id2, id1, id0] {
        scene
            .driver
            .delete(&id, &scene.volume_id, Some(scene.src()))
            .expect("delete");
    }
    scene.assert_nothing_left();
}

/// A file source: a full backup into `volume-<id>.backup.<backup_id>` that
/// keeps holes as holes, reported as full because incrementals need an RBD
/// source; restored into a new file, a file full of old data and an RBD
/// image full of old data.
#[test]
fn file_source_backup_keeps_holes_and_restores_onto_dirty_targets() {
    let Some(cluster) = cluster("file_source_backup") else {
        return;
    };
    let scene = Scene::without_source(cluster, "file");
    let dir = tempfile::tempdir().expect("tempdir");
    let size = 24 * MIB;
    let path = dir.path().join("volume.img");
    let mut expected = vec![0u8; size as usize];
    let mut put = |at: u64, data: &[u8]| {
        expected[at as usize..at as usize + data.len()].copy_from_slice(data);
    };
    put(0, &pattern(1, 700 * KIB));
    put(3 * MIB - 4 * KIB, &pattern(2, 2 * MIB));
    put(16 * MIB, &vec![0u8; MIB as usize]); // written zeros
    put(size - 8 * KIB, &pattern(3, 8 * KIB));
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::create(&path).expect("create");
        file.set_len(size).expect("len");
        for (at, len) in [
            (0, 700 * KIB),
            (3 * MIB - 4 * KIB, 2 * MIB),
            (16 * MIB, MIB),
            (size - 8 * KIB, 8 * KIB),
        ] {
            file.write_all_at(&expected[at as usize..(at + len) as usize], at)
                .expect("write");
        }
    }
    let source = Source::open(&path).expect("source");
    let id = scene.new_backup_id();
    let request = BackupRequest {
        backup_id: id,
        volume_id: &scene.volume_id,
        source: BackupSource::File(&source),
        incremental: true,
        metadata: None,
    };
    let outcome = scene
        .driver
        .backup(&request, &Control::new())
        .expect("backup");
    is_full(&outcome, FullReason::NotRbdSource);
    let image = full_image_name(&scene.volume_id, &id);
    assert_eq!(outcome.image, image);
    assert_eq!(outcome.snapshot, None);
    assert_eq!(outcome.service_metadata(), None);
    assert!(outcome.stats.bytes_skipped >= MIB, "{:?}", outcome.stats);
    assert!(scene.snaps_of(&image).is_empty());
    // Holes stay holes, and so do the written zeros: only the objects
    // holding data exist.
    let objects: BTreeSet<u64> = Image::open_read_only(&scene.backups, &image, None)
        .expect("open")
        .diff(
            None,
            DiffOptions {
                whole_object: true,
                include_parent: false,
            },
        )
        .expect("diff")
        .iter()
        .filter(|e| e.exists)
        .map(|e| e.offset / (4 * MIB))
        .collect();
    assert_eq!(objects, BTreeSet::from([0, 1, 5]));
    assert_same(
        &scene.export(&format!("backups/{image}")),
        &expected,
        "rbd export",
    );
    let entry = scene
        .driver
        .find(&id, &scene.volume_id)
        .expect("find")
        .expect("found");
    assert_eq!((entry.snapshot, entry.size), (None, size));

    // Into a new file: sparse.
    let new = dir.path().join("new.img");
    let target = Target::create(&new, size).expect("target");
    let restored = scene
        .driver
        .restore(
            &id,
            &scene.volume_id,
            RestoreTarget::File(target),
            &Control::new(),
        )
        .expect("restore new");
    assert_eq!(restored.method, RestoreMethod::Sparse);
    assert_same(&std::fs::read(&new).expect("read"), &expected, "new file");
    assert_sparse(&new, 8 * MIB);

    // Into a larger file full of old data.
    let old = dir.path().join("old.img");
    std::fs::write(&old, pattern(0xEE, size + MIB)).expect("old data");
    let target = Target::open_existing(&old, size).expect("target");
    let restored = scene
        .driver
        .restore(
            &id,
            &scene.volume_id,
            RestoreTarget::File(target),
            &Control::new(),
        )
        .expect("restore old");
    assert_eq!(restored.method, RestoreMethod::Overwrite);
    let got = std::fs::read(&old).expect("read");
    assert_same(&got[..size as usize], &expected, "file with old data");
    assert!(is_zero(&got[size as usize..]), "beyond the backup");

    // Into an RBD image full of old data.
    scene.check_restore(&id, &expected, size, true, "image with old data");

    scene
        .driver
        .delete(&id, &scene.volume_id, None)
        .expect("delete");
    scene.assert_nothing_left();
}

/// Fewer than `max` bytes of the file at `path` are allocated.
fn assert_sparse(path: &Path, max: u64) {
    use std::os::unix::fs::MetadataExt;
    let used = std::fs::metadata(path).expect("meta").blocks() * 512;
    assert!(used < max, "{} uses {used} bytes", path.display());
}

/// Three backups deleted in each of the six orders (Cinder's API allows
/// only newest first; the layout allows any): the others still restore
/// exactly after each delete, deleting twice is fine, and nothing is left
/// in the end.
#[test]
fn delete_in_every_order_leaves_nothing() {
    let Some(cluster) = cluster("delete_in_every_order_leaves_nothing") else {
        return;
    };
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for order in orders {
        let size = 12 * MIB;
        let scene = Scene::new(cluster, "delete", size);
        let source = scene.source_image();
        let mut ids = Vec::new();
        let mut expected = Vec::new();
        for i in 0..3u64 {
            source
                .write(i * 4 * MIB + 8 * KIB, &pattern(i, MIB))
                .expect("write");
            if i == 2 {
                source.discard(0, 4 * MIB).expect("discard");
            }
            let (id, outcome) = scene.backup(&format!("ref{i}"), true);
            if i > 0 {
                is_incremental_on(&outcome, &ids[i as usize - 1]);
            }
            expected.push(read_image(
                &scene.volumes,
                &scene.source,
                Some(&format!("ref{i}")),
            ));
            ids.push(id);
        }
        drop(source);
        let mut alive: BTreeSet<usize> = (0..3).collect();
        for &gone in &order {
            let outcome = scene
                .driver
                .delete(&ids[gone], &scene.volume_id, Some(scene.src()))
                .expect("delete");
            assert_eq!(outcome.removed_snapshots.len(), 1, "{order:?}: {outcome:?}");
            assert_eq!(
                outcome.removed_source_snapshots.len(),
                usize::from(gone == 2)
            );
            alive.remove(&gone);
            assert_eq!(!outcome.removed_images.is_empty(), alive.is_empty());
            let again = scene
                .driver
                .delete(&ids[gone], &scene.volume_id, Some(scene.src()))
                .expect("delete again");
            assert_eq!(again, Default::default(), "{order:?}");
            assert!(scene
                .driver
                .find(&ids[gone], &scene.volume_id)
                .expect("find")
                .is_none());
            for &left in &alive {
                let name = scene.target("after-delete", size);
                scene
                    .driver
                    .restore(
                        &ids[left],
                        &scene.volume_id,
                        RestoreTarget::Rbd(RbdImage {
                            io: &scene.volumes,
                            image: &name,
                        }),
                        &Control::new(),
                    )
                    .expect("restore");
                let got = read_image(&scene.volumes, &name, None);
                assert_same(
                    &got,
                    &expected[left],
                    &format!("{order:?}: backup {left} after deleting {gone}"),
                );
                remove_image(&scene.volumes, &name);
            }
        }
        scene.assert_nothing_left();
    }
}

/// Backups made as Cinder's driver makes them, with the `rbd` CLI
/// (`export-diff | import-diff` into the base, snapshots named by Cinder),
/// in the per-volume base image (`volume-<id>.backup.base`) or in the
/// image named by the first full backup (Cinder since its incremental
/// rework): listed, restored, continued by an Ember incremental in the
/// same image, and deleted.
#[test]
fn cinder_made_backups_restore_and_continue() {
    let Some(cluster) = cluster("cinder_made_backups_restore_and_continue") else {
        return;
    };
    for per_volume_base in [true, false] {
        let size = 24 * MIB;
        let scene = Scene::new(cluster, "cinder", size);
        let source = scene.source_image();
        let ids = [BackupId::new_random(), BackupId::new_random()];
        scene.backup_ids.borrow_mut().extend(ids);
        let base = if per_volume_base {
            base_image_name(&scene.volume_id)
        } else {
            full_image_name(&scene.volume_id, &ids[0])
        };
        let src = format!("volumes/{}", scene.source);
        let snaps = [
            format!("backup.{}.snap.1767225600.123456", ids[0]),
            format!("backup.{}.snap.1767229200.5", ids[1]),
        ];
        // Cinder's first backup: base image of the volume's size, then the
        // whole snapshot as a diff.
        source.write(MIB, &pattern(1, 3 * MIB)).expect("write");
        source
            .write(17 * MIB, &pattern(2, 64 * KIB))
            .expect("write");
        source.snap_create("ref0").expect("ref");
        scene.rbd(&["snap", "create", &format!("{src}@{}", snaps[0])]);
        scene.rbd(&[
            "create",
            "--size",
            "24M",
            "--image-feature",
            "layering,exclusive-lock,object-map,fast-diff",
            &format!("backups/{base}"),
        ]);
        let pipe = |from: Option<&str>, snap: &str| {
            let from = from
                .map(|f| format!("--from-snap {f} "))
                .unwrap_or_default();
            scene.cluster.cli(
                "bash",
                &[
                    "-c",
                    &format!(
                        "set -o pipefail; rbd export-diff --no-progress {from}{src}@{snap} - | rbd import-diff --no-progress - backups/{base}"
                    ),
                ],
            );
        };
        pipe(None, &snaps[0]);
        scene.cluster.cli(
            "rados",
            &[
                "-p",
                "backups",
                "put",
                &metadata_object_name(&ids[0]),
                "/dev/null",
            ],
        );
        // Cinder's incremental; the older source snapshot is dropped.
        source.write(2 * MIB, &pattern(3, 4 * KIB)).expect("write");
        source.discard(16 * MIB, 4 * MIB).expect("discard");
        source.snap_create("ref1").expect("ref");
        scene.rbd(&["snap", "create", &format!("{src}@{}", snaps[1])]);
        pipe(Some(&snaps[0]), &snaps[1]);
        scene.rbd(&[
            "snap",
            "rm",
            "--no-progress",
            &format!("{src}@{}", snaps[0]),
        ]);

        let listed = scene.driver.list(&scene.volume_id).expect("list");
        let listed: BTreeSet<_> = listed
            .iter()
            .map(|e| (e.backup_id, e.snapshot.clone()))
            .collect();
        let want: BTreeSet<_> = [
            (ids[0], Some(snaps[0].clone())),
            (ids[1], Some(snaps[1].clone())),
        ]
        .into();
        assert_eq!(listed, want);
        assert_eq!(
            scene.driver.get_metadata(&ids[0]).expect("meta"),
            Some(String::new())
        );
        for (i, id) in ids.iter().enumerate() {
            let expected = scene.expected(&format!("ref{i}"));
            let restored = scene.check_restore(id, &expected, size, true, &format!("cinder {i}"));
            assert_eq!(restored.backup.image, base);
        }

        // Ember continues the chain in the same image.
        source
            .write(9 * MIB, &pattern(4, 100 * KIB))
            .expect("write");
        let (id2, outcome) = scene.backup("ref2", true);
        drop(source);
        is_incremental_on(&outcome, &ids[1]);
        assert_eq!(outcome.image, base);
        assert_eq!(
            outcome.service_metadata(),
            Some(format!("{{\"base\": \"{base}\"}}"))
        );
        let expected = scene.expected("ref2");
        let snap = outcome.snapshot.clone().expect("snapshot");
        assert_same(
            &scene.export(&format!("backups/{base}@{snap}")),
            &expected,
            "rbd export of Ember's",
        );
        scene.check_restore(&id2, &expected, size, false, "ember after cinder");

        for id in [ids[0], ids[1], id2] {
            scene
                .driver
                .delete(&id, &scene.volume_id, Some(scene.src()))
                .expect("delete");
        }
        scene.assert_nothing_left();
    }
}

/// An incremental that cannot be done is a full backup that says why:
/// no source snapshot, a resized volume, no base image, no snapshot in
/// common; each restores exactly, and later incrementals build on it.
#[test]
fn impossible_incrementals_report_full_with_a_reason() {
    let Some(cluster) = cluster("impossible_incrementals_report_full_with_a_reason") else {
        return;
    };
    let size = 16 * MIB;
    let scene = Scene::new(cluster, "reasons", size);
    let source = scene.source_image();
    let src = format!("volumes/{}", scene.source);
    source.write(0, &pattern(1, 6 * MIB)).expect("write");

    let (id0, first) = scene.backup("ref0", true);
    is_full(&first, FullReason::NoSourceSnapshot);
    source.write(MIB, &pattern(2, 4 * KIB)).expect("write");
    let (id1, second) = scene.backup("ref1", true);
    is_incremental_on(&second, &id0);

    // The source's backup snapshot is gone.
    scene.rbd(&[
        "snap",
        "rm",
        "--no-progress",
        &format!("{src}@{}", second.snapshot.clone().expect("snap")),
    ]);
    source.discard(0, 4 * MIB).expect("discard");
    let (id2, outcome) = scene.backup("ref2", true);
    is_full(&outcome, FullReason::NoSourceSnapshot);
    // A full backup into the base image that holds older backups: what the
    // source no longer has must not survive there.
    scene.check_restore(
        &id2,
        &scene.expected("ref2"),
        size,
        false,
        "full over older",
    );
    scene.check_restore(
        &id1,
        &scene.expected("ref1"),
        size,
        false,
        "older after full",
    );

    // The volume grew.
    source.resize(size + 4 * MIB).expect("grow");
    source
        .write(size + MIB, &pattern(3, 4 * KIB))
        .expect("write");
    let (id3, outcome) = scene.backup("ref3", true);
    is_full(
        &outcome,
        FullReason::SizeChanged {
            from: size,
            to: size + 4 * MIB,
        },
    );
    scene.check_restore(&id3, &scene.expected("ref3"), size + 4 * MIB, true, "grown");
    source.resize(size).expect("shrink");
    let (id4, outcome) = scene.backup("ref4", true);
    is_full(
        &outcome,
        FullReason::SizeChanged {
            from: size + 4 * MIB,
            to: size,
        },
    );
    scene.check_restore(&id4, &scene.expected("ref4"), size, true, "shrunk");
    source.write(3 * MIB, &pattern(4, 4 * KIB)).expect("write");
    let (id5, outcome) = scene.backup("ref5", true);
    is_incremental_on(&outcome, &id4);
    scene.check_restore(&id5, &scene.expected("ref5"), size, true, "after shrink");

    // The base snapshot of the source's latest backup is deleted (but not
    // the source's snapshot): nothing in common.
    scene
        .driver
        .delete(&id5, &scene.volume_id, None)
        .expect("delete");
    assert_eq!(
        scene.source_backup_snaps(),
        vec![outcome.snapshot.clone().expect("snap")]
    );
    let (id6, full) = scene.backup("ref6", true);
    is_full(
        &full,
        FullReason::NoCommonSnapshot {
            newest_source_snapshot: outcome.snapshot.clone().expect("snap"),
        },
    );
    scene.check_restore(&id6, &scene.expected("ref6"), size, false, "no common");

    // Every backup deleted but the source's snapshot kept: no base image.
    for entry in scene.driver.list(&scene.volume_id).expect("list") {
        scene
            .driver
            .delete(&entry.backup_id, &scene.volume_id, None)
            .expect("delete");
    }
    assert!(scene.backup_images().is_empty());
    let (id7, outcome) = scene.backup("ref7", true);
    is_full(&outcome, FullReason::NoBaseImage);
    scene.check_restore(&id7, &scene.expected("ref7"), size, true, "no base");
    drop(source);
    scene
        .driver
        .delete(&id7, &scene.volume_id, Some(scene.src()))
        .expect("delete");
    scene.assert_nothing_left();
}

/// A cancelled backup leaves nothing behind: no snapshot on the source,
/// no new image, no new snapshot on the base; the head of the base image,
/// left half written, is reset by the next incremental (with a warning),
/// which is exact. A backup id used twice is refused.
#[test]
fn cancelled_backups_leave_nothing_and_the_next_one_is_exact() {
    let Some(cluster) = cluster("cancelled_backups_leave_nothing") else {
        return;
    };
    let size = 16 * MIB;
    let scene = Scene::new(cluster, "cancel", size);
    let source = scene.source_image();
    source.write(0, &pattern(1, 12 * MIB)).expect("write");
    let cancel = AtomicBool::new(false);
    let stop = |_: Progress| cancel.store(true, Ordering::Relaxed);
    let control = Control::new().with_progress(&stop).with_cancel(&cancel);

    let id = scene.new_backup_id();
    let err = scene
        .driver
        .backup(&scene.request(id, false), &control)
        .expect_err("cancelled");
    assert!(matches!(err, RbdBackupError::Cancelled), "{err}");
    assert!(scene.backup_images().is_empty());
    assert!(scene.source_backup_snaps().is_empty());

    let (id0, _) = scene.backup("ref0", false);
    let err = scene
        .driver
        .backup(&scene.request(id0, true), &Control::new())
        .expect_err("twice");
    assert!(matches!(err, RbdBackupError::AlreadyExists { .. }), "{err}");

    // A cancelled incremental: the base head is left half written.
    source.write(0, &pattern(2, 12 * MIB)).expect("write");
    cancel.store(false, Ordering::Relaxed);
    let id = scene.new_backup_id();
    let err = scene
        .driver
        .backup(&scene.request(id, true), &control)
        .expect_err("cancelled");
    assert!(matches!(err, RbdBackupError::Cancelled), "{err}");
    let base = base_image_name(&scene.volume_id);
    assert_eq!(scene.snaps_of(&base).len(), 1);
    assert_eq!(scene.source_backup_snaps().len(), 1);

    source.discard(4 * MIB, 4 * MIB).expect("discard");
    let (id1, outcome) = scene.backup("ref1", true);
    is_incremental_on(&outcome, &id0);
    assert_eq!(outcome.warnings.len(), 1, "{outcome:?}");
    println!("{}", outcome.warnings[0]);
    drop(source);
    scene.check_restore(&id0, &scene.expected("ref0"), size, true, "before");
    scene.check_restore(&id1, &scene.expected("ref1"), size, true, "after reset");
}

/// A clone (a volume made from an image) is backed up with its parent's
/// data: a full backup of a clone must not come back with holes.
#[test]
fn backup_of_a_clone_includes_its_parents_data() {
    let Some(cluster) = cluster("backup_of_a_clone") else {
        return;
    };
    let size = 12 * MIB;
    let scene = Scene::without_source(cluster, "clone");
    let parent = unique("parent");
    scene.images.borrow_mut().push(parent.clone());
    let opts = CreateOptions {
        features: Some(Features::DEFAULT),
        ..CreateOptions::default()
    };
    rbd::create(&scene.volumes, &parent, size, &opts).expect("parent");
    let image = Image::open(&scene.volumes, &parent).expect("open");
    image.write(0, &pattern(1, 10 * MIB)).expect("write");
    image.snap_create("gold").expect("snap");
    image.snap_protect("gold").expect("protect");
    drop(image);
    rbd::clone(
        &scene.volumes,
        &parent,
        "gold",
        &scene.volumes,
        &scene.source,
        &opts,
    )
    .expect("clone");
    let source = scene.source_image();
    source.write(2 * MIB, &pattern(2, 8 * KIB)).expect("write");
    source.discard(8 * MIB, 4 * MIB).expect("discard");
    drop(source);
    let (id, outcome) = scene.backup("ref0", false);
    is_full(&outcome, FullReason::NotRequested);
    scene.check_restore(&id, &scene.expected("ref0"), size, true, "clone");
    // A clone as the restore target: its parent's data is zeroed where the
    // backup has holes.
    let target = unique("clone-target");
    scene.images.borrow_mut().push(target.clone());
    rbd::clone(
        &scene.volumes,
        &parent,
        "gold",
        &scene.volumes,
        &target,
        &opts,
    )
    .expect("clone");
    let restored = scene
        .driver
        .restore(
            &id,
            &scene.volume_id,
            RestoreTarget::Rbd(RbdImage {
                io: &scene.volumes,
                image: &target,
            }),
            &Control::new(),
        )
        .expect("restore");
    assert_eq!(restored.method, RestoreMethod::Overwrite);
    assert_same(
        &read_image(&scene.volumes, &target, None),
        &scene.expected("ref0"),
        "into a clone",
    );
    remove_image(&scene.volumes, &target);
    scene
        .driver
        .delete(&id, &scene.volume_id, Some(scene.src()))
        .expect("delete");
    scene.assert_nothing_left();
}

/// A wrong user or a missing pool fail at connect, named.
#[test]
fn connect_fails_clearly_on_wrong_user_and_missing_pool() {
    let Some(cluster) = cluster("connect_fails_clearly") else {
        return;
    };
    let user = unique("nouser");
    let config = RbdBackupConfig::new(CephConfig {
        user: user.clone(),
        ..cluster.config("backups")
    });
    let err = RbdBackupDriver::connect(config).expect_err("wrong user");
    println!("wrong user: {err}");
    assert!(matches!(err, RbdBackupError::Connect { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("backup pool backups is unusable: rados_connect"),
        "{text}"
    );
    assert!(text.contains("check the user name and its key"), "{text}");

    let pool = unique("nopool");
    let err = RbdBackupDriver::connect(RbdBackupConfig::new(cluster.config(&pool)))
        .expect_err("missing pool");
    println!("missing pool: {err}");
    assert!(err.to_string().contains("the pool does not exist"), "{err}");
    assert!(err.to_string().contains(&pool), "{err}");
}

/// [`ember_ceph::dev_cluster::pattern`] with a `u64` length.
fn pattern(seed: u64, len: u64) -> Vec<u8> {
    ember_ceph::dev_cluster::pattern(seed, len as usize)
}
