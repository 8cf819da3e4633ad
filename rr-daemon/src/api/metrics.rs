//! `/metrics`: the speaker's snapshot, readiness and the FIB's report as Prometheus /
//! OpenMetrics text. Every labelled series is per peer, or one of a fixed set (down
//! reasons, BFD states, netlink operations): series never grow with routes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::Readiness;
use crate::speaker::{PeerStatus, Snapshot};

/// The one label of per-peer series: series grow linearly with peers.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

/// The label of `rr_peers_down`: one of the twelve reasons, so the series are bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// `rr_peer_state` values, in RFC 4271 order.
fn state_number(state: &str) -> i64 {
    match state {
        "Idle" => 1,
        "Connect" => 2,
        "Active" => 3,
        "OpenSent" => 4,
        "OpenConfirm" => 5,
        "Established" => 6,
        _ => 0,
    }
}

type PeerGauges = Family<PeerLabel, Gauge>;
type PeerCounters = Family<PeerLabel, Counter>;

/// Renders a snapshot as OpenMetrics text. The registry is built afresh per scrape from
/// one snapshot, so every series of a scrape is from the same instant.
pub(super) fn render_metrics(
    s: &Snapshot,
    ready: &Readiness,
    fib: Option<&crate::fib::FibReport>,
) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::default();
    let gauges = |reg: &mut Registry, name: &str, help: &str, unit: Option<Unit>| {
        let f = PeerGauges::default();
        match unit {
            Some(u) => reg.register_with_unit(name, help, u, f.clone()),
            None => reg.register(name, help, f.clone()),
        }
        f
    };
    let counters = |reg: &mut Registry, name: &str, help: &str| {
        let f = PeerCounters::default();
        reg.register(name, help, f.clone());
        f
    };
    let state = gauges(
        &mut reg,
        "rr_peer_state",
        "BGP state: 1 Idle, 2 Connect, 3 Active, 4 OpenSent, 5 OpenConfirm, 6 Established",
        None,
    );
    let uptime = gauges(
        &mut reg,
        "rr_peer_uptime",
        "Time since the session became Established (0 when it is not)",
        Some(Unit::Seconds),
    );
    let upd_rx = counters(
        &mut reg,
        "rr_peer_updates_received",
        "UPDATE messages received (reset when the session comes up)",
    );
    let upd_tx = counters(
        &mut reg,
        "rr_peer_updates_sent",
        "UPDATE messages sent (reset when the session comes up)",
    );
    let pfx_rx = counters(
        &mut reg,
        "rr_peer_prefixes_received",
        "Prefixes announced by the peer (reset when the session comes up)",
    );
    let pfx_acc = gauges(
        &mut reg,
        "rr_peer_prefixes_accepted",
        "Routes from the peer in its Adj-RIB-In, after import policy",
        None,
    );
    let pfx_tx = counters(
        &mut reg,
        "rr_peer_prefixes_sent",
        "Prefixes announced to the peer (reset when the session comes up)",
    );
    let queue = gauges(
        &mut reg,
        "rr_peer_update_queue",
        "UPDATE bytes handed to the session and not yet written",
        Some(Unit::Bytes),
    );
    let down = Family::<ReasonLabel, Gauge>::default();
    reg.register(
        "rr_peers_down",
        "Peers not Established, by the reason of their down_reason (every reason of the \
         fixed list, 0 included)",
        down.clone(),
    );
    for r in crate::speaker::Reason::ALL {
        let n = s
            .peers
            .iter()
            .filter(|p| p.down_reason.as_ref().is_some_and(|d| d.reason == r))
            .count();
        down.get_or_create(&ReasonLabel {
            reason: r.as_str().to_owned(),
        })
        .set(clamp(n as u64));
    }
    for p in &s.peers {
        let l = PeerLabel {
            peer: p.address.to_string(),
        };
        state.get_or_create(&l).set(state_number(p.state.as_str()));
        uptime.get_or_create(&l).set(clamp(p.uptime_s.unwrap_or(0)));
        upd_rx.get_or_create(&l).inc_by(p.updates_received);
        upd_tx.get_or_create(&l).inc_by(p.updates_sent);
        pfx_rx.get_or_create(&l).inc_by(p.prefixes_received);
        pfx_acc.get_or_create(&l).set(clamp(p.prefixes_accepted));
        pfx_tx.get_or_create(&l).inc_by(p.prefixes_sent);
        queue.get_or_create(&l).set(clamp(p.queued_bytes));
    }
    bfd_metrics(&mut reg, &s.peers);
    let global = |reg: &mut Registry, name: &str, help: &str, v: usize| {
        let g = Gauge::<i64>::default();
        g.set(clamp(v as u64));
        reg.register(name, help, g);
    };
    let r = &s.rib;
    global(
        &mut reg,
        "rr_rib_prefixes",
        "Prefixes in the Loc-RIB",
        r.prefixes,
    );
    global(&mut reg, "rr_rib_paths", "Paths over all prefixes", r.paths);
    global(
        &mut reg,
        "rr_rib_attribute_sets",
        "Distinct (interned) path attribute sets",
        r.attr_sets,
    );
    global(
        &mut reg,
        "rr_rib_adj_rib_out_paths",
        "Paths in the Adj-RIBs-Out over all update groups",
        r.adj_out_paths,
    );
    global(&mut reg, "rr_rib_update_groups", "Update groups", r.groups);
    global(
        &mut reg,
        "rr_rib_peer_slots",
        "Peer slots of the RIB, used and free (the most peers at once)",
        r.peer_slots,
    );
    global(
        &mut reg,
        "rr_rib_pending_prefixes",
        "Prefixes waiting to be sent, over all update groups",
        r.pending,
    );
    global(
        &mut reg,
        "rr_peers",
        "Configured peers (dynamic neighbours aside)",
        ready.peers,
    );
    global(
        &mut reg,
        "rr_ready",
        "1 when /readyz answers 200, else 0",
        usize::from(ready.ready),
    );
    if let Some(f) = fib {
        fib_metrics(&mut reg, f);
    }
    let mut out = String::with_capacity(256 + 1024 * s.peers.len());
    prometheus_client::encoding::text::encode(&mut out, &reg)?;
    Ok(out)
}

