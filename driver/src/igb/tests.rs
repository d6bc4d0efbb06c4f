//! The igb descriptor ops on the engine, against write-backs laid out as QEMU's igb writes
//! them (`igb_write_adv_rx_descr`, `igb_txdesc_writeback`).

use super::*;
use crate::packet::mempool::host_pool;
use crate::platform::dma::{DmaRegion, HugepagePolicy, IdentityMapper};
use crate::ring::{PacketBatch, RxQueue, TxQueue};
use std::collections::HashMap;
use std::sync::Mutex;
use tenge_descriptors::igb::{
    ADVTXD_DCMD_DEXT, ADVTXD_DTYP_DATA, ADVTXD_PAYLEN_SHIFT, PKT_TYPE_IPV6, PKT_TYPE_SCTP,
    PKT_TYPE_UDP, RXD_ERR_CE, RXD_ERR_IPE, RXD_ERR_L4E, RXD_STAT_IPCS, RXD_STAT_L4CS,
    RXD_STAT_UDPCS,
};
use zerocopy::little_endian::{U16, U32};

/// Registers as a plain map, recording every write.
#[derive(Default)]
struct Regs(Mutex<HashMap<u32, u32>>, Mutex<Vec<(u32, u32)>>);
impl Mmio for Regs {
    fn read32(&self, off: u32) -> u32 {
        *self.0.lock().unwrap().get(&off).unwrap_or(&0)
    }
    fn write32(&self, off: u32, v: u32) {
        self.0.lock().unwrap().insert(off, v);
        self.1.lock().unwrap().push((off, v));
    }
}
impl Regs {
    fn writes(&self) -> Vec<(u32, u32)> {
        self.1.lock().unwrap().clone()
    }
    fn clear(&self) {
        self.1.lock().unwrap().clear();
    }
}

fn region() -> Arc<DmaRegion> {
    Arc::new(DmaRegion::allocate(Arc::new(IdentityMapper), 1 << 16, HugepagePolicy::Never).unwrap())
}

/// Plays the device: completes RX descriptor `idx` with `len` bytes of `fill`, as QEMU
/// writes an advanced write-back (the whole 16 bytes, DD in the status dword).
fn device_receive(
    ring: &DescRing<AdvRxDescRead>,
    idx: u32,
    len: u16,
    status_error: u32,
    pkt_info: u32,
    hash: u32,
    fill: u8,
) {
    let read = ring.read(idx);
    assert_eq!(
        read.hdr_addr.get(),
        0,
        "one-buffer descriptors: no header address"
    );
    let addr = read.pkt_addr.get() as *mut u8;
    // SAFETY (test): identity-mapped buffer of at least 2048 bytes posted by the engine.
    unsafe { std::ptr::write_bytes(addr, fill, len.min(2048) as usize) };
    let wb = AdvRxDescWb {
        pkt_info: U32::new(pkt_info),
        rss_or_csum: U32::new(hash),
        status_error: U32::new(status_error),
        length: U16::new(len),
        vlan: U16::new(0),
    };
    ring.write(idx, zerocopy::transmute!(wb));
}

