//! A dnsmasq per cluster bridge: DHCP only for the nodes' MACs (each gets its fixed address and
//! name), DNS for the node names under the cluster's domain. Its files live in the cluster's
//! `net/` directory. Hosts go in a hosts file dnsmasq re-reads on SIGHUP, so adding a node does
//! not restart DHCP for the others.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use super::NetError;
use crate::cluster::Cluster;

pub struct Files {
    pub conf: PathBuf,
    pub dhcp_hosts: PathBuf,
    pub hosts: PathBuf,
    pub leases: PathBuf,
    pub pid: PathBuf,
    pub log: PathBuf,
    start_err: PathBuf,
}

/// How long a lease lasts; dnsmasq's lease file records its expiry, so the time a lease was
/// handed out is its expiry minus this.
pub const LEASE_SECS: u64 = 12 * 3600;

pub fn files(net_dir: &Path) -> Files {
    Files {
        conf: net_dir.join("dnsmasq.conf"),
        dhcp_hosts: net_dir.join("dhcp-hosts"),
        hosts: net_dir.join("hosts"),
        leases: net_dir.join("dnsmasq.leases"),
        pid: net_dir.join("dnsmasq.pid"),
        log: net_dir.join("dnsmasq.log"),
        start_err: net_dir.join("dnsmasq.start-error"),
    }
}

/// The configuration; `None` outside bridge mode.
pub fn conf(cluster: &Cluster, f: &Files) -> Option<String> {
    let net = &cluster.network;
    let (bridge, subnet, gw) = (net.bridge.as_ref()?, net.subnet?, net.gateway?);
    let p = |p: &Path| p.display().to_string();
    Some(format!(
        "# Written by vmctl for cluster {name}; vmctl rewrites it on every `up`.\n\
         interface={bridge}\n\
         bind-interfaces\n\
         listen-address={gw}\n\
         # Only the nodes' MACs get addresses (dhcp-hosts): no pool for strangers.\n\
         dhcp-range={net_addr},static,{mask},{LEASE_SECS}\n\
         dhcp-authoritative\n\
         dhcp-hostsfile={dhcp_hosts}\n\
         addn-hosts={hosts}\n\
         dhcp-leasefile={leases}\n\
         pid-file={pid}\n\
         log-facility={log}\n\
         log-dhcp\n\
         dhcp-option=option:router,{gw}\n\
         dhcp-option=option:dns-server,{gw}\n\
         dhcp-option=option:mtu,{mtu}\n\
         domain={name}\n\
         local=/{name}/\n\
         domain-needed\n\
         bogus-priv\n",
        name = cluster.name,
        net_addr = subnet.0.network(),
        mask = subnet.0.netmask(),
        dhcp_hosts = p(&f.dhcp_hosts),
        hosts = p(&f.hosts),
        leases = p(&f.leases),
        pid = p(&f.pid),
        log = p(&f.log),
        mtu = net.mtu,
    ))
}

/// `MAC,IP,NAME` per node, as `dhcp-host=` takes it.
pub fn dhcp_hosts(cluster: &Cluster) -> String {
    cluster
        .nodes
        .iter()
        .filter_map(|n| Some(format!("{},{},{}\n", n.mac, n.ip?, n.name)))
        .collect()
}

/// `IP NAME NAME.CLUSTER`, so names resolve before a node has asked for its lease.
pub fn hosts(cluster: &Cluster) -> String {
    cluster
        .nodes
        .iter()
        .filter_map(|n| {
            Some(format!(
                "{} {} {}.{}\n",
                n.ip?, n.name, n.name, cluster.name
            ))
        })
        .collect()
}

/// Starts dnsmasq, or brings a running one up to date.
pub fn ensure(cluster: &Cluster, net_dir: &Path) -> Result<(), NetError> {
    let f = files(net_dir);
    let Some(conf_text) = conf(cluster, &f) else {
        return Ok(());
    };
    let write = |path: &Path, text: &str| {
        crate::state::write_atomic(path, text.as_bytes()).map_err(|err| NetError::Write {
            path: path.to_path_buf(),
            err,
        })
    };
    std::fs::create_dir_all(net_dir).map_err(|err| NetError::Write {
        path: net_dir.to_path_buf(),
        err,
    })?;
    let conf_changed = std::fs::read_to_string(&f.conf).ok().as_deref() != Some(&conf_text);
    write(&f.dhcp_hosts, &dhcp_hosts(cluster))?;
    write(&f.hosts, &hosts(cluster))?;
    write(&f.conf, &conf_text)?;
    match running(&f) {
        Some(pid) if !conf_changed => {
            // Re-reads dhcp-hosts and hosts.
            let _ = kill_process(pid, Signal::HUP);
            Ok(())
        }
        Some(_) => {
            stop(net_dir);
            start(cluster, &f)
        }
        None => start(cluster, &f),
    }
}

fn start(cluster: &Cluster, f: &Files) -> Result<(), NetError> {
    let bridge = cluster.network.bridge.clone().unwrap_or_default();
    let _ = std::fs::remove_file(&f.pid);
    let err_file = std::fs::File::create(&f.start_err).map_err(|err| NetError::Write {
        path: f.start_err.clone(),
        err,
    })?;
    // dnsmasq checks its configuration and binds its sockets before it daemonizes, so a failure
    // shows up as its exit status; its message goes to a file, since the daemon keeps no pipe.
    let status = Command::new("dnsmasq")
        .arg(format!("--conf-file={}", f.conf.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_file)
        .status()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => NetError::NoDnsmasq,
            _ => NetError::Dnsmasq {
                bridge: bridge.clone(),
                message: e.to_string(),
            },
        })?;
    let message = std::fs::read_to_string(&f.start_err).unwrap_or_default();
    let _ = std::fs::remove_file(&f.start_err);
    if !status.success() {
        return Err(NetError::Dnsmasq {
            bridge,
            message: one_line(&message, status),
        });
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if running(f).is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(NetError::Dnsmasq {
        bridge,
        message: format!(
            "it exited without writing {}; see {}",
            f.pid.display(),
            f.log.display()
        ),
    })
}

fn one_line(message: &str, status: std::process::ExitStatus) -> String {
    let text = message
        .lines()
        .map(|l| l.trim().trim_start_matches("dnsmasq: "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if text.is_empty() {
        format!("it exited with {status}")
    } else {
        text
    }
}

/// The pid of the dnsmasq this directory's pid file names, if it is alive and is dnsmasq.
pub fn running(f: &Files) -> Option<Pid> {
    let pid: i32 = std::fs::read_to_string(&f.pid).ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let ours = String::from_utf8_lossy(&cmdline).contains(&f.conf.display().to_string());
    (comm.trim() == "dnsmasq" && ours)
        .then(|| Pid::from_raw(pid))
        .flatten()
}

/// Stops this cluster's dnsmasq, if running.
pub fn stop(net_dir: &Path) {
    let f = files(net_dir);
    if let Some(pid) = running(&f) {
        let _ = kill_process(pid, Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && running(&f).is_some() {
            std::thread::sleep(Duration::from_millis(20));
        }
        if running(&f).is_some() {
            let _ = kill_process(pid, Signal::KILL);
        }
    }
    let _ = std::fs::remove_file(&f.pid);
}
