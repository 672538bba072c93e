//! The RADOS target: a repository's objects in a Ceph pool, through librados
//! (`ember-ceph`). docs/format.md, "RADOS target", is the specification;
//! in short:
//!
//! ```text
//! <prefix>config           the repository configuration
//! <prefix>pack.<pack id>   packs
//! <prefix>backup.<id>      manifests
//! <prefix>lease.<name>     leases of running writers (cls_lock'ed while alive)
//! ```
//!
//! The prefix is empty or `NAME/` (`NAME` may itself hold `/`), so several
//! repositories share a pool without seeing each other's objects. A
//! repository owns the objects under its prefix that follow these patterns.
//!
//! - **Commit marker.** An object is *committed* once its attribute
//!   `ember.time` is set: its commit (or last touch) time, in nanoseconds
//!   since the epoch, as decimal text. Every read (`get`, `get_range`,
//!   `open`, `stat`, `list`) treats an object without it as absent, and
//!   reads check it in the same round trip as the data (a compound read).
//! - **Atomic writes.** An object that fits in one piece (`PIECE_LEN`,
//!   4 MiB) is written at commit by one compound write (`write_full` and
//!   the marker): readers see the old object or the new one. A larger
//!   object (a pack reaches 16 MiB, a manifest tens of MiB) is streamed in
//!   pieces under its final name — the first piece creates it exclusively,
//!   later ones require it to exist — and the commit writes the last piece
//!   and sets the marker in one step. Memory stays at one piece per writer.
//!   Such an object must be new: its name cannot be taken by another
//!   object (packs and manifests have fresh random names). `put`, which
//!   has the whole object in hand, always writes it in one step.
//! - **Leftovers.** A writer dropped without committing removes its object;
//!   one killed leaves it unmarked, invisible, and
//!   [`ObjectStore::remove_stale_temporaries`] removes it once its last
//!   write is older than the cutoff (through a compound "remove if still
//!   unmarked"). A swept object cannot come back half-written: pieces after
//!   the first require the object to exist.
//! - **Touch and conditional delete.** A touch sets the marker to now, if
//!   the object is committed, in one compound write; the conditional delete
//!   reads the marker and removes the object in one compound write that
//!   requires the marker to be unchanged. The OSD applies operations on one
//!   object in order, so a touch that succeeded either came first (and the
//!   delete fails its comparison) or came after the removal (and failed).
//! - **Leases.** An object locked with an expiring exclusive `cls_lock`
//!   (the OSD drops it [`DEFAULT_LEASE_DURATION`] after it was last renewed,
//!   by the OSD's clock) holding the lease's info; a thread renews it every
//!   third of the duration. A killed holder's lease is stale at most one
//!   duration later. A holder that could not renew for two thirds of the
//!   duration (stalled, or cut off from the cluster) refuses to commit
//!   anything ([`StoreError::LeaseLost`]): others may have seen its lease
//!   end.
//! - **Durability.** An acknowledged RADOS write is on every replica's
//!   persistent store, so [`ObjectStore::sync`] has nothing to do.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ember_ceph::{CephConfig, CephError, IoCtx, ObjectStat, ReadOp, WriteOp, XattrCmp};
use nix::errno::Errno;
use uuid::Uuid;

use crate::{
    valid_name, Lease, ObjectKey, ObjectKind, ObjectMeta, ObjectStore, ObjectWriter, StoreError,
};

/// The attribute that commits an object: its commit or touch time.
const TIME_XATTR: &str = "ember.time";
/// Objects are written and read in pieces of this many bytes.
const PIECE_LEN: usize = 4 << 20;
/// The only name of the config object.
const CONFIG_NAME: &str = "config";
/// The `cls_lock` lock that makes a lease object live.
const LEASE_LOCK: &str = "ember.lease";
/// How long a lease outlives its last renewal, unless set otherwise with
/// [`RadosStore::with_lease_duration`].
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(30);

