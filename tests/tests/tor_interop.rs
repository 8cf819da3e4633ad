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
    let rss: Vec<String> = f
        .members()
        .iter()
        .filter_map(|m| {
            let kib = interop_tests::rss_kib(m.pid()?)?;
            Some(format!("{} {:.1}", m.name, kib as f64 / 1024.0))
        })
        .collect();
    f.log(&format!("RSS (MiB): {}", rss.join(", ")));
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

/// The sessions of ours `name` other than with `except`: (peer, uptime) now.
fn uptimes_except(f: &Fabric, name: &str, except: &str) -> BTreeMap<String, Option<u64>> {
    let mut u = f.uptimes(name).unwrap_or_else(|e| f.fail(&e));
    u.remove(except);
    u
}

/// Whether every session in `before` stayed up through `elapsed` (its uptime grew by at
/// least that much, less a second of rounding): the sessions that reset, in words.
fn resets(
    before: &BTreeMap<String, Option<u64>>,
    after: &BTreeMap<String, Option<u64>>,
    elapsed: Duration,
) -> Vec<String> {
    before
        .iter()
        .filter(|(peer, up)| {
            let now = after.get(*peer).copied().flatten();
            match (up, now) {
                (Some(b), Some(a)) => a + 1 < b + elapsed.as_secs(),
                _ => true,
            }
        })
        .map(|(peer, up)| format!("{peer}: {up:?} -> {:?}", after.get(peer)))
        .collect()
}

/// Reflector loss: RR1 killed with SIGKILL. N1-N3 keep every route through RR2, with no
/// gap in their kernels (nor anywhere else; polled every 100 ms); RR1 started again
/// relearns every block and the end state is whole again within a few seconds (both
/// sides connect at once: ours retries every second); no session other than RR1's
/// resets at any of our speakers. All ours.
#[test]
fn tor_reflector_loss() {
    reflector_loss("tor");
}

/// [`tor_reflector_loss`] in the mixed topology: N2 (BIRD 1.6, Calico's config) and N3
/// (FRR with zebra) lose RR1 and keep every route through RR2, which is BIRD 2; their
/// kernels too.
#[test]
fn tor_reflector_loss_mixed() {
    reflector_loss("tor-mixed");
}

