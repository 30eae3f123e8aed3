//! Ethernet MAC addresses: parsing, printing, and the stable default a NIC gets when the user
//! gives none.

use std::fmt;
use std::str::FromStr;

/// QEMU's locally administered prefix; guests and people recognise it as "a VM".
const DEFAULT_OUI: [u8; 3] = [0x52, 0x54, 0x00];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    #[error("'{0}' is not a MAC address; expected six hex octets like 52:54:00:12:34:56")]
    Syntax(String),
    #[error("{0} is a multicast address; a NIC needs a unicast one (first octet even)")]
    Multicast(MacAddr),
    #[error("00:00:00:00:00:00 is not a usable MAC address")]
    Zero,
}

impl MacAddr {
    /// The address a NIC gets without `mac=`: QEMU's 52:54:00 prefix and three bytes of a hash
    /// of `seed` (the TAP name, or "user" and the NIC's index), so the same command line gives
    /// the same MAC every time (DHCP leases and the guest's interface names stay put) and
    /// different TAPs on one bridge get different MACs.
    pub fn stable_default(seed: &str) -> MacAddr {
        let h = fnv1a64(seed.as_bytes()).to_be_bytes();
        MacAddr([
            DEFAULT_OUI[0],
            DEFAULT_OUI[1],
            DEFAULT_OUI[2],
            h[5],
            h[6],
            h[7],
        ])
    }

    /// Refuses what a guest cannot use as its own address.
    pub fn check_unicast(self) -> Result<MacAddr, MacError> {
        if self.0 == [0; 6] {
            return Err(MacError::Zero);
        }
        if self.0[0] & 1 != 0 {
            return Err(MacError::Multicast(self));
        }
        Ok(self)
    }
}

/// FNV-1a: tiny, and fixed forever (std's hasher makes no stability promise across releases).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl FromStr for MacAddr {
    type Err = MacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MacError::Syntax(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let m: MacAddr = "52:54:00:12:34:5A".parse().unwrap();
        assert_eq!(m.0, [0x52, 0x54, 0x00, 0x12, 0x34, 0x5a]);
        assert_eq!(m.to_string(), "52:54:00:12:34:5a");
        assert_eq!("52-54-00-12-34-5a".parse::<MacAddr>().unwrap(), m);
        for bad in [
            "",
            "52:54:00:12:34",
            "52:54:00:12:34:56:78",
            "52:54:00:12:34:5g",
            "525:4:00:12:34:56",
            "+2:54:00:12:34:56",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn unicast_check() {
        assert!(MacAddr([0x53, 0, 0, 0, 0, 1]).check_unicast().is_err());
        assert_eq!(MacAddr([0; 6]).check_unicast(), Err(MacError::Zero));
        assert!(MacAddr([0x52, 0, 0, 0, 0, 1]).check_unicast().is_ok());
    }

    #[test]
    fn default_is_stable_distinct_and_unicast() {
        let a = MacAddr::stable_default("vmtap0");
        // FNV-1a of "vmtap0" computed independently (python); a change here changes every
        // user's DHCP lease.
        assert_eq!(a.to_string(), "52:54:00:1a:a6:e3");
        assert_eq!(a, MacAddr::stable_default("vmtap0"));
        assert_ne!(a, MacAddr::stable_default("vmtap1"));
        assert_ne!(
            MacAddr::stable_default("user0"),
            MacAddr::stable_default("user1")
        );
        assert!(a.check_unicast().is_ok());
    }
}
