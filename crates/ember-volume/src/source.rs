//! Backup sources.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{lseek, Whence};

use crate::{kind_of, size_of, VolumeError, VolumeKind, VolumeSource};

/// A volume opened for reading.
#[derive(Debug)]
pub struct Source {
    file: File,
    path: PathBuf,
    size: u64,
    kind: VolumeKind,
}

impl Source {
    /// Opens a raw image file or a block device for reading.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, VolumeError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| VolumeError::io("open", &path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| VolumeError::io("stat", &path, e))?;
        let kind = kind_of(&path, &meta)?;
        let size = size_of(&file, &path)?;
        Ok(Source {
            file,
            path,
            size,
            kind,
        })
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether it is a file or a block device.
    pub fn kind(&self) -> VolumeKind {
        self.kind
    }
}

impl VolumeSource for Source {
    fn size(&self) -> u64 {
        self.size
    }

    fn label(&self) -> String {
        self.path.display().to_string()
    }

    /// Regions of a sparse file are filesystem-block aligned; a block
    /// device is data throughout.
    fn next_data(&self, offset: u64) -> Result<Option<(u64, u64)>, VolumeError> {
        if offset >= self.size {
            return Ok(None);
        }
        if self.kind == VolumeKind::BlockDevice {
            return Ok(Some((offset, self.size)));
        }
        let fd = self.file.as_raw_fd();
        let start = match lseek(fd, offset as i64, Whence::SeekData) {
            Ok(start) => start as u64,
            Err(Errno::ENXIO) => return Ok(None),
            // Filesystems without SEEK_DATA: everything is data.
            Err(Errno::EINVAL) | Err(Errno::EOPNOTSUPP) => return Ok(Some((offset, self.size))),
            Err(e) => return Err(VolumeError::io("seek data in", &self.path, e.into())),
        };
        let end = match lseek(fd, start as i64, Whence::SeekHole) {
            Ok(end) => (end as u64).min(self.size),
            Err(e) => return Err(VolumeError::io("seek hole in", &self.path, e.into())),
        };
        Ok(Some((start, end.max(start))))
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), VolumeError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| VolumeError::io("read", &self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn sparse_file_regions_skip_holes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sparse.img");
        let mut file = File::create(&path).expect("create");
        file.set_len(64 << 20).expect("len");
        file.seek(SeekFrom::Start(32 << 20)).expect("seek");
        file.write_all(&[7u8; 4096]).expect("write");
        drop(file);

        let source = Source::open(&path).expect("open");
        assert_eq!(source.size(), 64 << 20);
        assert_eq!(source.kind(), VolumeKind::File);
        let (start, end) = source.next_data(0).expect("seek").expect("data");
        assert!(start <= 32 << 20 && ((32 << 20) + 4096..64 << 20).contains(&end));
        assert!(start > 0, "the leading hole is skipped");
        assert_eq!(source.next_data(end).expect("seek"), None);
        let mut buf = [0u8; 4];
        source.read_at(&mut buf, 32 << 20).expect("read");
        assert_eq!(buf, [7; 4]);
    }

    #[test]
    fn missing_and_wrong_kinds_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            Source::open(dir.path().join("nope")),
            Err(VolumeError::NotFound(_))
        ));
        assert!(matches!(
            Source::open(dir.path()),
            Err(VolumeError::NotAVolume(_))
        ));
    }
}
