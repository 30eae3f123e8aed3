//! virtio-net end to end, in network namespaces each test creates (and always deletes): no test
//! touches the host's own network.
//!
//! - The test guest (`net` mode) against a packet socket on the TAP: plain frames both ways,
//!   partial checksums and TCP segmentation offload both ways (so TUNSETOFFLOAD really mirrors
//!   what the guest accepted), garbage transmit chains, the MAC and the TAP's MTU in the
//!   configuration space.
//! - The TAP the VMM creates itself (as root), and the errors for TAPs that cannot be used.
//! - passt: start-up errors, and that it goes away with the VMM.
//! - The test kernel with `ip=dhcp` (the kernel's own DHCP client, no guest user space here):
//!   a lease from a real dnsmasq over a TAP on a bridge, jumbo frames over a 9000-byte MTU
//!   bridge, and a lease from passt with a working host port forward.

mod common;

use std::ffi::CString;
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::{NetNs, Vm, run_ok};
use common::{Finished, Running, kernel_dir, test_guest, vmm_bin};

/// What the test kernel needs on a PVM host (environment.md).
const BASE_CMDLINE: &str = "console=ttyS0 noxsave clearcpuid=popcnt,cx16,smap,smep,umip \
    random.trust_cpu=1 8250.nr_uarts=1 i8042.noaux i8042.nokbd i8042.nopnp";
/// After `ip=dhcp` the kernel waits for a root disk that never comes, with its network stack
/// running, so the host can still talk to it.
const NET_CMDLINE: &str = "ip=dhcp root=/dev/vdz rootwait";
/// Linux boots take minutes here, more when other jobs share the machine.
const LINUX_BOOT: Duration = Duration::from_secs(1200);
const GUEST_MAC: &str = "52:54:00:12:34:56";

// ---- network namespaces ----

/// A helper process killed (by its own PID) when the test ends, however it ends.
struct Helper(Child);

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---- a packet socket on the TAP ----

/// `struct virtio_net_hdr` as packet sockets use it (10 bytes, no num_buffers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct VnetHdr {
    flags: u8,
    gso_type: u8,
    hdr_len: u16,
    gso_size: u16,
    csum_start: u16,
    csum_offset: u16,
}

impl VnetHdr {
    fn parse(b: &[u8]) -> VnetHdr {
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        }
    }

    fn bytes(&self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }
}

/// An AF_PACKET socket bound to one interface, with virtio-net headers on every frame: what
/// the host's side of the TAP sees and sends, offload metadata included.
struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

const ETH_P_ALL: u16 = 0x0003;
const PACKET_OUTGOING: u8 = 4;

impl PacketSocket {
    /// Must run inside the namespace (see [`NetNs::enter`]).
    fn bind(ifname: &str) -> PacketSocket {
        // SAFETY: socket() with constant arguments.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL.to_be()),
            )
        };
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = CString::new(ifname).unwrap();
        // SAFETY: a NUL-terminated name that outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
        assert!(ifindex > 0, "no interface {ifname}");
        let one: libc::c_int = 1;
        // SAFETY: PACKET_VNET_HDR takes an int; the pointer and length describe `one`.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_VNET_HDR,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        assert_eq!(r, 0, "PACKET_VNET_HDR: {}", std::io::Error::last_os_error());
        // SAFETY: sockaddr_ll is plain old data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: the address is a valid sockaddr_ll of the size given.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
        PacketSocket { fd, ifindex }
    }

    /// The next frame arriving from the VMM (not ones the host sends), with its header.
    fn recv(&self, deadline: Instant) -> Option<(VnetHdr, Vec<u8>)> {
        let mut buf = vec![0u8; 70000];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, 1000) as i32;
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
                continue;
            }
            // SAFETY: sockaddr_ll is plain old data.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: the buffer and address outlive the call and their sizes are given.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut from_len,
                )
            };
            if n < 10 || from.sll_pkttype == PACKET_OUTGOING {
                continue;
            }
            let n = n as usize;
            return Some((VnetHdr::parse(&buf[..10]), buf[10..n].to_vec()));
        }
    }

    /// Sends a frame out of the interface, i.e. into the TAP, towards the VMM.
    fn send(&self, hdr: VnetHdr, frame: &[u8]) {
        let mut buf = hdr.bytes().to_vec();
        buf.extend_from_slice(frame);
        // SAFETY: sockaddr_ll is plain old data.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = ETH_P_ALL.to_be();
        to.sll_ifindex = self.ifindex;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: the buffer and address outlive the call and their sizes are given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(
            n,
            buf.len() as isize,
            "sendto: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn mac_bytes(mac: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (b, p) in m.iter_mut().zip(mac.split(':')) {
        *b = u8::from_str_radix(p, 16).unwrap();
    }
    m
}

