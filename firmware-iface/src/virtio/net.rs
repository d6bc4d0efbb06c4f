//! virtio-net device configuration (virtio 1.2 §5.1.4) and control virtqueue commands
//! (§5.1.6.5).

use super::features::{
    VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_CTRL_RX_EXTRA, VIRTIO_NET_F_HASH_REPORT, VIRTIO_NET_F_MAC,
    VIRTIO_NET_F_MQ, VIRTIO_NET_F_MTU, VIRTIO_NET_F_RSS, VIRTIO_NET_F_STATUS,
};
use super::regs::*;
use super::VirtioError;
use crate::mmio::NarrowMmio;

/// How many times [`read_net_config`] reads the configuration before giving up on a
/// device whose `config_generation` keeps changing.
pub const MAX_CONFIG_READ_ATTEMPTS: u32 = 16;

/// The virtio-net device configuration fields tenge uses; `None` for a field whose feature
/// was not negotiated (the field is then absent or meaningless, §5.1.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetConfig {
    /// Station MAC address (`VIRTIO_NET_F_MAC`).
    pub mac: Option<[u8; 6]>,
    /// `VIRTIO_NET_S_*` (`VIRTIO_NET_F_STATUS`).
    pub status: Option<u16>,
    /// Most queue pairs (`VIRTIO_NET_F_MQ` or `VIRTIO_NET_F_RSS`).
    pub max_virtqueue_pairs: Option<u16>,
    /// Maximum MTU (`VIRTIO_NET_F_MTU`).
    pub mtu: Option<u16>,
    /// Most bytes of an RSS key (`VIRTIO_NET_F_RSS`).
    pub rss_max_key_size: Option<u8>,
    /// Most entries of an RSS indirection table (`VIRTIO_NET_F_RSS`).
    pub rss_max_indirection_table_length: Option<u16>,
    /// `VIRTIO_NET_RSS_HASH_TYPE_*` the device hashes (`VIRTIO_NET_F_RSS` or
    /// `VIRTIO_NET_F_HASH_REPORT`).
    pub supported_hash_types: Option<u32>,
}

impl NetConfig {
    /// Whether the link is up. Without `VIRTIO_NET_F_STATUS` the link is assumed up
    /// (§5.1.4.2: "If the driver does not negotiate the VIRTIO_NET_F_STATUS feature, it
    /// SHOULD assume the link is active").
    pub fn link_up(&self) -> bool {
        self.status.is_none_or(|s| s & VIRTIO_NET_S_LINK_UP != 0)
    }
}

/// Reads the virtio-net configuration from `device` (offset 0 = the device configuration
/// structure), reading only fields whose feature is in `features` (QEMU sizes the
/// structure by the offered features and reads past it return all ones).
///
/// The read is consistent: `config_generation` (in `common`) is read before and after, and
/// the whole read is repeated while it changes (virtio 1.2 §2.5.1, §4.1.4.3.1). Each field
/// is read at its natural width: the MAC as six bytes, the rest as 16-bit values.
///
/// # Errors
/// [`VirtioError::ConfigUnstable`] after [`MAX_CONFIG_READ_ATTEMPTS`] changing reads.
pub fn read_net_config(
    common: &impl NarrowMmio,
    device: &impl NarrowMmio,
    features: u64,
) -> Result<NetConfig, VirtioError> {
    for _ in 0..MAX_CONFIG_READ_ATTEMPTS {
        let before = common.read8(CONFIG_GENERATION);
        let has = |f: u64| features & f != 0;
        let config = NetConfig {
            mac: has(VIRTIO_NET_F_MAC).then(|| {
                let mut mac = [0u8; 6];
                for (i, b) in (0u32..).zip(mac.iter_mut()) {
                    *b = device.read8(NET_CFG_MAC + i);
                }
                mac
            }),
            status: has(VIRTIO_NET_F_STATUS).then(|| device.read16(NET_CFG_STATUS)),
            max_virtqueue_pairs: has(VIRTIO_NET_F_MQ | VIRTIO_NET_F_RSS)
                .then(|| device.read16(NET_CFG_MAX_VIRTQUEUE_PAIRS)),
            mtu: has(VIRTIO_NET_F_MTU).then(|| device.read16(NET_CFG_MTU)),
            rss_max_key_size: has(VIRTIO_NET_F_RSS).then(|| device.read8(NET_CFG_RSS_MAX_KEY_SIZE)),
            rss_max_indirection_table_length: has(VIRTIO_NET_F_RSS)
                .then(|| device.read16(NET_CFG_RSS_MAX_INDIRECTION_TABLE_LENGTH)),
            supported_hash_types: has(VIRTIO_NET_F_RSS | VIRTIO_NET_F_HASH_REPORT)
                .then(|| device.read32(NET_CFG_SUPPORTED_HASH_TYPES)),
        };
        if common.read8(CONFIG_GENERATION) == before {
            return Ok(config);
        }
    }
    Err(VirtioError::ConfigUnstable {
        attempts: MAX_CONFIG_READ_ATTEMPTS,
    })
}

