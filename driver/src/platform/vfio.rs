//! VFIO: the container (one per process, shared by every port), devices, BARs, config
//! space, and the type-1 IOMMU's IOVA ranges.
//!
//! rust-vmm's `vfio-ioctls` (without its KVM feature) does the container, group, device,
//! region-info, DMA map and IRQ ioctls. It leaves gaps this module fills: it has no BAR mmap,
//! it does not read the IOMMU's valid IOVA ranges (VFIO_IOMMU_GET_INFO), its
//! `region_read/write` log and swallow I/O errors, and its "group not viable" error does not
//! say which device is in the way (pci.rs checks sysfs first for that). This is one of the
//! three modules allowed `unsafe`: the ioctl and the borrowed device fd.

use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use memmap2::{MmapOptions, MmapRaw};
use vfio_bindings::bindings::vfio::{
    vfio_iommu_type1_info, VFIO_IOMMU_INFO_CAPS, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX,
    VFIO_PCI_REQ_IRQ_INDEX, VFIO_REGION_INFO_FLAG_MMAP,
};
use vfio_ioctls::{VfioContainer, VfioOps};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::ioctl::ioctl_with_mut_ptr;

use crate::error::{DmaError, VfioError};
use crate::platform::dma::DmaMapper;
use crate::platform::mmio::Bar;
use crate::platform::pci::{check_vfio_ready, PciAddress, SysfsDevice};

// VFIO_IOMMU_GET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 12), include/uapi/linux/vfio.h.
const VFIO_TYPE: u32 = b';' as u32;
const VFIO_BASE: u32 = 100;
mod ioctl_nr {
    #![allow(missing_docs)]
    use super::{VFIO_BASE, VFIO_TYPE};
    vmm_sys_util::ioctl_io_nr!(VFIO_IOMMU_GET_INFO, VFIO_TYPE, VFIO_BASE + 12);
}
use ioctl_nr::VFIO_IOMMU_GET_INFO;

/// Where tenge starts placing IOVAs: above 4 GiB, so the device's 64-bit addressing is
/// exercised (RDBAH/TDBAH non-zero) and the x86 MSI window below 4 GiB stays clear.
const IOVA_BASE: u64 = 1 << 32;
/// Every IOVA allocation is aligned to a 2 MiB hugepage.
const IOVA_ALIGN: u64 = 2 << 20;

/// One valid IOVA range, inclusive end, as VFIO reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IovaRange {
    /// First valid IOVA.
    pub start: u64,
    /// Last valid IOVA.
    pub end: u64,
}

/// What the type-1 IOMMU reported.
#[derive(Clone, Debug)]
pub struct IommuInfo {
    /// Supported IOMMU page sizes, one bit each.
    pub page_sizes: u64,
    /// Valid IOVA ranges; empty if the kernel gave no IOVA-range capability (then any IOVA
    /// the page tables can hold is assumed valid).
    pub ranges: Vec<IovaRange>,
}

impl fmt::Display for IommuInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{:#x}-{:#x}", r.start, r.end)?;
        }
        Ok(())
    }
}

