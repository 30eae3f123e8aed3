//! `vmctl logs NODE [-f]`: the node's serial console log.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::Context;
use crate::node::process;
use crate::state::pidfile::Liveness;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// NODE or CLUSTER:NODE.
    node: String,
    /// Keep printing what the console writes, until the VM stops (or Ctrl-C).
    #[arg(short, long)]
    follow: bool,
    /// Also show the VMM's own log.
    #[arg(long)]
    vmm: bool,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let (cluster, node) = ctx.node_ref(&args.node)?;
    let nd = {
        let locked = ctx.open(&cluster, "logs")?;
        if locked.cluster.node(&node).is_none() {
            bail!("cluster {cluster} has no node {node}");
        }
        locked.dir.node(&node)
    };
    let path = if args.vmm {
        nd.vmm_log()
    } else {
        nd.console_log()
    };
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "{node} has no log yet ({} does not exist): start it with vmctl up",
                path.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = f.read(&mut buf)?;
        if n > 0 {
            if let Err(e) = out.write_all(&buf[..n]) {
                // `vmctl logs x | head` closes the pipe: that is the reader's choice, not an error.
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(e.into());
            }
            continue;
        }
        if !args.follow || !matches!(process::liveness(&nd), Liveness::Running(_)) {
            break;
        }
        out.flush()?;
        std::thread::sleep(Duration::from_millis(200));
        // A log that was replaced (a new start rotates it) is reopened from its beginning.
        use std::os::unix::fs::MetadataExt;
        let current = f.metadata()?.ino();
        if let Ok(newer) = std::fs::File::open(&path)
            && newer.metadata()?.ino() != current
        {
            f = newer;
        }
    }
    out.flush()?;
    Ok(())
}
