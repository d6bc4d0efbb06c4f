//! Software GSO: one TCP packet that asks for TSO (`PacketMeta::TX_TSO` with `mss`,
//! `l2_len`, `l3_len`, `l4_len`) cut into MSS-sized frames, for a device that cannot
//! segment (or a backend that hides HOST_TSO).
//!
//! Each segment is the original headers followed by at most `mss` bytes of payload, with
//! what RFC 791, RFC 8200 and RFC 9293 make differ between them: the IPv4 total length and
//! identification (incremented per segment, as Linux's and the 82574's TSO do), the IPv6
//! payload length, the TCP sequence number (advanced by the payload before it), FIN and PSH
//! only on the last segment and CWR only on the first (RFC 3168 §6.1.2: CWR marks the
//! first segment sent after the window was reduced; Linux's `tcp_gso_segment` does the
//! same), and every checksum: the IPv4 header's always in software, the TCP one in
//! software ([`GsoChecksum::Software`]) or left as the pseudo-header sum with a
//! `TX_TCP_CSUM` request on each segment for a device that checksums
//! ([`GsoChecksum::Device`]).
//!
//! All or nothing: the buffers for every segment are taken from the cache before any is
//! written; if the pool runs dry they go back and the packet is refused
//! ([`GsoError::PoolEmpty`]): a counted drop of the whole packet, never half of it on the
//! wire. A packet whose header lengths do not match its bytes is refused with the reason
//! (one [`GsoStats`] counter each), never segmented into something malformed.

use super::{
    be16, be32, put16, put32, tcp_flags, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_HLEN, IPPROTO_TCP,
    IPV4_HLEN, IPV6_HLEN, TCP_HLEN, TCP_MAX_HLEN,
};
use crate::packet::csum;
use crate::packet::mempool::{MempoolCache, PacketBuf, PacketMeta};
use crate::ring::{OffloadDrops, PacketBatch};

/// The longest header block `l2_len + l3_len + l4_len` can describe (three `u8`s).
const MAX_HDR: usize = 3 * 255;

/// Where the segments' TCP checksum is computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GsoChecksum {
    /// By tenge: every segment leaves with a complete TCP checksum and no request.
    #[default]
    Software,
    /// By the device: the TCP checksum field holds the pseudo-header sum (not
    /// complemented, the convention of Linux's CHECKSUM_PARTIAL, virtio's NEEDS_CSUM and
    /// the 82574's TUCSO) and each segment's metadata asks `TX_TCP_CSUM` (with `TX_IPV4` or
    /// `TX_IPV6` and its header lengths). The IPv4 header checksum is still done here.
    Device,
}

/// Why a packet was not segmented. The packet is the caller's to drop (the reason is
/// already counted in [`GsoStats`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GsoError {
    /// The packet's metadata does not ask for TSO.
    #[error("the packet does not ask for TSO (PacketMeta::TX_TSO not set)")]
    NotRequested,
    /// An MSS of 0 would make no progress.
    #[error("TSO with an MSS of 0: set meta.mss to the largest TCP payload per frame")]
    ZeroMss,
    /// `l2_len` is shorter than an Ethernet header.
    #[error("l2_len {l2_len} is shorter than an Ethernet header (14 bytes)")]
    ShortL2 {
        /// The packet's `l2_len`.
        l2_len: u8,
    },
    /// The headers the lengths describe run past the packet.
    #[error(
        "headers of l2 {l2_len} + l3 {l3_len} + l4 {l4_len} bytes run past the \
         {pkt_len}-byte packet: set the lengths of the packet's own headers"
    )]
    HeadersBeyondPacket {
        /// `l2_len`.
        l2_len: u8,
        /// `l3_len`.
        l3_len: u8,
        /// `l4_len`.
        l4_len: u8,
        /// Bytes in the packet, every segment.
        pkt_len: usize,
    },
    /// The EtherType before the L3 header is neither IPv4 nor IPv6.
    #[error(
        "EtherType {ethertype:#06x} at l2_len - 2 is neither IPv4 nor IPv6: TSO needs TCP over IP"
    )]
    NotIp {
        /// The EtherType found.
        ethertype: u16,
    },
    /// The IP version nibble, the EtherType and the `TX_IPV4`/`TX_IPV6` request disagree.
    #[error(
        "IP version {version} under EtherType {ethertype:#06x} (meta asks IPv4 {ipv4}, \
         IPv6 {ipv6}): the headers and the request must name the same IP version"
    )]
    IpVersionMismatch {
        /// The EtherType.
        ethertype: u16,
        /// The version nibble of the L3 header.
        version: u8,
        /// `TX_IPV4` was set.
        ipv4: bool,
        /// `TX_IPV6` was set.
        ipv6: bool,
    },
    /// The IPv4 IHL does not match `l3_len` (or is below the 20-byte minimum).
    #[error("IPv4 IHL says {ihl_bytes} header bytes but l3_len is {l3_len}")]
    Ipv4HeaderLength {
        /// IHL × 4.
        ihl_bytes: usize,
        /// `l3_len`.
        l3_len: u8,
    },
    /// IPv6 with extension headers (or an `l3_len` other than 40).
    #[error(
        "IPv6 l3_len {l3_len}: only the fixed 40-byte header (no extension headers) is segmented"
    )]
    Ipv6HeaderLength {
        /// `l3_len`.
        l3_len: u8,
    },
    /// The L3 header does not carry TCP.
    #[error("TSO on a non-TCP packet (IP protocol or next header {protocol})")]
    NotTcp {
        /// The protocol number found.
        protocol: u8,
    },
    /// The TCP data offset does not match `l4_len` (or is below 5 words).
    #[error("TCP data offset says {doff_bytes} header bytes but l4_len is {l4_len}")]
    TcpHeaderLength {
        /// Data offset × 4.
        doff_bytes: usize,
        /// `l4_len`.
        l4_len: u8,
    },
    /// A segment of `mss` payload bytes would not fit an IP datagram's 16-bit length.
    #[error("MSS {mss} with {l3_l4} bytes of IP and TCP headers exceeds the 65535-byte IP length")]
    MssTooLarge {
        /// The MSS asked.
        mss: u16,
        /// `l3_len + l4_len`.
        l3_l4: usize,
    },
    /// A segment (its headers and `mss` bytes) would be longer than the port sends.
    #[error(
        "MSS {mss} with {hdr_len} bytes of headers makes {frame}-byte frames, over the \
         port's {max_frame}: use an MSS of at most {}",
        max_frame.saturating_sub(*hdr_len)
    )]
    SegmentTooLong {
        /// The MSS asked.
        mss: u16,
        /// `l2_len + l3_len + l4_len`.
        hdr_len: usize,
        /// The frame a full segment makes.
        frame: usize,
        /// The longest frame the port sends.
        max_frame: usize,
    },
    /// The output batch has no room for every segment (nothing was taken).
    #[error("{needed} segments but room for {room} in the output batch: pass a larger batch")]
    NoRoom {
        /// Segments the packet makes.
        needed: usize,
        /// Free places in the batch.
        room: usize,
    },
    /// The pool ran dry: the buffers taken went back, the packet is dropped whole.
    #[error("the mempool ran dry after {got} of the {needed} buffers the segments need")]
    PoolEmpty {
        /// Buffers the segments need.
        needed: usize,
        /// Buffers the cache could give.
        got: usize,
    },
}

