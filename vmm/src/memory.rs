//! Guest RAM: anonymous mappings laid out around the 32-bit PCI hole, registered with KVM.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::layout::{MEM_32BIT_GAP_START, RAM_64BIT_START};

pub type GuestMemoryMmap = vm_memory::GuestMemoryMmap<()>;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("cannot map {size} MiB of guest memory: {why}")]
    Map { size: u64, why: String },
    #[error("KVM rejected guest memory slot {slot}: {source}")]
    Slot {
        slot: u32,
        source: kvm_ioctls::Error,
    },
}

/// The RAM ranges for `size` bytes: below the hole first, the rest from 4 GiB up.
pub fn ram_ranges(size: u64) -> Vec<(GuestAddress, u64)> {
    let low = size.min(MEM_32BIT_GAP_START);
    let mut ranges = vec![(GuestAddress(0), low)];
    if size > low {
        ranges.push((GuestAddress(RAM_64BIT_START), size - low));
    }
    ranges
}

/// Maps guest RAM. Pages are only backed when touched (MAP_NORESERVE anonymous memory).
pub fn create_guest_memory(size: u64) -> Result<GuestMemoryMmap, MemoryError> {
    let ranges: Vec<(GuestAddress, usize)> = ram_ranges(size)
        .into_iter()
        .map(|(a, s)| usize::try_from(s).map(|s| (a, s)))
        .collect::<Result<_, _>>()
        .map_err(|_| MemoryError::Map {
            size: size >> 20,
            why: "size does not fit the host address space".to_owned(),
        })?;
    GuestMemoryMmap::from_ranges(&ranges).map_err(|e| MemoryError::Map {
        size: size >> 20,
        why: e.to_string(),
    })
}

/// Registers every RAM region as a KVM memory slot.
pub fn register_with_kvm(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), MemoryError> {
    for (slot, region) in mem.iter().enumerate() {
        let slot = slot as u32;
        let host = region.as_ptr() as u64;
        let region_desc = kvm_userspace_memory_region {
            slot,
            guest_phys_addr: region.start_addr().raw_value(),
            memory_size: region.len(),
            userspace_addr: host,
            flags: 0,
        };
        // SAFETY: the region is a live mapping owned by `mem`, which the VMM keeps alive for as
        // long as the VM exists; KVM only accesses [userspace_addr, +memory_size).
        unsafe { vm.set_user_memory_region(region_desc) }
            .map_err(|source| MemoryError::Slot { slot, source })?;
    }
    Ok(())
}

/// Highest guest RAM address below the 32-bit hole, plus one.
pub fn low_ram_end(mem: &GuestMemoryMmap) -> u64 {
    mem.iter()
        .map(|r| r.start_addr().raw_value() + r.len())
        .filter(|end| *end <= MEM_32BIT_GAP_START)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_vm_fits_below_the_hole() {
        assert_eq!(ram_ranges(512 << 20), vec![(GuestAddress(0), 512 << 20)]);
    }

    #[test]
    fn large_vm_continues_above_4g() {
        let r = ram_ranges(4 << 30);
        assert_eq!(r[0], (GuestAddress(0), 3 << 30));
        assert_eq!(r[1], (GuestAddress(4 << 30), 1 << 30));
    }

    #[test]
    fn mapping_matches_ranges() {
        let mem = create_guest_memory(64 << 20).unwrap();
        assert_eq!(mem.num_regions(), 1);
        assert_eq!(low_ram_end(&mem), 64 << 20);
    }
}
