//! The cluster file: its schema ([`spec`]), where it is found ([`lookup`]), and the resolved
//! cluster vmctl acts on ([`resolve`]): defaults applied, `count` expanded, paths made absolute,
//! addresses and ports allocated.

pub mod locate;
pub mod lookup;
pub mod resolve;
pub mod spec;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use resolve::load;
use spec::{NetMode, Subnet};

#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("no cluster file for {name:?}: looked for {tried}")]
    NoFile { name: String, tried: String },
    #[error("cannot read {path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    /// A mistake in the file, at a place in it.
    #[error("{file}:{line}:{column}: {message}")]
    At {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    Whole { file: String, message: String },
}

/// A cluster as vmctl runs it. Saved in the state directory, so commands other than `up` (and
/// `vmctl run` under systemd) work from it without the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub name: String,
    /// The file it came from; `None` for the built-in demo.
    pub source: Option<PathBuf>,
    pub image: Image,
    pub network: Network,
    pub nodes: Vec<Node>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    /// A console line that shows the image booted (see [`spec::ImageSpec::boot_marker`]).
    #[serde(default)]
    pub boot_marker: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub mode: NetMode,
    /// Bridge mode only.
    pub bridge: Option<String>,
    pub subnet: Option<Subnet>,
    /// The bridge's address, which is also the nodes' DHCP and DNS server.
    pub gateway: Option<Ipv4Addr>,
    pub mtu: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The host name: the file's name, or NAME-N for a node with a `count`.
    pub name: String,
    pub cpus: u8,
    pub memory_mib: u64,
    pub root_size: u64,
    /// OpenSSH public key lines.
    pub ssh_keys: Vec<String>,
    /// The key files they came from, whose private halves `vmctl ssh` offers.
    pub ssh_key_files: Vec<PathBuf>,
    pub user_data: Option<PathBuf>,
    pub ignition: Option<PathBuf>,
    /// Appended after the image's cmdline.
    pub cmdline: String,
    pub mac: String,
    /// Bridge mode: the address dnsmasq hands out.
    pub ip: Option<Ipv4Addr>,
    /// Bridge mode: the node's TAP device.
    pub tap: Option<String>,
    /// User mode: the host port forwarded to the guest's port 22.
    pub ssh_port: Option<u16>,
}

impl Cluster {
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
}
