//! The BFD task: the UDP sockets around the [`Endpoint`], on a thread of its own so that a
//! busy RIB never delays a packet due every 300 ms.
//!
//! ```text
//!  speaker shell ──Command (set/remove a peer's session)──▶ BFD task ──Notice──▶ speaker shell
//!                                                            │  Endpoint (sans-IO)
//!  3784/4784 receive sockets (v4, v6) ── recvmsg + TTL ──────┤  one timer heap
//!  send sockets, one per source address, port 49152-65535 ◀──┘  TTL 255
//! ```
//!
//! Receive sockets are bound on first use (a daemon with no BFD peer binds nothing) to
//! the wildcard address of their family and port: 3784 single hop (RFC 5881), 4784
//! multihop (RFC 5883). Every session shares them; the [`Endpoint`] tells sessions apart.
//! Packets leave from one socket per source address (the peer's `source_address`, or the
//! wildcard and the route's), each bound to one port of 49152-65535 and sending with TTL
//! 255. A send that would block drops the packet: BFD is built to lose some.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::endpoint::{Endpoint, Key};
use super::packet::{Diag, State};
use super::session::SessionConfig;
use super::sys;

/// Single-hop destination port (RFC 5881 §4).
pub const SINGLE_HOP_PORT: u16 = 3784;
/// Multihop destination port (RFC 5883 §5).
pub const MULTIHOP_PORT: u16 = 4784;
/// Source ports (RFC 5881 §4).
pub const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// Datagrams read from one socket in one turn.
const READ_BATCH: usize = 256;
/// Datagrams read from one socket before detection times are judged, at most.
const DRAIN_MAX: usize = 16 << 10;
/// Receive buffer asked for each receive socket.
const RECV_BUFFER: usize = 4 << 20;
/// How long a source address whose socket could not be opened is left alone.
const RETRY_SENDER: Duration = Duration::from_secs(10);

/// One peer's BFD session, as the speaker wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// Our source address; `None` for the route's.
    pub local: Option<IpAddr>,
    /// Multihop (RFC 5883) rather than single hop.
    pub multihop: bool,
    /// Timers and authentication.
    pub config: SessionConfig,
}

/// A state change of a peer's session, for the speaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The peer.
    pub peer: IpAddr,
    /// The state before.
    pub from: State,
    /// The state now.
    pub state: State,
    /// Our diagnostic (why it went down).
    pub diag: Diag,
    /// The peer's state as last heard: AdminDown when it took the session down on
    /// purpose (RFC 5882 §3.2: then BGP stays up).
    pub remote: State,
}

enum Command {
    Set(IpAddr, Box<Spec>),
    Remove(IpAddr),
}

/// The speaker's side of the BFD task. Dropping every clone ends the task, after an
/// AdminDown to every peer that hears us.
#[derive(Clone, Debug)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Set(p, _) => write!(f, "Set({p})"),
            Self::Remove(p) => write!(f, "Remove({p})"),
        }
    }
}

impl Handle {
    /// Adds or changes the session of `peer`.
    pub fn set(&self, peer: IpAddr, spec: Spec) {
        let _ = self.tx.send(Command::Set(peer, Box::new(spec)));
    }

    /// Removes the session of `peer`.
    pub fn remove(&self, peer: IpAddr) {
        let _ = self.tx.send(Command::Remove(peer));
    }
}

/// Starts the BFD task on a thread of its own (a current-thread tokio runtime): neither a
/// burst of RIB work nor many busy session tasks on the speaker's runtime delay a packet
/// due every 300 ms. State changes go to `notices`. The thread ends once every [`Handle`]
/// is dropped (after an AdminDown to every peer that hears us). A thread that cannot be
/// started is logged: BFD sessions then stay down, which holds back only `strict` peers.
pub fn spawn(notices: mpsc::UnboundedSender<Notice>) -> Handle {
    let (tx, rx) = mpsc::unbounded_channel();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()) << 32;
    let task = Task {
        ep: Endpoint::new(seed),
        receivers: [None, None, None, None],
        bind_failed: [false; 4],
        senders: HashMap::new(),
        peers: HashMap::new(),
        notices,
        port_seed: seed,
    };
    let thread = std::thread::Builder::new()
        .name("bfd".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(task.run(rx)),
                Err(e) => error!("BFD cannot start its runtime: {e}"),
            }
        });
    if let Err(e) = thread {
        error!("BFD cannot start its thread: {e}");
    }
    Handle { tx }
}

