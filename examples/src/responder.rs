//! The responder's frame logic: answers ARP requests for one IPv4 address and ICMP echo
//! requests to it, in place in the received frame, and says why it ignores anything else.
//!
//! Frames are parsed and headers written with `etherparse`; nothing here trusts a length
//! field before checking it against the frame, so any byte string gives a verdict, never a
//! panic (property-tested below).

use etherparse::checksum::Sum16BitWords;
use etherparse::{
    ArpEthIpv4Packet, ArpHardwareId, ArpOperation, ArpPacketSlice, EtherType, Ethernet2Header,
    Icmpv4Header, Icmpv4Slice, Icmpv4Type, IpNumber, Ipv4HeaderSlice,
};

/// Ethernet header length.
pub const ETH_LEN: usize = Ethernet2Header::LEN;
/// Length of an ARP reply frame (Ethernet + ARP for Ethernet/IPv4), without padding: the
/// NIC pads it to the 60-byte minimum if it needs to.
pub const ARP_REPLY_LEN: usize = ETH_LEN + ArpEthIpv4Packet::LEN;
/// TTL of echo replies (Linux's default).
pub const REPLY_TTL: u8 = 64;

/// Why a frame got no reply. Every received frame either gets a reply or one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ignored {
    /// Shorter than its headers say, a bad IPv4 version/header length/total length, or an
    /// ARP packet that is not Ethernet/IPv4.
    Malformed,
    /// Neither to our MAC address nor broadcast.
    NotOurMac,
    /// An EtherType other than ARP and IPv4 (VLAN tags included).
    OtherEthertype,
    /// ARP, but not a request (e.g. a reply or RARP).
    ArpNotRequest,
    /// An ARP request for another address.
    ArpNotOurIp,
    /// IPv4 with a wrong header checksum.
    Ipv4BadChecksum,
    /// IPv4 to another address (broadcast and multicast included).
    Ipv4NotOurIp,
    /// An IPv4 fragment (echo requests are answered only whole).
    Ipv4Fragment,
    /// IPv4 with options (a reply would have to process them, e.g. record route).
    Ipv4Options,
    /// IPv4, not ICMP.
    Ipv4OtherProtocol,
    /// ICMP, not an echo request (type 8 code 0).
    IcmpNotEchoRequest,
    /// An echo request with a wrong ICMP checksum.
    IcmpBadChecksum,
}

impl Ignored {
    /// Every reason, in the order [`Ignored::index`] numbers them.
    pub const ALL: [Ignored; 12] = [
        Ignored::Malformed,
        Ignored::NotOurMac,
        Ignored::OtherEthertype,
        Ignored::ArpNotRequest,
        Ignored::ArpNotOurIp,
        Ignored::Ipv4BadChecksum,
        Ignored::Ipv4NotOurIp,
        Ignored::Ipv4Fragment,
        Ignored::Ipv4Options,
        Ignored::Ipv4OtherProtocol,
        Ignored::IcmpNotEchoRequest,
        Ignored::IcmpBadChecksum,
    ];

    /// Position in [`Ignored::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The counter's name in the responder's output (`rx_<name>=N`).
    pub fn name(self) -> &'static str {
        match self {
            Ignored::Malformed => "malformed",
            Ignored::NotOurMac => "not_our_mac",
            Ignored::OtherEthertype => "other",
            Ignored::ArpNotRequest => "arp_not_request",
            Ignored::ArpNotOurIp => "arp_not_our_ip",
            Ignored::Ipv4BadChecksum => "ipv4_bad_checksum",
            Ignored::Ipv4NotOurIp => "ipv4_not_our_ip",
            Ignored::Ipv4Fragment => "ipv4_fragment",
            Ignored::Ipv4Options => "ipv4_options",
            Ignored::Ipv4OtherProtocol => "ipv4_other_protocol",
            Ignored::IcmpNotEchoRequest => "icmp_not_echo_request",
            Ignored::IcmpBadChecksum => "icmp_bad_checksum",
        }
    }
}

