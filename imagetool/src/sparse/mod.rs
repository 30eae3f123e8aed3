//! Sparse-aware export and import of disk images: a disk costs what its data costs.
//!
//! [`export`] reads only the data extents of an image (`SEEK_DATA`/`SEEK_HOLE`) and writes a
//! standard gzip, zstd or raw stream that stock `gunzip`/`zstd -d` turn back into the exact image.
//! Holes, and long runs of written zeros, become pre-compressed gzip members or zstd frames of
//! zeros that are made once and emitted as often as needed, so they cost no read and no
//! compression. [`import`] detects the format, writes zero blocks as holes, checks the SHA-256 of
//! the content when a digest is given, and leaves the image in place only when all of it is good.
//!
//! The SHA-256 covers every byte of the raw content, holes included, so it equals what
//! `sha256sum` prints for the image; it is computed on its own thread beside the compression.
//! gzip and zstd exports open with a leader and close with a record of the content's length and
//! SHA-256, both of a kind stock tools skip, so that import catches a stream cut between two
//! members and checks the digest even when the stream arrives on a pipe.

mod counting;
mod encoder;
mod error;
mod export;
mod extents;
mod format;
mod hasher;
mod import;
mod trailer;
mod zeros;

pub use error::SparseError;
pub use export::{ExportOptions, ExportReport, export, image_size};
pub use extents::DataExtents;
pub use format::Format;
pub use import::{ImportOptions, ImportReport, import};
