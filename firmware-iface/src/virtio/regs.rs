//! virtio 1.2 PCI transport register map: capability types, the common configuration
//! structure, device status bits, ISR bits and the virtio-net device configuration.
//!
//! Offsets are relative to the start of the structure a capability points at (the driver
//! maps `BAR[cap.bar] + cap.offset`); names follow the spec's field names.

// ---- PCI configuration space (PCI Local Bus 3.0 §6.7, virtio 1.2 §4.1.4) ----

/// PCI Status register (16-bit) in configuration space.
pub const PCI_STATUS: usize = 0x06;
/// Status bit: the function has a capability list at `PCI_CAPABILITY_LIST`.
pub const PCI_STATUS_CAP_LIST: u16 = 1 << 4;
/// Offset of the capabilities pointer (8-bit) in configuration space.
pub const PCI_CAPABILITY_LIST: usize = 0x34;
/// First byte after the standard header: capabilities live at or above it.
pub const PCI_CAP_MIN_OFFSET: u8 = 0x40;
/// Size of the conventional configuration space, where all virtio capabilities live.
pub const PCI_CONFIG_SPACE_SIZE: usize = 256;
/// Capability ID of a vendor-specific capability: every virtio structure's capability.
pub const PCI_CAP_ID_VNDR: u8 = 0x09;
/// Capability ID of MSI-X (QEMU puts one in front of the virtio ones).
pub const PCI_CAP_ID_MSIX: u8 = 0x11;
/// PCI vendor ID of virtio devices (Red Hat / Qumranet).
pub const VIRTIO_PCI_VENDOR_ID: u16 = 0x1af4;
/// Modern virtio-net PCI device ID: 0x1040 + virtio device ID 1 (§4.1.2).
pub const VIRTIO_NET_PCI_DEVICE_ID: u16 = 0x1041;
/// Transitional (legacy-capable) virtio-net PCI device ID (§4.1.2.3).
pub const VIRTIO_NET_PCI_DEVICE_ID_TRANSITIONAL: u16 = 0x1000;

// ---- struct virtio_pci_cap (virtio 1.2 §4.1.4) ----

/// `cap_vndr` (the capability ID, 0x09).
pub const CAP_VNDR: usize = 0;
/// `cap_next`: offset of the next capability, 0 at the end of the list.
pub const CAP_NEXT: usize = 1;
/// `cap_len`: length of this capability structure in bytes.
pub const CAP_LEN: usize = 2;
/// `cfg_type`: which structure this capability locates (`VIRTIO_PCI_CAP_*`).
pub const CAP_CFG_TYPE: usize = 3;
/// `bar`: which BAR (0-5) holds the structure.
pub const CAP_BAR: usize = 4;
/// `id`: identifies multiple capabilities of the same type (virtio 1.2).
pub const CAP_ID: usize = 5;
/// `offset` (le32): where the structure starts within the BAR.
pub const CAP_OFFSET: usize = 8;
/// `length` (le32): length of the structure.
pub const CAP_LENGTH: usize = 12;
/// Size of `struct virtio_pci_cap`.
pub const VIRTIO_PCI_CAP_LEN: u8 = 16;
/// `notify_off_multiplier` (le32) of `struct virtio_pci_notify_cap` (§4.1.4.4).
pub const CAP_NOTIFY_OFF_MULTIPLIER: usize = 16;
/// Size of `struct virtio_pci_notify_cap`.
pub const VIRTIO_PCI_NOTIFY_CAP_LEN: u8 = 20;

/// Common configuration (§4.1.4.3).
pub const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
/// Notifications (§4.1.4.4).
pub const VIRTIO_PCI_CAP_NOTIFY_CFG: u8 = 2;
/// ISR status (§4.1.4.5).
pub const VIRTIO_PCI_CAP_ISR_CFG: u8 = 3;
/// Device-specific configuration (§4.1.4.6).
pub const VIRTIO_PCI_CAP_DEVICE_CFG: u8 = 4;
/// PCI configuration access window (§4.1.4.9); not used by tenge.
pub const VIRTIO_PCI_CAP_PCI_CFG: u8 = 5;
/// Shared memory region (§4.1.4.7); not used by virtio-net.
pub const VIRTIO_PCI_CAP_SHARED_MEMORY_CFG: u8 = 8;
/// Vendor-specific data (§4.1.4.8).
pub const VIRTIO_PCI_CAP_VENDOR_CFG: u8 = 9;
/// Highest BAR number a capability may name; larger values are reserved and the driver
/// must ignore such capabilities (§4.1.4.1).
pub const MAX_BAR: u8 = 5;

