//! Shared bits of the example applications.
