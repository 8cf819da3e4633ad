//! The decision process (RFC 4271 §9.1.2.2, RFC 4456 §9): one test per criterion, each
//! checking the best path and the reason the other lost; plus ADD-PATH, policy, max-prefix,
//! graceful restart, RFC 7606 treatments, splitting and coalescing.

mod common;

use std::net::IpAddr;
use std::sync::Arc;

use bgp_wire::attr::{AttrType as T, Community, Origin, PathAttribute as A};
use bgp_wire::nlri::Nlri;
use bgp_wire::update::{Treatment, UpdateView};
use bgp_wire::{ErrorCode, Family, FamilySet, SessionCtx};
use common::*;
use rib::policy::{Match, Modify, PrefixMatch, Rule, Verdict};
use rib::{
    AddPathMode, Criterion, Ineligible, MaxPrefix, PathStatus, PeerConfig, PeerId, Policy, Rib,
    RibConfig, Signal,
};

const P: &str = "198.51.100.0/24";

/// Two clients each announce P with their attributes; returns the RIB and the peers.
fn duel(a: Vec<A>, b: Vec<A>) -> (Rib, PeerId, PeerId) {
    let mut rib = rr();
    let pa = client(&mut rib, 2);
    let pb = client(&mut rib, 3);
    let ctx = ibgp_ctx();
    let _ = apply(&mut rib, pa, &ctx, &announce(&[P], a, &ctx));
    let _ = apply(&mut rib, pb, &ctx, &announce(&[P], b, &ctx));
    (rib, pa, pb)
}

fn verdict(rib: &Rib) -> Vec<(PeerId, PathStatus)> {
    rib.explain(&net(P))
        .unwrap()
        .paths
        .iter()
        .map(|p| (p.peer, p.status))
        .collect()
}

fn with(mut v: Vec<A>, extra: A) -> Vec<A> {
    v.push(extra);
    v
}

#[test]
fn test_local_pref() {
    let (rib, a, b) = duel(
        with(base("192.0.2.1", &[]), A::LocalPref(100)),
        with(base("192.0.2.2", &[]), A::LocalPref(200)),
    );
    assert_eq!(
        verdict(&rib),
        [
            (b, PathStatus::Best),
            (a, PathStatus::Lost(Criterion::LocalPref))
        ]
    );
}

#[test]
fn test_as_path_length() {
    let (rib, a, b) = duel(
        base("192.0.2.1", &[65001, 65002]),
        base("192.0.2.2", &[65003]),
    );
    assert_eq!(
        verdict(&rib),
        [
            (b, PathStatus::Best),
            (a, PathStatus::Lost(Criterion::AsPathLength))
        ]
    );
}

#[test]
fn test_origin() {
    let mut inc = base("192.0.2.1", &[]);
    inc[0] = A::Origin(Origin::INCOMPLETE);
    let (rib, a, b) = duel(inc, base("192.0.2.2", &[]));
    assert_eq!(
        verdict(&rib),
        [
            (b, PathStatus::Best),
            (a, PathStatus::Lost(Criterion::Origin))
        ]
    );
}

#[test]
fn test_med_same_neighbour_as_only() {
    let (rib, a, b) = duel(
        with(base("192.0.2.1", &[65001]), A::MultiExitDisc(50)),
        with(base("192.0.2.2", &[65001]), A::MultiExitDisc(10)),
    );
    assert_eq!(
        verdict(&rib),
        [(b, PathStatus::Best), (a, PathStatus::Lost(Criterion::Med))]
    );
    // Different neighbour ASes: MED is not compared, the router id decides (a is lower).
    let (rib, a, b) = duel(
        with(base("192.0.2.1", &[65001]), A::MultiExitDisc(50)),
        with(base("192.0.2.2", &[65002]), A::MultiExitDisc(10)),
    );
    assert_eq!(
        verdict(&rib),
        [
            (a, PathStatus::Best),
            (b, PathStatus::Lost(Criterion::RouterId))
        ]
    );
}

#[test]
fn test_always_compare_med() {
    let mut cfg = RibConfig::new(LOCAL_AS, RR_ID);
    cfg.always_compare_med = true;
    let mut rib = Rib::new(cfg);
    let a = client(&mut rib, 2);
    let b = client(&mut rib, 3);
    let ctx = ibgp_ctx();
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce(
            &[P],
            with(base("192.0.2.1", &[65001]), A::MultiExitDisc(50)),
            &ctx,
        ),
    );
    let _ = apply(
        &mut rib,
        b,
        &ctx,
        &announce(
            &[P],
            with(base("192.0.2.2", &[65002]), A::MultiExitDisc(10)),
            &ctx,
        ),
    );
    assert_eq!(
        verdict(&rib),
        [(b, PathStatus::Best), (a, PathStatus::Lost(Criterion::Med))]
    );
}

