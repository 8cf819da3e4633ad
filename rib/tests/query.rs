//! Operator queries: per-peer Adj-RIB-In (before and after import policy), per-member
//! Adj-RIB-Out as sent, the Loc-RIB filtered, longest-prefix match; every listing paged
//! by a cursor and compared with what the RIB was given or what the receiver got.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use bgp_wire::Family;
use bgp_wire::attr::{AttrType as T, Community, NextHop, PathAttribute as A};
use bgp_wire::nlri::Nlri;
use common::*;
use ipnet::IpNet;
use rib::policy::{Match, Modify, PrefixMatch, Rule, Verdict};
use rib::{
    Cursor, InRoute, InView, OutRoute, Page, PeerConfig, PeerId, Policy, PrefixQuery, Rib,
    RouteFilter,
};

/// Pages through a listing with `limit` per page; checks the pages never repeat a route.
fn all<T: Clone>(limit: usize, mut page: impl FnMut(Cursor, usize) -> Page<T>) -> Vec<T> {
    let mut out = Vec::new();
    let mut cur = Cursor::default();
    for _ in 0..1_000_000 {
        let p = page(cur, limit);
        assert!(
            p.items.len() <= limit.max(1),
            "a page holds at most its limit"
        );
        out.extend(p.items);
        match p.next {
            Some(n) => {
                assert!(n > cur, "the cursor moves forward");
                cur = n;
            }
            None => return out,
        }
    }
    panic!("paging did not end");
}

fn prefixes_in(v: &[InRoute]) -> Vec<IpNet> {
    v.iter().map(|r| r.prefix).collect()
}

fn sorted(mut v: Vec<IpNet>) -> Vec<IpNet> {
    v.sort();
    v
}

/// 10.x.y.0/24 for i in 0..n, plus covering /16s every 256.
fn table_prefixes(n: u32) -> Vec<String> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(format!("10.{}.{}.0/24", i / 256, i % 256));
        if i % 256 == 0 {
            v.push(format!("10.{}.0.0/16", i / 256));
        }
    }
    v
}

fn announce_all(rib: &mut Rib, peer: PeerId, prefixes: &[String], attrs: &[A]) {
    let ctx = ibgp_ctx();
    for chunk in prefixes.chunks(200) {
        let p: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let _ = apply(rib, peer, &ctx, &announce(&p, attrs.to_vec(), &ctx));
    }
}

#[test]
fn test_adj_rib_in_pages_hold_exactly_what_the_peer_sent() {
    let mut rib = rr();
    let a = client(&mut rib, 2);
    let b = client(&mut rib, 3);
    let pa = table_prefixes(3000);
    announce_all(&mut rib, a, &pa, &base("10.0.0.2", &[]));
    // Another peer's routes interleave in the Loc-RIB's slots.
    let pb: Vec<String> = (0..500)
        .map(|i| format!("172.{}.{}.0/24", 16 + i / 256, i % 256))
        .collect();
    let pb: Vec<String> = pb
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    announce_all(&mut rib, b, &pb, &base("10.0.0.3", &[]));
    announce_all(&mut rib, b, &pa[..100], &base("10.0.0.3", &[65010]));
    drain(&mut rib);
    let want: Vec<IpNet> = sorted(pa.iter().map(|p| net(p)).collect());
    for limit in [1, 7, 1000, 100_000] {
        let got = all(limit, |c, l| {
            rib.adj_rib_in_page(a, InView::Accepted, &RouteFilter::default(), c, l)
                .unwrap()
        });
        let got = prefixes_in(&got);
        assert_eq!(got.len(), want.len(), "limit {limit}");
        assert_eq!(sorted(got), want, "limit {limit}");
    }
    let got_b = all(100, |c, l| {
        rib.adj_rib_in_page(b, InView::Accepted, &RouteFilter::default(), c, l)
            .unwrap()
    });
    assert_eq!(got_b.len(), pb.len() + 100);
    // a's routes are best (shorter AS_PATH) where b also sent them.
    assert!(
        got_b
            .iter()
            .filter(|r| r.prefix.to_string().starts_with("10."))
            .all(|r| !r.best)
    );
    let counts = rib.peer_counts(b);
    assert_eq!(counts[0].received, pb.len() + 100);
    assert_eq!(counts[0].accepted, pb.len() + 100);
    assert_eq!(counts[0].best, pb.len());
    assert_eq!(counts[1].received, 0);
    // Not a peer (our own routes have no Adj-RIB-In).
    assert!(
        rib.adj_rib_in_page(
            PeerId::LOCAL,
            InView::Accepted,
            &RouteFilter::default(),
            Cursor(0),
            10
        )
        .is_none()
    );
}

