//! A port: one NIC opened through VFIO with one RX and one TX queue, its mempool, and the
//! application-facing burst API. The device type is found from the PCI IDs, so an
//! application changes NIC by changing the address.

use std::sync::Arc;
use std::time::Duration;

use tenge_descriptors::e1000e::{LegacyTxDesc, RxDescExtRead};
use tenge_firmware_iface::e1000e::{self as fw, HwStats, LinkStatus, RxRingConfig, TxRingConfig};
use tenge_firmware_iface::{Mmio, StdDelay};

use crate::e1000e::{E1000eRx, E1000eTx, DEVICE_82574L, MAX_FRAME, VENDOR_INTEL};
use crate::error::Error;
use crate::packet::mempool::{Mempool, MempoolCache, MempoolConfig, PacketBuf};
use crate::platform::dma::{DescRing, DmaMapper, DmaRegion, HugepagePolicy};
use crate::platform::mmio::Bar;
use crate::platform::pci::PciAddress;
use crate::ring::{PacketBatch, RxQueue, RxStats, TxQueue, TxStats};
pub mod soft_filter;

use crate::platform::vfio::VfioDevice;
use crate::virtio::ctrl::{RxFilter, UNICAST_FILTER_MAX};
use crate::virtio::{
    self, OpenedVirtio, VirtioNet, VirtioNetPacked, VirtioQueueConfig, DEVICE_VIRTIO_NET,
    VENDOR_VIRTIO,
};
use soft_filter::SoftRxFilter;
use tenge_firmware_iface::virtio::VIRTIO_NET_F_CTRL_RX;

/// How to set a port up. The defaults fit one queue pair in 8 MiB of DMA memory.
#[derive(Clone, Debug)]
pub struct PortConfig {
    /// RX descriptors (a power of two, 8..=4096).
    pub rx_ring: u32,
    /// TX descriptors (a power of two, 8..=4096).
    pub tx_ring: u32,
    /// Buffers in the port's mempool.
    pub mempool_buffers: u32,
    /// Buffers a queue keeps in its private cache.
    pub cache_size: usize,
    /// Ask for a TX completion every this many descriptors.
    pub tx_rs_interval: u32,
    /// Refill RX (one tail write) once this many descriptors are free.
    pub rx_free_thresh: u32,
    /// Receive every frame, whatever its destination MAC (on by default). Off, a port
    /// receives frames to its own MAC, to the addresses of [`Port::set_unicast_filter`]
    /// and broadcasts; applied at open as [`Port::set_promiscuous`] applies it, so off needs
    /// a device that can filter (virtio-net: `VIRTIO_NET_F_CTRL_RX`).
    pub promisc: bool,
    /// RX checksum offload: the device checks IPv4/TCP/UDP checksums and each received
    /// packet's `meta().flags` says good or bad. Off by default, as in DPDK: offloads are
    /// what the application asks for (QEMU checks every frame in software when it is on).
    pub rx_checksum: bool,
    /// LRO: the device may hand over several TCP segments of one flow coalesced into one
    /// frame (a chain; `meta().flags` has `RX_LRO`, `meta().mss` the segment size). On
    /// virtio-net, GUEST_TSO4/6 (with GUEST_CSUM). Off by default: like every offload,
    /// what the application asks for.
    pub lro: bool,
    /// TX checksum offload accepted from the device (virtio-net: CSUM).
    pub tx_checksum: bool,
    /// TCP segmentation offload accepted from the device (virtio-net: HOST_TSO4/6, with
    /// CSUM).
    pub tso: bool,
    /// Bytes of packet data in each buffer: a frame received into smaller buffers arrives
    /// as a chain of them (virtio-net's mergeable buffers).
    pub buf_size: u32,
    /// Hugepage use for rings and buffers.
    pub hugepages: HugepagePolicy,
    /// How long to wait for link up before giving up (the port still opens, link down).
    pub link_timeout: Duration,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            rx_ring: 256,
            tx_ring: 512,
            mempool_buffers: 2048,
            cache_size: 256,
            tx_rs_interval: 32,
            rx_free_thresh: 32,
            promisc: true,
            rx_checksum: false,
            lro: false,
            tx_checksum: false,
            tso: false,
            buf_size: 2048,
            hugepages: HugepagePolicy::Prefer,
            link_timeout: Duration::from_secs(3),
        }
    }
}