/// Parses the capability chain a VFIO_IOMMU_GET_INFO call filled into `buf`
/// (include/uapi/linux/vfio.h: `vfio_info_cap_header` chain starting at `cap_offset`).
fn parse_iommu_info(buf: &[u8]) -> IommuInfo {
    let u32_at = |o: usize| -> Option<u32> {
        buf.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |o: usize| -> Option<u64> {
        buf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    let flags = u32_at(4).unwrap_or(0);
    let page_sizes = u64_at(8).unwrap_or(0);
    let mut ranges = Vec::new();
    if flags & VFIO_IOMMU_INFO_CAPS != 0 {
        let mut off = u32_at(16).unwrap_or(0) as usize;
        // Each hop must move forward, so a malformed chain cannot loop.
        let mut last = 0usize;
        while off > last && off + 8 <= buf.len() {
            let id = u32_at(off).unwrap_or(0) & 0xffff;
            let next = u32_at(off + 4).unwrap_or(0) as usize;
            if id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE {
                let n = u32_at(off + 8).unwrap_or(0) as usize;
                for i in 0..n {
                    let o = off + 16 + i * 16;
                    if let (Some(start), Some(end)) = (u64_at(o), u64_at(o + 8)) {
                        ranges.push(IovaRange { start, end });
                    }
                }
            }
            last = off;
            off = next;
        }
    }
    IommuInfo { page_sizes, ranges }
}

/// Picks the lowest `size`-byte, 2 MiB-aligned window at or above `from` inside `ranges`.
fn place_iova(ranges: &[IovaRange], from: u64, size: u64) -> Option<u64> {
    let align = |x: u64| x.checked_add(IOVA_ALIGN - 1).map(|v| v & !(IOVA_ALIGN - 1));
    if ranges.is_empty() {
        return align(from);
    }
    let mut sorted = ranges.to_vec();
    sorted.sort_by_key(|r| r.start);
    sorted.into_iter().find_map(|r| {
        let start = align(from.max(r.start))?;
        let last = start.checked_add(size)?.checked_sub(1)?;
        (last <= r.end).then_some(start)
    })
}

/// The process's VFIO container: one IOMMU address space shared by every tenge port, so a
/// packet buffer mapped once can be sent by any port (a forwarder needs exactly that).
pub struct Container {
    vfio: Arc<VfioContainer>,
    state: Mutex<ContainerState>,
}

struct ContainerState {
    info: Option<IommuInfo>,
    next_iova: u64,
    devices: usize,
}

static CONTAINER: Mutex<Weak<Container>> = Mutex::new(Weak::new());

impl Container {
    /// The process-wide container, opened on first use and closed when the last port and
    /// DMA region using it are gone.
    pub fn shared() -> Result<Arc<Container>, VfioError> {
        let mut slot = CONTAINER.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = slot.upgrade() {
            return Ok(c);
        }
        let vfio = VfioContainer::new(None).map_err(VfioError::Container)?;
        let c = Arc::new(Container {
            vfio: Arc::new(vfio),
            state: Mutex::new(ContainerState {
                info: None,
                next_iova: IOVA_BASE,
                devices: 0,
            }),
        });
        *slot = Arc::downgrade(&c);
        Ok(c)
    }

    /// Reads the IOMMU's page sizes and valid IOVA ranges (needs a group attached).
    fn query_iommu_info(&self) -> Result<IommuInfo, std::io::Error> {
        // First call learns the size the capability chain needs, second fills it.
        let mut argsz = std::mem::size_of::<vfio_iommu_type1_info>();
        for _ in 0..2 {
            let words = argsz.div_ceil(8);
            let mut buf = vec![0u64; words];
            let bytes = words * 8;
            buf[0] = argsz as u64; // argsz (u32) then flags (u32) = 0, little-endian
                                   // SAFETY: `buf` is a writable, 8-byte-aligned buffer of `bytes` >= argsz bytes, the
                                   // layout VFIO_IOMMU_GET_INFO expects (vfio_iommu_type1_info + capability chain);
                                   // the kernel writes at most argsz bytes.
            let ret = unsafe {
                ioctl_with_mut_ptr(
                    &*self.vfio,
                    VFIO_IOMMU_GET_INFO(),
                    buf.as_mut_ptr().cast::<u8>(),
                )
            };
            if ret < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let raw: Vec<u8> = buf
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .take(bytes)
                .collect();
            let needed = u32::from_le_bytes(raw[0..4].try_into().unwrap()) as usize;
            if needed <= argsz {
                return Ok(parse_iommu_info(&raw));
            }
            argsz = needed;
        }
        Err(std::io::Error::other("VFIO_IOMMU_GET_INFO kept growing"))
    }

    /// The IOMMU info, read once a device has been attached.
    pub fn iommu_info(&self) -> Option<IommuInfo> {
        self.state.lock().ok()?.info.clone()
    }

    fn attached(&self) {
        let info = match self.query_iommu_info() {
            Ok(i) => i,
            Err(e) => {
                log::warn!("VFIO_IOMMU_GET_INFO failed ({e}); assuming any IOVA is valid");
                IommuInfo {
                    page_sizes: 0,
                    ranges: Vec::new(),
                }
            }
        };
        log::debug!(
            "IOMMU page sizes {:#x}, valid IOVA ranges: {info}",
            info.page_sizes
        );
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.devices += 1;
        st.info = Some(info);
    }
}

impl DmaMapper for Container {
    unsafe fn map(&self, vaddr: *mut u8, len: usize) -> Result<u64, DmaError> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.devices == 0 {
            return Err(DmaError::IommuMap {
                iova: 0,
                size: len,
                reason: "no device is attached to the VFIO container yet: open a port before allocating DMA memory".into(),
            });
        }
        let ranges = st
            .info
            .as_ref()
            .map(|i| i.ranges.clone())
            .unwrap_or_default();
        let iova =
            place_iova(&ranges, st.next_iova, len as u64).ok_or_else(|| VfioError::NoIova {
                size: len as u64,
                ranges: st.info.as_ref().map(|i| i.to_string()).unwrap_or_default(),
            })?;
        // SAFETY: the caller guarantees (DmaMapper::map's contract) that [vaddr, vaddr+len)
        // is a live mapping it keeps until after `unmap` and reaches only through raw
        // pointers, which is vfio_dma_map's contract.
        unsafe { self.vfio.vfio_dma_map(iova, len, vaddr) }.map_err(|e| DmaError::IommuMap {
            iova,
            size: len,
            reason: e.to_string(),
        })?;
        st.next_iova = iova + (len as u64).div_ceil(IOVA_ALIGN) * IOVA_ALIGN;
        Ok(iova)
    }

    fn unmap(&self, iova: u64, len: usize) {
        let devices = self.state.lock().map_or(1, |st| st.devices);
        if devices == 0 {
            // The last device's group has left the container, and the kernel dropped
            // every mapping with its IOMMU domain (a pool outliving its ports): there is
            // nothing left to unmap, and VFIO would answer EINVAL.
            log::debug!(
                "IOMMU unmap of {len} bytes at {iova:#x}: no device attached, already gone"
            );
            return;
        }
        if let Err(e) = self.vfio.vfio_dma_unmap(iova, len) {
            log::warn!("IOMMU unmap of {len} bytes at {iova:#x} failed: {e}");
        }
    }
}

/// A PCI device opened through VFIO.
pub struct VfioDevice {
    addr: PciAddress,
    ids: SysfsDevice,
    open: Arc<OpenDevice>,
}

/// The device's file and its place in the container, shared by the [`VfioDevice`] and every
/// BAR mapped from it: a mapping of the device file keeps the file open, and VFIO refuses to
/// take the group out of its container while it is (`VFIO_GROUP_UNSET_CONTAINER`: EBUSY).
/// So the device is closed, and its group leaves the container, when the last of them goes:
/// a port dropped before the queue handles it gave out no longer strands its group.
struct OpenDevice {
    /// Dropped by hand in `Drop`, before `group_link` goes.
    device: std::mem::ManuallyDrop<vfio_ioctls::VfioDevice>,
    container: Arc<Container>,
    /// The directory vfio-ioctls is given as the device's sysfs path (see
    /// [`GroupLink`]).
    group_link: Option<GroupLink>,
}

/// A directory `<tmp>/tenge-vfio-<pid>-<n>/<address>` holding only an `iommu_group` link
/// to the device's group, which vfio-ioctls reads instead of the device's sysfs directory.
/// It reads that link twice: when it opens the device, and in its `Drop` after closing
/// the device fd, where it unwraps the answer. Once a device being removed (hot-unplug) is
/// closed, the kernel finishes the removal and the sysfs directory goes, so the second
/// read failed and vfio-ioctls panicked (seen in the removal test, vfio-ioctls 0.10
/// `vfio_device.rs` `Drop`). This link stays until the device is dropped.
struct GroupLink {
    root: std::path::PathBuf,
    device_dir: std::path::PathBuf,
}

impl GroupLink {
    fn new(addr: PciAddress, group: u32) -> std::io::Result<Self> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("tenge-vfio-{}-{n}", std::process::id()));
        let device_dir = root.join(addr.to_string());
        std::fs::create_dir_all(&device_dir)?;
        let link = GroupLink { root, device_dir };
        std::os::unix::fs::symlink(
            format!("/sys/kernel/iommu_groups/{group}"),
            link.device_dir.join("iommu_group"),
        )?;
        Ok(link)
    }
}

