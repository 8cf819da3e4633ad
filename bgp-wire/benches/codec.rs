//! Codec benchmarks.
//!
//! * `update/*`: one UPDATE of six attributes (ORIGIN, AS_PATH of 3 ASes, NEXT_HOP, MED,
//!   LOCAL_PREF, COMMUNITIES; iBGP) with 1, 10, 100 and 500 /24 prefixes. `decode` parses the
//!   body, visits every announced prefix and reads every attribute accessor once; `encode`
//!   is `Update::encode` from the owned form; `pack` is `UpdatePacker::announce` with a
//!   pre-encoded attribute blob. Throughput is in prefixes (elements).
//! * `table/*`: a full-table-like stream (1,000,000 IPv4 + 200,000 IPv6 prefixes, ~50,000
//!   attribute sets, packed into 4096-byte UPDATEs once, outside the timing). `decode`
//!   frames the whole stream, parses every UPDATE and visits every prefix and attribute;
//!   `encode` packs every attribute set's prefixes from pre-encoded attribute blobs.
//!   Throughput is in bytes of the stream. The stream's shape (messages, prefixes, bytes)
//!   is printed once on stderr so that per-UPDATE and per-prefix figures can be derived.
//!
//! `cargo test --benches` runs every benchmark once on a stream scaled down 100 times.

use std::collections::HashSet;
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::time::Duration;

use bgp_wire::attr::{AsPath, Community, NextHop, Origin, PathAttribute};
use bgp_wire::nlri::Nlri;
use bgp_wire::update::{Treatment, Update, UpdatePacker, UpdateView};
use bgp_wire::{Family, Framer, MessageType, SessionCtx};
use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The session every benchmark decodes and encodes for: iBGP, 4-octet AS, IPv4 and IPv6
/// unicast, 4096-byte messages, no ADD-PATH.
fn ctx() -> SessionCtx {
    SessionCtx {
        ibgp: true,
        ..SessionCtx::default()
    }
}

/// Whether this is a real `cargo bench` run (criterion gets `--bench`) rather than
/// `cargo test --benches`, which runs each benchmark once: the table is then scaled down.
fn full_size() -> bool {
    std::env::args().any(|a| a == "--bench")
}

// ---------------------------------------------------------------------------------------
// What a consumer of a decoded UPDATE does.

/// Folds one prefix into a checksum.
#[inline(always)]
fn nlri_key(n: &Nlri) -> u64 {
    match n.prefix {
        IpNet::V4(p) => u64::from(u32::from(p.addr())) ^ u64::from(p.prefix_len()),
        IpNet::V6(p) => ((u128::from(p.addr()) >> 64) as u64) ^ u64::from(p.prefix_len()),
    }
}

/// Visits every announced prefix and reads every attribute accessor once.
#[inline(always)]
fn consume(v: &UpdateView<'_>) -> u64 {
    let mut acc = 0u64;
    for n in v.announced() {
        acc = acc.wrapping_add(nlri_key(&n));
    }
    acc += v.origin().map_or(0, |o| u64::from(o.0));
    if let Some(p) = v.as_path() {
        for (ty, asns) in p.segments() {
            acc += u64::from(ty.0);
            acc += asns.map(u64::from).sum::<u64>();
        }
    }
    acc += v.next_hop().map_or(0, |a| u64::from(u32::from(a)));
    acc += v.med().map_or(0, u64::from);
    acc += v.local_pref().map_or(0, u64::from);
    acc += v.communities().map(|c| u64::from(c.0)).sum::<u64>();
    if let Some(m) = v.mp_reach() {
        acc += m.next_hop_bytes().len() as u64;
    }
    acc
}

// ---------------------------------------------------------------------------------------
// (a) One UPDATE.

fn six_attributes() -> Vec<PathAttribute> {
    vec![
        PathAttribute::Origin(Origin::IGP),
        PathAttribute::AsPath(AsPath::from_sequence([65001, 174, 4_200_000_001])),
        PathAttribute::NextHop(Ipv4Addr::new(192, 0, 2, 1)),
        PathAttribute::MultiExitDisc(50),
        PathAttribute::LocalPref(100),
        PathAttribute::Communities(vec![Community::new(65001, 100), Community::new(65001, 200)]),
    ]
}

