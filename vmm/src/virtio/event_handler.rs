//! Wires a device's queue doorbells (ioeventfds) into the device event loop, for devices that
//! serve their queues synchronously (9P, entropy). virtio-blk keeps its own handler.

use std::os::unix::io::AsRawFd;
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use crate::sync::lock;

/// A device whose queues are served when their doorbell rings.
pub trait QueueDevice: Send {
    /// Serves queue `index`; returns the number of requests handled.
    fn process_queue(&mut self, index: usize) -> usize;
}

pub struct QueueEventHandler<D: QueueDevice> {
    device: Arc<Mutex<D>>,
    /// One per queue, clones of the eventfds the transport registered as doorbells.
    queue_evts: Vec<EventFd>,
    name: String,
}

impl<D: QueueDevice> QueueEventHandler<D> {
    pub fn new(device: Arc<Mutex<D>>, queue_evts: Vec<EventFd>, name: String) -> Self {
        QueueEventHandler {
            device,
            queue_evts,
            name,
        }
    }
}

impl<D: QueueDevice> MutEventSubscriber for QueueEventHandler<D> {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let Some(index) = self
            .queue_evts
            .iter()
            .position(|e| e.as_raw_fd() == events.fd())
        else {
            return;
        };
        // The counter only says "something happened"; the ring says what.
        let _ = self.queue_evts[index].read();
        lock(&self.device).process_queue(index);
    }

    fn init(&mut self, ops: &mut EventOps) {
        for evt in &self.queue_evts {
            if let Err(e) = ops.add(Events::new(evt, EventSet::IN)) {
                tracing::error!("{}: cannot watch a queue: {e:?}", self.name);
            }
        }
    }
}
