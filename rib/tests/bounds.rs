//! Bounded memory and work in the RIB: peer slots reused, routes rejected by import policy
//! not stored (unless soft-reconfiguration inbound), ADD-PATH paths per prefix per peer
//! bounded and their identifiers allocated in constant time, and extended messages
//! (RFC 8654) packed up to 65535 bytes.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bgp_wire::nlri::Nlri;
use bgp_wire::update::Update;
use bgp_wire::{Family, FamilySet, Framer, SessionCtx};
use common::*;
use rib::addpath::MAX_PATHS_PER_PEER;
use rib::policy::{Match, PrefixMatch, Rule, Verdict};
use rib::{
    AddPathMode, Ineligible, LocalAddrs, PathStatus, PeerConfig, PeerId, Policy, Rib, Session,
};

/// A peer at `addr` (router id the same), up with `ctx`.
fn up_at(rib: &mut Rib, mut cfg: PeerConfig, addr: Ipv4Addr, ctx: SessionCtx) -> PeerId {
    cfg.address = IpAddr::V4(addr);
    let id = rib.add_peer(cfg);
    rib.peer_up(
        id,
        Session {
            ctx,
            router_id: addr,
            local: LocalAddrs {
                v4: Some(RR_ADDR),
                ..LocalAddrs::default()
            },
        },
    )
    .unwrap();
    id
}

fn client_cfg() -> PeerConfig {
    let mut c = PeerConfig::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), LOCAL_AS);
    c.rr_client = true;
    c
}

/// Dynamic neighbours come and go all day: the peer table holds the most peers at once,
/// not every peer ever seen, and a peer in a reused slot starts clean.
#[test]
fn test_peer_slots_of_removed_peers_are_reused() {
    let mut rib = rr();
    let watcher = client(&mut rib, 2);
    let ctx = ibgp_ctx();
    drain(&mut rib);
    let base_slots = rib.peer_slots();
    for round in 0..50u32 {
        // 20 peers at once, each announcing its own /26, then all removed.
        let ids: Vec<PeerId> = (0..20u32)
            .map(|i| {
                let a = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 0)) + round * 20 + i);
                up_at(&mut rib, client_cfg(), a, ctx)
            })
            .collect();
        for (i, id) in ids.iter().enumerate() {
            let p = format!("100.64.{}.{}/26", i, (round % 4) * 64);
            let _ = apply(
                &mut rib,
                *id,
                &ctx,
                &announce(&[&p], base("192.0.2.1", &[]), &ctx),
            );
        }
        let outs = drain(&mut rib);
        assert_eq!(table(&received(&rib, watcher, &outs, &ctx)).len(), 20);
        for id in ids {
            rib.remove_peer(id);
        }
        let outs = drain(&mut rib);
        let withdrawn: usize = received(&rib, watcher, &outs, &ctx)
            .iter()
            .map(|u| u.withdrawn.len())
            .sum();
        assert_eq!(withdrawn, 20, "round {round}");
        assert_eq!(rib.loc_rib().count(), 0, "round {round}");
    }
    // 1000 peers went through 20 slots.
    assert_eq!(rib.peer_slots(), base_slots + 20);
    // A peer in a reused slot is who it says it is: its routes carry its own address.
    let a = Ipv4Addr::new(10, 9, 9, 9);
    let id = up_at(&mut rib, client_cfg(), a, ctx);
    assert!(id.index() < base_slots as u32 + 20);
    let _ = apply(
        &mut rib,
        id,
        &ctx,
        &announce(&["198.51.100.0/24"], base("192.0.2.9", &[]), &ctx),
    );
    let e = rib.explain(&net("198.51.100.0/24")).unwrap();
    assert_eq!(e.paths.len(), 1);
    assert_eq!(e.paths[0].peer, id);
    assert_eq!(rib.peer_config(id).unwrap().address, IpAddr::V4(a));
}

fn reject_policy() -> Arc<Policy> {
    // Accept 198.51.100.0/24 only.
    Arc::new(
        Policy::new(
            vec![Rule {
                when: Match {
                    prefixes: vec![PrefixMatch {
                        prefix: net("198.51.100.0/24"),
                        ge: None,
                        le: None,
                    }],
                    ..Match::default()
                },
                then: vec![],
                verdict: Verdict::Accept,
            }],
            false,
        )
        .unwrap(),
    )
}

