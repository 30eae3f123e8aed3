//! The virtio-blk device: features, configuration space, and the queue loop that parses
//! requests, carries them out and completes them.

use std::sync::Arc;

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO,
    VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_ID_BYTES,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::{Queue, QueueT};
use vm_memory::Bytes;

use super::io::{DiskError, DiskFile, execute};
use super::request::{MAX_RANGE_SECTORS, MAX_RANGES, parse};
use crate::config::DiskConfig;
use crate::memory::GuestMemoryMmap;
use crate::virtio::queue_server::avail_fault;
use crate::virtio::{
    ActivateContext, ActivateError, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_RING_F_INDIRECT_DESC, VirtioDevice, VirtioInterrupt, VirtioInterruptType,
};

pub const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: [u16; 1] = [QUEUE_SIZE];
/// Size of struct virtio_blk_config up to write_zeroes_may_unmap and padding.
const CONFIG_SIZE: usize = 60;
/// Discard granularity: 4 KiB, in sectors.
const DISCARD_ALIGNMENT_SECTORS: u32 = 8;

const fn bit(b: u32) -> u64 {
    1 << b
}

struct Active {
    mem: GuestMemoryMmap,
    queue: Queue,
    interrupt: Arc<dyn VirtioInterrupt>,
}

pub struct Block {
    disk: DiskFile,
    id: Option<[u8; VIRTIO_BLK_ID_BYTES as usize]>,
    features: u64,
    config: [u8; CONFIG_SIZE],
    active: Option<Active>,
    /// Set when the guest broke the queue itself; we stop serving it until reset.
    broken: bool,
}

impl Block {
    pub fn new(cfg: &DiskConfig) -> Result<Self, DiskError> {
        let disk = DiskFile::open(&cfg.path, cfg.readonly)?;
        let id = cfg.serial.as_ref().map(|s| {
            let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
            let n = s.len().min(id.len());
            id[..n].copy_from_slice(&s.as_bytes()[..n]);
            id
        });
        let mut features = VIRTIO_F_VERSION_1
            | VIRTIO_RING_F_EVENT_IDX
            | VIRTIO_RING_F_INDIRECT_DESC
            | bit(VIRTIO_BLK_F_SEG_MAX)
            | bit(VIRTIO_BLK_F_BLK_SIZE);
        if cfg.readonly {
            features |= bit(VIRTIO_BLK_F_RO);
        } else {
            features |= bit(VIRTIO_BLK_F_FLUSH)
                | bit(VIRTIO_BLK_F_DISCARD)
                | bit(VIRTIO_BLK_F_WRITE_ZEROES);
        }
        let config = build_config(disk.sectors());
        Ok(Block {
            disk,
            id,
            features,
            config,
            active: None,
            broken: false,
        })
    }

    pub fn disk(&self) -> &DiskFile {
        &self.disk
    }

    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// Makes written data durable (called at VMM exit).
    pub fn flush(&self) -> std::io::Result<()> {
        self.disk.flush()
    }

