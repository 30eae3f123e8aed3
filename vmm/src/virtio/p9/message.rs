//! 9P2000.L request framing: a pure parser from the bytes a guest put in a virtqueue to a typed
//! summary of the request, with one error per way a message can be malformed. It checks the
//! whole frame (size field, type, every field of the body, no trailing bytes) before anything
//! reaches the p9 crate's server, and it is what the read-only filter and the path
//! confinement (sibling modules) decide on.
//!
//! Wire format (Linux `include/net/9p/9p.h`, diod's protocol.md): `size[4] type[1] tag[2]
//! body`, little endian; strings are `len[2] bytes`; `size` counts the whole frame.

use std::fmt;

/// size[4] type[1] tag[2].
pub const HEADER_LEN: usize = 7;
/// Tag of a Tversion, which carries no real tag.
pub const NOTAG: u16 = 0xffff;
/// The most names one Twalk may carry (MAXWELEM).
pub const MAX_WALK_NAMES: usize = 16;
/// Rlerror's type.
pub const RLERROR: u8 = 7;

/// Request type codes (the reply is the code plus one).
pub mod t {
    pub const STATFS: u8 = 8;
    pub const LOPEN: u8 = 12;
    pub const LCREATE: u8 = 14;
    pub const SYMLINK: u8 = 16;
    pub const MKNOD: u8 = 18;
    pub const RENAME: u8 = 20;
    pub const READLINK: u8 = 22;
    pub const GETATTR: u8 = 24;
    pub const SETATTR: u8 = 26;
    pub const XATTRWALK: u8 = 30;
    pub const XATTRCREATE: u8 = 32;
    pub const READDIR: u8 = 40;
    pub const FSYNC: u8 = 50;
    pub const LOCK: u8 = 52;
    pub const GETLOCK: u8 = 54;
    pub const LINK: u8 = 70;
    pub const MKDIR: u8 = 72;
    pub const RENAMEAT: u8 = 74;
    pub const UNLINKAT: u8 = 76;
    pub const VERSION: u8 = 100;
    pub const AUTH: u8 = 102;
    pub const ATTACH: u8 = 104;
    pub const FLUSH: u8 = 108;
    pub const WALK: u8 = 110;
    pub const READ: u8 = 116;
    pub const WRITE: u8 = 118;
    pub const CLUNK: u8 = 120;
    pub const REMOVE: u8 = 122;
}

/// Tlopen / Tlcreate flags (Linux `P9_DOTL_*`): only those the filter looks at.
pub mod open_flags {
    pub const ACCMODE: u32 = 0o3;
    pub const RDONLY: u32 = 0o0;
    pub const CREATE: u32 = 0o100;
    pub const TRUNC: u32 = 0o1000;
    pub const APPEND: u32 = 0o2000;
    pub const NONBLOCK: u32 = 0o4000;
}

/// Why a message cannot be served. Each maps to the errno its Rlerror carries.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("message of {0} bytes is shorter than the 7-byte header")]
    TooShort(usize),
    #[error("size field says {declared} bytes, the buffers hold {actual}")]
    SizeMismatch { declared: u32, actual: usize },
    #[error("message of {size} bytes exceeds the negotiated maximum of {max}")]
    TooLarge { size: usize, max: u32 },
    #[error("unknown or unsupported request type {0}")]
    UnknownType(u8),
    #[error("{ty} body ends inside field '{field}'")]
    Truncated { ty: Kind, field: &'static str },
    #[error("{ty} has {extra} bytes after its last field")]
    TrailingBytes { ty: Kind, extra: usize },
    #[error("Twalk with {0} names; at most {MAX_WALK_NAMES} are allowed")]
    TooManyNames(usize),
    #[error("Twrite says {count} data bytes but carries {actual}")]
    WriteCount { count: u32, actual: usize },
}

impl MessageError {
    pub fn errno(&self) -> i32 {
        match self {
            MessageError::TooLarge { .. } => libc::EMSGSIZE,
            MessageError::UnknownType(_) => libc::EOPNOTSUPP,
            MessageError::TooManyNames(_) => libc::E2BIG,
            _ => libc::EINVAL,
        }
    }
}

