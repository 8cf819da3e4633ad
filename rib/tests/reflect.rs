//! Route reflection (RFC 4456), next hop and eBGP rules, checked on the bytes each peer
//! receives.

mod common;

use std::net::IpAddr;
use std::sync::Arc;

use bgp_wire::attr::{AttrType as T, Community, NextHop, PathAttribute as A};
use bgp_wire::nlri::Nlri;
use common::*;
use rib::{Audience, Ineligible, NextHopMode, PathStatus, PeerConfig, Policy, RibConfig};

fn p(s: &str) -> Nlri {
    Nlri::new(net(s))
}

#[test]
fn test_client_route_reflected_to_clients_and_nonclients() {
    let mut rib = rr();
    let a = client(&mut rib, 2);
    let b = client(&mut rib, 3);
    let n = nonclient(&mut rib, 4);
    drain(&mut rib);
    let ctx = ibgp_ctx();
    let mut attrs = base("192.0.2.1", &[]);
    attrs.push(A::LocalPref(150));
    let r = apply(
        &mut rib,
        a,
        &ctx,
        &announce(&["198.51.100.0/24"], attrs, &ctx),
    );
    assert_eq!(r.announced, 1);
    let outs = drain(&mut rib);
    for peer in [b, n] {
        let t = table(&received(&rib, peer, &outs, &ctx));
        let got = &t[&p("198.51.100.0/24")];
        assert_eq!(attr(got, T::NEXT_HOP), Some(&A::NextHop(v4("192.0.2.1"))));
        assert_eq!(attr(got, T::LOCAL_PREF), Some(&A::LocalPref(150)));
        assert_eq!(
            attr(got, T::ORIGINATOR_ID),
            Some(&A::OriginatorId(router_id(2)))
        );
        assert_eq!(
            attr(got, T::CLUSTER_LIST),
            Some(&A::ClusterList(vec![RR_ID]))
        );
        assert_eq!(attr(got, T::AS_PATH), Some(&A::AsPath(Default::default())));
    }
    // Never back to the peer it came from, though it shares the group.
    assert_eq!(rib.group_of(a), rib.group_of(b));
    assert!(table(&received(&rib, a, &outs, &ctx)).is_empty());
}

#[test]
fn test_nonclient_route_only_to_clients() {
    let mut rib = rr();
    let c = client(&mut rib, 2);
    let n1 = nonclient(&mut rib, 3);
    let n2 = nonclient(&mut rib, 4);
    drain(&mut rib);
    let ctx = ibgp_ctx();
    let _ = apply(
        &mut rib,
        n1,
        &ctx,
        &announce(&["198.51.100.0/24"], base("192.0.2.1", &[]), &ctx),
    );
    let outs = drain(&mut rib);
    let t = table(&received(&rib, c, &outs, &ctx));
    let got = &t[&p("198.51.100.0/24")];
    assert_eq!(
        attr(got, T::ORIGINATOR_ID),
        Some(&A::OriginatorId(router_id(3)))
    );
    assert_eq!(
        attr(got, T::CLUSTER_LIST),
        Some(&A::ClusterList(vec![RR_ID]))
    );
    // RFC 4271 §9.2: iBGP split horizon between non-clients.
    assert!(table(&received(&rib, n2, &outs, &ctx)).is_empty());
}

#[test]
fn test_client_to_client_off() {
    let mut cfg = RibConfig::new(LOCAL_AS, RR_ID);
    cfg.client_to_client = false;
    let mut rib = rib::Rib::new(cfg);
    let a = client(&mut rib, 2);
    let b = client(&mut rib, 3);
    let n = nonclient(&mut rib, 4);
    drain(&mut rib);
    let ctx = ibgp_ctx();
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce(&["198.51.100.0/24"], base("192.0.2.1", &[]), &ctx),
    );
    let outs = drain(&mut rib);
    assert!(table(&received(&rib, b, &outs, &ctx)).is_empty());
    assert_eq!(table(&received(&rib, n, &outs, &ctx)).len(), 1);
}

