//! FADT: hardware-reduced ACPI with sleep control/status and reset registers in I/O space.

use acpi_tables::Aml;
use acpi_tables::fadt::{FADTBuilder, Flags, PmProfile};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};

use super::{OEM_ID, OEM_REVISION};
use crate::layout::{ACPI_RESET_VALUE, ports};

/// IA-PC boot architecture flags: no VGA, OS controls PCIe ASPM. The 8042 flag is left clear
/// so Linux does not probe for a keyboard controller (ours only decodes the reset command).
const IAPC_BOOT_ARCH_VGA_NOT_PRESENT: u16 = 1 << 2;
const IAPC_BOOT_ARCH_PCIE_ASPM_CONTROLS: u16 = 1 << 4;

fn io_byte_register(port: u16) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(port),
    )
}

pub fn build_fadt(dsdt_addr: u64) -> Vec<u8> {
    let mut b = FADTBuilder::new(OEM_ID, *b"VMCTLFAC", OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        // Power and sleep buttons, if any, are control-method devices in the DSDT.
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .flag(Flags::ResetRegSup)
        .preferred_pm_profile(PmProfile::EnterpriseServer);
    b.iapc_boot_arch = (IAPC_BOOT_ARCH_VGA_NOT_PRESENT | IAPC_BOOT_ARCH_PCIE_ASPM_CONTROLS).into();
    b.sleep_control_reg = io_byte_register(ports::ACPI_SLEEP_CONTROL);
    b.sleep_status_reg = io_byte_register(ports::ACPI_SLEEP_STATUS);
    b.reset_reg = io_byte_register(ports::ACPI_RESET);
    b.reset_value = ACPI_RESET_VALUE;
    b.hypervisor_vendor_identity = u64::from_le_bytes(*b"VMCTLKVM").into();
    let mut bytes = Vec::new();
    b.finalize().to_aml_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::tests::sum;

    #[test]
    fn fadt_is_hardware_reduced_with_our_registers() {
        let f = build_fadt(0xe1000);
        assert_eq!(&f[0..4], b"FACP");
        assert_eq!(sum(&f), 0);
        let flags = u32::from_le_bytes(f[112..116].try_into().unwrap());
        assert_ne!(flags & (1 << 20), 0, "HW_REDUCED_ACPI");
        assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
        // X_DSDT
        assert_eq!(u64::from_le_bytes(f[140..148].try_into().unwrap()), 0xe1000);
        // RESET_REG: system I/O, port 0x602, value 1.
        assert_eq!(f[116], 1);
        assert_eq!(u64::from_le_bytes(f[120..128].try_into().unwrap()), 0x602);
        assert_eq!(f[128], ACPI_RESET_VALUE);
        // SLEEP_CONTROL_REG at 244, SLEEP_STATUS_REG at 256.
        assert_eq!(f[244], 1);
        assert_eq!(u64::from_le_bytes(f[248..256].try_into().unwrap()), 0x600);
        assert_eq!(u64::from_le_bytes(f[260..268].try_into().unwrap()), 0x601);
    }
}
