//! A coalescing set of dirty Loc-RIB slots.
//!
//! Pending changes towards a group (or the FIB) are a set, not a queue of messages: a prefix
//! that flaps ten times while a peer is behind is sent once, in its final state. The set is
//! a bitmap over slots (125 KB per million prefixes, whatever the backlog), drained in slot
//! order: deterministic, and close to arrival order since slots are handed out in order.

/// Slots marked dirty, each at most once.
#[derive(Debug, Default)]
pub(crate) struct DirtySet {
    bits: Vec<u64>,
    len: usize,
    /// No word below this one has a bit set.
    cursor: usize,
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
        self.len += 1;
        self.cursor = self.cursor.min(w);
        true
    }

    /// Takes the lowest dirty slot.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<u32> {
        while let Some(word) = self.bits.get_mut(self.cursor) {
            if *word != 0 {
                let b = word.trailing_zeros();
                *word &= !(1u64 << b);
                self.len -= 1;
                return Some((self.cursor as u32) << 6 | b);
            }
            self.cursor += 1;
        }
        None
    }

    /// How many slots are dirty.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Takes every slot, for a group that is torn down.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = u32> + '_ {
        std::iter::from_fn(|| self.pop())
    }
}
