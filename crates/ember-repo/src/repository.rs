//! The repository: chunks, manifests and leases on one storage target.

use std::io::Read;
use std::sync::Arc;

use chrono::Utc;
use ember_format::chunk::check_frame;
use ember_format::manifest::{footer_len, parse_footer, verify_checksum, EntryReader, TRAILER_LEN};
use ember_format::{ChunkDecoder, ManifestError, ManifestWriter, FORMAT_VERSION};
use ember_store::{ObjectKey, ObjectKind, ObjectStore, ObjectWriter, StoreError};
use ember_types::{BackupId, BackupInfo, ChunkDigest};
use uuid::Uuid;

use crate::{RepoConfig, RepoError, WriterInfo, WriterLease};

const CONFIG_NAME: &str = "config";

fn chunk_key(digest: &ChunkDigest) -> ObjectKey {
    ObjectKey::new(ObjectKind::Chunk, digest.to_hex())
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
        if config.format_version > FORMAT_VERSION {
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

    /// Whether a whole, undamaged-looking copy of the chunk is stored; if
    /// so it is touched, so a concurrent garbage collection keeps it. A copy
    /// torn by a crash (bad frame or CRC) counts as absent and is replaced
    /// by the caller's write.
    pub fn reuse_chunk(&self, digest: &ChunkDigest) -> Result<bool, RepoError> {
        let key = chunk_key(digest);
        let frame = match self.store.get(&key) {
            Ok(frame) => frame,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if check_frame(&frame).is_err() {
            return Ok(false);
        }
        match self.store.touch(&key) {
            Ok(()) => Ok(true),
            // Collected between the read and the touch: write it again.
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a chunk frame under its digest (durable after
    /// [`ObjectStore::sync`]). Returns `false` if a whole copy turned out to
    /// be there already (written meanwhile by another backup): then nothing
    /// was written and the copy was touched.
    pub fn put_chunk(&self, digest: &ChunkDigest, frame: &[u8]) -> Result<bool, RepoError> {
        let key = chunk_key(digest);
        if self.store.put_new(&key, frame)? {
            return Ok(true);
        }
        if self.reuse_chunk(digest)? {
            return Ok(false);
        }
        // A torn copy (an earlier crash, or a writer still busy with it):
        // replace it atomically with a whole one.
        self.store.put(&key, frame)?;
        Ok(true)
    }

    /// Fetches a chunk, decodes it into `out` and proves it against its digest.
    pub fn read_chunk(
        &self,
        digest: &ChunkDigest,
        decoder: &mut ChunkDecoder,
        out: &mut Vec<u8>,
    ) -> Result<(), RepoError> {
        let frame = self.chunk_frame(digest)?;
        decoder
            .decode_into(&frame, digest, out)
            .map_err(|source| RepoError::DamagedChunk {
                digest: *digest,
                source,
            })
    }

    /// Fetches a chunk, decodes it into the start of `out` (which must hold
    /// a whole chunk), proves it against its digest and returns its length.
    pub fn read_chunk_to(
        &self,
        digest: &ChunkDigest,
        decoder: &mut ChunkDecoder,
        out: &mut [u8],
    ) -> Result<usize, RepoError> {
        let frame = self.chunk_frame(digest)?;
        decoder
            .decode_to(&frame, digest, out)
            .map_err(|source| RepoError::DamagedChunk {
                digest: *digest,
                source,
            })
    }

    fn chunk_frame(&self, digest: &ChunkDigest) -> Result<Vec<u8>, RepoError> {
        match self.store.get(&chunk_key(digest)) {
            Ok(frame) => Ok(frame),
            Err(e) if e.is_not_found() => Err(RepoError::MissingChunk(*digest)),
            Err(e) => Err(e.into()),
        }
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

    /// Opens backup `id`'s chunk list after checking the whole manifest's
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

    /// Removes backup `id`. Its chunks stay until garbage collection finds
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
    /// Appends the next chunk's digest.
    pub fn push(&mut self, digest: &ChunkDigest) -> Result<(), RepoError> {
        self.writer
            .push(digest)
            .map_err(|source| RepoError::DamagedManifest {
                id: self.id,
                source,
            })
    }

    /// Makes every chunk written so far durable, then writes the record and
    /// makes the manifest durable and visible: the backup's commit point.
    pub fn commit(self, repo: &Repository, info: BackupInfo) -> Result<(), RepoError> {
        let id = self.id;
        if self.writer.entry_count() != info.chunk_count() {
            return Err(RepoError::DamagedManifest {
                id,
                source: ManifestError::TooFewEntries,
            });
        }
        repo.store.sync()?;
        let sink = self
            .writer
            .finish(info)
            .map_err(|source| RepoError::DamagedManifest { id, source })?;
        Ok(sink.commit()?)
    }
}

/// A backup's record and its chunk digests, streamed in volume order.
pub struct ManifestEntries {
    info: BackupInfo,
    reader: EntryReader<Box<dyn Read + Send>>,
}

impl ManifestEntries {
    /// The backup's record.
    pub fn info(&self) -> &BackupInfo {
        &self.info
    }

    /// The next chunk's digest, `None` after the last.
    pub fn next_digest(&mut self) -> Result<Option<ChunkDigest>, RepoError> {
        let id = self.info.id;
        self.reader
            .next_digest()
            .map_err(|source| RepoError::DamagedManifest { id, source })
    }
}
