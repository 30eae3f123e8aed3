//! Virtio: the device trait every virtio device implements (block now; net, 9p, rng later) and
//! the PCI transport that exposes any of them to the guest.

pub mod block;
pub mod chain;
pub mod common_config;
pub mod event_handler;
pub mod net;
pub mod p9;
pub mod pci;
pub mod queue_server;
pub mod rng;
#[cfg(test)]
pub mod test_utils;

use std::sync::Arc;

use virtio_queue::Queue;

use crate::interrupt::InterruptError;
use crate::memory::GuestMemoryMmap;

/// Device status bits (virtio 1.x, 2.1).
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const DEVICE_NEEDS_RESET: u8 = 0x40;
    pub const FAILED: u8 = 0x80;
}

pub const VIRTIO_F_VERSION_1: u64 = 1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 =
    1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_INDIRECT_DESC;

/// What a device asks its transport to signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtioInterruptType {
    Config,
    Queue(u16),
}

/// Interrupt path from a device to the guest, provided by the transport.
pub trait VirtioInterrupt: Send + Sync {
    fn trigger(&self, kind: VirtioInterruptType) -> Result<(), InterruptError>;
}

/// Everything a device needs once the driver sets DRIVER_OK.
pub struct ActivateContext {
    pub mem: GuestMemoryMmap,
    pub interrupt: Arc<dyn VirtioInterrupt>,
    /// The queues as the driver configured them (event index already set if negotiated).
    pub queues: Vec<Queue>,
    /// Features the driver accepted.
    pub acked_features: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("device expects {expected} queues, driver enabled {got}")]
    QueueCount { expected: usize, got: usize },
    #[error("queue {0} is not valid (size or ring addresses)")]
    BadQueue(usize),
}

/// A virtio device model, independent of the transport.
pub trait VirtioDevice: Send {
    /// Virtio device ID (2 = block).
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Features offered to the driver.
    fn features(&self) -> u64;
    fn read_config(&self, offset: u64, data: &mut [u8]);
    fn write_config(&mut self, offset: u64, data: &[u8]);
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError>;
    /// Back to the pre-activation state (the driver wrote 0 to the status register).
    fn reset(&mut self);
}
