//! A device writing arbitrary used descriptors into tenge's packed virtqueues (virtio 1.2
//! §2.8.6): ids never made available or beyond the ring, any length, any AVAIL/USED bits
//! (right or wrong for the lap), any descriptor position, duplicates, the device's position
//! jumping ahead, any event suppression state, mixed with a well-behaved device and the
//! driver polling, sending and giving buffers back. See fuzz/src/lib.rs for what is checked.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use tenge::virtio::packed::{PackedRing, PackedRx, PackedTx};
use tenge::virtio::{TxSettings, HDR_LEN, RX_QUEUE, TX_QUEUE};
use tenge_descriptors::virtio::{VIRTQ_DESC_F_AVAIL, VIRTQ_DESC_F_USED, VIRTQ_DESC_F_WRITE};
use tenge_fuzz::{
    bells, device_write_hdr, region, Driver, DriverOp, Hdr, Setup, MAX_OPS, TX_RING_OFFSET,
};

#[derive(Arbitrary, Debug)]
enum Op {
    /// The device writes any id, length and flags into any descriptor.
    Write {
        tx: bool,
        pos: u32,
        id: u16,
        len: u32,
        flags: u16,
    },
    /// The device writes a used descriptor (right wrap bits) with any id and length at its
    /// position and moves on.
    Used {
        tx: bool,
        id: u16,
        len: u32,
    },
    /// The device's position jumps ahead by `1 + n % 64` descriptors.
    Skip {
        tx: bool,
        n: u8,
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
    /// The device writes its event suppression structure.
    Event {
        tx: bool,
        off_wrap: u16,
        flags: u16,
    },
    Driver(DriverOp),
}

#[derive(Arbitrary, Debug)]
struct Input {
    setup: Setup,
    ops: Vec<Op>,
}

/// The device's position (free-running) in one packed ring.
#[derive(Default)]
struct Dev {
    next: u32,
}

impl Dev {
    /// Writes a used descriptor at the device's position, with the wrap bits of its lap.
    fn push(&mut self, ring: &PackedRing, id: u16, len: u32, write: bool) {
        let mut flags = if write { VIRTQ_DESC_F_WRITE } else { 0 };
        if ring.wrap(self.next) {
            flags |= VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED;
        }
        ring.device_write(self.next, id, len, flags);
        self.next = self.next.wrapping_add(1);
    }

    /// The buffer id and address of the descriptor at the device's position, if it is
    /// available for its lap.
    fn available(&self, ring: &PackedRing) -> Option<(u16, u64)> {
        let d = ring.descs().read(self.next);
        let f = d.flags.get();
        let wrap = ring.wrap(self.next);
        ((f & VIRTQ_DESC_F_AVAIL != 0) == wrap && (f & VIRTQ_DESC_F_USED != 0) != wrap)
            .then_some((d.id.get(), d.addr.get()))
    }
}

fuzz_target!(|input: Input| {
    let Input { setup, ops } = input;
    let size = setup.size();
    let mem = region();
    let mut d = Driver::new(
        &setup,
        PackedRx::new(
            PackedRing::new(mem.clone(), 0, size),
            bells(RX_QUEUE, setup.event_idx),
            setup.hdr_mode(),
        ),
        PackedTx::new(
            PackedRing::new(mem.clone(), TX_RING_OFFSET, size),
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
            Op::Write {
                tx,
                pos,
                id,
                len,
                flags,
            } => ring(tx).device_write(pos, id, len, flags),
            Op::Used { tx, id, len } => devs[tx as usize].push(ring(tx), id, len, !tx),
            Op::Skip { tx, n } => {
                let dev = &mut devs[tx as usize];
                dev.next = dev.next.wrapping_add(1 + u32::from(n) % 64);
            }
            Op::Good { tx, len, hdr } => {
                let (r, dev) = (ring(tx), &mut devs[tx as usize]);
                if let Some((id, addr)) = dev.available(r) {
                    let len = if tx {
                        0
                    } else {
                        device_write_hdr(addr, hdr.bytes(1));
                        (HDR_LEN + 60 + usize::from(len) % 1455) as u32
                    };
                    dev.push(r, id, len, !tx);
                }
            }
            Op::Chain { n, len } => {
                let (r, dev) = (ring(false), &mut devs[0]);
                let bufs = 1 + u16::from(n) % 4;
                for i in 0..bufs {
                    let Some((id, addr)) = dev.available(r) else {
                        break;
                    };
                    let len = if i == 0 {
                        device_write_hdr(addr, Hdr::Plain.bytes(bufs));
                        HDR_LEN as u32 + 2048
                    } else {
                        u32::from(len) % 2049
                    };
                    dev.push(r, id, len, true);
                }
            }
            Op::Event {
                tx,
                off_wrap,
                flags,
            } => ring(tx).device_set_event(off_wrap, flags),
            Op::Driver(op) => d.step(op),
        }
    }
    d.finish();
});
