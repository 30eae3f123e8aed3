//! A small KVM virtual machine monitor that boots Linux (bzImage, or ELF vmlinux with a PVH
//! entry) directly, with a serial console, ACPI, PCI and virtio-blk.
//!
//! The library is what the `vmm` binary runs; other tools (vmctl) use [`config::VmConfig`] to
//! write a `vm.yaml` and start `vmm --config`. See docs/vmm.md for usage.

pub mod acpi;
pub mod api;
pub mod boot;
pub mod boot_marker;
pub mod bus;
pub mod config;
pub mod console;
pub mod cpu;
pub mod devices;
pub mod event_loop;
pub mod exit;
pub mod interrupt;
pub mod layout;
pub mod memory;
pub mod net;
pub mod pci;
pub mod seccomp;
pub mod shutdown;
pub mod sync;
pub mod virtio;
pub mod vmm;
pub mod vmm_devices;

pub use config::{DiskConfig, SerialConfig, ShareConfig, VmConfig};
pub use exit::VmExit;
pub use vmm::{Error, Vmm};
