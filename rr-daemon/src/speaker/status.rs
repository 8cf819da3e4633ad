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
    /// The peer's `description` from the configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `false` while the peer is administratively down (`ctl disable`, `enabled =
    /// false`).
    #[serde(default = "enabled_default")]
    pub enabled: bool,
}

fn enabled_default() -> bool {
    true
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

/// A page of the Loc-RIB in prefix order: address family (IPv4 first), then address, then
/// prefix length.
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
    /// once, or up to 16 MiB of UPDATEs, an event carrying those of one read; a single
    /// one when the shell woke for it).
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
                down_reason: match &p.admin_down {
                    Some(a) if p.session.state != bgp_fsm::State::Established => {
                        Some(super::DownReason {
                            reason: super::Reason::AdminDown,
                            message: format!(
                                "{}: `ctl enable {}` brings it back",
                                a.note,
                                p.address()
                            ),
                            since_s: now.saturating_duration_since(a.since).as_secs(),
                            next_try_in_s: None,
                            notification_sent: p.history.last_notification_sent.clone(),
                            notification_received: None,
                        })
                    }
                    _ => p
                        .why
                        .down_reason(now, p.session.state, &p.settings, &self.md5),
                },
                description: p.settings.description.clone(),
                enabled: p.admin_down.is_none(),
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

/// A NOTIFICATION as `ctl neighbor` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationInfo {
    /// Error code.
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
    /// The code's name (`Cease`).
    pub code_name: String,
    /// The subcode's name (`Administrative Shutdown`), when it has one.
    pub subcode_name: Option<String>,
    /// The shutdown communication (RFC 9003) of a Cease / Administrative Shutdown or
    /// Reset, when it carries a valid one.
    pub message: Option<String>,
    /// The data, in hex (empty when there is none).
    pub data: String,
    /// All of it in one line, as the logs write it.
    pub text: String,
    /// Seconds since it was sent or received.
    pub age_s: u64,
}

impl NotificationInfo {
    fn new(n: &bgp_wire::Notification, at: std::time::Instant, now: std::time::Instant) -> Self {
        Self {
            code: n.code.0,
            subcode: n.subcode,
            code_name: n.code.to_string(),
            subcode_name: n.subcode_name().map(str::to_owned),
            message: n.shutdown_communication().map(str::to_owned),
            data: n.data.iter().fold(String::new(), |mut s, b| {
                use std::fmt::Write as _;
                let _ = write!(s, "{b:02x}");
                s
            }),
            text: n.to_string(),
            age_s: now.saturating_duration_since(at).as_secs(),
        }
    }
}

/// A peer's routes of one family, counted (`ctl neighbor`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyPrefixes {
    /// The family (`ipv4-unicast`).
    pub family: String,
    /// Routes held from the peer (with soft-reconfiguration inbound, those the import
    /// policy rejected too).
    pub received: u64,
    /// Of those, the ones let in by the import policy and usable.
    pub accepted: u64,
    /// Of those, the ones that are the best path of their prefix.
    pub best: u64,
    /// Routes sent to the peer: its Adj-RIB-Out.
    pub advertised: u64,
}

/// Graceful restart (RFC 4724) with one peer (`ctl neighbor`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GracefulRestartInfo {
    /// Both sides sent the capability on the current (or last) session.
    pub negotiated: bool,
    /// The restart time the peer advertised, if it sent the capability.
    pub peer_restart_time: Option<u16>,
    /// `helping` while the peer restarts and its routes are kept as stale, else `none`.
    pub state: String,
    /// Routes of the peer kept as stale now.
    pub stale_routes: u64,
}

