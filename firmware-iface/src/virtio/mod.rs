//! virtio 1.x over PCI ("modern" virtio-pci, virtio 1.2 §4.1): the transport layer of
//! tenge's virtio-net driver.
//!
//! Three layers, as in libblkio's `virtio-driver`: this module is the transport
//! (capabilities, status handshake, features, queue registration, notification addresses)
//! and the virtio-net device configuration and control commands; the virtqueue layouts
//! live in `tenge_descriptors::virtio`; the rings themselves are driven by the driver's
//! ring engine.
//!
//! Bring-up, in the order of virtio 1.2 §3.1.1:
//! 1. [`parse_virtio_caps`] on the PCI configuration space bytes → where the common,
//!    notify, ISR and device structures are (BAR, offset, length).
//! 2. The driver maps those BAR ranges and wraps each in a [`NarrowMmio`] whose offset 0 is
//!    the start of the structure (`common`, `device`).
//! 3. [`reset`], then [`start_negotiation`] (ACKNOWLEDGE, DRIVER, features, FEATURES_OK)
//!    → the accepted features.
//! 4. [`read_net_config`] (MAC, link status, ...), then [`setup_queue`] for each
//!    virtqueue (RX 0, TX 1, control 2 with one queue pair) and [`notify_offset`] for
//!    its doorbell.
//! 5. [`driver_ok`]. From then on the data path touches only the rings and the doorbells.
//!
//! Every sequence runs against `RecordedRegs` in tests, with a model of QEMU 10.0's
//! virtio-pci and virtio-net (`model`, feature `testing`).
//!
//! # QEMU 10.0 facts the data path depends on
//!
//! Measured on QEMU 10.0.2 (`-M q35`, `virtio-net-pci,disable-legacy=on,iommu_platform=on`)
//! or read in its sources (`hw/virtio/virtio.c`, `hw/net/virtio-net.c`):
//! - queues: RX 0 and TX 1 of 256 descriptors, control 2 of 64; `num_queues` 3. QEMU takes
//!   any size written up to 1024 (no power-of-two check; `rx_queue_size=1024` raises the RX
//!   default, `tx_queue_size` is capped at 256 for non-vhost-user backends);
//! - doorbells: all in BAR 4 at 0x3000 + 4 × queue index (`notify_off_multiplier` 4,
//!   `queue_notify_off` = index); QEMU ignores the value written and takes the queue from
//!   the address;
//! - features: hub, dgram, user and tap without `vnet_hdr` offer no checksum or
//!   segmentation offload; tap with `vnet_hdr=on` adds CSUM, GUEST_CSUM, TSO4/6, ECN, UFO
//!   and USO in both directions; MRG_RXBUF, EVENT_IDX, CTRL_VQ and CTRL_RX are offered by
//!   default, RING_PACKED only with `packed=on`;
//! - split ring with EVENT_IDX: QEMU publishes `avail_event` = the avail index it has
//!   seen whenever it arms or disarms notifications, so a driver that notifies only when
//!   `tenge_descriptors::virtio::vring_need_event` says so skips doorbells while QEMU's TX bottom half is still draining; without
//!   EVENT_IDX it uses `VIRTQ_USED_F_NO_NOTIFY` instead;
//! - packed ring (`tenge_descriptors::virtio::pvirtq_need_event`): QEMU writes the device
//!   event suppression area: DISABLE while it processes, then DESC with its next avail slot and wrap counter (with EVENT_IDX) or
//!   ENABLE (without);
//! - RX: when the RX queue has no buffer, QEMU holds the frame in the backend queue and
//!   arms the RX notification; it delivers again only after a doorbell on the RX queue, so
//!   a refill must end with an RX notify (subject to the event test);
//! - the header is always the 12-byte `virtio_net_hdr` with `num_buffers` (VERSION_1);
//! - control queue (`virtio_net_handle_ctrl`): a command is answered from QEMU's main loop
//!   after its doorbell, with one ack byte and a used length of 1; `RX_PROMISC` off makes
//!   it drop frames to other unicast MACs and to multicast groups, `MAC_TABLE_SET`'s
//!   unicast table lets those MACs through again (tenge's rx_filter tests); with
//!   `ctrl_rx=off` it still offers CTRL_RX_EXTRA, which depends on CTRL_RX (dropped by
//!   [`negotiate`]);
//! - reset is synchronous (status reads 0 right after writing 0); a `queue_enable` write
//!   other than 1 sets DEVICE_NEEDS_RESET; FEATURES_OK does not stick if ACCESS_PLATFORM
//!   is offered but not accepted.