impl PortConfig {
    fn validate(&self) -> Result<(), Error> {
        for (name, n) in [("rx_ring", self.rx_ring), ("tx_ring", self.tx_ring)] {
            // 82574 §10.2.2.7: ring length is a multiple of 128 bytes (8 descriptors); the
            // engine needs a power of two.
            if !n.is_power_of_two() || !(8..=4096).contains(&n) {
                return Err(Error::Config(format!(
                    "{name} = {n}: use a power of two from 8 to 4096"
                )));
            }
        }
        if !(256..=u16::MAX as u32).contains(&self.buf_size) {
            return Err(Error::Config(format!(
                "buf_size = {}: use 256 to 65535 bytes",
                self.buf_size
            )));
        }
        if self.mempool_buffers < 2 {
            return Err(Error::Config("mempool_buffers must be at least 2".into()));
        }
        Ok(())
    }
}

/// Counters of a port: the engine's per-queue software counters and the device's own.
#[derive(Clone, Debug, Default)]
pub struct PortStats {
    /// Receive queue counters.
    pub rx: RxStats,
    /// Transmit queue counters.
    pub tx: TxStats,
    /// Hardware statistics registers, accumulated since the port opened.
    pub hw: HwStats,
}

/// An open NIC.
pub struct Port {
    nic: Nic,
    cache: MempoolCache,
    /// A separate TX buffer cache when the application set its own TX pool.
    tx_cache: Option<MempoolCache>,
    pool: Mempool,
    mapper: Arc<dyn DmaMapper>,
    mac: [u8; 6],
    /// The receive filter in software (virtio-net with promiscuous mode off): see
    /// [`crate::port::soft_filter`].
    soft_filter: Option<SoftRxFilter>,
    /// The unicast filter last set, which the software filter takes too.
    unicast: Vec<[u8; 6]>,
    /// Frames the software filter dropped.
    filtered: u64,
    dev: VfioDevice,
}

/// The device behind a port: its queues on the one ring engine, and what its control path
/// needs. Matched once per burst, never per packet. Not boxed: a port is one allocation
/// the data path reaches without another pointer hop.
#[allow(clippy::large_enum_variant)]
enum Nic {
    E1000e(E1000ePort),
    Virtio(VirtioNet),
    VirtioPacked(VirtioNetPacked),
}

struct E1000ePort {
    rxq: RxQueue<E1000eRx<Bar>>,
    txq: TxQueue<E1000eTx<Bar>>,
    hw: HwStats,
    regs: Arc<Bar>,
    _rings: Arc<DmaRegion>,
}

/// The virtio-net offload features `cfg` asks for.
fn virtio_offloads(cfg: &PortConfig) -> u64 {
    use tenge_firmware_iface::virtio as vf;
    let mut f = 0;
    if cfg.rx_checksum || cfg.lro {
        f |= vf::VIRTIO_NET_F_GUEST_CSUM;
    }
    if cfg.lro {
        f |= vf::VIRTIO_NET_F_GUEST_TSO4 | vf::VIRTIO_NET_F_GUEST_TSO6;
    }
    if cfg.tx_checksum || cfg.tso {
        f |= vf::VIRTIO_NET_F_CSUM;
    }
    if cfg.tso {
        f |= vf::VIRTIO_NET_F_HOST_TSO4 | vf::VIRTIO_NET_F_HOST_TSO6;
    }
    f
}

/// A virtio port's counters: the engine's, less the 12-byte header it counted in each
/// frame sent; virtio-net has no statistics registers.
fn virtio_stats(rx: RxStats, mut tx: TxStats) -> PortStats {
    tx.bytes -= tx.packets * virtio::HDR_LEN as u64;
    PortStats {
        rx,
        tx,
        hw: HwStats::default(),
    }
}

fn e1000e_err(addr: PciAddress) -> impl Fn(fw::E1000eError) -> Error {
    move |source| Error::E1000e { addr, source }
}

impl Port {
    /// Opens the NIC at `addr` (e.g. "0000:00:03.0"), resets it, sets up one RX and one TX
    /// ring and waits for link.
    pub fn open(addr: &str, cfg: &PortConfig) -> Result<Port, Error> {
        cfg.validate()?;
        let addr: PciAddress = addr.parse()?;
        let dev = VfioDevice::open(addr)?;
        match dev.ids() {
            (VENDOR_INTEL, DEVICE_82574L) => Self::open_e1000e(dev, cfg),
            (VENDOR_VIRTIO, DEVICE_VIRTIO_NET) => Self::open_virtio(dev, cfg),
            (vendor, device) => Err(Error::Unsupported {
                addr,
                vendor,
                device,
            }),
        }
    }

