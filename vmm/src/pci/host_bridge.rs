//! The host bridge at 00:00.0, so the OS sees a conventional root complex.

use super::PciDevice;
use super::config_space::{PciConfigSpace, PciHeader};

/// Red Hat's ID for a generic PCIe host bridge, which guests know needs no driver.
const VENDOR_REDHAT: u16 = 0x1b36;
const DEVICE_HOST_BRIDGE: u16 = 0x0008;

pub struct HostBridge {
    config: PciConfigSpace,
}

impl HostBridge {
    pub fn new() -> Self {
        HostBridge {
            config: PciConfigSpace::new(&PciHeader {
                vendor_id: VENDOR_REDHAT,
                device_id: DEVICE_HOST_BRIDGE,
                revision: 0,
                class: (0x06, 0x00, 0x00),
                subsystem_vendor_id: VENDOR_REDHAT,
                subsystem_id: 0x1100,
            }),
        }
    }
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciDevice for HostBridge {
    fn config_space(&self) -> &PciConfigSpace {
        &self.config
    }

    fn config_space_mut(&mut self) -> &mut PciConfigSpace {
        &mut self.config
    }
}
