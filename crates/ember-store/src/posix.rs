//! The POSIX-directory target: a local disk, or an NFS or GlusterFS share.
//!
//! Layout under the root directory:
//!
//! ```text
//! config                   the repository configuration
//! packs/<hh>/<pack id>     pack files, fanned out by the first two hex digits
//! backups/<backup id>      manifests
//! locks/<name>             leases of running writers (flock'ed while alive)
//! ```
//!
//! Every object is written under a temporary name (`.tmp-<random>`, in the
//! same directory) and renamed into place, so a reader never sees a partial
//! object. Objects written through [`ObjectStore::create`] (packs, manifests,
//! the config) are fsync'ed before the rename and their directory after it;
//! `put` and `delete` are made durable by [`ObjectStore::sync`] (`syncfs`).

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ember_types::AlignedBuf;
use nix::fcntl::{Flock, FlockArg};
use uuid::Uuid;

use crate::{
    valid_name, Lease, ObjectKey, ObjectKind, ObjectMeta, ObjectStore, ObjectWriter, StoreError,
};

const TEMP_PREFIX: &str = ".tmp-";
/// Pack directories are named by this many leading hex digits of the pack
/// id: 256 directories, created on first use.
const PACK_FANOUT_DIGITS: usize = 2;

/// A repository kept as files below one directory.
#[derive(Debug, Clone)]
pub struct PosixStore {
    root: PathBuf,
}

impl PosixStore {
    /// Opens the store at `root`, which must be an existing directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        let meta =
            fs::metadata(&root).map_err(|e| StoreError::io(root.display().to_string(), e))?;
        if !meta.is_dir() {
            return Err(StoreError::io(
                root.display().to_string(),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a directory"),
            ));
        }
        Ok(PosixStore { root })
    }

    /// Creates `root` (and its parents) if needed, then opens it.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| StoreError::io(root.display().to_string(), e))?;
        Self::open(root)
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn kind_dir(&self, kind: ObjectKind) -> PathBuf {
        match kind {
            ObjectKind::Config => self.root.clone(),
            ObjectKind::Pack => self.root.join("packs"),
            ObjectKind::Manifest => self.root.join("backups"),
            ObjectKind::Lease => self.root.join("locks"),
        }
    }

    fn path_of(&self, key: &ObjectKey) -> Result<PathBuf, StoreError> {
        let name = &key.name;
        if !valid_name(name) || (key.kind == ObjectKind::Pack && name.len() <= PACK_FANOUT_DIGITS) {
            return Err(StoreError::InvalidName(name.clone()));
        }
        let dir = self.kind_dir(key.kind);
        Ok(match key.kind {
            ObjectKind::Pack => dir.join(&name[..PACK_FANOUT_DIGITS]).join(name),
            _ => dir.join(name),
        })
    }

    /// Creates a fresh temporary file beside `path`.
    fn create_temp(path: &Path) -> Result<(File, PathBuf), StoreError> {
        let tmp = parent_of(path).join(format!("{TEMP_PREFIX}{}", Uuid::new_v4().simple()));
        let file = create_new_file(&tmp)?.ok_or_else(|| {
            io_err(
                "create",
                &tmp,
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            )
        })?;
        Ok((file, tmp))
    }
}

/// Creates `path` exclusively, creating its directory on first use;
/// `None` if it already exists.
fn create_new_file(path: &Path) -> Result<Option<File>, StoreError> {
    let create = || OpenOptions::new().write(true).create_new(true).open(path);
    let result = match create() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = parent_of(path);
            fs::create_dir_all(dir).map_err(|e| io_err("create directory", dir, e))?;
            create()
        }
        other => other,
    };
    match result {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(io_err("create", path, e)),
    }
}

fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("/"))
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::io(format!("{what} {}", path.display()), e)
}

fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("fsync directory", dir, e))
}

fn meta_of(name: String, meta: &fs::Metadata) -> ObjectMeta {
    ObjectMeta {
        name,
        size: meta.len(),
        modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    }
}

/// Deletes the temporary file unless the write was committed.
struct TempGuard {
    path: Option<PathBuf>,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            // Best effort: a leftover is swept by remove_stale_temporaries.
            let _ = fs::remove_file(path);
        }
    }
}

