//! Chunk frames: how one chunk's bytes are kept at rest.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "EMC1"
//!      4     1  codec tag (0 none, 1 zstd, 2 zlib, 3 bz2)
//!      5     3  reserved, zero
//!      8     4  plaintext length, u32 little-endian
//!     12     4  CRC-32 of bytes 4..12 and of the payload, u32 little-endian
//!     16     …  payload (the plaintext compressed with the codec)
//! ```
//!
//! The CRC is a cheap check for torn or truncated writes and for a damaged
//! header (so a corrupt length never drives an allocation); the real check
//! is the SHA-256 of the decoded plaintext, which must equal the chunk's name.

use std::io::{Read, Write};

use ember_types::{ChunkDigest, Codec};
use sha2::{Digest, Sha256};

/// The four bytes every chunk frame starts with.
pub const CHUNK_MAGIC: [u8; 4] = *b"EMC1";
/// Length of the frame header before the payload.
pub const HEADER_LEN: usize = 16;
/// Largest plaintext a frame may declare (the largest chunk size).
pub const MAX_PLAIN_LEN: usize = 64 * 1024 * 1024;

/// Why a stored chunk cannot be trusted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    /// The frame is shorter than its header says.
    #[error("chunk frame is truncated ({0} bytes)")]
    Truncated(usize),
    /// The frame does not start with the chunk magic.
    #[error("chunk frame has a bad magic number")]
    BadMagic,
    /// The header names a codec this version does not know.
    #[error("chunk frame names unknown codec {0}")]
    UnknownCodec(u8),
    /// The payload's CRC does not match the header.
    #[error("chunk payload fails its CRC check (torn or damaged write)")]
    CrcMismatch,
    /// The payload does not decompress.
    #[error("chunk payload does not decompress: {0}")]
    Decompress(String),
    /// The payload decompressed to the wrong length.
    #[error("chunk decompressed to {actual} bytes, header says {expected}")]
    LengthMismatch {
        /// Length in the header.
        expected: usize,
        /// Length decoded.
        actual: usize,
    },
    /// The plaintext's SHA-256 is not the chunk's name.
    #[error("chunk content hashes to {actual}, not to its name")]
    DigestMismatch {
        /// What the plaintext hashed to.
        actual: ChunkDigest,
    },
}

/// SHA-256 of a chunk's plaintext: the chunk's name.
pub fn digest_of(plaintext: &[u8]) -> ChunkDigest {
    ChunkDigest(Sha256::digest(plaintext).into())
}

/// Whether every byte is zero (such chunks are recorded as holes).
pub fn is_all_zero(data: &[u8]) -> bool {
    const ZEROS: [u8; 4096] = [0u8; 4096];
    data.chunks(ZEROS.len())
        .all(|part| part == &ZEROS[..part.len()])
}

/// A chunk ready to be stored: its frame and what it cost.
#[derive(Debug)]
pub struct EncodedChunk {
    /// The complete frame (header and payload).
    pub frame: Vec<u8>,
    /// The codec actually used (`none` when compression did not pay).
    pub codec: Codec,
}

/// Chunks at least this long are probed before they are compressed.
const PROBE_MIN_LEN: usize = 16 * 1024;
/// The probe compresses this many bytes from each of four places.
const PROBE_PIECE_LEN: usize = 1024;
/// A probe that saves less than 1/32 of its bytes marks the chunk as
/// incompressible.
const PROBE_MIN_GAIN_SHIFT: u32 = 5;

/// Compresses plaintext chunks into frames. Keeps its compression contexts
/// between chunks, so each worker thread owns one.
///
/// Before compressing a chunk of 16 KiB or more, the encoder compresses a
/// 4 KiB sample of it (four 1 KiB pieces spread over the chunk) with zstd
/// level 1; if that saves less than 1/32, the chunk is stored as is without
/// compressing the rest. Encrypted, already compressed and random data then
/// cost an eighth of a compression; a chunk compressible in any sampled
/// place is compressed (docs/format.md §3).
pub struct ChunkEncoder {
    codec: Codec,
    level: i32,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    probe: zstd::bulk::Compressor<'static>,
}

