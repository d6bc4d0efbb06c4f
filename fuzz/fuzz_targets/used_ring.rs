//! A device writing arbitrary used-ring entries into tenge's split virtqueues (virtio 1.2
//! §2.7.8): ids never made available or beyond the ring, lengths short, long or absurd,
//! duplicates, entries written anywhere, `used.idx` jumps, any suppression state, mixed with
//! a well-behaved device and the driver polling, sending and giving buffers back. See
//! fuzz/src/lib.rs for what is checked.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use tenge::virtio::{SplitRing, TxSettings, VirtioRx, VirtioTx, HDR_LEN, RX_QUEUE, TX_QUEUE};
use tenge_fuzz::{
    bells, device_write_hdr, region, Driver, DriverOp, Hdr, Setup, MAX_OPS, TX_RING_OFFSET,
};

#[derive(Arbitrary, Debug)]
enum Op {
    /// The device appends a used element with any id and length (RX or TX ring).
    Used {
        tx: bool,
        id: u32,
        len: u32,
    },
    /// The device writes a used element into any slot, `used.idx` unchanged.
    Scribble {
        tx: bool,
        slot: u16,
        id: u32,
        len: u32,
    },
    /// The device sets `used.idx` to anything.
    UsedIdx {
        tx: bool,
        idx: u16,
    },
    /// The device uses the next available buffer (RX: writes `hdr` into it, a frame of
    /// `60 + len % 1455` bytes; TX: length 0).
    Good {
        tx: bool,
        len: u16,
        hdr: Hdr,
    },
    /// The device receives one frame into the next `1 + n % 4` available RX buffers
    /// (`num_buffers` = that many in a plain header), each after the first filled to
    /// `len % 2049` bytes.
    Chain {
        n: u8,
        len: u16,
    },
    /// The device writes `avail_event` and `used.flags`.
    Event {
        tx: bool,
        avail_event: u16,
        flags: u16,
    },
    Driver(DriverOp),
}

#[derive(Arbitrary, Debug)]
struct Input {
    setup: Setup,
    ops: Vec<Op>,
}

/// The device's own view of one split ring: the next avail entry it takes and the used
/// index it writes.
#[derive(Default)]
struct Dev {
    last_avail: u16,
    used: u16,
}

impl Dev {
    /// The id of the next available descriptor, taken, if there is one.
    fn take(&mut self, ring: &SplitRing) -> Option<u32> {
        if self.last_avail == ring.avail_idx() {
            return None;
        }
        let id = u32::from(ring.avail_entry(self.last_avail));
        self.last_avail = self.last_avail.wrapping_add(1);
        Some(id)
    }

    fn push(&mut self, ring: &SplitRing, id: u32, len: u32) {
        ring.device_push_used(self.used, id, len);
        self.used = self.used.wrapping_add(1);
    }
}

fuzz_target!(|input: Input| {
    let Input { setup, ops } = input;
    let size = setup.size();
    let mem = region();
    let mut d = Driver::new(
        &setup,
        VirtioRx::new(
            SplitRing::new(mem.clone(), 0, size, setup.event_idx),
            bells(RX_QUEUE, setup.event_idx),
            setup.hdr_mode(),
        ),
        VirtioTx::new(
            SplitRing::new(mem.clone(), TX_RING_OFFSET, size, setup.event_idx),
            bells(TX_QUEUE, setup.event_idx),
            TxSettings::default(),
        ),
    );
    let mut devs = [Dev::default(), Dev::default()];
    for op in ops.into_iter().take(MAX_OPS) {
        let ring = |tx: bool| {
            if tx {
                d.txq.ops().ring()
            } else {
                d.rxq.ops().ring()
            }
        };
        match op {
            Op::Used { tx, id, len } => devs[tx as usize].push(ring(tx), id, len),
            Op::Scribble { tx, slot, id, len } => {
                let (r, dev) = (ring(tx), &devs[tx as usize]);
                r.device_push_used(slot, id, len);
                r.device_set_used_idx(dev.used);
            }
            Op::UsedIdx { tx, idx } => {
                devs[tx as usize].used = idx;
                ring(tx).device_set_used_idx(idx);
            }
            Op::Good { tx, len, hdr } => {
                let (r, dev) = (ring(tx), &mut devs[tx as usize]);
                if let Some(id) = dev.take(r) {
                    let len = if tx {
                        0
                    } else {
                        device_write_hdr(r.descs().read(id).addr.get(), hdr.bytes(1));
                        (HDR_LEN + 60 + usize::from(len) % 1455) as u32
                    };
                    dev.push(r, id, len);
                }
            }
            Op::Chain { n, len } => {
                let (r, dev) = (ring(false), &mut devs[0]);
                let bufs = 1 + u16::from(n) % 4;
                for i in 0..bufs {
                    let Some(id) = dev.take(r) else { break };
                    let len = if i == 0 {
                        device_write_hdr(r.descs().read(id).addr.get(), Hdr::Plain.bytes(bufs));
                        HDR_LEN as u32 + 2048
                    } else {
                        u32::from(len) % 2049
                    };
                    dev.push(r, id, len);
                }
            }
            Op::Event {
                tx,
                avail_event,
                flags,
            } => {
                let r = ring(tx);
                r.device_set_avail_event(avail_event);
                r.device_set_used_flags(flags);
            }
            Op::Driver(op) => d.step(op),
        }
    }
    d.finish();
});
