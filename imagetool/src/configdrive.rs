//! `config-drive`: the OpenStack config-drive tree coreos-cloudinit reads from the `config-2`
//! share (`openstack/latest/user_data`, `openstack/latest/meta_data.json`), plus an Ignition
//! config kept beside it for the VMM to hand over through fw_cfg.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::atomic::{AtomicFile, AtomicTree, Overwrite};

/// Where the Ignition config goes, relative to the drive's directory.
pub const IGNITION_FILE: &str = "config.ign";
const TREE: &str = "openstack";

#[derive(Clone, Debug, Default)]
pub struct ConfigDriveSpec {
    pub hostname: String,
    /// OpenSSH public keys (`ssh-ed25519 AAAA... comment`), one per entry.
    pub ssh_keys: Vec<String>,
    pub user_data: Option<Vec<u8>>,
    pub uuid: Option<uuid::Uuid>,
    pub ignition: Option<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UserDataKind {
    CloudConfig,
    Script,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ConfigDriveReport {
    pub dir: PathBuf,
    pub uuid: String,
    pub key_names: Vec<String>,
    pub user_data: Option<UserDataKind>,
    pub ignition: Option<PathBuf>,
    /// Ignition keys that were not recognised (kept, but probably typos).
    pub ignition_warnings: Vec<String>,
}

#[derive(Debug, Error)]
pub enum ConfigDriveError {
    #[error(
        "invalid hostname {0:?}: use letters, digits and hyphens, dot-separated labels of 1-63 characters"
    )]
    Hostname(String),
    #[error("ssh key {index} ({shown}): {reason}")]
    SshKey {
        index: usize,
        shown: String,
        reason: String,
    },
    #[error("user data: {0}")]
    UserData(String),
    #[error("Ignition config: {0}")]
    Ignition(String),
    #[error("{0} is a symlink or not a directory; refusing to write outside the config drive")]
    Escape(PathBuf),
    #[error("cannot write {path}: {err}")]
    Write { path: PathBuf, err: std::io::Error },
}

/// RFC 1123 host names, as a DHCP server and coreos-cloudinit accept them.
pub fn validate_hostname(name: &str) -> Result<(), ConfigDriveError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(ConfigDriveError::Hostname(name.to_string()))
    }
}

/// Parses each key with the ssh-key crate and names it by its comment, as `public_keys` needs
/// a map. Returns (name, key line) pairs.
pub fn parse_ssh_keys(keys: &[String]) -> Result<Vec<(String, String)>, ConfigDriveError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, text) in keys.iter().enumerate() {
        let line = text.trim();
        let key = ssh_key::PublicKey::from_openssh(line).map_err(|e| ConfigDriveError::SshKey {
            index: i + 1,
            shown: line.chars().take(24).collect::<String>()
                + if line.chars().count() > 24 { "..." } else { "" },
            reason: format!("not an OpenSSH public key ({e}); give the .pub file"),
        })?;
        let base: String = key
            .comment()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "@._-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let base = if base.is_empty() {
            format!("key-{}", i + 1)
        } else {
            base
        };
        let mut name = base.clone();
        let mut n = 2;
        while out.iter().any(|(k, _)| *k == name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        out.push((name, line.to_string()));
    }
    Ok(out)
}

/// Splits an authorized_keys-style file into key lines, skipping blanks and comments.
pub fn key_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// coreos-cloudinit runs `#!` scripts and applies `#cloud-config` YAML; anything else it ignores.
pub fn validate_user_data(data: &[u8]) -> Result<UserDataKind, ConfigDriveError> {
    let text = std::str::from_utf8(data)
        .map_err(|_| ConfigDriveError::UserData("not UTF-8 text".into()))?;
    if text.starts_with("#!") {
        return Ok(UserDataKind::Script);
    }
    if text.starts_with("#cloud-config") {
        let value: yaml_serde::Value = yaml_serde::from_str(text).map_err(|e| {
            ConfigDriveError::UserData(format!("#cloud-config is not valid YAML: {e}"))
        })?;
        if !(value.is_mapping() || value.is_null()) {
            return Err(ConfigDriveError::UserData(
                "#cloud-config must be a YAML mapping (key: value)".into(),
            ));
        }
        return Ok(UserDataKind::CloudConfig);
    }
    let hint = if text.trim_start().starts_with('{') && text.contains("\"ignition\"") {
        "; this looks like an Ignition config: pass it with --ignition"
    } else {
        ""
    };
    Err(ConfigDriveError::UserData(format!(
        "must start with #cloud-config or #! (a script){hint}"
    )))
}

