//! librbd: RBD images in a pool — create, open, read and write, snapshots,
//! clones, and the changed extents between two versions.

use std::any::Any;
use std::collections::VecDeque;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ops::{BitOr, BitOrAssign};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr;

use nix::errno::Errno;

use crate::error::{check, cstring, neg, CephError};
use crate::ffi;
use crate::rados::{IoCtx, Rados};

/// The largest transfer handed to one librbd call: several return a C
/// `int` (bytes moved), so larger requests are split.
const MAX_CALL_BYTES: usize = 1 << 30;

/// `len` bytes at image offset `offset` as the pieces of at most
/// [`MAX_CALL_BYTES`] handed to one call: `(image offset, offset in the
/// buffer, length)`.
fn split_call(offset: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize)> {
    (0..len)
        .step_by(MAX_CALL_BYTES)
        .map(move |from| (offset + from as u64, from, (len - from).min(MAX_CALL_BYTES)))
}

/// The asynchronous I/Os [`Image::read_many`] and [`Image::write_many`]
/// drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aio {
    Read,
    Write,
}

impl Aio {
    /// The librbd call, as errors name it.
    fn call(self) -> &'static str {
        match self {
            Aio::Read => "rbd_aio_read2",
            Aio::Write => "rbd_aio_write2",
        }
    }
}

/// RBD image feature bits (librbd's `RBD_FEATURE_*`), combined with `|`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Features(pub u64);

impl Features {
    /// No feature.
    pub const NONE: Features = Features(0);
    /// Clones of snapshots (needed on a parent and its clones).
    pub const LAYERING: Features = Features(1 << 0);
    /// Striping with a stripe unit other than the object size (implied by
    /// [`CreateOptions::stripe_unit`]/`stripe_count`).
    pub const STRIPINGV2: Features = Features(1 << 1);
    /// One writer at a time, handed over between clients; needed by the
    /// object map, fast diff and journaling.
    pub const EXCLUSIVE_LOCK: Features = Features(1 << 2);
    /// Tracks which objects exist (needs exclusive-lock).
    pub const OBJECT_MAP: Features = Features(1 << 3);
    /// Object-map based diffs: whole-object [`Image::diff_iterate`] without
    /// listing every object (needs object-map).
    pub const FAST_DIFF: Features = Features(1 << 4);
    /// Snapshots of a clone survive its flattening.
    pub const DEEP_FLATTEN: Features = Features(1 << 5);
    /// Every write journaled, for RBD mirroring (needs exclusive-lock).
    pub const JOURNALING: Features = Features(1 << 6);
    /// Data objects in another pool ([`CreateOptions::data_pool`]).
    pub const DATA_POOL: Features = Features(1 << 7);
    /// What `rbd create` gives by default in Ceph 16: layering,
    /// exclusive-lock, object-map, fast-diff, deep-flatten.
    pub const DEFAULT: Features = Features(
        Self::LAYERING.0
            | Self::EXCLUSIVE_LOCK.0
            | Self::OBJECT_MAP.0
            | Self::FAST_DIFF.0
            | Self::DEEP_FLATTEN.0,
    );

    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Features {
    type Output = Features;
    fn bitor(self, other: Features) -> Features {
        Features(self.0 | other.0)
    }
}

impl BitOrAssign for Features {
    fn bitor_assign(&mut self, other: Features) {
        self.0 |= other.0;
    }
}

/// How to lay out a new image or clone; `None` fields take the cluster's
/// `rbd_default_*` settings.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// Its features (for a clone, must include [`Features::LAYERING`]).
    pub features: Option<Features>,
    /// Object size as a power of two (22 = 4 MiB, the default; 12..=26).
    pub order: Option<u8>,
    /// Bytes written to one object before moving to the next of a stripe;
    /// must divide the object size.
    pub stripe_unit: Option<u64>,
    /// How many objects a stripe spans.
    pub stripe_count: Option<u64>,
    /// A pool for the data objects (the metadata stays in the image's pool).
    pub data_pool: Option<String>,
}

/// A set of `rbd_image_options_t`, destroyed when dropped.
struct ImageOptions(ffi::rbd_image_options_t);

impl ImageOptions {
    fn new(opts: &CreateOptions, target: &str) -> Result<ImageOptions, CephError> {
        let mut raw: ffi::rbd_image_options_t = ptr::null_mut();
        // SAFETY: out-pointer.
        unsafe { ffi::rbd_image_options_create(&mut raw) };
        let options = ImageOptions(raw);
        let numbers = [
            (
                ffi::RBD_IMAGE_OPTION_FEATURES,
                "features",
                opts.features.map(Features::bits),
            ),
            (
                ffi::RBD_IMAGE_OPTION_ORDER,
                "order",
                opts.order.map(u64::from),
            ),
            (
                ffi::RBD_IMAGE_OPTION_STRIPE_UNIT,
                "stripe_unit",
                opts.stripe_unit,
            ),
            (
                ffi::RBD_IMAGE_OPTION_STRIPE_COUNT,
                "stripe_count",
                opts.stripe_count,
            ),
        ];
        for (key, what, value) in numbers {
            if let Some(value) = value {
                // SAFETY: live options.
                let ret = unsafe { ffi::rbd_image_options_set_uint64(options.0, key, value) };
                check(ret, "rbd_image_options_set_uint64", || {
                    format!("{target} {what}={value}")
                })?;
            }
        }
        if let Some(pool) = &opts.data_pool {
            let c_pool = cstring("data pool", pool)?;
            // SAFETY: live options, C string (copied by librbd).
            let ret = unsafe {
                ffi::rbd_image_options_set_string(
                    options.0,
                    ffi::RBD_IMAGE_OPTION_DATA_POOL,
                    c_pool.as_ptr(),
                )
            };
            check(ret, "rbd_image_options_set_string", || {
                format!("{target} data_pool={pool}")
            })?;
        }
        Ok(options)
    }
}

