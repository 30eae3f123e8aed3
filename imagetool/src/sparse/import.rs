//! Stream to image: detects the format, writes zero blocks as holes, verifies the digest, and
//! puts the image in place only when all of it is good.

use std::io::{self, Cursor, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use indicatif::ProgressBar;

use super::counting::{CountingReader, ReadStats};
use super::format::MAGIC_LEN;
use super::hasher::BackgroundHasher;
use super::zeros::Runs;
use super::{Format, SparseError, trailer};
use crate::atomic::{AtomicFile, Overwrite};

/// Content is decompressed in pieces of this size, at offsets that are multiples of it.
const CHUNK: usize = 1 << 20;
/// Used when the file system does not say its block size, or says something odd.
const FALLBACK_BLOCK: usize = 4096;
/// How much of the input's start is read before choosing a decoder: the magic number, or a
/// whole leader record (see [`trailer`]).
const HEAD_LEN: usize = 64;

/// How to import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// `None` detects gzip and zstd by their magic numbers and takes anything else as raw.
    pub format: Option<Format>,
    /// The image's final apparent size: the content is followed by a hole up to it. Content
    /// longer than this is an error (found as soon as it is read). `None` is the content's length.
    pub size: Option<u64>,
    /// Lower- or upper-case hex SHA-256 the content must have.
    pub expected_sha256: Option<String>,
    pub overwrite: Overwrite,
    /// Advanced by input bytes read; set its length to the input's size if known.
    pub progress: ProgressBar,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            format: None,
            size: None,
            expected_sha256: None,
            overwrite: Overwrite::Refuse,
            progress: ProgressBar::hidden(),
        }
    }
}

/// What an import read and wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportReport {
    pub format: Format,
    /// Bytes read from the input (compressed size).
    pub input_bytes: u64,
    /// Bytes of content (decompressed size).
    pub content_bytes: u64,
    /// The image's apparent size: `content_bytes`, or the requested size.
    pub image_size: u64,
    /// Bytes written, all in non-zero blocks; the rest are holes.
    pub written_bytes: u64,
    /// Bytes the file system allocated for the image (`st_blocks` × 512), as `du` reports.
    pub allocated_bytes: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    /// Whether `expected_sha256` was given (and so matched).
    pub verified: bool,
    /// Whether the stream ended with imagetool's record of its length and SHA-256 (and so
    /// matched): true for gzip and zstd streams from [`super::export`].
    pub sealed: bool,
}

