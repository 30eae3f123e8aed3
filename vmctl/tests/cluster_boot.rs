//! Linux clusters with the real VMM, the test kernel and the demo image's PXE initrd (its /usr
//! and first stage), in network namespaces the tests make: three nodes on a bridge with TAPs and
//! vmctl's dnsmasq, each booting with `ip=dhcp` (the kernel's own DHCP client) and getting the
//! lease and name dnsmasq hands its MAC; and one node in user mode getting passt's lease. No
//! guest user space runs on PVM hosts (see docs/vmctl.md): there each kernel is held before its
//! root mount (the hand-over to init would end the VM), each node is stopped once its lease is
//! seen, and every check is made during that one boot. Where vmx/svm exist, the
//! nodes boot to the demo image's user space and `vmctl ssh` runs a command on each first.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Env, Netns, alive, host_has_vmx_or_svm, input_path, kernel_dir};

/// Four Linux boots share two cores: minutes each, many more on a busy machine.
const BOOT: Duration = Duration::from_secs(30 * 60);

fn console(env: &Env, cluster: &str, node: &str) -> String {
    std::fs::read_to_string(env.node_dir(cluster, node).join("console.log")).unwrap_or_default()
}

/// What to show when a node's VMM is gone: its own log and the end of its console.
fn died(env: &Env, cluster: &str, node: &str) -> String {
    let vmm =
        std::fs::read_to_string(env.node_dir(cluster, node).join("vmm.log")).unwrap_or_default();
    let console = console(env, cluster, node);
    let tail: Vec<&str> = console.lines().rev().take(15).collect();
    format!(
        "{node}'s VMM is gone. vmm.log:\n{vmm}\nconsole (last lines):\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}

/// Waits for `text` in the node's console while its VMM runs.
fn wait_for_console(env: &Env, cluster: &str, node: &str, pid: u32, text: &str) -> String {
    let deadline = Instant::now() + BOOT;
    loop {
        let c = console(env, cluster, node);
        if c.contains(text) {
            return c;
        }
        assert!(alive(pid), "{}", died(env, cluster, node));
        assert!(
            Instant::now() < deadline,
            "{node}: no {text:?} after {BOOT:?}:\n{c}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The kernel's own account of its DHCP exchange: from `IP-Config: Got DHCP answer` through
/// the `bootserver=...` line that ends the `IP-Config: Complete:` block.
fn ip_config(console: &str) -> Option<String> {
    let start = console.find("IP-Config: Got DHCP answer")?;
    let rest = &console[start..];
    let boot = rest.find("bootserver=")?;
    let end = rest[boot..].find('\n')? + boot;
    Some(rest[..end].to_string())
}

/// The demo image's PXE initrd (scripts/build-demo-image.sh): its /usr, and a first stage that
/// brings up user space with sshd where guests can run it.
fn demo_initrd() -> std::path::PathBuf {
    input_path("VMCTL_TEST_DEMO_IMAGE").join("demo_pxe_image.cpio.gz")
}

/// What the image's command line adds on PVM hosts: there the kernel's hand-over to init ends
/// the VM about half a second later (docs/vmctl.md), sooner than the checks of one node take,
/// and nodes reach it at moments the test cannot choose. The kernel sleeps this long after its
/// DHCP exchange (`ip=dhcp` runs before the root mount), so each node outlives its checks and
/// its `down` whatever order the leases come in.
const HOLD_BEFORE_ROOT_MOUNT: &str = "rootdelay=1200";

/// A cluster of the test kernel with `initrd`, `ip=dhcp`, and an ssh key made for it.
fn write_cluster(env: &Env, name: &str, initrd: &std::path::Path, network: &str, nodes: &str) {
    let key = env.work.join("id_ed25519");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test@vmctl", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen (openssh-client) is needed");
    assert!(st.success());
    std::fs::write(
        env.work.join(format!("{name}.yaml")),
        format!(
            "name: {name}\n\
             image:\n\
             \x20 kernel: {kernel}\n\
             \x20 initrd: {initrd}\n\
             \x20 cmdline: ip=dhcp{hold}\n\
             network: {network}\n\
             defaults: {{ cpus: 1, memory: 128, root_size: 256M, ssh_keys: [id_ed25519.pub] }}\n\
             nodes:\n{nodes}",
            kernel = kernel_dir().join("vmlinux").display(),
            initrd = initrd.display(),
            hold = if host_has_vmx_or_svm() {
                String::new()
            } else {
                format!(" {HOLD_BEFORE_ROOT_MOUNT}")
            }
        ),
    )
    .unwrap();
}

/// Where guests run user space: waits for the node's sshd and runs `hostname` through
/// `vmctl ssh`, which must answer with the node's name (from the config drive).
fn ssh_runs_a_command(env: &Env, node: &str) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let out = env.run(&["ssh", node, "--", "hostname"]);
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), node);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "vmctl ssh {node} never worked: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
#[ignore = "needs root (network namespaces), /dev/kvm, dnsmasq and the test kernel; boots three Linux VMs (minutes); run by scripts/test.sh"]
fn three_nodes_get_their_leases_and_names_over_the_bridge() {
    let ns = Netns::new("c3");
    let env = Env::real(&ns);
    write_cluster(
        &env,
        "c3",
        &demo_initrd(),
        "{ mode: bridge, bridge: br-c3, subnet: 10.213.9.0/24, mtu: 9000 }",
        "  - { name: core, count: 3 }\n",
    );
    let out = env.ok(&["up", "c3", "--no-wait"]);
    for n in 1..=3 {
        assert!(out.contains(&format!("core-{n}: started")), "{out}");
    }
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.home.join("clusters/c3/cluster.json")).unwrap())
            .unwrap();
    struct Node {
        mac: String,
        ip: String,
        tap: String,
        pid: u32,
    }
    let nodes: BTreeMap<String, Node> = rec["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let name = n["name"].as_str().unwrap().to_string();
            let pid = env.pid("c3", &name).expect("a pid file");
            (
                name,
                Node {
                    mac: n["mac"].as_str().unwrap().to_string(),
                    ip: n["ip"].as_str().unwrap().to_string(),
                    tap: n["tap"].as_str().unwrap().to_string(),
                    pid,
                },
            )
        })
        .collect();

    // Where no guest user space runs, vmctl leaves the image's initrd out (docs/vmctl.md).
    for (name, n) in &nodes {
        let args = std::fs::read(format!("/proc/{}/cmdline", n.pid)).unwrap();
        let has_initrd = args.split(|b| *b == 0).any(|a| a == b"--initrd");
        assert_eq!(has_initrd, host_has_vmx_or_svm(), "{name}");
    }

    // While the VMs run: the bridge and each TAP at the file's MTU, as `ip -d link` shows them,
    // each TAP enslaved, carrying vnet headers, and with its carrier up because a VMM has it open.
    let br = ns.link("br-c3").expect("the bridge exists");
    assert_eq!(br["linkinfo"]["info_kind"], "bridge");
    assert_eq!(br["mtu"], 9000);
    let text = ns.ip(&["-d", "link", "show"]);
    for (name, n) in &nodes {
        let l = ns
            .link(&n.tap)
            .unwrap_or_else(|| panic!("{name}: {} missing\n{text}", n.tap));
        assert_eq!(l["mtu"], 9000, "{name}");
        assert_eq!(l["master"], "br-c3", "{name}");
        let flags: Vec<&str> = l["flags"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f.as_str())
            .collect();
        assert!(flags.contains(&"LOWER_UP"), "{name}: {flags:?}");
        let line = text
            .lines()
            .skip_while(|l| !l.contains(&format!(" {}:", n.tap)))
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            line.contains("tun type tap") && line.contains("vnet_hdr on"),
            "{line}"
        );
    }

    // Each node is stopped as soon as its lease is in dnsmasq's file and its kernel has said
    // what it got.
    let leases = env.home.join("clusters/c3/net/dnsmasq.leases");
    let mut pending: Vec<&String> = nodes.keys().collect();
    let deadline = Instant::now() + BOOT;
    let mut checked = Vec::new();
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no lease after {BOOT:?} for {pending:?}; leases:\n{}",
            std::fs::read_to_string(&leases).unwrap_or_default()
        );
        let lease_text = std::fs::read_to_string(&leases).unwrap_or_default();
        let mut done = Vec::new();
        for name in &pending {
            let n = &nodes[name.as_str()];
            assert!(alive(n.pid), "{}", died(&env, "c3", name));
            let Some(lease) = lease_text
                .lines()
                .find(|l| l.split_whitespace().nth(1) == Some(n.mac.as_str()))
            else {
                continue;
            };
            let Some(cfg) = ip_config(&console(&env, "c3", name)) else {
                continue;
            };
            // dnsmasq's record: `EXPIRY MAC IP NAME CLIENT-ID`, with the address and name
            // vmctl gave the MAC.
            let f: Vec<&str> = lease.split_whitespace().collect();
            assert_eq!(f[2], n.ip, "{name}: {lease}");
            assert_eq!(f[3], name.as_str(), "{name}: {lease}");
            // The kernel's side of the same exchange.
            assert!(
                cfg.contains(&format!(
                    "Got DHCP answer from 10.213.9.1, my address is {}",
                    n.ip
                )),
                "{name}: {cfg}"
            );
            assert!(cfg.contains(&format!("hwaddr={}", n.mac)), "{name}: {cfg}");
            assert!(cfg.contains(&format!("host={name}")), "{name}: {cfg}");
            assert!(cfg.contains("mtu=9000"), "{name}: {cfg}");
            assert!(cfg.contains("gw=10.213.9.1"), "{name}: {cfg}");

            // status while it runs: its address, and the lease.
            let status = env.ok(&["status", "c3"]);
            let row = status
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{status}"));
            assert!(row.contains(&format!(" {} ", n.ip)), "{row}");
            let cols: Vec<&str> = row.split_whitespace().collect();
            assert!(cols.contains(&"yes"), "lease column: {row}");
            assert!(row.contains("running"), "{row}");

            if host_has_vmx_or_svm() {
                ssh_runs_a_command(&env, name);
            }
            // The power button, then (nothing acts on it: no user space here, and the test
            // kernel has no evdev for acpid elsewhere) the API's power-off.
            let t = Instant::now();
            let out = env.ok(&["down", name, "--timeout", "3"]);
            if host_has_vmx_or_svm() {
                assert!(
                    out.contains(&format!("{name}: powered off"))
                        || out.contains(&format!("{name}: did not power off within 3s")),
                    "{out}"
                );
            } else {
                assert!(
                    out.contains(&format!(
                        "{name}: did not power off within 3s of the power button; stopped it (API power-off)"
                    )),
                    "{out}"
                );
                assert!(t.elapsed() >= Duration::from_secs(3));
            }
            assert!(!alive(n.pid), "{name}");
            checked.push(name.to_string());
            done.push(name.to_string());
        }
        pending.retain(|n| !done.contains(n));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(checked.len(), 3);
    let out = env.ok(&["status", "c3"]);
    assert_eq!(out.matches(" stopped ").count(), 3, "{out}");

    // The whole cluster down takes the network with it; destroy removes the rest.
    env.ok(&["down", "-c", "c3", "--timeout", "1"]);
    assert!(ns.link("br-c3").is_none(), "the bridge is gone");
    for n in nodes.values() {
        assert!(ns.link(&n.tap).is_none(), "{} is gone", n.tap);
    }
    assert!(ns.pids().is_empty(), "dnsmasq stopped: {:?}", ns.pids());
    env.ok(&["destroy", "c3", "--yes"]);
    assert!(!env.home.join("clusters/c3").exists());

    if !host_has_vmx_or_svm() {
        println!(
            "SKIP: guest user space and vmctl ssh: this host's KVM has no vmx/svm (PVM), so no guest user space runs; checked at kernel level only"
        );
    }
}

