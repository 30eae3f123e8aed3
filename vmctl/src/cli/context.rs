//! What every verb needs: the state directory, which cluster (and node) is meant, and the lock.

use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::cluster::Cluster;
use crate::state::lock::{self, Lock};
use crate::state::{ClusterDir, Home};
use crate::store::Images;

pub struct Context {
    pub home: Home,
    pub cluster_flag: Option<String>,
    pub lock_timeout: Duration,
}

/// A cluster with state, locked for as long as this lives.
pub struct Locked {
    pub dir: ClusterDir,
    pub cluster: Cluster,
    _lock: Lock,
}

impl Locked {
    pub fn images(&self) -> anyhow::Result<Images> {
        crate::state::read_json::<Images>(&self.dir.images_path())?.with_context(|| {
            format!(
                "cluster {} has no images recorded: run vmctl up {} again",
                self.cluster.name, self.cluster.name
            )
        })
    }
}

impl Context {
    pub fn new(cluster_flag: Option<String>, lock_timeout_secs: u64) -> Self {
        Context {
            home: Home::from_env(),
            cluster_flag,
            lock_timeout: Duration::from_secs(lock_timeout_secs),
        }
    }

    pub fn lock(&self, dir: &ClusterDir, doing: &str) -> anyhow::Result<Lock> {
        dir.create()?;
        Ok(lock::acquire(
            &dir.lock_path(),
            &format!("cluster {}", dir.name),
            doing,
            self.lock_timeout,
        )?)
    }

    /// The cluster meant by `explicit`, the -c flag, or the only one there is.
    pub fn cluster_name(&self, explicit: Option<&str>) -> anyhow::Result<String> {
        if let Some(n) = explicit.or(self.cluster_flag.as_deref()) {
            return Ok(n.to_string());
        }
        let all = self.home.clusters();
        match all.as_slice() {
            [one] => Ok(one.clone()),
            [] => bail!(
                "no cluster has been brought up under {}: run vmctl up NAME first",
                self.home.root.display()
            ),
            many => bail!(
                "several clusters exist ({}): pick one with -c NAME",
                many.join(", ")
            ),
        }
    }

    /// Locks a cluster that has state and loads it.
    pub fn open(&self, name: &str, doing: &str) -> anyhow::Result<Locked> {
        let dir = self.home.cluster(name);
        if !dir.exists() {
            let known = self.home.clusters();
            bail!(
                "there is no cluster {name:?} under {}{}",
                self.home.root.display(),
                if known.is_empty() {
                    ": run vmctl up NAME first".to_string()
                } else {
                    format!(" (there is: {})", known.join(", "))
                }
            );
        }
        let lock = self.lock(&dir, doing)?;
        let cluster = dir
            .load()?
            .with_context(|| format!("cluster {name} vanished while waiting for its lock"))?;
        Ok(Locked {
            dir,
            cluster,
            _lock: lock,
        })
    }

    /// Splits a NODE argument (`core-1`, `demo:core-1`, `demo-core-1`) into cluster and node.
    pub fn node_ref(&self, arg: &str) -> anyhow::Result<(String, String)> {
        if let Some((c, n)) = arg.split_once(':') {
            return Ok((c.to_string(), n.to_string()));
        }
        if let Some(c) = self.cluster_flag.as_deref() {
            let n = arg
                .strip_prefix(&format!("{c}-"))
                .filter(|_| !self.node_exists(c, arg));
            return Ok((c.to_string(), n.unwrap_or(arg).to_string()));
        }
        // A bare node name in the only cluster, or a systemd instance CLUSTER-NODE.
        let mut matches: Vec<(String, String)> = Vec::new();
        for c in self.home.clusters() {
            if self.node_exists(&c, arg) {
                matches.push((c.clone(), arg.to_string()));
            }
            if let Some(n) = arg.strip_prefix(&format!("{c}-"))
                && self.node_exists(&c, n)
            {
                matches.push((c.clone(), n.to_string()));
            }
        }
        match matches.len() {
            1 => Ok(matches.remove(0)),
            0 => bail!(
                "no node {arg:?} in {}: see vmctl status",
                match self.home.clusters().as_slice() {
                    [] => "any cluster (none is up)".to_string(),
                    cs => format!("cluster(s) {}", cs.join(", ")),
                }
            ),
            _ => bail!(
                "{arg:?} could mean {}: write it as CLUSTER:NODE",
                matches
                    .iter()
                    .map(|(c, n)| format!("{c}:{n}"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        }
    }

    fn node_exists(&self, cluster: &str, node: &str) -> bool {
        matches!(self.home.cluster(cluster).load(), Ok(Some(c)) if c.node(node).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::spec::NetMode;
    use crate::cluster::{Image, Network, Node};

    fn cluster(name: &str, nodes: &[&str]) -> Cluster {
        Cluster {
            name: name.into(),
            source: None,
            image: Image {
                kernel: "k".into(),
                initrd: None,
                cmdline: String::new(),
                boot_marker: None,
            },
            network: Network {
                mode: NetMode::User,
                bridge: None,
                subnet: None,
                gateway: None,
                mtu: 1500,
            },
            nodes: nodes
                .iter()
                .map(|n| Node {
                    name: n.to_string(),
                    cpus: 1,
                    memory_mib: 256,
                    root_size: 1 << 30,
                    ssh_keys: vec![],
                    ssh_key_files: vec![],
                    user_data: None,
                    ignition: None,
                    cmdline: String::new(),
                    mac: String::new(),
                    ip: None,
                    tap: None,
                    ssh_port: None,
                })
                .collect(),
        }
    }

    #[test]
    fn node_arguments_in_every_form() {
        let t = tempfile::tempdir().unwrap();
        let home = Home {
            root: t.path().to_path_buf(),
        };
        let ctx = |flag: Option<&str>| Context {
            home: home.clone(),
            cluster_flag: flag.map(str::to_string),
            lock_timeout: Duration::from_secs(1),
        };
        let save = |c: Cluster| {
            let d = home.cluster(&c.name);
            d.create().unwrap();
            d.save(&c).unwrap();
        };
        save(cluster("demo", &["core-1", "core-2"]));
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            ctx(None).node_ref("core-1").unwrap(),
            pair("demo", "core-1")
        );
        assert_eq!(
            ctx(None).node_ref("demo-core-2").unwrap(),
            pair("demo", "core-2")
        );
        assert_eq!(
            ctx(None).node_ref("demo:core-2").unwrap(),
            pair("demo", "core-2")
        );
        assert!(
            ctx(None)
                .node_ref("core-9")
                .unwrap_err()
                .to_string()
                .contains("no node")
        );
        assert_eq!(ctx(None).cluster_name(None).unwrap(), "demo");

        // Cluster "a" with node "b-c" and cluster "a-b" with node "c": "a-b-c" is ambiguous.
        save(cluster("a", &["b-c"]));
        save(cluster("a-b", &["c"]));
        let err = ctx(None).node_ref("a-b-c").unwrap_err().to_string();
        assert!(
            err.contains("a:b-c or a-b:c") && err.contains("CLUSTER:NODE"),
            "{err}"
        );
        assert_eq!(ctx(Some("a-b")).node_ref("c").unwrap(), pair("a-b", "c"));
        assert_eq!(ctx(Some("a")).node_ref("a-b-c").unwrap(), pair("a", "b-c"));
        let err = ctx(None).cluster_name(None).unwrap_err().to_string();
        assert!(
            err.contains("several clusters exist (a, a-b, demo)"),
            "{err}"
        );
    }
}
