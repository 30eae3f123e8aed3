//! The serving loop a simple device runs over one of its queues: pop every available chain,
//! let the device answer it, publish the used entry, and interrupt the driver once per batch
//! (honouring EVENT_IDX). A queue the guest corrupts (bad ring addresses, an avail index that
//! runs away) is marked broken and left alone until the driver resets the device.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};

use super::chain::{Buffers, ChainError, split};
use super::{VirtioInterrupt, VirtioInterruptType};
use crate::memory::GuestMemoryMmap;

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
