//! Sparse copies of volumes (snapshots of file volumes).

use std::path::Path;

use crate::{RestoreTarget, Source, Target, VolumeError, VolumeSource};

/// Bytes copied per read.
const COPY_LEN: u64 = 4 << 20;

/// Copies the volume at `from` into a new file at `to`, reading only its
/// data regions and leaving holes where the source has them. The copy
/// appears at `to` only when complete and durable.
pub fn copy_sparse(from: &Path, to: &Path) -> Result<u64, VolumeError> {
    let source = Source::open(from)?;
    let target = Box::new(Target::create(to, source.size())?);
    let mut buf = vec![0u8; COPY_LEN as usize];
    let mut offset = 0;
    while let Some((start, end)) = source.next_data(offset)? {
        let mut at = start;
        while at < end {
            let len = (end - at).min(COPY_LEN) as usize;
            source.read_at(&mut buf[..len], at)?;
            if buf[..len].iter().any(|&b| b != 0) {
                target.write_at(&buf[..len], at)?;
            }
            at += len as u64;
        }
        offset = end;
    }
    target.finish()?;
    Ok(source.size())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileExt, MetadataExt};

    #[test]
    fn copy_keeps_data_and_holes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let from = dir.path().join("a.img");
        let file = std::fs::File::create(&from).expect("create");
        file.set_len(32 << 20).expect("len");
        file.write_all_at(b"hello", 20 << 20).expect("write");
        drop(file);
        let to = dir.path().join("b.img");
        assert_eq!(copy_sparse(&from, &to).expect("copy"), 32 << 20);
        assert_eq!(
            std::fs::read(&to).expect("read"),
            std::fs::read(&from).expect("read")
        );
        assert!(std::fs::metadata(&to).expect("meta").blocks() * 512 < 1 << 20);
    }
}
