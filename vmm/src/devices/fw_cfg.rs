//! QEMU's firmware configuration device (QEMU docs/specs/fw_cfg.rst), which is how the CoreOS
//! family's Ignition gets its config on the `qemu` platform: the guest lists the file
//! directory and reads `opt/org.flatcar-linux/config` (Flatcar) or `opt/com.coreos/config`
//! (Fedora CoreOS). Linux's qemu_fw_cfg driver binds to the `QEMU0002` ACPI device
//! ([`dsdt_entry`]) and exposes the files under /sys/firmware/qemu_fw_cfg.
//!
//! Interface at [`ports::FW_CFG_SELECTOR`]: a 16-bit selector register (writing it picks an
//! item and rewinds), an 8-bit data register at +1 (each read returns the next byte, zero
//! past the end), and the DMA address register at +4 (two big-endian 32-bit halves; writing
//! the low half at +8 starts the transfer; reading the register gives "QEMU CFG"). A DMA
//! request is a 16-byte `FWCfgDmaAccess` in guest memory {be32 control, be32 length, be64
//! address}; every guest address is checked against guest memory before it is touched, and
//! a request that fails gets the ERROR bit, never a crash. Items are read-only.

use std::collections::BTreeMap;

use acpi_tables::Aml;
use acpi_tables::aml::{Device, IO, Name, ResourceTemplate};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::bus::BusDevice;
use crate::layout::ports;
use crate::memory::GuestMemoryMmap;

pub const SELECTOR_SIGNATURE: u16 = 0x0000;
pub const SELECTOR_ID: u16 = 0x0001;
pub const SELECTOR_NB_CPUS: u16 = 0x0005;
pub const SELECTOR_FILE_DIR: u16 = 0x0019;
pub const SELECTOR_FILE_FIRST: u16 = 0x0020;
/// FW_CFG_ID bits: the traditional interface and DMA.
const ID_TRADITIONAL: u32 = 1;
const ID_DMA: u32 = 2;
/// "QEMU CFG", what reading the DMA register returns (big endian).
pub const DMA_SIGNATURE: u64 = 0x5145_4d55_2043_4647;
/// A file name's field in the directory, NUL included.
pub const FILE_NAME_LEN: usize = 56;
/// The most a DMA read copies at once, whatever length the guest asks for.
const DMA_CHUNK: usize = 4096;
/// Where the CoreOS family looks for the Ignition config.
pub const IGNITION_FILES: [&str; 2] = ["opt/com.coreos/config", "opt/org.flatcar-linux/config"];

/// FWCfgDmaAccess control bits.
pub mod dma {
    pub const ERROR: u32 = 0x01;
    pub const READ: u32 = 0x02;
    pub const SKIP: u32 = 0x04;
    pub const SELECT: u32 = 0x08;
    pub const WRITE: u32 = 0x10;
}

const OFF_SELECTOR: u64 = 0;
const OFF_DATA: u64 = 1;
const OFF_DMA_HIGH: u64 = 4;
const OFF_DMA_LOW: u64 = 8;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FwCfgError {
    #[error("fw_cfg file name '{0}' is empty or longer than {max} bytes", max = FILE_NAME_LEN - 1)]
    Name(String),
    #[error("fw_cfg file '{0}' is added twice")]
    Duplicate(String),
    #[error("fw_cfg file '{0}' is larger than 4 GiB")]
    TooLarge(String),
}

/// Why a DMA request failed (logged; the guest sees the ERROR bit).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DmaError {
    #[error("the FWCfgDmaAccess at {0:#x} is outside guest memory")]
    Descriptor(u64),
    #[error("the buffer at {addr:#x} + {len} is outside guest memory")]
    Buffer { addr: u64, len: u32 },
    #[error("write requested; fw_cfg items are read-only")]
    Write,
}

pub struct FwCfg {
    /// Items by selector.
    items: BTreeMap<u16, Vec<u8>>,
    files: Vec<(String, u16)>,
    selector: u16,
    offset: usize,
    dma_high: u32,
    mem: GuestMemoryMmap,
}

