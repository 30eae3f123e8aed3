//! The virtio-net header path, three ways (the first input byte picks):
//! - `header::check` on any header, frame length and offloads: an accepted header satisfies
//!   every rule it was checked for, comes back sanitized, and checks again unchanged;
//! - TX: `tx::gather` over every chain of a fuzzer-built queue: what it returns is the chain's
//!   readable bytes, in order, with a sanitized header that passes the check;
//! - RX: `rx::RxQueue::deliver` of fuzzer-sized frames into the chains the guest posted, then
//!   `rx::publish`: a frame lands whole or not at all, its used entries add up to it, and
//!   nothing in guest memory changes outside the writable descriptors posted and the used ring.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress};
use vmctl_fuzz::{Setup, USED_RING, build, changed, in_memory, snapshot};
use vmm::virtio::net::header::{
    self, ETH_HLEN, MAX_BUFFER_LEN, Offloads, VLAN_HLEN, VNET_HDR_LEN, VirtioNetHdr,
};
use vmm::virtio::net::rx::{Delivery, RxQueue, publish};
use vmm::virtio::net::tx;

const NEEDS_CSUM: u8 = 1;

fn offloads(u: &mut Unstructured) -> arbitrary::Result<Offloads> {
    Ok(Offloads {
        csum: u.arbitrary()?,
        tso4: u.arbitrary()?,
        tso6: u.arbitrary()?,
        mtu: u.arbitrary()?,
    })
}

/// What an accepted header must satisfy, written out from the virtio spec (5.1.6.2).
fn assert_accepted(hdr: &VirtioNetHdr, out: &VirtioNetHdr, frame_len: usize, allowed: &Offloads) {
    assert!(frame_len >= ETH_HLEN);
    assert_eq!(out.flags & !NEEDS_CSUM, 0, "receive-only flags passed");
    assert_eq!(out.num_buffers, 0);
    assert_eq!(
        (
            out.gso_type,
            out.hdr_len,
            out.gso_size,
            out.csum_start,
            out.csum_offset
        ),
        (
            hdr.gso_type,
            hdr.hdr_len,
            hdr.gso_size,
            hdr.csum_start,
            hdr.csum_offset
        )
    );
    if hdr.flags & NEEDS_CSUM != 0 {
        assert!(allowed.csum);
        let end = usize::from(hdr.csum_start) + usize::from(hdr.csum_offset) + 2;
        assert!(end <= frame_len, "checksum at {end} past {frame_len}");
    }
    match hdr.gso_type {
        0 => {
            if let Some(mtu) = allowed.mtu {
                assert!(frame_len <= usize::from(mtu) + ETH_HLEN + VLAN_HLEN);
            }
        }
        1 | 4 => {
            assert!(if hdr.gso_type == 1 {
                allowed.tso4
            } else {
                allowed.tso6
            });
            assert!(hdr.flags & NEEDS_CSUM != 0 && hdr.gso_size > 0);
            assert!(usize::from(hdr.hdr_len) <= frame_len);
        }
        t => panic!("GSO type {t:#x} accepted"),
    }
    // Idempotent: the sanitized header passes as it is.
    assert_eq!(header::check(out, frame_len, allowed), Ok(*out));
}

fn header_mode(u: &mut Unstructured) -> arbitrary::Result<()> {
    let raw: [u8; VNET_HDR_LEN] = u.arbitrary()?;
    let hdr = VirtioNetHdr::from_bytes(&raw);
    assert_eq!(hdr.to_bytes(), raw);
    let frame_len = u.int_in_range(0..=MAX_BUFFER_LEN + 16)?;
    let allowed = offloads(u)?;
    if let Ok(out) = header::check(&hdr, frame_len, &allowed) {
        assert_accepted(&hdr, &out, frame_len, &allowed);
    }
    // check_buffer agrees with check on the same bytes.
    let mut buf = raw.to_vec();
    buf.resize(VNET_HDR_LEN + frame_len.min(4096), 0);
    assert_eq!(
        header::check_buffer(&buf, &allowed),
        header::check(&hdr, buf.len() - VNET_HDR_LEN, &allowed)
    );
    Ok(())
}

