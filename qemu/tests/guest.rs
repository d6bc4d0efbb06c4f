//! Tests of the test bed itself. Each boots a QEMU guest (about 8 s under TCG), so they are
//! ignored by default; run them with `cargo test -p tenge-testbed -- --ignored`.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use tenge_testbed::{Backend, Guest, GuestConfig, Nic, NicModel, RunningGuest};

fn config(nics: Vec<Nic>) -> GuestConfig {
    GuestConfig {
        nics,
        timeout: Duration::from_secs(180),
        ..GuestConfig::default()
    }
}

/// Boots a guest without hugepages, with `nics` and `timeout`, whose script prints READY,
/// runs `then` (lines) and sleeps an hour; returns it once READY came.
fn boot_until_ready(nics: Vec<Nic>, timeout: Duration, then: &str) -> RunningGuest {
    let cfg = GuestConfig {
        hugepages_2m: 0,
        timeout,
        ..config(nics)
    };
    let script = format!("echo READY\n{then}sleep 3600\n");
    let mut guest = Guest::boot(&cfg, &script).expect("boot");
    let line = guest.wait_for("READY").expect("READY line");
    assert_eq!(line, "READY");
    guest
}

/// A UDP port on 127.0.0.1 that was free a moment ago, for QEMU's end of a dgram backend.
fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral UDP port");
    s.local_addr().expect("local addr").port()
}

#[test]
#[ignore = "boots a QEMU guest"]
fn script_exit_code_comes_back() {
    let cfg = GuestConfig {
        hugepages_2m: 0,
        ..config(Vec::new())
    };
    let outcome = Guest::run(&cfg, "echo hello from the guest\nexit 3\n").expect("boot");
    assert_eq!(outcome.exit_code, Some(3), "{}", outcome.describe());
    assert!(!outcome.timed_out);
    assert!(outcome.setup_error.is_none());
    let log = std::fs::read_to_string(&outcome.log).expect("read serial log");
    assert!(
        log.contains("hello from the guest"),
        "{}",
        outcome.describe()
    );
}

