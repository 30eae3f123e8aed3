//! `vmctl export NODE -o FILE`: the node's root disk as a sparse-aware stream (imagetool's
//! export: holes cost nothing), written whole or not at all.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use imagetool::atomic::{AtomicFile, Overwrite};
use imagetool::sparse::{self, ExportOptions, Format};

use super::Context;
use crate::node::process;
use crate::state::pidfile::Liveness;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// NODE or CLUSTER:NODE.
    node: String,
    /// The output file; its name picks the format (.gz gzip, .zst zstd, .raw raw; else gzip).
    #[arg(short, long)]
    output: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<()> {
    let (cluster, node) = ctx.node_ref(&args.node)?;
    // Held throughout: nobody starts the node while its disk is read.
    let locked = ctx.open(&cluster, "export")?;
    if locked.cluster.node(&node).is_none() {
        bail!("cluster {cluster} has no node {node}");
    }
    let nd = locked.dir.node(&node);
    if matches!(process::liveness(&nd), Liveness::Running(_)) {
        bail!(
            "{node} is running, so its disk is changing: stop it with vmctl down {cluster}:{node}, then export"
        );
    }
    let disk = nd.root_disk();
    if !disk.is_file() {
        bail!("{node} has no root disk yet: vmctl up {cluster} creates it");
    }
    let format = Format::from_name(&args.output).unwrap_or(Format::Gzip);
    let overwrite = if args.force {
        Overwrite::Allow
    } else {
        Overwrite::Refuse
    };
    let mut out = AtomicFile::create(&args.output, overwrite).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists: pass --force to replace it",
                args.output.display()
            )
        } else {
            anyhow::anyhow!("cannot create {}: {e}", args.output.display())
        }
    })?;
    let size = sparse::image_size(&disk)?;
    let opts = ExportOptions {
        format,
        level: None,
        progress: imagetool::progress::bytes(Some(size), "export"),
        ..ExportOptions::default()
    };
    let report = {
        let mut w = BufWriter::with_capacity(1 << 20, out.file());
        let r = sparse::export(&disk, &mut w, &opts)?;
        w.flush().context("cannot write the export")?;
        r
    };
    opts.progress.finish_and_clear();
    out.commit()
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    println!(
        "exported {node}'s root disk to {}: {} apparent, {} of data, {} written ({format})",
        args.output.display(),
        imagetool::size::human(report.apparent_size),
        imagetool::size::human(report.data_bytes),
        imagetool::size::human(report.output_bytes),
    );
    if let Some(digest) = &report.sha256 {
        println!("sha256 {digest}");
    }
    Ok(())
}
