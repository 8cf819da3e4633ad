//! Adj-RIB-Out (RFC 4271 §3.2), one per update group: what the group's peers have been
//! sent, and the outgoing attribute sets, each encoded once per group.
//!
//! The state per prefix is an index into the group's table of encoded attribute sets, in a
//! vector indexed by Loc-RIB slot (4 bytes per prefix per group); only ADD-PATH groups,
//! which may hold several paths per prefix, use a map.

use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::sync::Arc;

use bgp_wire::attr::{
    AsPath, AttrFlags, AttrType, NextHop, PathAttribute, as_path, put_attr_header,
};
use bgp_wire::header::HEADER_LEN;
use bgp_wire::{Family, SessionCtx};
use bytes::{BufMut, BytesMut};
use hashbrown::HashTable;

use crate::attrs::{AttrSet, Attrs};
use crate::fx::{FxHashMap, FxHasher};
use crate::reflect::Outgoing;

/// What an outgoing attribute set is cached under: the interned input set's id, the
/// source peer and its BGP identifier (ORIGINATOR_ID may come from it, and a peer may
/// come back as another router while the group still holds entries of its routes), the
/// export policy's rule mask and the family (the next hop may depend on it).
pub(crate) type MemoKey = (u64, u32, Ipv4Addr, u64, Family);

/// An outgoing attribute set: what the group sends for the paths that carry one input
/// set, from one source, under one export rule mask, in one family.
///
/// A table with few prefixes per attribute set has about as many of these per group as
/// attribute sets, so they hold no encoding (40 bytes, and 5 in the memo's index): the
/// group encodes an entry once per drain that sends it ([`crate::group`]), which for a
/// table being advertised is once.
#[derive(Debug)]
pub(crate) struct OutEntry {
    /// The input set (kept while the entry is advertised).
    pub(crate) attrs: Arc<AttrSet>,
    /// The export policy's rule mask.
    pub(crate) mask: u64,
    src: u32,
    src_id: Ipv4Addr,
    /// ORIGINATOR_ID as sent: never sent to the peer with that identifier (RFC 4456 §8).
    pub(crate) originator: Option<Ipv4Addr>,
    refs: u32,
    family: Family,
}

impl OutEntry {
    /// The family the entry is for.
    #[inline]
    pub(crate) fn family(&self) -> Family {
        self.family
    }

    /// The source peer: never sent back to it.
    #[inline]
    pub(crate) fn src(&self) -> u32 {
        self.src
    }

    /// The key the entry is cached under.
    pub(crate) fn key(&self) -> MemoKey {
        (
            self.attrs.id(),
            self.src,
            self.src_id,
            self.mask,
            self.family,
        )
    }
}

#[inline]
fn memo_hash(key: &MemoKey) -> u64 {
    let mut h = FxHasher::default();
    key.hash(&mut h);
    h.finish()
}

/// A group's outgoing attribute sets, reference-counted by the prefixes advertised with
/// them.
#[derive(Debug, Default)]
pub(crate) struct OutTable {
    entries: Vec<Option<OutEntry>>,
    free: Vec<u32>,
    /// Entry ids by [`MemoKey`], which the entries hold.
    memo: HashTable<u32>,
    unused: Vec<u32>,
    /// Input sets of entries freed, for the RIB to release from its intern table
    /// ([`OutTable::take_released`]).
    released: Vec<Arc<AttrSet>>,
}

impl OutTable {
    /// The entry cached under `key`.
    #[inline]
    pub(crate) fn lookup(&self, key: &MemoKey) -> Option<u32> {
        let entries = &self.entries;
        self.memo
            .find(memo_hash(key), |&id| {
                entries[id as usize - 1]
                    .as_ref()
                    .is_some_and(|e| e.key() == *key)
            })
            .copied()
    }

