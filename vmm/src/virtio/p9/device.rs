//! The virtio-9p device (virtio 1.x, 5.? "9P transport", device ID 9): one request queue and
//! a configuration space holding the mount tag. Each chain carries one T-message in its
//! readable buffers and room for the R-message in its writable ones.

use std::path::{Path, PathBuf};

use virtio_queue::Queue;

use super::message::{self, NOTAG};
use super::server::ShareServer;
use crate::config::ShareConfig;
use crate::memory::GuestMemoryMmap;
use crate::virtio::event_handler::QueueDevice;
use crate::virtio::queue_server::ActiveQueue;
use crate::virtio::{
    ActivateContext, ActivateError, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_RING_F_INDIRECT_DESC, VirtioDevice,
};

pub const VIRTIO_ID_9P: u32 = 9;
/// The configuration space carries the mount tag.
const VIRTIO_9P_MOUNT_TAG: u64 = 1;
pub const QUEUE_SIZE: u16 = 128;
const QUEUE_SIZES: [u16; 1] = [QUEUE_SIZE];

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("share {path}: {why}")]
    Path { path: PathBuf, why: String },
    #[error("share {tag}: cannot start the 9P server: {source}")]
    Server { tag: String, source: std::io::Error },
}

pub struct P9 {
    tag: String,
    root: PathBuf,
    readonly: bool,
    config: Vec<u8>,
    /// None after a reset until the next request.
    server: Option<ShareServer>,
    active: Option<ActiveQueue>,
    requests: u64,
}

impl P9 {
    pub fn new(cfg: &ShareConfig) -> Result<Self, ShareError> {
        let path_err = |why: String| ShareError::Path {
            path: cfg.path.clone(),
            why,
        };
        // p9 opens the root by path with O_NOFOLLOW on the last component only: hand it the
        // resolved directory so a symlinked share path still works.
        let root = cfg
            .path
            .canonicalize()
            .map_err(|e| path_err(e.to_string()))?;
        if !root.is_dir() {
            return Err(path_err("is not a directory".to_owned()));
        }
        let server =
            ShareServer::new(&root, cfg.readonly).map_err(|source| ShareError::Server {
                tag: cfg.tag.clone(),
                source,
            })?;
        let mut config = (cfg.tag.len() as u16).to_le_bytes().to_vec();
        config.extend_from_slice(cfg.tag.as_bytes());
        Ok(P9 {
            tag: cfg.tag.clone(),
            root,
            readonly: cfg.readonly,
            config,
            server: Some(server),
            active: None,
            requests: 0,
        })
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn readonly(&self) -> bool {
        self.readonly
    }

    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// Requests served since start.
    pub fn requests(&self) -> u64 {
        self.requests
    }
}

/// Serves one chain: returns the bytes written into its writable buffers.
fn answer(
    server: &mut ShareServer,
    bufs: Result<crate::virtio::chain::Buffers, crate::virtio::chain::ChainError>,
    mem: &GuestMemoryMmap,
    tag_name: &str,
) -> u32 {
    let bufs = match bufs {
        Ok(b) => b,
        Err(e) => {
            // Nowhere trustworthy to write an answer: an empty used entry.
            tracing::debug!("share {tag_name}: bad descriptor chain: {e}");
            return 0;
        }
    };
    // One byte more than allowed, so an oversized frame is recognised as such.
    let frame = bufs.read(mem, server.msize() as usize + 1);
    let mut reply = server.handle(&frame);
    if reply.len() as u64 > bufs.writable_len() {
        let tag = message::peek_tag(&frame).unwrap_or(NOTAG);
        tracing::debug!(
            "share {tag_name}: {}-byte reply does not fit {} bytes of buffers",
            reply.len(),
            bufs.writable_len()
        );
        reply = message::rlerror(tag, libc::ENOBUFS);
        if reply.len() as u64 > bufs.writable_len() {
            return 0;
        }
    }
    bufs.write(mem, &reply) as u32
}

impl QueueDevice for P9 {
    fn process_queue(&mut self, _index: usize) -> usize {
        let P9 {
            server,
            active,
            tag,
            requests,
            root,
            readonly,
            ..
        } = self;
        let Some(active) = active.as_mut() else {
            return 0;
        };
        if server.is_none() {
            match ShareServer::new(root, *readonly) {
                Ok(s) => *server = Some(s),
                Err(e) => {
                    tracing::warn!("share {tag}: cannot restart the 9P server: {e}");
                    return 0;
                }
            }
        }
        let Some(server) = server.as_mut() else {
            return 0;
        };
        let what = format!("share {tag}");
        let n = active.serve(&what, |bufs, mem| answer(server, bufs, mem, tag));
        *requests += n as u64;
        n
    }
}

impl VirtioDevice for P9 {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_9P
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
            | VIRTIO_RING_F_EVENT_IDX
            | VIRTIO_RING_F_INDIRECT_DESC
            | VIRTIO_9P_MOUNT_TAG
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| self.config.get(o + i))
                .copied()
                .unwrap_or(0);
        }
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        tracing::debug!("share {}: config write at {offset:#x} ignored", self.tag);
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let got = ctx.queues.len();
        let Some(queue): Option<Queue> = ctx.queues.into_iter().next().filter(|_| got == 1) else {
            return Err(ActivateError::QueueCount { expected: 1, got });
        };
        self.active = Some(ActiveQueue::new(ctx.mem, queue, ctx.interrupt, 0));
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        // A new driver starts with Tversion, which drops every fid; dropping the server
        // now closes the descriptors at once. The new one (which opens /proc) is made by the
        // next request, on the device thread: vCPUs, which run this, may open nothing.
        self.server = None;
    }
}

