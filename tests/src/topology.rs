//! Topologies as data: a TOML file describes nodes, racks and reflectors and which
//! implementation runs where ([`Topology`]); one harness ([`Fabric`]) brings any such file
//! up in network namespaces, checks the end state, injects failures and tears it all down.
//!
//! The file (`tests/topologies/*.toml`):
//!
//! ```toml
//! name = "tor"
//! asn = 65100
//! subnet = "10.0.0.0/16"      # one L2 segment (a bridge) that every speaker joins
//! pool = "10.244.0.0/16"      # Calico's IP pool: every block lies inside it
//! hold_time = 9               # optional, seconds (default 9)
//!
//! [[rack]]
//! name = "r1"
//! cluster_id = "1.0.0.1"
//! reflectors = ["rr1", "rr2"] # the rack's redundant pair (any number >= 1)
//! nodes = ["n1", "n2", "n3"]
//!
//! [[reflector]]
//! name = "rr1"
//! address = "10.0.0.1"
//! impl = "ours"               # ours | bird2 | frr
//! client_to_client_off = []   # racks whose clients it does not reflect to each other
//!
//! [[node]]
//! name = "n1"
//! address = "10.0.1.1"
//! block = "10.244.1.0/26"     # the node's IPAM block, announced and blackholed
//! impl = "ours"               # ours | bird16 | frr
//! ```
//!
//! Every node peers with each reflector of its rack (an iBGP route-reflector client of
//! the rack's cluster ID); the reflectors form a full mesh of non-clients. A reflector
//! may serve several racks (ours only: a cluster ID per peer group). Router IDs are the
//! addresses. What each implementation runs on:
//! - ours, node: `[fib]` on (protocol 12, the pool without IP-in-IP), the block as an
//!   `[[originate]]` blackhole, one `[[peer]]` per rack reflector;
//! - ours, reflector: one `[[peer_group]]` per rack (`rr_client`, its `cluster_id`,
//!   `client_to_client = false` for the racks listed), one for the other reflectors;
//! - BIRD 1.6, node: Calico's rendered node config ([`calico_bird16_node_config`]) with a
//!   `Node_<ip>` session per rack reflector (Calico's node-specific BGP peers);
//! - FRR, node: `bgpd` with `zebra` (routes into the kernel, protocol `bgp`), the block as
//!   a `network`;
//! - BIRD 2 / FRR, reflector: `rr client` + `rr cluster id` / `route-reflector-client` +
//!   `bgp cluster-id` towards the rack's nodes, plain iBGP towards the other reflectors.
//!
//! The end state ([`Fabric::check`]): every node holds every other node's block, in its
//! RIB (our API, `birdc show route all`, FRR's JSON) once from each rack reflector that
//! should send it ([`Topology::expected_sources`]), with the announcing node as next hop
//! and ORIGINATOR_ID and the CLUSTER_LIST that RFC 4456 gives
//! ([`Topology::expected_cluster_list`]: the node's cluster, then the origin's when it
//! is another); and in its kernel (`ip -j route show` in its namespace) exactly once, with
//! the implementation's protocol, via the announcing node; its own block as a blackhole.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use serde::Deserialize;
use serde_json::Value;

use crate::bird::{Bird, BirdVersion};
use crate::calico::{CalicoPeer, calico_bird16_node_config, calico_proto};
use crate::daemon::{Daemon, ctl_json, ctl_route};
use crate::frr::Frr;
use crate::netns::{Hub, Netns};
use crate::peer::Peer;
use crate::proc::{WorkDir, poll_ok, run_cmd};

// ------------------------------------------------------------------------------ the file

/// Which implementation runs a speaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Impl {
    /// Our daemon.
    Ours,
    /// BIRD 1.6 (what Calico ships), nodes only: Calico's rendered node config.
    Bird16,
    /// BIRD 2, reflectors only.
    Bird2,
    /// FRR: a node (with zebra) or a reflector.
    Frr,
}

/// A topology file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Its name (in namespace and work dir names: short).
    pub name: String,
    /// The AS of every speaker (iBGP throughout).
    pub asn: u32,
    /// The segment every speaker joins (a bridge); every address lies inside it.
    pub subnet: Ipv4Net,
    /// Calico's IP pool: every block lies inside it.
    pub pool: Ipv4Net,
    /// Hold time of every session, seconds.
    #[serde(default = "default_hold")]
    pub hold_time: u16,
    /// Graceful restart time of our speakers' sessions (RFC 4724), seconds; off when
    /// absent.
    #[serde(default)]
    pub graceful_restart: Option<u16>,
    /// The racks.
    #[serde(rename = "rack")]
    pub racks: Vec<Rack>,
    /// The reflectors.
    #[serde(rename = "reflector")]
    pub reflectors: Vec<Reflector>,
    /// The nodes.
    #[serde(rename = "node")]
    pub nodes: Vec<Node>,
}

fn default_hold() -> u16 {
    9
}

/// A rack: a cluster of nodes and the reflectors that serve it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rack {
    /// Its name.
    pub name: String,
    /// Its cluster ID (RFC 4456).
    pub cluster_id: Ipv4Addr,
    /// The reflectors its nodes peer with, by name.
    pub reflectors: Vec<String>,
    /// Its nodes, by name.
    pub nodes: Vec<String>,
}

/// A route reflector.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reflector {
    /// Its name.
    pub name: String,
    /// Its address (and router ID).
    pub address: Ipv4Addr,
    /// What runs it.
    #[serde(rename = "impl")]
    pub imp: Impl,
    /// Racks whose clients it does not reflect to each other (ours only).
    #[serde(default)]
    pub client_to_client_off: Vec<String>,
}

/// A node (a Kubernetes node running a Calico-style BGP speaker).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Its name.
    pub name: String,
    /// Its address (and router ID).
    pub address: Ipv4Addr,
    /// Its IPAM block.
    pub block: Ipv4Net,
    /// What runs it.
    #[serde(rename = "impl")]
    pub imp: Impl,
}

/// Where the topology files are: `tests/topologies/`.
pub fn topologies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies")
}

impl Topology {
    /// Reads and checks `tests/topologies/NAME.toml`.
    pub fn named(name: &str) -> Result<Self, String> {
        Self::load(&topologies_dir().join(format!("{name}.toml")))
    }