fn slash24s(n: usize) -> Vec<Nlri> {
    (0..n as u32)
        .map(|i| {
            let a = Ipv4Addr::from(0x6440_0000 + (i << 8));
            Nlri::new(IpNet::V4(Ipv4Net::new(a, 24).unwrap()))
        })
        .collect()
}

fn encode_attrs(attrs: &[PathAttribute], ctx: &SessionCtx) -> Vec<u8> {
    let mut out = BytesMut::new();
    for a in attrs {
        a.encode(ctx, &mut out);
    }
    out.to_vec()
}

fn bench_update(c: &mut Criterion) {
    let ctx = ctx();
    let mut g = c.benchmark_group("update");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in [1usize, 10, 100, 500] {
        let update = Update {
            withdrawn: Vec::new(),
            attributes: six_attributes(),
            nlri: slash24s(n),
        };
        let mut msg = BytesMut::new();
        update.encode(&ctx, &mut msg).unwrap();
        let body = msg[19..].to_vec();
        {
            let v = UpdateView::parse(&body, &ctx);
            assert_eq!(v.treatment(), Treatment::Normal, "{:?}", v.issues());
            assert_eq!(v.announced().count(), n);
            assert_eq!(v.attributes().count(), 6);
        }
        let blob = encode_attrs(&update.attributes, &ctx);
        let packer = UpdatePacker::new(&ctx);
        {
            let mut out = BytesMut::new();
            assert_eq!(
                packer.announce(Family::Ipv4Unicast, &blob, None, &update.nlri, &mut out),
                Ok(1)
            );
            assert_eq!(out, msg, "packer and Update::encode agree");
        }

        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("decode", n), &body, |b, body| {
            b.iter(|| {
                let v = UpdateView::parse(black_box(body), &ctx);
                black_box(consume(&v))
            });
        });
        let mut out = BytesMut::with_capacity(4096);
        g.bench_with_input(BenchmarkId::new("encode", n), &update, |b, u| {
            b.iter(|| {
                out.clear();
                black_box(u).encode(&ctx, &mut out).unwrap();
                black_box(out.len())
            });
        });
        g.bench_with_input(BenchmarkId::new("pack", n), &update.nlri, |b, nlri| {
            b.iter(|| {
                out.clear();
                let k = packer
                    .announce(Family::Ipv4Unicast, black_box(&blob), None, nlri, &mut out)
                    .unwrap();
                black_box((k, out.len()))
            });
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------
// (b) A full-table-like stream.

/// xorshift64: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An index drawn with the given weights.
    fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut r = self.below(u64::from(total)) as u32;
        for (i, &w) in weights.iter().enumerate() {
            if r < w {
                return i;
            }
            r -= w;
        }
        weights.len() - 1
    }
}

/// One attribute set and the prefixes announced with it, as ranges into [`Table`]'s
/// arrays.
struct Group {
    family: Family,
    /// The encoded attributes (no MP attribute; NEXT_HOP for IPv4 only).
    attrs: Range<usize>,
    /// The MP_REACH_NLRI next hop (IPv6 only).
    next_hop: Option<NextHop>,
    nlri: Range<usize>,
}

/// The table to encode and the stream it encodes to. Attribute blobs and prefixes are
/// stored contiguously in stream order, so that `table/encode` measures the packer rather
/// than cache misses on 50,000 scattered allocations.
struct Table {
    groups: Vec<Group>,
    attrs: Vec<u8>,
    nlri: Vec<Nlri>,
    stream: Bytes,
    messages: usize,
    prefixes: usize,
}

/// An AS number as seen in today's table: mostly 16-bit, a third 32-bit, never 0 or
/// AS_TRANS.
fn asn(rng: &mut Rng) -> u32 {
    if rng.below(3) == 0 {
        131_072 + rng.below(270_000) as u32
    } else {
        1 + rng.below(64_000) as u32
    }
}

fn attribute_set(rng: &mut Rng, family: Family, ctx: &SessionCtx) -> (Vec<u8>, Option<NextHop>) {
    // 16 next hops of each family, as from 16 route-reflector clients; the neighbour AS
    // follows the next hop.
    let nh = rng.below(16) as u32;
    let neighbour = 64_512 + nh;
    let mut attrs = Vec::with_capacity(6);
    let origin = [Origin::IGP, Origin::INCOMPLETE, Origin::EGP][rng.weighted(&[85, 12, 3])];
    attrs.push(PathAttribute::Origin(origin));
    // 1 to 10 hops, mostly 3 to 5.
    let hops = 1 + rng.weighted(&[5, 15, 25, 22, 14, 8, 5, 3, 2, 1]);
    let path = std::iter::once(neighbour).chain((1..hops).map(|_| asn(rng)));
    attrs.push(PathAttribute::AsPath(AsPath::from_sequence(path)));
    if family == Family::Ipv4Unicast {
        attrs.push(PathAttribute::NextHop(Ipv4Addr::new(
            10,
            255,
            0,
            1 + nh as u8,
        )));
    }
    if rng.below(2) == 0 {
        attrs.push(PathAttribute::MultiExitDisc(rng.below(1000) as u32));
    }
    let lp = [100, 200, 50, 90][rng.weighted(&[80, 10, 5, 5])];
    attrs.push(PathAttribute::LocalPref(lp));
    let ncomm = rng.below(5) as usize;
    if ncomm > 0 {
        let mut cs: Vec<Community> = (0..ncomm)
            .map(|_| Community::new(64_512 + rng.below(16) as u16, rng.below(4000) as u16))
            .collect();
        cs.sort_unstable();
        attrs.push(PathAttribute::Communities(cs));
    }
    let next_hop = (family == Family::Ipv6Unicast).then(|| NextHop::V6 {
        global: Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1 + nh as u16),
        link_local: None,
    });
    (encode_attrs(&attrs, ctx), next_hop)
}

