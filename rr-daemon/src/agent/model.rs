//! Calico's resources as the agent reads them from etcd v3 (`DATASTORE_TYPE=etcdv3`): JSON
//! of `projectcalico.org/v3` objects under `/calico/resources/v3/projectcalico.org/<plural>/
//! <name>`, and IPAM block affinities under `/calico/ipam/v2/host/<node>/ipv4|ipv6/block/
//! <cidr>`.
//!
//! Each put is read and checked at once ([`Datastore::apply`]): a value that cannot be
//! used (bad JSON, a bad CIDR, a bad selector) leaves its key absent and says which field
//! is at fault, so that planning only ever sees usable resources. Absent fields take
//! Calico's defaults (see each type).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;

use super::selector::{Labels, Selector};

/// The prefix of Calico's v3 resources in etcd.
pub const RESOURCES: &str = "/calico/resources/v3/projectcalico.org/";
/// The prefix of IPAM host affinities in etcd.
pub const AFFINITIES: &str = "/calico/ipam/v2/host/";
/// The prefixes the agent lists and watches.
pub const PREFIXES: [&str; 2] = [RESOURCES, AFFINITIES];

/// Every resource the agent uses, by etcd key, as last put.
#[derive(Clone, Debug, Default)]
pub struct Datastore {
    /// `BGPConfiguration`s by name (`default`, `node.<name>`).
    pub bgp_configs: BTreeMap<String, BgpConfiguration>,
    /// `Node`s by name.
    pub nodes: BTreeMap<String, Node>,
    /// `BGPPeer`s by name.
    pub peers: BTreeMap<String, BgpPeer>,
    /// `IPPool`s by name.
    pub pools: BTreeMap<String, IpPool>,
    /// `BGPFilter`s by name.
    pub filters: BTreeMap<String, BgpFilter>,
    /// Confirmed block affinities: node name -> its blocks.
    pub blocks: BTreeMap<String, BTreeSet<IpNet>>,
    /// This node's workloads chosen for local BGP peering, by endpoint status file name:
    /// not from etcd but from the files Felix writes ([`read_endpoint_status`]), as confd
    /// reads them.
    pub workloads: BTreeMap<String, LocalWorkload>,
}

/// Where Felix writes its endpoint status files by default, and confd reads them
/// (`CALICO_ENDPOINT_STATUS_PATH_PREFIX` overrides it): `<prefix>/endpoint-status/<name>`.
pub const ENDPOINT_STATUS_PREFIX: &str = "/var/run/calico";
/// The directory of the endpoint status files under their prefix.
pub const ENDPOINT_STATUS_DIR: &str = "endpoint-status";

/// A workload of this node that peers with it (`BGPPeer.spec.localWorkloadSelector`): Felix
/// matches the selector against the node's workload endpoints and names the BGPPeer in the
/// workload's endpoint status file, confd peers with the workload's first address of each
/// family (`Local_Workload_<address>`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalWorkload {
    /// The BGPPeer whose `localWorkloadSelector` chose it (`bgpPeerName`).
    pub bgp_peer_name: String,
    /// The first of `ipv4Nets`, without its length.
    pub ipv4: Option<Ipv4Addr>,
    /// The first of `ipv6Nets`, without its length.
    pub ipv6: Option<Ipv6Addr>,
}

/// An endpoint status file (libcalico-go's `WorkloadEndpointStatus`), the fields the
/// agent uses.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct EndpointStatus {
    ipv4_nets: Vec<String>,
    ipv6_nets: Vec<String>,
    #[serde(rename = "bgpPeerName")]
    bgp_peer_name: String,
}

/// Reads one endpoint status file's text (`path` names it in errors): `None` when the
/// workload is not chosen for local BGP peering (no `bgpPeerName`). As confd: the first
/// address of each family, which must be a CIDR (`A.B.C.D/32`), and at least one.
pub fn parse_endpoint_status(
    path: &str,
    text: &[u8],
) -> Result<Option<LocalWorkload>, ResourceError> {
    let st: EndpointStatus = json(path, text)?;
    if st.bgp_peer_name.is_empty() {
        return Ok(None);
    }
    fn first<A: std::str::FromStr>(
        path: &str,
        field: &str,
        nets: &[String],
    ) -> Result<Option<A>, ResourceError> {
        let Some(n) = nets.first() else {
            return Ok(None);
        };
        let (addr, len) = n.split_once('/').ok_or_else(|| {
            ResourceError::new(path, field, format!("{n:?} is not a CIDR: ignored for now"))
        })?;
        match (addr.parse::<A>(), len.parse::<u8>()) {
            (Ok(a), Ok(_)) => Ok(Some(a)),
            _ => Err(ResourceError::new(
                path,
                field,
                format!("{n:?} is not a CIDR of the family: ignored for now"),
            )),
        }
    }
    let ipv4 = first::<Ipv4Addr>(path, "ipv4Nets", &st.ipv4_nets)?;
    let ipv6 = first::<Ipv6Addr>(path, "ipv6Nets", &st.ipv6_nets)?;
    if ipv4.is_none() && ipv6.is_none() {
        return Err(ResourceError::new(
            path,
            "ipv4Nets",
            "no address yet: ignored for now",
        ));
    }
    Ok(Some(LocalWorkload {
        bgp_peer_name: st.bgp_peer_name,
        ipv4,
        ipv6,
    }))
}

