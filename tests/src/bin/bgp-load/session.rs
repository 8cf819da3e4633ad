//! One BGP session from our side: connect from a bound source address (retried every
//! 200 ms, because the target may come up later), the OPEN exchange (4-octet AS, MP IPv4
//! unicast, route refresh), then Established: a writer task sends what it is given and a
//! KEEPALIVE every third of the hold time, and [`Session::recv`] (or
//! [`Session::recv_in_place`], borrowed from the buffer) hands over UPDATEs and
//! ROUTE-REFRESHes, answering nothing itself but checking the hold timer; an owner can
//! also take whole messages straight from the buffer ([`Session::unread`]).
//!
//! ```text
//!  owner task ──recv(), recv_in_place()──▶ read half (Framer over one BytesMut)
//!      │
//!      └──Out──▶ mpsc ──▶ writer task ──▶ write half
//!                          (+ KEEPALIVE ticker)
//! ```
//!
//! The writer is its own task so that a table of many megabytes going out never stops the
//! owner from reading (the target may be sending to us at the same time).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bgp_wire::capability::Capability;
use bgp_wire::header::HEADER_LEN;
use bgp_wire::negotiate::negotiate;
use bgp_wire::notification::{NotificationView, subcode};
use bgp_wire::open::{Open, OpenView};
use bgp_wire::{
    Afi, ErrorCode, Family, Frame, Framer, MessageType, Notification, Safi, SessionCtx,
    UpdatePolicy,
};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout_at;

/// Bound on the messages one session's owner handles (far above any run: a million
/// routes arrive in about 250 000 UPDATEs); the deadline bounds the time.
pub(crate) const MAX_MESSAGES: u64 = 1_000_000_000;
/// Time between connection attempts.
const RETRY: Duration = Duration::from_millis(200);
/// Bound of one connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound of the OPEN exchange (RFC 4271 §8.2.2 suggests 4 minutes for OpenSent).
const OPEN_TIMEOUT: Duration = Duration::from_secs(240);
/// The writer outlives the run's deadline by this much, so that the run can still close
/// its sessions with a NOTIFICATION after a timeout.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// Read buffer: at least this much room before each read.
const READ_ROOM: usize = 4096;
const READ_CHUNK: usize = 128 * 1024;

/// Who we are on one session, and whom we talk to.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub(crate) source: IpAddr,
    pub(crate) target: SocketAddr,
    pub(crate) asn: u32,
    pub(crate) peer_asn: u32,
    pub(crate) hold_time: u16,
    pub(crate) router_id: Ipv4Addr,
}

impl Peer {
    fn ibgp(&self) -> bool {
        self.asn == self.peer_asn
    }

    fn open(&self) -> Open {
        Open {
            asn: self.asn,
            hold_time: self.hold_time,
            bgp_id: self.router_id,
            capabilities: vec![
                Capability::Multiprotocol {
                    afi: Afi::IPV4,
                    safi: Safi::UNICAST,
                },
                Capability::RouteRefresh,
                Capability::FourOctetAs(self.asn),
            ],
        }
    }
}

/// What the writer task sends.
#[derive(Debug)]
pub(crate) enum Out {
    /// Whole messages.
    Bytes(Bytes),
    /// A NOTIFICATION, after which the connection is closed.
    Close(Notification),
}

/// Why [`Session::recv`] returned no message.
#[derive(Debug)]
pub(crate) enum End {
    /// The run's deadline passed.
    Deadline,
    /// The session is down: why.
    Down(String),
    /// The target sent this NOTIFICATION (and closes the connection).
    Notified(Notification),
}

impl End {
    /// In words, for the run's errors.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Deadline => "the run's deadline passed".into(),
            Self::Down(why) => why.clone(),
            Self::Notified(n) => format!("NOTIFICATION from the target: {n}"),
        }
    }
}

