//! End-to-end tests of TX offloads on the wire: the guest's `tenge-e2e tx-offload` sends
//! TCP and UDP over IPv4 and IPv6 with checksum requests (their checksum fields scrambled)
//! and TCP payloads near 64 KB with TSO (MSS 536 and 1448, odd lengths), then four
//! malformed requests. QEMU's pcap of the wire, parsed by etherparse, must hold exactly
//! the checksummed packets, byte for byte as they should be, and the TSO packets as
//! MSS-sized segments: sequence numbers contiguous, no PSH before the last, every IPv4 and
//! TCP checksum valid, the payloads concatenated equal to what was sent; and nothing of
//! the malformed ones.
//!
//! They boot QEMU, so they are `#[ignore]`d in a plain `cargo test`; run them with
//! `--ignored` after `cargo build --release --bins`.

use std::time::Duration;

use etherparse::{NetSlice, SlicedPacket, TransportSlice, VlanSlice};
use tenge_testbed::TapPeer;
use tenge_testbed::{GuestConfig, Nic, NicModel};
use tenge_tests::offload::{cases, first_seq, frame, payload};
use tenge_tests::{bin, dgram_nic, read_pcap, run_ok, scratch_dir, tail, vlan_tagged, wait_ok};

/// Checks one TSO segment, which carries an 802.1Q tag `vlan` (or none); returns (sequence
/// number, payload, PSH).
fn segment(f: &[u8], n: usize, vlan: Option<u16>) -> (u32, Vec<u8>, bool) {
    let p = SlicedPacket::from_ethernet(f).unwrap_or_else(|e| panic!("case {n}: {e}"));
    let l2 = match (vlan, p.vlan()) {
        (None, None) => 14,
        (Some(tci), Some(VlanSlice::SingleVlan(v))) => {
            assert_eq!(
                (v.vlan_identifier().value(), v.priority_code_point().value()),
                (tci & 0xfff, (tci >> 13) as u8),
                "case {n}: the tag"
            );
            18
        }
        (want, got) => panic!("case {n}: tag {want:x?} asked, {got:?} on the wire"),
    };
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
        panic!("case {n}: a segment that is not TCP")
    };
    let sum = match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header().to_header();
            assert_eq!(
                h.header_checksum,
                h.calc_header_checksum(),
                "case {n}: IPv4 header checksum"
            );
            assert_eq!(
                usize::from(h.total_len),
                f.len() - l2,
                "case {n}: IPv4 total length"
            );
            tcp.to_header()
                .calc_checksum_ipv4(&h, tcp.payload())
                .unwrap()
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header().to_header();
            assert_eq!(usize::from(h.payload_length), f.len() - l2 - 40, "case {n}");
            tcp.to_header()
                .calc_checksum_ipv6(&h, tcp.payload())
                .unwrap()
        }
        _ => panic!("case {n}: not IP"),
    };
    assert_eq!(tcp.checksum(), sum, "case {n}: TCP checksum");
    (tcp.sequence_number(), tcp.payload().to_vec(), tcp.psh())
}

#[test]
#[ignore = "boots a QEMU guest"]
fn e1000e_tx_checksums_and_tso_on_the_wire() {
    tx_checksums_and_tso_on_the_wire(NicModel::E1000e, None, "");
}

/// The same with an 802.1Q tag on every packet: tenge inserts it in software (CTRL.VME
/// off) and moves the checksum offsets of the context with it; then with stripping on,
/// the 82574 inserts it (VLE and the tag in each data descriptor) beside the context.
#[test]
#[ignore = "boots a QEMU guest"]
fn e1000e_tx_checksums_and_tso_with_a_vlan_tag_on_the_wire() {
    tx_checksums_and_tso_on_the_wire(NicModel::E1000e, Some(0x6123), "");
    tx_checksums_and_tso_on_the_wire(NicModel::E1000e, Some(0x0ffe), " --vlan-strip");
}

/// The same on igb: an advanced context descriptor (index 0) and advanced data
/// descriptors with IXSM/TXSM and TSE (`hw/net/igb_core.c` `igb_setup_tx_offloads`).
#[test]
#[ignore = "boots a QEMU guest"]
fn igb_tx_checksums_and_tso_on_the_wire() {
    tx_checksums_and_tso_on_the_wire(NicModel::Igb, None, "");
}

/// On igb with an 802.1Q tag on every packet: the tag in the same context descriptor as the
/// checksum and TSO fields, VLE in the data descriptors.
#[test]
#[ignore = "boots a QEMU guest"]
fn igb_tx_checksums_and_tso_with_a_vlan_tag_on_the_wire() {
    tx_checksums_and_tso_on_the_wire(NicModel::Igb, Some(0xa005), "");
}

