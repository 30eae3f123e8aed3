//! Descriptor chains as plain lists of checked buffers, for devices whose requests are byte
//! streams (9P, entropy): every buffer is checked to lie in guest memory before any access,
//! and chains that loop or link outside the table are reported, not followed.

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("descriptor chain is empty")]
    Empty,
    #[error("descriptor chain loops, is longer than the queue, or links outside the table")]
    Broken,
    #[error("descriptor at {addr:#x} with length {len} is outside guest memory")]
    OutsideMemory { addr: u64, len: u32 },
    #[error("a readable descriptor follows a writable one")]
    ReadableAfterWritable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    pub addr: GuestAddress,
    pub len: u32,
}

/// A chain split into its device-readable and device-writable buffers, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Buffers {
    pub readable: Vec<Buffer>,
    pub writable: Vec<Buffer>,
}

impl Buffers {
    pub fn readable_len(&self) -> u64 {
        self.readable.iter().map(|b| u64::from(b.len)).sum()
    }

    pub fn writable_len(&self) -> u64 {
        self.writable.iter().map(|b| u64::from(b.len)).sum()
    }

    /// Reads at most `limit` bytes of the readable buffers, in order.
    pub fn read<M: GuestMemoryBackend>(&self, mem: &M, limit: usize) -> Vec<u8> {
        let want = (self.readable_len() as usize).min(limit);
        let mut out = vec![0u8; want];
        let mut at = 0;
        for b in &self.readable {
            if at == want {
                break;
            }
            let n = (b.len as usize).min(want - at);
            // Checked against guest memory when the chain was split.
            if mem.read_slice(&mut out[at..at + n], b.addr).is_err() {
                out.truncate(at);
                return out;
            }
            at += n;
        }
        out
    }

    /// Writes `data` across the writable buffers; returns how many bytes were written (less
    /// than `data.len()` only if the buffers are too small).
    pub fn write<M: GuestMemoryBackend>(&self, mem: &M, data: &[u8]) -> usize {
        let mut at = 0;
        for b in &self.writable {
            if at == data.len() {
                break;
            }
            let n = (b.len as usize).min(data.len() - at);
            if mem.write_slice(&data[at..at + n], b.addr).is_err() {
                break;
            }
            at += n;
        }
        at
    }
}

fn check_memory<M: GuestMemoryBackend>(mem: &M, d: &Descriptor) -> Result<(), ChainError> {
    let outside = ChainError::OutsideMemory {
        addr: d.addr().raw_value(),
        len: d.len(),
    };
    d.addr()
        .checked_add(u64::from(d.len()))
        .ok_or(outside.clone())?;
    if d.len() > 0 && !mem.check_range(d.addr(), d.len() as usize) {
        return Err(outside);
    }
    Ok(())
}

/// Splits a chain, checking every buffer against guest memory.
pub fn split<M: GuestMemoryBackend>(
    chain: impl IntoIterator<Item = Descriptor>,
    mem: &M,
) -> Result<Buffers, ChainError> {
    let mut bufs = Buffers::default();
    let mut any = false;
    let mut last_has_next = false;
    for d in chain {
        any = true;
        last_has_next = d.has_next();
        check_memory(mem, &d)?;
        let b = Buffer {
            addr: d.addr(),
            len: d.len(),
        };
        if d.is_write_only() {
            bufs.writable.push(b);
        } else {
            if !bufs.writable.is_empty() {
                return Err(ChainError::ReadableAfterWritable);
            }
            bufs.readable.push(b);
        }
    }
    if !any {
        return Err(ChainError::Empty);
    }
    // The iterator stops early (loop, bad index) while the last descriptor it returned
    // still says "more follows".
    if last_has_next {
        return Err(ChainError::Broken);
    }
    Ok(bufs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::GuestMemoryMmap;
    use crate::virtio::test_utils::{R, TestQueue, W};
    use virtio_queue::QueueT;

    #[test]
    fn splits_reads_and_writes_across_buffers() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut q = TestQueue::new(&mem, 16);
        mem.write_slice(b"hello", GuestAddress(0x8000)).unwrap();
        mem.write_slice(b" world", GuestAddress(0x9000)).unwrap();
        q.add_chain(&[
            (0x8000, 5, R),
            (0x9000, 6, R),
            (0xa000, 3, W),
            (0xb000, 10, W),
        ]);
        let mut queue = q.queue();
        let chain = queue.pop_descriptor_chain(&mem).unwrap();
        let b = split(chain, &mem).unwrap();
        assert_eq!(b.read(&mem, 100), b"hello world");
        assert_eq!(b.read(&mem, 7), b"hello w");
        assert_eq!(b.write(&mem, b"abcdef"), 6);
        let mut got = [0u8; 3];
        mem.read_slice(&mut got, GuestAddress(0xb000)).unwrap();
        assert_eq!(&got, b"def");
        assert_eq!(b.write(&mem, &[1u8; 20]), 13);
    }

    #[test]
    fn bad_chains_are_reported() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut q = TestQueue::new(&mem, 16);
        q.add_chain(&[(0x8000, 5, R), (0x7_0000_0000, 6, W)]);
        q.add_chain(&[(0x8000, 5, W), (0x9000, 6, R)]);
        q.add_chain(&[(0xf_fff0, 0x100, W)]);
        q.add_looping_chain(0x8000, 16);
        let mut queue = q.queue();
        let mut next = || split(queue.pop_descriptor_chain(&mem).unwrap(), &mem);
        assert!(matches!(next(), Err(ChainError::OutsideMemory { .. })));
        assert_eq!(next(), Err(ChainError::ReadableAfterWritable));
        assert!(matches!(next(), Err(ChainError::OutsideMemory { .. })));
        assert_eq!(next(), Err(ChainError::Broken));
    }
}