#[test]
fn test_med_is_order_independent() {
    // The classic non-transitive trio: x (AS1, MED 10), y (AS2, MED 0), z (AS1, MED 5).
    let paths = [
        (2u8, with(base("192.0.2.1", &[1]), A::MultiExitDisc(10))),
        (3u8, with(base("192.0.2.2", &[2]), A::MultiExitDisc(0))),
        (4u8, with(base("192.0.2.3", &[1]), A::MultiExitDisc(5))),
    ];
    let mut bests = Vec::new();
    for order in [
        [0, 1, 2],
        [2, 1, 0],
        [1, 0, 2],
        [1, 2, 0],
        [0, 2, 1],
        [2, 0, 1],
    ] {
        let mut rib = rr();
        let peers: Vec<PeerId> = paths.iter().map(|(n, _)| client(&mut rib, *n)).collect();
        let ctx = ibgp_ctx();
        for i in order {
            let _ = apply(
                &mut rib,
                peers[i],
                &ctx,
                &announce(&[P], paths[i].1.clone(), &ctx),
            );
        }
        bests.push(verdict(&rib));
    }
    assert!(bests.windows(2).all(|w| w[0] == w[1]), "{bests:?}");
}

#[test]
fn test_ebgp_over_ibgp_and_igp_cost() {
    let mut rib = rr();
    let c = client(&mut rib, 2);
    let mut ecfg = PeerConfig::new(IpAddr::V4(v4("0.0.0.0")), 65001);
    ecfg.import = Some(Arc::new(Policy::accept_all()));
    let e = up(&mut rib, ecfg, 5, ebgp_ctx());
    let ctx = ibgp_ctx();
    let _ = apply(
        &mut rib,
        c,
        &ctx,
        &announce(&[P], base("192.0.2.1", &[65001]), &ctx),
    );
    let ectx = ebgp_ctx();
    let _ = apply(
        &mut rib,
        e,
        &ectx,
        &announce(&[P], base("192.0.2.9", &[65001]), &ectx),
    );
    assert_eq!(
        verdict(&rib),
        [
            (e, PathStatus::Best),
            (c, PathStatus::Lost(Criterion::PeerType))
        ]
    );

    let (mut rib, a, b) = duel(base("192.0.2.1", &[]), base("192.0.2.2", &[]));
    rib.set_resolver(Box::new(|nh: IpAddr| {
        Some(if nh == IpAddr::V4(v4("192.0.2.1")) {
            20
        } else {
            10
        })
    }));
    assert_eq!(
        verdict(&rib),
        [
            (b, PathStatus::Best),
            (a, PathStatus::Lost(Criterion::IgpCost))
        ]
    );
    rib.set_resolver(Box::new(|nh: IpAddr| {
        (nh != IpAddr::V4(v4("192.0.2.2"))).then_some(10)
    }));
    assert_eq!(
        verdict(&rib),
        [
            (a, PathStatus::Best),
            (b, PathStatus::Ineligible(Ineligible::NextHopUnreachable))
        ]
    );
}

#[test]
fn test_originator_id_stands_for_router_id_then_cluster_list() {
    // b's router id is higher, but its ORIGINATOR_ID is lower (RFC 4456 §9).
    let (rib, a, b) = duel(
        base("192.0.2.1", &[]),
        with(base("192.0.2.2", &[]), A::OriginatorId(v4("1.1.1.1"))),
    );
    assert_eq!(
        verdict(&rib),
        [
            (b, PathStatus::Best),
            (a, PathStatus::Lost(Criterion::RouterId))
        ]
    );
    let same = A::OriginatorId(v4("1.1.1.1"));
    let (rib, a, b) = duel(
        with(
            with(base("192.0.2.1", &[]), same.clone()),
            A::ClusterList(vec![v4("9.9.9.9"), v4("8.8.8.8")]),
        ),
        with(
            with(base("192.0.2.2", &[]), same),
            A::ClusterList(vec![v4("9.9.9.9")]),
        ),
    );
    assert_eq!(
        verdict(&rib),
        [
            (b, PathStatus::Best),
            (a, PathStatus::Lost(Criterion::ClusterListLength))
        ]
    );
    let o = A::OriginatorId(v4("1.1.1.1"));
    let (rib, a, b) = duel(
        with(base("192.0.2.1", &[]), o.clone()),
        with(base("192.0.2.2", &[]), o),
    );
    assert_eq!(
        verdict(&rib),
        [
            (a, PathStatus::Best),
            (b, PathStatus::Lost(Criterion::PeerAddress))
        ]
    );
}

fn add_path_ctx() -> SessionCtx {
    SessionCtx {
        ibgp: true,
        add_path_rx: FamilySet::only(Family::Ipv4Unicast),
        add_path_tx: FamilySet::only(Family::Ipv4Unicast),
        ..SessionCtx::default()
    }
}

fn add_path_peer(rib: &mut Rib, n: u8, mode: AddPathMode) -> PeerId {
    let mut cfg = PeerConfig::new(IpAddr::V4(v4("0.0.0.0")), LOCAL_AS);
    cfg.rr_client = true;
    cfg.add_path_send = [Some(mode), None];
    up(rib, cfg, n, add_path_ctx())
}