/// A repository kept as objects in one Ceph pool, under an optional name
/// prefix. Cheap to clone (the clones share one connection).
#[derive(Clone)]
pub struct RadosStore {
    inner: Arc<Inner>,
    lease_duration: Duration,
}

/// What a store's writers, readers and lease renewers share.
struct Inner {
    io: IoCtx,
    /// Empty, or `NAME/`.
    prefix: String,
    /// `rados:POOL[/NAME]`, for messages.
    location: String,
    /// The leases this store holds, by serial: their name and until when a
    /// commit may still start (see `check_leases`).
    leases: Mutex<HashMap<u64, (String, Instant)>>,
    next_lease: AtomicU64,
}

impl std::fmt::Debug for RadosStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RadosStore")
            .field("location", &self.inner.location)
            .finish()
    }
}

impl RadosStore {
    /// A store on `io`'s pool whose object names start with `NAME/` for a
    /// `prefix` of `NAME` (segments of letters, digits, `-`, `_` and `.`,
    /// separated by `/`), or with nothing.
    pub fn new(io: IoCtx, prefix: Option<&str>) -> Result<Self, StoreError> {
        let (prefix, location) = match prefix {
            None => (String::new(), format!("rados:{}", io.pool())),
            Some(name) if valid_prefix(name) => {
                (format!("{name}/"), format!("rados:{}/{name}", io.pool()))
            }
            Some(name) => return Err(StoreError::InvalidName(name.to_string())),
        };
        Ok(RadosStore {
            inner: Arc::new(Inner {
                io,
                prefix,
                location,
                leases: Mutex::new(HashMap::new()),
                next_lease: AtomicU64::new(0),
            }),
            lease_duration: DEFAULT_LEASE_DURATION,
        })
    }

    /// Connects to the cluster and pool `config` names (failing fast on a
    /// wrong user, key, monitor address or pool) and opens the store there.
    pub fn connect(config: &CephConfig, prefix: Option<&str>) -> Result<Self, StoreError> {
        let io = config.connect().map_err(|source| StoreError::Ceph {
            what: format!("connect to pool {}", config.pool),
            source,
        })?;
        Self::new(io, prefix)
    }

    /// The same store, with leases taken from now on lasting `duration`
    /// after their last renewal (at least one second): how long a killed
    /// holder's lease stays live, and about how long a holder may stall
    /// before it loses its lease.
    pub fn with_lease_duration(mut self, duration: Duration) -> Self {
        self.lease_duration = duration.max(Duration::from_secs(1));
        self
    }

    /// The RADOS object that holds `key`, for operators and tests.
    pub fn object_name(&self, key: &ObjectKey) -> Result<String, StoreError> {
        let name = &key.name;
        let valid = match key.kind {
            ObjectKind::Config => name == CONFIG_NAME,
            _ => valid_name(name),
        };
        if !valid {
            return Err(StoreError::InvalidName(name.clone()));
        }
        Ok(format!("{}{}{name}", self.inner.prefix, tag(key.kind)))
    }
}

/// Whether `name` can prefix a store's object names: object names joined
/// by `/`.
pub(crate) fn valid_prefix(name: &str) -> bool {
    name.split('/').all(valid_name)
}

/// What precedes an object's name in its RADOS name, after the prefix.
fn tag(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Config => "",
        ObjectKind::Pack => "pack.",
        ObjectKind::Manifest => "backup.",
        ObjectKind::Lease => "lease.",
    }
}

/// `t` as the marker holds it: nanoseconds since the epoch, in decimal.
fn time_text(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        .to_string()
}

