//! The Loc-RIB: one destination per prefix, holding every path the speaker knows for it in
//! decision order (RFC 4271 §3.2, §9.1).
//!
//! Destinations live in a dense table indexed by *slot*. The slot is what everything else
//! keys on (Adj-RIB-In keys, each update group's Adj-RIB-Out, dirty sets): a 4-byte index
//! instead of a prefix, and a vector instead of a hash map per group. A slot is reused only
//! once nothing refers to it any more ([`Dest::refs`]).
//!
//! Sizes, per prefix of a table learned from one peer: the destination with its one path
//! inline (48 bytes, no allocation of its own) and 4 bytes of index (plus the hash table's
//! control byte and spare room): the index holds slots only, and compares prefixes in the
//! destinations.
//!
//! Freeing a slot leaves its index entry in place: an entry matches only a live slot that
//! holds the prefix looked for, so a stale one (its slot free, or taken by another prefix)
//! never answers, and the index is rebuilt from the live destinations when stale entries
//! fill it. Withdrawing a prefix then costs one probe of the index, not two (the probe
//! that found the slot, and another to remove the entry once nothing refers to the slot,
//! each a random access into a table of a million entries).

use std::hash::Hasher;
use std::sync::Arc;

use hashbrown::HashTable;
use ipnet::IpNet;

use crate::attrs::AttrSet;
use crate::best::Ineligible;
use crate::fx::FxHasher;

const STALE: u8 = 1;
const ECMP: u8 = 2;

/// One path of a prefix: a route from one peer (and, under ADD-PATH, one path identifier).
#[derive(Clone, Debug)]
pub(crate) struct Path {
    pub(crate) attrs: Arc<AttrSet>,
    /// Source peer index.
    pub(crate) peer: u32,
    /// Path identifier received (RFC 7911), 0 without ADD-PATH.
    pub(crate) rx_id: u32,
    /// Path identifier this speaker sends the path under (RFC 7911).
    pub(crate) tx_id: u32,
    flags: u8,
    /// Why the path can never be chosen, found when it arrived.
    pub(crate) reason: Option<Ineligible>,
}

impl Path {
    pub(crate) fn new(
        attrs: Arc<AttrSet>,
        peer: u32,
        rx_id: u32,
        tx_id: u32,
        reason: Option<Ineligible>,
    ) -> Self {
        Self {
            attrs,
            peer,
            rx_id,
            tx_id,
            flags: 0,
            reason,
        }
    }

    /// Kept across a graceful restart, awaiting refresh (RFC 4724 §4.2).
    pub(crate) const fn is_stale(&self) -> bool {
        self.flags & STALE != 0
    }

    pub(crate) fn set_stale(&mut self, on: bool) {
        self.flags = if on {
            self.flags | STALE
        } else {
            self.flags & !STALE
        };
    }

    /// Equal to the best through the MED step.
    pub(crate) const fn is_ecmp(&self) -> bool {
        self.flags & ECMP != 0
    }

    pub(crate) fn set_ecmp(&mut self, on: bool) {
        self.flags = if on {
            self.flags | ECMP
        } else {
            self.flags & !ECMP
        };
    }
}

/// The paths of one prefix: one inline (a prefix known from one peer, the bulk of a big
/// table), more on the heap. The size of one [`Path`]: the variant is told by a value
/// [`Path::reason`] never takes, and the heap list is one pointer (a prefix with several
/// paths pays one more indirection so that the million with one pay nothing).
#[derive(Clone, Debug, Default)]
pub(crate) enum Paths {
    /// No path.
    #[default]
    Empty,
    /// One path.
    One(Path),
    /// Two or more.
    // One pointer rather than a `Vec`'s three words: what keeps the enum at one path's
    // size; the rare prefix with several paths pays the extra allocation.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Path>>),
}

impl Paths {
    pub(crate) const fn new() -> Self {
        Self::Empty
    }

    /// Appends `p`.
    pub(crate) fn push(&mut self, p: Path) {
        match self {
            // The first path of a prefix, the bulk of a table: written in place.
            Self::Empty => *self = Self::One(p),
            Self::One(_) => {
                if let Self::One(q) = std::mem::take(self) {
                    *self = Self::Many(Box::new(vec![q, p]));
                }
            }
            Self::Many(v) => v.push(p),
        }
    }