mod caps;
mod features;
#[cfg(any(test, feature = "testing"))]
pub mod model;
mod net;
pub mod regs;
mod transport;

pub use caps::{parse_virtio_caps, CapError, NotifyRegion, VirtioPciCaps, VirtioRegion};
pub use features::*;
pub use net::{
    ctrl_mac_addr_set, ctrl_mac_table_set, ctrl_mq_rss_config, ctrl_mq_vq_pairs_set, ctrl_rx_mode,
    read_net_config, CtrlAck, NetConfig, RxMode, CTRL_ACK_LEN, CTRL_ACK_UNSET,
    MAX_CONFIG_READ_ATTEMPTS, VIRTIO_NET_CTRL_ACK_ERR, VIRTIO_NET_CTRL_ACK_OK, VIRTIO_NET_CTRL_MAC,
    VIRTIO_NET_CTRL_MAC_ADDR_SET, VIRTIO_NET_CTRL_MAC_TABLE_SET, VIRTIO_NET_CTRL_MQ,
    VIRTIO_NET_CTRL_MQ_HASH_CONFIG, VIRTIO_NET_CTRL_MQ_RSS_CONFIG, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX,
    VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, VIRTIO_NET_CTRL_RX,
    VIRTIO_NET_CTRL_RX_ALLMULTI, VIRTIO_NET_CTRL_RX_ALLUNI, VIRTIO_NET_CTRL_RX_NOBCAST,
    VIRTIO_NET_CTRL_RX_NOMULTI, VIRTIO_NET_CTRL_RX_NOUNI, VIRTIO_NET_CTRL_RX_PROMISC,
};
pub use transport::{
    device_status, driver_ok, fail, notify_offset, queue_max_size, read_device_features, reset,
    set_config_vector, set_queue_vector, setup_queue, start_negotiation, QueueConfig, QueueLayout,
    QueueSetup, RESET_POLL_US, RESET_TIMEOUT_US,
};

use crate::mmio::NarrowMmio;