/// Reads Felix's endpoint status files of `dir` (`<prefix>/endpoint-status`): the
/// workloads chosen for local BGP peering by file name, and the files that cannot be used
/// yet (a file being written, an address missing), each named by its path. A missing
/// directory is no workload (Felix creates it with its first workload).
pub fn read_endpoint_status(
    dir: &std::path::Path,
) -> (BTreeMap<String, LocalWorkload>, Vec<ResourceError>) {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (out, errors);
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = e.path();
        let shown = path.display().to_string();
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(err) => {
                errors.push(ResourceError::new(&shown, "", err.to_string()));
                continue;
            }
        };
        match parse_endpoint_status(&shown, &text) {
            Ok(Some(w)) => {
                out.insert(e.file_name().to_string_lossy().into_owned(), w);
            }
            Ok(None) => {}
            Err(err) => errors.push(err),
        }
    }
    (out, errors)
}

/// A resource that cannot be used: logged with its name and field, and skipped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {field}: {message}")]
pub struct ResourceError {
    /// The etcd key of the resource.
    pub key: String,
    /// The field at fault (`spec.peerIP`), or empty for the whole object.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl ResourceError {
    /// An error of `field` of the resource at `key`.
    pub fn new(key: &str, field: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// `metadata` of a v3 object: its name and labels.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Metadata {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: Labels,
}

/// An AS number as Calico writes it: a JSON number, a string of digits, or asdot `X.Y`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Asn(pub u32);

impl<'de> Deserialize<'de> for Asn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        let bad = |s: &dyn std::fmt::Display| {
            serde::de::Error::custom(format!("{s} is not an AS number"))
        };
        match Raw::deserialize(d)? {
            Raw::N(n) => u32::try_from(n).map(Asn).map_err(|_| bad(&n)),
            Raw::S(s) => parse_asn(&s).map(Asn).ok_or_else(|| bad(&s)),
        }
    }
}

/// `64512`, or asdot `1.10`.
pub fn parse_asn(s: &str) -> Option<u32> {
    match s.split_once('.') {
        None => s.parse().ok(),
        Some((hi, lo)) => {
            let hi: u16 = hi.parse().ok()?;
            let lo: u16 = lo.parse().ok()?;
            Some((u32::from(hi) << 16) | u32::from(lo))
        }
    }
}

/// A Go duration as Kubernetes writes `metav1.Duration` (`"120s"`, `"2m30s"`,
/// `"1h"`, `"500ms"`), rounded to whole seconds as confd does.
pub fn parse_duration_secs(s: &str) -> Option<u32> {
    if s == "0" {
        return Some(0);
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        let v: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[u..];
        total += v * scale;
    }
    let r = total.round();
    (0.0..=f64::from(u32::MAX)).contains(&r).then_some(r as u32)
}

/// A reference to a secret (`password.secretKeyRef`): read from
/// `SECRETS_DIR/<name>/<key>` in etcd mode (a Kubernetes secret volume's layout).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct SecretKeyRef {
    /// The secret's name.
    #[serde(default)]
    pub name: String,
    /// The key inside it.
    #[serde(default)]
    pub key: String,
}

/// `password` of a BGPPeer or `nodeMeshPassword` of a BGPConfiguration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Password {
    /// `secretKeyRef`.
    pub secret_key_ref: Option<SecretKeyRef>,
}

/// A CIDR entry of `serviceClusterIPs` and its kind.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CidrBlock {
    /// `cidr` (may be empty: ignored, as Calico does).
    #[serde(default)]
    pub cidr: String,
}

/// `communities[]`: a named community.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Community {
    /// `name`.
    #[serde(default)]
    pub name: String,
    /// `value`: `AS:N` or `G:L1:L2`.
    #[serde(default)]
    pub value: String,
}

/// `prefixAdvertisements[]`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PrefixAdvertisement {
    /// `cidr`.
    #[serde(default)]
    pub cidr: String,
    /// `communities`: values or names of `communities[]`.
    #[serde(default)]
    pub communities: Vec<String>,
}

/// `BGPConfiguration.spec` (`default`, or `node.<name>` for one node).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BgpConfigurationSpec {
    /// `asNumber` (default 64512, `default` only).
    pub as_number: Option<Asn>,
    /// `nodeToNodeMeshEnabled` (default true, `default` only).
    pub node_to_node_mesh_enabled: Option<bool>,
    /// `listenPort` (default 179).
    pub listen_port: Option<u16>,
    /// `bindMode`: `None` (default) or `NodeIP`.
    pub bind_mode: Option<String>,
    /// `nodeMeshPassword`.
    pub node_mesh_password: Option<Password>,
    /// `nodeMeshMaxRestartTime` (default: BIRD's 120 s).
    pub node_mesh_max_restart_time: Option<String>,
    /// `logSeverityScreen` (default `Info`).
    pub log_severity_screen: Option<String>,
    /// `communities`.
    pub communities: Vec<Community>,
    /// `prefixAdvertisements`.
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    /// `serviceClusterIPs`.
    #[serde(rename = "serviceClusterIPs")]
    pub service_cluster_ips: Vec<CidrBlock>,
    /// `serviceExternalIPs`.
    #[serde(rename = "serviceExternalIPs")]
    pub service_external_ips: Vec<CidrBlock>,
    /// `serviceLoadBalancerIPs`.
    #[serde(rename = "serviceLoadBalancerIPs")]
    pub service_load_balancer_ips: Vec<CidrBlock>,
    /// `ignoredInterfaces`.
    pub ignored_interfaces: Vec<String>,
    /// `localWorkloadPeeringIPV4`.
    #[serde(rename = "localWorkloadPeeringIPV4")]
    pub local_workload_peering_ipv4: Option<String>,
    /// `localWorkloadPeeringIPV6`.
    #[serde(rename = "localWorkloadPeeringIPV6")]
    pub local_workload_peering_ipv6: Option<String>,
    /// `programClusterRoutes`: `Enabled`, `Disabled`, `EnabledIPIPOnly`,
    /// `EnabledNoEncapOnly` (the default: IP-in-IP pools' routes are Felix's).
    pub program_cluster_routes: Option<String>,
    /// `ipv4NormalRoutePriority` (default 1024).
    #[serde(rename = "ipv4NormalRoutePriority")]
    pub ipv4_normal_route_priority: Option<u32>,
    /// `ipv6NormalRoutePriority` (default 1024).
    #[serde(rename = "ipv6NormalRoutePriority")]
    pub ipv6_normal_route_priority: Option<u32>,
}