impl Drop for GroupLink {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// PCI config space offsets (PCI Local Bus spec 3.0, §6.1).
const PCI_COMMAND: u64 = 0x04;
const PCI_COMMAND_MEMORY: u16 = 1 << 1;
const PCI_COMMAND_MASTER: u16 = 1 << 2;
const PCI_COMMAND_INTX_DISABLE: u16 = 1 << 10;

impl VfioDevice {
    /// Opens the device at `addr`: checks sysfs, joins the shared container, gets the
    /// device fd.
    pub fn open(addr: PciAddress) -> Result<Self, VfioError> {
        let ids = check_vfio_ready(addr)?;
        let container = Container::shared()?;
        let ops: Arc<dyn VfioOps> = container.vfio.clone();
        let group_link = match GroupLink::new(addr, ids.iommu_group) {
            Ok(l) => Some(l),
            Err(e) => {
                log::warn!(
                    "{addr}: cannot make the IOMMU group link in {} ({e}); using sysfs (a \
                     hot-unplug of the device may then end the process)",
                    std::env::temp_dir().display()
                );
                None
            }
        };
        let sysfs = addr.sysfs_path();
        let path = match &group_link {
            Some(l) => l.device_dir.as_path(),
            None => Path::new(&sysfs),
        };
        let device = vfio_ioctls::VfioDevice::new(path, ops, false)
            .map_err(|source| VfioError::OpenDevice { addr, source })?;
        container.attached();
        Ok(VfioDevice {
            addr,
            ids,
            open: Arc::new(OpenDevice {
                device: std::mem::ManuallyDrop::new(device),
                container,
                group_link,
            }),
        })
    }

