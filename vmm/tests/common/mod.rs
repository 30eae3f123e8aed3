//! Helpers shared by the vmm integration tests: running the binary with a deadline, reading
//! its serial output as it comes, and the inputs scripts/test.sh provides.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub mod netns;

/// Path given by an environment variable that scripts/test.sh sets. A missing input is a
/// failure, not a skip: these tests must run there.
pub fn input_path(var: &str) -> PathBuf {
    let v = std::env::var_os(var).unwrap_or_else(|| {
        panic!("{var} is not set; scripts/test.sh sets it (see docs/testing.md)")
    });
    let p = PathBuf::from(v);
    assert!(p.exists(), "{var}={} does not exist", p.display());
    p
}

pub fn test_guest() -> PathBuf {
    input_path("VMCTL_TEST_GUEST")
}

/// Runs a command that must succeed; its standard output.
pub fn run_ok_bytes(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The test guest's path, as a VMM argument.
pub fn guest() -> String {
    test_guest().to_str().unwrap().to_owned()
}

pub fn kernel_dir() -> PathBuf {
    let d = input_path("VMCTL_TEST_KERNEL_DIR");
    for f in ["bzImage", "vmlinux"] {
        assert!(d.join(f).exists(), "VMCTL_TEST_KERNEL_DIR has no {f}");
    }
    d
}

pub fn vmm_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vmm"))
}

/// Guests that need user space run only where the CPU has hardware virtualization.
pub fn host_has_vmx_or_svm() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| {
            c.lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
        })
        .unwrap_or(false)
}

/// A disk image where byte j of sector s is (s * 3 + j) & 0xff (what the test guest checks).
pub fn pattern_disk(path: &Path, size: usize) {
    let mut b = vec![0u8; size];
    for (i, byte) in b.iter_mut().enumerate() {
        let (s, j) = (i / 512, i % 512);
        *byte = (s * 3 + j) as u8;
    }
    std::fs::write(path, b).unwrap();
}

fn reader(mut src: impl Read + Send + 'static, sink: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match src.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    })
}

/// A running vmm whose stdout and stderr are collected as they arrive.
pub struct Running {
    pub child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
}

pub struct Finished {
    /// None when the test stopped the VMM (on purpose or at the deadline).
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// Everything, for assertion messages.
    pub fn dump(&self) -> String {
        format!(
            "status {:?} after {:.1}s{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.elapsed.as_secs_f64(),
            if self.timed_out { " (TIMED OUT)" } else { "" },
            self.stdout,
            self.stderr
        )
    }
}

impl Running {
    pub fn spawn(args: &[&str], stdin: Stdio) -> Running {
        let mut cmd = Command::new(vmm_bin());
        cmd.args(args);
        Running::spawn_command(cmd, stdin)
    }

    /// Runs `cmd`, which must end up exec-ing the VMM (a wrapper such as setpriv).
    pub fn spawn_command(mut cmd: Command, stdin: Stdio) -> Running {
        let mut child = cmd
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            reader(child.stdout.take().unwrap(), out.clone()),
            reader(child.stderr.take().unwrap(), err.clone()),
        ];
        Running {
            child,
            out,
            err,
            readers,
            started: Instant::now(),
        }
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    /// Waits until the guest's serial output (the VMM's stdout) contains `what`; panics with
    /// both outputs after `timeout`, or at once on `fail_on` when given.
    pub fn wait_for(&self, what: &str, timeout: Duration, fail_on: Option<&str>) {
        let start = Instant::now();
        while !self.stdout().contains(what) {
            assert!(
                start.elapsed() < timeout,
                "no '{what}' in time\n{}\n{}",
                self.stdout(),
                self.stderr()
            );
            if let Some(bad) = fail_on {
                assert!(
                    !self.stdout().contains(bad),
                    "the guest failed while we waited for '{what}'\n{}\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn write_stdin(&mut self, bytes: &[u8]) {
        self.child
            .stdin
            .as_mut()
            .expect("stdin is piped")
            .write_all(bytes)
            .unwrap();
    }

    /// Waits until the process exits, `stop(stdout, stderr)` holds (then kills it), or the
    /// deadline passes (then kills it and marks the run timed out).
    pub fn wait_until(mut self, timeout: Duration, stop: impl Fn(&str, &str) -> bool) -> Finished {
        let mut status = None;
        let mut timed_out = false;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                status = Some(s);
                break;
            }
            if stop(&self.stdout(), &self.stderr()) {
                break;
            }
            if self.started.elapsed() > timeout {
                timed_out = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Finished {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
            timed_out,
            elapsed: self.started.elapsed(),
        }
    }

    pub fn wait(self, timeout: Duration) -> Finished {
        self.wait_until(timeout, |_, _| false)
    }
}

/// Runs the vmm to completion (or the deadline) with `input` on stdin.
pub fn run_vmm(args: &[&str], input: &[u8], timeout: Duration) -> Finished {
    let mut r = Running::spawn(args, Stdio::piped());
    r.write_stdin(input);
    r.wait(timeout)
}

/// Waits for a child started without [`Running`] to exit; panics with `what` after `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < timeout, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
