//! `inspect`: what a file is and the facts about it that matter here.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::ext4::{self, Ext4Superblock};
use crate::initramfs::{self, EntryKind, Format, Segment, Visit, WalkError};
use crate::kernel::{self, KernelInfo};
use crate::size::human;
use crate::squashfs::{self, Superblock};

const HEAD_LEN: usize = 64 * 1024;
/// Entries shown in text output; JSON lists them all.
const SHOWN_ENTRIES: usize = 40;

#[derive(Debug, serde::Serialize)]
pub struct Inspection {
    pub path: PathBuf,
    pub apparent_bytes: u64,
    pub allocated_bytes: u64,
    #[serde(flatten)]
    pub what: What,
}

#[derive(Debug, serde::Serialize)]
pub struct EntryFacts {
    pub name: String,
    pub kind: EntryKind,
    pub size: u64,
    pub segment: usize,
}

#[derive(Debug, serde::Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum What {
    /// One or more cpio archives, plain or compressed.
    Cpio {
        segments: Vec<Segment>,
        entries: Vec<EntryFacts>,
    },
    /// A compressed stream that holds no cpio archive (an exported disk image, say).
    Compressed {
        format: Format,
    },
    Squashfs {
        superblock: Superblock,
        flags: Vec<&'static str>,
        /// Why a guest could not use it, if it could not.
        problem: Option<String>,
    },
    Ext4 {
        superblock: Ext4Superblock,
    },
    Kernel {
        kernel: KernelInfo,
    },
    /// Anything else is treated as a raw disk image.
    Disk {
        partition_table: Option<&'static str>,
    },
}

#[derive(Debug, Error)]
pub enum InspectError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is a directory, not an image file")]
    Directory { path: PathBuf },
    #[error("{path} is not a regular file or block device")]
    NotAFile { path: PathBuf },
    #[error("{path}: {source}")]
    Archive { path: PathBuf, source: WalkError },
}

pub fn inspect(path: &Path) -> Result<Inspection, InspectError> {
    let io_err = |source| InspectError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if meta.is_dir() {
        return Err(InspectError::Directory {
            path: path.to_path_buf(),
        });
    }
    let ft = meta.file_type();
    if ft.is_char_device() || ft.is_fifo() || ft.is_socket() {
        return Err(InspectError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mut head = Vec::with_capacity(HEAD_LEN);
    File::open(path)
        .map_err(io_err)?
        .take(HEAD_LEN as u64)
        .read_to_end(&mut head)
        .map_err(io_err)?;

    let what = if head.starts_with(squashfs::MAGIC) {
        let sb_len = head.len().min(squashfs::SUPERBLOCK_LEN);
        match Superblock::parse(&head[..sb_len]) {
            Ok(superblock) => What::Squashfs {
                flags: superblock.flag_names(),
                problem: superblock
                    .check_usable(meta.len())
                    .err()
                    .map(|e| e.to_string()),
                superblock,
            },
            Err(e) => {
                return Err(io_err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    e.to_string(),
                )));
            }
        }
    } else if let Some(kernel) = kernel::detect(&head) {
        What::Kernel { kernel }
    } else if let Some(superblock) = head
        .get(ext4::SUPERBLOCK_OFFSET as usize..)
        .and_then(ext4::parse)
    {
        What::Ext4 { superblock }
    } else if let Some(format) = Format::sniff(&head) {
        cpio_facts(path, format)?
    } else {
        What::Disk {
            partition_table: partition_table(&head),
        }
    };
    Ok(Inspection {
        path: path.to_path_buf(),
        apparent_bytes: meta.len(),
        allocated_bytes: meta.blocks() * 512,
        what,
    })
}

