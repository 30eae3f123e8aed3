use std::fmt;
use std::path::Path;
use std::str::FromStr;

use super::SparseError;

/// The stream formats export writes and import reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// gzip (RFC 1952), possibly several concatenated members.
    Gzip,
    /// Zstandard, possibly several concatenated frames.
    Zstd,
    /// The image bytes as they are.
    Raw,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];

/// How many leading bytes [`Format::detect`] looks at.
pub(crate) const MAGIC_LEN: usize = 6;

impl Format {
    /// The format a file name asks for: `.gz` gzip, `.zst`/`.zstd` zstd, `.raw` raw, else `None`.
    pub fn from_name(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "gz" => Some(Self::Gzip),
            "zst" | "zstd" => Some(Self::Zstd),
            "raw" => Some(Self::Raw),
            _ => None,
        }
    }

    /// The format of a stream from its first bytes (up to [`MAGIC_LEN`]); anything that is not
    /// gzip or zstd is raw, except formats we know but do not read, which are an error rather
    /// than a silently imported compressed blob.
    pub fn detect(head: &[u8]) -> Result<Self, SparseError> {
        if head.starts_with(GZIP_MAGIC) {
            Ok(Self::Gzip)
        } else if head.starts_with(ZSTD_MAGIC) || is_zstd_skippable(head) {
            Ok(Self::Zstd)
        } else if head.starts_with(XZ_MAGIC) {
            Err(SparseError::Unsupported {
                what: "xz-compressed",
            })
        } else {
            Ok(Self::Raw)
        }
    }

    /// The level to compress with: the tool's usual default when none is given.
    pub fn level(self, level: Option<i32>) -> Result<i32, SparseError> {
        let (min, max, default) = match self {
            Self::Gzip => (0, 9, 6),
            Self::Zstd => {
                let r = zstd::compression_level_range();
                (*r.start(), *r.end(), zstd::DEFAULT_COMPRESSION_LEVEL)
            }
            Self::Raw => {
                return match level {
                    Some(_) => Err(SparseError::LevelNotApplicable),
                    None => Ok(0),
                };
            }
        };
        match level {
            None => Ok(default),
            Some(l) if (min..=max).contains(&l) => Ok(l),
            Some(level) => Err(SparseError::InvalidLevel {
                format: self,
                level,
                min,
                max,
            }),
        }
    }
}

/// A zstd skippable frame (magic 0x184D2A50 to 0x184D2A5F), which may open a zstd stream:
/// `pzstd` starts every frame with one.
fn is_zstd_skippable(head: &[u8]) -> bool {
    head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18]
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
            Self::Raw => "raw",
        })
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "gzip" | "gz" => Ok(Self::Gzip),
            "zstd" | "zst" => Ok(Self::Zstd),
            "raw" => Ok(Self::Raw),
            _ => Err(format!("unknown format {s:?}: use gzip, zstd or raw")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_choose_formats() {
        assert_eq!(
            Format::from_name(Path::new("a/disk.img.gz")),
            Some(Format::Gzip)
        );
        assert_eq!(Format::from_name(Path::new("disk.ZST")), Some(Format::Zstd));
        assert_eq!(
            Format::from_name(Path::new("disk.zstd")),
            Some(Format::Zstd)
        );
        assert_eq!(Format::from_name(Path::new("disk.raw")), Some(Format::Raw));
        assert_eq!(Format::from_name(Path::new("disk.img")), None);
        assert_eq!(Format::from_name(Path::new("-")), None);
    }

    #[test]
    fn magic_detects_formats() {
        assert_eq!(Format::detect(&[0x1f, 0x8b, 8, 0]).unwrap(), Format::Gzip);
        assert_eq!(
            Format::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]).unwrap(),
            Format::Zstd
        );
        assert_eq!(
            Format::detect(&[0x5e, 0x2a, 0x4d, 0x18, 4, 0]).unwrap(),
            Format::Zstd
        );
        assert_eq!(
            Format::detect(&[0x4e, 0x2a, 0x4d, 0x18, 4, 0]).unwrap(),
            Format::Raw
        );
        assert_eq!(Format::detect(&[0xeb, 0x63, 0x90]).unwrap(), Format::Raw);
        assert_eq!(Format::detect(&[0x1f]).unwrap(), Format::Raw);
        assert_eq!(Format::detect(&[]).unwrap(), Format::Raw);
        assert!(matches!(
            Format::detect(XZ_MAGIC),
            Err(SparseError::Unsupported { .. })
        ));
    }

    #[test]
    fn levels_are_checked() {
        assert_eq!(Format::Gzip.level(None).unwrap(), 6);
        assert_eq!(Format::Gzip.level(Some(1)).unwrap(), 1);
        assert!(matches!(
            Format::Gzip.level(Some(10)),
            Err(SparseError::InvalidLevel { max: 9, .. })
        ));
        assert_eq!(Format::Zstd.level(Some(19)).unwrap(), 19);
        assert!(Format::Zstd.level(Some(23)).is_err());
        assert!(matches!(
            Format::Raw.level(Some(1)),
            Err(SparseError::LevelNotApplicable)
        ));
        assert_eq!("zstd".parse::<Format>().unwrap(), Format::Zstd);
        assert!("xz".parse::<Format>().is_err());
    }
}
