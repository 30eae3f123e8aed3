//! The system calls each thread kind may make once the guest runs, found with `strace -f` on
//! the VMM running the test guest through every device and the Linux test kernel (docs/vmm.md,
//! "Threads", has the table and how it was checked). Set-up (opening files, KVM, TAP, passt) is
//! over before any filter is installed, so none of those calls appear here.
//!
//! Arguments are checked where it is cheap and meaningful: ioctl request numbers per thread,
//! fcntl commands, no executable mappings, `clone` only for threads, `sendto` only on connected
//! sockets, `kill` only with SIGKILL, `prctl` only to name a thread.

use std::collections::BTreeMap;

use libc::c_ulong;
use seccompiler::{
    BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op,
    SeccompCondition as Cond, SeccompFilter, SeccompRule, TargetArch,
};
use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iow_nr};

use super::{Needs, ThreadKind};

// The KVM ioctls the vCPU threads make, numbered as kvm-ioctls numbers them (it keeps its
// numbers private).
const KVMIO: u32 = 0xAE;
ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_bindings::kvm_regs);
ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_bindings::kvm_sregs);
ioctl_iow_nr!(
    KVM_SET_GSI_ROUTING,
    KVMIO,
    0x6a,
    kvm_bindings::kvm_irq_routing
);
ioctl_iow_nr!(KVM_IRQFD, KVMIO, 0x76, kvm_bindings::kvm_irqfd);
ioctl_iow_nr!(KVM_IOEVENTFD, KVMIO, 0x79, kvm_bindings::kvm_ioeventfd);

#[derive(Default)]
struct Rules {
    map: BTreeMap<i64, Vec<SeccompRule>>,
}

fn cond(arg: u8, len: Len, op: Op, value: u64) -> Result<Cond, BackendError> {
    Cond::new(arg, len, op, value)
}

impl Rules {
    /// Allows the calls whatever their arguments.
    fn allow(&mut self, calls: &[libc::c_long]) {
        for &c in calls {
            // An empty rule list is an unconditional match.
            self.map.insert(c, Vec::new());
        }
    }

    /// Allows `call` when all of `conds` hold (several `allow_if`s for one call are
    /// alternatives). A call already allowed unconditionally stays so.
    fn allow_if(&mut self, call: libc::c_long, conds: Vec<Cond>) -> Result<(), BackendError> {
        let rule = SeccompRule::new(conds)?;
        match self.map.get_mut(&call) {
            Some(rules) if rules.is_empty() => {}
            Some(rules) => rules.push(rule),
            None => {
                self.map.insert(call, vec![rule]);
            }
        }
        Ok(())
    }

    /// Allows `call` when argument `arg` (32 bits) is one of `values`.
    fn allow_arg(
        &mut self,
        call: libc::c_long,
        arg: u8,
        values: &[u64],
    ) -> Result<(), BackendError> {
        for &v in values {
            self.allow_if(call, vec![cond(arg, Len::Dword, Op::Eq, v)?])?;
        }
        Ok(())
    }

    fn ioctls(&mut self, requests: &[c_ulong]) -> Result<(), BackendError> {
        let values: Vec<u64> = requests.iter().map(|&r| u64::from(r as u32)).collect();
        self.allow_arg(libc::SYS_ioctl, 1, &values)
    }

    fn compile(self, mismatch: SeccompAction) -> Result<BpfProgram, BackendError> {
        SeccompFilter::new(self.map, mismatch, SeccompAction::Allow, arch())?.try_into()
    }
}

/// The VMM is x86-64 only (its boot code, CPUID and the system call numbers here).
fn arch() -> TargetArch {
    TargetArch::x86_64
}

