//! Test helpers: frames built and checked by etherparse (an independent parser), packets
//! as chains cut anywhere.

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};

use super::tcp_flags;
use crate::packet::mempool::{MempoolCache, PacketBuf, PacketMeta};

/// A TCP segment to build.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub v6: bool,
    pub sport: u16,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    /// Flags besides ACK (always set): PSH, FIN, CWR, ECE, SYN, RST, URG.
    pub flags: u8,
    /// TSval, TSecr (as NOP NOP TS, RFC 7323 Appendix A's layout).
    pub ts: Option<(u32, u32)>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            v6: false,
            sport: 40000,
            seq: 1000,
            ack: 7,
            window: 512,
            flags: 0,
            ts: Some((100, 50)),
        }
    }
}

pub const SRC4: [u8; 4] = [10, 0, 0, 1];
pub const DST4: [u8; 4] = [10, 0, 0, 2];
pub const SRC6: [u8; 16] = [0x20, 0x01, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
pub const DST6: [u8; 16] = [0x20, 0x01, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// An Ethernet frame with the segment `s` carrying `payload`, every checksum right.
pub fn frame(s: &Spec, payload: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let ip = if s.v6 {
        eth.ipv6(SRC6, DST6, 64)
    } else {
        eth.ipv4(SRC4, DST4, 64)
    };
    let mut b = ip.tcp(s.sport, 80, s.seq, s.window).ack(s.ack);
    if s.flags & tcp_flags::PSH != 0 {
        b = b.psh();
    }
    if s.flags & tcp_flags::FIN != 0 {
        b = b.fin();
    }
    if s.flags & tcp_flags::CWR != 0 {
        b = b.cwr();
    }
    if s.flags & tcp_flags::ECE != 0 {
        b = b.ece();
    }
    if s.flags & tcp_flags::SYN != 0 {
        b = b.syn();
    }
    if s.flags & tcp_flags::RST != 0 {
        b = b.rst();
    }
    if s.flags & tcp_flags::URG != 0 {
        b = b.urg(1);
    }
    if let Some((v, e)) = s.ts {
        b = b
            .options(&[
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::Timestamp(v, e),
            ])
            .unwrap();
    }
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).unwrap();
    out
}

/// What a checked frame carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub v6: bool,
    pub ip_id: u16,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub flags: u8,
    pub ts: Option<(u32, u32)>,
    pub payload: Vec<u8>,
}

/// Parses `bytes` with etherparse and checks every length and checksum; panics (a test
/// failure) on anything wrong.
pub fn check(bytes: &[u8]) -> Seen {
    let p = SlicedPacket::from_ethernet(bytes).expect("etherparse accepts the frame");
    let (v6, ip_id, tcp_ok, tcp) = match (p.net, p.transport) {
        (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(tcp))) => {
            let h = ip.header();
            assert_eq!(
                h.to_header().calc_header_checksum(),
                h.header_checksum(),
                "IPv4 header checksum"
            );
            // Exactly the frame, or less in a minimum-size frame with Ethernet padding.
            let (total, l) = (usize::from(h.total_len()), bytes.len() - 14);
            assert!(
                total == l || (bytes.len() <= 60 && total < l),
                "IPv4 total length"
            );
            let c = tcp.calc_checksum_ipv4(h.source(), h.destination()).unwrap();
            (false, h.identification(), c == tcp.checksum(), tcp)
        }
        (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Tcp(tcp))) => {
            let h = ip.header();
            assert_eq!(usize::from(h.payload_length()), bytes.len() - 14 - 40);
            let c = tcp.calc_checksum_ipv6(h.source(), h.destination()).unwrap();
            (true, 0, c == tcp.checksum(), tcp)
        }
        other => panic!("not TCP over IP: {other:?}"),
    };
    assert!(tcp_ok, "TCP checksum");
    let mut ts = None;
    for o in tcp.options_iterator() {
        if let Ok(TcpOptionElement::Timestamp(v, e)) = o {
            ts = Some((v, e));
        }
    }
    Seen {
        v6,
        ip_id,
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        window: tcp.window_size(),
        flags: tcp.header_slice()[13],
        ts,
        payload: tcp.payload().to_vec(),
    }
}

/// `bytes` as a packet: buffers of the sizes in `cuts` (each at most a buffer's data
/// room), then full buffers, from `cache`.
pub fn packet(cache: &mut MempoolCache, bytes: &[u8], cuts: &[usize]) -> PacketBuf {
    let room = cache.pool().data_room() as usize;
    let mut parts = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    loop {
        let c = cuts.get(i).copied().unwrap_or(room).clamp(1, room);
        let (a, b) = rest.split_at(c.min(rest.len()));
        let mut buf = cache.alloc().expect("test pool large enough");
        assert!(buf.copy_from(a));
        parts.push(buf);
        rest = b;
        i += 1;
        if rest.is_empty() {
            break;
        }
    }
    let mut head = None;
    while let Some(mut b) = parts.pop() {
        b.set_next(head);
        head = Some(b);
    }
    head.unwrap()
}

/// The packet's bytes, every segment.
pub fn bytes(pkt: &PacketBuf) -> Vec<u8> {
    let mut v = Vec::new();
    pkt.append_to(&mut v);
    v
}

/// A TSO request: the frame of `spec` with `payload`, as a packet cut by `cuts`, its
/// metadata asking TSO with `mss`.
pub fn tso(
    cache: &mut MempoolCache,
    spec: &Spec,
    payload: &[u8],
    mss: u16,
    cuts: &[usize],
) -> PacketBuf {
    let mut f = frame(spec, &[]);
    f.extend_from_slice(payload);
    let mut p = packet(cache, &f, cuts);
    let l4 = 20 + if spec.ts.is_some() { 12 } else { 0 };
    let m = p.meta_mut();
    m.flags = PacketMeta::TX_TSO
        | if spec.v6 {
            PacketMeta::TX_IPV6
        } else {
            PacketMeta::TX_IPV4
        };
    m.l2_len = 14;
    m.l3_len = if spec.v6 { 40 } else { 20 };
    m.l4_len = l4;
    m.mss = mss;
    p
}
