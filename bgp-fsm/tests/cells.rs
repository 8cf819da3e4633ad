//! One test per (state, event) cell of the RFC 4271 §8.2.2 state machine, driving a single
//! `Session` with real encoded messages on a virtual clock.
//!
//! Names are `test_<state>_<event>` with the RFC's event names (§8.1) in snake case; events
//! 14/17 are `tcp_connection_confirmed` (`Input::Accepted`), 16 is `tcp_cr_acked`
//! (`Input::Connected`). The session under test is A (192.0.2.1, AS 65001); its peer B
//! (192.0.2.2, AS 65002) has the higher BGP identifier, so B's connection (our inbound)
//! wins collisions (§6.8). The RFC runs one FSM per connection: the cells of Event 23 and
//! of the second-connection events look at the connection the event is about.
//!
//! A timer event in a state where that timer never runs cannot occur: its cell asserts the
//! timer is stopped. A cell the RFC says is ignored asserts no output and no change of
//! state, counter or timers. Each test's first comment line says what the RFC asks.
//! Deliberate departures from the RFC are tested as the machine behaves, and say so; every
//! other cell asserts what the RFC says.

mod util;

use std::time::{Duration, Instant};

use bgp_fsm::{Config, ConnId, DownReason, Input, Session, State, Timer};
use bgp_wire::capability::{Capability, GracefulRestart};
use bgp_wire::notification::subcode;
use bgp_wire::{ErrorCode, Notification};
use bytes::Bytes;
use util::{
    Out, encode_notification, encode_open, keepalive_bytes, peer_open, received, reduce,
    rfc_config, update_bytes,
};

const OUT: ConnId = ConnId::Outbound;
const IN: ConnId = ConnId::Inbound;
/// The peer proposes 30 s; we propose 90 s: 30 s is negotiated (§4.2), 10 s keepalives.
const PEER_HOLD: u16 = 30;
const HOLD: Duration = Duration::from_secs(30);
const KEEPALIVE: Duration = Duration::from_secs(10);
/// RFC 4271 §8: "A HoldTimer value of 4 minutes is suggested" while waiting for an OPEN.
const OPEN_HOLD: Duration = Duration::from_secs(240);
const CONNECT_RETRY: Duration = Duration::from_secs(120);
const IDLE_HOLD: Duration = Duration::from_secs(5);
const DELAY_OPEN: Duration = Duration::from_secs(5);

const ALL_TIMERS: [Timer; 10] = [
    Timer::ConnectRetry,
    Timer::IdleHold,
    Timer::Hold(OUT),
    Timer::Hold(IN),
    Timer::Keepalive(OUT),
    Timer::Keepalive(IN),
    Timer::DelayOpen(OUT),
    Timer::DelayOpen(IN),
    Timer::SendHold(OUT),
    Timer::SendHold(IN),
];

/// One session on a virtual clock.
struct Fsm {
    s: Session,
    now: Instant,
    our_open: Bytes,
}

impl Fsm {
    fn new(cfg: Config) -> Self {
        let our_open = encode_open(&cfg.open());
        Self {
            s: Session::new(cfg),
            now: Instant::now(),
            our_open,
        }
    }

    fn drain(&mut self) -> Vec<Out> {
        std::iter::from_fn(|| self.s.poll_output())
            .map(|o| reduce(o, &self.our_open))
            .collect()
    }

    fn handle(&mut self, input: Input) -> Vec<Out> {
        self.s.handle(self.now, input);
        self.drain()
    }

    /// The driver framed `bytes` from `conn`.
    fn rx(&mut self, conn: ConnId, bytes: &[u8]) -> Vec<Out> {
        let input = received(conn, bytes).expect("a whole message or a header error");
        self.handle(input)
    }

    fn start(&mut self) -> Vec<Out> {
        self.handle(Input::Start { automatic: false })
    }

    fn fail(&mut self, conn: ConnId) -> Vec<Out> {
        self.handle(Input::ConnectionFailed {
            conn,
            reason: RESET.into(),
        })
    }

    /// Jumps to `t`'s deadline, which must be the earliest, and fires it.
    fn fire(&mut self, t: Timer) -> Vec<Out> {
        let at = self
            .s
            .timer(t)
            .unwrap_or_else(|| panic!("{t:?} is not running"));
        assert_eq!(
            self.s.poll_timeout(),
            Some(at),
            "{t:?} is the next deadline"
        );
        self.now = at;
        self.s.handle_timeout(at);
        self.drain()
    }

    /// Fires the keepalive timers due before `t`, each sending one KEEPALIVE.
    fn keepalives_until(&mut self, t: Timer) {
        let end = self.s.timer(t).expect("running");
        while let Some(next) = self.s.poll_timeout().filter(|n| *n < end) {
            self.now = next;
            self.s.handle_timeout(next);
            let out = self.drain();
            assert!(matches!(out[..], [Out::Keepalive(_)]), "{out:?}");
        }
    }

    /// Lets `d` pass with no deadline in between.
    fn wait(&mut self, d: Duration) {
        self.now += d;
        assert!(self.s.poll_timeout().is_none_or(|t| t > self.now));
    }

    /// Time left on `t`.
    fn left(&self, t: Timer) -> Option<Duration> {
        self.s.timer(t).map(|at| at - self.now)
    }

    fn state(&self) -> State {
        self.s.state()
    }

    fn counter(&self) -> u32 {
        self.s.connect_retry_counter()
    }

    /// What an ignored event must leave alone.
    fn snapshot(&self) -> (State, u32, u32, bool, bool, Vec<Option<Instant>>) {
        (
            self.state(),
            self.counter(),
            self.s.failures(),
            self.s.has_conn(OUT),
            self.s.has_conn(IN),
            ALL_TIMERS.iter().map(|t| self.s.timer(*t)).collect(),
        )
    }

    /// Asserts that `input` is ignored: nothing out, nothing changed.
    fn ignores(&mut self, input: Input) {
        let before = self.snapshot();
        assert_eq!(self.handle(input), []);
        assert_eq!(self.snapshot(), before);
    }

    /// Asserts that none of `ts` is running.
    fn stopped(&self, ts: &[Timer]) {
        for t in ts {
            assert_eq!(self.s.timer(*t), None, "{t:?} runs in {}", self.state());
        }
    }
}

const RESET: &str = "connection reset by peer";

fn n(code: ErrorCode, sub: u8) -> Notification {
    Notification::new(code, sub)
}

fn cease(sub: u8) -> Notification {
    n(ErrorCode::CEASE, sub)
}

fn fsm_error(sub: u8) -> Notification {
    n(ErrorCode::FSM, sub)
}

fn hold_expired() -> Notification {
    n(ErrorCode::HOLD_TIMER_EXPIRED, 0)
}

fn sent(n: Notification) -> DownReason {
    DownReason::NotificationSent(n)
}

fn got(n: Notification) -> DownReason {
    DownReason::NotificationReceived(n)
}

fn tcp_failed() -> DownReason {
    DownReason::ConnectionFailed(RESET.into())
}

fn before_open() -> DownReason {
    DownReason::ConnectionFailed("message before OPEN".into())
}

fn open_bytes(hold: u16) -> Bytes {
    encode_open(&peer_open(hold))
}

/// A valid OPEN from B claiming AS 65009: OPEN Message Error 2/2 (Bad Peer AS).
fn bad_open() -> Bytes {
    let mut o = peer_open(PEER_HOLD);
    o.asn = 65009;
    o.capabilities
        .retain(|c| !matches!(c, Capability::FourOctetAs(_)));
    encode_open(&o)
}

/// A header whose marker is not all ones: Message Header Error 1/1.
fn bad_marker() -> Bytes {
    let mut b = keepalive_bytes().to_vec();
    b[3] = 0;
    b.into()
}

/// A header of type 9: Message Header Error 1/3 with the type as data (§6.1).
fn bad_type() -> Bytes {
    let mut b = keepalive_bytes().to_vec();
    b[18] = 9;
    b.into()
}

fn notification_bytes(n: &Notification) -> Bytes {
    encode_notification(n)
}

/// NOTIFICATION "Unsupported Version Number" (Event 24, NotifMsgVerErr), data: version 4.
fn version_error() -> Notification {
    Notification::with_data(
        ErrorCode::OPEN_MESSAGE,
        subcode::open::UNSUPPORTED_VERSION,
        &[0, 4][..],
    )
}

/// A NOTIFICATION that is neither a version error nor a Cease (Event 25): the peer's hold
/// timer expired. An error, damped; a Cease is not (see
/// `test_established_cease_received_undamped`).
fn peer_error() -> Notification {
    hold_expired()
}

