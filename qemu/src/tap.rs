//! A real Linux peer for a guest NIC: a tap interface with a vnet header inside a network
//! namespace made for the test, handed to QEMU as an open file descriptor.
//!
//! QEMU itself stays in the host's namespace (so the 9p shares and `dgram` sockets on
//! 127.0.0.1 work as for every other backend); only the tap and whatever a test runs with
//! [`TapPeer::exec`] or sends through a [`FrameSocket`] live in the namespace. The address
//! given to the tap (10.99.0.1/24 by default) exists nowhere else on the machine, so no
//! frame of the guest's reaches the host's own network.
//!
//! Lifetime: [`TapPeer`] deletes its namespace (and with it the tap) when dropped, also
//! while a test panics. A process killed outright (SIGKILL, Ctrl-C of the `testbed`
//! binary) cannot; every namespace records its owner under [`OWNERS_DIR`], and the next
//! [`TapPeer::create`] in any process deletes namespaces whose owner is gone.

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use crate::config::Backend;

/// Where each namespace made by a [`TapPeer`] records its owner (`<pid> <starttime>`).
pub const OWNERS_DIR: &str = "/run/tenge-testbed/netns";
/// The tap's address in the namespace when none is given.
pub const DEFAULT_HOST_CIDR: &str = "10.99.0.1/24";
/// The address a guest is expected to give its NIC on that network.
pub const DEFAULT_GUEST_ADDR: &str = "10.99.0.2";
/// The tap's name in the namespace when none is given.
pub const DEFAULT_IFNAME: &str = "tap0";

/// Most queues of a multi-queue tap the test bed makes (virtio-net: a queue pair each).
pub const MAX_TAP_QUEUES: u16 = 8;

/// `IFNAMSIZ - 1`: the longest interface name Linux takes.
const MAX_IFNAME: usize = 15;

fn err(kind: io::ErrorKind, msg: impl Into<String>) -> io::Error {
    io::Error::new(kind, msg.into())
}

/// A network namespace with one tap interface (vnet header on, up, with an address),
/// owned by the test: created by [`TapPeer::new`] or [`TapPeer::create`], deleted on drop.
///
/// Give a NIC [`TapPeer::backend`] and the guest's frames go to the namespace's Linux
/// stack, which answers ARP and pings like any host. QEMU gets the tap as an open file
/// descriptor at [`crate::Guest::boot`], so the peer must exist before the guest boots and
/// outlive it.
#[derive(Debug)]
pub struct TapPeer {
    netns: String,
    ifname: String,
    host_cidr: String,
    queues: u16,
    owner_file: PathBuf,
}

