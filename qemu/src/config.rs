//! What a guest looks like: its NICs, their backends, memory, hugepages and time limit.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The first PCI slot used for NICs. Slots 1 and 2 stay free (QEMU's defaults put VGA and a
/// NIC there); 0x1d and 0x1e hold the two 9p devices and q35's ICH9 functions sit at 0x1f.
pub(crate) const FIRST_NIC_SLOT: usize = 3;
/// The last slot a NIC may take.
pub(crate) const LAST_NIC_SLOT: usize = 0x1c;
/// The most NICs one guest can have with one NIC per slot.
pub const MAX_NICS: usize = LAST_NIC_SLOT - FIRST_NIC_SLOT + 1;
/// Slot of the read-only 9p share of the host's `/` (mount_tag `hostroot`).
pub(crate) const HOSTROOT_SLOT: usize = 0x1e;
/// Slot of the writable 9p share mounted at `/out` (mount_tag `out`).
pub(crate) const OUT_SLOT: usize = 0x1d;

/// An emulated NIC model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NicModel {
    /// Intel 82574L (8086:10d3), QEMU's `e1000e`.
    E1000e,
    /// Intel 82576 (8086:10c9), QEMU's `igb` (QEMU 8 and later).
    Igb,
    /// Modern-only virtio-net (1af4:1041) behind the vIOMMU (`iommu_platform=on`, `ats=on`).
    VirtioNet {
        /// Packed virtqueues instead of split ones.
        packed: bool,
        /// VIRTIO_F_EVENT_IDX offered.
        event_idx: bool,
        /// VIRTIO_NET_F_MRG_RXBUF offered.
        mrg_rxbuf: bool,
    },
}

impl NicModel {
    /// virtio-net with QEMU's defaults: split rings, event index and mergeable RX buffers on.
    pub const fn virtio() -> Self {
        NicModel::VirtioNet {
            packed: false,
            event_idx: true,
            mrg_rxbuf: true,
        }
    }

    /// PCI vendor and device ID the guest sees.
    pub const fn pci_id(&self) -> (u16, u16) {
        match self {
            NicModel::E1000e => (0x8086, 0x10d3),
            NicModel::Igb => (0x8086, 0x10c9),
            NicModel::VirtioNet { .. } => (0x1af4, 0x1041),
        }
    }

    /// QEMU's `-device` name for this model.
    pub const fn qemu_device(&self) -> &'static str {
        match self {
            NicModel::E1000e => "e1000e",
            NicModel::Igb => "igb",
            NicModel::VirtioNet { .. } => "virtio-net-pci",
        }
    }
}

/// Where a NIC's frames go on the host side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `-netdev hubport` on hub N: NICs on the same hub see each other's frames.
    ///
    /// A virtio NIC alone on a hub stalls after 256 frames (QEMU holds a frame no other
    /// port can take and stops the TX queue); e1000e never blocks.
    Hub(u32),
    /// `-netdev dgram`, both ends on 127.0.0.1: every frame the guest sends arrives as one UDP
    /// datagram at `remote_port`, and every datagram sent to `local_port` is a frame received
    /// by the guest. A byte-exact oracle and injector, not a rate source (about 0.05 Mpps).
    Dgram {
        /// QEMU's UDP port, where a host process sends frames for the guest.
        local_port: u16,
        /// The host process's UDP port, where QEMU sends the guest's frames.
        remote_port: u16,
    },
    /// `-netdev user` (slirp): a NATed network with DHCP and DNS at 10.0.2.x.
    User,
    /// `-netdev tap,fd=N` on the existing tap `ifname` in network namespace `netns`, opened
    /// by the harness with a vnet header (IFF_VNET_HDR): the namespace's Linux stack is the
    /// peer, and with the vnet header QEMU's virtio-net offers its checksum and TSO
    /// features. Make both with [`crate::TapPeer`], whose [`crate::TapPeer::backend`] is
    /// this; QEMU itself stays in the host's namespace.
    Tap {
        /// The network namespace (`/run/netns/<netns>`).
        netns: String,
        /// The tap interface inside it.
        ifname: String,
        /// Queues of the tap (more than one: a multi-queue tap, IFF_MULTI_QUEUE, opened
        /// once per queue and handed to QEMU as `fds=a:b:..`; the virtio-net device gets
        /// `mq=on,vectors=2N+2,rss=on,hash=on`, QEMU's software RSS and hash reports).
        queues: u16,
    },
    /// `-netdev vhost-user` on a unix socket served by a host DPDK vhost port: the rings are
    /// polled by a host process instead of QEMU's model. Make the host side with
    /// [`crate::VhostHost`], whose [`crate::VhostHost::backend`] is this; only a virtio-net
    /// NIC can have it. The guest's memory is then shared (memfd) and the vIOMMU has a
    /// device IOTLB.
    VhostUser {
        /// The vhost-user socket (the host process is the server).
        socket: PathBuf,
        /// Queue pairs (more than one: the device gets `mq=on`).
        queues: u16,
    },
}

