//! A device writing arbitrary advanced write-backs into tenge's igb (82576) RX ring
//! (82576 §7.1.5.2): any status and error bits (DD without EOP, frame errors, checksum
//! and VLAN bits), any length (0, beyond the buffer), any RSS type and packet type, written
//! at the device's position or into any slot, mixed with a well-behaved device (frames in
//! one buffer or over several, tagged or not) and the driver polling, sending and giving
//! buffers back. On TX the device writes DD where RS asks, or any status into any
//! descriptor, and the driver sends packets with any offload request (checksums, TSO, a
//! VLAN tag, any header lengths and MSS) over any bytes. See fuzz/src/lib.rs for what is
//! checked; in addition, no frame is flagged `RX_VLAN_STRIPPED` before the device has
//! written a write-back with VP.

#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use tenge::igb::{IgbRx, IgbTx, MAX_FRAME};
use tenge::packet::mempool::PacketMeta;
use tenge::ring::{PacketBatch, TxQueue};
use tenge::MempoolCache;
use tenge_descriptors::igb::{
    AdvRxDescWb, ADVTXD_DCMD_RS, ADVTXD_STA_DD, RXD_STAT_DD, RXD_STAT_EOP, RXD_STAT_VP,
};
use tenge_firmware_iface::igb::regs;
use tenge_firmware_iface::Mmio;
use tenge_fuzz::{device_write, region, Driver, DriverOp, Setup, MAX_OPS, TX_RING_OFFSET};
use zerocopy::little_endian::{U16, U32};

/// The device's registers: the driver's tail writes, kept (the device reads RDT and TDT).
#[derive(Default)]
struct Regs(Mutex<HashMap<u32, u32>>);

