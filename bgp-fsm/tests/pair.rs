//! Two sessions back to back on a virtual clock: the scenarios of the `bgp-fsm` issue.

mod util;

use std::time::Duration;

use bgp_fsm::{Config, ConnId, DownReason, Input, Session, State, Timer};
use bgp_wire::notification::subcode;
use bgp_wire::{ErrorCode, MessageType, Notification};
use util::{Event, Pair, Side, config};

/// B, passive, configured for the wrong peer AS: it refuses every OPEN of A with 2/2, an
/// error A is damped for.
fn refusing_b() -> Config {
    let mut b = config(Side::B);
    b.passive = true;
    b.peer_as = 65009;
    b
}

fn manual_stop(notification: Option<Notification>) -> Input {
    Input::Stop {
        automatic: false,
        notification,
    }
}

fn manual_start() -> Input {
    Input::Start { automatic: false }
}

#[test]
fn reaches_established() {
    let mut p = Pair::default_pair();
    p.s[1] = Session::new({
        let mut c = config(Side::B);
        c.passive = true;
        c
    });
    // The passive side listens first.
    p.handle(Side::B, Input::Start { automatic: false });
    p.handle(Side::A, Input::Start { automatic: false });
    assert_eq!(p.state(Side::A), State::Established);
    assert_eq!(p.state(Side::B), State::Established);
    assert_eq!(p.established_on(Side::A), Some(ConnId::Outbound));
    assert_eq!(p.established_on(Side::B), Some(ConnId::Inbound));
    let (_, n) = p.session(Side::A).established().unwrap();
    assert_eq!(n.hold_time, 9);
    assert!(n.ctx.four_octet_as);
    assert!(!n.ctx.ibgp);
    // A walked Idle → Connect → OpenSent → OpenConfirm → Established.
    let states: Vec<State> = p.log[0]
        .iter()
        .filter_map(|(_, e)| match e {
            Event::State(s) => Some(*s),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        [
            State::Connect,
            State::OpenSent,
            State::OpenConfirm,
            State::Established
        ]
    );
}

#[test]
fn keepalives_hold_the_session_for_hours() {
    let mut p = Pair::default_pair();
    p.start_both();
    assert_eq!(p.state(Side::A), State::Established);
    p.advance(Duration::from_secs(3 * 3600));
    assert_eq!(p.state(Side::A), State::Established);
    assert_eq!(p.state(Side::B), State::Established);
    // Hold 9 s: a keepalive every 3 s at most, jittered down to 2.25 s.
    let ka = p.sent(Side::A, MessageType::KEEPALIVE);
    assert!(
        ka.len() >= 3600 && ka.len() <= 4801,
        "{} keepalives",
        ka.len()
    );
    for w in ka.windows(2).skip(1) {
        let gap = w[1].0 - w[0].0;
        assert!(
            gap <= Duration::from_secs(3) && gap >= Duration::from_millis(2250),
            "{gap:?}"
        );
    }
    // Nothing but the collision resolution at the start.
    assert!(
        p.notifications(Side::A)
            .iter()
            .all(|n| (n.code.0, n.subcode) == (6, 7))
    );
}

#[test]
fn hold_timer_expires_when_the_peer_goes_silent() {
    let mut p = Pair::default_pair();
    p.start_both();
    let up_at = p.now;
    p.deaf[0] = true; // A hears nothing more from B.
    p.advance(Duration::from_secs(10));
    let n: Vec<_> = p
        .notifications(Side::A)
        .into_iter()
        .filter(|n| n.code.0 != 6)
        .collect();
    assert_eq!(n.len(), 1);
    assert_eq!((n[0].code.0, n[0].subcode), (4, 0));
    assert!(
        p.log[0].iter().any(|(t, e)| matches!(e, Event::Down(..))
            && *t >= (up_at - p.start) + Duration::from_secs(9))
    );
    assert_ne!(p.state(Side::A), State::Established);
}

#[test]
fn collision_keeps_the_connection_of_the_higher_identifier() {
    // Both active and started together: two connections, one survives on both sides.
    let mut p = Pair::default_pair();
    p.start_both();
    assert_eq!(p.state(Side::A), State::Established);
    assert_eq!(p.state(Side::B), State::Established);
    // B (192.0.2.2) has the higher identifier: its outbound connection (link 1) wins.
    assert_eq!(p.established_on(Side::B), Some(ConnId::Outbound));
    assert_eq!(p.established_on(Side::A), Some(ConnId::Inbound));
    let ceases: Vec<_> = p
        .notifications(Side::A)
        .into_iter()
        .chain(p.notifications(Side::B))
        .collect();
    assert!(!ceases.is_empty());
    assert!(
        ceases.iter().all(|n| (n.code.0, n.subcode) == (6, 7)),
        "{ceases:?}"
    );
    // And it stays up.
    p.advance(Duration::from_secs(60));
    assert_eq!(p.state(Side::A), State::Established);
}

#[test]
fn delay_open_waits_for_the_peer() {
    let mut a = config(Side::A);
    a.delay_open = Some(Duration::from_secs(5));
    a.passive = true;
    let mut p = Pair::new(a, config(Side::B));
    p.handle(Side::A, Input::Start { automatic: false });
    p.handle(Side::B, Input::Start { automatic: false });
    // B connected and sent its OPEN at once; A answered with OPEN + KEEPALIVE without
    // waiting for the DelayOpen timer.
    assert_eq!(p.state(Side::A), State::Established);
    let opens = p.sent(Side::A, MessageType::OPEN);
    assert_eq!(opens.len(), 1);

    // If the peer stays silent, A sends its OPEN when DelayOpen expires.
    let mut a = config(Side::A);
    a.delay_open = Some(Duration::from_secs(5));
    let mut p = Pair::new(a, config(Side::B));
    p.deaf[1] = true; // B hears nothing, so its OPEN never answers ours... and vice versa:
    p.deaf[0] = true;
    p.handle(Side::A, Input::Start { automatic: false });
    p.handle(Side::B, Input::Start { automatic: false });
    assert!(p.sent(Side::A, MessageType::OPEN).is_empty());
    p.advance(Duration::from_secs(5));
    assert_eq!(p.sent(Side::A, MessageType::OPEN).len(), 1);
    assert_eq!(
        p.sent(Side::A, MessageType::OPEN)[0].0,
        Duration::from_secs(5)
    );
}

#[test]
fn refused_connections_retry_without_damping() {
    // B refuses connections (a firewall): a failed connect is no error (RFC 4271 §8.2.2,
    // as BIRD and FRR): A stays in Active and tries again every ConnectRetry time (5 s,
    // jittered down to 3.75 s), never backing off.
    let mut p = Pair::default_pair();
    p.reachable[1] = false;
    p.handle(Side::A, manual_start());
    p.advance(Duration::from_secs(600));
    let c = p.connects(Side::A);
    assert!(c.len() >= 120, "{} connects", c.len());
    for w in c.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(3750) && gap <= Duration::from_secs(5),
            "{gap:?}"
        );
    }
    assert_eq!(p.session(Side::A).failures(), 0);
    assert_eq!(p.session(Side::A).timer(Timer::IdleHold), None);
    assert!(matches!(p.state(Side::A), State::Active | State::Connect));
    assert!(
        !p.log[0]
            .iter()
            .any(|(_, e)| matches!(e, Event::State(State::Idle)))
    );
}

