//! The Calico seed's mesh, node by node: kube-node1 (172.17.42.31, block 192.168.0.0/26,
//! workload 192.168.0.2 on a `cali*` veth) and kube-node2 (172.17.42.32, block
//! 192.168.0.64/26, workloads .64 and .65), built three times in fresh namespaces:
//!
//! 1. both nodes BIRD 1.6 on Calico's rendered node config (`bird.cfg`, `bird_aggr.cfg`,
//!    `bird_ipam.cfg` of Calico 3.32 for one IP pool 192.168.0.0/16 without IP-in-IP, in
//!    BIRD 1.6 syntax: see [`calico_bird16_node_config`]);
//! 2. both nodes ours (`[fib]` with the pool, `[[originate]]` blackhole for the block,
//!    `[mesh]` of the two nodes, as Calico would configure us);
//! 3. node1 BIRD 1.6, node2 ours.
//!
//! Each time, once both kernels hold the other's block (and the routing table stays the
//! same across a BIRD kernel scan), `ip -j route show table main` of each node is taken
//! whole (kernel, workload and speaker routes alike) and every route compared field by
//! field (dst, type, gateway, dev, protocol, scope, prefsrc, metric, flags, next hops)
//! with run 1. Addresses and interface names are the same in every run, so nothing is
//! normalised but the protocol's spelling (`bird` or `12`, depending on
//! `/etc/iproute2/rt_protos`). The point: a Calico node's kernel must not change when BIRD
//! is swapped for us, not even on one node of a mixed mesh.
//!
//! What the first comparison found, and how it is resolved:
//! - Metric. BIRD 1.6.8 installs every route with metric 0: the blackholes (no
//!   `krt_metric` on a static route, none set by `calico_kernel_programming`) and the
//!   other node's block too (the `krt_metric = 2147483647 - bgp_local_pref` of Calico's
//!   mesh import filter is a temporary attribute that BIRD 1.6 drops before the kernel
//!   protocol); ours installed 1024 (Calico 3.32's rule, what BIRD 2/3 do). Ours is
//!   configured as BIRD 1.6 behaves: `[fib] bird16_metric = true` (see CONFIG.md).
//! - Workload /32s of the other node (`192.168.0.64 via 172.17.42.32`) in BIRD's kernels
//!   only: with workload routes at metric 0, Calico's `calico_aggr` takes them for
//!   elevated routes (`krt_metric < 1024`, live migration) and exports them. Calico
//!   3.32's Felix installs workload routes at 1024, so they are here too; ours does not
//!   learn kernel routes, so elevated workload routes are not exported by ours (a gap).
//! - Nothing else: no `src`, no `onlink`, same dev, gateway, protocol, type and scope.
//!
//! Only the namespaces each run creates are touched. Needs root and BIRD 1.6 (through
//! `BIRD16_DIR`, default `target/peers/bird16`). `KEEP_WORK=1` keeps the work dir.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use interop_tests::{
    Bird, BirdVersion, Daemon, Hub, KernelRoute as Route, Netns, WorkDir, field, kernel_routes,
    poll, require_root, route_diff, show,
};

const AS: u32 = 64512;
const NODE1: &str = "172.17.42.31";
const NODE2: &str = "172.17.42.32";
const BLOCK1: &str = "192.168.0.0/26";
const BLOCK2: &str = "192.168.0.64/26";
/// Calico's IP pool holding both blocks (`ipipMode: Never`).
const POOL: &str = "192.168.0.0/16";
/// Both kernels programmed, counted from the last speaker's start.
const CONVERGED_WITHIN: Duration = Duration::from_secs(25);
/// BIRD's kernel scan time in Calico's config, plus a margin: a table that stays the same
/// this long is taken as settled.
const SETTLE: Duration = Duration::from_millis(2500);

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

/// One node of the seed: its name, address, block and workloads (address, `cali*` veth).
struct Node {
    name: &'static str,
    addr: &'static str,
    block: &'static str,
    workloads: &'static [(&'static str, &'static str)],
}

