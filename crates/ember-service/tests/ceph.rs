//! The service on a real Ceph cluster (../shared/ceph/ceph-up.sh, started
//! by the tests; `EMBER_REQUIRE_CEPH=1` makes its absence a failure): RBD
//! volumes backed up into Ember's repository and with Cinder's Ceph
//! layout, every restore compared with the source image's snapshot, every
//! delete checked for leftovers, and backends that cannot be used shown
//! down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ember_ceph::dev_cluster::{self, DevCluster};
use ember_ceph::{rbd, Image, IoCtx};
use ember_meta::{BackupRecord, VolumeRecord};
use ember_service::{
    BackupCreate, BackupDriver, Caller, Ember, RestoreRequest, ServiceConfig, ServiceError,
    SnapshotCreate, VolumeCreate, VolumeDriver,
};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const WAIT: Duration = Duration::from_secs(180);

fn caller() -> Caller {
    Caller {
        project_id: "0123456789abcdef0123456789abcdef".into(),
        user_id: "ceph-test".into(),
        is_admin: true,
    }
}

/// A started service on the test cluster, with its data directory.
struct Service {
    ember: Arc<Ember>,
    _dir: tempfile::TempDir,
}

async fn service(
    cluster: &DevCluster,
    backup_driver: BackupDriver,
    tweak: impl FnOnce(&mut ServiceConfig),
) -> Service {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ServiceConfig {
        data_dir: dir.path().to_path_buf(),
        volume_driver: VolumeDriver::Rbd,
        rbd_ceph_conf: cluster.conf.clone(),
        backup_driver,
        backup_ceph_conf: cluster.conf.clone(),
        ..ServiceConfig::default()
    };
    tweak(&mut config);
    let ember = Ember::open(config).await.expect("open");
    ember.start().await.expect("start");
    Service { ember, _dir: dir }
}

impl Service {
    async fn volume(&self, size_gib: i64) -> VolumeRecord {
        self.ember
            .create_volume(
                &caller(),
                VolumeCreate {
                    size_gib,
                    ..VolumeCreate::default()
                },
            )
            .await
            .expect("create volume")
    }

    async fn snapshot(&self, volume: &VolumeRecord) -> String {
        self.ember
            .create_snapshot(
                &caller(),
                SnapshotCreate {
                    volume_id: volume.id.clone(),
                    ..SnapshotCreate::default()
                },
            )
            .await
            .expect("create snapshot")
            .id
    }

    /// Backs up `volume` (or its snapshot) and waits for the outcome.
    async fn backup(
        &self,
        volume: &VolumeRecord,
        incremental: bool,
        snapshot_id: Option<&str>,
    ) -> BackupRecord {
        let backup = self
            .ember
            .create_backup(
                &caller(),
                BackupCreate {
                    volume_id: volume.id.clone(),
                    incremental,
                    snapshot_id: snapshot_id.map(str::to_string),
                    ..BackupCreate::default()
                },
            )
            .await
            .expect("create backup");
        let done = self.settled_backup(&backup.id).await;
        assert_eq!(done.status, "available", "{:?}", done.fail_reason);
        done
    }

    async fn settled_backup(&self, id: &str) -> BackupRecord {
        let who = caller();
        settle(
            || self.ember.get_backup(&who, id),
            |b: &BackupRecord| &b.status,
            &["creating", "restoring", "deleting"],
        )
        .await
    }

    async fn settled_volume(&self, id: &str) -> VolumeRecord {
        let who = caller();
        settle(
            || self.ember.get_volume(&who, id),
            |v: &VolumeRecord| &v.status,
            &["creating", "restoring-backup", "backing-up"],
        )
        .await
    }

    /// Restores `backup` into `into` (or a new volume) and waits.
    async fn restore(&self, backup: &BackupRecord, into: Option<&VolumeRecord>) -> VolumeRecord {
        let (_, volume) = self
            .ember
            .restore_backup(
                &caller(),
                &backup.id,
                RestoreRequest {
                    volume_id: into.map(|v| v.id.clone()),
                    name: None,
                },
            )
            .await
            .expect("restore");
        let restored = self.settled_volume(&volume.id).await;
        assert_eq!(restored.status, "available");
        assert_eq!(self.settled_backup(&backup.id).await.status, "available");
        restored
    }