    fn open_virtio(dev: VfioDevice, cfg: &PortConfig) -> Result<Port, Error> {
        let mapper: Arc<dyn DmaMapper> = dev.container().clone();
        let net = VirtioNet::open(
            &dev,
            mapper.clone(),
            &VirtioQueueConfig {
                rx_ring: cfg.rx_ring,
                tx_ring: cfg.tx_ring,
                rx_free_thresh: cfg.rx_free_thresh,
                tx_rs_interval: cfg.tx_rs_interval,
                hugepages: cfg.hugepages,
                offloads: virtio_offloads(cfg),
            },
        )?;
        let pool_cfg = MempoolConfig {
            buffers: cfg.mempool_buffers,
            data_room: cfg.buf_size,
            hugepages: cfg.hugepages,
            ..MempoolConfig::default()
        };
        // RX buffers are posted 12 bytes before the data start (the header goes there).
        assert!(pool_cfg.headroom as usize >= virtio::HDR_LEN);
        let pool = Mempool::new(mapper.clone(), &pool_cfg)?;
        let mut cache = pool.cache(cfg.cache_size);
        // The receive filter before any buffer is posted, through the same command as
        // Port::set_promiscuous (sent even to turn it on: the spec leaves a reset device's
        // filter to the device; QEMU's starts promiscuous). The MAC table is empty after a
        // reset (virtio 1.2 §5.1.6.5.2).
        let promisc = RxFilter::Promisc(cfg.promisc);
        let (nic, mac) = match net {
            OpenedVirtio::Split(mut n) => {
                if let Err(e) = n.set_rx_filter(promisc) {
                    n.stop(); // before its rings go
                    return Err(e);
                }
                n.rxq.fill(&mut cache);
                let mac = n.mac();
                (Nic::Virtio(n), mac)
            }
            OpenedVirtio::Packed(mut n) => {
                if let Err(e) = n.set_rx_filter(promisc) {
                    n.stop(); // before its rings go
                    return Err(e);
                }
                n.rxq.fill(&mut cache);
                let mac = n.mac();
                (Nic::VirtioPacked(n), mac)
            }
        };
        let soft_filter = (!cfg.promisc).then(|| SoftRxFilter::new(mac, &[]));
        Ok(Port {
            nic,
            cache,
            tx_cache: None,
            pool,
            mapper,
            mac,
            soft_filter,
            unicast: Vec::new(),
            filtered: 0,
            dev,
        })
    }