#[test]
fn test_originator_and_cluster_list_kept_and_prepended() {
    let mut rib = rr();
    let n = nonclient(&mut rib, 2);
    let c = client(&mut rib, 3);
    drain(&mut rib);
    let ctx = ibgp_ctx();
    let mut attrs = base("192.0.2.1", &[]);
    attrs.push(A::OriginatorId(v4("10.9.9.9")));
    attrs.push(A::ClusterList(vec![v4("10.1.1.1"), v4("10.2.2.2")]));
    let _ = apply(
        &mut rib,
        n,
        &ctx,
        &announce(&["198.51.100.0/24"], attrs, &ctx),
    );
    let outs = drain(&mut rib);
    let t = table(&received(&rib, c, &outs, &ctx));
    let got = &t[&p("198.51.100.0/24")];
    // RFC 4456 §8: ORIGINATOR_ID is not replaced; CLUSTER_LIST grows by exactly one.
    assert_eq!(
        attr(got, T::ORIGINATOR_ID),
        Some(&A::OriginatorId(v4("10.9.9.9")))
    );
    assert_eq!(
        attr(got, T::CLUSTER_LIST),
        Some(&A::ClusterList(vec![RR_ID, v4("10.1.1.1"), v4("10.2.2.2")]))
    );
}

#[test]
fn test_loops_are_ineligible_and_explained() {
    let mut rib = rr();
    let a = client(&mut rib, 2);
    let b = client(&mut rib, 3);
    drain(&mut rib);
    let ctx = ibgp_ctx();
    let mut looped = base("192.0.2.1", &[]);
    looped.push(A::ClusterList(vec![v4("10.7.7.7"), RR_ID]));
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce(&["198.51.100.0/24"], looped, &ctx),
    );
    let mut ours = base("192.0.2.1", &[]);
    ours.push(A::OriginatorId(RR_ID));
    let _ = apply(
        &mut rib,
        b,
        &ctx,
        &announce(&["198.51.100.0/24"], ours, &ctx),
    );
    let outs = drain(&mut rib);
    assert!(outs.iter().all(|(_, o)| o.bytes.is_empty()));
    let e = rib.explain(&net("198.51.100.0/24")).unwrap();
    let st: Vec<PathStatus> = e.paths.iter().map(|p| p.status).collect();
    assert!(st.contains(&PathStatus::Ineligible(Ineligible::ClusterLoop)));
    assert!(st.contains(&PathStatus::Ineligible(Ineligible::OriginatorIsUs)));
    assert!(rib.best(&net("198.51.100.0/24")).is_none());
}

#[test]
fn test_per_peer_cluster_id() {
    let mut rib = rr();
    let src = nonclient(&mut rib, 2);
    let rack1 = client(&mut rib, 3);
    let mut cfg = PeerConfig::new(IpAddr::V4(v4("0.0.0.0")), LOCAL_AS);
    cfg.rr_client = true;
    cfg.cluster_id = Some(v4("10.100.0.2"));
    let rack2 = up(&mut rib, cfg, 4, ibgp_ctx());
    assert_ne!(rib.group_of(rack1), rib.group_of(rack2));
    drain(&mut rib);
    let ctx = ibgp_ctx();
    let _ = apply(
        &mut rib,
        src,
        &ctx,
        &announce(&["198.51.100.0/24"], base("192.0.2.1", &[]), &ctx),
    );
    let outs = drain(&mut rib);
    let t1 = table(&received(&rib, rack1, &outs, &ctx));
    let t2 = table(&received(&rib, rack2, &outs, &ctx));
    assert_eq!(
        attr(&t1[&p("198.51.100.0/24")], T::CLUSTER_LIST),
        Some(&A::ClusterList(vec![RR_ID]))
    );
    assert_eq!(
        attr(&t2[&p("198.51.100.0/24")], T::CLUSTER_LIST),
        Some(&A::ClusterList(vec![v4("10.100.0.2")]))
    );
    // A route that passed the other rack's cluster is a loop for the whole reflector.
    let mut back = base("192.0.2.1", &[]);
    back.push(A::ClusterList(vec![v4("10.100.0.2")]));
    let _ = apply(
        &mut rib,
        src,
        &ctx,
        &announce(&["203.0.113.0/24"], back, &ctx),
    );
    let e = rib.explain(&net("203.0.113.0/24")).unwrap();
    assert_eq!(
        e.paths[0].status,
        PathStatus::Ineligible(Ineligible::ClusterLoop)
    );
}