/// What can go wrong bringing up a virtio device. Each message says what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VirtioError {
    /// The capability list is malformed or incomplete.
    #[error(transparent)]
    Caps(#[from] CapError),
    /// The device status did not read back 0 after a reset.
    #[error(
        "virtio reset did not complete: device_status still {status:#04x} {waited_us} us after \
         writing 0; the device is hung or the mapped range is not its common configuration \
         (check the capability's BAR and offset), try a PCI function-level reset"
    )]
    ResetTimeout {
        /// The last status read.
        status: u8,
        /// Microseconds waited.
        waited_us: u32,
    },
    /// No VIRTIO_F_VERSION_1.
    #[error(
        "the device does not offer VIRTIO_F_VERSION_1 (offers {}): it is a legacy virtio \
         device; tenge drives only modern (virtio 1.x) devices — start it as one (QEMU: \
         -device virtio-net-pci,disable-legacy=on,disable-modern=off)",
        FeatureNames(*offered)
    )]
    NotModern {
        /// What the device offered.
        offered: u64,
    },
    /// No VIRTIO_F_ACCESS_PLATFORM.
    #[error(
        "the device does not offer VIRTIO_F_ACCESS_PLATFORM (offers {}): it would treat the \
         IOVAs tenge writes into descriptors as guest-physical addresses and bypass the \
         IOMMU, so DMA would land in the wrong memory; start the device with \
         iommu_platform=on (QEMU: -device virtio-net-pci,iommu_platform=on,disable-legacy=on; \
         add ats=on behind intel-iommu,device-iotlb=on)",
        FeatureNames(*offered)
    )]
    NoAccessPlatform {
        /// What the device offered.
        offered: u64,
    },
    /// The device did not take an MSI-X vector: it read back `VIRTIO_MSI_NO_VECTOR`
    /// (virtio 1.2 §4.1.5.1.2: the device's way to refuse one, e.g. beyond its table).
    #[error(
        "the device refused MSI-X vector {vector} for {what} (read back {read_back:#06x}); \
         it has fewer vectors than tenge asked for: start it with more (QEMU: \
         -device virtio-net-pci,vectors=N, N >= 2 * queue pairs + 2) or open the port \
         without interrupts"
    )]
    VectorRefused {
        /// "configuration changes" or "queue N".
        what: String,
        /// The vector written.
        vector: u16,
        /// What read back.
        read_back: u16,
    },
    /// FEATURES_OK did not stick.
    #[error(
        "the device refused the feature set {} (FEATURES_OK read back clear, status \
         {status:#04x}); it rejects this combination — QEMU does so when a device offering \
         ACCESS_PLATFORM does not get it back",
        FeatureNames(*accepted)
    )]
    FeaturesRejected {
        /// What the driver wrote.
        accepted: u64,
        /// The status read back.
        status: u8,
    },
    /// The device reports DEVICE_NEEDS_RESET.
    #[error(
        "the device set DEVICE_NEEDS_RESET (status {status:#04x}): it hit an error it \
         cannot recover from (QEMU: a malformed ring or a bad register write; see its \
         log for 'virtio_error'); reset and reinitialize it"
    )]
    NeedsReset {
        /// The status read.
        status: u8,
    },
    /// Queue index beyond what the device has.
    #[error(
        "virtqueue {index} is not available: queue_size reads 0 (the device has {num_queues} \
         queues; virtio-net has 2 per queue pair plus the control queue with CTRL_VQ)"
    )]
    QueueUnavailable {
        /// The queue index.
        index: u16,
        /// `num_queues` of the device.
        num_queues: u16,
    },
    /// Queue size the device or the ring engine cannot take.
    #[error(
        "virtqueue {index}: size {requested} is not usable (device maximum {max}); use a \
         power of two between 1 and the maximum"
    )]
    InvalidQueueSize {
        /// The queue index.
        index: u16,
        /// The size asked for.
        requested: u16,
        /// What the device allows.
        max: u16,
    },
    /// A ring area that is not aligned as the spec requires.
    #[error(
        "virtqueue {index}: the {area} area at IOVA {iova:#x} is not {align}-byte aligned \
         (virtio 1.2 §2.7 / §2.8.10.1)"
    )]
    MisalignedRing {
        /// The queue index.
        index: u16,
        /// `descriptor`, `driver` or `device`.
        area: &'static str,
        /// The IOVA given.
        iova: u64,
        /// The alignment needed.
        align: u64,
    },
    /// The queue did not read back enabled.
    #[error("virtqueue {index}: queue_enable reads {value} after writing 1")]
    QueueNotEnabled {
        /// The queue index.
        index: u16,
        /// What queue_enable read.
        value: u16,
    },
    /// The doorbell would be outside the notify structure.
    #[error(
        "virtqueue notify offset {queue_notify_off} x multiplier {multiplier} = {offset} lies \
         outside the {length}-byte notification structure"
    )]
    NotifyOutOfRange {
        /// The queue's `queue_notify_off`.
        queue_notify_off: u16,
        /// `notify_off_multiplier`.
        multiplier: u32,
        /// The product.
        offset: u64,
        /// The structure's length.
        length: u32,
    },
    /// The device configuration kept changing while being read.
    #[error(
        "the device configuration changed during each of {attempts} reads \
         (config_generation kept moving); the device is reconfiguring, retry later"
    )]
    ConfigUnstable {
        /// How many times it was read.
        attempts: u32,
    },
}

/// Writes a 64-bit common-configuration field as two 32-bit accesses, low half first
/// (virtio 1.2 §4.1.3.1 allows this for 64-bit fields).
fn write64(common: &impl NarrowMmio, offset: u32, value: u64) {
    common.write32(offset, value as u32);
    common.write32(offset + 4, (value >> 32) as u32);
}
