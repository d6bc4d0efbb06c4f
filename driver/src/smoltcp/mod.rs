//! A smoltcp [`Device`](smoltcp::phy::Device) over one tenge queue pair (feature
//! `smoltcp`): TCP/IP in user space on a port, with no copy on receive and one doorbell
//! per interface poll on transmit.
//!
//! - **RX**: `SmolDevice::receive` (smoltcp's `Device::receive`) takes frames from the queue a burst at a time and
//!   hands smoltcp a token that owns the received buffer; smoltcp reads the frame in
//!   place, and the buffer goes back to the queue's cache. Only a chain (a frame larger
//!   than one buffer) is copied, into one slice, since smoltcp parses a frame as one.
//!   A frame the device found a bad checksum in is dropped here and counted.
//! - **TX**: a token writes into a fresh buffer from the TX queue's cache and leaves it in
//!   the device's batch; [`SmolDevice::flush`], called after each `Interface::poll`, sends
//!   the batch with one doorbell. A full batch is flushed on the way.
//! - **TX coalescing** ([`SmolDevice::with_tx_coalescing`], on a port whose device
//!   segments TCP): at each send the full-sized segments of one flow that smoltcp built back
//!   to back go to the device as one TSO packet, which it cuts into the same frames
//!   (`tx_coalesce`).
//! - **Capabilities**: Ethernet, the port's largest frame as the MTU, and a
//!   `max_burst_size` of the RX ring's worth (smoltcp issue 949: a TCP window larger than
//!   the receive ring makes the peer send bursts the ring drops).

use smoltcp::phy::{self, Checksum, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::packet::mempool::{PacketBuf, PacketMeta};
use crate::port::{QueuePair, RxQueueHandle, TxQueueHandle};
use crate::ring::PacketBatch;

mod tx_coalesce;
use tx_coalesce::TxCoalescer;

/// The largest Ethernet frame a port sends without an FCS (no jumbo frames).
pub const MAX_FRAME: usize = 1514;

/// What the adapter counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmolStats {
    /// Frames handed to smoltcp.
    pub rx_frames: u64,
    /// Frames dropped because the device, or the adapter's own check, found a bad IPv4,
    /// TCP or UDP checksum.
    pub rx_bad_checksum: u64,
    /// Frames whose TCP or UDP checksum the adapter verified in software (no verdict from
    /// the device), with [`SmolDevice::with_rx_checksum_verdicts`].
    pub rx_sw_verified: u64,
    /// Chains copied into one slice for smoltcp.
    pub rx_linearised: u64,
    /// Frames the application's drop test ([`SmolDevice::set_rx_drop`]) took out after
    /// the burst, before smoltcp.
    pub rx_app_dropped: u64,
    /// Frames smoltcp sent that reached the ring.
    pub tx_frames: u64,
    /// Frames smoltcp built when the TX pool was empty (dropped; TCP resends them).
    pub tx_no_buffer: u64,
    /// Doorbell-batched sends (`flush` calls that sent something).
    pub tx_flushes: u64,
    /// TSO packets the TX coalescing made of smoltcp's segments.
    pub tx_tso_packets: u64,
    /// Segments that left inside them (of `tx_frames`, which counts a TSO packet once).
    pub tx_tso_segments: u64,
}

/// A smoltcp device over one queue pair.
pub struct SmolDevice {
    rx: RxQueueHandle,
    tx: TxQueueHandle,
    /// Received frames not yet handed to smoltcp.
    rx_batch: PacketBatch,
    /// Frames smoltcp built, sent at the next flush.
    tx_batch: PacketBatch,
    /// Where a chain is linearised for smoltcp.
    rx_scratch: Vec<u8>,
    /// Where smoltcp writes a frame when no TX buffer is free (then dropped).
    tx_scratch: Vec<u8>,
    rx_ring: usize,
    /// The device computes IPv4, TCP and UDP checksums on TX (smoltcp leaves them).
    tx_csum_offload: bool,
    /// Merges runs of TCP segments into TSO packets before each send.
    coalescer: Option<TxCoalescer>,
    /// smoltcp leaves the TCP and UDP checksums of received frames to the adapter, which
    /// takes the device's verdicts and checks the rest itself.
    rx_verdicts: bool,
    /// The application's drop test, run on each received frame after the burst.
    rx_drop: Option<RxDrop>,
    rx_counts: RxCounts,
    tx_counts: TxCounts,
}

/// A test on a received frame's bytes (its first buffer): true drops it.
pub type RxDrop = Box<dyn FnMut(&[u8]) -> bool + Send>;

