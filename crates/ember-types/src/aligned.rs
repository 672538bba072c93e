//! Buffers aligned for direct I/O (used by the restore target and by the
//! POSIX store, which both write with `O_DIRECT` where they can).

/// Alignment of buffers, offsets and lengths for direct I/O: the page
/// size, which is also a multiple of every device's logical block size.
pub const DIRECT_IO_ALIGN: usize = 4096;

/// A byte buffer whose start is aligned to [`DIRECT_IO_ALIGN`], so it can
/// be written with direct I/O (no copy through the page cache).
#[derive(Debug, Default)]
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the buffer `len` bytes long (contents unspecified after a
    /// growth; a buffer that grows is reallocated and realigned).
    pub fn resize(&mut self, len: usize) {
        if self.storage.len() < self.start + len {
            self.storage = vec![0u8; len + DIRECT_IO_ALIGN];
            self.start = self.storage.as_ptr().align_offset(DIRECT_IO_ALIGN);
        }
        self.len = len;
    }

    /// The buffer's bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    /// The buffer's bytes, for writing into.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }

    /// The buffer's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
