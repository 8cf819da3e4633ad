//! What a route becomes on its way out: route reflection (RFC 4456 §8), the iBGP/eBGP
//! attribute rules (RFC 4271 §5.1) and the next hop (RFC 4271 §5.1.3).
//!
//! The result depends only on the route's attributes, its source's role and the group it
//! is sent to, which is what lets an update group compute it once for all its members and
//! cache it per attribute set.

use bgp_wire::Family;
use bgp_wire::attr::{Community, NextHop};

use crate::RibConfig;
use crate::attrs::{AttrSet, Attrs};
use crate::group::GroupKey;
use crate::peer::{NextHopMode, PeerFact, PeerKind};

/// The attributes a route from `src` is sent with to the group `key`, or `None` when the
/// group must not receive it.
pub(crate) fn transform(
    cfg: &RibConfig,
    key: &GroupKey,
    src: &PeerFact,
    a: &AttrSet,
    family: Family,
) -> Option<Attrs> {
    Some(plan(cfg, key, src, a, family)?.apply(a))
}

/// What changes on a route's attributes on the way to a group: the outcome of the rules
/// above, read by [`Outgoing::apply`] and by the encoder that writes the common case
/// straight from the set ([`crate::adj_out::encode_direct`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Outgoing {
    /// To an external peer: LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST dropped, our AS
    /// prepended, confederation segments dropped.
    pub(crate) to_ebgp: Option<ToEbgp>,
    /// LOCAL_PREF to an internal peer.
    pub(crate) local_pref: u32,
    /// ORIGINATOR_ID when reflected (the set's own, or the source's router ID).
    pub(crate) originator_id: Option<std::net::Ipv4Addr>,
    /// Cluster IDs put in front of CLUSTER_LIST when reflected, the first one in front:
    /// the cluster entered, then the one left.
    pub(crate) clusters: [Option<std::net::Ipv4Addr>; 2],
    /// Our next hop instead of the set's.
    pub(crate) next_hop: Option<NextHop>,
}

/// See [`Outgoing::to_ebgp`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ToEbgp {
    /// Our AS, prepended once.
    pub(crate) local_as: u32,
    /// MED is kept (a local route's), not dropped.
    pub(crate) keep_med: bool,
}

/// What a route from `src` becomes towards the group `key`, or `None` when the group must
/// not receive it.
pub(crate) fn plan(
    cfg: &RibConfig,
    key: &GroupKey,
    src: &PeerFact,
    a: &AttrSet,
    family: Family,
) -> Option<Outgoing> {
    // RFC 1997: NO_ADVERTISE goes to no peer, NO_EXPORT to no external peer.
    if a.has_community(Community::NO_ADVERTISE) {
        return None;
    }
    let to_ebgp = key.kind == PeerKind::Ebgp;
    let reflect = match (src.kind, key.kind) {
        (_, PeerKind::Ebgp | PeerKind::Local) => {
            if a.has_community(Community::NO_EXPORT)
                || a.has_community(Community::NO_EXPORT_SUBCONFED)
            {
                return None;
            }
            false
        }
        (PeerKind::Local | PeerKind::Ebgp, _) => false,
        // RFC 4456 §8: from a client, to clients (unless client-to-client reflection is
        // off for the cluster, its clients being fully meshed) and to non-clients.
        (PeerKind::Client, PeerKind::Client) => {
            if src.cluster_id == key.cluster_id && !key.client_to_client {
                return None;
            }
            true
        }
        (PeerKind::Client, PeerKind::NonClient) => true,
        // From a non-client, to clients only; non-client to non-client is the iBGP split
        // horizon of RFC 4271 §9.2 that reflection exists to relax.
        (PeerKind::NonClient, PeerKind::Client) => true,
        (PeerKind::NonClient, PeerKind::NonClient) => return None,
    };
    // A reflector serving several clusters (a cluster ID per peer group) acts as one
    // reflector per cluster: a client's route leaves the client's cluster, and enters
    // the receiving client's cluster when that is another one; each passage puts its
    // cluster ID in CLUSTER_LIST, as two reflectors in a row would.
    let leaves = (reflect && src.kind == PeerKind::Client).then_some(src.cluster_id);
    let enters = (reflect && key.kind == PeerKind::Client && leaves != Some(key.cluster_id))
        .then_some(key.cluster_id);
    // RFC 4456 §8: never back into a cluster the route already passed.
    if [leaves, enters]
        .iter()
        .flatten()
        .any(|c| a.cluster_list().contains(c))
    {
        return None;
    }
    let reflected = reflect && !to_ebgp;
    let no_next_hop = a.next_hop().is_none();
    let set_self = no_next_hop
        || match key.next_hop {
            NextHopMode::Keep => false,
            NextHopMode::Auto => to_ebgp,
            NextHopMode::SelfExceptReflected => !reflect,
            NextHopMode::SelfAll => true,
        };
    let next_hop = if set_self {
        Some(local_next_hop(key, family)?)
    } else {
        None
    };
    Some(Outgoing {
        to_ebgp: to_ebgp.then_some(ToEbgp {
            local_as: key.local_as,
            keep_med: src.kind == PeerKind::Local,
        }),
        local_pref: a.local_pref().unwrap_or(cfg.default_local_pref),
        originator_id: reflected.then(|| a.originator_id().unwrap_or(src.router_id)),
        clusters: if reflected {
            [enters, leaves]
        } else {
            [None, None]
        },
        next_hop,
    })
}

