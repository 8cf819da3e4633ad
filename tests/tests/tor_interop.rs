//! The seed's top-of-rack topology at full size (nodes N1-N9, reflectors RR1-RR6, three
//! racks with their own cluster IDs, the reflectors in full mesh), described as data in
//! `tests/topologies/*.toml` and brought up by one harness (`interop_tests::Fabric`, one
//! namespace per speaker on one bridge), mixed with BIRD 1.6, BIRD 2 and FRR, and through
//! failures: a reflector killed, a node's session flapping, three nodes restarting at
//! once with graceful restart.
//!
//! The end state every scenario checks (`Fabric::check`): every node holds every other
//! node's block in its RIB, once from each of its rack's reflectors that should send it,
//! with the announcing node as next hop and ORIGINATOR_ID, and CLUSTER_LIST of length 1
//! inside a rack and 2 across racks (its own cluster, then the origin's); and in its
//! kernel (`ip -j route show` in its namespace) exactly once, protocol 12 (`bgp` for the
//! FRR node), via the announcing node; its own block as a blackhole.
//!
//! Needs root and the peers (`tests/scripts/install-peers.sh`). `KEEP_WORK=1` keeps the
//! work dirs; a failed test keeps its own and prints, for every speaker, its state and log.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use interop_tests::{Fabric, Gap, Impl, Topology};

/// Every speaker up and the end state reached, counted from the last start.
const CONVERGED_WITHIN: Duration = Duration::from_secs(60);

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

fn up(name: &str) -> Fabric {
    let topo = Topology::named(name).unwrap_or_else(|e| panic!("{e}"));
    up_with(topo)
}

fn up_with(topo: Topology) -> Fabric {
    let name = topo.name.clone();
    Fabric::up(topo, exe()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn gaps_text(gaps: &[Gap]) -> String {
    gaps.iter()
        .map(|g| {
            format!(
                "{} lacked {}'s block for {:.1}s",
                g.node,
                g.origin,
                g.length.as_secs_f64()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// All ours: six reflectors and nine nodes of our daemon reach the end state.
#[test]
fn tor_all_ours() {
    let f = up("tor");
    f.converge("all ours", CONVERGED_WITHIN);
}

/// Mixed: N2, N5 and N8 BIRD 1.6 on Calico's rendered node config, N3 FRR with zebra;
/// RR2 BIRD 2 and RR4 FRR as reflectors with their racks' cluster IDs: the same end state
/// (read from `birdc` and FRR's JSON where the node is theirs).
#[test]
fn tor_mixed_with_bird_and_frr() {
    let f = up("tor-mixed");
    f.converge("mixed", CONVERGED_WITHIN);
}

/// Per-group cluster IDs in one process: RR2 serves racks r1 (1.0.0.1) and r2 (1.0.0.2)
/// with client-to-client reflection off for r1. The end state holds with the sources it
/// implies: r1's nodes learn each other's blocks from RR1 only, every other block from
/// both rack reflectors; a block crossing RR2 from r1 to r2 carries `[1.0.0.2, 1.0.0.1]`
/// as through two reflectors. RR2's own API shows it, too: one path per r1 client.
#[test]
fn tor_per_group_cluster_ids() {
    let f = up("tor-shared");
    f.converge("per-group cluster IDs", CONVERGED_WITHIN);
    // Seen from RR2: n4's block (r2) reflected to n1 (r1) through both clusters, which
    // the end state already checked at n1; and from n1's view, n2's block from RR1 only.
    let n2_at_n1 = f
        .rib_paths("n1", "10.244.2.0/26")
        .unwrap_or_else(|e| f.fail(&e));
    let from: Vec<Option<String>> = n2_at_n1.iter().map(|p| p.from.clone()).collect();
    if from != [Some("10.0.0.1".to_owned())] {
        f.fail(&format!(
            "n2's block at n1 should come from RR1 only: {n2_at_n1:?}"
        ));
    }
    let n4_at_n1 = f
        .rib_paths("n1", "10.244.4.0/26")
        .unwrap_or_else(|e| f.fail(&e));
    let via_rr2: Vec<_> = n4_at_n1
        .iter()
        .filter(|p| p.from.as_deref() == Some("10.0.0.2"))
        .collect();
    if via_rr2.len() != 1 || via_rr2[0].cluster_list != ["1.0.0.1", "1.0.0.2"] {
        f.fail(&format!("n4's block at n1 via RR2: {n4_at_n1:?}"));
    }
    f.log("n2's block at n1 from RR1 only; n4's via RR2 with CLUSTER_LIST [1.0.0.1, 1.0.0.2]");
}