#[test]
fn rx_delivers_checksum_verdicts_chains_and_drops_errors() {
    let regs = Arc::new(Regs::default());
    let mut rxq = RxQueue::new(
        IgbRx::for_queue(DescRing::new(region(), 0, 8), regs.clone(), 0, false),
        1,
    );
    let pool = host_pool(64).unwrap();
    let mut cache = pool.cache(16);
    assert_eq!(rxq.fill(&mut cache), 7, "one slot stays empty");
    assert_eq!(regs.read32(regs::RDT0), 7);
    let r = rxq.ops().ring();
    let done = RXD_STAT_DD | RXD_STAT_EOP;
    device_receive(r, 0, 60, done | RXD_STAT_IPCS, 0, 0, 0xaa);
    device_receive(r, 1, 64, done | RXD_ERR_CE, 0, 0, 0xbb);
    device_receive(r, 2, 100, RXD_STAT_DD, 0, 0, 0xcc); // first buffer of two
    device_receive(r, 3, 100, done, 0, 0, 0xcc);
    let udp_bad = done | RXD_STAT_IPCS | RXD_STAT_L4CS | RXD_STAT_UDPCS | RXD_ERR_L4E;
    device_receive(r, 4, 1514, udp_bad, 0, 0, 0xdd);
    device_receive(r, 5, 60, done | RXD_STAT_IPCS | RXD_ERR_IPE, 0, 0, 0xee);
    regs.clear();
    let mut out = PacketBatch::new(32);
    assert_eq!(rxq.rx_burst(&mut cache, &mut out), 4);
    // pkt_info 0 on a last descriptor: not IP, which every frame here also says.
    let not_ip = PacketType::new(L3Type::Other, L4Type::Unknown).flags();
    let a = out.pop().unwrap();
    assert_eq!(a.data(), &[0xaa; 60][..]);
    assert_eq!(a.meta().flags, PacketMeta::RX_IP_CSUM_GOOD | not_ip);
    let c = out.pop().unwrap();
    assert_eq!((c.nb_segs(), c.pkt_len()), (2, 200));
    let d = out.pop().unwrap();
    assert_eq!(
        d.meta().flags,
        PacketMeta::RX_IP_CSUM_GOOD | PacketMeta::RX_L4_CSUM_BAD | not_ip
    );
    let e = out.pop().unwrap();
    assert_eq!(e.meta().flags, PacketMeta::RX_IP_CSUM_BAD | not_ip);
    let s = *rxq.stats();
    assert_eq!((s.packets, s.errors, s.chains), (4, 1, 1));
    // Six consumed and refilled, one tail write on queue 0's RDT.
    assert_eq!(regs.writes(), vec![(regs::RDT0, 5)]);
}

/// With RSS the write-back's type (QEMU's numbering, UDP included) and hash reach the
/// metadata; the packet-type bits beside the RSS type are not mistaken for it.
#[test]
fn rx_queue_9_reports_rss_hash_and_type_udp_included() {
    for rss in [true, false] {
        let regs = Arc::new(Regs::default());
        let mut rxq = RxQueue::new(
            IgbRx::for_queue(DescRing::new(region(), 0, 32), regs.clone(), 9, rss),
            1,
        );
        let pool = host_pool(64).unwrap();
        let mut cache = pool.cache(16);
        rxq.fill(&mut cache);
        assert_eq!(regs.writes(), vec![(regs::queue_reg(regs::RDT0, 9), 31)]);
        let r = rxq.ops().ring();
        // (RSS type, packet type, what the metadata says): an -ex type on a frame without
        // IPv6 extension headers is the plain type (QEMU reports 6 for any TCP/IPv6).
        let plain = (PKT_TYPE_IPV6 | PKT_TYPE_UDP) << 4;
        let ext = (PKT_TYPE_IPV6 | PKT_TYPE_IPV6_EX | PKT_TYPE_UDP) << 4;
        let types = [
            (1, plain, RssType::TcpIpv4),
            (2, plain, RssType::Ipv4),
            (3, plain, RssType::TcpIpv6),
            (4, plain, RssType::Ipv6),
            (5, plain, RssType::Ipv6),
            (6, plain, RssType::TcpIpv6),
            (7, plain, RssType::UdpIpv4),
            (8, plain, RssType::UdpIpv6),
            (9, plain, RssType::UdpIpv6),
            (4, ext, RssType::Ipv6Ex),
            (6, ext, RssType::TcpIpv6Ex),
            (9, ext, RssType::UdpIpv6Ex),
            (0, plain, RssType::None),
            (12, ext, RssType::None),
        ];
        for (i, (t, ptype, _)) in types.iter().enumerate() {
            let h = 0xbeef_0000 + i as u32;
            device_receive(r, i as u32, 60, RXD_STAT_DD | RXD_STAT_EOP, t | ptype, h, 1);
        }
        let mut out = PacketBatch::new(32);
        assert_eq!(rxq.rx_burst(&mut cache, &mut out), types.len());
        for (i, (_, _, t)) in types.iter().enumerate() {
            let m = *out.get(i).unwrap().meta();
            if rss {
                assert_eq!(m.rss_type(), *t, "entry {i}");
                let want = (*t != RssType::None).then_some(0xbeef_0000 + i as u32);
                assert_eq!(m.rss_hash(), want, "entry {i}");
            } else {
                assert_eq!((m.rss_type(), m.rss_hash()), (RssType::None, None));
            }
        }
    }
}

