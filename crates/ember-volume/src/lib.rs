//! Volume devices: what Ember backs up from and restores into.
//!
//! A volume is a raw image file (sparse or not), a block device or an RBD
//! image. The engine sees them through two traits:
//! - a [`VolumeSource`] is read at offsets, tells where its data lies (for
//!   sparse files through `SEEK_DATA`/`SEEK_HOLE`, for RBD images through
//!   librbd's allocation map), so holes are never read, and may know which
//!   ranges are unchanged since the parent backup's version (an RBD
//!   snapshot diff), so those are not read either;
//! - a [`RestoreTarget`] is written at offsets from several threads at once
//!   and zeroes ranges cheaply (punched holes, `FALLOC_FL_ZERO_RANGE`,
//!   `rbd_write_zeroes`) so restores stay sparse.
//!
//! [`Source`] and [`Target`] are the files and block devices; [`RbdSource`]
//! and [`RbdTarget`] the RBD images.
#![forbid(unsafe_code)]

mod copy;
mod rbd;
mod rbd_names;
mod source;
mod target;

pub use copy::copy_sparse;
pub use rbd::{RbdSource, RbdTarget, UnchangedSince};
pub use rbd_names::{new_snapshot_name, parse_snapshot_name, RbdSpec};
pub use source::Source;
pub use target::Target;

use std::path::PathBuf;

use ember_types::BackupId;

/// A volume read by a backup. Shared by the backup's reader thread and
/// whoever watches it, hence `Sync`.
pub trait VolumeSource: Send + Sync {
    /// The volume's size in bytes.
    fn size(&self) -> u64;

    /// The volume as errors and records name it (a path, `rbd:pool/image@snap`).
    fn label(&self) -> String;

    /// The next region holding data at or after `offset`, as `(start, end)`;
    /// `None` when only a hole (or nothing) remains. Regions may include
    /// zeros; holes read as zeros.
    fn next_data(&self, offset: u64) -> Result<Option<(u64, u64)>, VolumeError>;

    /// Fills `buf` from `offset`. The caller keeps within the volume.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), VolumeError>;

    /// Fills each `(offset, buf)` of `reads`, in any order. The caller
    /// keeps within the volume. By default one [`VolumeSource::read_at`]
    /// after another; a source whose reads wait on the network keeps up to
    /// [`VolumeSource::reads_in_flight`] of them in flight at once.
    fn read_many(&self, reads: &mut [(u64, &mut [u8])]) -> Result<(), VolumeError> {
        for (offset, buf) in reads.iter_mut() {
            self.read_at(buf, *offset)?;
        }
        Ok(())
    }

    /// How many reads [`VolumeSource::read_many`] overlaps: a reader
    /// gathers about this many before calling it. 1 (the default): reads
    /// gain nothing from being gathered (a local file or device).
    fn reads_in_flight(&self) -> usize {
        1
    }

    /// Whether `len` bytes at `offset` are known to be identical to what
    /// they were in the version of the volume that backup
    /// [`VolumeSource::unchanged_since`] read. `false` whenever that is not
    /// known for certain (always, for files and block devices).
    fn unchanged(&self, _offset: u64, _len: u64) -> bool {
        false
    }

    /// The backup whose source version [`VolumeSource::unchanged`] compares
    /// against; `None` when it never reports anything unchanged.
    fn unchanged_since(&self) -> Option<BackupId> {
        None
    }
}

/// A volume a backup is restored into. Written from several threads at
/// once.
pub trait RestoreTarget: Send + Sync {
    /// The target's size in bytes (at least the restored data's).
    fn size(&self) -> u64;

    /// The target as errors name it (a path, `rbd:pool/image`).
    fn label(&self) -> String;

    /// Whether the target is known to read as zeros where nothing is
    /// written (a new sparse file or image), so zero ranges can be skipped.
    fn is_fresh(&self) -> bool;

    /// Writes `data` at `offset`.
    fn write_at(&self, data: &[u8], offset: u64) -> Result<(), VolumeError>;

    /// Makes `len` bytes from `offset` read as zeros (nothing to do on a
    /// fresh target).
    fn zero(&self, offset: u64, len: u64) -> Result<(), VolumeError>;

    /// Zeroes whatever lies beyond the restored data, makes everything
    /// durable and (for a new volume) puts it in place. A target dropped
    /// unfinished is abandoned: a new volume is removed.
    fn finish(self: Box<Self>) -> Result<(), VolumeError>;
}

/// What kind of device a volume is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeKind {
    /// A regular file holding a raw image.
    File,
    /// A block device (a disk, a partition, a loop device).
    BlockDevice,
}

/// Why a volume could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The path does not exist.
    #[error("{0}: no such file or device")]
    NotFound(PathBuf),
    /// The path is neither a regular file nor a block device.
    #[error("{0}: not a regular file or block device")]
    NotAVolume(PathBuf),
    /// The target is smaller than the data to restore.
    #[error("{target}: target holds {target_size} bytes, the backup needs {needed}")]
    TooSmall {
        /// The target, as [`RestoreTarget::label`] names it.
        target: String,
        /// Its size.
        target_size: u64,
        /// The size of the backed-up volume.
        needed: u64,
    },
    /// The target file already exists where a new one was asked for.
    #[error("{0}: already exists")]
    AlreadyExists(PathBuf),
    /// An RBD image is not usable as asked (a source without its snapshot,
    /// a target whose image is missing), with why.
    #[error("{image}: {reason}")]
    Rbd {
        /// The image, `rbd:pool/image[@snap]`.
        image: String,
        /// What is wrong.
        reason: String,
    },
    /// Ceph refused (the error names the call and the image).
    #[error(transparent)]
    Ceph(#[from] ember_ceph::CephError),
    /// The operating system refused.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which volume.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl VolumeError {
    pub(crate) fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            VolumeError::NotFound(path.to_path_buf())
        } else {
            VolumeError::Io {
                what,
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// Determines what `meta` describes, or refuses it.
pub(crate) fn kind_of(
    path: &std::path::Path,
    meta: &std::fs::Metadata,
) -> Result<VolumeKind, VolumeError> {
    use std::os::unix::fs::FileTypeExt;
    let file_type = meta.file_type();
    if file_type.is_file() {
        Ok(VolumeKind::File)
    } else if file_type.is_block_device() {
        Ok(VolumeKind::BlockDevice)
    } else {
        Err(VolumeError::NotAVolume(path.to_path_buf()))
    }
}

/// Size of an open volume: the file length, or the device size.
pub(crate) fn size_of(file: &std::fs::File, path: &std::path::Path) -> Result<u64, VolumeError> {
    use std::io::{Seek, SeekFrom};
    // Seeking to the end works for block devices, whose metadata length is 0.
    let mut handle = file;
    handle
        .seek(SeekFrom::End(0))
        .map_err(|e| VolumeError::io("size of", path, e))
}
