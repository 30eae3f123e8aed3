//! A node's own files: its sparse root disk (made once, kept across restarts) and its config
//! drive (rewritten on each start, so an edited file takes effect at the next start).

use imagetool::atomic::Overwrite;
use imagetool::configdrive::{self, ConfigDriveSpec};
use imagetool::mkroot::{self, MkrootOptions};
use thiserror::Error;

use crate::cluster::Node;
use crate::state::{NodeDir, StateError};

/// Linux's 108-byte sun_path, less the NUL.
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, Error)]
pub enum PrepareError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{node}: root disk: {err}")]
    Root {
        node: String,
        err: mkroot::MkrootError,
    },
    #[error("{node}: config drive: {err}")]
    ConfigDrive {
        node: String,
        err: configdrive::ConfigDriveError,
    },
    #[error("{node}: cannot read {path}: {err}")]
    Read {
        node: String,
        path: std::path::PathBuf,
        err: std::io::Error,
    },
    #[error(
        "{node}: the API socket path {path} is {len} bytes, over the 107 Linux allows: set VMCTL_HOME to a shorter directory"
    )]
    SocketPath {
        node: String,
        path: std::path::PathBuf,
        len: usize,
    },
}

pub struct Prepared {
    /// The root disk was just made: the guest's first boot.
    pub first_boot: bool,
}

pub fn prepare(cluster: &str, node: &Node, dir: &NodeDir) -> Result<Prepared, PrepareError> {
    dir.create()?;
    let sock = dir.api_socket();
    let len = sock.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(PrepareError::SocketPath {
            node: node.name.clone(),
            path: sock,
            len,
        });
    }
    let root = dir.root_disk();
    let first_boot = !root.exists();
    if first_boot {
        let report = mkroot::mkroot(
            &root,
            &MkrootOptions {
                size: node.root_size,
                label: "ROOT".into(),
                from: None,
                uuid: None,
                overwrite: Overwrite::Refuse,
            },
        )
        .map_err(|err| PrepareError::Root {
            node: node.name.clone(),
            err,
        })?;
        tracing::info!(
            "{}: made root disk {} ({} apparent, {} allocated)",
            node.name,
            root.display(),
            imagetool::size::human(report.apparent_bytes),
            imagetool::size::human(report.allocated_bytes)
        );
    }
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|err| PrepareError::Read {
            node: node.name.clone(),
            path: p.to_path_buf(),
            err,
        })
    };
    let spec = ConfigDriveSpec {
        hostname: node.name.clone(),
        ssh_keys: node.ssh_keys.clone(),
        user_data: node.user_data.as_deref().map(read).transpose()?,
        uuid: Some(node_uuid(cluster, &node.name)),
        ignition: node.ignition.as_deref().map(read).transpose()?,
    };
    if spec.ignition.is_none() {
        // A config.ign from an earlier start whose file no longer names one must not linger.
        let _ = std::fs::remove_file(dir.ignition());
    }
    configdrive::write(&dir.config_drive(), &spec).map_err(|err| PrepareError::ConfigDrive {
        node: node.name.clone(),
        err,
    })?;
    Ok(Prepared { first_boot })
}

/// The instance UUID in meta_data.json: stable per node, like the MAC.
pub fn node_uuid(cluster: &str, node: &str) -> uuid::Uuid {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("vmctl-uuid\0{cluster}\0{node}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}
