//! Volume devices: what Ember backs up from and restores into.
//!
//! A volume is a raw image file (sparse or not) or a block device. A
//! [`Source`] is read at offsets and tells where its data lies (for sparse
//! files, through `SEEK_DATA`/`SEEK_HOLE`, so holes are never read). A
//! [`Target`] is written at offsets from several threads at once and can
//! zero ranges cheaply (punching holes in files, `FALLOC_FL_ZERO_RANGE` on
//! devices) so restores stay sparse.
#![forbid(unsafe_code)]

mod copy;
mod source;
mod target;

pub use copy::copy_sparse;
pub use source::Source;
pub use target::Target;

use std::path::PathBuf;

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
    #[error("{path}: target holds {target_size} bytes, the backup needs {needed}")]
    TooSmall {
        /// The target.
        path: PathBuf,
        /// Its size.
        target_size: u64,
        /// The size of the backed-up volume.
        needed: u64,
    },
    /// The target file already exists where a new one was asked for.
    #[error("{0}: already exists")]
    AlreadyExists(PathBuf),
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