/// A send socket (non-blocking, used without the reactor: a send that would block is a
/// lost packet), or the time its opening failed.
enum Sender {
    Open(std::net::UdpSocket),
    Failed(Instant),
}

struct Task {
    ep: Endpoint,
    /// Receive sockets by [`slot`]: IPv4/IPv6 times single hop/multihop.
    receivers: [Option<UdpSocket>; 4],
    /// The bind of a receive socket failed (logged once; tried again at the next set).
    bind_failed: [bool; 4],
    /// Send sockets by source address (`None`: the wildcard) and family.
    senders: HashMap<(Option<IpAddr>, bool), Sender>,
    /// Each peer's session key.
    peers: HashMap<IpAddr, Key>,
    notices: mpsc::UnboundedSender<Notice>,
    port_seed: u64,
}

fn slot(v6: bool, multihop: bool) -> usize {
    usize::from(v6) * 2 + usize::from(multihop)
}

async fn readable(s: &Option<UdpSocket>) -> io::Result<()> {
    match s {
        Some(s) => s.readable().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

impl Task {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            let deadline = self.ep.poll_timeout();
            tokio::select! {
                c = commands.recv() => match c {
                    Some(c) => self.command(c),
                    None => {
                        let peers: Vec<IpAddr> = self.peers.keys().copied().collect();
                        for p in peers {
                            self.command(Command::Remove(p));
                        }
                        self.flush();
                        return;
                    }
                },
                () = sleep_until(deadline) => {
                    // What arrived in time is taken before any detection time is
                    // judged: a thread that was descheduled for a while must not call a
                    // session down whose packets wait in the socket.
                    for i in 0..self.receivers.len() {
                        self.drain(i);
                    }
                    self.ep.handle_timeout(Instant::now());
                }
                r = readable(&self.receivers[0]) => self.read(0, r),
                r = readable(&self.receivers[1]) => self.read(1, r),
                r = readable(&self.receivers[2]) => self.read(2, r),
                r = readable(&self.receivers[3]) => self.read(3, r),
            }
            self.flush();
        }
    }

    fn command(&mut self, c: Command) {
        let now = Instant::now();
        match c {
            Command::Set(peer, spec) => {
                let key = Key {
                    peer,
                    multihop: spec.multihop,
                };
                if let Some(old) = self.peers.insert(peer, key)
                    && old != key
                {
                    self.ep.remove(old);
                }
                self.bind(peer.is_ipv6(), spec.multihop);
                self.ep.set(now, key, spec.local, spec.config);
            }
            Command::Remove(peer) => {
                if let Some(key) = self.peers.remove(&peer) {
                    self.ep.remove(key);
                }
            }
        }
    }

    /// Binds the receive socket of a family and kind if it is not bound yet.
    fn bind(&mut self, v6: bool, multihop: bool) {
        let i = slot(v6, multihop);
        if self.receivers[i].is_some() {
            return;
        }
        let port = if multihop {
            MULTIHOP_PORT
        } else {
            SINGLE_HOP_PORT
        };
        let addr = if v6 {
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)
        } else {
            SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port)
        };
        match receiver(addr) {
            Ok(s) => {
                info!(%addr, "BFD listening");
                self.receivers[i] = Some(s);
                self.bind_failed[i] = false;
            }
            Err(e) => {
                if !self.bind_failed[i] {
                    error!(%addr, "BFD cannot listen: {e}; its sessions stay down");
                }
                self.bind_failed[i] = true;
            }
        }
    }

    fn read(&mut self, i: usize, ready: io::Result<()>) {
        if let Err(e) = ready {
            warn!("BFD socket: {e}");
            return;
        }
        let Some(sock) = &self.receivers[i] else {
            return;
        };
        let fd = sock.as_raw_fd();
        let mut buf = [0u8; 512];
        for _ in 0..READ_BATCH {
            // Through tokio, so that the readiness it keeps is cleared on WouldBlock.
            match sock.try_io(Interest::READABLE, || sys::recv(fd, &mut buf)) {
                Ok(r) => received(&mut self.ep, i, &r, &buf),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    debug!("BFD receive: {e}");
                    return;
                }
            }
        }
    }

    /// Reads what socket `i` holds, whatever tokio's readiness says (at most
    /// [`DRAIN_MAX`] datagrams: a few seconds of thousands of sessions).
    fn drain(&mut self, i: usize) {
        let Some(fd) = self.receivers[i].as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        let mut buf = [0u8; 512];
        for _ in 0..DRAIN_MAX {
            match sys::recv(fd, &mut buf) {
                Ok(r) => received(&mut self.ep, i, &r, &buf),
                Err(_) => return,
            }
        }
    }

    /// Sends what the endpoint queued and hands its state changes on.
    fn flush(&mut self) {
        while let Some(t) = self.ep.poll_transmit() {
            let port = if t.key.multihop {
                MULTIHOP_PORT
            } else {
                SINGLE_HOP_PORT
            };
            let to = SocketAddr::new(t.key.peer, port);
            if let Some(s) = self.sender(t.local, t.key.peer.is_ipv6())
                && let Err(e) = s.send_to(&t.bytes, to)
            {
                debug!(%to, "BFD send: {e}");
            }
        }
        while let Some(e) = self.ep.poll_event() {
            info!(peer = %e.key.peer, from = e.change.from.as_str(), to = e.change.to.as_str(), diag = e.change.diag.name(), remote = e.remote.as_str(), "BFD session state");
            let _ = self.notices.send(Notice {
                peer: e.key.peer,
                from: e.change.from,
                state: e.change.to,
                diag: e.change.diag,
                remote: e.remote,
            });
        }
    }

    fn sender(&mut self, local: Option<IpAddr>, v6: bool) -> Option<&std::net::UdpSocket> {
        let now = Instant::now();
        let k = (local, v6);
        let retry = match self.senders.get(&k) {
            None => true,
            Some(Sender::Failed(at)) => now >= *at + RETRY_SENDER,
            Some(Sender::Open(_)) => false,
        };
        if retry {
            self.port_seed = self
                .port_seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1);
            let s = match sender(local, v6, self.port_seed) {
                Ok(s) => Sender::Open(s),
                Err(e) => {
                    warn!(local = %local.map_or_else(|| "any".to_owned(), |a| a.to_string()), "BFD cannot open a send socket: {e}");
                    Sender::Failed(now)
                }
            };
            self.senders.insert(k, s);
        }
        match self.senders.get(&k) {
            Some(Sender::Open(s)) => Some(s),
            _ => None,
        }
    }
}