/// Ethernet + IPv4 (10.0.0.1 -> 10.0.0.2) + TCP to port 7779, with the partial checksum a
/// NEEDS_CSUM frame carries; payload byte at frame offset i is (i * 5) & 0xff.
fn tcp_frame(dst: [u8; 6], payload: usize) -> Vec<u8> {
    let tcp_len = 20 + payload;
    let total = 20 + tcp_len;
    let mut f = Vec::with_capacity(14 + total);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let csum = !fold(
        ip.chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum(),
    );
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&7777u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&7779u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18;
    tcp[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
    let pseudo = fold(0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 6 + tcp_len as u32);
    tcp[16..18].copy_from_slice(&pseudo.to_be_bytes());
    f.extend_from_slice(&tcp);
    let start = f.len();
    f.extend((start..start + payload).map(|i| (i * 5) as u8));
    f
}

fn fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn wait_for_line(r: &Running, what: &str, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if r.stdout().contains(what) {
            return true;
        }
        if r.stderr().contains("error:") {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
#[ignore = "needs root, network namespaces, /dev/kvm and the test guest; run by scripts/test.sh"]
fn test_guest_exchanges_frames_and_offloads_over_a_tap() {
    frames_and_offloads_over_a_tap(None);
}

/// The test guest's `net` mode against a packet socket on the TAP; the VMM runs as `user`
/// (with a disk too) when given.
fn frames_and_offloads_over_a_tap(user: Option<&Unprivileged>) {
    let ns = NetNs::new(if user.is_some() { "user" } else { "frames" });
    ns.tap_for("tap0", 9000, None, user.map(|u| u.uid));
    let sock = ns.enter(|| PacketSocket::bind("tap0"));
    let net = format!("tap=tap0,mac={GUEST_MAC}");
    let r = match user {
        None => {
            let guest = test_guest();
            ns.vmm(&[
                "--kernel",
                guest.to_str().unwrap(),
                "--memory",
                "64",
                "--net",
                &net,
                "--cmdline",
                "net",
            ])
        }
        Some(u) => {
            let disk = format!("path={}", u.disk().display());
            let cmd = u.command(&[
                "--kernel",
                u.guest().to_str().unwrap(),
                "--memory",
                "64",
                "--disk",
                &disk,
                "--net",
                &net,
                "--cmdline",
                "net",
            ]);
            Vm(Some(
                ns.enter(|| Running::spawn_command(cmd, Stdio::null())),
            ))
        }
    };

    // From the guest: plain, partial checksum, GSO, then (after garbage) plain again.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while got.len() < 4 {
        let Some((hdr, frame)) = sock.recv(deadline) else {
            break;
        };
        let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        if ethertype == 0x88b5 || (ethertype == 0x0800 && [6, 17].contains(&frame[23])) {
            got.push((hdr, frame));
        }
    }
    let dump = |r: &Running| {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            r.stdout(),
            r.stderr()
        )
    };
    assert_eq!(got.len(), 4, "frames from the guest: {got:?}\n{}", dump(&r));
    let (hdr, frame) = &got[0];
    assert_eq!(*hdr, VnetHdr::default());
    assert_eq!(frame.len(), 60);
    assert_eq!(&frame[6..12], &mac_bytes(GUEST_MAC));
    assert!(frame[14..].starts_with(b"vmm-net-test plain 1"));
    let (hdr, frame) = &got[1];
    assert_eq!(frame[23], 17, "UDP");
    assert_eq!(
        (hdr.flags, hdr.csum_start, hdr.csum_offset),
        (1, 34, 6),
        "the partial checksum reached the host as such"
    );
    let (hdr, frame) = &got[2];
    assert_eq!(
        frame.len(),
        14 + 20 + 20 + 4000,
        "one 4000-byte TCP segment"
    );
    assert_eq!(
        (
            hdr.flags,
            hdr.gso_type,
            hdr.gso_size,
            hdr.csum_start,
            hdr.csum_offset
        ),
        (1, 1, 1000, 34, 16),
        "GSO metadata passed to the TAP"
    );
    assert!(
        frame[54..]
            .iter()
            .enumerate()
            .all(|(i, b)| *b == ((i + 20) * 3) as u8),
        "TCP payload"
    );
    let (_, frame) = &got[3];
    assert!(
        frame[14..].starts_with(b"vmm-net-test plain 2"),
        "the garbage chains were dropped, the next frame went out"
    );

    // To the guest: a full-size plain frame and a 6000-byte TCP segment with GSO.
    assert!(
        wait_for_line(&r, "guest: net ready for rx", Duration::from_secs(60)),
        "{}",
        dump(&r)
    );
    let guest_mac = mac_bytes(GUEST_MAC);
    let mut plain = guest_mac.to_vec();
    plain.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x88, 0xb5]);
    plain.extend((14..1514).map(|i| (i * 7) as u8));
    sock.send(VnetHdr::default(), &plain);
    let tcp = tcp_frame(guest_mac, 6000);
    sock.send(
        VnetHdr {
            flags: 1,
            gso_type: 1,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        },
        &tcp,
    );
    let r = r.wait(Duration::from_secs(60));
    assert_eq!(r.code(), Some(32), "guest verdict\n{}", r.dump());
    for line in [
        &format!("guest: net mac={GUEST_MAC} mtu=9000 status=1") as &str,
        "guest: net rx plain len=1514 ok",
        // Whole (GUEST_TSO4 mirrored onto the TAP), spread over three 2 KiB buffers.
        "guest: net rx tcp len=6054 flags=1 gso_type=1 gso_size=1448 num_buffers=3 ok",
        "guest: PASS",
    ] {
        assert!(r.stdout.contains(line), "missing '{line}'\n{}", r.dump());
    }
}

