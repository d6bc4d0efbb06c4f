//! The software LRO engine fed received frames a fuzzer chooses: any bytes, or TCP
//! segments of a few flows (IPv4 and IPv6, in order or not, any flags, timestamps, options,
//! payload lengths) damaged at any byte, in bursts, as chains cut anywhere, with any RX
//! checksum verdict bits. The parser also sees every frame's bytes directly.
//!
//! The oracle: no panic and no out-of-bounds access (AddressSanitizer); a burst never
//! grows; every merged frame (`RX_LRO`) has an IP length equal to its bytes, a valid IPv4
//! header checksum and a valid TCP checksum, and at least two segments; once every frame is
//! given back, the pool holds every buffer again (nothing merged away was lost, nothing
//! freed twice).

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use tenge::offload::lro::{self, Lro};
use tenge::packet::csum;
use tenge::packet::mempool::{host_pool, MempoolCache, PacketBuf, PacketMeta};
use tenge::ring::PacketBatch;

const BUFFERS: u32 = 512;
const MAX_BURSTS: usize = 8;
const MAX_FRAMES: usize = 48;

#[derive(Arbitrary, Debug)]
enum Frame {
    /// Any bytes.
    Raw(Vec<u8>),
    /// The next segment of flow `flow % 4` (IPv4, IPv6, each with or without a VLAN tag):
    /// in order, ACK (with PSH if `psh`), `len % 1600` bytes of payload, the flow's
    /// timestamp clock ticking; or with one thing `odd`.
    Tcp {
        flow: u8,
        len: u16,
        psh: bool,
        odd: Option<Odd>,
    },
}

/// What makes a segment other than the next one of its flow.
#[derive(Arbitrary, Debug)]
enum Odd {
    /// Its sequence number shifted (a gap, a retransmission).
    Skew(i16),
    /// These flags instead of ACK|PSH.
    Flags(u8),
    /// Any timestamp values.
    Ts(u32, u32),
    /// No timestamp option.
    NoTs,
    /// A SACK option besides the timestamps.
    Sack,
    /// Byte `at % len` XOR `xor`.
    Damage(u16, u8),
}

#[derive(Arbitrary, Debug)]
struct RxFrame {
    frame: Frame,
    /// The device's verdict bits (`RX_*_CSUM_*`, `RX_LRO`); None: no verdict.
    rx_flags: Option<u8>,
    cut: u16,
}

#[derive(Arbitrary, Debug)]
struct Input {
    entries: u8,
    bursts: Vec<Vec<RxFrame>>,
}

/// Per flow: the next sequence number and the timestamp clock.
struct Flows {
    next_seq: [u32; 4],
    clock: [u32; 4],
}

