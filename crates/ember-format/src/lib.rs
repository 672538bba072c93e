//! Ember's repository format, version 2 (specified in `docs/format.md`).
//!
//! Three things are stored: *chunk frames* (a fixed-size piece of a volume,
//! compressed, with its codec, length and CRC), *packs* (many frames in one
//! object, with an index of them at the end) and *manifests* (one per
//! backup: every chunk of the volume in order, by digest and location, then
//! the backup's record, then a checksum). This crate encodes and decodes
//! them on byte slices and `Read`/`Write` streams; it knows nothing of where
//! the bytes live.
#![forbid(unsafe_code)]

pub mod chunk;
pub mod manifest;
pub mod pack;

pub use chunk::{digest_of, is_all_zero, ChunkDecoder, ChunkEncoder, ChunkError, EncodedChunk};
pub use manifest::{ChunkRef, ManifestError, ManifestFooter, ManifestWriter, FORMAT_VERSION};
pub use pack::{ChunkLocation, PackEntry, PackError, PackId, PackLayout};
