//! The repository: chunks, manifests and leases on one storage target.

use std::io::Read;
use std::sync::Arc;

use chrono::Utc;
use ember_format::manifest::{footer_len, parse_footer, verify_checksum, EntryReader, TRAILER_LEN};
use ember_format::pack::{index_len, parse_index, PACK_TRAILER_LEN};
use ember_format::{
    ChunkRef, ManifestError, ManifestWriter, PackEntry, PackError, PackId, FORMAT_VERSION,
};
use ember_store::{ObjectKey, ObjectKind, ObjectStore, ObjectWriter, StoreError};
use ember_types::{BackupId, BackupInfo};
use uuid::Uuid;

use crate::{PackWriter, RepoConfig, RepoError, WriterInfo, WriterLease};

const CONFIG_NAME: &str = "config";

fn pack_key(id: &PackId) -> ObjectKey {
    ObjectKey::new(ObjectKind::Pack, id.to_string())
}

fn manifest_key(id: &BackupId) -> ObjectKey {
    ObjectKey::new(ObjectKind::Manifest, id.to_string())
}

/// An opened repository.
#[derive(Clone)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    config: RepoConfig,
}

impl Repository {
    /// Creates a repository with the given default chunk size on an empty
    /// target.
    pub fn init(store: Arc<dyn ObjectStore>, chunk_size: u32) -> Result<Self, RepoError> {
        let key = ObjectKey::new(ObjectKind::Config, CONFIG_NAME);
        if store.stat(&key)?.is_some() {
            return Err(RepoError::AlreadyInitialized(store.location()));
        }
        let config = RepoConfig {
            format_version: FORMAT_VERSION,
            repository_id: Uuid::new_v4(),
            chunk_size,
            created_at: Utc::now(),
        };
        let json =
            serde_json::to_vec_pretty(&config).map_err(|e| RepoError::BadConfig(e.to_string()))?;
        let mut writer = store.create(&key)?;
        writer
            .write_all(&json)
            .map_err(|e| StoreError::io(format!("write {key}"), e))?;
        writer.commit()?;
        Ok(Repository { store, config })
    }

    /// Opens the repository on `store`.
    pub fn open(store: Arc<dyn ObjectStore>) -> Result<Self, RepoError> {
        let key = ObjectKey::new(ObjectKind::Config, CONFIG_NAME);
        let bytes = match store.get(&key) {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => return Err(RepoError::NotARepository(store.location())),
            Err(e) => return Err(e.into()),
        };
        let config: RepoConfig =
            serde_json::from_slice(&bytes).map_err(|e| RepoError::BadConfig(e.to_string()))?;
        if config.format_version != FORMAT_VERSION {
            return Err(RepoError::UnsupportedVersion(config.format_version));
        }
        Ok(Repository { store, config })
    }

    /// Opens the repository on `store`, creating it first if the target
    /// holds none.
    pub fn open_or_init(store: Arc<dyn ObjectStore>, chunk_size: u32) -> Result<Self, RepoError> {
        match Self::open(store.clone()) {
            Err(RepoError::NotARepository(_)) => Self::init(store, chunk_size),
            other => other,
        }
    }

    /// The repository's settings.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The storage target.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Where the repository lives, for messages.
    pub fn location(&self) -> String {
        self.store.location()
    }

    /// Whether the storage target still holds the repository (its config
    /// object can be found): a cheap health check for a service, whatever
    /// the number of backups.
    pub fn check(&self) -> Result<(), RepoError> {
        let key = ObjectKey::new(ObjectKind::Config, CONFIG_NAME);
        match self.store.stat(&key)? {
            Some(_) => Ok(()),
            None => Err(RepoError::NotARepository(self.store.location())),
        }
    }

    /// Starts a new pack; invisible until sealed.
    pub fn begin_pack(&self) -> Result<PackWriter, RepoError> {
        let id = PackId::new_random();
        PackWriter::start(id, self.store.create(&pack_key(&id))?)
    }

