//! One vmctl at a time per cluster (and per image store): an exclusive `flock` on a lock file.
//! A second vmctl waits, saying for whom, up to a timeout, then fails with a clear message.
//! The kernel drops the lock when its holder dies, so a killed vmctl never leaves it stuck.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, flock};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum LockError {
    #[error(
        "{what} is busy: {holder} has held its lock for more than {waited}s; wait for it to finish, or raise --lock-timeout"
    )]
    Busy {
        what: String,
        holder: String,
        waited: u64,
    },
    #[error("cannot lock {path}: {err}")]
    Io { path: PathBuf, err: io::Error },
}

/// Held until dropped.
#[derive(Debug)]
pub struct Lock {
    file: File,
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Still locked here: whoever takes it next finds no stale holder named.
        let _ = self.file.set_len(0);
    }
}

/// Locks `path` (creating it), waiting at most `timeout`. `what` names the thing for messages
/// ("cluster demo"); `doing` says what this process does, for whoever waits on it.
pub fn acquire(path: &Path, what: &str, doing: &str, timeout: Duration) -> Result<Lock, LockError> {
    let io_err = |err| LockError::Io {
        path: path.to_path_buf(),
        err,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err)?;
    let start = Instant::now();
    let mut told = false;
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(rustix::io::Errno::WOULDBLOCK) | Err(rustix::io::Errno::INTR) => {
                let holder = holder(&mut file);
                if start.elapsed() >= timeout {
                    return Err(LockError::Busy {
                        what: what.to_string(),
                        holder,
                        waited: timeout.as_secs(),
                    });
                }
                if !told {
                    eprintln!("waiting for {holder} to finish with {what}...");
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(io_err(e.into())),
        }
    }
    // Who holds it, for the next one waiting. Failing to write this only costs a vaguer message.
    let _ = file
        .set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| writeln!(file, "{} {doing}", std::process::id()));
    Ok(Lock { file })
}

/// "vmctl (pid 123, up)" from the lock file; another program holding the lock wrote nothing.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|_| file.read_to_string(&mut text));
    match text.trim().split_once(' ') {
        Some((pid, doing))
            if pid
                .parse::<u32>()
                .is_ok_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists()) =>
        {
            format!("another vmctl (pid {pid}, {doing})")
        }
        _ => "another process".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_waits_then_fails_clearly() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("lock");
        let first = acquire(&p, "cluster t", "up", Duration::from_secs(1)).unwrap();
        let started = Instant::now();
        let err = acquire(&p, "cluster t", "down", Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        let msg = err.to_string();
        assert!(msg.contains("cluster t is busy"), "{msg}");
        assert!(
            msg.contains(&format!("pid {}, up", std::process::id())),
            "{msg}"
        );
        drop(first);
        acquire(&p, "cluster t", "down", Duration::from_millis(300)).unwrap();
    }
}