#[derive(Default)]
struct RxCounts {
    frames: u64,
    bad_checksum: u64,
    sw_verified: u64,
    linearised: u64,
    app_dropped: u64,
}

#[derive(Default)]
struct TxCounts {
    frames: u64,
    no_buffer: u64,
    flushes: u64,
}

impl SmolDevice {
    /// A device over `pair`, whose RX ring has `rx_ring` descriptors (the burst smoltcp's
    /// TCP window is bounded by).
    pub fn new(pair: QueuePair, rx_ring: usize) -> Self {
        SmolDevice {
            rx: pair.rx,
            tx: pair.tx,
            rx_batch: PacketBatch::new(32),
            tx_batch: PacketBatch::new(64),
            rx_scratch: Vec::with_capacity(16 * 1024),
            tx_scratch: Vec::with_capacity(MAX_FRAME),
            rx_ring,
            tx_csum_offload: false,
            coalescer: None,
            rx_verdicts: false,
            rx_drop: None,
            rx_counts: RxCounts::default(),
            tx_counts: TxCounts::default(),
        }
    }

    /// Sends what smoltcp built since the last flush, with one doorbell; returns how many
    /// frames went. Frames a full ring did not take stay for the next flush.
    pub fn flush(&mut self) -> usize {
        if self.tx_batch.is_empty() {
            return 0;
        }
        let n = send(
            &mut self.tx,
            &mut self.tx_batch,
            &mut self.coalescer,
            &mut self.tx_counts,
        );
        if n == 0 {
            self.tx.tx_reclaim();
        }
        n
    }

    /// Sends each run of full-sized segments of one TCP flow that smoltcp built between
    /// two sends as one TSO packet (module `tx_coalesce`): for a port whose device does TSO
    /// (`Port::offloads().tx_tso` is `device`), with [`Self::with_tx_checksum_offload`]
    /// on (only frames that ask for their checksums are merged). The frames on the wire
    /// are smoltcp's but for the IPv4 identification.
    pub fn with_tx_coalescing(mut self, on: bool) -> Self {
        self.coalescer = on.then(TxCoalescer::new);
        self
    }

    /// Leaves the IPv4 header, TCP and UDP checksums of what smoltcp sends to the port
    /// (each frame asks with `PacketMeta::TX_*`; smoltcp writes none): for a port whose
    /// device computes them (`Port::offloads()` says `device`; with software it saves
    /// nothing). smoltcp still verifies what it receives.
    pub fn with_tx_checksum_offload(mut self, on: bool) -> Self {
        self.tx_csum_offload = on;
        self
    }

    /// Takes the port's RX checksum verdicts (`PortConfig::rx_checksum`) instead of
    /// smoltcp's check of every TCP and UDP checksum: a frame the device vouched for goes
    /// to smoltcp unchecked (a coalesced LRO frame is one pass over 64 KiB fewer), one it
    /// found bad is dropped, and one without a verdict is verified here in software
    /// (`rx_sw_verified`). smoltcp still checks IPv4 headers, ICMP, and TCP or UDP behind
    /// IPv6 extension headers is left unverified (the adapter's check reads none). With
    /// this on, the port may leave partial checksums partial
    /// (`PortConfig::rx_fill_partial_checksums` off): smoltcp never reads the field.
    pub fn with_rx_checksum_verdicts(mut self, on: bool) -> Self {
        self.rx_verdicts = on;
        self
    }

    /// Drops each received frame `drop` says true of, after the burst and before smoltcp
    /// (counted in `rx_app_dropped`): what an application without
    /// [`RxQueueHandle::set_ingress_filter`] does, for comparing the two. `None` removes
    /// it.
    pub fn set_rx_drop(&mut self, drop: Option<RxDrop>) {
        self.rx_drop = drop;
    }

    /// The adapter's counters.
    pub fn stats(&self) -> SmolStats {
        SmolStats {
            rx_frames: self.rx_counts.frames,
            rx_bad_checksum: self.rx_counts.bad_checksum,
            rx_sw_verified: self.rx_counts.sw_verified,
            rx_linearised: self.rx_counts.linearised,
            rx_app_dropped: self.rx_counts.app_dropped,
            tx_frames: self.tx_counts.frames,
            tx_no_buffer: self.tx_counts.no_buffer,
            tx_flushes: self.tx_counts.flushes,
            tx_tso_packets: self.coalescer.as_ref().map_or(0, |c| c.packets),
            tx_tso_segments: self.coalescer.as_ref().map_or(0, |c| c.segments),
        }
    }

