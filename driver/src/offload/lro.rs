//! Software LRO, in the manner of FreeBSD's `tcp_lro.c`: within one receive burst,
//! in-order TCP segments of one flow are merged into one frame (a chain: the first
//! segment's buffers, then each later segment's payload), so the stack above handles one
//! large segment instead of many. State is per queue (one [`Lro`] per RX queue) and nothing
//! is held across bursts: every flow is flushed at the end of [`Lro::input`].
//!
//! What merges, as `tcp_lro.c` decides it:
//! - TCP over IPv4 without options or fragmentation (`tcp_lro_low_level_parser` refuses IHL
//!   other than 5 and MF or a fragment offset), or over IPv6 with TCP as the fixed header's
//!   next header (no extension headers); Ethernet II, optionally one 802.1Q tag (the VLAN
//!   ID is part of the flow, as `tcp_lro.c` keeps `vlan_id`); no unspecified address.
//! - Flags ACK or ACK|PSH only (`tcp_lro_condense` pushes anything with other flags up
//!   unmerged: SYN, FIN, RST, URG, and here also ECE and CWR, whose congestion signal
//!   belongs to the segment that carries it, RFC 3168 §6.1) and a payload (a pure ACK or
//!   window update passes through: merging it would hide a duplicate ACK, RFC 5681 §2).
//! - The same addresses, ports and IP header fields a merged frame keeps once (IPv4 TOS,
//!   TTL and DF; IPv6 traffic class, flow label and hop limit), the sequence number the
//!   flow expects next, an acknowledgment not going backwards, the same TCP options except
//!   the timestamp values, and a TSval not going backwards (RFC 7323 §5.3; `tcp_lro.c`
//!   compares `TSTMP_GT`).
//! - Checksums good: the IPv4 header checksum and the TCP checksum trusted where the
//!   device says good (`RX_IP_CSUM_GOOD`, `RX_L4_CSUM_GOOD`), refused where it says bad,
//!   verified here otherwise (as `tcp_lro_rx_ipv4` checks the header itself when
//!   `CSUM_IP_CHECKED` is missing).
//!
//! A segment that cannot join its flow (out of order, a retransmission, other flags, an
//! option change) first flushes the flow, then passes through unmerged, in order, so the
//! stack sees the merged data before it. Frames keep their order in the burst: a merged
//! frame takes its first segment's place.
//!
//! A merged frame: the first segment's Ethernet and IP headers with the IPv4 total length
//! or IPv6 payload length of the whole and a new IPv4 header checksum; the TCP header of the
//! last segment (its acknowledgment, window and timestamps, as `tcp_lro_update_checksum`
//! writes `ack_seq`, `window`, `tsval`, `tsecr`) with the first's sequence number and PSH
//! if any segment had it; a TCP checksum recomputed from the segments' payload sums (each
//! known without a pass over its payload when the device vouched for its checksum, from the
//! checksum field as `tcp_lro_rx_csum_data` derives it), so the frame verifies as received;
//! metadata `RX_LRO`, `mss` the largest payload merged, `segs` the count, and
//! `RX_L4_CSUM_GOOD` (and `RX_IP_CSUM_GOOD` on IPv4), as `tcp_flush_out_entry` marks its
//! frames `CSUM_DATA_VALID`. A flow that got no second segment is delivered with its bytes
//! untouched; every eligible segment, merged or not, leaves with those verdicts, and one
//! found bad here with `RX_L4_CSUM_BAD` (or `RX_IP_CSUM_BAD`).

use super::{
    be16, be32, put16, put32, seq_ge, tcp_flags, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN,
    ETH_HLEN, IPPROTO_TCP, IPV4_HLEN, IPV6_HLEN, TCP_HLEN, TCP_MAX_HLEN,
};
use crate::packet::csum;
use crate::packet::mempool::{MempoolCache, PacketBuf, PacketMeta};
use crate::ring::PacketBatch;

/// The most header bytes the parser reads: Ethernet with a VLAN tag, IPv6, the longest TCP
/// header (IPv4 without options is shorter).
pub const MAX_HDR: usize = ETH_HLEN + 4 + IPV6_HLEN + TCP_MAX_HLEN;

/// The default flow table size (`tcp_lro.c`'s `TCP_LRO_ENTRIES` is 8).
pub const DEFAULT_ENTRIES: usize = 8;

/// Why a received frame is not a candidate for merging (it passes through unmerged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotEligible {
    /// Not TCP over IPv4 or IPv6 (or not Ethernet II, or more than one VLAN tag).
    #[error("not TCP over IPv4 or IPv6")]
    NotTcp,
    /// IPv4 with options (IHL above 5).
    #[error("IPv4 header with options")]
    IpOptions,
    /// An IPv4 fragment (MF or a fragment offset).
    #[error("IPv4 fragment")]
    Fragment,
    /// IPv6 with extension headers before TCP.
    #[error("IPv6 extension headers")]
    Ipv6Extension,
    /// Lengths that do not match the frame, a bad version, a data offset below 5, an
    /// unspecified address.
    #[error("malformed headers")]
    Malformed,
    /// Flags other than ACK and PSH, or no ACK.
    #[error("TCP flags other than ACK|PSH")]
    Flags,
    /// A checksum the device reported bad, or that failed here.
    #[error("bad IPv4 header or TCP checksum")]
    BadChecksum,
    /// No payload (a pure ACK or window update).
    #[error("no TCP payload")]
    NoPayload,
    /// A TCP option list that does not parse (RFC 9293 §3.2: a length below 2 or past the
    /// header).
    #[error("malformed TCP options")]
    BadOptions,
    /// Already coalesced (by the device: virtio's GUEST_TSO).
    #[error("already coalesced by the device")]
    AlreadyCoalesced,
}

/// LRO counters, per queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LroStats {
    /// Segments merged into an earlier one (each is a frame fewer for the stack).
    pub merged: u64,
    /// Flows flushed: frames delivered from the flow table (merged or not).
    pub flushed: u64,
    /// Of those, frames of two segments or more.
    pub coalesced: u64,
    /// [`NotEligible::NotTcp`].
    pub not_tcp: u64,
    /// [`NotEligible::IpOptions`].
    pub ip_options: u64,
    /// [`NotEligible::Fragment`].
    pub fragment: u64,
    /// [`NotEligible::Ipv6Extension`].
    pub ipv6_extension: u64,
    /// [`NotEligible::Malformed`].
    pub malformed: u64,
    /// [`NotEligible::Flags`].
    pub flags: u64,
    /// [`NotEligible::BadChecksum`].
    pub bad_checksum: u64,
    /// [`NotEligible::NoPayload`].
    pub no_payload: u64,
    /// [`NotEligible::BadOptions`].
    pub bad_options: u64,
    /// [`NotEligible::AlreadyCoalesced`].
    pub already_coalesced: u64,
    /// Segments of a flow in the table that did not follow it: a gap, a retransmission, an
    /// acknowledgment going backwards (the flow is flushed, the segment passes).
    pub out_of_order: u64,
    /// Segments whose TCP options (besides timestamp values) or header lengths changed.
    pub option_change: u64,
    /// Segments whose IP header fields (TOS, TTL, DF, traffic class, flow label, hop
    /// limit) changed.
    pub header_change: u64,
    /// Segments whose TSval went backwards.
    pub ts_backwards: u64,
    /// Segments that would have made the frame longer than an IP length holds (the flow
    /// is flushed and the segment starts a new one).
    pub size_limit: u64,
    /// Flows flushed early to make room for a new one in a full table.
    pub evicted: u64,
}

