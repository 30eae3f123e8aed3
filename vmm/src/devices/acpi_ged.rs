//! The ACPI Generic Event Device (ACPI 6.x, 5.6.9; `ACPI0013`), as cloud-hypervisor uses it on
//! hardware-reduced platforms: one interrupt line and an event register. The host sets an
//! event bit and raises the line; Linux's GED driver (drivers/acpi/evged.c) then runs the
//! DSDT's `_EVT` method, which reads the register (reading clears it) and for the power-button
//! bit does `Notify(\_SB.PWRB, 0x80)`, which the ACPI button driver turns into KEY_POWER.
//!
//! The register is one byte at I/O port [`ports::ACPI_GED`]; the line is [`GED_IRQ`].

use acpi_tables::Aml;
use acpi_tables::aml::{
    And, Device, FieldAccessType, FieldEntry, FieldLockRule, FieldUpdateRule, If, Interrupt, Local,
    Method, Name, Notify, OpRegion, OpRegionSpace, Path, ResourceTemplate, Store,
};

use crate::bus::BusDevice;
use crate::interrupt::LegacyIrq;
use crate::layout::{GED_IRQ, ports};

/// Event bit: the power button was pressed.
pub const EVENT_POWER_BUTTON: u8 = 1;

pub struct AcpiGed {
    pending: u8,
    irq: LegacyIrq,
}

impl AcpiGed {
    pub fn new(irq: LegacyIrq) -> Self {
        AcpiGed { pending: 0, irq }
    }

    /// Latches `event` and interrupts the guest.
    pub fn notify(&mut self, event: u8) -> std::io::Result<()> {
        self.pending |= event;
        vm_superio::Trigger::trigger(&self.irq)
    }

    /// Events latched and not yet read by the guest.
    pub fn pending(&self) -> u8 {
        self.pending
    }
}

impl BusDevice for AcpiGed {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset == 0
            && let Some(b) = data.first_mut()
        {
            *b = std::mem::take(&mut self.pending);
        }
    }

    fn write(&mut self, _base: u64, _offset: u64, _data: &[u8]) {}
}

/// The DSDT objects: the GED with its interrupt, register and `_EVT`, and the power button.
pub fn dsdt_entries(sink: &mut Vec<u8>) {
    let irq = Interrupt::new(true, true, false, false, GED_IRQ);
    let crs = ResourceTemplate::new(vec![&irq]);
    let port = ports::ACPI_GED;
    let len = 1u8;
    let region = OpRegion::new("GDST".into(), OpRegionSpace::SystemIO, &port, &len);
    let field = acpi_tables::aml::Field::new(
        "GDST".into(),
        FieldAccessType::Byte,
        FieldLockRule::NoLock,
        FieldUpdateRule::WriteAsZeroes,
        vec![FieldEntry::Named(*b"GDAT", 8)],
    );
    let gdat: Path = "GDAT".into();
    let store = Store::new(&Local(0), &gdat);
    let bit = EVENT_POWER_BUTTON;
    let masked = And::new(&Local(1), &Local(0), &bit);
    let pwrb: Path = "\\_SB_.PWRB".into();
    let notify = Notify::new(&pwrb, &0x80u8);
    let test = If::new(&Local(1), vec![&notify]);
    let evt = Method::new("_EVT".into(), 1, true, vec![&store, &masked, &test]);
    Device::new(
        "_SB_.GED_".into(),
        vec![
            &Name::new("_HID".into(), &"ACPI0013"),
            &Name::new("_UID".into(), &0u8),
            &Name::new("_CRS".into(), &crs),
            &region,
            &field,
            &evt,
        ],
    )
    .to_aml_bytes(sink);
    Device::new(
        "_SB_.PWRB".into(),
        vec![
            &Name::new("_HID".into(), &acpi_tables::aml::EISAName::new("PNP0C0C")),
            &Name::new("_UID".into(), &0u8),
        ],
    )
    .to_aml_bytes(sink);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_the_register_returns_and_clears_events() {
        let irq = LegacyIrq::detached(GED_IRQ).unwrap();
        let mut ged = AcpiGed::new(irq);
        ged.notify(EVENT_POWER_BUTTON).unwrap();
        assert_eq!(ged.irq.eventfd().read().unwrap(), 1, "line raised");
        let mut b = [0xffu8; 1];
        ged.read(0, 0, &mut b);
        assert_eq!(b, [EVENT_POWER_BUTTON]);
        ged.read(0, 0, &mut b);
        assert_eq!(b, [0], "cleared by the read");
    }

    #[test]
    fn dsdt_objects_name_the_devices_the_drivers_bind_to() {
        let mut aml = Vec::new();
        dsdt_entries(&mut aml);
        let has = |n: &[u8]| aml.windows(n.len()).any(|w| w == n);
        assert!(has(b"ACPI0013"));
        assert!(has(b"_EVT"));
        assert!(has(b"GDAT"));
        // OperationRegion (GDST, SystemIO, 0x604, 1)
        let mut region = vec![0x5b, 0x80];
        region.extend_from_slice(b"GDST");
        region.extend_from_slice(&[0x01, 0x0b, 0x04, 0x06, 0x01]);
        assert!(has(&region), "{aml:02x?}");
        // Extended interrupt descriptor: consumer, edge, active high, GSI 5.
        assert!(has(&[0x89, 6, 0, 0x03, 1, GED_IRQ as u8, 0, 0, 0]));
        // PNP0C0C as an EISA id.
        assert!(has(&[0x0c, 0x41, 0xd0, 0x0c, 0x0c]));
    }
}
