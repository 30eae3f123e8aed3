//! What several fuzz targets share: guest memory with a hole and a region seam, and a split
//! virtqueue in it whose descriptors, avail ring and data the fuzzer writes.
//!
//! Descriptor addresses and lengths are drawn mostly from values that land in or near guest
//! memory (random 64-bit addresses would almost never reach a parser's deeper checks), with raw
//! values still possible.

use arbitrary::{Result, Unstructured};
use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

pub type Mem = vm_memory::GuestMemoryMmap<()>;

/// Region A: rings, then data.
pub const A: (u64, u64) = (0, 0x1_0000);
/// Regions B and C are adjacent: a buffer may straddle the seam and is still in memory.
pub const B: (u64, u64) = (0x2_0000, 0x3_0000);
pub const C: (u64, u64) = (0x3_0000, 0x3_1000);
/// Between A and B: a hole.
pub const DESC_TABLE: u64 = 0x0;
pub const AVAIL_RING: u64 = 0x1000;
pub const USED_RING: u64 = 0x2000;
/// First byte past the rings (a queue of 256 fits below it).
pub const RINGS_END: u64 = 0x3000;

pub fn memory() -> Mem {
    Mem::from_ranges(&[
        (GuestAddress(A.0), (A.1 - A.0) as usize),
        (GuestAddress(B.0), (B.1 - B.0) as usize),
        (GuestAddress(C.0), (C.1 - C.0) as usize),
    ])
    .expect("fixed layout maps")
}

/// Whether `[addr, addr + len)` lies in guest memory, computed from the layout alone (not
/// with vm-memory, which the code under test uses).
pub fn in_memory(addr: u64, len: u64) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    if len == 0 {
        return true;
    }
    (addr >= A.0 && end <= A.1) || (addr >= B.0 && end <= C.1)
}

/// A descriptor address: mostly in or at the edges of memory.
pub fn addr(u: &mut Unstructured) -> Result<u64> {
    Ok(match u.int_in_range(0u8..=5)? {
        0 => RINGS_END + u.int_in_range(0..=A.1 - RINGS_END - 1)?,
        1 => B.0 + u.int_in_range(0..=C.1 - B.0 - 1)?,
        2 => A.1 - u.int_in_range(0..=64u64)?,
        3 => C.1 - u.int_in_range(0..=64u64)?,
        4 => u.int_in_range(0..=RINGS_END)?,
        _ => u.arbitrary()?,
    })
}

/// A descriptor length: small, sector multiples, or anything.
pub fn len(u: &mut Unstructured) -> Result<u32> {
    Ok(match u.int_in_range(0u8..=3)? {
        0 => u.int_in_range(0..=64)?,
        1 => 512 * u.int_in_range(0..=16u32)?,
        2 => u.int_in_range(0..=0x2000)?,
        _ => u.arbitrary()?,
    })
}

fn flags(u: &mut Unstructured) -> Result<u16> {
    let (n, w, i) = (
        VRING_DESC_F_NEXT as u16,
        VRING_DESC_F_WRITE as u16,
        VRING_DESC_F_INDIRECT as u16,
    );
    Ok(match u.int_in_range(0u8..=6)? {
        0 => 0,
        1 => n,
        2 => w,
        3 => n | w,
        4 => i,
        5 => i | n,
        _ => u.arbitrary()?,
    })
}

pub struct Setup {
    pub mem: Mem,
    pub queue: Queue,
    pub size: u16,
}

