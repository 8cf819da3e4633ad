//! Interned path attribute sets.
//!
//! A million routes typically share a few tens of thousands of attribute sets. Each distinct
//! set is decoded once, hashed, and shared by `Arc` between every route that carries it
//! (holo's `AttrSets`; rustybgp shares one `Arc` per UPDATE). Memory then grows with the
//! number of distinct sets, not with routes × peers, and a set is freed as soon as the last
//! route that uses it goes.

use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::sync::Arc;

use bgp_wire::attr::as_path::AS_TRANS;
use bgp_wire::attr::{
    Aggregator, AsPath, AsSegment, AsSegmentType, Community, ExtCommunity, LargeCommunity, NextHop,
    Origin, RawAttribute, as_path,
};
use bgp_wire::update::UpdateView;

use hashbrown::HashTable;

use crate::fx::FxHasher;

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
        let mut communities: Vec<Community> = view.communities().collect();
        communities.sort_unstable();
        communities.dedup();
        Self {
            origin: view.origin().unwrap_or(Origin::INCOMPLETE),
            as_path,
            next_hop: None,
            med: view.med(),
            local_pref: view.local_pref(),
            atomic_aggregate: view.atomic_aggregate(),
            aggregator: view_aggregator(view),
            communities,
            ext_communities: view.ext_communities().collect(),
            large_communities: view_large_communities(view),
            originator_id: view.originator_id(),
            cluster_list: view_cluster_list(view),
            only_to_customer: view.only_to_customer(),
            other: view_other(view),
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

    /// How many times `asn` appears in AS_PATH, in every segment (BIRD's
    /// `as_path_contains(path, as, min)` counts the same way).
    pub fn as_path_count(&self, asn: u32) -> usize {
        self.as_path
            .segments
            .iter()
            .map(|s| s.asns.iter().filter(|a| **a == asn).count())
            .sum()
    }
}

/// AGGREGATOR, with AS4_AGGREGATOR's AS in place of AS_TRANS on a 2-octet session
/// (RFC 6793 §4.2.3).
fn view_aggregator(view: &UpdateView<'_>) -> Option<Aggregator> {
    let aggregator = view.aggregator();
    if !view.ctx().four_octet_as
        && let (Some(a), Some(a4)) = (aggregator, view.as4_aggregator())
        && a.asn == u32::from(AS_TRANS)
    {
        return Some(a4);
    }
    aggregator
}

/// LARGE_COMMUNITY, sorted and without duplicates.
fn view_large_communities(view: &UpdateView<'_>) -> Vec<LargeCommunity> {
    let mut large: Vec<LargeCommunity> = view.large_communities().collect();
    large.sort_unstable();
    large.dedup();
    large
}

/// CLUSTER_LIST, most recent cluster first.
fn view_cluster_list(view: &UpdateView<'_>) -> Vec<Ipv4Addr> {
    view.cluster_list()
        .map(Iterator::collect)
        .unwrap_or_default()
}

/// The unrecognised optional transitive attributes, as passed on (RFC 4271 §5).
fn view_other(view: &UpdateView<'_>) -> Vec<RawAttribute> {
    view.attributes()
        .filter(|a| !a.ty.is_known())
        .filter_map(|a| {
            RawAttribute {
                flags: a.flags,
                ty: a.ty,
                value: bytes::Bytes::copy_from_slice(a.value),
            }
            .for_readvertisement()
        })
        .collect()
}

/// An interned attribute set, in a compact form: one allocation for the set and at most
/// two more (the AS path with the communities, and the attributes a big table rarely
/// carries), about 150 bytes for a typical set instead of the 370 the decoded [`Attrs`]
/// with its vectors took. Readers use the accessors; [`AttrSet::to_attrs`] decodes the
/// whole set for a change (export, policy) or a display.
#[derive(Debug)]
pub struct AttrSet {
    id: u64,
    route_len: u32,
    /// The packed form's hash ([`packed_hash`]), kept for the intern table (in what
    /// would be padding): the table grows, and drops a set, without reading the sets'
    /// lists again (a random access to each set's words, hundreds of thousands of them
    /// at every doubling of a big table's).
    hash: u32,
    neighbor_as: Option<u32>,
    packed: Packed,
}

