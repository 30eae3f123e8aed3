//! The device event loop thread ("vmm-io"): one epoll (event-manager) serving queue doorbells
//! (ioeventfds), disk I/O and console input.
//!
//! Thread kind [`crate::seccomp::ThreadKind::Io`]: it installs its seccomp filter first thing.

use std::thread::JoinHandle;

use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};

use crate::exit::{ExitNotifier, VmExit};
use crate::seccomp::ThreadStart;

pub type Subscriber = Box<dyn MutEventSubscriber + Send>;

pub struct DeviceEventLoop {
    manager: EventManager<Subscriber>,
}

impl DeviceEventLoop {
    pub fn new() -> Result<Self, String> {
        Ok(DeviceEventLoop {
            manager: EventManager::new().map_err(|e| format!("{e:?}"))?,
        })
    }

    pub fn add(&mut self, subscriber: Subscriber) {
        self.manager.add_subscriber(subscriber);
    }

    /// Runs the loop on its own thread until the process exits; a failure of the loop itself
    /// stops the VM with a VMM error.
    pub fn spawn(
        mut self,
        exit: ExitNotifier,
        start: ThreadStart,
    ) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("vmm-io".to_owned())
            .spawn(move || {
                if !start.install() {
                    return;
                }
                loop {
                    // run() already retries on EINTR.
                    if let Err(e) = self.manager.run() {
                        exit.notify(VmExit::VmmError(format!("device event loop failed: {e:?}")));
                        return;
                    }
                }
            })
    }
}
