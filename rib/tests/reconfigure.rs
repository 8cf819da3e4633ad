//! Changing a peer's policies while its session stays up ([`Rib::reconfigure`]): the peer
//! moves to the update group of its new export settings and is sent only the difference.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bgp_wire::attr::{AttrType as T, PathAttribute as A};
use bgp_wire::nlri::Nlri;
use bgp_wire::update::Update;
use common::*;
use rib::policy::{Match, Modify, PrefixMatch, Rule, Verdict};
use rib::{MaxPrefix, NeedsReset, NextHopMode, PeerConfig, PeerId, Policy, Reconfigured};

const EBGP_AS: u32 = 65001;

fn p(s: &str) -> Nlri {
    Nlri::new(net(s))
}

/// Rejects 198.51.100.2/32, sets MED 50 on everything else.
fn filtered() -> Arc<Policy> {
    let reject = Rule {
        when: Match {
            prefixes: vec![PrefixMatch::exact(net("198.51.100.2/32"))],
            ..Match::default()
        },
        then: vec![],
        verdict: Verdict::Reject,
    };
    let rewrite = Rule {
        when: Match::default(),
        then: vec![Modify::SetMed(50)],
        verdict: Verdict::Accept,
    };
    Arc::new(Policy::new(vec![reject, rewrite], false).unwrap())
}

fn ebgp_cfg(export: Arc<Policy>) -> PeerConfig {
    let mut c = PeerConfig::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), EBGP_AS);
    c.export = Some(export);
    c.import = Some(Arc::new(Policy::accept_all()));
    c
}

const PREFIXES: [&str; 3] = ["198.51.100.1/32", "198.51.100.2/32", "198.51.100.3/32"];

/// A reflector with client A (10.0.0.2), which announced `PREFIXES`, and the eBGP peers
/// given, all drained.
fn setup(ebgp: &[(u8, Arc<Policy>)]) -> (rib::Rib, PeerId, Vec<PeerId>, Vec<Update>) {
    let mut rib = rr();
    let a = client(&mut rib, 2);
    let ids: Vec<PeerId> = ebgp
        .iter()
        .map(|(n, pol)| up(&mut rib, ebgp_cfg(pol.clone()), *n, ebgp_ctx()))
        .collect();
    let ctx = ibgp_ctx();
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce(&PREFIXES, base("192.0.2.1", &[]), &ctx),
    );
    let outs = drain(&mut rib);
    let first = received(&rib, ids[0], &outs, &ebgp_ctx());
    (rib, a, ids, first)
}

fn withdrawn(updates: &[Update]) -> Vec<Nlri> {
    updates.iter().flat_map(|u| u.withdrawn.clone()).collect()
}

fn announced(updates: &[Update]) -> Vec<Nlri> {
    updates.iter().flat_map(|u| u.nlri.clone()).collect()
}

#[test]
fn test_established_export_change_sends_only_the_difference() {
    let (mut rib, _, ids, first) = setup(&[(5, Arc::new(Policy::accept_all()))]);
    let e = ids[0];
    assert_eq!(table(&first).len(), 3);
    let mut cfg = rib.peer_config(e).unwrap().clone();
    cfg.export = Some(filtered());
    let r = rib.reconfigure(e, cfg).unwrap();
    assert_eq!(
        r,
        Reconfigured {
            export: true,
            import: false
        }
    );
    let outs = drain(&mut rib);
    let after = received(&rib, e, &outs, &ebgp_ctx());
    // The filtered prefix is withdrawn; the others come again with the new MED; nothing
    // else is withdrawn (no flap), and End-of-RIB ends the new table.
    assert_eq!(withdrawn(&after), vec![p("198.51.100.2/32")]);
    let mut ann = announced(&after);
    ann.sort();
    assert_eq!(ann, vec![p("198.51.100.1/32"), p("198.51.100.3/32")]);
    assert!(after.iter().any(is_eor));
    let mut all = first.clone();
    all.extend(after);
    let t = table(&all);
    assert_eq!(t.len(), 2);
    for k in [p("198.51.100.1/32"), p("198.51.100.3/32")] {
        assert_eq!(
            attr(&t[&k], T::MULTI_EXIT_DISC),
            Some(&A::MultiExitDisc(50))
        );
    }
    // Back to everything: the filtered prefix comes back, nothing is withdrawn.
    let mut cfg = rib.peer_config(e).unwrap().clone();
    cfg.export = Some(Arc::new(Policy::accept_all()));
    assert!(rib.reconfigure(e, cfg).unwrap().export);
    let outs = drain(&mut rib);
    let again = received(&rib, e, &outs, &ebgp_ctx());
    assert!(withdrawn(&again).is_empty());
    all.extend(again);
    let t = table(&all);
    assert_eq!(t.len(), 3);
    assert_eq!(attr(&t[&p("198.51.100.1/32")], T::MULTI_EXIT_DISC), None);
}