impl Drop for ImageOptions {
    fn drop(&mut self) {
        // SAFETY: created by rbd_image_options_create, destroyed once.
        unsafe { ffi::rbd_image_options_destroy(self.0) }
    }
}

/// Creates the image `name` of `size` bytes in the pool (EEXIST if it
/// exists).
pub fn create(io: &IoCtx, name: &str, size: u64, opts: &CreateOptions) -> Result<(), CephError> {
    let target = format!("{}/{name}", io.pool());
    let c_name = cstring("image name", name)?;
    let options = ImageOptions::new(opts, &target)?;
    // SAFETY: live ioctx and options, C string.
    let ret = unsafe { ffi::rbd_create4(io.as_ptr(), c_name.as_ptr(), size, options.0) };
    check(ret, "rbd_create4", || target).map(drop)
}

/// Creates the image `child` in `child_io`'s pool as a copy-on-write clone
/// of snapshot `snap` of `parent`. The parent needs the layering feature;
/// with clone format 1 (clients older than Mimic) the snapshot must be
/// protected first ([`Image::snap_protect`]), and it cannot be unprotected
/// while clones exist.
pub fn clone(
    parent_io: &IoCtx,
    parent: &str,
    snap: &str,
    child_io: &IoCtx,
    child: &str,
    opts: &CreateOptions,
) -> Result<(), CephError> {
    let target = format!(
        "{}/{parent}@{snap} -> {}/{child}",
        parent_io.pool(),
        child_io.pool()
    );
    let c_parent = cstring("image name", parent)?;
    let c_snap = cstring("snapshot name", snap)?;
    let c_child = cstring("image name", child)?;
    let options = ImageOptions::new(opts, &target)?;
    // SAFETY: live ioctxs and options, C strings.
    let ret = unsafe {
        ffi::rbd_clone3(
            parent_io.as_ptr(),
            c_parent.as_ptr(),
            c_snap.as_ptr(),
            child_io.as_ptr(),
            c_child.as_ptr(),
            options.0,
        )
    };
    check(ret, "rbd_clone3", || target).map(drop)
}

/// Deletes the image and its data (ENOENT if absent; EBUSY while it is open
/// elsewhere, ENOTEMPTY while it has snapshots).
pub fn remove(io: &IoCtx, name: &str) -> Result<(), CephError> {
    let c_name = cstring("image name", name)?;
    // SAFETY: live ioctx, C string.
    let ret = unsafe { ffi::rbd_remove(io.as_ptr(), c_name.as_ptr()) };
    check(ret, "rbd_remove", || format!("{}/{name}", io.pool())).map(drop)
}

/// Deletes the image after all its snapshots, unprotecting the protected
/// ones (ENOENT if the image is absent; EBUSY if a snapshot has clones or
/// the image is open elsewhere).
pub fn remove_with_snapshots(io: &IoCtx, name: &str) -> Result<(), CephError> {
    let image = Image::open(io, name)?;
    for snap in image.snap_list()? {
        if image.snap_is_protected(&snap.name)? {
            image.snap_unprotect(&snap.name)?;
        }
        image.snap_remove(&snap.name)?;
    }
    image.close()?;
    remove(io, name)
}

/// One image of a pool listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    /// librbd's internal id (names the image's objects).
    pub id: String,
    /// The image's name.
    pub name: String,
}

/// Lists the images of the pool.
pub fn list(io: &IoCtx) -> Result<Vec<ImageSpec>, CephError> {
    let mut capacity = 64usize;
    loop {
        let mut specs: Vec<ffi::rbd_image_spec_t> = (0..capacity)
            .map(|_| ffi::rbd_image_spec_t {
                id: ptr::null_mut(),
                name: ptr::null_mut(),
            })
            .collect();
        let mut count = capacity;
        // SAFETY: live ioctx, `capacity` writable entries, in/out count.
        let ret = unsafe { ffi::rbd_list2(io.as_ptr(), specs.as_mut_ptr(), &mut count) };
        if ret == neg(Errno::ERANGE) {
            capacity = count.max(capacity * 2);
            continue;
        }
        check(ret, "rbd_list2", || format!("pool {}", io.pool()))?;
        let count = count.min(capacity);
        let images = specs[..count]
            .iter()
            .map(|spec| ImageSpec {
                id: string_at(spec.id),
                name: string_at(spec.name),
            })
            .collect();
        // SAFETY: the first `count` entries were filled by rbd_list2.
        unsafe { ffi::rbd_image_spec_list_cleanup(specs.as_mut_ptr(), count) };
        return Ok(images);
    }
}