#[test]
fn test_add_path_modes_and_stable_ids() {
    let mut rib = rr();
    let srcs: Vec<PeerId> = (2..6).map(|n| client(&mut rib, n)).collect();
    let all = add_path_peer(&mut rib, 10, AddPathMode::All);
    let best2 = add_path_peer(&mut rib, 11, AddPathMode::Best(2));
    let ecmp = add_path_peer(&mut rib, 12, AddPathMode::Ecmp);
    drain(&mut rib);
    let ctx = ibgp_ctx();
    // Two equal through MED (lp 200), one lp 200 with worse MED same AS, one lp 100.
    let sets = [
        with(
            with(base("192.0.2.1", &[65001]), A::LocalPref(200)),
            A::MultiExitDisc(0),
        ),
        with(
            with(base("192.0.2.2", &[65001]), A::LocalPref(200)),
            A::MultiExitDisc(0),
        ),
        with(
            with(base("192.0.2.3", &[65001]), A::LocalPref(200)),
            A::MultiExitDisc(9),
        ),
        with(base("192.0.2.4", &[65001]), A::LocalPref(100)),
    ];
    for (s, a) in srcs.iter().zip(sets) {
        let _ = apply(&mut rib, *s, &ctx, &announce(&[P], a, &ctx));
    }
    let outs = drain(&mut rib);
    let rx = add_path_ctx();
    let t_all = table(&received(
        &rib,
        all,
        &outs,
        &SessionCtx {
            add_path_rx: rx.add_path_tx,
            ..rx
        },
    ));
    assert_eq!(t_all.len(), 4);
    let t_best2 = table(&received(&rib, best2, &outs, &rx));
    let nh = |t: &std::collections::BTreeMap<Nlri, Vec<A>>| -> Vec<A> {
        t.values()
            .map(|a| attr(a, T::NEXT_HOP).unwrap().clone())
            .collect()
    };
    assert_eq!(
        nh(&t_best2),
        [A::NextHop(v4("192.0.2.1")), A::NextHop(v4("192.0.2.2"))]
    );
    let t_ecmp = table(&received(&rib, ecmp, &outs, &rx));
    assert_eq!(
        nh(&t_ecmp),
        [A::NextHop(v4("192.0.2.1")), A::NextHop(v4("192.0.2.2"))]
    );
    let ids_before: Vec<Nlri> = t_all.keys().copied().collect();
    // The best path goes: the others keep their ids, and only the gone one is withdrawn.
    let _ = apply(&mut rib, srcs[0], &ctx, &withdraw(&[P], &ctx));
    let outs2 = drain(&mut rib);
    let mut upd = received(&rib, all, &outs, &rx);
    let more = received(&rib, all, &outs2, &rx);
    assert!(
        more.iter().all(|u| u.nlri.is_empty()),
        "no re-announcement under new ids: {more:?}"
    );
    upd.extend(more);
    let ids_after: Vec<Nlri> = table(&upd).keys().copied().collect();
    assert_eq!(ids_after, ids_before[1..]);
    // best-2 now gets the MED-9 path (next in decision order) as a new path.
    let t_best2 = table(
        &[
            received(&rib, best2, &outs, &rx),
            received(&rib, best2, &outs2, &rx),
        ]
        .concat(),
    );
    assert_eq!(
        nh(&t_best2),
        [A::NextHop(v4("192.0.2.2")), A::NextHop(v4("192.0.2.3"))]
    );
}

#[test]
fn test_add_path_receive_keys_by_path_id() {
    let mut rib = rr();
    let src = up(
        &mut rib,
        {
            let mut c = PeerConfig::new(IpAddr::V4(v4("0.0.0.0")), LOCAL_AS);
            c.rr_client = true;
            c
        },
        2,
        add_path_ctx(),
    );
    let rx = add_path_ctx();
    let u = bgp_wire::update::Update {
        withdrawn: vec![],
        attributes: base("192.0.2.1", &[]),
        nlri: vec![Nlri::with_path_id(net(P), 1), Nlri::with_path_id(net(P), 2)],
    };
    let mut b = bytes::BytesMut::new();
    u.encode(&tx(&rx), &mut b).unwrap();
    let _ = apply(&mut rib, src, &rx, &b.freeze());
    assert_eq!(rib.adj_rib_in(src).len(), 2);
    assert_eq!(rib.explain(&net(P)).unwrap().paths.len(), 2);
    assert_eq!(verdict(&rib)[1].1, PathStatus::Lost(Criterion::PathId));
}

