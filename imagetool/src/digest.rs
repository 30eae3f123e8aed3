//! SHA-256 over whatever passes through a reader or writer, and the `sha256sum` file format.

use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// A writer that hashes everything written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The inner writer and the lower-case hex digest of all bytes written.
    pub fn finish(self) -> (W, String) {
        (self.inner, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The lower-case hex SHA-256 of a whole file.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A `sha256sum`-compatible line: `DIGEST  NAME`.
pub fn sha256sum_line(digest: &str, name: &str) -> String {
    format!("{digest}  {name}\n")
}

/// The digest from a `sha256sum` file: the first field of the first line, if it is 64 hex digits.
pub fn parse_sha256sum(text: &str) -> Option<String> {
    let field = text.lines().next()?.split_whitespace().next()?;
    (field.len() == 64 && field.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| field.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_writer_matches_known_digest() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"abc").unwrap();
        let (out, digest) = w.finish();
        assert_eq!(out, b"abc");
        // FIPS 180-2 test vector for "abc".
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn sha256sum_files_parse() {
        let d = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        assert_eq!(
            parse_sha256sum(&format!("{d}  disk.img\n")).unwrap(),
            d.to_ascii_lowercase()
        );
        assert_eq!(parse_sha256sum("nothex  x"), None);
        assert_eq!(parse_sha256sum(""), None);
    }
}
