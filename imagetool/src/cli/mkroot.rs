use std::path::PathBuf;

use anyhow::Context;
use imagetool::atomic::Overwrite;
use imagetool::mkroot::{self, MkrootOptions};
use imagetool::size;

#[derive(clap::Args)]
pub struct Args {
    /// The image file to create.
    #[arg(short, long)]
    output: PathBuf,
    /// Apparent size (8G, 20GiB, 512M); only what is written takes disk space.
    #[arg(long, value_parser = size::parse)]
    size: u64,
    /// Filesystem label; CoreOS-family systems find their root by the label ROOT.
    #[arg(long, default_value = "ROOT")]
    label: String,
    /// Copy this directory's contents into the new filesystem.
    #[arg(long, value_name = "DIR")]
    from: Option<PathBuf>,
    /// Filesystem UUID (random if not given).
    #[arg(long)]
    uuid: Option<uuid::Uuid>,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = MkrootOptions {
        size: args.size,
        label: args.label,
        from: args.from,
        uuid: args.uuid,
        overwrite: if args.force {
            Overwrite::Allow
        } else {
            Overwrite::Refuse
        },
    };
    let r = mkroot::mkroot(&args.output, &opts)
        .with_context(|| format!("mkroot {}", args.output.display()))?;
    let sb = &r.superblock;
    println!(
        "created {}: ext4, label {:?}, UUID {}, {} apparent, {} allocated{}",
        r.output.display(),
        sb.label,
        sb.uuid,
        size::human(r.apparent_bytes),
        size::human(r.allocated_bytes),
        if r.nocow { ", no-copy-on-write" } else { "" }
    );
    Ok(())
}
