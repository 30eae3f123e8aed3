use std::io;
use std::path::PathBuf;

use thiserror::Error;

use super::Format;

/// Why an export or import failed. Each message is one line that says what to do; the I/O error
/// text is part of the message, so these carry no `source()` to be printed twice.
#[derive(Debug, Error)]
pub enum SparseError {
    #[error("cannot open {}: {err}", path.display())]
    Open { path: PathBuf, err: io::Error },
    #[error("{} is not a disk image: give a regular file or a block device", path.display())]
    NotAnImage { path: PathBuf },
    #[error("cannot read {}: {err}", path.display())]
    Read { path: PathBuf, err: io::Error },
    #[error("{} shrank while it was being read: stop whatever writes to it and retry", path.display())]
    Changed { path: PathBuf },
    #[error("cannot write the output: {0}")]
    Write(io::Error),
    #[error("the output was closed by its reader before the stream was complete (broken pipe)")]
    OutputClosed,
    #[error("compression level {level} is out of range for {format}: use {min} to {max}")]
    InvalidLevel {
        format: Format,
        level: i32,
        min: i32,
        max: i32,
    },
    #[error("raw streams are not compressed, so they take no compression level")]
    LevelNotApplicable,
    #[error("{} already exists", path.display())]
    Exists { path: PathBuf },
    #[error("cannot create {}: {err}", path.display())]
    Create { path: PathBuf, err: io::Error },
    #[error("cannot write {}: {err}", path.display())]
    WriteImage { path: PathBuf, err: io::Error },
    #[error("cannot read the input: {0}")]
    ReadInput(io::Error),
    #[error(
        "the input is {what}, which import does not read: decompress it first and pipe it in with `-`"
    )]
    Unsupported { what: &'static str },
    #[error("cannot start the {format} decoder: {err}")]
    Decoder { format: Format, err: io::Error },
    #[error("the {format} stream is corrupt after {offset} bytes of content: {err}")]
    Corrupt {
        format: Format,
        offset: u64,
        err: io::Error,
    },
    #[error(
        "the {format} stream ends early, after {offset} bytes of content: the input is truncated, fetch it again"
    )]
    Truncated { format: Format, offset: u64 },
    #[error(
        "the content is larger than the requested image size of {limit} bytes (at least {at_least} bytes): give a larger size or none"
    )]
    TooLarge { limit: u64, at_least: u64 },
    #[error(
        "sha256 mismatch: the content hashes to {actual} but the digest says {expected}: the input is corrupt or the digest belongs to another file"
    )]
    DigestMismatch { expected: String, actual: String },
    #[error(
        "sha256 mismatch: the content hashes to {actual} but the stream's end record says {recorded}: the input is corrupt"
    )]
    RecordedDigestMismatch { recorded: String, actual: String },
    #[error(
        "the stream's end record says {recorded} bytes of content but it holds {actual}: the input is corrupt or two streams were joined"
    )]
    LengthMismatch { recorded: u64, actual: u64 },
    #[error("cannot start the hashing thread: {0}")]
    Thread(io::Error),
    #[error("internal error: the hashing thread stopped")]
    HasherGone,
}

impl SparseError {
    /// The error for a failed write to an export's output stream. A reader that went away gets
    /// its own message because "Broken pipe" alone does not say whose fault it was.
    pub fn output(err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::BrokenPipe {
            Self::OutputClosed
        } else {
            Self::Write(err)
        }
    }
}
