//! A TAP device as a virtio-net backend: `/dev/net/tun` with IFF_TAP | IFF_NO_PI |
//! IFF_VNET_HDR, a 12-byte virtio-net header on every frame (TUNSETVNETHDRSZ), and the guest's
//! receive offloads mirrored with TUNSETOFFLOAD.
//!
//! TUNSETIFF attaches to an existing TAP when the caller owns it (a TAP pre-created with
//! `ip tuntap add dev NAME mode tap user USER`, so the VMM needs no privileges), and creates one
//! when the caller has CAP_NET_ADMIN. A TAP the VMM created goes away when the VMM exits.
//! No published crate wraps these ioctls, so they are here.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6,
};

use super::{Backend, BackendError, SendStatus};
use crate::config::net::IFNAME_MAX;
use crate::virtio::net::header::VNET_HDR_LEN;

const fn bit(b: u32) -> u64 {
    1 << b
}

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("cannot open /dev/net/tun: {0} (is the tun module loaded, and may this user open it?)")]
    OpenTun(std::io::Error),
    #[error(
        "TAP {0} does not exist and creating it needs CAP_NET_ADMIN; create it first: ip tuntap add dev {0} mode tap vnet_hdr user $(id -un)"
    )]
    CannotCreate(String),
    #[error(
        "TAP {0} belongs to another user or group (see ip -d link show {0}); recreate it for this user (ip tuntap del dev {0} mode tap; ip tuntap add dev {0} mode tap vnet_hdr user $(id -un)) or run as its owner"
    )]
    NotOwner(String),
    #[error("TAP {0} is in use by another process (a TAP serves one VM)")]
    Busy(String),
    #[error(
        "{0} is a multi-queue TAP; recreate it without multi_queue (ip tuntap add dev {0} mode tap vnet_hdr)"
    )]
    MultiQueue(String),
    #[error("{0} exists but is a TUN (layer 3) device; the VMM needs a TAP (mode tap)")]
    IsTun(String),
    #[error("{0} exists but is not a TAP device (a bridge or a real NIC?); name a TAP")]
    NotTap(String),
    #[error("TAP {name}: {what} failed: {error}")]
    Ioctl {
        name: String,
        what: &'static str,
        error: std::io::Error,
    },
}

impl TapError {
    pub fn is_user_error(&self) -> bool {
        !matches!(self, TapError::Ioctl { .. })
    }
}

/// An `ifreq` for `name`; the caller fills the union.
fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data (a name array and a union of integers, addresses and a
    // pointer); all zeroes is a valid value of every member.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(name.as_bytes().iter().take(IFNAME_MAX))
    {
        *dst = *src as libc::c_char;
    }
    req
}

/// Whether interface `name` exists in this process's network namespace (sysfs would show the
/// namespace it was mounted in, which after `setns` is not ours).
fn interface_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: a NUL-terminated string that outlives the call.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

/// `struct ethtool_drvinfo` (linux/ethtool.h).
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

const ETHTOOL_GDRVINFO: u32 = 3;

/// The driver of interface `name` and its bus; the tun driver reports "tun" and "tun" or "tap".
fn driver_info(name: &str) -> Option<(String, String)> {
    let sock = control_socket().ok()?;
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_data = (&mut info as *mut EthtoolDrvinfo).cast();
    // SAFETY: SIOCETHTOOL with ETHTOOL_GDRVINFO fills the ethtool_drvinfo that ifru_data points
    // to; both `req` and `info` live across the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req) } < 0 {
        return None;
    }
    let text = |b: &[u8]| {
        let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    Some((text(&info.driver), text(&info.bus_info)))
}

/// Turns a TUNSETIFF failure into what the user should do about it.
fn explain_setiff(name: &str, err: std::io::Error) -> TapError {
    let exists = interface_exists(name);
    match err.raw_os_error() {
        Some(libc::EPERM) if !exists => TapError::CannotCreate(name.to_owned()),
        Some(libc::EPERM) => TapError::NotOwner(name.to_owned()),
        Some(libc::EBUSY) => TapError::Busy(name.to_owned()),
        Some(libc::EINVAL) if exists => match driver_info(name) {
            Some((driver, bus)) if driver == "tun" && bus == "tun" => {
                TapError::IsTun(name.to_owned())
            }
            // A TAP that TUNSETIFF refuses: the one mismatch left is multi-queue.
            Some((driver, _)) if driver == "tun" => TapError::MultiQueue(name.to_owned()),
            _ => TapError::NotTap(name.to_owned()),
        },
        _ => TapError::Ioctl {
            name: name.to_owned(),
            what: "TUNSETIFF",
            error: err,
        },
    }
}

