//! The receive path's guest side: the buffers the guest posted on the RX queue, and writing a
//! frame (virtio-net header first) into them.
//!
//! With VIRTIO_NET_F_MRG_RXBUF a frame may span several buffers; the header's num_buffers says
//! how many, and the guest reads them as consecutive used-ring entries. virtio-queue's
//! `add_used` publishes the used index after every entry, so a guest polling the ring could
//! see the first buffer of a frame before the rest and drop it as truncated. This module
//! writes the entries of a frame first and publishes the index once ([`publish`]), and decides
//! on interrupts itself ([`RxQueue::needs_interrupt`]).
//!
//! Buffers are popped from the avail ring into a private stash as needed and used from there,
//! so a frame that does not fit yet never needs the ring rewound.

use std::collections::VecDeque;
use std::num::Wrapping;
use std::sync::atomic::{Ordering, fence};

use virtio_bindings::virtio_ring::VRING_AVAIL_F_NO_INTERRUPT;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend};

use super::header::VNET_HDR_LEN;
use crate::memory::GuestMemoryMmap;

/// One posted receive buffer: its head index and writable spans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RxChain {
    pub head: u16,
    spans: Vec<(GuestAddress, u32)>,
    pub capacity: usize,
    /// Descriptors it took, to know when the guest cannot possibly post more.
    descriptors: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RxChainError {
    #[error("descriptor chain loops, is longer than the queue, or links outside the table")]
    BrokenChain,
    #[error("a receive descriptor is device-readable")]
    ReadableDescriptor,
    #[error("descriptor at {addr:#x} with length {len} is outside guest memory")]
    OutsideMemory { addr: u64, len: u32 },
    #[error("receive buffer of {0} bytes cannot hold the {VNET_HDR_LEN}-byte header")]
    TooSmall(usize),
}

/// Checks a chain the guest posted for receiving.
pub fn parse_chain<M: GuestMemoryBackend>(
    chain: impl IntoIterator<Item = virtio_queue::desc::split::Descriptor>,
    head: u16,
    mem: &M,
) -> Result<RxChain, RxChainError> {
    let mut spans = Vec::new();
    let mut capacity = 0usize;
    let mut descriptors = 0;
    let mut last_has_next = false;
    for d in chain {
        descriptors += 1;
        last_has_next = d.has_next();
        if !d.is_write_only() {
            return Err(RxChainError::ReadableDescriptor);
        }
        if d.len() == 0 {
            continue;
        }
        let outside = RxChainError::OutsideMemory {
            addr: d.addr().raw_value(),
            len: d.len(),
        };
        if d.addr().checked_add(u64::from(d.len())).is_none()
            || !mem.check_range(d.addr(), d.len() as usize)
        {
            return Err(outside);
        }
        spans.push((GuestAddress(d.addr().raw_value()), d.len()));
        capacity = capacity.saturating_add(d.len() as usize);
    }
    if last_has_next {
        return Err(RxChainError::BrokenChain);
    }
    // The spec makes every receive buffer at least a header long (5.1.6.3.1).
    if capacity < VNET_HDR_LEN {
        return Err(RxChainError::TooSmall(capacity));
    }
    Ok(RxChain {
        head,
        spans,
        capacity,
        descriptors,
    })
}

/// What became of a frame offered to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Written; the used entries are in the caller's list.
    Delivered,
    /// Not enough buffers yet: keep the frame and wait for the guest to post more.
    NoRoom,
    /// It can never fit (the buffers are too small, or the guest posted everything it can and
    /// it is still not enough): drop it.
    TooBig,
}

/// The RX queue's device-side state.
#[derive(Debug, Default)]
pub struct RxQueue {
    held: VecDeque<RxChain>,
    held_bytes: usize,
    held_descriptors: usize,
    /// Used index when the guest was last considered for an interrupt.
    signalled: Wrapping<u16>,
    /// Chains the guest posted that were malformed, since the last call to `take_bad`.
    bad: Vec<(u16, RxChainError)>,
}