impl TapPeer {
    /// A namespace named `tenge-<pid>-<n>` with a tap `tap0` at 10.99.0.1/24.
    pub fn new() -> io::Result<TapPeer> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let netns = format!("tenge-{}-{n}", std::process::id());
        TapPeer::create(&netns, DEFAULT_IFNAME, DEFAULT_HOST_CIDR)
    }

    /// Creates namespace `netns` (it must not exist yet) with loopback up and a tap
    /// `ifname` in it: `ip tuntap add ... mode tap vnet_hdr`, IPv6 off on it (so the
    /// namespace sends nothing the test did not ask for), up, with `host_cidr` (e.g.
    /// `10.99.0.1/24`; use a private network that exists nowhere else on the machine).
    pub fn create(netns: &str, ifname: &str, host_cidr: &str) -> io::Result<TapPeer> {
        Self::create_with_queues(netns, ifname, host_cidr, 1)
    }

    /// Like [`TapPeer::new`], with a multi-queue tap of `queues` queues (`ip tuntap add
    /// ... multi_queue`; QEMU opens it once per queue, and a virtio-net NIC on it gets as
    /// many queue pairs, with RSS and hash reports).
    pub fn multi_queue(queues: u16) -> io::Result<TapPeer> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let netns = format!("tenge-{}-mq{n}", std::process::id());
        TapPeer::create_with_queues(&netns, DEFAULT_IFNAME, DEFAULT_HOST_CIDR, queues)
    }

    /// [`TapPeer::create`] with a tap of `queues` queues (1 to [`MAX_TAP_QUEUES`]; more
    /// than one: `multi_queue`).
    pub fn create_with_queues(
        netns: &str,
        ifname: &str,
        host_cidr: &str,
        queues: u16,
    ) -> io::Result<TapPeer> {
        if !(1..=MAX_TAP_QUEUES).contains(&queues) {
            return Err(err(
                io::ErrorKind::InvalidInput,
                format!("a tap of {queues} queues: use 1 to {MAX_TAP_QUEUES}"),
            ));
        }
        validate_netns_name(netns).map_err(|e| err(io::ErrorKind::InvalidInput, e))?;
        validate_ifname(ifname).map_err(|e| err(io::ErrorKind::InvalidInput, e))?;
        check_tools()?;
        prune_stale();
        if netns_exists(netns) {
            return Err(err(
                io::ErrorKind::AlreadyExists,
                format!(
                    "network namespace {netns} exists already: pick another name or delete it \
                     (ip netns del {netns})"
                ),
            ));
        }
        let mut add = vec![
            "-n", netns, "tuntap", "add", "dev", ifname, "mode", "tap", "vnet_hdr",
        ];
        if queues > 1 {
            add.push("multi_queue");
        }
        Self::in_new_netns(netns, ifname, host_cidr, queues, &add)
    }

    /// A namespace `tenge-<pid>-v<n>` with one end of a veth pair, [`DEFAULT_IFNAME`] at
    /// [`DEFAULT_HOST_CIDR`], and the other end, `outer`, up in the host's namespace for a
    /// host process: the vhost host's af_packet port ([`crate::VhostHostConfig::af_packet`])
    /// puts a vhost-user NIC on this wire. Both ends carry whole frames (checksum,
    /// segmentation and receive offloads off), since af_packet passes no vnet header. Not a
    /// QEMU backend ([`TapPeer::backend`] is for taps). The pair goes with the namespace.
    pub fn veth(outer: &str) -> io::Result<TapPeer> {
        validate_ifname(outer).map_err(|e| err(io::ErrorKind::InvalidInput, e))?;
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let netns = format!("tenge-{}-v{n}", std::process::id());
        check_tools()?;
        prune_stale();
        let peer = Self::in_new_netns(
            &netns,
            DEFAULT_IFNAME,
            DEFAULT_HOST_CIDR,
            1,
            &[
                "link",
                "add",
                outer,
                "type",
                "veth",
                "peer",
                "name",
                DEFAULT_IFNAME,
                "netns",
                &netns,
            ],
        )?;
        ip(&["link", "set", outer, "up"])?;
        let offloads_off = [
            "rx", "off", "tx", "off", "tso", "off", "gso", "off", "gro", "off",
        ];
        run_ok("ethtool", &[&["-K", outer][..], &offloads_off].concat())?;
        peer.exec_ok(&[&["ethtool", "-K", DEFAULT_IFNAME][..], &offloads_off].concat())?;
        Ok(peer)
    }

    /// Creates `netns` (loopback up), runs `ip ADD` to make `ifname` in it, and sets that
    /// up with `host_cidr` and IPv6 off (so the namespace sends nothing a test did not ask
    /// for).
    fn in_new_netns(
        netns: &str,
        ifname: &str,
        host_cidr: &str,
        queues: u16,
        add: &[&str],
    ) -> io::Result<TapPeer> {
        ip(&["netns", "add", netns])?;
        // From here on the namespace is ours: dropping `peer` deletes it on any error below.
        let peer = TapPeer {
            netns: netns.to_owned(),
            ifname: ifname.to_owned(),
            host_cidr: host_cidr.to_owned(),
            queues,
            owner_file: Path::new(OWNERS_DIR).join(netns),
        };
        record_owner(&peer.owner_file)?;
        ip(&["-n", netns, "link", "set", "lo", "up"])?;
        ip(add)?;
        let sysctl = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
        in_netns(netns, move || fs::write(&sysctl, "1"))?;
        ip(&["-n", netns, "link", "set", ifname, "up"])?;
        ip(&["-n", netns, "addr", "add", host_cidr, "dev", ifname])?;
        Ok(peer)
    }

    /// The backend that connects a NIC to this peer's tap.
    pub fn backend(&self) -> Backend {
        Backend::Tap {
            netns: self.netns.clone(),
            ifname: self.ifname.clone(),
            queues: self.queues,
        }
    }

    /// The namespace's name (for `ip netns exec NAME ...`).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The tap's name inside the namespace.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The tap's address with prefix length, e.g. `10.99.0.1/24`.
    pub fn host_cidr(&self) -> &str {
        &self.host_cidr
    }

    /// The tap's address without prefix length, e.g. `10.99.0.1`.
    pub fn host_addr(&self) -> &str {
        self.host_cidr
            .split_once('/')
            .map_or(&self.host_cidr, |(a, _)| a)
    }

    /// A command that runs `program` in the namespace (`ip netns exec NS program`); add
    /// arguments and spawn it, e.g. to keep a sender running in the background.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns, program])
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `argv` in the namespace and returns its output, whatever its status.
    pub fn exec<S: AsRef<str>>(&self, argv: &[S]) -> io::Result<Output> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| err(io::ErrorKind::InvalidInput, "exec: empty argv"))?;
        self.command(program.as_ref())
            .args(args.iter().map(AsRef::as_ref))
            .output()
            .map_err(|e| err(e.kind(), format!("cannot run ip netns exec: {e}")))
    }

    /// [`TapPeer::exec`] that fails unless the command exits 0; returns its stdout.
    pub fn exec_ok<S: AsRef<str>>(&self, argv: &[S]) -> io::Result<String> {
        let out = self.exec(argv)?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        Err(io::Error::other(format!(
            "`{}` in netns {} failed ({}): {}{}",
            argv.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" "),
            self.netns,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }

    /// Pings `dst` from the namespace `count` times with `payload` bytes of ICMP data
    /// (the frame is `payload + 42` bytes), 0.2 s apart, waiting up to 2 s for the last
    /// reply. Uses `ping` from `PATH`, else busybox's.
    pub fn ping(&self, dst: &str, count: u32, payload: usize) -> io::Result<PingResult> {
        let (count, payload) = (count.to_string(), payload.to_string());
        let mut argv: Vec<&str> = Vec::new();
        if !on_path("ping") {
            argv.push("busybox");
        }
        argv.extend([
            "ping", "-c", &count, "-s", &payload, "-i", "0.2", "-W", "2", dst,
        ]);
        let out = self.exec(&argv)?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let (transmitted, received) = parse_ping_summary(&text).ok_or_else(|| {
            io::Error::other(format!(
                "no summary in the output of `{}` ({}): {text}",
                argv.join(" "),
                out.status
            ))
        })?;
        Ok(PingResult {
            transmitted,
            received,
            output: text,
        })
    }

    /// A raw packet socket on the tap that sends each frame behind a 10-byte
    /// `virtio_net_hdr` (PACKET_VNET_HDR, packet(7)): a frame can carry a partial checksum
    /// or be one large TCP segment for the NIC to segment (GSO), which the tap hands QEMU
    /// as such and QEMU's virtio-net passes on to a guest that took GUEST_CSUM/GUEST_TSO.
    pub fn gso_socket(&self) -> io::Result<FrameSocket> {
        let s = self.frame_socket()?;
        let on: libc::c_int = 1;
        // SAFETY: `on` is a valid int of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                s.fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_VNET_HDR,
                (&raw const on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(s)
    }

    /// A raw packet socket on the tap, for sending frames to the guest (and reading what it
    /// sends) without the namespace's IP stack in between.
    pub fn frame_socket(&self) -> io::Result<FrameSocket> {
        self.frame_socket_on(&self.ifname)
    }

    /// A raw packet socket on `ifname`, another interface in the tap's namespace (one the
    /// test created there, e.g. a veth the tap is bridged to).
    pub fn frame_socket_on(&self, ifname: &str) -> io::Result<FrameSocket> {
        let name = ifname.to_owned();
        in_netns(&self.netns, move || FrameSocket::open(&name)).map_err(|e| {
            err(
                e.kind(),
                format!("packet socket on {ifname} in {}: {e}", self.netns),
            )
        })
    }
}

impl Drop for TapPeer {
    fn drop(&mut self) {
        match ip(&["netns", "del", &self.netns]) {
            Ok(()) => {
                let _ = fs::remove_file(&self.owner_file);
            }
            // Keep the owner file: the next TapPeer::create retries once we are gone.
            Err(e) => eprintln!("tenge-testbed: cannot delete netns {}: {e}", self.netns),
        }
    }
}

/// What [`TapPeer::ping`] saw.
#[derive(Clone, Debug)]
pub struct PingResult {
    /// Echo requests sent.
    pub transmitted: u32,
    /// Echo replies received.
    pub received: u32,
    /// ping's whole output, for assertion messages.
    pub output: String,
}

impl PingResult {
    /// Every request was answered.
    pub fn all_replied(&self) -> bool {
        self.transmitted > 0 && self.received == self.transmitted
    }
}

/// `AF_PACKET` raw socket bound to the tap in its namespace ([`TapPeer::frame_socket`]).
/// A frame sent on it goes out of the tap, that is to the guest NIC; frames the guest
/// sends (and, as for any packet socket, those the namespace sends) can be received.
#[derive(Debug)]
pub struct FrameSocket {
    fd: OwnedFd,
    ifindex: i32,
}

/// `PACKET_VNET_HDR` from linux/if_packet.h (not in the libc crate).
const PACKET_VNET_HDR: libc::c_int = 15;

impl FrameSocket {
    fn open(ifname: &str) -> io::Result<FrameSocket> {
        let ifindex = if_index(ifname)?;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain syscall; the result is checked before it is wrapped.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let addr = sockaddr_ll(ifindex, proto);
        // SAFETY: `addr` is a valid sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(FrameSocket { fd, ifindex })
    }

    /// Sends one whole Ethernet frame (destination MAC first, no FCS) to the guest; on a
    /// [`TapPeer::gso_socket`], `frame` starts with the 10-byte `virtio_net_hdr`.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let addr = sockaddr_ll(self.ifindex, 0);
        // SAFETY: `frame` and `addr` are valid for the sizes passed.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != frame.len() {
            return Err(io::Error::other(format!(
                "sent {n} of {} bytes",
                frame.len()
            )));
        }
        Ok(())
    }

    /// Receives one frame seen on the tap (either direction) into `buf`, waiting up to
    /// `timeout`; `Ok(None)` when none came. Returns its length (truncated to `buf`).
    pub fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
        };
        let tv = if timeout.is_zero() {
            // A zero SO_RCVTIMEO blocks forever; wait the shortest time instead.
            libc::timeval {
                tv_sec: 0,
                tv_usec: 1,
            }
        } else {
            tv
        };
        // SAFETY: `tv` is a valid timeval of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(n as usize))
    }
}

