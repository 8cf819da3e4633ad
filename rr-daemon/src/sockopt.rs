//! Socket options of a BGP session that have no safe binding: TCP-MD5 signatures (RFC
//! 2385, `TCP_MD5SIG`), and the minimum TTL of GTSM (RFC 5082, `IP_MINTTL` /
//! `IPV6_MINHOPCOUNT`); plus the outgoing TTL, which socket2 sets safely.
//!
//! # Why this module has `unsafe`
//!
//! Neither `socket2` (0.6) nor `nix` has a binding for `TCP_MD5SIG` or `IP_MINTTL`, so
//! those are set with `libc::setsockopt` (a `struct tcp_md5sig` built here, or an `int`).
//! Nor for `SIOCOUTQ` (the bytes a peer has not acknowledged), read with `libc::ioctl`
//! into an `int`: the send hold timer (RFC 9687) needs to know that a slow peer still
//! takes bytes while the kernel holds more for it than wakes a writer. These foreign
//! calls, BFD's `recvmsg` ([`crate::bfd`]) and the allocator's ([`crate::memory`]) are the
//! only `unsafe` in the workspace (the project's rule: `unsafe` only with a measured reason
//! and a `SAFETY:` comment; `bgp-wire`, `bgp-fsm` and `rib` forbid it outright).
//! Everything else, the address inside the struct included, is built in safe code: the
//! socket address is written byte by byte into a `sockaddr_storage`-sized array.
//!
//! # What the kernel does with a key
//!
//! A key names a peer address (or, with `TCP_MD5SIG_EXT` and `TCP_MD5SIG_FLAG_PREFIX`, a
//! prefix: dynamic neighbour ranges). Set on a connecting socket, the kernel signs every
//! segment to that peer and drops unsigned or badly signed ones from it. Set on a listening
//! socket, it applies to connections from the peer, and accepted sockets inherit it. A key
//! of length 0 removes the key (`ENOENT` when there is none). On an IPv6 socket an IPv4
//! peer is named by its v4-mapped address (a dual-stack listener); this module does that
//! mapping itself.

#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};

use ipnet::IpNet;
use socket2::SockRef;

/// The longest key the kernel takes (`TCP_MD5SIG_MAXKEYLEN`).
pub const MAX_KEY_LEN: usize = 80;

/// `TCP_MD5SIG_FLAG_PREFIX` (linux/tcp.h): `tcpm_prefixlen` is in force.
const FLAG_PREFIX: u8 = 1;

/// `struct sockaddr_storage`: 128 bytes, aligned like `unsigned long`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Storage([u8; 128]);

/// `struct tcp_md5sig` (linux/tcp.h).
#[repr(C)]
struct TcpMd5Sig {
    tcpm_addr: Storage,
    tcpm_flags: u8,
    tcpm_prefixlen: u8,
    tcpm_keylen: u16,
    tcpm_ifindex: u32,
    tcpm_key: [u8; MAX_KEY_LEN],
}

/// The peer a key is for: one address, or a prefix.
#[derive(Clone, Copy, Debug)]
enum Target {
    Addr(IpAddr),
    Prefix(IpNet),
}

/// Sets the TCP-MD5 key for connections with `peer` on `socket` (a listener, or a socket
/// about to connect). Replaces the key the peer had on this socket, if any.
///
/// The key must be 1..=80 bytes. An IPv4 peer on an IPv6 socket is keyed by its
/// v4-mapped address; an IPv6 peer on an IPv4 socket is an error.
pub fn set_md5_key(socket: &impl AsFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    check_key(key)?;
    apply(socket.as_fd(), Target::Addr(peer), key)
}

/// [`set_md5_key`] for every address in `range` (`TCP_MD5SIG_EXT` with
/// `TCP_MD5SIG_FLAG_PREFIX`): a listener's key for a dynamic neighbour range.
pub fn set_md5_key_range(socket: &impl AsFd, range: IpNet, key: &[u8]) -> io::Result<()> {
    check_key(key)?;
    apply(socket.as_fd(), Target::Prefix(range.trunc()), key)
}

/// Removes the key for `peer` from `socket`; an error of kind `NotFound` (`ENOENT`) when
/// it has none.
pub fn remove_md5_key(socket: &impl AsFd, peer: IpAddr) -> io::Result<()> {
    apply(socket.as_fd(), Target::Addr(peer), &[])
}

/// Removes the key for `range` set by [`set_md5_key_range`] (`ENOENT` when there is none).
pub fn remove_md5_key_range(socket: &impl AsFd, range: IpNet) -> io::Result<()> {
    apply(socket.as_fd(), Target::Prefix(range.trunc()), &[])
}

fn check_key(key: &[u8]) -> io::Result<()> {
    if key.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TCP-MD5 key is empty",
        ));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TCP-MD5 key longer than {MAX_KEY_LEN} bytes"),
        ));
    }
    Ok(())
}

