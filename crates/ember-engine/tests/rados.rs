//! Backup, restore, verify, delete and gc through the engine on a RADOS
//! repository in a real Ceph cluster (the one `CEPH_CONF` names, or the
//! throw-away cluster of `shared/ceph/ceph-up.sh`). Without Ceph the tests
//! skip, saying why — unless `EMBER_REQUIRE_CEPH=1`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use ember_ceph::dev_cluster::{self, DevCluster};
use ember_ceph::IoCtx;
use ember_engine::{run_gc, run_verify, EngineError, ParentChoice, Progress, VerifyScope};
use ember_format::PackId;
use ember_store::open_store;
use ember_types::BackupId;

const POOL: &str = "backups";

/// A repository under a fresh prefix of the pool; every object under the
/// prefix is removed when dropped.
struct RadosFixture {
    fx: Fixture,
    io: IoCtx,
    prefix: String,
    cluster: &'static DevCluster,
}

impl RadosFixture {
    fn new(cluster: &'static DevCluster, label: &str) -> Self {
        let prefix = format!("ember-test-{label}-{}", uuid::Uuid::new_v4().simple());
        let spec = format!(
            "rados:{POOL}/{prefix}?conf={}&user=admin",
            cluster.conf.display()
        );
        let fx = Fixture::on_store(open_store(&spec).expect("open the store"));
        assert_eq!(fx.repo.location(), format!("rados:{POOL}/{prefix}"));
        let io = cluster.config(POOL).connect().expect("connect");
        RadosFixture {
            fx,
            io,
            prefix,
            cluster,
        }
    }

    /// The repository's packs and their sizes.
    fn packs(&self) -> BTreeMap<PackId, u64> {
        self.fx
            .repo
            .list_packs()
            .expect("list packs")
            .into_iter()
            .map(|pack| (pack.id, pack.size))
            .collect()
    }
}

impl Drop for RadosFixture {
    fn drop(&mut self) {
        self.cluster
            .remove_objects(POOL, &format!("{}/", self.prefix));
    }
}

#[test]
fn full_and_incremental_restore_verify_delete_and_gc_on_rados() {
    let Some(cluster) = dev_cluster::for_test("engine_on_rados") else {
        return;
    };
    let rx = RadosFixture::new(cluster, "engine");
    let fx = &rx.fx;
    let volume = fx.path("vol.img");
    // 32 MiB, half of it noise: each of the three workers fills a pack of
    // more than one 4 MiB piece, so packs are streamed.
    let mut data = volume_bytes(1, 8192);
    write(&volume, &data);
    let full = fx.backup(&volume, ParentChoice::None);
    let full_data = data.clone();
    let packs_of_full = rx.packs();
    assert!(
        packs_of_full.values().any(|&size| size > 4 << 20),
        "{packs_of_full:?}"
    );

    mutate(&mut data, 7, 20);
    write(&volume, &data);
    let incr = fx.backup(&volume, ParentChoice::Latest);
    assert_eq!(incr.parent, Some(full.id));
    assert!(incr.stats.unchanged_chunks > 6000, "{:?}", incr.stats);
    assert!(incr.stats.new_chunks <= 40, "{:?}", incr.stats);
    assert!(fx.restore(&full.id) == full_data, "full restores identical");
    assert!(
        fx.restore(&incr.id) == data,
        "incremental restores identical"
    );
    let report =
        run_verify(&fx.repo, VerifyScope::All, tuning(), &Progress::new()).expect("verify");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.backups_checked, 2);

    // Flip one payload bit of the first frame of a pack only the
    // incremental uses (after the pack magic and the frame header).
    let own = *rx
        .packs()
        .keys()
        .find(|id| !packs_of_full.contains_key(id))
        .expect("the incremental wrote a pack");
    let oid = format!("{}/pack.{own}", rx.prefix);
    let mut byte = [0u8; 1];
    assert_eq!(rx.io.read(&oid, 8 + 16, &mut byte).expect("read"), 1);
    rx.io.write(&oid, 8 + 16, &[byte[0] ^ 1]).expect("damage");
    let report =
        run_verify(&fx.repo, VerifyScope::All, tuning(), &Progress::new()).expect("verify");
    assert!(!report.is_clean());
    let affected: Vec<BackupId> = report.affected_backups.iter().map(|b| b.id).collect();
    assert_eq!(affected, vec![incr.id], "{report:?}");

    // Deleting the incremental frees its packs, damaged one included; the
    // full backup is untouched.
    fx.repo.delete_backup(&incr.id).expect("delete incremental");
    let gc = run_gc(&fx.repo, Duration::ZERO, false, &Progress::new()).expect("gc");
    assert_eq!(gc.backups, 1);
    assert_eq!(
        rx.packs().into_keys().collect::<Vec<_>>(),
        packs_of_full.into_keys().collect::<Vec<_>>(),
        "exactly the full backup's packs stay"
    );
    let report =
        run_verify(&fx.repo, VerifyScope::All, tuning(), &Progress::new()).expect("verify");
    assert!(report.is_clean(), "{report:?}");
    assert!(fx.restore(&full.id) == full_data);

    fx.repo.delete_backup(&full.id).expect("delete full");
    let gc = run_gc(&fx.repo, Duration::ZERO, false, &Progress::new()).expect("gc");
    assert!(gc.packs_removed > 0);
    assert!(rx.packs().is_empty());
    assert!(fx.repo.list_backups().expect("list").backups.is_empty());
}

#[test]
fn gc_on_rados_spares_what_a_running_backup_may_use() {
    let Some(cluster) = dev_cluster::for_test("engine_gc_on_rados") else {
        return;
    };
    let rx = RadosFixture::new(cluster, "engine-gc");
    let fx = &rx.fx;
    let volume = fx.path("vol.img");
    write(&volume, &volume_bytes(2, 16));
    let parent = fx.backup(&volume, ParentChoice::None);

    // A backup "running" on top of `parent` (its lease held), which then
    // loses its parent: gc must not collect the parent's packs.
    let running = BackupId::new_random();
    let lease = fx
        .repo
        .lease_writer(running, Some(parent.id))
        .expect("lease");
    let writers = fx.repo.live_writers().expect("writers");
    assert_eq!(writers.len(), 1);
    assert_eq!(writers[0].backup, running);
    fx.repo.delete_backup(&parent.id).expect("delete");
    let refused = run_gc(&fx.repo, Duration::ZERO, false, &Progress::new());
    assert!(
        matches!(refused, Err(EngineError::GcRefused(_))),
        "{refused:?}"
    );
    assert!(!rx.packs().is_empty());

    drop(lease);
    assert!(fx.repo.live_writers().expect("writers").is_empty());
    let report = run_gc(&fx.repo, Duration::ZERO, false, &Progress::new()).expect("gc");
    assert!(report.packs_removed > 0);
    assert!(rx.packs().is_empty());
}
