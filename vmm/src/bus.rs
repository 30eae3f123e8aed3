//! Port I/O and MMIO dispatch: address ranges mapped to devices.
//!
//! The map is behind a read-write lock so PCI BARs can move while vCPUs run; the device `Arc` is
//! cloned out and the map lock dropped before the device lock is taken, so a BAR move (device
//! lock, then map write lock) cannot deadlock against a vCPU access (map read lock, then device).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::sync::{lock, read, write};

/// A device on a bus. `offset` is relative to the start of the range it was inserted at.
pub trait BusDevice: Send {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]);
    fn write(&mut self, base: u64, offset: u64, data: &[u8]);
}

pub type SharedBusDevice = Arc<Mutex<dyn BusDevice>>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("bus range {base:#x}+{len:#x} is empty or overlaps another device")]
    Overlap { base: u64, len: u64 },
}

struct Range {
    len: u64,
    device: SharedBusDevice,
}

#[derive(Default)]
pub struct Bus {
    ranges: RwLock<BTreeMap<u64, Range>>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&self, device: SharedBusDevice, base: u64, len: u64) -> Result<(), BusError> {
        let end = base.checked_add(len).filter(|_| len > 0);
        let Some(end) = end else {
            return Err(BusError::Overlap { base, len });
        };
        let mut ranges = write(&self.ranges);
        let before = ranges.range(..end).next_back();
        if let Some((b, r)) = before
            && b + r.len > base
        {
            return Err(BusError::Overlap { base, len });
        }
        ranges.insert(base, Range { len, device });
        Ok(())
    }

    /// Removes the range starting exactly at `base`.
    pub fn remove(&self, base: u64) -> bool {
        write(&self.ranges).remove(&base).is_some()
    }

    fn resolve(&self, addr: u64, len: usize) -> Option<(u64, u64, SharedBusDevice)> {
        let ranges = read(&self.ranges);
        let (base, range) = ranges.range(..=addr).next_back()?;
        let offset = addr - base;
        if offset.checked_add(len as u64)? > range.len {
            return None;
        }
        Some((*base, offset, range.device.clone()))
    }

    /// Returns false when nothing decodes the access.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((base, offset, dev)) => {
                lock(&dev).read(base, offset, data);
                true
            }
            None => false,
        }
    }

    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((base, offset, dev)) => {
                lock(&dev).write(base, offset, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        writes: Vec<(u64, u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
            self.writes.push((base, offset, data.to_vec()));
        }
    }

    #[test]
    fn dispatches_by_range_with_offsets() {
        let bus = Bus::new();
        let dev = Arc::new(Mutex::new(Recorder::default()));
        bus.insert(dev.clone(), 0x3f8, 8).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fd, &mut b));
        assert_eq!(b[0], 5);
        assert!(bus.write(0x3f8, &[0x41]));
        assert_eq!(dev.lock().unwrap().writes, vec![(0x3f8, 0, vec![0x41])]);
        assert!(!bus.read(0x3f7, &mut b));
        assert!(!bus.read(0x400, &mut b));
        // An access that straddles the end of the range is not decoded.
        let mut w = [0u8; 2];
        assert!(!bus.read(0x3ff, &mut w));
    }

    #[test]
    fn overlapping_ranges_are_refused_and_removal_works() {
        let bus = Bus::new();
        let dev = Arc::new(Mutex::new(Recorder::default()));
        bus.insert(dev.clone(), 0x1000, 0x100).unwrap();
        assert!(bus.insert(dev.clone(), 0x10ff, 1).is_err());
        assert!(bus.insert(dev.clone(), 0xf01, 0x100).is_err());
        assert!(bus.insert(dev.clone(), 0x0, 0).is_err());
        bus.insert(dev.clone(), 0x1100, 0x10).unwrap();
        assert!(bus.remove(0x1000));
        assert!(!bus.write(0x1000, &[1]));
        bus.insert(dev, 0xf01, 0x100).unwrap();
    }
}
