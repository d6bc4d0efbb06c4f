//! A model of QEMU 10.0's modern virtio-net-pci for tests: the common configuration and
//! the device configuration as two [`RecordedRegs`] driven by one shared state, plus the
//! PCI configuration space QEMU presents.
//!
//! Modelled after QEMU's behaviour (`hw/virtio/virtio-pci.c` `virtio_pci_common_read`/
//! `_write`, `hw/virtio/virtio.c` `virtio_set_status`/`virtio_validate_features`/
//! `virtio_queue_set_num`, `hw/net/virtio-net.c`), written from its described behaviour and
//! checked against QEMU 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1, `-M q35`, device on
//! the root bus) by reading and writing the registers through the device's
//! `VIRTIO_PCI_CAP_PCI_CFG` window with port I/O from QMP (`o`/`i`) while the guest was
//! stopped: the configuration space bytes, the offered feature words, queue sizes,
//! `queue_notify_off`, the device configuration and the behaviours below are what that
//! QEMU did.
//! - `device_status`: writing 0 resets at once (all queues disabled, sizes back to their
//!   defaults, features cleared); setting FEATURES_OK is refused (the write is dropped) when
//!   the device offers ACCESS_PLATFORM and the driver did not accept it;
//! - feature words: `device_feature_select` 0/1 select the 64 offered bits, others read 0;
//!   accepted features are the written ones masked by the offered ones;
//! - queues: `queue_size` reads the current size (default 256 RX, 256 TX, 64 control);
//!   a write of 0 or above 1024 is ignored, any other value is taken (100 and 512 too: QEMU
//!   checks neither the power of two nor the offered maximum); a reset restores the
//!   default; `queue_notify_off` reads the queue index;
//!   `queue_enable` written with 1 enables, any other value sets DEVICE_NEEDS_RESET;
//!   `num_queues` is the highest queue with a size, plus one (3 for one queue pair);
//! - device configuration: MAC, status (LINK_UP), max_virtqueue_pairs, mtu; bytes past the
//!   configuration length read as 0xff. QEMU sizes it by the offered features: 8 bytes
//!   (MAC, status) by default, 10 with MQ, 12 with MTU (`host_mtu=`);
//! - `driver_feature` writes are stored while FEATURES_OK is set but no longer change the
//!   negotiated features;
//!   `config_generation` moves when the model changes the configuration.

use std::sync::{Arc, Mutex, MutexGuard};

use super::features::*;
use super::regs::*;
use crate::mmio::RecordedRegs;

/// QEMU's largest virtqueue (`VIRTQUEUE_MAX_SIZE`).
pub const QEMU_VIRTQUEUE_MAX_SIZE: u16 = 1024;

/// One virtqueue as the model holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelQueue {
    /// Size after reset (QEMU's `vring.num_default`).
    pub default_size: u16,
    /// Current size (`vring.num`).
    pub size: u16,
    /// Enabled through `queue_enable`.
    pub enabled: bool,
    /// MSI-X vector.
    pub msix_vector: u16,
    /// Descriptor area IOVA as written (low, high).
    pub desc: [u32; 2],
    /// Driver area IOVA.
    pub driver: [u32; 2],
    /// Device area IOVA.
    pub device: [u32; 2],
}

impl ModelQueue {
    fn new(size: u16) -> Self {
        ModelQueue {
            default_size: size,
            size,
            enabled: false,
            msix_vector: VIRTIO_MSI_NO_VECTOR,
            desc: [0; 2],
            driver: [0; 2],
            device: [0; 2],
        }
    }

    fn reset(&mut self) {
        *self = ModelQueue::new(self.default_size);
    }

    /// The descriptor area IOVA.
    pub fn desc_iova(&self) -> u64 {
        u64::from(self.desc[0]) | u64::from(self.desc[1]) << 32
    }

    /// The driver area IOVA.
    pub fn driver_iova(&self) -> u64 {
        u64::from(self.driver[0]) | u64::from(self.driver[1]) << 32
    }

