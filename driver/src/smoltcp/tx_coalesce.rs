//! TX coalescing: the full-sized TCP segments smoltcp emits back to back for one flow in
//! one interface poll leave as one TSO packet, so a device with TCP segmentation
//! (virtio-net HOST_TSO4, e1000e and igb TSE) cuts them again, and the frames on the wire
//! are the ones smoltcp built but for the IPv4 identification, which the device numbers
//! from the first (RFC 6864: meaningless in an atomic datagram, DF set or not fragmented).
//! What the device sees is one packet of up to 64 KiB where it saw up to 44, and that is
//! where a software stack spends its cycles under emulation (Linux's TSO autosizing does
//! the same from inside its stack).
//!
//! A run of segments is merged when each one (RFC 9293 §3.1 field names):
//! - is an untagged Ethernet II IPv4 TCP frame in one buffer, not a fragment, asking for
//!   exactly the IPv4 header and TCP checksums (what the adapter asks for smoltcp's TCP);
//! - carries data, with control bits ACK alone or ACK+PSH;
//! - has the run's headers byte for byte except the total length, identification and
//!   header checksum (IPv4), and the sequence number, PSH and checksum (TCP): same
//!   addresses, ports, ACK number, window, options;
//! - starts where the run ends (`seq` = the run's next), and every segment before it was
//!   exactly as long as the first (the MSS the device cuts at), itself at most that long.
//!
//! A PSH segment ends its run (TSO puts PSH on the last segment only, as it came), and so
//! does anything that does not merge; a run stops below 64 KiB of IP packet and below the
//! rings' 64-segment chains. A run of one segment is sent as it was.

use crate::packet::mempool::{PacketBuf, PacketMeta};
use crate::ring::PacketBatch;

/// Ethernet header (no tag).
const ETH_HLEN: usize = 14;
/// Buffers in one TSO chain at most: the head and 44 segments' payloads fit in the
/// 64-descriptor chains every device here takes, and 44 × 1460 + 40 bytes of IP packet
/// in 64 KiB.
const MAX_SEGS: usize = 45;
/// TCP control bits (RFC 9293 §3.1).
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
/// What the adapter asks for an IPv4 TCP frame smoltcp built.
const ASKED: u32 = PacketMeta::TX_IPV4 | PacketMeta::TX_IP_CSUM | PacketMeta::TX_TCP_CSUM;

/// One frame as a candidate for a run.
#[derive(Clone, Copy)]
struct Segment {
    /// Offset of the TCP header (14 + IHL × 4).
    tcp: usize,
    /// Ethernet, IPv4 and TCP headers.
    hdr_len: usize,
    payload: usize,
    seq: u32,
    psh: bool,
}

fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

/// The frame as a run member, or `None` for anything else.
fn segment(p: &PacketBuf) -> Option<Segment> {
    if p.is_chained() || p.meta().flags != ASKED {
        return None;
    }
    let d = p.data();
    if d.len() < ETH_HLEN + 40 || be16(d, 12) != 0x0800 || d[14] >> 4 != 4 || d[23] != 6 {
        return None;
    }
    let tcp = ETH_HLEN + usize::from(d[14] & 0xf) * 4;
    // Not a fragment (MF clear, offset 0); the IPv4 total length is the frame's.
    if be16(d, 20) & 0x3fff != 0 || ETH_HLEN + usize::from(be16(d, 16)) != d.len() {
        return None;
    }
    let hdr_len = tcp + usize::from(*d.get(tcp + 12)? >> 4) * 4;
    let flags = *d.get(tcp + 13)?;
    if hdr_len < tcp + 20 || hdr_len >= d.len() || flags & !TCP_PSH != TCP_ACK {
        return None;
    }
    Some(Segment {
        tcp,
        hdr_len,
        payload: d.len() - hdr_len,
        seq: be32(d, tcp + 4),
        psh: flags & TCP_PSH != 0,
    })
}