    /// Removes and returns the path at `i` (panics out of bounds, as `Vec::remove`).
    pub(crate) fn remove(&mut self, i: usize) -> Path {
        match std::mem::take(self) {
            Self::Empty => panic!("remove({i}) from no path"),
            Self::One(p) => {
                assert_eq!(i, 0, "remove({i}) from one path");
                p
            }
            Self::Many(mut v) => {
                let p = v.remove(i);
                *self = match v.len() {
                    1 => Self::One(v.pop().expect("one left")),
                    _ => Self::Many(v),
                };
                p
            }
        }
    }
}

impl std::ops::Deref for Paths {
    type Target = [Path];
    fn deref(&self) -> &[Path] {
        match self {
            Self::Empty => &[],
            Self::One(p) => std::slice::from_ref(p),
            Self::Many(v) => v,
        }
    }
}

impl std::ops::DerefMut for Paths {
    fn deref_mut(&mut self) -> &mut [Path] {
        match self {
            Self::Empty => &mut [],
            Self::One(p) => std::slice::from_mut(p),
            Self::Many(v) => v,
        }
    }
}

impl IntoIterator for Paths {
    type Item = Path;
    type IntoIter = std::vec::IntoIter<Path>;
    fn into_iter(self) -> Self::IntoIter {
        match self {
            Self::Empty => Vec::new(),
            Self::One(p) => vec![p],
            Self::Many(v) => *v,
        }
        .into_iter()
    }
}

/// Every path of one prefix.
#[derive(Debug)]
pub(crate) struct Dest {
    /// In decision order: the first `eligible` can be used, the first of them is the best.
    pub(crate) paths: Paths,
    pub(crate) prefix: IpNet,
    pub(crate) eligible: u16,
    /// How many dirty sets hold this slot plus how many update groups have advertised
    /// something for it: the slot stays allocated while any does.
    pub(crate) refs: u16,
    /// The slot holds `prefix` (it is not on the free list).
    live: bool,
}

impl Dest {
    /// The best path, if any is eligible.
    pub(crate) fn best(&self) -> Option<&Path> {
        (self.eligible > 0).then(|| &self.paths[0])
    }

    /// The eligible paths equal to the best through the MED step (the best included).
    pub(crate) fn best_paths(&self) -> impl Iterator<Item = &Path> {
        self.paths[..usize::from(self.eligible).min(self.paths.len())]
            .iter()
            .filter(|p| p.is_ecmp())
    }
}

/// The Loc-RIB's table of destinations.
#[derive(Default)]
pub(crate) struct LocRib {
    /// Slots hashed by prefix (see [`prefix_hash`]): every live slot under its prefix,
    /// and stale entries left by freed slots (see the module's documentation).
    index: HashTable<u32>,
    dests: Vec<Dest>,
    free: Vec<u32>,
    /// How many slots are live.
    live: usize,
}

/// What the index hashes a prefix to.
#[inline]
fn prefix_hash(prefix: &IpNet) -> u64 {
    let mut h = FxHasher::default();
    match prefix {
        IpNet::V4(p) => h.write_u64(u64::from(p.addr().to_bits()) << 8 | u64::from(p.prefix_len())),
        IpNet::V6(p) => {
            h.write_u128(p.addr().to_bits());
            h.write_u8(p.prefix_len());
        }
    }
    h.finish()
}

/// Whether the index entry `slot` answers for `prefix`: its slot is live and holds it.
#[inline]
fn holds(dests: &[Dest], slot: u32, prefix: &IpNet) -> bool {
    let d = &dests[slot as usize];
    d.live && d.prefix == *prefix
}

impl LocRib {
    /// The slot of `prefix`, if it has one.
    #[inline]
    pub(crate) fn slot(&self, prefix: &IpNet) -> Option<u32> {
        let dests = &self.dests;
        self.index
            .find(prefix_hash(prefix), |&s| holds(dests, s, prefix))
            .copied()
    }

