//! The session: RFC 4271 §8.2 over at most two connections, with §6.8 collision detection.

use std::collections::VecDeque;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bgp_wire::capability::Capability;
use bgp_wire::negotiate::{Negotiated, negotiate};
use bgp_wire::notification::subcode;
use bgp_wire::open::{Open, OpenView};
use bgp_wire::route_refresh::RouteRefresh;
use bgp_wire::{ErrorCode, ErrorKind, Family, Frame, MessageType, Notification};
use bytes::{Bytes, BytesMut};
use serde::Serialize;

use crate::config::{Config, mp_capability};
use crate::io::{Action, ConnId, DownReason, Input, News, Output};
use crate::rng::Rng;
use crate::timer::{Timer, Timers};

/// The session state of RFC 4271 §8.2.2, as operators know it from `show protocols`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum State {
    /// Not running. After an error (IdleHold running) the session waits out the idle hold
    /// time before connecting out again, but still accepts the peer's connection; stopped
    /// by the operator, never started, or failed without AllowAutomaticStart, it refuses
    /// it (RFC 4271 §8.2.2).
    Idle,
    /// Our outbound connection attempt is in progress.
    Connect,
    /// Waiting for the peer to connect, or for the next connect retry (after a failed
    /// outbound attempt, or a connection lost before OPENs were exchanged).
    Active,
    /// Our OPEN is sent; waiting for the peer's.
    OpenSent,
    /// OPENs exchanged; waiting for the peer's KEEPALIVE.
    OpenConfirm,
    /// Up: UPDATEs flow.
    Established,
}

impl State {
    /// The RFC's name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::Connect => "Connect",
            Self::Active => "Active",
            Self::OpenSent => "OpenSent",
            Self::OpenConfirm => "OpenConfirm",
            Self::Established => "Established",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where one connection is.
#[derive(Clone, Debug)]
enum ConnState {
    /// Outbound TCP attempt in flight.
    Connecting,
    /// TCP up, our OPEN held back by DelayOpen.
    DelayOpen,
    /// Our OPEN sent.
    OpenSent,
    /// OPENs exchanged, KEEPALIVE sent.
    OpenConfirm(Box<Peer>),
    /// Up since the instant.
    Established(Box<Peer>, Instant),
}

/// What the peer's OPEN told us.
#[derive(Clone, Debug)]
struct Peer {
    negotiated: Negotiated,
    open: Open,
}

#[derive(Clone, Debug)]
struct Conn {
    state: ConnState,
    /// Our OPEN went out on this connection.
    open_sent: bool,
}

impl Conn {
    const fn rank(&self) -> State {
        match self.state {
            ConnState::Connecting | ConnState::DelayOpen => State::Connect,
            ConnState::OpenSent => State::OpenSent,
            ConnState::OpenConfirm(_) => State::OpenConfirm,
            ConnState::Established(..) => State::Established,
        }
    }

    fn peer(&self) -> Option<&Peer> {
        match &self.state {
            ConnState::OpenConfirm(p) | ConnState::Established(p, _) => Some(p),
            _ => None,
        }
    }
}

/// What happens to the session once its last connection is gone.
///
/// Whatever it is, the peer may connect again at once: a session that is not
/// administratively down accepts the peer's connection even in Idle
/// (`Session::on_accepted`). The back-off only delays our own outbound connects.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    /// Not an error: keep running in Active, listening, and connect again when the
    /// jittered ConnectRetryTimer expires (RFC 4271 §8.2.2: Connect and OpenSent, Event
    /// 18). Not counted for DampPeerOscillations. Used for an outbound attempt that failed
    /// and for a connection lost before the peer's OPEN.
    Retry,
    /// An error (hold timer expiry, a malformed message, a NOTIFICATION we sent for an
    /// error, an error NOTIFICATION received): Idle, connecting out again after the idle
    /// hold time, doubled for each failure in a row (DampPeerOscillations, RFC 4271
    /// §8.1.1).
    Fail,
    /// An end the peer is not to be punished for: a Cease received (RFC 4271 §6.7, RFC
    /// 4486: the peer's decision, not a protocol error), a version error (RFC 4271 §8.2.2,
    /// Event 24), a graceful restart (RFC 4724 §4.2, RFC 8538). Idle like [`After::Fail`],
    /// but no failure is counted, so the idle hold time does not grow.
    FailUndamped,
}

/// One peer's session. See the crate documentation for how to drive it.
#[derive(Debug)]
pub struct Session {
    cfg: Config,
    conns: [Option<Conn>; 2],
    /// Started and not stopped: Connect, Active or beyond.
    running: bool,
    /// A manual stop holds the session down until a manual start.
    manual_stop: bool,
    timers: Timers,
    out: VecDeque<Output>,
    rng: Rng,
    /// RFC 4271 ConnectRetryCounter.
    connect_retry_counter: u32,
    /// Failures in a row, for DampPeerOscillations; reset by a stable session.
    failures: u32,
    reported: State,
    /// The driver does not read ([`Input::ReceivePaused`]): no hold timer runs.
    receive_paused: bool,
}

impl Session {
    /// A session in Idle. Nothing happens until [`Input::Start`].
    pub fn new(cfg: Config) -> Self {
        Self {
            rng: Rng::new(cfg.jitter_seed),
            cfg,
            conns: [None, None],
            running: false,
            manual_stop: false,
            timers: Timers::default(),
            out: VecDeque::new(),
            connect_retry_counter: 0,
            failures: 0,
            reported: State::Idle,
            receive_paused: false,
        }
    }

