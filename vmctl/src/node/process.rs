//! Starting and stopping a node's VMM, and noticing one that died without cleaning up.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use thiserror::Error;

use crate::api::{self, Request};
use crate::state::NodeDir;
use crate::state::pidfile::{self, Liveness, PidRecord};
use crate::vmm_args::VmmInvocation;

#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("{node}: {err}")]
    Args {
        node: String,
        err: crate::vmm_args::ArgsError,
    },
    #[error("{node}: cannot start the VMM {vmm}: {err}")]
    Spawn {
        node: String,
        vmm: String,
        err: std::io::Error,
    },
    #[error("{node}: cannot write {path}: {err}")]
    Write {
        node: String,
        path: std::path::PathBuf,
        err: std::io::Error,
    },
    #[error("{node}: the VMM exited at once ({status}): {last}")]
    Died {
        node: String,
        status: String,
        last: String,
    },
}

/// The node's VMM state, with a stale pid file and socket (a VMM killed with `kill -9`, or a
/// host crash) removed on the way: after this, `Running` or nothing.
pub fn liveness(dir: &NodeDir) -> Liveness {
    match pidfile::check(&dir.pid_file()) {
        Liveness::Stale(rec) => {
            tracing::info!(
                "{}: the VMM (pid {}) is gone without cleaning up; removing its pid file and socket",
                dir.name,
                rec.pid
            );
            clean(dir);
            Liveness::Stale(rec)
        }
        other => other,
    }
}

pub fn clean(dir: &NodeDir) {
    let _ = std::fs::remove_file(dir.pid_file());
    let _ = std::fs::remove_file(dir.api_socket());
    let _ = std::fs::remove_file(dir.systemd_unit());
}

/// The unit running the node, when systemd runs this machine and the node was started by it.
fn systemd_unit(dir: &NodeDir) -> Option<String> {
    if !crate::systemd::booted() {
        return None;
    }
    let unit = std::fs::read_to_string(dir.systemd_unit()).ok()?;
    let unit = unit.trim();
    (unit.starts_with("vm@") && unit.ends_with(".service")).then(|| unit.to_string())
}

fn command(vmm: &Path, inv: &VmmInvocation, dir: &NodeDir) -> Result<Command, ProcessError> {
    let args = inv.args().map_err(|err| ProcessError::Args {
        node: dir.name.clone(),
        err,
    })?;
    // A socket left by a VMM that died would make the new one fail to bind.
    let _ = std::fs::remove_file(dir.api_socket());
    // One boot per log: what readiness looks for must come from this start, not the last.
    let _ = std::fs::rename(dir.console_log(), dir.previous_console_log());
    let _ = std::fs::rename(dir.vmm_log(), dir.previous_vmm_log());
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.vmm_log())
        .map_err(|err| ProcessError::Write {
            node: dir.name.clone(),
            path: dir.vmm_log(),
            err,
        })?;
    let log2 = log.try_clone().map_err(|err| ProcessError::Write {
        node: dir.name.clone(),
        path: dir.vmm_log(),
        err,
    })?;
    let mut cmd = Command::new(vmm);
    cmd.args(args).stdin(Stdio::null()).stdout(log).stderr(log2);
    Ok(cmd)
}

fn spawned(dir: &NodeDir, vmm: &Path, child: &Child) -> Result<PidRecord, ProcessError> {
    let rec = pidfile::record_for(child.id()).unwrap_or(PidRecord {
        pid: child.id(),
        start_time: 0,
    });
    pidfile::write(&dir.pid_file(), rec).map_err(|err| ProcessError::Write {
        node: dir.name.clone(),
        path: dir.pid_file(),
        err,
    })?;
    tracing::info!("{}: started {} (pid {})", dir.name, vmm.display(), rec.pid);
    Ok(rec)
}

/// Starts the VMM in its own session, so it outlives this vmctl and the terminal.
pub fn spawn_detached(
    vmm: &Path,
    inv: &VmmInvocation,
    dir: &NodeDir,
) -> Result<PidRecord, ProcessError> {
    let mut cmd = command(vmm, inv, dir)?;
    // SAFETY: setsid() is async-signal-safe and touches no memory of the parent; it is the only
    // thing run between fork and exec.
    unsafe {
        cmd.pre_exec(|| rustix::process::setsid().map(|_| ()).map_err(Into::into));
    }
    let spawn_err = |err| ProcessError::Spawn {
        node: dir.name.clone(),
        vmm: vmm.display().to_string(),
        err,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    let rec = spawned(dir, vmm, &child)?;
    // Catch a VMM that rejects its configuration at once, while we can still say why.
    std::thread::sleep(Duration::from_millis(200));
    if let Ok(Some(status)) = child.try_wait() {
        clean(dir);
        return Err(ProcessError::Died {
            node: dir.name.clone(),
            status: status.to_string(),
            last: last_line(&dir.vmm_log()),
        });
    }
    Ok(rec)
}

/// Starts the VMM as a child of this process (`vmctl run`).
pub fn spawn_child(vmm: &Path, inv: &VmmInvocation, dir: &NodeDir) -> Result<Child, ProcessError> {
    let mut cmd = command(vmm, inv, dir)?;
    // Its own process group: a terminal's Ctrl-C reaches vmctl run only, which asks for a
    // graceful stop instead of both racing.
    cmd.process_group(0);
    let child = cmd.spawn().map_err(|err| ProcessError::Spawn {
        node: dir.name.clone(),
        vmm: vmm.display().to_string(),
        err,
    })?;
    spawned(dir, vmm, &child)?;
    Ok(child)
}

/// An `error:` line, or a tracing warning or error: how the VMM says what went wrong.
fn is_error_line(l: &str) -> bool {
    l.starts_with("error:") || l.contains(" WARN ") || l.contains(" ERROR ")
}

/// Why the VMM exited, from its log: its last error or warning line, or the line saying the
/// guest powered off or used the debug exit. None when it said nothing (killed).
pub fn exit_reason(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| {
            is_error_line(l) || l.ends_with(VMM_POWERED_OFF) || l.ends_with("debug-exit port")
        })
        .map(str::to_string)
}

