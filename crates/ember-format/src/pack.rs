//! Pack files: many chunk frames in one object, with an index at the end.
//!
//! ```text
//! "EMBRPAK2"        8-byte magic
//! frames            chunk frames back to back (see `chunk`)
//! index             entry_count × 40 bytes: chunk digest (32),
//!                   frame offset from the pack's start (u32 LE),
//!                   frame length (u32 LE); in offset order
//! entry_count       u32 little-endian
//! checksum          SHA-256 of the index and the entry count
//! ```
//!
//! A pack is written in one pass and becomes visible only whole (the store
//! writes it under a temporary name, fsyncs and renames it). Manifests name
//! chunks by digest *and* location (pack, offset, length), so restores need
//! no index; the index at the end of a pack lets a backup find chunks to
//! deduplicate against and lets `verify` walk a pack frame by frame.

use std::fmt;
use std::str::FromStr;

use ember_types::ChunkDigest;
use sha2::{Digest, Sha256};

use crate::chunk::HEADER_LEN;

/// The eight bytes every pack starts with.
pub const PACK_MAGIC: [u8; 8] = *b"EMBRPAK2";
/// Length of one index entry.
pub const INDEX_ENTRY_LEN: usize = 32 + 4 + 4;
/// Length of the fixed trailer: entry count and checksum.
pub const PACK_TRAILER_LEN: usize = 4 + 32;
/// Packs are sealed once they reach this size (offsets must fit in a u32).
pub const PACK_TARGET_LEN: u64 = 16 * 1024 * 1024;

/// Why a pack (or a part of one) cannot be trusted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PackError {
    /// The pack is shorter than its structure requires.
    #[error("pack is truncated")]
    Truncated,
    /// The pack does not start with the pack magic.
    #[error("not an Ember pack (bad magic)")]
    BadMagic,
    /// The index fails its checksum.
    #[error("pack index fails its checksum")]
    ChecksumMismatch,
    /// An index entry points outside the frames area or overlaps another.
    #[error("pack index entry {0} points outside the pack's frames")]
    BadEntry(usize),
}

/// Names a pack: 16 random bytes, written as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PackId(pub [u8; 16]);

impl PackId {
    /// A fresh random id.
    pub fn new_random() -> Self {
        PackId(*uuid::Uuid::new_v4().as_bytes())
    }
}

impl fmt::Display for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackId({self})")
    }
}

impl FromStr for PackId {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(text, &mut bytes).map_err(|e| format!("pack id {text:?}: {e}"))?;
        Ok(PackId(bytes))
    }
}

/// Where a chunk's frame is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkLocation {
    /// The pack holding the frame.
    pub pack: PackId,
    /// Offset of the frame from the pack's start.
    pub offset: u32,
    /// Length of the frame (header and payload).
    pub len: u32,
}

impl ChunkLocation {
    /// Offset just past the frame.
    pub fn end(&self) -> u64 {
        u64::from(self.offset) + u64::from(self.len)
    }
}

/// One entry of a pack's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    /// Digest of the chunk's plaintext.
    pub digest: ChunkDigest,
    /// Offset of its frame from the pack's start.
    pub offset: u32,
    /// Length of its frame.
    pub len: u32,
}

/// Builds the parts of a pack around the frames the caller writes: it
/// tracks offsets and produces the index and trailer.
#[derive(Debug)]
pub struct PackLayout {
    len: u64,
    entries: Vec<PackEntry>,
}

impl Default for PackLayout {
    fn default() -> Self {
        PackLayout {
            len: PACK_MAGIC.len() as u64,
            entries: Vec::new(),
        }
    }
}

impl PackLayout {
    /// Bytes of the pack so far (magic and frames).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no frame was added yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The frames added so far, in order.
    pub fn entries(&self) -> &[PackEntry] {
        &self.entries
    }

    /// Records a frame of `frame_len` bytes appended at the current end and
    /// returns its offset; `None` if the pack cannot address it (the caller
    /// seals this pack and starts another).
    pub fn add(&mut self, digest: ChunkDigest, frame_len: usize) -> Option<u32> {
        let offset = u32::try_from(self.len).ok()?;
        let len = u32::try_from(frame_len).ok()?;
        u32::try_from(self.len + u64::from(len)).ok()?;
        self.entries.push(PackEntry {
            digest,
            offset,
            len,
        });
        self.len += u64::from(len);
        Some(offset)
    }

    /// The index and trailer that end the pack.
    pub fn tail(&self) -> Vec<u8> {
        let mut tail = Vec::with_capacity(self.entries.len() * INDEX_ENTRY_LEN + PACK_TRAILER_LEN);
        for entry in &self.entries {
            tail.extend_from_slice(&entry.digest.0);
            tail.extend_from_slice(&entry.offset.to_le_bytes());
            tail.extend_from_slice(&entry.len.to_le_bytes());
        }
        tail.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        let checksum = Sha256::digest(&tail);
        tail.extend_from_slice(&checksum);
        tail
    }
}

