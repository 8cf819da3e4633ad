//! A session driven by a fuzzed driver: admin events, TCP events, bytes on either
//! connection (framed across reads, as a driver frames them), clock jumps. The machine
//! never panics, leaves nothing due after `handle_timeout`, closes a connection right after
//! a NOTIFICATION on it and sends nothing more there until a new connection opens, and has
//! at most one Established connection, as `Established`/`Down` and `established()` agree.
//!
//! Input: two config bytes, then ops; each op byte picks an event, the bytes after it give
//! its parameters (see `Ops::next`).
#![no_main]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bgp_fsm::{Action, Config, ConnId, Input, News, Output, Session, State};
use bgp_wire::capability::{Capability, GracefulRestart};
use bgp_wire::{ErrorCode, FamilySet, Framer, Notification};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

const OUT: ConnId = ConnId::Outbound;
const IN: ConnId = ConnId::Inbound;
const MAX_OPS: usize = 256;

const fn i(c: ConnId) -> usize {
    match c {
        ConnId::Outbound => 0,
        ConnId::Inbound => 1,
    }
}

fn gr(notification: bool) -> Capability {
    Capability::GracefulRestart(GracefulRestart {
        restart_state: false,
        notification,
        restart_time: 120,
        families: Vec::new(),
    })
}

/// A (192.0.2.1, AS 65001) peering with B (192.0.2.2, AS 65002).
fn config(a: u8, b: u8) -> Config {
    let mut c = Config::new(65001, Ipv4Addr::new(192, 0, 2, 1), 65002);
    c.passive = a & 1 != 0;
    c.allow_automatic_start = a & 2 != 0;
    c.damp_peer_oscillations = a & 4 != 0;
    c.collision_detect_established = a & 8 != 0;
    c.send_notification_without_open = a & 16 != 0;
    if a & 32 != 0 {
        c.capabilities.push(gr(a & 64 != 0));
    }
    if a & 128 != 0 {
        c.required_families = FamilySet::ALL;
    }
    c.delay_open = (b & 3 != 0).then(|| Duration::from_secs(u64::from(b & 3) * 5));
    c.timing.hold_time = [0, 3, 9, 90][usize::from((b >> 2) & 3)];
    c.timing.min_hold_time = [0, 3, 10, 0][usize::from((b >> 4) & 3)];
    c.timing.connect_retry = Duration::from_secs([1, 5, 30, 120][usize::from(b >> 6)]);
    c.timing.idle_hold = Duration::from_secs(1);
    c
}

/// B's OPEN, or a variation of it chosen by `v`.
fn peer_open(v: u8) -> Bytes {
    let mut caps = vec![
        Capability::Multiprotocol {
            afi: bgp_wire::Afi::IPV4,
            safi: bgp_wire::Safi::UNICAST,
        },
        Capability::Multiprotocol {
            afi: bgp_wire::Afi::IPV6,
            safi: bgp_wire::Safi::UNICAST,
        },
        Capability::RouteRefresh,
    ];
    let asn = [65002, 65002, 65009, 65001][usize::from(v & 3)];
    caps.push(Capability::FourOctetAs(asn));
    if v & 4 != 0 {
        caps.push(gr(v & 8 != 0));
    }
    if v & 16 != 0 {
        caps.remove(1);
    }
    let open = bgp_wire::open::Open {
        asn,
        hold_time: [30, 0, 3, 1][usize::from((v >> 5) & 3)],
        bgp_id: if v & 128 != 0 {
            Ipv4Addr::new(192, 0, 2, 1)
        } else {
            Ipv4Addr::new(192, 0, 2, 2)
        },
        capabilities: caps,
    };
    let mut b = BytesMut::new();
    open.encode(&mut b);
    b.freeze()
}

/// A message of each type, chosen by `v`.
fn template(v: u8, w: u8) -> Bytes {
    let mut b = BytesMut::from(&bgp_wire::header::MARKER[..]);
    match v % 6 {
        0 => return peer_open(w),
        1 => b.extend_from_slice(&[0, 19, 4]),
        2 => b.extend_from_slice(&[0, 23, 2, 0, 0, 0, 0]),
        3 => {
            b.clear();
            Notification::new(ErrorCode(w & 7), w >> 3).encode(&mut b);
        }
        4 => b.extend_from_slice(&[0, 23, 5, 0, 1, 0, 1]),
        _ => b.extend_from_slice(&[0, 21, 3, 6, w]),
    }
    b.freeze()
}

/// The fuzzer's bytes as a stream of parameters.
struct Ops<'a>(&'a [u8]);

impl Ops<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn conn(&mut self) -> ConnId {
        if self.byte().unwrap_or(0) & 1 == 0 {
            OUT
        } else {
            IN
        }
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

/// The driver: clock, per-connection read buffers, and the invariants' bookkeeping.
struct Driver {
    s: Session,
    now: Instant,
    bufs: [BytesMut; 2],
    /// A NOTIFICATION went out: the next output about the connection must close it.
    must_close: [bool; 2],
    /// Closed after a NOTIFICATION: nothing more until a new connection opens.
    silenced: [bool; 2],
    established: Option<ConnId>,
}

impl Driver {
    fn handle(&mut self, input: Input) {
        match input {
            Input::Connected => self.opened(OUT),
            Input::Accepted => self.opened(IN),
            _ => {}
        }
        self.s.handle(self.now, input);
    }

    fn opened(&mut self, c: ConnId) {
        self.silenced[i(c)] = false;
        self.bufs[i(c)].clear();
    }