/// An established session.
#[derive(Debug)]
pub(crate) struct Session {
    /// What the OPENs negotiated, with the receive checks relaxed for a lab (loopback next
    /// hops and AS_SETs are counted, not refused).
    pub(crate) ctx: SessionCtx,
    /// Both sides offered route refresh.
    pub(crate) route_refresh: bool,
    read: OwnedReadHalf,
    buf: BytesMut,
    /// The length of the message at the front of `buf` that was handed over in place
    /// ([`Session::recv_in_place`]): dropped from the buffer at the next receive.
    consumed: usize,
    framer: Framer,
    hold: Option<Duration>,
    last_rx: Instant,
    out: mpsc::UnboundedSender<Out>,
    writer: JoinHandle<()>,
    /// The writer's error, if it failed, so that the session's end can name it.
    write_error: Arc<Mutex<Option<String>>>,
}

/// A message borrowed from a session's buffer ([`Session::recv_in_place`]).
pub(crate) struct Message<'a> {
    pub(crate) ty: MessageType,
    /// The whole message, header included.
    pub(crate) bytes: &'a [u8],
    /// When the last bytes were read from the target: the arrival of the messages
    /// handed over from them.
    pub(crate) read_at: Instant,
}

impl Message<'_> {
    /// The message without its header.
    pub(crate) fn body(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }
}

/// Connects from `peer.source` to `peer.target`, retrying every 200 ms until `deadline`.
async fn connect(peer: &Peer, deadline: Instant) -> Result<tokio::net::TcpStream, String> {
    let mut last = String::from("deadline passed before the first attempt");
    // Bounded in count as well as time.
    let attempts = deadline
        .saturating_duration_since(Instant::now())
        .as_millis()
        / RETRY.as_millis()
        + 2;
    for _ in 0..attempts {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let attempt = async {
            let sock = match peer.source {
                IpAddr::V4(_) => TcpSocket::new_v4(),
                IpAddr::V6(_) => TcpSocket::new_v6(),
            }
            .map_err(|e| format!("socket: {e}"))?;
            sock.bind(SocketAddr::new(peer.source, 0))
                .map_err(|e| format!("bind {}: {e}", peer.source))?;
            let stream = sock
                .connect(peer.target)
                .await
                .map_err(|e| format!("connect {}: {e}", peer.target))?;
            stream
                .set_nodelay(true)
                .map_err(|e| format!("nodelay: {e}"))?;
            Ok::<_, String>(stream)
        };
        let until = deadline.min(now + CONNECT_TIMEOUT);
        match timeout_at(until.into(), attempt).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("connect {}: timed out", peer.target),
        }
        let next = (now + RETRY).min(deadline);
        tokio::time::sleep_until(next.into()).await;
    }
    Err(last)
}

impl Session {
    /// Connects (retrying until `deadline`) and runs the OPEN exchange. A failed exchange
    /// is retried as well, every 200 ms: the target may accept connections before it knows
    /// the peer. The error is the last attempt's.
    pub(crate) async fn open(peer: &Peer, deadline: Instant) -> Result<Self, String> {
        let mut last = String::from("deadline passed");
        let attempts = deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            / RETRY.as_millis()
            + 2;
        for _ in 0..attempts {
            let started = Instant::now();
            if started >= deadline {
                break;
            }
            let stream = match connect(peer, deadline).await {
                Ok(s) => s,
                // connect() retried until the deadline already.
                Err(e) => return Err(e),
            };
            match Self::handshake(stream, peer, deadline).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
            let next = (started + RETRY).min(deadline);
            tokio::time::sleep_until(next.into()).await;
        }
        Err(last)
    }