impl LroStats {
    fn count(&mut self, r: NotEligible) {
        let c = match r {
            NotEligible::NotTcp => &mut self.not_tcp,
            NotEligible::IpOptions => &mut self.ip_options,
            NotEligible::Fragment => &mut self.fragment,
            NotEligible::Ipv6Extension => &mut self.ipv6_extension,
            NotEligible::Malformed => &mut self.malformed,
            NotEligible::Flags => &mut self.flags,
            NotEligible::BadChecksum => &mut self.bad_checksum,
            NotEligible::NoPayload => &mut self.no_payload,
            NotEligible::BadOptions => &mut self.bad_options,
            NotEligible::AlreadyCoalesced => &mut self.already_coalesced,
        };
        *c += 1;
    }

    /// Frames that were not candidates, every reason.
    pub fn not_eligible(&self) -> u64 {
        self.not_tcp
            + self.ip_options
            + self.fragment
            + self.ipv6_extension
            + self.malformed
            + self.flags
            + self.bad_checksum
            + self.no_payload
            + self.bad_options
            + self.already_coalesced
    }
}

impl std::ops::AddAssign for LroStats {
    /// Sums another queue's counters into these (a port's totals).
    fn add_assign(&mut self, o: LroStats) {
        self.merged += o.merged;
        self.flushed += o.flushed;
        self.coalesced += o.coalesced;
        self.not_tcp += o.not_tcp;
        self.ip_options += o.ip_options;
        self.fragment += o.fragment;
        self.ipv6_extension += o.ipv6_extension;
        self.malformed += o.malformed;
        self.flags += o.flags;
        self.bad_checksum += o.bad_checksum;
        self.no_payload += o.no_payload;
        self.bad_options += o.bad_options;
        self.already_coalesced += o.already_coalesced;
        self.out_of_order += o.out_of_order;
        self.option_change += o.option_change;
        self.header_change += o.header_change;
        self.ts_backwards += o.ts_backwards;
        self.size_limit += o.size_limit;
        self.evicted += o.evicted;
    }
}

/// What identifies a flow: `tcp_lro.c`'s `lro_parser.data` (addresses, ports, VLAN ID).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowKey {
    /// IPv6 (else IPv4, the addresses in the first 4 bytes).
    pub ipv6: bool,
    /// The 802.1Q VLAN ID, if tagged.
    pub vlan: Option<u16>,
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

/// A received TCP segment's headers, as the parser found them.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    /// The flow.
    pub key: FlowKey,
    /// Ethernet header bytes (14, or 18 with a VLAN tag).
    pub l2_len: usize,
    /// IP header bytes (20 or 40).
    pub l3_len: usize,
    /// TCP header bytes, options included.
    pub l4_len: usize,
    /// Where the IP datagram ends in the frame (Ethernet padding follows).
    pub ip_end: usize,
    /// TCP payload bytes.
    pub payload_len: usize,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// TCP flags (byte 13).
    pub flags: u8,
    /// Where the timestamp option's kind byte is in the TCP options (RFC 7323 §3.2), and
    /// its TSval.
    pub ts: Option<(usize, u32)>,
    /// IP header fields a merged frame keeps once: IPv4 TOS, TTL and the DF byte; IPv6
    /// version/traffic class/flow label word and hop limit.
    pub ip_fixed: [u8; 5],
}

