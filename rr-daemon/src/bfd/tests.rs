//! Two endpoints wired back to back on a virtual clock: handshakes, detection, the Poll
//! Sequence, authentication and a thousand sessions, in milliseconds of real time.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::packet::{Diag, Packet, State};
use super::session::{AuthKey, SessionConfig};
use super::{Dropped, Endpoint, Event, Key};

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const MS: Duration = Duration::from_millis(1);

fn key(peer: IpAddr) -> Key {
    Key {
        peer,
        multihop: false,
    }
}

fn cfg(ms: u64, mult: u8) -> SessionConfig {
    SessionConfig::new(Duration::from_millis(ms), mult)
}

/// Two speakers `a` (at address A) and `b` (at B) and the link between them.
struct Net {
    now: Instant,
    a: Endpoint,
    b: Endpoint,
    /// The link carries packets (both ways).
    up: bool,
    a_events: Vec<(Duration, Event)>,
    b_events: Vec<(Duration, Event)>,
    start: Instant,
    /// Packets each side sent: (when, decoded).
    a_sent: Vec<(Duration, Packet)>,
    b_sent: Vec<(Duration, Packet)>,
}

impl Net {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            now,
            a: Endpoint::new(1),
            b: Endpoint::new(2),
            up: true,
            a_events: Vec::new(),
            b_events: Vec::new(),
            start: now,
            a_sent: Vec::new(),
            b_sent: Vec::new(),
        }
    }

    fn pair(a: SessionConfig, b: SessionConfig) -> Self {
        let mut n = Self::new();
        n.a.set(n.now, key(B), None, a);
        n.b.set(n.now, key(A), None, b);
        n.deliver();
        n
    }

    fn t(&self) -> Duration {
        self.now - self.start
    }

    /// Moves every queued packet across (instantly) until nothing is left.
    fn deliver(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some(tx) = self.a.poll_transmit() {
                moved = true;
                self.a_sent
                    .push((self.now - self.start, Packet::decode(&tx.bytes).unwrap()));
                if self.up {
                    let _ =
                        self.b
                            .handle_datagram(self.now, A, tx.key.multihop, Some(255), &tx.bytes);
                }
            }
            while let Some(tx) = self.b.poll_transmit() {
                moved = true;
                self.b_sent
                    .push((self.now - self.start, Packet::decode(&tx.bytes).unwrap()));
                if self.up {
                    let _ =
                        self.a
                            .handle_datagram(self.now, B, tx.key.multihop, Some(255), &tx.bytes);
                }
            }
            let t = self.now - self.start;
            while let Some(e) = self.a.poll_event() {
                self.a_events.push((t, e));
            }
            while let Some(e) = self.b.poll_event() {
                self.b_events.push((t, e));
            }
            if !moved {
                return;
            }
        }
        panic!("packets ping-pong forever");
    }

    /// Runs the clock for `d`, jumping from deadline to deadline.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..10_000_000 {
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                    self.deliver();
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
        panic!("the clock does not advance");
    }

    fn a_state(&self) -> State {
        self.a.session(key(B)).unwrap().state()
    }

    fn b_state(&self) -> State {
        self.b.session(key(A)).unwrap().state()
    }
}

#[test]
fn three_way_handshake_then_the_configured_rate() {
    let mut n = Net::pair(cfg(300, 3), cfg(300, 3));
    n.run(3000 * MS);
    assert_eq!((n.a_state(), n.b_state()), (State::Up, State::Up));
    let states: Vec<State> = n.a_events.iter().map(|(_, e)| e.change.to).collect();
    assert_eq!(states, [State::Init, State::Up], "{:?}", n.a_events);
    // Up with the slow rate first, then 300 ms once the Poll Sequence is answered.
    let a = n.a.session(key(B)).unwrap();
    assert!(!a.polling());
    assert_eq!(a.tx_interval(), 300 * MS);
    assert_eq!(a.detection_time(), Some(900 * MS));
    // Once Up and polled, packets leave every 225..300 ms.
    let up_at = n.a_events.last().unwrap().0;
    let periodic: Vec<Duration> = n
        .a_sent
        .iter()
        .filter(|(t, p)| *t > up_at + 500 * MS && !p.fin)
        .map(|(t, _)| *t)
        .collect();
    assert!(periodic.len() >= 5, "{periodic:?}");
    for w in periodic.windows(2) {
        let gap = w[1] - w[0];
        assert!(gap >= 225 * MS && gap <= 300 * MS, "gap {gap:?}");
    }
    // Before Up, no faster than once a second (§6.8.3).
    let first: Vec<&Packet> = n.a_sent.iter().map(|(_, p)| p).take(1).collect();
    assert_eq!(first[0].desired_min_tx, 1_000_000);
    assert_eq!(first[0].state, State::Down);
}