#[test]
fn tx_writes_advanced_data_descriptors_rs_every_nth_and_recycles_on_dd() {
    let regs = Arc::new(Regs::default());
    let pool = host_pool(64).unwrap();
    let mut cache = pool.cache(16);
    let mut txq = TxQueue::new(
        IgbTx::for_queue(DescRing::new(region(), 0, 16), regs.clone(), 3),
        4,
        MAX_FRAME,
    );
    let mut batch = PacketBatch::new(32);
    for i in 0..10u8 {
        let mut b = cache.alloc().unwrap();
        b.copy_from(&[i; 60]);
        batch.push(b).unwrap();
    }
    assert_eq!(txq.tx_burst(&mut cache, &mut batch), 10);
    assert_eq!(
        regs.writes(),
        vec![(regs::queue_reg(regs::TDT0, 3), 10)],
        "one doorbell per burst, on queue 3's TDT"
    );
    let ring = txq.ops().ring();
    for i in 0..10 {
        let d = ring.read(i);
        let cmd = d.cmd_type_len.get();
        // DEXT | DTYP data | IFCS | EOP, length 60; PAYLEN 60 as the 82576 wants it.
        assert_eq!(
            cmd & !ADVTXD_DCMD_RS,
            ADVTXD_DCMD_DEXT | ADVTXD_DTYP_DATA | ADVTXD_DCMD_IFCS | ADVTXD_DCMD_EOP | 60
        );
        assert_eq!(d.olinfo_status.get(), 60 << ADVTXD_PAYLEN_SHIFT);
        assert_eq!(cmd & ADVTXD_DCMD_RS != 0, i % 4 == 3, "RS on {i}");
    }
    // The device completes through descriptor 3: DD in the status byte (QEMU ORs it into
    // the descriptor's last dword).
    let mut d = ring.read(3);
    d.olinfo_status = U32::new(d.olinfo_status.get() | ADVTXD_STA_DD);
    ring.write(3, d);
    assert_eq!(txq.reclaim(&mut cache), 4);
    assert_eq!(txq.in_flight(), 6);
}

#[test]
fn tx_chain_puts_paylen_on_the_first_and_eop_on_the_last() {
    let regs = Arc::new(Regs::default());
    let pool = host_pool(64).unwrap();
    let mut cache = pool.cache(16);
    let mut txq = TxQueue::new(
        IgbTx::for_queue(DescRing::new(region(), 0, 16), regs.clone(), 0),
        1,
        MAX_FRAME,
    );
    let mut third = cache.alloc().unwrap();
    assert!(third.copy_from(&[3; 300]));
    let mut second = cache.alloc().unwrap();
    assert!(second.copy_from(&[2; 200]));
    second.set_next(Some(third));
    let mut head = cache.alloc().unwrap();
    assert!(head.copy_from(&[1; 100]));
    head.set_next(Some(second));
    let mut batch = PacketBatch::new(4);
    batch.push(head).unwrap();
    assert_eq!(txq.tx_burst(&mut cache, &mut batch), 1);
    let ring = txq.ops().ring();
    let d: Vec<_> = (0..3).map(|i| ring.read(i)).collect();
    assert_eq!(d[0].cmd_type_len.get() & 0xffff, 100);
    assert_eq!(d[0].olinfo_status.get() >> ADVTXD_PAYLEN_SHIFT, 600);
    assert_eq!(d[1].olinfo_status.get(), 0);
    for (i, x) in d.iter().enumerate() {
        let cmd = x.cmd_type_len.get();
        assert_ne!(cmd & ADVTXD_DCMD_DEXT, 0);
        assert_eq!(cmd & ADVTXD_DCMD_EOP != 0, i == 2);
        assert_eq!(cmd & ADVTXD_DCMD_RS != 0, i == 2);
    }
    // A packet asking for an offload is refused, not sent wrong.
    let mut b = cache.alloc().unwrap();
    b.copy_from(&[0; 60]);
    b.meta_mut().flags |= PacketMeta::TX_IP_CSUM;
    batch.push(b).unwrap();
    assert_eq!(txq.tx_burst(&mut cache, &mut batch), 0);
    assert!(batch.is_empty(), "dropped, not left in the batch");
    // Counted by its reason: no TX_IPV4/TX_IPV6 with it.
    assert_eq!(txq.stats().bad_offload_reasons.l3_type, 1);
    assert_eq!(txq.stats().bad_offload_reasons.total(), 1);
    assert_eq!(txq.stats().bad_offload, 1);
}

