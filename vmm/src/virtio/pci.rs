//! The virtio-pci transport (modern, virtio 1.x): one 64-bit memory BAR holding the common
//! configuration, ISR, device configuration, notification area and the MSI-X table/PBA, each
//! described by a vendor capability so stock guest drivers find them.
//!
//! Queue notifications arrive through ioeventfds registered on the notification area (moved
//! with the BAR); interrupts leave through MSI-X vectors backed by irqfds.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::common_config::{Action, COMMON_CONFIG_SIZE, CommonConfig, NO_VECTOR, Vectors};
use super::{
    ActivateContext, VIRTIO_RING_F_EVENT_IDX, VirtioDevice, VirtioInterrupt, VirtioInterruptType,
    status,
};
use crate::interrupt::{InterruptError, MsiRouter};
use crate::memory::GuestMemoryMmap;
use crate::pci::PciDevice;
use crate::pci::config_space::{BarInfo, PciConfigSpace, PciHeader};
use crate::pci::msix::{MSIX_CONTROL_OFFSET, MsixConfig};
use crate::sync::lock;

const VIRTIO_PCI_VENDOR_ID: u16 = 0x1af4;
/// Modern device IDs are 0x1040 + virtio device type.
const VIRTIO_PCI_DEVICE_ID_BASE: u16 = 0x1040;
/// Subsystem IDs of modern devices are at least 0x40 (4.1.2.1).
const VIRTIO_PCI_SUBSYSTEM_ID: u16 = 0x40;
const VIRTIO_PCI_REVISION: u8 = 1;

const PCI_CAP_ID_VENDOR: u8 = 0x09;
const CAP_COMMON_CFG: u8 = 1;
const CAP_NOTIFY_CFG: u8 = 2;
const CAP_ISR_CFG: u8 = 3;
const CAP_DEVICE_CFG: u8 = 4;

/// The BAR that carries everything.
const BAR: usize = 0;
const BAR_SIZE: u64 = 0x8000;
const COMMON_OFFSET: u64 = 0x0000;
const ISR_OFFSET: u64 = 0x1000;
const DEVICE_CFG_OFFSET: u64 = 0x2000;
const DEVICE_CFG_SIZE: u64 = 0x1000;
const NOTIFY_OFFSET: u64 = 0x3000;
const NOTIFY_SIZE: u64 = 0x1000;
/// Each queue's doorbell is 4 bytes apart.
pub const NOTIFY_OFF_MULTIPLIER: u32 = 4;
const MSIX_TABLE_OFFSET: u64 = 0x4000;
const MSIX_TABLE_SIZE: u64 = 0x1000;
const MSIX_PBA_OFFSET: u64 = 0x5000;
const MSIX_PBA_SIZE: u64 = 0x1000;

