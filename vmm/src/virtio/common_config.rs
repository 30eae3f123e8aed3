//! The virtio-pci common configuration structure (virtio 1.x, 4.1.4.3): feature negotiation,
//! device status, and queue set-up. Register logic only; the transport acts on the result.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use virtio_queue::{Queue, QueueT};

use super::{VIRTIO_F_VERSION_1, status};

/// "No MSI-X vector" (VIRTIO_MSI_NO_VECTOR).
pub const NO_VECTOR: u16 = 0xffff;
/// Size of the structure (virtio 1.0 fields).
pub const COMMON_CONFIG_SIZE: u64 = 0x38;

/// MSI-X vectors the driver assigned, read by the interrupt path on another thread.
pub struct Vectors {
    pub config: AtomicU16,
    pub queues: Vec<AtomicU16>,
}

impl Vectors {
    pub fn new(queues: usize) -> Self {
        Vectors {
            config: AtomicU16::new(NO_VECTOR),
            queues: (0..queues).map(|_| AtomicU16::new(NO_VECTOR)).collect(),
        }
    }

    pub fn queue(&self, index: u16) -> u16 {
        self.queues
            .get(usize::from(index))
            .map_or(NO_VECTOR, |v| v.load(Ordering::Acquire))
    }

    fn reset(&self) {
        self.config.store(NO_VECTOR, Ordering::Release);
        for q in &self.queues {
            q.store(NO_VECTOR, Ordering::Release);
        }
    }
}

/// What the transport must do after a register write.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    None,
    /// The driver wrote 0 to device_status.
    Reset,
    /// The driver set DRIVER_OK after successful feature negotiation.
    Activate,
}

pub struct CommonConfig {
    pub driver_status: u8,
    pub config_generation: u8,
    device_feature_select: u32,
    driver_feature_select: u32,
    queue_select: u16,
    pub driver_features: u64,
    pub vectors: Arc<Vectors>,
    msix_vectors: u16,
}

impl CommonConfig {
    pub fn new(queues: usize, msix_vectors: u16) -> Self {
        CommonConfig {
            driver_status: 0,
            config_generation: 0,
            device_feature_select: 0,
            driver_feature_select: 0,
            queue_select: 0,
            driver_features: 0,
            vectors: Arc::new(Vectors::new(queues)),
            msix_vectors,
        }
    }

    pub fn reset(&mut self) {
        self.driver_status = 0;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.queue_select = 0;
        self.driver_features = 0;
        self.vectors.reset();
    }

    fn live(&self) -> bool {
        self.driver_status & status::DRIVER_OK != 0
    }

    fn valid_vector(&self, v: u16) -> u16 {
        if v < self.msix_vectors { v } else { NO_VECTOR }
    }

    pub fn read(&self, offset: u64, data: &mut [u8], queues: &[Queue], device_features: u64) {
        let q = queues.get(usize::from(self.queue_select));
        let value: u64 = match (offset, data.len()) {
            (0x00, 4) => u64::from(self.device_feature_select),
            (0x04, 4) => match self.device_feature_select {
                0 => device_features & 0xffff_ffff,
                1 => device_features >> 32,
                _ => 0,
            },
            (0x08, 4) => u64::from(self.driver_feature_select),
            (0x0c, 4) => match self.driver_feature_select {
                0 => self.driver_features & 0xffff_ffff,
                1 => self.driver_features >> 32,
                _ => 0,
            },
            (0x10, 2) => u64::from(self.vectors.config.load(Ordering::Acquire)),
            (0x12, 2) => queues.len() as u64,
            (0x14, 1) => u64::from(self.driver_status),
            (0x15, 1) => u64::from(self.config_generation),
            (0x16, 2) => u64::from(self.queue_select),
            (0x18, 2) => q.map_or(0, |q| u64::from(q.size())),
            (0x1a, 2) => u64::from(self.vectors.queue(self.queue_select)),
            (0x1c, 2) => q.map_or(0, |q| u64::from(q.ready())),
            (0x1e, 2) => q.map_or(0, |_| u64::from(self.queue_select)),
            (0x20 | 0x24 | 0x28 | 0x2c | 0x30 | 0x34, 4) | (0x20 | 0x28 | 0x30, 8) => {
                let full = q.map_or(0, |q| match offset & !7 {
                    0x20 => q.desc_table(),
                    0x28 => q.avail_ring(),
                    _ => q.used_ring(),
                });
                if data.len() == 4 && offset & 4 != 0 {
                    full >> 32
                } else {
                    full
                }
            }
            _ => {
                tracing::debug!(
                    "virtio common config: unsupported read at {offset:#x} size {}",
                    data.len()
                );
                0
            }
        };
        for (i, b) in data.iter_mut().enumerate() {
            *b = (value >> (i * 8)) as u8;
        }
    }

