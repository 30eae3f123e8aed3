//! A type-0 PCI configuration space: header registers with per-bit write masks, memory BARs
//! that answer size probes, and a capability list. Pure data; the bus decides what a change
//! of BAR or command register means for the address map.

pub const CONFIG_SPACE_SIZE: usize = 4096;
const REGS: usize = CONFIG_SPACE_SIZE / 4;
pub const NUM_BARS: usize = 6;

const COMMAND_REG: usize = 1;
const STATUS_CAP_LIST: u32 = 1 << 20;
pub const COMMAND_IO: u16 = 1 << 0;
pub const COMMAND_MEMORY: u16 = 1 << 1;
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
const COMMAND_INTX_DISABLE: u16 = 1 << 10;
const BAR0_REG: usize = 4;
const CAP_PTR_REG: usize = 13;
const INTERRUPT_REG: usize = 15;
const FIRST_CAP_OFFSET: usize = 0x40;
/// Capabilities live in the legacy 256-byte space so conf1 (port 0xcf8) can reach them.
const LEGACY_SPACE_END: usize = 0x100;

const BAR_MEM_64BIT: u32 = 0b10 << 1;
const BAR_MEM_PREFETCHABLE: u32 = 1 << 3;

/// Identity of a function.
#[derive(Clone, Copy, Debug)]
pub struct PciHeader {
    pub vendor_id: u16,
    pub device_id: u16,
    pub revision: u8,
    /// Class code: (base class, subclass, programming interface).
    pub class: (u8, u8, u8),
    pub subsystem_vendor_id: u16,
    pub subsystem_id: u16,
}

/// A memory BAR. Sizes are powers of two, at least 4 KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarInfo {
    pub size: u64,
    pub is_64bit: bool,
    pub prefetchable: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigSpaceError {
    #[error("BAR {0} is invalid or already in use")]
    BadBar(usize),
    #[error("BAR size {0:#x} is not a power of two of at least 4 KiB")]
    BarSize(u64),
    #[error("capability list is full")]
    CapabilitySpace,
}

#[derive(Clone)]
pub struct PciConfigSpace {
    regs: Vec<u32>,
    wmask: Vec<u32>,
    bars: [Option<BarInfo>; NUM_BARS],
    /// BAR registers in use, including the upper halves of 64-bit BARs.
    taken: [bool; NUM_BARS],
    last_cap_next: Option<usize>,
    next_cap: usize,
}

impl PciConfigSpace {
    pub fn new(h: &PciHeader) -> Self {
        let mut regs = vec![0u32; REGS];
        let mut wmask = vec![0u32; REGS];
        regs[0] = u32::from(h.device_id) << 16 | u32::from(h.vendor_id);
        regs[2] = u32::from(h.class.0) << 24
            | u32::from(h.class.1) << 16
            | u32::from(h.class.2) << 8
            | u32::from(h.revision);
        regs[11] = u32::from(h.subsystem_id) << 16 | u32::from(h.subsystem_vendor_id);
        wmask[COMMAND_REG] =
            u32::from(COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE);
        // Cache line size and latency timer are plain storage.
        wmask[3] = 0x0000_ffff;
        // Interrupt line is scratch for the OS; interrupt pin stays 0 (no INTx).
        wmask[INTERRUPT_REG] = 0x0000_00ff;
        PciConfigSpace {
            regs,
            wmask,
            bars: [None; NUM_BARS],
            taken: [false; NUM_BARS],
            last_cap_next: None,
            next_cap: FIRST_CAP_OFFSET,
        }
    }

    /// Declares memory BAR `index` (a 64-bit BAR also takes `index + 1`).
    pub fn add_bar(&mut self, index: usize, info: BarInfo) -> Result<(), ConfigSpaceError> {
        let last = if info.is_64bit { index + 1 } else { index };
        if last >= NUM_BARS || self.taken[index] || self.taken[last] {
            return Err(ConfigSpaceError::BadBar(index));
        }
        if !info.size.is_power_of_two()
            || info.size < 0x1000
            || (!info.is_64bit && info.size > 1 << 31)
        {
            return Err(ConfigSpaceError::BarSize(info.size));
        }
        let mut flags = 0;
        if info.is_64bit {
            flags |= BAR_MEM_64BIT;
        }
        if info.prefetchable {
            flags |= BAR_MEM_PREFETCHABLE;
        }
        let size_mask = !(info.size - 1);
        self.regs[BAR0_REG + index] = flags;
        self.wmask[BAR0_REG + index] = (size_mask as u32) & !0xf;
        if info.is_64bit {
            self.wmask[BAR0_REG + last] = (size_mask >> 32) as u32;
        }
        self.bars[index] = Some(info);
        self.taken[index] = true;
        self.taken[last] = true;
        Ok(())
    }

