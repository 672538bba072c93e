//! RBD images as backup sources (always a snapshot) and restore targets.
//!
//! An [`Image`] handle is `Send` but not `Sync`, so each side keeps one
//! handle under a mutex: the backup engine reads from a single reader
//! thread (with many asynchronous reads in flight), and the restore engine
//! already takes turns writing (through a [`WriteQueue`], so a write
//! returns before the cluster has it).

use std::panic::resume_unwind;
use std::sync::Mutex;

use ember_ceph::{rbd, CreateOptions, DiffExtent, DiffOptions, Image, IoCtx, Rados, WriteQueue};
use ember_types::BackupId;

use crate::{RestoreTarget, VolumeError, VolumeSource};

/// Reads an [`RbdSource`] keeps in flight: each waits on a round trip to
/// an OSD, so one at a time leaves the cluster and the workers idle.
const READS_IN_FLIGHT: usize = 32;

/// Writes an [`RbdTarget`] keeps in flight, each holding a copy of up to a
/// restore batch (1 MiB by default), and their most bytes.
const WRITES_IN_FLIGHT: usize = 16;
const WRITE_BYTES_IN_FLIGHT: usize = 16 << 20;

/// What an [`RbdSource`] compares against to report unchanged ranges: the
/// snapshot of the same image that an earlier backup read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnchangedSince {
    /// The older snapshot (the one the parent backup read).
    pub snapshot: String,
    /// The backup that read it.
    pub backup: BackupId,
}

/// Sorted, disjoint, non-adjacent byte ranges `(start, end)`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Extents(Vec<(u64, u64)>);

impl Extents {
    /// The union of `extents`, in any order.
    fn union(extents: impl IntoIterator<Item = DiffExtent>) -> Self {
        let mut ranges: Vec<(u64, u64)> = extents
            .into_iter()
            .filter(|e| e.len > 0)
            .map(|e| (e.offset, e.offset.saturating_add(e.len)))
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        Extents(merged)
    }

    /// The first range that ends after `offset`.
    fn next_after(&self, offset: u64) -> Option<(u64, u64)> {
        let at = self.0.partition_point(|&(_, end)| end <= offset);
        self.0.get(at).copied()
    }

    /// Whether any range meets `start..end`.
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.next_after(start).is_some_and(|(s, _)| s < end)
    }

    /// Total bytes covered.
    fn bytes(&self) -> u64 {
        self.0.iter().map(|(start, end)| end - start).sum()
    }
}

/// What changed since the parent backup's snapshot.
#[derive(Debug)]
struct Changes {
    since: BackupId,
    /// The image's size at that snapshot: nothing beyond it is unchanged.
    base_size: u64,
    /// Every extent the diff reported, with data or now zeros.
    changed: Extents,
}

impl Changes {
    /// What changed between `base`'s snapshot and `snapshot` of `image`
    /// (`label`, as errors name it), on a handle of its own.
    fn list(
        io: &IoCtx,
        image: &str,
        snapshot: &str,
        base: UnchangedSince,
        label: &str,
    ) -> Result<Changes, VolumeError> {
        let handle = Image::open_read_only(io, image, Some(snapshot))?;
        let base_size = handle
            .snap_list()?
            .into_iter()
            .find(|s| s.name == base.snapshot)
            .map(|s| s.size)
            .ok_or_else(|| VolumeError::Rbd {
                image: label.to_string(),
                reason: format!("no snapshot {} to diff from", base.snapshot),
            })?;
        let changed = Extents::union(handle.diff(Some(&base.snapshot), DiffOptions::default())?);
        Ok(Changes {
            since: base.backup,
            base_size,
            changed,
        })
    }
}

/// A snapshot of an RBD image, read by a backup.
///
/// Its data regions are the extents librbd reports as allocated in the
/// snapshot (parent image included, for a clone). Opened with an
/// [`UnchangedSince`], every range outside the extents changed between
/// that older snapshot and this one, and within the older snapshot's size,
/// is [`VolumeSource::unchanged`].
#[derive(Debug)]
pub struct RbdSource {
    image: Mutex<Image>,
    label: String,
    size: u64,
    allocated: Extents,
    changes: Option<Changes>,
}

