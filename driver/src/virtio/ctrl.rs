//! The virtio-net **control virtqueue** (virtio 1.2 §5.1.6.5), negotiated with
//! `VIRTIO_NET_F_CTRL_VQ`, and the receive filter commands it carries with
//! `VIRTIO_NET_F_CTRL_RX`: promiscuous mode (§5.1.6.5.1) and the unicast MAC table
//! (§5.1.6.5.2).
//!
//! Control path, so boring on purpose: **one command at a time, synchronously**. A command
//! is one descriptor chain of three buffers in a small DMA area after the ring:
//!
//! | descriptor | bytes | device |
//! | --- | --- | --- |
//! | header | `class, command` (2) | reads |
//! | data | command-specific data (1 for an RX mode, 10 + 6 per address for a MAC table) | reads |
//! | ack | 1, preset to [`CTRL_ACK_UNSET`] | writes `VIRTIO_NET_OK` or `_ERR` |
//!
//! The driver writes the chain, publishes it, notifies (subject to the device's
//! suppression state, as on the data queues), then polls the used ring until the device
//! returns the chain or [`CTRL_TIMEOUT`] passes. The ack is read only after the chain is
//! used, behind `barrier::dma_rmb`, and only if the used length covers it (§2.7.8.1: nothing
//! beyond `len` bytes of a device-writable buffer may be trusted). Anything but
//! `VIRTIO_NET_OK` is an error naming the command. QEMU answers a command in its main loop
//! when the doorbell arrives (`hw/net/virtio-net.c` `virtio_net_handle_ctrl`), writing one
//! status byte and a used length of 1.
//!
//! **A command that never completes wedges the queue.** The device still owns its
//! descriptors and buffers and may read or write them later, so they cannot be reused: the
//! queue refuses every later command with [`CtrlError::Wedged`]; reopening the port resets
//! the device, which forgets them.
//!
//! **Both ring formats.** Every virtqueue of a device uses the negotiated format, so with
//! `VIRTIO_F_RING_PACKED` the control queue is packed too:
//! - split (§2.7): the avail ring keeps naming descriptor `slot` at `slot` (as on the data
//!   queues), so command `k` starts at descriptor `k & mask` and chains the next two by
//!   `next`; publishing is one `avail.idx` store. The device returns the chain by its head.
//! - packed (§2.8.6): a command takes three consecutive ring positions, each descriptor with
//!   the AVAIL/USED bits of its own position's wrap counter and the same buffer id (the
//!   spec reads it from the last one); the two tail descriptors are written first and the
//!   head last, its flags in the same 8-byte store as its length and id, so the device
//!   never sees part of a chain. The device writes one used descriptor at the head's
//!   position and skips the other two, as the driver does.
//!
//! Which filter commands exist without which features is decided by
//! [`rx_filter_command`]; `Port::set_promiscuous` and `Port::set_unicast_filter` use it.

use crate::platform::barrier;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tenge_descriptors::virtio::{
    pvirtq_avail_flags, pvirtq_is_used, VirtqDesc, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
};
use tenge_firmware_iface::virtio::{
    ctrl_mac_table_set, ctrl_mq_rss_config, ctrl_mq_vq_pairs_set, ctrl_rx_mode, CtrlAck,
    QueueLayout, RxMode, CTRL_ACK_LEN, CTRL_ACK_UNSET, VIRTIO_NET_CTRL_MAC,
    VIRTIO_NET_CTRL_MAC_ADDR_SET, VIRTIO_NET_CTRL_MAC_TABLE_SET, VIRTIO_NET_CTRL_MQ,
    VIRTIO_NET_CTRL_MQ_HASH_CONFIG, VIRTIO_NET_CTRL_MQ_RSS_CONFIG, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
    VIRTIO_NET_CTRL_RX, VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_MQ, VIRTIO_NET_F_RSS,
};
use tenge_firmware_iface::NarrowMmio;

use crate::error::Error;
use crate::platform::dma::DmaRegion;
use crate::platform::mmio::Bar;
use crate::ring::{RxDescOps, TxDescOps};
use crate::virtio::packed::PackedRing;
use crate::virtio::{Doorbell, SplitRing, VirtioNet};

/// The control queue's index with one queue pair (no `VIRTIO_NET_F_MQ`): 2 (§5.1.2).
pub const CTRL_QUEUE: u16 = 2;
/// Descriptors tenge asks for (a command takes 3; QEMU offers 64).
pub const CTRL_QUEUE_SIZE: u16 = 8;
/// How long a command may take before the queue gives up on it. QEMU answers within
/// microseconds to milliseconds even under TCG; a device that has not answered in two
/// seconds is hung.
pub const CTRL_TIMEOUT: Duration = Duration::from_secs(2);
/// Most unicast addresses tenge puts in the MAC table: QEMU's table has 64 entries
/// (`MAC_TABLE_ENTRIES`) for unicast and multicast together, and with more unicast
/// addresses it sets its overflow flag and silently receives every unicast frame, which
/// the spec allows (§5.1.6.5.2, footnote) but would make the filter a no-op.
pub const UNICAST_FILTER_MAX: usize = 64;
/// Longest command-specific data: a MAC table of [`UNICAST_FILTER_MAX`] unicast addresses
/// and no multicast ones (two le32 counts and 6 bytes per address).
pub const CTRL_DATA_MAX: usize = 2 * 4 + 6 * UNICAST_FILTER_MAX;

/// Most entries of an RSS indirection table tenge sends: what the command area holds with
/// a 40-byte key (4 + 2 + 2 + 2 per entry + 2 + 1 + 40 bytes within [`CTRL_DATA_MAX`]),
/// rounded down to a power of two; QEMU takes at most 128 (`VIRTIO_NET_RSS_MAX_TABLE_LEN`).
pub const RSS_TABLE_MAX: usize = 128;
const _: () = assert!(4 + 2 + 2 + 2 * RSS_TABLE_MAX + 2 + 1 + 40 <= CTRL_DATA_MAX);

/// `class, command`.
const HDR_LEN: usize = 2;
/// Offsets of the three buffers in the command area.
const BUF_HDR: usize = 0;
const BUF_DATA: usize = 16;
const BUF_ACK: usize = BUF_DATA + CTRL_DATA_MAX;
/// Bytes of the command area, rounded up to 64.
const BUF_LEN: usize = (BUF_ACK + CTRL_ACK_LEN).div_ceil(64) * 64;

/// A control command by class and command byte, named as in the spec in messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtrlCommand {
    /// `class`.
    pub class: u8,
    /// `command`.
    pub command: u8,
}

