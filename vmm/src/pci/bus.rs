//! Bus 0: device slots, BAR allocation, configuration access (conf1 ports and ECAM), and the
//! MMIO bus entries that follow the BARs wherever the guest moves them.

use std::sync::{Arc, Mutex};

use super::PciDevice;
use super::config_space::{COMMAND_BUS_MASTER, COMMAND_MEMORY, NUM_BARS};
use super::host_bridge::HostBridge;
use crate::bus::{Bus, BusDevice};
use crate::layout::{PCI_ECAM_SIZE, PCI_MMIO32_SIZE, PCI_MMIO32_START};
use crate::sync::lock;

const SLOTS: usize = 32;
const CONFIG_ENABLE: u32 = 1 << 31;

pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

#[derive(Debug, thiserror::Error)]
pub enum PciError {
    #[error("all {SLOTS} PCI slots are in use")]
    NoSlot,
    #[error("the 32-bit PCI window has no room for a {0:#x} byte BAR")]
    NoMmioSpace(u64),
    #[error("cannot program BAR: {0}")]
    Bar(#[from] super::config_space::ConfigSpaceError),
}

/// Forwards MMIO accesses in one BAR to its device.
struct BarRegion {
    device: SharedPciDevice,
    bar: usize,
}

impl BusDevice for BarRegion {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        lock(&self.device).bar_read(self.bar, offset, data);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        lock(&self.device).bar_write(self.bar, offset, data);
    }
}

pub struct PciRoot {
    slots: Vec<Option<SharedPciDevice>>,
    /// Where each slot's BARs are on the MMIO bus now.
    mapped: Vec<[Option<(u64, u64)>; NUM_BARS]>,
    mmio: Arc<Bus>,
    next_mmio: u64,
}

impl PciRoot {
    /// Bus 0 with the host bridge in slot 0.
    pub fn new(mmio: Arc<Bus>) -> Self {
        let mut root = PciRoot {
            slots: vec![None; SLOTS],
            mapped: vec![[None; NUM_BARS]; SLOTS],
            mmio,
            next_mmio: PCI_MMIO32_START,
        };
        root.slots[0] = Some(Arc::new(Mutex::new(HostBridge::new())));
        root
    }

    /// Plugs a device into the next free slot, assigns its BARs in the 32-bit window (as
    /// firmware would) and enables decoding. Returns the slot.
    pub fn add_device(&mut self, device: SharedPciDevice) -> Result<usize, PciError> {
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(PciError::NoSlot)?;
        {
            let mut d = lock(&device);
            let cs = d.config_space_mut();
            for bar in 0..NUM_BARS {
                let Some(info) = cs.bar(bar) else { continue };
                let addr = self.next_mmio.next_multiple_of(info.size);
                let end = addr + info.size;
                if end > PCI_MMIO32_START + PCI_MMIO32_SIZE {
                    return Err(PciError::NoMmioSpace(info.size));
                }
                cs.set_bar_address(bar, addr)?;
                self.next_mmio = end;
            }
            let cmd = cs.command() | COMMAND_MEMORY | COMMAND_BUS_MASTER;
            cs.set_command(cmd);
        }
        self.slots[slot] = Some(device);
        self.update_mappings(slot);
        Ok(slot)
    }

    fn device(&self, bus: u8, dev: u8, func: u8) -> Option<(usize, SharedPciDevice)> {
        if bus != 0 || func != 0 {
            return None;
        }
        let slot = usize::from(dev);
        self.slots.get(slot)?.clone().map(|d| (slot, d))
    }

    pub fn config_read(&self, bus: u8, dev: u8, func: u8, reg: usize) -> u32 {
        match self.device(bus, dev, func) {
            Some((_, d)) => lock(&d).config_read(reg),
            None => 0xffff_ffff,
        }
    }

    pub fn config_write(&mut self, bus: u8, dev: u8, func: u8, offset: usize, data: &[u8]) {
        let Some((slot, d)) = self.device(bus, dev, func) else {
            return;
        };
        lock(&d).config_write(offset, data);
        self.update_mappings(slot);
    }