    /// The device's PCI address.
    pub fn addr(&self) -> PciAddress {
        self.addr
    }

    /// PCI vendor and device IDs.
    pub fn ids(&self) -> (u16, u16) {
        (self.ids.vendor, self.ids.device)
    }

    /// The container this device is attached to (it maps DMA memory).
    pub fn container(&self) -> &Arc<Container> {
        &self.open.container
    }

    fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the raw fd belongs to `self.open.device`, which lives as long as the returned
        // borrow (tied to &self) and does not close it before being dropped.
        unsafe { BorrowedFd::borrow_raw(self.open.device.as_raw_fd()) }
    }

    fn config_offset(&self) -> u64 {
        self.open
            .device
            .get_region_offset(VFIO_PCI_CONFIG_REGION_INDEX)
    }

    /// Reads `buf.len()` bytes of config space at `off`.
    pub fn config_read(&self, off: u64, buf: &mut [u8]) -> Result<(), VfioError> {
        let n =
            rustix::io::pread(self.fd(), &mut *buf, self.config_offset() + off).map_err(|e| {
                VfioError::Io {
                    op: "config read",
                    addr: self.addr,
                    source: e.into(),
                }
            })?;
        if n != buf.len() {
            return Err(VfioError::Io {
                op: "config read",
                addr: self.addr,
                source: std::io::ErrorKind::UnexpectedEof.into(),
            });
        }
        Ok(())
    }