impl fmt::Display for CtrlCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rx = [
            "PROMISC", "ALLMULTI", "ALLUNI", "NOMULTI", "NOUNI", "NOBCAST",
        ];
        match (self.class, self.command) {
            (VIRTIO_NET_CTRL_RX, c) if usize::from(c) < rx.len() => {
                write!(f, "VIRTIO_NET_CTRL_RX_{}", rx[usize::from(c)])
            }
            (VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET) => {
                f.write_str("VIRTIO_NET_CTRL_MAC_TABLE_SET")
            }
            (VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET) => {
                f.write_str("VIRTIO_NET_CTRL_MAC_ADDR_SET")
            }
            (VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET) => {
                f.write_str("VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET")
            }
            (VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_RSS_CONFIG) => {
                f.write_str("VIRTIO_NET_CTRL_MQ_RSS_CONFIG")
            }
            (VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_HASH_CONFIG) => {
                f.write_str("VIRTIO_NET_CTRL_MQ_HASH_CONFIG")
            }
            (class, command) => write!(f, "control class {class} command {command}"),
        }
    }
}

/// A control command that did not succeed. Each message says what it means for the port.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CtrlError {
    /// The device answered `VIRTIO_NET_ERR`.
    #[error(
        "the device refused {cmd} (ack VIRTIO_NET_ERR): it does not support it or found its \
         data malformed (QEMU: unknown command, feature not negotiated, or table sizes that \
         do not add up); the receive filter is unchanged"
    )]
    Nak {
        /// The command.
        cmd: CtrlCommand,
    },
    /// The device returned the chain with an ack that is neither OK nor ERR.
    #[error(
        "the device returned {cmd} with ack {ack:#04x}, neither VIRTIO_NET_OK nor \
         VIRTIO_NET_ERR ({unset:#04x} is the value tenge preset: it never wrote the ack); \
         the filter state is unknown, reopen the port",
        unset = CTRL_ACK_UNSET
    )]
    BadAck {
        /// The command.
        cmd: CtrlCommand,
        /// The byte read.
        ack: u8,
    },
    /// The device did not return the chain in time.
    #[error(
        "the device did not complete {cmd} within {waited:?}: it is hung or not processing \
         its control queue (QEMU: see its log for 'virtio_error'); the device may still use \
         the command's buffers, so the control queue takes no more commands: reopen the port"
    )]
    Timeout {
        /// The command.
        cmd: CtrlCommand,
        /// How long the driver polled.
        waited: Duration,
    },
    /// The device returned something other than the chain it was given.
    #[error(
        "the device completed {cmd} with buffer id {id} and length {len}, expected id \
         {expected} and a length of at least {CTRL_ACK_LEN} (the ack byte): a device bug; \
         the control queue takes no more commands, reopen the port"
    )]
    BadUsed {
        /// The command.
        cmd: CtrlCommand,
        /// The id the device wrote.
        id: u32,
        /// The length it wrote.
        len: u32,
        /// The id tenge posted.
        expected: u32,
    },
    /// An earlier command never completed properly.
    #[error(
        "the control queue is out of service since {stuck} did not complete; {cmd} was not \
         sent: reopen the port (a reset returns every buffer)"
    )]
    Wedged {
        /// The command that was not sent.
        cmd: CtrlCommand,
        /// The command that did not complete.
        stuck: CtrlCommand,
    },
    /// More command data than the command area holds.
    #[error("{cmd} carries {len} bytes of data, more than the {max} the control queue holds")]
    TooLong {
        /// The command.
        cmd: CtrlCommand,
        /// Its data length.
        len: usize,
        /// [`CTRL_DATA_MAX`].
        max: usize,
    },
}

/// A ring in the negotiated format.
enum Ring {
    Split(SplitRing),
    Packed(PackedRing),
}

/// The control queue's memory: its ring (split or packed) and, right after it, the area
/// the commands' three buffers live in.
pub struct CtrlRing {
    ring: Ring,
    region: Arc<DmaRegion>,
    /// Byte offset of the command area in `region`.
    buf: usize,
}

impl CtrlRing {
    /// Bytes a control ring of `size` descriptors needs in its region, ring and command
    /// area, a multiple of 64.
    pub const fn bytes(size: u16, layout: QueueLayout) -> usize {
        let ring = match layout {
            QueueLayout::Split => SplitRing::bytes(size),
            QueueLayout::Packed => PackedRing::bytes(size),
        };
        ring + BUF_LEN
    }

    /// A ring of `size` (a power of two, at least 4) descriptors in `layout` and its
    /// command area, at byte `offset` (64-byte aligned) of `region`, zeroed there.
    /// `event_idx`: VIRTIO_F_EVENT_IDX was negotiated (see [`SplitRing::new`]).
    pub fn new(
        region: Arc<DmaRegion>,
        offset: usize,
        size: u16,
        layout: QueueLayout,
        event_idx: bool,
    ) -> Self {
        assert!(
            size >= 4,
            "a control queue of {size} descriptors cannot hold a 3-descriptor command"
        );
        let (ring, ring_bytes) = match layout {
            QueueLayout::Split => (
                Ring::Split(SplitRing::new(region.clone(), offset, size, event_idx)),
                SplitRing::bytes(size),
            ),
            QueueLayout::Packed => (
                Ring::Packed(PackedRing::new(region.clone(), offset, size)),
                PackedRing::bytes(size),
            ),
        };
        let buf = offset + ring_bytes;
        assert!(
            buf + BUF_LEN <= region.len(),
            "control queue at {offset:#x} does not fit a {:#x}-byte region",
            region.len()
        );
        CtrlRing { ring, region, buf }
    }

    /// IOVAs of the descriptor, driver and device areas, for `setup_queue`.
    pub fn iovas(&self) -> (u64, u64, u64) {
        match &self.ring {
            Ring::Split(r) => r.iovas(),
            Ring::Packed(r) => r.iovas(),
        }
    }

    /// The ring format.
    pub fn layout(&self) -> QueueLayout {
        match self.ring {
            Ring::Split(_) => QueueLayout::Split,
            Ring::Packed(_) => QueueLayout::Packed,
        }
    }

    /// Descriptors in the ring.
    pub fn size(&self) -> u16 {
        match &self.ring {
            Ring::Split(r) => r.size(),
            Ring::Packed(r) => r.size(),
        }
    }
}

/// The control virtqueue: its ring and command area, and its doorbell.
pub struct CtrlQueue<M: NarrowMmio> {
    ring: Ring,
    bell: Doorbell<M>,
    region: Arc<DmaRegion>,
    /// Byte offset of the command area in `region`.
    buf: usize,
    /// Split: `avail.idx` of the next command. Packed: ring position of its first
    /// descriptor. Free-running.
    next: u32,
    timeout: Duration,
    /// The command that did not complete properly, if one did not.
    stuck: Option<CtrlCommand>,
    completed: u64,
}