/// The string at `p`, or "" for a null pointer.
fn string_at(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: non-null pointers handed out by librbd are NUL-terminated.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// An open RBD image (`rbd_image_t`), closed when dropped.
///
/// `Image` is `Send` but not `Sync`: a handle may move to another thread,
/// but is used from one thread at a time — librbd serialises its own
/// metadata updates, yet the synchronous calls wrapped here were not meant
/// to be interleaved on one handle (e.g. [`Image::snap_set`] during a read),
/// and the safe contract is the simple one. Open one handle per thread for
/// parallel I/O on the same image (with exclusive-lock, concurrent writers
/// pass the lock back and forth, which is slow).
pub struct Image {
    ptr: ffi::rbd_image_t,
    /// `pool/name`.
    spec: String,
    /// The snapshot the handle reads, if any.
    snap: Option<String>,
    /// Keeps the cluster connected while the image is open.
    _cluster: Rados,
}

// SAFETY: librbd image handles have no thread affinity; `Image` is not Sync,
// so one thread at a time uses it.
unsafe impl Send for Image {}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("image", &self.target())
            .finish()
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: opened by rbd_open*, closed once.
            unsafe { ffi::rbd_close(self.ptr) };
        }
    }
}

/// What [`Image::stat`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// Size in bytes (of the version the handle is at).
    pub size: u64,
    /// Size of one RADOS object of the image.
    pub object_size: u64,
    /// How many objects the image spans.
    pub num_objects: u64,
    /// `object_size` as a power of two.
    pub order: u32,
}

/// One snapshot of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapInfo {
    /// librbd's snapshot id (increasing with creation).
    pub id: u64,
    /// The image's size when the snapshot was taken.
    pub size: u64,
    /// Its name.
    pub name: String,
}

/// How [`Image::diff_iterate`] reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// For a clone diffed from the beginning (`from_snap` = `None`), also
    /// report what it inherits from its parent.
    pub include_parent: bool,
    /// Report whole objects instead of exact extents: coarser, but with the
    /// fast-diff feature it reads the object maps instead of listing the
    /// snapshots of every object, which is much faster on large images.
    pub whole_object: bool,
}

/// One changed extent reported by [`Image::diff_iterate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiffExtent {
    /// Its first byte.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
    /// `true`: it holds data to read; `false`: it is now known to be zeros
    /// (discarded, or the object was removed).
    pub exists: bool,
}

/// Why [`Image::diff_iterate`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum DiffError<E> {
    /// librbd failed.
    #[error(transparent)]
    Ceph(#[from] CephError),
    /// The callback returned this error (the iteration was cancelled).
    #[error("diff callback: {0}")]
    Callback(E),
}

/// What the diff trampoline shares with [`Image::diff_iterate`].
struct DiffState<'f, F, E> {
    callback: &'f mut F,
    error: Option<E>,
    panic: Option<Box<dyn Any + Send + 'static>>,
}

/// The `extern "C"` callback handed to `rbd_diff_iterate2`: calls the Rust
/// closure, keeps its error or panic, and cancels the iteration then (a
/// panic must not unwind through librbd).
unsafe extern "C" fn diff_trampoline<F, E>(
    offset: u64,
    len: usize,
    exists: c_int,
    arg: *mut c_void,
) -> c_int
where
    F: FnMut(DiffExtent) -> Result<(), E>,
{
    // SAFETY: `arg` is the DiffState that diff_iterate keeps alive during
    // the call; librbd invokes the callback once at a time.
    let state = unsafe { &mut *arg.cast::<DiffState<'_, F, E>>() };
    if state.error.is_some() || state.panic.is_some() {
        return neg(Errno::ECANCELED);
    }
    let extent = DiffExtent {
        offset,
        len: len as u64,
        exists: exists != 0,
    };
    match catch_unwind(AssertUnwindSafe(|| (state.callback)(extent))) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            state.error = Some(e);
            neg(Errno::ECANCELED)
        }
        Err(panic) => {
            state.panic = Some(panic);
            neg(Errno::ECANCELED)
        }
    }
}

impl Image {
    /// Opens the image for reading and writing (ENOENT if absent).
    pub fn open(io: &IoCtx, name: &str) -> Result<Image, CephError> {
        Self::open_with(io, name, None, false)
    }

    /// Opens the image read-only, at snapshot `snap` or at its head. A
    /// read-only handle sets no watch on the image, so it does not see
    /// later resizes or snapshots: meant for short reads such as a backup of
    /// a snapshot; writes fail with EROFS.
    pub fn open_read_only(io: &IoCtx, name: &str, snap: Option<&str>) -> Result<Image, CephError> {
        Self::open_with(io, name, snap, true)
    }

    fn open_with(
        io: &IoCtx,
        name: &str,
        snap: Option<&str>,
        read_only: bool,
    ) -> Result<Image, CephError> {
        let spec = format!("{}/{name}", io.pool());
        let c_name = cstring("image name", name)?;
        let c_snap = snap.map(|s| cstring("snapshot name", s)).transpose()?;
        let snap_ptr = c_snap.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        let mut raw: ffi::rbd_image_t = ptr::null_mut();
        let (ret, call) = if read_only {
            // SAFETY: live ioctx, C strings or null, out-pointer.
            (
                unsafe {
                    ffi::rbd_open_read_only(io.as_ptr(), c_name.as_ptr(), &mut raw, snap_ptr)
                },
                "rbd_open_read_only",
            )
        } else {
            // SAFETY: as above.
            (
                unsafe { ffi::rbd_open(io.as_ptr(), c_name.as_ptr(), &mut raw, snap_ptr) },
                "rbd_open",
            )
        };
        let snap = snap.map(str::to_string);
        check(ret, call, || match &snap {
            Some(s) => format!("{spec}@{s}"),
            None => spec.clone(),
        })?;
        Ok(Image {
            ptr: raw,
            spec,
            snap,
            _cluster: io.cluster().clone(),
        })
    }

