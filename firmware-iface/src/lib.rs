//! Device register maps and control-plane sequences.