/// A socket for the SIOC[GS]IF* ioctls, which work on any socket.
fn control_socket() -> std::io::Result<OwnedFd> {
    // SAFETY: socket() with constant arguments; no memory is involved.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An attached TAP.
pub struct Tap {
    file: File,
    name: String,
    mtu: u16,
    /// A frame the TAP refused with EAGAIN, to send again when writable.
    pending: Option<Vec<u8>>,
    /// Only the first send error is a warning; later ones would flood the log.
    warned: bool,
}

impl Tap {
    /// Attaches to TAP `name`, creating it (and bringing it up) if it does not exist and we
    /// may; sets the 12-byte virtio-net header and no offloads until the guest accepts some.
    pub fn open(name: &str) -> Result<Tap, TapError> {
        let existed = interface_exists(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(TapError::OpenTun)?;
        let ioctl_err = |what: &'static str| TapError::Ioctl {
            name: name.to_owned(),
            what,
            error: std::io::Error::last_os_error(),
        };

        let mut req = ifreq(name);
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
        // SAFETY: TUNSETIFF reads (and updates the name in) an ifreq, which `req` is, and lives
        // across the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
            return Err(explain_setiff(name, std::io::Error::last_os_error()));
        }
        let hdr_len = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which is valid.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &hdr_len) } < 0 {
            return Err(ioctl_err("TUNSETVNETHDRSZ"));
        }
        let mut tap = Tap {
            file,
            name: name.to_owned(),
            mtu: 1500,
            pending: None,
            warned: false,
        };
        // A persistent TAP keeps the offloads its last user set; none until the guest says.
        tap.set_offload(0).map_err(|error| TapError::Ioctl {
            name: name.to_owned(),
            what: "TUNSETOFFLOAD",
            error,
        })?;
        let sock = control_socket().map_err(|error| TapError::Ioctl {
            name: name.to_owned(),
            what: "socket",
            error,
        })?;
        let mut req = ifreq(name);
        // SAFETY: SIOCGIFMTU fills ifru_mtu of the ifreq `req`, valid across the call.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut req) } < 0 {
            return Err(ioctl_err("SIOCGIFMTU"));
        }
        // SAFETY: SIOCGIFMTU set the mtu member of the union.
        let mtu = unsafe { req.ifr_ifru.ifru_mtu };
        tap.mtu = u16::try_from(mtu).unwrap_or(u16::MAX);

        let mut req = ifreq(name);
        // SAFETY: SIOCGIFFLAGS fills ifru_flags of `req`, valid across the call.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
            return Err(ioctl_err("SIOCGIFFLAGS"));
        }
        // SAFETY: SIOCGIFFLAGS set the flags member of the union.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        if flags & libc::IFF_UP as i16 == 0 {
            if existed {
                tracing::warn!("TAP {name} is down: no traffic until `ip link set {name} up`");
            } else {
                req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as i16;
                // SAFETY: SIOCSIFFLAGS reads the ifreq `req`, valid across the call.
                if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
                    return Err(ioctl_err("SIOCSIFFLAGS (bringing the new TAP up)"));
                }
            }
        }
        tracing::info!(
            "TAP {name}: {} (MTU {})",
            if existed { "attached" } else { "created" },
            tap.mtu
        );
        Ok(tap)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// TUNSETOFFLOAD: which offloaded frames (TUN_F_*) we may be handed.
    fn set_offload(&self, flags: u32) -> std::io::Result<()> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is involved.
        let ret = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                libc::c_ulong::from(flags),
            )
        };
        if ret < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn write_frame(&mut self, buf: &[u8]) -> Result<SendStatus, BackendError> {
        match self.file.write(buf) {
            Ok(_) => Ok(SendStatus::Sent),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.pending = Some(buf.to_vec());
                Ok(SendStatus::Blocked)
            }
            // The interface was deleted: nothing will ever be sent again.
            Err(e) if e.raw_os_error() == Some(libc::EBADFD) => Err(BackendError::Closed(format!(
                "TAP {}: write: {e}",
                self.name
            ))),
            Err(e) => {
                if !self.warned {
                    self.warned = true;
                    tracing::warn!(
                        "TAP {}: cannot send a frame: {e} (further errors at debug level)",
                        self.name
                    );
                } else {
                    tracing::debug!("TAP {}: cannot send a frame: {e}", self.name);
                }
                Err(BackendError::Frame(e))
            }
        }
    }
}