/// A TCP segment with right lengths and checksums (RFC 791, 8200, 9293).
fn segment(f: &Frame, flows: &mut Flows) -> Vec<u8> {
    let Frame::Tcp {
        flow,
        len,
        psh,
        odd,
    } = f
    else {
        return Vec::new();
    };
    let fl = usize::from(*flow % 4);
    let (v6, vlan) = (fl & 1 != 0, fl & 2 != 0);
    let len = usize::from(*len % 1600);
    let skew = match odd {
        Some(Odd::Skew(k)) => *k as u32,
        _ => 0,
    };
    let seq = flows.next_seq[fl].wrapping_add(skew);
    flows.next_seq[fl] = seq.wrapping_add(len as u32);
    let flags = match odd {
        Some(Odd::Flags(f)) => *f,
        _ => 0x10 | if *psh { 0x08 } else { 0 },
    };
    let ts = match odd {
        Some(Odd::NoTs) => None,
        Some(Odd::Ts(v, e)) => Some((*v, *e)),
        _ => {
            flows.clock[fl] += 1;
            Some((flows.clock[fl], 77))
        }
    };
    let mut opts = Vec::new();
    if let Some((v, e)) = ts {
        opts.extend_from_slice(&[1, 1, 8, 10]);
        opts.extend_from_slice(&v.to_be_bytes());
        opts.extend_from_slice(&e.to_be_bytes());
    }
    if matches!(odd, Some(Odd::Sack)) {
        opts.extend_from_slice(&[1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    }
    let l4 = 20 + opts.len();
    let mut b = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    if vlan {
        b.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    }
    let (src4, dst4) = ([10, 0, 0, 1 + fl as u8], [10, 0, 0, 9]);
    let mut src6 = [0u8; 16];
    let mut dst6 = [0u8; 16];
    src6[0] = 0xfd;
    src6[15] = 1 + fl as u8;
    dst6[0] = 0xfd;
    dst6[15] = 9;
    let pseudo = if v6 {
        b.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        b.extend_from_slice(&((l4 + len) as u16).to_be_bytes());
        b.extend_from_slice(&[6, 64]);
        b.extend_from_slice(&src6);
        b.extend_from_slice(&dst6);
        csum::pseudo_v6(src6, dst6, 6, (l4 + len) as u32)
    } else {
        b.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        b.extend_from_slice(&((20 + l4 + len) as u16).to_be_bytes());
        b.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
        b.extend_from_slice(&src4);
        b.extend_from_slice(&dst4);
        let ip = b.len() - 20;
        let c = csum::ipv4_header_checksum(&b[ip..]);
        b[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
        csum::pseudo_v4(src4, dst4, 6, (l4 + len) as u32)
    };
    let t = b.len();
    b.extend_from_slice(&(40000 + fl as u16).to_be_bytes());
    b.extend_from_slice(&80u16.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&7u32.to_be_bytes());
    b.extend_from_slice(&[((l4 / 4) as u8) << 4, flags, 2, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&opts);
    b.extend((0..len).map(|i| (i as u8) ^ (seq as u8)));
    let c = !csum::fold(csum::add_bytes(pseudo, &b[t..], false));
    b[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
    if let Some(Odd::Damage(at, x)) = odd {
        let at = usize::from(*at) % b.len();
        b[at] ^= x;
    }
    b
}

/// `bytes` as a packet: a first buffer of `cut` bytes (1 at least), then full ones.
fn packet(cache: &mut MempoolCache, bytes: &[u8], cut: usize) -> Option<PacketBuf> {
    let room = cache.pool().data_room() as usize;
    let mut parts = Vec::new();
    let mut rest = bytes;
    let mut first = cut.clamp(1, room);
    loop {
        let (a, b) = rest.split_at(first.min(rest.len()));
        let mut buf = cache.alloc()?;
        buf.copy_from(a);
        parts.push(buf);
        rest = b;
        first = room;
        if rest.is_empty() {
            break;
        }
    }
    let mut head = None;
    while let Some(mut b) = parts.pop() {
        b.set_next(head);
        head = Some(b);
    }
    head
}

/// The merged frame's lengths and checksums, checked with the checksum arithmetic alone.
fn check_merged(p: &PacketBuf) {
    let mut f = Vec::new();
    p.append_to(&mut f);
    let m = p.meta();
    assert!(m.segs >= 2, "a merged frame of {} segments", m.segs);
    let l2 = if f[12..14] == [0x81, 0x00] { 18 } else { 14 };
    let (t, pseudo) = if f[l2] >> 4 == 4 {
        let ip = &f[l2..l2 + 20];
        assert_eq!(
            usize::from(u16::from_be_bytes([ip[2], ip[3]])),
            f.len() - l2
        );
        assert_eq!(
            csum::ipv4_header_checksum(ip),
            u16::from_be_bytes([ip[10], ip[11]])
        );
        let (s, d) = (
            ip[12..16].try_into().unwrap(),
            ip[16..20].try_into().unwrap(),
        );
        (
            l2 + 20,
            csum::pseudo_v4(s, d, 6, (f.len() - l2 - 20) as u32),
        )
    } else {
        let ip = &f[l2..l2 + 40];
        assert_eq!(
            usize::from(u16::from_be_bytes([ip[4], ip[5]])),
            f.len() - l2 - 40
        );
        let (s, d) = (
            ip[8..24].try_into().unwrap(),
            ip[24..40].try_into().unwrap(),
        );
        (
            l2 + 40,
            csum::pseudo_v6(s, d, 6, (f.len() - l2 - 40) as u32),
        )
    };
    assert_eq!(
        csum::fold(csum::add_bytes(pseudo, &f[t..], false)),
        0xffff,
        "TCP checksum"
    );
}

fuzz_target!(|input: Input| {
    let pool = host_pool(BUFFERS).unwrap();
    let mut cache = pool.cache(32);
    let mut lro = Lro::new(usize::from(input.entries % 10));
    let mut flows = Flows {
        next_seq: [1000, 5_000_000, u32::MAX - 3000, 77],
        clock: [0; 4],
    };
    for burst in input.bursts.into_iter().take(MAX_BURSTS) {
        let mut batch = PacketBatch::new(MAX_FRAMES);
        for rx in burst.into_iter().take(MAX_FRAMES) {
            let bytes = match &rx.frame {
                Frame::Raw(b) if b.is_empty() => continue,
                Frame::Raw(b) => b.clone(),
                tcp => segment(tcp, &mut flows),
            };
            // The parser alone, on the bytes as they are and cut short.
            let mut flags = u32::from(rx.rx_flags.unwrap_or(0)) & 0x1f;
            // A device's "good" is taken on trust (that is what it is for): it may say
            // so only of a frame whose checksums are right, an undamaged segment.
            if matches!(
                rx.frame,
                Frame::Raw(_)
                    | Frame::Tcp {
                        odd: Some(Odd::Damage(..)),
                        ..
                    }
            ) {
                flags &= !(PacketMeta::RX_IP_CSUM_GOOD | PacketMeta::RX_L4_CSUM_GOOD);
            }
            let _ = lro::parse(&bytes, bytes.len(), flags);
            let n = usize::from(rx.cut) % (bytes.len() + 1);
            let _ = lro::parse(&bytes[..n], bytes.len(), flags);
            let Some(mut p) = packet(&mut cache, &bytes, usize::from(rx.cut)) else {
                break;
            };
            p.meta_mut().flags = flags;
            if batch.push(p).is_err() {
                break;
            }
        }
        let before = batch.len();
        lro.input(&mut batch, &mut cache);
        assert!(batch.len() <= before);
        for p in batch.drain() {
            // Merged here: RX_LRO with a count (a frame that came in marked RX_LRO
            // passes as it was, its count 0).
            if p.meta().flags & PacketMeta::RX_LRO != 0 && p.meta().segs != 0 {
                check_merged(&p);
            }
            cache.free(p);
        }
    }
    let s = *lro.stats();
    assert!(s.coalesced <= s.flushed);
    drop(cache);
    assert_eq!(
        pool.free_count(),
        BUFFERS as usize,
        "a buffer lost or freed twice"
    );
});