    /// The device area IOVA.
    pub fn device_iova(&self) -> u64 {
        u64::from(self.device[0]) | u64::from(self.device[1]) << 32
    }
}

/// The device state behind both register files.
#[derive(Clone, Debug)]
pub struct VirtioPciModel {
    /// Offered features.
    pub host_features: u64,
    dfselect: u32,
    gfselect: u32,
    written_features: [u32; 2],
    negotiated: u64,
    /// `device_status`.
    pub status: u8,
    /// `config_generation`.
    pub generation: u8,
    /// `config_msix_vector`.
    pub config_vector: u16,
    queue_sel: u16,
    /// The virtqueues (RX 0, TX 1, control 2 for one queue pair).
    pub queues: Vec<ModelQueue>,
    /// The device configuration bytes (`struct virtio_net_config`).
    pub net_config: Vec<u8>,
    config_len: usize,
    pending_mac: Option<(u32, [u8; 6])>,
}

/// MSI-X vectors of the modelled device (QEMU's virtio-net-pci default for one queue
/// pair: `vectors=4`, what the capability at 0x98 says).
pub const MODEL_MSIX_VECTORS: u16 = 4;

fn model_vector(value: u32) -> u16 {
    let v = value as u16;
    if v < MODEL_MSIX_VECTORS {
        v
    } else {
        VIRTIO_MSI_NO_VECTOR
    }
}

impl VirtioPciModel {
    /// The features the driver accepted (written bits masked by the offered ones, as of
    /// the last write before FEATURES_OK).
    pub fn accepted(&self) -> u64 {
        self.negotiated
    }

    /// Changes the device configuration and moves `config_generation`, as QEMU's
    /// `virtio_notify_config` does.
    pub fn set_net_config(&mut self, change: impl FnOnce(&mut [u8])) {
        change(&mut self.net_config);
        self.generation = self.generation.wrapping_add(1);
    }

    /// After `reads` more reads of the device configuration, the MAC becomes `mac` and the
    /// generation moves: a configuration change racing with the driver's read.
    pub fn change_mac_after_device_reads(&mut self, reads: u32, mac: [u8; 6]) {
        self.pending_mac = Some((reads, mac));
    }

    fn reset(&mut self) {
        self.status = 0;
        self.written_features = [0; 2];
        self.negotiated = 0;
        self.queue_sel = 0;
        self.config_vector = VIRTIO_MSI_NO_VECTOR;
        for q in &mut self.queues {
            q.reset();
        }
    }

    fn queue(&mut self) -> Option<&mut ModelQueue> {
        self.queues.get_mut(usize::from(self.queue_sel))
    }

    fn read_common(&mut self, offset: u32) -> u32 {
        let q = self.queues.get(usize::from(self.queue_sel)).copied();
        match offset {
            DEVICE_FEATURE_SELECT => self.dfselect,
            DEVICE_FEATURE => match self.dfselect {
                0 => self.host_features as u32,
                1 => (self.host_features >> 32) as u32,
                _ => 0,
            },
            DRIVER_FEATURE_SELECT => self.gfselect,
            DRIVER_FEATURE => self
                .written_features
                .get(self.gfselect as usize)
                .copied()
                .unwrap_or(0),
            CONFIG_MSIX_VECTOR => u32::from(self.config_vector),
            NUM_QUEUES => self
                .queues
                .iter()
                .rposition(|q| q.size != 0)
                .map_or(0, |i| i as u32 + 1),
            DEVICE_STATUS => u32::from(self.status),
            CONFIG_GENERATION => u32::from(self.generation),
            QUEUE_SELECT => u32::from(self.queue_sel),
            QUEUE_SIZE => q.map_or(0, |q| u32::from(q.size)),
            QUEUE_MSIX_VECTOR => q.map_or(u32::from(VIRTIO_MSI_NO_VECTOR), |q| {
                u32::from(q.msix_vector)
            }),
            QUEUE_ENABLE => q.map_or(0, |q| u32::from(q.enabled)),
            // QEMU maps queues in order: the notify offset is the queue index.
            QUEUE_NOTIFY_OFF => u32::from(self.queue_sel),
            QUEUE_DESC => q.map_or(0, |q| q.desc[0]),
            0x24 => q.map_or(0, |q| q.desc[1]),
            QUEUE_DRIVER => q.map_or(0, |q| q.driver[0]),
            0x2c => q.map_or(0, |q| q.driver[1]),
            QUEUE_DEVICE => q.map_or(0, |q| q.device[0]),
            0x34 => q.map_or(0, |q| q.device[1]),
            _ => 0,
        }
    }

