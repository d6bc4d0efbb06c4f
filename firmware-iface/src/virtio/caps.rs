//! Finding the virtio structures: a walk of the PCI capability list (virtio 1.2 §4.1.4).
//!
//! The driver reads the function's configuration space (through VFIO's config region) and
//! hands the bytes to [`parse_virtio_caps`]; nothing here touches the device. The bytes
//! come from a device, so every pointer and length is checked: a malformed chain (a loop, a
//! pointer into the header or past the image, a capability longer than the image, a
//! structure too short for its type) is an error, never a panic or an endless walk.

use super::regs::*;

/// Where one virtio structure lives: `BAR[bar] + offset`, `length` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioRegion {
    /// Offset of the capability in configuration space (for messages).
    pub cap_offset: u8,
    /// BAR index, 0-5.
    pub bar: u8,
    /// Offset of the structure within the BAR.
    pub offset: u32,
    /// Length of the structure in bytes.
    pub length: u32,
}

impl VirtioRegion {
    /// The first byte past the structure within its BAR (checked against the BAR's size
    /// by the driver before mapping).
    pub fn end(&self) -> u64 {
        u64::from(self.offset) + u64::from(self.length)
    }
}

/// The notification structure: a region plus its multiplier (§4.1.4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotifyRegion {
    /// Where the notification area is.
    pub region: VirtioRegion,
    /// Queue `q`'s doorbell is at `region.offset + queue_notify_off(q) *
    /// notify_off_multiplier` (0: all queues share one address).
    pub notify_off_multiplier: u32,
}

/// The virtio structures of one PCI function, from its capability list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioPciCaps {
    /// Common configuration (§4.1.4.3).
    pub common: VirtioRegion,
    /// Notification area (§4.1.4.4).
    pub notify: NotifyRegion,
    /// ISR status byte (§4.1.4.5).
    pub isr: VirtioRegion,
    /// Device-specific configuration (§4.1.4.6); absent for devices that have none
    /// (virtio-net always has one).
    pub device: Option<VirtioRegion>,
}

/// A malformed or incomplete capability list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapError {
    /// The image is shorter than the standard header.
    #[error(
        "PCI configuration space image is {len} bytes, shorter than the 64-byte header: \
         read the whole config region (256 bytes) through VFIO"
    )]
    ConfigTooShort {
        /// Bytes given.
        len: usize,
    },
    /// Status.CAP_LIST clear or the list pointer is 0.
    #[error(
        "the PCI function has no capability list (Status.CAP_LIST clear or pointer 0): it is \
         not a modern virtio device; check the PCI ID is 1af4:1041 (or 1af4:1000 without \
         disable-modern)"
    )]
    NoCapabilityList,
    /// A pointer into the standard header (below 0x40).
    #[error(
        "malformed capability list: pointer {ptr:#04x} (from {from:#04x}) points into the \
         standard header"
    )]
    PointerIntoHeader {
        /// Where the pointer was read.
        from: usize,
        /// The pointer.
        ptr: u8,
    },
    /// A capability that does not fit in the image.
    #[error(
        "malformed capability list: the capability at {at:#04x} ({len} bytes) runs past the \
         end of the {image_len}-byte configuration image"
    )]
    Truncated {
        /// Offset of the capability.
        at: usize,
        /// Its length (header or `cap_len`).
        len: usize,
        /// Size of the image.
        image_len: usize,
    },
    /// The chain revisits a capability.
    #[error("malformed capability list: the chain loops back to {at:#04x}")]
    Loop {
        /// The capability visited twice.
        at: usize,
    },
    /// A virtio capability whose `cap_len` is too short for its type.
    #[error(
        "virtio capability at {at:#04x} (cfg_type {cfg_type}) has cap_len {cap_len}, less \
         than the {min} bytes its structure needs"
    )]
    CapTooShort {
        /// Offset of the capability.
        at: usize,
        /// Its `cfg_type`.
        cfg_type: u8,
        /// Its `cap_len`.
        cap_len: u8,
        /// The minimum for that type.
        min: u8,
    },
    /// A structure whose `length` is too short for what the driver accesses.
    #[error(
        "virtio {what} structure (capability at {at:#04x}) is {length} bytes, less than the \
         {min} bytes virtio 1.2 §4.1.4 requires"
    )]
    RegionTooShort {
        /// Which structure.
        what: &'static str,
        /// Offset of the capability.
        at: usize,
        /// Its `length`.
        length: u32,
        /// The minimum.
        min: u32,
    },
    /// A `notify_off_multiplier` that is neither 0 nor a power of two.
    #[error(
        "virtio notify capability at {at:#04x} has notify_off_multiplier {multiplier}, \
         neither 0 nor a power of two (virtio 1.2 §4.1.4.4)"
    )]
    BadNotifyMultiplier {
        /// Offset of the capability.
        at: usize,
        /// The multiplier.
        multiplier: u32,
    },
    /// A required structure is missing.
    #[error(
        "no usable virtio {what} capability: the device is legacy-only or not virtio; start \
         it as a modern device (QEMU: -device virtio-net-pci,disable-legacy=on)"
    )]
    Missing {
        /// Which structure.
        what: &'static str,
    },
}