/// A `BGPConfiguration`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct BgpConfiguration {
    /// `metadata`.
    pub metadata: Metadata,
    /// `spec`.
    pub spec: BgpConfigurationSpec,
    /// `spec.nodeMeshMaxRestartTime` in seconds (checked).
    #[serde(skip)]
    pub mesh_restart_secs: Option<u32>,
    /// `spec.prefixAdvertisements` resolved: prefix -> communities `(a, b)` and large
    /// communities `(g, l1, l2)`.
    #[serde(skip)]
    pub advertisements: Vec<Advertisement>,
    /// Service CIDRs: cluster, external and load-balancer IPs, checked.
    #[serde(skip)]
    pub service_cidrs: Vec<IpNet>,
}

/// `Node.spec.bgp`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeBgpSpec {
    /// `ipv4Address`: `A.B.C.D/N` (the subnet decides cross-subnet tunnelling) or an address.
    pub ipv4_address: String,
    /// `ipv6Address`.
    pub ipv6_address: String,
    /// `asNumber` (default: the global AS).
    pub as_number: Option<Asn>,
    /// `routeReflectorClusterID`: set, the node is a route reflector and leaves the mesh.
    #[serde(rename = "routeReflectorClusterID")]
    pub route_reflector_cluster_id: String,
}

/// `Node.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct NodeSpec {
    /// `bgp`; absent, the node runs no BGP.
    pub bgp: Option<NodeBgpSpec>,
}

/// A `Node`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Node {
    /// `metadata`.
    pub metadata: Metadata,
    /// `spec`.
    pub spec: NodeSpec,
    /// `spec.bgp.ipv4Address`, checked: address and subnet.
    #[serde(skip)]
    pub ipv4: Option<(Ipv4Addr, Ipv4Net)>,
    /// `spec.bgp.ipv6Address`, checked.
    #[serde(skip)]
    pub ipv6: Option<(Ipv6Addr, Ipv6Net)>,
}

impl Node {
    /// `spec.bgp.asNumber`.
    pub fn asn(&self) -> Option<u32> {
        self.spec.bgp.as_ref()?.as_number.map(|a| a.0)
    }

    /// `spec.bgp.routeReflectorClusterID`, when set.
    pub fn cluster_id(&self) -> Option<&str> {
        let c = self.spec.bgp.as_ref()?.route_reflector_cluster_id.as_str();
        (!c.is_empty()).then_some(c)
    }

    /// The node's address of the family (`v6`), as confd's text.
    pub fn ip(&self, v6: bool) -> Option<IpAddr> {
        if v6 {
            self.ipv6.map(|(a, _)| IpAddr::V6(a))
        } else {
            self.ipv4.map(|(a, _)| IpAddr::V4(a))
        }
    }

    /// `metadata.labels`.
    pub fn labels(&self) -> &Labels {
        &self.metadata.labels
    }
}

/// `BGPPeer.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BgpPeerSpec {
    /// `node`: the one node that peers.
    pub node: String,
    /// `nodeSelector`: the nodes that peer.
    pub node_selector: String,
    /// `peerIP`: `A.B.C.D`, `A.B.C.D:PORT`, `V6` or `[V6]:PORT`.
    #[serde(rename = "peerIP")]
    pub peer_ip: String,
    /// `asNumber`.
    pub as_number: Option<Asn>,
    /// `localASNumber`.
    #[serde(rename = "localASNumber")]
    pub local_as_number: Option<Asn>,
    /// `peerSelector`: the nodes peered with.
    pub peer_selector: String,
    /// `keepOriginalNextHop` (eBGP only; ignored when `nextHopMode` is set).
    pub keep_original_next_hop: bool,
    /// `nextHopMode`: `Auto`, `Self` or `Keep`.
    pub next_hop_mode: Option<String>,
    /// `password`.
    pub password: Option<Password>,
    /// `sourceAddress`: `UseNodeIP` (default) or `None`.
    pub source_address: String,
    /// `maxRestartTime`.
    pub max_restart_time: Option<String>,
    /// `keepaliveTime`.
    pub keepalive_time: Option<String>,
    /// `numAllowedLocalASNumbers`.
    #[serde(rename = "numAllowedLocalASNumbers")]
    pub num_allowed_local_as_numbers: Option<i32>,
    /// `ttlSecurity`: hops.
    pub ttl_security: Option<u8>,
    /// `reachableBy`: a gateway towards `peerIP`.
    pub reachable_by: String,
    /// `filters`: BGPFilter names, in order.
    pub filters: Vec<String>,
    /// `localWorkloadSelector`.
    pub local_workload_selector: String,
    /// `reversePeering`: `Auto` (default) or `Manual`.
    pub reverse_peering: Option<String>,
}