    /// The configuration.
    pub const fn config(&self) -> &Config {
        &self.cfg
    }

    /// Our graceful restart is over (RFC 4724 §4.1): the OPENs of later connections carry
    /// the graceful restart capability with the Restart State bit clear and every
    /// Forwarding State bit set, and the long-lived graceful restart capability (RFC 9494
    /// §3) with its Forwarding State bits set. The R bit says that *this* OPEN follows a
    /// restart of ours, which later OPENs do not; the F bit says that the forwarding
    /// state of the routes we sent the peer before was kept, which stays true for as long
    /// as the speaker runs: a later connection (a session reset, a flap, the peer's
    /// restart) lets a peer that kept our routes as stale keep them until our End-of-RIB
    /// (RFC 4724 §4.2, RFC 8538 §4). A running connection is not touched.
    pub fn end_restart(&mut self) {
        self.set_graceful_restart_bits(false, true);
    }

    /// The forwarding state is kept from now on (see [`Session::end_restart`]): the OPENs
    /// of later connections set every Forwarding State bit of the graceful restart and
    /// long-lived graceful restart capabilities; the Restart State bit is left as it is.
    /// For a speaker that started afresh, once the peer has our routes of this run.
    pub fn keep_forwarding(&mut self) {
        let restart_state = self
            .cfg
            .capabilities
            .iter()
            .any(|c| matches!(c, Capability::GracefulRestart(gr) if gr.restart_state));
        self.set_graceful_restart_bits(restart_state, true);
    }

    /// PassiveTcpEstablishment changed in the configuration. It only decides who opens
    /// the next TCP connection, so a connection that is up or on its way stays. Made
    /// passive: no outbound attempt is started again (the ConnectRetryTimer stops).
    /// Made active while started and waiting in Active with no connection: an outbound
    /// attempt starts now.
    pub fn set_passive(&mut self, now: Instant, passive: bool) {
        if self.cfg.passive == passive {
            return;
        }
        self.cfg.passive = passive;
        if passive {
            self.timers.stop(Timer::ConnectRetry);
        } else if self.running && self.conns.iter().all(Option::is_none) {
            self.connect(now);
        }
        self.report();
    }

    fn set_graceful_restart_bits(&mut self, restart_state: bool, forwarding: bool) {
        for c in &mut self.cfg.capabilities {
            match c {
                Capability::GracefulRestart(gr) => {
                    gr.restart_state = restart_state;
                    for f in &mut gr.families {
                        f.forwarding = forwarding;
                    }
                }
                Capability::LongLivedGracefulRestart(families) => {
                    for f in families {
                        f.forwarding = forwarding;
                    }
                }
                _ => {}
            }
        }
    }

    /// The session state: that of the most advanced connection.
    pub fn state(&self) -> State {
        let best = self.conns.iter().flatten().map(Conn::rank).max();
        match best {
            Some(s) if s > State::Connect => s,
            _ if !self.running => State::Idle,
            Some(_) if self.has(ConnId::Outbound, |c| c.rank() == State::Connect) => State::Connect,
            _ => State::Active,
        }
    }

    /// RFC 4271's ConnectRetryCounter.
    pub const fn connect_retry_counter(&self) -> u32 {
        self.connect_retry_counter
    }

    /// Failures in a row counted for DampPeerOscillations: each doubles the idle hold time
    /// before our next own connect. Errors and automatic stops count; failed outbound
    /// attempts, Ceases and version errors received, and graceful restarts do not. A
    /// session that stays Established for [`crate::Timing::stable_time`] starts the count
    /// over.
    pub const fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether connection `c` exists (a driver refuses a second inbound connection itself).
    pub fn has_conn(&self, c: ConnId) -> bool {
        self.conns[c.index()].is_some()
    }

    /// The Established connection and what was negotiated on it.
    ///
    /// [`Negotiated::peer_graceful_restart`] says whether the peer sent the graceful
    /// restart capability (RFC 4724), and its N bit whether it handles NOTIFICATIONs
    /// gracefully (RFC 8538). A driver that accepts a new connection from a peer that
    /// restarts gracefully while the session is Established first reports the old
    /// connection gone ([`Input::ConnectionFailed`]: RFC 4724 §4.2, the peer's routes are
    /// kept as stale), then the new one ([`Input::Accepted`]), which the session takes.
    pub fn established(&self) -> Option<(ConnId, &Negotiated)> {
        [ConnId::Outbound, ConnId::Inbound]
            .into_iter()
            .find_map(|c| match &self.conns[c.index()].as_ref()?.state {
                ConnState::Established(p, _) => Some((c, &p.negotiated)),
                _ => None,
            })
    }

    /// Since when the session has been Established, if it is.
    pub fn established_since(&self) -> Option<Instant> {
        self.conns.iter().find_map(|c| match &c.as_ref()?.state {
            ConnState::Established(_, since) => Some(*since),
            _ => None,
        })
    }

