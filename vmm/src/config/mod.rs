//! The VM configuration: a serde type that `--config vm.yaml` deserializes and that other tools
//! (vmctl) serialize, plus the command-line flags that override it.

pub mod cli;
pub mod keyvalue;
pub mod net;
pub mod share;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use crate::seccomp::SeccompMode;
use keyvalue::KeyValues;
pub use net::NetConfig;
pub use share::{DEFAULT_SHUTDOWN_TIMEOUT_SECS, RngMode, ShareConfig};

/// Most vCPUs a VM may have: APIC IDs are 8 bits, 0xff is broadcast and the IOAPIC takes one.
pub const MAX_CPUS: u8 = 254;
/// Smallest guest memory, in MiB: the boot structures, a kernel and its page tables.
pub const MIN_MEMORY_MIB: u64 = 32;
/// Largest guest memory, in MiB (1 TiB).
pub const MAX_MEMORY_MIB: u64 = 1 << 20;
/// Length of a virtio-blk serial (VIRTIO_BLK_ID_BYTES).
pub const DISK_SERIAL_MAX: usize = 20;
pub const DEFAULT_CMDLINE: &str = "console=ttyS0";

/// A configuration error; the binary exits with status 2 on these.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--{option} {input}: {why}")]
    Syntax {
        option: &'static str,
        input: String,
        why: String,
    },
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {why}")]
    Yaml { path: PathBuf, why: String },
    #[error("no kernel given: pass --kernel PATH or set 'kernel:' in the config file")]
    NoKernel,
    #[error("{what} {path} does not exist or cannot be read: {source}")]
    MissingFile {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path} is not a regular file")]
    NotAFile { what: &'static str, path: PathBuf },
    #[error("cpus must be between 1 and {MAX_CPUS}, got {0}")]
    Cpus(u8),
    #[error("memory must be between {MIN_MEMORY_MIB} and {MAX_MEMORY_MIB} MiB, got {0}")]
    Memory(u64),
    #[error("disk serial '{0}' is longer than {DISK_SERIAL_MAX} bytes or not printable ASCII")]
    DiskSerial(String),
    #[error("disk {0} is given twice")]
    DuplicateDisk(PathBuf),
    #[error("kernel command line is {0} bytes; at most {max} are accepted", max = crate::layout::CMDLINE_MAX_SIZE - 1)]
    CmdlineTooLong(usize),
    #[error("boot marker must not be empty")]
    EmptyBootMarker,
    #[error(transparent)]
    Share(#[from] share::ShareConfigError),
}

/// Everything needed to start a VM. Deserialized from YAML (all keys optional except `kernel`,
/// which may come from `--kernel` instead); serialized by tools that generate VM configs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VmConfig {
    /// bzImage or ELF vmlinux (PVH entry used when present).
    pub kernel: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub cpus: u8,
    /// Guest memory in MiB.
    pub memory: u64,
    pub disks: Vec<DiskConfig>,
    /// virtio-net NICs (`--net`), in PCI slot order after the disks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub net: Vec<NetConfig>,
    /// `stdio`, `off`, `{file: PATH}` or `{socket: PATH}`.
    #[serde(with = "yaml_serde::with::singleton_map")]
    pub serial: SerialConfig,
    /// Log the time until a serial output line contains this text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_marker: Option<String>,
    /// virtio-9p shares (issue 5).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<ShareConfig>,
    /// Ignition config handed to the guest through fw_cfg.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignition: Option<PathBuf>,
    /// virtio-rng: `on` (default) or `off`.
    pub rng: RngMode,
    /// Seconds a guest gets to power off after the power button before it is stopped hard.
    pub shutdown_timeout: u64,
    /// Unix socket for the JSON control API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_socket: Option<PathBuf>,
    /// Per-thread seccomp filters: `on` (default), `log` or `off`.
    pub seccomp: SeccompMode,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            kernel: PathBuf::new(),
            initrd: None,
            cmdline: DEFAULT_CMDLINE.to_owned(),
            cpus: 1,
            memory: 512,
            disks: Vec::new(),
            net: Vec::new(),
            serial: SerialConfig::Stdio,
            boot_marker: None,
            shares: Vec::new(),
            ignition: None,
            rng: RngMode::On,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT_SECS,
            api_socket: None,
            seccomp: SeccompMode::On,
        }
    }
}

/// One virtio-blk disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub readonly: bool,
    /// Reported by VIRTIO_BLK_T_GET_ID; guests make `/dev/disk/by-id/virtio-<serial>` of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

