//! tenge: a userspace poll-mode NIC driver on VFIO.