/// Parses the first bytes of a frame (`hdr`: up to [`MAX_HDR`] of them, or all if shorter)
/// of `frame_len` bytes, received with metadata flags `rx_flags`. Checks everything
/// `tcp_lro.c` checks before merging but the TCP checksum (which needs the payload): the
/// IPv4 header checksum is verified here unless the device vouched for it. On a frame that
/// is TCP but not eligible, the error carries the flow, so its flow can be flushed.
pub fn parse(
    hdr: &[u8],
    frame_len: usize,
    rx_flags: u32,
) -> Result<Segment, (NotEligible, Option<FlowKey>)> {
    let no = |r| Err((r, None));
    if rx_flags & PacketMeta::RX_LRO != 0 {
        return no(NotEligible::AlreadyCoalesced);
    }
    if hdr.len() < ETH_HLEN || frame_len < hdr.len() {
        return no(NotEligible::NotTcp);
    }
    let mut key = FlowKey::default();
    let mut l2 = ETH_HLEN;
    let mut ethertype = be16(hdr, 12);
    if ethertype == ETHERTYPE_VLAN {
        if hdr.len() < ETH_HLEN + 4 {
            return no(NotEligible::NotTcp);
        }
        key.vlan = Some(be16(hdr, 14) & 0x0fff);
        ethertype = be16(hdr, 16);
        l2 += 4;
    }
    let (l3, protocol, ip_end) = match ethertype {
        ETHERTYPE_IPV4 => {
            if hdr.len() < l2 + IPV4_HLEN {
                return no(NotEligible::Malformed);
            }
            let ip = &hdr[l2..];
            if ip[0] >> 4 != 4 {
                return no(NotEligible::Malformed);
            }
            let ihl = usize::from(ip[0] & 0xf) * 4;
            if ihl != IPV4_HLEN {
                return no(if ihl < IPV4_HLEN {
                    NotEligible::Malformed
                } else {
                    NotEligible::IpOptions
                });
            }
            // RFC 791 §3.1: MF (bit 2 of the flags) or a fragment offset.
            if be16(ip, 6) & 0x3fff != 0 {
                return no(NotEligible::Fragment);
            }
            key.src[..4].copy_from_slice(&ip[12..16]);
            key.dst[..4].copy_from_slice(&ip[16..20]);
            if key.src[..4] == [0; 4] || key.dst[..4] == [0; 4] {
                return no(NotEligible::Malformed);
            }
            let total = usize::from(be16(ip, 2));
            (IPV4_HLEN, ip[9], l2 + total)
        }
        ETHERTYPE_IPV6 => {
            if hdr.len() < l2 + IPV6_HLEN {
                return no(NotEligible::Malformed);
            }
            let ip = &hdr[l2..];
            if ip[0] >> 4 != 6 {
                return no(NotEligible::Malformed);
            }
            key.ipv6 = true;
            key.src.copy_from_slice(&ip[8..24]);
            key.dst.copy_from_slice(&ip[24..40]);
            if key.src == [0; 16] || key.dst == [0; 16] {
                return no(NotEligible::Malformed);
            }
            let plen = usize::from(be16(ip, 4));
            (IPV6_HLEN, ip[6], l2 + IPV6_HLEN + plen)
        }
        _ => return no(NotEligible::NotTcp),
    };
    if protocol != IPPROTO_TCP {
        // IPv6 next headers that are extension headers (RFC 8200 §4) before TCP.
        let ext = key.ipv6 && matches!(protocol, 0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140);
        return no(if ext {
            NotEligible::Ipv6Extension
        } else {
            NotEligible::NotTcp
        });
    }
    let t = l2 + l3;
    if hdr.len() < t + TCP_HLEN {
        return no(NotEligible::Malformed);
    }
    let tcp = &hdr[t..];
    key.sport = be16(tcp, 0);
    key.dport = be16(tcp, 2);
    let bad = |r| Err((r, Some(key)));
    let l4 = usize::from(tcp[12] >> 4) * 4;
    // The datagram must hold its headers and fit the frame (padding may follow it).
    if l4 < TCP_HLEN || hdr.len() < t + l4 || ip_end < t + l4 || ip_end > frame_len {
        return bad(NotEligible::Malformed);
    }
    let flags = tcp[13];
    if flags & !(tcp_flags::ACK | tcp_flags::PSH) != 0 || flags & tcp_flags::ACK == 0 {
        return bad(NotEligible::Flags);
    }
    let ts = match timestamp_option(&tcp[TCP_HLEN..l4]) {
        Ok(ts) => ts.map(|at| (at, be32(tcp, TCP_HLEN + at + 2))),
        Err(()) => return bad(NotEligible::BadOptions),
    };
    let payload_len = ip_end - t - l4;
    if payload_len == 0 {
        return bad(NotEligible::NoPayload);
    }
    let ip = &hdr[l2..];
    // The IPv4 header checksum last: only a segment that would be merged needs it (the
    // merged frame gets a new header), and a frame passed up as it came is the stack's to
    // check. A flood of UDP or SYNs through the engine then costs no sum a frame.
    if !key.ipv6
        && (rx_flags & PacketMeta::RX_IP_CSUM_BAD != 0
            || (rx_flags & PacketMeta::RX_IP_CSUM_GOOD == 0
                && csum::ipv4_header_checksum(&ip[..IPV4_HLEN]) != be16(ip, 10)))
    {
        return bad(NotEligible::BadChecksum);
    }
    let ip_fixed = if key.ipv6 {
        [ip[0], ip[1], ip[2], ip[3], ip[7]]
    } else {
        // TOS, the flags byte (DF; MF and the offset are 0 here), TTL.
        [ip[1], ip[6], ip[8], 0, 0]
    };
    Ok(Segment {
        key,
        l2_len: l2,
        l3_len: l3,
        l4_len: l4,
        ip_end,
        payload_len,
        seq: be32(tcp, 4),
        ack: be32(tcp, 8),
        flags,
        ts,
        ip_fixed,
    })
}

/// Finds the timestamp option (kind 8, length 10, RFC 7323 §3.2) in a TCP option list:
/// its offset, if any; an error for a list that does not parse (RFC 9293 §3.2: kinds 0
/// and 1 are one byte, every other has a length byte of at least 2 that stays within the
/// list).
fn timestamp_option(opts: &[u8]) -> Result<Option<usize>, ()> {
    let mut i = 0;
    let mut ts = None;
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let len = usize::from(*opts.get(i + 1).ok_or(())?);
                if len < 2 || i + len > opts.len() {
                    return Err(());
                }
                if kind == 8 {
                    if len != 10 || ts.is_some() {
                        return Err(());
                    }
                    ts = Some(i);
                }
                i += len;
            }
        }
    }
    Ok(ts)
}

/// Reads the first bytes of `pkt` (up to [`MAX_HDR`]) and parses them: see [`parse`].
pub fn parse_packet(pkt: &PacketBuf) -> Result<Segment, (NotEligible, Option<FlowKey>)> {
    let len = pkt.pkt_len();
    let n = len.min(MAX_HDR);
    // The headers in the first buffer (every frame but a chain split inside them): parsed
    // in place, not copied out.
    if let Some(first) = pkt.data().get(..n) {
        return parse(first, len, pkt.meta().flags);
    }
    let mut hdr = [0u8; MAX_HDR];
    if !csum::read_at(pkt, 0, &mut hdr[..n]) {
        return Err((NotEligible::Malformed, None));
    }
    parse(&hdr[..n], len, pkt.meta().flags)
}

/// One flow being merged.
#[derive(Clone, Copy, Debug)]
struct Flow {
    key: FlowKey,
    /// Place of the first segment (the frame being built) in the burst.
    slot: usize,
    /// When the flow started (for evicting the oldest from a full table).
    born: u64,
    l2_len: usize,
    l3_len: usize,
    l4_len: usize,
    ip_fixed: [u8; 5],
    /// The first segment's TCP options with the timestamp values zeroed: what every later
    /// segment's must equal.
    opts: [u8; TCP_MAX_HLEN - TCP_HLEN],
    ts_at: Option<usize>,
    first_seq: u32,
    next_seq: u32,
    ack: u32,
    tsval: u32,
    /// The last segment's TCP header: acknowledgment, window, timestamps to deliver.
    last_tcp: [u8; TCP_MAX_HLEN],
    psh: bool,
    segs: u16,
    max_payload: usize,
    payload_len: usize,
    /// Ones'-complement sum of the payload, in order (RFC 1071).
    payload_sum: u64,
    /// A segment's checksum was left partial (`RX_L4_CSUM_PARTIAL`): the sums derived from
    /// the fields are not the payload's, so the merged frame's is not a checksum either,
    /// and it is flagged so.
    partial: bool,
}

/// A per-queue software LRO engine: a small flow table and its counters. Its working
/// space grows to the largest burst it has seen, once; after that a burst allocates
/// nothing.
#[derive(Debug)]
pub struct Lro {
    flows: Vec<Option<Flow>>,
    stats: LroStats,
    /// The burst being worked on, frames in their places (a merged segment leaves a hole).
    work: Vec<Option<PacketBuf>>,
    clock: u64,
}

impl Default for Lro {
    fn default() -> Self {
        Lro::new(DEFAULT_ENTRIES)
    }
}

impl Lro {
    /// An engine with a table of `entries` flows (at least 1, at most 64).
    pub fn new(entries: usize) -> Self {
        Lro {
            flows: vec![None; entries.clamp(1, 64)],
            stats: LroStats::default(),
            work: Vec::new(),
            clock: 0,
        }
    }

