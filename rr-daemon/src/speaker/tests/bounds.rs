//! The core's share of bounded memory and of the robustness left from
//! `docs/robustness.md`: first AS on eBGP, extended messages offered, dynamic neighbours
//! limited and their slots given back, rejected routes not kept.

use super::*;
use crate::config::DEFAULT_DYNAMIC_LIMIT;
use crate::session::SessionSpec;

/// An eBGP peer in AS 65001 that imports everything.
fn ebgp(extra: &str) -> String {
    format!("[[peer]]\naddress = \"10.0.0.2\"\nasn = 65001\nimport = \"all\"\n{extra}\n")
}

/// The spec of every session the core spawns right away.
fn specs(config: Config) -> Vec<SessionSpec> {
    let mut core = Core::new(config, Instant::now(), false);
    let mut v = Vec::new();
    while let Some(a) = core.poll_action() {
        if let Action::Spawn { spec, .. } = a {
            v.push(*spec);
        }
    }
    v
}

impl Harness {
    /// Establishes `peer` as an eBGP session with `asn` (4-octet AS, IPv4 unicast).
    fn establish_ebgp(&mut self, peer: IpAddr, asn: u32) {
        let IpAddr::V4(bgp_id) = peer else {
            unreachable!()
        };
        let negotiated = Negotiated {
            ctx: SessionCtx {
                ibgp: false,
                ..ctx()
            },
            hold_time: 90,
            route_refresh: true,
            enhanced_route_refresh: false,
            peer_graceful_restart: None,
            peer_llgr: None,
            peer_role: None,
            peer_fqdn: None,
            missing_families: FamilySet::EMPTY,
        };
        let open = Open {
            asn,
            hold_time: 90,
            bgp_id,
            capabilities: Vec::new(),
        };
        let news = News::Established {
            conn: ConnId::Inbound,
            negotiated: Box::new(negotiated),
            peer_open: Box::new(open),
        };
        let generation = self.sessions[&peer];
        self.event_of(peer, generation, news);
    }

    /// `peer` (eBGP) announces `prefix` with AS_PATH `path`.
    fn announce_path(&mut self, peer: IpAddr, prefix: &str, path: &[u32]) {
        let u = Update {
            withdrawn: vec![],
            attributes: vec![
                PathAttribute::Origin(Origin::IGP),
                PathAttribute::AsPath(AsPath::from_sequence(path.iter().copied())),
                PathAttribute::NextHop(Ipv4Addr::new(192, 0, 2, 7)),
            ],
            nlri: vec![Nlri::new(net(prefix))],
        };
        let ebgp = SessionCtx {
            ibgp: false,
            ..ctx()
        };
        let mut buf = BytesMut::new();
        u.encode(&ebgp, &mut buf).unwrap();
        let frame = Framer::new().next_frame(&mut buf).unwrap().unwrap();
        self.event_of(peer, self.sessions[&peer], News::Update(frame));
    }

    /// Whether `prefix` has a usable best path.
    fn has_best(&self, prefix: &str) -> bool {
        self.core.route(&net(prefix)).is_some_and(|e| {
            e.paths
                .first()
                .is_some_and(|p| p.status == rib::PathStatus::Best)
        })
    }
}

/// RFC 4271 §6.3: on eBGP the leftmost AS must be the peer's, by default; the knob turns
/// the check off (a route server).
#[test]
fn test_first_as_enforced_on_ebgp_by_default() {
    let e = ip("10.0.0.2");
    let mut h = Harness::new(config(&ebgp("")), false);
    h.establish_ebgp(e, 65001);
    h.announce_path(e, "198.51.100.0/24", &[65001, 65010]);
    h.announce_path(e, "203.0.113.0/24", &[65010]);
    h.announce_path(e, "192.0.2.0/24", &[]);
    assert!(h.has_best("198.51.100.0/24"));
    // Treated as withdrawn: no usable path; the session stays up.
    assert!(!h.has_best("203.0.113.0/24"));
    assert!(!h.has_best("192.0.2.0/24"));
    assert!(h.resets.is_empty());
    assert_eq!(h.status(e).state, PeerState::Established);
    // The same route, now with the right first AS, replaces it.
    h.announce_path(e, "203.0.113.0/24", &[65001, 65010]);
    assert!(h.has_best("203.0.113.0/24"));

    let mut h = Harness::new(config(&ebgp("enforce_first_as = false")), false);
    h.establish_ebgp(e, 65001);
    h.announce_path(e, "203.0.113.0/24", &[65010]);
    assert!(h.has_best("203.0.113.0/24"));
}