#[test]
fn damping_backs_off_exponentially() {
    // B refuses every OPEN of A (2/2, a real error): A fails, idles, retries after 1, 2,
    // 4, 8 ... s, capped at 64 s. B, in Idle after each refusal, still takes A's next
    // connection.
    let mut p = Pair::new(config(Side::A), refusing_b());
    p.handle(Side::B, manual_start());
    p.handle(Side::A, manual_start());
    p.advance(Duration::from_secs(600));
    let c = p.connects(Side::A);
    let gaps: Vec<u64> = c.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
    assert_eq!(&gaps[..8], &[1, 2, 4, 8, 16, 32, 64, 64]);
    assert_eq!(p.state(Side::A), State::Idle);
    assert!(
        p.notifications(Side::B)
            .iter()
            .all(|n| (n.code.0, n.subcode) == (2, 2))
    );
    assert_eq!(p.notifications(Side::B).len(), c.len());
}

#[test]
fn damping_resets_after_a_stable_session() {
    let mut p = Pair::new(config(Side::A), refusing_b());
    p.handle(Side::B, manual_start());
    p.handle(Side::A, manual_start());
    p.advance(Duration::from_secs(20)); // five failures at 0, 1, 3, 7, 15 s: backoff 16 s
    assert_eq!(p.connects(Side::A).len(), 5);
    assert_eq!(p.session(Side::A).failures(), 5);
    // B is fixed and connects: A, in Idle until 31 s, takes the connection at once.
    p.s[1] = Session::new(config(Side::B));
    p.handle(Side::B, manual_start());
    assert_eq!(p.state(Side::A), State::Established);
    assert_eq!(p.established_on(Side::A), Some(ConnId::Inbound));
    assert_eq!(p.connects(Side::A).len(), 5);
    p.advance(Duration::from_secs(120)); // stable
    let before = p.connects(Side::A).len();
    p.handle(Side::B, manual_stop(None));
    // B is misconfigured again.
    p.s[1] = Session::new(refusing_b());
    p.handle(Side::B, manual_start());
    p.advance(Duration::from_secs(4));
    let c = p.connects(Side::A);
    // Admin shutdown by the peer is not punished and the backoff started over: the first
    // retry after 1 s, then 1 s and 2 s as OPENs are refused again.
    assert_eq!(c.len() - before, 3, "{c:?}");
    let gaps: Vec<u64> = c[before..]
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs())
        .collect();
    assert_eq!(gaps, [1, 2]);
    assert_eq!(p.session(Side::A).failures(), 3);
}