impl RxQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes in buffers already taken from the ring.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Malformed chains seen since the last call; they must be completed with length 0.
    pub fn take_bad(&mut self) -> Vec<(u16, RxChainError)> {
        std::mem::take(&mut self.bad)
    }

    /// Takes chains off the avail ring until `need` bytes (or one chain, if `need` is 0) are
    /// held. Returns whether any chain was taken.
    fn fill(&mut self, queue: &mut Queue, mem: &GuestMemoryMmap, need: usize) -> bool {
        let mut took = false;
        while self.held_bytes < need || self.held.is_empty() {
            let Some(chain) = queue.pop_descriptor_chain(mem) else {
                break;
            };
            took = true;
            let head = chain.head_index();
            match parse_chain(chain, head, mem) {
                Ok(c) => {
                    self.held_bytes += c.capacity;
                    self.held_descriptors += c.descriptors;
                    self.held.push_back(c);
                }
                Err(e) => self.bad.push((head, e)),
            }
        }
        took
    }

    /// Writes `buf` (virtio-net header and frame) into the guest's buffers, setting the
    /// header's num_buffers, and appends the used entries (head, length) to `used`.
    /// Does not publish them: see [`publish`].
    pub fn deliver(
        &mut self,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
        buf: &mut [u8],
        mergeable: bool,
        used: &mut Vec<(u16, u32)>,
    ) -> Delivery {
        let need = if mergeable { buf.len() } else { 0 };
        self.fill(queue, mem, need);
        let Some(first) = self.held.front() else {
            return Delivery::NoRoom;
        };
        let chains = if mergeable {
            if self.held_bytes < buf.len() {
                // Everything the ring can carry is already here: more will never come.
                return if self.held_descriptors >= usize::from(queue.size()) {
                    Delivery::TooBig
                } else {
                    Delivery::NoRoom
                };
            }
            let mut n = 0;
            let mut covered = 0;
            while covered < buf.len() {
                covered += self.held[n].capacity;
                n += 1;
            }
            n
        } else {
            if first.capacity < buf.len() {
                return Delivery::TooBig;
            }
            1
        };
        let Ok(num_buffers) = u16::try_from(chains) else {
            return Delivery::TooBig;
        };
        if let Some(nb) = buf.get_mut(10..12) {
            nb.copy_from_slice(&num_buffers.to_le_bytes());
        }
        let mut rest: &[u8] = buf;
        let mut entries = Vec::with_capacity(chains);
        for chain in self.held.iter().take(chains) {
            let mut written = 0usize;
            for (addr, len) in &chain.spans {
                if rest.is_empty() {
                    break;
                }
                let n = rest.len().min(*len as usize);
                // The spans were checked against guest memory when the chain was taken, and
                // guest memory never shrinks, so this cannot fail; if it did, the frame is lost
                // and the buffers stay ours.
                if mem.write_slice(&rest[..n], *addr).is_err() {
                    return Delivery::TooBig;
                }
                rest = &rest[n..];
                written += n;
            }
            entries.push((chain.head, written as u32));
        }
        for _ in 0..chains {
            if let Some(c) = self.held.pop_front() {
                self.held_bytes -= c.capacity;
                self.held_descriptors -= c.descriptors;
            }
        }
        used.extend(entries);
        Delivery::Delivered
    }

    /// Whether the guest wants an interrupt for what was published since the last call
    /// (VIRTIO_F_EVENT_IDX's used_event, or the avail ring's NO_INTERRUPT flag).
    pub fn needs_interrupt(&mut self, queue: &Queue, mem: &GuestMemoryMmap) -> bool {
        let new = Wrapping(queue.next_used());
        let old = std::mem::replace(&mut self.signalled, new);
        if new == old {
            return false;
        }
        // The used index must be visible before the guest's suppression field is read, or
        // the guest may go to sleep on a ring it thinks is empty.
        fence(Ordering::SeqCst);
        let avail = GuestAddress(queue.avail_ring());
        if queue.event_idx_enabled() {
            let at = avail.checked_add(4 + 2 * u64::from(queue.size()));
            let Some(used_event) = at.and_then(|a| mem.load::<u16>(a, Ordering::Acquire).ok())
            else {
                return true;
            };
            let used_event = Wrapping(u16::from_le(used_event));
            // vring_need_event(): did the index pass used_event since `old`?
            (new - used_event - Wrapping(1)) < (new - old)
        } else {
            match mem.load::<u16>(avail, Ordering::Acquire) {
                Ok(flags) => u16::from_le(flags) & VRING_AVAIL_F_NO_INTERRUPT as u16 == 0,
                Err(_) => true,
            }
        }
    }
}