// ---- control virtqueue (virtio 1.2 §5.1.6.5) ----
//
// A command is one chain: a device-readable part `class, command, data...` and a
// device-writable 1-byte `ack` (`struct virtio_net_ctrl`). With VERSION_1 the split into
// descriptors is free (§2.6.4); QEMU gathers the readable part into one buffer
// (`virtio_net_handle_ctrl_iov`).

/// Class: receive filtering modes (needs `VIRTIO_NET_F_CTRL_RX`).
pub const VIRTIO_NET_CTRL_RX: u8 = 0;
/// RX command: promiscuous mode on/off.
pub const VIRTIO_NET_CTRL_RX_PROMISC: u8 = 0;
/// RX command: receive all multicast on/off.
pub const VIRTIO_NET_CTRL_RX_ALLMULTI: u8 = 1;
/// RX command: receive all unicast on/off (needs `CTRL_RX_EXTRA`).
pub const VIRTIO_NET_CTRL_RX_ALLUNI: u8 = 2;
/// RX command: drop all multicast (needs `CTRL_RX_EXTRA`).
pub const VIRTIO_NET_CTRL_RX_NOMULTI: u8 = 3;
/// RX command: drop all unicast (needs `CTRL_RX_EXTRA`).
pub const VIRTIO_NET_CTRL_RX_NOUNI: u8 = 4;
/// RX command: drop broadcast (needs `CTRL_RX_EXTRA`).
pub const VIRTIO_NET_CTRL_RX_NOBCAST: u8 = 5;
/// Class: MAC address filtering.
pub const VIRTIO_NET_CTRL_MAC: u8 = 1;
/// MAC command: replace the unicast and multicast filter tables (needs `CTRL_RX`).
pub const VIRTIO_NET_CTRL_MAC_TABLE_SET: u8 = 0;
/// MAC command: set the station address (needs `CTRL_MAC_ADDR`).
pub const VIRTIO_NET_CTRL_MAC_ADDR_SET: u8 = 1;
/// `ack` value: the command succeeded.
pub const VIRTIO_NET_CTRL_ACK_OK: u8 = 0;
/// `ack` value: the command failed.
pub const VIRTIO_NET_CTRL_ACK_ERR: u8 = 1;
/// Length of the device-writable `ack` buffer.
pub const CTRL_ACK_LEN: usize = 1;
/// Value to put in the `ack` buffer before posting a command, so a device that never
/// writes it is not read as success (OK is 0).
pub const CTRL_ACK_UNSET: u8 = 0xff;

/// A receive mode switch of the `VIRTIO_NET_CTRL_RX` class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxMode {
    /// Receive every frame.
    Promisc,
    /// Receive every multicast frame.
    AllMulti,
    /// Receive every unicast frame.
    AllUni,
    /// Receive no multicast frame.
    NoMulti,
    /// Receive no unicast frame.
    NoUni,
    /// Receive no broadcast frame.
    NoBcast,
}

