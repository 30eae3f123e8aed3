//! Direct kernel boot: load the images, describe memory, and hand the vCPU an entry point.

pub mod e820;
pub mod gdt;
pub mod loader;
pub mod mptable;
pub mod pagetables;
pub mod params;
pub mod pvh;

use std::path::{Path, PathBuf};

use vm_memory::{Bytes, GuestAddress};

pub use loader::{EntryPoint, KernelFormat};

use crate::layout::{ACPI_START, ZERO_PAGE_START};
use crate::memory::{GuestMemoryMmap, low_ram_end};

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a Linux kernel: expected a bzImage or an ELF vmlinux")]
    NotAKernel(PathBuf),
    #[error("{0} is an ELF file for another architecture; an x86-64 kernel is needed")]
    WrongArchitecture(PathBuf),
    #[error("{0} has no 64-bit entry point (boot protocol 2.12 or later is needed)")]
    No64BitEntry(PathBuf),
    #[error("cannot load kernel {path}: {source} (is the guest memory large enough?)")]
    Load {
        path: PathBuf,
        source: linux_loader::loader::Error,
    },
    #[error(
        "initrd {path} ({size_mib} MiB) does not fit in guest memory next to the kernel; raise --memory"
    )]
    InitrdTooBig { path: PathBuf, size_mib: u64 },
    #[error("kernel command line is {len} bytes, but this kernel accepts at most {max}")]
    Cmdline { len: usize, max: usize },
    #[error("cannot write boot structures to guest memory: {0}")]
    Memory(String),
}

impl BootError {
    /// True when the user handed us the wrong file (exit status 2, not 1).
    pub fn is_user_error(&self) -> bool {
        !matches!(self, BootError::Memory(_))
    }
}

/// Checks that `kernel` is a kernel we can boot, without loading it.
pub fn check_kernel(kernel: &Path) -> Result<KernelFormat, BootError> {
    let mut f = std::fs::File::open(kernel).map_err(|source| BootError::Read {
        what: "kernel",
        path: kernel.to_owned(),
        source,
    })?;
    loader::detect_format(kernel, &mut f)
}

/// Loads kernel, initrd and command line, writes boot_params or the PVH start info, and
/// returns where the BSP starts. ACPI tables are expected at [`ACPI_START`].
pub fn prepare_boot(
    mem: &GuestMemoryMmap,
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
    mem_size: u64,
) -> Result<EntryPoint, BootError> {
    let loaded = loader::load_kernel(mem, kernel)?;
    let cmdline_addr = loader::load_cmdline(mem, cmdline, loaded.setup_header.as_ref())?;
    let initrd = match initrd {
        Some(path) => {
            let mut limit = low_ram_end(mem);
            if let Some(h) = &loaded.setup_header
                && h.initrd_addr_max != 0
            {
                limit = limit.min(u64::from(h.initrd_addr_max) + 1);
            }
            Some(loader::load_initrd(mem, path, loaded.end, limit)?)
        }
        None => None,
    };
    let map = e820::e820_map(mem_size);
    let mem_err = |e: vm_memory::GuestMemoryError| BootError::Memory(e.to_string());
    match loaded.entry {
        EntryPoint::Linux64 { .. } => {
            let params = params::build_zero_page(&params::ZeroPageInputs {
                header: loaded.setup_header,
                cmdline_addr,
                cmdline_len: cmdline.len(),
                initrd,
                e820: &map,
                rsdp_addr: ACPI_START,
            });
            mem.write_obj(params, GuestAddress(ZERO_PAGE_START))
                .map_err(mem_err)?;
        }
        EntryPoint::Pvh { .. } => {
            pvh::write_start_info(mem, cmdline_addr, initrd, &map, ACPI_START).map_err(mem_err)?;
        }
    }
    tracing::info!(
        "kernel {} loaded as {:?}, entry {:?}, image ends at {:#x}",
        kernel.display(),
        loaded.format,
        loaded.entry,
        loaded.end
    );
    Ok(loaded.entry)
}
