//! Our daemon (`speaker --config FILE`) in topologies beyond one reflector with plain
//! clients: ADD-PATH towards BIRD 2 and FRR clients, next-hop-self per client, our daemon
//! as a client of a BIRD 2 reflector, and a Calico-style full iBGP mesh with BIRD 1.6
//! (what Calico ships) and FRR.
//!
//! Every test builds its own world: a hub namespace with a bridge (192.0.2.0/24), one
//! namespace per speaker joined to it, so every next hop is on-link. Hold time 3 s.
//! What is asserted is read from the real peers (`birdc show route all`, FRR `show bgp ...
//! json`) and from our daemon's control API (`speaker ctl --api ADDR --json ...`, the API
//! listening on the daemon's own address in its namespace).
//!
//! Needs root and the peers: `sudo tests/scripts/install-peers.sh` (BIRD 1.6 is found
//! through `BIRD16_DIR`, default `target/peers/bird16`). `KEEP_WORK=1` keeps every test's
//! work dir; a failed test always keeps it and prints where, with the daemon's log, its
//! `ctl peers` and every peer's session and log.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use interop_tests::{
    Bird, BirdVersion, Client, ClientConfig, ClientOptions, ClientRoute, Daemon, Frr, Hub, Learned,
    Netns, Peer, WorkDir, calico_passive, calico_proto, ctl_json, ctl_route, poll_ok, require_root,
};
use serde_json::Value;

const HOLD: u16 = 3;
/// Sessions up, counted from the last speaker's start.
const UP_WITHIN: Duration = Duration::from_secs(20);
/// Routes everywhere they should be, counted from all sessions up.
const CONVERGED_WITHIN: Duration = Duration::from_secs(15);
/// A withdrawal (or a stopped speaker's routes) gone everywhere.
const WITHDRAWN_WITHIN: Duration = Duration::from_secs(8);
/// BIRD clients wait this long before connecting (BIRD's default): our daemon, started
/// right after them, connects first (see reflector_interop.rs).
const CLIENT_CONNECT_DELAY: u16 = 5;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bird2,
    Bird16,
    Frr,
}

/// A real peer of a test: a BIRD (2 or 1.6) or an FRR, as a client or on a config of the
/// test's own.
enum Node {
    Bird(Bird),
    Frr(Frr),
}

impl Node {
    fn peer(&self) -> &dyn Peer {
        match self {
            Self::Bird(b) => b,
            Self::Frr(f) => f,
        }
    }

    fn peer_mut(&mut self) -> &mut dyn Peer {
        match self {
            Self::Bird(b) => b,
            Self::Frr(f) => f,
        }
    }

    /// Only for one started as a client.
    fn client(&self) -> &dyn Client {
        match self {
            Self::Bird(b) => b,
            Self::Frr(f) => f,
        }
    }

    fn client_mut(&mut self) -> &mut dyn Client {
        match self {
            Self::Bird(b) => b,
            Self::Frr(f) => f,
        }
    }

    fn bird(&self) -> &Bird {
        match self {
            Self::Bird(b) => b,
            Self::Frr(_) => panic!("not a BIRD"),
        }
    }

    fn bird_mut(&mut self) -> &mut Bird {
        match self {
            Self::Bird(b) => b,
            Self::Frr(_) => panic!("not a BIRD"),
        }
    }

    fn frr(&self) -> &Frr {
        match self {
            Self::Frr(f) => f,
            Self::Bird(_) => panic!("not an FRR"),
        }
    }
}

/// Where one of our daemons runs.
#[derive(Clone, Copy, Debug)]
enum At {
    Hub,
    Ns(usize),
}

struct Ours {
    daemon: Daemon,
    at: At,
    /// Its `[api] listen`.
    api: String,
}

/// A route-reflector client to start.
struct Spec {
    kind: Kind,
    name: &'static str,
    addr: &'static str,
    rr_addr: &'static str,
    asn: u32,
    routes: Vec<ClientRoute>,
    options: ClientOptions,
}

impl Spec {
    fn new(kind: Kind, name: &'static str, addr: &'static str, rr_addr: &'static str) -> Self {
        Self {
            kind,
            name,
            addr,
            rr_addr,
            asn: 65000,
            routes: Vec::new(),
            options: ClientOptions::default(),
        }
    }

    fn routes(mut self, routes: Vec<ClientRoute>) -> Self {
        self.routes = routes;
        self
    }

    fn add_path(mut self) -> Self {
        self.options.add_path = true;
        self
    }
}

/// One test's world. Fields drop in order: our daemons, the peers, their namespaces, the
/// hub, then the work dir (kept when the test failed).
struct Topo {
    daemons: Vec<Ours>,
    nodes: Vec<(String, Node)>,
    ns: Vec<Netns>,
    hub: Hub,
    dir: WorkDir,
    name: &'static str,
    started: Instant,
}

