//! An Ember repository: format v2 (`ember-format`) kept on a storage target
//! (`ember-store`).
//!
//! [`Repository`] is what the engine works with: it writes chunk frames into
//! packs ([`PackWriter`]) and reads them back by location, finds chunks to
//! deduplicate against ([`DedupIndex`]), writes manifests as the commit
//! record of a backup, lists and describes backups from their manifests
//! alone, and tracks running writers through leases so garbage collection
//! can run beside them.
#![forbid(unsafe_code)]

mod config;
mod dedup;
mod error;
mod lease;
mod pack;
mod repository;

pub use config::RepoConfig;
pub use dedup::DedupIndex;
pub use error::RepoError;
pub use lease::{WriterInfo, WriterLease};
pub use pack::PackWriter;
pub use repository::{BackupListing, ManifestEntries, PackMeta, PendingManifest, Repository};
