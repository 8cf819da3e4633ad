//! Property tests for the UPDATE side of `bgp-wire`.
//!
//! 1. `decode(encode(u)) == u`: every owned [`PathAttribute`] variant, generated valid for a
//!    random session (eBGP/iBGP, 2- or 4-octet AS, ADD-PATH per family, RFC 8950 extended
//!    next hop, RFC 8654 extended messages when the update needs them), encodes into an
//!    UPDATE that parses with treatment `Normal` and back into the same [`Update`]. AS_PATH
//!    segments longer than 255 ASes come back split, as the wire format requires.
//! 2. `encode(decode(b)) == b` for the canonical bytes of (1).
//! 3. On a 2-octet session, ASes above 65535 travel as AS_TRANS plus an automatic
//!    AS4_PATH / AS4_AGGREGATOR, and the RFC 6793 §4.2.3 merge gives the original path back.
//! 4. [`UpdatePacker`] loses, duplicates and oversizes nothing, packs greedily, repeats the
//!    attributes in every message, and refuses attributes too large for one prefix.
//! 5. [`UpdateView::parse`] never panics on arbitrary, structured-random and mutated bodies
//!    under arbitrary session contexts, nor does any accessor afterwards; the treatment is the
//!    harshest issue's, and a session reset exposes no routes and has a NOTIFICATION.
//! 6. End-of-RIB markers (RFC 4724 §2) encode and parse back as such; normal updates never do.
//!
//! Bugs the properties found are kept as regression tests at the end of the file.

use std::net::{Ipv4Addr, Ipv6Addr};

use bgp_wire::attr::{
    Aggregator, AsPath, AsSegment, AsSegmentType, AttrFlags, AttrType, Community, ExtCommunity,
    LargeCommunity, MpReach, MpUnreach, NextHop, Origin, PathAttribute, RawAttribute,
    as_path::AS_TRANS,
};
use bgp_wire::header::{HEADER_LEN, MAX_MESSAGE_LEN};
use bgp_wire::nlri::Nlri;
use bgp_wire::update::{EncodeError, MAX_ISSUES, Treatment, Update, UpdatePacker, UpdateView};
use bgp_wire::{
    ErrorCode, Family, FamilySet, Frame, Framer, MessageType, SessionCtx, UpdatePolicy,
};
use bytes::{Bytes, BytesMut};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::collection::{btree_set, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{Index, select, subsequence};

// ---------------------------------------------------------------------------------------
// Strategies: addresses, prefixes, next hops
// ---------------------------------------------------------------------------------------

/// A usable unicast IPv4 address: never 0/8, 127/8 or 224/3 (RFC 4271 §6.3 martians).
fn unicast_v4() -> impl Strategy<Value = Ipv4Addr> {
    (prop_oneof![1u8..=126, 128u8..=223], any::<[u8; 3]>())
        .prop_map(|(a, [b, c, d])| Ipv4Addr::new(a, b, c, d))
}

/// A global unicast IPv6 address (2000::/3).
fn v6_global() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(|x| Ipv6Addr::from((x & (u128::MAX >> 3)) | (1u128 << 125)))
}

/// A link-local IPv6 address (fe80::/64).
fn v6_link_local() -> impl Strategy<Value = Ipv6Addr> {
    any::<u64>().prop_map(|iid| Ipv6Addr::from((0xfe80u128 << 112) | u128::from(iid)))
}

/// An MP_REACH_NLRI next hop for `family`: IPv4 only for IPv4 unicast (the IPv6 forms there
/// need RFC 8950, which the case's context then enables).
fn mp_next_hop(family: Family) -> BoxedStrategy<NextHop> {
    let v6 = prop_oneof![
        v6_global().prop_map(|global| NextHop::V6 {
            global,
            link_local: None
        }),
        (v6_global(), v6_link_local()).prop_map(|(global, ll)| NextHop::V6 {
            global,
            link_local: Some(ll)
        }),
    ];
    match family {
        Family::Ipv4Unicast => prop_oneof![unicast_v4().prop_map(NextHop::V4), v6].boxed(),
        Family::Ipv6Unicast => v6.boxed(),
    }
}

/// A prefix of `family` with its host bits cleared.
fn prefix(family: Family) -> BoxedStrategy<IpNet> {
    match family {
        Family::Ipv4Unicast => (any::<u32>(), 0u8..=32)
            .prop_map(|(a, l)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc()))
            .boxed(),
        Family::Ipv6Unicast => (any::<u128>(), 0u8..=128)
            .prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc()))
            .boxed(),
    }
}

/// An NLRI of `family`, with a path identifier exactly when ADD-PATH is on (without one the
/// encoder sends identifier 0, which would not decode to `None`).
fn nlri(family: Family, add_path: bool) -> impl Strategy<Value = Nlri> {
    (prefix(family), any::<u32>()).prop_map(move |(prefix, id)| Nlri {
        path_id: add_path.then_some(id),
        prefix,
    })
}

fn family() -> impl Strategy<Value = Family> {
    select(Family::ALL.to_vec())
}

fn family_set() -> impl Strategy<Value = FamilySet> {
    (any::<bool>(), any::<bool>()).prop_map(|(v4, v6)| {
        Family::ALL
            .into_iter()
            .zip([v4, v6])
            .filter_map(|(f, on)| on.then_some(f))
            .collect()
    })
}

// ---------------------------------------------------------------------------------------
// Strategies: attributes
// ---------------------------------------------------------------------------------------

/// What a generated update may contain, and so what its session must allow.
#[derive(Clone, Copy, Debug)]
struct Shape {
    ibgp: bool,
    four_octet: bool,
    /// AS_SET / AS_CONFED_SET segments may be generated.
    as_set: bool,
    add_path: FamilySet,
}

fn shape() -> impl Strategy<Value = Shape> {
    (any::<bool>(), any::<bool>(), any::<bool>(), family_set()).prop_map(
        |(ibgp, four_octet, as_set, add_path)| Shape {
            ibgp,
            four_octet,
            as_set,
            add_path,
        },
    )
}

/// A nonzero AS number that fits the session (RFC 7607: AS 0 is malformed).
fn asn(four_octet: bool) -> impl Strategy<Value = u32> {
    1..=if four_octet { u32::MAX } else { 0xffff }
}