    /// Reads and checks a topology file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text =
            fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and checks a topology.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        t.validate()?;
        Ok(t)
    }

    /// Every rule a file must follow, with the offending name.
    pub fn validate(&self) -> Result<(), String> {
        let mut names = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        let all = self
            .reflectors
            .iter()
            .map(|r| (&r.name, r.address))
            .chain(self.nodes.iter().map(|n| (&n.name, n.address)));
        for (name, addr) in all {
            if !names.insert(name.as_str()) {
                return Err(format!("{name}: the name is used twice"));
            }
            if !addrs.insert(addr) {
                return Err(format!("{name}: address {addr} is used twice"));
            }
            if !self.subnet.contains(&addr) || addr == self.subnet.network() {
                return Err(format!("{name}: {addr} is not a host of {}", self.subnet));
            }
        }
        let mut blocks: Vec<(&str, Ipv4Net)> = Vec::new();
        for n in &self.nodes {
            if !matches!(n.imp, Impl::Ours | Impl::Bird16 | Impl::Frr) {
                return Err(format!(
                    "node {}: impl {:?} runs reflectors only",
                    n.name, n.imp
                ));
            }
            if !self.pool.contains(&n.block) {
                return Err(format!(
                    "node {}: {} is outside {}",
                    n.name, n.block, self.pool
                ));
            }
            if let Some((o, _)) = blocks
                .iter()
                .find(|(_, b)| b.contains(&n.block) || n.block.contains(b))
            {
                return Err(format!("node {}: {} overlaps {o}'s block", n.name, n.block));
            }
            blocks.push((&n.name, n.block));
            let racks = self
                .racks
                .iter()
                .filter(|r| r.nodes.contains(&n.name))
                .count();
            if racks != 1 {
                return Err(format!("node {} is in {racks} racks, not one", n.name));
            }
        }
        let mut clusters = BTreeSet::new();
        for r in &self.racks {
            if !clusters.insert(r.cluster_id) {
                return Err(format!(
                    "rack {}: cluster ID {} is used twice",
                    r.name, r.cluster_id
                ));
            }
            if r.reflectors.is_empty() {
                return Err(format!("rack {} has no reflector", r.name));
            }
            for x in &r.reflectors {
                if self.reflector(x).is_none() {
                    return Err(format!("rack {}: no reflector {x}", r.name));
                }
            }
            for x in &r.nodes {
                if self.node(x).is_none() {
                    return Err(format!("rack {}: no node {x}", r.name));
                }
            }
        }
        for x in &self.reflectors {
            if !matches!(x.imp, Impl::Ours | Impl::Bird2 | Impl::Frr) {
                return Err(format!(
                    "reflector {}: impl {:?} runs nodes only",
                    x.name, x.imp
                ));
            }
            let racks = self.racks_of(&x.name);
            if racks.is_empty() {
                return Err(format!("reflector {} serves no rack", x.name));
            }
            if racks.len() > 1 && x.imp != Impl::Ours {
                return Err(format!(
                    "reflector {}: only ours serves several racks (a cluster ID per group)",
                    x.name
                ));
            }
            for r in &x.client_to_client_off {
                if x.imp != Impl::Ours {
                    return Err(format!(
                        "reflector {}: client_to_client_off is ours only",
                        x.name
                    ));
                }
                if !racks.iter().any(|k| &k.name == r) {
                    return Err(format!("reflector {}: does not serve rack {r}", x.name));
                }
            }
        }
        Ok(())
    }

    /// The reflector named `name`.
    pub fn reflector(&self, name: &str) -> Option<&Reflector> {
        self.reflectors.iter().find(|r| r.name == name)
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The rack of node `name`.
    pub fn rack_of_node(&self, name: &str) -> &Rack {
        self.racks
            .iter()
            .find(|r| r.nodes.iter().any(|n| n == name))
            .expect("validated: every node is in one rack")
    }

    /// The racks reflector `name` serves.
    pub fn racks_of(&self, name: &str) -> Vec<&Rack> {
        self.racks
            .iter()
            .filter(|r| r.reflectors.iter().any(|x| x == name))
            .collect()
    }

    /// The reflectors that should send node `to` the block of node `from`: every
    /// reflector of `to`'s rack, less those that do not reflect between the rack's own
    /// clients when both are in it.
    pub fn expected_sources(&self, to: &str, from: &str) -> Vec<&Reflector> {
        let rack = self.rack_of_node(to);
        let same = self.rack_of_node(from).name == rack.name;
        rack.reflectors
            .iter()
            .filter_map(|x| self.reflector(x))
            .filter(|x| !(same && x.client_to_client_off.contains(&rack.name)))
            .collect()
    }

    /// The CLUSTER_LIST node `to` should see on the block of node `from` (RFC 4456 §8):
    /// its own rack's cluster ID, then `from`'s when that is another rack.
    pub fn expected_cluster_list(&self, to: &str, from: &str) -> Vec<Ipv4Addr> {
        let (a, b) = (self.rack_of_node(to), self.rack_of_node(from));
        if a.name == b.name {
            vec![a.cluster_id]
        } else {
            vec![a.cluster_id, b.cluster_id]
        }
    }

    /// Config of our daemon for speaker `name` (a node or a reflector).
    pub fn ours_config(&self, name: &str) -> Result<String, String> {
        let gr = self
            .graceful_restart
            .map_or_else(|| "false".to_owned(), |t| t.to_string());
        let head = |addr: Ipv4Addr, extra: &str| {
            format!(
                "# {name} of topology {}: rendered by tests/src/topology.rs\n\
                 [speaker]\nasn = {}\nrouter_id = \"{addr}\"\nlisten = [\"{addr}:179\"]\n\
                 hold_time = {}\nconnect_retry = 1\ngraceful_restart = {gr}\n{extra}\n\
                 [api]\nlisten = \"{addr}:9179\"\n",
                self.name, self.asn, self.hold_time
            )
        };
        let asn = self.asn;
        if let Some(n) = self.node(name) {
            let a = n.address;
            let mut s = head(a, "");
            let _ = write!(
                s,
                "\n[[peer_group]]\nname = \"reflectors\"\nasn = {asn}\n\
                 families = [\"ipv4-unicast\"]\nsource_address = \"{a}\"\n"
            );
            for x in &self.rack_of_node(name).reflectors {
                let r = self
                    .reflector(x)
                    .ok_or_else(|| format!("no reflector {x}"))?;
                let _ = write!(
                    s,
                    "\n[[peer]]\naddress = \"{}\"\ngroup = \"reflectors\"\n",
                    r.address
                );
            }
            let _ = write!(
                s,
                "\n[fib]\n\n[[fib.ip_pool]]\nprefix = \"{}\"\nipip = \"never\"\n\n\
                 [[originate]]\nprefix = \"{}\"\nblackhole = true\n",
                self.pool, n.block
            );
            return Ok(s);
        }
        let r = self
            .reflector(name)
            .ok_or_else(|| format!("no speaker {name}"))?;
        let a = r.address;
        let racks = self.racks_of(name);
        let mut s = head(a, &format!("cluster_id = \"{}\"\n", racks[0].cluster_id));
        for k in &racks {
            let _ = write!(
                s,
                "\n[[peer_group]]\nname = \"rack-{}\"\nasn = {asn}\nrr_client = true\n\
                 cluster_id = \"{}\"\nfamilies = [\"ipv4-unicast\"]\nsource_address = \"{a}\"\n",
                k.name, k.cluster_id
            );
            if r.client_to_client_off.contains(&k.name) {
                s.push_str("client_to_client = false\n");
            }
        }
        let _ = write!(
            s,
            "\n[[peer_group]]\nname = \"reflectors\"\nasn = {asn}\n\
             families = [\"ipv4-unicast\"]\nsource_address = \"{a}\"\n"
        );
        for k in &racks {
            for n in &k.nodes {
                let n = self.node(n).ok_or_else(|| format!("no node {n}"))?;
                let _ = write!(
                    s,
                    "\n[[peer]]\naddress = \"{}\"\ngroup = \"rack-{}\"\n",
                    n.address, k.name
                );
            }
        }
        for o in self.reflectors.iter().filter(|o| o.name != name) {
            let _ = write!(
                s,
                "\n[[peer]]\naddress = \"{}\"\ngroup = \"reflectors\"\n",
                o.address
            );
        }
        Ok(s)
    }

    /// The peers of reflector `r` (address, client of which rack's cluster).
    fn reflector_peers(&self, r: &Reflector) -> Vec<(Ipv4Addr, Option<Ipv4Addr>)> {
        let mut out = Vec::new();
        for k in self.racks_of(&r.name) {
            for n in k.nodes.iter().filter_map(|n| self.node(n)) {
                out.push((n.address, Some(k.cluster_id)));
            }
        }
        for o in self.reflectors.iter().filter(|o| o.name != r.name) {
            out.push((o.address, None));
        }
        out
    }

    fn bird2_reflector_config(&self, r: &Reflector) -> String {
        let (a, asn, hold) = (r.address, self.asn, self.hold_time);
        let cluster = self.racks_of(&r.name)[0].cluster_id;
        let mut s = format!(
            "router id {a};\n\
             protocol device {{ scan time 10; }}\n\
             template bgp rrpeer {{\n\
             \x20 local {a} as {asn};\n\
             \x20 direct;\n\
             \x20 hold time {hold};\n\
             \x20 keepalive time {};\n\
             \x20 connect retry time 1;\n\
             \x20 connect delay time 1;\n\
             \x20 error wait time 1,2;\n\
             \x20 error forget time 10;\n\
             \x20 strict bind on;\n\
             \x20 ipv4 {{ import all; export all; }};\n{}\
             }}\n",
            (hold / 3).max(1),
            self.graceful_restart.map_or_else(String::new, |t| format!(
                "  graceful restart on;\n  graceful restart time {t};\n"
            ))
        );
        for (p, client) in self.reflector_peers(r) {
            let rr = if client.is_some() {
                format!(" rr client; rr cluster id {cluster};")
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "protocol bgp {} from rrpeer {{ neighbor {p} as {asn};{rr} }}",
                calico_proto("Peer", &p.to_string())
            );
        }
        s
    }

    fn frr_reflector_config(&self, r: &Reflector) -> String {
        let (a, asn) = (r.address, self.asn);
        let cluster = self.racks_of(&r.name)[0].cluster_id;
        let mut s = format!(
            "router bgp {asn}\n bgp router-id {a}\n bgp cluster-id {cluster}\n\
             \x20no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n\
             \x20timers bgp {} {}\n",
            (self.hold_time / 3).max(1),
            self.hold_time
        );
        s.push_str(&self.frr_graceful_restart());
        let peers = self.reflector_peers(r);
        for (p, _) in &peers {
            let _ = write!(
                s,
                " neighbor {p} remote-as {asn}\n neighbor {p} update-source {a}\n\
                 \x20neighbor {p} timers connect 1\n"
            );
        }
        s.push_str(" address-family ipv4 unicast\n");
        for (p, client) in &peers {
            let _ = writeln!(s, "  neighbor {p} activate");
            if client.is_some() {
                let _ = writeln!(s, "  neighbor {p} route-reflector-client");
            }
        }
        s.push_str(" exit-address-family\n!\n");
        s
    }

    fn frr_node_config(&self, n: &Node) -> String {
        let (a, asn) = (n.address, self.asn);
        let mut s = format!(
            "router bgp {asn}\n bgp router-id {a}\n no bgp ebgp-requires-policy\n\
             \x20no bgp default ipv4-unicast\n no bgp network import-check\n\
             \x20timers bgp {} {}\n",
            (self.hold_time / 3).max(1),
            self.hold_time
        );
        s.push_str(&self.frr_graceful_restart());
        let rrs: Vec<Ipv4Addr> = self
            .rack_of_node(&n.name)
            .reflectors
            .iter()
            .filter_map(|x| self.reflector(x))
            .map(|r| r.address)
            .collect();
        for p in &rrs {
            let _ = write!(
                s,
                " neighbor {p} remote-as {asn}\n neighbor {p} update-source {a}\n\
                 \x20neighbor {p} timers connect 1\n"
            );
        }
        let _ = write!(s, " address-family ipv4 unicast\n  network {}\n", n.block);
        for p in &rrs {
            let _ = writeln!(s, "  neighbor {p} activate");
        }
        s.push_str(" exit-address-family\n!\n");
        s
    }

    /// FRR's graceful restart lines, when the topology has it.
    fn frr_graceful_restart(&self) -> String {
        self.graceful_restart.map_or_else(String::new, |t| {
            format!(" bgp graceful-restart\n bgp graceful-restart restart-time {t}\n")
        })
    }

    fn bird16_node_config(&self, n: &Node) -> String {
        let peers: Vec<CalicoPeer> = self
            .rack_of_node(&n.name)
            .reflectors
            .iter()
            .filter_map(|x| self.reflector(x))
            .map(|r| CalicoPeer {
                name: calico_proto("Node", &r.address.to_string()),
                addr: r.address.to_string(),
                asn: self.asn,
                passive: false,
            })
            .collect();
        calico_bird16_node_config(
            &n.address.to_string(),
            self.asn,
            &n.block.to_string(),
            &self.pool.to_string(),
            &peers,
        )
    }
}

