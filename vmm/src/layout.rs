//! The guest's physical address map and I/O port map, kept in one place so that the boot code,
//! the e820 map, the ACPI tables, the MP table and the PCI allocator cannot disagree.

/// Global descriptor table used for the boot entry (both 64-bit and PVH).
pub const BOOT_GDT_START: u64 = 0x500;
/// An empty interrupt descriptor table: the guest installs its own before enabling interrupts.
pub const BOOT_IDT_START: u64 = 0x520;
/// PVH `hvm_start_info`.
pub const PVH_START_INFO: u64 = 0x6000;
/// PVH module list (the initrd), right after the start info.
pub const PVH_MODLIST: u64 = 0x6040;
/// PVH memory map (`hvm_memmap_table_entry` array).
pub const PVH_MEMMAP: u64 = 0x7000;
/// Linux `boot_params` ("zero page") for the 64-bit boot protocol.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer for the 64-bit entry; the kernel switches stacks almost immediately.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Identity-mapping page tables: PML4, one PDPT, four page directories (4 GiB in 2 MiB pages).
pub const PML4_START: u64 = 0x9000;
pub const PDPTE_START: u64 = 0xa000;
pub const PDE_START: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Largest command line accepted (including the NUL); Linux's own limit on x86 is 2048 unless
/// the bzImage header says otherwise.
pub const CMDLINE_MAX_SIZE: usize = 4096;
/// End of the low RAM block (start of the legacy EBDA/VGA/BIOS area).
pub const LOW_RAM_END: u64 = 0x9fc00;
/// ACPI tables (RSDP first, found by the kernel's scan of 0xe0000-0xfffff).
pub const ACPI_START: u64 = 0xe0000;
pub const ACPI_END: u64 = 0xf0000;
/// MP table (floating pointer first, found by the kernel's scan of 0xf0000-0xfffff).
pub const MPTABLE_START: u64 = 0xf0000;
pub const MPTABLE_END: u64 = 0x10_0000;
/// Start of "high" memory, where kernels are loaded.
pub const HIMEM_START: u64 = 0x10_0000;

/// The 32-bit hole below 4 GiB: PCI MMIO, ECAM, IOAPIC, LAPIC. RAM that does not fit below
/// it continues at 4 GiB.
pub const MEM_32BIT_GAP_START: u64 = 0xc000_0000;
pub const MEM_32BIT_GAP_SIZE: u64 = 0x4000_0000;
pub const RAM_64BIT_START: u64 = 0x1_0000_0000;

/// Window for 32-bit PCI BARs.
pub const PCI_MMIO32_START: u64 = 0xc000_0000;
pub const PCI_MMIO32_SIZE: u64 = 0x2000_0000;
/// PCI Express enhanced configuration access (ECAM), one segment; 1 MiB per bus.
pub const PCI_ECAM_START: u64 = 0xe000_0000;
pub const PCI_ECAM_SIZE: u64 = 0x1000_0000;
/// Buses the host bridge decodes (only bus 0 carries devices).
pub const PCI_BUS_COUNT: u8 = 1;
pub const IOAPIC_START: u64 = 0xfec0_0000;
pub const LAPIC_START: u64 = 0xfee0_0000;
/// The TSS KVM needs on VMX hosts, in the last pages of the hole.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;

/// Interrupt lines (IOAPIC pins / GSIs).
pub const SERIAL_IRQ: u32 = 4;
/// The ACPI Generic Event Device's line (power button), an ISA line nothing else uses.
pub const GED_IRQ: u32 = 5;
/// Number of IOAPIC pins KVM's in-kernel IOAPIC provides; MSI GSIs are allocated after them.
pub const IOAPIC_PINS: u32 = 24;

/// I/O ports.
pub mod ports {
    pub const I8042_DATA: u16 = 0x60;
    pub const I8042_COMMAND: u16 = 0x64;
    pub const CMOS_INDEX: u16 = 0x70;
    pub const CMOS_DATA: u16 = 0x71;
    /// POST/debug port: the first guest write is the "first guest instruction" boot marker.
    pub const DEBUG_PORT: u16 = 0x80;
    /// Debug exit (the port QEMU's isa-debug-exit uses by default).
    pub const DEBUG_EXIT: u16 = 0xf4;
    pub const COM1: u16 = 0x3f8;
    pub const COM1_LEN: u16 = 8;
    /// ACPI hardware-reduced sleep control / status and reset registers.
    pub const ACPI_SLEEP_CONTROL: u16 = 0x600;
    pub const ACPI_SLEEP_STATUS: u16 = 0x601;
    pub const ACPI_RESET: u16 = 0x602;
    pub const ACPI_PM_LEN: u16 = 4;
    /// ACPI Generic Event Device event register (power button).
    pub const ACPI_GED: u16 = 0x604;
    /// QEMU fw_cfg: selector (16-bit), data (8-bit), DMA address (64-bit, big endian).
    pub const FW_CFG_SELECTOR: u16 = 0x510;
    pub const FW_CFG_DATA: u16 = 0x511;
    pub const FW_CFG_DMA: u16 = 0x514;
    /// The range QEMU's ACPI `_CRS` declares for fw_cfg (0x510-0x51b).
    pub const FW_CFG_LEN: u16 = 12;
    pub const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
    pub const PCI_CONFIG_LEN: u16 = 8;
}

/// Value the guest writes to [`ports::ACPI_RESET`] to reboot (advertised in the FADT).
pub const ACPI_RESET_VALUE: u8 = 0x01;
/// SLP_TYP the DSDT's `_S5` package names; decoded by the sleep control register.
pub const ACPI_S5_SLEEP_TYPE: u8 = 5;
