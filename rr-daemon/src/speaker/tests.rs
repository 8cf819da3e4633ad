//! The core on a virtual clock: synthetic session events in, actions out, no sockets, no
//! tasks, time advanced by hand.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bgp_fsm::{ConnId, DownReason, News, State};
use bgp_wire::attr::{AsPath, Origin, PathAttribute};
use bgp_wire::capability::{Capability, GrFamily, GracefulRestart, LlgrFamily};
use bgp_wire::negotiate::Negotiated;
use bgp_wire::nlri::Nlri;
use bgp_wire::notification::subcode;
use bgp_wire::open::Open;
use bgp_wire::update::Update;
use bgp_wire::{Afi, Notification, Safi};
use bgp_wire::{Family, FamilySet, Frame, Framer, MessageType, SessionCtx};
use bytes::BytesMut;
use ipnet::IpNet;

use super::core::{Action, Core};
use super::{PeerChange, PeerState, PeerStatus};
use crate::config::Config;
use crate::session::{Command, SessionEvent};

/// Bounded memory, first AS, extended messages: `tests/bounds.rs`.
mod bounds;
/// Neighbour detail and per-peer tables: `tests/detail.rs`.
mod detail;

/// The operator's actions: `tests/actions.rs`.
mod actions;

/// BMP's events: `tests/monitor.rs`.
mod monitor;

const HEAD: &str = "[speaker]\nasn = 65000\nrouter_id = \"10.0.0.1\"\nlisten = []\n";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// An iBGP route reflector client at `address`.
fn client(address: &str, extra: &str) -> String {
    format!("[[peer]]\naddress = \"{address}\"\nasn = 65000\nrr_client = true\n{extra}\n")
}

fn config(text: &str) -> Config {
    Config::parse(&format!("{HEAD}{text}"), "test.toml").unwrap()
}

/// What the peers negotiate in these tests: iBGP, IPv4 unicast.
fn ctx() -> SessionCtx {
    SessionCtx {
        ibgp: true,
        families: FamilySet::only(Family::Ipv4Unicast),
        ..SessionCtx::default()
    }
}

/// The core, the virtual clock, and what the core asked for.
struct Harness {
    core: Core,
    now: Instant,
    /// Each peer's current session generation, from the spawns.
    sessions: HashMap<IpAddr, u64>,
    /// Every spawn, in order: (peer, generation, Restart State bit set).
    spawned: Vec<(IpAddr, u64, bool)>,
    /// Every spawn's OPEN, in order: (peer, Forwarding State bit of every family of the
    /// graceful restart capability set; `None` without the capability).
    spawned_forwarding: Vec<(IpAddr, Option<bool>)>,
    /// UPDATE bytes handed to each peer's sessions.
    sent: HashMap<IpAddr, usize>,
    /// UPDATE messages handed to each peer's sessions (each send's count checked against
    /// its bytes).
    sent_updates: HashMap<IpAddr, usize>,
    /// Sessions stopped: (peer, generation).
    stopped: Vec<(IpAddr, u64)>,
    /// Sessions reset with a Cease: (peer, subcode).
    resets: Vec<(IpAddr, u8)>,
    /// ROUTE-REFRESH requests sent: (peer, families).
    refreshes: Vec<(IpAddr, Vec<Family>)>,
    /// Whether the sessions established from now on negotiate ROUTE-REFRESH.
    route_refresh: bool,
    /// The graceful restart capability of the peers' OPENs from now on.
    peer_gr: Option<GracefulRestart>,
    /// The long-lived graceful restart capability of the peers' OPENs from now on.
    peer_llgr: Option<Vec<LlgrFamily>>,
    /// Commands other than sends, updates and refreshes: (peer, command).
    commands: Vec<(IpAddr, Command)>,
    /// Ceases of sessions stopped: (peer, cease).
    ceases: Vec<(IpAddr, Notification)>,
    /// BFD sessions set (with their multihop flag and interval) or removed (`None`).
    bfd: Vec<(IpAddr, Option<(bool, Duration)>)>,
    /// Manual starts (`true`) and stops (`false`) of sessions.
    start_stop: Vec<(IpAddr, bool)>,
    /// What BMP collectors were told: (collector, event).
    monitor: Vec<(Option<u64>, crate::bmp::Event)>,
}

/// A peer's graceful restart capability: restart time 120 s, IPv4 unicast with the
/// Forwarding State bit `forwarding`, the Restart State bit `restarting`, N bit on.
fn peer_gr(forwarding: bool, restarting: bool) -> Option<GracefulRestart> {
    Some(GracefulRestart {
        restart_state: restarting,
        notification: true,
        restart_time: 120,
        families: vec![GrFamily {
            afi: Afi::IPV4,
            safi: Safi::UNICAST,
            forwarding,
        }],
    })
}

impl Harness {
    fn new(config: Config, restarting: bool) -> Self {
        let now = Instant::now();
        let mut h = Self {
            core: Core::new(config, now, restarting),
            now,
            sessions: HashMap::new(),
            spawned: Vec::new(),
            spawned_forwarding: Vec::new(),
            sent: HashMap::new(),
            sent_updates: HashMap::new(),
            stopped: Vec::new(),
            resets: Vec::new(),
            refreshes: Vec::new(),
            route_refresh: true,
            peer_gr: peer_gr(true, false),
            peer_llgr: None,
            commands: Vec::new(),
            ceases: Vec::new(),
            bfd: Vec::new(),
            start_stop: Vec::new(),
            monitor: Vec::new(),
        };
        h.drain();
        h
    }

    /// Carries out the core's actions the way the shell would, recording them.
    fn drain(&mut self) {
        while let Some(a) = self.core.poll_action() {
            match a {
                Action::Spawn { generation, spec } => {
                    let restart_state =
                        spec.fsm.capabilities.iter().any(
                            |c| matches!(c, Capability::GracefulRestart(gr) if gr.restart_state),
                        );
                    let forwarding = spec.fsm.capabilities.iter().find_map(|c| match c {
                        Capability::GracefulRestart(gr) => {
                            Some(gr.families.iter().all(|f| f.forwarding))
                        }
                        _ => None,
                    });
                    self.sessions.insert(spec.peer, generation);
                    self.spawned.push((spec.peer, generation, restart_state));
                    self.spawned_forwarding.push((spec.peer, forwarding));
                }
                Action::Command {
                    peer,
                    command: Command::Send { bytes: b, updates },
                    ..
                } => {
                    let frames: Vec<_> = Framer::new()
                        .frames(b.clone())
                        .map(Result::unwrap)
                        .collect();
                    assert!(frames.iter().all(|f| f.ty == MessageType::UPDATE));
                    assert_eq!(updates, frames.len(), "a send's count is its UPDATEs");
                    *self.sent.entry(peer).or_default() += b.len();
                    *self.sent_updates.entry(peer).or_default() += updates;
                }
                Action::Stop {
                    peer,
                    generation,
                    cease,
                } => {
                    self.stopped.push((peer, generation));
                    self.sessions.remove(&peer);
                    if let Some(c) = cease {
                        self.ceases.push((peer, c));
                    }
                }
                Action::Command {
                    peer,
                    command: Command::Reset(n),
                    ..
                } => {
                    self.resets.push((peer, n.subcode));
                    self.commands.push((peer, Command::Reset(n)));
                }
                Action::Command {
                    peer,
                    command: Command::RouteRefresh(f),
                    ..
                } => self.refreshes.push((peer, f)),
                Action::Command { peer, command, .. } => {
                    match command {
                        Command::Start => self.start_stop.push((peer, true)),
                        Command::Stop(_) => self.start_stop.push((peer, false)),
                        _ => {}
                    }
                    self.commands.push((peer, command));
                }
                Action::Bfd { peer, spec } => self
                    .bfd
                    .push((peer, spec.map(|s| (s.multihop, s.config.desired_min_tx)))),
                Action::Monitor { to, event } => self.monitor.push((to, event)),
                Action::ListenerKey { .. } | Action::BestChange(_) => {}
            }
        }
    }

    /// Exports until nothing more can go out (every writer always has room).
    fn flush(&mut self) {
        for _ in 0..1000 {
            let more = self.core.flush(self.now, &|_| 0);
            self.drain();
            if !more {
                return;
            }
        }
        panic!("export never finished");
    }

