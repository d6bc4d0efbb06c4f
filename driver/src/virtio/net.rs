//! Bringing a virtio-net function up (virtio 1.2 §3.1, §5.1): capabilities, feature
//! negotiation, queues on split or packed rings, the control queue; and taking it down.

use std::sync::Arc;

use tenge_firmware_iface::virtio::{
    self as fw, FeatureNames, QueueConfig, QueueLayout, VirtioPciCaps, VirtioRegion,
    VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_PACKED, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX,
    VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_STATUS,
};
use tenge_firmware_iface::StdDelay;

use crate::error::{Error, VfioError};
use crate::platform::dma::{DmaMapper, DmaRegion};
use crate::platform::mmio::{Bar, BarWindow};
use crate::platform::pci::PciAddress;
use crate::platform::vfio::VfioDevice;
use crate::ring::{RxDescOps, RxQueue, TxDescOps, TxQueue};
use crate::virtio::ctrl::{CtrlQueue, CtrlRing, CTRL_QUEUE_SIZE};
use crate::virtio::packed::{PackedRing, PackedRx, PackedTx};

use super::*;

/// An open virtio-net function: its queues (split rings by default, or
/// [`VirtioNetPacked`]) and its configuration registers.
pub struct VirtioNet<R: RxDescOps = VirtioRx<Bar>, T: TxDescOps = VirtioTx<Bar>> {
    /// The queue pairs (pair i: RX queue 2i, TX queue 2i+1, §5.1.2), until
    /// [`VirtioNet::take_queues`] hands them on.
    queues: Vec<(RxQueue<R>, TxQueue<T>)>,
    /// Queue pairs opened.
    pub(crate) pairs: u16,
    /// The control queue (the last virtqueue: 2 without MQ and RSS, `2 *
    /// max_virtqueue_pairs` with either), if `VIRTIO_NET_F_CTRL_VQ` was negotiated.
    pub(crate) ctrl: Option<CtrlQueue<Bar>>,
    /// The device configuration read at open (RSS limits among it).
    pub(crate) net: fw::NetConfig,
    pub(crate) addr: PciAddress,
    common: BarWindow,
    device: Option<BarWindow>,
    features: u64,
    mac: [u8; 6],
    _rings: Arc<DmaRegion>,
    /// Reset already (by [`VirtioNet::stop`]): dropping does not reset it again (each reset
    /// of a vhost-user device stops its backend through QEMU).
    stopped: std::cell::Cell<bool>,
}

/// A virtio-net function on packed rings.
pub type VirtioNetPacked = VirtioNet<PackedRx<Bar>, PackedTx<Bar>>;

/// What [`VirtioNet::open`] brought up: split or packed rings, as negotiated.
#[allow(clippy::large_enum_variant)]
pub enum OpenedVirtio {
    /// `VIRTIO_F_RING_PACKED` was not offered.
    Split(VirtioNet),
    /// `VIRTIO_F_RING_PACKED` was offered and accepted.
    Packed(VirtioNetPacked),
}

/// Which MSI-X vector carries which interrupt (virtio 1.2 §4.1.4.3, `config_msix_vector`
/// and `queue_msix_vector`): configuration changes on vector 0, queue pair p's RX queue on
/// 1 + 2p and its TX queue on 2 + 2p, or, when the device has too few vectors for that
/// (`tx` false), RX on 1 + p and TX on none. The control queue has none (it is polled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioVectors {
    /// TX queues get vectors too.
    pub tx: bool,
}

impl VirtioVectors {
    /// The configuration-change vector.
    pub const CONFIG: u16 = 0;

    /// Vectors `pairs` queue pairs need, with and without TX vectors.
    pub fn needed(pairs: u16, tx: bool) -> u32 {
        1 + u32::from(pairs) * if tx { 2 } else { 1 }
    }

    /// Pair `p`'s RX vector.
    pub fn rx(&self, p: u16) -> u16 {
        if self.tx {
            1 + 2 * p
        } else {
            1 + p
        }
    }

