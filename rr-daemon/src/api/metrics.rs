//! `/metrics`: the speaker's snapshot, readiness, the FIB's report and the process as
//! Prometheus / OpenMetrics text. Every labelled series is per peer (labels `peer`,
//! `peer_asn`, `group`), per peer and one of a fixed set (message types, NOTIFICATION
//! codes, directions), or one of a fixed set (down reasons, BFD states, netlink
//! operations, address families): series never grow with routes.
//!
//! Series come out in a stable order: families in the order registered here, and within
//! a family in the order added (peers by address), not in a hash map's order.

use std::fmt;
use std::net::IpAddr;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

use super::Readiness;
use crate::speaker::{PeerStatus, Snapshot};
use crate::traffic::{Direction, MESSAGE_TYPES};

/// A label set as (name, value) pairs, in the order they print.
type Labels = Vec<(&'static str, String)>;

/// One metric family whose series print in the order they were added.
#[derive(Debug)]
struct Series<M>(Vec<(Labels, M)>);

impl<M> Default for Series<M> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<M> Series<M> {
    fn push(&mut self, labels: Labels, metric: M) {
        self.0.push((labels, metric));
    }
}

impl<M: EncodeMetric + TypedMetric> EncodeMetric for Series<M> {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), fmt::Error> {
        for (labels, m) in &self.0 {
            m.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

/// The labels every per-peer series starts with: `peer`, `peer_asn` and `group` (empty
/// without one).
fn peer_labels(p: &PeerStatus) -> Labels {
    vec![
        ("peer", p.address.to_string()),
        ("peer_asn", p.asn.to_string()),
        ("group", p.group.clone().unwrap_or_default()),
    ]
}

fn with(mut labels: Labels, more: &[(&'static str, &str)]) -> Labels {
    labels.extend(more.iter().map(|(k, v)| (*k, (*v).to_owned())));
    labels
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

/// What the registry holds for one scrape: registration helpers that keep the order.
struct Out {
    reg: Registry,
}

impl Out {
    fn gauge(&mut self, name: &str, help: &str, unit: Option<Unit>, s: Series<ConstGauge>) {
        match unit {
            Some(u) => self.reg.register_with_unit(name, help, u, s),
            None => self.reg.register(name, help, s),
        }
    }

    fn counter<N>(&mut self, name: &str, help: &str, unit: Option<Unit>, s: Series<ConstCounter<N>>)
    where
        ConstCounter<N>: EncodeMetric + TypedMetric + fmt::Debug + Send + Sync + 'static,
    {
        match unit {
            Some(u) => self.reg.register_with_unit(name, help, u, s),
            None => self.reg.register(name, help, s),
        }
    }

    /// One per-peer series of `f(peer)`.
    fn per_peer_gauge(
        &mut self,
        peers: &[PeerStatus],
        name: &str,
        help: &str,
        unit: Option<Unit>,
        f: impl Fn(&PeerStatus) -> u64,
    ) {
        let mut s = Series::default();
        for p in peers {
            s.push(peer_labels(p), ConstGauge::new(clamp(f(p))));
        }
        self.gauge(name, help, unit, s);
    }

    fn per_peer_counter(
        &mut self,
        peers: &[PeerStatus],
        name: &str,
        help: &str,
        f: impl Fn(&PeerStatus) -> u64,
    ) {
        let mut s = Series::default();
        for p in peers {
            s.push(peer_labels(p), ConstCounter::new(f(p)));
        }
        self.counter(name, help, None, s);
    }

    /// A single unlabelled gauge.
    fn global(&mut self, name: &str, help: &str, v: usize) {
        let mut s = Series::default();
        s.push(Vec::new(), ConstGauge::new(clamp(v as u64)));
        self.gauge(name, help, None, s);
    }
}

/// Renders a snapshot as OpenMetrics text. The registry is built afresh per scrape from
/// one snapshot, so every series of a scrape is from the same instant.
pub(super) fn render_metrics(
    s: &Snapshot,
    ready: &Readiness,
    fib: Option<&crate::fib::FibReport>,
) -> Result<String, fmt::Error> {
    let mut out = Out {
        reg: Registry::default(),
    };
    let peers = &s.peers;
    out.per_peer_gauge(
        peers,
        "rr_peer_state",
        "BGP state: 1 Idle, 2 Connect, 3 Active, 4 OpenSent, 5 OpenConfirm, 6 Established",
        None,
        |p| state_number(p.state.as_str()) as u64,
    );
    out.per_peer_gauge(
        peers,
        "rr_peer_uptime",
        "Time since the session became Established (0 when it is not)",
        Some(Unit::Seconds),
        |p| p.uptime_s.unwrap_or(0),
    );
    out.per_peer_counter(
        peers,
        "rr_peer_updates_received",
        "UPDATE messages received (reset when the session comes up)",
        |p| p.updates_received,
    );
    out.per_peer_counter(
        peers,
        "rr_peer_updates_sent",
        "UPDATE messages sent (reset when the session comes up)",
        |p| p.updates_sent,
    );
    out.per_peer_counter(
        peers,
        "rr_peer_prefixes_received",
        "Prefixes announced by the peer (reset when the session comes up)",
        |p| p.prefixes_received,
    );
    out.per_peer_gauge(
        peers,
        "rr_peer_prefixes_accepted",
        "Routes from the peer in its Adj-RIB-In, after import policy",
        None,
        |p| p.prefixes_accepted,
    );
    out.per_peer_counter(
        peers,
        "rr_peer_prefixes_sent",
        "Prefixes announced to the peer (reset when the session comes up)",
        |p| p.prefixes_sent,
    );
    out.per_peer_gauge(
        peers,
        "rr_peer_update_queue",
        "UPDATE bytes handed to the session and not yet written",
        Some(Unit::Bytes),
        |p| p.queued_bytes,
    );
    let mut down = Series::default();
    for r in crate::speaker::Reason::ALL {
        let n = peers
            .iter()
            .filter(|p| p.down_reason.as_ref().is_some_and(|d| d.reason == r))
            .count();
        down.push(
            vec![("reason", r.as_str().to_owned())],
            ConstGauge::new(clamp(n as u64)),
        );
    }
    out.gauge(
        "rr_peers_down",
        "Peers not Established, by the reason of their down_reason (every reason of the \
         fixed list, 0 included)",
        None,
        down,
    );
    bfd_metrics(&mut out, peers);
    let r = &s.rib;
    let by_family = |v4: usize, v6: usize| {
        let mut f = Series::default();
        f.push(
            vec![("afi_safi", "ipv4-unicast".to_owned())],
            ConstGauge::new(clamp(v4 as u64)),
        );
        f.push(
            vec![("afi_safi", "ipv6-unicast".to_owned())],
            ConstGauge::new(clamp(v6 as u64)),
        );
        f
    };
    out.gauge(
        "rr_rib_prefixes",
        "Prefixes in the Loc-RIB, by address family",
        None,
        by_family(r.prefixes.saturating_sub(r.prefixes_v6), r.prefixes_v6),
    );
    out.gauge(
        "rr_rib_paths",
        "Paths over all prefixes, by address family",
        None,
        by_family(r.paths.saturating_sub(r.paths_v6), r.paths_v6),
    );
    out.global(
        "rr_rib_attribute_sets",
        "Distinct (interned) path attribute sets",
        r.attr_sets,
    );
    out.global(
        "rr_rib_adj_rib_out_paths",
        "Paths in the Adj-RIBs-Out over all update groups",
        r.adj_out_paths,
    );
    out.global("rr_rib_update_groups", "Update groups", r.groups);
    out.global(
        "rr_rib_peer_slots",
        "Peer slots of the RIB, used and free (the most peers at once)",
        r.peer_slots,
    );
    out.global(
        "rr_rib_pending_prefixes",
        "Prefixes waiting to be sent, over all update groups",
        r.pending,
    );
    out.global(
        "rr_peers",
        "Configured peers (dynamic neighbours aside)",
        ready.peers,
    );
    out.global(
        "rr_ready",
        "1 when /readyz answers 200, else 0",
        usize::from(ready.ready),
    );
    if let Some(f) = fib {
        fib_metrics(&mut out, f);
    }
    session_metrics(&mut out, s);
    process_metrics(&mut out);
    let mut text = String::with_capacity(256 + 2048 * s.peers.len());
    prometheus_client::encoding::text::encode(&mut text, &out.reg)?;
    Ok(text)
}

/// Up, flaps, messages and NOTIFICATIONs of each peer, the core's timings and the build.
fn session_metrics(out: &mut Out, s: &Snapshot) {
    let peers = &s.peers;
    out.per_peer_gauge(
        peers,
        "rr_peer_up",
        "1 while the session is Established, else 0",
        None,
        |p| u64::from(p.state == "Established"),
    );
    out.per_peer_counter(
        peers,
        "rr_peer_flaps",
        "Times the session left Established since the peer was configured",
        |p| p.flaps,
    );
    let none = crate::traffic::TrafficCounts::default();
    let traffic = |a: IpAddr| s.traffic.get(&a).unwrap_or(&none);
    let mut messages = Series::default();
    for p in peers {
        let t = traffic(p.address);
        for (direction, counts) in [
            (Direction::Received, &t.received),
            (Direction::Sent, &t.sent),
        ] {
            // `other` only counts what no peer should send; it is left out while 0.
            for (i, ty) in MESSAGE_TYPES.iter().enumerate() {
                if *ty == "other" && counts[i] == 0 {
                    continue;
                }
                messages.push(
                    with(
                        peer_labels(p),
                        &[("direction", direction.as_str()), ("type", ty)],
                    ),
                    ConstCounter::new(counts[i]),
                );
            }
        }
    }
    out.counter(
        "rr_peer_messages",
        "BGP messages by type, received from the peer or queued for it, since the peer was \
         configured",
        None,
        messages,
    );
    let mut notifications = Series::default();
    for p in peers {
        for (k, n) in &traffic(p.address).notifications {
            let num = |v: Option<u8>| v.map_or_else(|| "other".to_owned(), |v| v.to_string());
            let mut l = peer_labels(p);
            l.push(("direction", k.direction.as_str().to_owned()));
            l.push(("code", num(k.code)));
            l.push(("subcode", num(k.subcode)));
            notifications.push(l, ConstCounter::new(*n));
        }
    }
    out.counter(
        "rr_peer_notifications",
        "NOTIFICATION messages by direction, error code and subcode (numbers; `other` for \
         unassigned ones), since the peer was configured; only those seen",
        None,
        notifications,
    );
    if let Some(t) = &s.timings {
        out.reg.register_with_unit(
            "rr_update_processing",
            "Time the core took over one received UPDATE (parse, import policy, decision)",
            Unit::Seconds,
            t.update.clone(),
        );
        out.reg.register_with_unit(
            "rr_core_batch",
            "Time the core took over one batch of session events",
            Unit::Seconds,
            t.batch.clone(),
        );
    }
    let mut build = Series::default();
    build.push(
        vec![
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ("commit", env!("RR_COMMIT").to_owned()),
        ],
        ConstGauge::new(1),
    );
    out.gauge(
        "build_info",
        "Always 1: the version and the commit the daemon was built from",
        None,
        build,
    );
}

/// `rr_process_*`: the process's resident memory and CPU time, from `/proc/self`
/// (absent where it cannot be read).
fn process_metrics(out: &mut Out) {
    if let Some(rss) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| resident_bytes(&t))
    {
        let mut s = Series::default();
        s.push(Vec::new(), ConstGauge::new(clamp(rss)));
        out.gauge(
            "rr_process_resident_memory",
            "Resident memory of the process (VmRSS)",
            Some(Unit::Bytes),
            s,
        );
    }
    if let Some(cpu) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|t| cpu_seconds(&t))
    {
        let mut s = Series::default();
        s.push(Vec::new(), ConstCounter::new(cpu));
        out.counter(
            "rr_process_cpu_seconds",
            "CPU time of the process, user and system",
            None,
            s,
        );
    }
}

/// `VmRSS` of `/proc/self/status`, in bytes.
fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// User plus system time of `/proc/self/stat`, in seconds. The kernel reports it in
/// `USER_HZ` ticks, which its ABI fixes at 100 a second on every architecture we build
/// for (x86-64, AArch64).
fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces and parentheses: fields count from the
    // last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    const USER_HZ: f64 = 100.0;
    Some((utime + stime) as f64 / USER_HZ)
}

/// `rr_bfd_sessions{state}`: the peers' BFD sessions by state, every state present.
fn bfd_metrics(out: &mut Out, peers: &[PeerStatus]) {
    use crate::bfd::State;
    let mut s = Series::default();
    for state in [State::AdminDown, State::Down, State::Init, State::Up] {
        let n = peers.iter().filter(|p| p.bfd == Some(state)).count();
        s.push(
            vec![("state", state.as_str().to_owned())],
            ConstGauge::new(clamp(n as u64)),
        );
    }
    out.gauge(
        "rr_bfd_sessions",
        "BFD sessions of peers, by state",
        None,
        s,
    );
}

/// `rr_fib_*`: what the FIB task counts (present only with `[fib]` on).
fn fib_metrics(out: &mut Out, f: &crate::fib::FibReport) {
    out.global(
        "rr_fib_routes_installed",
        "Routes of ours in the kernel",
        f.installed,
    );
    out.global(
        "rr_fib_routes_desired",
        "Prefixes wanted in the kernel",
        f.desired,
    );
    out.global(
        "rr_fib_routes_pending",
        "Wanted prefixes not (yet) in the kernel as wanted",
        f.pending,
    );
    out.global(
        "rr_fib_routes_failing",
        "Prefixes whose last netlink operation failed (retried)",
        f.failing,
    );
    out.global(
        "rr_fib_synced",
        "1 once the initial sync is over, else 0",
        usize::from(f.synced),
    );
    let mut ops = Series::default();
    ops.push(vec![("op", "add".to_owned())], ConstCounter::new(f.adds));
    ops.push(
        vec![("op", "delete".to_owned())],
        ConstCounter::new(f.deletes),
    );
    out.counter("rr_fib_ops", "Successful netlink operations", None, ops);
    let one = |v: u64| {
        let mut s = Series::default();
        s.push(Vec::new(), ConstCounter::new(v));
        s
    };
    out.counter(
        "rr_fib_errors",
        "Failed netlink operations",
        None,
        one(f.errors),
    );
    out.counter(
        "rr_fib_batches",
        "Batches of netlink operations",
        None,
        one(f.batches),
    );
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_self_is_read() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\n";
        assert_eq!(resident_bytes(status), Some(1234 * 1024));
        // A name with spaces and a parenthesis; utime 250, stime 50 ticks.
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 100 10";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        // The live files parse.
        let live = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(resident_bytes(&live).unwrap() > 0);
        let live = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(cpu_seconds(&live).is_some());
    }
}