    async fn handshake(
        stream: tokio::net::TcpStream,
        peer: &Peer,
        deadline: Instant,
    ) -> Result<Self, String> {
        let (mut read, mut write) = stream.into_split();
        let open = peer.open();
        let mut out = BytesMut::with_capacity(128);
        open.encode(&mut out);
        let until = deadline.min(Instant::now() + OPEN_TIMEOUT);
        let io = |what: &'static str| move |e: std::io::Error| format!("{what}: {e}");
        timeout_at(until.into(), write.write_all(&out))
            .await
            .map_err(|_| "sending OPEN: timed out".to_string())?
            .map_err(io("sending OPEN"))?;

        let framer = Framer::new();
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        // OpenSent: the peer's OPEN.
        let frame = next_frame(&framer, &mut read, &mut buf, until, "OPEN").await?;
        if frame.ty != MessageType::OPEN {
            return Err(unexpected_in_handshake(&frame, &mut write, "OPEN").await);
        }
        let view = match OpenView::new(frame.body()) {
            Ok(v) => v,
            Err(e) => {
                let n = Notification::from(&e);
                send_and_close(&mut write, &n).await;
                return Err(format!("bad OPEN: {e} (sent {n})"));
            }
        };
        if let Err(e) = view.check_peer(peer.peer_asn, peer.router_id, peer.ibgp()) {
            let n = Notification::from(&e);
            send_and_close(&mut write, &n).await;
            return Err(format!("OPEN refused: {e} (sent {n})"));
        }
        let negotiated = negotiate(&open, &view, peer.ibgp());
        let mut ctx = negotiated.ctx;
        if !ctx.four_octet_as || !ctx.families.contains(Family::Ipv4Unicast) {
            let n = Notification::new(
                ErrorCode::OPEN_MESSAGE,
                subcode::open::UNSUPPORTED_CAPABILITY,
            );
            send_and_close(&mut write, &n).await;
            return Err(format!(
                "the target did not negotiate 4-octet AS and IPv4 unicast: {ctx:?}"
            ));
        }
        ctx.policy = UpdatePolicy {
            enforce_first_as: None,
            max_as_path_len: None,
            reject_as_set: false,
            reject_martian_next_hop: false,
        };
        let hold =
            (negotiated.hold_time > 0).then(|| Duration::from_secs(negotiated.hold_time.into()));
        bgp_wire::keepalive::encode({
            out.clear();
            &mut out
        });
        timeout_at(until.into(), write.write_all(&out))
            .await
            .map_err(|_| "sending KEEPALIVE: timed out".to_string())?
            .map_err(io("sending KEEPALIVE"))?;
        // OpenConfirm: the peer's KEEPALIVE, within the hold time.
        let confirm_until = hold.map_or(until, |h| until.min(Instant::now() + h));
        let frame = next_frame(&framer, &mut read, &mut buf, confirm_until, "KEEPALIVE").await?;
        if frame.ty != MessageType::KEEPALIVE {
            return Err(unexpected_in_handshake(&frame, &mut write, "KEEPALIVE").await);
        }

        let (tx, rx) = mpsc::unbounded_channel();
        let write_error = Arc::new(Mutex::new(None));
        let keepalive = hold.map(|h| (h / 3).max(Duration::from_secs(1)));
        let writer = tokio::spawn(writer(
            write,
            rx,
            keepalive,
            deadline + CLOSE_GRACE,
            write_error.clone(),
        ));
        Ok(Self {
            ctx,
            route_refresh: negotiated.route_refresh,
            read,
            buf,
            consumed: 0,
            framer,
            hold,
            last_rx: Instant::now(),
            out: tx,
            writer,
            write_error,
        })
    }

    /// A handle to send messages on this session (also after the session was dropped:
    /// sends then go nowhere).
    pub(crate) fn sender(&self) -> mpsc::UnboundedSender<Out> {
        self.out.clone()
    }

    /// Sends whole messages.
    pub(crate) fn send(&self, bytes: Bytes) {
        let _ = self.out.send(Out::Bytes(bytes));
    }

    /// The next UPDATE or ROUTE-REFRESH, split off the session's buffer. KEEPALIVEs only
    /// feed the hold timer. Cancel-safe: nothing is lost when the future is dropped
    /// between messages.
    pub(crate) async fn recv(&mut self, deadline: Instant) -> Result<Frame, End> {
        let (ty, len) = self.next(deadline).await?;
        self.consumed = 0;
        Ok(Frame {
            ty,
            bytes: self.buf.split_to(len).freeze(),
        })
    }

