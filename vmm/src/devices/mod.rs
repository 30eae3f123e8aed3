//! Legacy platform devices on the port I/O bus.

pub mod acpi_ged;
pub mod acpi_pm;
pub mod cmos;
pub mod debug_exit;
pub mod debug_port;
pub mod fw_cfg;
pub mod i8042;
pub mod serial;
