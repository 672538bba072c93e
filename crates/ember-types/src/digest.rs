//! Chunk digests: the names of stored chunks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The SHA-256 of a chunk's plaintext; a chunk is stored under this name,
/// so identical data is stored once.
///
/// The all-zero value is reserved: it stands for a chunk of zeros (a hole),
/// which is never stored. SHA-256 yielding 32 zero bytes is not a practical
/// possibility.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkDigest(pub [u8; 32]);

impl ChunkDigest {
    /// The marker for an all-zero chunk, recorded instead of a real digest.
    pub const ZERO_CHUNK: ChunkDigest = ChunkDigest([0u8; 32]);

    /// Whether this digest marks an all-zero chunk (a hole).
    pub fn is_zero_chunk(&self) -> bool {
        *self == Self::ZERO_CHUNK
    }

    /// Lower-case hexadecimal form, the chunk's object name.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ChunkDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkDigest({})", self.to_hex())
    }
}

/// A string that is not 64 hexadecimal digits was given as a chunk digest.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a chunk digest (expected 64 hexadecimal digits)")]
pub struct DigestParseError(pub String);

impl FromStr for ChunkDigest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| DigestParseError(s.to_string()))?;
        Ok(ChunkDigest(bytes))
    }
}

impl Serialize for ChunkDigest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ChunkDigest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let digest = ChunkDigest([0xab; 32]);
        assert_eq!(
            digest.to_hex().parse::<ChunkDigest>().expect("parse"),
            digest
        );
        assert!(!digest.is_zero_chunk());
        assert!(ChunkDigest::ZERO_CHUNK.is_zero_chunk());
    }

    #[test]
    fn short_hex_is_rejected() {
        assert!("abcd".parse::<ChunkDigest>().is_err());
    }
}
