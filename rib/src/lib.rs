//! Adj-RIB-In, Loc-RIB, Adj-RIB-Out, the decision process and route reflection for a BGP-4
//! speaker (RFC 4271 §3.2, §9; RFC 4456; RFC 7911; RFC 4724 helper), sized for a million
//! routes and hundreds of peers.
//!
//! The crate is pure: no I/O, no clock, no randomness, no async runtime. Received UPDATEs
//! come in as checked [`bgp_wire::update::UpdateView`]s ([`Rib::apply_update`]); outgoing
//! UPDATEs leave as encoded [`bytes::Bytes`] per update group when the caller asks
//! ([`Rib::drain_group`]); time-driven events (the graceful-restart stale timer) are the
//! caller's calls ([`Rib::stale_timer_expired`]). The same calls in the same order give the
//! same bytes.
//!
//! Layout, by concern:
//! * [`attrs`]: interned attribute sets, shared by `Arc`.
//! * `adj_in`: per-peer route keys (prefix, ADD-PATH path id).
//! * `loc`: one destination per prefix with its paths in decision order.
//! * [`best`]: the decision process, with the reason every other path lost or is
//!   ineligible.
//! * `reflect`: reflection rules and outgoing attributes; `adj_out` and `group`: update
//!   groups, their Adj-RIB-Out and encoding; [`addpath`]: ADD-PATH send modes and ids.
//! * [`policy`]: import and export policy; `reconfig`: policy changes without a reset.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addpath;
mod adj_in;
mod adj_out;
pub mod attrs;
pub mod best;
mod dirty;
mod fx;
mod gr;
mod group;
mod loc;
mod output;
pub mod peer;
pub mod policy;
pub mod query;
mod reconfig;
mod reflect;
mod rib;
mod update;

use std::net::Ipv4Addr;

pub use addpath::AddPathMode;
pub use attrs::{AttrSet, Attrs};
pub use best::{AllReachable, Criterion, Ineligible, NextHopResolver, PathStatus};
pub use group::{Audience, GroupId, Outbound};
pub use output::{
    BestChange, BestRoute, Explanation, PathReport, PrefixPaths, RibStats, StoredPath,
};
pub use peer::{LocalAddrs, MaxPrefix, NextHopMode, PeerConfig, PeerId, PeerKind, Session};
pub use policy::{Matchable, Policy};
pub use query::{Cursor, FamilyCounts, InRoute, InView, OutRoute, Page, PrefixQuery, RouteFilter};
pub use reconfig::{NeedsReset, Reconfigured};
pub use rib::Rib;
pub use update::{Applied, Signal};

/// Speaker-wide settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RibConfig {
    /// Our AS.
    pub local_as: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Our cluster ID as a reflector (RFC 4456 §7); the router ID when `None`. Peers may
    /// override it ([`PeerConfig::cluster_id`]).
    pub cluster_id: Option<Ipv4Addr>,
    /// Reflect routes from clients to other clients (RFC 4456 §8); off when the clients
    /// are fully meshed.
    pub client_to_client: bool,
    /// Compare MED between paths from different neighbour ASes (RFC 4271 §9.1.2.2 c).
    pub always_compare_med: bool,
    /// Treat a missing MED as the worst value instead of 0.
    pub missing_med_worst: bool,
    /// LOCAL_PREF assumed for paths without one and sent to iBGP peers for them
    /// (RFC 4271 §5.1.5).
    pub default_local_pref: u32,
    /// Keep a stream of best-path changes for a FIB programmer ([`Rib::poll_best_change`]).
    pub track_best_changes: bool,
}

impl RibConfig {
    /// A speaker in `local_as` with identifier `router_id` and default options.
    pub fn new(local_as: u32, router_id: Ipv4Addr) -> Self {
        Self {
            local_as,
            router_id,
            cluster_id: None,
            client_to_client: true,
            always_compare_med: false,
            missing_med_worst: false,
            default_local_pref: 100,
            track_best_changes: false,
        }
    }

    /// The cluster ID in force for the speaker.
    pub fn cluster_id(&self) -> Ipv4Addr {
        self.cluster_id.unwrap_or(self.router_id)
    }
}
