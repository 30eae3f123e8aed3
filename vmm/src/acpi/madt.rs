//! MADT: one enabled local APIC per vCPU (APIC ID = vCPU index) and the IOAPIC, whose ID
//! follows the CPUs (the MP table uses the same numbering).

use acpi_tables::Aml;
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, MADT, ProcessorLocalApic,
};

use super::{OEM_ID, OEM_REVISION};
use crate::layout::{IOAPIC_START, LAPIC_START};

pub fn build_madt(cpus: u8) -> Vec<u8> {
    let mut madt = MADT::new(
        OEM_ID,
        *b"VMCTLAPC",
        OEM_REVISION,
        LocalInterruptController::Address(LAPIC_START as u32),
    );
    for id in 0..cpus {
        madt.add_structure(ProcessorLocalApic::new(id, id, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(cpus, IOAPIC_START as u32, 0));
    let mut bytes = Vec::new();
    madt.to_aml_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::tests::sum;

    #[test]
    fn one_lapic_per_cpu_and_an_ioapic() {
        let m = build_madt(3);
        assert_eq!(&m[0..4], b"APIC");
        assert_eq!(sum(&m), 0);
        assert_eq!(
            u32::from_le_bytes(m[36..40].try_into().unwrap()),
            0xfee0_0000
        );
        let mut off = 44;
        let mut lapics = Vec::new();
        let mut ioapic = None;
        while off < m.len() {
            let (kind, len) = (m[off], m[off + 1] as usize);
            match kind {
                0 => lapics.push((m[off + 2], m[off + 3], m[off + 4] & 1)),
                1 => {
                    ioapic = Some((
                        m[off + 2],
                        u32::from_le_bytes(m[off + 4..off + 8].try_into().unwrap()),
                    ))
                }
                k => panic!("unexpected MADT entry {k}"),
            }
            off += len;
        }
        assert_eq!(lapics, vec![(0, 0, 1), (1, 1, 1), (2, 2, 1)]);
        assert_eq!(ioapic, Some((3, 0xfec0_0000)));
    }
}
