//! `vmctl destroy [CLUSTER] --yes`: stops everything and removes the cluster's disks and state.
//! The shared image store stays (other clusters may use it).

use std::time::Duration;

use anyhow::{Context as _, bail};

use super::Context;
use super::down::stop_all;
use crate::net;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster (default: -c, or the only one).
    cluster: Option<String>,
    /// Really remove the disks: without it, destroy refuses.
    #[arg(long)]
    yes: bool,
    /// Seconds to wait for guests to power off before stopping them hard.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let name = ctx.cluster_name(args.cluster.as_deref())?;
    let locked = ctx.open(&name, "destroy")?;
    let nodes: Vec<String> = locked.dir.node_dirs().into_iter().map(|d| d.name).collect();
    if !args.yes {
        bail!(
            "destroy removes cluster {name} with the disks of {} node(s) under {}: run again with --yes",
            nodes.len(),
            locked.dir.path.display()
        );
    }
    stop_all(&locked.dir, &nodes, Duration::from_secs(args.timeout));
    net::down(&locked.cluster, &locked.dir.net())?;
    // Out of the way in one rename first, so a crash midway leaves no half-removed cluster
    // that looks alive.
    let doomed = locked
        .dir
        .path
        .with_file_name(format!(".{name}.destroying"));
    let _ = std::fs::remove_dir_all(&doomed);
    std::fs::rename(&locked.dir.path, &doomed)
        .with_context(|| format!("cannot remove {}", locked.dir.path.display()))?;
    std::fs::remove_dir_all(&doomed)
        .with_context(|| format!("cannot remove {}", doomed.display()))?;
    println!("destroyed cluster {name}");
    Ok(())
}
