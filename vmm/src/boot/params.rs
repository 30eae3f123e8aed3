//! The Linux boot protocol's `boot_params` ("zero page") for the 64-bit entry.

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};

use super::e820::E820Entry;

const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
/// "Undefined" boot loader ID: not one of the registered loaders.
const KERNEL_LOADER_OTHER: u8 = 0xff;
/// Alignment a vmlinux (no setup header) is assumed to want.
const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x100_0000;
const E820_MAX_ENTRIES_ZEROPAGE: usize = 128;

/// Inputs for the zero page.
pub struct ZeroPageInputs<'a> {
    /// The bzImage's own setup header; `None` for an ELF vmlinux.
    pub header: Option<setup_header>,
    pub cmdline_addr: u64,
    pub cmdline_len: usize,
    pub initrd: Option<(u64, u64)>,
    pub e820: &'a [E820Entry],
    pub rsdp_addr: u64,
}

/// Builds boot_params. A bzImage keeps its setup header (the kernel reads init_size, xloadflags
/// and friends from it); a vmlinux gets the minimum the 64-bit entry reads.
pub fn build_zero_page(inputs: &ZeroPageInputs<'_>) -> boot_params {
    let mut params = boot_params::default();
    let mut hdr = inputs.header.unwrap_or(setup_header {
        boot_flag: KERNEL_BOOT_FLAG_MAGIC,
        header: KERNEL_HDR_MAGIC,
        kernel_alignment: KERNEL_MIN_ALIGNMENT_BYTES,
        ..Default::default()
    });
    hdr.type_of_loader = KERNEL_LOADER_OTHER;
    hdr.cmd_line_ptr = inputs.cmdline_addr as u32;
    hdr.cmdline_size = inputs.cmdline_len as u32;
    if let Some((addr, size)) = inputs.initrd {
        hdr.ramdisk_image = addr as u32;
        hdr.ramdisk_size = size as u32;
    }
    params.hdr = hdr;
    params.acpi_rsdp_addr = inputs.rsdp_addr;
    let mut table = [boot_e820_entry::default(); E820_MAX_ENTRIES_ZEROPAGE];
    for (slot, e) in table.iter_mut().zip(inputs.e820) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    params.e820_table = table;
    params.e820_entries = inputs.e820.len().min(E820_MAX_ENTRIES_ZEROPAGE) as u8;
    params
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::e820::e820_map;

    #[test]
    fn vmlinux_zero_page_has_magic_cmdline_initrd_and_map() {
        let map = e820_map(256 << 20);
        let p = build_zero_page(&ZeroPageInputs {
            header: None,
            cmdline_addr: 0x20000,
            cmdline_len: 13,
            initrd: Some((0x0f00_0000, 0x1234)),
            e820: &map,
            rsdp_addr: 0xe0000,
        });
        let hdr = p.hdr;
        assert_eq!({ hdr.boot_flag }, 0xaa55);
        assert_eq!({ hdr.header }, 0x5372_6448);
        assert_eq!({ hdr.cmd_line_ptr }, 0x20000);
        assert_eq!({ hdr.ramdisk_image }, 0x0f00_0000);
        assert_eq!({ hdr.ramdisk_size }, 0x1234);
        assert_eq!({ p.e820_entries } as usize, map.len());
        let first = p.e820_table[0];
        assert_eq!(
            ({ first.addr }, { first.size }, { first.r#type }),
            (0, 0x9fc00, 1)
        );
        assert_eq!({ p.acpi_rsdp_addr }, 0xe0000);
    }

    #[test]
    fn bzimage_header_is_kept() {
        let header = setup_header {
            init_size: 0x123_0000,
            xloadflags: 3,
            ..Default::default()
        };
        let p = build_zero_page(&ZeroPageInputs {
            header: Some(header),
            cmdline_addr: 0x20000,
            cmdline_len: 1,
            initrd: None,
            e820: &[],
            rsdp_addr: 0,
        });
        let hdr = p.hdr;
        assert_eq!({ hdr.init_size }, 0x123_0000);
        assert_eq!({ hdr.xloadflags }, 3);
        assert_eq!({ hdr.type_of_loader }, 0xff);
        assert_eq!({ hdr.ramdisk_image }, 0);
    }
}
