//! Finding the `vmm` binary and checking it has every flag vmctl passes.

use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

use crate::vmm_args;

#[derive(Debug, Error)]
pub enum VmmError {
    #[error(
        "the VMM binary was not found: looked for $VMCTL_VMM, vmm next to {beside}, and vmm on PATH; build it with cargo build -p vmm or set VMCTL_VMM"
    )]
    NotFound { beside: String },
    #[error("VMCTL_VMM={0} is not an executable file")]
    BadEnv(PathBuf),
    #[error("cannot run {path} --help: {err}")]
    Run { path: PathBuf, err: std::io::Error },
    #[error(
        "the VMM at {path} lacks {missing}, which vmctl passes: use the vmm built from the same checkout (cargo build --release -p vmm), or set VMCTL_VMM; nothing was started"
    )]
    Unsupported { path: PathBuf, missing: String },
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `$VMCTL_VMM` when set (an explicit choice wins), else `vmm` beside this executable, else PATH.
pub fn locate() -> Result<PathBuf, VmmError> {
    if let Some(p) = std::env::var_os("VMCTL_VMM").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        return if is_executable(&p) {
            Ok(p)
        } else {
            Err(VmmError::BadEnv(p))
        };
    }
    let exe = std::env::current_exe().ok();
    let beside = exe.as_deref().and_then(Path::parent).map(|d| d.join("vmm"));
    if let Some(b) = beside.as_ref().filter(|b| is_executable(b)) {
        return Ok(b.clone());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("vmm"))
        .find(|p| is_executable(p))
        .ok_or_else(|| VmmError::NotFound {
            beside: beside
                .and_then(|b| b.parent().map(|d| d.display().to_string()))
                .unwrap_or_else(|| "vmctl".into()),
        })
}

/// Runs `vmm --help` and fails, naming them, if flags vmctl needs are missing.
pub fn check(path: &Path) -> Result<(), VmmError> {
    let out = Command::new(path)
        .arg("--help")
        .output()
        .map_err(|err| VmmError::Run {
            path: path.to_path_buf(),
            err,
        })?;
    let help = String::from_utf8_lossy(&out.stdout);
    let missing = vmm_args::missing_flags(&help);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(VmmError::Unsupported {
            path: path.to_path_buf(),
            missing: missing.join(", "),
        })
    }
}