    /// Serves everything the driver has made available. Returns the number of requests.
    pub fn process_queue(&mut self) -> usize {
        if self.broken {
            return 0;
        }
        let Some(active) = self.active.as_mut() else {
            return 0;
        };
        let mut handled = 0;
        let read_only = self.disk.read_only();
        let capacity = self.disk.sectors();
        loop {
            if let Some(why) = avail_fault(&active.queue, &active.mem) {
                tracing::warn!("disk {}: {why}", self.disk.path().display());
                self.broken = true;
                break;
            }
            if let Err(e) = active.queue.disable_notification(&active.mem) {
                tracing::warn!("disk {}: queue unusable: {e}", self.disk.path().display());
                self.broken = true;
                break;
            }
            let mut progressed = false;
            while let Some(chain) = active.queue.pop_descriptor_chain(&active.mem) {
                progressed = true;
                handled += 1;
                let head = chain.head_index();
                let completion = match parse(chain, &active.mem, capacity, read_only) {
                    Ok(req) => {
                        let c = execute(&req, &mut self.disk, &active.mem, self.id.as_ref());
                        Some((req.status, c.status, c.written + 1))
                    }
                    Err(f) => {
                        tracing::debug!(
                            "disk {}: bad request: {}",
                            self.disk.path().display(),
                            f.error
                        );
                        f.status.map(|s| (s, f.error.status(), 1))
                    }
                };
                let used_len = match completion {
                    Some((at, status, len)) => match active.mem.write_obj(status, at) {
                        Ok(()) => len,
                        Err(_) => 0,
                    },
                    None => 0,
                };
                if let Err(e) = active.queue.add_used(&active.mem, head, used_len) {
                    tracing::warn!(
                        "disk {}: cannot complete request: {e}",
                        self.disk.path().display()
                    );
                    self.broken = true;
                    return handled;
                }
            }
            match active.queue.enable_notification(&active.mem) {
                // More arrived while notifications were off: go round again, unless the ring
                // itself is corrupt (an avail index that runs ahead yields no chains).
                Ok(true) if progressed => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!("disk {}: queue unusable: {e}", self.disk.path().display());
                    self.broken = true;
                    break;
                }
            }
        }
        if handled > 0 {
            match active.queue.needs_notification(&active.mem) {
                Ok(true) => {
                    if let Err(e) = active.interrupt.trigger(VirtioInterruptType::Queue(0)) {
                        tracing::warn!("disk {}: {e}", self.disk.path().display());
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("disk {}: {e}", self.disk.path().display()),
            }
        }
        handled
    }
}

fn build_config(sectors: u64) -> [u8; CONFIG_SIZE] {
    let mut c = [0u8; CONFIG_SIZE];
    let put32 = |c: &mut [u8; CONFIG_SIZE], at: usize, v: u32| {
        c[at..at + 4].copy_from_slice(&v.to_le_bytes())
    };
    c[0..8].copy_from_slice(&sectors.to_le_bytes()); // capacity
    put32(&mut c, 12, u32::from(QUEUE_SIZE) - 2); // seg_max: header and status take two
    put32(&mut c, 20, 512); // blk_size
    put32(&mut c, 36, MAX_RANGE_SECTORS); // max_discard_sectors
    put32(&mut c, 40, MAX_RANGES); // max_discard_seg
    put32(&mut c, 44, DISCARD_ALIGNMENT_SECTORS); // discard_sector_alignment
    put32(&mut c, 48, MAX_RANGE_SECTORS); // max_write_zeroes_sectors
    put32(&mut c, 52, MAX_RANGES); // max_write_zeroes_seg
    c[56] = 1; // write_zeroes_may_unmap
    c
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let start = offset as usize;
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.config.get(start + i).copied().unwrap_or(0);
        }
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        // Nothing is writable (no VIRTIO_BLK_F_CONFIG_WCE).
        tracing::debug!(
            "disk {}: config write at {offset:#x} ignored",
            self.disk.path().display()
        );
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let got = ctx.queues.len();
        let Some(queue) = ctx.queues.into_iter().next().filter(|_| got == 1) else {
            return Err(ActivateError::QueueCount { expected: 1, got });
        };
        self.broken = false;
        self.active = Some(Active {
            mem: ctx.mem,
            queue,
            interrupt: ctx.interrupt,
        });
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        self.broken = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::InterruptError;
    use crate::virtio::test_utils::{R, TestQueue, W};
    use std::sync::Mutex;
    use virtio_bindings::virtio_blk::{VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT};
    use vm_memory::GuestAddress;

    #[derive(Default)]
    struct CountingInterrupt(Mutex<Vec<VirtioInterruptType>>);

    impl VirtioInterrupt for CountingInterrupt {
        fn trigger(&self, kind: VirtioInterruptType) -> Result<(), InterruptError> {
            self.0.lock().unwrap().push(kind);
            Ok(())
        }
    }

    struct Fixture {
        _file: tempfile::NamedTempFile,
        block: Block,
        mem: GuestMemoryMmap,
        irq: Arc<CountingInterrupt>,
    }

