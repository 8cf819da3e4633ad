//! What one node runs, computed from a [`Datastore`]: its sessions as confd renders them,
//! its blocks, and the whole [`Config`].
//!
//! The sessions follow confd's peer selection (calico `confd/pkg/backends/calico`:
//! `updatePeersV1`, `processMeshPeers`, `buildPeerFromData`), read for their logic:
//! - the mesh, unless `nodeToNodeMeshEnabled` is false or this node is a reflector: a
//!   session to every other node with an address of the family that is not a reflector,
//!   passive towards an address greater **as a string**; the peer's AS, else ours; the
//!   peer node's listen port; `nodeMeshPassword`, `nodeMeshMaxRestartTime`;
//! - `BGPPeer`s: global ones (neither `node` nor `nodeSelector`) first, then those of this
//!   node (`node`, `nodeSelector`), then the reverse peerings (a node chosen by
//!   `peerSelector`, or whose address, AS and port are `peerIP`'s, peers back with the
//!   nodes of `node`/`nodeSelector`, or every node, unless `reversePeering: Manual`);
//!   the first peering to an address and port wins, and a node peering is dropped where a
//!   global one to the same address and port exists;
//! - for each: a reflector node (cluster ID set) makes an iBGP peer its client unless the
//!   peer is a node with the same cluster ID; `nextHopMode` (else `keepOriginalNextHop`,
//!   on eBGP only); `localASNumber` (the peer's `local_as`); `numAllowedLocalASNumbers`
//!   (its `allow_local_as`); `ttlSecurity`; `sourceAddress`; a global peering to a
//!   Calico node's address is passive towards a greater address; `reachableBy`: a
//!   static route to the peer's address via that gateway ([`Plan::static_routes`], a
//!   `[[fib.static_route]]`, as `bird_aggr.cfg` renders `route PEER/32 via GW`), also
//!   for a peering by `peerSelector` and a reverse peering (confd's `nodeAsBGPPeers`
//!   copies it);
//! - local workload peering (`localWorkloadSelector`, confd's
//!   `localBGPPeerDataAsBGPPeers`): Felix chooses the workloads and names the BGPPeer in
//!   their endpoint status files ([`super::model::read_endpoint_status`]); each chosen
//!   workload of this node gets a passive session per family to its first address,
//!   `Local_Workload_<address>`, with the BGPPeer's `asNumber`, `localASNumber` and
//!   `filters` and nothing else of it (no source address, TTL security, password,
//!   restart time or next-hop mode), as a reflector's client when iBGP; a global
//!   BGPPeer's on every node, a node BGPPeer's on its nodes; never reversed;
//! - names: `Mesh_`, `Global_`, `Node_`, `Local_Workload_` and the address with `.`/`:`
//!   as `_`, then `_port_N` for a port given in `peerIP` or taken from the peer node's
//!   listen port.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Serialize;
use toml::{Table, Value as T};

use super::model::{
    BgpFilter, BgpPeer, CommunityValue, Datastore, Encap, FilterRule, Node, ResourceError,
};
use crate::config::{Config, Secret};

/// BIRD's `multihop` without a number, as Calico's sessions say it (and the BIRD
/// translation reads it).
const MULTIHOP: i64 = 64;
/// Calico's `BirdIntMaxValue`: priority and LOCAL_PREF are `2147483647 - x` of each other.
const INT_MAX: i64 = 2_147_483_647;

/// Where the node's router ID comes from (`CALICO_ROUTER_ID`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouterId {
    /// The node's IPv4 address (the default).
    Address,
    /// `hash`: a hash of the node name.
    Hash,
    /// An explicit address.
    Fixed(Ipv4Addr),
}

/// What the agent knows of its node from outside the datastore.
#[derive(Clone, Debug)]
pub struct NodeEnv {
    /// `NODENAME` / `--node-name`.
    pub node_name: String,
    /// `CALICO_ROUTER_ID`.
    pub router_id: RouterId,
    /// Where BGPPeer password secrets are read from in etcd mode (one file per secret).
    pub secrets_dir: Option<PathBuf>,
}

/// One BGP session of the node, as `rr-daemon agent --once --print-sessions` prints it
/// (exactly these keys, in this order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionPlan {
    /// The protocol name confd renders (`Mesh_10_0_0_2`, `Node_...`, `Global_...`).
    pub name: String,
    /// The neighbour's address.
    pub neighbor: IpAddr,
    /// Its port (179 unless set).
    pub port: u16,
    /// The peer's AS.
    pub asn: u32,
    /// Ours on this session.
    pub local_asn: u32,
    /// We wait for the peer to connect.
    pub passive: bool,
    /// The peer is our route-reflector client.
    pub rr_client: bool,
    /// The cluster ID we reflect with on this session.
    pub cluster_id: Option<String>,
    /// The source address to bind.
    pub source_address: Option<String>,
    /// GTSM: the hops, or `None` when off.
    pub ttl_security: Option<u8>,
    /// `"self"`, `"keep"` or `None`.
    pub next_hop: Option<String>,
    /// Whether a password is set (never the secret).
    pub password: bool,
    /// Graceful restart time in seconds, `None` for the default.
    pub graceful_restart_time: Option<u32>,
    /// The BGPFilter names applied on import, in order.
    pub import_filters: Vec<String>,
    /// The BGPFilter names applied on export, in order.
    pub export_filters: Vec<String>,
}

/// What a session needs beyond what `--print-sessions` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionDetail {
    /// The TCP-MD5 key read from the secret.
    pub password: Option<Secret>,
    /// `keepaliveTime` in seconds.
    pub keepalive_time: Option<u32>,
    /// The session's resource (`BGPPeer` key, or the `BGPConfiguration` for the mesh).
    pub source: String,
    /// `numAllowedLocalASNumbers`: how many times our AS may be in a received AS_PATH
    /// (BIRD's `allow local as N`, the peer's `allow_local_as`); 0: none.
    pub allow_local_as: u8,
    /// Whether the session goes into the [`Config`] (`false`: a second session to one
    /// address, which the speaker cannot do; the reason is in [`Plan::skipped`]).
    pub in_config: bool,
}

/// The node itself, as planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePlan {
    /// Its name.
    pub name: String,
    /// Its AS (`spec.bgp.asNumber`, else the global AS, else 64512).
    pub asn: u32,
    /// Its router ID.
    pub router_id: Ipv4Addr,
    /// Its cluster ID, when it is a reflector.
    pub cluster_id: Option<Ipv4Addr>,
    /// Its IPv4 address and subnet.
    pub ipv4: Option<(Ipv4Addr, ipnet::Ipv4Net)>,
    /// Its IPv6 address and subnet.
    pub ipv6: Option<(std::net::Ipv6Addr, ipnet::Ipv6Net)>,
    /// Where it listens.
    pub listen: Vec<SocketAddr>,
}

/// A pool, as the node's kernel routes and exports see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolPlan {
    /// The pool's CIDR.
    pub cidr: IpNet,
    /// Its `ipipMode` for the routes we install (`Never` for IPv6).
    pub ipip: Encap,
    /// We install its routes (else Felix does: VXLAN, and IP-in-IP unless
    /// `programClusterRoutes` gives them to BIRD).
    pub install: bool,
    /// Routes inside it are announced (`disableBGPExport` false).
    pub export: bool,
}

