//! What the core answers about itself: peer statuses, routes, snapshots.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use rib::{BestRoute, Explanation, RibStats};
use serde::{Deserialize, Serialize};

/// A peer's session state (RFC 4271 §8.2.2), as the control API shows it: it serialises
/// to, and compares equal with, the RFC's name (`"Established"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PeerState {
    /// Not running, or waiting out the idle hold time.
    Idle,
    /// Our outbound connection attempt is in progress.
    Connect,
    /// Waiting for the peer to connect, or for the next connect retry.
    Active,
    /// Our OPEN is sent; waiting for the peer's.
    OpenSent,
    /// OPENs exchanged; waiting for the peer's KEEPALIVE.
    OpenConfirm,
    /// Up: UPDATEs flow.
    Established,
}

impl PeerState {
    /// The RFC's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::Connect => "Connect",
            Self::Active => "Active",
            Self::OpenSent => "OpenSent",
            Self::OpenConfirm => "OpenConfirm",
            Self::Established => "Established",
        }
    }
}

impl From<bgp_fsm::State> for PeerState {
    fn from(s: bgp_fsm::State) -> Self {
        use bgp_fsm::State;
        match s {
            State::Idle => Self::Idle,
            State::Connect => Self::Connect,
            State::Active => Self::Active,
            State::OpenSent => Self::OpenSent,
            State::OpenConfirm => Self::OpenConfirm,
            State::Established => Self::Established,
        }
    }
}

impl fmt::Display for PeerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for PeerState {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for PeerState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What a peer looks like from outside, as the control API reports it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer's address.
    pub address: IpAddr,
    /// The interface of a link-local peer (`fe80::2%eth0`), or of a dynamic neighbour
    /// accepted on an interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The peer's configured AS.
    pub asn: u32,
    /// The peer group its settings come from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// RFC 4271 state.
    pub state: PeerState,
    /// Seconds since the session became Established, while it is.
    pub uptime_s: Option<u64>,
    /// Prefixes received (announced by the peer since the session came up).
    pub prefixes_received: u64,
    /// Routes from the peer in the Adj-RIB-In now (after import policy).
    pub prefixes_accepted: u64,
    /// Prefixes announced to the peer since the session came up (NLRI handed to the
    /// session; a route re-announced with new attributes counts again), the counterpart
    /// of `prefixes_received`.
    pub prefixes_sent: u64,
    /// UPDATE messages received since the session came up.
    pub updates_received: u64,
    /// UPDATE messages sent since the session came up.
    pub updates_sent: u64,
    /// UPDATE bytes handed to the session and not yet written (the peer's output queue).
    pub queued_bytes: u64,
    /// Seconds since the session entered its current state.
    pub since_s: u64,
    /// Seconds since the peer was added (configured at start, reloaded in, or accepted).
    pub age_s: u64,
    /// Why the session is not (or was last not) Established, in words.
    pub last_error: Option<String>,
    /// The last NOTIFICATION we sent, by name, if any since the peer was added.
    pub last_notification_sent: Option<String>,
    /// The last NOTIFICATION the peer sent, by name, if any since the peer was added.
    pub last_notification_received: Option<String>,
    /// Graceful restart (helper) is under way: the peer went down gracefully and its
    /// routes are kept as stale until its End-of-RIB or the restart time runs out.
    pub graceful_restart_pending: bool,
    /// Accepted from a dynamic neighbour range.
    pub dynamic: bool,
    /// Times the session left Established since the peer was added.
    #[serde(default)]
    pub flaps: u64,
    /// The state of the peer's BFD session; `None` when BFD is off for the peer.
    #[serde(default)]
    pub bfd: Option<crate::bfd::State>,
    /// Why the session is not Established, from a fixed list with a sentence; `null`
    /// while it is.
    #[serde(default)]
    pub down_reason: Option<super::DownReason>,
}

/// A best route with the address of the peer it came from.
#[derive(Clone, Debug)]
pub struct RouteEntry {
    /// The prefix.
    pub prefix: IpNet,
    /// Its best path.
    pub best: BestRoute,
    /// The source peer's address; `None` for a route this speaker originates.
    pub from: Option<IpAddr>,
}

/// A page of the Loc-RIB, in the RIB's internal order (stable while the table does not
/// change).
#[derive(Clone, Debug)]
pub struct RoutesPage {
    /// The routes.
    pub routes: Vec<RouteEntry>,
    /// More routes follow this page.
    pub more: bool,
}

/// [`Explanation`] with the address of each path's source peer.
#[derive(Clone, Debug)]
pub struct ExplainedRoute {
    /// Every path, best first, with why it won or lost.
    pub explanation: Explanation,
    /// For each path in `explanation.paths`, the source peer's address; `None` for a
    /// route this speaker originates.
    pub from: Vec<Option<IpAddr>>,
}

