//! Calico's rendered BIRD files run by BIRD 1.6 and by ours started as `bird -c FILE`: the
//! seed's two-node mesh (kube-node1 172.17.42.31 with block 192.168.0.0/26 and workload
//! 192.168.0.2 on a `cali*` veth, kube-node2 172.17.42.32 with 192.168.0.64/26 and two
//! workloads) from `tests/data/bird/mesh-node{1,2}/bird.cfg` (with their
//! `bird_aggr.cfg` and `bird_ipam.cfg` includes: Calico's newest templates, one pool
//! 192.168.0.0/16 without encapsulation, BIRD programming its routes).
//!
//! Built three times in fresh namespaces: both nodes BIRD 1.6, both ours (the rr-daemon
//! binary behind a symlink named `bird`, reading the same files), and node1 BIRD 1.6 with
//! node2 ours. Each time, once both kernels hold the other's block and stay the same for a
//! BIRD kernel scan, `ip -j route show table main` of each node is compared field by
//! field with the BIRD 1.6 run (dst, type, gateway, dev, protocol, scope, metric, flags).
//! The files are the same bytes in every run: what ours installs comes from translating
//! them ([`rr_daemon::bird`]), not from a configuration written for ours.
//!
//! The same for the seed's reflector (`rr-reflector`, `rr-client1`, `rr-client2`: an RR
//! with cluster ID 1.0.0.1 and both nodes as its clients, mesh off): all BIRD 1.6, ours
//! as the RR, all ours. And ours as `bird` on copies of the mesh files, where confd adds a
//! block and sends SIGHUP: the new block reaches both kernels, the session is kept. And
//! the IPv6 mesh (`ipv6`, `ipv6-node2`: `bird6.cfg` files) under BIRD 1.6's `bird6` and
//! ours as `bird6`.
//!
//! Needs root and BIRD 1.6 (`BIRD16_DIR`, default `target/peers/bird16`). `KEEP_WORK=1`
//! keeps the work dir.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use interop_tests::{
    Bird, BirdVersion, Daemon, Hub, KernelRoute, Kernels, MeshNode, Netns, WorkDir,
    await_programmed, field, kernel_routes, kernels_diff, mesh_node_ns, poll, require_root, show,
};

/// Both kernels programmed, counted from the last speaker's start.
const CONVERGED_WITHIN: Duration = Duration::from_secs(30);
/// BIRD's kernel scan time in Calico's config, plus a margin.
const SETTLE: Duration = Duration::from_millis(2500);

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/bird")
}

struct Node {
    name: &'static str,
    addr: &'static str,
    /// Its IPAM block, if it has one (the reflector has none).
    block: Option<&'static str>,
    /// The directory of its rendered files under `tests/data/bird`.
    files: &'static str,
    /// The BGP protocol BIRD's harness reports on.
    proto: &'static str,
    workloads: &'static [(&'static str, &'static str)],
    /// `bird6` on `bird6.cfg` (addresses in a /64), else `bird` on `bird.cfg` (a /16).
    ipv6: bool,
}

impl Node {
    fn mesh(&self) -> MeshNode<'static> {
        MeshNode {
            name: self.name,
            addr: self.addr,
            block: self.block,
            workloads: self.workloads,
            ipv6: self.ipv6,
        }
    }
}

const NODE1_WORKLOADS: &[(&str, &str)] = &[("192.168.0.2", "cali1f3c9fa633a")];
const NODE2_WORKLOADS: &[(&str, &str)] = &[
    ("192.168.0.64", "cali03adc9f233a"),
    ("192.168.0.65", "calicb1a3b2633b"),
];

/// The seed's mesh.
const NODES: [Node; 2] = [
    Node {
        name: "kube-node1",
        addr: "172.17.42.31",
        block: Some("192.168.0.0/26"),
        files: "mesh-node1",
        proto: "Mesh_172_17_42_32",
        workloads: NODE1_WORKLOADS,
        ipv6: false,
    },
    Node {
        name: "kube-node2",
        addr: "172.17.42.32",
        block: Some("192.168.0.64/26"),
        files: "mesh-node2",
        proto: "Mesh_172_17_42_31",
        workloads: NODE2_WORKLOADS,
        ipv6: false,
    },
];