/// A `BGPPeer`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct BgpPeer {
    /// `metadata`.
    pub metadata: Metadata,
    /// `spec`.
    pub spec: BgpPeerSpec,
    /// `spec.nodeSelector`, parsed.
    #[serde(skip)]
    pub node_selector: Option<Selector>,
    /// `spec.peerSelector`, parsed.
    #[serde(skip)]
    pub peer_selector: Option<Selector>,
    /// `spec.peerIP`: address and port (0: none given).
    #[serde(skip)]
    pub peer_ip: Option<(IpAddr, u16)>,
    /// `spec.maxRestartTime` in seconds.
    #[serde(skip)]
    pub restart_secs: Option<u32>,
    /// `spec.keepaliveTime` in seconds.
    #[serde(skip)]
    pub keepalive_secs: Option<u32>,
}

impl BgpPeer {
    /// A global peer: every node peers (neither `node` nor `nodeSelector`).
    pub fn is_global(&self) -> bool {
        self.spec.node.is_empty() && self.spec.node_selector.is_empty()
    }

    /// Peers with this node's workloads that Felix chose by `localWorkloadSelector`
    /// (confd: before `peerSelector` and `peerIP`, which are then ignored).
    pub fn is_local_workload(&self) -> bool {
        !self.spec.local_workload_selector.is_empty()
    }

    /// `reversePeering` is not `Manual`.
    pub fn reverse(&self) -> bool {
        self.spec.reverse_peering.as_deref() != Some("Manual")
    }
}

/// `IPPool.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct IpPoolSpec {
    /// `cidr`.
    pub cidr: String,
    /// `ipipMode`: `Never` (default), `Always`, `CrossSubnet`.
    pub ipip_mode: String,
    /// `vxlanMode`: `Never` (default), `Always`, `CrossSubnet`.
    pub vxlan_mode: String,
    /// `disabled`: no new allocations (existing blocks are still routed, as by confd).
    pub disabled: bool,
    /// `disableBGPExport`: routes inside are never announced.
    #[serde(rename = "disableBGPExport")]
    pub disable_bgp_export: bool,
    /// `nodeSelector` (default `all()`).
    pub node_selector: String,
}

/// An encapsulation mode of a pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encap {
    /// `Never`.
    #[default]
    Never,
    /// `Always`.
    Always,
    /// `CrossSubnet`.
    CrossSubnet,
}

fn encap(s: &str) -> Option<Encap> {
    match s {
        "" | "Never" | "never" => Some(Encap::Never),
        "Always" | "always" => Some(Encap::Always),
        "CrossSubnet" | "cross-subnet" => Some(Encap::CrossSubnet),
        _ => None,
    }
}

/// An `IPPool`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct IpPool {
    /// `metadata`.
    pub metadata: Metadata,
    /// `spec`.
    pub spec: IpPoolSpec,
    /// `spec.cidr`, checked (host bits cleared).
    #[serde(skip)]
    pub cidr: Option<IpNet>,
    /// `spec.ipipMode`.
    #[serde(skip)]
    pub ipip: Encap,
    /// `spec.vxlanMode`.
    #[serde(skip)]
    pub vxlan: Encap,
}

/// `prefixLength` of a BGPFilter rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PrefixLength {
    /// `min`.
    pub min: Option<u8>,
    /// `max`.
    pub max: Option<u8>,
}

/// `communities` match of a BGPFilter rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CommunityMatch {
    /// `values`.
    pub values: Vec<String>,
}

/// `operations[]` of a BGPFilter rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Operation {
    /// `addCommunity.value`.
    pub add_community: Option<AddCommunity>,
    /// `prependASPath.prefix`.
    #[serde(rename = "prependASPath")]
    pub prepend_as_path: Option<serde_json::Value>,
    /// `setPriority.value`.
    pub set_priority: Option<SetPriority>,
}

/// `addCommunity`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AddCommunity {
    /// `value`.
    pub value: String,
}

/// `setPriority`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct SetPriority {
    /// `value`: the kernel route priority (metric), 1..=2147483646.
    pub value: u32,
}

/// One BGPFilter rule (v4 or v6).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FilterRule {
    /// `cidr`.
    pub cidr: String,
    /// `prefixLength`.
    pub prefix_length: Option<PrefixLength>,
    /// `source`: `RemotePeers`.
    pub source: String,
    /// `interface`.
    pub interface: String,
    /// `matchOperator`: `Equal`, `NotEqual`, `In`, `NotIn`.
    pub match_operator: String,
    /// `peerType`: `eBGP`, `iBGP`.
    pub peer_type: String,
    /// `communities`.
    pub communities: Option<CommunityMatch>,
    /// `asPathPrefix`.
    #[serde(rename = "asPathPrefix")]
    pub as_path_prefix: Vec<Asn>,
    /// `priority`.
    pub priority: Option<u32>,
    /// `action`: `Accept` or `Reject`.
    pub action: String,
    /// `operations`.
    pub operations: Vec<Operation>,
}

/// `BGPFilter.spec`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BgpFilterSpec {
    /// `exportV4`.
    #[serde(rename = "exportV4")]
    pub export_v4: Vec<FilterRule>,
    /// `importV4`.
    #[serde(rename = "importV4")]
    pub import_v4: Vec<FilterRule>,
    /// `exportV6`.
    #[serde(rename = "exportV6")]
    pub export_v6: Vec<FilterRule>,
    /// `importV6`.
    #[serde(rename = "importV6")]
    pub import_v6: Vec<FilterRule>,
}

/// A `BGPFilter`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct BgpFilter {
    /// `metadata`.
    pub metadata: Metadata,
    /// `spec`.
    pub spec: BgpFilterSpec,
}

impl BgpFilter {
    /// The rules of one direction and family.
    pub fn rules(&self, import: bool, v6: bool) -> &[FilterRule] {
        match (import, v6) {
            (true, false) => &self.spec.import_v4,
            (true, true) => &self.spec.import_v6,
            (false, false) => &self.spec.export_v4,
            (false, true) => &self.spec.export_v6,
        }
    }
}

