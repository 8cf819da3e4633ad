//! Any sequence of inputs, received bytes (valid and corrupted) and clock jumps keeps the
//! machine's promises:
//!
//! * it never panics;
//! * after `handle_timeout(now)` nothing is left due: `poll_timeout() > now`;
//! * after a NOTIFICATION on a connection, the next output about that connection closes it,
//!   and nothing more is sent on it until a new connection takes its place;
//! * at most one connection is Established; `Established` and `Down` alternate, and agree
//!   with `Session::established()` and `Session::state()`;
//! * every byte it sends frames as whole, valid messages;
//! * the peer's connection is refused only when the session is administratively down
//!   (never started, stopped manually, or failed without AllowAutomaticStart) or
//!   Established without CollisionDetectEstablishedState;
//! * a failed outbound attempt leaves the session running (Active or beyond), arms no
//!   IdleHold and counts no failure for damping;
//! * a Cease received never counts a failure for damping.

mod util;

use std::time::{Duration, Instant};

use bgp_fsm::{Action, Config, ConnId, Input, News, Output, Session, State, Timer};
use bgp_wire::capability::{Capability, GracefulRestart};
use bgp_wire::{ErrorCode, FamilySet, Notification};
use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use util::{
    encode_notification, encode_open, keepalive_bytes, peer_open, received, reduce, rfc_config,
    update_bytes,
};

const OUT: ConnId = ConnId::Outbound;
const IN: ConnId = ConnId::Inbound;

#[derive(Clone, Debug)]
enum Op {
    Start(bool),
    Stop(bool, Option<u8>),
    Connected,
    Accepted,
    Fail(ConnId),
    /// Bytes the driver read on a connection, framed as a driver frames them.
    Rx(ConnId, Vec<u8>),
    UpdateError,
    MaxPrefix,
    SendBlocked(ConnId),
    SendProgress(ConnId),
    ReceivePaused,
    ReceiveResumed,
    /// Moves the clock; `fire`: then calls `handle_timeout` (else the next input sees
    /// overdue deadlines, as with a driver that polls late).
    Advance {
        ms: u64,
        fire: bool,
    },
    /// Jumps to `poll_timeout()` and fires it.
    Deadline,
    /// The peer's side of a good conversation on the connection: its OPEN and a KEEPALIVE
    /// the first time, a KEEPALIVE after (so that sequences reach Established often).
    Peer(ConnId),
}

fn gr(notification: bool) -> Capability {
    Capability::GracefulRestart(GracefulRestart {
        restart_state: false,
        notification,
        restart_time: 120,
        families: Vec::new(),
    })
}

fn config() -> impl Strategy<Value = Config> {
    (
        any::<[bool; 8]>(),
        prop_oneof![Just(0u16), Just(3), Just(9), Just(90)],
        prop_oneof![Just(0u16), Just(3), Just(10)],
        1u64..=120,
        1u64..=10,
        prop::option::of(1u64..=30),
    )
        .prop_map(|(f, hold, min_hold, retry, idle, delay)| {
            let mut c = rfc_config();
            c.passive = f[0];
            c.allow_automatic_start = f[1];
            c.damp_peer_oscillations = f[2];
            c.collision_detect_established = f[3];
            c.send_notification_without_open = f[4];
            if f[5] {
                c.capabilities.push(gr(f[6]));
            }
            if f[7] {
                c.required_families = FamilySet::ALL;
            }
            c.delay_open = delay.map(Duration::from_secs);
            c.timing.hold_time = hold;
            c.timing.min_hold_time = min_hold;
            c.timing.connect_retry = Duration::from_secs(retry);
            c.timing.idle_hold = Duration::from_secs(idle);
            c
        })
}