    /// `pool/name[@snap]`, as errors name the image.
    pub fn target(&self) -> String {
        match &self.snap {
            Some(s) => format!("{}@{s}", self.spec),
            None => self.spec.clone(),
        }
    }

    /// Closes the image, reporting a failure (dropping it closes too, but
    /// silently).
    pub fn close(mut self) -> Result<(), CephError> {
        let raw = std::mem::replace(&mut self.ptr, ptr::null_mut());
        // SAFETY: opened by rbd_open*, closed once (Drop sees null).
        let ret = unsafe { ffi::rbd_close(raw) };
        check(ret, "rbd_close", || self.target()).map(drop)
    }

    /// The size in bytes of the version the handle is at.
    pub fn size(&self) -> Result<u64, CephError> {
        let mut size = 0u64;
        // SAFETY: open image, out-pointer.
        let ret = unsafe { ffi::rbd_get_size(self.ptr, &mut size) };
        check(ret, "rbd_get_size", || self.target())?;
        Ok(size)
    }

    /// Size and object layout.
    pub fn stat(&self) -> Result<ImageInfo, CephError> {
        let mut info = ffi::rbd_image_info_t {
            size: 0,
            obj_size: 0,
            num_objs: 0,
            order: 0,
            block_name_prefix: [0; 24],
            parent_pool: 0,
            parent_name: [0; 96],
        };
        // SAFETY: open image, a struct of the size passed.
        let ret = unsafe {
            ffi::rbd_stat(
                self.ptr,
                &mut info,
                std::mem::size_of::<ffi::rbd_image_info_t>(),
            )
        };
        check(ret, "rbd_stat", || self.target())?;
        Ok(ImageInfo {
            size: info.size,
            object_size: info.obj_size,
            num_objects: info.num_objs,
            order: u32::try_from(info.order).unwrap_or(0),
        })
    }

    /// The image's features.
    pub fn features(&self) -> Result<Features, CephError> {
        let mut bits = 0u64;
        // SAFETY: open image, out-pointer.
        let ret = unsafe { ffi::rbd_get_features(self.ptr, &mut bits) };
        check(ret, "rbd_get_features", || self.target())?;
        Ok(Features(bits))
    }

    /// Stripe unit and stripe count (object size and 1 without striping).
    pub fn striping(&self) -> Result<(u64, u64), CephError> {
        let (mut unit, mut count) = (0u64, 0u64);
        // SAFETY: open image, out-pointers.
        let ret = unsafe { ffi::rbd_get_stripe_unit(self.ptr, &mut unit) };
        check(ret, "rbd_get_stripe_unit", || self.target())?;
        // SAFETY: as above.
        let ret = unsafe { ffi::rbd_get_stripe_count(self.ptr, &mut count) };
        check(ret, "rbd_get_stripe_count", || self.target())?;
        Ok((unit, count))
    }

    /// Grows or shrinks the image to `size` bytes (shrinking discards the
    /// data past it).
    pub fn resize(&self, size: u64) -> Result<(), CephError> {
        // SAFETY: open image.
        let ret = unsafe { ffi::rbd_resize(self.ptr, size) };
        check(ret, "rbd_resize", || {
            format!("{} to {size} bytes", self.target())
        })
        .map(drop)
    }

    /// Copies the parent's data into this clone, so that it no longer
    /// depends on the parent snapshot (which can then be removed).
    pub fn flatten(&self) -> Result<(), CephError> {
        // SAFETY: open image.
        let ret = unsafe { ffi::rbd_flatten(self.ptr) };
        check(ret, "rbd_flatten", || self.target()).map(drop)
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns how many were
    /// read, fewer only when the range crosses the end of the image.
    /// Unwritten and discarded ranges read as zeros. Unlike a file, a read
    /// starting at or past the end fails with EINVAL (librbd's rule).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, CephError> {
        let mut done = 0usize;
        while done < buf.len() {
            let want = (buf.len() - done).min(MAX_CALL_BYTES);
            let at = offset + done as u64;
            // SAFETY: open image, `want` writable bytes.
            let ret = unsafe {
                ffi::rbd_read2(
                    self.ptr,
                    at,
                    want,
                    buf[done..].as_mut_ptr().cast::<c_char>(),
                    0,
                )
            };
            if done > 0 && ret == neg(Errno::EINVAL) as isize {
                // The previous piece ended exactly at the end of the image.
                break;
            }
            let got = check(ret as i64, "rbd_read2", || {
                format!("{} at {at}", self.target())
            })? as usize;
            done += got;
            if got < want {
                break;
            }
        }
        Ok(done)
    }

