//! The e820 memory map handed to the guest (boot_params for Linux, the PVH memmap otherwise).

use crate::layout::{
    HIMEM_START, LOW_RAM_END, MEM_32BIT_GAP_START, PCI_ECAM_SIZE, PCI_ECAM_START, RAM_64BIT_START,
};

pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

/// The map for a guest with `mem_size` bytes of RAM laid out by [`crate::memory::ram_ranges`].
/// The legacy BIOS area (where the ACPI and MP tables live) is simply left out, which guests
/// treat as reserved; ECAM is marked reserved explicitly because Linux wants to see that before
/// it trusts the MCFG table.
pub fn e820_map(mem_size: u64) -> Vec<E820Entry> {
    let mut map = vec![E820Entry {
        addr: 0,
        size: LOW_RAM_END,
        kind: E820_RAM,
    }];
    let low_end = mem_size.min(MEM_32BIT_GAP_START);
    if low_end > HIMEM_START {
        map.push(E820Entry {
            addr: HIMEM_START,
            size: low_end - HIMEM_START,
            kind: E820_RAM,
        });
    }
    map.push(E820Entry {
        addr: PCI_ECAM_START,
        size: PCI_ECAM_SIZE,
        kind: E820_RESERVED,
    });
    if mem_size > low_end {
        map.push(E820Entry {
            addr: RAM_64BIT_START,
            size: mem_size - low_end,
            kind: E820_RAM,
        });
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram_total(map: &[E820Entry]) -> u64 {
        map.iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum()
    }

    #[test]
    fn map_for_512_mib_has_the_low_and_high_blocks() {
        let map = e820_map(512 << 20);
        assert_eq!(
            map[0],
            E820Entry {
                addr: 0,
                size: 0x9fc00,
                kind: E820_RAM
            }
        );
        assert_eq!(
            map[1],
            E820Entry {
                addr: 0x10_0000,
                size: (512 << 20) - 0x10_0000,
                kind: E820_RAM
            }
        );
        assert!(map.iter().all(|e| e.addr + e.size <= 0x1_0000_0000));
    }

    #[test]
    fn map_for_6_gib_splits_around_the_pci_hole() {
        let size = 6u64 << 30;
        let map = e820_map(size);
        let high = map.iter().find(|e| e.addr == 0x1_0000_0000).unwrap();
        assert_eq!(high.size, 3 << 30);
        // Only the legacy hole (0x9fc00..1 MiB) is lost.
        assert_eq!(ram_total(&map), size - (0x10_0000 - 0x9fc00));
        // No RAM inside the 32-bit hole.
        assert!(!map.iter().any(|e| e.kind == E820_RAM
            && e.addr < 0x1_0000_0000
            && e.addr + e.size > 0xc000_0000));
    }

    #[test]
    fn entries_do_not_overlap() {
        for size in [32u64 << 20, 3 << 30, 5 << 30] {
            let mut map = e820_map(size);
            map.sort_by_key(|e| e.addr);
            for w in map.windows(2) {
                assert!(w[0].addr + w[0].size <= w[1].addr, "{w:?}");
            }
        }
    }
}