/// The offload cases on the wire; with `vlan`, every packet asks for that tag too
/// (`extra`: more `tenge-e2e tx-offload` arguments).
fn tx_checksums_and_tso_on_the_wire(model: NicModel, vlan: Option<u16>, extra: &str) {
    let dir = scratch_dir(&format!("tx-offload-{model:?}-{vlan:?}"));
    let (mut nic, _peer) = dgram_nic(model);
    let pcap = dir.join("offload.pcap");
    nic.dump = Some(pcap.clone());
    let e2e = bin("tenge-e2e");
    let cfg = GuestConfig {
        nics: vec![nic],
        timeout: Duration::from_secs(300),
        ..GuestConfig::default()
    };
    let tag = vlan.map_or(String::new(), |t| format!(" --vlan {t}"));
    let log = run_ok(
        &cfg,
        &format!("{e2e} tx-offload {}{tag}{extra}\n", Nic::pci_addr(0)),
    );
    // virtio-net on a backend without a vnet header (QEMU hides CSUM and HOST_TSO): every
    // request served in software, the TSO by the software GSO.
    let who = match model {
        NicModel::VirtioNet { .. } => "software",
        _ => "device",
    };
    check_offload_log(&log, who, who);
    check_offload_wire(&read_pcap(&pcap).expect("QEMU's pcap"), true, vlan);
}

/// The guest's summary: five bad requests counted, each by its reason, in the port's
/// totals and its queue's (header lengths that do not match the headers, a checksum on a
/// packet too short for its headers, a TCP checksum on UDP, TSO with an MSS of 0, TSO on
/// UDP), and the offloads served as expected.
fn check_offload_log(log: &str, ip: &str, l4_tso: &str) {
    assert!(log.contains("bad_offload=5 "), "{}", tail(log, 20));
    let reasons = "header_length=1 too_short=1 protocol=1 zero_mss=1 tso_not_tcp=1";
    for name in ["BAD-OFFLOAD", "BAD-OFFLOAD-QUEUE0"] {
        let got = log
            .lines()
            .find_map(|l| l.trim_end().strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} line: {}", tail(log, 20)));
        assert_eq!(got, reasons, "{name}");
    }
    let want = format!(
        "OFFLOADS tx_ipv4_csum={ip} tx_tcp_csum={l4_tso} tx_udp_csum={l4_tso} tx_tso={l4_tso}"
    );
    assert!(log.contains(&want), "want `{want}`: {}", tail(log, 20));
}

/// The wire holds exactly the checksummed packets, byte for byte, and the TSO packets as
/// MSS-sized segments with every header right; nothing of the malformed requests.
/// `psh_may_go`: QEMU's software TSO clears PSH on the last segment too. `vlan`: every
/// packet carries this 802.1Q tag after its addresses.
fn check_offload_wire(wire: &[Vec<u8>], psh_may_go: bool, vlan: Option<u16>) {
    let mut frames = wire.iter();
    for (n, c) in cases().iter().enumerate() {
        let (want, _) = frame(n, c);
        let want = match vlan {
            Some(t) => vlan_tagged(&want, t),
            None => want,
        };
        if c.mss == 0 {
            let got = frames
                .next()
                .unwrap_or_else(|| panic!("case {n} missing from the wire"));
            assert_eq!(got, &want, "case {n} ({c:?}): not the frame it should be");
            continue;
        }
        // TSO: segments until the payload is complete.
        let all = payload(n, c);
        let mut at = 0usize;
        while at < all.len() {
            let f = frames
                .next()
                .unwrap_or_else(|| panic!("case {n}: segment at {at} missing"));
            let (seq, data, psh) = segment(f, n, vlan);
            assert_eq!(
                seq,
                first_seq(n).wrapping_add(at as u32),
                "case {n}: sequence"
            );
            let last = at + data.len() == all.len();
            let want_len = if last {
                all.len() - at
            } else {
                usize::from(c.mss)
            };
            assert_eq!(data.len(), want_len, "case {n}: segment at {at}");
            assert_eq!(data, all[at..at + data.len()], "case {n}: payload at {at}");
            // Never PSH before the last segment. QEMU's software TSO clears FIN and PSH in
            // the header every segment shares (`net_tx_pkt_tcp_fragment_init`, net/tx_pkt.c),
            // so the last loses it too; a real 82574 keeps them on the last (its
            // DTXTCPFLGL/H masks, 82574 §10.2.6), as tenge's software GSO and Linux do.
            assert!(!psh || last, "case {n}: PSH before the last segment");
            if !psh_may_go && last {
                assert!(psh, "case {n}: PSH lost on the last segment");
            }
            at += data.len();
        }
    }
    assert_eq!(
        frames.count(),
        0,
        "frames on the wire beyond the cases (a malformed request sent?)"
    );
}