fn cpio_facts(path: &Path, format: Format) -> Result<What, InspectError> {
    let file = File::open(path).map_err(|source| InspectError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut entries = Vec::new();
    let walked = initramfs::walk(file, |e, _| {
        entries.push(EntryFacts {
            name: e.raw_name.clone(),
            kind: e.kind,
            size: e.size,
            segment: e.segment,
        });
        Ok(Visit::Continue)
    });
    match walked {
        Ok(summary) => Ok(What::Cpio {
            segments: summary.segments,
            entries,
        }),
        // Compressed data with no archive inside: say what it is rather than call it broken.
        Err(WalkError::JunkInCompressed { offset: 0, .. }) if entries.is_empty() => {
            Ok(What::Compressed { format })
        }
        Err(source) => Err(InspectError::Archive {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn partition_table(head: &[u8]) -> Option<&'static str> {
    if head.len() >= 520 && &head[512..520] == b"EFI PART" {
        Some("gpt")
    } else if head.len() >= 512 && head[510] == 0x55 && head[511] == 0xaa {
        Some("mbr")
    } else {
        None
    }
}

/// The human-readable report.
pub fn render(i: &Inspection) -> String {
    let mut s = String::new();
    let mut line = |t: String| {
        s.push_str(&t);
        s.push('\n');
    };
    let sizes = format!(
        "{} apparent ({} bytes), {} allocated",
        human(i.apparent_bytes),
        i.apparent_bytes,
        human(i.allocated_bytes)
    );
    match &i.what {
        What::Cpio { segments, entries } => {
            let kinds: Vec<String> = segments
                .iter()
                .map(|s| {
                    if s.format == Format::Cpio {
                        "plain".to_string()
                    } else {
                        s.format.to_string()
                    }
                })
                .collect();
            line(format!(
                "{}: initramfs, {} cpio segment(s) [{}], {} entries; {sizes}",
                i.path.display(),
                segments.len(),
                kinds.join(", "),
                entries.len()
            ));
            for e in entries.iter().take(SHOWN_ENTRIES) {
                let name = if e.name.is_empty() { "." } else { &e.name };
                line(format!(
                    "  {:<9} {:>12}  {name}",
                    format!("{:?}", e.kind).to_lowercase(),
                    e.size
                ));
            }
            if entries.len() > SHOWN_ENTRIES {
                line(format!(
                    "  ... and {} more (--json lists them all)",
                    entries.len() - SHOWN_ENTRIES
                ));
            }
        }
        What::Compressed { format } => {
            line(format!(
                "{}: {format}-compressed data, not a cpio archive; {sizes}",
                i.path.display()
            ));
        }
        What::Squashfs {
            superblock,
            flags,
            problem,
        } => {
            line(format!(
                "{}: {}; {sizes}",
                i.path.display(),
                superblock.summary()
            ));
            line(format!(
                "  block size {} bytes, {} fragments, {} ids",
                superblock.block_size, superblock.fragments, superblock.ids
            ));
            if !flags.is_empty() {
                line(format!("  flags: {}", flags.join(" ")));
            }
            if let Some(p) = problem {
                line(format!("  PROBLEM: {p}"));
            }
        }
        What::Ext4 { superblock: sb } => {
            line(format!(
                "{}: {} filesystem, label {:?}, UUID {}, {} ({} x {} byte blocks); {sizes}",
                i.path.display(),
                sb.kind,
                sb.label,
                sb.uuid,
                human(sb.size_bytes()),
                sb.blocks,
                sb.block_size
            ));
            line(format!(
                "  {} free, {} of {} inodes free, {}",
                human(sb.free_blocks * sb.block_size),
                sb.free_inodes,
                sb.inodes,
                if sb.clean {
                    "clean"
                } else {
                    "not cleanly unmounted"
                }
            ));
            line(format!("  features: {}", sb.features.join(" ")));
        }
        What::Kernel { kernel } => {
            let proto = kernel
                .protocol
                .as_deref()
                .map(|p| format!(", boot protocol {p}"))
                .unwrap_or_default();
            line(format!(
                "{}: Linux kernel ({}{proto}); {sizes}",
                i.path.display(),
                kernel.format
            ));
            if let Some(v) = &kernel.version {
                line(format!("  version {v}"));
            }
        }
        What::Disk { partition_table } => {
            let pt = partition_table
                .map(|p| format!(", {p} partition table"))
                .unwrap_or_default();
            line(format!("{}: raw disk image{pt}; {sizes}", i.path.display()));
        }
    }
    s
}