    fn open_e1000e(dev: VfioDevice, cfg: &PortConfig) -> Result<Port, Error> {
        let addr = dev.addr();
        let regs = Arc::new(dev.map_bar(0)?);
        dev.enable_bus_master()?;
        let mut delay = StdDelay;
        fw::reset(&*regs, &mut delay).map_err(e1000e_err(addr))?;
        let mac = fw::read_mac(&*regs, &mut delay).map_err(e1000e_err(addr))?;

        let mapper: Arc<dyn DmaMapper> = dev.container().clone();
        // Both rings in one region; each ring 128-byte aligned (82574 §10.2.2.7 needs 16).
        let rx_bytes = cfg.rx_ring as usize * size_of::<RxDescExtRead>();
        let tx_off = rx_bytes.div_ceil(128) * 128;
        let tx_bytes = cfg.tx_ring as usize * size_of::<LegacyTxDesc>();
        let rings = Arc::new(DmaRegion::allocate(
            mapper.clone(),
            tx_off + tx_bytes,
            cfg.hugepages,
        )?);
        let rx_ring: DescRing<RxDescExtRead> = DescRing::new(rings.clone(), 0, cfg.rx_ring);
        let tx_ring: DescRing<LegacyTxDesc> = DescRing::new(rings.clone(), tx_off, cfg.tx_ring);

        let pool = Mempool::new(
            mapper.clone(),
            &MempoolConfig {
                buffers: cfg.mempool_buffers,
                data_room: cfg.buf_size,
                hugepages: cfg.hugepages,
                ..MempoolConfig::default()
            },
        )?;
        let mut cache = pool.cache(cfg.cache_size);
        for (asked, what) in [
            (cfg.lro, "LRO"),
            (cfg.tx_checksum, "TX checksum offload"),
            (cfg.tso, "TSO"),
        ] {
            if asked {
                log::warn!("{addr}: {what} is not implemented on e1000e yet; it stays off");
            }
        }

        fw::configure_tx(
            &*regs,
            &TxRingConfig {
                ring_iova: tx_ring.iova(),
                ring_descs: cfg.tx_ring,
            },
        )
        .map_err(e1000e_err(addr))?;
        fw::configure_rx(
            &*regs,
            &RxRingConfig {
                ring_iova: rx_ring.iova(),
                ring_descs: cfg.rx_ring,
                buf_size: pool.data_room(),
                // Applied just below, as Port::set_promiscuous does, before any buffer is
                // posted.
                promisc: false,
                checksum: cfg.rx_checksum,
            },
        )
        .map_err(e1000e_err(addr))?;
        // No extra unicast addresses: entries 1-15 of the receive address table cleared
        // (their content after a reset is the device's; QEMU zeroes them).
        fw::set_unicast_filter(&*regs, &[]).map_err(e1000e_err(addr))?;
        fw::set_promisc(&*regs, cfg.promisc);
        let txq = TxQueue::new(
            E1000eTx::new(tx_ring, regs.clone()),
            cfg.tx_rs_interval,
            MAX_FRAME,
        );
        let mut rxq = RxQueue::new(E1000eRx::new(rx_ring, regs.clone()), cfg.rx_free_thresh);
        rxq.fill(&mut cache);

        let timeout_us = cfg.link_timeout.as_micros().min(u32::MAX as u128) as u32;
        let link = fw::setup_link(&*regs, &mut delay, timeout_us);
        if link.up {
            log::info!(
                "{addr}: e1000e {} link up {} Mb/s {}",
                fmt_mac(&mac),
                link.speed_mbps,
                if link.full_duplex {
                    "full duplex"
                } else {
                    "half duplex"
                }
            );
        } else {
            log::warn!("{addr}: link still down after {:?}", cfg.link_timeout);
        }
        Ok(Port {
            nic: Nic::E1000e(E1000ePort {
                rxq,
                txq,
                hw: HwStats::default(),
                regs,
                _rings: rings,
            }),
            cache,
            tx_cache: None,
            pool,
            mapper,
            mac,
            soft_filter: None,
            unicast: Vec::new(),
            filtered: 0,
            dev,
        })
    }

    /// Receives up to `out.room()` frames into `out`; returns how many.
    #[inline]
    pub fn rx_burst(&mut self, out: &mut PacketBatch) -> usize {
        let before = out.len();
        let got = match &mut self.nic {
            Nic::E1000e(n) => n.rxq.rx_burst(&mut self.cache, out),
            Nic::Virtio(n) => n.rxq.rx_burst(&mut self.cache, out),
            Nic::VirtioPacked(n) => n.rxq.rx_burst(&mut self.cache, out),
        };
        match &self.soft_filter {
            Some(f) if got > 0 => {
                let gone = out.retain_from(before, |p| f.accepts_packet(p), &mut self.cache);
                self.filtered += gone as u64;
                got - gone
            }
            _ => got,
        }
    }

    /// Sends frames from the front of `pkts`; returns how many left the batch.
    #[inline]
    pub fn tx_burst(&mut self, pkts: &mut PacketBatch) -> usize {
        let cache = self.tx_cache.as_mut().unwrap_or(&mut self.cache);
        match &mut self.nic {
            Nic::E1000e(n) => n.txq.tx_burst(cache, pkts),
            Nic::Virtio(n) => virtio::tx_burst(&mut n.txq, cache, pkts),
            Nic::VirtioPacked(n) => virtio::tx_burst(&mut n.txq, cache, pkts),
        }
    }

    /// Recycles buffers of completed transmissions now (tx_burst does it when needed).
    pub fn tx_reclaim(&mut self) -> u32 {
        let cache = self.tx_cache.as_mut().unwrap_or(&mut self.cache);
        match &mut self.nic {
            Nic::E1000e(n) => n.txq.reclaim(cache),
            Nic::Virtio(n) => n.txq.reclaim(cache),
            Nic::VirtioPacked(n) => n.txq.reclaim(cache),
        }
    }

