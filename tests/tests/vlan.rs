//! End-to-end tests of 802.1Q tags on e1000e and igb against QEMU's models: a tag pktgen
//! asks for (`PacketMeta::TX_VLAN`) is on QEMU's pcap of the wire, read by etherparse;
//! tagged frames from the host arrive with the tag stripped into the metadata when the
//! port strips (`PortConfig::vlan_strip`, CTRL.VME), and untouched when it does not.
//!
//! They boot QEMU, so they are `#[ignore]`d in a plain `cargo test`; run them with
//! `--ignored` after `cargo build --release --bins`.

use std::time::Duration;

use etherparse::{NetSlice, SlicedPacket, TransportSlice, VlanSlice};
use tenge_examples::frame;
use tenge_testbed::{Guest, GuestConfig, Nic, NicModel};
use tenge_tests::rss::rxdump_exchange;
use tenge_tests::{
    bin, dgram_nic, read_pcap, run_ok, scratch_dir, tail, test_flow, vlan_tagged, wait_ok,
    TEST_DST, TEST_SRC,
};

fn config(nics: Vec<Nic>) -> GuestConfig {
    GuestConfig {
        nics,
        timeout: Duration::from_secs(300),
        ..GuestConfig::default()
    }
}

/// One pktgen run of the TX test: frames, size, tag, extra pktgen arguments.
struct TxRun {
    count: u64,
    size: usize,
    tci: u16,
    extra: &'static str,
}

#[test]
#[ignore = "boots a QEMU guest"]
fn igb_vlan_tag_requested_on_tx_is_on_the_wire() {
    vlan_tx_on_the_wire(NicModel::Igb);
}

#[test]
#[ignore = "boots a QEMU guest"]
fn e1000e_vlan_tag_requested_on_tx_is_on_the_wire() {
    vlan_tx_on_the_wire(NicModel::E1000e);
}

/// pktgen with `--vlan` (one buffer per frame, then 3-segment chains of 1514 bytes, whose
/// tagged frames are 1518 on the wire; then with the port stripping, where e1000e's device
/// inserts instead of tenge): QEMU's pcap holds exactly the frames, each byte for byte
/// pktgen's frame of its sequence number with the tag after the addresses, and etherparse
/// reads the tag's priority and VLAN id and a valid IPv4/UDP packet behind it. The
/// priority bits and DEI go through as well as the VLAN id.
fn vlan_tx_on_the_wire(model: NicModel) {
    let dir = scratch_dir(&format!("vlan-tx-{model:?}"));
    let (mut nic, _peer) = dgram_nic(model);
    let pcap = dir.join("vlan-tx.pcap");
    nic.dump = Some(pcap.clone());
    let pktgen = bin("pktgen");
    let a0 = Nic::pci_addr(0);
    let runs = [
        TxRun {
            count: 300,
            size: 64,
            tci: 0x2005,
            extra: "",
        },
        TxRun {
            count: 100,
            size: 1514,
            tci: 0xf0ff,
            extra: " --segments 3",
        },
        TxRun {
            count: 100,
            size: 200,
            tci: 0x0ffe,
            extra: " --vlan-strip",
        },
    ];
    let mut script = String::new();
    let mut first = 0u64;
    for r in &runs {
        script.push_str(&format!(
            "{pktgen} {a0} --count {} --first-seq {first} --size {} --vlan {:#x} --src-mac {TEST_SRC} --dst-mac {TEST_DST} --interval 0{}\n",
            r.count, r.size, r.tci, r.extra
        ));
        first += r.count;
    }
    let log = run_ok(&config(vec![nic]), &script);
    // Who inserted each run's tags, as the port says.
    let by: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("VLAN tag insertion by ").nth(1))
        .map(str::trim)
        .collect();
    let want_by = match model {
        NicModel::E1000e => ["software", "software", "device"],
        _ => ["device", "device", "device"],
    };
    assert_eq!(by, want_by, "{}", tail(&log, 20));
    let wire = read_pcap(&pcap).expect("QEMU's pcap");
    let total: u64 = runs.iter().map(|r| r.count).sum();
    assert_eq!(wire.len() as u64, total, "frames on the wire");
    let mut seq = 0u64;
    let mut frames = wire.iter();
    for r in &runs {
        for _ in 0..r.count {
            let f = frames.next().unwrap();
            let want = vlan_tagged(&frame::build(&test_flow(), r.size, seq), r.tci);
            assert_eq!(
                f, &want,
                "frame {seq}: not pktgen's frame with tag {:#x}",
                r.tci
            );
            let p = SlicedPacket::from_ethernet(f).unwrap_or_else(|e| panic!("frame {seq}: {e}"));
            let Some(VlanSlice::SingleVlan(v)) = p.vlan() else {
                panic!("frame {seq}: no single 802.1Q tag")
            };
            assert_eq!(v.vlan_identifier().value(), r.tci & 0xfff, "frame {seq}");
            assert_eq!(
                v.priority_code_point().value(),
                (r.tci >> 13) as u8,
                "frame {seq}"
            );
            assert_eq!(v.drop_eligible_indicator(), r.tci & 0x1000 != 0);
            let Some(NetSlice::Ipv4(ip)) = &p.net else {
                panic!("frame {seq}: no IPv4 behind the tag")
            };
            let h = ip.header().to_header();
            assert_eq!(h.header_checksum, h.calc_header_checksum(), "frame {seq}");
            assert!(
                matches!(p.transport, Some(TransportSlice::Udp(u)) if u.destination_port() == frame::UDP_PORT),
                "frame {seq}: no UDP behind the tag"
            );
            seq += 1;
        }
    }
}

