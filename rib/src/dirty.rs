//! A coalescing set of dirty Loc-RIB slots.
//!
//! Pending changes towards a group (or the FIB) are a set, not a queue of messages: a prefix
//! that flaps ten times while a peer is behind is sent once, in its final state.

use std::collections::VecDeque;

/// Slots marked dirty, in first-marked order, each at most once.
#[derive(Debug, Default)]
pub(crate) struct DirtySet {
    bits: Vec<u64>,
    queue: VecDeque<u32>,
}

impl DirtySet {
    /// Marks `slot`; returns whether it was not already marked.
    #[inline]
    pub(crate) fn insert(&mut self, slot: u32) -> bool {
        let (w, b) = ((slot >> 6) as usize, 1u64 << (slot & 63));
        if w >= self.bits.len() {
            self.bits.resize(w + 1, 0);
        }
        if self.bits[w] & b != 0 {
            return false;
        }
        self.bits[w] |= b;
        self.queue.push_back(slot);
        true
    }

    /// Takes the oldest dirty slot.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<u32> {
        let slot = self.queue.pop_front()?;
        if let Some(w) = self.bits.get_mut((slot >> 6) as usize) {
            *w &= !(1u64 << (slot & 63));
        }
        Some(slot)
    }

    /// How many slots are dirty.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Takes every slot, for a group that is torn down.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = u32> + '_ {
        self.bits.clear();
        self.queue.drain(..)
    }
}
