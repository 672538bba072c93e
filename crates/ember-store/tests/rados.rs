//! The RADOS target against a real Ceph cluster: the one `CEPH_CONF` names,
//! or else the throw-away cluster of `shared/ceph/ceph-up.sh` (started if it
//! is not running). Without Ceph the tests skip, saying why — unless
//! `EMBER_REQUIRE_CEPH=1`, where that is a failure.
//!
//! Every test works under its own uuid-named prefix of the `backups` pool
//! and removes what it wrote, even when it fails.

use ember_ceph::dev_cluster::pattern;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime};

use ember_ceph::dev_cluster::{self, DevCluster};
use ember_ceph::IoCtx;
use ember_store::{ObjectKey, ObjectKind, ObjectStore, RadosStore, StoreError};

const POOL: &str = "backups";
const MIB: usize = 1 << 20;
/// The store writes and reads objects in pieces of this size.
const PIECE: usize = 4 * MIB;
/// Short leases, so the tests see them expire.
const LEASE: Duration = Duration::from_secs(3);

/// A store under a fresh prefix, with a raw handle on its pool; removes
/// every object under the prefix when dropped.
struct TestStore {
    store: RadosStore,
    io: IoCtx,
    prefix: String,
    cluster: &'static DevCluster,
}

impl TestStore {
    fn new(cluster: &'static DevCluster, label: &str) -> Self {
        let prefix = format!("ember-test-{label}-{}", uuid::Uuid::new_v4().simple());
        Self::at(cluster, prefix)
    }

    fn at(cluster: &'static DevCluster, prefix: String) -> Self {
        let store = RadosStore::connect(&cluster.config(POOL), Some(&prefix))
            .expect("connect")
            .with_lease_duration(LEASE);
        let io = cluster.config(POOL).connect().expect("connect raw");
        TestStore {
            store,
            io,
            prefix,
            cluster,
        }
    }

    /// The raw names of the objects under the prefix.
    fn raw_objects(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .io
            .list_objects()
            .expect("list")
            .map(|name| name.expect("list entry"))
            .filter(|name| name.starts_with(&format!("{}/", self.prefix)))
            .collect();
        names.sort();
        names
    }

    fn oid(&self, key: &ObjectKey) -> String {
        self.store.object_name(key).expect("object name")
    }

    fn names(&self, kind: ObjectKind) -> Vec<String> {
        let mut names = Vec::new();
        self.store
            .list(kind, &mut |meta| {
                names.push(meta.name);
                Ok(())
            })
            .expect("list");
        names.sort();
        names
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        self.cluster
            .remove_objects(POOL, &format!("{}/", self.prefix));
    }
}

fn cluster(test: &str) -> Option<&'static DevCluster> {
    dev_cluster::for_test(test)
}

fn pack(n: u8) -> ObjectKey {
    ObjectKey::new(ObjectKind::Pack, hex(n, 32))
}

fn manifest(n: u8) -> ObjectKey {
    ObjectKey::new(ObjectKind::Manifest, format!("{}-backup", hex(n, 8)))
}

fn hex(n: u8, len: usize) -> String {
    format!("{n:02x}").repeat(len / 2)
}

