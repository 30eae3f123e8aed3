//! Rootless user networking through passt (Debian's `passt` package): the VMM starts passt in
//! the foreground as its child and exchanges Ethernet frames with it over a unix stream socket
//! in QEMU's `-netdev stream` format: each frame preceded by its length, 32-bit big-endian.
//!
//! The socket is one end of a socket pair handed to passt as `--fd`, so there is no socket file
//! to name, race for or clean up. passt is started with `--one-off`, so it exits as soon as our
//! end closes, even if the VMM is killed with SIGKILL; on a normal exit [`PasstGuard`] kills it.
//! Its pid file only signals that it is ready (written after its ports are bound) and is
//! removed right then. passt offers DHCP, DNS forwarding, NDP and port forwards
//! (`-t`/`-u`, from `hostfwd=`); the guest gets the host's address and gateway.

use std::io::{ErrorKind, IoSlice, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Backend, BackendError, SendStatus};
use crate::config::net::HostFwd;
use crate::virtio::net::header::{MAX_FRAME_LEN, VNET_HDR_LEN};

/// passt's own default MTU (65520: the largest 802.3 frame minus its header, in 32-bit words),
/// given to it explicitly so that its DHCP answer and our MTU feature agree.
pub const PASST_MTU: u16 = 65520;
/// How long passt may take to bind its ports and write its pid file.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// passt drops root privileges to this user; its pid file directory must be writable by it.
const NOBODY: u32 = 65534;
const LEN_PREFIX: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PasstError {
    #[error("--net user needs passt, which is not installed: install passt: apt install passt")]
    NotInstalled,
    #[error("cannot start passt: {0}")]
    Spawn(std::io::Error),
    #[error("passt failed to start: {0}")]
    Failed(String),
    #[error("passt did not start within {} s", START_TIMEOUT.as_secs())]
    Timeout,
    #[error("cannot make passt's runtime directory {path}: {error}")]
    RuntimeDir {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl PasstError {
    pub fn is_user_error(&self) -> bool {
        // A port already in use, no usable host interface: the user's to fix.
        matches!(self, PasstError::NotInstalled | PasstError::Failed(_))
    }
}

/// The first `passt` on PATH.
pub fn find_passt() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("passt"))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// passt's arguments, apart from the socket descriptor and pid file.
pub fn passt_args(hostfwd: &[HostFwd]) -> Vec<String> {
    let mut args: Vec<String> = ["--foreground", "--quiet", "--one-off"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    args.push("--mtu".to_owned());
    args.push(PASST_MTU.to_string());
    for h in hostfwd {
        args.extend(h.passt_args());
    }
    args
}

/// Lines passt writes when there is no syslog socket; noise, not news.
fn is_noise(line: &str) -> bool {
    let line = line.trim();
    line.is_empty() || (line.starts_with("Failed to send ") && line.ends_with(" bytes to syslog"))
}

/// The last line of passt's output that says something.
fn last_message(output: &str) -> String {
    output
        .lines()
        .rfind(|l| !is_noise(l))
        .unwrap_or("it exited without a message")
        .trim()
        .to_owned()
}

/// Kills passt when dropped (and removes its pid file directory if start-up failed half-way).
pub struct PasstGuard {
    child: Child,
    /// None once removed: the main thread's seccomp filter lets it open no directory at exit.
    dir: Option<PathBuf>,
    /// Shared with the backend, so the device does not report passt's exit as a failure.
    stopping: Arc<AtomicBool>,
}

impl PasstGuard {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PasstGuard {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// passt's standard error, read by the device event loop and logged.
pub struct PasstLog {
    pub stderr: ChildStderr,
    partial: Vec<u8>,
}

impl PasstLog {
    /// Reads what is there and logs whole lines. Returns false at end of file.
    pub fn drain(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.stderr.read(&mut buf) {
                Ok(0) => {
                    self.emit_partial();
                    return false;
                }
                Ok(n) => {
                    self.partial.extend_from_slice(&buf[..n]);
                    while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = self.partial.drain(..=end).collect();
                        log_line(&String::from_utf8_lossy(&line));
                    }
                    // A runaway line without a newline is logged in pieces.
                    if self.partial.len() > 4096 {
                        self.emit_partial();
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }

    fn emit_partial(&mut self) {
        if !self.partial.is_empty() {
            let line = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            log_line(&line);
        }
    }
}

impl AsRawFd for PasstLog {
    fn as_raw_fd(&self) -> RawFd {
        self.stderr.as_raw_fd()
    }
}

fn log_line(line: &str) {
    if !is_noise(line) {
        tracing::info!("passt: {}", line.trim_end());
    }
}

fn set_nonblocking(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, with integer arguments.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A private directory for passt's pid file, writable by the user passt will run as.
fn runtime_dir(index: usize) -> Result<PathBuf, PasstError> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let path = base.join(format!("vmm-{}-passt{index}", std::process::id()));
    let err = |error| PasstError::RuntimeDir {
        path: path.clone(),
        error,
    };
    // Left over from an earlier process with our pid: nothing of it can still be in use.
    let _ = std::fs::remove_dir_all(&path);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&path)
        .map_err(err)?;
    if running_as_root() {
        std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).map_err(err)?;
    }
    Ok(path)
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Starts passt for NIC number `index` and waits until it is ready (its pid file appears) or
/// has failed (it exits; its last message becomes the error).
pub fn start(
    hostfwd: &[HostFwd],
    index: usize,
) -> Result<(Passt, PasstGuard, PasstLog), PasstError> {
    let bin = find_passt().ok_or(PasstError::NotInstalled)?;
    let dir = runtime_dir(index)?;
    let cleanup_dir = |e| {
        let _ = std::fs::remove_dir_all(&dir);
        e
    };
    let (ours, theirs) = UnixStream::pair().map_err(|e| cleanup_dir(PasstError::Spawn(e)))?;
    let their_fd = theirs.as_raw_fd();
    let pidfile = dir.join("passt.pid");
    let mut cmd = Command::new(&bin);
    cmd.args(passt_args(hostfwd))
        .arg("--fd")
        .arg(their_fd.to_string())
        .arg("--pid")
        .arg(&pidfile)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if running_as_root() {
        // passt refuses to keep root and switches to nobody; say so explicitly, so the pid file
        // directory's owner is the right one.
        cmd.arg("--runas").arg(format!("{NOBODY}:{NOBODY}"));
    }
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls (fcntl, prctl) on integers.
    unsafe {
        cmd.pre_exec(move || {
            // passt's end of the pair must survive exec (std opens everything close-on-exec).
            if libc::fcntl(their_fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Dies with us when it keeps our credentials (it loses this when it drops root,
            // which is what --one-off covers).
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| cleanup_dir(PasstError::Spawn(e)))?;
    drop(theirs);
    let stopping = Arc::new(AtomicBool::new(false));
    let mut guard = PasstGuard {
        child,
        dir: Some(dir),
        stopping: stopping.clone(),
    };
    let Some(stderr) = guard.child.stderr.take() else {
        return Err(PasstError::Spawn(std::io::Error::other("no stderr pipe")));
    };
    let mut log = PasstLog {
        stderr,
        partial: Vec::new(),
    };
    wait_ready(&mut guard, &mut log, &pidfile)?;
    // The pid file was only the readiness signal, and we know the pid: remove it now, so
    // nothing is left behind even if the VMM is killed with SIGKILL.
    if let Some(dir) = guard.dir.take() {
        let _ = std::fs::remove_dir_all(dir);
    }
    set_nonblocking(log.stderr.as_raw_fd()).map_err(PasstError::Spawn)?;
    log.drain();
    ours.set_nonblocking(true).map_err(PasstError::Spawn)?;
    tracing::info!(
        "passt started (pid {}{})",
        guard.pid(),
        hostfwd.iter().map(|h| format!(", {h}")).collect::<String>()
    );
    let mut backend = Passt::new(ours);
    backend.stopping = stopping;
    Ok((backend, guard, log))
}

fn wait_ready(
    guard: &mut PasstGuard,
    log: &mut PasstLog,
    pidfile: &Path,
) -> Result<(), PasstError> {
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = guard.child.try_wait() {
            let mut out = String::new();
            let _ = log.stderr.read_to_string(&mut out);
            return Err(PasstError::Failed(format!(
                "{} ({status})",
                last_message(&out)
            )));
        }
        if std::fs::metadata(pidfile).is_ok_and(|m| m.len() > 0) {
            return Ok(());
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(PasstError::Timeout);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Splits a byte stream into length-prefixed frames.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("passt announced a frame of {0} bytes; at most {MAX_FRAME_LEN} are possible")]
    TooLong(usize),
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader {
            // Room for a whole maximal frame plus the next few small ones.
            buf: vec![0u8; 2 * (LEN_PREFIX + MAX_FRAME_LEN)],
            start: 0,
            end: 0,
        }
    }
}

impl FrameReader {
    /// The next complete frame, copied into `out` after a zeroed virtio-net header.
    pub fn next_frame(&mut self, out: &mut [u8]) -> Result<Option<usize>, FrameError> {
        let have = &self.buf[self.start..self.end];
        let Some(prefix) = have.first_chunk::<LEN_PREFIX>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLong(len));
        }
        if have.len() < LEN_PREFIX + len {
            return Ok(None);
        }
        let total = VNET_HDR_LEN + len;
        if out.len() < total {
            return Err(FrameError::TooLong(len));
        }
        out[..VNET_HDR_LEN].fill(0);
        out[VNET_HDR_LEN..total].copy_from_slice(&have[LEN_PREFIX..LEN_PREFIX + len]);
        self.start += LEN_PREFIX + len;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(Some(total))
    }

    /// Where the next read goes; compacts first so a whole frame always fits.
    pub fn space(&mut self) -> &mut [u8] {
        if self.start > 0 && self.buf.len() - self.end < LEN_PREFIX + MAX_FRAME_LEN {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }
}

/// Length-prefixes a frame into `out` (cleared first).
pub fn encode_frame(frame: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    out.extend_from_slice(frame);
}

/// Our end of the connection to passt.
pub struct Passt {
    sock: UnixStream,
    reader: FrameReader,
    /// Bytes of a frame the socket did not take yet (a stream must never lose part of one).
    unsent: Vec<u8>,
    unsent_from: usize,
    stopping: Arc<AtomicBool>,
}

impl Passt {
    pub fn new(sock: UnixStream) -> Self {
        Passt {
            sock,
            reader: FrameReader::default(),
            unsent: Vec::new(),
            unsent_from: 0,
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }

    fn closed(what: &str, e: std::io::Error) -> BackendError {
        BackendError::Closed(format!("passt connection {what}: {e}"))
    }
}

impl Backend for Passt {
    fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, BackendError> {
        loop {
            match self.reader.next_frame(buf) {
                Ok(Some(n)) => return Ok(Some(n)),
                Ok(None) => {}
                Err(e) => return Err(BackendError::Closed(e.to_string())),
            }
            match self.sock.read(self.reader.space()) {
                Ok(0) => return Err(BackendError::Closed("passt closed the connection".into())),
                Ok(n) => self.reader.filled(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Self::closed("read", e)),
            }
        }
    }

    fn send(&mut self, buf: &[u8]) -> Result<SendStatus, BackendError> {
        if self.unsent_from < self.unsent.len() {
            return Ok(SendStatus::Blocked);
        }
        let frame = buf.get(VNET_HDR_LEN..).unwrap_or_default();
        let prefix = (frame.len() as u32).to_be_bytes();
        let mut done = 0usize;
        let total = LEN_PREFIX + frame.len();
        while done < total {
            let slices = if done < LEN_PREFIX {
                [IoSlice::new(&prefix[done..]), IoSlice::new(frame)]
            } else {
                [IoSlice::new(&frame[done - LEN_PREFIX..]), IoSlice::new(&[])]
            };
            match self.sock.write_vectored(&slices) {
                Ok(0) => return Err(BackendError::Closed("passt stopped reading".into())),
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let mut whole = Vec::with_capacity(total);
                    encode_frame(frame, &mut whole);
                    self.unsent = whole;
                    self.unsent_from = done;
                    return Ok(SendStatus::Blocked);
                }
                Err(e) => return Err(Self::closed("write", e)),
            }
        }
        Ok(SendStatus::Sent)
    }

    fn flush(&mut self) -> Result<SendStatus, BackendError> {
        while self.unsent_from < self.unsent.len() {
            match self.sock.write(&self.unsent[self.unsent_from..]) {
                Ok(0) => return Err(BackendError::Closed("passt stopped reading".into())),
                Ok(n) => self.unsent_from += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(SendStatus::Blocked),
                Err(e) => return Err(Self::closed("write", e)),
            }
        }
        self.unsent.clear();
        self.unsent_from = 0;
        Ok(SendStatus::Sent)
    }

    fn offload_features(&self) -> u64 {
        // passt reads and writes plain, fully checksummed Ethernet frames.
        0
    }

    fn set_guest_offloads(&mut self, _acked_features: u64) -> Result<(), String> {
        Ok(())
    }

    fn mtu(&self) -> u16 {
        PASST_MTU
    }

    fn describe(&self) -> String {
        "passt".to_owned()
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_at_any_byte_boundary() {
        let frames: Vec<Vec<u8>> = [60usize, 1514, 9000, 14]
            .iter()
            .map(|n| (0..*n).map(|i| (i % 251) as u8).collect())
            .collect();
        let mut stream = Vec::new();
        for f in &frames {
            let mut enc = Vec::new();
            encode_frame(f, &mut enc);
            stream.extend(enc);
        }
        for chunk in [1usize, 3, 7, 1000, stream.len()] {
            let mut r = FrameReader::default();
            let mut got = Vec::new();
            let mut out = vec![0xffu8; VNET_HDR_LEN + MAX_FRAME_LEN];
            for piece in stream.chunks(chunk) {
                let space = r.space();
                space[..piece.len()].copy_from_slice(piece);
                r.filled(piece.len());
                while let Some(n) = r.next_frame(&mut out).unwrap() {
                    assert_eq!(&out[..VNET_HDR_LEN], &[0; VNET_HDR_LEN]);
                    got.push(out[VNET_HDR_LEN..n].to_vec());
                }
            }
            assert_eq!(got, frames, "chunk size {chunk}");
        }
    }

    #[test]
    fn an_impossible_length_is_an_error() {
        let mut r = FrameReader::default();
        let bad = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes();
        r.space()[..4].copy_from_slice(&bad);
        r.filled(4);
        let mut out = vec![0u8; VNET_HDR_LEN + MAX_FRAME_LEN];
        assert_eq!(
            r.next_frame(&mut out),
            Err(FrameError::TooLong(MAX_FRAME_LEN + 1))
        );
    }

    #[test]
    fn the_socket_carries_prefixed_frames_both_ways() {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut p = Passt::new(a);
        let mut out = vec![0u8; VNET_HDR_LEN + MAX_FRAME_LEN];
        assert!(p.recv(&mut out).unwrap().is_none(), "nothing yet");
        // Guest to passt: the virtio-net header is stripped.
        let mut frame = vec![0u8; VNET_HDR_LEN];
        frame.extend_from_slice(b"0123456789abcdef");
        assert_eq!(p.send(&frame).unwrap(), SendStatus::Sent);
        let mut got = [0u8; 20];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got[..4], &16u32.to_be_bytes());
        assert_eq!(&got[4..], b"0123456789abcdef");
        // passt to guest.
        b.write_all(&[0, 0, 0, 3, b'x', b'y', b'z']).unwrap();
        assert_eq!(p.recv(&mut out).unwrap(), Some(VNET_HDR_LEN + 3));
        assert_eq!(&out[VNET_HDR_LEN..VNET_HDR_LEN + 3], b"xyz");
        drop(b);
        assert!(matches!(p.recv(&mut out), Err(BackendError::Closed(_))));
    }

    #[test]
    fn a_full_socket_keeps_the_rest_of_the_frame() {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut p = Passt::new(a);
        let mut frame = vec![0u8; VNET_HDR_LEN];
        frame.extend((0..60000).map(|i| (i % 253) as u8));
        let mut sent = 0;
        while p.send(&frame).unwrap() == SendStatus::Sent {
            sent += 1;
            assert!(sent < 10_000, "the socket never filled");
        }
        assert_eq!(
            p.send(&frame).unwrap(),
            SendStatus::Blocked,
            "one frame at a time"
        );
        // The peer drains everything; the stream must be whole frames only.
        let reader = std::thread::spawn(move || {
            let mut frames = 0;
            loop {
                let mut len = [0u8; 4];
                if b.read_exact(&mut len).is_err() {
                    return frames;
                }
                let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
                b.read_exact(&mut body).unwrap();
                assert_eq!(body.len(), 60000);
                assert!(body.iter().enumerate().all(|(i, x)| *x == (i % 253) as u8));
                frames += 1;
            }
        });
        while p.flush().unwrap() == SendStatus::Blocked {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(p);
        assert_eq!(reader.join().unwrap(), sent + 1);
    }

    #[test]
    fn hostfwd_becomes_passt_options() {
        let fwd: Vec<HostFwd> = ["tcp:127.0.0.1:2222-:22", "udp::5353-:53"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let args = passt_args(&fwd);
        assert_eq!(
            args,
            [
                "--foreground",
                "--quiet",
                "--one-off",
                "--mtu",
                "65520",
                "-t",
                "127.0.0.1/2222:22",
                "-u",
                "5353:53"
            ]
        );
    }

    #[test]
    fn passt_messages_without_the_syslog_noise() {
        let out = "Failed to send 47 bytes to syslog\nDon't run as root. Changing to nobody...\nFailed to send 66 bytes to syslog\nFailed to bind any port for '-t 127.0.0.1/2298:22', exiting\n";
        assert_eq!(
            last_message(out),
            "Failed to bind any port for '-t 127.0.0.1/2298:22', exiting"
        );
        assert_eq!(last_message(""), "it exited without a message");
    }
}