    /// The receive queue (its counters, its software LRO switch).
    pub fn rx_queue(&mut self) -> &mut RxQueueHandle {
        &mut self.rx
    }

    /// The transmit queue (its counters).
    pub fn tx_queue(&mut self) -> &mut TxQueueHandle {
        &mut self.tx
    }

    /// Whether received frames are waiting for smoltcp (taken from the ring, not yet
    /// handed over); an idle loop sleeps only when this is false.
    pub fn rx_pending(&self) -> bool {
        !self.rx_batch.is_empty()
    }
}

/// A received frame for smoltcp: owns its buffer until consumed.
pub struct SmolRxToken<'a> {
    pkt: PacketBuf,
    rx: &'a mut RxQueueHandle,
    scratch: &'a mut Vec<u8>,
    linearised: &'a mut u64,
}

impl phy::RxToken for SmolRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let r = if self.pkt.is_chained() {
            *self.linearised += 1;
            self.scratch.clear();
            self.pkt.append_to(self.scratch);
            f(self.scratch)
        } else {
            f(self.pkt.data())
        };
        self.rx.free(self.pkt);
        r
    }
}

/// Room for one frame smoltcp sends.
pub struct SmolTxToken<'a> {
    csum_offload: bool,
    tx: &'a mut TxQueueHandle,
    batch: &'a mut PacketBatch,
    coalescer: &'a mut Option<TxCoalescer>,
    scratch: &'a mut Vec<u8>,
    counts: &'a mut TxCounts,
}

impl phy::TxToken for SmolTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        if self.batch.room() == 0 {
            send(self.tx, self.batch, self.coalescer, self.counts);
        }
        let mut buf = self
            .tx
            .alloc()
            .filter(|_| self.batch.room() > 0 && len <= MAX_FRAME);
        if let Some(b) = buf.as_mut() {
            if b.set_len(len) {
                *b.meta_mut() = PacketMeta::default();
            } else if let Some(b) = buf.take() {
                self.tx.free(b);
            }
        }
        match buf {
            Some(mut b) => {
                let r = f(b.data_mut());
                if self.csum_offload {
                    ask_checksums(&mut b);
                }
                if let Err(b) = self.batch.push(b) {
                    self.tx.free(b);
                }
                r
            }
            None => {
                // No buffer (or no room): smoltcp still writes the frame; it is dropped
                // and counted, and TCP's retransmission covers it.
                self.counts.no_buffer += 1;
                self.scratch.resize(len, 0);
                f(&mut self.scratch[..len])
            }
        }
    }
}