    /// Moves the clock on by `d`, handing the core every deadline on the way.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..1000 {
            let Some(t) = self.core.poll_timeout().filter(|t| *t <= end) else {
                self.now = end;
                return;
            };
            self.now = t;
            self.core.handle_timeout(t);
            self.drain();
        }
        panic!("a deadline that passed stays armed");
    }

    fn event_of(&mut self, peer: IpAddr, generation: u64, news: News) {
        self.batch_of(peer, generation, news, Vec::new());
    }

    /// An event with `more_updates`, as a session hands over the UPDATEs of one read.
    fn batch_of(&mut self, peer: IpAddr, generation: u64, news: News, more_updates: Vec<Frame>) {
        let local = Some(SocketAddr::new(ip("10.0.0.1"), 179));
        let opened = matches!(news, News::Established { .. }).then(|| {
            Box::new(crate::session::Opened {
                remote: SocketAddr::new(peer, 40000),
                sent_open: bytes::Bytes::from_static(&[0xff; 19]),
            })
        });
        let e = SessionEvent {
            peer,
            generation,
            news,
            local,
            remote: None,
            connect_error: None,
            next_try: None,
            local_global: None,
            opened,
            more_updates,
            intake: None,
        };
        if matches!(e.news, News::Update(_)) {
            assert_eq!(e.updates().count(), 1 + e.more_updates.len());
        }
        self.core.handle_event(self.now, e);
        self.drain();
    }

    fn event(&mut self, peer: IpAddr, news: News) {
        let generation = self.sessions[&peer];
        self.event_of(peer, generation, news);
    }

    fn establish(&mut self, peer: IpAddr) {
        let generation = self.sessions[&peer];
        self.establish_as(peer, generation);
    }

    fn establish_as(&mut self, peer: IpAddr, generation: u64) {
        let IpAddr::V4(bgp_id) = peer else {
            unreachable!()
        };
        let negotiated = Negotiated {
            ctx: ctx(),
            hold_time: 90,
            route_refresh: self.route_refresh,
            enhanced_route_refresh: false,
            peer_graceful_restart: self.peer_gr.clone(),
            peer_llgr: self.peer_llgr.clone(),
            peer_role: None,
            peer_fqdn: None,
            missing_families: FamilySet::EMPTY,
        };
        let open = Open {
            asn: 65000,
            hold_time: 90,
            bgp_id,
            capabilities: Vec::new(),
        };
        let news = News::Established {
            conn: ConnId::Inbound,
            negotiated: Box::new(negotiated),
            peer_open: Box::new(open),
        };
        self.event_of(peer, generation, news);
    }

    fn update(&mut self, peer: IpAddr, generation: u64, u: &Update) {
        self.event_of(peer, generation, News::Update(frame_of(u, |_| {})));
    }

    fn announce(&mut self, peer: IpAddr, prefixes: &[&str]) {
        let IpAddr::V4(nh) = peer else { unreachable!() };
        let u = Update {
            withdrawn: vec![],
            attributes: vec![
                PathAttribute::Origin(Origin::IGP),
                PathAttribute::AsPath(AsPath::default()),
                PathAttribute::NextHop(nh),
                PathAttribute::LocalPref(100),
            ],
            nlri: prefixes.iter().map(|p| Nlri::new(net(p))).collect(),
        };
        self.update(peer, self.sessions[&peer], &u);
    }

    fn end_of_rib(&mut self, peer: IpAddr) {
        let u = Update::end_of_rib(Family::Ipv4Unicast);
        self.update(peer, self.sessions[&peer], &u);
    }

    fn down(&mut self, peer: IpAddr, graceful: bool) {
        let reason = DownReason::ConnectionFailed("connection closed by peer".into());
        self.event(peer, News::Down { reason, graceful });
        self.event(
            peer,
            News::StateChanged {
                from: State::Established,
                to: State::Idle,
            },
        );
    }

    /// Whether the Loc-RIB holds a path for `prefix` (an entry whose withdrawal is yet
    /// to go out has none).
    fn has_route(&self, prefix: &str) -> bool {
        self.core
            .route(&net(prefix))
            .is_some_and(|e| !e.paths.is_empty())
    }

    fn status(&self, peer: IpAddr) -> PeerStatus {
        self.core
            .statuses(self.now, &|_| 0)
            .into_iter()
            .find(|p| p.address == peer)
            .unwrap()
    }
}

#[test]
fn test_gr_helper_stale_routes_go_at_the_restart_time() {
    let a = ip("10.0.0.2");
    let mut h = Harness::new(config(&client("10.0.0.2", "graceful_restart = 60")), false);
    h.establish(a);
    h.announce(a, &["10.1.0.0/24", "10.2.0.0/24"]);
    h.flush();
    assert!(h.has_route("10.1.0.0/24") && h.has_route("10.2.0.0/24"));
    assert_eq!(h.core.poll_timeout(), None, "no deadline while all is well");

    let down_at = h.now;
    h.down(a, true);
    assert_eq!(
        h.core.poll_timeout(),
        Some(down_at + Duration::from_secs(60))
    );
    assert!(h.status(a).graceful_restart_pending);
    h.advance(Duration::from_secs(59));
    assert!(
        h.has_route("10.1.0.0/24") && h.has_route("10.2.0.0/24"),
        "stale routes are kept within the restart time"
    );
    h.advance(Duration::from_secs(2));
    assert!(!h.has_route("10.1.0.0/24") && !h.has_route("10.2.0.0/24"));
    assert!(!h.status(a).graceful_restart_pending);
    assert_eq!(h.core.poll_timeout(), None);
}

#[test]
fn test_gr_helper_end_of_rib_before_the_restart_time_keeps_the_routes() {
    let a = ip("10.0.0.2");
    let mut h = Harness::new(config(&client("10.0.0.2", "graceful_restart = 60")), false);
    h.establish(a);
    h.announce(a, &["10.1.0.0/24", "10.2.0.0/24"]);
    h.down(a, true);
    h.advance(Duration::from_secs(30));
    // The peer is back, sends one of its routes again and End-of-RIB.
    h.establish(a);
    assert_eq!(
        h.core.poll_timeout(),
        Some(h.now + Duration::from_secs(360)),
        "recovery now ends at End-of-RIB, or at the stale time (360 s by default)"
    );
    h.announce(a, &["10.1.0.0/24"]);
    assert!(h.status(a).graceful_restart_pending);
    h.end_of_rib(a);
    assert!(!h.status(a).graceful_restart_pending);
    assert!(
        !h.has_route("10.2.0.0/24"),
        "a stale route not sent again goes with End-of-RIB"
    );
    h.advance(Duration::from_secs(600));
    assert!(h.has_route("10.1.0.0/24"), "the refreshed route stays");
    let e = h.core.route(&net("10.1.0.0/24")).unwrap();
    assert_eq!(h.core.source(e.paths[0].peer), Some(a));
}

#[test]
fn test_gr_helper_a_plain_down_drops_the_routes_at_once() {
    let a = ip("10.0.0.2");
    let mut h = Harness::new(config(&client("10.0.0.2", "graceful_restart = 60")), false);
    h.establish(a);
    h.announce(a, &["10.1.0.0/24"]);
    h.down(a, false);
    assert!(!h.has_route("10.1.0.0/24"));
    assert!(!h.status(a).graceful_restart_pending);
    assert_eq!(h.core.poll_timeout(), None);
}

fn two_clients() -> Config {
    config(&format!(
        "graceful_restart = 30\n{}{}",
        client("10.0.0.2", ""),
        client("10.0.0.3", "")
    ))
}

#[test]
fn test_restarting_defers_until_every_end_of_rib() {
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let cfg = two_clients();
    // `graceful_restart` above went into [speaker]: it sits before any [[peer]].
    assert_eq!(cfg.speaker.graceful_restart, Some(30));
    let mut h = Harness::new(cfg, true);
    assert!(
        h.spawned.iter().all(|s| s.2),
        "OPENs carry Restart State: {:?}",
        h.spawned
    );
    h.establish(a);
    h.establish(b);
    h.announce(a, &["10.1.0.0/24"]);
    h.end_of_rib(a);
    h.flush();
    assert!(h.sent.is_empty(), "deferred: {:?}", h.sent);
    h.advance(Duration::from_secs(29));
    h.flush();
    assert!(h.sent.is_empty(), "deferred: {:?}", h.sent);
    h.end_of_rib(b);
    h.flush();
    assert!(h.sent[&b] > 0, "the table and End-of-RIB go to b");
    assert!(h.sent[&a] > 0, "End-of-RIB goes to a");
    assert_eq!(h.core.poll_timeout(), None);
}

#[test]
fn test_restarting_defers_until_the_restart_time() {
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let mut h = Harness::new(two_clients(), true);
    h.establish(a);
    h.establish(b);
    h.announce(a, &["10.1.0.0/24"]);
    h.end_of_rib(a);
    // b never sends End-of-RIB.
    h.advance(Duration::from_secs(29));
    h.flush();
    assert!(h.sent.is_empty(), "deferred: {:?}", h.sent);
    h.advance(Duration::from_secs(2));
    h.flush();
    assert!(h.sent.get(&b).is_some_and(|n| *n > 0));
    // Peers added after the deferral do not claim a restart.
    h.core.set_peer(
        h.now,
        config(&client("10.0.0.4", "")).peers[&ip("10.0.0.4")].clone(),
    );
    h.drain();
    assert_eq!(
        h.spawned.last().map(|s| (s.0, s.2)),
        Some((ip("10.0.0.4"), false))
    );
}