/// The IPv6 mesh (`bird6`): two nodes on fd00::/64, blocks /122 of pool fd00:10:244::/64.
const MESH6: [Node; 2] = [
    Node {
        name: "node6-1",
        addr: "fd00::1",
        block: Some("fd00:10:244::/122"),
        files: "ipv6",
        proto: "Mesh_fd00__2",
        workloads: &[],
        ipv6: true,
    },
    Node {
        name: "node6-2",
        addr: "fd00::2",
        block: Some("fd00:10:244::40/122"),
        files: "ipv6-node2",
        proto: "Mesh_fd00__1",
        workloads: &[],
        ipv6: true,
    },
];

/// The seed's reflector: cluster ID 1.0.0.1, both nodes its clients, mesh off.
const RR: [Node; 3] = [
    Node {
        name: "rr",
        addr: "172.17.42.40",
        block: None,
        files: "rr-reflector",
        proto: "Node_172_17_42_31",
        workloads: &[],
        ipv6: false,
    },
    Node {
        name: "kube-node1",
        addr: "172.17.42.31",
        block: Some("192.168.0.0/26"),
        files: "rr-client1",
        proto: "Global_172_17_42_40",
        workloads: NODE1_WORKLOADS,
        ipv6: false,
    },
    Node {
        name: "kube-node2",
        addr: "172.17.42.32",
        block: Some("192.168.0.64/26"),
        files: "rr-client2",
        proto: "Global_172_17_42_40",
        workloads: NODE2_WORKLOADS,
        ipv6: false,
    },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bird16,
    Ours,
}

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
            ),
            Self::Ours(d) => d.transcript(60),
        }
    }
}

/// Starts `kinds[i]` at `nodes[i]`, each on its rendered files, waits until every kernel
/// holds its own block as a blackhole and every other node's block via that node, and
/// stays the same for [`SETTLE`]; returns the kernels.
fn run(label: &str, nodes: &[Node], kinds: &[Kind]) -> Kernels {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let t0 = Instant::now();
    let dir = WorkDir::new(&format!("birdcfg-{label}")).unwrap_or_else(|e| panic!("{e}"));
    let hub = Hub::create("hub", &[]).unwrap_or_else(|e| panic!("{label}: {e}"));
    let nss: Vec<Netns> = nodes
        .iter()
        .map(|n| {
            mesh_node_ns(&hub, &n.mesh()).unwrap_or_else(|e| panic!("{label}: {}: {e}", n.name))
        })
        .collect();
    let mut running = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let sub = dir.path().join(n.name);
        fs::create_dir_all(&sub).unwrap_or_else(|e| panic!("{}: {e}", sub.display()));
        let cfg = data()
            .join(n.files)
            .join(if n.ipv6 { "bird6.cfg" } else { "bird.cfg" });
        let r = match kinds[i] {
            // BIRD reads the very file through an include (the harness adds its log lines);
            // the file's own includes resolve from its directory.
            Kind::Bird16 => Bird::start_config(
                BirdVersion::V16,
                &nss[i],
                &sub,
                n.name,
                n.proto,
                n.ipv6,
                &format!("include \"{}\";\n", cfg.display()),
            )
            .map(|b| Running::Bird(Box::new(b))),
            Kind::Ours => Daemon::start_bird(
                &nss[i],
                &sub,
                exe(),
                if n.ipv6 { "bird6" } else { "bird" },
                &cfg,
            )
            .map(|d| Running::Ours(Box::new(d))),
        }
        .unwrap_or_else(|e| panic!("{label}: cannot start {:?} at {}: {e}", kinds[i], n.name));
        running.push(r);
    }
    let fail = |what: String| -> ! {
        let mut s = format!("{label}: {what}\n");
        for (i, n) in nodes.iter().enumerate() {
            let _ = writeln!(
                s,
                "=== {} ({:?}) ===\n{}\n{:#?}",
                n.name,
                kinds[i],
                running[i].transcript(),
                kernel_routes(&nss[i], n.ipv6).unwrap_or_default()
            );
        }
        let _ = write!(s, "work dir: {}", dir.path().display());
        panic!("{s}");
    };
    let mesh: Vec<MeshNode<'_>> = nodes.iter().map(Node::mesh).collect();
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