const NODES: [Node; 2] = [
    Node {
        name: "kube-node1",
        addr: NODE1,
        block: BLOCK1,
        workloads: &[("192.168.0.2", "cali1f3c9fa633a")],
    },
    Node {
        name: "kube-node2",
        addr: NODE2,
        block: BLOCK2,
        workloads: &[
            ("192.168.0.64", "cali03adc9f233a"),
            ("192.168.0.65", "calicb1a3b2633b"),
        ],
    },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Speaker {
    Bird16,
    Ours,
}

/// Calico's mesh rule (`{{if gt $onode_ip $node_ip}} passive on;`): a node waits for a
/// peer whose address is the greater string.
fn calico_passive(me: &str, other: &str) -> bool {
    other > me
}

fn mesh_proto(addr: &str) -> String {
    format!("Mesh_{}", addr.replace('.', "_"))
}

/// Calico 3.32's node config (confd's `bird.cfg`, `bird_aggr.cfg`, `bird_ipam.cfg`, the
/// includes inlined) for one IPv4 pool without IP-in-IP, in BIRD 1.6 syntax (Calico ships
/// its fork of 1.6.8): the kernel protocol (`learn`, `persist`, scan 2 s, `merge paths`,
/// export filter `calico_kernel_programming`), `device`, `direct` without `cali*`, the
/// block as a static blackhole with `calico_aggr`, and a `Mesh_<ip>` session from
/// Calico's template (`multihop`, `gateway recursive`, `add paths`, graceful restart,
/// Calico's timers) with the mesh import/export filters (the metric follows LOCAL_PREF)
/// and the `passive on` of [`calico_passive`].
///
/// One deviation: Calico renders the pool's kernel rule as
/// `if (net ~ POOL) then { krt_tunnel=""; accept; }`; `krt_tunnel` exists only in
/// Calico's fork (upstream 1.6.8 refuses it), and the empty tunnel means no tunnel, so
/// the rule here is `{ accept; }`: the same route.
fn calico_bird16_node_config(me: &Node, other: &Node) -> String {
    let (addr, block) = (me.addr, me.block);
    let mut c = format!(
        "# bird_aggr.cfg\n\
         protocol static {{\n   # IP blocks for this host.\n   route {block} blackhole;\n}}\n\
         function calico_aggr ()\n{{\n\
         \x20     # Block {block} is implicitly confirmed.\n\
         \x20     if ( net = {block} ) then {{ accept; }}\n\
         \x20     if ( net ~ {block} && krt_metric < 1024 ) then {{ accept; }}\n\
         \x20     if ( net ~ {block} ) then {{ reject; }}\n}}\n\
         # bird_ipam.cfg\n\
         function apply_communities ()\n{{\n}}\n\
         function reject_tunnel_routes () {{\n\
         \x20 if (defined(ifname)) then {{\n\
         \x20    if ((ifname ~ \"*.cali\") || (ifname ~ \"*.calico\")) then {{\n\
         \x20       reject;\n\x20    }}\n\x20 }}\n}}\n\
         function calico_export_to_bgp_peers(bool internal_peer) {{\n\
         \x20 if (internal_peer) then {{\n    reject_tunnel_routes();\n  }}\n\
         \x20 apply_communities();\n\
         \x20 calico_aggr();\n\
         \x20 if (net ~ {POOL}) then {{ accept; }}\n}}\n\
         filter calico_kernel_programming {{\n\
         \x20 if (net ~ {POOL}) then {{ accept; }} # Calico: {{ krt_tunnel=\"\"; accept; }}\n\
         \x20 accept;\n}}\n\
         # bird.cfg\n\
         router id {addr};\n\
         protocol kernel {{\n\
         \x20 learn;             # Learn all alien routes from the kernel\n\
         \x20 persist;           # Don't remove routes on bird shutdown\n\
         \x20 scan time 2;       # Scan kernel routing table every 2 seconds\n\
         \x20 import all;\n\
         \x20 export filter calico_kernel_programming; # Default is export none\n\
         \x20 graceful restart;\n\
         \x20 merge paths on;    # Allow export multipath routes (ECMP)\n}}\n\
         protocol device {{\n  debug {{ states }};\n  scan time 2;\n}}\n\
         protocol direct {{\n  debug {{ states }};\n  interface -\"cali*\", -\"kube-ipvs*\", \"*\";\n}}\n\
         template bgp bgp_template {{\n\
         \x20 debug {{ states }};\n\
         \x20 description \"Connection to BGP peer\";\n\
         \x20 local as {AS};\n\
         \x20 gateway recursive; # This should be the default, but just in case.\n\
         \x20 add paths on;\n\
         \x20 graceful restart;\n\
         \x20 connect delay time 2;\n\
         \x20 connect retry time 5;\n\
         \x20 error wait time 5,30;\n}}\n"
    );
    let _ = write!(
        c,
        "protocol bgp {} from bgp_template {{\n\
         \x20 neighbor {} as {AS};\n\
         \x20 source address {addr};  # The local address we use for the TCP connection\n\
         \x20 multihop;\n\
         \x20 import filter {{\n\
         \x20   krt_metric = 1024;\n\
         \x20   if (defined(bgp_local_pref)) then {{\n\
         \x20     krt_metric = 2147483647 - bgp_local_pref;\n\
         \x20   }}\n\
         \x20   if (krt_metric < 1024) then\n\
         \x20     preference = 200;\n\
         \x20   accept;\n\
         \x20 }};\n\
         \x20 export filter {{\n\
         \x20   if (!defined(krt_metric)) then {{ krt_metric = 1024; }}\n\
         \x20   bgp_local_pref = 2147483647 - krt_metric;\n\
         \x20   calico_export_to_bgp_peers(true);\n\
         \x20   reject;\n\
         \x20 }};  # Only want to export routes for workloads.\n{}}}\n",
        mesh_proto(other.addr),
        other.addr,
        if calico_passive(addr, other.addr) {
            "  passive on; # Mesh is unidirectional, peer will connect to us.\n"
        } else {
            ""
        }
    );
    c
}

/// Our config for the same node, as Calico would configure us: the mesh of both nodes
/// (ADD-PATH as Calico's `add paths on`), the pool without IP-in-IP, the block as a
/// blackhole; `[fib]` defaults (table main, protocol 12) with `bird16_metric = true`:
/// BIRD 1.6 on Calico's config installs every route with metric 0 (the `krt_metric` that
/// the mesh import filter sets is a temporary attribute BIRD 1.6 drops before its kernel
/// protocol, and the static blackholes carry none), so ours does the same; blocks are
/// still announced with Calico's LOCAL_PREF 2147482623.
fn our_node_config(me: &Node) -> String {
    let addr = me.addr;
    format!(
        "[speaker]\nasn = {AS}\nrouter_id = \"{addr}\"\nlisten = [\"{addr}:179\"]\n\
         connect_retry = 1\n\n\
         [api]\nlisten = \"{addr}:9179\"\n\n\
         [[peer_group]]\nname = \"mesh\"\nfamilies = [\"ipv4-unicast\"]\nadd_path = true\n\n\
         [mesh]\nnodes = [\"{NODE1}\", \"{NODE2}\"]\ngroup = \"mesh\"\n\n\
         [fib]\nbird16_metric = true\n\n\
         [[fib.ip_pool]]\nprefix = \"{POOL}\"\nipip = \"never\"\n\n\
         [[originate]]\nprefix = \"{}\"\nblackhole = true\n",
        me.block
    )
}

/// A running speaker of a run (kept for its lifetime and its log on failure).
enum Running {
    Bird(Box<Bird>),
    Ours(Box<Daemon>),
}

impl Running {
    fn transcript(&self) -> String {
        match self {
            Self::Bird(b) => format!(
                "--- BIRD 1.6 ---\n{}\n{}",
                b.birdc(&["show", "protocols", "all"])
                    .unwrap_or_else(|e| format!("(birdc: {e})")),
                b.log_text()
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
            Self::Ours(d) => d.transcript(60),
        }
    }
}

fn subdir(dir: &WorkDir, name: &str) -> PathBuf {
    let d = dir.path().join(name);
    fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    d
}

/// A node's namespace on the hub (`eth0`, `ADDR/16` as in the seed's 172.17.0.0/16) with
/// its workloads: a veth `cali…` (its peer `wl…` stays in the node's namespace, both up)
/// and Felix's route `ADDR dev cali… scope link metric 1024` (Calico 3.32's Felix
/// programs workload routes at `IPv4NormalRoutePriority`, 1024; a lower metric marks an
/// elevated route, which Calico's `calico_aggr` exports as a /32).
fn node_ns(hub: &Hub, n: &Node) -> Result<Netns, String> {
    let ns = Netns::create(n.name)?;
    hub.attach(&ns, &[&format!("{}/16", n.addr)])?;
    for (i, (ip, cali)) in n.workloads.iter().enumerate() {
        let peer = format!("wl{i}");
        ns.ip(&["link", "add", cali, "type", "veth", "peer", "name", &peer])?;
        ns.ip(&["link", "set", cali, "up"])?;
        ns.ip(&["link", "set", &peer, "up"])?;
        ns.ip(&[
            "route", "add", ip, "dev", cali, "scope", "link", "metric", "1024",
        ])?;
    }
    Ok(ns)
}

/// What one run found: each node's kernel routes, by node name.
type Kernels = BTreeMap<&'static str, Vec<Route>>;

/// Builds the mesh with `kinds[i]` at node i, waits for both kernels to be programmed and
/// settled, and returns their routing tables.
fn run(label: &str, kinds: [Speaker; 2]) -> Kernels {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let t0 = Instant::now();
    let dir = WorkDir::new(&format!("node-{label}")).unwrap_or_else(|e| panic!("{e}"));
    let hub = Hub::create("hub", &[]).unwrap_or_else(|e| panic!("{label}: {e}"));
    let nss: Vec<Netns> = NODES
        .iter()
        .map(|n| node_ns(&hub, n).unwrap_or_else(|e| panic!("{label}: {}: {e}", n.name)))
        .collect();
    let mut running = Vec::new();
    for (i, n) in NODES.iter().enumerate() {
        let other = &NODES[1 - i];
        let sub = subdir(&dir, n.name);
        let r = match kinds[i] {
            Speaker::Bird16 => Bird::start_config(
                BirdVersion::V16,
                &nss[i],
                &sub,
                n.name,
                &mesh_proto(other.addr),
                false,
                &calico_bird16_node_config(n, other),
            )
            .map(|b| Running::Bird(Box::new(b))),
            Speaker::Ours => Daemon::start(&nss[i], &sub, exe(), &our_node_config(n))
                .map(|d| Running::Ours(Box::new(d))),
        }
        .unwrap_or_else(|e| panic!("{label}: cannot start {:?} at {}: {e}", kinds[i], n.name));
        running.push(r);
    }
    let fail = |what: String| -> ! {
        let mut s = format!("{label}: {what}\n");
        for (i, n) in NODES.iter().enumerate() {
            let _ = writeln!(
                s,
                "=== {} ({:?}) ===\n{}\n{:#?}",
                n.name,
                kinds[i],
                running[i].transcript(),
                kernel_routes(&nss[i], false).unwrap_or_default()
            );
        }
        let _ = write!(s, "work dir: {}", dir.path().display());
        panic!("{s}");
    };

    // Both kernels: the own block as a blackhole, the other's block via the other node.
    let programmed = |i: usize| -> Result<Vec<Route>, String> {
        let routes = kernel_routes(&nss[i], false)?;
        let (me, other) = (&NODES[i], &NODES[1 - i]);
        let has = |dst: &str, ok: &dyn Fn(&Route) -> bool| {
            routes
                .iter()
                .any(|r| field(r, "dst") == dst && field(r, "protocol") == "bird" && ok(r))
        };
        if !has(me.block, &|r| field(r, "type") == "blackhole") {
            return Err(format!("{}: no blackhole for {}", me.name, me.block));
        }
        if !has(other.block, &|r| field(r, "gateway") == other.addr) {
            return Err(format!(
                "{}: no {} via {}",
                me.name, other.block, other.addr
            ));
        }
        Ok(routes)
    };
    let mut last = String::new();
    let mut stable_since: Option<(Instant, Vec<Vec<Route>>)> = None;
    let got = poll(CONVERGED_WITHIN, Duration::from_millis(100), || {
        let now: Result<Vec<Vec<Route>>, String> = (0..NODES.len()).map(programmed).collect();
        match now {
            Err(e) => {
                last = e;
                stable_since = None;
                None
            }
            Ok(now) => match &stable_since {
                Some((t, before)) if *before == now => (t.elapsed() >= SETTLE).then_some(now),
                _ => {
                    last = "programmed, settling".into();
                    stable_since = Some((Instant::now(), now));
                    None
                }
            },
        }
    });
    let Some(got) = got else {
        fail(format!(
            "kernels not programmed within {CONVERGED_WITHIN:?}: {last}"
        ));
    };
    eprintln!(
        "[{label}] both kernels programmed and settled after {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    for (n, routes) in NODES.iter().zip(&got) {
        eprintln!("[{label}] {}:", n.name);
        for r in routes {
            eprintln!("    {}", show(r));
        }
    }
    drop(running);
    NODES.iter().map(|n| n.name).zip(got).collect()
}

fn assert_same(base_label: &str, base: &Kernels, label: &str, got: &Kernels) {
    let mut out = String::new();
    for n in &NODES {
        let d = route_diff(base_label, &base[n.name], label, &got[n.name]);
        if !d.is_empty() {
            let _ = write!(out, "{}:\n{d}", n.name);
        }
    }
    assert!(
        out.is_empty(),
        "`ip -j route show` differs between {base_label} and {label}:\n{out}"
    );
}

/// The seed's mesh with BIRD 1.6 on Calico's config, with ours, and mixed: every node's
/// kernel routing table the same, route by route and field by field.
#[test]
fn seed_mesh_kernels_same_with_bird16_and_ours() {
    let bird = run("bird16", [Speaker::Bird16, Speaker::Bird16]);
    // What the seed shows, checked on BIRD's own tables first (so that an equality below
    // is not one of two wrong tables).
    for (i, n) in NODES.iter().enumerate() {
        let other = &NODES[1 - i];
        let routes = &bird[n.name];
        let of = |dst: &str| routes.iter().find(|r| field(r, "dst") == dst);
        let hole = of(n.block).unwrap_or_else(|| panic!("{}: no {}", n.name, n.block));
        assert_eq!(field(hole, "type"), "blackhole", "{}", show(hole));
        let via = of(other.block).unwrap_or_else(|| panic!("{}: no {}", n.name, other.block));
        assert_eq!(
            (
                field(via, "gateway"),
                field(via, "dev"),
                field(via, "protocol")
            ),
            (other.addr, "eth0", "bird"),
            "{}",
            show(via)
        );
        for (ip, cali) in n.workloads {
            let w = of(ip).unwrap_or_else(|| panic!("{}: no workload {ip}", n.name));
            assert_eq!(field(w, "dev"), *cali, "{}", show(w));
        }
    }
    let ours = run("ours", [Speaker::Ours, Speaker::Ours]);
    assert_same("BIRD 1.6", &bird, "ours", &ours);
    let mixed = run("mixed", [Speaker::Bird16, Speaker::Ours]);
    assert_same(
        "BIRD 1.6",
        &bird,
        "mixed (node1 BIRD 1.6, node2 ours)",
        &mixed,
    );
}
