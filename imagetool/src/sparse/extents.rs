//! The data extents of a file, from `SEEK_DATA`/`SEEK_HOLE`.

use std::fs::File;
use std::io;
use std::ops::Range;

use rustix::fs::{SeekFrom, seek};

/// Iterates over the byte ranges of a file that hold data, in order; everything between them is
/// a hole. File systems without hole support report the whole file as one extent, as the kernel's
/// generic `SEEK_DATA` does; a refused query (`EINVAL`) is treated the same way.
pub struct DataExtents<'a> {
    file: &'a File,
    pos: u64,
    size: u64,
}

impl<'a> DataExtents<'a> {
    /// Extents of the first `size` bytes of `file` (its length, or a block device's size).
    pub fn new(file: &'a File, size: u64) -> Self {
        Self { file, pos: 0, size }
    }

    fn next_extent(&mut self) -> io::Result<Option<Range<u64>>> {
        if self.pos >= self.size {
            return Ok(None);
        }
        let start = match seek(self.file, SeekFrom::Data(self.pos)) {
            Ok(s) => s,
            // ENXIO: no data at or after `pos`, the rest is one hole.
            Err(rustix::io::Errno::NXIO) => {
                self.pos = self.size;
                return Ok(None);
            }
            Err(rustix::io::Errno::INVAL) => self.pos,
            Err(e) => return Err(e.into()),
        };
        if start >= self.size {
            self.pos = self.size;
            return Ok(None);
        }
        let end = match seek(self.file, SeekFrom::Hole(start)) {
            Ok(e) => e.min(self.size),
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NXIO) => self.size,
            Err(e) => return Err(e.into()),
        };
        // A hole reported at or before `start` would loop forever; treat the rest as data.
        let end = if end <= start { self.size } else { end };
        self.pos = end;
        Ok(Some(start..end))
    }
}

impl Iterator for DataExtents<'_> {
    type Item = io::Result<Range<u64>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_extent().transpose()
    }
}
