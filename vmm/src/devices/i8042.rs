//! The i8042 keyboard controller, only for its CPU reset command (0xfe to port 0x64), which
//! guests use to reboot. vm-superio provides the model; a reset becomes a reboot exit.

use vm_superio::I8042Device;

use crate::bus::BusDevice;
use crate::exit::{ExitNotifier, VmExit};

/// Turns the controller's reset line into a reboot request.
pub struct ResetLine {
    exit: ExitNotifier,
}

impl vm_superio::Trigger for ResetLine {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.exit.notify(VmExit::Reboot);
        Ok(())
    }
}

pub struct I8042 {
    inner: I8042Device<ResetLine>,
}

impl I8042 {
    pub fn new(exit: ExitNotifier) -> Self {
        I8042 {
            inner: I8042Device::new(ResetLine { exit }),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        let v = self.inner.read(offset as u8);
        data.fill(v);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        if let Some(v) = data.first() {
            let _ = self.inner.write(offset as u8, *v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_requests_reboot() {
        let (exit, rx) = ExitNotifier::new();
        let mut d = I8042::new(exit);
        d.write(0x60, 0, &[0xfe]);
        assert!(
            rx.try_recv().is_err(),
            "0xfe on the data port is not a reset"
        );
        d.write(0x60, 4, &[0xfe]);
        assert_eq!(rx.recv().unwrap(), VmExit::Reboot);
    }
}
