//! Calico's rendered BIRD 1.6 node configuration: [`calico_bird16_node_config`].

use std::fmt::Write as _;

/// One BGP session of a Calico node: Calico's protocol name (`Mesh_<ip>` for a mesh
/// peer, `Node_<ip>` for a node-specific peer such as a top-of-rack reflector,
/// `Global_<ip>` for a global one), the peer's address and AS, and whether the node waits
/// for the peer to connect (`passive on`, rendered for mesh peers whose address is the
/// greater string).
#[derive(Clone, Debug)]
pub struct CalicoPeer {
    /// The protocol name.
    pub name: String,
    /// The peer's address.
    pub addr: String,
    /// The peer's AS.
    pub asn: u32,
    /// `passive on`.
    pub passive: bool,
}

/// Calico's mesh rule (`{{if gt $onode_ip $node_ip}} passive on;`): a node waits for a
/// peer whose address is the greater *string* (Go's `gt` on strings: byte order, so
/// "192.0.2.9" > "192.0.2.30").
pub fn calico_passive(me: &str, other: &str) -> bool {
    other > me
}

/// Calico's name for a session: `<kind>_<ip with _ for .>` (`Mesh_192_0_2_11`).
pub fn calico_proto(kind: &str, addr: &str) -> String {
    format!("{kind}_{}", addr.replace(['.', ':'], "_"))
}

/// Calico 3.32's node config (confd's `bird.cfg`, `bird_aggr.cfg`, `bird_ipam.cfg`, the
/// includes inlined) for a node at `addr` in AS `asn` owning `block`, one IPv4 pool
/// `pool` without IP-in-IP, in BIRD 1.6 syntax (Calico ships its fork of 1.6.8): the
/// kernel protocol (`learn`, `persist`, scan 2 s, `merge paths`, export filter
/// `calico_kernel_programming`), `device`, `direct` without `cali*`, the block as a static
/// blackhole with `calico_aggr`, and one session per [`CalicoPeer`] from Calico's
/// template (`multihop`, `gateway recursive`, `add paths`, graceful restart, Calico's
/// timers) with Calico's import/export filters (the metric follows LOCAL_PREF).
///
/// One deviation: Calico renders the pool's kernel rule as
/// `if (net ~ POOL) then { krt_tunnel=""; accept; }`; `krt_tunnel` exists only in
/// Calico's fork (upstream 1.6.8 refuses it), and the empty tunnel means no tunnel, so
/// the rule here is `{ accept; }`: the same route.
pub fn calico_bird16_node_config(
    addr: &str,
    asn: u32,
    block: &str,
    pool: &str,
    peers: &[CalicoPeer],
) -> String {
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
         \x20 if (net ~ {pool}) then {{ accept; }}\n}}\n\
         filter calico_kernel_programming {{\n\
         \x20 if (net ~ {pool}) then {{ accept; }} # Calico: {{ krt_tunnel=\"\"; accept; }}\n\
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
         \x20 local as {asn};\n\
         \x20 gateway recursive; # This should be the default, but just in case.\n\
         \x20 add paths on;\n\
         \x20 graceful restart;\n\
         \x20 connect delay time 2;\n\
         \x20 connect retry time 5;\n\
         \x20 error wait time 5,30;\n}}\n"
    );
    for p in peers {
        let _ = write!(
            c,
            "protocol bgp {} from bgp_template {{\n\
             \x20 neighbor {} as {};\n\
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
            p.name,
            p.addr,
            p.asn,
            if p.passive {
                "  passive on; # Mesh is unidirectional, peer will connect to us.\n"
            } else {
                ""
            }
        );
    }
    c
}
