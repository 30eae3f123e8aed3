//! A client for the VMM's API socket: one JSON object per line each way (issue 5; the exact
//! protocol is written down in docs/vmm.md once the VMM has it). Requests are
//! `{"command":"status"}`, `{"command":"shutdown"}` (ACPI power button, the guest powers off),
//! `{"command":"power-off"}` (immediate) and `{"command":"console"}` (the connection then carries
//! the serial console's raw bytes both ways). Answers carry `"ok": true|false` and, on failure,
//! `"error"`. Adjust [`Request`] and [`Reply`] here if the VMM settles on other names.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

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

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    /// `running`, `shutting-down`, ... as the VMM reports it.
    #[serde(default)]
    pub state: Option<String>,
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

    /// Sends one request and reads its one-line reply.
    pub fn call(&mut self, req: &Request) -> Result<Reply, ApiError> {
        let io = |err| ApiError::Io {
            path: self.path.clone(),
            err,
        };
        let mut line = serde_json::to_string(req).map_err(|e| io(std::io::Error::other(e)))?;
        line.push('\n');
        self.stream.write_all(line.as_bytes()).map_err(io)?;
        let mut answer = String::new();
        BufReader::new(&self.stream)
            .read_line(&mut answer)
            .map_err(io)?;
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

#[cfg(test)]
mod tests {
    use super::*;
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
                "{\"ok\":true,\"state\":\"running\",\"uptime_ms\":5}\n",
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
        assert_eq!(st.rest["uptime_ms"], 5);
        let err = c.call(&Request::Shutdown).unwrap_err().to_string();
        assert!(err.contains("already shutting down"), "{err}");
        let sent = server.join().unwrap();
        assert_eq!(sent[0], "{\"command\":\"status\"}\n");
        assert_eq!(sent[1], "{\"command\":\"shutdown\"}\n");
    }
}
