//! The POST/debug port (0x80). The guest's first write is the "first guest instruction" boot
//! marker; later writes are logged at debug level with their time, so a test guest or firmware
//! can timestamp its own stages.

use crate::boot_marker;
use crate::bus::BusDevice;

#[derive(Default)]
pub struct DebugPort {
    seen: bool,
}

impl DebugPort {
    pub fn new() -> Self {
        Self::default()
    }
}

impl BusDevice for DebugPort {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, base: u64, _offset: u64, data: &[u8]) {
        let value = data.first().copied().unwrap_or(0);
        if !self.seen {
            self.seen = true;
            boot_marker::log_debug_port(base as u16, value);
        } else {
            tracing::debug!(
                target: "boot_marker",
                "debug port {base:#x} value {value:#04x} at {:.3} ms",
                boot_marker::elapsed_ms()
            );
        }
    }
}