    pub fn bar(&self, index: usize) -> Option<BarInfo> {
        self.bars.get(index).copied().flatten()
    }

    /// The address currently programmed in BAR `index`.
    pub fn bar_address(&self, index: usize) -> Option<u64> {
        let info = self.bar(index)?;
        let low = u64::from(self.regs[BAR0_REG + index] & !0xf);
        let high = if info.is_64bit {
            u64::from(self.regs[BAR0_REG + index + 1]) << 32
        } else {
            0
        };
        Some(high | low)
    }

    /// Programs BAR `index` as firmware would before the OS runs.
    pub fn set_bar_address(&mut self, index: usize, addr: u64) -> Result<(), ConfigSpaceError> {
        let info = self.bar(index).ok_or(ConfigSpaceError::BadBar(index))?;
        let reg = BAR0_REG + index;
        self.regs[reg] = (self.regs[reg] & 0xf) | (addr as u32 & !0xf);
        if info.is_64bit {
            self.regs[reg + 1] = (addr >> 32) as u32;
        }
        Ok(())
    }

    pub fn command(&self) -> u16 {
        self.regs[COMMAND_REG] as u16
    }

    pub fn set_command(&mut self, cmd: u16) {
        self.regs[COMMAND_REG] = (self.regs[COMMAND_REG] & 0xffff_0000) | u32::from(cmd);
    }

    /// BARs the function decodes right now: memory decoding on, address assigned and sane.
    pub fn decoded_bars(&self) -> [Option<u64>; NUM_BARS] {
        let mut out = [None; NUM_BARS];
        if self.command() & COMMAND_MEMORY == 0 {
            return out;
        }
        for (i, slot) in out.iter_mut().enumerate() {
            let (Some(info), Some(addr)) = (self.bar(i), self.bar_address(i)) else {
                continue;
            };
            if addr != 0 && addr.checked_add(info.size).is_some() {
                *slot = Some(addr);
            }
        }
        out
    }

    /// Appends a capability: `body` starts with the ID byte and a placeholder next pointer;
    /// `writable` (same length) marks the bits the guest may change. Returns its offset.
    pub fn add_capability(
        &mut self,
        body: &[u8],
        writable: &[u8],
    ) -> Result<usize, ConfigSpaceError> {
        let offset = self.next_cap;
        let end = offset + body.len();
        if body.len() < 2 || writable.len() != body.len() || end > LEGACY_SPACE_END {
            return Err(ConfigSpaceError::CapabilitySpace);
        }
        for (i, (b, w)) in body.iter().zip(writable).enumerate() {
            self.set_byte(offset + i, *b);
            self.set_mask_byte(offset + i, *w);
        }
        self.set_byte(offset + 1, 0);
        match self.last_cap_next {
            Some(prev) => self.set_byte(prev, offset as u8),
            None => {
                self.regs[CAP_PTR_REG] = offset as u32;
                self.regs[COMMAND_REG] |= STATUS_CAP_LIST;
            }
        }
        self.last_cap_next = Some(offset + 1);
        self.next_cap = end.next_multiple_of(4);
        Ok(offset)
    }

    fn set_byte(&mut self, offset: usize, v: u8) {
        let shift = (offset % 4) * 8;
        let r = &mut self.regs[offset / 4];
        *r = (*r & !(0xff << shift)) | (u32::from(v) << shift);
    }

    fn set_mask_byte(&mut self, offset: usize, v: u8) {
        let shift = (offset % 4) * 8;
        let r = &mut self.wmask[offset / 4];
        *r = (*r & !(0xff << shift)) | (u32::from(v) << shift);
    }

    /// Reads dword register `reg`; registers past the space read as all ones.
    pub fn read_reg(&self, reg: usize) -> u32 {
        self.regs.get(reg).copied().unwrap_or(0xffff_ffff)
    }

