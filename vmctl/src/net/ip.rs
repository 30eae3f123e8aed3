//! Runs iproute2's `ip`, the kernel's own interface to links, addresses and TAPs, and reads its
//! JSON output.

use std::process::Command;

use serde::Deserialize;

use super::NetError;

#[derive(Debug, Deserialize)]
pub struct Link {
    pub ifname: String,
    pub mtu: u32,
    #[serde(default)]
    pub master: Option<String>,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub linkinfo: Option<LinkInfo>,
}

#[derive(Debug, Deserialize)]
pub struct LinkInfo {
    #[serde(default)]
    pub info_kind: Option<String>,
    #[serde(default)]
    pub info_data: Option<serde_json::Value>,
}

impl Link {
    pub fn kind(&self) -> &str {
        self.linkinfo
            .as_ref()
            .and_then(|l| l.info_kind.as_deref())
            .unwrap_or("plain device")
    }
    pub fn is_up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP")
    }
}

pub fn run(args: &[&str]) -> Result<String, NetError> {
    tracing::debug!("ip {}", args.join(" "));
    let out = Command::new("ip").args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            NetError::NoIp
        } else {
            NetError::Ip {
                args: args.join(" "),
                message: e.to_string(),
            }
        }
    })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let message = String::from_utf8_lossy(&out.stderr)
        .trim()
        .replace('\n', "; ");
    if message.contains("Operation not permitted") {
        return Err(NetError::NotPermitted {
            what: args.join(" "),
        });
    }
    Err(NetError::Ip {
        args: args.join(" "),
        message,
    })
}

/// The link called `name`, if there is one.
pub fn link(name: &str) -> Result<Option<Link>, NetError> {
    let out = Command::new("ip")
        .args(["-j", "-d", "link", "show", "dev", name])
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => NetError::NoIp,
            _ => NetError::Ip {
                args: format!("link show dev {name}"),
                message: e.to_string(),
            },
        })?;
    if !out.status.success() {
        // "Device does not exist" is the normal answer for a link not made yet.
        return Ok(None);
    }
    let links: Vec<Link> = serde_json::from_slice(&out.stdout).map_err(|e| NetError::Ip {
        args: format!("-j link show dev {name}"),
        message: format!("unexpected output: {e}"),
    })?;
    Ok(links.into_iter().next())
}
