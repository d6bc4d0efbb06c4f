//! Feature bits (virtio 1.2 §6 reserved bits, §5.1.3 virtio-net bits) and negotiation.
//!
//! Each constant is a mask over the 64-bit feature word (bits 0-31 in `device_feature`
//! word 0, bits 32-63 in word 1).

use std::fmt;

use super::VirtioError;

// ---- virtio-net device features (virtio 1.2 §5.1.3) ----

/// Device handles packets with partial checksum (TX checksum offload).
pub const VIRTIO_NET_F_CSUM: u64 = 1 << 0;
/// Driver handles packets with partial checksum (RX: device may deliver them, and sets
/// DATA_VALID on checked ones).
pub const VIRTIO_NET_F_GUEST_CSUM: u64 = 1 << 1;
/// Control channel offload reconfiguration.
pub const VIRTIO_NET_F_CTRL_GUEST_OFFLOADS: u64 = 1 << 2;
/// Device reports its maximum MTU in `mtu`.
pub const VIRTIO_NET_F_MTU: u64 = 1 << 3;
/// Device has a MAC address in `mac`.
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
/// Driver can receive TSOv4.
pub const VIRTIO_NET_F_GUEST_TSO4: u64 = 1 << 7;
/// Driver can receive TSOv6.
pub const VIRTIO_NET_F_GUEST_TSO6: u64 = 1 << 8;
/// Driver can receive TSO with ECN.
pub const VIRTIO_NET_F_GUEST_ECN: u64 = 1 << 9;
/// Driver can receive UFO.
pub const VIRTIO_NET_F_GUEST_UFO: u64 = 1 << 10;
/// Device can receive (segment) TSOv4 from the driver.
pub const VIRTIO_NET_F_HOST_TSO4: u64 = 1 << 11;
/// Device can receive TSOv6.
pub const VIRTIO_NET_F_HOST_TSO6: u64 = 1 << 12;
/// Device can receive TSO with ECN.
pub const VIRTIO_NET_F_HOST_ECN: u64 = 1 << 13;
/// Device can receive UFO.
pub const VIRTIO_NET_F_HOST_UFO: u64 = 1 << 14;
/// Driver can merge receive buffers (`num_buffers` > 1).
pub const VIRTIO_NET_F_MRG_RXBUF: u64 = 1 << 15;
/// `status` in the device configuration is valid.
pub const VIRTIO_NET_F_STATUS: u64 = 1 << 16;
/// Control virtqueue.
pub const VIRTIO_NET_F_CTRL_VQ: u64 = 1 << 17;
/// Control channel RX mode (promiscuous, all-multicast).
pub const VIRTIO_NET_F_CTRL_RX: u64 = 1 << 18;
/// Control channel VLAN filtering.
pub const VIRTIO_NET_F_CTRL_VLAN: u64 = 1 << 19;
/// Extra RX mode commands (all-unicast, no-multicast, ...).
pub const VIRTIO_NET_F_CTRL_RX_EXTRA: u64 = 1 << 20;
/// Driver can send gratuitous packets on request.
pub const VIRTIO_NET_F_GUEST_ANNOUNCE: u64 = 1 << 21;
/// Multiqueue with automatic receive steering.
pub const VIRTIO_NET_F_MQ: u64 = 1 << 22;
/// Set the MAC address through the control channel.
pub const VIRTIO_NET_F_CTRL_MAC_ADDR: u64 = 1 << 23;
/// Driver can receive USOv4.
pub const VIRTIO_NET_F_GUEST_USO4: u64 = 1 << 54;
/// Driver can receive USOv6.
pub const VIRTIO_NET_F_GUEST_USO6: u64 = 1 << 55;
/// Device can receive USO.
pub const VIRTIO_NET_F_HOST_USO: u64 = 1 << 56;
/// Device can report per-packet hash.
pub const VIRTIO_NET_F_HASH_REPORT: u64 = 1 << 57;
/// Driver provides the exact `hdr_len`.
pub const VIRTIO_NET_F_GUEST_HDRLEN: u64 = 1 << 59;
/// RSS steering.
pub const VIRTIO_NET_F_RSS: u64 = 1 << 60;
/// Extended coalescing info.
pub const VIRTIO_NET_F_RSC_EXT: u64 = 1 << 61;
/// Standby for a primary device with the same MAC.
pub const VIRTIO_NET_F_STANDBY: u64 = 1 << 62;
/// `speed` and `duplex` in the device configuration are valid.
pub const VIRTIO_NET_F_SPEED_DUPLEX: u64 = 1 << 63;