/// The stored form of an [`Attrs`], canonical: two sets are equal exactly when their
/// [`Attrs`] are, so the intern table compares and hashes this form.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Packed {
    med: Option<u32>,
    local_pref: Option<u32>,
    /// An IPv4 next hop; any other is in [`Rare::next_hop`].
    next_hop_v4: Option<Ipv4Addr>,
    origin: Origin,
    /// Empty when the AS path and the communities are; otherwise the number `n` of words
    /// of the AS path, the path (each segment a header word, type << 24 | length, then
    /// its ASes), then the communities in order.
    words: Box<[u32]>,
    rare: Option<Box<Rare>>,
}

/// What few routes of a big table carry, behind one pointer.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
struct Rare {
    /// A next hop other than IPv4.
    next_hop: Option<NextHop>,
    atomic_aggregate: bool,
    aggregator: Option<Aggregator>,
    ext_communities: Box<[ExtCommunity]>,
    large_communities: Box<[LargeCommunity]>,
    originator_id: Option<Ipv4Addr>,
    cluster_list: Box<[Ipv4Addr]>,
    only_to_customer: Option<u32>,
    other: Box<[RawAttribute]>,
}

/// The longest AS segment one header word holds; an AS_PATH attribute (at most 65,535
/// octets) never has one this long, longer ones are split.
const SEGMENT_MAX: usize = (1 << 24) - 1;

impl Packed {
    fn new(a: Attrs) -> Self {
        let path_words: usize = a
            .as_path
            .segments
            .iter()
            .map(|s| s.asns.len() + s.asns.len().div_ceil(SEGMENT_MAX).max(1))
            .sum();
        let words = if path_words == 0 && a.communities.is_empty() {
            Box::default()
        } else {
            let mut w = Vec::with_capacity(1 + path_words + a.communities.len());
            w.push(path_words as u32);
            for s in &a.as_path.segments {
                let mut chunks = s.asns.chunks(SEGMENT_MAX);
                let first = chunks.next().unwrap_or(&[]);
                for c in std::iter::once(first).chain(chunks) {
                    w.push(u32::from(s.ty.0) << 24 | c.len() as u32);
                    w.extend_from_slice(c);
                }
            }
            w.extend(a.communities.iter().map(|c| c.0));
            w.into_boxed_slice()
        };
        let rare = Rare {
            next_hop: None,
            atomic_aggregate: a.atomic_aggregate,
            aggregator: a.aggregator,
            ext_communities: a.ext_communities.into(),
            large_communities: a.large_communities.into(),
            originator_id: a.originator_id,
            cluster_list: a.cluster_list.into(),
            only_to_customer: a.only_to_customer,
            other: a.other.into(),
        };
        Self::assemble((a.med, a.local_pref, a.origin), words, a.next_hop, rare)
    }

    /// The packed set of MED, LOCAL_PREF and ORIGIN, `words` and `rare`, with `next_hop`
    /// kept inline when it is IPv4 (nearly always) and in `rare` otherwise; `rare` is
    /// left out when it holds nothing.
    fn assemble(
        (med, local_pref, origin): (Option<u32>, Option<u32>, Origin),
        words: Box<[u32]>,
        next_hop: Option<NextHop>,
        mut rare: Rare,
    ) -> Self {
        let next_hop_v4 = match next_hop {
            Some(NextHop::V4(v4)) => Some(v4),
            other => {
                rare.next_hop = other;
                None
            }
        };
        Self {
            med,
            local_pref,
            next_hop_v4,
            origin,
            words,
            rare: (rare != Rare::default()).then(|| Box::new(rare)),
        }
    }

