//! End-to-end tests of receive filtering (`Port::set_promiscuous`,
//! `Port::set_unicast_filter`, `PortConfig::promisc`) against QEMU's own filters:
//! virtio-net's, programmed through the control queue on split and on packed rings
//! (`hw/net/virtio-net.c` `receive_filter`), and e1000e's RCTL.UPE/MPE and receive address
//! table (`hw/net/e1000x_common.c` `e1000x_rx_group_filter`).
//!
//! The host injects frames over `-netdev dgram` to the port's MAC, to another unicast MAC,
//! to a multicast group and to broadcast, then an end marker to the port's MAC; the
//! in-guest `rx-sink` counts what arrived by destination until the marker. QEMU drops what
//! its filter refuses before any descriptor is used, and the datagrams arrive in order, so
//! every count is exact. One guest boot runs five phases, each a fresh open of the port:
//! promiscuous by default, off at open, off with the other MAC in the unicast filter,
//! turned off after open, and turned back on after an open with it off.
//!
//! They boot QEMU, so they are `#[ignore]`d in a plain `cargo test`; run them with
//! `--ignored` after `cargo build --release --bins`.

use std::time::Duration;

use tenge_examples::frame::{self, Flow};
use tenge_examples::parse_mac;
use tenge_testbed::{Guest, GuestConfig, Nic, NicModel};
use tenge_tests::{bin, dgram_nic, tail, wait_ok};

/// Frames per destination per phase.
const PER_DST: u64 = 50;
/// Sequence number of the end marker.
const END_SEQ: u64 = 1_000_000;
/// A unicast MAC that is not the port's (locally administered).
const OTHER: &str = "02:00:00:5e:00:42";
/// A multicast group (IPv4 all-hosts).
const GROUP: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];

/// One open of the port: rx-sink's filter flags and the counts expected, in the order of
/// its `by-dst` line: own, broadcast, multicast, other unicast.
struct Phase {
    name: &'static str,
    flags: String,
    want: [u64; 4],
}

fn phases() -> Vec<Phase> {
    let n = PER_DST;
    vec![
        Phase {
            name: "promiscuous at open (the default)",
            flags: String::new(),
            want: [n, n, n, n],
        },
        Phase {
            name: "promiscuous off at open",
            flags: "--no-promisc".into(),
            want: [n, n, 0, 0],
        },
        Phase {
            name: "promiscuous off, the other MAC in the unicast filter",
            flags: format!("--no-promisc --accept-mac {OTHER}"),
            want: [n, n, 0, n],
        },
        Phase {
            name: "promiscuous turned off after open",
            flags: "--set-promisc off".into(),
            want: [n, n, 0, 0],
        },
        Phase {
            name: "promiscuous off at open, turned on after",
            flags: "--no-promisc --set-promisc on".into(),
            want: [n, n, n, n],
        },
    ]
}

/// Runs the phases on `model`; the guest log must contain each of `log_has` (what was
/// negotiated).
fn rx_filter(model: NicModel, log_has: &[&str]) {
    let (nic, peer) = dgram_nic(model);
    let own = parse_mac(&Nic::mac(0)).unwrap();
    let other = parse_mac(OTHER).unwrap();
    let e2e = bin("tenge-e2e");
    let a0 = Nic::pci_addr(0);
    let phases = phases();
    let script: String = phases
        .iter()
        .map(|p| {
            format!(
                "{e2e} rx-sink {a0} --duration 120 --end-seq {END_SEQ} --by-dst {} || exit 1\n",
                p.flags
            )
        })
        .collect();
    let cfg = GuestConfig {
        nics: vec![nic],
        timeout: Duration::from_secs(600),
        ..GuestConfig::default()
    };
    let mut guest = Guest::boot(&cfg, &script).unwrap();
    let stop = |l: &str| l.contains("E2E-FAIL") || l.contains("TENGE-GUEST-EXIT");
    for phase in &phases {
        let line = guest
            .wait_for_line(|l| l.contains("READY") || stop(l))
            .expect("guest output");
        assert!(
            line.contains("READY"),
            "{}: never READY: {line}",
            phase.name
        );
        // Interleaved, ~2,000 frames/s; sequence numbers apart per destination.
        let dsts = [own, [0xff; 6], GROUP, other];
        for i in 0..PER_DST {
            for (k, dst) in (0u64..).zip(dsts) {
                let flow = Flow {
                    dst_mac: dst,
                    ..Flow::default()
                };
                peer.send(&frame::build(&flow, 60 + (i as usize % 40), k * 10_000 + i))
                    .unwrap();
                std::thread::sleep(Duration::from_micros(500));
            }
        }
        let end = Flow {
            dst_mac: own,
            ..Flow::default()
        };
        peer.send(&frame::build(&end, 60, END_SEQ)).unwrap();
        let line = guest
            .wait_for_line(|l| l.contains("rx-sink: by-dst:") || stop(l))
            .expect("guest output");
        let [o, b, m, u] = phase.want;
        let want = format!("own={o} broadcast={b} multicast={m} other={u} end_seen=true");
        assert!(
            line.ends_with(&want),
            "{}: expected `{want}`, got `{line}`",
            phase.name
        );
    }
    let log = wait_ok(guest);
    for has in log_has {
        assert!(
            log.contains(has),
            "`{has}` not in the log: {}",
            tail(&log, 40)
        );
    }
}

#[test]
#[ignore = "boots a QEMU guest"]
fn virtio_split_rx_filter_through_the_control_queue() {
    rx_filter(
        NicModel::virtio(),
        &[
            "split rings",
            "control queue 8 descriptors with RX filtering",
        ],
    );
}

#[test]
#[ignore = "boots a QEMU guest"]
fn virtio_packed_rx_filter_through_the_control_queue() {
    rx_filter(
        NicModel::VirtioNet {
            packed: true,
            event_idx: true,
            mrg_rxbuf: true,
        },
        &[
            "packed rings",
            "control queue 8 descriptors with RX filtering",
        ],
    );
}

#[test]
#[ignore = "boots a QEMU guest"]
fn e1000e_rx_filter_through_rctl_and_the_receive_address_table() {
    rx_filter(NicModel::E1000e, &["e1000e 52:54:00:7e:00:00"]);
}