#[test]
fn put_get_ranges_stat_list_and_idempotent_delete() {
    let Some(cluster) = cluster("rados_store_basics") else {
        return;
    };
    let t = TestStore::new(cluster, "basics");
    let store = &t.store;
    assert_eq!(store.location(), format!("rados:{POOL}/{}", t.prefix));

    let before = SystemTime::now();
    store.put(&pack(0xaa), b"hello").expect("put");
    store.put(&pack(0xaa), b"hello").expect("put is idempotent");
    store.put(&manifest(1), b"manifest").expect("put");
    let config = ObjectKey::new(ObjectKind::Config, "config");
    store.put(&config, b"{}").expect("put config");
    assert_eq!(
        t.raw_objects(),
        vec![
            format!("{}/backup.{}", t.prefix, manifest(1).name),
            format!("{}/config", t.prefix),
            format!("{}/pack.{}", t.prefix, pack(0xaa).name),
        ]
    );

    assert_eq!(store.get(&pack(0xaa)).expect("get"), b"hello");
    assert_eq!(store.get_range(&pack(0xaa), 1, 3).expect("range"), b"ell");
    assert_eq!(store.get_range(&pack(0xaa), 3, 10).expect("short"), b"lo");
    assert!(store
        .get_range(&pack(0xaa), 9, 10)
        .expect("past")
        .is_empty());
    let mut read = Vec::new();
    store
        .open(&pack(0xaa))
        .expect("open")
        .read_to_end(&mut read)
        .expect("read");
    assert_eq!(read, b"hello");
    let meta = store.stat(&pack(0xaa)).expect("stat").expect("exists");
    assert_eq!(
        (meta.name.as_str(), meta.size),
        (pack(0xaa).name.as_str(), 5)
    );
    assert!(meta.modified >= before && meta.modified <= SystemTime::now());

    assert_eq!(t.names(ObjectKind::Pack), vec![pack(0xaa).name]);
    assert_eq!(t.names(ObjectKind::Manifest), vec![manifest(1).name]);
    assert_eq!(t.names(ObjectKind::Config), vec!["config".to_string()]);
    assert!(t.names(ObjectKind::Lease).is_empty());

    // put replaces a (small) object atomically.
    store.put(&pack(0xaa), b"replaced").expect("replace");
    assert_eq!(store.get(&pack(0xaa)).expect("get"), b"replaced");

    store.sync().expect("sync");
    store.delete(&pack(0xaa)).expect("delete");
    store.delete(&pack(0xaa)).expect("delete is idempotent");
    assert!(store.get(&pack(0xaa)).expect_err("gone").is_not_found());
    assert!(store
        .get_range(&pack(0xaa), 0, 1)
        .expect_err("gone")
        .is_not_found());
    assert!(store.open(&pack(0xaa)).err().expect("gone").is_not_found());
    assert!(store.stat(&pack(0xaa)).expect("stat").is_none());
    assert!(t.names(ObjectKind::Pack).is_empty());

    // Names outside the contract never reach the pool.
    for key in [
        ObjectKey::new(ObjectKind::Pack, ""),
        ObjectKey::new(ObjectKind::Pack, "../x"),
        ObjectKey::new(ObjectKind::Pack, "a/b"),
        ObjectKey::new(ObjectKind::Pack, ".hidden"),
        ObjectKey::new(ObjectKind::Config, "other"),
    ] {
        assert!(
            matches!(store.put(&key, b"x"), Err(StoreError::InvalidName(_))),
            "{key}"
        );
    }
}

#[test]
fn prefixes_keep_repositories_in_one_pool_apart() {
    let Some(cluster) = cluster("rados_store_prefixes") else {
        return;
    };
    let a = TestStore::new(cluster, "prefix-a");
    // A prefix nested below another store's: still apart.
    let b = TestStore::at(cluster, format!("{}/nested", a.prefix));
    a.store.put(&pack(1), b"a").expect("put");
    b.store.put(&pack(2), b"b").expect("put");
    a.store.put(&manifest(3), b"a").expect("put");
    assert_eq!(a.names(ObjectKind::Pack), vec![pack(1).name]);
    assert_eq!(b.names(ObjectKind::Pack), vec![pack(2).name]);
    assert!(b.names(ObjectKind::Manifest).is_empty());
    assert!(b.store.stat(&pack(1)).expect("stat").is_none());
    assert!(matches!(
        RadosStore::connect(&cluster.config(POOL), Some("bad//prefix")),
        Err(StoreError::InvalidName(_))
    ));
}

