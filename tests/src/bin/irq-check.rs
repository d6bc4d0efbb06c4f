//! In-guest checks of interrupts, run by tests/tests/irq.rs: a receiver that sleeps when
//! idle and wakes for a frame, send-one/sleep/wake cycles, and link changes reported while
//! receiving. Each prints `key=value` results and exits non-zero when an expectation
//! fails; the host side checks the rest (/proc/interrupts, the times QMP changed the link).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tenge::{PacketBatch, Port, PortConfig};
use tenge_examples::frame::{self, Flow};

/// Interrupt and link checks (run inside the test guest).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// A receiver in hybrid mode (MSI-X) and a sender on the same wire: first idle for
    /// --idle-secs (CPU use from /proc/self/stat), then one frame sent once the receiver
    /// sleeps, then --cycles rounds of arm, send one frame (from another thread, after a
    /// short pause), sleep, wake, receive it.
    Wake {
        /// PCI address of the sending NIC (polled).
        sender: String,
        /// PCI address of the receiving NIC (interrupts).
        receiver: String,
        /// Seconds of idle receive in hybrid mode first (0: skip).
        #[arg(long, default_value_t = 5)]
        idle_secs: u64,
        /// Send-one/sleep/wake rounds.
        #[arg(long, default_value_t = 1000)]
        cycles: u64,
        /// Fail if the idle receiver used more than this much of a CPU, in percent.
        #[arg(long, default_value_t = 2.0)]
        max_idle_cpu: f64,
    },
    /// Wake-ups after an arming the receiver polled past: each round the sender sends
    /// --junk frames the receiver's ingress filter drops, the receiver arms its interrupt
    /// and polls once more (taking the junk, which leaves it nothing), then sleeps while
    /// the sender sends one frame it keeps. The interrupt must wake it (a device that
    /// suppresses by index was armed at an index the poll then moved past).
    FilteredWake {
        /// PCI address of the sending NIC (polled).
        sender: String,
        /// PCI address of the receiving NIC (interrupts).
        receiver: String,
        /// Rounds.
        #[arg(long, default_value_t = 20)]
        rounds: u64,
        /// Junk frames a round.
        #[arg(long, default_value_t = 8)]
        junk: u64,
    },
    /// Interrupt-driven receive (sleep at the first empty poll) with adaptive moderation,
    /// while a sender on the same wire is quiet for --quiet-secs, floods at --rate frames/s
    /// for --flood-secs, and is quiet again for --quiet-secs. Every 250 ms it prints the
    /// interval in force, the frames, and the interrupts the kernel counted on the
    /// receiver's vector (/proc/interrupts).
    Flood {
        /// PCI address of the sending NIC (polled).
        sender: String,
        /// PCI address of the receiving NIC (interrupts).
        receiver: String,
        /// Quiet seconds before and after the flood.
        #[arg(long, default_value_t = 2)]
        quiet_secs: u64,
        /// Seconds of flood.
        #[arg(long, default_value_t = 4)]
        flood_secs: u64,
        /// Flood rate, frames per second.
        #[arg(long, default_value_t = 20_000)]
        rate: u64,
        /// Fixed moderation interval (us) instead of adaptive.
        #[arg(long)]
        fixed_us: Option<u32>,
    },
    /// One measurement for tenge-bench's `irq` case: a sender thread sends 64-byte frames
    /// stamped with their send time at --rate frames/s (0: as fast as it can) for --secs;
    /// the receiver (this thread) busy-polls (--mode busy) or receives in hybrid mode with a
    /// fixed interval (fixed, --fixed-us) or adaptive moderation (adaptive). Prints the
    /// receive rate, the receiving thread's CPU use (/proc/thread-self/stat), the latency
    /// from send to receive (median, p99) and the interrupts per second the kernel counted.
    Bench {
        /// PCI address of the sending NIC (polled).
        sender: String,
        /// PCI address of the receiving NIC.
        receiver: String,
        /// busy, fixed or adaptive.
        #[arg(long)]
        mode: String,
        /// Seconds to measure.
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        /// Frames per second (0: a flood).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// The fixed mode's interval, microseconds.
        #[arg(long, default_value_t = 128)]
        fixed_us: u32,
    },
    /// Receives in hybrid mode for --secs, printing every link change the port reports
    /// (with the time since start) and the frames received while up.
    LinkWatch {
        /// PCI address of the NIC.
        pci: String,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Open without interrupts (the link is read on each poll).
        #[arg(long)]
        polled: bool,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let r = match Args::parse().cmd {
        Cmd::Wake {
            sender,
            receiver,
            idle_secs,
            cycles,
            max_idle_cpu,
        } => wake(&sender, &receiver, idle_secs, cycles, max_idle_cpu),
        Cmd::FilteredWake {
            sender,
            receiver,
            rounds,
            junk,
        } => filtered_wake(&sender, &receiver, rounds, junk),
        Cmd::LinkWatch { pci, secs, polled } => link_watch(&pci, secs, !polled),
        Cmd::Flood {
            sender,
            receiver,
            quiet_secs,
            flood_secs,
            rate,
            fixed_us,
        } => flood(&sender, &receiver, quiet_secs, flood_secs, rate, fixed_us),
        Cmd::Bench {
            sender,
            receiver,
            mode,
            secs,
            rate,
            fixed_us,
        } => bench(&sender, &receiver, &mode, secs, rate, fixed_us),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("irq-check: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res = Result<(), Box<dyn std::error::Error>>;

/// CPU time this process used so far, in clock ticks (utime + stime, proc(5)).
fn cpu_ticks() -> Result<u64, Box<dyn std::error::Error>> {
    stat_ticks("/proc/self/stat")
}

/// utime + stime from a proc(5) stat file (a process's or a thread's).
fn stat_ticks(path: &str) -> Result<u64, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string(path)?;
    // The command name (field 2) may hold spaces: count fields after its ')'.
    let rest = stat.rsplit_once(')').ok_or("malformed /proc/self/stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let utime: u64 = f.get(11).ok_or("no utime")?.parse()?;
    let stime: u64 = f.get(12).ok_or("no stime")?.parse()?;
    Ok(utime + stime)
}

fn clock_ticks_per_sec() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// What the sender thread is asked to do.
enum Send {
    /// Send the frame with this sequence number after this pause.
    One(u64, Duration),
    Stop,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The receiving port (interrupts on, its first RX queue taken) and the sending port.
fn open_pair(
    sender: &str,
    receiver: &str,
) -> Result<(Port, Port, tenge::RxQueueHandle), Box<dyn std::error::Error>> {
    let mut rx_port = Port::open(
        receiver,
        &PortConfig {
            interrupts: true,
            ..PortConfig::default()
        },
    )?;
    let tx_port = Port::open(sender, &PortConfig::default())?;
    let rx = rx_port.take_queues().remove(0).rx;
    if !rx.has_interrupt() {
        return Err(format!("{receiver}: no MSI-X vector for RX queue 0").into());
    }
    Ok((rx_port, tx_port, rx))
}

/// One 60-byte frame of `flow` carrying `seq`, in a batch of its own, ready to send.
fn one_frame(tx_port: &mut Port, flow: &Flow, seq: u64) -> Result<PacketBatch, String> {
    let mut b = tx_port.alloc_tx().ok_or("sender pool empty")?;
    if !b.copy_from(&frame::build(flow, 60, seq)) {
        return Err("frame does not fit a buffer".into());
    }
    let mut batch = PacketBatch::new(1);
    let _ = batch.push(b);
    Ok(batch)
}

/// Sends [`one_frame`]'s batch (one doorbell).
fn send_one(tx_port: &mut Port, mut batch: PacketBatch, seq: u64) -> Result<(), String> {
    if tx_port.tx_burst(&mut batch) != 1 {
        return Err(format!("frame {seq} not taken by the TX ring"));
    }
    Ok(())
}

fn wake(sender: &str, receiver: &str, idle_secs: u64, cycles: u64, max_idle_cpu: f64) -> Res {
    let (mut rx_port, tx_port, mut rx) = open_pair(sender, receiver)?;
    println!(
        "irq-check: receiver {} ({}), sender {} ({})",
        receiver,
        rx_port.driver_name(),
        sender,
        tx_port.driver_name()
    );
    let flow = Flow::default();
    // The sender: one frame per request, its send time (ns since `base`) published.
    let base = Instant::now();
    let sent_at = Arc::new(AtomicU64::new(0));
    // Sequence number + 1 of the last frame the sender handed over.
    let sent_seq = Arc::new(AtomicU64::new(0));
    let sent_seq2 = sent_seq.clone();
    let (ask, asked) = mpsc::channel::<Send>();
    let sent_at2 = sent_at.clone();
    let mut tx_port = tx_port;
    let sender_thread = std::thread::spawn(move || -> Result<u64, String> {
        let mut sent = 0u64;
        for msg in asked {
            let (seq, pause) = match msg {
                Send::One(seq, pause) => (seq, pause),
                Send::Stop => break,
            };
            std::thread::sleep(pause);
            let batch = one_frame(&mut tx_port, &flow, seq)?;
            let t = base.elapsed().as_nanos() as u64;
            send_one(&mut tx_port, batch, seq)?;
            sent_at2.store(t, Ordering::Release);
            sent_seq2.store(seq.wrapping_add(1), Ordering::Release);
            sent += 1;
        }
        tx_port.tx_drain(Duration::from_secs(2));
        Ok(sent)
    });
    let mut out = PacketBatch::new(32);
    let mut problems = Vec::new();

    if idle_secs > 0 {
        rx.set_idle_polls(64);
        let t0 = Instant::now();
        let c0 = cpu_ticks()?;
        let mut stray = 0usize;
        while t0.elapsed() < Duration::from_secs(idle_secs) {
            stray += rx.rx_burst_wait(&mut out, Duration::from_millis(500));
            rx.free_batch(&mut out);
        }
        let ticks = cpu_ticks()? - c0;
        let secs = t0.elapsed().as_secs_f64();
        let pct = ticks as f64 * 100.0 / (clock_ticks_per_sec() as f64 * secs);
        let s = rx.irq_stats();
        println!(
            "irq-check: idle secs={secs:.2} cpu_ticks={ticks} idle_cpu_pct={pct:.2} sleeps={} timeouts={} wakeups={} stray={stray}",
            s.arms, s.timeouts, s.wakeups
        );
        if pct > max_idle_cpu {
            problems.push(format!(
                "idle receiver used {pct:.2}% of a CPU (limit {max_idle_cpu}%)"
            ));
        }
        // A frame sent once the receiver sleeps: it must wake for it, well before the
        // timeout.
        let before = rx.irq_stats();
        ask.send(Send::One(u64::MAX, Duration::from_millis(300)))?;
        let t = Instant::now();
        let mut got = 0;
        while got == 0 && t.elapsed() < Duration::from_secs(10) {
            got = rx.rx_burst_wait(&mut out, Duration::from_secs(5));
        }
        let after = rx.irq_stats();
        let seq = out.iter().next().and_then(|p| frame::seq_of(p.data()));
        rx.free_batch(&mut out);
        let woke = after.wakeups - before.wakeups;
        println!(
            "irq-check: idle_wake got={got} seq_ok={} woke_by_irq={woke} timeouts={} after_ms={}",
            seq == Some(u64::MAX),
            after.timeouts - before.timeouts,
            t.elapsed().as_millis()
        );
        if got != 1 || seq != Some(u64::MAX) || woke == 0 {
            problems.push("the sleeping receiver did not wake for the frame".into());
        }
    }

    // Send-one, sleep, wake. A wake-up that finds nothing sleeps again (as
    // rx_burst_wait's caller would): QEMU 10's e1000e sends a second interrupt when its
    // EITR throttling timer expires (e1000e_intrmgr_on_msix_throttling_timer notifies
    // without looking at ICR or IMS), which can come after the next arming, before the
    // frame is even sent. So lateness counts the wake-ups after the sender had handed the
    // frame over (QEMU delivers it into the receiver's ring within that TDT write) that
    // found nothing: one is "one wake-up late", allowed; more is a failure.
    //
    // A wake-up can also come before the frame was sent at all: a frame that lands between
    // an arming and the sleep is taken without sleeping (`prepare_sleep`), but its
    // interrupt can reach the eventfd only after the next cycle's arming drained it (seen
    // 6 times in 10,000 igb cycles under TCG). That wake-up finds nothing and disarms; if
    // the frame lands before the next arming, it raises no interrupt (the queue is
    // masked then) and the poll right after that arming takes it. Such frames are
    // `caught`: the kernel counts no interrupt for them.
    let (mut lost, mut late, mut early, mut timeouts, mut wrong) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut second_wake, mut empty_wakes, mut caught) = (0u64, 0u64, 0u64);
    let mut lat = Vec::with_capacity(cycles as usize);
    for i in 0..cycles {
        // The pause varies (0-300 us), so the frame lands at different points of the
        // receiver's way into its sleep.
        let pause = Duration::from_micros((i * 37) % 300);
        let mut asked = false;
        let mut got = 0;
        let mut wakes = 0;
        let mut late_wakes = 0;
        while got == 0 && wakes < 10 {
            rx.arm_interrupt();
            got = rx.rx_burst(&mut out);
            if got > 0 {
                rx.disarm_interrupt();
                if !asked {
                    early += got as u64;
                    rx.free_batch(&mut out);
                    got = 0;
                    continue;
                }
                // Asked for and found by the first poll after an arming: it came after a
                // wake-up that found nothing (see `caught` above).
                caught += 1;
                break;
            }
            if !asked {
                ask.send(Send::One(i, pause))?;
                asked = true;
            }
            let fired = rx.wait_interrupt(Duration::from_secs(2));
            let woke_ns = base.elapsed().as_nanos() as u64;
            let was_sent = sent_seq.load(Ordering::Acquire) == i + 1;
            rx.disarm_interrupt();
            if !fired {
                timeouts += 1;
            }
            wakes += 1;
            got = rx.rx_burst(&mut out);
            if got == 0 {
                empty_wakes += 1;
                if was_sent {
                    late_wakes += 1;
                }
            } else if fired {
                lat.push(woke_ns.saturating_sub(sent_at.load(Ordering::Acquire)));
            }
        }
        match (got, late_wakes) {
            (0, _) => lost += 1,
            (_, 0) => {}
            (_, 1) => second_wake += 1,
            _ => late += 1,
        }
        for p in out.iter() {
            if frame::seq_of(p.data()) != Some(i) {
                wrong += 1;
            }
        }
        rx.free_batch(&mut out);
    }
    let _ = ask.send(Send::Stop);
    let sent = sender_thread.join().map_err(|_| "sender panicked")??;
    lat.sort_unstable();
    let s = rx.irq_stats();
    rx.publish();
    let hw = rx_port.stats().hw;
    println!(
        "irq-check: cycles={cycles} sent={sent} lost={lost} late={late} one_late={second_wake} empty_wakes={empty_wakes} caught={caught} early={early} wrong={wrong} timeouts={timeouts} interrupts={} wake_median_us={} wake_p99_us={} hw_gprc={}",
        s.interrupts,
        percentile(&lat, 0.5) / 1000,
        percentile(&lat, 0.99) / 1000,
        hw.gprc
    );
    // The guest kernel's own count of the receiver's MSI-X interrupts, while the vectors
    // are still set up (VFIO frees them when the device is closed).
    println!("--- interrupts ---");
    for l in std::fs::read_to_string("/proc/interrupts")?.lines() {
        if l.contains("vfio-msix") && l.contains(receiver) {
            println!("{l}");
        }
    }
    println!("--- interrupts ---");
    if lost + late + early + wrong + timeouts > 0 {
        problems.push(format!(
            "lost={lost} late={late} early={early} wrong={wrong} timeouts={timeouts}"
        ));
    }
    if problems.is_empty() {
        println!("irq-check: wake ok");
        Ok(())
    } else {
        Err(problems.join("; ").into())
    }
}

/// Sequence numbers from here on are junk to `filtered_wake`'s receiver.
const JUNK_SEQ: u64 = 1 << 40;

fn filtered_wake(sender: &str, receiver: &str, rounds: u64, junk: u64) -> Res {
    use tenge::port::IngressVerdict;
    let (rx_port, mut tx_port, mut rx) = open_pair(sender, receiver)?;
    println!(
        "irq-check: filtered-wake receiver {receiver} ({}), sender {sender} ({})",
        rx_port.driver_name(),
        tx_port.driver_name()
    );
    rx.set_ingress_filter(Some(Box::new(|p: &tenge::PacketBuf| {
        match frame::seq_of(p.data()) {
            Some(s) if s >= JUNK_SEQ => IngressVerdict::Drop,
            _ => IngressVerdict::Pass,
        }
    })));
    let flow = Flow::default();
    let mut send = |seq: u64| {
        let batch = one_frame(&mut tx_port, &flow, seq)?;
        send_one(&mut tx_port, batch, seq)
    };
    let mut out = PacketBatch::new(32);
    let (mut stale, mut timeouts, mut lost, mut wrong) = (0u64, 0u64, 0u64, 0u64);
    let mut max_wait = Duration::ZERO;
    for r in 0..rounds {
        for k in 0..junk {
            send(JUNK_SEQ + r * junk + k)?;
        }
        // QEMU delivers into the receiver's ring within the sender's doorbell write; the
        // pause is margin.
        std::thread::sleep(Duration::from_millis(20));
        rx.arm_interrupt();
        let dropped = rx.ingress_stats().dropped;
        if rx.rx_burst(&mut out) > 0 {
            return Err(format!("round {r}: the filter passed a junk frame").into());
        }
        // The poll after the arming took junk: the arming's index is behind.
        stale += u64::from(rx.ingress_stats().dropped > dropped);
        // The frame to wake for, sent from another thread once the receiver sleeps.
        let t = Instant::now();
        let got = std::thread::scope(|sc| -> Result<usize, String> {
            let h = sc.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                send(r)
            });
            let mut got = 0;
            for _ in 0..3 {
                if !rx.wait_interrupt(Duration::from_secs(2)) {
                    timeouts += 1;
                }
                rx.disarm_interrupt();
                got = rx.rx_burst(&mut out);
                if got > 0 {
                    break;
                }
                rx.arm_interrupt();
            }
            h.join().map_err(|_| "sender panicked".to_string())??;
            Ok(got)
        })?;
        max_wait = max_wait.max(t.elapsed());
        if got == 0 {
            lost += 1;
        }
        wrong += out
            .iter()
            .filter(|p| frame::seq_of(p.data()) != Some(r))
            .count() as u64;
        rx.free_batch(&mut out);
    }
    let s = rx.irq_stats();
    println!(
        "irq-check: filtered-wake rounds={rounds} junk_dropped={} stale_armings={stale} rearms={} timeouts={timeouts} lost={lost} wrong={wrong} interrupts={} max_wait_ms={}",
        rx.ingress_stats().dropped,
        s.rearms,
        s.interrupts,
        max_wait.as_millis()
    );
    if timeouts + lost + wrong > 0 {
        return Err(format!("timeouts={timeouts} lost={lost} wrong={wrong}").into());
    }
    println!("irq-check: filtered-wake ok");
    Ok(())
}

fn link_watch(pci: &str, secs: u64, interrupts: bool) -> Res {
    let mut port = Port::open(
        pci,
        &PortConfig {
            interrupts,
            ..PortConfig::default()
        },
    )?;
    println!(
        "irq-check: link-watch {pci} ({}) link {} interrupts={}",
        port.driver_name(),
        port.link(),
        port.link_interrupts()
    );
    let start = Instant::now();
    let mut out = PacketBatch::new(32);
    let (mut rx_up, mut rx_down, mut changes) = (0u64, 0u64, 0u64);
    let mut up = port.link().up;
    while start.elapsed() < Duration::from_secs(secs) {
        let n = port.rx_burst_wait(&mut out, Duration::from_millis(20)) as u64;
        if up {
            rx_up += n;
        } else {
            rx_down += n;
        }
        port.free_batch(&mut out);
        if port.removal_requested() {
            println!(
                "irq-check: device removed at {:.3}s: stopping",
                start.elapsed().as_secs_f64()
            );
            break;
        }
        if let Some(e) = port.poll_link() {
            changes += 1;
            up = e.status.up;
            println!(
                "irq-check: link {} at {:.3}s (change {})",
                e.status,
                start.elapsed().as_secs_f64(),
                e.changes
            );
        }
    }
    let s = port.stats();
    println!(
        "irq-check: link-watch done changes={changes} rx_up={rx_up} rx_down={rx_down} rx_total={} sleeps={} wakeups={} hw_gprc={}",
        s.rx.packets, s.irq[0].arms, s.irq[0].wakeups, s.hw.gprc
    );
    Ok(())
}

/// Interrupts the kernel counted on `pci`'s MSI-X vector `vector` (all CPUs).
fn kernel_interrupts(pci: &str, vector: u32) -> u64 {
    let name = format!("vfio-msix[{vector}]({pci})");
    std::fs::read_to_string("/proc/interrupts")
        .unwrap_or_default()
        .lines()
        .find(|l| l.contains(&name))
        .map_or(0, |l| {
            l.split_whitespace()
                .skip(1)
                .map_while(|w| w.parse::<u64>().ok())
                .sum()
        })
}

fn flood(
    sender: &str,
    receiver: &str,
    quiet_secs: u64,
    flood_secs: u64,
    rate: u64,
    fixed_us: Option<u32>,
) -> Res {
    let mut rx_port = Port::open(
        receiver,
        &PortConfig {
            interrupts: true,
            // 100 ms of the flood: a receiver descheduled by a loaded host catches up
            // instead of the device dropping.
            rx_ring: 2048,
            mempool_buffers: 4096,
            ..PortConfig::default()
        },
    )?;
    let mut tx_port = Port::open(sender, &PortConfig::default())?;
    let mut rx = rx_port.take_queues().remove(0).rx;
    if !rx.has_interrupt() {
        return Err(format!("{receiver}: no MSI-X vector for RX queue 0").into());
    }
    rx.set_idle_polls(1);
    match fixed_us {
        Some(us) => {
            rx.set_moderation(tenge::Moderation {
                usecs: us,
                frames: 1,
            });
        }
        None => {
            if !rx.set_adaptive(true) {
                return Err(format!("{receiver}: no adaptive moderation on this device").into());
            }
        }
    }
    let vector = if rx_port.driver_name() == "virtio-net" {
        1
    } else {
        0
    };
    let mode = match fixed_us {
        Some(us) => format!("fixed{us}"),
        None => "adaptive".to_string(),
    };
    let flow = Flow::default();
    let start = Instant::now();
    let quiet = Duration::from_secs(quiet_secs);
    let flood_for = Duration::from_secs(flood_secs);
    let sender_thread = std::thread::spawn(move || -> Result<u64, String> {
        std::thread::sleep(quiet);
        let t0 = Instant::now();
        let mut sent = 0u64;
        let mut batch = PacketBatch::new(32);
        while t0.elapsed() < flood_for {
            let allowed = (t0.elapsed().as_secs_f64() * rate as f64) as u64 + 1;
            while sent + (batch.len() as u64) < allowed && batch.room() > 0 {
                let Some(mut b) = tx_port.alloc_tx() else {
                    break;
                };
                if !b.copy_from(&frame::build(&flow, 60, sent + batch.len() as u64)) {
                    return Err("frame does not fit".into());
                }
                let _ = batch.push(b);
            }
            if batch.is_empty() {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            sent += tx_port.tx_burst(&mut batch) as u64;
        }
        tx_port.free_batch(&mut batch);
        tx_port.tx_drain(Duration::from_secs(2));
        Ok(sent)
    });
    let total = quiet * 2 + flood_for;
    let mut out = PacketBatch::new(64);
    let (mut received, mut next_seq, mut out_of_order) = (0u64, 0u64, 0u64);
    let mut last_print = start;
    let (mut last_frames, mut last_irqs) = (0u64, kernel_interrupts(receiver, vector));
    while start.elapsed() < total {
        rx.rx_burst_wait(&mut out, Duration::from_millis(50));
        for p in out.iter() {
            match frame::seq_of(p.data()) {
                Some(s) if s == next_seq => next_seq += 1,
                Some(s) => {
                    out_of_order += 1;
                    next_seq = s + 1;
                }
                None => {}
            }
            received += 1;
        }
        rx.free_batch(&mut out);
        if last_print.elapsed() >= Duration::from_millis(250) {
            let irqs = kernel_interrupts(receiver, vector);
            let t = start.elapsed().as_secs_f64();
            let phase = if start.elapsed() < quiet {
                "before"
            } else if start.elapsed() < quiet + flood_for {
                "flood"
            } else {
                "after"
            };
            let s = rx.irq_stats();
            println!(
                "irq-check: flood-sample mode={mode} t={t:.2} phase={phase} frames={} kernel_irqs={} interval_us={} moderation_frames={} epochs={} ups={} downs={} timeouts={} no_buf={}",
                received - last_frames,
                irqs - last_irqs,
                rx.moderation().usecs,
                rx.moderation().frames,
                s.epochs,
                s.moderation_ups,
                s.moderation_downs,
                s.timeouts,
                rx.stats().no_buf
            );
            last_print = Instant::now();
            last_frames = received;
            last_irqs = irqs;
        }
    }
    let sent = sender_thread.join().map_err(|_| "sender panicked")??;
    // Whatever is still in the ring.
    for _ in 0..10 {
        received += rx.rx_burst(&mut out) as u64;
        rx.free_batch(&mut out);
    }
    let s = rx.irq_stats();
    let hw = {
        rx.publish();
        rx_port.stats().hw
    };
    println!(
        "irq-check: flood done mode={mode} sent={sent} received={received} out_of_order={out_of_order} interval_us={} moderation_frames={} epochs={} ups={} downs={} wakeups={} timeouts={} empty_wakeups={} interrupts={} hw_gprc={}",
        rx.moderation().usecs,
        rx.moderation().frames,
        s.epochs,
        s.moderation_ups,
        s.moderation_downs,
        s.wakeups,
        s.timeouts,
        s.empty_wakeups,
        s.interrupts,
        hw.gprc
    );
    if received < hw.gprc {
        return Err(format!("the device took {}, tenge received {received}", hw.gprc).into());
    }
    Ok(())
}

/// Where the bench frames carry their send time (ns since the run's start), after the
/// sequence number.
const STAMP_OFFSET: usize = frame::SEQ_OFFSET + 8;

fn bench(sender: &str, receiver: &str, mode: &str, secs: f64, rate: u64, fixed_us: u32) -> Res {
    let interrupts = mode != "busy";
    let mut rx_port = Port::open(
        receiver,
        &PortConfig {
            interrupts,
            rx_ring: 1024,
            mempool_buffers: 4096,
            ..PortConfig::default()
        },
    )?;
    let mut tx_port = Port::open(sender, &PortConfig::default())?;
    let mut rx = rx_port.take_queues().remove(0).rx;
    match mode {
        "busy" => {}
        "fixed" => {
            rx.set_moderation(tenge::Moderation {
                usecs: fixed_us,
                frames: 1,
            });
        }
        "adaptive" => {
            rx.set_adaptive(true);
        }
        other => return Err(format!("--mode {other}: busy, fixed or adaptive").into()),
    }
    if interrupts && !rx.has_interrupt() {
        return Err(format!("{receiver}: no MSI-X vector").into());
    }
    let vector = u32::from(rx_port.driver_name() == "virtio-net");
    let flow = Flow::default();
    let base = Instant::now();
    let run_for = Duration::from_secs_f64(secs);
    let sender_thread = std::thread::spawn(move || -> Result<u64, String> {
        let mut sent = 0u64;
        let mut batch = PacketBatch::new(32);
        let t0 = Instant::now();
        while t0.elapsed() < run_for {
            let allowed = if rate == 0 {
                u64::MAX
            } else {
                (t0.elapsed().as_secs_f64() * rate as f64) as u64 + 1
            };
            while sent + (batch.len() as u64) < allowed && batch.room() > 0 {
                let Some(mut b) = tx_port.alloc_tx() else {
                    break;
                };
                let mut f = frame::build(&flow, 64, sent + batch.len() as u64);
                let now = base.elapsed().as_nanos() as u64;
                f[STAMP_OFFSET..STAMP_OFFSET + 8].copy_from_slice(&now.to_be_bytes());
                if !b.copy_from(&f) {
                    return Err("frame does not fit".into());
                }
                let _ = batch.push(b);
            }
            if batch.is_empty() {
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
            sent += tx_port.tx_burst(&mut batch) as u64;
        }
        tx_port.free_batch(&mut batch);
        tx_port.tx_drain(Duration::from_secs(2));
        Ok(sent)
    });
    let mut out = PacketBatch::new(32);
    let mut lat = Vec::with_capacity(1 << 16);
    let mut frames = 0u64;
    let irq0 = kernel_interrupts(receiver, vector);
    let cpu0 = stat_ticks("/proc/thread-self/stat")?;
    let t0 = Instant::now();
    let mut k = 0u64;
    while t0.elapsed() < run_for {
        let n = if interrupts {
            rx.rx_burst_wait(&mut out, Duration::from_millis(100))
        } else {
            rx.rx_burst(&mut out)
        };
        if n > 0 {
            let now = base.elapsed().as_nanos() as u64;
            for p in out.iter() {
                // Every frame at low rates, one in 16 in a flood (the vector stays small).
                k += 1;
                if rate != 0 || k.is_multiple_of(16) {
                    if let Some(b) = p.data().get(STAMP_OFFSET..STAMP_OFFSET + 8) {
                        let sent = u64::from_be_bytes(b.try_into().unwrap_or_default());
                        lat.push(now.saturating_sub(sent));
                    }
                }
            }
            frames += n as u64;
            rx.free_batch(&mut out);
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = stat_ticks("/proc/thread-self/stat")? - cpu0;
    let irqs = kernel_interrupts(receiver, vector) - irq0;
    let sent = sender_thread.join().map_err(|_| "sender panicked")??;
    lat.sort_unstable();
    let s = rx.irq_stats();
    println!(
        "irq-check: bench mode={mode} rate={rate} secs={elapsed:.2} sent={sent} frames={frames} mpps={:.4} cpu_pct={:.1} lat_median_us={} lat_p99_us={} irqs_per_s={:.0} interval_us={} sleeps={}",
        frames as f64 / elapsed / 1e6,
        cpu as f64 * 100.0 / (clock_ticks_per_sec() as f64 * elapsed),
        percentile(&lat, 0.5) / 1000,
        percentile(&lat, 0.99) / 1000,
        irqs as f64 / elapsed,
        rx.moderation().usecs,
        s.arms
    );
    Ok(())
}
