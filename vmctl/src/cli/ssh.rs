//! `vmctl ssh NODE [-- ARGS]`: runs OpenSSH's ssh with the node's address, port and key.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;

use anyhow::bail;

use super::Context;
use crate::cluster::spec::NetMode;
use crate::cluster::{Cluster, Node};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// NODE or CLUSTER:NODE.
    node: String,
    /// The user to log in as.
    #[arg(short, long, default_value = "core")]
    user: String,
    /// Passed to ssh (after --): a command to run, or options.
    #[arg(last = true)]
    rest: Vec<OsString>,
}

/// ssh's arguments: known hosts kept per cluster (node keys change when a node is re-created),
/// the private halves of the file's keys offered when they exist.
pub fn ssh_args(
    cluster: &Cluster,
    node: &Node,
    user: &str,
    known_hosts: &Path,
) -> Option<Vec<OsString>> {
    let mut a: Vec<OsString> = vec![
        "-o".into(),
        format!("UserKnownHostsFile={}", known_hosts.display()).into(),
        "-o".into(),
        "StrictHostKeyChecking=accept-new".into(),
        "-o".into(),
        "ConnectTimeout=10".into(),
    ];
    for pubkey in &node.ssh_key_files {
        let private = pubkey.with_extension("");
        if pubkey.extension().is_some_and(|e| e == "pub") && private.is_file() {
            a.push("-i".into());
            a.push(private.into());
        }
    }
    let host = match cluster.network.mode {
        NetMode::Bridge => node.ip?.to_string(),
        NetMode::User => {
            a.push("-p".into());
            a.push(node.ssh_port?.to_string().into());
            "127.0.0.1".to_string()
        }
    };
    a.push(format!("{user}@{host}").into());
    Some(a)
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let (cluster, node) = ctx.node_ref(&args.node)?;
    let locked = ctx.open(&cluster, "ssh")?;
    let Some(n) = locked.cluster.node(&node) else {
        bail!("cluster {cluster} has no node {node}");
    };
    let Some(mut a) = ssh_args(
        &locked.cluster,
        n,
        &args.user,
        &locked.dir.path.join("known_hosts"),
    ) else {
        bail!("{node} has no address recorded: run vmctl up {cluster} again");
    };
    if crate::host::kvm() == crate::host::Kvm::KernelOnly {
        bail!(
            "guests cannot run user space on this host (no vmx/svm in /proc/cpuinfo), so no sshd can answer: see what {node} did with vmctl logs {cluster}:{node}"
        );
    }
    a.extend(args.rest);
    drop(locked);
    let err = std::process::Command::new("ssh").args(&a).exec();
    bail!("cannot run ssh: {err} (install openssh-client)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Image, Network};

    #[test]
    fn user_mode_uses_the_forwarded_port_and_the_private_key() {
        let t = tempfile::tempdir().unwrap();
        let pubkey = t.path().join("id.pub");
        std::fs::write(t.path().join("id"), "private").unwrap();
        let node = Node {
            name: "core-1".into(),
            cpus: 1,
            memory_mib: 512,
            root_size: 1 << 30,
            ssh_keys: vec![],
            ssh_key_files: vec![pubkey],
            user_data: None,
            ignition: None,
            cmdline: String::new(),
            mac: "52:00:00:00:00:01".into(),
            ip: None,
            tap: None,
            ssh_port: Some(22201),
        };
        let cluster = Cluster {
            name: "c".into(),
            source: None,
            image: Image {
                kernel: "k".into(),
                initrd: None,
                cmdline: String::new(),
                boot_marker: None,
            },
            network: Network {
                mode: NetMode::User,
                bridge: None,
                subnet: None,
                gateway: None,
                mtu: 1500,
            },
            nodes: vec![node.clone()],
        };
        let a: Vec<String> = ssh_args(&cluster, &node, "core", Path::new("/s/known_hosts"))
            .unwrap()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        let key = t.path().join("id").display().to_string();
        assert_eq!(
            a,
            [
                "-o",
                "UserKnownHostsFile=/s/known_hosts",
                "-o",
                "StrictHostKeyChecking=accept-new",
                "-o",
                "ConnectTimeout=10",
                "-i",
                &key,
                "-p",
                "22201",
                "core@127.0.0.1"
            ]
        );
    }
}