    /// The counters.
    pub fn stats(&self) -> &LroStats {
        &self.stats
    }

    /// Merges what it can of the burst in `batch`, in place: segments merged into an
    /// earlier one of their flow leave the batch (their buffers now in that frame's
    /// chain), every other frame stays, in order. Every flow is flushed before this
    /// returns. Buffers freed on the way (headers of merged segments) go to `cache`.
    pub fn input(&mut self, batch: &mut PacketBatch, cache: &mut MempoolCache) {
        self.work.clear();
        self.work.extend(batch.drain().map(Some));
        for i in 0..self.work.len() {
            let Some(pkt) = self.work[i].take() else {
                continue;
            };
            self.work[i] = self.one(i, pkt, cache);
        }
        for f in 0..self.flows.len() {
            self.flush(f);
        }
        for pkt in self.work.drain(..).flatten() {
            // The batch gave these: there is room for each.
            if let Err(pkt) = batch.push(pkt) {
                cache.free(pkt);
            }
        }
    }

    /// Handles the frame at place `i`; returns what stays there (None: merged away).
    fn one(&mut self, i: usize, mut pkt: PacketBuf, cache: &mut MempoolCache) -> Option<PacketBuf> {
        let seg = match parse_packet(&pkt) {
            Ok(seg) => seg,
            Err((reason, key)) => {
                self.stats.count(reason);
                if reason == NotEligible::BadChecksum {
                    mark_bad(&mut pkt);
                }
                if let Some(f) = key.and_then(|k| self.find(&k)) {
                    self.flush(f);
                }
                return Some(pkt);
            }
        };
        let Some(sum) = payload_sum(&pkt, &seg) else {
            self.stats.count(NotEligible::BadChecksum);
            pkt.meta_mut().flags |= PacketMeta::RX_L4_CSUM_BAD;
            if let Some(f) = self.find(&seg.key) {
                self.flush(f);
            }
            return Some(pkt);
        };
        // Checked (or vouched for by the device): whatever becomes of the segment, the
        // stack need not check it again.
        pkt.meta_mut().flags |= PacketMeta::RX_L4_CSUM_GOOD
            | if seg.key.ipv6 {
                0
            } else {
                PacketMeta::RX_IP_CSUM_GOOD
            };
        let Some(f) = self.find(&seg.key) else {
            self.start(i, pkt, &seg, sum, cache);
            return self.work[i].take();
        };
        let Some(flow) = self.flows[f] else {
            return Some(pkt);
        };
        match self.mergeable(&flow, &pkt, &seg) {
            Ok(()) => {
                self.merge(f, pkt, &seg, sum, cache);
                None
            }
            Err(Refusal::SizeLimit) => {
                self.stats.size_limit += 1;
                self.flush(f);
                self.start(i, pkt, &seg, sum, cache);
                self.work[i].take()
            }
            Err(r) => {
                *match r {
                    Refusal::OutOfOrder => &mut self.stats.out_of_order,
                    Refusal::OptionChange => &mut self.stats.option_change,
                    Refusal::HeaderChange => &mut self.stats.header_change,
                    Refusal::TsBackwards => &mut self.stats.ts_backwards,
                    Refusal::SizeLimit => &mut self.stats.size_limit,
                } += 1;
                self.flush(f);
                Some(pkt)
            }
        }
    }

    fn find(&self, key: &FlowKey) -> Option<usize> {
        self.flows
            .iter()
            .position(|f| f.as_ref().is_some_and(|f| f.key == *key))
    }

    /// Starts a flow with `pkt` at place `i` (in a free entry, else the oldest's).
    fn start(
        &mut self,
        i: usize,
        pkt: PacketBuf,
        seg: &Segment,
        sum: u16,
        cache: &mut MempoolCache,
    ) {
        let f = match self.flows.iter().position(Option::is_none) {
            Some(f) => f,
            None => {
                let oldest = (0..self.flows.len())
                    .min_by_key(|&f| self.flows[f].map_or(0, |fl| fl.born))
                    .unwrap_or(0);
                self.stats.evicted += 1;
                self.flush(oldest);
                oldest
            }
        };
        // Ethernet padding after the datagram is not part of the frame we build on.
        let pkt = truncate(pkt, seg.ip_end, cache);
        let t = seg.l2_len + seg.l3_len;
        let mut tcp = [0u8; TCP_MAX_HLEN];
        let mut opts = [0u8; TCP_MAX_HLEN - TCP_HLEN];
        if !csum::read_at(&pkt, t, &mut tcp[..seg.l4_len]) {
            self.work[i] = Some(pkt);
            return;
        }
        opts[..seg.l4_len - TCP_HLEN].copy_from_slice(&tcp[TCP_HLEN..seg.l4_len]);
        if let Some((at, _)) = seg.ts {
            opts[at + 2..at + 10].fill(0);
        }
        self.clock += 1;
        self.flows[f] = Some(Flow {
            key: seg.key,
            slot: i,
            born: self.clock,
            l2_len: seg.l2_len,
            l3_len: seg.l3_len,
            l4_len: seg.l4_len,
            ip_fixed: seg.ip_fixed,
            opts,
            ts_at: seg.ts.map(|(at, _)| at),
            first_seq: seg.seq,
            next_seq: seg.seq.wrapping_add(seg.payload_len as u32),
            ack: seg.ack,
            tsval: seg.ts.map_or(0, |(_, v)| v),
            last_tcp: tcp,
            psh: seg.flags & tcp_flags::PSH != 0,
            segs: 1,
            max_payload: seg.payload_len,
            payload_len: seg.payload_len,
            payload_sum: u64::from(sum),
            partial: pkt.meta().flags & PacketMeta::RX_L4_CSUM_PARTIAL != 0,
        });
        self.work[i] = Some(pkt);
    }

