//! A port: one NIC opened through VFIO, its mempool, its queues and the application-facing
//! API. The device type is found from the PCI IDs, so an application changes NIC by
//! changing the address.
//!
//! The port keeps the control path (link, receive filters, counters); its queues are
//! [`RxQueueHandle`]s and [`TxQueueHandle`]s ([`queue`]). A single-threaded application
//! bursts on the port itself (queue pair 0); one that puts queues on threads takes them with
//! [`Port::take_queues`]:
//!
//! ```no_run
//! use tenge::{PacketBatch, Port, PortConfig};
//! let mut port = Port::open("0000:00:03.0", &PortConfig::default())?;
//! let pair = port.take_queues().pop().expect("one queue pair");
//! let (mut rx, mut tx) = (pair.rx, pair.tx);
//! let (to_tx, from_rx) = std::sync::mpsc::sync_channel::<PacketBatch>(4);
//! let receiver = std::thread::spawn(move || {
//!     for _ in 0..1000 {
//!         let mut batch = PacketBatch::new(32);
//!         if rx.rx_burst(&mut batch) > 0 && to_tx.send(batch).is_err() {
//!             break;
//!         }
//!     }
//! });
//! let sender = std::thread::spawn(move || {
//!     for mut batch in from_rx {
//!         tx.tx_burst(&mut batch); // echo; what did not fit is dropped with the batch
//!     }
//! });
//! receiver.join().unwrap();
//! sender.join().unwrap();
//! println!("{:?}", port.stats().rx); // the control path meanwhile, from this thread
//! # Ok::<(), tenge::Error>(())
//! ```

use std::sync::Arc;
use std::time::Duration;

use tenge_descriptors::e1000e::{LegacyTxDesc, RxDescExtRead};
use tenge_firmware_iface::e1000e::{self as fw, HwStats, LinkStatus, RxRingConfig, TxRingConfig};
use tenge_firmware_iface::StdDelay;

use crate::e1000e::{E1000eRx, E1000eTx, DEVICE_82574L, MAX_FRAME, VENDOR_INTEL};
use crate::error::Error;
use crate::igb::DEVICE_82576;
use crate::packet::mempool::{Mempool, MempoolConfig, PacketBuf};
use crate::packet::rss::{RssConfig, RssHashTypes, DEFAULT_RSS_KEY};
use crate::platform::dma::{DmaMapper, HugepagePolicy};
use crate::platform::mmio::Bar;
use crate::platform::pci::PciAddress;
use crate::ring::{PacketBatch, RxQueue, RxStats, TxQueue, TxStats};
use tenge_firmware_iface::igb as ifw;

pub mod caps;
pub mod dim;
mod igb;
mod intel;
pub mod irq;
pub mod queue;
pub mod soft_filter;

use crate::platform::vfio::{IrqMode, VfioDevice};
use crate::virtio::ctrl::{RxFilter, RSS_TABLE_MAX, UNICAST_FILTER_MAX};
use crate::virtio::{
    self, OpenedVirtio, VirtioNet, VirtioNetPacked, VirtioQueueConfig, VirtioVectors,
    DEVICE_VIRTIO_NET, VENDOR_VIRTIO,
};
use irq::{IrqDevice, PortIrqs, QueueIrq};
pub use irq::{IrqStats, LinkEvent, Moderation};
pub use queue::{IngressFilter, IngressStats, IngressVerdict, RxQueueHandle, TxQueueHandle};
use queue::{PortShared, RxRing, TxRing};
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
    /// LRO: several TCP segments of one flow arrive coalesced into one frame (a chain;
    /// `meta().flags` has `RX_LRO`, `meta().mss` the segment size): tenge's software LRO on
    /// every queue ([`crate::offload::lro`], [`RxQueueHandle::set_lro`]), and on virtio-net
    /// also GUEST_TSO4/6 (with GUEST_CSUM) where the device offers it (what its backend
    /// coalesced arrives so; the software merges the rest). Off by default: like every
    /// offload, what the application asks for (and wrong for a forwarder).
    pub lro: bool,
    /// TX checksum offload accepted from the device (virtio-net: CSUM).
    pub tx_checksum: bool,
    /// TCP segmentation offload accepted from the device (virtio-net: HOST_TSO4/6, with
    /// CSUM).
    pub tso: bool,
    /// Completes a TCP or UDP checksum the sender left partial (virtio-net's `NEEDS_CSUM`,
    /// with GUEST_CSUM, so with `rx_checksum` or `lro`): on by default, so a frame a
    /// forwarder sends on is valid on any wire. Off, such a frame is flagged
    /// `RX_L4_CSUM_GOOD | RX_L4_CSUM_PARTIAL` as it is: one pass over its bytes fewer
    /// (a 64 KiB GUEST_TSO frame's), for an application that consumes what it receives
    /// (a TCP stack that trusts the verdict). e1000e and igb never see one.
    pub rx_fill_partial_checksums: bool,
    /// Bytes of packet data in each buffer: a frame received into smaller buffers arrives
    /// as a chain of them (virtio-net's mergeable buffers).
    pub buf_size: u32,
    /// Hugepage use for rings and buffers.
    pub hugepages: HugepagePolicy,
    /// How long to wait for link up before giving up (the port still opens, link down).
    pub link_timeout: Duration,
    /// Queue pairs (each an RX and a TX queue, see [`Port::take_queues`]): up to 2 on
    /// e1000e. With more than one, RSS spreads received frames over them ([`Self::rss`]).
    pub queues: u16,
    /// Receive-side scaling: `None` is RSS with [`RssConfig::new`] on a port of several
    /// queue pairs and no RSS on one; `Some` is this configuration (on one queue pair too,
    /// for the hash in each packet's metadata). RSS is on or off for the life of the port;
    /// [`Port::set_rss`] changes key, table and hash types.
    pub rss: Option<RssConfig>,
    /// VLAN stripping: the device removes a received frame's 802.1Q tag and puts it in
    /// `meta().vlan_tci` with `RX_VLAN_STRIPPED` (e1000e and igb: CTRL.VME). Off by
    /// default, so a forwarder passes tags on. TX tag insertion (`PacketMeta::TX_VLAN`)
    /// works either way: on igb by the device; on e1000e by the device only with this on
    /// (the 82574 inserts only with CTRL.VME), by tenge in software with it off. virtio-net
    /// strips nothing: on is refused there.
    pub vlan_strip: bool,
    /// Interrupts: MSI-X through VFIO, a vector per RX queue (virtio-net: per queue) and
    /// one for link changes (e1000e: the "other" causes; virtio-net: configuration
    /// changes), for [`RxQueueHandle::rx_burst_wait`], [`Port::wait_link`] and the
    /// eventfds behind them. Off by default: the port only polls, and waits end by
    /// timeout. A device without usable MSI-X falls back to that, logged.
    pub interrupts: bool,
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
            rx_fill_partial_checksums: true,
            buf_size: 2048,
            hugepages: HugepagePolicy::Prefer,
            link_timeout: Duration::from_secs(3),
            queues: 1,
            rss: None,
            vlan_strip: false,
            interrupts: false,
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
        if self.queues == 0 {
            return Err(Error::Config(
                "queues = 0: a port has at least one queue pair".into(),
            ));
        }
        if self.mempool_buffers < 2 {
            return Err(Error::Config("mempool_buffers must be at least 2".into()));
        }
        Ok(())
    }
}

