//! Interned path attribute sets.
//!
//! A million routes typically share a few tens of thousands of attribute sets. Each distinct
//! set is decoded once, hashed, and shared by `Arc` between every route that carries it
//! (holo's `AttrSets`; rustybgp shares one `Arc` per UPDATE). Memory then grows with the
//! number of distinct sets, not with routes × peers, and a set is freed as soon as the last
//! route that uses it goes.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::ops::Deref;
use std::sync::Arc;

use bgp_wire::attr::as_path::AS_TRANS;
use bgp_wire::attr::{
    Aggregator, AsPath, AsSegmentType, Community, ExtCommunity, LargeCommunity, NextHop, Origin,
    RawAttribute,
};
use bgp_wire::update::UpdateView;

use crate::fx::FxHashSet;

/// The path attributes of a route, decoded (RFC 4271 §5), without the MP attributes: the
/// prefixes are the route's key, not its attributes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attrs {
    /// ORIGIN (RFC 4271 §5.1.1).
    pub origin: Origin,
    /// AS_PATH with 4-octet ASes (RFC 6793 merge already done).
    pub as_path: AsPath,
    /// NEXT_HOP, or the next hop of MP_REACH_NLRI; `None` for a locally originated route
    /// whose next hop is the session's local address.
    pub next_hop: Option<NextHop>,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// ATOMIC_AGGREGATE.
    pub atomic_aggregate: bool,
    /// AGGREGATOR (4-octet AS, RFC 6793 merge already done).
    pub aggregator: Option<Aggregator>,
    /// COMMUNITIES, sorted and without duplicates (RFC 1997 gives the order no meaning).
    pub communities: Vec<Community>,
    /// EXTENDED COMMUNITIES, as received.
    pub ext_communities: Vec<ExtCommunity>,
    /// LARGE_COMMUNITY, sorted and without duplicates.
    pub large_communities: Vec<LargeCommunity>,
    /// ORIGINATOR_ID (RFC 4456 §8).
    pub originator_id: Option<Ipv4Addr>,
    /// CLUSTER_LIST (RFC 4456 §8), most recent cluster first.
    pub cluster_list: Vec<Ipv4Addr>,
    /// ONLY_TO_CUSTOMER (RFC 9234).
    pub only_to_customer: Option<u32>,
    /// Unrecognised optional transitive attributes, passed on with the Partial bit
    /// (RFC 4271 §5).
    pub other: Vec<RawAttribute>,
}

impl Default for Attrs {
    /// An empty set: ORIGIN IGP, empty AS_PATH, nothing else.
    fn default() -> Self {
        Self {
            origin: Origin::IGP,
            as_path: AsPath::default(),
            next_hop: None,
            med: None,
            local_pref: None,
            atomic_aggregate: false,
            aggregator: None,
            communities: Vec::new(),
            ext_communities: Vec::new(),
            large_communities: Vec::new(),
            originator_id: None,
            cluster_list: Vec::new(),
            only_to_customer: None,
            other: Vec::new(),
        }
    }
}

impl Attrs {
    /// Decodes the live attributes of a checked UPDATE (those that survived RFC 7606
    /// attribute-discard), merging AS4_PATH and AS4_AGGREGATOR on a 2-octet session
    /// (RFC 6793 §4.2.3). The next hop is left out: it depends on the family.
    pub fn from_view(view: &UpdateView<'_>) -> Self {
        let four = view.ctx().four_octet_as;
        let mut as_path = view
            .as_path()
            .map(|p| p.to_owned_path())
            .unwrap_or_default();
        if !four && let Some(p4) = view.as4_path() {
            as_path = AsPath::merge_as4(&as_path, &p4.to_owned_path());
        }
        let mut aggregator = view.aggregator();
        if !four
            && let (Some(a), Some(a4)) = (aggregator, view.as4_aggregator())
            && a.asn == u32::from(AS_TRANS)
        {
            aggregator = Some(a4);
        }
        let mut communities: Vec<Community> = view.communities().collect();
        communities.sort_unstable();
        communities.dedup();
        let mut large_communities: Vec<LargeCommunity> = view.large_communities().collect();
        large_communities.sort_unstable();
        large_communities.dedup();
        let other = view
            .attributes()
            .filter(|a| !a.ty.is_known())
            .filter_map(|a| {
                RawAttribute {
                    flags: a.flags,
                    ty: a.ty,
                    value: bytes::Bytes::copy_from_slice(a.value),
                }
                .for_readvertisement()
            })
            .collect();
        Self {
            origin: view.origin().unwrap_or(Origin::INCOMPLETE),
            as_path,
            next_hop: None,
            med: view.med(),
            local_pref: view.local_pref(),
            atomic_aggregate: view.atomic_aggregate(),
            aggregator,
            communities,
            ext_communities: view.ext_communities().collect(),
            large_communities,
            originator_id: view.originator_id(),
            cluster_list: view
                .cluster_list()
                .map(Iterator::collect)
                .unwrap_or_default(),
            only_to_customer: view.only_to_customer(),
            other,
        }
    }