// ---- an unprivileged VMM ----

/// A user that is not root and has no capabilities, in a "kvm" group: the VMM runs as it
/// through setpriv. Nothing on the host changes: the uid and gids are bare numbers (no
/// /etc/passwd entry needed), and device nodes with a distribution's usual permissions
/// (udev's `root:kvm 0660` for /dev/kvm, `0666` for /dev/net/tun; some containers have both
/// 0600) are bind-mounted over the real ones in a mount namespace of the VMM's own.
struct Unprivileged {
    uid: u32,
    gid: u32,
    kvm_gid: u32,
    /// Readable by the user: the VMM and the guest are copied here (the build tree or the
    /// cache may be under a home the user cannot enter), and the disk is the user's.
    dir: tempfile::TempDir,
}

impl Unprivileged {
    fn new() -> Unprivileged {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let (uid, gid, kvm_gid) = (61234, 61234, 61235);
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for (from, to) in [(vmm_bin(), "vmm"), (test_guest(), "guest.elf")] {
            std::fs::copy(&from, dir.path().join(to)).unwrap();
        }
        let disk = dir.path().join("disk.img");
        common::pattern_disk(&disk, 1 << 20);
        std::os::unix::fs::chown(&disk, Some(uid), Some(gid)).unwrap();
        for (real, node, group, mode) in [
            ("/dev/kvm", "kvm", kvm_gid, 0o660),
            ("/dev/net/tun", "tun", 0, 0o666),
        ] {
            let rdev = std::fs::metadata(real).unwrap().rdev();
            let path = dir.path().join(node);
            let c = CString::new(path.to_str().unwrap()).unwrap();
            // SAFETY: mknod with a valid path; the device number is the real node's own.
            let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | mode, rdev) };
            assert_eq!(r, 0, "mknod: {}", std::io::Error::last_os_error());
            std::os::unix::fs::chown(&path, Some(0), Some(group)).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        Unprivileged {
            uid,
            gid,
            kvm_gid,
            dir,
        }
    }

    fn guest(&self) -> std::path::PathBuf {
        self.dir.path().join("guest.elf")
    }

    fn disk(&self) -> std::path::PathBuf {
        self.dir.path().join("disk.img")
    }

    /// The VMM with `args`, as the user: no capabilities, no root group, in the "kvm" group
    /// unless `kvm_group` is false.
    fn command_with(&self, args: &[&str], kvm_group: bool) -> Command {
        let groups = if kvm_group {
            format!("--groups={}", self.kvm_gid)
        } else {
            "--clear-groups".to_owned()
        };
        let script = r#"mount --bind "$0/kvm" /dev/kvm && mount --bind "$0/tun" /dev/net/tun &&
            u=$1 g=$2 groups=$3 && shift 3 &&
            exec setpriv --reuid="$u" --regid="$g" "$groups" --inh-caps=-all \
                --bounding-set=-all -- "$@""#;
        let mut c = Command::new("unshare");
        c.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
        ])
        .arg(self.dir.path())
        .args([self.uid.to_string(), self.gid.to_string(), groups])
        .arg(self.dir.path().join("vmm"))
        .args(args);
        c
    }

    fn command(&self, args: &[&str]) -> Command {
        self.command_with(args, true)
    }
}

