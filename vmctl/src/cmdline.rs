//! The kernel command line CoreOS-family guests need, in the order the kernel and the initrd
//! read it; the image's and node's own options come last, so they win where the kernel takes
//! the last occurrence.

use crate::host::Kvm;

/// /usr is the first disk (vda), the root the second (vdb): the VMM adds disks in the order
/// given, and virtio-pci names them in that order.
pub const USR_DEVICE: &str = "/dev/vda";
pub const ROOT_DEVICE: &str = "/dev/vdb";

/// What a kernel needs under PVM (see docs/vmctl.md): the test kernel's options.
pub const KERNEL_ONLY_OPTIONS: &str = "noxsave clearcpuid=popcnt,cx16,smap,smep,umip random.trust_cpu=1 8250.nr_uarts=1 i8042.noaux i8042.nokbd i8042.nopnp";

pub struct CmdlineInput<'a> {
    pub has_usr: bool,
    /// The root disk was just made: Flatcar runs Ignition and first-boot setup.
    pub first_boot: bool,
    pub kvm: Kvm,
    pub image: &'a str,
    pub node: &'a str,
}

pub fn build(i: &CmdlineInput<'_>) -> String {
    let mut parts: Vec<String> = vec!["console=ttyS0".into()];
    if i.has_usr {
        parts.push(format!("mount.usr={USR_DEVICE}"));
        parts.push("mount.usrfstype=squashfs".into());
        parts.push("mount.usrflags=ro".into());
    }
    // A device path, not LABEL=ROOT: the kernel mounts it by itself when no initrd user space
    // runs (PVM hosts), and Flatcar's initrd accepts it too.
    parts.push(format!(
        "root={}",
        if i.has_usr { ROOT_DEVICE } else { USR_DEVICE }
    ));
    parts.push("rootfstype=ext4".into());
    parts.push("rw".into());
    if i.first_boot {
        parts.push("flatcar.first_boot=1".into());
    }
    if i.kvm == Kvm::KernelOnly {
        parts.push(KERNEL_ONLY_OPTIONS.into());
        parts.push("ip=dhcp".into());
    }
    for extra in [i.image, i.node] {
        let extra = extra.trim();
        if !extra.is_empty() {
            parts.push(extra.to_string());
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(kvm: Kvm, first_boot: bool) -> CmdlineInput<'static> {
        CmdlineInput {
            has_usr: true,
            first_boot,
            kvm,
            image: "flatcar.autologin",
            node: "",
        }
    }

    #[test]
    fn coreos_options_then_the_files_own() {
        let c = build(&input(Kvm::Full, false));
        assert_eq!(
            c,
            "console=ttyS0 mount.usr=/dev/vda mount.usrfstype=squashfs mount.usrflags=ro root=/dev/vdb rootfstype=ext4 rw flatcar.autologin"
        );
    }

    #[test]
    fn pvm_hosts_get_the_test_kernel_options_and_dhcp() {
        let c = build(&input(Kvm::KernelOnly, true));
        assert!(c.contains("flatcar.first_boot=1"));
        assert!(c.contains(KERNEL_ONLY_OPTIONS));
        assert!(c.contains(" ip=dhcp "));
        assert!(c.ends_with("flatcar.autologin"));
    }

    #[test]
    fn without_usr_the_root_is_the_only_disk() {
        let mut i = input(Kvm::Full, false);
        i.has_usr = false;
        let c = build(&i);
        assert!(c.contains("root=/dev/vda"));
        assert!(!c.contains("mount.usr"));
    }
}
