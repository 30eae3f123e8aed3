//! Network namespaces the tests create and delete, with TAPs, bridges and a VMM inside.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{Finished, Running};

static NS_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace that exists while this value does.
pub struct NetNs {
    pub name: String,
}

pub fn run_ok(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&super::run_ok_bytes(cmd)).into_owned()
}

impl NetNs {
    pub fn new(tag: &str) -> NetNs {
        let name = format!(
            "vmmt-{tag}-{}-{}",
            std::process::id(),
            NS_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn ip(&self, args: &[&str]) -> String {
        run_ok(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `f` on a thread that has joined the namespace: sockets it opens and processes it
    /// starts live there.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                // SAFETY: setns on a descriptor we own; it changes only this thread.
                let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// A TAP pre-created for the VMM, up, with the given MTU and no IPv6 chatter.
    pub fn tap(&self, name: &str, mtu: u32, bridge: Option<&str>) {
        self.tap_for(name, mtu, bridge, None);
    }

    /// The same, usable by the user `owner` (a uid) without privileges.
    pub fn tap_for(&self, name: &str, mtu: u32, bridge: Option<&str>, owner: Option<u32>) {
        let owner = owner.map(|uid| uid.to_string());
        let mut args = vec!["tuntap", "add", "dev", name, "mode", "tap"];
        if let Some(uid) = &owner {
            args.extend(["user", uid]);
        }
        args.push("vnet_hdr");
        self.ip(&args);
        self.ip(&["link", "set", name, "mtu", &mtu.to_string()]);
        if let Some(br) = bridge {
            self.ip(&["link", "set", name, "master", br]);
        }
        self.sysctl(&format!("net.ipv6.conf.{name}.disable_ipv6=1"));
        self.ip(&["link", "set", name, "up"]);
    }

    pub fn bridge(&self, name: &str, mtu: u32, addr: &str) {
        self.ip(&["link", "add", name, "type", "bridge"]);
        self.ip(&["link", "set", name, "mtu", &mtu.to_string()]);
        self.sysctl(&format!("net.ipv6.conf.{name}.disable_ipv6=1"));
        self.ip(&["addr", "add", addr, "dev", name]);
        self.ip(&["link", "set", name, "up"]);
    }

    pub fn sysctl(&self, setting: &str) {
        run_ok(self.command("sysctl").args(["-q", "-w", setting]));
    }

    /// Starts the VMM inside the namespace.
    pub fn vmm(&self, args: &[&str]) -> Vm {
        Vm(Some(self.enter(|| Running::spawn(args, Stdio::null()))))
    }
}

/// A running VMM that is killed if the test fails before it is waited for: the namespace it
/// runs in is about to be deleted.
pub struct Vm(pub Option<Running>);

impl std::ops::Deref for Vm {
    type Target = Running;
    fn deref(&self) -> &Running {
        self.0.as_ref().expect("VMM already waited for")
    }
}

impl Vm {
    pub fn wait(mut self, timeout: Duration) -> Finished {
        self.0.take().expect("VMM already waited for").wait(timeout)
    }

    /// Stops the VMM now (SIGKILL) and collects its output.
    pub fn kill(mut self) -> Finished {
        self.0
            .take()
            .expect("VMM already waited for")
            .wait_until(Duration::ZERO, |_, _| true)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            let _ = r.wait_until(Duration::ZERO, |_, _| true);
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace removes every interface in it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
