//! Adj-RIB-In (RFC 4271 §3.2): the routes one peer has sent, keyed by prefix and ADD-PATH
//! path identifier (RFC 7911 §3).
//!
//! The routes themselves (attributes, flags) live with their prefix in the Loc-RIB's
//! destination, where the decision process reads them; the per-peer table holds the keys,
//! so that dropping a peer, sweeping its stale routes or counting them against its
//! max-prefix limit costs in proportion to that peer's routes, not the whole table.
//!
//! Most keys have path identifier 0 (no ADD-PATH): those are bits of a sparse bitmap over
//! Loc-RIB slots, one 64-bit word per 64 slots that hold any, in a hash map. A full table
//! from one peer costs about a bit per route (a hash set of keys cost 9 bytes and more);
//! a peer with a handful of routes costs a word or two. Keys with another path identifier
//! go to a set of their own.

use crate::fx::{FxHashMap, FxHashSet};

/// One peer's received routes, as (Loc-RIB slot, received path identifier).
#[derive(Debug, Default)]
pub(crate) struct AdjRibIn {
    /// Slots of the routes with path identifier 0: bit `s % 64` of word `s / 64`.
    words: FxHashMap<u32, u64>,
    /// Routes with another path identifier.
    other: FxHashSet<(u32, u32)>,
    /// How many routes in all.
    len: usize,
}

impl AdjRibIn {
    /// Records a route; returns whether it is new.
    #[inline]
    pub(crate) fn insert(&mut self, slot: u32, path_id: u32) -> bool {
        let new = if path_id == 0 {
            let w = self.words.entry(slot >> 6).or_insert(0);
            let bit = 1u64 << (slot & 63);
            let new = *w & bit == 0;
            *w |= bit;
            new
        } else {
            self.other.insert((slot, path_id))
        };
        self.len += usize::from(new);
        new
    }

    /// Forgets a route; returns whether it was there.
    #[inline]
    pub(crate) fn remove(&mut self, slot: u32, path_id: u32) -> bool {
        let was = if path_id == 0 {
            match self.words.get_mut(&(slot >> 6)) {
                Some(w) => {
                    let bit = 1u64 << (slot & 63);
                    let was = *w & bit != 0;
                    *w &= !bit;
                    if *w == 0 {
                        self.words.remove(&(slot >> 6));
                    }
                    was
                }
                None => false,
            }
        } else {
            self.other.remove(&(slot, path_id))
        };
        self.len -= usize::from(was);
        was
    }

    /// How many routes the peer has sent.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The keys, sorted so that what follows from them (withdrawals, sweeps) happens in
    /// the same order on every run.
    pub(crate) fn keys(&self) -> Vec<(u32, u32)> {
        let mut k: Vec<(u32, u32)> = Vec::with_capacity(self.len);
        let mut words: Vec<(u32, u64)> = self.words.iter().map(|(i, w)| (*i, *w)).collect();
        words.sort_unstable_by_key(|w| w.0);
        for (i, mut w) in words {
            while w != 0 {
                let b = w.trailing_zeros();
                w &= w - 1;
                k.push((i << 6 | b, 0));
            }
        }
        k.extend(self.other.iter().copied());
        // Ordered words come out sorted; the others interleave by slot.
        if !self.other.is_empty() {
            k.sort_unstable();
        }
        k
    }

    /// Whether some route has a path identifier other than 0 (then [`Self::next_slot`]
    /// does not see it).
    pub(crate) fn has_other(&self) -> bool {
        !self.other.is_empty()
    }

    /// The first slot at or after `from`, before `end`, holding a route with path
    /// identifier 0: one bitmap word per 64 slots, no allocation.
    pub(crate) fn next_slot(&self, from: u32, end: u32) -> Option<u32> {
        if self.words.is_empty() {
            return None;
        }
        let mut w = from >> 6;
        // Bits below `from` in its word are behind us.
        let mut mask = u64::MAX << (from & 63);
        while u64::from(w) << 6 < u64::from(end) {
            if let Some(bits) = self.words.get(&w) {
                let b = bits & mask;
                if b != 0 {
                    let s = w << 6 | b.trailing_zeros();
                    return (s < end).then_some(s);
                }
            }
            w += 1;
            mask = u64::MAX;
        }
        None
    }

    /// Forgets every route and gives back the memory.
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sorted_counted_and_removed() {
        let mut a = AdjRibIn::default();
        for (s, p) in [
            (130, 0),
            (1, 0),
            (64, 0),
            (1, 7),
            (63, 0),
            (130, 2),
            (5000, 0),
        ] {
            assert!(a.insert(s, p));
        }
        assert!(!a.insert(64, 0));
        assert!(!a.insert(1, 7));
        assert_eq!(a.len(), 7);
        assert_eq!(
            a.keys(),
            vec![
                (1, 0),
                (1, 7),
                (63, 0),
                (64, 0),
                (130, 0),
                (130, 2),
                (5000, 0)
            ]
        );
        assert!(a.remove(64, 0));
        assert!(!a.remove(64, 0));
        assert!(!a.remove(65, 0));
        assert!(a.remove(130, 2));
        assert!(!a.remove(130, 3));
        assert_eq!(a.len(), 5);
        assert_eq!(a.keys(), vec![(1, 0), (1, 7), (63, 0), (130, 0), (5000, 0)]);
        for (s, p) in a.keys() {
            assert!(a.remove(s, p));
        }
        assert_eq!(a.len(), 0);
        assert!(a.words.is_empty() && a.other.is_empty());
    }

    #[test]
    fn next_slot_walks_the_bitmap_in_order() {
        let mut a = AdjRibIn::default();
        assert_eq!(a.next_slot(0, 10_000), None);
        let slots = [0u32, 1, 63, 64, 127, 128, 4095, 9000];
        for s in slots {
            a.insert(s, 0);
        }
        a.insert(5, 9);
        assert!(a.has_other());
        let mut seen = Vec::new();
        let mut s = 0;
        while let Some(x) = a.next_slot(s, 10_000) {
            seen.push(x);
            s = x + 1;
        }
        assert_eq!(seen, slots);
        assert_eq!(a.next_slot(2, 10_000), Some(63));
        assert_eq!(a.next_slot(129, 10_000), Some(4095));
        // `end` bounds the walk, inside a word too.
        assert_eq!(a.next_slot(129, 4095), None);
        assert_eq!(a.next_slot(129, 4096), Some(4095));
        assert_eq!(a.next_slot(9001, 10_000), None);
    }
}
