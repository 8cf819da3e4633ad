//! Looking up a received prefix: the table's prefixes to their bit in a receiver's tally.
//!
//! A million receivers' lookups per second per core is the budget, so the map uses a
//! folded multiply instead of SipHash (the keys are our own, not an attacker's). A
//! receiver mostly gets the table in the order it was generated (a reflector sends in
//! arrival order), so [`PrefixIndex::get_near`] first compares the prefix after the one it
//! found last, in a sequential array, and goes to the map only when that is not it: with
//! 100 receivers of a million prefixes, the map's cache misses were most of the load
//! tool's time, on the cores the reflector under test needs.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use bgp_wire::nlri::Nlri;
use ipnet::IpNet;

use crate::generate::Prefix;

/// A hasher for `u64` keys: a 64×64→128-bit multiply folded to 64 bits, so that both the
/// low bits (bucket) and the high bits (control byte) depend on every key bit.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let m = u128::from(n ^ self.0) * 0x9e37_79b9_7f4a_7c15_u128;
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The prefixes of the table and their position.
#[derive(Debug, Default)]
pub(crate) struct PrefixIndex {
    map: HashMap<u64, u32, BuildHasherDefault<FoldHasher>>,
    /// The keys by position.
    keys: Vec<u64>,
}

impl PrefixIndex {
    pub(crate) fn new(prefixes: &[Prefix]) -> Self {
        let mut map = HashMap::with_capacity_and_hasher(prefixes.len(), Default::default());
        for (i, p) in prefixes.iter().enumerate() {
            map.insert(p.key(), i as u32);
        }
        let keys = prefixes.iter().map(|p| p.key()).collect();
        Self { map, keys }
    }

    /// The key of `n` if it can be one of ours (IPv4, no ADD-PATH identifier).
    #[inline]
    fn key(n: &Nlri) -> Option<u64> {
        match (n.prefix, n.path_id) {
            (IpNet::V4(p), None) => Some(
                Prefix {
                    addr: u32::from(p.network()),
                    len: p.prefix_len(),
                }
                .key(),
            ),
            _ => None,
        }
    }

    /// The position of `n` in the table, trying position `*next` before the map; `*next`
    /// becomes the position after the one found. The answer is the map's in every case
    /// (positions are unique).
    #[inline]
    pub(crate) fn get_near(&self, n: &Nlri, next: &mut usize) -> Option<usize> {
        self.get_near_key(Self::key(n)?, next)
    }

    /// [`Self::get_near`] for a prefix given as its key ([`Prefix::key`]).
    #[inline]
    pub(crate) fn get_near_key(&self, key: u64, next: &mut usize) -> Option<usize> {
        let i = if self.keys.get(*next) == Some(&key) {
            *next
        } else {
            *self.map.get(&key)? as usize
        };
        *next = i + 1;
        Some(i)
    }

    /// The position of `n` in the table, if it is one of ours (no ADD-PATH identifier).
    #[cfg(test)]
    pub(crate) fn get(&self, n: &Nlri) -> Option<usize> {
        self.map.get(&Self::key(n)?).map(|&i| i as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_index_finds_exactly_the_table() {
        let t = crate::generate::Table::generate(10_000, 2, &[]).unwrap();
        let idx = PrefixIndex::new(&t.prefixes);
        for (i, p) in t.prefixes.iter().enumerate() {
            assert_eq!(idx.get(&Nlri::new(IpNet::V4(p.net()))), Some(i));
        }
        let other = Nlri::new("100.64.0.0/26".parse().unwrap());
        assert_eq!(idx.get(&other), None);
        // In order, out of order, and with strangers between: the same answers.
        let mut next = 0;
        let order = (0..t.prefixes.len()).chain((0..t.prefixes.len()).rev().step_by(7));
        for i in order {
            let n = Nlri::new(IpNet::V4(t.prefixes[i].net()));
            assert_eq!(idx.get_near(&n, &mut next), Some(i));
            assert_eq!(next, i + 1);
            let mut keep = next;
            assert_eq!(idx.get_near(&other, &mut keep), None);
            assert_eq!(keep, next);
        }
        // Nothing longer than /24 is generated.
        let p = t.prefixes.iter().find(|p| p.len == 24).unwrap();
        let longer = ipnet::Ipv4Net::new_assert(p.net().network(), p.len + 1);
        assert_eq!(idx.get(&Nlri::new(IpNet::V4(longer))), None);
    }
}
