//! The fw_cfg device: port writes and reads and DMA requests in guest memory, checked step by
//! step against a model of the interface written here from QEMU's spec (docs/specs/fw_cfg.rst):
//! every port read returns what the model says, and after each DMA the only bytes of guest
//! memory that changed are the ones the model wrote (the buffer and the control word).
#![no_main]

use std::collections::BTreeMap;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress};
use vmctl_fuzz::{Mem, changed, in_memory, snapshot};
use vmm::bus::BusDevice;
use vmm::devices::fw_cfg::{self, FwCfg, dma};

const BASE: u64 = 0x510;

/// The device as the spec describes it.
struct Model {
    items: BTreeMap<u16, Vec<u8>>,
    selector: u16,
    offset: u64,
    dma_high: u32,
}

impl Model {
    fn new(cpus: u8, files: &[(String, Vec<u8>)]) -> Self {
        let mut items = BTreeMap::new();
        items.insert(0x0000, b"QEMU".to_vec());
        items.insert(0x0001, 3u32.to_le_bytes().to_vec());
        items.insert(0x0005, u16::from(cpus).to_le_bytes().to_vec());
        let mut sorted: Vec<(String, u16, usize)> = files
            .iter()
            .enumerate()
            .map(|(i, (n, d))| (n.clone(), 0x20 + i as u16, d.len()))
            .collect();
        sorted.sort();
        let mut dir = (files.len() as u32).to_be_bytes().to_vec();
        for (name, sel, size) in &sorted {
            dir.extend_from_slice(&(*size as u32).to_be_bytes());
            dir.extend_from_slice(&sel.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut n = name.as_bytes().to_vec();
            n.resize(56, 0);
            dir.extend_from_slice(&n);
        }
        items.insert(0x0019, dir);
        for (i, (_, d)) in files.iter().enumerate() {
            items.insert(0x20 + i as u16, d.clone());
        }
        Model {
            items,
            selector: 0,
            offset: 0,
            dma_high: 0,
        }
    }

    fn select(&mut self, s: u16) {
        self.selector = s;
        self.offset = 0;
    }

    fn next_bytes(&mut self, n: usize) -> Vec<u8> {
        let item = self.items.get(&self.selector).cloned().unwrap_or_default();
        let out = (0..n as u64)
            .map(|i| {
                usize::try_from(self.offset + i)
                    .ok()
                    .and_then(|at| item.get(at).copied())
                    .unwrap_or(0)
            })
            .collect();
        self.offset = self.offset.saturating_add(n as u64);
        out
    }

    /// Runs a DMA request at `at`; returns the writes it makes to guest memory, in order.
    fn dma(&mut self, mem: &Mem, at: u64) -> Vec<(u64, Vec<u8>)> {
        if !in_memory(at, 16) {
            return Vec::new();
        }
        let raw: [u8; 16] = mem.read_obj(GuestAddress(at)).expect("in memory");
        let control = u32::from_be_bytes(raw[0..4].try_into().expect("4"));
        let len = u32::from_be_bytes(raw[4..8].try_into().expect("4"));
        let addr = u64::from_be_bytes(raw[8..16].try_into().expect("8"));
        let mut writes = Vec::new();
        let mut ok = true;
        if control & dma::SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        if control & dma::WRITE != 0 {
            ok = false;
        } else if control & dma::READ != 0 {
            if in_memory(addr, u64::from(len)) {
                writes.push((addr, self.next_bytes(len as usize)));
            } else {
                ok = false;
            }
        } else if control & dma::SKIP != 0 {
            self.offset = self.offset.saturating_add(u64::from(len));
        }
        let status = if ok { 0u32 } else { dma::ERROR };
        writes.push((at, status.to_be_bytes().to_vec()));
        writes
    }
}

/// Starts a DMA at `at` with `start` (the device's register writes) and checks guest memory
/// against the model's writes.
fn checked_dma(mem: &Mem, model: &mut Model, at: u64, start: impl FnOnce()) {
    let mut expect = snapshot(mem);
    for (addr, bytes) in model.dma(mem, at) {
        for (i, b) in bytes.iter().enumerate() {
            let a = addr + i as u64;
            let region = expect
                .iter_mut()
                .find(|(s, v)| a >= *s && a < s + v.len() as u64)
                .expect("model writes only in memory");
            region.1[(a - region.0) as usize] = *b;
        }
    }
    start();
    let after = snapshot(mem);
    if after != expect {
        let diff = changed(&expect, &after);
        panic!(
            "DMA at {at:#x}: {} bytes differ from the model, first at {:#x}",
            diff.len(),
            diff[0]
        );
    }
}

fn offset_and_size(u: &mut Unstructured) -> Result<(u64, usize)> {
    Ok(match u.int_in_range(0u8..=5)? {
        0 => (0, 2),
        1 => (1, *u.choose(&[1usize, 2, 4, 8])?),
        2 => (4, 4),
        3 => (8, 4),
        _ => (u.int_in_range(0..=12)?, u.int_in_range(1..=8)?),
    })
}

fn run(u: &mut Unstructured) -> Result<()> {
    let mem = vmctl_fuzz::memory();
    let cpus: u8 = u.arbitrary()?;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..u.int_in_range(0..=3u8)? {
        let len = u.int_in_range(0..=300usize)?;
        files.push((format!("opt/file{i}"), u.bytes(len)?.to_vec()));
    }
    let mut dev = FwCfg::new(mem.clone(), cpus);
    for (n, d) in &files {
        dev.add_file(n, d.clone()).expect("valid fixture names");
    }
    let mut model = Model::new(cpus, &files);

    for _ in 0..u.int_in_range(1..=64u8)? {
        match u.int_in_range(0u8..=4)? {
            // Selector write: a known item, or any value.
            0 => {
                let sel = if u.arbitrary()? {
                    *u.choose(&[0u16, 1, 5, 0x19, 0x20, 0x21, 0x22, 0x23])?
                } else {
                    u.arbitrary()?
                };
                dev.write(BASE, 0, &sel.to_le_bytes());
                model.select(sel);
            }
            // A DMA request: descriptor and buffer placed mostly in memory.
            1 => {
                let at = vmctl_fuzz::addr(u)?;
                let control: u32 = if u.arbitrary()? {
                    u.arbitrary()?
                } else {
                    let sel = u32::from(*u.choose(&[0x19u16, 0x20, 0x21, 0xffff])?);
                    (sel << 16) | *u.choose(&[dma::READ | dma::SELECT, dma::SKIP, dma::READ])?
                };
                let len = vmctl_fuzz::len(u)? % 0x4000;
                let buf = vmctl_fuzz::addr(u)?;
                let mut desc = control.to_be_bytes().to_vec();
                desc.extend_from_slice(&len.to_be_bytes());
                desc.extend_from_slice(&buf.to_be_bytes());
                if in_memory(at, 16) {
                    mem.write_slice(&desc, GuestAddress(at)).expect("in memory");
                }
                model.dma_high = 0;
                checked_dma(&mem, &mut model, at, || {
                    dev.write(BASE, 4, &((at >> 32) as u32).to_be_bytes());
                    dev.write(BASE, 8, &(at as u32).to_be_bytes());
                });
            }
            // Data or DMA register reads.
            2 | 3 => {
                let (off, size) = offset_and_size(u)?;
                let mut got = vec![0xaau8; size];
                dev.read(BASE, off, &mut got);
                let want = match off {
                    1 => model.next_bytes(size),
                    4..=11 => {
                        let sig = fw_cfg::DMA_SIGNATURE.to_be_bytes();
                        (0..size)
                            .map(|i| sig.get(off as usize - 4 + i).copied().unwrap_or(0))
                            .collect()
                    }
                    _ => vec![0; size],
                };
                assert_eq!(got, want, "read of {size} at +{off}");
            }
            // Any other write: only the selector (2 bytes) and DMA halves (4 bytes) do anything.
            _ => {
                let (off, size) = offset_and_size(u)?;
                let bytes = u.bytes(size)?.to_vec();
                if bytes.len() < size {
                    return Ok(());
                }
                match (off, size) {
                    (0, 2) => {
                        dev.write(BASE, off, &bytes);
                        model.select(u16::from_le_bytes([bytes[0], bytes[1]]));
                    }
                    (4, 4) => {
                        dev.write(BASE, off, &bytes);
                        model.dma_high = u32::from_be_bytes(bytes[..4].try_into().expect("4"));
                    }
                    // Starts a DMA at whatever address the two halves make.
                    (8, 4) => {
                        let low = u32::from_be_bytes(bytes[..4].try_into().expect("4"));
                        let at =
                            (u64::from(std::mem::take(&mut model.dma_high)) << 32) | u64::from(low);
                        checked_dma(&mem, &mut model, at, || dev.write(BASE, off, &bytes));
                    }
                    _ => dev.write(BASE, off, &bytes),
                }
            }
        }
        assert_eq!(
            dev.remaining() as u64,
            (model.items.get(&model.selector).map_or(0, Vec::len) as u64)
                .saturating_sub(model.offset)
        );
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
