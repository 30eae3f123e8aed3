//! When is a VM up? Where guests run user space: when its ssh port answers with an SSH banner
//! (`up`), or its console showed the boot marker (`vmctl run`, through the VMM's API). On a PVM
//! host (kernel only, see crate::host): when the kernel has handed over to init, which its
//! console shows, and the DHCP lease was handed out (dnsmasq's lease file in bridge mode, the
//! kernel's `IP-Config` line for passt's lease in user mode). An image that names its own
//! `boot_marker` is up when its console shows that.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::api::{self, Request};
use crate::cluster::spec::NetMode;
use crate::cluster::{Cluster, Node};
use crate::host::Kvm;
use crate::net::{dnsmasq, leases};
use crate::state::{ClusterDir, NodeDir};

/// Lines a kernel prints once it is done booting and starts (or looks for) init.
const KERNEL_DONE: &[&str] = &[
    "Run /init as init process",
    "Run /sbin/init as init process",
    "No working init found",
];

/// The text the VMM watches the console for (`--boot-marker`): the image's own, else a login
/// prompt where user space runs, else the kernel's hand-over to init.
pub fn boot_marker(kvm: Kvm, image_marker: Option<&str>) -> String {
    match (image_marker, kvm) {
        (Some(m), _) => m.to_string(),
        (None, Kvm::Full) => "login:".into(),
        (None, _) => "as init process".into(),
    }
}

/// Whether the console log shows the kernel finished booting; the line it printed.
pub fn kernel_booted(console_log: &Path) -> Option<String> {
    find_line(console_log, |l| KERNEL_DONE.iter().any(|m| l.contains(m)))
}

/// The first console line containing `text`.
pub fn console_line(console_log: &Path, text: &str) -> Option<String> {
    find_line(console_log, |l| l.contains(text))
}

fn find_line(console_log: &Path, pred: impl Fn(&str) -> bool) -> Option<String> {
    let text = std::fs::read(console_log).ok()?;
    let text = String::from_utf8_lossy(&text);
    text.lines().find(|l| pred(l)).map(|l| l.trim().to_string())
}

/// The address the kernel's own DHCP client (`ip=dhcp`) got, from its console line
/// `IP-Config: Got DHCP answer from S, my address is A`.
pub fn kernel_dhcp_address(console_log: &Path) -> Option<(Ipv4Addr, String)> {
    let line = console_line(console_log, "IP-Config: Got DHCP answer from")?;
    let addr = line.rsplit("my address is ").next()?.trim().parse().ok()?;
    Some((addr, line))
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

/// Whether the VMM's API says its boot marker has been seen; `None` when the VMM does not
/// answer (it is starting, or gone).
pub fn marker_seen(api_socket: &Path) -> Option<bool> {
    let reply = api::call(api_socket, &Request::Status, Duration::from_secs(2)).ok()?;
    Some(reply.boot_marker.is_some_and(|m| m.seen))
}

/// Who is asking: `up` waits for sshd where user space runs; a supervisor (`vmctl run`) takes
/// the boot marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Up,
    Run,
}

/// What has been seen of a booting node so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The VMM's API reported the boot marker (or, without an answer, the console showed it).
    pub marker: bool,
    /// The console line that shows the kernel handed over to init.
    pub kernel_line: Option<String>,
    /// The DHCP lease: the address, and where it was seen.
    pub lease: Option<(Ipv4Addr, String)>,
    pub ssh: bool,
}

