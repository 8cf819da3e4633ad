//! One `Rib` (a route reflector) driven by fuzzed operations: sessions up and down
//! (graceful or not), stale timers, UPDATEs from raw bytes and well-formed UPDATEs built
//! from small parameters, local origination, budgeted and full drains, `explain`.
//!
//! Peers: #1 eBGP (accept-all import and export), #2 and #3 iBGP route-reflector clients
//! (ADD-PATH send configured, negotiated per session), #4 iBGP non-client (ADD-PATH
//! send in IPv4). Sessions vary per `peer_up`: ADD-PATH both ways, 4-octet AS, extended
//! messages, families, RFC 8950 next hops, router ID, local addresses.
//!
//! Checked:
//! * nothing panics;
//! * every drained message frames with `Framer`, fits the receiver's maximum length and
//!   parses with treatment Normal under the receiver's side of the session;
//! * no message names the receiver as ORIGINATOR_ID, or our router ID; a CLUSTER_LIST
//!   holds each of our cluster IDs at most once, and past its first entry none;
//! * after a full drain, what each peer has been told (its messages applied in order) is
//!   exactly what the Loc-RIB says it should have: per prefix the paths its ADD-PATH mode
//!   selects (best path only without ADD-PATH), never one whose source is the peer itself
//!   or whose ORIGINATOR_ID names it (the `Audience` exclusions), with the attributes
//!   reflection and the iBGP/eBGP rules give; and every family's End-of-RIB was received;
//! * `explain` lists the best path first;
//! * at the end, with every peer down and every local route withdrawn, nothing remains:
//!   no prefix, path, interned attribute set, outgoing set, group or pending work.
//!
//! Input: two config bytes, then operations (see `run`).
#![no_main]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bgp_wire::attr::AttrFlags;
use bgp_wire::attr::{
    AsPath, AsSegment, AsSegmentType, Community, LargeCommunity, MpReach, MpUnreach, NextHop,
    Origin, PathAttribute, RawAttribute,
};
use bgp_wire::nlri::Nlri;
use bgp_wire::update::{Treatment, Update, UpdateView};
use bgp_wire::{Family, FamilySet, Framer, MessageType, SessionCtx};
use bytes::BytesMut;
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use rib::{
    AddPathMode, Attrs, Audience, GroupId, LocalAddrs, NextHopMode, Outbound, PathStatus,
    PeerConfig, PeerId, PeerKind, Policy, Rib, RibConfig, Session,
};

const LOCAL_AS: u32 = 65000;
const ROUTER_ID: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
const CLUSTER_ID: Ipv4Addr = Ipv4Addr::new(10, 254, 0, 1);
const CLUSTER_ID_3: Ipv4Addr = Ipv4Addr::new(10, 254, 0, 3);
const LOCAL_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const LOCAL_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const LOCAL_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const MAX_OPS: usize = 96;
const MAX_RAW: usize = 600;

fn prefixes() -> [IpNet; 12] {
    static POOL: std::sync::OnceLock<[IpNet; 12]> = std::sync::OnceLock::new();
    *POOL.get_or_init(|| {
        [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.0.0/24",
            "10.2.0.0/16",
            "192.168.0.0/24",
            "192.168.1.0/24",
            "0.0.0.0/0",
            "203.0.113.128/25",
            "2001:db8::/32",
            "2001:db8:1::/48",
            "2001:db8:2::/48",
            "::/0",
        ]
        .map(|s| s.parse().unwrap())
    })
}

fn family_of(p: &IpNet) -> Family {
    match p {
        IpNet::V4(_) => Family::Ipv4Unicast,
        IpNet::V6(_) => Family::Ipv6Unicast,
    }
}

fn peer_rid(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 255, 0, i as u8 + 2)
}

fn v4_nh(b: u8) -> Ipv4Addr {
    [
        Ipv4Addr::new(192, 0, 2, 1),
        Ipv4Addr::new(192, 0, 2, 2),
        Ipv4Addr::new(192, 0, 2, 3),
        Ipv4Addr::new(198, 51, 100, 7),
    ][usize::from(b & 3)]
}

fn v6_nh(b: u8) -> NextHop {
    let global = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, u16::from(b & 3) + 1);
    let link_local =
        (b & 4 != 0).then(|| Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, u16::from(b & 3) + 2));
    NextHop::V6 { global, link_local }
}

/// The fuzzer's bytes as a stream of parameters (zeros once exhausted).
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

