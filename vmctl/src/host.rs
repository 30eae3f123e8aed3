//! What this host's KVM can run. Where /dev/kvm exists but the CPU shows neither `vmx` nor `svm`
//! (a PVM host: see docs/vmctl.md), guest kernels run but guest user space does not, and only
//! kernels built for it boot.

use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kvm {
    /// Hardware virtualization: full guests.
    Full,
    /// /dev/kvm without vmx/svm: guest kernels only.
    KernelOnly,
    Missing,
}

pub fn kvm() -> Kvm {
    classify(
        Path::new("/dev/kvm").exists(),
        &std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default(),
    )
}

pub fn classify(dev_kvm: bool, cpuinfo: &str) -> Kvm {
    if !dev_kvm {
        return Kvm::Missing;
    }
    let hw = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if hw { Kvm::Full } else { Kvm::KernelOnly }
}

/// The one line `up` prints on such hosts.
pub const KERNEL_ONLY_NOTE: &str = "note: this host's KVM cannot run guest user space (no vmx/svm in /proc/cpuinfo: a PVM host); vmctl boots the kernels without the image's initrd and checks that each boots and gets its DHCP lease instead of waiting for ssh";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_cpu_flags() {
        assert_eq!(classify(false, "flags : vmx"), Kvm::Missing);
        assert_eq!(classify(true, "flags\t\t: fpu vmx sse"), Kvm::Full);
        assert_eq!(classify(true, "flags\t\t: fpu svm"), Kvm::Full);
        assert_eq!(classify(true, "flags\t\t: fpu sse vmxx"), Kvm::KernelOnly);
    }
}