/// A random IPv4 prefix, /16 to /24 in roughly the table's proportions.
fn ipv4_prefix(rng: &mut Rng) -> Nlri {
    const LENS: [u8; 9] = [24, 23, 22, 21, 20, 19, 18, 17, 16];
    let len = LENS[rng.weighted(&[60, 10, 12, 5, 5, 3, 2, 1, 2])];
    let first = loop {
        let f = 1 + rng.below(223) as u32;
        if f != 127 && f != 10 {
            break f;
        }
    };
    let a = (first << 24) | (rng.next() as u32 & 0x00ff_ffff);
    Nlri::new(IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), len).unwrap()))
}

/// A random IPv6 prefix in 2000::/4, /32 to /48 in roughly the table's proportions.
fn ipv6_prefix(rng: &mut Rng) -> Nlri {
    const LENS: [u8; 9] = [48, 32, 44, 40, 36, 47, 46, 42, 33];
    let len = LENS[rng.weighted(&[50, 12, 10, 8, 4, 4, 4, 4, 4])];
    let hi = (0x2000u128 | u128::from(rng.below(0x1000) as u16)) << 112;
    let a = hi | (u128::from(rng.next()) << 48);
    Nlri::new(IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), len).unwrap()))
}

/// Distinct prefixes from `gen`, each assigned to one of `sets` attribute sets with a
/// skewed draw (set `i` gets a share of about `1 / sqrt(i)`), as in a real table where a
/// few paths carry thousands of prefixes and most carry a handful.
fn assign(rng: &mut Rng, count: usize, sets: usize, r#gen: fn(&mut Rng) -> Nlri) -> Vec<Vec<Nlri>> {
    let mut seen = HashSet::with_capacity(count);
    let mut groups = vec![Vec::new(); sets];
    while seen.len() < count {
        let n = r#gen(rng);
        if seen.insert(n) {
            let u = rng.unit();
            groups[((u * u) * sets as f64) as usize].push(n);
        }
    }
    groups
}