    /// Whether `seg` continues `flow`.
    fn mergeable(&self, flow: &Flow, pkt: &PacketBuf, seg: &Segment) -> Result<(), Refusal> {
        if seg.l2_len != flow.l2_len || seg.l3_len != flow.l3_len || seg.l4_len != flow.l4_len {
            return Err(Refusal::OptionChange);
        }
        if seg.ip_fixed != flow.ip_fixed {
            return Err(Refusal::HeaderChange);
        }
        let mut opts = [0u8; TCP_MAX_HLEN - TCP_HLEN];
        let olen = seg.l4_len - TCP_HLEN;
        if !csum::read_at(pkt, seg.l2_len + seg.l3_len + TCP_HLEN, &mut opts[..olen]) {
            return Err(Refusal::OptionChange);
        }
        if let Some((at, _)) = seg.ts {
            opts[at + 2..at + 10].fill(0);
        }
        if seg.ts.map(|(at, _)| at) != flow.ts_at || opts[..olen] != flow.opts[..olen] {
            return Err(Refusal::OptionChange);
        }
        // RFC 9293 §3.4 sequence space: exactly the next byte, and the acknowledgment
        // never older than the flow's (a stale ACK reordered behind a newer one).
        if seg.seq != flow.next_seq || !seq_ge(seg.ack, flow.ack) {
            return Err(Refusal::OutOfOrder);
        }
        if let Some((_, tsval)) = seg.ts {
            if !seq_ge(tsval, flow.tsval) {
                return Err(Refusal::TsBackwards);
            }
        }
        // The merged frame's IPv4 total length or IPv6 payload length is 16 bits.
        let l3_l4 = if flow.key.ipv6 { 0 } else { flow.l3_len } + flow.l4_len;
        if l3_l4 + flow.payload_len + seg.payload_len > usize::from(u16::MAX)
            || flow.segs == u16::MAX
        {
            return Err(Refusal::SizeLimit);
        }
        Ok(())
    }

    /// Appends `pkt`'s payload to flow `f`'s frame.
    fn merge(
        &mut self,
        f: usize,
        pkt: PacketBuf,
        seg: &Segment,
        sum: u16,
        cache: &mut MempoolCache,
    ) {
        let Some(flow) = self.flows[f].as_mut() else {
            cache.free(pkt);
            return;
        };
        let mut tcp = [0u8; TCP_MAX_HLEN];
        let t = seg.l2_len + seg.l3_len;
        let _ = csum::read_at(&pkt, t, &mut tcp[..seg.l4_len]);
        flow.partial |= pkt.meta().flags & PacketMeta::RX_L4_CSUM_PARTIAL != 0;
        let pkt = truncate(pkt, seg.ip_end, cache);
        let Some(payload) = strip_front(pkt, t + seg.l4_len, cache) else {
            return;
        };
        let Some(head) = self.work.get_mut(flow.slot).and_then(Option::as_mut) else {
            cache.free(payload);
            return;
        };
        last_mut(head).set_next(Some(payload));
        // RFC 1071 §2(B): a sum of bytes that start at an odd offset is the byte-swapped
        // sum of the same bytes at an even one.
        flow.payload_sum += u64::from(if flow.payload_len % 2 == 1 {
            sum.swap_bytes()
        } else {
            sum
        });
        flow.payload_len += seg.payload_len;
        flow.max_payload = flow.max_payload.max(seg.payload_len);
        flow.next_seq = seg.seq.wrapping_add(seg.payload_len as u32);
        flow.ack = seg.ack;
        if let Some((_, v)) = seg.ts {
            flow.tsval = v;
        }
        flow.last_tcp = tcp;
        flow.psh |= seg.flags & tcp_flags::PSH != 0;
        flow.segs += 1;
        self.stats.merged += 1;
    }

    /// Delivers flow `f`'s frame (its headers made whole if it merged anything) and frees
    /// the entry.
    fn flush(&mut self, f: usize) {
        let Some(flow) = self.flows.get_mut(f).and_then(Option::take) else {
            return;
        };
        self.stats.flushed += 1;
        let Some(head) = self.work.get_mut(flow.slot).and_then(Option::as_mut) else {
            return;
        };
        if flow.segs < 2 {
            return;
        }
        self.stats.coalesced += 1;
        finish(head, &flow);
    }
}

/// Why a segment of a flow in the table does not join it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    OutOfOrder,
    OptionChange,
    HeaderChange,
    TsBackwards,
    SizeLimit,
}

/// Rewrites a merged frame's headers: lengths, the last segment's TCP header with the
/// first sequence number, PSH if any had it, both checksums; and its metadata.
fn finish(head: &mut PacketBuf, flow: &Flow) {
    let (l2, l3, l4) = (flow.l2_len, flow.l3_len, flow.l4_len);
    let mut hdr = [0u8; MAX_HDR];
    let hlen = l2 + l3 + l4;
    if !csum::read_at(head, 0, &mut hdr[..hlen]) {
        return;
    }
    let l4_total = (l4 + flow.payload_len) as u32;
    let t = l2 + l3;
    hdr[t..hlen].copy_from_slice(&flow.last_tcp[..l4]);
    put32(&mut hdr, t + 4, flow.first_seq);
    if flow.psh {
        hdr[t + 13] |= tcp_flags::PSH;
    }
    put16(&mut hdr, t + 16, 0);
    let pseudo = if flow.key.ipv6 {
        put16(&mut hdr, l2 + 4, l4_total as u16);
        csum::pseudo_v6(flow.key.src, flow.key.dst, IPPROTO_TCP, l4_total)
    } else {
        put16(&mut hdr, l2 + 2, (l3 as u32 + l4_total) as u16);
        let c = csum::ipv4_header_checksum(&hdr[l2..t]);
        put16(&mut hdr, l2 + 10, c);
        let mut src = [0u8; 4];
        let mut dst = [0u8; 4];
        src.copy_from_slice(&flow.key.src[..4]);
        dst.copy_from_slice(&flow.key.dst[..4]);
        csum::pseudo_v4(src, dst, IPPROTO_TCP, l4_total)
    };
    let acc = csum::add_bytes(pseudo, &hdr[t..hlen], false) + flow.payload_sum;
    put16(&mut hdr, t + 16, !csum::fold(acc));
    if !csum::write_at(head, 0, &hdr[..hlen]) {
        return;
    }
    let m = head.meta_mut();
    m.flags &= !(PacketMeta::RX_IP_CSUM_BAD | PacketMeta::RX_L4_CSUM_BAD);
    m.flags |= PacketMeta::RX_LRO | PacketMeta::RX_L4_CSUM_GOOD;
    if flow.partial {
        m.flags |= PacketMeta::RX_L4_CSUM_PARTIAL;
    }
    if !flow.key.ipv6 {
        m.flags |= PacketMeta::RX_IP_CSUM_GOOD;
    }
    m.mss = flow.max_payload.min(usize::from(u16::MAX)) as u16;
    m.segs = flow.segs;
}