impl ChunkEncoder {
    /// An encoder for `codec` at `level` (zstd: 1–19; zlib and bz2: 1–9;
    /// ignored for `none`). Fails only if zstd cannot allocate its context.
    pub fn new(codec: Codec, level: i32) -> std::io::Result<Self> {
        let zstd = match codec {
            Codec::Zstd => Some(zstd::bulk::Compressor::new(level)?),
            _ => None,
        };
        Ok(ChunkEncoder {
            codec,
            level,
            zstd,
            probe: zstd::bulk::Compressor::new(1)?,
        })
    }

    /// Frames `plaintext`, compressed with this encoder's codec unless that
    /// does not make it smaller, in which case it is stored uncompressed.
    pub fn encode(&mut self, plaintext: &[u8]) -> EncodedChunk {
        // The payload goes after room for the header, which is filled last.
        let mut frame = Vec::with_capacity(HEADER_LEN + plaintext.len());
        frame.resize(HEADER_LEN, 0);
        let compressed = self.codec != Codec::None
            && !self.looks_incompressible(plaintext)
            && self.compress_into(plaintext, &mut frame);
        let codec = if compressed {
            self.codec
        } else {
            frame.clear();
            frame.resize(HEADER_LEN, 0);
            frame.extend_from_slice(plaintext);
            Codec::None
        };
        frame[..4].copy_from_slice(&CHUNK_MAGIC);
        frame[4..8].copy_from_slice(&[codec.tag(), 0, 0, 0]);
        frame[8..12].copy_from_slice(&(plaintext.len() as u32).to_le_bytes());
        let crc = frame_crc(&frame);
        frame[12..16].copy_from_slice(&crc.to_le_bytes());
        EncodedChunk { frame, codec }
    }

    /// Whether a sample of `plaintext` does not compress (see the type's docs).
    fn looks_incompressible(&mut self, plaintext: &[u8]) -> bool {
        if plaintext.len() < PROBE_MIN_LEN {
            return false;
        }
        let mut sample = [0u8; 4 * PROBE_PIECE_LEN];
        let stride = plaintext.len() / 4;
        for (i, piece) in sample.chunks_mut(PROBE_PIECE_LEN).enumerate() {
            piece.copy_from_slice(&plaintext[i * stride..i * stride + PROBE_PIECE_LEN]);
        }
        let mut out = [0u8; 4 * PROBE_PIECE_LEN];
        let worth = sample.len() - (sample.len() >> PROBE_MIN_GAIN_SHIFT);
        // An error means the output does not fit in the space that would
        // make compressing worthwhile.
        self.probe
            .compress_to_buffer(&sample[..], &mut out[..worth])
            .is_err()
    }

    /// Appends `plaintext` compressed with the codec to `frame` (which holds
    /// room for the header); `false`, with `frame` in an unspecified state,
    /// if it would not be smaller.
    fn compress_into(&mut self, plaintext: &[u8], frame: &mut Vec<u8>) -> bool {
        // A compressor that fails (it never should on a memory buffer) only
        // costs the compression: the chunk is then stored as is.
        match self.codec {
            Codec::None => false,
            Codec::Zstd => {
                let Some(zstd) = self.zstd.as_mut() else {
                    return false;
                };
                // Room for anything smaller than the plaintext, no more:
                // output that does not fit is output not worth keeping.
                frame.resize(HEADER_LEN + plaintext.len().saturating_sub(1), 0);
                match zstd.compress_to_buffer(plaintext, &mut frame[HEADER_LEN..]) {
                    Ok(len) => {
                        frame.truncate(HEADER_LEN + len);
                        true
                    }
                    Err(_) => false,
                }
            }
            Codec::Zlib => {
                let level = flate2::Compression::new(self.level.clamp(1, 9) as u32);
                let mut encoder = flate2::write::ZlibEncoder::new(std::mem::take(frame), level);
                let done = encoder.write_all(plaintext).and_then(|_| encoder.finish());
                Self::keep_if_smaller(done, plaintext.len(), frame)
            }
            Codec::Bz2 => {
                let level = bzip2::Compression::new(self.level.clamp(1, 9) as u32);
                let mut encoder = bzip2::write::BzEncoder::new(std::mem::take(frame), level);
                let done = encoder.write_all(plaintext).and_then(|_| encoder.finish());
                Self::keep_if_smaller(done, plaintext.len(), frame)
            }
        }
    }