/// Connections a listener's accept queue holds (the kernel caps it at
/// `net.core.somaxconn`). A rack's nodes reconnect together after a reflector restart:
/// with tokio's default of 1,024, a burst of 2,000 overflows the queue and the rest wait
/// for their SYN retransmission, a second or more.
pub const LISTEN_BACKLOG: u32 = 4096;

/// A TCP listener on `addr` with [`LISTEN_BACKLOG`] and `SO_REUSEADDR` (a restarted
/// daemon binds again while its old connections linger in TIME_WAIT).
pub fn listen(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Bounds the bytes the kernel holds for `socket` that the peer has not been sent yet
/// (`TCP_NOTSENT_LOWAT`). Without it, a send buffer that grew with the congestion window
/// (megabytes) takes a whole table from a peer that stopped reading, the writes never
/// block, and the send hold timer (RFC 9687) never starts.
pub fn set_unsent_limit(socket: &impl AsFd, bytes: u32) -> io::Result<()> {
    SockRef::from(socket).set_tcp_notsent_lowat(bytes)
}

/// Bytes written to `socket` that the peer has not acknowledged yet, sent or not
/// (`SIOCOUTQ`). With what was written, it tells how much the peer has taken: a peer that
/// reads slowly moves it although the socket never becomes writable (the kernel wakes a
/// writer only once the unsent bytes fall under half of [`set_unsent_limit`]).
pub fn unacknowledged(socket: &impl AsFd) -> io::Result<u64> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) on a TCP socket writes one `int` through the pointer,
    // which points at `n`, alive for the call; the descriptor is borrowed from a live
    // socket.
    let rc = unsafe { libc::ioctl(socket.as_fd().as_raw_fd(), libc::TIOCOUTQ, &raw mut n) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Sets the TTL (IPv4) or hop limit (IPv6) of outgoing packets, and, for GTSM (RFC 5082),
/// the smallest TTL accepted on incoming ones: the kernel drops segments that crossed
/// more hops than allowed, before BGP sees them.
pub fn set_ttl(socket: &impl AsFd, outgoing: u8, min_incoming: Option<u8>) -> io::Result<()> {
    let fd = socket.as_fd();
    let sock = SockRef::from(&fd);
    let ipv6 = sock.local_addr()?.is_ipv6();
    if ipv6 {
        sock.set_unicast_hops_v6(u32::from(outgoing))?;
    } else {
        sock.set_ttl_v4(u32::from(outgoing))?;
    }
    let Some(min) = min_incoming else {
        return Ok(());
    };
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT)
    } else {
        (libc::IPPROTO_IP, libc::IP_MINTTL)
    };
    let value = libc::c_int::from(min);
    // SAFETY: `fd` is a live descriptor borrowed for the call; the option value points to
    // `value`, an initialised `c_int` that lives across the call, and the length passed is
    // its size, which is what IP_MINTTL and IPV6_MINHOPCOUNT take; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast::<libc::c_void>(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Builds the struct for `target` on a socket of the given family and sets it.
