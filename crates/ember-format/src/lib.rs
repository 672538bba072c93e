//! Ember's repository format, version 1 (specified in `docs/format.md`).
//!
//! Two things are stored: *chunks* (a fixed-size piece of a volume,
//! compressed, in a frame that carries its codec, length and CRC) and
//! *manifests* (one per backup: the digest of every chunk of the volume in
//! order, then the backup's record, then a checksum). This crate encodes and
//! decodes both on byte slices and `Read`/`Write` streams; it knows nothing
//! of where the bytes live.
#![forbid(unsafe_code)]

pub mod chunk;
pub mod manifest;

pub use chunk::{digest_of, is_all_zero, ChunkDecoder, ChunkEncoder, ChunkError, EncodedChunk};
pub use manifest::{ManifestError, ManifestFooter, ManifestWriter, FORMAT_VERSION};
