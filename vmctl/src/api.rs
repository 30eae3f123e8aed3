//! A client for the VMM's API socket (docs/vmm.md, "API socket"): one JSON object per line each
//! way. Requests are `{"command":"status"}`, `{"command":"shutdown"}` (the ACPI power button;
//! the guest powers off, or the VMM stops it after its `--shutdown-timeout`),
//! `{"command":"power-off"}` (at once, disks still flushed) and `{"command":"console"}` (the
//! connection then carries the serial console's raw bytes both ways). Answers carry
//! `"ok": true` and the command's fields, or `"ok": false` and `"error"`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The VMM closes connections whose request or answer lines run longer; a longer answer line
/// from it is a protocol error, not something to buffer without end.
const MAX_ANSWER: usize = 1 << 20;

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("cannot reach the VMM at {path}: {err}")]
    Connect { path: PathBuf, err: std::io::Error },
    #[error("the VMM at {path} did not answer: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("the VMM at {path} answered something unexpected: {detail}")]
    Protocol { path: PathBuf, detail: String },
    #[error("the VMM refused {command}: {message}")]
    Refused { command: String, message: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Request {
    Status,
    Shutdown,
    PowerOff,
    Console,
}

impl Request {
    fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Shutdown => "shutdown",
            Request::PowerOff => "power-off",
            Request::Console => "console",
        }
    }
}

/// `status`'s `boot_marker`: whether the serial output has shown the `--boot-marker` text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct BootMarker {
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub seen: bool,
    #[serde(default)]
    pub at_ms: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    /// `running`, `shutting-down` (status, shutdown) or `stopping` (power-off).
    #[serde(default)]
    pub state: Option<String>,
    /// status: null without `--boot-marker`.
    #[serde(default)]
    pub boot_marker: Option<BootMarker>,
    /// status: how long the VM has run.
    #[serde(default)]
    pub uptime_ms: Option<u64>,
    /// Everything else the VMM says, kept for `status --json`.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

pub struct Client {
    path: PathBuf,
    stream: UnixStream,
}

impl Client {
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, ApiError> {
        let stream = UnixStream::connect(path).map_err(|err| ApiError::Connect {
            path: path.to_path_buf(),
            err,
        })?;
        let io = |err| ApiError::Io {
            path: path.to_path_buf(),
            err,
        };
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        Ok(Client {
            path: path.to_path_buf(),
            stream,
        })
    }