impl Mmio for Regs {
    fn read32(&self, off: u32) -> u32 {
        self.0.lock().unwrap().get(&off).copied().unwrap_or(0)
    }
    fn write32(&self, off: u32, v: u32) {
        self.0.lock().unwrap().insert(off, v);
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// The device writes a write-back with any fields at its position and moves on.
    WriteBack {
        info: u32,
        hash: u32,
        status_error: u32,
        len: u16,
        vlan: u16,
    },
    /// The device writes any 16 bytes into any RX slot, its position unchanged.
    Scribble {
        slot: u8,
        bytes: [u8; 16],
    },
    /// The device's position jumps ahead by `1 + n % 8` descriptors.
    Skip(u8),
    /// The device receives a frame of `60 + len % 1455` bytes into the next posted buffer
    /// (stripped of a tag `vlan` with VP, if `vp`).
    Good {
        len: u16,
        vp: bool,
        vlan: u16,
    },
    /// The device receives one frame over the next `1 + n % 4` posted buffers, all full
    /// (2048 bytes) but the last, which holds `len % 2049`.
    Chain {
        n: u8,
        len: u16,
    },
    /// The device processes the TX ring up to the tail, writing DD where RS is set.
    TxDone,
    /// The device writes any status dword into any TX descriptor.
    TxScribble {
        slot: u8,
        status: u32,
    },
    /// The driver sends a packet of `bytes` with these offload requests and header lengths.
    SendOffload {
        flags: u32,
        l2: u8,
        l3: u8,
        l4: u8,
        mss: u16,
        vlan: u16,
        bytes: Vec<u8>,
    },
    Driver(DriverOp),
}

#[derive(Arbitrary, Debug)]
struct Input {
    setup: Setup,
    rss: bool,
    ops: Vec<Op>,
}

fn send(q: &mut TxQueue<IgbTx<Regs>>, c: &mut MempoolCache, b: &mut PacketBatch) -> usize {
    q.tx_burst(c, b)
}

fuzz_target!(|input: Input| {
    let Input { setup, rss, ops } = input;
    let size = u32::from(setup.size());
    let mem = region();
    let rx_regs = Arc::new(Regs::default());
    let tx_regs = Arc::new(Regs::default());
    let mut d = Driver::with_sender(
        &setup,
        IgbRx::for_queue(
            tenge::platform::dma::DescRing::new(mem.clone(), 0, size),
            rx_regs.clone(),
            0,
            rss,
        ),
        IgbTx::for_queue(
            tenge::platform::dma::DescRing::new(mem.clone(), TX_RING_OFFSET, size),
            tx_regs.clone(),
            0,
        ),
        send,
        MAX_FRAME,
    );
    let mask = size - 1;
    // The device's next RX and TX descriptors (RDH, TDH).
    let (mut rdh, mut tdh) = (0u32, 0u32);
    // Whether the device has written a write-back with VP yet: until it has, no delivered
    // frame may say a tag was stripped.
    let mut vp_written = false;
    for op in ops.into_iter().take(MAX_OPS) {
        let rx = d.rxq.ops().ring();
        let wb = |status_error: u32, len: u16, vlan: u16, info: u32, hash: u32| AdvRxDescWb {
            pkt_info: U32::new(info),
            rss_or_csum: U32::new(hash),
            status_error: U32::new(status_error),
            length: U16::new(len),
            vlan: U16::new(vlan),
        };
        // The buffer posted at the device's position, if there is one: below the tail and
        // in the read format (the device may have written over it).
        let posted = |rdh: u32| {
            let read = rx.read(rdh);
            (rdh != rx_regs.read32(regs::RDT0) & mask
                && read.hdr_addr.get() == 0
                && d.is_rx_buffer(read.pkt_addr.get()))
            .then(|| read.pkt_addr.get())
        };
        match op {
            Op::WriteBack {
                info,
                hash,
                status_error,
                len,
                vlan,
            } => {
                vp_written |= status_error & RXD_STAT_VP != 0;
                rx.write(
                    rdh,
                    zerocopy::transmute!(wb(status_error, len, vlan, info, hash)),
                );
                rdh = (rdh + 1) & mask;
            }
            Op::Scribble { slot, bytes } => {
                vp_written |=
                    u32::from_le_bytes(bytes[8..12].try_into().unwrap()) & RXD_STAT_VP != 0;
                rx.write(u32::from(slot) & mask, zerocopy::transmute!(bytes));
            }
            Op::Skip(n) => rdh = (rdh + 1 + u32::from(n) % 8) & mask,
            Op::Good { len, vp, vlan } => {
                if let Some(addr) = posted(rdh) {
                    let len = 60 + usize::from(len) % 1455;
                    device_write(addr, &vec![0x5a; len]);
                    let mut st = RXD_STAT_DD | RXD_STAT_EOP;
                    if vp {
                        st |= RXD_STAT_VP;
                        vp_written = true;
                    }
                    rx.write(rdh, zerocopy::transmute!(wb(st, len as u16, vlan, 0, 0)));
                    rdh = (rdh + 1) & mask;
                }
            }
            Op::Chain { n, len } => {
                let bufs = 1 + u32::from(n) % 4;
                for i in 0..bufs {
                    let Some(addr) = posted(rdh) else {
                        break;
                    };
                    let last = i + 1 == bufs;
                    let l = if last { usize::from(len) % 2049 } else { 2048 };
                    device_write(addr, &vec![0xa5; l]);
                    let st = RXD_STAT_DD | if last { RXD_STAT_EOP } else { 0 };
                    rx.write(rdh, zerocopy::transmute!(wb(st, l as u16, 0, 0, 0)));
                    rdh = (rdh + 1) & mask;
                }
            }
            Op::TxDone => {
                let tx = d.txq.ops().ring();
                let tail = tx_regs.read32(regs::TDT0) & mask;
                while tdh != tail {
                    let mut desc = tx.read(tdh);
                    if desc.cmd_type_len.get() & ADVTXD_DCMD_RS != 0 {
                        desc.olinfo_status = U32::new(desc.olinfo_status.get() | ADVTXD_STA_DD);
                        tx.write(tdh, desc);
                    }
                    tdh = (tdh + 1) & mask;
                }
            }
            Op::TxScribble { slot, status } => {
                let tx = d.txq.ops().ring();
                let i = u32::from(slot) & mask;
                let mut desc = tx.read(i);
                desc.olinfo_status = U32::new(status);
                tx.write(i, desc);
            }
            Op::SendOffload {
                flags,
                l2,
                l3,
                l4,
                mss,
                vlan,
                bytes,
            } => {
                let mut b = PacketBatch::new(1);
                if let Some(mut p) = d.cache.alloc() {
                    if p.copy_from(&bytes[..bytes.len().min(p.capacity())]) {
                        let m = p.meta_mut();
                        m.flags = flags;
                        (m.l2_len, m.l3_len, m.l4_len, m.mss, m.vlan_tci) = (l2, l3, l4, mss, vlan);
                        b.push(p).unwrap();
                        d.send(&mut b);
                    } else {
                        d.cache.free(p);
                    }
                }
                b.free_into(&mut d.cache);
            }
            Op::Driver(op) => {
                let held = d.held_count();
                d.step(op);
                if !vp_written {
                    assert!(
                        d.held_from(held)
                            .all(|p| p.meta().flags & PacketMeta::RX_VLAN_STRIPPED == 0),
                        "a stripped tag reported with no VP written"
                    );
                }
            }
        }
    }
    d.finish();
});
