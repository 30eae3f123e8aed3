//! The `imagetool` command line: one module per verb, each turning its arguments into a call to
//! the library and its result into what the user reads.

mod config_drive;
mod export;
mod extract_usr;
mod import;
mod inspect;
mod mkroot;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "imagetool",
    version,
    about = "Images for CoreOS-family VMs: shared /usr, sparse roots, config drives, sparse export/import"
)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pull the /usr squashfs out of a PXE initramfs (cpio, plain or compressed, concatenated).
    ExtractUsr(extract_usr::Args),
    /// Say what a file is: cpio, squashfs, ext4, kernel or raw disk, with its key facts.
    Inspect(inspect::Args),
    /// Create a sparse ext4 root filesystem image.
    Mkroot(mkroot::Args),
    /// Write an OpenStack config-drive tree for coreos-cloudinit.
    ConfigDrive(config_drive::Args),
    /// Export a disk image as a gzip/zstd/raw stream, reading only its data.
    Export(export::Args),
    /// Import a gzip/zstd/raw stream into a sparse disk image.
    Import(import::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    if let Err(e) = imagetool::atomic::install_signal_cleanup() {
        tracing::warn!("cannot watch for signals, an interrupted run may leave a .part file: {e}");
    }
    let result = match cli.command {
        Command::ExtractUsr(a) => extract_usr::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Mkroot(a) => mkroot::run(a),
        Command::ConfigDrive(a) => config_drive::run(a),
        Command::Export(a) => export::run(a),
        Command::Import(a) => import::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imagetool: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, outermost first. A cause whose text an outer message
/// already quotes is left out, so library errors may carry their cause in their own message.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out.replace('\n', " ")
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMAGETOOL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
