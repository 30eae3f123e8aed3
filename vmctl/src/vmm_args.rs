//! The one place that knows the VMM's command line (docs/vmm.md; issues 4 and 5). When the VMM's
//! flags change, this file and its tests change, nothing else.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetArg {
    /// A TAP device vmctl created, with the node's MAC.
    Tap { tap: String, mac: String },
    /// The VMM's user networking (passt), forwarding a host port to the guest's ssh.
    User { ssh_port: u16, mac: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmmInvocation {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub cpus: u8,
    pub memory_mib: u64,
    /// The shared /usr squashfs: always read-only.
    pub usr_disk: Option<PathBuf>,
    pub root_disk: PathBuf,
    pub net: NetArg,
    pub config_drive: PathBuf,
    pub ignition: Option<PathBuf>,
    pub console_log: PathBuf,
    pub api_socket: PathBuf,
    pub boot_marker: Option<String>,
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("{0}: paths with double quotes cannot be passed to the VMM; rename it")]
    Quote(PathBuf),
    #[error("{0}: the path is not valid UTF-8, which the VMM's options cannot carry; rename it")]
    NotUtf8(PathBuf),
}

/// The serial numbers guests see (`/dev/disk/by-id/virtio-usr`, `virtio-root`).
pub const USR_SERIAL: &str = "usr";
pub const ROOT_SERIAL: &str = "root";
/// The config drive's 9p mount tag, which coreos-cloudinit looks for.
pub const CONFIG_TAG: &str = "config-2";

/// The flags vmctl uses, to check a VMM supports them all before starting anything.
pub const FLAGS_USED: &[&str] = &[
    "--kernel",
    "--initrd",
    "--cmdline",
    "--cpus",
    "--memory",
    "--disk",
    "--net",
    "--share",
    "--ignition",
    "--serial",
    "--api-socket",
    "--boot-marker",
    "--shutdown-timeout",
    "-v",
];

/// A value inside a `key=value,...` option: quoted when it holds a comma or `=`, as the VMM's
/// option parser allows (`path="a,b.img"`).
fn value(path: &Path) -> Result<String, ArgsError> {
    let s = path
        .to_str()
        .ok_or_else(|| ArgsError::NotUtf8(path.to_path_buf()))?;
    if s.contains('"') {
        return Err(ArgsError::Quote(path.to_path_buf()));
    }
    Ok(if s.contains(',') || s.contains('=') {
        format!("\"{s}\"")
    } else {
        s.to_string()
    })
}

impl VmmInvocation {
    pub fn args(&self) -> Result<Vec<OsString>, ArgsError> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |k: &str, v: String| {
            a.push(k.into());
            a.push(v.into());
        };
        push("--kernel", self.kernel.display().to_string());
        if let Some(i) = &self.initrd {
            push("--initrd", i.display().to_string());
        }
        push("--cmdline", self.cmdline.clone());
        push("--cpus", self.cpus.to_string());
        push("--memory", self.memory_mib.to_string());
        if let Some(usr) = &self.usr_disk {
            push(
                "--disk",
                format!("path={},readonly=on,serial={USR_SERIAL}", value(usr)?),
            );
        }
        push(
            "--disk",
            format!("path={},serial={ROOT_SERIAL}", value(&self.root_disk)?),
        );
        push(
            "--net",
            match &self.net {
                NetArg::Tap { tap, mac } => format!("tap={tap},mac={mac}"),
                NetArg::User { ssh_port, mac } => {
                    format!("user,mac={mac},hostfwd=tcp:127.0.0.1:{ssh_port}-:22")
                }
            },
        );
        push(
            "--share",
            format!(
                "path={},tag={CONFIG_TAG},readonly=on",
                value(&self.config_drive)?
            ),
        );
        if let Some(ign) = &self.ignition {
            push("--ignition", ign.display().to_string());
        }
        push("--serial", format!("file={}", value(&self.console_log)?));
        push("--api-socket", self.api_socket.display().to_string());
        if let Some(m) = &self.boot_marker {
            push("--boot-marker", m.clone());
        }
        push("--shutdown-timeout", self.shutdown_timeout_secs.to_string());
        // Info level: vmm.log then says why the VMM exited, a power-off included, which is how
        // `down` tells a guest that powered off from one that crashed.
        a.push("-v".into());
        // Keep file paths usable for the plain (non key=value) options too.
        for p in [
            Some(&self.kernel),
            self.initrd.as_ref(),
            self.ignition.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            if p.to_str().is_none() {
                return Err(ArgsError::NotUtf8(p.clone()));
            }
        }
        Ok(a)
    }
}