/// Rejected routes cost nothing without soft-reconfiguration inbound; a route that the
/// policy accepted and that comes again rejected is gone (implicit withdrawal).
#[test]
fn test_routes_rejected_by_import_are_not_stored() {
    for soft in [false, true] {
        let mut rib = rr();
        let watcher = client(&mut rib, 2);
        let mut cfg = PeerConfig::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 65001);
        cfg.import = Some(reject_policy());
        cfg.soft_reconfiguration_inbound = soft;
        let e = up(&mut rib, cfg, 5, ebgp_ctx());
        drain(&mut rib);
        let ectx = ebgp_ctx();
        let rejected: Vec<String> = (0..1000)
            .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
            .collect();
        let refs: Vec<&str> = rejected.iter().map(String::as_str).collect();
        for chunk in refs.chunks(500) {
            let a = apply(
                &mut rib,
                e,
                &ectx,
                &announce(chunk, base("192.0.2.5", &[65001]), &ectx),
            );
            assert_eq!(a.rejected, chunk.len());
        }
        let a = apply(
            &mut rib,
            e,
            &ectx,
            &announce(&["198.51.100.0/24"], base("192.0.2.5", &[65001]), &ectx),
        );
        assert_eq!((a.announced, a.rejected), (1, 0));
        let outs = drain(&mut rib);
        assert_eq!(table(&received(&rib, watcher, &outs, &ibgp_ctx())).len(), 1);
        let stored = if soft { 1001 } else { 1 };
        assert_eq!(rib.adj_rib_in_len(e), stored, "soft {soft}");
        assert_eq!(rib.loc_rib().count(), 1);
        if soft {
            assert_eq!(
                rib.explain(&net("10.0.7.0/24")).unwrap().paths[0].status,
                PathStatus::Ineligible(Ineligible::RejectedByImport)
            );
        } else {
            assert!(rib.explain(&net("10.0.7.0/24")).is_none());
        }
    }

    // Accepted, then sent again with attributes the policy rejects: withdrawn.
    let mut rib = rr();
    let watcher = client(&mut rib, 2);
    let mut cfg = PeerConfig::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 65001);
    cfg.import = Some(Arc::new(
        Policy::new(
            vec![Rule {
                when: Match {
                    as_path_longer_than: Some(1),
                    ..Match::default()
                },
                then: vec![],
                verdict: Verdict::Reject,
            }],
            true,
        )
        .unwrap(),
    ));
    let e = up(&mut rib, cfg, 5, ebgp_ctx());
    drain(&mut rib);
    let ectx = ebgp_ctx();
    let p = "198.51.100.0/24";
    let _ = apply(
        &mut rib,
        e,
        &ectx,
        &announce(&[p], base("192.0.2.5", &[65001]), &ectx),
    );
    let outs = drain(&mut rib);
    assert_eq!(table(&received(&rib, watcher, &outs, &ibgp_ctx())).len(), 1);
    let a = apply(
        &mut rib,
        e,
        &ectx,
        &announce(&[p], base("192.0.2.5", &[65001, 7, 8]), &ectx),
    );
    assert_eq!((a.rejected, a.withdrawn), (1, 1));
    let outs = drain(&mut rib);
    let got = received(&rib, watcher, &outs, &ibgp_ctx());
    assert_eq!(got.iter().map(|u| u.withdrawn.len()).sum::<usize>(), 1);
    assert_eq!(rib.adj_rib_in_len(e), 0);
    assert!(rib.explain(&net(p)).is_none());
}

fn add_path_ctx() -> SessionCtx {
    SessionCtx {
        ibgp: true,
        add_path_rx: FamilySet::only(Family::Ipv4Unicast),
        add_path_tx: FamilySet::only(Family::Ipv4Unicast),
        ..SessionCtx::default()
    }
}

/// One UPDATE announcing `P` under each of `ids`.
fn paths(ids: impl Iterator<Item = u32>, nh: &str) -> bytes::Bytes {
    let u = Update {
        withdrawn: vec![],
        attributes: base(nh, &[]),
        nlri: ids
            .map(|i| Nlri::with_path_id(net("198.51.100.0/24"), i))
            .collect(),
    };
    let mut b = bytes::BytesMut::new();
    u.encode(&tx(&add_path_ctx()), &mut b).unwrap();
    b.freeze()
}