    /// What [`Packed::new`] makes of [`Attrs::from_view`] with `next_hop`, read straight
    /// from the message, without the owned lists in between (a big table's every
    /// UPDATE is interned, and most of its sets are new); `None` on a 2-octet session
    /// that received AS4_PATH, whose merge (RFC 6793 §4.2.3) needs the owned paths.
    fn from_view(view: &UpdateView<'_>, next_hop: Option<NextHop>) -> Option<Self> {
        if !view.ctx().four_octet_as && view.as4_path().is_some() {
            return None;
        }
        let path = view.as_path();
        // The exact size, so that the boxed slice keeps the allocation (unless repeated
        // communities are dropped below).
        let path_words: usize = path
            .iter()
            .flat_map(|p| p.segments())
            .map(|(_, asns)| 1 + asns.size_hint().0)
            .sum();
        let communities = view.communities().size_hint().0;
        let words = if path_words == 0 && communities == 0 {
            Box::default()
        } else {
            Self::view_words(view, path_words, communities)
        };
        let rare = Rare {
            next_hop: None,
            atomic_aggregate: view.atomic_aggregate(),
            aggregator: view_aggregator(view),
            ext_communities: view.ext_communities().collect(),
            large_communities: view_large_communities(view).into(),
            originator_id: view.originator_id(),
            cluster_list: view_cluster_list(view).into(),
            only_to_customer: view.only_to_customer(),
            other: view_other(view).into(),
        };
        let origin = view.origin().unwrap_or(Origin::INCOMPLETE);
        Some(Self::assemble(
            (view.med(), view.local_pref(), origin),
            words,
            next_hop,
            rare,
        ))
    }

    /// The AS path's and the communities' words of [`Packed::words`], read from `view`
    /// (sizes given).
    fn view_words(view: &UpdateView<'_>, path_words: usize, communities: usize) -> Box<[u32]> {
        let mut w: Vec<u32> = Vec::with_capacity(1 + path_words + communities);
        w.push(path_words as u32);
        let path = view.as_path();
        // A segment of a message holds at most 255 ASes: no segment is cut here.
        for (ty, asns) in path.iter().flat_map(|p| p.segments()) {
            let at = w.len();
            w.push(0);
            w.extend(asns);
            w[at] = u32::from(ty.0) << 24 | (w.len() - at - 1) as u32;
        }
        let start = w.len();
        w.extend(view.communities().map(|c| c.0));
        w[start..].sort_unstable();
        let mut end = start;
        for i in start..w.len() {
            if end == start || w[end - 1] != w[i] {
                w[end] = w[i];
                end += 1;
            }
        }
        w.truncate(end);
        w.into_boxed_slice()
    }

    fn path_words(&self) -> &[u32] {
        match self.words.split_first() {
            Some((&n, rest)) => &rest[..n as usize],
            None => &[],
        }
    }

    fn community_words(&self) -> &[u32] {
        match self.words.split_first() {
            Some((&n, rest)) => &rest[n as usize..],
            None => &[],
        }
    }
}

/// The segments of a packed AS path: type and ASes.
#[derive(Clone)]
pub struct Segments<'a> {
    words: &'a [u32],
}

impl<'a> Iterator for Segments<'a> {
    type Item = (AsSegmentType, &'a [u32]);

    fn next(&mut self) -> Option<Self::Item> {
        let (&h, rest) = self.words.split_first()?;
        let len = ((h & 0x00ff_ffff) as usize).min(rest.len());
        let (asns, rest) = rest.split_at(len);
        self.words = rest;
        Some((AsSegmentType((h >> 24) as u8), asns))
    }
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

    fn rare(&self) -> Option<&Rare> {
        self.packed.rare.as_deref()
    }

    /// ORIGIN.
    pub const fn origin(&self) -> Origin {
        self.packed.origin
    }

    /// The AS_PATH's segments, without a copy.
    pub fn as_path_segments(&self) -> Segments<'_> {
        Segments {
            words: self.packed.path_words(),
        }
    }

    /// AS_PATH, decoded (an allocation: for a change or a display).
    pub fn as_path(&self) -> AsPath {
        AsPath {
            segments: self
                .as_path_segments()
                .map(|(ty, asns)| AsSegment {
                    ty,
                    asns: asns.to_vec(),
                })
                .collect(),
        }
    }

    /// Whether AS_PATH holds `asn` in any segment (RFC 4271 §9.1.2 loop detection).
    pub fn as_path_contains(&self, asn: u32) -> bool {
        self.as_path_segments().any(|(_, s)| s.contains(&asn))
    }

    /// How many times `asn` appears in AS_PATH (see [`Attrs::as_path_count`]).
    pub fn as_path_count(&self, asn: u32) -> usize {
        self.as_path_segments()
            .map(|(_, s)| s.iter().filter(|a| **a == asn).count())
            .sum()
    }

