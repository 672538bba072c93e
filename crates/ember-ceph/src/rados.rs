//! librados: connecting to a cluster and objects in a pool.

use std::ffi::{c_char, c_int, CStr, CString};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::ptr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;

use crate::error::{check, cstring, neg, CephError};
use crate::{ffi, LINKED};

/// The largest transfer handed to one librados call: its return value is a
/// C `int` (bytes moved), so larger requests are split.
const MAX_CALL_BYTES: usize = 1 << 30;

/// How to reach a Ceph cluster and which pool to use: what Cinder's
/// `rbd_ceph_conf`, `rbd_user`, `rbd_keyring_conf` and `rbd_pool` say.
#[derive(Clone, Debug)]
pub struct CephConfig {
    /// The `ceph.conf` to read (monitors, default keyring, options).
    pub conf_path: PathBuf,
    /// The cephx user, `admin` or `client.admin` alike.
    pub user: String,
    /// A keyring holding the user's key, instead of the one the conf file
    /// names.
    pub keyring: Option<PathBuf>,
    /// The pool [`CephConfig::connect`] opens.
    pub pool: String,
    /// How long connecting, and each monitor operation, may take before
    /// failing with ETIMEDOUT (`client_mount_timeout`,
    /// `rados_mon_op_timeout`): a wrong `mon host` fails in this time
    /// rather than blocking for librados' default of 5 minutes.
    pub connect_timeout: Duration,
    /// How long an OSD operation may take before failing with ETIMEDOUT
    /// (`rados_osd_op_timeout`); `None` keeps the conf file's value (by
    /// default librados waits for ever, e.g. on a full cluster).
    pub osd_op_timeout: Option<Duration>,
    /// Further `ceph.conf` options to set, after the file is read.
    pub options: Vec<(String, String)>,
}

impl CephConfig {
    /// A configuration for `user` on `pool` from the conf file at
    /// `conf_path`, with a 10 s connect timeout.
    pub fn new(
        conf_path: impl Into<PathBuf>,
        user: impl Into<String>,
        pool: impl Into<String>,
    ) -> Self {
        CephConfig {
            conf_path: conf_path.into(),
            user: user.into(),
            keyring: None,
            pool: pool.into(),
            connect_timeout: Duration::from_secs(10),
            osd_op_timeout: None,
            options: Vec::new(),
        }
    }

    /// The same configuration with the keyring at `path`.
    pub fn with_keyring(mut self, path: impl Into<PathBuf>) -> Self {
        self.keyring = Some(path.into());
        self
    }

    /// The same configuration with another connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The same configuration with `option` set to `value`.
    pub fn with_option(mut self, option: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.push((option.into(), value.into()));
        self
    }

    /// The cephx entity name: `client.` and the user, unless the user has
    /// it already.
    pub fn client_name(&self) -> String {
        if self.user.starts_with("client.") {
            self.user.clone()
        } else {
            format!("client.{}", self.user)
        }
    }

    /// Connects to the cluster and opens the pool: fails here, with the
    /// cause named, on a wrong user or key, an unreachable cluster or a
    /// missing pool.
    pub fn connect(&self) -> Result<IoCtx, CephError> {
        self.connect_cluster()?.ioctx(&self.pool)
    }

    /// Connects to the cluster only (for opening several pools).
    pub fn connect_cluster(&self) -> Result<Rados, CephError> {
        Rados::connect(self)
    }
}

/// A connected cluster handle (`rados_t`); cheap to clone, shut down when
/// the last clone and every [`IoCtx`] and image opened through it are gone.
///
/// librados handles are thread-safe: `Rados` is `Send` and `Sync`.
#[derive(Clone)]
pub struct Rados {
    handle: Arc<ClusterHandle>,
}

/// Owns the `rados_t`.
struct ClusterHandle {
    ptr: ffi::rados_t,
    /// `client.NAME` and the conf file, for messages.
    describe: String,
}

// SAFETY: librados' cluster handle is internally synchronised and may be
// used from any thread, by several at once.
unsafe impl Send for ClusterHandle {}
unsafe impl Sync for ClusterHandle {}

impl Drop for ClusterHandle {
    fn drop(&mut self) {
        // SAFETY: the handle came from rados_create2 and is shut down once;
        // shutting down also frees a handle whose connect failed.
        unsafe { ffi::rados_shutdown(self.ptr) }
    }
}

