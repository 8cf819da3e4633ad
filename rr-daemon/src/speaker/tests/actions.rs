//! The operator's actions (`actions.rs`) on the virtual clock: hard reset, soft reset
//! in and out, disable and enable (by call and by configuration), run-time routes across
//! reloads, and the per-peer `local_as` and `idle_hold` keys.

use super::*;
use crate::session::SessionSpec;
use crate::speaker::{Reason, SoftReset, SpeakerError};

fn stops_and_starts(h: &Harness, peer: IpAddr) -> Vec<Option<Notification>> {
    // `Some(cease)` for a Stop, `None` for a Start, in order.
    h.commands
        .iter()
        .filter(|(p, _)| *p == peer)
        .filter_map(|(_, c)| match c {
            Command::Stop(n) => Some(Some(n.clone().expect("a Cease"))),
            Command::Reset(n) => Some(Some(n.clone())),
            Command::Start => Some(None),
            _ => None,
        })
        .collect()
}

fn gr_clients() -> Config {
    config(&format!(
        "{}{}",
        client("10.0.0.2", "graceful_restart = 120"),
        client("10.0.0.3", "graceful_restart = 120")
    ))
}

#[test]
fn test_hard_reset_sends_admin_reset_inside_a_hard_reset_then_restarts_after_idle_hold() {
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let mut h = Harness::new(gr_clients(), false);
    h.establish(a);
    h.peer_gr = None;
    h.establish(b);
    h.core.reset_peer(a, Some("new line card")).unwrap();
    h.core.reset_peer(b, None).unwrap();
    h.drain();
    // Both sides sent the N bit: Hard Reset whose data starts with Cease / Admin Reset.
    // One AutomaticStop (Reset): the session restarts by itself after its idle hold
    // time, not with a connection right behind the Cease.
    let got = stops_and_starts(&h, a);
    assert_eq!(got.len(), 1, "{got:?}");
    let cease = got[0].as_ref().unwrap();
    assert_eq!(cease.subcode, subcode::cease::HARD_RESET);
    assert_eq!(&cease.data[..2], &[6, subcode::cease::ADMIN_RESET]);
    assert_eq!(&cease.data[3..], b"new line card");
    // Without the N bit: a plain Administrative Reset.
    let got = stops_and_starts(&h, b);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].as_ref().unwrap().subcode,
        subcode::cease::ADMIN_RESET
    );
    // The same sessions (no new spawn): the peers keep their history.
    assert_eq!(h.spawned.len(), 2);
    let e = h.core.reset_peer(ip("10.0.0.9"), None).unwrap_err();
    assert!(matches!(e, SpeakerError::UnknownPeer(_)), "{e}");
}

#[test]
fn test_soft_reset_out_sends_the_table_again_and_in_asks_for_a_refresh() {
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let mut h = Harness::new(two_clients(), false);
    let e = h.core.soft_reset(a, SoftReset::Out).unwrap_err();
    assert!(matches!(e, SpeakerError::NotEstablished(_)), "{e}");
    h.establish(a);
    h.establish(b);
    let prefixes: Vec<String> = (0..1000)
        .map(|i| format!("10.{}.{}.0/24", 100 + i / 256, i % 256))
        .collect();
    let refs: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    h.announce(b, &refs);
    h.flush();
    let first = h.sent[&a];
    assert!(first > 0);
    h.core.soft_reset(a, SoftReset::Out).unwrap();
    h.drain();
    h.flush();
    let again = h.sent[&a] - first;
    // The same 1000 routes (and End-of-RIB) once more: about as many bytes.
    assert!(again * 10 >= first * 9, "first {first} B, again {again} B");
    assert!(
        !h.sent.contains_key(&b) || h.sent[&b] < first / 10,
        "b is not sent a's table"
    );

    h.core.soft_reset(b, SoftReset::In).unwrap();
    h.drain();
    assert_eq!(h.refreshes, vec![(b, vec![Family::Ipv4Unicast])]);
    // A peer without ROUTE-REFRESH: refused, with the way out in the message.
    h.route_refresh = false;
    h.down(a, false);
    h.establish(a);
    let e = h.core.soft_reset(a, SoftReset::In).unwrap_err();
    assert!(matches!(e, SpeakerError::NoRefresh(_)), "{e}");
    assert!(e.to_string().contains("hard reset"), "{e}");
}

#[test]
fn test_disable_stops_with_the_communication_refuses_and_enable_starts() {
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let mut h = Harness::new(two_clients(), false);
    h.peer_gr = None;
    h.establish(a);
    let now = h.now;
    assert!(
        h.core
            .set_peer_enabled(now, a, false, Some("maintenance"))
            .unwrap()
    );
    assert!(
        !h.core.set_peer_enabled(now, a, false, None).unwrap(),
        "already down"
    );
    h.drain();
    let got = stops_and_starts(&h, a);
    assert_eq!(got.len(), 1);
    let cease = got[0].as_ref().unwrap();
    assert_eq!(cease.subcode, subcode::cease::ADMIN_SHUTDOWN);
    assert_eq!(cease.shutdown_communication(), Some("maintenance"));
    h.event(
        a,
        News::Down {
            reason: DownReason::NotificationSent(cease.clone()),
            graceful: false,
        },
    );
    h.event(
        a,
        News::StateChanged {
            from: State::Established,
            to: State::Idle,
        },
    );
    let s = h.status(a);
    assert!(!s.enabled);
    let why = s.down_reason.unwrap();
    assert_eq!(why.reason, Reason::AdminDown);
    assert!(
        why.message.contains("maintenance") && why.message.contains("ctl enable"),
        "{}",
        why.message
    );
    // Its connections are refused, and a reset is too.
    assert_eq!(
        h.core
            .handle_inbound(h.now, SocketAddr::new(a, 40000), None),
        None
    );
    assert!(matches!(
        h.core.reset_peer(a, None),
        Err(SpeakerError::PeerDisabled(_))
    ));
    assert!(h.core.set_peer_enabled(now, a, true, None).unwrap());
    h.drain();
    assert_eq!(stops_and_starts(&h, a).last(), Some(&None), "started again");
    assert!(h.status(a).enabled);
    assert!(
        h.core
            .handle_inbound(h.now, SocketAddr::new(a, 40001), None)
            .is_some()
    );
    assert!(
        stops_and_starts(&h, b).is_empty(),
        "the other peer is untouched"
    );
}