    /// Makes the MMIO bus match what slot `slot` decodes now.
    fn update_mappings(&mut self, slot: usize) {
        let Some(device) = self.slots[slot].clone() else {
            return;
        };
        let mut d = lock(&device);
        let decoded = d.config_space().decoded_bars();
        for (bar, addr) in decoded.into_iter().enumerate() {
            let want = addr.and_then(|a| d.config_space().bar(bar).map(|i| (a, i.size)));
            let have = self.mapped[slot][bar];
            if want == have {
                continue;
            }
            if let Some((old, _)) = have {
                self.mmio.remove(old);
            }
            let mut now = None;
            if let Some((addr, size)) = want {
                let region = Arc::new(Mutex::new(BarRegion {
                    device: device.clone(),
                    bar,
                }));
                match self.mmio.insert(region, addr, size) {
                    Ok(()) => now = Some((addr, size)),
                    // A guest that points a BAR at RAM or another device just loses the BAR.
                    Err(e) => tracing::warn!("PCI slot {slot} BAR {bar}: {e}; BAR left unmapped"),
                }
            }
            self.mapped[slot][bar] = now;
            tracing::debug!("PCI slot {slot} BAR {bar}: {have:x?} -> {now:x?}");
            d.bar_mapped(bar, now.map(|(a, _)| a));
        }
    }
}

/// Configuration mechanism #1: address at 0xcf8, data at 0xcfc-0xcff.
pub struct PciConfigIo {
    root: Arc<Mutex<PciRoot>>,
    address: u32,
}

impl PciConfigIo {
    pub fn new(root: Arc<Mutex<PciRoot>>) -> Self {
        PciConfigIo { root, address: 0 }
    }

    fn target(&self) -> Option<(u8, u8, u8, usize)> {
        if self.address & CONFIG_ENABLE == 0 {
            return None;
        }
        let bus = (self.address >> 16) as u8;
        let dev = ((self.address >> 11) & 0x1f) as u8;
        let func = ((self.address >> 8) & 0x7) as u8;
        let reg = ((self.address >> 2) & 0x3f) as usize;
        Some((bus, dev, func, reg))
    }
}

impl BusDevice for PciConfigIo {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        let value = match offset {
            0..=3 => self.address >> (offset * 8),
            4..=7 => match self.target() {
                Some((b, d, f, reg)) => {
                    lock(&self.root).config_read(b, d, f, reg) >> ((offset - 4) * 8)
                }
                None => 0xffff_ffff,
            },
            _ => 0xffff_ffff,
        };
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = (value >> (i * 8)) as u8;
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        match offset {
            0 if data.len() == 4 => {
                self.address = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            }
            4..=7 => {
                if let Some((b, d, f, reg)) = self.target() {
                    let at = reg * 4 + (offset as usize - 4);
                    lock(&self.root).config_write(b, d, f, at, data);
                }
            }
            _ => {}
        }
    }
}

/// ECAM: 4 KiB of configuration space per function, memory mapped.
pub struct PciConfigMmio {
    root: Arc<Mutex<PciRoot>>,
}

impl PciConfigMmio {
    pub fn new(root: Arc<Mutex<PciRoot>>) -> Self {
        PciConfigMmio { root }
    }

    fn decode(offset: u64) -> (u8, u8, u8, usize) {
        let bus = ((offset >> 20) & 0xff) as u8;
        let dev = ((offset >> 15) & 0x1f) as u8;
        let func = ((offset >> 12) & 0x7) as u8;
        (bus, dev, func, (offset & 0xfff) as usize)
    }
}