#[test]
fn writes_are_invisible_until_committed_and_large_objects_stream() {
    let Some(cluster) = cluster("rados_store_atomicity") else {
        return;
    };
    let t = TestStore::new(cluster, "atomic");
    let store = &t.store;

    // Small: nothing reaches the pool before the commit.
    let mut writer = store.create(&manifest(1)).expect("create");
    writer.write_all(b"small manifest").expect("write");
    assert!(t.raw_objects().is_empty());
    writer.commit().expect("commit");
    assert_eq!(store.get(&manifest(1)).expect("get"), b"small manifest");

    // Large: streamed in pieces under its name, invisible until the commit.
    let data = pattern(1, 2 * PIECE + 123_457);
    let key = pack(0x11);
    let mut writer = store.create(&key).expect("create");
    let (head, tail) = data.split_at(PIECE + 99_999);
    for piece in head.chunks(65_537) {
        writer.write_all(piece).expect("write");
    }
    assert!(
        t.io.stat(&t.oid(&key)).is_ok(),
        "a piece is in the pool already"
    );
    assert!(store.stat(&key).expect("stat").is_none());
    assert!(store.get(&key).expect_err("uncommitted").is_not_found());
    assert!(store
        .get_range(&key, 0, 10)
        .expect_err("uncommitted")
        .is_not_found());
    assert!(store.open(&key).err().expect("uncommitted").is_not_found());
    assert!(store.touch(&key).expect_err("uncommitted").is_not_found());
    assert!(!store
        .delete_if_untouched_since(&key, SystemTime::now() + Duration::from_secs(3600))
        .expect("conditional delete"));
    assert!(t.names(ObjectKind::Pack).is_empty());
    writer.write_all(tail).expect("write");
    writer.commit().expect("commit");

    assert!(store.get(&key).expect("get") == data);
    assert_eq!(
        store.stat(&key).expect("stat").expect("exists").size,
        data.len() as u64
    );
    let at = PIECE as u64 - 5;
    assert!(store.get_range(&key, at, 10).expect("range") == data[PIECE - 5..PIECE + 5]);
    let whole = store
        .get_range(&key, 7, data.len() as u64)
        .expect("long range");
    assert!(whole == data[7..]);
    let mut read = Vec::new();
    let mut reader = store.open(&key).expect("open");
    // Odd read sizes across piece boundaries.
    let mut buf = vec![0u8; 1_000_003];
    loop {
        let n = reader.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        read.extend_from_slice(&buf[..n]);
    }
    assert!(read == data);

    // An object of exactly one piece is written in one step.
    let one = pattern(2, PIECE);
    store.put(&pack(0x22), &one).expect("put one piece");
    assert!(store.get(&pack(0x22)).expect("get") == one);

    // A large object must be new: over a committed one it fails, and the
    // old object stays whole.
    let mut writer = store.create(&pack(0x22)).expect("create");
    let err = writer
        .write_all(&pattern(3, PIECE + 1))
        .expect_err("exists already");
    assert!(err.to_string().contains("must be new"), "{err}");
    drop(writer);
    assert!(store.get(&pack(0x22)).expect("get") == one);
    // put has the whole object in hand: it replaces in one step, any size.
    let bigger = pattern(5, PIECE + 7);
    store.put(&pack(0x22), &bigger).expect("put replaces");
    store.put(&pack(0x22), &bigger).expect("put is idempotent");
    assert!(store.get(&pack(0x22)).expect("get") == bigger);

    // A dropped writer leaves nothing, even after pieces went out.
    let mut writer = store.create(&pack(0x33)).expect("create");
    writer.write_all(&pattern(4, PIECE + 10)).expect("write");
    assert!(t.io.stat(&t.oid(&pack(0x33))).is_ok());
    drop(writer);
    assert!(t.io.stat(&t.oid(&pack(0x33))).is_err());
    let mut writer = store.create(&pack(0x44)).expect("create");
    writer.write_all(b"never committed").expect("write");
    drop(writer);
    assert_eq!(t.names(ObjectKind::Pack), vec![key.name, pack(0x22).name]);
}

