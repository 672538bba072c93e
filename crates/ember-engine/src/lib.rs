//! Ember's engine: backup, restore, verify and garbage collection.
//!
//! Each operation is a bounded pipeline of threads: a reader feeds batches
//! of chunks through a bounded channel to one worker per core (hashing,
//! compression, storage I/O), so reading, hashing, compressing and writing
//! overlap and memory stays at a few batches whatever the volume's size.
//! Every operation reports [`Progress`] and stops early on a [`CancelToken`].
//!
//! Which operations may overlap on one repository:
//!
//! | running ↓ / starting → | backup | restore | delete | verify | gc |
//! |---|---|---|---|---|---|
//! | backup  | yes | yes | yes (its parent too¹) | yes | yes |
//! | restore | yes | yes | not of the backup being restored | yes | yes |
//! | gc      | yes | yes | yes | yes | yes |
//!
//! ¹ gc then refuses to run until that backup ends; see docs/format.md.
#![forbid(unsafe_code)]

mod backup;
mod control;
mod error;
mod gc;
mod rbd;
mod restore;
mod verify;

pub use backup::{resolve_parent, run_backup, BackupRequest, ParentChoice};
pub use control::{CancelToken, Progress, Tuning};
pub use error::EngineError;
pub use gc::{run_gc, GcReport};
pub use rbd::{remove_backup_snapshots, PrunedSnapshots, RbdBackupPlan};
pub use restore::{run_restore, RestoreReport};
pub use verify::{run_verify, ChunkProblem, VerifyReport, VerifyScope};

/// Smallest chunk size accepted (one filesystem block).
pub const MIN_CHUNK_SIZE: u32 = 4 * 1024;
/// Largest chunk size accepted.
pub const MAX_CHUNK_SIZE: u32 = 64 * 1024 * 1024;
/// Default chunk size of new repositories; docs/format.md explains the choice.
pub const DEFAULT_CHUNK_SIZE: u32 = 32 * 1024;

/// Checks that `size` is a chunk size Ember accepts: a power of two from
/// [`MIN_CHUNK_SIZE`] to [`MAX_CHUNK_SIZE`].
pub fn validate_chunk_size(size: u32) -> Result<(), EngineError> {
    if size.is_power_of_two() && (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&size) {
        Ok(())
    } else {
        Err(EngineError::InvalidOption(format!(
            "chunk size {size} must be a power of two from {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE} bytes"
        )))
    }
}