/// Everything the node runs.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Its sessions, sorted by name.
    pub sessions: Vec<SessionPlan>,
    /// Resources that could not be used, and why.
    pub skipped: Vec<ResourceError>,
    /// The node.
    pub node: NodePlan,
    /// Per session (by name): what the config needs beyond the printed keys.
    pub details: BTreeMap<String, SessionDetail>,
    /// The node's blocks (confirmed affinities; `/32`s left out, as confd does).
    pub blocks: Vec<IpNet>,
    /// The IP pools.
    pub pools: Vec<PoolPlan>,
    /// Static routes to BGPPeers' addresses via their `reachableBy` gateways (prefix,
    /// gateway), as `bird_aggr.cfg` renders them: `[[fib.static_route]]`s.
    pub static_routes: Vec<(IpNet, IpAddr)>,
    /// The BGPFilters sessions use, by name.
    pub filters: BTreeMap<String, BgpFilter>,
    /// `prefixAdvertisements`: prefix, communities, large communities.
    pub advertisements: Vec<super::model::Advertisement>,
    /// Service CIDRs the node announces (`serviceClusterIPs`, and `serviceExternalIPs`
    /// and `serviceLoadBalancerIPs` that are not single addresses); a reflector also passes on routes inside
    /// `serviceLoadBalancerIPs`/`serviceExternalIPs` ranges.
    pub service_routes: Vec<IpNet>,
    /// Ranges a reflector passes on (load-balancer and external service IPs).
    pub reflected_services: Vec<IpNet>,
    /// Interfaces whose kernel routes are never announced (Felix's tunnels).
    pub route_exclude: Vec<String>,
    /// Interfaces whose prefixes are never announced (`ignoredInterfaces`, `cali*`,
    /// `kube-ipvs*`).
    pub direct_exclude: Vec<String>,
    /// The normal route priority (kernel metric) of IPv4 routes.
    pub normal_priority: u32,
    /// The log filter of `logSeverityScreen` (the node's `BGPConfiguration` over the
    /// global one, as confd reads it), see [`log_filter`]; `None`: the start's.
    pub log_level: Option<String>,
}

/// The log filter for a `logSeverityScreen` (Calico's `Debug`, `Info`, `Warning`,
/// `Error`, `Fatal`, `Panic`, any case; `None` turns logging off); `None` for another
/// value.
pub fn log_filter(severity: &str) -> Option<&'static str> {
    match severity.trim().to_ascii_lowercase().as_str() {
        "trace" => Some("trace"),
        "debug" => Some("debug"),
        "info" => Some("info"),
        "warning" | "warn" => Some("warn"),
        "error" | "fatal" | "panic" => Some("error"),
        "none" => Some("off"),
        _ => None,
    }
}

/// Why no plan can be made (the node's own resource is missing or unusable).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

/// Calico's router ID from a node name (`CALICO_ROUTER_ID=hash`): the first four bytes
/// of the name's SHA-256, the first lowered by 32 when above 223 (no class D or E).
pub fn hash_router_id(name: &str) -> Ipv4Addr {
    use sha2::Digest;
    let h = sha2::Sha256::digest(name.as_bytes());
    let first = if h[0] > 223 { h[0] - 32 } else { h[0] };
    Ipv4Addr::new(first, h[1], h[2], h[3])
}

/// confd's protocol name for an address: `.` and `:` become `_`.
fn proto_name(prefix: &str, ip: IpAddr, port: u16) -> String {
    let s = ip.to_string().replace(['.', ':'], "_");
    if port > 0 {
        format!("{prefix}_{s}_port_{port}")
    } else {
        format!("{prefix}_{s}")
    }
}

fn res_key(plural: &str, name: &str) -> String {
    format!("{}{plural}/{name}", super::model::RESOURCES)
}

/// A peering as confd's v1 peer keys hold it, before it is rendered for one family.
#[derive(Clone, Debug)]
struct Peering<'a> {
    ip: IpAddr,
    port: u16,
    asn: u32,
    rr_cluster_id: Option<&'a str>,
    calico_node: bool,
    ttl_security: Option<u8>,
    /// `reachableBy`, copied as confd copies it (whatever its family).
    reachable_by: Option<IpAddr>,
    /// A workload of this node (`localWorkloadSelector`).
    local_workload: bool,
    peer: &'a BgpPeer,
}

/// `reachableBy` of a BGPPeer (checked when read).
fn reachable_by(p: &BgpPeer) -> Option<IpAddr> {
    p.spec.reachable_by.parse().ok()
}

struct Ctx<'a> {
    ds: &'a Datastore,
    global_as: u32,
    global_port: Option<u16>,
}

impl<'a> Ctx<'a> {
    fn node_port(&self, name: &str) -> Option<u16> {
        self.ds
            .bgp_configs
            .get(&format!("node.{name}"))
            .and_then(|c| c.spec.listen_port)
            .or(self.global_port)
    }

    fn nodes(&self) -> impl Iterator<Item = (&'a String, &'a Node)> + 'a {
        self.ds.nodes.iter().filter(|(_, n)| n.spec.bgp.is_some())
    }

    fn matching(&self, sel: &super::selector::Selector) -> Vec<&'a String> {
        self.nodes()
            .filter(|(_, n)| sel.matches(n.labels()))
            .map(|(k, _)| k)
            .collect()
    }

    /// Nodes whose address is `ip`, whose AS is `asn` and (when given) whose listen port
    /// is `port` (confd's `nodesWithIPPortAndAS`: a port refuses a node whose own
    /// listen port differs, else one when the global listen port is set and differs; with
    /// neither set, any port matches).
    fn nodes_with(&self, ip: IpAddr, asn: u32, port: u16) -> Vec<&'a String> {
        self.nodes()
            .filter(|(name, n)| {
                let own = self
                    .ds
                    .bgp_configs
                    .get(&format!("node.{name}"))
                    .and_then(|c| c.spec.listen_port);
                let port_ok = port == 0
                    || match own {
                        Some(p) if p != port => false,
                        _ => self.global_port.is_none_or(|g| g == port),
                    };
                (n.ip(false) == Some(ip) || n.ip(true) == Some(ip))
                    && n.asn().unwrap_or(self.global_as) == asn
                    && port_ok
            })
            .map(|(k, _)| k)
            .collect()
    }

    /// A node as a peering target (confd's `nodeAsBGPPeers`), for the families asked.
    fn node_as_peerings(
        &self,
        name: &str,
        v4: bool,
        v6: bool,
        peer: &'a BgpPeer,
    ) -> Vec<Peering<'a>> {
        let Some(n) = self.ds.nodes.get(name) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (want, v6_) in [(v4, false), (v6, true)] {
            if !want {
                continue;
            }
            if let Some(ip) = n.ip(v6_) {
                out.push(Peering {
                    ip,
                    port: self.node_port(name).unwrap_or(0),
                    asn: n.asn().unwrap_or(self.global_as),
                    rr_cluster_id: n.cluster_id(),
                    calico_node: false,
                    ttl_security: peer.spec.ttl_security,
                    reachable_by: reachable_by(peer),
                    local_workload: false,
                    peer,
                });
            }
        }
        out
    }
}

