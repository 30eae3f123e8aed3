//! Finding all-zero blocks, and a shared buffer of zeros to hash and compress holes from.

use std::ops::Range;
use std::sync::OnceLock;

/// Length of [`zero_slice`].
pub(crate) const ZERO_SLICE_LEN: usize = 1 << 20;

/// A read-only MiB of zeros. Allocated zeroed and never written, so all its pages map the
/// kernel's shared zero page and reading it stays in cache.
pub(crate) fn zero_slice() -> &'static [u8] {
    static ZEROS: OnceLock<Box<[u8]>> = OnceLock::new();
    ZEROS.get_or_init(|| vec![0u8; ZERO_SLICE_LEN].into_boxed_slice())
}

/// Whether every byte is zero. The OR-reduction over fixed pieces compiles to SIMD; checking
/// piece by piece stops early on data, which usually is non-zero within its first bytes.
pub(crate) fn is_zero(buf: &[u8]) -> bool {
    buf.chunks(256)
        .all(|piece| piece.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// Splits a buffer that starts at absolute offset `start` into alternating runs of all-zero and
/// non-zero blocks, with block edges at multiples of `block` in absolute terms, so they line up
/// with the file system's blocks. Partial blocks at either end are judged on the bytes present.
pub(crate) struct Runs<'a> {
    buf: &'a [u8],
    pos: usize,
    start: u64,
    block: u64,
}

/// One run from [`Runs`]: a range of the buffer and whether it is all zeros.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub zero: bool,
    pub range: Range<usize>,
}

impl<'a> Runs<'a> {
    pub(crate) fn new(buf: &'a [u8], start: u64, block: usize) -> Self {
        Self {
            buf,
            pos: 0,
            start,
            block: block.max(1) as u64,
        }
    }

    fn block_end(&self, pos: usize) -> usize {
        let abs = self.start + pos as u64;
        let to_edge = self.block - abs % self.block;
        // `to_edge` is at most `block`, a usize, so the cast cannot truncate.
        (pos + to_edge as usize).min(self.buf.len())
    }
}

impl Iterator for Runs<'_> {
    type Item = Run;

    fn next(&mut self) -> Option<Run> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let begin = self.pos;
        let mut end = self.block_end(begin);
        let zero = is_zero(&self.buf[begin..end]);
        while end < self.buf.len() {
            let next = self.block_end(end);
            if is_zero(&self.buf[end..next]) != zero {
                break;
            }
            end = next;
        }
        self.pos = end;
        Some(Run {
            zero,
            range: begin..end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(buf: &[u8], start: u64, block: usize) -> Vec<(bool, Range<usize>)> {
        Runs::new(buf, start, block)
            .map(|r| (r.zero, r.range))
            .collect()
    }

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[]));
        assert!(is_zero(&[0; 5000]));
        let mut v = vec![0u8; 5000];
        v[4999] = 1;
        assert!(!is_zero(&v));
        v[4999] = 0;
        v[0] = 0x80;
        assert!(!is_zero(&v));
        assert!(is_zero(zero_slice()));
        assert_eq!(zero_slice().len(), ZERO_SLICE_LEN);
    }

    #[test]
    fn runs_follow_absolute_block_edges() {
        // 16 bytes starting at absolute offset 6, blocks of 4: edges at 8, 12, 16, 20.
        let mut buf = [0u8; 16];
        buf[3] = 1; // absolute 9, in block 8..12
        assert_eq!(
            runs(&buf, 6, 4),
            vec![(true, 0..2), (false, 2..6), (true, 6..16)]
        );
        buf[15] = 7; // absolute 21, in the partial block 20..22
        assert_eq!(
            runs(&buf, 6, 4),
            vec![(true, 0..2), (false, 2..6), (true, 6..14), (false, 14..16)]
        );
    }

    #[test]
    fn runs_cover_the_whole_buffer() {
        let mut buf = vec![0u8; 10_000];
        for i in (0..buf.len()).step_by(777) {
            buf[i] = (i % 251) as u8 | 1;
        }
        buf[3000..9000].fill(0);
        let got = runs(&buf, 123, 512);
        let mut pos = 0;
        for (i, (zero, r)) in got.iter().enumerate() {
            assert_eq!(r.start, pos);
            assert_eq!(*zero, is_zero(&buf[r.clone()]));
            if i > 0 {
                assert_ne!(got[i - 1].0, *zero, "neighbouring runs must differ");
            }
            pos = r.end;
        }
        assert_eq!(pos, buf.len());
        assert!(got.iter().any(|(z, r)| *z && r.len() >= 5000));
        assert!(runs(&[], 0, 4096).is_empty());
    }
}
