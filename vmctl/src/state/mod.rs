//! Where vmctl keeps things: `/var/lib/vmctl` or `$VMCTL_HOME`.
//!
//! ```text
//! images/                      the content-addressed image store (see crate::store)
//! clusters/NAME/lock           flock'd by every vmctl acting on the cluster
//! clusters/NAME/cluster.json   the resolved cluster, for change detection and for `vmctl run`
//! clusters/NAME/net/           dnsmasq's conf, pid, leases and log
//! clusters/NAME/nodes/NODE/    root.img, config-2/ (+ config.ign), console.log, api.sock,
//!                              vmm.pid, vmm.log, started.json (the settings it runs with)
//! ```

pub mod lock;
pub mod pidfile;

use std::io;
use std::path::{Path, PathBuf};

use imagetool::atomic::{AtomicFile, Overwrite};
use thiserror::Error;

use crate::cluster::Cluster;

pub const DEFAULT_HOME: &str = "/var/lib/vmctl";

#[derive(Debug, Error)]
pub enum StateError {
    #[error("cannot create {path}: {err}")]
    Create { path: PathBuf, err: io::Error },
    #[error("cannot read {path}: {err}")]
    Read { path: PathBuf, err: io::Error },
    #[error("cannot write {path}: {err}")]
    Write { path: PathBuf, err: io::Error },
    #[error("{path} is damaged ({err}): remove it and run vmctl up again")]
    Corrupt {
        path: PathBuf,
        err: serde_json::Error,
    },
}

#[derive(Clone, Debug)]
pub struct Home {
    pub root: PathBuf,
}

impl Home {
    pub fn from_env() -> Self {
        let root = std::env::var_os("VMCTL_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_HOME));
        Home {
            root: std::path::absolute(&root).unwrap_or(root),
        }
    }

    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    pub fn cluster(&self, name: &str) -> ClusterDir {
        ClusterDir {
            name: name.to_string(),
            path: self.root.join("clusters").join(name),
        }
    }

    /// Names of the clusters that have state here.
    pub fn clusters(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.root.join("clusters"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("cluster.json").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }
}

#[derive(Clone, Debug)]
pub struct ClusterDir {
    pub name: String,
    pub path: PathBuf,
}

impl ClusterDir {
    pub fn record_path(&self) -> PathBuf {
        self.path.join("cluster.json")
    }
    /// The image store blobs the cluster boots from.
    pub fn images_path(&self) -> PathBuf {
        self.path.join("images.json")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.path.join("lock")
    }
    pub fn net(&self) -> PathBuf {
        self.path.join("net")
    }
    pub fn node(&self, name: &str) -> NodeDir {
        NodeDir {
            name: name.to_string(),
            path: self.path.join("nodes").join(name),
        }
    }
    pub fn exists(&self) -> bool {
        self.record_path().is_file()
    }

    pub fn create(&self) -> Result<(), StateError> {
        create_dir(&self.path)
    }

    /// The saved cluster, if `up` ever ran.
    pub fn load(&self) -> Result<Option<Cluster>, StateError> {
        read_json(&self.record_path())
    }

    pub fn save(&self, cluster: &Cluster) -> Result<(), StateError> {
        write_json(&self.record_path(), cluster)
    }

    /// Node directories present on disk, including nodes no longer in the file.
    pub fn node_dirs(&self) -> Vec<NodeDir> {
        let mut v: Vec<NodeDir> = std::fs::read_dir(self.path.join("nodes"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .map(|n| self.node(&n))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

#[derive(Clone, Debug)]
pub struct NodeDir {
    pub name: String,
    pub path: PathBuf,
}

impl NodeDir {
    pub fn root_disk(&self) -> PathBuf {
        self.path.join("root.img")
    }
    /// The config drive shared as `config-2`; `config.ign` sits inside it, beside `openstack/`.
    pub fn config_drive(&self) -> PathBuf {
        self.path.join("config-2")
    }
    pub fn ignition(&self) -> PathBuf {
        self.config_drive()
            .join(imagetool::configdrive::IGNITION_FILE)
    }
    pub fn console_log(&self) -> PathBuf {
        self.path.join("console.log")
    }
    /// The console log of the start before this one.
    pub fn previous_console_log(&self) -> PathBuf {
        self.path.join("console.log.1")
    }
    pub fn api_socket(&self) -> PathBuf {
        self.path.join("api.sock")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.path.join("vmm.pid")
    }
    /// The VMM's log of the start before this one.
    pub fn previous_vmm_log(&self) -> PathBuf {
        self.path.join("vmm.log.1")
    }
    pub fn vmm_log(&self) -> PathBuf {
        self.path.join("vmm.log")
    }
    /// The settings the running VM was started with, to tell a changed file from an unchanged one.
    pub fn started(&self) -> PathBuf {
        self.path.join("started.json")
    }
    /// Names the systemd unit running this node (`vmctl run` under systemd), so `down` stops it
    /// through systemd instead of behind its back (which Restart=on-failure would undo).
    pub fn systemd_unit(&self) -> PathBuf {
        self.path.join("systemd-unit")
    }
    pub fn create(&self) -> Result<(), StateError> {
        create_dir(&self.path)
    }
}

pub fn create_dir(path: &Path) -> Result<(), StateError> {
    std::fs::create_dir_all(path).map_err(|err| StateError::Create {
        path: path.to_path_buf(),
        err,
    })
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| StateError::Corrupt {
                path: path.to_path_buf(),
                err,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(StateError::Read {
            path: path.to_path_buf(),
            err,
        }),
    }
}

/// Written whole or not at all, so a crash never leaves a half-written record.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let err = |err| StateError::Write {
        path: path.to_path_buf(),
        err,
    };
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| err(io::Error::other(e)))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes).map_err(err)
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = AtomicFile::create(path, Overwrite::Allow)?;
    f.file().write_all(bytes)?;
    f.commit()
}