/// Writes an object in [`STAGE_LEN`] pieces from an aligned buffer, with
/// direct I/O where the file system allows it: packs are written once and
/// read back rarely, and copying them through the page cache cost a third
/// of a full backup's CPU time on the benchmark machine (docs/format.md
/// §11). The last, unaligned piece is written through the page cache at
/// commit.
struct PosixWriter {
    file: File,
    direct: bool,
    staged: AlignedBuf,
    filled: usize,
    /// Offset in the file of the staged bytes.
    offset: u64,
    guard: TempGuard,
    path: PathBuf,
}

/// Bytes staged before each write.
const STAGE_LEN: usize = 1 << 20;

impl PosixWriter {
    fn new(file: File, tmp: PathBuf, path: PathBuf) -> Self {
        let direct = set_direct(&file, true).is_ok();
        let mut staged = AlignedBuf::new();
        staged.resize(STAGE_LEN);
        PosixWriter {
            file,
            direct,
            staged,
            filled: 0,
            offset: 0,
            guard: TempGuard { path: Some(tmp) },
            path,
        }
    }

    /// Writes the staged bytes; with direct I/O only a whole stage.
    fn write_staged(&mut self) -> std::io::Result<()> {
        let bytes = &self.staged.as_slice()[..self.filled];
        match self.file.write_all_at(bytes, self.offset) {
            // The file system took O_DIRECT but refuses the write: write
            // through the page cache instead.
            Err(e) if self.direct && e.raw_os_error() == Some(nix::libc::EINVAL) => {
                set_direct(&self.file, false)?;
                self.direct = false;
                self.file.write_all_at(bytes, self.offset)?;
            }
            other => other?,
        }
        self.offset += self.filled as u64;
        self.filled = 0;
        Ok(())
    }
}

/// Reads into `buf` from `offset` until it is full or the file ends.
fn read_fully_at(file: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Turns direct I/O on or off for `file`.
fn set_direct(file: &File, on: bool) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(file.as_raw_fd(), FcntlArg::F_GETFL)?);
    let flags = if on {
        flags | OFlag::O_DIRECT
    } else {
        flags - OFlag::O_DIRECT
    };
    fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(flags)).map(|_| ())
}

impl Write for PosixWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = STAGE_LEN - self.filled;
        let n = buf.len().min(room);
        self.staged.as_mut_slice()[self.filled..self.filled + n].copy_from_slice(&buf[..n]);
        self.filled += n;
        if self.filled == STAGE_LEN {
            self.write_staged()?;
        }
        Ok(n)
    }

    /// Does nothing: staged bytes are written when a stage is full and at
    /// commit (a partial stage cannot be written with direct I/O).
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for PosixWriter {
    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        let tmp = self.guard.path.clone().unwrap_or_default();
        if self.direct {
            set_direct(&self.file, false).map_err(|e| io_err("fcntl", &tmp, e.into()))?;
        }
        self.write_staged().map_err(|e| io_err("write", &tmp, e))?;
        self.file.sync_all().map_err(|e| io_err("fsync", &tmp, e))?;
        fs::rename(&tmp, &self.path).map_err(|e| io_err("rename into place", &self.path, e))?;
        self.guard.path = None;
        fsync_dir(parent_of(&self.path))
    }
}

/// A lease file, exclusively flock'ed for as long as this value lives.
struct PosixLease {
    path: PathBuf,
    _lock: Flock<File>,
}

impl Lease for PosixLease {}

impl Drop for PosixLease {
    fn drop(&mut self) {
        // Best effort: a lease file whose lock is gone counts as stale and is
        // removed by the next live_leases.
        let _ = fs::remove_file(&self.path);
    }
}

