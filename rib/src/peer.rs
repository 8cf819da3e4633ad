//! Peers as the RIB sees them: configuration, the parameters of an established session,
//! and the facts the decision process and export read per route.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bgp_wire::{Family, SessionCtx};

use crate::addpath::AddPathMode;
use crate::policy::Policy;

/// A peer of this RIB, from [`crate::Rib::add_peer`]. [`PeerId::LOCAL`] stands for routes
/// this speaker originates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub(crate) u32);

impl PeerId {
    /// Locally originated routes ([`crate::Rib::originate`]).
    pub const LOCAL: Self = Self(0);

    /// The index, for tables kept by the caller.
    pub const fn index(self) -> u32 {
        self.0
    }
}

/// How the next hop is set on export (RFC 4271 §5.1.3, RFC 4456 §10).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NextHopMode {
    /// To eBGP peers, the session's local address; to iBGP peers, unchanged (a reflector
    /// does not change the next hop of reflected routes, RFC 4456 §10).
    #[default]
    Auto,
    /// Also the local address towards iBGP peers for routes learned from eBGP or originated
    /// here ("next-hop-self"); reflected routes keep theirs.
    SelfExceptReflected,
    /// The local address on every route, reflected ones included ("next-hop-self force",
    /// Calico's `nextHopMode: Self`).
    SelfAll,
    /// Never changed, even towards eBGP peers (BIRD's `next hop keep`).
    Keep,
}

/// The max-prefix limit of a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaxPrefix {
    /// The most routes the peer may send.
    pub limit: u32,
    /// Only report crossing the limit; the session stays up.
    pub warn_only: bool,
}

/// What the RIB needs to know of a configured peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's address; the last tie-break of the decision process (RFC 4271 §9.1.2.2 g).
    pub address: IpAddr,
    /// The peer's AS; equal to the local AS makes the session internal.
    pub remote_as: u32,
    /// The peer is a route reflector client (RFC 4456 §2).
    pub rr_client: bool,
    /// The cluster ID used towards this peer instead of the speaker's: one reflector
    /// serving two racks under two cluster IDs.
    pub cluster_id: Option<Ipv4Addr>,
    /// For a client: whether routes from the other clients of its cluster are reflected
    /// to it (RFC 4456 §8); `None` for [`RibConfig::client_to_client`](crate::RibConfig).
    /// Off where the cluster's clients are fully meshed. Clients of another cluster of
    /// the same reflector still get them.
    pub client_to_client: Option<bool>,
    /// Next-hop handling on export.
    pub next_hop: NextHopMode,
    /// Import policy. `None` accepts everything from iBGP and nothing from eBGP (RFC 8212).
    pub import: Option<Arc<Policy>>,
    /// Export policy. `None` sends everything to iBGP and nothing to eBGP (RFC 8212).
    pub export: Option<Arc<Policy>>,
    /// Max-prefix limit.
    pub max_prefix: Option<MaxPrefix>,
    /// ADD-PATH send mode per family (RFC 7911), effective where the session negotiated
    /// sending path identifiers.
    pub add_path_send: [Option<AddPathMode>; 2],
    /// We act as graceful restart helper (RFC 4724) for this peer: on a drop its routes
    /// are kept, marked stale.
    pub graceful_restart: bool,
    /// Keep the routes the import policy rejects, listed as
    /// [`crate::Ineligible::RejectedByImport`] (FRR's soft-reconfiguration inbound). Off,
    /// a rejected route is dropped as it arrives (and replaces, as an implicit withdrawal,
    /// what the peer sent before for the prefix): rejected routes cost no memory. On, the
    /// received attributes of routes the import policy modified are kept too (one entry
    /// per such route), so that the peer's routes can be listed as received
    /// ([`crate::InView::Received`]).
    pub soft_reconfiguration_inbound: bool,
    /// The AS this speaker presents to the peer instead of
    /// [`RibConfig::local_as`](crate::RibConfig): whether the session is internal, the AS
    /// prepended on export to an external peer, and the AS whose presence in a received
    /// AS_PATH is a loop. `None`: the speaker's.
    pub local_as: Option<u32>,
    /// How many times our AS (the session's local AS, or the speaker's) may appear in
    /// the AS_PATH of a route from an external peer before it is a loop (BIRD's `allow
    /// local as N`, Calico's `numAllowedLocalASNumbers`): 0, the default, refuses a path
    /// with our AS once (RFC 4271 §9.1.2).
    pub allow_local_as: u8,
}

impl PeerConfig {
    /// A peer at `address` in `remote_as`, with every option at its default.
    pub fn new(address: IpAddr, remote_as: u32) -> Self {
        Self {
            address,
            remote_as,
            rr_client: false,
            cluster_id: None,
            client_to_client: None,
            next_hop: NextHopMode::Auto,
            import: None,
            export: None,
            max_prefix: None,
            add_path_send: [None, None],
            graceful_restart: false,
            soft_reconfiguration_inbound: false,
            local_as: None,
            allow_local_as: 0,
        }
    }

    /// The ADD-PATH send mode for `family`.
    pub fn add_path(&self, family: Family) -> Option<AddPathMode> {
        self.add_path_send[family_index(family)]
    }
}

/// The index of a family in per-family arrays.
pub(crate) const fn family_index(f: Family) -> usize {
    match f {
        Family::Ipv4Unicast => 0,
        Family::Ipv6Unicast => 1,
    }
}

/// Addresses this speaker uses as next hop towards a peer (RFC 2545 §3 for IPv6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LocalAddrs {
    /// IPv4 address.
    pub v4: Option<Ipv4Addr>,
    /// IPv6 global address.
    pub v6: Option<Ipv6Addr>,
    /// IPv6 link-local address, sent after the global one on a shared link.
    pub link_local: Option<Ipv6Addr>,
}

impl From<IpAddr> for LocalAddrs {
    fn from(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(v4) => Self {
                v4: Some(v4),
                ..Self::default()
            },
            IpAddr::V6(v6) => Self {
                v6: Some(v6),
                ..Self::default()
            },
        }
    }
}

/// An established session, as the session layer reports it at peer-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    /// What was negotiated.
    pub ctx: SessionCtx,
    /// The peer's BGP identifier (from its OPEN).
    pub router_id: Ipv4Addr,
    /// Our addresses on this session, for next-hop-self and eBGP export.
    pub local: LocalAddrs,
}

/// The role of a route's source, for reflection (RFC 4456 §8) and the decision process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerKind {
    /// Originated by this speaker.
    Local,
    /// An external peer.
    Ebgp,
    /// An internal peer that is a reflector client.
    Client,
    /// An internal peer that is not a client.
    NonClient,
}

impl PeerKind {
    /// Whether the peer is internal.
    pub const fn is_ibgp(self) -> bool {
        matches!(self, Self::Client | Self::NonClient)
    }
}

/// What each route's source contributes to the decision and to export, kept in a dense
/// table indexed by peer so the hot paths need no map lookup.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerFact {
    pub(crate) kind: PeerKind,
    pub(crate) address: IpAddr,
    pub(crate) router_id: Ipv4Addr,
    /// The cluster the peer is in towards us (its own cluster ID, else the speaker's):
    /// what a client's routes carry first in CLUSTER_LIST when reflected.
    pub(crate) cluster_id: Ipv4Addr,
    /// The update group the peer is in while established, else `NO_GROUP`.
    pub(crate) group: u32,
}

/// `PeerFact::group` of a peer in no group.
pub(crate) const NO_GROUP: u32 = u32::MAX;
