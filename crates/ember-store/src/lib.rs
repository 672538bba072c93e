//! Storage targets for Ember repositories.
//!
//! A repository is a set of named objects of a few kinds (the repository
//! config, packs of chunks, manifests and leases). [`ObjectStore`] is the one seam
//! between the repository and where its objects live; [`PosixStore`] keeps
//! them in a directory (a local disk, or an NFS or GlusterFS share),
//! [`RadosStore`] in a Ceph pool. Other object stores (S3, Swift) will
//! implement the same trait. [`StoreSpec`] names a target in one string
//! (a path, or `rados:POOL/PREFIX`), for command lines and configuration.
#![forbid(unsafe_code)]

mod error;
mod posix;
mod rados;
mod spec;

pub use error::StoreError;
pub use posix::PosixStore;
pub use rados::{RadosStore, DEFAULT_LEASE_DURATION};
pub use spec::{open_store, RadosSpec, StoreSpec};

use std::io::Read;
use std::time::SystemTime;

/// What an object is; each kind has its own namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// The repository's configuration (one object, name `config`).
    Config,
    /// A pack of chunk frames, named by its random id.
    Pack,
    /// A backup manifest, named by the backup id.
    Manifest,
    /// A lease held by a running writer, named by the writer.
    Lease,
}

/// The full name of an object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    /// Its namespace.
    pub kind: ObjectKind,
    /// Its name within the namespace: letters, digits, `-`, `_` and `.` only,
    /// not starting with `.`.
    pub name: String,
}

/// Whether `name` is a valid object name (see [`ObjectKey::name`]); every
/// target refuses others, so no name can reach outside its namespace.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl ObjectKey {
    /// A key of `kind` named `name`.
    pub fn new(kind: ObjectKind, name: impl Into<String>) -> Self {
        ObjectKey {
            kind,
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {}", self.kind, self.name).map(|_| ())
    }
}

/// What listing or `stat` reports of an object.
#[derive(Clone, Debug)]
pub struct ObjectMeta {
    /// The object's name within its kind.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written or touched.
    pub modified: SystemTime,
}

/// An object being written in one pass; invisible until committed.
pub trait ObjectWriter: std::io::Write + Send {
    /// Makes the object durable and then visible under its key, atomically
    /// (readers see no object or the whole object). Dropping the writer
    /// without committing discards what was written.
    fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// Held by a running writer (a backup); dropping it releases it. Other
/// processes see a lease as live exactly while its holder runs, even if the
/// holder is killed without warning.
pub trait Lease: Send {}

/// Where a repository's objects live.
///
/// Contract shared by every backend:
/// - Writes are atomic: a reader sees either nothing or a whole object.
/// - `put` is idempotent and may be retried; it is durable only after the
///   next successful [`ObjectStore::sync`].
/// - `delete` of a missing object succeeds (idempotent).
/// - Listing may miss objects written concurrently; it never returns a
///   partially written one.
pub trait ObjectStore: Send + Sync {
    /// A human-readable location, for messages.
    fn location(&self) -> String;

    /// Stores `data` under `key`, replacing any object there.
    fn put(&self, key: &ObjectKey, data: &[u8]) -> Result<(), StoreError>;

    /// Starts writing an object in one pass (for objects too large to build
    /// in memory, such as packs and manifests); see [`ObjectWriter::commit`].
    /// Give such objects fresh names: a target may be unable to replace a
    /// large object atomically and then refuses to (RADOS, above 4 MiB).
    fn create(&self, key: &ObjectKey) -> Result<Box<dyn ObjectWriter>, StoreError>;

    /// Reads a whole object. A missing object is [`StoreError::NotFound`].
    fn get(&self, key: &ObjectKey) -> Result<Vec<u8>, StoreError>;

    /// Reads up to `len` bytes of an object from `offset`.
    fn get_range(&self, key: &ObjectKey, offset: u64, len: u64) -> Result<Vec<u8>, StoreError>;

    /// Reads bytes of an object from `offset` into `buf` and returns how
    /// many it read (fewer only at the object's end). For callers that
    /// reuse a buffer across many reads (restores): a fresh buffer per read
    /// costs a page fault per page on first touch. Stores that can read in
    /// place override this copying default.
    fn read_range(
        &self,
        key: &ObjectKey,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, StoreError> {
        let bytes = self.get_range(key, offset, buf.len() as u64)?;
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        Ok(n)
    }

    /// Opens an object for reading in one pass.
    fn open(&self, key: &ObjectKey) -> Result<Box<dyn Read + Send>, StoreError>;

    /// Size and time of an object, or `None` if it does not exist.
    fn stat(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError>;

    /// Hints that bytes `offset..offset + len` of an object will be read
    /// soon, so the store can start fetching them (a restore announces the
    /// ranges its workers are about to read). Never fails; does nothing by
    /// default.
    fn prefetch(&self, _key: &ObjectKey, _offset: u64, _len: u64) {}

    /// Sets an existing object's modification time to now (garbage
    /// collection spares recently touched objects).
    fn touch(&self, key: &ObjectKey) -> Result<(), StoreError>;

    /// Removes an object; durable after the next [`ObjectStore::sync`].
    fn delete(&self, key: &ObjectKey) -> Result<(), StoreError>;

    /// Removes an object only if it was not written or touched since
    /// `cutoff`, even when a touch races with the removal: a touch that
    /// returned success before the object vanished keeps it. Returns whether
    /// it was removed. Garbage collection deletes through this.
    fn delete_if_untouched_since(
        &self,
        key: &ObjectKey,
        cutoff: SystemTime,
    ) -> Result<bool, StoreError>;

    /// Calls `visit` for every object of `kind`, in no particular order.
    fn list(
        &self,
        kind: ObjectKind,
        visit: &mut dyn FnMut(ObjectMeta) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// Makes every earlier `put` and `delete` durable.
    fn sync(&self) -> Result<(), StoreError>;

    /// Takes a lease named `name`, recording `info` in it.
    fn acquire_lease(&self, name: &str, info: &[u8]) -> Result<Box<dyn Lease>, StoreError>;

    /// The `info` of every live lease; leases whose holder died are removed.
    fn live_leases(&self) -> Result<Vec<Vec<u8>>, StoreError>;

    /// Removes leftovers of interrupted writes older than `older_than`;
    /// returns how many were removed.
    fn remove_stale_temporaries(&self, older_than: SystemTime) -> Result<u64, StoreError>;
}
