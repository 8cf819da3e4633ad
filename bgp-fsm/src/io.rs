//! What goes into the machine and what comes out.

use std::fmt;

use bgp_wire::negotiate::Negotiated;
use bgp_wire::open::Open;
use bgp_wire::route_refresh::RouteRefresh;
use bgp_wire::{DecodeError, Frame, Notification};
use bytes::Bytes;
use serde::Serialize;

/// One of the (at most) two TCP connections of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ConnId {
    /// The connection we initiated.
    Outbound,
    /// The connection the peer initiated.
    Inbound,
}

impl ConnId {
    /// 0 for outbound, 1 for inbound: an index for per-connection arrays.
    pub const fn index(self) -> usize {
        match self {
            Self::Outbound => 0,
            Self::Inbound => 1,
        }
    }

    /// The other connection.
    pub const fn other(self) -> Self {
        match self {
            Self::Outbound => Self::Inbound,
            Self::Inbound => Self::Outbound,
        }
    }
}

/// An event for the machine. Each variant names the RFC 4271 §8.1 events it stands for.
#[derive(Clone, Debug)]
pub enum Input {
    /// Events 1, 3, 4, 5, 6, 7 (ManualStart, AutomaticStart and their passive and damped
    /// forms; passivity and damping come from the config).
    Start {
        /// AutomaticStart (true) or ManualStart (false). An automatic start waits for a
        /// running idle hold timer.
        automatic: bool,
    },
    /// Events 2, 8 (ManualStop, AutomaticStop): Cease to the peer, then Idle.
    ///
    /// A manual stop stays down until the next manual start, refusing the peer's
    /// connections meanwhile. An automatic stop (a peer that cannot keep up, say) counts as
    /// a failure like an error (RFC 4271 §8.1.2): Idle, connecting out again after the
    /// damped idle hold time and accepting the peer's connection meanwhile (see
    /// [`Input::Accepted`]). An automatic stop of an Established session is graceful when
    /// both sides sent the graceful restart N bit and the Cease is not a Hard Reset (RFC
    /// 8538 §4): [`News::Down`] with `graceful: true`, so the peer's routes stay as stale.
    Stop {
        /// AutomaticStop (true) or ManualStop (false).
        automatic: bool,
        /// The Cease to send: subcode and RFC 9003 communication. `None` sends
        /// Administrative Shutdown without text.
        notification: Option<Notification>,
    },
    /// Event 16 (Tcp_CR_Acked): our outbound connection is up.
    Connected,
    /// Events 14/17 (TcpConnection_Valid, TcpConnectionConfirmed): the driver accepted a
    /// connection from the peer's address. Event 15 (Tcp_CR_Invalid) never reaches the
    /// machine: the driver refuses unknown sources itself.
    ///
    /// A configured session takes the connection in every state but administratively
    /// down, and sends its OPEN (or waits under DelayOpen). In Idle after an error, while
    /// the idle hold timer runs, the connection first starts the session, as an automatic
    /// start with passive TCP establishment would (RFC 4271 §8.1.2, Event 5, then Event
    /// 17): the back-off only delays our own outbound connects, so a peer that comes back
    /// is not kept waiting (as in BIRD and FRR). The machine refuses it
    /// ([`Action::Close`] of [`ConnId::Inbound`]) when the session was stopped manually,
    /// never started, or failed without `allow_automatic_start` (RFC 4271 §8.2.2: Idle
    /// refuses connections); and while Established without
    /// `collision_detect_established` (RFC 4271 §6.8). A driver that sees a peer which
    /// restarts gracefully connect while Established first reports the old connection
    /// gone with [`Input::ConnectionFailed`] (RFC 4724 §4.2), and the session then takes
    /// the new one.
    Accepted,
    /// Event 18 (TcpConnectionFails): the connection failed or was closed by the peer.
    ///
    /// An outbound attempt that fails before TCP is up (refused, timed out) sends the
    /// session to Active, as RFC 4271 §8.2.2 does from Connect when TCP fails under
    /// DelayOpen, and as BIRD and FRR do: it keeps listening, and connects again when the
    /// jittered ConnectRetryTimer expires; the failure arms no idle hold time and is not
    /// counted for DampPeerOscillations. [`News::Failed`] still reports it. A connection
    /// lost in OpenSent goes to Active too (§8.2.2, Event 18); in OpenConfirm or
    /// Established it is an error (Idle, damped), except for an Established peer that
    /// sent the graceful restart capability: its routes stay as stale
    /// ([`News::Down`] with `graceful: true`) and the loss is not damped (RFC 4724 §4.2).
    ConnectionFailed {
        /// Which connection.
        conn: ConnId,
        /// What the socket said, for `last_error`.
        reason: String,
    },
    /// Events 19-27: a whole message, framed by the driver with [`bgp_wire::Framer`].
    Message {
        /// The connection it came on.
        conn: ConnId,
        /// The message, header included.
        frame: Frame,
    },
    /// Event 21 (BGPHeaderErr): the framer refused a header.
    HeaderError {
        /// The connection it came on.
        conn: ConnId,
        /// What the framer found.
        error: DecodeError,
    },
    /// Event 28 (UpdateMsgErr): the RIB found an UPDATE that resets the session
    /// (RFC 7606); the machine sends this NOTIFICATION and closes.
    UpdateError(Notification),
    /// The RIB counted more prefixes than allowed: Cease/1 (RFC 4486) and close.
    MaxPrefixExceeded {
        /// The Cease data: AFI (2), SAFI (1), limit (4) per RFC 4486 §4.
        data: Bytes,
    },
    /// Our writes on an Established connection are blocked: the send hold timer runs
    /// (RFC 9687). A running timer keeps running.
    SendBlocked(ConnId),
    /// Our writes made progress: the send hold timer stops. The peer takes bytes, however
    /// slowly: a driver whose output is still blocked after this sends
    /// [`Input::SendBlocked`] again, which starts the timer afresh.
    SendProgress(ConnId),
    /// The driver stopped reading the connections because its owner has not taken the
    /// messages already read (it is busy): the peer cannot be judged meanwhile, so the
    /// hold timers stop. Keepalives still go out.
    ReceivePaused,
    /// The driver reads again: the hold timers start again with their full time.
    ReceiveResumed,
}

