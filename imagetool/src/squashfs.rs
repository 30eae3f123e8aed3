//! The squashfs 4.0 superblock: parsed, sanity-checked, and summarised. Enough to tell a usable
//! `/usr` image from a truncated or corrupt one before a guest ever mounts it.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;

use thiserror::Error;

pub const MAGIC: &[u8; 4] = b"hsqs";
pub const SUPERBLOCK_LEN: usize = 96;
/// Optional tables are marked absent with all ones.
const ABSENT: u64 = u64::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Lzma,
    Lzo,
    Xz,
    Lz4,
    Zstd,
}

impl Compression {
    fn from_id(id: u16) -> Option<Self> {
        Some(match id {
            1 => Compression::Gzip,
            2 => Compression::Lzma,
            3 => Compression::Lzo,
            4 => Compression::Xz,
            5 => Compression::Lz4,
            6 => Compression::Zstd,
            _ => return None,
        })
    }

    /// Linux has a squashfs decompressor for every id but lzma (2), which only mksquashfs knows.
    pub fn linux_can_read(self) -> bool {
        self != Compression::Lzma
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Lzma => "lzma",
            Compression::Lzo => "lzo",
            Compression::Xz => "xz",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Superblock {
    pub inodes: u32,
    pub mkfs_time: u32,
    pub block_size: u32,
    pub fragments: u32,
    pub compression: Compression,
    pub flags: u16,
    pub ids: u16,
    pub version: (u16, u16),
    pub bytes_used: u64,
    pub id_table: u64,
    pub xattr_table: u64,
    pub inode_table: u64,
    pub directory_table: u64,
    pub fragment_table: u64,
    pub export_table: u64,
}

#[derive(Debug, Error)]
pub enum SquashfsError {
    #[error("not a squashfs image: it starts with {0} instead of the magic hsqs")]
    BadMagic(String),
    #[error("the squashfs image is truncated: {0} bytes, shorter than its 96-byte superblock")]
    TooShort(u64),
    #[error(
        "squashfs version {0}.{1} is not supported: Linux mounts only 4.0 (rebuild it with mksquashfs 4.x)"
    )]
    Version(u16, u16),
    #[error("corrupt squashfs superblock: {0}")]
    Corrupt(String),
    #[error("the squashfs compression id {0} is unknown: corrupt superblock")]
    UnknownCompression(u16),
    #[error(
        "the squashfs image uses {0} compression, which no Linux kernel reads: rebuild it with mksquashfs -comp xz (or gzip, zstd)"
    )]
    Unreadable(Compression),
    #[error(
        "the squashfs image is truncated: its superblock says {bytes_used} bytes but only {len} are there"
    )]
    Truncated { bytes_used: u64, len: u64 },
    #[error("cannot read the squashfs image: {0}")]
    Io(#[from] io::Error),
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

impl Superblock {
    /// Parses and checks the fields that must agree with each other. `check_size` then checks
    /// them against the image's real length.
    pub fn parse(b: &[u8]) -> Result<Self, SquashfsError> {
        if b.len() < 4 || &b[..4] != MAGIC {
            let shown: Vec<String> = b.iter().take(4).map(|x| format!("{x:02x}")).collect();
            return Err(SquashfsError::BadMagic(if shown.is_empty() {
                "nothing".into()
            } else {
                format!("bytes {}", shown.join(" "))
            }));
        }
        if b.len() < SUPERBLOCK_LEN {
            return Err(SquashfsError::TooShort(b.len() as u64));
        }
        let version = (u16_at(b, 28), u16_at(b, 30));
        if version != (4, 0) {
            return Err(SquashfsError::Version(version.0, version.1));
        }
        let block_size = u32_at(b, 12);
        let block_log = u16_at(b, 22);
        if !(4096..=1 << 20).contains(&block_size) || !block_size.is_power_of_two() {
            return Err(SquashfsError::Corrupt(format!(
                "block size {block_size} is not a power of two from 4 KiB to 1 MiB"
            )));
        }
        if u32::from(block_log) != block_size.trailing_zeros() {
            return Err(SquashfsError::Corrupt(format!(
                "block_log {block_log} does not match block size {block_size}"
            )));
        }
        let comp_id = u16_at(b, 20);
        let compression =
            Compression::from_id(comp_id).ok_or(SquashfsError::UnknownCompression(comp_id))?;
        let sb = Superblock {
            inodes: u32_at(b, 4),
            mkfs_time: u32_at(b, 8),
            block_size,
            fragments: u32_at(b, 16),
            compression,
            flags: u16_at(b, 24),
            ids: u16_at(b, 26),
            version,
            bytes_used: u64_at(b, 40),
            id_table: u64_at(b, 48),
            xattr_table: u64_at(b, 56),
            inode_table: u64_at(b, 64),
            directory_table: u64_at(b, 72),
            fragment_table: u64_at(b, 80),
            export_table: u64_at(b, 88),
        };
        if sb.inodes == 0 {
            return Err(SquashfsError::Corrupt(
                "it has no inodes, not even a root directory".into(),
            ));
        }
        if sb.bytes_used < SUPERBLOCK_LEN as u64 {
            return Err(SquashfsError::Corrupt(format!(
                "bytes_used {} is smaller than the superblock",
                sb.bytes_used
            )));
        }
        // The tables follow each other in this order and all lie inside bytes_used.
        let required = [
            ("inode", sb.inode_table),
            ("directory", sb.directory_table),
            ("id", sb.id_table),
        ];
        let optional = [
            ("fragment", sb.fragment_table),
            ("export", sb.export_table),
            ("xattr", sb.xattr_table),
        ];
        for (name, at) in required
            .iter()
            .chain(optional.iter().filter(|(_, at)| *at != ABSENT))
        {
            if *at < SUPERBLOCK_LEN as u64 || *at >= sb.bytes_used {
                return Err(SquashfsError::Corrupt(format!(
                    "the {name} table at {at} lies outside the image's {} bytes",
                    sb.bytes_used
                )));
            }
        }
        if sb.inode_table > sb.directory_table {
            return Err(SquashfsError::Corrupt(
                "the inode table starts after the directory table".into(),
            ));
        }
        Ok(sb)
    }

    /// The image must hold all `bytes_used`, and a guest kernel must be able to decompress it.
    pub fn check_usable(&self, len: u64) -> Result<(), SquashfsError> {
        if self.bytes_used > len {
            return Err(SquashfsError::Truncated {
                bytes_used: self.bytes_used,
                len,
            });
        }
        if !self.compression.linux_can_read() {
            return Err(SquashfsError::Unreadable(self.compression));
        }
        Ok(())
    }

    /// Reads and parses the superblock at the start of `r`.
    pub fn read_from(r: &mut impl Read) -> Result<Self, SquashfsError> {
        let mut buf = Vec::with_capacity(SUPERBLOCK_LEN);
        r.take(SUPERBLOCK_LEN as u64).read_to_end(&mut buf)?;
        if buf.len() < SUPERBLOCK_LEN && buf.starts_with(MAGIC) {
            return Err(SquashfsError::TooShort(buf.len() as u64));
        }
        Self::parse(&buf)
    }

    /// Opens, parses and checks an image file.
    pub fn open(path: &Path) -> Result<Self, SquashfsError> {
        let mut f = std::fs::File::open(path)?;
        let len = f.metadata()?.len();
        let sb = Self::read_from(&mut f)?;
        sb.check_usable(len)?;
        Ok(sb)
    }

    /// Names of the flags that are set, as `unsquashfs -s` words them (roughly).
    pub fn flag_names(&self) -> Vec<&'static str> {
        const NAMES: [(u16, &str); 12] = [
            (0x0001, "uncompressed-inodes"),
            (0x0002, "uncompressed-data"),
            (0x0004, "check"),
            (0x0008, "uncompressed-fragments"),
            (0x0010, "no-fragments"),
            (0x0020, "always-fragments"),
            (0x0040, "duplicates"),
            (0x0080, "exportable"),
            (0x0100, "uncompressed-xattrs"),
            (0x0200, "no-xattrs"),
            (0x0400, "compressor-options"),
            (0x0800, "uncompressed-ids"),
        ];
        NAMES
            .iter()
            .filter(|(bit, _)| self.flags & bit != 0)
            .map(|(_, n)| *n)
            .collect()
    }

    /// One line: `squashfs 4.0, gzip, 128 KiB blocks, 1234 inodes, 412.3 MiB used (432123456 bytes)`.
    pub fn summary(&self) -> String {
        format!(
            "squashfs {}.{}, {} compression, {} blocks, {} inodes, {} used ({} bytes)",
            self.version.0,
            self.version.1,
            self.compression,
            crate::size::human(u64::from(self.block_size)),
            self.inodes,
            crate::size::human(self.bytes_used),
            self.bytes_used
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A superblock with consistent fields, as mksquashfs lays them out for a tiny image.
    fn valid() -> Vec<u8> {
        let mut b = vec![0u8; SUPERBLOCK_LEN];
        b[..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&3u32.to_le_bytes());
        b[12..16].copy_from_slice(&131072u32.to_le_bytes());
        b[20..22].copy_from_slice(&1u16.to_le_bytes());
        b[22..24].copy_from_slice(&17u16.to_le_bytes());
        b[28..30].copy_from_slice(&4u16.to_le_bytes());
        b[40..48].copy_from_slice(&4096u64.to_le_bytes());
        for (off, v) in [
            (48, 4000u64),
            (56, u64::MAX),
            (64, 200),
            (72, 300),
            (80, 3900),
            (88, u64::MAX),
        ] {
            b[off..off + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    #[test]
    fn parses_a_consistent_superblock() {
        let sb = Superblock::parse(&valid()).unwrap();
        assert_eq!(sb.compression, Compression::Gzip);
        assert_eq!(sb.block_size, 131072);
        assert_eq!(sb.inodes, 3);
        assert!(sb.check_usable(4096).is_ok());
        assert!(matches!(
            sb.check_usable(4095),
            Err(SquashfsError::Truncated { .. })
        ));
    }

    #[test]
    fn rejects_each_inconsistency() {
        let cases: [(usize, &[u8], &str); 6] = [
            (0, b"hsqt", "magic"),
            (28, &3u16.to_le_bytes(), "version"),
            (12, &131073u32.to_le_bytes(), "block size"),
            (22, &16u16.to_le_bytes(), "block_log"),
            (20, &9u16.to_le_bytes(), "compression id"),
            (64, &5000u64.to_le_bytes(), "inode table"),
        ];
        for (off, bytes, what) in cases {
            let mut b = valid();
            b[off..off + bytes.len()].copy_from_slice(bytes);
            assert!(
                Superblock::parse(&b).is_err(),
                "{what} corruption was accepted"
            );
        }
        assert!(matches!(
            Superblock::parse(&valid()[..50]),
            Err(SquashfsError::TooShort(50))
        ));
    }

    #[test]
    fn lzma_is_refused_for_guests() {
        let mut b = valid();
        b[20..22].copy_from_slice(&2u16.to_le_bytes());
        let sb = Superblock::parse(&b).unwrap();
        assert!(matches!(
            sb.check_usable(4096),
            Err(SquashfsError::Unreadable(Compression::Lzma))
        ));
    }
}
