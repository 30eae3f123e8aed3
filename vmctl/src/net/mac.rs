//! MAC addresses derived from the cluster and node names: stable across restarts and hosts, so a
//! node keeps its DHCP lease, and locally administered, so they never collide with real hardware.

use sha2::{Digest, Sha256};

pub fn derive(cluster: &str, node: &str) -> String {
    let digest = Sha256::digest(format!("vmctl-mac\0{cluster}\0{node}").as_bytes());
    // Locally administered (bit 1 set), unicast (bit 0 clear).
    let first = (digest[0] & 0xfc) | 0x02;
    format!(
        "{first:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        digest[1], digest[2], digest[3], digest[4], digest[5]
    )
}

/// A short stable tag for device names that must fit IFNAMSIZ.
pub fn tag(parts: &[&str]) -> String {
    let digest = Sha256::digest(parts.join("\0").as_bytes());
    hex::encode(&digest[..4])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_unicast_locally_administered() {
        let a = derive("mycluster", "core-1");
        assert_eq!(a, derive("mycluster", "core-1"));
        assert_ne!(a, derive("mycluster", "core-2"));
        assert_ne!(a, derive("other", "core-1"));
        let first = u8::from_str_radix(&a[..2], 16).unwrap();
        assert_eq!(first & 0x01, 0, "unicast");
        assert_eq!(first & 0x02, 0x02, "locally administered");
        assert_eq!(a.len(), 17);
        assert!(
            a.split(':')
                .all(|b| b.len() == 2 && u8::from_str_radix(b, 16).is_ok())
        );
    }
}