/// The time a marker holds, if it holds one.
fn parse_time(raw: &[u8]) -> Option<SystemTime> {
    let nanos: u64 = std::str::from_utf8(raw).ok()?.parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// The latest time the object `stat` describes may have been written:
/// RADOS reports whole seconds.
fn latest_write(stat: &ObjectStat) -> SystemTime {
    stat.mtime + Duration::from_secs(1)
}

/// A store error as an I/O error, for `Read` and `Write`.
fn to_io(e: StoreError) -> std::io::Error {
    let kind = if e.is_not_found() {
        std::io::ErrorKind::NotFound
    } else {
        std::io::ErrorKind::Other
    };
    std::io::Error::new(kind, e)
}

/// The state of an object's commit marker.
enum Marker {
    /// No object.
    NoObject,
    /// An object not committed: being written, or left by a killed writer.
    Unset,
    /// A committed object, and its marker.
    Set(Vec<u8>),
}

/// A committed object's marker as read, and what `stat` reports.
struct Committed {
    marker: Vec<u8>,
    meta: ObjectMeta,
}

impl Inner {
    /// `pool/object`, for messages.
    fn describe(&self, oid: &str) -> String {
        format!("{}/{oid}", self.io.pool())
    }

    /// The error for a failed operation on `oid`: a missing object, or one
    /// that failed a "committed" check, is [`StoreError::NotFound`].
    fn fail(&self, what: &str, oid: &str, e: CephError) -> StoreError {
        if e.is_not_found() || e.is_canceled() {
            StoreError::NotFound(self.describe(oid))
        } else {
            self.ceph_error(what, oid, e)
        }
    }

    /// The error for a failed operation on `oid`, as librados reported it.
    fn ceph_error(&self, what: &str, oid: &str, source: CephError) -> StoreError {
        StoreError::Ceph {
            what: format!("{what} {}", self.describe(oid)),
            source,
        }
    }

    /// The kind and name of the object `oid`, if it is one of this store's.
    fn parse_oid<'a>(&self, oid: &'a str) -> Option<(ObjectKind, &'a str)> {
        let rest = oid.strip_prefix(&self.prefix)?;
        if rest == CONFIG_NAME {
            return Some((ObjectKind::Config, rest));
        }
        [ObjectKind::Pack, ObjectKind::Manifest, ObjectKind::Lease]
            .into_iter()
            .find_map(|kind| Some((kind, rest.strip_prefix(tag(kind))?)))
            .filter(|(_, name)| valid_name(name))
    }

    /// Calls `visit` with the RADOS name, kind and name of every object of
    /// this store in the pool. A listing that fails is an error, never a
    /// short list.
    fn for_each_object(
        &self,
        visit: &mut dyn FnMut(&str, ObjectKind, &str) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let listing_error = |source| StoreError::Ceph {
            what: format!("list the objects of {}", self.location),
            source,
        };
        for oid in self.io.list_objects().map_err(listing_error)? {
            let oid = oid.map_err(listing_error)?;
            if let Some((kind, name)) = self.parse_oid(&oid) {
                visit(&oid, kind, name)?;
            }
        }
        Ok(())
    }

    /// Reads up to `buf.len()` bytes at `offset` of `oid` if it is
    /// committed, in one round trip; how many were read.
    fn read_committed(&self, oid: &str, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        let fail = |e| self.fail("read", oid, e);
        let counts = ReadOp::new()
            .map_err(fail)?
            .cmp_xattr(TIME_XATTR, XattrCmp::Ne, b"")
            .read(offset, buf)
            .operate(&self.io, oid)
            .map_err(fail)?;
        Ok(counts.first().copied().unwrap_or(0))
    }

    /// Up to `len` bytes of committed `oid` from `offset`, read in pieces.
    fn read_range(&self, oid: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        loop {
            let done = out.len();
            let want = (len - done as u64).min(PIECE_LEN as u64) as usize;
            if want == 0 {
                return Ok(out);
            }
            out.resize(done + want, 0);
            let got = self.read_committed(oid, offset + done as u64, &mut out[done..])?;
            out.truncate(done + got);
            if got < want {
                return Ok(out);
            }
        }
    }

    /// The commit marker of `oid`.
    fn marker(&self, oid: &str) -> Result<Marker, StoreError> {
        match self.io.get_xattr(oid, TIME_XATTR) {
            Ok(marker) if !marker.is_empty() => Ok(Marker::Set(marker)),
            Ok(_) => Ok(Marker::Unset),
            Err(e) if e.errno() == Some(Errno::ENODATA as i32) => Ok(Marker::Unset),
            Err(e) if e.is_not_found() => Ok(Marker::NoObject),
            Err(e) => Err(self.ceph_error("read the commit time of", oid, e)),
        }
    }

    /// The marker, size and time of `oid` if it is committed (two round
    /// trips: the marker, then the size). A marker that is not a time
    /// counts as the object's last write.
    fn committed(&self, oid: &str, name: &str) -> Result<Option<Committed>, StoreError> {
        let Marker::Set(marker) = self.marker(oid)? else {
            return Ok(None);
        };
        let stat = match self.io.stat(oid) {
            Ok(stat) => stat,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(self.ceph_error("stat", oid, e)),
        };
        let modified = parse_time(&marker).unwrap_or_else(|| latest_write(&stat));
        Ok(Some(Committed {
            marker,
            meta: ObjectMeta {
                name: name.to_string(),
                size: stat.size,
                modified,
            },
        }))
    }

    /// Commits `oid` in one compound write: `tail` goes at `offset` (after
    /// the pieces written already) and the marker is set. With no pieces
    /// written, `tail` is the whole object and replaces any object there,
    /// atomically.
    fn commit(&self, oid: &str, offset: u64, tail: &[u8]) -> Result<(), StoreError> {
        self.check_leases()?;
        let time = time_text(SystemTime::now());
        self.write_op(oid, |op| {
            let op = match (offset, tail.is_empty()) {
                (0, _) => op.write_full(tail),
                (_, true) => op.assert_exists(),
                (_, false) => op.assert_exists().write(offset, tail),
            };
            op.set_xattr(TIME_XATTR, time.as_bytes())
        })
        .map_err(|e| self.ceph_error("commit", oid, e))
    }

    /// Builds a compound write with `build` and runs it on `oid`.
    fn write_op<'a>(
        &self,
        oid: &str,
        build: impl FnOnce(WriteOp<'a>) -> WriteOp<'a>,
    ) -> Result<(), CephError> {
        WriteOp::new().and_then(|op| build(op).operate(&self.io, oid))
    }

    /// The leases this store holds.
    fn lock_leases(&self) -> MutexGuard<'_, HashMap<u64, (String, Instant)>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses a commit while a lease of this store may have been taken
    /// as ended by others (see [`StoreError::LeaseLost`]).
    fn check_leases(&self) -> Result<(), StoreError> {
        let now = Instant::now();
        match self.lock_leases().values().find(|(_, until)| *until <= now) {
            Some((name, _)) => Err(StoreError::LeaseLost(name.clone())),
            None => Ok(()),
        }
    }
}