/// What every thread does whatever its kind: allocate, lock, tell the time, log to stderr,
/// run the SIGTERM/SIGINT handler (it sends a byte on a self-pipe socket), restore the terminal
/// from the panic hook, and end.
fn common(r: &mut Rules) -> Result<(), BackendError> {
    r.allow(&[
        libc::SYS_brk,
        libc::SYS_munmap,
        libc::SYS_madvise,
        libc::SYS_mremap,
        libc::SYS_futex,
        libc::SYS_sched_yield,
        // glibc's malloc sizes a thread's first arena by the CPU count.
        libc::SYS_sched_getaffinity,
        libc::SYS_clock_gettime,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_gettid,
        libc::SYS_getpid,
        // std's HashMap keys; the entropy device's data.
        libc::SYS_getrandom,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_sigaltstack,
        libc::SYS_restart_syscall,
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_close,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ]);
    // No executable memory: nothing the VMM does after start-up needs it.
    let not_exec = || cond(2, Len::Dword, Op::MaskedEq(libc::PROT_EXEC as u64), 0);
    r.allow_if(libc::SYS_mmap, vec![not_exec()?])?;
    r.allow_if(libc::SYS_mprotect, vec![not_exec()?])?;
    // send() is sendto() without an address: only connected sockets.
    r.allow_if(libc::SYS_sendto, vec![cond(4, Len::Qword, Op::Eq, 0)?])?;
    // tcsetattr is TCSETS, then TCGETS (glibc checks what a pty accepted).
    for request in [libc::TCSETS, libc::TCGETS] {
        r.allow_if(
            libc::SYS_ioctl,
            vec![
                cond(0, Len::Dword, Op::Eq, libc::STDIN_FILENO as u64)?,
                cond(1, Len::Dword, Op::Eq, u64::from(request as u32))?,
            ],
        )?;
    }
    r.allow_arg(
        libc::SYS_fcntl,
        1,
        &[
            libc::F_GETFD as u64,
            libc::F_SETFD as u64,
            libc::F_GETFL as u64,
            libc::F_SETFL as u64,
            // try_clone of eventfds and sockets.
            libc::F_DUPFD_CLOEXEC as u64,
        ],
    )?;
    Ok(())
}

/// Waits for the exit request, flushes the disks, restores the terminal, removes the socket
/// files (after checking they are still its own) and stops passt.
fn main_thread(r: &mut Rules, needs: &Needs) -> Result<(), BackendError> {
    r.allow(&[
        libc::SYS_fdatasync,
        libc::SYS_fsync,
        libc::SYS_statx,
        libc::SYS_newfstatat,
        libc::SYS_unlink,
    ]);
    if needs.passt {
        r.allow_arg(libc::SYS_kill, 1, &[libc::SIGKILL as u64])?;
        r.allow(&[libc::SYS_wait4]);
    }
    Ok(())
}

/// KVM_RUN and the device emulation that runs on exits: UART output (stdout, a file or a
/// socket), eventfd writes, MSI routes and doorbells moved by the guest, register dumps on a
/// crash, and the TAP offloads when a NIC's driver starts or resets.
fn vcpu_thread(r: &mut Rules, needs: &Needs) -> Result<(), BackendError> {
    r.ioctls(&[
        KVM_RUN(),
        KVM_GET_REGS(),
        KVM_GET_SREGS(),
        KVM_SET_GSI_ROUTING(),
        KVM_IRQFD(),
        KVM_IOEVENTFD(),
    ])?;
    if needs.tap {
        r.ioctls(&[libc::TUNSETOFFLOAD as c_ulong])?;
    }
    Ok(())
}