impl<M: NarrowMmio> CtrlQueue<M> {
    /// The queue over `ring` (registered with the device), notifying through `bell`.
    pub fn new(ring: CtrlRing, bell: Doorbell<M>) -> Self {
        let CtrlRing { ring, region, buf } = ring;
        CtrlQueue {
            ring,
            bell,
            region,
            buf,
            next: 0,
            timeout: CTRL_TIMEOUT,
            stuck: None,
            completed: 0,
        }
    }

    /// Polls at most `timeout` for each command instead of [`CTRL_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The ring format.
    pub fn layout(&self) -> QueueLayout {
        match self.ring {
            Ring::Split(_) => QueueLayout::Split,
            Ring::Packed(_) => QueueLayout::Packed,
        }
    }

    /// Descriptors in the ring.
    pub fn size(&self) -> u16 {
        match &self.ring {
            Ring::Split(r) => r.size(),
            Ring::Packed(r) => r.size(),
        }
    }

    /// Commands the device completed (acked OK or ERR).
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Doorbell writes so far.
    pub fn notifies(&self) -> u64 {
        self.bell.notifies()
    }

    /// The command that put the queue out of service, if one did.
    pub fn stuck(&self) -> Option<CtrlCommand> {
        self.stuck
    }

    /// Sends `command` (`class, command, data...`, as the `tenge_firmware_iface::virtio`
    /// builders make it) and waits for the device's answer.
    ///
    /// # Errors
    /// [`CtrlError::Nak`] if the device answered `VIRTIO_NET_ERR` (the queue stays usable);
    /// [`CtrlError::Timeout`], [`CtrlError::BadUsed`] and [`CtrlError::BadAck`] when the
    /// device misbehaved, after which (but for `BadAck`) the queue refuses further commands
    /// with [`CtrlError::Wedged`]; [`CtrlError::TooLong`] for data beyond [`CTRL_DATA_MAX`]
    /// (nothing is sent).
    ///
    /// # Panics
    /// If `command` is shorter than its 2-byte header.
    pub fn execute(&mut self, command: &[u8]) -> Result<(), CtrlError> {
        assert!(
            command.len() >= HDR_LEN,
            "a control command starts with class and command"
        );
        let (hdr, data) = command.split_at(HDR_LEN);
        let cmd = CtrlCommand {
            class: hdr[0],
            command: hdr[1],
        };
        if let Some(stuck) = self.stuck {
            return Err(CtrlError::Wedged { cmd, stuck });
        }
        if data.len() > CTRL_DATA_MAX {
            return Err(CtrlError::TooLong {
                cmd,
                len: data.len(),
                max: CTRL_DATA_MAX,
            });
        }
        self.region.copy_in(self.buf + BUF_HDR, hdr);
        self.region.copy_in(self.buf + BUF_DATA, data);
        self.region.write::<u8>(self.buf + BUF_ACK, CTRL_ACK_UNSET);
        let base = self.region.iova() + self.buf as u64;
        let bufs = [
            (base + BUF_HDR as u64, HDR_LEN as u32, 0),
            (base + BUF_DATA as u64, data.len() as u32, 0),
            (
                base + BUF_ACK as u64,
                CTRL_ACK_LEN as u32,
                VIRTQ_DESC_F_WRITE,
            ),
        ];
        // An empty data buffer would be a zero-length descriptor: leave it out.
        let chain: Vec<(u64, u32, u16)> = bufs.into_iter().filter(|b| b.1 != 0).collect();
        let start = Instant::now();
        let expected = self.post(&chain);
        loop {
            if self.is_used() {
                break;
            }
            let waited = start.elapsed();
            if waited >= self.timeout {
                self.stuck = Some(cmd);
                log::debug!("virtio-net control: {cmd} not completed after {waited:?}");
                return Err(CtrlError::Timeout { cmd, waited });
            }
            // QEMU answers from another thread; give it the CPU after a short spin.
            if waited < Duration::from_micros(50) {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(Duration::from_micros(20));
            }
        }
        // Used index or flags first, then the used entry and the ack (§2.7.14, §2.8.6).
        barrier::dma_rmb();
        let (id, len) = self.used_elem();
        if id != expected || (len as usize) < CTRL_ACK_LEN {
            self.stuck = Some(cmd);
            return Err(CtrlError::BadUsed {
                cmd,
                id,
                len,
                expected,
            });
        }
        self.advance(chain.len() as u32);
        self.completed += 1;
        let ack = self.region.read::<u8>(self.buf + BUF_ACK);
        log::debug!(
            "virtio-net control: {cmd} ({} data bytes) answered {:?} after {:?}",
            data.len(),
            CtrlAck::from_byte(ack),
            start.elapsed()
        );
        match CtrlAck::from_byte(ack) {
            CtrlAck::Ok => Ok(()),
            CtrlAck::Err => Err(CtrlError::Nak { cmd }),
            CtrlAck::Other(ack) => Err(CtrlError::BadAck { cmd, ack }),
        }
    }

    /// Makes `chain` (address, length, WRITE or 0) available as one command and notifies
    /// the device if it asked for it; returns the id the device must return.
    fn post(&mut self, chain: &[(u64, u32, u16)]) -> u32 {
        let n = chain.len() as u32;
        match &self.ring {
            Ring::Split(ring) => {
                let mask = u32::from(ring.size()) - 1;
                // The avail ring names descriptor `slot` at `slot` (SplitRing::new), so the
                // chain starts at the descriptor of avail slot `next`.
                let head = self.next & mask;
                for (i, &(addr, len, write)) in (0u32..).zip(chain) {
                    let last = i + 1 == n;
                    let flags = write | if last { 0 } else { VIRTQ_DESC_F_NEXT };
                    let next = if last { 0 } else { (head + i + 1) & mask };
                    ring.descs().write(
                        head + i,
                        VirtqDesc {
                            addr: addr.into(),
                            len: len.into(),
                            flags: flags.into(),
                            next: (next as u16).into(),
                        },
                    );
                }
                // Descriptors and command bytes before avail.idx (§2.7.13.3.1).
                barrier::dma_wmb();
                let new = self.next.wrapping_add(1) as u16;
                self.bell.publish(ring, new, false);
                head
            }
            Ring::Packed(ring) => {
                let mask = u32::from(ring.size()) - 1;
                let first = self.next;
                let id = first & mask;
                // Tail descriptors first, then the head (§2.8.6: the first descriptor is
                // made available after the rest of the list).
                for (i, &(addr, len, write)) in (0..n).zip(chain).rev() {
                    let pos = first.wrapping_add(i);
                    let other = write | if i + 1 == n { 0 } else { VIRTQ_DESC_F_NEXT };
                    let flags = pvirtq_avail_flags(ring.wrap(pos), other);
                    if i == 0 {
                        // Everything before the head's flags (x86 keeps store order; the
                        // fence keeps the compiler from moving them past).
                        barrier::dma_wmb();
                    }
                    // addr, then len | id | flags in one store, ordered: the flags become visible
                    // with the rest of the descriptor.
                    ring.descs().write_qwords_publishing(
                        pos,
                        addr,
                        u64::from(len) | u64::from(id) << 32 | u64::from(flags) << 48,
                    );
                }
                self.bell.publish_packed(ring, first.wrapping_add(n), false);
                id
            }
        }
    }

