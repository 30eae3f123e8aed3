//! From the file to the [`Cluster`]: parse strictly, apply defaults, expand `count`, resolve and
//! check every file the nodes need, allocate addresses and ports (keeping the ones a node already
//! had, so a node never changes address because another was added).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use imagetool::configdrive;

use super::locate::{YamlPath, locate};
use super::lookup::{BUILTIN_DEMO, Source};
use super::spec::{ClusterFile, NetMode, NodeSettings};
use super::{Cluster, ClusterError, Image, Network, Node};
use crate::net::{mac, ports};
use crate::paths;

pub const DEFAULT_CPUS: u8 = 1;
pub const DEFAULT_MEMORY_MIB: u64 = 1024;
pub const DEFAULT_ROOT_SIZE: u64 = 8 << 30;
pub const DEFAULT_MTU: u32 = 1500;

/// What the previous run allocated, to keep.
#[derive(Default)]
pub struct Previous<'a> {
    pub cluster: Option<&'a Cluster>,
    /// Host ports other clusters already use.
    pub ports_in_use: BTreeSet<u16>,
}

/// Reads, checks and resolves the cluster file `source`.
pub fn load(source: &Source, previous: &Previous<'_>) -> Result<Cluster, ClusterError> {
    let (text, file, base) = match source {
        Source::File(p) => {
            let text = std::fs::read_to_string(p).map_err(|err| ClusterError::Io {
                path: p.clone(),
                err,
            })?;
            let base = p
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            (text, p.display().to_string(), base)
        }
        Source::BuiltinDemo => (
            BUILTIN_DEMO.to_string(),
            "built-in demo.yaml".to_string(),
            std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        ),
    };
    let mut cluster = load_str(&text, &file, &base, previous)?;
    if let Source::File(p) = source {
        cluster.source = Some(std::path::absolute(p).unwrap_or_else(|_| p.clone()));
    }
    Ok(cluster)
}

/// Checks and resolves a cluster file's text named `file`, its relative paths taken from `base`
/// (what [`load`] does after reading the file; the fuzzer calls it directly).
pub fn load_str(
    text: &str,
    file: &str,
    base: &Path,
    previous: &Previous<'_>,
) -> Result<Cluster, ClusterError> {
    let doc = Doc { text, file };
    let spec = doc.parse()?;
    doc.resolve(&spec, base, previous)
}

/// Parses the file (all per-field checks, none that look at other files).
pub fn parse_source(source: &Source) -> Result<ClusterFile, ClusterError> {
    match source {
        Source::File(p) => {
            let text = std::fs::read_to_string(p).map_err(|err| ClusterError::Io {
                path: p.clone(),
                err,
            })?;
            parse_str(&text, &p.display().to_string())
        }
        Source::BuiltinDemo => parse_str(BUILTIN_DEMO, "built-in demo.yaml"),
    }
}

/// Parses a cluster file's text (no file checks): for tests and the fuzzer.
pub fn parse_str(text: &str, file: &str) -> Result<ClusterFile, ClusterError> {
    Doc { text, file }.parse()
}

struct Doc<'a> {
    text: &'a str,
    file: &'a str,
}