#[test]
fn test_each_client_gets_the_others_routes_with_their_count() {
    let (a, b, c) = (ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.4"));
    let cfg = config(&format!(
        "{}{}{}",
        client("10.0.0.2", ""),
        client("10.0.0.3", ""),
        client("10.0.0.4", "")
    ));
    let mut h = Harness::new(cfg, false);
    for p in [a, b, c] {
        h.establish(p);
    }
    h.flush();
    h.sent_updates.clear();
    // One drain with each client's route: every member is excluded from one piece of
    // it, its own route, and gets the rest in two slices whose counts the harness checks.
    h.announce(a, &["10.1.0.0/24"]);
    h.announce(b, &["10.2.0.0/24"]);
    h.announce(c, &["10.3.0.0/24"]);
    h.flush();
    for p in [a, b, c] {
        assert_eq!(
            h.sent_updates.get(&p),
            Some(&2),
            "{p}: {:?}",
            h.sent_updates
        );
    }
}

#[test]
fn test_not_restarting_sends_at_once() {
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let mut h = Harness::new(two_clients(), false);
    assert!(h.spawned.iter().all(|s| !s.2));
    h.establish(a);
    h.establish(b);
    h.announce(a, &["10.1.0.0/24"]);
    h.flush();
    assert!(h.sent.get(&b).is_some_and(|n| *n > 0));
}

/// A message's frame, its bytes changed by `tamper` first.
fn frame_of(u: &Update, tamper: impl FnOnce(&mut BytesMut)) -> Frame {
    let mut buf = BytesMut::new();
    u.encode(&ctx(), &mut buf).unwrap();
    tamper(&mut buf);
    Framer::new().next_frame(&mut buf).unwrap().unwrap()
}

/// One prefix from next hop 10.0.0.2, no LOCAL_PREF.
fn route_from_2(prefix: &str) -> Update {
    Update {
        withdrawn: vec![],
        attributes: vec![
            PathAttribute::Origin(Origin::IGP),
            PathAttribute::AsPath(AsPath::default()),
            PathAttribute::NextHop(Ipv4Addr::new(10, 0, 0, 2)),
        ],
        nlri: vec![Nlri::new(net(prefix))],
    }
}

#[test]
fn test_a_batch_of_updates_is_handled_as_an_event_each() {
    let a = ip("10.0.0.2");
    let mut h = Harness::new(config(&client("10.0.0.2", "")), false);
    h.establish(a);
    let frame = |prefix: &str, break_nlri: bool| {
        frame_of(&route_from_2(prefix), |buf| {
            if break_nlri {
                // The /24's length octet says /33: the NLRI cannot be read, a session
                // reset (RFC 7606 §5.3).
                let at = buf.len() - 4;
                buf[at] = 33;
            }
        })
    };
    // One read brought three UPDATEs, the second malformed: the first and the third
    // are applied and the session is reset once, as with an event each (the session
    // reads on until our NOTIFICATION goes out).
    let generation = h.sessions[&a];
    h.batch_of(
        a,
        generation,
        News::Update(frame("10.1.0.0/24", false)),
        vec![frame("10.2.0.0/24", true), frame("10.3.0.0/24", false)],
    );
    assert!(h.has_route("10.1.0.0/24"));
    assert!(!h.has_route("10.2.0.0/24"));
    assert!(h.has_route("10.3.0.0/24"));
    let errors = h
        .commands
        .iter()
        .filter(|(p, c)| *p == a && matches!(c, Command::UpdateError(_)))
        .count();
    assert_eq!(errors, 1);
    assert_eq!(h.status(a).updates_received, 3);
}

#[test]
fn test_replaced_peer_old_generation_events_ignored() {
    let a = ip("10.0.0.2");
    let mut h = Harness::new(config(&client("10.0.0.2", "")), false);
    let old = h.sessions[&a];
    let changed = config(&client("10.0.0.2", "hold_time = 30")).peers[&a].clone();
    assert_eq!(h.core.set_peer(h.now, changed), PeerChange::Changed);
    h.drain();
    assert_eq!(h.stopped, vec![(a, old)]);
    let new = h.sessions[&a];
    assert_ne!(old, new);

    // The old session, still in flight, comes up and sends a route: not ours any more.
    h.establish_as(a, old);
    assert_eq!(h.status(a).state, PeerState::Idle);
    let u = route_from_2("10.1.0.0/24");
    h.update(a, old, &u);
    assert!(!h.has_route("10.1.0.0/24"));

    h.establish_as(a, new);
    assert_eq!(h.status(a).state, PeerState::Established);
    h.update(a, new, &u);
    assert!(h.has_route("10.1.0.0/24"));
}

#[test]
fn test_reload_dynamic_neighbour_into_a_peer_drops_its_routes_and_group() {
    let dynamic = "[[peer_group]]\nname = \"nodes\"\nasn = 65000\nrr_client = true\n\
                   [[dynamic_neighbors]]\nprefix = \"10.1.0.0/16\"\ngroup = \"nodes\"\n";
    let b = ip("10.0.0.3");
    let d = ip("10.1.0.5");
    let mut h = Harness::new(
        config(&format!("{dynamic}{}", client("10.0.0.3", ""))),
        false,
    );
    let from = SocketAddr::new(d, 40000);
    let generation = h
        .core
        .handle_inbound(h.now, from, None)
        .expect("in the range");
    h.drain();
    assert_eq!(h.sessions.get(&d), Some(&generation));
    assert!(h.status(d).dynamic);
    assert_eq!(
        h.core
            .handle_inbound(h.now, SocketAddr::new(ip("10.9.0.1"), 1), None),
        None,
        "outside every range"
    );
    h.establish(b);
    h.establish(d);
    h.announce(d, &["10.5.0.0/24"]);
    h.flush();
    let old_id = h.core.peers[&d].id;
    assert!(h.core.rib.group_of(old_id).is_some());
    assert!(h.has_route("10.5.0.0/24"));

    let cfg = config(&format!(
        "{dynamic}{}{}",
        client("10.0.0.3", ""),
        client("10.1.0.5", "")
    ));
    let diff = h.core.reload(h.now, cfg);
    h.drain();
    assert_eq!(diff.added, vec![d]);
    assert!(h.stopped.contains(&(d, generation)), "{:?}", h.stopped);
    assert!(
        !h.has_route("10.5.0.0/24"),
        "the dynamic neighbour's routes go"
    );
    assert_eq!(
        h.core.rib.group_of(old_id),
        None,
        "and its group membership"
    );
    assert_eq!(h.core.rib.adj_rib_in_len(old_id), 0);
    let s = h.status(d);
    assert!(!s.dynamic && s.state == PeerState::Idle);
    assert_ne!(h.sessions[&d], generation);

    // The old session's Idle does not remove the configured peer.
    h.event_of(
        d,
        generation,
        News::StateChanged {
            from: State::Established,
            to: State::Idle,
        },
    );
    assert!(h.core.peers.contains_key(&d));
}

#[test]
fn test_dynamic_neighbour_removed_when_idle() {
    let dynamic = "[[peer_group]]\nname = \"nodes\"\nasn = 65000\nrr_client = true\n\
                   [[dynamic_neighbors]]\nprefix = \"10.1.0.0/16\"\ngroup = \"nodes\"\n";
    let d = ip("10.1.0.5");
    let mut h = Harness::new(config(dynamic), false);
    let generation = h
        .core
        .handle_inbound(h.now, SocketAddr::new(d, 1), None)
        .unwrap();
    h.drain();
    h.establish(d);
    h.announce(d, &["10.5.0.0/24"]);
    h.down(d, false);
    assert!(!h.core.peers.contains_key(&d));
    assert!(!h.has_route("10.5.0.0/24"));
    assert_eq!(h.stopped, vec![(d, generation)]);
}

#[test]
fn test_export_waits_for_writers_and_resets_laggards() {
    use super::export::MAX_QUEUED;
    use crate::session::WINDOW;
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let mut h = Harness::new(two_clients(), false);
    h.establish(a);
    h.establish(b);
    h.flush();
    h.sent.clear();
    h.announce(a, &["10.1.0.0/24"]);
    // Every writer of the group is full: it waits, and says there is nothing to do now.
    // (One with room would do: a group goes at the pace of its fastest member.)
    let full = |_| WINDOW;
    assert!(!h.core.flush(h.now, &full));
    h.drain();
    assert!(h.sent.is_empty(), "{:?}", h.sent);
    assert!(h.resets.is_empty());
    // Room again: it goes out.
    h.flush();
    assert!(h.sent.get(&b).is_some_and(|n| *n > 0));
    // A peer past the bound is reset (Cease, Out of Resources) and gets nothing more.
    h.sent.clear();
    h.announce(a, &["10.2.0.0/24"]);
    let over = |p: IpAddr| if p == b { MAX_QUEUED + 1 } else { 0 };
    h.core.flush(h.now, &over);
    h.drain();
    assert_eq!(h.resets, vec![(b, subcode::cease::OUT_OF_RESOURCES)]);
    assert_eq!(h.status(b).state, PeerState::Idle);
    assert_eq!(h.status(a).state, PeerState::Established);
}

#[test]
fn test_peer_state_serialises_as_the_rfc_name() {
    let json = serde_json::to_string(&PeerState::from(State::OpenConfirm)).unwrap();
    assert_eq!(json, "\"OpenConfirm\"");
    let back: PeerState = serde_json::from_str("\"Established\"").unwrap();
    assert_eq!(back, PeerState::Established);
    assert!(back == "Established");
    assert_eq!(format!("{back}"), "Established");
}

/// Client A sends two routes; N, a non-client, is exported to with `export`.
fn reload_config(export: &str, import: &str) -> Config {
    let policies = "[[policy]]\nname = \"no-2\"\ndefault_action = \"accept\"\n\
        [[policy.rule]]\nprefixes = [\"10.2.0.0/24\"]\naction = \"reject\"\n";
    config(&format!(
        "{policies}{}[[peer]]\naddress = \"10.0.0.3\"\nasn = 65000\nexport = \"{export}\"\nimport = \"{import}\"\n",
        client("10.0.0.2", "")
    ))
}

/// Both peers up, A's routes 10.1.0.0/24 and 10.2.0.0/24 sent to N.
fn reload_harness(route_refresh: bool) -> Harness {
    let mut h = Harness::new(reload_config("all", "all"), false);
    h.route_refresh = route_refresh;
    let (a, n) = (ip("10.0.0.2"), ip("10.0.0.3"));
    h.establish(a);
    h.establish(n);
    h.announce(a, &["10.1.0.0/24", "10.2.0.0/24"]);
    h.flush();
    h
}

#[test]
fn test_reload_export_policy_keeps_the_session_and_sends_the_difference() {
    let mut h = reload_harness(true);
    let n = ip("10.0.0.3");
    let generation = h.sessions[&n];
    let since = h.status(n).uptime_s;
    let sent = h.sent[&n];
    h.now += Duration::from_secs(5);
    let diff = h.core.reload(h.now, reload_config("no-2", "all"));
    h.drain();
    assert_eq!(diff.changed, vec![n]);
    assert_eq!(diff.policy_only, vec![n]);
    assert!(h.stopped.is_empty(), "no Cease: {:?}", h.stopped);
    assert_eq!(h.sessions[&n], generation);
    assert!(h.refreshes.is_empty());
    h.flush();
    // The table again and a withdrawal of 10.2.0.0/24.
    assert!(h.sent[&n] > sent);
    let st = h.status(n);
    assert_eq!(st.state, PeerState::Established);
    assert_eq!(st.uptime_s, since.map(|s| s + 5));
    // Nothing for A, whose settings did not change.
    assert!(
        h.core
            .reload(h.now, reload_config("no-2", "all"))
            .is_empty()
    );
}

#[test]
fn test_reload_import_policy_sends_route_refresh() {
    let mut h = reload_harness(true);
    let n = ip("10.0.0.3");
    let generation = h.sessions[&n];
    let diff = h.core.reload(h.now, reload_config("all", "no-2"));
    h.drain();
    assert_eq!(diff.policy_only, vec![n]);
    assert!(h.stopped.is_empty());
    assert_eq!(h.sessions[&n], generation);
    assert_eq!(h.refreshes, vec![(n, vec![Family::Ipv4Unicast])]);
}

#[test]
fn test_reload_import_policy_without_route_refresh_resets() {
    let mut h = reload_harness(false);
    let n = ip("10.0.0.3");
    let generation = h.sessions[&n];
    let diff = h.core.reload(h.now, reload_config("all", "no-2"));
    h.drain();
    assert_eq!(
        diff.policy_only,
        vec![n],
        "policy only, as far as the file goes"
    );
    assert_eq!(h.stopped, vec![(n, generation)]);
    assert!(h.refreshes.is_empty());
}

#[test]
fn test_reload_session_key_or_speaker_asn_resets() {
    let mut h = reload_harness(true);
    let (a, n) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let mut c = reload_config("all", "all");
    c.peers.get_mut(&n).unwrap().hold_time = 30;
    let diff = h.core.reload(h.now, c.clone());
    h.drain();
    assert_eq!(diff.changed, vec![n]);
    assert!(diff.policy_only.is_empty());
    assert_eq!(h.stopped.len(), 1);
    assert_eq!(h.stopped[0].0, n);
    // The AS goes into every OPEN: every peer, changed or not, gets a new session.
    c.speaker.asn = 65001;
    h.core.reload(h.now, c);
    h.drain();
    let stopped: Vec<IpAddr> = h.stopped[1..].iter().map(|s| s.0).collect();
    assert_eq!(stopped.len(), 2);
    assert!(stopped.contains(&a) && stopped.contains(&n));
}

#[test]
fn test_set_peer_policy_only_is_reconfigured() {
    let mut h = reload_harness(true);
    let n = ip("10.0.0.3");
    let changed = reload_config("no-2", "all").peers[&n].clone();
    assert_eq!(
        h.core.set_peer(h.now, changed.clone()),
        PeerChange::Reconfigured
    );
    assert_eq!(h.core.set_peer(h.now, changed), PeerChange::Unchanged);
    h.drain();
    assert!(h.stopped.is_empty());
}

// ------------------------------------------------------------ graceful restart, helper

/// Client A (graceful restart `gr` s, stale time 100 s) up with 10.1.0.0/24 and
/// 10.2.0.0/24, client B up to see what is reflected.
fn helper_harness(gr: u16) -> Harness {
    let a = ip("10.0.0.2");
    let text = format!(
        "{}{}",
        client(
            "10.0.0.2",
            &format!("graceful_restart = {gr}\nstale_time = 100")
        ),
        client("10.0.0.3", "")
    );
    let mut h = Harness::new(config(&text), false);
    h.establish(a);
    h.establish(ip("10.0.0.3"));
    h.announce(a, &["10.1.0.0/24", "10.2.0.0/24"]);
    h.flush();
    h
}

#[test]
fn test_gr_helper_uses_the_restart_time_the_peer_advertised() {
    let a = ip("10.0.0.2");
    let mut h = helper_harness(300);
    // The peer advertised 120 s (`peer_gr`), less than our 300 s.
    let down_at = h.now;
    h.down(a, true);
    assert_eq!(
        h.core.poll_timeout(),
        Some(down_at + Duration::from_secs(120))
    );
    h.advance(Duration::from_secs(119));
    assert!(h.has_route("10.1.0.0/24"));
    h.advance(Duration::from_secs(2));
    assert!(!h.has_route("10.1.0.0/24") && !h.has_route("10.2.0.0/24"));

    // Ours is the cap: 60 s against the peer's 120 s.
    let mut h = helper_harness(60);
    let down_at = h.now;
    h.down(a, true);
    assert_eq!(
        h.core.poll_timeout(),
        Some(down_at + Duration::from_secs(60))
    );
    // A peer that advertised 0 s gets no help at all.
    let mut h = helper_harness(60);
    h.core.peers.get_mut(&a).unwrap().session.peer_restart_time = Some(0);
    h.down(a, true);
    h.advance(Duration::ZERO);
    assert!(!h.has_route("10.1.0.0/24"));
}

#[test]
fn test_gr_helper_no_end_of_rib_stale_routes_go_at_the_stale_time() {
    let a = ip("10.0.0.2");
    let mut h = helper_harness(120);
    h.down(a, true);
    h.advance(Duration::from_secs(10));
    h.establish(a);
    let back_at = h.now;
    assert_eq!(
        h.core.poll_timeout(),
        Some(back_at + Duration::from_secs(100)),
        "the End-of-RIB wait runs from the new session"
    );
    h.announce(a, &["10.1.0.0/24"]);
    h.advance(Duration::from_secs(99));
    assert!(h.has_route("10.2.0.0/24"), "stale, still kept");
    assert!(h.status(a).graceful_restart_pending);
    // No End-of-RIB ever: the stale one goes, the refreshed one stays.
    h.advance(Duration::from_secs(2));
    assert!(!h.has_route("10.2.0.0/24"));
    assert!(h.has_route("10.1.0.0/24"));
    assert!(!h.status(a).graceful_restart_pending);
    assert_eq!(h.core.poll_timeout(), None);
    h.flush();
    // A later End-of-RIB changes nothing.
    h.end_of_rib(a);
    assert!(h.has_route("10.1.0.0/24"));
}

#[test]
fn test_gr_helper_new_open_without_gr_or_forwarding_drops_stale_at_once() {
    let a = ip("10.0.0.2");
    for (cap, what) in [
        (None, "no graceful restart capability"),
        (peer_gr(false, true), "Forwarding State bit clear"),
        (
            Some(GracefulRestart {
                families: vec![],
                ..peer_gr(true, true).unwrap()
            }),
            "the family missing",
        ),
    ] {
        let mut h = helper_harness(120);
        h.down(a, true);
        h.advance(Duration::from_secs(5));
        h.peer_gr = cap;
        h.establish(a);
        assert!(
            !h.has_route("10.1.0.0/24") && !h.has_route("10.2.0.0/24"),
            "{what}: stale routes gone at once"
        );
        assert!(!h.status(a).graceful_restart_pending, "{what}");
        assert_eq!(h.core.poll_timeout(), None, "{what}");
        // What the peer sends now is fresh.
        h.announce(a, &["10.1.0.0/24"]);
        assert!(h.has_route("10.1.0.0/24"), "{what}");
    }
    // With the bit set, the routes stay until End-of-RIB.
    let mut h = helper_harness(120);
    h.down(a, true);
    h.peer_gr = peer_gr(true, true);
    h.establish(a);
    assert!(h.has_route("10.1.0.0/24") && h.status(a).graceful_restart_pending);
    h.end_of_rib(a);
    assert!(!h.has_route("10.1.0.0/24") && !h.status(a).graceful_restart_pending);
}

const DYNAMIC: &str = "[[peer_group]]\nname = \"nodes\"\nasn = 65000\nrr_client = true\n\
                       graceful_restart = 60\n\
                       [[dynamic_neighbors]]\nprefix = \"10.1.0.0/16\"\ngroup = \"nodes\"\n";

#[test]
fn test_gr_helper_dynamic_neighbour_kept_through_a_graceful_restart() {
    let d = ip("10.1.0.5");
    let mut h = Harness::new(config(DYNAMIC), false);
    let generation = h
        .core
        .handle_inbound(h.now, SocketAddr::new(d, 1), None)
        .unwrap();
    h.drain();
    h.establish(d);
    h.announce(d, &["10.5.0.0/24", "10.6.0.0/24"]);
    h.down(d, true);
    assert!(h.core.peers.contains_key(&d), "kept while helped");
    assert!(h.stopped.is_empty(), "its session waits for the peer");
    assert!(h.has_route("10.5.0.0/24") && h.status(d).graceful_restart_pending);
    // Back: its connection goes to the same session; End-of-RIB ends the help.
    h.advance(Duration::from_secs(20));
    assert_eq!(
        h.core.handle_inbound(h.now, SocketAddr::new(d, 2), None),
        Some(generation)
    );
    h.establish(d);
    h.announce(d, &["10.5.0.0/24"]);
    h.end_of_rib(d);
    assert!(h.has_route("10.5.0.0/24") && !h.has_route("10.6.0.0/24"));
    assert!(!h.status(d).graceful_restart_pending);

    // Down gracefully again and never back: routes and neighbour go at the restart time.
    h.down(d, true);
    h.advance(Duration::from_secs(59));
    assert!(h.has_route("10.5.0.0/24"));
    h.advance(Duration::from_secs(2));
    assert!(!h.has_route("10.5.0.0/24"));
    assert!(!h.core.peers.contains_key(&d));
    assert_eq!(h.stopped, vec![(d, generation)]);
}

// ------------------------------------------------------------ graceful restart, restarting

#[test]
fn test_restarting_does_not_wait_for_peers_that_restart_too() {
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let mut h = Harness::new(two_clients(), true);
    assert!(h.core.recovering());
    h.establish(a);
    // b restarts as well (R bit): selection does not wait for it, recovery does.
    h.peer_gr = peer_gr(true, true);
    h.establish(b);
    h.announce(a, &["10.1.0.0/24"]);
    h.end_of_rib(a);
    h.flush();
    assert!(!h.core.deferring(), "selection ran on a's End-of-RIB");
    assert!(h.sent.get(&b).is_some_and(|n| *n > 0), "b gets the table");
    assert!(h.core.recovering(), "b's End-of-RIB is still awaited");
    let ended: Vec<IpAddr> = h
        .commands
        .iter()
        .filter(|(_, c)| matches!(c, Command::EndRestart))
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(ended.len(), 2, "both sessions stop claiming the restart");
    h.end_of_rib(b);
    h.flush();
    assert!(!h.core.recovering());
    assert_eq!(h.core.poll_timeout(), None);
}

#[test]
fn test_restarting_does_not_wait_for_peers_without_gr() {
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let mut h = Harness::new(two_clients(), true);
    h.establish(a);
    h.peer_gr = None;
    h.establish(b);
    h.flush();
    assert!(h.core.deferring(), "a's End-of-RIB is awaited");
    h.end_of_rib(a);
    h.flush();
    assert!(!h.core.deferring() && !h.core.recovering());
}

#[test]
fn test_restarting_recovery_ends_at_the_restart_time() {
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let mut h = Harness::new(two_clients(), true);
    h.establish(a);
    h.end_of_rib(a);
    h.peer_gr = peer_gr(true, true);
    h.establish(b);
    h.flush();
    assert!(h.core.recovering());
    h.advance(Duration::from_secs(31));
    h.flush();
    assert!(!h.core.recovering());
    // A peer down before the deferral is over, never back: the timer ends it too.
    let mut h = Harness::new(two_clients(), true);
    h.establish(a);
    h.end_of_rib(a);
    h.flush();
    assert!(h.core.deferring(), "b never came up");
    h.advance(Duration::from_secs(31));
    h.flush();
    assert!(!h.core.deferring() && !h.core.recovering());
    assert!(
        h.commands
            .iter()
            .any(|(p, c)| *p == b && matches!(c, Command::EndRestart))
    );
}

// ------------------------------------------------ forwarding state across resets

/// The Forwarding State bits of the last OPEN spawned for `peer`.
fn last_forwarding(h: &Harness, peer: IpAddr) -> Option<bool> {
    h.spawned_forwarding
        .iter()
        .rev()
        .find(|(p, _)| *p == peer)
        .and_then(|(_, f)| *f)
}

#[test]
fn test_forwarding_bit_clear_at_a_fresh_start_then_kept() {
    let a = ip("10.0.0.2");
    let mut h = Harness::new(config(&client("10.0.0.2", "")), false);
    assert_eq!(
        last_forwarding(&h, a),
        Some(false),
        "a fresh start keeps nothing"
    );
    assert!(
        !h.spawned.iter().any(|(_, _, r)| *r),
        "no Restart State bit"
    );
    h.establish(a);
    let kept: Vec<IpAddr> = h
        .commands
        .iter()
        .filter(|(_, c)| matches!(c, Command::KeepForwarding))
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(
        kept,
        [a],
        "the session's later OPENs claim the forwarding state"
    );
    // A flap: the same session, nothing more to say.
    h.down(a, true);
    h.establish(a);
    assert_eq!(
        h.commands
            .iter()
            .filter(|(_, c)| matches!(c, Command::KeepForwarding))
            .count(),
        1
    );
}

/// Reflector client A (10.0.0.2), its sessions' OPENs with graceful restart `gr`: up,
/// and having sent `routes` (if any).
fn client_up(gr: Option<GracefulRestart>, routes: &[&str]) -> Harness {
    let a = ip("10.0.0.2");
    let mut h = Harness::new(config(&client("10.0.0.2", "")), false);
    h.peer_gr = gr;
    h.establish(a);
    if !routes.is_empty() {
        h.announce(a, routes);
        h.flush();
    }
    h
}

impl Harness {
    /// Reloads a configuration where A (10.0.0.2) is no longer a reflector client: a
    /// change that needs a new session.
    fn unclient(&mut self) {
        self.core.reload(
            self.now,
            config("[[peer]]\naddress = \"10.0.0.2\"\nasn = 65000\n"),
        );
        self.drain();
    }

    /// Whether `peer`'s session was abandoned: closed without a NOTIFICATION.
    fn abandoned(&self, peer: IpAddr) -> bool {
        self.commands
            .iter()
            .any(|(p, c)| *p == peer && matches!(c, Command::Abandon))
    }
}

#[test]
fn test_reset_for_rr_client_sets_forwarding_and_keeps_our_routes_at_the_peer() {
    let a = ip("10.0.0.2");
    let mut h = client_up(peer_gr(true, false), &[]);
    let spawns = h.spawned.len();
    h.unclient();
    assert_eq!(h.spawned.len(), spawns + 1, "rr_client needs a new session");
    assert_eq!(
        last_forwarding(&h, a),
        Some(true),
        "{:?}",
        h.spawned_forwarding
    );
    assert!(!h.spawned.last().unwrap().2, "no Restart State bit");
    // Both sides sent the N bit: a Cease, not a Hard Reset, so the peer keeps our routes
    // as stale (RFC 8538 §4) until the new session's End-of-RIB.
    let ceases: Vec<(u8, u8)> = h
        .ceases
        .iter()
        .filter(|(p, _)| *p == a)
        .map(|(_, n)| (n.code.0, n.subcode))
        .collect();
    assert_eq!(ceases, [(6, subcode::cease::OTHER_CONFIG_CHANGE)]);
    assert!(!h.abandoned(a));
}

#[test]
fn test_reset_for_rr_client_keeps_the_peers_routes_until_its_end_of_rib() {
    let a = ip("10.0.0.2");
    let mut h = client_up(peer_gr(true, false), &["10.1.0.0/24", "10.2.0.0/24"]);
    h.unclient();
    // RFC 8538 §4: ours sent the Cease, ours keeps the peer's routes too, stale.
    for p in ["10.1.0.0/24", "10.2.0.0/24"] {
        let e = h.core.route(&net(p)).unwrap();
        assert!(e.paths.len() == 1 && e.paths[0].stale, "{p}: {:?}", e.paths);
        assert_eq!(h.core.source(e.paths[0].peer), Some(a));
    }
    h.establish(a);
    assert!(h.has_route("10.1.0.0/24") && h.has_route("10.2.0.0/24"));
    // The new session sends one of the two, then End-of-RIB: the other goes.
    h.announce(a, &["10.1.0.0/24"]);
    h.end_of_rib(a);
    h.flush();
    let e = h.core.route(&net("10.1.0.0/24")).unwrap();
    assert!(e.paths.len() == 1 && !e.paths[0].stale, "{:?}", e.paths);
    assert!(
        !h.has_route("10.2.0.0/24"),
        "not sent again: gone with End-of-RIB"
    );
    assert!(h.core.stale_sessions.is_empty());
    assert_eq!(h.core.poll_timeout(), None);

    // A new session that never comes: the routes go at the restart time (120 s).
    let mut h = client_up(peer_gr(true, false), &["10.1.0.0/24"]);
    h.unclient();
    h.advance(Duration::from_secs(119));
    assert!(h.has_route("10.1.0.0/24"));
    h.advance(Duration::from_secs(2));
    assert!(!h.has_route("10.1.0.0/24"));
    assert!(h.core.stale_sessions.is_empty());

    // Removed from the configuration meanwhile: its routes go at once.
    let mut h = client_up(peer_gr(true, false), &["10.1.0.0/24"]);
    h.unclient();
    h.core.reload(h.now, config(""));
    h.drain();
    assert!(!h.has_route("10.1.0.0/24"));
    assert!(h.core.stale_sessions.is_empty());
}

#[test]
fn test_reset_towards_a_peer_keeping_no_forwarding_state_drops_its_routes_when_back() {
    let a = ip("10.0.0.2");
    let mut h = client_up(peer_gr(false, false), &["10.1.0.0/24"]);
    h.unclient();
    assert!(h.has_route("10.1.0.0/24"), "kept while the session is down");
    h.establish(a);
    assert!(
        !h.has_route("10.1.0.0/24"),
        "RFC 4724 §4.2: its new OPEN keeps no forwarding state"
    );
    assert!(h.core.stale_sessions.is_empty());
}

#[test]
fn test_reset_towards_a_helper_without_n_bit_closes_without_notification() {
    let a = ip("10.0.0.2");
    // BIRD: graceful restart, no N bit. A Cease would end its help.
    let bird = GracefulRestart {
        notification: false,
        ..peer_gr(false, false).unwrap()
    };
    let mut h = client_up(Some(bird), &[]);
    h.unclient();
    assert!(h.ceases.iter().all(|(p, _)| *p != a), "{:?}", h.ceases);
    assert!(h.abandoned(a));
    assert_eq!(last_forwarding(&h, a), Some(true));
    // A peer without graceful restart gets the Cease.
    let mut h = client_up(None, &[]);
    h.unclient();
    assert_eq!(h.ceases.len(), 1, "{:?}", h.ceases);
    assert!(!h.abandoned(a));
}

#[test]
fn test_deconfigured_peer_added_again_starts_afresh() {
    let a = ip("10.0.0.2");
    let mut h = Harness::new(config(&client("10.0.0.2", "")), false);
    h.establish(a);
    h.core.reload(h.now, config(""));
    h.drain();
    h.core.reload(h.now, config(&client("10.0.0.2", "")));
    h.drain();
    assert_eq!(last_forwarding(&h, a), Some(false), "it dropped our routes");
}

#[test]
fn test_passive_change_keeps_the_session() {
    let a = ip("10.0.0.2");
    let mut h = Harness::new(config(&client("10.0.0.2", "")), false);
    h.establish(a);
    let spawns = h.spawned.len();
    let diff = h
        .core
        .reload(h.now, config(&client("10.0.0.2", "passive = true")));
    h.drain();
    assert_eq!(diff.policy_only, [a]);
    assert_eq!(h.spawned.len(), spawns, "no new session");
    assert!(h.stopped.is_empty() && h.ceases.is_empty());
    assert!(
        h.commands
            .iter()
            .any(|(p, c)| *p == a && matches!(c, Command::SetPassive(true)))
    );
    assert_eq!(h.core.peers[&a].session.state, State::Established);
}

// ------------------------------------------------------------ hard reset, max-prefix

#[test]
fn test_max_prefix_hard_reset_purges_and_holds_down() {
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let text = format!(
        "{}{}",
        client(
            "10.0.0.2",
            "graceful_restart = 120\nmax_prefix = { limit = 2, restart = 30 }"
        ),
        client("10.0.0.3", "")
    );
    let mut h = Harness::new(config(&text), false);
    h.establish(a);
    h.establish(b);
    h.announce(a, &["10.1.0.0/24", "10.2.0.0/24"]);
    h.flush();
    // Each session up claims the forwarding state kept from then on; nothing else.
    h.commands
        .retain(|(_, c)| !matches!(c, Command::KeepForwarding));
    assert!(h.commands.is_empty(), "{:?}", h.commands);
    h.announce(a, &["10.3.0.0/24"]);
    let stop = h
        .commands
        .iter()
        .find_map(|(p, c)| match c {
            Command::Stop(Some(n)) if *p == a => Some(n.clone()),
            _ => None,
        })
        .expect("a is stopped");
    // Both sides sent the N bit: a Hard Reset carrying Cease/1 and its data.
    assert_eq!(stop.code, bgp_wire::ErrorCode::CEASE);
    assert_eq!(stop.subcode, subcode::cease::HARD_RESET);
    assert_eq!(&stop.data[..2], &[6, subcode::cease::MAX_PREFIXES]);
    assert_eq!(&stop.data[2..], &[0, 1, 1, 0, 0, 0, 2]);
    // The session reports the stop: not graceful (a ManualStop), routes purged.
    let reason = DownReason::NotificationSent(stop);
    h.event(
        a,
        News::Down {
            reason,
            graceful: false,
        },
    );
    h.flush();
    for p in ["10.1.0.0/24", "10.2.0.0/24", "10.3.0.0/24"] {
        assert!(!h.has_route(p), "{p} gone");
    }
    assert!(!h.status(a).graceful_restart_pending);
    // Held down: its connections are refused until the restart time is over.
    h.advance(Duration::from_secs(29));
    assert_eq!(
        h.core.handle_inbound(h.now, SocketAddr::new(a, 1), None),
        None
    );
    assert!(
        !h.commands
            .iter()
            .any(|(p, c)| *p == a && matches!(c, Command::Start))
    );
    h.advance(Duration::from_secs(2));
    assert!(
        h.commands
            .iter()
            .any(|(p, c)| *p == a && matches!(c, Command::Start)),
        "started again"
    );
    assert_eq!(
        h.core.handle_inbound(h.now, SocketAddr::new(a, 1), None),
        Some(h.sessions[&a])
    );
    assert_eq!(h.core.poll_timeout(), None);
}

#[test]
fn test_max_prefix_without_n_bit_sends_plain_cease() {
    let a = ip("10.0.0.2");
    let mut h = Harness::new(config(&client("10.0.0.2", "max_prefix = 1")), false);
    h.peer_gr = None;
    h.establish(a);
    h.announce(a, &["10.1.0.0/24", "10.2.0.0/24"]);
    let n = h
        .commands
        .iter()
        .find_map(|(_, c)| match c {
            Command::Stop(Some(n)) => Some(n.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(n.subcode, subcode::cease::MAX_PREFIXES);
    // Default hold-down: 60 s.
    assert_eq!(h.core.poll_timeout(), Some(h.now + Duration::from_secs(60)));
}

#[test]
fn test_deconfigured_peer_gets_a_hard_reset() {
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let mut h = Harness::new(two_clients(), false);
    h.establish(a);
    h.peer_gr = None;
    h.establish(b);
    assert!(h.core.remove_peer(a) && h.core.remove_peer(b));
    h.drain();
    let (ca, cb) = (&h.ceases[0], &h.ceases[1]);
    assert_eq!((ca.0, ca.1.subcode), (a, subcode::cease::HARD_RESET));
    assert_eq!(&ca.1.data[..], &[6, subcode::cease::PEER_DECONFIGURED]);
    assert_eq!((cb.0, cb.1.subcode), (b, subcode::cease::PEER_DECONFIGURED));
}

#[test]
fn test_shutdown_is_a_planned_restart_for_gr_sessions() {
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let mut h = Harness::new(two_clients(), false);
    h.establish(a);
    h.peer_gr = None;
    h.establish(b);
    h.core.shutdown();
    h.drain();
    // a negotiated graceful restart: its connection closes without a NOTIFICATION.
    assert!(h.abandoned(a));
    assert!(h.ceases.iter().all(|(p, _)| *p != a), "{:?}", h.ceases);
    // b did not: Cease, Administrative Shutdown.
    assert_eq!(h.ceases.len(), 1);
    assert_eq!(
        (h.ceases[0].0, h.ceases[0].1.subcode),
        (b, subcode::cease::ADMIN_SHUTDOWN)
    );
    assert_eq!(h.stopped.len(), 2);
}

#[test]
fn test_shutdown_without_graceful_stop_ceases_every_peer() {
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let cfg = config(&format!(
        "graceful_restart = 30\ngraceful_stop = false\n{}{}",
        client("10.0.0.2", ""),
        client("10.0.0.3", "")
    ));
    let mut h = Harness::new(cfg, false);
    h.establish(a);
    h.peer_gr = None;
    h.establish(b);
    h.core.shutdown();
    h.drain();
    assert!(!h.abandoned(a) && !h.abandoned(b));
    let mut ceases: Vec<(IpAddr, u8, Vec<u8>)> = h
        .ceases
        .iter()
        .map(|(p, n)| (*p, n.subcode, n.data.to_vec()))
        .collect();
    ceases.sort();
    // a sent the N bit: a Hard Reset carrying the Administrative Shutdown.
    assert_eq!(ceases[0].0, a);
    assert_eq!(ceases[0].1, subcode::cease::HARD_RESET);
    assert_eq!(&ceases[0].2[..2], &[6, subcode::cease::ADMIN_SHUTDOWN]);
    assert_eq!(
        (ceases[1].0, ceases[1].1),
        (b, subcode::cease::ADMIN_SHUTDOWN)
    );
}

// ------------------------------------------------------------ long-lived graceful restart

#[test]
fn test_llgr_keeps_routes_long_lived_after_the_restart_time() {
    use bgp_wire::attr::Community;
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let text = format!(
        "{}{}",
        client(
            "10.0.0.2",
            "graceful_restart = 60\nlong_lived_stale_time = 600"
        ),
        client("10.0.0.3", "")
    );
    let cfg = config(&text);
    // Our OPEN to a carries the LLGR capability with our long-lived stale time.
    let caps = cfg.peers[&a].fsm_config(&cfg.speaker).capabilities;
    assert!(caps.iter().any(|c| matches!(
        c,
        Capability::LongLivedGracefulRestart(f) if f.len() == 2 && f[0].stale_time == 600
    )));
    let mut h = Harness::new(cfg, false);
    h.peer_llgr = Some(vec![LlgrFamily {
        afi: Afi::IPV4,
        safi: Safi::UNICAST,
        forwarding: true,
        stale_time: 1000,
    }]);
    h.establish(a);
    h.establish(b);
    h.announce(a, &["10.1.0.0/24"]);
    let no_llgr = Update {
        withdrawn: vec![],
        attributes: vec![
            PathAttribute::Origin(Origin::IGP),
            PathAttribute::AsPath(AsPath::default()),
            PathAttribute::NextHop(Ipv4Addr::new(10, 0, 0, 2)),
            PathAttribute::LocalPref(100),
            PathAttribute::Communities(vec![Community::NO_LLGR]),
        ],
        nlri: vec![Nlri::new(net("10.2.0.0/24"))],
    };
    h.update(a, h.sessions[&a], &no_llgr);
    h.flush();
    let down_at = h.now;
    h.down(a, true);
    h.advance(Duration::from_secs(59));
    let e = h.core.route(&net("10.1.0.0/24")).unwrap();
    assert!(e.paths[0].stale && !e.paths[0].attrs.has_community(Community::LLGR_STALE));
    // The restart time is over: long-lived stale, the NO_LLGR route gone.
    h.advance(Duration::from_secs(2));
    let e = h.core.route(&net("10.1.0.0/24")).unwrap();
    let p = &e.paths[0];
    assert!(p.stale && p.attrs.has_community(Community::LLGR_STALE));
    assert!(p.attrs.has_community(Community::NO_EXPORT));
    assert_eq!(p.attrs.local_pref(), Some(0));
    assert!(!h.has_route("10.2.0.0/24"), "NO_LLGR: not kept");
    assert!(h.status(a).graceful_restart_pending);
    // Any fresh path wins over it.
    h.announce(b, &["10.1.0.0/24"]);
    let e = h.core.route(&net("10.1.0.0/24")).unwrap();
    assert_eq!(h.core.source(e.paths[0].peer), Some(b));
    assert_eq!(e.paths.len(), 2);
    // Our 600 s, less than the peer's 1000 s, from the end of the restart time.
    assert_eq!(
        h.core.poll_timeout(),
        Some(down_at + Duration::from_secs(660))
    );
    h.advance(Duration::from_secs(598));
    assert_eq!(h.core.route(&net("10.1.0.0/24")).unwrap().paths.len(), 2);
    h.advance(Duration::from_secs(2));
    let e = h.core.route(&net("10.1.0.0/24")).unwrap();
    assert_eq!(e.paths.len(), 1, "a's long-lived stale path gone");
    assert!(!h.status(a).graceful_restart_pending);
}

#[test]
fn test_llgr_peer_back_replaces_long_lived_routes() {
    use bgp_wire::attr::Community;
    let a = ip("10.0.0.2");
    let cfg = config(&client(
        "10.0.0.2",
        "graceful_restart = 60\nlong_lived_stale_time = 600",
    ));
    let mut h = Harness::new(cfg, false);
    h.peer_llgr = Some(vec![LlgrFamily {
        afi: Afi::IPV4,
        safi: Safi::UNICAST,
        forwarding: true,
        stale_time: 1000,
    }]);
    h.establish(a);
    h.announce(a, &["10.1.0.0/24", "10.2.0.0/24"]);
    h.down(a, true);
    h.advance(Duration::from_secs(100));
    assert!(h.has_route("10.2.0.0/24"));
    // Back, its GR capability without the F bit, its LLGR capability with it: kept.
    h.peer_gr = peer_gr(false, true);
    h.establish(a);
    assert!(h.has_route("10.2.0.0/24") && h.status(a).graceful_restart_pending);
    h.announce(a, &["10.1.0.0/24"]);
    h.end_of_rib(a);
    let e = h.core.route(&net("10.1.0.0/24")).unwrap();
    assert!(!e.paths[0].stale && !e.paths[0].attrs.has_community(Community::LLGR_STALE));
    assert_eq!(e.paths[0].attrs.local_pref(), Some(100));
    assert!(!h.has_route("10.2.0.0/24"));
    // Without LLGR on the peer's side: the routes go at the restart time.
    let mut h = Harness::new(
        config(&client(
            "10.0.0.2",
            "graceful_restart = 60\nlong_lived_stale_time = 600",
        )),
        false,
    );
    h.establish(a);
    h.announce(a, &["10.1.0.0/24"]);
    h.down(a, true);
    h.advance(Duration::from_secs(61));
    assert!(!h.has_route("10.1.0.0/24"));
}

fn bfd_notice(
    peer: IpAddr,
    from: crate::bfd::State,
    state: crate::bfd::State,
) -> crate::bfd::Notice {
    crate::bfd::Notice {
        peer,
        from,
        state,
        diag: crate::bfd::Diag::TIME_EXPIRED,
        remote: crate::bfd::State::Down,
    }
}

#[test]
fn test_bfd_down_resets_the_bgp_session_at_once() {
    use crate::bfd::State as Bfd;
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let cfg = config(&format!(
        "{}{}",
        client("10.0.0.2", "bfd = { interval = 200, multiplier = 5 }"),
        client("10.0.0.3", "")
    ));
    let mut h = Harness::new(cfg, false);
    assert_eq!(h.bfd, [(a, Some((false, Duration::from_millis(200))))]);
    assert_eq!(h.status(a).bfd, Some(Bfd::Down));
    assert_eq!(h.status(b).bfd, None);
    h.establish(a);
    h.establish(b);
    h.announce(a, &["10.1.0.0/24"]);
    // Down before it was ever Up: nothing (not strict).
    h.core.handle_bfd(bfd_notice(a, Bfd::Init, Bfd::Down));
    h.drain();
    assert!(h.resets.is_empty());
    h.core.handle_bfd(bfd_notice(a, Bfd::Init, Bfd::Up));
    h.drain();
    assert_eq!(h.status(a).bfd, Some(Bfd::Up));
    // The peer takes BFD down on purpose: BGP stays (RFC 5882 §3.2).
    let mut admin = bfd_notice(a, Bfd::Up, Bfd::Down);
    admin.remote = Bfd::AdminDown;
    h.core.handle_bfd(admin);
    h.drain();
    assert!(h.resets.is_empty());
    // The path fails: Cease, BFD Down (RFC 9384) at once.
    h.core.handle_bfd(bfd_notice(a, Bfd::Up, Bfd::Down));
    h.drain();
    assert_eq!(h.resets, [(a, subcode::cease::BFD_DOWN)]);
    assert!(
        h.start_stop.is_empty(),
        "not strict: BGP restarts by itself"
    );
    assert!(h.status(a).last_error.unwrap().contains("BFD session down"));
    // A notice for a peer without BFD changes nothing.
    h.core.handle_bfd(bfd_notice(b, Bfd::Up, Bfd::Down));
    h.drain();
    assert_eq!(h.resets.len(), 1);
    // Removing the peer ends its BFD session.
    h.core.remove_peer(a);
    h.drain();
    assert_eq!(h.bfd.last(), Some(&(a, None)));
}

#[test]
fn test_bfd_strict_holds_bgp_until_bfd_is_up() {
    use crate::bfd::State as Bfd;
    let a = ip("10.0.0.2");
    let cfg = config(&client(
        "10.0.0.2",
        "bfd = { strict = true, multihop = true }",
    ));
    let mut h = Harness::new(cfg, false);
    assert_eq!(h.bfd, [(a, Some((true, Duration::from_millis(300))))]);
    assert_eq!(h.start_stop, [(a, false)], "held at once");
    let why = h.status(a).last_error.unwrap();
    assert!(why.contains("waiting for BFD"), "{why}");
    h.core.handle_bfd(bfd_notice(a, Bfd::Down, Bfd::Init));
    h.core.handle_bfd(bfd_notice(a, Bfd::Init, Bfd::Up));
    h.drain();
    assert_eq!(h.start_stop, [(a, false), (a, true)]);
    h.establish(a);
    h.core.handle_bfd(bfd_notice(a, Bfd::Up, Bfd::Down));
    h.drain();
    assert_eq!(h.resets.len(), 1);
    assert_eq!(h.start_stop, [(a, false), (a, true), (a, false)]);
}

#[test]
fn test_bfd_timer_change_keeps_the_bgp_session() {
    let a = ip("10.0.0.2");
    let mut h = Harness::new(config(&client("10.0.0.2", "bfd = true")), false);
    h.establish(a);
    let diff = h.core.reload(
        h.now,
        config(&client("10.0.0.2", "bfd = { interval = 600 }")),
    );
    h.drain();
    assert_eq!(diff.changed, [a]);
    assert!(h.stopped.is_empty(), "no new BGP session");
    assert_eq!(
        h.bfd.last(),
        Some(&(a, Some((false, Duration::from_millis(600)))))
    );
    h.core.reload(h.now, config(&client("10.0.0.2", "")));
    h.drain();
    assert_eq!(h.bfd.last(), Some(&(a, None)));
    assert!(h.stopped.is_empty());
    assert_eq!(h.status(a).bfd, None);
}

/// `down_reason` through the core: none while up; a max-prefix breach the RIB found and
/// a BFD Down announced before the session reports its end keep their names, whatever
/// the session says about the end.
#[test]
fn test_down_reason_follows_the_session() {
    use super::Reason;
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let peers = format!(
        "{}{}",
        client("10.0.0.2", "max_prefix = 2"),
        client("10.0.0.3", "")
    );
    let mut h = Harness::new(config(&peers), false);
    let d = h.status(a).down_reason.expect("a new peer is not up");
    assert_eq!(d.reason, Reason::WaitingForPeer);
    assert!(
        d.message.contains("connecting to 10.0.0.2:179"),
        "{}",
        d.message
    );
    h.establish(a);
    h.establish(b);
    assert_eq!(h.status(a).down_reason, None);

    // Three prefixes over a limit of two: the core asks the session for the Cease.
    h.announce(a, &["10.1.0.0/24", "10.2.0.0/24", "10.3.0.0/24"]);
    let cease = Notification::new(bgp_wire::ErrorCode::CEASE, subcode::cease::MAX_PREFIXES);
    let reason = DownReason::NotificationSent(cease);
    h.event(
        a,
        News::Down {
            reason,
            graceful: false,
        },
    );
    let to_idle = News::StateChanged {
        from: State::Established,
        to: State::Idle,
    };
    h.event(a, to_idle);
    let d = h.status(a).down_reason.unwrap();
    assert_eq!(d.reason, Reason::MaxPrefix);
    assert!(d.message.contains("more than 2 prefixes"), "{}", d.message);

    // BFD says the path is gone; the session then only sees its connection end.
    h.core.expect_down(
        b,
        Reason::BfdDown,
        "BFD session to 10.0.0.3 went Down".into(),
    );
    h.down(b, false);
    let d = h.status(b).down_reason.unwrap();
    assert_eq!(d.reason, Reason::BfdDown);
    assert!(d.message.contains("BFD session"), "{}", d.message);
    h.establish(b);
    assert_eq!(h.status(b).down_reason, None);
}

/// Link-local peers: a configured `fe80::2%eth0` takes the peer's connection only from
/// eth0, and a `[[dynamic_neighbors]] interface = "eth1"` range any link-local peer on eth1
/// (and nothing from elsewhere).
#[test]
fn test_link_local_peers_by_interface() {
    let text = "[[peer]]\naddress = \"fe80::2%eth0\"\nasn = 65001\n\
                [[peer_group]]\nname = \"fabric\"\nasn = 65002\n\
                [[dynamic_neighbors]]\ninterface = \"eth1\"\ngroup = \"fabric\"\n";
    let mut h = Harness::new(config(text), false);
    let ll = ip("fe80::2");
    assert_eq!(h.status(ll).address, ll);
    let from = SocketAddr::new(ll, 40000);
    assert_eq!(
        h.core.handle_inbound(h.now, from, Some("eth1")),
        None,
        "wrong link"
    );
    assert_eq!(h.core.handle_inbound(h.now, from, None), None, "no link");
    assert_eq!(
        h.core.handle_inbound(h.now, from, Some("eth0")),
        Some(h.sessions[&ll])
    );
    // Any link-local peer on eth1, as a dynamic neighbour of AS 65002.
    let other = SocketAddr::new(ip("fe80::77"), 40000);
    assert_eq!(h.core.handle_inbound(h.now, other, Some("eth0")), None);
    let generation = h
        .core
        .handle_inbound(h.now, other, Some("eth1"))
        .expect("eth1 range");
    h.drain();
    assert_eq!(h.sessions[&other.ip()], generation);
    let p = h.status(other.ip());
    assert!(p.dynamic && p.asn == 65002, "{p:?}");
    assert_eq!(p.interface.as_deref(), Some("eth1"));
    assert_eq!(h.status(ll).interface.as_deref(), Some("eth0"));
}

#[test]
fn test_routes_listed_by_family_then_address_then_length() {
    let mut h = Harness::new(config(""), false);
    let scrambled = [
        "2001:db8::/48",
        "10.1.0.0/24",
        "192.0.2.0/24",
        "10.1.0.0/16",
        "2001:db8::/32",
        "9.0.0.0/8",
        "10.0.255.0/24",
        "::/0",
        "10.1.0.128/25",
    ];
    for p in scrambled {
        h.core.originate(net(p), rib::Attrs::default());
    }
    h.drain();
    let listed = |page: super::RoutesPage| -> Vec<String> {
        page.routes.iter().map(|r| r.prefix.to_string()).collect()
    };
    let all = h.core.routes(None, 0, 100);
    assert!(!all.more);
    let sorted = [
        "9.0.0.0/8",
        "10.0.255.0/24",
        "10.1.0.0/16",
        "10.1.0.0/24",
        "10.1.0.128/25",
        "192.0.2.0/24",
        "::/0",
        "2001:db8::/32",
        "2001:db8::/48",
    ];
    assert_eq!(listed(all), sorted);
    // Pages of 2 by offset, and by cursor, give the same list in the same order.
    let (mut by_offset, mut by_cursor, mut after) = (Vec::new(), Vec::new(), None);
    for offset in (0..sorted.len()).step_by(2) {
        let page = h.core.routes(None, offset, 2);
        assert_eq!(page.more, offset + 2 < sorted.len(), "offset {offset}");
        by_offset.extend(listed(page));
        let page = h.core.routes(after, 0, 2);
        after = page.routes.last().map(|r| r.prefix);
        by_cursor.extend(listed(page));
    }
    assert_eq!(by_offset, sorted);
    assert_eq!(by_cursor, sorted);
    assert!(h.core.routes(after, 0, 2).routes.is_empty());
    assert!(h.core.routes(None, 100, 2).routes.is_empty());
}

#[test]
fn test_reload_description_only_keeps_the_session_and_sends_nothing() {
    let mut h = reload_harness(true);
    let n = ip("10.0.0.3");
    let generation = h.sessions[&n];
    let sent = h.sent.clone();
    let mut c = reload_config("all", "all");
    c.peers.get_mut(&n).unwrap().description = Some("rack 7".into());
    let diff = h.core.reload(h.now, c);
    h.drain();
    h.flush();
    assert_eq!(diff.changed, [n]);
    assert_eq!(diff.policy_only, [n]);
    assert_eq!(diff.changed_keys[&n], ["description"]);
    assert!(
        h.stopped.is_empty() && h.resets.is_empty(),
        "{:?}",
        h.stopped
    );
    assert!(h.refreshes.is_empty());
    assert_eq!(h.sessions[&n], generation);
    assert_eq!(h.sent, sent, "nothing exported again");
    assert_eq!(h.status(n).description.as_deref(), Some("rack 7"));
}
