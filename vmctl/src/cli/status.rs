//! `vmctl status [CLUSTER]`: one line per node.

use std::time::Duration;

use serde::Serialize;

use super::Context;
use crate::api::{self, Request};
use crate::cluster::Cluster;
use crate::cluster::spec::NetMode;
use crate::host::{self, Kvm};
use crate::node::{process, readiness};
use crate::state::ClusterDir;
use crate::state::pidfile::Liveness;

/// A VMM that does not answer its status in this time is reported without it.
const API_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster (default: -c, or the only one).
    cluster: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub state: String,
    pub pid: Option<u32>,
    pub ip: Option<String>,
    pub mac: String,
    pub lease: Option<String>,
    pub reach: String,
    /// The VMM's own `status` answer (uptime, boot marker, devices) while it runs.
    pub vmm: Option<serde_json::Value>,
}

pub fn rows(cluster: &Cluster, dir: &ClusterDir, kvm: Kvm) -> Vec<Row> {
    cluster
        .nodes
        .iter()
        .map(|n| {
            let nd = dir.node(&n.name);
            let mut vmm = None;
            let (state, pid) = match process::liveness(&nd) {
                Liveness::Running(r) => {
                    let reply = api::call(&nd.api_socket(), &Request::Status, API_WAIT).ok();
                    let marker = reply
                        .as_ref()
                        .and_then(|r| r.boot_marker.as_ref())
                        .is_some_and(|m| m.seen);
                    vmm = reply.map(|r| {
                        let mut m = r.rest;
                        m.insert("state".into(), r.state.into());
                        m.insert("uptime_ms".into(), r.uptime_ms.into());
                        m.insert(
                            "boot_marker".into(),
                            r.boot_marker.map_or(serde_json::Value::Null, |b| {
                                serde_json::json!({"text": b.text, "seen": b.seen, "at_ms": b.at_ms})
                            }),
                        );
                        serde_json::Value::Object(m)
                    });
                    let s = match (kvm, &cluster.image.boot_marker) {
                        (_, Some(_)) if marker => "running",
                        (_, Some(_)) => "running (booting)",
                        (Kvm::Full, None) => "running",
                        _ if readiness::kernel_booted(&nd.console_log()).is_some() => {
                            "running (kernel booted)"
                        }
                        _ => "running (booting)",
                    };
                    (s.to_string(), Some(r.pid))
                }
                Liveness::Stale(_) => ("stopped (VMM had died; cleaned up)".to_string(), None),
                Liveness::None if nd.root_disk().exists() => ("stopped".to_string(), None),
                Liveness::None => ("not created".to_string(), None),
            };
            let lease = readiness::lease(cluster, n, dir).map(|(ip, _)| ip.to_string());
            let reach = match (kvm, cluster.network.mode) {
                (Kvm::KernelOnly, _) => String::from("no guest user space on this host:"),
                (_, NetMode::Bridge) => n.ip.map(|ip| format!("ssh core@{ip}")).unwrap_or_default(),
                (_, NetMode::User) => n
                    .ssh_port
                    .map(|p| format!("ssh -p {p} core@127.0.0.1"))
                    .unwrap_or_default(),
            };
            let how = match kvm {
                Kvm::KernelOnly => format!("vmctl logs {}:{}", cluster.name, n.name),
                _ => format!("(or vmctl ssh {}:{})", cluster.name, n.name),
            };
            Row {
                name: n.name.clone(),
                state,
                pid,
                ip: n.ip.map(|i| i.to_string()),
                mac: n.mac.clone(),
                lease,
                reach: format!("{reach} {how}"),
                vmm,
            }
        })
        .collect()
}

pub fn print_table(cluster: &Cluster, dir: &ClusterDir, kvm: Kvm) -> anyhow::Result<()> {
    let rows = rows(cluster, dir, kvm);
    let w = |f: &dyn Fn(&Row) -> usize, min: usize| rows.iter().map(f).max().unwrap_or(0).max(min);
    let (wn, ws, wi) = (
        w(&|r| r.name.len(), 4),
        w(&|r| r.state.len(), 5),
        w(&|r| r.ip.as_deref().map_or(1, str::len), 2),
    );
    println!(
        "{:wn$}  {:ws$}  {:wi$}  {:17}  {:7}  REACH",
        "NODE", "STATE", "IP", "MAC", "LEASE"
    );
    for r in &rows {
        println!(
            "{:wn$}  {:ws$}  {:wi$}  {:17}  {:7}  {}",
            r.name,
            r.state,
            r.ip.as_deref().unwrap_or("-"),
            r.mac,
            if r.lease.is_some() { "yes" } else { "-" },
            r.reach
        );
    }
    Ok(())
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let name = ctx.cluster_name(args.cluster.as_deref())?;
    let locked = ctx.open(&name, "status")?;
    let kvm = host::kvm();
    if args.json {
        let out = serde_json::json!({
            "cluster": locked.cluster.name,
            "network": locked.cluster.network,
            "nodes": rows(&locked.cluster, &locked.dir, kvm),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(&locked.cluster, &locked.dir, kvm)?;
    }
    Ok(())
}
