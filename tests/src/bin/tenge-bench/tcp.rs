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
//! same server dropping it in the application after the burst (peer=app-drop). Once,
//! in the first round, the same server with no drop at all (the junk goes to smoltcp:
//! SYNs take its listeners, UDP draws ICMP port-unreachables), as a BENCH-DETAIL line.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tenge_testbed::{Backend, Nic, NicModel, TapPeer, DEFAULT_GUEST_ADDR};
use tenge_tests::guest_bin;

use crate::{field, phase, run_with, stats, steady, tenge_samples};

/// The case names.
pub(crate) const TCP_CASE: &str = "tcp";
pub(crate) const FLOOD_CASE: &str = "flood";

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
                 {bulk} {a0} --ip {DEFAULT_GUEST_ADDR}/24 --{dir} --connect {host} --port {port} --duration {d} --no-sha --interval 1\n\
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
            " unit=gbps",
        )?;
    }
    Ok(())
}

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

/// One phase's host side: the bulk echo client and the flood, started when tcp-echo says
/// READY, for `d` seconds.
struct Load {
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// The `flood` case.
pub(crate) fn run_flood(d: u32, rounds: u32) -> Result<(), String> {
    let peer = Arc::new(TapPeer::new().map_err(|e| format!("tap in a namespace: {e}"))?);
    let nics = vec![Nic::new(model(), peer.backend())];
    let echo = guest_bin("tcp-echo").display().to_string();
    let a0 = Nic::pci_addr(0);
    let host = peer.host_addr().to_owned();
    let mut script = String::from("set -e\n");
    for r in 0..rounds {
        // And once, the junk left to smoltcp (no drop at all), for what dropping buys.
        let sides: &[(&str, &str)] = if r == 0 {
            &[("tenge", "filter"), ("peer", "app"), ("stack", "")]
        } else {
            &[("tenge", "filter"), ("peer", "app")]
        };
        for (side, at) in sides {
            let drop = if at.is_empty() {
                String::new()
            } else {
                format!(" --drop-udp --only-from {host}/32 --drop-at {at}")
            };
            // The echo runs a little longer than the load, so its last live lines are the
            // flood's and its summary comes after the client is gone.
            script += &format!(
                "echo BENCH-PHASE {side}{r}\n\
                 {echo} {a0} --ip {DEFAULT_GUEST_ADDR}/24 --port 7 --connections 4{drop} --duration {} --interval 1\n",
                d + 4
            );
        }
    }
    script += "echo BENCH-PHASE end\n";
    let mac: [u8; 6] = tenge_examples::parse_mac(&Nic::mac(0)).map_err(|e| e.to_string())?;
    let frames = Arc::new(junk_frames(mac));
    let loads: Arc<Mutex<Vec<(String, Load)>>> = Arc::default();
    let mut current = String::new();
    let result = run_with(nics, &script, d + 8, 2 * rounds + 1, |l| {
        if let Some(p) = l.trim().strip_prefix("BENCH-PHASE ") {
            current = p.to_owned();
            return;
        }
        if !l.contains("tcp-echo:") || !l.contains("READY") {
            return;
        }
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let client = {
            let (peer, host) = (peer.clone(), host.clone());
            std::thread::spawn(move || {
                let out = peer
                    .command("python3")
                    .args([
                        "-c",
                        tenge_tests::tcp::ECHO_CLIENT,
                        &host,
                        "7",
                        &d.to_string(),
                    ])
                    .output();
                if let Ok(o) = out {
                    print!("{}", String::from_utf8_lossy(&o.stdout));
                }
            })
        };
        let flood = {
            let (peer, frames, sent, stop) =
                (peer.clone(), frames.clone(), sent.clone(), stop.clone());
            std::thread::spawn(move || {
                let Ok(sock) = peer.frame_socket() else {
                    eprintln!("tenge-bench: no packet socket on the tap: the flood did not run");
                    return;
                };
                // Let the client's connection open before the junk starts.
                std::thread::sleep(Duration::from_millis(500));
                let end =
                    Instant::now() + Duration::from_secs(u64::from(d)) - Duration::from_millis(500);
                let mut i = 0usize;
                while Instant::now() < end && !stop.load(Ordering::Relaxed) {
                    // A full tap queue refuses a frame: the flood goes as fast as the tap takes.
                    if sock.send(&frames[i % frames.len()]).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        };
        if let Ok(mut ls) = loads.lock() {
            ls.push((
                current.clone(),
                Load {
                    sent,
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
            flood_sent.push((p, l.sent.load(Ordering::Relaxed)));
        }
    }
    let lines = result?;
    let (mut tenge, mut app, mut left_out) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let t = phase(&lines, &format!("tenge{r}"));
        let p = phase(&lines, &format!("peer{r}"));
        match (
            steady(&tenge_samples(&t, "echo")),
            steady(&tenge_samples(&p, "echo")),
        ) {
            (Some(a), Some(b)) => {
                tenge.push(a);
                app.push(b);
            }
            (a, b) => left_out.push(format!(
                "round={r} why=no-steady-rate filter={a:?} app={b:?}"
            )),
        }
        let sent = |ph: String| {
            flood_sent
                .iter()
                .find(|(p, _)| *p == ph)
                .map_or(0, |(_, n)| *n)
        };
        println!(
            "BENCH-DETAIL case={FLOOD_CASE} round={r} filter_flood_sent={} filter_flood_mpps={:.4} filter_ingress_dropped={} filter_rx_frames={} filter_rx_no_buf={} app_flood_sent={} app_flood_mpps={:.4} app_dropped={} app_rx_frames={} app_rx_no_buf={}",
            sent(format!("tenge{r}")),
            sent(format!("tenge{r}")) as f64 / f64::from(d) / 1e6,
            field(&t, "ingress_dropped").unwrap_or(0.0),
            field(&t, "rx_frames").unwrap_or(0.0),
            field(&t, "rx_no_buf").unwrap_or(0.0),
            sent(format!("peer{r}")),
            sent(format!("peer{r}")) as f64 / f64::from(d) / 1e6,
            field(&p, "rx_app_dropped").unwrap_or(0.0),
            field(&p, "rx_frames").unwrap_or(0.0),
            field(&p, "rx_no_buf").unwrap_or(0.0),
        );
    }
    let stack = phase(&lines, "stack0");
    println!(
        "BENCH-DETAIL case={FLOOD_CASE} no_drop_mbps={} no_drop_flood_sent={} no_drop_rx_frames={} no_drop_tx_frames={} (round 0: the junk left to smoltcp)",
        steady(&tenge_samples(&stack, "echo")).map_or("none".into(), |v| format!("{v:.3}")),
        flood_sent
            .iter()
            .find(|(p, _)| p == "stack0")
            .map_or(0, |(_, n)| *n),
        field(&stack, "rx_frames").unwrap_or(0.0),
        field(&stack, "tx_frames").unwrap_or(0.0),
    );
    println!("BENCH-ROUNDS case={FLOOD_CASE} filter={tenge:.3?} app={app:.3?} unit=mbps");
    stats::report_vs(
        FLOOD_CASE,
        &tenge,
        &app,
        "app-drop",
        &left_out,
        " unit=mbps",
    )
}
