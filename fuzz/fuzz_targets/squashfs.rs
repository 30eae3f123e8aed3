//! The squashfs superblock checks over any bytes.
//!
//! Invariants: `parse` only accepts superblocks whose fields agree (squashfs 4.0, a block size
//! that is a power of two from 4 KiB to 1 MiB with a matching block_log, a known compressor,
//! inodes, every table inside bytes_used and in order); `read_from` on a reader agrees with
//! `parse` on the bytes; `check_usable` passes only images long enough that Linux can read;
//! and the summary and flag names render for anything accepted.
#![no_main]

use imagetool::squashfs::{Compression, MAGIC, SUPERBLOCK_LEN, SquashfsError, Superblock};
use libfuzzer_sys::fuzz_target;

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes are the image's claimed length; the rest is the image's start.
    let (len, b) = match data.split_first_chunk::<8>() {
        Some((l, rest)) => (u64::from_le_bytes(*l), rest),
        None => (0, data),
    };
    let parsed = Superblock::parse(b);
    let read = Superblock::read_from(&mut &b[..]);
    match (&parsed, &read) {
        (Ok(p), Ok(r)) => assert_eq!(p, r),
        (Err(_), Err(_)) => {}
        // read_from looks at the first 96 bytes only; parse at all of them, but uses only 96.
        _ => panic!("parse {parsed:?} and read_from {read:?} disagree"),
    }
    match parsed {
        Ok(sb) => {
            assert!(b.len() >= SUPERBLOCK_LEN && b.starts_with(MAGIC));
            assert_eq!(sb.version, (4, 0));
            assert!(sb.block_size.is_power_of_two());
            assert!((4096..=1 << 20).contains(&sb.block_size));
            assert_eq!(
                u32::from(u16::from_le_bytes([b[22], b[23]])),
                sb.block_size.trailing_zeros()
            );
            assert!(sb.inodes > 0);
            assert!(sb.bytes_used >= SUPERBLOCK_LEN as u64);
            for at in [sb.inode_table, sb.directory_table, sb.id_table] {
                assert!((SUPERBLOCK_LEN as u64..sb.bytes_used).contains(&at));
            }
            for at in [sb.fragment_table, sb.export_table, sb.xattr_table] {
                assert!(at == u64::MAX || (SUPERBLOCK_LEN as u64..sb.bytes_used).contains(&at));
            }
            assert!(sb.inode_table <= sb.directory_table);
            assert_eq!(sb.bytes_used, u64_at(b, 40));
            let summary = sb.summary();
            assert!(summary.starts_with("squashfs 4.0, "));
            assert!(sb.flag_names().len() <= 12);
            match sb.check_usable(len) {
                Ok(()) => {
                    assert!(sb.bytes_used <= len);
                    assert_ne!(sb.compression, Compression::Lzma);
                }
                Err(SquashfsError::Truncated { bytes_used, len: l }) => {
                    assert!(bytes_used > l && l == len)
                }
                Err(SquashfsError::Unreadable(c)) => assert_eq!(c, Compression::Lzma),
                Err(e) => panic!("check_usable: unexpected {e}"),
            }
        }
        Err(e) => {
            // Every rejection explains itself in one line.
            let msg = e.to_string();
            assert!(!msg.is_empty() && !msg.contains('\n'));
            if b.starts_with(MAGIC) && b.len() < SUPERBLOCK_LEN {
                assert!(matches!(e, SquashfsError::TooShort(n) if n == b.len() as u64));
            }
        }
    }
});