    /// Whether the device has returned the outstanding command: `used.idx` moved past it
    /// (split), or its head descriptor reads used for its lap (packed; the flags alone, one
    /// 4-byte load with the id).
    fn is_used(&self) -> bool {
        match &self.ring {
            Ring::Split(ring) => ring.used_idx() != self.next as u16,
            Ring::Packed(ring) => {
                let flags = (ring.descs().read_u32_at(self.next, 12) >> 16) as u16;
                pvirtq_is_used(flags, ring.wrap(self.next))
            }
        }
    }

    /// The (id, len) the device returned for the outstanding command; read once
    /// [`Self::is_used`] said so, behind `barrier::dma_rmb`.
    fn used_elem(&self) -> (u32, u32) {
        match &self.ring {
            Ring::Split(ring) => ring.used_elem(self.next as u16),
            Ring::Packed(ring) => {
                let d = ring.descs().read(self.next);
                (u32::from(d.id.get()), d.len.get())
            }
        }
    }

    /// Moves past a completed command of `descs` descriptors.
    fn advance(&mut self, descs: u32) {
        self.next = match self.ring {
            Ring::Split(_) => self.next.wrapping_add(1),
            Ring::Packed(_) => self.next.wrapping_add(descs),
        };
    }
}

impl<R: RxDescOps, T: TxDescOps> VirtioNet<R, T> {
    /// Changes the device's receive filter through the control queue: see
    /// [`rx_filter_command`] for what needs which feature.
    ///
    /// # Errors
    /// [`Error::RxFilterUnsupported`] if the device lacks `VIRTIO_NET_F_CTRL_RX` and the
    /// change needs it; [`Error::VirtioCtrl`] if the command failed.
    pub fn set_rx_filter(&mut self, filter: RxFilter<'_>) -> Result<(), Error> {
        let (addr, features) = (self.addr, self.features());
        let unsupported = || Error::RxFilterUnsupported {
            addr,
            request: filter.to_string(),
            features,
        };
        let Some(cmd) = rx_filter_command(features, filter).map_err(|_| unsupported())? else {
            log::debug!("{addr}: {filter}: nothing to send (no VIRTIO_NET_F_CTRL_RX)");
            return Ok(());
        };
        // CTRL_RX is only accepted together with CTRL_VQ, which sets the queue up.
        let Some(ctrl) = self.ctrl.as_mut() else {
            return Err(unsupported());
        };
        ctrl.execute(&cmd)
            .map_err(|source| Error::VirtioCtrl { addr, source })?;
        log::debug!("{addr}: {filter}: done");
        Ok(())
    }

    /// The control queue, if `VIRTIO_NET_F_CTRL_VQ` was negotiated.
    pub fn ctrl(&self) -> Option<&CtrlQueue<Bar>> {
        self.ctrl.as_ref()
    }

    /// Sends `cmd` on the control queue, which `what` (a feature) made exist.
    fn mq_command(&mut self, cmd: &[u8], what: &str) -> Result<(), Error> {
        let addr = self.addr;
        let Some(ctrl) = self.ctrl.as_mut() else {
            return Err(Error::Config(format!(
                "{addr}: {what} without a control queue: the device broke the feature rules \
                 (virtio 1.2 §5.1.3.1)"
            )));
        };
        ctrl.execute(cmd)
            .map_err(|source| Error::VirtioCtrl { addr, source })
    }

    /// Raises the queue pairs the device uses to every pair opened with
    /// `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET` (§5.1.6.5.5; a device starts with one, §5.1.6.5.5.1).
    /// The device then picks the receive queue of each frame itself ("automatic receive
    /// steering": QEMU's model puts a tap queue's frames on the RX queue of the same index,
    /// and the host kernel's tap picks the tap queue by flow). Not with RSS: QEMU turns
    /// RSS off on any multiqueue command but RSS_CONFIG, which sets the pairs itself.
    pub(crate) fn set_queue_pairs(&mut self) -> Result<(), Error> {
        if self.features() & VIRTIO_NET_F_MQ == 0 {
            return Err(Error::Config(format!(
                "{}: several queue pairs without VIRTIO_NET_F_MQ or RSS",
                self.addr
            )));
        }
        self.mq_command(&ctrl_mq_vq_pairs_set(self.pairs), "VIRTIO_NET_F_MQ")?;
        log::info!(
            "{}: VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET {}: the device steers frames over the pairs",
            self.addr,
            self.pairs
        );
        Ok(())
    }

    /// Programs RSS with `VIRTIO_NET_CTRL_MQ_RSS_CONFIG` (§5.1.6.5.7.1): `types`, `key`,
    /// `table` (checked by the caller against the device's limits), unclassified frames to
    /// queue 0, and `max_tx_vq` the pairs opened (which also sets how many pairs the device
    /// uses).
    pub(crate) fn configure_rss(
        &mut self,
        types: u32,
        key: &[u8],
        table: &[u16],
    ) -> Result<(), Error> {
        if self.features() & VIRTIO_NET_F_RSS == 0 {
            return Err(Error::Config(format!(
                "{}: RSS without VIRTIO_NET_F_RSS",
                self.addr
            )));
        }
        let cmd = ctrl_mq_rss_config(types, table, 0, self.pairs, key, false);
        self.mq_command(&cmd, "VIRTIO_NET_F_RSS")
    }
}

/// A receive filter change a port can ask of a virtio-net device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxFilter<'a> {
    /// Promiscuous mode on or off.
    Promisc(bool),
    /// The unicast addresses accepted besides the device's own MAC (the multicast table is
    /// left empty).
    Unicast(&'a [[u8; 6]]),
}

impl fmt::Display for RxFilter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RxFilter::Promisc(on) => {
                write!(
                    f,
                    "turn promiscuous mode {}",
                    if *on { "on" } else { "off" }
                )
            }
            RxFilter::Unicast([]) => f.write_str("clear the unicast filter"),
            RxFilter::Unicast([_]) => f.write_str("set a unicast filter of 1 address"),
            RxFilter::Unicast(macs) => {
                write!(f, "set a unicast filter of {} addresses", macs.len())
            }
        }
    }
}

