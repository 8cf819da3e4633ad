//! A `Pair` of sessions wired back to back on a virtual clock: two TCP "links" carry
//! bytes between them with no latency, and time jumps straight to the next deadline, so
//! hours of session life take milliseconds (the shape of quinn-proto's `tests/util.rs`).

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bgp_fsm::{Action, Config, ConnId, DownReason, Input, News, Output, Session, State};
use bgp_wire::{Framer, MessageType, Notification};
use bytes::{Bytes, BytesMut};

/// Which side of the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }
    fn i(self) -> usize {
        match self {
            Self::A => 0,
            Self::B => 1,
        }
    }
}

/// What a side's machine said, in order, with the virtual time.
#[derive(Clone, Debug)]
pub enum Event {
    Connect,
    Sent(ConnId, MessageType, Bytes),
    Closed(ConnId),
    Established(ConnId),
    Down(DownReason, bool),
    Failed(DownReason),
    Update,
    State(State),
}

pub struct Pair {
    pub now: Instant,
    pub start: Instant,
    pub s: [Session; 2],
    /// Link 0 joins A's outbound to B's inbound; link 1 joins B's outbound to A's inbound.
    pub up: [bool; 2],
    /// Bytes in flight on each link and direction are delivered at once, unless a side is
    /// deaf (its received bytes vanish, as if the peer stopped sending).
    pub deaf: [bool; 2],
    /// Whether a side's listener accepts connections at all (a firewall if false).
    pub reachable: [bool; 2],
    pub log: [Vec<(Duration, Event)>; 2],
    pending: VecDeque<(Side, Output)>,
    bufs: [[BytesMut; 2]; 2],
}

/// An eBGP config: A is 192.0.2.1 in AS 65001, B 192.0.2.2 in AS 65002.
pub fn config(side: Side) -> Config {
    let (asn, id, peer) = match side {
        Side::A => (65001, Ipv4Addr::new(192, 0, 2, 1), 65002),
        Side::B => (65002, Ipv4Addr::new(192, 0, 2, 2), 65001),
    };
    let mut c = Config::new(asn, id, peer);
    c.timing.hold_time = 9;
    c.timing.connect_retry = Duration::from_secs(5);
    c.timing.idle_hold = Duration::from_secs(1);
    c.timing.idle_hold_max = Duration::from_secs(64);
    c
}

impl Pair {
    pub fn new(a: Config, b: Config) -> Self {
        let now = Instant::now();
        Self {
            now,
            start: now,
            s: [Session::new(a), Session::new(b)],
            up: [false; 2],
            deaf: [false; 2],
            reachable: [true; 2],
            log: [Vec::new(), Vec::new()],
            pending: VecDeque::new(),
            bufs: Default::default(),
        }
    }

    pub fn default_pair() -> Self {
        Self::new(config(Side::A), config(Side::B))
    }

    pub fn session(&self, side: Side) -> &Session {
        &self.s[side.i()]
    }

    pub fn state(&self, side: Side) -> State {
        self.s[side.i()].state()
    }

    /// The link a side's connection runs on.
    fn link(side: Side, c: ConnId) -> usize {
        match (side, c) {
            (Side::A, ConnId::Outbound) | (Side::B, ConnId::Inbound) => 0,
            _ => 1,
        }
    }

    /// The peer's end of a side's connection.
    fn far(c: ConnId) -> ConnId {
        c.other()
    }

    pub fn handle(&mut self, side: Side, input: Input) {
        let now = self.now;
        self.s[side.i()].handle(now, input);
        self.drive();
    }

    /// Starts both sides at the same instant, before either's output is carried out.
    pub fn start_both(&mut self) {
        let now = self.now;
        for s in &mut self.s {
            s.handle(now, Input::Start { automatic: false });
        }
        self.drive();
    }

    /// Runs outputs until both machines are quiet.
    pub fn drive(&mut self) {
        for _ in 0..10_000 {
            for side in [Side::A, Side::B] {
                while let Some(o) = self.s[side.i()].poll_output() {
                    self.pending.push_back((side, o));
                }
            }
            let Some((side, o)) = self.pending.pop_front() else {
                return;
            };
            self.apply(side, o);
        }
        panic!("the pair never went quiet");
    }

    fn record(&mut self, side: Side, e: Event) {
        let t = self.now - self.start;
        self.log[side.i()].push((t, e));
    }

