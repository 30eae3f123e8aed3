//! Turns a virtio-blk descriptor chain into a typed request, or says precisely what is wrong
//! with it. A pure function of the descriptors, guest memory and the disk size: no I/O, so it
//! can be unit-tested and fuzzed without KVM or a disk.
//!
//! Layout (virtio 1.x, 5.2.6): a 16-byte header (type, reserved, sector) in readable memory,
//! then data (readable for writes, writable for reads), then one status byte: the last byte of
//! the last, writable, descriptor.

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend};

pub const SECTOR_SHIFT: u32 = 9;
pub const SECTOR_SIZE: u64 = 1 << SECTOR_SHIFT;
const HEADER_SIZE: u32 = 16;
/// Size of one discard / write-zeroes range (sector u64, num_sectors u32, flags u32).
const RANGE_SIZE: u32 = 16;
/// Most ranges per discard / write-zeroes request; advertised in the config space.
pub const MAX_RANGES: u32 = 32;
/// Most sectors per discard / write-zeroes range; advertised in the config space.
pub const MAX_RANGE_SECTORS: u32 = u32::MAX >> SECTOR_SHIFT;

/// A span of guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub addr: GuestAddress,
    pub len: u32,
}

/// One range of a discard or write-zeroes request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectorRange {
    pub sector: u64,
    pub sectors: u32,
    pub unmap: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// Read from the disk into `data`.
    In {
        sector: u64,
    },
    /// Write `data` to the disk.
    Out {
        sector: u64,
    },
    Flush,
    /// Write the device ID (serial) into `data`.
    GetId,
    Discard(Vec<SectorRange>),
    WriteZeroes(Vec<SectorRange>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub kind: RequestKind,
    /// Data buffers in order, excluding header and status.
    pub data: Vec<Segment>,
    pub data_len: u32,
    pub status: GuestAddress,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("descriptor chain is empty")]
    EmptyChain,
    #[error("descriptor chain loops, is longer than the queue, or links outside the table")]
    BrokenChain,
    #[error("descriptor at {addr:#x} with length {len} is outside guest memory")]
    OutsideMemory { addr: u64, len: u32 },
    #[error("request header is in a write-only descriptor")]
    HeaderWriteOnly,
    #[error("request header needs 16 bytes, the first descriptor has {0}")]
    HeaderTooShort(u32),
    #[error("no writable status byte at the end of the chain")]
    NoStatus,
    #[error("a readable descriptor follows a writable one")]
    ReadableAfterWritable,
    #[error("unsupported request type {0}")]
    UnsupportedType(u32),
    #[error("{0} data is in buffers of the wrong direction")]
    DataDirection(&'static str),
    #[error("data length {0} is not a multiple of 512")]
    NotSectorMultiple(u32),
    #[error("sector {sector} + {sectors} sectors is past the end of the disk ({capacity} sectors)")]
    BeyondEnd {
        sector: u64,
        sectors: u64,
        capacity: u64,
    },
    #[error("range table of {0} bytes is not a whole number of 16-byte ranges")]
    BadRangeTable(u32),
    #[error("{0} ranges in one request; at most {MAX_RANGES} are allowed")]
    TooManyRanges(u32),
    #[error("range flags {0:#x} are not supported")]
    RangeFlags(u32),
    #[error("write to a read-only disk")]
    ReadOnly,
}

impl RequestError {
    /// The status the driver gets: UNSUPP for what we do not implement, IOERR otherwise.
    pub fn status(&self) -> u8 {
        match self {
            RequestError::UnsupportedType(_) | RequestError::RangeFlags(_) => {
                virtio_bindings::virtio_blk::VIRTIO_BLK_S_UNSUPP as u8
            }
            _ => virtio_bindings::virtio_blk::VIRTIO_BLK_S_IOERR as u8,
        }
    }
}

/// A request that could not be parsed, with where to report that (if anywhere).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseFailure {
    pub error: RequestError,
    pub status: Option<GuestAddress>,
}

struct Desc {
    addr: GuestAddress,
    len: u32,
    writable: bool,
}