#[test]
fn test_established_export_change_joins_existing_group() {
    let filtered = filtered();
    let (mut rib, a, ids, _) = setup(&[(5, Arc::new(Policy::accept_all())), (6, filtered.clone())]);
    let (e, f) = (ids[0], ids[1]);
    let mut cfg = rib.peer_config(e).unwrap().clone();
    // Equal by content, another Arc: still the same group as F.
    cfg.export = Some(Arc::new((*filtered).clone()));
    assert!(rib.reconfigure(e, cfg).unwrap().export);
    assert_eq!(rib.group_of(e), rib.group_of(f));
    // A change while E catches up reaches both.
    let ctx = ibgp_ctx();
    let _ = apply(&mut rib, a, &ctx, &withdraw(&["198.51.100.3/32"], &ctx));
    let outs = drain(&mut rib);
    let got = received(&rib, e, &outs, &ebgp_ctx());
    let mut w = withdrawn(&got);
    w.sort();
    w.dedup();
    assert_eq!(w, vec![p("198.51.100.2/32"), p("198.51.100.3/32")]);
    let t = table(&got);
    assert_eq!(
        t.keys().copied().collect::<Vec<_>>(),
        vec![p("198.51.100.1/32")]
    );
    // F only hears of the withdrawal.
    let got_f = received(&rib, f, &outs, &ebgp_ctx());
    assert_eq!(withdrawn(&got_f), vec![p("198.51.100.3/32")]);
    assert!(announced(&got_f).is_empty());
}

#[test]
fn test_next_hop_mode_change_moves_group() {
    let mut rib = rr();
    let a = client(&mut rib, 2);
    let n = nonclient(&mut rib, 3);
    let ctx = ibgp_ctx();
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce(&PREFIXES, base("192.0.2.1", &[]), &ctx),
    );
    drain(&mut rib);
    let mut cfg = rib.peer_config(n).unwrap().clone();
    cfg.next_hop = NextHopMode::SelfAll;
    assert!(rib.reconfigure(n, cfg).unwrap().export);
    let outs = drain(&mut rib);
    let got = received(&rib, n, &outs, &ctx);
    assert!(withdrawn(&got).is_empty());
    let t = table(&got);
    assert_eq!(t.len(), 3);
    for v in t.values() {
        assert_eq!(attr(v, T::NEXT_HOP), Some(&A::NextHop(RR_ADDR)));
    }
}

#[test]
fn test_import_and_limit_change_keep_group() {
    let (mut rib, a, _, _) = setup(&[(5, Arc::new(Policy::accept_all()))]);
    let g = rib.group_of(a);
    let mut cfg = rib.peer_config(a).unwrap().clone();
    cfg.import = Some(filtered());
    cfg.max_prefix = Some(MaxPrefix {
        limit: 10,
        warn_only: true,
    });
    let r = rib.reconfigure(a, cfg.clone()).unwrap();
    assert_eq!(
        r,
        Reconfigured {
            export: false,
            import: true
        }
    );
    assert_eq!(rib.group_of(a), g);
    assert_eq!(rib.peer_config(a), Some(&cfg));
    assert!(drain(&mut rib).is_empty(), "nothing to send");
    // The same again changes nothing.
    assert_eq!(rib.reconfigure(a, cfg).unwrap(), Reconfigured::default());
}

#[test]
fn test_session_settings_need_reset() {
    let (mut rib, a, ids, _) = setup(&[(5, Arc::new(Policy::accept_all()))]);
    let mut cfg = rib.peer_config(a).unwrap().clone();
    cfg.rr_client = false;
    assert_eq!(rib.reconfigure(a, cfg), Err(NeedsReset("rr_client")));
    let mut cfg = rib.peer_config(ids[0]).unwrap().clone();
    cfg.remote_as = 65009;
    cfg.export = Some(filtered());
    assert_eq!(rib.reconfigure(ids[0], cfg), Err(NeedsReset("remote_as")));
    // Refused changes change nothing.
    assert_eq!(
        rib.peer_config(ids[0]).unwrap().export,
        Some(Arc::new(Policy::accept_all()))
    );
}

#[test]
fn test_down_peer_takes_new_export_at_next_up() {
    let mut rib = rr();
    let a = client(&mut rib, 2);
    let mut cfg = ebgp_cfg(Arc::new(Policy::accept_all()));
    cfg.address = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5));
    let e = rib.add_peer(cfg.clone());
    cfg.export = Some(filtered());
    assert!(rib.reconfigure(e, cfg).unwrap().export);
    assert_eq!(rib.group_of(e), None);
    let ctx = ibgp_ctx();
    let _ = apply(
        &mut rib,
        a,
        &ctx,
        &announce(&PREFIXES, base("192.0.2.1", &[]), &ctx),
    );
    rib.peer_up(
        e,
        rib::Session {
            ctx: ebgp_ctx(),
            router_id: router_id(5),
            local: rib::LocalAddrs::from(IpAddr::V4(RR_ADDR)),
        },
    );
    let outs = drain(&mut rib);
    let t = table(&received(&rib, e, &outs, &ebgp_ctx()));
    assert_eq!(t.len(), 2);
}