/// The rendered mesh files: BIRD 1.6 on them, ours on them as `bird -c FILE`, and mixed;
/// every node's kernel the same, route by route and field by field.
#[test]
fn rendered_mesh_same_kernels_under_bird16_and_ours_as_bird() {
    let bird = run("bird16", &NODES, &[Kind::Bird16, Kind::Bird16]);
    // BIRD's own tables first, so that equality below is not one of two wrong tables.
    for (i, n) in NODES.iter().enumerate() {
        let other = &NODES[1 - i];
        let routes = &bird[n.name];
        let of = |dst: &str| routes.iter().find(|r| field(r, "dst") == dst);
        let (block, other_block) = (n.block.unwrap(), other.block.unwrap());
        let hole = of(block).unwrap_or_else(|| panic!("{}: no {block}", n.name));
        assert_eq!(field(hole, "type"), "blackhole", "{}", show(hole));
        assert_eq!(field(hole, "metric"), "0", "{}", show(hole));
        let via = of(other_block).unwrap_or_else(|| panic!("{}: no {other_block}", n.name));
        assert_eq!(
            (
                field(via, "gateway"),
                field(via, "dev"),
                field(via, "protocol"),
                field(via, "metric")
            ),
            (other.addr, "eth0", "bird", "1024"),
            "{}",
            show(via)
        );
    }
    let ours = run("ours", &NODES, &[Kind::Ours, Kind::Ours]);
    assert_same("BIRD 1.6", &bird, "ours as bird", &ours);
    let mixed = run("mixed", &NODES, &[Kind::Bird16, Kind::Ours]);
    assert_same(
        "BIRD 1.6",
        &bird,
        "mixed (node1 BIRD 1.6, node2 ours)",
        &mixed,
    );
}

/// Copies a node's rendered files into `to`; returns the copy of its `bird.cfg`.
fn copy_files(n: &Node, to: &Path) -> PathBuf {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for f in ["bird.cfg", "bird_aggr.cfg", "bird_ipam.cfg"] {
        let from = data().join(n.files).join(f);
        fs::copy(&from, to.join(f)).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
    to.join("bird.cfg")
}

/// Ours as `bird` on copies of the rendered files: confd adds a block to node1's
/// `bird_aggr.cfg` (its blackhole and its `calico_aggr` rules) and sends SIGHUP. Node1
/// installs the new blackhole, node2 learns the block via node1, and the session is not
/// reset: one `session established` in each log, no Cease.
#[test]
fn ours_as_bird_reloads_the_bird_file_on_sighup_without_a_reset() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    const NEW_BLOCK: &str = "192.168.1.0/26";
    let dir = WorkDir::new("birdcfg-reload").unwrap_or_else(|e| panic!("{e}"));
    let hub = Hub::create("hub", &[]).unwrap_or_else(|e| panic!("{e}"));
    let nss: Vec<Netns> = NODES
        .iter()
        .map(|n| mesh_node_ns(&hub, &n.mesh()).unwrap_or_else(|e| panic!("{}: {e}", n.name)))
        .collect();
    let mut daemons = Vec::new();
    let mut cfgs = Vec::new();
    for (i, n) in NODES.iter().enumerate() {
        let sub = dir.path().join(n.name);
        let cfg = copy_files(n, &sub.join("etc"));
        let d = Daemon::start_bird(&nss[i], &sub, exe(), "bird", &cfg)
            .unwrap_or_else(|e| panic!("cannot start ours at {}: {e}", n.name));
        daemons.push(d);
        cfgs.push(cfg);
    }
    let has = |i: usize, dst: &str, ok: &dyn Fn(&KernelRoute) -> bool| {
        kernel_routes(&nss[i], false)
            .unwrap_or_default()
            .iter()
            .any(|r| field(r, "dst") == dst && field(r, "protocol") == "bird" && ok(r))
    };
    let via = |addr: &'static str| move |r: &KernelRoute| field(r, "gateway") == addr;
    let up = poll(CONVERGED_WITHIN, Duration::from_millis(100), || {
        has(1, NODES[0].block.unwrap(), &via(NODES[0].addr)).then_some(())
    });
    assert!(
        up.is_some(),
        "node2 never learned node1's block:\n{}\n{}",
        daemons[0].transcript(40),
        daemons[1].transcript(40)
    );

    // confd's new rendering of bird_aggr.cfg: one more block.
    let aggr = cfgs[0].with_file_name("bird_aggr.cfg");
    let text = fs::read_to_string(&aggr).expect("bird_aggr.cfg");
    let old_block = NODES[0].block.unwrap();
    let text = text
        .replace(
            &format!("   route {old_block} blackhole;"),
            &format!("   route {old_block} blackhole;\n   route {NEW_BLOCK} blackhole;"),
        )
        .replace(
            "function calico_aggr ()\n{",
            &format!(
                "function calico_aggr ()\n{{\n      # Block {NEW_BLOCK} is confirmed\n      \
                 if ( net = {NEW_BLOCK} ) then {{ accept; }}\n      \
                 if ( net ~ {NEW_BLOCK} && krt_metric < 1024 ) then {{ accept; }}\n      \
                 if ( net ~ {NEW_BLOCK} ) then {{ reject; }}"
            ),
        );
    assert!(text.contains(&format!("route {NEW_BLOCK} blackhole")));
    fs::write(&aggr, text).expect("write bird_aggr.cfg");
    let mark = daemons[0].log_mark();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &daemons[0].pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    let t0 = Instant::now();
    let learned = poll(CONVERGED_WITHIN, Duration::from_millis(50), || {
        (has(0, NEW_BLOCK, &|r| field(r, "type") == "blackhole")
            && has(1, NEW_BLOCK, &via(NODES[0].addr)))
        .then_some(())
    });
    assert!(
        learned.is_some(),
        "the new block did not reach both kernels:\n{}\n{}\n{:#?}",
        daemons[0].transcript(60),
        daemons[1].transcript(40),
        kernel_routes(&nss[1], false)
    );
    eprintln!(
        "new block in both kernels {:.2}s after SIGHUP",
        t0.elapsed().as_secs_f64()
    );
    let after = daemons[0].log_since(mark);
    assert!(
        !after.iter().any(|l| l.contains("reload refused")),
        "{after:#?}"
    );
    for d in &daemons {
        let log = d.log();
        assert_eq!(
            log.matches("session established").count(),
            1,
            "a reset:\n{}",
            d.transcript(60)
        );
        assert!(!log.contains("Cease"), "{}", d.transcript(60));
    }
}