/// One NIC of the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nic {
    /// The emulated device.
    pub model: NicModel,
    /// Its host-side network.
    pub backend: Backend,
    /// Bind it to vfio-pci in the guest; otherwise its Linux driver is loaded (by modalias).
    pub bind_vfio: bool,
    /// Record the wire (both directions) to this pcap file with QEMU's `filter-dump`.
    pub dump: Option<PathBuf>,
}

impl Nic {
    /// A NIC bound to vfio-pci, without a pcap dump.
    pub fn new(model: NicModel, backend: Backend) -> Self {
        Nic {
            model,
            backend,
            bind_vfio: true,
            dump: None,
        }
    }

    /// The guest PCI address of the `index`-th NIC of a [`GuestConfig`], e.g. `0000:00:03.0`.
    ///
    /// Every NIC gets an explicit slot (3 + index), so the address does not depend on the
    /// other devices. Only indices below [`MAX_NICS`] can be booted.
    pub fn pci_addr(index: usize) -> String {
        format!("0000:00:{:02x}.0", FIRST_NIC_SLOT + index)
    }

    /// The MAC address the `index`-th NIC gets: `52:54:00:7e:00:<index>`.
    pub fn mac(index: usize) -> String {
        format!(
            "52:54:00:7e:{:02x}:{:02x}",
            (index >> 8) & 0xff,
            index & 0xff
        )
    }
}

/// The text form used by the `testbed` binary's `--nic`:
/// `MODEL[,FLAG...]:BACKEND[:novfio]` where
/// MODEL is `e1000e`, `igb` or `virtio` (flags for virtio: `packed`, `no-event-idx`,
/// `no-mrg-rxbuf`), and BACKEND is `hubN` (or `hub:N`), `dgram:LOCAL_PORT:REMOTE_PORT`,
/// `user`, `tap:NETNS:IFNAME` or `vhost:SOCKET[:QUEUES]` (virtio only; see
/// [`crate::VhostHost`]). A trailing `:novfio` leaves the NIC to its Linux driver.
impl FromStr for Nic {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let mut parts: Vec<&str> = spec.split(':').collect();
        let mut bind_vfio = true;
        if parts.len() > 1 && parts.last() == Some(&"novfio") {
            bind_vfio = false;
            parts.pop();
        }
        let (model, rest) = match parts.split_first() {
            Some((m, rest)) if !rest.is_empty() => (*m, rest),
            _ => {
                return Err(format!(
                "NIC `{spec}`: expected MODEL:BACKEND, e.g. e1000e:hub0 or virtio:dgram:5555:5556"
            ))
            }
        };
        let model = parse_model(model).map_err(|e| format!("NIC `{spec}`: {e}"))?;
        let backend = parse_backend(rest).map_err(|e| format!("NIC `{spec}`: {e}"))?;
        Ok(Nic {
            model,
            backend,
            bind_vfio,
            dump: None,
        })
    }
}

fn parse_model(text: &str) -> Result<NicModel, String> {
    let mut words = text.split(',');
    let name = words.next().unwrap_or_default();
    let flags: Vec<&str> = words.collect();
    match name {
        "e1000e" | "igb" => {
            if let Some(f) = flags.first() {
                return Err(format!("model {name} takes no flags, got `{f}`"));
            }
            Ok(if name == "igb" {
                NicModel::Igb
            } else {
                NicModel::E1000e
            })
        }
        "virtio" | "virtio-net" => {
            let (mut packed, mut event_idx, mut mrg_rxbuf) = (false, true, true);
            for f in flags {
                match f {
                    "packed" => packed = true,
                    "split" => packed = false,
                    "event-idx" => event_idx = true,
                    "no-event-idx" => event_idx = false,
                    "mrg-rxbuf" => mrg_rxbuf = true,
                    "no-mrg-rxbuf" => mrg_rxbuf = false,
                    _ => {
                        return Err(format!(
                        "unknown virtio flag `{f}` (known: packed, split, event-idx, no-event-idx, mrg-rxbuf, no-mrg-rxbuf)"
                    ))
                    }
                }
            }
            Ok(NicModel::VirtioNet {
                packed,
                event_idx,
                mrg_rxbuf,
            })
        }
        _ => Err(format!(
            "unknown model `{name}` (known: e1000e, igb, virtio)"
        )),
    }
}