/// A UDP/IPv4 checksum request: a context descriptor (MACLEN 14, IPLEN 20, TUCMD IPV4 and
/// L4T UDP) then the data descriptor with IXSM|TXSM and PAYLEN; a second packet of the same
/// layout reuses the context; a TSO packet writes its own with MSS and L4LEN, PAYLEN the
/// payload only.
#[test]
fn tx_offloads_write_an_advanced_context_then_data_with_popts() {
    use tenge_descriptors::igb::{
        AdvTxContextDesc, ADVTXD_DCMD_TSE, ADVTXD_DTYP_CTXT, ADVTXD_POPTS_IXSM, ADVTXD_POPTS_TXSM,
        ADVTXD_TUCMD_IPV4, ADVTXD_TUCMD_L4T_TCP,
    };
    let regs = Arc::new(Regs::default());
    let pool = host_pool(64).unwrap();
    let mut cache = pool.cache(16);
    let mut txq = TxQueue::new(
        IgbTx::for_queue(DescRing::new(region(), 0, 16), regs.clone(), 0),
        1,
        MAX_FRAME,
    );
    let ipv4 = |proto: u8, len: usize, l4: &[u8]| {
        let mut f = vec![0u8; len];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
        f[23] = proto;
        f[34..34 + l4.len()].copy_from_slice(l4);
        f
    };
    let mut batch = PacketBatch::new(4);
    for _ in 0..2 {
        let mut b = cache.alloc().unwrap();
        assert!(b.copy_from(&ipv4(17, 100, &[0, 1, 0, 2, 0, 66, 0, 0])));
        let m = b.meta_mut();
        m.flags |= PacketMeta::TX_IPV4 | PacketMeta::TX_IP_CSUM | PacketMeta::TX_UDP_CSUM;
        m.l2_len = 14;
        m.l3_len = 20;
        batch.push(b).unwrap();
    }
    assert_eq!(txq.tx_burst(&mut cache, &mut batch), 2);
    let ring = txq.ops().ring();
    let c: AdvTxContextDesc = zerocopy::transmute!(ring.read(0));
    assert_eq!(c.vlan_macip_lens.get(), 20 | 14 << 9);
    assert_eq!(
        c.type_tucmd_mlhl.get(),
        ADVTXD_DTYP_CTXT | ADVTXD_DCMD_DEXT | ADVTXD_TUCMD_IPV4
    );
    assert_eq!(c.mss_l4len_idx.get(), 8 << 8, "IDX 0, L4LEN 8, no MSS");
    for i in [1, 2] {
        let d = ring.read(i);
        assert_eq!(
            d.cmd_type_len.get() & !ADVTXD_DCMD_RS,
            ADVTXD_DCMD_DEXT | ADVTXD_DTYP_DATA | ADVTXD_DCMD_IFCS | ADVTXD_DCMD_EOP | 100
        );
        assert_eq!(
            d.olinfo_status.get(),
            100 << ADVTXD_PAYLEN_SHIFT | ADVTXD_POPTS_IXSM | ADVTXD_POPTS_TXSM
        );
    }
    // TSO: 14 + 20 + 20 bytes of headers, 1000 of payload, MSS 536.
    let mut tcp = [0u8; 20];
    tcp[12] = 5 << 4;
    let mut b = cache.alloc().unwrap();
    assert!(b.copy_from(&ipv4(6, 1054, &tcp)));
    let m = b.meta_mut();
    m.flags |= PacketMeta::TX_IPV4 | PacketMeta::TX_TSO;
    (m.l2_len, m.l3_len, m.l4_len, m.mss) = (14, 20, 20, 536);
    batch.push(b).unwrap();
    assert_eq!(txq.tx_burst(&mut cache, &mut batch), 1);
    let ring = txq.ops().ring();
    let c: AdvTxContextDesc = zerocopy::transmute!(ring.read(3));
    assert_eq!(
        c.type_tucmd_mlhl.get(),
        ADVTXD_DTYP_CTXT | ADVTXD_DCMD_DEXT | ADVTXD_TUCMD_IPV4 | ADVTXD_TUCMD_L4T_TCP
    );
    assert_eq!(c.mss_l4len_idx.get(), 20 << 8 | 536 << 16);
    let d = ring.read(4);
    assert_ne!(d.cmd_type_len.get() & ADVTXD_DCMD_TSE, 0);
    assert_eq!(d.olinfo_status.get() >> ADVTXD_PAYLEN_SHIFT, 1000);
}

