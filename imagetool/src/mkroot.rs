//! `mkroot`: a sparse ext4 image to be a VM's root filesystem, made by e2fsprogs' mkfs.ext4.

use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

use crate::atomic::{AtomicFile, Overwrite};
use crate::ext4::{self, Ext4Superblock};

/// Smaller than this is no use as a root filesystem (and too small for an ext4 journal).
pub const MIN_SIZE: u64 = 32 << 20;
/// `mkfs.ext4 -d` (seeding from a directory) arrived in e2fsprogs 1.43.
const MIN_VERSION_FOR_FROM: (u32, u32) = (1, 43);
const INSTALL_HINT: &str =
    "install e2fsprogs (Debian/Ubuntu: apt install e2fsprogs; Fedora: dnf install e2fsprogs)";

#[derive(Clone, Debug)]
pub struct MkrootOptions {
    pub size: u64,
    pub label: String,
    pub from: Option<PathBuf>,
    pub uuid: Option<uuid::Uuid>,
    pub overwrite: Overwrite,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct MkrootReport {
    pub output: PathBuf,
    pub apparent_bytes: u64,
    pub allocated_bytes: u64,
    /// Whether the no-copy-on-write attribute was set (only filesystems like btrfs have it).
    pub nocow: bool,
    pub superblock: Ext4Superblock,
    pub e2fsprogs: String,
}

#[derive(Debug, Error)]
pub enum MkrootError {
    #[error("mkfs.ext4 not found: {INSTALL_HINT}")]
    MissingMkfs,
    #[error("e2fsprogs {found} is too old for --from (needs 1.43 or newer): {INSTALL_HINT}")]
    TooOld { found: String },
    #[error("--size {0} bytes is too small for a root filesystem: use at least 32M")]
    TooSmall(u64),
    #[error("label {0:?} is longer than ext4's 16 bytes")]
    LabelTooLong(String),
    #[error("--from {0}: not a directory")]
    FromNotDir(PathBuf),
    #[error("{0} already exists: pass --force to replace it")]
    Exists(PathBuf),
    #[error("cannot create {path}: {err}")]
    Create { path: PathBuf, err: std::io::Error },
    #[error("mkfs.ext4 failed: {0}")]
    Mkfs(String),
}

/// Finds mkfs.ext4: `$IMAGETOOL_MKFS_EXT4` if set (a newer e2fsprogs built elsewhere), else
/// PATH, else the sbin directories users often lack on PATH.
pub fn find_mkfs() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("IMAGETOOL_MKFS_EXT4") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(PathBuf::from))
        .map(|d| d.join("mkfs.ext4"))
        .find(|p| p.is_file())
}

/// The e2fsprogs version mkfs.ext4 reports (`1.47.0`).
pub fn e2fsprogs_version(mkfs: &Path) -> Result<String, MkrootError> {
    let out = Command::new(mkfs)
        .arg("-V")
        .output()
        .map_err(|_| MkrootError::MissingMkfs)?;
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(str::to_string)
        .ok_or_else(|| MkrootError::Mkfs(format!("cannot tell its version from {:?}", text.trim())))
}

fn version_at_least(v: &str, min: (u32, u32)) -> bool {
    let mut parts = v.split('.').map(|p| {
        p.trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse::<u32>()
            .unwrap_or(0)
    });
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= min
}

/// Sets FS_NOCOW_FL while the file is still empty (it only takes effect then). Filesystems
/// without copy-on-write refuse the flag, which is fine: they do not fragment images anyway.
fn set_nocow(file: &std::fs::File) -> bool {
    use rustix::fs::{IFlags, ioctl_getflags, ioctl_setflags};
    match ioctl_getflags(file) {
        Ok(flags) => ioctl_setflags(file, flags | IFlags::NOCOW).is_ok(),
        Err(_) => false,
    }
}

pub fn mkroot(output: &Path, opts: &MkrootOptions) -> Result<MkrootReport, MkrootError> {
    if opts.size < MIN_SIZE {
        return Err(MkrootError::TooSmall(opts.size));
    }
    if opts.label.len() > 16 {
        return Err(MkrootError::LabelTooLong(opts.label.clone()));
    }
    if let Some(dir) = &opts.from
        && !dir.is_dir()
    {
        return Err(MkrootError::FromNotDir(dir.clone()));
    }
    let mkfs = find_mkfs().ok_or(MkrootError::MissingMkfs)?;
    let version = e2fsprogs_version(&mkfs)?;
    if opts.from.is_some() && !version_at_least(&version, MIN_VERSION_FOR_FROM) {
        return Err(MkrootError::TooOld { found: version });
    }
    let create_err = |err| MkrootError::Create {
        path: output.to_path_buf(),
        err,
    };
    let mut out = AtomicFile::create(output, opts.overwrite).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            MkrootError::Exists(output.to_path_buf())
        } else {
            create_err(e)
        }
    })?;
    let nocow = set_nocow(out.file());
    out.file().set_len(opts.size).map_err(create_err)?;

    let mut cmd = Command::new(&mkfs);
    // The file is all holes, so the journal needs no zeroing either (mke2fs already skips the
    // inode tables of a regular file, whose discard reads back as zeros).
    cmd.args([
        "-F",
        "-q",
        "-t",
        "ext4",
        "-E",
        "lazy_journal_init=1",
        "-L",
        &opts.label,
    ]);
    if let Some(u) = opts.uuid {
        cmd.args(["-U", &u.to_string()]);
    }
    if let Some(dir) = &opts.from {
        cmd.arg("-d").arg(dir);
    }
    cmd.arg(out.temp_path());
    tracing::debug!(?cmd, "running mkfs.ext4");
    let result = cmd.output().map_err(|e| MkrootError::Mkfs(e.to_string()))?;
    if !result.status.success() {
        let stderr = String::from_utf8_lossy(&result.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message")
            .trim()
            .to_string();
        return Err(MkrootError::Mkfs(last));
    }
    let superblock = ext4::read(out.temp_path())
        .map_err(create_err)?
        .ok_or_else(|| MkrootError::Mkfs("it left no ext4 superblock behind".into()))?;
    out.commit().map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            MkrootError::Exists(output.to_path_buf())
        } else {
            create_err(e)
        }
    })?;
    let meta = std::fs::metadata(output).map_err(create_err)?;
    use std::os::unix::fs::MetadataExt;
    Ok(MkrootReport {
        output: output.to_path_buf(),
        apparent_bytes: meta.len(),
        allocated_bytes: meta.blocks() * 512,
        nocow,
        superblock,
        e2fsprogs: version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_versions() {
        assert!(version_at_least("1.47.0", (1, 43)));
        assert!(version_at_least("1.43", (1, 43)));
        assert!(!version_at_least("1.42.9", (1, 43)));
        assert!(version_at_least("2.0-WIP", (1, 43)));
    }
}