    /// Writes all of `data` at `offset`. A write reaching past the end of
    /// the image fails (librbd would silently clip it).
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), CephError> {
        let mut done = 0usize;
        while done < data.len() {
            let piece = &data[done..(done + MAX_CALL_BYTES).min(data.len())];
            let at = offset + done as u64;
            // SAFETY: open image, a buffer of piece.len() bytes.
            let ret = unsafe {
                ffi::rbd_write2(
                    self.ptr,
                    at,
                    piece.len(),
                    piece.as_ptr().cast::<c_char>(),
                    0,
                )
            };
            let wrote = check(ret as i64, "rbd_write2", || {
                format!("{} at {at}", self.target())
            })? as usize;
            if wrote < piece.len() {
                return Err(CephError::Short {
                    call: "rbd_write2",
                    target: self.target(),
                    offset: at,
                    asked: piece.len() as u64,
                    done: wrote as u64,
                });
            }
            done += piece.len();
        }
        Ok(())
    }

    /// Writes every `(offset, data)` of `writes`, up to `depth` of them in
    /// flight at once (librbd's asynchronous writes), and returns when all
    /// are done — after a failure too, with the first error. The effect of
    /// [`Image::write`] for each, without a round trip per write: for many
    /// writes to different objects. Writes in flight together may land in
    /// any order: overlapping ones need `depth` 1. A write reaching past the
    /// end of the image is refused before anything is written.
    pub fn write_many(&self, writes: &[(u64, &[u8])], depth: usize) -> Result<(), CephError> {
        let mut pieces = Vec::with_capacity(writes.len());
        for &(offset, data) in writes {
            for (at, from, len) in split_call(offset, data.len()) {
                // Only read through: rbd_aio_write2 takes a const pointer.
                pieces.push((at, data[from..].as_ptr().cast_mut(), len));
            }
        }
        self.aio_many(Aio::Write, pieces, depth)
    }

    /// Fills every `(offset, buf)` of `reads`, up to `depth` reads in flight
    /// at once (librbd's asynchronous reads), and returns when all are done
    /// — after a failure too, with the first error. The effect of
    /// [`Image::read`] for each, without a round trip per read: for many
    /// scattered reads, or large sequential ones overlapped. Unwritten
    /// ranges read as zeros. A read reaching past the end of the image is
    /// refused before anything is read; a read that returns fewer bytes
    /// than asked fails ([`CephError::Short`]).
    pub fn read_many(&self, reads: &mut [(u64, &mut [u8])], depth: usize) -> Result<(), CephError> {
        let mut pieces = Vec::with_capacity(reads.len());
        for (offset, buf) in reads.iter_mut() {
            // One pointer per buffer, offset for each piece: re-borrowing
            // the buffer per piece would invalidate the earlier pointers.
            let base = buf.as_mut_ptr();
            for (at, from, len) in split_call(*offset, buf.len()) {
                pieces.push((at, base.wrapping_add(from), len));
            }
        }
        self.aio_many(Aio::Read, pieces, depth)
    }

    /// Runs `pieces` — `(image offset, buffer, length)`, each at most
    /// [`MAX_CALL_BYTES`] and its buffer borrowed by the caller for the
    /// whole call — as asynchronous `kind` I/Os, up to `depth` in flight,
    /// and waits for all of them. Pieces reaching past the end of the image
    /// are refused before any is started.
    fn aio_many(
        &self,
        kind: Aio,
        pieces: Vec<(u64, *mut u8, usize)>,
        depth: usize,
    ) -> Result<(), CephError> {
        let size = self.size()?;
        if let Some(&(offset, _, len)) = pieces
            .iter()
            .find(|&&(offset, _, len)| offset.saturating_add(len as u64) > size)
        {
            return Err(CephError::Short {
                call: kind.call(),
                target: self.target(),
                offset,
                asked: len as u64,
                done: 0,
            });
        }
        let mut in_flight: VecDeque<(ffi::rbd_completion_t, u64, usize)> = VecDeque::new();
        let mut first_error: Option<CephError> = None;
        for (offset, buf, len) in pieces {
            if in_flight.len() >= depth.max(1) {
                if let Some((completion, at, len)) = in_flight.pop_front() {
                    self.finish_aio(kind, completion, at, len, &mut first_error);
                }
            }
            if first_error.is_some() {
                break;
            }
            match self.start_aio(kind, offset, buf, len) {
                Ok(completion) => in_flight.push_back((completion, offset, len)),
                Err(e) => first_error = Some(e),
            }
        }
        // Every buffer stays borrowed until its I/O is done.
        while let Some((completion, at, len)) = in_flight.pop_front() {
            self.finish_aio(kind, completion, at, len, &mut first_error);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Starts an asynchronous `kind` I/O of `len` bytes at `offset` on
    /// `buf`; the caller keeps `buf` alive (and, for a read, unaliased)
    /// until [`Image::finish_aio`] returns.
    fn start_aio(
        &self,
        kind: Aio,
        offset: u64,
        buf: *mut u8,
        len: usize,
    ) -> Result<ffi::rbd_completion_t, CephError> {
        let mut completion: ffi::rbd_completion_t = ptr::null_mut();
        // SAFETY: no callback, an out-pointer.
        let ret = unsafe { ffi::rbd_aio_create_completion(ptr::null_mut(), None, &mut completion) };
        check(ret, "rbd_aio_create_completion", || self.target())?;
        // SAFETY: open image, a buffer of `len` bytes that the caller keeps
        // alive (and, for a read, writable and unaliased) until the
        // completion is waited for, a fresh completion.
        let ret = unsafe {
            match kind {
                Aio::Read => {
                    ffi::rbd_aio_read2(self.ptr, offset, len, buf.cast::<c_char>(), completion, 0)
                }
                Aio::Write => ffi::rbd_aio_write2(
                    self.ptr,
                    offset,
                    len,
                    buf.cast_const().cast::<c_char>(),
                    completion,
                    0,
                ),
            }
        };
        if ret < 0 {
            // SAFETY: created above, never submitted.
            unsafe { ffi::rbd_aio_release(completion) };
            return Err(CephError::call(
                kind.call(),
                format!("{} at {offset}", self.target()),
                ret.into(),
            ));
        }
        Ok(completion)
    }

    /// Waits for an asynchronous I/O of `len` bytes and releases its
    /// completion, keeping its error (or, for a read, its shortness) if it
    /// is the first.
    fn finish_aio(
        &self,
        kind: Aio,
        completion: ffi::rbd_completion_t,
        offset: u64,
        len: usize,
        first_error: &mut Option<CephError>,
    ) {
        // SAFETY: a submitted completion, waited for and released once.
        let ret = unsafe {
            ffi::rbd_aio_wait_for_complete(completion);
            let ret = ffi::rbd_aio_get_return_value(completion);
            ffi::rbd_aio_release(completion);
            ret
        };
        if first_error.is_some() {
            return;
        }
        if ret < 0 {
            *first_error = Some(CephError::call(
                kind.call(),
                format!("{} at {offset}", self.target()),
                ret as i64,
            ));
        } else if kind == Aio::Read && (ret as usize) < len {
            *first_error = Some(CephError::Short {
                call: kind.call(),
                target: self.target(),
                offset,
                asked: len as u64,
                done: ret as u64,
            });
        }
    }

    /// Discards `len` bytes at `offset`: the range then reads as zeros and
    /// frees its space — except that librbd skips the parts of the range
    /// not aligned to `rbd_discard_granularity_bytes` (64 KiB by default),
    /// which keep their data. Use [`Image::write_zeroes`] to zero
    /// exactly.
    pub fn discard(&self, offset: u64, len: u64) -> Result<(), CephError> {
        let mut done = 0u64;
        while done < len {
            let piece = (len - done).min(MAX_CALL_BYTES as u64);
            let at = offset + done;
            // SAFETY: open image.
            let ret = unsafe { ffi::rbd_discard(self.ptr, at, piece) };
            check(ret, "rbd_discard", || {
                format!("{} at {at}+{piece}", self.target())
            })?;
            done += piece;
        }
        Ok(())
    }

    /// Makes `len` bytes at `offset` read as zeros, exactly (whole objects
    /// are deallocated, partial ones zeroed).
    pub fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), CephError> {
        let mut done = 0u64;
        while done < len {
            let piece = (len - done).min(MAX_CALL_BYTES as u64);
            let at = offset + done;
            // SAFETY: open image.
            let ret = unsafe { ffi::rbd_write_zeroes(self.ptr, at, piece as usize, 0, 0) };
            check(ret as i64, "rbd_write_zeroes", || {
                format!("{} at {at}+{piece}", self.target())
            })?;
            done += piece;
        }
        Ok(())
    }

    /// Waits until the writes made so far are durable (librbd's cache, if
    /// enabled, is written back).
    pub fn flush(&self) -> Result<(), CephError> {
        // SAFETY: open image.
        let ret = unsafe { ffi::rbd_flush(self.ptr) };
        check(ret, "rbd_flush", || self.target()).map(drop)
    }

    /// Calls `op` on the snapshot `name`, naming it in the error.
    fn snap_op(
        &self,
        call: &'static str,
        name: &str,
        op: unsafe extern "C" fn(ffi::rbd_image_t, *const c_char) -> c_int,
    ) -> Result<(), CephError> {
        let c_name = cstring("snapshot name", name)?;
        // SAFETY: open image, C string; `op` is one of librbd's
        // (image, snapshot name) functions.
        let ret = unsafe { op(self.ptr, c_name.as_ptr()) };
        check(ret, call, || format!("{}@{name}", self.spec)).map(drop)
    }

    /// Takes the snapshot `name` of the image's current content (EEXIST if
    /// it exists).
    pub fn snap_create(&self, name: &str) -> Result<(), CephError> {
        self.snap_op("rbd_snap_create", name, ffi::rbd_snap_create)
    }

    /// Deletes the snapshot `name` (EBUSY while protected).
    pub fn snap_remove(&self, name: &str) -> Result<(), CephError> {
        self.snap_op("rbd_snap_remove", name, ffi::rbd_snap_remove)
    }

    /// Protects the snapshot `name` from deletion, as clones of it require
    /// (clone format 1).
    pub fn snap_protect(&self, name: &str) -> Result<(), CephError> {
        self.snap_op("rbd_snap_protect", name, ffi::rbd_snap_protect)
    }

    /// Unprotects the snapshot `name` (EBUSY while it has clones).
    pub fn snap_unprotect(&self, name: &str) -> Result<(), CephError> {
        self.snap_op("rbd_snap_unprotect", name, ffi::rbd_snap_unprotect)
    }

    /// Whether the snapshot `name` is protected.
    pub fn snap_is_protected(&self, name: &str) -> Result<bool, CephError> {
        let c_name = cstring("snapshot name", name)?;
        let mut protected: c_int = 0;
        // SAFETY: open image, C string, out-pointer.
        let ret = unsafe { ffi::rbd_snap_is_protected(self.ptr, c_name.as_ptr(), &mut protected) };
        check(ret, "rbd_snap_is_protected", || {
            format!("{}@{name}", self.spec)
        })?;
        Ok(protected != 0)
    }

    /// The image's snapshots, oldest first.
    pub fn snap_list(&self) -> Result<Vec<SnapInfo>, CephError> {
        let mut capacity: c_int = 16;
        loop {
            // librbd writes up to `capacity` entries, the last one a
            // terminator with a null name.
            let mut snaps: Vec<ffi::rbd_snap_info_t> = (0..capacity)
                .map(|_| ffi::rbd_snap_info_t {
                    id: 0,
                    size: 0,
                    name: ptr::null(),
                })
                .collect();
            let mut max = capacity;
            // SAFETY: open image, `capacity` writable entries, in/out count.
            let ret = unsafe { ffi::rbd_snap_list(self.ptr, snaps.as_mut_ptr(), &mut max) };
            if ret == neg(Errno::ERANGE) {
                capacity = max.max(capacity.saturating_mul(2));
                continue;
            }
            let count = check(ret, "rbd_snap_list", || self.target())? as usize;
            let mut list: Vec<SnapInfo> = snaps[..count.min(snaps.len())]
                .iter()
                .map(|s| SnapInfo {
                    id: s.id,
                    size: s.size,
                    name: string_at(s.name),
                })
                .collect();
            // SAFETY: filled by a successful rbd_snap_list; frees the names.
            unsafe { ffi::rbd_snap_list_end(snaps.as_mut_ptr()) };
            list.sort_by_key(|s| s.id);
            return Ok(list);
        }
    }

    /// Makes the handle read (and diff against) snapshot `snap`, or the
    /// image's head for `None`. While a snapshot is set, writes fail with
    /// EROFS.
    pub fn snap_set(&mut self, snap: Option<&str>) -> Result<(), CephError> {
        let c_snap: Option<CString> = snap.map(|s| cstring("snapshot name", s)).transpose()?;
        let snap_ptr = c_snap.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        // SAFETY: open image, C string or null.
        let ret = unsafe { ffi::rbd_snap_set(self.ptr, snap_ptr) };
        check(ret, "rbd_snap_set", || match snap {
            Some(s) => format!("{}@{s}", self.spec),
            None => self.spec.clone(),
        })?;
        self.snap = snap.map(str::to_string);
        Ok(())
    }

    /// Calls `f` for each extent of `offset..offset + len` that changed
    /// between snapshot `from_snap` and the version this handle is at (its
    /// head, or the snapshot it was opened at or set to with
    /// [`Image::snap_set`]). With `from_snap` = `None` the start is an
    /// empty image: every allocated extent is reported. To diff two
    /// snapshots A then B: `snap_set(Some(B))`, then diff from `Some(A)`.
    ///
    /// Extents come in offset order (object by object), one call at a
    /// time. With Ceph 16 every call was observed on the calling thread,
    /// but librbd's API does not promise it (the per-object results are
    /// librados completions passed through a throttle), hence `F: Send`. An error from `f` cancels the iteration and
    /// is returned as [`DiffError::Callback`]; a panic in `f` cancels it
    /// and resumes unwinding here. Without `whole_object` the extents are
    /// exact to the byte as RADOS recorded the writes.
    pub fn diff_iterate<F, E>(
        &self,
        from_snap: Option<&str>,
        offset: u64,
        len: u64,
        opts: DiffOptions,
        mut f: F,
    ) -> Result<(), DiffError<E>>
    where
        F: FnMut(DiffExtent) -> Result<(), E> + Send,
        E: Send,
    {
        let c_from: Option<CString> = from_snap.map(|s| cstring("snapshot name", s)).transpose()?;
        let from_ptr = c_from.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        let mut state = DiffState {
            callback: &mut f,
            error: None,
            panic: None,
        };
        let arg: *mut DiffState<'_, F, E> = &mut state;
        // SAFETY: open image, C string or null; the trampoline matches F and
        // E, and `state` outlives the call, which returns only once every
        // callback has finished.
        let ret = unsafe {
            ffi::rbd_diff_iterate2(
                self.ptr,
                from_ptr,
                offset,
                len,
                u8::from(opts.include_parent),
                u8::from(opts.whole_object),
                Some(diff_trampoline::<F, E>),
                arg.cast::<c_void>(),
            )
        };
        if let Some(panic) = state.panic.take() {
            resume_unwind(panic);
        }
        if let Some(e) = state.error.take() {
            return Err(DiffError::Callback(e));
        }
        check(ret, "rbd_diff_iterate2", || {
            format!(
                "{} from {}",
                self.target(),
                from_snap.unwrap_or("the beginning")
            )
        })?;
        Ok(())
    }

    /// Every changed extent of the whole image since `from_snap` (see
    /// [`Image::diff_iterate`]).
    pub fn diff(
        &self,
        from_snap: Option<&str>,
        opts: DiffOptions,
    ) -> Result<Vec<DiffExtent>, CephError> {
        let size = self.size()?;
        let mut extents = Vec::new();
        let result = self.diff_iterate(from_snap, 0, size, opts, |extent| {
            extents.push(extent);
            Ok::<(), std::convert::Infallible>(())
        });
        match result {
            Ok(()) => Ok(extents),
            Err(DiffError::Ceph(e)) => Err(e),
            Err(DiffError::Callback(never)) => match never {},
        }
    }
}

