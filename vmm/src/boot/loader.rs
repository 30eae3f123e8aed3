//! Loads the kernel (bzImage or ELF vmlinux, through linux-loader), the initrd and the command
//! line into guest memory, and says how the kernel wants to be entered.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use vm_memory::{Bytes, GuestAddress};

use super::BootError;
use crate::layout::{CMDLINE_MAX_SIZE, CMDLINE_START, HIMEM_START};
use crate::memory::GuestMemoryMmap;

/// bzImage: the setup header's magic "HdrS" at this offset.
const BZIMAGE_MAGIC_OFFSET: usize = 0x202;
const ELF_MACHINE_X86_64: u16 = 62;
/// xloadflags bit: the kernel has a 64-bit entry point at load address + 0x200.
const XLF_KERNEL_64: u16 = 1 << 0;
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;
/// Boot protocol version that introduced `cmdline_size`.
const BOOT_PROTOCOL_CMDLINE_SIZE: u16 = 0x0206;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    BzImage,
    Elf,
}

/// How the vCPU enters the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryPoint {
    /// 64-bit Linux boot protocol: long mode, identity paging, RSI = boot_params.
    Linux64 { entry: u64 },
    /// PVH: 32-bit protected mode, paging off, EBX = hvm_start_info.
    Pvh { entry: u64 },
}

/// What loading the kernel produced.
#[derive(Clone, Copy, Debug)]
pub struct LoadedKernel {
    pub format: KernelFormat,
    pub entry: EntryPoint,
    /// First byte after the loaded image (including its in-place decompression room).
    pub end: u64,
    /// bzImage setup header, to be copied into boot_params.
    pub setup_header: Option<setup_header>,
}

