//! Queries for operators: one peer's Adj-RIB-In, one update group's (or one member's)
//! Adj-RIB-Out, the Loc-RIB filtered, and longest-prefix match, in pages.
//!
//! Every listing walks Loc-RIB slots in ascending order and pages by a [`Cursor`], the
//! next slot to visit: a page costs the slots it visits (all of them, at worst, for a
//! filter that matches little), never a copy or a sort of the whole table, and the next
//! page starts where the last one stopped instead of skipping an offset again. The order
//! is stable while the table does not change; a prefix added or removed between two
//! pages may be seen or missed, as with any cursor over a live table.
//!
//! An exact prefix or a longest match is one hash lookup per prefix length, not a walk.

use std::fmt;
use std::net::IpAddr;

use bgp_wire::Family;
use bgp_wire::attr::{AsSegmentType, Community, LargeCommunity};
use ipnet::IpNet;

use crate::attrs::{AttrSet, Attrs};
use crate::best::Ineligible;
use crate::loc::{Dest, Path};
use crate::output::BestRoute;
use crate::peer::{PeerId, family_index};
use crate::rib::Rib;

/// Which prefixes a query selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixQuery {
    /// This prefix only.
    Exact(IpNet),
    /// The longest prefix that covers the address (among those the listing holds).
    Longest(IpAddr),
    /// This prefix and every more specific one.
    OrLonger(IpNet),
}

/// What a listing keeps: every condition set must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteFilter {
    /// Routes of this family only.
    pub family: Option<Family>,
    /// Routes of these prefixes only.
    pub prefix: Option<PrefixQuery>,
    /// Routes carrying this community (RFC 1997).
    pub community: Option<Community>,
    /// Routes carrying this large community (RFC 8092).
    pub large_community: Option<LargeCommunity>,
    /// Routes whose AS_PATH holds this AS anywhere (sets included).
    pub as_path_contains: Option<u32>,
    /// Routes whose origin AS (the last AS of a final AS_SEQUENCE) is this one.
    pub origin_as: Option<u32>,
}

impl RouteFilter {
    /// Whether `prefix` passes the family and prefix conditions (a longest match is
    /// decided by the listing, not here: any covering prefix passes).
    pub fn matches_prefix(&self, prefix: &IpNet) -> bool {
        if self.family.is_some_and(|f| f != family_of(prefix)) {
            return false;
        }
        match self.prefix {
            None => true,
            Some(PrefixQuery::Exact(p)) => p.trunc() == *prefix,
            Some(PrefixQuery::Longest(a)) => prefix.contains(&a),
            Some(PrefixQuery::OrLonger(p)) => p.trunc().contains(prefix),
        }
    }

    /// Whether `attrs` pass the attribute conditions.
    pub fn matches_attrs(&self, attrs: &Attrs) -> bool {
        self.community
            .is_none_or(|c| attrs.communities.binary_search(&c).is_ok())
            && self
                .large_community
                .is_none_or(|c| attrs.large_communities.binary_search(&c).is_ok())
            && self
                .as_path_contains
                .is_none_or(|a| attrs.as_path_contains(a))
            && self.origin_as.is_none_or(|a| origin_as(attrs) == Some(a))
    }
}

impl RouteFilter {
    /// [`Self::matches_attrs`] on an interned set, read in place.
    pub fn matches_set(&self, attrs: &AttrSet) -> bool {
        self.community.is_none_or(|c| attrs.has_community(c))
            && self
                .large_community
                .is_none_or(|c| attrs.large_communities().binary_search(&c).is_ok())
            && self
                .as_path_contains
                .is_none_or(|a| attrs.as_path_contains(a))
            && self.origin_as.is_none_or(|a| {
                matches!(attrs.as_path_segments().last(),
                    Some((ty, asns)) if ty == AsSegmentType::AS_SEQUENCE && asns.last() == Some(&a))
            })
    }
}

/// The origin AS of a path: the last AS of its last segment when that is an
/// AS_SEQUENCE; `None` for an empty path (our own AS) or one that ends in a set.
pub fn origin_as(attrs: &Attrs) -> Option<u32> {
    match attrs.as_path.segments.last() {
        Some(s) if s.ty == AsSegmentType::AS_SEQUENCE => s.asns.last().copied(),
        _ => None,
    }
}