/// AS_PATH of 1..=4 segments of 1..=300 ASes; confederation segments only on iBGP
/// (RFC 7606 §7.2 withdraws them from eBGP), sets only when the policy will allow them.
fn as_path(s: Shape) -> impl Strategy<Value = AsPath> {
    let mut types = vec![AsSegmentType::AS_SEQUENCE];
    if s.as_set {
        types.push(AsSegmentType::AS_SET);
    }
    if s.ibgp {
        types.push(AsSegmentType::AS_CONFED_SEQUENCE);
        if s.as_set {
            types.push(AsSegmentType::AS_CONFED_SET);
        }
    }
    let segment = (select(types), vec(asn(s.four_octet), 1..=300))
        .prop_map(|(ty, asns)| AsSegment { ty, asns });
    vec(segment, 1..=4).prop_map(|segments| AsPath { segments })
}

fn mp_reach(add_path: FamilySet) -> impl Strategy<Value = PathAttribute> {
    family().prop_flat_map(move |f| {
        (mp_next_hop(f), vec(nlri(f, add_path.contains(f)), 0..=50)).prop_map(
            move |(next_hop, nlri)| {
                PathAttribute::MpReachNlri(MpReach {
                    family: f,
                    next_hop,
                    nlri,
                })
            },
        )
    })
}

fn mp_unreach(add_path: FamilySet) -> impl Strategy<Value = PathAttribute> {
    family().prop_flat_map(move |f| {
        vec(nlri(f, add_path.contains(f)), 0..=50).prop_map(move |withdrawn| {
            PathAttribute::MpUnreachNlri(MpUnreach {
                family: f,
                withdrawn,
            })
        })
    })
}

/// Type codes the codec does not decode (0xff is left for the packer test's padding).
fn unknown_codes() -> Vec<u8> {
    (0..u8::MAX).filter(|&t| !AttrType(t).is_known()).collect()
}

/// One unknown optional transitive attribute (non-transitive ones are, rightly, not shown
/// by the view), maybe with the Partial bit, with a value of up to `max_len` octets.
fn unknown_attr(ty: u8, max_len: usize) -> impl Strategy<Value = PathAttribute> {
    (any::<bool>(), vec(any::<u8>(), 0..=max_len)).prop_map(move |(partial, value)| {
        let partial = if partial { AttrFlags::PARTIAL } else { 0 };
        PathAttribute::Unknown(RawAttribute {
            flags: AttrFlags(AttrFlags::OPTIONAL | AttrFlags::TRANSITIVE | partial),
            ty: AttrType(ty),
            value: Bytes::from(value),
        })
    })
}

/// Up to three unknown attributes of distinct type codes (a repeated code is a duplicate).
///
/// Values stay within 255 octets: longer ones hit the extended-length bug pinned by
/// `bug_unknown_attribute_keeps_extended_length_flag`.
fn unknown_attrs() -> impl Strategy<Value = Vec<PathAttribute>> {
    subsequence(unknown_codes(), 0..=3).prop_flat_map(|codes| {
        codes
            .into_iter()
            .map(|c| unknown_attr(c, 255))
            .collect::<Vec<_>>()
    })
}

fn communities() -> impl Strategy<Value = PathAttribute> {
    vec(any::<u32>().prop_map(Community), 1..=20).prop_map(PathAttribute::Communities)
}

/// Mostly a few communities, sometimes thousands: enough for an RFC 8654 extended message.
fn many_communities() -> impl Strategy<Value = PathAttribute> {
    prop_oneof![
        6 => communities(),
        1 => vec(any::<u32>().prop_map(Community), 500..=4000).prop_map(PathAttribute::Communities),
    ]
}

fn ext_communities() -> impl Strategy<Value = PathAttribute> {
    vec(any::<[u8; 8]>().prop_map(ExtCommunity), 1..=10)
        .prop_map(PathAttribute::ExtendedCommunities)
}

fn large_communities() -> impl Strategy<Value = PathAttribute> {
    let large = any::<[u32; 3]>().prop_map(|[global, local1, local2]| LargeCommunity {
        global,
        local1,
        local2,
    });
    vec(large, 1..=10).prop_map(PathAttribute::LargeCommunities)
}

/// Every optional attribute the shape allows, each present or not.
fn optional_attrs(s: Shape) -> impl Strategy<Value = Vec<PathAttribute>> {
    let aggregator = (asn(s.four_octet), any::<u32>()).prop_map(|(asn, a)| {
        PathAttribute::Aggregator(Aggregator {
            asn,
            address: Ipv4Addr::from(a),
        })
    });
    let common = (
        option::of(any::<u32>().prop_map(PathAttribute::MultiExitDisc)),
        option::of(Just(PathAttribute::AtomicAggregate)),
        option::of(aggregator),
        option::of(many_communities()),
        option::of(ext_communities()),
        option::of(large_communities()),
        option::of(any::<u32>().prop_map(PathAttribute::OnlyToCustomer)),
        option::of(mp_reach(s.add_path)),
        option::of(mp_unreach(s.add_path)),
        unknown_attrs(),
    );
    // RFC 4456 / RFC 4271 §5.1.5: only legal on iBGP.
    let internal = (
        option::of(any::<u32>().prop_map(PathAttribute::LocalPref)),
        option::of(any::<u32>().prop_map(|a| PathAttribute::OriginatorId(Ipv4Addr::from(a)))),
        option::of(
            vec(any::<u32>().prop_map(Ipv4Addr::from), 1..=10).prop_map(PathAttribute::ClusterList),
        ),
    );
    (common, internal).prop_map(move |(c, i)| {
        let (med, atomic, agg, comm, ext, large, otc, reach, unreach, unknown) = c;
        let mut v: Vec<PathAttribute> = [med, atomic, agg, comm, ext, large, otc, reach, unreach]
            .into_iter()
            .flatten()
            .chain(unknown)
            .collect();
        if s.ibgp {
            v.extend([i.0, i.1, i.2].into_iter().flatten());
        }
        v
    })
}