impl std::fmt::Debug for Rados {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rados")
            .field("client", &self.handle.describe)
            .finish()
    }
}

/// A duration as librados reads it: seconds, at least 1.
fn seconds(d: Duration) -> String {
    d.as_secs().max(1).to_string()
}

impl Rados {
    /// Creates the handle, reads the conf file, applies the keyring,
    /// timeouts and options, and connects.
    pub fn connect(config: &CephConfig) -> Result<Rados, CephError> {
        let name = config.client_name();
        let conf = config.conf_path.display().to_string();
        let mut describe = format!("{name} (conf {conf}");
        if let Some(keyring) = &config.keyring {
            describe.push_str(&format!(", keyring {}", keyring.display()));
        }
        describe.push(')');

        let c_name = cstring("client name", &name)?;
        let c_cluster = cstring("cluster name", "ceph")?;
        let mut ptr: ffi::rados_t = ptr::null_mut();
        // SAFETY: valid C strings and an out-pointer.
        let ret = unsafe { ffi::rados_create2(&mut ptr, c_cluster.as_ptr(), c_name.as_ptr(), 0) };
        check(ret, "rados_create2", || name.clone())?;
        // From here on the handle is shut down on every path.
        let handle = ClusterHandle { ptr, describe };

        let c_conf = cstring("conf path", &conf)?;
        // SAFETY: the handle is live, the path a C string.
        let ret = unsafe { ffi::rados_conf_read_file(handle.ptr, c_conf.as_ptr()) };
        check(ret, "rados_conf_read_file", || conf.clone())?;

        let mut options: Vec<(String, String)> = Vec::new();
        if let Some(keyring) = &config.keyring {
            options.push(("keyring".into(), keyring.display().to_string()));
        }
        let connect = seconds(config.connect_timeout);
        options.push(("client_mount_timeout".into(), connect.clone()));
        options.push(("rados_mon_op_timeout".into(), connect));
        if let Some(timeout) = config.osd_op_timeout {
            options.push(("rados_osd_op_timeout".into(), seconds(timeout)));
        }
        options.extend(config.options.iter().cloned());
        for (option, value) in &options {
            let c_option = cstring("option", option)?;
            let c_value = cstring("option value", value)?;
            // SAFETY: the handle is live (not yet connected), C strings.
            let ret =
                unsafe { ffi::rados_conf_set(handle.ptr, c_option.as_ptr(), c_value.as_ptr()) };
            check(ret, "rados_conf_set", || format!("{option}={value}"))?;
        }

        // SAFETY: the handle is live and configured.
        let ret = unsafe { ffi::rados_connect(handle.ptr) };
        check(ret, "rados_connect", || handle.describe.clone())?;
        Ok(Rados {
            handle: Arc::new(handle),
        })
    }

    /// Opens an I/O context on `pool`; ENOENT if the pool does not exist.
    pub fn ioctx(&self, pool: &str) -> Result<IoCtx, CephError> {
        let c_pool = cstring("pool name", pool)?;
        let mut ptr: ffi::rados_ioctx_t = ptr::null_mut();
        // SAFETY: the cluster is connected, the name a C string.
        let ret = unsafe { ffi::rados_ioctx_create(self.handle.ptr, c_pool.as_ptr(), &mut ptr) };
        check(ret, "rados_ioctx_create", || {
            format!("pool {pool} as {}", self.handle.describe)
        })?;
        Ok(IoCtx {
            ptr,
            pool: pool.to_string(),
            cluster: self.clone(),
        })
    }
}

/// An I/O context on one pool (`rados_ioctx_t`): objects, and the pool in
/// which [`crate::rbd`] creates and opens images.
///
/// librados allows concurrent operations on one I/O context; changing its
/// snapshot, namespace or locator is not thread-safe, and these bindings
/// offer none of that, so `IoCtx` is `Send` and `Sync`.
pub struct IoCtx {
    ptr: ffi::rados_ioctx_t,
    pool: String,
    cluster: Rados,
}

// SAFETY: see the type's documentation: only thread-safe librados calls are
// made through the handle.
unsafe impl Send for IoCtx {}
unsafe impl Sync for IoCtx {}

