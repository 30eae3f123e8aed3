//! MSI vectors: a GSI, its irqfd, and the routing entry that turns the GSI into an MSI message.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kvm_bindings::{
    KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KvmIrqRouting, kvm_irq_routing_entry,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::InterruptError;
use crate::layout::IOAPIC_PINS;
use crate::sync::lock;

/// KVM's limit on routing entries (KVM_MAX_IRQ_ROUTES).
const MAX_GSI: u32 = 4096;
const PIC_PINS: u32 = 16;

/// An MSI message as programmed by the guest in an MSI-X table entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsiMessage {
    pub addr_lo: u32,
    pub addr_hi: u32,
    pub data: u32,
}

/// One MSI vector: raising it writes its irqfd.
pub struct MsiVector {
    pub gsi: u32,
    pub irqfd: EventFd,
}

impl MsiVector {
    pub fn trigger(&self) -> Result<(), InterruptError> {
        self.irqfd.write(1).map_err(InterruptError::Trigger)
    }
}

/// Allocates MSI vectors and points their GSIs at messages. Abstracted so device models can be
/// unit-tested without KVM.
pub trait MsiRouter: Send + Sync {
    fn allocate_vectors(&self, count: usize) -> Result<Vec<MsiVector>, InterruptError>;
    fn set_route(&self, gsi: u32, msg: MsiMessage) -> Result<(), InterruptError>;
}

/// KVM's default routing for the in-kernel irqchips plus our MSI routes.
pub fn routing_entries(msi: &BTreeMap<u32, MsiMessage>) -> Vec<kvm_irq_routing_entry> {
    let mut entries = Vec::new();
    let irqchip = |gsi: u32, chip: u32, pin: u32| {
        let mut e = kvm_irq_routing_entry {
            gsi,
            type_: KVM_IRQ_ROUTING_IRQCHIP,
            ..Default::default()
        };
        e.u.irqchip.irqchip = chip;
        e.u.irqchip.pin = pin;
        e
    };
    for gsi in 0..IOAPIC_PINS {
        if gsi < PIC_PINS {
            let (chip, pin) = if gsi < 8 {
                (KVM_IRQCHIP_PIC_MASTER, gsi)
            } else {
                (KVM_IRQCHIP_PIC_SLAVE, gsi - 8)
            };
            entries.push(irqchip(gsi, chip, pin));
        }
        entries.push(irqchip(gsi, KVM_IRQCHIP_IOAPIC, gsi));
    }
    for (gsi, m) in msi {
        let mut e = kvm_irq_routing_entry {
            gsi: *gsi,
            type_: KVM_IRQ_ROUTING_MSI,
            ..Default::default()
        };
        e.u.msi.address_lo = m.addr_lo;
        e.u.msi.address_hi = m.addr_hi;
        e.u.msi.data = m.data;
        entries.push(e);
    }
    entries
}

struct RouterState {
    next_gsi: u32,
    msi: BTreeMap<u32, MsiMessage>,
}

pub struct KvmMsiRouter {
    vm: Arc<VmFd>,
    state: Mutex<RouterState>,
}

impl KvmMsiRouter {
    pub fn new(vm: Arc<VmFd>) -> Self {
        KvmMsiRouter {
            vm,
            state: Mutex::new(RouterState {
                next_gsi: IOAPIC_PINS,
                msi: BTreeMap::new(),
            }),
        }
    }
}

impl MsiRouter for KvmMsiRouter {
    fn allocate_vectors(&self, count: usize) -> Result<Vec<MsiVector>, InterruptError> {
        let mut st = lock(&self.state);
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let gsi = st.next_gsi;
            if gsi >= MAX_GSI {
                return Err(InterruptError::NoGsi);
            }
            st.next_gsi += 1;
            let irqfd = EventFd::new(EFD_NONBLOCK).map_err(InterruptError::EventFd)?;
            // Registering before a route exists is fine: KVM re-resolves irqfds on every
            // routing update, and until then a write is simply dropped.
            self.vm
                .register_irqfd(&irqfd, gsi)
                .map_err(|source| InterruptError::Irqfd { gsi, source })?;
            out.push(MsiVector { gsi, irqfd });
        }
        Ok(out)
    }

    fn set_route(&self, gsi: u32, msg: MsiMessage) -> Result<(), InterruptError> {
        let mut st = lock(&self.state);
        if st.msi.get(&gsi) == Some(&msg) {
            return Ok(());
        }
        st.msi.insert(gsi, msg);
        let entries = routing_entries(&st.msi);
        let table = KvmIrqRouting::from_entries(&entries).map_err(|_| InterruptError::NoGsi)?;
        self.vm
            .set_gsi_routing(&table)
            .map_err(InterruptError::Routing)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A router that records routes, for device tests without KVM.
    #[derive(Default)]
    pub struct FakeRouter {
        pub routes: Mutex<BTreeMap<u32, MsiMessage>>,
        next: Mutex<u32>,
    }

    impl MsiRouter for FakeRouter {
        fn allocate_vectors(&self, count: usize) -> Result<Vec<MsiVector>, InterruptError> {
            let mut next = self.next.lock().unwrap();
            (0..count)
                .map(|_| {
                    *next += 1;
                    Ok(MsiVector {
                        gsi: 23 + *next,
                        irqfd: EventFd::new(EFD_NONBLOCK).map_err(InterruptError::EventFd)?,
                    })
                })
                .collect()
        }

        fn set_route(&self, gsi: u32, msg: MsiMessage) -> Result<(), InterruptError> {
            self.routes.lock().unwrap().insert(gsi, msg);
            Ok(())
        }
    }

    fn irqchip_of(e: &kvm_irq_routing_entry) -> (u32, u32) {
        assert_eq!(e.type_, KVM_IRQ_ROUTING_IRQCHIP);
        // SAFETY: `irqchip` is the active union member of IRQCHIP entries (checked above).
        let c = unsafe { e.u.irqchip };
        (c.irqchip, c.pin)
    }

    fn msi_of(e: &kvm_irq_routing_entry) -> (u32, u32) {
        assert_eq!(e.type_, KVM_IRQ_ROUTING_MSI);
        // SAFETY: `msi` is the active union member of MSI entries (checked above).
        let m = unsafe { e.u.msi };
        (m.address_lo, m.data)
    }

    #[test]
    fn default_irqchip_routes_are_kept_alongside_msi() {
        let mut msi = BTreeMap::new();
        msi.insert(
            24,
            MsiMessage {
                addr_lo: 0xfee0_0000,
                addr_hi: 0,
                data: 0x41,
            },
        );
        let e = routing_entries(&msi);
        // 16 PIC + 24 IOAPIC + 1 MSI.
        assert_eq!(e.len(), 41);
        let gsi4: Vec<(u32, u32)> = e
            .iter()
            .filter(|x| x.gsi == 4 && x.type_ == KVM_IRQ_ROUTING_IRQCHIP)
            .map(irqchip_of)
            .collect();
        assert_eq!(
            gsi4,
            vec![(KVM_IRQCHIP_PIC_MASTER, 4), (KVM_IRQCHIP_IOAPIC, 4)]
        );
        let gsi20: Vec<(u32, u32)> = e.iter().filter(|x| x.gsi == 20).map(irqchip_of).collect();
        assert_eq!(gsi20, vec![(KVM_IRQCHIP_IOAPIC, 20)], "no PIC above 15");
        let m = e.last().unwrap();
        assert_eq!(m.gsi, 24);
        assert_eq!(msi_of(m), (0xfee0_0000, 0x41));
    }
}
