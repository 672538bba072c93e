//! Backup manifests: one per backup, the list of its chunks and its record.
//!
//! ```text
//! "EMBRMAN1"                       8-byte magic
//! zstd frame                       entry_count × 32-byte chunk digests, in
//!                                  volume order (all zeros = a hole)
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
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The eight bytes every manifest starts with.
pub const MANIFEST_MAGIC: [u8; 8] = *b"EMBRMAN1";
/// Version of the repository format this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Length of the fixed trailer: footer length and checksum.
pub const TRAILER_LEN: usize = 4 + 32;
/// Footers larger than this are refused as corrupt (they hold a record, not data).
const MAX_FOOTER_LEN: u32 = 1 << 20;
/// zstd level for the digest list: digests do not compress, holes do.
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
    /// Written by a newer Ember.
    #[error("manifest format version {0} is newer than this Ember understands ({FORMAT_VERSION})")]
    UnsupportedVersion(u32),
}

/// The JSON footer of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFooter {
    /// Format version the manifest was written with.
    pub format_version: u32,
    /// Number of 32-byte chunk entries in the body.
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

/// Writes a manifest in one pass: chunk digests as they come, then the
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

    /// Appends the digest of the next chunk of the volume.
    pub fn push(&mut self, digest: &ChunkDigest) -> Result<(), ManifestError> {
        self.entries.write_all(&digest.0)?;
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

/// Streams a manifest's chunk digests in volume order.
pub struct EntryReader<R: Read> {
    decoder: zstd::stream::read::Decoder<'static, io::BufReader<R>>,
    remaining: u64,
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
            remaining: entry_count,
        })
    }

    /// The next digest, or `None` after the last.
    pub fn next_digest(&mut self) -> Result<Option<ChunkDigest>, ManifestError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let mut digest = [0u8; 32];
        self.decoder
            .read_exact(&mut digest)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => ManifestError::TooFewEntries,
                _ => ManifestError::Io(e),
            })?;
        self.remaining -= 1;
        Ok(Some(ChunkDigest(digest)))
    }
}

impl<R: Read> Iterator for EntryReader<R> {
    type Item = Result<ChunkDigest, ManifestError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_digest().transpose()
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

    fn write_manifest(digests: &[ChunkDigest], record: BackupInfo) -> Vec<u8> {
        let mut writer = ManifestWriter::new(Vec::new()).expect("writer");
        for digest in digests {
            writer.push(digest).expect("push");
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
        let digests: Vec<ChunkDigest> = (0..1000u32)
            .map(|i| {
                if i % 3 == 0 {
                    ChunkDigest::ZERO_CHUNK
                } else {
                    ChunkDigest([i as u8; 32])
                }
            })
            .collect();
        let record = info(1000 * 4096 - 100, 4096);
        let bytes = write_manifest(&digests, record.clone());

        verify_checksum(&bytes[..], bytes.len() as u64).expect("checksum");
        let footer = read_footer(&bytes);
        assert_eq!(footer.backup, record);
        assert_eq!(footer.entry_count, 1000);
        let read: Vec<ChunkDigest> = EntryReader::new(&bytes[..], footer.entry_count)
            .expect("reader")
            .collect::<Result<_, _>>()
            .expect("entries");
        assert_eq!(read, digests);
    }

    #[test]
    fn any_flipped_bit_fails_the_checksum() {
        let bytes = write_manifest(&[ChunkDigest([7; 32]); 4], info(4 * 4096, 4096));
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
        let bytes = write_manifest(&[ChunkDigest([1; 32]); 2], info(3 * 4096, 4096));
        let trailer = &bytes[bytes.len() - TRAILER_LEN..];
        let len = footer_len(trailer).expect("len") as usize;
        let footer = &bytes[bytes.len() - TRAILER_LEN - len..bytes.len() - TRAILER_LEN];
        assert!(matches!(
            parse_footer(footer),
            Err(ManifestError::BadFooter(_))
        ));
    }
}