#[test]
fn test_import_policy_prefix_list_communities_and_local_pref() {
    let mut rib = rr();
    let tag = Community::new(65000, 42);
    let policy = Policy::new(
        vec![
            Rule {
                when: Match {
                    as_path_longer_than: Some(2),
                    ..Match::default()
                },
                then: vec![],
                verdict: Verdict::Reject,
            },
            Rule {
                when: Match {
                    prefixes: vec![PrefixMatch {
                        prefix: net("198.51.0.0/16"),
                        ge: Some(24),
                        le: Some(24),
                    }],
                    ..Match::default()
                },
                then: vec![
                    Modify::SetLocalPref(300),
                    Modify::AddCommunity(tag),
                    Modify::RemoveCommunity(Community::new(65001, 1)),
                ],
                verdict: Verdict::Accept,
            },
        ],
        false,
    )
    .unwrap();
    let mut cfg = PeerConfig::new(IpAddr::V4(v4("0.0.0.0")), 65001);
    cfg.import = Some(Arc::new(policy));
    // Rejected routes kept, so that `explain` can say why.
    cfg.soft_reconfiguration_inbound = true;
    let e = up(&mut rib, cfg, 5, ebgp_ctx());
    let c = client(&mut rib, 2);
    drain(&mut rib);
    let ectx = ebgp_ctx();
    let attrs = with(
        base("192.0.2.9", &[65001]),
        A::Communities(vec![Community::new(65001, 1)]),
    );
    let _ = apply(
        &mut rib,
        e,
        &ectx,
        &announce(&[P, "198.51.0.0/16", "203.0.113.0/24"], attrs, &ectx),
    );
    let _ = apply(
        &mut rib,
        e,
        &ectx,
        &announce(&["198.51.7.0/24"], base("192.0.2.9", &[65001, 2, 3]), &ectx),
    );
    let outs = drain(&mut rib);
    let t = table(&received(&rib, c, &outs, &ibgp_ctx()));
    assert_eq!(t.keys().map(|n| n.prefix).collect::<Vec<_>>(), [net(P)]);
    let got = &t[&Nlri::new(net(P))];
    assert_eq!(attr(got, T::LOCAL_PREF), Some(&A::LocalPref(300)));
    assert_eq!(attr(got, T::COMMUNITIES), Some(&A::Communities(vec![tag])));
    for p in ["198.51.0.0/16", "203.0.113.0/24", "198.51.7.0/24"] {
        assert_eq!(
            rib.explain(&net(p)).unwrap().paths[0].status,
            PathStatus::Ineligible(Ineligible::RejectedByImport)
        );
    }
}

#[test]
fn test_export_policy_sets_med_and_large_community() {
    let mut rib = rr();
    let lc = bgp_wire::attr::LargeCommunity {
        global: 65000,
        local1: 1,
        local2: 2,
    };
    let policy = Policy::new(
        vec![Rule {
            when: Match::default(),
            then: vec![Modify::SetMed(77), Modify::AddLargeCommunity(lc)],
            verdict: Verdict::Accept,
        }],
        false,
    )
    .unwrap();
    let mut cfg = PeerConfig::new(IpAddr::V4(v4("0.0.0.0")), 65009);
    cfg.export = Some(Arc::new(policy));
    let e = up(&mut rib, cfg, 5, ebgp_ctx());
    let c = client(&mut rib, 2);
    drain(&mut rib);
    let ctx = ibgp_ctx();
    let _ = apply(
        &mut rib,
        c,
        &ctx,
        &announce(&[P], base("192.0.2.1", &[]), &ctx),
    );
    let outs = drain(&mut rib);
    let t = table(&received(&rib, e, &outs, &ebgp_ctx()));
    let got = &t[&Nlri::new(net(P))];
    assert_eq!(attr(got, T::MULTI_EXIT_DISC), Some(&A::MultiExitDisc(77)));
    assert_eq!(
        attr(got, T::LARGE_COMMUNITIES),
        Some(&A::LargeCommunities(vec![lc]))
    );
}

#[test]
fn test_max_prefix_signal() {
    let mut rib = rr();
    let mut cfg = PeerConfig::new(IpAddr::V4(v4("0.0.0.0")), LOCAL_AS);
    cfg.max_prefix = Some(MaxPrefix {
        limit: 2,
        warn_only: false,
    });
    let p = up(&mut rib, cfg, 2, ibgp_ctx());
    let ctx = ibgp_ctx();
    let r = apply(
        &mut rib,
        p,
        &ctx,
        &announce(
            &["10.1.0.0/16", "10.2.0.0/16"],
            base("192.0.2.1", &[]),
            &ctx,
        ),
    );
    assert_eq!(r.signal, None);
    let r = apply(
        &mut rib,
        p,
        &ctx,
        &announce(&["10.3.0.0/16"], base("192.0.2.1", &[]), &ctx),
    );
    assert_eq!(
        r.signal,
        Some(Signal::MaxPrefixExceeded {
            limit: 2,
            warn_only: false
        })
    );
}

