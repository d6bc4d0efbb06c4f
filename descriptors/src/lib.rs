#![no_std]
//! Hardware-visible descriptor and ring layouts.
//!
//! Every byte a device reads or writes by DMA is declared here once, as a `#[repr(C)]`
//! zerocopy struct with little-endian field types and a compile-time size assert. No logic
//! beyond accessors and bit constants: the driver decides what to put in them.

pub mod e1000e;
pub mod igb;
pub mod virtio;
pub mod virtio_net;