/// One reflector serving two racks, each a cluster of its own (a cluster ID per peer
/// group), client-to-client reflection off in rack 1 only: it acts as two reflectors.
#[test]
fn test_two_clusters_in_one_reflector() {
    let rack1 = v4("1.0.0.1");
    let rack2 = v4("1.0.0.2");
    let mut rib = rr();
    let in_rack = |rib: &mut rib::Rib, n: u8, cluster, c2c| {
        let mut cfg = PeerConfig::new(IpAddr::V4(v4("0.0.0.0")), LOCAL_AS);
        cfg.rr_client = true;
        cfg.cluster_id = Some(cluster);
        cfg.client_to_client = c2c;
        up(rib, cfg, n, ibgp_ctx())
    };
    let a1 = in_rack(&mut rib, 2, rack1, Some(false));
    let a2 = in_rack(&mut rib, 3, rack1, Some(false));
    let b1 = in_rack(&mut rib, 4, rack2, None);
    let b2 = in_rack(&mut rib, 5, rack2, None);
    let n = nonclient(&mut rib, 6);
    drain(&mut rib);
    let ctx = ibgp_ctx();
    let cl = |rib: &rib::Rib, peer, outs: &[(rib::GroupId, rib::Outbound)], pfx: &str| {
        table(&received(rib, peer, outs, &ctx))
            .get(&p(pfx))
            .map(|a| attr(a, T::CLUSTER_LIST).cloned())
    };
    // From rack 1: not to rack 1's other client (meshed), to rack 2's through both
    // clusters, to the non-client out of rack 1's.
    let _ = apply(
        &mut rib,
        a1,
        &ctx,
        &announce(&["198.51.100.0/26"], base("192.0.2.2", &[]), &ctx),
    );
    let outs = drain(&mut rib);
    assert_eq!(cl(&rib, a2, &outs, "198.51.100.0/26"), None);
    for b in [b1, b2] {
        assert_eq!(
            cl(&rib, b, &outs, "198.51.100.0/26"),
            Some(Some(A::ClusterList(vec![rack2, rack1])))
        );
    }
    assert_eq!(
        cl(&rib, n, &outs, "198.51.100.0/26"),
        Some(Some(A::ClusterList(vec![rack1])))
    );
    // From rack 2: to rack 2's other client through rack 2 only; to rack 1's clients
    // (their cluster reflects nothing between its own clients, but this came from
    // outside it).
    let _ = apply(
        &mut rib,
        b1,
        &ctx,
        &announce(&["198.51.100.64/26"], base("192.0.2.4", &[]), &ctx),
    );
    let outs = drain(&mut rib);
    assert_eq!(
        cl(&rib, b2, &outs, "198.51.100.64/26"),
        Some(Some(A::ClusterList(vec![rack2])))
    );
    for a in [a1, a2] {
        assert_eq!(
            cl(&rib, a, &outs, "198.51.100.64/26"),
            Some(Some(A::ClusterList(vec![rack1, rack2])))
        );
    }
    assert_eq!(
        cl(&rib, n, &outs, "198.51.100.64/26"),
        Some(Some(A::ClusterList(vec![rack2])))
    );
    // From the non-client: into each rack's cluster.
    let _ = apply(
        &mut rib,
        n,
        &ctx,
        &announce(&["203.0.113.0/26"], base("192.0.2.6", &[]), &ctx),
    );
    let outs = drain(&mut rib);
    assert_eq!(
        cl(&rib, a2, &outs, "203.0.113.0/26"),
        Some(Some(A::ClusterList(vec![rack1])))
    );
    assert_eq!(
        cl(&rib, b2, &outs, "203.0.113.0/26"),
        Some(Some(A::ClusterList(vec![rack2])))
    );
}

