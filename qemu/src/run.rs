//! Booting a guest, following its console, and collecting its outcome.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::config::{Backend, GuestConfig, NicModel};
use crate::host;
use crate::qemu::{self, RunPaths};
use crate::tap;

/// The console line stage 2 prints with the script's exit code.
pub const EXIT_MARKER: &str = "TENGE-GUEST-EXIT=";
/// The console line stage 2 (or init) prints when it could not prepare the guest.
pub const SETUP_ERROR_MARKER: &str = "TENGE-GUEST-SETUP-ERROR=";

/// What a timed-out run's thread report says when a QEMU thread sat in a blocking read
/// of a unix socket: QEMU waits for a vhost-user reply (its vhost-user requests are
/// synchronous, and a vCPU that writes a virtio register holds the big QEMU lock while it
/// waits), so the guest froze with it. That is the emulator or the backend hanging, not
/// the guest: a test may boot once more on it (`tenge_tests::retry_on_qemu_failure`).
pub const QEMU_WEDGED: &str = "QEMU wedged: a thread blocked reading a unix socket";

/// What a run says when the guest kernel reported that its timers stopped firing
/// ([`TIMER_LOST_SIGNATURE`]): a vCPU sat idle with its next timer interrupt never
/// delivered, so anything asleep on that CPU sleeps forever. Under TCG this has been seen
/// with the host busy (a guest that never powered off, a guest frozen between two runs of
/// rx-sink); the guest never recovered in 300 s. That is the emulator losing an
/// interrupt, not the driver under test: the run is ended at once and a test may boot
/// once more on it (`tenge_tests::retry_on_qemu_failure`).
pub const GUEST_TIMER_LOST: &str = "guest timer lost: the guest kernel's timers stopped firing";

/// The guest kernel's RCU stall report for a grace-period thread whose timer never woke
/// it (`kernel/rcu/tree_stall.h`, `rcu_check_gp_kthread_expired_fqs_timer`): a timer
/// interrupt lost, not a busy CPU (that one reads "kthread starved" alone).
pub const TIMER_LOST_SIGNATURE: &str = "kthread timer wakeup didn't happen";

/// What a run says when the guest kernel reported a CPU stuck in the kernel, not
/// scheduling, for over 20 s ([`SOFT_LOCKUP_SIGNATURE`]). Seen once under TCG (the vhost-user
/// receive-filter test, at a pktgen's exit): CPU 0 stuck for 131 s with the RCU kthread
/// starved and CPU 1 not answering RCU either, the guest never recovering; a program in user
/// space, as tenge is, cannot hold a CPU in the kernel, so the kernel waited on an emulated
/// device or on the other vCPU that never answered. The run is ended at once and a test may
/// boot once more on it (`tenge_tests::retry_on_qemu_failure`).
pub const GUEST_LOCKUP: &str = "guest kernel lockup: a CPU stuck in the kernel";

/// The guest kernel's soft-lockup report (`kernel/watchdog.c`).
pub const SOFT_LOCKUP_SIGNATURE: &str = "watchdog: BUG: soft lockup";

/// How long QEMU may take to exit after the guest closed the console.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// QEMU stderr lines kept to explain a failed boot.
const STDERR_TAIL: usize = 20;

fn err(kind: io::ErrorKind, msg: impl Into<String>) -> io::Error {
    io::Error::new(kind, msg.into())
}

/// Boots guests. Its one entry point is [`Guest::boot`]; [`Guest::run`] also waits.
#[derive(Debug)]
pub struct Guest;

