//! An edge-triggered legacy interrupt line (IOAPIC pin) raised through an irqfd.

use std::sync::Arc;

use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::InterruptError;

pub struct LegacyIrq {
    gsi: u32,
    evt: EventFd,
}

impl LegacyIrq {
    /// Registers an irqfd for `gsi` with KVM.
    pub fn new(vm: &Arc<VmFd>, gsi: u32) -> Result<Self, InterruptError> {
        let evt = EventFd::new(EFD_NONBLOCK).map_err(InterruptError::EventFd)?;
        vm.register_irqfd(&evt, gsi)
            .map_err(|source| InterruptError::Irqfd { gsi, source })?;
        Ok(LegacyIrq { gsi, evt })
    }

    /// A line not connected to KVM, for device tests.
    pub fn detached(gsi: u32) -> Result<Self, InterruptError> {
        let evt = EventFd::new(EFD_NONBLOCK).map_err(InterruptError::EventFd)?;
        Ok(LegacyIrq { gsi, evt })
    }

    pub fn gsi(&self) -> u32 {
        self.gsi
    }

    pub fn eventfd(&self) -> &EventFd {
        &self.evt
    }
}

impl vm_superio::Trigger for LegacyIrq {
    type E = std::io::Error;

    fn trigger(&self) -> Result<(), Self::E> {
        self.evt.write(1)
    }
}