    /// Bytes read on `c`: every whole message goes in; a header error too, and the rest of
    /// the stream is dropped.
    fn read(&mut self, c: ConnId, data: &[u8]) {
        self.bufs[i(c)].extend_from_slice(data);
        loop {
            match Framer::new().next_frame(&mut self.bufs[i(c)]) {
                Ok(Some(frame)) => self.handle(Input::Message { conn: c, frame }),
                Ok(None) => return,
                Err(error) => {
                    self.bufs[i(c)].clear();
                    return self.handle(Input::HeaderError { conn: c, error });
                }
            }
        }
    }

    fn fire(&mut self) {
        self.s.handle_timeout(self.now);
        if let Some(t) = self.s.poll_timeout() {
            assert!(t > self.now, "a deadline is still due after handle_timeout");
        }
    }

    fn check_outputs(&mut self) {
        while let Some(o) = self.s.poll_output() {
            match o {
                Output::Action(Action::Send { conn, bytes }) => {
                    let c = i(conn);
                    assert!(!self.must_close[c], "{conn:?}: sent after a NOTIFICATION");
                    assert!(
                        !self.silenced[c],
                        "{conn:?}: sent after NOTIFICATION and Close"
                    );
                    let mut buf = BytesMut::from(&bytes[..]);
                    let frame = Framer::new().next_frame(&mut buf).expect("valid header");
                    let frame = frame.expect("a whole message");
                    assert!(buf.is_empty(), "one message per Send");
                    if frame.ty == bgp_wire::MessageType::NOTIFICATION {
                        self.must_close[c] = true;
                    }
                }
                Output::Action(Action::Close(conn)) => {
                    let c = i(conn);
                    if std::mem::take(&mut self.must_close[c]) {
                        self.silenced[c] = true;
                    }
                    self.bufs[c].clear();
                }
                Output::News(News::Established { conn, .. }) => {
                    let c = i(conn);
                    assert!(!self.must_close[c] && !self.silenced[c]);
                    assert_eq!(self.established, None, "two Established connections");
                    self.established = Some(conn);
                }
                Output::News(News::Down { .. }) => {
                    assert!(
                        self.established.take().is_some(),
                        "Down while not Established"
                    );
                }
                _ => {}
            }
        }
        assert!(
            !self.must_close.iter().any(|m| *m),
            "a NOTIFICATION without its Close"
        );
        assert_eq!(self.s.established().map(|(c, _)| c), self.established);
        assert_eq!(
            self.s.state() == State::Established,
            self.established.is_some()
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut ops = Ops(data);
    let (Some(a), Some(b)) = (ops.byte(), ops.byte()) else {
        return;
    };
    let mut d = Driver {
        s: Session::new(config(a, b)),
        now: Instant::now(),
        bufs: Default::default(),
        must_close: [false; 2],
        silenced: [false; 2],
        established: None,
    };
    for _ in 0..MAX_OPS {
        let Some(op) = ops.byte() else { break };
        match op % 18 {
            0 => d.handle(Input::Start { automatic: false }),
            1 => d.handle(Input::Start { automatic: true }),
            2 | 3 => {
                let sub = ops.byte().unwrap_or(0);
                d.handle(Input::Stop {
                    automatic: op % 18 == 3,
                    notification: (sub != 0).then(|| Notification::new(ErrorCode::CEASE, sub)),
                });
            }
            4 => d.handle(Input::Connected),
            5 => d.handle(Input::Accepted),
            6 => {
                let conn = ops.conn();
                d.handle(Input::ConnectionFailed {
                    conn,
                    reason: "reset".into(),
                });
            }
            // Raw bytes: a length, then that many bytes.
            7 => {
                let conn = ops.conn();
                let n = usize::from(ops.byte().unwrap_or(0));
                let raw = ops.bytes(n).to_vec();
                d.read(conn, &raw);
            }
            // A message of a chosen type, one byte of it overwritten.
            8 => {
                let conn = ops.conn();
                let (v, w) = (ops.byte().unwrap_or(0), ops.byte().unwrap_or(0));
                let (at, x) = (ops.byte().unwrap_or(0), ops.byte().unwrap_or(0));
                let mut m = template(v, w).to_vec();
                if at != 0 {
                    let k = usize::from(at) % m.len();
                    m[k] = x;
                }
                d.read(conn, &m);
            }
            // The peer's side of a good conversation: OPEN then KEEPALIVE, or a KEEPALIVE.
            9 | 10 => {
                let conn = ops.conn();
                let mut m = if op % 18 == 9 {
                    peer_open(0).to_vec()
                } else {
                    Vec::new()
                };
                m.extend_from_slice(&bgp_wire::keepalive::KEEPALIVE);
                d.read(conn, &m);
            }
            11 => d.handle(Input::UpdateError(Notification::new(
                ErrorCode::UPDATE_MESSAGE,
                ops.byte().unwrap_or(1),
            ))),
            12 => d.handle(Input::MaxPrefixExceeded {
                data: Bytes::from_static(&[0, 1, 1, 0, 0, 0, 10]),
            }),
            13 => {
                let conn = ops.conn();
                d.handle(Input::SendBlocked(conn));
            }
            14 => {
                let conn = ops.conn();
                d.handle(Input::SendProgress(conn));
            }
            // Clock: up to 65535 units of 1 ms, 1 s or 1 min; fired or left overdue.
            15 | 16 => {
                let hi = ops.byte().unwrap_or(0);
                let lo = ops.byte().unwrap_or(0);
                let unit = [1, 1_000, 60_000][usize::from(ops.byte().unwrap_or(0) % 3)];
                d.now += Duration::from_millis(u64::from(u16::from_be_bytes([hi, lo])) * unit);
                if op % 18 == 15 {
                    d.fire();
                }
            }
            _ => {
                if let Some(t) = d.s.poll_timeout() {
                    d.now = d.now.max(t);
                    d.fire();
                }
            }
        }
        d.check_outputs();
    }
});
