//! The two socket calls BFD needs that no safe API offers: asking the kernel for the TTL
//! (hop limit) of received datagrams, and reading it from `recvmsg` control data. RFC
//! 5881 §5 makes the check of TTL 255 the whole of single-hop BFD's protection from
//! remote forgery, so the value must come from the kernel, per packet.
//!
//! `unsafe` is confined to the foreign calls and the reading of what they filled in;
//! tokio's and socket2's UDP receive calls return no control messages (socket2's
//! `recvmsg` takes uninitialised buffers, which need `unsafe` to read as well).
#![allow(unsafe_code)]

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

/// Asks for the TTL (IPv4: `IP_RECVTTL`) or hop limit (IPv6: `IPV6_RECVHOPLIMIT`) of each
/// datagram received on `s`.
pub(super) fn recv_ttl(s: &impl AsRawFd, v6: bool) -> io::Result<()> {
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT)
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVTTL)
    };
    let on: libc::c_int = 1;
    // SAFETY: `on` lives across the call and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One datagram.
pub(super) struct Received {
    pub(super) len: usize,
    pub(super) from: SocketAddr,
    /// TTL or hop limit, when the kernel gave it.
    pub(super) ttl: Option<u8>,
    /// The datagram was longer than the buffer.
    pub(super) truncated: bool,
}

/// Receives one datagram on the non-blocking socket `fd` into `buf` (`WouldBlock` when
/// there is none), with its sender and TTL.
pub(super) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut addr = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Aligned for `cmsghdr`; room for a few control messages.
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data, valid when zeroed.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = addr.as_mut_ptr().cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 16]>() as _;
    // SAFETY: every pointer in `msg` points at a live buffer of the length given with it
    // (`buf` through `iov`, `addr`, `control`), all of which outlive the call.
    let n = unsafe { libc::recvmsg(fd, &raw mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ttl = None;
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR walk its control buffer
    // within `msg_controllen` and return null past the end; the data of an IP_TTL or
    // IPV6_HOPLIMIT message is one int, read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&raw const msg);
        while !c.is_null() {
            let h = &*c;
            let wanted = (h.cmsg_level == libc::IPPROTO_IP && h.cmsg_type == libc::IP_TTL)
                || (h.cmsg_level == libc::IPPROTO_IPV6 && h.cmsg_type == libc::IPV6_HOPLIMIT);
            if wanted {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                ttl = u8::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(&raw const msg, c);
        }
    }
    // SAFETY: recvmsg wrote a socket address of family `ss_family` into `addr` (zeroed
    // before, so any family reads as initialised bytes); each arm reads the struct of
    // that family, which fits in `sockaddr_storage`.
    let from = unsafe {
        let storage = addr.assume_init_ref();
        match i32::from(storage.ss_family) {
            libc::AF_INET => {
                let a = &*(&raw const *storage).cast::<libc::sockaddr_in>();
                SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                ))
            }
            libc::AF_INET6 => {
                let a = &*(&raw const *storage).cast::<libc::sockaddr_in6>();
                SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                ))
            }
            _ => return Err(io::Error::other("datagram from an unknown address family")),
        }
    };
    Ok(Received {
        len: n as usize,
        from,
        ttl,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
    })
}
