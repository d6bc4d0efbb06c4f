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
use tenge_tests::{bin, dgram_nic, tail, wait_ok, DgramPeer};

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

/// Once rx-sink says READY, sends [`PER_DST`] frames to each of the port's MAC, broadcast,
/// [`GROUP`] and [`OTHER`], interleaved at about 2,000 frames/s, then the end marker to the
/// port's MAC, and checks rx-sink's counts against `phase`.
fn run_phase(guest: &mut tenge_testbed::RunningGuest, peer: &DgramPeer, phase: &Phase) {
    let stop = |l: &str| l.contains("E2E-FAIL") || l.contains("TENGE-GUEST-EXIT");
    let line = guest
        .wait_for_line(|l| l.contains("READY") || stop(l))
        .expect("guest output");
    assert!(
        line.contains("READY"),
        "{}: never READY: {line}",
        phase.name
    );
    let own = parse_mac(&Nic::mac(0)).unwrap();
    let dsts = [own, [0xff; 6], GROUP, parse_mac(OTHER).unwrap()];
    for i in 0..PER_DST {
        for (k, dst) in (0u64..).zip(dsts) {
            let flow = Flow {
                dst_mac: dst,
                ..Flow::default()
            };
            // Sequence numbers apart per destination, sizes 60-99.
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
    // QEMU's models filter before the guest sees a frame: tenge's software filter behind
    // virtio-net's (driver/src/port/soft_filter.rs) has nothing left to drop.
    let done = guest
        .wait_for_line(|l| l.contains("rx-sink: done:") || stop(l))
        .expect("guest output");
    assert!(
        done.contains(" filtered=0 "),
        "{}: the device let through frames its filter refuses: {done}",
        phase.name
    );
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

/// Runs the phases on `model`; the guest log must contain each of `log_has` (what was
/// negotiated).
fn rx_filter(model: NicModel, log_has: &[&str]) {
    tenge_tests::retry_on_qemu_failure(|| {
        let (nic, peer) = dgram_nic(model);
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
        for phase in &phases {
            run_phase(&mut guest, &peer, phase);
        }
        let log = wait_ok(guest);
        for has in log_has {
            assert!(
                log.contains(has),
                "`{has}` not in the log: {}",
                tail(&log, 40)
            );
        }
    })
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

/// The same filter on igb: RCTL.UPE/MPE and receive address entries 1-15, which the 82576
/// keeps where the 82574 has them (QEMU `igb_receive_assign` → `e1000x_rx_group_filter`).
#[test]
#[ignore = "boots a QEMU guest"]
fn igb_rx_filter_through_rctl_and_the_receive_address_table() {
    rx_filter(NicModel::Igb, &["igb 52:54:00:7e:00:00"]);
}

/// A virtio-net without `VIRTIO_NET_F_CTRL_RX` (QEMU `ctrl_rx=off`; the control queue is
/// still negotiated): opening with the default promiscuous mode works and receives every
/// frame, while promiscuous mode off and a unicast filter are refused with the error that
/// says why, before the port is used.
#[test]
#[ignore = "boots a QEMU guest"]
fn virtio_without_ctrl_rx_stays_promiscuous_and_refuses_filters() {
    tenge_tests::retry_on_qemu_failure(|| {
        let (nic, peer) = dgram_nic(NicModel::virtio());
        let e2e = bin("tenge-e2e");
        let a0 = Nic::pci_addr(0);
        // Each refused run must fail before READY; one that opened would run 5 s and pass,
        // which fails the script.
        let script = format!(
            "{e2e} rx-sink {a0} --duration 120 --end-seq {END_SEQ} --by-dst || exit 1\n\
             {e2e} rx-sink {a0} --duration 5 --no-promisc && exit 1\n\
             {e2e} rx-sink {a0} --duration 5 --accept-mac {OTHER} && exit 1\n\
             exit 0\n"
        );
        let cfg = GuestConfig {
            nics: vec![nic],
            timeout: Duration::from_secs(300),
            extra_qemu_args: vec!["-global".into(), "virtio-net-pci.ctrl_rx=off".into()],
            ..GuestConfig::default()
        };
        let mut guest = Guest::boot(&cfg, &script).unwrap();
        let n = PER_DST;
        run_phase(
            &mut guest,
            &peer,
            &Phase {
                name: "promiscuous (the default) without CTRL_RX",
                flags: String::new(),
                want: [n, n, n, n],
            },
        );
        let log = wait_ok(guest);
        let accepted: Vec<&str> = log
            .lines()
            .find_map(|l| l.split(", accepted ").nth(1))
            .expect("the accepted features are logged")
            .split('|')
            .collect();
        assert!(
            accepted.contains(&"CTRL_VQ") && !accepted.iter().any(|f| f.starts_with("CTRL_RX")),
            "accepted {accepted:?}"
        );
        for has in [
            "control queue 8 descriptors without RX filtering",
            "E2E-FAIL: 0000:00:03.0: cannot turn promiscuous mode off: the virtio-net device did \
             not negotiate VIRTIO_NET_F_CTRL_RX",
            "E2E-FAIL: 0000:00:03.0: cannot set a unicast filter of 1 address: the virtio-net \
             device did not negotiate VIRTIO_NET_F_CTRL_RX",
            "ctrl_vq=on,ctrl_rx=on",
        ] {
            assert!(
                log.contains(has),
                "`{has}` not in the log: {}",
                tail(&log, 40)
            );
        }
        assert_eq!(
            log.matches("READY 0000:00:03.0").count(),
            1,
            "only the promiscuous run may start: {}",
            tail(&log, 40)
        );
    })
}