fn sockaddr_ll(ifindex: i32, proto_be: u16) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto_be;
    addr.sll_ifindex = ifindex;
    addr
}

fn if_index(ifname: &str) -> io::Result<i32> {
    let name = CString::new(ifname)
        .map_err(|_| err(io::ErrorKind::InvalidInput, "interface name with a NUL"))?;
    // SAFETY: `name` is a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(err(
            io::ErrorKind::NotFound,
            format!("no interface {ifname}"),
        ));
    }
    i32::try_from(index).map_err(|_| io::Error::other("interface index out of range"))
}

/// Runs `f` on a new thread that first joined network namespace `netns` (setns(2) on
/// `/run/netns/<netns>`). Sockets and tap files opened there stay in that namespace; the
/// rest of the process never changes namespace.
pub(crate) fn in_netns<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let path = netns_path(netns);
    let ns = File::open(&path).map_err(|e| {
        err(
            e.kind(),
            format!(
                "cannot open {}: {e} (is there a network namespace {netns}?)",
                path.display()
            ),
        )
    })?;
    thread::Builder::new()
        .name("tenge-netns".into())
        .spawn(move || {
            // SAFETY: setns(2) on an open namespace file; it changes only this thread,
            // which ends with `f`.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })?
        .join()
        .map_err(|_| io::Error::other("the namespace thread panicked"))?
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags.
#[repr(C)]
struct IfreqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Attaches to the existing tap `ifname` in `netns` with a vnet header (IFF_TAP |
/// IFF_NO_PI | IFF_VNET_HDR; with `queues` above 1, IFF_MULTI_QUEUE, once per queue) and
/// returns its files, for QEMU's `-netdev tap,fd=N` or `fds=a:b:..`.
pub(crate) fn open_tap(netns: &str, ifname: &str, queues: u16) -> io::Result<Vec<OwnedFd>> {
    validate_netns_name(netns).map_err(|e| err(io::ErrorKind::InvalidInput, e))?;
    validate_ifname(ifname).map_err(|e| err(io::ErrorKind::InvalidInput, e))?;
    let (ns, ifn) = (netns.to_owned(), ifname.to_owned());
    in_netns(netns, move || {
        let mut files = Vec::new();
        for _ in 0..queues.max(1) {
            // Without this check TUNSETIFF would quietly create a new tap with no address.
            if_index(&ifn).map_err(|_| {
                err(
                    io::ErrorKind::NotFound,
                    format!(
                        "no interface {ifn} in network namespace {ns}: make it with TapPeer \
                     (or ip -n {ns} tuntap add dev {ifn} mode tap vnet_hdr)"
                    ),
                )
            })?;
            let tun = OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/net/tun")
                .map_err(|e| err(e.kind(), format!("cannot open /dev/net/tun: {e}")))?;
            let mut req = IfreqFlags {
                name: [0; libc::IFNAMSIZ],
                flags: (libc::IFF_TAP
                    | libc::IFF_NO_PI
                    | libc::IFF_VNET_HDR
                    | if queues > 1 { libc::IFF_MULTI_QUEUE } else { 0 })
                    as libc::c_short,
                _pad: [0; 22],
            };
            req.name[..ifn.len()].copy_from_slice(ifn.as_bytes());
            // SAFETY: TUNSETIFF reads and writes a struct ifreq, which `req` is laid out as
            // (and is at least as large as).
            let rc = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &raw mut req) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                let hint = if e.raw_os_error() == Some(libc::EBUSY) {
                    " (another process, e.g. a running QEMU, has it open)"
                } else if e.raw_os_error() == Some(libc::EINVAL) {
                    " (is it a tap, not a tun, and not multi-queue?)"
                } else {
                    ""
                };
                return Err(err(
                    e.kind(),
                    format!("cannot attach to tap {ifn} in {ns}: {e}{hint}"),
                ));
            }
            files.push(OwnedFd::from(tun));
        }
        Ok(files)
    })
}

fn netns_path(netns: &str) -> PathBuf {
    Path::new("/run/netns").join(netns)
}

fn netns_exists(netns: &str) -> bool {
    netns_path(netns).exists()
}

/// Whether `name` is 1 to `max` of A-Z a-z 0-9 - _ . and not `.` or `..`: what both a
/// namespace name and an interface name may be here.
fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A namespace name `ip netns` and the NIC spec syntax both take.
pub(crate) fn validate_netns_name(name: &str) -> Result<(), String> {
    if valid_name(name, 64) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a usable namespace name (1-64 of A-Z a-z 0-9 - _ .)"
        ))
    }
}