    /// NEXT_HOP or the next hop of MP_REACH_NLRI (see [`Attrs::next_hop`]).
    pub fn next_hop(&self) -> Option<NextHop> {
        match self.packed.next_hop_v4 {
            Some(v4) => Some(NextHop::V4(v4)),
            None => self.rare().and_then(|r| r.next_hop),
        }
    }

    /// MULTI_EXIT_DISC.
    pub const fn med(&self) -> Option<u32> {
        self.packed.med
    }

    /// LOCAL_PREF.
    pub const fn local_pref(&self) -> Option<u32> {
        self.packed.local_pref
    }

    /// ATOMIC_AGGREGATE.
    pub fn atomic_aggregate(&self) -> bool {
        self.rare().is_some_and(|r| r.atomic_aggregate)
    }

    /// AGGREGATOR.
    pub fn aggregator(&self) -> Option<Aggregator> {
        self.rare().and_then(|r| r.aggregator)
    }

    /// COMMUNITIES, sorted and without duplicates.
    pub fn communities(&self) -> impl ExactSizeIterator<Item = Community> + Clone + '_ {
        self.packed.community_words().iter().map(|&c| Community(c))
    }

    /// Whether the set carries `c`.
    pub fn has_community(&self, c: Community) -> bool {
        self.packed.community_words().binary_search(&c.0).is_ok()
    }

    /// EXTENDED COMMUNITIES, as received.
    pub fn ext_communities(&self) -> &[ExtCommunity] {
        self.rare().map_or(&[], |r| &r.ext_communities)
    }

    /// LARGE_COMMUNITY, sorted and without duplicates.
    pub fn large_communities(&self) -> &[LargeCommunity] {
        self.rare().map_or(&[], |r| &r.large_communities)
    }

    /// ORIGINATOR_ID (RFC 4456 §8).
    pub fn originator_id(&self) -> Option<Ipv4Addr> {
        self.rare().and_then(|r| r.originator_id)
    }

    /// CLUSTER_LIST (RFC 4456 §8), most recent cluster first.
    pub fn cluster_list(&self) -> &[Ipv4Addr] {
        self.rare().map_or(&[], |r| &r.cluster_list)
    }

    /// ONLY_TO_CUSTOMER (RFC 9234).
    pub fn only_to_customer(&self) -> Option<u32> {
        self.rare().and_then(|r| r.only_to_customer)
    }

    /// Unrecognised optional transitive attributes (see [`Attrs::other`]).
    pub fn other(&self) -> &[RawAttribute] {
        self.rare().map_or(&[], |r| &r.other)
    }

    /// The set decoded, equal to the [`Attrs`] it was interned from.
    pub fn to_attrs(&self) -> Attrs {
        Attrs {
            origin: self.origin(),
            as_path: self.as_path(),
            next_hop: self.next_hop(),
            med: self.med(),
            local_pref: self.local_pref(),
            atomic_aggregate: self.atomic_aggregate(),
            aggregator: self.aggregator(),
            communities: self.communities().collect(),
            ext_communities: self.ext_communities().to_vec(),
            large_communities: self.large_communities().to_vec(),
            originator_id: self.originator_id(),
            cluster_list: self.cluster_list().to_vec(),
            only_to_customer: self.only_to_customer(),
            other: self.other().to_vec(),
        }
    }
}

impl From<Attrs> for AttrSet {
    /// A set outside any RIB (to run a policy over, or in tests): its [`AttrSet::id`] is 0,
    /// which no interned set has.
    fn from(attrs: Attrs) -> Self {
        Self::with(Packed::new(attrs))
    }
}

impl AttrSet {
    /// The set of `packed`, with what the decision process reads of its AS path.
    fn with(packed: Packed) -> Self {
        let mut set = Self {
            id: 0,
            hash: packed_hash(&packed),
            route_len: 0,
            neighbor_as: None,
            packed,
        };
        let route_len =
            as_path::route_len_of(set.as_path_segments().map(|(ty, asns)| (ty, asns.len())));
        set.route_len = u32::try_from(route_len).unwrap_or(u32::MAX);
        set.neighbor_as = match set.as_path_segments().next() {
            Some((AsSegmentType::AS_SEQUENCE, asns)) => asns.first().copied(),
            _ => None,
        };
        set
    }