    /// Pair `p`'s TX vector.
    pub fn tx(&self, p: u16) -> u16 {
        if self.tx {
            2 + 2 * p
        } else {
            fw::regs::VIRTIO_MSI_NO_VECTOR
        }
    }
}

/// What [`VirtioNet::open`] needs from the port configuration.
#[derive(Clone, Copy, Debug)]
pub struct VirtioQueueConfig {
    /// RX descriptors wanted (clamped to the device's maximum).
    pub rx_ring: u32,
    /// TX descriptors wanted (clamped to the device's maximum).
    pub tx_ring: u32,
    /// See `PortConfig::rx_free_thresh`.
    pub rx_free_thresh: u32,
    /// See `PortConfig::tx_rs_interval`.
    pub tx_rs_interval: u32,
    /// Hugepage use for the rings.
    pub hugepages: crate::platform::dma::HugepagePolicy,
    /// Offload features to accept if offered, on top of [`DRIVER_FEATURES`]: any of
    /// [`OFFLOAD_FEATURES`].
    pub offloads: u64,
    /// See `PortConfig::rx_fill_partial_checksums` (this is its negation).
    pub leave_partial_checksums: bool,
    /// Queue pairs to open (more than one needs `VIRTIO_NET_F_MQ` or `VIRTIO_NET_F_RSS`).
    pub queues: u16,
    /// The port wants RSS: accept `VIRTIO_NET_F_RSS` and `VIRTIO_NET_F_HASH_REPORT` when
    /// offered.
    pub rss: bool,
    /// MSI-X vectors to route the device's interrupts to (already enabled through VFIO),
    /// or none.
    pub msix: Option<VirtioVectors>,
}

/// The multi-queue features to ask for of a device that `offered` these: `VIRTIO_NET_F_MQ`
/// with several queue pairs; `VIRTIO_NET_F_RSS` when the port wants RSS, and with it
/// `VIRTIO_NET_F_HASH_REPORT` (each frame's hash in its header). A device that offers
/// neither MQ's steering nor RSS still spreads frames over several pairs its own way after
/// `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET` (§5.1.6.5.5). HASH_REPORT is never taken without RSS:
/// QEMU then copies header bytes it never computed into the hash fields (its
/// `populate_hash` without RSS enabled).
pub fn multiqueue_features(queues: u16, rss: bool, offered: u64) -> u64 {
    let mut f = 0;
    if queues > 1 {
        f |= VIRTIO_NET_F_MQ;
    }
    if rss && offered & VIRTIO_NET_F_RSS != 0 {
        f |= VIRTIO_NET_F_RSS | VIRTIO_NET_F_HASH_REPORT;
    }
    f
}

fn virtio_err(addr: PciAddress) -> impl Fn(fw::VirtioError) -> Error {
    move |source| Error::Virtio { addr, source }
}

/// The largest power of two not above `want` and `max`, at least 4.
pub(super) fn queue_size(want: u32, max: u16) -> u16 {
    let n = want.min(u32::from(max)).max(4);
    let p = 1u32 << (31 - n.leading_zeros());
    p as u16
}

