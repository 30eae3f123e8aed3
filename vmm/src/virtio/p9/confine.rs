//! Keeps the guest inside the shared directory.
//!
//! How the p9 crate resolves names: every Twalk component is opened with
//! `openat(parent, name, O_PATH | O_NOFOLLOW)`, files are opened again through
//! `/proc/self/fd/N` (the very inode the fid holds), and creations are `*at()` calls relative
//! to a directory fid. It never joins path strings and never follows a symlink in the last
//! component; symlinks are returned to the guest (Treadlink) and resolved by the guest, in
//! the guest, so absolute or `..` targets cannot reach the host's tree.
//!
//! What it lacks, added here as a pure check before a request reaches it: a name containing
//! `/` makes `openat` walk several components and follow symlinks in all but the last (a
//! symlink inside the share pointing out would be crossed); `..` from the root fid leaves the
//! share; `.` and the empty name are not names. So every name the guest sends (walk
//! components and the names of create, link, rename and unlink requests) must be a single
//! plain component. Linux's client never sends anything else: its VFS resolves `.` and `..`
//! itself. As no name can climb, a fid can only ever be the root or below it, whatever the
//! guest renames in between (no race between a check and the open: the check is on the name).

use super::message::Request;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfineError {
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} is '.'")]
    Dot { field: &'static str },
    #[error("{field} is '..', which could leave the share")]
    DotDot { field: &'static str },
    #[error("{field} contains '/', which could cross a symlink")]
    Slash { field: &'static str },
    #[error("{field} contains a NUL byte")]
    Nul { field: &'static str },
}

impl ConfineError {
    pub fn errno(&self) -> i32 {
        match self {
            ConfineError::DotDot { .. } => libc::EPERM,
            _ => libc::EINVAL,
        }
    }
}

/// Checks one name.
pub fn check_name(field: &'static str, name: &[u8]) -> Result<(), ConfineError> {
    match name {
        b"" => Err(ConfineError::Empty { field }),
        b"." => Err(ConfineError::Dot { field }),
        b".." => Err(ConfineError::DotDot { field }),
        n if n.contains(&b'/') => Err(ConfineError::Slash { field }),
        n if n.contains(&0) => Err(ConfineError::Nul { field }),
        _ => Ok(()),
    }
}

/// Checks every name `req` carries.
pub fn check(req: &Request<'_>) -> Result<(), ConfineError> {
    for (field, name) in req.path_names() {
        check_name(field, name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::message::build::*;
    use super::super::message::{parse, t};
    use super::*;

    fn confine(frame: Vec<u8>) -> Result<(), ConfineError> {
        check(&parse(&frame, 65536).unwrap())
    }

    #[test]
    fn plain_names_pass() {
        assert_eq!(
            confine(walk(1, 0, 1, &[b"openstack", b"latest", b"user_data"])),
            Ok(())
        );
        assert_eq!(confine(walk(1, 0, 1, &[b"..hidden", b"a..b"])), Ok(()));
        // A symlink's target is data, not a name on the host: the guest resolves it.
        let sym = Frame::new(t::SYMLINK, 1)
            .u32(1)
            .str(b"l")
            .str(b"/etc/shadow")
            .u32(0)
            .done();
        assert_eq!(confine(sym), Ok(()));
    }

    #[test]
    fn escapes_are_refused_in_every_name_field() {
        assert_eq!(
            confine(walk(1, 0, 1, &[b".."])),
            Err(ConfineError::DotDot { field: "wname" })
        );
        assert_eq!(
            confine(walk(1, 0, 1, &[b"a", b".."])),
            Err(ConfineError::DotDot { field: "wname" })
        );
        assert_eq!(
            confine(walk(1, 0, 1, &[b"../etc"])),
            Err(ConfineError::Slash { field: "wname" })
        );
        assert_eq!(
            confine(walk(1, 0, 1, &[b"/etc"])),
            Err(ConfineError::Slash { field: "wname" })
        );
        assert_eq!(
            confine(walk(1, 0, 1, &[b"."])),
            Err(ConfineError::Dot { field: "wname" })
        );
        assert_eq!(
            confine(walk(1, 0, 1, &[b""])),
            Err(ConfineError::Empty { field: "wname" })
        );
        assert_eq!(
            confine(walk(1, 0, 1, &[b"a\0b"])),
            Err(ConfineError::Nul { field: "wname" })
        );
        let lcreate = Frame::new(t::LCREATE, 1)
            .u32(1)
            .str(b"link/x")
            .u32(0)
            .u32(0)
            .u32(0)
            .done();
        assert_eq!(confine(lcreate), Err(ConfineError::Slash { field: "name" }));
        let renameat = Frame::new(t::RENAMEAT, 1)
            .u32(1)
            .str(b"ok")
            .u32(1)
            .str(b"../../escaped")
            .done();
        assert_eq!(
            confine(renameat),
            Err(ConfineError::Slash { field: "newname" })
        );
        let unlink = Frame::new(t::UNLINKAT, 1).u32(1).str(b"..").u32(0).done();
        assert_eq!(confine(unlink), Err(ConfineError::DotDot { field: "name" }));
        let link = Frame::new(t::LINK, 1).u32(1).u32(2).str(b"/tmp/x").done();
        assert_eq!(confine(link), Err(ConfineError::Slash { field: "name" }));
        let mkdir = Frame::new(t::MKDIR, 1).u32(1).str(b"").u32(0).u32(0).done();
        assert_eq!(confine(mkdir), Err(ConfineError::Empty { field: "name" }));
    }
}

/// Mode bits a guest may not set on the host: set-user-ID and set-group-ID files created by
/// a VMM running as root would be root's.
const MODE_STRIP: u32 = libc::S_ISUID | libc::S_ISGID;
/// Tsetattr's "mode is valid" bit.
const SETATTR_MODE: u32 = 1;

/// Rewrites what the p9 server would otherwise do unsafely with a well-formed request, in
/// place: opens get O_NONBLOCK (a FIFO someone left in the share must not block the device
/// thread in open or read), and created or chmod-ed modes lose set-ID bits.
pub fn sanitize(req: &Request<'_>, frame: &mut [u8]) {
    use super::message::{Kind, open_flags};
    let mut patch = |field: &str, f: &dyn Fn(u32) -> u32| {
        if let (Some(at), Some(v)) = (req.offset_of(field), req.u32(field))
            && let Some(slot) = frame.get_mut(at..at + 4)
        {
            slot.copy_from_slice(&f(v).to_le_bytes());
        }
    };
    match req.kind {
        Kind::Lopen => patch("flags", &|v| v | open_flags::NONBLOCK),
        Kind::Lcreate => {
            patch("flags", &|v| v | open_flags::NONBLOCK);
            patch("mode", &|v| v & !MODE_STRIP);
        }
        Kind::Mkdir | Kind::Mknod => patch("mode", &|v| v & !MODE_STRIP),
        Kind::Setattr if req.u32("valid").unwrap_or(0) & SETATTR_MODE != 0 => {
            patch("mode", &|v| v & !MODE_STRIP)
        }
        _ => {}
    }
}

#[cfg(test)]
mod sanitize_tests {
    use super::super::message::build::*;
    use super::super::message::{open_flags, parse, t};
    use super::*;

    fn sanitized(frame: Vec<u8>) -> Vec<u8> {
        let mut out = frame.clone();
        let req = parse(&frame, 65536).unwrap();
        sanitize(&req, &mut out);
        out
    }

    #[test]
    fn opens_become_nonblocking_and_setid_bits_go() {
        let out = sanitized(lopen(1, 5, 0));
        let r = parse(&out, 65536).unwrap();
        assert_eq!(r.u32("flags"), Some(open_flags::NONBLOCK));
        assert_eq!(r.u32("fid"), Some(5));
        let lc = Frame::new(t::LCREATE, 1)
            .u32(1)
            .str(b"f")
            .u32(0o1)
            .u32(0o106755)
            .u32(0)
            .done();
        let r2 = sanitized(lc);
        let r = parse(&r2, 65536).unwrap();
        assert_eq!(r.u32("mode"), Some(0o100755));
        assert_eq!(r.u32("flags"), Some(0o1 | open_flags::NONBLOCK));
        let chmod_only_size = Frame::new(t::SETATTR, 1)
            .u32(1)
            .u32(8)
            .u32(0o4755)
            .u32(0)
            .u32(0)
            .u64(0)
            .u64(0)
            .u64(0)
            .u64(0)
            .u64(0)
            .done();
        // Mode not marked valid: left alone (the server ignores it).
        assert_eq!(sanitized(chmod_only_size.clone()), chmod_only_size);
    }
}