    /// Reads `len` bytes of pack `pack` from `offset`: the frames of one or
    /// more consecutive chunks. The bytes are checked by decoding them.
    fn read_pack_range(&self, pack: &PackId, offset: u64, len: u64) -> Result<Vec<u8>, RepoError> {
        match self.store.get_range(&pack_key(pack), offset, len) {
            Err(e) if e.is_not_found() => Err(RepoError::MissingPack(*pack)),
            other => Ok(other?),
        }
    }

    /// Reads bytes of pack `pack` from `offset` into `buf` (reused across
    /// reads by a restore worker); returns how many it read, fewer only at
    /// the pack's end.
    pub fn read_pack_range_into(
        &self,
        pack: &PackId,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, RepoError> {
        match self.store.read_range(&pack_key(pack), offset, buf) {
            Err(e) if e.is_not_found() => Err(RepoError::MissingPack(*pack)),
            other => Ok(other?),
        }
    }

    /// Hints that the frames of consecutive chunks, `len` bytes of pack
    /// `pack` from `offset`, will be read soon.
    pub fn prefetch_pack_range(&self, pack: &PackId, offset: u64, len: u64) {
        self.store.prefetch(&pack_key(pack), offset, len);
    }

    /// Reads a whole pack.
    pub fn read_pack(&self, pack: &PackId) -> Result<Vec<u8>, RepoError> {
        match self.store.get(&pack_key(pack)) {
            Err(e) if e.is_not_found() => Err(RepoError::MissingPack(*pack)),
            other => Ok(other?),
        }
    }

    /// The checked index of pack `pack`, which is `size` bytes long.
    pub fn pack_index(&self, pack: &PackId, size: u64) -> Result<Vec<PackEntry>, RepoError> {
        let damaged = |source| RepoError::DamagedPack {
            pack: *pack,
            source,
        };
        let trailer_at = size
            .checked_sub(PACK_TRAILER_LEN as u64)
            .ok_or(damaged(PackError::Truncated))?;
        let trailer = self.read_pack_range(pack, trailer_at, PACK_TRAILER_LEN as u64)?;
        let index_at = trailer_at
            .checked_sub(index_len(&trailer).map_err(damaged)?)
            .ok_or(damaged(PackError::Truncated))?;
        let tail = self.read_pack_range(pack, index_at, size - index_at)?;
        parse_index(&tail, size).map_err(damaged)
    }

    /// Every pack in the repository.
    pub fn list_packs(&self) -> Result<Vec<PackMeta>, RepoError> {
        let mut packs = Vec::new();
        self.store.list(ObjectKind::Pack, &mut |meta| {
            // Names that are not pack ids are not Ember's; leave them be.
            if let Ok(id) = meta.name.parse() {
                packs.push(PackMeta {
                    id,
                    size: meta.size,
                    modified: meta.modified,
                });
            }
            Ok(())
        })?;
        Ok(packs)
    }

    /// Marks pack `pack` as in use now, so garbage collection keeps it;
    /// `false` if it is gone.
    pub fn touch_pack(&self, pack: &PackId) -> Result<bool, RepoError> {
        match self.store.touch(&pack_key(pack)) {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes pack `pack` unless it was written or touched since `cutoff`
    /// (race-free against a concurrent touch); returns whether it did.
    pub fn delete_pack_if_untouched_since(
        &self,
        pack: &PackId,
        cutoff: std::time::SystemTime,
    ) -> Result<bool, RepoError> {
        Ok(self
            .store
            .delete_if_untouched_since(&pack_key(pack), cutoff)?)
    }

    /// Takes the lease a backup holds while it runs. Take it before reading
    /// the parent's manifest (see docs/format.md, garbage collection).
    pub fn lease_writer(
        &self,
        backup: BackupId,
        parent: Option<BackupId>,
    ) -> Result<WriterLease, RepoError> {
        let info = WriterInfo {
            backup,
            parent,
            started_at: Utc::now(),
            pid: std::process::id(),
        };
        let json = serde_json::to_vec(&info).map_err(|e| RepoError::BadConfig(e.to_string()))?;
        let lease = self.store.acquire_lease(&backup.to_string(), &json)?;
        Ok(WriterLease { _lease: lease })
    }

    /// The running writers. A lease whose content cannot be read is taken
    /// as started at the epoch, which makes garbage collection keep
    /// everything.
    pub fn live_writers(&self) -> Result<Vec<WriterInfo>, RepoError> {
        Ok(self
            .store
            .live_leases()?
            .into_iter()
            .map(|bytes| {
                serde_json::from_slice(&bytes).unwrap_or(WriterInfo {
                    backup: BackupId::from(Uuid::nil()),
                    parent: None,
                    started_at: chrono::DateTime::UNIX_EPOCH,
                    pid: 0,
                })
            })
            .collect())
    }

    /// Starts the manifest of backup `id`; invisible until committed.
    pub fn begin_manifest(&self, id: &BackupId) -> Result<PendingManifest, RepoError> {
        let sink = self.store.create(&manifest_key(id))?;
        let writer = ManifestWriter::new(sink)
            .map_err(|source| RepoError::DamagedManifest { id: *id, source })?;
        Ok(PendingManifest { id: *id, writer })
    }

    /// The record of backup `id`, read from its manifest's footer.
    pub fn backup_info(&self, id: &BackupId) -> Result<BackupInfo, RepoError> {
        self.read_footer(id).map(|(info, _)| info)
    }

    fn read_footer(&self, id: &BackupId) -> Result<(BackupInfo, u64), RepoError> {
        let key = manifest_key(id);
        let size = match self.store.stat(&key)? {
            Some(meta) => meta.size,
            None => return Err(RepoError::BackupNotFound(id.to_string())),
        };
        let damaged = |source| RepoError::DamagedManifest { id: *id, source };
        let trailer_at = size
            .checked_sub(TRAILER_LEN as u64)
            .ok_or_else(|| damaged(ManifestError::BadFooter("manifest too short".into())))?;
        let trailer = self.store.get_range(&key, trailer_at, TRAILER_LEN as u64)?;
        let len = u64::from(footer_len(&trailer).map_err(damaged)?);
        let footer_at = trailer_at.checked_sub(len).ok_or_else(|| {
            damaged(ManifestError::BadFooter(
                "footer longer than manifest".into(),
            ))
        })?;
        let footer = parse_footer(&self.store.get_range(&key, footer_at, len)?).map_err(damaged)?;
        if footer.backup.id != *id {
            return Err(damaged(ManifestError::BadFooter(format!(
                "footer names backup {}",
                footer.backup.id
            ))));
        }
        Ok((footer.backup, size))
    }

    /// Ids of every committed backup.
    pub fn backup_ids(&self) -> Result<Vec<BackupId>, RepoError> {
        let mut ids = Vec::new();
        self.store.list(ObjectKind::Manifest, &mut |meta| {
            // Names that are not ids are not Ember's; leave them be.
            if let Ok(id) = meta.name.parse() {
                ids.push(id);
            }
            Ok(())
        })?;
        Ok(ids)
    }

    /// Every committed backup, oldest first, and the manifests that could
    /// not be read (with why).
    pub fn list_backups(&self) -> Result<BackupListing, RepoError> {
        let mut backups = Vec::new();
        let mut damaged = Vec::new();
        for id in self.backup_ids()? {
            match self.backup_info(&id) {
                Ok(info) => backups.push(info),
                // Deleted while listing.
                Err(RepoError::BackupNotFound(_)) => {}
                Err(e @ RepoError::DamagedManifest { .. }) => damaged.push((id, e)),
                Err(e) => return Err(e),
            }
        }
        backups.sort_by_key(|b| (b.started_at, b.id));
        Ok(BackupListing { backups, damaged })
    }

    /// Opens backup `id`'s chunk entries after checking the whole manifest's
    /// checksum.
    pub fn open_entries(&self, id: &BackupId) -> Result<ManifestEntries, RepoError> {
        let (info, size) = self.read_footer(id)?;
        let key = manifest_key(id);
        let damaged = |source| RepoError::DamagedManifest { id: *id, source };
        verify_checksum(self.store.open(&key)?, size).map_err(damaged)?;
        let reader =
            EntryReader::new(self.store.open(&key)?, info.chunk_count()).map_err(damaged)?;
        Ok(ManifestEntries { info, reader })
    }

    /// Removes backup `id`. Its packs stay until garbage collection finds
    /// no other backup using them, so no other backup is affected.
    pub fn delete_backup(&self, id: &BackupId) -> Result<(), RepoError> {
        let key = manifest_key(id);
        if self.store.stat(&key)?.is_none() {
            return Err(RepoError::BackupNotFound(id.to_string()));
        }
        self.store.delete(&key)?;
        Ok(self.store.sync()?)
    }

    /// The backup a full id or a unique id prefix names.
    pub fn resolve_id(&self, text: &str) -> Result<BackupId, RepoError> {
        let text = text.trim().to_ascii_lowercase();
        if let Ok(id) = text.parse::<BackupId>() {
            return Ok(id);
        }
        if text.is_empty() {
            return Err(RepoError::BackupNotFound(text));
        }
        let mut matches = self
            .backup_ids()?
            .into_iter()
            .filter(|id| id.to_string().starts_with(&text));
        match (matches.next(), matches.next()) {
            (Some(id), None) => Ok(id),
            (Some(_), Some(_)) => Err(RepoError::AmbiguousId(text)),
            (None, _) => Err(RepoError::BackupNotFound(text)),
        }
    }
}

/// What listing a pack reports.
#[derive(Clone, Debug)]
pub struct PackMeta {
    /// The pack.
    pub id: PackId,
    /// Its size in bytes.
    pub size: u64,
    /// When it was written or last touched.
    pub modified: std::time::SystemTime,
}

/// What listing the repository's backups found.
pub struct BackupListing {
    /// Readable backups, oldest first.
    pub backups: Vec<BackupInfo>,
    /// Backups whose manifest cannot be read, with why.
    pub damaged: Vec<(BackupId, RepoError)>,
}

/// A manifest being written. Nothing is visible until [`PendingManifest::commit`].
pub struct PendingManifest {
    id: BackupId,
    writer: ManifestWriter<Box<dyn ObjectWriter>>,
}

impl PendingManifest {
    /// Appends the next chunk's entry.
    pub fn push(&mut self, entry: &ChunkRef) -> Result<(), RepoError> {
        self.writer
            .push(entry)
            .map_err(|source| RepoError::DamagedManifest {
                id: self.id,
                source,
            })
    }

    /// Writes the record and makes the manifest durable and visible: the
    /// backup's commit point. Every pack its entries name must be sealed
    /// (durable) before.
    pub fn commit(self, info: BackupInfo) -> Result<(), RepoError> {
        let id = self.id;
        if self.writer.entry_count() != info.chunk_count() {
            return Err(RepoError::DamagedManifest {
                id,
                source: ManifestError::TooFewEntries,
            });
        }
        let sink = self
            .writer
            .finish(info)
            .map_err(|source| RepoError::DamagedManifest { id, source })?;
        Ok(sink.commit()?)
    }
}

/// A backup's record and its chunk entries, streamed in volume order.
pub struct ManifestEntries {
    info: BackupInfo,
    reader: EntryReader<Box<dyn Read + Send>>,
}

impl ManifestEntries {
    /// The backup's record.
    pub fn info(&self) -> &BackupInfo {
        &self.info
    }

    /// The next chunk's entry, `None` after the last.
    pub fn next_entry(&mut self) -> Result<Option<ChunkRef>, RepoError> {
        let id = self.info.id;
        self.reader
            .next_entry()
            .map_err(|source| RepoError::DamagedManifest { id, source })
    }
}
