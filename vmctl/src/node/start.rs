//! Starting one node: its files, its VMM invocation, the record of what it runs with.

use std::path::Path;

use anyhow::Context as _;

use super::{Settings, invocation, prepare, process};
use crate::cluster::{Cluster, Node};
use crate::host::Kvm;
use crate::state::{self, NodeDir};
use crate::store::Images;
use crate::vmm_args::VmmInvocation;

pub struct Plan {
    pub invocation: VmmInvocation,
    pub settings: Settings,
}

/// Makes the node's disk and config drive and works out how to run it.
pub fn plan(
    cluster: &Cluster,
    node: &Node,
    images: &Images,
    dir: &NodeDir,
    kvm: Kvm,
    shutdown_timeout: u64,
) -> anyhow::Result<Plan> {
    let prepared = prepare::prepare(&cluster.name, node, dir)?;
    let invocation = invocation(
        cluster,
        node,
        images,
        dir,
        kvm,
        prepared.first_boot,
        shutdown_timeout,
    )
    .with_context(|| format!("{}: cannot build the VMM's command line", node.name))?;
    Ok(Plan {
        invocation,
        settings: Settings::of(cluster, node, images),
    })
}

/// Starts the node's VMM detached (for `vmctl up`).
pub fn start_detached(vmm: &Path, plan: &Plan, dir: &NodeDir) -> anyhow::Result<()> {
    process::spawn_detached(vmm, &plan.invocation, dir)?;
    state::write_json(&dir.started(), &plan.settings)?;
    Ok(())
}
