//! ACPI tables (built with the acpi_tables crate): RSDP -> XSDT -> FADT (-> DSDT), MADT, MCFG.
//! The platform is "hardware-reduced" ACPI: no SCI, no PM timer; power-off and reset go through
//! the sleep control and reset registers that [`crate::devices::acpi_pm`] decodes.

pub mod dsdt;
pub mod fadt;
pub mod madt;

use acpi_tables::Aml;
use acpi_tables::mcfg::MCFG;
use acpi_tables::rsdp::Rsdp;
use acpi_tables::xsdt::XSDT;
use vm_memory::{Bytes, GuestAddress};

use crate::layout::{ACPI_END, ACPI_START, PCI_BUS_COUNT, PCI_ECAM_START};
use crate::memory::GuestMemoryMmap;

pub const OEM_ID: [u8; 6] = *b"VMCTL ";
pub const OEM_REVISION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    #[error("ACPI tables ({0} bytes) do not fit their area below 1 MiB")]
    TooBig(u64),
    #[error("cannot write ACPI tables to guest memory: {0}")]
    Write(#[from] vm_memory::GuestMemoryError),
}

/// Lays tables out one after another from [`ACPI_START`].
struct TableWriter<'a> {
    mem: &'a GuestMemoryMmap,
    next: u64,
}

impl TableWriter<'_> {
    fn place(&mut self, bytes: &[u8]) -> Result<u64, AcpiError> {
        let at = self.next.next_multiple_of(16);
        let end = at + bytes.len() as u64;
        if end > ACPI_END {
            return Err(AcpiError::TooBig(end - ACPI_START));
        }
        self.mem.write_slice(bytes, GuestAddress(at))?;
        self.next = end;
        Ok(at)
    }
}

fn aml_bytes(table: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    table.to_aml_bytes(&mut v);
    v
}

/// The MCFG for our single ECAM segment.
pub fn build_mcfg() -> Vec<u8> {
    let mut mcfg = MCFG::new(OEM_ID, *b"VMCTLCFG", OEM_REVISION);
    mcfg.add_ecam(PCI_ECAM_START, 0, 0, PCI_BUS_COUNT - 1);
    aml_bytes(&mcfg)
}

/// Writes all tables and returns the RSDP address.
pub fn write_acpi_tables(mem: &GuestMemoryMmap, cpus: u8) -> Result<u64, AcpiError> {
    // The RSDP goes first so the kernel's scan of the BIOS area finds it at once.
    let rsdp_at = ACPI_START;
    let mut w = TableWriter {
        mem,
        next: ACPI_START + Rsdp::len() as u64,
    };
    let dsdt = w.place(&dsdt::build_dsdt())?;
    let fadt = w.place(&fadt::build_fadt(dsdt))?;
    let madt = w.place(&madt::build_madt(cpus))?;
    let mcfg = w.place(&build_mcfg())?;
    let mut xsdt = XSDT::new(OEM_ID, *b"VMCTLXSD", OEM_REVISION);
    for table in [fadt, madt, mcfg] {
        xsdt.add_entry(table);
    }
    let xsdt = w.place(&aml_bytes(&xsdt))?;
    mem.write_slice(&aml_bytes(&Rsdp::new(OEM_ID, xsdt)), GuestAddress(rsdp_at))?;
    Ok(rsdp_at)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    fn read_table(mem: &GuestMemoryMmap, at: u64) -> Vec<u8> {
        let len: u32 = mem.read_obj(GuestAddress(at + 4)).unwrap();
        let mut buf = vec![0u8; len as usize];
        mem.read_slice(&mut buf, GuestAddress(at)).unwrap();
        buf
    }

    /// Follows RSDP -> XSDT -> tables like a guest and checks every checksum.
    #[test]
    fn guest_can_walk_all_tables() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let rsdp_at = write_acpi_tables(&mem, 2).unwrap();
        let mut rsdp = [0u8; 36];
        mem.read_slice(&mut rsdp, GuestAddress(rsdp_at)).unwrap();
        assert_eq!(&rsdp[0..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[0..20]), 0);
        assert_eq!(sum(&rsdp), 0);
        let xsdt_at = u64::from_le_bytes(rsdp[24..32].try_into().unwrap());
        let xsdt = read_table(&mem, xsdt_at);
        assert_eq!(&xsdt[0..4], b"XSDT");
        assert_eq!(sum(&xsdt), 0);
        let mut sigs = Vec::new();
        for entry in xsdt[36..].chunks(8) {
            let at = u64::from_le_bytes(entry.try_into().unwrap());
            let table = read_table(&mem, at);
            assert_eq!(
                sum(&table),
                0,
                "{:?}",
                String::from_utf8_lossy(&table[0..4])
            );
            if &table[0..4] == b"FACP" {
                let dsdt_at = u64::from_le_bytes(table[140..148].try_into().unwrap());
                let dsdt = read_table(&mem, dsdt_at);
                assert_eq!(&dsdt[0..4], b"DSDT");
                assert_eq!(sum(&dsdt), 0);
            }
            sigs.push(String::from_utf8_lossy(&table[0..4]).into_owned());
        }
        assert_eq!(sigs, ["FACP", "APIC", "MCFG"]);
    }

    #[test]
    fn mcfg_describes_ecam() {
        let mcfg = build_mcfg();
        assert_eq!(sum(&mcfg), 0);
        assert_eq!(mcfg.len(), 36 + 8 + 16);
        let base = u64::from_le_bytes(mcfg[44..52].try_into().unwrap());
        assert_eq!(base, PCI_ECAM_START);
        assert_eq!((mcfg[54], mcfg[55]), (0, 0));
    }
}