// ---- reserved (transport and ring) features (virtio 1.2 §6) ----

/// Indirect descriptors (§2.7.5.3, §2.8.19).
pub const VIRTIO_F_INDIRECT_DESC: u64 = 1 << 28;
/// `used_event`/`avail_event` notification suppression (§2.7.7, §2.7.10, §2.8.14).
pub const VIRTIO_F_EVENT_IDX: u64 = 1 << 29;
/// Compliance with virtio 1.x; a device without it is legacy-only.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// The device accesses memory through the platform's IOMMU (addresses are IOVAs). Without
/// it the device uses guest-physical addresses and bypasses the IOMMU.
pub const VIRTIO_F_ACCESS_PLATFORM: u64 = 1 << 33;
/// Packed virtqueue layout (§2.8).
pub const VIRTIO_F_RING_PACKED: u64 = 1 << 34;
/// The device uses buffers in the order they were made available.
pub const VIRTIO_F_IN_ORDER: u64 = 1 << 35;
/// Memory accesses need platform ordering (real hardware behind PCIe).
pub const VIRTIO_F_ORDER_PLATFORM: u64 = 1 << 36;
/// Single-root I/O virtualization.
pub const VIRTIO_F_SR_IOV: u64 = 1 << 37;
/// The driver passes extra data in notifications.
pub const VIRTIO_F_NOTIFICATION_DATA: u64 = 1 << 38;
/// The driver writes `queue_notify_data` in notifications (1.2).
pub const VIRTIO_F_NOTIF_CONFIG_DATA: u64 = 1 << 39;
/// Per-queue reset (1.2).
pub const VIRTIO_F_RING_RESET: u64 = 1 << 40;

/// Features tenge never goes without: a modern device (VERSION_1) that honours the IOMMU
/// (ACCESS_PLATFORM). [`negotiate`] accepts them even if `wanted` leaves them out and fails
/// if the device does not offer them.
pub const REQUIRED_FEATURES: u64 = VIRTIO_F_VERSION_1 | VIRTIO_F_ACCESS_PLATFORM;

/// Every feature the tenge virtio-net driver can use (issue 4). A driver passes a subset
/// as `wanted` to [`negotiate`].
///
/// Note for RX: with GUEST_TSO4/6 and without MRG_RXBUF the driver must post buffers of at
/// least 65562 bytes (virtio 1.2 §5.1.6.3.1); accept GUEST_TSO only together with MRG_RXBUF.
pub const NET_DRIVER_FEATURES: u64 = REQUIRED_FEATURES
    | VIRTIO_NET_F_MAC
    | VIRTIO_NET_F_STATUS
    | VIRTIO_NET_F_MRG_RXBUF
    | VIRTIO_NET_F_CSUM
    | VIRTIO_NET_F_GUEST_CSUM
    | VIRTIO_NET_F_HOST_TSO4
    | VIRTIO_NET_F_HOST_TSO6
    | VIRTIO_NET_F_GUEST_TSO4
    | VIRTIO_NET_F_GUEST_TSO6
    | VIRTIO_NET_F_CTRL_VQ
    | VIRTIO_NET_F_CTRL_RX
    | VIRTIO_F_EVENT_IDX
    | VIRTIO_F_RING_PACKED
    | VIRTIO_NET_F_MQ
    | VIRTIO_NET_F_RSS
    | VIRTIO_NET_F_HASH_REPORT;