fn reflector_loss(topology: &str) {
    let mut f = up(topology);
    f.converge("before", CONVERGED_WITHIN);
    let nodes = f.node_names();
    let all: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let rr1 = "10.0.0.1";
    let is_ours = |f: &Fabric, m: &str| f.member(m).imp == Impl::Ours;
    let others: Vec<String> = f
        .members()
        .iter()
        .filter(|m| m.name != "rr1")
        .map(|m| m.name.clone())
        .collect();
    let ours: Vec<String> = others.iter().filter(|m| is_ours(&f, m)).cloned().collect();
    let before: BTreeMap<String, _> = ours
        .iter()
        .map(|m| (m.clone(), uptimes_except(&f, m, rr1)))
        .collect();
    let count = |f: &Fabric, m: &str| {
        f.updates_received_except(m, rr1)
            .unwrap_or_else(|e| f.fail(&e))
    };
    let updates_before: BTreeMap<String, u64> =
        others.iter().map(|m| (m.clone(), count(&f, m))).collect();
    let t0 = Instant::now();
    let watch = f.watch_kernels(&all);
    std::thread::sleep(Duration::from_millis(500));

    f.kill("rr1").unwrap_or_else(|e| f.fail(&e));
    let killed = Instant::now();
    f.log("RR1 killed (SIGKILL)");
    // N1-N3 see RR1 go at once (the kernel closed its sockets).
    let gone = interop_tests::poll_ok(Duration::from_secs(10), Duration::from_millis(50), || {
        for n in ["n1", "n2", "n3"] {
            let up = if is_ours(&f, n) {
                f.uptimes(n)?.get(rr1).copied().flatten().is_some()
            } else {
                f.sessions_down(n)?.is_empty()
            };
            if up {
                return Err(format!("{n} still has RR1 Established"));
            }
        }
        Ok(())
    })
    .unwrap_or_else(|e| f.fail(&format!("RR1's sessions not down: {e}")));
    f.log(&format!(
        "N1-N3 saw RR1 down after {:.2}s",
        gone.as_secs_f64()
    ));
    // Every block through RR2 only at N1-N3, for a while.
    std::thread::sleep(Duration::from_secs(3));
    for n in ["n1", "n2", "n3"] {
        for o in f.topo.nodes.iter().filter(|o| o.name != n) {
            let paths = f
                .rib_paths(n, &o.block.to_string())
                .unwrap_or_else(|e| f.fail(&e));
            if paths.len() != 1 || paths[0].from.as_deref().is_some_and(|a| a != "10.0.0.2") {
                f.fail(&format!("{n}: {}'s block with RR1 dead: {paths:?}", o.name));
            }
        }
    }

    f.start_again("rr1", &[]).unwrap_or_else(|e| f.fail(&e));
    let back = Instant::now();
    f.log(&format!(
        "RR1 started again after {:.1}s down",
        killed.elapsed().as_secs_f64()
    ));
    let relearned =
        interop_tests::poll_ok(Duration::from_secs(15), Duration::from_millis(100), || {
            let have = f.best_prefixes("rr1")?;
            let want: Vec<String> = f.topo.nodes.iter().map(|n| n.block.to_string()).collect();
            let missing: Vec<&String> = want.iter().filter(|b| !have.contains(*b)).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("RR1 lacks {missing:?}"))
            }
        })
        .unwrap_or_else(|e| f.fail(&format!("RR1 did not relearn: {e}")));
    f.log(&format!(
        "RR1 holds all 9 blocks {:.2}s after its start",
        relearned.as_secs_f64()
    ));
    f.converge("RR1 back", Duration::from_secs(15));
    let whole = back.elapsed();
    let (gaps, polls) = watch.stop();
    f.log(&format!(
        "kernel watch: {polls} polls of 9 kernels, {} gap(s)",
        gaps.len()
    ));
    if !gaps.is_empty() {
        f.fail(&format!("routes lost from kernels: {}", gaps_text(&gaps)));
    }
    let elapsed = t0.elapsed();
    for m in &ours {
        let after = uptimes_except(&f, m, rr1);
        let r = resets(&before[m], &after, elapsed);
        if !r.is_empty() {
            f.fail(&format!("{m}: sessions other than RR1's reset: {r:?}"));
        }
    }
    let churn: Vec<String> = others
        .iter()
        .map(|m| format!("{m} {}", count(&f, m) - updates_before[m]))
        .collect();
    f.log(&format!(
        "end state whole {:.1}s after RR1's start; UPDATEs received meanwhile on sessions \
         other than RR1's: {}",
        whole.as_secs_f64(),
        churn.join(", ")
    ));
    // Generous bounds for a loaded machine (measured: RR1 holds every block 0.3-1.5 s
    // after its start, the whole end state 5-6 s, the nodes' damped idle hold time and
    // BIRD 1.6's error wait of 5 s included).
    assert!(
        relearned < Duration::from_secs(5),
        "RR1 took {relearned:?} to relearn every block"
    );
    assert!(
        whole < Duration::from_secs(15),
        "RR1 took {whole:?} to be whole again"
    );
}

