//! One peer's session over tokio: the thin shell around a [`bgp_fsm::Session`].
//!
//! ```text
//!   listener ──TcpStream──▶ inbound ─┐
//!   control  ──Command────▶ commands ┼─▶ run(): one task, one select! loop ──SessionEvent──▶ events
//!   sockets (≤ 2) ◀── bytes ─────────┘      fsm.handle / handle_timeout / poll_output
//! ```
//!
//! The task owns the machine, both possible connections and their buffers. It turns
//! socket readiness, connection results and the machine's deadline into inputs, and
//! carries out outputs. Reads are sized by the framer, so a peer that sends half a message
//! and stops costs at most one message of buffer; writes go out as the socket takes them,
//! and a socket that stops taking them arms the machine's send hold timer (RFC 9687),
//! which starts afresh whenever the socket takes bytes again.
//!
//! The UPDATEs of one read go to the owner in one event. Events for the owner wait in the
//! task's own queue until the owner's channel has room, and those with UPDATEs until the
//! owner's intake has room for their bytes ([`INTAKE`]): the task never blocks on its
//! owner, and goes on reading KEEPALIVEs and sending its own.
//! Once 64 KiB of UPDATEs wait it stops reading (what is read is bounded by that and one
//! read) and tells the machine so, which stops the hold timer; timers, KEEPALIVEs and
//! commands go on. A busy core thus never costs a session its hold timer.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bgp_fsm::{Action, Config, ConnId, Input, News, Output, Session, Timer};
use bgp_wire::{Frame, Framer, Notification};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::{Secret, Ttl};
use crate::sockopt;
use crate::speaker::why::{ConnectError, NextTry};
use crate::traffic::Traffic;

/// Where and how to reach one peer.
#[derive(Clone, Debug)]
pub struct SessionSpec {
    /// The machine's configuration.
    pub fsm: Config,
    /// The peer's address.
    pub peer: IpAddr,
    /// The peer's port (179).
    pub port: u16,
    /// Our source address for outbound connections (the peer checks it).
    pub local: Option<IpAddr>,
    /// The interface of a link-local peer: the scope of its address and of ours.
    pub interface: Option<String>,
    /// How long an outbound connection attempt may take.
    pub connect_timeout: Duration,
    /// TCP-MD5 key (RFC 2385) of outbound connections, set on the socket before it
    /// connects. Inbound ones are keyed on the listener ([`crate::speaker`]).
    pub password: Option<Secret>,
    /// TTL of our packets, and with GTSM (RFC 5082) the smallest TTL accepted, on both
    /// connections.
    pub ttl: Ttl,
    /// Start stopped (administratively down: `enabled = false`): no connection out and
    /// the peer's refused until [`Command::Start`].
    pub admin_down: bool,
}

/// What the owner of a session can ask of it.
#[derive(Clone, Debug)]
pub enum Command {
    /// ManualStart.
    Start,
    /// ManualStop, with the Cease to send (Administrative Shutdown when `None`).
    Stop(Option<Notification>),
    /// AutomaticStop with this Cease: the session restarts by itself after the idle hold
    /// time (e.g. Out of Resources for a peer that cannot keep up).
    Reset(Notification),
    /// Queue UPDATE messages for the Established connection (dropped if there is none: the
    /// RIB learns of the session going down from the events): `bytes` holds `updates`
    /// whole UPDATEs and nothing else (counted as they are, not read again).
    Send {
        /// The whole UPDATE messages, headers included.
        bytes: Bytes,
        /// How many UPDATEs `bytes` holds.
        updates: usize,
    },
    /// The RIB found an UPDATE that resets the session (RFC 7606).
    UpdateError(Notification),
    /// The RIB counted more prefixes than allowed: Cease/1 with this data (RFC 4486).
    MaxPrefixExceeded(Bytes),
    /// Ask the peer to send its routes of these families again: one ROUTE-REFRESH each
    /// (RFC 2918), for a session that negotiated it. Not counted with UPDATE bytes.
    RouteRefresh(Vec<bgp_wire::Family>),
    /// Our graceful restart is over: later OPENs carry the Forwarding State bits but no
    /// longer the Restart State bit (RFC 4724 §4.1; see [`bgp_fsm::Session::end_restart`]).
    EndRestart,
    /// PassiveTcpEstablishment changed: the session keeps its connections; only who
    /// opens the next one follows (see [`bgp_fsm::Session::set_passive`]).
    SetPassive(bool),
    /// The peer has our routes of this run: later OPENs set every Forwarding State bit
    /// (RFC 4724 §3; see [`bgp_fsm::Session::keep_forwarding`]).
    KeepForwarding,
    /// A planned restart of ours: the task ends at once, its connections closed without
    /// a NOTIFICATION, so that a peer that negotiated graceful restart keeps our routes
    /// as stale until we are back (RFC 4724 §4.2), as after a crash.
    Abandon,
}

/// What a session reports to its owner: the machine's [`News`]. The driver carries out
/// its [`Action`]s itself. An event with [`News::Update`] may carry more UPDATEs
/// ([`SessionEvent::more_updates`]): read them all with [`SessionEvent::updates`].
#[derive(Debug)]
pub struct SessionEvent {
    /// The peer's address.
    pub peer: IpAddr,
    /// The generation the owner gave the session at [`spawn`]: events of a session that
    /// was replaced (a changed peer, a dynamic neighbour turned static) still in flight
    /// are told apart from the new session's by it.
    pub generation: u64,
    /// What happened.
    pub news: News,
    /// With `Established`: our address on the connection (for next-hop-self).
    pub local: Option<SocketAddr>,
    /// With `Established`: the peer's address and port on the connection.
    pub remote: Option<SocketAddr>,
    /// With the `Failed` of our outbound attempt: how the connect failed, from the OS
    /// error (for `down_reason`).
    pub connect_error: Option<ConnectError>,
    /// When the session connects out again by itself, as of this event.
    pub next_try: Option<NextTry>,
    /// With `Established` on a link-local connection: a global IPv6 address of ours on
    /// that interface, sent before the link-local one as the next hop (RFC 2545 §3).
    pub local_global: Option<std::net::Ipv6Addr>,
    /// With `Established`: the connection's far end and the OPEN we sent on it, whole
    /// (for BMP's Peer Up).
    pub opened: Option<Box<Opened>>,
    /// With [`News::Update`]: the UPDATEs that followed it in the same read, in order.
    /// A busy session's read brings hundreds; one event for them all spares the owner
    /// a channel operation and an event per UPDATE. The owner handles each as if it
    /// had come in an event of its own.
    pub more_updates: Vec<Frame>,
    /// The event's share of the owner's intake ([`INTAKE`]), given back when the owner
    /// drops the event, after handling it.
    pub(crate) intake: Option<OwnedSemaphorePermit>,
}