/// Where the 8250 UART's output goes and its input comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SerialConfig {
    /// Output to stdout, input from stdin (raw mode on a terminal).
    #[default]
    Stdio,
    /// Output appended to a file; no input.
    File(PathBuf),
    /// A unix socket the VMM listens on; one client at a time gets output and sends input.
    Socket(PathBuf),
    Off,
}

impl FromStr for DiskConfig {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const KEYS: &[&str] = &["path", "readonly", "serial"];
        let mut kv = KeyValues::parse("disk", s)?;
        let path = kv.take("path").ok_or_else(|| ConfigError::Syntax {
            option: "disk",
            input: s.to_owned(),
            why: "path=PATH is required".to_owned(),
        })?;
        let readonly = kv.take_bool("readonly")?.unwrap_or(false);
        let serial = kv.take("serial");
        kv.finish(KEYS)?;
        Ok(DiskConfig {
            path: PathBuf::from(path),
            readonly,
            serial,
        })
    }
}

impl FromStr for SerialConfig {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdio" => return Ok(SerialConfig::Stdio),
            "off" => return Ok(SerialConfig::Off),
            _ => {}
        }
        let syntax = |why: &str| ConfigError::Syntax {
            option: "serial",
            input: s.to_owned(),
            why: why.to_owned(),
        };
        match s.split_once('=') {
            Some(("file", p)) if !p.is_empty() => Ok(SerialConfig::File(PathBuf::from(p))),
            Some(("socket", p)) if !p.is_empty() => Ok(SerialConfig::Socket(PathBuf::from(p))),
            _ => Err(syntax("expected stdio, off, file=PATH or socket=PATH")),
        }
    }
}

impl fmt::Display for SerialConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SerialConfig::Stdio => write!(f, "stdio"),
            SerialConfig::Off => write!(f, "off"),
            SerialConfig::File(p) => write!(f, "file={}", p.display()),
            SerialConfig::Socket(p) => write!(f, "socket={}", p.display()),
        }
    }
}

impl VmConfig {
    /// Parses YAML text. Relative paths are resolved against `base_dir` (the file's directory).
    pub fn from_yaml(text: &str, origin: &Path, base_dir: &Path) -> Result<Self, ConfigError> {
        let mut config: VmConfig = yaml_serde::from_str(text).map_err(|e| ConfigError::Yaml {
            path: origin.to_owned(),
            why: e.to_string().replace('\n', " "),
        })?;
        config.resolve_paths(base_dir);
        Ok(config)
    }

    /// Reads and parses a YAML config file.
    pub fn from_yaml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::from_yaml(&text, path, base)
    }

    /// The YAML form of this config (what `--config` reads).
    pub fn to_yaml(&self) -> Result<String, ConfigError> {
        yaml_serde::to_string(self).map_err(|e| ConfigError::Yaml {
            path: PathBuf::from("<serialize>"),
            why: e.to_string(),
        })
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if !p.as_os_str().is_empty() && p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.kernel);
        if let Some(p) = self.initrd.as_mut() {
            resolve(p);
        }
        for d in &mut self.disks {
            resolve(&mut d.path);
        }
        match &mut self.serial {
            SerialConfig::File(p) | SerialConfig::Socket(p) => resolve(p),
            SerialConfig::Stdio | SerialConfig::Off => {}
        }
        for s in &mut self.shares {
            resolve(&mut s.path);
        }
        if let Some(p) = self.ignition.as_mut() {
            resolve(p);
        }
        if let Some(p) = self.api_socket.as_mut() {
            resolve(p);
        }
    }

    /// Checks everything that can be checked without KVM: ranges, and that input files exist.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.kernel.as_os_str().is_empty() {
            return Err(ConfigError::NoKernel);
        }
        check_readable_file("kernel", &self.kernel)?;
        if let Some(initrd) = &self.initrd {
            check_readable_file("initrd", initrd)?;
        }
        if self.cpus == 0 || self.cpus > MAX_CPUS {
            return Err(ConfigError::Cpus(self.cpus));
        }
        if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&self.memory) {
            return Err(ConfigError::Memory(self.memory));
        }
        if self.cmdline.len() >= crate::layout::CMDLINE_MAX_SIZE {
            return Err(ConfigError::CmdlineTooLong(self.cmdline.len()));
        }
        if self.boot_marker.as_deref() == Some("") {
            return Err(ConfigError::EmptyBootMarker);
        }
        let mut seen = std::collections::HashSet::new();
        for disk in &self.disks {
            check_readable_file("disk", &disk.path)?;
            let canonical = disk
                .path
                .canonicalize()
                .unwrap_or_else(|_| disk.path.clone());
            if !seen.insert(canonical) {
                return Err(ConfigError::DuplicateDisk(disk.path.clone()));
            }
            if let Some(serial) = &disk.serial {
                let printable = serial.bytes().all(|b| (0x20..0x7f).contains(&b));
                if serial.len() > DISK_SERIAL_MAX || !printable {
                    return Err(ConfigError::DiskSerial(serial.clone()));
                }
            }
        }
        net::validate(&self.net)?;
        share::validate(self)?;
        Ok(())
    }

    /// Guest memory in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory << 20
    }
}