/// Software GSO counters: packets segmented, segments made, and each refusal by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GsoStats {
    /// Packets cut into segments.
    pub packets: u64,
    /// Segments made.
    pub segments: u64,
    /// [`GsoError::NotRequested`].
    pub not_requested: u64,
    /// [`GsoError::ZeroMss`].
    pub zero_mss: u64,
    /// [`GsoError::ShortL2`].
    pub short_l2: u64,
    /// [`GsoError::HeadersBeyondPacket`].
    pub headers_beyond_packet: u64,
    /// [`GsoError::NotIp`].
    pub not_ip: u64,
    /// [`GsoError::IpVersionMismatch`].
    pub ip_version_mismatch: u64,
    /// [`GsoError::Ipv4HeaderLength`].
    pub ipv4_header_length: u64,
    /// [`GsoError::Ipv6HeaderLength`].
    pub ipv6_header_length: u64,
    /// [`GsoError::NotTcp`].
    pub not_tcp: u64,
    /// [`GsoError::TcpHeaderLength`].
    pub tcp_header_length: u64,
    /// [`GsoError::MssTooLarge`].
    pub mss_too_large: u64,
    /// [`GsoError::SegmentTooLong`].
    pub segment_too_long: u64,
    /// [`GsoError::NoRoom`].
    pub no_room: u64,
    /// [`GsoError::PoolEmpty`].
    pub pool_empty: u64,
}

impl GsoStats {
    /// Counts one refusal.
    pub fn count(&mut self, e: &GsoError) {
        let c = match e {
            GsoError::NotRequested => &mut self.not_requested,
            GsoError::ZeroMss => &mut self.zero_mss,
            GsoError::ShortL2 { .. } => &mut self.short_l2,
            GsoError::HeadersBeyondPacket { .. } => &mut self.headers_beyond_packet,
            GsoError::NotIp { .. } => &mut self.not_ip,
            GsoError::IpVersionMismatch { .. } => &mut self.ip_version_mismatch,
            GsoError::Ipv4HeaderLength { .. } => &mut self.ipv4_header_length,
            GsoError::Ipv6HeaderLength { .. } => &mut self.ipv6_header_length,
            GsoError::NotTcp { .. } => &mut self.not_tcp,
            GsoError::TcpHeaderLength { .. } => &mut self.tcp_header_length,
            GsoError::MssTooLarge { .. } => &mut self.mss_too_large,
            GsoError::SegmentTooLong { .. } => &mut self.segment_too_long,
            GsoError::NoRoom { .. } => &mut self.no_room,
            GsoError::PoolEmpty { .. } => &mut self.pool_empty,
        };
        *c += 1;
    }

