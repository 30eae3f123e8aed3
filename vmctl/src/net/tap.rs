//! One persistent TAP per node, owned by the invoking user so the VMM opens it without root,
//! with vnet headers for the VMM's offloads, the cluster MTU set before it joins the bridge.

use super::{NetError, ip};

pub fn ensure(name: &str, bridge: &str, mtu: u32, owner: (u32, u32)) -> Result<(), NetError> {
    match ip::link(name)? {
        Some(l) if l.kind() != "tun" => {
            return Err(NetError::WrongKind {
                name: name.to_string(),
                found: l.kind().to_string(),
                wanted: "TAP device",
            });
        }
        Some(_) => {}
        None => {
            ip::run(&[
                "tuntap",
                "add",
                "dev",
                name,
                "mode",
                "tap",
                "user",
                &owner.0.to_string(),
                "group",
                &owner.1.to_string(),
                "vnet_hdr",
            ])?;
        }
    }
    // The MTU first: a port joining with a smaller MTU would otherwise pull the bridge down to it.
    ip::run(&["link", "set", "dev", name, "mtu", &mtu.to_string()])?;
    ip::run(&["link", "set", "dev", name, "master", bridge])?;
    ip::run(&["link", "set", "dev", name, "up"])?;
    Ok(())
}

pub fn remove(name: &str) -> Result<(), NetError> {
    match ip::link(name)? {
        Some(l) if l.kind() == "tun" => {
            ip::run(&["tuntap", "del", "dev", name, "mode", "tap"])?;
            Ok(())
        }
        _ => Ok(()),
    }
}