/// The ones'-complement sum of `seg`'s payload (folded), after checking the TCP checksum:
/// derived from the checksum field where the device vouched for it (no pass over the
/// payload, as `tcp_lro_rx_csum_data` does), else summed and verified here. None: the
/// checksum is bad (by the device's verdict or ours).
fn payload_sum(pkt: &PacketBuf, seg: &Segment) -> Option<u16> {
    let flags = pkt.meta().flags;
    if flags & PacketMeta::RX_L4_CSUM_BAD != 0 {
        return None;
    }
    let t = seg.l2_len + seg.l3_len;
    let l4_total = (seg.ip_end - t) as u32;
    let pseudo = if seg.key.ipv6 {
        csum::pseudo_v6(seg.key.src, seg.key.dst, IPPROTO_TCP, l4_total)
    } else {
        let mut src = [0u8; 4];
        let mut dst = [0u8; 4];
        src.copy_from_slice(&seg.key.src[..4]);
        dst.copy_from_slice(&seg.key.dst[..4]);
        csum::pseudo_v4(src, dst, IPPROTO_TCP, l4_total)
    };
    let mut tcp = [0u8; TCP_MAX_HLEN];
    if !csum::read_at(pkt, t, &mut tcp[..seg.l4_len]) {
        return None;
    }
    // Pseudo-header, TCP header (checksum field included) and payload sum to 0xffff
    // (negative zero) in a segment whose checksum is right; the payload's share is then
    // the complement of the rest.
    let rest = csum::fold(csum::add_bytes(pseudo, &tcp[..seg.l4_len], false));
    if flags & PacketMeta::RX_L4_CSUM_GOOD != 0 {
        return Some(!rest);
    }
    let payload = csum::fold(csum::sum_range(pkt, t + seg.l4_len, seg.ip_end)?);
    (csum::fold(u64::from(rest) + u64::from(payload)) == 0xffff).then_some(payload)
}

/// Flags a frame whose IPv4 header checksum we found bad (the device had not said).
fn mark_bad(pkt: &mut PacketBuf) {
    let m = pkt.meta_mut();
    if m.flags & (PacketMeta::RX_IP_CSUM_GOOD | PacketMeta::RX_IP_CSUM_BAD) == 0 {
        m.flags |= PacketMeta::RX_IP_CSUM_BAD;
    }
}

/// The last buffer of a chain.
fn last_mut(mut p: &mut PacketBuf) -> &mut PacketBuf {
    // `is_chained()` is `next().is_some()`: the expect never fires. (A `while let` over
    // `next_mut()` is the loop the borrow checker cannot yet see through.)
    while p.is_chained() {
        p = p.next_mut().expect("a chained buffer has a next segment");
    }
    p
}

/// Cuts `pkt` to its first `len` bytes, freeing buffers past them.
fn truncate(mut pkt: PacketBuf, len: usize, cache: &mut MempoolCache) -> PacketBuf {
    if pkt.pkt_len() <= len {
        return pkt;
    }
    let mut left = len;
    let mut cur = &mut pkt;
    loop {
        if cur.len() >= left {
            cur.set_len(left);
            if let Some(rest) = cur.take_next() {
                cache.free(rest);
            }
            break;
        }
        left -= cur.len();
        match cur.next_mut() {
            Some(n) => cur = n,
            None => break,
        }
    }
    pkt
}