/// Until when, after a renewal sent at `sent`, a holder may start a commit:
/// the OSD keeps the lock at least `duration` after `sent`, and the commit
/// gets the last third of it to land.
fn commit_deadline(sent: Instant, duration: Duration) -> Instant {
    sent + duration * 2 / 3
}

/// An object being written: staged in memory up to one piece, then streamed
/// in pieces under its final name, and marked committed last (see the
/// module docs).
struct RadosWriter {
    inner: Arc<Inner>,
    oid: String,
    staged: Vec<u8>,
    /// Bytes of the object written already, in whole pieces.
    written: u64,
    committed: bool,
}

impl RadosWriter {
    /// Writes the staged piece: the first creates the object (it must be
    /// new), later ones require it to exist still.
    fn write_piece(&mut self) -> Result<(), StoreError> {
        let (first, offset, staged) = (self.written == 0, self.written, &self.staged);
        self.inner
            .write_op(&self.oid, |op| {
                let op = if first {
                    op.create(true)
                } else {
                    op.assert_exists()
                };
                op.write(offset, staged)
            })
            .map_err(|e| {
                let what = if first && e.is_exists() {
                    "create (objects over one piece are written under their name, which must be new)"
                } else {
                    "write"
                };
                self.inner.ceph_error(what, &self.oid, e)
            })?;
        self.written += self.staged.len() as u64;
        self.staged.clear();
        Ok(())
    }
}