#[test]
#[ignore = "boots a QEMU guest"]
fn igb_vlan_tagged_frames_arrive_stripped_with_the_tag_in_the_metadata() {
    vlan_rx_strip(NicModel::Igb);
}

#[test]
#[ignore = "boots a QEMU guest"]
fn e1000e_vlan_tagged_frames_arrive_stripped_with_the_tag_in_the_metadata() {
    vlan_rx_strip(NicModel::E1000e);
}

/// Frames from the host, tagged (VLAN ids 1 to 4094, every priority, DEI, a priority-only
/// tag with VLAN id 0; 64 to 1518 bytes as sent) and untagged, built by etherparse. With
/// `rxdump --vlan-strip` each arrives once, in order, as the frame without its tag, its
/// tag in `vlan=` (an untagged frame with none); then, with stripping off (the default),
/// the same frames arrive exactly as sent and no tag is reported.
fn vlan_rx_strip(model: NicModel) {
    tenge_tests::retry_on_qemu_failure(|| {
        let (nic, peer) = dgram_nic(model);
        let rxdump = bin("rxdump");
        let pci = Nic::pci_addr(0);
        let dst = tenge_examples::parse_mac(&Nic::mac(0)).unwrap();
        // (frame as the guest should see it stripped, frame as sent, tag)
        let mut cases: Vec<(Vec<u8>, Vec<u8>, Option<u16>)> = Vec::new();
        for n in 0..48usize {
            let payload = vec![n as u8; 22 + (n * 97) % 1450];
            let mut inner = Vec::new();
            etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0x7e, 1], dst)
                .ipv4([10, 8, 0, 1], [10, 8, 1, n as u8], 64)
                .udp(5000 + n as u16, 9)
                .write(&mut inner, &payload)
                .unwrap();
            let tci = match n % 4 {
                3 => None,
                // Priority only (VLAN id 0), then ids across the range with every priority
                // and DEI on some.
                0 if n == 0 => Some(0xa000),
                _ => Some(
                    ((n as u16 % 8) << 13)
                        | (((n % 3 == 0) as u16) << 12)
                        | (1 + (n as u16 * 89) % 4094),
                ),
            };
            let sent = match tci {
                Some(t) => vlan_tagged(&inner, t),
                None => inner.clone(),
            };
            cases.push((inner, sent, tci));
        }
        // The longest a tagged frame may be: 1518 bytes as sent.
        let mut long = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0x7e, 1], dst)
            .ipv4([10, 8, 0, 1], [10, 8, 2, 1], 64)
            .udp(6000, 9)
            .write(&mut long, &[0x5au8; 1514 - 42])
            .unwrap();
        cases.push((long.clone(), vlan_tagged(&long, 0x6fff), Some(0x6fff)));
        let n = cases.len();
        let run = |strip: &str| {
            format!("{rxdump} {pci}{strip} --count {n} --duration 60 --interval 0 --bytes 2000\n")
        };
        let script = format!("{}{}", run(" --vlan-strip"), run(""));
        let mut guest = Guest::boot(&config(vec![nic]), &script).unwrap();
        let sent: Vec<Vec<u8>> = cases.iter().map(|c| c.1.clone()).collect();
        let stripped = rxdump_exchange(&mut guest, &peer, &sent);
        let kept = rxdump_exchange(&mut guest, &peer, &sent);
        wait_ok(guest);
        let field = |line: &str, name: &str| -> String {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_default()
                .to_string()
        };
        let hex = |b: &[u8]| -> String { b.iter().map(|x| format!("{x:02x}")).collect() };
        for (phase, out, strip) in [("stripping", &stripped, true), ("keeping", &kept, false)] {
            let got: Vec<&str> = out.lines().filter(|l| l.contains("FRAME queue=")).collect();
            assert_eq!(got.len(), n, "{phase}: {}", tail(out, 5));
            for (i, ((inner, sent, tci), line)) in cases.iter().zip(&got).enumerate() {
                let (want, want_tag) = match tci {
                    Some(t) if strip => (inner, format!("{t:#06x}")),
                    _ => (sent, "-".to_string()),
                };
                assert_eq!(
                    field(line, "data"),
                    hex(want),
                    "{phase}: frame {i} (tag {tci:x?}) arrived changed or out of order"
                );
                assert_eq!(field(line, "vlan"), want_tag, "{phase}: frame {i}: {line}");
            }
        }
    })
}