impl RxMode {
    /// The command byte.
    pub const fn command(self) -> u8 {
        match self {
            RxMode::Promisc => VIRTIO_NET_CTRL_RX_PROMISC,
            RxMode::AllMulti => VIRTIO_NET_CTRL_RX_ALLMULTI,
            RxMode::AllUni => VIRTIO_NET_CTRL_RX_ALLUNI,
            RxMode::NoMulti => VIRTIO_NET_CTRL_RX_NOMULTI,
            RxMode::NoUni => VIRTIO_NET_CTRL_RX_NOUNI,
            RxMode::NoBcast => VIRTIO_NET_CTRL_RX_NOBCAST,
        }
    }

    /// The feature that must have been negotiated to send it (§5.1.6.5.1).
    pub const fn required_feature(self) -> u64 {
        match self {
            RxMode::Promisc | RxMode::AllMulti => VIRTIO_NET_F_CTRL_RX,
            _ => VIRTIO_NET_F_CTRL_RX_EXTRA,
        }
    }
}

/// The device-readable part of an RX mode command: `class, command, on` (§5.1.6.5.1).
pub const fn ctrl_rx_mode(mode: RxMode, on: bool) -> [u8; 3] {
    [VIRTIO_NET_CTRL_RX, mode.command(), on as u8]
}

/// The device-readable part of `VIRTIO_NET_CTRL_MAC_TABLE_SET` (§5.1.6.5.2): class,
/// command, then two `struct virtio_net_ctrl_mac { le32 entries; u8 macs[entries][6]; }`,
/// unicast first, multicast second. Needs `VIRTIO_NET_F_CTRL_RX`.
///
/// QEMU keeps 64 entries in total (`MAC_TABLE_ENTRIES`); with more unicast (multicast)
/// entries it sets its unicast (multicast) overflow flag and accepts every such frame.
pub fn ctrl_mac_table_set(unicast: &[[u8; 6]], multicast: &[[u8; 6]]) -> Vec<u8> {
    let mut cmd = Vec::with_capacity(2 + 8 + 6 * (unicast.len() + multicast.len()));
    cmd.push(VIRTIO_NET_CTRL_MAC);
    cmd.push(VIRTIO_NET_CTRL_MAC_TABLE_SET);
    for table in [unicast, multicast] {
        // A table longer than u32::MAX entries cannot exist in memory.
        cmd.extend_from_slice(&(table.len() as u32).to_le_bytes());
        for mac in table {
            cmd.extend_from_slice(mac);
        }
    }
    cmd
}

/// The device-readable part of `VIRTIO_NET_CTRL_MAC_ADDR_SET` (§5.1.6.5.2): class,
/// command, the 6-byte address. Needs `VIRTIO_NET_F_CTRL_MAC_ADDR`.
pub const fn ctrl_mac_addr_set(mac: [u8; 6]) -> [u8; 8] {
    [
        VIRTIO_NET_CTRL_MAC,
        VIRTIO_NET_CTRL_MAC_ADDR_SET,
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5],
    ]
}

/// Class: multiqueue and receive-side scaling (needs `VIRTIO_NET_F_MQ`, `VIRTIO_NET_F_RSS`
/// or `VIRTIO_NET_F_HASH_REPORT`).
pub const VIRTIO_NET_CTRL_MQ: u8 = 4;
/// Sets how many queue pairs the device uses (§5.1.6.5.5, needs `VIRTIO_NET_F_MQ`).
pub const VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET: u8 = 0;
/// Sets the RSS key, indirection table and hash types (§5.1.6.5.7, needs
/// `VIRTIO_NET_F_RSS`).
pub const VIRTIO_NET_CTRL_MQ_RSS_CONFIG: u8 = 1;
/// Sets the hash key and types for hash reporting only (§5.1.6.5.6.4, needs
/// `VIRTIO_NET_F_HASH_REPORT`).
pub const VIRTIO_NET_CTRL_MQ_HASH_CONFIG: u8 = 2;
/// Fewest queue pairs `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET` takes.
pub const VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN: u16 = 1;
/// Most queue pairs `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET` takes (and the most
/// `max_virtqueue_pairs` may say, §5.1.4).
pub const VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX: u16 = 0x8000;