#[test]
fn test_prefix_filters_exact_longest_and_more_specifics() {
    let mut rib = rr();
    let a = client(&mut rib, 2);
    let pa = table_prefixes(1024);
    announce_all(&mut rib, a, &pa, &base("10.0.0.2", &[]));
    announce_all(
        &mut rib,
        a,
        &["10.1.5.128/25".to_owned(), "10.0.0.0/8".to_owned()],
        &base("10.0.0.2", &[]),
    );
    let q = |f: RouteFilter| {
        prefixes_in(&all(50, |c, l| {
            rib.adj_rib_in_page(a, InView::Accepted, &f, c, l).unwrap()
        }))
    };
    let f = |p: PrefixQuery| RouteFilter {
        prefix: Some(p),
        ..RouteFilter::default()
    };
    assert_eq!(
        q(f(PrefixQuery::Exact(net("10.1.5.0/24")))),
        [net("10.1.5.0/24")]
    );
    // A host bit set in the query is ignored, as for every prefix typed by hand.
    assert_eq!(
        q(f(PrefixQuery::Exact(net("10.1.5.7/24")))),
        [net("10.1.5.0/24")]
    );
    assert!(q(f(PrefixQuery::Exact(net("10.1.5.0/23")))).is_empty());
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(
        q(f(PrefixQuery::Longest(ip("10.1.5.200")))),
        [net("10.1.5.128/25")]
    );
    assert_eq!(
        q(f(PrefixQuery::Longest(ip("10.1.5.100")))),
        [net("10.1.5.0/24")]
    );
    assert_eq!(
        q(f(PrefixQuery::Longest(ip("10.9.0.1")))),
        [net("10.0.0.0/8")]
    );
    assert!(q(f(PrefixQuery::Longest(ip("11.0.0.1")))).is_empty());
    let more = sorted(q(f(PrefixQuery::OrLonger(net("10.1.0.0/16")))));
    let mut want: Vec<IpNet> = (0..256).map(|i| net(&format!("10.1.{i}.0/24"))).collect();
    want.push(net("10.1.0.0/16"));
    want.push(net("10.1.5.128/25"));
    assert_eq!(more, sorted(want));
    assert_eq!(
        q(f(PrefixQuery::OrLonger(net("10.1.5.0/24")))).len(),
        2,
        "the /24 and its /25"
    );
    // The Loc-RIB's longest match, and through the Loc-RIB listing.
    assert_eq!(
        rib.longest_match(ip("10.1.5.200")),
        Some(net("10.1.5.128/25"))
    );
    assert_eq!(
        rib.longest_match(ip("10.3.255.1")),
        Some(net("10.3.255.0/24"))
    );
    assert_eq!(rib.longest_match(ip("10.200.0.1")), Some(net("10.0.0.0/8")));
    assert_eq!(rib.longest_match(ip("192.0.2.1")), None);
    assert_eq!(rib.longest_match(ip("2001:db8::1")), None);
    let loc: Vec<IpNet> = all(3, |c, l| {
        rib.loc_rib_page(&f(PrefixQuery::OrLonger(net("10.2.0.0/16"))), c, l)
    })
    .into_iter()
    .map(|r| r.0)
    .collect();
    assert_eq!(loc.len(), 257);
    assert!(loc.iter().all(|p| net("10.2.0.0/16").contains(p)));
    // Family: everything is IPv4 here.
    let v6 = RouteFilter {
        family: Some(Family::Ipv6Unicast),
        ..RouteFilter::default()
    };
    assert!(q(v6).is_empty());
    let v4 = RouteFilter {
        family: Some(Family::Ipv4Unicast),
        ..RouteFilter::default()
    };
    assert_eq!(q(v4).len(), pa.len() + 2);
}