impl RbdSource {
    /// Opens snapshot `snapshot` of image `image` read-only. With
    /// `unchanged_since`, also diffs from that older snapshot of the same
    /// image; it must exist (the caller checks, to fall back to a full
    /// read when it is gone).
    ///
    /// Both diffs are exact (not `whole_object`): they list the snapshots
    /// of each object instead of trusting the object map, so a stale or
    /// invalid object map cannot hide a change.
    pub fn open(
        io: &IoCtx,
        image: &str,
        snapshot: &str,
        unchanged_since: Option<UnchangedSince>,
    ) -> Result<Self, VolumeError> {
        let handle = Image::open_read_only(io, image, Some(snapshot))?;
        let label = format!("rbd:{}", handle.target());
        let size = handle.size()?;
        // Both diffs wait on the cluster, not the CPU: the changes are
        // listed on a handle of their own while this one lists what is
        // allocated.
        let (allocated, changes) = std::thread::scope(|scope| {
            let changes = unchanged_since.map(|base| {
                let label = &label;
                scope.spawn(move || Changes::list(io, image, snapshot, base, label))
            });
            let allocated = handle.diff(
                None,
                DiffOptions {
                    include_parent: true,
                    whole_object: false,
                },
            );
            let changes = changes
                .map(|thread| thread.join().unwrap_or_else(|panic| resume_unwind(panic)))
                .transpose();
            (allocated, changes)
        });
        let allocated = Extents::union(allocated?.into_iter().filter(|e| e.exists));
        let changes = changes?;
        Ok(RbdSource {
            image: Mutex::new(handle),
            label,
            size,
            allocated,
            changes,
        })
    }

    /// Bytes in the snapshot's allocated extents (what a full backup reads
    /// at most).
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.bytes()
    }

    /// Bytes that changed since the [`UnchangedSince`] snapshot (what an
    /// incremental backup reads at most); `None` without one.
    pub fn changed_bytes(&self) -> Option<u64> {
        self.changes.as_ref().map(|c| c.changed.bytes())
    }
}

impl VolumeSource for RbdSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn label(&self) -> String {
        self.label.clone()
    }

    fn next_data(&self, offset: u64) -> Result<Option<(u64, u64)>, VolumeError> {
        Ok(self
            .allocated
            .next_after(offset)
            .map(|(start, end)| (start.max(offset), end.min(self.size)))
            .filter(|(start, end)| start < end))
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), VolumeError> {
        self.read_many(&mut [(offset, buf)])
    }

    /// librbd's asynchronous reads, up to [`READS_IN_FLIGHT`] at once.
    fn read_many(&self, reads: &mut [(u64, &mut [u8])]) -> Result<(), VolumeError> {
        let image = self.image.lock().unwrap_or_else(|p| p.into_inner());
        Ok(image.read_many(reads, READS_IN_FLIGHT)?)
    }

    fn reads_in_flight(&self) -> usize {
        READS_IN_FLIGHT
    }

    /// True only for a non-empty range that lies within the image at both
    /// snapshots and meets no extent of the diff between them.
    fn unchanged(&self, offset: u64, len: u64) -> bool {
        let Some(changes) = &self.changes else {
            return false;
        };
        let Some(end) = offset.checked_add(len) else {
            return false;
        };
        len > 0
            && end <= self.size
            && end <= changes.base_size
            && !changes.changed.overlaps(offset, end)
    }

    fn unchanged_since(&self) -> Option<BackupId> {
        self.changes.as_ref().map(|c| c.since)
    }
}

/// Removes a newly created image when dropped while armed: declared after
/// the image handle in [`RbdTarget`], so the handle is closed first.
#[derive(Debug)]
struct RemoveOnDrop {
    cluster: Rados,
    pool: String,
    name: String,
    armed: bool,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Best effort: whoever abandoned the restore reported why.
        if let Ok(io) = self.cluster.ioctx(&self.pool) {
            let _ = rbd::remove(&io, &self.name);
        }
    }
}

/// An RBD image a backup is restored into: a new one, or an existing one at
/// least as large as the backup (Cinder's rule), whose size is kept and
/// whose bytes beyond the backup are zeroed (`restore_discard_excess_bytes`).
#[derive(Debug)]
pub struct RbdTarget {
    image: Mutex<WriteQueue>,
    label: String,
    size: u64,
    data_size: u64,
    fresh: bool,
    /// Set for a new image until it is finished.
    remove_unfinished: Option<RemoveOnDrop>,
}

