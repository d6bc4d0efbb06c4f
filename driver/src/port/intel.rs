//! What opening an 82574 (`Port::open_e1000e`) and an 82576 (`Port::open_igb`) share: the
//! queue-pair check, the RSS configuration the port runs, the rings of every queue pair in
//! one DMA region, the port's mempool and the link message. The devices' own sequences
//! (firmware-iface) stay apart.

use std::sync::Arc;
use std::time::Duration;

use tenge_firmware_iface::e1000e::LinkStatus;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::{fmt_mac, PortConfig};
use crate::error::Error;
use crate::packet::mempool::{Mempool, MempoolConfig};
use crate::packet::rss::{RssConfig, RssHashTypes};
use crate::platform::dma::{DescRing, DmaMapper, DmaRegion};
use crate::platform::pci::PciAddress;

/// Refuses more queue pairs than `nic` (e.g. "the 82574") has: `max` each way.
pub(super) fn check_queues(cfg: &PortConfig, nic: &str, max: u32) -> Result<(), Error> {
    if u32::from(cfg.queues) > max {
        return Err(Error::Config(format!(
            "queues = {}: {nic} has {max} receive and {max} transmit queues; use 1 to {max}",
            cfg.queues
        )));
    }
    Ok(())
}

/// The RSS configuration the port runs: `cfg.rss`, or on several queue pairs the default
/// over a table of `reta` entries, or none; refused with `problem`'s reason (what the
/// device cannot take).
pub(super) fn rss_config(
    cfg: &PortConfig,
    addr: PciAddress,
    reta: usize,
    problem: impl Fn(&RssConfig, u16) -> Option<String>,
) -> Result<Option<RssConfig>, Error> {
    let rss = match &cfg.rss {
        Some(r) => Some(r.clone()),
        None => (cfg.queues > 1).then(|| RssConfig::new(cfg.queues, reta)),
    };
    match rss.as_ref().and_then(|r| problem(r, cfg.queues)) {
        Some(reason) => Err(Error::Rss { addr, reason }),
        None => Ok(rss),
    }
}

/// The RX and TX descriptor rings of every queue pair `cfg` asks for, in one DMA region: RX
/// rings first, each ring `align`-byte aligned (a multiple of 16).
pub(super) type Rings<RD, TD> = (Vec<DescRing<RD>>, Vec<DescRing<TD>>);

/// See [`Rings`].
pub(super) fn rings<RD, TD>(
    mapper: &Arc<dyn DmaMapper>,
    cfg: &PortConfig,
    align: usize,
) -> Result<Rings<RD, TD>, Error>
where
    RD: FromBytes + IntoBytes + Immutable,
    TD: FromBytes + IntoBytes + Immutable,
{
    let queues = usize::from(cfg.queues);
    let rx_stride = (cfg.rx_ring as usize * size_of::<RD>()).div_ceil(align) * align;
    let tx_stride = (cfg.tx_ring as usize * size_of::<TD>()).div_ceil(align) * align;
    let tx_base = queues * rx_stride;
    let region = Arc::new(DmaRegion::allocate(
        mapper.clone(),
        tx_base + queues * tx_stride,
        cfg.hugepages,
    )?);
    let rx = (0..queues)
        .map(|q| DescRing::new(region.clone(), q * rx_stride, cfg.rx_ring))
        .collect();
    let tx = (0..queues)
        .map(|q| DescRing::new(region.clone(), tx_base + q * tx_stride, cfg.tx_ring))
        .collect();
    Ok((rx, tx))
}

/// The port's mempool: `cfg`'s buffers, data room and hugepage policy.
pub(super) fn pool(mapper: &Arc<dyn DmaMapper>, cfg: &PortConfig) -> Result<Mempool, Error> {
    Mempool::new(
        mapper.clone(),
        &MempoolConfig {
            buffers: cfg.mempool_buffers,
            data_room: cfg.buf_size,
            hugepages: cfg.hugepages,
            ..MempoolConfig::default()
        },
    )
}

/// Says how the link came out of the set-up (`model`: "e1000e", "igb"), a warning if it
/// is still down after `timeout`.
pub(super) fn log_link(
    addr: PciAddress,
    model: &str,
    mac: &[u8; 6],
    link: &LinkStatus,
    timeout: Duration,
) {
    if link.up {
        log::info!("{addr}: {model} {} link {link}", fmt_mac(mac));
    } else {
        log::warn!("{addr}: link still down after {timeout:?}");
    }
}

/// `rss` (checked against the device) as the key, redirection table and MRQC hash-field
/// bits both devices' `RssSetup` hold: `fields` maps each hash type to its MRQC bits.
pub(super) fn rss_registers<const KEY: usize, const RETA: usize>(
    rss: &RssConfig,
    fields: &[(RssHashTypes, u32)],
) -> ([u8; KEY], [u8; RETA], u32) {
    let mut key = [0u8; KEY];
    key.copy_from_slice(&rss.key);
    let mut queues = [0u8; RETA];
    for (q, &t) in queues.iter_mut().zip(&rss.table) {
        *q = t as u8;
    }
    let bits = fields
        .iter()
        .filter(|(t, _)| rss.types.contains(*t))
        .fold(0, |acc, (_, f)| acc | f);
    (key, queues, bits)
}

/// An Intel port's interrupts as `cfg` asks: none, or MSI-X with RX queue q on vector q
/// and the link (the "other" causes) on the next, the causes routed by the device's own
/// `configure_msix` (e1000e IVAR; igb IVAR, IVAR_MISC and GPIE), each queue's interrupt
/// armed through the registers `device` names.
pub(super) fn msix_irqs(
    dev: &crate::platform::vfio::VfioDevice,
    regs: &Arc<crate::platform::mmio::Bar>,
    cfg: &PortConfig,
    configure_msix: fn(&crate::platform::mmio::Bar, u32),
    device: fn(Arc<crate::platform::mmio::Bar>, u32) -> super::irq::IrqDevice,
) -> Result<super::irq::PortIrqs, Error> {
    use super::irq::{PortIrqs, QueueIrq};
    let addr = dev.addr();
    let queues = usize::from(cfg.queues);
    let mut irqs = PortIrqs::polled(addr, queues)?;
    if !cfg.interrupts {
        return Ok(irqs);
    }
    let v = dev.enable_irqs(u32::from(cfg.queues) + 1)?;
    if v.mode != crate::platform::vfio::IrqMode::Msix {
        return Ok(irqs);
    }
    configure_msix(regs, u32::from(cfg.queues));
    for (q, irq) in irqs.queues.iter_mut().enumerate() {
        *irq = QueueIrq {
            fd: v.fds[q].clone(),
            device: device(regs.clone(), q as u32),
        };
    }
    irqs.link.fd = v.fds[queues].clone();
    irqs.link.live = true;
    log::info!("{addr}: MSI-X: RX queue(s) on vector(s) 0..{queues}, link on vector {queues}");
    Ok(irqs)
}