#[test]
fn test_graceful_restart_stale_then_eor_sweeps() {
    let mut rib = rr();
    let mut cfg = PeerConfig::new(IpAddr::V4(v4("0.0.0.0")), LOCAL_AS);
    cfg.rr_client = true;
    cfg.graceful_restart = true;
    let a = up(&mut rib, cfg, 2, ibgp_ctx());
    let b = client(&mut rib, 3);
    drain(&mut rib);
    let ctx = ibgp_ctx();
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce(
            &["10.1.0.0/16", "10.2.0.0/16"],
            base("192.0.2.1", &[]),
            &ctx,
        ),
    );
    let first = drain(&mut rib);
    rib.peer_down(a, true);
    assert_eq!(rib.stale_count(a), 2);
    let e = rib.explain(&net("10.1.0.0/16")).unwrap();
    assert!(e.paths[0].stale && e.paths[0].status == PathStatus::Best);
    // Nothing to send while stale routes stand in.
    assert!(drain(&mut rib).iter().all(|(_, o)| o.bytes.is_empty()));
    // Back up: refreshes one route, then End-of-RIB sweeps the other.
    let mut cfg_session = rib.peer_config(a).unwrap().clone();
    cfg_session.graceful_restart = true;
    let _ = rib.peer_up(
        a,
        rib::Session {
            ctx,
            router_id: router_id(2),
            local: rib::LocalAddrs::from(IpAddr::V4(RR_ADDR)),
        },
    );
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce(&["10.1.0.0/16"], base("192.0.2.1", &[]), &ctx),
    );
    assert_eq!(rib.stale_count(a), 1);
    let r = apply(&mut rib, a, &ctx, &bgp_wire_eor());
    assert_eq!(r.end_of_rib, Some(Family::Ipv4Unicast));
    assert_eq!(rib.stale_count(a), 0);
    let second = drain(&mut rib);
    let t = table(
        &[
            received(&rib, b, &first, &ctx),
            received(&rib, b, &second, &ctx),
        ]
        .concat(),
    );
    assert_eq!(
        t.keys().map(|n| n.prefix).collect::<Vec<_>>(),
        [net("10.1.0.0/16")]
    );
    // The restarted peer got the table back and End-of-RIB.
    let got = received(&rib, a, &second, &ctx);
    assert!(got.last().is_some_and(is_eor));

    // Without graceful restart, or when the timer runs out, routes go.
    rib.peer_down(a, true);
    rib.stale_timer_expired(a);
    assert!(rib.best(&net("10.1.0.0/16")).is_none());
}

fn bgp_wire_eor() -> bytes::Bytes {
    let mut b = bytes::BytesMut::new();
    bgp_wire::update::Update::end_of_rib(Family::Ipv4Unicast)
        .encode(&ibgp_ctx(), &mut b)
        .unwrap();
    b.freeze()
}

/// An UPDATE body (after the header) with these raw path attributes and IPv4 NLRI.
fn raw_update(attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0];
    b.extend_from_slice(&u16::try_from(attrs.len()).unwrap().to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    b
}

/// ORIGIN IGP, an empty AS_PATH and NEXT_HOP 192.0.2.1, raw.
const MANDATORY: [u8; 14] = [
    0x40, 1, 1, 0, // ORIGIN IGP
    0x40, 2, 0, // AS_PATH, empty (iBGP)
    0x40, 3, 4, 192, 0, 2, 1, // NEXT_HOP
];

/// 198.51.100.0/24 (P) as NLRI.
const P_NLRI: [u8; 4] = [24, 198, 51, 100];

/// A client that announced P cleanly, for the RFC 7606 tests.
fn rfc7606_rib() -> (Rib, PeerId, SessionCtx) {
    let mut rib = rr();
    let a = client(&mut rib, 2);
    let ctx = ibgp_ctx();
    let r = apply(
        &mut rib,
        a,
        &ctx,
        &announce(&[P], base("192.0.2.1", &[]), &ctx),
    );
    assert_eq!((r.announced, r.signal), (1, None));
    assert!(rib.best(&net(P)).is_some());
    (rib, a, ctx)
}

#[test]
fn test_rfc7606_normal() {
    let (mut rib, a, ctx) = rfc7606_rib();
    let body = raw_update(&MANDATORY, &P_NLRI);
    let view = UpdateView::parse(&body, &ctx);
    assert_eq!(view.treatment(), Treatment::Normal);
    let r = rib.apply_update(a, &view);
    assert_eq!((r.announced, r.signal), (1, None));
    assert!(rib.best(&net(P)).is_some());
}

#[test]
fn test_rfc7606_attribute_discard() {
    // ATOMIC_AGGREGATE with a length of 1 (RFC 7606 §7.6): the attribute goes, the route
    // stays, and the session has nothing to do.
    let (mut rib, a, ctx) = rfc7606_rib();
    let mut attrs = MANDATORY.to_vec();
    attrs.extend_from_slice(&[0x40, 6, 1, 0]);
    let body = raw_update(&attrs, &P_NLRI);
    let view = UpdateView::parse(&body, &ctx);
    assert_eq!(view.treatment(), Treatment::AttributeDiscard);
    let r = rib.apply_update(a, &view);
    assert_eq!((r.announced, r.signal), (1, None));
    assert!(rib.best(&net(P)).is_some());
}

#[test]
fn test_rfc7606_treat_as_withdraw() {
    // ORIGIN value 7: the route is withdrawn, listed as treated as withdrawn; the session
    // has nothing to do.
    let (mut rib, a, ctx) = rfc7606_rib();
    let mut bad = base("192.0.2.1", &[]);
    bad[0] = A::Origin(Origin(7));
    let r = apply(&mut rib, a, &ctx, &announce(&[P], bad, &ctx));
    assert_eq!(r.signal, None);
    assert!(rib.best(&net(P)).is_none());
    assert_eq!(
        rib.explain(&net(P)).unwrap().paths[0].status,
        PathStatus::Ineligible(Ineligible::TreatedAsWithdrawn)
    );
}

