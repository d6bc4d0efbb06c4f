//! Opening an 82576 (QEMU `igb`) port: its rings, queues, RSS and receive filter, on the
//! same engine and API as the other devices.

use std::sync::Arc;

use tenge_descriptors::igb::{AdvRxDescRead, AdvTxDataDesc};
use tenge_firmware_iface::igb::{self as ifw, IgbError};
use tenge_firmware_iface::StdDelay;

use super::queue::{RxRing, TxRing};
use super::{intel, Control, Port, PortConfig};
use crate::error::Error;
use crate::igb::{IgbRx, IgbTx, MAX_FRAME};
use crate::packet::rss::{RssConfig, RssHashTypes};
use crate::platform::dma::DmaMapper;
use crate::platform::pci::PciAddress;
use crate::platform::vfio::VfioDevice;
use crate::ring::{RxQueue, TxQueue};

pub(super) fn igb_err(addr: PciAddress) -> impl Fn(IgbError) -> Error {
    move |source| Error::Igb { addr, source }
}

/// The hash types the 82576 takes (82576 §7.1.2.8; QEMU `igb_rss_get_hash_type`): every
/// one tenge names, UDP included.
pub(super) const IGB_RSS_TYPES: RssHashTypes = RssHashTypes::from_bits_truncate(
    RssHashTypes::IPV4.bits()
        | RssHashTypes::TCP_IPV4.bits()
        | RssHashTypes::UDP_IPV4.bits()
        | RssHashTypes::IPV6.bits()
        | RssHashTypes::TCP_IPV6.bits()
        | RssHashTypes::UDP_IPV6.bits()
        | RssHashTypes::IPV6_EX.bits()
        | RssHashTypes::TCP_IPV6_EX.bits()
        | RssHashTypes::UDP_IPV6_EX.bits(),
);

/// What the 82576 cannot take in `rss` on a port of `queues` queue pairs.
pub(super) fn igb_rss_problem(rss: &RssConfig, queues: u16) -> Option<String> {
    rss.problem(
        "the 82576",
        queues,
        ifw::regs::RSS_KEY_LEN,
        ifw::regs::RETA_ENTRIES,
        false,
        IGB_RSS_TYPES,
    )
}

/// `rss` (checked by [`igb_rss_problem`]) as the 82576's registers. QEMU's igb hashes a
/// TCP/IPv6 frame only with MRQC's "TCP/IPv6 with extensions" bit (and reports the -ex
/// type), so TCP/IPv6 sets both bits.
pub(super) fn igb_rss_setup(rss: &RssConfig) -> ifw::RssSetup {
    use ifw::regs::*;
    let (key, queues, fields) = intel::rss_registers(
        rss,
        &[
            (RssHashTypes::IPV4, MRQC_IPV4),
            (RssHashTypes::TCP_IPV4, MRQC_TCPIPV4),
            (RssHashTypes::UDP_IPV4, MRQC_UDPIPV4),
            (RssHashTypes::IPV6, MRQC_IPV6),
            (RssHashTypes::TCP_IPV6, MRQC_TCPIPV6 | MRQC_TCPIPV6EX),
            (RssHashTypes::UDP_IPV6, MRQC_UDPIPV6),
            (RssHashTypes::IPV6_EX, MRQC_IPV6EX),
            (RssHashTypes::TCP_IPV6_EX, MRQC_TCPIPV6EX),
            (RssHashTypes::UDP_IPV6_EX, MRQC_UDPIPV6EX),
        ],
    );
    ifw::RssSetup {
        key,
        queues,
        fields,
    }
}