#[test]
fn test_enabled_false_starts_stopped_and_a_reload_enables_in_place() {
    let a = ip("10.0.0.2");
    let off = config(&client(
        "10.0.0.2",
        "enabled = false\ndescription = \"spine 1\"",
    ));
    let mut core = Core::new(off.clone(), Instant::now(), false);
    let mut spec: Option<SessionSpec> = None;
    while let Some(a) = core.poll_action() {
        if let Action::Spawn { spec: s, .. } = a {
            spec = Some(*s);
        }
    }
    assert!(spec.unwrap().admin_down, "the session task starts stopped");
    let mut h = Harness::new(off, false);
    let s = h.status(a);
    assert!(!s.enabled);
    assert_eq!(s.description.as_deref(), Some("spine 1"));
    assert_eq!(s.down_reason.unwrap().reason, Reason::AdminDown);
    let spawned = h.spawned.len();
    let on = config(&client("10.0.0.2", "description = \"spine 1\""));
    let now = h.now;
    h.core.reload(now, on.clone());
    h.drain();
    assert_eq!(h.spawned.len(), spawned, "same session, no new one");
    assert_eq!(stops_and_starts(&h, a), vec![None], "started");
    assert!(h.status(a).enabled);
    // A run-time disable outlives a reload that leaves `enabled` alone.
    h.core.set_peer_enabled(now, a, false, None).unwrap();
    h.core.reload(now, on);
    h.drain();
    assert!(!h.status(a).enabled);
}

#[test]
fn test_runtime_routes_outlive_reloads_and_give_way_to_the_file_when_withdrawn() {
    let with_route = config(&format!(
        "{}[[route]]\nprefix = \"10.50.0.0/24\"\nnext_hop = \"10.0.0.1\"\n",
        client("10.0.0.2", "")
    ));
    let without = config(&client("10.0.0.2", ""));
    let mut h = Harness::new(with_route.clone(), false);
    let (p, q) = (net("10.50.0.0/24"), net("10.60.0.0/24"));
    let nh = |s: &str| rib::Attrs {
        next_hop: Some(bgp_wire::attr::NextHop::V4(s.parse().unwrap())),
        ..rib::Attrs::default()
    };
    assert!(!h.core.announce(p, nh("10.0.0.7")));
    assert!(!h.core.announce(q, nh("10.0.0.8")));
    let next_hop = |h: &Harness, p: &IpNet| {
        h.core
            .route(p)
            .and_then(|e| e.paths.first().map(|x| x.attrs.next_hop()))
    };
    let now = h.now;
    h.core.reload(now, without);
    assert!(
        h.has_route("10.50.0.0/24") && h.has_route("10.60.0.0/24"),
        "kept across reload"
    );
    h.core.reload(now, with_route);
    assert_eq!(
        next_hop(&h, &p),
        Some(Some(bgp_wire::attr::NextHop::V4(
            "10.0.0.7".parse().unwrap()
        ))),
        "the run-time route wins while it exists"
    );
    assert!(h.core.withdraw_runtime(p));
    assert_eq!(
        next_hop(&h, &p),
        Some(Some(bgp_wire::attr::NextHop::V4(
            "10.0.0.1".parse().unwrap()
        ))),
        "the file's route is back"
    );
    assert!(h.core.withdraw_runtime(q));
    assert!(!h.has_route("10.60.0.0/24"));
    assert!(!h.core.withdraw_runtime(q), "nothing left to withdraw");
}

#[test]
fn test_local_as_and_idle_hold_go_into_the_session() {
    let c = config(
        "[[peer]]\naddress = \"10.0.0.2\"\nasn = 65010\nlocal_as = 65010\nidle_hold = 2\nidle_hold_max = 30\n\
         [[peer]]\naddress = \"10.0.0.3\"\nasn = 65020\nlocal_as = 64999\nimport = \"all\"\nexport = \"all\"\n",
    );
    let p2 = &c.peers[&ip("10.0.0.2")];
    assert!(
        p2.is_ibgp(&c.speaker),
        "local_as equal to the peer's AS: internal"
    );
    let f = p2.fsm_config(&c.speaker);
    assert_eq!(f.local_as, 65010);
    assert_eq!(f.timing.idle_hold, Duration::from_secs(2));
    assert_eq!(f.timing.idle_hold_max, Duration::from_secs(30));
    let p3 = &c.peers[&ip("10.0.0.3")];
    assert_eq!(p3.fsm_config(&c.speaker).local_as, 64999);
    assert_eq!(p3.rib_config().local_as, Some(64999));
    let e = Config::parse(
        &format!("{HEAD}[[peer]]\naddress = \"10.0.0.2\"\nasn = 65000\nidle_hold = 60\nidle_hold_max = 10\n"),
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("t.toml:") && e.contains("below idle_hold"),
        "{e}"
    );
}