/// iBGP paths start with whatever AS the route came from: never checked.
#[test]
fn test_first_as_not_checked_on_ibgp() {
    let a = ip("10.0.0.2");
    let mut h = Harness::new(config(&client("10.0.0.2", "")), false);
    h.establish(a);
    let u = Update {
        withdrawn: vec![],
        attributes: vec![
            PathAttribute::Origin(Origin::IGP),
            PathAttribute::AsPath(AsPath::from_sequence([65010])),
            PathAttribute::NextHop(Ipv4Addr::new(10, 0, 0, 2)),
            PathAttribute::LocalPref(100),
        ],
        nlri: vec![Nlri::new(net("198.51.100.0/24"))],
    };
    h.update(a, h.sessions[&a], &u);
    assert!(h.has_best("198.51.100.0/24"));
}

/// RFC 8654 is offered by default, and not when turned off.
#[test]
fn test_extended_message_offered_by_default() {
    let on = specs(config(&ebgp("")));
    let off = specs(config(&ebgp("extended_message = false")));
    let has = |s: &SessionSpec| {
        s.fsm
            .capabilities
            .iter()
            .any(|c| matches!(c, Capability::ExtendedMessage))
    };
    assert!(on.iter().all(has) && on.len() == 1);
    assert!(!off.iter().any(has) && off.len() == 1);
}

const RANGE: &str = "[[peer_group]]\nname = \"nodes\"\nasn = 65000\nrr_client = true\nhold_time = 9\n\
                     [[dynamic_neighbors]]\nprefix = \"10.1.0.0/16\"\ngroup = \"nodes\"\n";

fn from(i: u32) -> SocketAddr {
    let a = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 0)) + 1 + i);
    SocketAddr::new(IpAddr::V4(a), 40_000)
}

/// A range without `limit` is bounded all the same; with one, by it.
#[test]
fn test_dynamic_neighbours_have_a_default_limit() {
    let c = config(RANGE);
    assert_eq!(c.dynamic_neighbors[0].limit, DEFAULT_DYNAMIC_LIMIT);
    let mut h = Harness::new(c, false);
    let n = DEFAULT_DYNAMIC_LIMIT;
    for i in 0..n {
        assert!(h.core.handle_inbound(h.now, from(i), None).is_some(), "{i}");
    }
    h.drain();
    assert!(h.core.handle_inbound(h.now, from(n), None).is_none());
    assert_eq!(h.core.peers.len(), n as usize);

    let mut h = Harness::new(config(&format!("{RANGE}limit = 2\n")), false);
    assert!(h.core.handle_inbound(h.now, from(0), None).is_some());
    assert!(h.core.handle_inbound(h.now, from(1), None).is_some());
    h.drain();
    assert!(h.core.handle_inbound(h.now, from(2), None).is_none());
    // One leaves: its place is free again.
    let gone = from(0).ip();
    h.event(
        gone,
        News::StateChanged {
            from: State::OpenSent,
            to: State::Idle,
        },
    );
    assert!(h.core.handle_inbound(h.now, from(2), None).is_some());
}

/// A connection from a range that never sends its OPEN: its session gives up after the
/// group's hold time, and its peer (and RIB slot) go with it. Ten thousand such
/// connections over time leave nothing behind.
#[test]
fn test_dynamic_neighbours_without_open_give_their_slots_back() {
    let mut core = Core::new(config(RANGE), Instant::now(), false);
    let now = Instant::now();
    let base = core.rib.stats().peer_slots;
    let mut max_slots = 0;
    for round in 0..100u32 {
        let mut spawned = Vec::new();
        for i in 0..100 {
            let addr = from(round * 100 + i);
            let generation = core.handle_inbound(now, addr, None).unwrap();
            spawned.push((addr.ip(), generation));
        }
        while let Some(a) = core.poll_action() {
            if let Action::Spawn { spec, .. } = a {
                assert_eq!(spec.fsm.timing.open_hold, Duration::from_secs(9));
            }
        }
        max_slots = max_slots.max(core.rib.stats().peer_slots);
        // The session's hold timer ran out in OpenSent: it went to Idle.
        for (peer, generation) in spawned {
            let e = SessionEvent {
                peer,
                generation,
                news: News::StateChanged {
                    from: State::OpenSent,
                    to: State::Idle,
                },
                local: None,
                remote: None,
                connect_error: None,
                next_try: None,
                local_global: None,
                opened: None,
                more_updates: Vec::new(),
                intake: None,
            };
            core.handle_event(now, e);
        }
        while core.poll_action().is_some() {}
        assert!(core.peers.is_empty());
    }
    assert_eq!(max_slots, base + 100);
    assert_eq!(core.rib.stats().peer_slots, base + 100);
}

