//! Wires a NIC into the device event loop: the RX and TX queue doorbells, the backend's
//! descriptor (readable only while the guest has room, writable only while a send is pending),
//! a wake-up from the device when activation or reset changes that, and passt's log output.

use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::device::{Net, TxProgress};
use crate::net::passt::PasstLog;
use crate::sync::lock;

pub struct NetEventHandler {
    device: Arc<Mutex<Net>>,
    rx_evt: EventFd,
    tx_evt: EventFd,
    state_evt: EventFd,
    backend_fd: RawFd,
    /// What the backend descriptor is registered for now (None: not registered).
    watching: Option<EventSet>,
    log: Option<PasstLog>,
}

impl NetEventHandler {
    /// `rx_evt` and `tx_evt` are clones of the doorbells the transport registered.
    pub fn new(
        device: Arc<Mutex<Net>>,
        rx_evt: EventFd,
        tx_evt: EventFd,
        log: Option<PasstLog>,
    ) -> std::io::Result<Self> {
        let (state_evt, backend_fd) = {
            let d = lock(&device);
            (d.state_evt()?, d.backend_fd())
        };
        Ok(NetEventHandler {
            device,
            rx_evt,
            tx_evt,
            state_evt,
            backend_fd,
            watching: None,
            log,
        })
    }

    /// Brings the backend registration in line with what the device wants.
    fn update_interest(&mut self, ops: &mut EventOps) {
        let (closed, (read, write)) = {
            let d = lock(&self.device);
            (d.backend_closed(), d.backend_interest())
        };
        if closed {
            if self.watching.take().is_some() {
                let _ = ops.remove(Events::empty_raw(self.backend_fd));
            }
            return;
        }
        let mut want = EventSet::empty();
        if read {
            want |= EventSet::IN;
        }
        if write {
            want |= EventSet::OUT;
        }
        if self.watching == Some(want) {
            return;
        }
        let events = Events::new_raw(self.backend_fd, want);
        let result = if self.watching.is_some() {
            ops.modify(events)
        } else {
            ops.add(events)
        };
        match result {
            Ok(()) => self.watching = Some(want),
            Err(e) => tracing::error!("cannot watch a network backend: {e:?}"),
        }
    }
}

impl MutEventSubscriber for NetEventHandler {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let fd = events.fd();
        let set = events.event_set();
        let mut kick_tx = false;
        if fd == self.rx_evt.as_raw_fd() {
            // The counter only says "something happened"; the ring says what.
            let _ = self.rx_evt.read();
            lock(&self.device).process_rx();
        } else if fd == self.tx_evt.as_raw_fd() {
            let _ = self.tx_evt.read();
            kick_tx = lock(&self.device).process_tx() == TxProgress::More;
        } else if fd == self.state_evt.as_raw_fd() {
            let _ = self.state_evt.read();
        } else if fd == self.backend_fd {
            let mut d = lock(&self.device);
            if set.contains(EventSet::OUT) {
                kick_tx = d.backend_writable() == TxProgress::More;
            }
            if set.contains(EventSet::IN) {
                d.process_rx();
            } else if set.intersects(EventSet::HANG_UP | EventSet::ERROR) {
                d.close_backend("the backend's descriptor reports an error or hang-up");
            }
        } else if let Some(log) = self.log.as_mut().filter(|l| l.as_raw_fd() == fd)
            && !log.drain()
        {
            let _ = ops.remove(Events::empty_raw(fd));
            self.log = None;
        }
        if kick_tx && let Err(e) = self.tx_evt.write(1) {
            tracing::warn!("cannot requeue transmit work: {e}");
        }
        self.update_interest(ops);
    }

    fn init(&mut self, ops: &mut EventOps) {
        for evt in [&self.rx_evt, &self.tx_evt, &self.state_evt] {
            if let Err(e) = ops.add(Events::new(evt, EventSet::IN)) {
                tracing::error!("cannot watch a network queue: {e:?}");
            }
        }
        if let Some(log) = &self.log
            && let Err(e) = ops.add(Events::new(log, EventSet::IN))
        {
            tracing::error!("cannot watch passt's output: {e:?}");
        }
        self.update_interest(ops);
    }
}