/// A valid update and the session it was generated for.
#[derive(Clone, Debug)]
struct Case {
    ctx: SessionCtx,
    update: Update,
}

/// The session a generated update is valid on: AS sets allowed only when present, RFC 8950
/// only where an IPv4 MP_REACH_NLRI has an IPv6 next hop, extended messages only when the
/// update does not fit 4096 octets.
fn ctx_for(s: Shape, u: &Update) -> SessionCtx {
    let has_set = u.attributes.iter().any(|a| match a {
        PathAttribute::AsPath(p) => p.segments.iter().any(|s| matches!(s.ty.0, 1 | 4)),
        _ => false,
    });
    let ext_nh = u.attributes.iter().any(|a| {
        matches!(
            a,
            PathAttribute::MpReachNlri(MpReach {
                family: Family::Ipv4Unicast,
                next_hop: NextHop::V6 { .. },
                ..
            })
        )
    });
    let mut ctx = SessionCtx {
        four_octet_as: s.four_octet,
        extended_message: false,
        ibgp: s.ibgp,
        families: FamilySet::ALL,
        add_path_rx: s.add_path,
        add_path_tx: s.add_path,
        extended_next_hop: if ext_nh {
            FamilySet::only(Family::Ipv4Unicast)
        } else {
            FamilySet::EMPTY
        },
        policy: UpdatePolicy {
            reject_as_set: !has_set,
            reject_martian_next_hop: true,
            ..UpdatePolicy::default()
        },
    };
    ctx.extended_message = u.encoded_len(&ctx) > MAX_MESSAGE_LEN;
    ctx
}

prop_compose! {
    /// ORIGIN, AS_PATH, NEXT_HOP, IPv4 NLRI (and maybe withdrawals) plus any optional
    /// attributes the shape allows, in a random order.
    fn update_for(s: Shape)(
        origin in 0u8..=2,
        path in as_path(s),
        next_hop in unicast_v4(),
        announced in vec(
            nlri(Family::Ipv4Unicast, s.add_path.contains(Family::Ipv4Unicast)),
            1..=20,
        ),
        withdrawn in vec(
            nlri(Family::Ipv4Unicast, s.add_path.contains(Family::Ipv4Unicast)),
            0..=10,
        ),
        optional in optional_attrs(s),
    )(
        attributes in Just(
            [
                PathAttribute::Origin(Origin(origin)),
                PathAttribute::AsPath(path),
                PathAttribute::NextHop(next_hop),
            ]
            .into_iter()
            .chain(optional)
            .collect::<Vec<_>>(),
        )
        .prop_shuffle(),
        nlri in Just(announced),
        withdrawn in Just(withdrawn),
    ) -> Case {
        let update = Update { withdrawn, attributes, nlri };
        Case { ctx: ctx_for(s, &update), update }
    }
}

fn valid_case() -> impl Strategy<Value = Case> {
    shape().prop_flat_map(update_for)
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn encode(u: &Update, ctx: &SessionCtx) -> BytesMut {
    let mut out = BytesMut::new();
    u.encode(ctx, &mut out).expect("fits");
    assert_eq!(
        out.len(),
        u.encoded_len(ctx),
        "encoded_len agrees with encode"
    );
    out
}

/// Splits `bytes` into messages as a session with `ctx` would; all of it must frame.
fn frames(bytes: &[u8], ctx: &SessionCtx) -> Vec<Frame> {
    let mut framer = Framer::new();
    framer.set_extended_message(ctx.extended_message);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(f) = framer.next_frame(&mut buf).expect("header checks") {
        assert_eq!(f.ty, MessageType::UPDATE);
        out.push(f);
    }
    assert!(buf.is_empty(), "{} trailing octets", buf.len());
    out
}

fn one_frame(bytes: &[u8], ctx: &SessionCtx) -> Frame {
    let mut f = frames(bytes, ctx);
    assert_eq!(f.len(), 1);
    f.pop().unwrap()
}

/// A path as it comes off the wire: segments of more than 255 ASes split (RFC 4271 §4.3
/// has a one-octet segment length).
fn split_segments(p: &AsPath) -> AsPath {
    AsPath {
        segments: p
            .segments
            .iter()
            .flat_map(|s| {
                s.asns.chunks(255).map(|c| AsSegment {
                    ty: s.ty,
                    asns: c.to_vec(),
                })
            })
            .collect(),
    }
}

/// The update as decoding it must give it back.
fn canonical(u: &Update) -> Update {
    let mut u = u.clone();
    for a in &mut u.attributes {
        if let PathAttribute::AsPath(p) | PathAttribute::As4Path(p) = a {
            *p = split_segments(p);
        }
    }
    u
}

// ---------------------------------------------------------------------------------------
// 1, 2: round trips
// ---------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn decode_encode_is_identity(case in valid_case()) {
        let Case { ctx, update } = &case;
        prop_assume!(update.encoded_len(ctx) <= ctx.max_message_len());
        let bytes = encode(update, ctx);
        let frame = one_frame(&bytes, ctx);
        let v = UpdateView::parse(frame.body(), ctx);
        prop_assert_eq!(v.treatment(), Treatment::Normal, "issues {:?}", v.issues());
        prop_assert_eq!(v.issue_count(), 0);
        prop_assert_eq!(v.end_of_rib(), None, "a normal update is not an End-of-RIB");
        let expected = canonical(update);
        prop_assert_eq!(v.to_update(), expected);

        // The accessors agree with the owned form.
        let mp: Vec<Nlri> = v.mp_reach().map(|m| m.nlri().collect()).unwrap_or_default();
        let announced: Vec<Nlri> = v.announced().collect();
        prop_assert_eq!(announced, [update.nlri.clone(), mp].concat());
        let mp: Vec<Nlri> = v.mp_unreach().map(|m| m.withdrawn().collect()).unwrap_or_default();
        let withdrawals: Vec<Nlri> = v.withdrawals().collect();
        prop_assert_eq!(withdrawals, [update.withdrawn.clone(), mp].concat());
        for a in &update.attributes {
            match a {
                PathAttribute::Origin(o) => prop_assert_eq!(v.origin(), Some(*o)),
                PathAttribute::NextHop(n) => prop_assert_eq!(v.next_hop(), Some(*n)),
                PathAttribute::AsPath(p) => prop_assert_eq!(
                    v.as_path().map(|p| p.route_len()),
                    Some(split_segments(p).route_len())
                ),
                PathAttribute::Communities(c) => {
                    prop_assert_eq!(&v.communities().collect::<Vec<_>>(), c);
                }
                PathAttribute::ClusterList(c) => {
                    prop_assert_eq!(v.cluster_list().map(|c| c.collect::<Vec<_>>()), Some(c.clone()));
                }
                _ => {}
            }
        }
    }

    #[test]
    fn encode_decode_of_canonical_bytes_is_identity(case in valid_case()) {
        let Case { ctx, update } = &case;
        prop_assume!(update.encoded_len(ctx) <= ctx.max_message_len());
        let bytes = encode(update, ctx);
        let frame = one_frame(&bytes, ctx);
        let v = UpdateView::parse(frame.body(), ctx);
        prop_assert_eq!(v.treatment(), Treatment::Normal);
        let again = encode(&v.to_update(), ctx);
        prop_assert_eq!(&again[..], &bytes[..]);
    }
}