    fn write_common(&mut self, offset: u32, value: u32) {
        match offset {
            DEVICE_FEATURE_SELECT => self.dfselect = value,
            DRIVER_FEATURE_SELECT => self.gfselect = value,
            DRIVER_FEATURE => {
                if let Some(w) = self.written_features.get_mut(self.gfselect as usize) {
                    *w = value;
                    // virtio_set_features refuses changes once FEATURES_OK is set.
                    if self.status & STATUS_FEATURES_OK == 0 {
                        let written = u64::from(self.written_features[0])
                            | u64::from(self.written_features[1]) << 32;
                        self.negotiated = written & self.host_features;
                    }
                }
            }
            // QEMU's virtio_pci_set_vector: a vector beyond the device's table reads
            // back as VIRTIO_MSI_NO_VECTOR.
            CONFIG_MSIX_VECTOR => self.config_vector = model_vector(value),
            DEVICE_STATUS => self.write_status(value as u8),
            QUEUE_SELECT if value < 1024 => self.queue_sel = value as u16,
            QUEUE_SIZE => {
                if let Some(q) = self.queue() {
                    let v = value as u16;
                    if (v != 0) == (q.size != 0) && v <= QEMU_VIRTQUEUE_MAX_SIZE {
                        q.size = v;
                    }
                }
            }
            QUEUE_MSIX_VECTOR => {
                if let Some(q) = self.queue() {
                    q.msix_vector = model_vector(value);
                }
            }
            QUEUE_ENABLE => {
                if value == 1 {
                    if let Some(q) = self.queue() {
                        q.enabled = true;
                    }
                } else {
                    // virtio_error: "wrong value for queue_enable".
                    self.status |= STATUS_DEVICE_NEEDS_RESET;
                }
            }
            QUEUE_DESC | 0x24 | QUEUE_DRIVER | 0x2c | QUEUE_DEVICE | 0x34 => {
                if let Some(q) = self.queue() {
                    let half = ((offset >> 2) & 1) as usize;
                    let area = match offset & !4 {
                        QUEUE_DESC => &mut q.desc,
                        QUEUE_DRIVER => &mut q.driver,
                        _ => &mut q.device,
                    };
                    area[half] = value;
                }
            }
            _ => {}
        }
    }

    fn write_status(&mut self, value: u8) {
        let accepted = self.accepted();
        let sets_features_ok =
            self.status & STATUS_FEATURES_OK == 0 && value & STATUS_FEATURES_OK != 0;
        if accepted & VIRTIO_F_VERSION_1 != 0
            && sets_features_ok
            && self.host_features & VIRTIO_F_ACCESS_PLATFORM != 0
            && accepted & VIRTIO_F_ACCESS_PLATFORM == 0
        {
            // virtio_validate_features fails: the status write is dropped.
            return;
        }
        self.status = value;
        if value == 0 {
            self.reset();
        }
    }

    fn read_device(&mut self, offset: u32) -> u32 {
        if let Some((left, mac)) = self.pending_mac {
            if left == 0 {
                self.pending_mac = None;
                self.set_net_config(|c| c[..6].copy_from_slice(&mac));
            } else {
                self.pending_mac = Some((left - 1, mac));
            }
        }
        let byte = |i: usize| {
            if i < self.config_len {
                self.net_config.get(i).copied().unwrap_or(0)
            } else {
                0xff
            }
        };
        let at = offset as usize;
        u32::from_le_bytes([byte(at), byte(at + 1), byte(at + 2), byte(at + 3)])
    }
}