impl Outgoing {
    /// The ORIGINATOR_ID sent with `a`: ours for a reflected route, else the set's own,
    /// none to an external peer.
    pub(crate) fn sent_originator(&self, a: &AttrSet) -> Option<std::net::Ipv4Addr> {
        match self.to_ebgp {
            Some(_) => None,
            None => self.originator_id.or_else(|| a.originator_id()),
        }
    }

    /// The attributes sent for `a`.
    pub(crate) fn apply(&self, a: &AttrSet) -> Attrs {
        let mut out = a.to_attrs();
        if let Some(e) = self.to_ebgp {
            // RFC 4271 §5.1.5, RFC 4456 §8: LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST
            // stay inside the AS. §5.1.4: a MED learned from a neighbouring AS is not
            // passed to another; ours (local routes, or set by export policy after this)
            // is.
            out.local_pref = None;
            out.cluster_list.clear();
            if !e.keep_med {
                out.med = None;
            }
            // RFC 5065 §5.3: confederation segments never leave the confederation (and
            // we are in none, so they only come from a misconfigured internal peer).
            out.as_path.segments.retain(|s| !matches!(s.ty.0, 3 | 4));
            // §5.1.2: prepend our AS towards an external peer.
            out.as_path.prepend(e.local_as, 1);
        } else {
            out.local_pref = Some(self.local_pref);
            // RFC 4456 §8: CLUSTER_LIST gets our cluster ID in front.
            for (i, c) in self.clusters.iter().flatten().enumerate() {
                out.cluster_list.insert(i, *c);
            }
        }
        // RFC 4456 §8: ORIGINATOR_ID names the route's originator inside the AS and is
        // set only once.
        out.originator_id = self.sent_originator(a);
        if let Some(nh) = self.next_hop {
            out.next_hop = Some(nh);
        }
        out
    }
}

/// Our next hop for `family` towards the group: the session's address of the family (with
/// the link-local one for IPv6, RFC 2545 §3), or an IPv6 one for IPv4 routes where RFC 8950
/// was negotiated.
pub(crate) fn local_next_hop(key: &GroupKey, family: Family) -> Option<NextHop> {
    let v6 = key.local.v6.map(|global| NextHop::V6 {
        global,
        link_local: key.local.link_local,
    });
    match family {
        Family::Ipv4Unicast => match key.local.v4 {
            Some(v4) => Some(NextHop::V4(v4)),
            None if key.extended_next_hop.contains(family) => v6,
            None => None,
        },
        Family::Ipv6Unicast => v6,
    }
}