/// The device-readable part of `VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET` (§5.1.6.5.5): class,
/// command, `le16 virtqueue_pairs`.
pub const fn ctrl_mq_vq_pairs_set(pairs: u16) -> [u8; 4] {
    let p = pairs.to_le_bytes();
    [
        VIRTIO_NET_CTRL_MQ,
        VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
        p[0],
        p[1],
    ]
}

/// The device-readable part of `VIRTIO_NET_CTRL_MQ_RSS_CONFIG` (§5.1.6.5.7.1) or, with
/// `hash_only`, `VIRTIO_NET_CTRL_MQ_HASH_CONFIG` (§5.1.6.5.6.4): class, command, then
/// `struct virtio_net_rss_config { le32 hash_types; le16 indirection_table_mask; le16
/// unclassified_queue; le16 indirection_table[mask + 1]; le16 max_tx_vq; u8
/// hash_key_length; u8 hash_key_data[]; }`. The hash form has the same layout with a
/// one-entry table and zero queues (§5.1.6.5.6.4: `struct virtio_net_hash_config`, whose
/// reserved fields sit where the RSS form has its mask, queue, table and `max_tx_vq`).
///
/// The caller checks `table` (a power of two of at most 0x8000 entries) and `key` (at most
/// 255 bytes); this only lays them out. Unclassified frames (not IP, or of a type not
/// hashed) go to RX queue `unclassified_queue`.
pub fn ctrl_mq_rss_config(
    hash_types: u32,
    table: &[u16],
    unclassified_queue: u16,
    max_tx_vq: u16,
    key: &[u8],
    hash_only: bool,
) -> Vec<u8> {
    let mut cmd = Vec::with_capacity(2 + 4 + 4 + 2 * table.len() + 3 + key.len());
    cmd.push(VIRTIO_NET_CTRL_MQ);
    cmd.push(if hash_only {
        VIRTIO_NET_CTRL_MQ_HASH_CONFIG
    } else {
        VIRTIO_NET_CTRL_MQ_RSS_CONFIG
    });
    cmd.extend_from_slice(&hash_types.to_le_bytes());
    if hash_only {
        // reserved[4] (le16 x 4 in the spec: where mask, unclassified queue, a one-entry
        // table and max_tx_vq would be).
        cmd.extend_from_slice(&[0; 8]);
    } else {
        let mask = table.len().saturating_sub(1) as u16;
        cmd.extend_from_slice(&mask.to_le_bytes());
        cmd.extend_from_slice(&unclassified_queue.to_le_bytes());
        for q in table {
            cmd.extend_from_slice(&q.to_le_bytes());
        }
        cmd.extend_from_slice(&max_tx_vq.to_le_bytes());
    }
    cmd.push(key.len() as u8);
    cmd.extend_from_slice(key);
    cmd
}

/// The device's answer in the `ack` byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtrlAck {
    /// `VIRTIO_NET_CTRL_ACK_OK`.
    Ok,
    /// `VIRTIO_NET_CTRL_ACK_ERR`: the device refused the command (QEMU: unknown command, a
    /// feature not negotiated, or a malformed body).
    Err,
    /// Any other value, [`CTRL_ACK_UNSET`] included: the device did not answer.
    Other(u8),
}