impl FwCfg {
    pub fn new(mem: GuestMemoryMmap, cpus: u8) -> Self {
        let mut items = BTreeMap::new();
        items.insert(SELECTOR_SIGNATURE, b"QEMU".to_vec());
        items.insert(
            SELECTOR_ID,
            (ID_TRADITIONAL | ID_DMA).to_le_bytes().to_vec(),
        );
        items.insert(SELECTOR_NB_CPUS, u16::from(cpus).to_le_bytes().to_vec());
        let mut f = FwCfg {
            items,
            files: Vec::new(),
            selector: 0,
            offset: 0,
            dma_high: 0,
            mem,
        };
        f.rebuild_dir();
        f
    }

    /// Adds a named file (a blob the guest finds through the directory).
    pub fn add_file(&mut self, name: &str, data: Vec<u8>) -> Result<u16, FwCfgError> {
        if name.is_empty() || name.len() >= FILE_NAME_LEN {
            return Err(FwCfgError::Name(name.to_owned()));
        }
        if self.files.iter().any(|(n, _)| n == name) {
            return Err(FwCfgError::Duplicate(name.to_owned()));
        }
        if u32::try_from(data.len()).is_err() {
            return Err(FwCfgError::TooLarge(name.to_owned()));
        }
        let selector = SELECTOR_FILE_FIRST + self.files.len() as u16;
        self.items.insert(selector, data);
        self.files.push((name.to_owned(), selector));
        self.rebuild_dir();
        Ok(selector)
    }

    /// The Ignition config under both names the CoreOS family reads.
    pub fn add_ignition(&mut self, config: &[u8]) -> Result<(), FwCfgError> {
        for name in IGNITION_FILES {
            self.add_file(name, config.to_vec())?;
        }
        Ok(())
    }

    pub fn file_names(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|(n, _)| n.as_str())
    }

    /// The directory: be32 count, then {be32 size, be16 select, be16 reserved, name[56]},
    /// sorted by name as QEMU does.
    fn rebuild_dir(&mut self) {
        let mut files = self.files.clone();
        files.sort();
        let mut dir = (files.len() as u32).to_be_bytes().to_vec();
        for (name, sel) in &files {
            let size = self.items.get(sel).map_or(0, Vec::len) as u32;
            dir.extend_from_slice(&size.to_be_bytes());
            dir.extend_from_slice(&sel.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut n = [0u8; FILE_NAME_LEN];
            n[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&n);
        }
        self.items.insert(SELECTOR_FILE_DIR, dir);
    }

    fn select(&mut self, selector: u16) {
        if selector == SELECTOR_FILE_DIR {
            tracing::debug!(target: "fw_cfg", "guest reads the fw_cfg file directory");
        } else if let Some((name, _)) = self.files.iter().find(|(_, s)| *s == selector) {
            tracing::debug!(target: "fw_cfg", "guest selects fw_cfg file {name}");
        }
        self.selector = selector;
        self.offset = 0;
    }

    fn item(&self) -> &[u8] {
        self.items.get(&self.selector).map_or(&[], Vec::as_slice)
    }

    /// Reads the next bytes of the selected item (zeros past its end).
    fn read_data(&mut self, out: &mut [u8]) {
        let item = self
            .items
            .get(&self.selector)
            .map_or(&[][..], Vec::as_slice);
        let start = self.offset.min(item.len());
        let n = out.len().min(item.len() - start);
        out[..n].copy_from_slice(&item[start..start + n]);
        out[n..].fill(0);
        self.offset = self.offset.saturating_add(out.len());
    }

    /// Runs the DMA request whose descriptor is at `addr` and writes back its status.
    pub fn dma(&mut self, addr: u64) -> Result<(), DmaError> {
        let desc = GuestAddress(addr);
        let result = self.dma_inner(desc);
        let control = match &result {
            Ok(()) => 0u32,
            Err(e) => {
                tracing::debug!(target: "fw_cfg", "DMA request at {addr:#x} failed: {e}");
                dma::ERROR
            }
        };
        if !matches!(result, Err(DmaError::Descriptor(_))) {
            // The descriptor was readable, so it is writable too (guest RAM).
            let _ = self.mem.write_slice(&control.to_be_bytes(), desc);
        }
        result
    }

    fn dma_inner(&mut self, desc: GuestAddress) -> Result<(), DmaError> {
        let mut raw = [0u8; 16];
        if desc.0.checked_add(16).is_none() || !self.mem.check_range(desc, 16) {
            return Err(DmaError::Descriptor(desc.0));
        }
        self.mem
            .read_slice(&mut raw, desc)
            .map_err(|_| DmaError::Descriptor(desc.0))?;
        let control = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let len = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]);
        let addr = u64::from_be_bytes([
            raw[8], raw[9], raw[10], raw[11], raw[12], raw[13], raw[14], raw[15],
        ]);
        if control & dma::SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        if control & dma::WRITE != 0 {
            return Err(DmaError::Write);
        }
        if control & dma::READ != 0 {
            let target = GuestAddress(addr);
            let fits = addr.checked_add(u64::from(len)).is_some()
                && (len == 0 || self.mem.check_range(target, len as usize));
            if !fits {
                return Err(DmaError::Buffer { addr, len });
            }
            // In bounded chunks: the guest picks len, up to its whole memory.
            let mut buf = [0u8; DMA_CHUNK];
            let mut done = 0usize;
            while done < len as usize {
                let n = (len as usize - done).min(DMA_CHUNK);
                self.read_data(&mut buf[..n]);
                self.mem
                    .write_slice(&buf[..n], GuestAddress(addr + done as u64))
                    .map_err(|_| DmaError::Buffer { addr, len })?;
                done += n;
            }
        } else if control & dma::SKIP != 0 {
            self.offset = self.offset.saturating_add(len as usize);
        }
        Ok(())
    }

    /// Bytes of the selected item left to read (for tests and status).
    pub fn remaining(&self) -> usize {
        self.item().len().saturating_sub(self.offset)
    }
}

