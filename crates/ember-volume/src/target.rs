//! Restore targets.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{fallocate, FallocateFlags, OFlag};

use ember_types::DIRECT_IO_ALIGN;

use crate::{kind_of, size_of, RestoreTarget, VolumeError, VolumeKind};

/// Largest buffer of zeros written when a range cannot be zeroed in place.
const ZERO_WRITE_LEN: usize = 1 << 20;

/// A volume opened for restoring `data_size` bytes into.
///
/// Writes may come from several threads at once (`&self`). A target created
/// new is written under a temporary name beside its path and renamed into
/// place by [`Target::finish`]; dropped unfinished, it is removed, so a
/// failed restore never leaves a half-written image behind.
///
/// Aligned writes go through a second descriptor opened with `O_DIRECT`
/// where the file system allows it: a restore writes each byte once and
/// never reads it back, and copying it through the page cache cost half of
/// a restore's CPU time on the benchmark machine (docs/format.md §11).
#[derive(Debug)]
pub struct Target {
    file: File,
    /// The same file opened for direct I/O, while that works.
    direct: Option<File>,
    direct_works: AtomicBool,
    path: PathBuf,
    /// For a new file: where it goes once finished (`path` is temporary).
    final_path: Option<PathBuf>,
    kind: VolumeKind,
    size: u64,
    data_size: u64,
}

impl Target {
    /// Creates a new sparse file of `data_size` bytes at `path`, which must
    /// not exist yet. Its unwritten ranges are holes, so zeros need no
    /// writing.
    pub fn create(path: impl AsRef<Path>, data_size: u64) -> Result<Self, VolumeError> {
        let final_path = path.as_ref().to_path_buf();
        if final_path.symlink_metadata().is_ok() {
            return Err(VolumeError::AlreadyExists(final_path));
        }
        let name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = final_path.parent().unwrap_or(Path::new("."));
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let temp = dir.join(format!(
            ".{name}.ember-partial-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| VolumeError::io("create", &temp, e))?;
        let target = Target {
            direct: open_direct(&temp),
            direct_works: AtomicBool::new(true),
            file,
            path: temp,
            final_path: Some(final_path),
            kind: VolumeKind::File,
            size: data_size,
            data_size,
        };
        target
            .file
            .set_len(data_size)
            .map_err(|e| VolumeError::io("size", &target.path, e))?;
        Ok(target)
    }

    /// Opens an existing file or block device to restore `data_size` bytes
    /// into. It must be at least that large; anything beyond is zeroed at
    /// [`Target::finish`] (Cinder's `restore_discard_excess_bytes`).
    pub fn open_existing(path: impl AsRef<Path>, data_size: u64) -> Result<Self, VolumeError> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| VolumeError::io("open", &path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| VolumeError::io("stat", &path, e))?;
        let kind = kind_of(&path, &meta)?;
        let size = size_of(&file, &path)?;
        if size < data_size {
            return Err(VolumeError::TooSmall {
                target: path.display().to_string(),
                target_size: size,
                needed: data_size,
            });
        }
        Ok(Target {
            direct: open_direct(&path),
            direct_works: AtomicBool::new(true),
            file,
            path,
            final_path: None,
            kind,
            size,
            data_size,
        })
    }

    /// Where the target is (for a new file, where it will appear).
    pub fn path(&self) -> &Path {
        self.final_path.as_deref().unwrap_or(&self.path)
    }

    fn write_zeros(&self, mut offset: u64, len: u64) -> Result<(), VolumeError> {
        let zeros = vec![0u8; ZERO_WRITE_LEN.min(len as usize)];
        let end = offset + len;
        while offset < end {
            let step = (end - offset).min(zeros.len() as u64) as usize;
            self.write_at(&zeros[..step], offset)?;
            offset += step as u64;
        }
        Ok(())
    }
}

impl RestoreTarget for Target {
    fn size(&self) -> u64 {
        self.size
    }

    fn label(&self) -> String {
        self.path().display().to_string()
    }

    /// A new sparse file is fresh.
    fn is_fresh(&self) -> bool {
        self.final_path.is_some()
    }