    pub fn write(
        &mut self,
        offset: u64,
        data: &[u8],
        queues: &mut [Queue],
        device_features: u64,
    ) -> Action {
        let mut raw = [0u8; 8];
        let Some(dst) = raw.get_mut(..data.len()) else {
            return Action::None;
        };
        dst.copy_from_slice(data);
        let value = u64::from_le_bytes(raw);
        let live = self.live();
        let sel = usize::from(self.queue_select);
        match (offset, data.len()) {
            (0x00, 4) => self.device_feature_select = value as u32,
            (0x08, 4) => self.driver_feature_select = value as u32,
            (0x0c, 4) => {
                if self.driver_status & status::FEATURES_OK == 0 {
                    let v = value & 0xffff_ffff;
                    match self.driver_feature_select {
                        0 => self.driver_features = (self.driver_features & !0xffff_ffff) | v,
                        1 => {
                            self.driver_features = (self.driver_features & 0xffff_ffff) | (v << 32)
                        }
                        _ => {}
                    }
                }
            }
            (0x10, 2) => {
                let v = self.valid_vector(value as u16);
                self.vectors.config.store(v, Ordering::Release);
            }
            (0x14, 1) => return self.write_status(value as u8, device_features),
            (0x16, 2) => self.queue_select = value as u16,
            (0x18, 2) => {
                if let Some(q) = queues.get_mut(sel).filter(|q| !q.ready() && !live) {
                    // virtio-queue refuses sizes that are zero, too big or not a power of two.
                    if let Err(e) = q.try_set_size(value as u16) {
                        tracing::debug!("queue {sel}: size {value} refused: {e}");
                    }
                }
            }
            (0x1a, 2) => {
                if let Some(v) = self.vectors.queues.get(sel) {
                    v.store(self.valid_vector(value as u16), Ordering::Release);
                }
            }
            (0x1c, 2) => {
                if let Some(q) = queues.get_mut(sel).filter(|_| !live)
                    && value == 1
                {
                    q.set_ready(true);
                }
            }
            (0x20 | 0x24 | 0x28 | 0x2c | 0x30 | 0x34, 4) | (0x20 | 0x28 | 0x30, 8) => {
                if let Some(q) = queues.get_mut(sel).filter(|q| !q.ready() && !live) {
                    let (lo, hi) = if data.len() == 8 {
                        (Some(value as u32), Some((value >> 32) as u32))
                    } else if offset & 4 == 0 {
                        (Some(value as u32), None)
                    } else {
                        (None, Some(value as u32))
                    };
                    match offset & !7 {
                        0x20 => q.set_desc_table_address(lo, hi),
                        0x28 => q.set_avail_ring_address(lo, hi),
                        _ => q.set_used_ring_address(lo, hi),
                    }
                }
            }
            _ => tracing::debug!(
                "virtio common config: ignored write at {offset:#x} size {}",
                data.len()
            ),
        }
        Action::None
    }

