//! Interrupts of a port: each RX queue's vector and how to arm it on its device, the
//! hybrid poll/sleep that uses them, and link events on the device's other (virtio:
//! configuration) vector.
//!
//! A queue polls while frames come. After [`RxQueueHandle::set_idle_polls`] empty polls in
//! a row, [`RxQueueHandle::rx_burst_wait`] arms the queue's interrupt, polls once more (a
//! frame that arrived between the last poll and the arming is taken now, not slept on),
//! and only then sleeps on the vector's eventfd until the interrupt or the timeout. The
//! interrupt is one-shot: e1000e masks the cause itself when its vector fires (EIAC), and
//! virtio's is suppressed again on wake-up, so a queue that polls is never interrupted.
//!
//! The eventfds are plain file descriptors ([`std::os::fd::AsFd`] on the handles and
//! [`crate::Port::link_event_fd`]): an application can wait on several queues and its own
//! descriptors in one `epoll`, calling [`RxQueueHandle::arm_interrupt`] and polling once
//! more before it sleeps.
//!
//! [`RxQueueHandle::set_idle_polls`]: crate::RxQueueHandle::set_idle_polls
//! [`RxQueueHandle::rx_burst_wait`]: crate::RxQueueHandle::rx_burst_wait
//! [`RxQueueHandle::arm_interrupt`]: crate::RxQueueHandle::arm_interrupt

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};

use crate::error::{Error, VfioError};
use crate::platform::mmio::Bar;
use crate::platform::pci::PciAddress;
use crate::platform::vfio::IrqFd;

/// Empty polls before a queue in hybrid mode arms its interrupt and sleeps, by default.
pub const DEFAULT_IDLE_POLLS: u32 = 64;

/// What arming a queue's interrupt writes, besides the ring itself (virtio's is in the
/// ring's driver area, which the ring ops write).
#[derive(Clone)]
pub(crate) enum IrqDevice {
    /// No vector: waits end by timeout.
    Polled,
    /// The 82574: ICR/IMS/IMC bits of RX queue `queue`.
    E1000e { regs: Arc<Bar>, queue: u32 },
    /// The 82576: EICR/EIMS/EIMC bits of RX queue `queue`'s vector.
    Igb { regs: Arc<Bar>, queue: u32 },
    /// virtio-net: the ring's interrupt suppression.
    Virtio,
}

/// One RX queue's interrupt: the eventfd its vector signals (or one nothing signals, for a
/// queue without a vector) and what arms it.
pub(crate) struct QueueIrq {
    pub(crate) fd: Arc<IrqFd>,
    pub(crate) device: IrqDevice,
}

impl IrqDevice {
    /// Programs the moderation interval of the queue's vector, if the device has one.
    pub(crate) fn set_interval(&self, usecs: u32) -> bool {
        match self {
            IrqDevice::E1000e { regs, queue } => {
                tenge_firmware_iface::e1000e::irq::set_eitr(&**regs, *queue, usecs);
                true
            }
            IrqDevice::Igb { regs, queue } => {
                tenge_firmware_iface::igb::irq::set_eitr(&**regs, *queue, usecs);
                true
            }
            IrqDevice::Virtio | IrqDevice::Polled => false,
        }
    }
}

impl QueueIrq {
    /// A queue without a vector: its eventfd never fires.
    pub(crate) fn polled(addr: PciAddress) -> Result<Self, Error> {
        Ok(QueueIrq {
            fd: Arc::new(new_eventfd(addr)?),
            device: IrqDevice::Polled,
        })
    }

    /// Whether the device signals this queue's eventfd.
    pub(crate) fn live(&self) -> bool {
        !matches!(self.device, IrqDevice::Polled)
    }
}

pub(crate) fn new_eventfd(addr: PciAddress) -> Result<IrqFd, Error> {
    IrqFd::new().map_err(|source| {
        Error::Vfio(VfioError::Irq {
            addr,
            what: "eventfd",
            source,
        })
    })
}

/// Interrupt moderation of a queue: how long, or for how many frames, the device holds
/// back its interrupt once armed. Each device honours the unit it has: e1000e and igb the
/// interval (EITR: 82574 §10.2.4, 256 ns units, QEMU clamps it to at least 128 us in
/// MSI-X mode; 82576 §8.8, 1 us units); virtio-net (split rings with EVENT_IDX) the frame
/// count, through where the driver puts `used_event` (virtio 1.2 §2.7.10: the device
/// interrupts once its used index passes it; QEMU has no VIRTIO_NET_F_NOTF_COAL). A frame
/// count above 1 makes a lone frame wait for the sleep's timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moderation {
    /// Interval in microseconds (0: none).
    pub usecs: u32,
    /// Frames before the interrupt (1: the first).
    pub frames: u16,
}