impl BusDevice for FwCfg {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        match offset {
            OFF_DATA => self.read_data(data),
            // The DMA register reads as the signature, big endian, in 32-bit halves.
            OFF_DMA_HIGH..=11 => {
                let sig = DMA_SIGNATURE.to_be_bytes();
                let start = (offset - OFF_DMA_HIGH) as usize;
                for (i, b) in data.iter_mut().enumerate() {
                    *b = sig.get(start + i).copied().unwrap_or(0);
                }
            }
            _ => data.fill(0),
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        match (offset, data.len()) {
            (OFF_SELECTOR, 2) => self.select(u16::from_le_bytes([data[0], data[1]])),
            (OFF_DMA_HIGH, 4) => {
                self.dma_high = u32::from_be_bytes([data[0], data[1], data[2], data[3]])
            }
            (OFF_DMA_LOW, 4) => {
                let low = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                let addr = (u64::from(std::mem::take(&mut self.dma_high)) << 32) | u64::from(low);
                let _ = self.dma(addr);
            }
            // Data writes are deprecated and ignored, as in QEMU.
            _ => {}
        }
    }
}

/// The ACPI device Linux's qemu_fw_cfg driver binds to, with the ports it uses.
pub fn dsdt_entry(sink: &mut Vec<u8>) {
    let io = IO::new(
        ports::FW_CFG_SELECTOR,
        ports::FW_CFG_SELECTOR,
        1,
        ports::FW_CFG_LEN as u8,
    );
    let crs = ResourceTemplate::new(vec![&io]);
    Device::new(
        "_SB_.FWCF".into(),
        vec![
            &Name::new("_HID".into(), &"QEMU0002"),
            // Present, enabled, functioning, not shown in a UI (what QEMU says).
            &Name::new("_STA".into(), &0x0bu8),
            &Name::new("_CRS".into(), &crs),
        ],
    )
    .to_aml_bytes(sink);
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = ports::FW_CFG_SELECTOR as u64;

    fn device() -> (FwCfg, GuestMemoryMmap) {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut f = FwCfg::new(mem.clone(), 2);
        f.add_ignition(b"{\"ignition\":{\"version\":\"3.3.0\"}}")
            .unwrap();
        (f, mem)
    }

    fn select(f: &mut FwCfg, sel: u16) {
        f.write(BASE, OFF_SELECTOR, &sel.to_le_bytes());
    }

    fn read_bytes(f: &mut FwCfg, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        // As `rep insb` arrives: one access of n bytes.
        f.read(BASE, OFF_DATA, &mut v);
        v
    }

    /// What a guest driver does: signature, features, then the directory, then a file.
    #[test]
    fn guest_finds_the_ignition_files_through_the_directory() {
        let (mut f, _mem) = device();
        select(&mut f, SELECTOR_SIGNATURE);
        assert_eq!(read_bytes(&mut f, 4), b"QEMU");
        select(&mut f, SELECTOR_ID);
        assert_eq!(read_bytes(&mut f, 4), 3u32.to_le_bytes());
        select(&mut f, SELECTOR_FILE_DIR);
        let count = u32::from_be_bytes(read_bytes(&mut f, 4).try_into().unwrap());
        assert_eq!(count, 2);
        let mut found = Vec::new();
        for _ in 0..count {
            let e = read_bytes(&mut f, 64);
            let size = u32::from_be_bytes(e[0..4].try_into().unwrap());
            let sel = u16::from_be_bytes(e[4..6].try_into().unwrap());
            let name =
                String::from_utf8(e[8..].split(|b| *b == 0).next().unwrap().to_vec()).unwrap();
            found.push((name, sel, size));
        }
        assert_eq!(found[0].0, "opt/com.coreos/config");
        assert_eq!(found[1].0, "opt/org.flatcar-linux/config");
        for (_, sel, size) in &found {
            select(&mut f, *sel);
            let data = read_bytes(&mut f, *size as usize + 3);
            assert_eq!(
                &data[..*size as usize],
                b"{\"ignition\":{\"version\":\"3.3.0\"}}"
            );
            assert_eq!(&data[*size as usize..], &[0, 0, 0], "zeros past the end");
        }
        let mut sig = [0u8; 8];
        f.read(BASE, OFF_DMA_HIGH, &mut sig[..4]);
        f.read(BASE, OFF_DMA_LOW, &mut sig[4..]);
        assert_eq!(&sig, b"QEMU CFG");
    }

    fn dma_request(mem: &GuestMemoryMmap, at: u64, control: u32, len: u32, addr: u64) {
        let mut d = control.to_be_bytes().to_vec();
        d.extend_from_slice(&len.to_be_bytes());
        d.extend_from_slice(&addr.to_be_bytes());
        mem.write_slice(&d, GuestAddress(at)).unwrap();
    }

    fn start_dma(f: &mut FwCfg, at: u64) {
        f.write(BASE, OFF_DMA_HIGH, &((at >> 32) as u32).to_be_bytes());
        f.write(BASE, OFF_DMA_LOW, &(at as u32).to_be_bytes());
    }

    fn control(mem: &GuestMemoryMmap, at: u64) -> u32 {
        u32::from_be_bytes(mem.read_obj::<[u8; 4]>(GuestAddress(at)).unwrap())
    }

    #[test]
    fn dma_select_skip_and_read() {
        let (mut f, mem) = device();
        let sel = SELECTOR_FILE_FIRST + 1;
        dma_request(
            &mem,
            0x1000,
            (u32::from(sel) << 16) | dma::SELECT | dma::SKIP,
            2,
            0,
        );
        start_dma(&mut f, 0x1000);
        assert_eq!(control(&mem, 0x1000), 0);
        dma_request(&mem, 0x1000, dma::READ, 40, 0x2000);
        start_dma(&mut f, 0x1000);
        assert_eq!(control(&mem, 0x1000), 0);
        let mut got = [0u8; 40];
        mem.read_slice(&mut got, GuestAddress(0x2000)).unwrap();
        let want = b"{\"ignition\":{\"version\":\"3.3.0\"}}";
        assert_eq!(&got[..want.len() - 2], &want[2..]);
        assert!(got[want.len() - 2..].iter().all(|b| *b == 0));
    }

    #[test]
    fn a_dma_read_longer_than_a_chunk_copies_the_whole_item_then_zeros() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut f = FwCfg::new(mem.clone(), 1);
        let data: Vec<u8> = (0..3 * DMA_CHUNK + 123).map(|i| (i % 251) as u8).collect();
        f.add_file("opt/big", data.clone()).unwrap();
        let sel = u32::from(SELECTOR_FILE_FIRST) << 16;
        let len = data.len() + DMA_CHUNK + 7;
        mem.write_slice(&vec![0xaa; len + 1], GuestAddress(0x10000))
            .unwrap();
        dma_request(
            &mem,
            0x1000,
            sel | dma::SELECT | dma::READ,
            len as u32,
            0x10000,
        );
        start_dma(&mut f, 0x1000);
        assert_eq!(control(&mem, 0x1000), 0);
        let mut got = vec![0u8; len + 1];
        mem.read_slice(&mut got, GuestAddress(0x10000)).unwrap();
        assert_eq!(&got[..data.len()], &data[..]);
        assert!(
            got[data.len()..len].iter().all(|b| *b == 0),
            "zeros past the end"
        );
        assert_eq!(got[len], 0xaa, "nothing written past the buffer");
    }

    #[test]
    fn dma_outside_guest_memory_gets_the_error_bit_and_nothing_is_written() {
        let (mut f, mem) = device();
        let sel = u32::from(SELECTOR_FILE_FIRST) << 16;
        // Buffer beyond RAM, buffer straddling the end, buffer wrapping the address space.
        for (addr, len) in [
            (0x4000_0000u64, 16u32),
            (0xf_fff0, 0x100),
            (u64::MAX - 4, 16),
        ] {
            dma_request(&mem, 0x1000, sel | dma::SELECT | dma::READ, len, addr);
            start_dma(&mut f, 0x1000);
            assert_eq!(control(&mem, 0x1000), dma::ERROR, "{addr:#x}+{len}");
        }
        assert_eq!(
            mem.read_obj::<[u8; 16]>(GuestAddress(0xf_fff0)).unwrap(),
            [0; 16]
        );
        // A descriptor outside memory: nothing to report into, nothing happens.
        assert_eq!(
            f.dma(0x7_0000_0000),
            Err(DmaError::Descriptor(0x7_0000_0000))
        );
        assert_eq!(f.dma(u64::MAX - 8), Err(DmaError::Descriptor(u64::MAX - 8)));
        // Writes are refused.
        dma_request(&mem, 0x1000, sel | dma::SELECT | dma::WRITE, 4, 0x2000);
        start_dma(&mut f, 0x1000);
        assert_eq!(control(&mem, 0x1000), dma::ERROR);
        // The device still works.
        dma_request(&mem, 0x1000, sel | dma::SELECT | dma::READ, 4, 0x2000);
        start_dma(&mut f, 0x1000);
        assert_eq!(control(&mem, 0x1000), 0);
    }

    #[test]
    fn names_are_checked() {
        let (mut f, _) = device();
        assert_eq!(
            f.add_file("opt/com.coreos/config", vec![]),
            Err(FwCfgError::Duplicate("opt/com.coreos/config".into()))
        );
        assert!(matches!(
            f.add_file(&"x".repeat(56), vec![]),
            Err(FwCfgError::Name(_))
        ));
        assert!(matches!(f.add_file("", vec![]), Err(FwCfgError::Name(_))));
        f.add_file(&"y".repeat(55), vec![1]).unwrap();
    }

    #[test]
    fn unknown_selectors_and_odd_accesses_read_zeros() {
        let (mut f, _) = device();
        select(&mut f, 0x7777);
        assert_eq!(read_bytes(&mut f, 4), [0; 4]);
        // A one-byte write to the selector is not a selection.
        f.write(BASE, OFF_SELECTOR, &[0]);
        assert_eq!(read_bytes(&mut f, 2), [0; 2]);
        let mut b = [0xffu8; 2];
        f.read(BASE, 2, &mut b);
        assert_eq!(b, [0, 0]);
    }

    #[test]
    fn dsdt_entry_names_qemu0002_with_its_ports() {
        let mut aml = Vec::new();
        dsdt_entry(&mut aml);
        let has = |n: &[u8]| aml.windows(n.len()).any(|w| w == n);
        assert!(has(b"QEMU0002"));
        // IO(Decode16, 0x510, 0x510, 1, 12)
        assert!(has(&[0x47, 0x01, 0x10, 0x05, 0x10, 0x05, 0x01, 0x0c]));
    }
}
