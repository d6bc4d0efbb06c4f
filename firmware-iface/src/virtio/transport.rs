//! Reset, status handshake, feature negotiation and queue registration through the common
//! configuration structure (virtio 1.2 §3.1.1, §4.1.4.3, §4.1.5).
//!
//! `common` is a [`NarrowMmio`] whose offset 0 is the start of the common configuration
//! structure (`BAR[caps.common.bar] + caps.common.offset`). Every field is accessed at its
//! natural width (§4.1.3.1).

use super::caps::NotifyRegion;
use super::features::{negotiate, FeatureNames};
use super::regs::*;
use super::{write64, VirtioError};
use crate::mmio::{Delay, NarrowMmio};

/// Poll interval while waiting for the reset to complete.
pub const RESET_POLL_US: u32 = 100;
/// How long to wait for `device_status` to read 0 after a reset. QEMU resets inside the
/// register write (`virtio_pci_common_write` → `virtio_pci_reset`), so the first read
/// already shows 0; hardware and vDPA devices may take longer.
pub const RESET_TIMEOUT_US: u32 = 1_000_000;

/// Reads `device_status`.
pub fn device_status(common: &impl NarrowMmio) -> u8 {
    common.read8(DEVICE_STATUS)
}

/// Resets the device: writes 0 to `device_status` and waits until it reads 0 (virtio 1.2
/// §4.1.4.3.1: "After writing 0 to device_status, the driver MUST wait for a read of
/// device_status to return 0 before reinitializing the device"). Afterwards every queue is
/// disabled, the features are cleared and the device does no DMA.
///
/// # Errors
/// [`VirtioError::ResetTimeout`] if the status is not 0 within [`RESET_TIMEOUT_US`].
pub fn reset(common: &impl NarrowMmio, delay: &mut impl Delay) -> Result<(), VirtioError> {
    common.write8(DEVICE_STATUS, 0);
    let mut waited = 0u32;
    loop {
        let status = common.read8(DEVICE_STATUS);
        if status == 0 {
            return Ok(());
        }
        if waited >= RESET_TIMEOUT_US {
            return Err(VirtioError::ResetTimeout {
                status,
                waited_us: waited,
            });
        }
        delay.delay_us(RESET_POLL_US);
        waited += RESET_POLL_US;
    }
}

/// Reads the 64 device feature bits (two 32-bit words through `device_feature_select`).
pub fn read_device_features(common: &impl NarrowMmio) -> u64 {
    common.write32(DEVICE_FEATURE_SELECT, 0);
    let low = common.read32(DEVICE_FEATURE);
    common.write32(DEVICE_FEATURE_SELECT, 1);
    let high = common.read32(DEVICE_FEATURE);
    u64::from(low) | u64::from(high) << 32
}

fn write_driver_features(common: &impl NarrowMmio, features: u64) {
    common.write32(DRIVER_FEATURE_SELECT, 0);
    common.write32(DRIVER_FEATURE, features as u32);
    common.write32(DRIVER_FEATURE_SELECT, 1);
    common.write32(DRIVER_FEATURE, (features >> 32) as u32);
}

