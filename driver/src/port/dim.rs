//! Adaptive interrupt moderation, in the manner of Linux's DIM (lib/dim): per queue, an
//! epoch samples the frames, bytes and wake-ups since the last and moves the
//! moderation interval one step through a table of levels.
//!
//! DIM steers by comparing an epoch's rates with the previous epoch's. tenge keeps that
//! comparison for the throughput only, and asks the load itself about the rest:
//! - the queue went quiet (its sleep timed out): straight to the lowest level, so a lone
//!   frame after a flood is not held back;
//! - throughput fell by more than [`TOLERANCE`] since the last epoch: a step down (the
//!   longer interval did not pay);
//! - each wake-up found [`BUSY_FRAMES`] frames or more (a flood the interrupts chop into
//!   bursts): a step up, parking at the top level as DIM does;
//! - each found fewer than [`LIGHT_FRAMES`] (frames come one by one): a step down.
//!
//! Interrupt counts alone do not steer it: under TCG they swing by more than a tenth
//! from one epoch to the next at any interval, and QEMU's e1000e ignores intervals under
//! 128 us, so DIM's "same throughput, fewer interrupts" test wandered up and down at
//! random there. Only the control path runs this: once an epoch, at a wake-up.

use std::time::{Duration, Instant};

/// The intervals the adaptive moderation moves between, in microseconds (level 0 first).
pub const LEVELS_US: [u32; 6] = [0, 32, 64, 128, 256, 512];
/// The most frames adaptive moderation asks a virtio-net to gather before it interrupts.
pub const MAX_FRAMES: u16 = 64;
/// An epoch ends at a wake-up after at least this many wake-ups and this much time.
pub const EPOCH_WAKEUPS: u64 = 16;
/// See [`EPOCH_WAKEUPS`].
pub const EPOCH_MIN: Duration = Duration::from_millis(100);
/// Throughput within this fraction of the last epoch's counts as the same.
pub const TOLERANCE: f64 = 0.10;
/// Frames per wake-up from which the queue counts as flooded.
pub const BUSY_FRAMES: f64 = 4.0;
/// Frames per wake-up under which the queue counts as lightly loaded.
pub const LIGHT_FRAMES: f64 = 1.5;

/// What an epoch decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DimDecision {
    /// Moved the interval up a level.
    Up,
    /// Moved it down a level.
    Down,
    /// Stayed.
    Stay,
    /// The queue went quiet: back to level 0.
    Reset,
}

/// Counters at an epoch boundary.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sample {
    pub(crate) frames: u64,
    pub(crate) bytes: u64,
    pub(crate) wakeups: u64,
}

/// The adaptive state of one queue.
#[derive(Debug)]
pub(crate) struct Dim {
    level: usize,
    start: Instant,
    at_start: Sample,
    /// The last epoch's throughput (frames/s, bytes/s).
    last: Option<(f64, f64)>,
    pub(crate) ups: u64,
    pub(crate) downs: u64,
    pub(crate) epochs: u64,
}

/// +1, 0 or -1: `new` above, within or below `old` by [`TOLERANCE`].
fn change(new: f64, old: f64) -> i8 {
    if old <= 0.0 {
        return i8::from(new > 0.0);
    }
    let d = (new - old) / old;
    if d > TOLERANCE {
        1
    } else if d < -TOLERANCE {
        -1
    } else {
        0
    }
}

impl Dim {
    pub(crate) fn new(now: Instant, at: Sample) -> Self {
        Dim {
            level: 0,
            start: now,
            at_start: at,
            last: None,
            ups: 0,
            downs: 0,
            epochs: 0,
        }
    }

    /// The interval of the current level.
    pub(crate) fn interval_us(&self) -> u32 {
        LEVELS_US[self.level]
    }

    /// The current level as a frame count, for virtio-net, whose only coalescing is where
    /// the driver puts the used-event index (EVENT_IDX: interrupt at the n-th frame): the
    /// frames the last epoch's rate brings in the level's interval, so a frame waits about
    /// as long as it would behind that interval on e1000e, and a slower stream gets 1.
    pub(crate) fn frames(&self) -> u16 {
        let rate = self.last.map_or(0.0, |(frames_per_s, _)| frames_per_s);
        let n = rate * f64::from(LEVELS_US[self.level]) / 1e6;
        (n as u16).clamp(1, MAX_FRAMES)
    }

