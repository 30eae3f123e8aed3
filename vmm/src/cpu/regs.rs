//! Register state for the boot entry: long mode for the 64-bit Linux protocol, flat 32-bit
//! protected mode for PVH. Also FPU and LAPIC defaults. Pure builders plus thin KVM setters,
//! so the register values are unit-tested without KVM.

use kvm_bindings::{kvm_fpu, kvm_lapic_state, kvm_regs, kvm_sregs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress};

use crate::boot::EntryPoint;
use crate::boot::gdt::{gdt_entry, segment_from_gdt};
use crate::boot::pagetables::write_identity_map;
use crate::layout::{
    BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER, PVH_START_INFO, ZERO_PAGE_START,
};
use crate::memory::GuestMemoryMmap;

const X86_CR0_PE: u64 = 1 << 0;
const X86_CR0_ET: u64 = 1 << 4;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const RFLAGS_RESERVED: u64 = 1 << 1;

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

#[derive(Debug, thiserror::Error)]
pub enum RegsError {
    #[error("cannot write boot page tables or GDT: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
    #[error("KVM refused vCPU {what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> RegsError {
    move |source| RegsError::Kvm { what, source }
}

/// General registers at the entry point.
pub fn boot_regs(entry: EntryPoint) -> kvm_regs {
    match entry {
        EntryPoint::Linux64 { entry } => kvm_regs {
            rflags: RFLAGS_RESERVED,
            rip: entry,
            rsp: BOOT_STACK_POINTER,
            rbp: BOOT_STACK_POINTER,
            rsi: ZERO_PAGE_START,
            ..Default::default()
        },
        EntryPoint::Pvh { entry } => kvm_regs {
            rflags: RFLAGS_RESERVED,
            rip: entry,
            rbx: PVH_START_INFO,
            ..Default::default()
        },
    }
}

/// GDT contents for each entry mode. The 64-bit protocol wants code at selector 0x10 and data
/// at 0x18 (slot 1 stays null); PVH wants flat 32-bit segments and a TSS.
fn gdt_for(entry: EntryPoint) -> Vec<u64> {
    match entry {
        EntryPoint::Linux64 { .. } => vec![
            0,
            0,
            gdt_entry(0xa09b, 0, 0xfffff), // 0x10: 64-bit code
            gdt_entry(0xc093, 0, 0xfffff), // 0x18: data
            gdt_entry(0x808b, 0, 0xfffff), // 0x20: TSS (VMX wants a usable TR)
        ],
        EntryPoint::Pvh { .. } => vec![
            0,
            gdt_entry(0xc09b, 0, 0xffff_ffff), // 0x08: 32-bit flat code
            gdt_entry(0xc093, 0, 0xffff_ffff), // 0x10: flat data
            gdt_entry(0x008b, 0, 0x67),        // 0x18: TSS, as PVH asks
        ],
    }
}

/// Segment and control registers for `entry`, given KVM's defaults in `sregs`. Writes the GDT,
/// an empty IDT and (for long mode) the identity page tables.
pub fn boot_sregs(
    mem: &GuestMemoryMmap,
    entry: EntryPoint,
    mut sregs: kvm_sregs,
) -> Result<kvm_sregs, RegsError> {
    let gdt = gdt_for(entry);
    for (i, e) in gdt.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(BOOT_GDT_START + i as u64 * 8))?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START))?;
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (gdt.len() * 8 - 1) as u16;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = 7;
    match entry {
        EntryPoint::Linux64 { .. } => {
            let code = segment_from_gdt(gdt[2], 2);
            let data = segment_from_gdt(gdt[3], 3);
            sregs.cs = code;
            sregs.ds = data;
            sregs.es = data;
            sregs.fs = data;
            sregs.gs = data;
            sregs.ss = data;
            sregs.tr = segment_from_gdt(gdt[4], 4);
            sregs.cr3 = write_identity_map(mem)?;
            sregs.cr4 |= X86_CR4_PAE;
            // Set, not OR: KVM's reset value has CD and NW, and a kernel that decompresses
            // itself with caches disabled crawls (badly so under shadow paging).
            sregs.cr0 = X86_CR0_PE | X86_CR0_PG | X86_CR0_ET;
            sregs.efer |= EFER_LME | EFER_LMA;
        }
        EntryPoint::Pvh { .. } => {
            let code = segment_from_gdt(gdt[1], 1);
            let data = segment_from_gdt(gdt[2], 2);
            sregs.cs = code;
            sregs.ds = data;
            sregs.es = data;
            sregs.fs = data;
            sregs.gs = data;
            sregs.ss = data;
            sregs.tr = segment_from_gdt(gdt[3], 3);
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
            sregs.cr3 = 0;
            sregs.cr4 = 0;
            sregs.efer = 0;
        }
    }
    Ok(sregs)
}

pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

fn set_lvt_mode(lapic: &mut kvm_lapic_state, reg: usize, mode: u32) {
    let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[reg + i] as u8);
    let v = u32::from_le_bytes(bytes);
    let v = (v & !0x700) | (mode << 8);
    for (i, b) in v.to_le_bytes().iter().enumerate() {
        lapic.regs[reg + i] = *b as std::os::raw::c_char;
    }
}

/// LINT0 as ExtINT (the PIC) and LINT1 as NMI, as a BIOS leaves them.
pub fn boot_lapic(mut lapic: kvm_lapic_state) -> kvm_lapic_state {
    set_lvt_mode(&mut lapic, APIC_LVT0, APIC_MODE_EXTINT);
    set_lvt_mode(&mut lapic, APIC_LVT1, APIC_MODE_NMI);
    lapic
}

/// Everything every vCPU needs (APs included: they wait for INIT/SIPI in the in-kernel LAPIC).
pub fn setup_lapic(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let lapic = vcpu.get_lapic().map_err(kvm("LAPIC read"))?;
    vcpu.set_lapic(&boot_lapic(lapic)).map_err(kvm("LAPIC"))
}

/// Registers for the boot processor.
pub fn setup_bsp(vcpu: &VcpuFd, mem: &GuestMemoryMmap, entry: EntryPoint) -> Result<(), RegsError> {
    vcpu.set_fpu(&boot_fpu()).map_err(kvm("FPU"))?;
    let sregs = vcpu.get_sregs().map_err(kvm("segment registers read"))?;
    vcpu.set_sregs(&boot_sregs(mem, entry, sregs)?)
        .map_err(kvm("segment registers"))?;
    vcpu.set_regs(&boot_regs(entry)).map_err(kvm("registers"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    #[test]
    fn linux64_entry_is_long_mode_with_boot_params_in_rsi() {
        let e = EntryPoint::Linux64 { entry: 0x100_0200 };
        let r = boot_regs(e);
        assert_eq!((r.rip, r.rsi, r.rflags), (0x100_0200, ZERO_PAGE_START, 2));
        // KVM's reset CR0 has CD and NW set; the entry state must not keep them.
        let s = boot_sregs(
            &mem(),
            e,
            kvm_sregs {
                cr0: 0x6000_0010,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.cr0, X86_CR0_PE | X86_CR0_PG | X86_CR0_ET);
        assert_eq!(s.cs.selector, 0x10);
        assert_eq!(s.cs.l, 1);
        assert_eq!(s.ds.selector, 0x18);
        assert_ne!(s.cr0 & X86_CR0_PG, 0);
        assert_ne!(s.cr4 & X86_CR4_PAE, 0);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(s.cr3, crate::layout::PML4_START);
    }

    #[test]
    fn pvh_entry_is_flat_protected_mode_with_start_info_in_rbx() {
        let e = EntryPoint::Pvh { entry: 0x100_0000 };
        let r = boot_regs(e);
        assert_eq!((r.rip, r.rbx), (0x100_0000, PVH_START_INFO));
        let s = boot_sregs(
            &mem(),
            e,
            kvm_sregs {
                cr0: 0x6000_0010,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.cr0, X86_CR0_PE | X86_CR0_ET, "paging off, caches on");
        assert_eq!(
            (s.cs.db, s.cs.l, s.cs.limit, s.cs.base),
            (1, 0, 0xffff_ffff, 0)
        );
        assert_eq!(s.tr.type_, 0xb);
        assert_eq!(s.tr.limit, 0x67);
        assert_eq!(s.efer, 0);
        let gdt1: u64 = mem().read_obj(GuestAddress(BOOT_GDT_START)).unwrap();
        assert_eq!(gdt1, 0);
    }

    #[test]
    fn lapic_lint_pins() {
        let l = boot_lapic(kvm_lapic_state::default());
        let lvt = |reg: usize| u32::from_le_bytes(std::array::from_fn(|i| l.regs[reg + i] as u8));
        assert_eq!((lvt(APIC_LVT0) >> 8) & 7, APIC_MODE_EXTINT);
        assert_eq!((lvt(APIC_LVT1) >> 8) & 7, APIC_MODE_NMI);
    }

    #[test]
    fn fpu_defaults() {
        let f = boot_fpu();
        assert_eq!((f.fcw, f.mxcsr), (0x37f, 0x1f80));
    }
}
