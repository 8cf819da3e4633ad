//! Late joiners of one turn share one catch-up: one walk of the group's Adj-RIB-Out, one
//! encoding, messages for all of them ([`Audience::Among`]). Each member must still get
//! exactly what it is owed: every other route once, never its own, End-of-RIB after the
//! last, also when a member joins or leaves while a catch-up is under way.

mod common;

use std::collections::BTreeMap;

use bgp_wire::nlri::Nlri;
use bgp_wire::update::Update;
use common::*;
use rib::{Audience, GroupId, Outbound, PeerId, Rib};

/// Client `n`'s own prefix: 10.`n`.0.0/26.
fn block(n: u8) -> String {
    format!("10.{n}.0.0/26")
}

/// Clients 1..=`k` up together, each announcing its block, everything drained.
fn rack(k: u8) -> (Rib, Vec<PeerId>) {
    let mut rib = rr();
    let ctx = ibgp_ctx();
    let ids: Vec<PeerId> = (1..=k).map(|n| client(&mut rib, n)).collect();
    for (i, id) in ids.iter().enumerate() {
        let n = i as u8 + 1;
        let nh = format!("192.0.2.{n}");
        let r = apply(
            &mut rib,
            *id,
            &ctx,
            &announce(&[&block(n)], base(&nh, &[]), &ctx),
        );
        assert_eq!(r.announced, 1);
    }
    drain(&mut rib);
    (rib, ids)
}

/// Drains every group with `budget` per drain until nothing is pending.
fn drain_by(rib: &mut Rib, budget: usize) -> Vec<(GroupId, Outbound)> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let groups = rib.pending_groups();
        if groups.is_empty() {
            return out;
        }
        for g in groups {
            out.extend(rib.drain_group(g, budget).into_iter().map(|o| (g, o)));
        }
    }
    panic!("still pending after 10,000 rounds");
}

/// Per announced NLRI, how many times `updates` announce it; the number of End-of-RIB
/// markers; whether every End-of-RIB comes after the last announcement.
fn tally(updates: &[Update]) -> (BTreeMap<Nlri, usize>, usize, bool) {
    let mut seen = BTreeMap::new();
    let (mut eors, mut eor_last) = (0, true);
    for u in updates {
        if is_eor(u) {
            eors += 1;
            continue;
        }
        assert!(u.withdrawn.is_empty(), "nothing is withdrawn here: {u:?}");
        if eors > 0 {
            eor_last = false;
        }
        for n in &u.nlri {
            *seen.entry(*n).or_default() += 1;
        }
    }
    (seen, eors, eor_last)
}

/// The blocks of clients `1..=k` but `except`, each once.
fn blocks_but(k: u8, except: u8) -> BTreeMap<Nlri, usize> {
    (1..=k)
        .filter(|n| *n != except)
        .map(|n| (Nlri::new(net(&block(n))), 1))
        .collect()
}

/// Checks that client `n` (of `k`) got every other block exactly once and one End-of-RIB
/// per family after them.
fn assert_caught_up(rib: &Rib, id: PeerId, n: u8, k: u8, outs: &[(GroupId, Outbound)]) {
    let got = received(rib, id, outs, &ibgp_ctx());
    let (seen, eors, eor_last) = tally(&got);
    assert_eq!(seen, blocks_but(k, n), "client {n}");
    let families = ibgp_ctx().families.iter().count();
    assert_eq!(eors, families, "client {n}: one End-of-RIB per family");
    assert!(eor_last, "client {n}: End-of-RIB after the table");
}

#[test]
fn test_joiners_of_one_turn_share_one_catch_up() {
    let (mut rib, _) = rack(6);
    // Four more come up before the group is drained again: one catch-up for the four.
    let late: Vec<PeerId> = (7..=10).map(|n| client(&mut rib, n)).collect();
    let outs = drain(&mut rib);
    for (i, id) in late.iter().enumerate() {
        assert_caught_up(&rib, *id, 7 + i as u8, 6, &outs);
    }
    // The six blocks were encoded once for the four, not once per joiner.
    let shared: Vec<&Outbound> = outs
        .iter()
        .map(|(_, o)| o)
        .filter(|o| matches!(o.audience, Audience::Among { .. }))
        .collect();
    let announced: usize = shared.iter().map(|o| o.announced).sum();
    assert_eq!(announced, 6, "each block once for all four joiners");
    let mut members = late.clone();
    members.sort_unstable();
    for o in &shared {
        let Audience::Among { members: m, except } = &o.audience else {
            unreachable!()
        };
        assert_eq!(&m[..], &members[..]);
        assert!(except.is_empty(), "none of the joiners sent a route");
    }
    assert!(
        !outs
            .iter()
            .any(|(_, o)| matches!(o.audience, Audience::Only(_))),
        "nothing for one joiner alone"
    );
}