fn build_table(v4: usize, v6: usize, sets_v4: usize, sets_v6: usize) -> Table {
    let ctx = ctx();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut all = Vec::with_capacity(sets_v4 + sets_v6);
    for (family, count, sets, r#gen) in [
        (
            Family::Ipv4Unicast,
            v4,
            sets_v4,
            ipv4_prefix as fn(&mut Rng) -> Nlri,
        ),
        (Family::Ipv6Unicast, v6, sets_v6, ipv6_prefix),
    ] {
        for nlri in assign(&mut rng, count, sets, r#gen) {
            if nlri.is_empty() {
                continue;
            }
            let (attrs, next_hop) = attribute_set(&mut rng, family, &ctx);
            all.push((family, attrs, next_hop, nlri));
        }
    }
    // Interleave the families and the set sizes, as a table dump does.
    for i in (1..all.len()).rev() {
        all.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut t = Table {
        groups: Vec::with_capacity(all.len()),
        attrs: Vec::new(),
        nlri: Vec::with_capacity(v4 + v6),
        stream: Bytes::new(),
        messages: 0,
        prefixes: v4 + v6,
    };
    for (family, attrs, next_hop, nlri) in all {
        let (a, n) = (t.attrs.len(), t.nlri.len());
        t.attrs.extend_from_slice(&attrs);
        t.nlri.extend_from_slice(&nlri);
        t.groups.push(Group {
            family,
            attrs: a..t.attrs.len(),
            next_hop,
            nlri: n..t.nlri.len(),
        });
    }

    let mut out = BytesMut::new();
    t.messages = pack_all(&t, &ctx, &mut out);
    t.stream = out.freeze();

    // The stream must decode as it was meant to.
    let (mut seen_msgs, mut seen_prefixes) = (0, 0);
    for f in Framer::new().frames(t.stream.clone()) {
        let f = f.unwrap();
        assert_eq!(f.ty, MessageType::UPDATE);
        let v = UpdateView::parse(f.body(), &ctx);
        assert_eq!(v.treatment(), Treatment::Normal, "{:?}", v.issues());
        seen_msgs += 1;
        seen_prefixes += v.announced().count();
    }
    assert_eq!((seen_msgs, seen_prefixes), (t.messages, t.prefixes));
    t
}

/// Encodes the whole table with the packer; returns the number of UPDATEs.
fn pack_all(t: &Table, ctx: &SessionCtx, out: &mut BytesMut) -> usize {
    let packer = UpdatePacker::new(ctx);
    t.groups
        .iter()
        .map(|g| {
            let (attrs, nlri) = (&t.attrs[g.attrs.clone()], &t.nlri[g.nlri.clone()]);
            packer
                .announce(g.family, attrs, g.next_hop.as_ref(), nlri, out)
                .unwrap()
        })
        .sum()
}

fn decode_stream(stream: &Bytes, ctx: &SessionCtx) -> u64 {
    let mut acc = 0u64;
    for f in Framer::new().frames(stream.clone()) {
        let Ok(f) = f else { break };
        let v = UpdateView::parse(f.body(), ctx);
        acc = acc.wrapping_add(consume(&v));
    }
    acc
}

/// The same over borrowed messages ([`Framer::messages`]): no reference count per frame.
fn decode_stream_borrowed(stream: &[u8], ctx: &SessionCtx) -> u64 {
    let mut acc = 0u64;
    for m in Framer::new().messages(stream) {
        let Ok((_, msg)) = m else { break };
        let v = UpdateView::parse(&msg[19..], ctx);
        acc = acc.wrapping_add(consume(&v));
    }
    acc
}

fn bench_table(c: &mut Criterion) {
    let ctx = ctx();
    let t = if full_size() {
        build_table(1_000_000, 200_000, 40_000, 10_000)
    } else {
        build_table(10_000, 2_000, 400, 100)
    };
    let bytes = t.stream.len();
    eprintln!(
        "table: {} prefixes, {} attribute sets, {} UPDATEs, {} bytes; \
         {:.1} prefixes and {:.0} bytes per UPDATE",
        t.prefixes,
        t.groups.len(),
        t.messages,
        bytes,
        t.prefixes as f64 / t.messages as f64,
        bytes as f64 / t.messages as f64,
    );

    let mut g = c.benchmark_group("table");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6))
        .throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("decode", |b| {
        b.iter(|| black_box(decode_stream(black_box(&t.stream), &ctx)));
    });
    g.bench_function("decode_borrowed", |b| {
        b.iter(|| black_box(decode_stream_borrowed(black_box(&t.stream), &ctx)));
    });
    g.bench_function("frames", |b| {
        b.iter(|| {
            let n = Framer::new()
                .frames(black_box(&t.stream).clone())
                .map(|f| f.map_or(0, |f| f.bytes.len()))
                .sum::<usize>();
            black_box(n)
        });
    });
    let mut out = BytesMut::with_capacity(bytes + 4096);
    g.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            let n = pack_all(black_box(&t), &ctx, &mut out);
            black_box((n, out.len()))
        });
    });
    g.finish();
}

criterion_group!(benches, bench_update, bench_table);
criterion_main!(benches);