/// VLAN: a tag alone writes a context holding it (no header lengths) and data descriptors
/// with VLE; the next packet with the same tag reuses the context, one with another tag
/// writes its own; a checksum request with a tag carries both in one context.
#[test]
fn tx_vlan_tag_goes_in_the_context_with_vle_in_the_data_descriptor() {
    use tenge_descriptors::igb::{AdvTxContextDesc, ADVTXD_DCMD_VLE, ADVTXD_DTYP_CTXT};
    let regs = Arc::new(Regs::default());
    let pool = host_pool(64).unwrap();
    let mut cache = pool.cache(16);
    let mut txq = TxQueue::new(
        IgbTx::for_queue(DescRing::new(region(), 0, 16), regs.clone(), 0),
        1,
        MAX_FRAME,
    );
    let mut batch = PacketBatch::new(4);
    for tci in [0x2005u16, 0x2005, 0x0007] {
        let mut b = cache.alloc().unwrap();
        assert!(b.copy_from(&[0x11; 60]));
        let m = b.meta_mut();
        m.flags |= PacketMeta::TX_VLAN;
        m.vlan_tci = tci;
        batch.push(b).unwrap();
    }
    assert_eq!(txq.tx_burst(&mut cache, &mut batch), 3);
    let ring = txq.ops().ring();
    let ctx = |i| -> AdvTxContextDesc { zerocopy::transmute!(ring.read(i)) };
    assert_eq!(ctx(0).vlan_macip_lens.get(), 0x2005 << 16);
    assert_eq!(
        ctx(0).type_tucmd_mlhl.get(),
        ADVTXD_DTYP_CTXT | ADVTXD_DCMD_DEXT
    );
    for i in [1, 2, 4] {
        let d = ring.read(i);
        assert_eq!(
            d.cmd_type_len.get() & !ADVTXD_DCMD_RS,
            ADVTXD_DCMD_DEXT
                | ADVTXD_DTYP_DATA
                | ADVTXD_DCMD_IFCS
                | ADVTXD_DCMD_EOP
                | ADVTXD_DCMD_VLE
                | 60,
            "descriptor {i}"
        );
        assert_eq!(d.olinfo_status.get(), 60 << ADVTXD_PAYLEN_SHIFT);
    }
    assert_eq!(ctx(3).vlan_macip_lens.get(), 0x0007 << 16);
    // A plain packet after them: no VLE, no context.
    let mut b = cache.alloc().unwrap();
    assert!(b.copy_from(&[0x22; 60]));
    batch.push(b).unwrap();
    assert_eq!(txq.tx_burst(&mut cache, &mut batch), 1);
    let d = txq.ops().ring().read(5);
    assert_eq!(d.cmd_type_len.get() & ADVTXD_DCMD_VLE, 0);
    assert_eq!(d.cmd_type_len.get() & 0x00f0_0000, ADVTXD_DTYP_DATA);
}

