//! One VM: its files ([`prepare`]), its VMM process ([`process`]), and telling when it booted
//! ([`readiness`]).

pub mod prepare;
pub mod process;
pub mod readiness;
pub mod start;

use serde::{Deserialize, Serialize};

use crate::cluster::spec::NetMode;
use crate::cluster::{Cluster, Node};
use crate::cmdline::{self, CmdlineInput};
use crate::host::Kvm;
use crate::state::NodeDir;
use crate::store::Images;
use crate::vmm_args::{ArgsError, NetArg, VmmInvocation};

/// Seconds the VMM gives a guest to power off before it stops it hard.
pub const DEFAULT_SHUTDOWN_TIMEOUT: u64 = 30;

/// What a VM runs with; saved as `started.json` when it starts, so a later `up` can say what in
/// the file changed for a running VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub cpus: u8,
    pub memory_mib: u64,
    pub root_size: u64,
    pub kernel: String,
    pub usr: Option<String>,
    pub initrd: Option<String>,
    pub cmdline_extra: String,
    pub network: String,
    pub ssh_keys: Vec<String>,
    /// SHA-256 of the user data and Ignition files, so an edit counts as a change.
    pub user_data: Option<String>,
    pub ignition: Option<String>,
}

impl Settings {
    pub fn of(cluster: &Cluster, node: &Node, images: &Images) -> Self {
        let digest = |p: &std::path::Path| {
            imagetool::digest::sha256_file(p).unwrap_or_else(|e| format!("unreadable: {e}"))
        };
        let blob = |p: &std::path::Path| {
            p.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let network = match cluster.network.mode {
            NetMode::Bridge => format!(
                "bridge {} mtu {} ip {} mac {}",
                cluster.network.bridge.as_deref().unwrap_or("-"),
                cluster.network.mtu,
                node.ip.map(|i| i.to_string()).unwrap_or_default(),
                node.mac
            ),
            NetMode::User => format!(
                "user ssh port {} mac {}",
                node.ssh_port.unwrap_or(0),
                node.mac
            ),
        };
        Settings {
            cpus: node.cpus,
            memory_mib: node.memory_mib,
            root_size: node.root_size,
            kernel: blob(&images.kernel),
            usr: images.usr.as_deref().map(blob),
            initrd: images.initrd.as_deref().map(blob),
            cmdline_extra: [cluster.image.cmdline.as_str(), node.cmdline.as_str()]
                .join(" ")
                .trim()
                .to_string(),
            network,
            ssh_keys: node.ssh_keys.clone(),
            user_data: node.user_data.as_deref().map(digest),
            ignition: node.ignition.as_deref().map(digest),
        }
    }

    /// Names of the settings that differ, for "core-2 changed: memory, cmdline".
    pub fn changes(&self, new: &Settings) -> Vec<&'static str> {
        let mut v = Vec::new();
        let mut diff = |c: bool, name| {
            if c {
                v.push(name)
            }
        };
        diff(self.cpus != new.cpus, "cpus");
        diff(self.memory_mib != new.memory_mib, "memory");
        diff(self.root_size != new.root_size, "root_size");
        diff(
            self.kernel != new.kernel || self.usr != new.usr || self.initrd != new.initrd,
            "image",
        );
        diff(self.cmdline_extra != new.cmdline_extra, "cmdline");
        diff(self.network != new.network, "network");
        diff(self.ssh_keys != new.ssh_keys, "ssh_keys");
        diff(self.user_data != new.user_data, "user_data");
        diff(self.ignition != new.ignition, "ignition");
        v
    }
}

/// The VMM invocation for a node.
pub fn invocation(
    cluster: &Cluster,
    node: &Node,
    images: &Images,
    dir: &NodeDir,
    kvm: Kvm,
    first_boot: bool,
    shutdown_timeout_secs: u64,
) -> Result<VmmInvocation, ArgsError> {
    let cmdline = cmdline::build(&CmdlineInput {
        has_usr: images.usr.is_some(),
        first_boot,
        kvm,
        image: &cluster.image.cmdline,
        node: &node.cmdline,
    });
    let net = match (&cluster.network.mode, &node.tap, node.ssh_port) {
        (NetMode::Bridge, Some(tap), _) => NetArg::Tap {
            tap: tap.clone(),
            mac: node.mac.clone(),
        },
        (_, _, port) => NetArg::User {
            ssh_port: port.unwrap_or(0),
            mac: node.mac.clone(),
        },
    };
    Ok(VmmInvocation {
        kernel: images.kernel.clone(),
        // Where no guest user space can run, an initrd's user space cannot either. Measured
        // under PVM: with the demo image's initrd, boots ended mid-way in a KVM emulation
        // failure on the `fwait` in fpu__drop (a kernel thread exiting); without it, none did.
        // The kernel then mounts the root itself.
        initrd: if kvm == Kvm::KernelOnly {
            None
        } else {
            images.initrd.clone()
        },
        cmdline,
        cpus: node.cpus,
        memory_mib: node.memory_mib,
        usr_disk: images.usr.clone(),
        root_disk: dir.root_disk(),
        net,
        config_drive: dir.config_drive(),
        ignition: node.ignition.is_some().then(|| dir.ignition()),
        console_log: dir.console_log(),
        api_socket: dir.api_socket(),
        boot_marker: Some(readiness::boot_marker(
            kvm,
            cluster.image.boot_marker.as_deref(),
        )),
        shutdown_timeout_secs,
    })
}
