//! Byte counters for the two ends of a stream.

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::rc::Rc;

/// Counts the bytes that reach the inner writer: the compressed size of an export.
pub(crate) struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> CountingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self { inner, count: 0 }
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What a [`CountingReader`] saw, shared with whoever owns the decoder it sits under.
#[derive(Clone, Default)]
pub(crate) struct ReadStats {
    bytes: Rc<Cell<u64>>,
    failed: Rc<Cell<bool>>,
    tail: Rc<RefCell<Vec<u8>>>,
    tail_len: usize,
}

impl ReadStats {
    /// Stats that also keep the last `tail_len` bytes read.
    pub(crate) fn with_tail(tail_len: usize) -> Self {
        Self {
            tail_len,
            ..Self::default()
        }
    }

    /// The last bytes read, up to the length given to [`Self::with_tail`].
    pub(crate) fn tail(&self) -> Vec<u8> {
        self.tail.borrow().clone()
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.get()
    }

    /// Whether the input itself failed, as opposed to a decoder rejecting what it read.
    pub(crate) fn input_failed(&self) -> bool {
        self.failed.get()
    }
}

/// Counts the bytes read from the input (the compressed size of an import), remembers whether
/// the input itself returned an error, and keeps its last bytes, where an end record would be.
pub(crate) struct CountingReader<R> {
    inner: R,
    stats: ReadStats,
}

impl<R: Read> CountingReader<R> {
    pub(crate) fn new(inner: R, stats: ReadStats) -> Self {
        Self { inner, stats }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.stats.bytes.set(self.stats.bytes.get() + n as u64);
                let keep = self.stats.tail_len;
                if keep > 0 {
                    let mut tail = self.stats.tail.borrow_mut();
                    tail.extend_from_slice(&buf[n.saturating_sub(keep)..n]);
                    let excess = tail.len().saturating_sub(keep);
                    tail.drain(..excess);
                }
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.stats.failed.set(true);
                }
                Err(e)
            }
        }
    }
}