    /// Called at a wake-up (or a timeout: `quiet`) with the counters now: ends the epoch if
    /// it is long enough (or the queue went quiet) and returns the decision, if any.
    pub(crate) fn on_wakeup(
        &mut self,
        now: Instant,
        at: Sample,
        quiet: bool,
    ) -> Option<DimDecision> {
        let wakes = at.wakeups - self.at_start.wakeups;
        let dt = now.duration_since(self.start);
        if !quiet && (wakes < EPOCH_WAKEUPS || dt < EPOCH_MIN) {
            return None;
        }
        let secs = dt.as_secs_f64().max(1e-6);
        let frames = at.frames - self.at_start.frames;
        let rates = (
            frames as f64 / secs,
            (at.bytes - self.at_start.bytes) as f64 / secs,
        );
        let per_wake = frames as f64 / wakes.max(1) as f64;
        self.start = now;
        self.at_start = at;
        self.epochs += 1;
        let fell = self.last.is_some_and(|(f, b)| {
            change(rates.0, f) < 0 || (change(rates.0, f) == 0 && change(rates.1, b) < 0)
        });
        self.last = Some(rates);
        Some(if quiet {
            self.last = None;
            if self.level == 0 {
                DimDecision::Stay
            } else {
                self.level = 0;
                self.downs += 1;
                DimDecision::Reset
            }
        } else if fell || per_wake < LIGHT_FRAMES {
            self.down()
        } else if per_wake >= BUSY_FRAMES {
            self.up()
        } else {
            DimDecision::Stay
        })
    }

    fn up(&mut self) -> DimDecision {
        if self.level + 1 < LEVELS_US.len() {
            self.level += 1;
            self.ups += 1;
            DimDecision::Up
        } else {
            DimDecision::Stay
        }
    }

    fn down(&mut self) -> DimDecision {
        if self.level > 0 {
            self.level -= 1;
            self.downs += 1;
            DimDecision::Down
        } else {
            DimDecision::Stay
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds epochs of 100 ms with `frames` and `wakes` each; returns the levels.
    fn run(d: &mut Dim, t: &mut Instant, at: &mut Sample, epochs: &[(u64, u64)]) -> Vec<u32> {
        epochs
            .iter()
            .map(|&(frames, wakes)| {
                *t += Duration::from_millis(100);
                at.frames += frames;
                at.bytes += frames * 64;
                at.wakeups += wakes;
                d.on_wakeup(*t, *at, false);
                d.interval_us()
            })
            .collect()
    }

    #[test]
    fn frames_follow_the_rate_times_the_interval() {
        let (mut t, mut at) = (Instant::now(), Sample::default());
        let mut d = Dim::new(t, at);
        assert_eq!(d.frames(), 1, "no rate yet");
        // 20,000 frames/s: 32 us is 0.64 of a frame (1); 512 us is 10 frames.
        let levels = run(&mut d, &mut t, &mut at, &[(2_000, 200); 8]);
        assert_eq!(levels[0], 32);
        assert_eq!(d.interval_us(), 512);
        assert_eq!(d.frames(), 10);
        // 1,000,000 frames/s at 512 us would be 512: capped.
        run(&mut d, &mut t, &mut at, &[(100_000, 1_000)]);
        assert_eq!(d.frames(), MAX_FRAMES);
        t += Duration::from_millis(100);
        at.wakeups += 1;
        assert_eq!(d.on_wakeup(t, at, true), Some(DimDecision::Reset));
        assert_eq!(d.frames(), 1, "quiet: back to the first frame");
    }

    #[test]
    fn a_flood_climbs_to_the_top_and_quiet_resets() {
        let (mut t, mut at) = (Instant::now(), Sample::default());
        let mut d = Dim::new(t, at);
        // 20,000 frames/s, about 10 a wake-up.
        let levels = run(&mut d, &mut t, &mut at, &[(2_000, 200); 8]);
        assert_eq!(levels, [32, 64, 128, 256, 512, 512, 512, 512]);
        t += Duration::from_millis(100);
        at.wakeups += 1;
        assert_eq!(d.on_wakeup(t, at, true), Some(DimDecision::Reset));
        assert_eq!(d.interval_us(), 0);
        assert_eq!((d.ups, d.downs), (5, 1));
    }

    #[test]
    fn falling_throughput_and_light_load_step_down() {
        let (mut t, mut at) = (Instant::now(), Sample::default());
        let mut d = Dim::new(t, at);
        run(&mut d, &mut t, &mut at, &[(2_000, 200); 3]);
        assert_eq!(d.interval_us(), 128);
        // The throughput halves though each wake-up is still busy: down.
        assert_eq!(run(&mut d, &mut t, &mut at, &[(1_000, 100)]), [64]);
        // Frames one by one: down to 0.
        assert_eq!(run(&mut d, &mut t, &mut at, &[(20, 20); 3]), [32, 0, 0]);
        // In between: stay.
        assert_eq!(run(&mut d, &mut t, &mut at, &[(40, 20); 2]), [0, 0]);
    }

    #[test]
    fn short_epochs_wait() {
        let t0 = Instant::now();
        let mut d = Dim::new(t0, Sample::default());
        let at = Sample {
            frames: 10,
            bytes: 640,
            wakeups: 1,
        };
        assert_eq!(d.on_wakeup(t0 + Duration::from_millis(1), at, false), None);
    }
}