// ------------------------------------------------------------------------------ running

/// What runs one speaker.
#[derive(Debug)]
enum Running {
    Ours(Box<Daemon>),
    Bird(Box<Bird>),
    Frr(Box<Frr>),
}

/// One speaker of a [`Fabric`] in its namespace. The speaker is declared before the
/// namespace so that it stops before the namespace goes.
#[derive(Debug)]
pub struct Member {
    running: Running,
    ns: Netns,
    /// Its name in the topology.
    pub name: String,
    /// Its address.
    pub addr: Ipv4Addr,
    /// What runs it.
    pub imp: Impl,
    /// A reflector (else a node).
    pub reflector: bool,
}

impl Member {
    /// Its namespace.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// Our API address (`[api] listen`), for ours.
    pub fn api(&self) -> String {
        format!("{}:9179", self.addr)
    }

    /// Its daemon, when it is ours.
    pub fn daemon(&self) -> Option<&Daemon> {
        match &self.running {
            Running::Ours(d) => Some(d),
            _ => None,
        }
    }

    /// Its daemon, when it is ours.
    pub fn daemon_mut(&mut self) -> Option<&mut Daemon> {
        match &mut self.running {
            Running::Ours(d) => Some(d),
            _ => None,
        }
    }

    /// Its BIRD, when it is one.
    pub fn bird(&self) -> Option<&Bird> {
        match &self.running {
            Running::Bird(b) => Some(b),
            _ => None,
        }
    }

