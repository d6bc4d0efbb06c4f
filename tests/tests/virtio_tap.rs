//! A real Linux peer for tenge: the NIC's netdev is a tap with a vnet header in a network
//! namespace the test makes (`tenge_testbed::TapPeer`), the guest runs the `responder`
//! example on the NIC bound to vfio-pci, and Linux in the namespace pings it and sends it
//! frames of every size from 60 bytes to the MTU.
//!
//! The same test runs on virtio-net, e1000e and igb: an application switches NIC by
//! changing a PCI address and nothing else. With this backend QEMU's virtio-net offers its checksum
//! and TSO features; the responder asks for every offload, and the virtio test checks from
//! tenge's log of the negotiation that they were taken, then sends UDP from Linux's stack
//! and one 8000-byte TCP segment with a GSO header, which must arrive whole (one chain of
//! mergeable buffers, flagged LRO) with every checksum good.
//!
//! They boot QEMU and need root (network namespaces), so they are `#[ignore]`d in a plain
//! `cargo test`; run them with `--ignored` after `cargo build --release --bins` (set
//! TENGE_BIN_DIR if the binaries are not in <workspace>/target/release).

use std::time::{Duration, Instant};

use tenge_testbed::{Guest, GuestConfig, Nic, NicModel, TapPeer, DEFAULT_GUEST_ADDR};
use tenge_tests::{bin, tail};

/// Every frame size from the minimum (60 bytes without FCS) to a full 1500-byte MTU.
const SIZES: std::ops::RangeInclusive<usize> = 60..=1514;

/// An EtherType nobody answers (IEEE 802 local experimental 1): the responder counts these
/// frames as `rx_other`.
const EXPERIMENTAL_ETHERTYPE: [u8; 2] = [0x88, 0xb5];

/// The largest ICMP payload in one 1500-byte IPv4 datagram (1500 - 20 - 8).
const MAX_PING_PAYLOAD: usize = 1472;

/// Offload features QEMU's virtio-net offers only with a vnet-header backend, as tenge's
/// feature log names them (bits 0, 1, 7, 8, 11, 12); the responder asks for all of them
/// (`--offloads`), and tenge takes them with MRG_RXBUF (bit 15), which GUEST_TSO needs.
const TAP_OFFLOADS: [&str; 6] = [
    "CSUM",
    "GUEST_CSUM",
    "GUEST_TSO4",
    "GUEST_TSO6",
    "HOST_TSO4",
    "HOST_TSO6",
];

/// UDP datagrams the namespace sends the guest (bash's /dev/udp), payload sizes: Linux
/// leaves their checksum to the tap when QEMU turned the tap's offloads on (it does once
/// the guest negotiated GUEST_CSUM), so tenge completes them.
const UDP_PAYLOADS: [usize; 8] = [1, 18, 19, 100, 511, 1000, 1471, 1472];

/// The TCP payload of the one large segment sent with a GSO header (about 5.5 MSS).
const GSO_PAYLOAD: usize = 8000;
/// Its MSS.
const GSO_MSS: u16 = 1448;

/// The guest side: the responder in the background, its start-up log on the console, then
/// `GUEST_READY`; it runs until the host creates /out/done and every experimental frame
/// was counted (or 20 s after `done` without them), then is stopped with SIGINT and prints
/// its summary.
fn guest_script(frames: usize) -> String {
    let responder = bin("responder");
    let pci = Nic::pci_addr(0);
    format!(
        r#"
set -e
{responder} {pci} --ip {DEFAULT_GUEST_ADDR} --offloads > /tmp/resp.log 2>&1 &
pid=$!
n=0
until grep -q '^READY' /tmp/resp.log; do
    if ! kill -0 $pid 2>/dev/null || [ $n -ge 600 ]; then
        echo "responder did not start"; cat /tmp/resp.log; exit 1
    fi
    n=$((n + 1)); sleep 0.1
done
cat /tmp/resp.log
echo GUEST_READY
other() {{ grep -o 'rx_other=[0-9]*' /tmp/resp.log | tail -n 1 | cut -d= -f2; }}
n=0
until [ -e /out/done ] || [ $n -ge 6000 ]; do
    kill -0 $pid || {{ echo "responder died"; cat /tmp/resp.log; exit 1; }}
    n=$((n + 1)); sleep 0.1
done
n=0
until [ "$(other)" -ge {frames} ] 2>/dev/null || [ $n -ge 200 ]; do
    n=$((n + 1)); sleep 0.1
done
kill -INT $pid
st=0; wait $pid || st=$?
echo "== responder log (end)"
tail -n 5 /tmp/resp.log
exit $st
"#
    )
}