impl Topo {
    /// The hub namespace with its bridge holding `hub_addrs` (none: a plain L2 segment).
    fn new(name: &'static str, hub_addrs: &[&str]) -> Self {
        require_root().unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        let dir = WorkDir::new(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let hub = Hub::create("hub", hub_addrs).unwrap_or_else(|e| panic!("{name}: {e}"));
        Self {
            daemons: Vec::new(),
            nodes: Vec::new(),
            ns: Vec::new(),
            hub,
            dir,
            name,
            started,
        }
    }

    fn log(&self, what: &str) {
        eprintln!(
            "[{} +{:5.1}s] {what}",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
    }

    /// A namespace `bgpt-<pid>-<n>-<role>` on the hub with `addr/24`; returns its index.
    fn add_ns(&mut self, role: &str, addr: &str) -> usize {
        let ns = Netns::create(role).unwrap_or_else(|e| self.fail(&e));
        self.hub
            .attach(&ns, &[&format!("{addr}/24")])
            .unwrap_or_else(|e| self.fail(&e));
        self.ns.push(ns);
        self.ns.len() - 1
    }

    fn netns(&self, at: At) -> &Netns {
        match at {
            At::Hub => self.hub.ns(),
            At::Ns(i) => &self.ns[i],
        }
    }

    fn add_node(&mut self, label: String, node: Node) -> usize {
        self.log(&format!("{label} started"));
        self.nodes.push((label, node));
        self.nodes.len() - 1
    }

    /// Starts a route-reflector client in a namespace of its own (its router id is its
    /// address); returns its node index.
    fn add_client(&mut self, spec: Spec) -> usize {
        let i = self.add_ns(spec.name, spec.addr);
        let cfg = ClientConfig {
            name: spec.name.into(),
            router_id: spec.addr.parse().expect("an IPv4 address"),
            asn: spec.asn,
            addr: spec.addr.parse().expect("address"),
            rr_addr: spec.rr_addr.parse().expect("address"),
            rr_asn: spec.asn,
            hold: HOLD,
            keepalive: 1,
            connect_retry: 1,
            connect_delay: CLIENT_CONNECT_DELAY,
            passive: false,
            routes: spec.routes,
        };
        let (ns, dir) = (&self.ns[i], self.dir.path());
        let node = match spec.kind {
            Kind::Bird2 => {
                Bird::start_client_with(BirdVersion::V2, ns, dir, cfg, spec.options).map(Node::Bird)
            }
            Kind::Bird16 => Bird::start_client_with(BirdVersion::V16, ns, dir, cfg, spec.options)
                .map(Node::Bird),
            Kind::Frr => Frr::start_client_with(ns, dir, cfg, &spec.options).map(Node::Frr),
        }
        .unwrap_or_else(|e| self.fail(&format!("cannot start {:?} {}: {e}", spec.kind, spec.name)));
        let label = format!("{} {} ({})", node.peer().kind(), spec.name, spec.addr);
        self.add_node(label, node)
    }

    /// Starts our daemon at `at` on `config`, its API at `api`; returns its index.
    fn start_daemon(&mut self, at: At, api: &str, config: &str) -> usize {
        // One daemon per work dir sub-directory: each has its own rr.toml and log.
        let sub = self.dir.path().join(format!("ours{}", self.daemons.len()));
        std::fs::create_dir_all(&sub).unwrap_or_else(|e| self.fail(&e.to_string()));
        let d = Daemon::start(self.netns(at), &sub, exe(), config)
            .unwrap_or_else(|e| self.fail(&format!("cannot start our daemon: {e}")));
        self.log(&format!("our daemon started (pid {}, API {api})", d.pid()));
        self.daemons.push(Ours {
            daemon: d,
            at,
            api: api.to_owned(),
        });
        self.daemons.len() - 1
    }

    fn node(&self, i: usize) -> &Node {
        &self.nodes[i].1
    }

    fn label(&self, i: usize) -> &str {
        &self.nodes[i].0
    }

    /// `ctl --json ARGS` of daemon `d`.
    fn ctl(&self, d: usize, args: &[&str]) -> Result<Value, String> {
        let o = &self.daemons[d];
        ctl_json(self.netns(o.at), exe(), &o.api, args)
    }

    /// `ctl routes PREFIX` of daemon `d`: its paths (best first), empty when it has none.
    fn our_paths(&self, d: usize, prefix: &str) -> Result<Vec<Value>, String> {
        let o = &self.daemons[d];
        Ok(ctl_route(self.netns(o.at), exe(), &o.api, prefix)?
            .map(|v| v["paths"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default())
    }

    /// Panics with everything needed to tell what went wrong.
    fn fail(&self, msg: &str) -> ! {
        let mut s = format!("{}: {msg}\n", self.name);
        for (i, o) in self.daemons.iter().enumerate() {
            let _ = writeln!(s, "{}", o.daemon.transcript(80));
            let peers = self
                .ctl(i, &["peers"])
                .map_or_else(|e| format!("(no answer: {e})"), |v| v.to_string());
            let routes = self
                .ctl(i, &["routes"])
                .map_or_else(|e| format!("(no answer: {e})"), |v| v.to_string());
            let _ = writeln!(
                s,
                "--- our ctl peers ---\n{peers}\n--- our ctl routes ---\n{routes}"
            );
        }
        for (label, n) in &self.nodes {
            let p = n.peer();
            let details = p.details().unwrap_or_else(|e| format!("(no details: {e})"));
            let _ = writeln!(s, "--- {label} session ---\n{details}\n{}", p.log_tail(40));
        }
        let _ = write!(s, "work dir: {}", self.dir.path().display());
        panic!("{s}");
    }

    /// Polls `check` (every 100 ms) until it returns `Ok`, at most `timeout`; fails with
    /// its last error otherwise. Returns the time it took.
    fn wait(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Result<(), String>,
    ) -> Duration {
        let took = poll_ok(timeout, Duration::from_millis(100), &mut check)
            .unwrap_or_else(|last| self.fail(&format!("{what}: not within {timeout:?}: {last}")));
        self.log(&format!("{what}: after {:.1}s", took.as_secs_f64()));
        took
    }

    /// Waits until every client in `which` reports its session Established.
    fn expect_established(&self, which: &[usize]) {
        self.wait("sessions Established", UP_WITHIN, || {
            for &i in which {
                let s = self.node(i).peer().state()?;
                if s != "Established" {
                    return Err(format!("{}: {s}", self.label(i)));
                }
            }
            Ok(())
        });
    }

    /// Waits until our daemon `d` reports every one of its peers Established.
    fn expect_ours_established(&self, d: usize, count: usize) {
        self.wait("our sessions Established", UP_WITHIN, || {
            let v = self.ctl(d, &["peers"])?;
            let peers = v.as_array().cloned().unwrap_or_default();
            let up = peers.iter().filter(|p| p["state"] == "Established").count();
            if up == count && peers.len() == count {
                Ok(())
            } else {
                Err(format!(
                    "{up} of {} Established, want {count}: {v}",
                    peers.len()
                ))
            }
        });
    }
}

/// A reflected (or learned) route as a peer should show it.
fn want(
    prefix: &str,
    next_hop: &str,
    originator: Option<&str>,
    cluster_list: &[&str],
    communities: &[&str],
) -> Learned {
    Learned {
        prefix: prefix.into(),
        next_hops: vec![next_hop.into()],
        local_pref: Some(100),
        communities: communities.iter().map(|&c| c.to_owned()).collect(),
        originator_id: originator.map(str::to_owned),
        cluster_list: cluster_list.iter().map(|&c| c.to_owned()).collect(),
        as_path: String::new(),
    }
}

/// `got` equals `want` as multisets (the first next hop only), or the differences.
fn same_routes(got: &[Learned], want: &[Learned]) -> Result<(), String> {
    let norm = |v: &[Learned]| {
        let mut v: Vec<Learned> = v
            .iter()
            .cloned()
            .map(|mut l| {
                l.next_hops.truncate(1);
                l
            })
            .collect();
        v.sort_by(|a, b| (&a.prefix, &a.next_hops).cmp(&(&b.prefix, &b.next_hops)));
        v
    };
    let (g, w) = (norm(got), norm(want));
    if g == w {
        Ok(())
    } else {
        Err(format!("got\n    {g:?}\n  want\n    {w:?}"))
    }
}

/// Waits until client `i` has learned exactly `want` from its reflector.
fn expect_learned(t: &Topo, i: usize, want: &[Learned], timeout: Duration) {
    let what = format!("{} learned {} route(s) as expected", t.label(i), want.len());
    t.wait(&what, timeout, || {
        let got = t.node(i).client().learned()?;
        same_routes(&got, want).map_err(|e| format!("{}: {e}", t.label(i)))
    });
}

/// One path as FRR shows it: (next hop, `addpathRxId`, `originatorId`).
type FrrPath = (String, Option<u64>, Option<String>);

/// FRR's paths of `prefix` from `peer` (`show bgp ipv4 unicast PREFIX json`), sorted.
fn frr_paths(f: &Frr, prefix: &str, peer: &str) -> Result<Vec<FrrPath>, String> {
    let mut out: Vec<_> = f
        .prefix_paths(prefix)?
        .iter()
        .filter(|p| p["peer"]["peerId"] == peer)
        .map(|p| {
            (
                p["nexthops"][0]["ip"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                p["addpathRxId"].as_u64(),
                p["originatorId"].as_str().map(str::to_owned),
            )
        })
        .collect();
    out.sort();
    Ok(out)
}

// ------------------------------------------------------------------------------ configs

/// Our reflector at 192.0.2.1 (cluster 1.0.0.1, API 192.0.2.1:9179) with one
/// `[[peer]]` per `(address, extra keys)`.
fn reflector_config(peers: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "[speaker]\n\
         asn = 65000\n\
         router_id = \"192.0.2.1\"\n\
         listen = [\"192.0.2.1:179\"]\n\
         cluster_id = \"1.0.0.1\"\n\
         hold_time = 3\n\
         connect_retry = 1\n\
         \n\
         [api]\n\
         listen = \"192.0.2.1:9179\"\n\
         \n\
         [[peer_group]]\n\
         name = \"clients\"\n\
         asn = 65000\n\
         rr_client = true\n\
         families = [\"ipv4-unicast\"]\n",
    );
    for (addr, extra) in peers {
        let _ = write!(
            s,
            "\n[[peer]]\naddress = \"{addr}\"\ngroup = \"clients\"\n\
             source_address = \"192.0.2.1\"\n{extra}"
        );
    }
    s
}

// ------------------------------------------------------------------------------ tests

/// ADD-PATH send "all" (and receive) towards a BIRD 2 and an FRR client: two BIRD 2
/// clients announce the same prefix with their own next hops, and both ADD-PATH clients
/// learn both paths (distinct path ids), a plain client only the best; the best path is
/// withdrawn at its originator, and one path is left (the other) everywhere.
#[test]
fn add_path_with_bird2_and_frr() {
    const P: &str = "198.51.100.0/26";
    const CLUSTER: &[&str] = &["1.0.0.1"];
    let mut t = Topo::new("addpath", &["192.0.2.1/24"]);
    let rr = "192.0.2.1";
    let ab = t.add_client(Spec::new(Kind::Bird2, "apb2", "192.0.2.11", rr).add_path());
    let af = t.add_client(Spec::new(Kind::Frr, "apfrr", "192.0.2.12", rr).add_path());
    let o1 = t.add_client(
        Spec::new(Kind::Bird2, "o1", "192.0.2.21", rr).routes(vec![ClientRoute::tagged(
            P,
            (65000, 21),
            100,
        )]),
    );
    let o2 = t.add_client(
        Spec::new(Kind::Bird2, "o2", "192.0.2.22", rr).routes(vec![ClientRoute::tagged(
            P,
            (65000, 22),
            100,
        )]),
    );
    let add_path = "add_path = { receive = true, send = \"all\" }\n";
    let d = t.start_daemon(
        At::Hub,
        "192.0.2.1:9179",
        &reflector_config(&[
            ("192.0.2.11", add_path),
            ("192.0.2.12", add_path),
            ("192.0.2.21", ""),
            ("192.0.2.22", ""),
        ]),
    );
    t.expect_established(&[ab, af, o1, o2]);

    // Ours holds both paths, o1's best (lower ORIGINATOR_ID / router id).
    t.wait("our daemon holds both paths", CONVERGED_WITHIN, || {
        let paths = t.our_paths(d, P)?;
        let peers: Vec<&str> = paths.iter().filter_map(|p| p["peer"].as_str()).collect();
        if peers == ["192.0.2.21", "192.0.2.22"] && paths[0]["status"] == "best" {
            Ok(())
        } else {
            Err(format!("paths of {P}: {paths:?}"))
        }
    });
    let both = [
        want(P, "192.0.2.21", Some("192.0.2.21"), CLUSTER, &["65000:21"]),
        want(P, "192.0.2.22", Some("192.0.2.22"), CLUSTER, &["65000:22"]),
    ];
    expect_learned(&t, ab, &both, CONVERGED_WITHIN);
    t.wait("FRR learned both paths", CONVERGED_WITHIN, || {
        let got = frr_paths(t.node(af).frr(), P, rr)?;
        let hops: Vec<&str> = got.iter().map(|(h, _, _)| h.as_str()).collect();
        let ids: BTreeSet<Option<u64>> = got.iter().map(|(_, id, _)| *id).collect();
        let origs: Vec<Option<&str>> = got.iter().map(|(_, _, o)| o.as_deref()).collect();
        if hops == ["192.0.2.21", "192.0.2.22"]
            && ids.len() == 2
            && !ids.contains(&None)
            && origs == [Some("192.0.2.21"), Some("192.0.2.22")]
        {
            Ok(())
        } else {
            Err(format!(
                "FRR's paths (next hop, addpathRxId, originatorId): {got:?}"
            ))
        }
    });
    let got = frr_paths(t.node(af).frr(), P, rr).unwrap_or_else(|e| t.fail(&e));
    t.log(&format!(
        "FRR's paths (next hop, addpathRxId, originatorId): {got:?}"
    ));
    // ADD-PATH negotiated both ways on both sessions. BIRD 2.0 prints no path ids (its
    // `show route all` shows both routes from `upstream`), but lists the capabilities we
    // sent under `Neighbor capabilities`: ADD-PATH with `RX: ipv4` and `TX: ipv4`.
    let session = t
        .node(ab)
        .bird()
        .show_protocol()
        .unwrap_or_else(|e| t.fail(&e));
    let theirs = session
        .split("Neighbor capabilities")
        .nth(1)
        .and_then(|r| r.split("Session:").next())
        .unwrap_or_default();
    let ours_caps = theirs.split("ADD-PATH").nth(1).unwrap_or_default();
    if !ours_caps.contains("RX: ipv4") || !ours_caps.contains("TX: ipv4") {
        t.fail(&format!(
            "BIRD 2 apb2: our ADD-PATH capability is not RX+TX ipv4:\n{session}"
        ));
    }
    let caps = t
        .node(af)
        .frr()
        .neighbor_json()
        .unwrap_or_else(|e| t.fail(&e));
    let ap = &caps["neighborCapabilities"]["addPath"];
    t.log(&format!("FRR addPath capability: {ap}"));
    let ap4 = &ap["ipv4Unicast"];
    if ap4["rxAdvertisedAndReceived"] != true || ap4["txAdvertisedAndReceived"] != true {
        t.fail(&format!(
            "FRR apfrr: ADD-PATH not negotiated both ways: {ap}"
        ));
    }
    // Without ADD-PATH: the best path only (o2 learns o1's).
    expect_learned(
        &t,
        o2,
        &[want(
            P,
            "192.0.2.21",
            Some("192.0.2.21"),
            CLUSTER,
            &["65000:21"],
        )],
        CONVERGED_WITHIN,
    );

    // The best path goes away: the other one is left, alone.
    t.nodes[o1]
        .1
        .client_mut()
        .withdraw(P)
        .unwrap_or_else(|e| t.fail(&e));
    t.log("o1 withdrew its path");
    let one = [want(
        P,
        "192.0.2.22",
        Some("192.0.2.22"),
        CLUSTER,
        &["65000:22"],
    )];
    expect_learned(&t, ab, &one, WITHDRAWN_WITHIN);
    t.wait("FRR holds o2's path only", WITHDRAWN_WITHIN, || {
        let got = frr_paths(t.node(af).frr(), P, rr)?;
        match got.as_slice() {
            [(h, Some(_), Some(o))] if h == "192.0.2.22" && o == "192.0.2.22" => Ok(()),
            _ => Err(format!("FRR's paths: {got:?}")),
        }
    });
    // o2 originates the only path left: it learns nothing for P.
    expect_learned(&t, o2, &[], WITHDRAWN_WITHIN);
    let paths = t.our_paths(d, P).unwrap_or_else(|e| t.fail(&e));
    if paths.len() != 1 || paths[0]["peer"] != "192.0.2.22" {
        t.fail(&format!("our paths of {P} after the withdrawal: {paths:?}"));
    }

    // o1 announces it again: both paths again, o1's best again.
    t.nodes[o1]
        .1
        .bird_mut()
        .announce_again(P)
        .unwrap_or_else(|e| t.fail(&e));
    t.log("o1 announced its path again");
    expect_learned(&t, ab, &both, CONVERGED_WITHIN);
    t.wait("FRR learned both paths again", CONVERGED_WITHIN, || {
        let got = frr_paths(t.node(af).frr(), P, rr)?;
        let hops: Vec<&str> = got.iter().map(|(h, _, _)| h.as_str()).collect();
        let ids: BTreeSet<Option<u64>> = got.iter().map(|(_, id, _)| *id).collect();
        if hops == ["192.0.2.21", "192.0.2.22"] && ids.len() == 2 && !ids.contains(&None) {
            Ok(())
        } else {
            Err(format!(
                "FRR's paths (next hop, addpathRxId, originatorId): {got:?}"
            ))
        }
    });
    expect_learned(
        &t,
        o2,
        &[want(
            P,
            "192.0.2.21",
            Some("192.0.2.21"),
            CLUSTER,
            &["65000:21"],
        )],
        CONVERGED_WITHIN,
    );
    t.log("done");
}

/// `next_hop_self = "force"` towards one client (FRR), the default towards the others
/// (BIRD 2, BIRD 1.6): the first sees our address as the next hop of every reflected
/// route, the others the originator's; ORIGINATOR_ID and CLUSTER_LIST are set either way.
#[test]
fn next_hop_self() {
    const CLUSTER: &[&str] = &["1.0.0.1"];
    let mut t = Topo::new("nhself", &["192.0.2.1/24"]);
    let rr = "192.0.2.1";
    let (pf, pb, p6) = ("198.51.100.0/26", "198.51.100.64/26", "203.0.113.0/26");
    let (af, ab, a6) = ("192.0.2.11", "192.0.2.12", "192.0.2.13");
    let f =
        t.add_client(Spec::new(Kind::Frr, "force", af, rr).routes(vec![ClientRoute::plain(pf)]));
    let b =
        t.add_client(Spec::new(Kind::Bird2, "plain", ab, rr).routes(vec![ClientRoute::plain(pb)]));
    let b6 =
        t.add_client(Spec::new(Kind::Bird16, "orig", a6, rr).routes(vec![ClientRoute::plain(p6)]));
    t.start_daemon(
        At::Hub,
        "192.0.2.1:9179",
        &reflector_config(&[(af, "next_hop_self = \"force\"\n"), (ab, ""), (a6, "")]),
    );
    t.expect_established(&[f, b, b6]);
    expect_learned(
        &t,
        f,
        &[
            want(pb, rr, Some(ab), CLUSTER, &[]),
            want(p6, rr, Some(a6), CLUSTER, &[]),
        ],
        CONVERGED_WITHIN,
    );
    expect_learned(
        &t,
        b,
        &[
            want(pf, af, Some(af), CLUSTER, &[]),
            want(p6, a6, Some(a6), CLUSTER, &[]),
        ],
        CONVERGED_WITHIN,
    );
    expect_learned(
        &t,
        b6,
        &[
            want(pf, af, Some(af), CLUSTER, &[]),
            want(pb, ab, Some(ab), CLUSTER, &[]),
        ],
        CONVERGED_WITHIN,
    );
    t.log("done");
}

/// BIRD 2 as the route reflector (`rr client; rr cluster id 1.0.0.9`) with our daemon and
/// an FRR as its clients: ours originates a `[[route]]` and learns FRR's route with
/// ORIGINATOR_ID and CLUSTER_LIST set by BIRD (our API), FRR learns ours likewise, and
/// ours is not sent its own route back.
#[test]
fn ours_as_client_of_bird2_reflector() {
    const CLUSTER: &str = "1.0.0.9";
    let (rr, ours, frr) = ("192.0.2.1", "192.0.2.11", "192.0.2.12");
    let (p_ours, p_frr) = ("203.0.113.0/26", "198.51.100.0/26");
    let mut t = Topo::new("ours-client", &["192.0.2.1/24"]);
    let body = format!(
        "router id {rr};\n\
         protocol device {{ scan time 10; }}\n\
         template bgp rrc {{\n\
         \x20 debug all;\n\
         \x20 local {rr} as 65000;\n\
         \x20 direct;\n\
         \x20 rr client;\n\
         \x20 rr cluster id {CLUSTER};\n\
         \x20 hold time {HOLD};\n\
         \x20 keepalive time 1;\n\
         \x20 connect retry time 1;\n\
         \x20 connect delay time 1;\n\
         \x20 error wait time 1,2;\n\
         \x20 error forget time 10;\n\
         \x20 strict bind on;\n\
         \x20 ipv4 {{ import all; export all; }};\n\
         }}\n\
         protocol bgp c_ours from rrc {{ neighbor {ours} as 65000; }}\n\
         protocol bgp c_frr from rrc {{ neighbor {frr} as 65000; }}\n"
    );
    let bird = Bird::start_config(
        BirdVersion::V2,
        t.hub.ns(),
        t.dir.path(),
        "rr",
        "c_ours",
        false,
        &body,
    )
    .unwrap_or_else(|e| t.fail(&format!("cannot start the BIRD 2 reflector: {e}")));
    let rrn = t.add_node(format!("BIRD 2 reflector ({rr})"), Node::Bird(bird));
    let fi = t.add_client(
        Spec::new(Kind::Frr, "frr", frr, rr).routes(vec![ClientRoute::tagged(
            p_frr,
            (65000, 12),
            100,
        )]),
    );
    let ons = t.add_ns("ours", ours);
    let api = format!("{ours}:9179");
    let config = format!(
        "[speaker]\nasn = 65000\nrouter_id = \"{ours}\"\nlisten = [\"{ours}:179\"]\n\
         hold_time = {HOLD}\nconnect_retry = 1\n\n\
         [api]\nlisten = \"{api}\"\n\n\
         [[peer]]\naddress = \"{rr}\"\nasn = 65000\nsource_address = \"{ours}\"\n\
         families = [\"ipv4-unicast\"]\n\n\
         [[route]]\nprefix = \"{p_ours}\"\ncommunities = [\"65000:11\"]\n"
    );
    let d = t.start_daemon(At::Ns(ons), &api, &config);
    t.wait("BIRD's sessions Established", UP_WITHIN, || {
        let b = t.node(rrn).bird();
        for p in ["c_ours", "c_frr"] {
            let s = b.protocol_state(p)?;
            if s != "Established" {
                return Err(format!("{p}: {s}"));
            }
        }
        Ok(())
    });
    t.expect_ours_established(d, 1);

    // Ours: FRR's route, reflected by BIRD (ORIGINATOR_ID FRR's, CLUSTER_LIST BIRD's).
    t.wait(
        "our daemon learned FRR's route via BIRD",
        CONVERGED_WITHIN,
        || {
            let paths = t.our_paths(d, p_frr)?;
            let ok = paths.len() == 1 && {
                let p = &paths[0];
                p["peer"] == rr
                    && p["status"] == "best"
                    && p["next_hop"] == frr
                    && p["originator_id"] == frr
                    && p["cluster_list"] == serde_json::json!([CLUSTER])
                    && p["communities"] == serde_json::json!(["65000:12"])
                    && p["local_pref"] == 100
                    && p["as_path"] == ""
            };
            if ok {
                Ok(())
            } else {
                Err(format!("our paths of {p_frr}: {paths:?}"))
            }
        },
    );
    // FRR: ours, reflected likewise.
    expect_learned(
        &t,
        fi,
        &[want(p_ours, ours, Some(ours), &[CLUSTER], &["65000:11"])],
        CONVERGED_WITHIN,
    );
    // BIRD holds ours as sent: our address as next hop, no ORIGINATOR_ID from us.
    let at_bird = t
        .node(rrn)
        .bird()
        .routes(&["protocol", "c_ours"])
        .unwrap_or_else(|e| t.fail(&e));
    if let Err(e) = same_routes(&at_bird, &[want(p_ours, ours, None, &[], &["65000:11"])]) {
        t.fail(&format!("BIRD's view of our route: {e}"));
    }
    // Our own route: one path, ours (BIRD does not send a route back to its source).
    let own = t.our_paths(d, p_ours).unwrap_or_else(|e| t.fail(&e));
    if own.len() != 1 || !own[0]["peer"].is_null() {
        t.fail(&format!("our paths of our own {p_ours}: {own:?}"));
    }

    // FRR withdraws: gone at ours. Ours drops its [[route]] (SIGHUP): gone at FRR.
    t.nodes[fi]
        .1
        .client_mut()
        .withdraw(p_frr)
        .unwrap_or_else(|e| t.fail(&e));
    t.wait("FRR's withdrawal reached ours", WITHDRAWN_WITHIN, || {
        let paths = t.our_paths(d, p_frr)?;
        if paths.is_empty() {
            Ok(())
        } else {
            Err(format!("our paths of {p_frr}: {paths:?}"))
        }
    });
    let without_route = config
        .split("\n[[route]]")
        .next()
        .unwrap_or_default()
        .to_owned();
    t.daemons[d]
        .daemon
        .reload(&without_route)
        .unwrap_or_else(|e| t.fail(&e));
    t.log("our [[route]] removed (SIGHUP)");
    expect_learned(&t, fi, &[], WITHDRAWN_WITHIN);
    let at_bird = t
        .node(rrn)
        .bird()
        .routes(&["protocol", "c_ours"])
        .unwrap_or_else(|e| t.fail(&e));
    if !at_bird.is_empty() {
        t.fail(&format!("BIRD still holds routes from ours: {at_bird:?}"));
    }
    t.log("done");
}

/// BIRD 1.6 as a Calico mesh node: a blackhole for its IPAM block, `Mesh_<ip>` sessions
/// from a template like Calico's (`add paths on`, graceful restart, `source address`, the
/// `passive on` of `calico_passive`). Timers are shortened for the test, and `direct`
/// replaces `multihop` + `gateway recursive` because every node shares the hub's segment.
fn calico_b16_mesh_config(me: &str, others: &[&str], block: &str, asn: u32) -> String {
    let mut body = format!(
        "router id {me};\n\
         protocol device {{ scan time 10; }}\n\
         protocol static static1 {{ route {block} blackhole; }}\n\
         filter calico_export {{ if source = RTS_STATIC then accept; reject; }}\n\
         template bgp bgp_template {{\n\
         \x20 debug all;\n\
         \x20 local as {asn};\n\
         \x20 direct;\n\
         \x20 import all;\n\
         \x20 export filter calico_export;\n\
         \x20 add paths on;\n\
         \x20 graceful restart;\n\
         \x20 hold time {HOLD};\n\
         \x20 keepalive time 1;\n\
         \x20 connect delay time 2;\n\
         \x20 connect retry time 1;\n\
         \x20 error wait time 1,2;\n\
         \x20 error forget time 10;\n\
         }}\n"
    );
    for &other in others {
        let _ = writeln!(
            body,
            "protocol bgp {} from bgp_template {{\n  neighbor {other} as {asn};\n  \
             source address {me};{}\n}}",
            mesh_proto(other),
            if calico_passive(me, other) {
                "\n  passive on; # Mesh is unidirectional, peer will connect to us."
            } else {
                ""
            }
        );
    }
    body
}

/// The peers our daemon connected out to, from its log (` connecting peer=ADDR:PORT`),
/// each once, in order.
fn connected_to(log: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in log.lines() {
        let Some((_, rest)) = l.split_once(" connecting peer=") else {
            continue;
        };
        let addr = rest
            .split_whitespace()
            .next()
            .and_then(|a| a.rsplit_once(':'))
            .map_or(rest, |(a, _)| a);
        if !out.iter().any(|o| o == addr) {
            out.push(addr.to_owned());
        }
    }
    out
}

/// Calico's session name for a mesh peer: `Mesh_192_0_2_11`.
fn mesh_proto(addr: &str) -> String {
    calico_proto("Mesh", addr)
}

/// A Calico-style full iBGP mesh in AS 64512: FRR (192.0.2.11), ours (.12, `[mesh]`) and
/// BIRD 1.6 (.13, Calico's session template: `add paths on`, graceful restart), the
/// lower address (as a string, Calico's rule) passive on each link; each originates one
/// /26 IPAM block and learns the other two. BIRD 1.6 stops: its block is withdrawn at ours and FRR; it starts
/// again: its block is back.
#[test]
fn three_speaker_mesh_with_bird16_and_frr() {
    const AS: u32 = 64512;
    let (a_frr, a_ours, a_b16) = ("192.0.2.11", "192.0.2.12", "192.0.2.13");
    let (p_frr, p_ours, p_b16) = ("198.51.100.128/26", "203.0.113.0/26", "198.51.100.64/26");
    let nodes = [a_frr, a_ours, a_b16];
    let mut t = Topo::new("mesh", &[]);

    // BIRD 1.6: Calico's bird.cfg in spirit (a blackhole per block, Mesh_<ip> sessions,
    // `passive on` where Calico renders it).
    let ns_b16 = t.add_ns("b16", a_b16);
    let body = calico_b16_mesh_config(a_b16, &[a_frr, a_ours], p_b16, AS);
    let b16 = Bird::start_config(
        BirdVersion::V16,
        &t.ns[ns_b16],
        t.dir.path(),
        "b16",
        "Mesh_192_0_2_12",
        false,
        &body,
    )
    .unwrap_or_else(|e| t.fail(&format!("cannot start BIRD 1.6: {e}")));
    let ib16 = t.add_node(format!("BIRD 1.6 ({a_b16})"), Node::Bird(b16));

    // FRR.
    let ns_frr = t.add_ns("frr", a_frr);
    let mut body = format!(
        "router bgp {AS}\n bgp router-id {a_frr}\n no bgp ebgp-requires-policy\n\
         \x20no bgp default ipv4-unicast\n no bgp network import-check\n timers bgp 1 {HOLD}\n"
    );
    for other in [a_ours, a_b16] {
        let _ = write!(
            body,
            " neighbor {other} remote-as {AS}\n neighbor {other} update-source {a_frr}\n\
             \x20neighbor {other} timers connect 1\n"
        );
        if calico_passive(a_frr, other) {
            let _ = writeln!(body, " neighbor {other} passive");
        }
    }
    let _ = write!(body, " address-family ipv4 unicast\n  network {p_frr}\n");
    for other in [a_ours, a_b16] {
        let _ = writeln!(body, "  neighbor {other} activate");
    }
    body.push_str(" exit-address-family\n!\n");
    let frr = Frr::start_config(
        &t.ns[ns_frr],
        t.dir.path(),
        "frr",
        a_ours.parse().expect("addr"),
        a_frr.parse().expect("addr"),
        &body,
    )
    .unwrap_or_else(|e| t.fail(&format!("cannot start FRR: {e}")));
    let ifrr = t.add_node(format!("FRR ({a_frr})"), Node::Frr(frr));

    // Ours.
    let ns_ours = t.add_ns("ours", a_ours);
    let api = format!("{a_ours}:9179");
    let d = t.start_daemon(
        At::Ns(ns_ours),
        &api,
        &format!(
            "[speaker]\nasn = {AS}\nrouter_id = \"{a_ours}\"\nlisten = [\"{a_ours}:179\"]\n\
             hold_time = {HOLD}\nconnect_retry = 1\n\n\
             [api]\nlisten = \"{api}\"\n\n\
             [[peer_group]]\nname = \"mesh\"\nfamilies = [\"ipv4-unicast\"]\nadd_path = true\n\n\
             [mesh]\nnodes = [\"{}\"]\ngroup = \"mesh\"\n\n\
             [[route]]\nprefix = \"{p_ours}\"\n",
            nodes.join("\", \"")
        ),
    );

    // Sessions: ours is passive towards .13 (the greater string) and connects to .11.
    t.expect_ours_established(d, 2);
    // Calico's rule, from our log: we connect to .11 only.
    let out = connected_to(&t.daemons[d].daemon.log());
    if out != [a_frr] {
        t.fail(&format!("we should connect out to {a_frr} only: {out:?}"));
    }
    let frr_state = |t: &Topo, other: &str| {
        t.node(ifrr)
            .frr()
            .neighbor_state(other.parse().expect("addr"))
    };
    t.wait("BIRD 1.6 and FRR sessions Established", UP_WITHIN, || {
        for p in ["Mesh_192_0_2_11", "Mesh_192_0_2_12"] {
            let s = t.node(ib16).bird().protocol_state(p)?;
            if s != "Established" {
                return Err(format!("BIRD 1.6 {p}: {s}"));
            }
        }
        for o in [a_ours, a_b16] {
            let s = frr_state(&t, o)?;
            if s != "Established" {
                return Err(format!("FRR to {o}: {s}"));
            }
        }
        Ok(())
    });

    // What each node holds of the others' blocks: (prefix, next hop).
    let at_ours = |t: &Topo, p: &str| -> Result<Vec<(String, String)>, String> {
        Ok(t.our_paths(d, p)?
            .iter()
            .filter(|v| !v["peer"].is_null())
            .map(|v| {
                (
                    v["peer"].as_str().unwrap_or_default().to_owned(),
                    v["next_hop"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect())
    };
    let at_frr = |t: &Topo, p: &str| -> Result<Vec<(String, String)>, String> {
        Ok(t.node(ifrr)
            .frr()
            .prefix_paths(p)?
            .iter()
            // Its own `network` path has peerId 0.0.0.0.
            .filter(|v| v["peer"]["peerId"].as_str().is_some_and(|p| p != "0.0.0.0"))
            .map(|v| {
                (
                    v["peer"]["peerId"].as_str().unwrap_or_default().to_owned(),
                    v["nexthops"][0]["ip"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect())
    };
    let at_b16 = |t: &Topo, p: &str| -> Result<Vec<(String, String)>, String> {
        Ok(t.node(ib16)
            .bird()
            .routes(&[p])?
            .iter()
            // Its own static route has no BGP next hop; a BGP route's source is its next
            // hop here (every block is announced by its own node).
            .filter(|l| !l.next_hops.is_empty())
            .map(|l| (l.next_hops[0].clone(), l.next_hops[0].clone()))
            .collect())
    };
    // Every node: each other node's block, from that node, with its address as next hop.
    let converged = |t: &Topo, b16_up: bool| -> Result<(), String> {
        let blocks = [(p_frr, a_frr), (p_ours, a_ours), (p_b16, a_b16)];
        for (p, origin) in blocks {
            let expect = |who: &str, me: &str, got: Vec<(String, String)>| {
                let present = origin != me && (b16_up || origin != a_b16);
                let ok = if present {
                    got == [(origin.to_owned(), origin.to_owned())]
                } else {
                    got.is_empty()
                };
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "{who}: {p} is {got:?}, want {}",
                        if present {
                            format!("from and via {origin}")
                        } else {
                            "none".into()
                        }
                    ))
                }
            };
            expect("ours", a_ours, at_ours(t, p)?)?;
            expect("FRR", a_frr, at_frr(t, p)?)?;
            if b16_up {
                expect("BIRD 1.6", a_b16, at_b16(t, p)?)?;
            }
        }
        Ok(())
    };
    t.wait(
        "every node learned the other two blocks",
        CONVERGED_WITHIN,
        || converged(&t, true),
    );

    // BIRD 1.6 stops (SIGTERM: it closes its sessions with a Cease).
    t.nodes[ib16]
        .1
        .peer_mut()
        .stop()
        .unwrap_or_else(|e| t.fail(&e));
    t.log("BIRD 1.6 stopped");
    t.wait(
        "BIRD 1.6's block withdrawn at ours and FRR",
        WITHDRAWN_WITHIN,
        || converged(&t, false),
    );

    // And back.
    t.nodes[ib16]
        .1
        .peer_mut()
        .start_again()
        .unwrap_or_else(|e| t.fail(&e));
    t.log("BIRD 1.6 started again");
    t.expect_ours_established(d, 2);
    t.wait("every node has every other block again", UP_WITHIN, || {
        converged(&t, true)
    });
    t.log("done");
}

/// Five Calico mesh nodes on one segment, addresses chosen so that string and numeric order
/// disagree: BIRD 1.6 at .2, .9 and .11 with Calico's rendered config, ours at .10 and .30
/// with `[mesh]`. As strings, "192.0.2.10" < "192.0.2.11" < "192.0.2.2" < "192.0.2.30" <
/// "192.0.2.9": .10 waits for everyone, .9 connects to everyone, .30 connects to .10 and
/// .11 and waits for .2 and .9. Any rule of ours other than Calico's leaves a pair where
/// both sides wait (numeric "greater waits" made .30 and .11 both passive). Every one of
/// the ten sessions comes up and every node learns the four other blocks.
#[test]
fn five_node_mesh_string_order_with_bird16() {
    const AS: u32 = 64512;
    // (address, IPAM block, ours?)
    let nodes: [(&str, &str, bool); 5] = [
        ("192.0.2.2", "198.51.100.0/26", false),
        ("192.0.2.9", "198.51.100.64/26", false),
        ("192.0.2.10", "198.51.100.128/26", true),
        ("192.0.2.11", "198.51.100.192/26", false),
        ("192.0.2.30", "203.0.113.0/26", true),
    ];
    let addrs: Vec<&str> = nodes.iter().map(|n| n.0).collect();
    let mut t = Topo::new("mesh5", &[]);

    let mut birds = Vec::new(); // (node index, address)
    let mut ours = Vec::new(); // (daemon index, address)
    for &(me, block, is_ours) in &nodes {
        let others: Vec<&str> = addrs.iter().copied().filter(|a| *a != me).collect();
        let role = format!("n{}", me.rsplit('.').next().unwrap_or_default());
        let ns = t.add_ns(&role, me);
        if is_ours {
            let api = format!("{me}:9179");
            let d = t.start_daemon(
                At::Ns(ns),
                &api,
                &format!(
                    "[speaker]\nasn = {AS}\nrouter_id = \"{me}\"\nlisten = [\"{me}:179\"]\n\
                     hold_time = {HOLD}\nconnect_retry = 1\n\n\
                     [api]\nlisten = \"{api}\"\n\n\
                     [[peer_group]]\nname = \"mesh\"\nfamilies = [\"ipv4-unicast\"]\n\
                     add_path = true\n\n\
                     [mesh]\nnodes = [\"{}\"]\ngroup = \"mesh\"\n\n\
                     [[route]]\nprefix = \"{block}\"\n",
                    addrs.join("\", \"")
                ),
            );
            ours.push((d, me));
        } else {
            let body = calico_b16_mesh_config(me, &others, block, AS);
            let b = Bird::start_config(
                BirdVersion::V16,
                &t.ns[ns],
                t.dir.path(),
                &role,
                &mesh_proto(others[0]),
                false,
                &body,
            )
            .unwrap_or_else(|e| t.fail(&format!("cannot start BIRD 1.6 at {me}: {e}")));
            let i = t.add_node(format!("BIRD 1.6 ({me})"), Node::Bird(b));
            birds.push((i, me));
        }
    }

    // Every session, seen from both ends.
    t.wait("all ten sessions Established", UP_WITHIN, || {
        for &(i, me) in &birds {
            for &other in addrs.iter().filter(|a| **a != me) {
                let s = t.node(i).bird().protocol_state(&mesh_proto(other))?;
                if s != "Established" {
                    return Err(format!("BIRD 1.6 {me} {}: {s}", mesh_proto(other)));
                }
            }
        }
        for &(d, me) in &ours {
            let v = t.ctl(d, &["peers"])?;
            let peers = v.as_array().cloned().unwrap_or_default();
            let up = peers.iter().filter(|p| p["state"] == "Established").count();
            if up != 4 || peers.len() != 4 {
                return Err(format!("ours {me}: {up} of {} Established", peers.len()));
            }
        }
        Ok(())
    });

    // Who opened what, from our logs: Calico's rule exactly.
    for &(d, me) in &ours {
        let mut got = connected_to(&t.daemons[d].daemon.log());
        got.sort();
        let mut want: Vec<String> = addrs
            .iter()
            .filter(|a| **a != me && !calico_passive(me, a))
            .map(|a| (*a).to_owned())
            .collect();
        want.sort();
        if got != want {
            t.fail(&format!(
                "{me} should connect out to {want:?}, did to {got:?}"
            ));
        }
    }

    // Every node: the four other blocks, each from its own node.
    t.wait(
        "every node learned the four other blocks",
        CONVERGED_WITHIN,
        || {
            for &(me, block, _) in &nodes {
                for &(d, at) in &ours {
                    let paths = t.our_paths(d, block)?;
                    let from: Vec<&str> = paths.iter().filter_map(|v| v["peer"].as_str()).collect();
                    let ok = if at == me {
                        from.is_empty()
                    } else {
                        from == [me]
                    };
                    if !ok {
                        return Err(format!("ours {at}: {block} from {from:?}, want {me}"));
                    }
                }
                for &(i, at) in birds.iter().filter(|b| b.1 != me) {
                    let got = t.node(i).bird().routes(&[block])?;
                    if !got
                        .iter()
                        .any(|l| l.next_hops.first().map(String::as_str) == Some(me))
                    {
                        return Err(format!("BIRD 1.6 {at}: {block} is {got:?}, want via {me}"));
                    }
                }
            }
            Ok(())
        },
    );
    t.log("done");
}
