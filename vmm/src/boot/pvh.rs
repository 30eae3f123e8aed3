//! The PVH boot protocol's `hvm_start_info`, module list and memory map.

use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{Bytes, GuestAddress};

use super::e820::E820Entry;
use crate::layout::{PVH_MEMMAP, PVH_MODLIST, PVH_START_INFO};
use crate::memory::GuestMemoryMmap;

const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
/// Version 1 has the memory map fields.
const START_INFO_VERSION: u32 = 1;

/// Writes the start info (with the memory map and the initrd as module 0); returns its address
/// for EBX.
pub fn write_start_info(
    mem: &GuestMemoryMmap,
    cmdline_addr: u64,
    initrd: Option<(u64, u64)>,
    e820: &[E820Entry],
    rsdp_addr: u64,
) -> Result<u64, vm_memory::GuestMemoryError> {
    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: START_INFO_VERSION,
        cmdline_paddr: cmdline_addr,
        rsdp_paddr: rsdp_addr,
        memmap_paddr: PVH_MEMMAP,
        memmap_entries: e820.len() as u32,
        ..Default::default()
    };
    if let Some((paddr, size)) = initrd {
        mem.write_obj(
            hvm_modlist_entry {
                paddr,
                size,
                ..Default::default()
            },
            GuestAddress(PVH_MODLIST),
        )?;
        info.nr_modules = 1;
        info.modlist_paddr = PVH_MODLIST;
    }
    for (i, e) in e820.iter().enumerate() {
        let entry = hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        };
        let at = PVH_MEMMAP + (i * std::mem::size_of::<hvm_memmap_table_entry>()) as u64;
        mem.write_obj(entry, GuestAddress(at))?;
    }
    mem.write_obj(info, GuestAddress(PVH_START_INFO))?;
    Ok(PVH_START_INFO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::e820::e820_map;

    #[test]
    fn start_info_points_at_everything() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let map = e820_map(64 << 20);
        let at = write_start_info(&mem, 0x20000, Some((0x80_0000, 77)), &map, 0xe0000).unwrap();
        let info: hvm_start_info = mem.read_obj(GuestAddress(at)).unwrap();
        assert_eq!(info.magic, XEN_HVM_START_MAGIC_VALUE);
        assert_eq!(info.cmdline_paddr, 0x20000);
        assert_eq!(info.rsdp_paddr, 0xe0000);
        assert_eq!(info.memmap_entries as usize, map.len());
        assert_eq!(info.nr_modules, 1);
        let module: hvm_modlist_entry = mem.read_obj(GuestAddress(info.modlist_paddr)).unwrap();
        assert_eq!((module.paddr, module.size), (0x80_0000, 77));
        let last: hvm_memmap_table_entry = mem
            .read_obj(GuestAddress(
                info.memmap_paddr + 24 * (map.len() as u64 - 1),
            ))
            .unwrap();
        let expect = map.last().unwrap();
        assert_eq!(
            (last.addr, last.size, last.type_),
            (expect.addr, expect.size, expect.kind)
        );
    }
}
