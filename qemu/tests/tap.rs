//! The tap backend: a network namespace with a vnet-header tap as a real Linux peer.
//! Needs root and iproute2; the guest tests boot QEMU, so all are ignored by default (run
//! with `cargo test -p tenge-testbed -- --ignored`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tenge_testbed::{
    Backend, Guest, GuestConfig, Nic, NicModel, TapPeer, DEFAULT_GUEST_ADDR, OWNERS_DIR,
};

fn netns_list() -> String {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn listed(list: &str, netns: &str) -> bool {
    list.lines()
        .any(|l| l.split_whitespace().next() == Some(netns))
}

#[test]
#[ignore = "needs root and iproute2 (creates a network namespace)"]
fn tap_peer_makes_and_removes_its_namespace() {
    let peer = TapPeer::new().expect("create tap peer");
    let netns = peer.netns().to_owned();
    assert!(listed(&netns_list(), &netns), "{netns} not listed");
    let link = peer
        .exec_ok(&["ip", "-d", "link", "show", peer.ifname()])
        .expect("ip link show");
    assert!(
        link.contains("tap") && link.contains("vnet_hdr on"),
        "{link}"
    );
    let addr = peer
        .exec_ok(&["ip", "addr", "show", peer.ifname()])
        .expect("ip addr show");
    assert!(addr.contains("inet 10.99.0.1/24"), "{addr}");
    // lo is up: the namespace reaches its own address.
    let ping = peer.ping(peer.host_addr(), 2, 56).expect("ping");
    assert!(ping.all_replied(), "{}", ping.output);
    // The address exists only inside the namespace.
    let host = Command::new("ip")
        .args(["-o", "addr", "show"])
        .output()
        .expect("ip addr");
    assert!(!String::from_utf8_lossy(&host.stdout).contains("10.99.0.1/24"));
    peer.frame_socket().expect("packet socket on the tap");
    assert!(Path::new(OWNERS_DIR).join(&netns).exists());
    drop(peer);
    assert!(!listed(&netns_list(), &netns), "{netns} left behind");
    assert!(!Path::new(OWNERS_DIR).join(&netns).exists());

    // A name that is taken is refused rather than reused.
    let peer = TapPeer::create("tenge-test-taken", "tap0", "10.99.0.1/24").expect("create");
    let again = TapPeer::create("tenge-test-taken", "tap0", "10.99.0.1/24");
    assert!(again.is_err());
    drop(peer);
    assert!(!listed(&netns_list(), "tenge-test-taken"));
}

#[test]
#[ignore = "needs root and iproute2 (creates a network namespace)"]
fn namespaces_of_dead_owners_are_pruned() {
    let name = format!("tenge-stale-{}", std::process::id());
    let status = Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .expect("ip netns add");
    assert!(status.success());
    std::fs::create_dir_all(OWNERS_DIR).expect("owners dir");
    // pid 0 never has a /proc entry: an owner that is gone.
    std::fs::write(Path::new(OWNERS_DIR).join(&name), "0 1\n").expect("owner file");
    let peer = TapPeer::new().expect("create tap peer");
    assert!(!listed(&netns_list(), &name), "{name} not pruned");
    assert!(!Path::new(OWNERS_DIR).join(&name).exists());
    drop(peer);
}

#[test]
#[ignore = "boots a QEMU guest"]
fn missing_tap_is_a_clear_error() {
    let nic = Nic::new(
        NicModel::virtio(),
        Backend::Tap {
            netns: "tenge-no-such-netns".into(),
            ifname: "tap0".into(),
            queues: 1,
        },
    );
    let e = Guest::boot(&GuestConfig::with_nics(vec![nic]), "exit 0").unwrap_err();
    assert!(e.to_string().contains("tenge-no-such-netns"), "{e}");
}

/// Feature bits of virtio-net that QEMU offers only with a vnet-header backend.
const OFFLOAD_BITS: [(usize, &str); 4] = [
    (0, "CSUM"),
    (1, "GUEST_CSUM"),
    (7, "GUEST_TSO4"),
    (11, "HOST_TSO4"),
];

/// Which of [`OFFLOAD_BITS`] are set in a virtio `features` bit string (bit 0 first).
fn offloads(features: &str) -> Vec<&'static str> {
    OFFLOAD_BITS
        .iter()
        .filter(|(bit, _)| features.as_bytes().get(*bit) == Some(&b'1'))
        .map(|(_, name)| *name)
        .collect()
}

/// Every frame size from the minimum (60 bytes without FCS) to a full 1500-byte MTU.
const SIZES: std::ops::RangeInclusive<usize> = 60..=1514;

