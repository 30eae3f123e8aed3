//! Settings added with the config drive, Ignition, entropy, shutdown and the API socket
//! (issue 5): `--share`, `--ignition`, `--rng`, `--shutdown-timeout`, `--api-socket`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::keyvalue::KeyValues;
use super::{ConfigError, VmConfig};

/// How long a guest gets to power off after the ACPI power button before the VMM stops it.
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 30;
/// Longest mount tag accepted (Linux copies it into a 9p device name).
pub const MAX_TAG_LEN: usize = 64;
/// Largest Ignition config handed over fw_cfg.
pub const MAX_IGNITION_BYTES: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ShareConfigError {
    #[error(
        "share tag '{0}' must be 1-{MAX_TAG_LEN} characters of letters, digits, '.', '_' and '-'"
    )]
    BadTag(String),
    #[error("share tag '{0}' is given twice; each share needs its own tag")]
    DuplicateTag(String),
    #[error("share {path}: {why}")]
    SharePath { path: PathBuf, why: String },
    #[error("ignition config {path}: {why}")]
    Ignition { path: PathBuf, why: String },
    #[error("api socket {path}: {why}")]
    ApiSocket { path: PathBuf, why: String },
}

/// One virtio-9p share: a host directory the guest mounts by its tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareConfig {
    pub path: PathBuf,
    pub tag: String,
    /// Every request that would change the share gets EROFS.
    #[serde(default)]
    pub readonly: bool,
}

impl FromStr for ShareConfig {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut kv = KeyValues::parse("share", s)?;
        let missing = |key: &str| ConfigError::Syntax {
            option: "share",
            input: s.to_owned(),
            why: format!("{key}= is required"),
        };
        let path = kv.take("path").ok_or_else(|| missing("path"))?;
        let tag = kv.take("tag").ok_or_else(|| missing("tag"))?;
        let readonly = kv.take_bool("readonly")?.unwrap_or(false);
        kv.finish(&["path", "tag", "readonly"])?;
        Ok(ShareConfig {
            path: PathBuf::from(path),
            tag,
            readonly,
        })
    }
}

/// Whether the VM gets a virtio-rng device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RngMode {
    #[default]
    On,
    Off,
}

impl FromStr for RngMode {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "on" => Ok(RngMode::On),
            "off" => Ok(RngMode::Off),
            _ => Err(ConfigError::Syntax {
                option: "rng",
                input: s.to_owned(),
                why: "expected on or off".to_owned(),
            }),
        }
    }
}

impl fmt::Display for RngMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RngMode::On => "on",
            RngMode::Off => "off",
        })
    }
}

fn valid_tag(tag: &str) -> bool {
    (1..=MAX_TAG_LEN).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Reads and checks an Ignition config: a readable file of JSON (an object), not too large.
pub fn read_ignition(path: &Path) -> Result<Vec<u8>, ShareConfigError> {
    let err = |why: String| ShareConfigError::Ignition {
        path: path.to_owned(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("is not a regular file".to_owned()));
    }
    if meta.len() > MAX_IGNITION_BYTES {
        return Err(err(format!(
            "is {} bytes; at most {MAX_IGNITION_BYTES} are accepted",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| err(format!("is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(err(
            "is JSON but not an object (an Ignition config is {\"ignition\": {...}, ...})"
                .to_owned(),
        ));
    }
    Ok(bytes)
}

/// The checks for these settings, run by [`VmConfig::validate`].
pub fn validate(config: &VmConfig) -> Result<(), ShareConfigError> {
    let mut tags = std::collections::HashSet::new();
    for s in &config.shares {
        if !valid_tag(&s.tag) {
            return Err(ShareConfigError::BadTag(s.tag.clone()));
        }
        if !tags.insert(s.tag.as_str()) {
            return Err(ShareConfigError::DuplicateTag(s.tag.clone()));
        }
        let why = match std::fs::metadata(&s.path) {
            Ok(m) if m.is_dir() => None,
            Ok(_) => Some("is not a directory".to_owned()),
            Err(e) => Some(format!("cannot be used: {e}")),
        };
        if let Some(why) = why {
            return Err(ShareConfigError::SharePath {
                path: s.path.clone(),
                why,
            });
        }
    }
    if let Some(ign) = &config.ignition {
        read_ignition(ign)?;
    }
    if let Some(sock) = &config.api_socket {
        let parent = sock
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(ShareConfigError::ApiSocket {
                path: sock.clone(),
                why: format!("directory {} does not exist", parent.display()),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_flag_forms() {
        let s: ShareConfig = "path=cfg,tag=config-2,readonly=on".parse().unwrap();
        assert_eq!(
            s,
            ShareConfig {
                path: "cfg".into(),
                tag: "config-2".into(),
                readonly: true
            }
        );
        let s: ShareConfig = "tag=data,path=\"a,b\"".parse().unwrap();
        assert_eq!((s.path.to_str(), s.readonly), (Some("a,b"), false));
        for bad in [
            "path=x",
            "tag=x",
            "path=x,tag=y,ro=on",
            "path=x,tag=y,readonly=2",
        ] {
            let e = bad.parse::<ShareConfig>().unwrap_err().to_string();
            assert!(e.starts_with("--share"), "{bad}: {e}");
        }
        assert_eq!("off".parse::<RngMode>().unwrap(), RngMode::Off);
        assert!("maybe".parse::<RngMode>().is_err());
    }

    #[test]
    fn validation_of_shares_ignition_and_socket() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("k");
        std::fs::write(&kernel, b"x").unwrap();
        let good = ShareConfig {
            path: dir.path().to_owned(),
            tag: "config-2".into(),
            readonly: true,
        };
        let base = VmConfig {
            kernel,
            shares: vec![good.clone()],
            ..VmConfig::default()
        };
        base.validate().unwrap();
        let check = |c: VmConfig| c.validate().unwrap_err().to_string();
        let e = check(VmConfig {
            shares: vec![good.clone(), good.clone()],
            ..base.clone()
        });
        assert!(e.contains("given twice"), "{e}");
        let e = check(VmConfig {
            shares: vec![ShareConfig {
                tag: "a b".into(),
                ..good.clone()
            }],
            ..base.clone()
        });
        assert!(e.contains("share tag 'a b'"), "{e}");
        let e = check(VmConfig {
            shares: vec![ShareConfig {
                path: dir.path().join("nope"),
                ..good.clone()
            }],
            ..base.clone()
        });
        assert!(e.contains("nope") && e.contains("cannot be used"), "{e}");
        let ign = dir.path().join("config.ign");
        std::fs::write(&ign, b"{\"ignition\": {\"version\": \"3.3.0\"}").unwrap();
        let e = check(VmConfig {
            ignition: Some(ign.clone()),
            ..base.clone()
        });
        assert!(e.contains("not valid JSON") && !e.contains('\n'), "{e}");
        std::fs::write(&ign, b"[1]").unwrap();
        let e = check(VmConfig {
            ignition: Some(ign.clone()),
            ..base.clone()
        });
        assert!(e.contains("not an object"), "{e}");
        std::fs::write(&ign, b"{\"ignition\": {\"version\": \"3.3.0\"}}").unwrap();
        VmConfig {
            ignition: Some(ign),
            ..base.clone()
        }
        .validate()
        .unwrap();
        let e = check(VmConfig {
            api_socket: Some(dir.path().join("no/such/dir/api.sock")),
            ..base
        });
        assert!(e.contains("does not exist"), "{e}");
    }
}
