//! The 9P read-only filter and name confinement, on every frame of the input:
//! - `readonly::check` agrees with a decision written out here from the raw type byte and
//!   Tlopen flags (no mutating request passes, nothing harmless is refused);
//! - `confine::check` agrees with the names decoded here from the raw frame (every name a
//!   single plain component, and every name field looked at);
//! - `confine::sanitize` keeps the frame well-formed and its verdicts unchanged, adds
//!   O_NONBLOCK to opens, strips set-ID bits, and touches nothing but those fields;
//! - end to end, the frames go through a read-only `ShareServer` over a small tree: every reply
//!   is a well-formed frame answering its request, every qid it hands out is an inode inside
//!   the share, and afterwards the share and what is around it are unchanged.
//!
//! The input is a sequence of frames. With the first byte odd, each is `len[2]` and then the
//! frame from its type byte on (the size field is written here); else frames are taken as they
//! are, split by their own size fields.
#![no_main]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vmm::virtio::p9::confine;
use vmm::virtio::p9::message::{self, Kind, RLERROR, open_flags, t};
use vmm::virtio::p9::readonly;
use vmm::virtio::p9::server::{MAX_MSIZE, ShareServer};

const SETID: u32 = libc::S_ISUID | libc::S_ISGID;

/// The read-only policy from the type byte and flags alone.
fn must_refuse(frame: &[u8]) -> bool {
    match frame[4] {
        t::LCREATE
        | t::SYMLINK
        | t::MKNOD
        | t::RENAME
        | t::RENAMEAT
        | t::UNLINKAT
        | t::LINK
        | t::MKDIR
        | t::REMOVE
        | t::WRITE
        | t::SETATTR
        | t::XATTRCREATE => true,
        t::LOPEN => {
            let flags = u32::from_le_bytes(frame[11..15].try_into().expect("parsed Tlopen"));
            flags & 3 != 0
                || flags & (open_flags::TRUNC | open_flags::CREATE | open_flags::APPEND) != 0
        }
        _ => false,
    }
}

/// Reads a 9P string at `at`; returns it and the offset after it.
fn string_at(frame: &[u8], at: usize) -> (&[u8], usize) {
    let len = usize::from(u16::from_le_bytes([frame[at], frame[at + 1]]));
    (&frame[at + 2..at + 2 + len], at + 2 + len)
}

/// Every file name a parsed frame carries, decoded by position.
fn names(frame: &[u8]) -> Vec<&[u8]> {
    let one = |at| vec![string_at(frame, at).0];
    match frame[4] {
        t::LCREATE | t::SYMLINK | t::MKNOD | t::MKDIR | t::UNLINKAT => one(11),
        t::RENAME | t::LINK => one(15),
        t::RENAMEAT => {
            let (old, next) = string_at(frame, 11);
            vec![old, string_at(frame, next + 4).0]
        }
        t::WALK => {
            let n = u16::from_le_bytes([frame[15], frame[16]]);
            let mut at = 17;
            let mut out = Vec::new();
            for _ in 0..n {
                let (s, next) = string_at(frame, at);
                out.push(s);
                at = next;
            }
            out
        }
        _ => Vec::new(),
    }
}