    /// The next output, until `None`: an [`Action`] for the driver or [`News`] for the
    /// owner, in the order [`Output`] documents. Drain it after every `handle*` call.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The earliest deadline: call [`Session::handle_timeout`] then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// When timer `t` is due, if it is running.
    pub fn timer(&self, t: Timer) -> Option<Instant> {
        self.timers.get(t)
    }

    fn has(&self, c: ConnId, f: impl Fn(&Conn) -> bool) -> bool {
        self.conns[c.index()].as_ref().is_some_and(f)
    }

    /// Handles one event.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Start { automatic } => self.on_start(now, automatic),
            Input::Stop {
                automatic,
                notification,
            } => self.on_stop(now, automatic, notification),
            Input::Connected => self.on_connected(now),
            Input::Accepted => self.on_accepted(now),
            Input::ConnectionFailed { conn, reason } => self.on_tcp_failed(now, conn, reason),
            Input::Message { conn, frame } => self.on_message(now, conn, frame),
            Input::HeaderError { conn, error } if self.has_conn(conn) => {
                if error.sends_notification() {
                    self.error(now, conn, Notification::from(&error));
                } else {
                    self.on_tcp_failed(now, conn, error.to_string());
                }
            }
            Input::HeaderError { .. } => {} // A stale read of a connection already gone.
            Input::UpdateError(n) => {
                if let Some((conn, _)) = self.established() {
                    self.error(now, conn, n);
                }
            }
            Input::MaxPrefixExceeded { data } => {
                if let Some((conn, _)) = self.established() {
                    let n = Notification::with_data(
                        ErrorCode::CEASE,
                        subcode::cease::MAX_PREFIXES,
                        data,
                    );
                    self.error(now, conn, n);
                }
            }
            Input::SendBlocked(conn) => {
                let t = Timer::SendHold(conn);
                if self.timers.get(t).is_none()
                    && self.has(conn, |c| matches!(c.state, ConnState::Established(..)))
                {
                    self.timers.set(t, now + self.send_hold_time(conn));
                }
            }
            Input::SendProgress(conn) => self.timers.stop(Timer::SendHold(conn)),
            Input::ReceivePaused => {
                self.receive_paused = true;
                for c in [ConnId::Outbound, ConnId::Inbound] {
                    self.timers.stop(Timer::Hold(c));
                }
            }
            Input::ReceiveResumed => {
                if self.receive_paused {
                    self.receive_paused = false;
                    for c in [ConnId::Outbound, ConnId::Inbound] {
                        if self.has(c, |x| matches!(x.state, ConnState::OpenSent)) {
                            self.timers
                                .set(Timer::Hold(c), now + self.cfg.timing.open_hold);
                        } else {
                            self.restart_hold(now, c);
                        }
                    }
                }
            }
        }
        self.report();
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Bounded: each firing stops or moves its timer past `now`.
        for _ in 0..32 {
            let Some(t) = self.timers.expired(now) else {
                break;
            };
            self.timers.stop(t);
            self.on_timer(now, t);
        }
        self.report();
    }

    fn report(&mut self) {
        let now = self.state();
        if now != self.reported {
            let from = self.reported;
            self.push(News::StateChanged { from, to: now });
            self.reported = now;
        }
    }

    fn on_start(&mut self, now: Instant, automatic: bool) {
        if self.running {
            return; // RFC 4271 §8.2.2: start events are ignored outside Idle.
        }
        if automatic
            && (self.manual_stop
                || !self.cfg.allow_automatic_start
                || self.timers.get(Timer::IdleHold).is_some())
        {
            return; // The idle hold timer (or the operator) decides.
        }
        self.timers.stop(Timer::IdleHold);
        self.running = true;
        self.manual_stop = false;
        self.connect_retry_counter = 0;
        if self.cfg.passive {
            // PassiveTcpEstablishment: wait in Active. Unlike the RFC's Active state, a
            // passive session never connects out on ConnectRetry expiry: Calico relies on
            // exactly one side of each mesh link connecting.
            return;
        }
        self.connect(now);
    }

    fn connect(&mut self, now: Instant) {
        self.conns[ConnId::Outbound.index()] = Some(Conn {
            state: ConnState::Connecting,
            open_sent: false,
        });
        self.push(Action::Connect);
        self.arm_connect_retry(now);
    }

    fn arm_connect_retry(&mut self, now: Instant) {
        if !self.cfg.passive {
            let d = self.rng.jitter(self.cfg.timing.connect_retry);
            self.timers.set(Timer::ConnectRetry, now + d);
        }
    }

    fn on_stop(&mut self, now: Instant, automatic: bool, n: Option<Notification>) {
        if !self.running && self.conns.iter().all(Option::is_none) {
            // Idle (RFC 4271 §8.2.2): AutomaticStop is ignored; a ManualStop also cancels
            // a pending automatic restart.
            if !automatic {
                self.manual_stop = true;
                self.timers.stop(Timer::IdleHold);
            }
            return;
        }
        let n = n.unwrap_or(Notification::new(
            ErrorCode::CEASE,
            subcode::cease::ADMIN_SHUTDOWN,
        ));
        for c in [ConnId::Outbound, ConnId::Inbound] {
            if self.conns[c.index()].is_some() {
                // RFC 8538 §4: with the N bit on both sides, a NOTIFICATION other than a
                // Hard Reset keeps the peer's routes as stale. An AutomaticStop resets a
                // peer that is expected back (Cease/Out of Resources, say); the operator's
                // ManualStop takes it down for good.
                let graceful = automatic && self.graceful_after(c, &n);
                let reason = if self.notify(c, &n) {
                    DownReason::NotificationSent(n.clone())
                } else {
                    DownReason::Stopped
                };
                self.drop_conn(now, c, reason, graceful);
            }
        }
        self.running = false;
        self.timers = Timers::default();
        if automatic {
            // AutomaticStop (RFC 4271 §8.1.2): counted like an error, restarts by itself.
            self.connect_retry_counter += 1;
            self.arm_idle_hold(now, true);
        } else {
            self.manual_stop = true;
        }
    }

    fn on_connected(&mut self, now: Instant) {
        match self.conns[ConnId::Outbound.index()].as_ref() {
            Some(c) if matches!(c.state, ConnState::Connecting) => {}
            // A stale report about a connection that is already up: nothing to do.
            Some(_) => return,
            // A connection we no longer want (stopped, or collision already resolved).
            None => {
                self.push(Action::Close(ConnId::Outbound));
                return;
            }
        }
        self.timers.stop(Timer::ConnectRetry);
        self.connection_up(now, ConnId::Outbound);
    }

    fn on_accepted(&mut self, now: Instant) {
        if self.has_conn(ConnId::Inbound) {
            // A second inbound connection is the driver's to refuse (see `has_conn`).
            return;
        }
        if !self.running {
            if self.timers.get(Timer::IdleHold).is_none() {
                // Stopped by the operator, never started, or down after an error without
                // AllowAutomaticStart: Idle refuses connections (RFC 4271 §8.2.2).
                self.push(Action::Close(ConnId::Inbound));
                return;
            }
            // Idle after an error, waiting to restart by itself: the peer's connection is
            // an AutomaticStart with PassiveTcpEstablishment (RFC 4271 §8.1.2, Event 5:
            // Idle → Active) followed by TcpConnectionConfirmed (Event 17). The idle hold
            // time only delays our own connects, so a peer that comes back is not kept
            // waiting (as in BIRD and FRR).
            self.timers.stop(Timer::IdleHold);
            self.running = true;
            self.connect_retry_counter = 0;
        }
        if self.established().is_some() && !self.cfg.collision_detect_established {
            // RFC 4271 §6.8: without collision detection in Established, the newcomer goes.
            self.push(Action::Close(ConnId::Inbound));
            return;
        }
        self.conns[ConnId::Inbound.index()] = Some(Conn {
            state: ConnState::Connecting,
            open_sent: false,
        });
        self.connection_up(now, ConnId::Inbound);
    }

    /// TCP is up on `c`: send our OPEN, or wait for the peer's under DelayOpen.
    fn connection_up(&mut self, now: Instant, c: ConnId) {
        // RFC 4271 §8.2.2 (Connect and Active, Events 16/17): a connection is up, so the
        // ConnectRetryTimer stops, whether or not DelayOpen holds our OPEN back.
        self.timers.stop(Timer::ConnectRetry);
        if let Some(d) = self.cfg.delay_open {
            self.set_state(c, ConnState::DelayOpen);
            self.timers.set(Timer::DelayOpen(c), now + d);
        } else {
            self.send_open(now, c);
        }
    }

    fn send_open(&mut self, now: Instant, c: ConnId) {
        let mut b = BytesMut::new();
        self.cfg.open().encode(&mut b);
        self.send(c, b.freeze());
        if let Some(conn) = self.conns[c.index()].as_mut() {
            conn.open_sent = true;
            conn.state = ConnState::OpenSent;
        }
        self.timers.stop(Timer::ConnectRetry);
        if !self.receive_paused {
            self.timers
                .set(Timer::Hold(c), now + self.cfg.timing.open_hold);
        }
    }

    fn set_state(&mut self, c: ConnId, s: ConnState) {
        if let Some(conn) = self.conns[c.index()].as_mut() {
            conn.state = s;
        }
    }

    fn push(&mut self, o: impl Into<Output>) {
        self.out.push_back(o.into());
    }

    fn send(&mut self, conn: ConnId, bytes: Bytes) {
        self.push(Action::Send { conn, bytes });
    }

    fn send_keepalive(&mut self, now: Instant, c: ConnId, hold: u16) {
        self.send(c, Bytes::from_static(&bgp_wire::keepalive::KEEPALIVE));
        if hold > 0 {
            let third = u64::from(hold / 3).max(1);
            let every = self
                .cfg
                .timing
                .keepalive_time
                .map_or(third, |k| u64::from(k).clamp(1, third));
            let d = self.rng.jitter(Duration::from_secs(every));
            self.timers.set(Timer::Keepalive(c), now + d);
        }
    }

    fn on_tcp_failed(&mut self, now: Instant, c: ConnId, reason: String) {
        let Some(conn) = self.conns[c.index()].as_ref() else {
            return;
        };
        let (after, graceful) = match conn.state {
            // RFC 4271 §8.2.2 sends Connect to Idle on Event 18 without DelayOpen, and to
            // Active with the ConnectRetryTimer when TCP came up under DelayOpen. A
            // connection refused or timed out is no fault of the peer's BGP, so the
            // machine takes the second path for both, as BIRD and FRR do: keep listening
            // and connect again at the next retry, neither counted nor damped.
            ConnState::Connecting => (After::Retry, false),
            // With DelayOpen running: from Connect (our connection) keep listening in
            // Active; from Active (the peer's connection) Idle. From OpenSent: Active.
            ConnState::DelayOpen if c == ConnId::Inbound => (After::Fail, false),
            ConnState::DelayOpen | ConnState::OpenSent => (After::Retry, false),
            ConnState::OpenConfirm(_) => (After::Fail, false),
            // RFC 4724 §4.2: a peer that restarts drops TCP without a NOTIFICATION; its
            // routes stay as stale, and the drop is not held against it.
            ConnState::Established(ref p, _) if p.negotiated.peer_graceful_restart.is_some() => {
                (After::FailUndamped, true)
            }
            ConnState::Established(..) => (After::Fail, false),
        };
        self.close(
            now,
            c,
            DownReason::ConnectionFailed(reason),
            after,
            graceful,
        );
    }

    fn on_message(&mut self, now: Instant, c: ConnId, frame: Frame) {
        let Some(conn) = self.conns[c.index()].as_ref() else {
            return;
        };
        let state = conn.rank();
        let delay_open = matches!(conn.state, ConnState::DelayOpen);
        match frame.ty {
            MessageType::OPEN => match conn.state {
                ConnState::DelayOpen | ConnState::OpenSent => self.on_open(now, c, &frame),
                ConnState::Connecting => {}
                _ => self.fsm_error(now, c, state),
            },
            MessageType::NOTIFICATION => self.on_notification(now, c, frame.body()),
            MessageType::KEEPALIVE => match &conn.state {
                ConnState::OpenConfirm(_) => self.on_established(now, c),
                ConnState::Established(..) => self.restart_hold(now, c),
                _ if delay_open => self.close(now, c, not_open(), After::Fail, false),
                _ => self.fsm_error(now, c, state),
            },
            MessageType::UPDATE | MessageType::ROUTE_REFRESH => match conn.state {
                ConnState::Established(..) => {
                    if frame.ty == MessageType::UPDATE {
                        self.restart_hold(now, c);
                        self.push(News::Update(frame));
                    } else {
                        match RouteRefresh::decode(&frame.bytes) {
                            Ok(rr) => self.push(News::RouteRefresh(rr)),
                            Err(e) => self.error(now, c, Notification::from(&e)),
                        }
                    }
                }
                _ if delay_open => self.close(now, c, not_open(), After::Fail, false),
                _ => self.fsm_error(now, c, state),
            },
            _ => {}
        }
    }

    /// A message not allowed in the connection's state (RFC 6608 subcodes).
    fn fsm_error(&mut self, now: Instant, c: ConnId, state: State) {
        let sub = match state {
            State::OpenSent => subcode::fsm::UNEXPECTED_IN_OPEN_SENT,
            State::OpenConfirm => subcode::fsm::UNEXPECTED_IN_OPEN_CONFIRM,
            State::Established => subcode::fsm::UNEXPECTED_IN_ESTABLISHED,
            _ => subcode::fsm::UNSPECIFIED,
        };
        self.error(now, c, Notification::new(ErrorCode::FSM, sub));
    }

    fn on_open(&mut self, now: Instant, c: ConnId, frame: &Frame) {
        let view = match OpenView::new(frame.body()) {
            Ok(v) => v,
            Err(e) => return self.refuse(now, c, Notification::from(&e), e.to_string()),
        };
        let ibgp = self.cfg.ibgp();
        if let Err(e) = view.check_peer(self.cfg.peer_as, self.cfg.router_id, ibgp) {
            let detail = match e.kind {
                ErrorKind::BadPeerAs { asn } => {
                    format!("peer says AS {asn}, configured {}", self.cfg.peer_as)
                }
                ErrorKind::BadBgpIdentifier { id } => {
                    format!("peer's BGP identifier {id} is ours (iBGP)")
                }
                _ => e.to_string(),
            };
            return self.refuse(now, c, Notification::from(&e), detail);
        }
        // RFC 4271 §4.2: 0 is legal (no keepalives) unless a minimum is configured; 1 and
        // 2 were refused when the OPEN was parsed.
        let min = self.cfg.timing.min_hold_time;
        if min > 0 && view.hold_time() < min {
            let n = Notification::new(
                ErrorCode::OPEN_MESSAGE,
                subcode::open::UNACCEPTABLE_HOLD_TIME,
            );
            let detail = format!(
                "peer's hold time {} s is below our minimum {min} s",
                view.hold_time()
            );
            return self.refuse(now, c, n, detail);
        }
        let local = self.cfg.open();
        let negotiated = negotiate(&local, &view, ibgp);
        let missing = negotiated
            .missing_families
            .intersection(self.cfg.required_families);
        if !missing.is_empty() {
            // RFC 5492 §3: refuse with the capabilities we need in the data.
            let mut data = BytesMut::new();
            for f in missing.iter() {
                mp_capability(f).encode(&mut data);
            }
            let n = Notification::with_data(
                ErrorCode::OPEN_MESSAGE,
                subcode::open::UNSUPPORTED_CAPABILITY,
                data.freeze(),
            );
            let names: Vec<&str> = missing.iter().map(Family::name).collect();
            let detail = format!("peer lacks required {}", names.join(", "));
            return self.refuse(now, c, n, detail);
        }
        let remote_id = view.bgp_id();
        let peer = Box::new(Peer {
            negotiated,
            open: Open::from(&view),
        });
        if !self.resolve_collision(now, c, remote_id) {
            return;
        }
        let was_delayed = self.has(c, |x| matches!(x.state, ConnState::DelayOpen));
        if was_delayed {
            // RFC 4271 Event 20: OPEN while DelayOpen runs: ours, then our KEEPALIVE.
            self.timers.stop(Timer::DelayOpen(c));
            self.send_open(now, c);
        }
        let hold = peer.negotiated.hold_time;
        self.set_state(c, ConnState::OpenConfirm(peer));
        self.send_keepalive(now, c, hold);
        self.restart_hold(now, c);
    }

    /// RFC 4271 §6.8: an OPEN arrived on `c` while the other connection lives. Keeps the
    /// connection opened by the speaker with the higher BGP identifier; returns whether
    /// `c` survives.
    fn resolve_collision(&mut self, now: Instant, c: ConnId, remote_id: Ipv4Addr) -> bool {
        let other = c.other();
        let Some(o) = self.conns[other.index()].as_ref() else {
            return true;
        };
        let collision = Notification::new(ErrorCode::CEASE, subcode::cease::CONNECTION_COLLISION);
        match o.state {
            // Not yet speaking BGP: the connection that is, wins.
            ConnState::Connecting | ConnState::DelayOpen => {
                let reason = self.notify_reason(other, collision);
                self.drop_conn(now, other, reason, false);
                return true;
            }
            ConnState::Established(..) if !self.cfg.collision_detect_established => {
                let reason = self.notify_reason(c, collision);
                self.drop_conn(now, c, reason, false);
                return false;
            }
            _ => {}
        }
        let keep = if u32::from(self.cfg.router_id) > u32::from(remote_id) {
            ConnId::Outbound
        } else {
            ConnId::Inbound
        };
        let lose = keep.other();
        let reason = self.notify_reason(lose, collision);
        self.drop_conn(now, lose, reason, false);
        lose != c
    }

    fn on_established(&mut self, now: Instant, c: ConnId) {
        let Some(conn) = self.conns[c.index()].as_mut() else {
            return;
        };
        let ConnState::OpenConfirm(peer) =
            std::mem::replace(&mut conn.state, ConnState::Connecting)
        else {
            return;
        };
        let news = News::Established {
            conn: c,
            negotiated: Box::new(peer.negotiated.clone()),
            peer_open: Box::new(peer.open.clone()),
        };
        // `conn` borrows `self.conns`: push to the field, not through `self.push`.
        self.out.push_back(news.into());
        conn.state = ConnState::Established(peer, now);
        self.connect_retry_counter = 0;
        self.restart_hold(now, c);
        // Only one connection carries the session (RFC 4271 §6.8).
        let other = c.other();
        if self.conns[other.index()].is_some() {
            let n = Notification::new(ErrorCode::CEASE, subcode::cease::CONNECTION_COLLISION);
            let reason = self.notify_reason(other, n);
            self.drop_conn(now, other, reason, false);
        }
    }

    fn on_notification(&mut self, now: Instant, c: ConnId, body: &[u8]) {
        let Ok(v) = bgp_wire::notification::NotificationView::new(body) else {
            // RFC 4271 §6.4: a bad NOTIFICATION is logged, never answered.
            let reason = DownReason::ConnectionFailed("malformed NOTIFICATION".into());
            return self.close(now, c, reason, After::Fail, false);
        };
        let n = Notification::with_data(v.code, v.subcode, Bytes::copy_from_slice(v.data));
        let graceful = self.graceful_after(c, &n);
        // RFC 4271 §6.7: a Cease reports no error, only that the peer chose to close (its
        // administrator, a restart, a lack of resources, RFC 4486): a peer that sends one
        // and reconnects is never damped.
        let cease = n.code == ErrorCode::CEASE;
        // RFC 4271 Event 24: a version error in OpenSent is not held against the peer.
        let version = n.code == ErrorCode::OPEN_MESSAGE && n.subcode == 1;
        let after = if graceful || cease || version {
            After::FailUndamped
        } else {
            After::Fail
        };
        self.close(now, c, DownReason::NotificationReceived(n), after, graceful);
    }

    fn restart_hold(&mut self, now: Instant, c: ConnId) {
        if self.receive_paused {
            return;
        }
        let hold = self.conns[c.index()]
            .as_ref()
            .and_then(Conn::peer)
            .map(|p| p.negotiated.hold_time);
        match hold {
            Some(0) => self.timers.stop(Timer::Hold(c)),
            Some(h) => self
                .timers
                .set(Timer::Hold(c), now + Duration::from_secs(u64::from(h))),
            None => {}
        }
    }

    fn send_hold_time(&self, c: ConnId) -> Duration {
        self.cfg.timing.send_hold.unwrap_or_else(|| {
            let hold = self.conns[c.index()]
                .as_ref()
                .and_then(Conn::peer)
                .map_or(0, |p| p.negotiated.hold_time);
            Duration::from_secs(480).max(Duration::from_secs(2 * u64::from(hold)))
        })
    }

    fn on_timer(&mut self, now: Instant, t: Timer) {
        match t {
            Timer::ConnectRetry => {
                if !self.running {
                    return;
                }
                self.connect_retry_counter += 1;
                if self.has(ConnId::Outbound, |c| {
                    matches!(c.state, ConnState::Connecting)
                }) {
                    // RFC 4271 Connect, Event 9: drop the attempt and try again.
                    self.push(Action::Close(ConnId::Outbound));
                    self.conns[ConnId::Outbound.index()] = None;
                }
                if self.conns[ConnId::Outbound.index()].is_none() {
                    self.connect(now);
                }
            }
            Timer::IdleHold => self.on_start(now, true),
            Timer::Hold(c) => {
                let n = Notification::new(ErrorCode::HOLD_TIMER_EXPIRED, 0);
                self.error(now, c, n);
            }
            Timer::Keepalive(c) => {
                if let Some(hold) = self.conns[c.index()]
                    .as_ref()
                    .and_then(Conn::peer)
                    .map(|p| p.negotiated.hold_time)
                {
                    self.send_keepalive(now, c, hold);
                }
            }
            Timer::DelayOpen(c) => {
                if self.has(c, |x| matches!(x.state, ConnState::DelayOpen)) {
                    self.send_open(now, c);
                }
            }
            Timer::SendHold(c) => {
                let n = Notification::new(ErrorCode::SEND_HOLD_TIMER_EXPIRED, 0);
                self.error(now, c, n);
            }
        }
    }

    /// An error on `c`: NOTIFICATION, close, and Idle unless another connection lives.
    fn error(&mut self, now: Instant, c: ConnId, n: Notification) {
        let graceful = self.graceful_after(c, &n);
        let reason = self.notify_reason(c, n);
        self.close(now, c, reason, After::Fail, graceful);
    }

    /// Refuses the peer's OPEN on `c`: like [`Session::error`], with what did not match in
    /// words (`peer says AS 65001, configured 65000`).
    fn refuse(&mut self, now: Instant, c: ConnId, n: Notification, detail: String) {
        let sent = self.notify(c, &n);
        let reason = DownReason::OpenRefused {
            notification: n,
            sent,
            detail,
        };
        self.close(now, c, reason, After::Fail, false);
    }

    /// Sends `n` on `c` if allowed, and says what happened in words for `last_error`.
    fn notify_reason(&mut self, c: ConnId, n: Notification) -> DownReason {
        if self.notify(c, &n) {
            DownReason::NotificationSent(n)
        } else {
            DownReason::NotSent(n)
        }
    }

    /// Whether a NOTIFICATION on `c` leaves the peer's routes in place as stale.
    fn graceful_after(&self, c: ConnId, n: &Notification) -> bool {
        self.conns[c.index()]
            .as_ref()
            .and_then(Conn::peer)
            .is_some_and(|p| graceful_notification(&p.negotiated, &self.cfg, n))
    }

    /// Sends `n` on `c` if the RFC allows a NOTIFICATION there: after our OPEN, or before
    /// it with SendNOTIFICATIONwithoutOPEN.
    /// Returns whether it was sent.
    fn notify(&mut self, c: ConnId, n: &Notification) -> bool {
        let Some(conn) = self.conns[c.index()].as_ref() else {
            return false;
        };
        let tcp_up = !matches!(conn.state, ConnState::Connecting) || c == ConnId::Inbound;
        let allowed = tcp_up && (conn.open_sent || self.cfg.send_notification_without_open);
        if allowed {
            let mut b = BytesMut::new();
            n.encode(&mut b);
            self.send(c, b.freeze());
        }
        allowed
    }

    /// Forgets connection `c` and tells the driver to close it.
    fn drop_conn(&mut self, now: Instant, c: ConnId, reason: DownReason, graceful: bool) {
        let Some(conn) = self.conns[c.index()].take() else {
            return;
        };
        self.timers.stop_conn(c);
        self.push(Action::Close(c));
        if let ConnState::Established(_, since) = conn.state {
            if now.saturating_duration_since(since) >= self.cfg.timing.stable_time {
                self.failures = 0;
            }
            self.push(News::Down { reason, graceful });
        } else {
            self.push(News::Failed(reason));
        }
    }

    /// Closes `c`; when it was the last connection, the session goes where `after` says.
    /// `graceful`: the peer's routes are kept as stale (RFC 4724, RFC 8538).
    fn close(&mut self, now: Instant, c: ConnId, reason: DownReason, after: After, graceful: bool) {
        let was_established = self.has(c, |x| matches!(x.state, ConnState::Established(..)));
        self.drop_conn(now, c, reason, graceful);
        if was_established {
            // The session itself failed: the other connection cannot carry on for it.
            self.drop_conn(now, c.other(), DownReason::Stopped, false);
        } else if self.conns.iter().any(Option::is_some) {
            return; // The other connection carries on.
        }
        match after {
            After::Retry => self.arm_connect_retry(now),
            After::Fail | After::FailUndamped => {
                self.running = false;
                self.timers = Timers::default();
                self.connect_retry_counter += 1;
                self.arm_idle_hold(now, after == After::Fail);
            }
        }
    }

    fn arm_idle_hold(&mut self, now: Instant, damped: bool) {
        if damped {
            self.failures = self.failures.saturating_add(1);
        }
        if self.manual_stop || !self.cfg.allow_automatic_start {
            return;
        }
        let t = &self.cfg.timing;
        let d = if self.cfg.damp_peer_oscillations && self.failures > 1 {
            let factor = 1u32 << (self.failures - 1).min(16);
            t.idle_hold.saturating_mul(factor).min(t.idle_hold_max)
        } else {
            t.idle_hold
        };
        self.timers.set(Timer::IdleHold, now + d);
    }
}

