//! `--net`: a virtio-net NIC over a TAP device (`tap=NAME`) or over passt user networking
//! (`user`, with QEMU-style `hostfwd=` port forwards), each with an optional `mac=`.
//!
//! YAML form (`net:` in vm.yaml), one map per NIC:
//! ```yaml
//! net:
//!   - tap: vmtap0
//!     mac: "52:54:00:12:34:56"
//!   - user: true
//!     hostfwd: ["tcp:127.0.0.1:2222-:22"]
//! ```

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::net::mac::MacAddr;

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// One NIC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "NetConfigYaml", into = "NetConfigYaml")]
pub struct NetConfig {
    pub backend: NetBackendConfig,
    /// None: a stable default derived from the backend (see [`NetConfig::mac_for`]).
    pub mac: Option<MacAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetBackendConfig {
    /// Attach to (or, with CAP_NET_ADMIN, create) the TAP device NAME.
    Tap { name: String },
    /// Start passt as a child and talk to it over a socket pair.
    User { hostfwd: Vec<HostFwd> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

/// `tcp:[HOSTADDR]:HOSTPORT-:GUESTPORT` (QEMU's syntax). passt always forwards to the guest's
/// own address, so the guest address must stay empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostFwd {
    pub proto: Proto,
    /// None: every host address.
    pub host_addr: Option<IpAddr>,
    pub host_port: u16,
    pub guest_port: u16,
}

impl NetConfig {
    /// The guest's MAC: the one given, or a stable default from the TAP name, or for user
    /// networking from "user" and the NIC's position among all NICs.
    pub fn mac_for(&self, index: usize) -> MacAddr {
        self.mac.unwrap_or_else(|| match &self.backend {
            NetBackendConfig::Tap { name } => MacAddr::stable_default(name),
            NetBackendConfig::User { .. } => MacAddr::stable_default(&format!("user{index}")),
        })
    }
}

fn syntax(input: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::Syntax {
        option: "net",
        input: input.to_owned(),
        why: why.into(),
    }
}

/// Checks a TAP name the way the kernel's `dev_valid_name()` does.
fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > IFNAME_MAX {
        return Err(format!(
            "TAP name '{name}' must be 1 to {IFNAME_MAX} bytes long"
        ));
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
    {
        return Err(format!(
            "TAP name '{name}' is not a valid interface name (no '/', ':' or spaces)"
        ));
    }
    Ok(())
}

fn parse_mac(input: &str, v: &str) -> Result<MacAddr, ConfigError> {
    v.parse::<MacAddr>()
        .and_then(MacAddr::check_unicast)
        .map_err(|e| syntax(input, e.to_string()))
}

impl FromStr for NetConfig {
    type Err = ConfigError;

    /// `tap=NAME[,mac=M]` or `user[,hostfwd=SPEC]...[,mac=M]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut items = s.split(',').filter(|i| !i.is_empty());
        let first = items
            .next()
            .ok_or_else(|| syntax(s, "expected tap=NAME or user"))?;
        let mut backend = match first.split_once('=') {
            Some(("tap", name)) => {
                check_ifname(name).map_err(|why| syntax(s, why))?;
                NetBackendConfig::Tap {
                    name: name.to_owned(),
                }
            }
            None if first == "user" => NetBackendConfig::User {
                hostfwd: Vec::new(),
            },
            _ => {
                return Err(syntax(
                    s,
                    format!("'{first}': the first item must be tap=NAME or user"),
                ));
            }
        };
        let mut mac = None;
        for item in items {
            match (item.split_once('='), &mut backend) {
                (Some(("mac", v)), _) => {
                    if mac.replace(parse_mac(s, v)?).is_some() {
                        return Err(syntax(s, "'mac' is given twice"));
                    }
                }
                (Some(("hostfwd", v)), NetBackendConfig::User { hostfwd }) => {
                    hostfwd.push(v.parse().map_err(|why: String| syntax(s, why))?);
                }
                (Some(("hostfwd", _)), NetBackendConfig::Tap { .. }) => {
                    return Err(syntax(
                        s,
                        "hostfwd needs user networking (--net user,...); a TAP is reachable directly",
                    ));
                }
                _ => {
                    let known = match backend {
                        NetBackendConfig::Tap { .. } => "mac",
                        NetBackendConfig::User { .. } => "hostfwd, mac",
                    };
                    return Err(syntax(s, format!("unknown item '{item}'; known: {known}")));
                }
            }
        }
        Ok(NetConfig { backend, mac })
    }
}

impl fmt::Display for NetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            NetBackendConfig::Tap { name } => write!(f, "tap={name}")?,
            NetBackendConfig::User { hostfwd } => {
                write!(f, "user")?;
                for h in hostfwd {
                    write!(f, ",hostfwd={h}")?;
                }
            }
        }
        if let Some(m) = self.mac {
            write!(f, ",mac={m}")?;
        }
        Ok(())
    }
}