    /// The set of a checked UPDATE's live attributes with `next_hop`: what
    /// `AttrSet::from` gives for [`Attrs::from_view`] with that next hop, built without
    /// the owned [`Attrs`] where the message allows (see [`Packed::from_view`]).
    pub(crate) fn from_view(view: &UpdateView<'_>, next_hop: Option<NextHop>) -> Self {
        match Packed::from_view(view, next_hop) {
            Some(packed) => Self::with(packed),
            None => {
                let mut a = Attrs::from_view(view);
                a.next_hop = next_hop;
                Self::from(a)
            }
        }
    }
}

/// The hash of a packed form: the high half of its Fx hash (Fx's last step is a
/// multiplication, whose high bits are the mixed ones).
fn packed_hash(p: &Packed) -> u32 {
    let mut h = FxHasher::default();
    p.hash(&mut h);
    (h.finish() >> 32) as u32
}

/// What the intern table hashes a set to: its 32-bit hash in both halves (the table
/// takes its bucket from the low bits and its tag from the high ones).
fn table_hash(hash: u32) -> u64 {
    let h = u64::from(hash);
    h << 32 | h
}

/// The table of interned attribute sets, each under its [`AttrSet::hash`].
#[derive(Default)]
pub(crate) struct AttrStore {
    set: HashTable<Arc<AttrSet>>,
    next_id: u64,
}

impl AttrStore {
    /// The shared set equal to `attrs`, interned now if it is new.
    pub(crate) fn intern(&mut self, attrs: Attrs) -> Arc<AttrSet> {
        self.intern_set(AttrSet::from(attrs))
    }

    /// [`AttrStore::intern`] for a set already packed (its id is set here).
    pub(crate) fn intern_set(&mut self, mut set: AttrSet) -> Arc<AttrSet> {
        let hash = table_hash(set.hash);
        if let Some(s) = self.set.find(hash, |s| s.packed == set.packed) {
            return s.clone();
        }
        self.next_id += 1;
        set.id = self.next_id;
        let set = Arc::new(set);
        self.set
            .insert_unique(hash, set.clone(), |s| table_hash(s.hash));
        set
    }

    /// Drops one user's reference; the set leaves the table with its last user.
    #[inline]
    pub(crate) fn release(&mut self, set: Arc<AttrSet>) {
        // Two references: the table's and the one being released.
        if Arc::strong_count(&set) == 2
            && let Ok(e) = self
                .set
                .find_entry(table_hash(set.hash), |s| Arc::ptr_eq(s, &set))
        {
            e.remove();
        }
    }

    /// How many distinct sets are interned.
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bgp_wire::attr::{AttrFlags, AttrType, PathAttribute};

    fn full() -> Attrs {
        Attrs {
            origin: Origin::EGP,
            as_path: AsPath {
                segments: vec![
                    AsSegment {
                        ty: AsSegmentType::AS_SEQUENCE,
                        asns: vec![65001, 4_200_000_000, 7],
                    },
                    AsSegment {
                        ty: AsSegmentType::AS_SET,
                        asns: vec![9, 8],
                    },
                    AsSegment {
                        ty: AsSegmentType::AS_SEQUENCE,
                        asns: vec![],
                    },
                ],
            },
            next_hop: Some(NextHop::V6 {
                global: "2001:db8::1".parse().unwrap(),
                link_local: Some("fe80::1".parse().unwrap()),
            }),
            med: Some(0),
            local_pref: Some(100),
            atomic_aggregate: true,
            aggregator: Some(Aggregator {
                asn: 65001,
                address: Ipv4Addr::new(192, 0, 2, 9),
            }),
            communities: vec![Community(1), Community(0xFFFF_0001)],
            ext_communities: vec![ExtCommunity([0, 2, 0, 0, 0, 1, 0, 2])],
            large_communities: vec![LargeCommunity {
                global: 1,
                local1: 2,
                local2: 3,
            }],
            originator_id: Some(Ipv4Addr::new(10, 0, 0, 1)),
            cluster_list: vec![Ipv4Addr::new(1, 0, 0, 1), Ipv4Addr::new(1, 0, 0, 2)],
            only_to_customer: Some(65002),
            other: vec![RawAttribute {
                flags: AttrFlags(0xc0),
                ty: AttrType(99),
                value: bytes::Bytes::from_static(b"xy"),
            }],
        }
    }