#[test]
fn test_rfc7606_afi_safi_disable_resets() {
    // MP_UNREACH_NLRI for IPv4 unicast with a /33 (RFC 7606 §7.11): AFI/SAFI disable,
    // which the RIB carries out as a session reset (RFC 4760 §7). Nothing changes.
    let (mut rib, a, ctx) = rfc7606_rib();
    let before = rib.stats();
    let body = raw_update(&[0x80, 15, 4, 0, 1, 1, 33], &[]);
    let view = UpdateView::parse(&body, &ctx);
    assert_eq!(view.treatment(), Treatment::AfiSafiDisable);
    let r = rib.apply_update(a, &view);
    let n = view.notification().expect("the view names the fault");
    assert_eq!(n.code, ErrorCode::UPDATE_MESSAGE);
    assert_eq!(r.signal, Some(Signal::SessionReset(n)));
    assert_eq!((r.announced, r.withdrawn), (0, 0));
    assert_eq!(rib.stats(), before);
    assert!(rib.best(&net(P)).is_some());
}

#[test]
fn test_rfc7606_session_reset() {
    // A truncated body: session reset with the view's NOTIFICATION; nothing changes.
    let (mut rib, a, ctx) = rfc7606_rib();
    let before = rib.stats();
    let view = UpdateView::parse(&[0, 9, 1], &ctx);
    assert_eq!(view.treatment(), Treatment::SessionReset);
    let r = rib.apply_update(a, &view);
    let n = view.notification().expect("the view names the fault");
    assert_eq!(n.code, ErrorCode::UPDATE_MESSAGE);
    assert_eq!(r.signal, Some(Signal::SessionReset(n)));
    assert_eq!(rib.stats(), before);
    assert!(rib.best(&net(P)).is_some());
}

#[test]
fn test_reflected_update_split_never_dropped() {
    // Attributes near the 4096-byte limit: with ORIGINATOR_ID and CLUSTER_LIST added the
    // packer must split across more messages, each within the limit.
    let mut rib = rr();
    let a = client(&mut rib, 2);
    let b = client(&mut rib, 3);
    drain(&mut rib);
    let ctx = ibgp_ctx();
    let comms: Vec<Community> = (0..950).map(|i| Community::new(65000, i)).collect();
    let prefixes: Vec<String> = (0..83).map(|i| format!("10.{i}.0.0/16")).collect();
    let refs: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    let msg = announce(
        &refs,
        with(base("192.0.2.1", &[]), A::Communities(comms)),
        &ctx,
    );
    // ORIGINATOR_ID and CLUSTER_LIST add 14 bytes.
    assert!(msg.len() > 4096 - 14 && msg.len() <= 4096, "{}", msg.len());
    let _ = apply(&mut rib, a, &ctx, &msg);
    let outs = drain(&mut rib);
    let got = received(&rib, b, &outs, &ctx);
    assert!(got.len() >= 2, "split into {} messages", got.len());
    assert_eq!(table(&got).len(), 83);
}

#[test]
fn test_flaps_coalesced() {
    let mut rib = rr();
    let a = client(&mut rib, 2);
    let b = client(&mut rib, 3);
    drain(&mut rib);
    let ctx = ibgp_ctx();
    for i in 0..10u32 {
        let _ = apply(
            &mut rib,
            a,
            &ctx,
            &announce(
                &[P],
                with(base("192.0.2.1", &[]), A::MultiExitDisc(i)),
                &ctx,
            ),
        );
        let _ = apply(&mut rib, a, &ctx, &withdraw(&[P], &ctx));
    }
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce(
            &[P],
            with(base("192.0.2.1", &[]), A::MultiExitDisc(99)),
            &ctx,
        ),
    );
    let outs = drain(&mut rib);
    let got = received(&rib, b, &outs, &ctx);
    assert_eq!(got.len(), 1);
    assert_eq!(
        attr(&got[0].attributes, T::MULTI_EXIT_DISC),
        Some(&A::MultiExitDisc(99))
    );
}

#[test]
fn test_late_joiner_gets_table_then_eor() {
    let mut rib = rr();
    let a = client(&mut rib, 2);
    let _b = client(&mut rib, 3);
    let ctx = ibgp_ctx();
    let first = drain(&mut rib);
    assert!(received(&rib, a, &first, &ctx).iter().all(is_eor));
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce(&[P, "203.0.113.0/24"], base("192.0.2.1", &[]), &ctx),
    );
    drain(&mut rib);
    let c = client(&mut rib, 4);
    let outs = drain(&mut rib);
    let got = received(&rib, c, &outs, &ctx);
    assert!(got.last().is_some_and(is_eor));
    assert_eq!(table(&got).len(), 2);
    // The others are not sent the dump again.
    assert!(received(&rib, a, &outs, &ctx).is_empty());
}