impl VirtioNet {
    /// Brings up the virtio-net function `dev`: finds its structures, resets it, negotiates
    /// [`DRIVER_FEATURES`] (refusing a device without VERSION_1 or ACCESS_PLATFORM), reads
    /// its MAC, registers RX queue 0 and TX queue 1 as packed rings if the device offered
    /// `VIRTIO_F_RING_PACKED` and as split rings otherwise, and sets DRIVER_OK. The caller
    /// then fills the RX queue (which notifies the device).
    pub fn open(
        dev: &VfioDevice,
        mapper: Arc<dyn DmaMapper>,
        cfg: &VirtioQueueConfig,
    ) -> Result<OpenedVirtio, Error> {
        let addr = dev.addr();
        let mut config = [0u8; 256];
        dev.config_read(0, &mut config)?;
        let caps = fw::parse_virtio_caps(&config).map_err(|e| virtio_err(addr)(e.into()))?;
        let VirtioPciCaps {
            common,
            notify,
            device,
            ..
        } = caps;
        let mut bars = MappedBars::default();
        let common = bars.window(dev, &common)?;
        let device = match &device {
            Some(r) => Some(bars.window(dev, r)?),
            None => None,
        };
        // Doorbells are written through the whole BAR, at the offsets notify_offset checks
        // against the notify structure (which must lie inside the BAR).
        bars.window(dev, &notify.region)?;
        let notify_bar = bars.bar(dev, notify.region.bar)?;
        dev.enable_bus_master()?;

        let err = virtio_err(addr);
        fw::reset(&common, &mut StdDelay).map_err(&err)?;
        let offered = fw::read_device_features(&common);
        let wanted = wanted_features(cfg.offloads, offered)
            | multiqueue_features(cfg.queues, cfg.rss, offered);
        let features = fw::start_negotiation(&common, wanted).map_err(&err)?;
        let hdr_mode = RxHdrMode::from_features(features, cfg.leave_partial_checksums);
        let hdr_len = hdr_mode.hdr_len();
        let event_idx = features & VIRTIO_F_EVENT_IDX != 0;
        let packed = features & VIRTIO_F_RING_PACKED != 0;
        log::info!(
            "{addr}: virtio-net offers {}, accepted {}",
            FeatureNames(fw::read_device_features(&common)),
            FeatureNames(features)
        );
        let net = match &device {
            Some(d) => fw::read_net_config(&common, d, features).map_err(&err)?,
            None => fw::NetConfig::default(),
        };
        let pairs = cfg.queues.max(1);
        // §5.1.2: with MQ or RSS negotiated the device has max_virtqueue_pairs pairs and
        // the control queue comes after all of them; otherwise one pair and queue 2.
        let multiqueue = features & (VIRTIO_NET_F_MQ | VIRTIO_NET_F_RSS) != 0;
        let max_pairs = match (multiqueue, net.max_virtqueue_pairs) {
            (true, Some(n)) if (1..=VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX).contains(&n) => n,
            (true, n) => {
                // Nothing is registered yet: a plain reset undoes the negotiation.
                let _ = fw::reset(&common, &mut StdDelay);
                return Err(Error::Config(format!(
                    "{addr}: the device's max_virtqueue_pairs is {n:?}, outside 1..=32768 \
                     (virtio 1.2 §5.1.4): its configuration is broken; reset or recreate it"
                )));
            }
            (false, _) => 1,
        };
        if pairs > max_pairs || (pairs > 1 && !multiqueue) {
            let _ = fw::reset(&common, &mut StdDelay);
            return Err(Error::Config(if multiqueue {
                format!(
                    "queues = {pairs}: {addr} has at most {max_pairs} queue pairs \
                     (max_virtqueue_pairs); ask for fewer, or start QEMU's device with \
                     more (a tap with queues=N and mq=on,vectors=2N+2)"
                )
            } else {
                format!(
                    "queues = {pairs}: {addr} offers one queue pair (neither VIRTIO_NET_F_MQ \
                     nor VIRTIO_NET_F_RSS); use queues = 1, or start QEMU's device with \
                     mq=on on a multi-queue backend (tap queues=N, vhost-user queues=N)"
                )
            }));
        }
        let ctrl_index = 2 * max_pairs;
        let mac = net.mac.unwrap_or_else(|| {
            log::warn!("{addr}: the device has no MAC address (no VIRTIO_NET_F_MAC); using 02:00:00:00:00:00");
            [2, 0, 0, 0, 0, 0]
        });

        // Every pair gets the same sizes: the smallest maximum of its queues.
        let (mut rx_max, mut tx_max) = (u16::MAX, u16::MAX);
        for p in 0..pairs {
            rx_max = rx_max.min(fw::queue_max_size(&common, 2 * p).map_err(&err)?);
            tx_max = tx_max.min(fw::queue_max_size(&common, 2 * p + 1).map_err(&err)?);
        }
        let rx_size = queue_size(cfg.rx_ring, rx_max);
        let tx_size = queue_size(cfg.tx_ring, tx_max);
        if u32::from(rx_size) != cfg.rx_ring || u32::from(tx_size) != cfg.tx_ring {
            log::info!(
                "{addr}: virtio queues of {rx_size} RX / {tx_size} TX descriptors (asked for \
                 {} / {}; the device's maximum bounds them)",
                cfg.rx_ring,
                cfg.tx_ring
            );
        }
        // Pair p's RX ring at p * pair_bytes, its TX ring tx_off after it.
        let (pair_bytes, tx_off) = if packed {
            let tx_off = PackedRing::bytes(rx_size);
            (tx_off + PackedRing::bytes(tx_size), tx_off)
        } else {
            let tx_off = SplitRing::bytes(rx_size);
            (tx_off + SplitRing::bytes(tx_size), tx_off)
        };
        let pair_bytes = pair_bytes.div_ceil(64) * 64;
        let data_bytes = usize::from(pairs) * pair_bytes;
        let layout = if packed {
            QueueLayout::Packed
        } else {
            QueueLayout::Split
        };
        // The control queue and its command area follow the data rings in the region.
        let ctrl_size = if features & VIRTIO_NET_F_CTRL_VQ != 0 {
            Some(queue_size(
                u32::from(CTRL_QUEUE_SIZE),
                fw::queue_max_size(&common, ctrl_index).map_err(&err)?,
            ))
        } else {
            None
        };
        let ctrl_bytes = ctrl_size.map_or(0, |size| CtrlRing::bytes(size, layout));
        // TX chains: an indirect table per TX slot, after the control queue.
        let indirect = features & VIRTIO_F_INDIRECT_DESC != 0;
        let tables_off = (data_bytes + ctrl_bytes).div_ceil(64) * 64;
        let ring_bytes = if indirect {
            tables_off + usize::from(pairs) * IndirectTables::bytes(tx_size)
        } else {
            data_bytes + ctrl_bytes
        };
        let rings = Arc::new(DmaRegion::allocate(mapper, ring_bytes, cfg.hugepages)?);
        // Registers queue `index` with the device and returns its doorbell.
        let setup =
            |index: u16, size: u16, layout: QueueLayout, (desc, driver, device), vector: u16| {
                let setup = fw::setup_queue(
                    &common,
                    index,
                    &QueueConfig {
                        size,
                        layout,
                        desc,
                        driver,
                        device,
                    },
                )
                .map_err(&err)?;
                if vector != fw::regs::VIRTIO_MSI_NO_VECTOR {
                    fw::set_queue_vector(&common, index, vector).map_err(&err)?;
                }
                let off = fw::notify_offset(&notify, setup.notify_off).map_err(&err)?;
                Ok::<_, Error>(Doorbell::new(notify_bar.clone(), off, index, event_idx))
            };
        // Once a queue is registered the device may read its ring: a failure from here on
        // resets the device before the rings can go (they stay mapped until this function
        // returns, through `rings`).
        let brought_up = (|| {
            if cfg.msix.is_some() {
                fw::set_config_vector(&common, VirtioVectors::CONFIG).map_err(&err)?;
            }
            let vectors = |p: u16| match cfg.msix {
                Some(v) => (v.rx(p), v.tx(p)),
                None => (
                    fw::regs::VIRTIO_MSI_NO_VECTOR,
                    fw::regs::VIRTIO_MSI_NO_VECTOR,
                ),
            };
            let tables = |p: u16| {
                IndirectTables::new(
                    rings.clone(),
                    tables_off + usize::from(p) * IndirectTables::bytes(tx_size),
                    tx_size,
                )
            };
            let mut queues = if packed {
                Queues::Packed(Vec::new())
            } else {
                Queues::Split(Vec::new())
            };
            let tx_offloads = super::tx_offloads(features);
            let tx_settings = |p: u16| {
                let settings = TxSettings::default()
                    .with_hdr_len(hdr_len)
                    .with_offloads(tx_offloads);
                match indirect {
                    true => settings.with_indirect(tables(p)),
                    false => settings,
                }
            };
            for p in 0..pairs {
                // Pair p: RX queue 2p, TX queue 2p + 1 (§5.1.2), each with its own doorbell
                // (queue_notify_off, §4.1.4.4).
                let (rxi, txi) = (2 * p, 2 * p + 1);
                let (rxv, txv) = vectors(p);
                let rx_off = usize::from(p) * pair_bytes;
                match &mut queues {
                    Queues::Packed(v) => {
                        let rx_ring = PackedRing::new(rings.clone(), rx_off, rx_size);
                        let tx_ring = PackedRing::new(rings.clone(), rx_off + tx_off, tx_size);
                        let rx_bell =
                            setup(rxi, rx_size, QueueLayout::Packed, rx_ring.iovas(), rxv)?;
                        let tx_bell =
                            setup(txi, tx_size, QueueLayout::Packed, tx_ring.iovas(), txv)?;
                        v.push(queue_pair(
                            PackedRx::new(rx_ring, rx_bell, hdr_mode),
                            PackedTx::new(tx_ring, tx_bell, tx_settings(p)),
                            cfg,
                        ));
                    }
                    Queues::Split(v) => {
                        let rx_ring = SplitRing::new(rings.clone(), rx_off, rx_size, event_idx);
                        let tx_ring =
                            SplitRing::new(rings.clone(), rx_off + tx_off, tx_size, event_idx);
                        let rx_bell =
                            setup(rxi, rx_size, QueueLayout::Split, rx_ring.iovas(), rxv)?;
                        let tx_bell =
                            setup(txi, tx_size, QueueLayout::Split, tx_ring.iovas(), txv)?;
                        v.push(queue_pair(
                            VirtioRx::new(rx_ring, rx_bell, hdr_mode),
                            VirtioTx::new(tx_ring, tx_bell, tx_settings(p)),
                            cfg,
                        ));
                    }
                }
            }
            let ctrl = match ctrl_size {
                Some(size) => {
                    let ring = CtrlRing::new(rings.clone(), data_bytes, size, layout, event_idx);
                    let bell = setup(
                        ctrl_index,
                        size,
                        layout,
                        ring.iovas(),
                        fw::regs::VIRTIO_MSI_NO_VECTOR,
                    )?;
                    Some(CtrlQueue::new(ring, bell))
                }
                None => None,
            };
            fw::driver_ok(&common).map_err(&err)?;
            Ok::<_, Error>((queues, ctrl))
        })();
        let (queues, ctrl) = match brought_up {
            Ok(q) => q,
            Err(e) => {
                if let Err(r) = fw::reset(&common, &mut StdDelay) {
                    log::warn!("{addr}: virtio reset after a failed open: {r}");
                }
                return Err(e);
            }
        };
        log::info!(
            "{addr}: virtio-net {} link {}, {} rings {rx_size} RX / {tx_size} TX, {pairs} of {max_pairs} queue pair(s), header {hdr_len} bytes, event index {}, control queue {}",
            crate::port::fmt_mac(&mac),
            if net.link_up() { "up" } else { "down" },
            if packed { "packed" } else { "split" },
            if event_idx { "on" } else { "off" },
            match (&ctrl, features & VIRTIO_NET_F_CTRL_RX != 0) {
                (Some(q), true) => format!("{} descriptors with RX filtering", q.size()),
                (Some(q), false) => format!("{} descriptors without RX filtering", q.size()),
                (None, _) => "none (receive filter fixed)".to_string(),
            }
        );
        Ok(match queues {
            Queues::Split(queues) => OpenedVirtio::Split(VirtioNet {
                queues,
                pairs,
                net,
                ctrl,
                addr,
                common,
                device,
                features,
                mac,
                _rings: rings,
                stopped: std::cell::Cell::new(false),
            }),
            Queues::Packed(queues) => OpenedVirtio::Packed(VirtioNet {
                queues,
                pairs,
                net,
                ctrl,
                addr,
                common,
                device,
                features,
                mac,
                _rings: rings,
                stopped: std::cell::Cell::new(false),
            }),
        })
    }
}