/// Names of the known feature bits, as the spec spells them.
const NAMES: &[(u64, &str)] = &[
    (VIRTIO_NET_F_CSUM, "CSUM"),
    (VIRTIO_NET_F_GUEST_CSUM, "GUEST_CSUM"),
    (VIRTIO_NET_F_CTRL_GUEST_OFFLOADS, "CTRL_GUEST_OFFLOADS"),
    (VIRTIO_NET_F_MTU, "MTU"),
    (VIRTIO_NET_F_MAC, "MAC"),
    (1 << 6, "GSO(legacy)"),
    (VIRTIO_NET_F_GUEST_TSO4, "GUEST_TSO4"),
    (VIRTIO_NET_F_GUEST_TSO6, "GUEST_TSO6"),
    (VIRTIO_NET_F_GUEST_ECN, "GUEST_ECN"),
    (VIRTIO_NET_F_GUEST_UFO, "GUEST_UFO"),
    (VIRTIO_NET_F_HOST_TSO4, "HOST_TSO4"),
    (VIRTIO_NET_F_HOST_TSO6, "HOST_TSO6"),
    (VIRTIO_NET_F_HOST_ECN, "HOST_ECN"),
    (VIRTIO_NET_F_HOST_UFO, "HOST_UFO"),
    (VIRTIO_NET_F_MRG_RXBUF, "MRG_RXBUF"),
    (VIRTIO_NET_F_STATUS, "STATUS"),
    (VIRTIO_NET_F_CTRL_VQ, "CTRL_VQ"),
    (VIRTIO_NET_F_CTRL_RX, "CTRL_RX"),
    (VIRTIO_NET_F_CTRL_VLAN, "CTRL_VLAN"),
    (VIRTIO_NET_F_CTRL_RX_EXTRA, "CTRL_RX_EXTRA"),
    (VIRTIO_NET_F_GUEST_ANNOUNCE, "GUEST_ANNOUNCE"),
    (VIRTIO_NET_F_MQ, "MQ"),
    (VIRTIO_NET_F_CTRL_MAC_ADDR, "CTRL_MAC_ADDR"),
    (1 << 24, "NOTIFY_ON_EMPTY(legacy)"),
    (1 << 27, "ANY_LAYOUT(legacy)"),
    (VIRTIO_F_INDIRECT_DESC, "INDIRECT_DESC"),
    (VIRTIO_F_EVENT_IDX, "EVENT_IDX"),
    (1 << 30, "BAD_FEATURE(legacy)"),
    (VIRTIO_F_VERSION_1, "VERSION_1"),
    (VIRTIO_F_ACCESS_PLATFORM, "ACCESS_PLATFORM"),
    (VIRTIO_F_RING_PACKED, "RING_PACKED"),
    (VIRTIO_F_IN_ORDER, "IN_ORDER"),
    (VIRTIO_F_ORDER_PLATFORM, "ORDER_PLATFORM"),
    (VIRTIO_F_SR_IOV, "SR_IOV"),
    (VIRTIO_F_NOTIFICATION_DATA, "NOTIFICATION_DATA"),
    (VIRTIO_F_NOTIF_CONFIG_DATA, "NOTIF_CONFIG_DATA"),
    (VIRTIO_F_RING_RESET, "RING_RESET"),
    (1 << 52, "VQ_NOTF_COAL"),
    (1 << 53, "NOTF_COAL"),
    (VIRTIO_NET_F_GUEST_USO4, "GUEST_USO4"),
    (VIRTIO_NET_F_GUEST_USO6, "GUEST_USO6"),
    (VIRTIO_NET_F_HOST_USO, "HOST_USO"),
    (VIRTIO_NET_F_HASH_REPORT, "HASH_REPORT"),
    (VIRTIO_NET_F_GUEST_HDRLEN, "GUEST_HDRLEN"),
    (VIRTIO_NET_F_RSS, "RSS"),
    (VIRTIO_NET_F_RSC_EXT, "RSC_EXT"),
    (VIRTIO_NET_F_STANDBY, "STANDBY"),
    (VIRTIO_NET_F_SPEED_DUPLEX, "SPEED_DUPLEX"),
];

/// A feature word shown as names: `VERSION_1|MAC|bit 50`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureNames(pub u64);

impl fmt::Display for FeatureNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("(none)");
        }
        let mut first = true;
        for bit in 0..64 {
            let mask = 1u64 << bit;
            if self.0 & mask == 0 {
                continue;
            }
            if !first {
                f.write_str("|")?;
            }
            first = false;
            match NAMES.iter().find(|(m, _)| *m == mask) {
                Some((_, name)) => f.write_str(name)?,
                None => write!(f, "bit {bit}")?,
            }
        }
        Ok(())
    }
}