impl Doc<'_> {
    fn parse(&self) -> Result<ClusterFile, ClusterError> {
        if self.text.trim().is_empty() {
            return Err(ClusterError::Whole {
                file: self.file.to_string(),
                message: "the file is empty: it needs at least name, image and nodes".into(),
            });
        }
        yaml_serde::from_str::<ClusterFile>(self.text).map_err(|e| {
            let message = one_line(&strip_position(&e.to_string()));
            match e.location() {
                Some(l) => ClusterError::At {
                    file: self.file.to_string(),
                    line: l.line(),
                    column: l.column(),
                    message,
                },
                None => ClusterError::Whole {
                    file: self.file.to_string(),
                    message,
                },
            }
        })
    }

    fn at(&self, path: &YamlPath, message: impl Into<String>) -> ClusterError {
        let message = one_line(&format!("{path}: {}", message.into()));
        match locate(self.text, path) {
            Some((line, column)) => ClusterError::At {
                file: self.file.to_string(),
                line,
                column,
                message,
            },
            None => ClusterError::Whole {
                file: self.file.to_string(),
                message,
            },
        }
    }

    fn resolve(
        &self,
        spec: &ClusterFile,
        base: &Path,
        prev: &Previous<'_>,
    ) -> Result<Cluster, ClusterError> {
        let name = spec.name.0.clone();
        let image = self.image(spec, base)?;
        let network = self.network(spec)?;

        if spec.nodes.is_empty() {
            return Err(self.at(&YamlPath::key("nodes"), "the cluster has no nodes"));
        }
        // Expand counts; remember which entry each name came from for duplicate errors.
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut expanded: Vec<(usize, String)> = Vec::new();
        for (i, n) in spec.nodes.iter().enumerate() {
            let names: Vec<String> = match n.count {
                None => vec![n.name.0.clone()],
                Some(c) => (1..=c.0).map(|k| format!("{}-{k}", n.name.0)).collect(),
            };
            for host in names {
                if host.len() > 63 {
                    return Err(self.at(
                        &YamlPath::key("nodes").at(i).then("name"),
                        format!("{host} is longer than 63 characters: shorten the name"),
                    ));
                }
                if let Some(first) = seen.insert(host.clone(), i) {
                    return Err(self.at(
                        &YamlPath::key("nodes").at(i).then("name"),
                        format!(
                            "node name {host} is used twice (also by nodes[{first}], after count expansion): rename one"
                        ),
                    ));
                }
                expanded.push((i, host));
            }
        }
        if let Some(subnet) = network.subnet {
            let room = subnet.host_count() - 1;
            if (expanded.len() as u64) > room {
                return Err(self.at(
                    &YamlPath::key("network").then("subnet"),
                    format!(
                        "{} has room for {room} node(s) besides the gateway, but the file has {}: use a larger subnet such as /24",
                        subnet.0,
                        expanded.len()
                    ),
                ));
            }
        }

        let previous_nodes: BTreeMap<&str, &Node> = prev
            .cluster
            .map(|c| c.nodes.iter().map(|n| (n.name.as_str(), n)).collect())
            .unwrap_or_default();
        let mut nodes = Vec::with_capacity(expanded.len());
        for (i, host) in &expanded {
            nodes.push(self.node(spec, *i, host, &name, base, &network)?);
        }
        allocate(&mut nodes, &network, &previous_nodes, &prev.ports_in_use).map_err(|m| {
            ClusterError::Whole {
                file: self.file.to_string(),
                message: m,
            }
        })?;
        Ok(Cluster {
            name,
            source: None,
            image,
            network,
            nodes,
        })
    }

    fn existing_file(
        &self,
        path: &YamlPath,
        text: &str,
        base: &Path,
    ) -> Result<PathBuf, ClusterError> {
        let p = paths::resolve(text, base).map_err(|m| self.at(path, m))?;
        match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => Ok(p),
            Ok(_) => Err(self.at(path, format!("{} is not a regular file", p.display()))),
            Err(e) => Err(self.at(
                path,
                format!("{}: {}{}", p.display(), io_reason(&e), hint(&p)),
            )),
        }
    }

    fn image(&self, spec: &ClusterFile, base: &Path) -> Result<Image, ClusterError> {
        let at = YamlPath::key("image").then("kernel");
        let kernel = self.existing_file(&at, &spec.image.kernel, base)?;
        let mut head = Vec::with_capacity(64 << 10);
        std::fs::File::open(&kernel)
            .and_then(|f| std::io::Read::take(f, 64 << 10).read_to_end(&mut head))
            .map_err(|e| self.at(&at, format!("{}: {e}", kernel.display())))?;
        if imagetool::kernel::detect(&head).is_none() {
            return Err(self.at(
                &at,
                format!(
                    "{} is not a Linux kernel (neither a bzImage nor an ELF vmlinux)",
                    kernel.display()
                ),
            ));
        }
        let initrd = spec
            .image
            .initrd
            .as_deref()
            .map(|t| self.existing_file(&YamlPath::key("image").then("initrd"), t, base))
            .transpose()?;
        Ok(Image {
            kernel,
            initrd,
            cmdline: spec.image.cmdline.trim().to_string(),
            boot_marker: spec
                .image
                .boot_marker
                .as_deref()
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string),
        })
    }

    fn network(&self, spec: &ClusterFile) -> Result<Network, ClusterError> {
        let n = &spec.network;
        let p = || YamlPath::key("network");
        match n.mode {
            NetMode::User => {
                for (set, key) in [
                    (n.bridge.is_some(), "bridge"),
                    (n.subnet.is_some(), "subnet"),
                    (n.mtu.is_some(), "mtu"),
                ] {
                    if set {
                        return Err(self.at(
                            &p().then(key),
                            "only used with mode: bridge (user networking takes no bridge, subnet or MTU)",
                        ));
                    }
                }
                Ok(Network {
                    mode: NetMode::User,
                    bridge: None,
                    subnet: None,
                    gateway: None,
                    mtu: DEFAULT_MTU,
                })
            }
            NetMode::Bridge => {
                let Some(subnet) = n.subnet.map(|s| s.0) else {
                    return Err(self.at(
                        &p(),
                        "mode: bridge needs a subnet for the nodes (e.g. subnet: 10.77.0.0/24), or use mode: user",
                    ));
                };
                let bridge = n
                    .bridge
                    .as_ref()
                    .map(|b| b.0.clone())
                    .unwrap_or_else(|| default_bridge(&spec.name.0));
                Ok(Network {
                    mode: NetMode::Bridge,
                    bridge: Some(bridge),
                    subnet: Some(subnet),
                    gateway: subnet.host(0),
                    mtu: n.mtu.map(|m| m.0).unwrap_or(DEFAULT_MTU),
                })
            }
        }
    }

    fn node(
        &self,
        spec: &ClusterFile,
        index: usize,
        host: &str,
        cluster: &str,
        base: &Path,
        network: &Network,
    ) -> Result<Node, ClusterError> {
        let own = spec.nodes[index].settings();
        let defaults = &spec.defaults;
        // Each setting from the node or else from defaults, with where it was written.
        let pick = |f: fn(&NodeSettings) -> bool, key: &'static str| -> YamlPath {
            if f(&own) {
                YamlPath::key("nodes").at(index).then(key)
            } else {
                YamlPath::key("defaults").then(key)
            }
        };
        let user_data = match own.user_data.as_ref().or(defaults.user_data.as_ref()) {
            Some(t) => {
                let at = pick(|s| s.user_data.is_some(), "user_data");
                let p = self.existing_file(&at, t, base)?;
                let data =
                    std::fs::read(&p).map_err(|e| self.at(&at, format!("{}: {e}", p.display())))?;
                configdrive::validate_user_data(&data)
                    .map_err(|e| self.at(&at, format!("{}: {e}", p.display())))?;
                Some(p)
            }
            None => None,
        };
        let ignition = match own.ignition.as_ref().or(defaults.ignition.as_ref()) {
            Some(t) => {
                let at = pick(|s| s.ignition.is_some(), "ignition");
                let p = self.existing_file(&at, t, base)?;
                let data =
                    std::fs::read(&p).map_err(|e| self.at(&at, format!("{}: {e}", p.display())))?;
                configdrive::validate_ignition(&data)
                    .map_err(|e| self.at(&at, format!("{}: {e}", p.display())))?;
                Some(p)
            }
            None => None,
        };
        let (ssh_keys, ssh_key_files) = match own.ssh_keys.as_ref().or(defaults.ssh_keys.as_ref()) {
            Some(list) => {
                let at = pick(|s| s.ssh_keys.is_some(), "ssh_keys");
                self.ssh_keys(&at, list, base)?
            }
            None => (Vec::new(), Vec::new()),
        };
        let cmdline = [defaults.cmdline.as_deref(), own.cmdline.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Node {
            name: host.to_string(),
            cpus: own
                .cpus
                .or(defaults.cpus)
                .map(|c| c.0)
                .unwrap_or(DEFAULT_CPUS),
            memory_mib: own
                .memory
                .or(defaults.memory)
                .map(|m| m.0)
                .unwrap_or(DEFAULT_MEMORY_MIB),
            root_size: own
                .root_size
                .or(defaults.root_size)
                .map(|r| r.0)
                .unwrap_or(DEFAULT_ROOT_SIZE),
            ssh_keys,
            ssh_key_files,
            user_data,
            ignition,
            cmdline,
            mac: mac::derive(cluster, host),
            ip: None,
            tap: (network.mode == NetMode::Bridge).then(|| tap_name(cluster, host)),
            ssh_port: None,
        })
    }

    /// Entries are key files (`~/.ssh/id_ed25519.pub`) or key lines written inline.
    fn ssh_keys(
        &self,
        at: &YamlPath,
        list: &[String],
        base: &Path,
    ) -> Result<(Vec<String>, Vec<PathBuf>), ClusterError> {
        let mut keys = Vec::new();
        let mut files = Vec::new();
        for (i, entry) in list.iter().enumerate() {
            let here = at.clone().at(i);
            let inline = ["ssh-", "ecdsa-", "sk-"]
                .iter()
                .any(|p| entry.starts_with(p));
            let lines = if inline {
                vec![entry.trim().to_string()]
            } else {
                let p = self.existing_file(&here, entry, base)?;
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| self.at(&here, format!("{}: {e}", p.display())))?;
                let lines = configdrive::key_lines(&text);
                if lines.is_empty() {
                    return Err(self.at(&here, format!("{} holds no public key", p.display())));
                }
                files.push(p);
                lines
            };
            configdrive::parse_ssh_keys(&lines).map_err(|e| self.at(&here, e.to_string()))?;
            keys.extend(lines);
        }
        Ok((keys, files))
    }
}