/// What a finished guest run left behind.
#[derive(Clone, Debug)]
pub struct GuestOutcome {
    /// The script's exit code, from the `TENGE-GUEST-EXIT=` console marker; `None` if the
    /// guest never printed it (timeout, kernel panic, QEMU failure).
    pub exit_code: Option<i32>,
    /// The run hit [`GuestConfig::timeout`] and QEMU was killed.
    pub timed_out: bool,
    /// The full serial console (and QEMU's stderr, prefixed `qemu: `).
    pub log: PathBuf,
    /// The host directory shared as the guest's writable `/out`.
    pub out_dir: PathBuf,
    /// Why the guest could not be prepared (vfio binding, hugepages, ...); the script did
    /// not run. From the `TENGE-GUEST-SETUP-ERROR=` marker.
    pub setup_error: Option<String>,
    /// QEMU's own exit status, if it exited by itself.
    pub qemu_status: Option<ExitStatus>,
    /// Wall time from starting QEMU to its exit.
    pub elapsed: Duration,
    /// The first `Kernel panic` console line, if the guest kernel panicked.
    pub kernel_panic: Option<String>,
    /// On a timeout: where QEMU's threads were when the run was stopped (one line per
    /// thread: name, state, kernel wait channel and stack), also written to the log.
    pub thread_report: Option<String>,
    /// The guest kernel's console line that said its timers stopped ([`GUEST_TIMER_LOST`]);
    /// the run was ended there.
    pub timer_lost: Option<String>,
    /// The guest kernel's soft-lockup line ([`GUEST_LOCKUP`]); the run was ended there.
    pub lockup: Option<String>,
}

impl GuestOutcome {
    /// The timeout found QEMU itself stuck ([`QEMU_WEDGED`]), not the guest.
    pub fn qemu_wedged(&self) -> bool {
        self.thread_report
            .as_deref()
            .is_some_and(|r| r.contains(QEMU_WEDGED))
    }
}

impl GuestOutcome {
    /// The script ran and exited 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// One line saying how the run ended, with the log's path; for assertion messages.
    pub fn describe(&self) -> String {
        let how = if self.qemu_wedged() {
            format!("timed out: {QEMU_WEDGED} (a vhost-user reply that never came)")
        } else if let Some(why) = frozen(&self.timer_lost, &self.lockup) {
            format!("ended: {why}")
        } else if self.timed_out {
            match self.thread_report.as_deref().map(vcpu_states) {
                // Running vCPUs (R) with a silent console: the guest spins or its script
                // waits; all asleep (S): the guest idles, its timers or a wake-up lost.
                Some(v) if !v.is_empty() => format!("timed out (QEMU's vCPUs: {})", v.join(", ")),
                _ => "timed out".to_owned(),
            }
        } else if let Some(e) = &self.setup_error {
            format!("guest setup failed: {e}")
        } else if let Some(c) = self.exit_code {
            format!("script exited {c}")
        } else if let Some(p) = &self.kernel_panic {
            format!("guest kernel panicked ({})", p.trim())
        } else {
            format!(
                "guest ended without an exit marker (QEMU {})",
                self.qemu_status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "killed".into())
            )
        };
        format!(
            "{how} after {:.1} s; serial log: {}",
            self.elapsed.as_secs_f64(),
            self.log.display()
        )
    }
}

/// A guest that is booting or running. Iterate it to get its console lines as they arrive
/// (`\r` stripped); call [`RunningGuest::wait`] for the outcome. Dropping it kills QEMU.
#[derive(Debug)]
pub struct RunningGuest {
    child: Option<Child>,
    lines: Receiver<String>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
    deadline: Instant,
    exit_code: Option<i32>,
    setup_error: Option<String>,
    kernel_panic: Option<String>,
    thread_report: Option<String>,
    timer_lost: Option<String>,
    lockup: Option<String>,
    timed_out: bool,
    console_closed: bool,
    log_file: Arc<Mutex<File>>,
    /// When the exit marker came: a guest whose power-off then hangs (a stalled guest
    /// timer under TCG on a loaded host has been seen to) is killed EXIT_GRACE later
    /// instead of at the run's deadline.
    exit_seen: Option<Instant>,
    echo: Arc<AtomicBool>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    run_dir: PathBuf,
    log: PathBuf,
    out_dir: PathBuf,
}