/// An RX queue and a TX queue of the engine: one queue pair.
type QueuePair<R, T> = (RxQueue<R>, TxQueue<T>);

/// The engine's queues over one pair's descriptor ops, either ring layout.
fn queue_pair<R: RxDescOps, T: TxDescOps>(
    rx: R,
    tx: T,
    cfg: &VirtioQueueConfig,
) -> QueuePair<R, T> {
    (
        RxQueue::new(rx, cfg.rx_free_thresh),
        TxQueue::new(tx, cfg.tx_rs_interval, MAX_FRAME),
    )
}

/// The queues [`VirtioNet::open`] made, before the rest of the function joins them.
enum Queues {
    Split(Vec<QueuePair<VirtioRx<Bar>, VirtioTx<Bar>>>),
    Packed(Vec<QueuePair<PackedRx<Bar>, PackedTx<Bar>>>),
}

impl<R: RxDescOps, T: TxDescOps> VirtioNet<R, T> {
    /// The queue pairs, by index, once (the port's queue handles own them from then on;
    /// the function keeps the control path and still resets the device when dropped).
    pub fn take_queues(&mut self) -> Vec<(RxQueue<R>, TxQueue<T>)> {
        std::mem::take(&mut self.queues)
    }

    /// Queue pairs opened.
    pub fn pairs(&self) -> u16 {
        self.pairs
    }

