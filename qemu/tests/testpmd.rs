//! DPDK's testpmd as a known-good VFIO user of the test bed's NICs: if these pass, the guest's
//! vIOMMU, vfio-pci binding and hugepages are fit for a poll-mode driver. Boots QEMU, so
//! ignored by default; run with `cargo test -p tenge-testbed -- --ignored`.

use std::net::UdpSocket;
use std::time::Duration;

use tenge_testbed::{Backend, Guest, GuestConfig, Nic, NicModel};

/// Runs testpmd in txonly mode on NIC 0 for `secs` seconds of wall time (start-up included)
/// and leaves its output in /out/testpmd.log. testpmd without `-i` forwards until SIGINT and
/// then prints its accumulated statistics; `timeout` exits 124 when it had to send the signal,
/// which is the expected way for the run to end.
fn txonly_script(secs: u32) -> String {
    format!(
        "timeout -s INT {secs} dpdk-testpmd -l 0-1 -n 1 --no-telemetry -a {addr} -- \
         --total-num-mbufs=8192 --forward-mode=txonly --stats-period 2 --txpkts=64 \
         </dev/null >/out/testpmd.log 2>&1\n\
         rc=$?\n\
         tail -n 30 /out/testpmd.log\n\
         [ $rc = 124 ] || exit $rc\n",
        addr = Nic::pci_addr(0)
    )
}

/// The accumulated TX packet count and the highest periodic Tx-pps in a testpmd log.
fn tx_figures(log: &str) -> (u64, u64) {
    let number_after = |line: &str, key: &str| -> Option<u64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.split_whitespace().next()?.parse().ok()
    };
    let mut tx_packets = 0;
    let mut best_pps = 0;
    for line in log.lines() {
        if let Some(n) = number_after(line, "TX-packets:") {
            tx_packets = tx_packets.max(n);
        }
        if let Some(n) = number_after(line, "Tx-pps:") {
            best_pps = best_pps.max(n);
        }
    }
    (tx_packets, best_pps)
}

fn run_txonly(nic: Nic, secs: u32) -> (u64, u64) {
    let config = GuestConfig {
        nics: vec![nic],
        timeout: Duration::from_secs(u64::from(secs) + 120),
        ..GuestConfig::default()
    };
    let outcome = Guest::run(&config, &txonly_script(secs)).expect("boot");
    assert_eq!(outcome.exit_code, Some(0), "{}", outcome.describe());
    let log = std::fs::read_to_string(outcome.out_dir.join("testpmd.log")).expect("testpmd.log");
    let figures = tx_figures(&log);
    eprintln!(
        "testpmd txonly: {} frames sent, best Tx-pps {}",
        figures.0, figures.1
    );
    figures
}

#[test]
#[ignore = "boots a QEMU guest"]
fn testpmd_transmits_on_e1000e() {
    let (sent, pps) = run_txonly(Nic::new(NicModel::E1000e, Backend::Hub(0)), 20);
    assert!(sent > 0 && pps > 0, "testpmd sent nothing");
}

#[test]
#[ignore = "boots a QEMU guest"]
fn testpmd_transmits_on_virtio_over_dgram() {
    // virtio needs a consumer that always accepts (a lone hub port would stall it): frames
    // leave as UDP datagrams to this socket, which the kernel buffers or drops.
    let sink = UdpSocket::bind("127.0.0.1:0").expect("bind sink");
    let local = UdpSocket::bind("127.0.0.1:0").expect("probe a free port");
    let local_port = local.local_addr().expect("addr").port();
    drop(local);
    let nic = Nic::new(
        NicModel::virtio(),
        Backend::Dgram {
            local_port,
            remote_port: sink.local_addr().expect("addr").port(),
        },
    );
    let (sent, _) = run_txonly(nic, 20);
    assert!(sent > 0, "testpmd sent nothing on virtio");
    sink.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    let n = sink.recv(&mut buf).expect("a frame from the guest");
    assert_eq!(n, 64, "testpmd's --txpkts=64 frame");
}

#[test]
fn parses_testpmd_figures() {
    let log = "  TX-packets: 11336512   TX-errors: 0\n  Tx-pps:      2262271          Tx-bps: 1\n\
               TX-packets: 39114080       TX-dropped: 0\n  Tx-pps:  5\n";
    assert_eq!(tx_figures(log), (39114080, 2262271));
}