/// B's OPEN, mostly acceptable: wrong AS, our identifier, identifier 0, hold times 1 and
/// 2, missing families and graceful restart now and then.
fn open_message() -> impl Strategy<Value = Bytes> {
    (
        prop_oneof![6 => Just(65002u32), 1 => Just(65009), 1 => Just(65001)],
        prop_oneof![3 => Just(30u16), 1 => Just(0), 1 => Just(1), 1 => Just(3), 1 => any::<u16>()],
        prop_oneof![
            6 => Just([192, 0, 2, 2]),
            1 => Just([192, 0, 2, 1]),
            1 => Just([192, 0, 2, 0]),
            1 => Just([0, 0, 0, 0])
        ],
        any::<(bool, bool, bool)>(),
    )
        .prop_map(|(asn, hold, id, (with_gr, n_bit, v4_only))| {
            let mut o = peer_open(hold);
            o.asn = asn;
            o.bgp_id = id.into();
            for c in &mut o.capabilities {
                if let Capability::FourOctetAs(a) = c {
                    *a = asn;
                }
            }
            if v4_only {
                o.capabilities
                    .retain(|c| !matches!(c, Capability::Multiprotocol { afi, .. } if afi.0 == 2));
            }
            if with_gr {
                o.capabilities.push(gr(n_bit));
            }
            encode_open(&o)
        })
}

fn route_refresh_bytes() -> Bytes {
    let mut b = bgp_wire::header::MARKER.to_vec();
    b.extend_from_slice(&[0, 23, 5, 0, 1, 0, 1]);
    b.into()
}

/// Valid messages of every type, some corrupted (bytes overwritten, cut short) or garbage.
fn message() -> impl Strategy<Value = Vec<u8>> {
    let valid = prop_oneof![
        4 => open_message(),
        4 => Just(keepalive_bytes()),
        2 => Just(update_bytes()),
        2 => (1u8..=8, 0u8..=11, prop::collection::vec(any::<u8>(), 0..4)).prop_map(
            |(code, sub, data)| encode_notification(&Notification::with_data(
                ErrorCode(code),
                sub,
                data
            ))
        ),
        1 => Just(route_refresh_bytes()),
        1 => prop::collection::vec(any::<u8>(), 19..48).prop_map(Bytes::from),
    ];
    let mutations = prop_oneof![
        4 => Just(Vec::new()),
        1 => prop::collection::vec((any::<Index>(), any::<u8>()), 1..4),
    ];
    let cut = prop_oneof![8 => Just(None), 1 => any::<Index>().prop_map(Some)];
    (valid, mutations, cut).prop_map(|(b, mutations, cut)| {
        let mut b = b.to_vec();
        for (i, v) in mutations {
            let i = i.index(b.len());
            b[i] = v;
        }
        if let Some(cut) = cut {
            b.truncate(cut.index(b.len() + 1));
        }
        b
    })
}

fn op() -> impl Strategy<Value = Op> {
    let conn = || prop_oneof![Just(OUT), Just(IN)];
    prop_oneof![
        3 => Just(Op::Start(false)),
        1 => Just(Op::Start(true)),
        1 => (any::<bool>(), prop::option::of(0u8..=10)).prop_map(|(a, s)| Op::Stop(a, s)),
        3 => Just(Op::Connected),
        3 => Just(Op::Accepted),
        2 => conn().prop_map(Op::Fail),
        8 => (conn(), message()).prop_map(|(c, m)| Op::Rx(c, m)),
        12 => conn().prop_map(Op::Peer),
        1 => Just(Op::UpdateError),
        1 => Just(Op::MaxPrefix),
        1 => conn().prop_map(Op::SendBlocked),
        1 => conn().prop_map(Op::SendProgress),
        1 => Just(Op::ReceivePaused),
        1 => Just(Op::ReceiveResumed),
        2 => (0u64..=10_000, any::<bool>()).prop_map(|(ms, fire)| Op::Advance { ms, fire }),
        1 => (0u64..=4 * 3_600_000, any::<bool>()).prop_map(|(ms, fire)| Op::Advance { ms, fire }),
        4 => Just(Op::Deadline),
    ]
}