#[test]
fn test_attribute_filters_community_and_as_path() {
    let mut rib = rr();
    let a = client(&mut rib, 2);
    let tagged = Community::new(65000, 7);
    let mut with_c = base("10.0.0.2", &[65001, 65002]);
    with_c.push(A::Communities(vec![tagged]));
    let p1: Vec<String> = (0..256).map(|i| format!("10.1.{i}.0/24")).collect();
    let p1: Vec<String> = p1
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let p2: Vec<String> = (0..200).map(|i| format!("10.2.{i}.0/24")).collect();
    announce_all(&mut rib, a, &p1, &with_c);
    announce_all(&mut rib, a, &p2, &base("10.0.0.2", &[65003, 65001]));
    let q = |f: RouteFilter| {
        all(64, |c, l| {
            rib.adj_rib_in_page(a, InView::Accepted, &f, c, l).unwrap()
        })
        .len()
    };
    let community = RouteFilter {
        community: Some(tagged),
        ..RouteFilter::default()
    };
    assert_eq!(q(community), p1.len());
    let contains = RouteFilter {
        as_path_contains: Some(65001),
        ..RouteFilter::default()
    };
    assert_eq!(q(contains), p1.len() + p2.len());
    let origin = RouteFilter {
        origin_as: Some(65001),
        ..RouteFilter::default()
    };
    assert_eq!(q(origin), p2.len());
    let both = RouteFilter {
        origin_as: Some(65002),
        prefix: Some(PrefixQuery::OrLonger(net("10.1.0.0/16"))),
        ..RouteFilter::default()
    };
    assert_eq!(q(both), p1.len());
    let none = RouteFilter {
        origin_as: Some(65002),
        prefix: Some(PrefixQuery::OrLonger(net("10.2.0.0/16"))),
        ..RouteFilter::default()
    };
    assert_eq!(q(none), 0);
}

/// An import policy that rejects 10.2/16 and sets LOCAL_PREF on the rest: with
/// soft-reconfiguration inbound the received view holds the rejected routes too, and the
/// difference is exactly them.
#[test]
fn test_received_and_accepted_differ_by_what_the_policy_rejected() {
    let mut rib = rr();
    let policy = Policy::new(
        vec![
            Rule {
                when: Match {
                    prefixes: vec![PrefixMatch {
                        prefix: net("10.2.0.0/16"),
                        ge: Some(16),
                        le: Some(32),
                    }],
                    ..Match::default()
                },
                then: vec![],
                verdict: Verdict::Reject,
            },
            Rule {
                when: Match::default(),
                then: vec![Modify::SetLocalPref(250)],
                verdict: Verdict::Accept,
            },
        ],
        false,
    )
    .unwrap();
    let mut cfg = PeerConfig::new(IpAddr::V4(v4("0.0.0.0")), 65001);
    cfg.import = Some(Arc::new(policy));
    cfg.soft_reconfiguration_inbound = true;
    let e = up(&mut rib, cfg, 5, ebgp_ctx());
    let c = client(&mut rib, 2);
    let ctx = ebgp_ctx();
    let pa = table_prefixes(1024);
    for chunk in pa.chunks(100) {
        let p: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let _ = apply(
            &mut rib,
            e,
            &ctx,
            &announce(&p, base("192.0.2.9", &[65001]), &ctx),
        );
    }
    let outs = drain(&mut rib);
    let f = RouteFilter::default();
    let received = all(100, |cur, l| {
        rib.adj_rib_in_page(e, InView::Received, &f, cur, l)
            .unwrap()
    });
    let accepted = all(100, |cur, l| {
        rib.adj_rib_in_page(e, InView::Accepted, &f, cur, l)
            .unwrap()
    });
    assert_eq!(received.len(), pa.len());
    let rejected: BTreeSet<IpNet> = pa
        .iter()
        .map(|p| net(p))
        .filter(|p| net("10.2.0.0/16").contains(p))
        .collect();
    assert_eq!(rejected.len(), 257);
    let acc: BTreeSet<IpNet> = prefixes_in(&accepted).into_iter().collect();
    let rec: BTreeSet<IpNet> = prefixes_in(&received).into_iter().collect();
    assert_eq!(
        rec.difference(&acc).copied().collect::<BTreeSet<_>>(),
        rejected
    );
    assert!(
        accepted
            .iter()
            .all(|r| r.attrs.local_pref == Some(250) && r.best)
    );
    // As received: without the LOCAL_PREF the policy set, rejected or not.
    assert!(received.iter().all(|r| r.attrs.local_pref.is_none()));
    assert!(
        received
            .iter()
            .filter(|r| rejected.contains(&r.prefix))
            .all(|r| !r.best && r.ineligible == Some(rib::Ineligible::RejectedByImport))
    );
    assert!(
        received
            .iter()
            .filter(|r| !rejected.contains(&r.prefix))
            .all(|r| r.best && r.ineligible.is_none())
    );
    let counts = rib.peer_counts(e);
    assert_eq!(counts[0].received, pa.len());
    assert_eq!(counts[0].accepted, pa.len() - 257);
    assert_eq!(counts[0].best, pa.len() - 257);
    // What the client got is what the RIB says it sent it.
    let t = table(&received_by(&rib, c, &outs));
    let out = all(77, |cur, l| rib.adj_rib_out_page(c, &f, cur, l).unwrap());
    assert_eq!(out.len(), t.len());
    assert_eq!(rib.peer_counts(c)[0].advertised, t.len());
    for r in &out {
        let got = &t[&Nlri::new(r.prefix)];
        assert_eq!(attr(got, T::LOCAL_PREF), Some(&A::LocalPref(250)));
        assert_eq!(r.attrs.local_pref, Some(250));
        assert_eq!(r.source, e);
        match attr(got, T::NEXT_HOP) {
            Some(A::NextHop(nh)) => assert_eq!(r.attrs.next_hop, Some(NextHop::V4(*nh))),
            other => panic!("no NEXT_HOP: {other:?}"),
        }
    }
    // The source gets nothing back: it is not in a group with anything to send it.
    assert!(
        rib.adj_rib_out_page(e, &f, Cursor(0), 10)
            .is_none_or(|p| p.items.is_empty())
    );
    // The received copies go with their routes: a new announcement of the same routes
    // with other attributes replaces them, and withdrawing everything frees every set.
    for chunk in pa.chunks(100) {
        let p: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let _ = apply(
            &mut rib,
            e,
            &ctx,
            &announce(&p, base("192.0.2.9", &[65001, 65001]), &ctx),
        );
    }
    let received = all(1000, |cur, l| {
        rib.adj_rib_in_page(e, InView::Received, &f, cur, l)
            .unwrap()
    });
    assert_eq!(received.len(), pa.len());
    assert!(
        received
            .iter()
            .all(|r| r.attrs.as_path.route_len() == 2 && r.attrs.local_pref.is_none())
    );
    for chunk in pa.chunks(100) {
        let p: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let _ = apply(&mut rib, e, &ctx, &withdraw(&p, &ctx));
    }
    drain(&mut rib);
    assert_eq!(rib.stats().attr_sets, 0, "every attribute set released");
}

