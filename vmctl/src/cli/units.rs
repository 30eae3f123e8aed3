//! `vmctl units install`: writes vm@.service and vmnet@.service.

use std::path::PathBuf;

use anyhow::Context as _;

use super::Context;
use crate::systemd::units;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Write the unit templates (then: systemctl daemon-reload).
    Install {
        /// Where to write them.
        #[arg(long, default_value = units::DEFAULT_DIR)]
        dir: PathBuf,
    },
}

pub fn run(_ctx: &Context, args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::Install { dir } => {
            let exe = std::env::current_exe().context("cannot tell where this vmctl binary is")?;
            let home = std::env::var_os("VMCTL_HOME")
                .filter(|h| !h.is_empty())
                .map(|h| std::path::absolute(PathBuf::from(h)))
                .transpose()?;
            let written = units::install(&dir, &exe, home.as_deref())
                .with_context(|| format!("cannot write the units into {}", dir.display()))?;
            for p in &written {
                println!("wrote {}", p.display());
            }
            if crate::systemd::booted() {
                println!("now: systemctl daemon-reload");
            }
            Ok(())
        }
    }
}