/// virtio-net on a backend without a vnet header (QEMU's `-netdev dgram` hides CSUM and
/// HOST_TSO): the same requests served by tenge in software (checksums computed, TSO cut by
/// the software GSO), checked on QEMU's pcap exactly as the devices' work is.
#[test]
#[ignore = "boots a QEMU guest"]
fn virtio_tx_checksums_and_tso_in_software_on_the_wire() {
    tx_checksums_and_tso_on_the_wire(NicModel::virtio(), None, "");
}

/// virtio-net on a tap with CSUM and HOST_TSO4/6 negotiated: each request goes to the
/// device in the `virtio_net_hdr` (NEEDS_CSUM, GSO_TCPV4/6). QEMU hands the header to the
/// host kernel with the frame; in the tap's namespace a bridge forwards it to a veth whose
/// TSO and checksum offloads are off, so Linux's own GSO cuts the segments and completes
/// the checksums from what tenge wrote. A packet socket on the veth's peer sees the wire.
#[test]
#[ignore = "boots a QEMU guest"]
fn virtio_tx_checksums_and_tso_by_the_device_segmented_by_linux() {
    tenge_tests::retry_on_qemu_failure(|| {
        let peer = TapPeer::new().expect("tap in a namespace");
        let ns = |cmd: &str| {
            peer.exec_ok(&["sh", "-c", cmd])
                .unwrap_or_else(|e| panic!("{cmd}: {e}"))
        };
        let tap = peer.ifname().to_owned();
        ns(&format!(
            "ip link add txo0 type veth peer name txo1 && ip link add txobr type bridge && \
             ip link set {tap} master txobr && ip link set txo0 master txobr && \
             ethtool -K txo0 tso off gso off tx off sg off >/dev/null && \
             ip link set txo1 up && ip link set txo0 up && ip link set txobr up"
        ));
        let socket = peer
            .frame_socket_on("txo1")
            .expect("packet socket on the veth");
        let nic = tenge_tests::nic(NicModel::virtio(), peer.backend());
        let e2e = bin("tenge-e2e");
        let cfg = GuestConfig {
            nics: vec![nic],
            timeout: Duration::from_secs(300),
            ..GuestConfig::default()
        };
        let guest = tenge_testbed::Guest::boot(
            &cfg,
            &format!(
                "{e2e} tx-offload {} --tx-checksum --tso\n",
                Nic::pci_addr(0)
            ),
        )
        .expect("boot guest");
        // The test frames' source MAC picks them out of what else the namespace sends.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let src = tenge_tests::offload::SRC_MAC;
                let mut wire = Vec::new();
                let mut buf = vec![0u8; 65536];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match socket.recv(&mut buf, Duration::from_millis(200)) {
                        Ok(Some(n)) if n >= 14 && buf[6..12] == src => wire.push(buf[..n].to_vec()),
                        Ok(_) => {}
                        Err(e) => panic!("packet socket: {e}"),
                    }
                }
                wire
            })
        };
        let log = wait_ok(guest);
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let wire = reader.join().expect("the packet socket's reader");
        check_offload_log(&log, "software", "device");
        check_offload_wire(&wire, false, None);
    })
}

/// One RX checksum case: the frame, the verdicts (`good`, `bad`, `-`) the protocols
/// call for, and its packet type as rxdump prints it (`ipv4/tcp`).
struct RxCase {
    frame: Vec<u8>,
    ip: &'static str,
    l4: &'static str,
    ptype: String,
}