/// An interface name Linux takes.
pub(crate) fn validate_ifname(name: &str) -> Result<(), String> {
    if valid_name(name, MAX_IFNAME) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a usable interface name (1-{MAX_IFNAME} of A-Z a-z 0-9 - _ .)"
        ))
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// iproute2's `ip` (with netns support) and the tun device must be there.
fn check_tools() -> io::Result<()> {
    match Command::new("ip")
        .args(["netns", "list"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Err(io::Error::other(format!(
                "`ip netns list` failed ({}): {}; tap peers need root and iproute2 \
                 (qemu/install-deps.sh)",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
        Err(e) => {
            return Err(err(
                e.kind(),
                format!(
                    "cannot run iproute2's `ip` ({e}): run qemu/install-deps.sh \
                     (apt-get install iproute2)"
                ),
            ))
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        return Err(err(
            io::ErrorKind::NotFound,
            "no /dev/net/tun: load the tun module (modprobe tun)",
        ));
    }
    Ok(())
}

/// Runs `ip ARGS`; the error carries ip's message.
fn ip(args: &[&str]) -> io::Result<()> {
    run_ok("ip", args)
}

/// Runs `program args` (in the host's namespace), an error with its output if it fails.
fn run_ok(program: &str, args: &[&str]) -> io::Result<()> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            err(
                e.kind(),
                format!("cannot run `{program}` ({e}): run qemu/install-deps.sh"),
            )
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// `<pid> <starttime>` of a process, the starttime (field 22 of /proc/PID/stat) telling a
/// reused pid apart.
fn process_identity(pid: &str) -> Option<String> {
    let stat = fs::read_to_string(Path::new("/proc").join(pid).join("stat")).ok()?;
    // The command name (field 2) may hold spaces; it ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let start = rest.split_whitespace().nth(19)?;
    Some(format!("{pid} {start}"))
}

fn record_owner(file: &Path) -> io::Result<()> {
    let me = process_identity(&std::process::id().to_string())
        .ok_or_else(|| io::Error::other("cannot read /proc/self/stat"))?;
    if let Some(dir) = file.parent() {
        fs::create_dir_all(dir)
            .map_err(|e| err(e.kind(), format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut text = me;
    let _ = writeln!(text);
    fs::write(file, text)
        .map_err(|e| err(e.kind(), format!("cannot write {}: {e}", file.display())))
}

/// Deletes namespaces recorded under [`OWNERS_DIR`] whose owner process is gone.
fn prune_stale() {
    let Ok(entries) = fs::read_dir(OWNERS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Ok(recorded) = fs::read_to_string(entry.path()) else {
            continue;
        };
        let recorded = recorded.trim();
        let pid = recorded.split_whitespace().next().unwrap_or_default();
        if pid.is_empty() || process_identity(pid).as_deref() == Some(recorded) {
            continue;
        }
        if validate_netns_name(&name).is_ok()
            && netns_exists(&name)
            && ip(&["netns", "del", &name]).is_err()
        {
            continue;
        }
        let _ = fs::remove_file(entry.path());
    }
}

/// `(transmitted, received)` from the summary line of iputils' or busybox's ping:
/// `5 packets transmitted, 5 received, ...` / `5 packets transmitted, 5 packets received`.
fn parse_ping_summary(text: &str) -> Option<(u32, u32)> {
    let line = text.lines().find(|l| l.contains("packets transmitted"))?;
    let mut numbers = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(str::parse::<u32>);
    let transmitted = numbers.next()?.ok()?;
    let received = numbers.next()?.ok()?;
    Some((transmitted, received))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ping_summaries() {
        assert_eq!(
            parse_ping_summary(
                "--- 10.99.0.2 ping statistics ---\n5 packets transmitted, 4 packets received, 20% packet loss\n"
            ),
            Some((5, 4))
        );
        assert_eq!(
            parse_ping_summary("5 packets transmitted, 5 received, 0% packet loss, time 803ms\n"),
            Some((5, 5))
        );
        assert_eq!(parse_ping_summary("ping: bad address"), None);
    }

    #[test]
    fn validates_names() {
        assert!(validate_netns_name("tenge-1-0").is_ok());
        for bad in ["", ".", "a/b", "a:b", "a b"] {
            assert!(validate_netns_name(bad).is_err(), "{bad}");
        }
        assert!(validate_ifname("tap0").is_ok());
        assert!(validate_ifname("a23456789012345").is_ok());
        assert!(validate_ifname("a234567890123456").is_err());
        assert!(validate_ifname("tap:0").is_err());
    }

    #[test]
    fn reads_own_identity() {
        let me = process_identity(&std::process::id().to_string()).unwrap();
        assert!(me.starts_with(&format!("{} ", std::process::id())));
        assert_eq!(process_identity("0"), None);
    }
}