impl RbdTarget {
    /// Creates image `name` of `data_size` bytes (the cluster's default
    /// features and layout); it must not exist. Unwritten ranges read as
    /// zeros, so holes need no writing. Dropped unfinished, it is removed.
    pub fn create(io: &IoCtx, name: &str, data_size: u64) -> Result<Self, VolumeError> {
        rbd::create(io, name, data_size, &CreateOptions::default())?;
        let remove = RemoveOnDrop {
            cluster: io.cluster().clone(),
            pool: io.pool().to_string(),
            name: name.to_string(),
            armed: true,
        };
        let image = Image::open(io, name)?;
        Ok(RbdTarget {
            label: format!("rbd:{}", image.target()),
            image: Mutex::new(WriteQueue::new(
                image,
                WRITES_IN_FLIGHT,
                WRITE_BYTES_IN_FLIGHT,
            )?),
            size: data_size,
            data_size,
            fresh: true,
            remove_unfinished: Some(remove),
        })
    }

    /// Opens the existing image `name` to restore `data_size` bytes into; it
    /// must be at least that large.
    pub fn open_existing(io: &IoCtx, name: &str, data_size: u64) -> Result<Self, VolumeError> {
        let image = Image::open(io, name)?;
        let label = format!("rbd:{}", image.target());
        let size = image.size()?;
        if size < data_size {
            return Err(VolumeError::TooSmall {
                target: label,
                target_size: size,
                needed: data_size,
            });
        }
        Ok(RbdTarget {
            image: Mutex::new(WriteQueue::new(
                image,
                WRITES_IN_FLIGHT,
                WRITE_BYTES_IN_FLIGHT,
            )?),
            label,
            size,
            data_size,
            fresh: false,
            remove_unfinished: None,
        })
    }

    fn image(&self) -> std::sync::MutexGuard<'_, WriteQueue> {
        self.image.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RestoreTarget for RbdTarget {
    fn size(&self) -> u64 {
        self.size
    }

    fn label(&self) -> String {
        self.label.clone()
    }

    fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Returns once the write is started (a failure is reported by a
    /// later write or by [`RestoreTarget::finish`]).
    fn write_at(&self, data: &[u8], offset: u64) -> Result<(), VolumeError> {
        Ok(self.image().write(offset, data)?)
    }

    /// `rbd_write_zeroes`: exact, and whole objects are deallocated.
    fn zero(&self, offset: u64, len: u64) -> Result<(), VolumeError> {
        if self.fresh || len == 0 {
            return Ok(());
        }
        Ok(self.image().image().write_zeroes(offset, len)?)
    }

    /// Waits for the writes in flight, zeroes the tail, flushes and
    /// closes the image; a new image is kept from then on.
    fn finish(mut self: Box<Self>) -> Result<(), VolumeError> {
        self.image().drain()?;
        self.zero(self.data_size, self.size - self.data_size)?;
        self.image().image().flush()?;
        if let Some(remove) = &mut self.remove_unfinished {
            remove.armed = false;
        }
        let this = *self;
        this.image
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .into_image()?
            .close()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extent(offset: u64, len: u64) -> DiffExtent {
        DiffExtent {
            offset,
            len,
            exists: true,
        }
    }

    #[test]
    fn extents_merge_and_answer_lookups() {
        let extents = Extents::union([
            extent(100, 10),
            extent(0, 10),
            extent(10, 5),
            extent(105, 20),
            extent(50, 0),
        ]);
        assert_eq!(extents, Extents(vec![(0, 15), (100, 125)]));
        assert_eq!(extents.bytes(), 40);
        assert_eq!(extents.next_after(0), Some((0, 15)));
        assert_eq!(extents.next_after(14), Some((0, 15)));
        assert_eq!(extents.next_after(15), Some((100, 125)));
        assert_eq!(extents.next_after(125), None);
        assert!(extents.overlaps(14, 16));
        assert!(!extents.overlaps(15, 100));
        assert!(extents.overlaps(15, 101));
        assert!(!extents.overlaps(125, 1000));
    }
}