impl Clone for SessionEvent {
    /// A copy without the original's share of the owner's intake.
    fn clone(&self) -> Self {
        Self {
            peer: self.peer,
            generation: self.generation,
            news: self.news.clone(),
            local: self.local,
            remote: self.remote,
            connect_error: self.connect_error.clone(),
            next_try: self.next_try,
            local_global: self.local_global,
            opened: self.opened.clone(),
            more_updates: self.more_updates.clone(),
            intake: None,
        }
    }
}

impl SessionEvent {
    /// The UPDATEs the event carries: [`News::Update`]'s, then
    /// [`SessionEvent::more_updates`].
    pub fn updates(&self) -> impl Iterator<Item = &Frame> {
        let first = match &self.news {
            News::Update(f) => Some(f),
            _ => None,
        };
        first.into_iter().chain(&self.more_updates)
    }

    /// The bytes of the UPDATEs the event carries, headers included.
    pub fn update_bytes(&self) -> usize {
        self.updates().map(|f| f.bytes.len()).sum()
    }
}

/// What `Established` adds to a [`SessionEvent`] for monitoring (BMP Peer Up).
#[derive(Clone, Debug)]
pub struct Opened {
    /// The peer's address and port on the connection.
    pub remote: SocketAddr,
    /// The OPEN message we sent, header included.
    pub sent_open: Bytes,
}

/// Unwritten UPDATE bytes per session below which its owner hands it more: a session
/// whose queue drains under this mark wakes the owner ([`Writers`]).
pub const WINDOW: usize = 4 << 20;

/// UPDATE bytes the events on their way to the owner may carry, all sessions together
/// (the frames' bytes: their handles in the event add 40 bytes each):
/// what the owner has yet to handle stays this small however fast its peers send (a
/// million-prefix table arrives at tens of MB/s, faster than it is handled). A session
/// whose event finds no room keeps it, and stops reading past 64 KiB of such. A quarter
/// of this kept the owner waiting for its sessions between turns: a million-prefix table
/// took 15% longer.
pub const INTAKE: usize = 1 << 20;

/// How long after a session came up a new connection from its peer is taken as the
/// peer's own attempt that crossed ours (a collision, RFC 4271 §6.8: refused), not as a
/// restart (RFC 4724 §4.2: the old session is dead). Both sides connecting at once after
/// a peer's restart, each treating the other's connection as a restart, replaced each
/// other's sessions back and forth for seconds with BIRD 1.6.
const COLLISION_WINDOW: Duration = Duration::from_secs(1);

/// UPDATE bytes per event at most: one read can bring more, in several events.
const EVENT_BYTES: usize = 64 << 10;

/// What the sessions share with their owner: room in their writers, and room in the
/// owner's intake.
///
/// The owner stops encoding for a group whose members all hold [`WINDOW`] bytes or more,
/// and is woken when one of them drains below it, so output never waits for an
/// unrelated event. UPDATEs reach the owner within [`INTAKE`].
#[derive(Debug)]
pub struct Writers {
    room: tokio::sync::Notify,
    intake: Arc<Semaphore>,
}

impl Default for Writers {
    fn default() -> Self {
        Self {
            room: tokio::sync::Notify::new(),
            intake: Arc::new(Semaphore::new(INTAKE)),
        }
    }
}

impl Writers {
    /// Waits until some writer got room since the last call (a wake that came while
    /// nobody waited is kept).
    pub async fn room(&self) {
        self.room.notified().await;
    }
}

/// The owner's side of a running session.
#[derive(Debug)]
pub struct SessionHandle {
    /// Commands, unbounded in count because UPDATE bytes are accounted in `queued`.
    pub commands: mpsc::UnboundedSender<Command>,
    /// Connections the listener accepted from the peer's address.
    pub inbound: mpsc::Sender<TcpStream>,
    /// Bytes handed over with [`Command::Send`] and not yet written: the owner stops a
    /// peer that cannot keep up instead of letting this grow without bound.
    pub queued: Arc<AtomicUsize>,
    /// The task.
    pub task: JoinHandle<()>,
}

/// Starts a session task; it begins connecting (or listening, if passive) at once. Its
/// events carry `generation`.
pub fn spawn(
    spec: SessionSpec,
    generation: u64,
    events: mpsc::Sender<SessionEvent>,
    writers: Arc<Writers>,
) -> SessionHandle {
    spawn_counted(spec, generation, events, writers, Arc::default())
}

/// [`spawn`], counting the messages read and queued into `traffic` (which the owner keeps
/// across the peer's sessions).
pub fn spawn_counted(
    spec: SessionSpec,
    generation: u64,
    events: mpsc::Sender<SessionEvent>,
    writers: Arc<Writers>,
    traffic: Arc<Traffic>,
) -> SessionHandle {
    let (commands, cmd_rx) = mpsc::unbounded_channel();
    let (inbound, in_rx) = mpsc::channel(4);
    let queued = Arc::new(AtomicUsize::new(0));
    let out = Outbox {
        events,
        generation,
        queued: queued.clone(),
        writers,
        backlog: VecDeque::new(),
        backlog_bytes: 0,
        traffic,
        updates: None,
        updates_bytes: 0,
        intake_wait: None,
        intake_held: None,
    };
    let task = tokio::spawn(run(spec, in_rx, cmd_rx, out));
    SessionHandle {
        commands,
        inbound,
        queued,
        task,
    }
}

/// Queued messages handed to the kernel in one vectored write, at most.
const WRITE_BATCH: usize = 64;

/// Commands taken in one go before the queued messages are written, at most.
const COMMAND_BATCH: usize = 1024;

/// Unsent bytes the kernel may hold per connection: output beyond it waits in the
/// session's own queue, where it is counted and where a stalled peer blocks the writes
/// and starts the send hold timer.
const UNSENT_LIMIT: u32 = 128 << 10;

