use std::fmt;

/// What a stream of bytes starts with, as far as an initramfs is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A newc (SVR4, `070701`/`070702`) cpio archive: the only kind Linux unpacks.
    Cpio,
    /// The old portable (odc, `070707`) or binary cpio formats.
    OldCpio,
    Gzip,
    Xz,
    Zstd,
    Lzma,
    Bzip2,
    Lz4,
    Lzo,
}

impl Format {
    /// The longest magic we compare.
    pub const SNIFF_LEN: usize = 9;

    /// Recognises the start of a segment; `None` when nothing matches.
    pub fn sniff(head: &[u8]) -> Option<Format> {
        const MAGICS: &[(&[u8], Format)] = &[
            (b"070701", Format::Cpio),
            (b"070702", Format::Cpio),
            (b"070707", Format::OldCpio),
            (&[0xc7, 0x71], Format::OldCpio),
            (&[0x71, 0xc7], Format::OldCpio),
            (&[0x1f, 0x8b], Format::Gzip),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], Format::Xz),
            (&[0x28, 0xb5, 0x2f, 0xfd], Format::Zstd),
            (&[0x5d, 0x00, 0x00], Format::Lzma),
            (b"BZh", Format::Bzip2),
            (&[0x02, 0x21, 0x4c, 0x18], Format::Lz4),
            (&[0x04, 0x22, 0x4d, 0x18], Format::Lz4),
            (
                &[0x89, b'L', b'Z', b'O', 0x00, 0x0d, 0x0a, 0x1a, 0x0a],
                Format::Lzo,
            ),
        ];
        MAGICS
            .iter()
            .find(|(m, _)| head.starts_with(m))
            .map(|(_, f)| *f)
    }

    /// Whether imagetool can decompress it.
    pub fn is_supported_compression(self) -> bool {
        matches!(self, Format::Gzip | Format::Xz | Format::Zstd)
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Cpio => "cpio",
            Format::OldCpio => "old-format cpio",
            Format::Gzip => "gzip",
            Format::Xz => "xz",
            Format::Zstd => "zstd",
            Format::Lzma => "lzma",
            Format::Bzip2 => "bzip2",
            Format::Lz4 => "lz4",
            Format::Lzo => "lzo",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_each_magic() {
        assert_eq!(Format::sniff(b"070701000000"), Some(Format::Cpio));
        assert_eq!(Format::sniff(b"070702000000"), Some(Format::Cpio));
        assert_eq!(Format::sniff(b"070707000000"), Some(Format::OldCpio));
        assert_eq!(Format::sniff(&[0x1f, 0x8b, 8, 0]), Some(Format::Gzip));
        assert_eq!(
            Format::sniff(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            Some(Format::Xz)
        );
        assert_eq!(
            Format::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Some(Format::Zstd)
        );
        assert_eq!(Format::sniff(b"BZh91AY"), Some(Format::Bzip2));
        assert_eq!(Format::sniff(b"\x7fELF"), None);
        assert_eq!(Format::sniff(b""), None);
    }
}
