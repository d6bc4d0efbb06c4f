//! The offload cases: tenge against itself, the same data with and without the offload.
//!
//! - `e1000e-tso`, `sw-gso`, `virtio-tso`: one TCP flow sent by `tenge-e2e tcp-send` as
//!   62,000-byte TSO packets (MSS 1448) against the same stream as MSS-sized frames the
//!   application builds (each with a checksum request), on e1000e (TSE, QEMU segments),
//!   on virtio-net without HOST_TSO (QEMU's model over `-netdev dgram`: tenge's software
//!   GSO), and on a vhost-user virtio-net with HOST_TSO (`net_vhost` `tso=1`: the host's
//!   DPDK takes the 62 KB packet whole). The rate is the payload Gbit/s the port accepted;
//!   the ratio TSO / MSS frames.
//! - `lro`: MSS-sized frames of one flow sent on one vhost-user NIC, forwarded by the host
//!   to a second, where `rx-sink --tcp` receives them with LRO on against off (tenge's
//!   software LRO: DPDK's vhost offers no GUEST_TSO here). The rate is the TCP payload
//!   Gbit/s delivered; the detail line gives the frames delivered per wire frame.

use std::time::Duration;

use tenge_testbed::{Backend, HostMode, Nic, NicModel, VhostHost, VhostHostConfig};
use tenge_tests::{dgram_nic, guest_bin};

use crate::vhost::run_with_host;
use crate::{field, phase, run, stats, steady, tenge_samples};

/// TCP payload bytes per TSO packet and the MSS.
const PAYLOAD: usize = 62_000;
const MSS: u16 = 1448;

/// Guest script: `rounds` rounds of TSO then MSS frames on NIC 0, `d` seconds each.
fn tso_script(d: u32, rounds: u32, device_offloads: bool) -> String {
    let e2e = guest_bin("tenge-e2e").display().to_string();
    let a0 = Nic::pci_addr(0);
    let dev = if device_offloads {
        " --device-offloads"
    } else {
        ""
    };
    let mut s = String::from("set -e\n");
    for r in 0..rounds {
        for (side, flag) in [("tso", " --tso"), ("mss", "")] {
            s += &format!(
                "echo BENCH-PHASE {side}{r}\necho BENCH-HOST-START {side}{r}\n\
                 taskset -c 1 {e2e} tcp-send {a0}{flag}{dev} --mss {MSS} --payload {PAYLOAD} --duration {d}\n\
                 echo BENCH-HOST-STOP\n"
            );
        }
    }
    s + "echo BENCH-PHASE end\n"
}

/// The two sides' per-round rates from the guest's live lines, and the report.
fn report_tso(case: &str, lines: &[String], rounds: u32) -> Result<(), String> {
    let (mut tso, mut mss, mut left_out) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let (t, m) = (
            phase(lines, &format!("tso{r}")),
            phase(lines, &format!("mss{r}")),
        );
        let (rt, rm) = (
            steady(&tenge_samples(&t, "gbps")),
            steady(&tenge_samples(&m, "gbps")),
        );
        println!(
            "BENCH-DETAIL case={case} round={r} tso_gbps={rt:.4?} mss_gbps={rm:.4?} tso_frames={} tso_bad_offload={} mss_frames={} mss_bad_offload={}",
            field(&t, "tx_frames").unwrap_or(0.0),
            field(&t, "bad_offload").unwrap_or(0.0),
            field(&m, "tx_frames").unwrap_or(0.0),
            field(&m, "bad_offload").unwrap_or(0.0),
        );
        match (rt, rm) {
            (Some(a), Some(b)) => {
                tso.push(a);
                mss.push(b);
            }
            _ => left_out.push(format!("round={r} why=no-steady-rate")),
        }
    }
    println!("BENCH-ROUNDS case={case} tso={tso:.3?} mss={mss:.3?}");
    stats::report_vs(
        case,
        &tso,
        &mss,
        "mss-frames",
        &left_out,
        " unit=payload-gbps",
    )
}

/// `e1000e-tso`: e1000e on a QEMU hub, TSE against MSS frames.
pub fn e1000e_tso(d: u32, rounds: u32) -> Result<(), String> {
    let nics = vec![Nic::new(NicModel::E1000e, Backend::Hub(0))];
    let lines = run(nics, &tso_script(d, rounds, false), d, rounds * 2)?;
    report_tso("e1000e-tso", &lines, rounds)
}

/// `sw-gso`: virtio-net on `-netdev dgram` (no vnet header: no CSUM, no HOST_TSO), the
/// software GSO against MSS frames checksummed in software.
pub fn sw_gso(d: u32, rounds: u32) -> Result<(), String> {
    let (nic, _peer) = dgram_nic(NicModel::virtio());
    let lines = run(vec![nic], &tso_script(d, rounds, false), d, rounds * 2)?;
    report_tso("sw-gso", &lines, rounds)
}