/// One TCP connection and its buffers.
struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    /// Messages to write, in order, each marked whether it counts in the owner's `queued`
    /// (UPDATEs from the RIB, which share their buffers with the other members of their
    /// update group until written) or not (the machine's own messages).
    wq: VecDeque<(Bytes, bool)>,
    framer: Framer,
    /// The socket refused bytes last time: the machine's send hold timer runs.
    blocked: bool,
    /// The front of `wq` is partly written: it must go out whole, or the stream breaks.
    partial: bool,
    /// Bytes handed to the kernel since the connection opened.
    written: u64,
    /// Of those, what the peer had acknowledged at the last look ([`Driver::probe`]).
    acked: u64,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        if let Err(e) = sockopt::set_unsent_limit(&stream, UNSENT_LIMIT) {
            warn!("cannot bound the unsent bytes of a connection: {e}");
        }
        Self {
            stream,
            // Allocated by the first read, and given up whenever every byte read was
            // framed (see `Driver::on_readable`).
            rbuf: BytesMut::new(),
            wq: VecDeque::new(),
            framer: Framer::new(),
            blocked: false,
            partial: false,
            written: 0,
            acked: 0,
        }
    }

    /// Whether the peer acknowledged bytes since the last look.
    fn acked_more(&mut self) -> bool {
        let Ok(unacked) = sockopt::unacknowledged(&self.stream) else {
            return false;
        };
        let acked = self.written.saturating_sub(unacked);
        let more = acked > self.acked;
        self.acked = self.acked.max(acked);
        more
    }
}

/// How often a blocked connection is looked at for bytes the peer took meanwhile: a
/// fraction of the shortest send hold time (1 s), so that a slow peer's progress always
/// restarts the timer in time.
const PROBE: Duration = Duration::from_millis(250);

type Connecting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// Opens the outbound connection from `local` (if set) to `peer` (on `interface` for a
/// link-local peer), signed with `password` (TCP-MD5) if set.
async fn connect(
    peer: SocketAddr,
    local: Option<IpAddr>,
    interface: Option<String>,
    timeout: Duration,
    password: Option<Secret>,
    ttl: Ttl,
) -> io::Result<TcpStream> {
    let socket = if peer.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(key) = &password
        && let Err(e) = sockopt::set_md5_key(&socket, peer.ip(), key.expose().as_bytes())
    {
        let e = io::Error::new(e.kind(), format!("TCP-MD5 for {}: {e}", peer.ip()));
        error!("{e}");
        return Err(e);
    }
    // A link-local peer is reached through its interface: the scope of both addresses.
    let scope = match &interface {
        Some(name) => Some(link::ifindex(name)?),
        None => None,
    };
    let peer = link::scoped(peer, scope);
    if let Some(l) = local {
        // The peer checks the source address: bind it before connecting.
        socket.bind(link::scoped(SocketAddr::new(l, 0), scope))?;
    }
    sockopt::set_ttl(&socket, ttl.outgoing(), ttl.min_incoming())?;
    match tokio::time::timeout(timeout, socket.connect(peer)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    }
}

/// Waits until `c` is readable, or forever when there is no connection.
async fn readable(c: &Option<Conn>) -> io::Result<()> {
    match c {
        Some(c) => c.stream.readable().await,
        None => std::future::pending().await,
    }
}

