//! Host ports for user-mode networking's ssh forwards.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};

/// Forwards live here: above the usual services, below the kernel's ephemeral range.
pub const RANGE: std::ops::RangeInclusive<u16> = 22200..=22999;

/// The first port in [`RANGE`] not in `taken` that can be bound on 127.0.0.1 right now.
pub fn allocate(taken: &BTreeSet<u16>) -> Option<u16> {
    RANGE.filter(|p| !taken.contains(p)).find(|p| is_free(*p))
}

pub fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_taken_and_bound_ports() {
        let first = allocate(&BTreeSet::new()).unwrap();
        let _hold = TcpListener::bind((Ipv4Addr::LOCALHOST, first)).unwrap();
        let second = allocate(&BTreeSet::new()).unwrap();
        assert_ne!(first, second, "a bound port is not free");
        let third = allocate(&[second].into_iter().collect()).unwrap();
        assert_ne!(third, second);
        assert!(RANGE.contains(&third));
    }
}
