//! End-to-end tests of receive-side scaling against QEMU's e1000e (its RSS in
//! `hw/net/e1000e_core.c`: MRQC, RSSRK, RETA, the hash and type in the extended write-back).
//!
//! The host sends a few hundred flows over `-netdev dgram` (TCP and UDP over IPv4 and
//! IPv6, built with etherparse, and some non-IP frames); the guest's `rxdump` receives on
//! both queues, a thread each, and prints each frame with its queue, hash and type. Every
//! frame must be on the queue that an independent Toeplitz implementation
//! (`tenge_tests::toeplitz`, checked against Microsoft's verification vectors) predicts
//! from the key and table the port reports, with that hash in its metadata; and every frame
//! sent must arrive once.
//!
//! They boot QEMU, so they are `#[ignore]`d in a plain `cargo test`; run them with
//! `--ignored` after `cargo build --release --bins`.

use std::time::Duration;

use tenge_examples::parse_mac;
use tenge_testbed::{Guest, GuestConfig, Nic, NicModel};
use tenge_tests::rss::{flows, rxdump_exchange, RxdumpReport};
use tenge_tests::{bin, dgram_nic, tail, wait_ok};

/// Flows of each kind (TCP/IPv4, UDP/IPv4, TCP/IPv6, UDP/IPv6) per run.
const PER_KIND: usize = 80;

/// e1000e with both queues: the default RSS (all four hash types the 82574 has), then IP
/// addresses only (`Port::set_rss` after open), then a UDP hash type, which the 82574 does
/// not have and which the port must refuse with an error that says so.
#[test]
#[ignore = "boots a QEMU guest"]
fn e1000e_rss_spreads_flows_as_the_toeplitz_hash_predicts() {
    tenge_tests::retry_on_qemu_failure(|| {
        let (nic, peer) = dgram_nic(NicModel::E1000e);
        let rxdump = bin("rxdump");
        let pci = Nic::pci_addr(0);
        let sent = flows(PER_KIND, parse_mac(&Nic::mac(0)).unwrap());
        let n = sent.len();
        let script = format!(
            "{rxdump} {pci} --queues 2 --count {n} --duration 120 --interval 0 || exit 1\n\
             {rxdump} {pci} --queues 2 --rss-types ipv4,ipv6 --count {n} --duration 120 --interval 0 || exit 1\n\
             {rxdump} {pci} --queues 2 --rss-types ipv4,udp-ipv4 --duration 5 && exit 1\n\
             exit 0\n"
        );
        let cfg = GuestConfig {
            nics: vec![nic],
            timeout: Duration::from_secs(600),
            ..GuestConfig::default()
        };
        let mut guest = Guest::boot(&cfg, &script).unwrap();
        for (what, want_types) in [
            ("default hash types", "ipv4|tcp-ipv4|ipv6|tcp-ipv6"),
            ("addresses only", "ipv4|ipv6"),
        ] {
            let out = rxdump_exchange(&mut guest, &peer, &sent);
            let report = RxdumpReport::parse(&out);
            assert_eq!(
                report.types.join("|"),
                want_types,
                "{what}: {}",
                tail(&out, 5)
            );
            let per_queue = report.check(&sent, what);
            // Hundreds of random flows over a round-robin table: each queue gets a fair share.
            assert!(
                per_queue.iter().all(|&q| q > n / 4),
                "{what}: frames per queue {per_queue:?} of {n}"
            );
            assert!(
                out.contains(&format!("frames={n} ")) && out.contains("pool_free=2048/2048"),
                "{what}: {}",
                tail(&out, 3)
            );
        }
        let log = wait_ok(guest);
        assert!(
            log.contains("hash types udp-ipv4, which the 82574 cannot hash"),
            "the UDP hash type was not refused as expected: {}",
            tail(&log, 20)
        );
    })
}