/// Steps 2-6 of the initialization (virtio 1.2 §3.1.1) on a freshly [`reset`] device:
/// ACKNOWLEDGE, DRIVER, read the offered features, [`negotiate`] with `wanted`, write the
/// accepted ones, set FEATURES_OK and read it back. Returns the accepted features.
///
/// The caller then reads the device configuration, sets up the queues ([`setup_queue`])
/// and finishes with [`driver_ok`].
///
/// # Errors
/// The errors of [`negotiate`] and [`VirtioError::FeaturesRejected`]; on every error the
/// FAILED status bit is set (§3.1.1: "If any of these steps go irrecoverably wrong, the
/// driver SHOULD set the FAILED status bit").
pub fn start_negotiation(common: &impl NarrowMmio, wanted: u64) -> Result<u64, VirtioError> {
    common.write8(DEVICE_STATUS, STATUS_ACKNOWLEDGE);
    common.write8(DEVICE_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    let offered = read_device_features(common);
    let accepted = match negotiate(offered, wanted) {
        Ok(accepted) => accepted,
        Err(e) => {
            fail(common);
            return Err(e);
        }
    };
    write_driver_features(common, accepted);
    let status = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
    common.write8(DEVICE_STATUS, status);
    // §3.1.1 step 6: "Re-read device status to ensure the FEATURES_OK bit is still set:
    // otherwise, the device does not support our subset of features".
    let status = common.read8(DEVICE_STATUS);
    if status & STATUS_FEATURES_OK == 0 {
        fail(common);
        return Err(VirtioError::FeaturesRejected { accepted, status });
    }
    // No interrupts for configuration changes: tenge polls (QEMU starts with no vector,
    // this makes it explicit for other devices).
    common.write16(CONFIG_MSIX_VECTOR, VIRTIO_MSI_NO_VECTOR);
    log::debug!("virtio: FEATURES_OK with {}", FeatureNames(accepted));
    Ok(accepted)
}

/// Sets DRIVER_OK: the device is live (§3.1.1 step 8). Then reads the status back.
///
/// # Errors
/// [`VirtioError::NeedsReset`] if the device reports DEVICE_NEEDS_RESET (for example
/// QEMU after a bad queue register write).
pub fn driver_ok(common: &impl NarrowMmio) -> Result<(), VirtioError> {
    let status = common.read8(DEVICE_STATUS);
    common.write8(DEVICE_STATUS, status | STATUS_DRIVER_OK);
    let status = common.read8(DEVICE_STATUS);
    if status & STATUS_DEVICE_NEEDS_RESET != 0 {
        return Err(VirtioError::NeedsReset { status });
    }
    Ok(())
}

/// Sets the FAILED status bit: the driver gave up on the device (§2.1).
pub fn fail(common: &impl NarrowMmio) {
    let status = common.read8(DEVICE_STATUS);
    common.write8(DEVICE_STATUS, status | STATUS_FAILED);
}

/// Virtqueue format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueLayout {
    /// Split virtqueue (§2.7): descriptor table, avail ring, used ring.
    Split,
    /// Packed virtqueue (§2.8, needs `VIRTIO_F_RING_PACKED`): descriptor ring, driver and
    /// device event suppression.
    Packed,
}

impl QueueLayout {
    /// Required alignment of the (descriptor, driver, device) areas: split 16/2/4
    /// (§2.7), packed 16/4/4 (§2.8.10.1).
    pub const fn alignments(self) -> (u64, u64, u64) {
        match self {
            QueueLayout::Split => (16, 2, 4),
            QueueLayout::Packed => (16, 4, 4),
        }
    }
}

/// What to register for one virtqueue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// Number of descriptors: a power of two no larger than the device's maximum
    /// ([`queue_max_size`]). tenge's ring engine masks indices, so packed queues are
    /// powers of two too.
    pub size: u16,
    /// Split or packed.
    pub layout: QueueLayout,
    /// IOVA of the descriptor area.
    pub desc: u64,
    /// IOVA of the driver area.
    pub driver: u64,
    /// IOVA of the device area.
    pub device: u64,
}

/// A registered and enabled virtqueue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueSetup {
    /// Queue index.
    pub index: u16,
    /// The size registered.
    pub size: u16,
    /// The device's maximum for this queue.
    pub max_size: u16,
    /// `queue_notify_off`: pass to [`notify_offset`].
    pub notify_off: u16,
}

