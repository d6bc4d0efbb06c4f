//! `testbed`: boot a QEMU guest with emulated NICs bound to vfio-pci and run a script in it.

use std::io::{self, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tenge_testbed::{
    command_script, Backend, Guest, GuestConfig, HostMode, Nic, TapPeer, VhostHost,
    VhostHostConfig, DEFAULT_HOST_CIDR, MAX_NICS,
};

/// Exit status when the run timed out (as timeout(1) does).
const EXIT_TIMEOUT: u8 = 124;
/// Exit status when the guest could not be booted or prepared, or ended without a status.
const EXIT_HARNESS: u8 = 125;

#[derive(Parser, Debug)]
#[command(
    name = "testbed",
    version,
    about = "Boot a throwaway QEMU guest with emulated NICs bound to vfio-pci and run a script in it",
    long_about = "Boot a throwaway QEMU guest (TCG, q35, virtual Intel IOMMU, 2 vCPUs) with emulated \
NICs bound to vfio-pci, run a shell script or one command in it, and exit with its exit code.\n\n\
The guest sees the host's / read-only (so binaries from the checkout and the host's dpdk-testpmd \
run as they are), has tmpfs /tmp and /run, a writable /out shared with the host \
(target/testbed/run-<pid>-<n>/out), and 2 MiB hugepages mounted at /dev/hugepages. NIC i is at \
PCI address 0000:00:(3+i).0; $TENGE_NICS lists them in the guest.\n\n\
Exit status: the guest script's, 124 on timeout, 125 if the guest could not be booted or \
prepared, 2 on a usage error. Needs qemu/install-deps.sh to have run, and root."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Boot a guest, run a script (--script) or a command (after --) in it, power off.
    #[command(after_help = "\
NIC SPEC: MODEL[,FLAG...]:BACKEND[:novfio]
  MODEL    e1000e | igb | virtio (flags: packed, no-event-idx, no-mrg-rxbuf)
  BACKEND  hubN            QEMU hub N; NICs on one hub see each other's frames
           dgram:LOCAL:REMOTE
                           frames <-> UDP datagrams on 127.0.0.1 (QEMU listens on LOCAL,
                           sends to REMOTE)
           user            slirp user networking
           tap:NETNS:IFNAME
                           tap IFNAME (vnet header on) in network namespace NETNS, whose
                           Linux stack is the peer; virtio then offers checksum/TSO. If
                           NETNS does not exist, it is made with IFNAME at 10.99.0.1/24 (give
                           the guest 10.99.0.2/24) and deleted at exit; talk to the guest
                           with `ip netns exec NETNS ...` meanwhile
           vhost[:QUEUES]  (virtio only) vhost-user, served by a host dpdk-testpmd with a
                           DPDK vhost port per such NIC, started before the guest in the
                           --vhost mode and stopped after it (its counters are printed);
                           QUEUES queue pairs (mq=on when more than 1)
           vhost:SOCKET[:QUEUES]
                           vhost-user on an existing socket served by another process
  novfio   leave the NIC to its Linux driver instead of binding it to vfio-pci

Examples:
  testbed run --nic e1000e:hub0 --nic e1000e:hub0 --nic virtio:dgram:5555:5556 \\
      --dump 0=/tmp/x.pcap --hugepages 256 --timeout 300 --script FILE
  testbed run --nic virtio:tap:tb0:tap0:novfio --script FILE
  testbed run --nic virtio,packed:vhost --vhost rxonly -- \
      target/release/pktgen 0000:00:03.0 --duration 5
  testbed run --nic e1000e:hub0 -- dpdk-testpmd -l 0-1 -n 1 --no-telemetry \\
      -a 0000:00:03.0 -- --total-num-mbufs=8192 --forward-mode=txonly --stats-period 5")]
    Run(RunArgs),
    /// Build the initramfs if its inputs changed and print its path.
    Initramfs,
    /// Print the guest PCI address of the INDEX-th NIC (e.g. 0 -> 0000:00:03.0).
    PciAddr {
        /// NIC index, in --nic order.
        index: usize,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// A NIC, in PCI slot order (repeat for more); see NIC SPEC below.
    #[arg(long = "nic", value_name = "SPEC")]
    nics: Vec<Nic>,

    /// Record NIC INDEX's wire to a pcap file (QEMU filter-dump), e.g. 0=/tmp/x.pcap.
    #[arg(long = "dump", value_name = "INDEX=PATH", value_parser = parse_dump)]
    dumps: Vec<(usize, PathBuf)>,

    /// 2 MiB hugepages to reserve in the guest; 0 reserves none and mounts no hugetlbfs.
    #[arg(long, value_name = "N", default_value_t = 256)]
    hugepages: u32,

    /// Guest memory in MiB.
    #[arg(long, value_name = "MB", default_value_t = 2048)]
    memory: u32,

    /// Kill the guest after this many seconds (boot included) and exit 124.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    timeout: u64,

    /// Extra QEMU argument, passed as is (repeat for more), e.g. --qemu-arg=-trace --qemu-arg='e1000e_rx_*'.
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    qemu_args: Vec<String>,

    /// What the host testpmd serving `vhost` NICs does: rxonly (a sink for the guest's
    /// frames), txonly or txonly:SIZE (sends SIZE-byte frames, 64 by default, from the start), io
    /// (forwards between pairs of vhost NICs) or chain:SIZE (a source of SIZE-byte frames into
    /// the first vhost NIC, a sink behind the last: for a guest forwarder).
    #[arg(long, value_name = "MODE", default_value = "rxonly", value_parser = parse_vhost_mode)]
    vhost: HostMode,

    /// Extra EAL argument for the host testpmd serving `vhost` NICs (repeat for more), e.g.
    /// --vhost-eal=--log-level=lib.vhost.*:debug; its output is printed at the end with
    /// TESTBED_VHOST_TRANSCRIPT=1.
    #[arg(long = "vhost-eal", value_name = "ARG", allow_hyphen_values = true)]
    vhost_eal: Vec<String>,

    /// Do not echo the guest console (it is still written to the run's serial.log).
    #[arg(long, short)]
    quiet: bool,

    /// Shell script to run in the guest with /bin/sh ('-' reads it from stdin).
    #[arg(long, value_name = "FILE", conflicts_with = "command")]
    script: Option<PathBuf>,

    /// Command (and arguments) to run in the guest instead of a script.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn parse_dump(s: &str) -> Result<(usize, PathBuf), String> {
    let (index, path) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected INDEX=PATH, e.g. 0=/tmp/x.pcap"))?;
    let index = index
        .parse()
        .map_err(|_| format!("`{index}` is not a NIC index"))?;
    if path.is_empty() {
        return Err(format!("`{s}`: empty path"));
    }
    Ok((index, PathBuf::from(path)))
}

fn parse_vhost_mode(s: &str) -> Result<HostMode, String> {
    match s.split_once(':') {
        None if s == "rxonly" => Ok(HostMode::RxOnly),
        None if s == "io" => Ok(HostMode::Io),
        None if s == "txonly" => Ok(HostMode::TxOnly { size: 64 }),
        Some(("txonly", size)) => match size.parse::<u16>() {
            Ok(size) if (60..=1514).contains(&size) => Ok(HostMode::TxOnly { size }),
            _ => Err(format!("`{size}`: a frame size is 60 to 1514")),
        },
        Some(("chain", size)) => match size.parse::<u16>() {
            Ok(size) if (60..=1514).contains(&size) => Ok(HostMode::Chain { size }),
            _ => Err(format!("`{size}`: a frame size is 60 to 1514")),
        },
        _ => Err(format!(
            "`{s}`: expected rxonly, txonly[:SIZE], io or chain:SIZE"
        )),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run(args) => run(args),
        Cmd::Initramfs => initramfs(),
        Cmd::PciAddr { index } => {
            if index >= MAX_NICS {
                eprintln!("testbed: NIC index {index} out of range (at most {MAX_NICS} NICs)");
                return ExitCode::from(2);
            }
            println!("{}", Nic::pci_addr(index));
            ExitCode::SUCCESS
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    let script = match (&args.script, args.command.is_empty()) {
        (Some(path), _) => {
            let text = if path.as_os_str() == "-" {
                let mut s = String::new();
                io::stdin().read_to_string(&mut s).map(|_| s)
            } else {
                std::fs::read_to_string(path)
            };
            match text {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("testbed: cannot read script {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
        }
        (None, false) => command_script(&args.command),
        (None, true) => {
            eprintln!(
                "testbed: nothing to run: give --script FILE or a command after --, \
                 e.g. testbed run --nic e1000e:hub0 -- lspci"
            );
            return ExitCode::from(2);
        }
    };
    let mut nics = args.nics;
    for (index, path) in args.dumps {
        match nics.get_mut(index) {
            Some(nic) => nic.dump = Some(path),
            None => {
                eprintln!(
                    "testbed: --dump {index}=...: there are only {} NICs (indices start at 0)",
                    nics.len()
                );
                return ExitCode::from(2);
            }
        }
    }
    // Tap peers this run makes; dropped (namespaces deleted) when run() returns.
    let mut peers = Vec::new();
    for nic in &nics {
        if let Backend::Tap {
            netns,
            ifname,
            queues,
        } = &nic.backend
        {
            if std::path::Path::new("/run/netns").join(netns).exists() {
                continue;
            }
            match TapPeer::create_with_queues(netns, ifname, DEFAULT_HOST_CIDR, *queues) {
                Ok(peer) => {
                    eprintln!(
                        "testbed: made netns {netns} with tap {ifname} at {DEFAULT_HOST_CIDR} \
                         (deleted at exit): ip netns exec {netns} ..."
                    );
                    peers.push(peer);
                }
                Err(e) => {
                    eprintln!("testbed: {e}");
                    return ExitCode::from(EXIT_HARNESS);
                }
            }
        }
    }
    // vhost NICs without a socket: one host testpmd serves them all, forwarding from the
    // start; dropped (quit) when run() returns, after the guest.
    let served: Vec<usize> = (0..nics.len())
        .filter(|&i| matches!(&nics[i].backend, Backend::VhostUser { socket, .. } if socket.as_os_str().is_empty()))
        .collect();
    let mut vhost_host = None;
    if !served.is_empty() {
        let ports = served
            .iter()
            .map(|&i| match nics[i].backend {
                Backend::VhostUser { queues, .. } => queues,
                _ => 1,
            })
            .collect();
        let host_config = VhostHostConfig {
            ports,
            extra_eal: args.vhost_eal.clone(),
            ..VhostHostConfig::new(args.vhost.clone())
        };
        let mut host = match VhostHost::start(&host_config).and_then(|mut h| {
            h.start_forwarding()?;
            Ok(h)
        }) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("testbed: vhost host: {e}");
                return ExitCode::from(EXIT_HARNESS);
            }
        };
        for (port, &i) in served.iter().enumerate() {
            nics[i].backend = host.backend(port);
        }
        eprintln!(
            "testbed: host dpdk-testpmd serves {} vhost-user NIC(s) ({:?}), sockets in {}",
            served.len(),
            args.vhost,
            host.dir().display()
        );
        // The counters of a previous command are not needed.
        let _ = host.clear_port_stats();
        vhost_host = Some(host);
    }
    let config = GuestConfig {
        nics,
        hugepages_2m: args.hugepages,
        memory_mb: args.memory,
        timeout: Duration::from_secs(args.timeout),
        extra_qemu_args: args.qemu_args,
    };
    let guest = match Guest::boot(&config, &script) {
        Ok(g) => g,
        // A configuration the harness rejects is a usage error, like a bad flag.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            eprintln!("testbed: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("testbed: {e}");
            return ExitCode::from(EXIT_HARNESS);
        }
    };
    guest.set_echo(false);
    // Echo here rather than from the reader thread so --quiet and normal runs print the
    // console on stdout, where a calling script can capture it.
    let mut guest = guest;
    while let Some(line) = guest.next_line() {
        if !args.quiet {
            println!("{line}");
        }
    }
    let outcome = match guest.wait() {
        Ok(o) => {
            if let Some(host) = &mut vhost_host {
                print_host_counters(host);
            }
            o
        }
        Err(e) => {
            eprintln!("testbed: {e}");
            return ExitCode::from(EXIT_HARNESS);
        }
    };
    if outcome.success() {
        // Failures were already described by wait().
        eprintln!("testbed: {}", outcome.describe());
    }
    if outcome.timed_out {
        return ExitCode::from(EXIT_TIMEOUT);
    }
    if outcome.setup_error.is_some() {
        return ExitCode::from(EXIT_HARNESS);
    }
    match outcome.exit_code {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(EXIT_HARNESS)),
        None => ExitCode::from(EXIT_HARNESS),
    }
}

/// The host testpmd's forward statistics and port counters, one line per port.
fn print_host_counters(host: &mut VhostHost) {
    match host.stop_forwarding() {
        Ok(fwd) => {
            for (i, f) in fwd.iter().enumerate() {
                eprintln!(
                    "testbed: host port {i}: rx {} tx {} tx_dropped {} rx polls {} ({:.1} % empty)",
                    f.rx_packets,
                    f.tx_packets,
                    f.tx_dropped,
                    f.rx_bursts,
                    100.0 * f.rx_empty_share
                );
            }
        }
        Err(e) => eprintln!("testbed: vhost host: {e}"),
    }
    if std::env::var_os("TESTBED_VHOST_TRANSCRIPT").is_some() {
        eprintln!("{}", host.transcript());
    }
}

fn initramfs() -> ExitCode {
    match tenge_testbed::build_initramfs() {
        Ok(path) => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("testbed: {e}");
            ExitCode::FAILURE
        }
    }
}