    #[test]
    fn every_attribute_survives_the_packing() {
        let mut store = AttrStore::default();
        let mut plain = Attrs {
            next_hop: Some(NextHop::V4(Ipv4Addr::new(192, 0, 2, 1))),
            as_path: AsPath::from_sequence([65001, 65002]),
            ..Attrs::default()
        };
        for a in [Attrs::default(), full(), plain.clone()] {
            let set = store.intern(a.clone());
            assert_eq!(set.to_attrs(), a);
            assert_eq!(set.route_len() as usize, a.as_path.route_len());
            assert_eq!(set.neighbor_as(), a.as_path.first_as());
            assert_eq!(
                set.has_community(Community(1)),
                a.has_community(Community(1))
            );
            assert_eq!(set.as_path_contains(7), a.as_path_contains(7));
        }
        // Equal sets are one; any difference is another set.
        assert_eq!(store.len(), 3);
        let again = store.intern(plain.clone());
        assert_eq!(store.len(), 3);
        plain.communities.push(Community(5));
        let other = store.intern(plain);
        assert_eq!(store.len(), 4);
        assert_ne!(again.id(), other.id());
        // Only the path's words: communities are not ASes.
        assert!(!other.as_path_contains(5));
    }

    #[test]
    fn a_set_is_small() {
        // What a table of 200,000 sets costs: keep it from growing unnoticed.
        assert!(size_of::<AttrSet>() <= 72, "{}", size_of::<AttrSet>());
        let mut store = AttrStore::default();
        let set = store.intern(Attrs {
            next_hop: Some(NextHop::V4(Ipv4Addr::new(192, 0, 2, 1))),
            as_path: AsPath::from_sequence([65001, 65002, 65003]),
            local_pref: Some(100),
            ..Attrs::default()
        });
        assert!(set.packed.rare.is_none());
        assert_eq!(set.packed.words.len(), 5);
    }