impl ObjectStore for PosixStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn put(&self, key: &ObjectKey, data: &[u8]) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        let (mut file, tmp) = Self::create_temp(&path)?;
        let mut guard = TempGuard {
            path: Some(tmp.clone()),
        };
        file.write_all(data).map_err(|e| io_err("write", &tmp, e))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(|e| io_err("rename into place", &path, e))?;
        guard.path = None;
        Ok(())
    }

    fn create(&self, key: &ObjectKey) -> Result<Box<dyn ObjectWriter>, StoreError> {
        let path = self.path_of(key)?;
        let (file, tmp) = Self::create_temp(&path)?;
        Ok(Box::new(PosixWriter::new(file, tmp, path)))
    }

    fn get(&self, key: &ObjectKey) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(key)?;
        fs::read(&path).map_err(|e| io_err("read", &path, e))
    }

    fn get_range(&self, key: &ObjectKey, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        let len = usize::try_from(len).map_err(|_| {
            io_err(
                "read",
                &self.root,
                std::io::Error::from(std::io::ErrorKind::InvalidInput),
            )
        })?;
        let mut out = vec![0u8; len];
        let filled = self.read_range(key, offset, &mut out)?;
        out.truncate(filled);
        Ok(out)
    }

    fn read_range(
        &self,
        key: &ObjectKey,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, StoreError> {
        let path = self.path_of(key)?;
        let file = File::open(&path).map_err(|e| io_err("open", &path, e))?;
        read_fully_at(&file, offset, buf).map_err(|e| io_err("read", &path, e))
    }

    /// `posix_fadvise(WILLNEED)`: the kernel reads the range ahead in the
    /// background. Each range read opens the file anew, so the kernel's own
    /// readahead never sees the restore's sequential pattern; this tells it.
    fn prefetch(&self, key: &ObjectKey, offset: u64, len: u64) {
        let Ok(path) = self.path_of(key) else {
            return;
        };
        if let Ok(file) = File::open(path) {
            // A hint: if the kernel declines, the read just waits longer.
            let _ = nix::fcntl::posix_fadvise(
                file.as_raw_fd(),
                offset as i64,
                len as i64,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
            );
        }
    }

    fn open(&self, key: &ObjectKey) -> Result<Box<dyn Read + Send>, StoreError> {
        let path = self.path_of(key)?;
        let file = File::open(&path).map_err(|e| io_err("open", &path, e))?;
        Ok(Box::new(BufReader::with_capacity(1 << 20, file)))
    }

    fn stat(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError> {
        let path = self.path_of(key)?;
        match fs::metadata(&path) {
            Ok(meta) => Ok(Some(meta_of(key.name.clone(), &meta))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("stat", &path, e)),
        }
    }

    fn touch(&self, key: &ObjectKey) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        File::open(&path)
            .and_then(|f| f.set_modified(SystemTime::now()))
            .map_err(|e| io_err("touch", &path, e))
    }

    fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err("delete", &path, e)),
            _ => Ok(()),
        }
    }

    fn delete_if_untouched_since(
        &self,
        key: &ObjectKey,
        cutoff: SystemTime,
    ) -> Result<bool, StoreError> {
        let path = self.path_of(key)?;
        let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified());
        match modified(&path) {
            Ok(time) if time < cutoff => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("stat", &path, e)),
        }
        // Move it aside first: a touch after the move fails (its caller then
        // writes the object anew), and a touch before the move shows in the
        // moved file's time, in which case the object goes back.
        let aside = parent_of(&path).join(format!("{TEMP_PREFIX}{}", Uuid::new_v4().simple()));
        match fs::rename(&path, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("move aside", &path, e)),
        }
        let touched = modified(&aside).map_err(|e| io_err("stat", &aside, e))? >= cutoff;
        if touched {
            fs::rename(&aside, &path).map_err(|e| io_err("move back", &path, e))?;
            return Ok(false);
        }
        fs::remove_file(&aside).map_err(|e| io_err("delete", &aside, e))?;
        Ok(true)
    }

    fn list(
        &self,
        kind: ObjectKind,
        visit: &mut dyn FnMut(ObjectMeta) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let dir = self.kind_dir(kind);
        match kind {
            ObjectKind::Config => {
                if let Some(meta) = self.stat(&ObjectKey::new(kind, "config"))? {
                    visit(meta)?;
                }
                Ok(())
            }
            ObjectKind::Pack => for_each_dir(&dir, &mut |sub| list_files(&sub, visit)),
            _ => list_files(&dir, visit),
        }
    }

    fn sync(&self) -> Result<(), StoreError> {
        let root = File::open(&self.root).map_err(|e| io_err("open", &self.root, e))?;
        nix::unistd::syncfs(root.as_raw_fd()).map_err(|e| io_err("syncfs", &self.root, e.into()))
    }

    fn acquire_lease(&self, name: &str, info: &[u8]) -> Result<Box<dyn Lease>, StoreError> {
        let path = self.path_of(&ObjectKey::new(ObjectKind::Lease, name))?;
        // Lock before the lease becomes visible, so nobody can take a fresh
        // lease for a stale one.
        let (file, tmp) = Self::create_temp(&path)?;
        let mut guard = TempGuard {
            path: Some(tmp.clone()),
        };
        let mut lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| io_err("lock", &tmp, errno.into()))?;
        lock.write_all(info).map_err(|e| io_err("write", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| io_err("rename into place", &path, e))?;
        guard.path = None;
        Ok(Box::new(PosixLease { path, _lock: lock }))
    }

    fn live_leases(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut live = Vec::new();
        list_files(&self.kind_dir(ObjectKind::Lease), &mut |meta| {
            let path = self.kind_dir(ObjectKind::Lease).join(&meta.name);
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_err("open", &path, e)),
            };
            match Flock::lock(file, FlockArg::LockSharedNonblock) {
                Ok(_stale) => {
                    // Nobody holds it: its writer died. Remove it.
                    match fs::remove_file(&path) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            Err(io_err("remove stale lease", &path, e))
                        }
                        _ => Ok(()),
                    }
                }
                Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                    let mut info = Vec::new();
                    file.read_to_end(&mut info)
                        .map_err(|e| io_err("read", &path, e))?;
                    live.push(info);
                    Ok(())
                }
                Err((_, errno)) => Err(io_err("lock", &path, errno.into())),
            }
        })?;
        Ok(live)
    }

    fn remove_stale_temporaries(&self, older_than: SystemTime) -> Result<u64, StoreError> {
        let mut removed = 0;
        let mut sweep = |dir: &Path| -> Result<(), StoreError> {
            for entry in read_dir_or_empty(dir)? {
                let entry = entry.map_err(|e| io_err("list", dir, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with(TEMP_PREFIX) {
                    continue;
                }
                let meta = entry
                    .metadata()
                    .map_err(|e| io_err("stat", &entry.path(), e))?;
                if meta.modified().map(|m| m < older_than).unwrap_or(false) {
                    fs::remove_file(entry.path())
                        .map_err(|e| io_err("remove", &entry.path(), e))?;
                    removed += 1;
                }
            }
            Ok(())
        };
        sweep(&self.root)?;
        sweep(&self.kind_dir(ObjectKind::Manifest))?;
        sweep(&self.kind_dir(ObjectKind::Lease))?;
        for_each_dir(&self.kind_dir(ObjectKind::Pack), &mut |sub| sweep(&sub))?;
        Ok(removed)
    }
}

fn read_dir_or_empty(dir: &Path) -> Result<Vec<std::io::Result<fs::DirEntry>>, StoreError> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries.collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("list", dir, e)),
    }
}