/// What the harness knows of one peer.
struct PeerH {
    id: PeerId,
    kind: PeerKind,
    cfg: PeerConfig,
    /// Our side of the current session.
    session: Option<Session>,
    /// The router ID of the last session (what the RIB keeps for the peer).
    last_rid: Ipv4Addr,
    /// The router ID it usually comes up with.
    base_rid: Ipv4Addr,
    /// What the peer has been told since its session came up.
    table: BTreeMap<(IpNet, Option<u32>), Attrs>,
    eor: FamilySet,
}

impl PeerH {
    fn cluster_id(&self, global: Ipv4Addr) -> Ipv4Addr {
        self.cfg.cluster_id.unwrap_or(global)
    }

    /// The peer's side of the session: what it decodes our messages with.
    fn rx_ctx(&self) -> SessionCtx {
        let s = self.session.as_ref().unwrap().ctx;
        SessionCtx {
            add_path_rx: s.add_path_tx,
            add_path_tx: s.add_path_rx,
            ..s
        }
    }

    /// The ADD-PATH send mode in force for `family`.
    fn mode(&self, family: Family) -> Option<AddPathMode> {
        let s = self.session.as_ref()?;
        if s.ctx.add_path_tx.contains(family) {
            self.cfg.add_path(family)
        } else {
            None
        }
    }
}

struct Harness {
    rib: Rib,
    cfg: RibConfig,
    peers: Vec<PeerH>,
    cluster_ids: Vec<Ipv4Addr>,
    originated: Vec<IpNet>,
    unreachable: bool,
}

fn setup(c: u8, d: u8) -> Harness {
    let mut cfg = RibConfig::new(LOCAL_AS, ROUTER_ID);
    cfg.client_to_client = c & 1 == 0;
    cfg.always_compare_med = c & 2 != 0;
    cfg.missing_med_worst = c & 4 != 0;
    cfg.track_best_changes = c & 8 != 0;
    if c & 16 != 0 {
        cfg.cluster_id = Some(CLUSTER_ID);
    }
    let mut rib = Rib::new(cfg.clone());
    let accept = Arc::new(Policy::accept_all());
    let addr = |i: usize| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 2));

    let mut ebgp = PeerConfig::new(addr(0), 65001);
    ebgp.import = Some(accept.clone());
    ebgp.export = Some(accept);
    ebgp.graceful_restart = true;
    ebgp.next_hop = if c & 64 != 0 {
        NextHopMode::Keep
    } else {
        NextHopMode::Auto
    };
    ebgp.max_prefix = Some(rib::MaxPrefix {
        limit: 6,
        warn_only: true,
    });

    let modes = [
        AddPathMode::All,
        AddPathMode::Best(2),
        AddPathMode::Ecmp,
        AddPathMode::Best(1),
    ];
    let mut c1 = PeerConfig::new(addr(1), LOCAL_AS);
    c1.rr_client = true;
    c1.graceful_restart = true;
    c1.add_path_send = [Some(modes[usize::from(c >> 5) & 3]), Some(AddPathMode::All)];
    let mut c2 = c1.clone();
    c2.address = addr(2);
    c2.graceful_restart = false;
    if c & 128 != 0 {
        c2.cluster_id = Some(CLUSTER_ID_3);
    }

    let mut nc = PeerConfig::new(addr(3), LOCAL_AS);
    nc.graceful_restart = true;
    nc.add_path_send = [Some(AddPathMode::Best(2)), None];
    nc.next_hop = match (c >> 6) & 3 {
        1 => NextHopMode::SelfExceptReflected,
        2 => NextHopMode::SelfAll,
        _ => NextHopMode::Auto,
    };

    let mut cluster_ids = vec![cfg.cluster_id()];
    let mut peers = Vec::new();
    for (kind, pc) in [
        (PeerKind::Ebgp, ebgp),
        (PeerKind::Client, c1),
        (PeerKind::Client, c2),
        (PeerKind::NonClient, nc),
    ] {
        if let Some(c) = pc.cluster_id
            && !cluster_ids.contains(&c)
        {
            cluster_ids.push(c);
        }
        let id = rib.add_peer(pc.clone());
        peers.push(PeerH {
            id,
            kind,
            cfg: pc,
            session: None,
            last_rid: Ipv4Addr::UNSPECIFIED,
            base_rid: peer_rid(peers.len()),
            table: BTreeMap::new(),
            eor: FamilySet::EMPTY,
        });
    }
    // Router ID collisions, fixed for the run.
    match d & 3 {
        1 => peers[2].base_rid = peers[1].base_rid,
        2 => peers[3].base_rid = peers[1].base_rid,
        3 => peers[0].base_rid = peers[2].base_rid,
        _ => {}
    }
    Harness {
        rib,
        cfg,
        peers,
        cluster_ids,
        originated: Vec::new(),
        unreachable: false,
    }
}