/// The control command for `filter` on a device with the negotiated `features`:
/// - `Ok(Some(bytes))`: send these (`VIRTIO_NET_CTRL_RX_PROMISC` or
///   `VIRTIO_NET_CTRL_MAC_TABLE_SET`);
/// - `Ok(None)`: nothing to send: promiscuous mode on, or an empty unicast table, without
///   `VIRTIO_NET_F_CTRL_RX`, where the driver may send no RX or MAC class command
///   (§5.1.6.5.1, §5.1.6.5.2) and there is no filter to undo: QEMU's virtio-net then
///   receives every frame (`n->promisc` is 1 after reset);
/// - `Err(NeedsCtrlRx)`: the device cannot do it: promiscuous mode off or a non-empty MAC
///   table without `VIRTIO_NET_F_CTRL_RX`.
pub fn rx_filter_command(
    features: u64,
    filter: RxFilter<'_>,
) -> Result<Option<Vec<u8>>, NeedsCtrlRx> {
    let ctrl_rx = features & VIRTIO_NET_F_CTRL_RX != 0;
    match filter {
        RxFilter::Promisc(on) if ctrl_rx => Ok(Some(ctrl_rx_mode(RxMode::Promisc, on).to_vec())),
        RxFilter::Promisc(true) => Ok(None),
        RxFilter::Unicast(macs) if ctrl_rx => Ok(Some(ctrl_mac_table_set(macs, &[]))),
        RxFilter::Unicast([]) => Ok(None),
        _ => Err(NeedsCtrlRx),
    }
}

