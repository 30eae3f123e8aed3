use std::path::PathBuf;

use anyhow::Context;
use imagetool::extract::{self, ExtractOptions, Input};
use imagetool::{progress, size};

#[derive(clap::Args)]
pub struct Args {
    /// The PXE initramfs (`*.cpio.gz`, xz, zstd or plain cpio, archives concatenated), or - for stdin.
    pxe_cpio: PathBuf,
    /// Where to write the squashfs image.
    #[arg(short, long)]
    output: PathBuf,
    /// Take this entry instead of usr.squashfs / root.squashfs.
    #[arg(long, value_name = "NAME")]
    member: Option<String>,
    /// Read every file in the image back before keeping it.
    #[arg(long)]
    verify: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let input = Input::from_arg(&args.pxe_cpio);
    let (reader, len) = input.open()?;
    let bar = progress::bytes(len, "extracting");
    let opts = ExtractOptions {
        member: args.member,
        verify: args.verify,
    };
    let report = extract::extract_usr(reader, &args.output, &opts, |done| bar.set_position(done))
        .with_context(|| format!("extract-usr {}", args.pxe_cpio.display()))?;
    bar.finish_and_clear();

    let segment = if report.segment_index == 0
        && report.segment_format == imagetool::initramfs::Format::Cpio
    {
        String::new()
    } else {
        format!(
            " (archive segment {}, {})",
            report.segment_index + 1,
            report.segment_format
        )
    };
    println!("took {}{segment}", report.member);
    println!(
        "wrote {}: {}",
        report.output.display(),
        size::human(report.bytes)
    );
    println!("{}", report.superblock.summary());
    if let Some((files, bytes)) = report.verified {
        println!(
            "verified: read {files} files, {} of data",
            size::human(bytes)
        );
    }
    println!("sha256 {}  {}", report.sha256, report.output.display());
    Ok(())
}
