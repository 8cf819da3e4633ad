//! The table the injector announces, generated deterministically from a seed: N distinct
//! IPv4 prefixes in an Internet-like mix of lengths, in groups of 1 to 8 that share one
//! attribute set.
//!
//! Nothing here reads a clock or the OS's randomness: the same seed, N and excluded ASes
//! give the same table on every machine.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use bgp_wire::attr::{Community, Origin};

/// Prefix lengths and their weight in thousandths: mostly /24, then /22, /23, /20, /21,
/// and a tail of /16 to /19 (the shape of the IPv4 Internet table).
pub(crate) const LENGTH_MIX: [(u8, u32); 9] = [
    (24, 570),
    (22, 130),
    (23, 110),
    (20, 70),
    (21, 60),
    (19, 30),
    (18, 15),
    (17, 10),
    (16, 5),
];

/// AS path lengths 1..=10 and their weights in percent (most paths 3 to 5 hops).
const PATH_LEN_MIX: [(usize, u32); 10] = [
    (1, 5),
    (2, 12),
    (3, 22),
    (4, 22),
    (5, 16),
    (6, 10),
    (7, 6),
    (8, 4),
    (9, 2),
    (10, 1),
];

/// First octets never used: 0/8, private 10/8, shared 100/8 (the fabric mode's 100.64/10
/// is inside), loopback 127/8, link-local 169/8, private 172/8 and 192/8, benchmarking
/// 198/8; and 224 and above (multicast, reserved).
const EXCLUDED_FIRST_OCTETS: [u8; 8] = [0, 10, 100, 127, 169, 172, 192, 198];

/// Private 2-octet ASes (RFC 6996), and a private 4-octet range (RFC 6996) for some hops.
const AS2_RANGE: (u32, u32) = (64512, 65534);
const AS4_RANGE: (u32, u32) = (4_200_000_000, 4_294_967_294);

/// splitmix64: small, fast, and good enough for test data.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed ^ 0x6a09_e667_f3bc_c908)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u32, hi: u32) -> u32 {
        let span = u64::from(hi - lo) + 1;
        lo + ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as u32
    }

    /// True with probability `num / den`.
    pub(crate) fn chance(&mut self, num: u32, den: u32) -> bool {
        self.range(0, den - 1) < num
    }

    /// Picks from `(value, weight)` pairs.
    fn weighted<T: Copy>(&mut self, table: &[(T, u32)]) -> T {
        let total: u32 = table.iter().map(|&(_, w)| w).sum();
        let mut r = self.range(0, total - 1);
        for &(v, w) in table {
            if r < w {
                return v;
            }
            r -= w;
        }
        table[table.len() - 1].0
    }
}

/// One IPv4 prefix, host bits clear.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Prefix {
    pub(crate) addr: u32,
    pub(crate) len: u8,
}

impl Prefix {
    /// The prefix as one number, for lookups: address, then length.
    pub(crate) const fn key(self) -> u64 {
        ((self.addr as u64) << 8) | self.len as u64
    }

    pub(crate) fn net(self) -> ipnet::Ipv4Net {
        ipnet::Ipv4Net::new_assert(Ipv4Addr::from(self.addr), self.len)
    }
}

/// The attributes one group of prefixes shares (NEXT_HOP and LOCAL_PREF are the
/// session's, added when encoding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AttrSet {
    pub(crate) origin: Origin,
    /// One AS_SEQUENCE, leftmost first.
    pub(crate) as_path: Vec<u32>,
    pub(crate) med: Option<u32>,
    pub(crate) communities: Vec<Community>,
}

/// Prefixes `start..end` of the table share `attrs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Group {
    pub(crate) start: u32,
    pub(crate) end: u32,
    pub(crate) attrs: AttrSet,
}

/// The generated table: prefixes in announcement order, and their groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Table {
    pub(crate) prefixes: Vec<Prefix>,
    pub(crate) groups: Vec<Group>,
}

impl Table {
    /// `n` distinct prefixes from `seed`; AS paths never contain an AS of `exclude` (our
    /// own and the target's, so that no speaker sees a loop).
    pub(crate) fn generate(n: usize, seed: u64, exclude: &[u32]) -> Result<Self, String> {
        let mut rng = Rng::new(seed);
        let prefixes = prefixes(&mut rng, n)?;
        let mut groups = Vec::with_capacity(n / 4 + 1);
        let mut start = 0;
        while start < n {
            let size = rng.range(1, 8) as usize;
            let end = (start + size).min(n);
            groups.push(Group {
                start: start as u32,
                end: end as u32,
                attrs: attr_set(&mut rng, exclude),
            });
            start = end;
        }
        Ok(Self { prefixes, groups })
    }
}

/// `n` distinct prefixes. Each draw that repeats an earlier prefix is redrawn; the draws
/// are bounded, and the space (about 40 000 /16s, 10 million /24s) is far larger than the
/// counts asked for, so the bound is never reached in practice.
fn prefixes(rng: &mut Rng, n: usize) -> Result<Vec<Prefix>, String> {
    let first_octets: Vec<u8> = (1..224u8)
        .filter(|o| !EXCLUDED_FIRST_OCTETS.contains(o))
        .collect();
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    let max_draws = 64 * n as u64 + 1024;
    let mut draws = 0;
    while out.len() < n {
        draws += 1;
        if draws > max_draws {
            return Err(format!(
                "could not draw {n} distinct prefixes in {max_draws} draws"
            ));
        }
        let len = rng.weighted(&LENGTH_MIX);
        let first = first_octets[rng.range(0, first_octets.len() as u32 - 1) as usize];
        let rest = rng.next_u64() as u32 & 0x00ff_ffff;
        let mask = u32::MAX << (32 - len);
        let p = Prefix {
            addr: ((u32::from(first) << 24) | rest) & mask,
            len,
        };
        if seen.insert(p.key()) {
            out.push(p);
        }
    }
    Ok(out)
}

