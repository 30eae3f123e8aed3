//! Logging a disk's I/O failures once per kind instead of once per request: a guest that keeps
//! writing to a disk whose filesystem is full (ENOSPC) would otherwise flood the log with one
//! line per request. The first failure of a kind (operation and errno) is logged with the disk
//! path; repeats are counted, and the count is reported when the failures stop or change.

use std::path::Path;

/// One operation's state: the errno of its last logged failure and the repeats since.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Failing {
    errno: Option<i32>,
    repeats: u64,
}

#[derive(Debug, Default)]
pub struct ErrorLog {
    /// Keyed by operation name ("read", "write", ...); only a handful ever exist.
    failing: Vec<(&'static str, Failing)>,
}

/// What the caller should know about a failure (for tests and counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logged {
    /// A new kind of failure: a warning went out.
    First,
    /// Same operation and errno as the last one: counted only.
    Repeat,
}

fn hint(errno: Option<i32>) -> &'static str {
    match errno {
        Some(libc::ENOSPC) => "; the filesystem holding the image is full, free space on it",
        Some(libc::EDQUOT) => "; the disk quota is exhausted",
        Some(libc::EIO) => "; the host storage reports an I/O error",
        _ => "",
    }
}

impl ErrorLog {
    fn entry(&mut self, what: &'static str) -> &mut Failing {
        let i = match self.failing.iter().position(|(w, _)| *w == what) {
            Some(i) => i,
            None => {
                self.failing.push((what, Failing::default()));
                self.failing.len() - 1
            }
        };
        &mut self.failing[i].1
    }

    /// Records a failed `what` on the disk at `path`.
    pub fn failed(&mut self, path: &Path, what: &'static str, e: &std::io::Error) -> Logged {
        let errno = e.raw_os_error();
        let f = self.entry(what);
        if f.errno.is_some() && f.errno == errno {
            f.repeats += 1;
            return Logged::Repeat;
        }
        let earlier = std::mem::take(f);
        *f = Failing { errno, repeats: 0 };
        if earlier.repeats > 0 {
            tracing::warn!(
                "disk {}: {} more {what} failures like the last one",
                path.display(),
                earlier.repeats
            );
        }
        tracing::warn!(
            "disk {}: {what} failed: {e}{}; the guest gets an I/O error (repeats are counted, not logged)",
            path.display(),
            hint(errno)
        );
        Logged::First
    }

    /// Records a successful `what`: ends a run of failures, saying how long it was.
    pub fn succeeded(&mut self, path: &Path, what: &'static str) {
        let Some(i) = self.failing.iter().position(|(w, _)| *w == what) else {
            return;
        };
        let (_, f) = self.failing.swap_remove(i);
        tracing::warn!(
            "disk {}: {what} works again after {} failed requests",
            path.display(),
            f.repeats + 1
        );
    }

    /// Failures of `what` not logged individually since the last logged one.
    pub fn repeats(&self, what: &str) -> u64 {
        self.failing
            .iter()
            .find(|(w, _)| *w == what)
            .map_or(0, |(_, f)| f.repeats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_the_same_failure_is_logged_once_and_counted() {
        let mut log = ErrorLog::default();
        let p = Path::new("/vm/disk.img");
        let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(log.failed(p, "write", &enospc), Logged::First);
        for _ in 0..1000 {
            assert_eq!(log.failed(p, "write", &enospc), Logged::Repeat);
        }
        assert_eq!(log.repeats("write"), 1000);
        // Reads are tracked apart: their first failure is news, and a good read does not end
        // the run of failed writes.
        let eio = std::io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(log.failed(p, "read", &eio), Logged::First);
        log.succeeded(p, "read");
        assert_eq!(log.repeats("write"), 1000);
        // A different errno for the same operation is news too.
        assert_eq!(log.failed(p, "write", &eio), Logged::First);
        assert_eq!(log.repeats("write"), 0);
        // Once writes work again, the next failure is logged again.
        log.succeeded(p, "write");
        assert_eq!(log.failed(p, "write", &enospc), Logged::First);
    }

    #[test]
    fn errors_without_an_errno_are_each_logged() {
        // Nothing to compare them by; they are rare (guest memory vanished under us).
        let mut log = ErrorLog::default();
        let p = Path::new("d.img");
        let e = std::io::Error::other("odd");
        assert_eq!(log.failed(p, "read", &e), Logged::First);
        assert_eq!(log.failed(p, "read", &e), Logged::First);
    }

    #[test]
    fn enospc_gets_a_hint() {
        assert!(hint(Some(libc::ENOSPC)).contains("full"));
        assert_eq!(hint(None), "");
    }
}