impl Write for RadosWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // A full piece goes out only once more follows, so an object of
        // exactly one piece is still written in one step at commit.
        if self.staged.len() == PIECE_LEN && !buf.is_empty() {
            self.write_piece().map_err(to_io)?;
        }
        let n = buf.len().min(PIECE_LEN - self.staged.len());
        self.staged.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    /// Does nothing: pieces are written when full and at commit.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for RadosWriter {
    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.inner.commit(&self.oid, self.written, &self.staged)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for RadosWriter {
    fn drop(&mut self) {
        if !self.committed && self.written > 0 {
            // Best effort, and only while still uncommitted: a leftover is
            // swept by remove_stale_temporaries.
            let _ = self.inner.write_op(&self.oid, |op| {
                op.cmp_xattr(TIME_XATTR, XattrCmp::Eq, b"").remove()
            });
        }
    }
}

/// Reads a committed object in pieces, each checked to be committed still.
struct RadosReader {
    inner: Arc<Inner>,
    oid: String,
    piece: Vec<u8>,
    /// Bytes of `piece` filled by the last read, and handed out so far.
    filled: usize,
    pos: usize,
    /// Where in the object the next piece starts.
    offset: u64,
}

impl RadosReader {
    fn fill(&mut self) -> Result<(), StoreError> {
        self.filled = self
            .inner
            .read_committed(&self.oid, self.offset, &mut self.piece)?;
        self.offset += self.filled as u64;
        self.pos = 0;
        Ok(())
    }
}