impl phy::Device for SmolDevice {
    type RxToken<'a> = SmolRxToken<'a>;
    type TxToken<'a> = SmolTxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        // Frames dropped in this call (by the queue's ingress filter, the application's
        // drop test or a bad checksum): a burst that left nothing says nothing about what
        // is still in the ring, so the next is taken at once, but only up to a ring's
        // worth of dropped frames. A flood of junk must not end smoltcp's poll every 32
        // frames, nor hold it for ever (smoltcp sends nothing until `receive` says None),
        // whichever drop takes it.
        let mut dropped = 0usize;
        let pkt = loop {
            if self.rx_batch.is_empty() {
                if dropped >= self.rx_ring {
                    return None;
                }
                let before = self.rx.ingress_stats().dropped;
                let got = self.rx.rx_burst(&mut self.rx_batch);
                let filtered = self.rx.ingress_stats().dropped - before;
                dropped = dropped.saturating_add(filtered as usize);
                if got == 0 {
                    if filtered > 0 {
                        continue;
                    }
                    return None;
                }
            }
            let pkt = self.rx_batch.pop()?;
            let bad = PacketMeta::RX_IP_CSUM_BAD | PacketMeta::RX_L4_CSUM_BAD;
            let flags = pkt.meta().flags;
            if flags & bad != 0 {
                self.rx_counts.bad_checksum += 1;
                self.rx.free(pkt);
                dropped += 1;
                continue;
            }
            // The application's drop before the adapter's own checksum pass, as before
            // smoltcp's: what it drops costs it the header test alone.
            if let Some(drop) = self.rx_drop.as_mut() {
                if drop(pkt.data()) {
                    self.rx_counts.app_dropped += 1;
                    self.rx.free(pkt);
                    dropped += 1;
                    continue;
                }
            }
            if self.rx_verdicts && flags & PacketMeta::RX_L4_CSUM_GOOD == 0 {
                let verdict = crate::packet::csum::l4_checksum_ok(&pkt);
                self.rx_counts.sw_verified += u64::from(verdict.is_some());
                if verdict == Some(false) {
                    self.rx_counts.bad_checksum += 1;
                    self.rx.free(pkt);
                    dropped += 1;
                    continue;
                }
            }
            break pkt;
        };
        self.rx_counts.frames += 1;
        Some((
            SmolRxToken {
                pkt,
                rx: &mut self.rx,
                scratch: &mut self.rx_scratch,
                linearised: &mut self.rx_counts.linearised,
            },
            SmolTxToken {
                csum_offload: self.tx_csum_offload,
                tx: &mut self.tx,
                batch: &mut self.tx_batch,
                coalescer: &mut self.coalescer,
                scratch: &mut self.tx_scratch,
                counts: &mut self.tx_counts,
            },
        ))
    }

    /// `None` (smoltcp holds the frame back and retries at its next poll) while the
    /// batch is full and the ring takes nothing more: backpressure, not a drop.
    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        if self.tx_batch.room() == 0 && self.flush() == 0 {
            self.tx.tx_reclaim();
            if self.flush() == 0 {
                return None;
            }
        }
        Some(SmolTxToken {
            csum_offload: self.tx_csum_offload,
            tx: &mut self.tx,
            batch: &mut self.tx_batch,
            coalescer: &mut self.coalescer,
            scratch: &mut self.tx_scratch,
            counts: &mut self.tx_counts,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = Some(self.rx_ring.max(1));
        let l4 = match (self.tx_csum_offload, self.rx_verdicts) {
            (false, false) => Checksum::Both,
            // Verify on receive, leave the sum to the device on transmit.
            (true, false) => Checksum::Rx,
            // The adapter verifies what the device did not.
            (false, true) => Checksum::Tx,
            (true, true) => Checksum::None,
        };
        caps.checksum.tcp = l4;
        caps.checksum.udp = l4;
        if self.tx_csum_offload {
            caps.checksum.ipv4 = Checksum::Rx;
        }
        caps
    }
}

/// One doorbell for what `batch` holds, its TCP runs merged first where coalescing is on;
/// counted. Returns the packets the ring took (a TSO packet once).
fn send(
    tx: &mut TxQueueHandle,
    batch: &mut PacketBatch,
    coalescer: &mut Option<TxCoalescer>,
    counts: &mut TxCounts,
) -> usize {
    if let Some(c) = coalescer {
        c.coalesce(batch);
    }
    let n = tx.tx_burst(batch);
    counts.frames += n as u64;
    counts.flushes += u64::from(n > 0);
    n
}

/// Sets the checksum requests for the frame smoltcp wrote into `b` (left without its IPv4,
/// TCP and UDP checksums): Ethernet II, then IPv4 (its header checksum and, over TCP or
/// UDP, that one) or IPv6 without extension headers (TCP or UDP). Anything else (ARP,
/// ICMP, whose checksums smoltcp still writes) asks for nothing.
fn ask_checksums(b: &mut PacketBuf) {
    const IPPROTO_TCP: u8 = 6;
    const IPPROTO_UDP: u8 = 17;
    let d = b.data();
    let Some(&[t0, t1]) = d.get(12..14) else {
        return;
    };
    let (flags, l3, proto) = match u16::from_be_bytes([t0, t1]) {
        0x0800 => {
            let Some(&v) = d.get(14) else { return };
            let ihl = usize::from(v & 0xf) * 4;
            let Some(&p) = d.get(23) else { return };
            (PacketMeta::TX_IPV4 | PacketMeta::TX_IP_CSUM, ihl, p)
        }
        0x86dd => match d.get(20) {
            Some(&p) => (PacketMeta::TX_IPV6, 40, p),
            None => return,
        },
        _ => return,
    };
    let (l4_flag, l4) = match proto {
        IPPROTO_TCP => match d.get(14 + l3 + 12) {
            Some(&off) => (PacketMeta::TX_TCP_CSUM, usize::from(off >> 4) * 4),
            None => return,
        },
        IPPROTO_UDP => (PacketMeta::TX_UDP_CSUM, 8),
        // IPv4 alone: its header checksum still asked.
        _ => (0, 0),
    };
    if flags & PacketMeta::TX_IPV6 != 0 && l4_flag == 0 {
        return;
    }
    let m = b.meta_mut();
    m.flags = flags | l4_flag;
    (m.l2_len, m.l3_len, m.l4_len) = (14, l3 as u8, l4 as u8);
}
