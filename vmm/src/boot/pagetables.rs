//! Identity-mapping page tables for the 64-bit Linux entry: the first 4 GiB in 2 MiB pages,
//! which covers the kernel, boot_params, the command line and the initrd wherever they land.

use vm_memory::{Bytes, GuestAddress};

use crate::layout::{PDE_START, PDPTE_START, PML4_START};
use crate::memory::GuestMemoryMmap;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const PAGE_SIZE_2M: u64 = 1 << 7;
/// Number of page directories (each maps 1 GiB).
const PAGE_DIRECTORIES: u64 = 4;

/// Writes PML4 -> PDPT -> 4 PDs and returns the CR3 value.
pub fn write_identity_map(mem: &GuestMemoryMmap) -> Result<u64, vm_memory::GuestMemoryError> {
    mem.write_obj(PDPTE_START | PRESENT | WRITABLE, GuestAddress(PML4_START))?;
    for pd in 0..PAGE_DIRECTORIES {
        let pd_addr = PDE_START + pd * 0x1000;
        mem.write_obj(
            pd_addr | PRESENT | WRITABLE,
            GuestAddress(PDPTE_START + pd * 8),
        )?;
        for i in 0..512u64 {
            let phys = (pd << 30) | (i << 21);
            mem.write_obj(
                phys | PRESENT | WRITABLE | PAGE_SIZE_2M,
                GuestAddress(pd_addr + i * 8),
            )?;
        }
    }
    Ok(PML4_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks the tables the way the MMU would for a 2 MiB mapping.
    fn translate(mem: &GuestMemoryMmap, cr3: u64, va: u64) -> Option<u64> {
        let pml4e: u64 = mem
            .read_obj(GuestAddress(cr3 + ((va >> 39) & 511) * 8))
            .ok()?;
        if pml4e & PRESENT == 0 {
            return None;
        }
        let pdpte: u64 = mem
            .read_obj(GuestAddress((pml4e & !0xfff) + ((va >> 30) & 511) * 8))
            .ok()?;
        if pdpte & PRESENT == 0 {
            return None;
        }
        let pde: u64 = mem
            .read_obj(GuestAddress((pdpte & !0xfff) + ((va >> 21) & 511) * 8))
            .ok()?;
        if pde & PRESENT == 0 || pde & PAGE_SIZE_2M == 0 {
            return None;
        }
        Some((pde & !0x1f_ffff) | (va & 0x1f_ffff))
    }

    #[test]
    fn first_4_gib_is_identity_mapped() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let cr3 = write_identity_map(&mem).unwrap();
        for va in [
            0u64,
            0x7000,
            0x100_0000,
            0x3fff_ffff,
            0xc000_1234,
            0xffff_ffff,
        ] {
            assert_eq!(translate(&mem, cr3, va), Some(va), "{va:#x}");
        }
        assert_eq!(translate(&mem, cr3, 0x1_0000_0000), None);
    }
}