/// The value of an IPAM block affinity.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct BlockAffinity {
    /// `confirmed`, `pending` or `pendingDeletion`.
    pub state: String,
    /// Marked for deletion.
    pub deleted: bool,
}

/// Which resource an etcd key names.
enum Kind<'a> {
    Resource(&'a str, &'a str),
    Block(&'a str, IpNet),
    Other,
}

fn classify(key: &str) -> Result<Kind<'_>, ResourceError> {
    if let Some(rest) = key.strip_prefix(RESOURCES) {
        return Ok(match rest.split_once('/') {
            Some((plural, name)) if !name.is_empty() && !name.contains('/') => {
                Kind::Resource(plural, name)
            }
            _ => Kind::Other,
        });
    }
    if let Some(rest) = key.strip_prefix(AFFINITIES) {
        let parts: Vec<&str> = rest.split('/').collect();
        if let [node, fam @ ("ipv4" | "ipv6"), "block", cidr] = parts.as_slice() {
            // Calico writes the CIDR with `-` for `/`.
            let text = cidr.replacen('-', "/", 1);
            let net: IpNet = text
                .parse()
                .map_err(|e| ResourceError::new(key, "key", format!("block {cidr}: {e}")))?;
            if net.addr().is_ipv6() != (*fam == "ipv6") {
                return Err(ResourceError::new(
                    key,
                    "key",
                    format!("block {net} is not {fam}"),
                ));
            }
            return Ok(Kind::Block(node, net.trunc()));
        }
    }
    Ok(Kind::Other)
}

fn json<T: serde::de::DeserializeOwned>(key: &str, v: &[u8]) -> Result<T, ResourceError> {
    serde_json::from_slice(v).map_err(|e| ResourceError::new(key, "", format!("bad JSON: {e}")))
}

fn selector(key: &str, field: &str, text: &str) -> Result<Option<Selector>, ResourceError> {
    if text.is_empty() {
        return Ok(None);
    }
    Selector::parse(text)
        .map(Some)
        .map_err(|e| ResourceError::new(key, field, e.to_string()))
}

fn duration(key: &str, field: &str, text: &Option<String>) -> Result<Option<u32>, ResourceError> {
    match text {
        None => Ok(None),
        Some(t) => parse_duration_secs(t)
            .map(Some)
            .ok_or_else(|| ResourceError::new(key, field, format!("{t:?} is not a duration"))),
    }
}

/// `peerIP`: an address, `v4:port` or `[v6]:port` (Go's `net.SplitHostPort`).
pub fn parse_peer_ip(s: &str) -> Option<(IpAddr, u16)> {
    if let Ok(a) = s.parse::<IpAddr>() {
        return Some((a, 0));
    }
    let (host, port) = s.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().ok()?;
    let a: IpAddr = host.parse().ok()?;
    // `v6:port` without brackets is ambiguous: Go refuses it.
    if a.is_ipv6() && !s.starts_with('[') {
        return None;
    }
    Some((a, port))
}

/// A community value of a BGPFilter or a prefix advertisement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommunityValue {
    /// `A:B` (16 bits each).
    Standard(u16, u16),
    /// `G:L1:L2` (32 bits each).
    Large(u32, u32, u32),
}

/// A prefix of `prefixAdvertisements` with its communities and large communities.
pub type Advertisement = (IpNet, Vec<(u16, u16)>, Vec<(u32, u32, u32)>);

/// `A:B` or `G:L1:L2`.
pub fn parse_community(s: &str) -> Option<CommunityValue> {
    let p: Vec<&str> = s.split(':').collect();
    match p.as_slice() {
        [a, b] => Some(CommunityValue::Standard(a.parse().ok()?, b.parse().ok()?)),
        [g, l1, l2] => Some(CommunityValue::Large(
            g.parse().ok()?,
            l1.parse().ok()?,
            l2.parse().ok()?,
        )),
        _ => None,
    }
}

fn check_config(key: &str, c: &mut BgpConfiguration) -> Result<(), ResourceError> {
    c.mesh_restart_secs = duration(
        key,
        "spec.nodeMeshMaxRestartTime",
        &c.spec.node_mesh_max_restart_time,
    )?;
    if let Some(m) = &c.spec.bind_mode
        && m != "None"
        && m != "NodeIP"
    {
        return Err(ResourceError::new(
            key,
            "spec.bindMode",
            format!("{m:?}: None or NodeIP"),
        ));
    }
    if c.spec.listen_port == Some(0) {
        c.spec.listen_port = None;
    }
    for (i, a) in c.spec.prefix_advertisements.iter().enumerate() {
        let field = format!("spec.prefixAdvertisements[{i}]");
        let net: IpNet = a.cidr.parse().map_err(|e| {
            ResourceError::new(key, &format!("{field}.cidr"), format!("{:?}: {e}", a.cidr))
        })?;
        let (mut std, mut large) = (Vec::new(), Vec::new());
        for c_ in &a.communities {
            let value = match parse_community(c_) {
                Some(v) => Some(v),
                None => c
                    .spec
                    .communities
                    .iter()
                    .find(|d| d.name == *c_)
                    .and_then(|d| parse_community(&d.value)),
            };
            match value {
                Some(CommunityValue::Standard(a, b)) => std.push((a, b)),
                Some(CommunityValue::Large(g, l1, l2)) => large.push((g, l1, l2)),
                None => {
                    return Err(ResourceError::new(
                        key,
                        &format!("{field}.communities"),
                        format!("{c_:?}: neither a community value nor a defined name"),
                    ));
                }
            }
        }
        std.sort_unstable();
        std.dedup();
        large.sort_unstable();
        large.dedup();
        c.advertisements.push((net.trunc(), std, large));
    }
    for (field, list) in [
        ("spec.serviceClusterIPs", &c.spec.service_cluster_ips),
        ("spec.serviceExternalIPs", &c.spec.service_external_ips),
        (
            "spec.serviceLoadBalancerIPs",
            &c.spec.service_load_balancer_ips,
        ),
    ] {
        for (i, b) in list.iter().enumerate() {
            if b.cidr.is_empty() {
                continue;
            }
            let net: IpNet = b.cidr.parse().map_err(|e| {
                ResourceError::new(key, &format!("{field}[{i}].cidr"), format!("{e}"))
            })?;
            c.service_cidrs.push(net.trunc());
        }
    }
    Ok(())
}

