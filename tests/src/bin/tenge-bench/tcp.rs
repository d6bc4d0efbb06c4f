//! The TCP cases, against Linux in a network namespace over tap.
//!
//! `tcp`: bulk TCP payload Gbit/s of smoltcp over tenge (`tcp-bulk`) against the guest
//! kernel's own stack and driver, on the same NIC model and the same Linux peer, in one
//! boot: two virtio-net NICs of the guest on two taps of one namespace, the first bound
//! to vfio-pci (tenge), the second left to the guest's virtio_net driver. In the
//! namespace, a sink (port 5001) and a source (port 5002) serve any number of
//! connections; each round the guest sends for the duration and receives for the
//! duration, tenge and the kernel alternating. Both sides print the same live lines
//! (Mbit/s per second), reduced by the same steady-state rule; the BENCH lines are
//! `tcp-send` and `tcp-recv` (peer=linux-kernel), in Gbit/s.
//!
//! `flood`: tcp-echo's goodput on one bulk connection from the namespace while the
//! namespace floods the port with 64-byte junk (UDP to port 7 and SYNs to port 7 from
//! addresses outside the client's), from a packet socket on the tap as fast as it goes:
//! tcp-echo dropping the junk in the receive queue's ingress filter (tenge) against the
//! same server dropping it in the application after the burst (peer=app-drop); odd rounds
//! run the application's side first. Once, in the first round, three references as
//! BENCH-DETAIL lines: the same server with no drop at all (`no_drop`: the junk goes to
//! smoltcp; SYNs take its listeners, UDP draws ICMP port-unreachables); the junk sent to
//! another MAC with the port's promiscuous mode off, so QEMU's receive filter drops it
//! before the ring (`wire`: what the flood costs the server without a frame reaching the
//! guest, the best any drop in the guest could do); and no flood (`quiet`).
//!
//! `flood-vhost`: the same on a virtio-net served by the host's DPDK vhost, which forwards
//! between it and a veth into the namespace: the flood (300,000 frames/s) then reaches
//! the ring at host speed, where QEMU's tap path carries about 0.17 Mpps, so it is the
//! server that the junk loads.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tenge_testbed::{
    Backend, HostMode, Nic, NicModel, TapPeer, VhostHost, VhostHostConfig, DEFAULT_GUEST_ADDR,
};
use tenge_tests::guest_bin;

use crate::{field, mean, phase, run_with, stats, steady, tenge_samples};

/// The case names.
pub(crate) const TCP_CASE: &str = "tcp";
pub(crate) const FLOOD_CASE: &str = "flood";
pub(crate) const FLOOD_VHOST_CASE: &str = "flood-vhost";

/// The kernel NIC's network: the second tap's address and the guest's.
const KERNEL_HOST_CIDR: &str = "10.98.0.1/24";
const KERNEL_HOST: &str = "10.98.0.1";
const KERNEL_GUEST_CIDR: &str = "10.98.0.2/24";

/// The same virtio-net model for both sides (split rings, mergeable buffers, EVENT_IDX):
/// on a vnet-header tap QEMU offers it the checksum and TSO features, which the kernel's
/// driver takes and tenge takes for TX checksums.
fn model() -> NicModel {
    NicModel::virtio()
}

