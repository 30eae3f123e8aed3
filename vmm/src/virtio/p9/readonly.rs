//! The read-only policy for `--share ...,readonly=on`: a pure decision over a parsed request.
//! Every request that could change the share (its files, names, attributes or extended
//! attributes) is refused with EROFS before the p9 server sees it; reads, lookups,
//! attribute reads, fsync (which changes nothing) and advisory locks (p9 keeps no lock state on
//! the host) pass.

use super::message::{Kind, Request, open_flags};

/// Whether `req` may be served on a read-only share: `Err(EROFS)` when it must not.
pub fn check(req: &Request<'_>) -> Result<(), i32> {
    let writes = match req.kind {
        Kind::Lcreate
        | Kind::Symlink
        | Kind::Mknod
        | Kind::Rename
        | Kind::Renameat
        | Kind::Unlinkat
        | Kind::Link
        | Kind::Mkdir
        | Kind::Remove
        | Kind::Write
        | Kind::Setattr
        | Kind::Xattrcreate => true,
        Kind::Lopen => {
            let flags = req.u32("flags").unwrap_or(0);
            flags & open_flags::ACCMODE != open_flags::RDONLY
                || flags & (open_flags::TRUNC | open_flags::CREATE | open_flags::APPEND) != 0
        }
        Kind::Statfs
        | Kind::Readlink
        | Kind::Getattr
        | Kind::Xattrwalk
        | Kind::Readdir
        | Kind::Fsync
        | Kind::Lock
        | Kind::Getlock
        | Kind::Version
        | Kind::Auth
        | Kind::Attach
        | Kind::Flush
        | Kind::Walk
        | Kind::Read
        | Kind::Clunk => false,
    };
    if writes { Err(libc::EROFS) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::super::message::build::*;
    use super::super::message::{parse, t};
    use super::*;

    fn verdict(frame: Vec<u8>) -> Result<(), i32> {
        check(&parse(&frame, 65536).unwrap())
    }

    #[test]
    fn every_modifying_request_gets_erofs() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "lcreate",
                Frame::new(t::LCREATE, 1)
                    .u32(1)
                    .str(b"f")
                    .u32(0o1)
                    .u32(0o644)
                    .u32(0)
                    .done(),
            ),
            (
                "symlink",
                Frame::new(t::SYMLINK, 1)
                    .u32(1)
                    .str(b"l")
                    .str(b"/etc")
                    .u32(0)
                    .done(),
            ),
            (
                "mknod",
                Frame::new(t::MKNOD, 1)
                    .u32(1)
                    .str(b"n")
                    .u32(0o10644)
                    .u32(0)
                    .u32(0)
                    .u32(0)
                    .done(),
            ),
            (
                "rename",
                Frame::new(t::RENAME, 1).u32(1).u32(2).str(b"x").done(),
            ),
            (
                "renameat",
                Frame::new(t::RENAMEAT, 1)
                    .u32(1)
                    .str(b"a")
                    .u32(1)
                    .str(b"b")
                    .done(),
            ),
            (
                "unlinkat",
                Frame::new(t::UNLINKAT, 1).u32(1).str(b"a").u32(0).done(),
            ),
            (
                "link",
                Frame::new(t::LINK, 1).u32(1).u32(2).str(b"h").done(),
            ),
            (
                "mkdir",
                Frame::new(t::MKDIR, 1)
                    .u32(1)
                    .str(b"d")
                    .u32(0o755)
                    .u32(0)
                    .done(),
            ),
            ("remove", Frame::new(t::REMOVE, 1).u32(1).done()),
            (
                "write",
                Frame::new(t::WRITE, 1)
                    .u32(1)
                    .u64(0)
                    .u32(2)
                    .bytes(b"hi")
                    .done(),
            ),
            (
                "setattr atime only",
                Frame::new(t::SETATTR, 1)
                    .u32(1)
                    .u32(0x10)
                    .u32(0)
                    .u32(0)
                    .u32(0)
                    .u64(0)
                    .u64(0)
                    .u64(0)
                    .u64(0)
                    .u64(0)
                    .done(),
            ),
            (
                "xattrcreate",
                Frame::new(t::XATTRCREATE, 1)
                    .u32(1)
                    .str(b"user.x")
                    .u64(1)
                    .u32(0)
                    .done(),
            ),
            ("lopen for writing", lopen(1, 1, 0o1)),
            ("lopen read-write", lopen(1, 1, 0o2)),
            ("lopen read with truncate", lopen(1, 1, 0o1000)),
            ("lopen read with create", lopen(1, 1, 0o100)),
            ("lopen read with append", lopen(1, 1, 0o2000)),
        ];
        for (what, frame) in cases {
            assert_eq!(verdict(frame), Err(libc::EROFS), "{what}");
        }
    }

    #[test]
    fn reads_and_lookups_pass() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("version", version(8192)),
            ("attach", attach(1, 0)),
            ("walk", walk(1, 0, 1, &[b"a", b"b"])),
            ("lopen read-only", lopen(1, 1, 0)),
            ("lopen read-only directory", lopen(1, 1, 0o200000)),
            ("read", read(1, 1, 0, 100)),
            ("clunk", clunk(1, 1)),
            (
                "readdir",
                Frame::new(t::READDIR, 1).u32(1).u64(0).u32(100).done(),
            ),
            (
                "getattr",
                Frame::new(t::GETATTR, 1).u32(1).u64(0x7ff).done(),
            ),
            ("statfs", Frame::new(t::STATFS, 1).u32(1).done()),
            ("readlink", Frame::new(t::READLINK, 1).u32(1).done()),
            ("fsync", Frame::new(t::FSYNC, 1).u32(1).u32(0).done()),
            (
                "xattrwalk",
                Frame::new(t::XATTRWALK, 1)
                    .u32(1)
                    .u32(2)
                    .str(b"user.x")
                    .done(),
            ),
            ("flush", Frame::new(t::FLUSH, 1).u16(3).done()),
        ];
        for (what, frame) in cases {
            assert_eq!(verdict(frame), Ok(()), "{what}");
        }
    }
}