/// A QEMU virtio-net-pci: `common` is the common configuration structure, `device` the
/// device configuration, both at offset 0.
pub struct QemuVirtioNet {
    /// The common configuration registers.
    pub common: RecordedRegs,
    /// The device configuration registers.
    pub device: RecordedRegs,
    state: Arc<Mutex<VirtioPciModel>>,
}

impl std::fmt::Debug for QemuVirtioNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QemuVirtioNet")
            .field("model", &*self.model())
            .finish()
    }
}

impl QemuVirtioNet {
    /// What QEMU 10.0 offers for `virtio-net-pci,disable-legacy=on,iommu_platform=on` on a
    /// backend without a virtio-net header (hub, dgram, user, or tap with `vnet_hdr=off`):
    /// `virtio_net_get_features` clears CSUM, GUEST_CSUM, the TSO/ECN/UFO/USO bits when the
    /// peer has no vnet header. Measured: `0x0000_0103_30bf_8024`. `packed=on` adds
    /// RING_PACKED; `event_idx=off` and `mrg_rxbuf=off` remove their bits; `mq=on` adds
    /// MQ, `host_mtu=N` adds MTU.
    pub const HUB_FEATURES: u64 = VIRTIO_F_VERSION_1
        | VIRTIO_F_ACCESS_PLATFORM
        | VIRTIO_F_INDIRECT_DESC
        | VIRTIO_F_EVENT_IDX
        | VIRTIO_F_RING_RESET
        | VIRTIO_NET_F_MAC
        | VIRTIO_NET_F_MRG_RXBUF
        | VIRTIO_NET_F_STATUS
        | VIRTIO_NET_F_CTRL_VQ
        | VIRTIO_NET_F_CTRL_RX
        | VIRTIO_NET_F_CTRL_VLAN
        | VIRTIO_NET_F_CTRL_RX_EXTRA
        | VIRTIO_NET_F_GUEST_ANNOUNCE
        | VIRTIO_NET_F_CTRL_MAC_ADDR
        | VIRTIO_NET_F_CTRL_GUEST_OFFLOADS;

    /// What it offers on a tap backend with `vnet_hdr=on`: the hub set plus the checksum,
    /// TSO, ECN, UFO and USO offloads. Measured: `0x01c0_0103_30bf_ffa7`.
    pub const TAP_FEATURES: u64 = Self::HUB_FEATURES
        | VIRTIO_NET_F_CSUM
        | VIRTIO_NET_F_GUEST_CSUM
        | VIRTIO_NET_F_GUEST_TSO4
        | VIRTIO_NET_F_GUEST_TSO6
        | VIRTIO_NET_F_GUEST_ECN
        | VIRTIO_NET_F_GUEST_UFO
        | VIRTIO_NET_F_HOST_TSO4
        | VIRTIO_NET_F_HOST_TSO6
        | VIRTIO_NET_F_HOST_ECN
        | VIRTIO_NET_F_HOST_UFO
        | VIRTIO_NET_F_GUEST_USO4
        | VIRTIO_NET_F_GUEST_USO6
        | VIRTIO_NET_F_HOST_USO;

    /// A device with MAC `mac` offering `host_features`, one queue pair (RX 256, TX 256,
    /// control 64), link up, right after reset.
    pub fn new(mac: [u8; 6], host_features: u64) -> Self {
        Self::with_queue_sizes(mac, host_features, &[256, 256, 64])
    }

