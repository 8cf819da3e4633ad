//! The Calico seed's mesh, node by node: kube-node1 (172.17.42.31, block 192.168.0.0/26,
//! workload 192.168.0.2 on a `cali*` veth) and kube-node2 (172.17.42.32, block
//! 192.168.0.64/26, workloads .64 and .65), built three times in fresh namespaces:
//!
//! 1. both nodes BIRD 1.6 on Calico's rendered node config (`bird.cfg`, `bird_aggr.cfg`,
//!    `bird_ipam.cfg` of Calico 3.32 for one IP pool 192.168.0.0/16 without IP-in-IP, in
//!    BIRD 1.6 syntax: see `interop_tests::calico_bird16_node_config`);
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

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use interop_tests::{
    Bird, BirdVersion, CalicoPeer, Daemon, Hub, Kernels, MeshNode, Netns, WorkDir,
    await_programmed, calico_bird16_node_config, calico_passive, calico_proto, field,
    kernel_routes, kernels_diff, mesh_node_ns, require_root, show,
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

impl Node {
    fn mesh(&self) -> MeshNode<'static> {
        MeshNode {
            name: self.name,
            addr: self.addr,
            block: Some(self.block),
            workloads: self.workloads,
            ipv6: false,
        }
    }
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

/// Calico's rendered config (see [`calico_bird16_node_config`]) for node `me` meshed
/// with `other`: one `Mesh_<ip>` session, `passive on` where Calico renders it.
fn calico_bird16_mesh_config(me: &Node, other: &Node) -> String {
    let peer = CalicoPeer {
        name: calico_proto("Mesh", other.addr),
        addr: other.addr.into(),
        asn: AS,
        passive: calico_passive(me.addr, other.addr),
    };
    calico_bird16_node_config(me.addr, AS, me.block, POOL, &[peer])
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

/// Builds the mesh with `kinds[i]` at node i, waits for both kernels to be programmed and
/// settled, and returns their routing tables.
fn run(label: &str, kinds: [Speaker; 2]) -> Kernels {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let t0 = Instant::now();
    let dir = WorkDir::new(&format!("node-{label}")).unwrap_or_else(|e| panic!("{e}"));
    let hub = Hub::create("hub", &[]).unwrap_or_else(|e| panic!("{label}: {e}"));
    let nss: Vec<Netns> = NODES
        .iter()
        .map(|n| {
            mesh_node_ns(&hub, &n.mesh()).unwrap_or_else(|e| panic!("{label}: {}: {e}", n.name))
        })
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
                &calico_proto("Mesh", other.addr),
                false,
                &calico_bird16_mesh_config(n, other),
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
    let mesh: Vec<MeshNode<'_>> = NODES.iter().map(Node::mesh).collect();
    let got = await_programmed(&mesh, &nss, CONVERGED_WITHIN, SETTLE).unwrap_or_else(|e| fail(e));
    eprintln!(
        "[{label}] both kernels programmed and settled after {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    for (name, routes) in &got {
        eprintln!("[{label}] {name}:");
        for r in routes {
            eprintln!("    {}", show(r));
        }
    }
    drop(running);
    got
}

fn assert_same(base_label: &str, base: &Kernels, label: &str, got: &Kernels) {
    let out = kernels_diff(base_label, base, label, got);
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
