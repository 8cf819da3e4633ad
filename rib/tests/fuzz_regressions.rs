//! Regressions found by the `rib` fuzz target (fuzz/fuzz_targets/rib.rs), each the
//! minimal sequence that showed the bug.

mod common;
use bgp_wire::attr::{AsPath, AsSegment, AsSegmentType, PathAttribute as A};
use common::*;
use rib::*;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// Found by the `rib` fuzz target; was: a late joiner is sent a withdrawal and then the stale announcement.
#[test]
fn joiner_gets_stale_route_after_withdraw() {
    let mut rib = rr();
    let ctx = ibgp_ctx();
    let a = client(&mut rib, 2);
    let b = client(&mut rib, 3); // same update group as `a`
    let n = nonclient(&mut rib, 4);
    let _ = apply(
        &mut rib,
        n,
        &ctx,
        &announce(&["10.1.0.0/16"], base("192.0.2.1", &[65001]), &ctx),
    );
    drain(&mut rib);
    rib.peer_down(b, false);
    rib.peer_up(
        b,
        Session {
            ctx,
            router_id: router_id(3),
            local: local(),
        },
    );
    let _ = apply(&mut rib, n, &ctx, &withdraw(&["10.1.0.0/16"], &ctx));
    let outs = drain(&mut rib);
    assert!(rib.best(&net("10.1.0.0/16")).is_none());
    assert!(table(&received(&rib, a, &outs, &ctx)).is_empty());
    // b: withdraw (All) first, then the joiner's catch-up announcement (Only(b)).
    let t = table(&received(&rib, b, &outs, &ctx));
    assert!(t.is_empty(), "b is left with a withdrawn route: {t:?}");
}

/// Found by the `rib` fuzz target; was: AS_CONFED_SEQUENCE from an iBGP peer is sent to an eBGP peer after our AS.
#[test]
fn confed_segment_leaks_to_ebgp() {
    let mut rib = rr();
    let ictx = ibgp_ctx();
    let c = client(&mut rib, 2);
    let mut cfg = PeerConfig::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 65001);
    cfg.import = Some(Arc::new(Policy::accept_all()));
    cfg.export = Some(Arc::new(Policy::accept_all()));
    let e = up(&mut rib, cfg, 5, ebgp_ctx());
    let mut path = AsPath::from_sequence([65010]);
    path.segments.insert(
        0,
        AsSegment {
            ty: AsSegmentType(3),
            asns: vec![64512],
        },
    );
    let attrs = vec![
        A::Origin(bgp_wire::attr::Origin::IGP),
        A::AsPath(path),
        A::NextHop(v4("192.0.2.1")),
    ];
    let r = apply(
        &mut rib,
        c,
        &ictx,
        &announce(&["10.1.0.0/16"], attrs, &ictx),
    );
    assert_eq!(r.signal, None);
    assert!(rib.best(&net("10.1.0.0/16")).is_some());
    let outs = drain(&mut rib);
    // Panics in `received`: TreatAsWithdraw, ConfedFromEbgp.
    let _ = received(&rib, e, &outs, &ebgp_ctx());
}

/// Found by the `rib` fuzz target; was: a peer that comes back with a new router ID keeps the old one as ORIGINATOR_ID.
#[test]
fn originator_id_keeps_old_router_id() {
    let mut rib = rr();
    let ctx = ibgp_ctx();
    let a = client(&mut rib, 2);
    let b = client(&mut rib, 3);
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce(&["10.1.0.0/16"], base("192.0.2.1", &[65001]), &ctx),
    );
    drain(&mut rib);
    let new_id = v4("10.255.9.9");
    rib.peer_up(
        a,
        Session {
            ctx,
            router_id: new_id,
            local: local(),
        },
    );
    // The peer re-sends its table on the new session.
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce(&["10.1.0.0/16"], base("192.0.2.1", &[65001]), &ctx),
    );
    rib.peer_down(b, false);
    rib.peer_up(
        b,
        Session {
            ctx,
            router_id: router_id(3),
            local: local(),
        },
    );
    let outs = drain(&mut rib);
    let t = table(&received(&rib, b, &outs, &ctx));
    let attrs = t.values().next().unwrap();
    assert_eq!(
        attr(attrs, bgp_wire::attr::AttrType::ORIGINATOR_ID),
        Some(&A::OriginatorId(new_id))
    );
}

fn local() -> LocalAddrs {
    LocalAddrs {
        v4: Some(RR_ADDR),
        v6: Some("2001:db8::1".parse().unwrap()),
        link_local: Some(ll()),
    }
}