    /// Adds an entry (ids start at 1; 0 means "nothing advertised") for the input set
    /// and the rest of `key` ([`MemoKey`]), which must not be cached yet.
    pub(crate) fn insert(
        &mut self,
        attrs: Arc<AttrSet>,
        key: MemoKey,
        originator: Option<Ipv4Addr>,
    ) -> u32 {
        let (_, src, src_id, mask, family) = key;
        let entry = OutEntry {
            attrs,
            mask,
            src,
            src_id,
            originator,
            refs: 0,
            family,
        };
        let hash = memo_hash(&entry.key());
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize - 1] = Some(entry);
                id
            }
            None => {
                self.entries.push(Some(entry));
                self.entries.len() as u32
            }
        };
        let entries = &self.entries;
        self.memo.insert_unique(hash, id, |&i| {
            entries[i as usize - 1]
                .as_ref()
                .map_or(0, |e| memo_hash(&e.key()))
        });
        // Unused until a prefix refers to it.
        self.unused.push(id);
        id
    }

    #[inline]
    pub(crate) fn get(&self, id: u32) -> Option<&OutEntry> {
        self.entries.get((id as usize).checked_sub(1)?)?.as_ref()
    }

    #[inline]
    pub(crate) fn incref(&mut self, id: u32) {
        if let Some(Some(e)) = self.entries.get_mut(id as usize - 1) {
            e.refs += 1;
        }
    }

    #[inline]
    pub(crate) fn decref(&mut self, id: u32) {
        if let Some(Some(e)) = self.entries.get_mut(id as usize - 1) {
            e.refs -= 1;
            if e.refs == 0 {
                self.unused.push(id);
            }
        }
    }

    /// Frees the entries no prefix uses any more. Called after a drain has encoded its
    /// messages, so that an entry that lost its last prefix mid-drain is still there to
    /// encode from.
    pub(crate) fn collect(&mut self) {
        for id in std::mem::take(&mut self.unused) {
            let i = id as usize - 1;
            if let Some(Some(e)) = self.entries.get(i)
                && e.refs == 0
            {
                if let Ok(m) = self.memo.find_entry(memo_hash(&e.key()), |&x| x == id) {
                    m.remove();
                }
                if let Some(e) = self.entries[i].take() {
                    self.released.push(e.attrs);
                }
                self.free.push(id);
            }
        }
        if self.memo.is_empty() {
            // Every prefix withdrawn: give the table's memory back.
            let released = std::mem::take(&mut self.released);
            *self = Self::default();
            self.released = released;
        }
    }

    /// The input sets of the entries freed since the last call: the RIB's intern table
    /// drops a set with its last user, which may be one of these.
    pub(crate) fn take_released(&mut self) -> Vec<Arc<AttrSet>> {
        std::mem::take(&mut self.released)
    }

    /// Every entry's input set, the table emptied: for a group that is dissolved.
    pub(crate) fn release_all(&mut self) -> Vec<Arc<AttrSet>> {
        let mut v = std::mem::take(&mut self.released);
        v.extend(self.entries.drain(..).flatten().map(|e| e.attrs));
        *self = Self::default();
        v
    }

    /// How many entries are live.
    pub(crate) fn len(&self) -> usize {
        self.memo.len()
    }
}

/// What a group has advertised, per Loc-RIB slot: `(sent path id, out entry)` pairs.
#[derive(Debug)]
pub(crate) enum AdjOut {
    /// One path per prefix: the entry id, 0 for none.
    Single(Vec<u32>),
    /// ADD-PATH: the paths advertised per prefix, sorted by path id.
    Multi(FxHashMap<u32, Vec<(u32, u32)>>),
}

impl AdjOut {
    /// Appends the advertised state of `slot` to `buf`.
    #[inline]
    pub(crate) fn get(&self, slot: u32, buf: &mut Vec<(u32, u32)>) {
        match self {
            Self::Single(v) => {
                if let Some(&id) = v.get(slot as usize)
                    && id != 0
                {
                    buf.push((0, id));
                }
            }
            Self::Multi(m) => {
                if let Some(s) = m.get(&slot) {
                    buf.extend_from_slice(s);
                }
            }
        }
    }

    /// Replaces the advertised state of `slot`.
    #[inline]
    pub(crate) fn set(&mut self, slot: u32, state: &[(u32, u32)]) {
        match self {
            Self::Single(v) => {
                let i = slot as usize;
                if i >= v.len() {
                    if state.is_empty() {
                        return;
                    }
                    v.resize(i + 1, 0);
                }
                v[i] = state.first().map_or(0, |s| s.1);
            }
            Self::Multi(m) => {
                if state.is_empty() {
                    m.remove(&slot);
                } else {
                    m.insert(slot, state.to_vec());
                }
            }
        }
    }

