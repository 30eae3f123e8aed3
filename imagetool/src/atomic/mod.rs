//! Outputs that appear whole or not at all: a temporary file beside the destination, fsync'd and
//! renamed into place, and removed again on error, on drop, and on SIGINT/SIGTERM/SIGHUP.

mod cleanup;
mod file;
mod tree;

pub use cleanup::install_signal_cleanup;
pub use file::{AtomicFile, Overwrite};
pub use tree::{AtomicTree, fsync_dir};

use std::path::Path;

/// The mode new files get: 0666 minus the process umask, as `open(2)` would give them.
/// Read from /proc because umask(2) can only be read by changing it, which races with threads.
pub fn default_file_mode() -> u32 {
    let umask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022);
    0o666 & !umask
}

/// The directory a path lives in, `.` for a bare file name.
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}