fn byte(config: &[u8], at: usize) -> u8 {
    config[at]
}

fn le16(config: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([config[at], config[at + 1]])
}

fn le32(config: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([config[at], config[at + 1], config[at + 2], config[at + 3]])
}

/// Walks the capability list in `config` (the function's configuration space, at least
/// the 64-byte header; normally 256 bytes) and returns the first usable common, notify,
/// ISR and device-configuration capabilities.
///
/// Follows virtio 1.2 §4.1.4: capabilities with a reserved `bar` (> 5) or an unknown
/// `cfg_type` are skipped; of several of one type the first wins (the device lists them in
/// order of preference). The two low bits of each pointer are reserved and masked (PCI
/// 3.0 §6.7).
///
/// # Errors
/// [`CapError`] for a malformed list or a missing common, notify or ISR structure.
pub fn parse_virtio_caps(config: &[u8]) -> Result<VirtioPciCaps, CapError> {
    if config.len() < usize::from(PCI_CAP_MIN_OFFSET) {
        return Err(CapError::ConfigTooShort { len: config.len() });
    }
    if le16(config, PCI_STATUS) & PCI_STATUS_CAP_LIST == 0 {
        return Err(CapError::NoCapabilityList);
    }
    let mut common = None;
    let mut notify = None;
    let mut isr = None;
    let mut device = None;

    let mut visited = [false; PCI_CONFIG_SPACE_SIZE];
    let mut from = PCI_CAPABILITY_LIST;
    let mut ptr = byte(config, from) & !3;
    if ptr == 0 {
        return Err(CapError::NoCapabilityList);
    }
    // Every step visits a new offset below 256, so the walk ends after at most 48 steps
    // (the 4-byte aligned offsets 0x40..0xfc).
    while ptr != 0 {
        if ptr < PCI_CAP_MIN_OFFSET {
            return Err(CapError::PointerIntoHeader { from, ptr });
        }
        let at = usize::from(ptr);
        if visited[at] {
            return Err(CapError::Loop { at });
        }
        visited[at] = true;
        if at + 2 > config.len() {
            return Err(CapError::Truncated {
                at,
                len: 2,
                image_len: config.len(),
            });
        }
        if byte(config, at + CAP_VNDR) == PCI_CAP_ID_VNDR {
            if let Some(cap) = parse_vendor_cap(config, at)? {
                let slot = match cap {
                    Cap::Common(_) => common.is_none().then_some(&mut common),
                    Cap::Notify(_) => notify.is_none().then_some(&mut notify),
                    Cap::Isr(_) => isr.is_none().then_some(&mut isr),
                    Cap::Device(_) => device.is_none().then_some(&mut device),
                };
                if let Some(slot) = slot {
                    *slot = Some(cap);
                }
            }
        }
        from = at + CAP_NEXT;
        ptr = byte(config, from) & !3;
    }

    let common = match common {
        Some(Cap::Common(r)) => r,
        _ => return Err(CapError::Missing { what: "common" }),
    };
    let notify = match notify {
        Some(Cap::Notify(n)) => n,
        _ => return Err(CapError::Missing { what: "notify" }),
    };
    let isr = match isr {
        Some(Cap::Isr(r)) => r,
        _ => return Err(CapError::Missing { what: "ISR" }),
    };
    let device = match device {
        Some(Cap::Device(r)) => Some(r),
        _ => None,
    };
    Ok(VirtioPciCaps {
        common,
        notify,
        isr,
        device,
    })
}