    /// Its FRR, when it is one.
    pub fn frr(&self) -> Option<&Frr> {
        match &self.running {
            Running::Frr(f) => Some(f),
            _ => None,
        }
    }

    /// The PID of its main process (ours, `bird`, `bgpd`), while it runs.
    pub fn pid(&self) -> Option<u32> {
        match &self.running {
            Running::Ours(d) => Some(d.pid()),
            Running::Bird(b) => b.pid(),
            Running::Frr(_) => None,
        }
    }

    /// Its log and state, for a failure report.
    pub fn transcript(&self, exe: &Path) -> String {
        let head = format!("=== {} ({:?}, {}) ===", self.name, self.imp, self.addr);
        match &self.running {
            Running::Ours(d) => {
                let peers = ctl_json(&self.ns, exe, &self.api(), &["peers"])
                    .map_or_else(|e| format!("(no answer: {e})"), |v| v.to_string());
                format!("{head}\n{}\n--- ctl peers ---\n{peers}", d.transcript(40))
            }
            Running::Bird(b) => format!(
                "{head}\n{}\n{}",
                b.birdc(&["show", "protocols"])
                    .unwrap_or_else(|e| format!("(birdc: {e})")),
                b.log_tail(30)
            ),
            Running::Frr(f) => format!(
                "{head}\n{}\n{}",
                f.vtysh("show bgp summary")
                    .unwrap_or_else(|e| format!("(vtysh: {e})")),
                f.log_tail(30)
            ),
        }
    }
}

/// One path of a block as a node's RIB holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RibPath {
    /// The peer it came from (`None` where the implementation does not say).
    pub from: Option<String>,
    /// NEXT_HOP.
    pub next_hop: String,
    /// ORIGINATOR_ID.
    pub originator_id: Option<String>,
    /// CLUSTER_LIST.
    pub cluster_list: Vec<String>,
}

/// One kernel route of a block: `ip -j route show` reduced to what the checks read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FabricRoute {
    /// `dst`.
    pub dst: String,
    /// `type` (`unicast` when absent).
    pub kind: String,
    /// `protocol`, with 12 spelled `bird` and 186 `bgp`.
    pub protocol: String,
    /// Every gateway (`gateway`, or each of `nexthops`).
    pub gateways: Vec<String>,
}

/// `ip -j route show table main` of namespace `ns` (by name), every route.
pub fn kernel_routes_of(ns: &str) -> Result<Vec<FabricRoute>, String> {
    let out = run_cmd(
        "ip",
        &["-n", ns, "-j", "route", "show", "table", "main"],
        Duration::from_secs(5),
    )?;
    let v: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let s = |k: &str| match &r[k] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                o => o.to_string(),
            };
            let protocol = match s("protocol").as_str() {
                "12" => "bird".to_owned(),
                "186" => "bgp".to_owned(),
                p => p.to_owned(),
            };
            let mut gateways: Vec<String> = r["gateway"]
                .as_str()
                .map(str::to_owned)
                .into_iter()
                .collect();
            for h in r["nexthops"].as_array().into_iter().flatten() {
                if let Some(g) = h["gateway"].as_str() {
                    gateways.push(g.to_owned());
                }
            }
            let kind = s("type");
            FabricRoute {
                dst: s("dst"),
                kind: if kind.is_empty() {
                    "unicast".into()
                } else {
                    kind
                },
                protocol,
                gateways,
            }
        })
        .collect())
}

/// What the end state check measured.
#[derive(Clone, Debug, Default)]
pub struct EndState {
    /// Paths checked in the nodes' RIBs.
    pub rib_paths: usize,
    /// Kernel routes checked.
    pub kernel_routes: usize,
}

