//! Bridge mode in network namespaces these tests make (never the host's own network): the
//! bridge, TAPs and MTUs as `ip -d link` shows them, and dnsmasq handing out leases to a real
//! DHCP client (busybox udhcpc) in another namespace over a veth pair, checked in its lease file.
//! Needs root (CAP_NET_ADMIN), iproute2, dnsmasq and busybox.

mod common;

use std::process::{Command, Output};

use common::{Env, Netns, kernel_stub};

/// Runs vmctl (with the stand-in VMM: these tests boot nothing) inside the namespace.
fn vmctl_in(ns: &Netns, env: &Env, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
    let mut c = env.vmctl_in(Some(&ns.0));
    c.args(args);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn bridge_cluster(env: &Env, name: &str, mtu: u32, nodes: &str) -> serde_json::Value {
    kernel_stub(&env.work.join("vmlinuz"));
    std::fs::write(
        env.work.join(format!("{name}.yaml")),
        format!(
            "name: {name}\nimage: {{ kernel: vmlinuz }}\n\
             network: {{ mode: bridge, bridge: br-{name}, subnet: 10.213.7.0/24, mtu: {mtu} }}\n\
             nodes:\n{nodes}"
        ),
    )
    .unwrap();
    serde_json::Value::Null
}

fn record(env: &Env, name: &str) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(env.home.join(format!("clusters/{name}/cluster.json"))).unwrap(),
    )
    .unwrap()
}