    async fn delete_backup(&self, id: &str) {
        self.ember
            .delete_backup(&caller(), id, false)
            .await
            .expect("delete backup");
        let started = Instant::now();
        while self.ember.get_backup(&caller(), id).await.is_ok() {
            assert!(started.elapsed() < WAIT, "backup {id} not deleted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Polls `get` until the status `status_of` reads is none of `busy`.
async fn settle<T, Fut>(
    get: impl Fn() -> Fut,
    status_of: impl Fn(&T) -> &String,
    busy: &[&str],
) -> T
where
    Fut: std::future::Future<Output = Result<T, ServiceError>>,
{
    let started = Instant::now();
    loop {
        let record = get().await.expect("get");
        let status = status_of(&record);
        if !busy.contains(&status.as_str()) {
            return record;
        }
        assert!(started.elapsed() < WAIT, "still {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The image of an RBD volume in pool `volumes`.
fn image_name(volume: &VolumeRecord) -> String {
    let (pool, image) = volume
        .path
        .strip_prefix("rbd:")
        .and_then(|spec| spec.split_once('/'))
        .unwrap_or_else(|| panic!("not an RBD location: {}", volume.path));
    assert_eq!(pool, "volumes");
    image.to_string()
}

fn write(io: &IoCtx, image: &str, offset: u64, data: &[u8]) {
    let image = Image::open(io, image).expect("open image");
    image.write(offset, data).expect("write");
    image.flush().expect("flush");
}

/// Asserts that `restored` reads as `source` (at snapshot `snap`) over the
/// source's size, and as zeros beyond it.
fn assert_same_data(io: &IoCtx, source: &str, snap: Option<&str>, restored: &str) {
    let a = Image::open_read_only(io, source, snap).expect("open source");
    let b = Image::open_read_only(io, restored, None).expect("open restored");
    let (size_a, size_b) = (a.size().expect("size"), b.size().expect("size"));
    assert!(size_b >= size_a, "{restored} is smaller than {source}");
    let mut buf_a = vec![0u8; 4 * MIB as usize];
    let mut buf_b = vec![0u8; 4 * MIB as usize];
    let mut offset = 0;
    while offset < size_b {
        let len = (size_b - offset).min(4 * MIB) as usize;
        if offset < size_a {
            a.read(offset, &mut buf_a[..len]).expect("read source");
        } else {
            buf_a[..len].fill(0);
        }
        b.read(offset, &mut buf_b[..len]).expect("read restored");
        assert!(
            buf_a[..len] == buf_b[..len],
            "{restored} differs from {source}@{snap:?} in the 4 MiB at {offset}"
        );
        offset += len as u64;
    }
}

/// The snapshot of image `image` whose name is `snapshot-<id>`.
fn cinder_snapshot(id: &str) -> String {
    format!("snapshot-{id}")
}

fn backup_snapshots(io: &IoCtx, image: &str) -> Vec<String> {
    Image::open(io, image)
        .expect("open")
        .snap_list()
        .expect("snaps")
        .into_iter()
        .map(|s| s.name)
        .filter(|n| n.starts_with("backup."))
        .collect()
}

fn images_with(io: &IoCtx, needle: &str) -> Vec<String> {
    rbd::list(io)
        .expect("list")
        .into_iter()
        .map(|i| i.name)
        .filter(|n| n.contains(needle))
        .collect()
}

/// Writes the first state of a test volume: 8 MiB at the start and 4 MiB
/// in the middle, the rest a hole.
fn write_first_state(io: &IoCtx, image: &str) {
    write(io, image, 0, &dev_cluster::pattern(1, 8 * MIB as usize));
    write(
        io,
        image,
        600 * MIB,
        &dev_cluster::pattern(2, 4 * MIB as usize),
    );
}

/// Changes a few scattered places of a test volume.
fn write_second_state(io: &IoCtx, image: &str) {
    write(io, image, 4 * MIB, &dev_cluster::pattern(3, MIB as usize));
    write(
        io,
        image,
        300 * MIB + 4096,
        &dev_cluster::pattern(4, 64 * 1024),
    );
    write(io, image, GIB - 4096, &dev_cluster::pattern(5, 4096));
}

async fn remove_volumes(svc: &Service, snapshots: &[&str], volumes: &[&VolumeRecord]) {
    for snapshot in snapshots {
        svc.ember
            .delete_snapshot(&caller(), snapshot)
            .await
            .expect("delete snapshot");
    }
    for volume in volumes {
        svc.ember
            .delete_volume(&caller(), &volume.id)
            .await
            .expect("delete volume");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbd_volumes_with_the_ceph_driver() {
    let Some(cluster) = dev_cluster::for_test("rbd_volumes_with_the_ceph_driver") else {
        return;
    };
    let svc = service(cluster, BackupDriver::Ceph, |_| {}).await;
    let volumes = cluster.config("volumes").connect().expect("volumes pool");
    let backups = cluster.config("backups").connect().expect("backups pool");

    let source = svc.volume(1).await;
    let image = image_name(&source);
    write_first_state(&volumes, &image);
    let s1 = svc.snapshot(&source).await;
    let full = svc.backup(&source, false, None).await;
    assert_eq!(
        (full.parent_id.as_deref(), full.full_reason.as_deref()),
        (None, None)
    );

    write_second_state(&volumes, &image);
    let s2 = svc.snapshot(&source).await;
    let incremental = svc.backup(&source, true, None).await;
    assert_eq!(incremental.parent_id.as_deref(), Some(full.id.as_str()));
    assert_eq!(incremental.full_reason, None);
    assert_eq!(
        backup_snapshots(&volumes, &image).len(),
        1,
        "only the newest backup snapshot stays on the source"
    );

    // Restores: into a new volume, into a used larger one.
    let new = svc.restore(&full, None).await;
    assert_same_data(
        &volumes,
        &image,
        Some(&cinder_snapshot(&s1)),
        &image_name(&new),
    );
    let larger = svc.volume(2).await;
    write(
        &volumes,
        &image_name(&larger),
        0,
        &dev_cluster::pattern(9, 8 * MIB as usize),
    );
    write(
        &volumes,
        &image_name(&larger),
        GIB + GIB / 2,
        &dev_cluster::pattern(9, MIB as usize),
    );
    svc.restore(&incremental, Some(&larger)).await;
    assert_same_data(
        &volumes,
        &image,
        Some(&cinder_snapshot(&s2)),
        &image_name(&larger),
    );

    // Without the parent's snapshot on the source, an incremental cannot
    // be done: the full backup made instead says why.
    for snap in backup_snapshots(&volumes, &image) {
        Image::open(&volumes, &image)
            .expect("open")
            .snap_remove(&snap)
            .expect("remove snap");
    }
    let fallback = svc.backup(&source, true, None).await;
    assert_eq!(fallback.parent_id, None);
    let reason = fallback.full_reason.clone().expect("a reason");
    assert!(reason.contains("snapshot"), "{reason}");

    // A backup of a Cinder snapshot (through a temporary clone).
    let of_snapshot = svc.backup(&source, false, Some(&s1)).await;
    assert!(images_with(&volumes, ".backup-source.").is_empty());
    let from_snapshot = svc.restore(&of_snapshot, None).await;
    assert_same_data(
        &volumes,
        &image,
        Some(&cinder_snapshot(&s1)),
        &image_name(&from_snapshot),
    );

    // Deletes, newest first (Cinder's rule), leave nothing behind.
    for backup in [&of_snapshot, &fallback, &incremental, &full] {
        svc.delete_backup(&backup.id).await;
    }
    assert_eq!(images_with(&backups, &source.id), Vec::<String>::new());
    assert_eq!(backup_snapshots(&volumes, &image), Vec::<String>::new());
    remove_volumes(&svc, &[&s1, &s2], &[&new, &larger, &from_snapshot, &source]).await;
    for volume in [&new, &larger, &from_snapshot, &source] {
        assert!(
            images_with(&volumes, &volume.id).is_empty(),
            "{} left",
            volume.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbd_volumes_into_the_repository() {
    let Some(cluster) = dev_cluster::for_test("rbd_volumes_into_the_repository") else {
        return;
    };
    let svc = service(cluster, BackupDriver::Posix, |_| {}).await;
    let volumes = cluster.config("volumes").connect().expect("volumes pool");

    let source = svc.volume(1).await;
    let image = image_name(&source);
    write_first_state(&volumes, &image);
    let s1 = svc.snapshot(&source).await;
    let full = svc.backup(&source, false, None).await;
    write_second_state(&volumes, &image);
    let s2 = svc.snapshot(&source).await;
    let incremental = svc.backup(&source, true, None).await;
    assert_eq!(incremental.parent_id.as_deref(), Some(full.id.as_str()));
    let snaps = backup_snapshots(&volumes, &image);
    assert_eq!(
        snaps.len(),
        1,
        "only the newest backup snapshot stays: {snaps:?}"
    );
    assert!(snaps[0].contains(&incremental.id), "{snaps:?}");

    let first = svc.restore(&full, None).await;
    assert_same_data(
        &volumes,
        &image,
        Some(&cinder_snapshot(&s1)),
        &image_name(&first),
    );
    let used = svc.volume(1).await;
    write(
        &volumes,
        &image_name(&used),
        0,
        &dev_cluster::pattern(8, 16 * MIB as usize),
    );
    svc.restore(&incremental, Some(&used)).await;
    assert_same_data(
        &volumes,
        &image,
        Some(&cinder_snapshot(&s2)),
        &image_name(&used),
    );

    // A volume made from a snapshot holds its data and does not need it.
    let copy = svc
        .ember
        .create_volume(
            &caller(),
            VolumeCreate {
                size_gib: 2,
                snapshot_id: Some(s1.clone()),
                ..VolumeCreate::default()
            },
        )
        .await
        .expect("volume from snapshot");
    assert_same_data(
        &volumes,
        &image,
        Some(&cinder_snapshot(&s1)),
        &image_name(&copy),
    );

    // Deleting the backup whose snapshot is on the source removes it.
    svc.delete_backup(&incremental.id).await;
    assert_eq!(backup_snapshots(&volumes, &image), Vec::<String>::new());
    svc.delete_backup(&full.id).await;
    remove_volumes(&svc, &[&s1, &s2], &[&first, &used, &copy, &source]).await;
    for volume in [&first, &used, &copy, &source] {
        assert!(
            images_with(&volumes, &volume.id).is_empty(),
            "{} left",
            volume.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_backends_are_down_with_a_clear_error() {
    let Some(cluster) = dev_cluster::for_test("unusable_backends_are_down_with_a_clear_error")
    else {
        return;
    };
    let down = |svc: &Service, binary: &str| {
        let ember = svc.ember.clone();
        let binary = binary.to_string();
        async move {
            let services = ember.list_services().await.expect("services");
            let row = services
                .iter()
                .find(|s| s.binary == binary)
                .unwrap_or_else(|| panic!("no {binary} row"));
            !row.up
        }
    };

    // Wrong user for the volumes: cinder-volume down, creates refused.
    let svc = service(cluster, BackupDriver::Posix, |c| {
        c.rbd_user = "nobody".into()
    })
    .await;
    assert!(down(&svc, "cinder-volume").await);
    assert!(!down(&svc, "cinder-backup").await);
    let why = svc.ember.backend_down("cinder-volume").expect("a reason");
    assert!(why.contains("client.nobody"), "{why}");
    let err = svc
        .ember
        .create_volume(
            &caller(),
            VolumeCreate {
                size_gib: 1,
                ..VolumeCreate::default()
            },
        )
        .await
        .expect_err("no volumes without a cluster");
    assert!(matches!(err, ServiceError::Backend(_)), "{err}");

    // A missing backup pool: cinder-backup down, backups refused.
    let svc = service(cluster, BackupDriver::Ceph, |c| {
        c.backup_ceph_pool = "no-such-pool".into()
    })
    .await;
    assert!(down(&svc, "cinder-backup").await);
    assert!(!down(&svc, "cinder-volume").await);
    let why = svc.ember.backend_down("cinder-backup").expect("a reason");
    assert!(why.contains("no-such-pool"), "{why}");
    let volume = svc.volume(1).await;
    let err = svc
        .ember
        .create_backup(
            &caller(),
            BackupCreate {
                volume_id: volume.id.clone(),
                ..BackupCreate::default()
            },
        )
        .await
        .expect_err("no backups without a backup pool");
    assert!(err.to_string().contains("no-such-pool"), "{err}");
    assert_eq!(
        svc.ember
            .get_volume(&caller(), &volume.id)
            .await
            .expect("get")
            .status,
        "available",
        "a refused backup changes nothing"
    );
    remove_volumes(&svc, &[], &[&volume]).await;
}