#[test]
#[ignore = "needs root, network namespaces, /dev/kvm and the test guest; run by scripts/test.sh"]
fn an_unprivileged_user_in_the_kvm_group_runs_a_vm_with_a_disk_and_a_pre_created_tap() {
    let user = Unprivileged::new();
    let guest = user.guest();
    let guest = guest.to_str().unwrap();
    // Outside the group the VMM cannot open /dev/kvm, and says what to do.
    let out = user
        .command_with(&["--kernel", guest], false)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot open /dev/kvm") && err.contains("kvm group"),
        "{err}"
    );

    // In it: the test guest's disk test (read, write, flush, write-zeroes, garbage) on the
    // user's image, checked in the file afterwards.
    let disk = format!("path={},serial=user-disk", user.disk().display());
    let mut cmd = user.command(&[
        "--kernel",
        guest,
        "--memory",
        "64",
        "--disk",
        &disk,
        "--cmdline",
        "expect_cpus=1 noinput",
    ]);
    cmd.stdin(Stdio::null());
    let r = Running::spawn_command(cmd, Stdio::null()).wait(Duration::from_secs(60));
    assert_eq!(r.code(), Some(32), "{}", r.dump());
    for line in [
        "guest: disk0 id=user-disk",
        "guest: disk0 done",
        "guest: PASS",
    ] {
        assert!(r.stdout.contains(line), "missing '{line}'\n{}", r.dump());
    }
    let data = std::fs::read(user.disk()).unwrap();
    assert!(
        data[100 * 512..101 * 512].starts_with(b"written by the test guest"),
        "the guest's write reached the user's image"
    );

    // And frames with offloads over a TAP the user owns (the disk attached too).
    frames_and_offloads_over_a_tap(Some(&user));

    // It really ran as the user: an image only root may write is refused.
    let root_disk = user.dir.path().join("root-only.img");
    common::pattern_disk(&root_disk, 1 << 20);
    let disk = format!("path={}", root_disk.display());
    let out = user
        .command(&["--kernel", guest, "--disk", &disk])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("ermission denied"), "{err}");
}

/// CPU time (user + system) a process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Frames keep arriving for a guest that posted no receive buffers: the VMM parks one frame
/// and stops reading the TAP instead of spinning on it. And a TAP deleted under the VMM.
#[test]
#[ignore = "needs root, network namespaces, /dev/kvm and the test guest; run by scripts/test.sh"]
fn no_receive_buffers_means_no_busy_loop() {
    let guest = test_guest();
    let ns = NetNs::new("nobufs");
    ns.tap("tap0", 1500, None);
    let sock = ns.enter(|| PacketSocket::bind("tap0"));
    let r = ns.vmm(&[
        "--kernel",
        guest.to_str().unwrap(),
        "--memory",
        "64",
        "--net",
        "tap=tap0",
        "--cmdline",
        "net nobufs",
    ]);
    assert!(
        wait_for_line(
            &r,
            "guest: net without receive buffers",
            Duration::from_secs(60)
        ),
        "{}\n{}",
        r.stdout(),
        r.stderr()
    );
    let pid = r.child.id();
    let mut frame = vec![0xffu8; 6];
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x88, 0xb5]);
    frame.resize(60, 0);
    // SAFETY: sysconf has no memory arguments.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let before = cpu_ticks(pid);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        for _ in 0..100 {
            sock.send(VnetHdr::default(), &frame);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let used = cpu_ticks(pid) - before;
    // A spinning event loop burns a whole core: about 2 s here. Waiting costs next to nothing.
    assert!(
        used * 10 < hz,
        "the VMM used {used} ticks ({hz}/s) in 2 s with a full TAP and no guest buffers"
    );

    let r = r.kill();
    assert!(r.status.is_none(), "the VMM kept running\n{}", r.dump());

    // The TAP deleted under a VMM that is reading it: the link goes down, and the dead
    // descriptor (always readable, as an error) leaves the event loop instead of spinning it.
    drop(sock);
    let r = ns.vmm(&[
        "--kernel",
        guest.to_str().unwrap(),
        "--memory",
        "64",
        "--net",
        "tap=tap0",
        "--cmdline",
        "net rxidle",
    ]);
    assert!(
        wait_for_line(
            &r,
            "guest: net idle with receive buffers",
            Duration::from_secs(60)
        ),
        "{}\n{}",
        r.stdout(),
        r.stderr()
    );
    ns.ip(&["link", "del", "tap0"]);
    assert!(
        wait_for_stderr(&r, "backend gone, link down", Duration::from_secs(10)),
        "{}",
        r.stderr()
    );
    let pid = r.child.id();
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(pid) - before;
    assert!(
        used * 10 < hz,
        "the VMM used {used} ticks in 1 s after its TAP went away"
    );
    let r = r.kill();
    assert!(r.status.is_none(), "the VMM kept running\n{}", r.dump());
}

