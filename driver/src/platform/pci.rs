//! PCI addresses and the sysfs checks made before VFIO is touched.
//!
//! Every check here exists to turn a bare `ENOENT`/`EBUSY`/`EINVAL` from the kernel into an
//! error that tells the user what to do next.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::VfioError;

const SYSFS_PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// A PCI function address, `DDDD:BB:DD.F`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PciAddress {
    /// PCI domain (segment).
    pub domain: u16,
    /// Bus number.
    pub bus: u8,
    /// Device (slot) number, 0..32.
    pub device: u8,
    /// Function number, 0..8.
    pub function: u8,
}

impl FromStr for PciAddress {
    type Err = VfioError;

    /// Accepts `0000:00:03.0` and the short form `00:03.0` (domain 0).
    fn from_str(s: &str) -> Result<Self, VfioError> {
        let bad = || VfioError::BadPciAddress(s.to_string());
        let (rest, function) = s.rsplit_once('.').ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [d, b, s] => (*d, *b, *s),
            [b, s] => ("0", *b, *s),
            _ => return Err(bad()),
        };
        let hex_field = |f: &str, max_digits: usize| {
            if f.is_empty() || f.len() > max_digits {
                None
            } else {
                u32::from_str_radix(f, 16).ok()
            }
        };
        let domain = hex_field(domain, 4).ok_or_else(bad)? as u16;
        let bus = hex_field(bus, 2).ok_or_else(bad)? as u8;
        let device = hex_field(device, 2).filter(|d| *d < 32).ok_or_else(bad)? as u8;
        let function = hex_field(function, 1).filter(|f| *f < 8).ok_or_else(bad)? as u8;
        Ok(PciAddress {
            domain,
            bus,
            device,
            function,
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl PciAddress {
    /// The device's sysfs directory.
    pub fn sysfs_path(&self) -> PathBuf {
        Path::new(SYSFS_PCI_DEVICES).join(self.to_string())
    }
}

/// What sysfs says about a device that VFIO is about to open.
#[derive(Clone, Debug)]
pub struct SysfsDevice {
    /// The device address.
    pub addr: PciAddress,
    /// PCI vendor ID.
    pub vendor: u16,
    /// PCI device ID.
    pub device: u16,
    /// IOMMU group number.
    pub iommu_group: u32,
}

fn read_hex_u16(path: &Path) -> Option<u16> {
    let s = fs::read_to_string(path).ok()?;
    u16::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

/// The name of the driver bound to the device at `path`, if any.
fn bound_driver(dev_path: &Path) -> Option<String> {
    let link = fs::read_link(dev_path.join("driver")).ok()?;
    link.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Checks that `addr` exists, is bound to vfio-pci, and that its IOMMU group is viable
/// (every device in the group bound to vfio-pci or to no driver), as VFIO requires
/// (Documentation/driver-api/vfio.rst, "Groups, Devices, and IOMMUs").
pub fn check_vfio_ready(addr: PciAddress) -> Result<SysfsDevice, VfioError> {
    check_vfio_ready_in(Path::new(SYSFS_PCI_DEVICES), addr)
}

/// [`check_vfio_ready`] against a sysfs tree rooted elsewhere (tests build a fake one).
pub(crate) fn check_vfio_ready_in(
    devices: &Path,
    addr: PciAddress,
) -> Result<SysfsDevice, VfioError> {
    let dev_path = devices.join(addr.to_string());
    if !dev_path.exists() {
        return Err(VfioError::NoSuchDevice { addr });
    }
    let vendor = read_hex_u16(&dev_path.join("vendor")).unwrap_or(0);
    let device = read_hex_u16(&dev_path.join("device")).unwrap_or(0);
    match bound_driver(&dev_path) {
        Some(d) if d == "vfio-pci" => {}
        driver => return Err(VfioError::NotBoundToVfio { addr, driver }),
    }
    let group_link = fs::read_link(dev_path.join("iommu_group"))
        .map_err(|_| VfioError::NoIommuGroup { addr })?;
    let iommu_group: u32 = group_link
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .ok_or(VfioError::NoIommuGroup { addr })?;

    // The group's members are siblings in /sys/kernel/iommu_groups/N/devices; the
    // `iommu_group` link of our device points at the group directory.
    let group_dir = dev_path.join("iommu_group").join("devices");
    let mut offenders = Vec::new();
    if let Ok(entries) = fs::read_dir(&group_dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let member = devices.join(&name);
            match bound_driver(&member) {
                None => {}
                Some(d) if d == "vfio-pci" || d == "pcieport" => {}
                Some(d) => offenders.push(format!("{name} (bound to {d})")),
            }
        }
    }
    if !offenders.is_empty() {
        return Err(VfioError::GroupNotViable {
            group: iommu_group,
            devices: offenders.join(", "),
        });
    }
    Ok(SysfsDevice {
        addr,
        vendor,
        device,
        iommu_group,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn parses_long_and_short_forms() {
        let a: PciAddress = "0000:00:03.0".parse().unwrap();
        assert_eq!((a.domain, a.bus, a.device, a.function), (0, 0, 3, 0));
        assert_eq!(a.to_string(), "0000:00:03.0");
        let b: PciAddress = "01:1f.7".parse().unwrap();
        assert_eq!(b.to_string(), "0000:01:1f.7");
    }

    #[test]
    fn rejects_malformed_addresses() {
        for s in [
            "",
            "00:03",
            "0000:00:20.0",
            "0000:00:03.8",
            "zz:00.0",
            "0000:000:03.0",
            "1:2:3:4.0",
        ] {
            assert!(
                matches!(s.parse::<PciAddress>(), Err(VfioError::BadPciAddress(_))),
                "{s}"
            );
        }
    }

    /// Builds /devices/<addr>/{vendor,device,driver,iommu_group} and
    /// /groups/<n>/devices/<addr> the way sysfs lays them out.
    fn fake_sysfs(root: &Path, devs: &[(&str, Option<&str>, u32)]) -> PathBuf {
        let devices = root.join("devices");
        for (addr, driver, group) in devs {
            let d = devices.join(addr);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("vendor"), "0x8086\n").unwrap();
            fs::write(d.join("device"), "0x10d3\n").unwrap();
            if let Some(drv) = driver {
                let drv_dir = root.join("drivers").join(drv);
                fs::create_dir_all(&drv_dir).unwrap();
                symlink(&drv_dir, d.join("driver")).unwrap();
            }
            let g = root.join("groups").join(group.to_string());
            fs::create_dir_all(g.join("devices")).unwrap();
            let _ = symlink(&d, g.join("devices").join(addr));
            symlink(&g, d.join("iommu_group")).unwrap();
        }
        devices
    }

    fn tmpdir(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("tenge-pci-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn sysfs_checks_give_actionable_errors() {
        let root = tmpdir("checks");
        let devices = fake_sysfs(
            &root,
            &[
                ("0000:00:03.0", Some("vfio-pci"), 5),
                ("0000:00:04.0", Some("e1000e"), 6),
                ("0000:00:05.0", Some("vfio-pci"), 7),
                ("0000:00:05.1", Some("virtio-pci"), 7),
            ],
        );
        let ok = check_vfio_ready_in(&devices, "0000:00:03.0".parse().unwrap()).unwrap();
        assert_eq!((ok.vendor, ok.device, ok.iommu_group), (0x8086, 0x10d3, 5));

        let e = check_vfio_ready_in(&devices, "0000:00:09.0".parse().unwrap()).unwrap_err();
        assert!(matches!(e, VfioError::NoSuchDevice { .. }));
        assert!(e.to_string().contains("lspci"), "{e}");

        let e = check_vfio_ready_in(&devices, "0000:00:04.0".parse().unwrap()).unwrap_err();
        assert!(
            matches!(&e, VfioError::NotBoundToVfio { driver: Some(d), .. } if d == "e1000e"),
            "{e:?}"
        );
        assert!(e.to_string().contains("driver_override"), "{e}");

        let e = check_vfio_ready_in(&devices, "0000:00:05.0".parse().unwrap()).unwrap_err();
        assert!(
            matches!(e, VfioError::GroupNotViable { group: 7, .. }),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("0000:00:05.1 (bound to virtio-pci)"),
            "{e}"
        );
        fs::remove_dir_all(root).unwrap();
    }
}