/// The flags in [`FLAGS_USED`] that a VMM's `--help` text does not list.
pub fn missing_flags(help: &str) -> Vec<&'static str> {
    FLAGS_USED
        .iter()
        .copied()
        .filter(|f| {
            !help
                .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[' || c == '<')
                .any(|w| w == *f)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv() -> VmmInvocation {
        VmmInvocation {
            kernel: "/s/blobs/sha256-k".into(),
            initrd: None,
            cmdline: "console=ttyS0 root=/dev/vdb".into(),
            cpus: 2,
            memory_mib: 2048,
            usr_disk: Some("/s/blobs/sha256-u".into()),
            root_disk: "/c/nodes/core-1/root.img".into(),
            net: NetArg::Tap {
                tap: "vmt-1234abcd".into(),
                mac: "52:00:00:00:00:01".into(),
            },
            config_drive: "/c/nodes/core-1/config-2".into(),
            ignition: None,
            console_log: "/c/nodes/core-1/console.log".into(),
            api_socket: "/c/nodes/core-1/api.sock".into(),
            boot_marker: None,
            shutdown_timeout_secs: 30,
        }
    }

    fn joined(i: &VmmInvocation) -> Vec<String> {
        i.args()
            .unwrap()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn tap_node() {
        assert_eq!(
            joined(&inv()),
            [
                "--kernel",
                "/s/blobs/sha256-k",
                "--cmdline",
                "console=ttyS0 root=/dev/vdb",
                "--cpus",
                "2",
                "--memory",
                "2048",
                "--disk",
                "path=/s/blobs/sha256-u,readonly=on,serial=usr",
                "--disk",
                "path=/c/nodes/core-1/root.img,serial=root",
                "--net",
                "tap=vmt-1234abcd,mac=52:00:00:00:00:01",
                "--share",
                "path=/c/nodes/core-1/config-2,tag=config-2,readonly=on",
                "--serial",
                "file=/c/nodes/core-1/console.log",
                "--api-socket",
                "/c/nodes/core-1/api.sock",
                "--shutdown-timeout",
                "30",
                "-v",
            ]
        );
    }

    #[test]
    fn user_net_initrd_ignition_and_quoting() {
        let mut i = inv();
        i.net = NetArg::User {
            ssh_port: 22201,
            mac: "52:00:00:00:00:02".into(),
        };
        i.initrd = Some("/s/blobs/sha256-r".into());
        i.ignition = Some("/c/nodes/core-1/config-2/config.ign".into());
        i.root_disk = "/odd,dir/root.img".into();
        i.boot_marker = Some("Run /init".into());
        let a = joined(&i);
        let after = |flag: &str| a[a.iter().position(|x| x == flag).unwrap() + 1].clone();
        assert_eq!(after("--initrd"), "/s/blobs/sha256-r");
        assert_eq!(
            after("--net"),
            "user,mac=52:00:00:00:00:02,hostfwd=tcp:127.0.0.1:22201-:22"
        );
        assert_eq!(after("--ignition"), "/c/nodes/core-1/config-2/config.ign");
        assert_eq!(after("--boot-marker"), "Run /init");
        assert!(a.contains(&"path=\"/odd,dir/root.img\",serial=root".to_string()));
        i.root_disk = "/we\"ird".into();
        assert_eq!(i.args().unwrap_err(), ArgsError::Quote("/we\"ird".into()));
    }

    #[test]
    fn finds_flags_a_help_text_lacks() {
        let help = "Options:\n      --kernel <PATH>\n      --initrd <PATH>\n      --cmdline <TEXT>\n      --cpus <N>\n      --memory <MiB>\n      --disk <path=PATH[,readonly=on][,serial=ID]>\n      --serial <MODE>\n      --boot-marker <TEXT>\n";
        assert_eq!(
            missing_flags(help),
            [
                "--net",
                "--share",
                "--ignition",
                "--api-socket",
                "--shutdown-timeout",
                "-v"
            ]
        );
    }
}