    /// Like [`new`](Self::new) with the given queue sizes (QEMU: `rx_queue_size`,
    /// `tx_queue_size`; the control queue is always 64).
    pub fn with_queue_sizes(mac: [u8; 6], host_features: u64, sizes: &[u16]) -> Self {
        let mut net_config = vec![0u8; 24];
        net_config[..6].copy_from_slice(&mac);
        net_config[6..8].copy_from_slice(&VIRTIO_NET_S_LINK_UP.to_le_bytes());
        net_config[8..10].copy_from_slice(&1u16.to_le_bytes());
        // QEMU sizes the configuration by the offered features (measured: 8 bytes by
        // default, 10 with MQ, 12 with MTU; up to supported_hash_types, 24, with RSS or
        // HASH_REPORT: `cfg_size_params` in hw/net/virtio-net.c).
        let config_len = [
            (VIRTIO_NET_F_MAC, 6),
            (VIRTIO_NET_F_STATUS, 8),
            (VIRTIO_NET_F_MQ, 10),
            (VIRTIO_NET_F_MTU, 12),
            (VIRTIO_NET_F_RSS, 24),
            (VIRTIO_NET_F_HASH_REPORT, 24),
        ]
        .iter()
        .filter(|&&(f, _)| host_features & f != 0)
        .map(|&(_, end)| end)
        .max()
        .unwrap_or(6);
        let model = VirtioPciModel {
            host_features,
            dfselect: 0,
            gfselect: 0,
            written_features: [0; 2],
            negotiated: 0,
            status: 0,
            generation: 0,
            config_vector: VIRTIO_MSI_NO_VECTOR,
            queue_sel: 0,
            queues: sizes.iter().map(|&s| ModelQueue::new(s)).collect(),
            net_config,
            config_len,
            pending_mac: None,
        };
        let state = Arc::new(Mutex::new(model));
        let common = RecordedRegs::new();
        for offset in (0..COMMON_CFG_LEN).step_by(2) {
            let r = Arc::clone(&state);
            common.on_read(offset, move |_, off| lock(&r).read_common(off));
            let w = Arc::clone(&state);
            common.on_write(offset, move |_, off, v| lock(&w).write_common(off, v));
        }
        // CONFIG_GENERATION is the odd byte next to DEVICE_STATUS.
        let r = Arc::clone(&state);
        common.on_read(CONFIG_GENERATION, move |_, off| lock(&r).read_common(off));
        common.on_write(CONFIG_GENERATION, |_, _, _| {});
        let device = RecordedRegs::new();
        for offset in 0..24 {
            let r = Arc::clone(&state);
            device.on_read(offset, move |_, off| lock(&r).read_device(off));
            device.on_write(offset, |_, _, _| {});
        }
        QemuVirtioNet {
            common,
            device,
            state,
        }
    }

    /// The device state, for assertions and changes.
    pub fn model(&self) -> MutexGuard<'_, VirtioPciModel> {
        lock(&self.state)
    }
}