/// The reason for closing a connection whose OPEN we held back (RFC 4271 §8.2.2, Connect
/// and Active: "any other event").
fn not_open() -> DownReason {
    DownReason::ConnectionFailed("message before OPEN".into())
}

/// Whether a NOTIFICATION ends the session gracefully (RFC 8538 §4: when both sides sent
/// the N bit, every NOTIFICATION but a Hard Reset keeps the peer's routes as stale).
fn graceful_notification(n: &Negotiated, cfg: &Config, notif: &Notification) -> bool {
    let ours = cfg
        .capabilities
        .iter()
        .any(|c| matches!(c, Capability::GracefulRestart(gr) if gr.notification));
    let theirs = n
        .peer_graceful_restart
        .as_ref()
        .is_some_and(|gr| gr.notification);
    ours && theirs
        && !(notif.code == ErrorCode::CEASE && notif.subcode == subcode::cease::HARD_RESET)
}

#[cfg(test)]
mod tests {
    use bgp_wire::capability::{GrFamily, GracefulRestart, LlgrFamily};
    use bgp_wire::{Afi, Safi};

    use super::*;

    /// A session for IPv4 and IPv6 unicast with graceful restart (N bit, 120 s) and
    /// long-lived graceful restart (stale time 3600 s), its R and F bits as given.
    fn gr_session(restart_state: bool, forwarding: bool) -> Session {
        let mut cfg = Config::new(65000, Ipv4Addr::new(10, 0, 0, 1), 65000);
        let afs = [(Afi::IPV4, Safi::UNICAST), (Afi::IPV6, Safi::UNICAST)];
        cfg.capabilities
            .push(Capability::GracefulRestart(GracefulRestart {
                restart_state,
                notification: true,
                restart_time: 120,
                families: afs
                    .iter()
                    .map(|&(afi, safi)| GrFamily {
                        afi,
                        safi,
                        forwarding,
                    })
                    .collect(),
            }));
        cfg.capabilities.push(Capability::LongLivedGracefulRestart(
            afs.iter()
                .map(|&(afi, safi)| LlgrFamily {
                    afi,
                    safi,
                    forwarding,
                    stale_time: 3600,
                })
                .collect(),
        ));
        Session::new(cfg)
    }

