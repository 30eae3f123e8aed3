//! The cluster network. Bridge mode: a Linux bridge with the cluster's subnet and MTU, a TAP per
//! node enslaved to it, and a dnsmasq handing each node's MAC its address and name. User mode:
//! nothing on the host; the VMM forwards a port per node.

pub mod bridge;
pub mod dnsmasq;
pub mod ip;
pub mod leases;
pub mod mac;
pub mod ports;
pub mod tap;

use std::path::Path;

use thiserror::Error;

use crate::cluster::Cluster;
use crate::cluster::spec::NetMode;

#[derive(Debug, Error)]
pub enum NetError {
    #[error("`ip` (iproute2) not found: install it (Debian/Ubuntu: apt install iproute2)")]
    NoIp,
    #[error(
        "creating {what} needs root (CAP_NET_ADMIN): run vmctl with sudo, or use network mode: user"
    )]
    NotPermitted { what: String },
    #[error("ip {args}: {message}")]
    Ip { args: String, message: String },
    #[error(
        "{name} exists but is a {found}, not a {wanted}: remove it or pick another name in the cluster file"
    )]
    WrongKind {
        name: String,
        found: String,
        wanted: &'static str,
    },
    #[error(
        "dnsmasq not found: install it (Debian/Ubuntu: apt install dnsmasq-base) for bridge mode, or use network mode: user"
    )]
    NoDnsmasq,
    #[error("dnsmasq for {bridge} failed to start: {message}")]
    Dnsmasq { bridge: String, message: String },
    #[error("cannot write {path}: {err}")]
    Write {
        path: std::path::PathBuf,
        err: std::io::Error,
    },
}

/// Brings the cluster's network up, or repairs it; safe to repeat.
pub fn up(cluster: &Cluster, net_dir: &Path, owner: (u32, u32)) -> Result<(), NetError> {
    if cluster.network.mode != NetMode::Bridge {
        return Ok(());
    }
    let (Some(br), Some(subnet), Some(gw)) = (
        &cluster.network.bridge,
        cluster.network.subnet,
        cluster.network.gateway,
    ) else {
        return Ok(());
    };
    let mtu = cluster.network.mtu;
    bridge::ensure(br, mtu, gw, subnet.0.prefix_len())?;
    for n in &cluster.nodes {
        if let Some(t) = &n.tap {
            tap::ensure(t, br, mtu, owner)?;
        }
    }
    // Adding a port can still move the bridge's MTU on older kernels: set it last, explicitly.
    bridge::set_mtu(br, mtu)?;
    dnsmasq::ensure(cluster, net_dir)?;
    Ok(())
}

/// Stops dnsmasq and removes the TAPs and the bridge. Missing pieces are fine.
pub fn down(cluster: &Cluster, net_dir: &Path) -> Result<(), NetError> {
    if cluster.network.mode != NetMode::Bridge {
        return Ok(());
    }
    dnsmasq::stop(net_dir);
    for n in &cluster.nodes {
        if let Some(t) = &n.tap {
            tap::remove(t)?;
        }
    }
    if let Some(br) = &cluster.network.bridge {
        bridge::remove(br)?;
    }
    Ok(())
}

/// The user vmctl acts for: the one who ran sudo, else whoever runs it. TAPs are theirs, so
/// their VMM can open them without root.
pub fn invoking_user() -> (u32, u32) {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
    match (env("SUDO_UID"), env("SUDO_GID")) {
        (Some(u), Some(g)) => (u, g),
        _ => (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        ),
    }
}