/// Node flaps: for a minute, N5's session with RR3 is torn down (TCP reset, `ss -K` in
/// N5's namespace) every 3 s whenever it is up: 20 tries. Our speakers damp peer
/// oscillations (RFC 4271 §8.1.1 DampPeerOscillations, on by default: the idle hold time
/// doubles from 5 s after each failure in a row, up to 120 s), so both ends back off
/// their connects and the session comes back later each time: the test asserts that the
/// delays grow and reports them. N5's block never leaves any kernel (RR4 still reflects
/// it); the UPDATEs every other speaker receives are counted, reported and bounded: at
/// most two per flap per session (a withdrawal and an announcement), which a speaker that
/// amplified the churn would exceed.
#[test]
fn tor_node_session_flaps() {
    const TRIES: u32 = 20;
    const EVERY: Duration = Duration::from_secs(3);
    let f = up("tor");
    f.converge("before", CONVERGED_WITHIN);
    let rr3: Ipv4Addr = "10.0.0.3".parse().expect("addr");
    let up_with_rr3 = || -> Result<bool, String> {
        Ok(f.uptimes("n5")?
            .get("10.0.0.3")
            .copied()
            .flatten()
            .is_some())
    };
    let nodes = f.node_names();
    let watched: Vec<&str> = nodes
        .iter()
        .map(String::as_str)
        .filter(|n| *n != "n5")
        .collect();
    let others: Vec<String> = f
        .members()
        .iter()
        .filter(|m| m.name != "n5" && m.name != "rr3")
        .map(|m| m.name.clone())
        .collect();
    let updates_before: BTreeMap<String, u64> = others
        .iter()
        .map(|m| {
            (
                m.clone(),
                f.updates_received(m).unwrap_or_else(|e| f.fail(&e)),
            )
        })
        .collect();
    let watch = f.watch_kernels(&watched);
    let t0 = Instant::now();
    // Per flap: how long the session took to come back (None: not within the minute).
    let mut flaps: Vec<Option<f64>> = Vec::new();
    let mut skipped = 0;
    let mut last_reset: Option<Instant> = None;
    for i in 0..TRIES {
        let slot = t0 + EVERY * i;
        // Until the slot: note when the last flap's session came back.
        while Instant::now() < slot {
            if let (Some(at), Some(None)) = (last_reset, flaps.last())
                && up_with_rr3().unwrap_or_else(|e| f.fail(&e))
            {
                *flaps.last_mut().expect("a flap") = Some(at.elapsed().as_secs_f64());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !up_with_rr3().unwrap_or_else(|e| f.fail(&e)) {
            skipped += 1;
            continue;
        }
        f.reset_session("n5", rr3).unwrap_or_else(|e| f.fail(&e));
        last_reset = Some(Instant::now());
        flaps.push(None);
    }
    let span = t0.elapsed();
    f.log(&format!(
        "{} flaps, {skipped} tries skipped (session down, backing off) in {:.1}s; back \
         after (s): {:?}",
        flaps.len(),
        span.as_secs_f64(),
        flaps
    ));
    // The damped idle hold time doubles: each flap's session came back later than the
    // one before (5, 10, 20 ... s), the first after about 5 s.
    let back: Vec<f64> = flaps.iter().map_while(|b| *b).collect();
    if back.len() < 2 || back[0] < 3.0 {
        f.fail(&format!("no damping seen: back after {flaps:?}"));
    }
    for w in back.windows(2) {
        if w[1] < 1.5 * w[0] {
            f.fail(&format!("the backoff did not grow: back after {flaps:?}"));
        }
    }
    // Back for good (the idle hold time is at most 120 s), and the whole end state.
    let t = interop_tests::poll_ok(Duration::from_secs(130), Duration::from_millis(100), || {
        if up_with_rr3()? {
            Ok(())
        } else {
            Err("n5 - RR3 down".into())
        }
    })
    .unwrap_or_else(|e| f.fail(&format!("n5 - RR3 not back: {e}")));
    f.log(&format!(
        "n5 - RR3 Established again {:.1}s after the minute",
        t.as_secs_f64()
    ));
    f.converge("after the flaps", Duration::from_secs(15));
    let (gaps, polls) = watch.stop();
    if !gaps.is_empty() {
        f.fail(&format!("N5's flaps cost routes: {}", gaps_text(&gaps)));
    }
    let mut churn = Vec::new();
    let n = flaps.len() as u64;
    for m in &others {
        let d = f.updates_received(m).unwrap_or_else(|e| f.fail(&e)) - updates_before[m];
        churn.push(format!("{m} {d}"));
        let sessions = f.uptimes(m).unwrap_or_else(|e| f.fail(&e)).len() as u64;
        let bound = 2 * n * sessions;
        if d > bound {
            f.fail(&format!(
                "{m} received {d} UPDATEs for {n} flaps over {sessions} sessions (bound \
                 {bound})"
            ));
        }
    }
    f.log(&format!(
        "{polls} kernel polls, no gap; UPDATEs received during the flaps and the \
         recovery: {}",
        churn.join(", ")
    ));
}

/// The Calico upgrade storm: N1, N4 and N7 (one per rack) killed at once and started
/// again with `--graceful-restart` (restart time 30 s, helpers on the reflectors).
/// Nobody loses a route for longer than the restart time: every kernel is polled every
/// 100 ms throughout, the restarted nodes' own included, and the longest gap reported.
#[test]
fn tor_upgrade_storm_graceful_restart() {
    upgrade_storm("tor", &["n1", "n4", "n7"]);
}

/// [`tor_upgrade_storm_graceful_restart`] in the mixed topology: N2 and N8 are BIRD 1.6
/// (Calico's `graceful restart`, started again with `-R`), N4 ours; RR2 (BIRD 2) and RR4
/// (FRR) help with graceful restart on.
#[test]
fn tor_upgrade_storm_mixed() {
    upgrade_storm("tor-mixed", &["n2", "n4", "n8"]);
}

fn upgrade_storm(topology: &str, storm: &[&str]) {
    const RESTART: u16 = 30;
    let mut topo = Topology::named(topology).unwrap_or_else(|e| panic!("{e}"));
    topo.name = format!("{topology}-gr");
    topo.graceful_restart = Some(RESTART);
    let mut f = up_with(topo);
    f.converge("before", CONVERGED_WITHIN);
    let nodes = f.node_names();
    let all: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let watch = f.watch_kernels(&all);
    std::thread::sleep(Duration::from_millis(500));
    for n in storm {
        f.kill(n).unwrap_or_else(|e| f.fail(&e));
    }
    let t0 = Instant::now();
    for n in storm {
        f.start_again(n, &["--graceful-restart"])
            .unwrap_or_else(|e| f.fail(&e));
    }
    f.log(&format!(
        "{} killed and started again as restarting speakers in {:.2}s",
        storm.join(", "),
        t0.elapsed().as_secs_f64()
    ));
    let took = f.converge("after the storm", Duration::from_secs(u64::from(RESTART)));
    // Graceful restart over at every one of our speakers (the restarted peers' End-of-RIB
    // came, no stale route is kept any more), and the end state still whole after it.
    let over = interop_tests::poll_ok(
        Duration::from_secs(u64::from(RESTART) + 10),
        Duration::from_millis(200),
        || {
            for m in f.members().iter().filter(|m| m.imp == Impl::Ours) {
                let v = f.ctl(&m.name, &["peers"])?;
                for p in v.as_array().into_iter().flatten() {
                    if p["graceful_restart_pending"] == true || p["state"] != "Established" {
                        return Err(format!("{}: {} {}", m.name, p["address"], p));
                    }
                }
            }
            Ok(())
        },
    )
    .unwrap_or_else(|e| f.fail(&format!("graceful restart not over: {e}")));
    f.log(&format!(
        "graceful restart over everywhere {:.1}s after the restarts",
        (t0.elapsed()).as_secs_f64().max(over.as_secs_f64())
    ));
    std::thread::sleep(Duration::from_secs(1));
    f.converge("after graceful restart", Duration::from_secs(5));
    let (gaps, polls) = watch.stop();
    let worst = gaps.iter().map(|g| g.length).max().unwrap_or_default();
    f.log(&format!(
        "end state {:.1}s after the restarts; {polls} kernel polls, {} gap(s), longest \
         {:.1}s{}",
        took.as_secs_f64(),
        gaps.len(),
        worst.as_secs_f64(),
        if gaps.is_empty() {
            String::new()
        } else {
            format!(": {}", gaps_text(&gaps))
        }
    ));
    if worst >= Duration::from_secs(u64::from(RESTART)) {
        f.fail(&format!(
            "routes lost for longer than the restart time: {}",
            gaps_text(&gaps)
        ));
    }
    // The restart time is the bound the issue sets; a gap at all is still reported as a
    // failure of graceful restart (a kernel route withdrawn and put back).
    if !gaps.is_empty() {
        f.fail(&format!(
            "graceful restart let routes go: {}",
            gaps_text(&gaps)
        ));
    }
}

// ------------------------------------------------------------------------------ scale

fn load_tool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bgp-load"))
}

/// Reflector `r` (0-based) of the scale run: its address, rack `r / 2`.
fn scale_rr(r: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 10, 0, 1)) + r as u32)
}

