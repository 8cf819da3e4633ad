//! What the RIB gives out: UPDATEs per update group, the best-path change stream for a FIB
//! programmer, and views for operators (the decision explained per prefix).

use std::net::IpAddr;
use std::sync::Arc;

use bgp_wire::attr::NextHop;
use bgp_wire::nlri::Nlri;
use ipnet::IpNet;

use crate::attrs::AttrSet;
use crate::best::{Decider, PathStatus};
use crate::group::{DrainCtx, GroupId, Outbound};
use crate::peer::PeerId;
use crate::rib::Rib;

/// A change of best path, for a FIB programmer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BestChange {
    /// The prefix.
    pub prefix: IpNet,
    /// Next hops of the best path and of the paths equal to it through the MED step
    /// (ECMP), deduplicated and sorted; empty when the prefix is gone or the best path is
    /// locally originated.
    pub next_hops: Vec<IpAddr>,
    /// The best path is one this speaker originates: the FIB leaves it to its owner.
    pub local: bool,
    /// The LOCAL_PREF attribute the best path carries as received (after import policy),
    /// `None` when it carries none (an eBGP path), when the prefix is gone, or when the
    /// best path is local. Not the decision's default (`default_local_pref`): a FIB that
    /// maps LOCAL_PREF to a metric (Calico's `krt_metric = 2147483647 - bgp_local_pref`)
    /// applies its rule only to paths where the attribute is defined.
    pub local_pref: Option<u32>,
}

/// The best path of a prefix.
#[derive(Clone, Debug)]
pub struct BestRoute {
    /// Where it came from.
    pub peer: PeerId,
    /// Its received ADD-PATH identifier, if any.
    pub path_id: Option<u32>,
    /// Its attributes.
    pub attrs: Arc<AttrSet>,
}

/// A prefix and its usable paths, best first ([`Rib::paths_page`]).
#[derive(Clone, Debug)]
pub struct PrefixPaths {
    /// The prefix.
    pub prefix: IpNet,
    /// Its usable paths, in decision order.
    pub paths: Vec<StoredPath>,
}

/// One usable path as stored ([`Rib::paths_page`]).
#[derive(Clone, Debug)]
pub struct StoredPath {
    /// Where it came from ([`PeerId::LOCAL`] for our own routes).
    pub peer: PeerId,
    /// Its received ADD-PATH identifier (0 without ADD-PATH).
    pub path_id: u32,
    /// Its attributes, after import policy.
    pub attrs: Arc<AttrSet>,
}

/// One path of a prefix and where it stands.
#[derive(Clone, Debug)]
pub struct PathReport {
    /// Where it came from.
    pub peer: PeerId,
    /// Received ADD-PATH identifier (0 without ADD-PATH).
    pub path_id: u32,
    /// The identifier this speaker sends it under to ADD-PATH peers.
    pub tx_path_id: u32,
    /// Its attributes.
    pub attrs: Arc<AttrSet>,
    /// Kept from a restarting peer (RFC 4724), still eligible.
    pub stale: bool,
    /// Equal to the best through the MED step.
    pub ecmp: bool,
    /// Best, lost (at which step), or ineligible (why).
    pub status: PathStatus,
}

/// Every path of a prefix in decision order, with the reasons.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// The prefix.
    pub prefix: IpNet,
    /// Its paths, the best first.
    pub paths: Vec<PathReport>,
}

/// Sizes, for metrics and for tests of memory release.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RibStats {
    /// Prefixes in the Loc-RIB table (with at least one path or pending output).
    pub prefixes: usize,
    /// Paths over all prefixes.
    pub paths: usize,
    /// Interned attribute sets.
    pub attr_sets: usize,
    /// Encoded outgoing attribute sets over all groups.
    pub out_attr_sets: usize,
    /// Paths advertised over all groups' Adj-RIB-Out.
    pub adj_out_paths: usize,
    /// Update groups.
    pub groups: usize,
    /// Prefixes still to send over all groups: changes waiting, and what is left of first
    /// walks and of late members' catch-ups (those two counted as slots left to visit).
    pub pending: usize,
    /// Peer slots, used and free ([`Rib::peer_slots`]): the most peers configured at
    /// once, not every peer ever configured.
    pub peer_slots: usize,
    /// Of `prefixes`, the IPv6 ones (the others are IPv4).
    pub prefixes_v6: usize,
    /// Of `paths`, those of IPv6 prefixes.
    pub paths_v6: usize,
}