/// RX: VP in the write-back flags the packet RX_VLAN_STRIPPED with the tag from the VLAN
/// field, on the fast path and beside checksum verdicts; no VP, no flag.
#[test]
fn rx_reports_a_stripped_vlan_tag() {
    let regs = Arc::new(Regs::default());
    let mut rxq = RxQueue::new(
        IgbRx::for_queue(DescRing::new(region(), 0, 8), regs.clone(), 0, false),
        1,
    );
    let pool = host_pool(64).unwrap();
    let mut cache = pool.cache(16);
    rxq.fill(&mut cache);
    let r = rxq.ops().ring();
    let done = RXD_STAT_DD | RXD_STAT_EOP;
    let wb = |idx, status, vlan| {
        device_receive(r, idx, 60, status, 0, 0, 0x5a);
        let mut d: AdvRxDescWb = zerocopy::transmute!(r.read(idx));
        d.vlan = U16::new(vlan);
        r.write(idx, zerocopy::transmute!(d));
    };
    use tenge_descriptors::igb::RXD_STAT_VP;
    wb(0, done | RXD_STAT_VP, 0xe00a);
    wb(1, done, 0);
    wb(2, done | RXD_STAT_VP | RXD_STAT_IPCS, 42);
    let mut out = PacketBatch::new(8);
    assert_eq!(rxq.rx_burst(&mut cache, &mut out), 3);
    let not_ip = PacketType::new(L3Type::Other, L4Type::Unknown).flags();
    let a = out.pop().unwrap();
    assert_eq!(a.meta().flags, PacketMeta::RX_VLAN_STRIPPED | not_ip);
    assert_eq!(a.meta().vlan_tci, 0xe00a);
    let b = out.pop().unwrap();
    assert_eq!(b.meta().flags, not_ip);
    let c = out.pop().unwrap();
    assert_eq!(
        c.meta().flags,
        PacketMeta::RX_VLAN_STRIPPED | PacketMeta::RX_IP_CSUM_GOOD | not_ip
    );
    assert_eq!(c.meta().vlan_tci, 42);
}

/// A write-back of 0 bytes with DD|EOP (found by the igb_rx fuzz target: the fast path
/// delivered it as an empty frame) is dropped and counted as bad_len, on the fast path's
/// run and alone; the frames around it arrive.
#[test]
fn rx_zero_length_write_back_is_dropped_and_counted() {
    let regs = Arc::new(Regs::default());
    let mut rxq = RxQueue::new(
        IgbRx::for_queue(DescRing::new(region(), 0, 8), regs.clone(), 0, false),
        1,
    );
    let pool = host_pool(64).unwrap();
    let mut cache = pool.cache(16);
    rxq.fill(&mut cache);
    let r = rxq.ops().ring();
    let done = RXD_STAT_DD | RXD_STAT_EOP;
    device_receive(r, 0, 60, done, 0, 0, 0x11);
    device_receive(r, 1, 0, done, 0, 0, 0x22);
    device_receive(r, 2, 61, done, 0, 0, 0x33);
    device_receive(r, 3, 0, done, 0, 0, 0x44);
    let mut out = PacketBatch::new(8);
    assert_eq!(rxq.rx_burst(&mut cache, &mut out), 2);
    assert_eq!(out.pop().unwrap().len(), 60);
    assert_eq!(out.pop().unwrap().len(), 61);
    assert_eq!(rxq.stats().bad_len, 2);
    drop(out);
    rxq.release(&mut cache);
    drop(cache);
    assert_eq!(
        pool.free_count(),
        64,
        "the dropped buffers went back to the pool"
    );
}