    /// Every refusal, all reasons.
    pub fn dropped(&self) -> u64 {
        self.not_requested
            + self.zero_mss
            + self.short_l2
            + self.headers_beyond_packet
            + self.not_ip
            + self.ip_version_mismatch
            + self.ipv4_header_length
            + self.ipv6_header_length
            + self.not_tcp
            + self.tcp_header_length
            + self.mss_too_large
            + self.segment_too_long
            + self.no_room
            + self.pool_empty
    }
}

impl GsoStats {
    /// The refusals in the reasons every TX path counts by ([`OffloadDrops`]): the same
    /// requests the devices refuse under the same names, the GSO's finer header checks
    /// as header lengths, and its buffer shortages as `no_buffers` (`not_requested` never
    /// comes from a queue, which hands the GSO TSO packets only).
    pub fn reasons(&self) -> OffloadDrops {
        OffloadDrops {
            l3_type: self.not_ip + self.ip_version_mismatch,
            header_length: self.short_l2
                + self.ipv4_header_length
                + self.ipv6_header_length
                + self.tcp_header_length,
            too_short: self.headers_beyond_packet,
            protocol: 0,
            zero_mss: self.zero_mss,
            tso_not_tcp: self.not_tcp,
            too_long: self.mss_too_large + self.segment_too_long,
            vlan_room: 0,
            unsupported: self.not_requested,
            no_buffers: self.no_room + self.pool_empty,
        }
    }
}

impl std::ops::AddAssign for GsoStats {
    /// Sums another queue's counters into these (a port's totals).
    fn add_assign(&mut self, o: GsoStats) {
        self.packets += o.packets;
        self.segments += o.segments;
        self.not_requested += o.not_requested;
        self.zero_mss += o.zero_mss;
        self.short_l2 += o.short_l2;
        self.headers_beyond_packet += o.headers_beyond_packet;
        self.not_ip += o.not_ip;
        self.ip_version_mismatch += o.ip_version_mismatch;
        self.ipv4_header_length += o.ipv4_header_length;
        self.ipv6_header_length += o.ipv6_header_length;
        self.not_tcp += o.not_tcp;
        self.tcp_header_length += o.tcp_header_length;
        self.mss_too_large += o.mss_too_large;
        self.segment_too_long += o.segment_too_long;
        self.no_room += o.no_room;
        self.pool_empty += o.pool_empty;
    }
}

/// What validation found: the header block and how to cut the payload.
struct Plan {
    hdr: [u8; MAX_HDR],
    l2: usize,
    l3: usize,
    l4: usize,
    ipv6: bool,
    payload: usize,
    mss: usize,
    segs: usize,
}

impl Plan {
    fn hdr_len(&self) -> usize {
        self.l2 + self.l3 + self.l4
    }

    /// Payload bytes of segment `i`.
    fn seg_payload(&self, i: usize) -> usize {
        self.payload.saturating_sub(i * self.mss).min(self.mss)
    }
}

/// Buffers of `room` bytes that `len` bytes take (at least one: a segment is never empty).
fn bufs_for(len: usize, room: usize) -> usize {
    len.div_ceil(room.max(1)).max(1)
}

/// A software GSO engine: its counters and scratch space that is reused from packet to
/// packet (no allocation once it has seen the largest packet).
#[derive(Debug, Default)]
pub struct Gso {
    /// Where the TCP checksum is computed.
    pub checksum: GsoChecksum,
    /// The longest segment frame the port sends (0: no limit).
    pub max_frame: usize,
    stats: GsoStats,
    /// Buffers taken for the packet being segmented, not yet written.
    spare: Vec<PacketBuf>,
    /// The buffers of the segment being written, in order.
    seg_bufs: Vec<PacketBuf>,
    /// Finished segments, held until every one is built.
    built: Vec<PacketBuf>,
}

impl Gso {
    /// A GSO engine computing checksums as `checksum` says.
    pub fn new(checksum: GsoChecksum) -> Self {
        Gso {
            checksum,
            ..Gso::default()
        }
    }

    /// The counters.
    pub fn stats(&self) -> &GsoStats {
        &self.stats
    }

    /// Cuts `pkt` into segments appended to `out`, in order, buffers from `cache`; returns
    /// how many. `pkt` itself is left untouched (the caller frees it, whatever the result).
    /// On an error nothing was appended and nothing taken from the cache.
    pub fn segment(
        &mut self,
        pkt: &PacketBuf,
        cache: &mut MempoolCache,
        out: &mut PacketBatch,
    ) -> Result<usize, GsoError> {
        let r = self.segment_inner(pkt, cache, out);
        match &r {
            Ok(n) => {
                self.stats.packets += 1;
                self.stats.segments += *n as u64;
            }
            Err(e) => self.stats.count(e),
        }
        r
    }