#[test]
fn a_peer_that_sends_cease_and_reconnects_is_never_kept_waiting() {
    // B drops the session with Cease/Out of Resources and comes straight back, ten times:
    // A takes each new connection at once (no idle hold time to wait out) and never
    // counts a failure.
    let mut p = Pair::default_pair();
    p.start_both();
    assert_eq!(p.state(Side::A), State::Established);
    let connects = p.connects(Side::A).len();
    let cease = Notification::new(ErrorCode::CEASE, subcode::cease::OUT_OF_RESOURCES);
    for _ in 0..10 {
        p.handle(Side::B, manual_stop(Some(cease.clone())));
        assert_eq!(p.state(Side::A), State::Idle);
        p.handle(Side::B, manual_start());
        assert_eq!(p.state(Side::A), State::Established);
        assert_eq!(p.state(Side::B), State::Established);
        assert_eq!(p.established_on(Side::A), Some(ConnId::Inbound));
    }
    assert_eq!(p.now, p.start);
    assert_eq!(p.session(Side::A).failures(), 0);
    assert_eq!(p.connects(Side::A).len(), connects);
    assert_eq!(
        p.log[0]
            .iter()
            .filter(|(_, e)| matches!(
                e,
                Event::Down(DownReason::NotificationReceived(n), false) if *n == cease
            ))
            .count(),
        10
    );
}

#[test]
fn open_refused_for_a_wrong_as() {
    let mut b = config(Side::B);
    b.peer_as = 65009;
    let mut p = Pair::new(config(Side::A), b);
    p.start_both();
    let n = p.notifications(Side::B);
    assert!(!n.is_empty());
    assert_eq!((n[0].code.0, n[0].subcode), (2, 2));
    assert_ne!(p.state(Side::A), State::Established);
}

#[test]
fn open_refused_for_a_missing_required_family() {
    let mut a = config(Side::A);
    a.set_families(bgp_wire::FamilySet::only(bgp_wire::Family::Ipv4Unicast));
    let mut b = config(Side::B);
    b.required_families = bgp_wire::FamilySet::ALL;
    let mut p = Pair::new(a, b);
    p.start_both();
    let n = p.notifications(Side::B);
    assert!(!n.is_empty());
    assert_eq!((n[0].code.0, n[0].subcode), (2, 7));
    // The data names the capability: multiprotocol IPv6 unicast.
    assert_eq!(&n[0].data[..], &[1, 4, 0, 2, 0, 1]);
}