impl BusDevice for PciConfigMmio {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        let (b, d, f, at) = Self::decode(offset);
        let shift = (at % 4) * 8;
        if offset >= PCI_ECAM_SIZE || (at % 4) + data.len() > 4 {
            data.fill(0xff);
            return;
        }
        let value = lock(&self.root).config_read(b, d, f, at / 4) >> shift;
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = (value >> (i * 8)) as u8;
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let (b, d, f, at) = Self::decode(offset);
        if offset >= PCI_ECAM_SIZE || (at % 4) + data.len() > 4 {
            return;
        }
        lock(&self.root).config_write(b, d, f, at, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::config_space::{BarInfo, PciConfigSpace, PciHeader};

    struct Dummy {
        cs: PciConfigSpace,
        last_mapped: Option<u64>,
        bar_writes: Vec<(u64, Vec<u8>)>,
    }

    impl PciDevice for Dummy {
        fn config_space(&self) -> &PciConfigSpace {
            &self.cs
        }
        fn config_space_mut(&mut self) -> &mut PciConfigSpace {
            &mut self.cs
        }
        fn bar_write(&mut self, _bar: usize, offset: u64, data: &[u8]) {
            self.bar_writes.push((offset, data.to_vec()));
        }
        fn bar_mapped(&mut self, _bar: usize, addr: Option<u64>) {
            self.last_mapped = addr;
        }
    }

    fn dummy() -> Arc<Mutex<Dummy>> {
        let mut cs = PciConfigSpace::new(&PciHeader {
            vendor_id: 0x1af4,
            device_id: 0x1042,
            revision: 1,
            class: (1, 0x80, 0),
            subsystem_vendor_id: 0x1af4,
            subsystem_id: 0x40,
        });
        cs.add_bar(
            0,
            BarInfo {
                size: 0x8000,
                is_64bit: true,
                prefetchable: false,
            },
        )
        .unwrap();
        Arc::new(Mutex::new(Dummy {
            cs,
            last_mapped: None,
            bar_writes: vec![],
        }))
    }

    fn conf1(io: &mut PciConfigIo, dev: u8, reg: u32) -> u32 {
        io.write(
            0xcf8,
            0,
            &(CONFIG_ENABLE | u32::from(dev) << 11 | reg << 2).to_le_bytes(),
        );
        let mut v = [0u8; 4];
        io.read(0xcf8, 4, &mut v);
        u32::from_le_bytes(v)
    }

    #[test]
    fn conf1_and_ecam_see_the_same_devices() {
        let mmio = Arc::new(Bus::new());
        let root = Arc::new(Mutex::new(PciRoot::new(mmio)));
        let slot = root.lock().unwrap().add_device(dummy()).unwrap();
        assert_eq!(slot, 1);
        let mut io = PciConfigIo::new(root.clone());
        let mut ecam = PciConfigMmio::new(root);
        assert_eq!(conf1(&mut io, 0, 0), 0x0008_1b36);
        assert_eq!(conf1(&mut io, 1, 0), 0x1042_1af4);
        assert_eq!(conf1(&mut io, 2, 0), 0xffff_ffff);
        let mut v = [0u8; 4];
        ecam.read(0, 1 << 15, &mut v);
        assert_eq!(u32::from_le_bytes(v), 0x1042_1af4);
        let mut w = [0u8; 2];
        ecam.read(0, (1 << 15) + 2, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x1042);
        // Bus 1 and function 1 are empty.
        ecam.read(0, 1 << 20, &mut v);
        assert_eq!(v, [0xff; 4]);
        ecam.read(0, (1 << 15) | (1 << 12), &mut v);
        assert_eq!(v, [0xff; 4]);
    }

    #[test]
    fn bar_follows_guest_reprogramming() {
        let mmio = Arc::new(Bus::new());
        let root = Arc::new(Mutex::new(PciRoot::new(mmio.clone())));
        let dev = dummy();
        root.lock().unwrap().add_device(dev.clone()).unwrap();
        let first = dev.lock().unwrap().last_mapped.unwrap();
        assert_eq!(first, PCI_MMIO32_START);
        assert!(mmio.write(first + 0x10, &[1]));

        let mut io = PciConfigIo::new(root);
        let select = |io: &mut PciConfigIo, reg: u32| {
            io.write(
                0xcf8,
                0,
                &(CONFIG_ENABLE | 1 << 11 | reg << 2).to_le_bytes(),
            )
        };
        // Disable decoding, move the BAR, re-enable: like Linux does when it reassigns.
        select(&mut io, 1);
        io.write(0xcf8, 4, &0u16.to_le_bytes());
        assert_eq!(dev.lock().unwrap().last_mapped, None);
        assert!(!mmio.write(first + 0x10, &[1]));
        select(&mut io, 4);
        io.write(0xcf8, 4, &0xd000_0000u32.to_le_bytes());
        select(&mut io, 1);
        io.write(0xcf8, 4, &COMMAND_MEMORY.to_le_bytes());
        assert_eq!(dev.lock().unwrap().last_mapped, Some(0xd000_0000));
        assert!(mmio.write(0xd000_0010, &[2]));
        assert_eq!(
            dev.lock().unwrap().bar_writes,
            vec![(0x10, vec![1]), (0x10, vec![2])]
        );
    }
}