/// A peer naming its own path identifiers cannot make one prefix hold more than
/// `MAX_PATHS_PER_PEER` of its paths; the others' paths are unaffected.
#[test]
fn test_add_path_paths_per_prefix_per_peer_are_bounded() {
    let mut rib = rr();
    let ctx = add_path_ctx();
    let flood = up_at(&mut rib, client_cfg(), Ipv4Addr::new(10, 0, 0, 2), ctx);
    let other = up_at(&mut rib, client_cfg(), Ipv4Addr::new(10, 0, 0, 3), ctx);
    let mut rx_cfg = client_cfg();
    rx_cfg.add_path_send = [Some(AddPathMode::All), None];
    let all = up_at(&mut rib, rx_cfg, Ipv4Addr::new(10, 0, 0, 4), ctx);
    drain(&mut rib);
    let mut ignored = 0;
    // 10,000 identifiers in 100 UPDATEs.
    for k in 0..100u32 {
        let a = apply(
            &mut rib,
            flood,
            &ctx,
            &paths(k * 100 + 1..=k * 100 + 100, "192.0.2.1"),
        );
        ignored += a.ignored_paths;
    }
    assert_eq!(rib.adj_rib_in_len(flood), MAX_PATHS_PER_PEER);
    assert_eq!(ignored, 10_000 - MAX_PATHS_PER_PEER);
    let a = apply(&mut rib, other, &ctx, &paths(1..=3, "192.0.2.2"));
    assert_eq!(a.ignored_paths, 0);
    assert_eq!(rib.adj_rib_in_len(other), 3);
    // A withdrawal makes room for one more.
    let u = Update {
        withdrawn: vec![Nlri::with_path_id(net("198.51.100.0/24"), 1)],
        attributes: vec![],
        nlri: vec![],
    };
    let mut b = bytes::BytesMut::new();
    u.encode(&tx(&ctx), &mut b).unwrap();
    let _ = apply(&mut rib, flood, &ctx, &b.freeze());
    let a = apply(&mut rib, flood, &ctx, &paths(20_001..=20_002, "192.0.2.1"));
    assert_eq!(a.ignored_paths, 1);
    // Every path stored goes out under an identifier of its own.
    let outs = drain(&mut rib);
    let t = table(&received(&rib, all, &outs, &ctx));
    assert_eq!(t.len(), MAX_PATHS_PER_PEER + 3);
}

/// A prefix announced by a thousand peers (anycast): the identifiers sent are distinct
/// and allocated without a scan per identifier (quadratic per path before, so cubic for
/// the prefix: this took minutes in a debug build).
#[test]
fn test_add_path_ids_for_many_paths_of_one_prefix() {
    let mut rib = rr();
    let ctx = ibgp_ctx();
    let mut rx_cfg = client_cfg();
    rx_cfg.add_path_send = [Some(AddPathMode::All), None];
    let all = up_at(&mut rib, rx_cfg, Ipv4Addr::new(10, 0, 0, 4), add_path_ctx());
    drain(&mut rib);
    let n = 1000u32;
    for i in 0..n {
        let a = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 0)) + i);
        let id = up_at(&mut rib, client_cfg(), a, ctx);
        let nh = Ipv4Addr::from(u32::from(Ipv4Addr::new(192, 0, 2, 0)) + (i % 200)).to_string();
        let _ = apply(
            &mut rib,
            id,
            &ctx,
            &announce(&["198.51.100.0/24"], base(&nh, &[]), &ctx),
        );
    }
    let outs = drain(&mut rib);
    let t = table(&received(&rib, all, &outs, &add_path_ctx()));
    let ids: std::collections::BTreeSet<u32> = t.keys().filter_map(|k| k.path_id).collect();
    assert_eq!(ids.len(), n as usize);
}

/// With RFC 8654 negotiated an update group packs up to 65535 bytes per UPDATE; without,
/// 4096.
#[test]
fn test_extended_messages_pack_up_to_65535_bytes() {
    let mut rib = rr();
    let src = client(&mut rib, 2);
    let ext = SessionCtx {
        extended_message: true,
        ..ibgp_ctx()
    };
    let big = up_at(&mut rib, client_cfg(), Ipv4Addr::new(10, 0, 0, 3), ext);
    let small = client(&mut rib, 4);
    drain(&mut rib);
    let ctx = ibgp_ctx();
    let prefixes: Vec<String> = (0..12_000)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    let refs: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    for chunk in refs.chunks(500) {
        let _ = apply(
            &mut rib,
            src,
            &ctx,
            &announce(chunk, base("192.0.2.1", &[]), &ctx),
        );
    }
    let outs = drain(&mut rib);
    // (length, prefixes) of each UPDATE the peer receives.
    let frames = |peer: PeerId, rx: &SessionCtx| -> Vec<(usize, usize)> {
        let g = rib.group_of(peer).unwrap();
        let mut framer = Framer::new();
        framer.set_extended_message(rx.extended_message);
        outs.iter()
            .filter(|(gid, o)| *gid == g && o.audience.includes(peer))
            .flat_map(|(_, o)| framer.frames(o.bytes.clone()).collect::<Vec<_>>())
            .map(|f| {
                let f = f.unwrap();
                let v = bgp_wire::update::UpdateView::parse(f.body(), rx);
                assert_eq!(v.treatment(), bgp_wire::update::Treatment::Normal);
                (f.bytes.len(), v.nlri().count())
            })
            .collect()
    };
    let (b, s) = (frames(big, &ext), frames(small, &ctx));
    assert_eq!(b.iter().map(|x| x.1).sum::<usize>(), 12_000);
    assert_eq!(s.iter().map(|x| x.1).sum::<usize>(), 12_000);
    let (b, s): (Vec<usize>, Vec<usize>) = (
        b.iter().map(|x| x.0).collect(),
        s.iter().map(|x| x.0).collect(),
    );
    assert!(s.iter().all(|&l| l <= 4096), "{s:?}");
    assert!(b.iter().all(|&l| l <= 65_535), "{b:?}");
    // 12,000 /24s are 48,000 bytes of NLRI: one extended UPDATE (plus End-of-RIB), a dozen
    // small ones.
    let largest = b.iter().copied().max().unwrap();
    assert!(
        largest > 40_000,
        "largest extended UPDATE {largest} bytes: {b:?}"
    );
    assert!(
        b.len() < s.len() / 4,
        "extended {} UPDATEs, standard {}",
        b.len(),
        s.len()
    );
}

