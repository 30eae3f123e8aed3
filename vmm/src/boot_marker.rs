//! Boot-time markers: time from VMM start to the guest's first debug-port write and to a
//! chosen serial line. Logged at info level under the `boot_marker` target (shown by default
//! when `--boot-marker` is given, and with `-v`).

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();
/// When the `--boot-marker` text was first seen, in ms since start (for the API's status).
static SERIAL_MARKER_AT: OnceLock<f64> = OnceLock::new();

/// When the serial boot marker was seen (ms since start), if it was.
pub fn serial_marker_seen_ms() -> Option<f64> {
    SERIAL_MARKER_AT.get().copied()
}

/// Records the VMM start. Call first thing in `main`; later calls are ignored.
pub fn mark_start() {
    START.get_or_init(Instant::now);
}

/// Milliseconds since [`mark_start`] (or since the first call here).
pub fn elapsed_ms() -> f64 {
    START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
}

/// Finds a marker text in a byte stream, across writes of any size.
pub struct LineMatcher {
    marker: Vec<u8>,
    line: Vec<u8>,
    matched: bool,
}

/// Longest line prefix remembered; a marker longer than this never matches.
const MAX_LINE: usize = 4096;

impl LineMatcher {
    pub fn new(marker: &str) -> Self {
        LineMatcher {
            marker: marker.as_bytes().to_vec(),
            line: Vec::new(),
            matched: false,
        }
    }

    /// Feeds output bytes; returns true exactly once, when the marker first completes.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        if self.matched || self.marker.is_empty() {
            return false;
        }
        for &b in bytes {
            if b == b'\n' {
                self.line.clear();
                continue;
            }
            if self.line.len() < MAX_LINE {
                self.line.push(b);
            }
            if self.line.ends_with(&self.marker) {
                self.matched = true;
                return true;
            }
        }
        false
    }
}

pub fn log_debug_port(port: u16, value: u8) {
    tracing::info!(
        target: "boot_marker",
        "first guest write to debug port {port:#x} (value {value:#04x}) at {:.3} ms",
        elapsed_ms()
    );
}

pub fn log_serial_marker(marker: &str) {
    let at = elapsed_ms();
    let _ = SERIAL_MARKER_AT.set(at);
    tracing::info!(
        target: "boot_marker",
        "serial output matched '{marker}' at {at:.3} ms"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_across_writes_once() {
        let mut m = LineMatcher::new("Run /init");
        assert!(!m.feed(b"[ 1.0] Ru"));
        assert!(m.feed(b"n /init as init process\r\n"));
        assert!(!m.feed(b"Run /init\n"));
    }

    #[test]
    fn does_not_match_across_lines() {
        let mut m = LineMatcher::new("ab");
        assert!(!m.feed(b"a\nb\n"));
        assert!(m.feed(b"xab"));
    }

    #[test]
    fn elapsed_grows() {
        mark_start();
        let a = elapsed_ms();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(elapsed_ms() > a);
    }
}