#[test]
fn test_next_hop_self_all_on_reflected_routes() {
    let mut rib = rr();
    let a = client(&mut rib, 2);
    let mut cfg = PeerConfig::new(IpAddr::V4(v4("0.0.0.0")), LOCAL_AS);
    cfg.rr_client = true;
    cfg.next_hop = NextHopMode::SelfAll;
    let b = up(&mut rib, cfg.clone(), 3, ibgp_ctx());
    cfg.next_hop = NextHopMode::SelfExceptReflected;
    let c = up(&mut rib, cfg, 4, ibgp_ctx());
    drain(&mut rib);
    let ctx = ibgp_ctx();
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce(&["198.51.100.0/24"], base("192.0.2.1", &[]), &ctx),
    );
    let outs = drain(&mut rib);
    let tb = table(&received(&rib, b, &outs, &ctx));
    assert_eq!(
        attr(&tb[&p("198.51.100.0/24")], T::NEXT_HOP),
        Some(&A::NextHop(RR_ADDR))
    );
    let tc = table(&received(&rib, c, &outs, &ctx));
    assert_eq!(
        attr(&tc[&p("198.51.100.0/24")], T::NEXT_HOP),
        Some(&A::NextHop(v4("192.0.2.1")))
    );
}

#[test]
fn test_ebgp_routes_and_rfc8212() {
    let mut rib = rr();
    let c = client(&mut rib, 2);
    let mut e1cfg = PeerConfig::new(IpAddr::V4(v4("0.0.0.0")), 65001);
    e1cfg.import = Some(Arc::new(Policy::accept_all()));
    let e1 = up(&mut rib, e1cfg, 5, ebgp_ctx());
    let mut e2cfg = PeerConfig::new(IpAddr::V4(v4("0.0.0.0")), 65002);
    e2cfg.export = Some(Arc::new(Policy::accept_all()));
    let e2 = up(&mut rib, e2cfg, 6, ebgp_ctx());
    // No import policy: RFC 8212 refuses everything.
    let e3 = up(
        &mut rib,
        PeerConfig::new(IpAddr::V4(v4("0.0.0.0")), 65003),
        7,
        ebgp_ctx(),
    );
    drain(&mut rib);
    let ectx = ebgp_ctx();
    let mut attrs = base("192.0.2.5", &[65001, 65010]);
    attrs.push(A::MultiExitDisc(20));
    attrs.push(A::Communities(vec![Community::new(65001, 7)]));
    let _ = apply(
        &mut rib,
        e1,
        &ectx,
        &announce(&["198.51.100.0/24"], attrs.clone(), &ectx),
    );
    let _ = apply(
        &mut rib,
        e3,
        &ectx,
        &announce(&["203.0.113.0/24"], base("192.0.2.7", &[65003]), &ectx),
    );
    let outs = drain(&mut rib);
    let ctx = ibgp_ctx();
    let tc = table(&received(&rib, c, &outs, &ctx));
    assert_eq!(
        tc.len(),
        1,
        "RFC 8212: nothing from an eBGP peer without import policy"
    );
    let got = &tc[&p("198.51.100.0/24")];
    assert_eq!(attr(got, T::NEXT_HOP), Some(&A::NextHop(v4("192.0.2.5"))));
    assert_eq!(attr(got, T::LOCAL_PREF), Some(&A::LocalPref(100)));
    assert_eq!(attr(got, T::MULTI_EXIT_DISC), Some(&A::MultiExitDisc(20)));
    assert_eq!(attr(got, T::ORIGINATOR_ID), None);
    assert_eq!(attr(got, T::CLUSTER_LIST), None);
    let te2 = table(&received(&rib, e2, &outs, &ectx));
    let got = &te2[&p("198.51.100.0/24")];
    assert_eq!(attr(got, T::NEXT_HOP), Some(&A::NextHop(RR_ADDR)));
    assert_eq!(
        attr(got, T::AS_PATH),
        Some(&A::AsPath(bgp_wire::attr::AsPath::from_sequence([
            LOCAL_AS, 65001, 65010
        ])))
    );
    assert_eq!(attr(got, T::LOCAL_PREF), None);
    assert_eq!(attr(got, T::MULTI_EXIT_DISC), None);
    assert_eq!(
        attr(got, T::COMMUNITIES),
        Some(&A::Communities(vec![Community::new(65001, 7)]))
    );
    // Never back to the sender; and nothing to an eBGP peer without export policy.
    assert!(table(&received(&rib, e1, &outs, &ectx)).is_empty());
    assert!(table(&received(&rib, e3, &outs, &ectx)).is_empty());
    // Rejected (RFC 8212) and, without soft-reconfiguration inbound, not stored.
    assert!(rib.explain(&net("203.0.113.0/24")).is_none());
    assert_eq!(rib.adj_rib_in_len(e3), 0);
}