fn wait_for_stderr(r: &Running, what: &str, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if r.stderr().contains(what) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
#[ignore = "needs root, network namespaces, /dev/kvm and the test guest; run by scripts/test.sh"]
fn vmm_creates_a_missing_tap_and_it_goes_away_with_the_vmm() {
    let guest = test_guest();
    let ns = NetNs::new("create");
    let r = ns.vmm(&[
        "--kernel",
        guest.to_str().unwrap(),
        "--memory",
        "64",
        "--net",
        "tap=vmmnew0",
        "--cmdline",
        "idle",
    ]);
    assert!(
        wait_for_line(&r, "guest: idle", Duration::from_secs(60)),
        "{}",
        r.stderr()
    );
    let link = ns.ip(&["-o", "link", "show", "vmmnew0"]);
    assert!(link.contains("state UP") || link.contains(",UP"), "{link}");
    let detail = ns.ip(&["-d", "-o", "link", "show", "vmmnew0"]);
    assert!(detail.contains("tun type tap"), "{detail}");
    let r = r.kill();
    assert!(
        r.status.is_none(),
        "the VMM was stopped by the test\n{}",
        r.dump()
    );
    let gone = Command::new("ip")
        .args(["-n", &ns.name, "link", "show", "vmmnew0"])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "the TAP outlived the VMM");
}

/// Runs the VMM where nothing but its networking can fail first (a kernel file that exists;
/// NICs are opened before KVM is touched).
fn vmm_in(ns: &NetNs, net: &str) -> Finished {
    let tmp = tempfile::tempdir().unwrap();
    let kernel = tmp.path().join("kernel");
    std::fs::write(&kernel, b"not reached").unwrap();
    ns.vmm(&["--kernel", kernel.to_str().unwrap(), "--net", net])
        .wait(Duration::from_secs(30))
}

fn assert_one_line_error(r: &Finished, needle: &str) {
    assert_eq!(r.code(), Some(2), "{}", r.dump());
    let lines: Vec<_> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line\n{}", r.dump());
    assert!(lines[0].starts_with("error: "), "{}", r.dump());
    assert!(lines[0].contains(needle), "'{needle}'\n{}", r.dump());
}

#[test]
#[ignore = "needs root and network namespaces; run by scripts/test.sh"]
fn unusable_taps_are_one_line_errors() {
    let ns = NetNs::new("errors");
    ns.ip(&["tuntap", "add", "dev", "tun0", "mode", "tun"]);
    ns.ip(&["tuntap", "add", "dev", "mq0", "mode", "tap", "multi_queue"]);
    ns.ip(&[
        "tuntap", "add", "dev", "owned0", "mode", "tap", "user", "65534",
    ]);
    ns.tap("busy0", 1500, None);
    assert_one_line_error(&vmm_in(&ns, "tap=lo"), "lo exists but is not a TAP device");
    assert_one_line_error(&vmm_in(&ns, "tap=tun0"), "is a TUN (layer 3) device");
    assert_one_line_error(&vmm_in(&ns, "tap=mq0"), "multi-queue TAP");
    // Held by another process: attach to it first, as a running VMM would.
    let holder = ns.enter(|| {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .unwrap();
        // SAFETY: ifreq is plain old data.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(b"busy0") {
            *d = *s as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as i16;
        // SAFETY: TUNSETIFF with a valid ifreq.
        let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        f
    });
    assert_one_line_error(&vmm_in(&ns, "tap=busy0"), "in use by another process");
    drop(holder);
    // Root may use any TAP; an unprivileged user gets the owner and the fix. That path needs
    // a user who may open /dev/kvm and /dev/net/tun, which this machine does not have, so the
    // message itself is checked in the unit tests (net::tap).
    let r = vmm_in(&ns, "tap=owned0");
    assert!(
        r.stderr.contains("is not a Linux kernel"),
        "root attaches to a TAP it does not own (and fails later, at the kernel)\n{}",
        r.dump()
    );
}

