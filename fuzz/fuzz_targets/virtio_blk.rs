//! The virtio-blk request parser over every chain of a fuzzer-built queue in guest memory.
//!
//! Invariants: a parsed request's data buffers and status byte lie in guest memory, inside
//! descriptors of the right direction; the data length is their sum; reads and writes are whole
//! sectors inside the disk; a read-only disk never yields a write, flush, discard or
//! write-zeroes; discard/write-zeroes ranges are few and inside the disk; a failure that names
//! a status byte names one in guest memory, in a writable descriptor.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use virtio_queue::QueueT;
use vm_memory::Address;
use vmctl_fuzz::{build, in_memory};
use vmm::virtio::block::request::{
    MAX_RANGE_SECTORS, MAX_RANGES, RequestKind, SECTOR_SIZE, Segment, parse,
};

/// (start, end, writable) of each descriptor of a chain.
type Spans = Vec<(u64, u64, bool)>;

fn inside(spans: &Spans, start: u64, len: u64, writable: bool) -> bool {
    spans
        .iter()
        .any(|&(s, e, w)| w == writable && start >= s && start + len <= e)
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(capacity) = u.arbitrary::<u64>() else {
        return;
    };
    // Mostly a plausible disk; sometimes the extremes.
    let capacity = match capacity % 4 {
        0 => 0,
        1 => u64::MAX >> (capacity % 64),
        _ => capacity % (1 << 24),
    };
    let Ok(read_only) = u.arbitrary::<bool>() else {
        return;
    };
    let Ok(mut s) = build(&mut u) else {
        return;
    };
    for _ in 0..2 * usize::from(s.size) + 2 {
        let Some(chain) = s.queue.pop_descriptor_chain(&s.mem) else {
            break;
        };
        let spans: Spans = chain
            .clone()
            .map(|d| {
                let start = d.addr().raw_value();
                (
                    start,
                    start.saturating_add(u64::from(d.len())),
                    d.is_write_only(),
                )
            })
            .collect();
        match parse(chain, &s.mem, capacity, read_only) {
            Ok(req) => {
                let last = spans.last().expect("a parsed chain has descriptors");
                let status = req.status.raw_value();
                assert!(in_memory(status, 1), "status {status:#x} outside memory");
                assert!(
                    last.2 && status + 1 == last.1,
                    "status is not the last byte of the last writable descriptor"
                );
                let sum: u64 = req.data.iter().map(|d| u64::from(d.len)).sum();
                assert_eq!(u64::from(req.data_len), sum);
                let data_writable = matches!(req.kind, RequestKind::In { .. } | RequestKind::GetId);
                for &Segment { addr, len } in &req.data {
                    let a = addr.raw_value();
                    assert!(len > 0, "empty data segment");
                    assert!(
                        in_memory(a, u64::from(len)),
                        "data {a:#x}+{len} outside memory"
                    );
                    assert!(
                        inside(&spans, a, u64::from(len), data_writable),
                        "data {a:#x}+{len} not inside a descriptor of the right direction"
                    );
                }
                if read_only {
                    assert!(
                        matches!(req.kind, RequestKind::In { .. } | RequestKind::GetId),
                        "read-only disk passed {:?}",
                        req.kind
                    );
                }
                match &req.kind {
                    RequestKind::In { sector } | RequestKind::Out { sector } => {
                        assert_eq!(u64::from(req.data_len) % SECTOR_SIZE, 0);
                        let end = sector
                            .checked_add(u64::from(req.data_len) / SECTOR_SIZE)
                            .expect("sector range overflows");
                        assert!(
                            end <= capacity,
                            "request ends at {end}, disk has {capacity}"
                        );
                        assert!(sector.checked_mul(SECTOR_SIZE).is_some());
                    }
                    RequestKind::GetId => assert!(!req.data.is_empty()),
                    RequestKind::Flush => assert!(req.data.is_empty()),
                    RequestKind::Discard(ranges) | RequestKind::WriteZeroes(ranges) => {
                        assert!(req.data.is_empty());
                        assert!(ranges.len() <= MAX_RANGES as usize);
                        for r in ranges {
                            assert!(r.sectors <= MAX_RANGE_SECTORS);
                            let end = r.sector.checked_add(u64::from(r.sectors));
                            assert!(
                                end.is_some_and(|e| e <= capacity),
                                "range {r:?} past {capacity}"
                            );
                            assert!(r.sector.checked_mul(SECTOR_SIZE).is_some());
                        }
                        if matches!(req.kind, RequestKind::Discard(_)) {
                            assert!(ranges.iter().all(|r| !r.unmap));
                        }
                    }
                }
            }
            Err(f) => {
                if let Some(status) = f.status {
                    let status = status.raw_value();
                    assert!(
                        in_memory(status, 1),
                        "error status {status:#x} outside memory"
                    );
                    assert!(
                        inside(&spans, status, 1, true),
                        "error status not in a writable descriptor"
                    );
                }
                // The status the guest sees is one of the two virtio-blk error codes.
                assert!(matches!(f.error.status(), 1 | 2));
            }
        }
    }
});