    /// The slot of `prefix`, allocated now if needed.
    #[inline]
    pub(crate) fn slot_or_insert(&mut self, prefix: IpNet) -> u32 {
        if self.index.len() >= self.index.capacity() {
            self.regrow();
        }
        let dests = &self.dests;
        let entry = self.index.entry(
            prefix_hash(&prefix),
            |&s| holds(dests, s, &prefix),
            |&s| prefix_hash(&dests[s as usize].prefix),
        );
        let vacant = match entry {
            hashbrown::hash_table::Entry::Occupied(e) => return *e.get(),
            hashbrown::hash_table::Entry::Vacant(v) => v,
        };
        let dest = Dest {
            paths: Paths::new(),
            prefix,
            eligible: 0,
            refs: 0,
            live: true,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.dests[s as usize] = dest;
                s
            }
            None => {
                self.dests.push(dest);
                self.dests.len() as u32 - 1
            }
        };
        vacant.insert(slot);
        self.live += 1;
        slot
    }

    /// Builds the index anew with room for twice the live prefixes, from the
    /// destinations in slot order.
    ///
    /// hashbrown's own growth visits the old table's buckets and hashes each slot's
    /// prefix, a read of a destination in random order (the profile of a million-prefix
    /// table had it at 4.6% of the reflector's CPU); a walk of the destinations reads them
    /// in order and leaves only the writes into the new table random. The new table also
    /// drops the old one's tombstones and stale entries: when those filled it, it is
    /// rebuilt at the size the live prefixes need, smaller if most were freed.
    #[cold]
    fn regrow(&mut self) {
        let mut index = HashTable::with_capacity((self.live * 2).max(64));
        for (slot, d) in self.dests.iter().enumerate() {
            if d.live {
                // Never grows: the capacity covers every live slot.
                index.insert_unique(prefix_hash(&d.prefix), slot as u32, |&s| {
                    prefix_hash(&self.dests[s as usize].prefix)
                });
            }
        }
        self.index = index;
    }

    /// Whether `slot` is live and holds `prefix`: a guess checked without the index.
    #[inline]
    pub(crate) fn holds_at(&self, slot: u32, prefix: &IpNet) -> bool {
        self.dests
            .get(slot as usize)
            .is_some_and(|d| d.live && d.prefix == *prefix)
    }

    #[inline]
    pub(crate) fn dest(&self, slot: u32) -> &Dest {
        &self.dests[slot as usize]
    }

    #[inline]
    pub(crate) fn dest_mut(&mut self, slot: u32) -> &mut Dest {
        &mut self.dests[slot as usize]
    }

    /// Slots handed out so far (live or free): the bound of slot walks.
    pub(crate) fn slot_count(&self) -> u32 {
        self.dests.len() as u32
    }

    /// Whether `slot` holds a prefix.
    pub(crate) fn is_live(&self, slot: u32) -> bool {
        self.dests.get(slot as usize).is_some_and(|d| d.live)
    }

    /// Releases `slot` if no path and no reference remain. Its index entry stays, stale
    /// (see the module's documentation).
    pub(crate) fn try_free(&mut self, slot: u32) {
        let Some(d) = self.dests.get_mut(slot as usize) else {
            return;
        };
        if !d.paths.is_empty() || d.refs > 0 || !d.live {
            return;
        }
        d.live = false;
        d.paths = Paths::new();
        self.free.push(slot);
        self.live -= 1;
    }

    /// How many prefixes are held.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Live slots with their destinations, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Dest)> {
        self.dests
            .iter()
            .enumerate()
            .filter(|(_, d)| d.live)
            .map(|(i, d)| (i as u32, d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        // What a million prefixes cost: keep it from growing unnoticed.
        assert_eq!(size_of::<Path>(), 24);
        assert_eq!(size_of::<Paths>(), 24);
        assert_eq!(size_of::<Dest>(), 48);
    }

    #[test]
    fn paths_go_from_none_to_one_to_many_and_back() {
        let mut store = crate::attrs::AttrStore::default();
        let set = store.intern(crate::Attrs::default());
        let path = |peer| Path::new(set.clone(), peer, 0, 0, None);
        let peers = |ps: &Paths| ps.iter().map(|p| p.peer).collect::<Vec<_>>();
        let mut ps = Paths::new();
        assert!(ps.is_empty());
        ps.push(path(1));
        assert!(matches!(ps, Paths::One(_)));
        ps.push(path(2));
        ps.push(path(3));
        assert_eq!(peers(&ps), [1, 2, 3]);
        ps[2].set_stale(true);
        assert!(ps[2].is_stale() && !ps[1].is_stale());
        assert_eq!(ps.remove(1).peer, 2);
        assert_eq!(peers(&ps), [1, 3]);
        assert_eq!(ps.remove(0).peer, 1);
        assert!(matches!(ps, Paths::One(_)));
        assert_eq!(peers(&ps), [3]);
        ps.push(path(4));
        assert_eq!(
            ps.clone().into_iter().map(|p| p.peer).collect::<Vec<_>>(),
            [3, 4]
        );
        assert_eq!(ps.remove(1).peer, 4);
        assert_eq!(ps.remove(0).peer, 3);
        assert!(matches!(ps, Paths::Empty) && ps.is_empty());
    }

    #[test]
    fn the_index_grows_and_regrows_past_frees() {
        // Through several rebuilds of the index (64, 128, ... entries), with slots freed
        // between them (tombstones, free slots skipped by the rebuild): every live
        // prefix is found at its slot, and no freed one.
        let mut loc = LocRib::default();
        let net = |i: u32| IpNet::V4(ipnet::Ipv4Net::new_assert((i << 8).into(), 24));
        let mut slots = Vec::new();
        for i in 0..5000u32 {
            slots.push(loc.slot_or_insert(net(i)));
            if i % 3 == 0 {
                loc.try_free(slots[i as usize]);
            }
        }
        for i in 5000..12_000u32 {
            slots.push(loc.slot_or_insert(net(i)));
        }
        let freed = 5000usize.div_ceil(3);
        assert_eq!(loc.len(), 12_000 - freed);
        // Freed slots were taken again by the next prefix.
        assert!(loc.slot_count() as usize <= 12_000 - freed + 1);
        for i in 0..12_000u32 {
            let want = (i >= 5000 || i % 3 != 0).then(|| slots[i as usize]);
            assert_eq!(loc.slot(&net(i)), want, "prefix {i}");
        }
        assert!(loc.index.capacity() >= loc.len());
    }

    #[test]
    fn stale_entries_never_answer_and_do_not_pile_up() {
        // Freed slots leave their entries in the index: a slot taken again by another
        // prefix, or by the same one, must answer for its new prefix only; a prefix that
        // flaps a hundred thousand times must not grow the index; a table withdrawn
        // whole and announced again is found whole.
        let mut loc = LocRib::default();
        let net = |i: u32| IpNet::V4(ipnet::Ipv4Net::new_assert((i << 8).into(), 24));
        let a = loc.slot_or_insert(net(1));
        loc.try_free(a);
        assert_eq!(loc.slot(&net(1)), None);
        let b = loc.slot_or_insert(net(2));
        assert_eq!(b, a, "the freed slot is taken again");
        assert_eq!(loc.slot(&net(1)), None);
        assert_eq!(loc.slot(&net(2)), Some(b));
        loc.try_free(b);
        assert_eq!(loc.slot(&net(2)), None);
        assert_eq!(loc.len(), 0);
        for _ in 0..100_000 {
            let s = loc.slot_or_insert(net(3));
            assert_eq!(loc.slot(&net(3)), Some(s));
            loc.try_free(s);
            assert_eq!(loc.slot(&net(3)), None);
        }
        assert!(loc.index.capacity() <= 128, "{}", loc.index.capacity());
        for round in 0..3 {
            let slots: Vec<u32> = (0..10_000).map(|i| loc.slot_or_insert(net(i))).collect();
            assert_eq!(loc.len(), 10_000, "round {round}");
            for (i, &s) in slots.iter().enumerate() {
                assert_eq!(loc.slot(&net(i as u32)), Some(s));
                assert_eq!(loc.dest(s).prefix, net(i as u32));
            }
            for &s in &slots {
                loc.try_free(s);
            }
            assert_eq!(loc.len(), 0);
            assert!((0..10_000).all(|i| loc.slot(&net(i)).is_none()));
            assert!(loc.index.capacity() <= 40_000, "{}", loc.index.capacity());
        }
    }

    #[test]
    fn slots_are_found_freed_and_reused() {
        let mut loc = LocRib::default();
        let a: IpNet = "10.0.0.0/8".parse().unwrap();
        let b: IpNet = "10.0.0.0/16".parse().unwrap();
        let c: IpNet = "2001:db8::/32".parse().unwrap();
        let (sa, sb, sc) = (
            loc.slot_or_insert(a),
            loc.slot_or_insert(b),
            loc.slot_or_insert(c),
        );
        assert_eq!((sa, sb, sc), (0, 1, 2));
        assert_eq!(loc.slot_or_insert(b), sb);
        assert_eq!(loc.slot(&c), Some(sc));
        assert_eq!(loc.len(), 3);
        loc.try_free(sb);
        assert_eq!(loc.slot(&b), None);
        assert_eq!(loc.slot(&a), Some(sa));
        assert_eq!(loc.len(), 2);
        let d: IpNet = "192.0.2.0/24".parse().unwrap();
        assert_eq!(loc.slot_or_insert(d), sb);
        assert!(loc.dest(sb).paths.is_empty());
        assert_eq!(loc.slot(&d), Some(sb));
        assert!(
            loc.iter()
                .all(|(s, dest)| loc.slot(&dest.prefix) == Some(s))
        );
    }
}