/// Without soft-reconfiguration inbound nothing is kept as received: the received view
/// is what was imported.
#[test]
fn test_without_soft_reconfiguration_nothing_extra_is_kept() {
    let mut rib = rr();
    let policy = Policy::new(
        vec![Rule {
            when: Match::default(),
            then: vec![Modify::SetLocalPref(250)],
            verdict: Verdict::Accept,
        }],
        false,
    )
    .unwrap();
    let mut cfg = PeerConfig::new(IpAddr::V4(v4("0.0.0.0")), 65001);
    cfg.import = Some(Arc::new(policy));
    let e = up(&mut rib, cfg, 5, ebgp_ctx());
    let ctx = ebgp_ctx();
    let _ = apply(
        &mut rib,
        e,
        &ctx,
        &announce(&["10.0.0.0/24"], base("192.0.2.9", &[65001]), &ctx),
    );
    let f = RouteFilter::default();
    let r = rib
        .adj_rib_in_page(e, InView::Received, &f, Cursor(0), 10)
        .unwrap();
    assert_eq!(r.items.len(), 1);
    assert_eq!(r.items[0].attrs.local_pref, Some(250));
    let _ = apply(&mut rib, e, &ctx, &withdraw(&["10.0.0.0/24"], &ctx));
    assert_eq!(rib.stats().attr_sets, 0);
}

fn received_by(
    rib: &Rib,
    peer: PeerId,
    outs: &[(rib::GroupId, rib::Outbound)],
) -> Vec<bgp_wire::update::Update> {
    received(rib, peer, outs, &ibgp_ctx())
}

