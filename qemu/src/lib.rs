//! The QEMU guest test bed.
