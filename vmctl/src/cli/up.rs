//! `vmctl up NAME|FILE`: bring the cluster to what its file says, leaving running VMs alone.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::Context;
use super::status;
use crate::cluster::resolve::{self, Previous};
use crate::cluster::spec::NetMode;
use crate::cluster::{Cluster, lookup};
use crate::host::{self, Kvm};
use crate::net;
use crate::node::readiness::{self, Purpose};
use crate::node::{Settings, process, start};
use crate::state::pidfile::Liveness;
use crate::state::{self, NodeDir};
use crate::store::{Images, Store};
use crate::{systemd, vmm_binary};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A cluster name (looked up as NAME.yaml) or a path to a cluster file.
    name: String,
    /// Return once the VMs are started, without waiting for them to boot.
    #[arg(long)]
    no_wait: bool,
    /// Start the VMs through systemd units (vmctl units install first).
    #[arg(long)]
    systemd: bool,
    /// Seconds to wait for the VMs to boot.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    wait_timeout: u64,
    /// Seconds a guest gets to power off before its VMM stops it hard.
    #[arg(long, value_name = "SECS", default_value_t = crate::node::DEFAULT_SHUTDOWN_TIMEOUT)]
    shutdown_timeout: u64,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let source = lookup::find(&args.name)?;
    // Parse first: a broken file fails before anything is locked or touched.
    let name = resolve::parse_source(&source)?.name.0;
    if args.systemd && !systemd::booted() {
        bail!(
            "--systemd needs systemd as the init system, but PID 1 here is {}: run vmctl up without --systemd",
            systemd::init_name()
        );
    }
    let kvm = host::kvm();
    if kvm == Kvm::Missing {
        bail!(
            "/dev/kvm does not exist: enable virtualization in the firmware and load kvm_intel or kvm_amd (modprobe)"
        );
    }
    let vmm = vmm_binary::locate()?;
    vmm_binary::check(&vmm)?;

    let dir = ctx.home.cluster(&name);
    // Every check on the file (referenced files, sizes, conflicts) before anything is created.
    let (checked, _) = resolve_with_state(ctx, &source, &dir, &name)?;
    if checked.network.mode == NetMode::Bridge && !rustix::process::geteuid().is_root() {
        bail!(
            "cluster {name} uses network mode bridge, which needs root to create its bridge and TAPs: run vmctl with sudo, or use network mode: user"
        );
    }
    let lock = ctx.lock(&dir, "up")?;
    // Again under the lock: another vmctl may have allocated addresses or ports meanwhile.
    let (mut cluster, previous) = resolve_with_state(ctx, &source, &dir, &name)?;
    if kvm == Kvm::KernelOnly {
        eprintln!("{}", host::KERNEL_ONLY_NOTE);
    }

    let running: Vec<String> = dir
        .node_dirs()
        .into_iter()
        .filter(|d| matches!(process::liveness(d), Liveness::Running(_)))
        .map(|d| d.name)
        .collect();
    if let Some(prev) = &previous {
        if prev.network != cluster.network && !running.is_empty() {
            bail!(
                "the network section of cluster {name} changed while {} run(s): run vmctl down -c {name} first, then vmctl up {}",
                running.join(", "),
                args.name
            );
        }
        // Nodes gone from the file but still running stay known, so down can stop them.
        for old in &prev.nodes {
            if cluster.node(&old.name).is_none() && running.contains(&old.name) {
                println!(
                    "{}: no longer in the file but still running: vmctl down {name}:{} stops it",
                    old.name, old.name
                );
                cluster.nodes.push(old.clone());
            }
        }
    }

    let store = Store::new(ctx.home.images());
    let images = store.ingest(
        &cluster.image.kernel,
        cluster.image.initrd.as_deref(),
        ctx.lock_timeout,
    )?;
    dir.create()?;
    dir.save(&cluster)?;
    state::write_json(&dir.images_path(), &images)?;

    if args.systemd {
        // vm@.service runs `vmctl run`, which takes this lock: let go before starting units.
        drop(lock);
        return up_systemd(&cluster, &running, args.no_wait);
    }
    net::up(&cluster, &dir.net(), net::invoking_user())?;

    let mut started = Vec::new();
    for node in &cluster.nodes {
        let nd = dir.node(&node.name);
        if running.contains(&node.name) {
            report_running(&cluster, node, &images, &nd);
            continue;
        }
        let plan = start::plan(&cluster, node, &images, &nd, kvm, args.shutdown_timeout)?;
        start::start_detached(&vmm, &plan, &nd)?;
        println!("{}: started", node.name);
        started.push(node.name.clone());
    }

    let mut failed = Vec::new();
    if !args.no_wait && !started.is_empty() {
        failed = wait_booted(
            &cluster,
            &dir,
            &started,
            kvm,
            Duration::from_secs(args.wait_timeout),
        );
    }
    status::print_table(&cluster, &dir, kvm)?;
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}

fn resolve_with_state(
    ctx: &Context,
    source: &lookup::Source,
    dir: &state::ClusterDir,
    name: &str,
) -> anyhow::Result<(Cluster, Option<Cluster>)> {
    let previous = dir.load()?;
    let others = other_clusters(ctx, name);
    let cluster = resolve::load(
        source,
        &Previous {
            cluster: previous.as_ref(),
            ports_in_use: others
                .iter()
                .flat_map(|c| c.nodes.iter().filter_map(|n| n.ssh_port))
                .collect::<BTreeSet<u16>>(),
        },
    )?;
    check_conflicts(&cluster, &others)?;
    Ok((cluster, previous))
}

