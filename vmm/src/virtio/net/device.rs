//! The virtio-net device: features, configuration space, and moving frames between the RX/TX
//! queues and a host [`Backend`] (TAP or passt).
//!
//! Offered features and why:
//! - MAC, STATUS (link up; down if the backend goes away), MTU (the TAP's MTU, so the guest uses
//!   the bridge's real MTU; passt's 65520).
//! - MRG_RXBUF: with it the guest posts page-sized receive buffers and a large frame spans
//!   several; without it, a guest that accepts TSO must post 64 KiB buffers for every frame
//!   (Linux's "big packets": 17 pages per buffer, most of it wasted on small frames).
//! - TAP only: CSUM and HOST_TSO4/6 (the guest may hand us partial checksums and 64 KiB TCP
//!   segments, which the TAP takes as they are), GUEST_CSUM and GUEST_TSO4/6 (mirrored onto the
//!   TAP with TUNSETOFFLOAD so the kernel hands us only what the guest accepted).
//! - Not offered: UFO (Linux stopped generating it in 4.14 and the TAP ignores TUN_F_UFO), ECN
//!   variants, the control queue and multiqueue (one queue pair is plenty for test clusters).

use std::os::unix::io::RawFd;
use std::sync::Arc;

use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_MTU, VIRTIO_NET_F_STATUS,
    VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_S_LINK_UP,
};
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::header::{self, MAX_BUFFER_LEN, Offloads, VNET_HDR_LEN};
use super::rx::{Delivery, RxQueue, publish};
use super::tx;
use crate::memory::GuestMemoryMmap;
use crate::net::{Backend, BackendError, MacAddr, SendStatus};
use crate::virtio::queue_server::avail_fault;
use crate::virtio::{
    ActivateContext, ActivateError, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_RING_F_INDIRECT_DESC, VirtioDevice, VirtioInterrupt, VirtioInterruptType,
};

pub const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: [u16; 2] = [QUEUE_SIZE, QUEUE_SIZE];
const RX_QUEUE: u16 = 0;
const TX_QUEUE: u16 = 1;
/// mac[6], status u16, max_virtqueue_pairs u16, mtu u16 (virtio 1.x 5.1.4).
const CONFIG_SIZE: usize = 12;
/// Frames moved per event before going back to the event loop, so one busy direction cannot
/// starve the other or the other devices.
pub const BUDGET: usize = 256;

const fn bit(b: u32) -> u64 {
    1 << b
}

/// Counters, for logs and tests: every frame is either moved or counted as dropped here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Frames from the backend that the guest cannot take: malformed, over the MTU, offloads it
    /// did not accept, larger than its buffers.
    pub rx_dropped: u64,
    /// Receive buffers the guest posted that were unusable (returned with length 0).
    pub rx_bad_buffers: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Transmit chains that were malformed (bad descriptors, headers, sizes).
    pub tx_malformed: u64,
    /// Good frames the backend refused or that went nowhere because it is gone.
    pub tx_backend_dropped: u64,
}

/// Whether the device wants to be called again for the TX queue without a new kick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxProgress {
    Done,
    /// The budget ran out with chains left: kick the queue again.
    More,
}

struct Active {
    mem: GuestMemoryMmap,
    rx: Queue,
    tx: Queue,
    rxq: RxQueue,
    interrupt: Arc<dyn VirtioInterrupt>,
    acked: u64,
    rx_broken: bool,
    tx_broken: bool,
}

pub struct Net {
    name: String,
    backend: Box<dyn Backend>,
    mac: MacAddr,
    mtu: u16,
    features: u64,
    link_up: bool,
    active: Option<Active>,
    rx_buf: Vec<u8>,
    /// Length of a frame in `rx_buf` that is waiting for guest buffers.
    rx_pending: Option<usize>,
    /// No room for `rx_pending`: the backend is not read until the guest posts buffers.
    rx_waiting: bool,
    tx_buf: Vec<u8>,
    /// The backend is full; TX waits until it is writable.
    tx_blocked: bool,
    backend_closed: bool,
    stats: NetStats,
    /// Written when activation, reset or the backend's state changes what the event handler
    /// must watch.
    state_evt: EventFd,
}

