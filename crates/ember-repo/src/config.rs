//! The repository's configuration object.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Settings fixed when a repository is created, stored as JSON in its
/// `config` object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// Format version the repository was created with.
    pub format_version: u32,
    /// A random id, to tell repositories apart.
    pub repository_id: Uuid,
    /// Chunk size used by full backups unless asked otherwise (incrementals
    /// always use their parent's).
    pub chunk_size: u32,
    /// When the repository was created.
    pub created_at: DateTime<Utc>,
}