    /// A new mempool in DMA memory this port (and every port of this process) can reach.
    pub fn create_mempool(&self, cfg: &MempoolConfig) -> Result<Mempool, Error> {
        Mempool::new(self.mapper.clone(), cfg)
    }

    /// Transmits from `pool` from now on: completed TX buffers return to a cache of it, and
    /// [`Port::alloc_tx`] takes from it. A generator uses this to keep a pool of
    /// pre-built frames that receive never writes into.
    pub fn set_tx_mempool(&mut self, pool: &Mempool, cache_size: usize) {
        self.tx_cache = Some(pool.cache(cache_size));
    }

    /// A fresh buffer for transmission: from the TX pool if one was set, else the port's.
    #[inline]
    pub fn alloc_tx(&mut self) -> Option<PacketBuf> {
        self.tx_cache.as_mut().unwrap_or(&mut self.cache).alloc()
    }

    /// A fresh buffer from the port's pool, through the queue cache.
    #[inline]
    pub fn alloc(&mut self) -> Option<PacketBuf> {
        self.cache.alloc()
    }

    /// Returns a buffer through the queue cache.
    #[inline]
    pub fn free(&mut self, buf: PacketBuf) {
        self.cache.free(buf)
    }

    /// Returns a whole batch through the queue cache.
    pub fn free_batch(&mut self, batch: &mut PacketBatch) {
        batch.free_into(&mut self.cache)
    }

    /// The port's packet buffer pool.
    pub fn mempool(&self) -> &Mempool {
        &self.pool
    }

    /// The port's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The PCI address.
    pub fn addr(&self) -> PciAddress {
        self.dev.addr()
    }

    /// Link state now.
    pub fn link(&self) -> LinkStatus {
        match &self.nic {
            Nic::E1000e(n) => fw::link_status(&*n.regs),
            // virtio-net reports no speed without VIRTIO_NET_F_SPEED_DUPLEX.
            Nic::Virtio(n) => LinkStatus {
                up: n.link_up(),
                speed_mbps: 0,
                full_duplex: n.link_up(),
            },
            Nic::VirtioPacked(n) => LinkStatus {
                up: n.link_up(),
                speed_mbps: 0,
                full_duplex: n.link_up(),
            },
        }
    }