impl Drop for IoCtx {
    fn drop(&mut self) {
        // SAFETY: created by rados_ioctx_create, destroyed once, before the
        // cluster handle it holds is released.
        unsafe { ffi::rados_ioctx_destroy(self.ptr) }
    }
}

impl std::fmt::Debug for IoCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoCtx").field("pool", &self.pool).finish()
    }
}

/// What [`IoCtx::stat`] reports of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectStat {
    /// Its size in bytes.
    pub size: u64,
    /// When it was last modified (whole seconds).
    pub mtime: SystemTime,
}

impl IoCtx {
    /// The pool's name.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// The cluster the pool belongs to.
    pub fn cluster(&self) -> &Rados {
        &self.cluster
    }

    /// The raw handle, for librbd.
    pub(crate) fn as_ptr(&self) -> ffi::rados_ioctx_t {
        self.ptr
    }

    /// `pool/object`, for messages.
    fn target(&self, oid: &str) -> String {
        format!("{}/{}", self.pool, oid)
    }

    /// Replaces the object's whole content with `data`, creating it if
    /// needed, atomically: readers see the old or the new content. Objects
    /// larger than the OSDs' `osd_max_write_size` (90 MiB by default) are
    /// refused.
    pub fn write_full(&self, oid: &str, data: &[u8]) -> Result<(), CephError> {
        let c_oid = cstring("object name", oid)?;
        // SAFETY: live ioctx, C string, and a buffer of data.len() bytes.
        let ret = unsafe {
            ffi::rados_write_full(
                self.ptr,
                c_oid.as_ptr(),
                data.as_ptr().cast::<c_char>(),
                data.len(),
            )
        };
        check(ret, "rados_write_full", || self.target(oid)).map(drop)
    }

