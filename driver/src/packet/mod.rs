//! Packets: buffers in DMA memory with their metadata ([`mempool`]), the types of
//! receive-side scaling ([`rss`]) and the checksum arithmetic offloads and their software
//! fallbacks use ([`csum`]).

pub mod csum;
pub mod mempool;
pub mod rss;