/// Computes the node's plan.
pub fn plan(ds: &Datastore, env: &NodeEnv) -> Result<Plan, PlanError> {
    let me = &env.node_name;
    let node = ds
        .nodes
        .get(me)
        .ok_or_else(|| PlanError(format!("node {me}: no Node resource in the datastore")))?;
    if node.spec.bgp.is_none() {
        return Err(PlanError(format!(
            "node {me}: its Node resource has no spec.bgp"
        )));
    }
    let global = ds.bgp_configs.get("default");
    let mine = ds.bgp_configs.get(&format!("node.{me}"));
    let global_as = global.and_then(|c| c.spec.as_number).map_or(64512, |a| a.0);
    let ctx = Ctx {
        ds,
        global_as,
        global_port: global.and_then(|c| c.spec.listen_port),
    };
    let asn = node.asn().unwrap_or(global_as);
    let router_id = match &env.router_id {
        RouterId::Fixed(a) => *a,
        RouterId::Hash => hash_router_id(me),
        RouterId::Address => node.ipv4.map(|(a, _)| a).ok_or_else(|| {
            PlanError(format!(
                "node {me} has no IPv4 address for the router ID: set CALICO_ROUTER_ID \
                 (hash or an address)"
            ))
        })?,
    };
    let my_cluster = node.cluster_id();
    let listen_port = ctx.node_port(me).unwrap_or(179);
    let bind_node_ip = global.and_then(|c| c.spec.bind_mode.as_deref()) == Some("NodeIP");
    let mut listen = Vec::new();
    if node.ipv4.is_some() || node.ipv6.is_none() {
        let a = match (bind_node_ip, node.ipv4) {
            (true, Some((a, _))) => IpAddr::V4(a),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        listen.push(SocketAddr::new(a, listen_port));
    }
    if node.ipv6.is_some() {
        let a = match (bind_node_ip, node.ipv6) {
            (true, Some((a, _))) => IpAddr::V6(a),
            _ => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        listen.push(SocketAddr::new(a, listen_port));
    }
    let mut skipped = Vec::new();
    let secret = |r: &Option<super::model::Password>,
                  key: &str,
                  field: &str,
                  skipped: &mut Vec<ResourceError>|
     -> Option<Secret> {
        let r = r.as_ref()?.secret_key_ref.as_ref()?;
        let Some(dir) = &env.secrets_dir else {
            skipped.push(ResourceError::new(
                key,
                field,
                "a password secret is referenced but no secrets directory is given: \
                 the session runs without a password",
            ));
            return None;
        };
        let path = dir.join(&r.name).join(&r.key);
        let read = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| Secret::from_file_text(&t));
        match read {
            Ok(s) => Some(s),
            Err(e) => {
                skipped.push(ResourceError::new(
                    key,
                    field,
                    format!(
                        "{}: {e}: the session runs without a password",
                        path.display()
                    ),
                ));
                None
            }
        }
    };

    let mut sessions: Vec<(SessionPlan, SessionDetail)> = Vec::new();

    // The mesh.
    let mesh_on = global
        .and_then(|c| c.spec.node_to_node_mesh_enabled)
        .unwrap_or(true);
    if my_cluster.is_none() && mesh_on {
        let gkey = res_key("bgpconfigurations", "default");
        let password = global.and_then(|c| {
            secret(
                &c.spec.node_mesh_password,
                &gkey,
                "spec.nodeMeshPassword",
                &mut skipped,
            )
        });
        let restart = global.and_then(|c| c.mesh_restart_secs);
        for v6 in [false, true] {
            let Some(my_ip) = node.ip(v6) else { continue };
            for (name, n) in ctx.nodes() {
                let Some(ip) = n.ip(v6) else { continue };
                if ip == my_ip || n.cluster_id().is_some() {
                    continue;
                }
                let s = SessionPlan {
                    name: proto_name("Mesh", ip, 0),
                    neighbor: ip,
                    port: ctx.node_port(name).unwrap_or(179),
                    asn: n.asn().unwrap_or(asn),
                    local_asn: asn,
                    passive: ip.to_string() > my_ip.to_string(),
                    rr_client: false,
                    cluster_id: None,
                    source_address: Some(my_ip.to_string()),
                    ttl_security: None,
                    next_hop: None,
                    password: password.is_some(),
                    graceful_restart_time: restart,
                    import_filters: Vec::new(),
                    export_filters: Vec::new(),
                };
                let d = SessionDetail {
                    password: password.clone(),
                    keepalive_time: None,
                    source: gkey.clone(),
                    allow_local_as: 0,
                    in_config: true,
                };
                sessions.push((s, d));
            }
        }
    }

    // BGPPeers, as confd's v1 peer keys: global, then this node's, then reverse.
    let mut global_keys: BTreeMap<(IpAddr, u16), Peering<'_>> = BTreeMap::new();
    let mut node_keys: BTreeMap<(IpAddr, u16), Peering<'_>> = BTreeMap::new();
    let all_names: Vec<&String> = ctx.nodes().map(|(k, _)| k).collect();
    let me_in = |names: &[&String]| names.contains(&me);
    for global_pass in [true, false] {
        for p in ds.peers.values() {
            if global_pass != p.is_global() {
                continue;
            }
            if !global_pass {
                let locals = match (&p.node_selector, p.spec.node.as_str()) {
                    (Some(s), _) => ctx.matching(s),
                    (None, n) => ds
                        .nodes
                        .get_key_value(n)
                        .map(|(k, _)| k)
                        .into_iter()
                        .collect(),
                };
                if !me_in(&locals) {
                    continue;
                }
            }
            let peerings = if p.is_local_workload() {
                let peer_as = p.spec.as_number.map_or(0, |a| a.0);
                ds.workloads
                    .values()
                    .filter(|w| w.bgp_peer_name == p.metadata.name)
                    .flat_map(|w| [w.ipv4.map(IpAddr::V4), w.ipv6.map(IpAddr::V6)])
                    .flatten()
                    .map(|ip| Peering {
                        ip,
                        port: 0,
                        asn: peer_as,
                        rr_cluster_id: None,
                        calico_node: false,
                        ttl_security: None,
                        reachable_by: None,
                        local_workload: true,
                        peer: p,
                    })
                    .collect()
            } else if let Some(sel) = &p.peer_selector {
                ctx.matching(sel)
                    .into_iter()
                    .flat_map(|n| ctx.node_as_peerings(n, true, true, p))
                    .collect()
            } else if let Some((ip, mut port)) = p.peer_ip {
                let peer_as = p.spec.as_number.map_or(0, |a| a.0);
                if port == 0
                    && let Some(n) = ctx.nodes_with(ip, peer_as, 0).first()
                {
                    port = ctx.node_port(n).unwrap_or(0);
                }
                let calico_node = ctx
                    .nodes()
                    .any(|(_, n)| n.ip(false) == Some(ip) || n.ip(true) == Some(ip));
                vec![Peering {
                    ip,
                    port,
                    asn: peer_as,
                    rr_cluster_id: None,
                    calico_node,
                    ttl_security: p.spec.ttl_security,
                    reachable_by: reachable_by(p),
                    local_workload: false,
                    peer: p,
                }]
            } else {
                Vec::new()
            };
            for pr in peerings {
                let k = (pr.ip, pr.port);
                if global_pass {
                    global_keys.entry(k).or_insert(pr);
                } else if !global_keys.contains_key(&k) {
                    node_keys.entry(k).or_insert(pr);
                }
            }
        }
    }
    for p in ds.peers.values() {
        // confd: a local workload's reverse peering is the workload's own business.
        if !p.reverse() || p.is_local_workload() {
            continue;
        }
        let (locals, v4, v6) = if let Some(sel) = &p.peer_selector {
            (ctx.matching(sel), true, true)
        } else if let Some((ip, port)) = p.peer_ip {
            let peer_as = p.spec.as_number.map_or(global_as, |a| a.0);
            (
                ctx.nodes_with(ip, peer_as, port),
                !ip.is_ipv6(),
                ip.is_ipv6(),
            )
        } else {
            continue;
        };
        if !me_in(&locals) {
            continue;
        }
        let peer_nodes = match (&p.node_selector, p.spec.node.as_str()) {
            (Some(s), _) => ctx.matching(s),
            (None, "") => all_names.clone(),
            (None, n) => ds
                .nodes
                .get_key_value(n)
                .map(|(k, _)| k)
                .into_iter()
                .collect(),
        };
        for n in peer_nodes {
            for pr in ctx.node_as_peerings(n, v4, v6, p) {
                let k = (pr.ip, pr.port);
                if !global_keys.contains_key(&k) {
                    node_keys.entry(k).or_insert(pr);
                }
            }
        }
    }

    let mut used_filters = BTreeMap::new();
    let mut static_routes: Vec<(IpNet, IpAddr)> = Vec::new();
    for (kind, keys) in [("Global", &global_keys), ("Node", &node_keys)] {
        for pr in keys.values() {
            let prefix = if pr.local_workload {
                "Local_Workload"
            } else {
                kind
            };
            let wl = pr.local_workload;
            let v6 = pr.ip.is_ipv6();
            let Some(my_ip) = node.ip(v6) else { continue };
            if pr.ip == my_ip {
                continue;
            }
            let p = pr.peer;
            let pkey = res_key("bgppeers", &p.metadata.name);
            let local = p.spec.local_as_number.map(|a| a.0).filter(|a| *a != 0);
            let effective = local.unwrap_or(asn);
            let next_hop = match p.spec.next_hop_mode.as_deref() {
                _ if wl => None,
                Some("Self") => Some("self".to_owned()),
                Some("Keep") => Some("keep".to_owned()),
                Some(_) => None,
                None if p.spec.keep_original_next_hop && pr.asn != effective => {
                    Some("keep".to_owned())
                }
                None => None,
            };
            let (rr_client, cluster_id) = match my_cluster {
                Some(c) if pr.asn == effective && pr.rr_cluster_id != Some(c) => {
                    (true, Some(c.to_owned()))
                }
                _ => (false, None),
            };
            let passive = wl
                || (prefix == "Global" && pr.calico_node && pr.ip.to_string() > my_ip.to_string());
            let mut filters = |import: bool| -> Vec<String> {
                let mut out = Vec::new();
                for f in &p.spec.filters {
                    match ds.filters.get(f) {
                        Some(flt) if !flt.rules(import, v6).is_empty() => {
                            used_filters.insert(f.clone(), flt.clone());
                            out.push(f.clone());
                        }
                        _ => {}
                    }
                }
                out
            };
            let import_filters = filters(true);
            let export_filters = filters(false);
            let password = if wl {
                None
            } else {
                secret(
                    &p.spec.password,
                    &pkey,
                    "spec.password.secretKeyRef",
                    &mut skipped,
                )
            };
            let source_address = match p.spec.source_address.as_str() {
                _ if wl => None,
                "None" => None,
                _ => Some(my_ip.to_string()),
            };
            let s = SessionPlan {
                name: proto_name(prefix, pr.ip, pr.port),
                neighbor: pr.ip,
                port: if pr.port == 0 { 179 } else { pr.port },
                asn: pr.asn,
                local_asn: effective,
                passive,
                rr_client,
                cluster_id,
                source_address,
                ttl_security: pr.ttl_security.filter(|t| *t > 0),
                next_hop,
                password: password.is_some(),
                graceful_restart_time: if wl { None } else { p.restart_secs },
                import_filters,
                export_filters,
            };
            let allow_local_as = match p.spec.num_allowed_local_as_numbers {
                _ if wl => 0,
                Some(n) if n > 255 => {
                    skipped.push(ResourceError::new(
                        &pkey,
                        "spec.numAllowedLocalASNumbers",
                        format!("{n}: at most 255 taken"),
                    ));
                    255
                }
                Some(n) => u8::try_from(n).unwrap_or(0),
                None => 0,
            };
            if let Some(gw) = pr.reachable_by {
                let host = IpNet::from(pr.ip);
                if gw.is_ipv4() != pr.ip.is_ipv4() {
                    // A peerSelector's nodes of the other family (confd renders a route
                    // BIRD refuses).
                    skipped.push(ResourceError::new(
                        &pkey,
                        "spec.reachableBy",
                        format!(
                            "session {}: gateway {gw} is not of {}'s family: no static route",
                            proto_name(prefix, pr.ip, pr.port),
                            pr.ip
                        ),
                    ));
                } else if !static_routes.iter().any(|(p, _)| *p == host) {
                    static_routes.push((host, gw));
                }
            }
            let d = SessionDetail {
                password,
                keepalive_time: if wl { None } else { p.keepalive_secs },
                source: pkey,
                allow_local_as,
                in_config: true,
            };
            sessions.push((s, d));
        }
    }
    sessions.sort_by(|a, b| a.0.name.cmp(&b.0.name));

    // What the speaker cannot run: two sessions to one address.
    let mut seen: BTreeSet<IpAddr> = BTreeSet::new();
    for (s, d) in &mut sessions {
        if s.neighbor == IpAddr::V4(router_id) || !seen.insert(s.neighbor) {
            d.in_config = false;
            skipped.push(ResourceError::new(
                &d.source,
                "spec.peerIP",
                format!(
                    "session {}: another session (or our router ID) has address {}: one \
                     session per address, left out of the running config",
                    s.name, s.neighbor
                ),
            ));
        }
    }

    // Pools, blocks and what the node announces.
    let programs = match global.and_then(|c| c.spec.program_cluster_routes.as_deref()) {
        Some("Disabled") => (false, false),
        Some("Enabled") => (true, true),
        Some("EnabledIPIPOnly") => (true, false),
        _ => (false, true),
    };
    let (program_ipip, program_noencap) = programs;
    let mut pools = Vec::new();
    for p in ds.pools.values() {
        let Some(cidr) = p.cidr else { continue };
        let vxlan = p.vxlan != Encap::Never;
        let ipip = p.ipip != Encap::Never;
        let install = !vxlan && if ipip { program_ipip } else { program_noencap };
        pools.push(PoolPlan {
            cidr,
            ipip: if install && cidr.addr().is_ipv4() {
                p.ipip
            } else {
                Encap::Never
            },
            install,
            export: !p.spec.disable_bgp_export,
        });
    }
    pools.sort_by_key(|p| p.cidr);
    let blocks: Vec<IpNet> = ds
        .blocks
        .get(me)
        .into_iter()
        .flatten()
        .filter(|b| b.prefix_len() != b.max_prefix_len())
        .copied()
        .collect();
    let advertisements = mine
        .filter(|c| !c.advertisements.is_empty())
        .or(global)
        .map(|c| c.advertisements.clone())
        .unwrap_or_default();
    let mut service_routes = Vec::new();
    let mut reflected_services = Vec::new();
    if let Some(g) = global {
        let cidrs = |l: &[super::model::CidrBlock]| -> Vec<IpNet> {
            l.iter()
                .filter_map(|b| b.cidr.parse::<IpNet>().ok())
                .map(|n| n.trunc())
                .collect()
        };
        service_routes.extend(cidrs(&g.spec.service_cluster_ips));
        // confd (client.go onExternalIPsUpdate / onLoadBalancerIPsUpdate, Calico 3.24
        // on): external and load-balancer ranges are announced from every node, single
        // addresses only where their service runs (Kubernetes, not the datastore).
        service_routes.extend(
            cidrs(&g.spec.service_external_ips)
                .into_iter()
                .chain(cidrs(&g.spec.service_load_balancer_ips))
                .filter(|n| n.prefix_len() != n.max_prefix_len()),
        );
        if my_cluster.is_some() {
            reflected_services.extend(
                cidrs(&g.spec.service_load_balancer_ips)
                    .into_iter()
                    .chain(cidrs(&g.spec.service_external_ips))
                    .filter(|n| n.addr().is_ipv4()),
            );
        }
    }
    service_routes.sort();
    service_routes.dedup();
    let mut route_exclude = vec!["*.cali".to_owned(), "*.calico".to_owned()];
    if !program_ipip {
        route_exclude.push("tunl0".to_owned());
    }
    route_exclude.push("bpf*.cali".to_owned());
    let mut direct_exclude: Vec<String> = global
        .map(|c| c.spec.ignored_interfaces.clone())
        .unwrap_or_default();
    direct_exclude.extend(["cali*".to_owned(), "kube-ipvs*".to_owned()]);
    let normal_priority = global
        .and_then(|c| c.spec.ipv4_normal_route_priority)
        .unwrap_or(1024);
    // confd: the node's BGPConfiguration's logSeverityScreen, else the global one.
    let mut log_level = None;
    for (name, c) in [(format!("node.{me}"), mine), ("default".to_owned(), global)] {
        let Some(sev) = c.and_then(|c| c.spec.log_severity_screen.as_deref()) else {
            continue;
        };
        if sev.trim().is_empty() {
            continue;
        }
        match log_filter(sev) {
            Some(f) => {
                log_level = Some(f.to_owned());
                break;
            }
            None => skipped.push(ResourceError::new(
                &res_key("bgpconfigurations", &name),
                "spec.logSeverityScreen",
                format!("{sev:?}: Debug, Info, Warning, Error, Fatal or None"),
            )),
        }
    }

    let (sessions, details): (Vec<_>, Vec<_>) = sessions.into_iter().unzip();
    let details = sessions
        .iter()
        .map(|s| s.name.clone())
        .zip(details)
        .collect();
    let mut plan = Plan {
        sessions,
        skipped,
        node: NodePlan {
            name: me.clone(),
            asn,
            router_id,
            cluster_id: my_cluster.and_then(|c| c.parse().ok()),
            ipv4: node.ipv4,
            ipv6: node.ipv6,
            listen,
        },
        details,
        blocks,
        pools,
        static_routes,
        filters: used_filters,
        advertisements,
        service_routes,
        reflected_services,
        route_exclude,
        direct_exclude,
        normal_priority,
        log_level,
    };
    // What the config cannot say (BGPFilters, keepalive times...): reported now.
    let (_, problems) = plan.doc(None);
    for e in problems {
        if !plan.skipped.contains(&e) {
            plan.skipped.push(e);
        }
    }
    Ok(plan)
}

fn strings<I: IntoIterator<Item = String>>(i: I) -> T {
    T::Array(i.into_iter().map(T::String).collect())
}

/// A BGPFilter rule as a `[[policy.rule]]`, for a session of this type (`ibgp`);
/// `None` when the rule does not apply to it (`peerType`), `Err` when our policies
/// cannot say it.
fn filter_rule(r: &FilterRule, ibgp: bool, v6: bool) -> Result<Option<Table>, String> {
    match r.peer_type.as_str() {
        "iBGP" if !ibgp => return Ok(None),
        "eBGP" if ibgp => return Ok(None),
        _ => {}
    }
    for (set, what) in [
        (!r.source.is_empty(), "source"),
        (!r.interface.is_empty(), "interface"),
        (!r.as_path_prefix.is_empty(), "asPathPrefix"),
        (r.priority.is_some(), "priority"),
        (
            r.operations.iter().any(|o| o.prepend_as_path.is_some()),
            "operations.prependASPath",
        ),
    ] {
        if set {
            return Err(format!("{what}: not supported by rr-daemon's policies"));
        }
    }
    let mut t = Table::new();
    if !r.cidr.is_empty() {
        let net: IpNet = r.cidr.parse().map_err(|e| format!("cidr: {e}"))?;
        let net = net.trunc();
        let max = if v6 { 128u8 } else { 32 };
        let p = match r.match_operator.as_str() {
            "Equal" => net.to_string(),
            "In" => {
                let (lo, hi) = r.prefix_length.map_or((None, None), |p| (p.min, p.max));
                let ge = lo.map_or(net.prefix_len(), |m| m.max(net.prefix_len()));
                let le = hi.map_or(max, |m| m.min(max));
                if ge > le {
                    // Nothing matches: BIRD's empty set.
                    return Ok(None);
                }
                if ge == net.prefix_len() {
                    format!("{net} le {le}")
                } else {
                    format!("{net} ge {ge} le {le}")
                }
            }
            op => {
                return Err(format!(
                    "matchOperator {op}: a negated match is not supported by rr-daemon's policies"
                ));
            }
        };
        t.insert("prefixes".into(), strings([p]));
    }
    if let Some(c) = &r.communities {
        let (mut std, mut large) = (Vec::new(), Vec::new());
        for v in &c.values {
            match super::model::parse_community(v) {
                Some(CommunityValue::Standard(..)) => std.push(v.clone()),
                Some(CommunityValue::Large(..)) => large.push(v.clone()),
                None => return Err(format!("communities: {v:?}")),
            }
        }
        if !std.is_empty() && !large.is_empty() {
            return Err("communities: standard and large communities in one rule".to_owned());
        }
        if !std.is_empty() {
            t.insert("communities".into(), strings(std));
        }
        if !large.is_empty() {
            t.insert("large_communities".into(), strings(large));
        }
    }
    let accept = r.action == "Accept";
    if accept {
        let (mut add, mut add_l) = (Vec::new(), Vec::new());
        for o in &r.operations {
            if let Some(a) = &o.add_community {
                match super::model::parse_community(&a.value) {
                    Some(CommunityValue::Standard(..)) => add.push(a.value.clone()),
                    Some(CommunityValue::Large(..)) => add_l.push(a.value.clone()),
                    None => return Err(format!("operations.addCommunity: {:?}", a.value)),
                }
            }
            if let Some(p) = &o.set_priority {
                let v = i64::from(p.value);
                if !(1..INT_MAX).contains(&v) {
                    return Err("operations.setPriority: 1..=2147483646".to_owned());
                }
                t.insert("set_local_pref".into(), T::Integer(INT_MAX - v));
            }
        }
        if !add.is_empty() {
            t.insert("add_communities".into(), strings(add));
        }
        if !add_l.is_empty() {
            t.insert("add_large_communities".into(), strings(add_l));
        }
    }
    t.insert(
        "action".into(),
        T::String(if accept { "accept" } else { "reject" }.into()),
    );
    Ok(Some(t))
}

fn rule(prefixes: &[String], action: &str) -> Table {
    let mut t = Table::new();
    t.insert("prefixes".into(), strings(prefixes.iter().cloned()));
    t.insert("action".into(), T::String(action.into()));
    t
}

/// The most rules of one policy (`rib::policy::MAX_RULES`).
const MAX_RULES: usize = rib::policy::MAX_RULES;

/// Folds consecutive rules that only match prefixes and share their action into one
/// (a node with many blocks): the same routes pass, in fewer rules.
fn compact(rules: Vec<Table>) -> Vec<Table> {
    let plain = |t: &Table| t.len() == 2 && t.contains_key("prefixes") && t.contains_key("action");
    let mut out: Vec<Table> = Vec::with_capacity(rules.len());
    for r in rules {
        if let Some(last) = out.last_mut()
            && plain(last)
            && plain(&r)
            && last.get("action") == r.get("action")
            && let (Some(T::Array(a)), Some(T::Array(b))) =
                (last.get("prefixes").cloned(), r.get("prefixes"))
        {
            let mut all = a;
            all.extend(b.iter().cloned());
            last.insert("prefixes".into(), T::Array(all));
            continue;
        }
        out.push(r);
    }
    out
}

fn within(n: &IpNet) -> String {
    format!("{n} le {}", n.max_prefix_len())
}

impl Plan {
    /// The rules of the BGPFilters of one session and direction, for its family and
    /// type; a filter that cannot be used is left out (as confd leaves out a missing
    /// one) and reported.
    fn filter_rules(
        &self,
        names: &[String],
        import: bool,
        v6: bool,
        ibgp: bool,
        problems: &mut Vec<ResourceError>,
    ) -> Vec<Table> {
        let mut out = Vec::new();
        for n in names {
            let Some(f) = self.filters.get(n) else {
                continue;
            };
            let dir = match (import, v6) {
                (true, false) => "importV4",
                (true, true) => "importV6",
                (false, false) => "exportV4",
                (false, true) => "exportV6",
            };
            let mut rules = Vec::new();
            let mut bad = None;
            for (i, r) in f.rules(import, v6).iter().enumerate() {
                match filter_rule(r, ibgp, v6) {
                    Ok(Some(t)) => rules.push(t),
                    Ok(None) => {}
                    Err(e) => {
                        bad = Some(ResourceError::new(
                            &res_key("bgpfilters", n),
                            &format!("spec.{dir}[{i}]"),
                            format!("{e}: the filter is left out"),
                        ));
                        break;
                    }
                }
            }
            match bad {
                Some(e) => {
                    if !problems.contains(&e) {
                        problems.push(e);
                    }
                }
                None => out.extend(rules),
            }
        }
        out
    }

    /// The export rules of Calico's `calico_export_to_bgp_peers` (after the session's
    /// BGPFilters): pools whose export is disabled, the node's blocks (the block itself;
    /// more-specifics only when elevated, see `[learn] elevated_below`), communities,
    /// service addresses, enabled pools; everything else refused.
    fn export_rules(&self, v6: bool) -> Vec<Table> {
        let fam = |n: &IpNet| n.addr().is_ipv6() == v6;
        let mut out = Vec::new();
        for p in self.pools.iter().filter(|p| fam(&p.cidr) && !p.export) {
            out.push(rule(&[within(&p.cidr)], "reject"));
        }
        for (net, std, large) in self.advertisements.iter().filter(|a| fam(&a.0)) {
            let mut t = rule(&[within(net)], "continue");
            if !std.is_empty() {
                t.insert(
                    "add_communities".into(),
                    strings(std.iter().map(|(a, b)| format!("{a}:{b}"))),
                );
            }
            if !large.is_empty() {
                t.insert(
                    "add_large_communities".into(),
                    strings(large.iter().map(|(a, b, c)| format!("{a}:{b}:{c}"))),
                );
            }
            out.push(t);
        }
        // confd's calico_aggr() per block (the block; its more-specifics when elevated;
        // the rest refused), grouped: blocks do not overlap, so one rule of each kind
        // for all of them passes the same routes.
        let blocks: Vec<&IpNet> = self.blocks.iter().filter(|b| fam(b)).collect();
        if !blocks.is_empty() {
            let exact: Vec<String> = blocks.iter().map(|b| b.to_string()).collect();
            let more: Vec<String> = blocks.iter().map(|b| within(b)).collect();
            out.push(rule(&exact, "accept"));
            out.push(rule(&more, "accept"));
            out.push(rule(&more, "reject"));
        }
        for s in self.service_routes.iter().filter(|s| fam(s)) {
            out.push(rule(&[s.to_string()], "accept"));
        }
        for s in self.reflected_services.iter().filter(|s| fam(s)) {
            out.push(rule(&[within(s)], "accept"));
        }
        for p in self.pools.iter().filter(|p| fam(&p.cidr) && p.export) {
            out.push(rule(&[within(&p.cidr)], "accept"));
        }
        out
    }

    /// The native TOML document of the plan (what `rr-daemon check --bird` would print
    /// for the files confd renders), with `base`'s speaker-wide settings; the sessions
    /// the speaker cannot run are left out and reported in the second value.
    pub fn toml(&self, base: &Config) -> (Table, Vec<ResourceError>) {
        self.doc(Some(&base.speaker))
    }

    /// [`Plan::toml`] with `base`'s speaker-wide settings, or the daemon's defaults.
    fn doc(&self, base: Option<&crate::config::Speaker>) -> (Table, Vec<ResourceError>) {
        let mut problems = Vec::new();
        let mut doc = Table::new();
        let mut sp = Table::new();
        sp.insert("asn".into(), T::Integer(self.node.asn.into()));
        sp.insert(
            "router_id".into(),
            T::String(self.node.router_id.to_string()),
        );
        sp.insert(
            "listen".into(),
            strings(self.node.listen.iter().map(|a| a.to_string())),
        );
        if let Some(c) = self.node.cluster_id {
            sp.insert("cluster_id".into(), T::String(c.to_string()));
        }
        // BIRD 1.6's defaults where Calico's sessions do not set them, as the BIRD
        // translation writes them: the same cluster gives the same peers either way.
        sp.insert("hold_time".into(), T::Integer(240));
        sp.insert("connect_retry".into(), T::Integer(120));
        sp.insert("graceful_restart".into(), T::Boolean(false));
        if let Some(b) = base {
            sp.insert("stale_time".into(), T::Integer(b.stale_time.into()));
            sp.insert("client_to_client".into(), T::Boolean(b.client_to_client));
            sp.insert(
                "always_compare_med".into(),
                T::Boolean(b.always_compare_med),
            );
            sp.insert("missing_med_worst".into(), T::Boolean(b.missing_med_worst));
            sp.insert(
                "default_local_pref".into(),
                T::Integer(b.default_local_pref.into()),
            );
            sp.insert("graceful_stop".into(), T::Boolean(b.graceful_stop));
            let format = match b.log_format {
                crate::config::LogFormat::Text => "text",
                crate::config::LogFormat::Json => "json",
            };
            sp.insert("log_format".into(), T::String(format.into()));
        }
        // The `--config` file's (or BGP_LOGSEVERITYSCREEN's) level over the datastore's.
        if let Some(l) = base
            .and_then(|b| b.log_level.clone())
            .or_else(|| self.log_level.clone())
        {
            sp.insert("log_level".into(), T::String(l));
        }
        doc.insert("speaker".into(), T::Table(sp));

        let mut peers = Vec::new();
        let mut policies: Vec<(String, Vec<Table>, &'static str)> = Vec::new();
        let mut bind = |name: String, rules: Vec<Table>, default: &'static str| -> String {
            if rules.is_empty() {
                return if default == "accept" { "all" } else { "none" }.to_owned();
            }
            if let Some((n, ..)) = policies
                .iter()
                .find(|(_, r, d)| *r == rules && *d == default)
            {
                return n.clone();
            }
            policies.push((name.clone(), rules, default));
            name
        };
        for s in &self.sessions {
            let Some(d) = self.details.get(&s.name) else {
                continue;
            };
            if !d.in_config {
                continue;
            }
            let v6 = s.neighbor.is_ipv6();
            let ibgp = s.asn == s.local_asn;
            let mut t = Table::new();
            t.insert("address".into(), T::String(s.neighbor.to_string()));
            t.insert("asn".into(), T::Integer(s.asn.into()));
            if s.local_asn != self.node.asn {
                // BIRD's `local as` in the session: the peer's `local_as`.
                t.insert("local_as".into(), T::Integer(s.local_asn.into()));
            }
            if s.port != 179 {
                t.insert("port".into(), T::Integer(s.port.into()));
            }
            if d.allow_local_as > 0 {
                t.insert("allow_local_as".into(), T::Integer(d.allow_local_as.into()));
            }
            if let Some(a) = &s.source_address {
                t.insert("source_address".into(), T::String(a.clone()));
            }
            if s.passive {
                t.insert("passive".into(), T::Boolean(true));
            }
            match s.ttl_security {
                Some(h) => t.insert("ttl_security".into(), T::Integer(h.min(254).into())),
                None => t.insert("multihop".into(), T::Integer(MULTIHOP)),
            };
            // keepaliveTime must stay below the hold time (BIRD's 240 s).
            if let Some(k) = d.keepalive_time {
                if (1..240).contains(&k) {
                    t.insert("keepalive_time".into(), T::Integer(k.into()));
                } else {
                    problems.push(ResourceError::new(
                        &d.source,
                        "spec.keepaliveTime",
                        format!("{k} s: 1 to 239 s (below the hold time): left out"),
                    ));
                }
            }
            t.insert("connect_retry".into(), T::Integer(5));
            t.insert(
                "families".into(),
                strings([if v6 { "ipv6-unicast" } else { "ipv4-unicast" }.to_owned()]),
            );
            t.insert("add_path".into(), T::Boolean(true));
            if s.rr_client {
                t.insert("rr_client".into(), T::Boolean(true));
            }
            if let Some(c) = &s.cluster_id {
                t.insert("cluster_id".into(), T::String(c.clone()));
            }
            match s.next_hop.as_deref() {
                Some("self") => {
                    t.insert("next_hop_self".into(), T::String("force".into()));
                }
                Some("keep") => {
                    t.insert("next_hop_keep".into(), T::Boolean(true));
                }
                _ => {}
            }
            t.insert(
                "graceful_restart".into(),
                match s.graceful_restart_time {
                    Some(n) => T::Integer(n.clamp(1, 4095).into()),
                    None => T::Boolean(true),
                },
            );
            if let Some(p) = &d.password {
                t.insert("password".into(), T::String(p.expose().to_owned()));
            }
            let mut import = self.filter_rules(&s.import_filters, true, v6, ibgp, &mut problems);
            let mut export = self.filter_rules(&s.export_filters, false, v6, ibgp, &mut problems);
            export.extend(self.export_rules(v6));
            for (rules, names, what) in [
                (&mut import, &s.import_filters, "import"),
                (&mut export, &s.export_filters, "export"),
            ] {
                if rules.len() > MAX_RULES {
                    *rules = compact(std::mem::take(rules));
                }
                if rules.len() > MAX_RULES {
                    // The BGPFilters make it too long: confd's rules alone.
                    problems.push(ResourceError::new(
                        &d.source,
                        "spec.filters",
                        format!(
                            "session {}: {what} filters {names:?} give more than {MAX_RULES} \
                             rules: left out",
                            s.name
                        ),
                    ));
                    *rules = if what == "export" {
                        compact(self.export_rules(v6))
                    } else {
                        Vec::new()
                    };
                    rules.truncate(MAX_RULES);
                }
            }
            let import = bind(format!("{}_import", s.name), import, "accept");
            let export = bind(format!("{}_export", s.name), export, "reject");
            t.insert("import".into(), T::String(import));
            t.insert("export".into(), T::String(export));
            peers.push(T::Table(t));
        }
        if !peers.is_empty() {
            doc.insert("peer".into(), T::Array(peers));
        }
        if !policies.is_empty() {
            let ps = policies
                .into_iter()
                .map(|(name, rules, default)| {
                    let mut t = Table::new();
                    t.insert("name".into(), T::String(name));
                    t.insert("default_action".into(), T::String(default.into()));
                    t.insert(
                        "rule".into(),
                        T::Array(rules.into_iter().map(T::Table).collect()),
                    );
                    T::Table(t)
                })
                .collect();
            doc.insert("policy".into(), T::Array(ps));
        }

        let mut fib = Table::new();
        fib.insert("metric".into(), T::Integer(self.normal_priority.into()));
        fib.insert("metric_from_local_pref".into(), T::Boolean(true));
        if let Some((_, net)) = self.node.ipv4 {
            fib.insert("node_subnet".into(), T::String(net.to_string()));
        }
        let pools: Vec<T> = self
            .pools
            .iter()
            .map(|p| {
                let mut t = Table::new();
                t.insert("prefix".into(), T::String(p.cidr.to_string()));
                if p.install {
                    let m = match p.ipip {
                        Encap::Never => "never",
                        Encap::Always => "always",
                        Encap::CrossSubnet => "cross-subnet",
                    };
                    t.insert("ipip".into(), T::String(m.into()));
                } else {
                    t.insert("install".into(), T::Boolean(false));
                }
                T::Table(t)
            })
            .collect();
        if !pools.is_empty() {
            fib.insert("ip_pool".into(), T::Array(pools));
        }
        let statics: Vec<T> = self
            .static_routes
            .iter()
            .map(|(p, gw)| {
                let mut t = Table::new();
                t.insert("prefix".into(), T::String(p.to_string()));
                t.insert("via".into(), T::String(gw.to_string()));
                T::Table(t)
            })
            .collect();
        if !statics.is_empty() {
            fib.insert("static_route".into(), T::Array(statics));
        }
        doc.insert("fib".into(), T::Table(fib));

        // [learn]: kernel routes inside what the exports accept (the outermost prefixes).
        let mut accepted: BTreeSet<IpNet> = BTreeSet::new();
        for v6 in [false, true] {
            for r in self.export_rules(v6) {
                if r.get("action").and_then(T::as_str) != Some("accept") {
                    continue;
                }
                for p in r
                    .get("prefixes")
                    .and_then(T::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(n) = p
                        .as_str()
                        .and_then(|s| s.split(' ').next())
                        .and_then(|s| s.parse::<IpNet>().ok())
                    {
                        accepted.insert(n);
                    }
                }
            }
        }
        let outer: Vec<String> = accepted
            .iter()
            .filter(|p| !accepted.iter().any(|q| q != *p && q.contains(*p)))
            .map(|p| p.to_string())
            .collect();
        let mut learn = Table::new();
        learn.insert("pools".into(), strings(outer));
        learn.insert(
            "elevated_below".into(),
            T::Integer(self.normal_priority.into()),
        );
        learn.insert("direct".into(), T::Boolean(true));
        learn.insert(
            "direct_exclude".into(),
            strings(self.direct_exclude.clone()),
        );
        learn.insert("route_exclude".into(), strings(self.route_exclude.clone()));
        doc.insert("learn".into(), T::Table(learn));

        if !self.blocks.is_empty() {
            let o = self
                .blocks
                .iter()
                .map(|b| {
                    let mut t = Table::new();
                    t.insert("prefix".into(), T::String(b.to_string()));
                    t.insert("blackhole".into(), T::Boolean(true));
                    T::Table(t)
                })
                .collect();
            doc.insert("originate".into(), T::Array(o));
        }
        let routes: Vec<T> = self
            .service_routes
            .iter()
            .filter(|s| !self.blocks.contains(s))
            .map(|s| {
                let mut t = Table::new();
                t.insert("prefix".into(), T::String(s.to_string()));
                T::Table(t)
            })
            .collect();
        if !routes.is_empty() {
            doc.insert("route".into(), T::Array(routes));
        }
        (doc, problems)
    }

    /// The static routes (`reachableBy`) the plan asks for that the speaker will not
    /// install because `base`'s `[fib]` is off (the agent's `--config` leaves
    /// `[fib] enabled` false): one per route, naming the BGPPeer that asks for it and
    /// its field, to be logged as a warning. Empty when `[fib]` is on or no route is
    /// planned.
    pub fn static_routes_without_fib(&self, base: &Config) -> Vec<ResourceError> {
        if base.fib.enabled {
            return Vec::new();
        }
        self.static_routes
            .iter()
            .map(|(prefix, gw)| {
                let key = self
                    .sessions
                    .iter()
                    .filter(|s| s.neighbor == prefix.addr())
                    .filter_map(|s| self.details.get(&s.name))
                    .map(|d| d.source.clone())
                    .next()
                    .unwrap_or_default();
                ResourceError::new(
                    &key,
                    "spec.reachableBy",
                    format!(
                        "static route {prefix} via {gw} not installed: [fib] is off in the \
                         agent's --config (set [fib] enabled = true to install it)"
                    ),
                )
            })
            .collect()
    }

    /// [`Plan::config`], or why the plan's document does not resolve (a bug: the plan
    /// checks what the configuration refuses).
    pub fn try_config(&self, base: &Config) -> Result<Config, String> {
        let (doc, _) = self.toml(base);
        let text = toml::to_string(&doc).map_err(|e| e.to_string())?;
        let name = format!("agent plan of node {}", self.node.name);
        let c = Config::parse(&text, &name).map_err(|e| e.to_string())?;
        let mut fib = base.fib.clone();
        fib.metric = c.fib.metric;
        fib.metric_from_local_pref = c.fib.metric_from_local_pref;
        fib.node_subnet = c.fib.node_subnet;
        fib.ip_pools = c.fib.ip_pools;
        fib.static_routes = c.fib.static_routes;
        let mut learn = base.learn.clone();
        learn.pools = c.learn.pools;
        learn.elevated_below = c.learn.elevated_below;
        learn.direct_exclude = c.learn.direct_exclude;
        learn.route_exclude = c.learn.route_exclude;
        Ok(Config {
            speaker: c.speaker,
            api: base.api,
            control: base.control.clone(),
            bmp: base.bmp.clone(),
            fib,
            learn,
            peers: c.peers,
            dynamic_neighbors: base.dynamic_neighbors.clone(),
            mesh: None,
            policies: c.policies,
            routes: c.routes,
            originate: c.originate,
        })
    }

    /// The whole configuration the speaker runs: `base` (the optional `--config` file's
    /// `[api]`, `[fib]`, `[control]`...) with the speaker, peers, routes and pools of the
    /// plan.
    ///
    /// From the plan: `[speaker]` AS, router ID, listen addresses and cluster ID (the
    /// other speaker-wide settings are `base`'s), every peer and its policies,
    /// `[[originate]]` (the node's blocks, as blackholes), `[[route]]` (service CIDRs),
    /// `[fib]` pools, static routes (`reachableBy`), node subnet and metric, and `[learn]` pools and exclusions. From
    /// `base`: `[api]`, `[fib]` `enabled`/`table`/`protocol`/`tunnel_device`, `[learn]`
    /// `enabled`/`direct`/`resync`, `[[dynamic_neighbors]]`.
    pub fn config(&self, base: &Config) -> Config {
        match self.try_config(base) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(node = %self.node.name, "agent plan does not resolve: {e}");
                base.clone()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_router_id_is_calicos() {
        // sha256("node1") starts ca 12 f3 1b.
        assert_eq!(hash_router_id("node1"), Ipv4Addr::new(202, 18, 243, 27));
        // sha256("node16") starts e8 fb f5 f4: 232 > 223 is lowered by 32.
        assert_eq!(hash_router_id("node16"), Ipv4Addr::new(200, 251, 245, 244));
    }

    #[test]
    fn log_filters_of_calicos_severities() {
        for (sev, want) in [
            ("Debug", Some("debug")),
            ("Info", Some("info")),
            ("Warning", Some("warn")),
            ("error", Some("error")),
            ("Fatal", Some("error")),
            ("Panic", Some("error")),
            ("None", Some("off")),
            ("Loud", None),
            ("", None),
        ] {
            assert_eq!(log_filter(sev), want, "{sev}");
        }
    }

    #[test]
    fn names_as_confd() {
        let a: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(proto_name("Mesh", a, 0), "Mesh_10_0_0_2");
        assert_eq!(proto_name("Node", a, 1790), "Node_10_0_0_2_port_1790");
        let b: IpAddr = "fd00::2".parse().unwrap();
        assert_eq!(proto_name("Global", b, 0), "Global_fd00__2");
    }
    /// Service advertisement as confd's `mesh/static-routes` case renders it
    /// (`bird_aggr.cfg`: `route 10.101.0.0/16 blackhole; route 80.15.0.0/24 blackhole;`):
    /// cluster IP ranges, and external and load-balancer ranges but not their single
    /// addresses, from every node; `ignoredInterfaces` before confd's own exclusions.
    #[test]
    fn service_ranges_and_ignored_interfaces_as_confd() {
        let r = super::super::model::RESOURCES;
        let mut ds = Datastore::new();
        for (k, v) in [
            (
                format!("{r}bgpconfigurations/default"),
                r#"{"kind":"BGPConfiguration","apiVersion":"projectcalico.org/v3","metadata":{"name":"default"},"spec":{"serviceClusterIPs":[{"cidr":"10.101.0.0/16"},{"cidr":"fd00:96::/112"}],"serviceExternalIPs":[{"cidr":"10.102.0.0/24"},{"cidr":"10.102.1.1/32"}],"serviceLoadBalancerIPs":[{"cidr":"80.15.0.0/24"},{"cidr":"80.15.1.1/32"}],"ignoredInterfaces":["eth9","vlan*"]}}"#,
            ),
            (
                format!("{r}nodes/n1"),
                r#"{"kind":"Node","apiVersion":"projectcalico.org/v3","metadata":{"name":"n1"},"spec":{"bgp":{"ipv4Address":"10.192.0.2/16"}}}"#,
            ),
        ] {
            ds.apply(&k, Some(v.as_bytes())).unwrap();
        }
        let env = NodeEnv {
            node_name: "n1".into(),
            router_id: RouterId::Address,
            secrets_dir: None,
        };
        let p = plan(&ds, &env).unwrap();
        let nets = |l: &[&str]| -> Vec<IpNet> { l.iter().map(|s| s.parse().unwrap()).collect() };
        assert_eq!(
            p.service_routes,
            nets(&[
                "10.101.0.0/16",
                "10.102.0.0/24",
                "80.15.0.0/24",
                "fd00:96::/112"
            ])
        );
        assert!(p.reflected_services.is_empty(), "not a reflector");
        assert_eq!(p.direct_exclude, ["eth9", "vlan*", "cali*", "kube-ipvs*"]);
    }
}