/// Why a session (or connection) went down, in words an operator reads in `last_error`.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub enum DownReason {
    /// We stopped it (administratively).
    Stopped,
    /// We sent this NOTIFICATION.
    NotificationSent(#[serde(serialize_with = "ser_display")] Notification),
    /// An error that calls for this NOTIFICATION before our OPEN went out, so it was not
    /// sent (RFC 4271 §8.1.1, SendNOTIFICATIONwithoutOPEN off).
    NotSent(#[serde(serialize_with = "ser_display")] Notification),
    /// We refused the peer's OPEN: what did not match, in words, and the NOTIFICATION
    /// (sent unless our OPEN had not gone out yet).
    OpenRefused {
        /// The OPEN error.
        #[serde(serialize_with = "ser_display")]
        notification: Notification,
        /// Whether it was sent.
        sent: bool,
        /// What did not match, e.g. `peer says AS 65001, configured 65000`.
        detail: String,
    },
    /// The peer sent this NOTIFICATION.
    NotificationReceived(#[serde(serialize_with = "ser_display")] Notification),
    /// The TCP connection failed or closed.
    ConnectionFailed(String),
}

fn ser_display<S: serde::Serializer>(n: &Notification, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(n)
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stopped => f.write_str("stopped by us"),
            Self::NotificationSent(n) => write!(f, "sent NOTIFICATION {n}"),
            Self::NotSent(n) => write!(f, "{n} before our OPEN (NOTIFICATION not sent)"),
            Self::OpenRefused {
                notification,
                sent,
                detail,
            } => {
                let verb = if *sent { "sent" } else { "not sent" };
                write!(
                    f,
                    "OPEN mismatch: {detail} ({verb} NOTIFICATION {notification})"
                )
            }
            Self::NotificationReceived(n) => write!(f, "received NOTIFICATION {n}"),
            Self::ConnectionFailed(e) => write!(f, "connection failed: {e}"),
        }
    }
}

impl fmt::Debug for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What the machine hands out, in one ordered stream drained with
/// [`Session::poll_output`](crate::Session::poll_output): [`Action`]s for the I/O driver
/// and [`News`] for the session's owner (the RIB, logs, metrics).
///
/// The two halves share one queue, not two, because the driver needs their relative
/// order:
///
/// * Actions come in the order they must be carried out: a NOTIFICATION's
///   [`Action::Send`] before the [`Action::Close`] of its connection, the `Close` of a
///   stale outbound attempt before the next [`Action::Connect`].
/// * [`News::Down`] and [`News::Failed`] follow the `Close` of the connection they
///   report: by the time the owner hears of the end, the driver has dropped the
///   connection and what it had queued.
/// * [`News::Established`] comes while its connection is open, before any `Close` of it
///   and before any [`News::Update`] received on it: the driver reads the connection's
///   local address and configures its framer from it.
///
/// A driver that carries out actions and hands on news as they come, one by one, keeps
/// all three.
#[derive(Clone, Debug)]
pub enum Output {
    /// For the driver: something to do with a socket.
    Action(Action),
    /// For the owner: something that happened.
    News(News),
}

impl From<Action> for Output {
    fn from(a: Action) -> Self {
        Self::Action(a)
    }
}

impl From<News> for Output {
    fn from(n: News) -> Self {
        Self::News(n)
    }
}

/// What the I/O driver must do. Every NOTIFICATION leaves as an [`Action::Send`]: the
/// driver never writes one on its own.
#[derive(Clone, Debug)]
pub enum Action {
    /// Open the outbound TCP connection (bound to the configured source address).
    Connect,
    /// Write these bytes on the connection, in order.
    Send {
        /// The connection.
        conn: ConnId,
        /// One or more whole messages.
        bytes: Bytes,
    },
    /// Close the connection once what was sent on it is flushed; drop an outbound attempt
    /// still in progress.
    Close(ConnId),
}

/// What the session's owner hears: the session came up or went down, a message for the
/// RIB, a state change.
#[derive(Clone, Debug)]
pub enum News {
    /// The session is Established on `conn`: the driver configures its framer from
    /// `negotiated.ctx` and the RIB sends the initial table.
    Established {
        /// The connection that won.
        conn: ConnId,
        /// The negotiated capabilities and context.
        negotiated: Box<Negotiated>,
        /// The peer's OPEN.
        peer_open: Box<Open>,
    },
    /// The session left Established: the RIB withdraws or marks stale the peer's routes.
    Down {
        /// Why.
        reason: DownReason,
        /// Whether the peer's routes should be kept as stale (RFC 4724: the peer restarts
        /// gracefully; RFC 8538: not after a Hard Reset).
        graceful: bool,
    },
    /// A connection attempt that never reached Established failed, for `last_error`.
    Failed(DownReason),
    /// An UPDATE received in Established, unparsed: the RIB parses it with the session's
    /// context.
    Update(Frame),
    /// A ROUTE-REFRESH received in Established.
    RouteRefresh(RouteRefresh),
    /// The session's state changed (for logs and metrics).
    StateChanged {
        /// The previous state.
        from: crate::State,
        /// The new state.
        to: crate::State,
    },
}