/// Good and bad checksums, TCP and UDP over IPv4 and IPv6, built by etherparse with
/// correct checksums and then broken where the case says: the IPv4 header checksum, or the
/// TCP or UDP one. IPv6 has no header checksum: `-`.
fn rx_cases(dst: [u8; 6]) -> Vec<RxCase> {
    let mut v = Vec::new();
    for n in 0..40usize {
        let (v6, udp, broken) = (n % 2 == 1, n % 4 >= 2, n % 5);
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0x5e, 1], dst);
        let b = if v6 {
            let mut s = [0u8; 16];
            s[0] = 0xfd;
            let mut d = s;
            s[15] = 1;
            d[15] = n as u8 + 2;
            b.ipv6(s, d, 64)
        } else {
            b.ipv4([10, 9, 0, 1], [10, 9, 1, n as u8], 64)
        };
        let payload = vec![n as u8; 20 + n * 13];
        let mut f = Vec::new();
        if udp {
            b.udp(7000 + n as u16, 9).write(&mut f, &payload).unwrap();
        } else {
            b.tcp(8000 + n as u16, 80, n as u32 * 1000, 512)
                .ack(1)
                .write(&mut f, &payload)
                .unwrap();
        }
        let l4 = if v6 { 54 } else { 34 };
        let (mut ip, mut l4v) = (if v6 { "-" } else { "good" }, "good");
        match broken {
            // The IPv4 header checksum broken (IPv6: nothing to break; the L4 one instead).
            1 if !v6 => {
                f[24] ^= 0x5a;
                ip = "bad";
            }
            1 | 2 => {
                let at = l4 + if udp { 6 } else { 16 };
                f[at] ^= 0x5a;
                l4v = "bad";
            }
            _ => {}
        }
        v.push(RxCase {
            frame: f,
            ip,
            l4: l4v,
            ptype: format!(
                "{}/{}",
                if v6 { "ipv6" } else { "ipv4" },
                if udp { "udp" } else { "tcp" }
            ),
        });
    }
    v
}

/// RX checksum verdicts on e1000e (RXCSUM.IPOFLD|TUOFLD, IPCS/TCPCS/UDPCS and IPE/TCPE in
/// the write-back): frames from the host with good and broken checksums are reported as
/// the protocols say, each frame once. The packet type too: QEMU's code in the extended
/// status says IPv4 or IPv6 "with TCP or UDP", and UDPCS beside it which of the two.
#[test]
#[ignore = "boots a QEMU guest"]
fn e1000e_rx_checksum_verdicts() {
    rx_checksum_verdicts(NicModel::E1000e);
}

/// The same on igb: IPCS/L4CS/UDPCS and IPE/L4E in the advanced write-back
/// (`igb_verify_csum_in_sw`), and the packet type from its own field (IPv4/IPv6, TCP/UDP).
#[test]
#[ignore = "boots a QEMU guest"]
fn igb_rx_checksum_verdicts() {
    rx_checksum_verdicts(NicModel::Igb);
}

fn rx_checksum_verdicts(model: NicModel) {
    tenge_tests::retry_on_qemu_failure(|| {
        let (nic, peer) = dgram_nic(model);
        let rxdump = bin("rxdump");
        let pci = Nic::pci_addr(0);
        let cases = rx_cases(tenge_examples::parse_mac(&Nic::mac(0)).unwrap());
        let n = cases.len();
        let script = format!(
            "{rxdump} {pci} --rx-checksum --count {n} --duration 60 --interval 0 --bytes 2000\n"
        );
        let cfg = GuestConfig {
            nics: vec![nic],
            timeout: Duration::from_secs(300),
            ..GuestConfig::default()
        };
        let mut guest = tenge_testbed::Guest::boot(&cfg, &script).unwrap();
        let frames: Vec<Vec<u8>> = cases.iter().map(|c| c.frame.clone()).collect();
        let out = tenge_tests::rss::rxdump_exchange(&mut guest, &peer, &frames);
        tenge_tests::wait_ok(guest);
        let field = |line: &str, name: &str| -> String {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_default()
                .to_string()
        };
        let got: Vec<&str> = out.lines().filter(|l| l.contains("FRAME queue=")).collect();
        assert_eq!(got.len(), n, "{}", tail(&out, 5));
        for (i, (c, line)) in cases.iter().zip(&got).enumerate() {
            let hex: String = c.frame.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(
                field(line, "data"),
                hex,
                "frame {i} arrived changed or out of order"
            );
            assert_eq!(
                (field(line, "ip_csum"), field(line, "l4_csum")),
                (c.ip.to_string(), c.l4.to_string()),
                "frame {i}: {line}"
            );
            assert_eq!(field(line, "ptype"), c.ptype, "frame {i}: {line}");
        }
    })
}