/// Counters of a port: the totals over its queues, each queue's own, and the device's.
#[derive(Clone, Debug, Default)]
pub struct PortStats {
    /// Receive counters, summed over the queues.
    pub rx: RxStats,
    /// Transmit counters, summed over the queues.
    pub tx: TxStats,
    /// Each queue pair's counters, by index. Exact for queues the port holds; for queues
    /// taken with [`Port::take_queues`], as their handles last published them (every 32
    /// bursts, on [`RxQueueHandle::publish`] and when dropped).
    pub queues: Vec<(RxStats, TxStats)>,
    /// Hardware statistics registers, accumulated since the port opened.
    pub hw: HwStats,
    /// Each RX queue's sleeps and interrupts (hybrid mode), by index; published like
    /// [`PortStats::queues`].
    pub irq: Vec<IrqStats>,
}

/// One queue pair of a port: its receive and transmit queue, each `Send`, each with its
/// own mempool cache.
pub struct QueuePair {
    /// The receive queue.
    pub rx: RxQueueHandle,
    /// The transmit queue.
    pub tx: TxQueueHandle,
}

/// An open NIC.
pub struct Port {
    control: Control,
    /// The queue pairs the port still holds: all of them until [`Port::take_queues`].
    queues: Vec<QueuePair>,
    /// Queue pairs the port opened.
    queue_count: u16,
    shared: Arc<PortShared>,
    pool: Mempool,
    mapper: Arc<dyn DmaMapper>,
    mac: [u8; 6],
    /// Promiscuous mode as last set.
    promisc: bool,
    /// The unicast filter last set, which the software filter takes too.
    unicast: Vec<[u8; 6]>,
    /// The RSS configuration in force (`None`: RSS off).
    rss: Option<RssConfig>,
    /// RX checksum offload as opened.
    rx_checksum: bool,
    /// LRO asked for at open.
    lro: bool,
    /// VLAN stripping as opened.
    vlan_strip: bool,
    /// Link changes: the vector that reports them and what was last reported.
    link: irq::LinkWatch,
    /// VFIO's request interrupt: the kernel asks for the device back (hot-unplug).
    removal: Option<Arc<crate::platform::vfio::IrqFd>>,
    dev: VfioDevice,
}

/// What a port's control path needs of its device. Not on the data path.
enum Control {
    E1000e { regs: Arc<Bar>, hw: HwStats },
    Igb { regs: Arc<Bar>, hw: HwStats },
    Virtio(VirtioNet),
    VirtioPacked(VirtioNetPacked),
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
        f |= vf::VIRTIO_NET_F_HOST_TSO4 | vf::VIRTIO_NET_F_HOST_TSO6 | vf::VIRTIO_NET_F_HOST_ECN;
    }
    f
}

fn e1000e_err(addr: PciAddress) -> impl Fn(fw::E1000eError) -> Error {
    move |source| Error::E1000e { addr, source }
}

impl Port {
    /// Opens the NIC at `addr` (e.g. "0000:00:03.0"), resets it, sets up its queues and
    /// waits for link.
    pub fn open(addr: &str, cfg: &PortConfig) -> Result<Port, Error> {
        cfg.validate()?;
        let addr: PciAddress = addr.parse()?;
        // A pool smaller than every RX ring and queue cache leaves the later queues' rings
        // short (counted as `no_buf`): allowed (a test of exhaustion wants it), said once.
        let want = u64::from(cfg.queues) * (u64::from(cfg.rx_ring) + cfg.cache_size as u64);
        if u64::from(cfg.mempool_buffers) < want {
            log::warn!(
                "{addr}: mempool_buffers = {} is less than {} queue pair(s) x (rx_ring {} + \
                 cache_size {}) = {want}: RX rings will run short of buffers (rx no_buf)",
                cfg.mempool_buffers,
                cfg.queues,
                cfg.rx_ring,
                cfg.cache_size
            );
        }
        let dev = VfioDevice::open(addr)?;
        match dev.ids() {
            (VENDOR_INTEL, DEVICE_82574L) => Self::open_e1000e(dev, cfg),
            (VENDOR_INTEL, DEVICE_82576) => Self::open_igb(dev, cfg),
            (VENDOR_VIRTIO, DEVICE_VIRTIO_NET) => Self::open_virtio(dev, cfg),
            (vendor, device) => Err(Error::Unsupported {
                addr,
                vendor,
                device,
            }),
        }
    }

