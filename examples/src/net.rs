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

/// A port, smoltcp on its first queue pair, and the loop's clock.
pub struct Stack {
    /// The port (its control path; its first queue pair is the device's).
    pub port: Port,
    /// The smoltcp device.
    pub dev: SmolDevice,
    /// The smoltcp interface.
    pub iface: Interface,
    /// The sockets.
    pub sockets: SocketSet<'static>,
    start: Instant,
    idle: u32,
    idle_polls: u32,
}

impl Stack {
    /// Opens `pci` with `rx_ring` RX descriptors and sets the interface up with `ip` and,
    /// if given, a default route through `gateway`; after `idle_polls` polls that moved
    /// nothing, [`Stack::poll`] sleeps.
    pub fn open(
        pci: &str,
        ip: (Ipv4Addr, u8),
        gateway: Option<Ipv4Addr>,
        rx_ring: u32,
        idle_polls: u32,
    ) -> Result<Stack, Box<dyn std::error::Error>> {
        let cfg = PortConfig {
            rx_ring,
            // The RX ring, a TX ring in flight and the batches, with room to spare.
            mempool_buffers: (rx_ring * 2 + 2048).max(4096),
            // MSI-X for the idle sleep (the port logs a fallback to polling if the device
            // cannot give it).
            interrupts: true,
            // virtio-net's CSUM where offered (e1000e and igb checksum per packet anyway).
            tx_checksum: true,
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
        let device_csum = port.offloads().tx_tcp_csum == tenge::OffloadSupport::Device;
        let mut dev = SmolDevice::new(pair, rx_ring as usize).with_tx_checksum_offload(device_csum);
        let irq = dev.rx_queue().has_interrupt();
        println!(
            "smoltcp on {pci}: TX checksums by {}, idle sleep {}",
            if device_csum { "the device" } else { "smoltcp" },
            if irq {
                "on the RX interrupt"
            } else {
                "1 ms at a time (no interrupt)"
            }
        );
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
            start,
            idle: 0,
            idle_polls,
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
        if busy || sent > 0 || changed == PollResult::SocketStateChanged {
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

    /// The adapter's and the queues' counters, for a summary line.
    pub fn counters(&mut self) -> String {
        let st = self.dev.stats();
        let rx = self.dev.rx_queue().stats();
        let tx = self.dev.tx_queue().stats();
        format!(
            "rx_frames={} tx_frames={} tx_no_buffer={} rx_bad_checksum={} rx_no_buf={} tx_ring_full={}",
            st.rx_frames, st.tx_frames, st.tx_no_buffer, st.rx_bad_checksum, rx.no_buf, tx.ring_full
        )
    }
}

fn smol_now(start: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(start.elapsed().as_micros() as i64)
}
