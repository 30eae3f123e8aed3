//! `extract-usr`: stream the `/usr` squashfs out of a PXE initramfs into its own file, check it,
//! and report what was taken.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::atomic::{AtomicFile, Overwrite};
use crate::digest::HashingWriter;
use crate::initramfs::{self, EntryKind, Format, Visit, WalkError};
use crate::squashfs::{self, SquashfsError, Superblock};

/// What `extract-usr` looks for when not told: Flatcar's `/usr`, then Fedora CoreOS's whole root.
pub const DEFAULT_MEMBERS: [&str; 2] = ["usr.squashfs", "root.squashfs"];
const LISTED_ENTRIES: usize = 12;
const COPY_BUF: usize = 1 << 20;

#[derive(Clone, Debug, Default)]
pub struct ExtractOptions {
    /// A member other than the defaults, by name (`./` prefixes do not matter).
    pub member: Option<String>,
    /// Read every file in the image through a squashfs implementation before keeping it.
    pub verify: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ExtractReport {
    pub output: PathBuf,
    /// The member's name as stored in the archive.
    pub member: String,
    /// How the segment holding it was stored.
    pub segment_format: Format,
    pub segment_index: usize,
    pub bytes: u64,
    pub sha256: String,
    pub superblock: Superblock,
    /// Files read back by `verify`, and their total size.
    pub verified: Option<(u64, u64)>,
}

#[derive(Debug, Error)]
pub enum ExtractError {
    #[error(transparent)]
    Archive(#[from] WalkError),
    #[error("{wanted} not found in the archive; it holds {listing} (pick one with --member NAME)")]
    NotFound { wanted: String, listing: String },
    #[error("found {0} in the archive, but it is an EROFS image and only squashfs is supported")]
    Erofs(String),
    #[error("{member} is a {kind:?}, not a file")]
    NotAFile { member: String, kind: EntryKind },
    #[error("{member}: {source}")]
    Squashfs {
        member: String,
        source: SquashfsError,
    },
    #[error(
        "verification failed: {0} (the image is corrupt; extract it again from a good archive)"
    )]
    Verify(String),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
}

/// Where the bytes come from: a file (size known, for progress) or standard input.
pub enum Input {
    File(PathBuf),
    Stdin,
}

impl Input {
    pub fn from_arg(arg: &Path) -> Self {
        if arg == Path::new("-") {
            Input::Stdin
        } else {
            Input::File(arg.to_path_buf())
        }
    }

    /// The reader and its length when known.
    pub fn open(&self) -> Result<(Box<dyn Read + Send>, Option<u64>), ExtractError> {
        match self {
            Input::Stdin => Ok((Box::new(io::stdin()), None)),
            Input::File(p) => {
                let open_err = |source| ExtractError::Open {
                    path: p.clone(),
                    source,
                };
                let f = File::open(p).map_err(open_err)?;
                let meta = f.metadata().map_err(open_err)?;
                if meta.is_dir() {
                    return Err(open_err(io::Error::new(
                        io::ErrorKind::IsADirectory,
                        "it is a directory",
                    )));
                }
                Ok((Box::new(f), Some(meta.len())))
            }
        }
    }
}

fn wanted_names(opts: &ExtractOptions) -> Vec<String> {
    match &opts.member {
        Some(m) => vec![initramfs::normalize_name(m)],
        None => DEFAULT_MEMBERS.iter().map(|s| s.to_string()).collect(),
    }
}