/// Builds a ready queue of a fuzzer-chosen size with fuzzer-chosen descriptors, avail ring
/// and index, an indirect table's worth of descriptors in the data area, and the rest of the
/// input written over the data areas.
pub fn build(u: &mut Unstructured) -> Result<Setup> {
    let mem = memory();
    let size = 1u16 << u.int_in_range(0..=8)?;
    let mut queue = Queue::new(256).expect("256 is a valid queue size");
    queue.set_size(size);
    queue.set_desc_table_address(Some(DESC_TABLE as u32), Some(0));
    queue.set_avail_ring_address(Some(AVAIL_RING as u32), Some(0));
    queue.set_used_ring_address(Some(USED_RING as u32), Some(0));
    queue.set_event_idx(u.arbitrary()?);
    queue.set_ready(true);

    let write_desc = |at: u64, u: &mut Unstructured, i: u16, n: u16| -> Result<()> {
        let a = addr(u)?;
        let l = len(u)?;
        let f = flags(u)?;
        let next = if u.ratio(7u8, 8)? {
            (i + 1) % n.max(1)
        } else {
            u.arbitrary()?
        };
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&a.to_le_bytes());
        raw[8..12].copy_from_slice(&l.to_le_bytes());
        raw[12..14].copy_from_slice(&f.to_le_bytes());
        raw[14..].copy_from_slice(&next.to_le_bytes());
        mem.write_slice(&raw, GuestAddress(at)).expect("in memory");
        Ok(())
    };
    let used = u.int_in_range(1..=size)?;
    for i in 0..used {
        write_desc(DESC_TABLE + u64::from(i) * 16, u, i, size)?;
    }
    // A possible indirect table at the start of the data area (descriptors pointing there with
    // INDIRECT set and a length that is a multiple of 16 walk it).
    let indirect = u.int_in_range(0..=8u16)?;
    for i in 0..indirect {
        write_desc(RINGS_END + u64::from(i) * 16, u, i, indirect)?;
    }

    let avail = u.int_in_range(0..=size)?;
    let flags: u16 = u.arbitrary()?;
    mem.write_obj(flags, GuestAddress(AVAIL_RING))
        .expect("in memory");
    for slot in 0..avail {
        let head = if u.ratio(7u8, 8)? {
            u.int_in_range(0..=size - 1)?
        } else {
            u.arbitrary()?
        };
        mem.write_obj(head, GuestAddress(AVAIL_RING + 4 + u64::from(slot) * 2))
            .expect("in memory");
    }
    // Mostly the number of entries written; sometimes an index far ahead or wrapped.
    let idx = if u.ratio(7u8, 8)? {
        avail
    } else {
        u.arbitrary()?
    };
    mem.write_obj(idx, GuestAddress(AVAIL_RING + 2))
        .expect("in memory");
    // used_event, for EVENT_IDX.
    let used_event: u16 = u.arbitrary()?;
    mem.write_obj(
        used_event,
        GuestAddress(AVAIL_RING + 4 + u64::from(size) * 2),
    )
    .expect("in memory");

    // The rest: data after the indirect table in A, then B.
    let rest = u.bytes(u.len())?;
    let data_a = RINGS_END + u64::from(indirect) * 16;
    let room_a = (A.1 - data_a) as usize;
    let (in_a, in_b) = rest.split_at(rest.len().min(room_a));
    mem.write_slice(in_a, GuestAddress(data_a)).expect("fits A");
    let in_b = &in_b[..in_b.len().min((C.1 - B.0) as usize)];
    mem.write_slice(in_b, GuestAddress(B.0))
        .expect("fits B and C");
    Ok(Setup { mem, queue, size })
}

/// Copies every byte of guest memory, to compare before and after a device touched it.
pub fn snapshot(mem: &Mem) -> Vec<(u64, Vec<u8>)> {
    [A, B, C]
        .iter()
        .map(|&(start, end)| {
            let mut v = vec![0u8; (end - start) as usize];
            mem.read_slice(&mut v, GuestAddress(start)).expect("region");
            (start, v)
        })
        .collect()
}

/// Addresses whose byte differs between two snapshots.
pub fn changed(before: &[(u64, Vec<u8>)], after: &[(u64, Vec<u8>)]) -> Vec<u64> {
    let mut out = Vec::new();
    for ((start, a), (_, b)) in before.iter().zip(after) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            if x != y {
                out.push(start + i as u64);
            }
        }
    }
    out
}

/// A fixture directory that lives as long as the fuzzing process. Statics are never dropped
/// and libFuzzer ends with `exit()`, so the directory is removed from an `atexit` hook (a crash
/// that aborts leaves it behind in the temporary directory).
pub fn process_tempdir(under: Option<&std::path::Path>) -> std::path::PathBuf {
    use std::sync::Mutex;
    static DIRS: Mutex<Vec<std::path::PathBuf>> = Mutex::new(Vec::new());
    extern "C" fn remove_all() {
        if let Ok(dirs) = DIRS.lock() {
            for d in dirs.iter() {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
    let dir = match under {
        Some(p) => tempfile::tempdir_in(p),
        None => tempfile::tempdir(),
    }
    .expect("temporary directory")
    .keep();
    let mut dirs = DIRS.lock().expect("not poisoned");
    if dirs.is_empty() {
        // SAFETY: registers a plain function with no captured state; it runs once at exit.
        unsafe { libc::atexit(remove_all) };
    }
    dirs.push(dir.clone());
    dir
}