impl Guest {
    /// Boots a guest configured by `config` that runs `script` (shell text, run with the
    /// host's `/bin/sh` from the workspace root, stdin from /dev/null) once its NICs are
    /// bound and its hugepages mounted, then powers off.
    ///
    /// In the guest: the host's `/` is visible read-only, `/tmp` and `/run` are tmpfs, `/out`
    /// is writable and shared with the host ([`GuestOutcome::out_dir`]); `$TENGE_NICS` lists
    /// the NICs' PCI addresses, `$TENGE_ROOT` is the workspace root, `$TENGE_OUT` is `/out`.
    ///
    /// The console is echoed to stderr (turn off with [`RunningGuest::set_echo`]) and
    /// written to `target/testbed/run-<pid>-<n>/serial.log`.
    pub fn boot(config: &GuestConfig, script: &str) -> io::Result<RunningGuest> {
        config
            .validate()
            .map_err(|e| err(io::ErrorKind::InvalidInput, format!("guest config: {e}")))?;
        let qemu = host::qemu_binary()?;
        let caps = qemu_caps(&qemu)?;
        if config.nics.iter().any(|n| n.model == NicModel::Igb) && !caps.igb {
            return Err(err(
                io::ErrorKind::Unsupported,
                format!(
                    "{} has no igb model (QEMU 8 or later has): run qemu/install-deps.sh",
                    qemu.display()
                ),
            ));
        }
        let root = host::workspace_root()?;
        let (image, kver) = host::guest_kernel()?;
        let kernel = host::boot_kernel(&root, &image, &kver);
        let initrd = host::initramfs(&root, &kver)?;
        let run_dir = host::new_run_dir(&root)?;
        let script_path = run_dir.join("script.sh");
        fs::write(&script_path, script)?;
        let out_dir = run_dir.join("out");
        let log = run_dir.join("serial.log");

        let mut dumps = Vec::new();
        let mut config = config.clone();
        for nic in &mut config.nics {
            // QEMU resolves relative paths against its own working directory, which is ours,
            // but make it explicit so the command line in the log is self-contained.
            if let Some(d) = &mut nic.dump {
                *d = std::path::absolute(&*d)?;
                dumps.push(d.clone());
            }
        }
        let paths = RunPaths {
            kernel,
            initrd,
            root: host::guest_visible(&root, "workspace root")?,
            stage2: host::guest_visible(&root.join("qemu/guest/stage2.sh"), "stage 2")?,
            script: host::guest_visible(&script_path, "script")?,
            out_dir: out_dir.clone(),
        };
        // Tap backends: attach to each tap in its namespace here and let QEMU inherit the
        // descriptor, so QEMU stays in our namespace (9p, dgram on 127.0.0.1 unchanged).
        let mut tap_files = Vec::new();
        let mut tap_fds = BTreeMap::new();
        for (i, nic) in config.nics.iter().enumerate() {
            if let Backend::Tap {
                netns,
                ifname,
                queues,
            } = &nic.backend
            {
                let fds = tap::open_tap(netns, ifname, *queues)
                    .map_err(|e| err(e.kind(), format!("NIC {i}: {e}")))?;
                tap_fds.insert(i, fds.iter().map(|f| f.as_raw_fd()).collect());
                tap_files.extend(fds);
            }
        }
        let args = qemu::qemu_args(&config, &paths, caps.aw_bits, &tap_fds);

        let mut log_file = File::create(&log)?;
        writeln!(
            log_file,
            "# {} {}",
            qemu.display(),
            args.iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        )?;
        let log_file = Arc::new(Mutex::new(log_file));

        let mut cmd = Command::new(&qemu);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let inherited: Vec<i32> = tap_fds.values().flatten().copied().collect();
        if !inherited.is_empty() {
            // SAFETY: runs between fork and exec and calls only fcntl(2), which is
            // async-signal-safe; the descriptors are open (`tap_files` outlives the spawn).
            unsafe {
                cmd.pre_exec(move || {
                    for &fd in &inherited {
                        if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        let started = Instant::now();
        let mut child = spawn_guarded(cmd)
            .map_err(|e| err(e.kind(), format!("cannot start {}: {e}", qemu.display())))?;
        // QEMU has its own copies now; with ours closed the tap's file goes when QEMU does.
        drop(tap_files);

        let echo = Arc::new(AtomicBool::new(true));
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, lines) = mpsc::channel();
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            let (log_file, echo) = (Arc::clone(&log_file), Arc::clone(&echo));
            readers.push(thread::spawn(move || {
                read_console(stdout, tx, &log_file, &echo)
            }));
        }
        if let Some(stderr) = child.stderr.take() {
            let (log_file, echo, tail) = (
                Arc::clone(&log_file),
                Arc::clone(&echo),
                Arc::clone(&stderr_tail),
            );
            readers.push(thread::spawn(move || {
                read_stderr(stderr, &log_file, &echo, &tail)
            }));
        }
        Ok(RunningGuest {
            child: Some(child),
            lines,
            readers,
            started,
            deadline: started + config.timeout,
            exit_code: None,
            setup_error: None,
            kernel_panic: None,
            thread_report: None,
            timer_lost: None,
            lockup: None,
            timed_out: false,
            console_closed: false,
            log_file,
            exit_seen: None,
            echo,
            stderr_tail,
            run_dir,
            log,
            out_dir,
        })
    }

    /// [`Guest::boot`] and [`RunningGuest::wait`].
    pub fn run(config: &GuestConfig, script: &str) -> io::Result<GuestOutcome> {
        Guest::boot(config, script)?.wait()
    }
}

impl RunningGuest {
    /// The next console line, blocking until one arrives. `None` once the console closed
    /// (the guest powered off or QEMU died) or the run's timeout passed (QEMU is then killed
    /// and the outcome says `timed_out`).
    pub fn next_line(&mut self) -> Option<String> {
        self.next_line_until(self.deadline)
    }

    /// Like [`RunningGuest::next_line`] but gives up after `within` (or at the run's
    /// deadline, whichever is first). `Err(TimedOut)` when `within` passed with the guest
    /// still running; `Ok(None)` when the guest ended.
    pub fn next_line_within(&mut self, within: Duration) -> io::Result<Option<String>> {
        let until = Instant::now() + within;
        if until >= self.deadline {
            return Ok(self.next_line());
        }
        match self.recv_until(until) {
            Recv::Line(l) => Ok(Some(l)),
            Recv::Closed => Ok(None),
            Recv::Timeout => Err(err(
                io::ErrorKind::TimedOut,
                format!("no console line within {within:?}"),
            )),
        }
    }

    /// Consumes console lines until one satisfies `pred` and returns it; for reacting to a
    /// line like `READY`. Fails if the guest ends or the run times out first.
    pub fn wait_for_line(&mut self, mut pred: impl FnMut(&str) -> bool) -> io::Result<String> {
        while let Some(line) = self.next_line() {
            if pred(&line) {
                return Ok(line);
            }
        }
        let kind = if self.frozen().is_some() || self.timed_out {
            io::ErrorKind::TimedOut
        } else {
            io::ErrorKind::UnexpectedEof
        };
        Err(err(kind, format!("no awaited line: {}", self.end_reason())))
    }

    /// The guest kernel said it stopped making progress ([`GUEST_TIMER_LOST`],
    /// [`GUEST_LOCKUP`]): why, with its console line.
    fn frozen(&self) -> Option<String> {
        frozen(&self.timer_lost, &self.lockup)
    }

    /// Why the console closed before a line the caller waited for ([`RunningGuest::next_line`]
    /// returned `None`), or how the guest stands when something else failed (a QMP request),
    /// with the serial log's path: the guest's timers stopped, the run timed out, the script
    /// exited, the guest ended, or its console is still open; if QEMU died (exited by a
    /// signal or with an error; waited for up to 2 s), its last stderr lines, so an emulator
    /// abort such as `tenge_tests::QEMU_TCG_MAP_RACE` is named where a test's retry looks
    /// for it.
    pub fn end_reason(&mut self) -> String {
        let why = if let Some(why) = self.frozen() {
            why
        } else if self.timed_out {
            "the run timed out".to_owned()
        } else if let Some(c) = self.exit_code {
            format!("the guest script exited {c}")
        } else if self.console_closed {
            "the guest ended".to_owned()
        } else {
            "the guest's console is still open".to_owned()
        };
        // The console closes as QEMU dies; its stderr comes on another thread. Once QEMU
        // has exited, the readers end at the pipes' EOF: join them for the whole tail.
        let killed_here = self.timed_out || self.frozen().is_some();
        let died = match self.child.as_mut().filter(|_| !killed_here) {
            Some(child) => exit_status_by(child, Instant::now() + Duration::from_secs(2))
                .ok()
                .flatten(),
            None => None,
        };
        let mut qemu = String::new();
        if let Some(status) = died.filter(|s| !s.success()) {
            for r in self.readers.drain(..) {
                let _ = r.join();
            }
            qemu = format!(
                "; QEMU {status}, its last stderr lines:\n{}",
                self.stderr_lines(3)
            );
        }
        format!("{why}; serial log: {}{qemu}", self.log.display())
    }

    /// [`RunningGuest::wait_for_line`] for a line containing `needle`.
    pub fn wait_for(&mut self, needle: &str) -> io::Result<String> {
        self.wait_for_line(|l| l.contains(needle))
    }

    /// Runs the guest to its end (or timeout), collecting the remaining console lines.
    /// A run that did not exit 0 gets its serial log's path printed on stderr.
    pub fn wait(mut self) -> io::Result<GuestOutcome> {
        while self.next_line().is_some() {}
        let mut qemu_status = None;
        if let Some(mut child) = self.child.take() {
            if !self.timed_out {
                // The console closed: QEMU is on its way out. Give it a moment, then make sure.
                let grace = (Instant::now() + EXIT_GRACE).min(self.deadline.max(Instant::now()));
                qemu_status = exit_status_by(&mut child, grace)?;
                if qemu_status.is_none() {
                    self.timed_out = Instant::now() >= self.deadline;
                }
            }
            if qemu_status.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let elapsed = self.started.elapsed();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let outcome = GuestOutcome {
            exit_code: self.exit_code,
            timed_out: self.timed_out,
            log: std::mem::take(&mut self.log),
            out_dir: std::mem::take(&mut self.out_dir),
            setup_error: self.setup_error.take(),
            kernel_panic: self.kernel_panic.take(),
            thread_report: self.thread_report.take(),
            timer_lost: self.timer_lost.take(),
            lockup: self.lockup.take(),
            qemu_status,
            elapsed,
        };
        if outcome.success() {
            let _ = File::create(self.run_dir.join(host::OK_MARK));
        } else {
            let tail = self.stderr_lines(STDERR_TAIL);
            eprintln!("tenge-testbed: {}", outcome.describe());
            if outcome.exit_code.is_none() && !tail.is_empty() {
                eprintln!("tenge-testbed: QEMU's last stderr lines:\n{tail}");
            }
        }
        Ok(outcome)
    }

    /// QEMU's last `n` stderr lines (of the [`STDERR_TAIL`] kept), one per line.
    fn stderr_lines(&self, n: usize) -> String {
        self.stderr_tail
            .lock()
            .map(|t| {
                let skip = t.len().saturating_sub(n);
                t.iter().skip(skip).cloned().collect::<Vec<_>>().join("\n")
            })
            .unwrap_or_default()
    }

    /// Kills QEMU now; the outcome then has no exit code (unless it was already printed).
    pub fn kill(&mut self) -> io::Result<()> {
        if let Some(child) = &mut self.child {
            if child.try_wait()?.is_none() {
                child.kill()?;
            }
            child.wait()?;
        }
        Ok(())
    }

    /// Whether console lines are echoed to stderr (on by default). Under `cargo test` the
    /// echo is captured and shown only for failing tests.
    pub fn set_echo(&self, on: bool) {
        self.echo.store(on, Ordering::Relaxed);
    }

    /// QEMU's process ID while it runs (None once it has been reaped).
    pub fn qemu_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The serial log being written.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The host directory shared as the guest's `/out`.
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// This run's directory (`script.sh`, `serial.log`, `out/`).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The script's exit code, once its marker has been read.
    pub fn exit_code(&self) -> Option<i32> {
        self.exit_code
    }

    fn next_line_until(&mut self, until: Instant) -> Option<String> {
        let after_exit = self.exit_seen.map(|t| t + EXIT_GRACE);
        match self.recv_until(after_exit.map_or(until, |g| g.min(until))) {
            Recv::Line(l) => Some(l),
            Recv::Closed => None,
            Recv::Timeout if after_exit.is_some_and(|g| Instant::now() >= g) => {
                // The script finished and said so; only the power-off hung.
                eprintln!(
                    "tenge-testbed: the guest printed its exit code but did not power off within {EXIT_GRACE:?}; killing QEMU (serial log: {})",
                    self.log.display()
                );
                let _ = self.kill();
                self.console_closed = true;
                None
            }
            Recv::Timeout => {
                self.timed_out = true;
                self.report_threads();
                let _ = self.kill();
                None
            }
        }
    }

    fn recv_until(&mut self, until: Instant) -> Recv {
        if self.console_closed || self.timed_out {
            return Recv::Closed;
        }
        let wait = until.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(line) => {
                self.note_markers(&line);
                if let Some(why) = self.frozen() {
                    self.end_frozen_guest(&why);
                }
                Recv::Line(line)
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.console_closed = true;
                Recv::Closed
            }
            Err(RecvTimeoutError::Timeout) => Recv::Timeout,
        }
    }

    /// Before a timed-out QEMU is killed: where each of its threads waits, into the log
    /// and the outcome, so a hang says whether the guest or QEMU stopped.
    fn report_threads(&mut self) {
        let Some(pid) = self.qemu_pid() else { return };
        let report = thread_report(pid);
        if let Ok(mut f) = self.log_file.lock() {
            let _ = writeln!(f, "tenge-testbed: QEMU's threads at the timeout:\n{report}");
        }
        self.thread_report = Some(report);
    }

    /// The guest said its timers stopped or a CPU locked up: waiting for it is waiting
    /// for the deadline. Kills QEMU with the thread report in the log (which shows whether
    /// QEMU's vCPU threads were running), keeping the lines already read.
    fn end_frozen_guest(&mut self, why: &str) {
        if self.console_closed {
            return;
        }
        eprintln!(
            "tenge-testbed: {why}; ending the run (serial log: {})",
            self.log.display()
        );
        if let Some(pid) = self.qemu_pid() {
            let report = thread_report(pid);
            if let Ok(mut f) = self.log_file.lock() {
                let _ = writeln!(f, "tenge-testbed: {why}; QEMU's threads:\n{report}");
            }
        }
        let _ = self.kill();
        self.console_closed = true;
    }

    fn note_markers(&mut self, line: &str) {
        if self.kernel_panic.is_none() && line.contains("Kernel panic - ") {
            self.kernel_panic = Some(line.to_owned());
        }
        if self.timer_lost.is_none() && line.contains(TIMER_LOST_SIGNATURE) {
            self.timer_lost = Some(line.to_owned());
        }
        if self.lockup.is_none() && line.contains(SOFT_LOCKUP_SIGNATURE) {
            self.lockup = Some(line.to_owned());
        }
        let line = line.trim();
        if let Some(code) = line.strip_prefix(EXIT_MARKER) {
            if let Ok(code) = code.trim().parse() {
                self.exit_code = Some(code);
                self.exit_seen = Some(Instant::now());
            }
        } else if let Some(why) = line.strip_prefix(SETUP_ERROR_MARKER) {
            self.setup_error = Some(why.to_owned());
        }
    }
}

enum Recv {
    Line(String),
    Closed,
    Timeout,
}

impl Iterator for RunningGuest {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        self.next_line()
    }
}

impl Drop for RunningGuest {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// One line per thread of process `pid`: its name, scheduler state, kernel wait channel
/// and the functions on its kernel stack (`/proc/PID/task/TID/{comm,stat,wchan,stack}`;
/// the stack needs root). Ends with a [`QEMU_WEDGED`] line when a thread sits in a
/// blocking unix-socket read, which in QEMU is a synchronous vhost-user request (its
/// chardevs, QMP and 9p are poll-driven and never block there).
pub fn thread_report(pid: u32) -> String {
    let mut lines = Vec::new();
    let mut blocked = Vec::new();
    let task = format!("/proc/{pid}/task");
    let mut tids: Vec<u32> = fs::read_dir(&task)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    tids.sort_unstable();
    for tid in tids {
        let read = |f: &str| fs::read_to_string(format!("{task}/{tid}/{f}")).unwrap_or_default();
        let comm = read("comm").trim().to_owned();
        // stat: "tid (comm) S ...": the state follows the last ')'.
        let stat = read("stat");
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("?")
            .to_owned();
        let wchan = read("wchan");
        // "[<0>] unix_stream_read_generic+0x6a/0x8d0": keep the function names.
        let stack: Vec<String> = read("stack")
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .map(|f| f.split('+').next().unwrap_or(f).to_owned())
            .take(6)
            .collect();
        if stack.iter().any(|f| f.starts_with("unix_stream_read")) {
            blocked.push(comm.clone());
        }
        lines.push(format!(
            "  {tid} {comm:<20} {state} wchan={} stack={}",
            if wchan.is_empty() { "?" } else { wchan.trim() },
            stack.join("<")
        ));
    }
    if lines.is_empty() {
        lines.push(format!("  (no threads under {task}: the process is gone)"));
    }
    if !blocked.is_empty() {
        lines.push(format!("{QEMU_WEDGED} ({})", blocked.join(", ")));
    }
    lines.join("\n")
}

/// `child`'s exit status once it has exited, or `None` if it still runs at `until`.
fn exit_status_by(child: &mut Child, until: Instant) -> io::Result<Option<ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= until {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// [`GUEST_TIMER_LOST`] or [`GUEST_LOCKUP`] with the console line that said it.
fn frozen(timer_lost: &Option<String>, lockup: &Option<String>) -> Option<String> {
    if let Some(line) = timer_lost {
        Some(format!("{GUEST_TIMER_LOST} (`{}`)", line.trim()))
    } else {
        lockup
            .as_ref()
            .map(|line| format!("{GUEST_LOCKUP} (`{}`)", line.trim()))
    }
}

/// The vCPU threads of a [`thread_report`] ("CPU 0/TCG" and so on), each as its name,
/// scheduler state and kernel wait channel: "CPU 0/TCG R 0".
pub fn vcpu_states(report: &str) -> Vec<String> {
    report
        .lines()
        .filter_map(|l| {
            // "  <tid> <comm padded to 20> <state> wchan=<w> stack=<s>"
            let (head, rest) = l.split_once("/TCG")?;
            let name = head
                .split_whitespace()
                .skip(1)
                .collect::<Vec<_>>()
                .join(" ");
            let mut fields = rest.split_whitespace();
            let state = fields.next()?;
            let wchan = fields.next().and_then(|w| w.strip_prefix("wchan="))?;
            Some(format!("{name}/TCG {state} {wchan}"))
        })
        .collect()
}

/// Reads QEMU's stdout (the guest's serial console) line by line: into the log, onto stderr
/// if echo is on, and to the consumer.
fn read_console(stdout: impl Read, tx: Sender<String>, log: &Mutex<File>, echo: &AtomicBool) {
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line: String = String::from_utf8_lossy(&buf)
            .chars()
            .filter(|&c| c != '\r' && c != '\n')
            .collect();
        if let Ok(mut f) = log.lock() {
            let _ = writeln!(f, "{line}");
        }
        if echo.load(Ordering::Relaxed) {
            eprintln!("{line}");
        }
        // The consumer may be gone (dropped guest); keep draining so QEMU never blocks.
        let _ = tx.send(line);
    }
}

fn read_stderr(
    stderr: impl Read,
    log: &Mutex<File>,
    echo: &AtomicBool,
    tail: &Mutex<VecDeque<String>>,
) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let line = format!("qemu: {line}");
        if let Ok(mut f) = log.lock() {
            let _ = writeln!(f, "{line}");
        }
        if echo.load(Ordering::Relaxed) {
            eprintln!("{line}");
        }
        if let Ok(mut t) = tail.lock() {
            if t.len() == STDERR_TAIL {
                t.pop_front();
            }
            t.push_back(line);
        }
    }
}

/// What the installed QEMU supports, probed once per process.
#[derive(Clone, Copy, Debug)]
struct QemuCaps {
    aw_bits: bool,
    igb: bool,
}

fn qemu_caps(qemu: &Path) -> io::Result<QemuCaps> {
    static CAPS: OnceLock<QemuCaps> = OnceLock::new();
    if let Some(c) = CAPS.get() {
        return Ok(*c);
    }
    let help = |what: &str| -> io::Result<String> {
        let out = Command::new(qemu)
            .args(["-device", what])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                err(
                    e.kind(),
                    format!(
                        "cannot run {}: {e}; run qemu/install-deps.sh",
                        qemu.display()
                    ),
                )
            })?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let caps = QemuCaps {
        aw_bits: help("intel-iommu,help")?.contains("aw-bits"),
        igb: help("help")?.contains("\"igb\""),
    };
    Ok(*CAPS.get_or_init(|| caps))
}