    /// Writes `data` at `offset` of the object, creating it if needed.
    pub fn write(&self, oid: &str, offset: u64, data: &[u8]) -> Result<(), CephError> {
        let c_oid = cstring("object name", oid)?;
        let mut done = 0usize;
        loop {
            let piece = &data[done..(done + MAX_CALL_BYTES).min(data.len())];
            let at = offset + done as u64;
            // SAFETY: live ioctx, C string, and a buffer of piece.len() bytes.
            let ret = unsafe {
                ffi::rados_write(
                    self.ptr,
                    c_oid.as_ptr(),
                    piece.as_ptr().cast::<c_char>(),
                    piece.len(),
                    at,
                )
            };
            check(ret, "rados_write", || self.target(oid))?;
            done += piece.len();
            if done >= data.len() {
                return Ok(());
            }
        }
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns how many were
    /// read, fewer only at the end of the object (0 past it).
    pub fn read(&self, oid: &str, offset: u64, buf: &mut [u8]) -> Result<usize, CephError> {
        let c_oid = cstring("object name", oid)?;
        let mut done = 0usize;
        while done < buf.len() {
            let want = (buf.len() - done).min(MAX_CALL_BYTES);
            let at = offset + done as u64;
            // SAFETY: live ioctx, C string, and `want` writable bytes.
            let ret = unsafe {
                ffi::rados_read(
                    self.ptr,
                    c_oid.as_ptr(),
                    buf[done..].as_mut_ptr().cast::<c_char>(),
                    want,
                    at,
                )
            };
            let got = check(ret, "rados_read", || self.target(oid))? as usize;
            done += got;
            if got < want {
                break;
            }
        }
        Ok(done)
    }

    /// Reads the whole object.
    pub fn read_full(&self, oid: &str) -> Result<Vec<u8>, CephError> {
        let size = self.stat(oid)?.size;
        // One byte more than the size shows whether it grew meanwhile.
        let mut buf = vec![0u8; usize::try_from(size).unwrap_or(usize::MAX - 1) + 1];
        let mut len = self.read(oid, 0, &mut buf)?;
        while len == buf.len() {
            buf.resize(buf.len() * 2, 0);
            len += self.read(oid, len as u64, &mut buf[len..])?;
        }
        buf.truncate(len);
        Ok(buf)
    }

    /// The object's size and modification time; ENOENT if it does not
    /// exist.
    pub fn stat(&self, oid: &str) -> Result<ObjectStat, CephError> {
        let c_oid = cstring("object name", oid)?;
        let mut size = 0u64;
        let mut mtime = 0i64;
        // SAFETY: live ioctx, C string, out-pointers.
        let ret = unsafe { ffi::rados_stat(self.ptr, c_oid.as_ptr(), &mut size, &mut mtime) };
        check(ret, "rados_stat", || self.target(oid))?;
        let mtime = UNIX_EPOCH + Duration::from_secs(u64::try_from(mtime).unwrap_or(0));
        Ok(ObjectStat { size, mtime })
    }

    /// Deletes the object; ENOENT if it does not exist.
    pub fn remove(&self, oid: &str) -> Result<(), CephError> {
        let c_oid = cstring("object name", oid)?;
        // SAFETY: live ioctx, C string.
        let ret = unsafe { ffi::rados_remove(self.ptr, c_oid.as_ptr()) };
        check(ret, "rados_remove", || self.target(oid)).map(drop)
    }

    /// Sets the extended attribute `name` of the object to `value`.
    pub fn set_xattr(&self, oid: &str, name: &str, value: &[u8]) -> Result<(), CephError> {
        let c_oid = cstring("object name", oid)?;
        let c_name = cstring("xattr name", name)?;
        // SAFETY: live ioctx, C strings, and a buffer of value.len() bytes.
        let ret = unsafe {
            ffi::rados_setxattr(
                self.ptr,
                c_oid.as_ptr(),
                c_name.as_ptr(),
                value.as_ptr().cast::<c_char>(),
                value.len(),
            )
        };
        check(ret, "rados_setxattr", || {
            format!("{} xattr {name}", self.target(oid))
        })
        .map(drop)
    }

    /// The value of the object's extended attribute `name` (ENODATA if the
    /// object has no such attribute).
    pub fn get_xattr(&self, oid: &str, name: &str) -> Result<Vec<u8>, CephError> {
        let c_oid = cstring("object name", oid)?;
        let c_name = cstring("xattr name", name)?;
        let mut buf = vec![0u8; 256];
        loop {
            // SAFETY: live ioctx, C strings, and buf.len() writable bytes.
            let ret = unsafe {
                ffi::rados_getxattr(
                    self.ptr,
                    c_oid.as_ptr(),
                    c_name.as_ptr(),
                    buf.as_mut_ptr().cast::<c_char>(),
                    buf.len(),
                )
            };
            if ret == neg(Errno::ERANGE) && buf.len() < MAX_CALL_BYTES {
                buf.resize(buf.len() * 16, 0);
                continue;
            }
            let len = check(ret, "rados_getxattr", || {
                format!("{} xattr {name}", self.target(oid))
            })? as usize;
            buf.truncate(len);
            return Ok(buf);
        }
    }

    /// Takes the exclusive advisory lock `name` of the object (Ceph's
    /// `cls_lock`, as `rados lock` uses), creating an empty object if there
    /// is none, for `duration`: the OSD drops the lock that long after it
    /// was taken or last renewed, by the OSD's own clock, so a holder that
    /// dies loses it within `duration`. The holder is this cluster handle
    /// with `cookie`.
    ///
    /// EBUSY if another holder has it. With `renew`, renews the lock this
    /// holder has instead, and fails with ENOENT if it no longer has it
    /// (it expired or was broken) rather than taking it afresh.
    pub fn lock_exclusive(
        &self,
        oid: &str,
        name: &str,
        cookie: &str,
        description: &str,
        duration: Duration,
        renew: bool,
    ) -> Result<(), CephError> {
        let c_oid = cstring("object name", oid)?;
        let c_name = cstring("lock name", name)?;
        let c_cookie = cstring("lock cookie", cookie)?;
        let c_desc = cstring("lock description", description)?;
        let mut tv = nix::libc::timeval {
            tv_sec: duration
                .as_secs()
                .try_into()
                .unwrap_or(nix::libc::time_t::MAX),
            tv_usec: duration.subsec_micros().into(),
        };
        let flags = if renew {
            ffi::LIBRADOS_LOCK_FLAG_MUST_RENEW
        } else {
            0
        };
        // SAFETY: live ioctx, C strings, and a timeval read during the call.
        let ret = unsafe {
            ffi::rados_lock_exclusive(
                self.ptr,
                c_oid.as_ptr(),
                c_name.as_ptr(),
                c_cookie.as_ptr(),
                c_desc.as_ptr(),
                &mut tv,
                flags,
            )
        };
        check(ret, "rados_lock_exclusive", || {
            format!("{} lock {name}", self.target(oid))
        })
        .map(drop)
    }

    /// The current holders of the advisory lock `name` of the object
    /// (expired ones are left out); ENOENT if the object does not exist.
    pub fn list_lockers(&self, oid: &str, name: &str) -> Result<Vec<Locker>, CephError> {
        let c_oid = cstring("object name", oid)?;
        let c_name = cstring("lock name", name)?;
        // Tag, clients, cookies, addresses: librados says how long each must
        // be when one is too short (ERANGE); they then grow to that.
        let mut sizes = [256usize; 4];
        loop {
            let mut bufs = sizes.map(|len| vec![0u8; len]);
            let mut lens = sizes;
            let mut exclusive: c_int = 0;
            let [tag, clients, cookies, addrs] = &mut bufs;
            let [tag_len, clients_len, cookies_len, addrs_len] = &mut lens;
            // SAFETY: live ioctx, C strings, and four buffers whose lengths
            // are passed beside them (librados updates the lengths).
            let ret = unsafe {
                ffi::rados_list_lockers(
                    self.ptr,
                    c_oid.as_ptr(),
                    c_name.as_ptr(),
                    &mut exclusive,
                    tag.as_mut_ptr().cast::<c_char>(),
                    tag_len,
                    clients.as_mut_ptr().cast::<c_char>(),
                    clients_len,
                    cookies.as_mut_ptr().cast::<c_char>(),
                    cookies_len,
                    addrs.as_mut_ptr().cast::<c_char>(),
                    addrs_len,
                )
            };
            if ret == neg(Errno::ERANGE) as isize {
                for (size, needed) in sizes.iter_mut().zip(lens) {
                    *size = needed.max(*size);
                }
                continue;
            }
            let count = check(ret as i64, "rados_list_lockers", || {
                format!("{} lock {name}", self.target(oid))
            })? as usize;
            // Each buffer holds `count` NUL-terminated strings.
            let strings = |buf: &[u8], len: usize| -> Vec<String> {
                buf[..len.min(buf.len())]
                    .split(|&b| b == 0)
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .take(count)
                    .collect()
            };
            let clients = strings(clients, lens[1]);
            let cookies = strings(cookies, lens[2]);
            let addrs = strings(addrs, lens[3]);
            return Ok(clients
                .into_iter()
                .zip(cookies)
                .zip(addrs)
                .map(|((client, cookie), address)| Locker {
                    client,
                    cookie,
                    address,
                })
                .collect());
        }
    }

    /// Lists the names of the pool's objects (in its default namespace), in
    /// no particular order. The list is not a snapshot: objects created or
    /// removed meanwhile may or may not appear. A failure is reported as an
    /// `Err` item, after which the iterator ends: a listing never ends
    /// short without saying so.
    pub fn list_objects(&self) -> Result<ObjectList<'_>, CephError> {
        let mut ctx: ffi::rados_list_ctx_t = ptr::null_mut();
        // SAFETY: live ioctx, out-pointer.
        let ret = unsafe { ffi::rados_nobjects_list_open(self.ptr, &mut ctx) };
        check(ret, "rados_nobjects_list_open", || {
            format!("pool {}", self.pool)
        })?;
        Ok(ObjectList { ioctx: self, ctx })
    }
}