impl Rib {
    /// Encodes up to `budget` prefixes of `group`'s pending changes and returns the
    /// messages in sending order, each with the members it is for. Call when the group's
    /// writers have room; a group that is behind accumulates a set of dirty prefixes, not
    /// messages.
    pub fn drain_group(&mut self, group: GroupId, budget: usize) -> Vec<Outbound> {
        let Some(Some(g)) = self.groups.get_mut(group.0 as usize) else {
            return Vec::new();
        };
        let dc = DrainCtx {
            cfg: &self.cfg,
            facts: &self.facts,
        };
        let out = g.drain(&mut self.loc, &dc, budget);
        for set in g.table.take_released() {
            self.attrs.release(set);
        }
        out
    }

    /// Groups with pending work, in id order.
    pub fn pending_groups(&self) -> Vec<GroupId> {
        self.groups
            .iter()
            .flatten()
            .filter(|g| g.pending() > 0)
            .map(|g| GroupId(g.id))
            .collect()
    }

    /// The group `peer` is in while up.
    pub fn group_of(&self, peer: PeerId) -> Option<GroupId> {
        let g = self.facts.get(peer.0 as usize)?.group;
        self.groups.get(g as usize)?.as_ref().map(|_| GroupId(g))
    }

    /// The members of `group`, sorted.
    pub fn group_members(&self, group: GroupId) -> Vec<PeerId> {
        match self.groups.get(group.0 as usize) {
            Some(Some(g)) => g.members.iter().map(|m| PeerId(*m)).collect(),
            _ => Vec::new(),
        }
    }

    /// How many prefixes have a best-path change waiting for [`Rib::poll_best_change`]:
    /// at most one per prefix, however often it changed.
    pub fn pending_best_changes(&self) -> usize {
        self.fib.as_ref().map_or(0, |f| f.len())
    }

    /// The next best-path change, when [`crate::RibConfig::track_best_changes`] is on.
    /// Changes are coalesced per prefix: a prefix reports its state when polled.
    pub fn poll_best_change(&mut self) -> Option<BestChange> {
        let fib = self.fib.as_mut()?;
        let slot = fib.pop()?;
        let dest = self.loc.dest_mut(slot);
        dest.refs -= 1;
        let local = dest.best().is_some_and(|p| p.peer == PeerId::LOCAL.0);
        let mut next_hops: Vec<IpAddr> = if local {
            Vec::new()
        } else {
            dest.best_paths()
                .filter_map(|p| match p.attrs.next_hop()? {
                    NextHop::V4(a) => Some(IpAddr::V4(a)),
                    // A sender with no global address on the link puts `::` first and
                    // its link-local address second (RFC 2545): forward to that one.
                    NextHop::V6 {
                        global,
                        link_local: Some(ll),
                    } if global.is_unspecified() => Some(IpAddr::V6(ll)),
                    NextHop::V6 { global, .. } => Some(IpAddr::V6(global)),
                })
                .collect()
        };
        next_hops.sort_unstable();
        next_hops.dedup();
        let local_pref = if local {
            None
        } else {
            dest.best().and_then(|p| p.attrs.local_pref())
        };
        let change = BestChange {
            prefix: dest.prefix,
            next_hops,
            local,
            local_pref,
        };
        self.loc.try_free(slot);
        Some(change)
    }

    /// The best path of `prefix`.
    pub fn best(&self, prefix: &IpNet) -> Option<BestRoute> {
        let d = self.loc.dest(self.loc.slot(&prefix.trunc())?);
        let p = d.best()?;
        Some(self.best_route(p))
    }

    fn best_route(&self, p: &crate::loc::Path) -> BestRoute {
        let add_path = self
            .peer(PeerId(p.peer))
            .and_then(|s| s.session)
            .is_some_and(|s| !s.ctx.add_path_rx.is_empty());
        BestRoute {
            peer: PeerId(p.peer),
            path_id: add_path.then_some(p.rx_id),
            attrs: p.attrs.clone(),
        }
    }