/// The place the node's address comes from: dnsmasq's lease for its MAC on a bridge (handed out
/// since the VMM started, when it runs), the kernel's console line for passt's lease in user
/// mode (the console log starts afresh with each start).
pub fn lease(cluster: &Cluster, node: &Node, dir: &ClusterDir) -> Option<(Ipv4Addr, String)> {
    match cluster.network.mode {
        NetMode::Bridge => {
            let file = dnsmasq::files(&dir.net()).leases;
            let started = std::fs::metadata(dir.node(&node.name).pid_file())
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
            leases::for_mac(&file, &node.mac)
                .filter(|l| {
                    // A couple of seconds of slack for clocks that tick coarsely.
                    started.is_none_or(|s| l.expiry.saturating_sub(dnsmasq::LEASE_SECS) + 2 >= s)
                })
                .map(|l| {
                    (
                        l.ip,
                        format!("dnsmasq's lease file: {} {} {}", l.mac, l.ip, l.hostname),
                    )
                })
        }
        NetMode::User => kernel_dhcp_address(&dir.node(&node.name).console_log())
            .map(|(ip, line)| (ip, format!("console: {line}"))),
    }
}

pub fn observe(
    cluster: &Cluster,
    node: &Node,
    dir: &ClusterDir,
    kvm: Kvm,
    purpose: Purpose,
) -> Observed {
    let nd: NodeDir = dir.node(&node.name);
    let marker_text = boot_marker(kvm, cluster.image.boot_marker.as_deref());
    let marker = marker_seen(&nd.api_socket())
        .unwrap_or_else(|| console_line(&nd.console_log(), &marker_text).is_some());
    let ssh = kvm == Kvm::Full
        && purpose == Purpose::Up
        && cluster.image.boot_marker.is_none()
        && ssh_addr(cluster, node).is_some_and(ssh_answers);
    Observed {
        marker,
        kernel_line: kernel_booted(&nd.console_log()),
        lease: lease(cluster, node, dir),
        ssh,
    }
}

impl Observed {
    /// Whether the node counts as up, and if so, one line saying what was verified.
    pub fn up(&self, cluster: &Cluster, kvm: Kvm, purpose: Purpose) -> Option<String> {
        let lease = self
            .lease
            .as_ref()
            .map(|(ip, from)| format!("; lease {ip} ({from})"))
            .unwrap_or_default();
        if let Some(m) = &cluster.image.boot_marker {
            return self
                .marker
                .then(|| format!("booted (console showed {m:?}){lease}"));
        }
        match (kvm, purpose) {
            (Kvm::Full, Purpose::Up) => self.ssh.then(|| format!("up: ssh answers{lease}")),
            (Kvm::Full, Purpose::Run) => self.marker.then(|| format!("booted{lease}")),
            // The lease comes before the hand-over to init (ip=dhcp runs first): wait for both,
            // so the report says everything that can be verified here.
            _ => match (&self.kernel_line, &self.lease) {
                (Some(k), Some(_)) => Some(format!(
                    "kernel booted (console: {k:?}){lease}; user space cannot run on this host"
                )),
                _ => None,
            },
        }
    }

    /// For a node that did not come up in time: what was and was not seen.
    pub fn missing(&self, cluster: &Cluster, kvm: Kvm) -> String {
        if let Some(m) = &cluster.image.boot_marker {
            return format!("its console never showed {m:?}");
        }
        match kvm {
            Kvm::Full => "ssh does not answer".into(),
            _ => match (&self.kernel_line, &self.lease) {
                (None, None) => "the kernel has not finished booting and has no DHCP lease".into(),
                (None, Some(_)) => {
                    "it has its DHCP lease but the kernel has not handed over to init".into()
                }
                (Some(_), None) => format!(
                    "the kernel booted but got no DHCP lease (is ip=dhcp overridden in the cmdline?{})",
                    if cluster.network.mode == NetMode::Bridge {
                        " see dnsmasq.log"
                    } else {
                        ""
                    }
                ),
                (Some(_), Some(_)) => "unknown".into(),
            },
        }
    }
}