impl Harness {
    fn peer_up(&mut self, i: usize, v: u8, w: u8) {
        let p = &mut self.peers[i];
        let families = match v & 3 {
            1 => FamilySet::only(Family::Ipv4Unicast),
            2 => FamilySet::only(Family::Ipv6Unicast),
            _ => FamilySet::ALL,
        };
        let mut configured = FamilySet::EMPTY;
        for f in Family::ALL {
            if p.cfg.add_path(f).is_some() {
                configured.insert(f);
            }
        }
        let ctx = SessionCtx {
            four_octet_as: v & 4 == 0 || v & 8 == 0,
            extended_message: v & 16 != 0,
            ibgp: p.kind != PeerKind::Ebgp,
            families,
            add_path_rx: if v & 32 != 0 {
                FamilySet::ALL
            } else {
                FamilySet::EMPTY
            },
            add_path_tx: if v & 64 != 0 {
                configured
            } else {
                FamilySet::EMPTY
            },
            extended_next_hop: if v & 128 != 0 {
                FamilySet::only(Family::Ipv4Unicast)
            } else {
                FamilySet::EMPTY
            },
            ..SessionCtx::default()
        };
        let router_id = match w & 7 {
            // Another peer's router ID: ORIGINATOR_ID exclusion hits two members.
            1 => peer_rid(usize::from(w >> 3) % 4),
            2 => Ipv4Addr::new(10, 255, 1, i as u8 + 2),
            _ => p.base_rid,
        };
        let local = LocalAddrs {
            v4: (w & 0x18 != 0x18).then_some(LOCAL_V4),
            v6: Some(LOCAL_V6),
            link_local: (w & 0x20 != 0).then_some(LOCAL_LL),
        };
        let session = Session {
            ctx,
            router_id,
            local,
        };
        assert!(self.rib.peer_up(p.id, session).is_some());
        p.session = Some(session);
        p.last_rid = router_id;
        p.table.clear();
        p.eor = FamilySet::EMPTY;
    }

    fn peer_down(&mut self, i: usize, graceful: bool) {
        let p = &mut self.peers[i];
        self.rib.peer_down(p.id, graceful);
        p.session = None;
        p.table.clear();
        p.eor = FamilySet::EMPTY;
        assert!(self.rib.group_of(p.id).is_none());
    }

    fn apply(&mut self, i: usize, body: &[u8]) {
        let p = &self.peers[i];
        let ctx = match &p.session {
            Some(s) => s.ctx,
            None => SessionCtx::default(),
        };
        let view = UpdateView::parse(body, &ctx);
        let _ = self.rib.apply_update(p.id, &view);
    }