/// Reads a gzip, zstd or raw stream from `input` into a new sparse file at `dest`. The image is
/// written under a temporary name beside `dest` and renamed into place only after the whole
/// stream was read, decoded and (if a digest was given) verified; on any error nothing is left.
pub fn import(
    input: &mut dyn Read,
    dest: &Path,
    opts: &ImportOptions,
) -> Result<ImportReport, SparseError> {
    let expected = opts.expected_sha256.as_deref().map(str::to_ascii_lowercase);
    let stats = ReadStats::with_tail(trailer::MAX_RECORD);
    let mut counted = CountingReader::new(input, stats.clone());
    let mut head = vec![0u8; HEAD_LEN.max(MAGIC_LEN)];
    let head_len = fill(&mut counted, &mut head).map_err(|(_, err)| SparseError::ReadInput(err))?;
    head.truncate(head_len);
    let format = match opts.format {
        Some(f) => f,
        None => Format::detect(&head)?,
    };
    let sealed = trailer::has_leader(format, &head);
    let source = Cursor::new(head).chain(counted);
    let mut decoder: Box<dyn Read + '_> = match format {
        Format::Gzip => Box::new(flate2::read::MultiGzDecoder::new(source)),
        Format::Zstd => Box::new(
            zstd::stream::read::Decoder::new(source)
                .map_err(|err| SparseError::Decoder { format, err })?,
        ),
        Format::Raw => Box::new(source),
    };

    let mut out = AtomicFile::create(dest, opts.overwrite).map_err(|err| {
        if err.kind() == io::ErrorKind::AlreadyExists {
            SparseError::Exists {
                path: dest.to_path_buf(),
            }
        } else {
            SparseError::Create {
                path: dest.to_path_buf(),
                err,
            }
        }
    })?;
    let write_err = |err| SparseError::WriteImage {
        path: dest.to_path_buf(),
        err,
    };
    let block = block_size(out.file());
    let mut hasher = BackgroundHasher::spawn(CHUNK)?;
    let mut off = 0u64;
    let mut written = 0u64;
    loop {
        let mut buf = hasher.buffer()?;
        let n = fill(&mut decoder, &mut buf).map_err(|(filled, err)| {
            let offset = off + filled as u64;
            if stats.input_failed() || format == Format::Raw {
                SparseError::ReadInput(err)
            } else if err.kind() == io::ErrorKind::UnexpectedEof {
                SparseError::Truncated { format, offset }
            } else {
                SparseError::Corrupt {
                    format,
                    offset,
                    err,
                }
            }
        })?;
        if n == 0 {
            hasher.give_back(buf);
            break;
        }
        buf.truncate(n);
        if let Some(limit) = opts.size
            && off + n as u64 > limit
        {
            return Err(SparseError::TooLarge {
                limit,
                at_least: off + n as u64,
            });
        }
        let mut all_zero = true;
        for run in Runs::new(&buf, off, block).filter(|r| !r.zero) {
            all_zero = false;
            out.file()
                .write_all_at(&buf[run.range.clone()], off + run.range.start as u64)
                .map_err(write_err)?;
            written += run.range.len() as u64;
        }
        if all_zero {
            hasher.zeros(n as u64)?;
            hasher.give_back(buf);
        } else {
            hasher.data(buf)?;
        }
        off += n as u64;
        opts.progress.set_position(stats.bytes());
    }

    let image_size = opts.size.unwrap_or(off);
    // Extends over trailing zero blocks, which were skipped, and up to the requested size.
    out.file().set_len(image_size).map_err(write_err)?;
    // A sealed stream without its end record was cut, perhaps between two members.
    let recorded = if sealed {
        match trailer::parse_end(format, &stats.tail()) {
            Some((len, sha)) if len == off => Some(sha),
            Some((len, _)) => {
                return Err(SparseError::LengthMismatch {
                    recorded: len,
                    actual: off,
                });
            }
            None => {
                return Err(SparseError::Truncated {
                    format,
                    offset: off,
                });
            }
        }
    } else {
        None
    };
    let sha256 = hasher.finish()?.ok_or(SparseError::HasherGone)?;
    if let Some(expected) = &expected
        && *expected != sha256
    {
        return Err(SparseError::DigestMismatch {
            expected: expected.clone(),
            actual: sha256,
        });
    }
    if let Some(recorded) = recorded
        && recorded != sha256
    {
        return Err(SparseError::RecordedDigestMismatch {
            recorded,
            actual: sha256,
        });
    }
    out.commit().map_err(write_err)?;
    let allocated_bytes = std::fs::metadata(dest)
        .map(|m| m.blocks() * 512)
        .map_err(write_err)?;
    Ok(ImportReport {
        format,
        input_bytes: stats.bytes(),
        content_bytes: off,
        image_size,
        written_bytes: written,
        allocated_bytes,
        sha256,
        verified: expected.is_some(),
        sealed,
    })
}

/// Reads until `buf` is full or the input ends. On error, also says how much was read.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> Result<usize, (usize, io::Error)> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((filled, e)),
        }
    }
    Ok(filled)
}

/// The file system's allocation unit, the granularity at which holes exist.
fn block_size(file: &std::fs::File) -> usize {
    match rustix::fs::fstatvfs(file) {
        Ok(s) => usize::try_from(s.f_frsize)
            .ok()
            .filter(|b| b.is_power_of_two() && (512..=CHUNK).contains(b))
            .unwrap_or(FALLBACK_BLOCK),
        Err(_) => FALLBACK_BLOCK,
    }
}
