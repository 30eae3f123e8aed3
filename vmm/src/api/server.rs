//! The `vmm-api` threads: one accepts connections on the socket, one serves each connection
//! (a request/reply loop, or the serial console once a client asks for it). Thread kind
//! [`crate::seccomp::ThreadKind::Api`].

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::protocol::{self, MAX_LINE, Request};
use crate::console::output::SharedConnection;
use crate::devices::serial::SerialDevice;
use crate::seccomp::ThreadStart;
use crate::shutdown::{ShutdownController, State};
use crate::sync::lock;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("api socket {path}: {why}")]
    Socket { path: PathBuf, why: String },
}

/// What the API serves from.
pub struct ApiContext {
    pub shutdown: Arc<ShutdownController>,
    /// Device and VM details for `status`, computed when asked.
    pub status: Box<dyn Fn() -> serde_json::Map<String, Value> + Send + Sync>,
    /// The serial console: its output tap and the UART that takes input.
    pub console_tap: SharedConnection,
    pub serial: Arc<Mutex<SerialDevice>>,
    pub started: Instant,
    /// Console clients attached so far; changed only under the `console_tap` lock, so a
    /// leaving client can tell whether the tap is still its own.
    pub console_clients: AtomicU64,
}

/// The listening socket; removes its file when dropped (VMM exit).
pub struct ApiServer {
    path: PathBuf,
    /// The socket file's identity, so a file another VMM has since bound is left alone.
    inode: Option<(u64, u64)>,
}

fn inode(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if self.inode.is_some() && inode(&self.path) == self.inode {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn bind(path: &Path) -> Result<UnixListener, ApiError> {
    let err = |why: String| ApiError::Socket {
        path: path.to_owned(),
        why,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(err("exists and is not a socket".to_owned()));
        }
        // Left behind by an earlier VMM: refuse only if someone still listens on it.
        if UnixStream::connect(path).is_ok() {
            return Err(err("another process is listening on it".to_owned()));
        }
        let _ = std::fs::remove_file(path);
    }
    UnixListener::bind(path).map_err(|e| err(e.to_string()))
}

impl ApiServer {
    /// Binds the socket now (so errors are configuration errors) and serves it from a
    /// `vmm-api` thread once `start` is called.
    pub fn bind(path: &Path) -> Result<(Self, UnixListener), ApiError> {
        let listener = bind(path)?;
        Ok((
            ApiServer {
                path: path.to_owned(),
                inode: inode(path),
            },
            listener,
        ))
    }

    /// Starts the acceptor thread. It installs the API seccomp filter first; the threads it
    /// starts for clients inherit it.
    pub fn start(
        listener: UnixListener,
        ctx: ApiContext,
        start: ThreadStart,
    ) -> std::io::Result<()> {
        let ctx = Arc::new(ctx);
        std::thread::Builder::new()
            .name("vmm-api".to_owned())
            .spawn(move || {
                if !start.install() {
                    return;
                }
                for conn in listener.incoming() {
                    let stream = match conn {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!("api: accept: {e}");
                            continue;
                        }
                    };
                    let ctx = ctx.clone();
                    let spawned = std::thread::Builder::new()
                        .name("vmm-api".to_owned())
                        .spawn(move || serve(stream, &ctx));
                    if let Err(e) = spawned {
                        tracing::warn!("api: cannot serve a client: {e}");
                    }
                }
            })?;
        Ok(())
    }
}

fn status(ctx: &ApiContext) -> String {
    let (state, shutdown) = match ctx.shutdown.state() {
        State::Running => ("running", Value::Null),
        State::ShuttingDown { why, deadline } => (
            "shutting-down",
            json!({
                "reason": why,
                "stop_in_ms": deadline.saturating_duration_since(Instant::now()).as_millis() as u64,
            }),
        ),
    };
    let mut f = protocol::fields(json!({
        "state": state,
        "uptime_ms": ctx.started.elapsed().as_millis() as u64,
        "pid": std::process::id(),
        "shutdown": shutdown,
        "shutdown_timeout_s": ctx.shutdown.timeout_secs(),
    }));
    f.extend((ctx.status)());
    protocol::ok(f)
}

/// Serves one client until it hangs up (or forever, once it is the console).
fn serve(stream: UnixStream, ctx: &ApiContext) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let mut line = Vec::new();
        // Bounded: a client sending an endless line is cut off.
        let n = match (&mut reader)
            .take((MAX_LINE + 2) as u64)
            .read_until(b'\n', &mut line)
        {
            Ok(n) => n,
            Err(_) => return,
        };
        if n == 0 {
            return;
        }
        let complete = line.ends_with(b"\n");
        if !complete && line.len() > MAX_LINE {
            let _ = writer.write_all(protocol::error("request line too long").as_bytes());
            return;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let answer = match protocol::parse_request(text) {
            Err(e) => protocol::error(&e.to_string()),
            Ok(Request::Status) => status(ctx),
            Ok(Request::Shutdown) => match ctx.shutdown.request("API shutdown") {
                Ok(()) => protocol::ok(protocol::fields(json!({
                    "state": "shutting-down",
                    "timeout_s": ctx.shutdown.timeout_secs(),
                }))),
                Err(e) => protocol::error(&e.to_string()),
            },
            Ok(Request::PowerOff) => {
                let line = protocol::ok(protocol::fields(json!({"state": "stopping"})));
                let _ = writer.write_all(line.as_bytes());
                ctx.shutdown.power_off("API power-off");
                return;
            }
            Ok(Request::Console) => {
                // Bytes the client sent right after the request are console input.
                let early = reader.buffer().to_vec();
                console(writer, early, reader.into_inner(), ctx);
                return;
            }
        };
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Attaches the client to the serial console: guest output is copied to it (besides the
/// `--serial` destination), its bytes go to the guest. A newer client replaces it.
fn console(writer: UnixStream, early: Vec<u8>, mut reader: UnixStream, ctx: &ApiContext) {
    // Left blocking: the output side writes with MSG_DONTWAIT, this side reads blocking.
    let tap = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => {
            tracing::debug!("api console: {e}");
            return;
        }
    };
    let me = {
        let mut current = lock(&ctx.console_tap);
        // Answered under the lock: clients replace each other in the order they were told
        // "ok", and no guest output reaches one before its answer.
        if (&writer)
            .write_all(protocol::ok(Default::default()).as_bytes())
            .is_err()
        {
            return;
        }
        if let Some(old) = current.replace(tap) {
            // Ends the previous client's reader too.
            let _ = old.shutdown(std::net::Shutdown::Both);
        }
        ctx.console_clients.fetch_add(1, Ordering::Relaxed) + 1
    };
    tracing::info!("api: console attached");
    let mut pending = early;
    let mut buf = [0u8; 256];
    loop {
        while !pending.is_empty() {
            let n = lock(&ctx.serial).enqueue(&pending);
            pending.drain(..n);
            if !pending.is_empty() {
                // The guest has not drained its receive FIFO yet.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    // No fstat to compare sockets here: the API thread's seccomp filter does not allow it.
    let mut tap = lock(&ctx.console_tap);
    if ctx.console_clients.load(Ordering::Relaxed) == me {
        *tap = None;
    }
    drop(tap);
    drop(writer);
    tracing::info!("api: console detached");
}