fn check_node(key: &str, n: &mut Node) -> Result<(), ResourceError> {
    let Some(bgp) = &n.spec.bgp else {
        return Ok(());
    };
    // An address with or without its length, as Calico's ParseCIDROrIP.
    fn cidr_or_ip(s: &str) -> Result<(IpAddr, IpNet), String> {
        if let Ok(n) = s.parse::<IpNet>() {
            return Ok((n.addr(), n.trunc()));
        }
        let a: IpAddr = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
        Ok((a, IpNet::from(a)))
    }
    if !bgp.ipv4_address.is_empty() {
        match cidr_or_ip(&bgp.ipv4_address) {
            Ok((IpAddr::V4(a), IpNet::V4(net))) => n.ipv4 = Some((a, net)),
            Ok(_) => {
                return Err(ResourceError::new(
                    key,
                    "spec.bgp.ipv4Address",
                    "not an IPv4 address",
                ));
            }
            Err(e) => return Err(ResourceError::new(key, "spec.bgp.ipv4Address", e)),
        }
    }
    if !bgp.ipv6_address.is_empty() {
        match cidr_or_ip(&bgp.ipv6_address) {
            Ok((IpAddr::V6(a), IpNet::V6(net))) => n.ipv6 = Some((a, net)),
            Ok(_) => {
                return Err(ResourceError::new(
                    key,
                    "spec.bgp.ipv6Address",
                    "not an IPv6 address",
                ));
            }
            Err(e) => return Err(ResourceError::new(key, "spec.bgp.ipv6Address", e)),
        }
    }
    if let Some(c) = n.cluster_id()
        && c.parse::<Ipv4Addr>().is_err()
    {
        return Err(ResourceError::new(
            key,
            "spec.bgp.routeReflectorClusterID",
            format!("{c:?} is not an IPv4 address"),
        ));
    }
    Ok(())
}

fn check_peer(key: &str, p: &mut BgpPeer) -> Result<(), ResourceError> {
    p.node_selector = selector(key, "spec.nodeSelector", &p.spec.node_selector)?;
    p.peer_selector = selector(key, "spec.peerSelector", &p.spec.peer_selector)?;
    if p.is_local_workload() && p.spec.as_number.is_none_or(|a| a.0 == 0) {
        return Err(ResourceError::new(
            key,
            "spec.asNumber",
            "required with localWorkloadSelector",
        ));
    }
    if p.peer_selector.is_none() && !p.is_local_workload() {
        let ip = &p.spec.peer_ip;
        if ip.is_empty() {
            return Err(ResourceError::new(
                key,
                "spec.peerIP",
                "neither peerIP nor peerSelector is set",
            ));
        }
        p.peer_ip = Some(parse_peer_ip(ip).ok_or_else(|| {
            ResourceError::new(
                key,
                "spec.peerIP",
                format!("{ip:?}: an address, A.B.C.D:PORT or [V6]:PORT"),
            )
        })?);
        if p.spec.as_number.is_none_or(|a| a.0 == 0) {
            return Err(ResourceError::new(
                key,
                "spec.asNumber",
                "required with peerIP",
            ));
        }
    }
    if !p.spec.reachable_by.is_empty() {
        let r: IpAddr = p.spec.reachable_by.parse().map_err(|e| {
            ResourceError::new(
                key,
                "spec.reachableBy",
                format!("{:?}: {e}", p.spec.reachable_by),
            )
        })?;
        if let Some((ip, _)) = p.peer_ip
            && ip.is_ipv6() != r.is_ipv6()
        {
            return Err(ResourceError::new(
                key,
                "spec.reachableBy",
                "not of peerIP's family",
            ));
        }
    }
    if let Some(m) = &p.spec.next_hop_mode
        && !matches!(m.as_str(), "Auto" | "Self" | "Keep")
    {
        return Err(ResourceError::new(
            key,
            "spec.nextHopMode",
            format!("{m:?}: Auto, Self or Keep"),
        ));
    }
    if !matches!(p.spec.source_address.as_str(), "" | "UseNodeIP" | "None") {
        return Err(ResourceError::new(
            key,
            "spec.sourceAddress",
            format!("{:?}: UseNodeIP or None", p.spec.source_address),
        ));
    }
    if let Some(r) = &p.spec.reverse_peering
        && r != "Auto"
        && r != "Manual"
    {
        return Err(ResourceError::new(
            key,
            "spec.reversePeering",
            format!("{r:?}: Auto or Manual"),
        ));
    }
    p.restart_secs = duration(key, "spec.maxRestartTime", &p.spec.max_restart_time)?;
    p.keepalive_secs = duration(key, "spec.keepaliveTime", &p.spec.keepalive_time)?;
    Ok(())
}