#[cfg(test)]
mod tests {
    use super::super::message::build::*;
    use super::super::message::{RLERROR, t};
    use super::*;
    use crate::interrupt::InterruptError;
    use crate::virtio::test_utils::{R, TestQueue, W};
    use crate::virtio::{VirtioInterrupt, VirtioInterruptType};
    use std::sync::{Arc, Mutex};
    use vm_memory::{Bytes, GuestAddress};

    #[derive(Default)]
    struct Irq(Mutex<u32>);
    impl VirtioInterrupt for Irq {
        fn trigger(&self, _kind: VirtioInterruptType) -> Result<(), InterruptError> {
            *self.0.lock().unwrap() += 1;
            Ok(())
        }
    }

    fn device(readonly: bool) -> (tempfile::TempDir, P9) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("openstack")).unwrap();
        std::fs::write(dir.path().join("openstack/user_data"), b"#cloud-config\n").unwrap();
        let p9 = P9::new(&ShareConfig {
            path: dir.path().to_owned(),
            tag: "config-2".to_owned(),
            readonly,
        })
        .unwrap();
        (dir, p9)
    }

    #[test]
    fn config_space_holds_the_tag() {
        let (_d, p9) = device(true);
        let mut b = [0u8; 10];
        p9.read_config(0, &mut b);
        assert_eq!(&b, b"\x08\x00config-2");
        assert_ne!(p9.features() & VIRTIO_9P_MOUNT_TAG, 0);
        let mut past = [0xffu8; 4];
        p9.read_config(100, &mut past);
        assert_eq!(past, [0; 4]);
    }

    #[test]
    fn serves_a_session_through_the_queue_and_survives_garbage() {
        let (_d, mut p9) = device(true);
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut q = TestQueue::new(&mem, 16);
        let irq = Arc::new(Irq::default());
        p9.activate(ActivateContext {
            mem: mem.clone(),
            interrupt: irq.clone(),
            queues: vec![q.queue()],
            acked_features: VIRTIO_F_VERSION_1,
        })
        .unwrap();
        let frames = [
            version(8192),
            attach(1, 0),
            walk(2, 0, 1, &[b"openstack", b"user_data"]),
            lopen(3, 1, 0),
            read(4, 1, 0, 100),
        ];
        for (i, f) in frames.iter().enumerate() {
            let at = 0x10000 + i as u64 * 0x2000;
            mem.write_slice(f, GuestAddress(at)).unwrap();
            q.add_chain(&[(at, f.len() as u32, R), (at + 0x1000, 0x1000, W)]);
        }
        // Garbage: a looping chain, a frame split over two buffers with a lying size, a
        // reply buffer too small for anything.
        q.add_looping_chain(0x20000, 8);
        let lying = [0xff, 0xff, 0, 0, t::CLUNK, 5, 0];
        mem.write_slice(&lying[..3], GuestAddress(0x21000)).unwrap();
        mem.write_slice(&lying[3..], GuestAddress(0x22000)).unwrap();
        q.add_chain(&[(0x21000, 3, R), (0x22000, 4, R), (0x23000, 64, W)]);
        let c = clunk(6, 1);
        mem.write_slice(&c, GuestAddress(0x24000)).unwrap();
        q.add_chain(&[(0x24000, c.len() as u32, R), (0x25000, 4, W)]);
        assert_eq!(p9.process_queue(0), 8);
        let (idx, used) = q.used();
        assert_eq!(idx, 8);
        // Rread: size, type, tag, count, data.
        let mut r = vec![0u8; used[4].1 as usize];
        mem.read_slice(&mut r, GuestAddress(0x10000 + 4 * 0x2000 + 0x1000))
            .unwrap();
        assert_eq!(r[4], t::READ + 1);
        assert_eq!(&r[11..], b"#cloud-config\n");
        assert_eq!(used[5].1, 0, "looping chain: empty used entry");
        let mut e = [0u8; 11];
        mem.read_slice(&mut e, GuestAddress(0x23000)).unwrap();
        assert_eq!((e[4], e[5]), (RLERROR, 5), "Rlerror with the frame's tag");
        assert_eq!(used[7].1, 0, "no room even for Rlerror");
        assert_eq!(*irq.0.lock().unwrap(), 1, "one interrupt per batch");
        // Still serving after all that.
        let g = Frame::new(t::GETATTR, 9).u32(0).u64(0x7ff).done();
        mem.write_slice(&g, GuestAddress(0x26000)).unwrap();
        q.add_chain(&[(0x26000, g.len() as u32, R), (0x27000, 0x1000, W)]);
        assert_eq!(p9.process_queue(0), 1);
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(0x27004)).unwrap(),
            t::GETATTR + 1
        );
    }

    #[test]
    fn a_reset_drops_the_fids_and_the_next_request_gets_a_new_server() {
        let (_d, mut p9) = device(true);
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let serve = |p9: &mut P9, frames: &[Vec<u8>]| {
            let mut q = TestQueue::new(&mem, 16);
            p9.activate(ActivateContext {
                mem: mem.clone(),
                interrupt: Arc::new(Irq::default()),
                queues: vec![q.queue()],
                acked_features: VIRTIO_F_VERSION_1,
            })
            .unwrap();
            for (i, f) in frames.iter().enumerate() {
                let at = 0x10000 + i as u64 * 0x2000;
                mem.write_slice(f, GuestAddress(at)).unwrap();
                q.add_chain(&[(at, f.len() as u32, R), (at + 0x1000, 0x1000, W)]);
            }
            assert_eq!(p9.process_queue(0), frames.len());
            // The last reply's type.
            let at = 0x10000 + (frames.len() as u64 - 1) * 0x2000 + 0x1000;
            mem.read_obj::<u8>(GuestAddress(at + 4)).unwrap()
        };
        let getattr = Frame::new(t::GETATTR, 3).u32(1).u64(0x7ff).done();
        assert_eq!(
            serve(&mut p9, &[version(8192), attach(1, 1), getattr.clone()]),
            t::GETATTR + 1
        );
        // Reset runs on a vCPU thread, whose seccomp filter allows no open: the server (which
        // opens /proc) is only dropped there.
        p9.reset();
        assert!(p9.server.is_none());
        // Fid 1 is gone with the old server; the new one serves a new session.
        assert_eq!(serve(&mut p9, std::slice::from_ref(&getattr)), RLERROR);
        assert!(p9.server.is_some());
        assert_eq!(
            serve(&mut p9, &[version(8192), attach(1, 1), getattr]),
            t::GETATTR + 1
        );
    }
}