/// [`tenge_tests::tcp::start_server`] serving for ever without hashing; its output is
/// drained in a thread so it never blocks on a full pipe.
fn start_server(peer: &TapPeer, mode: &str, port: u16) -> Result<std::process::Child, String> {
    use std::io::BufRead;
    let tenge_tests::tcp::Server { child, mut out } =
        tenge_tests::tcp::start_server(peer, mode, port, 0, 0, false)?;
    std::thread::spawn(move || {
        let mut sink = String::new();
        while out.read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    Ok(child)
}

/// The `tcp` case.
pub(crate) fn run_tcp(d: u32, rounds: u32) -> Result<(), String> {
    let peer = TapPeer::new().map_err(|e| format!("tap in a namespace: {e}"))?;
    // A second tap in the same namespace: the same Linux peer for the kernel's NIC.
    peer.exec_ok(&[
        "ip", "tuntap", "add", "dev", "tap1", "mode", "tap", "vnet_hdr",
    ])
    .and_then(|_| peer.exec_ok(&["ip", "link", "set", "tap1", "up"]))
    .and_then(|_| peer.exec_ok(&["ip", "addr", "add", KERNEL_HOST_CIDR, "dev", "tap1"]))
    .map_err(|e| format!("the second tap: {e}"))?;
    let mut servers = vec![
        start_server(&peer, "sink", 5001)?,
        start_server(&peer, "source", 5002)?,
    ];
    let kernel_tap = Backend::Tap {
        netns: peer.netns().to_owned(),
        ifname: "tap1".into(),
        queues: 1,
    };
    let mut kernel_nic = Nic::new(model(), kernel_tap);
    kernel_nic.bind_vfio = false;
    let nics = vec![Nic::new(model(), peer.backend()), kernel_nic];
    let client = tenge_tests::scratch_dir("bench-tcp").join("kernel-bulk.py");
    std::fs::File::create(&client)
        .and_then(|mut f| f.write_all(tenge_tests::tcp::CLIENT.as_bytes()))
        .map_err(|e| format!("{}: {e}", client.display()))?;
    let bulk = guest_bin("tcp-bulk").display().to_string();
    let (a0, a1) = (Nic::pci_addr(0), Nic::pci_addr(1));
    let host = peer.host_addr();
    // The kernel's interface: the virtio device's net/ below the PCI function.
    let mut script = format!(
        "set -e\n\
         dev=$(ls -d /sys/bus/pci/devices/{a1}/virtio*/net/* /sys/bus/pci/devices/{a1}/net/* 2>/dev/null | head -1)\n\
         dev=${{dev##*/}}\n\
         [ -n \"$dev\" ] || {{ echo 'no kernel interface on {a1}'; exit 1; }}\n\
         ip link set \"$dev\" up\n\
         ip addr add {KERNEL_GUEST_CIDR} dev \"$dev\"\n\
         echo \"kernel interface $dev: $(ethtool -k $dev 2>/dev/null | grep -E '^(tx-checksumming|tcp-segmentation-offload|generic-receive-offload):' | tr '\\n' ' ')\"\n\
         for i in $(seq 50); do ping -c 1 -W 1 {KERNEL_HOST} >/dev/null 2>&1 && break; sleep 0.2; done\n"
    );
    let py = client.display();
    for r in 0..rounds {
        for (dir, port) in [("send", 5001), ("recv", 5002)] {
            script += &format!(
                "echo BENCH-PHASE tenge-{dir}{r}\n\
                 {bulk} {a0} --ip {DEFAULT_GUEST_ADDR}/24 --{dir} --connect {host} --port {port} --duration {d} --no-sha --interval 1 --buffer 4194304\n\
                 echo BENCH-PHASE kernel-{dir}{r}\n\
                 python3 {py} {dir} {KERNEL_HOST} {port} {d}\n"
            );
        }
    }
    script += "echo BENCH-PHASE end\n";
    let lines = run_with(nics, &script, 2 * d, 2 * rounds, |_| {});
    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    let lines = lines?;
    if let Some(l) = lines.iter().find(|l| l.starts_with("kernel interface")) {
        println!(
            "BENCH-DETAIL case={TCP_CASE} {}",
            l.replace(": ", "=").replace(' ', "_")
        );
    }
    for (dir, samples_dir) in [("send", "tx"), ("recv", "rx")] {
        let case = format!("{TCP_CASE}-{dir}");
        let (mut tenge, mut kernel, mut left_out) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..rounds {
            let t = phase(&lines, &format!("tenge-{dir}{r}"));
            let k = phase(&lines, &format!("kernel-{dir}{r}"));
            // Mbit/s per second on both sides; reported in Gbit/s.
            match (
                steady(&tenge_samples(&t, samples_dir)),
                steady(&tenge_samples(&k, samples_dir)),
            ) {
                (Some(a), Some(b)) => {
                    tenge.push(a / 1e3);
                    kernel.push(b / 1e3);
                }
                (a, b) => left_out.push(format!(
                    "round={r} why=no-steady-rate tenge={a:?} kernel={b:?}"
                )),
            }
            println!(
                "BENCH-DETAIL case={case} round={r} tenge_bytes={} tenge_tx_csum={} tenge_tx_no_buffer={} tenge_rx_no_buf={} kernel_bytes={}",
                field(&t, "bytes").unwrap_or(0.0),
                t.iter()
                    .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("tx_csum=")))
                    .unwrap_or("none"),
                field(&t, "tx_no_buffer").unwrap_or(0.0),
                field(&t, "rx_no_buf").unwrap_or(0.0),
                field(&k, "bytes").unwrap_or(0.0),
            );
        }
        println!("BENCH-ROUNDS case={case} tenge={tenge:.4?} kernel={kernel:.4?}");
        stats::report_vs(
            &case,
            &tenge,
            &kernel,
            "linux-kernel",
            &left_out,
            " unit=payload-gbps",
        )?;
    }
    Ok(())
}

