//! One-port debug exit for test guests (the port QEMU's isa-debug-exit uses): a write of V
//! ends the VM with exit status 32 + (V & 63); see [`crate::exit`].

use crate::bus::BusDevice;
use crate::exit::{ExitNotifier, VmExit};

pub struct DebugExit {
    exit: ExitNotifier,
}

impl DebugExit {
    pub fn new(exit: ExitNotifier) -> Self {
        DebugExit { exit }
    }
}

impl BusDevice for DebugExit {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, _base: u64, _offset: u64, data: &[u8]) {
        if let Some(v) = data.first() {
            self.exit.notify(VmExit::DebugExit(*v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_requests_exit_with_the_value() {
        let (exit, rx) = ExitNotifier::new();
        let mut d = DebugExit::new(exit.clone());
        d.write(0xf4, 0, &[3, 0, 0, 0]);
        assert_eq!(rx.recv().unwrap(), VmExit::DebugExit(3));
        assert!(exit.requested());
    }
}