    fn segment_inner(
        &mut self,
        pkt: &PacketBuf,
        cache: &mut MempoolCache,
        out: &mut PacketBatch,
    ) -> Result<usize, GsoError> {
        let plan = validate(pkt)?;
        let frame = plan.hdr_len() + plan.mss.min(plan.payload);
        if self.max_frame != 0 && frame > self.max_frame {
            return Err(GsoError::SegmentTooLong {
                mss: plan.mss as u16,
                hdr_len: plan.hdr_len(),
                frame,
                max_frame: self.max_frame,
            });
        }
        if plan.segs > out.room() {
            return Err(GsoError::NoRoom {
                needed: plan.segs,
                room: out.room(),
            });
        }
        // Every buffer first: running dry half-way must leave nothing behind.
        let room = cache.pool().data_room() as usize;
        let needed: usize = (0..plan.segs)
            .map(|i| bufs_for(plan.hdr_len() + plan.seg_payload(i), room))
            .sum();
        self.spare.reserve(needed);
        while self.spare.len() < needed {
            match cache.alloc() {
                Some(b) => self.spare.push(b),
                None => {
                    let got = self.spare.len();
                    self.spare.drain(..).for_each(|b| cache.free(b));
                    return Err(GsoError::PoolEmpty { needed, got });
                }
            }
        }
        self.built.reserve(plan.segs);
        let mut src = Cursor::new(pkt, plan.hdr_len());
        for i in 0..plan.segs {
            match self.build(&plan, i, room, &mut src) {
                Some(seg) => self.built.push(seg),
                None => {
                    // Not reachable (the buffers were counted by the same rule), but if it
                    // were, nothing has gone out yet: give everything back.
                    self.built.drain(..).for_each(|b| cache.free(b));
                    self.seg_bufs.drain(..).for_each(|b| cache.free(b));
                    self.spare.drain(..).for_each(|b| cache.free(b));
                    return Err(GsoError::PoolEmpty {
                        needed,
                        got: needed,
                    });
                }
            }
        }
        debug_assert!(self.spare.is_empty());
        let n = self.built.len();
        for seg in self.built.drain(..) {
            // Room was checked above: a push cannot fail.
            if let Err(seg) = out.push(seg) {
                cache.free(seg);
            }
        }
        Ok(n)
    }

    /// Segment `i`: its headers patched, its payload copied from `src`.
    fn build(
        &mut self,
        plan: &Plan,
        i: usize,
        room: usize,
        src: &mut Cursor<'_>,
    ) -> Option<PacketBuf> {
        let payload = plan.seg_payload(i);
        let last = i + 1 == plan.segs;
        let (l2, l3, hlen) = (plan.l2, plan.l3, plan.hdr_len());
        let mut hdr = [0u8; MAX_HDR];
        let hdr = &mut hdr[..hlen];
        hdr.copy_from_slice(&plan.hdr[..hlen]);
        let l4_total = (plan.l4 + payload) as u32;
        let t = l2 + l3;
        if plan.ipv6 {
            // RFC 8200 §3: the payload length counts everything after the fixed header.
            put16(hdr, l2 + 4, l4_total as u16);
        } else {
            // RFC 791 §3.1: total length of the datagram; a fresh identification per
            // datagram (the first segment keeps the packet's, then +1 each).
            put16(hdr, l2 + 2, (l3 as u32 + l4_total) as u16);
            put16(hdr, l2 + 4, be16(hdr, l2 + 4).wrapping_add(i as u16));
            put16(hdr, l2 + 10, 0);
            let c = csum::ipv4_header_checksum(&hdr[l2..l2 + l3]);
            put16(hdr, l2 + 10, c);
        }
        // RFC 9293 §3.1: each segment's sequence number is that of its first payload byte.
        put32(
            hdr,
            t + 4,
            be32(hdr, t + 4).wrapping_add((i * plan.mss) as u32),
        );
        let mut flags = hdr[t + 13];
        if !last {
            flags &= !(tcp_flags::FIN | tcp_flags::PSH);
        }
        if i != 0 {
            flags &= !tcp_flags::CWR;
        }
        hdr[t + 13] = flags;
        let pseudo = if plan.ipv6 {
            csum::pseudo_v6(
                hdr[l2 + 8..l2 + 24].try_into().ok()?,
                hdr[l2 + 24..l2 + 40].try_into().ok()?,
                IPPROTO_TCP,
                l4_total,
            )
        } else {
            csum::pseudo_v4(
                hdr[l2 + 12..l2 + 16].try_into().ok()?,
                hdr[l2 + 16..l2 + 20].try_into().ok()?,
                IPPROTO_TCP,
                l4_total,
            )
        };
        // The TCP checksum (RFC 9293 §3.1): over the pseudo-header, the TCP header with
        // the field zero, and the payload, summed as it is copied.
        put16(hdr, t + 16, 0);
        let mut acc = csum::add_bytes(pseudo, &hdr[t..], false);

        // The frame, `room` bytes a buffer: the header block, then the payload.
        let total = hlen + payload;
        let mut at = 0usize;
        let mut payload_done = 0usize;
        for _ in 0..bufs_for(total, room) {
            let mut b = self.spare.pop()?;
            let n = (total - at).min(room);
            if !b.set_len(n) {
                self.spare.push(b);
                return None;
            }
            let d = b.data_mut();
            let h = hlen.saturating_sub(at).min(n);
            if h > 0 {
                d[..h].copy_from_slice(&hdr[at..at + h]);
            }
            let got = src.read(&mut d[h..n]);
            acc = csum::add_bytes(acc, &d[h..h + got], payload_done % 2 == 1);
            payload_done += got;
            at += n;
            self.seg_bufs.push(b);
        }
        let field = match self.checksum {
            GsoChecksum::Software => !csum::fold(acc),
            GsoChecksum::Device => csum::fold(pseudo),
        };
        let mut head: Option<PacketBuf> = None;
        while let Some(mut b) = self.seg_bufs.pop() {
            b.set_next(head.take());
            head = Some(b);
        }
        let mut head = head?;
        if !csum::write_at(&mut head, t + 16, &field.to_be_bytes()) {
            self.spare.push(head);
            return None;
        }
        let m = head.meta_mut();
        *m = PacketMeta::default();
        if self.checksum == GsoChecksum::Device {
            m.flags = PacketMeta::TX_TCP_CSUM
                | if plan.ipv6 {
                    PacketMeta::TX_IPV6
                } else {
                    PacketMeta::TX_IPV4
                };
            m.l2_len = plan.l2 as u8;
            m.l3_len = plan.l3 as u8;
            m.l4_len = plan.l4 as u8;
        }
        Some(head)
    }
}

