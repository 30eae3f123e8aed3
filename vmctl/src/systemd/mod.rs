//! systemd integration: the unit templates and knowing whether systemd runs this machine.

pub mod units;

use std::path::Path;

/// Whether systemd is the init system (sd_booted(3): /run/systemd/system exists).
pub fn booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// What PID 1 is, for the message when it is not systemd.
pub fn init_name() -> String {
    std::fs::read_to_string("/proc/1/comm")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