// ---------------------------------------------------------------------------------------
// 3: 2-octet sessions
// ---------------------------------------------------------------------------------------

fn as_trans(a: u32) -> u32 {
    if a > 0xffff { u32::from(AS_TRANS) } else { a }
}

prop_compose! {
    /// An AS_SEQUENCE-only path with at least one AS above 65535, maybe an AGGREGATOR.
    fn wide_path_update()(
        segments in vec(vec(prop_oneof![1..=0xffffu32, 0x1_0000..=u32::MAX], 1..=300), 1..=4),
        at in any::<Index>(),
        wide in 0x1_0000..=u32::MAX,
        aggregator in option::of((1..=u32::MAX, any::<u32>())),
        next_hop in unicast_v4(),
        nlri in vec(nlri(Family::Ipv4Unicast, false), 1..=10),
    ) -> Update {
        let mut segments: Vec<AsSegment> = segments
            .into_iter()
            .map(|asns| AsSegment { ty: AsSegmentType::AS_SEQUENCE, asns })
            .collect();
        let first = &mut segments[0].asns;
        let i = at.index(first.len());
        first[i] = wide;
        let mut attributes = vec![
            PathAttribute::Origin(Origin::IGP),
            PathAttribute::AsPath(AsPath { segments }),
            PathAttribute::NextHop(next_hop),
        ];
        if let Some((asn, a)) = aggregator {
            attributes.push(PathAttribute::Aggregator(Aggregator { asn, address: Ipv4Addr::from(a) }));
        }
        Update { withdrawn: Vec::new(), attributes, nlri }
    }
}

proptest! {
    #[test]
    fn two_octet_session_carries_wide_ases_in_as4_path(update in wide_path_update()) {
        let mut ctx = SessionCtx { four_octet_as: false, ..SessionCtx::default() };
        ctx.extended_message = update.encoded_len(&ctx) > MAX_MESSAGE_LEN;
        let Some(PathAttribute::AsPath(path)) = update.attr(AttrType::AS_PATH) else {
            unreachable!()
        };
        let aggregator = match update.attr(AttrType::AGGREGATOR) {
            Some(PathAttribute::Aggregator(a)) => Some(*a),
            _ => None,
        };
        let bytes = encode(&update, &ctx);
        let frame = one_frame(&bytes, &ctx);
        let v = UpdateView::parse(frame.body(), &ctx);
        prop_assert_eq!(v.treatment(), Treatment::Normal, "issues {:?}", v.issues());

        // AS_PATH has AS_TRANS in place of each wide AS (RFC 6793 §4.2.2) ...
        let two = v.as_path().expect("AS_PATH");
        prop_assert!(!two.four_octet());
        let narrowed: Vec<u32> = path.segments.iter().flat_map(|s| s.asns.iter().map(|&a| as_trans(a))).collect();
        let got: Vec<u32> = two.segments().flat_map(|(_, asns)| asns).collect();
        prop_assert_eq!(got, narrowed);
        // ... AS4_PATH has the whole path, and the merge restores it (RFC 6793 §4.2.3).
        let as4 = v.as4_path().expect("AS4_PATH added automatically").to_owned_path();
        prop_assert_eq!(&as4, &split_segments(path));
        let merged = AsPath::merge_as4(&two.to_owned_path(), &as4);
        prop_assert_eq!(&merged, &split_segments(path));

        // Same for AGGREGATOR / AS4_AGGREGATOR.
        prop_assert_eq!(v.aggregator(), aggregator.map(|a| Aggregator { asn: as_trans(a.asn), ..a }));
        prop_assert_eq!(v.as4_aggregator(), aggregator.filter(|a| a.asn > 0xffff));

        // The owned form is what the 2-octet wire says, extras at the end.
        let mut expected = canonical(&update);
        for a in &mut expected.attributes {
            match a {
                PathAttribute::AsPath(p) => {
                    for s in &mut p.segments {
                        s.asns.iter_mut().for_each(|a| *a = as_trans(*a));
                    }
                }
                PathAttribute::Aggregator(g) => g.asn = as_trans(g.asn),
                _ => {}
            }
        }
        expected.attributes.push(PathAttribute::As4Path(split_segments(path)));
        if let Some(a) = aggregator.filter(|a| a.asn > 0xffff) {
            expected.attributes.push(PathAttribute::As4Aggregator(a));
        }
        let owned = v.to_update();
        prop_assert_eq!(&owned, &expected);
        // Re-encoding what was decoded adds nothing more: AS4_PATH is already there.
        prop_assert_eq!(&encode(&owned, &ctx)[..], &bytes[..]);
    }
}

// ---------------------------------------------------------------------------------------
// 4: UpdatePacker
// ---------------------------------------------------------------------------------------

/// A packer scenario: a family, its next hop, prefixes, an encoded attribute blob.
#[derive(Clone, Debug)]
struct PackCase {
    ctx: SessionCtx,
    family: Family,
    next_hop: NextHop,
    prefixes: Vec<Nlri>,
    attrs: Bytes,
    max: usize,
}