fn plain(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

fn pure_checks(frame: &[u8]) {
    let Ok(req) = message::parse(frame, MAX_MSIZE) else {
        return;
    };
    assert_eq!(req.ty, frame[4]);
    let refused = readonly::check(&req);
    assert_eq!(
        refused.is_err(),
        must_refuse(frame),
        "read-only filter on {:?}",
        req.kind
    );
    if let Err(e) = refused {
        assert_eq!(e, libc::EROFS);
    }
    let names = names(frame);
    assert_eq!(
        confine::check(&req).is_ok(),
        names.iter().all(|n| plain(n)),
        "confinement of {:?} with names {names:?}",
        req.kind
    );

    let mut out = frame.to_vec();
    confine::sanitize(&req, &mut out);
    let again = message::parse(&out, MAX_MSIZE).expect("sanitized frame parses");
    assert_eq!((again.kind, again.tag), (req.kind, req.tag));
    assert_eq!(readonly::check(&again), readonly::check(&req));
    assert_eq!(confine::check(&again), confine::check(&req));
    let mut allowed = Vec::new();
    for field in ["flags", "mode"] {
        if let Some(at) = req.offset_of(field) {
            allowed.extend(at..at + 4);
        }
    }
    for (i, (a, b)) in frame.iter().zip(&out).enumerate() {
        assert!(a == b || allowed.contains(&i), "sanitize changed byte {i}");
    }
    match req.kind {
        Kind::Lopen | Kind::Lcreate => {
            assert_ne!(again.u32("flags").expect("flags") & open_flags::NONBLOCK, 0)
        }
        _ => {}
    }
    let setattr_mode = req.kind == Kind::Setattr && req.u32("valid").unwrap_or(0) & 1 != 0;
    if matches!(req.kind, Kind::Lcreate | Kind::Mkdir | Kind::Mknod) || setattr_mode {
        assert_eq!(
            again.u32("mode").expect("mode") & SETID,
            0,
            "set-ID bits left"
        );
    }
}

struct Fixture {
    top: PathBuf,
    share: PathBuf,
    inodes: Vec<u64>,
    before: BTreeMap<PathBuf, String>,
}

/// Everything under `top` that a change would show in (not atime).
fn state(top: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![top.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = std::fs::symlink_metadata(&p).expect("fixture readable");
        let extra = if m.is_file() {
            format!("{:?}", std::fs::read(&p).expect("fixture file"))
        } else if m.file_type().is_symlink() {
            format!("{:?}", std::fs::read_link(&p).expect("link"))
        } else {
            String::new()
        };
        let line = format!(
            "{:o} {}:{} {} {}.{} {}.{} {} {extra}",
            m.mode(),
            m.uid(),
            m.gid(),
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            m.nlink()
        );
        if m.is_dir() {
            for e in std::fs::read_dir(&p).expect("fixture dir") {
                todo.push(e.expect("entry").path());
            }
        }
        out.insert(p, line);
    }
    out
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let top = vmctl_fuzz::process_tempdir(shm.is_dir().then_some(shm));
        std::fs::write(top.join("outside.txt"), b"outside the share").expect("fixture");
        let share = top.join("share");
        std::fs::create_dir_all(share.join("dir/sub")).expect("fixture");
        std::fs::write(share.join("a.txt"), b"hello 9p").expect("fixture");
        std::fs::write(share.join("dir/b.txt"), vec![7u8; 5000]).expect("fixture");
        std::os::unix::fs::symlink("../outside.txt", share.join("up")).expect("fixture");
        std::os::unix::fs::symlink(top.join("outside.txt"), share.join("abs")).expect("fixture");
        let fifo = std::ffi::CString::new(share.join("fifo").as_os_str().as_encoded_bytes())
            .expect("no NUL");
        // SAFETY: a valid NUL-terminated path; mkfifo touches nothing else.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let inodes = state(&share)
            .keys()
            .map(|p| std::fs::symlink_metadata(p).expect("fixture").ino())
            .collect();
        let before = state(&top);
        Fixture {
            top,
            share,
            inodes,
            before,
        }
    })
}

fn frames(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let Some((&mode, mut rest)) = data.split_first() else {
        return out;
    };
    while !rest.is_empty() && out.len() < 64 {
        if mode & 1 == 1 {
            if rest.len() < 2 {
                break;
            }
            let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
            let body = &rest[2..2 + len];
            let mut f = ((body.len() + 4) as u32).to_le_bytes().to_vec();
            f.extend_from_slice(body);
            out.push(f);
            rest = &rest[2 + len..];
        } else {
            let size = rest
                .get(..4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
                .filter(|&s| s >= 4 && s <= rest.len())
                .unwrap_or(rest.len());
            out.push(rest[..size].to_vec());
            rest = &rest[size..];
        }
    }
    out
}

/// Qids in a successful reply, by reply type.
fn qids(reply: &[u8]) -> Vec<u64> {
    let qid_path = |at: usize| {
        reply
            .get(at + 5..at + 13)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    match reply[4] {
        // Rattach, Rlopen, Rlcreate, Rmkdir: a qid first.
        105 | 13 | 15 | 73 => qid_path(7).into_iter().collect(),
        // Rgetattr: valid[8] then the qid.
        25 => qid_path(15).into_iter().collect(),
        // Rwalk: nwqid[2] qid*n.
        111 => {
            let n = usize::from(u16::from_le_bytes([reply[7], reply[8]]));
            (0..n).filter_map(|i| qid_path(9 + 13 * i)).collect()
        }
        _ => Vec::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    let frames = frames(data);
    for f in &frames {
        pure_checks(f);
    }
    let fx = fixture();
    let mut server = ShareServer::new(&fx.share, true).expect("share opens");
    for f in &frames {
        let reply = server.handle(f);
        assert!(reply.len() >= 7, "reply of {} bytes", reply.len());
        let size = u32::from_le_bytes(reply[..4].try_into().expect("4 bytes")) as usize;
        assert_eq!(size, reply.len(), "reply size field");
        let req = message::parse(f, MAX_MSIZE);
        if let Ok(req) = &req {
            assert!(
                reply[4] == RLERROR || reply[4] == req.ty.wrapping_add(1),
                "reply type {} to request type {}",
                reply[4],
                req.ty
            );
            assert_eq!(message::peek_tag(&reply), Some(req.tag));
        } else {
            assert_eq!(reply[4], RLERROR);
        }
        if reply[4] != RLERROR {
            for ino in qids(&reply) {
                assert!(
                    fx.inodes.contains(&ino),
                    "qid inode {ino} is outside the share"
                );
            }
        }
    }
    drop(server);
    let after = state(&fx.top);
    if after != fx.before {
        for (p, line) in &after {
            if fx.before.get(p) != Some(line) {
                eprintln!("changed: {} {line}", p.display());
            }
        }
        panic!("the read-only share or its surroundings changed");
    }
});
