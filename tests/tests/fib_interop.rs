//! Kernel programming (node mode, `[fib]`): best paths into the main table of the node's
//! own namespace with protocol 12 (`bird`) and the configured metric, the node's block as
//! a blackhole (`[[originate]] blackhole = true`), withdrawals, a kill -9 and a restart
//! that adopts the routes left in the kernel, routes of other protocols untouched, two
//! equal paths as one multipath route, 1,000 routes of a BIRD 2 peer, the metric from a
//! BIRD 2 peer's LOCAL_PREF, and, across a router between two subnets, a `cross-subnet`
//! IP pool (`via NH dev tunl0 onlink` for the far node only), a pool left to Felix, and a
//! multihop next hop installed via the gateway the kernel reaches it by.
//!
//! IP-in-IP: this machine's kernel has no `ipip` (nor `dummy`) link type
//! (`CONFIG_NET_IPIP` unset), so `tunl0` is a veth named `tunl0` standing in for the
//! device: the route form (`dev tunl0 onlink`) is what is checked, not encapsulation.
//!
//! Only the namespaces each test creates are touched (the host's routing table never):
//! a hub namespace with a bridge, one namespace per node attached to it. The Calico
//! seed's two nodes: kube-node1 (block 192.168.0.0/26) and kube-node2 (192.168.0.64/26).
//! What is asserted is read with `ip -j -n NS route` (and `ip monitor route`).
//!
//! Needs root and BIRD 2 (`sudo tests/scripts/install-peers.sh`). `KEEP_WORK=1` keeps
//! the work dirs; a failed test keeps its and prints where.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use interop_tests::{
    Bird, BirdVersion, Daemon, Hub, KRoute, Netns, Proc, WorkDir, kroutes, poll, require_root,
    wait_for,
};
use serde_json::Value;

const AS: u32 = 64512;
const HOLD: u16 = 3;
const METRIC: u64 = 1024;
const NODE1: &str = "192.0.2.101";
const NODE2: &str = "192.0.2.102";
const BLOCK1: &str = "192.168.0.0/26";
const BLOCK2: &str = "192.168.0.64/26";
/// Sessions up and routes in the kernel.
const CONVERGED_WITHIN: Duration = Duration::from_secs(30);

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