/// Recognises the kernel by its magic numbers, so a wrong file gets a clear error.
pub fn detect_format(path: &Path, file: &mut File) -> Result<KernelFormat, BootError> {
    let mut head = [0u8; 0x210];
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(source) => {
                return Err(BootError::Read {
                    what: "kernel",
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
    let head = &head[..got];
    if head.starts_with(b"\x7fELF") {
        let is_64 = head.get(4) == Some(&2);
        let machine = head.get(18..20).map(|m| u16::from_le_bytes([m[0], m[1]]));
        if !is_64 || machine != Some(ELF_MACHINE_X86_64) {
            return Err(BootError::WrongArchitecture(path.to_owned()));
        }
        return Ok(KernelFormat::Elf);
    }
    if head.get(BZIMAGE_MAGIC_OFFSET..BZIMAGE_MAGIC_OFFSET + 4) == Some(b"HdrS") {
        return Ok(KernelFormat::BzImage);
    }
    Err(BootError::NotAKernel(path.to_owned()))
}

/// Loads the kernel at its preferred address.
pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<LoadedKernel, BootError> {
    let open = |p: &Path| {
        File::open(p).map_err(|source| BootError::Read {
            what: "kernel",
            path: p.to_owned(),
            source,
        })
    };
    let mut file = open(path)?;
    let format = detect_format(path, &mut file)?;
    let load_err = |source| BootError::Load {
        path: path.to_owned(),
        source,
    };
    let himem = Some(GuestAddress(HIMEM_START));
    match format {
        KernelFormat::BzImage => {
            let result = BzImage::load(mem, None, &mut file, himem).map_err(load_err)?;
            let header = result
                .setup_header
                .ok_or(BootError::NotAKernel(path.to_owned()))?;
            if header.xloadflags & XLF_KERNEL_64 == 0 {
                return Err(BootError::No64BitEntry(path.to_owned()));
            }
            let load = result.kernel_load.0;
            // The kernel decompresses in place and needs init_size bytes from its load address.
            let end = load
                .checked_add(u64::from(header.init_size))
                .ok_or(BootError::NotAKernel(path.to_owned()))?
                .max(result.kernel_end);
            Ok(LoadedKernel {
                format,
                entry: EntryPoint::Linux64 {
                    entry: load + BZIMAGE_64BIT_ENTRY_OFFSET,
                },
                end,
                setup_header: Some(header),
            })
        }
        KernelFormat::Elf => {
            let result = Elf::load(mem, None, &mut file, himem).map_err(load_err)?;
            let entry = match result.pvh_boot_cap {
                PvhBootCapability::PvhEntryPresent(addr) => EntryPoint::Pvh { entry: addr.0 },
                _ => EntryPoint::Linux64 {
                    entry: result.kernel_load.0,
                },
            };
            Ok(LoadedKernel {
                format,
                entry,
                end: result.kernel_end,
                setup_header: None,
            })
        }
    }
}

/// Loads the initrd as high as possible below `limit` (the end of low RAM, or the kernel's
/// `initrd_addr_max`), above the kernel. Returns (address, size).
pub fn load_initrd(
    mem: &GuestMemoryMmap,
    path: &Path,
    kernel_end: u64,
    limit: u64,
) -> Result<(u64, u64), BootError> {
    let read_err = |source| BootError::Read {
        what: "initrd",
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    let too_big = || BootError::InitrdTooBig {
        path: path.to_owned(),
        size_mib: size.div_ceil(1 << 20),
    };
    let start = limit.checked_sub(size).ok_or_else(too_big)? & !0xfff;
    if start < kernel_end {
        return Err(too_big());
    }
    let len = usize::try_from(size).map_err(|_| too_big())?;
    mem.read_exact_volatile_from(GuestAddress(start), &mut file, len)
        .map_err(|e| BootError::Read {
            what: "initrd",
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
    Ok((start, size))
}

/// Writes the NUL-terminated command line at [`CMDLINE_START`]; `max` is the kernel's limit
/// (including the NUL) when it declares one.
pub fn load_cmdline(
    mem: &GuestMemoryMmap,
    cmdline: &str,
    header: Option<&setup_header>,
) -> Result<u64, BootError> {
    let mut max = CMDLINE_MAX_SIZE;
    if let Some(h) = header
        && h.version >= BOOT_PROTOCOL_CMDLINE_SIZE
        && h.cmdline_size > 0
    {
        max = max.min(h.cmdline_size as usize + 1);
    }
    if cmdline.len() + 1 > max || cmdline.as_bytes().contains(&0) {
        return Err(BootError::Cmdline {
            len: cmdline.len(),
            max: max - 1,
        });
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE_START))
        .map_err(|e| BootError::Memory(e.to_string()))?;
    Ok(CMDLINE_START)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let file = File::open(f.path()).unwrap();
        (f, file)
    }

    #[test]
    fn text_file_is_not_a_kernel() {
        let (t, mut f) = temp_with(b"#!/bin/sh\necho hello\n");
        let err = detect_format(t.path(), &mut f).unwrap_err();
        assert!(matches!(err, BootError::NotAKernel(_)));
        assert!(err.to_string().contains("not a Linux kernel"), "{err}");
    }

    #[test]
    fn empty_file_is_not_a_kernel() {
        let (t, mut f) = temp_with(b"");
        assert!(matches!(
            detect_format(t.path(), &mut f),
            Err(BootError::NotAKernel(_))
        ));
    }

    #[test]
    fn arm64_elf_is_refused() {
        let mut elf = vec![0u8; 64];
        elf[0..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
        let (t, mut f) = temp_with(&elf);
        assert!(matches!(
            detect_format(t.path(), &mut f),
            Err(BootError::WrongArchitecture(_))
        ));
        elf[18..20].copy_from_slice(&62u16.to_le_bytes());
        let (t, mut f) = temp_with(&elf);
        assert_eq!(detect_format(t.path(), &mut f).unwrap(), KernelFormat::Elf);
    }

    #[test]
    fn bzimage_magic_is_recognised() {
        let mut img = vec![0u8; 0x400];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        let (t, mut f) = temp_with(&img);
        assert_eq!(
            detect_format(t.path(), &mut f).unwrap(),
            KernelFormat::BzImage
        );
    }

    #[test]
    fn initrd_goes_high_and_page_aligned() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
        let (t, _) = temp_with(&[0xab; 5000]);
        let (addr, size) = load_initrd(&mem, t.path(), 2 << 20, 16 << 20).unwrap();
        assert_eq!(size, 5000);
        assert_eq!(addr % 4096, 0);
        assert!(addr + size <= 16 << 20);
        let b: u8 = mem.read_obj(GuestAddress(addr + 4999)).unwrap();
        assert_eq!(b, 0xab);
        let err = load_initrd(&mem, t.path(), (16 << 20) - 4096, 16 << 20).unwrap_err();
        assert!(matches!(err, BootError::InitrdTooBig { .. }));
    }

    #[test]
    fn cmdline_respects_the_kernel_limit() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        load_cmdline(&mem, "console=ttyS0", None).unwrap();
        let mut buf = [0u8; 14];
        mem.read_slice(&mut buf, GuestAddress(CMDLINE_START))
            .unwrap();
        assert_eq!(&buf, b"console=ttyS0\0");
        let header = setup_header {
            version: 0x020f,
            cmdline_size: 8,
            ..Default::default()
        };
        assert!(load_cmdline(&mem, "12345678", Some(&header)).is_ok());
        assert!(matches!(
            load_cmdline(&mem, "123456789", Some(&header)),
            Err(BootError::Cmdline { len: 9, max: 8 })
        ));
    }
}
