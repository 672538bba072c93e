//! Ember's domain types, shared by every layer above.
//!
//! This crate has no I/O and no knowledge of where backups live: it names
//! things (backups, chunks, codecs) and describes them (backup records and
//! their statistics). Every other Ember crate depends on it; it depends on
//! none of them.
#![forbid(unsafe_code)]

mod aligned;
mod backup;
mod codec;
mod digest;
mod id;

pub use aligned::{AlignedBuf, DIRECT_IO_ALIGN};
pub use backup::{BackupInfo, BackupStats};
pub use codec::{Codec, CodecParseError};
pub use digest::{ChunkDigest, DigestParseError};
pub use id::{BackupId, IdParseError};