/// Drops the first `n` bytes of `pkt`, freeing buffers that empties; None if nothing is
/// left.
fn strip_front(mut pkt: PacketBuf, mut n: usize, cache: &mut MempoolCache) -> Option<PacketBuf> {
    loop {
        if n < pkt.len() {
            pkt.adj(n);
            return Some(pkt);
        }
        n -= pkt.len();
        let next = pkt.take_next();
        cache.free(pkt);
        pkt = next?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::testutil::{bytes, check, frame, packet, Seen, Spec};
    use crate::packet::mempool::host_pool;

    fn payload(n: usize, tag: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ tag).collect()
    }

    /// A burst of frames, each cut by `cuts`.
    fn burst(cache: &mut MempoolCache, frames: &[Vec<u8>], cuts: &[usize]) -> PacketBatch {
        let mut b = PacketBatch::new(frames.len().max(1));
        for f in frames {
            b.push(packet(cache, f, cuts)).unwrap();
        }
        b
    }

    /// `n` in-order segments of `len` bytes from `spec` on (timestamps ticking).
    fn stream(spec: &Spec, n: usize, len: usize) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut frames = Vec::new();
        let mut data = Vec::new();
        for i in 0..n {
            let p = payload(len, i as u8);
            let s = Spec {
                seq: spec.seq.wrapping_add((i * len) as u32),
                ack: spec.ack + i as u32,
                window: spec.window + i as u16,
                ts: spec.ts.map(|(v, e)| (v + i as u32, e + i as u32)),
                ..*spec
            };
            frames.push(frame(&s, &p));
            data.extend_from_slice(&p);
        }
        (frames, data)
    }

    /// Runs one burst through LRO; returns each delivered frame, checked by etherparse,
    /// with its metadata.
    fn run(
        lro: &mut Lro,
        cache: &mut MempoolCache,
        frames: &[Vec<u8>],
        cuts: &[usize],
    ) -> Vec<(Seen, PacketMeta)> {
        let mut b = burst(cache, frames, cuts);
        lro.input(&mut b, cache);
        let out = b.iter().map(|p| (check(&bytes(p)), *p.meta())).collect();
        b.free_into(cache);
        out
    }

    #[test]
    fn an_in_order_stream_becomes_one_frame() {
        for v6 in [false, true] {
            let pool = host_pool(256).unwrap();
            let mut cache = pool.cache(32);
            let spec = Spec {
                v6,
                ..Spec::default()
            };
            let (mut frames, data) = stream(&spec, 10, 1448);
            // PSH on one segment in the middle: the merged frame carries it.
            let s5 = Spec {
                seq: spec.seq + 5 * 1448,
                ack: spec.ack + 5,
                window: spec.window + 5,
                ts: Some((105, 55)),
                flags: tcp_flags::PSH,
                ..spec
            };
            frames[5] = frame(&s5, &payload(1448, 5));
            let mut lro = Lro::default();
            let out = run(&mut lro, &mut cache, &frames, &[]);
            assert_eq!(out.len(), 1);
            let (s, m) = &out[0];
            assert_eq!(s.payload, data);
            assert_eq!(s.seq, spec.seq, "the first segment's sequence number");
            assert_eq!(
                (s.ack, s.window, s.ts),
                (spec.ack + 9, spec.window + 9, Some((109, 59))),
                "the last segment's ACK, window, timestamps"
            );
            assert_eq!(s.flags, tcp_flags::ACK | tcp_flags::PSH);
            assert_eq!((m.mss, m.segs), (1448, 10));
            assert_ne!(m.flags & PacketMeta::RX_LRO, 0);
            assert_ne!(m.flags & PacketMeta::RX_L4_CSUM_GOOD, 0);
            assert_eq!(m.flags & PacketMeta::RX_IP_CSUM_GOOD != 0, !v6);
            let st = *lro.stats();
            assert_eq!((st.merged, st.flushed, st.coalesced), (9, 1, 1));
            drop(cache);
            assert_eq!(pool.free_count(), 256, "no buffer lost");
        }
    }

    /// Odd payload lengths (the payload sums meet at odd offsets), chains cut inside the
    /// headers, tiny segments in padded minimum-size frames, and the device's checksum
    /// verdict trusted.
    #[test]
    fn odd_lengths_chains_padding_and_trusted_checksums() {
        let pool = host_pool(1024).unwrap();
        let mut cache = pool.cache(32);
        for (len, cuts, trusted) in [
            (1, &[][..], false),
            (3, &[20][..], true),
            (537, &[7, 33][..], false),
            (1447, &[60, 1][..], true),
            (999, &[100, 200, 300][..], false),
        ] {
            for v6 in [false, true] {
                let spec = Spec {
                    v6,
                    ts: None,
                    ..Spec::default()
                };
                let (frames, data) = stream(&spec, 7, len);
                let mut b = burst(&mut cache, &frames, cuts);
                if trusted {
                    for p in b.iter_mut() {
                        p.meta_mut().flags |=
                            PacketMeta::RX_L4_CSUM_GOOD | PacketMeta::RX_IP_CSUM_GOOD;
                    }
                }
                let mut lro = Lro::default();
                lro.input(&mut b, &mut cache);
                assert_eq!(b.len(), 1, "len {len} cuts {cuts:?}");
                let p = b.pop().unwrap();
                let s = check(&bytes(&p));
                assert_eq!(s.payload, data);
                assert_eq!((p.meta().segs, p.meta().mss as usize), (7, len));
                cache.free(p);
            }
        }
        drop(cache);
        assert_eq!(pool.free_count(), 1024);
    }

    /// Two flows interleaved with frames LRO does not touch: each flow merged, every
    /// frame in its first segment's place.
    #[test]
    fn flows_merge_apart_and_order_is_kept() {
        let pool = host_pool(256).unwrap();
        let mut cache = pool.cache(32);
        let a = Spec::default();
        let b = Spec {
            sport: 40001,
            seq: 9_000_000,
            ..Spec::default()
        };
        let (fa, da) = stream(&a, 4, 1000);
        let (fb, db) = stream(&b, 3, 700);
        let arp = {
            let mut f = vec![0xffu8; 12];
            f.extend_from_slice(&[0x08, 0x06]);
            f.resize(60, 0);
            f
        };
        let frames = vec![
            fa[0].clone(),
            arp.clone(),
            fb[0].clone(),
            fa[1].clone(),
            fb[1].clone(),
            fa[2].clone(),
            fa[3].clone(),
            fb[2].clone(),
        ];
        let mut batch = burst(&mut cache, &frames, &[]);
        let mut lro = Lro::default();
        lro.input(&mut batch, &mut cache);
        let out: Vec<Vec<u8>> = batch.iter().map(bytes).collect();
        assert_eq!(out.len(), 3);
        assert_eq!(check(&out[0]).payload, da);
        assert_eq!(out[1], arp);
        assert_eq!(check(&out[2]).payload, db);
        assert_eq!(lro.stats().not_tcp, 1);
        batch.free_into(&mut cache);
    }

    /// A segment that cannot join its flow flushes it and passes through unmerged, after
    /// the flow's frame; the flow starts again after it.
    #[test]
    fn what_cannot_merge_flushes_and_passes_in_order() {
        let spec = Spec::default();
        let (f, _) = stream(&spec, 6, 500);
        let seg = |i: usize, change: &dyn Fn(&mut Spec)| {
            let mut s = Spec {
                seq: spec.seq + (i * 500) as u32,
                ack: spec.ack + i as u32,
                window: spec.window + i as u16,
                ts: Some((100 + i as u32, 50 + i as u32)),
                ..spec
            };
            change(&mut s);
            frame(&s, &payload(500, i as u8))
        };
        type Count = fn(&LroStats) -> u64;
        let cases: Vec<(&str, Vec<u8>, Count)> = vec![
            ("gap", seg(3, &|_| {}), |s| s.out_of_order),
            ("retransmission", f[1].clone(), |s| s.out_of_order),
            ("FIN", seg(2, &|s| s.flags = tcp_flags::FIN), |s| s.flags),
            ("SYN", seg(2, &|s| s.flags = tcp_flags::SYN), |s| s.flags),
            ("RST", seg(2, &|s| s.flags = tcp_flags::RST), |s| s.flags),
            ("URG", seg(2, &|s| s.flags = tcp_flags::URG), |s| s.flags),
            ("ECE", seg(2, &|s| s.flags = tcp_flags::ECE), |s| s.flags),
            ("CWR", seg(2, &|s| s.flags = tcp_flags::CWR), |s| s.flags),
            ("timestamps gone", seg(2, &|s| s.ts = None), |s| {
                s.option_change
            }),
            ("TSval backwards", seg(2, &|s| s.ts = Some((99, 52))), |s| {
                s.ts_backwards
            }),
            ("ACK backwards", seg(2, &|s| s.ack = 1), |s| s.out_of_order),
            (
                "pure ACK",
                frame(
                    &Spec {
                        seq: spec.seq + 1000,
                        ..spec
                    },
                    &[],
                ),
                |s| s.no_payload,
            ),
        ];
        for (what, odd, count) in cases {
            let pool = host_pool(64).unwrap();
            let mut cache = pool.cache(16);
            let mut lro = Lro::default();
            // Segments 0 and 1 merge; `odd` comes next, then segments 2 and 3 of the stream.
            let frames = vec![
                f[0].clone(),
                f[1].clone(),
                odd.clone(),
                f[2].clone(),
                f[3].clone(),
            ];
            let out = run(&mut lro, &mut cache, &frames, &[]);
            let st = *lro.stats();
            assert_eq!(count(&st), 1, "{what}: {st:?}");
            assert!(out.len() >= 3, "{what}: {} frames", out.len());
            assert_eq!(
                out[0].1.segs, 2,
                "{what}: segments 0 and 1 merged before it"
            );
            assert_eq!(
                bytes_of_frame(&odd),
                out[1].0.payload,
                "{what}: passes through second"
            );
            assert_eq!(out[1].1.flags & PacketMeta::RX_LRO, 0, "{what}");
            drop(cache);
            assert_eq!(pool.free_count(), 64, "{what}: no buffer lost");
        }
    }

    fn bytes_of_frame(f: &[u8]) -> Vec<u8> {
        check(f).payload
    }

    /// Frames that are not candidates at all, each counted by its reason.
    #[test]
    fn ineligible_frames_are_counted_by_reason() {
        let spec = Spec::default();
        let good = frame(&spec, &payload(100, 1));
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut v = good.clone();
            f(&mut v);
            v
        };
        // Fixes the IPv4 header checksum after a change to the header.
        fn reip(v: &mut [u8]) {
            v[24] = 0;
            v[25] = 0;
            let ihl = usize::from(v[14] & 0xf) * 4;
            let c = csum::ipv4_header_checksum(&v[14..14 + ihl]);
            v[24..26].copy_from_slice(&c.to_be_bytes());
        }
        type Count = fn(&LroStats) -> u64;
        let cases: Vec<(&str, Vec<u8>, u32, Count)> = vec![
            (
                "IPv4 options",
                with(&|v| {
                    v[14] = 0x46;
                    v.splice(34..34, [1, 1, 1, 0]);
                    reip(v);
                }),
                0,
                |s| s.ip_options,
            ),
            (
                "fragment",
                with(&|v| {
                    v[20] = 0x20;
                    reip(v);
                }),
                0,
                |s| s.fragment,
            ),
            ("bad IPv4 header checksum", with(&|v| v[24] ^= 1), 0, |s| {
                s.bad_checksum
            }),
            (
                "device says IP bad",
                good.clone(),
                PacketMeta::RX_IP_CSUM_BAD,
                |s| s.bad_checksum,
            ),
            ("bad TCP checksum", with(&|v| v[60] ^= 1), 0, |s| {
                s.bad_checksum
            }),
            (
                "device says TCP bad",
                good.clone(),
                PacketMeta::RX_L4_CSUM_BAD,
                |s| s.bad_checksum,
            ),
            (
                "UDP",
                with(&|v| {
                    v[23] = 17;
                    reip(v);
                }),
                0,
                |s| s.not_tcp,
            ),
            (
                // Not summed: a frame passed up as it came is the stack's to check, and a
                // flood of UDP costs the engine no sum a frame.
                "UDP with a wrong IPv4 header checksum",
                with(&|v| {
                    v[23] = 17;
                    reip(v);
                    v[24] ^= 1;
                }),
                0,
                |s| s.not_tcp,
            ),
            (
                "IP length past the frame",
                with(&|v| {
                    v[16] = 0x10;
                    reip(v);
                }),
                0,
                |s| s.malformed,
            ),
            (
                "data offset 4",
                with(&|v| {
                    v[46] = 0x40;
                }),
                0,
                |s| s.malformed,
            ),
            (
                "option length 0",
                with(&|v| {
                    v[54] = 5;
                    v[55] = 0;
                }),
                0,
                |s| s.bad_options,
            ),
            ("already coalesced", good.clone(), PacketMeta::RX_LRO, |s| {
                s.already_coalesced
            }),
            (
                "IPv6 hop-by-hop",
                {
                    let mut v = frame(&Spec { v6: true, ..spec }, &payload(100, 1));
                    v[20] = 0; // next header: hop-by-hop options
                    v
                },
                0,
                |s| s.ipv6_extension,
            ),
        ];
        for (what, f, flags, count) in cases {
            let pool = host_pool(16).unwrap();
            let mut cache = pool.cache(8);
            let mut lro = Lro::default();
            // The same frame three times: none merges, all three pass unchanged.
            let mut b = burst(&mut cache, &[f.clone(), f.clone(), f.clone()], &[]);
            for p in b.iter_mut() {
                p.meta_mut().flags |= flags;
            }
            lro.input(&mut b, &mut cache);
            assert_eq!(b.len(), 3, "{what}");
            assert!(b.iter().all(|p| bytes(p) == f), "{what}: changed");
            assert_eq!(count(lro.stats()), 3, "{what}: {:?}", lro.stats());
            assert_eq!(lro.stats().not_eligible(), 3, "{what}");
            b.free_into(&mut cache);
        }
    }

    /// The merged frame stops below an IP datagram's 64 KiB; the flow starts again.
    #[test]
    fn a_flow_is_flushed_at_the_ip_length_limit() {
        let pool = host_pool(256).unwrap();
        let mut cache = pool.cache(32);
        let (frames, data) = stream(&Spec::default(), 60, 1448);
        let mut lro = Lro::default();
        let out = run(&mut lro, &mut cache, &frames, &[]);
        // 65535 - 20 - 32 bytes hold 45 segments of 1448.
        assert_eq!(
            out.iter().map(|(_, m)| m.segs).collect::<Vec<_>>(),
            vec![45, 15]
        );
        assert_eq!(
            out.iter()
                .flat_map(|(s, _)| s.payload.clone())
                .collect::<Vec<_>>(),
            data
        );
        assert_eq!(lro.stats().size_limit, 1);
    }

    /// More flows than entries: the oldest is flushed to make room, every frame stays valid.
    #[test]
    fn a_full_table_evicts_the_oldest_flow() {
        let pool = host_pool(256).unwrap();
        let mut cache = pool.cache(32);
        let (a, da) = stream(
            &Spec {
                sport: 1000,
                ..Spec::default()
            },
            2,
            100,
        );
        let (b, db) = stream(
            &Spec {
                sport: 1001,
                ..Spec::default()
            },
            2,
            100,
        );
        let (c, dc) = stream(
            &Spec {
                sport: 1002,
                ..Spec::default()
            },
            2,
            100,
        );
        // Two entries: C's first segment evicts A (the oldest), B still merges.
        let frames = [&a[0], &b[0], &a[1], &c[0], &c[1], &b[1]].map(|f| f.clone());
        let mut lro = Lro::new(2);
        let out = run(&mut lro, &mut cache, &frames, &[]);
        let st = *lro.stats();
        assert_eq!((st.evicted, st.merged, st.flushed), (1, 3, 3));
        let payloads: Vec<Vec<u8>> = out.iter().map(|(s, _)| s.payload.clone()).collect();
        assert_eq!(payloads, vec![da, db, dc]);
    }

    /// Nothing is held across bursts: a stream cut over two bursts arrives as two frames.
    #[test]
    fn nothing_is_held_across_bursts() {
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(16);
        let (frames, data) = stream(&Spec::default(), 6, 300);
        let mut lro = Lro::default();
        let a = run(&mut lro, &mut cache, &frames[..3], &[]);
        let b = run(&mut lro, &mut cache, &frames[3..], &[]);
        assert_eq!((a.len(), b.len()), (1, 1));
        let mut got = a[0].0.payload.clone();
        got.extend_from_slice(&b[0].0.payload);
        assert_eq!(got, data);
        assert_eq!(lro.stats().flushed, 2);
    }

    #[test]
    fn the_parser_refuses_short_and_odd_input() {
        assert_eq!(parse(&[], 0, 0).unwrap_err().0, NotEligible::NotTcp);
        assert_eq!(parse(&[0; 13], 13, 0).unwrap_err().0, NotEligible::NotTcp);
        let f = frame(&Spec::default(), &payload(10, 0));
        for n in 14..f.len() {
            assert!(parse(&f[..n], n, 0).is_err(), "{n} bytes");
        }
        assert!(parse(&f, f.len(), 0).is_ok());
        assert!(
            parse(&f, f.len() - 1, 0).is_err(),
            "frame_len below the bytes given"
        );
    }
}