    /// Attributes for [`from_view_matches_the_owned_attributes`]: every field the set
    /// keeps, in the forms a message can carry (segments of every type, long ones,
    /// 4-octet ASes, AGGREGATOR with a 4-octet AS, communities unsorted and repeated,
    /// two unrecognised attributes).
    fn arb_attributes() -> impl proptest::strategy::Strategy<Value = Vec<PathAttribute>> {
        use proptest::prelude::*;
        let asn = prop_oneof![1u32..70_000, Just(4_200_000_000u32)];
        let asns = prop_oneof![
            4 => proptest::collection::vec(asn.clone(), 1..4),
            1 => (asn, 200usize..256).prop_map(|(a, n)| vec![a; n]),
        ];
        let segment = (1u8..=4, asns).prop_map(|(ty, asns)| AsSegment {
            ty: AsSegmentType(ty),
            asns,
        });
        (
            (0u8..3, proptest::collection::vec(segment, 0..4)),
            (
                proptest::option::of(0u32..3),
                proptest::option::of(99u32..101),
                any::<bool>(),
            ),
            (
                proptest::collection::vec(0u32..6, 0..6),
                proptest::collection::vec(0u32..3, 0..3),
            ),
            (
                proptest::option::of(1u8..4),
                proptest::collection::vec(1u8..4, 0..3),
            ),
            (
                proptest::option::of(prop_oneof![65000u32..65002, Just(4_200_000_001u32)]),
                proptest::option::of(0u32..2),
                any::<bool>(),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (origin, segments),
                    (med, lp, atomic),
                    (comms, large),
                    (orig, clusters),
                    (agg, otc, ext, unknown),
                )| {
                    let mut v = vec![
                        PathAttribute::Origin(Origin(origin)),
                        PathAttribute::AsPath(AsPath { segments }),
                        PathAttribute::NextHop(Ipv4Addr::new(192, 0, 2, 1)),
                    ];
                    v.extend(med.map(PathAttribute::MultiExitDisc));
                    v.extend(lp.map(PathAttribute::LocalPref));
                    if atomic {
                        v.push(PathAttribute::AtomicAggregate);
                    }
                    v.extend(agg.map(|asn| {
                        PathAttribute::Aggregator(Aggregator {
                            asn,
                            address: Ipv4Addr::new(192, 0, 2, 9),
                        })
                    }));
                    if !comms.is_empty() {
                        v.push(PathAttribute::Communities(
                            comms.iter().map(|c| Community(0xfde8_0000 | c)).collect(),
                        ));
                    }
                    if !large.is_empty() {
                        v.push(PathAttribute::LargeCommunities(
                            large
                                .iter()
                                .map(|l| LargeCommunity {
                                    global: 65000,
                                    local1: *l,
                                    local2: 0,
                                })
                                .collect(),
                        ));
                    }
                    v.extend(orig.map(|o| PathAttribute::OriginatorId(Ipv4Addr::new(10, 0, 0, o))));
                    if !clusters.is_empty() {
                        v.push(PathAttribute::ClusterList(
                            clusters
                                .iter()
                                .map(|c| Ipv4Addr::new(10, 1, 0, *c))
                                .collect(),
                        ));
                    }
                    if ext {
                        v.push(PathAttribute::ExtendedCommunities(vec![ExtCommunity([
                            0, 2, 0, 0, 0, 1, 0, 2,
                        ])]));
                    }
                    v.extend(otc.map(PathAttribute::OnlyToCustomer));
                    if unknown {
                        for ty in [99, 98] {
                            v.push(PathAttribute::Unknown(RawAttribute {
                                flags: AttrFlags::OPTIONAL_TRANSITIVE,
                                ty: AttrType(ty),
                                value: bytes::Bytes::from_static(&[1, 2, 3]),
                            }));
                        }
                    }
                    v
                },
            )
    }

    proptest::proptest! {
        /// The set read straight from a message is the set of its decoded attributes,
        /// on 4-octet and 2-octet sessions (AS4_PATH merged by the fallback).
        #[test]
        fn from_view_matches_the_owned_attributes(attributes in arb_attributes(), four in proptest::prelude::any::<bool>(), v6 in proptest::prelude::any::<bool>()) {
            use bgp_wire::update::Update;
            let mut ctx = bgp_wire::SessionCtx {
                ibgp: true,
                four_octet_as: four,
                ..bgp_wire::SessionCtx::default()
            };
            // AS_SETs kept (rejecting them is a policy), so that every segment type
            // reaches the set.
            ctx.policy.reject_as_set = false;
            let update = Update {
                withdrawn: vec![],
                attributes,
                nlri: vec![bgp_wire::nlri::Nlri::new("10.0.0.0/8".parse().unwrap())],
            };
            let mut b = bytes::BytesMut::new();
            // Three long segments on a 2-octet session (AS_PATH and AS4_PATH both
            // carried) can pass 4,096 octets: no peer could send that set.
            proptest::prop_assume!(update.encode(&ctx, &mut b).is_ok());
            let view = UpdateView::parse(&b[19..], &ctx);
            // The AS_PATH reaches the set (an AS4_PATH may be discarded on a 2-octet
            // session: one without a 4-octet AS outside confederation segments).
            proptest::prop_assert!(view.as_path().is_some());
            let nh = if v6 {
                Some(NextHop::V6 { global: "2001:db8::1".parse().unwrap(), link_local: None })
            } else {
                view.next_hop().map(NextHop::V4)
            };
            let direct = AttrSet::from_view(&view, nh);
            let mut owned = Attrs::from_view(&view);
            owned.next_hop = nh;
            let route_len = owned.as_path.route_len() as u32;
            let neighbor_as = owned.as_path.first_as();
            proptest::prop_assert_eq!(&direct.to_attrs(), &owned);
            let owned = AttrSet::from(owned);
            proptest::prop_assert_eq!(&direct.packed, &owned.packed);
            proptest::prop_assert_eq!(direct.route_len, route_len);
            proptest::prop_assert_eq!(direct.neighbor_as, neighbor_as);
        }
    }
}