fn check_pool(key: &str, p: &mut IpPool) -> Result<(), ResourceError> {
    let net: IpNet = p
        .spec
        .cidr
        .parse()
        .map_err(|e| ResourceError::new(key, "spec.cidr", format!("{:?}: {e}", p.spec.cidr)))?;
    p.cidr = Some(net.trunc());
    p.ipip = encap(&p.spec.ipip_mode).ok_or_else(|| {
        ResourceError::new(
            key,
            "spec.ipipMode",
            format!("{:?}: Never, Always or CrossSubnet", p.spec.ipip_mode),
        )
    })?;
    p.vxlan = encap(&p.spec.vxlan_mode).ok_or_else(|| {
        ResourceError::new(
            key,
            "spec.vxlanMode",
            format!("{:?}: Never, Always or CrossSubnet", p.spec.vxlan_mode),
        )
    })?;
    selector(key, "spec.nodeSelector", &p.spec.node_selector)?;
    Ok(())
}

fn check_filter(key: &str, f: &BgpFilter) -> Result<(), ResourceError> {
    for (dir, v6, rules) in [
        ("exportV4", false, &f.spec.export_v4),
        ("importV4", false, &f.spec.import_v4),
        ("exportV6", true, &f.spec.export_v6),
        ("importV6", true, &f.spec.import_v6),
    ] {
        for (i, r) in rules.iter().enumerate() {
            let field = |x: &str| format!("spec.{dir}[{i}].{x}");
            if r.action != "Accept" && r.action != "Reject" {
                return Err(ResourceError::new(
                    key,
                    &field("action"),
                    format!("{:?}: Accept or Reject", r.action),
                ));
            }
            if !r.cidr.is_empty() {
                let net: IpNet = r.cidr.parse().map_err(|e| {
                    ResourceError::new(key, &field("cidr"), format!("{:?}: {e}", r.cidr))
                })?;
                if net.addr().is_ipv6() != v6 {
                    return Err(ResourceError::new(
                        key,
                        &field("cidr"),
                        format!("{net} is not of the rule's family"),
                    ));
                }
                if !matches!(
                    r.match_operator.as_str(),
                    "Equal" | "NotEqual" | "In" | "NotIn"
                ) {
                    return Err(ResourceError::new(
                        key,
                        &field("matchOperator"),
                        format!("{:?}: Equal, NotEqual, In or NotIn", r.match_operator),
                    ));
                }
            }
            let max = if v6 { 128 } else { 32 };
            if let Some(pl) = r.prefix_length
                && (pl.min.is_some_and(|m| m > max)
                    || pl.max.is_some_and(|m| m > max)
                    || matches!((pl.min, pl.max), (Some(a), Some(b)) if a > b))
            {
                return Err(ResourceError::new(
                    key,
                    &field("prefixLength"),
                    format!("min and max within 0..={max}, min <= max"),
                ));
            }
            if !matches!(r.peer_type.as_str(), "" | "eBGP" | "iBGP") {
                return Err(ResourceError::new(
                    key,
                    &field("peerType"),
                    format!("{:?}: eBGP or iBGP", r.peer_type),
                ));
            }
            if !matches!(r.source.as_str(), "" | "RemotePeers") {
                return Err(ResourceError::new(
                    key,
                    &field("source"),
                    format!("{:?}: RemotePeers", r.source),
                ));
            }
            for c in r.communities.iter().flat_map(|c| &c.values) {
                if parse_community(c).is_none() {
                    return Err(ResourceError::new(
                        key,
                        &field("communities"),
                        format!("{c:?}: A:B or G:L1:L2"),
                    ));
                }
            }
            for o in &r.operations {
                if let Some(a) = &o.add_community
                    && parse_community(&a.value).is_none()
                {
                    return Err(ResourceError::new(
                        key,
                        &field("operations"),
                        format!("addCommunity {:?}: A:B or G:L1:L2", a.value),
                    ));
                }
            }
        }
    }
    Ok(())
}

impl Datastore {
    /// An empty datastore.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a put (`Some(value)`) or a delete (`None`) of `key`. Keys outside the
    /// layout the agent reads are ignored (`Ok`); a value that cannot be used leaves the
    /// key absent and says why.
    pub fn apply(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), ResourceError> {
        match classify(key)? {
            Kind::Other => Ok(()),
            Kind::Block(node, net) => {
                let keep = match value {
                    None => false,
                    Some(v) => {
                        let a: BlockAffinity = json(key, v)?;
                        // As confd: a pending affinity is not the node's yet.
                        !a.deleted && a.state != "pending"
                    }
                };
                if keep {
                    self.blocks.entry(node.to_owned()).or_default().insert(net);
                } else if let Some(set) = self.blocks.get_mut(node) {
                    set.remove(&net);
                    if set.is_empty() {
                        self.blocks.remove(node);
                    }
                }
                Ok(())
            }
            Kind::Resource(plural, name) => {
                macro_rules! put {
                    ($map:ident, $ty:ty, $check:expr) => {{
                        self.$map.remove(name);
                        if let Some(v) = value {
                            let mut r: $ty = json(key, v)?;
                            // The key names the resource, whatever the value says.
                            r.metadata.name = name.to_owned();
                            #[allow(clippy::redundant_closure_call)]
                            ($check)(key, &mut r)?;
                            self.$map.insert(name.to_owned(), r);
                        }
                        Ok(())
                    }};
                }
                match plural {
                    "bgpconfigurations" => put!(bgp_configs, BgpConfiguration, check_config),
                    "nodes" => put!(nodes, Node, check_node),
                    "bgppeers" => put!(peers, BgpPeer, check_peer),
                    "ippools" => put!(pools, IpPool, check_pool),
                    "bgpfilters" => put!(filters, BgpFilter, |k: &str, f: &mut BgpFilter| {
                        check_filter(k, f)
                    }),
                    _ => Ok(()),
                }
            }
        }
    }

