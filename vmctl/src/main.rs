use std::process::ExitCode;

use clap::Parser;
use vmctl::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VMCTL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    // `run` handles SIGTERM/SIGINT itself (a graceful guest power-off); `console` passes keys on.
    if !matches!(cli.command, Command::Run(_) | Command::Console(_))
        && let Err(e) = imagetool::atomic::install_signal_cleanup()
    {
        eprintln!("vmctl: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    match vmctl::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the causes joined, outermost first.
            let msg = e
                .chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": ");
            eprintln!("vmctl: {}", msg.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
