//! Graceful shutdown: SIGTERM, SIGINT or the API's `shutdown` press the ACPI power button
//! (through the Generic Event Device); a guest that has not powered off `--shutdown-timeout`
//! seconds later is stopped (exit status 6). A second signal, or the API's `power-off`, stops
//! the VM at once (status 5). In every case the VMM flushes the disks before it exits.
//!
//! Signals reach the device event loop through signal-hook's self-pipe (the handler only
//! writes a byte, which is async-signal-safe), so no thread of its own is needed.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;

use crate::devices::acpi_ged::{AcpiGed, EVENT_POWER_BUTTON};
use crate::exit::{ExitNotifier, VmExit};
use crate::sync::lock;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShutdownError {
    #[error("already shutting down ({0})")]
    AlreadyShuttingDown(String),
    #[error("cannot press the power button: {0}")]
    Button(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    /// The power button was pressed for this reason; the guest has until the deadline.
    ShuttingDown {
        why: String,
        deadline: Instant,
    },
}

pub struct ShutdownController {
    ged: Arc<Mutex<AcpiGed>>,
    exit: ExitNotifier,
    timeout: Duration,
    state: Mutex<State>,
}

impl ShutdownController {
    pub fn new(ged: Arc<Mutex<AcpiGed>>, exit: ExitNotifier, timeout_secs: u64) -> Self {
        ShutdownController {
            ged,
            exit,
            timeout: Duration::from_secs(timeout_secs),
            state: Mutex::new(State::Running),
        }
    }

    pub fn timeout_secs(&self) -> u64 {
        self.timeout.as_secs()
    }

    pub fn state(&self) -> State {
        lock(&self.state).clone()
    }

    /// When the guest will be stopped if it has not powered off, once shutting down.
    pub fn deadline(&self) -> Option<Instant> {
        match &*lock(&self.state) {
            State::Running => None,
            State::ShuttingDown { deadline, .. } => Some(*deadline),
        }
    }

    /// Presses the power button and starts the timeout.
    pub fn request(&self, why: &str) -> Result<(), ShutdownError> {
        let mut state = lock(&self.state);
        if let State::ShuttingDown { why, .. } = &*state {
            return Err(ShutdownError::AlreadyShuttingDown(why.clone()));
        }
        tracing::info!(
            "{why}: pressing the power button; the guest has {} s to power off",
            self.timeout.as_secs()
        );
        lock(&self.ged)
            .notify(EVENT_POWER_BUTTON)
            .map_err(|e| ShutdownError::Button(e.to_string()))?;
        *state = State::ShuttingDown {
            why: why.to_owned(),
            deadline: Instant::now() + self.timeout,
        };
        Ok(())
    }

    /// Stops the VM now.
    pub fn power_off(&self, why: &str) {
        self.exit.notify(VmExit::HardStop(why.to_owned()));
    }

    /// A termination signal: the first asks the guest, the next one stops it.
    pub fn on_signal(&self, name: &str) {
        if let Err(ShutdownError::AlreadyShuttingDown(_)) | Err(ShutdownError::Button(_)) =
            self.request(name)
        {
            self.power_off(&format!("{name} while shutting down"));
        }
    }

    /// Called by the main thread while it waits: ends the VM once the deadline has passed.
    pub fn check_deadline(&self, now: Instant) {
        if self.deadline().is_some_and(|d| now >= d) {
            self.exit
                .notify(VmExit::ShutdownTimeout(self.timeout.as_secs()));
        }
    }
}

/// SIGTERM and SIGINT, delivered to the event loop through self-pipes.
pub struct SignalHandler {
    controller: Arc<ShutdownController>,
    pipes: Vec<(&'static str, UnixStream)>,
}

impl SignalHandler {
    /// Installs the handlers; from now on these signals no longer kill the process.
    pub fn install(controller: Arc<ShutdownController>) -> std::io::Result<Self> {
        let mut pipes = Vec::new();
        for (name, sig) in [
            ("SIGTERM", signal_hook::consts::SIGTERM),
            ("SIGINT", signal_hook::consts::SIGINT),
        ] {
            let (read, write) = UnixStream::pair()?;
            read.set_nonblocking(true)?;
            signal_hook::low_level::pipe::register(sig, write)?;
            pipes.push((name, read));
        }
        Ok(SignalHandler { controller, pipes })
    }
}

impl MutEventSubscriber for SignalHandler {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let Some((name, pipe)) = self
            .pipes
            .iter_mut()
            .find(|(_, p)| p.as_raw_fd() == events.fd())
        else {
            return;
        };
        // One byte per delivered signal (coalesced ones are one press anyway).
        let mut buf = [0u8; 16];
        let n = pipe.read(&mut buf).unwrap_or(0);
        for _ in 0..n.max(1) {
            self.controller.on_signal(name);
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        for (name, pipe) in &self.pipes {
            if let Err(e) = ops.add(Events::new(pipe, EventSet::IN)) {
                tracing::error!("cannot watch for {name}: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::LegacyIrq;

    fn controller(secs: u64) -> (Arc<ShutdownController>, std::sync::mpsc::Receiver<VmExit>) {
        let (exit, rx) = ExitNotifier::new();
        let ged = Arc::new(Mutex::new(AcpiGed::new(LegacyIrq::detached(5).unwrap())));
        (Arc::new(ShutdownController::new(ged, exit, secs)), rx)
    }

    #[test]
    fn first_request_presses_the_button_second_is_refused() {
        let (c, rx) = controller(30);
        assert_eq!(c.state(), State::Running);
        c.request("api").unwrap();
        assert_eq!(lock(&c.ged).pending(), EVENT_POWER_BUTTON);
        assert!(matches!(c.state(), State::ShuttingDown { .. }));
        assert_eq!(
            c.request("api"),
            Err(ShutdownError::AlreadyShuttingDown("api".to_owned()))
        );
        c.check_deadline(Instant::now());
        assert!(rx.try_recv().is_err(), "deadline not reached yet");
    }

    #[test]
    fn second_signal_stops_at_once() {
        let (c, rx) = controller(30);
        c.on_signal("SIGTERM");
        assert!(rx.try_recv().is_err());
        c.on_signal("SIGINT");
        assert_eq!(
            rx.recv().unwrap(),
            VmExit::HardStop("SIGINT while shutting down".to_owned())
        );
    }

    #[test]
    fn deadline_ends_the_vm_with_the_timeout_status() {
        let (c, rx) = controller(0);
        c.check_deadline(Instant::now());
        assert!(rx.try_recv().is_err(), "no deadline before a request");
        c.request("SIGTERM").unwrap();
        c.check_deadline(Instant::now());
        let exit = rx.recv().unwrap();
        assert_eq!(exit, VmExit::ShutdownTimeout(0));
        assert_eq!(exit.status(), 6);
    }
}