    /// A well-formed UPDATE from peer `i`, encoded as the peer would.
    fn built(&mut self, i: usize, inp: &mut Input<'_>) {
        let Some(s) = self.peers[i].session else {
            return;
        };
        let tx = SessionCtx {
            add_path_tx: s.ctx.add_path_rx,
            add_path_rx: s.ctx.add_path_tx,
            ..s.ctx
        };
        let pool = prefixes();
        let a = inp.byte();
        let b = inp.byte();
        let n = 1 + usize::from(a & 1);
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for k in 0..n {
            let x = inp.byte();
            let prefix = pool[usize::from(x) % pool.len()];
            let path_id = Some(u32::from(x >> 4) % 3 + 1);
            let _ = k;
            match prefix {
                IpNet::V4(_) => v4.push(Nlri { path_id, prefix }),
                IpNet::V6(_) => v6.push(Nlri { path_id, prefix }),
            }
        }
        let mut attrs = Vec::new();
        attrs.push(PathAttribute::Origin(Origin((b & 3) % 3)));
        let asns: &[u32] = match (b >> 2) & 7 {
            0 => &[],
            1 => &[65001],
            2 => &[65001, 65002],
            3 => &[65002],
            4 => &[65001, 65000],
            5 => &[4_200_000_000, 65003],
            6 => &[65010, 65011, 65012],
            _ => &[65001, 65001, 65001],
        };
        let mut as_path = AsPath::from_sequence(asns.iter().copied());
        if (b >> 5) & 7 == 7 {
            // A leading confederation sequence (legal only inside a confederation).
            as_path.segments.insert(
                0,
                AsSegment {
                    ty: AsSegmentType(3),
                    asns: vec![64512],
                },
            );
        }
        attrs.push(PathAttribute::AsPath(as_path));
        let c = inp.byte();
        let nh = inp.byte();
        if !v4.is_empty() && !(s.ctx.extended_next_hop.contains(Family::Ipv4Unicast) && nh & 8 != 0)
        {
            attrs.push(PathAttribute::NextHop(v4_nh(nh)));
        }
        if c & 1 != 0 {
            attrs.push(PathAttribute::MultiExitDisc(u32::from(c >> 1 & 3) * 10));
        }
        if c & 8 != 0 {
            attrs.push(PathAttribute::LocalPref(
                [50, 100, 200, 100][usize::from(c >> 4 & 3)],
            ));
        }
        let d = inp.byte();
        let orig = match d & 7 {
            1 => Some(ROUTER_ID),
            2 => Some(peer_rid(1)),
            3 => Some(peer_rid(2)),
            4 => Some(peer_rid(3)),
            5 => Some(Ipv4Addr::new(10, 9, 9, 9)),
            _ => None,
        };
        if let Some(o) = orig {
            attrs.push(PathAttribute::OriginatorId(o));
        }
        let cl: Vec<Ipv4Addr> = match (d >> 3) & 7 {
            1 => vec![CLUSTER_ID],
            2 => vec![ROUTER_ID],
            3 => vec![Ipv4Addr::new(10, 9, 9, 9)],
            4 => vec![Ipv4Addr::new(10, 9, 9, 9), Ipv4Addr::new(10, 9, 9, 8)],
            5 => vec![Ipv4Addr::new(10, 9, 9, 9), CLUSTER_ID],
            6 => vec![CLUSTER_ID_3],
            _ => vec![],
        };
        if !cl.is_empty() {
            attrs.push(PathAttribute::ClusterList(cl));
        }
        let e = inp.byte();
        let mut comms = Vec::new();
        for (bit, cm) in [
            Community::NO_EXPORT,
            Community::NO_ADVERTISE,
            Community::NO_EXPORT_SUBCONFED,
            Community::new(65000, 1),
        ]
        .into_iter()
        .enumerate()
        {
            if e & (1 << bit) != 0 {
                comms.push(cm);
            }
        }
        if !comms.is_empty() {
            attrs.push(PathAttribute::Communities(comms));
        }
        if e & 16 != 0 {
            attrs.push(PathAttribute::LargeCommunities(vec![LargeCommunity {
                global: 65000,
                local1: 1,
                local2: u32::from(e >> 5),
            }]));
        }
        if e & 32 != 0 {
            attrs.push(PathAttribute::Unknown(RawAttribute {
                flags: AttrFlags(AttrFlags::OPTIONAL | AttrFlags::TRANSITIVE),
                ty: bgp_wire::attr::AttrType(99),
                value: bytes::Bytes::from_static(&[1, 2, 3]),
            }));
        }
        if e & 64 != 0 {
            attrs.push(PathAttribute::OnlyToCustomer(65001));
        }
        let mut mp_v4 = Vec::new();
        if !v4.is_empty() && !attrs.iter().any(|a| matches!(a, PathAttribute::NextHop(_))) {
            mp_v4 = std::mem::take(&mut v4);
        }
        if !mp_v4.is_empty() {
            attrs.push(PathAttribute::MpReachNlri(MpReach {
                family: Family::Ipv4Unicast,
                next_hop: v6_nh(nh >> 4),
                nlri: mp_v4,
            }));
        } else if !v6.is_empty() {
            attrs.push(PathAttribute::MpReachNlri(MpReach {
                family: Family::Ipv6Unicast,
                next_hop: v6_nh(nh >> 4),
                nlri: std::mem::take(&mut v6),
            }));
        }
        let u = Update {
            withdrawn: vec![],
            attributes: attrs,
            nlri: v4,
        };
        self.send_built(i, &u, &tx);
    }

    fn send_built(&mut self, i: usize, u: &Update, tx: &SessionCtx) {
        let mut buf = BytesMut::new();
        if u.encode(tx, &mut buf).is_ok() {
            let body = buf.split_off(bgp_wire::header::HEADER_LEN);
            self.apply(i, &body);
        }
    }

    fn built_withdraw(&mut self, i: usize, x: u8, y: u8) {
        let Some(s) = self.peers[i].session else {
            return;
        };
        let tx = SessionCtx {
            add_path_tx: s.ctx.add_path_rx,
            add_path_rx: s.ctx.add_path_tx,
            ..s.ctx
        };
        let pool = prefixes();
        let prefix = pool[usize::from(x) % pool.len()];
        let nlri = vec![Nlri {
            path_id: Some(u32::from(y) % 3 + 1),
            prefix,
        }];
        let u = match prefix {
            IpNet::V4(_) => Update {
                withdrawn: nlri,
                ..Update::default()
            },
            IpNet::V6(_) => Update {
                attributes: vec![PathAttribute::MpUnreachNlri(MpUnreach {
                    family: Family::Ipv6Unicast,
                    withdrawn: nlri,
                })],
                ..Update::default()
            },
        };
        self.send_built(i, &u, &tx);
    }