#[test]
#[ignore = "needs root (network namespaces), /dev/kvm, passt and the test kernel; boots a Linux VM (minutes); run by scripts/test.sh"]
fn a_user_mode_node_gets_passts_lease() {
    let ns = Netns::for_passt("user");
    let env = Env::real(&ns);
    write_cluster(
        &env,
        "solo",
        &demo_initrd(),
        "{ mode: user }",
        "  - { name: a }\n",
    );
    let out = env.ok(&["up", "solo", "--no-wait"]);
    assert!(out.contains("a: started"), "{out}");
    let pid = env.pid("solo", "a").unwrap();
    // passt answers DHCP with the namespace's own address and gateway (see common::netns).
    wait_for_console(&env, "solo", "a", pid, "IP-Config: Complete");
    let text = wait_for_console(&env, "solo", "a", pid, "bootserver=");
    let cfg = ip_config(&text).unwrap_or_else(|| panic!("{text}"));
    assert!(
        cfg.contains("Got DHCP answer from 10.200.0.1, my address is 10.200.0.5"),
        "{cfg}"
    );
    assert!(cfg.contains("gw=10.200.0.1"), "{cfg}");
    let status = env.ok(&["status", "solo"]);
    let row = status.lines().find(|l| l.starts_with("a ")).unwrap();
    assert!(row.contains("yes"), "status shows the lease: {status}");
    if host_has_vmx_or_svm() {
        assert!(row.contains("ssh -p 22"), "{row}");
        ssh_runs_a_command(&env, "a");
    } else {
        assert!(row.contains("vmctl logs solo:a"), "{row}");
        println!(
            "SKIP: guest user space and vmctl ssh over passt's port forward: this host's KVM has no vmx/svm (PVM)"
        );
    }
    env.ok(&["down", "--timeout", "1"]);
    assert!(!alive(pid));
    assert!(
        ns.pids().is_empty(),
        "passt went with its VMM: {:?}",
        ns.pids()
    );
}
