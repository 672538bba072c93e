//! Errors of the service layer, by what the caller did wrong (or what broke).

use ember_meta::MetaError;

/// Why a request was refused or failed. The HTTP layer maps each kind to
/// Cinder's status code and fault name.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is invalid in the current state (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// No such resource visible to the caller (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// A quota would be exceeded (HTTP 413).
    #[error("{0}")]
    OverQuota(String),
    /// The caller may not do this (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// The metadata database failed.
    #[error("database: {0}")]
    Database(#[from] MetaError),
    /// The repository failed.
    #[error("repository: {0}")]
    Repository(#[from] ember_repo::RepoError),
    /// A volume file could not be created, copied or removed.
    #[error("volume storage: {0}")]
    Volume(String),
    /// A storage backend (a Ceph cluster) cannot be reached or used now
    /// (HTTP 503; `os-services` shows its service down meanwhile).
    #[error("backend unavailable: {0}")]
    Backend(String),
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
}

impl ServiceError {
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        ServiceError::BadRequest(message.into())
    }
}