    /// Writes `buf` to config space at `off`.
    pub fn config_write(&self, off: u64, buf: &[u8]) -> Result<(), VfioError> {
        let n = rustix::io::pwrite(self.fd(), buf, self.config_offset() + off).map_err(|e| {
            VfioError::Io {
                op: "config write",
                addr: self.addr,
                source: e.into(),
            }
        })?;
        if n != buf.len() {
            return Err(VfioError::Io {
                op: "config write",
                addr: self.addr,
                source: std::io::ErrorKind::WriteZero.into(),
            });
        }
        Ok(())
    }

    /// Reads a 16-bit config register.
    pub fn config_read_u16(&self, off: u64) -> Result<u16, VfioError> {
        let mut b = [0u8; 2];
        self.config_read(off, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Enables memory decoding and bus mastering (the device may then DMA), and disables
    /// legacy INTx: tenge polls or uses MSI-X.
    pub fn enable_bus_master(&self) -> Result<(), VfioError> {
        let cmd = self.config_read_u16(PCI_COMMAND)?;
        let new = cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE;
        self.config_write(PCI_COMMAND, &new.to_le_bytes())
    }

    /// Disables bus mastering: after this the device can no longer DMA.
    pub fn disable_bus_master(&self) -> Result<(), VfioError> {
        let cmd = self.config_read_u16(PCI_COMMAND)?;
        self.config_write(PCI_COMMAND, &(cmd & !PCI_COMMAND_MASTER).to_le_bytes())
    }

    /// Maps memory BAR `bar` (0..=5) for register access.
    pub fn map_bar(&self, bar: u32) -> Result<Bar, VfioError> {
        let flags = self.open.device.get_region_flags(bar);
        let size = self.open.device.get_region_size(bar);
        let offset = self.open.device.get_region_offset(bar);
        if size == 0 {
            return Err(VfioError::Bar {
                addr: self.addr,
                bar,
                why: "absent".into(),
            });
        }
        if flags & VFIO_REGION_INFO_FLAG_MMAP == 0 {
            return Err(VfioError::Bar {
                addr: self.addr,
                bar,
                why: "not mappable (an I/O port BAR, or VFIO forbids mmap of it)".into(),
            });
        }
        let map: MmapRaw = MmapOptions::new()
            .offset(offset)
            .len(size as usize)
            .map_raw(self.open.device.as_raw_fd())
            .map_err(|source| VfioError::Io {
                op: "BAR mmap",
                addr: self.addr,
                source,
            })?;
        Ok(Bar::new(map, bar, self.open.clone()))
    }
}

/// How a device's interrupts reach tenge (VFIO_DEVICE_SET_IRQS, one eventfd a vector).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqMode {
    /// MSI-X: a vector per queue (and one for the device's other causes).
    Msix,
    /// None: the port polls (a fallback when the device or the kernel has no vectors).
    Polled,
}

/// An interrupt's eventfd (non-blocking): VFIO adds 1 to it per interrupt.
pub struct IrqFd(EventFd);

impl IrqFd {
    /// A new eventfd nothing signals yet.
    pub fn new() -> std::io::Result<Self> {
        EventFd::new(EFD_NONBLOCK).map(IrqFd)
    }

    /// Takes the count (interrupts since the last take), 0 if none, without blocking.
    pub fn take(&self) -> u64 {
        self.0.read().unwrap_or(0)
    }

    /// Adds 1 (wakes a waiter as an interrupt would).
    pub fn signal(&self) {
        let _ = self.0.write(1);
    }
}

impl std::os::fd::AsFd for IrqFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd belongs to the EventFd inside `self`, which closes it only when
        // dropped; the borrow is tied to &self.
        unsafe { BorrowedFd::borrow_raw(self.0.as_raw_fd()) }
    }
}

/// The eventfds VFIO signals, one per vector, and how they were set up.
pub struct IrqVectors {
    /// MSI-X or none.
    pub mode: IrqMode,
    /// Vector i's eventfd.
    pub fds: Vec<Arc<IrqFd>>,
}

