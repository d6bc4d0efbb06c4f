//! Packets: buffers in DMA memory with their metadata ([`mempool`]), the types of
//! receive-side scaling ([`rss`]), the packet type a device reports ([`ptype`]) and the
//! checksum arithmetic offloads and their software fallbacks use ([`csum`]).

pub mod csum;
pub mod mempool;
pub mod ptype;
pub mod rss;