#[test]
fn silence_takes_the_session_down_after_the_detection_time() {
    let mut n = Net::pair(cfg(300, 3), cfg(300, 3));
    n.run(3000 * MS);
    let last_heard = n.b_sent.last().unwrap().0;
    n.up = false;
    n.run(2000 * MS);
    let (t, e) = n.a_events.last().unwrap();
    assert_eq!(e.change.to, State::Down);
    assert_eq!(e.change.diag, Diag::TIME_EXPIRED);
    assert_eq!(e.remote, State::Down);
    // Exactly three times 300 ms after the last packet from B.
    assert_eq!(*t - last_heard, 900 * MS);
    assert_eq!(n.b_state(), State::Down);
    // Back on the link, both come up again.
    n.up = true;
    n.run(5000 * MS);
    assert_eq!((n.a_state(), n.b_state()), (State::Up, State::Up));
}

#[test]
fn peer_going_down_is_seen_at_once() {
    let mut n = Net::pair(cfg(300, 3), cfg(300, 3));
    n.run(3000 * MS);
    // B forgets its session and starts anew: its Down reaches A with the next packet.
    n.b.remove(key(A));
    n.deliver();
    let e = n.a_events.last().unwrap().1;
    assert_eq!(e.change.to, State::Down);
    assert_eq!(e.change.diag, Diag::NEIGHBOR_DOWN);
    assert_eq!(e.remote, State::AdminDown, "removal says AdminDown");
}

#[test]
fn poll_sequence_renegotiates_timers_without_going_down() {
    let mut n = Net::pair(cfg(300, 3), cfg(300, 3));
    n.run(3000 * MS);
    let mark = n.a_sent.len();
    let events = n.a_events.len() + n.b_events.len();
    n.a.set(n.now, key(B), None, cfg(600, 3));
    n.deliver();
    // The poll went out at once and B answered with F.
    let polled = &n.a_sent[mark];
    assert!(polled.1.poll && polled.1.desired_min_tx == 600_000);
    assert!(n.b_sent.iter().any(|(t, p)| p.fin && *t == n.t()));
    assert!(!n.a.session(key(B)).unwrap().polling());
    n.run(5000 * MS);
    assert_eq!((n.a_state(), n.b_state()), (State::Up, State::Up));
    assert_eq!(
        n.a_events.len() + n.b_events.len(),
        events,
        "no state change"
    );
    // Both directions now at 600 ms: A by its own choice, B because A asks for it.
    assert_eq!(n.a.session(key(B)).unwrap().tx_interval(), 600 * MS);
    let b = n.b.session(key(A)).unwrap();
    assert_eq!(b.tx_interval(), 600 * MS);
    assert_eq!(b.detection_time(), Some(1800 * MS));
    // And back down to 300 ms.
    n.a.set(n.now, key(B), None, cfg(300, 3));
    n.deliver();
    n.run(2000 * MS);
    assert_eq!(n.b.session(key(A)).unwrap().tx_interval(), 300 * MS);
    assert_eq!(
        n.b.session(key(A)).unwrap().detection_time(),
        Some(900 * MS)
    );
    assert_eq!((n.a_state(), n.b_state()), (State::Up, State::Up));
}

#[test]
fn a_slower_rate_waits_for_the_final() {
    // Without the F coming back, A keeps its old rate (§6.8.3) and keeps polling.
    let mut n = Net::pair(cfg(300, 3), cfg(300, 3));
    n.run(3000 * MS);
    n.up = false;
    n.a.set(n.now, key(B), None, cfg(2000, 3));
    n.run(200 * MS);
    let a = n.a.session(key(B)).unwrap();
    assert!(a.polling());
    assert_eq!(a.tx_interval(), 300 * MS);
}

fn sha1(id: u8, key: &[u8], meticulous: bool) -> SessionConfig {
    let mut c = cfg(300, 3);
    c.auth = Some(AuthKey {
        key_id: id,
        key: key.to_vec(),
        meticulous,
    });
    c
}