/// Adds `entries` to the used ring and then publishes them with one index update.
pub fn publish(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    entries: &[(u16, u32)],
) -> Result<(), vm_memory::GuestMemoryError> {
    if entries.is_empty() {
        return Ok(());
    }
    let ring = GuestAddress(queue.used_ring());
    let size = queue.size();
    let mut next = Wrapping(queue.next_used());
    let overflow = || vm_memory::GuestMemoryError::InvalidGuestAddress(ring);
    for (head, len) in entries {
        let slot = u64::from(next.0 % size);
        let at = ring.checked_add(4 + slot * 8).ok_or_else(overflow)?;
        mem.write_obj(u32::from(*head).to_le(), at)?;
        mem.write_obj(len.to_le(), at.checked_add(4).ok_or_else(overflow)?)?;
        next += Wrapping(1);
    }
    let idx = ring.checked_add(2).ok_or_else(overflow)?;
    mem.store(next.0.to_le(), idx, Ordering::Release)?;
    queue.set_next_used(next.0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_utils::{R, TestQueue, W};

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn frame(len: usize) -> Vec<u8> {
        let mut b = vec![0u8; VNET_HDR_LEN];
        b.extend((0..len).map(|i| (i * 7) as u8));
        b
    }

    fn read(m: &GuestMemoryMmap, at: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        m.read_slice(&mut v, GuestAddress(at)).unwrap();
        v
    }

    #[test]
    fn a_frame_fills_one_buffer_and_says_so() {
        let m = mem();
        let mut tq = TestQueue::new(&m, 16);
        tq.add_chain(&[(0x8000, 2048, W)]);
        let mut q = tq.queue();
        let mut rx = RxQueue::new();
        let mut used = Vec::new();
        let mut f = frame(100);
        assert_eq!(
            rx.deliver(&mut q, &m, &mut f, false, &mut used),
            Delivery::Delivered
        );
        assert_eq!(used, vec![(0, 112)]);
        publish(&mut q, &m, &used).unwrap();
        assert_eq!(tq.used(), (1, vec![(0, 112)]));
        let got = read(&m, 0x8000, 112);
        assert_eq!(&got[10..12], &[1, 0], "num_buffers is 1");
        assert_eq!(&got[12..], &frame(100)[12..]);
    }

    #[test]
    fn mergeable_frames_span_buffers_and_publish_once() {
        let m = mem();
        let mut tq = TestQueue::new(&m, 16);
        for i in 0..4u64 {
            tq.add_chain(&[(0x10000 + i * 0x1000, 1000, W)]);
        }
        let mut q = tq.queue();
        let mut rx = RxQueue::new();
        let mut used = Vec::new();
        let mut f = frame(2500);
        assert_eq!(
            rx.deliver(&mut q, &m, &mut f, true, &mut used),
            Delivery::Delivered
        );
        assert_eq!(used, vec![(0, 1000), (1, 1000), (2, 512)]);
        assert_eq!(tq.used().0, 0, "nothing visible before publish");
        publish(&mut q, &m, &used).unwrap();
        assert_eq!(tq.used(), (3, vec![(0, 1000), (1, 1000), (2, 512)]));
        let mut got = read(&m, 0x10000, 1000);
        got.extend(read(&m, 0x11000, 1000));
        got.extend(read(&m, 0x12000, 512));
        assert_eq!(&got[10..12], &[3, 0], "num_buffers is 3");
        assert_eq!(&got[12..], &f[12..]);
        assert_eq!(
            rx.held_bytes(),
            0,
            "buffer 3 stays in the ring until needed"
        );
    }

    #[test]
    fn no_room_then_room() {
        let m = mem();
        let mut tq = TestQueue::new(&m, 16);
        let mut q = tq.queue();
        let mut rx = RxQueue::new();
        let mut used = Vec::new();
        let mut f = frame(3000);
        assert_eq!(
            rx.deliver(&mut q, &m, &mut f, true, &mut used),
            Delivery::NoRoom
        );
        tq.add_chain(&[(0x10000, 2048, W)]);
        assert_eq!(
            rx.deliver(&mut q, &m, &mut f, true, &mut used),
            Delivery::NoRoom
        );
        assert_eq!(rx.held_bytes(), 2048, "the first buffer is held, not lost");
        tq.add_chain(&[(0x11000, 2048, W)]);
        assert_eq!(
            rx.deliver(&mut q, &m, &mut f, true, &mut used),
            Delivery::Delivered
        );
        assert_eq!(used, vec![(0, 2048), (1, 964)]);
    }

    #[test]
    fn frames_that_can_never_fit_are_too_big() {
        let m = mem();
        // Without MRG_RXBUF one buffer must hold the frame.
        let mut tq = TestQueue::new(&m, 4);
        tq.add_chain(&[(0x10000, 1526, W)]);
        let mut q = tq.queue();
        let mut rx = RxQueue::new();
        let mut used = Vec::new();
        assert_eq!(
            rx.deliver(&mut q, &m, &mut frame(9000), false, &mut used),
            Delivery::TooBig
        );
        assert_eq!(
            rx.deliver(&mut q, &m, &mut frame(1500), false, &mut used),
            Delivery::Delivered,
            "the buffer is still there for a frame that fits"
        );
        // With MRG_RXBUF: the whole ring (4 descriptors) holds less than the frame.
        let mut tq = TestQueue::new(&m, 4);
        for i in 0..4u64 {
            tq.add_chain(&[(0x20000 + i * 0x1000, 100, W)]);
        }
        let mut q = tq.queue();
        let mut rx = RxQueue::new();
        assert_eq!(
            rx.deliver(&mut q, &m, &mut frame(1000), true, &mut used),
            Delivery::TooBig
        );
        assert_eq!(
            rx.deliver(&mut q, &m, &mut frame(300), true, &mut used),
            Delivery::Delivered
        );
    }

    #[test]
    fn malformed_buffers_are_set_aside() {
        let m = mem();
        let mut tq = TestQueue::new(&m, 16);
        tq.add_chain(&[(0x8000, 100, R)]);
        tq.add_chain(&[(0xff000, 0x2000, W)]);
        let looping = tq.add_looping_chain(0x8000, 100);
        // Make the looping descriptor device-writable (TestQueue's descriptor table is at
        // 0x1000, 16 bytes each, flags at +12): NEXT | WRITE.
        m.write_obj(3u16, GuestAddress(0x1000 + u64::from(looping) * 16 + 12))
            .unwrap();
        tq.add_chain(&[(0x8000, 8, W)]);
        tq.add_chain(&[(0x9000, 12, W), (0xa000, 200, W)]);
        let mut q = tq.queue();
        let mut rx = RxQueue::new();
        let mut used = Vec::new();
        assert_eq!(
            rx.deliver(&mut q, &m, &mut frame(150), false, &mut used),
            Delivery::Delivered
        );
        assert_eq!(
            rx.take_bad(),
            vec![
                (0, RxChainError::ReadableDescriptor),
                (
                    1,
                    RxChainError::OutsideMemory {
                        addr: 0xff000,
                        len: 0x2000
                    }
                ),
                (2, RxChainError::BrokenChain),
                (3, RxChainError::TooSmall(8)),
            ]
        );
        assert_eq!(used, vec![(4, 162)]);
        // The header went to the first span, the frame continued in the second.
        assert_eq!(read(&m, 0x9000, 12)[10], 1);
        assert_eq!(read(&m, 0xa000, 150), frame(150)[12..].to_vec());
    }

    #[test]
    fn interrupts_follow_used_event_and_no_interrupt() {
        let m = mem();
        let mut tq = TestQueue::new(&m, 16);
        for i in 0..4u64 {
            tq.add_chain(&[(0x10000 + i * 0x1000, 2048, W)]);
        }
        let mut q = tq.queue();
        let mut rx = RxQueue::new();
        // Without EVENT_IDX: the NO_INTERRUPT flag in the avail ring decides.
        let mut used = Vec::new();
        rx.deliver(&mut q, &m, &mut frame(60), false, &mut used);
        publish(&mut q, &m, &used).unwrap();
        assert!(rx.needs_interrupt(&q, &m));
        assert!(!rx.needs_interrupt(&q, &m), "nothing new since");
        let avail = GuestAddress(q.avail_ring());
        m.write_obj(1u16, avail).unwrap();
        used.clear();
        rx.deliver(&mut q, &m, &mut frame(60), false, &mut used);
        publish(&mut q, &m, &used).unwrap();
        assert!(!rx.needs_interrupt(&q, &m), "guest asked for no interrupts");
        m.write_obj(0u16, avail).unwrap();
        // With EVENT_IDX: only when the used index passes used_event.
        q.set_event_idx(true);
        let used_event = avail.unchecked_add(4 + 2 * 16);
        m.write_obj(3u16, used_event).unwrap();
        used.clear();
        rx.deliver(&mut q, &m, &mut frame(60), false, &mut used);
        publish(&mut q, &m, &used).unwrap();
        assert_eq!(q.next_used(), 3);
        assert!(
            !rx.needs_interrupt(&q, &m),
            "used idx 3 has not passed used_event 3"
        );
        used.clear();
        rx.deliver(&mut q, &m, &mut frame(60), false, &mut used);
        publish(&mut q, &m, &used).unwrap();
        assert!(
            rx.needs_interrupt(&q, &m),
            "entry 3 was the one the guest waits for"
        );
    }
}