/// Client `i`'s address (bgp-load's `--source 127.20.0.1`, one more per client).
fn scale_client(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 20, 0, 1)) + i as u32)
}

/// Our reflector `r` of `racks` racks of `size` clients: its rack's clients (passive:
/// bgp-load only connects), the other reflectors as non-clients, cluster 1.0.R.1.
fn scale_rr_config(r: usize, racks: usize, size: usize) -> String {
    use std::fmt::Write as _;
    let me = scale_rr(r);
    let rack = r / 2;
    let mut s = format!(
        "[speaker]\nasn = 65000\nrouter_id = \"{me}\"\nlisten = [\"{me}:179\"]\n\
         connect_retry = 1\ngraceful_restart = false\n\n\
         [api]\nlisten = \"{me}:9179\"\n\n\
         [[peer_group]]\nname = \"rack\"\nasn = 65000\nrr_client = true\n\
         cluster_id = \"1.0.{rack}.1\"\npassive = true\nfamilies = [\"ipv4-unicast\"]\n\n\
         [[peer_group]]\nname = \"reflectors\"\nasn = 65000\nsource_address = \"{me}\"\n\
         families = [\"ipv4-unicast\"]\n"
    );
    for i in rack * size..(rack + 1) * size {
        let _ = write!(
            s,
            "\n[[peer]]\naddress = \"{}\"\ngroup = \"rack\"\n",
            scale_client(i)
        );
    }
    for o in (0..2 * racks).filter(|&o| o != r) {
        let _ = write!(
            s,
            "\n[[peer]]\naddress = \"{}\"\ngroup = \"reflectors\"\n",
            scale_rr(o)
        );
    }
    s
}