/// The attributes of a packed update: never MP attributes; NEXT_HOP when the IPv4 NLRI
/// field is used.
fn pack_attrs(next_hop: Option<Ipv4Addr>) -> impl Strategy<Value = Vec<PathAttribute>> {
    let path = vec(
        vec(asn(true), 1..=20).prop_map(|asns| AsSegment {
            ty: AsSegmentType::AS_SEQUENCE,
            asns,
        }),
        1..=2,
    )
    .prop_map(|segments| PathAttribute::AsPath(AsPath { segments }));
    let unknown = select(unknown_codes())
        .prop_flat_map(|c| prop_oneof![3 => unknown_attr(c, 40), 1 => unknown_attr(c, 255)]);
    (
        0u8..=2,
        path,
        option::of(any::<u32>().prop_map(PathAttribute::MultiExitDisc)),
        option::of(communities()),
        option::of(large_communities()),
        option::of(unknown),
    )
        .prop_map(move |(origin, path, med, comm, large, unknown)| {
            let mut v = vec![PathAttribute::Origin(Origin(origin)), path];
            v.extend(next_hop.map(PathAttribute::NextHop));
            v.extend([med, comm, large, unknown].into_iter().flatten());
            v
        })
}

fn pack_case() -> impl Strategy<Value = PackCase> {
    (family(), any::<bool>(), any::<bool>())
        .prop_flat_map(|(family, add_path, four_octet)| {
            (
                Just((family, add_path, four_octet)),
                mp_next_hop(family),
                btree_set(nlri(family, add_path), 1..=3000),
                // Small limits are where attributes crowd out prefixes.
                prop_oneof![200usize..=400, 200usize..=4096],
            )
        })
        .prop_flat_map(|(params, next_hop, prefixes, max)| {
            let base_next_hop = match next_hop {
                NextHop::V4(a) => Some(a),
                NextHop::V6 { .. } => None,
            };
            let prefixes = Just(prefixes.into_iter().collect::<Vec<_>>()).prop_shuffle();
            (
                Just((params, next_hop, max)),
                pack_attrs(base_next_hop),
                prefixes,
            )
        })
        .prop_map(
            |(((family, add_path, four_octet), next_hop, max), attrs, prefixes)| {
                let ap = if add_path {
                    FamilySet::only(family)
                } else {
                    FamilySet::EMPTY
                };
                let ext_nh =
                    family == Family::Ipv4Unicast && matches!(next_hop, NextHop::V6 { .. });
                let ctx = SessionCtx {
                    four_octet_as: four_octet,
                    add_path_rx: ap,
                    add_path_tx: ap,
                    extended_next_hop: if ext_nh {
                        FamilySet::only(family)
                    } else {
                        FamilySet::EMPTY
                    },
                    ..SessionCtx::default()
                };
                let mut blob = BytesMut::new();
                for a in &attrs {
                    a.encode(&ctx, &mut blob);
                }
                PackCase {
                    ctx,
                    family,
                    next_hop,
                    prefixes,
                    attrs: blob.freeze(),
                    max,
                }
            },
        )
}

/// The length of a packed message before any prefix: header, the two length fields, the
/// attributes and, where one is used, the MP_REACH_NLRI header (extended length).
fn fixed_len(c: &PackCase) -> usize {
    let mp = match (c.family, c.next_hop) {
        (Family::Ipv4Unicast, NextHop::V4(_)) => 0,
        (_, nh) => 4 + 5 + nh.len(),
    };
    HEADER_LEN + 4 + c.attrs.len() + mp
}

/// Raw bytes of the attributes other than MP_REACH_NLRI / MP_UNREACH_NLRI, in order.
fn non_mp_attr_bytes(v: &UpdateView<'_>) -> Vec<u8> {
    v.attributes()
        .filter(|a| !matches!(a.ty, AttrType::MP_REACH_NLRI | AttrType::MP_UNREACH_NLRI))
        .flat_map(|a| a.bytes.iter().copied())
        .collect()
}

/// Checks a run of packed messages: each within `max`, `Normal`, greedy (the next
/// message's first prefix would not have fit); returns the prefixes, in order.
fn check_packed(c: &PackCase, msgs: &[Frame], announce: bool) -> Result<Vec<Nlri>, TestCaseError> {
    let mut all = Vec::new();
    let mut firsts = Vec::new();
    for f in msgs {
        prop_assert!(f.bytes.len() <= c.max, "{} > {}", f.bytes.len(), c.max);
        let v = UpdateView::parse(f.body(), &c.ctx);
        prop_assert_eq!(v.treatment(), Treatment::Normal, "issues {:?}", v.issues());
        let (mine, other): (Vec<Nlri>, Vec<Nlri>) = if announce {
            prop_assert_eq!(&non_mp_attr_bytes(&v)[..], &c.attrs[..]);
            if let Some(m) = v.mp_reach() {
                prop_assert_eq!(m.next_hop(), Some(c.next_hop));
            }
            (v.announced().collect(), v.withdrawals().collect())
        } else {
            prop_assert!(non_mp_attr_bytes(&v).is_empty());
            (v.withdrawals().collect(), v.announced().collect())
        };
        prop_assert!(other.is_empty());
        prop_assert!(!mine.is_empty(), "no empty messages");
        prop_assert!(mine.iter().all(|n| n.family() == c.family));
        firsts.push(mine[0]);
        all.extend(mine);
    }
    let ap = c.ctx.add_path_tx.contains(c.family);
    for (f, next) in msgs.iter().zip(firsts.iter().skip(1)) {
        prop_assert!(
            f.bytes.len() + next.encoded_len(ap) > c.max,
            "a message of {} octets left room for {:?}",
            f.bytes.len(),
            next
        );
    }
    Ok(all)
}