/// `virtio-tso`: a vhost-user virtio-net offering HOST_TSO (`tso=1`), its host in rxonly.
pub fn virtio_tso(d: u32, rounds: u32) -> Result<(), String> {
    let mut host = VhostHost::start(&VhostHostConfig {
        tso: true,
        ..VhostHostConfig::new(HostMode::RxOnly)
    })
    .map_err(|e| format!("host: {e}"))?;
    let nic = Nic::new(NicModel::virtio(), host.backend(0));
    let timeout = Duration::from_secs(120 + u64::from(rounds) * 2 * (u64::from(d) + 25));
    let (lines, phases) =
        run_with_host(vec![nic], &tso_script(d, rounds, true), timeout, &mut host)?;
    for (name, p) in &phases {
        let fwd = p.fwd.first().copied().unwrap_or_default();
        println!(
            "BENCH-DETAIL case=virtio-tso phase={name} host_received_packets={}",
            fwd.rx_packets
        );
    }
    report_tso("virtio-tso", &lines, rounds)
}

/// `lro`: NIC 0 sends MSS frames of one flow, the host forwards them to NIC 1, where
/// rx-sink counts TCP payload with LRO on, then off.
pub fn lro(d: u32, rounds: u32) -> Result<(), String> {
    let mut host = VhostHost::start(&VhostHostConfig {
        ports: vec![1, 1],
        ..VhostHostConfig::new(HostMode::Io)
    })
    .map_err(|e| format!("host: {e}"))?;
    let nics = vec![
        Nic::new(NicModel::virtio(), host.backend(0)),
        Nic::new(NicModel::virtio(), host.backend(1)),
    ];
    let e2e = guest_bin("tenge-e2e").display().to_string();
    let (a0, a1) = (Nic::pci_addr(0), Nic::pci_addr(1));
    let mut s = String::from("set -e\n");
    for r in 0..rounds {
        for (side, flag) in [("lro", " --lro"), ("plain", "")] {
            s += &format!(
                "echo BENCH-PHASE {side}{r}\n\
                 taskset -c 1 {e2e} rx-sink {a1} --tcp{flag} --duration {sd} --idle-stop 2 > /tmp/sink.log 2>&1 &\n\
                 sink=$!\n\
                 for i in $(seq 200); do grep -q READY /tmp/sink.log && break; sleep 0.1; done\n\
                 echo BENCH-HOST-START {side}{r}\n\
                 taskset -c 0 {e2e} tcp-send {a0} --mss {MSS} --duration {d} > /tmp/send.log 2>&1\n\
                 echo BENCH-HOST-STOP\n\
                 wait $sink\ncat /tmp/sink.log\ngrep done: /tmp/send.log\n",
                sd = d + 60
            );
        }
    }
    s += "echo BENCH-PHASE end\n";
    let timeout = Duration::from_secs(120 + u64::from(rounds) * 2 * (u64::from(d) + 30));
    let (lines, _phases) = run_with_host(nics, &s, timeout, &mut host)?;
    let (mut on, mut off, mut left_out) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let (l, p) = (
            phase(&lines, &format!("lro{r}")),
            phase(&lines, &format!("plain{r}")),
        );
        // Frames delivered per wire frame: every wire frame carries one MSS of payload.
        let per_wire = |g: &[&str]| match (field(g, "frames"), field(g, "tcp_payload_bytes")) {
            (Some(f), Some(b)) if b > 0.0 => format!("{:.4}", f / (b / f64::from(MSS))),
            _ => "none".into(),
        };
        let (rl, rp) = (
            steady(&tenge_samples(&l, "tcp-gbps")),
            steady(&tenge_samples(&p, "tcp-gbps")),
        );
        println!(
            "BENCH-DETAIL case=lro round={r} lro_gbps={rl:.4?} plain_gbps={rp:.4?} lro_frames_per_wire_frame={} plain_frames_per_wire_frame={} sent_payload_lro={} sent_payload_plain={}",
            per_wire(&l),
            per_wire(&p),
            field(&l, "payload_bytes").unwrap_or(0.0),
            field(&p, "payload_bytes").unwrap_or(0.0),
        );
        match (rl, rp) {
            (Some(a), Some(b)) => {
                on.push(a);
                off.push(b);
            }
            _ => left_out.push(format!("round={r} why=no-steady-rate")),
        }
    }
    println!("BENCH-ROUNDS case=lro lro={on:.3?} plain={off:.3?}");
    stats::report_vs(
        "lro",
        &on,
        &off,
        "lro-off",
        &left_out,
        " unit=tcp-payload-gbps",
    )
}