/// The label of `rr_bfd_sessions`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BfdLabel {
    state: &'static str,
}

/// `rr_bfd_sessions{state}`: the peers' BFD sessions by state, every state present.
fn bfd_metrics(reg: &mut Registry, peers: &[PeerStatus]) {
    use crate::bfd::State;
    let f = Family::<BfdLabel, Gauge>::default();
    reg.register(
        "rr_bfd_sessions",
        "BFD sessions of peers, by state",
        f.clone(),
    );
    for state in [State::AdminDown, State::Down, State::Init, State::Up] {
        let n = peers.iter().filter(|p| p.bfd == Some(state)).count();
        f.get_or_create(&BfdLabel {
            state: state.as_str(),
        })
        .set(clamp(n as u64));
    }
}

/// The label of `rr_fib_ops_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

/// `rr_fib_*`: what the FIB task counts (present only with `[fib]` on).
fn fib_metrics(reg: &mut Registry, f: &crate::fib::FibReport) {
    let gauge = |reg: &mut Registry, name: &str, help: &str, v: usize| {
        let g = Gauge::<i64>::default();
        g.set(clamp(v as u64));
        reg.register(name, help, g);
    };
    let counter = |reg: &mut Registry, name: &str, help: &str, v: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        reg.register(name, help, c);
    };
    gauge(
        reg,
        "rr_fib_routes_installed",
        "Routes of ours in the kernel",
        f.installed,
    );
    gauge(
        reg,
        "rr_fib_routes_desired",
        "Prefixes wanted in the kernel",
        f.desired,
    );
    gauge(
        reg,
        "rr_fib_routes_pending",
        "Wanted prefixes not (yet) in the kernel as wanted",
        f.pending,
    );
    gauge(
        reg,
        "rr_fib_routes_failing",
        "Prefixes whose last netlink operation failed (retried)",
        f.failing,
    );
    gauge(
        reg,
        "rr_fib_synced",
        "1 once the initial sync is over, else 0",
        usize::from(f.synced),
    );
    let ops = Family::<OpLabel, Counter>::default();
    reg.register("rr_fib_ops", "Successful netlink operations", ops.clone());
    ops.get_or_create(&OpLabel { op: "add" }).inc_by(f.adds);
    ops.get_or_create(&OpLabel { op: "delete" })
        .inc_by(f.deletes);
    counter(reg, "rr_fib_errors", "Failed netlink operations", f.errors);
    counter(
        reg,
        "rr_fib_batches",
        "Batches of netlink operations",
        f.batches,
    );
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
