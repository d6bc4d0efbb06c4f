//! What the TCP examples share: a port with smoltcp on its first queue pair
//! ([`tenge::smoltcp::SmolDevice`]), an IPv4 address and a default route from the command
//! line, and the poll loop's idle sleep: after a run of polls that moved nothing, the
//! receive queue's interrupt is armed (MSI-X through VFIO, `PortConfig::interrupts`), the
//! queue polled once more (a frame that raced in is taken), and the program sleeps until
//! the interrupt or smoltcp's next timer. Without a usable interrupt it sleeps up to a
//! millisecond at a time. An idle server does not burn a core either way.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, PollResult, SocketSet};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use tenge::smoltcp::SmolDevice;
use tenge::{Port, PortConfig};

/// Parses `10.99.0.2/24`.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("'{s}' is not an address with a prefix like 10.99.0.2/24"))?;
    let a: Ipv4Addr = a.parse().map_err(|e| format!("'{a}': {e}"))?;
    let p: u8 = p
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| format!("'{p}' is not a prefix length 0..=32"))?;
    Ok((a, p))
}

/// The command-line options every TCP example takes (`#[command(flatten)]`): the port,
/// the address, the route, the buffers, the live lines, the idle sleep, the offloads.
#[derive(clap::Args, Debug)]
pub struct StackArgs {
    /// PCI address of the NIC, e.g. 0000:00:03.0 (see `lspci -D`).
    pub pci: String,
    /// The interface's IPv4 address and prefix length.
    #[arg(long, value_parser = parse_cidr)]
    pub ip: (Ipv4Addr, u8),
    /// Default IPv4 route through this gateway.
    #[arg(long)]
    pub gateway: Option<Ipv4Addr>,
    /// Bytes of each socket's receive and send buffer.
    #[arg(long, default_value_t = 256 * 1024)]
    pub buffer: usize,
    /// RX descriptors (the TCP window is kept within them).
    #[arg(long, default_value_t = 512)]
    pub rx_ring: u32,
    /// Seconds between live rate lines (0: none).
    #[arg(long, default_value = "1", value_parser = crate::parse_secs)]
    pub interval: Duration,
    /// Empty polls before the loop sleeps until smoltcp's next timer (at most 1 ms): an
    /// idle program does not burn a core.
    #[arg(long, default_value_t = 2000)]
    pub idle_polls: u32,
    /// Every checksum by smoltcp in software, none by the device (the summary's
    /// `tx_csum=` says which were in use).
    #[arg(long)]
    pub no_offload: bool,
}

impl StackArgs {
    /// [`Stack::open`] with these options.
    pub fn open(&self) -> Result<Stack, Box<dyn std::error::Error>> {
        Stack::open(
            &self.pci,
            self.ip,
            self.gateway,
            self.rx_ring,
            self.idle_polls,
            !self.no_offload,
        )
    }

    /// A TCP socket with [`StackArgs::buffer`] bytes each way.
    pub fn socket(&self) -> smoltcp::socket::tcp::Socket<'static> {
        use smoltcp::socket::tcp;
        tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; self.buffer]),
            tcp::SocketBuffer::new(vec![0; self.buffer]),
        )
    }
}

/// A port, smoltcp on its first queue pair, and the loop's clock.
pub struct Stack {
    /// The smoltcp device. Declared before `port`, so it (its queue pair, whose ring
    /// registers are a mapping of the device) is dropped first: a port dropped before
    /// its queues closes VFIO's device while a BAR mapping still holds it, and the kernel
    /// refuses to take the group out of its container then (EBUSY, logged at exit).
    pub dev: SmolDevice,
    /// The smoltcp interface.
    pub iface: Interface,
    /// The sockets.
    pub sockets: SocketSet<'static>,
    /// The port (its control path; its first queue pair is the device's).
    pub port: Port,
    /// Who computes the TX checksums: `device` or `smoltcp` (`tx_csum=` in the summary).
    pub tx_checksums: &'static str,
    start: Instant,
    idle: u32,
    idle_polls: u32,
    /// Frames dropped before smoltcp (ingress filter, application drop) at the last poll.
    dropped: u64,
}