fn parse_port(p: &str, what: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{what} '{p}' is not a port number (1-65535)")),
        Ok(n) => Ok(n),
    }
}

impl FromStr for HostFwd {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let form = "expected hostfwd=tcp|udp:[HOSTADDR]:HOSTPORT-:GUESTPORT";
        let (proto, rest) = s.split_once(':').ok_or_else(|| format!("'{s}': {form}"))?;
        let proto = match proto {
            "tcp" | "" => Proto::Tcp,
            "udp" => Proto::Udp,
            p => return Err(format!("'{p}' is not tcp or udp; {form}")),
        };
        let (host, guest) = rest
            .split_once('-')
            .ok_or_else(|| format!("'{s}': {form}"))?;
        let (host_addr, host_port) = host
            .rsplit_once(':')
            .ok_or_else(|| format!("'{s}': {form}"))?;
        let host_addr = match host_addr.trim_start_matches('[').trim_end_matches(']') {
            "" => None,
            a => Some(
                a.parse::<IpAddr>()
                    .map_err(|_| format!("'{a}' is not an IP address"))?,
            ),
        };
        let (guest_addr, guest_port) = guest
            .rsplit_once(':')
            .ok_or_else(|| format!("'{s}': {form}"))?;
        if !guest_addr.is_empty() {
            return Err(format!(
                "guest address '{guest_addr}': passt forwards to the guest's own address; write '-:{guest_port}'"
            ));
        }
        Ok(HostFwd {
            proto,
            host_addr,
            host_port: parse_port(host_port, "host port")?,
            guest_port: parse_port(guest_port, "guest port")?,
        })
    }
}

impl fmt::Display for HostFwd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        let addr = match self.host_addr {
            None => String::new(),
            Some(IpAddr::V4(a)) => a.to_string(),
            Some(IpAddr::V6(a)) => format!("[{a}]"),
        };
        write!(f, "{proto}:{addr}:{}-:{}", self.host_port, self.guest_port)
    }
}

impl HostFwd {
    /// The passt options for this forward: `-t [ADDR/]HOSTPORT:GUESTPORT` (or `-u`).
    pub fn passt_args(&self) -> [String; 2] {
        let flag = match self.proto {
            Proto::Tcp => "-t",
            Proto::Udp => "-u",
        };
        let spec = match self.host_addr {
            None => format!("{}:{}", self.host_port, self.guest_port),
            Some(a) => format!("{a}/{}:{}", self.host_port, self.guest_port),
        };
        [flag.to_owned(), spec]
    }
}

/// Checks the NICs together: no TAP, MAC or forwarded host port twice.
pub fn validate(nets: &[NetConfig]) -> Result<(), ConfigError> {
    let mut taps = HashSet::new();
    let mut macs = HashSet::new();
    let mut ports = HashSet::new();
    for (i, n) in nets.iter().enumerate() {
        let what = n.to_string();
        match &n.backend {
            NetBackendConfig::Tap { name } => {
                check_ifname(name).map_err(|why| syntax(&what, why))?;
                if !taps.insert(name.clone()) {
                    return Err(syntax(&what, format!("TAP {name} is used by two NICs")));
                }
            }
            NetBackendConfig::User { hostfwd } => {
                for h in hostfwd {
                    if !ports.insert((h.proto, h.host_port)) {
                        return Err(syntax(
                            &what,
                            format!("host port {} is forwarded twice", h.host_port),
                        ));
                    }
                }
            }
        }
        if let Some(m) = n.mac {
            m.check_unicast()
                .map_err(|e| syntax(&what, e.to_string()))?;
        }
        let mac = n.mac_for(i);
        if !macs.insert(mac) {
            return Err(syntax(
                &what,
                format!("MAC {mac} is used by two NICs; give each a different mac="),
            ));
        }
    }
    Ok(())
}

/// The YAML shape: flat keys, exactly one of `tap` and `user: true`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetConfigYaml {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tap: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    user: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    hostfwd: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
}