/// Software LRO on e1000e (which has none): a TCP stream of 120 in-order 1000-byte
/// segments sent from the host as fast as it can (so several land in one burst), then a
/// retransmission of one of them and a FIN segment. What arrives, parsed by etherparse:
/// every frame's IPv4 and TCP checksums valid and its IPv4 length right; the payloads in
/// sequence order equal the stream byte for byte; fewer frames than segments (merged, with
/// `segs` above 1 on those); the retransmission and the FIN pass unmerged.
#[test]
#[ignore = "boots a QEMU guest"]
fn e1000e_software_lro_merges_a_tcp_stream() {
    tenge_tests::retry_on_qemu_failure(|| {
        const SEGS: usize = 120;
        const MSS: usize = 1000;
        let (nic, peer) = dgram_nic(NicModel::E1000e);
        let dst = tenge_examples::parse_mac(&Nic::mac(0)).unwrap();
        let stream: Vec<u8> = (0..SEGS * MSS).map(|i| (i * 13 % 251) as u8).collect();
        let seg = |k: usize, fin: bool| {
            let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0x5e, 9], dst)
                .ipv4([10, 3, 0, 1], [10, 3, 0, 2], 64)
                .tcp(40000, 5201, 1_000_000 + (k * MSS) as u32, 8192)
                .ack(77);
            let b = if fin { b.fin() } else { b };
            let mut f = Vec::new();
            b.write(&mut f, &stream[k * MSS..(k + 1) * MSS]).unwrap();
            f
        };
        let rxdump = bin("rxdump");
        let script = format!(
            "{rxdump} {} --lro --duration 8 --interval 0 --bytes 70000\n",
            Nic::pci_addr(0)
        );
        let cfg = GuestConfig {
            nics: vec![nic],
            timeout: Duration::from_secs(300),
            ..GuestConfig::default()
        };
        let mut guest = tenge_testbed::Guest::boot(&cfg, &script).unwrap();
        guest
            .wait_for_line(|l| l.contains("READY") || l.contains("TENGE-GUEST-EXIT"))
            .expect("guest output");
        // The stream as fast as the host sends (loopback UDP keeps the order), the last
        // segment with FIN; then segment 3 again, a retransmission.
        // In groups of 8 with a pause between: several segments land in one burst, and
        // QEMU's socket (which it reads one datagram at a time) does not overflow.
        for k in 0..SEGS {
            peer.send(&seg(k, k == SEGS - 1)).unwrap();
            if k % 8 == 7 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        peer.send(&seg(3, false)).unwrap();
        let mut out = String::new();
        while let Some(line) = guest.next_line() {
            let done = line.contains("rxdump: done:") || line.contains("TENGE-GUEST-EXIT");
            out.push_str(&line);
            out.push('\n');
            if done {
                break;
            }
        }
        tenge_tests::wait_ok(guest);
        let mut got: Vec<(u32, Vec<u8>, u64, bool)> = Vec::new();
        for line in out.lines().filter(|l| l.contains("FRAME queue=")) {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                    .unwrap_or_default()
            };
            let hex = field("data");
            let f: Vec<u8> = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            let (seq, payload) = {
                let p = SlicedPacket::from_ethernet(&f).expect("an LRO frame etherparse takes");
                let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(tcp))) =
                    (&p.net, &p.transport)
                else {
                    panic!("not TCP/IPv4: {line}")
                };
                let h = ip.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum(), "{line}");
                assert_eq!(
                    usize::from(h.total_len),
                    f.len() - 14,
                    "IPv4 length: {line}"
                );
                let sum = tcp
                    .to_header()
                    .calc_checksum_ipv4(&h, tcp.payload())
                    .unwrap();
                assert_eq!(tcp.checksum(), sum, "TCP checksum of a delivered frame");
                (tcp.sequence_number(), tcp.payload().to_vec())
            };
            let segs: u64 = field("segs").parse().unwrap_or(1);
            got.push((seq, payload, segs, line.contains("segs=1 ")));
        }
        // The retransmission: segment 3's bytes again, alone.
        let retrans = got
            .iter()
            .position(|(s, p, n, _)| *s == 1_000_000 + 3 * MSS as u32 && p.len() == MSS && *n == 1)
            .expect("the retransmitted segment passes unmerged");
        let mut stream_got = Vec::new();
        let mut next = 1_000_000u32;
        for (i, (seq, payload, _, _)) in got.iter().enumerate() {
            if i == retrans && *seq != next {
                continue;
            }
            assert_eq!(
                *seq, next,
                "frames in sequence order, nothing lost or doubled"
            );
            next = next.wrapping_add(payload.len() as u32);
            stream_got.extend_from_slice(payload);
        }
        assert_eq!(
            stream_got.len(),
            stream.len(),
            "bytes of the stream received ({} frames)",
            got.len()
        );
        assert!(stream_got == stream, "the stream byte for byte");
        let merged: u64 = got.iter().map(|g| g.2.saturating_sub(1)).sum();
        assert!(
            got.len() < SEGS && merged > 0,
            "LRO merged nothing: {} frames for {SEGS} segments",
            got.len()
        );
    })
}