/// Checks an Ignition config the way Ignition would reject it: JSON, an object, a version it
/// knows. Unknown top-level keys come back as warnings.
pub fn validate_ignition(data: &[u8]) -> Result<Vec<String>, ConfigDriveError> {
    let err = |m: String| ConfigDriveError::Ignition(m);
    let value: serde_json::Value = serde_json::from_slice(data).map_err(|e| {
        let text = String::from_utf8_lossy(data);
        if text.trim_start().starts_with("variant:") {
            err("this is a Butane config: turn it into Ignition JSON with `butane` first".into())
        } else {
            err(format!("not valid JSON: {e}"))
        }
    })?;
    let obj = value
        .as_object()
        .ok_or_else(|| err("must be a JSON object".into()))?;
    let version = obj
        .get("ignition")
        .and_then(|i| i.get("version"))
        .and_then(|v| v.as_str())
        .ok_or_else(|| err("missing ignition.version".into()))?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>());
    let (major, minor) = match (parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b))) => (a, b),
        _ => {
            return Err(err(format!(
                "ignition.version {version:?} is not a version number like 3.4.0"
            )));
        }
    };
    let known: &[&str] = match (major, minor) {
        (2, 0..=3) => &["ignition", "storage", "systemd", "networkd", "passwd"],
        (3, 0..=5) => &[
            "ignition",
            "storage",
            "systemd",
            "passwd",
            "kernelArguments",
        ],
        _ => {
            return Err(err(format!(
                "ignition.version {version} is not one Flatcar or Fedora CoreOS reads (2.0-2.3, 3.0-3.5)"
            )));
        }
    };
    for section in [
        "storage",
        "systemd",
        "passwd",
        "networkd",
        "kernelArguments",
    ] {
        if obj.get(section).is_some_and(|v| !v.is_object()) {
            return Err(err(format!("{section} must be a JSON object")));
        }
    }
    Ok(obj
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| format!("unknown top-level key {k:?}"))
        .collect())
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), ConfigDriveError> {
    let write_err = |err| ConfigDriveError::Write {
        path: path.to_path_buf(),
        err,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(write_err)?;
    f.write_all(data).map_err(write_err)
}

/// Refuses a path inside the drive that is a symlink or a non-directory where a directory goes.
fn ensure_not_symlink(path: &Path, want_dir: bool) -> Result<(), ConfigDriveError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() || (want_dir && !m.is_dir()) => {
            Err(ConfigDriveError::Escape(path.to_path_buf()))
        }
        _ => Ok(()),
    }
}

