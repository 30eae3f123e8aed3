//! `imagetool export IMAGE -o OUT|-`: a thin layer over [`imagetool::sparse::export`].

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use imagetool::atomic::{AtomicFile, Overwrite};
use imagetool::digest::sha256sum_line;
use imagetool::size::human;
use imagetool::sparse::{self, ExportOptions, ExportReport, Format, SparseError};

/// Output is written in pieces this large: fewer system calls and pipe wake-ups.
const OUT_BUFFER: usize = 1 << 20;

#[derive(clap::Args)]
pub struct Args {
    /// The disk image to export (a regular file, sparse or not, or a block device).
    image: PathBuf,
    /// Where to write the stream; `-` is standard output.
    #[arg(short, long, value_name = "OUT|-")]
    output: PathBuf,
    /// Stream format; default from OUT's name (.gz gzip, .zst/.zstd zstd, .raw raw), else gzip.
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Compression level: gzip 0-9 (default 6), zstd 1-22 or negative for faster (default 3).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    level: Option<i32>,
    /// Also write the content's SHA-256 to FILE, as a sha256sum line naming the image's file name.
    /// Name it OUT.sha256 and `imagetool import OUT` checks it by itself.
    #[arg(long, value_name = "FILE")]
    digest: Option<PathBuf>,
    /// Skip the SHA-256: most of the time a big sparse image takes, as every zero of every hole
    /// must be hashed (about 0.75 s per GiB). The stream then carries no digest to check.
    #[arg(long)]
    no_digest: bool,
    /// Replace OUT and the digest file if they exist.
    #[arg(long)]
    force: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Gzip,
    Zstd,
    Raw,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Gzip => Format::Gzip,
            FormatArg::Zstd => Format::Zstd,
            FormatArg::Raw => Format::Raw,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let to_stdout = args.output.as_os_str() == "-";
    let named = if to_stdout {
        None
    } else {
        Format::from_name(&args.output)
    };
    let format = match (args.format.map(Format::from), named) {
        (Some(f), Some(n)) if f != n => {
            tracing::warn!(
                "writing {f} to {}, whose name says {n}",
                args.output.display()
            );
            f
        }
        (Some(f), _) => f,
        (None, n) => n.unwrap_or(Format::Gzip),
    };
    // Checked before any output is created, so a typo costs nothing.
    format.level(args.level)?;
    if args.no_digest && args.digest.is_some() {
        bail!("--digest writes the SHA-256 that --no-digest skips: give one or the other");
    }
    let overwrite = if args.force {
        Overwrite::Allow
    } else {
        Overwrite::Refuse
    };
    if to_stdout && std::io::stdout().is_terminal() {
        bail!("standard output is a terminal: redirect it to a file or a pipe, or use -o FILE");
    }
    let digest_file = args
        .digest
        .as_deref()
        .map(|p| AtomicFile::create(p, overwrite).map_err(|e| create_error(p, e)))
        .transpose()?;

    let size = sparse::image_size(&args.image)?;
    let opts = ExportOptions {
        format,
        level: args.level,
        progress: imagetool::progress::bytes(Some(size), "export"),
        digest: !args.no_digest,
    };
    let context = || format!("cannot export {}", args.image.display());
    let report = if to_stdout {
        let stdout = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .context("cannot use standard output")?;
        // Straight to the descriptor: Rust's stdout is line-buffered, which suits text, not gzip.
        let mut out = BufWriter::with_capacity(OUT_BUFFER, File::from(stdout));
        let report = sparse::export(&args.image, &mut out, &opts);
        opts.progress.finish_and_clear();
        let report = report.with_context(context)?;
        out.into_inner()
            .map_err(|e| SparseError::output(e.into_error()))
            .with_context(context)?;
        report
    } else {
        let mut file = AtomicFile::create(&args.output, overwrite)
            .map_err(|e| create_error(&args.output, e))?;
        let mut out = BufWriter::with_capacity(OUT_BUFFER, file.file());
        let report = sparse::export(&args.image, &mut out, &opts);
        opts.progress.finish_and_clear();
        let report = report.with_context(context)?;
        let written = out.into_inner().map(|_| ()).map_err(|e| e.into_error());
        written
            .and_then(|()| file.commit())
            .with_context(|| format!("cannot write {}", args.output.display()))?;
        report
    };

    if let Some(((mut file, path), sha256)) = digest_file
        .zip(args.digest.as_deref())
        .zip(report.sha256.as_deref())
    {
        let name = args
            .image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        file.file()
            .write_all(sha256sum_line(sha256, &name).as_bytes())
            .and_then(|()| file.commit())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }

    let text = summary(&args.image, &report);
    // With the stream on stdout, the summary must not mix into it.
    if to_stdout {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    Ok(())
}

fn create_error(path: &Path, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        anyhow::anyhow!(
            "{} already exists: use --force to replace it",
            path.display()
        )
    } else {
        anyhow::anyhow!("cannot create {}: {e}", path.display())
    }
}

fn summary(image: &Path, r: &ExportReport) -> String {
    let level = if r.format == Format::Raw {
        String::new()
    } else {
        format!(" level {}", r.level)
    };
    let ratio = if r.output_bytes > 0 {
        r.apparent_size as f64 / r.output_bytes as f64
    } else {
        0.0
    };
    format!(
        "image:         {}\n\
         apparent size: {} ({} bytes)\n\
         data:          {} ({} bytes in {} extents, {} of it zero blocks)\n\
         output:        {} ({} bytes, {}{level}, {ratio:.1}:1)\n\
         sha256:        {}\n",
        image.display(),
        human(r.apparent_size),
        r.apparent_size,
        human(r.data_bytes),
        r.data_bytes,
        r.extents,
        human(r.zero_data_bytes),
        human(r.output_bytes),
        r.output_bytes,
        r.format,
        r.sha256.as_deref().unwrap_or("not computed (--no-digest)"),
    )
}