// ---- struct virtio_pci_common_cfg (virtio 1.2 §4.1.4.3) ----

/// le32, RW: selects which 32 feature bits `device_feature` shows.
pub const DEVICE_FEATURE_SELECT: u32 = 0x00;
/// le32, RO: device feature bits `32 * select ..= 32 * select + 31`.
pub const DEVICE_FEATURE: u32 = 0x04;
/// le32, RW: selects which 32 feature bits `driver_feature` takes.
pub const DRIVER_FEATURE_SELECT: u32 = 0x08;
/// le32, RW: driver (accepted) feature bits for the selected word.
pub const DRIVER_FEATURE: u32 = 0x0c;
/// le16, RW: MSI-X vector for configuration change interrupts.
pub const CONFIG_MSIX_VECTOR: u32 = 0x10;
/// le16, RO: number of virtqueues the device supports.
pub const NUM_QUEUES: u32 = 0x12;
/// u8, RW: device status (`STATUS_*`); writing 0 resets the device.
pub const DEVICE_STATUS: u32 = 0x14;
/// u8, RO: changes whenever the device configuration may have changed (§4.1.4.3.1).
pub const CONFIG_GENERATION: u32 = 0x15;
/// le16, RW: selects the queue the `QUEUE_*` fields below refer to.
pub const QUEUE_SELECT: u32 = 0x16;
/// le16, RW: on reset the queue's maximum size (0 = queue unavailable); the driver may
/// write a smaller size before enabling.
pub const QUEUE_SIZE: u32 = 0x18;
/// le16, RW: MSI-X vector for the selected queue.
pub const QUEUE_MSIX_VECTOR: u32 = 0x1a;
/// le16, RW: write 1 to enable the selected queue; reads 1 once enabled.
pub const QUEUE_ENABLE: u32 = 0x1c;
/// le16, RO: the queue's notification offset, in units of `notify_off_multiplier`.
pub const QUEUE_NOTIFY_OFF: u32 = 0x1e;
/// le64, RW: IOVA of the descriptor area (split: descriptor table; packed: ring).
pub const QUEUE_DESC: u32 = 0x20;
/// le64, RW: IOVA of the driver area (split: avail ring; packed: driver event suppression).
pub const QUEUE_DRIVER: u32 = 0x28;
/// le64, RW: IOVA of the device area (split: used ring; packed: device event suppression).
pub const QUEUE_DEVICE: u32 = 0x30;
/// le16, RO: data to write for notifications with `VIRTIO_F_NOTIF_CONFIG_DATA` (1.2).
pub const QUEUE_NOTIFY_DATA: u32 = 0x38;
/// le16, RW: per-queue reset with `VIRTIO_F_RING_RESET` (1.2).
pub const QUEUE_RESET: u32 = 0x3a;
/// Length of the common configuration structure in virtio 1.0 (up to `queue_device`):
/// the least a common configuration capability may declare.
pub const COMMON_CFG_MIN_LEN: u32 = 0x38;
/// Length with the 1.2 fields (`queue_notify_data`, `queue_reset`).
pub const COMMON_CFG_LEN: u32 = 0x3c;

/// "No MSI-X vector" (§4.1.4.3): with it the device raises no interrupt for the queue or
/// config change (it may still set ISR bits); poll mode writes it everywhere.
pub const VIRTIO_MSI_NO_VECTOR: u16 = 0xffff;

// ---- device status (virtio 1.2 §2.1) ----