/// `name=N` from a line of `key=value` words.
fn field(line: &str, name: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// The names in tenge's `virtio-net offers A|B|C, accepted ...` log line.
fn offered_features(log: &[String]) -> Option<Vec<String>> {
    let line = log.iter().find(|l| l.contains("virtio-net offers "))?;
    let rest = line.split_once("virtio-net offers ")?.1;
    let offered = rest.split_once(", accepted").map_or(rest, |(o, _)| o);
    Some(offered.split('|').map(str::to_owned).collect())
}

/// The names after `accepted ` in the same line.
fn accepted_features(log: &[String]) -> Option<Vec<String>> {
    let line = log.iter().find(|l| l.contains("virtio-net offers "))?;
    let accepted = line.split_once(", accepted ")?.1.trim();
    Some(accepted.split('|').map(str::to_owned).collect())
}

/// A TCP segment of `GSO_PAYLOAD` bytes from the fake station to the guest, behind the
/// 10-byte `virtio_net_hdr` a GSO socket takes: GSO TCPV4 with `GSO_MSS`, its checksum
/// partial (the pseudo-header sum in the field, NEEDS_CSUM from the TCP header on), as
/// Linux hands a TSO segment to a NIC.
fn gso_segment(mac: [u8; 6]) -> Vec<u8> {
    let payload: Vec<u8> = (0..GSO_PAYLOAD).map(|i| (i * 31 + 7) as u8).collect();
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2(FAKE_MAC, mac)
        .ipv4(FAKE_IP, guest_ip(), 64)
        .tcp(40000, 9, 1, 65535)
        .ack(1)
        .write(&mut frame, &payload)
        .expect("build segment");
    // The partial checksum: the pseudo header's sum, not complemented.
    let tcp_len = (frame.len() - 34) as u32;
    let mut sum: u32 = 6 + tcp_len;
    for w in FAKE_IP.chunks(2).chain(guest_ip().chunks(2)) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    frame[50..52].copy_from_slice(&(sum as u16).to_be_bytes());
    let mut out = vec![
        1, // VIRTIO_NET_HDR_F_NEEDS_CSUM
        1, // VIRTIO_NET_HDR_GSO_TCPV4
    ];
    out.extend_from_slice(&54u16.to_le_bytes()); // hdr_len: Ethernet + IPv4 + TCP
    out.extend_from_slice(&GSO_MSS.to_le_bytes());
    out.extend_from_slice(&34u16.to_le_bytes()); // csum_start: the TCP header
    out.extend_from_slice(&16u16.to_le_bytes()); // csum_offset: TCP's checksum field
    out.extend_from_slice(&frame);
    out
}

/// The MAC of the guest's first NIC.
fn guest_mac() -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(Nic::mac(0).split(':')) {
        *m = u8::from_str_radix(b, 16).expect("mac");
    }
    mac
}

/// A station that exists only in the frames this test sends.
const FAKE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x77, 0x01];
const FAKE_IP: [u8; 4] = [10, 99, 0, 77];

fn guest_ip() -> [u8; 4] {
    DEFAULT_GUEST_ADDR
        .parse::<std::net::Ipv4Addr>()
        .expect("guest address")
        .octets()
}

/// An echo request from the fake station (TTL 20, id 0x4242, seq 7, `payload` bytes) and
/// the reply the responder must send: built by etherparse's `PacketBuilder`, independently
/// of the responder's in-place rewrite.
fn echo_pair(mac: [u8; 6], payload: usize) -> (Vec<u8>, Vec<u8>) {
    let data: Vec<u8> = (0..payload).map(|i| (i * 7 + 3) as u8).collect();
    let build = |b: etherparse::PacketBuilderStep<etherparse::Icmpv4Header>| {
        let mut out = Vec::new();
        b.write(&mut out, &data).expect("build frame");
        out
    };
    let request = build(
        etherparse::PacketBuilder::ethernet2(FAKE_MAC, mac)
            .ipv4(FAKE_IP, guest_ip(), 20)
            .icmpv4_echo_request(0x4242, 7),
    );
    let reply = build(
        etherparse::PacketBuilder::ethernet2(mac, FAKE_MAC)
            .ipv4(guest_ip(), FAKE_IP, 64)
            .icmpv4_echo_reply(0x4242, 7),
    );
    (request, reply)
}

/// A broadcast ARP request from the fake station for the guest's address, and the reply,
/// spelled out field by field (RFC 826).
fn arp_pair(mac: [u8; 6]) -> (Vec<u8>, Vec<u8>) {
    let frame = |dst: [u8; 6], src: [u8; 6], op: u8, tha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]| {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, op]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&spa);
        f.extend_from_slice(&tha);
        f.extend_from_slice(&tpa);
        f
    };
    (
        frame([0xff; 6], FAKE_MAC, 1, [0; 6], FAKE_IP, guest_ip()),
        frame(FAKE_MAC, mac, 2, FAKE_MAC, guest_ip(), FAKE_IP),
    )
}