    /// Slots with something advertised, in slot order.
    pub(crate) fn slots(&self) -> Vec<u32> {
        match self {
            Self::Single(v) => v
                .iter()
                .enumerate()
                .filter(|(_, id)| **id != 0)
                .map(|(i, _)| i as u32)
                .collect(),
            Self::Multi(m) => {
                let mut s: Vec<u32> = m.keys().copied().collect();
                s.sort_unstable();
                s
            }
        }
    }

    /// The first slot at or after `from`, before `end`, with something advertised:
    /// no allocation (an ADD-PATH group looks each slot up).
    pub(crate) fn next_slot(&self, from: u32, end: u32) -> Option<u32> {
        match self {
            Self::Single(v) => {
                let end = (end as usize).min(v.len());
                let from = (from as usize).min(end);
                v[from..end]
                    .iter()
                    .position(|id| *id != 0)
                    .map(|i| (from + i) as u32)
            }
            Self::Multi(m) => {
                if m.is_empty() {
                    return None;
                }
                (from..end).find(|s| m.contains_key(s))
            }
        }
    }

    /// How many paths are advertised.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Single(v) => v.iter().filter(|id| **id != 0).count(),
            Self::Multi(m) => m.values().map(Vec::len).sum(),
        }
    }
}

/// Encodes outgoing attributes for `ctx` in ascending type order (RFC 4271 §5, RFC 7606
/// §5.1); returns the bytes and the MP_REACH_NLRI next hop, or `None` when the route
/// cannot be sent on this session (no usable next hop, or too big for any message).
/// Takes the attributes by value: their lists move into the encoder rather than being
/// copied (one encoding per attribute set, hundreds of thousands for a full table).
pub(crate) fn encode(a: Attrs, family: Family, ctx: &SessionCtx) -> Option<Encoded> {
    let nh = a.next_hop?;
    // RFC 6793 §3: confederation segments never go into AS4_PATH.
    let as4_path = (!ctx.four_octet_as && a.as_path.needs_four_octets()).then(|| AsPath {
        segments: a
            .as_path
            .segments
            .iter()
            .filter(|s| matches!(s.ty.0, 1 | 2))
            .cloned()
            .collect(),
    });
    let mut v: Vec<PathAttribute> = Vec::with_capacity(12);
    v.push(PathAttribute::Origin(a.origin));
    v.push(PathAttribute::AsPath(a.as_path));
    let mp = mp_next_hop(family, nh, ctx)?;
    if let (None, NextHop::V4(x)) = (mp, nh) {
        v.push(PathAttribute::NextHop(x));
    }
    if let Some(m) = a.med {
        v.push(PathAttribute::MultiExitDisc(m));
    }
    if ctx.ibgp {
        if let Some(lp) = a.local_pref {
            v.push(PathAttribute::LocalPref(lp));
        }
        if let Some(o) = a.originator_id {
            v.push(PathAttribute::OriginatorId(o));
        }
        if !a.cluster_list.is_empty() {
            v.push(PathAttribute::ClusterList(a.cluster_list));
        }
    }
    if a.atomic_aggregate {
        v.push(PathAttribute::AtomicAggregate);
    }
    if let Some(ag) = a.aggregator {
        v.push(PathAttribute::Aggregator(ag));
        // RFC 6793 §4.2.2: a 2-octet session needs the real AS alongside AS_TRANS.
        if !ctx.four_octet_as && ag.asn > 0xffff {
            v.push(PathAttribute::As4Aggregator(ag));
        }
    }
    if !a.communities.is_empty() {
        v.push(PathAttribute::Communities(a.communities));
    }
    if !a.ext_communities.is_empty() {
        v.push(PathAttribute::ExtendedCommunities(a.ext_communities));
    }
    if let Some(p) = as4_path {
        v.push(PathAttribute::As4Path(p));
    }
    if !a.large_communities.is_empty() {
        v.push(PathAttribute::LargeCommunities(a.large_communities));
    }
    if let Some(o) = a.only_to_customer {
        v.push(PathAttribute::OnlyToCustomer(o));
    }
    v.extend(a.other.into_iter().map(PathAttribute::Unknown));
    v.sort_by_key(PathAttribute::ty);
    let len: usize = v.iter().map(|x| x.encoded_len(ctx)).sum();
    if !fits(len, mp, family, ctx) {
        return None;
    }
    let mut out = BytesMut::with_capacity(len);
    for x in &v {
        x.encode(ctx, &mut out);
    }
    Some((Vec::from(out).into_boxed_slice(), mp))
}