    /// The device configuration read at open.
    pub fn net_config(&self) -> &fw::NetConfig {
        &self.net
    }

    /// The MAC address the device reported.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The negotiated features.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// Whether the link is up (`VIRTIO_NET_S_LINK_UP`; up without `VIRTIO_NET_F_STATUS`).
    pub fn link_up(&self) -> bool {
        match &self.device {
            Some(d) => fw::read_net_config(&self.common, d, self.features & VIRTIO_NET_F_STATUS)
                .map(|c| c.link_up())
                .unwrap_or(false),
            None => true,
        }
    }

    /// Resets the device: it stops using the rings at once (QEMU's reset is synchronous).
    pub fn stop(&self) {
        if self.stopped.replace(true) {
            return;
        }
        if let Err(e) = fw::reset(&self.common, &mut StdDelay) {
            log::warn!("virtio reset on close: {e}");
        }
    }
}

impl<R: RxDescOps, T: TxDescOps> Drop for VirtioNet<R, T> {
    /// However the function goes (a port dropped, or a port's open failing after this
    /// opened), the device is reset before its rings and buffers go: the fields drop after
    /// this body.
    fn drop(&mut self) {
        self.stop();
    }
}

/// The BARs mapped for one device, each once.
#[derive(Default)]
struct MappedBars(Vec<(u8, Arc<Bar>)>);

impl MappedBars {
    fn bar(&mut self, dev: &VfioDevice, index: u8) -> Result<Arc<Bar>, Error> {
        if let Some((_, b)) = self.0.iter().find(|(i, _)| *i == index) {
            return Ok(b.clone());
        }
        let b = Arc::new(dev.map_bar(u32::from(index))?);
        self.0.push((index, b.clone()));
        Ok(b)
    }

    /// The structure `r` names, as a window into its BAR.
    fn window(&mut self, dev: &VfioDevice, r: &VirtioRegion) -> Result<BarWindow, Error> {
        let bar = self.bar(dev, r.bar)?;
        BarWindow::new(bar.clone(), r.offset, r.length).ok_or_else(|| {
            Error::Vfio(VfioError::Bar {
                addr: dev.addr(),
                bar: u32::from(r.bar),
                why: format!(
                    "{:#x} bytes, too small for the virtio structure at {:#x}..{:#x} that the \
                     capability at {:#04x} names: the device's capability list is wrong",
                    bar.len(),
                    r.offset,
                    r.end(),
                    r.cap_offset
                ),
            })
        })
    }
}
