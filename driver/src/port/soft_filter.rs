//! The receive filter in software, behind a virtio-net device's own.
//!
//! With promiscuous mode off, a port receives frames to its own MAC, to the addresses of
//! its unicast filter and broadcasts. virtio-net sets that filter through the control queue
//! (virtio 1.2 §5.1.6.5.1-2), and QEMU answers those commands for every backend, but only
//! its own device model applies them (`receive_filter` in hw/net/virtio-net.c): with a
//! vhost-user backend the frames never pass through QEMU, and DPDK's vhost library has no
//! receive filter at all, so a device that said yes to "promiscuous off" still delivers
//! every frame. The guest cannot tell the two apart, so a virtio port with promiscuous
//! mode off checks each frame's destination itself and counts what it drops
//! (`RxStats::filtered`). On a device that filters, nothing reaches it to drop; the check
//! costs a compare or two per frame, and nothing at all with promiscuous mode on.

use crate::packet::mempool::PacketBuf;

/// The addresses a port with promiscuous mode off accepts, besides broadcast.
#[derive(Clone, Debug)]
pub struct SoftRxFilter {
    own: [u8; 6],
    unicast: Vec<[u8; 6]>,
}

impl SoftRxFilter {
    /// Accepts frames to `own`, to each of `unicast`, and broadcasts.
    pub fn new(own: [u8; 6], unicast: &[[u8; 6]]) -> Self {
        SoftRxFilter {
            own,
            unicast: unicast.to_vec(),
        }
    }

    /// Whether a frame whose first bytes are `frame` passes: its destination is the port's
    /// MAC, one of the unicast filter's, or broadcast. Multicast frames do not (the port
    /// programs no multicast filter); nor does a frame too short to have a destination.
    #[inline]
    pub fn accepts(&self, frame: &[u8]) -> bool {
        let Some(dst) = frame.first_chunk::<6>() else {
            return false;
        };
        if dst[0] & 1 != 0 {
            return *dst == [0xff; 6];
        }
        *dst == self.own || self.unicast.contains(dst)
    }

    /// Whether `pkt` passes (its first segment holds the Ethernet header).
    #[inline]
    pub fn accepts_packet(&self, pkt: &PacketBuf) -> bool {
        self.accepts(pkt.data())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const OTHER: [u8; 6] = [0x02, 0, 0, 0x5e, 0, 0x42];

    fn frame(dst: [u8; 6]) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
        f.resize(60, 0);
        f
    }

    #[test]
    fn own_unicast_and_broadcast_pass_others_and_multicast_do_not() {
        let f = SoftRxFilter::new(OWN, &[]);
        assert!(f.accepts(&frame(OWN)));
        assert!(f.accepts(&frame([0xff; 6])));
        assert!(!f.accepts(&frame(OTHER)));
        assert!(!f.accepts(&frame([0x01, 0, 0x5e, 0, 0, 1])));
        assert!(!f.accepts(&frame([0x33, 0x33, 0, 0, 0, 1])));
        // A multicast address that differs from broadcast in one bit only.
        assert!(!f.accepts(&frame([0xff, 0xff, 0xff, 0xff, 0xff, 0xfe])));
        assert!(!f.accepts(&[0xff; 5]), "too short for a destination");
        let f = SoftRxFilter::new(OWN, &[OTHER]);
        assert!(f.accepts(&frame(OTHER)));
        assert!(!f.accepts(&frame([0x02, 0, 0, 0x5e, 0, 0x43])));
    }
}