/// The guest OS has noticed the device.
pub const STATUS_ACKNOWLEDGE: u8 = 1;
/// The guest OS knows how to drive the device.
pub const STATUS_DRIVER: u8 = 2;
/// The driver is set up and ready to drive the device.
pub const STATUS_DRIVER_OK: u8 = 4;
/// The driver has acknowledged the features it understands; negotiation is complete.
pub const STATUS_FEATURES_OK: u8 = 8;
/// The device hit an error it cannot recover from without a reset.
pub const STATUS_DEVICE_NEEDS_RESET: u8 = 0x40;
/// The driver gave up on the device.
pub const STATUS_FAILED: u8 = 0x80;

// ---- ISR status (virtio 1.2 §4.1.4.5), one byte, read-to-clear ----

/// A virtqueue has an interrupt pending (INTx only).
pub const ISR_QUEUE: u8 = 1;
/// The device configuration changed (INTx only).
pub const ISR_CONFIG: u8 = 2;

// ---- struct virtio_net_config (virtio 1.2 §5.1.4) ----

/// `u8[6]`: MAC address (valid with `VIRTIO_NET_F_MAC`).
pub const NET_CFG_MAC: u32 = 0x00;
/// le16: `VIRTIO_NET_S_*` (valid with `VIRTIO_NET_F_STATUS`).
pub const NET_CFG_STATUS: u32 = 0x06;
/// le16: most RX/TX queue pairs (valid with `VIRTIO_NET_F_MQ` or `VIRTIO_NET_F_RSS`).
pub const NET_CFG_MAX_VIRTQUEUE_PAIRS: u32 = 0x08;
/// le16: maximum MTU (valid with `VIRTIO_NET_F_MTU`).
pub const NET_CFG_MTU: u32 = 0x0a;
/// le32: link speed in Mb/s (valid with `VIRTIO_NET_F_SPEED_DUPLEX`).
pub const NET_CFG_SPEED: u32 = 0x0c;
/// u8: duplex (valid with `VIRTIO_NET_F_SPEED_DUPLEX`).
pub const NET_CFG_DUPLEX: u32 = 0x10;

/// u8: most bytes of an RSS key (valid with `VIRTIO_NET_F_RSS`).
pub const NET_CFG_RSS_MAX_KEY_SIZE: u32 = 0x11;
/// le16: most entries of an RSS indirection table (valid with `VIRTIO_NET_F_RSS`).
pub const NET_CFG_RSS_MAX_INDIRECTION_TABLE_LENGTH: u32 = 0x12;
/// le32: `VIRTIO_NET_RSS_HASH_TYPE_*` the device can hash (valid with `VIRTIO_NET_F_RSS`
/// or `VIRTIO_NET_F_HASH_REPORT`).
pub const NET_CFG_SUPPORTED_HASH_TYPES: u32 = 0x14;

/// Link is up (`status` field).
pub const VIRTIO_NET_S_LINK_UP: u16 = 1;
/// The device asks for a gratuitous announce (with `VIRTIO_NET_F_GUEST_ANNOUNCE`).
pub const VIRTIO_NET_S_ANNOUNCE: u16 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_cfg_fields_are_naturally_aligned() {
        // §4.1.3.1: each field is accessed at its natural width, so it must be aligned to it.
        for off in [
            DEVICE_FEATURE_SELECT,
            DEVICE_FEATURE,
            DRIVER_FEATURE_SELECT,
            DRIVER_FEATURE,
            QUEUE_DESC,
            QUEUE_DRIVER,
            QUEUE_DEVICE,
        ] {
            assert_eq!(off % 4, 0, "{off:#x}");
        }
        for off in [
            CONFIG_MSIX_VECTOR,
            NUM_QUEUES,
            QUEUE_SELECT,
            QUEUE_SIZE,
            QUEUE_MSIX_VECTOR,
            QUEUE_ENABLE,
            QUEUE_NOTIFY_OFF,
            QUEUE_NOTIFY_DATA,
            QUEUE_RESET,
        ] {
            assert_eq!(off % 2, 0, "{off:#x}");
        }
        assert_eq!(QUEUE_DEVICE + 8, COMMON_CFG_MIN_LEN);
        assert_eq!(QUEUE_RESET + 2, COMMON_CFG_LEN);
    }
}
