use std::io::{self, Read};

use thiserror::Error;

use super::format::Format;
use super::members::Members;
use super::peek::PeekReader;

const BUF_SIZE: usize = 1 << 20;
const TRAILER: &str = "TRAILER!!!";

/// One archive member as the walker hands it to a visitor.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The name as stored (`./usr.squashfs`).
    pub raw_name: String,
    /// The name without leading `./` or `/` (`usr.squashfs`), as it lands in the rootfs.
    pub name: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub size: u64,
    /// Index of the segment (archive or compressed run) it came from, from 0.
    pub segment: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
    Device,
    Other,
}

impl EntryKind {
    fn from_mode(mode: u32) -> Self {
        match mode & 0o170000 {
            0o100000 => EntryKind::File,
            0o040000 => EntryKind::Directory,
            0o120000 => EntryKind::Symlink,
            0o020000 | 0o060000 => EntryKind::Device,
            _ => EntryKind::Other,
        }
    }
}

/// A run of the input in one format: a plain cpio archive or consecutive compressed members.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Segment {
    pub format: Format,
    /// Byte offset in the input where it starts.
    pub offset: u64,
    /// Compressed members in it (0 for plain cpio).
    pub members: u64,
    pub entries: u64,
}

#[derive(Clone, Debug, Default)]
pub struct WalkSummary {
    pub segments: Vec<Segment>,
    pub entries: u64,
    /// The visitor asked to stop before the end of the input.
    pub stopped: bool,
}

/// What the visitor wants after an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visit {
    Continue,
    Stop,
}

#[derive(Debug, Error)]
pub enum WalkError {
    #[error("the input is empty")]
    Empty,
    #[error(
        "not a cpio archive: byte {offset} starts with {found}, expected a newc cpio header (070701) or gzip, xz or zstd data"
    )]
    NotCpio { offset: u64, found: String },
    #[error(
        "{format}-compressed data at byte {offset} is not supported: recompress the archive with gzip, xz or zstd"
    )]
    UnsupportedCompression { format: Format, offset: u64 },
    #[error(
        "the cpio archive at byte {offset} uses the old odc/binary format; Linux and imagetool read only newc (cpio -H newc)"
    )]
    OldCpio { offset: u64 },
    #[error(
        "junk inside {format}-compressed data (segment at byte {offset}): expected a cpio header, found {found}"
    )]
    JunkInCompressed {
        format: Format,
        offset: u64,
        found: String,
    },
    #[error("the archive is truncated: {0}")]
    Truncated(String),
    #[error("corrupt {format} data in the segment at byte {offset}: {source}")]
    Corrupt {
        format: Format,
        offset: u64,
        source: io::Error,
    },
    #[error("invalid cpio header in the segment at byte {offset}: {source}")]
    BadHeader { offset: u64, source: io::Error },
    #[error("cannot read the input: {0}")]
    Read(io::Error),
    /// The visitor failed; its error passes through unchanged.
    #[error(transparent)]
    Visitor(Box<dyn std::error::Error + Send + Sync>),
}

/// Strips the `./` and `/` prefixes archive tools add: `./usr.squashfs` -> `usr.squashfs`.
pub fn normalize_name(name: &str) -> String {
    let mut n = name;
    loop {
        if let Some(rest) = n.strip_prefix("./") {
            n = rest;
        } else if let Some(rest) = n.strip_prefix('/') {
            n = rest;
        } else {
            break;
        }
    }
    if n == "." {
        String::new()
    } else {
        n.to_string()
    }
}

fn describe(head: &[u8]) -> String {
    if head.is_empty() {
        return "the end of the data".into();
    }
    let hex: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let hint = if head.starts_with(b"\x7fELF") {
        " (an ELF file)"
    } else if head.starts_with(b"hsqs") {
        " (a bare squashfs image: use it directly)"
    } else if head.get(0x202..0x206) == Some(b"HdrS") {
        " (a Linux kernel)"
    } else {
        ""
    };
    format!("bytes {}{hint}", hex.join(" "))
}

/// Visits every entry of every archive in the input, in order. The visitor may read the entry's
/// data (all, part or none of it); the walker skips what is left and checks it was all there.
pub fn walk<R, F>(input: R, mut visit: F) -> Result<WalkSummary, WalkError>
where
    R: Read,
    F: FnMut(&Entry, &mut dyn Read) -> Result<Visit, Box<dyn std::error::Error + Send + Sync>>,
{
    let mut raw = PeekReader::with_capacity(BUF_SIZE, input);
    let mut summary = WalkSummary::default();
    loop {
        raw.skip_nuls().map_err(WalkError::Read)?;
        let offset = raw.offset();
        let head = raw.peek(Format::SNIFF_LEN).map_err(WalkError::Read)?;
        if head.is_empty() {
            if summary.segments.is_empty() {
                return Err(WalkError::Empty);
            }
            return Ok(summary);
        }
        let format = match Format::sniff(head) {
            Some(f) => f,
            None => {
                let found = describe(raw.peek(0x210).map_err(WalkError::Read)?);
                return Err(WalkError::NotCpio { offset, found });
            }
        };
        let index = summary.segments.len();
        summary.segments.push(Segment {
            format,
            offset,
            members: 0,
            entries: 0,
        });
        let flow = match format {
            Format::Cpio => archives(&mut raw, index, format, offset, &mut summary, &mut visit)?,
            Format::OldCpio => return Err(WalkError::OldCpio { offset }),
            f if f.is_supported_compression() => {
                let mut members = Members::new(f, &mut raw);
                let mut inner = PeekReader::with_capacity(BUF_SIZE, &mut members);
                let flow = archives(&mut inner, index, format, offset, &mut summary, &mut visit)?;
                drop(inner);
                summary.segments[index].members = members.members();
                flow
            }
            f => return Err(WalkError::UnsupportedCompression { format: f, offset }),
        };
        if flow == Visit::Stop {
            summary.stopped = true;
            return Ok(summary);
        }
    }
}