/// The top-of-rack shape at scale: `racks` racks of `size` nodes, each rack served by a
/// pair of our reflectors (2·racks daemons in full mesh as non-clients, on loopback
/// addresses of one namespace), every node a raw client of bgp-load holding a session
/// with both reflectors of its rack and announcing its own /26. Every session must end
/// with exactly the racks·size − 1 other blocks (bgp-load counts them, with nothing
/// unexpected: no own block back, no duplicate). Reports the time and each reflector's
/// RSS.
fn scale(racks: usize, size: usize, timeout_s: u64) {
    let name = format!("tor-scale-{racks}x{size}");
    interop_tests::require_root().unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let log = |what: &str| eprintln!("[{name} +{:6.1}s] {what}", started.elapsed().as_secs_f64());
    let dir = interop_tests::WorkDir::new(&name).unwrap_or_else(|e| panic!("{e}"));
    let ns = interop_tests::Netns::create("tor-scale").unwrap_or_else(|e| panic!("{e}"));
    let mut rrs = Vec::new();
    for r in 0..2 * racks {
        let sub = dir.path().join(format!("rr{r}"));
        std::fs::create_dir_all(&sub).unwrap_or_else(|e| panic!("{e}"));
        let d = interop_tests::Daemon::start(&ns, &sub, exe(), &scale_rr_config(r, racks, size))
            .unwrap_or_else(|e| panic!("{name}: reflector {r}: {e}"));
        rrs.push(d);
    }
    log(&format!("{} reflectors started", rrs.len()));
    // The reflector mesh up: every reflector has its 2·racks − 1 peers Established.
    let mesh = interop_tests::poll_ok(Duration::from_secs(60), Duration::from_millis(500), || {
        for r in 0..2 * racks {
            let v =
                interop_tests::ctl_json(&ns, exe(), &format!("{}:9179", scale_rr(r)), &["peers"])?;
            let up = v
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["state"] == "Established")
                .count();
            if up != 2 * racks - 1 {
                return Err(format!("reflector {r}: {up} of {} up", 2 * racks - 1));
            }
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{name}: the reflector mesh: {e}"));
    log(&format!(
        "reflector mesh up after {:.1}s",
        mesh.as_secs_f64()
    ));
    let targets: Vec<String> = (0..2 * racks)
        .map(|r| format!("{}:179", scale_rr(r)))
        .collect();
    let args: Vec<String> = [
        "fabric",
        "--source",
        &scale_client(0).to_string(),
        "--next-hop",
        "10.200.0.1",
        "--clients",
        &(racks * size).to_string(),
        "--targets",
        &targets.join(","),
        "--rack-size",
        &size.to_string(),
        "--timeout",
        &timeout_s.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let t0 = Instant::now();
    let mut tool = ns
        .spawn(dir.path(), "bgp-load", load_tool(), &args, &[], false)
        .unwrap_or_else(|e| panic!("cannot start bgp-load: {e}"));
    let status = tool
        .wait_exit(Duration::from_secs(timeout_s + 30))
        .unwrap_or_else(|| panic!("{name}: bgp-load still running"));
    let out = std::fs::read_to_string(tool.stdout_path()).unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("{name}: bgp-load printed no JSON ({e}):\n{out}"));
    let rss: Vec<u64> = rrs
        .iter()
        .map(|d| interop_tests::rss_kib(d.pid()).unwrap_or(0))
        .collect();
    let (min, max) = (
        rss.iter().copied().min().unwrap_or(0),
        rss.iter().copied().max().unwrap_or(0),
    );
    let mean = rss.iter().sum::<u64>() / rss.len().max(1) as u64;
    log(&format!(
        "bgp-load: {} sessions up after {}s, every session holding all {} other blocks \
         after {}s (run {:.1}s); reflector RSS min {:.1} / mean {:.1} / max {:.1} MiB",
        report["sessions"],
        report["sessions_up_s"],
        racks * size - 1,
        report["all_complete_s"],
        t0.elapsed().as_secs_f64(),
        min as f64 / 1024.0,
        mean as f64 / 1024.0,
        max as f64 / 1024.0
    ));
    let ok = status.success()
        && report["ok"] == true
        && report["sessions"] == serde_json::json!(2 * racks * size)
        && report["incomplete"].as_array().is_some_and(Vec::is_empty)
        && report["unexpected"] == 0;
    if !ok {
        panic!(
            "{name}: bgp-load did not complete exactly ({status}): {report:#}\n{}\nwork dir: {}",
            rrs[0].transcript(40),
            dir.path().display()
        );
    }
    for d in &mut rrs {
        assert!(d.is_running(), "{name}: a reflector exited");
    }
}

/// The top-of-rack shape at a size for every run: 5 racks of 10 nodes, 10 reflectors.
#[test]
fn tor_scale_5_racks_of_10() {
    scale(5, 10, 60);
}

/// The size: 30 racks of 30 nodes (900 node sessions, each with both
/// reflectors of its rack: 1,800 sessions), 60 reflectors in 30 pairs in full mesh.
/// Measured with release builds (`cargo test --release -p interop-tests --test
/// tor_interop -- --ignored tor_scale_30`): every session held all 899 other blocks
/// 4.3 s after bgp-load's start, each reflector at 10 MiB RSS. Debug builds of 60
/// daemons and bgp-load on a loaded 2-core machine do not keep their sessions' hold
/// timers (90 s) and fail.
#[test]
#[ignore = "60 daemons and 1,800 sessions: run by hand with --release"]
fn tor_scale_30_racks_of_30() {
    scale(30, 30, 240);
}
