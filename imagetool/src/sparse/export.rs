//! Image to stream: reads the data extents only, hashes everything, writes gzip/zstd/raw.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;

use super::counting::CountingWriter;
use super::encoder::StreamEncoder;
use super::hasher::BackgroundHasher;
use super::zeros::Runs;
use super::{DataExtents, Format, SparseError, trailer};

/// Data is read in pieces of this size, at offsets that are multiples of it.
const CHUNK: usize = 1 << 20;
/// Granularity at which written zeros inside data extents are found and treated as holes.
const ZERO_BLOCK: usize = 4096;

/// How to export.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub format: Format,
    /// Compression level; `None` is the format's usual default (gzip 6, zstd 3).
    pub level: Option<i32>,
    /// Advanced by the image bytes covered; see [`crate::progress::bytes`].
    pub progress: ProgressBar,
    /// Compute the SHA-256 of the content (and seal gzip/zstd streams with it, see the module
    /// documentation). Hashing every byte, holes included, is most of the time an export of a
    /// big sparse image takes (about 0.75 s per GiB here); `false` skips it.
    pub digest: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            format: Format::Gzip,
            level: None,
            progress: ProgressBar::hidden(),
            digest: true,
        }
    }
}

/// What an export read and wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportReport {
    pub format: Format,
    /// The level used; 0 for raw.
    pub level: i32,
    /// The image's size in bytes, holes included: the length of the decompressed stream.
    pub apparent_size: u64,
    /// Bytes in data extents, which is what was read.
    pub data_bytes: u64,
    /// Of `data_bytes`, those in all-zero 4 KiB blocks, exported like holes.
    pub zero_data_bytes: u64,
    /// Number of data extents.
    pub extents: u64,
    /// Bytes written to the output.
    pub output_bytes: u64,
    /// Lower-case hex SHA-256 of the raw content, equal to `sha256sum IMAGE`; `None` when
    /// [`ExportOptions::digest`] was off.
    pub sha256: Option<String>,
}

/// Writes `image` to `out` as one standard stream in `opts.format`. Nothing is written to `out`
/// before the options and the image have been checked; on error `out` holds an incomplete
/// stream, so a caller writing a file should write it through [`crate::atomic::AtomicFile`].
pub fn export(
    image: &Path,
    out: &mut dyn Write,
    opts: &ExportOptions,
) -> Result<ExportReport, SparseError> {
    let level = opts.format.level(opts.level)?;
    let file = open(image)?;
    let size = size_of(&file, image)?;
    opts.progress.set_length(size);

    let mut job = Export {
        file: &file,
        path: image,
        hasher: if opts.digest {
            BackgroundHasher::spawn(CHUNK)?
        } else {
            BackgroundHasher::disabled(CHUNK)
        },
        enc: StreamEncoder::new(CountingWriter::new(out), opts.format, level),
        progress: &opts.progress,
        pending_zeros: 0,
        data_bytes: 0,
        zero_data_bytes: 0,
    };
    // Without a digest there is nothing to seal the stream with.
    let leader = opts.digest.then(|| trailer::leader(opts.format)).flatten();
    if let Some(leader) = leader {
        job.enc.whole_member(&leader).map_err(SparseError::output)?;
    }
    let mut pos = 0;
    let mut extents = 0;
    for extent in DataExtents::new(&file, size) {
        let extent = extent.map_err(|err| read_error(image, err))?;
        job.hole(extent.start - pos)?;
        job.data(extent.start, extent.end)?;
        pos = extent.end;
        extents += 1;
    }
    job.hole(size - pos)?;

    let Export {
        hasher,
        enc,
        pending_zeros,
        data_bytes,
        zero_data_bytes,
        ..
    } = job;
    let mut enc = enc;
    enc.zeros(pending_zeros).map_err(SparseError::output)?;
    let sha256 = hasher.finish()?;
    let record = sha256
        .as_deref()
        .and_then(|sha| trailer::end(opts.format, size, sha));
    if let Some(record) = record {
        enc.whole_member(&record).map_err(SparseError::output)?;
    }
    let mut counted = enc.finish().map_err(SparseError::output)?;
    counted.flush().map_err(SparseError::output)?;
    tracing::debug!("exported {extents} data extents");
    Ok(ExportReport {
        format: opts.format,
        level,
        apparent_size: size,
        data_bytes,
        zero_data_bytes,
        extents,
        output_bytes: counted.count(),
        sha256,
    })
}

struct Export<'a, 'o> {
    file: &'a File,
    path: &'a Path,
    hasher: BackgroundHasher,
    enc: StreamEncoder<CountingWriter<&'o mut dyn Write>>,
    progress: &'a ProgressBar,
    /// Zeros (holes and zero blocks) not yet given to the encoder, so that a hole and the zero
    /// blocks around it become one run.
    pending_zeros: u64,
    data_bytes: u64,
    zero_data_bytes: u64,
}

impl Export<'_, '_> {
    fn hole(&mut self, len: u64) -> Result<(), SparseError> {
        self.hasher.zeros(len)?;
        self.pending_zeros += len;
        self.progress.inc(len);
        Ok(())
    }

    /// Reads `start..end` in chunks aligned to [`CHUNK`]; zero blocks join the pending zeros.
    fn data(&mut self, start: u64, end: u64) -> Result<(), SparseError> {
        let mut off = start;
        while off < end {
            let chunk_end = end.min((off / CHUNK as u64 + 1) * CHUNK as u64);
            // At most CHUNK, so it fits a usize.
            let len = (chunk_end - off) as usize;
            let mut buf = self.hasher.buffer()?;
            buf.truncate(len);
            self.file.read_exact_at(&mut buf, off).map_err(|err| {
                if err.kind() == io::ErrorKind::UnexpectedEof {
                    SparseError::Changed {
                        path: self.path.to_path_buf(),
                    }
                } else {
                    read_error(self.path, err)
                }
            })?;
            for run in Runs::new(&buf, off, ZERO_BLOCK) {
                let n = run.range.len() as u64;
                if run.zero {
                    self.pending_zeros += n;
                    self.zero_data_bytes += n;
                } else {
                    let zeros = std::mem::take(&mut self.pending_zeros);
                    self.enc.zeros(zeros).map_err(SparseError::output)?;
                    self.enc
                        .data(&buf[run.range])
                        .map_err(SparseError::output)?;
                }
            }
            self.hasher.data(buf)?;
            self.data_bytes += len as u64;
            self.progress.inc(len as u64);
            off = chunk_end;
        }
        Ok(())
    }
}

fn read_error(path: &Path, err: io::Error) -> SparseError {
    SparseError::Read {
        path: PathBuf::from(path),
        err,
    }
}

/// The apparent size of an image (a regular file or block device): what [`export`] will cover.
pub fn image_size(image: &Path) -> Result<u64, SparseError> {
    size_of(&open(image)?, image)
}

fn open(image: &Path) -> Result<File, SparseError> {
    File::open(image).map_err(|err| SparseError::Open {
        path: image.to_path_buf(),
        err,
    })
}

/// The size of a regular file or block device; anything else is not an image.
fn size_of(mut file: &File, path: &Path) -> Result<u64, SparseError> {
    let meta = file.metadata().map_err(|err| read_error(path, err))?;
    let kind = meta.file_type();
    if kind.is_file() {
        Ok(meta.len())
    } else if kind.is_block_device() {
        file.seek(SeekFrom::End(0))
            .map_err(|err| read_error(path, err))
    } else {
        Err(SparseError::NotAnImage {
            path: path.to_path_buf(),
        })
    }
}