    fn built_eor(&mut self, i: usize, v6: bool) {
        let Some(s) = self.peers[i].session else {
            return;
        };
        let f = if v6 {
            Family::Ipv6Unicast
        } else {
            Family::Ipv4Unicast
        };
        self.send_built(i, &Update::end_of_rib(f), &s.ctx);
    }

    fn originate(&mut self, x: u8, y: u8) {
        let pool = prefixes();
        let prefix = pool[usize::from(x) % pool.len()];
        let mut a = Attrs::default();
        a.next_hop = match (y & 3, prefix) {
            (1, IpNet::V4(_)) => Some(NextHop::V4(v4_nh(y >> 2))),
            (1, IpNet::V6(_)) => Some(v6_nh(y >> 2)),
            _ => None,
        };
        if y & 4 != 0 {
            a.med = Some(5);
        }
        if y & 8 != 0 {
            a.local_pref = Some(300);
        }
        if y & 16 != 0 {
            a.communities = vec![Community::NO_EXPORT];
        }
        if y & 32 != 0 {
            a.as_path = AsPath::from_sequence([65100]);
        }
        self.rib.originate(prefix, a);
        if !self.originated.contains(&prefix) {
            self.originated.push(prefix);
        }
    }

    fn withdraw_local(&mut self, x: u8) {
        let pool = prefixes();
        let prefix = pool[usize::from(x) % pool.len()];
        self.rib.withdraw_local(prefix);
    }

    /// Drains each pending group once with `budget`, or until nothing is pending.
    fn drain(&mut self, budget: usize, all: bool) {
        loop {
            let groups = self.rib.pending_groups();
            if groups.is_empty() {
                return;
            }
            for g in groups {
                let outs = self.rib.drain_group(g, budget);
                for o in &outs {
                    self.deliver(g, o);
                }
            }
            if !all {
                return;
            }
        }
    }

    /// Hands one drained message to the members its audience includes, checking it.
    fn deliver(&mut self, g: GroupId, o: &Outbound) {
        let members = self.rib.group_members(g);
        if trace() {
            eprintln!("{g:?} {members:?} {:?} {:02x?}", o.audience, &o.bytes[..]);
        }
        assert!(!members.is_empty(), "a group with pending work has members");
        match &o.audience {
            Audience::Only(p) => assert!(members.contains(p), "Only() a non-member"),
            Audience::AllExcept(v) => assert!(v.windows(2).all(|w| w[0] < w[1])),
            Audience::All => {}
            Audience::Among { members: m, except } => {
                assert!(m.windows(2).all(|w| w[0] < w[1]));
                assert!(m.iter().all(|p| members.contains(p)), "Among a non-member");
                assert!(except.iter().all(|p| m.binary_search(p).is_ok()));
                assert!(except.len() < m.len(), "a message for nobody");
            }
        }
        for m in members {
            if !o.audience.includes(m) {
                continue;
            }
            let i = self
                .peers
                .iter()
                .position(|p| p.id == m)
                .expect("known peer");
            assert_eq!(self.rib.group_of(m), Some(g));
            let rctx = self.peers[i].rx_ctx();
            let mut framer = Framer::new();
            framer.set_extended_message(rctx.extended_message);
            let mut n = 0;
            let mut total = 0;
            for f in framer.frames(o.bytes.clone()) {
                let f = f.expect("drained bytes frame");
                n += 1;
                total += f.bytes.len();
                assert_eq!(f.ty, MessageType::UPDATE);
                assert!(f.bytes.len() <= rctx.max_message_len(), "message too long");
                let view = UpdateView::parse(f.body(), &rctx);
                assert_eq!(
                    view.treatment(),
                    Treatment::Normal,
                    "to peer {i}: {:?}\n{:02x?}",
                    view.issues(),
                    f.body()
                );
                self.receive(i, &view);
            }
            assert!(n > 0 && total == o.bytes.len(), "whole messages only");
        }
    }