/// Spawns `cmd` so that it dies with this process, even on SIGKILL: the child asks for
/// SIGKILL when its parent dies (PR_SET_PDEATHSIG). Linux's "parent" there is the spawning
/// *thread*, so all spawns go through one thread that lives as long as the process;
/// otherwise a guest booted from a short-lived thread would be killed with it.
pub(crate) fn spawn_guarded(cmd: Command) -> io::Result<Child> {
    type Job = (Command, Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = thread::Builder::new()
            .name("tenge-testbed-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let parent = std::process::id();
                    // SAFETY: the closure runs between fork and exec and calls only
                    // prctl(2) and getppid(2), both async-signal-safe.
                    unsafe {
                        cmd.pre_exec(move || {
                            rustix::process::set_parent_process_death_signal(Some(
                                rustix::process::Signal::KILL,
                            ))?;
                            // The parent may have died before the prctl took effect.
                            if std::os::unix::process::parent_id() != parent {
                                return Err(io::Error::other("parent exited during spawn"));
                            }
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn());
                }
            });
        if let Err(e) = spawned {
            // Without the thread every spawn below fails with a clear error.
            eprintln!("tenge-testbed: cannot start the spawner thread: {e}");
        }
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .lock()
        .map_err(|_| io::Error::other("spawner lock poisoned"))?
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}

/// Quotes `s` for a POSIX shell.
pub(crate) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("e1000e_rx_*"), "'e1000e_rx_*'");
    }

    /// A thread of this process blocked reading a unix socket is reported as such (the
    /// kernel stack needs root, as the test bed does); once the socket has data the
    /// thread moves on and the report no longer says it.
    #[test]
    fn thread_report_names_a_thread_blocked_on_a_unix_socket() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: /proc/*/stack needs root");
            return;
        }
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let reader = thread::Builder::new()
            .name("blocked-reader".into())
            .spawn(move || {
                let mut buf = [0u8; 1];
                (&b).read_exact(&mut buf).map(|()| buf[0])
            })
            .unwrap();
        let pid = std::process::id();
        let deadline = Instant::now() + Duration::from_secs(5);
        let report = loop {
            let r = thread_report(pid);
            if r.contains(QEMU_WEDGED) || Instant::now() > deadline {
                break r;
            }
            thread::sleep(Duration::from_millis(10));
        };
        assert!(report.contains("blocked-reader"), "{report}");
        assert!(
            report.contains(&format!("{QEMU_WEDGED} (blocked-reader)")),
            "{report}"
        );
        a.write_all(&[7]).unwrap();
        assert_eq!(reader.join().unwrap().unwrap(), 7);
        assert!(!thread_report(pid).contains(QEMU_WEDGED));
    }

    /// A thread named as QEMU names a vCPU thread shows in the report's vCPU summary with
    /// its state: asleep on a channel, S.
    #[test]
    fn vcpu_states_name_each_vcpu_thread_and_its_state() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let sleeper = thread::Builder::new()
            .name("CPU 7/TCG".into())
            .spawn(move || rx.recv())
            .unwrap();
        let pid = std::process::id();
        let deadline = Instant::now() + Duration::from_secs(5);
        let states = loop {
            let v = vcpu_states(&thread_report(pid));
            if v.iter().any(|s| s.starts_with("CPU 7/TCG S ")) || Instant::now() > deadline {
                break v;
            }
            thread::sleep(Duration::from_millis(10));
        };
        tx.send(()).unwrap();
        sleeper.join().unwrap().unwrap();
        assert_eq!(states.len(), 1, "{states:?}");
        assert!(states[0].starts_with("CPU 7/TCG S "), "{states:?}");
        let line = "  4242 CPU 1/TCG            R wchan=0 stack=";
        assert_eq!(vcpu_states(line), ["CPU 1/TCG R 0"]);
    }
}
