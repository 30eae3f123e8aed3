//! SHA-256 of the raw content on its own thread, so hashing (which for a mostly-hole image is
//! most of the work: every zero of every hole must pass through SHA-256) runs beside compression
//! and I/O instead of after them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use super::SparseError;
use super::zeros::zero_slice;

/// Buffers in flight between the reader and the hashing thread; enough to keep both busy.
const POOL: usize = 4;

enum Piece {
    Data(Vec<u8>),
    Zeros(u64),
}

/// Feeds content, in order, to a hashing thread and hands back the buffers it is done with.
pub(crate) struct BackgroundHasher {
    tx: Option<SyncSender<Piece>>,
    free: Receiver<Vec<u8>>,
    handle: Option<JoinHandle<String>>,
    cancel: Arc<AtomicBool>,
    allocated: usize,
    buf_len: usize,
    /// A buffer the caller handed back unused, served before any other.
    spare: Option<Vec<u8>>,
}

impl BackgroundHasher {
    /// Starts the thread; buffers from [`Self::buffer`] have capacity `buf_len`.
    pub(crate) fn spawn(buf_len: usize) -> Result<Self, SparseError> {
        let (tx, rx) = sync_channel::<Piece>(POOL);
        let (free_tx, free) = channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&cancel);
        let handle = std::thread::Builder::new()
            .name("sha256".into())
            .spawn(move || {
                let mut hasher = Sha256::new();
                let zeros = zero_slice();
                for piece in rx {
                    match piece {
                        Piece::Data(buf) => {
                            hasher.update(&buf);
                            // The reader may have finished and dropped its end; nothing to return to.
                            let _ = free_tx.send(buf);
                        }
                        Piece::Zeros(mut n) => {
                            while n > 0 && !stop.load(Ordering::Relaxed) {
                                let k = n.min(zeros.len() as u64);
                                // `k` is at most the slice length, a usize.
                                hasher.update(&zeros[..k as usize]);
                                n -= k;
                            }
                        }
                    }
                }
                hex::encode(hasher.finalize())
            })
            .map_err(SparseError::Thread)?;
        Ok(Self {
            tx: Some(tx),
            free,
            handle: Some(handle),
            cancel,
            allocated: 0,
            buf_len,
            spare: None,
        })
    }

    /// A stand-in that hashes nothing and hands every buffer straight back, for when no digest
    /// is wanted.
    pub(crate) fn disabled(buf_len: usize) -> Self {
        let (_, free) = channel();
        Self {
            tx: None,
            free,
            handle: None,
            cancel: Arc::new(AtomicBool::new(false)),
            allocated: 0,
            buf_len,
            spare: None,
        }
    }

    /// A buffer of `buf_len` bytes to read the next piece of content into (truncate it to what
    /// was read): a returned one, a new one while the pool is not full, else the next one the
    /// thread hands back. Its bytes are stale, not zeroed: clearing a MiB per piece costs more
    /// than it is worth.
    pub(crate) fn buffer(&mut self) -> Result<Vec<u8>, SparseError> {
        if let Some(mut buf) = self.spare.take() {
            buf.resize(self.buf_len, 0);
            return Ok(buf);
        }
        let mut buf = match self.free.try_recv() {
            Ok(b) => b,
            Err(_) if self.allocated < POOL => {
                self.allocated += 1;
                vec![0; self.buf_len]
            }
            Err(_) => self.free.recv().map_err(|_| SparseError::HasherGone)?,
        };
        // Only a short last piece leaves anything to fill back in.
        buf.resize(self.buf_len, 0);
        Ok(buf)
    }

    /// Returns a buffer from [`Self::buffer`] that was not sent, so the pool keeps its size.
    pub(crate) fn give_back(&mut self, buf: Vec<u8>) {
        self.spare = Some(buf);
    }

    /// The next piece of content.
    pub(crate) fn data(&mut self, buf: Vec<u8>) -> Result<(), SparseError> {
        if self.handle.is_none() {
            self.give_back(buf);
            return Ok(());
        }
        self.send(Piece::Data(buf))
    }

    /// The next `n` bytes of content are zeros.
    pub(crate) fn zeros(&mut self, n: u64) -> Result<(), SparseError> {
        if n == 0 || self.handle.is_none() {
            Ok(())
        } else {
            self.send(Piece::Zeros(n))
        }
    }

    fn send(&mut self, piece: Piece) -> Result<(), SparseError> {
        let tx = self.tx.as_ref().ok_or(SparseError::HasherGone)?;
        tx.send(piece).map_err(|_| SparseError::HasherGone)
    }

    /// Waits for the thread to hash everything sent and returns the lower-case hex digest;
    /// `None` from a [`Self::disabled`] one.
    pub(crate) fn finish(mut self) -> Result<Option<String>, SparseError> {
        drop(self.tx.take());
        match self.handle.take() {
            Some(handle) => handle.join().map(Some).map_err(|_| SparseError::HasherGone),
            None => Ok(None),
        }
    }
}

impl Drop for BackgroundHasher {
    /// On an error path the thread may still have gigabytes of zeros queued; stop it rather than
    /// leave it burning a core in a long-lived caller.
    fn drop(&mut self) {
        if self.handle.is_some() {
            self.cancel.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_data_and_zeros_in_order() {
        let mut h = BackgroundHasher::spawn(16).unwrap();
        let mut expected = Sha256::new();
        for i in 0..10u8 {
            let mut b = h.buffer().unwrap();
            assert_eq!(b.len(), 16);
            b.truncate(3);
            b.fill(i + 1);
            expected.update([i + 1; 3]);
            h.data(b).unwrap();
            h.zeros(u64::from(i) * 700_000).unwrap();
            expected.update(vec![0u8; usize::from(i) * 700_000]);
        }
        assert_eq!(
            h.finish().unwrap().unwrap(),
            hex::encode(expected.finalize())
        );
    }

    #[test]
    fn a_disabled_hasher_recycles_one_buffer() {
        let mut h = BackgroundHasher::disabled(8);
        for _ in 0..10 {
            let b = h.buffer().unwrap();
            assert_eq!(b.len(), 8);
            h.data(b).unwrap();
            h.zeros(1 << 40).unwrap();
        }
        assert_eq!(h.allocated, 1);
        assert_eq!(h.finish().unwrap(), None);
    }

    #[test]
    fn empty_content_has_the_empty_digest() {
        let h = BackgroundHasher::spawn(16).unwrap();
        assert_eq!(
            h.finish().unwrap().unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