    /// Aligned writes go through the direct descriptor while it works.
    fn write_at(&self, data: &[u8], offset: u64) -> Result<(), VolumeError> {
        let aligned = |n: usize| n.is_multiple_of(DIRECT_IO_ALIGN);
        if let Some(direct) = &self.direct {
            if aligned(data.as_ptr() as usize)
                && aligned(data.len())
                && offset.is_multiple_of(DIRECT_IO_ALIGN as u64)
                && self.direct_works.load(Ordering::Relaxed)
            {
                match direct.write_all_at(data, offset) {
                    Ok(()) => return Ok(()),
                    // The file system refuses direct I/O after all: write
                    // through the page cache from now on.
                    Err(e) if e.raw_os_error() == Some(Errno::EINVAL as i32) => {
                        self.direct_works.store(false, Ordering::Relaxed);
                    }
                    Err(e) => return Err(VolumeError::io("write", &self.path, e)),
                }
            }
        }
        self.file
            .write_all_at(data, offset)
            .map_err(|e| VolumeError::io("write", &self.path, e))
    }

    /// A hole punched in a file; a zeroed range on a device; written zeros
    /// where neither is supported.
    fn zero(&self, offset: u64, len: u64) -> Result<(), VolumeError> {
        if self.is_fresh() || len == 0 {
            return Ok(());
        }
        let flags = match self.kind {
            VolumeKind::File => {
                FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE
            }
            VolumeKind::BlockDevice => {
                FallocateFlags::FALLOC_FL_ZERO_RANGE | FallocateFlags::FALLOC_FL_KEEP_SIZE
            }
        };
        match fallocate(self.file.as_raw_fd(), flags, offset as i64, len as i64) {
            Ok(()) => Ok(()),
            Err(Errno::EOPNOTSUPP) | Err(Errno::EINVAL) | Err(Errno::ENOSYS) => {
                self.write_zeros(offset, len)
            }
            Err(e) => Err(VolumeError::io("zero", &self.path, e.into())),
        }
    }

    /// Zeroes the tail, fsyncs, and moves a new file into place.
    fn finish(mut self: Box<Self>) -> Result<(), VolumeError> {
        self.zero(self.data_size, self.size - self.data_size)?;
        self.file
            .sync_all()
            .map_err(|e| VolumeError::io("fsync", &self.path, e))?;
        if let Some(final_path) = self.final_path.take() {
            fs::rename(&self.path, &final_path)
                .map_err(|e| VolumeError::io("rename into place", &final_path, e))?;
        }
        Ok(())
    }
}

/// Opens `path` for direct writes; `None` where the file system does not
/// support them (tmpfs, some FUSE file systems), and writes then go through
/// the page cache.
fn open_direct(path: &Path) -> Option<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(OFlag::O_DIRECT.bits())
        .open(path)
        .ok()
}

impl Drop for Target {
    fn drop(&mut self) {
        if self.final_path.is_some() {
            // An unfinished new file: best effort removal, the error (if
            // any) was already reported by whoever abandoned the restore.
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn new_target_appears_only_when_finished() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.img");
        let target = Target::create(&path, 1 << 20).expect("create");
        target.write_at(b"abc", 4096).expect("write");
        assert!(!path.exists());
        drop(target);
        assert_eq!(
            fs::read_dir(dir.path()).expect("dir").count(),
            0,
            "abandoned file removed"
        );

        let target = Target::create(&path, 1 << 20).expect("create");
        assert!(target.is_fresh());
        target.write_at(b"abc", 4096).expect("write");
        Box::new(target).finish().expect("finish");
        let meta = fs::metadata(&path).expect("meta");
        assert_eq!(meta.len(), 1 << 20);
        assert!(meta.blocks() * 512 < 1 << 20, "restored file stays sparse");
        assert!(matches!(
            Target::create(&path, 1),
            Err(VolumeError::AlreadyExists(_))
        ));
    }

    #[test]
    fn existing_target_is_zeroed_beyond_the_data_and_must_be_large_enough() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vol.img");
        fs::write(&path, vec![0xffu8; 3 * 4096]).expect("write");
        assert!(matches!(
            Target::open_existing(&path, 4 * 4096),
            Err(VolumeError::TooSmall { .. })
        ));
        let target = Target::open_existing(&path, 4096).expect("open");
        assert!(!target.is_fresh());
        target.write_at(&[1u8; 4096], 0).expect("write");
        Box::new(target).finish().expect("finish");
        let data = fs::read(&path).expect("read");
        assert_eq!(data.len(), 3 * 4096);
        assert!(data[..4096].iter().all(|&b| b == 1));
        assert!(data[4096..].iter().all(|&b| b == 0), "tail zeroed");
    }
}
