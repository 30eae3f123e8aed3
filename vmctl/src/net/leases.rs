//! dnsmasq's lease file: `EXPIRY MAC IP HOSTNAME CLIENT-ID` per line.

use std::net::Ipv4Addr;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub expiry: u64,
    pub mac: String,
    pub ip: Ipv4Addr,
    pub hostname: String,
}

pub fn parse(text: &str) -> Vec<Lease> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(Lease {
                expiry: f.next()?.parse().ok()?,
                mac: f.next()?.to_ascii_lowercase(),
                ip: f.next()?.parse().ok()?,
                hostname: f.next().unwrap_or("*").to_string(),
            })
        })
        .collect()
}

pub fn read(path: &Path) -> Vec<Lease> {
    std::fs::read_to_string(path)
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// The lease handed to `mac`, if any.
pub fn for_mac(path: &Path, mac: &str) -> Option<Lease> {
    read(path)
        .into_iter()
        .find(|l| l.mac.eq_ignore_ascii_case(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dnsmasq_lines() {
        let l =
            parse("1700000000 52:aa:bb:cc:dd:ee 10.77.0.2 core-1 01:52:aa:bb:cc:dd:ee\ngarbage\n");
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].ip, Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!(l[0].hostname, "core-1");
    }
}