fn for_each_dir(
    dir: &Path,
    visit: &mut dyn FnMut(PathBuf) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    for entry in read_dir_or_empty(dir)? {
        let entry = entry.map_err(|e| io_err("list", dir, e))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            visit(entry.path())?;
        }
    }
    Ok(())
}

fn list_files(
    dir: &Path,
    visit: &mut dyn FnMut(ObjectMeta) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    for entry in read_dir_or_empty(dir)? {
        let entry = entry.map_err(|e| io_err("list", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let meta = match entry.metadata() {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => continue,
            // Deleted while listing: listing may miss concurrent changes.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("stat", &entry.path(), e)),
        };
        visit(meta_of(name, &meta))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, PosixStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = PosixStore::open(dir.path()).expect("open");
        (dir, store)
    }

    fn pack_key(byte: &str) -> ObjectKey {
        ObjectKey::new(ObjectKind::Pack, byte.repeat(32))
    }

    #[test]
    fn put_get_stat_list_delete() {
        let (_dir, store) = store();
        let key = pack_key("a");
        store.put(&key, b"hello").expect("put");
        store.put(&key, b"hello").expect("put is idempotent");
        let fresh = pack_key("d");
        store.put(&fresh, b"new").expect("put");
        assert_eq!(store.get(&fresh).expect("get"), b"new");
        store.delete(&fresh).expect("delete");
        assert_eq!(store.get(&key).expect("get"), b"hello");
        assert_eq!(store.get_range(&key, 1, 3).expect("range"), b"ell");
        assert_eq!(store.get_range(&key, 3, 10).expect("short range"), b"lo");
        assert_eq!(store.stat(&key).expect("stat").expect("exists").size, 5);
        let mut names = Vec::new();
        store
            .list(ObjectKind::Pack, &mut |m| {
                names.push(m.name);
                Ok(())
            })
            .expect("list");
        assert_eq!(names, vec![key.name.clone()]);
        store.sync().expect("sync");
        store.delete(&key).expect("delete");
        store.delete(&key).expect("delete is idempotent");
        assert!(store.get(&key).expect_err("gone").is_not_found());
        assert!(store.stat(&key).expect("stat").is_none());
    }

    #[test]
    fn large_objects_written_in_odd_pieces_read_back_whole() {
        let (_dir, store) = store();
        let key = pack_key("e");
        // Several whole stages (direct writes) and an unaligned tail.
        let data: Vec<u8> = (0..(2 * STAGE_LEN + 12_345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut writer = store.create(&key).expect("create");
        for piece in data.chunks(100_003) {
            writer.write_all(piece).expect("write");
        }
        writer.commit().expect("commit");
        assert!(store.get(&key).expect("get") == data);
        assert_eq!(
            store
                .get_range(&key, STAGE_LEN as u64 - 3, 6)
                .expect("range"),
            &data[STAGE_LEN - 3..STAGE_LEN + 3]
        );
    }

    #[test]
    fn uncommitted_writer_leaves_nothing() {
        let (dir, store) = store();
        let key = ObjectKey::new(ObjectKind::Manifest, "b1");
        let mut writer = store.create(&key).expect("create");
        writer.write_all(b"partial").expect("write");
        drop(writer);
        assert!(store.stat(&key).expect("stat").is_none());
        let leftovers = fs::read_dir(dir.path().join("backups"))
            .expect("dir")
            .count();
        assert_eq!(leftovers, 0);

        let mut writer = store.create(&key).expect("create");
        writer.write_all(b"whole").expect("write");
        writer.commit().expect("commit");
        assert_eq!(store.get(&key).expect("get"), b"whole");
    }

    #[test]
    fn conditional_delete_spares_touched_objects() {
        let (_dir, store) = store();
        let key = pack_key("c");
        store.put(&key, b"x").expect("put");
        let before_put = SystemTime::now() - std::time::Duration::from_secs(3600);
        assert!(!store
            .delete_if_untouched_since(&key, before_put)
            .expect("delete"));
        assert!(store.stat(&key).expect("stat").is_some());
        let after_put = SystemTime::now() + std::time::Duration::from_secs(3600);
        assert!(store
            .delete_if_untouched_since(&key, after_put)
            .expect("delete"));
        assert!(store.stat(&key).expect("stat").is_none());
        assert!(!store
            .delete_if_untouched_since(&key, after_put)
            .expect("missing"));
    }

    #[test]
    fn bad_names_are_refused() {
        let (_dir, store) = store();
        for name in ["", "../x", ".tmp-x", "a/b", "ab"] {
            let key = ObjectKey::new(ObjectKind::Pack, name);
            assert!(matches!(
                store.put(&key, b"x"),
                Err(StoreError::InvalidName(_))
            ));
        }
    }

    #[test]
    fn leases_are_live_while_held_and_stale_after() {
        let (dir, store) = store();
        let lease = store.acquire_lease("writer-1", b"info-1").expect("lease");
        assert_eq!(store.live_leases().expect("live"), vec![b"info-1".to_vec()]);
        drop(lease);
        assert!(store.live_leases().expect("live").is_empty());

        // A lease file left by a killed holder (no lock) is stale.
        fs::write(dir.path().join("locks/dead"), b"dead").expect("write");
        assert!(store.live_leases().expect("live").is_empty());
        assert!(!dir.path().join("locks/dead").exists());
    }

    #[test]
    fn stale_temporaries_are_swept() {
        let (dir, store) = store();
        store.put(&pack_key("b"), b"x").expect("put");
        let tmp = dir.path().join("packs/bb/.tmp-leftover");
        fs::write(&tmp, b"torn").expect("write");
        let future = SystemTime::now() + std::time::Duration::from_secs(60);
        assert_eq!(store.remove_stale_temporaries(future).expect("sweep"), 1);
        assert!(!tmp.exists());
        assert!(store.stat(&pack_key("b")).expect("stat").is_some());
    }

    #[test]
    fn open_refuses_a_missing_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = PosixStore::open(dir.path().join("missing")).expect_err("missing");
        assert!(err.is_not_found());
    }
}
