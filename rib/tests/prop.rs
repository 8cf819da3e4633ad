//! Property tests: order independence of the Loc-RIB, reflection invariants on the bytes
//! peers receive, and that withdrawing everything frees everything.

mod common;

use std::collections::BTreeMap;

use bgp_wire::attr::{AttrType as T, PathAttribute as A};
use bgp_wire::nlri::Nlri;
use common::*;
use proptest::prelude::*;
use rib::{PathStatus, PeerId, Rib};

/// One announcement: (peer index, prefix index, attribute choices) or a withdrawal.
#[derive(Clone, Debug)]
enum Op {
    Announce {
        peer: usize,
        prefix: u8,
        lp: u32,
        hops: u8,
        med: u32,
        first_as: u32,
        cl: u8,
        orig: Option<u8>,
    },
    Withdraw {
        peer: usize,
        prefix: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..5usize, 0..6u8, prop_oneof![Just(100u32), Just(200)], 0..3u8, 0..3u32, 1..3u32, 0..3u8, proptest::option::of(2..12u8))
            .prop_map(|(peer, prefix, lp, hops, med, first_as, cl, orig)| Op::Announce { peer, prefix, lp, hops, med, first_as, cl, orig }),
        1 => (0..5usize, 0..6u8).prop_map(|(peer, prefix)| Op::Withdraw { peer, prefix }),
    ]
}

fn prefix(i: u8) -> String {
    format!("10.{i}.0.0/16")
}

/// Peers 2..=4 are clients, 5..=6 non-clients.
fn setup() -> (Rib, Vec<PeerId>) {
    let mut rib = rr();
    let mut peers: Vec<PeerId> = (2..5).map(|n| client(&mut rib, n)).collect();
    peers.extend((5..7).map(|n| nonclient(&mut rib, n)));
    (rib, peers)
}

fn run(rib: &mut Rib, peers: &[PeerId], ops: &[Op]) {
    let ctx = ibgp_ctx();
    for o in ops {
        match *o {
            Op::Announce {
                peer,
                prefix: p,
                lp,
                hops,
                med,
                first_as,
                cl,
                orig,
            } => {
                let path: Vec<u32> = (0..hops).map(|h| first_as + u32::from(h)).collect();
                let mut a = base(&format!("192.0.2.{}", peer + 1), &path);
                a.push(A::LocalPref(lp));
                a.push(A::MultiExitDisc(med));
                if cl > 0 {
                    a.push(A::ClusterList(
                        (0..cl).map(|i| v4(&format!("10.200.0.{i}"))).collect(),
                    ));
                }
                if let Some(o) = orig {
                    a.push(A::OriginatorId(router_id(o)));
                }
                let _ = apply(rib, peers[peer], &ctx, &announce(&[&prefix(p)], a, &ctx));
            }
            Op::Withdraw { peer, prefix: p } => {
                let _ = apply(rib, peers[peer], &ctx, &withdraw(&[&prefix(p)], &ctx));
            }
        }
    }
}

/// The Loc-RIB as (prefix -> best peer, best attrs, every path's status), independent of
/// arrival order.
type Snapshot = BTreeMap<String, (PeerId, rib::Attrs, Vec<(PeerId, PathStatus)>)>;

fn snapshot(rib: &Rib) -> Snapshot {
    let mut m = BTreeMap::new();
    for (p, best) in rib.loc_rib() {
        let mut st: Vec<(PeerId, PathStatus)> = rib
            .explain(&p)
            .unwrap()
            .paths
            .iter()
            .map(|x| (x.peer, x.status))
            .collect();
        st.sort_by_key(|x| x.0);
        m.insert(p.to_string(), (best.peer, best.attrs.to_attrs(), st));
    }
    m
}

/// The final state of each peer's announcements: the last op per (peer, prefix).
fn final_ops(ops: &[Op]) -> Vec<Op> {
    let mut last: BTreeMap<(usize, u8), Op> = BTreeMap::new();
    for o in ops {
        let k = match *o {
            Op::Announce { peer, prefix, .. } | Op::Withdraw { peer, prefix } => (peer, prefix),
        };
        last.insert(k, o.clone());
    }
    last.into_values().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The same final set of routes, applied in any order, gives the same Loc-RIB.
    #[test]
    fn prop_loc_rib_independent_of_order(ops in proptest::collection::vec(op(), 1..40), seed in any::<u64>()) {
        let set = final_ops(&ops);
        let mut shuffled = set.clone();
        // A deterministic permutation from the seed.
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let (mut r1, p1) = setup();
        run(&mut r1, &p1, &ops);
        let (mut r2, p2) = setup();
        run(&mut r2, &p2, &shuffled);
        prop_assert_eq!(snapshot(&r1), snapshot(&r2));
    }

    /// Whatever peers send, no peer receives a route it sent or one naming it as
    /// originator, CLUSTER_LIST grows by exactly our cluster ID, and never holds it twice.
    #[test]
    fn prop_reflection_invariants(ops in proptest::collection::vec(op(), 1..40)) {
        let (mut rib, peers) = setup();
        drain(&mut rib);
        run(&mut rib, &peers, &ops);
        let outs = drain(&mut rib);
        let ctx = ibgp_ctx();
        for (i, &p) in peers.iter().enumerate() {
            let t = table(&received(&rib, p, &outs, &ctx));
            for (n, attrs) in &t {
                let best = rib.explain(&n.prefix).unwrap();
                let src = best.paths[0].peer;
                prop_assert_ne!(src, p, "sent back to its source");
                let Some(A::OriginatorId(o)) = attr(attrs, T::ORIGINATOR_ID) else {
                    return Err(TestCaseError::fail("no ORIGINATOR_ID on a reflected route"));
                };
                prop_assert_ne!(*o, router_id(i as u8 + 2), "sent to its originator");
                let Some(A::ClusterList(cl)) = attr(attrs, T::CLUSTER_LIST) else {
                    return Err(TestCaseError::fail("no CLUSTER_LIST on a reflected route"));
                };
                prop_assert_eq!(cl[0], RR_ID);
                prop_assert_eq!(&cl[1..], best.paths[0].attrs.cluster_list());
                prop_assert!(!cl[1..].contains(&RR_ID));
            }
        }
    }

    /// Withdrawing everything (or the peers going down) leaves every table empty and every
    /// interned attribute set freed.
    #[test]
    fn prop_withdraw_all_frees_everything(ops in proptest::collection::vec(op(), 1..40), down in any::<bool>()) {
        let (mut rib, peers) = setup();
        rib.originate(net("192.168.0.0/26"), rib::Attrs::default());
        run(&mut rib, &peers, &ops);
        drain(&mut rib);
        if down {
            for p in &peers {
                rib.peer_down(*p, false);
            }
        } else {
            let wd: Vec<Op> = peers.iter().enumerate()
                .flat_map(|(peer, _)| (0..6).map(move |prefix| Op::Withdraw { peer, prefix }))
                .collect();
            run(&mut rib, &peers, &wd);
        }
        rib.withdraw_local(net("192.168.0.0/26"));
        drain(&mut rib);
        let s = rib.stats();
        prop_assert_eq!((s.prefixes, s.paths, s.attr_sets, s.out_attr_sets, s.adj_out_paths, s.pending), (0, 0, 0, 0, 0, 0));
        let _ = Nlri::new(net("10.0.0.0/8"));
    }
}
