//! Wires a block device's queue doorbell (an ioeventfd) into the device event loop.

use std::os::unix::io::AsRawFd;
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::Block;
use crate::sync::lock;

pub struct BlockEventHandler {
    device: Arc<Mutex<Block>>,
    queue_evt: EventFd,
}

impl BlockEventHandler {
    /// `queue_evt` is a clone of the eventfd the transport registered as the doorbell.
    pub fn new(device: Arc<Mutex<Block>>, queue_evt: EventFd) -> Self {
        BlockEventHandler { device, queue_evt }
    }
}

impl MutEventSubscriber for BlockEventHandler {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if events.fd() != self.queue_evt.as_raw_fd() {
            return;
        }
        // The counter only says "something happened"; the ring says what.
        let _ = self.queue_evt.read();
        lock(&self.device).process_queue();
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.queue_evt, EventSet::IN)) {
            tracing::error!("cannot watch a disk queue: {e:?}");
        }
    }
}