/// What to do with a received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The frame's first `len` bytes are now an ARP reply: send them.
    ArpReply(usize),
    /// The frame's first `len` bytes are now an ICMP echo reply: send them.
    EchoReply(usize),
    /// No reply; the frame is unchanged.
    Ignore(Ignored),
}

/// Answers for one MAC and IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Responder {
    /// Our MAC address (the port's).
    pub mac: [u8; 6],
    /// The IPv4 address we answer for.
    pub ip: [u8; 4],
}

impl Responder {
    /// Turns `frame` into its reply in place, or says why not (then `frame` is unchanged).
    /// A reply is never longer than the request, so it always fits.
    pub fn handle(&self, frame: &mut [u8]) -> Verdict {
        match self.classify(frame) {
            Ok(Action::Arp(req)) => {
                let reply = ArpEthIpv4Packet {
                    operation: ArpOperation::REPLY,
                    sender_mac: self.mac,
                    sender_ipv4: self.ip,
                    target_mac: req.sender_mac,
                    target_ipv4: req.sender_ipv4,
                };
                let eth = Ethernet2Header {
                    destination: req.eth_src,
                    source: self.mac,
                    ether_type: EtherType::ARP,
                };
                frame[..ETH_LEN].copy_from_slice(&eth.to_bytes());
                frame[ETH_LEN..ARP_REPLY_LEN].copy_from_slice(&reply.to_bytes());
                Verdict::ArpReply(ARP_REPLY_LEN)
            }
            Ok(Action::Echo(req)) => {
                let eth = Ethernet2Header {
                    destination: req.eth_src,
                    source: self.mac,
                    ether_type: EtherType::IPV4,
                };
                frame[..ETH_LEN].copy_from_slice(&eth.to_bytes());
                let ip_end = ETH_LEN + req.ip_len;
                let mut ip = req.ip;
                ip.destination = ip.source;
                ip.source = self.ip;
                ip.time_to_live = REPLY_TTL;
                ip.header_checksum = ip.calc_header_checksum();
                frame[ETH_LEN..req.icmp_start].copy_from_slice(&ip.to_bytes());
                let icmp_payload_start = req.icmp_start + Icmpv4Header::MIN_LEN;
                let icmp = Icmpv4Header::with_checksum(
                    Icmpv4Type::EchoReply(req.echo),
                    &frame[icmp_payload_start..ip_end],
                );
                frame[req.icmp_start..icmp_payload_start].copy_from_slice(&icmp.to_bytes());
                Verdict::EchoReply(ip_end)
            }
            Err(why) => Verdict::Ignore(why),
        }
    }

    /// Checks `frame` and gathers what its reply needs, without changing it.
    fn classify(&self, frame: &[u8]) -> Result<Action, Ignored> {
        let (eth, payload) = Ethernet2Header::from_slice(frame).map_err(|_| Ignored::Malformed)?;
        if eth.destination != self.mac && eth.destination != [0xff; 6] {
            return Err(Ignored::NotOurMac);
        }
        match eth.ether_type {
            EtherType::ARP => self.classify_arp(eth.source, payload),
            EtherType::IPV4 => self.classify_ipv4(eth.source, payload),
            _ => Err(Ignored::OtherEthertype),
        }
    }

    fn classify_arp(&self, eth_src: [u8; 6], payload: &[u8]) -> Result<Action, Ignored> {
        let arp = ArpPacketSlice::from_slice(payload).map_err(|_| Ignored::Malformed)?;
        if arp.hw_addr_type() != ArpHardwareId::ETHERNET || arp.proto_addr_type() != EtherType::IPV4
        {
            return Err(Ignored::Malformed);
        }
        let arp = arp
            .to_packet()
            .try_eth_ipv4()
            .map_err(|_| Ignored::Malformed)?;
        if arp.operation != ArpOperation::REQUEST {
            return Err(Ignored::ArpNotRequest);
        }
        if arp.target_ipv4 != self.ip {
            return Err(Ignored::ArpNotOurIp);
        }
        Ok(Action::Arp(ArpRequest {
            eth_src,
            sender_mac: arp.sender_mac,
            sender_ipv4: arp.sender_ipv4,
        }))
    }