/// Two clients in one update group: each one's Adj-RIB-Out leaves out its own routes,
/// as the group's audience does on the wire.
#[test]
fn test_adj_rib_out_leaves_out_a_members_own_routes() {
    let mut rib = rr();
    let a = client(&mut rib, 2);
    let b = client(&mut rib, 3);
    assert_eq!(rib.group_of(a), rib.group_of(b));
    let pa = table_prefixes(600);
    let pb: Vec<String> = (0..400)
        .map(|i| format!("172.{}.{}.0/24", 16 + i / 256, i % 256))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    announce_all(&mut rib, a, &pa, &base("10.0.0.2", &[]));
    announce_all(&mut rib, b, &pb, &base("10.0.0.3", &[]));
    let outs = drain(&mut rib);
    let f = RouteFilter::default();
    for (peer, want) in [(a, pb.len()), (b, pa.len())] {
        let out: Vec<OutRoute> = all(50, |c, l| rib.adj_rib_out_page(peer, &f, c, l).unwrap());
        let t = table(&received_by(&rib, peer, &outs));
        assert_eq!(out.len(), want);
        assert_eq!(
            out.iter().map(|r| r.prefix).collect::<BTreeSet<_>>(),
            t.keys().map(|n| n.prefix).collect::<BTreeSet<_>>()
        );
        assert_eq!(rib.peer_counts(peer)[0].advertised, want);
    }
    let g = rib.group_of(a).unwrap();
    let whole = all(1000, |c, l| rib.group_out_page(g, &f, c, l).unwrap());
    assert_eq!(whole.len(), pa.len() + pb.len());
}

/// Page cost at a million routes: each page visits only what it returns (plus the
/// slots between), so a page near the end costs what one near the start does. Run with
/// `cargo test --release -p rib --test query -- --ignored --nocapture`.
#[test]
#[ignore = "a million routes: run in release, prints timings"]
fn bench_pages_of_a_million_routes() {
    use std::time::Instant;
    let mut rib = rr();
    let a = client(&mut rib, 2);
    let b = client(&mut rib, 3);
    let ctx = ibgp_ctx();
    let t0 = Instant::now();
    let n = 1_000_000u32;
    let mut batch: Vec<String> = Vec::with_capacity(500);
    for i in 0..n {
        let o = 16 + (i >> 16);
        batch.push(format!("{o}.{}.{}.0/24", (i >> 8) & 255, i & 255));
        if batch.len() == 500 || i == n - 1 {
            let p: Vec<&str> = batch.iter().map(String::as_str).collect();
            let _ = apply(
                &mut rib,
                a,
                &ctx,
                &announce(&p, base("10.0.0.2", &[]), &ctx),
            );
            batch.clear();
        }
    }
    drain(&mut rib);
    eprintln!("loaded {n} routes in {:?}", t0.elapsed());
    let f = RouteFilter::default();
    let mut cur = Cursor::default();
    let mut pages = 0;
    let mut worst = std::time::Duration::ZERO;
    let mut total = 0;
    let t = Instant::now();
    loop {
        let t1 = Instant::now();
        let p = rib
            .adj_rib_in_page(a, InView::Accepted, &f, cur, 1000)
            .unwrap();
        worst = worst.max(t1.elapsed());
        total += p.items.len();
        pages += 1;
        match p.next {
            Some(c) => cur = c,
            None => break,
        }
    }
    assert_eq!(total, n as usize);
    eprintln!(
        "adj-in: {pages} pages of 1000 in {:?}, slowest page {worst:?}",
        t.elapsed()
    );
    for (name, f) in [
        (
            "more-specifics of a /16 (whole walk)",
            RouteFilter {
                prefix: Some(PrefixQuery::OrLonger(net("31.0.0.0/16"))),
                ..RouteFilter::default()
            },
        ),
        (
            "community nobody has (whole walk)",
            RouteFilter {
                community: Some(Community::new(1, 1)),
                ..RouteFilter::default()
            },
        ),
    ] {
        let t1 = Instant::now();
        let p = rib
            .adj_rib_in_page(a, InView::Accepted, &f, Cursor(0), 1000)
            .unwrap();
        eprintln!(
            "adj-in {name}: {} routes in {:?}",
            p.items.len(),
            t1.elapsed()
        );
    }
    let t1 = Instant::now();
    let p = rib.adj_rib_out_page(b, &f, Cursor(900_000), 1000).unwrap();
    eprintln!(
        "adj-out page at 900000: {} routes in {:?}",
        p.items.len(),
        t1.elapsed()
    );
    let t1 = Instant::now();
    let p = rib.loc_rib_page(&f, Cursor(999_000), 1000);
    eprintln!(
        "loc-rib page at 999000: {} routes in {:?}",
        p.items.len(),
        t1.elapsed()
    );
    let t1 = Instant::now();
    let m = rib.longest_match("31.66.1.7".parse().unwrap());
    eprintln!("longest match {m:?} in {:?}", t1.elapsed());
    let t1 = Instant::now();
    let c = rib.peer_counts(b);
    eprintln!("peer counts {c:?} in {:?}", t1.elapsed());
}