    /// Puts a streaming encoder's output back into `frame`; whether the
    /// payload came out smaller than the plaintext.
    fn keep_if_smaller(
        done: std::io::Result<Vec<u8>>,
        plain_len: usize,
        frame: &mut Vec<u8>,
    ) -> bool {
        match done {
            Ok(bytes) => {
                *frame = bytes;
                frame.len() < HEADER_LEN + plain_len
            }
            Err(_) => false,
        }
    }
}

/// The CRC of a frame: over its codec, reserved and length bytes and its payload.
fn frame_crc(frame: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&frame[4..12]);
    hasher.update(&frame[HEADER_LEN..]);
    hasher.finalize()
}

/// A frame's header, once its structure and CRC have been checked.
struct CheckedFrame<'a> {
    codec: Codec,
    plain_len: usize,
    payload: &'a [u8],
}

fn check(frame: &[u8]) -> Result<CheckedFrame<'_>, ChunkError> {
    if frame.len() < HEADER_LEN {
        return Err(ChunkError::Truncated(frame.len()));
    }
    if frame[..4] != CHUNK_MAGIC {
        return Err(ChunkError::BadMagic);
    }
    let crc = u32::from_le_bytes([frame[12], frame[13], frame[14], frame[15]]);
    if frame_crc(frame) != crc {
        return Err(ChunkError::CrcMismatch);
    }
    let codec = Codec::from_tag(frame[4]).ok_or(ChunkError::UnknownCodec(frame[4]))?;
    let plain_len = u32::from_le_bytes([frame[8], frame[9], frame[10], frame[11]]) as usize;
    if plain_len > MAX_PLAIN_LEN {
        return Err(ChunkError::LengthMismatch {
            expected: MAX_PLAIN_LEN,
            actual: plain_len,
        });
    }
    let payload = &frame[HEADER_LEN..];
    Ok(CheckedFrame {
        codec,
        plain_len,
        payload,
    })
}

/// Decodes frames back to plaintext and proves them against their digest.
/// Keeps its decompression context between chunks; one per worker thread.
pub struct ChunkDecoder {
    zstd: zstd::bulk::Decompressor<'static>,
}

impl ChunkDecoder {
    /// A decoder. Fails only if zstd cannot allocate its context.
    pub fn new() -> std::io::Result<Self> {
        Ok(ChunkDecoder {
            zstd: zstd::bulk::Decompressor::new()?,
        })
    }

    /// Decodes `frame` into `out` (replacing its contents) and checks that
    /// the plaintext hashes to `expected`.
    pub fn decode_into(
        &mut self,
        frame: &[u8],
        expected: &ChunkDigest,
        out: &mut Vec<u8>,
    ) -> Result<(), ChunkError> {
        let plain_len = check(frame)?.plain_len;
        out.resize(plain_len, 0);
        self.decode_to(frame, expected, out).map(|_| ())
    }

    /// Decodes `frame` into the start of `out`, checks that the plaintext
    /// hashes to `expected`, and returns its length. `out` must have room
    /// for the plaintext length the header declares.
    pub fn decode_to(
        &mut self,
        frame: &[u8],
        expected: &ChunkDigest,
        out: &mut [u8],
    ) -> Result<usize, ChunkError> {
        let checked = check(frame)?;
        let room = out.len();
        let out = out
            .get_mut(..checked.plain_len)
            .ok_or(ChunkError::LengthMismatch {
                expected: room,
                actual: checked.plain_len,
            })?;
        let decoded = match checked.codec {
            Codec::None => {
                if checked.payload.len() == out.len() {
                    out.copy_from_slice(checked.payload);
                }
                checked.payload.len()
            }
            Codec::Zstd => self
                .zstd
                .decompress_to_buffer(checked.payload, out)
                .map_err(|e| ChunkError::Decompress(e.to_string()))?,
            Codec::Zlib => read_exactly(flate2::read::ZlibDecoder::new(checked.payload), out)?,
            Codec::Bz2 => read_exactly(bzip2::read::BzDecoder::new(checked.payload), out)?,
        };
        if decoded != checked.plain_len {
            return Err(ChunkError::LengthMismatch {
                expected: checked.plain_len,
                actual: decoded,
            });
        }
        let actual = digest_of(out);
        if actual != *expected {
            return Err(ChunkError::DigestMismatch { actual });
        }
        Ok(decoded)
    }
}