    /// The names of the nodes with a `Node` resource, sorted.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go_writes_them() {
        assert_eq!(parse_duration_secs("120s"), Some(120));
        assert_eq!(parse_duration_secs("2m30s"), Some(150));
        assert_eq!(parse_duration_secs("1h0m0s"), Some(3600));
        assert_eq!(parse_duration_secs("1.5s"), Some(2));
        assert_eq!(parse_duration_secs("400ms"), Some(0));
        assert_eq!(parse_duration_secs("0"), Some(0));
        assert_eq!(parse_duration_secs("5"), None);
        assert_eq!(parse_duration_secs("s"), None);
        assert_eq!(parse_duration_secs("3x"), None);
    }

    #[test]
    fn peer_ip_forms() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(parse_peer_ip("10.0.0.1"), Some((a("10.0.0.1"), 0)));
        assert_eq!(parse_peer_ip("10.0.0.1:1790"), Some((a("10.0.0.1"), 1790)));
        assert_eq!(parse_peer_ip("fd00::1"), Some((a("fd00::1"), 0)));
        assert_eq!(parse_peer_ip("[fd00::1]:1790"), Some((a("fd00::1"), 1790)));
        assert_eq!(parse_peer_ip("10.0.0.1:x"), None);
        assert_eq!(parse_peer_ip("10.0.0.1:70000"), None);
        assert_eq!(parse_peer_ip("host:179"), None);
    }

    #[test]
    fn asn_forms() {
        let p = |s: &str| serde_json::from_str::<Asn>(s).map(|a| a.0).ok();
        assert_eq!(p("64512"), Some(64512));
        assert_eq!(p("\"64512\""), Some(64512));
        assert_eq!(p("\"1.10\""), Some(65546));
        assert_eq!(p("4294967296"), None);
        assert_eq!(p("\"x\""), None);
    }

    #[test]
    fn endpoint_status_as_confd_reads_it() {
        let p = |t: &str| parse_endpoint_status("f", t.as_bytes());
        let w = p(r#"{"ifaceName":"cali1","ipv4Nets":["192.168.1.5/32","192.168.1.6/32"],"ipv6Nets":["fd00::5/128"],"bgpPeerName":"wl"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(w.bgp_peer_name, "wl");
        assert_eq!(w.ipv4, Some(Ipv4Addr::new(192, 168, 1, 5)));
        assert_eq!(w.ipv6, Some("fd00::5".parse().unwrap()));
        // Not chosen for local peering.
        assert_eq!(p(r#"{"ipv4Nets":["192.168.1.5/32"]}"#).unwrap(), None);
        // No address yet, an address without its length, a file being written.
        assert_eq!(p(r#"{"bgpPeerName":"wl"}"#).unwrap_err().field, "ipv4Nets");
        assert_eq!(
            p(r#"{"ipv4Nets":["192.168.1.5"],"bgpPeerName":"wl"}"#)
                .unwrap_err()
                .field,
            "ipv4Nets"
        );
        assert_eq!(
            p(r#"{"ipv6Nets":["192.168.1.5/32"],"bgpPeerName":"wl"}"#)
                .unwrap_err()
                .field,
            "ipv6Nets"
        );
        assert!(p(r#"{"ipv4Nets":["#).is_err());
    }

    #[test]
    fn apply_checks_and_skips() {
        let mut ds = Datastore::new();
        let k = "/calico/resources/v3/projectcalico.org/bgppeers/p1";
        let e = ds
            .apply(
                k,
                Some(br#"{"spec":{"peerIP":"10.0.0.300","asNumber":65000}}"#),
            )
            .unwrap_err();
        assert_eq!((e.key.as_str(), e.field.as_str()), (k, "spec.peerIP"));
        assert!(ds.peers.is_empty());
        let e = ds
            .apply(
                k,
                Some(br#"{"spec":{"peerSelector":"has(","asNumber":65000}}"#),
            )
            .unwrap_err();
        assert_eq!(e.field, "spec.peerSelector");
        ds.apply(
            k,
            Some(br#"{"spec":{"peerIP":"10.0.0.3:180","asNumber":"65000"}}"#),
        )
        .unwrap();
        assert_eq!(
            ds.peers["p1"].peer_ip,
            Some(("10.0.0.3".parse().unwrap(), 180))
        );
        // A bad put removes what was there.
        assert!(ds.apply(k, Some(b"{")).is_err());
        assert!(ds.peers.is_empty());
        ds.apply(
            "/calico/resources/v3/projectcalico.org/profiles/x",
            Some(b"{"),
        )
        .unwrap();
        ds.apply("/calico/felix/v1/whatever", Some(b"junk"))
            .unwrap();

        let b = "/calico/ipam/v2/host/n1/ipv4/block/10.65.0.0-26";
        ds.apply(b, Some(br#"{"state":"pending"}"#)).unwrap();
        assert!(ds.blocks.is_empty());
        ds.apply(b, Some(br#"{"state":"confirmed","deleted":false}"#))
            .unwrap();
        assert_eq!(ds.blocks["n1"].len(), 1);
        ds.apply(b, None).unwrap();
        assert!(ds.blocks.is_empty());
        let e = ds
            .apply(
                "/calico/ipam/v2/host/n1/ipv6/block/10.65.0.0-26",
                Some(b"{}"),
            )
            .unwrap_err();
        assert_eq!(e.field, "key");
    }
}
