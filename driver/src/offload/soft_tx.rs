//! The software side of a TX queue whose device lacks some offloads (virtio-net without
//! `CSUM` or `HOST_TSO4/6`, as on QEMU's model over a backend with no vnet header): the
//! requests the device cannot serve are served here, on the way to the ring, so an
//! application asks the same of every port and gets the same frames on the wire.
//!
//! - Without `CSUM`, the TCP and UDP checksums are computed in place
//!   (`TxOffload::checksum_in_software`) and their requests cleared.
//! - TSO without the device's goes through the software GSO ([`Gso`]): the packet is cut
//!   into MSS-sized frames from the queue's cache, which wait in this queue's own batch
//!   until the ring takes them; the caller's packet counts as sent once cut (it is freed).
//!   Their TCP checksums are left to the device where it has `CSUM`.
//!
//! Order is kept: the caller's packets behind one being segmented wait until every segment
//! before them is on the ring. A burst with no request in it costs one pass over the
//! packets' flags. A queue whose device serves everything has no `SoftTx` and pays nothing
//! (e1000e and igb serve every request themselves).

use crate::offload::gso::{Gso, GsoChecksum, GsoStats};
use crate::offload::tx::{DeviceTxOffloads, TxOffload};
use crate::packet::mempool::{MempoolCache, PacketBuf, PacketMeta};
use crate::ring::PacketBatch;

/// Segments of one packet the software GSO may make: a 64 KiB payload at an MSS of 64.
/// A smaller MSS on a larger packet is refused ([`crate::offload::GsoError::NoRoom`]).
pub const MAX_SEGMENTS: usize = 1024;

/// Software TX offloads of one queue.
pub struct SoftTx {
    device: DeviceTxOffloads,
    gso: Gso,
    /// Segments the ring has not taken yet.
    pending: PacketBatch,
    /// The caller's packets behind one bound for the GSO, set aside while those in front
    /// of it go.
    rest: PacketBatch,
    /// Packets checksummed here.
    checksummed: u64,
}

impl std::fmt::Debug for SoftTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftTx")
            .field("device", &self.device)
            .field("pending", &self.pending.len())
            .field("checksummed", &self.checksummed)
            .finish()
    }
}

impl SoftTx {
    /// Software offloads in front of a device that serves `device` and sends frames of up
    /// to `max_frame` bytes; `None` when it serves everything.
    pub fn for_device(device: DeviceTxOffloads, max_frame: usize) -> Option<Self> {
        if device.serves_all() {
            return None;
        }
        let checksum = if device.l4_csum {
            GsoChecksum::Device
        } else {
            GsoChecksum::Software
        };
        let mut gso = Gso::new(checksum);
        gso.max_frame = max_frame;
        Some(SoftTx {
            device,
            gso,
            pending: PacketBatch::new(MAX_SEGMENTS),
            rest: PacketBatch::new(0),
            checksummed: 0,
        })
    }

    /// The software GSO's counters (packets cut, segments made, refusals by reason).
    pub fn gso_stats(&self) -> &GsoStats {
        self.gso.stats()
    }

    /// Packets whose checksums were computed here.
    pub fn checksummed(&self) -> u64 {
        self.checksummed
    }

    /// Segments waiting for the ring.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Sends `pkts` from the front through `ring` (the device's burst: it takes from the
    /// front of a batch and returns how many it took), serving in software what the device
    /// cannot; returns how many of the caller's packets left `pkts`.
    pub fn burst(
        &mut self,
        pkts: &mut PacketBatch,
        cache: &mut MempoolCache,
        mut ring: impl FnMut(&mut MempoolCache, &mut PacketBatch) -> usize,
    ) -> usize {
        let mut taken = 0;
        loop {
            if !self.pending.is_empty() {
                ring(cache, &mut self.pending);
                if !self.pending.is_empty() {
                    return taken;
                }
            }
            let asked = pkts
                .iter()
                .fold(0, |a, p| a | p.meta().flags & PacketMeta::TX_OFFLOAD_MASK);
            if asked == 0 {
                return taken + ring(cache, pkts);
            }
            let mut gso_at = None;
            for (i, p) in pkts.iter_mut().enumerate() {
                let soft = self.device.software_part(p);
                if soft == 0 {
                    continue;
                }
                if soft & PacketMeta::TX_TSO != 0 {
                    gso_at = Some(i);
                    break;
                }
                self.checksum(p, soft);
            }
            match gso_at {
                None => return taken + ring(cache, pkts),
                Some(0) => {
                    if let Some(p) = pkts.pop() {
                        // A refusal is counted in the GSO's stats; the packet goes either
                        // way (all of it or none of it on the wire).
                        let _ = self.gso.segment(&p, cache, &mut self.pending);
                        cache.free(p);
                        taken += 1;
                    }
                }
                Some(k) => {
                    pkts.move_from_into(k, &mut self.rest);
                    let sent = ring(cache, pkts);
                    pkts.append(&mut self.rest);
                    taken += sent;
                    if sent < k {
                        return taken;
                    }
                }
            }
        }
    }

