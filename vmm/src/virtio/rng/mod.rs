//! virtio-rng (virtio 1.x 5.4, device ID 4): the guest's entropy source, fed from the host's
//! getrandom(2). One queue; each chain is a set of writable buffers the device fills.
//! On by default (`--rng off` removes it): a guest kernel without RDRAND, or one that does not
//! trust it, otherwise waits for entropy at boot (sshd, TLS, systemd's random seed).

use virtio_queue::Queue;

use crate::virtio::chain::{Buffers, ChainError};
use crate::virtio::event_handler::QueueDevice;
use crate::virtio::queue_server::ActiveQueue;
use crate::virtio::{
    ActivateContext, ActivateError, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_RING_F_INDIRECT_DESC, VirtioDevice,
};

pub const VIRTIO_ID_RNG: u32 = 4;
const QUEUE_SIZES: [u16; 1] = [64];
/// Most bytes handed out per request, so a guest cannot make the VMM allocate its buffers'
/// size (up to 4 GiB) at once; the driver simply asks again.
pub const MAX_PER_REQUEST: usize = 64 * 1024;

#[derive(Default)]
pub struct Rng {
    active: Option<ActiveQueue>,
    bytes_served: u64,
}

impl Rng {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn bytes_served(&self) -> u64 {
        self.bytes_served
    }

    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }
}

fn fill(bufs: Result<Buffers, ChainError>, mem: &crate::memory::GuestMemoryMmap) -> u32 {
    let bufs = match bufs {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!("entropy device: bad descriptor chain: {e}");
            return 0;
        }
    };
    let want = (bufs.writable_len() as usize).min(MAX_PER_REQUEST);
    let mut random = vec![0u8; want];
    if let Err(e) = getrandom::fill(&mut random) {
        tracing::warn!("entropy device: getrandom failed: {e}");
        return 0;
    }
    bufs.write(mem, &random) as u32
}

impl QueueDevice for Rng {
    fn process_queue(&mut self, _index: usize) -> usize {
        let Some(active) = self.active.as_mut() else {
            return 0;
        };
        let mut served = 0u64;
        let n = active.serve("entropy device", |bufs, mem| {
            let len = fill(bufs, mem);
            served += u64::from(len);
            len
        });
        self.bytes_served += served;
        n
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_RNG
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX | VIRTIO_RING_F_INDIRECT_DESC
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::InterruptError;
    use crate::memory::GuestMemoryMmap;
    use crate::virtio::test_utils::{R, TestQueue, W};
    use crate::virtio::{VirtioInterrupt, VirtioInterruptType};
    use std::sync::Arc;
    use vm_memory::{Bytes, GuestAddress};

    struct NoIrq;
    impl VirtioInterrupt for NoIrq {
        fn trigger(&self, _kind: VirtioInterruptType) -> Result<(), InterruptError> {
            Ok(())
        }
    }

    #[test]
    fn fills_writable_buffers_with_random_bytes_and_survives_garbage() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
        let mut q = TestQueue::new(&mem, 16);
        let mut rng = Rng::new();
        rng.activate(ActivateContext {
            mem: mem.clone(),
            interrupt: Arc::new(NoIrq),
            queues: vec![q.queue()],
            acked_features: VIRTIO_F_VERSION_1,
        })
        .unwrap();
        q.add_chain(&[(0x10000, 256, W), (0x20000, 256, W)]);
        q.add_chain(&[(0x30000, 16, R)]); // nothing writable: nothing written
        q.add_chain(&[(0x7_0000_0000, 64, W)]); // outside RAM
        q.add_chain(&[(0x40000, 1 << 20, W)]); // more than one request hands out
        assert_eq!(rng.process_queue(0), 4);
        let (_, used) = q.used();
        assert_eq!(
            used.iter().map(|u| u.1).collect::<Vec<_>>(),
            vec![512, 0, 0, MAX_PER_REQUEST as u32]
        );
        let mut a = [0u8; 256];
        let mut b = [0u8; 256];
        mem.read_slice(&mut a, GuestAddress(0x10000)).unwrap();
        mem.read_slice(&mut b, GuestAddress(0x20000)).unwrap();
        // 256 random bytes are all zero, or equal, with probability 2^-2048.
        assert_ne!(a, [0u8; 256]);
        assert_ne!(a, b);
        assert_eq!(rng.bytes_served(), 512 + MAX_PER_REQUEST as u64);
    }
}
