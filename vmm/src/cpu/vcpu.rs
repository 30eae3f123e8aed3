//! A vCPU and its thread: `KVM_RUN`, then port I/O and MMIO exits dispatched to the buses, and
//! the exits that end the VM (triple fault, KVM errors, system events).
//!
//! Thread kind [`crate::seccomp::ThreadKind::Vcpu`]; its system calls are listed in
//! [`crate::seccomp::filters`].

use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;

use kvm_bindings::{
    CpuId, KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};

use super::cpuid::vcpu_cpuid;
use super::msrs::boot_msrs;
use super::regs::{RegsError, setup_bsp, setup_lapic};
use crate::boot::EntryPoint;
use crate::bus::Bus;
use crate::exit::{ExitNotifier, VmExit};
use crate::memory::GuestMemoryMmap;
use crate::seccomp::ThreadStart;

#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    #[error("cannot create vCPU {id}: {source}")]
    Create { id: u8, source: kvm_ioctls::Error },
    #[error("KVM refused the CPUID of vCPU {id}: {source}")]
    Cpuid { id: u8, source: kvm_ioctls::Error },
    #[error("KVM refused the MSRs of vCPU {id}: {source}")]
    Msrs { id: u8, source: kvm_ioctls::Error },
    #[error("vCPU {id}: {source}")]
    Regs { id: u8, source: RegsError },
    #[error("cannot start the vCPU {id} thread: {source}")]
    Spawn { id: u8, source: std::io::Error },
}

pub struct Vcpu {
    id: u8,
    fd: VcpuFd,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    exit: ExitNotifier,
}

impl Vcpu {
    /// Creates vCPU `id` of `cpus` with its CPUID (from KVM's supported set), MSRs and LAPIC
    /// set up.
    pub fn new(
        supported_cpuid: &CpuId,
        vm: &VmFd,
        id: u8,
        cpus: u8,
        pio: Arc<Bus>,
        mmio: Arc<Bus>,
        exit: ExitNotifier,
    ) -> Result<Self, VcpuError> {
        let fd = vm
            .create_vcpu(u64::from(id))
            .map_err(|source| VcpuError::Create { id, source })?;
        fd.set_cpuid2(&vcpu_cpuid(supported_cpuid, id, cpus))
            .map_err(|source| VcpuError::Cpuid { id, source })?;
        if let Some(msrs) = boot_msrs() {
            let set = fd
                .set_msrs(&msrs)
                .map_err(|source| VcpuError::Msrs { id, source })?;
            if set != msrs.as_slice().len() {
                let failed = msrs.as_slice().get(set).map(|m| m.index).unwrap_or(0);
                tracing::debug!(
                    "vCPU {id}: KVM took {set} of {} boot MSRs (stopped at {failed:#x})",
                    msrs.as_slice().len()
                );
            }
        }
        setup_lapic(&fd).map_err(|source| VcpuError::Regs { id, source })?;
        Ok(Vcpu {
            id,
            fd,
            pio,
            mmio,
            exit,
        })
    }

    /// Points the boot processor at the kernel entry.
    pub fn configure_bsp(&self, mem: &GuestMemoryMmap, entry: EntryPoint) -> Result<(), VcpuError> {
        setup_bsp(&self.fd, mem, entry).map_err(|source| VcpuError::Regs {
            id: self.id,
            source,
        })
    }

    /// Starts the thread: it installs its seccomp filter, then waits at `go` until every other
    /// thread has installed its own before it enters the guest.
    pub fn spawn(self, start: ThreadStart, go: Arc<Barrier>) -> Result<JoinHandle<()>, VcpuError> {
        let id = self.id;
        std::thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(move || {
                let installed = start.install();
                go.wait();
                if installed {
                    self.run();
                }
            })
            .map_err(|source| VcpuError::Spawn { id, source })
    }

    /// One line with the registers that explain a crash.
    pub fn register_dump(&self) -> String {
        let regs = match self.fd.get_regs() {
            Ok(r) => format!(
                "rip={:#x} rsp={:#x} rflags={:#x} rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x}",
                r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi
            ),
            Err(e) => format!("registers unavailable ({e})"),
        };
        let sregs = match self.fd.get_sregs() {
            Ok(s) => format!(
                "cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x} cs={:#x}(l={} db={}) idt={:#x}/{:#x}",
                s.cr0,
                s.cr2,
                s.cr3,
                s.cr4,
                s.efer,
                s.cs.selector,
                s.cs.l,
                s.cs.db,
                s.idt.base,
                s.idt.limit
            ),
            Err(e) => format!("segment registers unavailable ({e})"),
        };
        format!("{regs} {sregs}")
    }

