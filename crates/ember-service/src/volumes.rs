//! Where volume data lives: sparse raw files in the volume directory
//! (`volume_driver = "file"`) or RBD images in a Ceph pool
//! (`volume_driver = "rbd"`, [`crate::rbd_volumes`]). A volume's or
//! snapshot's record keeps its location: a path, or `rbd:POOL/IMAGE[@SNAP]`.

use std::path::{Path, PathBuf};

use ember_volume::{RbdSpec, RestoreTarget, Target, VolumeSource as _};

use crate::ServiceError;

/// Bytes in a GiB.
pub const GIB: u64 = 1 << 30;

/// A volume's or snapshot's location, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Location {
    /// A file or block device.
    Path(PathBuf),
    /// An RBD image, or a snapshot of one.
    Rbd(RbdSpec),
}

impl Location {
    /// Parses a location as records keep it.
    pub(crate) fn parse(text: &str) -> Result<Self, ServiceError> {
        match RbdSpec::parse(text).map_err(ServiceError::Volume)? {
            Some(spec) => Ok(Location::Rbd(spec)),
            None => Ok(Location::Path(PathBuf::from(text))),
        }
    }
}

/// What the service does with volume data. Locations are what
/// [`Location::parse`] reads. Methods block (callers run them off the
/// async threads).
pub(crate) trait VolumeBackend: Send + Sync {
    /// Creates an empty (all-zero) volume `id` of `size_gib` GiB; returns
    /// its location.
    fn create(&self, id: &str, size_gib: i64) -> Result<String, ServiceError>;

    /// Creates volume `id` of `size_gib` GiB holding snapshot `snapshot`'s
    /// data (independent of it afterwards); returns its location.
    fn create_from_snapshot(
        &self,
        snapshot: &str,
        id: &str,
        size_gib: i64,
    ) -> Result<String, ServiceError>;

    /// Takes snapshot `id` of the volume at `volume`; returns its location.
    fn snapshot(&self, volume: &str, id: &str) -> Result<String, ServiceError>;

    /// Removes a volume's data (gone already is fine).
    fn remove_volume(&self, volume: &str) -> Result<(), ServiceError>;

    /// Removes a snapshot's data (gone already is fine).
    fn remove_snapshot(&self, snapshot: &str) -> Result<(), ServiceError>;

    /// The location and size in bytes of existing data an operator brings
    /// under management (`os-volume-manage`'s `source-name`).
    fn manage(&self, reference: &str) -> Result<(String, u64), ServiceError>;

    /// Opens volume `volume` to restore `data_size` bytes into.
    fn open_target(
        &self,
        volume: &str,
        data_size: u64,
    ) -> Result<Box<dyn RestoreTarget>, ServiceError>;

    /// Whether the backend works now; why not, if it does not.
    fn check(&self) -> Result<(), String>;
}

/// Volumes as sparse raw files in a directory.
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

    /// Path of the data of snapshot `id`.
    pub fn snapshot_path_for(&self, id: &str) -> PathBuf {
        self.dir.join(format!("snapshot-{id}"))
    }

    /// Copies `from` sparsely to `to` (a snapshot, or a volume from one).
    pub fn copy(&self, from: &Path, to: &Path) -> Result<(), ServiceError> {
        ember_volume::copy_sparse(from, to)
            .map(|_| ())
            .map_err(|e| ServiceError::Volume(e.to_string()))
    }

    /// Removes a file (a missing one is fine).
    pub fn remove(&self, path: &Path) -> Result<(), ServiceError> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(volume_error(path, e)),
            _ => Ok(()),
        }
    }

    /// Grows a file volume to `size_gib` GiB (a copy of a smaller snapshot).
    fn grow(&self, path: &Path, size_gib: i64) -> Result<(), ServiceError> {
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

    fn path_for(&self, id: &str) -> PathBuf {
        self.dir.join(format!("volume-{id}"))
    }
}

impl VolumeBackend for FileVolumes {
    fn create(&self, id: &str, size_gib: i64) -> Result<String, ServiceError> {
        let path = self.path_for(id);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| volume_error(&path, e))?;
        file.set_len(size_gib as u64 * GIB)
            .map_err(|e| volume_error(&path, e))?;
        Ok(path.display().to_string())
    }

    fn create_from_snapshot(
        &self,
        snapshot: &str,
        id: &str,
        size_gib: i64,
    ) -> Result<String, ServiceError> {
        let path = self.path_for(id);
        let made = self
            .copy(Path::new(snapshot), &path)
            .and_then(|()| self.grow(&path, size_gib));
        if let Err(e) = made {
            let _ = self.remove(&path);
            return Err(e);
        }
        Ok(path.display().to_string())
    }

    fn snapshot(&self, volume: &str, id: &str) -> Result<String, ServiceError> {
        let path = self.snapshot_path_for(id);
        if let Err(e) = self.copy(Path::new(volume), &path) {
            let _ = self.remove(&path);
            return Err(e);
        }
        Ok(path.display().to_string())
    }

    fn remove_volume(&self, volume: &str) -> Result<(), ServiceError> {
        self.remove(Path::new(volume))
    }

    fn remove_snapshot(&self, snapshot: &str) -> Result<(), ServiceError> {
        self.remove(Path::new(snapshot))
    }

    fn manage(&self, reference: &str) -> Result<(String, u64), ServiceError> {
        let source =
            ember_volume::Source::open(reference).map_err(|e| ServiceError::bad(e.to_string()))?;
        Ok((reference.to_string(), source.size()))
    }

    fn open_target(
        &self,
        volume: &str,
        data_size: u64,
    ) -> Result<Box<dyn RestoreTarget>, ServiceError> {
        let target = Target::open_existing(volume, data_size)
            .map_err(|e| ServiceError::Volume(e.to_string()))?;
        Ok(Box::new(target))
    }

    fn check(&self) -> Result<(), String> {
        match std::fs::metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(format!("{}: not a directory", self.dir.display())),
            Err(e) => Err(format!("{}: {e}", self.dir.display())),
        }
    }
}

fn volume_error(path: &Path, e: std::io::Error) -> ServiceError {
    ServiceError::Volume(format!("{}: {e}", path.display()))
}