/// What [`rx_filter_command`] answers when the filter needs `VIRTIO_NET_F_CTRL_RX` and the
/// device did not negotiate it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeedsCtrlRx;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::dma::{HugepagePolicy, IdentityMapper};
    use crate::platform::pci::PciAddress;
    use std::sync::Mutex;
    use tenge_descriptors::virtio::{
        avail_ring_offset, used_avail_event_offset, used_ring_offset, PvirtqDesc,
        PvirtqEventSuppress, VirtqUsedElem, AVAIL_IDX_OFFSET, RING_EVENT_FLAGS_DESC,
        RING_EVENT_FLAGS_ENABLE, USED_IDX_OFFSET, VIRTQ_DESC_F_AVAIL, VIRTQ_DESC_F_USED,
    };
    use tenge_firmware_iface::virtio::{
        negotiate, VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_EVENT_IDX, VIRTIO_F_VERSION_1,
        VIRTIO_NET_CTRL_ACK_ERR, VIRTIO_NET_CTRL_ACK_OK, VIRTIO_NET_CTRL_RX_PROMISC,
        VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_MAC,
    };
    use tenge_firmware_iface::Mmio;

    const BELL: u32 = 0x3008;
    const A: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
    const B: [u8; 6] = [0x02, 0, 0, 0, 0xbb, 0x02];

    /// How the model device treats commands.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Behaviour {
        /// As QEMU's `virtio_net_handle_ctrl`: apply, ack OK (ERR for what it refuses).
        Qemu,
        /// Ack ERR to everything.
        Nak,
        /// Never look at the queue.
        Silent,
        /// As `Qemu`, but from another thread after this long.
        Late(Duration),
        /// Return the chain with this ack byte.
        Ack(u8),
        /// Return the chain under another id.
        WrongId,
        /// Return the chain with used length 0 (ack not written).
        NoLen,
    }

    /// One command as the device found it in the ring.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Seen {
        /// (length, flags without AVAIL/USED) of each descriptor, in chain order.
        descs: Vec<(u32, u16)>,
        /// The device-readable bytes, gathered.
        out: Vec<u8>,
    }

    /// The device side of QEMU's control virtqueue, split or packed, on memory the test
    /// allocated with the identity mapper (IOVA = address, so the model finds the ring at
    /// the addresses the driver would register).
    struct CtrlDevice {
        region: Arc<DmaRegion>,
        layout: QueueLayout,
        /// Offsets in `region` of the descriptor, driver and device areas.
        areas: (usize, usize, usize),
        size: u16,
        event_idx: bool,
        behaviour: Behaviour,
        /// Split: the avail index seen; packed: the next ring position.
        next: u32,
        used: u16,
        promisc: bool,
        unicast: Vec<[u8; 6]>,
        multicast: Vec<[u8; 6]>,
        seen: Vec<Seen>,
    }

    /// The notify structure: a doorbell write makes the device look at its queue.
    struct ModelBell(Arc<Mutex<CtrlDevice>>, Mutex<Vec<(u32, u16)>>);

    impl Mmio for ModelBell {
        fn read32(&self, _off: u32) -> u32 {
            0
        }
        fn write32(&self, _off: u32, _v: u32) {}
    }

    impl NarrowMmio for ModelBell {
        fn read8(&self, _off: u32) -> u8 {
            0
        }
        fn read16(&self, _off: u32) -> u16 {
            0
        }
        fn write8(&self, _off: u32, _v: u8) {}
        fn write16(&self, off: u32, v: u16) {
            self.1.lock().unwrap().push((off, v));
            let behaviour = self.0.lock().unwrap().behaviour;
            match behaviour {
                Behaviour::Silent => {}
                Behaviour::Late(d) => {
                    let dev = self.0.clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(d);
                        dev.lock().unwrap().process();
                    });
                }
                _ => self.0.lock().unwrap().process(),
            }
        }
    }

    impl CtrlDevice {
        fn off(&self, iova: u64) -> usize {
            (iova - self.region.iova()) as usize
        }

        fn mask(&self) -> u32 {
            u32::from(self.size) - 1
        }

        fn wrap(&self, pos: u32) -> bool {
            (pos / u32::from(self.size)).is_multiple_of(2)
        }

        /// Takes every available command, as QEMU's handler does on a doorbell.
        fn process(&mut self) {
            match self.layout {
                QueueLayout::Split => self.process_split(),
                QueueLayout::Packed => self.process_packed(),
            }
        }

        fn process_split(&mut self) {
            let (desc, driver, device) = self.areas;
            let avail_idx = self.region.read::<u16>(driver + AVAIL_IDX_OFFSET);
            while self.next as u16 != avail_idx {
                let slot = (self.next as u16) & self.mask() as u16;
                let head = self.region.read::<u16>(driver + avail_ring_offset(slot));
                let mut chain = Vec::new();
                let mut i = u32::from(head);
                loop {
                    let d: VirtqDesc = self.region.read(desc + 16 * (i & self.mask()) as usize);
                    chain.push((d.addr.get(), d.len.get(), d.flags.get()));
                    assert!(chain.len() <= usize::from(self.size), "looping chain");
                    if d.flags.get() & VIRTQ_DESC_F_NEXT == 0 {
                        break;
                    }
                    i = u32::from(d.next.get());
                }
                let (id, len) = self.answer(&chain, u32::from(head));
                let used = self.used;
                self.region.write(
                    device + used_ring_offset(used & self.mask() as u16),
                    VirtqUsedElem {
                        id: id.into(),
                        len: len.into(),
                    },
                );
                self.used = used.wrapping_add(1);
                self.region
                    .write::<u16>(device + USED_IDX_OFFSET, self.used.to_le());
                self.next = self.next.wrapping_add(1);
            }
            // Ask to hear about the next command (QEMU re-arms when it runs dry).
            if self.event_idx {
                self.region.write::<u16>(
                    device + used_avail_event_offset(self.size),
                    avail_idx.to_le(),
                );
            }
        }

        fn process_packed(&mut self) {
            let (desc, _, device) = self.areas;
            let mask = self.mask();
            let at = move |pos: u32| desc + 16 * (pos & mask) as usize;
            let avail = |d: &PvirtqDesc, wrap: bool| {
                let f = d.flags.get();
                (f & VIRTQ_DESC_F_AVAIL != 0) == wrap && (f & VIRTQ_DESC_F_USED != 0) != wrap
            };
            loop {
                let head = self.next;
                let d: PvirtqDesc = self.region.read(at(head));
                if !avail(&d, self.wrap(head)) {
                    break;
                }
                let mut chain = Vec::new();
                let mut pos = head;
                let id = loop {
                    let d: PvirtqDesc = self.region.read(at(pos));
                    assert!(
                        avail(&d, self.wrap(pos)),
                        "descriptor {pos} of a chain has the wrong AVAIL/USED bits"
                    );
                    let f = d.flags.get() & !(VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED);
                    chain.push((d.addr.get(), d.len.get(), f));
                    pos = pos.wrapping_add(1);
                    if f & VIRTQ_DESC_F_NEXT == 0 {
                        // The buffer id is the last descriptor's (§2.8.6).
                        break u32::from(d.id.get());
                    }
                };
                let (id, len) = self.answer(&chain, id);
                // len and id, then the flags, as a device must (the driver polls them).
                let o = at(head);
                self.region.write::<u32>(o + 8, len.to_le());
                self.region.write::<u16>(o + 12, (id as u16).to_le());
                let mut flags = VIRTQ_DESC_F_WRITE;
                if self.wrap(head) {
                    flags |= VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED;
                }
                self.region.write::<u16>(o + 14, flags.to_le());
                self.next = pos;
            }
            let event = if self.event_idx {
                PvirtqEventSuppress {
                    off_wrap: PvirtqEventSuppress::pack_off_wrap(
                        (self.next & self.mask()) as u16,
                        self.wrap(self.next),
                    )
                    .into(),
                    flags: RING_EVENT_FLAGS_DESC.into(),
                }
            } else {
                PvirtqEventSuppress {
                    off_wrap: 0.into(),
                    flags: RING_EVENT_FLAGS_ENABLE.into(),
                }
            };
            self.region.write(device, event);
        }

        /// Handles one command chain (addr, len, flags): records it, applies it, writes the
        /// ack; returns the (id, len) to put in the used ring.
        fn answer(&mut self, chain: &[(u64, u32, u16)], id: u32) -> (u32, u32) {
            let mut out = Vec::new();
            let mut ack_at = None;
            for &(addr, len, flags) in chain {
                if flags & VIRTQ_DESC_F_WRITE != 0 {
                    ack_at.get_or_insert(addr);
                } else {
                    assert!(ack_at.is_none(), "readable buffer after a writable one");
                    let mut b = vec![0u8; len as usize];
                    self.region.copy_out(self.off(addr), &mut b);
                    out.extend_from_slice(&b);
                }
            }
            self.seen.push(Seen {
                descs: chain.iter().map(|&(_, l, f)| (l, f)).collect(),
                out: out.clone(),
            });
            let ack = match self.behaviour {
                Behaviour::Nak => VIRTIO_NET_CTRL_ACK_ERR,
                Behaviour::Ack(v) => v,
                _ => self.apply(&out),
            };
            let ack_at = ack_at.expect("no device-writable ack buffer");
            self.region.write::<u8>(self.off(ack_at), ack);
            match self.behaviour {
                Behaviour::WrongId => (id + 1, 1),
                Behaviour::NoLen => (id, 0),
                _ => (id, 1),
            }
        }

        /// QEMU's semantics for the RX and MAC classes.
        fn apply(&mut self, out: &[u8]) -> u8 {
            let (ok, err) = (VIRTIO_NET_CTRL_ACK_OK, VIRTIO_NET_CTRL_ACK_ERR);
            match out {
                [VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, on, ..] => {
                    self.promisc = *on != 0;
                    ok
                }
                [VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, rest @ ..] => {
                    let table = |b: &[u8]| -> Option<(Vec<[u8; 6]>, usize)> {
                        let n = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
                        let macs = b.get(4..4 + 6 * n)?;
                        Some((
                            macs.chunks(6).map(|c| c.try_into().unwrap()).collect(),
                            4 + 6 * n,
                        ))
                    };
                    let Some((uni, used)) = table(rest) else {
                        return err;
                    };
                    match table(&rest[used..]) {
                        // The second table must end the data exactly.
                        Some((multi, more)) if used + more == rest.len() => {
                            self.unicast = uni;
                            self.multicast = multi;
                            ok
                        }
                        _ => err,
                    }
                }
                _ => err,
            }
        }
    }

    struct Rig {
        q: CtrlQueue<ModelBell>,
        dev: Arc<Mutex<CtrlDevice>>,
        bell: Arc<ModelBell>,
    }

    impl Rig {
        fn dev(&self) -> std::sync::MutexGuard<'_, CtrlDevice> {
            self.dev.lock().unwrap()
        }

        fn doorbells(&self) -> usize {
            self.bell.1.lock().unwrap().len()
        }
    }

    fn rig(layout: QueueLayout, event_idx: bool, behaviour: Behaviour) -> Rig {
        let region = Arc::new(
            DmaRegion::allocate(Arc::new(IdentityMapper), 1 << 14, HugepagePolicy::Never).unwrap(),
        );
        let ring = CtrlRing::new(region.clone(), 0x40, CTRL_QUEUE_SIZE, layout, event_idx);
        let (d, r, v) = ring.iovas();
        let base = region.iova();
        let dev = Arc::new(Mutex::new(CtrlDevice {
            region,
            layout,
            areas: (
                (d - base) as usize,
                (r - base) as usize,
                (v - base) as usize,
            ),
            size: CTRL_QUEUE_SIZE,
            event_idx,
            behaviour,
            next: 0,
            used: 0,
            promisc: true,
            unicast: Vec::new(),
            multicast: Vec::new(),
            seen: Vec::new(),
        }));
        let bell = Arc::new(ModelBell(dev.clone(), Mutex::new(Vec::new())));
        let q = CtrlQueue::new(
            ring,
            Doorbell::new(bell.clone(), BELL, CTRL_QUEUE, event_idx),
        )
        .with_timeout(Duration::from_millis(500));
        Rig { q, dev, bell }
    }

    const LAYOUTS: [QueueLayout; 2] = [QueueLayout::Split, QueueLayout::Packed];

    fn promisc(on: bool) -> Vec<u8> {
        ctrl_rx_mode(RxMode::Promisc, on).to_vec()
    }

    #[test]
    fn commands_are_header_data_ack_chains_and_change_the_device_filter() {
        for layout in LAYOUTS {
            for event_idx in [true, false] {
                let mut r = rig(layout, event_idx, Behaviour::Qemu);
                let what = format!("{layout:?} event_idx {event_idx}");
                r.q.execute(&promisc(false)).unwrap();
                assert!(!r.dev().promisc, "{what}");
                r.q.execute(&ctrl_mac_table_set(&[A, B], &[])).unwrap();
                assert_eq!(r.dev().unicast, vec![A, B], "{what}");
                assert!(r.dev().multicast.is_empty());
                r.q.execute(&ctrl_mac_table_set(&[], &[])).unwrap();
                assert!(r.dev().unicast.is_empty(), "{what}");
                r.q.execute(&promisc(true)).unwrap();
                assert!(r.dev().promisc, "{what}");
                let seen = r.dev().seen.clone();
                assert_eq!(seen.len(), 4);
                let nw = VIRTQ_DESC_F_NEXT;
                assert_eq!(
                    seen[0],
                    Seen {
                        descs: vec![(2, nw), (1, nw), (1, VIRTQ_DESC_F_WRITE)],
                        out: vec![0, 0, 0],
                    },
                    "{what}: header, data, ack"
                );
                assert_eq!(
                    seen[1].descs,
                    vec![(2, nw), (8 + 12, nw), (1, VIRTQ_DESC_F_WRITE)],
                    "{what}"
                );
                assert_eq!(seen[1].out, ctrl_mac_table_set(&[A, B], &[]));
                assert_eq!(seen[2].descs[1], (8, nw), "{what}: two zero counts");
                // The device asked to hear about every command: one doorbell each, on the
                // control queue's index.
                assert_eq!(r.doorbells(), 4, "{what}");
                assert!(r
                    .bell
                    .1
                    .lock()
                    .unwrap()
                    .iter()
                    .all(|&w| w == (BELL, CTRL_QUEUE)));
                assert_eq!((r.q.completed(), r.q.notifies()), (4, 4));
                assert_eq!(r.q.stuck(), None);
            }
        }
    }

    #[test]
    fn a_nak_is_an_error_naming_the_command_and_the_queue_stays_usable() {
        for layout in LAYOUTS {
            let mut r = rig(layout, true, Behaviour::Nak);
            let e = r.q.execute(&promisc(false)).unwrap_err();
            assert_eq!(
                e,
                CtrlError::Nak {
                    cmd: CtrlCommand {
                        class: VIRTIO_NET_CTRL_RX,
                        command: VIRTIO_NET_CTRL_RX_PROMISC
                    }
                }
            );
            assert!(e.to_string().contains("VIRTIO_NET_CTRL_RX_PROMISC"), "{e}");
            assert!(e.to_string().contains("VIRTIO_NET_ERR"), "{e}");
            assert!(r.dev().promisc, "the device changed nothing");
            // The chain came back: the next command goes out and is answered.
            r.dev().behaviour = Behaviour::Qemu;
            r.q.execute(&promisc(false)).unwrap();
            assert!(!r.dev().promisc);
            // A malformed table is what QEMU refuses: NAK from the QEMU model too.
            let mut bad = ctrl_mac_table_set(&[A], &[]);
            bad.pop();
            let e = r.q.execute(&bad).unwrap_err();
            assert!(
                matches!(e, CtrlError::Nak { cmd } if cmd.to_string() == "VIRTIO_NET_CTRL_MAC_TABLE_SET"),
                "{e:?}"
            );
            assert_eq!(r.q.completed(), 3);
        }
    }

    #[test]
    fn a_device_that_never_answers_times_out_without_hanging_and_wedges_the_queue() {
        for layout in LAYOUTS {
            let mut r = rig(layout, true, Behaviour::Silent);
            r.q.timeout = Duration::from_millis(30);
            let start = Instant::now();
            let e = r.q.execute(&promisc(false)).unwrap_err();
            let took = start.elapsed();
            let CtrlError::Timeout { cmd, waited } = e.clone() else {
                panic!("{e:?}")
            };
            assert_eq!(cmd.to_string(), "VIRTIO_NET_CTRL_RX_PROMISC");
            assert!(waited >= Duration::from_millis(30), "{waited:?}");
            assert!(took < Duration::from_secs(2), "polled for {took:?}");
            assert!(e.to_string().contains("reopen the port"), "{e}");
            assert_eq!(r.doorbells(), 1, "notified once");
            // Its buffers may still be read: nothing more is posted.
            let e = r.q.execute(&ctrl_mac_table_set(&[A], &[])).unwrap_err();
            assert_eq!(
                e,
                CtrlError::Wedged {
                    cmd: CtrlCommand {
                        class: VIRTIO_NET_CTRL_MAC,
                        command: VIRTIO_NET_CTRL_MAC_TABLE_SET
                    },
                    stuck: cmd
                }
            );
            assert!(e.to_string().contains("VIRTIO_NET_CTRL_RX_PROMISC"), "{e}");
            assert_eq!(r.doorbells(), 1, "no doorbell for a refused command");
            assert_eq!(r.q.stuck(), Some(cmd));
            assert_eq!(r.q.completed(), 0);
        }
    }

    #[test]
    fn a_late_answer_from_another_thread_is_waited_for() {
        for layout in LAYOUTS {
            let mut r = rig(layout, true, Behaviour::Late(Duration::from_millis(20)));
            let start = Instant::now();
            r.q.execute(&promisc(false)).unwrap();
            assert!(start.elapsed() >= Duration::from_millis(20));
            r.q.execute(&ctrl_mac_table_set(&[B], &[])).unwrap();
            assert!(!r.dev().promisc);
            assert_eq!(r.dev().unicast, vec![B]);
        }
    }

    #[test]
    fn garbage_acks_and_used_entries_are_errors() {
        for layout in LAYOUTS {
            let mut r = rig(layout, true, Behaviour::Ack(0x7f));
            let e = r.q.execute(&promisc(true)).unwrap_err();
            assert!(matches!(e, CtrlError::BadAck { ack: 0x7f, .. }), "{e:?}");
            // The chain was returned: the queue goes on.
            r.dev().behaviour = Behaviour::Qemu;
            r.q.execute(&promisc(false)).unwrap();

            let mut r = rig(layout, true, Behaviour::WrongId);
            let e = r.q.execute(&promisc(true)).unwrap_err();
            assert!(
                matches!(e, CtrlError::BadUsed { id, expected, .. } if id == expected + 1),
                "{e:?}"
            );
            assert!(matches!(
                r.q.execute(&promisc(true)),
                Err(CtrlError::Wedged { .. })
            ));

            // Used length 0: the ack byte may not be trusted, even if it reads OK.
            let mut r = rig(layout, true, Behaviour::NoLen);
            let e = r.q.execute(&promisc(true)).unwrap_err();
            assert!(matches!(e, CtrlError::BadUsed { len: 0, .. }), "{e:?}");
        }
    }

    #[test]
    fn data_beyond_the_command_area_is_refused_before_anything_is_posted() {
        let mut r = rig(QueueLayout::Split, true, Behaviour::Qemu);
        let macs = vec![A; UNICAST_FILTER_MAX + 1];
        let e = r.q.execute(&ctrl_mac_table_set(&macs, &[])).unwrap_err();
        assert!(
            matches!(e, CtrlError::TooLong { len, max: CTRL_DATA_MAX, .. } if len == CTRL_DATA_MAX + 6),
            "{e:?}"
        );
        assert_eq!(r.doorbells(), 0);
        // The largest table fits.
        r.q.execute(&ctrl_mac_table_set(&vec![B; UNICAST_FILTER_MAX], &[]))
            .unwrap();
        assert_eq!(r.dev().unicast.len(), UNICAST_FILTER_MAX);
    }

    #[test]
    fn indices_and_wrap_counters_wrap() {
        // 70,000 commands: the split ring's 16-bit indices wrap, the packed ring's wrap
        // counters flip thousands of times (3 descriptors per command on an 8-entry ring).
        for layout in LAYOUTS {
            for event_idx in [true, false] {
                let mut r = rig(layout, event_idx, Behaviour::Qemu);
                for i in 0..70_000u32 {
                    r.q.execute(&promisc(i % 2 == 0)).unwrap();
                    assert_eq!(r.dev().promisc, i % 2 == 0);
                    r.dev().seen.clear();
                }
                assert_eq!(r.q.completed(), 70_000);
                assert_eq!(r.doorbells(), 70_000, "{layout:?} {event_idx}");
            }
        }
    }

    #[test]
    fn filters_need_ctrl_rx_except_what_undoes_nothing() {
        let without = VIRTIO_F_VERSION_1 | VIRTIO_NET_F_CTRL_VQ;
        assert_eq!(
            rx_filter_command(without, RxFilter::Promisc(false)),
            Err(NeedsCtrlRx)
        );
        assert_eq!(
            rx_filter_command(without, RxFilter::Promisc(true)),
            Ok(None)
        );
        assert_eq!(
            rx_filter_command(without, RxFilter::Unicast(&[A])),
            Err(NeedsCtrlRx)
        );
        assert_eq!(rx_filter_command(without, RxFilter::Unicast(&[])), Ok(None));
        let with = without | VIRTIO_NET_F_CTRL_RX;
        assert_eq!(
            rx_filter_command(with, RxFilter::Promisc(true)),
            Ok(Some(vec![0, 0, 1]))
        );
        assert_eq!(
            rx_filter_command(with, RxFilter::Unicast(&[])),
            Ok(Some(ctrl_mac_table_set(&[], &[])))
        );
        assert_eq!(
            rx_filter_command(with, RxFilter::Unicast(&[A, B])),
            Ok(Some(ctrl_mac_table_set(&[A, B], &[])))
        );
        let e = Error::RxFilterUnsupported {
            addr: "0000:00:03.0".parse::<PciAddress>().unwrap(),
            request: RxFilter::Promisc(false).to_string(),
            features: without,
        };
        let msg = e.to_string();
        for want in [
            "0000:00:03.0",
            "turn promiscuous mode off",
            "VIRTIO_NET_F_CTRL_RX",
            "negotiated: CTRL_VQ|VERSION_1",
            "ctrl_rx=on",
        ] {
            assert!(msg.contains(want), "'{want}' missing: {msg}");
        }
    }

    #[test]
    fn the_control_queue_is_accepted_only_when_offered() {
        // QEMU 10's offer on a backend without a vnet header (firmware-iface's model:
        // HUB_FEATURES), which includes CTRL_VQ and CTRL_RX.
        let qemu = 0x0000_0103_30bf_8024u64;
        let both = VIRTIO_NET_F_CTRL_VQ | VIRTIO_NET_F_CTRL_RX;
        let f = negotiate(qemu, crate::virtio::DRIVER_FEATURES).unwrap();
        assert_eq!(f & both, both);
        // ctrl_rx=off: the queue without filtering.
        let f = negotiate(qemu & !VIRTIO_NET_F_CTRL_RX, crate::virtio::DRIVER_FEATURES).unwrap();
        assert_eq!(f & both, VIRTIO_NET_F_CTRL_VQ);
        // ctrl_vq=off: neither (CTRL_RX needs CTRL_VQ, §5.1.3.1).
        let f = negotiate(qemu & !VIRTIO_NET_F_CTRL_VQ, crate::virtio::DRIVER_FEATURES).unwrap();
        assert_eq!(f & both, 0);
        let minimal = VIRTIO_F_VERSION_1 | VIRTIO_F_ACCESS_PLATFORM | VIRTIO_NET_F_MAC;
        let f = negotiate(minimal | VIRTIO_F_EVENT_IDX, crate::virtio::DRIVER_FEATURES).unwrap();
        assert_eq!(f & both, 0);
    }

    #[test]
    fn command_names() {
        let name = |class, command| CtrlCommand { class, command }.to_string();
        assert_eq!(name(0, 0), "VIRTIO_NET_CTRL_RX_PROMISC");
        assert_eq!(name(0, 5), "VIRTIO_NET_CTRL_RX_NOBCAST");
        assert_eq!(name(1, 0), "VIRTIO_NET_CTRL_MAC_TABLE_SET");
        assert_eq!(name(1, 1), "VIRTIO_NET_CTRL_MAC_ADDR_SET");
        assert_eq!(name(0, 9), "control class 0 command 9");
        assert_eq!(name(4, 0), "VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET");
        assert_eq!(name(4, 1), "VIRTIO_NET_CTRL_MQ_RSS_CONFIG");
        assert_eq!(name(4, 2), "VIRTIO_NET_CTRL_MQ_HASH_CONFIG");
        assert_eq!(name(4, 9), "control class 4 command 9");
    }
}