/// Feature dependencies (virtio 1.2 §5.1.3.1): the feature needs at least one of the
/// features in the mask. "The driver MUST NOT accept a feature which requires another
/// feature which was not accepted."
const DEPENDS_ON_ANY: &[(u64, u64)] = &[
    (VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_CSUM),
    (VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_CSUM),
    (
        VIRTIO_NET_F_GUEST_ECN,
        VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6,
    ),
    (VIRTIO_NET_F_GUEST_UFO, VIRTIO_NET_F_GUEST_CSUM),
    (VIRTIO_NET_F_GUEST_USO4, VIRTIO_NET_F_GUEST_CSUM),
    (VIRTIO_NET_F_GUEST_USO6, VIRTIO_NET_F_GUEST_CSUM),
    (VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_CSUM),
    (VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_CSUM),
    (
        VIRTIO_NET_F_HOST_ECN,
        VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_HOST_TSO6,
    ),
    (VIRTIO_NET_F_HOST_UFO, VIRTIO_NET_F_CSUM),
    (VIRTIO_NET_F_HOST_USO, VIRTIO_NET_F_CSUM),
    (VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_CTRL_VQ),
    (VIRTIO_NET_F_CTRL_VLAN, VIRTIO_NET_F_CTRL_VQ),
    (VIRTIO_NET_F_GUEST_ANNOUNCE, VIRTIO_NET_F_CTRL_VQ),
    (VIRTIO_NET_F_MQ, VIRTIO_NET_F_CTRL_VQ),
    (VIRTIO_NET_F_CTRL_MAC_ADDR, VIRTIO_NET_F_CTRL_VQ),
    (VIRTIO_NET_F_CTRL_GUEST_OFFLOADS, VIRTIO_NET_F_CTRL_VQ),
    (VIRTIO_NET_F_CTRL_RX_EXTRA, VIRTIO_NET_F_CTRL_RX),
    (VIRTIO_NET_F_RSS, VIRTIO_NET_F_CTRL_VQ),
    (VIRTIO_NET_F_HASH_REPORT, VIRTIO_NET_F_CTRL_VQ),
    (
        VIRTIO_NET_F_RSC_EXT,
        VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_HOST_TSO6,
    ),
];