    fn receive(&mut self, i: usize, view: &UpdateView<'_>) {
        let our_cluster_ids = self.cluster_ids.clone();
        let p = &mut self.peers[i];
        if let Some(f) = view.end_of_rib() {
            p.eor.insert(f);
            return;
        }
        for w in view.withdrawals() {
            p.table.remove(&(w.prefix, w.path_id));
        }
        let base = Attrs::from_view(view);
        if view.nlri().next().is_some() || view.mp_reach().is_some() {
            if let Some(o) = base.originator_id {
                assert_ne!(o, p.session.unwrap().router_id, "sent to its originator");
                assert_ne!(o, ROUTER_ID, "our router ID as ORIGINATOR_ID");
            }
            // Each of our cluster IDs at most once, and ours in front: a reflector with
            // several cluster IDs reflects from one of its clusters into another as one
            // reflector per cluster (the receiver's cluster ID, then the sender's).
            let mut ours = 0;
            for c in &our_cluster_ids {
                let k = base.cluster_list.iter().filter(|x| *x == c).count();
                assert!(k <= 1, "cluster ID {c} twice in {:?}", base.cluster_list);
                ours += k;
            }
            assert!(
                base.cluster_list[..ours]
                    .iter()
                    .all(|c| our_cluster_ids.contains(c)),
                "our cluster IDs not in front: {:?}",
                base.cluster_list
            );
        }
        let mut add = |n: Nlri, nh: Option<NextHop>| {
            let mut a = base.clone();
            a.next_hop = nh;
            p.table.insert((n.prefix, n.path_id), a);
        };
        let nh = view.next_hop().map(NextHop::V4);
        for n in view.nlri() {
            add(n, nh);
        }
        if let Some(mp) = view.mp_reach() {
            let nh = mp.next_hop();
            for n in mp.nlri() {
                add(n, nh);
            }
        }
    }

    /// The cluster ID of the source peer's cluster (ours, or its group's own).
    fn src_cluster(&self, peer: PeerId) -> Option<Ipv4Addr> {
        self.peers
            .iter()
            .find(|p| p.id == peer)
            .map(|p| p.cluster_id(self.cfg.cluster_id()))
    }

    fn src_kind(&self, peer: PeerId) -> (PeerKind, Ipv4Addr) {
        if peer == PeerId::LOCAL {
            return (PeerKind::Local, ROUTER_ID);
        }
        let p = self
            .peers
            .iter()
            .find(|p| p.id == peer)
            .expect("known source");
        (p.kind, p.last_rid)
    }

    /// The attributes peer `i` is to be sent a path with, as RFC 4271 §5.1 and RFC 4456 §8
    /// say; `None` when it is not to be sent (to any member of the peer's group).
    fn export(&self, i: usize, src: PeerId, a: &Attrs, family: Family) -> Option<Attrs> {
        let p = &self.peers[i];
        let s = p.session.as_ref().unwrap();
        if a.has_community(Community::NO_ADVERTISE) {
            return None;
        }
        let to_ebgp = p.kind == PeerKind::Ebgp;
        let (sk, srid) = self.src_kind(src);
        let reflect = match (sk, p.kind) {
            (_, PeerKind::Ebgp) => {
                if a.has_community(Community::NO_EXPORT)
                    || a.has_community(Community::NO_EXPORT_SUBCONFED)
                {
                    return None;
                }
                false
            }
            (PeerKind::Local | PeerKind::Ebgp, _) => false,
            // Reflection between clients is off only inside one cluster (its clients
            // fully meshed); a route from another of our clusters still enters.
            (PeerKind::Client, PeerKind::Client) => {
                let to_client = p.cfg.client_to_client.unwrap_or(self.cfg.client_to_client);
                if !to_client && self.src_cluster(src) == Some(p.cluster_id(self.cfg.cluster_id()))
                {
                    return None;
                }
                true
            }
            (PeerKind::Client, PeerKind::NonClient) | (PeerKind::NonClient, PeerKind::Client) => {
                true
            }
            _ => return None,
        };
        // One reflector per cluster: the route leaves the source client's cluster and
        // enters the receiving client's, when that is another; each passage counts.
        let leaves = if reflect && sk == PeerKind::Client {
            self.src_cluster(src)
        } else {
            None
        };
        let own = p.cluster_id(self.cfg.cluster_id());
        let enters = (reflect && p.kind == PeerKind::Client && leaves != Some(own)).then_some(own);
        if [leaves, enters]
            .iter()
            .flatten()
            .any(|c| a.cluster_list.contains(c))
        {
            return None;
        }
        let mut out = a.clone();
        if to_ebgp {
            out.local_pref = None;
            out.originator_id = None;
            out.cluster_list.clear();
            if sk != PeerKind::Local {
                out.med = None;
            }
            // RFC 5065 §5.3: no confederation segments outside the confederation.
            out.as_path.segments.retain(|s| !matches!(s.ty.0, 3 | 4));
            out.as_path.prepend(LOCAL_AS, 1);
        } else {
            out.local_pref = Some(a.local_pref.unwrap_or(self.cfg.default_local_pref));
            if reflect {
                out.originator_id = Some(a.originator_id.unwrap_or(srid));
                for c in [leaves, enters].into_iter().flatten() {
                    out.cluster_list.insert(0, c);
                }
            }
        }
        let set_self = a.next_hop.is_none()
            || match p.cfg.next_hop {
                NextHopMode::Keep => false,
                NextHopMode::Auto => to_ebgp,
                NextHopMode::SelfExceptReflected => !reflect,
                NextHopMode::SelfAll => true,
            };
        if set_self {
            let v6 = s.local.v6.map(|global| NextHop::V6 {
                global,
                link_local: s.local.link_local,
            });
            out.next_hop = Some(match family {
                Family::Ipv4Unicast => match s.local.v4 {
                    Some(v4) => NextHop::V4(v4),
                    None if s.ctx.extended_next_hop.contains(family) => v6?,
                    None => return None,
                },
                Family::Ipv6Unicast => v6?,
            });
        }
        match (family, out.next_hop?) {
            (Family::Ipv4Unicast, NextHop::V4(_)) | (Family::Ipv6Unicast, NextHop::V6 { .. }) => {}
            (Family::Ipv4Unicast, NextHop::V6 { .. })
                if s.ctx.extended_next_hop.contains(family) => {}
            _ => return None,
        }
        Some(out)
    }