/// TUN_F_* flags for the receive offloads the guest accepted.
pub fn tun_offload_flags(acked_features: u64) -> u32 {
    let mut flags = 0;
    if acked_features & bit(VIRTIO_NET_F_GUEST_CSUM) != 0 {
        flags |= libc::TUN_F_CSUM;
        // The TAP ignores TSO without CSUM, and so does the spec (GUEST_TSO* need GUEST_CSUM).
        if acked_features & bit(VIRTIO_NET_F_GUEST_TSO4) != 0 {
            flags |= libc::TUN_F_TSO4;
        }
        if acked_features & bit(VIRTIO_NET_F_GUEST_TSO6) != 0 {
            flags |= libc::TUN_F_TSO6;
        }
    }
    flags
}

impl Backend for Tap {
    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, BackendError> {
        match self.file.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(None),
            // Reading a TAP has no transient errors: EBADFD means the interface was deleted
            // under us, and retrying would spin on a descriptor that stays readable.
            Err(e) => Err(BackendError::Closed(format!(
                "TAP {}: read: {e}",
                self.name
            ))),
        }
    }

    fn send(&mut self, buf: &[u8]) -> Result<SendStatus, BackendError> {
        if self.pending.is_some() {
            return Ok(SendStatus::Blocked);
        }
        self.write_frame(buf)
    }

    fn flush(&mut self) -> Result<SendStatus, BackendError> {
        match self.pending.take() {
            Some(frame) => self.write_frame(&frame),
            None => Ok(SendStatus::Sent),
        }
    }

    fn offload_features(&self) -> u64 {
        bit(VIRTIO_NET_F_CSUM)
            | bit(VIRTIO_NET_F_GUEST_CSUM)
            | bit(VIRTIO_NET_F_GUEST_TSO4)
            | bit(VIRTIO_NET_F_GUEST_TSO6)
            | bit(VIRTIO_NET_F_HOST_TSO4)
            | bit(VIRTIO_NET_F_HOST_TSO6)
    }

    fn set_guest_offloads(&mut self, acked_features: u64) -> Result<(), String> {
        let flags = tun_offload_flags(acked_features);
        tracing::debug!("TAP {}: TUNSETOFFLOAD {flags:#x}", self.name);
        self.set_offload(flags)
            .map_err(|e| format!("TAP {}: TUNSETOFFLOAD {flags:#x}: {e}", self.name))
    }

    fn mtu(&self) -> u16 {
        self.mtu
    }

    fn describe(&self) -> String {
        format!("tap {}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offload_flags_mirror_the_guest() {
        assert_eq!(tun_offload_flags(0), 0);
        let csum = bit(VIRTIO_NET_F_GUEST_CSUM);
        let tso4 = bit(VIRTIO_NET_F_GUEST_TSO4);
        let tso6 = bit(VIRTIO_NET_F_GUEST_TSO6);
        assert_eq!(tun_offload_flags(csum), libc::TUN_F_CSUM);
        assert_eq!(
            tun_offload_flags(tso4 | tso6),
            0,
            "TSO without CSUM means nothing"
        );
        assert_eq!(
            tun_offload_flags(csum | tso4 | tso6),
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6
        );
        // Transmit offloads (CSUM, HOST_TSO*) are not the TAP's business.
        assert_eq!(
            tun_offload_flags(bit(VIRTIO_NET_F_CSUM) | bit(VIRTIO_NET_F_HOST_TSO4)),
            0
        );
    }

    #[test]
    fn ifreq_name_is_truncated_and_terminated() {
        let r = ifreq("vmtap0");
        assert_eq!(
            r.ifr_name[..7].iter().map(|c| *c as u8).collect::<Vec<_>>(),
            b"vmtap0\0"
        );
        let r = ifreq("a-name-that-is-too-long");
        assert_eq!(r.ifr_name[15], 0, "always NUL-terminated");
    }

    #[test]
    fn a_missing_tap_without_privileges_says_how_to_create_it() {
        let e = explain_setiff(
            "no-such-tap-x",
            std::io::Error::from_raw_os_error(libc::EPERM),
        );
        let text = e.to_string();
        assert!(
            text.contains("ip tuntap add dev no-such-tap-x mode tap"),
            "{text}"
        );
        assert!(e.is_user_error());
        // "lo" exists and is not a tun device.
        let e = explain_setiff("lo", std::io::Error::from_raw_os_error(libc::EINVAL));
        assert!(matches!(e, TapError::NotTap(_)), "{e}");
        let e = explain_setiff("lo", std::io::Error::from_raw_os_error(libc::EBUSY));
        assert!(matches!(e, TapError::Busy(_)), "{e}");
    }
}