    /// The Loc-RIB: each prefix with a usable path and its best path, in slot order.
    pub fn loc_rib(&self) -> impl Iterator<Item = (IpNet, BestRoute)> + '_ {
        self.loc
            .iter()
            .filter_map(|(_, d)| Some((d.prefix, self.best_route(d.best()?))))
    }

    /// `peer`'s Adj-RIB-In, sorted.
    pub fn adj_rib_in(&self, peer: PeerId) -> Vec<(Nlri, Arc<AttrSet>)> {
        let Some(st) = self.peer(peer) else {
            return Vec::new();
        };
        let mut v: Vec<(Nlri, Arc<AttrSet>)> = st
            .adj_in
            .keys()
            .into_iter()
            .filter_map(|(slot, rx)| {
                let d = self.loc.dest(slot);
                let p = d.paths.iter().find(|p| p.peer == peer.0 && p.rx_id == rx)?;
                Some((Nlri::with_path_id(d.prefix, rx), p.attrs.clone()))
            })
            .collect();
        v.sort_by_key(|a| a.0);
        v
    }

    /// The attributes of the path `peer` sent for `prefix` under `path_id` (0 without
    /// ADD-PATH) as stored, after import policy; `None` when there is none (withdrawn, or
    /// rejected). For post-policy monitoring (BMP), prefix by prefix.
    pub fn adj_rib_in_path(
        &self,
        peer: PeerId,
        prefix: &IpNet,
        path_id: u32,
    ) -> Option<Arc<AttrSet>> {
        let d = self.loc.dest(self.loc.slot(&prefix.trunc())?);
        d.paths
            .iter()
            .find(|p| p.peer == peer.0 && p.rx_id == path_id && p.reason.is_none())
            .map(|p| p.attrs.clone())
    }

    /// Up to `limit` prefixes of the Loc-RIB from slot `from` on, each with its usable
    /// paths (every peer's, local ones included) in decision order, best first; and the
    /// slot to go on from, `None` at the end. Slots are stable while a prefix lives, so a
    /// dump taken page by page (MRT) sees every prefix that lived throughout once.
    pub fn paths_page(&self, from: u32, limit: usize) -> (Vec<PrefixPaths>, Option<u32>) {
        let mut out = Vec::with_capacity(limit.min(4096));
        let mut slot = from;
        let end = self.loc.slot_count();
        while slot < end && out.len() < limit {
            if self.loc.is_live(slot) {
                let d = self.loc.dest(slot);
                let paths: Vec<StoredPath> = d
                    .paths
                    .iter()
                    .filter(|p| p.reason.is_none())
                    .map(|p| StoredPath {
                        peer: PeerId(p.peer),
                        path_id: p.rx_id,
                        attrs: p.attrs.clone(),
                    })
                    .collect();
                if !paths.is_empty() {
                    out.push(PrefixPaths {
                        prefix: d.prefix,
                        paths,
                    });
                }
            }
            slot += 1;
        }
        (out, (slot < end).then_some(slot))
    }

    /// How many routes from `peer` the Adj-RIB-In holds (after import policy; stale ones
    /// included).
    pub fn adj_rib_in_len(&self, peer: PeerId) -> usize {
        self.peer(peer).map_or(0, |p| p.adj_in.len())
    }

    /// Every path of `prefix` in decision order, each with why it won, lost or is
    /// ineligible (`rr-daemon ctl route <prefix>`).
    pub fn explain(&self, prefix: &IpNet) -> Option<Explanation> {
        let d = self.loc.dest(self.loc.slot(&prefix.trunc())?);
        if d.paths.is_empty() {
            // Its last path is gone; the slot waits for the update groups to let go.
            return None;
        }
        let decider = Decider::new(&self.facts, self.resolver.as_ref(), &self.cfg, 1);
        let status = decider.explain(&d.paths);
        let paths = d
            .paths
            .iter()
            .zip(status)
            .map(|(p, status)| PathReport {
                peer: PeerId(p.peer),
                path_id: p.rx_id,
                tx_path_id: p.tx_id,
                attrs: p.attrs.clone(),
                stale: p.is_stale(),
                ecmp: p.is_ecmp(),
                status,
            })
            .collect();
        Some(Explanation {
            prefix: d.prefix,
            paths,
        })
    }

    /// Table sizes.
    pub fn stats(&self) -> RibStats {
        let groups = self.groups.iter().flatten();
        let (mut paths, mut prefixes_v6, mut paths_v6) = (0, 0, 0);
        for (_, d) in self.loc.iter() {
            paths += d.paths.len();
            if matches!(d.prefix, IpNet::V6(_)) {
                prefixes_v6 += 1;
                paths_v6 += d.paths.len();
            }
        }
        RibStats {
            prefixes: self.loc.len(),
            paths,
            prefixes_v6,
            paths_v6,
            attr_sets: self.attrs.len(),
            out_attr_sets: groups.clone().map(|g| g.table.len()).sum(),
            adj_out_paths: groups.clone().map(|g| g.out.len()).sum(),
            groups: groups.clone().count(),
            pending: groups.map(|g| g.backlog(self.loc.slot_count())).sum(),
            peer_slots: self.peer_slots(),
        }
    }
}