fn tx_mode(u: &mut Unstructured) -> arbitrary::Result<()> {
    let allowed = offloads(u)?;
    let Setup {
        mem,
        mut queue,
        size,
    } = build(u)?;
    let mut buf = vec![0u8; MAX_BUFFER_LEN];
    for _ in 0..2 * usize::from(size) + 2 {
        let Some(chain) = queue.pop_descriptor_chain(&mem) else {
            break;
        };
        let descs: Vec<_> = chain.clone().collect();
        if let Ok(len) = tx::gather(chain, &mem, &mut buf, &allowed) {
            assert!((VNET_HDR_LEN..=MAX_BUFFER_LEN).contains(&len));
            // The bytes are the chain's, in order (the header sanitized).
            let mut expect = Vec::new();
            for d in &descs {
                assert!(!d.is_write_only());
                let a = d.addr().raw_value();
                assert!(
                    in_memory(a, u64::from(d.len())),
                    "{a:#x}+{} outside",
                    d.len()
                );
                let mut part = vec![0u8; d.len() as usize];
                mem.read_slice(&mut part, d.addr())
                    .expect("checked in memory");
                expect.extend_from_slice(&part);
            }
            assert_eq!(expect.len(), len);
            assert_eq!(buf[VNET_HDR_LEN..len], expect[VNET_HDR_LEN..]);
            let raw: [u8; VNET_HDR_LEN] = expect[..VNET_HDR_LEN].try_into().expect("12 bytes");
            let sent: [u8; VNET_HDR_LEN] = buf[..VNET_HDR_LEN].try_into().expect("12 bytes");
            assert_accepted(
                &VirtioNetHdr::from_bytes(&raw),
                &VirtioNetHdr::from_bytes(&sent),
                len - VNET_HDR_LEN,
                &allowed,
            );
        }
    }
    Ok(())
}

fn rx_mode(u: &mut Unstructured) -> arbitrary::Result<()> {
    let mergeable: bool = u.arbitrary()?;
    let frames: Vec<u16> = (0..u.int_in_range(1..=4)?)
        .map(|_| u.int_in_range(0..=0x3000))
        .collect::<arbitrary::Result<_>>()?;
    let fill: u8 = u.arbitrary()?;
    let Setup {
        mem,
        mut queue,
        size,
    } = build(u)?;

    // Every writable byte the guest could have posted, walking the same chains on a copy.
    let mut shadow = Queue::try_from(queue.state()).expect("valid state");
    let mut writable: Vec<(u64, u64)> = Vec::new();
    let mut reads_rings = false;
    while let Some(chain) = shadow.pop_descriptor_chain(&mem) {
        for d in chain {
            let a = d.addr().raw_value();
            if d.is_write_only() {
                writable.push((a, a.saturating_add(u64::from(d.len()))));
            }
            if d.refers_to_indirect_table() {
                reads_rings = true;
            }
        }
    }
    // A buffer over the rings or an indirect table changes what later pops see; the memory
    // check then no longer has a fixed reference and is skipped (the others still hold).
    let overlaps_rings = writable.iter().any(|&(s, _)| s < vmctl_fuzz::RINGS_END);
    let exact = !overlaps_rings && !reads_rings;

    let before = snapshot(&mem);
    let mut rx = RxQueue::new();
    let mut used = Vec::new();
    for (n, &len) in frames.iter().enumerate() {
        let mut frame = vec![fill.wrapping_add(n as u8); usize::from(len).max(VNET_HDR_LEN)];
        let start = used.len();
        match rx.deliver(&mut queue, &mem, &mut frame, mergeable, &mut used) {
            Delivery::Delivered => {
                let entries = &used[start..];
                assert!(!entries.is_empty());
                if !mergeable {
                    assert_eq!(entries.len(), 1);
                }
                let total: u64 = entries.iter().map(|(_, l)| u64::from(*l)).sum();
                assert_eq!(total, frame.len() as u64, "frame split into {entries:?}");
                let nb = u16::from_le_bytes([frame[10], frame[11]]);
                assert_eq!(usize::from(nb), entries.len(), "num_buffers");
                for (head, _) in entries {
                    assert!(*head < size, "used head {head} of a queue of {size}");
                }
            }
            Delivery::NoRoom | Delivery::TooBig => assert_eq!(used.len(), start),
        }
    }
    for (head, _) in rx.take_bad() {
        used.push((head, 0));
    }
    let old_used = queue.next_used();
    publish(&mut queue, &mem, &used).expect("used ring is in memory");
    assert_eq!(queue.next_used(), old_used.wrapping_add(used.len() as u16));
    let idx: u16 = mem
        .read_obj(GuestAddress(USED_RING + 2))
        .expect("in memory");
    assert_eq!(idx, queue.next_used());
    if exact {
        let used_ring = USED_RING..USED_RING + 4 + 8 * u64::from(size) + 2;
        for at in changed(&before, &snapshot(&mem)) {
            assert!(
                used_ring.contains(&at) || writable.iter().any(|&(s, e)| s <= at && at < e),
                "RX wrote {at:#x}, outside every buffer the guest posted"
            );
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = match u.int_in_range(0u8..=2) {
        Ok(0) => header_mode(&mut u),
        Ok(1) => tx_mode(&mut u),
        Ok(_) => rx_mode(&mut u),
        Err(_) => return,
    };
});