/// Chooses the features to accept: those `offered` by the device and `wanted` by the
/// driver, plus [`REQUIRED_FEATURES`], minus any whose prerequisites did not make it
/// (virtio 1.2 §2.2, §5.1.3.1). Logs what was offered and what was accepted.
///
/// # Errors
/// - [`VirtioError::NotModern`] if the device does not offer `VIRTIO_F_VERSION_1`;
/// - [`VirtioError::NoAccessPlatform`] if it does not offer `VIRTIO_F_ACCESS_PLATFORM`: such
///   a device would DMA to the addresses in its descriptors as guest-physical addresses,
///   ignoring the IOMMU mappings tenge programs (it must be started with
///   `iommu_platform=on`).
pub fn negotiate(offered: u64, wanted: u64) -> Result<u64, VirtioError> {
    log::info!("virtio: device offers {}", FeatureNames(offered));
    if offered & VIRTIO_F_VERSION_1 == 0 {
        return Err(VirtioError::NotModern { offered });
    }
    if offered & VIRTIO_F_ACCESS_PLATFORM == 0 {
        return Err(VirtioError::NoAccessPlatform { offered });
    }
    let not_offered = wanted & !offered;
    if not_offered != 0 {
        log::info!(
            "virtio: wanted but not offered: {}",
            FeatureNames(not_offered)
        );
    }
    let mut accepted = offered & (wanted | REQUIRED_FEATURES);
    // Dropping one feature can orphan another (CTRL_VQ -> CTRL_RX -> CTRL_RX_EXTRA), so
    // repeat until nothing changes; each pass drops at least one bit or stops.
    loop {
        let orphans = DEPENDS_ON_ANY
            .iter()
            .filter(|&&(feature, needs)| accepted & feature != 0 && accepted & needs == 0)
            .fold(0u64, |acc, &(feature, _)| acc | feature);
        if orphans == 0 {
            break;
        }
        log::info!(
            "virtio: not accepting {} (their prerequisites were not accepted)",
            FeatureNames(orphans)
        );
        accepted &= !orphans;
    }
    log::info!("virtio: driver accepts {}", FeatureNames(accepted));
    Ok(accepted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::model::QemuVirtioNet;
    use proptest::prelude::*;

    const QEMU_HUB_OFFER: u64 = QemuVirtioNet::HUB_FEATURES;
    const QEMU_TAP_OFFER: u64 = QemuVirtioNet::TAP_FEATURES;

    #[test]
    fn accepts_the_intersection_plus_required() {
        let accepted = negotiate(QEMU_HUB_OFFER, NET_DRIVER_FEATURES).unwrap();
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
        // Required features are accepted even when the caller forgot them.
        let accepted = negotiate(QEMU_HUB_OFFER, VIRTIO_NET_F_MAC).unwrap();
        assert_eq!(accepted, REQUIRED_FEATURES | VIRTIO_NET_F_MAC);
    }

    #[test]
    fn tap_offer_with_vnet_hdr_accepts_offloads() {
        let tap = QEMU_TAP_OFFER;
        let accepted = negotiate(tap, NET_DRIVER_FEATURES).unwrap();
        assert_eq!(accepted & tap & NET_DRIVER_FEATURES, accepted);
        assert_ne!(accepted & VIRTIO_NET_F_HOST_TSO4, 0);
        assert_ne!(accepted & VIRTIO_NET_F_GUEST_TSO6, 0);
        assert_eq!(accepted & VIRTIO_NET_F_HOST_ECN, 0, "not wanted");
    }

    #[test]
    fn prerequisites_are_enforced_transitively() {
        // A device offering CTRL_RX and CTRL_RX_EXTRA but no CTRL_VQ (a broken offer):
        // both go, in two passes.
        let offer = REQUIRED_FEATURES | VIRTIO_NET_F_CTRL_RX | VIRTIO_NET_F_CTRL_RX_EXTRA;
        let accepted = negotiate(offer, offer).unwrap();
        assert_eq!(accepted, REQUIRED_FEATURES);
        // TSO without checksum offload is dropped.
        let offer = REQUIRED_FEATURES | VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_GUEST_TSO4;
        assert_eq!(negotiate(offer, offer).unwrap(), REQUIRED_FEATURES);
        // TSO wanted but checksum not wanted: TSO is dropped too.
        let offer = offer | VIRTIO_NET_F_CSUM | VIRTIO_NET_F_GUEST_CSUM;
        let wanted = VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_GUEST_TSO4;
        assert_eq!(negotiate(offer, wanted).unwrap(), REQUIRED_FEATURES);
    }

    #[test]
    fn refuses_legacy_devices() {
        let err = negotiate(QEMU_HUB_OFFER & !VIRTIO_F_VERSION_1, NET_DRIVER_FEATURES).unwrap_err();
        assert!(matches!(err, VirtioError::NotModern { .. }));
        assert!(err.to_string().contains("VERSION_1"), "{err}");
    }

    #[test]
    fn refuses_devices_that_bypass_the_iommu() {
        let err = negotiate(
            QEMU_HUB_OFFER & !VIRTIO_F_ACCESS_PLATFORM,
            NET_DRIVER_FEATURES,
        )
        .unwrap_err();
        assert!(matches!(err, VirtioError::NoAccessPlatform { .. }));
        let msg = err.to_string();
        assert!(msg.contains("iommu_platform=on"), "{msg}");
        assert!(msg.contains("ACCESS_PLATFORM"), "{msg}");
    }

    #[test]
    fn names_known_and_unknown_bits() {
        assert_eq!(FeatureNames(0).to_string(), "(none)");
        assert_eq!(
            FeatureNames(VIRTIO_NET_F_MAC | VIRTIO_F_VERSION_1 | (1 << 50)).to_string(),
            "MAC|VERSION_1|bit 50"
        );
        // Every named mask is a single distinct bit.
        for (i, &(m, name)) in NAMES.iter().enumerate() {
            assert_eq!(m.count_ones(), 1, "{name}");
            assert!(NAMES[i + 1..].iter().all(|&(o, _)| o != m), "{name}");
        }
    }

    proptest! {
        #[test]
        fn negotiation_is_a_consistent_subset(offered in any::<u64>(), wanted in any::<u64>()) {
            let offered = offered | REQUIRED_FEATURES;
            let accepted = negotiate(offered, wanted).unwrap();
            // Never accepts what was not offered; always has the required bits.
            prop_assert_eq!(accepted & !offered, 0);
            prop_assert_eq!(accepted & REQUIRED_FEATURES, REQUIRED_FEATURES);
            prop_assert_eq!(accepted & !(wanted | REQUIRED_FEATURES), 0);
            // Every accepted feature has its prerequisites.
            for &(feature, needs) in DEPENDS_ON_ANY {
                prop_assert!(accepted & feature == 0 || accepted & needs != 0);
            }
        }
    }
}
