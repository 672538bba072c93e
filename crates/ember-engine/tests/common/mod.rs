//! Shared helpers for the engine's integration tests: real repositories (in
//! temporary directories, or on a given store) and reproducible volume
//! images.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ember_engine::{
    run_backup, run_restore, BackupRequest, CancelToken, ParentChoice, Progress, Tuning,
};
use ember_repo::Repository;
use ember_store::{ObjectStore, PosixStore};
use ember_types::{BackupId, BackupInfo};
use ember_volume::{Source, Target};

/// Chunk size used by the tests: small, so small volumes have many chunks.
pub const CHUNK: u32 = 4096;

/// A repository and a scratch directory, both removed at the end.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub repo: Repository,
}

impl Fixture {
    /// A repository in the scratch directory.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = PosixStore::create(dir.path().join("repo")).expect("store");
        Self::with(dir, Arc::new(store))
    }

    /// A repository on `store`, and a scratch directory for volumes.
    pub fn on_store(store: Arc<dyn ObjectStore>) -> Self {
        Self::with(tempfile::tempdir().expect("tempdir"), store)
    }

    fn with(dir: tempfile::TempDir, store: Arc<dyn ObjectStore>) -> Self {
        let repo = Repository::init(store, CHUNK).expect("init");
        Fixture { dir, repo }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn repo_path(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn backup(&self, volume: &Path, parent: ParentChoice) -> BackupInfo {
        self.try_backup(volume, parent).expect("backup")
    }

    pub fn try_backup(
        &self,
        volume: &Path,
        parent: ParentChoice,
    ) -> Result<BackupInfo, ember_engine::EngineError> {
        let source = Source::open(volume)?;
        let mut request = BackupRequest::full(volume.display().to_string());
        request.parent = parent;
        run_backup(
            &self.repo,
            &source,
            &request,
            tuning(),
            &Progress::new(),
            &CancelToken::new(),
        )
    }

    /// Restores into a new file and returns its contents.
    pub fn restore(&self, id: &BackupId) -> Vec<u8> {
        let out = self.path(&format!("restore-{}", uuid_like()));
        let size = self.repo.backup_info(id).expect("info").volume_size;
        let target = Target::create(&out, size).expect("target");
        run_restore(
            &self.repo,
            id,
            Box::new(target),
            tuning(),
            &Progress::new(),
            &CancelToken::new(),
        )
        .expect("restore");
        let data = std::fs::read(&out).expect("read restored");
        std::fs::remove_file(&out).expect("remove restored");
        data
    }
}

/// Three workers and small batches, so batches really interleave.
pub fn tuning() -> Tuning {
    Tuning {
        threads: 3,
        batch_bytes: 16 * 1024,
        dedup_entries: 1 << 16,
    }
}

fn uuid_like() -> String {
    BackupId::new_random().to_string()
}

/// Reproducible bytes that do not compress.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// A volume image of `chunks` test chunks plus a short tail: noise, text
/// and zero regions, like the standard benchmark volume in miniature.
pub fn volume_bytes(seed: u64, chunks: usize) -> Vec<u8> {
    let chunk = CHUNK as usize;
    let mut data = Vec::with_capacity(chunks * chunk + 1000);
    for i in 0..chunks {
        match i % 4 {
            0 | 1 => data.extend(noise(seed * 1000 + i as u64, chunk)),
            2 => data.extend(
                format!("line {i} of a text region that compresses well\n")
                    .bytes()
                    .cycle()
                    .take(chunk),
            ),
            _ => data.extend(std::iter::repeat_n(0u8, chunk)),
        }
    }
    data.extend(noise(seed + 7, 1000));
    data
}

/// Overwrites `count` scattered 512-byte pieces of `data`.
pub fn mutate(data: &mut [u8], seed: u64, count: usize) {
    let positions = noise(seed, count * 8);
    for piece in positions.chunks(8) {
        let at =
            (u64::from_le_bytes(piece.try_into().expect("8 bytes")) as usize) % (data.len() - 512);
        data[at..at + 512].copy_from_slice(&noise(seed ^ at as u64, 512));
    }
}

/// The pack files of a repository.
pub fn pack_files(repo: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(dirs) = std::fs::read_dir(repo.join("packs")) else {
        return files;
    };
    for dir in dirs {
        for file in std::fs::read_dir(dir.expect("entry").path()).expect("fanout dir") {
            let path = file.expect("entry").path();
            if !path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .starts_with('.')
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

pub fn write(path: &Path, data: &[u8]) {
    std::fs::write(path, data).expect("write volume");
}