fn check_memory<M: GuestMemoryBackend>(
    mem: &M,
    addr: GuestAddress,
    len: u32,
) -> Result<(), RequestError> {
    let outside = RequestError::OutsideMemory {
        addr: addr.raw_value(),
        len,
    };
    addr.checked_add(u64::from(len)).ok_or(outside.clone())?;
    if len > 0 && !mem.check_range(addr, len as usize) {
        return Err(outside);
    }
    Ok(())
}

/// Reads the chain into a list, detecting chains cut short by a loop or a bad link.
fn collect(chain: impl IntoIterator<Item = Descriptor>) -> Result<Vec<Desc>, RequestError> {
    let mut descs = Vec::new();
    let mut last_has_next = false;
    for d in chain {
        last_has_next = d.has_next();
        descs.push(Desc {
            addr: d.addr(),
            len: d.len(),
            writable: d.is_write_only(),
        });
    }
    if descs.is_empty() {
        return Err(RequestError::EmptyChain);
    }
    // The iterator stops early (TTL, bad index, unreadable table) while the descriptor it
    // returned last still says "more follows".
    if last_has_next {
        return Err(RequestError::BrokenChain);
    }
    Ok(descs)
}

fn fail(error: RequestError, status: Option<GuestAddress>) -> ParseFailure {
    ParseFailure { error, status }
}

/// Parses one chain. `capacity` is the disk size in sectors.
pub fn parse<M: GuestMemoryBackend>(
    chain: impl IntoIterator<Item = Descriptor>,
    mem: &M,
    capacity: u64,
    read_only: bool,
) -> Result<Request, ParseFailure> {
    let descs = collect(chain).map_err(|e| fail(e, None))?;

    // Status: last byte of the last descriptor, which must be writable and in memory.
    let last = descs.last().ok_or(fail(RequestError::EmptyChain, None))?;
    if !last.writable || last.len == 0 {
        return Err(fail(RequestError::NoStatus, None));
    }
    check_memory(mem, last.addr, last.len).map_err(|e| fail(e, None))?;
    let status = last.addr.unchecked_add(u64::from(last.len) - 1);
    let err = |e: RequestError| fail(e, Some(status));

    for d in &descs {
        check_memory(mem, d.addr, d.len).map_err(err)?;
    }
    let first = &descs[0];
    if first.writable {
        return Err(err(RequestError::HeaderWriteOnly));
    }
    if first.len < HEADER_SIZE {
        return Err(err(RequestError::HeaderTooShort(first.len)));
    }
    let request_type: u32 = mem.read_obj(first.addr).map_err(|_| {
        err(RequestError::OutsideMemory {
            addr: first.addr.raw_value(),
            len: first.len,
        })
    })?;
    let sector: u64 = mem
        .read_obj(first.addr.unchecked_add(8))
        .map_err(|_| err(RequestError::HeaderTooShort(first.len)))?;

    // Everything between header and status, split by direction.
    let mut readable = Vec::new();
    let mut writable = Vec::new();
    let n = descs.len();
    for (i, d) in descs.iter().enumerate() {
        let (start, mut len) = if i == 0 {
            (HEADER_SIZE, d.len - HEADER_SIZE)
        } else {
            (0, d.len)
        };
        if i == n - 1 {
            // The status byte is not data.
            len = len.saturating_sub(1);
        }
        if len == 0 {
            continue;
        }
        let seg = Segment {
            addr: d.addr.unchecked_add(u64::from(start)),
            len,
        };
        if d.writable {
            writable.push(seg);
        } else {
            if !writable.is_empty() {
                return Err(err(RequestError::ReadableAfterWritable));
            }
            readable.push(seg);
        }
    }
    let total = |segs: &[Segment]| -> Result<u32, ParseFailure> {
        segs.iter()
            .try_fold(0u32, |acc, s| acc.checked_add(s.len))
            .ok_or(err(RequestError::BrokenChain))
    };

    let (kind, data) = match request_type {
        VIRTIO_BLK_T_IN | VIRTIO_BLK_T_OUT => {
            let is_read = request_type == VIRTIO_BLK_T_IN;
            let (data, wrong) = if is_read {
                (writable, readable)
            } else {
                (readable, writable)
            };
            if !wrong.is_empty() {
                return Err(err(RequestError::DataDirection(if is_read {
                    "read"
                } else {
                    "write"
                })));
            }
            if !is_read && read_only {
                return Err(err(RequestError::ReadOnly));
            }
            let len = total(&data)?;
            if u64::from(len) % SECTOR_SIZE != 0 {
                return Err(err(RequestError::NotSectorMultiple(len)));
            }
            let sectors = u64::from(len) >> SECTOR_SHIFT;
            check_range(sector, sectors, capacity).map_err(err)?;
            let kind = if is_read {
                RequestKind::In { sector }
            } else {
                RequestKind::Out { sector }
            };
            (kind, data)
        }
        VIRTIO_BLK_T_FLUSH => {
            if read_only {
                return Err(err(RequestError::ReadOnly));
            }
            (RequestKind::Flush, Vec::new())
        }
        VIRTIO_BLK_T_GET_ID => {
            if !readable.is_empty() || writable.is_empty() {
                return Err(err(RequestError::DataDirection("get-id")));
            }
            (RequestKind::GetId, writable)
        }
        VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES => {
            if read_only {
                return Err(err(RequestError::ReadOnly));
            }
            if !writable.is_empty() {
                return Err(err(RequestError::DataDirection("discard")));
            }
            let ranges = parse_ranges(mem, &readable, total(&readable)?, capacity).map_err(err)?;
            if request_type == VIRTIO_BLK_T_DISCARD {
                if let Some(r) = ranges.iter().find(|r| r.unmap) {
                    return Err(err(RequestError::RangeFlags(u32::from(r.unmap))));
                }
                (RequestKind::Discard(ranges), Vec::new())
            } else {
                (RequestKind::WriteZeroes(ranges), Vec::new())
            }
        }
        t => return Err(err(RequestError::UnsupportedType(t))),
    };
    let data_len = total(&data)?;
    Ok(Request {
        kind,
        data,
        data_len,
        status,
    })
}