/// Everything metrics read, taken in one visit to the core.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Our AS.
    pub local_as: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Every peer's status.
    pub peers: Vec<PeerStatus>,
    /// Table sizes (computing them walks the Loc-RIB once).
    pub rib: RibStats,
    /// Started as a restarting speaker and route selection still deferred: what it waits
    /// for (BIRD's "Graceful restart recovery in progress").
    pub recovery: Option<Recovery>,
    /// Why each peer not Established went down last, as the state machine reported it
    /// (for front ends that word it their own way, such as BIRD's control socket).
    pub last_down: std::collections::BTreeMap<IpAddr, bgp_fsm::DownReason>,
    /// Each configured peer's messages and NOTIFICATIONs since it was configured, over
    /// all its sessions (filled in by the shell, which owns the sockets).
    pub traffic: std::collections::BTreeMap<IpAddr, crate::traffic::TrafficCounts>,
    /// How long the shell spent in the core (filled in by the shell: the core reads no
    /// clock).
    pub timings: Option<CoreTimings>,
}

/// Time spent in the core, measured by the shell around its calls: the core is sans-IO
/// and reads no clock of its own. Cheap to clone (the histograms are shared).
#[derive(Clone, Debug)]
pub struct CoreTimings {
    /// Seconds the core took over one received UPDATE (parsing, import policy, decision;
    /// not the encoding of what it sends on, which is done later per update group).
    pub update: prometheus_client::metrics::histogram::Histogram,
    /// Seconds the core took over one batch of session events (up to 4096 taken at
    /// once, and a single one when the shell woke for it).
    pub batch: prometheus_client::metrics::histogram::Histogram,
}

impl Default for CoreTimings {
    fn default() -> Self {
        use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
        Self {
            // 10 µs to 0.65 s, by fours.
            update: Histogram::new(exponential_buckets(1e-5, 4.0, 9)),
            // 10 µs to 2.6 s, by fours.
            batch: Histogram::new(exponential_buckets(1e-5, 4.0, 10)),
        }
    }
}

/// Graceful restart recovery (RFC 4724 §4.1, we restart) still under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Configured peers whose End-of-RIB (in every family of their session) is not in.
    pub waiting: usize,
    /// Seconds until the deferral ends whatever arrived.
    pub remaining_s: u64,
    /// The whole deferral, in seconds (the graceful restart time).
    pub wait_s: u64,
}

impl super::core::Core {
    /// Every peer's status, by address. `queued` reads a peer's unwritten UPDATE bytes.
    pub(crate) fn statuses(
        &self,
        now: std::time::Instant,
        queued: &dyn Fn(IpAddr) -> usize,
    ) -> Vec<PeerStatus> {
        let mut v: Vec<PeerStatus> = self
            .peers
            .values()
            .map(|p| PeerStatus {
                address: p.address(),
                interface: p.settings.interface.clone(),
                asn: p.settings.asn,
                group: p.settings.group.clone(),
                state: p.session.state.into(),
                uptime_s: p
                    .session
                    .established_at
                    .map(|t| now.saturating_duration_since(t).as_secs()),
                prefixes_received: p.counters.prefixes_received,
                prefixes_accepted: self.rib.adj_rib_in_len(p.id) as u64,
                prefixes_sent: p.counters.prefixes_sent,
                updates_received: p.counters.updates_received,
                updates_sent: p.counters.updates_sent,
                queued_bytes: queued(p.address()) as u64,
                since_s: now.saturating_duration_since(p.session.since).as_secs(),
                age_s: now.saturating_duration_since(p.history.added_at).as_secs(),
                last_error: if p.bfd.is_some_and(|b| b.holding) {
                    Some("waiting for BFD to come up (bfd.strict)".to_owned())
                } else {
                    p.history.last_error.clone()
                },
                last_notification_sent: p.history.last_notification_sent.clone(),
                last_notification_received: p.history.last_notification_received.clone(),
                graceful_restart_pending: self.gr.helping(p.address()),
                dynamic: p.dynamic,
                flaps: p.history.flaps,
                bfd: p.bfd.map(|b| b.state),
                down_reason: p
                    .why
                    .down_reason(now, p.session.state, &p.settings, &self.md5),
            })
            .collect();
        v.sort_by_key(|p| p.address);
        v
    }

    /// Every peer's status and the RIB's sizes.
    pub(crate) fn snapshot(
        &self,
        now: std::time::Instant,
        queued: &dyn Fn(IpAddr) -> usize,
    ) -> Snapshot {
        Snapshot {
            local_as: self.config.speaker.asn,
            router_id: self.config.speaker.router_id,
            peers: self.statuses(now, queued),
            rib: self.rib.stats(),
            // An Established session has no error to tell (as BIRD clears it).
            last_down: self
                .peers
                .values()
                .filter(|p| p.session.state != bgp_fsm::State::Established)
                .filter_map(|p| Some((p.address(), p.history.last_down.clone()?)))
                .collect(),
            traffic: std::collections::BTreeMap::new(),
            timings: None,
            recovery: self.gr.recovery(self.config.peers.keys().copied()).map(
                |(waiting, until)| Recovery {
                    waiting,
                    remaining_s: until.saturating_duration_since(now).as_secs(),
                    wait_s: self
                        .config
                        .speaker
                        .graceful_restart
                        .map_or(super::core::DEFAULT_RESTART_TIME, u64::from),
                },
            ),
        }
    }
}