impl Net {
    /// NIC number `index` (for log messages) over `backend`.
    pub fn new(index: usize, backend: Box<dyn Backend>, mac: MacAddr) -> std::io::Result<Net> {
        let features = VIRTIO_F_VERSION_1
            | VIRTIO_RING_F_EVENT_IDX
            | VIRTIO_RING_F_INDIRECT_DESC
            | bit(VIRTIO_NET_F_MAC)
            | bit(VIRTIO_NET_F_STATUS)
            | bit(VIRTIO_NET_F_MTU)
            | bit(VIRTIO_NET_F_MRG_RXBUF)
            | backend.offload_features();
        Ok(Net {
            name: format!("net{index} ({})", backend.describe()),
            mtu: backend.mtu(),
            backend,
            mac,
            features,
            link_up: true,
            active: None,
            rx_buf: vec![0u8; MAX_BUFFER_LEN],
            rx_pending: None,
            rx_waiting: false,
            tx_buf: vec![0u8; MAX_BUFFER_LEN],
            tx_blocked: false,
            backend_closed: false,
            stats: NetStats::default(),
            state_evt: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    pub fn stats(&self) -> NetStats {
        self.stats
    }

    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    pub fn backend_fd(&self) -> RawFd {
        self.backend.fd()
    }

    pub fn state_evt(&self) -> std::io::Result<EventFd> {
        self.state_evt.try_clone()
    }

    /// What the event handler should watch the backend for: (readable, writable).
    /// Nothing while inactive, and not readable while the guest has no room: a level-triggered
    /// descriptor that stays readable would otherwise spin the event loop.
    pub fn backend_interest(&self) -> (bool, bool) {
        if self.backend_closed || self.active.is_none() {
            return (false, false);
        }
        (!self.rx_waiting, self.tx_blocked)
    }

    pub fn backend_closed(&self) -> bool {
        self.backend_closed
    }

    fn wake_handler(&self) {
        if let Err(e) = self.state_evt.write(1) {
            tracing::warn!("{}: cannot wake the event handler: {e}", self.name);
        }
    }

    fn negotiated_mtu(&self, acked: u64) -> Option<u16> {
        (acked & bit(VIRTIO_NET_F_MTU) != 0).then_some(self.mtu)
    }

    /// The backend is gone (passt exited, the TAP was deleted): the link goes down and stays
    /// down; transmitted frames are dropped so the guest's queue keeps moving.
    pub fn close_backend(&mut self, why: &str) {
        if self.backend_closed {
            return;
        }
        if self.backend.stopping() {
            tracing::debug!("{}: backend stopped with the VMM: {why}", self.name);
        } else {
            tracing::error!("{}: backend gone, link down: {why}", self.name);
        }
        self.backend_closed = true;
        self.link_up = false;
        self.rx_pending = None;
        self.tx_blocked = false;
        if let Some(a) = &self.active
            && let Err(e) = a.interrupt.trigger(VirtioInterruptType::Config)
        {
            tracing::warn!("{}: {e}", self.name);
        }
        self.wake_handler();
    }

    /// Moves frames from the backend into the guest's receive buffers until the backend is
    /// empty, the guest has no room, or the budget is spent.
    pub fn process_rx(&mut self) {
        if self.backend_closed {
            return;
        }
        let mtu = self
            .active
            .as_ref()
            .and_then(|a| self.negotiated_mtu(a.acked));
        let Some(a) = self.active.as_mut().filter(|a| !a.rx_broken) else {
            return;
        };
        self.rx_waiting = false;
        let mergeable = a.acked & bit(VIRTIO_NET_F_MRG_RXBUF) != 0;
        let allowed = Offloads::rx(a.acked, mtu);
        let mut used = Vec::new();
        let mut frames = 0;
        let mut closed = None;
        loop {
            let len = match self.rx_pending {
                Some(len) => len,
                None => {
                    if frames >= BUDGET {
                        break;
                    }
                    match self.backend.recv(&mut self.rx_buf) {
                        Ok(Some(n)) => {
                            if let Err(e) = header::check_buffer(&self.rx_buf[..n], &allowed) {
                                tracing::debug!("{}: dropped a received frame: {e}", self.name);
                                self.stats.rx_dropped += 1;
                                continue;
                            }
                            if !allowed.csum {
                                // The TAP marks checked frames DATA_VALID whatever was
                                // negotiated; the spec reserves it for GUEST_CSUM.
                                self.rx_buf[0] &= !(VIRTIO_NET_HDR_F_DATA_VALID as u8);
                            }
                            self.rx_pending = Some(n);
                            n
                        }
                        Ok(None) => break,
                        Err(BackendError::Frame(e)) => {
                            tracing::debug!("{}: receive error: {e}", self.name);
                            self.stats.rx_dropped += 1;
                            break;
                        }
                        Err(BackendError::Closed(why)) => {
                            closed = Some(why);
                            break;
                        }
                    }
                }
            };
            match a.rxq.deliver(
                &mut a.rx,
                &a.mem,
                &mut self.rx_buf[..len],
                mergeable,
                &mut used,
            ) {
                Delivery::Delivered => {
                    self.stats.rx_frames += 1;
                    self.stats.rx_bytes += (len - VNET_HDR_LEN) as u64;
                    self.rx_pending = None;
                    frames += 1;
                }
                Delivery::TooBig => {
                    tracing::debug!(
                        "{}: dropped a {}-byte frame that does not fit the guest's buffers",
                        self.name,
                        len - VNET_HDR_LEN
                    );
                    self.stats.rx_dropped += 1;
                    self.rx_pending = None;
                }
                Delivery::NoRoom => {
                    // Ask for a kick when buffers arrive; some may have arrived just now, and
                    // then `deliver` takes them (each retry takes at least one chain).
                    match a.rx.enable_notification(&a.mem) {
                        Ok(true) => match avail_fault(&a.rx, &a.mem) {
                            None => continue,
                            Some(why) => {
                                tracing::warn!("{}: receive queue: {why}", self.name);
                                a.rx_broken = true;
                            }
                        },
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!("{}: receive queue unusable: {e}", self.name);
                            a.rx_broken = true;
                        }
                    }
                    self.rx_waiting = true;
                    break;
                }
            }
        }
        for (head, e) in a.rxq.take_bad() {
            tracing::debug!("{}: unusable receive buffer: {e}", self.name);
            self.stats.rx_bad_buffers += 1;
            used.push((head, 0));
        }
        if let Err(e) = publish(&mut a.rx, &a.mem, &used) {
            tracing::warn!("{}: receive queue unusable: {e}", self.name);
            a.rx_broken = true;
        } else if a.rxq.needs_interrupt(&a.rx, &a.mem)
            && let Err(e) = a.interrupt.trigger(VirtioInterruptType::Queue(RX_QUEUE))
        {
            tracing::warn!("{}: {e}", self.name);
        }
        if let Some(why) = closed {
            self.close_backend(&why);
        }
    }

    /// Sends what the guest queued for transmission.
    pub fn process_tx(&mut self) -> TxProgress {
        let mtu = self
            .active
            .as_ref()
            .and_then(|a| self.negotiated_mtu(a.acked));
        let Some(a) = self.active.as_mut().filter(|a| !a.tx_broken) else {
            return TxProgress::Done;
        };
        if self.tx_blocked {
            return TxProgress::Done;
        }
        let allowed = Offloads::tx(a.acked, mtu);
        let mut handled = 0;
        let mut progress = TxProgress::Done;
        let mut closed = None;
        'outer: loop {
            if let Some(why) = avail_fault(&a.tx, &a.mem) {
                tracing::warn!("{}: transmit queue: {why}", self.name);
                a.tx_broken = true;
                break;
            }
            if let Err(e) = a.tx.disable_notification(&a.mem) {
                tracing::warn!("{}: transmit queue unusable: {e}", self.name);
                a.tx_broken = true;
                break;
            }
            let mut progressed = false;
            while handled < BUDGET {
                let Some(chain) = a.tx.pop_descriptor_chain(&a.mem) else {
                    break;
                };
                handled += 1;
                progressed = true;
                let head = chain.head_index();
                match tx::gather(chain, &a.mem, &mut self.tx_buf, &allowed) {
                    Ok(_) if self.backend_closed || closed.is_some() => {
                        self.stats.tx_backend_dropped += 1;
                    }
                    Ok(n) => match self.backend.send(&self.tx_buf[..n]) {
                        Ok(status) => {
                            self.stats.tx_frames += 1;
                            self.stats.tx_bytes += (n - VNET_HDR_LEN) as u64;
                            self.tx_blocked = status == SendStatus::Blocked;
                        }
                        Err(BackendError::Frame(_)) => self.stats.tx_backend_dropped += 1,
                        Err(BackendError::Closed(why)) => {
                            self.stats.tx_backend_dropped += 1;
                            closed = Some(why);
                        }
                    },
                    Err(e) => {
                        tracing::debug!("{}: dropped a transmitted frame: {e}", self.name);
                        self.stats.tx_malformed += 1;
                    }
                }
                if let Err(e) = a.tx.add_used(&a.mem, head, 0) {
                    tracing::warn!("{}: transmit queue unusable: {e}", self.name);
                    a.tx_broken = true;
                    break 'outer;
                }
                if self.tx_blocked {
                    // Resumed when the backend is writable again.
                    break 'outer;
                }
            }
            if handled >= BUDGET {
                progress = TxProgress::More;
                break;
            }
            match a.tx.enable_notification(&a.mem) {
                // More arrived while notifications were off: go round again, unless the ring
                // itself is corrupt (an avail index that runs ahead yields no chains).
                Ok(true) if progressed => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!("{}: transmit queue unusable: {e}", self.name);
                    a.tx_broken = true;
                    break;
                }
            }
        }
        if handled > 0 {
            match a.tx.needs_notification(&a.mem) {
                Ok(true) => {
                    if let Err(e) = a.interrupt.trigger(VirtioInterruptType::Queue(TX_QUEUE)) {
                        tracing::warn!("{}: {e}", self.name);
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("{}: {e}", self.name),
            }
        }
        if let Some(why) = closed {
            self.close_backend(&why);
        }
        progress
    }

    /// The backend can take more after `Blocked`: finish the frame, then carry on with TX.
    pub fn backend_writable(&mut self) -> TxProgress {
        match self.backend.flush() {
            Ok(SendStatus::Sent) => {
                self.tx_blocked = false;
                self.process_tx()
            }
            Ok(SendStatus::Blocked) => TxProgress::Done,
            Err(BackendError::Frame(_)) => {
                self.stats.tx_backend_dropped += 1;
                self.tx_blocked = false;
                self.process_tx()
            }
            Err(BackendError::Closed(why)) => {
                self.close_backend(&why);
                TxProgress::Done
            }
        }
    }

    fn config_bytes(&self) -> [u8; CONFIG_SIZE] {
        let mut c = [0u8; CONFIG_SIZE];
        c[..6].copy_from_slice(&self.mac.0);
        let status = if self.link_up {
            VIRTIO_NET_S_LINK_UP as u16
        } else {
            0
        };
        c[6..8].copy_from_slice(&status.to_le_bytes());
        c[8..10].copy_from_slice(&1u16.to_le_bytes()); // max_virtqueue_pairs
        c[10..12].copy_from_slice(&self.mtu.to_le_bytes());
        c
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let config = self.config_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| config.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    fn write_config(&mut self, offset: u64, _data: &[u8]) {
        // The MAC is read-only without VIRTIO_NET_F_CTRL_MAC_ADDR; nothing else is writable.
        tracing::debug!("{}: config write at {offset:#x} ignored", self.name);
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let got = ctx.queues.len();
        let mut queues = ctx.queues.into_iter();
        let (Some(rx), Some(tx), None) = (queues.next(), queues.next(), queues.next()) else {
            return Err(ActivateError::QueueCount { expected: 2, got });
        };
        if let Err(e) = self.backend.set_guest_offloads(ctx.acked_features) {
            // The TAP keeps delivering plain frames only, which every guest takes.
            tracing::warn!("{}: {e}", self.name);
        }
        tracing::debug!("{}: active, features {:#x}", self.name, ctx.acked_features);
        self.active = Some(Active {
            mem: ctx.mem,
            rx,
            tx,
            rxq: RxQueue::new(),
            interrupt: ctx.interrupt,
            acked: ctx.acked_features,
            rx_broken: false,
            tx_broken: false,
        });
        // A frame read for the previous driver instance may not suit this one's features.
        self.rx_pending = None;
        self.rx_waiting = false;
        self.wake_handler();
        Ok(())
    }

    fn reset(&mut self) {
        if self.active.take().is_some()
            && let Err(e) = self.backend.set_guest_offloads(0)
        {
            tracing::warn!("{}: {e}", self.name);
        }
        self.rx_pending = None;
        self.rx_waiting = false;
        self.wake_handler();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::InterruptError;
    use crate::virtio::net::header::VirtioNetHdr;
    use crate::virtio::test_utils::{R, TestQueue, W};
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use virtio_bindings::virtio_net::{
        VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_HOST_TSO4,
    };
    use vm_memory::{Bytes, GuestAddress};

    #[derive(Default)]
    struct CountingInterrupt(Mutex<Vec<VirtioInterruptType>>);

    impl VirtioInterrupt for CountingInterrupt {
        fn trigger(&self, kind: VirtioInterruptType) -> Result<(), InterruptError> {
            self.0.lock().unwrap().push(kind);
            Ok(())
        }
    }

    /// A backend in memory: frames to hand to the guest, frames the guest sent, and knobs for
    /// a full or vanished peer.
    #[derive(Default)]
    struct Shared {
        inbound: VecDeque<Vec<u8>>,
        sent: Vec<Vec<u8>>,
        offloads: Vec<u64>,
        full: bool,
        gone: bool,
        recv_calls: usize,
    }

    struct FakeBackend(Arc<Mutex<Shared>>, u64);

    impl Backend for FakeBackend {
        fn fd(&self) -> RawFd {
            -1
        }
        fn recv(&mut self, buf: &mut [u8]) -> Result<Option<usize>, BackendError> {
            let mut s = self.0.lock().unwrap();
            s.recv_calls += 1;
            if s.gone {
                return Err(BackendError::Closed("gone".into()));
            }
            Ok(s.inbound.pop_front().map(|f| {
                buf[..f.len()].copy_from_slice(&f);
                f.len()
            }))
        }
        fn send(&mut self, buf: &[u8]) -> Result<SendStatus, BackendError> {
            let mut s = self.0.lock().unwrap();
            if s.gone {
                return Err(BackendError::Closed("gone".into()));
            }
            s.sent.push(buf.to_vec());
            Ok(if s.full {
                SendStatus::Blocked
            } else {
                SendStatus::Sent
            })
        }
        fn flush(&mut self) -> Result<SendStatus, BackendError> {
            Ok(if self.0.lock().unwrap().full {
                SendStatus::Blocked
            } else {
                SendStatus::Sent
            })
        }
        fn offload_features(&self) -> u64 {
            self.1
        }
        fn set_guest_offloads(&mut self, acked: u64) -> Result<(), String> {
            self.0.lock().unwrap().offloads.push(acked);
            Ok(())
        }
        fn mtu(&self) -> u16 {
            1500
        }
        fn describe(&self) -> String {
            "fake".into()
        }
    }

    const TAP_OFFLOADS: u64 = bit(VIRTIO_NET_F_CSUM)
        | bit(VIRTIO_NET_F_GUEST_CSUM)
        | bit(VIRTIO_NET_F_GUEST_TSO4)
        | bit(VIRTIO_NET_F_HOST_TSO4);

    struct Fixture {
        net: Net,
        shared: Arc<Mutex<Shared>>,
        mem: GuestMemoryMmap,
        irq: Arc<CountingInterrupt>,
    }

    fn fixture(offloads: u64) -> Fixture {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let net = Net::new(
            0,
            Box::new(FakeBackend(shared.clone(), offloads)),
            MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
        )
        .unwrap();
        Fixture {
            net,
            shared,
            mem: GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap(),
            irq: Arc::new(CountingInterrupt::default()),
        }
    }

    /// Two queues: RX at 0x1000.., TX elsewhere (TestQueue puts its rings at fixed
    /// addresses, so the TX queue gets its own memory).
    struct Queues<'a> {
        rx: TestQueue<'a>,
        tx: TestQueue<'a>,
    }

    fn activate<'a>(f: &mut Fixture, rx_mem: &'a GuestMemoryMmap, acked: u64) -> Queues<'a> {
        let rx = TestQueue::new(rx_mem, 16);
        let tx = TestQueue::new_at(rx_mem, 16, 0x10_0000);
        f.net
            .activate(ActivateContext {
                mem: f.mem.clone(),
                interrupt: f.irq.clone(),
                queues: vec![rx.queue(), tx.queue()],
                acked_features: acked,
            })
            .unwrap();
        Queues { rx, tx }
    }

    fn eth_frame(len: usize, tag: u8) -> Vec<u8> {
        let mut b = vec![0u8; VNET_HDR_LEN];
        b.extend((0..len).map(|i| tag ^ (i as u8)));
        b
    }

    fn write_tx(mem: &GuestMemoryMmap, at: u64, hdr: VirtioNetHdr, len: usize) -> Vec<u8> {
        let mut f = eth_frame(len, 0x5a);
        f[..VNET_HDR_LEN].copy_from_slice(&hdr.to_bytes());
        mem.write_slice(&f, GuestAddress(at)).unwrap();
        f
    }

    #[test]
    fn features_depend_on_the_backend() {
        let tap = fixture(TAP_OFFLOADS);
        let passt = fixture(0);
        for f in [&tap, &passt] {
            for b in [
                VIRTIO_NET_F_MAC,
                VIRTIO_NET_F_STATUS,
                VIRTIO_NET_F_MTU,
                VIRTIO_NET_F_MRG_RXBUF,
            ] {
                assert_ne!(f.net.features() & bit(b), 0, "feature {b}");
            }
            assert_ne!(f.net.features() & VIRTIO_F_VERSION_1, 0);
        }
        assert_eq!(tap.net.features() & TAP_OFFLOADS, TAP_OFFLOADS);
        assert_eq!(passt.net.features() & TAP_OFFLOADS, 0);
        assert_eq!(tap.net.device_type(), 1);
        assert_eq!(tap.net.queue_max_sizes(), &[256, 256]);
    }

    #[test]
    fn config_space_has_mac_link_pairs_and_mtu() {
        let f = fixture(0);
        let mut c = [0xffu8; 16];
        f.net.read_config(0, &mut c);
        assert_eq!(&c[..6], &[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(u16::from_le_bytes([c[6], c[7]]), 1, "link up");
        assert_eq!(u16::from_le_bytes([c[8], c[9]]), 1, "one queue pair");
        assert_eq!(u16::from_le_bytes([c[10], c[11]]), 1500);
        assert_eq!(&c[12..], &[0; 4], "past the end reads as zero");
        let mut mtu = [0u8; 2];
        f.net.read_config(10, &mut mtu);
        assert_eq!(u16::from_le_bytes(mtu), 1500);
        let mut far = [0xffu8; 4];
        f.net.read_config(u64::MAX, &mut far);
        assert_eq!(far, [0; 4]);
    }

    #[test]
    fn activation_mirrors_offloads_and_reset_clears_them() {
        let mut f = fixture(TAP_OFFLOADS);
        let mem = f.mem.clone();
        assert_eq!(
            f.net.backend_interest(),
            (false, false),
            "idle until activated"
        );
        let acked = VIRTIO_F_VERSION_1 | bit(VIRTIO_NET_F_GUEST_CSUM);
        let _q = activate(&mut f, &mem, acked);
        assert_eq!(f.net.backend_interest(), (true, false));
        assert_eq!(f.net.state_evt.read().unwrap(), 1, "handler woken");
        f.net.reset();
        assert_eq!(f.shared.lock().unwrap().offloads, vec![acked, 0]);
        assert_eq!(f.net.backend_interest(), (false, false));
        let two_queues_needed = f.net.activate(ActivateContext {
            mem: mem.clone(),
            interrupt: f.irq.clone(),
            queues: vec![TestQueue::new(&mem, 16).queue()],
            acked_features: acked,
        });
        assert!(matches!(
            two_queues_needed,
            Err(ActivateError::QueueCount {
                expected: 2,
                got: 1
            })
        ));
    }

    #[test]
    fn transmits_good_frames_and_counts_bad_ones() {
        let mut f = fixture(TAP_OFFLOADS);
        let mem = f.mem.clone();
        let acked = VIRTIO_F_VERSION_1 | TAP_OFFLOADS | bit(VIRTIO_NET_F_MTU);
        let mut q = activate(&mut f, &mem, acked);
        let good = write_tx(&mem, 0x20000, VirtioNetHdr::default(), 60);
        q.tx.add_chain(&[(0x20000, 72, R)]);
        let tso = VirtioNetHdr {
            flags: 1,
            gso_type: 1,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 0,
        };
        let big = write_tx(&mem, 0x30000, tso, 30000);
        q.tx.add_chain(&[(0x30000, 12, R), (0x3000c, 30000, R)]);
        // Bad: writable descriptor, outside memory, over the MTU without GSO, oversized.
        q.tx.add_chain(&[(0x20000, 72, W)]);
        q.tx.add_chain(&[(0x7000_0000, 72, R)]);
        write_tx(&mem, 0x50000, VirtioNetHdr::default(), 1600);
        q.tx.add_chain(&[(0x50000, 1612, R)]);
        q.tx.add_chain(&[(0x60000, 0x20000, R)]);
        q.tx.add_looping_chain(0x20000, 72);
        let good2 = write_tx(&mem, 0x21000, VirtioNetHdr::default(), 100);
        q.tx.add_chain(&[(0x21000, 112, R)]);
        assert_eq!(f.net.process_tx(), TxProgress::Done);
        let s = f.shared.lock().unwrap();
        assert_eq!(s.sent, vec![good, big, good2]);
        let st = f.net.stats();
        assert_eq!((st.tx_frames, st.tx_malformed), (3, 5));
        assert_eq!(st.tx_bytes, 60 + 30000 + 100);
        let (idx, used) = q.tx.used();
        assert_eq!(idx, 8, "every chain is returned, good or bad");
        assert!(used.iter().all(|(_, len)| *len == 0));
        assert_eq!(
            *f.irq.0.lock().unwrap(),
            vec![VirtioInterruptType::Queue(1)]
        );
    }

    #[test]
    fn offloads_the_driver_did_not_accept_are_refused_on_transmit() {
        let mut f = fixture(TAP_OFFLOADS);
        let mem = f.mem.clone();
        // The driver took only the basics.
        let mut q = activate(&mut f, &mem, VIRTIO_F_VERSION_1);
        let csum = VirtioNetHdr {
            flags: 1,
            csum_start: 34,
            csum_offset: 6,
            ..Default::default()
        };
        write_tx(&mem, 0x20000, csum, 60);
        q.tx.add_chain(&[(0x20000, 72, R)]);
        f.net.process_tx();
        assert!(f.shared.lock().unwrap().sent.is_empty());
        assert_eq!(f.net.stats().tx_malformed, 1);
    }

    #[test]
    fn receives_into_guest_buffers_merging_when_negotiated() {
        let mut f = fixture(TAP_OFFLOADS);
        let mem = f.mem.clone();
        let acked = VIRTIO_F_VERSION_1 | bit(VIRTIO_NET_F_MRG_RXBUF) | bit(VIRTIO_NET_F_MTU);
        let mut q = activate(&mut f, &mem, acked);
        for i in 0..4u64 {
            q.rx.add_chain(&[(0x40000 + i * 0x1000, 1024, W)]);
        }
        let mut small = eth_frame(60, 1);
        small[0] = VIRTIO_NET_HDR_F_DATA_VALID as u8;
        let large = eth_frame(1514, 2);
        f.shared
            .lock()
            .unwrap()
            .inbound
            .extend([small.clone(), large.clone()]);
        f.net.process_rx();
        let (idx, used) = q.rx.used();
        assert_eq!(idx, 3);
        assert_eq!(used, vec![(0, 72), (1, 1024), (2, 502)]);
        let mut got = vec![0u8; 72];
        mem.read_slice(&mut got, GuestAddress(0x40000)).unwrap();
        assert_eq!(&got[12..], &small[12..]);
        assert_eq!(u16::from_le_bytes([got[10], got[11]]), 1);
        assert_eq!(
            got[0], 0,
            "DATA_VALID withheld: GUEST_CSUM was not negotiated"
        );
        let mut got = vec![0u8; 1024 + 502];
        mem.read_slice(&mut got[..1024], GuestAddress(0x41000))
            .unwrap();
        mem.read_slice(&mut got[1024..], GuestAddress(0x42000))
            .unwrap();
        assert_eq!(u16::from_le_bytes([got[10], got[11]]), 2, "num_buffers");
        assert_eq!(&got[12..], &large[12..]);
        assert_eq!(f.net.stats().rx_frames, 2);
        assert_eq!(f.net.stats().rx_bytes, 60 + 1514);
        assert_eq!(
            *f.irq.0.lock().unwrap(),
            vec![VirtioInterruptType::Queue(0)]
        );
        assert_eq!(f.net.active.as_ref().unwrap().rx.next_used(), 3);
    }

    /// The guest has no buffers: one frame is read and parked, the backend is no longer
    /// polled, and the frame goes in once the guest posts a buffer and kicks.
    #[test]
    fn no_buffers_stops_polling_until_the_guest_posts_some() {
        let mut f = fixture(0);
        let mem = f.mem.clone();
        let mut q = activate(
            &mut f,
            &mem,
            VIRTIO_F_VERSION_1 | bit(VIRTIO_NET_F_MRG_RXBUF),
        );
        let frames: Vec<_> = (0..3).map(|i| eth_frame(100, i)).collect();
        f.shared.lock().unwrap().inbound.extend(frames.clone());
        f.net.process_rx();
        assert_eq!(
            f.net.backend_interest(),
            (false, false),
            "not readable: no busy loop"
        );
        assert_eq!(
            f.shared.lock().unwrap().recv_calls,
            1,
            "one frame read and parked"
        );
        assert_eq!(f.shared.lock().unwrap().inbound.len(), 2);
        assert!(f.irq.0.lock().unwrap().is_empty());
        // Called again without new buffers (e.g. a spurious kick): still nothing lost.
        f.net.process_rx();
        assert_eq!(f.shared.lock().unwrap().recv_calls, 1);
        // The guest posts two buffers and kicks the RX queue.
        q.rx.add_chain(&[(0x40000, 2048, W)]);
        q.rx.add_chain(&[(0x41000, 2048, W)]);
        f.net.process_rx();
        let (idx, _) = q.rx.used();
        assert_eq!(idx, 2);
        let mut got = vec![0u8; 100];
        mem.read_slice(&mut got, GuestAddress(0x40000 + 12))
            .unwrap();
        assert_eq!(got, frames[0][12..], "the parked frame first");
        assert_eq!(
            f.net.backend_interest(),
            (false, false),
            "third frame parked again"
        );
        assert_eq!(f.net.stats().rx_dropped, 0);
    }

    /// A malicious guest moves the RX avail index far ahead of what it posted while a frame
    /// waits: virtio-queue yields no chain yet reports more work, and the receive loop used
    /// to retry forever on the device thread (stalling every device). Now the queue stops.
    #[test]
    fn runaway_rx_avail_index_stops_the_queue_instead_of_spinning() {
        let mut f = fixture(0);
        let mem: &'static GuestMemoryMmap = Box::leak(Box::new(f.mem.clone()));
        let mut q = activate(&mut f, mem, VIRTIO_F_VERSION_1);
        q.rx.set_avail_idx(1000);
        f.shared
            .lock()
            .unwrap()
            .inbound
            .push_back(eth_frame(100, 1));
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            f.net.process_rx();
            let broken = f.net.active.as_ref().is_some_and(|a| a.rx_broken);
            let _ = done.send(broken);
        });
        let broken = finished
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("process_rx with a runaway avail index did not return (spins)");
        assert!(broken, "the receive queue is marked broken");
    }

    #[test]
    fn frames_the_guest_cannot_take_are_dropped_and_counted() {
        let mut f = fixture(TAP_OFFLOADS);
        let mem = f.mem.clone();
        // No GUEST_TSO, no MRG_RXBUF, MTU 1500.
        let acked = VIRTIO_F_VERSION_1 | bit(VIRTIO_NET_F_MTU);
        let mut q = activate(&mut f, &mem, acked);
        q.rx.add_chain(&[(0x40000, 1526 + 12, W)]);
        let mut gso = eth_frame(3000, 3);
        gso[..VNET_HDR_LEN].copy_from_slice(
            &VirtioNetHdr {
                flags: 1,
                gso_type: 1,
                hdr_len: 54,
                gso_size: 1448,
                csum_start: 34,
                csum_offset: 16,
                num_buffers: 0,
            }
            .to_bytes(),
        );
        let over_mtu = eth_frame(1600, 4);
        let runt = eth_frame(10, 5);
        let ok = eth_frame(1514, 6);
        f.shared
            .lock()
            .unwrap()
            .inbound
            .extend([gso, over_mtu, runt, ok.clone()]);
        f.net.process_rx();
        assert_eq!(f.net.stats().rx_dropped, 3);
        assert_eq!(f.net.stats().rx_frames, 1);
        let mut got = vec![0u8; 1514];
        mem.read_slice(&mut got, GuestAddress(0x40000 + 12))
            .unwrap();
        assert_eq!(got, ok[12..]);
    }

    #[test]
    fn bad_receive_buffers_come_back_empty() {
        let mut f = fixture(0);
        let mem = f.mem.clone();
        let mut q = activate(
            &mut f,
            &mem,
            VIRTIO_F_VERSION_1 | bit(VIRTIO_NET_F_MRG_RXBUF),
        );
        q.rx.add_chain(&[(0x40000, 2048, R)]);
        q.rx.add_chain(&[(0x7000_0000, 2048, W)]);
        q.rx.add_chain(&[(0x41000, 2048, W)]);
        f.shared.lock().unwrap().inbound.push_back(eth_frame(64, 9));
        f.net.process_rx();
        let (idx, used) = q.rx.used();
        assert_eq!(idx, 3);
        assert_eq!(used, vec![(2, 76), (0, 0), (1, 0)]);
        assert_eq!(f.net.stats().rx_bad_buffers, 2);
    }

    #[test]
    fn a_full_backend_pauses_transmit_until_writable() {
        let mut f = fixture(0);
        let mem = f.mem.clone();
        let mut q = activate(&mut f, &mem, VIRTIO_F_VERSION_1);
        f.shared.lock().unwrap().full = true;
        for i in 0..3u64 {
            write_tx(&mem, 0x20000 + i * 0x1000, VirtioNetHdr::default(), 60);
            q.tx.add_chain(&[(0x20000 + i * 0x1000, 72, R)]);
        }
        f.net.process_tx();
        assert_eq!(
            f.shared.lock().unwrap().sent.len(),
            1,
            "taken, then blocked"
        );
        assert_eq!(f.net.backend_interest(), (true, true), "watch for writable");
        assert_eq!(q.tx.used().0, 1);
        f.net.process_tx();
        assert_eq!(
            f.shared.lock().unwrap().sent.len(),
            1,
            "a kick does not bypass the block"
        );
        f.shared.lock().unwrap().full = false;
        f.net.backend_writable();
        assert_eq!(f.shared.lock().unwrap().sent.len(), 3);
        assert_eq!(q.tx.used().0, 3);
        assert_eq!(f.net.backend_interest(), (true, false));
    }

    #[test]
    fn a_vanished_backend_takes_the_link_down_and_drops_transmits() {
        let mut f = fixture(0);
        let mem = f.mem.clone();
        let mut q = activate(&mut f, &mem, VIRTIO_F_VERSION_1);
        f.shared.lock().unwrap().gone = true;
        f.net.process_rx();
        assert!(f.net.backend_closed());
        let mut status = [0u8; 2];
        f.net.read_config(6, &mut status);
        assert_eq!(status, [0, 0], "link down");
        assert!(
            f.irq
                .0
                .lock()
                .unwrap()
                .contains(&VirtioInterruptType::Config)
        );
        write_tx(&mem, 0x20000, VirtioNetHdr::default(), 60);
        q.tx.add_chain(&[(0x20000, 72, R)]);
        f.net.process_tx();
        assert_eq!(q.tx.used().0, 1, "the guest gets its buffer back");
        assert_eq!(f.net.stats().tx_backend_dropped, 1);
        assert_eq!(f.net.backend_interest(), (false, false));
    }

    #[test]
    fn transmit_budget_asks_to_be_called_again() {
        let mut f = fixture(0);
        let mem = f.mem.clone();
        let rx = TestQueue::new(&mem, 16);
        let mut tx = TestQueue::new_at(&mem, 256, 0x10_0000);
        f.net
            .activate(ActivateContext {
                mem: mem.clone(),
                interrupt: f.irq.clone(),
                queues: vec![rx.queue(), tx.queue()],
                acked_features: VIRTIO_F_VERSION_1,
            })
            .unwrap();
        write_tx(&mem, 0x20000, VirtioNetHdr::default(), 60);
        for _ in 0..BUDGET {
            tx.add_chain(&[(0x20000, 72, R)]);
        }
        assert_eq!(f.net.process_tx(), TxProgress::More);
        assert_eq!(f.net.stats().tx_frames as usize, BUDGET);
        for _ in 0..5 {
            tx.add_chain(&[(0x20000, 72, R)]);
        }
        assert_eq!(f.net.process_tx(), TxProgress::Done);
        assert_eq!(f.net.stats().tx_frames as usize, BUDGET + 5);
        assert_eq!(tx.used().0 as usize, BUDGET + 5);
    }
}