fn family_of(prefix: &IpNet) -> Family {
    match prefix {
        IpNet::V4(_) => Family::Ipv4Unicast,
        IpNet::V6(_) => Family::Ipv6Unicast,
    }
}

/// Where a page starts: the next Loc-RIB slot to visit. Written and parsed as a decimal
/// number (`Cursor::default()`, 0, is the start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor(pub u32);

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for Cursor {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

/// One page of a listing.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The entries, in slot order.
    pub items: Vec<T>,
    /// Where the next page starts; `None` when the listing is complete. A page may end
    /// early (never split inside a prefix) and the next one may come back empty.
    pub next: Option<Cursor>,
}

/// Which part of a peer's Adj-RIB-In [`Rib::adj_rib_in_page`] lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InView {
    /// The routes the import policy let in (loop-checked and unusable ones included,
    /// with their reason), with the attributes as imported.
    Accepted,
    /// Every route the peer sent that the RIB holds, with the attributes as received
    /// (before import policy): with soft-reconfiguration inbound, those the import policy
    /// rejected too (and those of malformed UPDATEs). Without it, routes the policy
    /// changed are listed as imported: only soft-reconfiguration inbound keeps both.
    Received,
}

/// A route of a peer's Adj-RIB-In.
#[derive(Clone, Debug)]
pub struct InRoute {
    /// The prefix.
    pub prefix: IpNet,
    /// The received ADD-PATH identifier (0 without ADD-PATH).
    pub path_id: u32,
    /// The attributes: with [`InView::Accepted`], as imported (after import policy);
    /// with [`InView::Received`], as received. A copy, not the RIB's shared set: a
    /// shared set held outside the RIB would stay in its intern table after its last
    /// route is gone.
    pub attrs: Attrs,
    /// Why it can never be chosen, if so (rejected by import policy included).
    pub ineligible: Option<Ineligible>,
    /// It is the best path of its prefix.
    pub best: bool,
    /// Kept from a gracefully restarting session (RFC 4724).
    pub stale: bool,
}

/// A route of an Adj-RIB-Out: what the update group sent, as sent.
#[derive(Clone, Debug)]
pub struct OutRoute {
    /// The prefix.
    pub prefix: IpNet,
    /// The ADD-PATH identifier sent, where the group sends them.
    pub path_id: Option<u32>,
    /// The attributes sent (reflection, next hop, export policy applied).
    pub attrs: Attrs,
    /// The peer the route came from ([`PeerId::LOCAL`] for our own).
    pub source: PeerId,
}

/// A peer's routes of one family, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FamilyCounts {
    /// Routes held from the peer (rejected ones too, with soft-reconfiguration inbound).
    pub received: usize,
    /// Of those, the ones the import policy let in and that can be chosen.
    pub accepted: usize,
    /// Of those, the ones that are the best path of their prefix.
    pub best: usize,
    /// Routes the peer's update group has sent the peer (none while it is down).
    pub advertised: usize,
}

impl Rib {
    /// The longest prefix of the Loc-RIB that covers `addr` and has a usable best path:
    /// one hash lookup per prefix length, longest first.
    pub fn longest_match(&self, addr: IpAddr) -> Option<IpNet> {
        self.longest_slot(addr, |d| d.best().is_some())
            .map(|s| self.loc.dest(s).prefix)
    }

    /// The longest prefix covering `addr` whose destination `keep` accepts.
    fn longest_slot(&self, addr: IpAddr, keep: impl Fn(&Dest) -> bool) -> Option<u32> {
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        (0..=max).rev().find_map(|len| {
            let p = IpNet::new(addr, len).ok()?.trunc();
            let s = self.loc.slot(&p)?;
            keep(self.loc.dest(s)).then_some(s)
        })
    }

    /// A page of the Loc-RIB's best routes that pass `filter`, from `from` on, at most
    /// `limit` (at least one prefix per page). Like [`Rib::loc_rib`], it hands out the
    /// RIB's shared attribute sets: drop the page before the RIB changes again.
    pub fn loc_rib_page(
        &self,
        filter: &RouteFilter,
        from: Cursor,
        limit: usize,
    ) -> Page<(IpNet, BestRoute)> {
        let end = self.loc.slot_count();
        let next = |s: u32| (s..end).find(|&s| self.loc.is_live(s));
        self.page(filter, from, limit, next, |_, d, out| {
            if let Some(p) = d.best()
                && filter.matches_set(&p.attrs)
            {
                out.push((d.prefix, self.best_route_of(p)));
            }
        })
    }

