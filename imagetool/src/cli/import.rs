//! `imagetool import IN|- -o IMAGE`: a thin layer over [`imagetool::sparse::import`].

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use imagetool::atomic::Overwrite;
use imagetool::digest::parse_sha256sum;
use imagetool::size::human;
use imagetool::sparse::{self, Format, ImportOptions, ImportReport, SparseError};

#[derive(clap::Args)]
pub struct Args {
    /// The stream to import (gzip, zstd or raw, detected); `-` is standard input.
    input: PathBuf,
    /// The sparse image to create.
    #[arg(short, long, value_name = "IMAGE")]
    output: PathBuf,
    /// Final apparent size of IMAGE (e.g. 20G): the content, then a hole up to SIZE. Content
    /// longer than SIZE is an error. Default: the content's length.
    #[arg(long, value_name = "BYTES")]
    size: Option<String>,
    /// The SHA-256 the content must have: a sha256sum file, or the 64 hex digits themselves.
    /// Default: IN.sha256 if it exists (never for standard input).
    #[arg(long, value_name = "FILE|SHA256")]
    digest: Option<OsString>,
    /// Read the input as this format instead of detecting it.
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Replace IMAGE if it exists.
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

/// Where the expected digest came from, for the summary.
enum DigestSource {
    Given(String),
    Beside(PathBuf),
    None,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let from_stdin = args.input.as_os_str() == "-";
    if args.output.as_os_str() == "-" {
        bail!("import writes a sparse file, which standard output cannot be: give -o IMAGE");
    }
    // Parsed here rather than by clap, whose errors span several lines.
    let size = args
        .size
        .as_deref()
        .map(imagetool::size::parse)
        .transpose()?;
    let (expected, source) = expected_digest(&args, from_stdin)?;
    let overwrite = if args.force {
        Overwrite::Allow
    } else {
        Overwrite::Refuse
    };

    let mut stdin;
    let mut file;
    let (input, len): (&mut dyn Read, Option<u64>) = if from_stdin {
        stdin = std::io::stdin().lock();
        (&mut stdin, None)
    } else {
        file = File::open(&args.input)
            .with_context(|| format!("cannot open {}", args.input.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot read {}", args.input.display()))?;
        if meta.is_dir() {
            bail!(
                "{} is a directory: give the stream file to import",
                args.input.display()
            );
        }
        let len = meta.is_file().then_some(meta.len());
        (&mut file, len)
    };
    let opts = ImportOptions {
        format: args.format.map(Format::from),
        size,
        expected_sha256: expected,
        overwrite,
        progress: imagetool::progress::bytes(len, "import"),
    };
    let result = sparse::import(input, &args.output, &opts);
    opts.progress.finish_and_clear();
    let report = result.map_err(|e| match e {
        SparseError::Exists { .. } => anyhow::anyhow!("{e}: use --force to replace it"),
        SparseError::DigestMismatch { .. } => match &source {
            DigestSource::Beside(p) => anyhow::anyhow!("{e} ({})", p.display()),
            _ => anyhow::Error::new(e),
        },
        e => anyhow::Error::new(e),
    });
    let report = report.with_context(|| {
        if from_stdin {
            "cannot import standard input".to_string()
        } else {
            format!("cannot import {}", args.input.display())
        }
    })?;
    print!("{}", summary(&args.output, &report, &source));
    Ok(())
}

/// The digest to check: `--digest` (a file or the hex digits), else `IN.sha256` beside the input.
fn expected_digest(
    args: &Args,
    from_stdin: bool,
) -> anyhow::Result<(Option<String>, DigestSource)> {
    if let Some(given) = &args.digest {
        let path = Path::new(given);
        if !path.exists()
            && let Some(hex) = given.to_str().and_then(parse_sha256sum)
        {
            return Ok((Some(hex), DigestSource::Given("--digest".into())));
        }
        let digest = read_digest_file(path)?;
        return Ok((
            Some(digest),
            DigestSource::Given(path.display().to_string()),
        ));
    }
    if from_stdin {
        return Ok((None, DigestSource::None));
    }
    let mut beside = args.input.clone().into_os_string();
    beside.push(".sha256");
    let beside = PathBuf::from(beside);
    if !beside.exists() {
        return Ok((None, DigestSource::None));
    }
    Ok((
        Some(read_digest_file(&beside)?),
        DigestSource::Beside(beside),
    ))
}

fn read_digest_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the digest file {}", path.display()))?;
    parse_sha256sum(&text).with_context(|| {
        format!(
            "{} holds no SHA-256 digest: expected a sha256sum line (64 hex digits, then the name)",
            path.display()
        )
    })
}

fn summary(image: &Path, r: &ImportReport, source: &DigestSource) -> String {
    let record = "the stream's end record";
    let check = match (source, r.sealed) {
        (DigestSource::Given(from), false) => format!("verified against {from}"),
        (DigestSource::Given(from), true) => format!("verified against {from} and {record}"),
        (DigestSource::Beside(p), false) => format!("verified against {}", p.display()),
        (DigestSource::Beside(p), true) => {
            format!("verified against {} and {record}", p.display())
        }
        (DigestSource::None, true) => format!("verified against {record}"),
        (DigestSource::None, false) => {
            "not verified: no --digest given, no digest file beside the input, no end record".into()
        }
    };
    format!(
        "image:         {}\n\
         input:         {} ({} bytes, {})\n\
         content:       {} ({} bytes)\n\
         apparent size: {} ({} bytes)\n\
         allocated:     {} ({} bytes; {} bytes of non-zero blocks written)\n\
         sha256:        {} ({check})\n",
        image.display(),
        human(r.input_bytes),
        r.input_bytes,
        r.format,
        human(r.content_bytes),
        r.content_bytes,
        human(r.image_size),
        r.image_size,
        human(r.allocated_bytes),
        r.allocated_bytes,
        r.written_bytes,
        r.sha256,
    )
}