/// The per-peer knob reaches the RIB.
#[test]
fn test_soft_reconfiguration_inbound_reaches_the_rib() {
    let c = config(&ebgp("soft_reconfiguration_inbound = true"));
    let p = &c.peers[&ip("10.0.0.2")];
    assert!(p.rib_config().soft_reconfiguration_inbound);
    let c = config(&ebgp(""));
    assert!(
        !c.peers[&ip("10.0.0.2")]
            .rib_config()
            .soft_reconfiguration_inbound
    );
}

/// The bound on unwritten output holds for the whole process: five update groups each a
/// little under the per-peer bound add up to more than the process may hold, and the
/// peer furthest behind is reset; five members of one group share their buffers and
/// count once.
#[test]
fn test_unwritten_output_is_bounded_for_the_whole_process() {
    use super::super::export::{MAX_QUEUED, MAX_QUEUED_TOTAL};
    use bgp_wire::notification::subcode::cease::OUT_OF_RESOURCES;
    const MIB: usize = 1 << 20;
    let sizes = [240 * MIB, 245 * MIB, 250 * MIB, 230 * MIB, 235 * MIB];
    assert!(sizes.iter().all(|&s| s < MAX_QUEUED));
    assert!(sizes.iter().sum::<usize>() > MAX_QUEUED_TOTAL);
    assert!(sizes.iter().sum::<usize>() - 250 * MIB <= MAX_QUEUED_TOTAL);
    let addrs: Vec<IpAddr> = (2..7).map(|i| ip(&format!("10.0.0.{i}"))).collect();
    let queued = |p: IpAddr| addrs.iter().position(|a| *a == p).map_or(0, |i| sizes[i]);

    // Five eBGP peers, each on a session from another local address: five groups.
    let text: String = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!(
                "[[peer]]\naddress = \"{a}\"\nasn = {}\nimport = \"all\"\nexport = \"all\"\n",
                65001 + i
            )
        })
        .collect();
    let mut h = Harness::new(config(&text), false);
    for (i, a) in addrs.iter().enumerate() {
        h.establish_ebgp(*a, 65001 + i as u32);
    }
    assert_eq!(
        h.core.rib.stats().groups,
        1,
        "eBGP sessions of one local address share a group"
    );
    // Established again from their own local addresses: a group each.
    for (i, a) in addrs.iter().enumerate() {
        let IpAddr::V4(bgp_id) = *a else {
            unreachable!()
        };
        let negotiated = Negotiated {
            ctx: SessionCtx {
                ibgp: false,
                ..ctx()
            },
            hold_time: 90,
            route_refresh: true,
            enhanced_route_refresh: false,
            peer_graceful_restart: None,
            peer_llgr: None,
            peer_role: None,
            peer_fqdn: None,
            missing_families: FamilySet::EMPTY,
        };
        let e = SessionEvent {
            peer: *a,
            generation: h.sessions[a],
            news: News::Established {
                conn: ConnId::Inbound,
                negotiated: Box::new(negotiated),
                peer_open: Box::new(Open {
                    asn: 65001 + i as u32,
                    hold_time: 90,
                    bgp_id,
                    capabilities: Vec::new(),
                }),
            },
            local: Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 9, 0, i as u8 + 1)),
                179,
            )),
            remote: None,
            connect_error: None,
            next_try: None,
            local_global: None,
            opened: None,
            more_updates: Vec::new(),
            intake: None,
        };
        h.core.handle_event(h.now, e);
        h.drain();
    }
    assert_eq!(h.core.rib.stats().groups, 5);
    h.core.flush(h.now, &queued);
    h.drain();
    assert_eq!(h.resets, vec![(addrs[2], OUT_OF_RESOURCES)]);

    // One group of five clients: their buffers are shared, nothing is reset.
    let text: String = addrs.iter().map(|a| client(&a.to_string(), "")).collect();
    let mut h = Harness::new(config(&text), false);
    for a in &addrs {
        h.establish(*a);
    }
    assert_eq!(h.core.rib.stats().groups, 1);
    h.core.flush(h.now, &queued);
    h.drain();
    assert!(h.resets.is_empty(), "{:?}", h.resets);
}