    fn crash(&self, why: String) {
        tracing::error!("vCPU {}: {why}; {}", self.id, self.register_dump());
        self.exit
            .notify(VmExit::GuestCrash(format!("vCPU {}: {why}", self.id)));
    }

    fn internal_error(&mut self) -> String {
        let run = self.fd.get_kvm_run();
        // SAFETY: KVM filled the `internal` member of the exit union for this exit reason.
        let (sub, ndata) = unsafe {
            let i = &run.__bindgen_anon_1.internal;
            (i.suberror, i.ndata)
        };
        let kind = match sub {
            1 => "emulation failure",
            2 => "simultaneous exceptions",
            3 => "delivery event error",
            _ => "internal error",
        };
        format!("KVM internal error, suberror {sub} ({kind}), {ndata} data words")
    }

    /// Runs until an exit is requested (by this or any other thread).
    fn run(mut self) {
        loop {
            if self.exit.requested() {
                return;
            }
            match self.fd.run() {
                Ok(VcpuExit::IoIn(port, data)) => {
                    if !self.pio.read(u64::from(port), data)
                        && !string_io(data.len(), |i| {
                            self.pio.read(u64::from(port), &mut data[i..i + 1])
                        })
                    {
                        // Nothing there: the ISA bus floats high.
                        data.fill(0xff);
                    }
                }
                Ok(VcpuExit::IoOut(port, data)) => {
                    if !self.pio.write(u64::from(port), data)
                        && !string_io(data.len(), |i| {
                            self.pio.write(u64::from(port), &data[i..i + 1])
                        })
                    {
                        tracing::trace!("unhandled port write {port:#x} {data:x?}");
                    }
                }
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    if !self.mmio.read(addr, data) {
                        tracing::trace!("unhandled MMIO read {addr:#x}");
                        data.fill(0xff);
                    }
                }
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    if !self.mmio.write(addr, data) {
                        tracing::trace!("unhandled MMIO write {addr:#x}");
                    }
                }
                Ok(VcpuExit::Hlt) => {
                    // Only without an in-kernel LAPIC; ours has one, so a halt here means
                    // the guest stopped with nothing to wake it.
                    self.crash("halted with no way to wake up".to_owned());
                }
                Ok(VcpuExit::Shutdown) => self.crash("triple fault".to_owned()),
                Ok(VcpuExit::InternalError) => {
                    let why = self.internal_error();
                    self.crash(why);
                }
                Ok(VcpuExit::FailEntry(reason, cpu)) => {
                    self.crash(format!(
                        "KVM could not enter the guest (reason {reason:#x}, host cpu {cpu})"
                    ));
                }
                Ok(VcpuExit::SystemEvent(kind, _)) => match kind {
                    KVM_SYSTEM_EVENT_SHUTDOWN => self.exit.notify(VmExit::PowerOff),
                    KVM_SYSTEM_EVENT_RESET => self.exit.notify(VmExit::Reboot),
                    KVM_SYSTEM_EVENT_CRASH => self.crash("guest reported a crash".to_owned()),
                    other => tracing::debug!("vCPU {}: system event {other} ignored", self.id),
                },
                Ok(VcpuExit::Intr) => {}
                Ok(other) => {
                    let why = format!("unexpected KVM exit {other:?}");
                    self.crash(why);
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
                Err(e) => {
                    tracing::error!("vCPU {}: KVM_RUN failed: {e}", self.id);
                    self.exit.notify(VmExit::VmmError(format!(
                        "vCPU {}: KVM_RUN failed: {e}",
                        self.id
                    )));
                }
            }
        }
    }
}

/// `rep insb` / `rep outsb`: KVM hands over all repetitions of a string port access at once
/// (longer than any single access, 4 bytes). They are replayed one byte at a time, which is
/// what byte-wide ports like fw_cfg's data register and the UART expect. Returns false for
/// ordinary accesses, or when nothing decodes the port.
fn string_io(len: usize, mut access: impl FnMut(usize) -> bool) -> bool {
    if len <= 4 {
        return false;
    }
    (0..len).all(&mut access)
}