/// One peer in detail: `GET /v1/peers/{address}` and `ctl neighbor`. Every field of
/// [`PeerStatus`], and what the session negotiated. While the session is not
/// Established, the session fields (`router_id` to `families`) describe the last session
/// that was, and are `null` (or empty) when none ever was.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerDetail {
    /// What `GET /v1/peers` says of the peer.
    #[serde(flatten)]
    pub status: PeerStatus,
    /// The peer's BGP identifier.
    pub router_id: Option<Ipv4Addr>,
    /// The AS the peer's OPEN gave.
    pub peer_asn: Option<u32>,
    /// The hold time in use, in seconds (the smaller of both OPENs'; 0: none).
    pub hold_time: Option<u16>,
    /// The keepalive interval in use, in seconds.
    pub keepalive_time: Option<u16>,
    /// Our address on the connection.
    pub local_address: Option<IpAddr>,
    /// Our TCP port on the connection (179 when the peer connected to us).
    pub local_port: Option<u16>,
    /// The peer's TCP port on the connection.
    pub remote_port: Option<u16>,
    /// Negotiated capabilities, by name (`four-octet-as`, `route-refresh`,
    /// `graceful-restart`, `add-path-receive ipv4-unicast`, ...).
    pub capabilities: Vec<String>,
    /// Negotiated families (`ipv4-unicast`, `ipv6-unicast`).
    pub families: Vec<String>,
    /// Routes per family: received, accepted, best, advertised.
    pub prefixes: Vec<FamilyPrefixes>,
    /// Seconds since the session entered its current state (as `since_s`).
    pub last_state_change_s: u64,
    /// Seconds since the session was last Established: 0 while it is, `null` when it
    /// never was.
    pub last_up_s: Option<u64>,
    /// The last NOTIFICATION we sent, in detail.
    pub notification_sent: Option<NotificationInfo>,
    /// The last NOTIFICATION the peer sent, in detail (with its RFC 9003 message).
    pub notification_received: Option<NotificationInfo>,
    /// Graceful restart with the peer.
    pub graceful_restart: GracefulRestartInfo,
    /// Import keeps rejected routes (`soft_reconfiguration_inbound`): `ctl routes
    /// --peer ADDRESS --in --received` works.
    pub soft_reconfiguration_inbound: bool,
}

/// Which table of a peer [`super::Speaker::peer_routes`] lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Adj-RIB-In: what the peer sent.
    In,
    /// Adj-RIB-Out: what we sent the peer.
    Out,
}

/// A query of one peer's routes.
#[derive(Clone, Debug)]
pub struct PeerRoutesQuery {
    /// The peer.
    pub address: IpAddr,
    /// Which table.
    pub dir: Direction,
    /// With [`Direction::In`]: the routes as received, those the import policy rejected
    /// included (needs `soft_reconfiguration_inbound`); else after import policy.
    pub received: bool,
    /// What to keep.
    pub filter: rib::RouteFilter,
    /// Where the page starts.
    pub cursor: rib::Cursor,
    /// Routes to skip from `cursor` on (paging by offset, which costs the skipped routes).
    pub offset: usize,
    /// Routes per page.
    pub limit: usize,
}

/// A route of a peer's table.
#[derive(Clone, Debug)]
pub enum PeerRoute {
    /// Adj-RIB-In.
    In(rib::InRoute),
    /// Adj-RIB-Out, with the address of the peer the route came from (`None` for our
    /// own).
    Out {
        /// The route as sent.
        route: rib::OutRoute,
        /// Where it came from.
        from: Option<IpAddr>,
    },
}

/// A page of a peer's table.
#[derive(Clone, Debug)]
pub struct PeerRoutesPage {
    /// The routes, in the RIB's slot order.
    pub routes: Vec<PeerRoute>,
    /// Where the next page starts, if the listing goes on.
    pub next: Option<rib::Cursor>,
}

/// Why a peer's routes cannot be listed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerRoutesError {
    /// No peer has the address.
    #[error("no peer {0}")]
    NoPeer(IpAddr),
    /// Routes as received were asked for, and import does not keep them.
    #[error(
        "peer {0}: routes as received (before import policy) are kept only with \
         soft_reconfiguration_inbound = true; without it --in lists them after import policy"
    )]
    NotKept(IpAddr),
}