fn parse_backend(parts: &[&str]) -> Result<Backend, String> {
    let port = |s: &str| -> Result<u16, String> {
        match s.parse::<u16>() {
            Ok(p) if p != 0 => Ok(p),
            _ => Err(format!("`{s}` is not a UDP port (1-65535)")),
        }
    };
    match parts {
        ["user"] => Ok(Backend::User),
        ["hub", n] => n
            .parse()
            .map(Backend::Hub)
            .map_err(|_| format!("`{n}` is not a hub number")),
        [h] if h.starts_with("hub") => h["hub".len()..]
            .parse()
            .map(Backend::Hub)
            .map_err(|_| format!("`{h}` is not hubN (e.g. hub0)")),
        ["dgram", local, remote] => Ok(Backend::Dgram {
            local_port: port(local)?,
            remote_port: port(remote)?,
        }),
        ["dgram", ..] => Err("dgram needs two ports: dgram:LOCAL_PORT:REMOTE_PORT".into()),
        ["tap", netns, ifname] => {
            crate::tap::validate_netns_name(netns)?;
            crate::tap::validate_ifname(ifname)?;
            Ok(Backend::Tap {
                netns: (*netns).to_owned(),
                ifname: (*ifname).to_owned(),
                queues: 1,
            })
        }
        ["tap", netns, ifname, q] => {
            crate::tap::validate_netns_name(netns)?;
            crate::tap::validate_ifname(ifname)?;
            match q.parse::<u16>() {
                Ok(queues) if (1..=crate::tap::MAX_TAP_QUEUES).contains(&queues) => {
                    Ok(Backend::Tap {
                        netns: (*netns).to_owned(),
                        ifname: (*ifname).to_owned(),
                        queues,
                    })
                }
                _ => Err(format!(
                    "tap: `{q}` is not a number of queues (1 to {})",
                    crate::tap::MAX_TAP_QUEUES
                )),
            }
        }
        ["tap", ..] => {
            Err("tap needs a namespace and an interface: tap:NETNS:IFNAME[:QUEUES]".into())
        }
        // No socket: served by the `testbed` binary's own host testpmd (`--vhost MODE`).
        ["vhost"] => Ok(Backend::VhostUser {
            socket: PathBuf::new(),
            queues: 1,
        }),
        ["vhost", q] if !q.starts_with('/') => match q.parse::<u16>() {
            Ok(queues) if queues > 0 => Ok(Backend::VhostUser {
                socket: PathBuf::new(),
                queues,
            }),
            _ => Err(format!(
                "vhost: `{q}` is neither a socket path (absolute) nor a number of queue pairs"
            )),
        },
        ["vhost", socket, _] if !socket.starts_with('/') => Err(format!(
            "vhost socket `{socket}` must be an absolute path"
        )),
        ["vhost", socket] => Ok(Backend::VhostUser {
            socket: PathBuf::from(socket),
            queues: 1,
        }),
        ["vhost", socket, q] => match q.parse::<u16>() {
            Ok(queues) if queues > 0 => Ok(Backend::VhostUser {
                socket: PathBuf::from(socket),
                queues,
            }),
            _ => Err(format!("`{q}` is not a number of queue pairs (1 or more)")),
        },
        _ => Err(format!(
            "unknown backend `{}` (known: hubN, dgram:LOCAL:REMOTE, user, tap:NETNS:IFNAME[:QUEUES], vhost:SOCKET[:QUEUES])",
            parts.join(":")
        )),
    }
}

impl fmt::Display for Nic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.model {
            NicModel::E1000e => write!(f, "e1000e")?,
            NicModel::Igb => write!(f, "igb")?,
            NicModel::VirtioNet {
                packed,
                event_idx,
                mrg_rxbuf,
            } => {
                write!(f, "virtio")?;
                if packed {
                    write!(f, ",packed")?;
                }
                if !event_idx {
                    write!(f, ",no-event-idx")?;
                }
                if !mrg_rxbuf {
                    write!(f, ",no-mrg-rxbuf")?;
                }
            }
        }
        match &self.backend {
            Backend::Hub(n) => write!(f, ":hub{n}")?,
            Backend::Dgram {
                local_port,
                remote_port,
            } => write!(f, ":dgram:{local_port}:{remote_port}")?,
            Backend::User => write!(f, ":user")?,
            Backend::Tap {
                netns,
                ifname,
                queues,
            } => {
                write!(f, ":tap:{netns}:{ifname}")?;
                if *queues != 1 {
                    write!(f, ":{queues}")?;
                }
            }
            Backend::VhostUser { socket, queues } => {
                write!(f, ":vhost")?;
                if !socket.as_os_str().is_empty() {
                    write!(f, ":{}", socket.display())?;
                }
                if *queues != 1 {
                    write!(f, ":{queues}")?;
                }
            }
        }
        if !self.bind_vfio {
            write!(f, ":novfio")?;
        }
        Ok(())
    }
}

