//! Late joiners of one turn share one catch-up: one walk of the group's Adj-RIB-Out, one
//! encoding, messages for all of them ([`Audience::Among`]). Each member must still get
//! exactly what it is owed: every other route once, never its own, End-of-RIB after the
//! last, also when a member joins or leaves while a catch-up is under way.

mod common;

use std::collections::BTreeMap;

use bgp_wire::nlri::Nlri;
use bgp_wire::update::Update;
use common::*;
use rib::{AddPathMode, Audience, GroupId, Outbound, PeerConfig, PeerId, Rib};

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

/// Client `id` announces block `n` again, with next hop `nh`.
fn move_block(rib: &mut Rib, id: PeerId, n: u8, nh: &str) {
    let ctx = ibgp_ctx();
    let r = apply(rib, id, &ctx, &announce(&[&block(n)], base(nh, &[]), &ctx));
    assert_eq!(r.announced, 1);
}

/// One drain of group `g` with a budget of 4: a catch-up started, far from done.
fn first_drain(rib: &mut Rib, g: GroupId) -> Vec<(GroupId, Outbound)> {
    rib.drain_group(g, 4).into_iter().map(|o| (g, o)).collect()
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
    let mut outs = first_drain(&mut rib, g);
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
    let mut outs = first_drain(&mut rib, g);
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
    let mut outs = first_drain(&mut rib, g);
    // Client 1 withdraws its block and client 40 moves its to a new next hop while the
    // catch-up runs: the joiners end with the new state.
    let r = apply(&mut rib, ids[0], &ctx, &withdraw(&[&block(1)], &ctx));
    assert_eq!(r.withdrawn, 1);
    move_block(&mut rib, ids[39], 40, "192.0.2.99");
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

/// Per announced NLRI, how many times `updates` announce it (withdrawals and End-of-RIB
/// markers skipped: they are checked through [`table`]).
fn announcements(updates: &[Update]) -> BTreeMap<Nlri, usize> {
    let mut seen = BTreeMap::new();
    for u in updates.iter().filter(|u| !is_eor(u)) {
        for n in &u.nlri {
            *seen.entry(*n).or_default() += 1;
        }
    }
    seen
}

/// Clients `from..=to` come up in the same turn and each announces its block before the
/// group is drained again (a rack's clients starting at once).
fn join_announcing(rib: &mut Rib, from: u8, to: u8) -> Vec<PeerId> {
    let ctx = ibgp_ctx();
    let ids: Vec<PeerId> = (from..=to).map(|n| client(rib, n)).collect();
    for (id, n) in ids.iter().zip(from..=to) {
        let nh = format!("192.0.2.{n}");
        let r = apply(
            rib,
            *id,
            &ctx,
            &announce(&[&block(n)], base(&nh, &[]), &ctx),
        );
        assert_eq!(r.announced, 1);
    }
    ids
}

#[test]
fn test_joiners_announcing_in_their_first_turn_get_each_block_once() {
    let (mut rib, old) = rack(6);
    // Four come up and announce their blocks in one turn: each of their blocks is both a
    // change for the group and in the joiners' catch-up; each member gets it once.
    let late = join_announcing(&mut rib, 7, 10);
    let outs = drain(&mut rib);
    for (id, n) in late.iter().zip(7u8..) {
        assert_caught_up(&rib, *id, n, 10, &outs);
    }
    for (id, n) in old.iter().zip(1u8..) {
        let got = received(&rib, *id, &outs, &ibgp_ctx());
        let want: BTreeMap<Nlri, usize> = (7..=10)
            .filter(|m| *m != n)
            .map(|m| (Nlri::new(net(&block(m))), 1))
            .collect();
        assert_eq!(tally(&got).0, want, "client {n}: the four new blocks, once");
    }
}

#[test]
fn test_changes_during_a_catch_up_share_one_list_of_members() {
    // Six members served, forty join and announce in one turn: each new block is a change
    // for the six and comes to the forty with their catch-up. The changes' messages name
    // their members through one shared list, each leaving out at most its own source:
    // not a list of the forty (and the source) per block, which grows with blocks times
    // joiners (2,000 by 2,000 in a rack that comes up while its first clients are
    // served).
    let (mut rib, old) = rack(6);
    let late = join_announcing(&mut rib, 7, 46);
    let outs = drain(&mut rib);
    let changes: Vec<&Outbound> = outs
        .iter()
        .map(|(_, o)| o)
        .filter(|o| o.announced > 0 && o.audience.includes(old[0]))
        .collect();
    assert!(!changes.is_empty());
    let mut shared: Option<&std::sync::Arc<[PeerId]>> = None;
    for o in &changes {
        let Audience::Among { members, except } = &o.audience else {
            panic!("a change during a catch-up: {:?}", o.audience);
        };
        assert_eq!(&members[..], &old[..], "the members served before");
        assert!(except.is_empty(), "no member served before sent a block");
        if let Some(s) = shared {
            assert!(std::sync::Arc::ptr_eq(s, members), "one list for the drain");
        }
        shared = Some(members);
    }
    for (id, n) in late.iter().zip(7u8..) {
        assert_caught_up(&rib, *id, n, 46, &outs);
    }
}

#[test]
fn test_a_change_behind_a_catch_up_skips_its_source_and_the_joiners_queued_behind() {
    // Two joiners whose catch-up has passed block 1, two more queued behind them; then
    // client 1 moves block 1 to a new next hop. The change reaches the six served and
    // the first two joiners through one list, leaving out client 1 (its source) only;
    // the last two get the new state from their own catch-up.
    let (mut rib, old) = rack(6);
    let ctx = ibgp_ctx();
    let first: Vec<PeerId> = (7..=8).map(|n| client(&mut rib, n)).collect();
    let g = rib.group_of(first[0]).unwrap();
    let mut outs = first_drain(&mut rib, g);
    let second: Vec<PeerId> = (9..=10).map(|n| client(&mut rib, n)).collect();
    move_block(&mut rib, old[0], 1, "192.0.2.99");
    let before = outs.len();
    outs.extend(drain_by(&mut rib, 4));
    let change: Vec<&Outbound> = outs[before..]
        .iter()
        .map(|(_, o)| o)
        .filter(|o| o.announced > 0 && o.audience.includes(old[1]))
        .collect();
    assert_eq!(change.len(), 1, "block 1's change, once");
    let Audience::Among { members, except } = &change[0].audience else {
        panic!("a change during catch-ups: {:?}", change[0].audience);
    };
    let mut reached: Vec<PeerId> = old.iter().chain(&first).copied().collect();
    reached.sort_unstable();
    assert_eq!(
        &members[..],
        &reached[..],
        "the served and the first joiners"
    );
    assert_eq!(except, &vec![old[0]], "its source, and only it");
    let nh = |id: PeerId| {
        let t = table(&received(&rib, id, &outs, &ctx));
        t.get(&Nlri::new(net(&block(1))))
            .and_then(|a| attr(a, bgp_wire::attr::AttrType::NEXT_HOP).cloned())
    };
    let moved = Some(bgp_wire::attr::PathAttribute::NextHop(v4("192.0.2.99")));
    for id in old[1..].iter().chain(&first).chain(&second) {
        assert_eq!(nh(*id), moved, "{id:?} ends with block 1 moved");
    }
    let own = announcements(&received(&rib, old[0], &outs, &ctx));
    assert!(
        !own.contains_key(&Nlri::new(net(&block(1)))),
        "client 1 never gets its own block"
    );
}

#[test]
fn test_joiners_announcing_over_small_drains_get_each_block_once() {
    // The same with small drains: the joiners' blocks are changes ahead of the
    // catch-up's cursor, behind it, and in a second catch-up queued behind the first.
    let (mut rib, _) = rack(40);
    let first = join_announcing(&mut rib, 41, 44);
    let g = rib.group_of(first[0]).unwrap();
    let mut outs: Vec<(GroupId, Outbound)> =
        rib.drain_group(g, 6).into_iter().map(|o| (g, o)).collect();
    // What went out before the second four joined is not theirs.
    let before = outs.len();
    let second = join_announcing(&mut rib, 45, 48);
    outs.extend(drain_by(&mut rib, 6));
    for (id, n) in first.iter().zip(41u8..) {
        assert_caught_up(&rib, *id, n, 48, &outs);
    }
    for (id, n) in second.iter().zip(45u8..) {
        assert_caught_up(&rib, *id, n, 48, &outs[before..]);
    }
}

#[test]
fn test_changes_ahead_of_a_catch_up_reach_its_members_once() {
    let (mut rib, ids) = rack(40);
    let ctx = ibgp_ctx();
    let a = client(&mut rib, 41);
    let b = client(&mut rib, 42);
    let g = rib.group_of(a).unwrap();
    let mut outs = first_drain(&mut rib, g);
    // While the catch-up runs: block 40 (ahead of its cursor) moves to a new next hop,
    // block 30 (ahead) is withdrawn, drained, then announced again, block 2 (behind)
    // is withdrawn then announced again in one turn.
    move_block(&mut rib, ids[39], 40, "192.0.2.99");
    let _ = apply(&mut rib, ids[29], &ctx, &withdraw(&[&block(30)], &ctx));
    let _ = apply(&mut rib, ids[1], &ctx, &withdraw(&[&block(2)], &ctx));
    outs.extend(rib.drain_group(g, 4).into_iter().map(|o| (g, o)));
    let again = |n: u8| announce(&[&block(n)], base(&format!("192.0.2.{n}"), &[]), &ctx);
    let _ = apply(&mut rib, ids[29], &ctx, &again(30));
    let _ = apply(&mut rib, ids[1], &ctx, &again(2));
    outs.extend(drain_by(&mut rib, 4));
    for (id, n) in [(a, 41u8), (b, 42)] {
        let got = received(&rib, id, &outs, &ctx);
        let counts = announcements(&got);
        // Block 2 was sent before its withdrawal and again after; every other block once.
        let mut want = blocks_but(40, 0);
        *want.get_mut(&Nlri::new(net(&block(2)))).unwrap() = 2;
        assert_eq!(counts, want, "client {n}");
        let t = table(&got);
        assert_eq!(t.len(), 40, "client {n} ends with all 40 blocks");
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

#[test]
fn test_refreshing_member_gets_withdrawals_ahead_of_its_catch_up() {
    // A member that asks for the table again still holds what it had: a route withdrawn
    // ahead of its catch-up's cursor must be withdrawn from it, not merely left out.
    let (mut rib, ids) = rack(40);
    let ctx = ibgp_ctx();
    assert!(rib.refresh(ids[0]));
    let g = rib.group_of(ids[0]).unwrap();
    let mut outs = first_drain(&mut rib, g);
    let r = apply(&mut rib, ids[34], &ctx, &withdraw(&[&block(35)], &ctx));
    assert_eq!(r.withdrawn, 1);
    outs.extend(drain_by(&mut rib, 4));
    let got = received(&rib, ids[0], &outs, &ctx);
    let withdrawn: Vec<Nlri> = got.iter().flat_map(|u| u.withdrawn.clone()).collect();
    assert_eq!(withdrawn, vec![Nlri::new(net(&block(35)))]);
    let counts = announcements(&got);
    let mut want = blocks_but(40, 1);
    want.remove(&Nlri::new(net(&block(35))));
    assert_eq!(counts, want);
}

#[test]
fn test_member_joining_during_the_first_walk_gets_each_route_once() {
    // A group's first walk is under way when a second member joins: it is caught up
    // after the walk, and the walk's messages are not for it.
    let mut rib = rr();
    let ctx = ibgp_ctx();
    let a = client(&mut rib, 1);
    let blocks: Vec<String> = (1..=40).map(block).collect();
    let refs: Vec<&str> = blocks.iter().map(String::as_str).collect();
    let r = apply(
        &mut rib,
        a,
        &ctx,
        &announce(&refs, base("192.0.2.1", &[]), &ctx),
    );
    assert_eq!(r.announced, 40);
    let s = nonclient(&mut rib, 100);
    let g = rib.group_of(s).unwrap();
    let mut outs = first_drain(&mut rib, g);
    // What went out before b joined is not b's.
    let before = outs.len();
    let b = nonclient(&mut rib, 101);
    assert_eq!(rib.group_of(b), Some(g));
    outs.extend(drain_by(&mut rib, 4));
    for (id, from) in [(s, 0), (b, before)] {
        let got = received(&rib, id, &outs[from..], &ctx);
        let (seen, eors, eor_last) = tally(&got);
        assert_eq!(seen, blocks_but(40, 0), "{id:?}");
        assert_eq!(eors, ibgp_ctx().families.iter().count());
        assert!(eor_last);
    }
}

/// A prefix every ADD-PATH client announces.
const ANYCAST: &str = "198.51.100.0/24";

fn add_path_ctx() -> bgp_wire::SessionCtx {
    bgp_wire::SessionCtx {
        add_path_rx: bgp_wire::FamilySet::only(bgp_wire::Family::Ipv4Unicast),
        add_path_tx: bgp_wire::FamilySet::only(bgp_wire::Family::Ipv4Unicast),
        ..ibgp_ctx()
    }
}

/// Client `n`, sent every path (ADD-PATH, RFC 7911).
fn add_path_client(rib: &mut Rib, n: u8) -> PeerId {
    let mut c = PeerConfig::new(std::net::IpAddr::V4(v4("0.0.0.0")), LOCAL_AS);
    c.rr_client = true;
    c.add_path_send = [Some(AddPathMode::All), None];
    up(rib, c, n, add_path_ctx())
}

/// Client `n`'s UPDATE announcing `prefix` via `nh`, under path id 1.
fn add_path_announce(prefix: &str, nh: &str) -> bytes::Bytes {
    let u = Update {
        withdrawn: vec![],
        attributes: base(nh, &[]),
        nlri: vec![Nlri::with_path_id(net(prefix), 1)],
    };
    let mut b = bytes::BytesMut::new();
    u.encode(&tx(&add_path_ctx()), &mut b).unwrap();
    b.freeze()
}

/// Clients `ns` announce their blocks, then the anycast prefix.
fn add_path_announce_all(rib: &mut Rib, ids: &[PeerId], ns: std::ops::RangeInclusive<u8>) {
    let ctx = add_path_ctx();
    for (id, n) in ids.iter().zip(ns.clone()) {
        let nh = format!("192.0.2.{n}");
        let r = apply(rib, *id, &ctx, &add_path_announce(&block(n), &nh));
        assert_eq!(r.announced, 1);
    }
    for (id, n) in ids.iter().zip(ns) {
        let nh = format!("192.0.2.{n}");
        let r = apply(rib, *id, &ctx, &add_path_announce(ANYCAST, &nh));
        assert_eq!(r.announced, 1);
    }
}

#[test]
fn test_add_path_joiners_announcing_get_each_path_once() {
    let ctx = add_path_ctx();
    let mut rib = rr();
    let old: Vec<PeerId> = (1..=20).map(|n| add_path_client(&mut rib, n)).collect();
    add_path_announce_all(&mut rib, &old, 1..=20);
    drain(&mut rib);
    // Four join and announce in one turn; small drains; while their catch-up runs,
    // client 20 moves its anycast path (ahead of the cursor) and client 19 withdraws
    // its own.
    let late: Vec<PeerId> = (21..=24).map(|n| add_path_client(&mut rib, n)).collect();
    add_path_announce_all(&mut rib, &late, 21..=24);
    let g = rib.group_of(late[0]).unwrap();
    let mut outs: Vec<(GroupId, Outbound)> =
        rib.drain_group(g, 3).into_iter().map(|o| (g, o)).collect();
    let r = apply(
        &mut rib,
        old[19],
        &ctx,
        &add_path_announce(ANYCAST, "192.0.2.99"),
    );
    assert_eq!(r.announced, 1);
    let u = Update {
        withdrawn: vec![Nlri::with_path_id(net(ANYCAST), 1)],
        attributes: vec![],
        nlri: vec![],
    };
    let mut b = bytes::BytesMut::new();
    u.encode(&tx(&ctx), &mut b).unwrap();
    let r = apply(&mut rib, old[18], &ctx, &b.freeze());
    assert_eq!(r.withdrawn, 1);
    outs.extend(drain_by(&mut rib, 3));
    for (id, n) in late.iter().zip(21u8..) {
        let got = received(&rib, *id, &outs, &ctx);
        let counts = announcements(&got);
        assert!(
            counts.values().all(|c| *c == 1),
            "client {n}: each path once: {counts:?}"
        );
        let t = table(&got);
        let blocks = t.keys().filter(|k| k.prefix != net(ANYCAST)).count();
        let anycast: Vec<&Nlri> = t.keys().filter(|k| k.prefix == net(ANYCAST)).collect();
        assert_eq!(blocks, 23, "client {n}: every other block");
        // 24 paths but its own and client 19's.
        assert_eq!(anycast.len(), 22, "client {n}: every other anycast path");
        let nexthops: std::collections::BTreeSet<String> = t
            .iter()
            .filter(|(k, _)| k.prefix == net(ANYCAST))
            .filter_map(|(_, a)| match attr(a, bgp_wire::attr::AttrType::NEXT_HOP) {
                Some(bgp_wire::attr::PathAttribute::NextHop(nh)) => Some(nh.to_string()),
                _ => None,
            })
            .collect();
        assert!(nexthops.contains("192.0.2.99") && !nexthops.contains("192.0.2.20"));
        assert!(!nexthops.contains("192.0.2.19"));
    }
}