    /// Reads `data.len()` bytes at byte `offset`.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let off = offset + i;
            *b = match self.regs.get(off / 4) {
                Some(r) => (r >> ((off % 4) * 8)) as u8,
                None => 0xff,
            };
        }
    }

    /// Writes bytes, keeping read-only bits.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        for (i, v) in data.iter().enumerate() {
            let off = offset + i;
            let reg = off / 4;
            if reg >= REGS {
                return;
            }
            let shift = (off % 4) * 8;
            let mask = (self.wmask[reg] >> shift) & 0xff;
            let old = (self.regs[reg] >> shift) & 0xff;
            let new = (old & !mask) | (u32::from(*v) & mask);
            self.regs[reg] = (self.regs[reg] & !(0xff << shift)) | (new << shift);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> PciHeader {
        PciHeader {
            vendor_id: 0x1af4,
            device_id: 0x1042,
            revision: 1,
            class: (0x01, 0x80, 0x00),
            subsystem_vendor_id: 0x1af4,
            subsystem_id: 0x40,
        }
    }

    fn w32(cs: &mut PciConfigSpace, off: usize, v: u32) {
        cs.write(off, &v.to_le_bytes());
    }

    #[test]
    fn identity_registers_are_read_only() {
        let mut cs = PciConfigSpace::new(&header());
        assert_eq!(cs.read_reg(0), 0x1042_1af4);
        w32(&mut cs, 0, 0xdead_beef);
        assert_eq!(cs.read_reg(0), 0x1042_1af4);
        assert_eq!(cs.read_reg(2) >> 8, 0x01_8000);
        assert_eq!(cs.read_reg(2000), 0xffff_ffff);
    }

    #[test]
    fn bar_size_probe_and_relocation() {
        let mut cs = PciConfigSpace::new(&header());
        cs.add_bar(
            0,
            BarInfo {
                size: 0x8000,
                is_64bit: true,
                prefetchable: false,
            },
        )
        .unwrap();
        cs.set_bar_address(0, 0xc000_0000).unwrap();
        assert_eq!(cs.read_reg(4), 0xc000_0004);
        // Size probe: write all ones, read back the mask.
        w32(&mut cs, 0x10, 0xffff_ffff);
        w32(&mut cs, 0x14, 0xffff_ffff);
        assert_eq!(cs.read_reg(4), 0xffff_8004);
        assert_eq!(cs.read_reg(5), 0xffff_ffff);
        // Move it.
        w32(&mut cs, 0x10, 0xc001_0000);
        w32(&mut cs, 0x14, 0x1);
        assert_eq!(cs.bar_address(0), Some(0x1_c001_0000));
        // Unaligned addresses lose their low bits.
        w32(&mut cs, 0x10, 0xc001_1234);
        assert_eq!(cs.bar_address(0), Some(0x1_c001_0000));
    }

    #[test]
    fn decoded_bars_follow_the_command_register() {
        let mut cs = PciConfigSpace::new(&header());
        cs.add_bar(
            0,
            BarInfo {
                size: 0x1000,
                is_64bit: false,
                prefetchable: false,
            },
        )
        .unwrap();
        cs.set_bar_address(0, 0xc000_0000).unwrap();
        assert_eq!(cs.decoded_bars()[0], None);
        cs.write(4, &COMMAND_MEMORY.to_le_bytes());
        assert_eq!(cs.decoded_bars()[0], Some(0xc000_0000));
        // Status bits cannot be set by the guest.
        w32(&mut cs, 4, 0xffff_ffff);
        assert_eq!(cs.read_reg(1) >> 16, 0);
    }

    #[test]
    fn bad_bars_are_refused() {
        let mut cs = PciConfigSpace::new(&header());
        let b = BarInfo {
            size: 0x1000,
            is_64bit: true,
            prefetchable: false,
        };
        assert_eq!(cs.add_bar(5, b), Err(ConfigSpaceError::BadBar(5)));
        cs.add_bar(0, b).unwrap();
        assert_eq!(cs.add_bar(1, b), Err(ConfigSpaceError::BadBar(1)));
        assert_eq!(
            cs.add_bar(2, BarInfo { size: 0x1800, ..b }),
            Err(ConfigSpaceError::BarSize(0x1800))
        );
    }

    #[test]
    fn capabilities_are_chained_with_write_masks() {
        let mut cs = PciConfigSpace::new(&header());
        let a = cs.add_capability(&[0x09, 0, 16, 1], &[0, 0, 0, 0]).unwrap();
        let b = cs
            .add_capability(&[0x11, 0, 0x01, 0x00], &[0, 0, 0, 0xc0])
            .unwrap();
        assert_eq!(a, 0x40);
        assert_eq!(cs.read_reg(13) & 0xff, 0x40);
        assert_ne!(cs.read_reg(1) & (1 << 20), 0);
        let mut next = [0u8];
        cs.read(a + 1, &mut next);
        assert_eq!(next[0] as usize, b);
        cs.read(b + 1, &mut next);
        assert_eq!(next[0], 0);
        cs.write(b + 2, &[0xff, 0xff]);
        let mut ctl = [0u8; 2];
        cs.read(b + 2, &mut ctl);
        assert_eq!(u16::from_le_bytes(ctl), 0xc001);
    }
}