#[test]
fn touch_and_conditional_delete() {
    let Some(cluster) = cluster("rados_store_touch") else {
        return;
    };
    let t = TestStore::new(cluster, "touch");
    let store = &t.store;
    let key = pack(0x55);
    store.put(&key, b"x").expect("put");
    let written = store.stat(&key).expect("stat").expect("exists").modified;
    assert!(!store
        .delete_if_untouched_since(&key, written)
        .expect("written at the cutoff"));
    std::thread::sleep(Duration::from_millis(5));
    let cutoff = SystemTime::now();
    std::thread::sleep(Duration::from_millis(5));
    store.touch(&key).expect("touch");
    let touched = store.stat(&key).expect("stat").expect("exists").modified;
    assert!(touched > cutoff, "a touch moves the time on");
    assert!(!store
        .delete_if_untouched_since(&key, cutoff)
        .expect("touched since the cutoff"));
    assert!(store
        .delete_if_untouched_since(&key, SystemTime::now())
        .expect("untouched since"));
    assert!(store.stat(&key).expect("stat").is_none());
    assert!(!store
        .delete_if_untouched_since(&key, SystemTime::now())
        .expect("missing"));
    assert!(store.touch(&key).expect_err("missing").is_not_found());
    assert!(t.raw_objects().is_empty(), "a failed touch creates nothing");
}

/// A touch racing a conditional delete: whichever wins, a touch that
/// returned success keeps the object, and a delete that returned `true`
/// means the touch failed.
#[test]
fn a_successful_touch_always_keeps_the_object() {
    let Some(cluster) = cluster("rados_store_touch_race") else {
        return;
    };
    let t = TestStore::new(cluster, "race");
    let store = Arc::new(t.store.clone());
    let (mut kept, mut deleted) = (0, 0);
    for round in 0..40u8 {
        let key = pack(round);
        store.put(&key, b"racing").expect("put");
        std::thread::sleep(Duration::from_millis(2));
        let cutoff = SystemTime::now();
        let start = Arc::new(Barrier::new(2));
        let toucher = std::thread::spawn({
            let (store, key, start) = (store.clone(), key.clone(), start.clone());
            move || {
                start.wait();
                // Stagger a little, so either side wins sometimes.
                std::thread::sleep(Duration::from_micros(u64::from(round % 8) * 150));
                store.touch(&key)
            }
        });
        start.wait();
        let removed = store
            .delete_if_untouched_since(&key, cutoff)
            .expect("conditional delete");
        let touch = toucher.join().expect("toucher");
        let exists = store.stat(&key).expect("stat").is_some();
        match touch {
            Ok(()) => {
                assert!(exists && !removed, "round {round}: a touch succeeded");
                kept += 1;
            }
            Err(e) if e.is_not_found() => {
                assert!(removed && !exists, "round {round}: the delete won");
                deleted += 1;
            }
            Err(e) => panic!("touch: {e}"),
        }
    }
    println!("touch won {kept} times, delete {deleted} times");
}

#[test]
fn leases_are_live_while_held_renewed_and_gone_when_released() {
    let Some(cluster) = cluster("rados_store_leases") else {
        return;
    };
    let t = TestStore::new(cluster, "lease");
    let store = &t.store;
    let lease = store.acquire_lease("writer-1", b"info-1").expect("lease");
    assert_eq!(store.live_leases().expect("live"), vec![b"info-1".to_vec()]);
    assert!(
        store.acquire_lease("writer-1", b"again").is_err(),
        "a held lease cannot be taken"
    );
    // Held past its duration: the renewer keeps it live, and commits go on.
    std::thread::sleep(LEASE + Duration::from_secs(1));
    assert_eq!(store.live_leases().expect("live"), vec![b"info-1".to_vec()]);
    store
        .put(&pack(1), b"committed under a lease")
        .expect("put");
    drop(lease);
    assert!(store.live_leases().expect("live").is_empty());
    assert_eq!(
        t.raw_objects(),
        vec![t.oid(&pack(1))],
        "lease object removed"
    );
    // The name is free again.
    let again = store.acquire_lease("writer-1", b"info-2").expect("lease");
    assert_eq!(store.live_leases().expect("live"), vec![b"info-2".to_vec()]);
    drop(again);
}

