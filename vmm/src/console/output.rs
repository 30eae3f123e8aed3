//! Where the UART's output goes: stdout, a file, a unix socket client, or nowhere. Also watches
//! the stream for the `--boot-marker` text.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::boot_marker::{self, LineMatcher};
use crate::sync::lock;

/// The socket client currently attached to the console (shared with the input side).
pub type SharedConnection = Arc<Mutex<Option<UnixStream>>>;

enum Sink {
    Stdout,
    File(File),
    Socket(SharedConnection),
    Discard,
}

pub struct SerialOutput {
    sink: Sink,
    /// A client attached through the API socket's `console` command, served besides the sink.
    tap: Option<SharedConnection>,
    marker: Option<(LineMatcher, String)>,
    failed: bool,
}

impl SerialOutput {
    fn with(sink: Sink) -> Self {
        SerialOutput {
            sink,
            tap: None,
            marker: None,
            failed: false,
        }
    }

    pub fn stdout() -> Self {
        Self::with(Sink::Stdout)
    }

    /// Appends to `path`, creating it.
    pub fn file(path: &Path) -> std::io::Result<Self> {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self::with(Sink::File(f)))
    }

    pub fn socket(conn: SharedConnection) -> Self {
        Self::with(Sink::Socket(conn))
    }

    pub fn discard() -> Self {
        Self::with(Sink::Discard)
    }

    pub fn with_marker(mut self, marker: Option<&str>) -> Self {
        self.marker = marker.map(|m| (LineMatcher::new(m), m.to_owned()));
        self
    }

    /// Also copies output to whoever is attached to `tap` (the API console).
    pub fn with_tap(mut self, tap: SharedConnection) -> Self {
        self.tap = Some(tap);
        self
    }

    fn report(&mut self, what: &str, e: &std::io::Error) {
        if !self.failed {
            self.failed = true;
            tracing::warn!("serial output to {what} failed, output is dropped from now on: {e}");
        }
    }
}

/// Writes to a socket client without blocking; a client that went away is detached.
fn write_to_client(conn: &SharedConnection, buf: &[u8]) {
    let mut guard = lock(conn);
    if let Some(stream) = guard.as_mut() {
        // Non-blocking per call: the API console's socket stays blocking for its reader.
        let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
        match rustix::net::send(&*stream, buf, flags) {
            // A slow client loses output rather than stalling the vCPU.
            Ok(_) => {}
            Err(e) if e == rustix::io::Errno::AGAIN => {}
            Err(_) => *guard = None,
        }
    }
}

impl Write for SerialOutput {
    /// Never fails: a UART cannot tell the guest its cable is unplugged, so output that
    /// cannot be delivered is dropped.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some((m, text)) = self.marker.as_mut()
            && m.feed(buf)
        {
            boot_marker::log_serial_marker(text);
        }
        if let Some(tap) = &self.tap {
            write_to_client(tap, buf);
        }
        if self.failed {
            return Ok(buf.len());
        }
        let result = match &mut self.sink {
            Sink::Stdout => std::io::stdout().write_all(buf),
            Sink::File(f) => f.write_all(buf),
            Sink::Socket(conn) => {
                write_to_client(conn, buf);
                Ok(())
            }
            Sink::Discard => Ok(()),
        };
        if let Err(e) = result {
            let what = match self.sink {
                Sink::Stdout => "stdout",
                _ => "the serial file",
            };
            self.report(what, &e);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Sink::Stdout = self.sink {
            let _ = std::io::stdout().flush();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sink_appends() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("serial.log");
        std::fs::write(&p, b"old\n").unwrap();
        let mut o = SerialOutput::file(&p).unwrap().with_marker(Some("login:"));
        o.write_all(b"hello\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"old\nhello\n");
    }

    #[test]
    fn socket_sink_survives_a_vanished_client() {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let conn: SharedConnection = Arc::new(Mutex::new(Some(a)));
        let mut o = SerialOutput::socket(conn.clone());
        o.write_all(b"x").unwrap();
        drop(b);
        o.write_all(b"y").unwrap();
        o.write_all(b"z").unwrap();
        assert!(conn.lock().unwrap().is_none(), "dead client detached");
    }
}
