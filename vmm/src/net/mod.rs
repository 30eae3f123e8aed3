//! Host-side network backends for virtio-net: a TAP device ([`tap`]) or passt user networking
//! ([`passt`]), behind one [`Backend`] trait so the device model does not care which.
//!
//! Buffers crossing the trait always start with the 12-byte virtio-net header
//! (`virtio_net_hdr_v1`): the TAP reads and writes that header itself (IFF_VNET_HDR), passt
//! speaks plain Ethernet, so its backend adds an all-zero header on receive and strips the
//! (already checked) header on send.

pub mod mac;
pub mod passt;
pub mod tap;

use std::os::unix::io::RawFd;

use crate::config::net::{NetBackendConfig, NetConfig};

pub use mac::MacAddr;

/// A frame could not be handed over, or the backend is gone.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// This frame is lost; the backend itself is fine (e.g. the TAP is down).
    #[error("frame dropped: {0}")]
    Frame(std::io::Error),
    /// The backend is gone for good (passt exited, the socket broke).
    #[error("{0}")]
    Closed(String),
}

/// Whether a backend took a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendStatus {
    Sent,
    /// Taken, but the backend is full: call `flush` once its descriptor is writable, and send
    /// nothing more until `flush` says `Sent`.
    Blocked,
}

/// A host-side network endpoint.
pub trait Backend: Send {
    /// The descriptor to watch for readable frames (and writability after `Blocked`).
    fn fd(&self) -> RawFd;
    /// Reads one frame, virtio-net header first, into `buf` (at least
    /// [`crate::virtio::net::header::MAX_BUFFER_LEN`] long). `Ok(None)`: nothing to read now.
    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, BackendError>;
    /// Sends one frame, virtio-net header first.
    fn send(&mut self, buf: &[u8]) -> Result<SendStatus, BackendError>;
    /// Continues a send that returned `Blocked`.
    fn flush(&mut self) -> Result<SendStatus, BackendError>;
    /// The virtio-net offload feature bits (CSUM, GUEST_*, HOST_*) this backend can carry.
    fn offload_features(&self) -> u64;
    /// Tells the backend which offloaded frames the guest accepts (from the negotiated
    /// GUEST_CSUM / GUEST_TSO4 / GUEST_TSO6), so it only delivers what the guest can take.
    fn set_guest_offloads(&mut self, acked_features: u64) -> Result<(), String>;
    /// The link MTU the guest should use.
    fn mtu(&self) -> u16;
    /// For log messages: "tap vmtap0", "passt".
    fn describe(&self) -> String;
    /// Whether the VMM is stopping this backend on purpose (it going away is then no news).
    fn stopping(&self) -> bool {
        false
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Tap(#[from] tap::TapError),
    #[error(transparent)]
    Passt(#[from] passt::PasstError),
}

impl NetError {
    /// Whether the user can fix it (missing passt, TAP permissions): exit status 2.
    pub fn is_user_error(&self) -> bool {
        match self {
            NetError::Tap(e) => e.is_user_error(),
            NetError::Passt(e) => e.is_user_error(),
        }
    }
}

/// An opened NIC backend, plus whatever must live as long as the VM (the passt process).
pub struct OpenedNet {
    pub backend: Box<dyn Backend>,
    pub mac: MacAddr,
    /// Kills passt and removes its files when dropped.
    pub guard: Option<passt::PasstGuard>,
    /// passt's standard error, to be logged by the device event loop.
    pub log: Option<passt::PasstLog>,
}

/// Opens the backend of NIC number `index`: attaches to (or creates) its TAP, or starts passt.
pub fn open(config: &NetConfig, index: usize) -> Result<OpenedNet, NetError> {
    let mac = config.mac_for(index);
    Ok(match &config.backend {
        NetBackendConfig::Tap { name } => OpenedNet {
            backend: Box::new(tap::Tap::open(name)?),
            mac,
            guard: None,
            log: None,
        },
        NetBackendConfig::User { hostfwd } => {
            let (backend, guard, log) = passt::start(hostfwd, index)?;
            OpenedNet {
                backend: Box::new(backend),
                mac,
                guard: Some(guard),
                log: Some(log),
            }
        }
    })
}