    fn classify_ipv4(&self, eth_src: [u8; 6], payload: &[u8]) -> Result<Action, Ignored> {
        let ip = Ipv4HeaderSlice::from_slice(payload).map_err(|_| Ignored::Malformed)?;
        let header_len = ip.slice().len();
        let total = usize::from(ip.total_len());
        // from_slice checked version, IHL and total_len >= header length; the frame may
        // carry padding after the datagram but must hold all of it.
        if total > payload.len() {
            return Err(Ignored::Malformed);
        }
        let header = ip.to_header();
        if header.header_checksum != header.calc_header_checksum() {
            return Err(Ignored::Ipv4BadChecksum);
        }
        if ip.destination() != self.ip {
            return Err(Ignored::Ipv4NotOurIp);
        }
        if ip.is_fragmenting_payload() {
            return Err(Ignored::Ipv4Fragment);
        }
        if !ip.options().is_empty() {
            return Err(Ignored::Ipv4Options);
        }
        if ip.protocol() != IpNumber::ICMP {
            return Err(Ignored::Ipv4OtherProtocol);
        }
        let icmp_bytes = &payload[header_len..total];
        let icmp = Icmpv4Slice::from_slice(icmp_bytes).map_err(|_| Ignored::Malformed)?;
        let Icmpv4Type::EchoRequest(echo) = icmp.icmp_type() else {
            return Err(Ignored::IcmpNotEchoRequest);
        };
        // The one's complement sum over the whole message, checksum included, is 0xffff.
        if Sum16BitWords::new().add_slice(icmp_bytes).ones_complement() != 0 {
            return Err(Ignored::IcmpBadChecksum);
        }
        Ok(Action::Echo(EchoRequest {
            eth_src,
            ip: header,
            ip_len: total,
            icmp_start: ETH_LEN + header_len,
            echo,
        }))
    }
}

enum Action {
    Arp(ArpRequest),
    Echo(EchoRequest),
}

struct ArpRequest {
    eth_src: [u8; 6],
    sender_mac: [u8; 6],
    sender_ipv4: [u8; 4],
}

struct EchoRequest {
    eth_src: [u8; 6],
    ip: etherparse::Ipv4Header,
    /// IPv4 total length (header + ICMP message).
    ip_len: usize,
    /// Offset of the ICMP header in the frame.
    icmp_start: usize,
    echo: etherparse::IcmpEchoHeader,
}

/// The responder's counters: replies, and every ignored frame by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames received.
    pub rx: u64,
    /// ARP replies made.
    pub arp_replies: u64,
    /// ICMP echo replies made.
    pub echo_replies: u64,
    /// Ignored frames, indexed by [`Ignored::index`].
    pub ignored: [u64; Ignored::ALL.len()],
}

impl Counters {
    /// Counts one verdict.
    pub fn count(&mut self, v: Verdict) {
        self.rx += 1;
        match v {
            Verdict::ArpReply(_) => self.arp_replies += 1,
            Verdict::EchoReply(_) => self.echo_replies += 1,
            Verdict::Ignore(why) => self.ignored[why.index()] += 1,
        }
    }

    /// Ignored frames for one reason.
    pub fn ignored(&self, why: Ignored) -> u64 {
        self.ignored[why.index()]
    }

    /// Ignored frames, all reasons.
    pub fn ignored_total(&self) -> u64 {
        self.ignored.iter().sum()
    }

    /// `rx=N arp_replies=N echo_replies=N rx_<reason>=N ...` (every reason, zeros too, so a
    /// script can always find its counter).
    pub fn summary(&self) -> String {
        let mut s = format!(
            "rx={} arp_replies={} echo_replies={} ignored={}",
            self.rx,
            self.arp_replies,
            self.echo_replies,
            self.ignored_total()
        );
        for why in Ignored::ALL {
            s += &format!(" rx_{}={}", why.name(), self.ignored(why));
        }
        s
    }
}