/// A unicast address that is no port's, for the `wire` reference's junk.
const FOREIGN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x66, 2];

/// 64-byte junk frames for the flood, to the guest's `mac`: UDP to port 7 and SYNs to
/// port 7 (10 bytes of payload, so both are 64 bytes), alternating, from 200 addresses
/// outside the client's (10.99.1.x) and many ports.
fn junk_frames(mac: [u8; 6]) -> Vec<Vec<u8>> {
    (0..512u32)
        .map(|i| {
            let mut f = Vec::with_capacity(64);
            let b = etherparse::PacketBuilder::ethernet2([0x02, 0, 0, 0, 0x66, 1], mac).ipv4(
                [10, 99, 1, (i % 200) as u8 + 1],
                [10, 99, 0, 2],
                64,
            );
            let port = 10_000 + (i * 97 % 50_000) as u16;
            let r = if i % 2 == 0 {
                b.udp(port, 7).write(&mut f, &[0u8; 22])
            } else {
                b.tcp(port, 7, i.wrapping_mul(2_654_435_761), 1024)
                    .syn()
                    .write(&mut f, &[0u8; 10])
            };
            r.map(|()| f).expect("a junk frame")
        })
        .collect()
}

/// When the flood starts, after tcp-echo's READY: the client's connection is open and its
/// transfer under way.
const FLOOD_START: Duration = Duration::from_secs(2);

/// The flood's rate, frames per second: the most the tap carries with little loss. A
/// packet socket unpaced sends about 1.9 Mpps here, but the tap holds 1,000 frames for
/// QEMU, QEMU takes about 0.17 Mpps of them, and the tap drops the client's frames as much
/// as the junk: the connection then falls to 1-2 Mbit/s whatever the server does, and the
/// case would measure the tap's queue (`TENGE_FLOOD_PPS=0`). At 150,000 the tap dropped
/// 0.1-4 % (`tap_dropped` in BENCH-DETAIL) and the rest reached the guest's ring.
const FLOOD_PPS: u64 = 150_000;

