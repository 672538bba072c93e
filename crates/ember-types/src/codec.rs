//! Compression codecs, with Cinder's names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a chunk's bytes are compressed at rest. The set is Cinder's
/// (`backup_compression_algorithm`), with zstd as Ember's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Stored as is.
    #[serde(alias = "off", alias = "no")]
    None,
    /// Zstandard (the default: fast on every core, good ratio).
    #[default]
    Zstd,
    /// zlib (deflate), Cinder's historical default.
    #[serde(alias = "gzip")]
    Zlib,
    /// bzip2.
    #[serde(alias = "bzip2")]
    Bz2,
}

impl Codec {
    /// The one-byte tag written in a chunk's header.
    pub fn tag(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Zstd => 1,
            Codec::Zlib => 2,
            Codec::Bz2 => 3,
        }
    }

    /// The codec a chunk header's tag names, if any.
    pub fn from_tag(tag: u8) -> Option<Codec> {
        match tag {
            0 => Some(Codec::None),
            1 => Some(Codec::Zstd),
            2 => Some(Codec::Zlib),
            3 => Some(Codec::Bz2),
            _ => None,
        }
    }

    /// Canonical name, as accepted by `FromStr`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Zstd => "zstd",
            Codec::Zlib => "zlib",
            Codec::Bz2 => "bz2",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown compression name was given.
#[derive(Debug, thiserror::Error)]
#[error("unknown compression '{0}' (expected zstd, zlib, bz2 or none)")]
pub struct CodecParseError(pub String);

impl FromStr for Codec {
    type Err = CodecParseError;

    /// Accepts Cinder's spellings too: `gzip`, `bzip2`, `off`, `no`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "zstd" => Ok(Codec::Zstd),
            "zlib" | "gzip" => Ok(Codec::Zlib),
            "bz2" | "bzip2" => Ok(Codec::Bz2),
            "none" | "off" | "no" => Ok(Codec::None),
            _ => Err(CodecParseError(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cinder_aliases_parse() {
        assert_eq!("gzip".parse::<Codec>().expect("gzip"), Codec::Zlib);
        assert_eq!("BZIP2".parse::<Codec>().expect("bzip2"), Codec::Bz2);
        assert_eq!("off".parse::<Codec>().expect("off"), Codec::None);
        assert!("lz4".parse::<Codec>().is_err());
    }

    #[test]
    fn tags_round_trip() {
        for codec in [Codec::None, Codec::Zstd, Codec::Zlib, Codec::Bz2] {
            assert_eq!(Codec::from_tag(codec.tag()), Some(codec));
        }
        assert_eq!(Codec::from_tag(9), None);
    }
}