    fn apply(&mut self, side: Side, o: Output) {
        let now = self.now;
        let peer = side.other();
        match o {
            Output::Action(Action::Connect) => {
                self.record(side, Event::Connect);
                let link = Self::link(side, ConnId::Outbound);
                if self.reachable[peer.i()] && !self.up[link] {
                    self.up[link] = true;
                    self.bufs[link] = Default::default();
                    self.s[side.i()].handle(now, Input::Connected);
                    self.s[peer.i()].handle(now, Input::Accepted);
                } else {
                    let reason = "connection refused".to_string();
                    self.s[side.i()].handle(
                        now,
                        Input::ConnectionFailed {
                            conn: ConnId::Outbound,
                            reason,
                        },
                    );
                }
            }
            Output::Action(Action::Send { conn, bytes }) => {
                let ty = MessageType(bytes.get(18).copied().unwrap_or(0));
                self.record(side, Event::Sent(conn, ty, bytes.clone()));
                let link = Self::link(side, conn);
                if !self.up[link] || self.deaf[peer.i()] {
                    return;
                }
                let buf = &mut self.bufs[link][peer.i()];
                buf.extend_from_slice(&bytes);
                let framer = Framer::new();
                loop {
                    match framer.next_frame(buf) {
                        Ok(Some(frame)) => self.s[peer.i()].handle(
                            now,
                            Input::Message {
                                conn: Self::far(conn),
                                frame,
                            },
                        ),
                        Ok(None) => break,
                        Err(error) => {
                            self.s[peer.i()].handle(
                                now,
                                Input::HeaderError {
                                    conn: Self::far(conn),
                                    error,
                                },
                            );
                            break;
                        }
                    }
                }
            }
            Output::Action(Action::Close(conn)) => {
                self.record(side, Event::Closed(conn));
                let link = Self::link(side, conn);
                if self.up[link] {
                    self.up[link] = false;
                    let reason = "connection closed by peer".to_string();
                    self.s[peer.i()].handle(
                        now,
                        Input::ConnectionFailed {
                            conn: Self::far(conn),
                            reason,
                        },
                    );
                }
            }
            Output::News(News::Established { conn, .. }) => {
                self.record(side, Event::Established(conn))
            }
            Output::News(News::Down { reason, graceful }) => {
                self.record(side, Event::Down(reason, graceful))
            }
            Output::News(News::Failed(reason)) => self.record(side, Event::Failed(reason)),
            Output::News(News::Update(_) | News::RouteRefresh(_)) => {
                self.record(side, Event::Update)
            }
            Output::News(News::StateChanged { to, .. }) => self.record(side, Event::State(to)),
        }
    }

    /// Advances virtual time by `d`, firing every deadline on the way.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..1_000_000 {
            let next = self.s.iter().filter_map(Session::poll_timeout).min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    for i in 0..2 {
                        let now = self.now;
                        self.s[i].handle_timeout(now);
                    }
                    self.drive();
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
        panic!("too many timer firings");
    }

    /// Messages of type `ty` a side sent.
    pub fn sent(&self, side: Side, ty: MessageType) -> Vec<(Duration, Bytes)> {
        self.log[side.i()]
            .iter()
            .filter_map(|(t, e)| match e {
                Event::Sent(_, m, b) if *m == ty => Some((*t, b.clone())),
                _ => None,
            })
            .collect()
    }

    /// The NOTIFICATIONs a side sent.
    pub fn notifications(&self, side: Side) -> Vec<Notification> {
        self.sent(side, MessageType::NOTIFICATION)
            .into_iter()
            .filter_map(|(_, b)| Notification::decode(&b[19..]).ok())
            .collect()
    }

    /// When a side emitted `Connect`.
    pub fn connects(&self, side: Side) -> Vec<Duration> {
        self.log[side.i()]
            .iter()
            .filter_map(|(t, e)| matches!(e, Event::Connect).then_some(*t))
            .collect()
    }

    pub fn established_on(&self, side: Side) -> Option<ConnId> {
        self.session(side).established().map(|(c, _)| c)
    }
}

// ---------------------------------------------------------------------------------------
// Single-session helpers (tests/cells.rs, tests/proptest.rs): real encoded messages, framed
// as a driver frames them, and outputs reduced to values a test can compare.