    fn fixture(readonly: bool) -> Fixture {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            (0..64 * 512).map(|i| (i / 512) as u8).collect::<Vec<_>>(),
        )
        .unwrap();
        let block = Block::new(&DiskConfig {
            path: file.path().to_owned(),
            readonly,
            serial: Some("disk-serial-0".to_owned()),
        })
        .unwrap();
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        Fixture {
            _file: file,
            block,
            mem,
            irq: Arc::new(CountingInterrupt::default()),
        }
    }

    fn activate(f: &mut Fixture, q: &TestQueue) {
        f.block
            .activate(ActivateContext {
                mem: f.mem.clone(),
                interrupt: f.irq.clone(),
                queues: vec![q.queue()],
                acked_features: VIRTIO_F_VERSION_1,
            })
            .unwrap();
    }

    fn header(mem: &GuestMemoryMmap, at: u64, t: u32, sector: u64) {
        mem.write_obj(t, GuestAddress(at)).unwrap();
        mem.write_obj(sector, GuestAddress(at + 8)).unwrap();
    }

    fn status(mem: &GuestMemoryMmap, at: u64) -> u8 {
        mem.read_obj(GuestAddress(at)).unwrap()
    }

    #[test]
    fn features_and_config_for_writable_and_read_only_disks() {
        let rw = fixture(false);
        let ro = fixture(true);
        assert_ne!(rw.block.features() & bit(VIRTIO_BLK_F_FLUSH), 0);
        assert_ne!(rw.block.features() & bit(VIRTIO_BLK_F_DISCARD), 0);
        assert_eq!(rw.block.features() & bit(VIRTIO_BLK_F_RO), 0);
        assert_ne!(ro.block.features() & bit(VIRTIO_BLK_F_RO), 0);
        for f in [
            VIRTIO_BLK_F_FLUSH,
            VIRTIO_BLK_F_DISCARD,
            VIRTIO_BLK_F_WRITE_ZEROES,
        ] {
            assert_eq!(
                ro.block.features() & bit(f),
                0,
                "read-only disk offers feature {f}"
            );
        }
        let mut cap = [0u8; 8];
        rw.block.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 64);
        let mut past = [0xffu8; 4];
        rw.block.read_config(200, &mut past);
        assert_eq!(past, [0; 4]);
    }

    #[test]
    fn serves_read_write_and_get_id_then_interrupts_once() {
        let mut f = fixture(false);
        let mem = f.mem.clone();
        let mut q = TestQueue::new(&mem, 16);
        activate(&mut f, &q);
        header(&mem, 0x8000, VIRTIO_BLK_T_IN, 3);
        q.add_chain(&[(0x8000, 16, R), (0x9000, 512, W), (0xa000, 1, W)]);
        header(&mem, 0x8100, VIRTIO_BLK_T_OUT, 10);
        mem.write_slice(&[0x5a; 512], GuestAddress(0xb000)).unwrap();
        q.add_chain(&[(0x8100, 16, R), (0xb000, 512, R), (0xa001, 1, W)]);
        header(&mem, 0x8200, VIRTIO_BLK_T_GET_ID, 0);
        q.add_chain(&[(0x8200, 16, R), (0xc000, 20, W), (0xa002, 1, W)]);
        assert_eq!(f.block.process_queue(), 3);
        assert_eq!(
            (
                status(&mem, 0xa000),
                status(&mem, 0xa001),
                status(&mem, 0xa002)
            ),
            (0, 0, 0)
        );
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x9000)).unwrap(), 3);
        let mut id = [0u8; 13];
        mem.read_slice(&mut id, GuestAddress(0xc000)).unwrap();
        assert_eq!(&id, b"disk-serial-0");
        let (idx, used) = q.used();
        assert_eq!(idx, 3);
        assert_eq!(used, vec![(0, 513), (3, 1), (6, 21)]);
        assert_eq!(
            *f.irq.0.lock().unwrap(),
            vec![VirtioInterruptType::Queue(0)]
        );
        let data = std::fs::read(f._file.path()).unwrap();
        assert!(data[10 * 512..11 * 512].iter().all(|b| *b == 0x5a));
    }

    #[test]
    fn read_only_disk_answers_writes_with_ioerr() {
        let mut f = fixture(true);
        let mem = f.mem.clone();
        let mut q = TestQueue::new(&mem, 16);
        activate(&mut f, &q);
        header(&mem, 0x8000, VIRTIO_BLK_T_OUT, 0);
        q.add_chain(&[(0x8000, 16, R), (0x9000, 512, R), (0xa000, 1, W)]);
        f.block.process_queue();
        assert_eq!(status(&mem, 0xa000), 1);
        let data = std::fs::read(f._file.path()).unwrap();
        assert_eq!(data[0], 0, "file untouched");
    }

    /// Garbage from the guest: every request gets an answer (or at least a used entry) and
    /// the device keeps serving good requests afterwards.
    #[test]
    fn garbage_requests_get_errors_and_the_device_survives() {
        let mut f = fixture(false);
        let mem = f.mem.clone();
        let mut q = TestQueue::new(&mem, 16);
        activate(&mut f, &q);
        header(&mem, 0x8000, VIRTIO_BLK_T_IN, 64); // one past the end
        q.add_chain(&[(0x8000, 16, R), (0x9000, 512, W), (0xa000, 1, W)]);
        header(&mem, 0x8100, VIRTIO_BLK_T_IN, 0);
        q.add_chain(&[(0x8100, 16, R), (0x7_0000_0000, 512, W), (0xa001, 1, W)]); // outside RAM
        q.add_chain(&[(0x8100, 16, R), (0x9000, 0x10_0000, W), (0xa002, 1, W)]); // runs off RAM
        q.add_looping_chain(0x8100, 16);
        header(&mem, 0x8200, 0x1234, 0);
        q.add_chain(&[(0x8200, 16, R), (0xa004, 1, W)]); // unknown type
        header(&mem, 0x8300, VIRTIO_BLK_T_IN, 1);
        q.add_chain(&[(0x8300, 16, R), (0x9000, 512, W), (0xa005, 1, W)]); // a good one
        f.block.process_queue();
        assert_eq!(status(&mem, 0xa000), 1);
        assert_eq!(status(&mem, 0xa001), 1);
        assert_eq!(status(&mem, 0xa002), 1);
        assert_eq!(status(&mem, 0xa004), 2);
        assert_eq!(status(&mem, 0xa005), 0);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x9000)).unwrap(), 1);
        let (idx, used) = q.used();
        assert_eq!(idx, 6);
        assert_eq!(used[3].1, 0, "a looping chain has no status to write");
        assert_eq!(used[5].1, 513);
        assert!(!f.block.broken);
        // A chain longer than 4 GiB in total is cut short by virtio-queue: no status, but a
        // used entry, and the device carries on.
        header(&mem, 0x8400, VIRTIO_BLK_T_IN, 2);
        q.add_chain(&[(0x8100, 16, R), (0x9000, u32::MAX, W), (0xa006, 1, W)]);
        q.add_chain(&[(0x8400, 16, R), (0x9000, 512, W), (0xa007, 1, W)]);
        f.block.process_queue();
        let (idx, used) = q.used();
        assert_eq!(idx, 8);
        assert_eq!((used[6].1, used[7].1), (0, 513));
        assert_eq!(status(&mem, 0xa007), 0);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x9000)).unwrap(), 2);
    }

    #[test]
    fn runaway_avail_index_does_not_hang() {
        let mut f = fixture(false);
        let mem = f.mem.clone();
        let mut q = TestQueue::new(&mem, 16);
        activate(&mut f, &q);
        q.set_avail_idx(1000);
        assert_eq!(f.block.process_queue(), 0);
        assert!(f.block.broken, "a runaway avail index stops the queue");
        // Going backwards wraps to a huge distance: the same.
        let q1 = TestQueue::new(&mem, 16);
        f.block.reset();
        activate(&mut f, &q1);
        let mut q1 = q1;
        q1.set_avail_idx(u16::MAX);
        assert_eq!(f.block.process_queue(), 0);
        assert!(f.block.broken);
        // Head indexes beyond the queue size are refused by virtio-queue.
        let mut q2 = TestQueue::new(&mem, 16);
        f.block.reset();
        activate(&mut f, &q2);
        q2.publish_raw(200);
        f.block.process_queue();
        assert!(f.block.is_active());
    }

    #[test]
    fn inactive_or_reset_device_ignores_notifications() {
        let mut f = fixture(false);
        assert_eq!(f.block.process_queue(), 0);
        let mem = f.mem.clone();
        let q = TestQueue::new(&mem, 16);
        activate(&mut f, &q);
        f.block.reset();
        assert!(!f.block.is_active());
        assert_eq!(f.block.process_queue(), 0);
    }
}