/// A topology brought up: one namespace per speaker on one bridge, each speaker running.
/// Dropping it stops every speaker (by PID), deletes every namespace it created and its
/// work dir (kept when the test failed).
pub struct Fabric {
    /// The topology.
    pub topo: Topology,
    exe: PathBuf,
    /// Reflectors first, in file order, then nodes.
    members: Vec<Member>,
    hub: Hub,
    dir: WorkDir,
    started: Instant,
    label: String,
}

impl Fabric {
    /// Brings `topo` up: the bridge, a namespace per speaker, reflectors started first,
    /// then nodes. `exe` is our daemon (`CARGO_BIN_EXE_speaker`). Returns once every
    /// speaker runs (not yet converged: see [`Fabric::converge`]).
    pub fn up(topo: Topology, exe: &Path) -> Result<Self, String> {
        crate::netns::require_root()?;
        topo.validate()?;
        let label = topo.name.clone();
        let dir = WorkDir::new(&label)?;
        let hub = Hub::create(&format!("{label}-hub"), &[])?;
        let mut f = Self {
            topo,
            exe: exe.to_owned(),
            members: Vec::new(),
            hub,
            dir,
            started: Instant::now(),
            label,
        };
        let prefix = f.topo.subnet.prefix_len();
        let specs: Vec<(String, Ipv4Addr, Impl, bool)> = f
            .topo
            .reflectors
            .iter()
            .map(|r| (r.name.clone(), r.address, r.imp, true))
            .chain(
                f.topo
                    .nodes
                    .iter()
                    .map(|n| (n.name.clone(), n.address, n.imp, false)),
            )
            .collect();
        for (name, addr, imp, reflector) in specs {
            let ns = Netns::create(&format!("{}-{name}", f.label))?;
            f.hub.attach(&ns, &[&format!("{addr}/{prefix}")])?;
            let sub = f.dir.path().join(&name);
            fs::create_dir_all(&sub).map_err(|e| format!("{}: {e}", sub.display()))?;
            let running = f
                .start_speaker(&ns, &sub, &name, addr, imp, reflector)
                .map_err(|e| format!("cannot start {name} ({imp:?}): {e}"))?;
            f.members.push(Member {
                running,
                ns,
                name,
                addr,
                imp,
                reflector,
            });
        }
        f.log(&format!("{} speakers started", f.members.len()));
        Ok(f)
    }

    fn start_speaker(
        &self,
        ns: &Netns,
        dir: &Path,
        name: &str,
        addr: Ipv4Addr,
        imp: Impl,
        reflector: bool,
    ) -> Result<Running, String> {
        let t = &self.topo;
        // The session BIRD's and FRR's `Peer` methods report on: the first peer.
        let first_rr = || {
            let rack = t.rack_of_node(name);
            t.reflector(&rack.reflectors[0]).map(|r| r.address)
        };
        Ok(match (imp, reflector) {
            (Impl::Ours, _) => {
                let cfg = t.ours_config(name)?;
                Running::Ours(Box::new(Daemon::start(ns, dir, &self.exe, &cfg)?))
            }
            (Impl::Bird16, false) => {
                let n = t.node(name).ok_or("no such node")?;
                let rr = first_rr().ok_or("no reflector")?;
                Running::Bird(Box::new(Bird::start_config(
                    BirdVersion::V16,
                    ns,
                    dir,
                    name,
                    &calico_proto("Node", &rr.to_string()),
                    false,
                    &t.bird16_node_config(n),
                )?))
            }
            (Impl::Frr, false) => {
                let n = t.node(name).ok_or("no such node")?;
                let rr = first_rr().ok_or("no reflector")?;
                Running::Frr(Box::new(Frr::start_node_config(
                    ns,
                    dir,
                    name,
                    rr.into(),
                    addr.into(),
                    &t.frr_node_config(n),
                )?))
            }
            (Impl::Bird2, true) => {
                let r = t.reflector(name).ok_or("no such reflector")?;
                let first = t.reflector_peers(r)[0].0;
                Running::Bird(Box::new(Bird::start_config(
                    BirdVersion::V2,
                    ns,
                    dir,
                    name,
                    &calico_proto("Peer", &first.to_string()),
                    false,
                    &t.bird2_reflector_config(r),
                )?))
            }
            (Impl::Frr, true) => {
                let r = t.reflector(name).ok_or("no such reflector")?;
                let first = t.reflector_peers(r)[0].0;
                Running::Frr(Box::new(Frr::start_config(
                    ns,
                    dir,
                    name,
                    first.into(),
                    addr.into(),
                    &t.frr_reflector_config(r),
                )?))
            }
            (imp, _) => return Err(format!("{imp:?} cannot run {name}")),
        })
    }