/// Checks the packet's TSO request against its bytes (item 7 of the offloads issue): every
/// length the metadata gives must be the one the headers say. The request's own IPv4 total
/// length and IPv6 payload length are not checked (a stack may leave them 0 for a packet
/// over 64 KiB, and TSO hardware rewrites them as we do); the payload is everything after
/// the headers.
fn validate(pkt: &PacketBuf) -> Result<Plan, GsoError> {
    let m = pkt.meta();
    if m.flags & PacketMeta::TX_TSO == 0 {
        return Err(GsoError::NotRequested);
    }
    if m.mss == 0 {
        return Err(GsoError::ZeroMss);
    }
    if (m.l2_len as usize) < ETH_HLEN {
        return Err(GsoError::ShortL2 { l2_len: m.l2_len });
    }
    let (l2, l3, l4) = (m.l2_len as usize, m.l3_len as usize, m.l4_len as usize);
    let pkt_len = pkt.pkt_len();
    let hdr_len = l2 + l3 + l4;
    let beyond = GsoError::HeadersBeyondPacket {
        l2_len: m.l2_len,
        l3_len: m.l3_len,
        l4_len: m.l4_len,
        pkt_len,
    };
    // The lengths must name at least an IPv4 header and a TCP header.
    if l3 < IPV4_HLEN {
        return Err(GsoError::Ipv4HeaderLength {
            ihl_bytes: l3,
            l3_len: m.l3_len,
        });
    }
    if l4 < TCP_HLEN {
        return Err(GsoError::TcpHeaderLength {
            doff_bytes: l4,
            l4_len: m.l4_len,
        });
    }
    // The IP header first, then the TCP header: a packet that is not TCP is refused for
    // that, not for being too short for the TCP header it does not have.
    let ip_end = l2 + l3;
    let mut hdr = [0u8; MAX_HDR];
    if ip_end > pkt_len || !csum::read_at(pkt, 0, &mut hdr[..ip_end]) {
        return Err(beyond);
    }
    let ethertype = be16(&hdr, l2 - 2);
    let version = hdr[l2] >> 4;
    let ipv6 = match ethertype {
        ETHERTYPE_IPV4 => false,
        ETHERTYPE_IPV6 => true,
        _ => return Err(GsoError::NotIp { ethertype }),
    };
    let (ask4, ask6) = (
        m.flags & PacketMeta::TX_IPV4 != 0,
        m.flags & PacketMeta::TX_IPV6 != 0,
    );
    if version != if ipv6 { 6 } else { 4 } || (ipv6 && ask4) || (!ipv6 && ask6) {
        return Err(GsoError::IpVersionMismatch {
            ethertype,
            version,
            ipv4: ask4,
            ipv6: ask6,
        });
    }
    let protocol = if ipv6 {
        if l3 != IPV6_HLEN {
            return Err(GsoError::Ipv6HeaderLength { l3_len: m.l3_len });
        }
        hdr[l2 + 6]
    } else {
        let ihl_bytes = usize::from(hdr[l2] & 0xf) * 4;
        if ihl_bytes != l3 {
            return Err(GsoError::Ipv4HeaderLength {
                ihl_bytes,
                l3_len: m.l3_len,
            });
        }
        hdr[l2 + 9]
    };
    if protocol != IPPROTO_TCP {
        return Err(GsoError::NotTcp { protocol });
    }
    if hdr_len > pkt_len || !csum::read_at(pkt, ip_end, &mut hdr[ip_end..hdr_len]) {
        return Err(beyond);
    }
    let doff_bytes = usize::from(hdr[l2 + l3 + 12] >> 4) * 4;
    if doff_bytes != l4 || l4 > TCP_MAX_HLEN {
        return Err(GsoError::TcpHeaderLength {
            doff_bytes,
            l4_len: m.l4_len,
        });
    }
    let mss = usize::from(m.mss);
    // IPv4's total length and IPv6's payload length are 16 bits (RFC 791, RFC 8200 §3).
    let l3_l4 = if ipv6 { l4 } else { l3 + l4 };
    if l3_l4 + mss > usize::from(u16::MAX) {
        return Err(GsoError::MssTooLarge { mss: m.mss, l3_l4 });
    }
    let payload = pkt_len - hdr_len;
    Ok(Plan {
        hdr,
        l2,
        l3,
        l4,
        ipv6,
        payload,
        mss,
        // A packet with no payload still goes out, as one segment.
        segs: payload.div_ceil(mss).max(1),
    })
}

