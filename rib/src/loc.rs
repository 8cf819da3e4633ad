//! The Loc-RIB: one destination per prefix, holding every path the speaker knows for it in
//! decision order (RFC 4271 §3.2, §9.1).
//!
//! Destinations live in a dense table indexed by *slot*. The slot is what everything else
//! keys on (Adj-RIB-In keys, each update group's Adj-RIB-Out, dirty sets): a 4-byte index
//! instead of a prefix, and a vector instead of a hash map per group. A slot is reused only
//! once nothing refers to it any more ([`Dest::refs`]).

use std::sync::Arc;

use ipnet::IpNet;

use crate::attrs::AttrSet;
use crate::best::Ineligible;
use crate::fx::FxHashMap;

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

/// Every path of one prefix.
#[derive(Debug)]
pub(crate) struct Dest {
    pub(crate) prefix: IpNet,
    /// In decision order: the first `eligible` can be used, the first of them is the best.
    pub(crate) paths: Vec<Path>,
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
    v4: FxHashMap<(u32, u8), u32>,
    v6: FxHashMap<(u128, u8), u32>,
    dests: Vec<Dest>,
    free: Vec<u32>,
}

impl LocRib {
    /// The slot of `prefix`, if it has one.
    #[inline]
    pub(crate) fn slot(&self, prefix: &IpNet) -> Option<u32> {
        match prefix {
            IpNet::V4(p) => self.v4.get(&(p.addr().to_bits(), p.prefix_len())).copied(),
            IpNet::V6(p) => self.v6.get(&(p.addr().to_bits(), p.prefix_len())).copied(),
        }
    }

    /// The slot of `prefix`, allocated now if needed.
    #[inline]
    pub(crate) fn slot_or_insert(&mut self, prefix: IpNet) -> u32 {
        let next = match self.free.last() {
            Some(&s) => s,
            None => self.dests.len() as u32,
        };
        let slot = *match prefix {
            IpNet::V4(p) => self
                .v4
                .entry((p.addr().to_bits(), p.prefix_len()))
                .or_insert(next),
            IpNet::V6(p) => self
                .v6
                .entry((p.addr().to_bits(), p.prefix_len()))
                .or_insert(next),
        };
        if slot == next {
            let dest = Dest {
                prefix,
                paths: Vec::new(),
                eligible: 0,
                refs: 0,
                live: true,
            };
            if self.free.pop().is_some() {
                self.dests[slot as usize] = dest;
            } else {
                self.dests.push(dest);
            }
        }
        slot
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

    /// Releases `slot` if no path and no reference remain.
    pub(crate) fn try_free(&mut self, slot: u32) {
        let Some(d) = self.dests.get_mut(slot as usize) else {
            return;
        };
        if !d.paths.is_empty() || d.refs > 0 || !d.live {
            return;
        }
        match d.prefix {
            IpNet::V4(p) => self.v4.remove(&(p.addr().to_bits(), p.prefix_len())),
            IpNet::V6(p) => self.v6.remove(&(p.addr().to_bits(), p.prefix_len())),
        };
        d.live = false;
        d.paths = Vec::new();
        self.free.push(slot);
    }

    /// How many prefixes are held.
    pub(crate) fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
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
