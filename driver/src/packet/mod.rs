//! Packets: buffers in DMA memory with their metadata ([`mempool`]) and the checksum
//! arithmetic offloads and their software fallbacks use ([`csum`]).

pub mod csum;
pub mod mempool;