proptest! {
    #[test]
    fn packer_loses_nothing_and_respects_max_len(c in pack_case()) {
        let packer = UpdatePacker::new(&c.ctx).with_max_len(c.max);
        let ap = c.ctx.add_path_tx.contains(c.family);
        let fixed = fixed_len(&c);
        let nh = Some(&c.next_hop);
        let mut out = BytesMut::new();
        let announced = packer.announce(c.family, &c.attrs, nh, &c.prefixes, &mut out);
        let split = out.len();
        let msgs = frames(&out, &c.ctx);
        // Prefixes before the first that cannot fit even alone are sent; then the error.
        let fits = c.prefixes.iter().position(|n| fixed + n.encoded_len(ap) > c.max);
        let sent = &c.prefixes[..fits.unwrap_or(c.prefixes.len())];
        match (announced, fits) {
            (Ok(n), None) => prop_assert_eq!(n, msgs.len()),
            (Err(e), Some(i)) => {
                let len = fixed + c.prefixes[i].encoded_len(ap);
                prop_assert_eq!(e, EncodeError::TooLong { len, max: c.max });
            }
            (r, _) => prop_assert!(false, "announce returned {:?}, first misfit {:?}", r, fits),
        }
        let mut got = check_packed(&c, &msgs, true)?;
        let mut want = sent.to_vec();
        got.sort_unstable();
        want.sort_unstable();
        prop_assert_eq!(got, want, "announced exactly once each");

        let n = packer.withdraw(c.family, &c.prefixes, &mut out).expect("fits");
        let msgs = frames(&out[split..], &c.ctx);
        prop_assert_eq!(n, msgs.len());
        let mut got = check_packed(&c, &msgs, false)?;
        let mut want = c.prefixes.clone();
        got.sort_unstable();
        want.sort_unstable();
        prop_assert_eq!(got, want, "withdrawn exactly once each");
    }

    #[test]
    fn packer_refuses_attributes_too_large_for_one_prefix(
        c in pack_case(),
        slack in 0usize..=2,
        exact in any::<bool>(),
    ) {
        // Pad the attributes with an unknown transitive attribute so that the first prefix
        // fits exactly (`exact`) or misses by 1..=3 octets.
        let ap = c.ctx.add_path_tx.contains(c.family);
        let first = c.prefixes[0];
        let room = c.max as isize - (fixed_len(&c) + first.encoded_len(ap)) as isize;
        let pad_len = if exact { room } else { room + 1 + slack as isize };
        prop_assume!(pad_len >= 3 && pad_len != 259);
        let pad_len = pad_len as usize;
        let value = vec![0xab; if pad_len <= 258 { pad_len - 3 } else { pad_len - 4 }];
        let pad = PathAttribute::Unknown(RawAttribute {
            flags: AttrFlags::OPTIONAL_TRANSITIVE,
            ty: AttrType(0xff),
            value: Bytes::from(value),
        });
        let mut attrs = BytesMut::from(&c.attrs[..]);
        pad.encode(&c.ctx, &mut attrs);
        prop_assert_eq!(attrs.len(), c.attrs.len() + pad_len);
        let c = PackCase { attrs: attrs.freeze(), prefixes: vec![first], ..c };

        let packer = UpdatePacker::new(&c.ctx).with_max_len(c.max);
        let mut out = BytesMut::new();
        let r = packer.announce(c.family, &c.attrs, Some(&c.next_hop), &c.prefixes, &mut out);
        if exact {
            prop_assert_eq!(r, Ok(1));
            prop_assert_eq!(out.len(), c.max, "exactly full");
            let msgs = frames(&out, &c.ctx);
            prop_assert_eq!(check_packed(&c, &msgs, true)?, c.prefixes.clone());
        } else {
            let len = fixed_len(&c) + first.encoded_len(ap);
            prop_assert_eq!(r, Err(EncodeError::TooLong { len, max: c.max }));
            prop_assert!(out.is_empty(), "nothing written");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 5: robustness
// ---------------------------------------------------------------------------------------

fn arbitrary_ctx() -> impl Strategy<Value = SessionCtx> {
    let policy = (
        option::of(any::<u32>()),
        option::of(any::<u16>()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(first, max, set, martian)| UpdatePolicy {
            enforce_first_as: first,
            max_as_path_len: max,
            reject_as_set: set,
            reject_martian_next_hop: martian,
        });
    (
        any::<[bool; 3]>(),
        family_set(),
        family_set(),
        family_set(),
        family_set(),
        policy,
    )
        .prop_map(
            |([four, ext, ibgp], families, rx, tx, enh, policy)| SessionCtx {
                four_octet_as: four,
                extended_message: ext,
                ibgp,
                families,
                add_path_rx: rx,
                add_path_tx: tx,
                extended_next_hop: enh,
                policy,
            },
        )
}

/// An attribute with a well-formed header and a random (often slightly wrong) value:
/// mostly known type codes, MP attributes with plausible AFI/SAFI and next hop lengths.
fn random_attr() -> impl Strategy<Value = Vec<u8>> {
    let flags = prop_oneof![
        3 => select(vec![0x40u8, 0x80, 0xc0, 0xe0]),
        1 => any::<u8>().prop_map(|f| f & !AttrFlags::EXTENDED_LENGTH),
        1 => any::<u8>(),
    ];
    let ty = prop_oneof![
        12 => select((0..=u8::MAX).filter(|&t| AttrType(t).is_known()).collect::<Vec<_>>()),
        1 => any::<u8>(),
    ];
    let mp_value = (
        select(vec![[0u8, 1], [0, 2], [0, 3]]),
        select(vec![1u8, 1, 2, 133]),
        select(vec![4u8, 16, 32, 15, 0]),
        vec(any::<u8>(), 0..=48),
    )
        .prop_map(|(afi, safi, nh, rest)| [&afi[..], &[safi, nh], &rest].concat());
    let value = prop_oneof![
        3 => vec(any::<u8>(), 0..=40),
        1 => mp_value,
    ];
    (flags, ty, value).prop_map(|(flags, ty, value)| {
        let mut a = vec![flags, ty];
        if flags & AttrFlags::EXTENDED_LENGTH != 0 {
            a.extend_from_slice(&(value.len() as u16).to_be_bytes());
        } else {
            a.push(value.len() as u8);
        }
        a.extend(value);
        a
    })
}

/// An NLRI field: valid prefixes encoded with or without path identifiers, or garbage.
fn random_nlri_field(add_path: bool, max: usize) -> impl Strategy<Value = Vec<u8>> {
    let valid = move |ap: bool| {
        vec(nlri(Family::Ipv4Unicast, false), 0..=max).prop_map(move |v| {
            let mut out = BytesMut::new();
            v.iter().for_each(|n| n.encode(ap, &mut out));
            out.to_vec()
        })
    };
    prop_oneof![
        12 => valid(add_path),
        1 => valid(!add_path),
        1 => vec(any::<u8>(), 0..=max),
    ]
}

/// A context and a body whose length fields and NLRI mostly agree with it, so that the
/// attribute checks are reached.
fn structured_body() -> impl Strategy<Value = (SessionCtx, Vec<u8>)> {
    arbitrary_ctx().prop_flat_map(|ctx| {
        let ap = ctx.add_path_rx.contains(Family::Ipv4Unicast);
        let bad_lengths = prop_oneof![
            15 => Just(None),
            1 => (any::<u16>(), any::<u16>()).prop_map(Some),
        ];
        (
            Just(ctx),
            random_nlri_field(ap, 8),
            vec(random_attr(), 0..=10),
            random_nlri_field(ap, 8),
            bad_lengths,
        )
            .prop_map(|(ctx, withdrawn, attrs, nlri, bad_lengths)| {
                let attrs = attrs.concat();
                let (wlen, tpal) =
                    bad_lengths.unwrap_or((withdrawn.len() as u16, attrs.len() as u16));
                let body = [
                    &wlen.to_be_bytes()[..],
                    &withdrawn,
                    &tpal.to_be_bytes(),
                    &attrs,
                    &nlri,
                ]
                .concat();
                (ctx, body)
            })
    })
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(Index, u8),
    Insert(Index, u8),
    Delete(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1..=u8::MAX).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
    ]
}

fn mutate(body: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Flip(i, x) if !body.is_empty() => {
            let i = i.index(body.len());
            body[i] ^= x;
        }
        Mutation::Insert(i, b) => {
            let i = i.index(body.len() + 1);
            body.insert(i, *b);
        }
        Mutation::Delete(i) if !body.is_empty() => {
            body.remove(i.index(body.len()));
        }
        _ => {}
    }
}

/// Calls every accessor and iterator of a parsed view, and checks the invariants that hold
/// for any input.
fn exercise(v: &UpdateView<'_>) -> Result<(), TestCaseError> {
    let announced: Vec<Nlri> = v.announced().collect();
    let withdrawals: Vec<Nlri> = v.withdrawals().collect();
    let _ = (
        v.withdrawn().count(),
        v.nlri().count(),
        v.body().len(),
        v.ctx(),
    );
    for a in v.attributes() {
        let _ = (
            a.flags.category(),
            a.ty.name(),
            a.value.len(),
            a.bytes.len(),
        );
    }
    let _ = v.origin();
    for p in [v.as_path(), v.as4_path()].into_iter().flatten() {
        for (ty, asns) in p.segments() {
            let _ = (ty.name(), asns.count());
        }
        let _ = (p.first_as(), p.route_len(), p.to_owned_path(), p.as_bytes());
    }
    let _ = (v.next_hop(), v.med(), v.local_pref(), v.atomic_aggregate());
    let _ = (v.aggregator(), v.as4_aggregator(), v.originator_id());
    let _ = (
        v.communities().count(),
        v.cluster_list().map(Iterator::count),
    );
    let _ = (v.ext_communities().count(), v.large_communities().count());
    let _ = v.only_to_customer();
    if let Some(m) = v.mp_reach() {
        let _ = (
            m.family(),
            m.next_hop(),
            m.next_hop_bytes(),
            m.nlri().count(),
        );
        let _ = m.to_owned_attr();
    }
    if let Some(m) = v.mp_unreach() {
        let _ = (m.family(), m.withdrawn().count(), m.to_owned_attr());
    }
    let owned = v.to_update();
    let _ = serde_json::to_string(&owned).expect("serializes");
    let _ = owned.encode(v.ctx(), &mut BytesMut::new());
    for i in v.issues() {
        let _ = (i.to_string(), i.kind.subcode());
    }
    let notification = v.notification();
    let eor = v.end_of_rib();

    prop_assert_eq!(v.issues().len(), v.issue_count().min(MAX_ISSUES));
    // The issues kept are always those that decide the treatment.
    let worst = v.issues().iter().map(|i| i.treatment).max();
    prop_assert_eq!(v.treatment(), worst.unwrap_or(Treatment::Normal));
    if v.treatment() == Treatment::SessionReset {
        prop_assert!(announced.is_empty() && withdrawals.is_empty());
        prop_assert_eq!(
            notification.map(|n| n.code),
            Some(ErrorCode::UPDATE_MESSAGE)
        );
    }
    if eor.is_some() {
        prop_assert!(announced.is_empty() && withdrawals.is_empty());
    }
    Ok(())
}

/// [`exercise`], or on a reset view its reset-safe part.
fn check_view(v: &UpdateView<'_>) -> Result<(), TestCaseError> {
    exercise(v)?;
    if v.treatment() == Treatment::SessionReset {
        exercise_reset(v)?;
    }
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        body in vec(any::<u8>(), 0..=4096),
        ctx in arbitrary_ctx(),
    ) {
        check_view(&UpdateView::parse(&body, &ctx))?;
    }

    #[test]
    fn structured_bodies_never_panic((ctx, body) in structured_body()) {
        check_view(&UpdateView::parse(&body, &ctx))?;
    }

    #[test]
    fn mutated_updates_never_panic(
        case in valid_case(),
        mutations in vec(mutation(), 1..=4),
        other in arbitrary_ctx(),
    ) {
        let Case { ctx, update } = &case;
        prop_assume!(update.encoded_len(ctx) <= ctx.max_message_len());
        let mut body = encode(update, ctx)[HEADER_LEN..].to_vec();
        for m in &mutations {
            mutate(&mut body, m);
        }
        for ctx in [ctx, &other] {
            check_view(&UpdateView::parse(&body, ctx))?;
        }
    }
}

/// What a reset implies beyond [`exercise`]: no routes, no attributes, a NOTIFICATION of
/// code 3 even when more issues were found than are kept.
fn exercise_reset(v: &UpdateView<'_>) -> Result<(), TestCaseError> {
    prop_assert_eq!(v.treatment(), Treatment::SessionReset);
    prop_assert_eq!(v.announced().count() + v.withdrawals().count(), 0);
    prop_assert_eq!(v.end_of_rib(), None);
    prop_assert!(v.origin().is_none() && v.as_path().is_none() && v.next_hop().is_none());
    prop_assert!(v.mp_reach().is_none() && v.mp_unreach().is_none());
    prop_assert_eq!(v.communities().count() + v.large_communities().count(), 0);
    prop_assert!(v.cluster_list().is_none());
    prop_assert_eq!(v.issues().len(), v.issue_count().min(MAX_ISSUES));
    prop_assert!(v.attributes().next().is_none());
    prop_assert_eq!(v.to_update(), Update::default());
    let worst = v.issues().iter().map(|i| i.treatment).max();
    prop_assert_eq!(worst, Some(Treatment::SessionReset));
    let n = v.notification();
    prop_assert_eq!(n.map(|n| n.code), Some(ErrorCode::UPDATE_MESSAGE));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 6: End-of-RIB
// ---------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn end_of_rib_round_trips(
        family in family(),
        four_octet in any::<bool>(),
        ibgp in any::<bool>(),
        add_path in family_set(),
        extended_message in any::<bool>(),
    ) {
        let ctx = SessionCtx {
            four_octet_as: four_octet,
            ibgp,
            add_path_rx: add_path,
            add_path_tx: add_path,
            extended_message,
            ..SessionCtx::default()
        };
        let bytes = encode(&Update::end_of_rib(family), &ctx);
        let frame = one_frame(&bytes, &ctx);
        let v = UpdateView::parse(frame.body(), &ctx);
        prop_assert_eq!(v.treatment(), Treatment::Normal);
        prop_assert_eq!(v.end_of_rib(), Some(family));
        prop_assert_eq!(v.announced().count() + v.withdrawals().count(), 0);
        prop_assert_eq!(v.to_update(), Update::end_of_rib(family));
    }
}

