//! The transmit path's guest side: a TX descriptor chain (virtio-net header, then the frame, all
//! device-readable) copied out of guest memory and checked. A pure function of the chain, guest
//! memory and the negotiated offloads.
//!
//! The frame is copied rather than handed to the backend in place: the guest can rewrite its
//! buffers at any moment, so what was checked must be what is sent.

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend};

use super::header::{self, HeaderError, MAX_BUFFER_LEN, Offloads, VNET_HDR_LEN, VirtioNetHdr};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("descriptor chain is empty")]
    EmptyChain,
    #[error("descriptor chain loops, is longer than the queue, or links outside the table")]
    BrokenChain,
    #[error("a transmit descriptor is device-writable")]
    WritableDescriptor,
    #[error("descriptor at {addr:#x} with length {len} is outside guest memory")]
    OutsideMemory { addr: u64, len: u32 },
    #[error("frame and header of more than {MAX_BUFFER_LEN} bytes")]
    TooLong,
    #[error("chain of {0} bytes is shorter than the {VNET_HDR_LEN}-byte virtio-net header")]
    NoHeader(usize),
    #[error(transparent)]
    Header(#[from] HeaderError),
}

/// Copies the chain into `buf` (at least [`MAX_BUFFER_LEN`] long) and checks it. Returns the
/// length of header plus frame; `buf` then starts with the sanitized header.
pub fn gather<M: GuestMemoryBackend>(
    chain: impl IntoIterator<Item = Descriptor>,
    mem: &M,
    buf: &mut [u8],
    allowed: &Offloads,
) -> Result<usize, TxError> {
    let limit = buf.len().min(MAX_BUFFER_LEN);
    let mut len = 0usize;
    let mut count = 0usize;
    let mut last_has_next = false;
    for d in chain {
        count += 1;
        last_has_next = d.has_next();
        if d.is_write_only() {
            return Err(TxError::WritableDescriptor);
        }
        let dlen = d.len() as usize;
        let outside = TxError::OutsideMemory {
            addr: d.addr().raw_value(),
            len: d.len(),
        };
        if dlen == 0 {
            continue;
        }
        let end = len.checked_add(dlen).ok_or(TxError::TooLong)?;
        if end > limit {
            return Err(TxError::TooLong);
        }
        if d.addr().checked_add(u64::from(d.len())).is_none() || !mem.check_range(d.addr(), dlen) {
            return Err(outside);
        }
        mem.read_slice(&mut buf[len..end], GuestAddress(d.addr().raw_value()))
            .map_err(|_| outside)?;
        len = end;
    }
    if count == 0 {
        return Err(TxError::EmptyChain);
    }
    // The iterator stops early (loop, bad index) while the last descriptor still says "more".
    if last_has_next {
        return Err(TxError::BrokenChain);
    }
    let Some(hdr) = buf
        .first_chunk_mut::<VNET_HDR_LEN>()
        .filter(|_| len >= VNET_HDR_LEN)
    else {
        return Err(TxError::NoHeader(len));
    };
    let checked = header::check(&VirtioNetHdr::from_bytes(hdr), len - VNET_HDR_LEN, allowed)?;
    *hdr = checked.to_bytes();
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::GuestMemoryMmap;
    use crate::virtio::test_utils::{R, TestQueue, W};

    const PLAIN: Offloads = Offloads {
        csum: false,
        tso4: false,
        tso6: false,
        mtu: Some(1500),
    };

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn frame(mem: &GuestMemoryMmap, at: u64, hdr: VirtioNetHdr, payload: &[u8]) {
        mem.write_slice(&hdr.to_bytes(), GuestAddress(at)).unwrap();
        mem.write_slice(payload, GuestAddress(at + VNET_HDR_LEN as u64))
            .unwrap();
    }

    #[test]
    fn gathers_header_and_frame_across_descriptors() {
        let m = mem();
        let mut q = TestQueue::new(&m, 16);
        let payload: Vec<u8> = (0..100u8).collect();
        frame(
            &m,
            0x8000,
            VirtioNetHdr {
                flags: 2,
                ..Default::default()
            },
            &payload,
        );
        // Header alone, then the frame split in two.
        q.add_chain(&[(0x8000, 12, R), (0x800c, 40, R), (0x8034, 60, R)]);
        let mut buf = vec![0u8; MAX_BUFFER_LEN];
        let n = gather(q.pop().unwrap(), &m, &mut buf, &PLAIN).unwrap();
        assert_eq!(n, 112);
        assert_eq!(&buf[12..112], &payload[..]);
        assert_eq!(buf[0], 0, "DATA_VALID is not passed on");
    }

    #[test]
    fn bad_chains_are_refused() {
        let m = mem();
        let mut q = TestQueue::new(&m, 16);
        let mut buf = vec![0u8; MAX_BUFFER_LEN];
        frame(&m, 0x8000, VirtioNetHdr::default(), &[0xaa; 60]);
        q.add_chain(&[(0x8000, 72, W)]);
        q.add_chain(&[(0x8000, 12, R), (0xff000, 0x2000, R)]);
        q.add_chain(&[(u64::MAX - 4, 12, R)]);
        q.add_looping_chain(0x8000, 72);
        q.add_chain(&[(0x8000, 11, R)]);
        q.add_chain(&[(0x8000, 12, R), (0x8000, 0x20000, R)]);
        q.add_chain(&[(0x8000, 12, R), (0x800c, 4, R)]);
        q.add_chain(&[(0x8000, 0, R)]);
        let mut next = || gather(q.pop().unwrap(), &m, &mut buf, &PLAIN);
        assert_eq!(next(), Err(TxError::WritableDescriptor));
        assert_eq!(
            next(),
            Err(TxError::OutsideMemory {
                addr: 0xff000,
                len: 0x2000
            })
        );
        assert!(matches!(next(), Err(TxError::OutsideMemory { .. })));
        assert_eq!(next(), Err(TxError::BrokenChain));
        assert_eq!(next(), Err(TxError::NoHeader(11)));
        assert_eq!(next(), Err(TxError::TooLong));
        assert_eq!(next(), Err(TxError::Header(HeaderError::FrameTooShort(4))));
        assert_eq!(next(), Err(TxError::NoHeader(0)));
    }

    #[test]
    fn header_rules_apply() {
        let m = mem();
        let mut q = TestQueue::new(&m, 16);
        let mut buf = vec![0u8; MAX_BUFFER_LEN];
        // Checksum offload the driver never negotiated.
        frame(
            &m,
            0x8000,
            VirtioNetHdr {
                flags: 1,
                csum_start: 34,
                csum_offset: 6,
                ..Default::default()
            },
            &[0; 60],
        );
        q.add_chain(&[(0x8000, 72, R)]);
        // A 2000-byte frame over a 1500 MTU without GSO.
        frame(&m, 0x9000, VirtioNetHdr::default(), &[0; 2000]);
        q.add_chain(&[(0x9000, 2012, R)]);
        assert_eq!(
            gather(q.pop().unwrap(), &m, &mut buf, &PLAIN),
            Err(TxError::Header(HeaderError::CsumNotNegotiated))
        );
        assert!(matches!(
            gather(q.pop().unwrap(), &m, &mut buf, &PLAIN),
            Err(TxError::Header(HeaderError::FrameOverMtu { .. }))
        ));
    }
}