#[test]
fn missing_passt_is_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    let kernel = tmp.path().join("kernel");
    std::fs::write(&kernel, b"not reached").unwrap();
    let out = Command::new(vmm_bin())
        .args(["--kernel", kernel.to_str().unwrap(), "--net", "user"])
        .env("PATH", tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("install passt: apt install passt"),
        "{stderr}"
    );
}

#[test]
fn bad_net_flags_are_one_line_usage_errors() {
    for (arg, needle) in [
        ("tap=", "1 to 15"),
        ("user,hostfwd=tcp::22-10.0.2.15:22", "guest's own address"),
        ("tap=t0,mac=01:00:00:00:00:01", "multicast"),
        ("bridge=br0", "tap=NAME or user"),
    ] {
        let out = Command::new(vmm_bin())
            .args(["--kernel", "/nonexistent", "--net", arg])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{arg}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{arg}: {stderr}");
        assert!(stderr.contains(needle), "{arg}: {stderr}");
    }
}

/// A namespace whose only route out is a veth pair going nowhere: enough for passt, which
/// copies the address and gateway of the default-route interface for its DHCP answer.
fn passt_namespace(tag: &str) -> NetNs {
    let ns = NetNs::new(tag);
    ns.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
    ns.ip(&["addr", "add", "10.200.0.5/24", "dev", "up0"]);
    ns.ip(&["link", "set", "up1", "up"]);
    ns.ip(&["link", "set", "up0", "up"]);
    ns.ip(&["route", "add", "default", "via", "10.200.0.1"]);
    ns
}

fn all_pids() -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() {
            pids.push(pid);
        }
    }
    pids
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(1)?.parse().ok()
}

#[test]
#[ignore = "needs root, network namespaces, passt, /dev/kvm and the test guest; run by scripts/test.sh"]
fn passt_starts_forwards_and_dies_with_the_vmm() {
    let guest = test_guest();
    let ns = passt_namespace("passt");
    // A port that is taken: passt's refusal becomes our one-line error.
    let blocker = ns.enter(|| std::net::TcpListener::bind("127.0.0.1:2299").unwrap());
    let r = vmm_in(&ns, "user,hostfwd=tcp:127.0.0.1:2299-:22");
    assert_one_line_error(&r, "passt failed to start: Failed to bind any port");
    drop(blocker);

    let r = ns.vmm(&[
        "--kernel",
        guest.to_str().unwrap(),
        "--memory",
        "64",
        "--net",
        "user,hostfwd=tcp:127.0.0.1:2222-:22",
        "--cmdline",
        "idle",
        "-v",
    ]);
    assert!(
        wait_for_line(&r, "guest: idle", Duration::from_secs(60)),
        "{}",
        r.stderr()
    );
    let vmm_pid = r.child.id();
    let passt: Vec<u32> = all_pids()
        .into_iter()
        .filter(|p| parent_of(*p) == Some(vmm_pid))
        .collect();
    assert_eq!(passt.len(), 1, "one passt child\n{}", r.stderr());
    let passt = passt[0];
    // Its pid file (the readiness signal) is already gone: nothing to leave behind.
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("vmm-{vmm_pid}-passt0"));
    assert!(!dir.exists(), "{} left behind", dir.display());
    // The forward is passt's listening socket in the namespace.
    ns.enter(|| TcpStream::connect("127.0.0.1:2222").expect("passt listens on the forwarded port"));
    // A hard kill of the VMM: passt notices its socket closing and exits (--one-off).
    let _ = r.kill();
    let end = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{passt}")).exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let state = std::fs::read_to_string(format!("/proc/{passt}/stat")).unwrap_or_default();
    assert!(
        state.is_empty() || state.contains(") Z "),
        "passt {passt} outlived the VMM: {state}"
    );

    // A normal exit (the guest's verdict): the VMM stops and reaps passt before it exits, so
    // not even a zombie is left for init.
    let r = ns.vmm(&[
        "--kernel",
        guest.to_str().unwrap(),
        "--memory",
        "64",
        "--net",
        "user",
        "--cmdline",
        "tables",
        "-v",
    ]);
    let vmm_pid = r.child.id();
    let r = r.wait(Duration::from_secs(60));
    assert_eq!(r.code(), Some(32), "{}", r.dump());
    assert!(
        !r.stderr.contains("ERROR") && !r.stderr.contains("WARN"),
        "stopping passt on purpose is not news\n{}",
        r.dump()
    );
    let started = r
        .stderr
        .lines()
        .find_map(|l| l.split("passt started (pid ").nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no passt pid in the log\n{}", r.dump()));
    assert!(
        !Path::new(&format!("/proc/{started}")).exists() || parent_of(started) != Some(vmm_pid),
        "passt {started} still exists after the VMM exited"
    );
}