/// Everything about one guest except the script it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestConfig {
    /// NICs in PCI slot order: `nics[i]` is at [`Nic::pci_addr`]`(i)`.
    pub nics: Vec<Nic>,
    /// 2 MiB hugepages reserved and mounted at `/dev/hugepages`. 0 reserves none and mounts
    /// no hugetlbfs (to test the driver's "no hugepages" error).
    pub hugepages_2m: u32,
    /// Guest memory in MiB; must leave room (256 MiB or more) beside the hugepages.
    pub memory_mb: u32,
    /// Wall-clock limit for the whole run, boot included; QEMU is killed when it passes.
    pub timeout: Duration,
    /// Appended to QEMU's command line as they are (e.g. `-trace`, `e1000e_rx_*`).
    pub extra_qemu_args: Vec<String>,
}

impl Default for GuestConfig {
    fn default() -> Self {
        GuestConfig {
            nics: Vec::new(),
            hugepages_2m: 256,
            memory_mb: 2048,
            timeout: Duration::from_secs(300),
            extra_qemu_args: Vec::new(),
        }
    }
}

impl GuestConfig {
    /// Some NIC has a vhost-user backend: guest memory must be shareable with the host
    /// process, and the vIOMMU needs a device IOTLB.
    pub fn has_vhost_user(&self) -> bool {
        self.nics
            .iter()
            .any(|n| matches!(n.backend, Backend::VhostUser { .. }))
    }

    /// A default guest with these NICs.
    pub fn with_nics(nics: Vec<Nic>) -> Self {
        GuestConfig {
            nics,
            ..GuestConfig::default()
        }
    }