/// A node's own block, announced back by a peer with better attributes (LOCAL_PREF 200
/// against our default 100, a MED where ours has none and a missing MED is the worst):
/// our own path stays best, before any attribute is compared, whichever came first; the
/// learned path says why it lost; the other peers keep being sent our route. As BIRD
/// (preference), FRR (weight, local route) and GoBGP do.
#[test]
fn test_locally_originated_beats_better_learned() {
    for originate_first in [false, true] {
        let mut cfg = RibConfig::new(LOCAL_AS, RR_ID);
        cfg.missing_med_worst = true;
        cfg.track_best_changes = true;
        let mut rib = Rib::new(cfg);
        let a = client(&mut rib, 2);
        let b = client(&mut rib, 3);
        let ctx = ibgp_ctx();
        let better = with(
            with(base("192.0.2.2", &[]), A::LocalPref(200)),
            A::MultiExitDisc(0),
        );
        if originate_first {
            rib.originate(net(P), rib::Attrs::default());
            let _ = apply(&mut rib, a, &ctx, &announce(&[P], better, &ctx));
        } else {
            let _ = apply(&mut rib, a, &ctx, &announce(&[P], better, &ctx));
            // Alone, the learned path is best.
            assert_eq!(verdict(&rib), [(a, PathStatus::Best)]);
            drain(&mut rib);
            while rib.poll_best_change().is_some() {}
            rib.originate(net(P), rib::Attrs::default());
        }
        assert_eq!(
            verdict(&rib),
            [
                (PeerId::LOCAL, PathStatus::Best),
                (a, PathStatus::Lost(Criterion::LocallyOriginated))
            ],
            "originate first: {originate_first}"
        );
        let mut last = None;
        while let Some(c) = rib.poll_best_change() {
            last = Some(c);
        }
        assert!(last.is_some_and(|c| c.local && c.next_hops.is_empty()));
        // The other client is sent our own route, not the reflected one.
        let outs = drain(&mut rib);
        let t = table(&received(&rib, b, &outs, &ctx));
        let got = &t[&Nlri::new(net(P))];
        assert_eq!(attr(got, T::NEXT_HOP), Some(&A::NextHop(RR_ADDR)));
        assert_eq!(attr(got, T::ORIGINATOR_ID), None);
        assert_eq!(attr(got, T::LOCAL_PREF), Some(&A::LocalPref(100)));

        // Withdrawn here, the prefix falls back to the learned path.
        rib.withdraw_local(net(P));
        assert_eq!(verdict(&rib), [(a, PathStatus::Best)]);
    }
}

/// The local step comes before LOCAL_PREF even for an eBGP path: an eBGP peer whose import
/// policy raises LOCAL_PREF still loses to our own route.
#[test]
fn test_locally_originated_beats_ebgp_with_higher_local_pref() {
    let mut rib = rr();
    let raise = Policy::new(
        vec![Rule {
            when: Match::default(),
            then: vec![Modify::SetLocalPref(500)],
            verdict: Verdict::Accept,
        }],
        false,
    )
    .unwrap();
    let mut cfg = PeerConfig::new(IpAddr::V4(v4("0.0.0.0")), 65001);
    cfg.import = Some(Arc::new(raise));
    let e = up(&mut rib, cfg, 9, ebgp_ctx());
    rib.originate(net(P), rib::Attrs::default());
    let ectx = ebgp_ctx();
    let _ = apply(
        &mut rib,
        e,
        &ectx,
        &announce(&[P], base("192.0.2.9", &[65001]), &ectx),
    );
    assert_eq!(
        verdict(&rib),
        [
            (PeerId::LOCAL, PathStatus::Best),
            (e, PathStatus::Lost(Criterion::LocallyOriginated))
        ]
    );
}

#[test]
fn test_originate_and_best_change_stream() {
    let mut cfg = RibConfig::new(LOCAL_AS, RR_ID);
    cfg.track_best_changes = true;
    let mut rib = Rib::new(cfg);
    let a = client(&mut rib, 2);
    let ctx = ibgp_ctx();
    drain(&mut rib);
    rib.originate(net("192.168.0.0/26"), rib::Attrs::default());
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce(&["192.168.0.64/26"], base("192.0.2.2", &[]), &ctx),
    );
    let mut changes = Vec::new();
    while let Some(c) = rib.poll_best_change() {
        changes.push(c);
    }
    assert_eq!(changes.len(), 2);
    assert!(changes[0].local && changes[0].next_hops.is_empty());
    assert_eq!(changes[1].next_hops, [IpAddr::V4(v4("192.0.2.2"))]);
    let outs = drain(&mut rib);
    let t = table(&received(&rib, a, &outs, &ctx));
    let got = &t[&Nlri::new(net("192.168.0.0/26"))];
    assert_eq!(attr(got, T::NEXT_HOP), Some(&A::NextHop(RR_ADDR)));
    assert_eq!(attr(got, T::ORIGINATOR_ID), None);
    rib.withdraw_local(net("192.168.0.0/26"));
    let c = rib.poll_best_change().unwrap();
    assert_eq!(
        (c.prefix, c.next_hops.len(), c.local),
        (net("192.168.0.0/26"), 0, false)
    );
}