/// IPs in bridge mode and ssh ports in user mode; a node keeps what it had.
fn allocate(
    nodes: &mut [Node],
    network: &Network,
    previous: &BTreeMap<&str, &Node>,
    ports_in_use: &BTreeSet<u16>,
) -> Result<(), String> {
    match network.mode {
        NetMode::Bridge => {
            let Some(subnet) = network.subnet else {
                return Ok(());
            };
            let mut used: BTreeSet<std::net::Ipv4Addr> = network.gateway.into_iter().collect();
            for n in nodes.iter_mut() {
                let kept = previous
                    .get(n.name.as_str())
                    .and_then(|p| p.ip)
                    .filter(|ip| subnet.0.contains(ip) && Some(*ip) != network.gateway);
                if let Some(ip) = kept.filter(|ip| used.insert(*ip)) {
                    n.ip = Some(ip);
                }
            }
            let mut next = 1u64;
            for n in nodes.iter_mut().filter(|n| n.ip.is_none()) {
                loop {
                    let ip = subnet.host(next).ok_or_else(|| {
                        format!("{} has no free address left for {}", subnet.0, n.name)
                    })?;
                    next += 1;
                    if used.insert(ip) {
                        n.ip = Some(ip);
                        break;
                    }
                }
            }
        }
        NetMode::User => {
            let mut used = ports_in_use.clone();
            for n in nodes.iter_mut() {
                let kept = previous.get(n.name.as_str()).and_then(|p| p.ssh_port);
                if let Some(port) = kept.filter(|p| used.insert(*p)) {
                    n.ssh_port = Some(port);
                }
            }
            for n in nodes.iter_mut().filter(|n| n.ssh_port.is_none()) {
                let port = ports::allocate(&used)
                    .ok_or_else(|| format!("no free TCP port on 127.0.0.1 for {}'s ssh", n.name))?;
                used.insert(port);
                n.ssh_port = Some(port);
            }
        }
    }
    Ok(())
}

