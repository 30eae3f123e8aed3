//! Network namespaces the tests make and delete (never the host's own network). Needs root.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A network namespace, deleted (with whatever still runs in it) when dropped.
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "vmctl-t{}-{tag}{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("ip (iproute2) is needed");
        assert!(
            out.status.success(),
            "ip netns add (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// A namespace whose default route leaves through a veth pair going nowhere: enough for
    /// passt, which copies the address (10.200.0.5) and gateway (10.200.0.1) of the
    /// default-route interface into its DHCP answer.
    pub fn for_passt(tag: &str) -> Self {
        let ns = Netns::new(tag);
        ns.ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
        ns.ip(&["addr", "add", "10.200.0.5/24", "dev", "up0"]);
        ns.ip(&["link", "set", "up1", "up"]);
        ns.ip(&["link", "set", "up0", "up"]);
        ns.ip(&["route", "add", "default", "via", "10.200.0.1"]);
        ns
    }

    pub fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.0)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip -n {} {args:?}: {}",
            self.0,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `ip -j -d link show dev DEV`, or None when it does not exist.
    pub fn link(&self, dev: &str) -> Option<serde_json::Value> {
        let out = Command::new("ip")
            .args(["-n", &self.0, "-j", "-d", "link", "show", "dev", dev])
            .output()
            .unwrap();
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array().and_then(|a| a.first().cloned())
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }

    /// The pids of the processes in the namespace.
    pub fn pids(&self) -> Vec<u32> {
        Command::new("ip")
            .args(["netns", "pids", &self.0])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // VMMs, passt, dnsmasq or udhcpc left behind by a failed test would keep the namespace
        // alive.
        for pid in self.pids() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