    /// Computes the checksums `soft` names in `pkt` and clears their requests; a request
    /// that does not match the packet is left as it is, for the ring to refuse and count.
    fn checksum(&mut self, pkt: &mut PacketBuf, soft: u32) {
        if let Ok(Some(o)) = TxOffload::of(pkt) {
            // Only the parts in `soft`: with the device's CSUM, a TCP request stays for it.
            let mut o = o;
            if soft & (PacketMeta::TX_TCP_CSUM | PacketMeta::TX_UDP_CSUM) == 0 {
                o.l4_csum_at = 0;
            }
            o.checksum_in_software(pkt);
            pkt.meta_mut().flags &= !soft;
            self.checksummed += 1;
        }
    }

    /// Hands waiting segments to `ring`; true when none is left waiting.
    pub fn flush(
        &mut self,
        cache: &mut MempoolCache,
        mut ring: impl FnMut(&mut MempoolCache, &mut PacketBatch) -> usize,
    ) -> bool {
        if !self.pending.is_empty() {
            ring(cache, &mut self.pending);
        }
        self.pending.is_empty()
    }

    /// Returns the segments still waiting to `cache` (the queue is going away).
    pub fn release(&mut self, cache: &mut MempoolCache) {
        self.pending.free_into(cache);
        self.rest.free_into(cache);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::testutil::{bytes, check, frame, packet, tso, Spec};
    use crate::packet::csum;
    use crate::packet::mempool::host_pool;

    /// A ring that takes at most `per_call` packets a burst and keeps what it took, in
    /// order, finishing checksums asked of it as a device with CSUM would (complement of
    /// the sum from `csum_start`, TCP's 0 kept).
    struct Wire {
        per_call: usize,
        frames: Vec<(Vec<u8>, u32)>,
    }

    impl Wire {
        fn burst(&mut self, cache: &mut MempoolCache, b: &mut PacketBatch) -> usize {
            let mut n = 0;
            while n < self.per_call {
                let Some(mut p) = b.pop() else { break };
                let flags = p.meta().flags;
                if let Ok(Some(o)) = TxOffload::of(&p) {
                    // What the ring's header writer does, then what the device does.
                    o.prepare(&mut p, crate::offload::tx::PseudoHeader::Partial);
                    if let Some((start, at)) = o.l4_csum() {
                        let start = usize::from(start);
                        let c = !csum::fold(csum::sum_from(&p, start).unwrap());
                        assert!(csum::write_at(
                            &mut p,
                            start + usize::from(at),
                            &c.to_be_bytes()
                        ));
                    }
                }
                self.frames.push((bytes(&p), flags));
                cache.free(p);
                n += 1;
            }
            n
        }
    }

    fn csum_req(cache: &mut MempoolCache, spec: &Spec, payload: &[u8]) -> PacketBuf {
        let mut f = frame(spec, payload);
        // Scramble the TCP checksum: only the software (or the device) can fix it.
        let at = if spec.v6 { 54 } else { 34 } + 16;
        f[at] ^= 0x55;
        let mut p = packet(cache, &f, &[]);
        let m = p.meta_mut();
        m.flags = PacketMeta::TX_TCP_CSUM
            | if spec.v6 {
                PacketMeta::TX_IPV6
            } else {
                PacketMeta::TX_IPV4 | PacketMeta::TX_IP_CSUM
            };
        let l4 = 20 + if spec.ts.is_some() { 12 } else { 0 };
        (m.l2_len, m.l3_len, m.l4_len) = (14, if spec.v6 { 40 } else { 20 }, l4);
        p
    }

    /// A batch of plain frames, checksum requests and TSO packets on a device with none of
    /// the offloads (and, second, one with CSUM only), through a ring that takes three a
    /// call: everything arrives in order, TSO packets as MSS-sized segments, every checksum
    /// right (etherparse), and the caller's count is its packets, not the segments.
    #[test]
    fn checksums_and_gso_in_order_whatever_the_ring_takes() {
        for l4_csum in [false, true] {
            let pool = host_pool(512).unwrap();
            let mut cache = pool.cache(32);
            let device = DeviceTxOffloads {
                l4_csum,
                ..DeviceTxOffloads::default()
            };
            let mut soft = SoftTx::for_device(device, 1514).unwrap();
            let mut wire = Wire {
                per_call: 3,
                frames: Vec::new(),
            };
            let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
            let mut b = PacketBatch::new(8);
            let spec4 = Spec::default();
            let spec6 = Spec {
                v6: true,
                seq: 9000,
                ..Spec::default()
            };
            b.push(packet(&mut cache, &frame(&spec4, b"plain"), &[]))
                .unwrap();
            b.push(tso(&mut cache, &spec4, &data, 1448, &[100]))
                .unwrap();
            b.push(csum_req(&mut cache, &spec6, b"checksum me"))
                .unwrap();
            b.push(tso(&mut cache, &spec6, &data[..3001], 536, &[]))
                .unwrap();
            b.push(csum_req(&mut cache, &spec4, b"and me")).unwrap();
            let mut taken = 0;
            for _ in 0..100 {
                taken += soft.burst(&mut b, &mut cache, |c, bb| wire.burst(c, bb));
                if b.is_empty() && soft.pending() == 0 {
                    break;
                }
            }
            assert_eq!(taken, 5);
            let seen: Vec<_> = wire.frames.iter().map(|(f, _)| check(f)).collect();
            // 1 + ceil(5000/1448)=4 + 1 + ceil(3001/536)=6 + 1.
            assert_eq!(seen.len(), 13, "l4_csum {l4_csum}");
            assert_eq!(seen[0].payload, b"plain");
            let first: Vec<u8> = seen[1..5].iter().flat_map(|s| s.payload.clone()).collect();
            assert_eq!(first, data);
            assert_eq!(seen[5].payload, b"checksum me");
            let second: Vec<u8> = seen[6..12].iter().flat_map(|s| s.payload.clone()).collect();
            assert_eq!(second, &data[..3001]);
            assert_eq!(seen[12].payload, b"and me");
            // Without CSUM nothing reaches the ring with a request; with it, the
            // checksums are left to it.
            let asked = wire
                .frames
                .iter()
                .any(|(_, f)| f & PacketMeta::TX_TCP_CSUM != 0);
            assert_eq!(asked, l4_csum);
            assert_eq!(soft.gso_stats().packets, 2);
            assert_eq!(soft.gso_stats().segments, 10);
            drop(b);
            drop(cache);
            assert_eq!(pool.free_count(), 512, "every buffer home");
        }
    }

    /// A TSO packet the pool cannot cut (too few buffers): dropped whole and counted,
    /// nothing of it on the wire, the packets around it sent.
    #[test]
    fn a_packet_the_pool_cannot_cut_is_dropped_whole_and_counted() {
        let pool = host_pool(16).unwrap();
        let mut cache = pool.cache(0);
        let mut soft = SoftTx::for_device(DeviceTxOffloads::default(), 1514).unwrap();
        let mut wire = Wire {
            per_call: 32,
            frames: Vec::new(),
        };
        let data = vec![7u8; 20_000];
        let spec = Spec::default();
        let mut b = PacketBatch::new(4);
        b.push(packet(&mut cache, &frame(&spec, b"before"), &[]))
            .unwrap();
        b.push(tso(&mut cache, &spec, &data, 1000, &[])).unwrap();
        b.push(packet(&mut cache, &frame(&spec, b"after"), &[]))
            .unwrap();
        assert_eq!(soft.burst(&mut b, &mut cache, |c, bb| wire.burst(c, bb)), 3);
        let seen: Vec<_> = wire.frames.iter().map(|(f, _)| check(f).payload).collect();
        assert_eq!(seen, vec![b"before".to_vec(), b"after".to_vec()]);
        assert_eq!(soft.gso_stats().pool_empty, 1);
        drop(cache);
        assert_eq!(pool.free_count(), 16);
    }

    /// An MSS whose segments would be longer than the port sends (IPv6 with timestamps at
    /// MSS 1448: 1534-byte frames): refused whole with the reason, nothing on the wire.
    #[test]
    fn segments_over_the_port_frame_are_refused_whole() {
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(0);
        let mut soft = SoftTx::for_device(DeviceTxOffloads::default(), 1514).unwrap();
        let mut wire = Wire {
            per_call: 32,
            frames: Vec::new(),
        };
        let v6 = Spec {
            v6: true,
            ..Spec::default()
        };
        let mut b = PacketBatch::new(2);
        b.push(tso(&mut cache, &v6, &[1u8; 5000], 1448, &[]))
            .unwrap();
        b.push(tso(&mut cache, &v6, &[1u8; 5000], 1428, &[]))
            .unwrap();
        assert_eq!(soft.burst(&mut b, &mut cache, |c, bb| wire.burst(c, bb)), 2);
        assert_eq!(soft.gso_stats().segment_too_long, 1);
        assert_eq!(wire.frames.len(), 4, "only the second, in 1514-byte frames");
        assert!(wire.frames.iter().all(|(f, _)| f.len() <= 1514));
    }

    #[test]
    fn a_device_that_serves_everything_needs_no_software() {
        let all = DeviceTxOffloads {
            l4_csum: true,
            tso4: true,
            tso6: true,
            tso_ecn: true,
        };
        assert!(SoftTx::for_device(all, 1514).is_none());
        assert!(SoftTx::for_device(
            DeviceTxOffloads {
                tso_ecn: false,
                ..all
            },
            1514
        )
        .is_some());
    }
}
