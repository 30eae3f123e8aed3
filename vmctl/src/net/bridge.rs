//! The cluster's bridge: created if missing, MTU set explicitly, gateway address, up.

use std::net::Ipv4Addr;

use super::{NetError, ip};

pub fn ensure(name: &str, mtu: u32, gateway: Ipv4Addr, prefix: u8) -> Result<(), NetError> {
    match ip::link(name)? {
        Some(l) if l.kind() != "bridge" => {
            return Err(NetError::WrongKind {
                name: name.to_string(),
                found: l.kind().to_string(),
                wanted: "bridge",
            });
        }
        Some(_) => {}
        None => {
            ip::run(&["link", "add", "name", name, "type", "bridge"])?;
        }
    }
    set_mtu(name, mtu)?;
    // `replace` makes it idempotent: no error when the address is already there.
    let addr = format!("{gateway}/{prefix}");
    ip::run(&["addr", "replace", &addr, "dev", name])?;
    ip::run(&["link", "set", "dev", name, "up"])?;
    Ok(())
}

/// Setting the MTU by hand also stops the kernel from moving it as ports come and go.
pub fn set_mtu(name: &str, mtu: u32) -> Result<(), NetError> {
    ip::run(&["link", "set", "dev", name, "mtu", &mtu.to_string()])?;
    Ok(())
}

pub fn remove(name: &str) -> Result<(), NetError> {
    match ip::link(name)? {
        Some(l) if l.kind() == "bridge" => {
            ip::run(&["link", "del", "dev", name])?;
            Ok(())
        }
        _ => Ok(()),
    }
}