#[test]
fn test_withdraw_everything_frees_everything() {
    let mut rib = rr();
    let a = client(&mut rib, 2);
    let _b = client(&mut rib, 3);
    let ctx = ibgp_ctx();
    let ps: Vec<String> = (0..50).map(|i| format!("10.{i}.0.0/16")).collect();
    let refs: Vec<&str> = ps.iter().map(String::as_str).collect();
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce(&refs[..25], base("192.0.2.1", &[]), &ctx),
    );
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce(&refs[25..], base("192.0.2.2", &[1]), &ctx),
    );
    drain(&mut rib);
    assert!(rib.stats().attr_sets >= 2 && rib.stats().adj_out_paths == 50);
    let _ = apply(&mut rib, a, &ctx, &withdraw(&refs, &ctx));
    drain(&mut rib);
    let s = rib.stats();
    assert_eq!(
        (
            s.prefixes,
            s.paths,
            s.attr_sets,
            s.out_attr_sets,
            s.adj_out_paths
        ),
        (0, 0, 0, 0, 0)
    );
}

#[test]
fn test_reasons_in_operator_words() {
    // What `ctl route` and the API's JSON show: these strings are an interface.
    let lost = [
        (
            Criterion::LocallyOriginated,
            "learned, while this speaker originates the prefix",
        ),
        (Criterion::LocalPref, "lower LOCAL_PREF"),
        (Criterion::AsPathLength, "longer AS_PATH"),
        (Criterion::Origin, "worse ORIGIN"),
        (
            Criterion::Med,
            "higher MED (same neighbour AS, or always-compare-med)",
        ),
        (
            Criterion::PeerType,
            "learned over iBGP while an eBGP path exists",
        ),
        (Criterion::IgpCost, "higher IGP cost to the next hop"),
        (Criterion::RouterId, "higher router ID (or ORIGINATOR_ID)"),
        (Criterion::ClusterListLength, "longer CLUSTER_LIST"),
        (Criterion::PeerAddress, "higher peer address"),
        (Criterion::PathId, "higher path ID from the same peer"),
    ];
    for (c, words) in lost {
        assert_eq!(c.to_string(), words);
        assert_eq!(PathStatus::Lost(c).reason(), Some(words));
        assert_eq!(PathStatus::Lost(c).name(), "lost");
    }
    let ineligible = [
        (
            Ineligible::ClusterLoop,
            "CLUSTER_LIST holds our cluster ID (reflection loop)",
        ),
        (
            Ineligible::OriginatorIsUs,
            "ORIGINATOR_ID is our router ID (our own route came back)",
        ),
        (Ineligible::AsLoop, "our AS is in the AS_PATH"),
        (Ineligible::NextHopUnreachable, "next hop unreachable"),
        (Ineligible::NextHopIsLocal, "next hop is our own address"),
        (
            Ineligible::RejectedByImport,
            "rejected by the import policy (or no policy on an eBGP session, RFC 8212)",
        ),
        (
            Ineligible::TreatedAsWithdrawn,
            "malformed UPDATE, treated as withdrawn (RFC 7606)",
        ),
    ];
    for (i, words) in ineligible {
        assert_eq!(i.to_string(), words);
        assert_eq!(PathStatus::Ineligible(i).reason(), Some(words));
        assert_eq!(PathStatus::Ineligible(i).name(), "ineligible");
    }
    assert_eq!(PathStatus::Best.reason(), None);
    assert_eq!(PathStatus::Best.name(), "best");
}

/// The best-change stream carries the best path's LOCAL_PREF as received, `None` without
/// the attribute (not the decision's default), and `None` for our own route.
#[test]
fn test_best_change_carries_local_pref_of_best_path() {
    let mut cfg = RibConfig::new(LOCAL_AS, RR_ID);
    cfg.track_best_changes = true;
    let mut rib = Rib::new(cfg);
    let a = client(&mut rib, 2);
    let b = client(&mut rib, 3);
    let ctx = ibgp_ctx();
    let last = |rib: &mut Rib| {
        let mut last = None;
        while let Some(c) = rib.poll_best_change() {
            last = Some(c);
        }
        last.expect("a change")
    };
    // No LOCAL_PREF on the wire: none in the change, though the decision assumed 100.
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce(&[P], base("192.0.2.2", &[]), &ctx),
    );
    let c = last(&mut rib);
    assert_eq!((c.next_hops.len(), c.local_pref), (1, None));
    // A better path with LOCAL_PREF 200 takes over: its value comes along.
    let _ = apply(
        &mut rib,
        b,
        &ctx,
        &announce(&[P], with(base("192.0.2.3", &[]), A::LocalPref(200)), &ctx),
    );
    let c = last(&mut rib);
    assert_eq!(c.next_hops, [IpAddr::V4(v4("192.0.2.3"))]);
    assert_eq!(c.local_pref, Some(200));
    // Our own route wins: local, no LOCAL_PREF for the FIB.
    rib.originate(net(P), rib::Attrs::default());
    let c = last(&mut rib);
    assert!(c.local && c.local_pref.is_none());
}