    /// Whether the set carries `c`.
    pub fn has_community(&self, c: Community) -> bool {
        self.communities.binary_search(&c).is_ok()
    }

    /// Whether AS_PATH holds `asn` in any segment (RFC 4271 §9.1.2 loop detection).
    pub fn as_path_contains(&self, asn: u32) -> bool {
        self.as_path.segments.iter().any(|s| s.asns.contains(&asn))
    }
}

/// An interned attribute set: the decoded [`Attrs`] and what the decision process reads
/// from them, computed once.
#[derive(Debug)]
pub struct AttrSet {
    id: u64,
    attrs: Attrs,
    route_len: u32,
    neighbor_as: Option<u32>,
}

impl AttrSet {
    /// A number unique to this set for the life of the RIB (never reused, unlike the
    /// address of a freed set), which export caches key on.
    pub const fn id(&self) -> u64 {
        self.id
    }

    /// AS_PATH length as the decision process counts it (RFC 4271 §9.1.2.2 a).
    pub const fn route_len(&self) -> u32 {
        self.route_len
    }

    /// The neighbour AS for MED comparison (RFC 4271 §9.1.2.2 c): the leftmost AS of a
    /// leading AS_SEQUENCE, `None` for a path that starts otherwise or is empty (a route
    /// from our own AS).
    pub const fn neighbor_as(&self) -> Option<u32> {
        self.neighbor_as
    }
}

impl Deref for AttrSet {
    type Target = Attrs;
    fn deref(&self) -> &Attrs {
        &self.attrs
    }
}

/// The intern table's key: an `Arc` that hashes and compares as its [`Attrs`].
struct Interned(Arc<AttrSet>);

impl Hash for Interned {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.attrs.hash(state);
    }
}
impl PartialEq for Interned {
    fn eq(&self, other: &Self) -> bool {
        self.0.attrs == other.0.attrs
    }
}
impl Eq for Interned {}
impl Borrow<Attrs> for Interned {
    fn borrow(&self) -> &Attrs {
        &self.0.attrs
    }
}

/// The table of interned attribute sets.
#[derive(Default)]
pub(crate) struct AttrStore {
    set: FxHashSet<Interned>,
    next_id: u64,
}

impl AttrStore {
    /// The shared set equal to `attrs`, interned now if it is new.
    pub(crate) fn intern(&mut self, attrs: Attrs) -> Arc<AttrSet> {
        if let Some(i) = self.set.get(&attrs) {
            return i.0.clone();
        }
        self.next_id += 1;
        let route_len = u32::try_from(attrs.as_path.route_len()).unwrap_or(u32::MAX);
        let neighbor_as = match attrs.as_path.segments.first() {
            Some(s) if s.ty == AsSegmentType::AS_SEQUENCE => s.asns.first().copied(),
            _ => None,
        };
        let set = Arc::new(AttrSet {
            id: self.next_id,
            attrs,
            route_len,
            neighbor_as,
        });
        self.set.insert(Interned(set.clone()));
        set
    }

    /// Drops one user's reference; the set leaves the table with its last user.
    #[inline]
    pub(crate) fn release(&mut self, set: Arc<AttrSet>) {
        // Two references: the table's and the one being released.
        if Arc::strong_count(&set) == 2 {
            self.set.remove(&set.attrs);
        }
    }

    /// How many distinct sets are interned.
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}
