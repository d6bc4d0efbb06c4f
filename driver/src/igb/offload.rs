//! igb TX offloads: the IPv4 header checksum, the TCP and UDP checksums over IPv4 and IPv6,
//! and TSO, through an advanced context descriptor (82576 §7.2.2.2, context index 0) ahead
//! of the packet's advanced data descriptors with POPTS IXSM/TXSM and DCMD.TSE (§7.2.2.3).
//!
//! The request is checked and the headers prepared exactly as on e1000e
//! ([`crate::e1000e::offload`]: pseudo-header sums in the L4 field, the IPv4 checksum 0,
//! the IP length fields 0 under TSO), which is also what Linux's igb leaves in a packet.
//! The context the device holds is kept per queue as e1000e does: a checksum packet whose
//! layout matches needs none; each TSO packet writes its own (the 82576's context carries
//! no payload length, but the MSS and header lengths vary per flow).
//!
//! A VLAN tag (`TX_VLAN`) is the context's too (its VLAN field, 82576 §7.2.2.2), with
//! DCMD.VLE in the data descriptors: a tag alone writes a context with no header lengths
//! and POPTS clear, and the queue's context state counts the tag.

use tenge_descriptors::igb::{
    AdvTxDataDesc, ADVTXD_DCMD_DEXT, ADVTXD_DCMD_IFCS, ADVTXD_DCMD_TSE, ADVTXD_DCMD_VLE,
    ADVTXD_DTYP_CTXT, ADVTXD_L4LEN_SHIFT, ADVTXD_MACLEN_SHIFT, ADVTXD_MSS_SHIFT, ADVTXD_POPTS_IXSM,
    ADVTXD_POPTS_TXSM, ADVTXD_TUCMD_IPV4, ADVTXD_TUCMD_L4T_TCP, ADVTXD_TUCMD_L4T_UDP,
    ADVTXD_VLAN_SHIFT,
};

use crate::e1000e::offload::TxOffload;

/// The context descriptor for `o`, as its two quadwords: IPLEN and MACLEN; TUCMD IPV4 and
/// L4T TCP or UDP; DTYP context and DEXT; IDX 0, L4LEN and MSS for TSO.
pub(crate) fn context(o: &TxOffload) -> (u64, u64) {
    let (l2, l3, l4) = o.header_lens();
    let vlan_macip_lens = u32::from(l3)
        | u32::from(l2) << ADVTXD_MACLEN_SHIFT
        | u32::from(o.vlan().unwrap_or(0)) << ADVTXD_VLAN_SHIFT;
    let mut tucmd = if o.is_tcp() {
        ADVTXD_TUCMD_L4T_TCP
    } else {
        ADVTXD_TUCMD_L4T_UDP
    };
    if o.is_ipv4() {
        tucmd |= ADVTXD_TUCMD_IPV4;
    }
    let type_tucmd_mlhl = tucmd | ADVTXD_DTYP_CTXT | ADVTXD_DCMD_DEXT;
    let mss_l4len_idx =
        u32::from(l4) << ADVTXD_L4LEN_SHIFT | u32::from(o.mss()) << ADVTXD_MSS_SHIFT;
    (
        u64::from(vlan_macip_lens),
        u64::from(type_tucmd_mlhl) | u64::from(mss_l4len_idx) << 32,
    )
}

/// The second quadword of a data descriptor of `len` bytes for a packet with offload `o`
/// of `pkt_len` bytes in all: DEXT, DTYP data, IFCS, TSE for TSO, `end` (EOP, RS) on the
/// last; on the first (`first`) POPTS IXSM/TXSM and PAYLEN, which under TSO counts the
/// payload only (82576 §7.2.2.3.2), context index 0.
pub(crate) fn data_hi(o: &TxOffload, len: usize, pkt_len: usize, first: bool, end: u32) -> u64 {
    let (ip, l4, tso) = o.asks();
    let mut dcmd = ADVTXD_DCMD_IFCS | end;
    if tso {
        dcmd |= ADVTXD_DCMD_TSE;
    }
    // VLE on every descriptor of the packet (QEMU reads it from the first,
    // `igb_process_tx_desc`); the tag is the context's.
    if o.vlan().is_some() {
        dcmd |= ADVTXD_DCMD_VLE;
    }
    let olinfo = if first {
        let (l2, l3, l4len) = o.header_lens();
        let hdr = usize::from(l2) + usize::from(l3) + usize::from(l4len);
        let paylen = if tso { pkt_len - hdr } else { pkt_len };
        let mut popts = 0;
        if ip {
            popts |= ADVTXD_POPTS_IXSM;
        }
        if l4 || tso {
            popts |= ADVTXD_POPTS_TXSM;
        }
        AdvTxDataDesc::olinfo(paylen as u32, 0, popts)
    } else {
        0
    };
    u64::from(AdvTxDataDesc::cmd_dword(len as u32, dcmd)) | u64::from(olinfo) << 32
}