impl VfioDevice {
    /// An eventfd VFIO signals when the kernel asks the user to release the device (the
    /// device is being removed: `VFIO_PCI_REQ_IRQ_INDEX`, signalled by vfio-pci's
    /// `vfio_pci_core_request` until the device fd is closed). None if the kernel has no
    /// such interrupt for the device, logged.
    pub fn request_irq(&self) -> Option<Arc<IrqFd>> {
        if self
            .open
            .device
            .get_irq_info(VFIO_PCI_REQ_IRQ_INDEX)
            .is_none_or(|i| i.count == 0)
        {
            log::debug!("{}: no VFIO request interrupt", self.addr);
            return None;
        }
        let fd = Arc::new(IrqFd::new().ok()?);
        match self
            .open
            .device
            .enable_irq(VFIO_PCI_REQ_IRQ_INDEX, vec![&fd.0])
        {
            Ok(()) => Some(fd),
            Err(e) => {
                log::warn!(
                    "{}: VFIO request interrupt refused ({e}): a removal of the device will \
                     not be noticed",
                    self.addr
                );
                None
            }
        }
    }

    /// Vectors VFIO reports for MSI-X (the device's table size) and for MSI.
    pub fn irq_counts(&self) -> (u32, u32) {
        let count = |i| self.open.device.get_irq_info(i).map_or(0, |irq| irq.count);
        (
            count(VFIO_PCI_MSIX_IRQ_INDEX),
            count(VFIO_PCI_MSI_IRQ_INDEX),
        )
    }

    /// Enables `want` MSI-X vectors, each signalling its own eventfd (VFIO_DEVICE_SET_IRQS,
    /// DATA_EVENTFD | ACTION_TRIGGER); the kernel programs the device's MSI-X table. If the
    /// device has too few MSI-X vectors or the kernel refuses, none, logged: the port then
    /// polls (its waits end by timeout). MSI's single vector would serve one queue and no
    /// link events, so tenge does not fall back to it.
    ///
    /// # Errors
    /// [`VfioError::Irq`] only if no eventfd can be made (the process is out of file
    /// descriptors).
    pub fn enable_irqs(&self, want: u32) -> Result<IrqVectors, VfioError> {
        let new_fds = |n: u32| -> Result<Vec<Arc<IrqFd>>, VfioError> {
            (0..n)
                .map(|_| {
                    IrqFd::new().map(Arc::new).map_err(|source| VfioError::Irq {
                        addr: self.addr,
                        what: "eventfd",
                        source,
                    })
                })
                .collect()
        };
        let (msix, msi) = self.irq_counts();
        if msix >= want && want > 0 {
            let fds = new_fds(want)?;
            match self
                .open
                .device
                .enable_irq(VFIO_PCI_MSIX_IRQ_INDEX, fds.iter().map(|f| &f.0).collect())
            {
                Ok(()) => {
                    log::debug!("{}: MSI-X with {want} of {msix} vectors", self.addr);
                    return Ok(IrqVectors {
                        mode: IrqMode::Msix,
                        fds,
                    });
                }
                Err(e) => log::warn!(
                    "{}: VFIO refused {want} MSI-X vectors ({e}: {})",
                    self.addr,
                    std::io::Error::last_os_error()
                ),
            }
        } else {
            log::warn!(
                "{}: the device has {msix} MSI-X vectors (MSI: {msi}), {want} wanted",
                self.addr
            );
        }
        log::warn!(
            "{}: no interrupts (no usable MSI-X): the port polls, and its waits end by \
             timeout",
            self.addr
        );
        Ok(IrqVectors {
            mode: IrqMode::Polled,
            fds: Vec::new(),
        })
    }
}

impl Drop for VfioDevice {
    fn drop(&mut self) {
        // Stop DMA before the IOMMU mappings and buffers go away; the device itself is
        // closed when its last BAR mapping goes too (`OpenDevice`).
        let _ = self.disable_bus_master();
    }
}