/// Outgoing attributes encoded, and the MP_REACH_NLRI next hop that goes with them.
pub(crate) type Encoded = (Box<[u8]>, Option<NextHop>);

/// Where next hop `nh` goes for `family`: `Some(None)` in NEXT_HOP, `Some(Some(nh))` in
/// MP_REACH_NLRI; `None` when the session cannot carry it.
fn mp_next_hop(family: Family, nh: NextHop, ctx: &SessionCtx) -> Option<Option<NextHop>> {
    match (family, nh) {
        (Family::Ipv4Unicast, NextHop::V4(_)) => Some(None),
        // RFC 8950: an IPv6 next hop for IPv4 routes only where negotiated.
        (Family::Ipv4Unicast, NextHop::V6 { .. }) if ctx.extended_next_hop.contains(family) => {
            Some(Some(nh))
        }
        (Family::Ipv6Unicast, NextHop::V6 { .. }) => Some(Some(nh)),
        _ => None,
    }
}

/// Whether `len` bytes of attributes leave room for the header, both length fields, the
/// MP_REACH_NLRI framing with next hop `mp`, and one longest prefix of the family with a
/// path id: if not, no message can carry the route (the packer checks each message
/// exactly).
fn fits(len: usize, mp: Option<NextHop>, family: Family, ctx: &SessionCtx) -> bool {
    let mp_len = mp.map_or(0, |nh| 4 + 5 + nh.len());
    let prefix = 4 + 1 + usize::from(family.max_prefix_len()) / 8;
    HEADER_LEN + 4 + len + mp_len + prefix <= ctx.max_message_len()
}

