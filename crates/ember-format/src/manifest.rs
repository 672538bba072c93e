//! Backup manifests: one per backup, the list of its chunks and its record.
//!
//! ```text
//! "EMBRMAN2"                       8-byte magic
//! zstd frame                       entry_count × 56-byte entries, in volume
//!                                  order: chunk digest (32), pack id (16),
//!                                  frame offset (u32 LE), frame length
//!                                  (u32 LE); a hole is all zeros
//! footer                           JSON: format_version, entry_count, backup record
//! footer length                    u32 little-endian
//! checksum                         SHA-256 of every byte before it
//! ```
//!
//! The manifest is written in one pass (digests stream out as the backup
//! proceeds) and read in one pass, so memory does not grow with the volume.
//! The footer sits at the end because the backup's statistics are known only
//! then; listing backups reads just the tail.

use std::io::{self, Read, Write};

use ember_types::{BackupInfo, ChunkDigest};

use crate::chunk::HEADER_LEN;
use crate::pack::{ChunkLocation, PackId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The eight bytes every manifest starts with.
pub const MANIFEST_MAGIC: [u8; 8] = *b"EMBRMAN2";
/// Version of the repository format this crate reads and writes.
pub const FORMAT_VERSION: u32 = 2;
/// Length of the fixed trailer: footer length and checksum.
pub const TRAILER_LEN: usize = 4 + 32;
/// Footers larger than this are refused as corrupt (they hold a record, not data).
const MAX_FOOTER_LEN: u32 = 1 << 20;
/// Length of one manifest entry.
pub const ENTRY_LEN: usize = 32 + 16 + 4 + 4;
/// zstd level for the entry list: digests do not compress; holes and the
/// runs of one pack id do.
const ENTRY_COMPRESSION_LEVEL: i32 = 3;

/// Why a manifest cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Reading or writing the underlying stream failed.
    #[error("manifest I/O: {0}")]
    Io(#[from] io::Error),
    /// The bytes are not a manifest of this format.
    #[error("not an Ember manifest (bad magic)")]
    BadMagic,
    /// The trailer or footer is damaged.
    #[error("manifest footer is damaged: {0}")]
    BadFooter(String),
    /// The checksum over the whole manifest does not match.
    #[error("manifest checksum mismatch: the manifest is damaged")]
    ChecksumMismatch,
    /// The manifest holds fewer entries than its footer says.
    #[error("manifest holds fewer chunk entries than its footer says")]
    TooFewEntries,
    /// An entry is neither a hole nor a plausible chunk location.
    #[error("manifest entry {0} is malformed")]
    BadEntry(u64),
    /// Written by another version of the format.
    #[error("manifest format version {0} is not the one this Ember reads ({FORMAT_VERSION})")]
    UnsupportedVersion(u32),
}

/// One entry of a manifest: a chunk of the volume, and where its frame is
/// kept (`None` for a hole: a chunk of zeros, never stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    /// Digest of the chunk's plaintext ([`ChunkDigest::ZERO_CHUNK`] for a hole).
    pub digest: ChunkDigest,
    /// Where its frame is; `None` exactly for a hole.
    pub location: Option<ChunkLocation>,
}

impl ChunkRef {
    /// A chunk of zeros.
    pub const HOLE: ChunkRef = ChunkRef {
        digest: ChunkDigest::ZERO_CHUNK,
        location: None,
    };

    /// Whether this is a chunk of zeros.
    pub fn is_hole(&self) -> bool {
        self.location.is_none()
    }

    fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut bytes = [0u8; ENTRY_LEN];
        if let Some(location) = &self.location {
            bytes[..32].copy_from_slice(&self.digest.0);
            bytes[32..48].copy_from_slice(&location.pack.0);
            bytes[48..52].copy_from_slice(&location.offset.to_le_bytes());
            bytes[52..56].copy_from_slice(&location.len.to_le_bytes());
        }
        bytes
    }

    fn decode(bytes: &[u8; ENTRY_LEN], index: u64) -> Result<Self, ManifestError> {
        let digest = ChunkDigest(
            bytes[..32]
                .try_into()
                .map_err(|_| ManifestError::BadEntry(index))?,
        );
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        if bytes.iter().all(|&b| b == 0) {
            return Ok(ChunkRef::HOLE);
        }
        let location = ChunkLocation {
            pack: PackId(
                bytes[32..48]
                    .try_into()
                    .map_err(|_| ManifestError::BadEntry(index))?,
            ),
            offset: word(48),
            len: word(52),
        };
        if digest.is_zero_chunk() || (location.len as usize) < HEADER_LEN {
            return Err(ManifestError::BadEntry(index));
        }
        Ok(ChunkRef {
            digest,
            location: Some(location),
        })
    }
}