fn other_clusters(ctx: &Context, name: &str) -> Vec<Cluster> {
    ctx.home
        .clusters()
        .into_iter()
        .filter(|c| c != name)
        .filter_map(|c| ctx.home.cluster(&c).load().ok().flatten())
        .collect()
}

/// Two clusters must not share a bridge or overlapping subnets.
fn check_conflicts(cluster: &Cluster, others: &[Cluster]) -> anyhow::Result<()> {
    let net = &cluster.network;
    for o in others {
        if net.bridge.is_some() && net.bridge == o.network.bridge {
            bail!(
                "bridge {} is already used by cluster {}: set network.bridge to another name",
                net.bridge.as_deref().unwrap_or_default(),
                o.name
            );
        }
        if let (Some(a), Some(b)) = (net.subnet, o.network.subnet)
            && (a.0.contains(&b.0.network()) || b.0.contains(&a.0.network()))
        {
            bail!(
                "subnet {} overlaps cluster {}'s {}: pick another network.subnet",
                a.0,
                o.name,
                b.0
            );
        }
    }
    Ok(())
}

fn report_running(cluster: &Cluster, node: &crate::cluster::Node, images: &Images, nd: &NodeDir) {
    let now = Settings::of(cluster, node, images);
    match state::read_json::<Settings>(&nd.started()).ok().flatten() {
        Some(then) => {
            let changed = then.changes(&now);
            if changed.is_empty() {
                println!("{}: running", node.name);
            } else {
                println!(
                    "{}: running, but the file changed ({}): vmctl down {}:{} && vmctl up applies it",
                    node.name,
                    changed.join(", "),
                    cluster.name,
                    node.name
                );
            }
        }
        None => println!("{}: running", node.name),
    }
}

/// Waits for each started node to boot; prints what was verified for each; returns one message
/// per node that did not come up.
fn wait_booted(
    cluster: &Cluster,
    dir: &state::ClusterDir,
    nodes: &[String],
    kvm: Kvm,
    timeout: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<&String> = nodes.iter().collect();
    let mut failed = Vec::new();
    let mut last = std::collections::HashMap::new();
    while !pending.is_empty() {
        pending.retain(|name| {
            let nd = dir.node(name);
            let Some(node) = cluster.node(name) else {
                return false;
            };
            // Looked at before the liveness check, which removes a dead VMM's pid file (the
            // time a lease must be newer than).
            let seen = readiness::observe(cluster, node, dir, kvm, Purpose::Up);
            let running = matches!(process::liveness(&nd), Liveness::Running(_));
            let reason = || {
                process::exit_reason(&nd.vmm_log())
                    .unwrap_or_else(|| "without a word (killed?)".into())
            };
            if let Some(what) = seen.up(cluster, kvm, Purpose::Up) {
                if running {
                    println!("{name}: {what}");
                } else if kvm == Kvm::KernelOnly {
                    // What could be verified here was verified; how the VM ended is news, not
                    // a failed boot.
                    println!("{name}: {what}; its VMM has since exited ({})", reason());
                } else {
                    failed.push(format!(
                        "{name}: {what}, but its VMM exited: {} (see vmctl logs {}:{name})",
                        reason(),
                        cluster.name
                    ));
                }
                return false;
            }
            if !running {
                failed.push(format!(
                    "{name}: the VMM exited during boot: {} (see vmctl logs {}:{name})",
                    process::exit_reason(&nd.vmm_log())
                        .unwrap_or_else(|| process::last_line(&nd.vmm_log())),
                    cluster.name
                ));
                return false;
            }
            last.insert(name.to_string(), seen);
            true
        });
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            for name in &pending {
                let why = last
                    .get(name.as_str())
                    .map(|o| o.missing(cluster, kvm))
                    .unwrap_or_default();
                failed.push(format!(
                    "{name}: not up after {}s: {why} (see vmctl logs {}:{name})",
                    timeout.as_secs(),
                    cluster.name
                ));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    failed
}

fn up_systemd(cluster: &Cluster, running: &[String], no_wait: bool) -> anyhow::Result<()> {
    let unit_dir = std::path::Path::new(systemd::units::DEFAULT_DIR);
    if !unit_dir.join("vm@.service").is_file() {
        bail!("the vmctl units are not installed: run vmctl units install first");
    }
    let mut units = vec![format!("vmnet@{}.service", cluster.name)];
    for n in &cluster.nodes {
        if running.contains(&n.name) {
            println!("{}: running", n.name);
        } else {
            units.push(format!("vm@{}-{}.service", cluster.name, n.name));
        }
    }
    // Without --no-block systemctl returns once each Type=notify unit said READY=1: booted.
    let mut cmd = Command::new("systemctl");
    cmd.arg("start");
    if no_wait {
        cmd.arg("--no-block");
    }
    let status = cmd.args(&units).status().context("cannot run systemctl")?;
    if !status.success() {
        bail!(
            "systemctl start {} failed ({status}): see systemctl status and journalctl -u 'vm@{}-*'",
            units.join(" "),
            cluster.name
        );
    }
    println!("started through systemd: {}", units.join(" "));
    Ok(())
}
