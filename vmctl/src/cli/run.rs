//! `vmctl run NODE`: one VM in the foreground, for systemd's vm@.service (or any supervisor).
//! Tells systemd READY=1 once the guest has booted; SIGTERM (or Ctrl-C) asks the guest to power
//! off and waits for the VMM; a guest reboot starts the VMM again. The exit status is 0 after a
//! power-off, non-zero otherwise, so Restart=on-failure restarts crashed VMs only.

use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::bail;
use rustix::process::{Pid, Signal, kill_process};
use sd_notify::NotifyState;

use super::Context;
use crate::cluster::{Cluster, Node};
use crate::host::{self, Kvm};
use crate::net;
use crate::node::readiness::{self, Purpose};
use crate::node::{process, start};
use crate::state::pidfile::Liveness;
use crate::state::{self, ClusterDir};
use crate::vmm_binary;

/// The VMM's exit status for a guest that asked to reboot (docs/vmm.md).
const VMM_EXIT_REBOOT: i32 = 3;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// NODE, CLUSTER:NODE, or the systemd instance CLUSTER-NODE.
    node: String,
    /// Seconds a guest gets to power off before its VMM stops it hard.
    #[arg(long, value_name = "SECS", default_value_t = crate::node::DEFAULT_SHUTDOWN_TIMEOUT)]
    shutdown_timeout: u64,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let (cluster_name, node_name) = ctx.node_ref(&args.node)?;
    let kvm = host::kvm();
    let vmm = vmm_binary::locate()?;
    vmm_binary::check(&vmm)?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }

    let mut first = true;
    loop {
        let (cluster, dir, node, mut child) = start_once(
            ctx,
            &cluster_name,
            &node_name,
            &vmm,
            kvm,
            args.shutdown_timeout,
            first,
        )?;
        first = false;
        let nd = dir.node(&node.name);
        if std::env::var_os("INVOCATION_ID").is_some() {
            // Started by systemd: `down` must stop it through systemd.
            let _ = state::write_atomic(
                &nd.systemd_unit(),
                format!("vm@{}.service\n", args.node).as_bytes(),
            );
        }
        let status = supervise(&cluster, &dir, &node, &mut child, kvm, &stop)?;
        // No lock: this node's files are ours alone while its VMM is our child, and `down` may
        // hold the cluster lock while it waits (through systemctl stop) for us to finish.
        process::clean(&nd);
        if status.code() == Some(VMM_EXIT_REBOOT) && !stop.load(Ordering::SeqCst) {
            eprintln!("{node_name}: the guest rebooted; starting it again");
            let _ = sd_notify::notify(&[NotifyState::Reloading]);
            continue;
        }
        if status.success() {
            return Ok(());
        }
        bail!(
            "{node_name}: the VMM exited with {status}: {}",
            process::last_line(&nd.vmm_log())
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn start_once(
    ctx: &Context,
    cluster_name: &str,
    node_name: &str,
    vmm: &Path,
    kvm: Kvm,
    shutdown_timeout: u64,
    first: bool,
) -> anyhow::Result<(Cluster, ClusterDir, Node, Child)> {
    let locked = ctx.open(cluster_name, "run")?;
    let Some(node) = locked.cluster.node(node_name).cloned() else {
        bail!("cluster {cluster_name} has no node {node_name}: see vmctl status -c {cluster_name}");
    };
    let nd = locked.dir.node(node_name);
    if let Liveness::Running(r) = process::liveness(&nd)
        && first
    {
        bail!(
            "{node_name} is already running (VMM pid {}): stop it with vmctl down {cluster_name}:{node_name} first",
            r.pid
        );
    }
    let images = locked.images()?;
    net::up(&locked.cluster, &locked.dir.net(), net::invoking_user())?;
    let plan = start::plan(&locked.cluster, &node, &images, &nd, kvm, shutdown_timeout)?;
    let child = process::spawn_child(vmm, &plan.invocation, &nd)?;
    state::write_json(&nd.started(), &plan.settings)?;
    let _ = sd_notify::notify(&[
        NotifyState::MainPid(std::process::id()),
        NotifyState::Status("booting"),
    ]);
    Ok((locked.cluster.clone(), locked.dir.clone(), node, child))
}

fn supervise(
    cluster: &Cluster,
    dir: &ClusterDir,
    node: &Node,
    child: &mut Child,
    kvm: Kvm,
    stop: &AtomicBool,
) -> anyhow::Result<std::process::ExitStatus> {
    let mut ready = false;
    let mut forwarded = false;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if !ready
            && let Some(what) = readiness::observe(cluster, node, dir, kvm, Purpose::Run).up(
                cluster,
                kvm,
                Purpose::Run,
            )
        {
            ready = true;
            let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&what)]);
            eprintln!("{}: {what}", node.name);
        }
        if stop.load(Ordering::SeqCst) && !forwarded {
            forwarded = true;
            let _ = sd_notify::notify(&[NotifyState::Stopping]);
            // The VMM turns SIGTERM into the ACPI power button and stops the guest hard after
            // its --shutdown-timeout.
            if let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
                let _ = kill_process(pid, Signal::TERM);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
