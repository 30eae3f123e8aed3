//! One share's 9P2000.L server: the p9 crate's server behind the checks this VMM adds. Every
//! frame is parsed in full first (a malformed one is answered with Rlerror here, never passed
//! on), then confined to the share, filtered for read-only shares, limited in how many fids it
//! may hold open, sanitized, and only then served by p9.

use std::collections::HashSet;
use std::io::Cursor;
use std::path::Path;

use super::confine;
use super::message::{self, Kind, NOTAG, Request};
use super::readonly;

/// p9's largest message (64 KiB of payload plus headers); Tversion can only lower it.
pub const MAX_MSIZE: u32 = 64 * 1024 + 24;
/// Fids one guest may hold at once. Each holds an O_PATH descriptor (two once opened), so
/// this bounds the descriptors a guest can make the VMM keep.
pub const MAX_FIDS: usize = 16384;

pub struct ShareServer {
    server: p9::Server,
    readonly: bool,
    msize: u32,
    fids: HashSet<u32>,
    max_fids: usize,
}

impl ShareServer {
    pub fn new(root: &Path, readonly: bool) -> std::io::Result<Self> {
        Ok(ShareServer {
            server: p9::Server::new(root, Default::default(), Default::default())?,
            readonly,
            msize: MAX_MSIZE,
            fids: HashSet::new(),
            max_fids: MAX_FIDS,
        })
    }

    /// Lowers the fid limit (tests).
    pub fn with_fid_limit(mut self, max: usize) -> Self {
        self.max_fids = max;
        self
    }

    pub fn msize(&self) -> u32 {
        self.msize
    }

    pub fn open_fids(&self) -> usize {
        self.fids.len()
    }

