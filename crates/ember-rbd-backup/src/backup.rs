//! Backups: of RBD images (full, or incremental by RBD diff into the
//! volume's base image) and of files or block devices (full).

use std::fmt;

use ember_ceph::{rbd, DiffOptions, Image, SnapInfo};
use ember_types::BackupId;
use ember_volume::{new_snapshot_name, Source, VolumeSource as _};

use crate::catalog::backup_snaps;
use crate::copy::{copy, copy_into_image, Control, Plan, RbdOrigin, TransferStats};
use crate::names::{base_image_name, check_volume_id, full_image_name};
use crate::ranges::{allocated, changed_extents, normalize, subtract};
use crate::{RbdBackupDriver, RbdBackupError, RbdImage};

/// What to back up.
#[derive(Clone, Copy, Debug)]
pub enum BackupSource<'a> {
    /// An RBD image, in this cluster or another (the pool's `IoCtx` says
    /// which): backed up into the volume's base image, incrementally when
    /// asked and possible.
    Rbd(RbdImage<'a>),
    /// A file or block device (LVM, NFS, …): backed up whole into an image
    /// of its own, holes kept as holes.
    File(&'a Source),
}

/// One backup to make.
#[derive(Clone, Copy, Debug)]
pub struct BackupRequest<'a> {
    /// The new backup's id.
    pub backup_id: BackupId,
    /// The backed-up volume's id (names the images).
    pub volume_id: &'a str,
    /// Where its data is.
    pub source: BackupSource<'a>,
    /// Whether an incremental backup was asked for.
    pub incremental: bool,
    /// The volume metadata JSON to keep with the backup (Cinder's
    /// `backup.<backup_id>.meta` object), if any.
    pub metadata: Option<&'a str>,
}

/// Why a backup was full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FullReason {
    /// No incremental was asked for.
    NotRequested,
    /// The source is not an RBD image: there is no diff to take.
    NotRbdSource,
    /// The source image has no backup snapshot left to diff from.
    NoSourceSnapshot,
    /// The volume has no base image in the backup pool.
    NoBaseImage,
    /// None of the source's backup snapshots (the newest named) exists on
    /// a backup image of the volume.
    NoCommonSnapshot {
        /// The source's newest backup snapshot.
        newest_source_snapshot: String,
    },
    /// The volume was resized since the backup it would be based on.
    SizeChanged {
        /// Its size at that backup.
        from: u64,
        /// Its size now.
        to: u64,
    },
}

impl fmt::Display for FullReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FullReason::NotRequested => write!(f, "a full backup was asked for"),
            FullReason::NotRbdSource => {
                write!(f, "the source is not an RBD image: incrementals need one")
            }
            FullReason::NoSourceSnapshot => {
                write!(f, "the source volume has no backup snapshot to diff from")
            }
            FullReason::NoBaseImage => {
                write!(f, "the volume has no backup base image in the backup pool")
            }
            FullReason::NoCommonSnapshot {
                newest_source_snapshot,
            } => write!(
                f,
                "no backup snapshot of the source (newest {newest_source_snapshot}) is on a backup image"
            ),
            FullReason::SizeChanged { from, to } => write!(
                f,
                "the volume was resized from {from} to {to} bytes since its last backup"
            ),
        }
    }
}

/// Which kind of backup was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupKind {
    /// Every allocated byte of the volume was copied.
    Full {
        /// Why it was not incremental.
        reason: FullReason,
    },
    /// Only what changed since a previous backup was copied.
    Incremental {
        /// The backup it is based on (Cinder's `parent_id`).
        parent: BackupId,
        /// That backup's snapshot, diffed from.
        from_snapshot: String,
    },
}

/// What a backup did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupOutcome {
    /// Full or incremental, and why.
    pub kind: BackupKind,
    /// The backup image in the backup pool.
    pub image: String,
    /// The backup's snapshot on that image (and, until the next backup, on
    /// the source); `None` for a full backup of a non-RBD source.
    pub snapshot: Option<String>,
    /// The backed-up volume's size in bytes.
    pub size: u64,
    /// What was read and written.
    pub stats: TransferStats,
    /// Older backup snapshots removed from the source (Cinder keeps only
    /// the newest).
    pub removed_source_snapshots: Vec<String>,
    /// Things noticed that did not fail the backup: a base image whose
    /// head had changed since its snapshot (reset first), an older source
    /// snapshot that could not be removed.
    pub warnings: Vec<String>,
}