/// The packet type of the write-back (82576 §7.1.5.2; QEMU's `igb_rx_desc_get_packet_type`)
/// reaches the metadata as L3 and L4, on the fast path and beside checksum verdicts; a
/// chain takes it from its last descriptor, where QEMU writes it (its first says 0).
#[test]
fn rx_reports_the_packet_type_of_the_write_back() {
    let regs = Arc::new(Regs::default());
    let mut rxq = RxQueue::new(
        IgbRx::for_queue(DescRing::new(region(), 0, 16), regs.clone(), 0, false),
        1,
    );
    let pool = host_pool(64).unwrap();
    let mut cache = pool.cache(16);
    rxq.fill(&mut cache);
    let r = rxq.ops().ring();
    let done = RXD_STAT_DD | RXD_STAT_EOP;
    let info = |t: u32| t << RX_PKT_TYPE_SHIFT;
    let t = PacketType::new;
    let cases = [
        (PKT_TYPE_IPV4 | PKT_TYPE_TCP, t(L3Type::Ipv4, L4Type::Tcp)),
        (
            PKT_TYPE_IPV4_EX | PKT_TYPE_UDP,
            t(L3Type::Ipv4, L4Type::Udp),
        ),
        (PKT_TYPE_IPV6 | PKT_TYPE_TCP, t(L3Type::Ipv6, L4Type::Tcp)),
        (
            PKT_TYPE_IPV6_EX | PKT_TYPE_UDP,
            t(L3Type::Ipv6, L4Type::Udp),
        ),
        (
            PKT_TYPE_IPV4 | PKT_TYPE_SCTP,
            t(L3Type::Ipv4, L4Type::Other),
        ),
        (PKT_TYPE_IPV6, t(L3Type::Ipv6, L4Type::Other)),
        (0, t(L3Type::Other, L4Type::Unknown)),
    ];
    for (i, (p, _)) in cases.iter().enumerate() {
        device_receive(r, i as u32, 60, done, info(*p), 0, 1);
    }
    // The same type beside checksum verdicts (the slow path), and on a chain.
    let n = cases.len() as u32;
    let csum = done | RXD_STAT_IPCS | RXD_STAT_L4CS | RXD_STAT_UDPCS;
    device_receive(r, n, 60, csum, info(PKT_TYPE_IPV4 | PKT_TYPE_UDP), 0, 2);
    device_receive(r, n + 1, 100, RXD_STAT_DD, 0, 0, 3);
    device_receive(
        r,
        n + 2,
        100,
        csum,
        info(PKT_TYPE_IPV6 | PKT_TYPE_UDP),
        0,
        3,
    );
    let mut out = PacketBatch::new(32);
    assert_eq!(rxq.rx_burst(&mut cache, &mut out), cases.len() + 2);
    for (i, (_, want)) in cases.iter().enumerate() {
        let m = *out.get(i).unwrap().meta();
        assert_eq!(m.packet_type(), *want, "case {i}");
        assert_eq!(m.flags & !PacketMeta::RX_PTYPE_MASK, 0, "case {i}");
    }
    let verdicts = PacketMeta::RX_IP_CSUM_GOOD | PacketMeta::RX_L4_CSUM_GOOD;
    let a = *out.get(cases.len()).unwrap().meta();
    assert_eq!(a.packet_type(), t(L3Type::Ipv4, L4Type::Udp));
    assert_eq!(a.flags & !PacketMeta::RX_PTYPE_MASK, verdicts);
    let chain = out.get(cases.len() + 1).unwrap();
    assert_eq!(chain.nb_segs(), 2);
    assert_eq!(chain.meta().packet_type(), t(L3Type::Ipv6, L4Type::Udp));
    assert_eq!(chain.meta().flags & !PacketMeta::RX_PTYPE_MASK, verdicts);
}

/// Every packet-type index decodes as the 82576's bits say: IPv4 before IPv6 when both are
/// set, TCP before UDP, neither IP bit "other" with no L4.
#[test]
fn ptype_table_follows_the_packet_type_bits() {
    for p in 0..128u32 {
        let got = PacketType::from_flags(ptype_flags(p << RX_PKT_TYPE_SHIFT | 0xf));
        let v4 = p & (PKT_TYPE_IPV4 | PKT_TYPE_IPV4_EX) != 0;
        let v6 = p & (PKT_TYPE_IPV6 | PKT_TYPE_IPV6_EX) != 0;
        let want_l3 = match (v4, v6) {
            (true, _) => L3Type::Ipv4,
            (false, true) => L3Type::Ipv6,
            _ => L3Type::Other,
        };
        assert_eq!(got.l3, want_l3, "{p:#x}");
        let want_l4 = if want_l3 == L3Type::Other {
            L4Type::Unknown
        } else if p & PKT_TYPE_TCP != 0 {
            L4Type::Tcp
        } else if p & PKT_TYPE_UDP != 0 {
            L4Type::Udp
        } else {
            L4Type::Other
        };
        assert_eq!(got.l4, want_l4, "{p:#x}");
    }
}