/// Selects queue `index` and reads its maximum size (`queue_size` before the driver writes
/// it; 0 means the queue does not exist). Use it to size the ring allocations before
/// [`setup_queue`].
///
/// # Errors
/// [`VirtioError::QueueUnavailable`] if the size reads 0.
pub fn queue_max_size(common: &impl NarrowMmio, index: u16) -> Result<u16, VirtioError> {
    common.write16(QUEUE_SELECT, index);
    let max = common.read16(QUEUE_SIZE);
    if max == 0 {
        return Err(VirtioError::QueueUnavailable {
            index,
            num_queues: common.read16(NUM_QUEUES),
        });
    }
    Ok(max)
}

/// Registers and enables virtqueue `index` (virtio 1.2 §4.1.5.1.3): select it, read its
/// maximum size, write the size, no MSI-X vector and the three area IOVAs, read
/// `queue_notify_off`, then write 1 to `queue_enable` and check it reads 1.
///
/// Must run after [`start_negotiation`] and before [`driver_ok`]. The ring memory must be
/// zeroed (split: avail and used `idx` 0; packed: no AVAIL/USED bits, wrap counters 1).
///
/// # Errors
/// [`VirtioError::QueueUnavailable`], [`VirtioError::InvalidQueueSize`],
/// [`VirtioError::MisalignedRing`] (checked before anything is written to the queue),
/// [`VirtioError::QueueNotEnabled`].
pub fn setup_queue(
    common: &impl NarrowMmio,
    index: u16,
    config: &QueueConfig,
) -> Result<QueueSetup, VirtioError> {
    let (desc_align, driver_align, device_align) = config.layout.alignments();
    for (area, iova, align) in [
        ("descriptor", config.desc, desc_align),
        ("driver", config.driver, driver_align),
        ("device", config.device, device_align),
    ] {
        if iova % align != 0 {
            return Err(VirtioError::MisalignedRing {
                index,
                area,
                iova,
                align,
            });
        }
    }
    let max_size = queue_max_size(common, index)?;
    let size = config.size;
    if size == 0 || !size.is_power_of_two() || size > max_size {
        return Err(VirtioError::InvalidQueueSize {
            index,
            requested: size,
            max: max_size,
        });
    }
    common.write16(QUEUE_SIZE, size);
    common.write16(QUEUE_MSIX_VECTOR, VIRTIO_MSI_NO_VECTOR);
    write64(common, QUEUE_DESC, config.desc);
    write64(common, QUEUE_DRIVER, config.driver);
    write64(common, QUEUE_DEVICE, config.device);
    let notify_off = common.read16(QUEUE_NOTIFY_OFF);
    // §4.1.4.3.2: "The driver MUST configure the other virtqueue fields before enabling
    // the virtqueue with queue_enable"; QEMU takes the size and addresses at this write.
    common.write16(QUEUE_ENABLE, 1);
    let value = common.read16(QUEUE_ENABLE);
    if value != 1 {
        return Err(VirtioError::QueueNotEnabled { index, value });
    }
    log::debug!(
        "virtio: queue {index} enabled, {size} of {max_size} descriptors ({:?}), \
         notify_off {notify_off}",
        config.layout
    );
    Ok(QueueSetup {
        index,
        size,
        max_size,
        notify_off,
    })
}

/// Routes configuration-change interrupts to MSI-X vector `vector` (virtio 1.2 §4.1.4.3,
/// `config_msix_vector`; `VIRTIO_MSI_NO_VECTOR` for none) and checks the device took it.
///
/// # Errors
/// [`VirtioError::VectorRefused`] if it reads back otherwise (§4.1.5.1.2: a device that
/// cannot take a vector answers `VIRTIO_MSI_NO_VECTOR`).
pub fn set_config_vector(common: &impl NarrowMmio, vector: u16) -> Result<(), VirtioError> {
    common.write16(CONFIG_MSIX_VECTOR, vector);
    let read_back = common.read16(CONFIG_MSIX_VECTOR);
    if read_back != vector {
        return Err(VirtioError::VectorRefused {
            what: "configuration changes".into(),
            vector,
            read_back,
        });
    }
    Ok(())
}