impl Stack {
    /// Opens `pci` with `rx_ring` RX descriptors and sets the interface up with `ip` and,
    /// if given, a default route through `gateway`; after `idle_polls` polls that moved
    /// nothing, [`Stack::poll`] sleeps. `offloads` false leaves every checksum to smoltcp
    /// in software, even where the device could compute it (to compare, and to test the
    /// path a device without offloads takes).
    pub fn open(
        pci: &str,
        ip: (Ipv4Addr, u8),
        gateway: Option<Ipv4Addr>,
        rx_ring: u32,
        idle_polls: u32,
        offloads: bool,
    ) -> Result<Stack, Box<dyn std::error::Error>> {
        let cfg = PortConfig {
            rx_ring,
            // The RX ring, a TX ring in flight and the batches, with room to spare.
            mempool_buffers: (rx_ring * 2 + 2048).max(4096),
            // MSI-X for the idle sleep (the port logs a fallback to polling if the device
            // cannot give it).
            interrupts: true,
            // virtio-net's CSUM and HOST_TSO where offered (e1000e and igb checksum and
            // segment per packet anyway).
            tx_checksum: offloads,
            tso: offloads,
            // virtio-net's GUEST_TSO where offered, tenge's software LRO after it: fewer,
            // larger frames for smoltcp, as the kernel's GRO gives its own stack.
            lro: offloads,
            rx_checksum: offloads,
            // The adapter takes the verdicts (below), so a checksum a local sender left
            // partial need not be completed: one pass over each frame fewer.
            rx_fill_partial_checksums: !offloads,
            ..PortConfig::default()
        };
        let mut port = Port::open(pci, &cfg)?;
        let mac = port.mac();
        let pair = port
            .take_queues()
            .into_iter()
            .next()
            .ok_or("the port has no queue pair")?;
        // The TCP and UDP checksums by the device where it has them; smoltcp's own where
        // tenge would only compute them in software in its place.
        let device_csum = offloads && port.offloads().tx_tcp_csum == tenge::OffloadSupport::Device;
        // smoltcp's segments of a flow merged into TSO packets where the device cuts them.
        let coalesce = device_csum && port.offloads().tx_tso == tenge::OffloadSupport::Device;
        let mut dev = SmolDevice::new(pair, rx_ring as usize)
            .with_tx_checksum_offload(device_csum)
            .with_tx_coalescing(coalesce)
            .with_rx_checksum_verdicts(offloads);
        let irq = dev.rx_queue().has_interrupt();
        println!(
            "smoltcp on {pci}: TX checksums by {}, TX segments {}, idle sleep {}",
            if device_csum { "the device" } else { "smoltcp" },
            if coalesce {
                "coalesced into TSO packets"
            } else {
                "sent as built"
            },
            if irq {
                "on the RX interrupt"
            } else {
                "1 ms at a time (no interrupt)"
            }
        );
        let tx_checksums = if device_csum { "device" } else { "smoltcp" };
        let start = Instant::now();
        let mut iface = Interface::new(
            Config::new(HardwareAddress::Ethernet(EthernetAddress(mac))),
            &mut dev,
            smol_now(start),
        );
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(ip.0), ip.1));
        });
        if let Some(gw) = gateway {
            iface
                .routes_mut()
                .add_default_ipv4_route(gw)
                .map_err(|e| format!("default route via {gw}: {e}"))?;
        }
        Ok(Stack {
            port,
            dev,
            iface,
            sockets: SocketSet::new(Vec::new()),
            tx_checksums,
            start,
            idle: 0,
            idle_polls,
            dropped: 0,
        })
    }

    /// smoltcp's clock.
    pub fn now(&self) -> smoltcp::time::Instant {
        smol_now(self.start)
    }

    /// Time since the stack opened.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// One round: the interface polled, what it queued sent (one doorbell). `busy`: the
    /// caller moved data since the last round. Sleeps until smoltcp's next timer (at most
    /// 1 ms) once nothing has moved for `idle_polls` rounds and no frame waits.
    pub fn poll(&mut self, busy: bool) {
        let now = self.now();
        let changed = self.iface.poll(now, &mut self.dev, &mut self.sockets);
        let sent = self.dev.flush();
        // Frames dropped before smoltcp arrived all the same: a queue under a flood is not
        // idle, and sleeping then would let the ring fill and the device drop what comes
        // next, the wanted frames with the junk.
        let dropped = self.dev.rx_queue().ingress_stats().dropped + self.dev.stats().rx_app_dropped;
        let arrived = dropped != self.dropped;
        self.dropped = dropped;
        if busy || sent > 0 || arrived || changed == PollResult::SocketStateChanged {
            self.idle = 0;
            return;
        }
        self.idle = self.idle.saturating_add(1);
        if self.idle <= self.idle_polls || self.dev.rx_pending() {
            return;
        }
        self.idle = 0;
        // Until smoltcp's next timer; with no timer, until a frame (or a second passes).
        let timer = self
            .iface
            .poll_delay(now, &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()));
        if self.dev.rx_queue().arm_interrupt() {
            // A frame that arrived before the arming: take it instead of sleeping.
            let before = self.dev.stats().rx_frames;
            self.iface
                .poll(self.now(), &mut self.dev, &mut self.sockets);
            let got = self.dev.stats().rx_frames != before;
            if self.dev.flush() > 0 || got || self.dev.rx_pending() {
                self.dev.rx_queue().disarm_interrupt();
                return;
            }
            let wait = timer.unwrap_or(Duration::from_secs(1));
            if !self.dev.rx_queue().wait_interrupt(wait) {
                self.dev.rx_queue().disarm_interrupt();
            }
        } else {
            std::thread::sleep(timer.unwrap_or(Duration::MAX).min(Duration::from_millis(1)));
        }
    }

    /// The adapter's and the queues' counters and who computed the TX checksums, for a
    /// summary line.
    pub fn counters(&mut self) -> String {
        let st = self.dev.stats();
        let rx = self.dev.rx_queue().stats();
        let tx = self.dev.tx_queue().stats();
        format!(
            "tx_csum={} rx_frames={} rx_sw_verified={} tx_frames={} tx_tso_packets={} tx_tso_segments={} tx_no_buffer={} rx_bad_checksum={} rx_app_dropped={} rx_no_buf={} tx_ring_full={} rx_notifies={} tx_notifies={}",
            self.tx_checksums,
            st.rx_frames,
            st.rx_sw_verified,
            st.tx_frames,
            st.tx_tso_packets,
            st.tx_tso_segments,
            st.tx_no_buffer,
            st.rx_bad_checksum,
            st.rx_app_dropped,
            rx.no_buf,
            tx.ring_full,
            self.dev.rx_queue().notifies(),
            self.dev.tx_queue().notifies(),
        )
    }

    /// Runs the loop: [`Stack::poll`], then `step` (whether it moved data, whether to
    /// go on, and the application's running byte count), and every `interval` (zero:
    /// never) a live line `[  1.0s] <live(stack, Mbit/s, bytes)>`, the rate of that byte
    /// count since the last line. Returns when `step` says done.
    pub fn run(
        &mut self,
        interval: Duration,
        mut step: impl FnMut(&mut Stack) -> Result<Step, Box<dyn std::error::Error>>,
        mut live: impl FnMut(&mut Stack, f64, u64) -> String,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (mut last, mut last_bytes) = (Duration::ZERO, 0u64);
        let mut moved = false;
        loop {
            self.poll(moved);
            let s = step(self)?;
            moved = s.moved;
            let t = self.elapsed();
            if !interval.is_zero() && t - last >= interval {
                let mbps = s.bytes.saturating_sub(last_bytes) as f64 * 8.0
                    / (t - last).as_secs_f64()
                    / 1e6;
                let line = live(self, mbps, s.bytes);
                println!("[{:6.1}s] {line}", t.as_secs_f64());
                (last, last_bytes) = (t, s.bytes);
            }
            if s.done {
                return Ok(());
            }
        }
    }
}