impl Drop for OpenDevice {
    fn drop(&mut self) {
        // The device's group leaves the container right after this (vfio-ioctls), and
        // with the last one the kernel drops every mapping.
        {
            let mut st = self
                .container
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            st.devices = st.devices.saturating_sub(1);
        }
        // SAFETY: `device` is not used after this: Drop runs once, and no other method
        // can run during or after it.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.device) };
        // Only now may the group link go: vfio-ioctls read it while dropping.
        self.group_link.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap_chain(ranges: &[(u64, u64)]) -> Vec<u8> {
        let mut b = vec![0u8; 24];
        let cap_off = 24u32;
        let total = 24 + 16 + 16 * ranges.len();
        b[0..4].copy_from_slice(&(total as u32).to_le_bytes());
        b[4..8].copy_from_slice(&(VFIO_IOMMU_INFO_CAPS | 1).to_le_bytes());
        b[8..16].copy_from_slice(&0x4020_1000u64.to_le_bytes());
        b[16..20].copy_from_slice(&cap_off.to_le_bytes());
        b.extend_from_slice(&(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE as u16).to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes()); // next: end of chain
        b.extend_from_slice(&(ranges.len() as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for (s, e) in ranges {
            b.extend_from_slice(&s.to_le_bytes());
            b.extend_from_slice(&e.to_le_bytes());
        }
        b
    }

    #[test]
    fn parses_iova_ranges_from_the_capability_chain() {
        let info = parse_iommu_info(&cap_chain(&[
            (0, 0xfedf_ffff),
            (0xfef0_0000, 0xffff_ffff_ffff),
        ]));
        assert_eq!(info.page_sizes, 0x4020_1000);
        assert_eq!(
            info.ranges,
            vec![
                IovaRange {
                    start: 0,
                    end: 0xfedf_ffff
                },
                IovaRange {
                    start: 0xfef0_0000,
                    end: 0xffff_ffff_ffff
                }
            ]
        );
    }

    #[test]
    fn group_link_names_the_device_and_its_group_until_dropped() {
        let addr: PciAddress = "0000:01:00.0".parse().unwrap();
        let link = GroupLink::new(addr, 17).unwrap();
        assert_eq!(link.device_dir.file_name().unwrap(), "0000:01:00.0");
        let target = std::fs::read_link(link.device_dir.join("iommu_group")).unwrap();
        assert_eq!(target.file_name().unwrap(), "17");
        let root = link.root.clone();
        drop(link);
        assert!(!root.exists());
    }

    #[test]
    fn truncated_or_looping_chains_do_not_panic() {
        let full = cap_chain(&[(0, 0xffff)]);
        for n in 0..full.len() {
            let _ = parse_iommu_info(&full[..n]);
        }
        let mut looping = cap_chain(&[(0, 0xffff)]);
        looping[28..32].copy_from_slice(&24u32.to_le_bytes()); // next points at itself
        assert_eq!(parse_iommu_info(&looping).ranges.len(), 1);
    }

    #[test]
    fn iova_placement_respects_ranges_and_alignment() {
        let r = [
            IovaRange {
                start: 0,
                end: 0xfedf_ffff,
            },
            IovaRange {
                start: 0xfef0_0000,
                end: (1 << 39) - 1,
            },
        ];
        assert_eq!(place_iova(&r, 1 << 32, 4096), Some(1 << 32));
        assert_eq!(
            place_iova(&r, (1 << 32) + 1, 4096),
            Some((1 << 32) + IOVA_ALIGN)
        );
        // Does not fit at the top of a 39-bit space.
        assert_eq!(place_iova(&r, (1 << 39) - IOVA_ALIGN, 2 * IOVA_ALIGN), None);
        // A window below the reserved MSI hole is skipped if too small.
        assert_eq!(place_iova(&r, 0xfec0_0000, 4 << 20), Some(0xff00_0000));
        assert_eq!(place_iova(&[], 5, 1), Some(IOVA_ALIGN));
    }
}
