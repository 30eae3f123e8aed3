//! virtio-net, in the pieces virtio-blk is kept in: the device (features, configuration space,
//! moving frames), the header rules, the guest's transmit chains and receive buffers, and the
//! event-loop wiring. The host side (TAP, passt) is in [`crate::net`].

pub mod device;
pub mod event_handler;
pub mod header;
pub mod rx;
pub mod tx;

pub use device::{Net, NetStats};
pub use event_handler::NetEventHandler;

use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::event_loop::DeviceEventLoop;
use crate::interrupt::MsiRouter;
use crate::memory::GuestMemoryMmap;
use crate::net::OpenedNet;
use crate::net::passt::PasstGuard;
use crate::pci::PciRoot;
use crate::sync::lock;
use crate::virtio::pci::{NotifyRegistrar, TransportError, VirtioPciDevice};

/// Puts NIC number `index` on the PCI bus and its handler into the event loop. Returns what
/// must live as long as the VM (passt).
pub fn attach(
    index: usize,
    opened: OpenedNet,
    mem: &GuestMemoryMmap,
    router: &Arc<dyn MsiRouter>,
    notify: &Arc<dyn NotifyRegistrar>,
    pci: &Arc<Mutex<PciRoot>>,
    event_loop: &mut DeviceEventLoop,
) -> Result<Option<PasstGuard>, crate::vmm::Error> {
    let OpenedNet {
        backend,
        mac,
        guard,
        log,
    } = opened;
    let net = Arc::new(Mutex::new(
        Net::new(index, backend, mac).map_err(TransportError::EventFd)?,
    ));
    let evt = || EventFd::new(EFD_NONBLOCK).map_err(TransportError::EventFd);
    let (rx_evt, tx_evt) = (evt()?, evt()?);
    let clone = |e: &EventFd| e.try_clone().map_err(TransportError::EventFd);
    let handler = NetEventHandler::new(net.clone(), clone(&rx_evt)?, clone(&tx_evt)?, log)
        .map_err(TransportError::EventFd)?;
    let transport = VirtioPciDevice::new(
        net.clone(),
        vec![rx_evt, tx_evt],
        mem.clone(),
        router.clone(),
        notify.clone(),
    )?;
    let slot = lock(pci).add_device(Arc::new(Mutex::new(transport)))?;
    {
        let n = lock(&net);
        tracing::info!(
            "{} on PCI 00:{slot:02x}.0, MAC {}, MTU {}",
            n.name(),
            n.mac(),
            n.mtu()
        );
    }
    event_loop.add(Box::new(handler));
    Ok(guard)
}
