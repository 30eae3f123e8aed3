//! The cluster file as written: every field, with the checks that need only the field itself done
//! while parsing, so a bad value is reported at its own line and column.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// Smaller root disks cannot hold an ext4 journal (the same floor as `imagetool mkroot`).
pub const MIN_ROOT_SIZE: u64 = imagetool::mkroot::MIN_SIZE;
/// Nodes per `count`: beyond this the file is almost certainly a typo.
pub const MAX_COUNT: u32 = 254;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    pub name: Name,
    pub image: ImageSpec,
    #[serde(default)]
    pub network: NetworkSpec,
    #[serde(default)]
    pub defaults: NodeSettings,
    pub nodes: Vec<NodeSpec>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// The kernel (Flatcar's PXE `vmlinuz`, or any bzImage).
    pub kernel: String,
    /// The PXE initramfs holding `usr.squashfs`; optional for kernels with /usr elsewhere.
    pub initrd: Option<String>,
    /// Appended to the command line vmctl builds.
    #[serde(default)]
    pub cmdline: String,
    /// Text of a console line that shows this image has booted, for images without sshd: `up`
    /// and `vmctl run` wait for it instead of ssh (or the kernel and lease on PVM hosts).
    pub boot_marker: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// A bridge, one TAP per node and a dnsmasq: needs root (CAP_NET_ADMIN).
    #[default]
    Bridge,
    /// Rootless: the VMM's user networking (passt) with an ssh port forward per node.
    User,
}

impl fmt::Display for NetMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetMode::Bridge => "bridge",
            NetMode::User => "user",
        })
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    #[serde(default)]
    pub mode: NetMode,
    pub bridge: Option<IfName>,
    pub subnet: Option<SubnetField>,
    pub mtu: Option<Mtu>,
}

/// Settings a node may take from `defaults` or set itself.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    pub cpus: Option<Cpus>,
    pub memory: Option<MemoryMib>,
    pub root_size: Option<RootSize>,
    pub ssh_keys: Option<Vec<String>>,
    pub user_data: Option<String>,
    pub ignition: Option<String>,
    /// Appended after the image's cmdline.
    pub cmdline: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: Name,
    /// With a count, the nodes are NAME-1 ... NAME-N.
    pub count: Option<Count>,
    pub cpus: Option<Cpus>,
    pub memory: Option<MemoryMib>,
    pub root_size: Option<RootSize>,
    pub ssh_keys: Option<Vec<String>>,
    pub user_data: Option<String>,
    pub ignition: Option<String>,
    pub cmdline: Option<String>,
}

impl NodeSpec {
    /// The node's own settings (serde's `flatten` would lose line numbers and `deny_unknown_fields`).
    pub fn settings(&self) -> NodeSettings {
        NodeSettings {
            cpus: self.cpus,
            memory: self.memory,
            root_size: self.root_size,
            ssh_keys: self.ssh_keys.clone(),
            user_data: self.user_data.clone(),
            ignition: self.ignition.clone(),
            cmdline: self.cmdline.clone(),
        }
    }
}

/// A scalar as the file wrote it. Checks run inside the YAML deserializer's visitor, which is
/// what makes a bad value's error carry that value's own line and column.
enum Raw<'a> {
    Number(u64),
    Text(&'a str),
}

struct Check<F> {
    expecting: &'static str,
    f: F,
}

impl<'de, T, F: FnOnce(Raw<'_>) -> Result<T, String>> Visitor<'de> for Check<F> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.f)(Raw::Text(v)).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        (self.f)(Raw::Number(v)).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        match u64::try_from(v) {
            Ok(n) => self.visit_u64(n),
            Err(_) => Err(E::custom(format!("{v} is negative; {}", self.expecting))),
        }
    }
}

fn check<'de, D, T>(
    d: D,
    expecting: &'static str,
    f: impl FnOnce(Raw<'_>) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    d.deserialize_any(Check { expecting, f })
}

fn text(raw: Raw<'_>) -> String {
    match raw {
        Raw::Number(n) => n.to_string(),
        Raw::Text(t) => t.to_string(),
    }
}

fn number(raw: Raw<'_>, what: &str) -> Result<u64, String> {
    match raw {
        Raw::Number(n) => Ok(n),
        Raw::Text(t) => Err(format!("{what} must be a number, not {t:?}")),
    }
}

/// A lowercase RFC 1123 label: what a host name, a DNS name and a systemd instance all accept.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Name(pub String);

pub fn check_name(s: &str) -> Result<(), String> {
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if s.is_empty() || s.len() > 63 || !ok_chars || s.starts_with('-') || s.ends_with('-') {
        return Err(format!(
            "{s:?} is not a valid name: use 1-63 lowercase letters, digits and hyphens, not starting or ending with a hyphen"
        ));
    }
    Ok(())
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check(d, "a name (lowercase letters, digits, hyphens)", |raw| {
            let s = text(raw);
            check_name(&s)?;
            Ok(Name(s))
        })
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A network interface name as the kernel accepts it (IFNAMSIZ less the NUL).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IfName(pub String);

pub fn check_ifname(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid interface name: use at most 15 letters, digits, '-', '_' or '.'"
        ))
    }
}

impl<'de> Deserialize<'de> for IfName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check(d, "an interface name", |raw| {
            let s = text(raw);
            check_ifname(&s)?;
            Ok(IfName(s))
        })
    }
}

/// An IPv4 network in CIDR form with room for a gateway and at least one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Subnet(pub Ipv4Net);

