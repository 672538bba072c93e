//! Errors of storage targets.

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// An object name the store cannot hold.
    #[error("invalid object name '{0}'")]
    InvalidName(String),
    /// The operating system or the remote service refused.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the object or path concerned.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The Ceph cluster refused or failed.
    #[error("{what}: {source}")]
    Ceph {
        /// What was being done, with the object concerned.
        what: String,
        /// The librados error (call, object, errno).
        #[source]
        source: ember_ceph::CephError,
    },
    /// A lease this process holds on a RADOS target went unrenewed for too
    /// long (the process stalled, or lost the cluster): other processes may
    /// have taken it as ended and collected what it protects, so nothing is
    /// committed while it is held.
    #[error("lease {0} was not renewed in time; refusing to commit while it is held")]
    LeaseLost(String),
    /// A target named in a form that cannot be understood.
    #[error("invalid repository '{spec}': {why}")]
    BadSpec {
        /// What was given.
        spec: String,
        /// What is wrong with it.
        why: String,
    },
}

impl StoreError {
    /// Wraps an I/O error with what was being done, mapping "not found".
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        let what = what.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            StoreError::NotFound(what)
        } else {
            StoreError::Io { what, source }
        }
    }

    /// Whether the error says the object is missing.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound(_))
    }
}