/// Writes the tree under `dir`, replacing an earlier one in a single rename.
pub fn write(dir: &Path, spec: &ConfigDriveSpec) -> Result<ConfigDriveReport, ConfigDriveError> {
    validate_hostname(&spec.hostname)?;
    let keys = parse_ssh_keys(&spec.ssh_keys)?;
    let user_data = spec
        .user_data
        .as_deref()
        .map(validate_user_data)
        .transpose()?;
    let ignition_warnings = spec
        .ignition
        .as_deref()
        .map(validate_ignition)
        .transpose()?
        .unwrap_or_default();

    let dir_err = |err| ConfigDriveError::Write {
        path: dir.to_path_buf(),
        err,
    };
    fs::create_dir_all(dir).map_err(dir_err)?;
    let tree_path = dir.join(TREE);
    let ign_path = dir.join(IGNITION_FILE);
    ensure_not_symlink(&tree_path, true)?;
    ensure_not_symlink(&ign_path, false)?;

    let uuid = spec.uuid.unwrap_or_else(uuid::Uuid::new_v4).to_string();
    let meta = serde_json::json!({
        "uuid": uuid,
        "hostname": spec.hostname,
        "name": spec.hostname,
        "public_keys": keys.iter().cloned().collect::<BTreeMap<_, _>>(),
    });
    let meta_text =
        serde_json::to_vec_pretty(&meta).map_err(|e| dir_err(std::io::Error::other(e)))?;

    let tree = AtomicTree::create(&tree_path).map_err(dir_err)?;
    let latest = tree.path().join("latest");
    fs::create_dir(&latest).map_err(dir_err)?;
    write_file(&latest.join("meta_data.json"), &meta_text, 0o644)?;
    if let Some(data) = &spec.user_data {
        // User data may carry secrets (passwords, tokens): readable by its owner only.
        write_file(&latest.join("user_data"), data, 0o600)?;
    }

    let ignition = match &spec.ignition {
        Some(data) => {
            let ign_err = |err| ConfigDriveError::Write {
                path: ign_path.clone(),
                err,
            };
            let mut f = AtomicFile::create(&ign_path, Overwrite::Allow).map_err(ign_err)?;
            use std::os::unix::fs::PermissionsExt;
            f.file()
                .set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(ign_err)?;
            f.file().write_all(data).map_err(ign_err)?;
            tree.commit().map_err(dir_err)?;
            f.commit().map_err(ign_err)?;
            Some(ign_path)
        }
        None => {
            tree.commit().map_err(dir_err)?;
            // A config from an earlier run would still be handed to the guest: the tree must say
            // exactly what this run was told.
            match fs::remove_file(&ign_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(ConfigDriveError::Write {
                        path: ign_path,
                        err: e,
                    });
                }
                _ => None,
            }
        }
    };
    Ok(ConfigDriveReport {
        dir: dir.to_path_buf(),
        uuid,
        key_names: keys.into_iter().map(|(n, _)| n).collect(),
        user_data,
        ignition,
        ignition_warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        for ok in ["core-1", "a", "etcd.cluster.local", "n0"] {
            assert!(validate_hostname(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            "under_score",
            "sp ace",
            &"x".repeat(64),
        ] {
            assert!(validate_hostname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_data_kinds() {
        assert_eq!(
            validate_user_data(b"#!/bin/sh\necho hi\n").unwrap(),
            UserDataKind::Script
        );
        assert_eq!(
            validate_user_data(b"#cloud-config\nhostname: x\n").unwrap(),
            UserDataKind::CloudConfig
        );
        assert!(validate_user_data(b"#cloud-config\nfoo: [unclosed\n").is_err());
        assert!(validate_user_data(b"#cloud-config\n- a list\n").is_err());
        let e = validate_user_data(br#"{"ignition": {"version": "3.4.0"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--ignition"), "{e}");
    }

    #[test]
    fn ignition_versions() {
        assert!(
            validate_ignition(br#"{"ignition": {"version": "3.4.0"}}"#)
                .unwrap()
                .is_empty()
        );
        assert!(
            validate_ignition(br#"{"ignition": {"version": "2.3.0"}, "networkd": {}}"#)
                .unwrap()
                .is_empty()
        );
        let w = validate_ignition(br#"{"ignition": {"version": "3.0.0"}, "sytemd": {}}"#).unwrap();
        assert_eq!(w.len(), 1);
        assert!(validate_ignition(br#"{"ignition": {"version": "9.0.0"}}"#).is_err());
        assert!(validate_ignition(br#"{"ignition": {}}"#).is_err());
        assert!(
            validate_ignition(br#"{"ignition": {"version": "3.4.0"}, "storage": []}"#).is_err()
        );
        assert!(
            validate_ignition(b"variant: flatcar\nversion: 1.0.0\n")
                .unwrap_err()
                .to_string()
                .contains("butane")
        );
    }
}