    /// A page of `peer`'s Adj-RIB-In (`view` says which part) that passes `filter`, from
    /// `from` on, at most `limit` routes (at least one prefix per page). `None` for an
    /// unknown peer. The walk visits only the slots the peer has routes in, found in its
    /// bitmap (a peer with ADD-PATH identifiers walks every slot).
    pub fn adj_rib_in_page(
        &self,
        peer: PeerId,
        view: InView,
        filter: &RouteFilter,
        from: Cursor,
        limit: usize,
    ) -> Option<Page<InRoute>> {
        let st = self.peer(peer)?;
        let end = self.loc.slot_count();
        let bitmap = !st.adj_in.has_other();
        let next = |s: u32| {
            if bitmap {
                st.adj_in.next_slot(s, end)
            } else {
                (s..end).find(|&s| self.loc.is_live(s))
            }
        };
        Some(self.page(filter, from, limit, next, |slot, d, out| {
            for (i, p) in d.paths.iter().enumerate() {
                if p.peer != peer.0 || !in_view(view, p) {
                    continue;
                }
                let attrs = match view {
                    InView::Received => st.received.get(&(slot, p.rx_id)).unwrap_or(&p.attrs),
                    InView::Accepted => &p.attrs,
                };
                if !filter.matches_set(attrs) {
                    continue;
                }
                out.push(InRoute {
                    prefix: d.prefix,
                    path_id: p.rx_id,
                    attrs: attrs.to_attrs(),
                    ineligible: p.reason,
                    best: i == 0 && d.eligible > 0,
                    stale: p.is_stale(),
                });
            }
        }))
    }

    /// A page of what `peer`'s update group has sent `peer`, as sent, that passes
    /// `filter`: the group's Adj-RIB-Out less the routes the peer is excluded from (its
    /// own, and those whose ORIGINATOR_ID names it). `None` when the peer is not up (in no
    /// group).
    pub fn adj_rib_out_page(
        &self,
        peer: PeerId,
        filter: &RouteFilter,
        from: Cursor,
        limit: usize,
    ) -> Option<Page<OutRoute>> {
        let g = self.group_of(peer)?;
        self.out_page(g.0, Some(peer.0), filter, from, limit)
    }

    /// A page of `group`'s Adj-RIB-Out, as sent, that passes `filter` (every path the
    /// group advertises, including those some member is excluded from). `None` for a
    /// group that does not exist.
    pub fn group_out_page(
        &self,
        group: crate::GroupId,
        filter: &RouteFilter,
        from: Cursor,
        limit: usize,
    ) -> Option<Page<OutRoute>> {
        self.out_page(group.0, None, filter, from, limit)
    }

    fn out_page(
        &self,
        group: u32,
        member: Option<u32>,
        filter: &RouteFilter,
        from: Cursor,
        limit: usize,
    ) -> Option<Page<OutRoute>> {
        let g = self.groups.get(group as usize)?.as_ref()?;
        let end = self.loc.slot_count();
        let mut state = Vec::new();
        let page = self.page(
            filter,
            from,
            limit,
            |s| g.out.next_slot(s, end),
            |slot, d, out| {
                state.clear();
                g.out.get(slot, &mut state);
                let family = family_of(&d.prefix);
                for &(tx, id) in &state {
                    let Some(e) = g.table.get(id) else { continue };
                    if member.is_some_and(|m| g.excludes(e.src(), e.originator, m, &self.facts)) {
                        continue;
                    }
                    let Some(attrs) = g.sent_attrs(e, &self.cfg, &self.facts) else {
                        continue;
                    };
                    if !filter.matches_attrs(&attrs) {
                        continue;
                    }
                    out.push(OutRoute {
                        prefix: d.prefix,
                        path_id: g.key.add_path(family).map(|_| tx),
                        attrs,
                        source: PeerId(e.src()),
                    });
                }
            },
        );
        Some(page)
    }