    /// [`Self::recv`] without splitting the message off: it stays in the session's buffer,
    /// borrowed until the next receive. A receiver of a million prefixes takes over
    /// 200,000 UPDATEs, and a shared buffer per message (its reference count taken and
    /// dropped) was a tenth of the load tool's CPU with 100 receivers.
    pub(crate) async fn recv_in_place(&mut self, deadline: Instant) -> Result<Message<'_>, End> {
        let (ty, len) = self.next(deadline).await?;
        Ok(Message {
            ty,
            bytes: &self.buf[..len],
            read_at: self.last_rx,
        })
    }

    /// What was read from the target and not handed over yet (the message handed over
    /// last gone first), whole messages and maybe part of one, and when it was read: for
    /// an owner that takes many messages at once ([`Self::skip`]).
    pub(crate) fn unread(&mut self) -> (&[u8], Instant) {
        self.buf.advance(std::mem::take(&mut self.consumed));
        (&self.buf, self.last_rx)
    }

    /// Drops the first `n` bytes of what [`Self::unread`] showed: whole messages that the
    /// owner took.
    pub(crate) fn skip(&mut self, n: usize) {
        self.buf.advance(n);
    }

    /// Reads until an UPDATE or ROUTE-REFRESH is whole at the front of the buffer, the
    /// message handed over before it gone first; its type and length. It is gone in turn
    /// at the next call, unless [`Self::recv`] split it off.
    async fn next(&mut self, deadline: Instant) -> Result<(MessageType, usize), End> {
        loop {
            self.buf.advance(std::mem::take(&mut self.consumed));
            match self.framer.whole(&self.buf) {
                Err(e) => {
                    let n = Notification::from(&e);
                    let _ = self.out.send(Out::Close(n.clone()));
                    return Err(End::Down(format!(
                        "bad message from the target: {e} (sent {n})"
                    )));
                }
                Ok(Some((ty, len))) => {
                    self.consumed = len;
                    match ty {
                        MessageType::KEEPALIVE => continue,
                        MessageType::UPDATE | MessageType::ROUTE_REFRESH => return Ok((ty, len)),
                        MessageType::NOTIFICATION => {
                            return Err(match NotificationView::new(&self.buf[HEADER_LEN..len]) {
                                Ok(v) => End::Notified(Notification::with_data(
                                    v.code,
                                    v.subcode,
                                    Bytes::copy_from_slice(v.data),
                                )),
                                Err(e) => End::Down(format!(
                                    "malformed NOTIFICATION from the target: {e}"
                                )),
                            });
                        }
                        _ => {
                            let n = Notification::new(
                                ErrorCode::FSM,
                                subcode::fsm::UNEXPECTED_IN_ESTABLISHED,
                            );
                            let _ = self.out.send(Out::Close(n));
                            return Err(End::Down(format!("{ty} in Established")));
                        }
                    }
                }
                Ok(None) => {}
            }
            let hold_at = self.hold.map(|h| self.last_rx + h);
            let until = hold_at.map_or(deadline, |h| h.min(deadline));
            if self.buf.capacity() - self.buf.len() < READ_ROOM {
                self.buf.reserve(READ_CHUNK);
            }
            match timeout_at(until.into(), self.read.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) => return Err(self.down("connection closed by the target")),
                Ok(Ok(_)) => self.last_rx = Instant::now(),
                Ok(Err(e)) => return Err(self.down(&format!("read: {e}"))),
                Err(_) if hold_at.is_some_and(|h| h <= deadline) => {
                    let n = Notification::new(ErrorCode::HOLD_TIMER_EXPIRED, 0);
                    let _ = self.out.send(Out::Close(n));
                    return Err(End::Down("hold timer expired".into()));
                }
                Err(_) => return Err(End::Deadline),
            }
        }
    }

    fn down(&self, why: &str) -> End {
        let w = self
            .write_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        End::Down(match w {
            Some(w) => format!("{why} (writer: {w})"),
            None => why.to_string(),
        })
    }

    /// Sends `n`, closes the connection and waits (at most `wait`) for the writer to be
    /// done.
    pub(crate) async fn close(self, n: Notification, wait: Duration) {
        let _ = self.out.send(Out::Close(n));
        let _ = tokio::time::timeout(wait, self.writer).await;
    }
}

