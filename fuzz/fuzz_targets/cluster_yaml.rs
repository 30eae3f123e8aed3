//! The cluster YAML: parsing, then resolving and validating against a small directory of real
//! files (a kernel header, an initrd, user data, an Ignition config, an ssh key).
//!
//! Invariants: an error is one line and, when it has a position, that position is in the text;
//! a resolved cluster keeps every promise vmctl relies on later (valid unique node names, MACs
//! unique and locally administered, in bridge mode unique addresses in the subnet that are not
//! the gateway and unique TAP names that fit IFNAMSIZ, in user mode unique ssh ports in the
//! range, sizes in range, the image files real); it survives the JSON round trip of the state
//! directory; and resolving again with it as the previous run changes nothing.
#![no_main]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vmctl::cluster::resolve::{Previous, load_str};
use vmctl::cluster::spec::{MIN_ROOT_SIZE, NetMode, check_ifname, check_name};
use vmctl::cluster::{Cluster, ClusterError};

fn fixture() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let p = vmctl_fuzz::process_tempdir(None);
        let mut kernel = vec![0u8; 0x400];
        kernel[0x202..0x206].copy_from_slice(b"HdrS");
        kernel[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        std::fs::write(p.join("vmlinuz"), kernel).expect("fixture");
        std::fs::write(p.join("vmlinux"), b"\x7fELF\x02\x01\x01").expect("fixture");
        std::fs::write(p.join("initrd.img"), b"070701").expect("fixture");
        std::fs::write(p.join("user-data"), b"#cloud-config\nhostname: x\n").expect("fixture");
        std::fs::write(p.join("script"), b"#!/bin/sh\necho hi\n").expect("fixture");
        std::fs::write(p.join("config.ign"), br#"{"ignition":{"version":"3.3.0"}}"#)
            .expect("fixture");
        std::fs::create_dir(p.join("dir")).expect("fixture");
        // A real key if ssh-keygen is here; the seeds carry one inline too.
        let _ = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "fuzz", "-f"])
            .arg(p.join("key"))
            .status();
        p
    })
}

fn check_error(e: &ClusterError, text: &str) {
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "a multi-line error: {msg:?}");
    if let ClusterError::At { line, column, .. } = e {
        // YAML ends a line at LF, CRLF or a lone CR.
        let lines = text
            .replace("\r\n", "\n")
            .replace('\r', "\n")
            .split('\n')
            .count();
        assert!(
            *line >= 1 && *line <= lines + 1 && *column >= 1,
            "position {line}:{column} outside a text of {lines} lines: {msg}"
        );
    }
}

fn check_cluster(c: &Cluster) {
    check_name(&c.name).expect("cluster name");
    assert!(!c.nodes.is_empty());
    assert!(c.image.kernel.is_absolute() && c.image.kernel.is_file());
    if let Some(i) = &c.image.initrd {
        assert!(i.is_absolute() && i.is_file());
    }
    assert_eq!(c.image.cmdline.trim(), c.image.cmdline);
    let mut names = BTreeSet::new();
    let mut macs = BTreeSet::new();
    let mut taps = BTreeSet::new();
    let mut ips = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for n in &c.nodes {
        check_name(&n.name).expect("node name");
        assert!(names.insert(n.name.clone()), "node {} twice", n.name);
        assert!(n.cpus >= 1);
        assert!((64..=1 << 20).contains(&n.memory_mib));
        assert!(n.root_size >= MIN_ROOT_SIZE);
        let first = u8::from_str_radix(&n.mac[..2], 16).expect("hex MAC");
        assert_eq!(first & 3, 2, "MAC {} not local unicast", n.mac);
        assert!(macs.insert(n.mac.clone()), "MAC {} twice", n.mac);
        for f in n
            .user_data
            .iter()
            .chain(&n.ignition)
            .chain(&n.ssh_key_files)
        {
            assert!(f.is_absolute() && f.is_file(), "{}", f.display());
        }
        assert_eq!(n.cmdline.trim(), n.cmdline);
        match c.network.mode {
            NetMode::Bridge => {
                let subnet = c.network.subnet.expect("bridge mode has a subnet");
                let ip = n.ip.expect("bridge mode gives every node an address");
                assert!(subnet.0.contains(&ip));
                assert_ne!(Some(ip), c.network.gateway);
                assert_ne!(ip, subnet.0.network());
                assert_ne!(ip, subnet.0.broadcast());
                assert!(ips.insert(ip), "{ip} twice");
                let tap = n.tap.clone().expect("bridge mode has TAPs");
                check_ifname(&tap).expect("TAP name");
                assert!(taps.insert(tap));
                assert!(n.ssh_port.is_none());
            }
            NetMode::User => {
                let port = n.ssh_port.expect("user mode forwards ssh");
                assert!(vmctl::net::ports::RANGE.contains(&port));
                assert!(ports.insert(port), "port {port} twice");
                assert!(n.ip.is_none() && n.tap.is_none());
            }
        }
    }
    assert!((68..=65521).contains(&c.network.mtu));
    match c.network.mode {
        NetMode::Bridge => {
            check_ifname(c.network.bridge.as_deref().expect("bridge")).expect("bridge name");
            let subnet = c.network.subnet.expect("subnet");
            assert_eq!(c.network.gateway, subnet.host(0));
        }
        NetMode::User => {
            assert!(c.network.bridge.is_none() && c.network.subnet.is_none());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = fixture();
    let first = match load_str(text, "fuzz.yaml", base, &Previous::default()) {
        Ok(c) => c,
        Err(e) => {
            check_error(&e, text);
            return;
        }
    };
    check_cluster(&first);
    let json = serde_json::to_string(&first).expect("serializes");
    let back: Cluster = serde_json::from_str(&json).expect("state file reads back");
    assert_eq!(back, first);
    let again = load_str(
        text,
        "fuzz.yaml",
        base,
        &Previous {
            cluster: Some(&first),
            ports_in_use: BTreeSet::new(),
        },
    )
    .expect("a file that resolved resolves again");
    assert_eq!(
        again, first,
        "resolving with the previous run changed the cluster"
    );
});