/// [`encode`] of `plan.apply(a)`, written straight from the set where that is the whole
/// of it: towards an internal group on a 4-octet session (no AS4_PATH, no
/// AS4_AGGREGATOR), for a set without unrecognised attributes. `Some(None)`, as
/// `encode`'s `None`: the route cannot be sent on this session. `None`: not such a
/// case, and the caller encodes the applied attributes.
///
/// A big table's sets are each encoded once per group, and the decoded copy, its lists
/// and the attribute list cost a dozen allocations each; here the common attributes are
/// written from the set as they are, and only extended and large communities (rare)
/// go through owned lists.
pub(crate) fn encode_direct(
    a: &AttrSet,
    plan: &Outgoing,
    family: Family,
    ctx: &SessionCtx,
) -> Option<Option<Encoded>> {
    if plan.to_ebgp.is_some() || !ctx.ibgp || !ctx.four_octet_as || !a.other().is_empty() {
        return None;
    }
    let Some(nh) = plan.next_hop.or_else(|| a.next_hop()) else {
        return Some(None);
    };
    let Some(mp) = mp_next_hop(family, nh, ctx) else {
        return Some(None);
    };
    let path_len = as_path::segments_len(a.as_path_segments(), true);
    let lists = path_len + 4 * (a.communities().len() + a.cluster_list().len());
    let mut out = BytesMut::with_capacity(64 + lists);
    let put = |x: PathAttribute, out: &mut BytesMut| x.encode(ctx, out);
    let flags = |ty: AttrType| AttrFlags(ty.expected_category().unwrap_or(0));
    put(PathAttribute::Origin(a.origin()), &mut out);
    put_attr_header(
        &mut out,
        flags(AttrType::AS_PATH),
        AttrType::AS_PATH,
        path_len,
    );
    as_path::encode_segments(a.as_path_segments(), true, &mut out);
    if let (None, NextHop::V4(x)) = (mp, nh) {
        put(PathAttribute::NextHop(x), &mut out);
    }
    if let Some(m) = a.med() {
        put(PathAttribute::MultiExitDisc(m), &mut out);
    }
    put(PathAttribute::LocalPref(plan.local_pref), &mut out);
    if a.atomic_aggregate() {
        put(PathAttribute::AtomicAggregate, &mut out);
    }
    if let Some(ag) = a.aggregator() {
        put(PathAttribute::Aggregator(ag), &mut out);
    }
    let communities = a.communities();
    if communities.len() > 0 {
        put_attr_header(
            &mut out,
            flags(AttrType::COMMUNITIES),
            AttrType::COMMUNITIES,
            communities.len() * 4,
        );
        communities.for_each(|c| out.put_u32(c.0));
    }
    if let Some(o) = plan.sent_originator(a) {
        put(PathAttribute::OriginatorId(o), &mut out);
    }
    let clusters = plan.clusters.iter().flatten().chain(a.cluster_list());
    let n = clusters.clone().count();
    if n > 0 {
        put_attr_header(
            &mut out,
            flags(AttrType::CLUSTER_LIST),
            AttrType::CLUSTER_LIST,
            n * 4,
        );
        clusters.for_each(|c| out.put_slice(&c.octets()));
    }
    if !a.ext_communities().is_empty() {
        let ext = a.ext_communities().to_vec();
        put(PathAttribute::ExtendedCommunities(ext), &mut out);
    }
    if !a.large_communities().is_empty() {
        let large = a.large_communities().to_vec();
        put(PathAttribute::LargeCommunities(large), &mut out);
    }
    if let Some(o) = a.only_to_customer() {
        put(PathAttribute::OnlyToCustomer(o), &mut out);
    }
    if !fits(out.len(), mp, family, ctx) {
        return Some(None);
    }
    Some(Some((Box::from(&out[..]), mp)))
}

#[cfg(test)]
mod tests {
    use super::*;

    use bgp_wire::attr::{
        Aggregator, AsSegment, AsSegmentType, Community, ExtCommunity, LargeCommunity, Origin,
    };
    use proptest::prelude::*;

    fn arb_attrs() -> impl Strategy<Value = Attrs> {
        let asn = prop_oneof![1u32..70_000, Just(4_200_000_000u32)];
        // Up to 300 ASes in a segment: a policy's prepends may pass 255.
        let asns = prop_oneof![
            4 => proptest::collection::vec(asn.clone(), 0..4),
            1 => (asn.clone(), 250usize..300).prop_map(|(a, n)| vec![a; n]),
            // Too long for any message of 4,096 octets.
            1 => (asn, 1000usize..1100).prop_map(|(a, n)| vec![a; n]),
        ];
        let segment = (1u8..=4, asns).prop_map(|(ty, asns)| AsSegment {
            ty: AsSegmentType(ty),
            asns,
        });
        let next_hop = prop_oneof![
            Just(None),
            Just(Some(NextHop::V4(Ipv4Addr::new(192, 0, 2, 1)))),
            Just(Some(NextHop::V6 {
                global: "2001:db8::1".parse().unwrap(),
                link_local: Some("fe80::1".parse().unwrap()),
            })),
        ];
        (
            (0u8..3, proptest::collection::vec(segment, 0..4), next_hop),
            (
                proptest::option::of(0u32..3),
                proptest::option::of(99u32..101),
                any::<bool>(),
                proptest::option::of(65000u32..65002),
            ),
            (
                // Past 63 communities, the attribute's length takes two octets.
                prop_oneof![
                    4 => proptest::collection::btree_set(0u32..6, 0..6),
                    1 => proptest::collection::btree_set(0u32..200, 60..80),
                ],
                proptest::collection::vec(0u32..3, 0..3),
                any::<bool>(),
            ),
            (
                proptest::option::of(1u8..4),
                prop_oneof![
                    4 => proptest::collection::vec(1u8..4, 0..3),
                    1 => proptest::collection::vec(1u8..250, 60..70),
                ],
                proptest::option::of(0u32..2),
            ),
        )
            .prop_map(
                |(
                    (origin, segments, next_hop),
                    (med, lp, atomic, agg),
                    (comms, large, ext),
                    (orig, clusters, otc),
                )| Attrs {
                    origin: Origin(origin),
                    as_path: AsPath { segments },
                    next_hop,
                    med,
                    local_pref: lp,
                    atomic_aggregate: atomic,
                    aggregator: agg.map(|asn| Aggregator {
                        asn,
                        address: Ipv4Addr::new(192, 0, 2, 9),
                    }),
                    communities: comms.iter().map(|c| Community(0xfde8_0000 | c)).collect(),
                    ext_communities: if ext {
                        vec![ExtCommunity([0, 2, 0, 0, 0, 1, 0, 2])]
                    } else {
                        Vec::new()
                    },
                    large_communities: large
                        .iter()
                        .map(|l| LargeCommunity {
                            global: 65000,
                            local1: *l,
                            local2: 0,
                        })
                        .collect(),
                    originator_id: orig.map(|o| Ipv4Addr::new(10, 0, 0, o)),
                    cluster_list: clusters
                        .iter()
                        .map(|c| Ipv4Addr::new(10, 1, 0, *c))
                        .collect(),
                    only_to_customer: otc,
                    other: Vec::new(),
                },
            )
    }