/// Waits (up to 10 s) for a frame to the fake station and checks it is `want`, plus at most
/// the zero padding a NIC adds up to the 60-byte minimum.
fn expect_reply(socket: &tenge_testbed::FrameSocket, want: &[u8], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 2048];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(n) = socket.recv(&mut buf, left).expect("recv") else {
            break;
        };
        let got = &buf[..n];
        if got.len() < 14 || got[..6] != FAKE_MAC {
            continue;
        }
        let padded = want.len() < 60 && n == 60 && got[want.len()..].iter().all(|&b| b == 0);
        assert!(
            got.len() >= want.len() && &got[..want.len()] == want && (n == want.len() || padded),
            "{what}: got {got:02x?}\nwant {want:02x?}"
        );
        return;
    }
    panic!("{what}: no reply within 10 s");
}

fn responder_answers_a_linux_peer(model: NicModel) {
    tenge_tests::retry_on_qemu_failure(|| {
        let peer = TapPeer::new().expect("create tap peer (needs root and iproute2)");
        let frames = SIZES.count();
        let config = GuestConfig {
            timeout: Duration::from_secs(900),
            ..GuestConfig::with_nics(vec![Nic::new(model, peer.backend())])
        };
        let mut guest = Guest::boot(&config, &guest_script(frames)).expect("boot guest");
        let done = guest.out_dir().join("done");
        let mut startup = Vec::new();
        guest
            .wait_for_line(|l| {
                startup.push(l.to_owned());
                l == "GUEST_READY"
            })
            .unwrap_or_else(|e| panic!("{e}\n{}", tail(&startup.join("\n"), 40)));

        if matches!(model, NicModel::VirtioNet { .. }) {
            let offered = offered_features(&startup).unwrap_or_else(|| {
                panic!(
                    "no `virtio-net offers` line from Port::open: {}",
                    tail(&startup.join("\n"), 20)
                )
            });
            let accepted = accepted_features(&startup).unwrap_or_default();
            for f in TAP_OFFLOADS {
                assert!(
                    offered.iter().any(|o| o == f),
                    "the tap backend should make QEMU offer {f}; offered: {offered:?}"
                );
                assert!(
                    accepted.iter().any(|o| o == f),
                    "the responder asked for {f} and QEMU offered it: not negotiated; accepted: \
                     {accepted:?}"
                );
            }
            assert!(accepted.iter().any(|o| o == "MRG_RXBUF"), "{accepted:?}");
        }
        let virtio = matches!(model, NicModel::VirtioNet { .. });

        // Ping: the namespace resolves the guest's address by ARP first.
        let ping = peer.ping(DEFAULT_GUEST_ADDR, 20, 56).expect("ping");
        assert!(ping.all_replied(), "{}", ping.output);
        // Payload sizes up to the MTU (frames of 42 to 1514 bytes).
        let mut payloads: Vec<usize> = (0..=MAX_PING_PAYLOAD).step_by(97).collect();
        payloads.push(MAX_PING_PAYLOAD);
        for &payload in &payloads {
            let ping = peer.ping(DEFAULT_GUEST_ADDR, 2, payload).expect("ping");
            assert!(
                ping.all_replied(),
                "payload {payload} bytes: {}",
                ping.output
            );
        }

        let socket = peer.frame_socket().expect("frame socket");
        let mac = guest_mac();
        // Byte-exact replies on the wire, to requests from an address the namespace does not
        // have (so only this socket sees the replies).
        for payload in [0, 1000, MAX_PING_PAYLOAD] {
            let (request, want) = echo_pair(mac, payload);
            socket.send(&request).expect("send echo request");
            expect_reply(&socket, &want, &format!("echo reply, payload {payload}"));
        }
        let (request, want) = arp_pair(mac);
        socket.send(&request).expect("send ARP request");
        expect_reply(&socket, &want, "ARP reply");

        // UDP from the namespace's own stack (the guest's MAC is in its neighbour table since
        // the pings): the responder checks every checksum in software.
        let udp = UDP_PAYLOADS
            .iter()
            .map(|n| format!("printf '%{n}s' x > /dev/udp/{DEFAULT_GUEST_ADDR}/9"))
            .collect::<Vec<_>>()
            .join("\n");
        peer.exec_ok(&["bash", "-c", &udp]).expect("send UDP");
        // One large TCP segment with a GSO header: with GUEST_TSO4 negotiated QEMU hands it to
        // the guest whole, over several mergeable buffers, its checksum partial.
        if virtio {
            let gso = peer.gso_socket().expect("GSO socket");
            gso.send(&gso_segment(mac)).expect("send GSO segment");
        }

        // Frames of every size to the guest's MAC, paced: the tap's queue holds ~1000 frames
        // and the TCG guest drains slowly.
        let mut frame = vec![0u8; *SIZES.end()];
        frame[..6].copy_from_slice(&mac);
        frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
        frame[12..14].copy_from_slice(&EXPERIMENTAL_ETHERTYPE);
        let started = Instant::now();
        for (k, size) in SIZES.enumerate() {
            frame[14..16].copy_from_slice(&(size as u16).to_be_bytes());
            for (i, b) in frame[16..size].iter_mut().enumerate() {
                *b = (i + size) as u8;
            }
            socket.send(&frame[..size]).expect("send frame");
            if k % 32 == 31 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        eprintln!("sent {frames} frames in {:?}", started.elapsed());
        std::fs::write(&done, "").expect("write /out/done");

        let summary = guest
            .wait_for("responder: done:")
            .expect("responder summary");
        let outcome = guest.wait().expect("wait for guest");
        let log = std::fs::read_to_string(&outcome.log).unwrap_or_default();
        assert!(
            outcome.success(),
            "{}\n{}",
            outcome.describe(),
            tail(&log, 40)
        );
        let tap_stats = peer
            .exec_ok(&["ip", "-s", "link", "show", peer.ifname()])
            .unwrap_or_default();
        let get = |name: &str| {
            field(&summary, name).unwrap_or_else(|| panic!("no {name}= in: {summary}"))
        };
        assert_eq!(
            get("rx_other") as usize,
            frames,
            "every experimental frame arrived and was counted; {summary}\ntap: {tap_stats}"
        );
        let pings = 20 + 2 * payloads.len() as u64 + 3;
        assert!(
            get("echo_replies") >= pings,
            "{pings} echo requests sent; {summary}"
        );
        assert!(get("arp_replies") >= 2, "{summary}");
        for drop in [
            "tx_dropped",
            "port_rx_no_buf",
            "port_rx_bad_len",
            "port_rx_errors",
            "port_rx_bad_slot",
            "port_rx_multi_buffer",
            "port_tx_bad_packet",
            "rx_malformed",
        ] {
            assert_eq!(get(drop), 0, "{drop}: {summary}");
        }
        // Everything but chains went through the responder's frame logic.
        assert_eq!(get("port_rx"), get("rx") + get("rx_chained"), "{summary}");
        // Every UDP datagram and the GSO segment checked good in software: checksums Linux
        // left partial were completed (virtio-net), or came whole (e1000e, igb).
        let segments = UDP_PAYLOADS.len() as u64 + u64::from(virtio);
        assert_eq!(get("l4_csum_good"), segments, "{summary}");
        assert_eq!(get("l4_csum_bad"), 0, "{summary}");
        // The GSO segment arrived whole, as one chain, flagged as coalesced.
        assert_eq!(get("lro"), u64::from(virtio), "{summary}");
        assert_eq!(get("rx_chained"), u64::from(virtio), "{summary}");
        assert_eq!(get("port_rx_chains"), u64::from(virtio), "{summary}");
    })
}

#[test]
#[ignore = "boots a QEMU guest"]
fn virtio_responder_answers_linux_over_tap() {
    responder_answers_a_linux_peer(NicModel::virtio());
}

#[test]
#[ignore = "boots a QEMU guest"]
fn e1000e_responder_answers_linux_over_tap() {
    responder_answers_a_linux_peer(NicModel::E1000e);
}

/// On igb (the 82576) as on e1000e: QEMU's igb takes the tap's vnet header too and
/// completes partial checksums itself (`igb_rx_fix_l4_csum`).
#[test]
#[ignore = "boots a QEMU guest"]
fn igb_responder_answers_linux_over_tap() {
    responder_answers_a_linux_peer(NicModel::Igb);
}

#[test]
fn parses_summary_fields_and_feature_log() {
    let s = "responder: done: seconds=1.0 rx=3 rx_other=1455 tx=2";
    assert_eq!(field(s, "rx"), Some(3));
    assert_eq!(field(s, "rx_other"), Some(1455));
    assert_eq!(field(s, "other"), None);
    let log = vec![
        "[2026-11-24T21:00:00Z INFO  tenge::virtio] 0000:00:03.0: virtio-net offers \
         CSUM|GUEST_CSUM|MAC|GUEST_TSO4|HOST_TSO4|VERSION_1, accepted MAC|VERSION_1"
            .to_owned(),
    ];
    assert_eq!(
        offered_features(&log).unwrap(),
        [
            "CSUM",
            "GUEST_CSUM",
            "MAC",
            "GUEST_TSO4",
            "HOST_TSO4",
            "VERSION_1"
        ]
    );
    assert_eq!(accepted_features(&log).unwrap(), ["MAC", "VERSION_1"]);
}
