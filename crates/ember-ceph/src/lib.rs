//! Ember's Ceph adapter: small safe bindings to librados and librbd.
//!
//! - [`CephConfig`] says how to reach a cluster (conf file, cephx user,
//!   keyring, pool) and [`CephConfig::connect`] opens an [`IoCtx`] on the
//!   pool, failing fast and by name on a wrong user, key, monitor address
//!   or pool.
//! - [`IoCtx`] reads and writes RADOS objects: the building block of a
//!   RADOS repository target. [`WriteOp`] and [`ReadOp`] make a check and
//!   a change (or a read) one atomic step; [`IoCtx::lock_exclusive`] takes
//!   expiring advisory locks (leases that end when their holder dies).
//! - [`rbd`] creates, lists, clones and removes RBD images; [`Image`] reads
//!   and writes one, takes and lists snapshots, and reports the extents
//!   changed between two versions ([`Image::diff_iterate`]) — what
//!   incremental backups of Cinder's RBD volumes read.
//!
//! Every call is synchronous (returns when done) and maps a negative
//! return code to a [`CephError`] naming the call, its target and the
//! errno; [`Image::read_many`] and [`Image::write_many`] keep many of
//! librbd's asynchronous reads or writes in flight within one call. Threads: a
//! [`Rados`] and an [`IoCtx`] are `Send + Sync`; an [`Image`] is `Send`
//! only (one thread at a time).
//!
//! Needs `librados-dev` and `librbd-dev` to link; without them the crate
//! still builds, [`LINKED`] is false and every call fails with ENOSYS (see
//! `build.rs`).
#![warn(missing_docs)]

pub mod dev_cluster;
mod error;
mod ffi;
mod rados;
pub mod rbd;

pub use error::CephError;
pub use rados::{
    rados_version, CephConfig, IoCtx, Locker, ObjectList, ObjectStat, Rados, ReadOp, WriteOp,
    XattrCmp,
};
pub use rbd::{
    CreateOptions, DiffError, DiffExtent, DiffOptions, Features, Image, ImageInfo, ImageSpec,
    SnapInfo, WriteQueue,
};

/// Whether librados and librbd were linked; `false` in a build without them,
/// where every call fails with ENOSYS.
pub const LINKED: bool = !cfg!(ember_ceph_stub);
