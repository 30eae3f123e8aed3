use std::io::{self, BufRead, Read};

/// A buffered reader that can look ahead a few bytes even across its buffer's edge, which
/// `BufReader` cannot: telling a gzip member from a cpio header needs up to nine bytes.
pub struct PeekReader<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// Bytes handed out so far: the offset of the next byte in the stream.
    offset: u64,
}

impl<R: Read> PeekReader<R> {
    pub fn with_capacity(capacity: usize, inner: R) -> Self {
        Self {
            inner,
            buf: vec![0u8; capacity.max(64)].into_boxed_slice(),
            pos: 0,
            end: 0,
            offset: 0,
        }
    }

    /// Up to `n` bytes ahead without consuming them; fewer only at the end of the stream.
    pub fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        let n = n.min(self.buf.len());
        if self.end - self.pos < n {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
            while self.end < n {
                match self.inner.read(&mut self.buf[self.end..]) {
                    Ok(0) => break,
                    Ok(k) => self.end += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(&self.buf[self.pos..self.end.min(self.pos + n)])
    }

    /// Skips NUL bytes (the padding between archives); returns how many.
    pub fn skip_nuls(&mut self) -> io::Result<u64> {
        let mut skipped = 0;
        loop {
            let avail = self.fill_buf()?;
            if avail.is_empty() {
                return Ok(skipped);
            }
            let len = avail.len();
            let zeros = avail.iter().take_while(|&&b| b == 0).count();
            self.consume(zeros);
            skipped += zeros as u64;
            if zeros < len {
                return Ok(skipped);
            }
        }
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl<R: Read> Read for PeekReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        // Large reads with nothing buffered go straight through: no extra copy for bulk data.
        if self.pos == self.end && out.len() >= self.buf.len() {
            let n = self.inner.read(out)?;
            self.offset += n as u64;
            return Ok(n);
        }
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for PeekReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
            loop {
                match self.inner.read(&mut self.buf) {
                    Ok(k) => {
                        self.end = k;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(&self.buf[self.pos..self.end])
    }

    fn consume(&mut self, amt: usize) {
        let amt = amt.min(self.end - self.pos);
        self.pos += amt;
        self.offset += amt as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out one byte per call, the worst case for look-ahead.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || out.is_empty() {
                return Ok(0);
            }
            out[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    #[test]
    fn peeks_across_buffer_edge_and_skips_nuls() {
        let data = b"\0\0\0\0abcdefghij";
        let mut r = PeekReader::with_capacity(64, Trickle(data));
        assert_eq!(r.skip_nuls().unwrap(), 4);
        assert_eq!(r.peek(6).unwrap(), b"abcdef");
        let mut two = [0u8; 2];
        r.read_exact(&mut two).unwrap();
        assert_eq!(&two, b"ab");
        assert_eq!(r.peek(9).unwrap(), b"cdefghij");
        assert_eq!(r.offset(), 6);
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"cdefghij");
        assert_eq!(r.peek(4).unwrap(), b"");
    }
}
