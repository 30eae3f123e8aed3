//! Intel MultiProcessor Specification 1.4 tables, for kernels that do not read ACPI
//! (`acpi=off`, or built without it): one processor entry per vCPU, the IOAPIC, and identity
//! routing of the 16 ISA interrupts to IOAPIC pins 0-15, matching KVM's default routing.

use vm_memory::{Bytes, GuestAddress};

use crate::layout::{IOAPIC_START, LAPIC_START, MPTABLE_END, MPTABLE_START};
use crate::memory::GuestMemoryMmap;

const MPF_SIZE: usize = 16;
const MPC_HEADER_SIZE: usize = 44;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
/// Family 6 signature; Linux only prints it.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = 0x201; // FPU | APIC
const BUS_PCI: u8 = 0;
const BUS_ISA: u8 = 1;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
const ISA_IRQS: u8 = 16;

#[derive(Debug, thiserror::Error)]
pub enum MptableError {
    #[error("MP table for {0} CPUs does not fit its {1} byte area")]
    TooBig(u8, usize),
    #[error("cannot write the MP table to guest memory: {0}")]
    Write(#[from] vm_memory::GuestMemoryError),
}

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// The MP configuration table (header + entries) for `cpus` vCPUs; the IOAPIC gets ID `cpus`.
pub fn build_mpc_table(cpus: u8) -> Vec<u8> {
    let ioapic_id = cpus;
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    for id in 0..cpus {
        entries.push(0); // processor
        entries.push(id);
        entries.push(APIC_VERSION);
        entries.push(CPU_ENABLED | if id == 0 { CPU_BSP } else { 0 });
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    for (id, name) in [(BUS_PCI, b"PCI   "), (BUS_ISA, b"ISA   ")] {
        entries.push(1); // bus
        entries.push(id);
        entries.extend_from_slice(name);
        count += 1;
    }
    entries.push(2); // IOAPIC
    entries.push(ioapic_id);
    entries.push(IOAPIC_VERSION);
    entries.push(1); // enabled
    entries.extend_from_slice(&(IOAPIC_START as u32).to_le_bytes());
    count += 1;
    for irq in 0..ISA_IRQS {
        entries.push(3); // I/O interrupt
        entries.push(INT_TYPE_INT);
        entries.extend_from_slice(&0u16.to_le_bytes()); // conforms to the bus
        entries.push(BUS_ISA);
        entries.push(irq);
        entries.push(ioapic_id);
        entries.push(irq);
        count += 1;
    }
    for (kind, lint) in [(INT_TYPE_EXTINT, 0u8), (INT_TYPE_NMI, 1u8)] {
        entries.push(4); // local interrupt
        entries.push(kind);
        entries.extend_from_slice(&0u16.to_le_bytes());
        entries.push(BUS_ISA);
        entries.push(0);
        entries.push(0xff); // all local APICs
        entries.push(lint);
        count += 1;
    }

    let length = (MPC_HEADER_SIZE + entries.len()) as u16;
    let mut table = Vec::with_capacity(length as usize);
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&length.to_le_bytes());
    table.push(4); // spec revision 1.4
    table.push(0); // checksum, below
    table.extend_from_slice(b"RUSTVMM ");
    table.extend_from_slice(b"VMM         ");
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    table.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&(LAPIC_START as u32).to_le_bytes());
    table.extend_from_slice(&0u32.to_le_bytes()); // extended table length/checksum
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);
    table
}

/// The floating pointer structure that points at the configuration table.
pub fn build_floating_pointer(mpc_addr: u32) -> [u8; MPF_SIZE] {
    let mut mpf = [0u8; MPF_SIZE];
    mpf[0..4].copy_from_slice(b"_MP_");
    mpf[4..8].copy_from_slice(&mpc_addr.to_le_bytes());
    mpf[8] = 1; // length in 16-byte units
    mpf[9] = 4; // spec revision 1.4
    mpf[10] = checksum(&mpf);
    mpf
}

/// Writes the floating pointer at [`MPTABLE_START`] and the table right after it.
pub fn write_mptable(mem: &GuestMemoryMmap, cpus: u8) -> Result<(), MptableError> {
    let table = build_mpc_table(cpus);
    let room = (MPTABLE_END - MPTABLE_START) as usize;
    if MPF_SIZE + table.len() > room {
        return Err(MptableError::TooBig(cpus, room));
    }
    let mpc_addr = MPTABLE_START + MPF_SIZE as u64;
    mem.write_slice(
        &build_floating_pointer(mpc_addr as u32),
        GuestAddress(MPTABLE_START),
    )?;
    mem.write_slice(&table, GuestAddress(mpc_addr))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    #[test]
    fn checksums_are_valid() {
        let mpc = build_mpc_table(4);
        assert_eq!(sum(&mpc), 0);
        assert_eq!(sum(&build_floating_pointer(0xf0010)), 0);
    }

    #[test]
    fn one_processor_entry_per_cpu_with_the_bsp_first() {
        let cpus = 3;
        let mpc = build_mpc_table(cpus);
        assert_eq!(&mpc[0..4], b"PCMP");
        assert_eq!(u16::from_le_bytes([mpc[4], mpc[5]]) as usize, mpc.len());
        // Walk the entries like a guest would.
        let mut off = MPC_HEADER_SIZE;
        let mut procs = Vec::new();
        let mut ioapics = 0;
        let mut intsrc = 0;
        while off < mpc.len() {
            match mpc[off] {
                0 => {
                    procs.push((mpc[off + 1], mpc[off + 3]));
                    off += 20;
                }
                1..=4 => {
                    if mpc[off] == 2 {
                        ioapics += 1;
                        assert_eq!(mpc[off + 1], cpus, "IOAPIC id follows the CPUs");
                    }
                    if mpc[off] == 3 {
                        intsrc += 1;
                    }
                    off += 8;
                }
                t => panic!("unknown entry type {t}"),
            }
        }
        assert_eq!(off, mpc.len());
        assert_eq!(procs, vec![(0, 3), (1, 1), (2, 1)]);
        assert_eq!(ioapics, 1);
        assert_eq!(intsrc, 16);
        let count = u16::from_le_bytes([mpc[34], mpc[35]]) as usize;
        assert_eq!(count, 3 + 2 + 1 + 16 + 2);
    }

    #[test]
    fn largest_vm_fits() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write_mptable(&mem, crate::config::MAX_CPUS).unwrap();
        let mut sig = [0u8; 4];
        mem.read_slice(&mut sig, GuestAddress(MPTABLE_START))
            .unwrap();
        assert_eq!(&sig, b"_MP_");
    }
}