impl CtrlAck {
    /// Interprets the `ack` byte.
    pub const fn from_byte(ack: u8) -> Self {
        match ack {
            VIRTIO_NET_CTRL_ACK_OK => CtrlAck::Ok,
            VIRTIO_NET_CTRL_ACK_ERR => CtrlAck::Err,
            other => CtrlAck::Other(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::Access;
    use crate::virtio::model::QemuVirtioNet;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x7e, 0x00, 0x01];

    #[test]
    fn mq_commands_are_laid_out_as_the_spec_structs() {
        assert_eq!(ctrl_mq_vq_pairs_set(4), [4, 0, 4, 0]);
        let key = [0xaa; 40];
        let c = ctrl_mq_rss_config(0x3f, &[0, 1, 2, 3], 0, 4, &key, false);
        // class, command, hash_types, mask, unclassified_queue, table, max_tx_vq, key.
        assert_eq!(
            &c[..2],
            &[VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_RSS_CONFIG]
        );
        assert_eq!(&c[2..6], &0x3fu32.to_le_bytes());
        assert_eq!(&c[6..8], &3u16.to_le_bytes());
        assert_eq!(&c[8..10], &[0, 0]);
        assert_eq!(&c[10..18], &[0, 0, 1, 0, 2, 0, 3, 0]);
        assert_eq!(&c[18..20], &4u16.to_le_bytes());
        assert_eq!(c[20], 40);
        assert_eq!(&c[21..], &key);
        // The hash form: hash_types, 8 reserved bytes, key (QEMU reads it as a one-entry
        // table: 4 + 2 + 2 + 2 + 2 + 1 bytes before the key).
        let h = ctrl_mq_rss_config(0x3f, &[], 0, 0, &key, true);
        assert_eq!(
            &h[..2],
            &[VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_HASH_CONFIG]
        );
        assert_eq!(h.len(), 2 + 4 + 8 + 1 + 40);
        assert_eq!(h[14], 40);
    }

    #[test]
    fn reads_the_rss_limits_with_rss() {
        let dev = QemuVirtioNet::new(MAC, QemuVirtioNet::HUB_FEATURES | VIRTIO_NET_F_RSS);
        dev.model().set_net_config(|c| {
            c[0x11] = 40;
            c[0x12..0x14].copy_from_slice(&128u16.to_le_bytes());
            c[0x14..0x18].copy_from_slice(&0x1ffu32.to_le_bytes());
        });
        let config = read_net_config(&dev.common, &dev.device, VIRTIO_NET_F_RSS).unwrap();
        assert_eq!(config.rss_max_key_size, Some(40));
        assert_eq!(config.rss_max_indirection_table_length, Some(128));
        assert_eq!(config.supported_hash_types, Some(0x1ff));
        let config = read_net_config(&dev.common, &dev.device, VIRTIO_NET_F_MAC).unwrap();
        assert_eq!(config.supported_hash_types, None);
    }

    #[test]
    fn reads_mac_and_status_at_natural_width() {
        let dev = QemuVirtioNet::new(MAC, QemuVirtioNet::HUB_FEATURES);
        let features = VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS;
        let config = read_net_config(&dev.common, &dev.device, features).unwrap();
        assert_eq!(config.mac, Some(MAC));
        assert_eq!(config.status, Some(VIRTIO_NET_S_LINK_UP));
        assert_eq!(config.max_virtqueue_pairs, None);
        assert_eq!(config.mtu, None);
        assert!(config.link_up());
        // Six byte reads and one 16-bit read, nothing wider (§4.1.3.1).
        let widths: Vec<(u32, u8)> = dev
            .device
            .log_with_widths()
            .iter()
            .map(|(a, w)| (a.offset(), *w))
            .collect();
        assert_eq!(
            widths,
            vec![(0, 1), (1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 2)]
        );
        // config_generation read before and after.
        assert_eq!(dev.common.reads_of(CONFIG_GENERATION), 2);
    }

    #[test]
    fn unnegotiated_fields_are_not_read() {
        let dev = QemuVirtioNet::new(MAC, QemuVirtioNet::HUB_FEATURES);
        let config = read_net_config(&dev.common, &dev.device, 0).unwrap();
        assert_eq!(config, NetConfig::default());
        assert!(config.link_up(), "no STATUS feature: assume the link is up");
        assert!(dev.device.log().is_empty());
    }

    #[test]
    fn mtu_and_queue_pairs_when_negotiated() {
        // Without MTU offered QEMU's configuration ends after max_virtqueue_pairs and the
        // mtu field reads all ones: why fields are read only when negotiated.
        let dev = QemuVirtioNet::new(MAC, QemuVirtioNet::HUB_FEATURES);
        let config = read_net_config(&dev.common, &dev.device, VIRTIO_NET_F_MTU).unwrap();
        assert_eq!(config.mtu, Some(0xffff));

        let offer = QemuVirtioNet::HUB_FEATURES | VIRTIO_NET_F_MTU | VIRTIO_NET_F_MQ;
        let dev = QemuVirtioNet::new(MAC, offer);
        dev.model().set_net_config(|c| {
            c[8..10].copy_from_slice(&4u16.to_le_bytes());
            c[10..12].copy_from_slice(&9000u16.to_le_bytes());
            c[6] = 0;
        });
        let f = VIRTIO_NET_F_STATUS | VIRTIO_NET_F_MQ | VIRTIO_NET_F_MTU;
        let config = read_net_config(&dev.common, &dev.device, f).unwrap();
        assert_eq!(config.max_virtqueue_pairs, Some(4));
        assert_eq!(config.mtu, Some(9000));
        assert!(!config.link_up());
    }

    #[test]
    fn retries_while_the_generation_changes() {
        let dev = QemuVirtioNet::new(MAC, QemuVirtioNet::HUB_FEATURES);
        let new_mac = [0x52, 0x54, 0x00, 0, 0, 0x99];
        // The MAC changes after the third byte of the first read.
        dev.model().change_mac_after_device_reads(3, new_mac);
        let config = read_net_config(&dev.common, &dev.device, VIRTIO_NET_F_MAC).unwrap();
        assert_eq!(config.mac, Some(new_mac));
        assert_eq!(dev.common.reads_of(CONFIG_GENERATION), 4);
        let gens: Vec<u32> = dev
            .common
            .log()
            .iter()
            .filter_map(|a| match a {
                Access::Read(CONFIG_GENERATION, v) => Some(*v),
                _ => None,
            })
            .collect();
        assert_eq!(gens, vec![0, 1, 1, 1]);
    }

    #[test]
    fn gives_up_on_a_config_that_never_settles() {
        let dev = QemuVirtioNet::new(MAC, QemuVirtioNet::HUB_FEATURES);
        dev.common.on_read(CONFIG_GENERATION, {
            let mut g = 0u32;
            move |_, _| {
                g += 1;
                g
            }
        });
        let err = read_net_config(&dev.common, &dev.device, VIRTIO_NET_F_MAC).unwrap_err();
        assert_eq!(
            err,
            VirtioError::ConfigUnstable {
                attempts: MAX_CONFIG_READ_ATTEMPTS
            }
        );
    }

    #[test]
    fn rx_mode_commands() {
        assert_eq!(ctrl_rx_mode(RxMode::Promisc, true), [0, 0, 1]);
        assert_eq!(ctrl_rx_mode(RxMode::Promisc, false), [0, 0, 0]);
        assert_eq!(ctrl_rx_mode(RxMode::AllMulti, true), [0, 1, 1]);
        assert_eq!(ctrl_rx_mode(RxMode::NoBcast, true), [0, 5, 1]);
        assert_eq!(RxMode::Promisc.required_feature(), VIRTIO_NET_F_CTRL_RX);
        assert_eq!(
            RxMode::AllUni.required_feature(),
            VIRTIO_NET_F_CTRL_RX_EXTRA
        );
    }

    #[test]
    fn mac_table_layout() {
        let uni = [[1, 2, 3, 4, 5, 6]];
        let multi = [[0x01, 0, 0x5e, 0, 0, 1], [0x33, 0x33, 0, 0, 0, 1]];
        let cmd = ctrl_mac_table_set(&uni, &multi);
        let mut want = vec![1, 0, 1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 2, 0, 0, 0];
        want.extend_from_slice(&multi[0]);
        want.extend_from_slice(&multi[1]);
        assert_eq!(cmd, want);
        // Empty tables: two zero counts (what clears the filter).
        assert_eq!(
            ctrl_mac_table_set(&[], &[]),
            vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(ctrl_mac_addr_set(MAC), [1, 1, 0x52, 0x54, 0, 0x7e, 0, 1]);
    }

    #[test]
    fn ack_bytes() {
        assert_eq!(CtrlAck::from_byte(0), CtrlAck::Ok);
        assert_eq!(CtrlAck::from_byte(1), CtrlAck::Err);
        assert_eq!(
            CtrlAck::from_byte(CTRL_ACK_UNSET),
            CtrlAck::Other(CTRL_ACK_UNSET)
        );
    }
}