impl BackupOutcome {
    /// The backup's `service_metadata` as Cinder records it for RBD
    /// backups, `{"base": "<image>"}`; `None` for a full backup of a
    /// non-RBD source (Cinder records none, the image is named by the
    /// backup).
    pub fn service_metadata(&self) -> Option<String> {
        self.snapshot
            .as_ref()
            .map(|_| format!("{{\"base\": \"{}\"}}", self.image))
    }
}

/// The backup an incremental is based on.
struct Parent {
    /// The backup image holding its snapshot.
    image: String,
    /// The snapshot, on the source and on that image.
    snapshot: String,
    backup_id: BackupId,
}

/// What a failed backup must remove.
#[derive(Default)]
struct Undo {
    /// The backup image, if this backup created it.
    created_image: Option<String>,
    /// The backup snapshot on the backup image, once taken.
    base_snapshot: Option<(String, String)>,
}

impl RbdBackupDriver {
    /// Makes a backup (see the crate's documentation for the layout). On
    /// error or cancellation, what it created is removed again: the new
    /// source snapshot, a new image, the new snapshot on the base image.
    pub fn backup(
        &self,
        request: &BackupRequest<'_>,
        control: &Control<'_>,
    ) -> Result<BackupOutcome, RbdBackupError> {
        check_volume_id(request.volume_id)?;
        if let Some(entry) = self.find(&request.backup_id, request.volume_id)? {
            return Err(RbdBackupError::AlreadyExists {
                backup_id: request.backup_id,
                what: format!(
                    "{}/{}{}",
                    self.pool(),
                    entry.image,
                    entry.snapshot.map(|s| format!("@{s}")).unwrap_or_default()
                ),
            });
        }
        let mut undo = Undo::default();
        let result = match request.source {
            BackupSource::Rbd(source) => self.backup_rbd(request, source, &mut undo, control),
            BackupSource::File(source) => self.backup_file(request, source, &mut undo, control),
        };
        match result {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                self.undo(undo);
                Err(e)
            }
        }
    }

    /// Removes what a failed backup created, as far as possible (the
    /// original error is what the caller needs to see).
    fn undo(&self, undo: Undo) {
        if let Some((image, snapshot)) = &undo.base_snapshot {
            if let Ok(handle) = Image::open(&self.io, image) {
                let _ = handle.snap_remove(snapshot);
            }
        }
        if let Some(image) = &undo.created_image {
            let _ = rbd::remove(&self.io, image);
        }
    }

    /// Backs up an RBD image: snapshot, copy or diff into the base image,
    /// snapshot the base, drop the source's older backup snapshots.
    fn backup_rbd(
        &self,
        request: &BackupRequest<'_>,
        source: RbdImage<'_>,
        undo: &mut Undo,
        control: &Control<'_>,
    ) -> Result<BackupOutcome, RbdBackupError> {
        let handle = Image::open(source.io, source.image)?;
        let older = backup_snaps(&handle)?;
        if let Some((snap, _)) = older.iter().find(|(_, id)| *id == request.backup_id) {
            return Err(RbdBackupError::AlreadyExists {
                backup_id: request.backup_id,
                what: format!("{}/{}@{}", source.io.pool(), source.image, snap.name),
            });
        }
        let snapshot = new_snapshot_name(&request.backup_id);
        handle.snap_create(&snapshot)?;
        let result = self.transfer_rbd(request, source, &snapshot, &older, undo, control);
        let mut outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => {
                let _ = handle.snap_remove(&snapshot);
                return Err(e);
            }
        };
        for (snap, _) in &older {
            match handle.snap_remove(&snap.name) {
                Ok(()) => outcome.removed_source_snapshots.push(snap.name.clone()),
                Err(e) if e.is_not_found() => {}
                Err(e) => outcome.warnings.push(format!(
                    "older backup snapshot {}/{}@{} left on the source: {e}",
                    source.io.pool(),
                    source.image,
                    snap.name
                )),
            }
        }
        Ok(outcome)
    }

    /// Copies the source's new snapshot into its backup image and takes
    /// the backup snapshot there.
    fn transfer_rbd(
        &self,
        request: &BackupRequest<'_>,
        source: RbdImage<'_>,
        snapshot: &str,
        older: &[(SnapInfo, BackupId)],
        undo: &mut Undo,
        control: &Control<'_>,
    ) -> Result<BackupOutcome, RbdBackupError> {
        let at_snapshot = Image::open_read_only(source.io, source.image, Some(snapshot))?;
        let size = at_snapshot.size()?;
        let origin = RbdOrigin {
            io: source.io,
            image: source.image,
            snap: Some(snapshot),
        };
        let mut warnings = Vec::new();
        let (kind, image, sink, plan) = match self.choose_parent(request, older, size)? {
            Ok(parent) => {
                let mut base = Image::open(&self.io, &parent.image)?;
                warnings.extend(self.reset_head(&mut base, &parent, control)?);
                let (data, zero) = changed_extents(&at_snapshot, Some(&parent.snapshot))?;
                let kind = BackupKind::Incremental {
                    parent: parent.backup_id,
                    from_snapshot: parent.snapshot,
                };
                let plan = Plan {
                    data,
                    zero,
                    fresh: false,
                };
                (kind, parent.image, base, plan)
            }
            Err(reason) => {
                let name = base_image_name(request.volume_id);
                let (data, _) = changed_extents(&at_snapshot, None)?;
                let (base, plan) = match Image::open(&self.io, &name) {
                    Ok(base) => {
                        // Earlier backups are kept as its snapshots; its
                        // head becomes this snapshot of the source.
                        base.resize(size)?;
                        let zero = subtract(&allocated(&base)?, &data);
                        let plan = Plan {
                            data,
                            zero,
                            fresh: false,
                        };
                        (base, plan)
                    }
                    Err(e) if e.is_not_found() => {
                        let base = self.create_image(&name, size, undo)?;
                        let plan = Plan {
                            data,
                            zero: Vec::new(),
                            fresh: true,
                        };
                        (base, plan)
                    }
                    Err(e) => return Err(e.into()),
                };
                (BackupKind::Full { reason }, name, base, plan)
            }
        };
        drop(at_snapshot);
        let (stats, sink) = copy_into_image(&origin, sink, &plan, self.config.chunk_size, control)?;
        sink.flush()?;
        sink.snap_create(snapshot)?;
        undo.base_snapshot = Some((image.clone(), snapshot.to_string()));
        sink.close()?;
        self.put_request_metadata(request)?;
        Ok(BackupOutcome {
            kind,
            image,
            snapshot: Some(snapshot.to_string()),
            size,
            stats,
            removed_source_snapshots: Vec::new(),
            warnings,
        })
    }

    /// The backup to diff from, or why there is none: the newest backup
    /// snapshot of the source that is also on a backup image of the volume
    /// (the base image first), if the volume kept its size since.
    fn choose_parent(
        &self,
        request: &BackupRequest<'_>,
        older: &[(SnapInfo, BackupId)],
        size: u64,
    ) -> Result<Result<Parent, FullReason>, RbdBackupError> {
        if !request.incremental {
            return Ok(Err(FullReason::NotRequested));
        }
        let Some((newest, _)) = older.first() else {
            return Ok(Err(FullReason::NoSourceSnapshot));
        };
        let images = self.backup_images(request.volume_id)?;
        let mut snaps_of = Vec::with_capacity(images.len());
        for image in &images {
            match Image::open_read_only(&self.io, image, None) {
                Ok(handle) => snaps_of.push((image, handle.snap_list()?)),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        for (snap, backup_id) in older {
            for (image, snaps) in &snaps_of {
                if let Some(on_base) = snaps.iter().find(|s| s.name == snap.name) {
                    if on_base.size != size {
                        return Ok(Err(FullReason::SizeChanged {
                            from: on_base.size,
                            to: size,
                        }));
                    }
                    return Ok(Ok(Parent {
                        image: image.to_string(),
                        snapshot: snap.name.clone(),
                        backup_id: *backup_id,
                    }));
                }
            }
        }
        if !images.contains(&base_image_name(request.volume_id)) {
            return Ok(Err(FullReason::NoBaseImage));
        }
        Ok(Err(FullReason::NoCommonSnapshot {
            newest_source_snapshot: newest.name.clone(),
        }))
    }

    /// Makes the head of the backup image equal to the parent's snapshot
    /// again, where it is not (a backup that failed or was interrupted
    /// there, or a newer snapshot than the parent's); the diff is applied
    /// to that head. Returns a warning if anything had to be reset.
    fn reset_head(
        &self,
        base: &mut Image,
        parent: &Parent,
        control: &Control<'_>,
    ) -> Result<Option<String>, RbdBackupError> {
        let snap_size = base
            .snap_list()?
            .into_iter()
            .find(|s| s.name == parent.snapshot)
            .map(|s| s.size);
        let head_size = base.size()?;
        if let Some(snap_size) = snap_size.filter(|&s| s != head_size) {
            base.resize(snap_size)?;
        }
        // By whole objects: with fast-diff a clean head costs one object
        // map read, and rewriting an object's unchanged bytes is harmless.
        let whole = DiffOptions {
            include_parent: false,
            whole_object: true,
        };
        let changed = normalize(
            base.diff(Some(&parent.snapshot), whole)?
                .into_iter()
                .map(|e| e.offset..e.offset + e.len)
                .collect(),
        );
        if changed.is_empty() && snap_size.is_none_or(|s| s == head_size) {
            return Ok(None);
        }
        let origin = RbdOrigin {
            io: &self.io,
            image: &parent.image,
            snap: Some(&parent.snapshot),
        };
        let plan = Plan {
            data: changed,
            zero: Vec::new(),
            fresh: false,
        };
        let stats = copy(
            &origin,
            base,
            &plan,
            self.config.chunk_size,
            &control.cancel_only(),
        )?;
        Ok(Some(format!(
            "{}/{} differed from its snapshot {} ({} bytes, size {head_size}): reset before applying the diff",
            self.pool(),
            parent.image,
            parent.snapshot,
            stats.bytes_read
        )))
    }

    /// Backs up a file or block device whole into
    /// `volume-<volume_id>.backup.<backup_id>`.
    fn backup_file(
        &self,
        request: &BackupRequest<'_>,
        source: &Source,
        undo: &mut Undo,
        control: &Control<'_>,
    ) -> Result<BackupOutcome, RbdBackupError> {
        let name = full_image_name(request.volume_id, &request.backup_id);
        let image = self.create_image(&name, source.size(), undo)?;
        let mut data = Vec::new();
        let mut offset = 0;
        while let Some((start, end)) = source.next_data(offset)? {
            data.push(start..end);
            offset = end;
        }
        let plan = Plan {
            data: normalize(data),
            zero: Vec::new(),
            fresh: true,
        };
        let (stats, image) =
            copy_into_image(source, image, &plan, self.config.chunk_size, control)?;
        image.flush()?;
        image.close()?;
        self.put_request_metadata(request)?;
        let reason = if request.incremental {
            FullReason::NotRbdSource
        } else {
            FullReason::NotRequested
        };
        Ok(BackupOutcome {
            kind: BackupKind::Full { reason },
            image: name,
            snapshot: None,
            size: source.size(),
            stats,
            removed_source_snapshots: Vec::new(),
            warnings: Vec::new(),
        })
    }

    /// Creates a backup image with the configured features and striping,
    /// noting it for removal should the backup fail.
    fn create_image(
        &self,
        name: &str,
        size: u64,
        undo: &mut Undo,
    ) -> Result<Image, RbdBackupError> {
        rbd::create(&self.io, name, size, &self.config.create_options())?;
        undo.created_image = Some(name.to_string());
        Ok(Image::open(&self.io, name)?)
    }

    /// Writes the request's metadata object, if it has one.
    fn put_request_metadata(&self, request: &BackupRequest<'_>) -> Result<(), RbdBackupError> {
        match request.metadata {
            Some(json) => self.put_metadata(&request.backup_id, json),
            None => Ok(()),
        }
    }
}