#[test]
#[ignore = "boots a QEMU guest"]
fn linux_in_a_namespace_talks_to_a_guest_over_tap() {
    let peer = TapPeer::new().expect("create tap peer");
    let dgram_peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind dgram peer");
    let free = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local_port = free.local_addr().expect("addr").port();
    drop(free);
    let mut tap_nic = Nic::new(NicModel::virtio(), peer.backend());
    tap_nic.bind_vfio = false;
    let mut dgram_nic = Nic::new(
        NicModel::virtio(),
        Backend::Dgram {
            local_port,
            remote_port: dgram_peer.local_addr().expect("addr").port(),
        },
    );
    dgram_nic.bind_vfio = false;
    let config = GuestConfig {
        hugepages_2m: 0,
        timeout: Duration::from_secs(240),
        ..GuestConfig::with_nics(vec![tap_nic, dgram_nic])
    };
    let frames = SIZES.count();
    let script = format!(
        r#"
set -e
for i in 0 1; do
    a=$(echo $TENGE_NICS | cut -d' ' -f$((i + 1)))
    echo "FEATURES$i=$(cat /sys/bus/pci/devices/$a/virtio*/features)"
done
dev=$(ls /sys/bus/pci/devices/{a0}/virtio*/net/)
ip addr add {guest}/24 dev $dev
ip link set $dev up
stats=/sys/class/net/$dev/statistics
base=$(cat $stats/rx_dropped)
echo READY
# The host pings, then sends {frames} frames of an unknown EtherType, which the stack drops
# and counts in rx_dropped (rx_nohandler counts only exact-match deliveries, e.g. bonding).
# Wait for them all (or 90 s).
n=0
while [ $(( $(cat $stats/rx_dropped) - base )) -lt {frames} ] && [ $n -lt 900 ]; do
    sleep 0.1
    n=$((n + 1))
done
echo "UNKNOWN_ETHERTYPE_RX=$(( $(cat $stats/rx_dropped) - base )) RX_PACKETS=$(cat $stats/rx_packets)"
"#,
        a0 = Nic::pci_addr(0),
        guest = DEFAULT_GUEST_ADDR,
    );
    let mut guest = Guest::boot(&config, &script).expect("boot");
    let mut features = Vec::new();
    guest
        .wait_for_line(|l| {
            if let Some(f) = l.strip_prefix("FEATURES") {
                features.push(f.to_owned());
            }
            l == "READY"
        })
        .expect("guest READY");
    assert_eq!(features.len(), 2, "{features:?}");
    let tap_features = features[0].strip_prefix("0=").expect("FEATURES0");
    let dgram_features = features[1].strip_prefix("1=").expect("FEATURES1");
    assert_eq!(
        offloads(tap_features),
        ["CSUM", "GUEST_CSUM", "GUEST_TSO4", "HOST_TSO4"],
        "tap: {tap_features}"
    );
    assert!(
        offloads(dgram_features).is_empty(),
        "dgram: {dgram_features}"
    );

    let ping = peer.ping(DEFAULT_GUEST_ADDR, 5, 56).expect("ping");
    assert!(ping.all_replied(), "{}", ping.output);
    // A full-MTU frame (1472 + 8 ICMP + 20 IP = 1500) both ways.
    let ping = peer.ping(DEFAULT_GUEST_ADDR, 2, 1472).expect("ping");
    assert!(ping.all_replied(), "{}", ping.output);

    let socket = peer.frame_socket().expect("frame socket");
    let mut frame = vec![0u8; *SIZES.end()];
    frame[..6].copy_from_slice(&[0x52, 0x54, 0x00, 0x7e, 0x00, 0x00]); // Nic::mac(0)
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    frame[12..14].copy_from_slice(&[0x88, 0xb5]); // IEEE local experimental EtherType
    let started = Instant::now();
    for (k, size) in SIZES.enumerate() {
        frame[14..16].copy_from_slice(&(size as u16).to_be_bytes());
        socket.send(&frame[..size]).expect("send frame");
        // The tap's queue holds 1000 frames and the TCG guest drains slowly: pace the burst.
        if k % 32 == 31 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    eprintln!("sent {frames} frames in {:?}", started.elapsed());
    let line = guest
        .wait_for("UNKNOWN_ETHERTYPE_RX=")
        .expect("guest count");
    let got: usize = line
        .split_whitespace()
        .next()
        .and_then(|w| w.strip_prefix("UNKNOWN_ETHERTYPE_RX="))
        .and_then(|n| n.parse().ok())
        .expect("count");
    let outcome = guest.wait().expect("wait");
    assert_eq!(outcome.exit_code, Some(0), "{}", outcome.describe());
    let tap_stats = peer
        .exec_ok(&["ip", "-s", "link", "show", peer.ifname()])
        .unwrap_or_default();
    assert_eq!(got, frames, "{line}; tap: {tap_stats}");
}