/// Writes that return before they are done: each is copied into a buffer
/// of the queue's own and handed to librbd asynchronously, up to `depth`
/// writes and `max_bytes` bytes in flight; a write waits only when either
/// is reached. For a writer that
/// produces its data piece by piece (a restore) and would otherwise wait a
/// round trip to the cluster for each.
///
/// A failed write is reported by a later [`WriteQueue::write`] or by
/// [`WriteQueue::drain`] (then the queue refuses further writes); dropping
/// the queue waits for the writes in flight and ignores their errors.
/// Writes in flight together may land in any order: give overlapping
/// writes their own [`WriteQueue::drain`].
pub struct WriteQueue {
    /// Declared before the image: waited for before it is closed.
    in_flight: InFlight,
    image: Image,
    /// The image's size: writes past it are refused (librbd would clip).
    size: u64,
    depth: usize,
    max_bytes: usize,
    /// Bytes of the writes in flight.
    bytes: usize,
    /// Buffers of finished writes, to copy the next ones into.
    spare: Vec<Vec<u8>>,
    first_error: Option<CephError>,
}

/// Asynchronous writes in flight: completions with their offsets and the
/// buffers they write from. Dropped, it waits for each (librbd reads the
/// buffers until the write is done).
struct InFlight(VecDeque<(ffi::rbd_completion_t, u64, Vec<u8>)>);