/// Routes virtqueue `index`'s interrupts to MSI-X vector `vector` (§4.1.4.3,
/// `queue_msix_vector`) and checks the device took it, as [`set_config_vector`].
///
/// # Errors
/// [`VirtioError::VectorRefused`].
pub fn set_queue_vector(
    common: &impl NarrowMmio,
    index: u16,
    vector: u16,
) -> Result<(), VirtioError> {
    common.write16(QUEUE_SELECT, index);
    common.write16(QUEUE_MSIX_VECTOR, vector);
    let read_back = common.read16(QUEUE_MSIX_VECTOR);
    if read_back != vector {
        return Err(VirtioError::VectorRefused {
            what: format!("queue {index}"),
            vector,
            read_back,
        });
    }
    Ok(())
}

/// Offset within the notify structure's BAR of the doorbell of a queue whose
/// `queue_notify_off` is `queue_notify_off` (virtio 1.2 §4.1.4.4: `cap.offset +
/// queue_notify_off * notify_off_multiplier`). The driver notifies by writing the queue
/// index there as a 16-bit value.
///
/// # Errors
/// [`VirtioError::NotifyOutOfRange`] if the 2-byte doorbell would not lie inside the
/// notify structure (a device bug or a misparsed capability).
pub fn notify_offset(notify: &NotifyRegion, queue_notify_off: u16) -> Result<u32, VirtioError> {
    let offset = u64::from(queue_notify_off) * u64::from(notify.notify_off_multiplier);
    let length = notify.region.length;
    if offset + 2 > u64::from(length) {
        return Err(VirtioError::NotifyOutOfRange {
            queue_notify_off,
            multiplier: notify.notify_off_multiplier,
            offset,
            length,
        });
    }
    u32::try_from(u64::from(notify.region.offset) + offset).map_err(|_| {
        VirtioError::NotifyOutOfRange {
            queue_notify_off,
            multiplier: notify.notify_off_multiplier,
            offset,
            length,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::{Access, RecordedRegs};
    use crate::virtio::caps::parse_virtio_caps;
    use crate::virtio::features::*;
    use crate::virtio::model::{qemu_virtio_net_config_space, QemuVirtioNet};
    use crate::virtio::net::read_net_config;
    use proptest::prelude::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x7e, 0x00, 0x01];

    fn qemu() -> QemuVirtioNet {
        QemuVirtioNet::new(MAC, QemuVirtioNet::HUB_FEATURES)
    }

    /// The values written to `offset`, with the width of each write.
    fn sized_writes(r: &RecordedRegs, offset: u32) -> Vec<(u32, u8)> {
        r.log_with_widths()
            .into_iter()
            .filter_map(|(a, w)| match a {
                Access::Write(off, v) if off == offset => Some((v, w)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn reset_writes_zero_and_reads_until_zero() {
        let dev = qemu();
        dev.model().status = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK;
        dev.model().queues[0].enabled = true;
        let mut delay = dev.common.delay();
        reset(&dev.common, &mut delay).unwrap();
        // One 8-bit write of 0 and one 8-bit read that already sees 0 (QEMU resets inside
        // the write), no waiting.
        assert_eq!(
            dev.common.log_with_widths(),
            vec![
                (Access::Write(DEVICE_STATUS, 0), 1),
                (Access::Read(DEVICE_STATUS, 0), 1)
            ]
        );
        assert_eq!(dev.common.elapsed_us(), 0);
        assert!(!dev.model().queues[0].enabled);
    }

    #[test]
    fn reset_waits_for_a_slow_device_and_times_out_on_a_stuck_one() {
        // Status clears after three reads.
        let r = RecordedRegs::new().with(DEVICE_STATUS, 0x0f);
        let mut reads = 0;
        r.on_read(DEVICE_STATUS, move |file, off| {
            reads += 1;
            if reads > 3 {
                0
            } else {
                file.get(off) | 0x0f
            }
        });
        reset(&r, &mut r.delay()).unwrap();
        assert_eq!(r.reads_of(DEVICE_STATUS), 4);
        assert_eq!(r.elapsed_us(), u64::from(3 * RESET_POLL_US));

        let r = RecordedRegs::new();
        r.on_read(DEVICE_STATUS, |_, _| u32::from(STATUS_DEVICE_NEEDS_RESET));
        let err = reset(&r, &mut r.delay()).unwrap_err();
        assert_eq!(
            err,
            VirtioError::ResetTimeout {
                status: STATUS_DEVICE_NEEDS_RESET,
                waited_us: RESET_TIMEOUT_US
            }
        );
        assert_eq!(
            r.reads_of(DEVICE_STATUS),
            (RESET_TIMEOUT_US / RESET_POLL_US) as usize + 1
        );
        assert!(err.to_string().contains("function-level reset"));
    }

    #[test]
    fn handshake_against_qemu() {
        let dev = qemu();
        reset(&dev.common, &mut dev.common.delay()).unwrap();
        dev.common.clear_log();
        let accepted = start_negotiation(&dev.common, NET_DRIVER_FEATURES).unwrap();
        assert_eq!(
            accepted,
            VIRTIO_F_VERSION_1
                | VIRTIO_F_ACCESS_PLATFORM
                | VIRTIO_F_EVENT_IDX
                | VIRTIO_NET_F_MAC
                | VIRTIO_NET_F_MRG_RXBUF
                | VIRTIO_NET_F_STATUS
                | VIRTIO_NET_F_CTRL_VQ
                | VIRTIO_NET_F_CTRL_RX
        );
        // The device took exactly these features and kept FEATURES_OK.
        assert_eq!(dev.model().accepted(), accepted);
        assert_eq!(
            dev.model().status,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK
        );
        // Status steps ACKNOWLEDGE, +DRIVER, +FEATURES_OK, each an 8-bit write (§3.1.1).
        assert_eq!(
            sized_writes(&dev.common, DEVICE_STATUS),
            vec![(1, 1), (3, 1), (0xb, 1)]
        );
        // Feature words through their selectors, 32-bit, low word first.
        assert_eq!(
            sized_writes(&dev.common, DEVICE_FEATURE_SELECT),
            vec![(0, 4), (1, 4)]
        );
        assert_eq!(
            sized_writes(&dev.common, DRIVER_FEATURE),
            vec![(accepted as u32, 4), ((accepted >> 32) as u32, 4)]
        );
        // Features written before FEATURES_OK, which is read back.
        let log = dev.common.log();
        let features_ok = log
            .iter()
            .position(|a| *a == Access::Write(DEVICE_STATUS, 0xb))
            .unwrap();
        assert!(dev.common.last_write_index(DRIVER_FEATURE).unwrap() < features_ok);
        assert_eq!(log[features_ok + 1], Access::Read(DEVICE_STATUS, 0xb));
        assert_eq!(
            dev.common.last_write(CONFIG_MSIX_VECTOR),
            Some(u32::from(VIRTIO_MSI_NO_VECTOR))
        );
    }

    #[test]
    fn tap_backend_negotiates_offloads() {
        let dev = QemuVirtioNet::new(MAC, QemuVirtioNet::TAP_FEATURES);
        reset(&dev.common, &mut dev.common.delay()).unwrap();
        let accepted = start_negotiation(&dev.common, NET_DRIVER_FEATURES).unwrap();
        for f in [
            VIRTIO_NET_F_CSUM,
            VIRTIO_NET_F_GUEST_CSUM,
            VIRTIO_NET_F_HOST_TSO4,
            VIRTIO_NET_F_HOST_TSO6,
            VIRTIO_NET_F_GUEST_TSO4,
            VIRTIO_NET_F_GUEST_TSO6,
        ] {
            assert_ne!(accepted & f, 0, "{}", FeatureNames(f));
        }
    }

    #[test]
    fn device_without_access_platform_is_refused_and_failed() {
        let dev = QemuVirtioNet::new(MAC, QemuVirtioNet::HUB_FEATURES & !VIRTIO_F_ACCESS_PLATFORM);
        reset(&dev.common, &mut dev.common.delay()).unwrap();
        let err = start_negotiation(&dev.common, NET_DRIVER_FEATURES).unwrap_err();
        assert!(matches!(err, VirtioError::NoAccessPlatform { .. }));
        assert!(err.to_string().contains("iommu_platform=on"));
        // Nothing accepted, FAILED set on top of ACKNOWLEDGE|DRIVER.
        assert!(dev.common.writes_to(DRIVER_FEATURE).is_empty());
        assert_eq!(
            dev.model().status,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FAILED
        );
    }

    #[test]
    fn legacy_device_is_refused() {
        let dev = QemuVirtioNet::new(MAC, QemuVirtioNet::HUB_FEATURES & !VIRTIO_F_VERSION_1);
        reset(&dev.common, &mut dev.common.delay()).unwrap();
        let err = start_negotiation(&dev.common, NET_DRIVER_FEATURES).unwrap_err();
        assert!(matches!(err, VirtioError::NotModern { .. }));
        assert_ne!(dev.model().status & STATUS_FAILED, 0);
    }

    #[test]
    fn qemu_refuses_features_ok_without_access_platform() {
        // What the model does when a driver drops ACCESS_PLATFORM (QEMU
        // virtio_validate_features): FEATURES_OK does not stick.
        let dev = qemu();
        dev.common
            .write8(DEVICE_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        write_driver_features(&dev.common, VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC);
        dev.common.write8(
            DEVICE_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        );
        assert_eq!(
            dev.common.read8(DEVICE_STATUS),
            STATUS_ACKNOWLEDGE | STATUS_DRIVER
        );
    }

    #[test]
    fn features_ok_cleared_by_the_device_is_an_error() {
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::sync::Arc;

        // A device that never keeps FEATURES_OK: its status register drops the bit.
        let dev = qemu();
        let status = Arc::new(AtomicU32::new(0));
        let stored = Arc::clone(&status);
        dev.common.on_write(DEVICE_STATUS, move |_, _, v| {
            stored.store(v & !u32::from(STATUS_FEATURES_OK), Ordering::Relaxed)
        });
        dev.common
            .on_read(DEVICE_STATUS, move |_, _| status.load(Ordering::Relaxed));
        let err = start_negotiation(&dev.common, NET_DRIVER_FEATURES).unwrap_err();
        assert!(matches!(
            err,
            VirtioError::FeaturesRejected { status: 3, .. }
        ));
        assert_eq!(
            dev.common.last_write(DEVICE_STATUS),
            Some(u32::from(
                STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FAILED
            ))
        );
    }

    fn split(size: u16, base: u64) -> QueueConfig {
        QueueConfig {
            size,
            layout: QueueLayout::Split,
            desc: base,
            driver: base + 16 * u64::from(size),
            device: base + 0x1_0000,
        }
    }

    fn negotiated() -> QemuVirtioNet {
        let dev = qemu();
        reset(&dev.common, &mut dev.common.delay()).unwrap();
        start_negotiation(&dev.common, NET_DRIVER_FEATURES).unwrap();
        dev.common.clear_log();
        dev
    }

    #[test]
    fn queue_setup_against_qemu() {
        let dev = negotiated();
        assert_eq!(queue_max_size(&dev.common, 0), Ok(256));
        assert_eq!(queue_max_size(&dev.common, 2), Ok(64));
        dev.common.clear_log();
        let cfg = split(128, 0x1_2345_6000);
        let q = setup_queue(&dev.common, 0, &cfg).unwrap();
        assert_eq!(
            q,
            QueueSetup {
                index: 0,
                size: 128,
                max_size: 256,
                notify_off: 0
            }
        );
        let m = dev.model().queues[0];
        assert!(m.enabled);
        assert_eq!(m.size, 128);
        assert_eq!(m.desc_iova(), cfg.desc);
        assert_eq!(m.driver_iova(), cfg.driver);
        assert_eq!(m.device_iova(), cfg.device);
        assert_eq!(m.msix_vector, VIRTIO_MSI_NO_VECTOR);
        // Select first, enable last; 16-bit queue fields, 32-bit halves of the addresses.
        let log = dev.common.log_with_widths();
        assert_eq!(log[0], (Access::Write(QUEUE_SELECT, 0), 2));
        let writes: Vec<(u32, u8)> = log
            .iter()
            .filter(|(a, _)| a.is_write())
            .map(|(a, w)| (a.offset(), *w))
            .collect();
        assert_eq!(
            writes,
            vec![
                (QUEUE_SELECT, 2),
                (QUEUE_SIZE, 2),
                (QUEUE_MSIX_VECTOR, 2),
                (QUEUE_DESC, 4),
                (QUEUE_DESC + 4, 4),
                (QUEUE_DRIVER, 4),
                (QUEUE_DRIVER + 4, 4),
                (QUEUE_DEVICE, 4),
                (QUEUE_DEVICE + 4, 4),
                (QUEUE_ENABLE, 2),
            ]
        );
        // QEMU's notify offset is the queue index.
        let q2 = setup_queue(&dev.common, 2, &split(64, 0x20_0000)).unwrap();
        assert_eq!(q2.notify_off, 2);
        assert_eq!(dev.common.read16(NUM_QUEUES), 3);
    }

    #[test]
    fn queue_setup_errors() {
        let dev = negotiated();
        assert_eq!(
            setup_queue(&dev.common, 3, &split(64, 0x1000)),
            Err(VirtioError::QueueUnavailable {
                index: 3,
                num_queues: 3
            })
        );
        for size in [0, 100, 512] {
            assert_eq!(
                setup_queue(&dev.common, 1, &split(size, 0x1000)),
                Err(VirtioError::InvalidQueueSize {
                    index: 1,
                    requested: size,
                    max: 256
                })
            );
        }
        dev.common.clear_log();
        let mut cfg = split(256, 0x1008);
        assert_eq!(
            setup_queue(&dev.common, 0, &cfg),
            Err(VirtioError::MisalignedRing {
                index: 0,
                area: "descriptor",
                iova: 0x1008,
                align: 16
            })
        );
        cfg.desc = 0x1000;
        cfg.device = 0x2002;
        assert!(matches!(
            setup_queue(&dev.common, 0, &cfg),
            Err(VirtioError::MisalignedRing { area: "device", .. })
        ));
        // Packed rings need a 4-byte aligned driver area; split ones 2.
        cfg.device = 0x3000;
        cfg.driver = 0x2002;
        assert!(setup_queue(&dev.common, 0, &cfg).is_ok());
        cfg.layout = QueueLayout::Packed;
        assert!(matches!(
            setup_queue(&dev.common, 1, &cfg),
            Err(VirtioError::MisalignedRing { area: "driver", .. })
        ));
        // Nothing was enabled by the failed calls.
        assert!(!dev.model().queues[1].enabled);
    }

    #[test]
    fn vectors_the_device_takes_and_refuses() {
        let dev = negotiated();
        set_config_vector(&dev.common, 0).unwrap();
        assert_eq!(dev.model().config_vector, 0);
        setup_queue(&dev.common, 0, &split(256, 0x1_0000)).unwrap();
        set_queue_vector(&dev.common, 0, 1).unwrap();
        assert_eq!(dev.model().queues[0].msix_vector, 1);
        match set_queue_vector(&dev.common, 0, 4) {
            Err(VirtioError::VectorRefused {
                vector: 4,
                read_back: VIRTIO_MSI_NO_VECTOR,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            set_config_vector(&dev.common, 9),
            Err(VirtioError::VectorRefused { .. })
        ));
    }

    #[test]
    fn driver_ok_and_needs_reset() {
        let dev = negotiated();
        setup_queue(&dev.common, 0, &split(256, 0x10_0000)).unwrap();
        driver_ok(&dev.common).unwrap();
        assert_eq!(dev.model().status, 0x0f);
        assert_eq!(device_status(&dev.common), 0x0f);

        // A bad queue_enable write makes QEMU set DEVICE_NEEDS_RESET.
        let dev = negotiated();
        dev.common.write16(QUEUE_ENABLE, 0);
        let err = driver_ok(&dev.common).unwrap_err();
        assert!(matches!(err, VirtioError::NeedsReset { .. }));
    }

    #[test]
    fn notify_offsets_in_qemus_layout() {
        let caps = parse_virtio_caps(&qemu_virtio_net_config_space()).unwrap();
        assert_eq!(notify_offset(&caps.notify, 0), Ok(0x3000));
        assert_eq!(notify_offset(&caps.notify, 1), Ok(0x3004));
        assert_eq!(notify_offset(&caps.notify, 2), Ok(0x3008));
        assert_eq!(notify_offset(&caps.notify, 1023), Ok(0x3ffc));
        assert!(matches!(
            notify_offset(&caps.notify, 1024),
            Err(VirtioError::NotifyOutOfRange { offset: 4096, .. })
        ));
        // Multiplier 0: every queue shares the first doorbell.
        let mut shared = caps.notify;
        shared.notify_off_multiplier = 0;
        assert_eq!(notify_offset(&shared, 700), Ok(0x3000));
        // An offset past 4 GiB is an error, not a wrapped u32.
        let mut far = caps.notify;
        far.region.offset = u32::MAX - 8;
        far.region.length = u32::MAX;
        assert!(notify_offset(&far, 3).is_err());
    }

    #[test]
    fn bring_up_against_qemu_model() {
        // The whole sequence a driver runs, in order.
        let caps = parse_virtio_caps(&qemu_virtio_net_config_space()).unwrap();
        let dev = qemu();
        reset(&dev.common, &mut dev.common.delay()).unwrap();
        let features = start_negotiation(&dev.common, NET_DRIVER_FEATURES).unwrap();
        let config = read_net_config(&dev.common, &dev.device, features).unwrap();
        assert_eq!(config.mac, Some(MAC));
        assert!(config.link_up());
        let mut doorbells = Vec::new();
        for (index, base) in [(0u16, 0x10_0000u64), (1, 0x20_0000), (2, 0x30_0000)] {
            let max = queue_max_size(&dev.common, index).unwrap();
            let q = setup_queue(&dev.common, index, &split(max, base)).unwrap();
            doorbells.push(notify_offset(&caps.notify, q.notify_off).unwrap());
        }
        driver_ok(&dev.common).unwrap();
        assert_eq!(doorbells, vec![0x3000, 0x3004, 0x3008]);
        let m = dev.model();
        assert_eq!(m.status, 0x0f);
        assert!(m.queues.iter().all(|q| q.enabled));
        assert_eq!(
            m.queues.iter().map(|q| q.size).collect::<Vec<_>>(),
            vec![256, 256, 64]
        );
    }

    proptest! {
        #[test]
        fn notify_offset_is_in_range_or_an_error(
            offset in any::<u32>(),
            length in any::<u32>(),
            shift in 0u32..32,
            zero in any::<bool>(),
            off in any::<u16>(),
        ) {
            let notify = NotifyRegion {
                region: crate::virtio::caps::VirtioRegion { cap_offset: 0x70, bar: 4, offset, length },
                notify_off_multiplier: if zero { 0 } else { 1 << shift },
            };
            if let Ok(at) = notify_offset(&notify, off) {
                prop_assert!(at >= offset);
                prop_assert!(u64::from(at) + 2 <= u64::from(offset) + u64::from(length));
            }
        }
    }
}