    /// Answers one request frame with one reply frame.
    pub fn handle(&mut self, frame: &[u8]) -> Vec<u8> {
        let req = match message::parse(frame, self.msize) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("9p: malformed request: {e}");
                return message::rlerror(message::peek_tag(frame).unwrap_or(NOTAG), e.errno());
            }
        };
        if let Err(e) = confine::check(&req) {
            tracing::debug!("9p: {}: {e}", req.kind);
            return message::rlerror(req.tag, e.errno());
        }
        if self.readonly
            && let Err(errno) = readonly::check(&req)
        {
            return message::rlerror(req.tag, errno);
        }
        if self.would_add_fid(&req) && self.fids.len() >= self.max_fids {
            tracing::debug!("9p: {}: fid limit of {} reached", req.kind, self.max_fids);
            return message::rlerror(req.tag, libc::EMFILE);
        }
        let mut owned = frame.to_vec();
        confine::sanitize(&req, &mut owned);
        // Sized for the largest reply (an Rread of msize), so encoding never reallocates.
        let mut reply = Vec::with_capacity(self.msize as usize);
        if let Err(e) = self
            .server
            .handle_message(&mut Cursor::new(&owned[..]), &mut reply)
        {
            // p9 answers request errors itself; this is a frame it could not even decode.
            tracing::debug!("9p: {}: {e}", req.kind);
            return message::rlerror(req.tag, e.raw_os_error().unwrap_or(libc::EIO));
        }
        self.account(&req, &reply);
        reply
    }

    fn would_add_fid(&self, req: &Request<'_>) -> bool {
        match req.kind {
            Kind::Attach => req.u32("fid").is_some_and(|f| !self.fids.contains(&f)),
            Kind::Walk => match (req.u32("fid"), req.u32("newfid")) {
                (Some(fid), Some(newfid)) => fid != newfid && !self.fids.contains(&newfid),
                _ => false,
            },
            _ => false,
        }
    }

    /// Follows the fids p9 holds, from each request and p9's reply.
    fn account(&mut self, req: &Request<'_>, reply: &[u8]) {
        let ok = reply.get(4) == Some(&req.ty.wrapping_add(1));
        if !ok {
            return;
        }
        match req.kind {
            Kind::Version => {
                self.fids.clear();
                if let Some(b) = reply.get(7..11) {
                    self.msize = u32::from_le_bytes([b[0], b[1], b[2], b[3]]).min(MAX_MSIZE);
                }
            }
            Kind::Attach => {
                if let Some(fid) = req.u32("fid") {
                    self.fids.insert(fid);
                }
            }
            Kind::Walk => {
                let nwqid = reply.get(7..9).map(|b| u16::from_le_bytes([b[0], b[1]]));
                if nwqid == Some(req.names.len() as u16)
                    && let Some(newfid) = req.u32("newfid")
                {
                    self.fids.insert(newfid);
                }
            }
            Kind::Clunk => {
                if let Some(fid) = req.u32("fid") {
                    self.fids.remove(&fid);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::message::build::*;
    use super::super::message::{RLERROR, t};
    use super::*;
    use std::os::unix::fs::symlink;

    fn errno(reply: &[u8]) -> Option<i32> {
        (reply.get(4) == Some(&RLERROR))
            .then(|| u32::from_le_bytes(reply[7..11].try_into().unwrap()) as i32)
    }

    /// A share with a file, a subdirectory, and symlinks pointing out of it; and a secret
    /// next to the share that must stay out of reach.
    fn share() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("share");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/file"), b"inside").unwrap();
        std::fs::write(dir.path().join("secret"), b"outside").unwrap();
        symlink("../secret", root.join("rel-out")).unwrap();
        symlink(dir.path().join("secret"), root.join("abs-out")).unwrap();
        symlink("/", root.join("slash")).unwrap();
        (dir, root)
    }

    fn attached(root: &Path, readonly: bool) -> ShareServer {
        let mut s = ShareServer::new(root, readonly).unwrap();
        let r = s.handle(&version(8192));
        assert_eq!(r[4], t::VERSION + 1);
        assert_eq!(s.msize(), 8192);
        let r = s.handle(&attach(1, 0));
        assert_eq!(r[4], t::ATTACH + 1, "{r:?}");
        s
    }

    fn read_all(s: &mut ShareServer, fid: u32) -> Result<Vec<u8>, i32> {
        let r = s.handle(&lopen(2, fid, 0));
        if let Some(e) = errno(&r) {
            return Err(e);
        }
        let r = s.handle(&read(3, fid, 0, 4096));
        if let Some(e) = errno(&r) {
            return Err(e);
        }
        let n = u32::from_le_bytes(r[7..11].try_into().unwrap()) as usize;
        Ok(r[11..11 + n].to_vec())
    }

    #[test]
    fn reads_a_file_inside() {
        let (_d, root) = share();
        let mut s = attached(&root, true);
        let r = s.handle(&walk(1, 0, 1, &[b"sub", b"file"]));
        assert_eq!(r[4], t::WALK + 1);
        assert_eq!(read_all(&mut s, 1), Ok(b"inside".to_vec()));
        assert_eq!(s.open_fids(), 2);
        s.handle(&clunk(4, 1));
        assert_eq!(s.open_fids(), 1);
    }

    #[test]
    fn symlinks_pointing_out_are_not_followed() {
        let (_d, root) = share();
        let mut s = attached(&root, false);
        for (fid, name) in [(1u32, &b"rel-out"[..]), (2, b"abs-out"), (3, b"slash")] {
            let r = s.handle(&walk(1, 0, fid, &[name]));
            assert_eq!(r[4], t::WALK + 1, "walk to the link itself works");
            // Opening the link gives ELOOP: the server never resolves it.
            assert_eq!(read_all(&mut s, fid), Err(libc::ELOOP));
            // Walking through it fails: the link is not a directory here.
            let r = s.handle(&walk(1, fid, 10 + fid, &[b"etc"]));
            assert_eq!(errno(&r), Some(libc::ENOTDIR));
        }
        // The guest reads the target text, to resolve it in its own namespace.
        let r = s.handle(&Frame::new(t::READLINK, 5).u32(2).done());
        assert_eq!(r[4], t::READLINK + 1);
        assert!(r.windows(6).any(|w| w == b"secret"));
    }

    #[test]
    fn dotdot_and_slashes_cannot_leave_the_share() {
        let (_d, root) = share();
        let mut s = attached(&root, false);
        assert_eq!(
            errno(&s.handle(&walk(1, 0, 1, &[b".."]))),
            Some(libc::EPERM)
        );
        assert_eq!(
            errno(&s.handle(&walk(1, 0, 1, &[b"sub", b"..", b".."]))),
            Some(libc::EPERM)
        );
        assert_eq!(
            errno(&s.handle(&walk(1, 0, 1, &[b"../secret"]))),
            Some(libc::EINVAL)
        );
        assert_eq!(
            errno(&s.handle(&walk(1, 0, 1, &[b"slash/etc"]))),
            Some(libc::EINVAL)
        );
        // Creating through a symlink to outside: refused before p9 sees it.
        let lc = Frame::new(t::LCREATE, 1)
            .u32(0)
            .str(b"slash/tmp/pwned")
            .u32(1)
            .u32(0o644)
            .u32(0)
            .done();
        assert_eq!(errno(&s.handle(&lc)), Some(libc::EINVAL));
        assert_eq!(s.open_fids(), 1, "no fid was created by the refused walks");
    }

    #[test]
    fn read_only_share_refuses_changes_and_stays_unchanged() {
        let (_d, root) = share();
        let mut s = attached(&root, true);
        s.handle(&walk(1, 0, 1, &[b"sub", b"file"]));
        assert_eq!(errno(&s.handle(&lopen(2, 1, 0o2))), Some(libc::EROFS));
        let mk = Frame::new(t::MKDIR, 1)
            .u32(0)
            .str(b"new")
            .u32(0o755)
            .u32(0)
            .done();
        assert_eq!(errno(&s.handle(&mk)), Some(libc::EROFS));
        let unlink = Frame::new(t::UNLINKAT, 1).u32(0).str(b"sub").u32(0).done();
        assert_eq!(errno(&s.handle(&unlink)), Some(libc::EROFS));
        assert!(!root.join("new").exists());
        assert_eq!(std::fs::read(root.join("sub/file")).unwrap(), b"inside");
        // The same mkdir on a writable share works.
        let mut w = attached(&root, false);
        assert_eq!(w.handle(&mk)[4], t::MKDIR + 1);
        assert!(root.join("new").is_dir());
    }

    #[test]
    fn malformed_frames_get_rlerror_with_their_tag() {
        let (_d, root) = share();
        let mut s = attached(&root, false);
        let mut truncated = walk(7, 0, 1, &[b"sub"]);
        truncated.truncate(truncated.len() - 2);
        let r = s.handle(&truncated);
        assert_eq!(errno(&r), Some(libc::EINVAL));
        assert_eq!(message::peek_tag(&r), Some(7));
        let unknown = Frame::new(250, 9).u32(0).done();
        let r = s.handle(&unknown);
        assert_eq!(errno(&r), Some(libc::EOPNOTSUPP));
        assert_eq!(message::peek_tag(&r), Some(9));
        let oversized = Frame::new(t::WRITE, 11)
            .u32(0)
            .u64(0)
            .u32(9000)
            .bytes(&[0u8; 9000])
            .done();
        assert_eq!(errno(&s.handle(&oversized)), Some(libc::EMSGSIZE));
        assert_eq!(errno(&s.handle(&[0u8; 3])), Some(libc::EINVAL));
        // Still serving.
        assert_eq!(s.handle(&walk(1, 0, 1, &[b"sub"]))[4], t::WALK + 1);
    }

    #[test]
    fn fid_limit_holds() {
        let (_d, root) = share();
        let mut s = attached(&root, true).with_fid_limit(8);
        for fid in 1..8 {
            assert_eq!(s.handle(&walk(1, 0, fid, &[]))[4], t::WALK + 1);
        }
        let r = s.handle(&walk(1, 0, 8, &[]));
        assert_eq!(errno(&r), Some(libc::EMFILE));
        // Walking a fid onto itself adds none, and clunking frees a slot.
        assert_eq!(s.handle(&walk(1, 5, 5, &[b"sub"]))[4], t::WALK + 1);
        s.handle(&clunk(1, 5));
        assert_eq!(s.handle(&walk(1, 0, 99999, &[]))[4], t::WALK + 1);
    }
}