    /// The port around its device's queue pairs: the buffers posted, the handles made.
    #[allow(clippy::too_many_arguments)]
    fn assemble(
        dev: VfioDevice,
        control: Control,
        rings: Vec<(RxRing, TxRing)>,
        pool: Mempool,
        mapper: Arc<dyn DmaMapper>,
        mac: [u8; 6],
        rss: Option<RssConfig>,
        cfg: &PortConfig,
        irqs: PortIrqs,
    ) -> Port {
        let soft = match control {
            Control::E1000e { .. } | Control::Igb { .. } => None,
            _ => (!cfg.promisc).then(|| SoftRxFilter::new(mac, &[])),
        };
        let shared = PortShared::new(rings.len(), soft);
        // tenge's software LRO on every queue whenever LRO is asked: a device's own
        // (virtio's GUEST_TSO) delivers what its backend coalesced, and leaves separate
        // segments separate (DPDK's vhost never merges), which the software LRO then
        // merges; frames the device coalesced pass through it untouched.
        let sw_lro = cfg.lro;
        let PortIrqs {
            queues: queue_irqs,
            link: link_watch,
        } = irqs;
        let queues: Vec<QueuePair> = rings
            .into_iter()
            .zip(queue_irqs)
            .enumerate()
            .map(|(i, ((mut rx, tx), irq))| {
                let i = i as u16;
                let mut rx_cache = pool.cache(cfg.cache_size);
                rx.fill(&mut rx_cache);
                let mut rx = RxQueueHandle::new(i, rx, rx_cache, shared.clone(), irq);
                rx.set_lro(sw_lro);
                QueuePair {
                    rx,
                    tx: TxQueueHandle::new(i, tx, pool.cache(cfg.cache_size), shared.clone()),
                }
            })
            .collect();
        let mut port = Port {
            control,
            queue_count: queues.len() as u16,
            queues,
            shared,
            pool,
            mapper,
            mac,
            promisc: cfg.promisc,
            unicast: Vec::new(),
            rss,
            rx_checksum: cfg.rx_checksum,
            lro: cfg.lro,
            vlan_strip: cfg.vlan_strip,
            link: link_watch,
            removal: dev.request_irq(),
            dev,
        };
        // The state at open is the baseline; changes from here on are events.
        port.link.last = port.link();
        port
    }

