//! The QEMU command line and the guest kernel command line for one run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Backend, GuestConfig, Nic, NicModel, HOSTROOT_SLOT, OUT_SLOT};

/// Host paths one run needs; all absolute.
#[derive(Clone, Debug)]
pub(crate) struct RunPaths {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Workspace root as the guest sees it (same as the host's).
    pub root: String,
    /// `qemu/guest/stage2.sh` under the root.
    pub stage2: String,
    /// The script to run, inside the run directory.
    pub script: String,
    /// Host directory shared writable as the guest's `/out`.
    pub out_dir: PathBuf,
}

/// Escapes a value for QEMU's `key=value,...` option syntax, where `,` is doubled.
fn opt(value: &str) -> String {
    value.replace(',', ",,")
}

fn opt_path(path: &Path) -> String {
    opt(&path.to_string_lossy())
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// When the guest's watchdog (`qemu/guest/watchdog.sh`) reports where a still-running
/// script's tasks wait: 30 s before the run's timeout (half-way through a shorter one), so
/// the report is in the serial log before QEMU is killed.
pub(crate) fn watchdog_secs(timeout: Duration) -> u64 {
    let t = timeout.as_secs();
    t.saturating_sub(30).max(t / 2).max(1)
}

/// The guest kernel command line: console, the vIOMMU, and the `tenge.*` parameters read by
/// `qemu/guest/init` and `qemu/guest/stage2.sh` (they contain a dot, so the kernel leaves
/// them alone as unknown module parameters instead of passing them to init).
pub(crate) fn kernel_cmdline(config: &GuestConfig, paths: &RunPaths) -> String {
    let mut parts = vec![
        "console=ttyS0".to_owned(),
        "intel_iommu=on".to_owned(),
        "quiet".to_owned(),
        // Reboot at once on a panic: with -no-reboot QEMU then exits instead of hanging.
        "panic=-1".to_owned(),
        // Debian's kernel zeroes every page it allocates; reserving 256 hugepages then costs
        // about 2 s of TCG time at boot. hugetlbfs zeroes each page at first fault anyway.
        "init_on_alloc=0".to_owned(),
        // The IO-APIC timer check waits a few ticks for a timer interrupt; under TCG on a busy
        // host they come late and the kernel panics ("timer doesn't work through
        // Interrupt-remapped IO-APIC"). Seen once in a few dozen boots with load > 2 vCPUs.
        "no_timer_check".to_owned(),
        // Keep time with the TSC. Left to itself the kernel finds the vCPUs' TSCs
        // "unsynchronized" (TCG's timing upsets its warp test) and falls back to the HPET:
        // every clock read then a system call and an MMIO read that waits for QEMU's big
        // lock, which QEMU's main loop holds while it delivers frames. A poll loop that read
        // the clock lost up to 40 % of its time so (issue 8 item 5); a real machine reads the
        // TSC in the vDSO. Under TCG every vCPU's TSC is the host's, so it is synchronized.
        "tsc=reliable".to_owned(),
        format!("tenge.stage2={}", paths.stage2),
        format!("tenge.script={}", paths.script),
        format!("tenge.root={}", paths.root),
        format!("tenge.hugepages={}", config.hugepages_2m),
        format!("tenge.watchdog={}", watchdog_secs(config.timeout)),
    ];
    let list = |pick: &dyn Fn(&Nic) -> bool| -> String {
        config
            .nics
            .iter()
            .enumerate()
            .filter(|(_, n)| pick(n))
            .map(|(i, _)| Nic::pci_addr(i))
            .collect::<Vec<_>>()
            .join(",")
    };
    for (key, value) in [
        ("nics", list(&|_| true)),
        ("vfio", list(&|n| n.bind_vfio)),
        ("kernel", list(&|n| !n.bind_vfio)),
    ] {
        if !value.is_empty() {
            parts.push(format!("tenge.{key}={value}"));
        }
    }
    parts.join(" ")
}

/// QEMU's arguments (without the program name). `tap_fds[&i]` is the descriptor QEMU
/// inherits for NIC `i` with a [`Backend::Tap`].
pub(crate) fn qemu_args(
    config: &GuestConfig,
    paths: &RunPaths,
    aw_bits: bool,
    tap_fds: &BTreeMap<usize, Vec<i32>>,
) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| (*s).to_owned()));
    let mem = format!("{}M", config.memory_mb);
    let mut iommu = String::from("intel-iommu,intremap=on,caching-mode=on");
    if aw_bits {
        // 48-bit IOVAs so a driver may use process virtual addresses as IOVAs.
        iommu.push_str(",aw-bits=48");
    }
    let vhost = config.has_vhost_user();
    let mut machine = String::from("q35,kernel-irqchip=split");
    if vhost {
        // A vhost-user device translates IOVAs through QEMU's IOTLB messages (device
        // IOTLB), and reads guest memory it has mapped from a shared memfd.
        iommu.push_str(",device-iotlb=on");
        machine.push_str(",memory-backend=mem");
    }
    push(&[
        // Threads named by role ("CPU 0/TCG", "vhost ..."), so a hung run's thread report
        // (run.rs, `thread_report`) says which of them waits where.
        "-name",
        "tenge,debug-threads=on",
        // KVM is unusable on this machine kind (see shared/QEMU-RECIPE.md): TCG, one host
        // thread per vCPU.
        "-accel",
        "tcg,thread=multi",
        // The split irqchip is what intremap=on needs.
        "-M",
        &machine,
        "-cpu",
        "max",
        "-m",
        &mem,
        "-smp",
        "2",
        // No default VGA, NIC or monitor: only what is listed here exists, at fixed slots.
        "-nodefaults",
        "-display",
        "none",
        // The console is QEMU's stdout, read line by line by the harness.
        "-serial",
        "stdio",
        "-no-reboot",
        "-device",
        &iommu,
    ]);
    if vhost {
        let backend = format!(
            "memory-backend-memfd,id=mem,size={}M,share=on",
            config.memory_mb
        );
        push(&["-object", &backend]);
    }
    let kernel = paths.kernel.to_string_lossy().into_owned();
    let initrd = paths.initrd.to_string_lossy().into_owned();
    let cmdline = kernel_cmdline(config, paths);
    push(&["-kernel", &kernel, "-initrd", &initrd, "-append", &cmdline]);

    // The host's / read-only; remap keeps inode numbers unique across host mounts.
    let hostroot = "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap";
    let hostroot_dev =
        format!("virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot,addr=0x{HOSTROOT_SLOT:x}");
    let out = format!(
        "local,id=out,path={},security_model=none,multidevs=remap",
        opt_path(&paths.out_dir)
    );
    let out_dev = format!("virtio-9p-pci,fsdev=out,mount_tag=out,addr=0x{OUT_SLOT:x}");
    push(&[
        "-fsdev",
        hostroot,
        "-device",
        &hostroot_dev,
        "-fsdev",
        &out,
        "-device",
        &out_dev,
    ]);

    for (i, nic) in config.nics.iter().enumerate() {
        let id = format!("nic{i}");
        let netdev = match nic.backend {
            Backend::Hub(hub) => format!("hubport,id={id},hubid={hub}"),
            Backend::Dgram {
                local_port,
                remote_port,
            } => format!(
                "dgram,id={id},local.type=inet,local.host=127.0.0.1,local.port={local_port},\
                 remote.type=inet,remote.host=127.0.0.1,remote.port={remote_port}"
            ),
            Backend::User => format!("user,id={id}"),
            // QEMU probes the vnet header from the descriptor (vnet_hdr= is refused with
            // fd=) and then offers virtio-net's checksum/TSO features.
            Backend::Tap { .. } => match tap_fds.get(&i).map(Vec::as_slice) {
                Some([fd]) => format!("tap,id={id},fd={fd}"),
                // A multi-queue tap: one descriptor per queue; vhost=off keeps QEMU's own
                // virtio-net model (and its software RSS) on the data path.
                Some(fds) if !fds.is_empty() => format!(
                    "tap,id={id},fds={},vhost=off",
                    fds.iter()
                        .map(|f| f.to_string())
                        .collect::<Vec<_>>()
                        .join(":")
                ),
                _ => format!("tap,id={id},fd=MISSING"),
            },
            Backend::VhostUser { ref socket, queues } => {
                let chardev = format!("socket,id=chr{i},path={}", opt_path(socket));
                push(&["-chardev", &chardev]);
                format!("vhost-user,id={id},chardev=chr{i},queues={queues}")
            }
        };
        let slot = crate::config::FIRST_NIC_SLOT + i;
        let mut device = format!(
            "{},netdev={id},addr=0x{slot:x},mac={}",
            nic.model.qemu_device(),
            Nic::mac(i)
        );
        if let NicModel::VirtioNet {
            packed,
            event_idx,
            mrg_rxbuf,
        } = nic.model
        {
            // Modern-only and behind the vIOMMU: without iommu_platform QEMU would treat the
            // IOVAs a VFIO driver programs as guest-physical addresses.
            device.push_str(&format!(
                ",disable-legacy=on,iommu_platform=on,ats=on,packed={},event_idx={},mrg_rxbuf={}",
                on_off(packed),
                on_off(event_idx),
                on_off(mrg_rxbuf)
            ));
        }
        if let Backend::VhostUser { queues, .. } = nic.backend {
            if queues > 1 {
                // A vector per queue plus config and control (virtio-net's own rule).
                device.push_str(&format!(",mq=on,vectors={}", 2 * u32::from(queues) + 2));
            }
        }
        if let Backend::Tap { queues, .. } = nic.backend {
            if queues > 1 {
                // QEMU's RSS in software (no vhost) with hash reports (the tap has a vnet
                // header, which HASH_REPORT needs).
                device.push_str(&format!(
                    ",mq=on,vectors={},rss=on,hash=on",
                    2 * u32::from(queues) + 2
                ));
            }
        }
        push(&["-netdev", &netdev, "-device", &device]);
        if let Some(dump) = &nic.dump {
            let filter = format!("filter-dump,id=dump{i},netdev={id},file={}", opt_path(dump));
            push(&["-object", &filter]);
        }
    }
    a.extend(config.extra_qemu_args.iter().cloned());
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn paths() -> RunPaths {
        RunPaths {
            kernel: "/boot/vmlinuz-6.1.0-56-amd64".into(),
            initrd: "/w/target/testbed/initramfs.cpio.gz".into(),
            root: "/w".into(),
            stage2: "/w/qemu/guest/stage2.sh".into(),
            script: "/w/target/testbed/run-1-0/script.sh".into(),
            out_dir: "/w/target/testbed/run-1-0/out".into(),
        }
    }

    #[test]
    fn builds_nic_devices_at_fixed_slots() {
        let mut dumped = Nic::new(NicModel::E1000e, Backend::Hub(0));
        dumped.dump = Some("/w/x,y.pcap".into());
        let mut kernel_nic = Nic::new(
            NicModel::VirtioNet {
                packed: true,
                event_idx: false,
                mrg_rxbuf: true,
            },
            Backend::Dgram {
                local_port: 5555,
                remote_port: 5556,
            },
        );
        kernel_nic.bind_vfio = false;
        let config = GuestConfig {
            nics: vec![dumped, kernel_nic, Nic::new(NicModel::Igb, Backend::User)],
            hugepages_2m: 0,
            memory_mb: 1024,
            timeout: Duration::from_secs(5),
            extra_qemu_args: vec!["-trace".into(), "e1000e_rx_*".into()],
        };
        let args = qemu_args(&config, &paths(), true, &BTreeMap::new());
        let joined = args.join(" ");
        assert!(joined.contains("-device e1000e,netdev=nic0,addr=0x3,mac=52:54:00:7e:00:00"));
        assert!(joined.contains("-object filter-dump,id=dump0,netdev=nic0,file=/w/x,,y.pcap"));
        assert!(joined.contains(
            "virtio-net-pci,netdev=nic1,addr=0x4,mac=52:54:00:7e:00:01,disable-legacy=on,\
             iommu_platform=on,ats=on,packed=on,event_idx=off,mrg_rxbuf=on"
        ));
        assert!(joined.contains("local.port=5555,remote.type=inet"));
        assert!(joined.contains("remote.port=5556"));
        assert!(joined.contains("-netdev user,id=nic2 -device igb,netdev=nic2,addr=0x5"));
        assert!(joined.contains("aw-bits=48"));
        assert!(joined.ends_with("-trace e1000e_rx_*"));
        assert!(joined.contains("-m 1024M"));

        let cmdline = kernel_cmdline(&config, &paths());
        assert!(cmdline.contains("tenge.nics=0000:00:03.0,0000:00:04.0,0000:00:05.0"));
        assert!(cmdline.contains("tenge.vfio=0000:00:03.0,0000:00:05.0"));
        assert!(cmdline.contains("tenge.kernel=0000:00:04.0"));
        assert!(cmdline.contains("tenge.hugepages=0"));
        // A 5 s run: the watchdog half-way; a 400 s one: 30 s before its end.
        assert!(cmdline.contains("tenge.watchdog=2"));
        assert_eq!(watchdog_secs(Duration::from_secs(400)), 370);
        assert_eq!(watchdog_secs(Duration::from_secs(40)), 20);
        assert!(cmdline.contains("tenge.script=/w/target/testbed/run-1-0/script.sh"));
    }

    #[test]
    fn tap_backend_passes_the_descriptor() {
        let nic = Nic::new(
            NicModel::virtio(),
            Backend::Tap {
                netns: "ns".into(),
                ifname: "tap0".into(),
                queues: 1,
            },
        );
        let mq = Nic::new(
            NicModel::virtio(),
            Backend::Tap {
                netns: "ns".into(),
                ifname: "tap1".into(),
                queues: 4,
            },
        );
        let config =
            GuestConfig::with_nics(vec![Nic::new(NicModel::E1000e, Backend::Hub(0)), nic, mq]);
        let fds = BTreeMap::from([(1, vec![7]), (2, vec![8, 9, 10, 11])]);
        let args = qemu_args(&config, &paths(), true, &fds);
        let joined = args.join(" ");
        assert!(joined.contains("-netdev tap,id=nic1,fd=7 -device virtio-net-pci,netdev=nic1"));
        assert!(joined.contains("-netdev tap,id=nic2,fds=8:9:10:11,vhost=off -device"));
        assert!(joined.contains("mrg_rxbuf=on,mq=on,vectors=10,rss=on,hash=on"));
    }

    #[test]
    fn vhost_user_shares_memory_and_has_a_device_iotlb() {
        let nic = |socket: &str, queues| {
            Nic::new(
                NicModel::virtio(),
                Backend::VhostUser {
                    socket: socket.into(),
                    queues,
                },
            )
        };
        let config = GuestConfig::with_nics(vec![nic("/tmp/v/a.sock", 1), nic("/tmp/v/b.sock", 2)]);
        let joined = qemu_args(&config, &paths(), true, &BTreeMap::new()).join(" ");
        assert!(joined.contains("-M q35,kernel-irqchip=split,memory-backend=mem"));
        assert!(joined.contains("-object memory-backend-memfd,id=mem,size=2048M,share=on"));
        assert!(joined.contains("aw-bits=48,device-iotlb=on"));
        assert!(joined.contains(
            "-chardev socket,id=chr0,path=/tmp/v/a.sock -netdev vhost-user,id=nic0,chardev=chr0,queues=1 -device virtio-net-pci,netdev=nic0"
        ));
        assert!(joined.contains("-netdev vhost-user,id=nic1,chardev=chr1,queues=2"));
        assert!(joined.contains("mrg_rxbuf=on,mq=on,vectors=6"));
        let plain = GuestConfig::with_nics(vec![Nic::new(NicModel::E1000e, Backend::Hub(0))]);
        let joined = qemu_args(&plain, &paths(), true, &BTreeMap::new()).join(" ");
        assert!(!joined.contains("memfd") && !joined.contains("device-iotlb"));
    }

    #[test]
    fn no_nics_means_no_nic_lists() {
        let cmdline = kernel_cmdline(&GuestConfig::default(), &paths());
        assert!(!cmdline.contains("tenge.nics"));
        assert!(!cmdline.contains("tenge.vfio"));
        assert!(cmdline.contains("tenge.hugepages=256"));
    }
}