/// Length of a pack's index, from its last [`PACK_TRAILER_LEN`] bytes.
pub fn index_len(trailer: &[u8]) -> Result<u64, PackError> {
    let count: [u8; 4] = trailer
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(PackError::Truncated)?;
    Ok(u64::from(u32::from_le_bytes(count)) * INDEX_ENTRY_LEN as u64)
}

/// Parses and checks a pack's index; `tail` is the index followed by the
/// trailer, `pack_len` the pack's total length.
pub fn parse_index(tail: &[u8], pack_len: u64) -> Result<Vec<PackEntry>, PackError> {
    let trailer_at = tail
        .len()
        .checked_sub(PACK_TRAILER_LEN)
        .ok_or(PackError::Truncated)?;
    let index_bytes = index_len(&tail[trailer_at..])?;
    if index_bytes != trailer_at as u64 {
        return Err(PackError::Truncated);
    }
    if Sha256::digest(&tail[..trailer_at + 4]).as_slice() != &tail[trailer_at + 4..] {
        return Err(PackError::ChecksumMismatch);
    }
    let frames_end = pack_len
        .checked_sub(tail.len() as u64)
        .ok_or(PackError::Truncated)?;
    let mut next_free = PACK_MAGIC.len() as u64;
    tail[..trailer_at]
        .chunks_exact(INDEX_ENTRY_LEN)
        .enumerate()
        .map(|(i, raw)| {
            let word =
                |at: usize| u32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
            let entry = PackEntry {
                digest: ChunkDigest(raw[..32].try_into().map_err(|_| PackError::BadEntry(i))?),
                offset: word(32),
                len: word(36),
            };
            let start = u64::from(entry.offset);
            let end = start + u64::from(entry.len);
            if start < next_free || end > frames_end || (entry.len as usize) < HEADER_LEN {
                return Err(PackError::BadEntry(i));
            }
            next_free = end;
            Ok(entry)
        })
        .collect()
}

/// Parses and checks the index of a whole pack held in memory.
pub fn index_of_pack(pack: &[u8]) -> Result<Vec<PackEntry>, PackError> {
    check_magic(pack)?;
    let trailer_at = pack
        .len()
        .checked_sub(PACK_TRAILER_LEN)
        .ok_or(PackError::Truncated)?;
    let index_at = (trailer_at as u64)
        .checked_sub(index_len(&pack[trailer_at..])?)
        .ok_or(PackError::Truncated)?;
    parse_index(&pack[index_at as usize..], pack.len() as u64)
}

/// Checks that a whole pack starts with the pack magic.
pub fn check_magic(pack: &[u8]) -> Result<(), PackError> {
    match pack.get(..PACK_MAGIC.len()) {
        Some(magic) if magic == PACK_MAGIC => Ok(()),
        Some(_) => Err(PackError::BadMagic),
        None => Err(PackError::Truncated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack_with(frames: &[(u8, usize)]) -> Vec<u8> {
        let mut layout = PackLayout::default();
        let mut pack = PACK_MAGIC.to_vec();
        for &(byte, len) in frames {
            layout.add(ChunkDigest([byte; 32]), len).expect("fits");
            pack.extend(std::iter::repeat_n(byte, len));
        }
        pack.extend(layout.tail());
        pack
    }

    #[test]
    fn index_round_trips() {
        let pack = pack_with(&[(1, 100), (2, 16), (3, 5000)]);
        let entries = index_of_pack(&pack).expect("index");
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].offset, 8);
        assert_eq!(entries[1].offset, 108);
        assert_eq!(
            entries[2],
            PackEntry {
                digest: ChunkDigest([3; 32]),
                offset: 124,
                len: 5000
            }
        );
        assert!(pack[124..5124].iter().all(|&b| b == 3));
    }

    #[test]
    fn damaged_index_is_refused() {
        let pack = pack_with(&[(1, 100), (2, 200)]);
        let index_at = pack.len() - PACK_TRAILER_LEN - 2 * INDEX_ENTRY_LEN;
        for position in [index_at, index_at + 33, pack.len() - 1, pack.len() - 36] {
            let mut damaged = pack.clone();
            damaged[position] ^= 1;
            assert!(
                index_of_pack(&damaged).is_err(),
                "flip at {position} went unnoticed"
            );
        }
        assert_eq!(check_magic(b"EMBRMAN1xxxx"), Err(PackError::BadMagic));
    }

    #[test]
    fn entries_outside_the_frames_are_refused() {
        let mut layout = PackLayout::default();
        layout.add(ChunkDigest([1; 32]), 64).expect("fits");
        let tail = layout.tail();
        // The pack claims a 64-byte frame but holds only 20 bytes of frames.
        assert_eq!(
            parse_index(&tail, 8 + 20 + tail.len() as u64),
            Err(PackError::BadEntry(0))
        );
    }
}