    fn open_virtio(dev: VfioDevice, cfg: &PortConfig) -> Result<Port, Error> {
        if cfg.vlan_strip {
            return Err(Error::Config(format!(
                "{}: vlan_strip = true: virtio-net has no VLAN stripping (its VLAN feature, \
                 CTRL_VLAN, only filters); leave it off and read the tag from the frame",
                dev.addr()
            )));
        }
        let mapper: Arc<dyn DmaMapper> = dev.container().clone();
        let (irqs, msix) = virtio_irqs(&dev, cfg)?;
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
                leave_partial_checksums: !cfg.rx_fill_partial_checksums,
                queues: cfg.queues,
                rss: cfg.rss.is_some() || cfg.queues > 1,
                msix,
            },
        )?;
        let pool_cfg = MempoolConfig {
            buffers: cfg.mempool_buffers,
            data_room: cfg.buf_size,
            hugepages: cfg.hugepages,
            ..MempoolConfig::default()
        };
        // RX buffers are posted 12 (20 with HASH_REPORT) bytes before the data start (the
        // header goes there); TX prepends it there.
        if (pool_cfg.headroom as usize) < virtio::HASH_HDR_LEN {
            return Err(Error::Config(format!(
                "a mempool headroom of {} bytes: virtio-net needs at least {}",
                pool_cfg.headroom,
                virtio::HASH_HDR_LEN
            )));
        }
        // A failure from here on drops the function, which resets the device first.
        let pool = Mempool::new(mapper.clone(), &pool_cfg)?;
        // The receive filter before any buffer is posted, through the same command as
        // Port::set_promiscuous (sent even to turn it on: the spec leaves a reset device's
        // filter to the device; QEMU's starts promiscuous). The MAC table is empty after a
        // reset (virtio 1.2 §5.1.6.5.2).
        let promisc = RxFilter::Promisc(cfg.promisc);
        let (control, pairs, mac, rss) = match net {
            OpenedVirtio::Split(mut n) => {
                n.set_rx_filter(promisc)?;
                let rss = virtio_start_queues(&mut n, cfg)?;
                let pairs = n
                    .take_queues()
                    .into_iter()
                    .map(|(rx, tx)| (RxRing::Split(rx), TxRing::Split(tx)))
                    .collect();
                let mac = n.mac();
                (Control::Virtio(n), pairs, mac, rss)
            }
            OpenedVirtio::Packed(mut n) => {
                n.set_rx_filter(promisc)?;
                let rss = virtio_start_queues(&mut n, cfg)?;
                let pairs = n
                    .take_queues()
                    .into_iter()
                    .map(|(rx, tx)| (RxRing::Packed(rx), TxRing::Packed(tx)))
                    .collect();
                let mac = n.mac();
                (Control::VirtioPacked(n), pairs, mac, rss)
            }
        };
        Ok(Self::assemble(
            dev, control, pairs, pool, mapper, mac, rss, cfg, irqs,
        ))
    }

    fn open_e1000e(dev: VfioDevice, cfg: &PortConfig) -> Result<Port, Error> {
        let addr = dev.addr();
        intel::check_queues(cfg, "the 82574", fw::regs::QUEUES)?;
        let rss = intel::rss_config(cfg, addr, fw::regs::RETA_ENTRIES, e1000e_rss_problem)?;
        let regs = Arc::new(dev.map_bar(0)?);
        dev.enable_bus_master()?;
        let mut delay = StdDelay;
        fw::reset(&*regs, &mut delay).map_err(e1000e_err(addr))?;
        let mac = fw::read_mac(&*regs, &mut delay).map_err(e1000e_err(addr))?;

        let mapper: Arc<dyn DmaMapper> = dev.container().clone();
        // Each ring 128-byte aligned (82574 §10.2.2.7 needs 16).
        let queues = usize::from(cfg.queues);
        let (rx_rings, tx_rings) = intel::rings::<RxDescExtRead, LegacyTxDesc>(&mapper, cfg, 128)?;
        let pool = intel::pool(&mapper, cfg)?;
        // TX checksums and TSO are per packet on e1000e (context descriptors, see
        // e1000e::offload), whatever tx_checksum and tso say; LRO is tenge's, in software
        // (the 82574 has none).

        fw::configure_tx(
            &*regs,
            &TxRingConfig {
                ring_iova: tx_rings[0].iova(),
                ring_descs: cfg.tx_ring,
            },
        )
        .map_err(e1000e_err(addr))?;
        fw::configure_rx(
            &*regs,
            &RxRingConfig {
                ring_iova: rx_rings[0].iova(),
                ring_descs: cfg.rx_ring,
                buf_size: pool.data_room(),
                // Applied just below, as Port::set_promiscuous does, before any buffer is
                // posted.
                promisc: false,
                checksum: cfg.rx_checksum,
            },
        )
        .map_err(e1000e_err(addr))?;
        for q in 1..queues {
            fw::configure_rx_queue(&*regs, q as u32, rx_rings[q].iova(), cfg.rx_ring)
                .map_err(e1000e_err(addr))?;
            fw::configure_tx_queue(&*regs, q as u32, tx_rings[q].iova(), cfg.tx_ring)
                .map_err(e1000e_err(addr))?;
        }
        if let Some(r) = &rss {
            fw::configure_rss(&*regs, &e1000e_rss_setup(r));
            log::info!(
                "{addr}: RSS over {} queues, hashing {}",
                cfg.queues,
                r.types
            );
        }
        // No extra unicast addresses: entries 1-15 of the receive address table cleared
        // (their content after a reset is the device's; QEMU zeroes them).
        fw::set_unicast_filter(&*regs, &[]).map_err(e1000e_err(addr))?;
        fw::set_promisc(&*regs, cfg.promisc);
        fw::set_vlan_strip(&*regs, cfg.vlan_strip);
        let pairs = rx_rings
            .into_iter()
            .zip(tx_rings)
            .enumerate()
            .map(|(q, (rx_ring, tx_ring))| {
                let q32 = q as u32;
                let mut tx = E1000eTx::for_queue(tx_ring, regs.clone(), q32);
                // The 82574 inserts tags only with CTRL.VME, which vlan_strip sets.
                tx.set_device_vlan(cfg.vlan_strip);
                let txq = TxQueue::new(tx, cfg.tx_rs_interval, MAX_FRAME);
                let rxq = RxQueue::new(
                    E1000eRx::for_queue(rx_ring, regs.clone(), q32, rss.is_some()),
                    cfg.rx_free_thresh,
                );
                (RxRing::E1000e(rxq), TxRing::E1000e(txq))
            })
            .collect();

        let timeout_us = cfg.link_timeout.as_micros().min(u32::MAX as u128) as u32;
        let link = fw::setup_link(&*regs, &mut delay, timeout_us);
        intel::log_link(addr, "e1000e", &mac, &link, cfg.link_timeout);
        // RX queue q on vector q, the other causes (link) on the next (e1000e::irq).
        let irqs = intel::msix_irqs(
            &dev,
            &regs,
            cfg,
            tenge_firmware_iface::e1000e::irq::configure_msix,
            |regs, queue| IrqDevice::E1000e { regs, queue },
        )?;
        Ok(Self::assemble(
            dev,
            Control::E1000e {
                regs,
                hw: HwStats::default(),
            },
            pairs,
            pool,
            mapper,
            mac,
            rss,
            cfg,
            irqs,
        ))
    }

    /// Queue pair 0 while the port holds it.
    #[inline]
    fn pair0(&mut self) -> Option<&mut QueuePair> {
        self.queues.first_mut()
    }

    /// Hands every queue pair the port holds to the caller (to move each to a thread of
    /// its own), by index; the port keeps the control path. Once taken, the port's own
    /// burst and buffer methods do nothing (they receive and send 0 and allocate none);
    /// [`Port::stats`] reads what the handles publish. A handle dropped while the port
    /// lives leaves its buffers to the port, which returns them once the device is stopped.
    pub fn take_queues(&mut self) -> Vec<QueuePair> {
        std::mem::take(&mut self.queues)
    }

    /// Queue pairs the port opened.
    pub fn queue_count(&self) -> u16 {
        self.queue_count
    }

    /// Receives up to `out.room()` frames into `out` on queue pair 0; returns how many.
    #[inline]
    pub fn rx_burst(&mut self, out: &mut PacketBatch) -> usize {
        self.pair0().map_or(0, |q| q.rx.rx_burst(out))
    }

    /// Sends frames from the front of `pkts` on queue pair 0; returns how many left the
    /// batch.
    #[inline]
    pub fn tx_burst(&mut self, pkts: &mut PacketBatch) -> usize {
        self.pair0().map_or(0, |q| q.tx.tx_burst(pkts))
    }

    /// Recycles buffers of completed transmissions now (tx_burst does it when needed).
    pub fn tx_reclaim(&mut self) -> u32 {
        self.pair0().map_or(0, |q| q.tx.tx_reclaim())
    }

    /// A new mempool in DMA memory this port (and every port of this process) can reach.
    pub fn create_mempool(&self, cfg: &MempoolConfig) -> Result<Mempool, Error> {
        Mempool::new(self.mapper.clone(), cfg)
    }

    /// Transmits from `pool` from now on (queue pair 0): see
    /// [`TxQueueHandle::set_mempool`].
    pub fn set_tx_mempool(&mut self, pool: &Mempool, cache_size: usize) {
        if let Some(q) = self.pair0() {
            q.tx.set_mempool(pool, cache_size);
        }
    }

    /// A fresh buffer for transmission: from the TX pool if one was set, else the port's.
    #[inline]
    pub fn alloc_tx(&mut self) -> Option<PacketBuf> {
        self.pair0()?.tx.alloc()
    }

    /// A fresh buffer from the port's pool, through queue pair 0's RX cache.
    #[inline]
    pub fn alloc(&mut self) -> Option<PacketBuf> {
        self.pair0()?.rx.alloc()
    }

    /// Returns a buffer through queue pair 0's RX cache (or straight to its pool).
    #[inline]
    pub fn free(&mut self, buf: PacketBuf) {
        match self.pair0() {
            Some(q) => q.rx.free(buf),
            None => drop(buf),
        }
    }

    /// Returns a whole batch through queue pair 0's RX cache.
    pub fn free_batch(&mut self, batch: &mut PacketBatch) {
        match self.pair0() {
            Some(q) => q.rx.free_batch(batch),
            None => batch.drain().for_each(drop),
        }
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
        let virtio = |up: bool| LinkStatus {
            up,
            // virtio-net reports no speed without VIRTIO_NET_F_SPEED_DUPLEX.
            speed_mbps: 0,
            full_duplex: up,
        };
        match &self.control {
            Control::E1000e { regs, .. } | Control::Igb { regs, .. } => fw::link_status(&**regs),
            Control::Virtio(n) => virtio(n.link_up()),
            Control::VirtioPacked(n) => virtio(n.link_up()),
        }
    }

    /// The eventfd the device's link interrupt signals (e1000e: its "other" causes;
    /// virtio-net: configuration changes), for an application's own `poll`/`epoll`; then
    /// [`Port::poll_link`]. Without interrupts one that never fires: poll instead.
    pub fn link_event_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.link.as_fd()
    }

    /// Whether link changes interrupt ([`Port::link_event_fd`] fires); else
    /// [`Port::poll_link`] reads the link on every call.
    pub fn link_interrupts(&self) -> bool {
        self.link.live
    }

    /// A link change since the last call (or since open), if any. With link interrupts it
    /// touches the device only after one (cheap enough to call every burst: one
    /// non-blocking read of the eventfd); e1000e: acknowledges the other causes, then
    /// reads STATUS.LU and the speed (82574 §10.2.2.2); virtio-net: reads
    /// `VIRTIO_NET_S_LINK_UP` from the device configuration (virtio 1.2 §5.1.4).
    /// Without, it reads the link every call. Two changes between calls that cancel out
    /// (down and up again) are not reported.
    pub fn poll_link(&mut self) -> Option<LinkEvent> {
        if self.link.live {
            if self.link.fd.take() == 0 {
                return None;
            }
            match &self.control {
                Control::E1000e { regs, .. } => {
                    tenge_firmware_iface::e1000e::irq::ack_other(&**regs);
                }
                Control::Igb { regs, .. } => {
                    tenge_firmware_iface::igb::irq::ack_other(&**regs);
                }
                Control::Virtio(_) | Control::VirtioPacked(_) => {}
            }
        }
        let now = self.link();
        if now == self.link.last {
            return None;
        }
        self.link.last = now;
        self.link.changes += 1;
        Some(LinkEvent {
            status: now,
            changes: self.link.changes,
        })
    }

    /// Waits up to `timeout` for a link change ([`Port::poll_link`]): on the link
    /// interrupt, or reading the link every 10 ms without one.
    pub fn wait_link(&mut self, timeout: Duration) -> Option<LinkEvent> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(e) = self.poll_link() {
                return Some(e);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            if self.link.live {
                use std::os::fd::AsFd;
                irq::wait_readable(self.link.fd.as_fd(), left);
            } else {
                std::thread::sleep(left.min(Duration::from_millis(10)));
            }
        }
    }

    /// Whether the kernel asked for the device back (it is being removed: VFIO's request
    /// interrupt, `VFIO_PCI_REQ_IRQ_INDEX`; vfio-pci repeats the request until the device
    /// is closed). Once true it stays true: every burst on the port's queues receives and
    /// sends nothing, every control call fails with [`Error::DeviceRemoved`], and the
    /// application should drop the port (and its queue handles) so the removal can finish.
    /// One non-blocking eventfd read; call it from the control path now and then.
    pub fn removal_requested(&mut self) -> bool {
        if !self
            .shared
            .removed
            .load(std::sync::atomic::Ordering::Relaxed)
            && self.removal.as_ref().is_some_and(|fd| fd.take() > 0)
        {
            log::warn!(
                "{}: the kernel asks for the device back (removal)",
                self.addr()
            );
            self.shared
                .removed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.shared
            .removed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The eventfd VFIO's request interrupt signals, if the kernel has one, for an
    /// application's own `poll`/`epoll`; then [`Port::removal_requested`].
    pub fn removal_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.removal.as_ref().map(|f| f.as_fd())
    }

    fn check_present(&mut self) -> Result<(), Error> {
        if self.removal_requested() {
            return Err(Error::DeviceRemoved { addr: self.addr() });
        }
        Ok(())
    }

    /// Hybrid receive on queue pair 0: see [`RxQueueHandle::rx_burst_wait`].
    pub fn rx_burst_wait(&mut self, out: &mut PacketBatch, timeout: Duration) -> usize {
        self.pair0().map_or(0, |q| q.rx.rx_burst_wait(out, timeout))
    }

    /// Which device family drives the port: "e1000e", "igb" or "virtio-net".
    pub fn driver_name(&self) -> &'static str {
        match &self.control {
            Control::E1000e { .. } => "e1000e",
            Control::Igb { .. } => "igb",
            Control::Virtio(_) | Control::VirtioPacked(_) => "virtio-net",
        }
    }

    /// Doorbell writes the device actually received on queue pair 0, (RX, TX): with
    /// virtio's notification suppression fewer than the engine's `doorbells` (publishes);
    /// e1000e writes every one. (0, 0) once the queues are taken: ask the handles.
    pub fn notifies(&self) -> (u64, u64) {
        self.queues
            .first()
            .map_or((0, 0), |q| (q.rx.notifies(), q.tx.notifies()))
    }

    /// Counters: each queue's and their totals, and the device's statistics registers,
    /// read (and so cleared) and folded into the port's running totals. Call it from the
    /// control path, not per burst.
    pub fn stats(&mut self) -> PortStats {
        let mut s = PortStats::default();
        for i in 0..usize::from(self.queue_count) {
            let q = match self.queues.get(i) {
                Some(q) => (q.rx.stats(), q.tx.stats()),
                None => self.shared.published(i),
            };
            s.rx += q.0;
            s.tx += q.1;
            s.queues.push(q);
            s.irq.push(match self.queues.get(i) {
                Some(q) => q.rx.irq_stats(),
                None => self.shared.published_irq(i),
            });
        }
        if let Control::E1000e { regs, hw } | Control::Igb { regs, hw } = &mut self.control {
            hw.accumulate(&**regs);
            s.hw = hw.clone();
        }
        s
    }

    /// Waits until the device is done with every queued TX descriptor of queue pair 0,
    /// then recycles every TX buffer: see [`TxQueueHandle::tx_drain`].
    pub fn tx_drain(&mut self, timeout: Duration) -> bool {
        self.pair0().is_none_or(|q| q.tx.tx_drain(timeout))
    }

    /// Turns promiscuous mode on (every frame is received, whatever its destination) or
    /// off (only frames to the port's MAC, to an address of [`Port::set_unicast_filter`],
    /// and broadcasts; multicast frames are dropped, as no multicast filter is programmed).
    ///
    /// e1000e: RCTL.UPE and RCTL.MPE (82574 §10.2.5). virtio-net: the control queue's
    /// `VIRTIO_NET_CTRL_RX_PROMISC` (virtio 1.2 §5.1.6.5.1), which needs
    /// `VIRTIO_NET_F_CTRL_RX`; without it promiscuous mode is all the device does, so
    /// turning it on succeeds and turning it off fails. A virtio port with promiscuous mode
    /// off also filters in software (see [`soft_filter`]), on every queue from its next
    /// burst.
    ///
    /// # Errors
    /// [`Error::RxFilterUnsupported`] (virtio-net without `VIRTIO_NET_F_CTRL_RX`, `on`
    /// false); [`Error::VirtioCtrl`] if the device refused the command or did not answer.
    pub fn set_promiscuous(&mut self, on: bool) -> Result<(), Error> {
        self.check_present()?;
        match &mut self.control {
            Control::E1000e { regs, .. } | Control::Igb { regs, .. } => {
                // The 82576 has RCTL.UPE|MPE where the 82574 has them (82576 §8.10.1).
                fw::set_promisc(&**regs, on);
                log::debug!(
                    "{}: promiscuous mode {} (RCTL.UPE|MPE)",
                    self.dev.addr(),
                    if on { "on" } else { "off" }
                );
                self.promisc = on;
                return Ok(());
            }
            Control::Virtio(n) => n.set_rx_filter(RxFilter::Promisc(on))?,
            Control::VirtioPacked(n) => n.set_rx_filter(RxFilter::Promisc(on))?,
        }
        self.promisc = on;
        self.update_soft_filter();
        Ok(())
    }

    /// The software filter every RX queue applies, from the promiscuous mode and unicast
    /// filter last set (virtio-net only).
    fn update_soft_filter(&self) {
        if !matches!(self.control, Control::E1000e { .. } | Control::Igb { .. }) {
            self.shared
                .set_filter((!self.promisc).then(|| SoftRxFilter::new(self.mac, &self.unicast)));
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
        self.check_present()?;
        let addr = self.dev.addr();
        let (max, why) = match &self.control {
            Control::E1000e { .. } => (
                self.unicast_filter_capacity(),
                "the 82574 has 16 receive address entries and the first holds the port's MAC",
            ),
            Control::Igb { .. } => (
                self.unicast_filter_capacity(),
                "tenge uses the 82576's first 16 receive address entries and the first holds \
                 the port's MAC",
            ),
            // Without CTRL_RX the capacity is 0, but clearing succeeds and anything else is
            // the RxFilterUnsupported error set_rx_filter gives.
            Control::Virtio(_) | Control::VirtioPacked(_) => (
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
        match &mut self.control {
            Control::E1000e { regs, .. } | Control::Igb { regs, .. } => {
                // The 82576's RAL/RAH 0-15 sit where the 82574's are (82576 §8.10.16).
                fw::set_unicast_filter(&**regs, macs).map_err(e1000e_err(addr))?;
                log::debug!(
                    "{addr}: unicast filter of {} addresses in RAL/RAH 1-{}",
                    macs.len(),
                    macs.len()
                );
            }
            Control::Virtio(n) => n.set_rx_filter(RxFilter::Unicast(macs))?,
            Control::VirtioPacked(n) => n.set_rx_filter(RxFilter::Unicast(macs))?,
        }
        self.unicast = macs.to_vec();
        self.update_soft_filter();
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
        match &self.control {
            Control::E1000e { .. } | Control::Igb { .. } => fw::UNICAST_FILTER_ENTRIES,
            Control::Virtio(n) => virtio(n.features()),
            Control::VirtioPacked(n) => virtio(n.features()),
        }
    }

    /// What the port does with each offload (see [`caps`]). e1000e and igb: every TX
    /// checksum and TSO by the device (context descriptors), RX checksums by the device when
    /// [`PortConfig::rx_checksum`] is on, LRO in software when [`PortConfig::lro`] asks.
    /// virtio-net: TX checksums and TSO by the device where negotiated
    /// ([`PortConfig::tx_checksum`], [`PortConfig::tso`]: CSUM, HOST_TSO4/6), in software
    /// where not (checksums computed, TSO by the software GSO); the IPv4 header checksum in
    /// software; RX checksums and LRO by the device as negotiated (GUEST_CSUM,
    /// GUEST_TSO4/6), LRO in software where the device has none and [`PortConfig::lro`]
    /// asks. VLAN: igb inserts tags, e1000e too with [`PortConfig::vlan_strip`] (tenge in
    /// software without), both strip with it; virtio-net does neither.
    pub fn offloads(&self) -> caps::OffloadCaps {
        use caps::OffloadSupport::{Device, Software, Unavailable};
        use tenge_firmware_iface::virtio as vf;
        match &self.control {
            Control::E1000e { .. } => caps::OffloadCaps {
                tx_ipv4_csum: Device,
                tx_tcp_csum: Device,
                tx_udp_csum: Device,
                tx_tso: Device,
                rx_csum: if self.rx_checksum {
                    Device
                } else {
                    Unavailable
                },
                lro: if self.lro { Software } else { Unavailable },
                // The 82574 inserts only with CTRL.VME (vlan_strip); tenge otherwise.
                tx_vlan: if self.vlan_strip { Device } else { Software },
                rx_vlan_strip: if self.vlan_strip { Device } else { Unavailable },
            },
            // Context descriptors, as on e1000e (igb::offload).
            Control::Igb { .. } => caps::OffloadCaps {
                tx_ipv4_csum: Device,
                tx_tcp_csum: Device,
                tx_udp_csum: Device,
                tx_tso: Device,
                rx_csum: if self.rx_checksum {
                    Device
                } else {
                    Unavailable
                },
                lro: if self.lro { Software } else { Unavailable },
                tx_vlan: Device,
                rx_vlan_strip: if self.vlan_strip { Device } else { Unavailable },
            },
            Control::Virtio(_) | Control::VirtioPacked(_) => {
                let f = match &self.control {
                    Control::Virtio(n) => n.features(),
                    Control::VirtioPacked(n) => n.features(),
                    Control::E1000e { .. } | Control::Igb { .. } => 0,
                };
                let has = |bits: u64| {
                    if f & bits == bits {
                        Device
                    } else {
                        Unavailable
                    }
                };
                // What the device lacks, tenge does on the way to the ring (SoftTx); the
                // IPv4 header checksum always (virtio-net has no offload for it).
                let dev = crate::virtio::tx_offloads(f);
                let or_sw = |d: bool| if d { Device } else { Software };
                caps::OffloadCaps {
                    tx_ipv4_csum: Software,
                    tx_tcp_csum: or_sw(dev.l4_csum),
                    tx_udp_csum: or_sw(dev.l4_csum),
                    tx_tso: or_sw(dev.tso4 && dev.tso6),
                    rx_csum: has(vf::VIRTIO_NET_F_GUEST_CSUM),
                    lro: match has(vf::VIRTIO_NET_F_GUEST_TSO4 | vf::VIRTIO_NET_F_GUEST_TSO6) {
                        Unavailable if self.lro => Software,
                        d => d,
                    },
                    // virtio 1.2 has no VLAN offload (VIRTIO_NET_F_CTRL_VLAN filters
                    // only); a TX_VLAN packet is dropped and counted (bad_offload).
                    tx_vlan: Unavailable,
                    rx_vlan_strip: Unavailable,
                }
            }
        }
    }

    /// Queue pair 0's software LRO counters, when it is on ([`PortConfig::lro`] on a device
    /// without LRO of its own); `None` once the queues are taken.
    pub fn lro_stats(&self) -> Option<crate::offload::LroStats> {
        self.queues.first().and_then(|q| q.rx.lro_stats())
    }

    /// Buffers posted to queue pair 0's RX ring (0 once the queues are taken).
    pub fn rx_posted(&self) -> u32 {
        self.queues.first().map_or(0, |q| q.rx.posted())
    }

    /// The RSS configuration in force, if RSS is on.
    pub fn rss(&self) -> Option<&RssConfig> {
        self.rss.as_ref()
    }

    /// Replaces the RSS key, indirection table and hash types, from the next received
    /// frame on. RSS is chosen when the port opens ([`PortConfig::rss`], or several queue
    /// pairs); this changes its settings, not whether it runs.
    ///
    /// e1000e: RSSRK, RETA and MRQC (82574 §7.1.1.7): a 40-byte key, exactly 128 table
    /// entries of queue 0 or 1, and IPv4, TCP/IPv4, IPv6, TCP/IPv6 and IPv6 with extension
    /// headers (no UDP hash type: UDP frames are hashed by their addresses).
    ///
    /// virtio-net: `VIRTIO_NET_CTRL_MQ_RSS_CONFIG` (virtio 1.2 §5.1.6.5.7) on the control
    /// queue: a 40-byte key (the device's `rss_max_key_size` at least 40), a table of a
    /// power of two entries up to the device's `rss_max_indirection_table_length` (and at
    /// most 128), hash types among its `supported_hash_types` (QEMU: all nine).
    ///
    /// # Errors
    /// [`Error::Rss`] saying what the device cannot take (nothing changes), or that RSS is
    /// off on this port.
    pub fn set_rss(&mut self, rss: &RssConfig) -> Result<(), Error> {
        self.check_present()?;
        let addr = self.dev.addr();
        if self.rss.is_none() {
            return Err(Error::Rss {
                addr,
                reason: "RSS is off on this port; open it with PortConfig::rss set or with \
                         several queue pairs"
                    .into(),
            });
        }
        match &mut self.control {
            Control::E1000e { regs, .. } => {
                if let Some(reason) = e1000e_rss_problem(rss, self.queue_count) {
                    return Err(Error::Rss { addr, reason });
                }
                fw::configure_rss(&**regs, &e1000e_rss_setup(rss));
            }
            Control::Igb { regs, .. } => {
                if let Some(reason) = igb::igb_rss_problem(rss, self.queue_count) {
                    return Err(Error::Rss { addr, reason });
                }
                ifw::configure_rss(&**regs, &igb::igb_rss_setup(rss));
            }
            Control::Virtio(n) => virtio_set_rss(n, rss)?,
            Control::VirtioPacked(n) => virtio_set_rss(n, rss)?,
        }
        self.rss = Some(rss.clone());
        Ok(())
    }
}

/// virtio-net's interrupts as `cfg` asks: none, or MSI-X with configuration changes (the
/// link) on vector 0 and a vector per queue, or per RX queue if the device has too few
/// ([`VirtioVectors`]).
fn virtio_irqs(
    dev: &VfioDevice,
    cfg: &PortConfig,
) -> Result<(PortIrqs, Option<VirtioVectors>), Error> {
    let addr = dev.addr();
    let pairs = cfg.queues;
    let mut irqs = PortIrqs::polled(addr, usize::from(pairs))?;
    if !cfg.interrupts {
        return Ok((irqs, None));
    }
    let (table, _) = dev.irq_counts();
    let tx = table >= VirtioVectors::needed(pairs, true);
    if !tx && table >= VirtioVectors::needed(pairs, false) {
        log::warn!(
            "{addr}: {table} MSI-X vectors: RX queues get one each, TX queues none (start \
             the device with vectors={} for all)",
            VirtioVectors::needed(pairs, true)
        );
    }
    let v = dev.enable_irqs(VirtioVectors::needed(pairs, tx))?;
    if v.mode != IrqMode::Msix {
        return Ok((irqs, None));
    }
    let vectors = VirtioVectors { tx };
    for (p, irq) in irqs.queues.iter_mut().enumerate() {
        *irq = QueueIrq {
            fd: v.fds[usize::from(vectors.rx(p as u16))].clone(),
            device: IrqDevice::Virtio,
        };
    }
    irqs.link.fd = v.fds[usize::from(VirtioVectors::CONFIG)].clone();
    irqs.link.live = true;
    Ok((irqs, Some(vectors)))
}

/// What a virtio-net device takes for RSS: its limits from the device configuration
/// (§5.1.4: `rss_max_key_size`, `rss_max_indirection_table_length`,
/// `supported_hash_types`) as (key length, most table entries, hash types); tenge always
/// sends a 40-byte key and at most [`RSS_TABLE_MAX`] entries. An error if the device did
/// not negotiate `VIRTIO_NET_F_RSS` or its limits cannot take a 40-byte key.
fn virtio_rss_limits<R: crate::ring::RxDescOps, T: crate::ring::TxDescOps>(
    n: &VirtioNet<R, T>,
) -> Result<(usize, usize, RssHashTypes), String> {
    use tenge_firmware_iface::virtio::VIRTIO_NET_F_RSS;
    if n.features() & VIRTIO_NET_F_RSS == 0 {
        return Err(
            "the device does not offer VIRTIO_NET_F_RSS: start QEMU's virtio-net \
                    with rss=on (on a tap or another backend without vhost; QEMU hides it \
                    with vhost-user), or open the port without PortConfig::rss"
                .into(),
        );
    }
    let c = n.net_config();
    let key = usize::from(c.rss_max_key_size.unwrap_or(0));
    let table = usize::from(c.rss_max_indirection_table_length.unwrap_or(0));
    if key < DEFAULT_RSS_KEY.len() || table == 0 {
        return Err(format!(
            "the device takes keys of at most {key} bytes and tables of at most {table} \
             entries (rss_max_key_size, rss_max_indirection_table_length); tenge needs a \
             40-byte key and at least one entry"
        ));
    }
    // The largest power of two within both limits.
    let table = table.min(RSS_TABLE_MAX);
    let table = 1usize << (usize::BITS - 1 - table.leading_zeros());
    let types = RssHashTypes::from_bits_truncate(c.supported_hash_types.unwrap_or(0));
    Ok((DEFAULT_RSS_KEY.len(), table, types))
}

/// What a virtio-net device `n` cannot take in `rss`, if anything.
fn virtio_rss_problem<R: crate::ring::RxDescOps, T: crate::ring::TxDescOps>(
    n: &VirtioNet<R, T>,
    rss: &RssConfig,
) -> Option<String> {
    match virtio_rss_limits(n) {
        Err(e) => Some(e),
        Ok((key, table, types)) => {
            rss.problem("this virtio-net", n.pairs(), key, table, true, types)
        }
    }
}

/// Programs `rss` into `n` (checked first: nothing changes on a problem).
fn virtio_set_rss<R: crate::ring::RxDescOps, T: crate::ring::TxDescOps>(
    n: &mut VirtioNet<R, T>,
    rss: &RssConfig,
) -> Result<(), Error> {
    let addr = n.addr;
    if let Some(reason) = virtio_rss_problem(n, rss) {
        return Err(Error::Rss { addr, reason });
    }
    n.configure_rss(rss.types.bits(), &rss.key, &rss.table)
}

/// Starts the queue pairs of a freshly opened `n` as `cfg` asks: with RSS negotiated and
/// wanted (`cfg.rss`, or several pairs), `VIRTIO_NET_CTRL_MQ_RSS_CONFIG` with `cfg.rss` or
/// the default for the device's table (which also sets the pairs); without RSS and with
/// several pairs, `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET` (the device steers on its own); RSS
/// asked for on a device without it is an error. Returns the RSS configuration in force.
fn virtio_start_queues<R: crate::ring::RxDescOps, T: crate::ring::TxDescOps>(
    n: &mut VirtioNet<R, T>,
    cfg: &PortConfig,
) -> Result<Option<RssConfig>, Error> {
    use tenge_firmware_iface::virtio::VIRTIO_NET_F_RSS;
    let addr = n.addr;
    let has_rss = n.features() & VIRTIO_NET_F_RSS != 0;
    let rss = match (&cfg.rss, has_rss) {
        (Some(r), _) => Some(r.clone()),
        (None, true) if cfg.queues > 1 => {
            let (_, table, _) =
                virtio_rss_limits(n).map_err(|reason| Error::Rss { addr, reason })?;
            Some(RssConfig::new(cfg.queues, table))
        }
        (None, _) => None,
    };
    match &rss {
        Some(r) => {
            virtio_set_rss(n, r)?;
            log::info!(
                "{addr}: RSS over {} queue pair(s), {}-entry table, hashing {}",
                n.pairs(),
                r.table.len(),
                r.types
            );
        }
        None if n.pairs() > 1 => n.set_queue_pairs()?,
        None => {}
    }
    Ok(rss)
}

/// The hash types the 82574 takes (82574 §7.1.1.7; QEMU `e1000e_rss_get_hash_type`).
const E1000E_RSS_TYPES: RssHashTypes = RssHashTypes::from_bits_truncate(
    RssHashTypes::IPV4.bits()
        | RssHashTypes::TCP_IPV4.bits()
        | RssHashTypes::IPV6.bits()
        | RssHashTypes::TCP_IPV6.bits()
        | RssHashTypes::IPV6_EX.bits(),
);

/// What the 82574 cannot take in `rss` on a port of `queues` queue pairs.
fn e1000e_rss_problem(rss: &RssConfig, queues: u16) -> Option<String> {
    rss.problem(
        "the 82574",
        queues,
        fw::regs::RSS_KEY_LEN,
        fw::regs::RETA_ENTRIES,
        false,
        E1000E_RSS_TYPES,
    )
}

/// `rss` (checked by [`e1000e_rss_problem`]) as the 82574's registers. TCP/IPv6 is the
/// 82574's "TCP/IPv6 with extensions" type, the same hash for a header without them.
fn e1000e_rss_setup(rss: &RssConfig) -> fw::RssSetup {
    use fw::regs::*;
    let (key, queues, fields) = intel::rss_registers(
        rss,
        &[
            (RssHashTypes::IPV4, MRQC_IPV4),
            (RssHashTypes::TCP_IPV4, MRQC_TCPIPV4),
            (RssHashTypes::IPV6, MRQC_IPV6),
            (RssHashTypes::TCP_IPV6, MRQC_TCPIPV6),
            (RssHashTypes::IPV6_EX, MRQC_IPV6EX),
        ],
    );
    fw::RssSetup {
        key,
        queues,
        fields,
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        // Stop the device before any buffer it may still use goes back to the pool: the
        // queues the port holds (dropped after this) and those parked by dropped handles
        // are released once it is stopped; handles still out release theirs when dropped.
        match &self.control {
            Control::E1000e { regs, .. } => fw::disable(&**regs),
            Control::Igb { regs, .. } => ifw::disable(&**regs),
            Control::Virtio(n) => n.stop(),
            Control::VirtioPacked(n) => n.stop(),
        }
        let _ = self.dev.disable_bus_master();
        self.shared.device_stopped();
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