impl Default for Moderation {
    fn default() -> Self {
        Moderation {
            usecs: 0,
            frames: 1,
        }
    }
}

/// Counters of a queue's sleeps, in its statistics ([`crate::PortStats::irq`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqStats {
    /// Times the queue armed its interrupt to sleep.
    pub arms: u64,
    /// Frames found by the poll right after arming (they raced the arming; no sleep).
    pub caught_on_arm: u64,
    /// Sleeps that ended by the interrupt.
    pub wakeups: u64,
    /// Sleeps that ended by the timeout.
    pub timeouts: u64,
    /// Interrupts the eventfd counted (a wake-up may have seen several).
    pub interrupts: u64,
    /// Wake-ups by the interrupt after which the first poll found nothing (the frame came
    /// one poll later, or the interrupt was spurious).
    pub empty_wakeups: u64,
    /// The moderation interval in force, microseconds (adaptive or set).
    pub moderation_us: u64,
    /// Adaptive moderation: epochs evaluated.
    pub epochs: u64,
    /// Adaptive moderation: steps up.
    pub moderation_ups: u64,
    /// Adaptive moderation: steps down (and resets to the lowest level).
    pub moderation_downs: u64,
    /// Armings renewed before a sleep because bursts after the arming had taken frames
    /// ([`crate::port::RxQueueHandle::prepare_sleep`]).
    pub rearms: u64,
}

impl IrqStats {
    pub(crate) fn fields(&self) -> [u64; 12] {
        [
            self.arms,
            self.caught_on_arm,
            self.wakeups,
            self.timeouts,
            self.interrupts,
            self.empty_wakeups,
            self.moderation_us,
            self.epochs,
            self.moderation_ups,
            self.moderation_downs,
            self.rearms,
            0,
        ]
    }

    pub(crate) fn from_fields(v: [u64; 12]) -> Self {
        IrqStats {
            arms: v[0],
            caught_on_arm: v[1],
            wakeups: v[2],
            timeouts: v[3],
            interrupts: v[4],
            empty_wakeups: v[5],
            moderation_us: v[6],
            epochs: v[7],
            moderation_ups: v[8],
            moderation_downs: v[9],
            rearms: v[10],
        }
    }
}

impl std::ops::AddAssign for IrqStats {
    fn add_assign(&mut self, o: Self) {
        self.arms += o.arms;
        self.caught_on_arm += o.caught_on_arm;
        self.wakeups += o.wakeups;
        self.timeouts += o.timeouts;
        self.interrupts += o.interrupts;
        self.empty_wakeups += o.empty_wakeups;
        self.moderation_us = self.moderation_us.max(o.moderation_us);
        self.epochs += o.epochs;
        self.moderation_ups += o.moderation_ups;
        self.moderation_downs += o.moderation_downs;
        self.rearms += o.rearms;
    }
}

/// Reads (and so resets) `fd`'s count without blocking: the interrupts since the last
/// read, 0 if none.
pub(crate) fn drain(fd: &IrqFd) -> u64 {
    fd.take()
}

/// Waits until `fd` is readable or `timeout` passes; true if readable. An interrupted
/// wait (EINTR) ends early as a timeout would: the caller polls its ring either way.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> bool {
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let ts = Timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    matches!(rustix::event::poll(&mut fds, Some(&ts)), Ok(n) if n > 0)
}

/// A link change the port saw ([`crate::Port::poll_link`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkEvent {
    /// The link now.
    pub status: tenge_firmware_iface::e1000e::LinkStatus,
    /// Changes seen since the port opened, this one included.
    pub changes: u64,
}

/// The port's link watch: the vector of the device's other causes (virtio: configuration
/// changes), the state last reported, the changes so far.
pub(crate) struct LinkWatch {
    pub(crate) fd: Arc<IrqFd>,
    /// The device signals `fd` on a link change; else the state is read on every poll.
    pub(crate) live: bool,
    pub(crate) last: tenge_firmware_iface::e1000e::LinkStatus,
    pub(crate) changes: u64,
}

impl AsFd for LinkWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Every queue's interrupt and the link watch, as the opener set them up.
pub(crate) struct PortIrqs {
    pub(crate) queues: Vec<QueueIrq>,
    pub(crate) link: LinkWatch,
}

impl PortIrqs {
    /// No vectors: eventfds nothing signals, the link read on every poll.
    pub(crate) fn polled(addr: PciAddress, queues: usize) -> Result<Self, Error> {
        Ok(PortIrqs {
            queues: (0..queues)
                .map(|_| QueueIrq::polled(addr))
                .collect::<Result<_, _>>()?,
            link: LinkWatch {
                fd: Arc::new(new_eventfd(addr)?),
                live: false,
                last: Default::default(),
                changes: 0,
            },
        })
    }
}