/// Where the node's sshd answers, as seen from the host.
pub fn ssh_addr(cluster: &Cluster, node: &Node) -> Option<SocketAddr> {
    match cluster.network.mode {
        NetMode::Bridge => node.ip.map(|ip| SocketAddr::from((ip, 22))),
        NetMode::User => node.ssh_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
    }
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
    fn reads_the_kernels_dhcp_address() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("console.log");
        std::fs::write(&p, "Sending DHCP requests ., OK\n").unwrap();
        assert_eq!(kernel_dhcp_address(&p), None);
        std::fs::write(
            &p,
            "Sending DHCP requests ., OK\nIP-Config: Got DHCP answer from 10.0.2.2, my address is 10.0.2.15\nIP-Config: Complete:\n",
        )
        .unwrap();
        assert_eq!(
            kernel_dhcp_address(&p).map(|(a, _)| a),
            Some(Ipv4Addr::new(10, 0, 2, 15))
        );
    }

    #[test]
    fn markers_by_host_and_image() {
        assert_eq!(boot_marker(Kvm::Full, None), "login:");
        assert_eq!(boot_marker(Kvm::KernelOnly, None), "as init process");
        assert_eq!(boot_marker(Kvm::KernelOnly, Some("ready")), "ready");
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

    fn cluster(mode: NetMode, marker: Option<&str>) -> Cluster {
        Cluster {
            name: "c".into(),
            source: None,
            image: crate::cluster::Image {
                kernel: "k".into(),
                initrd: None,
                cmdline: String::new(),
                boot_marker: marker.map(str::to_string),
            },
            network: crate::cluster::Network {
                mode,
                bridge: None,
                subnet: None,
                gateway: None,
                mtu: 1500,
            },
            nodes: vec![],
        }
    }

    #[test]
    fn what_counts_as_up_where() {
        let bridge = cluster(NetMode::Bridge, None);
        let lease = Some((Ipv4Addr::new(10, 0, 0, 2), "dnsmasq".to_string()));
        let kernel = Some("Run /init as init process".to_string());
        // PVM: the kernel's hand-over to init and the lease, both.
        let only_lease = Observed {
            lease: lease.clone(),
            ..Default::default()
        };
        assert_eq!(only_lease.up(&bridge, Kvm::KernelOnly, Purpose::Up), None);
        assert!(
            only_lease
                .missing(&bridge, Kvm::KernelOnly)
                .contains("has not handed over to init")
        );
        let only_kernel = Observed {
            kernel_line: kernel.clone(),
            ..Default::default()
        };
        assert_eq!(only_kernel.up(&bridge, Kvm::KernelOnly, Purpose::Run), None);
        assert!(
            only_kernel
                .missing(&bridge, Kvm::KernelOnly)
                .contains("got no DHCP lease")
        );
        let both = Observed {
            kernel_line: kernel,
            lease,
            ..Default::default()
        };
        let said = both.up(&bridge, Kvm::KernelOnly, Purpose::Up).unwrap();
        assert!(
            said.starts_with("kernel booted (console: \"Run /init"),
            "{said}"
        );
        assert!(said.contains("lease 10.0.0.2 (dnsmasq)"), "{said}");
        assert!(
            said.ends_with("user space cannot run on this host"),
            "{said}"
        );
        // vmx/svm: up wants ssh, run takes the boot marker.
        let marker = Observed {
            marker: true,
            ..Default::default()
        };
        assert_eq!(marker.up(&bridge, Kvm::Full, Purpose::Up), None);
        assert!(marker.up(&bridge, Kvm::Full, Purpose::Run).is_some());
        let ssh = Observed {
            ssh: true,
            ..Default::default()
        };
        assert!(ssh.up(&bridge, Kvm::Full, Purpose::Up).is_some());
        // An image's own marker decides everywhere.
        let own = cluster(NetMode::User, Some("ready"));
        assert!(marker.up(&own, Kvm::KernelOnly, Purpose::Up).is_some());
        assert_eq!(both.up(&own, Kvm::Full, Purpose::Up), None);
        assert!(both.missing(&own, Kvm::Full).contains("\"ready\""));
    }
}