/// What one step of [`Stack::run`]'s loop did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Step {
    /// Data moved (the loop does not count the round as idle).
    pub moved: bool,
    /// The application is done: the loop returns.
    pub done: bool,
    /// The application's byte count so far (the live lines give its rate).
    pub bytes: u64,
}

/// Whether `f` is junk a TCP server may drop before its stack sees it: UDP (with
/// `drop_udp`), or IPv4 from outside `only_from` (address, prefix length), if given.
/// Ethernet II without a VLAN tag; anything else (ARP, IPv6) is not junk.
pub fn is_junk(f: &[u8], drop_udp: bool, only_from: Option<(Ipv4Addr, u8)>) -> bool {
    const UDP: u8 = 17;
    match f.get(12..14) {
        Some([0x08, 0x00]) => {
            if drop_udp && f.get(23) == Some(&UDP) {
                return true;
            }
            let (Some((net, prefix)), Some(src)) = (only_from, f.get(26..30)) else {
                return false;
            };
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            let src = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
            src & mask != u32::from(net) & mask
        }
        Some([0x86, 0xdd]) => drop_udp && f.get(20) == Some(&UDP),
        _ => false,
    }
}

fn smol_now(start: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(start.elapsed().as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4(src: [u8; 4], proto: u8) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[23] = proto;
        f[26..30].copy_from_slice(&src);
        f
    }

    #[test]
    fn junk_is_udp_or_from_outside_the_allowed_network() {
        let only = Some((Ipv4Addr::new(10, 99, 0, 1), 32));
        assert!(is_junk(&ipv4([10, 99, 0, 1], 17), true, None));
        assert!(!is_junk(&ipv4([10, 99, 0, 1], 17), false, None));
        assert!(!is_junk(&ipv4([10, 99, 0, 1], 6), true, only));
        assert!(is_junk(&ipv4([10, 99, 1, 7], 6), false, only));
        let net = Some((Ipv4Addr::new(10, 99, 0, 0), 24));
        assert!(!is_junk(&ipv4([10, 99, 0, 200], 6), false, net));
        assert!(!is_junk(
            &ipv4([1, 2, 3, 4], 6),
            false,
            Some((Ipv4Addr::UNSPECIFIED, 0))
        ));
        // ARP and short frames are never junk.
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!is_junk(&arp, true, only));
        assert!(!is_junk(&[0u8; 10], true, only));
    }
}