#[test]
fn keyed_sha1_sessions_come_up_and_wrong_keys_do_not() {
    for meticulous in [false, true] {
        let mut n = Net::pair(
            sha1(1, b"s3cret", meticulous),
            sha1(1, b"s3cret", meticulous),
        );
        n.run(3000 * MS);
        assert_eq!((n.a_state(), n.b_state()), (State::Up, State::Up));
        assert!(n.a_sent.iter().all(|(_, p)| p.auth.is_some()));
    }
    for (a, b) in [
        (sha1(1, b"s3cret", false), sha1(1, b"other", false)),
        (sha1(1, b"s3cret", false), sha1(2, b"s3cret", false)),
        (sha1(1, b"s3cret", false), sha1(1, b"s3cret", true)),
        (sha1(1, b"s3cret", false), cfg(300, 3)),
    ] {
        let mut n = Net::pair(a, b);
        n.run(3000 * MS);
        assert_eq!((n.a_state(), n.b_state()), (State::Down, State::Down));
    }
}

#[test]
fn meticulous_sha1_refuses_a_replayed_packet() {
    let mut n = Net::new();
    n.a.set(n.now, key(B), None, sha1(1, b"k", true));
    n.b.set(n.now, key(A), None, sha1(1, b"k", true));
    let first = n.a.poll_transmit().unwrap();
    assert!(
        n.b.handle_datagram(n.now, A, false, Some(255), &first.bytes)
            .is_ok()
    );
    assert!(matches!(
        n.b.handle_datagram(n.now, A, false, Some(255), &first.bytes),
        Err(Dropped::Session(_))
    ));
}

#[test]
fn demultiplexing_checks_ttl_address_and_discriminator() {
    let mut n = Net::pair(cfg(300, 3), cfg(300, 3));
    n.run(3000 * MS);
    n.up = false;
    n.run(100 * MS);
    let tx = n.b.poll_transmit();
    assert!(tx.is_none());
    // A packet from B as B would send it, replayed with other TTLs and sources.
    let (_, p) = *n.b_sent.last().unwrap();
    let raw = p.encode(None);
    let now = n.now;
    assert_eq!(
        n.a.handle_datagram(now, B, false, Some(254), &raw),
        Err(Dropped::Ttl(Some(254)))
    );
    assert_eq!(
        n.a.handle_datagram(now, B, false, None, &raw),
        Err(Dropped::Ttl(None))
    );
    let c = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
    assert_eq!(
        n.a.handle_datagram(now, c, false, Some(255), &raw),
        Err(Dropped::NoSession)
    );
    assert_eq!(
        n.a.handle_datagram(now, B, true, Some(64), &raw),
        Err(Dropped::NoSession),
        "single-hop session, multihop port"
    );
    assert!(n.a.handle_datagram(now, B, false, Some(255), &raw).is_ok());
    assert!(matches!(
        n.a.handle_datagram(now, B, false, Some(255), &[0x20; 10]),
        Err(Dropped::Malformed(_))
    ));
}

#[test]
fn multihop_sessions_take_any_ttl() {
    let mut n = Net::new();
    let k = Key {
        peer: B,
        multihop: true,
    };
    n.a.set(n.now, k, None, cfg(300, 3));
    let mut b_cfg = Endpoint::new(9);
    b_cfg.set(
        n.now,
        Key {
            peer: A,
            multihop: true,
        },
        None,
        cfg(300, 3),
    );
    let tx = b_cfg.poll_transmit().unwrap();
    assert!(
        n.a.handle_datagram(n.now, B, true, Some(250), &tx.bytes)
            .is_ok()
    );
    assert_eq!(n.a.session(k).unwrap().state(), State::Init);
}