    fn arb_plan() -> impl Strategy<Value = Outgoing> {
        let ip = |n: u8| Ipv4Addr::new(10, 9, 0, n);
        (
            99u32..101,
            proptest::option::of(1u8..3),
            (proptest::option::of(1u8..3), proptest::option::of(1u8..3)),
            prop_oneof![
                Just(None),
                Just(Some(NextHop::V4(Ipv4Addr::new(192, 0, 2, 7)))),
                Just(Some(NextHop::V6 {
                    global: "2001:db8::7".parse().unwrap(),
                    link_local: None,
                })),
            ],
        )
            .prop_map(move |(local_pref, orig, (c0, c1), next_hop)| Outgoing {
                to_ebgp: None,
                local_pref,
                originator_id: orig.map(ip),
                clusters: [c0.map(ip), c1.map(ip)],
                next_hop,
            })
    }

    proptest! {
        /// The set written straight out is, byte for byte, what encoding the applied
        /// attributes gives, a route that cannot be sent included.
        #[test]
        fn encode_direct_matches_encode(a in arb_attrs(), plan in arb_plan(), v6 in any::<bool>(), extended in any::<bool>()) {
            let family = if v6 { Family::Ipv6Unicast } else { Family::Ipv4Unicast };
            let mut ctx = SessionCtx {
                ibgp: true,
                four_octet_as: true,
                ..SessionCtx::default()
            };
            if extended {
                ctx.extended_next_hop = bgp_wire::FamilySet::only(Family::Ipv4Unicast);
            }
            let set = AttrSet::from(a.clone());
            let direct = encode_direct(&set, &plan, family, &ctx);
            prop_assert!(direct.is_some());
            prop_assert_eq!(direct.unwrap(), encode(plan.apply(&set), family, &ctx));
            // Where it does not apply, it says so: an external group, a 2-octet session,
            // an unrecognised attribute.
            let ebgp = Outgoing {
                to_ebgp: Some(crate::reflect::ToEbgp { local_as: 65000, keep_med: false }),
                ..plan
            };
            prop_assert!(encode_direct(&set, &ebgp, family, &ctx).is_none());
            let two = SessionCtx { four_octet_as: false, ..ctx };
            prop_assert!(encode_direct(&set, &plan, family, &two).is_none());
            let other = bgp_wire::attr::RawAttribute {
                flags: AttrFlags::OPTIONAL_TRANSITIVE,
                ty: AttrType(99),
                value: bytes::Bytes::from_static(&[1]),
            };
            let with_other = AttrSet::from(Attrs { other: vec![other], ..a });
            prop_assert!(encode_direct(&with_other, &plan, family, &ctx).is_none());
        }
    }

    #[test]
    fn entry_size() {
        // One per attribute set and group: keep it from growing unnoticed.
        assert_eq!(size_of::<Option<OutEntry>>(), 40);
    }
}