/// A's config with RFC 4271 §10 timer values: hold 90 s, ConnectRetry 120 s, OpenSent hold
/// 240 s, idle hold 5 s. A is 192.0.2.1 in AS 65001; its peer B is 192.0.2.2 in AS 65002, so
/// the peer has the higher BGP identifier and wins collisions (RFC 4271 §6.8).
pub fn rfc_config() -> Config {
    Config::new(65001, Ipv4Addr::new(192, 0, 2, 1), 65002)
}

/// The OPEN B sends A, proposing `hold` seconds.
pub fn peer_open(hold: u16) -> bgp_wire::open::Open {
    let mut o = config(Side::B).open();
    o.hold_time = hold;
    o
}

/// An OPEN, encoded with its header.
pub fn encode_open(o: &bgp_wire::open::Open) -> Bytes {
    let mut b = BytesMut::new();
    o.encode(&mut b);
    b.freeze()
}

/// A NOTIFICATION, encoded with its header.
pub fn encode_notification(n: &Notification) -> Bytes {
    let mut b = BytesMut::new();
    n.encode(&mut b);
    b.freeze()
}

/// A KEEPALIVE.
pub fn keepalive_bytes() -> Bytes {
    Bytes::from_static(&bgp_wire::keepalive::KEEPALIVE)
}

/// The smallest UPDATE: IPv4 End-of-RIB (no withdrawn routes, no attributes, no NLRI).
pub fn update_bytes() -> Bytes {
    let mut b = BytesMut::from(&bgp_wire::header::MARKER[..]);
    b.extend_from_slice(&[0, 23, 2, 0, 0, 0, 0]);
    b.freeze()
}

/// What a driver hands the machine for these bytes received on `conn`: the first message
/// the framer splits off, or the header error it finds. `None` while the bytes are short
/// of a whole message.
pub fn received(conn: ConnId, bytes: &[u8]) -> Option<Input> {
    let mut buf = BytesMut::from(bytes);
    match Framer::new().next_frame(&mut buf) {
        Ok(Some(frame)) => Some(Input::Message { conn, frame }),
        Ok(None) => None,
        Err(error) => Some(Input::HeaderError { conn, error }),
    }
}

/// An output reduced to a comparable value; sent bytes are decoded, and checked to be a
/// whole message of the type they claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    Connect,
    /// Our OPEN, byte for byte `Config::open()` encoded.
    Open(ConnId),
    Keepalive(ConnId),
    Notification(ConnId, Notification),
    Close(ConnId),
    /// Established on the connection, with the negotiated hold time.
    Established(ConnId, u16),
    Down(DownReason, bool),
    Failed(DownReason),
    /// An UPDATE handed to the RIB, as received.
    Update(Bytes),
    RouteRefresh,
    State(State, State),
}

/// Reduces `o`; `our_open` is the machine's encoded OPEN. Panics on bytes that are not a
/// whole OPEN, KEEPALIVE or NOTIFICATION.
pub fn reduce(o: Output, our_open: &[u8]) -> Out {
    match o {
        Output::Action(Action::Connect) => Out::Connect,
        Output::Action(Action::Send { conn, bytes }) => {
            let mut buf = BytesMut::from(&bytes[..]);
            let frame = Framer::new()
                .next_frame(&mut buf)
                .expect("the machine sends well-formed headers")
                .expect("the machine sends whole messages");
            assert!(buf.is_empty(), "one message per Send: {bytes:?}");
            match frame.ty {
                MessageType::OPEN => {
                    assert_eq!(&bytes[..], our_open, "our OPEN is Config::open()");
                    Out::Open(conn)
                }
                MessageType::KEEPALIVE => Out::Keepalive(conn),
                MessageType::NOTIFICATION => Out::Notification(
                    conn,
                    Notification::decode(frame.body()).expect("a valid NOTIFICATION"),
                ),
                ty => panic!("the machine sent a {ty:?}"),
            }
        }
        Output::Action(Action::Close(c)) => Out::Close(c),
        Output::News(News::Established {
            conn, negotiated, ..
        }) => Out::Established(conn, negotiated.hold_time),
        Output::News(News::Down { reason, graceful }) => Out::Down(reason, graceful),
        Output::News(News::Failed(r)) => Out::Failed(r),
        Output::News(News::Update(f)) => Out::Update(f.bytes),
        Output::News(News::RouteRefresh(_)) => Out::RouteRefresh,
        Output::News(News::StateChanged { from, to }) => Out::State(from, to),
    }
}