#[test]
fn test_refresh_of_several_leaves_each_out_of_its_own_route() {
    let (mut rib, ids) = rack(5);
    // Clients 2 and 4 ask for the table again in the same turn: one catch-up for both,
    // the route of each not sent to itself.
    assert!(rib.refresh(ids[1]));
    assert!(rib.refresh(ids[3]));
    let outs = drain(&mut rib);
    assert_caught_up(&rib, ids[1], 2, 5, &outs);
    assert_caught_up(&rib, ids[3], 4, 5, &outs);
    for n in [1u8, 3, 5] {
        let got = received(&rib, ids[n as usize - 1], &outs, &ibgp_ctx());
        assert!(got.is_empty(), "client {n} asked for nothing: {got:?}");
    }
    let excepts: Vec<Vec<PeerId>> = outs
        .iter()
        .filter_map(|(_, o)| match &o.audience {
            Audience::Among { except, .. } => Some(except.clone()),
            _ => None,
        })
        .collect();
    assert!(excepts.contains(&vec![ids[1]]) && excepts.contains(&vec![ids[3]]));
}

#[test]
fn test_member_joining_mid_walk_gets_a_catch_up_of_its_own() {
    let (mut rib, _) = rack(40);
    let a = client(&mut rib, 41);
    let b = client(&mut rib, 42);
    // The first catch-up starts (a few prefixes a drain), then a third joins.
    let g = rib.group_of(a).unwrap();
    let mut outs: Vec<(GroupId, Outbound)> =
        rib.drain_group(g, 4).into_iter().map(|o| (g, o)).collect();
    let c = client(&mut rib, 43);
    // And a fourth before the third's catch-up has started: they share it.
    let d = client(&mut rib, 44);
    outs.extend(drain_by(&mut rib, 4));
    for (id, n) in [(a, 41), (b, 42)] {
        assert_caught_up(&rib, id, n, 40, &outs);
    }
    for (id, n) in [(c, 43), (d, 44)] {
        assert_caught_up(&rib, id, n, 40, &outs);
    }
    let audiences: Vec<Vec<PeerId>> = outs
        .iter()
        .filter_map(|(_, o)| match &o.audience {
            Audience::Among { members, .. } => Some(members.to_vec()),
            _ => None,
        })
        .collect();
    assert!(audiences.iter().all(|m| *m == [a, b] || *m == [c, d]));
    assert!(audiences.iter().any(|m| *m == [a, b]) && audiences.iter().any(|m| *m == [c, d]));
}

#[test]
fn test_member_leaving_mid_walk_holds_up_nobody() {
    let (mut rib, _) = rack(40);
    let a = client(&mut rib, 41);
    let b = client(&mut rib, 42);
    let c = client(&mut rib, 43);
    let g = rib.group_of(a).unwrap();
    let mut outs: Vec<(GroupId, Outbound)> =
        rib.drain_group(g, 4).into_iter().map(|o| (g, o)).collect();
    // b goes while the catch-up it shares with a and c is under way.
    rib.peer_down(b, false);
    let after = drain_by(&mut rib, 4);
    assert!(
        after.iter().all(|(_, o)| !o.audience.includes(b)),
        "nothing more for a member that left"
    );
    outs.extend(after);
    assert_caught_up(&rib, a, 41, 40, &outs);
    assert_caught_up(&rib, c, 43, 40, &outs);
    // The last of a catch-up leaving ends it.
    let d = client(&mut rib, 44);
    drain_by(&mut rib, 4);
    let e = client(&mut rib, 45);
    let _ = rib.drain_group(g, 4);
    rib.peer_down(e, false);
    let rest = drain_by(&mut rib, 4);
    assert!(rest.iter().all(|(_, o)| !o.audience.includes(e)));
    assert!(rib.pending_groups().is_empty());
    let _ = d;
}

#[test]
fn test_changes_during_a_shared_catch_up_land_last() {
    let (mut rib, ids) = rack(40);
    let ctx = ibgp_ctx();
    let a = client(&mut rib, 41);
    let b = client(&mut rib, 42);
    let g = rib.group_of(a).unwrap();
    let mut outs: Vec<(GroupId, Outbound)> =
        rib.drain_group(g, 4).into_iter().map(|o| (g, o)).collect();
    // Client 1 withdraws its block and client 40 moves its to a new next hop while the
    // catch-up runs: the joiners end with the new state.
    let r = apply(&mut rib, ids[0], &ctx, &withdraw(&[&block(1)], &ctx));
    assert_eq!(r.withdrawn, 1);
    let r = apply(
        &mut rib,
        ids[39],
        &ctx,
        &announce(&[&block(40)], base("192.0.2.99", &[]), &ctx),
    );
    assert_eq!(r.announced, 1);
    outs.extend(drain_by(&mut rib, 4));
    for id in [a, b] {
        let t = table(&received(&rib, id, &outs, &ctx));
        let want: Vec<Nlri> = (2..=40).map(|n| Nlri::new(net(&block(n)))).collect();
        assert_eq!(t.keys().copied().collect::<Vec<_>>(), want);
        let nh = attr(
            &t[&Nlri::new(net(&block(40)))],
            bgp_wire::attr::AttrType::NEXT_HOP,
        );
        assert_eq!(
            nh,
            Some(&bgp_wire::attr::PathAttribute::NextHop(v4("192.0.2.99")))
        );
    }
}