#[test]
fn a_thousand_sessions_share_one_heap_and_none_goes_down() {
    // A has a session to each of a thousand neighbours; B plays all of them: its session
    // keyed by `peer(i)` is the far end of A's session to `peer(i)`.
    let mut n = Net::new();
    let peer = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + i));
    for i in 0..1000u32 {
        n.a.set(n.now, key(peer(i)), None, cfg(300, 3));
        n.b.set(n.now, key(peer(i)), None, cfg(300, 3));
    }
    let (mut downs, mut sent, mut heap_max) = (0, 0u64, 0);
    let end = n.now + Duration::from_secs(20);
    while n.now < end {
        let next = [n.a.poll_timeout(), n.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap();
        n.now = next.max(n.now).min(end);
        n.a.handle_timeout(n.now);
        n.b.handle_timeout(n.now);
        for _ in 0..10 {
            let mut moved = false;
            while let Some(tx) = n.a.poll_transmit() {
                moved = true;
                sent += 1;
                n.b.handle_datagram(n.now, tx.key.peer, false, Some(255), &tx.bytes)
                    .unwrap();
            }
            while let Some(tx) = n.b.poll_transmit() {
                moved = true;
                n.a.handle_datagram(n.now, tx.key.peer, false, Some(255), &tx.bytes)
                    .unwrap();
            }
            if !moved {
                break;
            }
        }
        while let Some(e) = n.a.poll_event() {
            downs += usize::from(e.change.to == State::Down);
        }
        heap_max = heap_max.max(n.a.heap_len());
    }
    assert_eq!(n.a.counts(), [0, 0, 0, 1000]);
    assert_eq!(n.b.counts(), [0, 0, 0, 1000]);
    assert_eq!(downs, 0);
    assert!(heap_max <= 2 * 1000 + 64, "heap {heap_max}");
    // About 20 s at 300 ms less jitter: 3.3 to 4.4 packets a second per session.
    assert!(sent > 1000 * 60 && sent < 1000 * 95, "{sent}");
}

mod robustness {
    use proptest::prelude::*;

    use super::*;

    /// What a hostile or broken network does: random datagrams, valid packets with one
    /// byte changed, from either address and port, with any TTL, at random times.
    #[derive(Debug, Clone)]
    enum Input {
        Raw(Vec<u8>, bool, u8),
        Mutated(usize, u8, bool),
        Wait(u16),
        Reconfigure(u16),
    }

    fn input() -> impl Strategy<Value = Input> {
        prop_oneof![
            (
                proptest::collection::vec(any::<u8>(), 0..64),
                any::<bool>(),
                any::<u8>()
            )
                .prop_map(|(b, from_b, ttl)| Input::Raw(b, from_b, ttl)),
            (0usize..52, any::<u8>(), any::<bool>())
                .prop_map(|(i, v, auth)| Input::Mutated(i, v, auth)),
            (0u16..3000).prop_map(Input::Wait),
            (10u16..2000).prop_map(Input::Reconfigure),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn endpoint_survives_any_input(inputs in proptest::collection::vec(input(), 1..200)) {
            let mut n = Net::pair(cfg(300, 3), sha1(3, b"k", false));
            let c = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
            n.a.set(n.now, key(c), None, sha1(3, b"k", true));
            let template = n.a_sent.first().map(|(_, p)| *p).unwrap();
            for i in inputs {
                match i {
                    Input::Raw(b, from_b, ttl) => {
                        let from = if from_b { B } else { c };
                        let _ = n.a.handle_datagram(n.now, from, ttl % 2 == 0, Some(ttl), &b);
                    }
                    Input::Mutated(at, v, auth) => {
                        let mut p = template;
                        p.your_disc = n.a.session(key(B)).map_or(0, |s| s.local_disc());
                        let key_bytes: Option<&[u8]> = if auth {
                            p.auth = Some(super::super::Auth::Sha1(super::super::Sha1Auth {
                                auth_type: super::super::AUTH_KEYED_SHA1,
                                key_id: 3,
                                seq: 1,
                                digest: [0; 20],
                            }));
                            Some(b"k")
                        } else {
                            None
                        };
                        let mut b = p.encode(key_bytes);
                        if let Some(x) = b.get_mut(at) {
                            *x = v;
                        }
                        let _ = n.a.handle_datagram(n.now, c, false, Some(255), &b);
                        let _ = n.a.handle_datagram(n.now, B, false, Some(255), &b);
                    }
                    Input::Wait(ms) => n.run(Duration::from_millis(u64::from(ms))),
                    Input::Reconfigure(ms) => {
                        n.a.set(n.now, key(B), None, cfg(u64::from(ms), 3));
                    }
                }
                n.deliver();
                prop_assert!(n.a.heap_len() <= 2 * n.a.len() + 64);
                prop_assert_eq!(n.a.len(), 2);
            }
            // Whatever happened, A and B still converge once left alone.
            n.a.set(n.now, key(B), None, cfg(300, 3));
            n.b.set(n.now, key(A), None, cfg(300, 3));
            n.run(Duration::from_secs(10));
            prop_assert_eq!((n.a_state(), n.b_state()), (State::Up, State::Up));
        }
    }
}