    /// Prints `what` with the time since the start.
    pub fn log(&self, what: &str) {
        eprintln!(
            "[{} +{:6.1}s] {what}",
            self.label,
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Our daemon's executable.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// The work dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every member, reflectors first.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member named `name`.
    pub fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    /// The member named `name`.
    pub fn member_mut(&mut self, name: &str) -> &mut Member {
        self.members
            .iter_mut()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    /// The nodes' names, in file order.
    pub fn node_names(&self) -> Vec<String> {
        self.topo.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Panics with `msg`, every speaker's state and log, and the work dir (kept).
    pub fn fail(&self, msg: &str) -> ! {
        let mut s = format!("{}: {msg}\n", self.label);
        for m in &self.members {
            let _ = writeln!(s, "{}", m.transcript(&self.exe));
        }
        let _ = write!(s, "work dir: {}", self.dir.path().display());
        panic!("{s}");
    }

    /// `ctl --json ARGS` of our daemon `name`.
    pub fn ctl(&self, name: &str, args: &[&str]) -> Result<Value, String> {
        let m = self.member(name);
        ctl_json(&m.ns, &self.exe, &m.api(), args)
    }

    /// The sessions of `name` that are not Established, in words (empty: all up).
    pub fn sessions_down(&self, name: &str) -> Result<Vec<String>, String> {
        let m = self.member(name);
        let mut down = Vec::new();
        match &m.running {
            Running::Ours(_) => {
                let v = self.ctl(name, &["peers"])?;
                for p in v.as_array().into_iter().flatten() {
                    if p["state"] != "Established" {
                        down.push(format!("{}: {}", p["address"], p["state"]));
                    }
                }
            }
            Running::Bird(b) => {
                let out = b.birdc(&["show", "protocols"])?;
                for l in out.lines() {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    if w.len() >= 4 && w[1] == "BGP" && !l.contains("Established") {
                        down.push(l.trim().to_owned());
                    }
                }
            }
            Running::Frr(f) => {
                let v = f.vtysh_json("show bgp ipv4 unicast summary json")?;
                for (a, p) in v["peers"].as_object().into_iter().flatten() {
                    if p["state"] != "Established" {
                        down.push(format!("{a}: {}", p["state"]));
                    }
                }
            }
        }
        Ok(down)
    }

    /// The paths node `node` holds for `block` from its reflectors.
    pub fn rib_paths(&self, node: &str, block: &str) -> Result<Vec<RibPath>, String> {
        let m = self.member(node);
        let s = |v: &Value| v.as_str().map(str::to_owned);
        match &m.running {
            Running::Ours(_) => {
                let v = ctl_route(&m.ns, &self.exe, &m.api(), block)?;
                Ok(
                    v.map(|v| v["paths"].as_array().cloned().unwrap_or_default())
                        .unwrap_or_default()
                        .iter()
                        .filter(|p| !p["peer"].is_null())
                        .map(|p| RibPath {
                            from: s(&p["peer"]),
                            next_hop: s(&p["next_hop"]).unwrap_or_default(),
                            originator_id: s(&p["originator_id"]),
                            cluster_list: p["cluster_list"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(&s)
                                .collect(),
                        })
                        .collect(),
                )
            }
            Running::Bird(b) => Ok(b
                .routes(&[block])?
                .into_iter()
                .filter(|l| l.prefix == block && !l.next_hops.is_empty())
                .map(|l| RibPath {
                    from: None,
                    next_hop: l.next_hops[0].clone(),
                    originator_id: l.originator_id,
                    cluster_list: l.cluster_list,
                })
                .collect()),
            Running::Frr(f) => Ok(f
                .prefix_paths(block)?
                .iter()
                .filter(|p| p["peer"]["peerId"].as_str().is_some_and(|a| a != "0.0.0.0"))
                .map(|p| RibPath {
                    from: s(&p["peer"]["peerId"]),
                    next_hop: s(&p["nexthops"][0]["ip"]).unwrap_or_default(),
                    originator_id: s(&p["originatorId"]),
                    cluster_list: p["clusterList"]["list"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(&s)
                        .collect(),
                })
                .collect()),
        }
    }

    /// The kernel protocol a node's speaker installs routes with.
    pub fn kernel_protocol(&self, node: &str) -> &'static str {
        match self.member(node).imp {
            Impl::Frr => "bgp",
            _ => "bird",
        }
    }

    /// Checks node `to`'s view of node `from`'s block: RIB and kernel.
    pub fn check_pair(
        &self,
        to: &str,
        from: &str,
        kernel: &[FabricRoute],
        st: &mut EndState,
    ) -> Result<(), String> {
        let t = &self.topo;
        let origin = t.node(from).ok_or("no origin")?;
        let block = origin.block.to_string();
        let want_from: BTreeSet<String> = t
            .expected_sources(to, from)
            .iter()
            .map(|r| r.address.to_string())
            .collect();
        let want_cl: Vec<String> = t
            .expected_cluster_list(to, from)
            .iter()
            .map(ToString::to_string)
            .collect();
        let oa = origin.address.to_string();
        let paths = self.rib_paths(to, &block)?;
        if paths.len() != want_from.len() {
            return Err(format!(
                "{to}: {} path(s) of {from}'s {block}, want {} (from {want_from:?}): {paths:?}",
                paths.len(),
                want_from.len()
            ));
        }
        let got_from: BTreeSet<String> = paths.iter().filter_map(|p| p.from.clone()).collect();
        if paths.iter().all(|p| p.from.is_some()) && got_from != want_from {
            return Err(format!(
                "{to}: {from}'s {block} from {got_from:?}, want from {want_from:?}"
            ));
        }
        for p in &paths {
            if p.next_hop != oa
                || p.originator_id.as_deref() != Some(oa.as_str())
                || p.cluster_list != want_cl
            {
                return Err(format!(
                    "{to}: {from}'s {block}: {p:?}, want next hop and ORIGINATOR_ID {oa}, \
                     CLUSTER_LIST {want_cl:?}"
                ));
            }
        }
        st.rib_paths += paths.len();
        let proto = self.kernel_protocol(to);
        let routes: Vec<&FabricRoute> = kernel.iter().filter(|r| r.dst == block).collect();
        match routes.as_slice() {
            [r] if r.protocol == proto
                && r.kind == "unicast"
                && !r.gateways.is_empty()
                && r.gateways.iter().all(|g| *g == oa) =>
            {
                st.kernel_routes += 1;
                Ok(())
            }
            _ => Err(format!(
                "{to}'s kernel: {from}'s {block} is {routes:?}, want once, protocol {proto}, \
                 via {oa}"
            )),
        }
    }

    /// Checks the end state (module docs): every node, every other node's block, RIB and
    /// kernel; each node's own block a blackhole (ours, BIRD 1.6).
    pub fn check(&self) -> Result<EndState, String> {
        let mut st = EndState::default();
        for to in &self.topo.nodes {
            let kernel = kernel_routes_of(self.member(&to.name).ns.name())?;
            for from in self.topo.nodes.iter().filter(|n| n.name != to.name) {
                self.check_pair(&to.name, &from.name, &kernel, &mut st)?;
            }
            if to.imp != Impl::Frr {
                let own = to.block.to_string();
                let holes: Vec<&FabricRoute> = kernel.iter().filter(|r| r.dst == own).collect();
                if !matches!(holes.as_slice(), [r] if r.kind == "blackhole") {
                    return Err(format!(
                        "{}'s kernel: own block {own} is {holes:?}",
                        to.name
                    ));
                }
            }
        }
        Ok(st)
    }

    /// Waits (at most `timeout`) for the end state; returns how long it took. Fails
    /// with the last difference and every speaker's state.
    pub fn converge(&self, what: &str, timeout: Duration) -> Duration {
        let mut last_state = EndState::default();
        let took = poll_ok(timeout, Duration::from_millis(250), || {
            last_state = self.check()?;
            Ok(())
        })
        .unwrap_or_else(|e| self.fail(&format!("{what}: not within {timeout:?}: {e}")));
        self.log(&format!(
            "{what}: end state after {:.1}s ({} RIB paths, {} kernel routes checked)",
            took.as_secs_f64(),
            last_state.rib_paths,
            last_state.kernel_routes
        ));
        took
    }

    /// Kills speaker `name` with SIGKILL (ours or BIRD): no NOTIFICATION, the kernel
    /// closes its sockets.
    pub fn kill(&mut self, name: &str) -> Result<(), String> {
        match &mut self.member_mut(name).running {
            Running::Ours(d) => d.kill().map(|_| ()),
            Running::Bird(b) => b.kill(),
            Running::Frr(_) => Err(format!("{name}: killing FRR is not supported")),
        }
    }

    /// Starts speaker `name` again after [`Fabric::kill`] or a stop, with `extra`
    /// arguments for ours (`--graceful-restart`; BIRD then gets `-R`, its own way of
    /// starting as a restarting speaker).
    pub fn start_again(&mut self, name: &str, extra: &[&str]) -> Result<(), String> {
        let gr = extra.contains(&"--graceful-restart");
        match &mut self.member_mut(name).running {
            Running::Ours(d) => d.start_again(extra),
            Running::Bird(b) => b.start_again_with(if gr { &["-R"] } else { &[] }),
            Running::Frr(f) => f.start_again(),
        }
    }

    /// Tears down the TCP connections between `node` and `peer` (`ss -K` in the node's
    /// namespace: the kernel resets them, both sides see the session drop).
    pub fn reset_session(&self, node: &str, peer: Ipv4Addr) -> Result<(), String> {
        let m = self.member(node);
        m.ns.exec("ss", &["-K", "dst", &peer.to_string()])
            .map(|_| ())
    }

    /// UPDATE messages speaker `name` has received, summed over its sessions (ours:
    /// the API's `updates_received`; BIRD: `Import updates` + `Import withdraws`
    /// received; FRR: `updatesRecv`).
    pub fn updates_received(&self, name: &str) -> Result<u64, String> {
        self.updates_received_except(name, "")
    }

    /// [`Fabric::updates_received`] on the sessions other than with the peer at address
    /// `except` (each session's counter starts with the session).
    pub fn updates_received_except(&self, name: &str, except: &str) -> Result<u64, String> {
        let m = self.member(name);
        match &m.running {
            Running::Ours(_) => {
                let v = self.ctl(name, &["peers"])?;
                Ok(v.as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["address"] != except)
                    .filter_map(|p| p["updates_received"].as_u64())
                    .sum())
            }
            Running::Bird(b) => {
                // One block per protocol, led by its `show protocols` line at column 0
                // (`Node_10_0_0_1  BGP ...`); the peer's address is in the name.
                let skip = (!except.is_empty()).then(|| except.replace('.', "_"));
                let out = b.birdc(&["show", "protocols", "all"])?;
                let mut counting = true;
                let mut sum = 0;
                for l in out.lines() {
                    if l.starts_with(|c: char| c.is_ascii_alphabetic()) {
                        let proto = l.split_whitespace().next().unwrap_or_default();
                        counting = skip.as_ref().is_none_or(|s| !proto.ends_with(s.as_str()));
                        continue;
                    }
                    let t = l.trim();
                    let rest = t
                        .strip_prefix("Import updates:")
                        .or_else(|| t.strip_prefix("Import withdraws:"));
                    if let (true, Some(r)) = (counting, rest) {
                        sum += r
                            .split_whitespace()
                            .next()
                            .and_then(|n| n.parse::<u64>().ok())
                            .unwrap_or(0);
                    }
                }
                Ok(sum)
            }
            Running::Frr(f) => {
                let v = f.vtysh_json("show bgp neighbors json")?;
                Ok(v.as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(a, _)| a.as_str() != except)
                    .filter_map(|(_, n)| n["messageStats"]["updatesRecv"].as_u64())
                    .sum())
            }
        }
    }

    /// Our daemon `name`'s sessions: peer address -> seconds Established (`None` while
    /// not Established).
    pub fn uptimes(&self, name: &str) -> Result<BTreeMap<String, Option<u64>>, String> {
        let v = self.ctl(name, &["peers"])?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["address"].as_str().unwrap_or_default().to_owned(),
                    p["uptime_s"].as_u64(),
                )
            })
            .collect())
    }

    /// The prefixes our daemon `name` holds a best route for (`ctl routes`, first page).
    pub fn best_prefixes(&self, name: &str) -> Result<BTreeSet<String>, String> {
        let v = self.ctl(name, &["routes"])?;
        Ok(v["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["prefix"].as_str().map(str::to_owned))
            .collect())
    }

    /// A watcher of the kernels of `nodes`: every 100 ms, whether each other node's
    /// block is there (protocol and gateway right), recording every gap.
    pub fn watch_kernels(&self, nodes: &[&str]) -> KernelWatch {
        let mut targets = Vec::new();
        for &to in nodes {
            let proto = self.kernel_protocol(to);
            let want: Vec<(String, String, String)> = self
                .topo
                .nodes
                .iter()
                .filter(|n| n.name != to)
                .map(|n| (n.name.clone(), n.block.to_string(), n.address.to_string()))
                .collect();
            targets.push((
                to.to_owned(),
                self.member(to).ns.name().to_owned(),
                proto,
                want,
            ));
        }
        KernelWatch::start(targets)
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        // Speakers first (each by its PID), then their namespaces: `members` drops
        // before `hub` and `dir` by field order; stop them here explicitly so that a
        // slow one does not delay the others' namespaces.
        let members = std::mem::take(&mut self.members);
        drop(members);
    }
}