#[test]
fn test_no_export_and_as_loop() {
    let mut rib = rr();
    let c = client(&mut rib, 2);
    let mut ecfg = PeerConfig::new(IpAddr::V4(v4("0.0.0.0")), 65002);
    ecfg.export = Some(Arc::new(Policy::accept_all()));
    ecfg.import = Some(Arc::new(Policy::accept_all()));
    let e = up(&mut rib, ecfg, 6, ebgp_ctx());
    drain(&mut rib);
    let ctx = ibgp_ctx();
    let mut attrs = base("192.0.2.1", &[]);
    attrs.push(A::Communities(vec![Community::NO_EXPORT]));
    let _ = apply(
        &mut rib,
        c,
        &ctx,
        &announce(&["198.51.100.0/24"], attrs, &ctx),
    );
    let ectx = ebgp_ctx();
    let _ = apply(
        &mut rib,
        e,
        &ectx,
        &announce(
            &["203.0.113.0/24"],
            base("192.0.2.9", &[65002, LOCAL_AS]),
            &ectx,
        ),
    );
    let outs = drain(&mut rib);
    assert!(table(&received(&rib, e, &outs, &ectx)).is_empty());
    assert_eq!(
        rib.explain(&net("203.0.113.0/24")).unwrap().paths[0].status,
        PathStatus::Ineligible(Ineligible::AsLoop)
    );
}

/// `allow_local_as = N` (BIRD's `allow local as N`): a path from an external peer with
/// our AS up to N times is taken, one with it N + 1 times is a loop; a local AS of the
/// session counts the same way.
#[test]
fn test_allow_local_as_counts_our_as() {
    for (local_as, allow, times, looped) in [
        (None, 0, 1, true),
        (None, 1, 1, false),
        (None, 1, 2, true),
        (None, 2, 2, false),
        (None, 2, 3, true),
        (Some(65100), 1, 1, false),
        (Some(65100), 1, 2, true),
    ] {
        let mut rib = rr();
        let mut ecfg = PeerConfig::new(IpAddr::V4(v4("0.0.0.0")), 65002);
        ecfg.export = Some(Arc::new(Policy::accept_all()));
        ecfg.import = Some(Arc::new(Policy::accept_all()));
        ecfg.local_as = local_as;
        ecfg.allow_local_as = allow;
        let e = up(&mut rib, ecfg, 6, ebgp_ctx());
        drain(&mut rib);
        let ours = local_as.unwrap_or(LOCAL_AS);
        let mut path = vec![65002];
        for _ in 0..times {
            path.extend([ours, 65003]);
        }
        let ectx = ebgp_ctx();
        let _ = apply(
            &mut rib,
            e,
            &ectx,
            &announce(&["203.0.113.0/24"], base("192.0.2.9", &path), &ectx),
        );
        drain(&mut rib);
        let status = rib.explain(&net("203.0.113.0/24")).unwrap().paths[0].status;
        let case = format!("local_as {local_as:?}, allow {allow}, path {path:?}");
        if looped {
            assert_eq!(status, PathStatus::Ineligible(Ineligible::AsLoop), "{case}");
        } else {
            assert_ne!(status, PathStatus::Ineligible(Ineligible::AsLoop), "{case}");
        }
    }
}

#[test]
fn test_ipv6_next_hop_self_with_link_local() {
    let mut rib = rr();
    let a = client(&mut rib, 2);
    let mut cfg = PeerConfig::new(IpAddr::V4(v4("0.0.0.0")), LOCAL_AS);
    cfg.rr_client = true;
    cfg.next_hop = NextHopMode::SelfAll;
    let b = up(&mut rib, cfg, 3, ibgp_ctx());
    let d = client(&mut rib, 4);
    drain(&mut rib);
    let ctx = ibgp_ctx();
    let nh = NextHop::V6 {
        global: "2001:db8:1::5".parse().unwrap(),
        link_local: Some("fe80::5".parse().unwrap()),
    };
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce_v6(&["2001:db8:100::/48"], base("0.0.0.0", &[]), nh, &ctx),
    );
    let outs = drain(&mut rib);
    let tb = table(&received(&rib, b, &outs, &ctx));
    let got = &tb[&Nlri::new(net("2001:db8:100::/48"))];
    match attr(got, T::MP_REACH_NLRI) {
        Some(A::MpReachNlri(m)) => assert_eq!(
            m.next_hop,
            NextHop::V6 {
                global: "2001:db8::1".parse().unwrap(),
                link_local: Some(ll())
            }
        ),
        other => panic!("{other:?}"),
    }
    // Reflected unchanged to a client without next-hop-self, link-local included.
    let td = table(&received(&rib, d, &outs, &ctx));
    match attr(&td[&Nlri::new(net("2001:db8:100::/48"))], T::MP_REACH_NLRI) {
        Some(A::MpReachNlri(m)) => assert_eq!(m.next_hop, nh),
        other => panic!("{other:?}"),
    }
}