fn lock(state: &Mutex<VirtioPciModel>) -> MutexGuard<'_, VirtioPciModel> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The 256-byte PCI configuration space of QEMU 10.0's `virtio-net-pci,disable-legacy=on`
/// on the root bus of a q35 machine (no PCIe capability there), as read from QEMU 10.0.2.
///
/// QEMU adds the capabilities in this order (`virtio_pci_device_plugged`): common (0x40),
/// ISR (0x50), device (0x60), notify (0x70, 20 bytes), the PCI-config access window (0x84,
/// 20 bytes), then MSI-X (0x98, 4 vectors); `pci_add_capability` links each new one at the
/// head of the list, so the chain runs 0x98 → 0x84 → 0x70 → 0x60 → 0x50 → 0x40. All four
/// structures are in the 64-bit prefetchable BAR 4: common 0x0000, ISR 0x1000, device
/// 0x2000 (0x1000 bytes each), notify 0x3000 (0x1000 bytes: 4 bytes per queue for 1024
/// queues, `notify_off_multiplier` 4). MSI-X table and PBA are in BAR 1.
pub fn qemu_virtio_net_config_space() -> Vec<u8> {
    let mut c = vec![0u8; PCI_CONFIG_SPACE_SIZE];
    let rows: [(usize, [u8; 16]); 11] = [
        (
            0x00,
            [
                0xf4, 0x1a, 0x41, 0x10, 0, 0, 0x10, 0, 1, 0, 0, 2, 0, 0, 0, 0,
            ],
        ),
        (
            0x20,
            [0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xf4, 0x1a, 0, 0x11],
        ),
        (0x30, [0, 0, 0, 0, 0x98, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]),
        (
            0x40,
            [9, 0x00, 16, 1, 4, 0, 0, 0, 0x00, 0x00, 0, 0, 0, 0x10, 0, 0],
        ),
        (
            0x50,
            [9, 0x40, 16, 3, 4, 0, 0, 0, 0x00, 0x10, 0, 0, 0, 0x10, 0, 0],
        ),
        (
            0x60,
            [9, 0x50, 16, 4, 4, 0, 0, 0, 0x00, 0x20, 0, 0, 0, 0x10, 0, 0],
        ),
        (
            0x70,
            [9, 0x60, 20, 2, 4, 0, 0, 0, 0x00, 0x30, 0, 0, 0, 0x10, 0, 0],
        ),
        (0x80, [4, 0, 0, 0, 9, 0x70, 20, 5, 0, 0, 0, 0, 0, 0, 0, 0]),
        (0x90, [0, 0, 0, 0, 0, 0, 0, 0, 0x11, 0x84, 3, 0, 1, 0, 0, 0]),
        (0xa0, [1, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        (0xb0, [0; 16]),
    ];
    for (at, row) in rows {
        c[at..at + 16].copy_from_slice(&row);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::NarrowMmio;

    #[test]
    fn offered_words_are_the_measured_ones() {
        assert_eq!(QemuVirtioNet::HUB_FEATURES, 0x0000_0103_30bf_8024);
        assert_eq!(QemuVirtioNet::TAP_FEATURES, 0x01c0_0103_30bf_ffa7);
    }

    #[test]
    fn config_space_ids_and_chain_head() {
        let c = qemu_virtio_net_config_space();
        assert_eq!(u16::from_le_bytes([c[0], c[1]]), VIRTIO_PCI_VENDOR_ID);
        assert_eq!(u16::from_le_bytes([c[2], c[3]]), VIRTIO_NET_PCI_DEVICE_ID);
        assert_eq!(c[PCI_CAPABILITY_LIST], 0x98);
        assert_eq!(c[0x98], PCI_CAP_ID_MSIX);
    }

    #[test]
    fn device_config_length_follows_the_offer() {
        let mac = [2, 0, 0, 0, 0, 1];
        let dev = QemuVirtioNet::new(mac, QemuVirtioNet::HUB_FEATURES);
        assert_eq!(dev.device.read16(NET_CFG_STATUS), VIRTIO_NET_S_LINK_UP);
        assert_eq!(dev.device.read16(NET_CFG_MAX_VIRTQUEUE_PAIRS), 0xffff);
        let dev = QemuVirtioNet::new(mac, QemuVirtioNet::HUB_FEATURES | VIRTIO_NET_F_MQ);
        assert_eq!(dev.device.read16(NET_CFG_MAX_VIRTQUEUE_PAIRS), 1);
        assert_eq!(dev.device.read16(NET_CFG_MTU), 0xffff);
    }

    #[test]
    fn queue_size_writes_behave_as_measured() {
        let dev = QemuVirtioNet::new([2, 0, 0, 0, 0, 1], QemuVirtioNet::HUB_FEATURES);
        dev.common.write16(QUEUE_SELECT, 0);
        for (write, read) in [(100, 100), (2048, 100), (0, 100), (512, 512)] {
            dev.common.write16(QUEUE_SIZE, write);
            assert_eq!(dev.common.read16(QUEUE_SIZE), read, "after writing {write}");
        }
        dev.common.write8(DEVICE_STATUS, 0);
        assert_eq!(dev.common.read16(QUEUE_SIZE), 256);
        dev.common.write16(QUEUE_SELECT, 3);
        assert_eq!(dev.common.read16(QUEUE_SIZE), 0);
        assert_eq!(dev.common.read16(QUEUE_NOTIFY_OFF), 3);
    }
}
