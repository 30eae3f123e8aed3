//! ACPI hardware-reduced sleep control, sleep status and reset registers (advertised in the
//! FADT). Writing SLP_TYP = S5 with SLP_EN powers the VM off; writing the reset value reboots.

use crate::bus::BusDevice;
use crate::exit::{ExitNotifier, VmExit};
use crate::layout::{ACPI_RESET_VALUE, ACPI_S5_SLEEP_TYPE};

const SLEEP_CONTROL: u64 = 0;
const SLEEP_STATUS: u64 = 1;
const RESET: u64 = 2;
const SLP_EN: u8 = 1 << 5;
const SLP_TYP_SHIFT: u8 = 2;
const SLP_TYP_MASK: u8 = 0x7;

pub struct AcpiPm {
    exit: ExitNotifier,
}

impl AcpiPm {
    pub fn new(exit: ExitNotifier) -> Self {
        AcpiPm { exit }
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        // No wake events ever pending; sleep control reads back as zero.
        data.fill(0);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            SLEEP_CONTROL if v & SLP_EN != 0 => {
                let typ = (v >> SLP_TYP_SHIFT) & SLP_TYP_MASK;
                if typ == ACPI_S5_SLEEP_TYPE {
                    self.exit.notify(VmExit::PowerOff);
                } else {
                    tracing::warn!("guest asked for ACPI sleep type {typ}, which is not supported");
                }
            }
            RESET if v == ACPI_RESET_VALUE => self.exit.notify(VmExit::Reboot),
            SLEEP_STATUS | SLEEP_CONTROL | RESET => {}
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s5_powers_off() {
        let (exit, rx) = ExitNotifier::new();
        let mut pm = AcpiPm::new(exit);
        pm.write(0x600, 0, &[5 << 2]); // no SLP_EN: nothing
        assert!(rx.try_recv().is_err());
        pm.write(0x600, 0, &[(5 << 2) | SLP_EN]);
        assert_eq!(rx.recv().unwrap(), VmExit::PowerOff);
    }

    #[test]
    fn other_sleep_states_are_ignored_and_reset_reboots() {
        let (exit, rx) = ExitNotifier::new();
        let mut pm = AcpiPm::new(exit);
        pm.write(0x600, 0, &[(3 << 2) | SLP_EN]);
        pm.write(0x600, 2, &[0x7]);
        assert!(rx.try_recv().is_err());
        pm.write(0x600, 2, &[ACPI_RESET_VALUE]);
        assert_eq!(rx.recv().unwrap(), VmExit::Reboot);
    }
}