/// Reads until one whole message is in, or `until`.
async fn next_frame(
    framer: &Framer,
    read: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    until: Instant,
    waiting_for: &str,
) -> Result<Frame, String> {
    // Each read brings at least one byte, and a message is at most 4096: bounded.
    for _ in 0..=bgp_wire::header::MAX_MESSAGE_LEN {
        if let Some(f) = framer
            .next_frame(buf)
            .map_err(|e| format!("bad message while waiting for {waiting_for}: {e}"))?
        {
            return Ok(f);
        }
        buf.reserve(READ_ROOM);
        match timeout_at(until.into(), read.read_buf(buf)).await {
            Ok(Ok(0)) => {
                return Err(format!(
                    "closed by the target while waiting for {waiting_for}"
                ));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("read while waiting for {waiting_for}: {e}")),
            Err(_) => return Err(format!("no {waiting_for} from the target in time")),
        }
    }
    Err(format!("no whole message while waiting for {waiting_for}"))
}

async fn unexpected_in_handshake(
    frame: &Frame,
    write: &mut OwnedWriteHalf,
    wanted: &str,
) -> String {
    if frame.ty == MessageType::NOTIFICATION {
        return format!(
            "NOTIFICATION from the target instead of {wanted}: {}",
            describe_notification(frame)
        );
    }
    let sub = if wanted == "OPEN" {
        subcode::fsm::UNEXPECTED_IN_OPEN_SENT
    } else {
        subcode::fsm::UNEXPECTED_IN_OPEN_CONFIRM
    };
    let n = Notification::new(ErrorCode::FSM, sub);
    send_and_close(write, &n).await;
    format!("{} instead of {wanted} (sent {n})", frame.ty)
}

fn describe_notification(frame: &Frame) -> String {
    match NotificationView::new(&frame.bytes[HEADER_LEN..]) {
        Ok(v) => {
            Notification::with_data(v.code, v.subcode, Bytes::copy_from_slice(v.data)).to_string()
        }
        Err(e) => format!("malformed: {e}"),
    }
}

async fn send_and_close(write: &mut OwnedWriteHalf, n: &Notification) {
    let mut b = BytesMut::new();
    n.encode(&mut b);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = write.write_all(&b).await;
        let _ = write.shutdown().await;
    })
    .await;
}

/// Sends what the owner queues, and KEEPALIVEs; ends after a NOTIFICATION, when every
/// sender is gone, or at the deadline.
async fn writer(
    mut write: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    keepalive: Option<Duration>,
    deadline: Instant,
    error: Arc<Mutex<Option<String>>>,
) {
    let mut ticker = keepalive.map(|k| {
        let mut t = tokio::time::interval_at((Instant::now() + k).into(), k);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let ka = Bytes::from_static(&bgp_wire::keepalive::KEEPALIVE);
    let fail = |e: String| *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    loop {
        let tick = async {
            match ticker.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        let msg = tokio::select! {
            m = rx.recv() => m,
            () = tick => Some(Out::Bytes(ka.clone())),
            () = tokio::time::sleep_until(deadline.into()) => return,
        };
        match msg {
            None => {
                let _ = write.shutdown().await;
                return;
            }
            Some(Out::Bytes(b)) => match timeout_at(deadline.into(), write.write_all(&b)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return fail(format!("write: {e}")),
                Err(_) => return,
            },
            Some(Out::Close(n)) => {
                let mut b = BytesMut::new();
                n.encode(&mut b);
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    let _ = write.write_all(&b).await;
                    let _ = write.shutdown().await;
                })
                .await;
                return;
            }
        }
    }
}