/// Fills `out` from a decompressing reader; the length decoded, which is
/// more than `out` holds if the stream goes on.
fn read_exactly(mut reader: impl Read, out: &mut [u8]) -> Result<usize, ChunkError> {
    let err = |e: std::io::Error| ChunkError::Decompress(e.to_string());
    let mut filled = 0;
    while filled < out.len() {
        match reader.read(&mut out[filled..]).map_err(err)? {
            0 => return Ok(filled),
            n => filled += n,
        }
    }
    let mut probe = [0u8; 1];
    Ok(filled + reader.read(&mut probe).map_err(err)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ (i / 7) as u8).collect()
    }

    fn pseudo_random(len: usize) -> Vec<u8> {
        let mut state = 0x9e3779b97f4a7c15u64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn every_codec_round_trips_and_is_verified() {
        let plain = sample(32 * 1024);
        let digest = digest_of(&plain);
        let mut decoder = ChunkDecoder::new().expect("decoder");
        for codec in [Codec::None, Codec::Zstd, Codec::Zlib, Codec::Bz2] {
            let encoded = ChunkEncoder::new(codec, 3).expect("encoder").encode(&plain);
            assert_eq!(encoded.codec, codec, "compressible data keeps {codec}");
            let mut out = Vec::new();
            decoder
                .decode_into(&encoded.frame, &digest, &mut out)
                .expect("decode");
            assert_eq!(out, plain);
        }
    }

    #[test]
    fn incompressible_data_falls_back_to_none() {
        let plain = pseudo_random(32 * 1024);
        let encoded = ChunkEncoder::new(Codec::Zstd, 3)
            .expect("encoder")
            .encode(&plain);
        assert_eq!(encoded.codec, Codec::None);
        assert_eq!(encoded.frame.len(), HEADER_LEN + plain.len());
    }

    #[test]
    fn the_probe_skips_only_chunks_that_do_not_compress_anywhere() {
        let mut encoder = ChunkEncoder::new(Codec::Zstd, 1).expect("encoder");
        // Random at the start, compressible in the other three places probed.
        let mut mixed = pseudo_random(8 * 1024);
        mixed.extend(sample(24 * 1024));
        let encoded = encoder.encode(&mixed);
        assert_eq!(encoded.codec, Codec::Zstd);
        assert!(encoded.frame.len() < HEADER_LEN + mixed.len());
        for codec in [Codec::Zlib, Codec::Bz2, Codec::Zstd] {
            let random = pseudo_random(64 * 1024);
            let encoded = ChunkEncoder::new(codec, 1)
                .expect("encoder")
                .encode(&random);
            assert_eq!(encoded.codec, Codec::None, "{codec}");
            let mut decoder = ChunkDecoder::new().expect("decoder");
            let mut out = Vec::new();
            decoder
                .decode_into(&encoded.frame, &digest_of(&random), &mut out)
                .expect("decodes");
            assert!(out == random);
        }
    }

    #[test]
    fn damage_is_detected() {
        let plain = sample(4096);
        let digest = digest_of(&plain);
        let mut frame = ChunkEncoder::new(Codec::Zstd, 3)
            .expect("encoder")
            .encode(&plain)
            .frame;
        let mut decoder = ChunkDecoder::new().expect("decoder");
        let mut out = Vec::new();

        let mut header_damaged = frame.clone();
        header_damaged[9] ^= 0x40;
        assert_eq!(
            decoder.decode_into(&header_damaged, &digest, &mut out),
            Err(ChunkError::CrcMismatch),
            "length is covered"
        );
        let last = frame.len() - 1;
        frame[last] ^= 1;
        assert_eq!(
            decoder.decode_into(&frame, &digest, &mut out),
            Err(ChunkError::CrcMismatch)
        );
        assert_eq!(
            decoder.decode_into(&frame[..10], &digest, &mut out),
            Err(ChunkError::Truncated(10))
        );

        let good = ChunkEncoder::new(Codec::None, 0)
            .expect("encoder")
            .encode(&plain)
            .frame;
        let other = digest_of(b"something else");
        assert!(matches!(
            decoder.decode_into(&good, &other, &mut out),
            Err(ChunkError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn zero_detection() {
        assert!(is_all_zero(&vec![0u8; 70_000]));
        let mut data = vec![0u8; 70_000];
        data[69_999] = 1;
        assert!(!is_all_zero(&data));
        assert!(is_all_zero(&[]));
    }
}