/// Reads cpio archives from `r` until it ends (a compressed run) or a non-cpio byte follows a
/// trailer (plain data, where the next segment may be compressed).
fn archives<R: Read, F>(
    r: &mut PeekReader<R>,
    segment: usize,
    format: Format,
    seg_offset: u64,
    summary: &mut WalkSummary,
    visit: &mut F,
) -> Result<Visit, WalkError>
where
    F: FnMut(&Entry, &mut dyn Read) -> Result<Visit, Box<dyn std::error::Error + Send + Sync>>,
{
    let data_err = |e: io::Error, what: &str| -> WalkError {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => WalkError::Truncated(format!("{what} ends early")),
            _ if format == Format::Cpio => WalkError::Read(e),
            _ => WalkError::Corrupt {
                format,
                offset: seg_offset,
                source: e,
            },
        }
    };
    let mut in_archive = false;
    loop {
        if !in_archive {
            r.skip_nuls()
                .map_err(|e| data_err(e, "padding between archives"))?;
            let head = r
                .peek(6)
                .map_err(|e| data_err(e, "padding between archives"))?;
            if head.is_empty() {
                return Ok(Visit::Continue);
            }
            match Format::sniff(head) {
                Some(Format::Cpio) => in_archive = true,
                // Plain data: whatever follows is the next segment's business.
                _ if format == Format::Cpio => return Ok(Visit::Continue),
                Some(Format::OldCpio) => return Err(WalkError::OldCpio { offset: seg_offset }),
                _ => {
                    let found = describe(head);
                    return Err(WalkError::JunkInCompressed {
                        format,
                        offset: seg_offset,
                        found,
                    });
                }
            }
        }
        let header_at = r.offset();
        let reader = cpio::NewcReader::new(&mut *r).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => WalkError::Truncated(format!(
                "cpio header at byte {header_at} of the {format} data is cut short"
            )),
            _ if format != Format::Cpio && e.get_ref().is_some_and(|i| i.is::<io::Error>()) => {
                WalkError::Corrupt {
                    format,
                    offset: seg_offset,
                    source: e,
                }
            }
            _ => WalkError::BadHeader {
                offset: seg_offset,
                source: e,
            },
        })?;
        let meta = reader.entry();
        if meta.name() == TRAILER {
            reader
                .finish()
                .map_err(|e| data_err(e, "the cpio trailer"))?;
            in_archive = false;
            continue;
        }
        let entry = Entry {
            raw_name: meta.name().to_string(),
            name: normalize_name(meta.name()),
            kind: EntryKind::from_mode(meta.mode()),
            mode: meta.mode(),
            size: u64::from(meta.file_size()),
            segment,
        };
        summary.entries += 1;
        summary.segments[segment].entries += 1;

        let mut counted = Counted {
            inner: reader,
            read: 0,
        };
        let flow = visit(&entry, &mut counted).map_err(|e| match e.downcast::<io::Error>() {
            Ok(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
                WalkError::Truncated(format!("entry {} ends early", entry.raw_name))
            }
            Ok(io) if format != Format::Cpio && io.kind() == io::ErrorKind::InvalidData => {
                WalkError::Corrupt {
                    format,
                    offset: seg_offset,
                    source: *io,
                }
            }
            Ok(io) => WalkError::Visitor(io),
            Err(other) => WalkError::Visitor(other),
        })?;
        // Skip the rest of the data, then confirm all of it was there.
        let rest =
            io::copy(&mut counted, &mut io::sink()).map_err(|e| data_err(e, &entry.raw_name))?;
        if counted.read != entry.size {
            let _ = rest;
            return Err(WalkError::Truncated(format!(
                "entry {} should hold {} bytes but the data ends after {}",
                entry.raw_name, entry.size, counted.read
            )));
        }
        counted
            .inner
            .finish()
            .map_err(|e| data_err(e, &entry.raw_name))?;
        if flow == Visit::Stop {
            return Ok(Visit::Stop);
        }
    }
}

/// Counts the bytes of an entry's data that were read, to tell a short entry from a whole one.
struct Counted<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzzer input (fuzz/ target cpio), cut down: junk of 0x203 to 0x205 bytes made the
    /// error message's kernel check slice past the end and panic.
    #[test]
    fn junk_just_past_the_kernel_magic_offset_is_reported_not_a_panic() {
        for len in 0x200..0x210 {
            let junk = vec![b'x'; len];
            let r = walk(&junk[..], |_, _| Ok(Visit::Continue));
            assert!(
                matches!(r, Err(WalkError::NotCpio { offset: 0, .. })),
                "{len}: {r:?}"
            );
        }
        let mut kernel = vec![0xebu8; 0x210];
        kernel[0x202..0x206].copy_from_slice(b"HdrS");
        let e = walk(&kernel[..], |_, _| Ok(Visit::Continue)).unwrap_err();
        assert!(e.to_string().contains("(a Linux kernel)"), "{e}");
    }
}