    /// Checks what can be checked before starting QEMU; the error says what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.nics.len() > MAX_NICS {
            return Err(format!(
                "{} NICs configured, at most {MAX_NICS} fit (one PCI slot each)",
                self.nics.len()
            ));
        }
        let hugepages_mb = u64::from(self.hugepages_2m) * 2;
        if u64::from(self.memory_mb) < hugepages_mb + 256 {
            return Err(format!(
                "memory_mb = {} leaves less than 256 MiB beside {} MiB of hugepages: raise memory_mb or lower hugepages_2m",
                self.memory_mb, hugepages_mb
            ));
        }
        if self.timeout.is_zero() {
            return Err("timeout is zero: give the guest time to boot (about 10 s)".into());
        }
        let mut dgram_ports = Vec::new();
        for (i, nic) in self.nics.iter().enumerate() {
            if let Backend::Dgram {
                local_port,
                remote_port,
            } = nic.backend
            {
                if local_port == 0 || remote_port == 0 {
                    return Err(format!("NIC {i}: dgram ports must be non-zero"));
                }
                if dgram_ports.contains(&local_port) {
                    return Err(format!(
                        "NIC {i}: local UDP port {local_port} is used by another NIC"
                    ));
                }
                dgram_ports.push(local_port);
            }
            if let Backend::Tap {
                netns,
                ifname,
                queues,
            } = &nic.backend
            {
                crate::tap::validate_netns_name(netns).map_err(|e| format!("NIC {i}: {e}"))?;
                crate::tap::validate_ifname(ifname).map_err(|e| format!("NIC {i}: {e}"))?;
                if *queues > 1 && !matches!(nic.model, NicModel::VirtioNet { .. }) {
                    return Err(format!(
                        "NIC {i}: a multi-queue tap ({queues} queues) needs a virtio-net NIC"
                    ));
                }
                let same = |n: &Nic| matches!(&n.backend, Backend::Tap { netns: a, ifname: b, .. } if a == netns && b == ifname);
                if self.nics[..i].iter().any(same) {
                    return Err(format!(
                        "NIC {i}: tap {ifname} in {netns} is used by another NIC (a tap has one queue)"
                    ));
                }
            }
            if let Backend::VhostUser { queues, .. } = nic.backend {
                if !matches!(nic.model, NicModel::VirtioNet { .. }) {
                    return Err(format!(
                        "NIC {i}: a vhost-user backend serves virtio-net only, not {}",
                        nic.model.qemu_device()
                    ));
                }
                if queues == 0 {
                    return Err(format!("NIC {i}: a vhost-user NIC needs a queue pair"));
                }
                if let Backend::VhostUser { socket, .. } = &nic.backend {
                    if socket.as_os_str().is_empty() {
                        return Err(format!(
                            "NIC {i}: a vhost-user NIC without a socket: start a VhostHost and give the NIC its backend()"
                        ));
                    }
                }
                if nic.dump.is_some() {
                    return Err(format!(
                        "NIC {i}: QEMU cannot dump a vhost-user netdev (its frames never pass QEMU): capture on the host side (VhostHostConfig::pcap)"
                    ));
                }
            }
            if let Some(dump) = &nic.dump {
                if dump.as_os_str().is_empty() {
                    return Err(format!("NIC {i}: empty dump path"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses_are_fixed_slots() {
        assert_eq!(Nic::pci_addr(0), "0000:00:03.0");
        assert_eq!(Nic::pci_addr(1), "0000:00:04.0");
        assert_eq!(Nic::pci_addr(13), "0000:00:10.0");
        assert_eq!(Nic::pci_addr(MAX_NICS - 1), "0000:00:1c.0");
    }

    #[test]
    fn parses_nic_specs() {
        let n: Nic = "e1000e:hub0".parse().unwrap();
        assert_eq!(n, Nic::new(NicModel::E1000e, Backend::Hub(0)));
        let n: Nic = "igb:hub:3:novfio".parse().unwrap();
        assert_eq!(n.model, NicModel::Igb);
        assert_eq!(n.backend, Backend::Hub(3));
        assert!(!n.bind_vfio);
        let n: Nic = "virtio,packed,no-mrg-rxbuf:dgram:5555:5556"
            .parse()
            .unwrap();
        assert_eq!(
            n.model,
            NicModel::VirtioNet {
                packed: true,
                event_idx: true,
                mrg_rxbuf: false
            }
        );
        assert_eq!(
            n.backend,
            Backend::Dgram {
                local_port: 5555,
                remote_port: 5556
            }
        );
        assert_eq!(
            "virtio:user".parse::<Nic>().unwrap().model,
            NicModel::virtio()
        );
        for spec in [
            "virtio,packed,no-event-idx:dgram:1:2:novfio",
            "virtio:tap:tenge-1-0:tap0:novfio",
            "virtio:tap:tenge-1-0:tap0:4",
            "virtio,packed:vhost:/tmp/v/vhost0.sock",
            "virtio:vhost:/tmp/v/vhost1.sock:4",
            "virtio,packed:vhost",
            "virtio:vhost:2",
            "e1000e:hub7",
            "igb:user",
        ] {
            assert_eq!(spec.parse::<Nic>().unwrap().to_string(), spec);
        }
    }

    #[test]
    fn rejects_bad_nic_specs() {
        for bad in [
            "",
            "e1000e",
            "e1000:hub0",
            "e1000e:hubx",
            "e1000e:dgram:1",
            "virtio,fast:user",
            "igb:dgram:0:5",
            "igb:tap",
            "virtio:tap:ns",
            "virtio:tap:a/b:tap0",
            "virtio:tap:ns:a234567890123456",
            "virtio:vhost:rel.sock",
            "virtio:vhost:0",
            "virtio:vhost:rel.sock:2",
            "virtio:vhost:/tmp/v.sock:0",
        ] {
            assert!(bad.parse::<Nic>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn validates_memory_and_nics() {
        let mut c = GuestConfig::default();
        assert!(c.validate().is_ok());
        c.hugepages_2m = 1000;
        assert!(c.validate().unwrap_err().contains("memory_mb"));
        c.hugepages_2m = 0;
        c.nics = vec![Nic::new(NicModel::E1000e, Backend::Hub(0)); MAX_NICS + 1];
        assert!(c.validate().is_err());
        let tap = Backend::Tap {
            netns: "ns".into(),
            ifname: "tap0".into(),
            queues: 1,
        };
        c.nics = vec![Nic::new(NicModel::virtio(), tap); 2];
        assert!(c.validate().unwrap_err().contains("one queue"));
        let vhost = Backend::VhostUser {
            socket: "/tmp/v.sock".into(),
            queues: 1,
        };
        c.nics = vec![Nic::new(NicModel::E1000e, vhost.clone())];
        assert!(c.validate().unwrap_err().contains("virtio-net only"));
        c.nics = vec![Nic::new(NicModel::virtio(), vhost)];
        assert!(c.validate().is_ok());
        c.nics[0].dump = Some("/tmp/x.pcap".into());
        assert!(c.validate().unwrap_err().contains("host side"));
    }
}