/// Withdrawals are looked up a chunk at a time, the slot after the peer's last withdrawn
/// one tried first: in order, in reverse, across chunk boundaries, with duplicates,
/// prefixes never announced and another peer's paths between, every count is exact and
/// only the peer's own paths go.
#[test]
fn test_withdrawals_in_any_order_remove_exactly_the_peers_paths() {
    let mut rib = rr();
    let ctx = ibgp_ctx();
    let (a, b) = (client(&mut rib, 1), client(&mut rib, 2));
    let p = |i: u32| format!("10.{}.{}.0/24", i / 256, i % 256);
    let all: Vec<String> = (0..300).map(p).collect();
    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    for chunk in all.chunks(50) {
        let m = announce(&refs(chunk), base("192.0.2.1", &[]), &ctx);
        assert_eq!(apply(&mut rib, a, &ctx, &m).announced, chunk.len());
    }
    // Peer b holds every third prefix too.
    let thirds: Vec<String> = all.iter().step_by(3).cloned().collect();
    let m = announce(&refs(&thirds), base("192.0.2.2", &[]), &ctx);
    let _ = apply(&mut rib, b, &ctx, &m);
    drain(&mut rib);
    assert_eq!(rib.stats().prefixes, 300);
    assert_eq!(rib.stats().paths, 400);
    // 0..100 in order (more than one chunk), with a duplicate and a stranger inside.
    let mut w: Vec<String> = all[..100].to_vec();
    w.insert(40, all[39].clone());
    w.insert(70, "192.0.2.0/24".into());
    assert_eq!(
        apply(&mut rib, a, &ctx, &withdraw(&refs(&w), &ctx)).withdrawn,
        100
    );
    // 100..200 in reverse, then 200..300 shuffled by a stride.
    let rev: Vec<String> = all[100..200].iter().rev().cloned().collect();
    assert_eq!(
        apply(&mut rib, a, &ctx, &withdraw(&refs(&rev), &ctx)).withdrawn,
        100
    );
    let strided: Vec<String> = (0..100)
        .map(|i| all[200 + (i * 37) % 100].clone())
        .collect();
    assert_eq!(
        apply(&mut rib, a, &ctx, &withdraw(&refs(&strided), &ctx)).withdrawn,
        100
    );
    // Nothing of a's is left; b's paths all are.
    assert_eq!(
        apply(&mut rib, a, &ctx, &withdraw(&refs(&all), &ctx)).withdrawn,
        0
    );
    drain(&mut rib);
    assert_eq!(rib.stats().prefixes, 100);
    assert_eq!(rib.stats().paths, 100);
    // b withdraws its own in order: the RIB is empty, and announcing again finds it so.
    assert_eq!(
        apply(&mut rib, b, &ctx, &withdraw(&refs(&thirds), &ctx)).withdrawn,
        100
    );
    drain(&mut rib);
    assert_eq!(rib.stats().prefixes, 0);
    let m = announce(&refs(&all[..10]), base("192.0.2.1", &[]), &ctx);
    let _ = apply(&mut rib, a, &ctx, &m);
    assert_eq!(rib.stats().prefixes, 10);
    assert_eq!(
        apply(&mut rib, a, &ctx, &withdraw(&refs(&all[..10]), &ctx)).withdrawn,
        10
    );
}