enum Cap {
    Common(VirtioRegion),
    Notify(NotifyRegion),
    Isr(VirtioRegion),
    Device(VirtioRegion),
}

/// Parses the vendor capability at `at`: `Ok(None)` for one to skip.
fn parse_vendor_cap(config: &[u8], at: usize) -> Result<Option<Cap>, CapError> {
    // The fixed part must be in the image before cap_len can be trusted.
    let header = usize::from(VIRTIO_PCI_CAP_LEN);
    if at + header > config.len() {
        return Err(CapError::Truncated {
            at,
            len: header,
            image_len: config.len(),
        });
    }
    let cap_len = byte(config, at + CAP_LEN);
    let cfg_type = byte(config, at + CAP_CFG_TYPE);
    let bar = byte(config, at + CAP_BAR);
    if !matches!(
        cfg_type,
        VIRTIO_PCI_CAP_COMMON_CFG
            | VIRTIO_PCI_CAP_NOTIFY_CFG
            | VIRTIO_PCI_CAP_ISR_CFG
            | VIRTIO_PCI_CAP_DEVICE_CFG
    ) {
        // PCI_CFG, shared memory, vendor data, reserved types: not ours (§4.1.4: "the
        // driver MUST ignore any vendor-specific capability structure which has a reserved
        // cfg_type value").
        return Ok(None);
    }
    let min = if cfg_type == VIRTIO_PCI_CAP_NOTIFY_CFG {
        VIRTIO_PCI_NOTIFY_CAP_LEN
    } else {
        VIRTIO_PCI_CAP_LEN
    };
    if cap_len < min {
        return Err(CapError::CapTooShort {
            at,
            cfg_type,
            cap_len,
            min,
        });
    }
    if at + usize::from(cap_len) > config.len() {
        return Err(CapError::Truncated {
            at,
            len: usize::from(cap_len),
            image_len: config.len(),
        });
    }
    if bar > MAX_BAR {
        // §4.1.4.1: "The driver MUST ignore any vendor-specific capability structure which
        // has a reserved bar value."
        return Ok(None);
    }
    let region = VirtioRegion {
        cap_offset: at as u8,
        bar,
        offset: le32(config, at + CAP_OFFSET),
        length: le32(config, at + CAP_LENGTH),
    };
    let need = |what: &'static str, min: u32| {
        if region.length < min {
            Err(CapError::RegionTooShort {
                what,
                at,
                length: region.length,
                min,
            })
        } else {
            Ok(())
        }
    };
    Ok(Some(match cfg_type {
        VIRTIO_PCI_CAP_COMMON_CFG => {
            need("common", COMMON_CFG_MIN_LEN)?;
            Cap::Common(region)
        }
        VIRTIO_PCI_CAP_NOTIFY_CFG => {
            // §4.1.4.4: length at least 2 (one 16-bit doorbell); multiplier 0 or 2^n.
            need("notify", 2)?;
            let multiplier = le32(config, at + CAP_NOTIFY_OFF_MULTIPLIER);
            if multiplier != 0 && !multiplier.is_power_of_two() {
                return Err(CapError::BadNotifyMultiplier { at, multiplier });
            }
            Cap::Notify(NotifyRegion {
                region,
                notify_off_multiplier: multiplier,
            })
        }
        VIRTIO_PCI_CAP_ISR_CFG => {
            need("ISR", 1)?;
            Cap::Isr(region)
        }
        _ => Cap::Device(region),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::model::qemu_virtio_net_config_space;
    use proptest::prelude::*;

    #[test]
    fn parses_qemu_layout() {
        let config = qemu_virtio_net_config_space();
        let caps = parse_virtio_caps(&config).unwrap();
        assert_eq!(
            caps.common,
            VirtioRegion {
                cap_offset: 0x40,
                bar: 4,
                offset: 0,
                length: 0x1000
            }
        );
        assert_eq!(caps.isr.offset, 0x1000);
        assert_eq!(caps.device.unwrap().offset, 0x2000);
        assert_eq!(caps.notify.region.offset, 0x3000);
        assert_eq!(caps.notify.region.length, 4 * 1024);
        assert_eq!(caps.notify.notify_off_multiplier, 4);
        assert_eq!(caps.notify.region.end(), 0x4000);
    }

    /// A config space with a capability list at 0x40 built from `caps` (each a full
    /// capability body; `cap_next` is filled in).
    fn image(caps: &[Vec<u8>]) -> Vec<u8> {
        let mut config = vec![0u8; 256];
        config[PCI_STATUS] = PCI_STATUS_CAP_LIST as u8;
        let mut at = 0x40usize;
        config[PCI_CAPABILITY_LIST] = at as u8;
        for (i, cap) in caps.iter().enumerate() {
            config[at..at + cap.len()].copy_from_slice(cap);
            let next = (at + cap.len() + 3) & !3;
            config[at + CAP_NEXT] = if i + 1 == caps.len() { 0 } else { next as u8 };
            at = next;
        }
        config
    }

    fn vcap(cfg_type: u8, bar: u8, offset: u32, length: u32, extra: Option<u32>) -> Vec<u8> {
        let len = if extra.is_some() { 20 } else { 16 };
        let mut c = vec![PCI_CAP_ID_VNDR, 0, len, cfg_type, bar, 0, 0, 0];
        c.extend_from_slice(&offset.to_le_bytes());
        c.extend_from_slice(&length.to_le_bytes());
        if let Some(m) = extra {
            c.extend_from_slice(&m.to_le_bytes());
        }
        c
    }

    fn minimal() -> Vec<Vec<u8>> {
        vec![
            vcap(VIRTIO_PCI_CAP_COMMON_CFG, 2, 0, 0x38, None),
            vcap(VIRTIO_PCI_CAP_NOTIFY_CFG, 2, 0x100, 0x100, Some(2)),
            vcap(VIRTIO_PCI_CAP_ISR_CFG, 2, 0x200, 1, None),
        ]
    }

    #[test]
    fn device_cfg_is_optional_and_first_of_a_type_wins() {
        let caps = parse_virtio_caps(&image(&minimal())).unwrap();
        assert_eq!(caps.device, None);
        assert_eq!(caps.common.bar, 2);
        let mut list = minimal();
        list.push(vcap(VIRTIO_PCI_CAP_COMMON_CFG, 3, 0, 0x1000, None));
        list.insert(0, vcap(VIRTIO_PCI_CAP_DEVICE_CFG, 1, 0x40, 8, None));
        let caps = parse_virtio_caps(&image(&list)).unwrap();
        assert_eq!(caps.common.bar, 2);
        assert_eq!(caps.device.unwrap().bar, 1);
    }

    #[test]
    fn reserved_bars_and_unknown_types_are_skipped() {
        let mut list = minimal();
        list.insert(0, vcap(VIRTIO_PCI_CAP_COMMON_CFG, 6, 0, 0x1000, None));
        list.insert(0, vcap(0x42, 0, 0, 0, None));
        list.insert(0, vcap(VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 0, Some(0)));
        let caps = parse_virtio_caps(&image(&list)).unwrap();
        assert_eq!(caps.common.bar, 2);
    }

    #[test]
    fn missing_structures_are_named() {
        let list = minimal()[1..].to_vec();
        assert_eq!(
            parse_virtio_caps(&image(&list)),
            Err(CapError::Missing { what: "common" })
        );
        let list = vec![minimal()[0].clone(), minimal()[2].clone()];
        assert_eq!(
            parse_virtio_caps(&image(&list)),
            Err(CapError::Missing { what: "notify" })
        );
        let list = minimal()[..2].to_vec();
        let err = parse_virtio_caps(&image(&list)).unwrap_err();
        assert_eq!(err, CapError::Missing { what: "ISR" });
        assert!(err.to_string().contains("disable-legacy=on"));
    }

    #[test]
    fn malformed_chains_are_errors() {
        assert_eq!(
            parse_virtio_caps(&[0; 16]),
            Err(CapError::ConfigTooShort { len: 16 })
        );
        let mut c = image(&minimal());
        c[PCI_STATUS] = 0;
        assert_eq!(parse_virtio_caps(&c), Err(CapError::NoCapabilityList));

        // A loop: the last capability points back at the first.
        let mut c = image(&minimal());
        c[0x40 + 16 + 20 + CAP_NEXT] = 0x40;
        assert_eq!(parse_virtio_caps(&c), Err(CapError::Loop { at: 0x40 }));
        // A self-loop.
        let mut c = image(&minimal());
        c[0x40 + CAP_NEXT] = 0x40;
        assert_eq!(parse_virtio_caps(&c), Err(CapError::Loop { at: 0x40 }));

        // Into the header.
        let mut c = image(&minimal());
        c[0x40 + CAP_NEXT] = 0x10;
        assert_eq!(
            parse_virtio_caps(&c),
            Err(CapError::PointerIntoHeader {
                from: 0x41,
                ptr: 0x10
            })
        );

        // A capability running off a short image.
        let c = image(&minimal());
        assert!(matches!(
            parse_virtio_caps(&c[..0x48]),
            Err(CapError::Truncated { at: 0x40, .. })
        ));
        // cap_len running off the end of the 256-byte space.
        let mut c = image(&minimal());
        c[PCI_CAPABILITY_LIST] = 0xf8;
        c[0xf8..0x100].copy_from_slice(&[PCI_CAP_ID_VNDR, 0, 16, 1, 0, 0, 0, 0]);
        assert!(matches!(
            parse_virtio_caps(&c),
            Err(CapError::Truncated { at: 0xf8, .. })
        ));

        // cap_len too short for a notify capability (no multiplier).
        let mut list = minimal();
        list[1].truncate(16);
        list[1][CAP_LEN] = 16;
        assert!(matches!(
            parse_virtio_caps(&image(&list)),
            Err(CapError::CapTooShort { min: 20, .. })
        ));
        // Common structure shorter than virtio 1.0's.
        let mut list = minimal();
        list[0] = vcap(VIRTIO_PCI_CAP_COMMON_CFG, 2, 0, 0x30, None);
        assert!(matches!(
            parse_virtio_caps(&image(&list)),
            Err(CapError::RegionTooShort { what: "common", .. })
        ));
        // A multiplier that is not a power of two.
        let mut list = minimal();
        list[1] = vcap(VIRTIO_PCI_CAP_NOTIFY_CFG, 2, 0, 0x100, Some(6));
        assert!(matches!(
            parse_virtio_caps(&image(&list)),
            Err(CapError::BadNotifyMultiplier { multiplier: 6, .. })
        ));
    }

    #[test]
    fn low_pointer_bits_are_masked() {
        let mut c = image(&minimal());
        c[PCI_CAPABILITY_LIST] = 0x43;
        assert!(parse_virtio_caps(&c).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn random_config_spaces_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let _ = parse_virtio_caps(&bytes);
        }

        #[test]
        fn corrupted_qemu_images_never_panic(
            edits in proptest::collection::vec((0x34usize..256, any::<u8>()), 1..8),
            len in 0usize..=256,
        ) {
            let mut config = qemu_virtio_net_config_space();
            for (at, v) in edits {
                config[at] = v;
            }
            config.truncate(len);
            if let Ok(caps) = parse_virtio_caps(&config) {
                // Whatever parsed respects the checks.
                prop_assert!(caps.common.bar <= MAX_BAR);
                prop_assert!(caps.common.length >= COMMON_CFG_MIN_LEN);
                prop_assert!(caps.notify.region.length >= 2);
                let m = caps.notify.notify_off_multiplier;
                prop_assert!(m == 0 || m.is_power_of_two());
            }
        }
    }
}