#[test]
fn manual_stop_sends_cease_and_stays_down() {
    let mut p = Pair::default_pair();
    p.start_both();
    let cease = Notification::cease_with_communication(2, "maintenance");
    p.handle(
        Side::A,
        Input::Stop {
            automatic: false,
            notification: Some(cease.clone()),
        },
    );
    assert_eq!(p.notifications(Side::A).last(), Some(&cease));
    assert_eq!(p.state(Side::A), State::Idle);
    let opens = p.sent(Side::A, MessageType::OPEN).len();
    let refused_before = refused(&p);
    p.advance(Duration::from_secs(600));
    assert_eq!(p.state(Side::A), State::Idle);
    // B saw the communication and keeps trying to come back, every ConnectRetry time, as
    // its connection is refused while A is stopped; A never sends another OPEN.
    assert!(
        p.log[1].iter().any(
            |(_, e)| matches!(e, Event::Down(r, false) if r.to_string().contains("maintenance"))
        )
    );
    assert!(refused(&p) - refused_before >= 120, "{}", refused(&p));
    assert_eq!(p.sent(Side::A, MessageType::OPEN).len(), opens);
    assert_eq!(p.session(Side::B).failures(), 0);
}

/// How many of B's connections A closed (refused, once A is stopped).
fn refused(p: &Pair) -> usize {
    p.log[0]
        .iter()
        .filter(|(_, e)| matches!(e, Event::Closed(ConnId::Inbound)))
        .count()
}

#[test]
fn send_hold_timer_drops_a_peer_that_stops_reading() {
    // RFC 9687: B's writes to A block (A stopped reading). Progress within the send hold
    // time keeps the session; none for 8 minutes (the floor; twice the 9 s hold is less)
    // drops it with 8/0.
    let mut p = Pair::default_pair();
    p.start_both();
    let conn = p.established_on(Side::B).unwrap();
    p.handle(Side::B, Input::SendBlocked(conn));
    p.advance(Duration::from_secs(400));
    p.handle(Side::B, Input::SendProgress(conn));
    p.handle(Side::B, Input::SendBlocked(conn));
    p.advance(Duration::from_secs(479));
    assert_eq!(p.state(Side::B), State::Established);
    p.advance(Duration::from_secs(2));
    let n: Vec<_> = p
        .notifications(Side::B)
        .into_iter()
        .filter(|n| n.code.0 != 6)
        .collect();
    assert_eq!(n.len(), 1);
    assert_eq!((n[0].code.0, n[0].subcode), (8, 0));
    assert!(p.log[1].iter().any(|(_, e)| matches!(e, Event::Down(..))));
}

#[test]
fn hold_timer_waits_while_the_driver_does_not_read() {
    // B's driver stops reading because its owner is busy: however long that lasts, B's
    // hold timer does not expire, and B's own KEEPALIVEs keep A's session up. Reading
    // again starts the hold time afresh: a peer that is really gone is then found out.
    let mut p = Pair::default_pair();
    p.start_both();
    assert!(p.established_on(Side::B).is_some());
    p.handle(Side::B, Input::ReceivePaused);
    p.deaf[1] = true;
    let keepalives = p.sent(Side::B, MessageType::KEEPALIVE).len();
    p.advance(Duration::from_secs(60));
    assert_eq!(p.state(Side::B), State::Established);
    assert_eq!(p.state(Side::A), State::Established);
    assert!(p.sent(Side::B, MessageType::KEEPALIVE).len() >= keepalives + 15);
    // (The collision of the two start-up connections may have cost one Cease.)
    let errors = |p: &Pair| -> Vec<(u8, u8)> {
        p.notifications(Side::B)
            .iter()
            .filter(|n| n.code.0 != 6)
            .map(|n| (n.code.0, n.subcode))
            .collect()
    };
    assert!(errors(&p).is_empty());
    p.deaf[1] = false;
    p.handle(Side::B, Input::ReceiveResumed);
    p.advance(Duration::from_secs(60));
    assert_eq!(p.state(Side::B), State::Established);
    // A stops sending (it cannot reach B any more): B's hold timer, running again, fires.
    p.handle(Side::B, Input::ReceivePaused);
    p.deaf[1] = true;
    p.advance(Duration::from_secs(30));
    assert_eq!(p.state(Side::B), State::Established);
    p.handle(Side::B, Input::ReceiveResumed);
    p.advance(Duration::from_secs(8));
    assert_eq!(p.state(Side::B), State::Established);
    p.advance(Duration::from_secs(2));
    assert_eq!(errors(&p), [(4, 0)]);
}