/// The headers of `a` and `b` (both `hdr_len` long, TCP at `tcp`) equal but for the fields
/// a TSO device rewrites per segment.
fn same_flow(a: &[u8], b: &[u8], tcp: usize, hdr_len: usize) -> bool {
    // IPv4 total length 16..18, identification 18..20, checksum 24..26; TCP sequence
    // +4..+8, flags +13, checksum +16..+18.
    let same = |r: std::ops::Range<usize>| a[r.clone()] == b[r];
    same(0..16)
        && same(20..24)
        && same(26..tcp + 4)
        && same(tcp + 8..tcp + 13)
        && same(tcp + 14..tcp + 16)
        && same(tcp + 18..hdr_len)
}

/// The open run and what was merged.
pub(super) struct TxCoalescer {
    /// The run: the first segment whole, then the others' payloads.
    parts: Vec<PacketBuf>,
    first: Segment,
    /// Sequence number after the run.
    next_seq: u32,
    /// Payload bytes in the run.
    payload: usize,
    /// The last segment's payload (a shorter one closes the run to longer ones).
    last_payload: usize,
    /// TSO packets sent.
    pub(super) packets: u64,
    /// Segments that left inside them.
    pub(super) segments: u64,
}

impl TxCoalescer {
    pub(super) fn new() -> Self {
        TxCoalescer {
            parts: Vec::with_capacity(MAX_SEGS),
            first: Segment {
                tcp: 0,
                hdr_len: 0,
                payload: 0,
                seq: 0,
                psh: false,
            },
            next_seq: 0,
            payload: 0,
            last_payload: 0,
            packets: 0,
            segments: 0,
        }
    }

    /// Rewrites `batch` in place, in order, with each run of segments merged into one TSO
    /// packet.
    pub(super) fn coalesce(&mut self, batch: &mut PacketBatch) {
        let n = batch.len();
        if n < 2 {
            return;
        }
        for _ in 0..n {
            let Some(mut p) = batch.pop() else { break };
            let Some(seg) = segment(&p) else {
                self.close(batch);
                put(batch, p);
                continue;
            };
            if self.extends(&p, &seg) && p.adj(seg.hdr_len) {
                self.next_seq = self.next_seq.wrapping_add(seg.payload as u32);
                self.payload += seg.payload;
                self.last_payload = seg.payload;
                self.parts.push(p);
                if seg.psh {
                    // PSH rides on the last segment the device cuts: the head's flags.
                    let flags = self.first.tcp + 13;
                    self.parts[0].data_mut()[flags] |= TCP_PSH;
                    self.close(batch);
                }
                continue;
            }
            self.close(batch);
            self.first = seg;
            self.next_seq = seg.seq.wrapping_add(seg.payload as u32);
            (self.payload, self.last_payload) = (seg.payload, seg.payload);
            self.parts.push(p);
            if seg.psh {
                self.close(batch);
            }
        }
        self.close(batch);
    }

    /// Whether `seg` (in `p`) continues the open run.
    fn extends(&self, p: &PacketBuf, seg: &Segment) -> bool {
        let f = &self.first;
        let Some(head) = self.parts.first() else {
            return false;
        };
        self.parts.len() < MAX_SEGS
            && seg.tcp == f.tcp
            && seg.hdr_len == f.hdr_len
            && seg.seq == self.next_seq
            && self.last_payload == f.payload
            && seg.payload <= f.payload
            && f.hdr_len - ETH_HLEN + self.payload + seg.payload <= usize::from(u16::MAX)
            && same_flow(head.data(), p.data(), f.tcp, f.hdr_len)
    }