#[test]
#[ignore = "needs root and network namespaces; run by scripts/test.sh"]
fn bridge_and_taps_get_the_files_mtu() {
    let env = Env::new();
    let ns = Netns::new("mtu");
    bridge_cluster(&env, "jumbo", 9000, "  - { name: core, count: 3 }\n");
    let out = ok(vmctl_in(
        &ns,
        &env,
        &["net", "up", "jumbo"],
        &[("SUDO_UID", "4321"), ("SUDO_GID", "4322")],
    ));
    assert!(
        out.contains("bridge br-jumbo (10.213.7.1, MTU 9000), 3 TAP(s)"),
        "{out}"
    );

    let rec = record(&env, "jumbo");
    let br = ns.link("br-jumbo").expect("the bridge exists");
    assert_eq!(br["linkinfo"]["info_kind"], "bridge");
    assert_eq!(br["mtu"], 9000);
    assert!(br["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    let addrs = ns.ip(&["-4", "addr", "show", "dev", "br-jumbo"]);
    assert!(addrs.contains("inet 10.213.7.1/24"), "{addrs}");
    let text = ns.ip(&["-d", "link", "show"]);
    for node in rec["nodes"].as_array().unwrap() {
        let tap = node["tap"].as_str().unwrap();
        let l = ns
            .link(tap)
            .unwrap_or_else(|| panic!("{tap} missing: {text}"));
        assert_eq!(l["mtu"], 9000, "{tap}");
        assert_eq!(l["master"], "br-jumbo", "{tap}");
        assert_eq!(l["linkinfo"]["info_kind"], "tun");
        // ip -d link's own words: a persistent TAP with vnet headers, owned by the sudo user.
        let line = text
            .lines()
            .skip_while(|l| !l.contains(&format!(" {tap}:")))
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(line.contains("tun type tap"), "{line}");
        assert!(
            line.contains("vnet_hdr on") && line.contains("persist on"),
            "{line}"
        );
        assert!(
            line.contains("user 4321") && line.contains("group 4322"),
            "{line}"
        );
    }

    // The trap the explicit MTU avoids: a port with a smaller MTU pulls an auto-MTU bridge down.
    ns.ip(&["link", "add", "auto-br", "type", "bridge"]);
    ns.ip(&[
        "link", "add", "big0", "mtu", "9000", "type", "veth", "peer", "name", "big1", "mtu", "9000",
    ]);
    ns.ip(&[
        "link", "add", "small0", "type", "veth", "peer", "name", "small1",
    ]);
    ns.ip(&["link", "set", "big0", "master", "auto-br"]);
    assert_eq!(ns.link("auto-br").unwrap()["mtu"], 9000);
    ns.ip(&["link", "set", "small0", "master", "auto-br"]);
    assert_eq!(
        ns.link("auto-br").unwrap()["mtu"],
        1500,
        "the kernel follows the smallest port"
    );
    // The cluster bridge, whose MTU vmctl set, keeps it when such a port joins.
    ns.ip(&["link", "set", "small1", "master", "br-jumbo"]);
    assert_eq!(ns.link("br-jumbo").unwrap()["mtu"], 9000);
    ns.ip(&["link", "set", "small1", "nomaster"]);

    // Damage repaired by running it again: a TAP's MTU changed, one TAP deleted.
    let t0 = rec["nodes"][0]["tap"].as_str().unwrap().to_string();
    let t1 = rec["nodes"][1]["tap"].as_str().unwrap().to_string();
    ns.ip(&["link", "set", "dev", &t0, "mtu", "1500"]);
    ns.ip(&["link", "del", "dev", &t1]);
    ok(vmctl_in(&ns, &env, &["net", "up", "jumbo"], &[]));
    assert_eq!(ns.link(&t0).unwrap()["mtu"], 9000);
    assert_eq!(ns.link(&t1).unwrap()["master"], "br-jumbo");
    assert_eq!(ns.link("br-jumbo").unwrap()["mtu"], 9000);

    ok(vmctl_in(&ns, &env, &["net", "down", "jumbo"], &[]));
    assert!(ns.link("br-jumbo").is_none());
    assert!(ns.link(&t0).is_none());
    let pids = Command::new("ip")
        .args(["netns", "pids", &ns.0])
        .output()
        .unwrap();
    assert!(
        pids.stdout.is_empty(),
        "dnsmasq is stopped: {}",
        String::from_utf8_lossy(&pids.stdout)
    );
}

#[test]
#[ignore = "needs root, network namespaces, dnsmasq and busybox; run by scripts/test.sh"]
fn dnsmasq_hands_each_node_its_lease_and_name() {
    let env = Env::new();
    let ns = Netns::new("dhcp");
    bridge_cluster(
        &env,
        "dhcp",
        1500,
        "  - { name: core, count: 2 }\n  - { name: etcd }\n",
    );
    ok(vmctl_in(&ns, &env, &["net", "up", "dhcp"], &[]));
    let rec = record(&env, "dhcp");
    let nodes = rec["nodes"].as_array().unwrap().clone();
    let leases = env.home.join("clusters/dhcp/net/dnsmasq.leases");
    let conf = std::fs::read_to_string(env.home.join("clusters/dhcp/net/dnsmasq.conf")).unwrap();
    assert!(
        conf.contains("interface=br-dhcp") && conf.contains("dhcp-option=option:mtu,1500"),
        "{conf}"
    );

    // A client namespace per node, wired to the bridge by a veth pair, with the node's MAC,
    // standing where the VM's virtio-net will be.
    let mut clients = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let mac = node["mac"].as_str().unwrap();
        let name = node["name"].as_str().unwrap();
        let client = Netns::new("cl");
        let (host_end, guest_end) = (format!("vh{i}"), format!("vg{i}"));
        ns.ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", &guest_end,
        ]);
        ns.ip(&["link", "set", &guest_end, "netns", &client.0]);
        ns.ip(&["link", "set", &host_end, "master", "br-dhcp", "up"]);
        client.ip(&["link", "set", &guest_end, "address", mac, "up"]);
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &client.0,
                "busybox",
                "udhcpc",
                "-i",
                &guest_end,
                "-n",
                "-q",
                "-f",
                "-t",
                "10",
                "-T",
                "1",
                "-s",
                "/bin/true",
                "-x",
                &format!("hostname:{name}"),
            ])
            .output()
            .expect("busybox (busybox-static) is needed");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "udhcpc for {name}: {said}");
        let ip = node["ip"].as_str().unwrap();
        assert!(
            said.contains(&format!("lease of {ip} obtained")),
            "{name}: {said}"
        );
        client.ip(&["addr", "add", &format!("{ip}/24"), "dev", &guest_end]);
        clients.push((client, name.to_string(), ip.to_string(), mac.to_string()));
    }
    // dnsmasq's own record of it.
    let text = std::fs::read_to_string(&leases).unwrap();
    for (_, name, ip, mac) in &clients {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!(" {mac} {ip} {name} "))),
            "{name} {mac} {ip} not in the lease file:\n{text}"
        );
    }
    // A stranger gets nothing: only the nodes' MACs are served.
    let stranger = Netns::new("st");
    ns.ip(&["link", "add", "vhx", "type", "veth", "peer", "name", "vgx"]);
    ns.ip(&["link", "set", "vgx", "netns", &stranger.0]);
    ns.ip(&["link", "set", "vhx", "master", "br-dhcp", "up"]);
    stranger.ip(&["link", "set", "vgx", "address", "02:00:00:00:00:99", "up"]);
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &stranger.0,
            "busybox",
            "udhcpc",
            "-i",
            "vgx",
            "-n",
            "-q",
            "-f",
            "-t",
            "2",
            "-T",
            "1",
            "-s",
            "/bin/true",
        ])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a MAC not in the cluster got a lease"
    );

    // DNS: node names resolve under the cluster's domain, from a node.
    let (client, _, _, _) = &clients[0];
    let target = &clients[2];
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &client.0,
            "busybox",
            "nslookup",
            &format!("{}.dhcp", target.1),
            "10.213.7.1",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&target.2),
        "nslookup {}.dhcp: {said}{}",
        target.1,
        String::from_utf8_lossy(&out.stderr)
    );

    ok(vmctl_in(&ns, &env, &["net", "down", "dhcp"], &[]));
    drop(clients);
}