/// Hands a datagram received on socket `i` (odd: multihop) to the endpoint.
fn received(ep: &mut Endpoint, i: usize, r: &sys::Received, buf: &[u8]) {
    if r.truncated {
        debug!(from = %r.from, "BFD: oversized datagram dropped");
        return;
    }
    let from = r.from.ip().to_canonical();
    let multihop = i % 2 == 1;
    if let Err(e) = ep.handle_datagram(Instant::now(), from, multihop, r.ttl, &buf[..r.len]) {
        debug!(%from, "BFD packet dropped: {e}");
    }
}

/// A receive socket on `addr`, with the TTL of each datagram asked for.
fn receiver(addr: SocketAddr) -> io::Result<UdpSocket> {
    let v6 = addr.is_ipv6();
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if v6 {
        s.set_only_v6(true)?;
    }
    sys::recv_ttl(&s, v6)?;
    // Room for a few seconds of a thousand sessions' packets (the kernel caps it at
    // net.core.rmem_max): a short stall of the thread loses nothing.
    let _ = s.set_recv_buffer_size(RECV_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// A send socket from `local` (or the wildcard of the family), bound to a free port of
/// [`SOURCE_PORTS`] tried from a point `seed` picks, sending with TTL 255.
fn sender(local: Option<IpAddr>, v6: bool, seed: u64) -> io::Result<std::net::UdpSocket> {
    let ip = local.unwrap_or(if v6 {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    });
    let s = Socket::new(
        Domain::for_address(SocketAddr::new(ip, 0)),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if v6 {
        s.set_only_v6(true)?;
        s.set_unicast_hops_v6(255)?;
    } else {
        s.set_ttl_v4(255)?;
    }
    s.set_nonblocking(true)?;
    let span = u64::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    let mut last = io::Error::other("no port tried");
    for i in 0..64u64 {
        let port = SOURCE_PORTS.start() + ((seed.wrapping_add(i * 7919)) % span) as u16;
        match s.bind(&SocketAddr::new(ip, port).into()) {
            Ok(()) => return Ok(s.into()),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}
