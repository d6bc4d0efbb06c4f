#![no_std]
//! Hardware-visible descriptor and ring layouts.