// ---------------------------------------------------------------------------------------
// Regressions: bugs the properties above found, now fixed
// ---------------------------------------------------------------------------------------

/// Was: after any `SessionReset`, `parse` sets `attrs = &[]`, a slice outside `body`, and
/// `attributes()` computes `attrs.as_ptr() - body.as_ptr()`, which underflows (a panic in
/// debug builds, a garbage offset in release). `to_update()` calls it too. Input: body
/// `ff ff` (shorter than the two length fields), default context.
/// Expected: no attributes, `Update::default()`. Actual: "attempt to subtract with
/// overflow" at `update/view.rs` in `UpdateView::attributes`.
#[test]
fn regression_attributes_after_reset() {
    let body = [0xff, 0xff];
    let v = UpdateView::parse(&body, &SessionCtx::default());
    assert_eq!(v.treatment(), Treatment::SessionReset);
    assert_eq!(v.attributes().count(), 0);
    assert_eq!(v.to_update(), Update::default());
}

/// Was: an unknown attribute with a value over 255 octets decodes with the
/// extended-length bit in its flags (`0xd0`), while the `RawAttribute` it was encoded from
/// had `0xc0`, so `decode(encode(u)) != u`; re-encoding masks the bit, so bytes do round
/// trip. Input: `RawAttribute { flags: 0xc0, ty: 0xf1, value: [0; 256] }` in an otherwise
/// valid update. Expected: flags `0xc0` back. Actual: `0xd0`.
#[test]
fn regression_unknown_attribute_flags_drop_extended_length() {
    let ctx = SessionCtx::default();
    let update = Update {
        withdrawn: Vec::new(),
        attributes: vec![
            PathAttribute::Origin(Origin::IGP),
            PathAttribute::AsPath(AsPath::from_sequence([65001])),
            PathAttribute::NextHop(Ipv4Addr::new(192, 0, 2, 1)),
            PathAttribute::Unknown(RawAttribute {
                flags: AttrFlags::OPTIONAL_TRANSITIVE,
                ty: AttrType(0xf1),
                value: Bytes::from(vec![0; 256]),
            }),
        ],
        nlri: vec![Nlri::new("198.51.100.0/24".parse().unwrap())],
    };
    let bytes = encode(&update, &ctx);
    let v = UpdateView::parse(&bytes[HEADER_LEN..], &ctx);
    assert_eq!(v.treatment(), Treatment::Normal);
    assert_eq!(v.to_update(), update);
}