/// The seed's reflector from rendered files (the RR's `rr client; rr cluster id 1.0.0.1`
/// towards both nodes, the nodes' global peer to the RR): all BIRD 1.6, ours as the RR with
/// BIRD 1.6 clients, and all ours; every kernel the same, the reflector's included.
#[test]
fn rendered_reflector_same_kernels_under_bird16_and_ours_as_bird() {
    let bird = run(
        "rr-bird16",
        &RR,
        &[Kind::Bird16, Kind::Bird16, Kind::Bird16],
    );
    // Reflected routes keep the client's next hop.
    let n1 = &bird["kube-node1"];
    let via = n1
        .iter()
        .find(|r| field(r, "dst") == "192.168.0.64/26")
        .expect("node1 has node2's block");
    assert_eq!(field(via, "gateway"), "172.17.42.32", "{}", show(via));
    let rr_ours = run("rr-ours", &RR, &[Kind::Ours, Kind::Bird16, Kind::Bird16]);
    assert_same("BIRD 1.6", &bird, "ours as the reflector", &rr_ours);
    let all_ours = run("rr-all-ours", &RR, &[Kind::Ours, Kind::Ours, Kind::Ours]);
    assert_same("BIRD 1.6", &bird, "all ours", &all_ours);
}

/// The IPv6 mesh from rendered `bird6.cfg` files: BIRD 1.6's `bird6`, ours as `bird6`,
/// and mixed; every kernel's IPv6 table the same.
#[test]
fn rendered_ipv6_mesh_same_kernels_under_bird6_and_ours_as_bird6() {
    let bird = run("v6-bird16", &MESH6, &[Kind::Bird16, Kind::Bird16]);
    let ours = run("v6-ours", &MESH6, &[Kind::Ours, Kind::Ours]);
    assert_same("BIRD 1.6", &bird, "ours as bird6", &ours);
    let mixed = run("v6-mixed", &MESH6, &[Kind::Bird16, Kind::Ours]);
    assert_same("BIRD 1.6", &bird, "mixed", &mixed);
}