impl Port {
    /// Opens an 82576: reset, MAC, rings for `cfg.queues` queue pairs (each enabled and
    /// waited for), RSS over them, the receive filter, link.
    pub(super) fn open_igb(dev: VfioDevice, cfg: &PortConfig) -> Result<Port, Error> {
        let addr = dev.addr();
        intel::check_queues(cfg, "the 82576", ifw::regs::QUEUES)?;
        let rss = intel::rss_config(cfg, addr, ifw::regs::RETA_ENTRIES, igb_rss_problem)?;
        let regs = Arc::new(dev.map_bar(0)?);
        dev.enable_bus_master()?;
        let mut delay = StdDelay;
        ifw::reset(&*regs, &mut delay).map_err(igb_err(addr))?;
        let mac = ifw::read_mac(&*regs, &mut delay)
            .map_err(IgbError::from)
            .map_err(igb_err(addr))?;

        let mapper: Arc<dyn DmaMapper> = dev.container().clone();
        // Each ring 128-byte aligned (82576 §8.10.5: RDBAL/TDBAL bits 6:0 are ignored).
        let (rx_rings, tx_rings) =
            intel::rings::<AdvRxDescRead, AdvTxDataDesc>(&mapper, cfg, ifw::RING_ALIGN as usize)?;
        let pool = intel::pool(&mapper, cfg)?;
        // SRRCTL counts buffers in KiB: tell the device the whole KiB the buffer holds.
        let buf_size = pool.data_room() / 1024 * 1024;
        if buf_size == 0 {
            return Err(Error::Config(format!(
                "buf_size = {}: the 82576 takes receive buffers in whole KiB (SRRCTL.BSIZEPACKET); \
                 use at least 1024",
                pool.data_room()
            )));
        }
        // TX checksums and TSO are per packet (context descriptors, igb::offload), whatever
        // tx_checksum and tso say; LRO is tenge's, in software (Port::assemble).

        let rx = ifw::RxConfig {
            // Applied after the filter, as Port::set_promiscuous does.
            promisc: false,
            checksum: cfg.rx_checksum,
            long_frames: 0,
        };
        ifw::configure_rx(&*regs, &rx);
        for (q, (rxr, txr)) in rx_rings.iter().zip(&tx_rings).enumerate() {
            let q = q as u32;
            ifw::configure_rx_queue(
                &*regs,
                &mut delay,
                q,
                &ifw::RxQueueConfig {
                    ring_iova: rxr.iova(),
                    ring_descs: cfg.rx_ring,
                    buf_size,
                },
            )
            .map_err(igb_err(addr))?;
            ifw::configure_tx_queue(
                &*regs,
                &mut delay,
                q,
                &ifw::TxQueueConfig {
                    ring_iova: txr.iova(),
                    ring_descs: cfg.tx_ring,
                },
            )
            .map_err(igb_err(addr))?;
        }
        ifw::enable_tx(&*regs);
        if let Some(r) = &rss {
            ifw::configure_rss(&*regs, &igb_rss_setup(r));
            log::info!(
                "{addr}: RSS over {} queues, hashing {}",
                cfg.queues,
                r.types
            );
        }
        // No extra unicast addresses: entries 1-15 cleared.
        ifw::set_unicast_filter(&*regs, &[])
            .map_err(IgbError::from)
            .map_err(igb_err(addr))?;
        // Stripping by CTRL.VME (QEMU's igb without VMDq, `igb_rx_strip_vlan`; it needs no
        // RCTL or VMOLR bit then); TX insertion needs none (`igb_tx_insert_vlan`).
        ifw::set_vlan_strip(&*regs, cfg.vlan_strip);
        ifw::enable_rx(&*regs, &rx);
        ifw::set_promisc(&*regs, cfg.promisc);
        let pairs = rx_rings
            .into_iter()
            .zip(tx_rings)
            .enumerate()
            .map(|(q, (rx_ring, tx_ring))| {
                let q32 = q as u32;
                let txq = TxQueue::new(
                    IgbTx::for_queue(tx_ring, regs.clone(), q32),
                    cfg.tx_rs_interval,
                    MAX_FRAME,
                );
                let rxq = RxQueue::new(
                    IgbRx::for_queue(rx_ring, regs.clone(), q32, rss.is_some()),
                    cfg.rx_free_thresh,
                );
                (RxRing::Igb(rxq), TxRing::Igb(txq))
            })
            .collect();

        let timeout_us = cfg.link_timeout.as_micros().min(u32::MAX as u128) as u32;
        let link = ifw::setup_link(&*regs, &mut delay, timeout_us).map_err(igb_err(addr))?;
        intel::log_link(addr, "igb", &mac, &link, cfg.link_timeout);
        // RX queue q on vector q, link changes on the next (igb::irq).
        let irqs = intel::msix_irqs(&dev, &regs, cfg, ifw::irq::configure_msix, |regs, queue| {
            super::irq::IrqDevice::Igb { regs, queue }
        })?;
        Ok(Self::assemble(
            dev,
            Control::Igb {
                regs,
                hw: ifw::HwStats::default(),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use ifw::regs::*;

    #[test]
    fn rss_takes_udp_and_up_to_16_queues() {
        let mut all = RssConfig::new(16, 128);
        all.types = IGB_RSS_TYPES;
        assert_eq!(igb_rss_problem(&all, 16), None);
        let e = igb_rss_problem(&RssConfig::new(4, 64), 4).unwrap();
        assert!(e.contains("exactly 128"), "{e}");
        let setup = igb_rss_setup(&all);
        assert_eq!(
            setup.fields,
            MRQC_IPV4
                | MRQC_TCPIPV4
                | MRQC_UDPIPV4
                | MRQC_IPV6
                | MRQC_TCPIPV6
                | MRQC_TCPIPV6EX
                | MRQC_UDPIPV6
                | MRQC_IPV6EX
                | MRQC_UDPIPV6EX
        );
        // Round-robin over 16 queues: entry n names queue n % 16.
        assert!(setup
            .queues
            .iter()
            .enumerate()
            .all(|(i, &q)| q == (i % 16) as u8));
    }
}