#[test]
#[ignore = "boots a QEMU guest"]
fn nics_are_bound_to_vfio_pci() {
    // The host side of the virtio NIC's dgram backend; it must exist for QEMU to send to.
    let peer = UdpSocket::bind("127.0.0.1:0").expect("bind host peer");
    let remote_port = peer.local_addr().expect("peer addr").port();
    let nics = vec![
        Nic::new(NicModel::E1000e, Backend::Hub(0)),
        Nic::new(
            NicModel::virtio(),
            Backend::Dgram {
                local_port: free_udp_port(),
                remote_port,
            },
        ),
    ];
    let script = format!(
        r#"
set -e
for A in {a0} {a1}; do
    drv=$(readlink /sys/bus/pci/devices/$A/driver)
    [ "${{drv##*/}}" = vfio-pci ] || {{ echo "$A bound to $drv"; exit 10; }}
    group=$(readlink /sys/bus/pci/devices/$A/iommu_group)
    [ -c /dev/vfio/${{group##*/}} ] || {{ echo "no /dev/vfio/${{group##*/}}"; exit 11; }}
done
[ "$TENGE_NICS" = "{a0} {a1}" ] || exit 12
grep -q '^nodev /dev/hugepages hugetlbfs' /proc/mounts || exit 13
[ "$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages)" = 256 ] || exit 14
cat /sys/bus/pci/devices/{a1}/vendor /sys/bus/pci/devices/{a1}/device > /out/virtio-id
"#,
        a0 = Nic::pci_addr(0),
        a1 = Nic::pci_addr(1),
    );
    let outcome = Guest::run(&config(nics), &script).expect("boot");
    assert_eq!(outcome.exit_code, Some(0), "{}", outcome.describe());
    let id = std::fs::read_to_string(outcome.out_dir.join("virtio-id")).expect("read /out file");
    assert_eq!(id, "0x1af4\n0x1041\n");
}

#[test]
#[ignore = "boots a QEMU guest"]
fn zero_hugepages_mounts_no_hugetlbfs() {
    let cfg = GuestConfig {
        hugepages_2m: 0,
        ..config(vec![Nic::new(NicModel::E1000e, Backend::Hub(0))])
    };
    let script = "grep -q hugetlbfs /proc/mounts && exit 20\n\
                  [ \"$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages)\" = 0 ] || exit 21\n\
                  exit 0\n";
    let outcome = Guest::run(&cfg, script).expect("boot");
    assert_eq!(outcome.exit_code, Some(0), "{}", outcome.describe());
}

#[test]
#[ignore = "boots a QEMU guest"]
fn console_streams_and_timeout_kills_qemu() {
    let guest = boot_until_ready(Vec::new(), Duration::from_secs(30), "");
    // The line arrived while the guest still runs: well before the timeout.
    let seen_at = guest.elapsed();
    assert!(
        seen_at < Duration::from_secs(55),
        "READY only at {seen_at:?}"
    );
    let start = Instant::now();
    let outcome = guest.wait().expect("wait");
    assert!(outcome.timed_out, "{}", outcome.describe());
    assert_eq!(outcome.exit_code, None);
    assert!(start.elapsed() < Duration::from_secs(35));
}

/// The guest kernel's report of a timer that never fired (seen under TCG on a busy host,
/// the guest frozen for good) ends the run at once, with the reason in the error and the
/// outcome, instead of at the deadline. The script writes the kernel's line to
/// /dev/kmsg at emergency level, so the console prints it as the kernel would.
#[test]
#[ignore = "boots a QEMU guest"]
fn a_guest_that_reports_its_timers_stopped_is_ended_at_once() {
    let line = format!(
        "rcu: rcu_preempt {} for 5251 jiffies! (written by the test)",
        tenge_testbed::TIMER_LOST_SIGNATURE
    );
    frozen_guest_is_ended_at_once(&line, tenge_testbed::GUEST_TIMER_LOST, |o| &o.timer_lost);
}

/// The same for the kernel's soft-lockup report (seen under TCG: a CPU stuck in the
/// kernel for 131 s, the guest never recovering).
#[test]
#[ignore = "boots a QEMU guest"]
fn a_guest_that_reports_a_soft_lockup_is_ended_at_once() {
    let line = format!(
        "{} - CPU#0 stuck for 45s! (written by the test)",
        tenge_testbed::SOFT_LOCKUP_SIGNATURE
    );
    frozen_guest_is_ended_at_once(&line, tenge_testbed::GUEST_LOCKUP, |o| &o.lockup);
}

/// Boots a guest whose script writes `kernel_line` to /dev/kmsg and sleeps; the wait for a
/// line must fail within 60 s saying `why`, as must the outcome, whose field `seen` holds
/// the line and whose log has the thread report.
fn frozen_guest_is_ended_at_once(
    kernel_line: &str,
    why: &str,
    seen: fn(&tenge_testbed::GuestOutcome) -> &Option<String>,
) {
    let mut guest = boot_until_ready(
        Vec::new(),
        Duration::from_secs(300),
        &format!("echo \"<0>{kernel_line}\" > /dev/kmsg\n"),
    );
    let start = Instant::now();
    let err = guest
        .wait_for("never printed")
        .expect_err("the run must end");
    assert!(err.to_string().contains(why), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "ended only after {:?}",
        start.elapsed()
    );
    let outcome = guest.wait().expect("wait");
    assert!(!outcome.timed_out, "{}", outcome.describe());
    assert_eq!(outcome.exit_code, None);
    assert!(outcome.describe().contains(why), "{}", outcome.describe());
    let log = std::fs::read_to_string(&outcome.log).expect("read serial log");
    assert!(
        log.contains("QEMU's threads:"),
        "no thread report in the log"
    );
    assert!(
        seen(&outcome)
            .as_deref()
            .is_some_and(|l| l.contains("written by the test")),
        "{:?}",
        seen(&outcome)
    );
}

#[test]
#[ignore = "boots a QEMU guest"]
fn dropping_a_running_guest_kills_qemu() {
    let guest = boot_until_ready(Vec::new(), Duration::from_secs(180), "");
    let pid = guest.qemu_pid().expect("QEMU pid");
    drop(guest);
    // Drop kills and reaps QEMU, so its /proc entry is gone (barring pid reuse right away).
    let proc_entry = std::path::Path::new("/proc").join(pid.to_string());
    let cmdline = std::fs::read_to_string(proc_entry.join("cmdline")).unwrap_or_default();
    assert!(
        !cmdline.contains("qemu-system"),
        "QEMU {pid} survived the drop"
    );
}

/// A QEMU that dies mid-run (here killed with SIGABRT, as its own assertions end it) makes
/// the wait for a line fail with its exit signal and its last stderr lines, where a test's
/// retry looks for an emulator abort. The hub NIC makes QEMU print a warning on stderr.
#[test]
#[ignore = "boots a QEMU guest"]
fn a_qemu_that_dies_is_named_with_its_last_stderr_lines() {
    let mut guest = boot_until_ready(
        vec![Nic::new(NicModel::E1000e, Backend::Hub(0))],
        Duration::from_secs(180),
        "",
    );
    let pid = guest.qemu_pid().expect("QEMU runs");
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::ABORT).expect("kill QEMU");
    let err = guest
        .wait_for("never printed")
        .expect_err("the run must end")
        .to_string();
    assert!(err.contains("SIGABRT"), "{err}");
    assert!(err.contains("hub 0 is not connected"), "{err}");
    assert!(!guest.wait().expect("wait").timed_out);
}

/// A script that still runs 30 s before the run's timeout gets the guest's watchdog report
/// (qemu/guest/watchdog.sh): where each user task waits, here the script's `sleep` asleep
/// in the kernel's nanosleep, then the kernel's blocked-task report.
#[test]
#[ignore = "boots a QEMU guest"]
fn a_script_still_running_near_the_timeout_gets_the_watchdog_report() {
    let mut guest = boot_until_ready(Vec::new(), Duration::from_secs(60), "");
    let start = Instant::now();
    let mut report = Vec::new();
    while let Some(line) = guest.next_line() {
        if let Some(r) = line.strip_prefix("TENGE-WATCHDOG: ") {
            if r == "end" {
                break;
            }
            report.push(r.to_owned());
        }
    }
    let waited = start.elapsed();
    assert!(
        waited > Duration::from_secs(20) && waited < Duration::from_secs(45),
        "report after {waited:?}"
    );
    let sleep = report
        .iter()
        .find(|l| l.split_whitespace().nth(1) == Some("sleep"))
        .unwrap_or_else(|| panic!("no sleep task in the report: {report:#?}"));
    assert!(
        sleep.split_whitespace().nth(2) == Some("S") && sleep.contains("nanosleep"),
        "{sleep}"
    );
    assert!(report[0].contains("still runs after 30 s"), "{report:#?}");
}
