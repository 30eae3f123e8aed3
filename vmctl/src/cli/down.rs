//! `vmctl down [NODE]`: the power button (API `shutdown`), then after --timeout the API's
//! `power-off`, and SIGKILL for a VMM that does not answer. Works after the
//! VMM was killed (stale pid and socket files are found and removed). Stopping the whole
//! cluster also takes its network down; disks stay.

use std::time::Duration;

use anyhow::bail;

use super::Context;
use crate::net;
use crate::node::process::{self, Stopped};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// One node (NODE, CLUSTER:NODE); default: the whole cluster.
    node: Option<String>,
    /// Seconds to wait for a guest to power off before stopping it hard.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    timeout: u64,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let (cluster, node) = match &args.node {
        Some(n) => {
            let (c, n) = ctx.node_ref(n)?;
            (c, Some(n))
        }
        None => (ctx.cluster_name(None)?, None),
    };
    let locked = ctx.open(&cluster, "down")?;
    let names: Vec<String> = match &node {
        Some(n) => {
            if locked.cluster.node(n).is_none() && !locked.dir.node(n).path.is_dir() {
                bail!("cluster {cluster} has no node {n}: see vmctl status -c {cluster}");
            }
            vec![n.clone()]
        }
        // Node directories too: a node removed from the file may still run.
        None => {
            let mut v: Vec<String> = locked
                .cluster
                .nodes
                .iter()
                .map(|n| n.name.clone())
                .collect();
            for d in locked.dir.node_dirs() {
                if !v.contains(&d.name) {
                    v.push(d.name);
                }
            }
            v
        }
    };
    stop_all(&locked.dir, &names, Duration::from_secs(args.timeout));
    if node.is_none() {
        net::down(&locked.cluster, &locked.dir.net())?;
    }
    Ok(())
}

/// Stops the nodes one after another (each is asked first, so all power off in parallel).
pub fn stop_all(dir: &crate::state::ClusterDir, names: &[String], timeout: Duration) {
    let handles: Vec<_> = names
        .iter()
        .map(|n| {
            let nd = dir.node(n);
            std::thread::spawn(move || (nd.name.clone(), process::stop(&nd, timeout)))
        })
        .collect();
    for h in handles {
        if let Ok((name, outcome)) = h.join() {
            match outcome {
                Stopped::NotRunning => println!("{name}: not running"),
                Stopped::StaleCleaned => println!(
                    "{name}: its VMM had exited {}; removed the stale pid file and socket",
                    process::exit_reason(&dir.node(&name).vmm_log())
                        .map_or("without a word (killed?)".to_string(), |r| format!("({r})"))
                ),
                Stopped::Graceful => println!("{name}: powered off"),
                Stopped::VmmTimedOut => println!(
                    "{name}: did not power off after the power button; its VMM stopped it after its shutdown timeout"
                ),
                Stopped::Exited(why) => println!("{name}: its VMM exited meanwhile: {why}"),
                Stopped::PoweredOff => println!(
                    "{name}: did not power off within {}s of the power button; stopped it (API power-off)",
                    timeout.as_secs()
                ),
                Stopped::Killed => println!("{name}: its VMM did not stop; killed it (SIGKILL)"),
            }
        }
    }
}