/// The JSON footer of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFooter {
    /// Format version the manifest was written with.
    pub format_version: u32,
    /// Number of entries in the body.
    pub entry_count: u64,
    /// The backup's record.
    pub backup: BackupInfo,
}

/// A `Write` that hashes everything passing through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a manifest in one pass: chunk entries as they come, then the
/// record at [`ManifestWriter::finish`].
pub struct ManifestWriter<W: Write> {
    entries: zstd::stream::write::Encoder<'static, HashingWriter<W>>,
    entry_count: u64,
}

impl<W: Write> ManifestWriter<W> {
    /// Starts a manifest on `sink`.
    pub fn new(sink: W) -> Result<Self, ManifestError> {
        let mut hashing = HashingWriter {
            inner: sink,
            hasher: Sha256::new(),
        };
        hashing.write_all(&MANIFEST_MAGIC)?;
        let entries = zstd::stream::write::Encoder::new(hashing, ENTRY_COMPRESSION_LEVEL)?;
        Ok(ManifestWriter {
            entries,
            entry_count: 0,
        })
    }

    /// Appends the entry of the next chunk of the volume.
    pub fn push(&mut self, entry: &ChunkRef) -> Result<(), ManifestError> {
        self.entries.write_all(&entry.encode())?;
        self.entry_count += 1;
        Ok(())
    }

    /// Number of entries pushed so far.
    pub fn entry_count(&self) -> u64 {
        self.entry_count
    }

    /// Writes the footer and checksum and hands back the sink (not flushed
    /// to stable storage: that is the caller's commit step).
    pub fn finish(self, backup: BackupInfo) -> Result<W, ManifestError> {
        let mut hashing = self.entries.finish()?;
        let footer = ManifestFooter {
            format_version: FORMAT_VERSION,
            entry_count: self.entry_count,
            backup,
        };
        let footer_json =
            serde_json::to_vec(&footer).map_err(|e| ManifestError::BadFooter(e.to_string()))?;
        hashing.write_all(&footer_json)?;
        hashing.write_all(&(footer_json.len() as u32).to_le_bytes())?;
        let checksum = hashing.hasher.finalize();
        let mut sink = hashing.inner;
        sink.write_all(&checksum)?;
        sink.flush()?;
        Ok(sink)
    }
}

/// Length of the JSON footer, read from a manifest's last [`TRAILER_LEN`] bytes.
pub fn footer_len(trailer: &[u8]) -> Result<u32, ManifestError> {
    if trailer.len() != TRAILER_LEN {
        return Err(ManifestError::BadFooter("short trailer".into()));
    }
    let len = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    if len == 0 || len > MAX_FOOTER_LEN {
        return Err(ManifestError::BadFooter(format!("footer length {len}")));
    }
    Ok(len)
}

/// Parses a manifest's JSON footer (the `footer_len` bytes before the trailer).
pub fn parse_footer(bytes: &[u8]) -> Result<ManifestFooter, ManifestError> {
    let footer: ManifestFooter =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::BadFooter(e.to_string()))?;
    if footer.format_version > FORMAT_VERSION {
        return Err(ManifestError::UnsupportedVersion(footer.format_version));
    }
    if footer.entry_count != footer.backup.chunk_count() {
        return Err(ManifestError::BadFooter(format!(
            "{} entries for a volume of {} chunks",
            footer.entry_count,
            footer.backup.chunk_count()
        )));
    }
    Ok(footer)
}

/// Reads a whole manifest of `total_len` bytes and checks its checksum.
pub fn verify_checksum(mut reader: impl Read, total_len: u64) -> Result<(), ManifestError> {
    // The checksum covers every byte before its own 32.
    let body_len = total_len
        .checked_sub(32)
        .ok_or(ManifestError::BadFooter("manifest too short".into()))?;
    let mut hasher = Sha256::new();
    let copied = io::copy(
        &mut (&mut reader).take(body_len),
        &mut HashSink(&mut hasher),
    )?;
    let mut stored = [0u8; 32];
    if copied != body_len || reader.read_exact(&mut stored).is_err() {
        return Err(ManifestError::BadFooter("manifest too short".into()));
    }
    if hasher.finalize().as_slice() != stored {
        return Err(ManifestError::ChecksumMismatch);
    }
    Ok(())
}

struct HashSink<'a>(&'a mut Sha256);

impl Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Streams a manifest's chunk entries in volume order.
pub struct EntryReader<R: Read> {
    decoder: zstd::stream::read::Decoder<'static, io::BufReader<R>>,
    next_index: u64,
    count: u64,
}