/// The request kinds, named as in the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Statfs,
    Lopen,
    Lcreate,
    Symlink,
    Mknod,
    Rename,
    Readlink,
    Getattr,
    Setattr,
    Xattrwalk,
    Xattrcreate,
    Readdir,
    Fsync,
    Lock,
    Getlock,
    Link,
    Mkdir,
    Renameat,
    Unlinkat,
    Version,
    Auth,
    Attach,
    Flush,
    Walk,
    Read,
    Write,
    Clunk,
    Remove,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "T{}", format!("{self:?}").to_lowercase())
    }
}

/// One field of a body layout.
#[derive(Clone, Copy)]
enum F {
    U8(&'static str),
    U16(&'static str),
    U32(&'static str),
    U64(&'static str),
    Str(&'static str),
}

use F::{Str, U8, U16, U32, U64};

/// (kind, fixed body layout); Twalk and Twrite have variable tails handled separately.
fn layout(ty: u8) -> Option<(Kind, &'static [F])> {
    Some(match ty {
        t::STATFS => (Kind::Statfs, &[U32("fid")]),
        t::LOPEN => (Kind::Lopen, &[U32("fid"), U32("flags")]),
        t::LCREATE => (
            Kind::Lcreate,
            &[
                U32("fid"),
                Str("name"),
                U32("flags"),
                U32("mode"),
                U32("gid"),
            ],
        ),
        t::SYMLINK => (
            Kind::Symlink,
            &[U32("fid"), Str("name"), Str("symtgt"), U32("gid")],
        ),
        t::MKNOD => (
            Kind::Mknod,
            &[
                U32("dfid"),
                Str("name"),
                U32("mode"),
                U32("major"),
                U32("minor"),
                U32("gid"),
            ],
        ),
        t::RENAME => (Kind::Rename, &[U32("fid"), U32("dfid"), Str("name")]),
        t::READLINK => (Kind::Readlink, &[U32("fid")]),
        t::GETATTR => (Kind::Getattr, &[U32("fid"), U64("request_mask")]),
        t::SETATTR => (
            Kind::Setattr,
            &[
                U32("fid"),
                U32("valid"),
                U32("mode"),
                U32("uid"),
                U32("gid"),
                U64("size"),
                U64("atime_sec"),
                U64("atime_nsec"),
                U64("mtime_sec"),
                U64("mtime_nsec"),
            ],
        ),
        t::XATTRWALK => (Kind::Xattrwalk, &[U32("fid"), U32("newfid"), Str("name")]),
        t::XATTRCREATE => (
            Kind::Xattrcreate,
            &[U32("fid"), Str("name"), U64("attr_size"), U32("flags")],
        ),
        t::READDIR => (Kind::Readdir, &[U32("fid"), U64("offset"), U32("count")]),
        t::FSYNC => (Kind::Fsync, &[U32("fid"), U32("datasync")]),
        t::LOCK => (
            Kind::Lock,
            &[
                U32("fid"),
                U8("type"),
                U32("flags"),
                U64("start"),
                U64("length"),
                U32("proc_id"),
                Str("client_id"),
            ],
        ),
        t::GETLOCK => (
            Kind::Getlock,
            &[
                U32("fid"),
                U8("type"),
                U64("start"),
                U64("length"),
                U32("proc_id"),
                Str("client_id"),
            ],
        ),
        t::LINK => (Kind::Link, &[U32("dfid"), U32("fid"), Str("name")]),
        t::MKDIR => (
            Kind::Mkdir,
            &[U32("dfid"), Str("name"), U32("mode"), U32("gid")],
        ),
        t::RENAMEAT => (
            Kind::Renameat,
            &[
                U32("olddirfid"),
                Str("oldname"),
                U32("newdirfid"),
                Str("newname"),
            ],
        ),
        t::UNLINKAT => (Kind::Unlinkat, &[U32("dirfid"), Str("name"), U32("flags")]),
        t::VERSION => (Kind::Version, &[U32("msize"), Str("version")]),
        t::AUTH => (
            Kind::Auth,
            &[U32("afid"), Str("uname"), Str("aname"), U32("n_uname")],
        ),
        t::ATTACH => (
            Kind::Attach,
            &[
                U32("fid"),
                U32("afid"),
                Str("uname"),
                Str("aname"),
                U32("n_uname"),
            ],
        ),
        t::FLUSH => (Kind::Flush, &[U16("oldtag")]),
        t::WALK => (Kind::Walk, &[U32("fid"), U32("newfid"), U16("nwname")]),
        t::READ => (Kind::Read, &[U32("fid"), U64("offset"), U32("count")]),
        t::WRITE => (Kind::Write, &[U32("fid"), U64("offset"), U32("count")]),
        t::CLUNK => (Kind::Clunk, &[U32("fid")]),
        t::REMOVE => (Kind::Remove, &[U32("fid")]),
        _ => return None,
    })
}

/// A parsed field value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Int(u64),
    Str(&'a [u8]),
}

/// A well-formed request: its header and every field, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub kind: Kind,
    pub ty: u8,
    pub tag: u16,
    fields: Vec<(&'static str, Value<'a>)>,
    /// Twalk's names, in order.
    pub names: Vec<&'a [u8]>,
    /// Byte offset of each integer field in the frame, for in-place rewrites.
    offsets: Vec<(&'static str, usize)>,
}

impl<'a> Request<'a> {
    /// An integer field (fids, flags, counts). None if this kind has no such field.
    pub fn int(&self, name: &str) -> Option<u64> {
        self.fields.iter().find_map(|(n, v)| match v {
            Value::Int(i) if *n == name => Some(*i),
            _ => None,
        })
    }

    pub fn u32(&self, name: &str) -> Option<u32> {
        self.int(name).map(|v| v as u32)
    }

    pub fn string(&self, name: &str) -> Option<&'a [u8]> {
        self.fields.iter().find_map(|(n, v)| match v {
            Value::Str(s) if *n == name => Some(*s),
            _ => None,
        })
    }

    /// Every file name this request would look up or create, with the field it came from.
    pub fn path_names(&self) -> Vec<(&'static str, &'a [u8])> {
        let named: &[&'static str] = match self.kind {
            Kind::Lcreate | Kind::Symlink | Kind::Mknod | Kind::Rename => &["name"],
            Kind::Link | Kind::Mkdir | Kind::Unlinkat => &["name"],
            Kind::Renameat => &["oldname", "newname"],
            _ => &[],
        };
        let mut out: Vec<_> = named
            .iter()
            .filter_map(|n| self.string(n).map(|s| (*n, s)))
            .collect();
        out.extend(self.names.iter().map(|s| ("wname", *s)));
        out
    }

    /// Where the u32 field `name` sits in the frame.
    pub fn offset_of(&self, name: &str) -> Option<usize> {
        self.offsets
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, o)| *o)
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    kind: Kind,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], MessageError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let Some(end) = end else {
            return Err(MessageError::Truncated {
                ty: self.kind,
                field,
            });
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn int(&mut self, n: usize, field: &'static str) -> Result<u64, MessageError> {
        let b = self.take(n, field)?;
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(b);
        Ok(u64::from_le_bytes(v))
    }

    fn string(&mut self, field: &'static str) -> Result<&'a [u8], MessageError> {
        let len = self.int(2, field)? as usize;
        self.take(len, field)
    }
}

/// The header's tag, if the frame is long enough to have one (for answering a frame that
/// fails to parse).
pub fn peek_tag(frame: &[u8]) -> Option<u16> {
    frame.get(5..7).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

/// Parses one frame. `msize` is the negotiated maximum message size.
pub fn parse(frame: &[u8], msize: u32) -> Result<Request<'_>, MessageError> {
    if frame.len() < HEADER_LEN {
        return Err(MessageError::TooShort(frame.len()));
    }
    if frame.len() > msize as usize {
        return Err(MessageError::TooLarge {
            size: frame.len(),
            max: msize,
        });
    }
    let declared = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
    if declared as usize != frame.len() {
        return Err(MessageError::SizeMismatch {
            declared,
            actual: frame.len(),
        });
    }
    let ty = frame[4];
    let tag = u16::from_le_bytes([frame[5], frame[6]]);
    let (kind, fields) = layout(ty).ok_or(MessageError::UnknownType(ty))?;
    let mut c = Cursor {
        buf: frame,
        pos: HEADER_LEN,
        kind,
    };
    let mut values = Vec::with_capacity(fields.len());
    let mut offsets = Vec::with_capacity(fields.len());
    for f in fields {
        let at = c.pos;
        let (name, v) = match *f {
            U8(n) => (n, Value::Int(c.int(1, n)?)),
            U16(n) => (n, Value::Int(c.int(2, n)?)),
            U32(n) => (n, Value::Int(c.int(4, n)?)),
            U64(n) => (n, Value::Int(c.int(8, n)?)),
            Str(n) => (n, Value::Str(c.string(n)?)),
        };
        offsets.push((name, at));
        values.push((name, v));
    }
    let mut names = Vec::new();
    match kind {
        Kind::Walk => {
            let n = values
                .iter()
                .find_map(|(k, v)| match v {
                    Value::Int(i) if *k == "nwname" => Some(*i as usize),
                    _ => None,
                })
                .unwrap_or(0);
            if n > MAX_WALK_NAMES {
                return Err(MessageError::TooManyNames(n));
            }
            for _ in 0..n {
                names.push(c.string("wname")?);
            }
        }
        Kind::Write => {
            let count = values
                .iter()
                .find_map(|(k, v)| match v {
                    Value::Int(i) if *k == "count" => Some(*i as u32),
                    _ => None,
                })
                .unwrap_or(0);
            let actual = frame.len() - c.pos;
            if actual != count as usize {
                return Err(MessageError::WriteCount { count, actual });
            }
            c.pos = frame.len();
        }
        _ => {}
    }
    if c.pos != frame.len() {
        return Err(MessageError::TrailingBytes {
            ty: kind,
            extra: frame.len() - c.pos,
        });
    }
    Ok(Request {
        kind,
        ty,
        tag,
        fields: values,
        names,
        offsets,
    })
}

/// An Rlerror frame answering `tag`.
pub fn rlerror(tag: u16, errno: i32) -> Vec<u8> {
    let mut r = Vec::with_capacity(11);
    r.extend_from_slice(&11u32.to_le_bytes());
    r.push(RLERROR);
    r.extend_from_slice(&tag.to_le_bytes());
    r.extend_from_slice(&(errno as u32).to_le_bytes());
    r
}

/// Builders for request frames, for tests here and in sibling modules.
#[cfg(test)]
pub mod build {
    pub struct Frame(Vec<u8>);

    impl Frame {
        pub fn new(ty: u8, tag: u16) -> Self {
            let mut v = vec![0u8; 4];
            v.push(ty);
            v.extend_from_slice(&tag.to_le_bytes());
            Frame(v)
        }
        pub fn u8(mut self, v: u8) -> Self {
            self.0.push(v);
            self
        }
        pub fn u16(mut self, v: u16) -> Self {
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        pub fn u32(mut self, v: u32) -> Self {
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        pub fn u64(mut self, v: u64) -> Self {
            self.0.extend_from_slice(&v.to_le_bytes());
            self
        }
        pub fn str(mut self, s: &[u8]) -> Self {
            self.0.extend_from_slice(&(s.len() as u16).to_le_bytes());
            self.0.extend_from_slice(s);
            self
        }
        pub fn bytes(mut self, b: &[u8]) -> Self {
            self.0.extend_from_slice(b);
            self
        }
        pub fn done(mut self) -> Vec<u8> {
            let n = self.0.len() as u32;
            self.0[0..4].copy_from_slice(&n.to_le_bytes());
            self.0
        }
    }

    pub fn version(msize: u32) -> Vec<u8> {
        Frame::new(super::t::VERSION, super::NOTAG)
            .u32(msize)
            .str(b"9P2000.L")
            .done()
    }

    pub fn attach(tag: u16, fid: u32) -> Vec<u8> {
        Frame::new(super::t::ATTACH, tag)
            .u32(fid)
            .u32(!0)
            .str(b"root")
            .str(b"")
            .u32(0)
            .done()
    }

    pub fn walk(tag: u16, fid: u32, newfid: u32, names: &[&[u8]]) -> Vec<u8> {
        let mut f = Frame::new(super::t::WALK, tag)
            .u32(fid)
            .u32(newfid)
            .u16(names.len() as u16);
        for n in names {
            f = f.str(n);
        }
        f.done()
    }

    pub fn lopen(tag: u16, fid: u32, flags: u32) -> Vec<u8> {
        Frame::new(super::t::LOPEN, tag).u32(fid).u32(flags).done()
    }

    pub fn read(tag: u16, fid: u32, offset: u64, count: u32) -> Vec<u8> {
        Frame::new(super::t::READ, tag)
            .u32(fid)
            .u64(offset)
            .u32(count)
            .done()
    }

    pub fn clunk(tag: u16, fid: u32) -> Vec<u8> {
        Frame::new(super::t::CLUNK, tag).u32(fid).done()
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    const MSIZE: u32 = 8192;

    #[test]
    fn parses_every_field_of_a_walk_and_a_lopen() {
        let f = walk(3, 1, 2, &[b"openstack", b"latest"]);
        let r = parse(&f, MSIZE).unwrap();
        assert_eq!((r.kind, r.tag), (Kind::Walk, 3));
        assert_eq!((r.u32("fid"), r.u32("newfid")), (Some(1), Some(2)));
        assert_eq!(r.names, vec![&b"openstack"[..], b"latest"]);
        let f = lopen(4, 9, 0o1);
        let r = parse(&f, MSIZE).unwrap();
        assert_eq!(r.u32("flags"), Some(1));
        assert_eq!(r.offset_of("flags"), Some(11));
    }

    #[test]
    fn each_malformation_has_its_own_error() {
        assert_eq!(parse(&[1, 0, 0], MSIZE), Err(MessageError::TooShort(3)));
        let mut f = clunk(1, 1);
        f[0] = 99;
        assert_eq!(
            parse(&f, MSIZE),
            Err(MessageError::SizeMismatch {
                declared: 99,
                actual: 11
            })
        );
        let big = Frame::new(t::WRITE, 1)
            .u32(1)
            .u64(0)
            .u32(9000)
            .bytes(&[0; 9000])
            .done();
        assert!(matches!(
            parse(&big, MSIZE),
            Err(MessageError::TooLarge { .. })
        ));
        let unknown = Frame::new(200, 1).u32(0).done();
        assert_eq!(parse(&unknown, MSIZE), Err(MessageError::UnknownType(200)));
        // Legacy 9P2000 Topen is not part of 9P2000.L.
        let topen = Frame::new(112, 1).u32(0).u8(0).done();
        assert_eq!(parse(&topen, MSIZE), Err(MessageError::UnknownType(112)));
        let short = Frame::new(t::LOPEN, 1).u32(1).done();
        assert_eq!(
            parse(&short, MSIZE),
            Err(MessageError::Truncated {
                ty: Kind::Lopen,
                field: "flags"
            })
        );
        // A string length that runs past the end.
        let bad_str = Frame::new(t::MKDIR, 1).u32(1).u16(500).bytes(b"ab").done();
        assert_eq!(
            parse(&bad_str, MSIZE),
            Err(MessageError::Truncated {
                ty: Kind::Mkdir,
                field: "name"
            })
        );
        let trailing = Frame::new(t::CLUNK, 1).u32(1).u8(0).done();
        assert_eq!(
            parse(&trailing, MSIZE),
            Err(MessageError::TrailingBytes {
                ty: Kind::Clunk,
                extra: 1
            })
        );
        let names: Vec<&[u8]> = vec![b"a"; 17];
        assert_eq!(
            parse(&walk(1, 1, 2, &names), MSIZE),
            Err(MessageError::TooManyNames(17))
        );
        let lying_write = Frame::new(t::WRITE, 1)
            .u32(1)
            .u64(0)
            .u32(10)
            .bytes(b"abc")
            .done();
        assert_eq!(
            parse(&lying_write, MSIZE),
            Err(MessageError::WriteCount {
                count: 10,
                actual: 3
            })
        );
    }

    #[test]
    fn rlerror_is_a_valid_frame() {
        let r = rlerror(0x1234, libc::EROFS);
        assert_eq!(r.len(), 11);
        assert_eq!(u32::from_le_bytes(r[0..4].try_into().unwrap()), 11);
        assert_eq!(r[4], RLERROR);
        assert_eq!(peek_tag(&r), Some(0x1234));
        assert_eq!(
            u32::from_le_bytes(r[7..11].try_into().unwrap()),
            libc::EROFS as u32
        );
    }

    /// Every prefix of a valid frame (with the size field fixed up) is rejected, never panics.
    #[test]
    fn every_truncation_is_an_error() {
        let f = Frame::new(t::RENAMEAT, 7)
            .u32(1)
            .str(b"old")
            .u32(2)
            .str(b"new")
            .done();
        parse(&f, MSIZE).unwrap();
        for n in 0..f.len() {
            let mut g = f[..n].to_vec();
            if n >= 4 {
                g[0..4].copy_from_slice(&(n as u32).to_le_bytes());
            }
            assert!(parse(&g, MSIZE).is_err(), "prefix of {n} bytes parsed");
        }
    }
}