/// A config and up to 60 steps, most often after a ManualStart.
fn case() -> impl Strategy<Value = (Config, Vec<Op>)> {
    let started = prop_oneof![3 => Just(true), 1 => Just(false)];
    (config(), started, prop::collection::vec(op(), 1..=59)).prop_map(|(cfg, started, ops)| {
        let start = started.then_some(Op::Start(false));
        (cfg, start.into_iter().chain(ops).collect())
    })
}

/// The promises, checked against the outputs as a driver sees them.
#[derive(Default)]
struct Checker {
    /// A NOTIFICATION went out: the next output about the connection must close it.
    must_close: [bool; 2],
    /// Closed after a NOTIFICATION: nothing goes out until a new connection opens.
    silenced: [bool; 2],
    /// Strict: `Close` means closed, for sends and for `Down`.
    strict: bool,
    closed: [bool; 2],
    expect_down: bool,
    established: Option<ConnId>,
    /// Ever Established, for the coverage check.
    reached: bool,
}

const fn i(c: ConnId) -> usize {
    match c {
        ConnId::Outbound => 0,
        ConnId::Inbound => 1,
    }
}

impl Checker {
    fn opened(&mut self, c: ConnId) {
        self.silenced[i(c)] = false;
        self.closed[i(c)] = false;
    }