#[test]
fn test_never_to_the_originator_in_group() {
    // Route from non-client N carrying ORIGINATOR_ID of client C: C must not get it back.
    let mut rib = rr();
    let n = nonclient(&mut rib, 2);
    let c = client(&mut rib, 3);
    let d = client(&mut rib, 4);
    drain(&mut rib);
    let ctx = ibgp_ctx();
    let mut attrs = base("192.0.2.1", &[]);
    attrs.push(A::OriginatorId(router_id(3)));
    attrs.push(A::ClusterList(vec![v4("10.50.0.1")]));
    let _ = apply(
        &mut rib,
        n,
        &ctx,
        &announce(&["198.51.100.0/24"], attrs, &ctx),
    );
    let outs = drain(&mut rib);
    assert!(table(&received(&rib, c, &outs, &ctx)).is_empty());
    assert_eq!(table(&received(&rib, d, &outs, &ctx)).len(), 1);
    assert!(
        outs.iter()
            .any(|(_, o)| o.audience == Audience::AllExcept(vec![c]))
    );
}

#[test]
fn test_best_moves_from_member_withdraws_at_member() {
    // Client A's path is best; then client B's better path arrives. A must now receive
    // B's path; B (which had A's path) must be told to withdraw it.
    let mut rib = rr();
    let a = client(&mut rib, 2);
    let b = client(&mut rib, 3);
    drain(&mut rib);
    let ctx = ibgp_ctx();
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce(&["198.51.100.0/24"], base("192.0.2.1", &[]), &ctx),
    );
    let first = drain(&mut rib);
    assert_eq!(table(&received(&rib, b, &first, &ctx)).len(), 1);
    let mut better = base("192.0.2.2", &[]);
    better.push(A::LocalPref(200));
    let _ = apply(
        &mut rib,
        b,
        &ctx,
        &announce(&["198.51.100.0/24"], better, &ctx),
    );
    let second = drain(&mut rib);
    let all_b: Vec<_> = first.iter().chain(&second).cloned().collect();
    assert!(table(&received(&rib, b, &all_b, &ctx)).is_empty());
    let ta = table(&received(&rib, a, &second, &ctx));
    assert_eq!(
        attr(&ta[&p("198.51.100.0/24")], T::LOCAL_PREF),
        Some(&A::LocalPref(200))
    );
}

/// Robustness row A14: a NEXT_HOP that is our own address on the session is ignored
/// silently (RFC 4271 §6.3), for IPv4 and IPv6, and the path says why.
#[test]
fn test_next_hop_of_our_own_address_is_ineligible() {
    let mut rib = rr();
    let a = client(&mut rib, 2);
    let _b = client(&mut rib, 3);
    drain(&mut rib);
    let ctx = ibgp_ctx();
    let ours = RR_ADDR.to_string();
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce(&["198.51.100.0/24"], base(&ours, &[]), &ctx),
    );
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce_v6(
            &["2001:db8:5::/48"],
            base(&ours, &[]),
            NextHop::V6 {
                global: "2001:db8::1".parse().unwrap(),
                link_local: None,
            },
            &ctx,
        ),
    );
    let outs = drain(&mut rib);
    assert!(
        outs.iter().all(|(_, o)| o.bytes.is_empty()),
        "nothing reflected"
    );
    for p in ["198.51.100.0/24", "2001:db8:5::/48"] {
        let e = rib.explain(&net(p)).unwrap();
        assert_eq!(
            e.paths.iter().map(|p| p.status).collect::<Vec<_>>(),
            [PathStatus::Ineligible(Ineligible::NextHopIsLocal)],
            "{p}"
        );
    }
}