impl Read for RadosReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // A short piece was the last one.
        if self.pos == self.filled && self.filled == self.piece.len() {
            self.fill().map_err(to_io)?;
        }
        let n = buf.len().min(self.filled - self.pos);
        buf[..n].copy_from_slice(&self.piece[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A lease object locked for as long as this value lives, renewed by a
/// thread.
struct RadosLease {
    inner: Arc<Inner>,
    oid: String,
    serial: u64,
    /// Dropping it stops the renewer.
    stop: Option<mpsc::Sender<()>>,
    renewer: Option<JoinHandle<()>>,
}

impl Lease for RadosLease {}

impl Drop for RadosLease {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(renewer) = self.renewer.take() {
            // A renewer that panicked leaves nothing to clean up.
            let _ = renewer.join();
        }
        // Best effort: a lease object left behind loses its lock within the
        // lease duration, and the next live_leases removes it.
        let _ = self.inner.io.remove(&self.oid);
        self.inner.lock_leases().remove(&self.serial);
    }
}

/// What `rados lock info` shows for a lease.
const LEASE_DESCRIPTION: &str = "ember: a running backup";

/// Renews lease `serial` every third of `duration` until `stop` is
/// dropped, moving its commit deadline on; stops for good when the lock is
/// gone (it expired, or was broken), after which the store refuses commits
/// while the lease is held.
fn renew(
    inner: Arc<Inner>,
    oid: String,
    cookie: String,
    serial: u64,
    duration: Duration,
    stop: mpsc::Receiver<()>,
) {
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(duration / 3) {
        let sent = Instant::now();
        let renewed =
            inner
                .io
                .lock_exclusive(&oid, LEASE_LOCK, &cookie, LEASE_DESCRIPTION, duration, true);
        let (deadline, lost) = match renewed {
            Ok(()) => (commit_deadline(sent, duration), false),
            Err(e) if e.is_not_found() => (sent, true),
            // The cluster is busy or unreachable: try again at the next
            // tick; commits stop once the last renewal is too old.
            Err(_) => continue,
        };
        if let Some(lease) = inner.lock_leases().get_mut(&serial) {
            lease.1 = deadline;
        }
        if lost {
            return;
        }
    }
}

impl ObjectStore for RadosStore {
    fn location(&self) -> String {
        self.inner.location.clone()
    }

    /// Writes the whole object in one compound write, so it replaces any
    /// object there atomically, whatever their sizes (up to the OSDs'
    /// `osd_max_write_size`, 90 MiB by default).
    fn put(&self, key: &ObjectKey, data: &[u8]) -> Result<(), StoreError> {
        self.inner.commit(&self.object_name(key)?, 0, data)
    }

    fn create(&self, key: &ObjectKey) -> Result<Box<dyn ObjectWriter>, StoreError> {
        Ok(Box::new(RadosWriter {
            inner: self.inner.clone(),
            oid: self.object_name(key)?,
            staged: Vec::new(),
            written: 0,
            committed: false,
        }))
    }

    fn get(&self, key: &ObjectKey) -> Result<Vec<u8>, StoreError> {
        self.inner.read_range(&self.object_name(key)?, 0, u64::MAX)
    }

    fn get_range(&self, key: &ObjectKey, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        self.inner.read_range(&self.object_name(key)?, offset, len)
    }

    fn open(&self, key: &ObjectKey) -> Result<Box<dyn Read + Send>, StoreError> {
        let mut reader = RadosReader {
            inner: self.inner.clone(),
            oid: self.object_name(key)?,
            piece: vec![0; PIECE_LEN],
            filled: 0,
            pos: 0,
            offset: 0,
        };
        // The first piece now, so a missing object fails here.
        reader.fill()?;
        Ok(Box::new(reader))
    }

    fn stat(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError> {
        let oid = self.object_name(key)?;
        Ok(self.inner.committed(&oid, &key.name)?.map(|c| c.meta))
    }

    fn touch(&self, key: &ObjectKey) -> Result<(), StoreError> {
        let oid = self.object_name(key)?;
        let time = time_text(SystemTime::now());
        self.inner
            .write_op(&oid, |op| {
                op.assert_exists()
                    .cmp_xattr(TIME_XATTR, XattrCmp::Ne, b"")
                    .set_xattr(TIME_XATTR, time.as_bytes())
            })
            .map_err(|e| self.inner.fail("touch", &oid, e))
    }

    fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        let oid = self.object_name(key)?;
        match self.inner.io.remove(&oid) {
            Err(e) if !e.is_not_found() => Err(self.inner.ceph_error("delete", &oid, e)),
            _ => Ok(()),
        }
    }

    fn delete_if_untouched_since(
        &self,
        key: &ObjectKey,
        cutoff: SystemTime,
    ) -> Result<bool, StoreError> {
        let oid = self.object_name(key)?;
        let Some(committed) = self.inner.committed(&oid, &key.name)? else {
            return Ok(false);
        };
        if committed.meta.modified >= cutoff {
            return Ok(false);
        }
        // Removed only if the marker still holds what was read: a touch
        // since then changed it.
        let removed = self.inner.write_op(&oid, |op| {
            op.cmp_xattr(TIME_XATTR, XattrCmp::Eq, &committed.marker)
                .remove()
        });
        match removed {
            Ok(()) => Ok(true),
            // Touched, or removed, since the marker was read.
            Err(e) if e.is_canceled() || e.is_not_found() => Ok(false),
            Err(e) => Err(self.inner.ceph_error("delete", &oid, e)),
        }
    }

    fn list(
        &self,
        kind: ObjectKind,
        visit: &mut dyn FnMut(ObjectMeta) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if kind == ObjectKind::Config {
            if let Some(meta) = self.stat(&ObjectKey::new(kind, CONFIG_NAME))? {
                visit(meta)?;
            }
            return Ok(());
        }
        let inner = &self.inner;
        inner.for_each_object(&mut |oid, found, name| {
            if found != kind {
                return Ok(());
            }
            match inner.committed(oid, name)? {
                Some(committed) => visit(committed.meta),
                // Being written, or removed since it was listed.
                None => Ok(()),
            }
        })
    }

    /// Does nothing: RADOS acknowledges a write once every replica has it
    /// on persistent storage.
    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn acquire_lease(&self, name: &str, info: &[u8]) -> Result<Box<dyn Lease>, StoreError> {
        let inner = &self.inner;
        let oid = self.object_name(&ObjectKey::new(ObjectKind::Lease, name))?;
        let cookie = Uuid::new_v4().simple().to_string();
        let duration = self.lease_duration;
        let sent = Instant::now();
        inner
            .io
            .lock_exclusive(
                &oid,
                LEASE_LOCK,
                &cookie,
                LEASE_DESCRIPTION,
                duration,
                false,
            )
            .map_err(|e| inner.ceph_error("take lease", &oid, e))?;
        let serial = inner.next_lease.fetch_add(1, Ordering::Relaxed);
        inner
            .lock_leases()
            .insert(serial, (name.to_string(), commit_deadline(sent, duration)));
        // From here on, dropping `lease` undoes everything.
        let mut lease = RadosLease {
            inner: inner.clone(),
            oid,
            serial,
            stop: None,
            renewer: None,
        };
        // The info goes in after the lock, so the object is never seen
        // unlocked (stale); between the two steps it reads as empty info.
        inner
            .io
            .write_full(&lease.oid, info)
            .map_err(|e| inner.ceph_error("write lease", &lease.oid, e))?;
        let (stop, stopped) = mpsc::channel();
        let renewer = std::thread::Builder::new()
            .name("ember-lease".into())
            .spawn({
                let (inner, oid) = (inner.clone(), lease.oid.clone());
                move || renew(inner, oid, cookie, serial, duration, stopped)
            })
            .map_err(|e| StoreError::io(format!("start renewing lease {name}"), e))?;
        lease.stop = Some(stop);
        lease.renewer = Some(renewer);
        Ok(Box::new(lease))
    }

    fn live_leases(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let inner = &self.inner;
        let mut live = Vec::new();
        inner.for_each_object(&mut |oid, kind, _| {
            if kind != ObjectKind::Lease {
                return Ok(());
            }
            let lockers = match inner.io.list_lockers(oid, LEASE_LOCK) {
                Ok(lockers) => lockers,
                // Released since it was listed.
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(inner.ceph_error("list the lockers of", oid, e)),
            };
            if lockers.is_empty() {
                // Its holder died, or could not renew for a whole lease
                // duration: stale.
                return match inner.io.remove(oid) {
                    Err(e) if !e.is_not_found() => {
                        Err(inner.ceph_error("remove stale lease", oid, e))
                    }
                    _ => Ok(()),
                };
            }
            match inner.io.read_full(oid) {
                Ok(info) => live.push(info),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(inner.ceph_error("read lease", oid, e)),
            }
            Ok(())
        })?;
        Ok(live)
    }

    fn remove_stale_temporaries(&self, older_than: SystemTime) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let mut removed = 0;
        inner.for_each_object(&mut |oid, kind, _| {
            if kind == ObjectKind::Lease || !matches!(inner.marker(oid)?, Marker::Unset) {
                return Ok(());
            }
            let stat = match inner.io.stat(oid) {
                Ok(stat) => stat,
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(inner.ceph_error("stat", oid, e)),
            };
            if latest_write(&stat) > older_than {
                return Ok(());
            }
            // Removed only while still uncommitted.
            let swept = inner.write_op(oid, |op| {
                op.cmp_xattr(TIME_XATTR, XattrCmp::Eq, b"").remove()
            });
            match swept {
                Ok(()) => removed += 1,
                // Committed, or removed, meanwhile.
                Err(e) if e.is_canceled() || e.is_not_found() => {}
                Err(e) => return Err(inner.ceph_error("remove leftover", oid, e)),
            }
            Ok(())
        })?;
        Ok(removed)
    }
}