    /// After a full drain: each up peer's table is exactly what the Loc-RIB calls for.
    fn check_tables(&self) {
        assert!(self.rib.pending_groups().is_empty());
        let explained: Vec<rib::Explanation> = self
            .rib
            .loc_rib()
            .filter_map(|(p, _)| self.rib.explain(&p))
            .collect();
        for (i, p) in self.peers.iter().enumerate() {
            let Some(s) = p.session else { continue };
            assert!(
                self.rib.group_of(p.id).is_some(),
                "an up peer is in a group"
            );
            assert_eq!(
                p.eor, s.ctx.families,
                "peer {i} got End-of-RIB for {:?}, not every family",
                p.eor
            );
            let mut want: BTreeMap<(IpNet, Option<u32>), (PeerId, Attrs)> = BTreeMap::new();
            for x in &explained {
                let prefix = x.prefix;
                let family = family_of(&prefix);
                if !s.ctx.families.contains(family) {
                    continue;
                }
                let mode = p.mode(family);
                let eligible: Vec<_> = x
                    .paths
                    .iter()
                    .filter(|r| !matches!(r.status, PathStatus::Ineligible(_)))
                    .collect();
                let take = match mode {
                    None => 1,
                    Some(AddPathMode::Best(n)) => usize::from(n),
                    Some(AddPathMode::All | AddPathMode::Ecmp) => eligible.len(),
                };
                for r in eligible.iter().take(take) {
                    if mode == Some(AddPathMode::Ecmp) && !r.ecmp {
                        continue;
                    }
                    let Some(out) = self.export(i, r.peer, &r.attrs.to_attrs(), family) else {
                        continue;
                    };
                    if r.peer == p.id || out.originator_id == Some(s.router_id) {
                        continue;
                    }
                    let key = (prefix, mode.map(|_| r.tx_path_id));
                    want.insert(key, (r.peer, out));
                }
            }
            let have: Vec<_> = p.table.keys().collect();
            let wanted: Vec<_> = want.keys().collect();
            assert_eq!(
                have,
                wanted,
                "peer {i} (mode v4 {:?}) has the wrong routes; wanted from {:?}\nexplain: {:#?}",
                p.mode(Family::Ipv4Unicast),
                want.values().map(|v| v.0).collect::<Vec<_>>(),
                explained
                    .iter()
                    .map(|e| (
                        e.prefix,
                        e.paths
                            .iter()
                            .map(|r| (r.peer, r.path_id, r.tx_path_id, r.status))
                            .collect::<Vec<_>>()
                    ))
                    .collect::<Vec<_>>()
            );
            for (k, (src, w)) in &want {
                let h = &p.table[k];
                assert_eq!(
                    h, w,
                    "peer {i} got {k:?} (from {src:?}) with other attributes"
                );
            }
        }
    }

