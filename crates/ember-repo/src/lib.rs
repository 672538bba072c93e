//! An Ember repository: format v1 (`ember-format`) kept on a storage target
//! (`ember-store`).
//!
//! [`Repository`] is what the engine works with: it stores and fetches
//! chunks (every fetched chunk is checked), writes manifests as the commit
//! record of a backup, lists and describes backups from their manifests
//! alone, and tracks running writers through leases so garbage collection
//! can run beside them.
#![forbid(unsafe_code)]

mod config;
mod error;
mod lease;
mod repository;

pub use config::RepoConfig;
pub use error::RepoError;
pub use lease::{WriterInfo, WriterLease};
pub use repository::{BackupListing, ManifestEntries, PendingManifest, Repository};
