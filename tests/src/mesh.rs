//! Calico-style nodes whose kernels are compared between runs (BIRD 1.6 on Calico's
//! config, ours, mixed): a node's namespace with its workloads ([`mesh_node_ns`]), the
//! wait until every kernel holds its own block as a blackhole and every other node's block
//! via that node and stays so ([`await_programmed`]), and the comparison of two runs
//! ([`kernels_diff`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::kernel::{KernelRoute, field, kernel_routes, route_diff};
use crate::netns::{Hub, Netns};
use crate::proc::poll;

/// One node of a mesh, as the kernel checks see it.
#[derive(Clone, Copy, Debug)]
pub struct MeshNode<'a> {
    /// Its namespace's name (and the node's name).
    pub name: &'a str,
    /// Its address on the hub.
    pub addr: &'a str,
    /// Its IPAM block, if it has one (a reflector has none).
    pub block: Option<&'a str>,
    /// Its workloads: (address, `cali*` veth).
    pub workloads: &'a [(&'a str, &'a str)],
    /// IPv6 (the address in a /64, `ip -6` tables), else IPv4 (a /16 as in the seed).
    pub ipv6: bool,
}

/// Each node's kernel routes of one run, by node name.
pub type Kernels = BTreeMap<String, Vec<KernelRoute>>;

/// A node's namespace on `hub` (`eth0` with `addr/16`, or `/64` for IPv6) with its
/// workloads: a veth `cali…` (its peer `wl…` stays in the node's namespace, both up) and
/// Felix's route `ADDR dev cali… scope link metric 1024` (Calico 3.32's Felix programs
/// workload routes at `IPv4NormalRoutePriority`, 1024; a lower metric marks an elevated
/// route, which Calico's `calico_aggr` exports as a /32).
pub fn mesh_node_ns(hub: &Hub, n: &MeshNode<'_>) -> Result<Netns, String> {
    let ns = Netns::create(n.name)?;
    let len = if n.ipv6 { 64 } else { 16 };
    hub.attach(&ns, &[&format!("{}/{len}", n.addr)])?;
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

/// The kernel of `nodes[i]` (in `ns`) when it holds its own block as a blackhole of
/// protocol bird and every other node's block via that node; else what is missing.
fn programmed(nodes: &[MeshNode<'_>], i: usize, ns: &Netns) -> Result<Vec<KernelRoute>, String> {
    let me = &nodes[i];
    let routes = kernel_routes(ns, me.ipv6)?;
    let has = |dst: &str, ok: &dyn Fn(&KernelRoute) -> bool| {
        routes
            .iter()
            .any(|r| field(r, "dst") == dst && field(r, "protocol") == "bird" && ok(r))
    };
    if let Some(b) = me.block
        && !has(b, &|r| field(r, "type") == "blackhole")
    {
        return Err(format!("{}: no blackhole for {b}", me.name));
    }
    for other in nodes.iter().filter(|o| o.addr != me.addr) {
        let Some(b) = other.block else { continue };
        if !has(b, &|r| field(r, "gateway") == other.addr) {
            return Err(format!("{}: no {b} via {}", me.name, other.addr));
        }
    }
    Ok(routes)
}

/// Waits (`within` at most, polling every 100 ms) until every node's kernel is
/// programmed (its own block a blackhole, every other block via its node) and no kernel
/// has changed for `settle`; returns the kernels by node name, or the last thing missing.
pub fn await_programmed(
    nodes: &[MeshNode<'_>],
    nss: &[Netns],
    within: Duration,
    settle: Duration,
) -> Result<Kernels, String> {
    let mut last = String::new();
    let mut stable_since: Option<(Instant, Vec<Vec<KernelRoute>>)> = None;
    let got = poll(within, Duration::from_millis(100), || {
        let now: Result<Vec<_>, String> = (0..nodes.len())
            .map(|i| programmed(nodes, i, &nss[i]))
            .collect();
        match now {
            Err(e) => {
                last = e;
                stable_since = None;
                None
            }
            Ok(now) => match &stable_since {
                Some((t, before)) if *before == now => (t.elapsed() >= settle).then_some(now),
                _ => {
                    last = "programmed, settling".into();
                    stable_since = Some((Instant::now(), now));
                    None
                }
            },
        }
    });
    let got = got.ok_or_else(|| format!("kernels not programmed within {within:?}: {last}"))?;
    Ok(nodes.iter().map(|n| n.name.to_owned()).zip(got).collect())
}

/// Every difference between the kernels of two runs, node by node (see [`route_diff`]);
/// empty when they are the same.
pub fn kernels_diff(base_label: &str, base: &Kernels, label: &str, got: &Kernels) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    for (name, want) in base {
        let d = route_diff(base_label, want, label, got.get(name).unwrap_or(&empty));
        if !d.is_empty() {
            let _ = write!(out, "{name}:\n{d}");
        }
    }
    for name in got.keys().filter(|n| !base.contains_key(*n)) {
        let _ = writeln!(out, "{name}: only in {label}");
    }
    out
}