    /// Reads one answer line. Byte by byte: after `console`'s answer the same connection carries
    /// the guest's output, none of which may disappear into a read-ahead buffer.
    fn read_line(&mut self) -> Result<String, ApiError> {
        let mut line = Vec::with_capacity(256);
        let mut byte = [0u8; 1];
        loop {
            match self.stream.read(&mut byte) {
                Ok(0) => {
                    return Err(ApiError::Protocol {
                        path: self.path.clone(),
                        detail: format!(
                            "connection closed after {:?}",
                            String::from_utf8_lossy(&line)
                        ),
                    });
                }
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => line.push(byte[0]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => {
                    return Err(ApiError::Io {
                        path: self.path.clone(),
                        err,
                    });
                }
            }
            if line.len() > MAX_ANSWER {
                return Err(ApiError::Protocol {
                    path: self.path.clone(),
                    detail: format!("an answer line longer than {MAX_ANSWER} bytes"),
                });
            }
        }
        String::from_utf8(line).map_err(|e| ApiError::Protocol {
            path: self.path.clone(),
            detail: format!("an answer that is not UTF-8: {e}"),
        })
    }

    /// Sends one request and reads its one-line reply.
    pub fn call(&mut self, req: &Request) -> Result<Reply, ApiError> {
        let mut line = serde_json::to_string(req).map_err(|e| ApiError::Protocol {
            path: self.path.clone(),
            detail: e.to_string(),
        })?;
        line.push('\n');
        self.stream
            .write_all(line.as_bytes())
            .map_err(|err| ApiError::Io {
                path: self.path.clone(),
                err,
            })?;
        let answer = self.read_line()?;
        let reply: Reply = serde_json::from_str(answer.trim()).map_err(|e| ApiError::Protocol {
            path: self.path.clone(),
            detail: format!("{e}: {:?}", answer.trim()),
        })?;
        if !reply.ok {
            return Err(ApiError::Refused {
                command: req.name().to_string(),
                message: reply.error.unwrap_or_else(|| "no reason given".into()),
            });
        }
        Ok(reply)
    }

    /// Switches the connection to the serial console; the stream then carries raw bytes.
    pub fn into_console(mut self) -> Result<UnixStream, ApiError> {
        self.call(&Request::Console)?;
        let io = |err| ApiError::Io {
            path: self.path.clone(),
            err,
        };
        self.stream.set_read_timeout(None).map_err(io)?;
        self.stream.set_write_timeout(None).map_err(io)?;
        Ok(self.stream)
    }
}

/// One request on a fresh connection.
pub fn call(path: &Path, req: &Request, timeout: Duration) -> Result<Reply, ApiError> {
    Client::connect(path, timeout)?.call(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    #[test]
    fn one_line_each_way() {
        let t = tempfile::tempdir().unwrap();
        let sock = t.path().join("api.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut got = Vec::new();
            for answer in [
                "{\"ok\":true,\"state\":\"running\",\"uptime_ms\":5,\"boot_marker\":{\"text\":\"login:\",\"seen\":true,\"at_ms\":812},\"pid\":7}\n",
                "{\"ok\":false,\"error\":\"already shutting down\"}\n",
            ] {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                got.push(line);
                (&s).write_all(answer.as_bytes()).unwrap();
            }
            got
        });
        let mut c = Client::connect(&sock, Duration::from_secs(5)).unwrap();
        let st = c.call(&Request::Status).unwrap();
        assert_eq!(st.state.as_deref(), Some("running"));
        assert_eq!(st.uptime_ms, Some(5));
        assert_eq!(
            st.boot_marker,
            Some(BootMarker {
                text: "login:".into(),
                seen: true,
                at_ms: Some(812)
            })
        );
        assert_eq!(st.rest["pid"], 7);
        let err = c.call(&Request::Shutdown).unwrap_err().to_string();
        assert!(err.contains("already shutting down"), "{err}");
        let sent = server.join().unwrap();
        assert_eq!(sent[0], "{\"command\":\"status\"}\n");
        assert_eq!(sent[1], "{\"command\":\"shutdown\"}\n");
    }

    #[test]
    fn console_output_right_after_the_answer_is_kept() {
        let t = tempfile::tempdir().unwrap();
        let sock = t.path().join("api.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = [0u8; 22];
            s.read_exact(&mut req).unwrap();
            assert_eq!(&req, b"{\"command\":\"console\"}\n");
            // The answer and the guest's first output in one write, as a busy VMM may send them.
            s.write_all(b"{\"ok\":true}\nlogin: ").unwrap();
            let mut typed = [0u8; 5];
            s.read_exact(&mut typed).unwrap();
            typed
        });
        let mut console = Client::connect(&sock, Duration::from_secs(5))
            .unwrap()
            .into_console()
            .unwrap();
        let mut got = [0u8; 7];
        console.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"login: ");
        console.write_all(b"core\r").unwrap();
        assert_eq!(&server.join().unwrap(), b"core\r");
    }

    #[test]
    fn a_closed_connection_or_garbage_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let sock = t.path().join("api.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            for answer in [&b"not json\n"[..], b""] {
                let (mut s, _) = listener.accept().unwrap();
                let mut req = [0u8; 21];
                s.read_exact(&mut req).unwrap();
                s.write_all(answer).unwrap();
            }
        });
        let e = call(&sock, &Request::Status, Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, ApiError::Protocol { .. }), "{e}");
        let e = call(&sock, &Request::Status, Duration::from_secs(5)).unwrap_err();
        assert!(e.to_string().contains("connection closed"), "{e}");
        server.join().unwrap();
    }
}
