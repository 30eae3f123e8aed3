//! The serving loop a simple device runs over one of its queues: pop every available chain,
//! let the device answer it, publish the used entry, and interrupt the driver once per batch
//! (honouring EVENT_IDX). A queue the guest corrupts (bad ring addresses, an avail index that
//! runs away) is marked broken and left alone until the driver resets the device.

use std::num::Wrapping;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use virtio_queue::{Queue, QueueT};

use super::chain::{Buffers, ChainError, split};
use super::{VirtioInterrupt, VirtioInterruptType};
use crate::memory::GuestMemoryMmap;

/// Why the device cannot take chains from the avail ring, if it cannot: the driver's avail
/// index is more than a queue's worth ahead of the chains the device has taken (it jumped
/// ahead, or went backwards and wrapped), or it cannot be read (misaligned). virtio-queue then
/// yields no chain while still reporting more work, and logs each time; a serving loop that
/// retries on "more work" would spin, so callers stop the queue instead, with one warning.
pub fn avail_fault(queue: &Queue, mem: &GuestMemoryMmap) -> Option<String> {
    match queue.avail_idx(mem, Ordering::Acquire) {
        Ok(idx) if (idx - Wrapping(queue.next_avail())).0 > queue.size() => Some(format!(
            "the driver's available index ({}) is more than the queue size ({}) ahead of the \
             device's ({}); queue stopped until the device is reset",
            idx.0,
            queue.size(),
            queue.next_avail()
        )),
        Ok(_) => None,
        Err(e) => Some(format!(
            "cannot read the available index: {e}; queue stopped until the device is reset"
        )),
    }
}

pub struct ActiveQueue {
    pub mem: GuestMemoryMmap,
    queue: Queue,
    interrupt: Arc<dyn VirtioInterrupt>,
    index: u16,
    broken: bool,
}

impl ActiveQueue {
    pub fn new(
        mem: GuestMemoryMmap,
        queue: Queue,
        interrupt: Arc<dyn VirtioInterrupt>,
        index: u16,
    ) -> Self {
        ActiveQueue {
            mem,
            queue,
            interrupt,
            index,
            broken: false,
        }
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Serves every available chain with `answer`, which returns the number of bytes it wrote
    /// into the chain's writable buffers. Returns the number of chains served.
    pub fn serve(
        &mut self,
        what: &str,
        mut answer: impl FnMut(Result<Buffers, ChainError>, &GuestMemoryMmap) -> u32,
    ) -> usize {
        if self.broken {
            return 0;
        }
        let mut handled = 0;
        loop {
            if let Some(why) = avail_fault(&self.queue, &self.mem) {
                tracing::warn!("{what}: {why}");
                self.broken = true;
                break;
            }
            if let Err(e) = self.queue.disable_notification(&self.mem) {
                tracing::warn!("{what}: queue unusable: {e}");
                self.broken = true;
                break;
            }
            let mut progressed = false;
            while let Some(chain) = self.queue.pop_descriptor_chain(&self.mem) {
                progressed = true;
                handled += 1;
                let head = chain.head_index();
                let used = answer(split(chain, &self.mem), &self.mem);
                if let Err(e) = self.queue.add_used(&self.mem, head, used) {
                    tracing::warn!("{what}: cannot complete a request: {e}");
                    self.broken = true;
                    return handled;
                }
            }
            match self.queue.enable_notification(&self.mem) {
                Ok(true) if progressed => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!("{what}: queue unusable: {e}");
                    self.broken = true;
                    break;
                }
            }
        }
        if handled > 0 {
            match self.queue.needs_notification(&self.mem) {
                Ok(true) => {
                    if let Err(e) = self
                        .interrupt
                        .trigger(VirtioInterruptType::Queue(self.index))
                    {
                        tracing::warn!("{what}: {e}");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("{what}: {e}"),
            }
        }
        handled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::InterruptError;
    use crate::virtio::test_utils::{TestQueue, W};
    use vm_memory::GuestAddress;

    struct NoInterrupt;

    impl VirtioInterrupt for NoInterrupt {
        fn trigger(&self, _kind: VirtioInterruptType) -> Result<(), InterruptError> {
            Ok(())
        }
    }

    #[test]
    fn avail_index_ahead_or_behind_stops_the_queue_once() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        for idx in [17u16, 1000, u16::MAX] {
            let mut q = TestQueue::new(&mem, 16);
            q.add_chain(&[(0x8000, 16, W)]);
            let mut active = ActiveQueue::new(mem.clone(), q.queue(), Arc::new(NoInterrupt), 0);
            assert_eq!(avail_fault(&q.queue(), &mem), None);
            q.set_avail_idx(idx);
            let why = avail_fault(&q.queue(), &mem).unwrap_or_default();
            assert!(why.contains(&format!("index ({idx})")), "{why}");
            let mut calls = 0;
            assert_eq!(
                active.serve("test", |_, _| {
                    calls += 1;
                    0
                }),
                0
            );
            assert!(active.is_broken(), "avail index {idx}");
            assert_eq!(
                active.serve("test", |_, _| {
                    calls += 1;
                    0
                }),
                0
            );
            assert_eq!(calls, 0);
        }
        // A full ring (exactly the queue size ahead) is fine.
        let mut q = TestQueue::new(&mem, 16);
        for _ in 0..16 {
            q.add_chain(&[(0x8000, 16, W)]);
        }
        let mut active = ActiveQueue::new(mem.clone(), q.queue(), Arc::new(NoInterrupt), 0);
        assert_eq!(active.serve("test", |_, _| 0), 16);
        assert!(!active.is_broken());
    }
}