/// [`FLOOD_PPS`] (on the vhost wire [`FLOOD_VHOST_PPS`]), or `TENGE_FLOOD_PPS` from the
/// environment (0: unpaced, the packet socket's most).
fn flood_pps(vhost: bool) -> u64 {
    std::env::var("TENGE_FLOOD_PPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if vhost { FLOOD_VHOST_PPS } else { FLOOD_PPS })
}

/// The `flood-vhost` rate: the host's two cores carry the flooding thread, the host
/// testpmd's forwarding lcore (always busy) and the guest's vCPUs. Unpaced (about 0.85
/// Mpps through the veth) the flood took the guest's CPU time, and the connection fell to
/// a few Mbit/s whatever the server did; at 300,000 the guest keeps about a core.
const FLOOD_VHOST_PPS: u64 = 300_000;

/// The tap's `tx_dropped` counter (frames for QEMU it had no room for).
fn tap_tx_dropped(peer: &TapPeer) -> u64 {
    let path = format!("/sys/class/net/{}/statistics/tx_dropped", peer.ifname());
    peer.exec_ok(&["cat", &path])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// tcp-echo's live rates (Mbit/s) with their time, `[  3.0s] echo  412.000 Mbit/s ...`,
/// only those in the flood's whole seconds (each sample is the second before its time).
fn flood_samples(lines: &[&str], d: u32) -> Vec<f64> {
    let (from, to) = (
        FLOOD_START.as_secs_f64() + 1.0,
        FLOOD_START.as_secs_f64() + f64::from(d),
    );
    lines
        .iter()
        .filter_map(|l| {
            let (t, rest) = l.trim_start().strip_prefix('[')?.split_once("s] ")?;
            let t: f64 = t.trim().parse().ok()?;
            let mut w = rest.split_whitespace();
            (w.next()? == "echo").then_some(())?;
            let v: f64 = w.next()?.parse().ok()?;
            // A live line comes a little after its second: allow 0.5 s.
            (t >= from - 0.5 && t <= to + 0.5).then_some(v)
        })
        .collect()
}

/// The mean of a phase's live rates over the flood's seconds (no steady-state trimming:
/// the window is cut to the flood already); None without a sample.
fn flood_mean(lines: &[&str], d: u32) -> Option<f64> {
    mean(&flood_samples(lines, d))
}

/// A mean for a BENCH-DETAIL line: three decimals, or `none`.
fn mean_or_none(m: Option<f64>) -> String {
    m.map_or_else(|| "none".to_string(), |m| format!("{m:.3}"))
}

/// The flood frames sent and the tap's drops in phase `ph` (0, 0 if it had no flood).
fn sent_in(flood_sent: &[(String, u64, u64)], ph: &str) -> (u64, u64) {
    flood_sent
        .iter()
        .find(|(p, _, _)| p == ph)
        .map_or((0, 0), |(_, n, t)| (*n, *t))
}

/// One phase's host side: the bulk echo client and the flood, started when tcp-echo says
/// READY, for `d` seconds.
struct Load {
    sent: Arc<AtomicU64>,
    /// Frames the tap dropped (its queue to QEMU full) while the flood ran.
    tap_dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// The `flood` case, or with `vhost` the `flood-vhost` case: the same, with the port a
/// virtio-net served by the host's DPDK vhost (split rings), which forwards between it and
/// a veth into the namespace (`net_af_packet`): there the junk reaches the ring at host
/// speed, not at the 0.17 Mpps QEMU's tap path carries, and the server, not QEMU, is
/// what the flood loads.
pub(crate) fn run_flood(d: u32, rounds: u32, vhost: bool) -> Result<(), String> {
    let case = if vhost { FLOOD_VHOST_CASE } else { FLOOD_CASE };
    let outer = format!("tgv{}", std::process::id() % 1_000_000);
    let peer = Arc::new(if vhost {
        TapPeer::veth(&outer).map_err(|e| format!("veth into a namespace: {e}"))?
    } else {
        TapPeer::new().map_err(|e| format!("tap in a namespace: {e}"))?
    });
    let mut device_host = if vhost {
        let mut h = VhostHost::start(&VhostHostConfig {
            af_packet: Some(outer.clone()),
            ..VhostHostConfig::new(HostMode::Io)
        })
        .map_err(|e| format!("host: {e}"))?;
        h.start_forwarding().map_err(|e| format!("host: {e}"))?;
        Some(h)
    } else {
        None
    };
    let nics = vec![match &device_host {
        Some(h) => Nic::new(NicModel::virtio(), h.backend(0)),
        None => Nic::new(model(), peer.backend()),
    }];
    let echo = guest_bin("tcp-echo").display().to_string();
    let a0 = Nic::pci_addr(0);
    let host = peer.host_addr().to_owned();
    let mut script = String::from("set -e\n");
    for r in 0..rounds {
        // Round 0 also runs three references: the junk left to smoltcp (no drop at all,
        // what dropping buys); on the tap, the junk sent to another MAC with the port's
        // promiscuous mode off, so QEMU's receive filter drops it before the ring (what the
        // flood costs outside the guest's driver: no drop in the guest can do better); and
        // no flood at all. Odd rounds run the application's drop first: a drift within the
        // boot (the tap's queue, the host's load) then falls on both sides alike.
        let filter = format!(" --drop-udp --only-from {host}/32 --drop-at filter");
        let app = format!(" --drop-udp --only-from {host}/32 --drop-at app");
        let mut sides = vec![("tenge", filter), ("peer", app)];
        if r % 2 == 1 {
            sides.reverse();
        }
        if r == 0 {
            sides.push(("stack", String::new()));
            if !vhost {
                sides.push(("wire", " --no-promisc".to_owned()));
            }
            sides.push(("quiet", String::new()));
        }
        for (side, opts) in sides {
            // The echo runs a little longer than the load, so its last live lines are the
            // flood's and its summary comes after the client is gone.
            script += &format!(
                "echo BENCH-PHASE {side}{r}\n\
                 {echo} {a0} --ip {DEFAULT_GUEST_ADDR}/24 --port 7 --connections 4{opts} --duration {} --interval 1\n",
                d + 6
            );
        }
    }
    script += "echo BENCH-PHASE end\n";
    let mac: [u8; 6] = tenge_examples::parse_mac(&Nic::mac(0)).map_err(|e| e.to_string())?;
    let frames = Arc::new(junk_frames(mac));
    // For the `wire` reference: the same junk to a unicast address that is not the port's.
    let foreign = Arc::new(junk_frames(FOREIGN_MAC));
    let loads: Arc<Mutex<Vec<(String, Load)>>> = Arc::default();
    let mut current = String::new();
    let result = run_with(nics, &script, d + 10, 2 * rounds + 3, |l| {
        if let Some(p) = l.trim().strip_prefix("BENCH-PHASE ") {
            current = p.to_owned();
            return;
        }
        if !l.contains("tcp-echo:") || !l.contains("READY") {
            return;
        }
        let sent = Arc::new(AtomicU64::new(0));
        let tap_dropped = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let client = {
            let peer = peer.clone();
            std::thread::spawn(move || {
                let out = peer
                    .command("python3")
                    .args([
                        "-c",
                        tenge_tests::tcp::ECHO_CLIENT,
                        DEFAULT_GUEST_ADDR,
                        "7",
                        &(FLOOD_START + Duration::from_secs(u64::from(d)))
                            .as_secs()
                            .to_string(),
                    ])
                    .output();
                if let Ok(o) = out {
                    print!("{}", String::from_utf8_lossy(&o.stdout));
                }
            })
        };
        let quiet = current.starts_with("quiet");
        let flood = {
            let (peer, frames, sent, tap_dropped, stop) = (
                peer.clone(),
                if current.starts_with("wire") {
                    foreign.clone()
                } else {
                    frames.clone()
                },
                sent.clone(),
                tap_dropped.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                if quiet {
                    return;
                }
                let Ok(sock) = peer.frame_socket() else {
                    eprintln!("tenge-bench: no packet socket on the tap: the flood did not run");
                    return;
                };
                // The client's connection opens and its transfer runs before the junk starts.
                std::thread::sleep(FLOOD_START);
                let dropped_before = tap_tx_dropped(&peer);
                let pps = flood_pps(vhost);
                let start = Instant::now();
                let length = Duration::from_secs(u64::from(d));
                let mut i = 0u64;
                while start.elapsed() < length && !stop.load(Ordering::Relaxed) {
                    // Paced to the rate: what is due by now, then a short sleep.
                    let due = match pps {
                        0 => i + 1024,
                        p => (start.elapsed().as_secs_f64() * p as f64) as u64,
                    };
                    while i < due {
                        if sock.send(&frames[i as usize % frames.len()]).is_ok() {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                        i += 1;
                    }
                    if pps > 0 {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
                tap_dropped.store(
                    tap_tx_dropped(&peer).saturating_sub(dropped_before),
                    Ordering::Relaxed,
                );
            })
        };
        if let Ok(mut ls) = loads.lock() {
            ls.push((
                current.clone(),
                Load {
                    sent,
                    tap_dropped,
                    stop,
                    threads: vec![client, flood],
                },
            ));
        }
    });
    let mut flood_sent = Vec::new();
    if let Ok(mut ls) = loads.lock() {
        for (p, l) in ls.drain(..) {
            l.stop.store(true, Ordering::Relaxed);
            for t in l.threads {
                let _ = t.join();
            }
            flood_sent.push((
                p,
                l.sent.load(Ordering::Relaxed),
                l.tap_dropped.load(Ordering::Relaxed),
            ));
        }
    }
    let lines = result?;
    let (mut tenge, mut app, mut left_out) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let t = phase(&lines, &format!("tenge{r}"));
        let p = phase(&lines, &format!("peer{r}"));
        match (flood_mean(&t, d), flood_mean(&p, d)) {
            (Some(a), Some(b)) => {
                tenge.push(a);
                app.push(b);
            }
            (a, b) => left_out.push(format!(
                "round={r} why=no-steady-rate filter={a:?} app={b:?}"
            )),
        }
        let (ts, tt) = sent_in(&flood_sent, &format!("tenge{r}"));
        let (ps, pt) = sent_in(&flood_sent, &format!("peer{r}"));
        println!(
            "BENCH-DETAIL case={case} round={r} flood_pps={} filter_flood_sent={ts} filter_tap_dropped={tt} filter_ingress_dropped={} filter_rx_frames={} filter_rx_no_buf={} app_flood_sent={ps} app_tap_dropped={pt} app_dropped={} app_rx_frames={} app_rx_no_buf={}",
            flood_pps(vhost),
            field(&t, "ingress_dropped").unwrap_or(0.0),
            field(&t, "rx_frames").unwrap_or(0.0),
            field(&t, "rx_no_buf").unwrap_or(0.0),
            field(&p, "rx_app_dropped").unwrap_or(0.0),
            field(&p, "rx_frames").unwrap_or(0.0),
            field(&p, "rx_no_buf").unwrap_or(0.0),
        );
    }
    let stack = phase(&lines, "stack0");
    println!(
        "BENCH-DETAIL case={case} no_drop_mbps={} no_drop_flood_sent={} no_drop_rx_frames={} no_drop_tx_frames={} (round 0: the junk left to smoltcp)",
        mean_or_none(flood_mean(&stack, d)),
        sent_in(&flood_sent, "stack0").0,
        field(&stack, "rx_frames").unwrap_or(0.0),
        field(&stack, "tx_frames").unwrap_or(0.0),
    );
    for (side, what) in [
        (
            "wire",
            "the junk to another MAC, dropped by QEMU's receive filter",
        ),
        ("quiet", "no flood"),
    ] {
        let ph = phase(&lines, &format!("{side}0"));
        if ph.is_empty() {
            continue;
        }
        println!(
            "BENCH-DETAIL case={case} {side}_mbps={} {side}_flood_sent={} {side}_rx_frames={} (round 0: {what})",
            mean_or_none(flood_mean(&ph, d)),
            sent_in(&flood_sent, &format!("{side}0")).0,
            field(&ph, "rx_frames").unwrap_or(0.0),
        );
    }
    if let Some(h) = device_host.as_mut() {
        // The host's counters over the whole run (every phase): port 0 is the vhost port,
        // port 1 the veth; frames for the guest its ring had no room for are port 0's
        // forwarding drops.
        let ports = h.port_stats().map_err(|e| format!("host: {e}"))?;
        let fwd = h.stop_forwarding().map_err(|e| format!("host: {e}"))?;
        if let ([v, a, ..], [f, ..]) = (ports.as_slice(), fwd.as_slice()) {
            println!(
                "BENCH-DETAIL case={case} host_to_guest={} host_to_guest_dropped={} host_from_veth={} host_veth_missed={}",
                v.tx_packets, f.tx_dropped, a.rx_packets, a.rx_missed
            );
        }
    }
    println!("BENCH-ROUNDS case={case} filter={tenge:.3?} app={app:.3?} unit=mbps");
    stats::report_vs(
        case,
        &tenge,
        &app,
        "app-drop",
        &left_out,
        " unit=goodput-mbps",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_samples_are_the_floods_seconds_only() {
        let lines = [
            "[   1.0s] echo  500.000 Mbit/s  connections open 1 accepted 1 closed 0",
            "[   2.0s] echo  510.000 Mbit/s  connections open 1 accepted 1 closed 0",
            "[   3.0s] echo  300.000 Mbit/s  connections open 1 accepted 1 closed 0",
            "[   4.0s] echo  310.000 Mbit/s  connections open 1 accepted 1 closed 0",
            "[   5.0s] echo  320.000 Mbit/s  connections open 1 accepted 1 closed 0",
            "[   6.0s] echo    0.000 Mbit/s  connections open 0 accepted 1 closed 1",
            "tcp-echo: done: echoed_bytes=1",
        ];
        assert_eq!(flood_samples(&lines, 3), vec![300.0, 310.0, 320.0]);
        assert!(junk_frames([2, 0, 0, 0, 0, 1])
            .iter()
            .all(|f| f.len() == 64));
    }
}