    fn output(&mut self, o: &Output, our_open: &[u8]) -> Result<(), String> {
        // Panics on bytes that do not frame as one whole valid message.
        reduce(o.clone(), our_open);
        match o {
            Output::Action(Action::Send { conn, bytes }) => {
                let c = i(*conn);
                if self.must_close[c] {
                    return Err(format!("{conn:?}: sent after a NOTIFICATION, before Close"));
                }
                if self.silenced[c] {
                    return Err(format!("{conn:?}: sent after NOTIFICATION and Close"));
                }
                if self.strict && self.closed[c] {
                    return Err(format!("{conn:?}: sent after Close"));
                }
                if bytes[18] == 3 {
                    self.must_close[c] = true;
                }
            }
            Output::Action(Action::Close(conn)) => {
                let c = i(*conn);
                if std::mem::take(&mut self.must_close[c]) {
                    self.silenced[c] = true;
                }
                self.closed[c] = true;
                if self.strict && self.established == Some(*conn) {
                    self.expect_down = true;
                }
            }
            Output::News(News::Established { conn, .. }) => {
                let c = i(*conn);
                if self.must_close[c] || self.silenced[c] {
                    return Err(format!("{conn:?}: Established after a NOTIFICATION"));
                }
                if let Some(other) = self.established {
                    return Err(format!("{conn:?}: Established while {other:?} is"));
                }
                self.established = Some(*conn);
                self.reached = true;
            }
            Output::News(News::Down { .. }) => {
                if self.established.take().is_none() {
                    return Err("Down without an Established connection".into());
                }
                if self.strict && !std::mem::take(&mut self.expect_down) {
                    return Err("Down without closing the Established connection".into());
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// After every step, once the outputs are drained.
    fn settled(&self, s: &Session) -> Result<(), String> {
        if self.must_close.iter().any(|m| *m) {
            return Err("a NOTIFICATION without its Close".into());
        }
        if self.expect_down {
            return Err("the Established connection closed without Down".into());
        }
        let est = s.established().map(|(c, _)| c);
        if est != self.established {
            return Err(format!(
                "established() is {est:?}, outputs say {:?}",
                self.established
            ));
        }
        if (s.state() == State::Established) != est.is_some() {
            return Err(format!("state {} with {est:?} established", s.state()));
        }
        Ok(())
    }
}

/// What the operator did last, as far as accepting the peer's connection goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Admin {
    NeverStarted,
    Started,
    ManuallyStopped,
}

/// A driver: one session, the clock, and what the driver knows of its connections.
struct Driver {
    admin: Admin,
    s: Session,
    now: Instant,
    our_open: Bytes,
    ck: Checker,
    /// Only reports `Connected` for an attempt the machine asked for and has not dropped,
    /// and refuses a second inbound connection itself (the driver contract).
    well_behaved: bool,
    connecting: bool,
    /// `Op::Peer` sent the OPEN on the connection already.
    peer_opened: [bool; 2],
}

impl Driver {
    fn new(cfg: Config, strict: bool, well_behaved: bool) -> Self {
        Self {
            admin: Admin::NeverStarted,
            our_open: encode_open(&cfg.open()),
            s: Session::new(cfg),
            now: Instant::now(),
            ck: Checker {
                strict,
                ..Checker::default()
            },
            well_behaved,
            connecting: false,
            peer_opened: [false; 2],
        }
    }

    /// The inputs `op` stands for.
    fn inputs(&mut self, op: &Op) -> Vec<Input> {
        vec![match op {
            Op::Start(automatic) => Input::Start {
                automatic: *automatic,
            },
            Op::Stop(automatic, sub) => Input::Stop {
                automatic: *automatic,
                notification: sub.map(|s| Notification::new(ErrorCode::CEASE, s)),
            },
            Op::Connected => {
                if self.well_behaved && !std::mem::take(&mut self.connecting) {
                    return Vec::new();
                }
                self.opened(OUT);
                Input::Connected
            }
            Op::Accepted => {
                if self.well_behaved && self.s.has_conn(IN) {
                    return Vec::new();
                }
                self.opened(IN);
                Input::Accepted
            }
            Op::Fail(conn) => {
                if *conn == OUT {
                    self.connecting = false;
                }
                Input::ConnectionFailed {
                    conn: *conn,
                    reason: "reset".into(),
                }
            }
            Op::Rx(conn, bytes) => return received(*conn, bytes).into_iter().collect(),
            Op::Peer(conn) => {
                let mut inputs = Vec::new();
                if !std::mem::replace(&mut self.peer_opened[i(*conn)], true) {
                    inputs.extend(received(*conn, &encode_open(&peer_open(30))));
                }
                inputs.extend(received(*conn, &keepalive_bytes()));
                return inputs;
            }
            Op::UpdateError => Input::UpdateError(Notification::new(ErrorCode::UPDATE_MESSAGE, 1)),
            Op::MaxPrefix => Input::MaxPrefixExceeded {
                data: Bytes::from_static(&[0, 1, 1, 0, 0, 0, 10]),
            },
            Op::SendBlocked(c) => Input::SendBlocked(*c),
            Op::SendProgress(c) => Input::SendProgress(*c),
            Op::ReceivePaused => Input::ReceivePaused,
            Op::ReceiveResumed => Input::ReceiveResumed,
            Op::Advance { .. } | Op::Deadline => return Vec::new(),
        }]
    }

    /// Hands `input` to the machine, checking the promises about accepting the peer's
    /// connection, failed connects and Ceases.
    /// `connecting`: our outbound attempt was in flight before the op.
    fn handle(&mut self, input: Input, connecting: bool) -> Result<(), String> {
        let cfg = self.s.config();
        let failures = self.s.failures();
        let accept = (!self.s.has_conn(IN) && matches!(input, Input::Accepted)).then(|| {
            let up = self.admin == Admin::Started
                && (self.s.state() != State::Idle || cfg.allow_automatic_start);
            up && (self.s.established().is_none() || cfg.collision_detect_established)
        });
        let connect_failed =
            connecting && matches!(input, Input::ConnectionFailed { conn: OUT, .. });
        let cease = matches!(&input, Input::Message { frame, .. }
            if frame.ty == bgp_wire::MessageType::NOTIFICATION
                && frame.body().first() == Some(&ErrorCode::CEASE.0));
        match input {
            Input::Start { automatic: false } => self.admin = Admin::Started,
            Input::Start { automatic: true }
                if self.admin == Admin::NeverStarted && cfg.allow_automatic_start =>
            {
                self.admin = Admin::Started;
            }
            Input::Stop {
                automatic: false, ..
            } => self.admin = Admin::ManuallyStopped,
            _ => {}
        }
        self.s.handle(self.now, input);
        if let Some(accept) = accept
            && self.s.has_conn(IN) != accept
        {
            return Err(format!(
                "the peer's connection {} in {}",
                if accept { "refused" } else { "taken" },
                self.s.state()
            ));
        }
        if connect_failed
            && (self.s.state() == State::Idle
                || self.s.timer(Timer::IdleHold).is_some()
                || self.s.failures() != failures)
        {
            return Err(format!(
                "a failed connect left {}, IdleHold {:?}, failures {} → {}",
                self.s.state(),
                self.s.timer(Timer::IdleHold),
                failures,
                self.s.failures()
            ));
        }
        if cease && self.s.failures() > failures {
            return Err("a Cease received counted as a failure".into());
        }
        Ok(())
    }

    fn opened(&mut self, c: ConnId) {
        self.ck.opened(c);
        self.peer_opened[i(c)] = false;
    }

    /// One step; `Err` says which promise broke.
    fn step(&mut self, op: &Op) -> Result<(), String> {
        let fire = match op {
            Op::Advance { ms, fire } => {
                self.now += Duration::from_millis(*ms);
                *fire
            }
            Op::Deadline => match self.s.poll_timeout() {
                Some(t) => {
                    self.now = self.now.max(t);
                    true
                }
                None => false,
            },
            _ => {
                // Only a driver that keeps the contract knows an attempt is in flight.
                let connecting = self.well_behaved && self.connecting;
                for input in self.inputs(op) {
                    self.handle(input, connecting)?;
                }
                false
            }
        };
        if fire {
            self.s.handle_timeout(self.now);
            if let Some(t) = self.s.poll_timeout().filter(|t| *t <= self.now) {
                return Err(format!("{:?} overdue after handle_timeout", self.now - t));
            }
        }
        while let Some(o) = self.s.poll_output() {
            match o {
                Output::Action(Action::Connect) => self.connecting = true,
                Output::Action(Action::Close(c)) => {
                    self.peer_opened[i(c)] = false;
                    if c == OUT {
                        self.connecting = false;
                    }
                }
                _ => {}
            }
            self.ck.output(&o, &self.our_open)?;
        }
        self.ck.settled(&self.s)
    }
}

/// Runs `ops`; `Err` says which promise broke at which step.
fn run(cfg: Config, ops: &[Op], strict: bool, well_behaved: bool) -> Result<Checker, String> {
    let mut d = Driver::new(cfg, strict, well_behaved);
    for (n, op) in ops.iter().enumerate() {
        d.step(op).map_err(|e| format!("step {n} ({op:?}): {e}"))?;
    }
    Ok(d.ck)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_inputs_keep_the_promises((cfg, ops) in case()) {
        run(cfg, &ops, false, false).map_err(TestCaseError::fail)?;
    }

    /// With a driver that keeps the contract, `Close` means closed: nothing is sent on the
    /// connection afterwards, and closing the Established one is reported `Down`.
    #[test]
    fn a_closed_connection_stays_closed((cfg, ops) in case()) {
        run(cfg, &ops, true, true).map_err(TestCaseError::fail)?;
    }
}

/// The same without the driver contract: a `Connected` with no attempt outstanding while
/// the outbound connection is up makes the machine emit `Close(Outbound)`, yet keep the
/// connection (Established, even) and go on sending on it.
#[test]
fn a_closed_connection_stays_closed_whatever_the_driver() {
    let mut runner = TestRunner::deterministic();
    for _ in 0..512 {
        let (cfg, ops) = case().new_tree(&mut runner).unwrap().current();
        run(cfg, &ops, true, false).unwrap();
    }
}

/// The generator is not vacuous: a good share of the sequences reach Established.
#[test]
fn sequences_reach_established() {
    let mut runner = TestRunner::deterministic();
    let reached = (0..400)
        .filter(|_| {
            let (cfg, ops) = case().new_tree(&mut runner).unwrap().current();
            run(cfg, &ops, false, false).unwrap().reached
        })
        .count();
    assert!(
        reached >= 80,
        "{reached} of 400 sequences reached Established"
    );
}
