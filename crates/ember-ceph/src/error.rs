//! Errors of the Ceph bindings.

use std::ffi::{c_int, CString};

use nix::errno::Errno;

/// Why a librados or librbd operation failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CephError {
    /// A librados/librbd call returned an error code, e.g.
    /// `rbd_open volumes/volume-x: No such file or directory (errno 2)`.
    #[error("{call} {target}: {desc} (errno {errno}){hint}", desc = errno_text(.errno), hint = hint(.call, .errno))]
    Call {
        /// The C function that failed (`rbd_open`, `rados_connect`, …).
        call: &'static str,
        /// What it was called on: `pool/image[@snap]`, `pool/object`, the
        /// client name and conf file, …
        target: String,
        /// The positive errno it returned.
        errno: i32,
    },
    /// A name or option handed to the bindings contains a NUL byte, which C
    /// strings cannot carry.
    #[error("{what} {value:?} contains a NUL byte")]
    NulByte {
        /// What the string is (image name, object name, option, …).
        what: &'static str,
        /// The offending string (lossily decoded).
        value: String,
    },
    /// A read or write moved fewer bytes than asked, e.g. a write past the
    /// end of an image, which librbd clips instead of refusing.
    #[error("{call} {target}: {done} of {asked} bytes at offset {offset} (past the end?)")]
    Short {
        /// The C function (`rbd_write2`, …).
        call: &'static str,
        /// The image or object.
        target: String,
        /// Where the transfer started.
        offset: u64,
        /// How many bytes were asked for.
        asked: u64,
        /// How many bytes were moved.
        done: u64,
    },
}

impl CephError {
    /// The errno of a failed call, if the error is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            CephError::Call { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// Whether the image, snapshot, object or pool does not exist (ENOENT).
    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(Errno::ENOENT as i32)
    }

    /// Whether the thing to create exists already (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(Errno::EEXIST as i32)
    }

    /// Whether a comparison of a compound operation failed (ECANCELED), so
    /// none of its steps took effect.
    pub fn is_canceled(&self) -> bool {
        self.errno() == Some(Errno::ECANCELED as i32)
    }

    /// Whether the target is in use (EBUSY): an image open elsewhere or
    /// with snapshots, a protected snapshot with clones, …
    pub fn is_busy(&self) -> bool {
        self.errno() == Some(Errno::EBUSY as i32)
    }

    /// Whether the failure may be the connection's rather than the
    /// request's: an operation timed out (ETIMEDOUT), the client was
    /// blocklisted (ESHUTDOWN), is not connected (ENOTCONN), or lost an
    /// image's exclusive lock (EROFS). A client in that state can keep
    /// failing (a lock its own stale session holds cannot be broken), so
    /// callers connect anew.
    pub fn is_connection_failure(&self) -> bool {
        matches!(
            self.errno().map(Errno::from_raw),
            Some(Errno::ETIMEDOUT | Errno::ESHUTDOWN | Errno::ENOTCONN | Errno::EROFS)
        )
    }

    /// The failed-call error for a negative return code `ret`.
    pub(crate) fn call(call: &'static str, target: impl Into<String>, ret: i64) -> Self {
        CephError::Call {
            call,
            target: target.into(),
            errno: i32::try_from(ret.unsigned_abs()).unwrap_or(i32::MAX),
        }
    }
}

/// `Ok(ret)` for a non-negative return code, the failed-call error for a
/// negative one (its target built only then).
pub(crate) fn check<T>(
    ret: T,
    call: &'static str,
    target: impl FnOnce() -> String,
) -> Result<T, CephError>
where
    T: Copy + Into<i64>,
{
    let value: i64 = ret.into();
    if value < 0 {
        Err(CephError::call(call, target(), value))
    } else {
        Ok(ret)
    }
}

/// `s` as a C string, or the NUL-byte error naming `what`.
pub(crate) fn cstring(what: &'static str, s: &str) -> Result<CString, CephError> {
    CString::new(s).map_err(|_| CephError::NulByte {
        what,
        value: s.to_string(),
    })
}

/// The text of an errno ("No such file or directory").
fn errno_text(errno: &i32) -> &'static str {
    Errno::from_raw(*errno).desc()
}

/// What to check, for the errors whose cause is usually the configuration.
fn hint(call: &&'static str, errno: &i32) -> &'static str {
    let errno = Errno::from_raw(*errno);
    match (*call, errno) {
        (_, Errno::ENOSYS) => {
            "; ember-ceph was built without librados/librbd (apt-get install librados-dev librbd-dev, then cargo clean -p ember-ceph)"
        }
        ("rados_conf_read_file", _) => "; the Ceph configuration file cannot be read",
        ("rados_connect", Errno::EACCES | Errno::EPERM) => {
            "; the monitors refused this client: check the user name and its key in the keyring"
        }
        ("rados_connect", Errno::ENOENT) => "; no keyring with a key for this user was found (check the keyring path and the user name)",
        ("rados_connect", Errno::ETIMEDOUT) => {
            "; no monitor answered in time: check `mon host` in the conf file and that the cluster is up"
        }
        ("rados_connect", Errno::EINVAL) => "; the configuration is invalid (no `mon host`?)",
        ("rados_ioctx_create", Errno::ENOENT) => "; the pool does not exist",
        ("rados_conf_set", _) => "; unknown option or invalid value",
        (_, Errno::EFBIG) => "; the object would exceed the OSDs' osd_max_object_size",
        // Ceph's EBLOCKLISTED is ESHUTDOWN.
        (_, Errno::ESHUTDOWN) => "; this client was blocklisted by the cluster",
        (_, Errno::EACCES | Errno::EPERM) => "; the client's capabilities do not allow it",
        _ => "",
    }
}

/// The negative errno constant as the C functions return it.
pub(crate) fn neg(errno: Errno) -> c_int {
    -(errno as c_int)
}
