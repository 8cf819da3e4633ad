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
//! and a socket that stops taking them arms the machine's send hold timer (RFC 9687).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::{Duration, Instant};

use bgp_fsm::{Config, ConnId, Input, Output, Session};
use bgp_wire::{Framer, Notification};
use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

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
    /// How long an outbound connection attempt may take.
    pub connect_timeout: Duration,
}

/// What the owner of a session can ask of it.
#[derive(Clone, Debug)]
pub enum Command {
    /// ManualStart.
    Start,
    /// ManualStop, with the Cease to send (Administrative Shutdown when `None`).
    Stop(Option<Notification>),
}

/// What a session reports to its owner: the machine's outputs that are news rather than
/// actions (`Established`, `Down`, `Failed`, `Update`, `RouteRefresh`, `StateChanged`);
/// the driver carries out `Connect`, `Send` and `Close` itself.
pub type SessionEvent = Output;

/// One TCP connection and its buffers.
struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    framer: Framer,
    /// The socket refused bytes last time: the machine's send hold timer runs.
    blocked: bool,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        Self {
            stream,
            rbuf: BytesMut::with_capacity(4096),
            wbuf: BytesMut::new(),
            framer: Framer::new(),
            blocked: false,
        }
    }
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// Opens the outbound connection from `local` (if set) to `peer`.
async fn connect(
    peer: SocketAddr,
    local: Option<IpAddr>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let socket = if peer.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(l) = local {
        // The peer checks the source address: bind it before connecting.
        socket.bind(SocketAddr::new(l, 0))?;
    }
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
        Some(c) if !c.wbuf.is_empty() => c.stream.writable().await,
        _ => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// Hands an event to the owner. A gone owner means nobody listens; the session still
/// shuts down cleanly.
async fn emit(events: &mpsc::Sender<SessionEvent>, e: SessionEvent) {
    let _ = events.send(e).await;
}

/// The session task.
struct Driver {
    spec: SessionSpec,
    fsm: Session,
    conns: [Option<Conn>; 2],
    connecting: Option<Connecting>,
    events: mpsc::Sender<SessionEvent>,
}

/// Runs one session until the command channel closes. Starts it at once.
pub async fn run(
    spec: SessionSpec,
    mut inbound: mpsc::Receiver<TcpStream>,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<SessionEvent>,
) {
    let mut d = Driver {
        fsm: Session::new(spec.fsm.clone()),
        spec,
        conns: [None, None],
        connecting: None,
        events,
    };
    d.fsm
        .handle(Instant::now(), Input::Start { automatic: false });
    loop {
        d.carry_out().await;
        let deadline = d.fsm.poll_timeout();
        tokio::select! {
            () = sleep_until(deadline) => d.fsm.handle_timeout(Instant::now()),
            cmd = commands.recv() => match cmd {
                Some(Command::Start) => d.fsm.handle(Instant::now(), Input::Start { automatic: false }),
                Some(Command::Stop(n)) => d.fsm.handle(Instant::now(), Input::Stop { automatic: false, notification: n }),
                None => {
                    d.fsm.handle(Instant::now(), Input::Stop { automatic: false, notification: None });
                    d.carry_out().await;
                    return;
                }
            },
            Some(stream) = inbound.recv() => d.accept(stream),
            res = connected(&mut d.connecting) => {
                d.connecting = None;
                match res {
                    Ok(stream) => {
                        d.conns[ConnId::Outbound.index()] = Some(Conn::new(stream));
                        d.fsm.handle(Instant::now(), Input::Connected);
                    }
                    Err(e) => d.fsm.handle(Instant::now(), Input::ConnectionFailed { conn: ConnId::Outbound, reason: e.to_string() }),
                }
            }
            r = readable(&d.conns[0]) => d.on_readable(ConnId::Outbound, r),
            r = readable(&d.conns[1]) => d.on_readable(ConnId::Inbound, r),
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
    fn accept(&mut self, stream: TcpStream) {
        if self.fsm.has_conn(ConnId::Inbound) {
            // One inbound connection at a time; a second is refused at the door.
            debug!(peer = %self.spec.peer, "refusing a second inbound connection");
            return;
        }
        self.conns[1] = Some(Conn::new(stream));
        self.fsm.handle(Instant::now(), Input::Accepted);
    }

    fn on_readable(&mut self, c: ConnId, ready: io::Result<()>) {
        let now = Instant::now();
        let Some(conn) = self.conns[c.index()].as_mut() else {
            return;
        };
        if let Err(e) = ready {
            return self.failed(c, e.to_string());
        }
        let want = conn.framer.wanted(&conn.rbuf).max(4096);
        conn.rbuf.reserve(want);
        match conn.stream.try_read_buf(&mut conn.rbuf) {
            Ok(0) => return self.failed(c, "connection closed by peer".into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => return self.failed(c, e.to_string()),
        }
        // Bounded: each frame consumes bytes from a finite buffer.
        loop {
            let Some(conn) = self.conns[c.index()].as_mut() else {
                return;
            };
            match conn.framer.next_frame(&mut conn.rbuf) {
                Ok(Some(frame)) => self.fsm.handle(now, Input::Message { conn: c, frame }),
                Ok(None) => return,
                Err(error) => {
                    self.fsm.handle(now, Input::HeaderError { conn: c, error });
                    return;
                }
            }
        }
    }

    fn failed(&mut self, c: ConnId, reason: String) {
        self.conns[c.index()] = None;
        self.fsm
            .handle(Instant::now(), Input::ConnectionFailed { conn: c, reason });
    }

    fn on_writable(&mut self, c: ConnId, ready: io::Result<()>) {
        if let Err(e) = ready {
            return self.failed(c, e.to_string());
        }
        self.flush(c);
    }

    /// Writes what the socket takes now; tells the machine whether output is stuck.
    fn flush(&mut self, c: ConnId) {
        let Some(conn) = self.conns[c.index()].as_mut() else {
            return;
        };
        while !conn.wbuf.is_empty() {
            match conn.stream.try_write(&conn.wbuf) {
                Ok(n) => conn.wbuf.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return self.failed(c, e.to_string()),
            }
        }
        let blocked = !conn.wbuf.is_empty();
        if blocked != conn.blocked {
            conn.blocked = blocked;
            let input = if blocked {
                Input::SendBlocked(c)
            } else {
                Input::SendProgress(c)
            };
            self.fsm.handle(Instant::now(), input);
        }
    }

    /// Carries out every pending output of the machine.
    async fn carry_out(&mut self) {
        // Bounded: outputs come from a finite queue that only grows through handle().
        for _ in 0..100_000 {
            let Some(out) = self.fsm.poll_output() else {
                return;
            };
            match out {
                Output::Connect => {
                    let peer = SocketAddr::new(self.spec.peer, self.spec.port);
                    debug!(%peer, "connecting");
                    self.connecting = Some(Box::pin(connect(
                        peer,
                        self.spec.local,
                        self.spec.connect_timeout,
                    )));
                }
                Output::Send { conn, bytes } => {
                    if let Some(c) = self.conns[conn.index()].as_mut() {
                        c.wbuf.extend_from_slice(&bytes);
                        self.flush(conn);
                    }
                }
                Output::Close(conn) => {
                    if conn == ConnId::Outbound {
                        self.connecting = None;
                    }
                    if let Some(mut c) = self.conns[conn.index()].take() {
                        // The NOTIFICATION before a close must reach the peer; give it a
                        // moment, not forever.
                        let wbuf = std::mem::take(&mut c.wbuf);
                        let flush = async {
                            c.stream.write_all(&wbuf).await?;
                            c.stream.shutdown().await
                        };
                        let _ = tokio::time::timeout(Duration::from_secs(1), flush).await;
                    }
                }
                news => {
                    match &news {
                        Output::Established {
                            conn,
                            negotiated,
                            peer_open,
                        } => {
                            if let Some(c) = self.conns[conn.index()].as_mut() {
                                c.framer
                                    .set_extended_message(negotiated.ctx.extended_message);
                            }
                            info!(peer = %self.spec.peer, asn = peer_open.asn, id = %peer_open.bgp_id, hold = negotiated.hold_time, "session established");
                        }
                        Output::Down { reason, graceful } => {
                            warn!(peer = %self.spec.peer, %reason, graceful, "session down");
                        }
                        Output::Failed(reason) => {
                            info!(peer = %self.spec.peer, %reason, "connection failed");
                        }
                        Output::StateChanged { from, to } => {
                            debug!(peer = %self.spec.peer, %from, %to, "state");
                        }
                        _ => {}
                    }
                    emit(&self.events, news).await;
                }
            }
        }
    }
}