/// What a software check of a received TCP or UDP over IPv4 checksum found, over every
/// buffer of a chain: how an application sees that the driver and the device (or the
/// driver completing a checksum the sender left partial) delivered valid segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Checksum {
    /// The checksum verifies.
    Good,
    /// It does not.
    Bad,
    /// UDP sent without a checksum (0).
    Absent,
}

/// Checks the TCP or UDP checksum of an IPv4 packet in `pkt` (RFC 793/768 pseudo header),
/// over every segment; `None` if it is not TCP or UDP over IPv4 with its headers whole in
/// the first buffer.
pub fn l4_checksum(pkt: &tenge::PacketBuf) -> Option<L4Checksum> {
    use tenge::packet::csum::{add_bytes, fold, sum_range};
    let eth = pkt.data();
    let ip = Ipv4HeaderSlice::from_slice(eth.get(ETH_LEN..)?).ok()?;
    let proto = ip.protocol();
    if proto != IpNumber::TCP && proto != IpNumber::UDP {
        return None;
    }
    let l4_start = ETH_LEN + ip.slice().len();
    let l4_len = usize::from(ip.total_len()).checked_sub(ip.slice().len())?;
    if proto == IpNumber::UDP {
        let udp = eth.get(l4_start..l4_start + 8)?;
        if udp[6..8] == [0, 0] {
            return Some(L4Checksum::Absent);
        }
    }
    if l4_start + l4_len > pkt.pkt_len() {
        return Some(L4Checksum::Bad);
    }
    // The pseudo header, summed as big-endian words like the rest.
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&ip.source());
    pseudo[4..8].copy_from_slice(&ip.destination());
    pseudo[9] = proto.0;
    pseudo[10..].copy_from_slice(&(l4_len as u16).to_be_bytes());
    let acc = add_bytes(sum_range(pkt, l4_start, l4_start + l4_len)?, &pseudo, false);
    Some(if fold(acc) == 0xffff {
        L4Checksum::Good
    } else {
        L4Checksum::Bad
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn l4_checksums_are_checked_over_chains_and_padding() {
        let pool = tenge::packet::mempool::host_pool(8).unwrap();
        let payload: Vec<u8> = (0..1000).map(|i| (i * 13) as u8).collect();
        for tcp in [false, true] {
            let b = etherparse::PacketBuilder::ethernet2([2; 6], MAC).ipv4([10, 0, 0, 1], IP, 64);
            let mut f = Vec::new();
            if tcp {
                b.tcp(1, 2, 3, 4).write(&mut f, &payload).unwrap();
            } else {
                b.udp(1, 2).write(&mut f, &payload).unwrap();
            }
            // Split over three buffers, with 4 bytes of padding after the datagram.
            f.extend_from_slice(&[0xee; 4]);
            let chain = |bytes: &[u8]| {
                let mut segs: Vec<tenge::PacketBuf> = bytes
                    .chunks(400)
                    .map(|c| {
                        let mut b = pool.alloc().unwrap();
                        assert!(b.copy_from(c));
                        b
                    })
                    .collect();
                let mut head = segs.pop();
                while let Some(mut s) = segs.pop() {
                    s.set_next(head);
                    head = Some(s);
                }
                head.unwrap()
            };
            assert_eq!(l4_checksum(&chain(&f)), Some(L4Checksum::Good), "tcp {tcp}");
            let n = f.len();
            f[n - 10] ^= 1;
            assert_eq!(l4_checksum(&chain(&f)), Some(L4Checksum::Bad), "tcp {tcp}");
        }
        let mut arp = pool.alloc().unwrap();
        assert!(arp.copy_from(&[0u8; 60]));
        assert_eq!(l4_checksum(&arp), None);
    }

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x7e, 0x00, 0x00];
    const IP: [u8; 4] = [10, 99, 0, 2];
    const R: Responder = Responder { mac: MAC, ip: IP };

    /// RFC 1071 Internet checksum, written out here as an oracle independent of etherparse.
    fn inet_checksum(bytes: &[u8]) -> [u8; 2] {
        let mut sum: u32 = bytes
            .chunks(2)
            .map(|w| u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0)))
            .sum();
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        (!(sum as u16)).to_be_bytes()
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// An ARP request from the peer for `target`, as Linux sends it (42 bytes), padded with
    /// `pad` bytes as a NIC may deliver it.
    fn arp_request(target: [u8; 4], pad: usize) -> Vec<u8> {
        let mut f = hex("ffffffffffff 021122334455 0806
             0001 0800 06 04 0001 021122334455 0a630001 000000000000");
        f.extend_from_slice(&target);
        f.resize(f.len() + pad, 0xee);
        f
    }

    /// The echo request `ping -c1 -s 8 10.99.0.2` from 10.99.0.1 sends (id 0x1234, seq 1,
    /// payload 01..08), checksums computed by hand.
    fn echo_request() -> Vec<u8> {
        hex("525400 7e0000 021122334455 0800
             4500 0024 abcd 4000 40 01 7a43 0a630001 0a630002
             08 00 d5b6 1234 0001 0102030405060708")
    }

    #[test]
    fn arp_request_for_us_gets_a_byte_exact_reply() {
        for pad in [0, 18] {
            let mut f = arp_request(IP, pad);
            assert_eq!(R.handle(&mut f), Verdict::ArpReply(42));
            let want = hex("021122334455 525400 7e0000 0806
                 0001 0800 06 04 0002 5254007e0000 0a630002 021122334455 0a630001");
            assert_eq!(&f[..42], want.as_slice());
        }
    }

    #[test]
    fn echo_request_gets_a_byte_exact_reply() {
        // Checksums of the request, checked independently of the code under test.
        let req = echo_request();
        assert_eq!(inet_checksum(&req[14..34]), [0, 0]);
        assert_eq!(inet_checksum(&req[34..]), [0, 0]);
        for pad in [0, 10] {
            let mut f = echo_request();
            f.resize(f.len() + pad, 0xee);
            assert_eq!(R.handle(&mut f), Verdict::EchoReply(50));
            // Addresses swapped, TTL 64, type 0; IPv4 checksum unchanged (same TTL, same
            // address sum), ICMP checksum + 0x0800.
            let want = hex("021122334455 525400 7e0000 0800
                 4500 0024 abcd 4000 40 01 7a43 0a630002 0a630001
                 00 00 ddb6 1234 0001 0102030405060708");
            assert_eq!(&f[..50], want.as_slice());
        }
    }

    #[test]
    fn reply_ttl_is_reset_and_checksum_recomputed() {
        let mut f = echo_request();
        f[22] = 3; // TTL 3
        f[24..26].fill(0);
        let sum = inet_checksum(&f[14..34]);
        f[24..26].copy_from_slice(&sum);
        assert_eq!(R.handle(&mut f), Verdict::EchoReply(50));
        assert_eq!(f[22], REPLY_TTL);
        assert_eq!(&f[24..26], &[0x7a, 0x43]);
    }

    fn ignored(mut f: Vec<u8>) -> Ignored {
        let before = f.clone();
        match R.handle(&mut f) {
            Verdict::Ignore(why) => {
                assert_eq!(f, before, "an ignored frame is left unchanged");
                why
            }
            v => panic!("expected no reply, got {v:?}"),
        }
    }

    #[test]
    fn everything_else_is_ignored_by_reason() {
        use Ignored::*;
        assert_eq!(ignored(vec![]), Malformed);
        assert_eq!(ignored(echo_request()[..13].to_vec()), Malformed);
        assert_eq!(ignored(arp_request(IP, 0)[..41].to_vec()), Malformed);
        assert_eq!(ignored(arp_request([10, 99, 0, 3], 0)), ArpNotOurIp);
        let mut f = arp_request(IP, 0);
        f[21] = 2; // a reply
        assert_eq!(ignored(f), ArpNotRequest);
        let mut f = arp_request(IP, 0);
        f[15] = 6; // hardware type IEEE 802
        assert_eq!(ignored(f), Malformed);
        let mut f = echo_request();
        f[0] = 0x02; // another MAC
        assert_eq!(ignored(f), NotOurMac);
        let mut f = echo_request();
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        assert_eq!(ignored(f), OtherEthertype);
        // Truncated datagram: total length beyond the frame.
        assert_eq!(ignored(echo_request()[..49].to_vec()), Malformed);
        let mut f = echo_request();
        f[14] = 0x65; // version 6
        assert_eq!(ignored(f), Malformed);
        let mut f = echo_request();
        f[25] ^= 1;
        assert_eq!(ignored(f), Ipv4BadChecksum);
        let mut f = echo_request();
        f[37] ^= 1;
        assert_eq!(ignored(f), IcmpBadChecksum);

        // Header edits that keep the IPv4 checksum valid.
        let fix = |mut f: Vec<u8>| {
            f[24..26].fill(0);
            let ihl = usize::from(f[14] & 0xf) * 4;
            let sum = inet_checksum(&f[14..14 + ihl]);
            f[24..26].copy_from_slice(&sum);
            f
        };
        let mut f = echo_request();
        f[33] = 3; // 10.99.0.3
        assert_eq!(ignored(fix(f)), Ipv4NotOurIp);
        let mut f = echo_request();
        f[20] = 0x20; // more fragments
        assert_eq!(ignored(fix(f)), Ipv4Fragment);
        let mut f = echo_request();
        f[23] = 17; // UDP
        assert_eq!(ignored(fix(f)), Ipv4OtherProtocol);
        let mut f = echo_request();
        f[34] = 0; // an echo reply
        assert_eq!(ignored(fix(f)), IcmpNotEchoRequest);
        let mut f = echo_request();
        f[35] = 1; // echo request with code 1
        assert_eq!(ignored(fix(f)), IcmpNotEchoRequest);
        // IHL 6 with a 4-byte NOP option, total length 40.
        let mut f = echo_request();
        f[14] = 0x46;
        f[17] = 0x28;
        f.splice(34..34, [1, 1, 1, 1]);
        assert_eq!(ignored(fix(f)), Ipv4Options);
    }

    #[test]
    fn counters_name_every_reason_once() {
        let mut c = Counters::default();
        c.count(Verdict::ArpReply(42));
        c.count(Verdict::Ignore(Ignored::OtherEthertype));
        c.count(Verdict::Ignore(Ignored::OtherEthertype));
        let s = c.summary();
        assert!(
            s.starts_with("rx=3 arp_replies=1 echo_replies=0 ignored=2 "),
            "{s}"
        );
        assert!(s.contains(" rx_other=2 "), "{s}");
        for (i, why) in Ignored::ALL.iter().enumerate() {
            assert_eq!(why.index(), i);
            assert_eq!(s.matches(&format!(" rx_{}=", why.name())).count(), 1);
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(mut f in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let before = f.clone();
            match R.handle(&mut f) {
                Verdict::ArpReply(n) | Verdict::EchoReply(n) => prop_assert!(n <= f.len()),
                Verdict::Ignore(_) => prop_assert_eq!(f, before),
            }
        }

        /// Random bytes after a valid Ethernet + IPv4/ICMP or ARP prefix reach the deeper
        /// parsers, which random bytes alone rarely do.
        #[test]
        fn mutated_requests_never_panic(
            arp in any::<bool>(),
            edits in proptest::collection::vec((0usize..64, any::<u8>()), 0..8),
            len in 0usize..80,
        ) {
            let mut f = if arp { arp_request(IP, 0) } else { echo_request() };
            for (at, byte) in edits {
                if let Some(b) = f.get_mut(at) {
                    *b = byte;
                }
            }
            f.truncate(len);
            let before = f.clone();
            match R.handle(&mut f) {
                Verdict::ArpReply(n) | Verdict::EchoReply(n) => {
                    prop_assert!(n <= f.len());
                    // A reply always goes back to where the request came from.
                    prop_assert_eq!(&f[..6], &before[6..12]);
                    prop_assert_eq!(&f[6..12], &MAC);
                }
                Verdict::Ignore(_) => prop_assert_eq!(f, before),
            }
        }
    }
}