    /// `peer`'s routes counted per family, in [`Family::ALL`] order: one walk of the
    /// peer's Adj-RIB-In and of its group's Adj-RIB-Out.
    pub fn peer_counts(&self, peer: PeerId) -> [FamilyCounts; 2] {
        let mut c = [FamilyCounts::default(); 2];
        let Some(st) = self.peer(peer) else {
            return c;
        };
        let end = self.loc.slot_count();
        let bitmap = !st.adj_in.has_other();
        let mut s = 0;
        while s < end {
            let next = if bitmap {
                st.adj_in.next_slot(s, end)
            } else {
                (s..end).find(|&s| self.loc.is_live(s))
            };
            let Some(slot) = next else { break };
            s = slot + 1;
            let d = self.loc.dest(slot);
            let f = &mut c[family_index(family_of(&d.prefix))];
            for (i, p) in d.paths.iter().enumerate() {
                if p.peer != peer.0 {
                    continue;
                }
                f.received += 1;
                if p.reason.is_none() {
                    f.accepted += 1;
                    f.best += usize::from(i == 0 && d.eligible > 0);
                }
            }
        }
        if let Some(g) = self.group_of(peer)
            && let Some(Some(g)) = self.groups.get(g.0 as usize)
        {
            let mut state = Vec::new();
            let mut s = 0;
            while let Some(slot) = g.out.next_slot(s, end) {
                s = slot + 1;
                state.clear();
                g.out.get(slot, &mut state);
                let fam = family_of(&self.loc.dest(slot).prefix);
                c[family_index(fam)].advertised += state
                    .iter()
                    .filter_map(|&(_, id)| g.table.get(id))
                    .filter(|e| !g.excludes(e.src(), e.originator, peer.0, &self.facts))
                    .count();
            }
        }
        c
    }

    /// The page engine: visits the candidate slots from `from` (or only the one of an
    /// exact prefix, or the longest match), collecting what `visit` yields for each
    /// destination that passes the prefix conditions.
    fn page<T>(
        &self,
        filter: &RouteFilter,
        from: Cursor,
        limit: usize,
        mut next_slot: impl FnMut(u32) -> Option<u32>,
        mut visit: impl FnMut(u32, &Dest, &mut Vec<T>),
    ) -> Page<T> {
        let limit = limit.max(1);
        let mut items = Vec::new();
        match filter.prefix {
            Some(PrefixQuery::Exact(p)) => {
                if filter.matches_prefix(&p.trunc())
                    && let Some(s) = self.loc.slot(&p.trunc())
                    && s >= from.0
                {
                    visit(s, self.loc.dest(s), &mut items);
                }
                return Page { items, next: None };
            }
            Some(PrefixQuery::Longest(addr)) => {
                // The longest covering prefix that yields anything, whatever `from`.
                let max = match addr {
                    IpAddr::V4(_) => 32,
                    IpAddr::V6(_) => 128,
                };
                for len in (0..=max).rev() {
                    let Ok(p) = IpNet::new(addr, len) else {
                        continue;
                    };
                    let p = p.trunc();
                    if !filter.matches_prefix(&p) {
                        continue;
                    }
                    if let Some(s) = self.loc.slot(&p) {
                        visit(s, self.loc.dest(s), &mut items);
                        if !items.is_empty() {
                            break;
                        }
                    }
                }
                return Page { items, next: None };
            }
            Some(PrefixQuery::OrLonger(_)) | None => {}
        }
        let end = self.loc.slot_count();
        let mut tmp = Vec::new();
        let mut s = from.0;
        while s < end {
            let Some(slot) = next_slot(s) else { break };
            if slot >= end {
                break;
            }
            let d = self.loc.dest(slot);
            if self.loc.is_live(slot) && filter.matches_prefix(&d.prefix) {
                visit(slot, d, &mut tmp);
            }
            if !tmp.is_empty() {
                if !items.is_empty() && items.len() + tmp.len() > limit {
                    return Page {
                        items,
                        next: Some(Cursor(slot)),
                    };
                }
                items.append(&mut tmp);
            }
            s = slot + 1;
            if items.len() >= limit {
                return Page {
                    items,
                    next: (s < end).then_some(Cursor(s)),
                };
            }
        }
        Page { items, next: None }
    }

    fn best_route_of(&self, p: &Path) -> BestRoute {
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
}

/// Whether a stored path of a peer belongs in `view`.
fn in_view(view: InView, p: &Path) -> bool {
    match view {
        InView::Received => true,
        InView::Accepted => !matches!(
            p.reason,
            Some(Ineligible::RejectedByImport | Ineligible::TreatedAsWithdrawn)
        ),
    }
}