// ---- Linux with ip=dhcp ----

fn boot_linux(ns: &NetNs, net: &str, serial: &Path) -> Vm {
    let kernel = kernel_dir().join("vmlinux");
    let serial_arg = format!("file={}", serial.display());
    ns.vmm(&[
        "--kernel",
        kernel.to_str().unwrap(),
        "--memory",
        "128",
        "--net",
        net,
        "--serial",
        &serial_arg,
        "--cmdline",
        &format!("{BASE_CMDLINE} {NET_CMDLINE}"),
    ])
}

/// Waits until the kernel printed its IP-Config summary and returns the serial output.
fn wait_for_ip_config(r: &Running, serial: &Path) -> Result<String, String> {
    let end = Instant::now() + LINUX_BOOT;
    loop {
        let out = std::fs::read_to_string(serial).unwrap_or_default();
        if let Some(at) = out.find("IP-Config: Complete:") {
            // The summary is three lines; give the kernel a moment to finish them.
            if out[at..].lines().count() >= 4 {
                return Ok(out);
            }
        }
        if !r.stderr().is_empty() && r.stderr().contains("error") {
            return Err(format!("{out}\n--- stderr ---\n{}", r.stderr()));
        }
        if Instant::now() > end {
            return Err(format!("no IP-Config after {LINUX_BOOT:?}\n{out}"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `device=eth0, hwaddr=..., ipaddr=A, mask=..., gw=...` -> A.
fn ipaddr(serial: &str) -> Option<String> {
    let line = serial
        .lines()
        .find(|l| l.contains("hwaddr=") && l.contains("ipaddr="))?;
    let at = line.find("ipaddr=")? + "ipaddr=".len();
    Some(line[at..].split(',').next()?.trim().to_owned())
}

fn reassembled(ns: &NetNs) -> u64 {
    let snmp = run_ok(ns.command("cat").arg("/proc/net/snmp"));
    let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip.next().unwrap(), ip.next().unwrap());
    let col = names
        .split_whitespace()
        .position(|n| n == "ReasmOKs")
        .unwrap();
    values.split_whitespace().nth(col).unwrap().parse().unwrap()
}

fn ping(ns: &NetNs, addr: &str, size: usize) -> std::process::Output {
    ns.command("ping")
        .args([
            "-c",
            "3",
            "-W",
            "3",
            "-M",
            "do",
            "-s",
            &size.to_string(),
            addr,
        ])
        .output()
        .expect("ping (iputils-ping) is needed")
}

#[test]
#[ignore = "needs root, network namespaces, dnsmasq, passt, /dev/kvm and the test kernel; run by scripts/test.sh"]
fn linux_gets_dhcp_leases_over_a_bridge_and_passt_and_uses_the_bridge_mtu() {
    let _ = kernel_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();

    // Two bridges in one namespace, one dnsmasq for both: br0 at 1500, br9 at 9000 (jumbo).
    let ns = NetNs::new("dhcp");
    ns.bridge("br0", 1500, "10.77.0.1/24");
    ns.bridge("br9", 9000, "10.79.0.1/24");
    ns.tap("tap0", 1500, Some("br0"));
    ns.tap("tap9", 9000, Some("br9"));
    let leases = dir.join("leases");
    let _dnsmasq = Helper(
        ns.command("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--port=0",
                "--bind-interfaces",
                "--interface=br0",
                "--interface=br9",
                "--dhcp-range=10.77.0.10,10.77.0.50,255.255.255.0,1h",
                "--dhcp-range=10.79.0.10,10.79.0.50,255.255.255.0,1h",
                "--dhcp-authoritative",
            ])
            .arg(format!("--dhcp-leasefile={}", leases.display()))
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dnsmasq (dnsmasq-base) is needed"),
    );
    let pns = passt_namespace("dhcp-passt");

    let (serial0, serial9, serialp) = (dir.join("s0"), dir.join("s9"), dir.join("sp"));
    let mac0 = "52:54:00:77:00:10";
    let mac9 = "52:54:00:79:00:10";
    let vm0 = boot_linux(&ns, &format!("tap=tap0,mac={mac0}"), &serial0);
    let vm9 = boot_linux(&ns, &format!("tap=tap9,mac={mac9}"), &serial9);
    let vmp = boot_linux(&pns, "user,hostfwd=tcp:127.0.0.1:2222-:22", &serialp);

    // Over the bridge: the lease dnsmasq recorded is the address the kernel configured, and
    // the guest answers pings.
    let out0 = wait_for_ip_config(&vm0, &serial0).unwrap_or_else(|e| panic!("tap0: {e}"));
    let addr0 = ipaddr(&out0).unwrap_or_else(|| panic!("no address line\n{out0}"));
    assert!(out0.contains(&format!("hwaddr={mac0}")), "{out0}");
    let lease_file = std::fs::read_to_string(&leases).unwrap_or_default();
    assert!(
        lease_file
            .lines()
            .any(|l| l.contains(mac0) && l.split_whitespace().nth(2) == Some(addr0.as_str())),
        "dnsmasq has no lease {mac0} -> {addr0}:\n{lease_file}"
    );
    let p = ping(&ns, &addr0, 56);
    assert!(
        p.status.success(),
        "ping {addr0}: {}",
        String::from_utf8_lossy(&p.stdout)
    );

    // Over the 9000-byte bridge: a 9000-byte IP packet goes to the guest and its 9000-byte
    // answer comes back in one piece, which the guest only sends if its MTU is 9000 (it
    // fragments replies larger than its MTU: the host would then count reassemblies).
    let out9 = wait_for_ip_config(&vm9, &serial9).unwrap_or_else(|e| panic!("tap9: {e}"));
    let addr9 = ipaddr(&out9).unwrap_or_else(|| panic!("no address line\n{out9}"));
    assert!(addr9.starts_with("10.79.0."), "{out9}");
    let before = reassembled(&ns);
    let p = ping(&ns, &addr9, 9000 - 28);
    assert!(
        p.status.success(),
        "jumbo ping {addr9}: {}{}",
        String::from_utf8_lossy(&p.stdout),
        String::from_utf8_lossy(&p.stderr)
    );
    assert_eq!(
        reassembled(&ns),
        before,
        "the guest fragmented its 9000-byte reply: its MTU is not the bridge's 9000"
    );

    // Over passt: its DHCP hands out the namespace's own address, and the forwarded port
    // reaches the guest's kernel, which has nothing on port 22 and resets the connection.
    let outp = wait_for_ip_config(&vmp, &serialp).unwrap_or_else(|e| panic!("passt: {e}"));
    assert_eq!(ipaddr(&outp).as_deref(), Some("10.200.0.5"), "{outp}");
    assert!(outp.contains("gw=10.200.0.1"), "{outp}");
    let answered = pns.enter(|| {
        let mut s = TcpStream::connect("127.0.0.1:2222").expect("passt forwards 2222");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            Ok(0) => Ok("closed"),
            Ok(_) => Ok("data"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok("reset"),
            Err(e) => Err(e),
        }
    });
    assert!(
        matches!(answered, Ok("closed") | Ok("reset")),
        "the guest never answered the forwarded connection: {answered:?}"
    );
    for vm in [vm0, vm9, vmp] {
        let r = vm.kill();
        assert!(!r.stderr.contains("error:"), "{}", r.dump());
    }
}
