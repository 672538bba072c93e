//! File volumes: sparse raw images in the volume directory.

use std::path::{Path, PathBuf};

use crate::ServiceError;

/// Bytes in a GiB.
pub const GIB: u64 = 1 << 30;

/// Where the service keeps the volumes it creates.
#[derive(Clone, Debug)]
pub struct FileVolumes {
    dir: PathBuf,
}

impl FileVolumes {
    /// Volumes in `dir`, created if needed.
    pub fn open(dir: PathBuf) -> Result<Self, ServiceError> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| ServiceError::Volume(format!("{}: {e}", dir.display())))?;
        Ok(FileVolumes { dir })
    }

    /// Path of the data of volume `id`.
    pub fn path_for(&self, id: &str) -> PathBuf {
        self.dir.join(format!("volume-{id}"))
    }

    /// Path of the data of snapshot `id`.
    pub fn snapshot_path_for(&self, id: &str) -> PathBuf {
        self.dir.join(format!("snapshot-{id}"))
    }

    /// Creates an empty (all-zero, sparse) volume of `size_gib` GiB.
    pub fn create(&self, id: &str, size_gib: i64) -> Result<PathBuf, ServiceError> {
        let path = self.path_for(id);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| volume_error(&path, e))?;
        file.set_len(size_gib as u64 * GIB)
            .map_err(|e| volume_error(&path, e))?;
        Ok(path)
    }

    /// Copies `from` sparsely to `to` (a snapshot, or a volume from one).
    pub fn copy(&self, from: &Path, to: &Path) -> Result<(), ServiceError> {
        ember_volume::copy_sparse(from, to)
            .map(|_| ())
            .map_err(|e| ServiceError::Volume(e.to_string()))
    }

    /// Grows a file volume to `size_gib` GiB (a copy of a smaller snapshot).
    pub fn grow(&self, path: &Path, size_gib: i64) -> Result<(), ServiceError> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| volume_error(path, e))?;
        let len = file.metadata().map_err(|e| volume_error(path, e))?.len();
        if len < size_gib as u64 * GIB {
            file.set_len(size_gib as u64 * GIB)
                .map_err(|e| volume_error(path, e))?;
        }
        Ok(())
    }

    /// Removes a volume's or snapshot's data; a missing file is fine.
    pub fn remove(&self, path: &Path) -> Result<(), ServiceError> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(volume_error(path, e)),
            _ => Ok(()),
        }
    }
}

fn volume_error(path: &Path, e: std::io::Error) -> ServiceError {
    ServiceError::Volume(format!("{}: {e}", path.display()))
}