/// Waits until `c` has bytes to write and can take them.
async fn writable(c: &Option<Conn>) -> io::Result<()> {
    match c {
        Some(c) if !c.wq.is_empty() => c.stream.writable().await,
        _ => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// What a session shares with its owner.
struct Outbox {
    events: mpsc::Sender<SessionEvent>,
    generation: u64,
    /// UPDATE bytes accepted and not yet written.
    queued: Arc<AtomicUsize>,
    writers: Arc<Writers>,
    /// Events the owner had no room for yet, in order.
    backlog: VecDeque<SessionEvent>,
    /// The first of them's share of the owner's intake: being waited for (kept across
    /// turns of the task's loop, so that the wait keeps its place in the queue), or
    /// held while the channel has no room.
    intake_wait: Option<IntakeWait>,
    intake_held: Option<OwnedSemaphorePermit>,
    /// Bytes of the UPDATEs among them: past [`BACKLOG_PAUSE`] the session stops reading.
    backlog_bytes: usize,
    /// The peer's message counters, shared with the owner.
    traffic: Arc<Traffic>,
    /// UPDATEs the machine passed on and not yet handed over, the first and the rest,
    /// and their bytes: they go in one event once the machine's news of the moment are
    /// out, before any other news, or at [`EVENT_BYTES`] (see
    /// [`SessionEvent::more_updates`]).
    updates: Option<(Frame, Vec<Frame>)>,
    updates_bytes: usize,
}

/// UPDATE bytes waiting for the owner past which the session stops reading (until they
/// fall to [`BACKLOG_RESUME`]): below it KEEPALIVEs and everything else are still read
/// while the owner is busy, and the memory a session holds for a busy owner is this and
/// one read.
const BACKLOG_PAUSE: usize = 64 << 10;

/// See [`BACKLOG_PAUSE`].
const BACKLOG_RESUME: usize = 16 << 10;

impl Outbox {
    /// Hands an event to the owner, or queues it behind those already waiting. A gone
    /// owner means nobody listens; the session still shuts down cleanly.
    fn emit(
        &mut self,
        peer: IpAddr,
        news: News,
        (local, remote, opened): (Option<SocketAddr>, Option<SocketAddr>, Option<Box<Opened>>),
        why: Why,
        more_updates: Vec<Frame>,
    ) {
        let local_global = match (&news, local) {
            (News::Established { .. }, Some(SocketAddr::V6(l)))
                if l.ip().is_unicast_link_local() =>
            {
                link::global_address(l.scope_id())
            }
            _ => None,
        };
        let generation = self.generation;
        let e = SessionEvent {
            peer,
            generation,
            news,
            local,
            remote,
            connect_error: why.0,
            next_try: why.1,
            local_global,
            opened,
            more_updates,
            intake: None,
        };
        let n = e.update_bytes();
        if self.backlog.is_empty() {
            // The usual case, straight to the owner: the backlog stays without room
            // (see `release`).
            if let Some(mut e) = self.try_hand(e) {
                self.backlog_bytes += n;
                // The first waiting: its share, if it got one, is kept for it.
                self.intake_held = e.intake.take();
                self.backlog.push_back(e);
            }
            return;
        }
        self.backlog_bytes += n;
        self.backlog.push_back(e);
        self.deliver();
    }

    /// Hands `e` to the owner if its channel and its intake have room for it now; gives
    /// it back if not. An event the closed channel refuses is dropped: nobody listens.
    fn try_hand(&self, mut e: SessionEvent) -> Option<SessionEvent> {
        let n = e.update_bytes();
        if n > 0 && e.intake.is_none() {
            // At most EVENT_BYTES, far below INTAKE: never more than the semaphore has.
            let intake = self.writers.intake.clone();
            let Ok(permit) = intake.try_acquire_many_owned(n as u32) else {
                return Some(e);
            };
            e.intake = Some(permit);
        }
        match self.events.try_send(e) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => None,
            // The caller keeps or drops the share.
            Err(mpsc::error::TrySendError::Full(e)) => Some(e),
        }
    }

    /// Hands the owner every waiting event there is room for now.
    fn deliver(&mut self) {
        // Bounded: each round takes one event from a finite queue.
        while let Some(mut e) = self.backlog.pop_front() {
            if self.events.is_closed() {
                self.drop_backlog();
                return;
            }
            let n = e.update_bytes();
            // The share the first event waited for, if it has it.
            e.intake = self.intake_held.take();
            match self.try_hand(e) {
                None => {
                    self.backlog_bytes -= n;
                    self.intake_wait = None;
                }
                Some(mut e) => {
                    self.intake_held = e.intake.take();
                    self.backlog.push_front(e);
                    return;
                }
            }
        }
        release(&mut self.backlog);
    }

    /// Forgets the waiting events (the owner is gone or going).
    fn drop_backlog(&mut self) {
        self.intake_wait = None;
        self.intake_held = None;
        self.backlog.clear();
        release(&mut self.backlog);
        self.backlog_bytes = 0;
    }

    /// Hands the owner the first waiting event with `room`, then what else fits.
    fn deliver_with(&mut self, room: Option<Room>) {
        match (room, self.backlog.pop_front()) {
            (Some(slot), Some(mut e)) => {
                self.backlog_bytes -= e.update_bytes();
                e.intake = self.intake_held.take();
                self.intake_wait = None;
                slot.send(e);
                self.deliver();
            }
            // The owner is gone: nobody will take them.
            (None, _) => self.drop_backlog(),
            (Some(_), None) => {}
        }
    }

    /// UPDATE bytes that left the queue (written or dropped); wakes the owner when the
    /// queue falls below [`WINDOW`].
    fn unqueue(&self, n: usize) {
        if n > 0 {
            let before = self.queued.fetch_sub(n, Ordering::Relaxed);
            if before >= WINDOW && before - n < WINDOW {
                self.writers.room.notify_one();
            }
        }
    }
}

/// Gives up the room of an emptied queue. A session's queues fill in bursts (the
/// events of a connect storm waiting for a busy owner, a catch-up's UPDATEs waiting for
/// the socket) and are empty in between; a queue keeps the room of its longest burst
/// otherwise, for as long as the session lives: with thousands of sessions, a few KiB each
/// (measured: 2,000 clients connecting at once, about 1 KiB per session in the event
/// backlog alone).
fn release<T>(q: &mut VecDeque<T>) {
    if q.is_empty() && q.capacity() > 0 {
        *q = VecDeque::new();
    }
}

/// Room with the owner for an event: a place in its channel (the event's share of the
/// owner's intake, if it needs one, is then in [`Outbox::intake_held`]).
type Room = mpsc::OwnedPermit<SessionEvent>;

/// A wait for a share of the owner's intake.
type IntakeWait = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// Room with the owner for the first waiting event; never while none waits. `None` when
/// the owner is gone. Its share of the intake is waited for first, and that wait stays
/// in the `Outbox` when the task's loop turns for something else: it keeps its place in
/// the intake's queue (a wait made anew at each turn would go to the back each time,
/// and a session woken often could wait for ever).
async fn owner_room(out: &mut Outbox) -> Option<Room> {
    let Some(first) = out.backlog.front() else {
        return std::future::pending().await;
    };
    let n = first.update_bytes();
    if n > 0 && out.intake_held.is_none() {
        let intake = out.writers.intake.clone();
        let wait = out
            .intake_wait
            // At most EVENT_BYTES, which the semaphore always gets back to.
            .get_or_insert_with(|| Box::pin(intake.acquire_many_owned(n as u32)));
        // Never closed.
        let share = wait.await.ok()?;
        out.intake_wait = None;
        out.intake_held = Some(share);
    }
    out.events.clone().reserve_owned().await.ok()
}

/// What a session adds to an event for `down_reason`.
type Why = (Option<ConnectError>, Option<NextTry>);

/// What the session task keeps of its [`SessionSpec`]: the machine keeps the rest, its
/// configuration, one copy per session rather than two (a few hundred bytes each, its
/// OPEN's capabilities among them).
struct Reach {
    peer: IpAddr,
    port: u16,
    local: Option<IpAddr>,
    interface: Option<String>,
    connect_timeout: Duration,
    password: Option<Secret>,
    ttl: Ttl,
}

/// The session task.
struct Driver {
    spec: Reach,
    fsm: Session,
    conns: [Option<Conn>; 2],
    connecting: Option<Connecting>,
    out: Outbox,
    /// Reading is paused because events wait for the owner (see [`Driver::pace`]).
    receive_paused: bool,
    /// While a connection's writes are blocked: when to look whether its peer took bytes
    /// meanwhile ([`Driver::probe`]).
    next_probe: Option<Instant>,
    /// Connections being closed, each writing what it had left (its NOTIFICATION) for at
    /// most [`CLOSE_FLUSH`]; the task waits for them before it ends.
    closing: Vec<JoinHandle<()>>,
    /// How the last outbound attempt failed, until the machine's `Failed` reports it.
    connect_error: Option<ConnectError>,
    /// When the outbound attempt in flight started.
    connect_started: Option<Instant>,
    /// The machine dropped an attempt that had no answer for a while (its connect retry
    /// timer ran out first): reported as a timed-out connect, which the machine does not.
    abandoned: Option<Duration>,
    /// Why the last connection ended, for the state change that follows it in the log.
    last_reason: Option<String>,
}

/// An outbound attempt dropped by the machine after this long without an answer counts
/// as a timed-out connect (a shorter one was cut short by something else: a collision).
const ABANDONED_AFTER: Duration = Duration::from_secs(1);

/// How long a closed connection may take to write its last bytes.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);

/// Runs one session until the command channel closes. Starts it at once.
async fn run(
    spec: SessionSpec,
    mut inbound: mpsc::Receiver<TcpStream>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    out: Outbox,
) {
    let SessionSpec {
        fsm,
        peer,
        port,
        local,
        interface,
        connect_timeout,
        password,
        ttl,
        admin_down,
    } = spec;
    let mut d = Driver {
        fsm: Session::new(fsm),
        spec: Reach {
            peer,
            port,
            local,
            interface,
            connect_timeout,
            password,
            ttl,
        },
        conns: [None, None],
        connecting: None,
        out,
        receive_paused: false,
        next_probe: None,
        closing: Vec::new(),
        connect_error: None,
        connect_started: None,
        abandoned: None,
        last_reason: None,
    };
    if !admin_down {
        d.fsm
            .handle(Instant::now(), Input::Start { automatic: false });
    }
    loop {
        d.carry_out();
        d.pace();
        let deadline = d.fsm.poll_timeout();
        let reading = !d.receive_paused;
        tokio::select! {
            () = sleep_until(deadline) => d.fsm.handle_timeout(Instant::now()),
            cmd = commands.recv() => match cmd {
                // Dropping the driver closes the sockets: no NOTIFICATION goes out.
                Some(Command::Abandon) => return,
                Some(cmd) => {
                    // Whatever else is waiting goes out with it, in one vectored write.
                    d.command(cmd);
                    for _ in 0..COMMAND_BATCH {
                        match commands.try_recv() {
                            // An abandon behind other commands: gone just the same, no
                            // NOTIFICATION (the closed channel would send a Cease).
                            Ok(Command::Abandon) => return,
                            Ok(cmd) => d.command(cmd),
                            Err(_) => break,
                        }
                    }
                    d.flush_all();
                }
                None => {
                    d.fsm.handle(Instant::now(), Input::Stop { automatic: false, notification: None });
                    d.carry_out();
                    // The owner is going: what its channel cannot take now is dropped,
                    // never waited for.
                    d.out.deliver();
                    d.out.drop_backlog();
                    for t in d.closing.drain(..) {
                        let _ = t.await;
                    }
                    return;
                }
            },
            permit = owner_room(&mut d.out) => d.out.deliver_with(permit),
            () = sleep_until(d.next_probe) => d.probe(),
            Some(stream) = inbound.recv() => d.accept(stream),
            res = connected(&mut d.connecting) => {
                d.connecting = None;
                d.connect_started = None;
                match res {
                    Ok(stream) => {
                        d.conns[ConnId::Outbound.index()] = Some(Conn::new(stream));
                        d.fsm.handle(Instant::now(), Input::Connected);
                    }
                    Err(e) => {
                        d.connect_error = Some(ConnectError::classify(&e));
                        d.fsm.handle(Instant::now(), Input::ConnectionFailed { conn: ConnId::Outbound, reason: e.to_string() });
                    }
                }
            }
            r = readable(&d.conns[0]), if reading => d.on_readable(ConnId::Outbound, r),
            r = readable(&d.conns[1]), if reading => d.on_readable(ConnId::Inbound, r),
            r = writable(&d.conns[0]) => d.on_writable(ConnId::Outbound, r),
            r = writable(&d.conns[1]) => d.on_writable(ConnId::Inbound, r),
        }
    }
}

/// The outcome of the outbound connection attempt, or never when there is none.
async fn connected(c: &mut Option<Connecting>) -> io::Result<TcpStream> {
    match c {
        Some(f) => f.as_mut().await,
        None => std::future::pending().await,
    }
}

impl Driver {
    /// Looks whether the peers of blocked connections acknowledged bytes since the last
    /// look: a slow reader whose socket never becomes writable again (the kernel holds
    /// more unsent bytes for it than wakes a writer) is moving all the same, and its send
    /// hold timer starts afresh (RFC 9687).
    fn probe(&mut self) {
        let now = Instant::now();
        self.next_probe = None;
        for c in [ConnId::Outbound, ConnId::Inbound] {
            let Some(conn) = self.conns[c.index()].as_mut() else {
                continue;
            };
            if !conn.blocked {
                continue;
            }
            if conn.acked_more() {
                self.fsm.handle(now, Input::SendProgress(c));
                self.fsm.handle(now, Input::SendBlocked(c));
            }
            self.next_probe = Some(now + PROBE);
        }
    }

    /// Stops reading while more than [`BACKLOG_PAUSE`] UPDATE bytes wait for the owner
    /// and reads again once they are down to [`BACKLOG_RESUME`], telling the machine
    /// either way (its hold timer does not run meanwhile).
    fn pace(&mut self) {
        let bytes = self.out.backlog_bytes;
        let behind = if self.receive_paused {
            bytes > BACKLOG_RESUME
        } else {
            bytes >= BACKLOG_PAUSE
        };
        if behind != self.receive_paused {
            self.receive_paused = behind;
            let input = if behind {
                debug!(peer = %self.spec.peer, "the owner is behind: reading paused");
                Input::ReceivePaused
            } else {
                Input::ReceiveResumed
            };
            self.fsm.handle(Instant::now(), input);
            self.carry_out();
        }
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Start => self.fsm.handle(now, Input::Start { automatic: false }),
            Command::Stop(n) => self.fsm.handle(
                now,
                Input::Stop {
                    automatic: false,
                    notification: n,
                },
            ),
            Command::Reset(n) => {
                // The NOTIFICATION goes out next, not behind the backlog that is the
                // reason for the reset.
                if let Some((c, _)) = self.fsm.established() {
                    self.drop_backlog(c);
                }
                self.fsm.handle(
                    now,
                    Input::Stop {
                        automatic: true,
                        notification: Some(n),
                    },
                );
            }
            Command::Send { bytes, updates } => match self.fsm.established() {
                Some((c, _)) => {
                    // Written by the caller once the batch of commands is in.
                    if let Some(conn) = self.conns[c.index()].as_mut() {
                        self.out.traffic.queued_updates(updates);
                        conn.wq.push_back((bytes, true));
                    }
                }
                None => self.out.unqueue(bytes.len()),
            },
            Command::UpdateError(n) => self.fsm.handle(now, Input::UpdateError(n)),
            Command::EndRestart => self.fsm.end_restart(),
            Command::KeepForwarding => self.fsm.keep_forwarding(),
            Command::SetPassive(passive) => self.fsm.set_passive(now, passive),
            // Handled by the task's loop before it gets here.
            Command::Abandon => {}
            Command::MaxPrefixExceeded(data) => {
                self.fsm.handle(now, Input::MaxPrefixExceeded { data });
            }
            Command::RouteRefresh(families) => {
                if let Some((c, _)) = self.fsm.established()
                    && let Some(conn) = self.conns[c.index()].as_mut()
                {
                    let mut buf = BytesMut::new();
                    for f in families {
                        bgp_wire::route_refresh::RouteRefresh {
                            afi: f.afi(),
                            subtype: bgp_wire::route_refresh::RefreshSubtype::NORMAL,
                            safi: f.safi(),
                        }
                        .encode(&mut buf);
                    }
                    self.out.traffic.queued(&buf);
                    conn.wq.push_back((buf.freeze(), false));
                    self.flush(c);
                }
            }
        }
    }

    fn accept(&mut self, stream: TcpStream) {
        self.read_pending();
        let now = Instant::now();
        if let Some((c, negotiated)) = self.fsm.established()
            && negotiated.peer_graceful_restart.is_some()
            && self
                .fsm
                .established_since()
                .is_some_and(|t| now.saturating_duration_since(t) >= COLLISION_WINDOW)
        {
            // RFC 4724 §4.2: a graceful-restart peer that connects again has restarted;
            // its old connection is dead even if no reset reached us. That session goes
            // down gracefully (its routes stay as stale) and the new connection is taken.
            // Not within COLLISION_WINDOW of the session coming up: that connection is
            // the peer's own attempt, crossing ours, and is refused (RFC 4271 §6.8).
            info!(peer = %self.spec.peer, "peer connected again: its old session is gone (graceful restart)");
            self.failed(c, "the peer connected again (graceful restart)".into());
            self.carry_out();
        }
        if self.fsm.has_conn(ConnId::Inbound) {
            // One inbound connection at a time; a second is refused at the door.
            debug!(peer = %self.spec.peer, "refusing a second inbound connection");
            return;
        }
        // The listener serves every peer: this peer's TTL rules go on its own connection.
        let ttl = self.spec.ttl;
        if let Err(e) = sockopt::set_ttl(&stream, ttl.outgoing(), ttl.min_incoming()) {
            warn!(peer = %self.spec.peer, "refusing connection: cannot set its TTL: {e}");
            return;
        }
        self.conns[1] = Some(Conn::new(stream));
        self.fsm.handle(now, Input::Accepted);
        if !self.fsm.has_conn(ConnId::Inbound) {
            // The machine refused it; say why, since the peer only sees it closed.
            let why = if self.fsm.established().is_some() {
                "a session is already established"
            } else {
                "the peer is administratively down"
            };
            info!(peer = %self.spec.peer, "refusing connection: {why}");
        }
    }

    /// Reads what the Established connection already holds before a new connection from
    /// the peer is judged. A peer that ends its session (a Cease) and connects again at
    /// once has its NOTIFICATION and FIN in our socket before its SYN reaches us, but the
    /// new connection comes through the listener and the core on another path, and can
    /// be handed over first: judged against a session that looks Established, it would be
    /// refused (RFC 4271 §6.8), and the peer would wait for its next attempt. The reads
    /// ask the socket itself: the runtime may not have seen it readable yet. Bounded: a
    /// few reads, none while reading is paused for the owner.
    fn read_pending(&mut self) {
        for _ in 0..4 {
            let Some((c, _)) = self.fsm.established() else {
                return;
            };
            if self.receive_paused || !self.read(c, true) {
                return;
            }
            self.carry_out();
        }
    }

    fn on_readable(&mut self, c: ConnId, ready: io::Result<()>) {
        if let Err(e) = ready {
            return self.failed(c, e.to_string());
        }
        self.read(c, false);
    }

    /// One read from `c` and the messages it completes; whether the socket had anything
    /// (bytes, its end or an error). `now_or_never`: read from the socket itself, not
    /// only once the runtime has seen it readable (its view may lag behind the kernel's:
    /// see [`Driver::read_pending`]).
    fn read(&mut self, c: ConnId, now_or_never: bool) -> bool {
        let now = Instant::now();
        let Some(conn) = self.conns[c.index()].as_mut() else {
            return false;
        };
        let want = conn.framer.wanted(&conn.rbuf).max(4096);
        conn.rbuf.reserve(want);
        let r = if now_or_never {
            let mut chunk = [0u8; 4096];
            let r = io::Read::read(&mut &*socket2::SockRef::from(&conn.stream), &mut chunk);
            if let Ok(n) = r {
                conn.rbuf.extend_from_slice(&chunk[..n]);
            }
            r
        } else {
            conn.stream.try_read_buf(&mut conn.rbuf)
        };
        match r {
            Ok(0) => {
                self.failed(c, "connection closed by peer".into());
                return true;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Nothing after all: the socket stays readable to tokio until a read finds
                // it empty, so every burst a session reads ends here, the buffer just
                // allocated for nothing. Kept, it would hold a read buffer per idle
                // session (measured: 2,000 clients, 4 KiB each, 7.8 MiB of the peak).
                if conn.rbuf.is_empty() {
                    conn.rbuf = BytesMut::new();
                }
                return false;
            }
            Err(e) => {
                self.failed(c, e.to_string());
                return true;
            }
        }
        // Bounded: each frame consumes bytes from a finite buffer.
        loop {
            let Some(conn) = self.conns[c.index()].as_mut() else {
                return true;
            };
            match conn.framer.next_frame(&mut conn.rbuf) {
                Ok(Some(frame)) => {
                    self.out.traffic.received(&frame.bytes);
                    self.fsm.handle(now, Input::Message { conn: c, frame });
                    self.sync_framer(c);
                }
                Ok(None) => {
                    // An idle session holds no read buffer: thousands of clients that send
                    // a KEEPALIVE now and then would otherwise keep 4 KiB each. The frames
                    // taken from it keep what they use until they are dropped.
                    if conn.rbuf.is_empty() {
                        conn.rbuf = BytesMut::new();
                    }
                    return true;
                }
                Err(error) => {
                    self.fsm.handle(now, Input::HeaderError { conn: c, error });
                    return true;
                }
            }
        }
    }

    /// Once the session is Established on `c`, the negotiated message size (RFC 8654)
    /// applies from the very next frame: the peer's first large UPDATE may sit in the same
    /// read as the KEEPALIVE that completed the handshake.
    fn sync_framer(&mut self, c: ConnId) {
        if let Some((e, negotiated)) = self.fsm.established()
            && e == c
            && let Some(conn) = self.conns[c.index()].as_mut()
        {
            conn.framer
                .set_extended_message(negotiated.ctx.extended_message);
        }
    }

    fn failed(&mut self, c: ConnId, reason: String) {
        self.forget(c);
        self.fsm
            .handle(Instant::now(), Input::ConnectionFailed { conn: c, reason });
    }

    /// Drops connection `c` and what it had left to write.
    fn forget(&mut self, c: ConnId) -> Option<Conn> {
        let conn = self.conns[c.index()].take()?;
        let left: usize = conn
            .wq
            .iter()
            .filter(|(_, q)| *q)
            .map(|(b, _)| b.len())
            .sum();
        self.out.unqueue(left);
        Some(conn)
    }

    /// Drops the UPDATEs queued on `c` but a partly written one, which must end whole.
    fn drop_backlog(&mut self, c: ConnId) {
        let Some(conn) = self.conns[c.index()].as_mut() else {
            return;
        };
        let keep = usize::from(conn.partial);
        let mut dropped = 0;
        let mut i = 0;
        conn.wq.retain(|(b, counted)| {
            i += 1;
            let drop = *counted && i > keep;
            if drop {
                dropped += b.len();
            }
            !drop
        });
        self.out.unqueue(dropped);
    }

    fn on_writable(&mut self, c: ConnId, ready: io::Result<()>) {
        if let Err(e) = ready {
            return self.failed(c, e.to_string());
        }
        self.flush(c);
    }

    /// Writes what each connection has queued.
    fn flush_all(&mut self) {
        for c in [ConnId::Outbound, ConnId::Inbound] {
            if self.conns[c.index()]
                .as_ref()
                .is_some_and(|x| !x.wq.is_empty())
            {
                self.flush(c);
            }
        }
    }

    /// Writes what the socket takes now; tells the machine whether output is stuck.
    fn flush(&mut self, c: ConnId) {
        let Some(conn) = self.conns[c.index()].as_mut() else {
            return;
        };
        let mut written = 0;
        let mut moved = 0;
        let mut error = None;
        // Bounded: each round writes bytes or stops.
        while !conn.wq.is_empty() {
            // One system call for many queued messages: a reflector sends thousands of
            // small UPDATEs to each of thousands of peers.
            let slices: Vec<io::IoSlice<'_>> = conn
                .wq
                .iter()
                .take(WRITE_BATCH)
                .map(|(b, _)| io::IoSlice::new(b))
                .collect();
            match conn.stream.try_write_vectored(&slices) {
                Ok(0) => break,
                Ok(mut n) => {
                    moved += n;
                    conn.written += n as u64;
                    while n > 0 {
                        let Some((front, counted)) = conn.wq.front_mut() else {
                            break;
                        };
                        let k = n.min(front.len());
                        if *counted {
                            written += k;
                        }
                        front.advance(k);
                        n -= k;
                        conn.partial = !front.is_empty();
                        if front.is_empty() {
                            conn.wq.pop_front();
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let blocked = !conn.wq.is_empty();
        if !blocked {
            release(&mut conn.wq);
        }
        let was = std::mem::replace(&mut conn.blocked, blocked);
        self.out.unqueue(written);
        if let Some(e) = error {
            return self.failed(c, e.to_string());
        }
        let now = Instant::now();
        // RFC 9687: the send hold timer measures how long the peer takes no bytes at all.
        // A slow peer that took some is moving: its timer starts afresh.
        if moved > 0 && was {
            self.fsm.handle(now, Input::SendProgress(c));
        }
        if blocked && (moved > 0 || !was) {
            self.fsm.handle(now, Input::SendBlocked(c));
        }
        if blocked && self.next_probe.is_none() {
            self.next_probe = Some(now + PROBE);
        }
    }

    /// Carries out every pending output of the machine, actions and news in the order
    /// they came (see [`Output`]).
    fn carry_out(&mut self) {
        // Bounded: outputs come from a finite queue that only grows through handle().
        for _ in 0..100_000 {
            match self.fsm.poll_output() {
                Some(Output::Action(a)) => self.act(a),
                Some(Output::News(n)) => self.report(n),
                None => break,
            }
        }
        if let Some(waited) = self.abandoned.take() {
            self.connect_error = Some(ConnectError::TimedOut);
            let reason = format!("no answer to our SYN in {} s", waited.as_secs_f32().round());
            self.report(News::Failed(bgp_fsm::DownReason::ConnectionFailed(reason)));
        }
        self.hand_over_updates();
    }

    /// Hands the owner the UPDATEs gathered since the last event, in one.
    fn hand_over_updates(&mut self) {
        if let Some((first, more)) = self.out.updates.take() {
            self.out.updates_bytes = 0;
            let next_try = self.next_try();
            self.out.emit(
                self.spec.peer,
                News::Update(first),
                (None, None, None),
                (None, next_try),
                more,
            );
        }
    }

    /// When the session connects out again by itself, as of now.
    fn next_try(&self) -> Option<NextTry> {
        match self.fsm.timer(Timer::IdleHold) {
            Some(at) => Some(NextTry {
                at,
                idle_hold: true,
            }),
            None => self.fsm.timer(Timer::ConnectRetry).map(|at| NextTry {
                at,
                idle_hold: false,
            }),
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Connect => {
                self.connect_error = None;
                self.connect_started = Some(Instant::now());
                let peer = SocketAddr::new(self.spec.peer, self.spec.port);
                debug!(%peer, "connecting");
                self.connecting = Some(Box::pin(connect(
                    peer,
                    self.spec.local,
                    self.spec.interface.clone(),
                    self.spec.connect_timeout,
                    self.spec.password.clone(),
                    self.spec.ttl,
                )));
            }
            Action::Send { conn, bytes } => {
                if let Some(c) = self.conns[conn.index()].as_mut() {
                    self.out.traffic.queued(&bytes);
                    c.wq.push_back((bytes, false));
                    self.flush(conn);
                }
            }
            Action::Close(conn) => {
                if conn == ConnId::Outbound {
                    if self.connecting.is_some()
                        && let Some(t) = self.connect_started.take()
                        && t.elapsed() >= ABANDONED_AFTER
                    {
                        self.abandoned = Some(t.elapsed());
                    }
                    self.connecting = None;
                }
                if let Some(mut c) = self.forget(conn) {
                    // The NOTIFICATION before a close must reach the peer; give it a
                    // moment, not forever. What was queued before it goes too. In a task
                    // of its own: the session reports the close at once and goes on (a
                    // new connection may already be waiting).
                    let flush = async move {
                        for (b, _) in &c.wq {
                            c.stream.write_all(b).await?;
                        }
                        c.stream.shutdown().await
                    };
                    self.closing.retain(|t| !t.is_finished());
                    self.closing.push(tokio::spawn(async move {
                        let _ = tokio::time::timeout(CLOSE_FLUSH, flush).await;
                    }));
                }
            }
        }
    }

    /// Logs `news` and hands it to the owner; `Established` also configures the framer of
    /// its connection, which is still open (see [`Output`]).
    fn report(&mut self, news: News) {
        let news = match news {
            News::Update(f) => {
                if self.out.updates_bytes + f.bytes.len() > EVENT_BYTES {
                    self.hand_over_updates();
                }
                self.out.updates_bytes += f.bytes.len();
                match &mut self.out.updates {
                    Some((_, more)) => more.push(f),
                    None => self.out.updates = Some((f, Vec::new())),
                }
                return;
            }
            // What came before goes first.
            news => {
                self.hand_over_updates();
                news
            }
        };
        let peer = self.spec.peer;
        let (mut local, mut remote, mut opened) = (None, None, None);
        match &news {
            News::Established {
                conn,
                negotiated,
                peer_open,
            } => {
                if let Some(c) = self.conns[conn.index()].as_ref() {
                    local = c.stream.local_addr().ok();
                    remote = c.stream.peer_addr().ok();
                    if let Some(remote) = remote {
                        let mut sent_open = BytesMut::new();
                        self.fsm.config().open().encode(&mut sent_open);
                        opened = Some(Box::new(Opened {
                            remote,
                            sent_open: sent_open.freeze(),
                        }));
                    }
                }
                info!(%peer, asn = peer_open.asn, id = %peer_open.bgp_id, hold = negotiated.hold_time, "session established");
            }
            News::Down { reason, graceful } => {
                warn!(%peer, %reason, graceful, "session down");
                self.last_reason = Some(reason.to_string());
            }
            News::Failed(reason) => {
                info!(%peer, %reason, "connection failed");
                self.last_reason = Some(reason.to_string());
            }
            News::StateChanged { from, to } => {
                let why = state_reason(*from, *to, self.last_reason.take());
                // The connect-retry cycle of a peer that is not there (Idle, Connect,
                // Active and back) is routine: below info, so that an unreachable peer
                // does not fill the log.
                use bgp_fsm::State as S;
                let routine = matches!(to, S::Connect | S::Active)
                    && matches!(from, S::Idle | S::Connect | S::Active);
                if routine {
                    debug!(%peer, %from, %to, reason = %why, "state changed");
                } else {
                    info!(%peer, %from, %to, reason = %why, "state changed");
                }
            }
            News::Update(_) | News::RouteRefresh(_) => {}
        }
        let connect_error = match &news {
            News::Failed(_) | News::Down { .. } => self.connect_error.take(),
            _ => None,
        };
        let next_try = self.next_try();
        self.out.emit(
            peer,
            news,
            (local, remote, opened),
            (connect_error, next_try),
            Vec::new(),
        );
    }
}

/// Why the session went from `from` to `to`, in words: what the machine saw to move
/// forward, or the reason the last connection ended (`failed`) for a step back.
fn state_reason(from: bgp_fsm::State, to: bgp_fsm::State, failed: Option<String>) -> String {
    use bgp_fsm::State as S;
    let fixed = match (from, to) {
        (_, S::OpenSent) => "TCP connection up, OPEN sent",
        (_, S::OpenConfirm) => "the peer's OPEN accepted, KEEPALIVE sent",
        (_, S::Established) => "the peer's KEEPALIVE received",
        (S::Idle, S::Connect) => "started: connecting",
        (S::Idle, S::Active) => "started: waiting for the peer to connect",
        (S::Active, S::Connect) => "connect retry",
        _ => "",
    };
    match (fixed, failed) {
        ("", Some(f)) => f,
        ("", None) if to == S::Idle => "stopped".to_owned(),
        ("", None) => "connection attempt over".to_owned(),
        (s, _) => s.to_owned(),
    }
}

/// Link-local peers: interface names, indexes and addresses, from `/sys` and `/proc`
/// (no `ioctl`, no `unsafe`).
pub(crate) mod link {
    use std::io;
    use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

    /// The index of interface `name`.
    pub(crate) fn ifindex(name: &str) -> io::Result<u32> {
        let path = format!("/sys/class/net/{name}/ifindex");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            io::Error::new(io::ErrorKind::NotFound, format!("interface {name}: {e}"))
        })?;
        text.trim()
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {text:?}")))
    }

    /// The name of the interface with index `index`, if there is one.
    pub(crate) fn ifname(index: u32) -> Option<String> {
        // Bounded by the interfaces of the namespace.
        std::fs::read_dir("/sys/class/net")
            .ok()?
            .filter_map(Result::ok)
            .find(|e| {
                std::fs::read_to_string(e.path().join("ifindex"))
                    .is_ok_and(|t| t.trim().parse() == Ok(index))
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
    }

    /// `a` with the scope `scope` when it is an IPv6 link-local address.
    pub(crate) fn scoped(a: SocketAddr, scope: Option<u32>) -> SocketAddr {
        match (a, scope) {
            (SocketAddr::V6(v6), Some(s)) if v6.ip().is_unicast_link_local() => {
                SocketAddr::V6(SocketAddrV6::new(*v6.ip(), v6.port(), 0, s))
            }
            _ => a,
        }
    }

    /// A global IPv6 address on interface `index`, the first the kernel lists.
    pub(crate) fn global_address(index: u32) -> Option<Ipv6Addr> {
        let text = std::fs::read_to_string("/proc/net/if_inet6").ok()?;
        parse_if_inet6(&text, index)
    }

    /// From the text of `/proc/net/if_inet6` (`ADDR IFINDEX PREFIXLEN SCOPE FLAGS NAME`,
    /// hexadecimal), the first global-scope (0) address on `index` that is not
    /// tentative or deprecated.
    pub(crate) fn parse_if_inet6(text: &str, index: u32) -> Option<Ipv6Addr> {
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [addr, ifx, _, scope, flags, ..] = f[..] else {
                return None;
            };
            let ok = u32::from_str_radix(ifx, 16) == Ok(index)
                && scope == "00"
                && u32::from_str_radix(flags, 16).is_ok_and(|fl| fl & (0x40 | 0x20) == 0);
            if !ok || addr.len() != 32 {
                return None;
            }
            u128::from_str_radix(addr, 16).ok().map(Ipv6Addr::from)
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn global_addresses_are_read_from_if_inet6() {
            let text = "fe800000000000000000000000000001 03 40 20 80 veth0\n\
                        20010db8000000000000000000000001 03 40 00 80 veth0\n\
                        20010db8000000000000000000000099 04 40 00 80 veth1\n";
            assert_eq!(
                parse_if_inet6(text, 3),
                Some("2001:db8::1".parse().unwrap())
            );
            assert_eq!(
                parse_if_inet6(text, 4),
                Some("2001:db8::99".parse().unwrap())
            );
            assert_eq!(parse_if_inet6(text, 5), None);
            let tentative = "20010db8000000000000000000000001 03 40 00 40 veth0\n";
            assert_eq!(parse_if_inet6(tentative, 3), None);
        }

        #[test]
        fn only_link_local_addresses_take_a_scope() {
            let ll: SocketAddr = "[fe80::2]:179".parse().unwrap();
            let SocketAddr::V6(v6) = scoped(ll, Some(7)) else {
                unreachable!()
            };
            assert_eq!(v6.scope_id(), 7);
            let global: SocketAddr = "[2001:db8::2]:179".parse().unwrap();
            assert_eq!(scoped(global, Some(7)), global);
            assert!(ifindex("lo").is_ok_and(|i| i >= 1));
            assert_eq!(ifname(ifindex("lo").unwrap()).as_deref(), Some("lo"));
            assert!(ifindex("no-such-if0").is_err());
        }
    }
}
