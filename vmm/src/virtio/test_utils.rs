//! Split virtqueues built by hand in guest memory, for device tests without a guest.

use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

use crate::memory::GuestMemoryMmap;

/// Device-readable buffer.
pub const R: u16 = 0;
/// Device-writable buffer.
pub const W: u16 = VRING_DESC_F_WRITE as u16;

const DESC_TABLE: u64 = 0x1000;
const AVAIL_RING: u64 = 0x2000;
const USED_RING: u64 = 0x3000;

pub struct TestQueue<'a> {
    mem: &'a GuestMemoryMmap,
    /// Added to the ring addresses, so a device with several queues can have them all.
    base: u64,
    size: u16,
    next_desc: u16,
    avail_idx: u16,
    queue: Queue,
}

impl<'a> TestQueue<'a> {
    pub fn new(mem: &'a GuestMemoryMmap, size: u16) -> Self {
        Self::new_at(mem, size, 0)
    }

    /// A queue whose rings start `base` bytes above the default addresses.
    pub fn new_at(mem: &'a GuestMemoryMmap, size: u16, base: u64) -> Self {
        let mut queue = Queue::new(size).unwrap();
        queue.set_desc_table_address(Some((base + DESC_TABLE) as u32), Some(0));
        queue.set_avail_ring_address(Some((base + AVAIL_RING) as u32), Some(0));
        queue.set_used_ring_address(Some((base + USED_RING) as u32), Some(0));
        queue.set_ready(true);
        mem.write_obj(0u16, GuestAddress(base + AVAIL_RING + 2))
            .unwrap();
        mem.write_obj(0u16, GuestAddress(base + USED_RING + 2))
            .unwrap();
        TestQueue {
            mem,
            base,
            size,
            next_desc: 0,
            avail_idx: 0,
            queue,
        }
    }

    fn write_desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = self.base + DESC_TABLE + u64::from(index) * 16;
        self.mem.write_obj(addr, GuestAddress(at)).unwrap();
        self.mem.write_obj(len, GuestAddress(at + 8)).unwrap();
        self.mem.write_obj(flags, GuestAddress(at + 12)).unwrap();
        self.mem.write_obj(next, GuestAddress(at + 14)).unwrap();
    }

    fn publish(&mut self, head: u16) {
        let slot = self.base + AVAIL_RING + 4 + u64::from(self.avail_idx % self.size) * 2;
        self.mem.write_obj(head, GuestAddress(slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem
            .write_obj(self.avail_idx, GuestAddress(self.base + AVAIL_RING + 2))
            .unwrap();
    }

    /// Adds a chain of (address, length, R/W) descriptors and makes it available.
    pub fn add_chain(&mut self, descs: &[(u64, u32, u16)]) -> u16 {
        let head = self.next_desc;
        for (i, (addr, len, flags)) in descs.iter().enumerate() {
            let index = (self.next_desc + i as u16) % self.size;
            let last = i + 1 == descs.len();
            let next = (index + 1) % self.size;
            let flags = if last {
                *flags
            } else {
                flags | VRING_DESC_F_NEXT as u16
            };
            self.write_desc(index, *addr, *len, flags, if last { 0 } else { next });
        }
        self.next_desc = (self.next_desc + descs.len() as u16) % self.size;
        self.publish(head);
        head
    }

    /// A descriptor whose NEXT points at itself.
    pub fn add_looping_chain(&mut self, addr: u64, len: u32) -> u16 {
        let head = self.next_desc;
        self.write_desc(head, addr, len, VRING_DESC_F_NEXT as u16, head);
        self.next_desc = (self.next_desc + 1) % self.size;
        self.publish(head);
        head
    }

    /// Makes `head` available again without writing descriptors (for raw ring abuse).
    pub fn publish_raw(&mut self, head: u16) {
        self.publish(head);
    }

    /// Sets the avail index to anything, e.g. far ahead of what was published.
    pub fn set_avail_idx(&mut self, idx: u16) {
        self.avail_idx = idx;
        self.mem
            .write_obj(idx, GuestAddress(self.base + AVAIL_RING + 2))
            .unwrap();
    }

    pub fn pop(&mut self) -> Option<DescriptorChain<&'a GuestMemoryMmap>> {
        self.queue.pop_descriptor_chain(self.mem)
    }

    /// The queue as a driver configured it, to hand to a device.
    pub fn queue(&self) -> Queue {
        Queue::try_from(self.queue.state()).unwrap()
    }

    /// Used ring: (idx, entries so far as (id, len)).
    pub fn used(&self) -> (u16, Vec<(u32, u32)>) {
        let idx: u16 = self
            .mem
            .read_obj(GuestAddress(self.base + USED_RING + 2))
            .unwrap();
        let entries = (0..idx)
            .map(|i| {
                let at = self.base + USED_RING + 4 + u64::from(i % self.size) * 8;
                let id: u32 = self.mem.read_obj(GuestAddress(at)).unwrap();
                let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).unwrap();
                (id, len)
            })
            .collect();
        (idx, entries)
    }
}
