//! Metadata database errors.

/// Why a metadata operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// No (non-deleted) row with this id.
    #[error("no such record")]
    NotFound,
    /// A row with this id exists already (possibly deleted: ids are never
    /// reused).
    #[error("a record with this id exists already")]
    Conflict,
    /// The list marker names no row.
    #[error("marker {0} matches no record")]
    MarkerNotFound(String),
    /// The database URL is not one Ember can open.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The database failed (or could not be reached).
    #[error("database error while {context}: {source}")]
    Database {
        /// What was being done.
        context: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A stored value cannot be decoded.
    #[error("stored value cannot be decoded: {0}")]
    Corrupt(String),
    /// A value cannot be stored (a timestamp outside the years 0000–9999).
    #[error("value cannot be stored: {0}")]
    InvalidValue(String),
}

impl MetaError {
    /// A closure mapping a driver error to [`MetaError::Database`] with
    /// `context` (what was being done: "inserting volume …").
    pub(crate) fn db(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> MetaError {
        let context = context.into();
        move |source| MetaError::Database { context, source }
    }
}