/// One holder of an advisory lock ([`IoCtx::list_lockers`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locker {
    /// The holding client instance, e.g. `client.4121`.
    pub client: String,
    /// The cookie it locked with.
    pub cookie: String,
    /// Its network address.
    pub address: String,
}

/// How a compound operation compares an extended attribute with a value:
/// as byte strings, an absent attribute comparing as empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrCmp {
    /// The attribute equals the value.
    Eq,
    /// The attribute differs from the value.
    Ne,
}

impl XattrCmp {
    fn raw(self) -> u8 {
        match self {
            XattrCmp::Eq => ffi::LIBRADOS_CMPXATTR_OP_EQ,
            XattrCmp::Ne => ffi::LIBRADOS_CMPXATTR_OP_NE,
        }
    }
}

/// The C strings and the first invalid argument of an operation being
/// built: builder steps cannot fail, `operate` reports the error.
#[derive(Default)]
struct OpArgs {
    /// Kept until the operation is released.
    strings: Vec<CString>,
    error: Option<CephError>,
}

impl OpArgs {
    /// `s` as a C string that lives as long as the operation; null (and the
    /// error recorded) if it holds a NUL byte.
    fn c_str(&mut self, what: &'static str, s: &str) -> *const c_char {
        match cstring(what, s) {
            Ok(c) => {
                // The string's heap buffer does not move with the CString.
                let ptr = c.as_ptr();
                self.strings.push(c);
                ptr
            }
            Err(e) => {
                self.error.get_or_insert(e);
                ptr::null()
            }
        }
    }
}