    /// The encoded OPEN of `s`.
    fn open_bytes(s: &Session) -> Vec<u8> {
        let mut out = BytesMut::new();
        s.config().open().encode(&mut out);
        out.to_vec()
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// The graceful restart capability (code 64, RFC 4724 §3) as it goes on the wire:
    /// flags and restart time, then AFI, SAFI and flags per family.
    fn gr_tlv(r: bool, f: bool) -> Vec<u8> {
        let flags = if r { 0xc0 } else { 0x40 }; // R, N (RFC 8538)
        let fam = if f { 0x80 } else { 0x00 };
        vec![64, 10, flags, 120, 0, 1, 1, fam, 0, 2, 1, fam]
    }

    /// The long-lived graceful restart capability (code 71, RFC 9494 §3): AFI, SAFI,
    /// flags and 24-bit stale time per family.
    fn llgr_tlv(f: bool) -> Vec<u8> {
        let fam = if f { 0x80 } else { 0x00 };
        vec![
            71, 14, 0, 1, 1, fam, 0, 0x0e, 0x10, 0, 2, 1, fam, 0, 0x0e, 0x10,
        ]
    }

    #[test]
    fn test_open_fresh_start_sets_neither_restart_nor_forwarding_bits() {
        let s = gr_session(false, false);
        let open = open_bytes(&s);
        assert!(contains(&open, &gr_tlv(false, false)), "{open:02x?}");
        assert!(contains(&open, &llgr_tlv(false)), "{open:02x?}");
    }

    #[test]
    fn test_keep_forwarding_sets_every_forwarding_bit_and_no_restart_bit() {
        let mut s = gr_session(false, false);
        s.keep_forwarding();
        let open = open_bytes(&s);
        assert!(contains(&open, &gr_tlv(false, true)), "{open:02x?}");
        assert!(contains(&open, &llgr_tlv(true)), "{open:02x?}");
        assert!(!contains(&open, &gr_tlv(false, false)), "{open:02x?}");
    }

    #[test]
    fn test_keep_forwarding_while_restarting_keeps_the_restart_bit() {
        let mut s = gr_session(true, true);
        s.keep_forwarding();
        let open = open_bytes(&s);
        assert!(contains(&open, &gr_tlv(true, true)), "{open:02x?}");
    }

    #[test]
    fn test_end_restart_clears_the_restart_bit_and_keeps_forwarding() {
        let mut s = gr_session(true, true);
        assert!(contains(&open_bytes(&s), &gr_tlv(true, true)));
        s.end_restart();
        let open = open_bytes(&s);
        assert!(contains(&open, &gr_tlv(false, true)), "{open:02x?}");
        assert!(contains(&open, &llgr_tlv(true)), "{open:02x?}");
        assert!(!contains(&open, &gr_tlv(true, true)), "{open:02x?}");
    }
}