    /// Sends the open run into `batch`: as it was if one segment, else as one TSO packet.
    fn close(&mut self, batch: &mut PacketBatch) {
        let segs = self.parts.len();
        if segs == 0 {
            return;
        }
        let mut chain: Option<PacketBuf> = None;
        while let Some(mut b) = self.parts.pop() {
            b.set_next(chain.take());
            chain = Some(b);
        }
        let Some(mut head) = chain else { return };
        if segs > 1 {
            let f = self.first;
            let ip_len = (f.hdr_len - ETH_HLEN + self.payload) as u16;
            head.data_mut()[16..18].copy_from_slice(&ip_len.to_be_bytes());
            let m = head.meta_mut();
            m.flags = PacketMeta::TX_IPV4 | PacketMeta::TX_IP_CSUM | PacketMeta::TX_TSO;
            m.mss = f.payload as u16;
            (m.l2_len, m.l3_len, m.l4_len) = (
                ETH_HLEN as u8,
                (f.tcp - ETH_HLEN) as u8,
                (f.hdr_len - f.tcp) as u8,
            );
            self.packets += 1;
            self.segments += segs as u64;
        }
        put(batch, head);
    }
}

/// Back into the batch, which has room: what goes back is never more than what was taken
/// out (were it full, the packet would go back to its pool as it drops).
fn put(batch: &mut PacketBatch, p: PacketBuf) {
    let pushed = batch.push(p);
    debug_assert!(pushed.is_ok(), "the batch had room for what was taken out");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::gso::{Gso, GsoChecksum};
    use crate::offload::tcp_flags;
    use crate::offload::testutil::{bytes, check, frame, packet, Spec};
    use crate::packet::mempool::{host_pool, MempoolCache};

    const MSS: usize = 1448;

    /// A frame as smoltcp builds it for the adapter: checksums asked of the device.
    fn seg(cache: &mut MempoolCache, spec: &Spec, payload: &[u8]) -> PacketBuf {
        let mut p = packet(cache, &frame(spec, payload), &[]);
        p.meta_mut().flags = ASKED;
        p
    }

    fn data(n: usize, salt: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 13 + salt) as u8).collect()
    }

    /// `lens` segments of one flow from `seq` on; `psh` on the last.
    fn stream(cache: &mut MempoolCache, spec: &Spec, lens: &[usize], psh: bool) -> Vec<PacketBuf> {
        let mut seq = spec.seq;
        let mut out = Vec::new();
        for (i, &n) in lens.iter().enumerate() {
            let last = i + 1 == lens.len();
            let s = Spec {
                seq,
                flags: if psh && last { tcp_flags::PSH } else { 0 },
                ..*spec
            };
            out.push(seg(cache, &s, &data(n, i)));
            seq = seq.wrapping_add(n as u32);
        }
        out
    }

    /// Coalesces `frames`; returns each output packet's segment count (1: unmerged) and
    /// checks that cutting the TSO packets again (tenge's software GSO, as the device
    /// does) gives back the input frames as etherparse reads them: addresses, sequence,
    /// ACK, window, timestamps, flags, payload.
    fn coalesce_and_check(cache: &mut MempoolCache, frames: Vec<PacketBuf>) -> Vec<usize> {
        let want: Vec<_> = frames.iter().map(|p| check(&bytes(p))).collect();
        let mut batch = PacketBatch::new(64);
        for p in frames {
            batch.push(p).unwrap();
        }
        let mut c = TxCoalescer::new();
        c.coalesce(&mut batch);
        let mut counts = Vec::new();
        let mut got = Vec::new();
        let mut gso = Gso::new(GsoChecksum::Software);
        for p in batch.drain() {
            if p.meta().flags & PacketMeta::TX_TSO != 0 {
                let mut out = PacketBatch::new(64);
                let n = gso.segment(&p, cache, &mut out).unwrap();
                counts.push(n);
                got.extend(out.drain().map(|s| check(&bytes(&s))));
            } else {
                assert_eq!(
                    p.meta().flags,
                    ASKED,
                    "an unmerged frame keeps its requests"
                );
                counts.push(1);
                got.push(check(&bytes(&p)));
            }
        }
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                (g.seq, g.ack, g.window, g.ts, g.flags, &g.payload),
                (w.seq, w.ack, w.window, w.ts, w.flags, &w.payload),
                "frame {i}"
            );
        }
        assert_eq!(
            (c.packets, c.segments),
            (
                counts.iter().filter(|&&n| n > 1).count() as u64,
                counts.iter().filter(|&&n| n > 1).sum::<usize>() as u64
            )
        );
        counts
    }

    #[test]
    fn a_run_of_full_segments_leaves_as_one_tso_packet_that_cuts_back_into_them() {
        let pool = host_pool(512).unwrap();
        let mut cache = pool.cache(64);
        let mut lens = vec![MSS; 10];
        lens.push(501);
        let spec = Spec {
            seq: u32::MAX - 5000, // the sequence wraps inside the run
            ..Spec::default()
        };
        let frames = stream(&mut cache, &spec, &lens, true);
        assert_eq!(coalesce_and_check(&mut cache, frames), vec![11]);
        // Without timestamps, over the 64 KiB limit: 45 and the rest.
        let spec = Spec {
            ts: None,
            ..Spec::default()
        };
        let frames = stream(&mut cache, &spec, &[MSS; 60], false);
        assert_eq!(coalesce_and_check(&mut cache, frames), vec![45, 15]);
    }

    #[test]
    fn anything_that_does_not_continue_the_run_ends_it() {
        let pool = host_pool(512).unwrap();
        let mut cache = pool.cache(64);
        let spec = Spec::default();

        // A gap in the sequence.
        let mut f = stream(&mut cache, &spec, &[MSS; 2], false);
        let after = Spec {
            seq: spec.seq + 3 * MSS as u32,
            ..spec
        };
        f.extend(stream(&mut cache, &after, &[MSS; 2], false));
        assert_eq!(coalesce_and_check(&mut cache, f), vec![2, 2]);

        // Another flow in between, and after it the first goes on in a run of its own.
        let mut f = stream(&mut cache, &spec, &[MSS; 2], false);
        let other = Spec {
            sport: 40001,
            ..spec
        };
        f.extend(stream(&mut cache, &other, &[MSS], false));
        let next = Spec {
            seq: spec.seq + 2 * MSS as u32,
            ..spec
        };
        f.extend(stream(&mut cache, &next, &[MSS; 3], false));
        assert_eq!(coalesce_and_check(&mut cache, f), vec![2, 1, 3]);

        // A short segment is a run's last; PSH ends one; a new ACK number starts one.
        let f = stream(&mut cache, &spec, &[MSS, 700, MSS, MSS], false);
        assert_eq!(coalesce_and_check(&mut cache, f), vec![2, 2]);
        let mut f = stream(&mut cache, &spec, &[MSS; 2], true);
        f.extend(stream(&mut cache, &next, &[MSS; 2], false));
        assert_eq!(coalesce_and_check(&mut cache, f), vec![2, 2]);
        let mut f = stream(&mut cache, &spec, &[MSS; 2], false);
        let acked = Spec { ack: 9, ..next };
        f.extend(stream(&mut cache, &acked, &[MSS; 2], false));
        assert_eq!(coalesce_and_check(&mut cache, f), vec![2, 2]);

        // FIN, an ACK without data, a frame asking for nothing: never merged.
        let mut f = stream(&mut cache, &spec, &[MSS], false);
        let fin = Spec {
            flags: tcp_flags::FIN,
            ..next
        };
        f.push(seg(&mut cache, &fin, &data(MSS, 0)));
        f.push(seg(&mut cache, &next, &[]));
        let mut plain = seg(&mut cache, &next, &data(MSS, 1));
        plain.meta_mut().flags = 0;
        let want = check(&bytes(&plain));
        f.push(plain);
        let mut batch = PacketBatch::new(8);
        let n = f.len();
        for p in f {
            batch.push(p).unwrap();
        }
        TxCoalescer::new().coalesce(&mut batch);
        assert_eq!(batch.len(), n);
        assert!(batch
            .iter()
            .all(|p| p.meta().flags & PacketMeta::TX_TSO == 0));
        assert_eq!(check(&bytes(batch.get(3).unwrap())).payload, want.payload);
    }
}