/// A new operation handle from `create`, or the error of a failed
/// allocation (ENOSYS in a build without librados).
fn new_op(
    call: &'static str,
    create: unsafe extern "C" fn() -> *mut std::ffi::c_void,
) -> Result<*mut std::ffi::c_void, CephError> {
    // SAFETY: the constructor takes no arguments.
    let ptr = unsafe { create() };
    if ptr.is_null() {
        let errno = if LINKED { Errno::ENOMEM } else { Errno::ENOSYS };
        return Err(CephError::call(call, "new operation", neg(errno).into()));
    }
    Ok(ptr)
}

/// A compound write on one object, applied atomically by
/// [`WriteOp::operate`]: every step takes effect or none does. A failed
/// comparison fails the whole operation with ECANCELED
/// ([`CephError::is_canceled`]), a failed existence check with ENOENT, an
/// exclusive create of an existing object with EEXIST.
///
/// This is how a check and a change become one step: "remove the object if
/// its attribute still holds what was read", "write this piece only if the
/// object still exists". Built by value: `WriteOp::new()?.assert_exists()
/// .remove().operate(&io, "obj")`.
pub struct WriteOp<'a> {
    ptr: ffi::rados_write_op_t,
    args: OpArgs,
    /// Data buffers are borrowed until the operation is done.
    _data: PhantomData<&'a [u8]>,
}

impl Drop for WriteOp<'_> {
    fn drop(&mut self) {
        // SAFETY: created by rados_create_write_op, released once.
        unsafe { ffi::rados_release_write_op(self.ptr) }
    }
}

impl<'a> WriteOp<'a> {
    /// An empty operation.
    pub fn new() -> Result<Self, CephError> {
        Ok(WriteOp {
            ptr: new_op("rados_create_write_op", ffi::rados_create_write_op)?,
            args: OpArgs::default(),
            _data: PhantomData,
        })
    }

    /// Fails the operation (ENOENT) unless the object exists.
    pub fn assert_exists(self) -> Self {
        // SAFETY: a live operation.
        unsafe { ffi::rados_write_op_assert_exists(self.ptr) };
        self
    }

    /// Creates the object; with `exclusive`, fails the operation (EEXIST)
    /// if it exists already.
    pub fn create(self, exclusive: bool) -> Self {
        let exclusive = if exclusive {
            ffi::LIBRADOS_CREATE_EXCLUSIVE
        } else {
            0
        };
        // SAFETY: a live operation; the category is unused by Ceph.
        unsafe { ffi::rados_write_op_create(self.ptr, exclusive, ptr::null()) };
        self
    }

    /// Fails the operation (ECANCELED) unless the attribute `name`
    /// compares to `value` as `cmp` says.
    pub fn cmp_xattr(mut self, name: &str, cmp: XattrCmp, value: &'a [u8]) -> Self {
        let c_name = self.args.c_str("xattr name", name);
        if !c_name.is_null() {
            // SAFETY: a live operation, a C string kept with it, and a value
            // borrowed for the operation's lifetime.
            unsafe {
                ffi::rados_write_op_cmpxattr(
                    self.ptr,
                    c_name,
                    cmp.raw(),
                    value.as_ptr().cast::<c_char>(),
                    value.len(),
                )
            };
        }
        self
    }

