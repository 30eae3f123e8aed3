//! Command-line flags. They take the same settings as the YAML file and override it.

use std::path::PathBuf;

use clap::Parser;

use super::{
    ConfigError, DiskConfig, NetConfig, RngMode, SeccompMode, SerialConfig, ShareConfig, VmConfig,
};

#[derive(Debug, Parser)]
#[command(
    name = "vmm",
    version,
    about = "Boot a Linux kernel (or a PVH ELF) directly in a KVM virtual machine",
    after_help = "Exit status: 0 guest power-off, 1 VMM error, 2 bad configuration, 3 guest reboot, \
                  4 guest crash, 5 stopped from the host (escape key, API power-off, second SIGTERM), \
                  6 shutdown timeout, 32+V debug exit V. Console escape: Ctrl-A x. See docs/vmm.md."
)]
pub struct Cli {
    /// YAML file with the same settings; flags given here override it.
    #[arg(long, value_name = "vm.yaml")]
    pub config: Option<PathBuf>,
    /// Kernel: bzImage or ELF vmlinux (PVH entry used when present).
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line [default: console=ttyS0].
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub cmdline: Option<String>,
    /// Number of vCPUs [default: 1].
    #[arg(long, value_name = "N")]
    pub cpus: Option<u8>,
    /// Guest memory in MiB [default: 512].
    #[arg(long, value_name = "MiB")]
    pub memory: Option<u64>,
    /// A virtio-blk disk; repeat for several. Replaces the config file's disk list.
    #[arg(long = "disk", value_name = "path=PATH[,readonly=on][,serial=ID]")]
    pub disks: Vec<DiskConfig>,
    /// A virtio-net NIC; repeat for several. Replaces the config file's net list.
    #[arg(
        long = "net",
        value_name = "tap=NAME[,mac=MAC] | user[,hostfwd=tcp:[ADDR]:PORT-:PORT]...[,mac=MAC]"
    )]
    pub net: Vec<NetConfig>,
    /// Serial console: stdio, file=PATH, socket=PATH or off [default: stdio].
    #[arg(long, value_name = "MODE")]
    pub serial: Option<SerialConfig>,
    /// Log the time until a serial line contains TEXT (and the first debug-port write).
    #[arg(long, value_name = "TEXT")]
    pub boot_marker: Option<String>,
    /// A host directory shared over virtio-9p; repeat for several. Replaces the file's list.
    #[arg(long = "share", value_name = "path=DIR,tag=TAG[,readonly=on]")]
    pub shares: Vec<ShareConfig>,
    /// Ignition config (JSON) for the guest, as the QEMU fw_cfg files
    /// opt/org.flatcar-linux/config and opt/com.coreos/config.
    #[arg(long, value_name = "config.ign")]
    pub ignition: Option<PathBuf>,
    /// Entropy device (virtio-rng fed by the host's getrandom) [default: on].
    #[arg(long, value_name = "on|off")]
    pub rng: Option<RngMode>,
    /// Seconds the guest gets to power off after SIGTERM, SIGINT or the API's shutdown
    /// before it is stopped hard (exit status 6) [default: 30].
    #[arg(long, value_name = "SECONDS")]
    pub shutdown_timeout: Option<u64>,
    /// Unix socket for the JSON control API (status, shutdown, power-off, console).
    #[arg(long, value_name = "PATH")]
    pub api_socket: Option<PathBuf>,
    /// Per-thread seccomp filters: on (a forbidden system call kills the VMM with SIGSYS),
    /// log (allowed, and logged by the kernel: see dmesg) or off [default: on].
    #[arg(long, value_name = "on|log|off")]
    pub seccomp: Option<SeccompMode>,
    /// More log output (-v info, -vv debug, -vvv trace); quiet by default.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Cli {
    /// Merges the flags over the config file (if any) and validates the result.
    pub fn into_config(self) -> Result<VmConfig, ConfigError> {
        let mut config = match &self.config {
            Some(path) => VmConfig::from_yaml_file(path)?,
            None => VmConfig::default(),
        };
        if let Some(k) = self.kernel {
            config.kernel = k;
        }
        if let Some(i) = self.initrd {
            config.initrd = Some(i);
        }
        if let Some(c) = self.cmdline {
            config.cmdline = c;
        }
        if let Some(c) = self.cpus {
            config.cpus = c;
        }
        if let Some(m) = self.memory {
            config.memory = m;
        }
        if !self.disks.is_empty() {
            config.disks = self.disks;
        }
        if !self.net.is_empty() {
            config.net = self.net;
        }
        if let Some(s) = self.serial {
            config.serial = s;
        }
        if let Some(b) = self.boot_marker {
            config.boot_marker = Some(b);
        }
        if !self.shares.is_empty() {
            config.shares = self.shares;
        }
        if let Some(i) = self.ignition {
            config.ignition = Some(i);
        }
        if let Some(r) = self.rng {
            config.rng = r;
        }
        if let Some(t) = self.shutdown_timeout {
            config.shutdown_timeout = t;
        }
        if let Some(a) = self.api_socket {
            config.api_socket = Some(a);
        }
        if let Some(s) = self.seccomp {
            config.seccomp = s;
        }
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("bzImage");
        std::fs::write(&kernel, b"x").unwrap();
        let disk = dir.path().join("a.img");
        std::fs::write(&disk, b"").unwrap();
        let yaml = dir.path().join("vm.yaml");
        std::fs::write(
            &yaml,
            "kernel: bzImage\ncpus: 4\nmemory: 256\ndisks:\n  - path: a.img\nserial: off\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "vmm",
            "--config",
            yaml.to_str().unwrap(),
            "--cpus",
            "2",
            "--cmdline",
            "console=ttyS0 quiet",
        ])
        .unwrap();
        let c = cli.into_config().unwrap();
        assert_eq!(c.kernel, kernel);
        assert_eq!(c.cpus, 2);
        assert_eq!(c.memory, 256);
        assert_eq!(c.cmdline, "console=ttyS0 quiet");
        assert_eq!(c.serial, SerialConfig::Off);
        assert_eq!(c.disks.len(), 1);
        assert_eq!(c.disks[0].path, disk);
    }

    #[test]
    fn net_flags_replace_the_files_nics() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("k");
        std::fs::write(&kernel, b"x").unwrap();
        let yaml = dir.path().join("vm.yaml");
        std::fs::write(&yaml, "kernel: k\nnet:\n  - tap: fromfile0\n").unwrap();
        let c = Cli::try_parse_from(["vmm", "--config", yaml.to_str().unwrap()])
            .unwrap()
            .into_config()
            .unwrap();
        assert_eq!(c.net.len(), 1);
        let c = Cli::try_parse_from([
            "vmm",
            "--config",
            yaml.to_str().unwrap(),
            "--net",
            "tap=a0",
            "--net",
            "user,hostfwd=tcp::2222-:22",
        ])
        .unwrap()
        .into_config()
        .unwrap();
        let nets: Vec<String> = c.net.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["tap=a0", "user,hostfwd=tcp::2222-:22"]);
    }

    #[test]
    fn bad_disk_flag_is_a_usage_error() {
        let err =
            Cli::try_parse_from(["vmm", "--kernel", "k", "--disk", "readonly=on"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