/// Reads a packet's bytes in order, across segments, from a starting offset.
struct Cursor<'a> {
    seg: Option<&'a PacketBuf>,
    /// Offset in `seg`'s data.
    off: usize,
}

impl<'a> Cursor<'a> {
    fn new(pkt: &'a PacketBuf, mut skip: usize) -> Self {
        let mut seg = Some(pkt);
        while let Some(s) = seg {
            if skip < s.len() {
                break;
            }
            skip -= s.len();
            seg = s.next();
        }
        Cursor { seg, off: skip }
    }

    /// Fills `out` with the next bytes; returns how many there were.
    fn read(&mut self, out: &mut [u8]) -> usize {
        let mut done = 0;
        while done < out.len() {
            let Some(s) = self.seg else { break };
            let d = &s.data()[self.off.min(s.len())..];
            let n = d.len().min(out.len() - done);
            out[done..done + n].copy_from_slice(&d[..n]);
            done += n;
            self.off += n;
            if self.off >= s.len() {
                self.seg = s.next();
                self.off = 0;
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::testutil::{bytes, check, packet, tso, Spec};
    use crate::packet::mempool::host_pool;
    use proptest::prelude::*;

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// Segments `pkt` and checks every segment with etherparse against the original:
    /// sequence numbers contiguous, lengths at most `mss`, IPv4 IDs incrementing, FIN and
    /// PSH only last, CWR only first, the payload reassembled byte for byte.
    fn segment_and_check(spec: &Spec, len: usize, mss: u16, cuts: &[usize], checksum: GsoChecksum) {
        let pool = host_pool(512).unwrap();
        let mut cache = pool.cache(64);
        let data = payload(len);
        let pkt = tso(&mut cache, spec, &data, mss, cuts);
        let mut out = PacketBatch::new(256);
        let mut gso = Gso::new(checksum);
        let n = gso.segment(&pkt, &mut cache, &mut out).unwrap();
        assert_eq!(n, len.div_ceil(mss as usize).max(1));
        assert_eq!(out.len(), n);
        assert_eq!((gso.stats().packets, gso.stats().segments), (1, n as u64));
        let mut got = Vec::new();
        for (i, mut seg) in out.drain().enumerate() {
            if checksum == GsoChecksum::Device {
                let m = *seg.meta();
                let ip = if spec.v6 {
                    PacketMeta::TX_IPV6
                } else {
                    PacketMeta::TX_IPV4
                };
                assert_eq!(m.flags, PacketMeta::TX_TCP_CSUM | ip);
                assert_eq!((m.l2_len, m.l3_len), (14, if spec.v6 { 40 } else { 20 }));
                // What the device does: the sum from the TCP header on, into the field.
                let start = 14 + m.l3_len as usize;
                assert!(crate::packet::csum::complete_partial(&mut seg, start, 16));
            } else {
                assert_eq!(seg.meta().flags, 0);
            }
            let s = check(&bytes(&seg));
            let last = i + 1 == n;
            assert_eq!(s.seq, spec.seq.wrapping_add((i * mss as usize) as u32));
            assert!(s.payload.len() <= mss as usize);
            assert_eq!((s.ack, s.window, s.ts), (spec.ack, spec.window, spec.ts));
            if !spec.v6 {
                assert_eq!(s.ip_id, i as u16, "IPv4 identification increments");
            }
            let want_fin = last && spec.flags & tcp_flags::FIN != 0;
            let want_psh = last && spec.flags & tcp_flags::PSH != 0;
            let want_cwr = i == 0 && spec.flags & tcp_flags::CWR != 0;
            assert_eq!(
                s.flags & tcp_flags::FIN != 0,
                want_fin,
                "FIN on segment {i}"
            );
            assert_eq!(
                s.flags & tcp_flags::PSH != 0,
                want_psh,
                "PSH on segment {i}"
            );
            assert_eq!(
                s.flags & tcp_flags::CWR != 0,
                want_cwr,
                "CWR on segment {i}"
            );
            assert_ne!(s.flags & tcp_flags::ACK, 0);
            got.extend_from_slice(&s.payload);
            cache.free(seg);
        }
        assert_eq!(got, data);
        drop(pkt);
        drop(cache);
        assert_eq!(pool.free_count(), 512, "every buffer back in the pool");
    }

    #[test]
    fn ipv4_and_ipv6_at_mss_536_and_1448_with_odd_lengths() {
        let flags = tcp_flags::PSH | tcp_flags::FIN | tcp_flags::CWR;
        for v6 in [false, true] {
            for mss in [536u16, 1448] {
                for len in [1, 535, 536, 537, 1447, 1449, 4001, 2 * 1448 + 1] {
                    let spec = Spec {
                        v6,
                        flags,
                        ..Spec::default()
                    };
                    segment_and_check(&spec, len, mss, &[], GsoChecksum::Software);
                }
            }
        }
    }

    /// 64 KiB of payload (and the largest an IPv4 datagram could carry in one piece, and
    /// an odd length) as a chain of full buffers, cut at MSS 536 and 1448.
    #[test]
    fn a_64k_payload_from_a_chain() {
        for v6 in [false, true] {
            for len in [65536, 65495, 65535 - 7] {
                for mss in [536u16, 1448] {
                    let spec = Spec {
                        v6,
                        flags: tcp_flags::PSH,
                        ts: None,
                        seq: u32::MAX - 3000,
                        ..Spec::default()
                    };
                    segment_and_check(&spec, len, mss, &[], GsoChecksum::Software);
                }
            }
        }
    }

    /// A chain cut anywhere, the headers across buffers too.
    #[test]
    fn chains_cut_inside_the_headers() {
        for cuts in [&[7usize, 30, 5][..], &[60, 1], &[1]] {
            let spec = Spec {
                flags: tcp_flags::FIN,
                ..Spec::default()
            };
            segment_and_check(&spec, 3000, 1448, cuts, GsoChecksum::Software);
            let spec = Spec {
                v6: true,
                ..Spec::default()
            };
            segment_and_check(&spec, 3001, 536, cuts, GsoChecksum::Device);
        }
    }

    #[test]
    fn the_device_finishes_the_tcp_checksum() {
        for v6 in [false, true] {
            let spec = Spec {
                v6,
                flags: tcp_flags::PSH,
                ..Spec::default()
            };
            segment_and_check(&spec, 10_000, 1448, &[], GsoChecksum::Device);
        }
    }

    /// A segment larger than a buffer's data room goes out as a chain (a jumbo MSS).
    #[test]
    fn a_jumbo_mss_makes_chained_segments() {
        let spec = Spec::default();
        segment_and_check(&spec, 20_000, 8960, &[], GsoChecksum::Software);
    }

    /// No payload: the headers go out once, as they were (with their lengths right).
    #[test]
    fn no_payload_is_one_segment() {
        segment_and_check(
            &Spec {
                flags: tcp_flags::FIN,
                ..Spec::default()
            },
            0,
            536,
            &[],
            GsoChecksum::Software,
        );
    }

    /// What a refusal must be.
    type Expect = fn(&GsoError) -> bool;
    /// A change to a good TSO request, and the refusal it must get.
    type Case<'a> = (&'a dyn Fn(&mut PacketBuf), Expect);

    /// Each refusal: the reason, its counter, and nothing taken or appended.
    #[test]
    fn each_validation_error_is_counted_and_takes_nothing() {
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(16);
        let spec = Spec::default();
        let data = payload(3000);
        let mut gso = Gso::default();
        let mut out = PacketBatch::new(8);
        let try_one = |gso: &mut Gso,
                       cache: &mut MempoolCache,
                       out: &mut PacketBatch,
                       f: &dyn Fn(&mut PacketBuf)| {
            let mut cache2 = pool.cache(16);
            let mut p = tso(&mut cache2, &spec, &data, 1448, &[]);
            f(&mut p);
            let r = gso.segment(&p, cache, out);
            assert!(out.is_empty());
            drop(p);
            r
        };
        let cases: Vec<Case> = vec![
            (&|p| p.meta_mut().flags &= !PacketMeta::TX_TSO, |e| {
                matches!(e, GsoError::NotRequested)
            }),
            (&|p| p.meta_mut().mss = 0, |e| {
                matches!(e, GsoError::ZeroMss)
            }),
            (&|p| p.meta_mut().l2_len = 12, |e| {
                matches!(e, GsoError::ShortL2 { l2_len: 12 })
            }),
            (
                &|p| {
                    drop(p.take_next());
                    p.set_len(60);
                },
                |e| matches!(e, GsoError::HeadersBeyondPacket { pkt_len: 60, .. }),
            ),
            (
                &|p| {
                    p.data_mut()[12] = 0x08;
                    p.data_mut()[13] = 0x06
                },
                |e| matches!(e, GsoError::NotIp { ethertype: 0x0806 }),
            ),
            (&|p| p.data_mut()[14] = 0x65, |e| {
                matches!(e, GsoError::IpVersionMismatch { version: 6, .. })
            }),
            (
                &|p| p.meta_mut().flags = PacketMeta::TX_TSO | PacketMeta::TX_IPV6,
                |e| matches!(e, GsoError::IpVersionMismatch { ipv6: true, .. }),
            ),
            (&|p| p.meta_mut().l3_len = 24, |e| {
                matches!(
                    e,
                    GsoError::Ipv4HeaderLength {
                        ihl_bytes: 20,
                        l3_len: 24
                    }
                )
            }),
            (&|p| p.meta_mut().l3_len = 10, |e| {
                matches!(e, GsoError::Ipv4HeaderLength { .. })
            }),
            (&|p| p.data_mut()[23] = 17, |e| {
                matches!(e, GsoError::NotTcp { protocol: 17 })
            }),
            (&|p| p.meta_mut().l4_len = 20, |e| {
                matches!(
                    e,
                    GsoError::TcpHeaderLength {
                        doff_bytes: 32,
                        l4_len: 20
                    }
                )
            }),
            (&|p| p.meta_mut().l4_len = 8, |e| {
                matches!(e, GsoError::TcpHeaderLength { .. })
            }),
            (&|p| p.meta_mut().mss = 65500, |e| {
                matches!(
                    e,
                    GsoError::MssTooLarge {
                        mss: 65500,
                        l3_l4: 52
                    }
                )
            }),
            (&|p| p.meta_mut().mss = 100, |e| {
                matches!(
                    e,
                    GsoError::NoRoom {
                        needed: 30,
                        room: 8
                    }
                )
            }),
        ];
        let free = pool.free_count() + cache.len();
        for (i, (f, want)) in cases.iter().enumerate() {
            let e = try_one(&mut gso, &mut cache, &mut out, *f).unwrap_err();
            assert!(want(&e), "case {i}: {e:?}");
            assert!(!e.to_string().is_empty());
            assert_eq!(
                pool.free_count() + cache.len(),
                free,
                "case {i} took buffers"
            );
        }
        let s = *gso.stats();
        assert_eq!(s.dropped(), cases.len() as u64);
        assert_eq!(
            (
                s.not_requested,
                s.zero_mss,
                s.short_l2,
                s.headers_beyond_packet,
                s.not_ip
            ),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(
            (
                s.ip_version_mismatch,
                s.ipv4_header_length,
                s.not_tcp,
                s.tcp_header_length
            ),
            (2, 2, 1, 2)
        );
        assert_eq!((s.mss_too_large, s.no_room, s.packets), (1, 1, 0));

        // IPv6 with an extension header's worth of l3_len.
        let mut cache2 = pool.cache(16);
        let mut p = tso(
            &mut cache2,
            &Spec {
                v6: true,
                ..Spec::default()
            },
            &data,
            1448,
            &[],
        );
        p.meta_mut().l3_len = 48;
        assert_eq!(
            gso.segment(&p, &mut cache, &mut out),
            Err(GsoError::Ipv6HeaderLength { l3_len: 48 })
        );
        assert_eq!(gso.stats().ipv6_header_length, 1);
    }

    /// The pool runs dry half-way: every buffer taken goes back, nothing is appended,
    /// the drop is counted; with buffers back, the same packet goes through.
    #[test]
    fn a_dry_pool_drops_the_whole_packet() {
        let pool = host_pool(24).unwrap();
        let mut cache = pool.cache(8);
        let data = payload(30 * 536);
        let pkt = tso(&mut cache, &Spec::default(), &data, 536, &[]);
        let held = pkt.nb_segs();
        let mut out = PacketBatch::new(64);
        let mut gso = Gso::default();
        let e = gso.segment(&pkt, &mut cache, &mut out).unwrap_err();
        assert_eq!(
            e,
            GsoError::PoolEmpty {
                needed: 30,
                got: 24 - held
            }
        );
        assert!(out.is_empty());
        assert_eq!(pool.free_count() + cache.len(), 24 - held);
        assert_eq!(gso.stats().pool_empty, 1);
        // MSS 1448: 12 segments fit what is left.
        let mut pkt = pkt;
        pkt.meta_mut().mss = 1448;
        assert_eq!(gso.segment(&pkt, &mut cache, &mut out), Ok(12));
    }

    proptest! {
        /// Any bytes and any metadata: an error or segments, never a panic, never a
        /// buffer lost.
        #[test]
        fn arbitrary_packets_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            l2 in 0u8..40, l3 in 0u8..80, l4 in 0u8..80, mss in 0u16..300,
            flags in any::<u32>(),
            cut in 1usize..100,
        ) {
            let pool = host_pool(64).unwrap();
            let mut cache = pool.cache(8);
            let mut data = data;
            data.push(0);
            let mut p = packet(&mut cache, &data, &[cut]);
            *p.meta_mut() = PacketMeta { flags, l2_len: l2, l3_len: l3, l4_len: l4, mss, ..PacketMeta::default() };
            let mut out = PacketBatch::new(16);
            let mut gso = Gso::default();
            if let Ok(n) = gso.segment(&p, &mut cache, &mut out) {
                prop_assert_eq!(out.len(), n);
            }
            out.free_into(&mut cache);
            drop(p);
            drop(cache);
            prop_assert_eq!(pool.free_count(), 64);
        }
    }
}