// SAFETY: the completions are librbd objects without thread affinity, the
// buffers are owned; like an `Image`, the queue that holds them is used by
// one thread at a time.
unsafe impl Send for InFlight {}

impl Drop for InFlight {
    fn drop(&mut self) {
        for (completion, _, _) in self.0.drain(..) {
            // SAFETY: a submitted completion, waited for and released once.
            unsafe {
                ffi::rbd_aio_wait_for_complete(completion);
                ffi::rbd_aio_release(completion);
            }
        }
    }
}

impl std::fmt::Debug for WriteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteQueue")
            .field("image", &self.image.target())
            .field("in_flight", &self.in_flight.0.len())
            .finish()
    }
}

impl WriteQueue {
    /// A queue writing to `image`, up to `depth` writes and `max_bytes`
    /// bytes in flight (always at least one write, whatever its size).
    pub fn new(image: Image, depth: usize, max_bytes: usize) -> Result<Self, CephError> {
        let size = image.size()?;
        Ok(WriteQueue {
            image,
            size,
            depth: depth.max(1),
            max_bytes,
            bytes: 0,
            in_flight: InFlight(VecDeque::new()),
            spare: Vec::new(),
            first_error: None,
        })
    }

    /// The image, for calls that do not overlap the queued writes (zeroing
    /// other ranges, reading its size).
    pub fn image(&self) -> &Image {
        &self.image
    }

