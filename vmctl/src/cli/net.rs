//! `vmctl net up|down CLUSTER`: the cluster's network alone (bridge, TAPs, dnsmasq), as
//! vmnet@.service runs it. `up` also takes a cluster file and records the cluster, so the
//! network can be made before any VM.

use anyhow::Context as _;

use super::Context;
use crate::cluster::lookup;
use crate::cluster::resolve::{self, Previous};
use crate::net;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Create or repair the network.
    Up {
        /// A cluster with state, or a cluster file (NAME or path) to record first.
        cluster: String,
    },
    /// Stop dnsmasq and remove the TAPs and the bridge.
    Down { cluster: String },
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::Up { cluster } => {
            let dir = ctx.home.cluster(&cluster);
            let (dir, c, _lock) = if dir.exists() {
                let locked = ctx.open(&cluster, "net up")?;
                let c = locked.cluster.clone();
                let d = locked.dir.clone();
                (d, c, Some(locked))
            } else {
                let source = lookup::find(&cluster)?;
                let name = resolve::parse_source(&source)?.name.0;
                let dir = ctx.home.cluster(&name);
                let lock = ctx.lock(&dir, "net up")?;
                let previous = dir.load()?;
                let c = resolve::load(
                    &source,
                    &Previous {
                        cluster: previous.as_ref(),
                        ..Default::default()
                    },
                )?;
                dir.save(&c)?;
                drop(lock);
                let locked = ctx.open(&name, "net up")?;
                (locked.dir.clone(), c, Some(locked))
            };
            net::up(&c, &dir.net(), net::invoking_user())
                .with_context(|| format!("network of cluster {}", c.name))?;
            match (&c.network.bridge, c.network.gateway) {
                (Some(br), Some(gw)) => println!(
                    "network of cluster {} is up: bridge {br} ({gw}, MTU {}), {} TAP(s), dnsmasq",
                    c.name,
                    c.network.mtu,
                    c.nodes.iter().filter(|n| n.tap.is_some()).count()
                ),
                _ => println!(
                    "cluster {} uses user networking: nothing to set up on the host",
                    c.name
                ),
            }
            Ok(())
        }
        Action::Down { cluster } => {
            let locked = ctx.open(&cluster, "net down")?;
            net::down(&locked.cluster, &locked.dir.net())?;
            println!("network of cluster {} is down", locked.cluster.name);
            Ok(())
        }
    }
}