const ISR_QUEUE: u8 = 1;
const ISR_CONFIG: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot set up MSI-X: {0}")]
    Msix(#[from] InterruptError),
    #[error("cannot create queue eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("PCI configuration space: {0}")]
    ConfigSpace(#[from] crate::pci::config_space::ConfigSpaceError),
}

/// Registers queue doorbells with the hypervisor (KVM ioeventfd); abstract for tests.
pub trait NotifyRegistrar: Send + Sync {
    fn register(&self, evt: &EventFd, addr: u64) -> Result<(), String>;
    fn unregister(&self, evt: &EventFd, addr: u64) -> Result<(), String>;
}

impl NotifyRegistrar for kvm_ioctls::VmFd {
    fn register(&self, evt: &EventFd, addr: u64) -> Result<(), String> {
        self.register_ioevent(
            evt,
            &kvm_ioctls::IoEventAddress::Mmio(addr),
            kvm_ioctls::NoDatamatch,
        )
        .map_err(|e| e.to_string())
    }

    fn unregister(&self, evt: &EventFd, addr: u64) -> Result<(), String> {
        self.unregister_ioevent(
            evt,
            &kvm_ioctls::IoEventAddress::Mmio(addr),
            kvm_ioctls::NoDatamatch,
        )
        .map_err(|e| e.to_string())
    }
}

/// The interrupt path handed to the device at activation.
struct PciInterrupt {
    msix: Arc<Mutex<MsixConfig>>,
    vectors: Arc<Vectors>,
    isr: Arc<AtomicU8>,
}

impl VirtioInterrupt for PciInterrupt {
    fn trigger(&self, kind: VirtioInterruptType) -> Result<(), InterruptError> {
        let (vector, isr) = match kind {
            VirtioInterruptType::Config => {
                (self.vectors.config.load(Ordering::Acquire), ISR_CONFIG)
            }
            VirtioInterruptType::Queue(q) => (self.vectors.queue(q), ISR_QUEUE),
        };
        self.isr.fetch_or(isr, Ordering::AcqRel);
        if vector == NO_VECTOR {
            // No INTx line: a driver without MSI-X only sees the ISR bit when it polls.
            return Ok(());
        }
        lock(&self.msix).trigger(vector).map(|_| ())
    }
}

fn virtio_cap(cfg_type: u8, offset: u64, length: u64, extra: Option<u32>) -> Vec<u8> {
    let len: u8 = if extra.is_some() { 20 } else { 16 };
    let mut c = vec![PCI_CAP_ID_VENDOR, 0, len, cfg_type, BAR as u8, 0, 0, 0];
    c.extend_from_slice(&(offset as u32).to_le_bytes());
    c.extend_from_slice(&(length as u32).to_le_bytes());
    if let Some(x) = extra {
        c.extend_from_slice(&x.to_le_bytes());
    }
    c
}

fn class_for(device_type: u32) -> (u8, u8, u8) {
    match device_type {
        1 => (0x02, 0x00, 0x00), // network controller
        2 => (0x01, 0x80, 0x00), // mass storage, other
        _ => (0xff, 0x00, 0x00),
    }
}

pub struct VirtioPciDevice {
    config: PciConfigSpace,
    common: CommonConfig,
    device: Arc<Mutex<dyn VirtioDevice>>,
    device_type: u32,
    device_features: u64,
    queues: Vec<Queue>,
    queue_evts: Vec<EventFd>,
    msix: Arc<Mutex<MsixConfig>>,
    msix_cap: usize,
    isr: Arc<AtomicU8>,
    mem: GuestMemoryMmap,
    notify: Arc<dyn NotifyRegistrar>,
    bar_addr: Option<u64>,
}

impl VirtioPciDevice {
    /// Wraps `device`. `queue_evts` are the doorbell eventfds (one per queue); the device's
    /// event handler listens on clones of them.
    pub fn new(
        device: Arc<Mutex<dyn VirtioDevice>>,
        queue_evts: Vec<EventFd>,
        mem: GuestMemoryMmap,
        router: Arc<dyn MsiRouter>,
        notify: Arc<dyn NotifyRegistrar>,
    ) -> Result<Self, TransportError> {
        let (device_type, max_sizes, device_features) = {
            let d = lock(&device);
            (d.device_type(), d.queue_max_sizes().to_vec(), d.features())
        };
        let queues = max_sizes
            .iter()
            .map(|s| Queue::new(*s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TransportError::EventFd(std::io::Error::other(e.to_string())))?;
        // One vector per queue plus one for configuration changes.
        let vectors = queues.len() as u16 + 1;
        let msix = MsixConfig::new(vectors, router)?;

        let mut config = PciConfigSpace::new(&PciHeader {
            vendor_id: VIRTIO_PCI_VENDOR_ID,
            device_id: VIRTIO_PCI_DEVICE_ID_BASE + device_type as u16,
            revision: VIRTIO_PCI_REVISION,
            class: class_for(device_type),
            subsystem_vendor_id: VIRTIO_PCI_VENDOR_ID,
            subsystem_id: VIRTIO_PCI_SUBSYSTEM_ID,
        });
        config.add_bar(
            BAR,
            BarInfo {
                size: BAR_SIZE,
                is_64bit: true,
                prefetchable: false,
            },
        )?;
        let caps = [
            virtio_cap(CAP_COMMON_CFG, COMMON_OFFSET, COMMON_CONFIG_SIZE, None),
            virtio_cap(CAP_ISR_CFG, ISR_OFFSET, 1, None),
            virtio_cap(CAP_DEVICE_CFG, DEVICE_CFG_OFFSET, DEVICE_CFG_SIZE, None),
            virtio_cap(
                CAP_NOTIFY_CFG,
                NOTIFY_OFFSET,
                NOTIFY_SIZE,
                Some(NOTIFY_OFF_MULTIPLIER),
            ),
        ];
        for cap in &caps {
            config.add_capability(cap, &vec![0u8; cap.len()])?;
        }
        let (cap, mask) = msix.capability(
            (BAR as u8, MSIX_TABLE_OFFSET as u32),
            (BAR as u8, MSIX_PBA_OFFSET as u32),
        );
        let msix_cap = config.add_capability(&cap, &mask)?;

        Ok(VirtioPciDevice {
            config,
            common: CommonConfig::new(queues.len(), vectors),
            device,
            device_type,
            device_features,
            queues,
            queue_evts,
            msix: Arc::new(Mutex::new(msix)),
            msix_cap,
            isr: Arc::new(AtomicU8::new(0)),
            mem,
            notify,
            bar_addr: None,
        })
    }

    pub fn device_type(&self) -> u32 {
        self.device_type
    }

    fn reset(&mut self) {
        lock(&self.device).reset();
        self.common.reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.isr.store(0, Ordering::Release);
    }

    fn activate(&mut self) {
        let acked = self.common.driver_features;
        let mut queues = Vec::with_capacity(self.queues.len());
        for (i, q) in self.queues.iter().enumerate() {
            if !q.is_valid(&self.mem) {
                tracing::warn!(
                    "virtio device type {}: queue {i} is invalid; device needs reset",
                    self.device_type
                );
                self.common.driver_status |= status::DEVICE_NEEDS_RESET;
                return;
            }
            // Queue is not Clone; its state is the supported way to copy it.
            let Ok(mut q) = Queue::try_from(q.state()) else {
                self.common.driver_status |= status::DEVICE_NEEDS_RESET;
                return;
            };
            q.set_event_idx(acked & VIRTIO_RING_F_EVENT_IDX != 0);
            queues.push(q);
        }
        let ctx = ActivateContext {
            mem: self.mem.clone(),
            interrupt: Arc::new(PciInterrupt {
                msix: self.msix.clone(),
                vectors: self.common.vectors.clone(),
                isr: self.isr.clone(),
            }),
            queues,
            acked_features: acked,
        };
        if let Err(e) = lock(&self.device).activate(ctx) {
            tracing::warn!(
                "virtio device type {}: {e}; device needs reset",
                self.device_type
            );
            self.common.driver_status |= status::DEVICE_NEEDS_RESET;
        }
    }

    fn notify_addresses(&self, base: u64) -> impl Iterator<Item = (usize, u64)> + '_ {
        (0..self.queue_evts.len()).map(move |i| {
            (
                i,
                base + NOTIFY_OFFSET + i as u64 * u64::from(NOTIFY_OFF_MULTIPLIER),
            )
        })
    }
}

impl PciDevice for VirtioPciDevice {
    fn config_space(&self) -> &PciConfigSpace {
        &self.config
    }

    fn config_space_mut(&mut self) -> &mut PciConfigSpace {
        &mut self.config
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) {
        self.config.write(offset, data);
        let ctl = self.msix_cap + MSIX_CONTROL_OFFSET;
        if offset < ctl + 2 && offset + data.len() > ctl {
            let mut b = [0u8; 2];
            self.config.read(ctl, &mut b);
            lock(&self.msix).set_control(u16::from_le_bytes(b));
        }
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar != BAR {
            data.fill(0xff);
            return;
        }
        match offset {
            o if o < COMMON_OFFSET + 0x1000 => {
                self.common
                    .read(o - COMMON_OFFSET, data, &self.queues, self.device_features);
            }
            o if (ISR_OFFSET..ISR_OFFSET + 0x1000).contains(&o) => {
                data.fill(0);
                if o == ISR_OFFSET {
                    // Reading the ISR acknowledges it.
                    if let Some(b) = data.first_mut() {
                        *b = self.isr.swap(0, Ordering::AcqRel);
                    }
                }
            }
            o if (DEVICE_CFG_OFFSET..DEVICE_CFG_OFFSET + DEVICE_CFG_SIZE).contains(&o) => {
                lock(&self.device).read_config(o - DEVICE_CFG_OFFSET, data);
            }
            o if (MSIX_TABLE_OFFSET..MSIX_TABLE_OFFSET + MSIX_TABLE_SIZE).contains(&o) => {
                lock(&self.msix).read_table(o - MSIX_TABLE_OFFSET, data);
            }
            o if (MSIX_PBA_OFFSET..MSIX_PBA_OFFSET + MSIX_PBA_SIZE).contains(&o) => {
                lock(&self.msix).read_pba(o - MSIX_PBA_OFFSET, data);
            }
            _ => data.fill(0),
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar != BAR {
            return;
        }
        match offset {
            o if o < COMMON_OFFSET + 0x1000 => {
                let action = self.common.write(
                    o - COMMON_OFFSET,
                    data,
                    &mut self.queues,
                    self.device_features,
                );
                match action {
                    Action::None => {}
                    Action::Reset => self.reset(),
                    Action::Activate => self.activate(),
                }
            }
            o if (DEVICE_CFG_OFFSET..DEVICE_CFG_OFFSET + DEVICE_CFG_SIZE).contains(&o) => {
                lock(&self.device).write_config(o - DEVICE_CFG_OFFSET, data);
            }
            o if (NOTIFY_OFFSET..NOTIFY_OFFSET + NOTIFY_SIZE).contains(&o) => {
                // Only reached when the ioeventfd is not registered (e.g. a failed move).
                let q = ((o - NOTIFY_OFFSET) / u64::from(NOTIFY_OFF_MULTIPLIER)) as usize;
                if let Some(evt) = self.queue_evts.get(q)
                    && let Err(e) = evt.write(1)
                {
                    tracing::warn!("queue {q} notification: {e}");
                }
            }
            o if (MSIX_TABLE_OFFSET..MSIX_TABLE_OFFSET + MSIX_TABLE_SIZE).contains(&o) => {
                lock(&self.msix).write_table(o - MSIX_TABLE_OFFSET, data);
            }
            _ => {}
        }
    }

    fn bar_mapped(&mut self, bar: usize, addr: Option<u64>) {
        if bar != BAR {
            return;
        }
        if let Some(old) = self.bar_addr.take() {
            for (i, a) in self.notify_addresses(old) {
                if let Err(e) = self.notify.unregister(&self.queue_evts[i], a) {
                    tracing::warn!("queue {i}: cannot remove doorbell at {a:#x}: {e}");
                }
            }
        }
        if let Some(new) = addr {
            for (i, a) in self.notify_addresses(new) {
                if let Err(e) = self.notify.register(&self.queue_evts[i], a) {
                    // Notifications still work through the MMIO exit path, only slower.
                    tracing::warn!("queue {i}: cannot register doorbell at {a:#x}: {e}");
                }
            }
            self.bar_addr = Some(new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::msi::tests::FakeRouter;
    use crate::virtio::{ActivateError, VIRTIO_F_VERSION_1};
    use vm_memory::GuestAddress;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    #[derive(Default)]
    struct Recorder {
        regs: Mutex<Vec<(bool, u64)>>,
    }

    impl NotifyRegistrar for Recorder {
        fn register(&self, _evt: &EventFd, addr: u64) -> Result<(), String> {
            self.regs.lock().unwrap().push((true, addr));
            Ok(())
        }
        fn unregister(&self, _evt: &EventFd, addr: u64) -> Result<(), String> {
            self.regs.lock().unwrap().push((false, addr));
            Ok(())
        }
    }

    #[derive(Default)]
    struct FakeDevice {
        activated: Option<usize>,
        resets: usize,
        interrupt: Option<Arc<dyn VirtioInterrupt>>,
    }

    impl VirtioDevice for FakeDevice {
        fn device_type(&self) -> u32 {
            2
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16]
        }
        fn features(&self) -> u64 {
            VIRTIO_F_VERSION_1
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8 + 1);
        }
        fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
        fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
            self.activated = Some(ctx.queues.len());
            self.interrupt = Some(ctx.interrupt);
            Ok(())
        }
        fn reset(&mut self) {
            self.resets += 1;
            self.activated = None;
        }
    }

    struct Fixture {
        dev: VirtioPciDevice,
        inner: Arc<Mutex<FakeDevice>>,
        notify: Arc<Recorder>,
    }

    fn fixture() -> Fixture {
        let inner = Arc::new(Mutex::new(FakeDevice::default()));
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let notify = Arc::new(Recorder::default());
        let dev = VirtioPciDevice::new(
            inner.clone(),
            vec![EventFd::new(EFD_NONBLOCK).unwrap()],
            mem,
            Arc::new(FakeRouter::default()),
            notify.clone(),
        )
        .unwrap();
        Fixture { dev, inner, notify }
    }

    fn w(d: &mut VirtioPciDevice, off: u64, v: u64, len: usize) {
        d.bar_write(0, off, &v.to_le_bytes()[..len]);
    }

    fn r(d: &mut VirtioPciDevice, off: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        d.bar_read(0, off, &mut b[..len]);
        u64::from_le_bytes(b)
    }

    /// The capability list a guest driver walks to find the structures.
    #[test]
    fn capabilities_point_into_bar0() {
        let f = fixture();
        let cs = f.dev.config_space();
        assert_eq!(cs.read_reg(0), 0x1042_1af4);
        let mut ptr = (cs.read_reg(13) & 0xff) as usize;
        let mut found = Vec::new();
        while ptr != 0 {
            let mut hdr = [0u8; 16];
            cs.read(ptr, &mut hdr);
            if hdr[0] == PCI_CAP_ID_VENDOR {
                let off = u32::from_le_bytes(hdr[8..12].try_into().unwrap());
                found.push((hdr[3], hdr[4], off));
            } else {
                found.push((0x11, 0, 0));
            }
            ptr = hdr[1] as usize;
        }
        assert_eq!(
            found,
            vec![
                (1, 0, 0),
                (3, 0, 0x1000),
                (4, 0, 0x2000),
                (2, 0, 0x3000),
                (0x11, 0, 0)
            ]
        );
    }

    #[test]
    fn driver_ok_activates_and_reset_resets() {
        let mut f = fixture();
        let d = &mut f.dev;
        w(d, 0x14, 3, 1);
        w(d, 0x08, 1, 4);
        w(d, 0x0c, 1, 4);
        w(d, 0x14, 0xb, 1);
        // Rings inside guest memory.
        w(d, 0x20, 0x1000, 4);
        w(d, 0x28, 0x2000, 4);
        w(d, 0x30, 0x3000, 4);
        w(d, 0x1c, 1, 2);
        w(d, 0x14, 0xf, 1);
        assert_eq!(f.inner.lock().unwrap().activated, Some(1));
        assert_eq!(r(d, 0x14, 1), 0xf);
        w(d, 0x14, 0, 1);
        assert_eq!(f.inner.lock().unwrap().resets, 1);
        assert_eq!(r(d, 0x14, 1), 0);
    }

    #[test]
    fn rings_outside_memory_need_reset_instead_of_activation() {
        let mut f = fixture();
        let d = &mut f.dev;
        w(d, 0x14, 3, 1);
        w(d, 0x08, 1, 4);
        w(d, 0x0c, 1, 4);
        w(d, 0x14, 0xb, 1);
        w(d, 0x20, 0x4000_0000, 4);
        w(d, 0x1c, 1, 2);
        w(d, 0x14, 0xf, 1);
        assert_eq!(f.inner.lock().unwrap().activated, None);
        assert_ne!(r(d, 0x14, 1) & u64::from(status::DEVICE_NEEDS_RESET), 0);
    }

    #[test]
    fn doorbells_follow_the_bar() {
        let mut f = fixture();
        f.dev.bar_mapped(0, Some(0xc000_0000));
        f.dev.bar_mapped(0, None);
        f.dev.bar_mapped(0, Some(0xd000_0000));
        assert_eq!(
            *f.notify.regs.lock().unwrap(),
            vec![
                (true, 0xc000_3000),
                (false, 0xc000_3000),
                (true, 0xd000_3000)
            ]
        );
        // The MMIO fallback path rings the same eventfd.
        w(&mut f.dev, 0x3000, 0, 2);
        assert_eq!(f.dev.queue_evts[0].read().unwrap(), 1);
    }

    #[test]
    fn device_config_and_isr() {
        let mut f = fixture();
        assert_eq!(r(&mut f.dev, 0x2004, 1), 5);
        f.dev.isr.store(1, Ordering::Release);
        assert_eq!(r(&mut f.dev, 0x1000, 1), 1);
        assert_eq!(r(&mut f.dev, 0x1000, 1), 0, "ISR clears on read");
    }

    #[test]
    fn queue_interrupt_goes_through_msix() {
        let mut f = fixture();
        let d = &mut f.dev;
        // Enable MSI-X through config space, program vector 0, route queue 0 to it.
        let ctl = d.msix_cap + MSIX_CONTROL_OFFSET;
        d.config_write(ctl, &0x8000u16.to_le_bytes());
        w(d, MSIX_TABLE_OFFSET, 0xfee0_0000, 4);
        w(d, MSIX_TABLE_OFFSET + 8, 0x30, 4);
        w(d, MSIX_TABLE_OFFSET + 12, 0, 4);
        w(d, 0x1a, 0, 2);
        w(d, 0x14, 3, 1);
        w(d, 0x08, 1, 4);
        w(d, 0x0c, 1, 4);
        w(d, 0x14, 0xb, 1);
        w(d, 0x20, 0x1000, 4);
        w(d, 0x28, 0x2000, 4);
        w(d, 0x30, 0x3000, 4);
        w(d, 0x1c, 1, 2);
        w(d, 0x14, 0xf, 1);
        let irq = f.inner.lock().unwrap().interrupt.clone().unwrap();
        irq.trigger(VirtioInterruptType::Queue(0)).unwrap();
        assert_eq!(lock(&f.dev.msix).irqfd(0).read().unwrap(), 1);
        // The config vector was never assigned: nothing is signalled, the ISR bit is set.
        irq.trigger(VirtioInterruptType::Config).unwrap();
        assert!(lock(&f.dev.msix).irqfd(0).read().is_err());
        assert_eq!(r(&mut f.dev, 0x1000, 1), u64::from(ISR_QUEUE | ISR_CONFIG));
    }
}