impl Subnet {
    /// Addresses usable by hosts: all but the network and broadcast addresses.
    pub fn host_count(&self) -> u64 {
        (1u64 << (32 - self.0.prefix_len())) - 2
    }

    /// The `n`th host address, from 0 (the gateway is host 0).
    pub fn host(&self, n: u64) -> Option<Ipv4Addr> {
        if n >= self.host_count() {
            return None;
        }
        let base = u32::from(self.0.network());
        u32::try_from(n + 1).ok().map(|k| Ipv4Addr::from(base + k))
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let net: Ipv4Net = s.parse().map_err(|_| {
            format!("{s:?} is not an IPv4 subnet: write it as ADDRESS/PREFIX, e.g. 10.77.0.0/24")
        })?;
        if net.addr() != net.network() {
            return Err(format!(
                "{s:?} has host bits set: the subnet is {}",
                net.trunc()
            ));
        }
        if net.prefix_len() > 30 {
            return Err(format!(
                "{s:?} is too small: a /{} has no room for a gateway and a node; use /30 or larger (e.g. /24)",
                net.prefix_len()
            ));
        }
        Ok(Subnet(net))
    }
}

/// The file's form of a subnet; checked as it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubnetField(pub Subnet);

impl<'de> Deserialize<'de> for SubnetField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check(d, "a subnet such as 10.77.0.0/24", |raw| {
            Subnet::parse(&text(raw)).map(SubnetField)
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Mtu(pub u32);

impl<'de> Deserialize<'de> for Mtu {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check(d, "an MTU (68 to 65521)", |raw| {
            let n = number(raw, "mtu")?;
            // 68 is IPv4's minimum; 65521 is the largest MTU a TAP device takes.
            match u32::try_from(n) {
                Ok(m) if (68..=65521).contains(&m) => Ok(Mtu(m)),
                _ => Err(format!(
                    "MTU {n} is out of range: use 68 to 65521 (usually 1500, or 9000 for jumbo frames)"
                )),
            }
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Cpus(pub u8);

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check(d, "a number of vCPUs", |raw| {
            let n = number(raw, "cpus")?;
            match u8::try_from(n) {
                Ok(c) if c >= 1 => Ok(Cpus(c)),
                _ => Err(format!("cpus {n} is out of range: use 1 to 255")),
            }
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Count(pub u32);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check(d, "a node count", |raw| {
            let n = number(raw, "count")?;
            match u32::try_from(n) {
                Ok(c) if (1..=MAX_COUNT).contains(&c) => Ok(Count(c)),
                _ => Err(format!("count {n} is out of range: use 1 to {MAX_COUNT}")),
            }
        })
    }
}

/// Guest memory in MiB: a plain number is MiB, a string may carry a unit (`2G`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MemoryMib(pub u64);

impl<'de> Deserialize<'de> for MemoryMib {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check(d, "memory in MiB or a size such as 2G", |raw| {
            let mib = match raw {
                Raw::Number(n) => n,
                Raw::Text(t) => imagetool::size::parse(t).map_err(|e| e.to_string())? >> 20,
            };
            if !(64..=1 << 20).contains(&mib) {
                return Err(format!(
                    "memory {mib} MiB is out of range: use 64 MiB to 1 TiB"
                ));
            }
            Ok(MemoryMib(mib))
        })
    }
}

/// The root disk's apparent size in bytes (`8G`); sparse, so it costs only what is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RootSize(pub u64);

impl<'de> Deserialize<'de> for RootSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check(d, "a size such as 8G", |raw| {
            let bytes = match raw {
                Raw::Number(n) => n,
                Raw::Text(t) => imagetool::size::parse(t).map_err(|e| e.to_string())?,
            };
            if bytes < MIN_ROOT_SIZE {
                return Err(format!(
                    "root_size {bytes} bytes is too small for a root filesystem: use at least 32M"
                ));
            }
            Ok(RootSize(bytes))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rfc1123_lowercase() {
        for ok in ["core", "core-1", "a", "etcd0", &"a".repeat(63)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "Core", "a_b", "a.b", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subnet_hosts_skip_network_address() {
        let s = yaml_serde::from_str::<SubnetField>("10.77.0.0/24")
            .unwrap()
            .0;
        assert_eq!(s.host_count(), 254);
        assert_eq!(s.host(0), Some("10.77.0.1".parse().unwrap()));
        assert_eq!(s.host(253), Some("10.77.0.254".parse().unwrap()));
        assert_eq!(s.host(254), None);
        assert!(yaml_serde::from_str::<SubnetField>("10.77.0.1/24").is_err());
        assert!(yaml_serde::from_str::<SubnetField>("10.77.0.0/31").is_err());
        assert!(yaml_serde::from_str::<SubnetField>("10.77.0.0").is_err());
    }

    #[test]
    fn sizes_take_units() {
        assert_eq!(yaml_serde::from_str::<MemoryMib>("2048").unwrap().0, 2048);
        assert_eq!(yaml_serde::from_str::<MemoryMib>("2G").unwrap().0, 2048);
        assert!(yaml_serde::from_str::<MemoryMib>("12").is_err());
        assert_eq!(yaml_serde::from_str::<RootSize>("8G").unwrap().0, 8 << 30);
        assert!(yaml_serde::from_str::<RootSize>("1M").is_err());
        assert!(yaml_serde::from_str::<Mtu>("67").is_err());
        assert!(yaml_serde::from_str::<Cpus>("0").is_err());
        assert!(yaml_serde::from_str::<Count>("0").is_err());
    }
}