    /// Sets the attribute `name` to `value`.
    pub fn set_xattr(mut self, name: &str, value: &'a [u8]) -> Self {
        let c_name = self.args.c_str("xattr name", name);
        if !c_name.is_null() {
            // SAFETY: as in cmp_xattr.
            unsafe {
                ffi::rados_write_op_setxattr(
                    self.ptr,
                    c_name,
                    value.as_ptr().cast::<c_char>(),
                    value.len(),
                )
            };
        }
        self
    }

    /// Writes `data` at `offset`.
    pub fn write(self, offset: u64, data: &'a [u8]) -> Self {
        // SAFETY: a live operation and data borrowed for its lifetime.
        unsafe {
            ffi::rados_write_op_write(self.ptr, data.as_ptr().cast::<c_char>(), data.len(), offset)
        };
        self
    }

    /// Replaces the object's data with `data` (its attributes stay).
    pub fn write_full(self, data: &'a [u8]) -> Self {
        // SAFETY: as in write.
        unsafe {
            ffi::rados_write_op_write_full(self.ptr, data.as_ptr().cast::<c_char>(), data.len())
        };
        self
    }

    /// Removes the object.
    pub fn remove(self) -> Self {
        // SAFETY: a live operation.
        unsafe { ffi::rados_write_op_remove(self.ptr) };
        self
    }

    /// Applies every step to object `oid` of `io`'s pool, atomically; the
    /// object's modification time becomes this client's clock.
    pub fn operate(mut self, io: &IoCtx, oid: &str) -> Result<(), CephError> {
        if let Some(e) = self.args.error.take() {
            return Err(e);
        }
        let c_oid = cstring("object name", oid)?;
        // SAFETY: a live operation whose strings and buffers outlive the
        // call, a live ioctx, a C string; a null mtime means "now".
        let ret = unsafe {
            ffi::rados_write_op_operate(self.ptr, io.ptr, c_oid.as_ptr(), ptr::null_mut(), 0)
        };
        check(ret, "rados_write_op_operate", || io.target(oid)).map(drop)
    }
}

/// A compound read of one object, done by [`ReadOp::operate`] in one round
/// trip: a failed comparison fails it with ECANCELED and reads nothing.
/// E.g. "read this range, if the object is committed".
pub struct ReadOp<'a> {
    ptr: ffi::rados_read_op_t,
    args: OpArgs,
    /// Per read step, at a stable address: the bytes read and the step's
    /// own result, written by librados during `operate`. Boxed because
    /// librados keeps pointers to them: the vector's own storage moves as
    /// it grows.
    #[allow(clippy::vec_box)]
    reads: Vec<Box<(usize, c_int)>>,
    /// Read buffers are borrowed until the operation is done.
    _bufs: PhantomData<&'a mut [u8]>,
}

impl Drop for ReadOp<'_> {
    fn drop(&mut self) {
        // SAFETY: created by rados_create_read_op, released once.
        unsafe { ffi::rados_release_read_op(self.ptr) }
    }
}

impl<'a> ReadOp<'a> {
    /// An empty operation.
    pub fn new() -> Result<Self, CephError> {
        Ok(ReadOp {
            ptr: new_op("rados_create_read_op", ffi::rados_create_read_op)?,
            args: OpArgs::default(),
            reads: Vec::new(),
            _bufs: PhantomData,
        })
    }

    /// Fails the operation (ECANCELED) unless the attribute `name`
    /// compares to `value` as `cmp` says.
    pub fn cmp_xattr(mut self, name: &str, cmp: XattrCmp, value: &'a [u8]) -> Self {
        let c_name = self.args.c_str("xattr name", name);
        if !c_name.is_null() {
            // SAFETY: a live operation, a C string kept with it, and a value
            // borrowed for the operation's lifetime.
            unsafe {
                ffi::rados_read_op_cmpxattr(
                    self.ptr,
                    c_name,
                    cmp.raw(),
                    value.as_ptr().cast::<c_char>(),
                    value.len(),
                )
            };
        }
        self
    }

    /// Reads up to `buf.len()` bytes from `offset` into `buf`; `operate`
    /// returns how many were read (fewer only at the end of the object).
    pub fn read(mut self, offset: u64, buf: &'a mut [u8]) -> Self {
        let mut slot = Box::new((0usize, 0 as c_int));
        // SAFETY: a live operation; the buffer is borrowed and the result
        // slot boxed for the operation's lifetime.
        unsafe {
            ffi::rados_read_op_read(
                self.ptr,
                offset,
                buf.len(),
                buf.as_mut_ptr().cast::<c_char>(),
                &mut slot.0,
                &mut slot.1,
            )
        };
        self.reads.push(slot);
        self
    }

