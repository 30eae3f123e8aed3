//! The ext2/3/4 superblock: label, UUID, size and features, for `inspect` and for checking what
//! `mkroot` made.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// The superblock sits 1024 bytes in; its magic 56 bytes further.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
const MAGIC_OFFSET: usize = 56;
const MAGIC: u16 = 0xEF53;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Ext4Superblock {
    /// `ext2`, `ext3` or `ext4`, judged from the features as blkid does.
    pub kind: &'static str,
    pub label: String,
    pub uuid: String,
    pub block_size: u64,
    pub blocks: u64,
    pub free_blocks: u64,
    pub inodes: u32,
    pub free_inodes: u32,
    pub features: Vec<&'static str>,
    /// Cleanly unmounted (`s_state` has the valid bit).
    pub clean: bool,
}

impl Ext4Superblock {
    pub fn size_bytes(&self) -> u64 {
        self.blocks.saturating_mul(self.block_size)
    }
}

const COMPAT: &[(u32, &str)] = &[
    (0x0004, "has_journal"),
    (0x0008, "ext_attr"),
    (0x0010, "resize_inode"),
    (0x0020, "dir_index"),
    (0x0200, "sparse_super2"),
    (0x0400, "fast_commit"),
    (0x0800, "stable_inodes"),
    (0x1000, "orphan_file"),
];
const INCOMPAT: &[(u32, &str)] = &[
    (0x0002, "filetype"),
    (0x0004, "needs_recovery"),
    (0x0008, "journal_dev"),
    (0x0010, "meta_bg"),
    (0x0040, "extent"),
    (0x0080, "64bit"),
    (0x0100, "mmp"),
    (0x0200, "flex_bg"),
    (0x0400, "ea_inode"),
    (0x1000, "dirdata"),
    (0x2000, "metadata_csum_seed"),
    (0x4000, "large_dir"),
    (0x8000, "inline_data"),
    (0x10000, "encrypt"),
    (0x20000, "casefold"),
];
const RO_COMPAT: &[(u32, &str)] = &[
    (0x0001, "sparse_super"),
    (0x0002, "large_file"),
    (0x0008, "huge_file"),
    (0x0010, "uninit_bg"),
    (0x0020, "dir_nlink"),
    (0x0040, "extra_isize"),
    (0x0100, "quota"),
    (0x0200, "bigalloc"),
    (0x0400, "metadata_csum"),
    (0x1000, "read-only"),
    (0x2000, "project"),
    (0x8000, "verity"),
    (0x10000, "orphan_present"),
];

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// Parses the 1024-byte superblock; `None` when the magic is not there.
pub fn parse(sb: &[u8]) -> Option<Ext4Superblock> {
    if sb.len() < 1024 || le16(sb, MAGIC_OFFSET) != MAGIC {
        return None;
    }
    let log = le32(sb, 24);
    if log > 6 {
        return None;
    }
    let (compat, incompat, ro) = (le32(sb, 92), le32(sb, 96), le32(sb, 100));
    let is64 = incompat & 0x80 != 0;
    let hi = |o: usize| {
        if is64 {
            u64::from(le32(sb, o)) << 32
        } else {
            0
        }
    };
    let mut features = Vec::new();
    for (flags, table) in [(compat, COMPAT), (incompat, INCOMPAT), (ro, RO_COMPAT)] {
        features.extend(
            table
                .iter()
                .filter(|(bit, _)| flags & bit != 0)
                .map(|(_, n)| *n),
        );
    }
    let u = &sb[104..120];
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        hex::encode(&u[0..4]),
        hex::encode(&u[4..6]),
        hex::encode(&u[6..8]),
        hex::encode(&u[8..10]),
        hex::encode(&u[10..16])
    );
    let label_bytes = &sb[120..136];
    let end = label_bytes
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(label_bytes.len());
    let kind = if incompat & (0x40 | 0x80 | 0x200) != 0 || ro & (0x8 | 0x20 | 0x40 | 0x400) != 0 {
        "ext4"
    } else if compat & 0x4 != 0 {
        "ext3"
    } else {
        "ext2"
    };
    Some(Ext4Superblock {
        kind,
        label: String::from_utf8_lossy(&label_bytes[..end]).into_owned(),
        uuid,
        block_size: 1024u64 << log,
        blocks: u64::from(le32(sb, 4)) | hi(0x150),
        free_blocks: u64::from(le32(sb, 12)) | hi(0x158),
        inodes: le32(sb, 0),
        free_inodes: le32(sb, 16),
        features,
        clean: le16(sb, 58) & 1 != 0,
    })
}

/// Reads the superblock of an image file; `Ok(None)` when it is not ext2/3/4.
pub fn read(path: &Path) -> io::Result<Option<Ext4Superblock>> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(SUPERBLOCK_OFFSET))?;
    let mut buf = vec![0u8; 1024];
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => return Ok(None),
            n => got += n,
        }
    }
    Ok(parse(&buf))
}
