//! DSDT: the PCI host bridge with its windows, the legacy devices, the motherboard resources
//! (ECAM, the VMM's own ports) and `_S5` for power-off.
//!
//! Later devices (a power button, fw_cfg) add their `Device` objects in [`build_dsdt`].

use acpi_tables::Aml;
use acpi_tables::aml::{
    AddressSpace, AddressSpaceCacheable, Device, EISAName, IO, Interrupt, Memory32Fixed, Name,
    Package, ResourceTemplate,
};
use acpi_tables::sdt::Sdt;

use super::{OEM_ID, OEM_REVISION};
use crate::layout::{
    ACPI_S5_SLEEP_TYPE, PCI_ECAM_SIZE, PCI_ECAM_START, PCI_MMIO32_SIZE, PCI_MMIO32_START,
    SERIAL_IRQ, ports,
};

fn pci_host_bridge(sink: &mut Vec<u8>) {
    let mmio_end = (PCI_MMIO32_START + PCI_MMIO32_SIZE - 1) as u32;
    let bus = AddressSpace::new_bus_number(0u16, 0u16);
    let cfg_ports = IO::new(ports::PCI_CONFIG_ADDRESS, ports::PCI_CONFIG_ADDRESS, 1, 8);
    let io_low = AddressSpace::new_io(0u16, ports::PCI_CONFIG_ADDRESS - 1, None);
    let io_high = AddressSpace::new_io(
        ports::PCI_CONFIG_ADDRESS + ports::PCI_CONFIG_LEN,
        0xffffu16,
        None,
    );
    let mmio = AddressSpace::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        PCI_MMIO32_START as u32,
        mmio_end,
        None,
    );
    let crs = ResourceTemplate::new(vec![&bus, &cfg_ports, &io_low, &io_high, &mmio]);
    let hid = EISAName::new("PNP0A08");
    let cid = EISAName::new("PNP0A03");
    Device::new(
        "_SB_.PCI0".into(),
        vec![
            &Name::new("_HID".into(), &hid),
            &Name::new("_CID".into(), &cid),
            &Name::new("_ADR".into(), &0u8),
            &Name::new("_SEG".into(), &0u8),
            &Name::new("_UID".into(), &0u8),
            &Name::new("_BBN".into(), &0u8),
            &Name::new("_CRS".into(), &crs),
        ],
    )
    .to_aml_bytes(sink);
}

fn serial_port(sink: &mut Vec<u8>) {
    let io = IO::new(ports::COM1, ports::COM1, 1, ports::COM1_LEN as u8);
    let irq = Interrupt::new(true, true, false, false, SERIAL_IRQ);
    let crs = ResourceTemplate::new(vec![&io, &irq]);
    let hid = EISAName::new("PNP0501");
    Device::new(
        "_SB_.COM1".into(),
        vec![
            &Name::new("_HID".into(), &hid),
            &Name::new("_UID".into(), &0u8),
            &Name::new("_CRS".into(), &crs),
        ],
    )
    .to_aml_bytes(sink);
}

fn rtc(sink: &mut Vec<u8>) {
    let io = IO::new(ports::CMOS_INDEX, ports::CMOS_INDEX, 1, 2);
    let crs = ResourceTemplate::new(vec![&io]);
    let hid = EISAName::new("PNP0B00");
    Device::new(
        "_SB_.RTC_".into(),
        vec![
            &Name::new("_HID".into(), &hid),
            &Name::new("_CRS".into(), &crs),
        ],
    )
    .to_aml_bytes(sink);
}

/// Resources nobody else claims: ECAM (Linux wants it reserved before using MCFG) and the
/// VMM's debug and ACPI ports.
fn motherboard_resources(sink: &mut Vec<u8>) {
    let ecam = Memory32Fixed::new(false, PCI_ECAM_START as u32, PCI_ECAM_SIZE as u32);
    let debug = IO::new(ports::DEBUG_PORT, ports::DEBUG_PORT, 1, 1);
    let debug_exit = IO::new(ports::DEBUG_EXIT, ports::DEBUG_EXIT, 1, 1);
    let pm = IO::new(
        ports::ACPI_SLEEP_CONTROL,
        ports::ACPI_SLEEP_CONTROL,
        1,
        ports::ACPI_PM_LEN as u8,
    );
    let crs = ResourceTemplate::new(vec![&ecam, &debug, &debug_exit, &pm]);
    let hid = EISAName::new("PNP0C02");
    Device::new(
        "_SB_.MRES".into(),
        vec![
            &Name::new("_HID".into(), &hid),
            &Name::new("_UID".into(), &1u8),
            &Name::new("_CRS".into(), &crs),
        ],
    )
    .to_aml_bytes(sink);
}

pub fn build_dsdt() -> Vec<u8> {
    let mut body = Vec::new();
    pci_host_bridge(&mut body);
    serial_port(&mut body);
    rtc(&mut body);
    motherboard_resources(&mut body);
    crate::devices::acpi_ged::dsdt_entries(&mut body);
    crate::devices::fw_cfg::dsdt_entry(&mut body);
    Name::new(
        "_S5_".into(),
        &Package::new(vec![&ACPI_S5_SLEEP_TYPE, &0u8, &0u8, &0u8]),
    )
    .to_aml_bytes(&mut body);

    let mut dsdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, *b"VMCTLDSD", OEM_REVISION);
    dsdt.append_slice(&body);
    dsdt.as_slice().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::tests::sum;

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn dsdt_declares_the_devices_and_s5() {
        let d = build_dsdt();
        assert_eq!(&d[0..4], b"DSDT");
        assert_eq!(
            u32::from_le_bytes(d[4..8].try_into().unwrap()) as usize,
            d.len()
        );
        assert_eq!(sum(&d), 0);
        for name in [
            &b"PCI0"[..],
            b"COM1",
            b"RTC_",
            b"MRES",
            b"_S5_",
            b"_CRS",
            b"GED_",
            b"PWRB",
            b"FWCF",
        ] {
            assert!(contains(&d, name), "{}", String::from_utf8_lossy(name));
        }
        // The 32-bit MMIO window's bounds appear as a DWord address space descriptor.
        assert!(contains(&d, &(PCI_MMIO32_START as u32).to_le_bytes()));
        assert!(contains(
            &d,
            &((PCI_MMIO32_START + PCI_MMIO32_SIZE - 1) as u32).to_le_bytes()
        ));
    }
}
