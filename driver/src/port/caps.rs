//! What a port does with each offload: the device does it, tenge does it in software, or
//! nobody does (DPDK's `dev_info` offload capabilities). An application asks before it
//! sets a request; a request the port cannot serve is dropped and counted
//! (`TxStats::bad_offload`), never sent as if it had been served.

use std::fmt;

/// Who serves an offload on a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffloadSupport {
    /// The device does it.
    Device,
    /// tenge does it in software on the data path.
    Software,
    /// Neither: a packet that asks is dropped and counted.
    Unavailable,
}

impl fmt::Display for OffloadSupport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OffloadSupport::Device => "device",
            OffloadSupport::Software => "software",
            OffloadSupport::Unavailable => "unavailable",
        })
    }
}

/// A port's offloads, as [`crate::Port::offloads`] reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffloadCaps {
    /// TX: the IPv4 header checksum (`PacketMeta::TX_IP_CSUM`).
    pub tx_ipv4_csum: OffloadSupport,
    /// TX: the TCP checksum over IPv4 and IPv6 (`TX_TCP_CSUM`).
    pub tx_tcp_csum: OffloadSupport,
    /// TX: the UDP checksum over IPv4 and IPv6 (`TX_UDP_CSUM`).
    pub tx_udp_csum: OffloadSupport,
    /// TX: TCP segmentation (`TX_TSO`).
    pub tx_tso: OffloadSupport,
    /// RX: checksum verdicts in `PacketMeta::flags`.
    pub rx_csum: OffloadSupport,
    /// RX: coalesced TCP segments (`RX_LRO`).
    pub lro: OffloadSupport,
    /// TX: 802.1Q tag insertion (`TX_VLAN` with `vlan_tci`).
    pub tx_vlan: OffloadSupport,
    /// RX: 802.1Q tags stripped into `vlan_tci` (`RX_VLAN_STRIPPED`; `PortConfig::vlan_strip`).
    pub rx_vlan_strip: OffloadSupport,
}

impl fmt::Display for OffloadCaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tx_ipv4_csum={} tx_tcp_csum={} tx_udp_csum={} tx_tso={} rx_csum={} lro={} \
             tx_vlan={} rx_vlan_strip={}",
            self.tx_ipv4_csum,
            self.tx_tcp_csum,
            self.tx_udp_csum,
            self.tx_tso,
            self.rx_csum,
            self.lro,
            self.tx_vlan,
            self.rx_vlan_strip
        )
    }
}
