//! Writing packs: chunk frames appended to one object, sealed with an index.

use ember_format::pack::{PACK_MAGIC, PACK_TARGET_LEN};
use ember_format::{ChunkLocation, PackId, PackLayout};
use ember_store::{ObjectWriter, StoreError};
use ember_types::ChunkDigest;

use crate::RepoError;

/// A pack being written by one backup worker. Nothing of it is visible
/// until [`PackWriter::seal`]; dropping it unsealed discards it.
pub struct PackWriter {
    id: PackId,
    sink: Box<dyn ObjectWriter>,
    layout: PackLayout,
}

impl PackWriter {
    pub(crate) fn start(id: PackId, mut sink: Box<dyn ObjectWriter>) -> Result<Self, RepoError> {
        sink.write_all(&PACK_MAGIC)
            .map_err(|e| StoreError::io(format!("write pack {id}"), e))?;
        Ok(PackWriter {
            id,
            sink,
            layout: PackLayout::default(),
        })
    }

    /// The pack's id.
    pub fn id(&self) -> PackId {
        self.id
    }

    /// Whether the pack has reached its target size and should be sealed.
    pub fn is_full(&self) -> bool {
        self.layout.len() >= PACK_TARGET_LEN
    }

    /// Appends the frame of chunk `digest` and returns where it will be
    /// once the pack is sealed.
    pub fn append(
        &mut self,
        digest: ChunkDigest,
        frame: &[u8],
    ) -> Result<ChunkLocation, RepoError> {
        let offset = self
            .layout
            .add(digest, frame.len())
            .ok_or(RepoError::PackOverflow(self.id))?;
        self.sink
            .write_all(frame)
            .map_err(|e| StoreError::io(format!("write pack {}", self.id), e))?;
        Ok(ChunkLocation {
            pack: self.id,
            offset,
            len: frame.len() as u32,
        })
    }

    /// Writes the index, then makes the pack durable and visible.
    pub fn seal(mut self) -> Result<(), RepoError> {
        self.sink
            .write_all(&self.layout.tail())
            .map_err(|e| StoreError::io(format!("write pack {}", self.id), e))?;
        Ok(self.sink.commit()?)
    }
}
