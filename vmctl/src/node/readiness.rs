//! When is a VM up? Where guests run user space: when its ssh port answers with an SSH banner.
//! On a PVM host (kernel only, see crate::host): when the kernel has finished booting and hands
//! over to init, which its console shows; the DHCP lease is reported beside it.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::host::Kvm;

/// Lines a kernel prints once it is done booting and starts (or looks for) init.
const KERNEL_DONE: &[&str] = &[
    "Run /init as init process",
    "Run /sbin/init as init process",
    "No working init found",
];

/// The text the VMM times the boot by (`--boot-marker`).
pub fn boot_marker(kvm: Kvm) -> &'static str {
    match kvm {
        Kvm::Full => "login:",
        _ => "as init process",
    }
}

/// Whether the console log shows the kernel finished booting; the line it printed.
pub fn kernel_booted(console_log: &Path) -> Option<String> {
    let text = std::fs::read(console_log).ok()?;
    let text = String::from_utf8_lossy(&text);
    text.lines()
        .find(|l| KERNEL_DONE.iter().any(|m| l.contains(m)))
        .map(|l| l.trim().to_string())
}

/// Whether something speaking SSH answers at `addr`.
pub fn ssh_answers(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut banner = [0u8; 4];
    // A port forwarder accepts before the guest listens; only the banner proves sshd is there.
    s.read_exact(&mut banner).is_ok() && &banner == b"SSH-"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_kernel_handover_line() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("console.log");
        std::fs::write(&p, "[    0.1] virtio_blk virtio1: [vda]\n").unwrap();
        assert_eq!(kernel_booted(&p), None);
        std::fs::write(
            &p,
            "[    0.1] x\n[   61.0] Run /sbin/init as init process\n",
        )
        .unwrap();
        assert_eq!(
            kernel_booted(&p).as_deref(),
            Some("[   61.0] Run /sbin/init as init process")
        );
    }

    #[test]
    fn ssh_needs_a_banner_not_just_a_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let (a, _) = l.accept().unwrap();
            drop(a);
            let (mut b, _) = l.accept().unwrap();
            std::io::Write::write_all(&mut b, b"SSH-2.0-test\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(200));
        });
        assert!(!ssh_answers(addr));
        assert!(ssh_answers(addr));
        h.join().unwrap();
    }
}