impl super::core::Core {
    /// One peer in detail.
    pub(crate) fn peer_detail(
        &self,
        now: std::time::Instant,
        address: IpAddr,
        queued: &dyn Fn(IpAddr) -> usize,
    ) -> Option<PeerDetail> {
        let p = self.peers.get(&address)?;
        let status = self
            .statuses(now, queued)
            .into_iter()
            .find(|s| s.address == address)?;
        let link = p.history.link.as_deref();
        let up = p.session.state == bgp_fsm::State::Established;
        let counts = self.rib.peer_counts(p.id);
        let prefixes = bgp_wire::Family::ALL
            .iter()
            .zip(counts)
            .filter(|(f, c)| {
                link.is_some_and(|l| l.families.contains(f)) || c.received > 0 || c.advertised > 0
            })
            .map(|(f, c)| FamilyPrefixes {
                family: f.to_string(),
                received: c.received as u64,
                accepted: c.accepted as u64,
                best: c.best as u64,
                advertised: c.advertised as u64,
            })
            .collect();
        let helping = self.gr.helping(address);
        Some(PeerDetail {
            router_id: link.map(|l| l.router_id),
            peer_asn: link.map(|l| l.peer_asn),
            hold_time: link.map(|l| l.hold_time),
            keepalive_time: link.map(|l| l.keepalive_time),
            local_address: link.and_then(|l| l.local).map(|a| a.ip()),
            local_port: link.and_then(|l| l.local).map(|a| a.port()),
            remote_port: link.and_then(|l| l.remote).map(|a| a.port()),
            capabilities: link.map(|l| l.capabilities.clone()).unwrap_or_default(),
            families: link
                .map(|l| l.families.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
            prefixes,
            last_state_change_s: status.since_s,
            last_up_s: if up {
                Some(0)
            } else {
                p.history
                    .last_up
                    .map(|t| now.saturating_duration_since(t).as_secs())
            },
            notification_sent: p
                .history
                .notification_sent
                .as_ref()
                .map(|(n, at)| NotificationInfo::new(n, *at, now)),
            notification_received: p
                .history
                .notification_received
                .as_ref()
                .map(|(n, at)| NotificationInfo::new(n, *at, now)),
            graceful_restart: GracefulRestartInfo {
                negotiated: link.is_some_and(|l| l.graceful_restart),
                peer_restart_time: p.session.peer_restart_time,
                state: if helping { "helping" } else { "none" }.to_owned(),
                stale_routes: self.rib.stale_count(p.id) as u64,
            },
            soft_reconfiguration_inbound: p.settings.soft_reconfiguration_inbound,
            status,
        })
    }

    /// A page of one peer's Adj-RIB-In or Adj-RIB-Out.
    pub(crate) fn peer_routes(
        &self,
        q: &PeerRoutesQuery,
    ) -> Result<PeerRoutesPage, PeerRoutesError> {
        let p = self
            .peers
            .get(&q.address)
            .ok_or(PeerRoutesError::NoPeer(q.address))?;
        if q.dir == Direction::In && q.received && !p.settings.soft_reconfiguration_inbound {
            return Err(PeerRoutesError::NotKept(q.address));
        }
        let view = if q.received {
            rib::InView::Received
        } else {
            rib::InView::Accepted
        };
        let page = |cursor: rib::Cursor, limit: usize| -> rib::Page<PeerRoute> {
            match q.dir {
                Direction::In => {
                    let pg = self
                        .rib
                        .adj_rib_in_page(p.id, view, &q.filter, cursor, limit)
                        .unwrap_or(rib::Page {
                            items: Vec::new(),
                            next: None,
                        });
                    rib::Page {
                        items: pg.items.into_iter().map(PeerRoute::In).collect(),
                        next: pg.next,
                    }
                }
                Direction::Out => {
                    // A peer that is down has been sent nothing that still holds.
                    let pg = self
                        .rib
                        .adj_rib_out_page(p.id, &q.filter, cursor, limit)
                        .unwrap_or(rib::Page {
                            items: Vec::new(),
                            next: None,
                        });
                    rib::Page {
                        items: pg
                            .items
                            .into_iter()
                            .map(|route| PeerRoute::Out {
                                from: self.source(route.source),
                                route,
                            })
                            .collect(),
                        next: pg.next,
                    }
                }
            }
        };
        // Paging by offset: skip in pages, never holding more than one.
        let mut cursor = q.cursor;
        let mut skip = q.offset;
        let mut head = Vec::new();
        while skip > 0 {
            let pg = page(cursor, skip.min(10_000));
            let n = pg.items.len();
            if n > skip {
                head.extend(pg.items.into_iter().skip(skip));
            }
            skip = skip.saturating_sub(n);
            match pg.next {
                Some(c) => cursor = c,
                None => {
                    return Ok(PeerRoutesPage {
                        routes: head,
                        next: None,
                    });
                }
            }
            if !head.is_empty() {
                break;
            }
        }
        let limit = q.limit.max(1);
        if head.len() >= limit {
            // Only an ADD-PATH prefix with more paths than the page cut in the middle.
            return Ok(PeerRoutesPage {
                routes: head,
                next: Some(cursor),
            });
        }
        let pg = page(cursor, limit - head.len());
        head.extend(pg.items);
        Ok(PeerRoutesPage {
            routes: head,
            next: pg.next,
        })
    }

    /// The longest match of `address` in the Loc-RIB, explained.
    pub(crate) fn lookup(&self, address: IpAddr) -> Option<ExplainedRoute> {
        self.explain(&self.rib.longest_match(address)?)
    }
}