#[test]
fn a_holder_that_loses_its_lease_refuses_to_commit() {
    let Some(cluster) = cluster("rados_store_lease_lost") else {
        return;
    };
    let t = TestStore::new(cluster, "lost");
    let lease = t.store.acquire_lease("writer", b"info").expect("lease");
    // What a garbage collection does to a lease it finds stale: remove it.
    t.io.remove(&t.oid(&ObjectKey::new(ObjectKind::Lease, "writer")))
        .expect("remove lease object");
    let started = Instant::now();
    let err = loop {
        match t.store.put(&pack(1), b"x") {
            Err(e) => break e,
            Ok(()) => {
                assert!(started.elapsed() < LEASE, "still committing");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    assert!(
        matches!(err, StoreError::LeaseLost(ref name) if name == "writer"),
        "{err}"
    );
    assert!(t.store.put(&pack(2), b"x").is_err());
    drop(lease);
    t.store
        .put(&pack(2), b"x")
        .expect("commits resume once released");
}

/// The child half of `a_killed_holders_lease_goes_stale_within_its_duration`:
/// takes a lease and waits to be killed. Does nothing when run as a test.
#[test]
fn lease_holder_child() {
    let Ok(prefix) = std::env::var("EMBER_TEST_LEASE_CHILD") else {
        return;
    };
    let Some(cluster) = cluster("lease_holder_child") else {
        return;
    };
    let store = RadosStore::connect(&cluster.config(POOL), Some(&prefix))
        .expect("connect")
        .with_lease_duration(LEASE);
    let _lease = store
        .acquire_lease("child", format!("pid {}", std::process::id()).as_bytes())
        .expect("lease");
    println!("READY");
    std::io::stdout().flush().expect("flush");
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn a_killed_holders_lease_goes_stale_within_its_duration() {
    let Some(cluster) = cluster("rados_store_killed_holder") else {
        return;
    };
    let t = TestStore::new(cluster, "killed");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "lease_holder_child", "--nocapture"])
        .env("EMBER_TEST_LEASE_CHILD", &t.prefix)
        .env("CEPH_CONF", &cluster.conf)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the holder");
    let stdout = child.stdout.take().expect("stdout");
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.trim() == "READY");
    assert!(ready, "the holder took its lease");
    let info = format!("pid {}", child.id()).into_bytes();
    assert_eq!(t.store.live_leases().expect("live"), vec![info.clone()]);

    child.kill().expect("SIGKILL");
    let killed = Instant::now();
    child.wait().expect("reap");
    // Live until the lock expires (the holder renewed it at most a third of
    // the duration before it died), then stale and removed.
    assert_eq!(t.store.live_leases().expect("live"), vec![info]);
    loop {
        let live = t.store.live_leases().expect("live");
        if live.is_empty() {
            break;
        }
        assert!(
            killed.elapsed() < LEASE + Duration::from_secs(2),
            "still live {:?} after the kill",
            killed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("stale {:?} after the kill", killed.elapsed());
    assert!(t.raw_objects().is_empty(), "the stale lease was removed");
}

#[test]
fn leftovers_of_killed_writers_are_swept_after_the_cutoff() {
    let Some(cluster) = cluster("rados_store_sweep") else {
        return;
    };
    let t = TestStore::new(cluster, "sweep");
    let store = &t.store;
    store.put(&pack(1), b"committed").expect("put");
    let _lease = store.acquire_lease("writer", b"info").expect("lease");
    // What a writer killed after its first piece leaves: an unmarked object.
    t.io.write_full(&t.oid(&pack(2)), b"torn")
        .expect("leftover");
    t.io.write_full(&t.oid(&manifest(3)), b"torn")
        .expect("leftover");
    assert_eq!(t.raw_objects().len(), 4);
    assert!(t.names(ObjectKind::Pack) == vec![pack(1).name]);

    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    assert_eq!(
        store.remove_stale_temporaries(an_hour_ago).expect("sweep"),
        0,
        "recent leftovers stay (their writer may be running)"
    );
    let later = SystemTime::now() + Duration::from_secs(5);
    assert_eq!(store.remove_stale_temporaries(later).expect("sweep"), 2);
    assert_eq!(
        t.raw_objects(),
        vec![
            t.oid(&ObjectKey::new(ObjectKind::Lease, "writer")),
            t.oid(&pack(1)),
        ],
        "committed objects and leases stay"
    );
}
