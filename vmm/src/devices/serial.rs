//! The 8250/16550 UART at 0x3f8 on IRQ 4 (vm-superio's model), raising its interrupt through an
//! irqfd and telling the input side when the guest has drained the receive FIFO.

use vm_superio::Serial;
use vm_superio::serial::SerialEvents;
use vmm_sys_util::eventfd::EventFd;

use crate::bus::BusDevice;
use crate::console::SerialOutput;
use crate::interrupt::LegacyIrq;

/// Signals the console input handler that the FIFO has room again.
pub struct InputSpace(EventFd);

impl SerialEvents for InputSpace {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        let _ = self.0.write(1);
    }
}

pub struct SerialDevice {
    uart: Serial<LegacyIrq, InputSpace, SerialOutput>,
}

impl SerialDevice {
    /// `space_evt` is written whenever the guest empties the receive FIFO.
    pub fn new(irq: LegacyIrq, output: SerialOutput, space_evt: EventFd) -> Self {
        SerialDevice {
            uart: Serial::with_events(irq, InputSpace(space_evt), output),
        }
    }

    /// Free room in the receive FIFO.
    pub fn fifo_capacity(&self) -> usize {
        self.uart.fifo_capacity()
    }

    /// Queues input for the guest; returns how many bytes fit.
    pub fn enqueue(&mut self, bytes: &[u8]) -> usize {
        match self.uart.enqueue_raw_bytes(bytes) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!("serial input: {e:?}");
                0
            }
        }
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        let v = self.uart.read(offset as u8);
        data.fill(v);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        if let Err(e) = self.uart.write(offset as u8, v) {
            tracing::debug!("serial: {e:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    #[test]
    fn output_input_and_interrupts() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out");
        let irq = LegacyIrq::detached(4).unwrap();
        let irq_evt = irq.eventfd().try_clone().unwrap();
        let space = EventFd::new(EFD_NONBLOCK).unwrap();
        let space_probe = space.try_clone().unwrap();
        let mut s = SerialDevice::new(irq, SerialOutput::file(&log).unwrap(), space);
        for b in b"hi" {
            s.write(0x3f8, 0, &[*b]);
        }
        assert_eq!(std::fs::read(&log).unwrap(), b"hi");
        // Enable the received-data interrupt, then deliver input.
        s.write(0x3f8, 1, &[0x01]);
        assert_eq!(s.enqueue(b"ok"), 2);
        assert_eq!(irq_evt.read().unwrap(), 1);
        let mut b = [0u8];
        s.read(0x3f8, 5, &mut b);
        assert_eq!(b[0] & 1, 1, "LSR data ready");
        s.read(0x3f8, 0, &mut b);
        assert_eq!(b[0], b'o');
        assert!(space_probe.read().is_err(), "FIFO not empty yet");
        s.read(0x3f8, 0, &mut b);
        assert_eq!(b[0], b'k');
        assert_eq!(space_probe.read().unwrap(), 1);
        assert_eq!(s.fifo_capacity(), 64);
    }
}