/// `vmbr-NAME` when it fits the 15 characters of an interface name, else a hashed form.
pub fn default_bridge(cluster: &str) -> String {
    let plain = format!("vmbr-{cluster}");
    if plain.len() <= 15 {
        plain
    } else {
        format!("vmbr-{}", mac::tag(&[cluster]))
    }
}

/// TAP names must fit 15 characters and be unique on the host: `vmt-` and a hash.
pub fn tap_name(cluster: &str, node: &str) -> String {
    format!("vmt-{}", mac::tag(&[cluster, node]))
}

/// The demo image is built on demand; say how.
fn hint(p: &Path) -> &'static str {
    if p.to_string_lossy().contains("vmctl-dev/demo-image/") {
        " (build the demo image with scripts/build-demo-image.sh)"
    } else {
        ""
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Escapes line breaks and other control characters: messages quote keys and paths from the
/// file, and an error must stay one line (found by fuzzing, issue 7) that cannot drive the
/// terminal.
fn one_line(message: &str) -> String {
    message
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// yaml_serde puts "at line L column C" in its messages; we put the position first instead.
fn strip_position(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(" at line ") {
        let after = &rest[i + " at line ".len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let tail = &after[digits..];
        match tail.strip_prefix(" column ") {
            Some(t) if digits > 0 => {
                let d2 = t.bytes().take_while(u8::is_ascii_digit).count();
                out.push_str(&rest[..i]);
                rest = &t[d2..];
            }
            _ => {
                out.push_str(&rest[..i + 1]);
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_taken_out_of_messages() {
        assert_eq!(
            strip_position(
                "did not find expected key at line 3 column 1, while parsing a block mapping at line 1 column 1"
            ),
            "did not find expected key, while parsing a block mapping"
        );
        assert_eq!(strip_position("at line x"), "at line x");
    }

    /// Fuzzer input (fuzz/ target cluster_yaml), cut down: a key spanning lines (a lone CR is a
    /// YAML line break) made the unknown-field error three lines long.
    #[test]
    fn errors_quoting_the_file_stay_one_line() {
        let text = "name: lab\nimage: { kernel: vmlinuz, cmdline\r\r\r\re=ttyS0\" }\nnodes: []\n";
        let e = parse_str(text, "fuzz.yaml").unwrap_err().to_string();
        assert!(e.contains("unknown field `cmdline\\n\\n\\ne=ttyS0"), "{e}");
        assert!(!e.contains('\n'), "{e:?}");

        let dir = tempfile::tempdir().unwrap();
        let text = "name: lab\nimage: { kernel: \"no\\nsuch\\u001b[31m\" }\nnodes: [{ name: a }]\n";
        let e = load_str(text, "fuzz.yaml", dir.path(), &Previous::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no\\nsuch\\u{1b}[31m: no such file"), "{e}");
        assert!(!e.contains('\n') && !e.contains('\u{1b}'), "{e:?}");
    }
}