/// The event loop: doorbells, disk I/O, network frames (TAP, the passt socket and its log),
/// entropy, console input (stdin or the console socket), signals; with shares, the 9P server's
/// file operations, confined to the shares by p9 and [`crate::virtio::p9`].
fn io_thread(r: &mut Rules, needs: &Needs) -> Result<(), BackendError> {
    r.allow(&[
        libc::SYS_epoll_wait,
        libc::SYS_epoll_ctl,
        // Disks (lseek, then read or write), the TAP, the passt socket (recv, and writev for
        // its length prefix and the frame), console input.
        libc::SYS_read,
        libc::SYS_recvfrom,
        libc::SYS_lseek,
        libc::SYS_fdatasync,
        libc::SYS_fsync,
        // Discard and write-zeroes punch holes.
        libc::SYS_fallocate,
        // The console socket's clients.
        libc::SYS_accept4,
        libc::SYS_shutdown,
    ]);
    r.ioctls(&[libc::FIONBIO as c_ulong])?;
    if needs.shares {
        r.allow(&[
            libc::SYS_openat,
            libc::SYS_pread64,
            libc::SYS_pwrite64,
            libc::SYS_fstat,
            libc::SYS_newfstatat,
            libc::SYS_statx,
            libc::SYS_fstatfs,
            libc::SYS_getdents64,
            libc::SYS_readlinkat,
            libc::SYS_mkdirat,
            libc::SYS_mknodat,
            libc::SYS_symlinkat,
            libc::SYS_linkat,
            libc::SYS_renameat,
            libc::SYS_renameat2,
            libc::SYS_unlinkat,
            libc::SYS_fchmodat,
            libc::SYS_fchownat,
            libc::SYS_fchmod,
            libc::SYS_fchown,
            libc::SYS_utimensat,
            libc::SYS_ftruncate,
            libc::SYS_flock,
        ]);
    }
    Ok(())
}

/// The API socket: accept, request/reply or console traffic, and a thread per client (named
/// with prctl, started with clone for threads only: see [`clone3_enosys`]).
fn api_thread(r: &mut Rules) -> Result<(), BackendError> {
    r.allow(&[
        libc::SYS_accept4,
        libc::SYS_read,
        libc::SYS_recvfrom,
        libc::SYS_shutdown,
        libc::SYS_set_robust_list,
        libc::SYS_rseq,
        // Answered ENOSYS by the second program; allowed here so that program decides.
        libc::SYS_clone3,
    ]);
    let thread = libc::CLONE_THREAD as u64;
    r.allow_if(
        libc::SYS_clone,
        vec![cond(0, Len::Qword, Op::MaskedEq(thread), thread)?],
    )?;
    r.allow_arg(libc::SYS_prctl, 0, &[libc::PR_SET_NAME as u64])?;
    Ok(())
}

/// The allow-list of `kind`: anything else gets `mismatch`.
pub fn allow_list(
    kind: ThreadKind,
    needs: &Needs,
    mismatch: SeccompAction,
) -> Result<BpfProgram, BackendError> {
    let mut r = Rules::default();
    common(&mut r)?;
    match kind {
        ThreadKind::Main => main_thread(&mut r, needs)?,
        ThreadKind::Vcpu => vcpu_thread(&mut r, needs)?,
        ThreadKind::Io => io_thread(&mut r, needs)?,
        ThreadKind::Api => api_thread(&mut r)?,
    }
    r.compile(mismatch)
}

/// clone3 gets ENOSYS, everything else passes (the allow-list decides): glibc then creates
/// threads with clone, whose flags a filter can read.
pub fn clone3_enosys() -> Result<BpfProgram, BackendError> {
    let mut r = Rules::default();
    r.allow(&[libc::SYS_clone3]);
    SeccompFilter::new(
        r.map,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch(),
    )?
    .try_into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_ioctl_numbers_match_the_kernel_headers() {
        // From linux/kvm.h, as strace prints them.
        assert_eq!(KVM_RUN(), 0xae80);
        assert_eq!(KVM_GET_REGS(), 0x8090_ae81);
        assert_eq!(KVM_GET_SREGS(), 0x8138_ae83);
        assert_eq!(KVM_SET_GSI_ROUTING(), 0x4008_ae6a);
        assert_eq!(KVM_IRQFD(), 0x4020_ae76);
        assert_eq!(KVM_IOEVENTFD(), 0x4040_ae79);
    }
}
