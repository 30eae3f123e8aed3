//! vCPU set-up (CPUID, MSRs, registers, LAPIC) and the vCPU thread.

pub mod cpuid;
pub mod msrs;
pub mod regs;
pub mod vcpu;

pub use vcpu::Vcpu;