impl<R: Read> EntryReader<R> {
    /// Starts reading the manifest at the beginning of `reader`, expecting
    /// `entry_count` entries (from its footer).
    pub fn new(mut reader: R, entry_count: u64) -> Result<Self, ManifestError> {
        let mut magic = [0u8; 8];
        reader.read_exact(&mut magic)?;
        if magic != MANIFEST_MAGIC {
            return Err(ManifestError::BadMagic);
        }
        let decoder = zstd::stream::read::Decoder::new(reader)?.single_frame();
        Ok(EntryReader {
            decoder,
            next_index: 0,
            count: entry_count,
        })
    }

    /// The next entry, or `None` after the last.
    pub fn next_entry(&mut self) -> Result<Option<ChunkRef>, ManifestError> {
        if self.next_index == self.count {
            return Ok(None);
        }
        let mut bytes = [0u8; ENTRY_LEN];
        self.decoder
            .read_exact(&mut bytes)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => ManifestError::TooFewEntries,
                _ => ManifestError::Io(e),
            })?;
        let entry = ChunkRef::decode(&bytes, self.next_index)?;
        self.next_index += 1;
        Ok(Some(entry))
    }
}

impl<R: Read> Iterator for EntryReader<R> {
    type Item = Result<ChunkRef, ManifestError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_types::{BackupId, BackupStats, Codec};

    fn info(volume_size: u64, chunk_size: u32) -> BackupInfo {
        let now = chrono::Utc::now();
        BackupInfo {
            id: BackupId::new_random(),
            parent: None,
            name: Some("n".into()),
            description: None,
            source: "/dev/null".into(),
            volume_id: None,
            volume_size,
            chunk_size,
            codec: Codec::Zstd,
            started_at: now,
            completed_at: now,
            stats: BackupStats::default(),
        }
    }

    fn data(byte: u8) -> ChunkRef {
        ChunkRef {
            digest: ChunkDigest([byte; 32]),
            location: Some(ChunkLocation {
                pack: PackId([byte.wrapping_add(1); 16]),
                offset: u32::from(byte) * 100,
                len: 16 + u32::from(byte),
            }),
        }
    }

    fn write_manifest(entries: &[ChunkRef], record: BackupInfo) -> Vec<u8> {
        let mut writer = ManifestWriter::new(Vec::new()).expect("writer");
        for entry in entries {
            writer.push(entry).expect("push");
        }
        writer.finish(record).expect("finish")
    }

    fn read_footer(bytes: &[u8]) -> ManifestFooter {
        let trailer = &bytes[bytes.len() - TRAILER_LEN..];
        let len = footer_len(trailer).expect("footer len") as usize;
        let start = bytes.len() - TRAILER_LEN - len;
        parse_footer(&bytes[start..bytes.len() - TRAILER_LEN]).expect("footer")
    }

    #[test]
    fn round_trip() {
        let digests: Vec<ChunkRef> = (0..1000u32)
            .map(|i| {
                if i % 3 == 0 {
                    ChunkRef::HOLE
                } else {
                    data(i as u8 | 1)
                }
            })
            .collect();
        let record = info(1000 * 4096 - 100, 4096);
        let bytes = write_manifest(&digests, record.clone());

        verify_checksum(&bytes[..], bytes.len() as u64).expect("checksum");
        let footer = read_footer(&bytes);
        assert_eq!(footer.backup, record);
        assert_eq!(footer.entry_count, 1000);
        let read: Vec<ChunkRef> = EntryReader::new(&bytes[..], footer.entry_count)
            .expect("reader")
            .collect::<Result<_, _>>()
            .expect("entries");
        assert_eq!(read, digests);
    }

    #[test]
    fn any_flipped_bit_fails_the_checksum() {
        let bytes = write_manifest(&[data(7); 4], info(4 * 4096, 4096));
        for position in [0, 9, bytes.len() / 2, bytes.len() - 40, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x10;
            assert!(
                verify_checksum(&damaged[..], damaged.len() as u64).is_err(),
                "flip at {position} went unnoticed"
            );
        }
        assert!(verify_checksum(&bytes[..10], 10).is_err());
    }

    #[test]
    fn footer_must_match_the_volume() {
        // Two entries pushed for a volume that needs three.
        let bytes = write_manifest(&[data(1); 2], info(3 * 4096, 4096));
        let trailer = &bytes[bytes.len() - TRAILER_LEN..];
        let len = footer_len(trailer).expect("len") as usize;
        let footer = &bytes[bytes.len() - TRAILER_LEN - len..bytes.len() - TRAILER_LEN];
        assert!(matches!(
            parse_footer(footer),
            Err(ManifestError::BadFooter(_))
        ));
    }
}
