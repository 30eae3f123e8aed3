//! A VMM's pid file: "PID STARTTIME", the start time being field 22 of /proc/PID/stat. A pid alone
//! is not enough: after a crash or `kill -9` the number can be reused by an unrelated process,
//! which vmctl must never signal. A process is ours only if both match and it is not a zombie.

use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PidRecord {
    pub pid: u32,
    pub start_time: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// No pid file: never started, or stopped cleanly.
    None,
    Running(PidRecord),
    /// The pid file names a process that is gone (or a different one now): the VMM died
    /// without cleaning up, e.g. after `kill -9`.
    Stale(PidRecord),
}

/// `/proc/PID/stat`'s start time, if the process exists and is not a zombie.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); starttime is field 22.
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(22 - 3)?.parse().ok()
}

pub fn record_for(pid: u32) -> Option<PidRecord> {
    start_time(pid).map(|start_time| PidRecord { pid, start_time })
}

pub fn write(path: &Path, rec: PidRecord) -> std::io::Result<()> {
    super::write_atomic(path, format!("{} {}\n", rec.pid, rec.start_time).as_bytes())
}

pub fn read(path: &Path) -> Option<PidRecord> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace();
    let pid = it.next()?.parse().ok()?;
    let start_time = it.next()?.parse().ok()?;
    Some(PidRecord { pid, start_time })
}

pub fn check(path: &Path) -> Liveness {
    if !path.exists() {
        return Liveness::None;
    }
    let Some(rec) = read(path) else {
        // Unreadable or garbled: nothing to trust, and nothing to signal.
        return Liveness::Stale(PidRecord {
            pid: 0,
            start_time: 0,
        });
    };
    if rec.pid > 1 && start_time(rec.pid) == Some(rec.start_time) {
        Liveness::Running(rec)
    } else {
        Liveness::Stale(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_dead_and_reused_pids() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("vmm.pid");
        assert_eq!(check(&p), Liveness::None);

        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let rec = record_for(child.id()).unwrap();
        write(&p, rec).unwrap();
        assert_eq!(check(&p), Liveness::Running(rec));

        // The same pid with another start time is some other process that got the number.
        write(
            &p,
            PidRecord {
                pid: rec.pid,
                start_time: rec.start_time + 1,
            },
        )
        .unwrap();
        assert!(matches!(check(&p), Liveness::Stale(_)));

        write(&p, rec).unwrap();
        child.kill().unwrap();
        // Not yet reaped: a zombie counts as dead.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(check(&p), Liveness::Stale(rec));
        child.wait().unwrap();
        assert_eq!(check(&p), Liveness::Stale(rec));

        std::fs::write(&p, "garbage").unwrap();
        assert!(matches!(check(&p), Liveness::Stale(_)));
    }
}