fn listing(names: &[String], total: u64) -> String {
    if names.is_empty() {
        return "no entries".into();
    }
    let shown: Vec<&str> = names
        .iter()
        .map(|n| if n.is_empty() { "." } else { n.as_str() })
        .collect();
    let more = total.saturating_sub(shown.len() as u64);
    let mut s = shown.join(", ");
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

/// Extracts the squashfs member of the archive read from `input` into `output`, atomically.
/// `progress` is called with the raw input bytes consumed so far.
pub fn extract_usr(
    input: impl Read,
    output: &Path,
    opts: &ExtractOptions,
    progress: impl Fn(u64),
) -> Result<ExtractReport, ExtractError> {
    let wanted = wanted_names(opts);
    let write_err = |source| ExtractError::Write {
        path: output.to_path_buf(),
        source,
    };
    let mut out = AtomicFile::create(output, Overwrite::Allow).map_err(write_err)?;

    let mut seen: Vec<String> = Vec::new();
    let mut erofs: Option<String> = None;
    let mut found: Option<(String, usize, u64, String, Superblock)> = None;
    let counting = ProgressRead {
        inner: input,
        done: 0,
        report: progress,
    };
    let summary = initramfs::walk(counting, |entry, data| {
        if !wanted.contains(&entry.name) {
            if seen.len() < LISTED_ENTRIES {
                seen.push(entry.name.clone());
            }
            if entry.name.ends_with(".erofs") && erofs.is_none() {
                erofs = Some(entry.raw_name.clone());
            }
            return Ok(Visit::Continue);
        }
        if entry.kind != EntryKind::File {
            return Err(Box::new(ExtractError::NotAFile {
                member: entry.raw_name.clone(),
                kind: entry.kind,
            }));
        }
        let member = entry.raw_name.clone();
        // Check the superblock before copying: a bad member fails in milliseconds, not after a GiB.
        let mut head = Vec::with_capacity(squashfs::SUPERBLOCK_LEN);
        data.take(squashfs::SUPERBLOCK_LEN as u64)
            .read_to_end(&mut head)?;
        let sb_err = |source| ExtractError::Squashfs {
            member: member.clone(),
            source,
        };
        let sb = match Superblock::parse(&head) {
            Err(SquashfsError::TooShort(_)) if (head.len() as u64) < entry.size => {
                return Err(Box::new(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "short superblock",
                )));
            }
            r => r.map_err(sb_err)?,
        };
        sb.check_usable(entry.size).map_err(sb_err)?;

        let file = out.file();
        let mut writer = HashingWriter::new(&mut *file);
        writer.write_all(&head).map_err(write_err)?;
        let copied = copy(data, &mut writer).map_err(|e| match e {
            CopyError::Read(e) => Box::new(e) as Box<dyn std::error::Error + Send + Sync>,
            CopyError::Write(e) => Box::new(write_err(e)),
        })?;
        let (_, digest) = writer.finish();
        found = Some((
            member,
            entry.segment,
            head.len() as u64 + copied,
            digest,
            sb,
        ));
        Ok(Visit::Stop)
    })
    .map_err(|e| match e {
        WalkError::Visitor(inner) => match inner.downcast::<ExtractError>() {
            Ok(ours) => *ours,
            Err(other) => ExtractError::Archive(WalkError::Visitor(other)),
        },
        other => ExtractError::Archive(other),
    })?;

    let Some((member, segment_index, bytes, sha256, superblock)) = found else {
        if let Some(name) = erofs {
            return Err(ExtractError::Erofs(name));
        }
        return Err(ExtractError::NotFound {
            wanted: wanted.join(" or "),
            listing: listing(&seen, summary.entries),
        });
    };
    let verified = if opts.verify {
        Some(verify(out.file()).map_err(ExtractError::Verify)?)
    } else {
        None
    };
    out.commit().map_err(write_err)?;
    Ok(ExtractReport {
        output: output.to_path_buf(),
        member,
        segment_format: summary.segments[segment_index].format,
        segment_index,
        bytes,
        sha256,
        superblock,
        verified,
    })
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies with a large buffer: `io::copy` uses 8 KiB, which costs a syscall per 8 KiB here.
fn copy(r: &mut dyn Read, w: &mut impl Write) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; COPY_BUF];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        w.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
}

/// Reads every regular file of the image through backhand; returns (files, bytes).
pub fn verify(file: &mut File) -> Result<(u64, u64), String> {
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let reader = BufReader::new(file.try_clone().map_err(|e| e.to_string())?);
    let fs = backhand::FilesystemReader::from_reader(reader)
        .map_err(|e| format!("cannot open the image: {e}"))?;
    let (mut files, mut bytes) = (0u64, 0u64);
    for node in fs.files() {
        if let backhand::InnerNode::File(f) = &node.inner {
            let mut r = fs.file(f).reader();
            let n = io::copy(&mut r, &mut io::sink())
                .map_err(|e| format!("{}: {e}", node.fullpath.display()))?;
            files += 1;
            bytes += n;
        }
    }
    Ok((files, bytes))
}

/// Reports how many input bytes were consumed, for a progress bar.
struct ProgressRead<R, F> {
    inner: R,
    done: u64,
    report: F,
}

impl<R: Read, F: Fn(u64)> Read for ProgressRead<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        (self.report)(self.done);
        Ok(n)
    }
}
