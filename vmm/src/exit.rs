//! How a VM ends, and the process exit status each ending maps to.
//!
//! | status | meaning |
//! |-------:|---------|
//! | 0 | the guest powered off (ACPI S5) |
//! | 1 | the VMM failed at run time (KVM, I/O, threads) |
//! | 2 | bad configuration or usage (also clap's usage errors) |
//! | 3 | the guest asked for a reboot (i8042 reset or the ACPI reset register) |
//! | 4 | the guest crashed: triple fault, KVM internal/emulation error, failed entry |
//! | 5 | stopped from the host: the serial escape key sequence, the API's power-off, a second SIGTERM/SIGINT |
//! | 6 | the guest did not power off within `--shutdown-timeout` after the power button; stopped |
//! | 32-95 | debug exit: the guest wrote V to port 0xf4; status is 32 + (V & 63) |

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};

pub const STATUS_POWER_OFF: i32 = 0;
pub const STATUS_VMM_ERROR: i32 = 1;
pub const STATUS_CONFIG_ERROR: i32 = 2;
pub const STATUS_REBOOT: i32 = 3;
pub const STATUS_GUEST_CRASH: i32 = 4;
pub const STATUS_HOST_STOP: i32 = 5;
pub const STATUS_SHUTDOWN_TIMEOUT: i32 = 6;
/// Debug exits are offset so a test guest's codes never read as one of the statuses above.
pub const STATUS_DEBUG_EXIT_BASE: i32 = 32;

/// Why the VM stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmExit {
    PowerOff,
    Reboot,
    /// Triple fault, KVM internal error, emulation failure; the text says which.
    GuestCrash(String),
    /// A test guest wrote this byte to the debug-exit port.
    DebugExit(u8),
    /// The user typed the escape key sequence on the console.
    HostStop,
    /// A VMM thread failed while the guest ran.
    VmmError(String),
    /// Stopped at once on the host's request (the API's power-off, a second signal).
    HardStop(String),
    /// The guest did not power off within this many seconds of the power button.
    ShutdownTimeout(u64),
}

impl VmExit {
    /// The process exit status for this ending.
    pub fn status(&self) -> i32 {
        match self {
            VmExit::PowerOff => STATUS_POWER_OFF,
            VmExit::Reboot => STATUS_REBOOT,
            VmExit::GuestCrash(_) => STATUS_GUEST_CRASH,
            VmExit::DebugExit(v) => debug_exit_status(*v),
            VmExit::HostStop => STATUS_HOST_STOP,
            VmExit::VmmError(_) => STATUS_VMM_ERROR,
            VmExit::HardStop(_) => STATUS_HOST_STOP,
            VmExit::ShutdownTimeout(_) => STATUS_SHUTDOWN_TIMEOUT,
        }
    }
}

/// Maps a byte written to the debug-exit port to the process status.
pub fn debug_exit_status(value: u8) -> i32 {
    STATUS_DEBUG_EXIT_BASE + i32::from(value & 0x3f)
}

impl fmt::Display for VmExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmExit::PowerOff => write!(f, "guest powered off"),
            VmExit::Reboot => write!(f, "guest requested a reboot"),
            VmExit::GuestCrash(why) => write!(f, "guest crashed: {why}"),
            VmExit::DebugExit(v) => write!(f, "guest wrote {v:#x} to the debug-exit port"),
            VmExit::HostStop => write!(f, "stopped from the console escape sequence"),
            VmExit::VmmError(why) => write!(f, "VMM error: {why}"),
            VmExit::HardStop(why) => write!(f, "stopped at once: {why}"),
            VmExit::ShutdownTimeout(secs) => write!(
                f,
                "the guest did not power off within {secs} s of the power button; stopped"
            ),
        }
    }
}

/// How devices and threads ask the VMM to stop. The first request wins; later ones (another
/// vCPU crashing on the way down, say) are dropped.
#[derive(Clone)]
pub struct ExitNotifier {
    tx: mpsc::Sender<VmExit>,
    requested: Arc<AtomicBool>,
}

impl ExitNotifier {
    pub fn new() -> (Self, mpsc::Receiver<VmExit>) {
        let (tx, rx) = mpsc::channel();
        (
            ExitNotifier {
                tx,
                requested: Arc::new(AtomicBool::new(false)),
            },
            rx,
        )
    }

    pub fn notify(&self, exit: VmExit) {
        if !self.requested.swap(true, Ordering::AcqRel) {
            tracing::debug!("exit requested: {exit}");
            // The receiver only goes away when the VMM is already exiting.
            let _ = self.tx.send(exit);
        }
    }

    /// True once any exit was requested; vCPU loops check this between exits.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_distinct_and_documented() {
        let exits = [
            VmExit::PowerOff,
            VmExit::VmmError(String::new()),
            VmExit::Reboot,
            VmExit::GuestCrash(String::new()),
            VmExit::HostStop,
            VmExit::DebugExit(0),
            VmExit::ShutdownTimeout(1),
        ];
        let statuses: Vec<i32> = exits.iter().map(VmExit::status).collect();
        assert_eq!(statuses, vec![0, 1, 3, 4, 5, 32, 6]);
        assert_eq!(VmExit::HardStop(String::new()).status(), 5);
    }

    #[test]
    fn first_exit_request_wins() {
        let (n, rx) = ExitNotifier::new();
        assert!(!n.requested());
        n.clone().notify(VmExit::PowerOff);
        n.notify(VmExit::Reboot);
        assert!(n.requested());
        assert_eq!(rx.recv().unwrap(), VmExit::PowerOff);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn debug_exit_never_collides_with_vmm_statuses() {
        for v in 0..=255u8 {
            let s = debug_exit_status(v);
            assert!((32..=95).contains(&s), "value {v} maps to {s}");
        }
        assert_eq!(debug_exit_status(1), 33);
        assert_eq!(debug_exit_status(63), 95);
        assert_eq!(debug_exit_status(64), 32);
    }
}