/// The resident set size of process `pid`, in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// One gap seen by a [`KernelWatch`]: node `node`'s kernel lacked `origin`'s block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    /// The node whose kernel it was.
    pub node: String,
    /// The node whose block was missing.
    pub origin: String,
    /// How long it was missing (up to the poll that saw it back, or the end).
    pub length: Duration,
}

type Target = (String, String, &'static str, Vec<(String, String, String)>);

/// Polls kernels every 100 ms in a thread until [`KernelWatch::stop`].
pub struct KernelWatch {
    stop: Arc<AtomicBool>,
    gaps: Arc<Mutex<Vec<Gap>>>,
    polls: Arc<Mutex<u64>>,
    errors: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl KernelWatch {
    fn start(targets: Vec<Target>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let gaps = Arc::new(Mutex::new(Vec::new()));
        let polls = Arc::new(Mutex::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let (s, g, p, e) = (stop.clone(), gaps.clone(), polls.clone(), errors.clone());
        let thread = thread::spawn(move || {
            // (node, origin) -> when it went missing
            let mut missing: BTreeMap<(String, String), Instant> = BTreeMap::new();
            // Bounded: at most 10 minutes of polling.
            let deadline = Instant::now() + Duration::from_secs(600);
            while !s.load(Ordering::Acquire) && Instant::now() < deadline {
                let t0 = Instant::now();
                for (node, ns, proto, want) in &targets {
                    let routes = match kernel_routes_of(ns) {
                        Ok(r) => r,
                        Err(err) => {
                            e.lock().unwrap_or_else(|x| x.into_inner()).push(err);
                            continue;
                        }
                    };
                    for (origin, block, gw) in want {
                        let ok = routes.iter().filter(|r| r.dst == *block).count() == 1
                            && routes.iter().any(|r| {
                                r.dst == *block
                                    && r.protocol == *proto
                                    && !r.gateways.is_empty()
                                    && r.gateways.iter().all(|g| g == gw)
                            });
                        let key = (node.clone(), origin.clone());
                        if ok {
                            if let Some(since) = missing.remove(&key) {
                                g.lock().unwrap_or_else(|x| x.into_inner()).push(Gap {
                                    node: key.0,
                                    origin: key.1,
                                    length: since.elapsed(),
                                });
                            }
                        } else {
                            missing.entry(key).or_insert_with(Instant::now);
                        }
                    }
                }
                *p.lock().unwrap_or_else(|x| x.into_inner()) += 1;
                thread::sleep(Duration::from_millis(100).saturating_sub(t0.elapsed()));
            }
            let mut g = g.lock().unwrap_or_else(|x| x.into_inner());
            for ((node, origin), since) in missing {
                g.push(Gap {
                    node,
                    origin,
                    length: since.elapsed(),
                });
            }
        });
        Self {
            stop,
            gaps,
            polls,
            errors,
            thread: Some(thread),
        }
    }

    /// Stops polling; returns every gap seen (those still open at the end included) and
    /// the number of polls.
    pub fn stop(mut self) -> (Vec<Gap>, u64) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let errors = self
            .errors
            .lock()
            .unwrap_or_else(|x| x.into_inner())
            .clone();
        if !errors.is_empty() {
            eprintln!(
                "kernel watch: {} failed polls, first: {}",
                errors.len(),
                errors[0]
            );
        }
        let gaps = self.gaps.lock().unwrap_or_else(|x| x.into_inner()).clone();
        let polls = *self.polls.lock().unwrap_or_else(|x| x.into_inner());
        (gaps, polls)
    }
}

impl Drop for KernelWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tor() -> Topology {
        Topology::named("tor-shared").expect("tests/topologies/tor-shared.toml")
    }

    #[test]
    fn test_every_topology_file_loads() {
        let mut n = 0;
        for e in fs::read_dir(topologies_dir()).expect("tests/topologies") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "toml") {
                Topology::load(&p).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 3);
    }

    #[test]
    fn test_expected_sources_and_cluster_lists() {
        let t = tor();
        let names = |v: Vec<&Reflector>| v.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        // r1's clients are not reflected to each other by RR2 (client_to_client off).
        assert_eq!(names(t.expected_sources("n1", "n2")), ["rr1"]);
        assert_eq!(names(t.expected_sources("n1", "n4")), ["rr1", "rr2"]);
        assert_eq!(names(t.expected_sources("n4", "n5")), ["rr2", "rr3"]);
        let c = |s: &str| s.parse::<Ipv4Addr>().expect("addr");
        assert_eq!(t.expected_cluster_list("n1", "n2"), [c("1.0.0.1")]);
        assert_eq!(
            t.expected_cluster_list("n1", "n7"),
            [c("1.0.0.1"), c("1.0.0.3")]
        );
        let rr2 = t.ours_config("rr2").expect("config");
        assert!(rr2.contains("name = \"rack-r1\""), "{rr2}");
        assert!(rr2.contains("client_to_client = false"), "{rr2}");
        assert_eq!(rr2.matches("client_to_client").count(), 1, "{rr2}");
        assert_eq!(rr2.matches("[[peer]]").count(), 6 + 4, "{rr2}");
    }

    #[test]
    fn test_validation_names_the_fault() {
        let base = fs::read_to_string(topologies_dir().join("tor.toml")).expect("tor.toml");
        let bad = |from: &str, to: &str, want: &str| {
            assert!(base.contains(from), "{from}");
            let e = Topology::parse(&base.replacen(from, to, 1)).expect_err(want);
            assert!(e.contains(want), "{e} lacks {want}");
        };
        bad(
            "address = \"10.0.0.2\"",
            "address = \"10.0.0.1\"",
            "10.0.0.1 is used twice",
        );
        bad(
            "block = \"10.244.2.0/26\"",
            "block = \"10.244.1.0/27\"",
            "overlaps n1's block",
        );
        bad(
            "block = \"10.244.2.0/26\"",
            "block = \"10.245.1.0/26\"",
            "outside 10.244.0.0/16",
        );
        bad(
            "nodes = [\"n4\", \"n5\", \"n6\"]",
            "nodes = [\"n4\", \"n5\"]",
            "n6 is in 0 racks",
        );
        bad(
            "impl = \"ours\"\n\n[[reflector]]",
            "impl = \"bird16\"\n\n[[reflector]]",
            "runs nodes only",
        );
        bad(
            "cluster_id = \"1.0.0.2\"",
            "cluster_id = \"1.0.0.1\"",
            "used twice",
        );
        bad(
            "reflectors = [\"rr1\", \"rr2\"]",
            "reflectors = [\"rr1\", \"rr7\"]",
            "no reflector rr7",
        );
        bad("asn = 65100", "asn = 65100\nbogus = 1", "unknown field");
    }
}