    /// Performs every step on object `oid` of `io`'s pool; returns the
    /// byte counts of the reads, in order.
    pub fn operate(mut self, io: &IoCtx, oid: &str) -> Result<Vec<usize>, CephError> {
        if let Some(e) = self.args.error.take() {
            return Err(e);
        }
        let c_oid = cstring("object name", oid)?;
        // SAFETY: a live operation whose strings, buffers and result slots
        // outlive the call, a live ioctx, a C string.
        let ret = unsafe { ffi::rados_read_op_operate(self.ptr, io.ptr, c_oid.as_ptr(), 0) };
        check(ret, "rados_read_op_operate", || io.target(oid))?;
        self.reads
            .iter()
            .map(|slot| {
                check(slot.1, "rados_read_op_read", || io.target(oid))?;
                Ok(slot.0)
            })
            .collect()
    }
}

/// An open object listing ([`IoCtx::list_objects`]); closed when dropped.
pub struct ObjectList<'a> {
    ioctx: &'a IoCtx,
    /// Null once the listing has ended.
    ctx: ffi::rados_list_ctx_t,
}

impl ObjectList<'_> {
    fn close(&mut self) {
        if !self.ctx.is_null() {
            // SAFETY: opened by rados_nobjects_list_open, closed once.
            unsafe { ffi::rados_nobjects_list_close(self.ctx) };
            self.ctx = ptr::null_mut();
        }
    }
}

impl Iterator for ObjectList<'_> {
    type Item = Result<String, CephError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ctx.is_null() {
            return None;
        }
        let mut entry: *const c_char = ptr::null();
        // SAFETY: the listing is open; librados sets `entry` to a string
        // valid until the next call, copied right away.
        let ret: c_int = unsafe {
            ffi::rados_nobjects_list_next(self.ctx, &mut entry, ptr::null_mut(), ptr::null_mut())
        };
        if ret == neg(Errno::ENOENT) {
            self.close();
            return None;
        }
        if let Err(e) = check(ret, "rados_nobjects_list_next", || {
            format!("pool {}", self.ioctx.pool)
        }) {
            self.close();
            return Some(Err(e));
        }
        if entry.is_null() {
            self.close();
            return Some(Err(CephError::call(
                "rados_nobjects_list_next",
                format!("pool {} (no name returned)", self.ioctx.pool),
                neg(Errno::EIO).into(),
            )));
        }
        // SAFETY: non-null, NUL-terminated, valid until the next call.
        let name = unsafe { CStr::from_ptr(entry) }
            .to_string_lossy()
            .into_owned();
        Some(Ok(name))
    }
}

impl Drop for ObjectList<'_> {
    fn drop(&mut self) {
        self.close();
    }
}

/// The version of the librados the program runs with (major, minor, extra);
/// all zeros in a build without it.
pub fn rados_version() -> (i32, i32, i32) {
    let (mut major, mut minor, mut extra) = (0, 0, 0);
    // SAFETY: three out-pointers.
    unsafe { ffi::rados_version(&mut major, &mut minor, &mut extra) };
    (major, minor, extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_name_adds_the_client_prefix_once() {
        assert_eq!(
            CephConfig::new("c", "admin", "p").client_name(),
            "client.admin"
        );
        assert_eq!(
            CephConfig::new("c", "client.cinder-backup", "p").client_name(),
            "client.cinder-backup"
        );
    }

    #[test]
    fn errors_name_the_call_target_and_errno() {
        let e = CephError::call("rbd_open", "volumes/volume-x", -2);
        assert_eq!(
            e.to_string(),
            "rbd_open volumes/volume-x: No such file or directory (errno 2)"
        );
        assert!(e.is_not_found());
        let e = CephError::call("rados_ioctx_create", "pool p as client.admin", -2);
        assert!(
            e.to_string()
                .ends_with("(errno 2); the pool does not exist"),
            "{e}"
        );
        let e = CephError::call("rbd_snap_unprotect", "volumes/v@s", -16);
        assert!(e.is_busy());
    }
}
