//! `vmm`: boot a kernel in a KVM virtual machine. Exit statuses are listed in docs/vmm.md and
//! `vmm --help`.

use std::io::{IsTerminal, Write};

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use vmm::config::SeccompMode;
use vmm::config::cli::Cli;
use vmm::exit::{STATUS_CONFIG_ERROR, STATUS_VMM_ERROR};

fn init_logging(verbose: u8, boot_marker: bool) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let mut directives = level.to_owned();
    if boot_marker && verbose == 0 {
        directives.push_str(",boot_marker=info");
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr)
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .with_target(false)
        .init();
}

/// stderr is often a pipe to `vmctl run` or a journal; if the reader goes away, the guest keeps
/// running and its log lines are dropped rather than panicking the thread that wrote them.
struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One line to stderr, for the final error: nothing to do if nobody reads it.
fn say(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A panic in any thread is a VMM bug; the threads depend on each other, so one gone would
/// leave the rest waiting forever. Print the message (the default hook ignores a closed
/// stderr) and end the whole process with the VMM-error status. Pages already written to the
/// disk images are in the page cache and survive the process.
fn exit_on_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        vmm::console::terminal::restore();
        // SAFETY: _exit only ends the process; no destructor or atexit handler runs while
        // other threads still use their state.
        unsafe { libc::_exit(STATUS_VMM_ERROR) };
    }));
}

/// Each 9p fid holds a descriptor; the soft limit (often 1024) is raised to the hard one so
/// shares are bounded by their own fid limit rather than by the first ls -R.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::debug!("cannot raise the open-file limit: {e}");
        }
    }
}

/// A panic's backtrace is resolved by reading the executable (getcwd, open), which the
/// seccomp filters forbid: the thread would be killed with SIGSYS before the panic message
/// came out. With `--seccomp on`, panics print their message without a trace.
fn no_backtraces_under_seccomp(mode: SeccompMode) {
    if mode != SeccompMode::On {
        return;
    }
    for var in ["RUST_BACKTRACE", "RUST_LIB_BACKTRACE"] {
        if std::env::var_os(var).is_some_and(|v| v != "0") {
            tracing::info!("{var} ignored with --seccomp on; --seccomp log or off shows traces");
        }
        // SAFETY: called from main before any other thread exists.
        unsafe { std::env::set_var(var, "0") };
    }
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let verbose = cli.verbose;
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            say(format_args!("error: {e}"));
            return Ok(STATUS_CONFIG_ERROR);
        }
    };
    init_logging(verbose, config.boot_marker.is_some());
    no_backtraces_under_seccomp(config.seccomp);
    raise_fd_limit();
    let vm = vmm::Vmm::new(&config).context("cannot start the VM")?;
    let exit = vm.run().context("VM failed")?;
    match &exit {
        vmm::VmExit::PowerOff | vmm::VmExit::DebugExit(_) => tracing::info!("{exit}"),
        vmm::VmExit::Reboot
        | vmm::VmExit::HostStop
        | vmm::VmExit::HardStop(_)
        | vmm::VmExit::ShutdownTimeout(_) => tracing::warn!("{exit}"),
        vmm::VmExit::GuestCrash(_) | vmm::VmExit::VmmError(_) => say(format_args!("error: {exit}")),
    }
    Ok(exit.status())
}

fn main() {
    vmm::boot_marker::mark_start();
    exit_on_panic();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                e.exit();
            }
            // One line, like every other error; clap's own rendering adds usage text.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            say(format_args!("{first} (see vmm --help)"));
            std::process::exit(STATUS_CONFIG_ERROR);
        }
    };
    let status = match run(cli) {
        Ok(status) => status,
        Err(e) => {
            vmm::console::terminal::restore();
            say(format_args!("error: {e:#}"));
            e.downcast_ref::<vmm::Error>()
                .map_or(STATUS_VMM_ERROR, vmm::Error::exit_status)
        }
    };
    vmm::console::terminal::restore();
    std::process::exit(status);
}