fn check_range(sector: u64, sectors: u64, capacity: u64) -> Result<(), RequestError> {
    let beyond = RequestError::BeyondEnd {
        sector,
        sectors,
        capacity,
    };
    // sector * 512 must not overflow either: the byte offset is computed from it later.
    let end = sector.checked_add(sectors).ok_or(beyond.clone())?;
    if end > capacity || sector.checked_mul(SECTOR_SIZE).is_none() {
        return Err(beyond);
    }
    Ok(())
}

/// Reads the discard / write-zeroes range table from the (readable) data segments.
fn parse_ranges<M: GuestMemoryBackend>(
    mem: &M,
    segs: &[Segment],
    len: u32,
    capacity: u64,
) -> Result<Vec<SectorRange>, RequestError> {
    if len == 0 || !len.is_multiple_of(RANGE_SIZE) {
        return Err(RequestError::BadRangeTable(len));
    }
    let count = len / RANGE_SIZE;
    if count > MAX_RANGES {
        return Err(RequestError::TooManyRanges(count));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    for s in segs {
        let mut buf = vec![0u8; s.len as usize];
        mem.read_slice(&mut buf, s.addr)
            .map_err(|_| RequestError::OutsideMemory {
                addr: s.addr.raw_value(),
                len: s.len,
            })?;
        bytes.extend_from_slice(&buf);
    }
    let mut out = Vec::with_capacity(count as usize);
    for raw in bytes.chunks_exact(RANGE_SIZE as usize) {
        let sector = u64::from_le_bytes(raw[0..8].try_into().unwrap_or_default());
        let sectors = u32::from_le_bytes(raw[8..12].try_into().unwrap_or_default());
        let flags = u32::from_le_bytes(raw[12..16].try_into().unwrap_or_default());
        if flags & !VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0 {
            return Err(RequestError::RangeFlags(flags));
        }
        if sectors > MAX_RANGE_SECTORS {
            return Err(RequestError::BeyondEnd {
                sector,
                sectors: u64::from(sectors),
                capacity,
            });
        }
        check_range(sector, u64::from(sectors), capacity)?;
        out.push(SectorRange {
            sector,
            sectors,
            unmap: flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::GuestMemoryMmap;
    use crate::virtio::test_utils::{R, TestQueue, W};

    const CAP: u64 = 2048; // 1 MiB disk

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn header(mem: &GuestMemoryMmap, at: u64, t: u32, sector: u64) {
        mem.write_obj(t, GuestAddress(at)).unwrap();
        mem.write_obj(0u32, GuestAddress(at + 4)).unwrap();
        mem.write_obj(sector, GuestAddress(at + 8)).unwrap();
    }

    fn parse_chain(
        mem: &GuestMemoryMmap,
        descs: &[(u64, u32, u16)],
        cap: u64,
        ro: bool,
    ) -> Result<Request, ParseFailure> {
        let mut q = TestQueue::new(mem, 16);
        q.add_chain(descs);
        let chain = q.pop().expect("chain");
        parse(chain, mem, cap, ro)
    }

    #[test]
    fn linux_style_read() {
        let m = mem();
        header(&m, 0x8000, VIRTIO_BLK_T_IN, 8);
        let r = parse_chain(
            &m,
            &[(0x8000, 16, R), (0x9000, 4096, W), (0xa000, 1, W)],
            CAP,
            false,
        )
        .unwrap();
        assert_eq!(r.kind, RequestKind::In { sector: 8 });
        assert_eq!(
            r.data,
            vec![Segment {
                addr: GuestAddress(0x9000),
                len: 4096
            }]
        );
        assert_eq!(r.data_len, 4096);
        assert_eq!(r.status, GuestAddress(0xa000));
    }

    #[test]
    fn write_with_header_data_and_status_merged() {
        let m = mem();
        header(&m, 0x8000, VIRTIO_BLK_T_OUT, 0);
        // Header and 512 data bytes in one descriptor; status at the end of the last one.
        let r = parse_chain(&m, &[(0x8000, 16 + 512, R), (0x9000, 1, W)], CAP, false).unwrap();
        assert_eq!(r.kind, RequestKind::Out { sector: 0 });
        assert_eq!(
            r.data,
            vec![Segment {
                addr: GuestAddress(0x8010),
                len: 512
            }]
        );
        // Read with data and status in one writable descriptor.
        header(&m, 0x8000, VIRTIO_BLK_T_IN, 1);
        let r = parse_chain(&m, &[(0x8000, 16, R), (0x9000, 513, W)], CAP, false).unwrap();
        assert_eq!(
            r.data,
            vec![Segment {
                addr: GuestAddress(0x9000),
                len: 512
            }]
        );
        assert_eq!(r.status, GuestAddress(0x9200));
    }

    #[test]
    fn past_the_end_and_overflowing_sectors_are_refused() {
        let m = mem();
        header(&m, 0x8000, VIRTIO_BLK_T_IN, CAP - 1);
        let e = parse_chain(
            &m,
            &[(0x8000, 16, R), (0x9000, 1024, W), (0xa000, 1, W)],
            CAP,
            false,
        )
        .unwrap_err();
        assert!(matches!(e.error, RequestError::BeyondEnd { .. }), "{e:?}");
        assert_eq!(e.status, Some(GuestAddress(0xa000)));
        header(&m, 0x8000, VIRTIO_BLK_T_IN, u64::MAX);
        let e = parse_chain(
            &m,
            &[(0x8000, 16, R), (0x9000, 512, W), (0xa000, 1, W)],
            u64::MAX,
            false,
        )
        .unwrap_err();
        assert!(matches!(e.error, RequestError::BeyondEnd { .. }));
        header(&m, 0x8000, VIRTIO_BLK_T_IN, u64::MAX / 256);
        let e = parse_chain(
            &m,
            &[(0x8000, 16, R), (0x9000, 512, W), (0xa000, 1, W)],
            u64::MAX,
            false,
        )
        .unwrap_err();
        assert!(
            matches!(e.error, RequestError::BeyondEnd { .. }),
            "sector*512 overflows"
        );
        // The last sector exactly is fine.
        header(&m, 0x8000, VIRTIO_BLK_T_IN, CAP - 1);
        parse_chain(
            &m,
            &[(0x8000, 16, R), (0x9000, 512, W), (0xa000, 1, W)],
            CAP,
            false,
        )
        .unwrap();
    }

    #[test]
    fn buffers_outside_memory_are_refused() {
        let m = mem();
        header(&m, 0x8000, VIRTIO_BLK_T_IN, 0);
        let e = parse_chain(
            &m,
            &[(0x8000, 16, R), (0xff000, 0x2000, W), (0xa000, 1, W)],
            CAP,
            false,
        )
        .unwrap_err();
        assert_eq!(
            e.error,
            RequestError::OutsideMemory {
                addr: 0xff000,
                len: 0x2000
            }
        );
        let e = parse_chain(
            &m,
            &[(0x8000, 16, R), (u64::MAX - 8, 512, W), (0xa000, 1, W)],
            CAP,
            false,
        )
        .unwrap_err();
        assert!(matches!(e.error, RequestError::OutsideMemory { .. }));
        // Status outside memory: nowhere to report.
        let e = parse_chain(
            &m,
            &[(0x8000, 16, R), (0x9000, 512, W), (0x4000_0000, 1, W)],
            CAP,
            false,
        )
        .unwrap_err();
        assert_eq!(e.status, None);
    }

    #[test]
    fn malformed_chains() {
        let m = mem();
        header(&m, 0x8000, VIRTIO_BLK_T_IN, 0);
        let e = parse_chain(&m, &[(0x8000, 16, R), (0x9000, 512, W)], CAP, false).unwrap_err();
        // A 512-byte writable last descriptor holds 511 data bytes and the status byte.
        assert_eq!(e.error, RequestError::NotSectorMultiple(511));
        let e = parse_chain(
            &m,
            &[(0x8000, 16, R), (0x9000, 511, W), (0xa000, 1, W)],
            CAP,
            false,
        )
        .unwrap_err();
        assert_eq!(e.error, RequestError::NotSectorMultiple(511));
        let e = parse_chain(&m, &[(0x8000, 16, R), (0x9000, 512, R)], CAP, false).unwrap_err();
        assert_eq!(e.error, RequestError::NoStatus);
        let e = parse_chain(&m, &[(0x8000, 8, R), (0xa000, 1, W)], CAP, false).unwrap_err();
        assert_eq!(e.error, RequestError::HeaderTooShort(8));
        let e = parse_chain(&m, &[(0x8000, 16, W), (0xa000, 1, W)], CAP, false).unwrap_err();
        assert_eq!(e.error, RequestError::HeaderWriteOnly);
        let e = parse_chain(
            &m,
            &[
                (0x8000, 16, R),
                (0x9000, 512, W),
                (0x9800, 512, R),
                (0xa000, 1, W),
            ],
            CAP,
            false,
        )
        .unwrap_err();
        assert_eq!(e.error, RequestError::ReadableAfterWritable);
        let e = parse_chain(
            &m,
            &[(0x8000, 16, R), (0x9000, 512, R), (0xa000, 1, W)],
            CAP,
            false,
        )
        .unwrap_err();
        assert_eq!(e.error, RequestError::DataDirection("read"));
        header(&m, 0x8000, 0x99, 0);
        let e = parse_chain(&m, &[(0x8000, 16, R), (0xa000, 1, W)], CAP, false).unwrap_err();
        assert_eq!(e.error, RequestError::UnsupportedType(0x99));
        assert_eq!(e.error.status(), 2);
    }

    #[test]
    fn descriptor_loop_is_detected() {
        let m = mem();
        header(&m, 0x8000, VIRTIO_BLK_T_IN, 0);
        let mut q = TestQueue::new(&m, 8);
        q.add_looping_chain(0x8000, 16);
        let chain = q.pop().unwrap();
        let e = parse(chain, &m, CAP, false).unwrap_err();
        assert_eq!(
            e,
            ParseFailure {
                error: RequestError::BrokenChain,
                status: None
            }
        );
    }

    #[test]
    fn read_only_disks_refuse_every_write_kind() {
        let m = mem();
        for t in [
            VIRTIO_BLK_T_OUT,
            VIRTIO_BLK_T_FLUSH,
            VIRTIO_BLK_T_DISCARD,
            VIRTIO_BLK_T_WRITE_ZEROES,
        ] {
            header(&m, 0x8000, t, 0);
            let e = parse_chain(
                &m,
                &[(0x8000, 16, R), (0x9000, 512, R), (0xa000, 1, W)],
                CAP,
                true,
            )
            .unwrap_err();
            assert_eq!(e.error, RequestError::ReadOnly, "type {t}");
            assert_eq!(e.error.status(), 1);
        }
        header(&m, 0x8000, VIRTIO_BLK_T_IN, 0);
        parse_chain(
            &m,
            &[(0x8000, 16, R), (0x9000, 512, W), (0xa000, 1, W)],
            CAP,
            true,
        )
        .unwrap();
    }

    #[test]
    fn discard_and_write_zeroes_ranges() {
        let m = mem();
        let range = |at: u64, sector: u64, n: u32, flags: u32| {
            m.write_obj(sector, GuestAddress(at)).unwrap();
            m.write_obj(n, GuestAddress(at + 8)).unwrap();
            m.write_obj(flags, GuestAddress(at + 12)).unwrap();
        };
        header(&m, 0x8000, VIRTIO_BLK_T_WRITE_ZEROES, 0);
        range(0x9000, 8, 8, 1);
        range(0x9010, 100, 4, 0);
        let r = parse_chain(
            &m,
            &[(0x8000, 16, R), (0x9000, 32, R), (0xa000, 1, W)],
            CAP,
            false,
        )
        .unwrap();
        assert_eq!(
            r.kind,
            RequestKind::WriteZeroes(vec![
                SectorRange {
                    sector: 8,
                    sectors: 8,
                    unmap: true
                },
                SectorRange {
                    sector: 100,
                    sectors: 4,
                    unmap: false
                },
            ])
        );
        header(&m, 0x8000, VIRTIO_BLK_T_DISCARD, 0);
        let e = parse_chain(
            &m,
            &[(0x8000, 16, R), (0x9000, 32, R), (0xa000, 1, W)],
            CAP,
            false,
        )
        .unwrap_err();
        assert_eq!(
            e.error,
            RequestError::RangeFlags(1),
            "discard has no unmap flag"
        );
        range(0x9000, CAP - 1, 2, 0);
        let e = parse_chain(
            &m,
            &[(0x8000, 16, R), (0x9000, 16, R), (0xa000, 1, W)],
            CAP,
            false,
        )
        .unwrap_err();
        assert!(matches!(e.error, RequestError::BeyondEnd { .. }));
        let e = parse_chain(
            &m,
            &[(0x8000, 16, R), (0x9000, 20, R), (0xa000, 1, W)],
            CAP,
            false,
        )
        .unwrap_err();
        assert_eq!(e.error, RequestError::BadRangeTable(20));
        let e = parse_chain(
            &m,
            &[(0x8000, 16, R), (0x9000, 16 * 33, R), (0xa000, 1, W)],
            CAP,
            false,
        )
        .unwrap_err();
        assert_eq!(e.error, RequestError::TooManyRanges(33));
    }

    #[test]
    fn get_id_wants_a_writable_buffer() {
        let m = mem();
        header(&m, 0x8000, VIRTIO_BLK_T_GET_ID, 0);
        let r = parse_chain(
            &m,
            &[(0x8000, 16, R), (0x9000, 20, W), (0xa000, 1, W)],
            CAP,
            true,
        )
        .unwrap();
        assert_eq!(r.kind, RequestKind::GetId);
        assert_eq!(r.data_len, 20);
        let e = parse_chain(&m, &[(0x8000, 16, R), (0xa000, 1, W)], CAP, false).unwrap_err();
        assert_eq!(e.error, RequestError::DataDirection("get-id"));
    }
}