    fn write_status(&mut self, new: u8, device_features: u64) -> Action {
        if new == 0 {
            return Action::Reset;
        }
        let old = self.driver_status;
        // The driver may only add bits (2.1.2); anything else is ignored.
        if new & old != old {
            tracing::debug!("virtio status {old:#x} -> {new:#x} ignored");
            return Action::None;
        }
        let added = new & !old;
        let mut accepted = new;
        if added & status::FEATURES_OK != 0 {
            let subset = self.driver_features & !device_features == 0;
            let modern = self.driver_features & VIRTIO_F_VERSION_1 != 0;
            if !(subset && modern) {
                tracing::debug!(
                    "virtio features {:#x} refused (offered {device_features:#x})",
                    self.driver_features
                );
                accepted &= !status::FEATURES_OK;
            }
        }
        let activate = added & status::DRIVER_OK != 0 && accepted & status::FEATURES_OK != 0;
        if added & status::DRIVER_OK != 0 && !activate {
            accepted &= !status::DRIVER_OK;
        }
        self.driver_status = accepted;
        if activate {
            Action::Activate
        } else {
            Action::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEATURES: u64 = VIRTIO_F_VERSION_1 | 1 << 9;

    fn rd(cc: &CommonConfig, q: &[Queue], off: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        cc.read(off, &mut b[..len], q, FEATURES);
        u64::from_le_bytes(b)
    }

    fn wr(cc: &mut CommonConfig, q: &mut [Queue], off: u64, len: usize, v: u64) -> Action {
        cc.write(off, &v.to_le_bytes()[..len], q, FEATURES)
    }

    fn setup() -> (CommonConfig, Vec<Queue>) {
        (CommonConfig::new(1, 2), vec![Queue::new(256).unwrap()])
    }

    #[test]
    fn feature_negotiation_and_activation() {
        let (mut cc, mut q) = setup();
        wr(&mut cc, &mut q, 0x00, 4, 1);
        assert_eq!(rd(&cc, &q, 0x04, 4), 1, "VERSION_1 is bit 32");
        wr(&mut cc, &mut q, 0x00, 4, 0);
        assert_eq!(rd(&cc, &q, 0x04, 4), 1 << 9);
        wr(&mut cc, &mut q, 0x14, 1, 3);
        wr(&mut cc, &mut q, 0x08, 4, 1);
        wr(&mut cc, &mut q, 0x0c, 4, 1);
        wr(&mut cc, &mut q, 0x14, 1, 0xb);
        assert_eq!(rd(&cc, &q, 0x14, 1), 0xb, "FEATURES_OK accepted");
        assert_eq!(wr(&mut cc, &mut q, 0x14, 1, 0xf), Action::Activate);
        assert_eq!(cc.driver_features, VIRTIO_F_VERSION_1);
        assert_eq!(wr(&mut cc, &mut q, 0x14, 1, 0), Action::Reset);
    }

    #[test]
    fn legacy_or_unknown_features_are_refused() {
        let (mut cc, mut q) = setup();
        wr(&mut cc, &mut q, 0x14, 1, 3);
        // No VERSION_1: a legacy driver.
        wr(&mut cc, &mut q, 0x0c, 4, 1 << 9);
        wr(&mut cc, &mut q, 0x14, 1, 0xb);
        assert_eq!(rd(&cc, &q, 0x14, 1), 3);
        // A feature we never offered.
        wr(&mut cc, &mut q, 0x08, 4, 1);
        wr(&mut cc, &mut q, 0x0c, 4, 1 | 1 << 5);
        wr(&mut cc, &mut q, 0x14, 1, 0xb);
        assert_eq!(rd(&cc, &q, 0x14, 1), 3);
        // DRIVER_OK without FEATURES_OK does not activate.
        assert_eq!(wr(&mut cc, &mut q, 0x14, 1, 7), Action::None);
        assert_eq!(rd(&cc, &q, 0x14, 1), 3);
    }

    #[test]
    fn queue_setup_registers() {
        let (mut cc, mut q) = setup();
        assert_eq!(rd(&cc, &q, 0x12, 2), 1);
        assert_eq!(rd(&cc, &q, 0x18, 2), 256);
        wr(&mut cc, &mut q, 0x18, 2, 100); // not a power of two
        assert_eq!(rd(&cc, &q, 0x18, 2), 256);
        wr(&mut cc, &mut q, 0x18, 2, 64);
        assert_eq!(rd(&cc, &q, 0x18, 2), 64);
        wr(&mut cc, &mut q, 0x20, 4, 0x1000);
        wr(&mut cc, &mut q, 0x24, 4, 0x1);
        assert_eq!(rd(&cc, &q, 0x20, 4), 0x1000);
        assert_eq!(rd(&cc, &q, 0x24, 4), 0x1);
        wr(&mut cc, &mut q, 0x28, 8, 0x2000);
        assert_eq!(rd(&cc, &q, 0x28, 8), 0x2000);
        wr(&mut cc, &mut q, 0x1a, 2, 1);
        assert_eq!(rd(&cc, &q, 0x1a, 2), 1);
        wr(&mut cc, &mut q, 0x1a, 2, 7); // beyond the MSI-X table
        assert_eq!(rd(&cc, &q, 0x1a, 2), u64::from(NO_VECTOR));
        wr(&mut cc, &mut q, 0x1c, 2, 1);
        assert_eq!(rd(&cc, &q, 0x1c, 2), 1);
        // Enabled queues are frozen.
        wr(&mut cc, &mut q, 0x18, 2, 32);
        assert_eq!(rd(&cc, &q, 0x18, 2), 64);
        // A queue that does not exist reads as size 0.
        wr(&mut cc, &mut q, 0x16, 2, 5);
        assert_eq!(rd(&cc, &q, 0x18, 2), 0);
        wr(&mut cc, &mut q, 0x1c, 2, 1);
    }

    #[test]
    fn odd_accesses_are_harmless() {
        let (mut cc, mut q) = setup();
        assert_eq!(wr(&mut cc, &mut q, 0x15, 1, 9), Action::None);
        assert_eq!(wr(&mut cc, &mut q, 0x03, 1, 9), Action::None);
        assert_eq!(cc.write(0x00, &[0u8; 16], &mut q, FEATURES), Action::None);
        assert_eq!(rd(&cc, &q, 0x40, 4), 0);
        assert_eq!(rd(&cc, &q, 0x04, 2), 0);
    }
}