/// Was: the treatment counts every issue but only the first `MAX_ISSUES` are kept, and
/// `notification()` looks the reset issue up among the kept ones: when it comes after
/// eight others, the update must reset the session yet has no NOTIFICATION to send.
/// Input: ORIGIN, AS_PATH, NEXT_HOP, eight duplicate ORIGINs (discards), then an unknown
/// well-known attribute `40 f0 01 00` (a reset, RFC 4271 §6.3), NLRI 198.51.100.0/24.
/// Expected: `Some(3/2 "40 f0 01 00")`. Actual: `None`.
#[test]
fn regression_reset_beyond_max_issues_has_a_notification() {
    let mut attrs =
        hex_literal::hex!("40 01 01 00 40 02 06 02 01 0000fde9 40 03 04 c0000201").to_vec();
    for _ in 0..MAX_ISSUES {
        attrs.extend_from_slice(&[0x40, 0x01, 0x01, 0x00]);
    }
    attrs.extend_from_slice(&[0x40, 0xf0, 0x01, 0x00]);
    let nlri = [0x18, 0xc6, 0x33, 0x64];
    let body = [
        &[0, 0][..],
        &(attrs.len() as u16).to_be_bytes(),
        &attrs,
        &nlri,
    ]
    .concat();
    let v = UpdateView::parse(&body, &SessionCtx::default());
    assert_eq!(v.treatment(), Treatment::SessionReset);
    assert_eq!(v.issue_count(), MAX_ISSUES + 1);
    let n = v.notification().expect("a reset has a NOTIFICATION");
    assert_eq!((n.code, n.subcode), (ErrorCode::UPDATE_MESSAGE, 2));
    assert_eq!(&n.data[..], &[0x40, 0xf0, 0x01, 0x00]);
}