fn asn(rng: &mut Rng, exclude: &[u32]) -> u32 {
    // Bounded: with at most a few excluded ASes out of a thousand, a few draws suffice.
    for _ in 0..64 {
        let a = if rng.chance(15, 100) {
            rng.range(AS4_RANGE.0, AS4_RANGE.1)
        } else {
            rng.range(AS2_RANGE.0, AS2_RANGE.1)
        };
        if !exclude.contains(&a) {
            return a;
        }
    }
    AS4_RANGE.0 + 7
}

fn attr_set(rng: &mut Rng, exclude: &[u32]) -> AttrSet {
    let origin = match rng.range(0, 99) {
        0..=79 => Origin::IGP,
        80..=94 => Origin::INCOMPLETE,
        _ => Origin::EGP,
    };
    let hops = rng.weighted(&PATH_LEN_MIX);
    let as_path: Vec<u32> = (0..hops).map(|_| asn(rng, exclude)).collect();
    let med = rng.chance(1, 4).then(|| rng.range(0, 1000));
    let communities = if rng.chance(1, 3) {
        let count = rng.range(1, 6);
        (0..count)
            .map(|_| Community::new(rng.range(64512, 65534) as u16, rng.range(0, 999) as u16))
            .collect()
    } else {
        Vec::new()
    };
    AttrSet {
        origin,
        as_path,
        med,
        communities,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_prefixes_distinct_and_clean() {
        let t = Table::generate(50_000, 7, &[65000]).unwrap();
        assert_eq!(t.prefixes.len(), 50_000);
        let set: HashSet<_> = t.prefixes.iter().map(|p| p.key()).collect();
        assert_eq!(set.len(), 50_000, "prefixes are distinct");
        for p in &t.prefixes {
            assert!((16..=24).contains(&p.len), "{p:?}");
            assert_eq!(p.addr & !(u32::MAX << (32 - p.len)), 0, "host bits clear");
            let first = (p.addr >> 24) as u8;
            assert!(
                first < 224 && !EXCLUDED_FIRST_OCTETS.contains(&first),
                "{p:?}"
            );
        }
    }

    #[test]
    fn test_length_mix_is_internet_like() {
        let n = 100_000;
        let t = Table::generate(n, 3, &[]).unwrap();
        let mut count = [0usize; 33];
        for p in &t.prefixes {
            count[usize::from(p.len)] += 1;
        }
        for (len, weight) in LENGTH_MIX {
            let share = count[usize::from(len)] as f64 / n as f64;
            let want = f64::from(weight) / 1000.0;
            assert!(
                (share - want).abs() < 0.01,
                "/{len}: {share:.3} vs {want:.3}"
            );
        }
        // Mostly /24, then /22, /23, /20, /21, then the tail.
        let order = [24, 22, 23, 20, 21];
        for w in order.windows(2) {
            assert!(count[w[0]] > count[w[1]], "/{} before /{}", w[0], w[1]);
        }
        assert!(count[21] > (16..=19).map(|l| count[l]).max().unwrap());
    }

    #[test]
    fn test_deterministic_by_seed() {
        let a = Table::generate(5000, 42, &[65000]).unwrap();
        let b = Table::generate(5000, 42, &[65000]).unwrap();
        assert_eq!(a, b);
        let c = Table::generate(5000, 43, &[65000]).unwrap();
        assert_ne!(a.prefixes, c.prefixes);
        // A larger table starts with the smaller one's draws, but the groups take draws
        // too, so only the prefixes are a common prefix.
        let d = Table::generate(6000, 42, &[65000]).unwrap();
        assert_eq!(&d.prefixes[..5000], &a.prefixes[..]);
    }

    #[test]
    fn test_attribute_variety() {
        let t = Table::generate(20_000, 9, &[65000, 65001]).unwrap();
        let g = &t.groups;
        // Groups tile the table in order, 1 to 8 prefixes each.
        assert_eq!(g[0].start, 0);
        assert_eq!(g.last().unwrap().end, 20_000);
        for w in g.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        assert!(g.iter().all(|g| (1..=8).contains(&(g.end - g.start))));
        let share = |f: &dyn Fn(&AttrSet) -> bool| {
            g.iter().filter(|x| f(&x.attrs)).count() as f64 / g.len() as f64
        };
        let communities = share(&|a| !a.communities.is_empty());
        assert!((0.28..0.39).contains(&communities), "{communities}");
        let med = share(&|a| a.med.is_some());
        assert!((0.15..0.35).contains(&med), "{med}");
        assert!(share(&|a| a.origin == Origin::INCOMPLETE) > 0.05);
        assert!(share(&|a| a.origin == Origin::EGP) > 0.01);
        assert!(share(&|a| a.as_path.iter().any(|&x| x > 65535)) > 0.2);
        for x in g {
            let p = &x.attrs.as_path;
            assert!((1..=10).contains(&p.len()));
            assert!(!p.contains(&65000) && !p.contains(&65001));
        }
        let max_len = g.iter().map(|x| x.attrs.as_path.len()).max().unwrap();
        assert_eq!(max_len, 10);
    }
}