fn assert_jittered(left: Option<Duration>, full: Duration) {
    let left = left.expect("timer running");
    assert!(
        left >= full.mul_f64(0.75) && left <= full,
        "{left:?} not in [0.75, 1] x {full:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Getting to a state.

/// Idle after an error (the peer never sent its OPEN: Hold Timer Expired in OpenSent): the
/// IdleHold timer runs (AllowAutomaticStart, damping).
fn idle_with(cfg: Config) -> Fsm {
    let mut f = open_sent_with(cfg);
    assert_eq!(
        f.fire(Timer::Hold(OUT)),
        error_to_idle(OUT, hold_expired(), State::OpenSent)
    );
    f
}

fn idle() -> Fsm {
    let f = idle_with(rfc_config());
    assert_failed_to_idle(&f, 1);
    f
}

/// A session never started.
fn fresh() -> Fsm {
    Fsm::new(rfc_config())
}

/// Connect: our outbound connection is in progress.
fn connect_with(cfg: Config) -> Fsm {
    let mut f = Fsm::new(cfg);
    assert_eq!(
        f.start(),
        [Out::Connect, Out::State(State::Idle, State::Connect)]
    );
    f
}

fn connect() -> Fsm {
    connect_with(rfc_config())
}

/// Connect with DelayOpen: TCP is up, our OPEN waits for the DelayOpenTimer.
fn connect_delay_open_with(mut cfg: Config) -> Fsm {
    cfg.delay_open = Some(DELAY_OPEN);
    let mut f = connect_with(cfg);
    assert_eq!(f.handle(Input::Connected), []);
    assert_eq!(f.state(), State::Connect);
    f
}

fn connect_delay_open() -> Fsm {
    connect_delay_open_with(rfc_config())
}

/// Active: no connection, ConnectRetryTimer running (OpenSent lost its connection).
fn active_with(cfg: Config) -> Fsm {
    let mut f = open_sent_with(cfg);
    f.fail(OUT);
    f.drain();
    assert_eq!(f.state(), State::Active);
    assert!(f.s.timer(Timer::ConnectRetry).is_some());
    f
}

fn active() -> Fsm {
    active_with(rfc_config())
}

/// Active with DelayOpen: a passive session accepted the peer's connection and holds its
/// OPEN back.
fn active_delay_open_with(mut cfg: Config) -> Fsm {
    cfg.passive = true;
    cfg.delay_open = Some(DELAY_OPEN);
    let mut f = Fsm::new(cfg);
    assert_eq!(f.start(), [Out::State(State::Idle, State::Active)]);
    assert_eq!(f.handle(Input::Accepted), []);
    assert_eq!(f.state(), State::Active);
    assert_eq!(f.left(Timer::DelayOpen(IN)), Some(DELAY_OPEN));
    f
}

fn active_delay_open() -> Fsm {
    active_delay_open_with(rfc_config())
}

/// OpenSent on our outbound connection.
fn open_sent_with(cfg: Config) -> Fsm {
    let mut f = connect_with(cfg);
    assert_eq!(
        f.handle(Input::Connected),
        [Out::Open(OUT), Out::State(State::Connect, State::OpenSent)]
    );
    f
}

fn open_sent() -> Fsm {
    open_sent_with(rfc_config())
}

/// OpenConfirm on our outbound connection, `hold` negotiated.
fn open_confirm_with(cfg: Config, peer_hold: u16) -> Fsm {
    let mut f = open_sent_with(cfg);
    assert_eq!(
        f.rx(OUT, &open_bytes(peer_hold)),
        [
            Out::Keepalive(OUT),
            Out::State(State::OpenSent, State::OpenConfirm)
        ]
    );
    f
}

fn open_confirm() -> Fsm {
    open_confirm_with(rfc_config(), PEER_HOLD)
}

/// Established on our outbound connection.
fn established_with(cfg: Config, peer_hold: u16) -> Fsm {
    let mut f = open_confirm_with(cfg, peer_hold);
    assert_eq!(
        f.rx(OUT, &keepalive_bytes()),
        [
            Out::Established(OUT, peer_hold.min(90)),
            Out::State(State::OpenConfirm, State::Established)
        ]
    );
    f
}

fn established() -> Fsm {
    established_with(rfc_config(), PEER_HOLD)
}

/// Established on the peer's connection (our outbound attempt was abandoned).
fn established_inbound() -> Fsm {
    let mut f = connect();
    f.handle(Input::Accepted);
    f.rx(IN, &open_bytes(PEER_HOLD));
    f.rx(IN, &keepalive_bytes());
    assert_eq!(f.s.established().map(|(c, _)| c), Some(IN));
    assert!(!f.s.has_conn(OUT));
    f
}

/// Sends `n` and closes `c`, a connection that never reached Established, then Idle.
fn error_to_idle(c: ConnId, n: Notification, from: State) -> Vec<Out> {
    vec![
        Out::Notification(c, n.clone()),
        Out::Close(c),
        Out::Failed(sent(n)),
        Out::State(from, State::Idle),
    ]
}

/// The peer's OPEN refused on `c` with `n` (sent when `sent`), what did not match in words.
fn refused_to_idle(c: ConnId, n: Notification, from: State, detail: &str, sent: bool) -> Vec<Out> {
    let mut v = Vec::new();
    if sent {
        v.push(Out::Notification(c, n.clone()));
    }
    v.push(Out::Close(c));
    v.push(Out::Failed(DownReason::OpenRefused {
        notification: n,
        sent,
        detail: detail.to_owned(),
    }));
    v.push(Out::State(from, State::Idle));
    v
}

/// What `bad_open()` gets refused for.
const BAD_AS: &str = "peer says AS 65009, configured 65002";

/// Idle after an error: ConnectRetryCounter incremented, IdleHold armed, nothing else, and
/// the first failure counted for DampPeerOscillations.
fn assert_failed_to_idle(f: &Fsm, counter: u32) {
    assert_idle_hold(f, counter);
    assert_eq!(f.s.failures(), 1, "a failure for damping");
}

/// Idle after an end the peer is not punished for (a Cease or version error received, a
/// graceful restart): as [`assert_failed_to_idle`], but no failure counted for damping.
fn assert_undamped_to_idle(f: &Fsm, counter: u32) {
    assert_idle_hold(f, counter);
    assert_eq!(f.s.failures(), 0, "no failure for damping");
}

fn assert_idle_hold(f: &Fsm, counter: u32) {
    assert_eq!(f.state(), State::Idle);
    assert_eq!(f.counter(), counter);
    assert_eq!(f.left(Timer::IdleHold), Some(IDLE_HOLD));
    assert_eq!(f.s.poll_timeout(), f.s.timer(Timer::IdleHold));
    assert!(!f.s.has_conn(OUT) && !f.s.has_conn(IN));
}

/// Idle after a stop: no timer at all.
fn assert_stopped(f: &Fsm) {
    assert_eq!(f.state(), State::Idle);
    assert_eq!(f.s.poll_timeout(), None);
    assert!(!f.s.has_conn(OUT) && !f.s.has_conn(IN));
}

fn stop(automatic: bool) -> Input {
    Input::Stop {
        automatic,
        notification: None,
    }
}

fn start(automatic: bool) -> Input {
    Input::Start { automatic }
}

fn update_error() -> Input {
    Input::UpdateError(n(
        ErrorCode::UPDATE_MESSAGE,
        subcode::update::MALFORMED_ATTRIBUTE_LIST,
    ))
}

// ---------------------------------------------------------------------------------------
// Idle

#[test]
fn test_idle_manual_start() {
    // RFC: Event 1: ConnectRetryCounter = 0, start ConnectRetryTimer, connect, → Connect.
    let mut f = fresh();
    assert_eq!(
        f.start(),
        [Out::Connect, Out::State(State::Idle, State::Connect)]
    );
    assert_jittered(f.left(Timer::ConnectRetry), CONNECT_RETRY);
    assert_eq!(f.counter(), 0);
    assert!(f.s.has_conn(OUT));
}

#[test]
fn test_idle_manual_start_passive() {
    // RFC: Event 4: start ConnectRetryTimer, listen, → Active (no outbound connection).
    // Deliberate deviation: a passive session never connects out, so it arms no
    // ConnectRetryTimer at all (Calico relies on one side of each link connecting).
    let mut cfg = rfc_config();
    cfg.passive = true;
    let mut f = Fsm::new(cfg);
    assert_eq!(f.start(), [Out::State(State::Idle, State::Active)]);
    assert_eq!(f.s.poll_timeout(), None);
}

#[test]
fn test_idle_manual_start_while_idle_hold_runs() {
    // RFC: Event 1 is honoured in Idle whatever the damping: the operator overrides it.
    let mut f = idle();
    assert_eq!(
        f.start(),
        [Out::Connect, Out::State(State::Idle, State::Connect)]
    );
    assert_eq!(f.s.timer(Timer::IdleHold), None);
    assert_eq!(f.counter(), 0);
}

#[test]
fn test_idle_manual_stop() {
    // RFC: Event 2 is ignored in Idle.
    fresh().ignores(stop(false));
}

#[test]
fn test_idle_automatic_start() {
    // RFC: Event 3 in Idle acts as Event 1: ConnectRetryTimer, connect, → Connect.
    let mut f = fresh();
    assert_eq!(
        f.handle(start(true)),
        [Out::Connect, Out::State(State::Idle, State::Connect)]
    );
}

#[test]
fn test_idle_automatic_start_while_idle_hold_runs() {
    // RFC: Event 3 → Connect. Deliberate deviation: with the IdleHold timer running
    // (DampPeerOscillations) it is ignored; the timer's expiry starts the session.
    let mut f = idle();
    f.ignores(start(true));
    assert_eq!(
        f.fire(Timer::IdleHold),
        [Out::Connect, Out::State(State::Idle, State::Connect)]
    );
}

#[test]
fn test_idle_automatic_stop() {
    // RFC: Event 8 is ignored in Idle.
    idle().ignores(stop(true));
}

#[test]
fn test_idle_connect_retry_timer_expires() {
    // RFC: Event 9 is ignored in Idle; the ConnectRetryTimer never runs there.
    idle().stopped(&[Timer::ConnectRetry]);
}

#[test]
fn test_idle_hold_timer_expires() {
    // RFC: Event 10 is ignored in Idle; no HoldTimer runs there.
    idle().stopped(&[Timer::Hold(OUT), Timer::Hold(IN)]);
}

#[test]
fn test_idle_keepalive_timer_expires() {
    // RFC: Event 11 is ignored in Idle; no KeepaliveTimer runs there.
    idle().stopped(&[Timer::Keepalive(OUT), Timer::Keepalive(IN)]);
}

#[test]
fn test_idle_delay_open_timer_expires() {
    // RFC: Event 12 is ignored in Idle; no DelayOpenTimer runs there.
    idle().stopped(&[Timer::DelayOpen(OUT), Timer::DelayOpen(IN)]);
}

#[test]
fn test_idle_idle_hold_timer_expires() {
    // RFC: Event 13 (DampPeerOscillations) restarts as AutomaticStart: → Connect, counter 0.
    let mut f = idle();
    assert_eq!(f.counter(), 1);
    assert_eq!(
        f.fire(Timer::IdleHold),
        [Out::Connect, Out::State(State::Idle, State::Connect)]
    );
    assert_jittered(f.left(Timer::ConnectRetry), CONNECT_RETRY);
    assert_eq!(f.counter(), 0);
}

#[test]
fn test_idle_idle_hold_timer_is_damped() {
    // RFC: Event 13 with DampPeerOscillations: each failure in a row doubles the idle time.
    // Here each restart connects and the peer's OPEN never comes (Hold Timer Expired).
    let mut f = idle();
    for (failures, want) in (1..).zip([5, 10, 20, 40, 80, 120, 120]) {
        assert_eq!(f.s.failures(), failures);
        assert_eq!(f.left(Timer::IdleHold), Some(Duration::from_secs(want)));
        assert_eq!(
            f.fire(Timer::IdleHold),
            [Out::Connect, Out::State(State::Idle, State::Connect)]
        );
        f.handle(Input::Connected);
        assert_eq!(
            f.fire(Timer::Hold(OUT)),
            error_to_idle(OUT, hold_expired(), State::OpenSent)
        );
    }
}

#[test]
fn test_idle_tcp_connection_confirmed() {
    // RFC: "In this state, BGP FSM refuses all incoming BGP connections for this peer."
    // A session never started: the machine tells the driver to close the accepted
    // connection and stays Idle.
    let mut f = fresh();
    assert_eq!(f.handle(Input::Accepted), [Out::Close(IN)]);
    assert_eq!(f.state(), State::Idle);
    assert!(!f.s.has_conn(IN));
    assert_eq!(f.s.poll_timeout(), None);
}

#[test]
fn test_idle_after_error_accepts_inbound() {
    // RFC: Idle refuses connections. Deliberate deviation (BIRD, FRR): after an error, while
    // the IdleHoldTimer runs, the peer's connection is an AutomaticStart with passive TCP
    // (Event 5: stop IdleHoldTimer, counter 0, → Active) then Event 17 (send OPEN, HoldTimer
    // 4 min, → OpenSent). The idle hold time only delays our own connects.
    let mut f = idle();
    assert_eq!(
        f.handle(Input::Accepted),
        [Out::Open(IN), Out::State(State::Idle, State::OpenSent)]
    );
    assert_eq!(f.left(Timer::Hold(IN)), Some(OPEN_HOLD));
    assert_eq!(f.s.poll_timeout(), f.s.timer(Timer::Hold(IN)));
    f.stopped(&[Timer::IdleHold, Timer::ConnectRetry]);
    assert_eq!(f.counter(), 0);
    // The failure still counts for damping until a session is stable.
    assert_eq!(f.s.failures(), 1);
    // We do not connect out as well: the peer's connection is the one.
    assert!(f.s.has_conn(IN) && !f.s.has_conn(OUT));
    // And the session comes up on it.
    assert_eq!(
        f.rx(IN, &open_bytes(PEER_HOLD)),
        [
            Out::Keepalive(IN),
            Out::State(State::OpenSent, State::OpenConfirm)
        ]
    );
    assert_eq!(
        f.rx(IN, &keepalive_bytes()),
        [
            Out::Established(IN, PEER_HOLD),
            Out::State(State::OpenConfirm, State::Established)
        ]
    );
}

#[test]
fn test_idle_after_error_accepts_inbound_with_delay_open() {
    // As `test_idle_after_error_accepts_inbound`, with DelayOpen: Event 5 → Active, then
    // Event 17 with DelayOpen: start the DelayOpenTimer, stay in Active.
    let mut cfg = rfc_config();
    cfg.delay_open = Some(DELAY_OPEN);
    let mut f = connect_delay_open_with(cfg);
    assert_eq!(
        f.rx(OUT, &keepalive_bytes()),
        [
            Out::Close(OUT),
            Out::Failed(before_open()),
            Out::State(State::Connect, State::Idle)
        ]
    );
    assert_failed_to_idle(&f, 1);
    assert_eq!(
        f.handle(Input::Accepted),
        [Out::State(State::Idle, State::Active)]
    );
    assert_eq!(f.left(Timer::DelayOpen(IN)), Some(DELAY_OPEN));
    assert_eq!(f.s.poll_timeout(), f.s.timer(Timer::DelayOpen(IN)));
    f.stopped(&[Timer::IdleHold, Timer::ConnectRetry]);
    assert_eq!(f.counter(), 0);
    assert_eq!(
        f.fire(Timer::DelayOpen(IN)),
        [Out::Open(IN), Out::State(State::Active, State::OpenSent)]
    );
}

#[test]
fn test_idle_after_automatic_stop_accepts_inbound() {
    // As `test_idle_after_error_accepts_inbound`: an AutomaticStop (Event 8) is not an
    // administrative shutdown; the peer's connection restarts the session at once.
    let mut f = established();
    f.handle(stop(true));
    assert_failed_to_idle(&f, 1);
    assert_eq!(
        f.handle(Input::Accepted),
        [Out::Open(IN), Out::State(State::Idle, State::OpenSent)]
    );
    f.stopped(&[Timer::IdleHold]);
    assert!(f.s.has_conn(IN));
}

#[test]
fn test_idle_manual_stop_refuses_inbound() {
    // RFC: Idle refuses all incoming connections: after a ManualStop the session stays down
    // until a ManualStart, whatever the peer does.
    let mut f = established();
    f.handle(stop(false));
    assert_stopped(&f);
    assert_eq!(f.handle(Input::Accepted), [Out::Close(IN)]);
    assert_stopped(&f);

    // A ManualStop in Idle cancels the automatic restart, and with it the acceptance.
    let mut f = idle();
    assert_eq!(f.handle(stop(false)), []);
    assert_stopped(&f);
    assert_eq!(f.handle(Input::Accepted), [Out::Close(IN)]);
    assert_stopped(&f);

    // A ManualStart takes connections again.
    assert_eq!(
        f.start(),
        [Out::Connect, Out::State(State::Idle, State::Connect)]
    );
    assert_eq!(
        f.handle(Input::Accepted),
        [Out::Open(IN), Out::State(State::Connect, State::OpenSent)]
    );
}

#[test]
fn test_idle_after_error_refuses_inbound_without_automatic_start() {
    // RFC: Idle refuses connections. Without AllowAutomaticStart the session never
    // restarts by itself after an error (no IdleHoldTimer), so the peer cannot restart it
    // either: only a ManualStart does.
    let mut cfg = rfc_config();
    cfg.allow_automatic_start = false;
    let mut f = idle_with(cfg);
    assert_eq!(f.s.poll_timeout(), None);
    assert_eq!(f.handle(Input::Accepted), [Out::Close(IN)]);
    assert_eq!(f.state(), State::Idle);
    assert!(!f.s.has_conn(IN));
}

#[test]
fn test_idle_tcp_cr_acked() {
    // RFC: Event 16 is ignored in Idle; a connection nobody asked for is closed.
    let mut f = idle();
    assert_eq!(f.handle(Input::Connected), [Out::Close(OUT)]);
    assert_eq!(f.state(), State::Idle);
    assert!(!f.s.has_conn(OUT));
}

#[test]
fn test_idle_tcp_connection_fails() {
    // RFC: Event 18 is ignored in Idle.
    let mut f = idle();
    f.ignores(Input::ConnectionFailed {
        conn: OUT,
        reason: RESET.into(),
    });
}

#[test]
fn test_idle_bgp_open() {
    // RFC: Event 19 is ignored in Idle (a stale message of a closed connection).
    let mut f = idle();
    f.ignores(received(OUT, &open_bytes(PEER_HOLD)).unwrap());
    f.ignores(received(IN, &open_bytes(PEER_HOLD)).unwrap());
}

#[test]
fn test_idle_bgp_open_with_delay_open_timer_running() {
    // RFC: Event 20 is ignored in Idle; no DelayOpenTimer runs there.
    let mut cfg = rfc_config();
    cfg.delay_open = Some(DELAY_OPEN);
    let mut f = Fsm::new(cfg);
    f.ignores(received(IN, &open_bytes(PEER_HOLD)).unwrap());
    f.stopped(&[Timer::DelayOpen(OUT), Timer::DelayOpen(IN)]);
}

#[test]
fn test_idle_bgp_header_err() {
    // RFC: Event 21 is ignored in Idle.
    let mut f = idle();
    f.ignores(received(OUT, &bad_marker()).unwrap());
}

#[test]
fn test_idle_bgp_open_msg_err() {
    // RFC: Event 22 is ignored in Idle.
    idle().ignores(received(OUT, &bad_open()).unwrap());
}

#[test]
fn test_idle_open_collision_dump() {
    // RFC: Event 23 is ignored in Idle; with no connection there is nothing to collide.
    let f = idle();
    assert!(!f.s.has_conn(OUT) && !f.s.has_conn(IN));
}

#[test]
fn test_idle_notif_msg_ver_err() {
    // RFC: Event 24 is ignored in Idle.
    idle().ignores(received(OUT, &notification_bytes(&version_error())).unwrap());
}

#[test]
fn test_idle_notif_msg() {
    // RFC: Event 25 is ignored in Idle.
    idle().ignores(received(OUT, &notification_bytes(&peer_error())).unwrap());
}

#[test]
fn test_idle_keepalive_msg() {
    // RFC: Event 26 is ignored in Idle.
    idle().ignores(received(OUT, &keepalive_bytes()).unwrap());
}

#[test]
fn test_idle_update_msg() {
    // RFC: Event 27 is ignored in Idle.
    idle().ignores(received(OUT, &update_bytes()).unwrap());
}

#[test]
fn test_idle_update_msg_err() {
    // RFC: Event 28 is ignored in Idle.
    idle().ignores(update_error());
}

// ---------------------------------------------------------------------------------------
// Connect

#[test]
fn test_connect_manual_start() {
    // RFC: the start events (1, 3-7) are ignored in Connect.
    connect().ignores(start(false));
}

#[test]
fn test_connect_automatic_start() {
    // RFC: the start events (1, 3-7) are ignored in Connect.
    connect().ignores(start(true));
}

#[test]
fn test_connect_manual_stop() {
    // RFC: Event 2: drop TCP, ConnectRetryCounter = 0, stop ConnectRetryTimer, → Idle.
    let mut f = connect();
    assert_eq!(
        f.handle(stop(false)),
        [
            Out::Close(OUT),
            Out::Failed(DownReason::Stopped),
            Out::State(State::Connect, State::Idle)
        ]
    );
    assert_stopped(&f);
    assert_eq!(f.counter(), 0);
}

#[test]
fn test_connect_automatic_stop() {
    // RFC: Event 8 ("any other event"): drop TCP, counter + 1, damping, → Idle.
    let mut f = connect();
    assert_eq!(
        f.handle(stop(true)),
        [
            Out::Close(OUT),
            Out::Failed(DownReason::Stopped),
            Out::State(State::Connect, State::Idle)
        ]
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_connect_connect_retry_timer_expires() {
    // RFC: Event 9: drop TCP, restart ConnectRetryTimer, connect again, stay in Connect.
    let mut f = connect();
    assert_eq!(f.fire(Timer::ConnectRetry), [Out::Close(OUT), Out::Connect]);
    assert_eq!(f.state(), State::Connect);
    assert_jittered(f.left(Timer::ConnectRetry), CONNECT_RETRY);
    // The RFC leaves the counter alone here; the machine counts the attempt.
    assert_eq!(f.counter(), 1);
}

#[test]
fn test_connect_hold_timer_expires() {
    // RFC: Event 10 → Idle; no HoldTimer runs before an OPEN is sent, so it cannot occur.
    connect().stopped(&[Timer::Hold(OUT), Timer::Hold(IN)]);
    connect_delay_open().stopped(&[Timer::Hold(OUT), Timer::Hold(IN)]);
}

#[test]
fn test_connect_keepalive_timer_expires() {
    // RFC: Event 11 → Idle; no KeepaliveTimer runs in Connect, so it cannot occur.
    connect_delay_open().stopped(&[Timer::Keepalive(OUT), Timer::Keepalive(IN)]);
}

#[test]
fn test_connect_delay_open_timer_expires() {
    // RFC: Event 12: send OPEN, HoldTimer to a large value (4 min), → OpenSent.
    let mut f = connect_delay_open();
    assert_eq!(
        f.fire(Timer::DelayOpen(OUT)),
        [Out::Open(OUT), Out::State(State::Connect, State::OpenSent)]
    );
    assert_eq!(f.left(Timer::Hold(OUT)), Some(OPEN_HOLD));
    f.stopped(&[Timer::DelayOpen(OUT), Timer::ConnectRetry]);
}

#[test]
fn test_connect_idle_hold_timer_expires() {
    // RFC: Event 13 → Idle; the IdleHoldTimer stops when the session starts.
    connect().stopped(&[Timer::IdleHold]);
}

#[test]
fn test_connect_tcp_connection_confirmed() {
    // RFC: Event 17: stop ConnectRetryTimer, send OPEN, HoldTimer 4 min, → OpenSent.
    let mut f = connect();
    assert_eq!(
        f.handle(Input::Accepted),
        [Out::Open(IN), Out::State(State::Connect, State::OpenSent)]
    );
    assert_eq!(f.left(Timer::Hold(IN)), Some(OPEN_HOLD));
    f.stopped(&[Timer::ConnectRetry]);
    // Our own attempt is still tracked for collision detection (§6.8).
    assert!(f.s.has_conn(OUT));
}

#[test]
fn test_connect_tcp_cr_acked() {
    // RFC: Event 16: stop ConnectRetryTimer, send OPEN, HoldTimer 4 min, → OpenSent.
    let mut f = connect();
    assert_eq!(
        f.handle(Input::Connected),
        [Out::Open(OUT), Out::State(State::Connect, State::OpenSent)]
    );
    assert_eq!(f.left(Timer::Hold(OUT)), Some(OPEN_HOLD));
    f.stopped(&[Timer::ConnectRetry]);
}

#[test]
fn test_connect_tcp_cr_acked_with_delay_open() {
    // RFC: Event 16 with DelayOpen: stop ConnectRetryTimer, start DelayOpenTimer, stay.
    let mut cfg = rfc_config();
    cfg.delay_open = Some(DELAY_OPEN);
    let mut f = connect_with(cfg);
    assert_eq!(f.handle(Input::Connected), []);
    assert_eq!(f.state(), State::Connect);
    assert_eq!(f.left(Timer::DelayOpen(OUT)), Some(DELAY_OPEN));
    f.stopped(&[Timer::ConnectRetry, Timer::Hold(OUT)]);
}

#[test]
fn test_connect_tcp_connection_fails() {
    // RFC: Event 18 without DelayOpenTimer: stop ConnectRetryTimer, drop TCP, → Idle.
    // Deliberate deviation (BIRD, FRR): as with the DelayOpenTimer running, restart the
    // ConnectRetryTimer, keep listening, → Active. Neither counted nor damped.
    let mut f = connect();
    assert_eq!(
        f.fail(OUT),
        [
            Out::Close(OUT),
            Out::Failed(tcp_failed()),
            Out::State(State::Connect, State::Active)
        ]
    );
    assert_jittered(f.left(Timer::ConnectRetry), CONNECT_RETRY);
    assert_eq!(f.s.poll_timeout(), f.s.timer(Timer::ConnectRetry));
    f.stopped(&[Timer::IdleHold]);
    assert_eq!(f.counter(), 0);
    assert_eq!(f.s.failures(), 0);
    assert!(!f.s.has_conn(OUT) && !f.s.has_conn(IN));
}

#[test]
fn test_connect_tcp_failed_goes_active() {
    // What Active after a failed connect means: the peer's connection is taken at once,
    // our own attempts come every ConnectRetry time, and a hundred refusals in a row leave
    // the damping count alone, so the next real error waits the base idle hold time.
    let mut f = connect();
    f.fail(OUT);
    assert_eq!(
        f.handle(Input::Accepted),
        [Out::Open(IN), Out::State(State::Active, State::OpenSent)]
    );
    f.stopped(&[Timer::ConnectRetry, Timer::IdleHold]);

    let mut f = connect();
    for attempt in 1..=100 {
        assert_eq!(
            f.fail(OUT),
            [
                Out::Close(OUT),
                Out::Failed(tcp_failed()),
                Out::State(State::Connect, State::Active)
            ]
        );
        assert_jittered(f.left(Timer::ConnectRetry), CONNECT_RETRY);
        assert_eq!(
            f.fire(Timer::ConnectRetry),
            [Out::Connect, Out::State(State::Active, State::Connect)]
        );
        assert_eq!(f.counter(), attempt);
        assert_eq!(f.s.failures(), 0);
    }
    f.handle(Input::Connected);
    assert_eq!(
        f.fire(Timer::Hold(OUT)),
        error_to_idle(OUT, hold_expired(), State::OpenSent)
    );
    assert_failed_to_idle(&f, 101);
}

#[test]
fn test_connect_tcp_connection_fails_with_delay_open() {
    // RFC: Event 18 with DelayOpenTimer running: restart ConnectRetryTimer, stop
    // DelayOpenTimer, keep listening, → Active.
    let mut f = connect_delay_open();
    assert_eq!(
        f.fail(OUT),
        [
            Out::Close(OUT),
            Out::Failed(tcp_failed()),
            Out::State(State::Connect, State::Active)
        ]
    );
    assert_jittered(f.left(Timer::ConnectRetry), CONNECT_RETRY);
    f.stopped(&[Timer::DelayOpen(OUT)]);
    assert_eq!(f.counter(), 0);
}

#[test]
fn test_connect_bgp_open() {
    // RFC: Event 19 → Idle, but an OPEN needs TCP: without DelayOpen, Connect has none, and
    // the machine ignores a message on a connection that is not up.
    connect().ignores(received(OUT, &open_bytes(PEER_HOLD)).unwrap());
}

#[test]
fn test_connect_bgp_open_with_delay_open_timer_running() {
    // RFC: Event 20: stop ConnectRetryTimer and DelayOpenTimer, send OPEN and KEEPALIVE,
    // start KeepaliveTimer, HoldTimer to the negotiated value, → OpenConfirm.
    let mut f = connect_delay_open();
    assert_eq!(
        f.rx(OUT, &open_bytes(PEER_HOLD)),
        [
            Out::Open(OUT),
            Out::Keepalive(OUT),
            Out::State(State::Connect, State::OpenConfirm)
        ]
    );
    assert_eq!(f.left(Timer::Hold(OUT)), Some(HOLD));
    assert_jittered(f.left(Timer::Keepalive(OUT)), KEEPALIVE);
    f.stopped(&[Timer::DelayOpen(OUT), Timer::ConnectRetry]);
}

#[test]
fn test_connect_bgp_header_err() {
    // RFC: Event 21: NOTIFICATION only with SendNOTIFICATIONwithoutOPEN, drop TCP,
    // counter + 1, damping, → Idle.
    let mut f = connect_delay_open();
    let n = n(
        ErrorCode::MESSAGE_HEADER,
        subcode::header::CONNECTION_NOT_SYNCHRONIZED,
    );
    assert_eq!(
        f.rx(OUT, &bad_marker()),
        // (sic: the reason says NotificationSent, though none went out.)
        [
            Out::Close(OUT),
            Out::Failed(DownReason::NotSent(n)),
            Out::State(State::Connect, State::Idle)
        ]
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_connect_bgp_header_err_send_notification_without_open() {
    // RFC: Event 21 with SendNOTIFICATIONwithoutOPEN: the NOTIFICATION goes out first.
    let mut cfg = rfc_config();
    cfg.send_notification_without_open = true;
    let mut f = connect_delay_open_with(cfg);
    let n = n(
        ErrorCode::MESSAGE_HEADER,
        subcode::header::CONNECTION_NOT_SYNCHRONIZED,
    );
    assert_eq!(
        f.rx(OUT, &bad_marker()),
        error_to_idle(OUT, n, State::Connect)
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_connect_bgp_open_msg_err() {
    // RFC: Event 22: NOTIFICATION only with SendNOTIFICATIONwithoutOPEN, drop TCP,
    // counter + 1, damping, → Idle.
    let mut f = connect_delay_open();
    let n = n(ErrorCode::OPEN_MESSAGE, subcode::open::BAD_PEER_AS);
    assert_eq!(
        f.rx(OUT, &bad_open()),
        refused_to_idle(OUT, n, State::Connect, BAD_AS, false)
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_connect_open_collision_dump() {
    // RFC: Event 23 on the Connect connection ("any other event"): drop its TCP. Here our
    // connection waits under DelayOpen when the peer's OPEN arrives on its own connection:
    // ours is dumped without a NOTIFICATION (no OPEN went out on it).
    let mut f = connect_delay_open();
    assert_eq!(f.handle(Input::Accepted), []);
    assert_eq!(
        f.rx(IN, &open_bytes(PEER_HOLD)),
        [
            Out::Close(OUT),
            Out::Failed(DownReason::NotSent(cease(
                subcode::cease::CONNECTION_COLLISION
            ))),
            Out::Open(IN),
            Out::Keepalive(IN),
            Out::State(State::Connect, State::OpenConfirm)
        ]
    );
    assert!(!f.s.has_conn(OUT));
}

#[test]
fn test_connect_notif_msg_ver_err() {
    // RFC: Event 24 with DelayOpenTimer running: stop timers, drop TCP, → Idle, without
    // counting or damping.
    let mut f = connect_delay_open();
    assert_eq!(
        f.rx(OUT, &notification_bytes(&version_error())),
        [
            Out::Close(OUT),
            Out::Failed(got(version_error())),
            Out::State(State::Connect, State::Idle)
        ]
    );
    // Not counted as a failure for damping; the ConnectRetryCounter still counts it.
    assert_undamped_to_idle(&f, 1);
}

#[test]
fn test_connect_notif_msg() {
    // RFC: Event 25 ("any other event"): drop TCP, counter + 1, damping, → Idle.
    let mut f = connect_delay_open();
    assert_eq!(
        f.rx(OUT, &notification_bytes(&peer_error())),
        [
            Out::Close(OUT),
            Out::Failed(got(peer_error())),
            Out::State(State::Connect, State::Idle)
        ]
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_connect_keepalive_msg() {
    // RFC: Event 26 ("any other event"): drop TCP, counter + 1, damping, → Idle.
    let mut f = connect_delay_open();
    assert_eq!(
        f.rx(OUT, &keepalive_bytes()),
        [
            Out::Close(OUT),
            Out::Failed(before_open()),
            Out::State(State::Connect, State::Idle)
        ]
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_connect_update_msg() {
    // RFC: Event 27 ("any other event"): drop TCP, counter + 1, damping, → Idle.
    let mut f = connect_delay_open();
    assert_eq!(
        f.rx(OUT, &update_bytes()),
        [
            Out::Close(OUT),
            Out::Failed(before_open()),
            Out::State(State::Connect, State::Idle)
        ]
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_connect_update_msg_err() {
    // RFC: Event 28 → Idle; it only follows an UPDATE, which Connect already refused (Event
    // 27), so the RIB cannot report one: the machine ignores it outside Established.
    connect_delay_open().ignores(update_error());
}

// ---------------------------------------------------------------------------------------
// Active

#[test]
fn test_active_manual_start() {
    // RFC: the start events (1, 3-7) are ignored in Active.
    active().ignores(start(false));
}

#[test]
fn test_active_automatic_start() {
    // RFC: the start events (1, 3-7) are ignored in Active.
    active().ignores(start(true));
}

#[test]
fn test_active_manual_stop() {
    // RFC: Event 2: drop TCP, ConnectRetryCounter = 0, stop ConnectRetryTimer, → Idle.
    let mut f = active();
    assert_eq!(
        f.handle(stop(false)),
        [Out::State(State::Active, State::Idle)]
    );
    assert_stopped(&f);
    assert_eq!(f.counter(), 0);
}

#[test]
fn test_active_manual_stop_with_delay_open() {
    // RFC: Event 2 with DelayOpenTimer running: Cease only with SendNOTIFICATIONwithoutOPEN.
    let mut f = active_delay_open();
    assert_eq!(
        f.handle(stop(false)),
        [
            Out::Close(IN),
            Out::Failed(DownReason::Stopped),
            Out::State(State::Active, State::Idle)
        ]
    );
    assert_stopped(&f);

    let mut cfg = rfc_config();
    cfg.send_notification_without_open = true;
    let mut f = active_delay_open_with(cfg);
    assert_eq!(
        f.handle(stop(false)),
        [
            Out::Notification(IN, cease(subcode::cease::ADMIN_SHUTDOWN)),
            Out::Close(IN),
            Out::Failed(DownReason::NotificationSent(cease(
                subcode::cease::ADMIN_SHUTDOWN
            ))),
            Out::State(State::Active, State::Idle)
        ]
    );
    assert_stopped(&f);
}

#[test]
fn test_active_automatic_stop() {
    // RFC: Event 8 ("any other event"): ConnectRetryTimer = 0, counter + 1, damping, → Idle.
    let mut f = active();
    assert_eq!(
        f.handle(stop(true)),
        [Out::State(State::Active, State::Idle)]
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_active_connect_retry_timer_expires() {
    // RFC: Event 9: restart ConnectRetryTimer, connect, keep listening, → Connect.
    let mut f = active();
    assert_eq!(
        f.fire(Timer::ConnectRetry),
        [Out::Connect, Out::State(State::Active, State::Connect)]
    );
    assert_jittered(f.left(Timer::ConnectRetry), CONNECT_RETRY);
    // The RFC leaves the counter alone here; the machine counts the attempt.
    assert_eq!(f.counter(), 1);
}

#[test]
fn test_active_connect_retry_timer_expires_passive() {
    // RFC: Event 9 → Connect. Deliberate deviation: a passive session never connects out
    // (Calico relies on it), so no ConnectRetryTimer runs and hours pass in Active.
    let mut cfg = rfc_config();
    cfg.passive = true;
    let mut f = Fsm::new(cfg);
    f.start();
    f.stopped(&[Timer::ConnectRetry]);
    f.now += Duration::from_secs(6 * 3600);
    f.s.handle_timeout(f.now);
    assert_eq!(f.drain(), []);
    assert_eq!(f.state(), State::Active);
}

#[test]
fn test_active_hold_timer_expires() {
    // RFC: Event 10 → Idle; no HoldTimer runs before an OPEN is sent, so it cannot occur.
    active().stopped(&[Timer::Hold(OUT), Timer::Hold(IN)]);
    active_delay_open().stopped(&[Timer::Hold(OUT), Timer::Hold(IN)]);
}

#[test]
fn test_active_keepalive_timer_expires() {
    // RFC: Event 11 → Idle; no KeepaliveTimer runs in Active, so it cannot occur.
    active_delay_open().stopped(&[Timer::Keepalive(OUT), Timer::Keepalive(IN)]);
}

#[test]
fn test_active_delay_open_timer_expires() {
    // RFC: Event 12: ConnectRetryTimer = 0, stop DelayOpenTimer, send OPEN, HoldTimer
    // 4 min, → OpenSent.
    let mut f = active_delay_open();
    assert_eq!(
        f.fire(Timer::DelayOpen(IN)),
        [Out::Open(IN), Out::State(State::Active, State::OpenSent)]
    );
    assert_eq!(f.left(Timer::Hold(IN)), Some(OPEN_HOLD));
    f.stopped(&[Timer::DelayOpen(IN), Timer::ConnectRetry]);
}

#[test]
fn test_active_idle_hold_timer_expires() {
    // RFC: Event 13 → Idle; the IdleHoldTimer stops when the session starts.
    active().stopped(&[Timer::IdleHold]);
}

#[test]
fn test_active_tcp_connection_confirmed() {
    // RFC: Event 17: ConnectRetryTimer = 0, send OPEN, HoldTimer 4 min, → OpenSent.
    let mut f = active();
    assert_eq!(
        f.handle(Input::Accepted),
        [Out::Open(IN), Out::State(State::Active, State::OpenSent)]
    );
    assert_eq!(f.left(Timer::Hold(IN)), Some(OPEN_HOLD));
    f.stopped(&[Timer::ConnectRetry]);
}

#[test]
fn test_active_tcp_connection_confirmed_with_delay_open() {
    // RFC: Event 17 with DelayOpen: stop ConnectRetryTimer, start DelayOpenTimer, stay.
    let mut cfg = rfc_config();
    cfg.delay_open = Some(DELAY_OPEN);
    let mut f = connect_delay_open_with(cfg);
    f.fail(OUT);
    f.drain();
    assert_eq!(f.state(), State::Active);
    assert_eq!(f.handle(Input::Accepted), []);
    assert_eq!(f.state(), State::Active);
    assert_eq!(f.left(Timer::DelayOpen(IN)), Some(DELAY_OPEN));
    f.stopped(&[Timer::ConnectRetry]);
}

#[test]
fn test_active_tcp_cr_acked() {
    // RFC: Event 16 → OpenSent, as Event 17. No outbound attempt is outstanding in Active
    // (ConnectRetry expiry moves to Connect first), so a stray success is refused.
    let mut f = active();
    assert_eq!(f.handle(Input::Connected), [Out::Close(OUT)]);
    assert_eq!(f.state(), State::Active);
    assert!(!f.s.has_conn(OUT));
}

#[test]
fn test_active_tcp_connection_fails() {
    // RFC: Event 18: restart ConnectRetryTimer, stop DelayOpenTimer, counter + 1, damping,
    // → Idle.
    let mut f = active_delay_open();
    assert_eq!(
        f.fail(IN),
        [
            Out::Close(IN),
            Out::Failed(tcp_failed()),
            Out::State(State::Active, State::Idle)
        ]
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_active_bgp_open() {
    // RFC: Event 19 → Idle, but an OPEN needs TCP: without DelayOpen, Active has none, and
    // the machine ignores a stale message of a closed connection.
    active().ignores(received(IN, &open_bytes(PEER_HOLD)).unwrap());
}

#[test]
fn test_active_bgp_open_with_delay_open_timer_running() {
    // RFC: Event 20: stop ConnectRetryTimer and DelayOpenTimer, send OPEN and KEEPALIVE,
    // start KeepaliveTimer, HoldTimer to the negotiated value, → OpenConfirm.
    let mut f = active_delay_open();
    assert_eq!(
        f.rx(IN, &open_bytes(PEER_HOLD)),
        [
            Out::Open(IN),
            Out::Keepalive(IN),
            Out::State(State::Active, State::OpenConfirm)
        ]
    );
    assert_eq!(f.left(Timer::Hold(IN)), Some(HOLD));
    assert_jittered(f.left(Timer::Keepalive(IN)), KEEPALIVE);
    f.stopped(&[Timer::DelayOpen(IN), Timer::ConnectRetry]);
}

#[test]
fn test_active_bgp_header_err() {
    // RFC: Event 21: NOTIFICATION only with SendNOTIFICATIONwithoutOPEN, drop TCP,
    // counter + 1, damping, → Idle.
    let mut f = active_delay_open();
    let n = Notification::with_data(
        ErrorCode::MESSAGE_HEADER,
        subcode::header::BAD_MESSAGE_TYPE,
        &[9][..],
    );
    assert_eq!(
        f.rx(IN, &bad_type()),
        [
            Out::Close(IN),
            Out::Failed(DownReason::NotSent(n)),
            Out::State(State::Active, State::Idle)
        ]
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_active_bgp_header_err_for_a_closed_connection() {
    // RFC: Event 21 belongs to a connection; one already closed (a driver's stale read)
    // has no FSM left to act, so the session stays in Active.
    let mut f = active();
    f.ignores(received(IN, &bad_marker()).unwrap());
}

#[test]
fn test_active_bgp_open_msg_err() {
    // RFC: Event 22: NOTIFICATION only with SendNOTIFICATIONwithoutOPEN, drop TCP,
    // counter + 1, damping, → Idle.
    let mut f = active_delay_open();
    let n = n(ErrorCode::OPEN_MESSAGE, subcode::open::BAD_PEER_AS);
    assert_eq!(
        f.rx(IN, &bad_open()),
        refused_to_idle(IN, n, State::Active, BAD_AS, false)
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_active_open_collision_dump() {
    // RFC: Event 23 on the Active connection ("any other event"): drop its TCP. The peer's
    // connection waits under DelayOpen (Active) when our connection's OPEN arrives: the
    // peer's is dumped, without a NOTIFICATION (no OPEN went out on it).
    let mut cfg = rfc_config();
    cfg.delay_open = Some(DELAY_OPEN);
    let mut f = connect_with(cfg);
    assert_eq!(f.handle(Input::Accepted), []);
    assert_eq!(f.handle(Input::Connected), []);
    assert_eq!(
        f.rx(OUT, &open_bytes(PEER_HOLD)),
        [
            Out::Close(IN),
            Out::Failed(DownReason::NotSent(cease(
                subcode::cease::CONNECTION_COLLISION
            ))),
            Out::Open(OUT),
            Out::Keepalive(OUT),
            Out::State(State::Connect, State::OpenConfirm)
        ]
    );
    assert!(!f.s.has_conn(IN));
}

#[test]
fn test_active_notif_msg_ver_err() {
    // RFC: Event 24 with DelayOpenTimer running: stop timers, drop TCP, → Idle, without
    // counting or damping.
    let mut f = active_delay_open();
    assert_eq!(
        f.rx(IN, &notification_bytes(&version_error())),
        [
            Out::Close(IN),
            Out::Failed(got(version_error())),
            Out::State(State::Active, State::Idle)
        ]
    );
    // Not counted as a failure for damping; the ConnectRetryCounter still counts it.
    assert_undamped_to_idle(&f, 1);
}

#[test]
fn test_active_notif_msg() {
    // RFC: Event 25 ("any other event"): drop TCP, counter + 1, damping, → Idle.
    let mut f = active_delay_open();
    assert_eq!(
        f.rx(IN, &notification_bytes(&peer_error())),
        [
            Out::Close(IN),
            Out::Failed(got(peer_error())),
            Out::State(State::Active, State::Idle)
        ]
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_active_keepalive_msg() {
    // RFC: Event 26 ("any other event"): drop TCP, counter + 1, damping, → Idle.
    let mut f = active_delay_open();
    assert_eq!(
        f.rx(IN, &keepalive_bytes()),
        [
            Out::Close(IN),
            Out::Failed(before_open()),
            Out::State(State::Active, State::Idle)
        ]
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_active_update_msg() {
    // RFC: Event 27 ("any other event"): drop TCP, counter + 1, damping, → Idle.
    let mut f = active_delay_open();
    assert_eq!(
        f.rx(IN, &update_bytes()),
        [
            Out::Close(IN),
            Out::Failed(before_open()),
            Out::State(State::Active, State::Idle)
        ]
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_active_update_msg_err() {
    // RFC: Event 28 → Idle; it only follows an UPDATE, which Active already refused (Event
    // 27), so the RIB cannot report one: the machine ignores it outside Established.
    active_delay_open().ignores(update_error());
}

// ---------------------------------------------------------------------------------------
// OpenSent

#[test]
fn test_open_sent_manual_start() {
    // RFC: the start events (1, 3-7) are ignored in OpenSent.
    open_sent().ignores(start(false));
}

#[test]
fn test_open_sent_automatic_start() {
    // RFC: the start events (1, 3-7) are ignored in OpenSent.
    open_sent().ignores(start(true));
}

#[test]
fn test_open_sent_manual_stop() {
    // RFC: Event 2: send Cease, drop TCP, ConnectRetryCounter = 0, → Idle.
    let mut f = open_sent();
    assert_eq!(
        f.handle(stop(false)),
        [
            Out::Notification(OUT, cease(subcode::cease::ADMIN_SHUTDOWN)),
            Out::Close(OUT),
            Out::Failed(DownReason::NotificationSent(cease(
                subcode::cease::ADMIN_SHUTDOWN
            ))),
            Out::State(State::OpenSent, State::Idle)
        ]
    );
    assert_stopped(&f);
    assert_eq!(f.counter(), 0);
}

#[test]
fn test_open_sent_automatic_stop() {
    // RFC: Event 8: send Cease, drop TCP, counter + 1, damping, → Idle.
    let mut f = open_sent();
    assert_eq!(
        f.handle(stop(true)),
        [
            Out::Notification(OUT, cease(subcode::cease::ADMIN_SHUTDOWN)),
            Out::Close(OUT),
            Out::Failed(DownReason::NotificationSent(cease(
                subcode::cease::ADMIN_SHUTDOWN
            ))),
            Out::State(State::OpenSent, State::Idle)
        ]
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_open_sent_connect_retry_timer_expires() {
    // RFC: Event 9 → FSM Error; the ConnectRetryTimer is set to zero on entering OpenSent,
    // so it cannot occur.
    open_sent().stopped(&[Timer::ConnectRetry]);
}

#[test]
fn test_open_sent_hold_timer_expires() {
    // RFC: Event 10: send Hold Timer Expired, drop TCP, counter + 1, damping, → Idle.
    let mut f = open_sent();
    assert_eq!(
        f.fire(Timer::Hold(OUT)),
        error_to_idle(OUT, hold_expired(), State::OpenSent)
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_open_sent_keepalive_timer_expires() {
    // RFC: Event 11 → FSM Error; no KeepaliveTimer runs before the peer's OPEN.
    open_sent().stopped(&[Timer::Keepalive(OUT), Timer::Keepalive(IN)]);
}

#[test]
fn test_open_sent_delay_open_timer_expires() {
    // RFC: Event 12 → FSM Error; the DelayOpenTimer stopped when our OPEN went out.
    let mut cfg = rfc_config();
    cfg.delay_open = Some(DELAY_OPEN);
    let mut f = connect_delay_open_with(cfg);
    f.fire(Timer::DelayOpen(OUT));
    assert_eq!(f.state(), State::OpenSent);
    f.stopped(&[Timer::DelayOpen(OUT), Timer::DelayOpen(IN)]);
}

#[test]
fn test_open_sent_idle_hold_timer_expires() {
    // RFC: Event 13 → FSM Error; the IdleHoldTimer stops when the session starts.
    open_sent().stopped(&[Timer::IdleHold]);
}

#[test]
fn test_open_sent_tcp_connection_confirmed() {
    // RFC: Event 17: a second connection is tracked for collision detection (§6.8) until
    // its OPEN arrives; our OPEN goes out on it.
    let mut f = open_sent();
    assert_eq!(f.handle(Input::Accepted), [Out::Open(IN)]);
    assert_eq!(f.state(), State::OpenSent);
    assert!(f.s.has_conn(OUT) && f.s.has_conn(IN));
    assert_eq!(f.left(Timer::Hold(IN)), Some(OPEN_HOLD));
}

#[test]
fn test_open_sent_tcp_cr_acked() {
    // RFC: Event 16: a second connection is tracked for collision detection (§6.8).
    let mut f = connect();
    f.handle(Input::Accepted);
    assert_eq!(f.state(), State::OpenSent);
    assert_eq!(f.handle(Input::Connected), [Out::Open(OUT)]);
    assert_eq!(f.state(), State::OpenSent);
    assert!(f.s.has_conn(OUT) && f.s.has_conn(IN));
}

#[test]
fn test_open_sent_tcp_connection_fails() {
    // RFC: Event 18: close the connection, restart ConnectRetryTimer, listen, → Active.
    let mut f = open_sent();
    assert_eq!(
        f.fail(OUT),
        [
            Out::Close(OUT),
            Out::Failed(tcp_failed()),
            Out::State(State::OpenSent, State::Active)
        ]
    );
    assert_jittered(f.left(Timer::ConnectRetry), CONNECT_RETRY);
    f.stopped(&[Timer::Hold(OUT), Timer::IdleHold]);
    assert_eq!(f.counter(), 0);
}

#[test]
fn test_open_sent_bgp_open() {
    // RFC: Event 19: ConnectRetryTimer = 0, send KEEPALIVE, start KeepaliveTimer, HoldTimer
    // to the negotiated value (the smaller proposal, §4.2), → OpenConfirm.
    let mut f = open_sent();
    f.wait(Duration::from_secs(1));
    assert_eq!(
        f.rx(OUT, &open_bytes(PEER_HOLD)),
        [
            Out::Keepalive(OUT),
            Out::State(State::OpenSent, State::OpenConfirm)
        ]
    );
    assert_eq!(f.left(Timer::Hold(OUT)), Some(HOLD));
    assert_jittered(f.left(Timer::Keepalive(OUT)), KEEPALIVE);
    f.stopped(&[Timer::ConnectRetry]);
}

#[test]
fn test_open_sent_bgp_open_zero_hold_time() {
    // RFC: Event 19: "If the negotiated hold time value is zero, then the HoldTimer and
    // KeepaliveTimer are not started."
    let mut f = open_sent();
    assert_eq!(
        f.rx(OUT, &open_bytes(0)),
        [
            Out::Keepalive(OUT),
            Out::State(State::OpenSent, State::OpenConfirm)
        ]
    );
    assert_eq!(f.s.poll_timeout(), None);
}

#[test]
fn test_open_sent_bgp_open_with_delay_open_timer_running() {
    // RFC: Event 20 → FSM Error; the DelayOpenTimer never runs in OpenSent.
    test_open_sent_delay_open_timer_expires();
}

#[test]
fn test_open_sent_bgp_header_err() {
    // RFC: Event 21: send the NOTIFICATION (§6.1), drop TCP, counter + 1, damping, → Idle.
    let mut f = open_sent();
    let n = Notification::with_data(
        ErrorCode::MESSAGE_HEADER,
        subcode::header::BAD_MESSAGE_TYPE,
        &[9][..],
    );
    assert_eq!(
        f.rx(OUT, &bad_type()),
        error_to_idle(OUT, n, State::OpenSent)
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_open_sent_bgp_open_msg_err() {
    // RFC: Event 22: send the NOTIFICATION (§6.2), drop TCP, counter + 1, damping, → Idle.
    let mut f = open_sent();
    let n = n(ErrorCode::OPEN_MESSAGE, subcode::open::BAD_PEER_AS);
    assert_eq!(
        f.rx(OUT, &bad_open()),
        refused_to_idle(OUT, n, State::OpenSent, BAD_AS, true)
    );
    assert_failed_to_idle(&f, 1);

    // Unsupported version: the data is the largest version we support (§6.2).
    let mut f = open_sent();
    let mut b = open_bytes(PEER_HOLD).to_vec();
    b[19] = 3;
    let detail = "unsupported BGP version 3 (at byte 19)";
    assert_eq!(
        f.rx(OUT, &b),
        refused_to_idle(OUT, version_error(), State::OpenSent, detail, true)
    );
}

#[test]
fn test_open_sent_open_collision_dump() {
    // RFC: Event 23 on the OpenSent connection: send Cease, drop TCP, → Idle (for that
    // connection). The peer's OPEN on its connection makes ours lose (its identifier is
    // higher, §6.8); the session goes on over the peer's.
    let mut f = open_sent();
    assert_eq!(f.handle(Input::Accepted), [Out::Open(IN)]);
    let n = cease(subcode::cease::CONNECTION_COLLISION);
    assert_eq!(
        f.rx(IN, &open_bytes(PEER_HOLD)),
        [
            Out::Notification(OUT, n.clone()),
            Out::Close(OUT),
            Out::Failed(sent(n)),
            Out::Keepalive(IN),
            Out::State(State::OpenSent, State::OpenConfirm)
        ]
    );
    f.stopped(&[Timer::Hold(OUT)]);
    assert_eq!(f.left(Timer::Hold(IN)), Some(HOLD));
}

#[test]
fn test_open_sent_open_collision_dump_of_the_connection_the_open_came_on() {
    // RFC: Event 23: the peer's OPEN came on our connection, the one that loses (§6.8):
    // Cease and close it; the peer's connection stays in OpenSent.
    let mut f = open_sent();
    f.handle(Input::Accepted);
    let n = cease(subcode::cease::CONNECTION_COLLISION);
    assert_eq!(
        f.rx(OUT, &open_bytes(PEER_HOLD)),
        [
            Out::Notification(OUT, n.clone()),
            Out::Close(OUT),
            Out::Failed(sent(n))
        ]
    );
    assert_eq!(f.state(), State::OpenSent);
    assert!(f.s.has_conn(IN) && !f.s.has_conn(OUT));
}

#[test]
fn test_open_sent_open_collision_dump_higher_local_identifier() {
    // RFC: §6.8: with our identifier higher, the connection we opened survives.
    let mut cfg = rfc_config();
    cfg.router_id = std::net::Ipv4Addr::new(192, 0, 2, 9);
    let mut f = open_sent_with(cfg);
    f.handle(Input::Accepted);
    let n = cease(subcode::cease::CONNECTION_COLLISION);
    assert_eq!(
        f.rx(IN, &open_bytes(PEER_HOLD)),
        [
            Out::Notification(IN, n.clone()),
            Out::Close(IN),
            Out::Failed(sent(n))
        ]
    );
    assert_eq!(
        f.rx(OUT, &open_bytes(PEER_HOLD)),
        [
            Out::Keepalive(OUT),
            Out::State(State::OpenSent, State::OpenConfirm)
        ]
    );
}

#[test]
fn test_open_sent_notif_msg_ver_err() {
    // RFC: Event 24: ConnectRetryTimer = 0, drop TCP, → Idle, without counting or damping.
    let mut f = open_sent();
    assert_eq!(
        f.rx(OUT, &notification_bytes(&version_error())),
        [
            Out::Close(OUT),
            Out::Failed(got(version_error())),
            Out::State(State::OpenSent, State::Idle)
        ]
    );
    // Not counted as a failure for damping; the ConnectRetryCounter still counts it.
    assert_undamped_to_idle(&f, 1);
}

#[test]
fn test_open_sent_notif_msg() {
    // RFC: Event 25 ("any other event"): FSM Error NOTIFICATION, drop TCP, counter + 1,
    // damping, → Idle. The machine never answers a NOTIFICATION with one (the peer is
    // already closing): it only drops TCP.
    let mut f = open_sent();
    assert_eq!(
        f.rx(OUT, &notification_bytes(&peer_error())),
        [
            Out::Close(OUT),
            Out::Failed(got(peer_error())),
            Out::State(State::OpenSent, State::Idle)
        ]
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_open_sent_notif_msg_cease() {
    // RFC: Event 25: drop TCP, counter + 1, damping, → Idle. Deliberate deviation: a Cease
    // is not counted for damping (RFC 4271 §6.7: no error), as in Established.
    let mut f = open_sent();
    let n = cease(subcode::cease::OUT_OF_RESOURCES);
    assert_eq!(
        f.rx(OUT, &notification_bytes(&n)),
        [
            Out::Close(OUT),
            Out::Failed(got(n)),
            Out::State(State::OpenSent, State::Idle)
        ]
    );
    assert_undamped_to_idle(&f, 1);
}

#[test]
fn test_open_sent_keepalive_msg() {
    // RFC: Event 26 ("any other event"): FSM Error (RFC 6608: 5/1, unexpected in
    // OpenSent), drop TCP, counter + 1, damping, → Idle.
    let mut f = open_sent();
    assert_eq!(
        f.rx(OUT, &keepalive_bytes()),
        error_to_idle(
            OUT,
            fsm_error(subcode::fsm::UNEXPECTED_IN_OPEN_SENT),
            State::OpenSent
        )
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_open_sent_update_msg() {
    // RFC: Event 27 ("any other event"): FSM Error 5/1 (RFC 6608), → Idle.
    let mut f = open_sent();
    assert_eq!(
        f.rx(OUT, &update_bytes()),
        error_to_idle(
            OUT,
            fsm_error(subcode::fsm::UNEXPECTED_IN_OPEN_SENT),
            State::OpenSent
        )
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_open_sent_update_msg_err() {
    // RFC: Event 28 → FSM Error; it only follows an UPDATE, which OpenSent already refused
    // (Event 27), so the RIB cannot report one: ignored outside Established.
    open_sent().ignores(update_error());
}

// ---------------------------------------------------------------------------------------
// OpenConfirm

#[test]
fn test_open_confirm_manual_start() {
    // RFC: the start events (1, 3-7) are ignored in OpenConfirm.
    open_confirm().ignores(start(false));
}

#[test]
fn test_open_confirm_automatic_start() {
    // RFC: the start events (1, 3-7) are ignored in OpenConfirm.
    open_confirm().ignores(start(true));
}

#[test]
fn test_open_confirm_manual_stop() {
    // RFC: Event 2: send Cease, drop TCP, ConnectRetryCounter = 0, → Idle.
    let mut f = open_confirm();
    assert_eq!(
        f.handle(stop(false)),
        [
            Out::Notification(OUT, cease(subcode::cease::ADMIN_SHUTDOWN)),
            Out::Close(OUT),
            Out::Failed(DownReason::NotificationSent(cease(
                subcode::cease::ADMIN_SHUTDOWN
            ))),
            Out::State(State::OpenConfirm, State::Idle)
        ]
    );
    assert_stopped(&f);
    assert_eq!(f.counter(), 0);
}

#[test]
fn test_open_confirm_manual_stop_with_communication() {
    // RFC: Event 2 sends a Cease; RFC 9003: with the operator's shutdown communication.
    let mut f = open_confirm();
    let n = Notification::cease_with_communication(subcode::cease::ADMIN_SHUTDOWN, "maint");
    assert_eq!(
        f.handle(Input::Stop {
            automatic: false,
            notification: Some(n.clone()),
        }),
        [
            Out::Notification(OUT, n.clone()),
            Out::Close(OUT),
            Out::Failed(DownReason::NotificationSent(n)),
            Out::State(State::OpenConfirm, State::Idle)
        ]
    );
}

#[test]
fn test_open_confirm_automatic_stop() {
    // RFC: Event 8: send Cease, drop TCP, counter + 1, damping, → Idle.
    let mut f = open_confirm();
    assert_eq!(
        f.handle(stop(true)),
        [
            Out::Notification(OUT, cease(subcode::cease::ADMIN_SHUTDOWN)),
            Out::Close(OUT),
            Out::Failed(DownReason::NotificationSent(cease(
                subcode::cease::ADMIN_SHUTDOWN
            ))),
            Out::State(State::OpenConfirm, State::Idle)
        ]
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_open_confirm_connect_retry_timer_expires() {
    // RFC: Event 9 → FSM Error; the ConnectRetryTimer is zero since OpenSent.
    open_confirm().stopped(&[Timer::ConnectRetry]);
}

#[test]
fn test_open_confirm_hold_timer_expires() {
    // RFC: Event 10: send Hold Timer Expired, drop TCP, counter + 1, damping, → Idle.
    let mut f = open_confirm();
    f.keepalives_until(Timer::Hold(OUT));
    assert_eq!(
        f.fire(Timer::Hold(OUT)),
        error_to_idle(OUT, hold_expired(), State::OpenConfirm)
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_open_confirm_keepalive_timer_expires() {
    // RFC: Event 11: send KEEPALIVE, restart the KeepaliveTimer, stay in OpenConfirm.
    let mut f = open_confirm();
    let hold = f.s.timer(Timer::Hold(OUT));
    assert_eq!(f.fire(Timer::Keepalive(OUT)), [Out::Keepalive(OUT)]);
    assert_jittered(f.left(Timer::Keepalive(OUT)), KEEPALIVE);
    assert_eq!(f.s.timer(Timer::Hold(OUT)), hold);
    assert_eq!(f.state(), State::OpenConfirm);
}

#[test]
fn test_open_confirm_delay_open_timer_expires() {
    // RFC: Event 12 → FSM Error; the DelayOpenTimer stopped before OpenSent.
    open_confirm().stopped(&[Timer::DelayOpen(OUT), Timer::DelayOpen(IN)]);
}

#[test]
fn test_open_confirm_idle_hold_timer_expires() {
    // RFC: Event 13 → FSM Error; the IdleHoldTimer stops when the session starts.
    open_confirm().stopped(&[Timer::IdleHold]);
}

#[test]
fn test_open_confirm_tcp_connection_confirmed() {
    // RFC: Event 17: track the second connection (§6.8); our OPEN goes out on it.
    let mut f = open_confirm();
    assert_eq!(f.handle(Input::Accepted), [Out::Open(IN)]);
    assert_eq!(f.state(), State::OpenConfirm);
    assert!(f.s.has_conn(OUT) && f.s.has_conn(IN));
}

#[test]
fn test_open_confirm_tcp_cr_acked() {
    // RFC: Event 16: track the second connection. The machine abandoned its outbound
    // attempt when the peer's OPEN arrived on the connection already speaking BGP (§6.8
    // keeps that one whichever identifier is higher), so the late success is refused.
    let mut f = connect();
    f.handle(Input::Accepted);
    assert_eq!(
        f.rx(IN, &open_bytes(PEER_HOLD)),
        [
            Out::Close(OUT),
            Out::Failed(DownReason::NotSent(cease(
                subcode::cease::CONNECTION_COLLISION
            ))),
            Out::Keepalive(IN),
            Out::State(State::OpenSent, State::OpenConfirm)
        ]
    );
    assert_eq!(f.handle(Input::Connected), [Out::Close(OUT)]);
    assert_eq!(f.state(), State::OpenConfirm);
    assert!(!f.s.has_conn(OUT));
}

#[test]
fn test_open_confirm_tcp_connection_fails() {
    // RFC: Event 18: ConnectRetryTimer = 0, drop TCP, counter + 1, damping, → Idle.
    let mut f = open_confirm();
    assert_eq!(
        f.fail(OUT),
        [
            Out::Close(OUT),
            Out::Failed(tcp_failed()),
            Out::State(State::OpenConfirm, State::Idle)
        ]
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_open_confirm_bgp_open() {
    // RFC: Event 19 runs collision detection; a second OPEN on the same connection
    // collides with nothing and is unexpected: FSM Error 5/2 (RFC 6608), → Idle.
    let mut f = open_confirm();
    assert_eq!(
        f.rx(OUT, &open_bytes(PEER_HOLD)),
        error_to_idle(
            OUT,
            fsm_error(subcode::fsm::UNEXPECTED_IN_OPEN_CONFIRM),
            State::OpenConfirm
        )
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_open_confirm_bgp_open_with_delay_open_timer_running() {
    // RFC: Event 20 → FSM Error; the DelayOpenTimer never runs in OpenConfirm.
    test_open_confirm_delay_open_timer_expires();
}

#[test]
fn test_open_confirm_bgp_header_err() {
    // RFC: Event 21: send the NOTIFICATION (§6.1), drop TCP, counter + 1, damping, → Idle.
    let mut f = open_confirm();
    let n = n(
        ErrorCode::MESSAGE_HEADER,
        subcode::header::CONNECTION_NOT_SYNCHRONIZED,
    );
    assert_eq!(
        f.rx(OUT, &bad_marker()),
        error_to_idle(OUT, n, State::OpenConfirm)
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_open_confirm_bgp_open_msg_err() {
    // RFC: Event 22: NOTIFICATION, drop TCP, counter + 1, → Idle. Any OPEN on a connection
    // in OpenConfirm is unexpected before it is checked: 5/2 (RFC 6608), not 2/x.
    let mut f = open_confirm();
    assert_eq!(
        f.rx(OUT, &bad_open()),
        error_to_idle(
            OUT,
            fsm_error(subcode::fsm::UNEXPECTED_IN_OPEN_CONFIRM),
            State::OpenConfirm
        )
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_open_confirm_open_collision_dump() {
    // RFC: Event 23: send Cease, drop TCP, → Idle (for that connection). The peer's OPEN
    // on its own connection beats ours in OpenConfirm (higher identifier, §6.8).
    let mut f = open_confirm();
    assert_eq!(f.handle(Input::Accepted), [Out::Open(IN)]);
    let n = cease(subcode::cease::CONNECTION_COLLISION);
    assert_eq!(
        f.rx(IN, &open_bytes(PEER_HOLD)),
        [
            Out::Notification(OUT, n.clone()),
            Out::Close(OUT),
            Out::Failed(sent(n)),
            Out::Keepalive(IN)
        ]
    );
    assert_eq!(f.state(), State::OpenConfirm);
    assert!(!f.s.has_conn(OUT));
}

#[test]
fn test_open_confirm_notif_msg_ver_err() {
    // RFC: Event 24: ConnectRetryTimer = 0, drop TCP, → Idle, without counting or damping.
    let mut f = open_confirm();
    assert_eq!(
        f.rx(OUT, &notification_bytes(&version_error())),
        [
            Out::Close(OUT),
            Out::Failed(got(version_error())),
            Out::State(State::OpenConfirm, State::Idle)
        ]
    );
    // Not counted as a failure for damping; the ConnectRetryCounter still counts it.
    assert_undamped_to_idle(&f, 1);
}

#[test]
fn test_open_confirm_notif_msg() {
    // RFC: Event 25 (like 18): ConnectRetryTimer = 0, drop TCP, counter + 1, damping, → Idle.
    let mut f = open_confirm();
    assert_eq!(
        f.rx(OUT, &notification_bytes(&peer_error())),
        [
            Out::Close(OUT),
            Out::Failed(got(peer_error())),
            Out::State(State::OpenConfirm, State::Idle)
        ]
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_open_confirm_keepalive_msg() {
    // RFC: Event 26: restart the HoldTimer, → Established.
    let mut f = open_confirm();
    f.wait(Duration::from_secs(2));
    assert_eq!(
        f.rx(OUT, &keepalive_bytes()),
        [
            Out::Established(OUT, PEER_HOLD),
            Out::State(State::OpenConfirm, State::Established)
        ]
    );
    assert_eq!(f.left(Timer::Hold(OUT)), Some(HOLD));
    assert_eq!(
        f.s.established().map(|(c, n)| (c, n.hold_time)),
        Some((OUT, 30))
    );
}

#[test]
fn test_open_confirm_update_msg() {
    // RFC: Event 27 ("any other event"): FSM Error 5/2 (RFC 6608), → Idle.
    let mut f = open_confirm();
    assert_eq!(
        f.rx(OUT, &update_bytes()),
        error_to_idle(
            OUT,
            fsm_error(subcode::fsm::UNEXPECTED_IN_OPEN_CONFIRM),
            State::OpenConfirm
        )
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_open_confirm_update_msg_err() {
    // RFC: Event 28 → FSM Error; it only follows an UPDATE, which OpenConfirm already
    // refused (Event 27), so the RIB cannot report one: ignored outside Established.
    open_confirm().ignores(update_error());
}

// ---------------------------------------------------------------------------------------
// Established

/// Leaves Established on `c` after an error we found: NOTIFICATION, close, Down, Idle.
fn error_down(c: ConnId, n: Notification) -> Vec<Out> {
    vec![
        Out::Notification(c, n.clone()),
        Out::Close(c),
        Out::Down(sent(n), false),
        Out::State(State::Established, State::Idle),
    ]
}

/// The graceful restart capability (RFC 4724), with the N bit (RFC 8538) if `n_bit`.
fn gr(n_bit: bool) -> Capability {
    Capability::GracefulRestart(GracefulRestart {
        restart_state: false,
        notification: n_bit,
        restart_time: 120,
        families: Vec::new(),
    })
}

/// Our config, announcing graceful restart with the N bit if `n_bit`.
fn gr_config(n_bit: bool) -> Config {
    let mut cfg = rfc_config();
    cfg.capabilities.push(gr(n_bit));
    cfg
}

/// Established on our outbound connection with a peer that sent graceful restart, with the
/// N bit if `peer_n_bit`.
fn established_gr(cfg: Config, peer_n_bit: bool) -> Fsm {
    let mut f = open_sent_with(cfg);
    let mut o = peer_open(PEER_HOLD);
    o.capabilities.push(gr(peer_n_bit));
    f.rx(OUT, &encode_open(&o));
    assert_eq!(
        f.rx(OUT, &keepalive_bytes()),
        [
            Out::Established(OUT, PEER_HOLD),
            Out::State(State::OpenConfirm, State::Established)
        ]
    );
    f
}

/// An AutomaticStop (Event 8) with Cease `n`.
fn automatic_stop(n: &Notification) -> Input {
    Input::Stop {
        automatic: true,
        notification: Some(n.clone()),
    }
}

#[test]
fn test_established_manual_start() {
    // RFC: the start events (1, 3-7) are ignored in Established.
    established().ignores(start(false));
}

#[test]
fn test_established_automatic_start() {
    // RFC: the start events (1, 3-7) are ignored in Established.
    established().ignores(start(true));
}

#[test]
fn test_established_manual_stop() {
    // RFC: Event 2: send Cease, delete routes, drop TCP, ConnectRetryCounter = 0, → Idle.
    let mut f = established();
    assert_eq!(
        f.handle(stop(false)),
        [
            Out::Notification(OUT, cease(subcode::cease::ADMIN_SHUTDOWN)),
            Out::Close(OUT),
            Out::Down(
                DownReason::NotificationSent(cease(subcode::cease::ADMIN_SHUTDOWN)),
                false
            ),
            Out::State(State::Established, State::Idle)
        ]
    );
    assert_stopped(&f);
    assert_eq!(f.counter(), 0);
}

#[test]
fn test_established_automatic_stop() {
    // RFC: Event 8: send Cease, delete routes, drop TCP, counter + 1, damping, → Idle.
    let mut f = established();
    assert_eq!(
        f.handle(stop(true)),
        [
            Out::Notification(OUT, cease(subcode::cease::ADMIN_SHUTDOWN)),
            Out::Close(OUT),
            Out::Down(
                DownReason::NotificationSent(cease(subcode::cease::ADMIN_SHUTDOWN)),
                false
            ),
            Out::State(State::Established, State::Idle)
        ]
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_established_automatic_stop_graceful_with_n_bit() {
    // RFC: Event 8: send Cease, delete routes, drop TCP, counter + 1, damping, → Idle. RFC
    // 8538 §4: with the N bit on both sides, a NOTIFICATION other than a Hard Reset keeps
    // the peer's routes as stale: Down is graceful. Counted and damped as before.
    let mut f = established_gr(gr_config(true), true);
    let n = cease(subcode::cease::OUT_OF_RESOURCES);
    assert_eq!(
        f.handle(automatic_stop(&n)),
        [
            Out::Notification(OUT, n.clone()),
            Out::Close(OUT),
            Out::Down(sent(n), true),
            Out::State(State::Established, State::Idle)
        ]
    );
    assert_failed_to_idle(&f, 1);

    // The default Cease (Administrative Shutdown) too.
    let mut f = established_gr(gr_config(true), true);
    let n = cease(subcode::cease::ADMIN_SHUTDOWN);
    assert_eq!(
        f.handle(stop(true)),
        [
            Out::Notification(OUT, n.clone()),
            Out::Close(OUT),
            Out::Down(sent(n), true),
            Out::State(State::Established, State::Idle)
        ]
    );
}

#[test]
fn test_established_automatic_stop_not_graceful() {
    // RFC 8538 §4: a Hard Reset, or an N bit missing on either side, deletes the routes.
    let out_of_resources = cease(subcode::cease::OUT_OF_RESOURCES);
    let hard_reset = cease(subcode::cease::HARD_RESET);
    for (ours, theirs, n) in [
        (true, true, &hard_reset),
        (true, false, &out_of_resources),
        (false, true, &out_of_resources),
    ] {
        let mut f = established_gr(gr_config(ours), theirs);
        assert_eq!(
            f.handle(automatic_stop(n)),
            [
                Out::Notification(OUT, n.clone()),
                Out::Close(OUT),
                Out::Down(sent(n.clone()), false),
                Out::State(State::Established, State::Idle)
            ],
            "our N bit {ours}, theirs {theirs}, {n}"
        );
        assert_failed_to_idle(&f, 1);
    }
}

#[test]
fn test_established_manual_stop_with_n_bit_not_graceful() {
    // RFC 8538 §4 would keep the routes for any Cease but a Hard Reset. Deliberate
    // deviation: the operator's ManualStop takes the peer down for good, so its routes go.
    let mut f = established_gr(gr_config(true), true);
    let n = cease(subcode::cease::ADMIN_SHUTDOWN);
    assert_eq!(
        f.handle(stop(false)),
        [
            Out::Notification(OUT, n.clone()),
            Out::Close(OUT),
            Out::Down(sent(n), false),
            Out::State(State::Established, State::Idle)
        ]
    );
    assert_stopped(&f);
}

#[test]
fn test_established_max_prefix_is_an_automatic_stop() {
    // RFC: Event 8's example: too many prefixes: Cease/1 (RFC 4486) with AFI, SAFI, limit.
    let mut f = established();
    let data = Bytes::from_static(&[0, 1, 1, 0, 0, 0, 100]);
    let n = Notification::with_data(ErrorCode::CEASE, subcode::cease::MAX_PREFIXES, data.clone());
    assert_eq!(
        f.handle(Input::MaxPrefixExceeded { data }),
        error_down(OUT, n)
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_established_connect_retry_timer_expires() {
    // RFC: Event 9 → FSM Error; the ConnectRetryTimer is zero since OpenSent.
    established().stopped(&[Timer::ConnectRetry]);
}

#[test]
fn test_established_hold_timer_expires() {
    // RFC: Event 10: send Hold Timer Expired (4/0), drop TCP, counter + 1, damping, → Idle.
    let mut f = established();
    f.keepalives_until(Timer::Hold(OUT));
    assert_eq!(f.fire(Timer::Hold(OUT)), error_down(OUT, hold_expired()));
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_established_keepalive_timer_expires() {
    // RFC: Event 11: send KEEPALIVE, restart the KeepaliveTimer (negotiated hold non-zero).
    // Deliberate deviation: UPDATEs we send (written by the RIB, not through the machine)
    // do not restart it.
    let mut f = established();
    let hold = f.s.timer(Timer::Hold(OUT));
    assert_eq!(f.fire(Timer::Keepalive(OUT)), [Out::Keepalive(OUT)]);
    assert_jittered(f.left(Timer::Keepalive(OUT)), KEEPALIVE);
    assert_eq!(f.s.timer(Timer::Hold(OUT)), hold);
    assert_eq!(f.state(), State::Established);
}

#[test]
fn test_established_keepalive_timer_zero_hold_time() {
    // RFC: Event 11 never comes with a negotiated hold time of zero: no timer runs at all.
    let mut f = established_with(rfc_config(), 0);
    assert_eq!(f.s.poll_timeout(), None);
    f.ignores(received(OUT, &keepalive_bytes()).unwrap());
}

#[test]
fn test_established_delay_open_timer_expires() {
    // RFC: Event 12 → FSM Error; the DelayOpenTimer never runs in Established.
    established().stopped(&[Timer::DelayOpen(OUT), Timer::DelayOpen(IN)]);
}

#[test]
fn test_established_idle_hold_timer_expires() {
    // RFC: Event 13 → FSM Error; the IdleHoldTimer stops when the session starts.
    established().stopped(&[Timer::IdleHold]);
}

#[test]
fn test_established_tcp_connection_confirmed() {
    // RFC: Event 17: track the second connection until its OPEN, which then collides with
    // Established and is closed (§6.8, CollisionDetectEstablishedState off). The machine
    // closes the newcomer at once, with the same outcome.
    let mut f = established();
    assert_eq!(f.handle(Input::Accepted), [Out::Close(IN)]);
    assert_eq!(f.state(), State::Established);
    assert!(!f.s.has_conn(IN));
}

#[test]
fn test_established_tcp_connection_confirmed_collision_detect_established() {
    // RFC: Event 17 with CollisionDetectEstablishedState: the second connection is tracked.
    let mut cfg = rfc_config();
    cfg.collision_detect_established = true;
    let mut f = established_with(cfg, PEER_HOLD);
    assert_eq!(f.handle(Input::Accepted), [Out::Open(IN)]);
    assert_eq!(f.state(), State::Established);
    assert!(f.s.has_conn(IN));
}

#[test]
fn test_established_tcp_cr_acked() {
    // RFC: Event 16: track the second connection. Established on the peer's connection,
    // our attempt was abandoned at its OPEN (§6.8), so the late success is refused.
    let mut f = established_inbound();
    assert_eq!(f.handle(Input::Connected), [Out::Close(OUT)]);
    assert_eq!(f.state(), State::Established);
    assert_eq!(f.s.established().map(|(c, _)| c), Some(IN));
}

#[test]
fn test_established_tcp_connection_fails() {
    // RFC: Event 18: ConnectRetryTimer = 0, delete routes, drop TCP, counter + 1, → Idle.
    let mut f = established();
    assert_eq!(
        f.fail(OUT),
        [
            Out::Close(OUT),
            Out::Down(tcp_failed(), false),
            Out::State(State::Established, State::Idle)
        ]
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_established_tcp_connection_confirmed_after_graceful_restart() {
    // RFC 4724 §4.2: when a peer that restarts gracefully connects again while the session
    // is Established, the old session is treated as gone (routes kept as stale) and the new
    // connection is taken. The driver sees the graceful restart capability in
    // `established()`, reports the old connection gone (Event 18), then the new one (Event
    // 17): OPEN on it at once, → OpenSent, no idle hold time to wait out.
    let mut f = established_gr(rfc_config(), false);
    let (conn, negotiated) = f.s.established().expect("Established");
    assert_eq!(conn, OUT);
    assert!(negotiated.peer_graceful_restart.is_some());
    assert_eq!(
        f.fail(OUT),
        [
            Out::Close(OUT),
            Out::Down(tcp_failed(), true),
            Out::State(State::Established, State::Idle)
        ]
    );
    assert_undamped_to_idle(&f, 1);
    assert_eq!(
        f.handle(Input::Accepted),
        [Out::Open(IN), Out::State(State::Idle, State::OpenSent)]
    );
    assert_eq!(f.state(), State::OpenSent);
    assert_eq!(f.left(Timer::Hold(IN)), Some(OPEN_HOLD));
    assert_eq!(f.s.poll_timeout(), f.s.timer(Timer::Hold(IN)));
    f.stopped(&[Timer::IdleHold, Timer::ConnectRetry]);
    assert_eq!(f.counter(), 0);
    assert!(f.s.has_conn(IN) && !f.s.has_conn(OUT));
}

#[test]
fn test_established_bgp_open() {
    // RFC: Event 19 without CollisionDetectEstablishedState: an OPEN in Established is
    // unexpected: FSM Error 5/3 (RFC 6608), delete routes, drop TCP, → Idle.
    let mut f = established();
    assert_eq!(
        f.rx(OUT, &open_bytes(PEER_HOLD)),
        error_down(OUT, fsm_error(subcode::fsm::UNEXPECTED_IN_ESTABLISHED))
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_established_bgp_open_with_delay_open_timer_running() {
    // RFC: Event 20 → FSM Error; the DelayOpenTimer never runs in Established.
    test_established_delay_open_timer_expires();
}

#[test]
fn test_established_bgp_header_err() {
    // RFC: Event 21 ("any other event"): NOTIFICATION, delete routes, drop TCP, → Idle. The
    // code is §6.1's Message Header Error, not §8.2.2's FSM Error.
    let mut f = established();
    let mut b = keepalive_bytes().to_vec();
    b[17] = 18; // a KEEPALIVE of 18 bytes: Bad Message Length, the length as data
    let n = Notification::with_data(
        ErrorCode::MESSAGE_HEADER,
        subcode::header::BAD_MESSAGE_LENGTH,
        &[0, 18][..],
    );
    assert_eq!(f.rx(OUT, &b), error_down(OUT, n));
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_established_bgp_open_msg_err() {
    // RFC: Event 22 ("any other event"): FSM Error (5/3, RFC 6608), delete routes, → Idle.
    let mut f = established();
    assert_eq!(
        f.rx(OUT, &bad_open()),
        error_down(OUT, fsm_error(subcode::fsm::UNEXPECTED_IN_ESTABLISHED))
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_established_open_collision_dump() {
    // RFC: Event 23 (CollisionDetectEstablishedState): send Cease, delete routes, drop TCP
    // of the Established connection that loses (§6.8); the peer's carries on.
    let mut cfg = rfc_config();
    cfg.collision_detect_established = true;
    let mut f = established_with(cfg, PEER_HOLD);
    assert_eq!(f.handle(Input::Accepted), [Out::Open(IN)]);
    let n = cease(subcode::cease::CONNECTION_COLLISION);
    assert_eq!(
        f.rx(IN, &open_bytes(PEER_HOLD)),
        [
            Out::Notification(OUT, n.clone()),
            Out::Close(OUT),
            Out::Down(sent(n), false),
            Out::Keepalive(IN),
            Out::State(State::Established, State::OpenConfirm)
        ]
    );
    assert_eq!(f.s.established(), None);
}

#[test]
fn test_established_notif_msg_ver_err() {
    // RFC: Event 24: ConnectRetryTimer = 0, delete routes, drop TCP, counter + 1, → Idle.
    // Not counted as a failure for damping, as in the states before.
    let mut f = established();
    assert_eq!(
        f.rx(OUT, &notification_bytes(&version_error())),
        [
            Out::Close(OUT),
            Out::Down(got(version_error()), false),
            Out::State(State::Established, State::Idle)
        ]
    );
    assert_undamped_to_idle(&f, 1);
}

#[test]
fn test_established_notif_msg() {
    // RFC: Event 25: ConnectRetryTimer = 0, delete routes, drop TCP, counter + 1, → Idle.
    let mut f = established();
    assert_eq!(
        f.rx(OUT, &notification_bytes(&peer_error())),
        [
            Out::Close(OUT),
            Out::Down(got(peer_error()), false),
            Out::State(State::Established, State::Idle)
        ]
    );
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_established_cease_received_undamped() {
    // RFC: Event 25: delete routes, drop TCP, counter + 1, damping, → Idle. Deliberate
    // deviation (BIRD, FRR): a Cease, whatever its subcode (RFC 4486, RFC 8538), reports
    // no error (RFC 4271 §6.7): it is not counted for damping, and the peer's new
    // connection is taken at once. A peer that sends Cease after Cease is never made to
    // wait longer.
    let mut f = established();
    for sub in 1..=10 {
        let n = cease(sub);
        let conn = f.s.established().expect("Established").0;
        assert_eq!(
            f.rx(conn, &notification_bytes(&n)),
            [
                Out::Close(conn),
                Out::Down(got(n.clone()), false),
                Out::State(State::Established, State::Idle)
            ],
            "{n}"
        );
        assert_undamped_to_idle(&f, 1);
        assert_eq!(
            f.handle(Input::Accepted),
            [Out::Open(IN), Out::State(State::Idle, State::OpenSent)]
        );
        f.rx(IN, &open_bytes(PEER_HOLD));
        assert_eq!(
            f.rx(IN, &keepalive_bytes()),
            [
                Out::Established(IN, PEER_HOLD),
                Out::State(State::OpenConfirm, State::Established)
            ]
        );
    }
}

#[test]
fn test_established_keepalive_msg() {
    // RFC: Event 26: restart the HoldTimer (negotiated hold non-zero), stay.
    let mut f = established();
    f.wait(Duration::from_secs(5));
    assert_eq!(f.rx(OUT, &keepalive_bytes()), []);
    assert_eq!(f.left(Timer::Hold(OUT)), Some(HOLD));
    assert_eq!(f.state(), State::Established);
}

#[test]
fn test_established_update_msg() {
    // RFC: Event 27: process the message, restart the HoldTimer, stay.
    let mut f = established();
    f.wait(Duration::from_secs(5));
    assert_eq!(f.rx(OUT, &update_bytes()), [Out::Update(update_bytes())]);
    assert_eq!(f.left(Timer::Hold(OUT)), Some(HOLD));
    assert_eq!(f.state(), State::Established);
}

#[test]
fn test_established_update_msg_err() {
    // RFC: Event 28: send UPDATE Message Error, delete routes, drop TCP, counter + 1,
    // damping, → Idle.
    let mut f = established();
    let n = n(
        ErrorCode::UPDATE_MESSAGE,
        subcode::update::MALFORMED_ATTRIBUTE_LIST,
    );
    assert_eq!(f.handle(update_error()), error_down(OUT, n));
    assert_failed_to_idle(&f, 1);
}

#[test]
fn test_established_tcp_cr_acked_on_the_live_connection() {
    // RFC: Event 16 reports a second connection; with no attempt outstanding there is none
    // (a stale report of an attempt the machine replaced), and the live one stays as it is.
    established().ignores(Input::Connected);
}

#[test]
fn test_set_passive_while_established_keeps_the_connection() {
    // Passivity decides who opens the next connection, nothing else: an Established
    // session stays as it is, and no connect retry timer runs on a passive session.
    let mut f = established();
    f.s.set_passive(f.now, true);
    assert_eq!(f.drain(), []);
    assert_eq!(f.state(), State::Established);
    assert_eq!(f.left(Timer::ConnectRetry), None);
    assert!(f.s.config().passive);
}

#[test]
fn test_set_active_while_waiting_passively_connects_out() {
    let mut cfg = rfc_config();
    cfg.passive = true;
    let mut f = Fsm::new(cfg);
    assert_eq!(f.start(), [Out::State(State::Idle, State::Active)]);
    f.s.set_passive(f.now, false);
    assert_eq!(
        f.drain(),
        [Out::Connect, Out::State(State::Active, State::Connect)]
    );
    assert_jittered(f.left(Timer::ConnectRetry), CONNECT_RETRY);
}

#[test]
fn test_set_passive_while_connecting_stops_retrying() {
    let mut f = fresh();
    f.start();
    assert!(f.left(Timer::ConnectRetry).is_some());
    f.s.set_passive(f.now, true);
    assert_eq!(f.drain(), []);
    assert_eq!(f.s.poll_timeout(), None);
}