fn check_readable_file(what: &'static str, path: &Path) -> Result<(), ConfigError> {
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::MissingFile {
        what,
        path: path.to_owned(),
        source,
    })?;
    if meta.is_dir() {
        return Err(ConfigError::NotAFile {
            what,
            path: path.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_flag_parses_like_cloud_hypervisor() {
        let d: DiskConfig = "path=usr.squashfs,readonly=on,serial=usr.readonly"
            .parse()
            .unwrap();
        assert_eq!(
            d,
            DiskConfig {
                path: PathBuf::from("usr.squashfs"),
                readonly: true,
                serial: Some("usr.readonly".to_owned()),
            }
        );
        let d: DiskConfig = "path=a.img".parse().unwrap();
        assert!(!d.readonly);
        assert!("readonly=on".parse::<DiskConfig>().is_err());
        assert!("path=a,ro=on".parse::<DiskConfig>().is_err());
    }

    #[test]
    fn serial_flag_forms() {
        assert_eq!(
            "stdio".parse::<SerialConfig>().unwrap(),
            SerialConfig::Stdio
        );
        assert_eq!("off".parse::<SerialConfig>().unwrap(), SerialConfig::Off);
        assert_eq!(
            "file=/tmp/x".parse::<SerialConfig>().unwrap(),
            SerialConfig::File("/tmp/x".into())
        );
        assert_eq!(
            "socket=s.sock".parse::<SerialConfig>().unwrap(),
            SerialConfig::Socket("s.sock".into())
        );
        assert!("file=".parse::<SerialConfig>().is_err());
        assert!("tty".parse::<SerialConfig>().is_err());
    }

    #[test]
    fn yaml_round_trip_and_relative_paths() {
        let yaml = "kernel: k/bzImage\ncpus: 2\nmemory: 1024\ndisks:\n  - path: usr.img\n    readonly: true\n    serial: usr\nserial:\n  file: serial.log\nboot_marker: Run /init\n";
        let c = VmConfig::from_yaml(yaml, Path::new("vm.yaml"), Path::new("/base")).unwrap();
        assert_eq!(c.kernel, PathBuf::from("/base/k/bzImage"));
        assert_eq!(c.cpus, 2);
        assert_eq!(c.memory, 1024);
        assert_eq!(c.disks[0].path, PathBuf::from("/base/usr.img"));
        assert!(c.disks[0].readonly);
        assert_eq!(c.serial, SerialConfig::File("/base/serial.log".into()));
        assert_eq!(c.cmdline, DEFAULT_CMDLINE);
        let again = VmConfig::from_yaml(&c.to_yaml().unwrap(), Path::new("x"), Path::new("/other"))
            .unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn yaml_rejects_unknown_keys_with_a_one_line_error() {
        let err = VmConfig::from_yaml("kernel: a\ncpu: 2\n", Path::new("vm.yaml"), Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cpu"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn validation_catches_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("k");
        std::fs::write(&kernel, b"x").unwrap();
        let base = VmConfig {
            kernel: kernel.clone(),
            ..VmConfig::default()
        };
        base.validate().unwrap();
        assert!(matches!(
            VmConfig::default().validate(),
            Err(ConfigError::NoKernel)
        ));
        let c = VmConfig {
            cpus: 0,
            ..base.clone()
        };
        assert!(matches!(c.validate(), Err(ConfigError::Cpus(0))));
        let c = VmConfig {
            memory: 8,
            ..base.clone()
        };
        assert!(matches!(c.validate(), Err(ConfigError::Memory(8))));
        let c = VmConfig {
            kernel: dir.path().join("missing"),
            ..base.clone()
        };
        assert!(matches!(c.validate(), Err(ConfigError::MissingFile { .. })));
        let disk = DiskConfig {
            path: kernel.clone(),
            readonly: false,
            serial: Some("x".repeat(21)),
        };
        let c = VmConfig {
            disks: vec![disk.clone()],
            ..base.clone()
        };
        assert!(matches!(c.validate(), Err(ConfigError::DiskSerial(_))));
        let ok = DiskConfig {
            serial: None,
            ..disk
        };
        let c = VmConfig {
            disks: vec![ok.clone(), ok],
            ..base
        };
        assert!(matches!(c.validate(), Err(ConfigError::DuplicateDisk(_))));
    }
}
