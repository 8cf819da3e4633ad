//! Adj-RIB-In (RFC 4271 §3.2): the routes one peer has sent, keyed by prefix and ADD-PATH
//! path identifier (RFC 7911 §3).
//!
//! The routes themselves (attributes, flags) live with their prefix in the Loc-RIB's
//! destination, where the decision process reads them; the per-peer table holds the keys,
//! so that dropping a peer, sweeping its stale routes or counting them against its
//! max-prefix limit costs in proportion to that peer's routes, not the whole table.

use crate::fx::FxHashSet;

/// One peer's received routes, as (Loc-RIB slot, received path identifier).
#[derive(Debug, Default)]
pub(crate) struct AdjRibIn {
    keys: FxHashSet<(u32, u32)>,
}

impl AdjRibIn {
    /// Records a route; returns whether it is new.
    #[inline]
    pub(crate) fn insert(&mut self, slot: u32, path_id: u32) -> bool {
        self.keys.insert((slot, path_id))
    }

    /// Forgets a route; returns whether it was there.
    #[inline]
    pub(crate) fn remove(&mut self, slot: u32, path_id: u32) -> bool {
        self.keys.remove(&(slot, path_id))
    }

    /// How many routes the peer has sent.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The keys, sorted so that what follows from them (withdrawals, sweeps) happens in
    /// the same order on every run.
    pub(crate) fn keys(&self) -> Vec<(u32, u32)> {
        let mut k: Vec<(u32, u32)> = self.keys.iter().copied().collect();
        k.sort_unstable();
        k
    }

    /// Forgets every route and gives back the memory.
    pub(crate) fn clear(&mut self) {
        self.keys = FxHashSet::default();
    }
}