    fn explain(&self, x: u8) {
        let pool = prefixes();
        let prefix = pool[usize::from(x) % pool.len()];
        let Some(e) = self.rib.explain(&prefix) else {
            assert!(self.rib.best(&prefix).is_none());
            return;
        };
        assert_eq!(e.prefix, prefix);
        let mut tx: Vec<u32> = e.paths.iter().map(|r| r.tx_path_id).collect();
        tx.sort_unstable();
        tx.dedup();
        assert_eq!(tx.len(), e.paths.len(), "tx path ids unique");
        let best = self.rib.best(&prefix);
        match e.paths.first() {
            Some(r) if !matches!(r.status, PathStatus::Ineligible(_)) => {
                assert_eq!(
                    r.status,
                    PathStatus::Best,
                    "the first path is the best: {e:#?}"
                );
                let b = best.expect("a best path");
                assert_eq!(b.peer, r.peer);
            }
            _ => assert!(best.is_none()),
        }
        let mut seen_ineligible = false;
        for r in &e.paths {
            let inel = matches!(r.status, PathStatus::Ineligible(_));
            assert!(
                !seen_ineligible || inel,
                "eligible paths come first: {e:#?}"
            );
            seen_ineligible |= inel;
        }
    }

    fn poll_fib(&mut self, n: usize) {
        for _ in 0..n {
            let Some(c) = self.rib.poll_best_change() else {
                return;
            };
            let best = self.rib.best(&c.prefix);
            match best {
                None => assert!(c.next_hops.is_empty() && !c.local),
                Some(b) => {
                    assert_eq!(c.local, b.peer == PeerId::LOCAL);
                    assert_eq!(c.local, c.next_hops.is_empty(), "{c:?}");
                }
            }
        }
    }

    fn toggle_resolver(&mut self) {
        self.unreachable = !self.unreachable;
        if self.unreachable {
            let bad = IpAddr::V4(v4_nh(2));
            self.rib
                .set_resolver(Box::new(move |nh: IpAddr| (nh != bad).then_some(0)));
        } else {
            self.rib.set_resolver(Box::new(rib::AllReachable));
        }
    }

    fn teardown(&mut self) {
        self.drain(usize::MAX, true);
        self.check_tables();
        for i in 0..self.peers.len() {
            self.peer_down(i, false);
        }
        for p in std::mem::take(&mut self.originated) {
            self.rib.withdraw_local(p);
        }
        self.drain(usize::MAX, true);
        self.poll_fib(usize::MAX);
        let s = self.rib.stats();
        assert_eq!(
            (
                s.prefixes,
                s.paths,
                s.attr_sets,
                s.out_attr_sets,
                s.adj_out_paths,
                s.groups,
                s.pending
            ),
            (0, 0, 0, 0, 0, 0, 0),
            "{s:?}"
        );
        assert!(self.rib.loc_rib().next().is_none());
    }
}

fn trace() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("RIB_FUZZ_TRACE").is_some())
}

fn run(data: &[u8]) {
    let mut inp = Input(data);
    let (c, d) = (inp.byte(), inp.byte());
    let mut h = setup(c, d);
    for i in 0..h.peers.len() {
        h.peer_up(i, 0, 0);
    }
    for _ in 0..MAX_OPS {
        if inp.0.is_empty() {
            break;
        }
        let op = inp.byte();
        let i = usize::from(op >> 4) % 4;
        if trace() {
            eprintln!("op {} peer {i} ({op:#04x})", op & 15);
        }
        match op & 15 {
            0 => {
                let (v, w) = (inp.byte(), inp.byte());
                h.peer_up(i, v, w);
            }
            1 => h.peer_down(i, op & 64 != 0),
            2 => h.rib.stale_timer_expired(h.peers[i].id),
            3 => {
                let n = usize::from(inp.byte()) * 4 % MAX_RAW;
                let body = inp.take(n).to_vec();
                h.apply(i, &body);
            }
            4..=7 => h.built(i, &mut inp),
            8 => {
                let (x, y) = (inp.byte(), inp.byte());
                h.built_withdraw(i, x, y);
            }
            9 => h.built_eor(i, op & 64 != 0),
            10 => {
                let (x, y) = (inp.byte(), inp.byte());
                h.originate(x, y);
            }
            11 => {
                let x = inp.byte();
                h.withdraw_local(x);
            }
            12 => {
                let b = usize::from(inp.byte() % 8) + 1;
                h.drain(b, false);
            }
            13 => {
                h.drain(usize::MAX, true);
                h.check_tables();
            }
            14 => {
                let x = inp.byte();
                h.explain(x);
            }
            _ => {
                if op & 0x40 != 0 {
                    h.toggle_resolver();
                } else {
                    h.poll_fib(4);
                }
            }
        }
    }
    h.teardown();
}

fuzz_target!(|data: &[u8]| {
    run(data);
});