fn apply(fd: std::os::fd::BorrowedFd<'_>, target: Target, key: &[u8]) -> io::Result<()> {
    let ipv6_socket = SockRef::from(&fd).local_addr()?.is_ipv6();
    let (sig, optname) = build(target, ipv6_socket, key)?;
    // SAFETY: `fd` is a live descriptor borrowed for the call; the option value points to
    // `sig`, a fully initialised `#[repr(C)]` `struct tcp_md5sig` that lives across the
    // call, and the length passed is exactly its size, so the kernel reads only within it
    // (and copies it; it keeps no pointer).
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            optname,
            (&raw const sig).cast::<libc::c_void>(),
            size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The option value and name for `target` on an IPv4 or IPv6 socket.
fn build(target: Target, ipv6_socket: bool, key: &[u8]) -> io::Result<(TcpMd5Sig, libc::c_int)> {
    let (addr, prefix) = match target {
        Target::Addr(a) => (a, None),
        Target::Prefix(p) => (p.addr(), Some(p.prefix_len())),
    };
    let mut storage = Storage([0; 128]);
    let s = &mut storage.0;
    match (addr, ipv6_socket) {
        (IpAddr::V4(v4), false) => {
            // struct sockaddr_in: family, port (0), address.
            s[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            s[4..8].copy_from_slice(&v4.octets());
        }
        (IpAddr::V4(_), true) | (IpAddr::V6(_), true) => {
            // struct sockaddr_in6: family, port (0), flow info (0), address, scope (0).
            // The kernel reads a v4-mapped address as the IPv4 peer, and its prefix
            // length as an IPv4 one.
            let v6: Ipv6Addr = match addr {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            s[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            s[8..24].copy_from_slice(&v6.octets());
        }
        (IpAddr::V6(_), false) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an IPv6 peer's TCP-MD5 key cannot be set on an IPv4 socket",
            ));
        }
    }
    let mut sig = TcpMd5Sig {
        tcpm_addr: storage,
        tcpm_flags: 0,
        tcpm_prefixlen: 0,
        tcpm_keylen: key.len() as u16, // At most 80: checked by the callers.
        tcpm_ifindex: 0,
        tcpm_key: [0; MAX_KEY_LEN],
    };
    sig.tcpm_key[..key.len()].copy_from_slice(key);
    let optname = match prefix {
        Some(len) => {
            sig.tcpm_flags = FLAG_PREFIX;
            sig.tcpm_prefixlen = len;
            libc::TCP_MD5SIG_EXT
        }
        None => libc::TCP_MD5SIG,
    };
    Ok((sig, optname))
}

#[cfg(test)]
mod tests {
    use std::mem::{align_of, offset_of};
    use std::net::{TcpListener, TcpStream};

    use super::*;

    /// GTSM for real on loopback (TTLs are not decremented there): a listener that wants
    /// TTL 255 never sees a connection sent with TTL 64, and accepts one sent with 255.
    #[test]
    fn min_ttl_drops_packets_from_too_far() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        set_ttl(&listener, 255, Some(255)).unwrap();
        let addr = listener.local_addr().unwrap();
        let connect_with = |ttl: u32| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            s.set_ttl_v4(ttl)?;
            s.connect_timeout(&addr.into(), std::time::Duration::from_millis(700))
        };
        assert!(connect_with(64).is_err(), "a SYN with TTL 64 is dropped");
        connect_with(255).expect("TTL 255 gets through");
        let (accepted, _) = listener.accept().unwrap();
        assert_eq!(SockRef::from(&accepted).ttl_v4().unwrap(), 255);
    }

    #[test]
    fn layout_matches_linux_tcp_h() {
        assert_eq!(size_of::<Storage>(), size_of::<libc::sockaddr_storage>());
        assert_eq!(align_of::<Storage>(), align_of::<libc::sockaddr_storage>());
        assert_eq!(offset_of!(TcpMd5Sig, tcpm_addr), 0);
        assert_eq!(offset_of!(TcpMd5Sig, tcpm_flags), 128);
        assert_eq!(offset_of!(TcpMd5Sig, tcpm_prefixlen), 129);
        assert_eq!(offset_of!(TcpMd5Sig, tcpm_keylen), 130);
        assert_eq!(offset_of!(TcpMd5Sig, tcpm_ifindex), 132);
        assert_eq!(offset_of!(TcpMd5Sig, tcpm_key), 136);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(size_of::<TcpMd5Sig>(), 216);
    }

    #[test]
    fn addresses_are_laid_out_as_sockaddrs() {
        let (sig, opt) = build(Target::Addr("192.0.2.2".parse().unwrap()), false, b"k").unwrap();
        assert_eq!(opt, libc::TCP_MD5SIG);
        let s = &sig.tcpm_addr.0;
        assert_eq!(u16::from_ne_bytes([s[0], s[1]]), libc::AF_INET as u16);
        assert_eq!(&s[4..8], &[192, 0, 2, 2]);
        assert_eq!((sig.tcpm_keylen, sig.tcpm_key[0]), (1, b'k'));

        let range = Target::Prefix("192.0.2.0/24".parse().unwrap());
        let (sig, opt) = build(range, true, b"k").unwrap();
        assert_eq!(opt, libc::TCP_MD5SIG_EXT);
        assert_eq!((sig.tcpm_flags, sig.tcpm_prefixlen), (FLAG_PREFIX, 24));
        let s = &sig.tcpm_addr.0;
        assert_eq!(u16::from_ne_bytes([s[0], s[1]]), libc::AF_INET6 as u16);
        assert_eq!(
            &s[8..24],
            &"::ffff:192.0.2.0".parse::<Ipv6Addr>().unwrap().octets()
        );

        assert!(build(Target::Addr("2001:db8::1".parse().unwrap()), false, b"k").is_err());
    }

    #[test]
    fn sets_and_removes_a_key_on_a_real_socket() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        set_md5_key(&l, peer, b"s3cret").unwrap();
        set_md5_key(&l, peer, &[b'x'; MAX_KEY_LEN]).unwrap();
        remove_md5_key(&l, peer).unwrap();
        let e = remove_md5_key(&l, peer).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");

        let range: IpNet = "127.0.0.0/8".parse().unwrap();
        set_md5_key_range(&l, range, b"s3cret").unwrap();
        remove_md5_key_range(&l, range).unwrap();

        // Signed connection over loopback: both ends keyed, so the handshake completes.
        set_md5_key(&l, peer, b"s3cret").unwrap();
        let c = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        set_md5_key(&c, peer, b"s3cret").unwrap();
        c.connect(&l.local_addr().unwrap().into()).unwrap();
        let _accepted = l.accept().unwrap();
        let _ = TcpStream::from(c);
    }

    #[test]
    fn bad_keys_are_refused() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let e = set_md5_key(&l, peer, &[0; MAX_KEY_LEN + 1]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(e.to_string(), "TCP-MD5 key longer than 80 bytes");
        assert!(set_md5_key(&l, peer, b"").is_err());
        let e = set_md5_key(&l, "2001:db8::1".parse().unwrap(), b"k").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
