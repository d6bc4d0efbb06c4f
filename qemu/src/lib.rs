//! The QEMU guest test bed: boots a throwaway Linux guest under QEMU (TCG) with emulated NICs
//! (e1000e, igb, virtio-net) behind a virtual Intel IOMMU, binds them to vfio-pci, reserves
//! hugepages, runs a shell script in it and reports the script's exit code.
//!
//! The guest sees the host's whole file tree read-only (9p), so a script can run test
//! binaries and tools straight from the checkout and the host (`dpdk-testpmd`, `modprobe`).
//! See `qemu/guest/init` and `qemu/guest/stage2.sh` for what happens inside.
//!
//! ```no_run
//! use tenge_testbed::{Backend, Guest, GuestConfig, Nic, NicModel};
//!
//! let config = GuestConfig::with_nics(vec![Nic::new(NicModel::E1000e, Backend::Hub(0))]);
//! let mut guest = Guest::boot(&config, "echo READY; sleep 1; exit 3").unwrap();
//! guest.wait_for("READY").unwrap(); // e.g. start sending datagrams now
//! let outcome = guest.wait().unwrap();
//! assert_eq!(outcome.exit_code, Some(3), "{}", outcome.describe());
//! ```
//!
//! [`TapPeer`] gives a NIC a real Linux peer: a vnet-header tap in a network namespace made
//! for the test, which the test drives with [`TapPeer::exec`], [`TapPeer::ping`] and
//! [`FrameSocket`] while the guest runs.
//!
//! Needs `qemu/install-deps.sh` to have run (QEMU 10, a Debian kernel, busybox-static) and
//! root (for 9p with `security_model=none` and the initramfs's device node).

mod config;
mod host;
mod qemu;
mod qmp;
mod run;
mod tap;
mod vhost;

pub use config::{Backend, GuestConfig, Nic, NicModel, MAX_NICS};
pub use host::workspace_root;
pub use qmp::Qmp;
pub use run::{
    thread_report, Guest, GuestOutcome, RunningGuest, EXIT_MARKER, GUEST_LOCKUP, GUEST_TIMER_LOST,
    QEMU_WEDGED, SETUP_ERROR_MARKER, SOFT_LOCKUP_SIGNATURE, TIMER_LOST_SIGNATURE,
};
pub use tap::{
    FrameSocket, PingResult, TapPeer, DEFAULT_GUEST_ADDR, DEFAULT_HOST_CIDR, DEFAULT_IFNAME,
    MAX_TAP_QUEUES, OWNERS_DIR,
};
pub use vhost::{FwdCounters, HostMode, PortCounters, VhostHost, VhostHostConfig};

/// Builds the initramfs for the guest kernel if its inputs changed; returns its path
/// (`target/testbed/initramfs-<release>.cpio.gz`). [`Guest::boot`] does this itself.
pub fn build_initramfs() -> std::io::Result<std::path::PathBuf> {
    let root = workspace_root()?;
    let (_, kver) = host::guest_kernel()?;
    host::initramfs(&root, &kver)
}

/// A guest script that runs one command (`argv[0]` looked up in the guest's `PATH`) and
/// exits with its status.
pub fn command_script(argv: &[String]) -> String {
    let words: Vec<String> = argv.iter().map(|a| run::shell_quote(a)).collect();
    format!("exec {}\n", words.join(" "))
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_script_quotes_arguments() {
        let argv = ["echo".to_owned(), "a b".to_owned(), "$HOME".to_owned()];
        assert_eq!(super::command_script(&argv), "exec echo 'a b' '$HOME'\n");
    }
}