    /// Starts writing a copy of `data` at `offset`, first waiting for the
    /// oldest writes while `depth` are in flight or it would take the bytes
    /// in flight past `max_bytes`. Fails with the error of
    /// an earlier write, or at once for a write reaching past the end of
    /// the image.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), CephError> {
        if offset.saturating_add(data.len() as u64) > self.size {
            return Err(CephError::Short {
                call: Aio::Write.call(),
                target: self.image.target(),
                offset,
                asked: data.len() as u64,
                done: 0,
            });
        }
        for (at, from, len) in split_call(offset, data.len()) {
            while !self.in_flight.0.is_empty()
                && (self.in_flight.0.len() >= self.depth || self.bytes + len > self.max_bytes)
            {
                self.finish_oldest();
            }
            if let Some(e) = &self.first_error {
                return Err(e.clone());
            }
            let mut buf = self.spare.pop().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(&data[from..from + len]);
            let completion = match self.image.start_aio(Aio::Write, at, buf.as_mut_ptr(), len) {
                Ok(completion) => completion,
                Err(e) => {
                    self.first_error = Some(e.clone());
                    return Err(e);
                }
            };
            self.bytes += len;
            self.in_flight.0.push_back((completion, at, buf));
        }
        Ok(())
    }

    /// Waits for every write in flight; the first error of any write so
    /// far, if one failed.
    pub fn drain(&mut self) -> Result<(), CephError> {
        while !self.in_flight.0.is_empty() {
            self.finish_oldest();
        }
        match &self.first_error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Drains the queue ([`WriteQueue::drain`]) and hands the image back.
    pub fn into_image(mut self) -> Result<Image, CephError> {
        self.drain()?;
        Ok(self.image)
    }

    /// Waits for the oldest write in flight and keeps its buffer.
    fn finish_oldest(&mut self) {
        if let Some((completion, at, buf)) = self.in_flight.0.pop_front() {
            self.bytes -= buf.len();
            self.image
                .finish_aio(Aio::Write, completion, at, buf.len(), &mut self.first_error);
            self.spare.push(buf);
        }
    }
}

/// The version of the librbd the program runs with (major, minor, extra);
/// all zeros in a build without it.
pub fn rbd_version() -> (i32, i32, i32) {
    let (mut major, mut minor, mut extra) = (0, 0, 0);
    // SAFETY: three out-pointers.
    unsafe { ffi::rbd_version(&mut major, &mut minor, &mut extra) };
    (major, minor, extra)
}