/// Before a restart: a stale route of ours (10.77.0.0/24, as a previous life left it) in
/// `ns`, and `ip monitor route` watching from now on (see [`only_stale_deleted`]).
fn plant_stale_route(ns: &Netns, dir: &Path) -> Proc {
    ns.ip(&[
        "route",
        "add",
        "10.77.0.0/24",
        "via",
        NODE2,
        "proto",
        "12",
        "metric",
        "1024",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    ns.monitor_routes(dir, "node1")
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Stops `monitor` (`ip monitor route` across a restart) and checks what it saw: the
/// stale route 10.77.0.0/24 deleted, and no change to a live route of the blocks.
fn only_stale_deleted(mut monitor: Proc) {
    let _ = monitor.stop(Duration::from_secs(2));
    let events = fs::read_to_string(monitor.stdout_path()).unwrap_or_default();
    let deletes: Vec<&str> = events
        .lines()
        .filter(|l| l.starts_with("Deleted"))
        .collect();
    assert!(
        deletes.len() == 1 && deletes[0].contains("10.77.0.0/24"),
        "only the stale route may be deleted across the restart: {events}"
    );
    assert!(
        !events.lines().any(|l| l.contains("192.168.0.")),
        "no change to a live route across the restart: {events}"
    );
}

/// Every IPv4 route of the main table of `ns`.
fn routes(ns: &Netns) -> Vec<KRoute> {
    kroutes(ns, "-4", "main")
}

fn ours(ns: &Netns) -> Vec<KRoute> {
    routes(ns).into_iter().filter(KRoute::ours).collect()
}

fn blackhole(dst: &str) -> KRoute {
    KRoute::blackhole(dst, METRIC)
}

fn via(dst: &str, gw: &str) -> KRoute {
    KRoute::via(dst, &[gw], METRIC)
}

/// The same routes, in any order.
fn same(a: &[KRoute], b: &[KRoute]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

fn node_config(me: &str, other: &str, block: Option<&str>) -> String {
    let mut c = format!(
        "[speaker]\nasn = {AS}\nrouter_id = \"{me}\"\nlisten = [\"{me}:179\"]\n\
         hold_time = {HOLD}\nconnect_retry = 1\n\n\
         [api]\nlisten = \"{me}:9179\"\n\n\
         [mesh]\nnodes = [\"{me}\", \"{other}\"]\n\n\
         [fib]\ntable = 254\nprotocol = 12\nmetric = {METRIC}\n"
    );
    if let Some(b) = block {
        c.push_str(&format!(
            "\n[[originate]]\nprefix = \"{b}\"\nblackhole = true\n"
        ));
    }
    c
}

fn subdir(dir: &WorkDir, name: &str) -> PathBuf {
    let d = dir.path().join(name);
    fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    d
}

fn node(hub: &Hub, role: &str, addr: &str) -> Netns {
    let ns = Netns::create(role).unwrap_or_else(|e| panic!("{e}"));
    hub.attach(&ns, &[&format!("{addr}/24")])
        .unwrap_or_else(|e| panic!("{e}"));
    ns
}

/// Two of our nodes in a mesh, each with `[fib]` and its block as `[[originate]]
/// blackhole = true`: each kernel holds a blackhole for its own block and the other's block
/// via the other node, protocol 12, metric 1024; a withdrawal at the peer leaves the
/// kernel within a second; kill -9 leaves the routes in the kernel, and the restart adopts
/// them with no delete of a live route while a stale one of ours is removed; routes of
/// other protocols stay untouched throughout.
#[test]
fn mesh_nodes_program_blocks_and_survive_kill() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let dir = WorkDir::new("fib-mesh").unwrap_or_else(|e| panic!("{e}"));
    let hub = Hub::create("hub", &[]).unwrap_or_else(|e| panic!("{e}"));
    let ns1 = node(&hub, "node1", NODE1);
    let ns2 = node(&hub, "node2", NODE2);
    // Another protocol's routes, one of them for the peer's block at another metric.
    ns1.ip(&[
        "route",
        "add",
        "10.9.9.0/24",
        "dev",
        "lo",
        "proto",
        "static",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    ns1.ip(&[
        "route", "add", BLOCK2, "dev", "lo", "proto", "static", "metric", "5000",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let foreign: Vec<KRoute> = routes(&ns1).into_iter().filter(|r| !r.ours()).collect();
    assert_eq!(foreign.iter().filter(|r| r.protocol == "static").count(), 2);

    let mut d1 = Daemon::start(
        &ns1,
        &subdir(&dir, "node1"),
        exe(),
        &node_config(NODE1, NODE2, Some(BLOCK1)),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut d2 = Daemon::start(
        &ns2,
        &subdir(&dir, "node2"),
        exe(),
        &node_config(NODE2, NODE1, Some(BLOCK2)),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let fail = |what: &str, d1: &Daemon, d2: &Daemon| -> ! {
        panic!(
            "{what}\n{}\n{}\nnode1 routes: {:#?}",
            d1.transcript(60),
            d2.transcript(60),
            routes(&ns1)
        )
    };

    let want1 = vec![blackhole(BLOCK1), via(BLOCK2, NODE2)];
    let want2 = vec![via(BLOCK1, NODE1), blackhole(BLOCK2)];
    let t = Instant::now();
    let r = poll(CONVERGED_WITHIN, Duration::from_millis(50), || {
        (same(&ours(&ns1), &want1) && same(&ours(&ns2), &want2)).then_some(())
    });
    if r.is_none() {
        fail("kernel routes of the mesh", &d1, &d2);
    }
    eprintln!(
        "mesh: both kernels programmed {:?} after the start",
        t.elapsed()
    );

    // Withdrawal at the peer: its block leaves node 1's kernel within a second.
    d2.reload(&node_config(NODE2, NODE1, None))
        .unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    let gone = poll(Duration::from_secs(1), Duration::from_millis(10), || {
        same(&ours(&ns1), &[blackhole(BLOCK1)]).then_some(())
    });
    if gone.is_none() {
        fail(
            "withdrawn block still in node 1's kernel after 1 s",
            &d1,
            &d2,
        );
    }
    eprintln!(
        "mesh: withdrawn block left node 1's kernel in {:?}",
        t.elapsed()
    );
    wait_for("node 2's blackhole gone", Duration::from_secs(2), || {
        let o = ours(&ns2);
        same(&o, &[via(BLOCK1, NODE1)])
            .then_some(())
            .ok_or(format!("{o:?}"))
    });
    d2.reload(&node_config(NODE2, NODE1, Some(BLOCK2)))
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for(
        "block back in node 1's kernel",
        Duration::from_secs(2),
        || {
            let o = ours(&ns1);
            same(&o, &want1).then_some(()).ok_or(format!("{o:?}"))
        },
    );

    // kill -9: the routes stay. A stale route of ours, as a previous life left it.
    d1.kill().unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(300));
    let after_kill = ours(&ns1);
    assert!(same(&after_kill, &want1), "after kill -9: {after_kill:?}");
    let monitor = plant_stale_route(&ns1, dir.path());
    std::thread::sleep(Duration::from_millis(200));
    let mark = d1.log_mark();
    d1.start_again(&[]).unwrap_or_else(|e| panic!("{e}"));
    if d1
        .wait_log(mark, Duration::from_secs(20), |l| {
            l.contains("fib: initial sync over")
        })
        .is_err()
    {
        fail("no end of the initial sync after the restart", &d1, &d2);
    }
    let adopted = d1
        .log_since(mark)
        .into_iter()
        .find(|l| l.contains("adopted our routes"))
        .unwrap_or_default();
    assert!(adopted.contains("routes=3"), "{adopted}");
    wait_for(
        "stale route of ours removed",
        Duration::from_secs(2),
        || {
            let o = ours(&ns1);
            same(&o, &want1).then_some(()).ok_or(format!("{o:?}"))
        },
    );
    std::thread::sleep(Duration::from_millis(300));
    only_stale_deleted(monitor);

    // Other protocols' routes: untouched throughout.
    let now_foreign: Vec<KRoute> = routes(&ns1).into_iter().filter(|r| !r.ours()).collect();
    assert_eq!(now_foreign, foreign);
    drop((d1, d2));
}

/// A BIRD 2 peer announcing 1,000 prefixes: all land in our node's kernel via the peer,
/// protocol 12, metric 1024; its static protocol disabled, all leave.
#[test]
fn thousand_routes_from_bird2_land_in_kernel() {
    const N: usize = 1000;
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let dir = WorkDir::new("fib-1000").unwrap_or_else(|e| panic!("{e}"));
    let hub = Hub::create("hub", &[]).unwrap_or_else(|e| panic!("{e}"));
    let ns1 = node(&hub, "node1", NODE1);
    let ns2 = node(&hub, "bird2", NODE2);
    let prefixes: Vec<String> = (0..N)
        .map(|i| format!("10.{}.{}.0/24", 100 + i / 256, i % 256))
        .collect();
    let statics: String = prefixes
        .iter()
        .map(|p| format!("  route {p} blackhole;\n"))
        .collect();
    let body = format!(
        "router id {NODE2};\n\
         protocol device {{ scan time 10; }}\n\
         protocol static s1 {{\n  ipv4;\n{statics}}}\n\
         protocol bgp ours {{\n\
         \x20 local {NODE2} as {AS};\n\
         \x20 neighbor {NODE1} as {AS};\n\
         \x20 direct;\n\
         \x20 hold time {HOLD};\n\
         \x20 keepalive time 1;\n\
         \x20 connect retry time 1;\n\
         \x20 connect delay time 1;\n\
         \x20 error wait time 1,2;\n\
         \x20 ipv4 {{ import all; export all; next hop self; }};\n\
         }}\n"
    );
    let d1 = Daemon::start(
        &ns1,
        &subdir(&dir, "node1"),
        exe(),
        &format!(
            "[speaker]\nasn = {AS}\nrouter_id = \"{NODE1}\"\nlisten = [\"{NODE1}:179\"]\n\
             hold_time = {HOLD}\nconnect_retry = 1\n\n\
             [api]\nlisten = \"{NODE1}:9179\"\n\n\
             [[peer]]\naddress = \"{NODE2}\"\nasn = {AS}\n\n\
             [fib]\ntable = 254\nmetric_from_local_pref = false\n\n\
             [[originate]]\nprefix = \"{BLOCK1}\"\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let t0 = Instant::now();
    let bird = Bird::start_config(
        BirdVersion::V2,
        &ns2,
        &subdir(&dir, "bird"),
        "node2",
        "ours",
        false,
        &body,
    )
    .unwrap_or_else(|e| panic!("cannot start BIRD 2: {e}"));
    let count = |ns: &Netns| {
        ours(ns)
            .iter()
            .filter(|r| r.kind == "unicast" && r.gateways == [NODE2] && r.metric == METRIC)
            .count()
    };
    let mut first = None;
    let all = poll(CONVERGED_WITHIN, Duration::from_millis(10), || {
        let n = count(&ns1);
        if n > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        (n == N).then(Instant::now)
    });
    let Some(all) = all else {
        panic!(
            "{} of {N} routes in the kernel\n{}\nBIRD: {}",
            count(&ns1),
            d1.transcript(40),
            bird.birdc(&["show", "protocols", "all", "ours"])
                .unwrap_or_default()
        );
    };
    let first = first.expect("first seen");
    eprintln!(
        "1,000 routes: first in the kernel {:?} after BIRD's start, all {:?} after the first",
        first - t0,
        all - first
    );
    // The kernel side alone, from the daemon's log: operations per batch and its time.
    for l in d1.log().lines().filter(|l| l.contains("fib: batch done")) {
        eprintln!("  {}", l.find("batch done").map_or(l, |i| &l[i..]));
    }
    let got: Vec<String> = ours(&ns1)
        .into_iter()
        .filter(|r| r.kind == "unicast")
        .map(|r| r.dst)
        .collect();
    let mut want = prefixes.clone();
    want.sort();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want);
    let holes: Vec<KRoute> = ours(&ns1)
        .into_iter()
        .filter(|r| r.kind == "blackhole")
        .collect();
    assert!(same(&holes, &[blackhole(BLOCK1)]), "{holes:?}");

    bird.birdc(&["disable", "s1"])
        .unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    wait_for("all 1,000 gone", Duration::from_secs(10), || {
        let n = count(&ns1);
        (n == 0).then_some(()).ok_or(format!("{n} left"))
    });
    eprintln!("1,000 withdrawals out of the kernel in {:?}", t.elapsed());
    drop(d1);
}

/// Two equal best paths (our node 2 and a BIRD 2 node 3 announce one prefix) are one
/// multipath route in node 1's kernel; when one path goes, the route becomes a plain one
/// via the other.
#[test]
fn equal_paths_are_one_multipath_route() {
    const NODE3: &str = "192.0.2.103";
    const SHARED: &str = "10.200.0.0/24";
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let dir = WorkDir::new("fib-ecmp").unwrap_or_else(|e| panic!("{e}"));
    let hub = Hub::create("hub", &[]).unwrap_or_else(|e| panic!("{e}"));
    let ns1 = node(&hub, "node1", NODE1);
    let ns2 = node(&hub, "node2", NODE2);
    let ns3 = node(&hub, "bird3", NODE3);
    let peer = |me: &str, other: &str| {
        format!(
            "[speaker]\nasn = {AS}\nrouter_id = \"{me}\"\nlisten = [\"{me}:179\"]\n\
             hold_time = {HOLD}\nconnect_retry = 1\n\n\
             [api]\nlisten = \"{me}:9179\"\n\n\
             [[peer]]\naddress = \"{other}\"\nasn = {AS}\n"
        )
    };
    let d1 = Daemon::start(
        &ns1,
        &subdir(&dir, "node1"),
        exe(),
        &format!(
            "{}\n[[peer]]\naddress = \"{NODE3}\"\nasn = {AS}\n\n\
             [fib]\ntable = 254\nmetric_from_local_pref = false\n",
            peer(NODE1, NODE2)
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let d2 = Daemon::start(
        &ns2,
        &subdir(&dir, "node2"),
        exe(),
        &format!("{}\n[[route]]\nprefix = \"{SHARED}\"\n", peer(NODE2, NODE1)),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let body = format!(
        "router id {NODE3};\n\
         protocol device {{ scan time 10; }}\n\
         protocol static s1 {{ ipv4; route {SHARED} blackhole; }}\n\
         protocol bgp ours {{\n\
         \x20 local {NODE3} as {AS};\n\
         \x20 neighbor {NODE1} as {AS};\n\
         \x20 direct;\n\
         \x20 hold time {HOLD};\n\
         \x20 keepalive time 1;\n\
         \x20 connect retry time 1;\n\
         \x20 connect delay time 1;\n\
         \x20 error wait time 1,2;\n\
         \x20 ipv4 {{ import all; export all; next hop self; }};\n\
         }}\n"
    );
    let bird = Bird::start_config(
        BirdVersion::V2,
        &ns3,
        &subdir(&dir, "bird"),
        "node3",
        "ours",
        false,
        &body,
    )
    .unwrap_or_else(|e| panic!("cannot start BIRD 2: {e}"));
    let multipath = KRoute {
        gateways: vec![NODE2.into(), NODE3.into()],
        ..via(SHARED, NODE2)
    };
    let r = poll(CONVERGED_WITHIN, Duration::from_millis(50), || {
        same(&ours(&ns1), std::slice::from_ref(&multipath)).then_some(())
    });
    if r.is_none() {
        panic!(
            "no multipath route: {:?}\n{}\n{}",
            ours(&ns1),
            d1.transcript(40),
            d2.transcript(20)
        );
    }
    bird.birdc(&["disable", "s1"])
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for("back to one path", Duration::from_secs(2), || {
        let o = ours(&ns1);
        same(&o, &[via(SHARED, NODE2)])
            .then_some(())
            .ok_or(format!("{o:?}"))
    });
    drop((d1, d2));
}

/// `ip -j route show DST` in `ns`'s main table: the route of ours for `dst`, as JSON.
fn our_route(ns: &Netns, dst: &str) -> Option<Value> {
    let out = ns
        .ip(&["-j", "-d", "route", "show", "table", "main", dst])
        .ok()?;
    let v: Value = serde_json::from_str(&out).ok()?;
    v.as_array()?
        .iter()
        .find(|r| matches!(r["protocol"].as_str(), Some("bird" | "12")))
        .cloned()
}

/// A speaker config of ours with `[[peer]]`s and extra sections.
fn speaker_config(me: &str, peers: &[&str], extra: &str) -> String {
    let mut c = format!(
        "[speaker]\nasn = {AS}\nrouter_id = \"{me}\"\nlisten = [\"{me}:179\"]\n\
         hold_time = {HOLD}\nconnect_retry = 1\n\n[api]\nlisten = \"{me}:9179\"\n\n"
    );
    for p in peers {
        c.push_str(&format!("[[peer]]\naddress = \"{p}\"\nasn = {AS}\n\n"));
    }
    c.push_str(extra);
    c
}

/// Node 1 and node 2 on 192.0.2.0/24, node 3 on 198.51.100.0/24, a router between the
/// two (the hub's namespace, 192.0.2.1 and 198.51.100.1). Node 1 (ours, `[fib]` with
/// `node_subnet = 192.0.2.0/24` and the pool 192.168.0.0/16 `cross-subnet`) peers with
/// both over iBGP (multihop). Node 2's block goes in via node 2 (same subnet, no tunnel);
/// node 3's block via node 3 `dev tunl0 onlink`; node 3's 10.30.0.0/24 (outside every
/// pool) via the router, the gateway the kernel reaches node 3 by; node 3's 10.60.1.0/24,
/// inside a pool with `install = false`, not at all. Metric 1024 everywhere: the blocks
/// are announced with LOCAL_PREF 2147482623 (`metric = 1024`).
#[test]
fn cross_subnet_pool_tunnels_far_node_and_resolves_multihop_gateway() {
    const NODE3: &str = "198.51.100.103";
    const ROUTER_A: &str = "192.0.2.1";
    const ROUTER_B: &str = "198.51.100.1";
    const BLOCK3: &str = "192.168.0.128/26";
    const FAR: &str = "10.30.0.0/24";
    const FELIX: &str = "10.60.1.0/24";
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let dir = WorkDir::new("fib-ipip").unwrap_or_else(|e| panic!("{e}"));
    let hub = Hub::create("router", &[&format!("{ROUTER_A}/24")]).unwrap_or_else(|e| panic!("{e}"));
    let router = hub.ns();
    router
        .exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])
        .unwrap_or_else(|e| panic!("{e}"));
    let ns1 = node(&hub, "node1", NODE1);
    let ns2 = node(&hub, "node2", NODE2);
    let ns3 = Netns::create("node3").unwrap_or_else(|e| panic!("{e}"));
    interop_tests::Link::named(
        router,
        "side-b",
        &[&format!("{ROUTER_B}/24")],
        &ns3,
        "eth0",
        &[&format!("{NODE3}/24")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for ns in [&ns1, &ns2] {
        ns.ip(&["route", "add", "198.51.100.0/24", "via", ROUTER_A])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    ns3.ip(&["route", "add", "192.0.2.0/24", "via", ROUTER_B])
        .unwrap_or_else(|e| panic!("{e}"));
    // tunl0: a veth of that name (no ipip on this kernel, see the module docs).
    ns1.ip(&[
        "link", "add", "tunl0", "type", "veth", "peer", "name", "tunl0p",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    for dev in ["tunl0", "tunl0p"] {
        ns1.ip(&["link", "set", dev, "up"])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    let d1 = Daemon::start(
        &ns1,
        &subdir(&dir, "node1"),
        exe(),
        &speaker_config(
            NODE1,
            &[NODE2, NODE3],
            "[fib]\ntable = 254\nnode_subnet = \"192.0.2.0/24\"\n\n\
             [[fib.ip_pool]]\nprefix = \"192.168.0.0/16\"\nipip = \"cross-subnet\"\n\n\
             [[fib.ip_pool]]\nprefix = \"10.60.0.0/16\"\nipip = \"always\"\ninstall = false\n",
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let d2 = Daemon::start(
        &ns2,
        &subdir(&dir, "node2"),
        exe(),
        &speaker_config(
            NODE2,
            &[NODE1],
            &format!("[[originate]]\nprefix = \"{BLOCK2}\"\nmetric = 1024\n"),
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let d3 = Daemon::start(
        &ns3,
        &subdir(&dir, "node3"),
        exe(),
        &speaker_config(
            NODE3,
            &[NODE1],
            &format!(
                "[[originate]]\nprefix = \"{BLOCK3}\"\nmetric = 1024\n\n\
                 [[route]]\nprefix = \"{FAR}\"\nlocal_pref = 2147482623\n\n\
                 [[route]]\nprefix = \"{FELIX}\"\n"
            ),
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let t = Instant::now();
    let got = poll(CONVERGED_WITHIN, Duration::from_millis(50), || {
        Some((
            our_route(&ns1, BLOCK2)?,
            our_route(&ns1, BLOCK3)?,
            our_route(&ns1, FAR)?,
        ))
    });
    let Some((near, far_block, far)) = got else {
        panic!(
            "routes of node 1: {:#?}\n{}\n{}\n{}",
            routes(&ns1),
            d1.transcript(60),
            d2.transcript(20),
            d3.transcript(20)
        );
    };
    eprintln!(
        "cross-subnet: node 1's kernel programmed {:?} after the start",
        t.elapsed()
    );
    let flags = |r: &Value| -> Vec<String> {
        r["flags"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Same subnet: a plain route via node 2.
    assert_eq!(near["gateway"], NODE2, "{near}");
    assert_eq!(near["dev"], "eth0", "{near}");
    assert!(!flags(&near).contains(&"onlink".to_owned()), "{near}");
    assert_eq!(near["metric"], METRIC, "{near}");
    // Other subnet, inside the pool: via node 3 through tunl0, onlink.
    assert_eq!(far_block["gateway"], NODE3, "{far_block}");
    assert_eq!(far_block["dev"], "tunl0", "{far_block}");
    assert!(
        flags(&far_block).contains(&"onlink".to_owned()),
        "{far_block}"
    );
    assert_eq!(far_block["metric"], METRIC, "{far_block}");
    // Outside every pool, next hop two hops away: via the router.
    assert_eq!(far["gateway"], ROUTER_A, "{far}");
    assert_eq!(far["dev"], "eth0", "{far}");
    assert_eq!(far["metric"], METRIC, "{far}");
    let shown = ns1.ip(&["route", "show", BLOCK3]).unwrap_or_default();
    eprintln!("cross-subnet: {}", shown.trim());
    // The pool left to Felix: learned, never installed.
    std::thread::sleep(Duration::from_millis(500));
    assert!(our_route(&ns1, FELIX).is_none(), "{:?}", routes(&ns1));
    drop((d1, d2, d3));
}

/// A BIRD 2 peer announces one prefix with LOCAL_PREF 200 and one with BIRD's default
/// (100): our node installs them with metrics 2147483447 and 2147483547 (Calico 3.32's
/// `2147483647 - LOCAL_PREF`).
#[test]
fn metric_follows_local_pref_of_bird2_peer() {
    const PREF200: &str = "10.50.0.0/24";
    const PREF100: &str = "10.51.0.0/24";
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let dir = WorkDir::new("fib-lp").unwrap_or_else(|e| panic!("{e}"));
    let hub = Hub::create("hub", &[]).unwrap_or_else(|e| panic!("{e}"));
    let ns1 = node(&hub, "node1", NODE1);
    let ns2 = node(&hub, "bird2", NODE2);
    let body = |lp: u32| {
        format!(
            "router id {NODE2};\n\
             protocol device {{ scan time 10; }}\n\
             protocol static s1 {{ ipv4; route {PREF200} blackhole; route {PREF100} blackhole; }}\n\
             protocol bgp ours {{\n\
             \x20 local {NODE2} as {AS};\n\
             \x20 neighbor {NODE1} as {AS};\n\
             \x20 direct;\n\
             \x20 hold time {HOLD};\n\
             \x20 keepalive time 1;\n\
             \x20 connect retry time 1;\n\
             \x20 connect delay time 1;\n\
             \x20 error wait time 1,2;\n\
             \x20 ipv4 {{ import all; next hop self;\n\
             \x20   export filter {{ if net = {PREF200} then bgp_local_pref = {lp}; accept; }}; }};\n\
             }}\n"
        )
    };
    let d1 = Daemon::start(
        &ns1,
        &subdir(&dir, "node1"),
        exe(),
        &speaker_config(NODE1, &[NODE2], "[fib]\ntable = 254\n"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let bird = Bird::start_config(
        BirdVersion::V2,
        &ns2,
        &subdir(&dir, "bird"),
        "node2",
        "ours",
        false,
        &body(200),
    )
    .unwrap_or_else(|e| panic!("cannot start BIRD 2: {e}"));
    let metric_of = |dst: &str| our_route(&ns1, dst).and_then(|r| r["metric"].as_u64());
    let got = poll(CONVERGED_WITHIN, Duration::from_millis(50), || {
        Some((metric_of(PREF200)?, metric_of(PREF100)?))
    });
    let Some(got) = got else {
        panic!(
            "routes of node 1: {:#?}\n{}\nBIRD: {}",
            routes(&ns1),
            d1.transcript(40),
            bird.birdc(&["show", "route", "all"]).unwrap_or_default()
        );
    };
    assert_eq!(got, (2_147_483_447, 2_147_483_547));
    eprintln!(
        "LOCAL_PREF 200 -> metric {}, 100 -> metric {}",
        got.0, got.1
    );
    drop(d1);
}

/// Node 3's block (a BIRD 2 node, `graceful restart on`).
const BLOCK3: &str = "192.168.0.128/26";
const NODE3: &str = "192.0.2.103";

/// Graceful restart's kernel recovery (`--graceful-restart`) is driven by End-of-RIB:
/// node 1 (ours, `[fib]`) peers with node 2 (ours) and node 3 (BIRD 2, graceful restart
/// on). Node 1 is killed with -9, node 3's BIRD too; a stale route of ours is left in
/// node 1's kernel; node 1 starts again with `--graceful-restart`. While node 3 is down,
/// node 2's End-of-RIB alone does not end the recovery: the kernel is held as it is, the
/// stale route and node 3's block included. Once node 3 is back, its End-of-RIB ends the
/// recovery at once (far within the 120 s restart time): the stale route goes, and
/// `ip monitor route` shows no other delete nor any change of a live route.
#[test]
fn graceful_restart_kernel_recovery_ends_on_end_of_rib() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let dir = WorkDir::new("fib-gr").unwrap_or_else(|e| panic!("{e}"));
    let hub = Hub::create("hub", &[]).unwrap_or_else(|e| panic!("{e}"));
    let ns1 = node(&hub, "node1", NODE1);
    let ns2 = node(&hub, "node2", NODE2);
    let ns3 = node(&hub, "bird3", NODE3);
    let fib = "[fib]\ntable = 254\nmetric_from_local_pref = false\n\n";
    let d2 = Daemon::start(
        &ns2,
        &subdir(&dir, "node2"),
        exe(),
        &speaker_config(
            NODE2,
            &[NODE1],
            &format!("{fib}[[originate]]\nprefix = \"{BLOCK2}\"\n"),
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut d1 = Daemon::start(
        &ns1,
        &subdir(&dir, "node1"),
        exe(),
        &speaker_config(
            NODE1,
            &[NODE2, NODE3],
            &format!("{fib}[[originate]]\nprefix = \"{BLOCK1}\"\nblackhole = true\n"),
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let body = format!(
        "router id {NODE3};\n\
         protocol device {{ scan time 10; }}\n\
         protocol static s1 {{ ipv4; route {BLOCK3} blackhole; }}\n\
         protocol bgp node1 {{\n\
         \x20 local {NODE3} as {AS};\n\
         \x20 neighbor {NODE1} as {AS};\n\
         \x20 direct;\n\
         \x20 hold time {HOLD};\n\
         \x20 keepalive time 1;\n\
         \x20 connect retry time 1;\n\
         \x20 connect delay time 1;\n\
         \x20 error wait time 1,2;\n\
         \x20 graceful restart on;\n\
         \x20 ipv4 {{ import all; export all; next hop self; }};\n\
         }}\n"
    );
    let mut bird = Bird::start_config(
        BirdVersion::V2,
        &ns3,
        &subdir(&dir, "bird"),
        "node3",
        "node1",
        false,
        &body,
    )
    .unwrap_or_else(|e| panic!("cannot start BIRD 2: {e}"));
    let fail = |what: &str, d1: &Daemon| -> ! {
        panic!(
            "{what}\n{}\n{}\nnode1 routes: {:#?}\nwork dir: {}",
            d1.transcript(80),
            d2.transcript(30),
            routes(&ns1),
            dir.path().display()
        )
    };
    let want = vec![blackhole(BLOCK1), via(BLOCK2, NODE2), via(BLOCK3, NODE3)];
    if poll(CONVERGED_WITHIN, Duration::from_millis(50), || {
        same(&ours(&ns1), &want).then_some(())
    })
    .is_none()
    {
        fail("node 1's kernel before the restart", &d1);
    }

    d1.kill().unwrap_or_else(|e| panic!("{e}"));
    bird.kill().unwrap_or_else(|e| panic!("{e}"));
    let monitor = plant_stale_route(&ns1, dir.path());
    std::thread::sleep(Duration::from_millis(200));
    let mark = d1.log_mark();
    d1.start_again(&["--graceful-restart"])
        .unwrap_or_else(|e| panic!("{e}"));
    let restarted = Instant::now();
    // Node 2 is back at once and sends its End-of-RIB; node 3 is down: the kernel is held.
    if d1
        .wait_log(mark, Duration::from_secs(15), |l| {
            l.contains("peer=192.0.2.102") && l.contains("session established")
        })
        .is_err()
    {
        fail("node 2 not back after node 1's restart", &d1);
    }
    std::thread::sleep(Duration::from_secs(4));
    let held = ours(&ns1);
    let mut with_stale = want.clone();
    with_stale.push(via("10.77.0.0/24", NODE2));
    if !same(&held, &with_stale)
        || d1
            .log_since(mark)
            .iter()
            .any(|l| l.contains("fib: initial sync over"))
    {
        fail(
            &format!("with node 3 down the recovery must hold the kernel as it was: {held:?}"),
            &d1,
        );
    }

    bird.start_again_with(&[])
        .unwrap_or_else(|e| panic!("cannot start BIRD 2 again: {e}"));
    let bird_back = Instant::now();
    let synced = d1
        .wait_log(mark, Duration::from_secs(30), |l| {
            l.contains("fib: initial sync over")
        })
        .unwrap_or_else(|e| fail(&format!("recovery not over: {e}"), &d1));
    let after = bird_back.elapsed();
    eprintln!(
        "fib-gr: recovery over {after:?} after node 3 came back ({:?} after node 1's \
         restart): {synced}",
        restarted.elapsed()
    );
    let log = d1.log_since(mark);
    for l in log.iter().filter(|l| l.contains("graceful restart")) {
        eprintln!("  {l}");
    }
    if !log
        .iter()
        .any(|l| l.contains("graceful restart: recovery over"))
        || !synced.contains("End-of-RIBs in")
    {
        fail("the recovery did not end by the End-of-RIBs", &d1);
    }
    wait_for("the stale route removed", Duration::from_secs(5), || {
        let o = ours(&ns1);
        same(&o, &want).then_some(()).ok_or(format!("{o:?}"))
    });
    std::thread::sleep(Duration::from_millis(500));
    only_stale_deleted(monitor);
    drop((d1, bird));
}