/// The last error or warning line of a log (the VMM's exit reason), else its last line, for
/// one-line errors.
pub fn last_line(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines = || text.lines().rev().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .find(|l| is_error_line(l))
        .or_else(|| lines().next())
        .map(str::to_string)
        .unwrap_or_else(|| format!("no output (see {})", path.display()))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It was not running.
    NotRunning,
    /// It was gone already; its stale pid file and socket were removed.
    StaleCleaned,
    /// The guest powered off after the power button.
    Graceful,
    /// The guest ignored the power button and the VMM stopped it after its own
    /// `--shutdown-timeout`.
    VmmTimedOut,
    /// The VMM exited for another reason meanwhile (a guest crash, a reboot): its log's line.
    Exited(String),
    /// The guest ignored the power button for the whole timeout; the API's `power-off` stopped it
    /// (disks flushed).
    PoweredOff,
    /// The VMM did not answer or did not stop: killed with SIGKILL.
    Killed,
}

fn signal(rec: PidRecord, sig: Signal) {
    // Re-checked right before signalling: never signal a pid that now belongs to someone else.
    if pidfile::start_time(rec.pid) == Some(rec.start_time)
        && let Some(pid) = i32::try_from(rec.pid).ok().and_then(Pid::from_raw)
    {
        let _ = kill_process(pid, sig);
    }
}

fn wait_gone(rec: PidRecord, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pidfile::start_time(rec.pid) != Some(rec.start_time) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the VMM logs when it stops a guest that ignored the power button (exit status 6), and
/// when the guest powered off (status 0).
const VMM_TIMED_OUT: &str = "did not power off within";
const VMM_POWERED_OFF: &str = "guest powered off";

/// Presses the guest's power button (API `shutdown`; SIGTERM, which the VMM takes the same way,
/// when the socket does not answer), waits up to `timeout` for it to power off, then stops it
/// with the API's `power-off`, and kills a VMM that still does not go.
pub fn stop(dir: &NodeDir, timeout: Duration) -> Stopped {
    let rec = match liveness(dir) {
        Liveness::None => return Stopped::NotRunning,
        Liveness::Stale(_) => return Stopped::StaleCleaned,
        Liveness::Running(rec) => rec,
    };
    if let Some(unit) = systemd_unit(dir) {
        // systemd sends SIGTERM to vmctl run, which presses the power button; its own stop
        // timeout then applies.
        let ok = std::process::Command::new("systemctl")
            .args(["stop", &unit])
            .status()
            .is_ok_and(|s| s.success());
        if ok && wait_gone(rec, timeout) {
            clean(dir);
            return Stopped::Graceful;
        }
    }
    let api_wait = Duration::from_secs(2);
    let log_before = std::fs::metadata(dir.vmm_log()).map_or(0, |m| m.len());
    match api::call(&dir.api_socket(), &Request::Shutdown, api_wait) {
        Ok(_) => {}
        // Pressed already (another down, or systemd): keep waiting for that.
        Err(api::ApiError::Refused { message, .. }) if message.contains("already") => {}
        Err(e) => {
            tracing::info!("{}: {e}; sending SIGTERM instead", dir.name);
            signal(rec, Signal::TERM);
        }
    }
    let outcome = if wait_gone(rec, timeout) {
        let said = log_tail(&dir.vmm_log(), log_before);
        if said.contains(VMM_TIMED_OUT) {
            Stopped::VmmTimedOut
        } else if said.contains(VMM_POWERED_OFF) {
            Stopped::Graceful
        } else {
            Stopped::Exited(
                exit_reason(&dir.vmm_log()).unwrap_or_else(|| "without a word (killed?)".into()),
            )
        }
    } else {
        tracing::info!(
            "{}: still running {}s after the power button; powering it off",
            dir.name,
            timeout.as_secs()
        );
        let asked = api::call(&dir.api_socket(), &Request::PowerOff, api_wait).is_ok();
        if asked && wait_gone(rec, Duration::from_secs(10)) {
            Stopped::PoweredOff
        } else {
            signal(rec, Signal::KILL);
            wait_gone(rec, Duration::from_secs(5));
            Stopped::Killed
        }
    };
    clean(dir);
    outcome
}

/// What a log gained after `from` bytes.
fn log_tail(path: &Path, from: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path)
        && f.seek(SeekFrom::Start(from)).is_ok()
    {
        let mut buf = Vec::new();
        let _ = f.take(1 << 20).read_to_end(&mut buf);
        s = String::from_utf8_lossy(&buf).into_owned();
    }
    s
}