impl TryFrom<NetConfigYaml> for NetConfig {
    type Error = String;

    fn try_from(y: NetConfigYaml) -> Result<Self, Self::Error> {
        let backend = match (y.tap, y.user) {
            (Some(name), false) => {
                check_ifname(&name)?;
                if !y.hostfwd.is_empty() {
                    return Err("hostfwd needs 'user: true', not a TAP".to_owned());
                }
                NetBackendConfig::Tap { name }
            }
            (None, true) => NetBackendConfig::User {
                hostfwd: y
                    .hostfwd
                    .iter()
                    .map(|h| h.parse())
                    .collect::<Result<_, _>>()?,
            },
            _ => {
                return Err(
                    "each net entry needs exactly one of 'tap: NAME' or 'user: true'".to_owned(),
                );
            }
        };
        let mac = y
            .mac
            .map(|m| m.parse::<MacAddr>().and_then(MacAddr::check_unicast))
            .transpose()
            .map_err(|e| e.to_string())?;
        Ok(NetConfig { backend, mac })
    }
}

impl From<NetConfig> for NetConfigYaml {
    fn from(n: NetConfig) -> Self {
        let mac = n.mac.map(|m| m.to_string());
        match n.backend {
            NetBackendConfig::Tap { name } => NetConfigYaml {
                tap: Some(name),
                mac,
                ..Default::default()
            },
            NetBackendConfig::User { hostfwd } => NetConfigYaml {
                user: true,
                hostfwd: hostfwd.iter().map(ToString::to_string).collect(),
                mac,
                ..Default::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn tap_flag() {
        let n: NetConfig = "tap=vmtap0,mac=52:54:00:12:34:56".parse().unwrap();
        assert_eq!(
            n.backend,
            NetBackendConfig::Tap {
                name: "vmtap0".to_owned()
            }
        );
        assert_eq!(n.mac.unwrap().to_string(), "52:54:00:12:34:56");
        assert_eq!(n.to_string(), "tap=vmtap0,mac=52:54:00:12:34:56");
        let n: NetConfig = "tap=vmtap0".parse().unwrap();
        assert_eq!(n.mac, None);
        assert_eq!(n.mac_for(3), MacAddr::stable_default("vmtap0"));
    }

    /// The exact strings vmctl (vmctl/src/vmm_args.rs) passes.
    #[test]
    fn user_flag_as_vmctl_writes_it() {
        let n: NetConfig = "user,mac=52:00:00:00:00:01,hostfwd=tcp:127.0.0.1:2222-:22"
            .parse()
            .unwrap();
        let NetBackendConfig::User { hostfwd } = &n.backend else {
            panic!("{n:?}")
        };
        assert_eq!(
            hostfwd,
            &[HostFwd {
                proto: Proto::Tcp,
                host_addr: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                host_port: 2222,
                guest_port: 22,
            }]
        );
        assert_eq!(hostfwd[0].passt_args(), ["-t", "127.0.0.1/2222:22"]);
        assert_eq!(n.mac.unwrap().0, [0x52, 0, 0, 0, 0, 1]);
        let n: NetConfig = "tap=vmt-1234abcd,mac=52:00:00:00:00:01".parse().unwrap();
        assert!(matches!(n.backend, NetBackendConfig::Tap { .. }));
    }

    #[test]
    fn several_forwards_and_protocols() {
        let n: NetConfig = "user,hostfwd=tcp::2222-:22,hostfwd=udp:[::1]:5353-:53"
            .parse()
            .unwrap();
        let NetBackendConfig::User { hostfwd } = &n.backend else {
            panic!()
        };
        assert_eq!(hostfwd[0].passt_args(), ["-t", "2222:22"]);
        assert_eq!(hostfwd[1].passt_args(), ["-u", "::1/5353:53"]);
        assert_eq!(
            n.to_string(),
            "user,hostfwd=tcp::2222-:22,hostfwd=udp:[::1]:5353-:53"
        );
        assert_eq!(n.to_string().parse::<NetConfig>().unwrap(), n);
        assert_ne!(n.mac_for(0), n.mac_for(1));
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        for (input, needle) in [
            ("", "tap=NAME or user"),
            ("bridge=br0", "first item"),
            ("tap=", "1 to 15"),
            ("tap=averyveryverylongname", "1 to 15"),
            ("tap=a/b", "not a valid interface name"),
            ("tap=t0,hostfwd=tcp::1-:2", "needs user networking"),
            ("user,hostfwd=tcp::2222-10.0.2.15:22", "guest's own address"),
            ("user,hostfwd=sctp::1-:2", "not tcp or udp"),
            ("user,hostfwd=tcp::0-:22", "not a port number"),
            ("user,hostfwd=tcp::70000-:22", "not a port number"),
            ("user,hostfwd=tcp:host:22-:22", "not an IP address"),
            ("user,hostfwd=tcp:2222:22", "expected hostfwd="),
            ("user,mac=01:00:5e:00:00:01", "multicast"),
            ("user,mac=zz", "not a MAC address"),
            ("user,mac=52:54:00:00:00:01,mac=52:54:00:00:00:02", "twice"),
            ("user,model=e1000", "unknown item 'model=e1000'"),
        ] {
            let err = input.parse::<NetConfig>().unwrap_err().to_string();
            assert!(err.contains(needle), "{input}: {err}");
            assert!(err.starts_with("--net "), "{input}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn validation_catches_clashes() {
        let p = |s: &str| s.parse::<NetConfig>().unwrap();
        validate(&[p("tap=a"), p("tap=b"), p("user"), p("user")]).unwrap();
        let err = validate(&[p("tap=a"), p("tap=a")]).unwrap_err().to_string();
        assert!(err.contains("used by two NICs"), "{err}");
        let err = validate(&[
            p("tap=a,mac=52:54:00:00:00:01"),
            p("user,mac=52:54:00:00:00:01"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("MAC 52:54:00:00:00:01"), "{err}");
        let err = validate(&[
            p("user,hostfwd=tcp::2222-:22"),
            p("user,hostfwd=tcp::2222-:23"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("forwarded twice"), "{err}");
        validate(&[p("user,hostfwd=tcp::53-:53,hostfwd=udp::53-:53")]).unwrap();
    }

    #[test]
    fn vm_yaml_with_nics_and_flags_replacing_them() {
        use crate::config::VmConfig;
        use std::path::Path;
        let text = "kernel: k\nnet:\n  - tap: vmtap0\n  - user: true\n    hostfwd: [\"tcp::2222-:22\"]\n    mac: 52:54:00:00:00:02\n";
        let c = VmConfig::from_yaml(text, Path::new("vm.yaml"), Path::new("/")).unwrap();
        assert_eq!(c.net.len(), 2);
        assert_eq!(c.net[0].to_string(), "tap=vmtap0");
        assert_eq!(
            c.net[1].to_string(),
            "user,hostfwd=tcp::2222-:22,mac=52:54:00:00:00:02"
        );
        let again =
            VmConfig::from_yaml(&c.to_yaml().unwrap(), Path::new("x"), Path::new("/")).unwrap();
        assert_eq!(again, c);
        let none = VmConfig::from_yaml("kernel: k\n", Path::new("x"), Path::new("/")).unwrap();
        assert!(none.net.is_empty());
        assert!(
            !none.to_yaml().unwrap().contains("net"),
            "no empty net: key"
        );
        let err = VmConfig::from_yaml(
            "kernel: k\nnet:\n  - tap: a\n    user: true\n",
            Path::new("vm.yaml"),
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("exactly one of"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn yaml_shape() {
        #[derive(Deserialize, Serialize)]
        struct W {
            net: Vec<NetConfig>,
        }
        let text = "net:\n  - tap: vmtap0\n    mac: 52:54:00:12:34:56\n  - user: true\n    hostfwd: [\"tcp:127.0.0.1:2222-:22\"]\n";
        let w: W = yaml_serde::from_str(text).unwrap();
        assert_eq!(
            w.net[0],
            "tap=vmtap0,mac=52:54:00:12:34:56".parse().unwrap()
        );
        assert_eq!(
            w.net[1],
            "user,hostfwd=tcp:127.0.0.1:2222-:22".parse().unwrap()
        );
        let again: W = yaml_serde::from_str(&yaml_serde::to_string(&w).unwrap()).unwrap();
        assert_eq!(again.net, w.net);
        for bad in [
            "net:\n  - tap: a\n    user: true\n",
            "net:\n  - mac: 52:54:00:12:34:56\n",
            "net:\n  - tap: a\n    colour: red\n",
            "net:\n  - user: true\n    hostfwd: [\"tcp:x\"]\n",
            "net:\n  - tap: a\n    hostfwd: [\"tcp::1-:2\"]\n",
        ] {
            assert!(yaml_serde::from_str::<W>(bad).is_err(), "{bad}");
        }
    }
}