    /// Which device family drives the port: "e1000e" or "virtio-net".
    pub fn driver_name(&self) -> &'static str {
        match &self.nic {
            Nic::E1000e(_) => "e1000e",
            Nic::Virtio(_) | Nic::VirtioPacked(_) => "virtio-net",
        }
    }

    /// Doorbell writes the device actually received, (RX, TX): with virtio's notification
    /// suppression fewer than the engine's `doorbells` (publishes); e1000e writes every one.
    pub fn notifies(&self) -> (u64, u64) {
        match &self.nic {
            Nic::E1000e(n) => (n.rxq.stats().doorbells, n.txq.stats().doorbells),
            Nic::Virtio(n) => (n.rxq.ops().bell().notifies(), n.txq.ops().bell().notifies()),
            Nic::VirtioPacked(n) => (n.rxq.ops().bell().notifies(), n.txq.ops().bell().notifies()),
        }
    }

    /// Counters. Reads (and so clears) the device's statistics registers, folding them
    /// into the port's running totals: call it from the control path, not per burst.
    pub fn stats(&mut self) -> PortStats {
        let mut s = match &mut self.nic {
            Nic::E1000e(n) => {
                n.hw.accumulate(&*n.regs);
                PortStats {
                    rx: *n.rxq.stats(),
                    tx: *n.txq.stats(),
                    hw: n.hw.clone(),
                }
            }
            Nic::Virtio(n) => virtio_stats(*n.rxq.stats(), *n.txq.stats()),
            Nic::VirtioPacked(n) => virtio_stats(*n.rxq.stats(), *n.txq.stats()),
        };
        s.rx.filtered = self.filtered;
        s
    }

    /// Waits until the device is done with every queued TX descriptor (e1000e: head caught
    /// up with tail; virtio: every descriptor used), then recycles every TX buffer, whether
    /// or not a completion was asked for on it. Returns false on timeout (nothing recycled
    /// beyond what completed).
    pub fn tx_drain(&mut self, timeout: Duration) -> bool {
        let start = std::time::Instant::now();
        loop {
            let idle = match &self.nic {
                Nic::E1000e(n) => n.regs.read32(fw::regs::TDH) == n.regs.read32(fw::regs::TDT),
                Nic::Virtio(n) => n.txq.ops().pending() == 0,
                Nic::VirtioPacked(n) => n.txq.ops().pending() == 0,
            };
            let cache = self.tx_cache.as_mut().unwrap_or(&mut self.cache);
            if idle {
                match &mut self.nic {
                    Nic::E1000e(n) => n.txq.reclaim_all(cache),
                    Nic::Virtio(n) => n.txq.reclaim_all(cache),
                    Nic::VirtioPacked(n) => n.txq.reclaim_all(cache),
                };
                return true;
            }
            if start.elapsed() >= timeout {
                self.tx_reclaim();
                return false;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Turns promiscuous mode on (every frame is received, whatever its destination) or
    /// off (only frames to the port's MAC, to an address of [`Port::set_unicast_filter`],
    /// and broadcasts; multicast frames are dropped, as no multicast filter is programmed).
    ///
    /// e1000e: RCTL.UPE and RCTL.MPE (82574 §10.2.5). virtio-net: the control queue's
    /// `VIRTIO_NET_CTRL_RX_PROMISC` (virtio 1.2 §5.1.6.5.1), which needs
    /// `VIRTIO_NET_F_CTRL_RX`; without it promiscuous mode is all the device does, so
    /// turning it on succeeds and turning it off fails.
    ///
    /// # Errors
    /// [`Error::RxFilterUnsupported`] (virtio-net without `VIRTIO_NET_F_CTRL_RX`, `on`
    /// false); [`Error::VirtioCtrl`] if the device refused the command or did not answer.
    pub fn set_promiscuous(&mut self, on: bool) -> Result<(), Error> {
        match &mut self.nic {
            Nic::E1000e(n) => {
                fw::set_promisc(&*n.regs, on);
                log::debug!(
                    "{}: promiscuous mode {} (RCTL.UPE|MPE)",
                    self.dev.addr(),
                    if on { "on" } else { "off" }
                );
                Ok(())
            }
            Nic::Virtio(n) => {
                n.set_rx_filter(RxFilter::Promisc(on))?;
                self.soft_filter = (!on).then(|| SoftRxFilter::new(self.mac, &self.unicast));
                Ok(())
            }
            Nic::VirtioPacked(n) => {
                n.set_rx_filter(RxFilter::Promisc(on))?;
                self.soft_filter = (!on).then(|| SoftRxFilter::new(self.mac, &self.unicast));
                Ok(())
            }
        }
    }

    /// Accepts unicast frames to `macs` too, besides the port's own MAC (what matters with
    /// promiscuous mode off); replaces the previous list, and an empty one clears it. At
    /// most [`Port::unicast_filter_capacity`] addresses, each an individual (unicast,
    /// nonzero) address.
    ///
    /// e1000e: receive address entries 1 to 15 (RAL/RAH with AV; entry 0 holds the port's
    /// MAC). virtio-net: `VIRTIO_NET_CTRL_MAC_TABLE_SET` with these as the unicast table and
    /// an empty multicast table (virtio 1.2 §5.1.6.5.2), which needs
    /// `VIRTIO_NET_F_CTRL_RX`; clearing on a device without it succeeds (it has no table).
    ///
    /// # Errors
    /// [`Error::UnicastFilter`] for a multicast, broadcast or zero address or more than
    /// the capacity (nothing changes); [`Error::RxFilterUnsupported`] for a non-empty list
    /// on virtio-net without `VIRTIO_NET_F_CTRL_RX`; [`Error::VirtioCtrl`] if the device
    /// refused the command or did not answer.
    pub fn set_unicast_filter(&mut self, macs: &[[u8; 6]]) -> Result<(), Error> {
        let addr = self.dev.addr();
        let (max, why) = match &self.nic {
            Nic::E1000e(_) => (
                self.unicast_filter_capacity(),
                "the 82574 has 16 receive address entries and the first holds the port's MAC",
            ),
            // Without CTRL_RX the capacity is 0, but clearing succeeds and anything else is
            // the RxFilterUnsupported error set_rx_filter gives.
            Nic::Virtio(_) | Nic::VirtioPacked(_) => (
                match self.unicast_filter_capacity() {
                    0 => usize::MAX,
                    n => n,
                },
                "above 64 entries QEMU's virtio-net silently receives every unicast frame",
            ),
        };
        if let Some(reason) = unicast_filter_problem(macs, max, why) {
            return Err(Error::UnicastFilter { addr, reason });
        }
        match &mut self.nic {
            Nic::E1000e(n) => {
                fw::set_unicast_filter(&*n.regs, macs).map_err(e1000e_err(addr))?;
                log::debug!(
                    "{addr}: unicast filter of {} addresses in RAL/RAH 1-{}",
                    macs.len(),
                    macs.len()
                );
            }
            Nic::Virtio(n) => n.set_rx_filter(RxFilter::Unicast(macs))?,
            Nic::VirtioPacked(n) => n.set_rx_filter(RxFilter::Unicast(macs))?,
        }
        self.unicast = macs.to_vec();
        if self.soft_filter.is_some() {
            self.soft_filter = Some(SoftRxFilter::new(self.mac, macs));
        }
        Ok(())
    }

    /// How many addresses [`Port::set_unicast_filter`] takes: 15 on e1000e, 64 on
    /// virtio-net with `VIRTIO_NET_F_CTRL_RX`, 0 on virtio-net without it.
    pub fn unicast_filter_capacity(&self) -> usize {
        let virtio = |features: u64| {
            if features & VIRTIO_NET_F_CTRL_RX != 0 {
                UNICAST_FILTER_MAX
            } else {
                0
            }
        };
        match &self.nic {
            Nic::E1000e(_) => fw::UNICAST_FILTER_ENTRIES,
            Nic::Virtio(n) => virtio(n.features()),
            Nic::VirtioPacked(n) => virtio(n.features()),
        }
    }

    /// Buffers posted to the RX ring.
    pub fn rx_posted(&self) -> u32 {
        match &self.nic {
            Nic::E1000e(n) => n.rxq.posted(),
            Nic::Virtio(n) => n.rxq.posted(),
            Nic::VirtioPacked(n) => n.rxq.posted(),
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // Stop the device before its buffers go back to the pool.
        match &self.nic {
            Nic::E1000e(n) => fw::disable(&*n.regs),
            Nic::Virtio(n) => n.stop(),
            Nic::VirtioPacked(n) => n.stop(),
        }
        let _ = self.dev.disable_bus_master();
        match &mut self.nic {
            Nic::E1000e(n) => n.rxq.release(&mut self.cache),
            Nic::Virtio(n) => n.rxq.release(&mut self.cache),
            Nic::VirtioPacked(n) => n.rxq.release(&mut self.cache),
        }
        let cache = self.tx_cache.as_mut().unwrap_or(&mut self.cache);
        match &mut self.nic {
            Nic::E1000e(n) => n.txq.release(cache),
            Nic::Virtio(n) => n.txq.release(cache),
            Nic::VirtioPacked(n) => n.txq.release(cache),
        }
    }
}

/// What is wrong with `macs` as a unicast filter of at most `max` addresses (`why` says
/// where the limit comes from), if anything.
fn unicast_filter_problem(macs: &[[u8; 6]], max: usize, why: &str) -> Option<String> {
    if let Some(bad) = macs.iter().find(|m| m[0] & 1 != 0 || **m == [0; 6]) {
        return Some(format!(
            "{} is a group (multicast or broadcast) or all-zero address; the unicast filter \
             takes individual addresses only",
            fmt_mac(bad)
        ));
    }
    (macs.len() > max).then(|| {
        format!(
            "{} addresses, but the device takes at most {max} besides its own MAC ({why}); \
             turn promiscuous mode on and filter in software instead",
            macs.len()
        )
    })
}

/// Formats a MAC address as `52:54:00:12:34:56`.
pub fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicast_filters_take_individual_addresses_up_to_the_capacity() {
        let a = [0x02, 0, 0, 0, 0, 1];
        assert_eq!(unicast_filter_problem(&[], 0, "x"), None);
        assert_eq!(unicast_filter_problem(&[a; 15], 15, "x"), None);
        let e = unicast_filter_problem(&[a; 16], 15, "the table").unwrap();
        assert!(e.contains("16 addresses") && e.contains("at most 15") && e.contains("the table"));
        for bad in [
            [0xff; 6],
            [0x01, 0, 0x5e, 0, 0, 1],
            [0x33, 0x33, 0, 0, 0, 1],
            [0; 6],
        ] {
            let e = unicast_filter_problem(&[a, bad], 15, "x").unwrap();
            assert!(e.contains(&fmt_mac(&bad)), "{e}");
        }
    }
}