/// RFC 2918: a peer that asks for a refresh gets the table again and End-of-RIB; the other
/// members of its update group get nothing.
#[test]
fn test_route_refresh_resends_to_that_peer_only() {
    let mut rib = rr();
    let a = client(&mut rib, 2);
    let b = client(&mut rib, 3);
    let c = client(&mut rib, 4);
    drain(&mut rib);
    let ctx = ibgp_ctx();
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce(
            &["198.51.100.0/24", "203.0.113.0/24"],
            base("192.0.2.1", &[]),
            &ctx,
        ),
    );
    drain(&mut rib);
    assert!(rib.refresh(b));
    let outs = drain(&mut rib);
    let got = received(&rib, b, &outs, &ctx);
    assert_eq!(table(&got).len(), 2, "b gets both routes again");
    assert!(got.iter().any(is_eor), "then End-of-RIB");
    assert!(received(&rib, c, &outs, &ctx).is_empty(), "c is left alone");
    assert!(received(&rib, a, &outs, &ctx).is_empty());
    rib.peer_down(c, false);
    assert!(!rib.refresh(c), "a peer that is down cannot be refreshed");
}

/// Each `Outbound` says how many messages its bytes hold and how many prefixes they
/// announce: the daemon's per-peer counters rest on it, with and without ADD-PATH.
#[test]
fn test_outbound_counts_what_it_encodes() {
    use bgp_wire::FamilySet;
    use bgp_wire::update::UpdateView;
    use rib::{AddPathMode, Attrs, LocalAddrs, Rib};
    use std::net::Ipv6Addr;

    for add_path in [false, true] {
        let mut rib = Rib::new(RibConfig::new(65000, v4("10.0.0.1")));
        let mut pc = PeerConfig::new("10.0.0.2".parse().unwrap(), 65000);
        let mut ctx = ibgp_ctx();
        if add_path {
            pc.add_path_send = [Some(AddPathMode::All); 2];
            ctx.add_path_tx = FamilySet::ALL;
        }
        let peer = rib.add_peer(pc);
        let local = LocalAddrs::from("10.0.0.1".parse::<IpAddr>().unwrap());
        rib.peer_up(
            peer,
            rib::Session {
                ctx,
                router_id: v4("10.0.0.2"),
                local,
            },
        );
        for i in 0..300u32 {
            let v4_attrs = Attrs {
                next_hop: Some(NextHop::V4(v4("192.0.2.1"))),
                med: Some(i % 7), // several attribute sets: several messages
                ..Attrs::default()
            };
            let p = ipnet::IpNet::new(IpAddr::from((0x0a00_0000 + (i << 8)).to_be_bytes()), 24);
            rib.originate(p.unwrap(), v4_attrs);
            let v6_attrs = Attrs {
                next_hop: Some(NextHop::V6 {
                    global: "2001:db8::1".parse().unwrap(),
                    link_local: None,
                }),
                ..Attrs::default()
            };
            let a = Ipv6Addr::from((0x2001_0db8_0000_0000_u128 + u128::from(i)) << 64);
            rib.originate(ipnet::IpNet::new(IpAddr::V6(a), 64).unwrap(), v6_attrs);
        }
        // The receiving side's context reads the path identifiers we send.
        let rx = bgp_wire::SessionCtx {
            add_path_rx: ctx.add_path_tx,
            ..ctx
        };
        let (mut messages, mut announced) = (0, 0);
        let (mut want_messages, mut want_announced) = (0, 0);
        for (_, o) in drain(&mut rib) {
            messages += o.messages;
            announced += o.announced;
            let mut rest = &o.bytes[..];
            while !rest.is_empty() {
                let len = usize::from(u16::from_be_bytes([rest[16], rest[17]]));
                let view = UpdateView::parse(&rest[19..len], &rx);
                assert!(view.issues().is_empty(), "{:?}", view.issues());
                want_messages += 1;
                want_announced += view.announced().count();
                rest = &rest[len..];
            }
        }
        assert_eq!(want_announced, 600, "add_path {add_path}");
        assert!(want_messages > 4, "add_path {add_path}");
        assert_eq!((messages, announced), (want_messages, want_announced));
    }
}
