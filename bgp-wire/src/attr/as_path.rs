//! AS_PATH (RFC 4271 §4.3, §5.1.2) and AS4_PATH (RFC 6793), with 2- and 4-octet encodings,
//! the RFC 6793 §4.2.3 merge, and the checks of RFC 7606 §7.2, RFC 7607 and RFC 9774.

use bytes::{BufMut, BytesMut};
use serde::Serialize;

use crate::ctx::{SessionCtx, open_newtype};
use crate::update::issue::{Fault, IssueKind};

/// The AS number a 2-octet session carries in place of one above 65535 (RFC 6793 §9).
pub const AS_TRANS: u16 = 23456;

/// `asn` as a 2-octet field: itself if it fits, else AS_TRANS (RFC 6793 §4.2.2).
pub fn two_octet(asn: u32) -> u16 {
    u16::try_from(asn).unwrap_or(AS_TRANS)
}

open_newtype! {
    /// The segment type.
    AsSegmentType(u8) {
        /// Unordered set of ASes an aggregate passed through.
        AS_SET = 1 => "AS_SET",
        /// Ordered ASes the route passed through.
        AS_SEQUENCE = 2 => "AS_SEQUENCE",
        /// Ordered member ASes within a confederation (RFC 5065).
        AS_CONFED_SEQUENCE = 3 => "AS_CONFED_SEQUENCE",
        /// Unordered member ASes within a confederation (RFC 5065).
        AS_CONFED_SET = 4 => "AS_CONFED_SET",
    }
}

impl AsSegmentType {
    const fn is_set(self) -> bool {
        matches!(self.0, 1 | 4)
    }
    const fn is_confed(self) -> bool {
        matches!(self.0, 3 | 4)
    }
}

/// One segment, owned.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct AsSegment {
    /// The segment type.
    #[serde(rename = "type")]
    pub ty: AsSegmentType,
    /// The AS numbers, in order.
    pub asns: Vec<u32>,
}

/// An AS path, owned, with 4-octet AS numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct AsPath {
    /// The segments, in order.
    pub segments: Vec<AsSegment>,
}

impl AsPath {
    /// A path of one AS_SEQUENCE.
    pub fn from_sequence(asns: impl IntoIterator<Item = u32>) -> Self {
        let asns: Vec<u32> = asns.into_iter().collect();
        if asns.is_empty() {
            return Self::default();
        }
        Self {
            segments: vec![AsSegment {
                ty: AsSegmentType::AS_SEQUENCE,
                asns,
            }],
        }
    }

    /// The path length the decision process compares (RFC 4271 §9.1.2.2): an AS_SET
    /// counts one, confederation segments count nothing (RFC 5065 §5.3).
    pub fn route_len(&self) -> usize {
        route_len_of(self.segments.iter().map(|s| (s.ty, s.asns.len())))
    }

    /// The leftmost AS of a leading AS_SEQUENCE: the neighbour AS that sent the route.
    pub fn first_as(&self) -> Option<u32> {
        match self.segments.first() {
            Some(s) if s.ty == AsSegmentType::AS_SEQUENCE => s.asns.first().copied(),
            _ => None,
        }
    }

    /// Whether any AS number needs four octets.
    pub fn needs_four_octets(&self) -> bool {
        self.segments
            .iter()
            .any(|s| s.asns.iter().any(|&a| a > 0xffff))
    }

    /// Prepends `asn` `count` times, as a speaker does on export to an external peer.
    pub fn prepend(&mut self, asn: u32, count: usize) {
        match self.segments.first_mut() {
            Some(s) if s.ty == AsSegmentType::AS_SEQUENCE => {
                s.asns.splice(0..0, std::iter::repeat_n(asn, count));
            }
            _ => self.segments.insert(
                0,
                AsSegment {
                    ty: AsSegmentType::AS_SEQUENCE,
                    asns: vec![asn; count],
                },
            ),
        }
    }

    /// Encoded length; segments longer than 255 ASes are split.
    pub fn encoded_len(&self, four_octet: bool) -> usize {
        segments_len(self.borrowed(), four_octet)
    }

    /// Appends the encoded value. Without four octets, AS numbers above 65535 become
    /// AS_TRANS (RFC 6793 §4.2.2).
    pub fn encode(&self, four_octet: bool, out: &mut BytesMut) {
        encode_segments(self.borrowed(), four_octet, out);
    }

    fn borrowed(&self) -> impl Iterator<Item = (AsSegmentType, &[u32])> {
        self.segments.iter().map(|s| (s.ty, s.asns.as_slice()))
    }

    /// The path a 4-octet speaker reconstructs from a 2-octet session's AS_PATH and
    /// AS4_PATH (RFC 6793 §4.2.3): when AS4_PATH is no longer than AS_PATH, the leading
    /// ASes of AS_PATH that AS4_PATH lacks, followed by AS4_PATH; otherwise AS_PATH alone.
    pub fn merge_as4(as_path: &Self, as4_path: &Self) -> Self {
        let (n, m) = (as_path.route_len(), as4_path.route_len());
        if m > n {
            return as_path.clone();
        }
        let mut keep = n - m;
        let mut out = Self::default();
        for s in &as_path.segments {
            // Confederation segments count nothing and AS4_PATH never carries them (RFC
            // 6793 §3): those in front stay even when no AS of AS_PATH does.
            if keep == 0 && !s.ty.is_confed() {
                break;
            }
            match s.ty {
                AsSegmentType::AS_SEQUENCE => {
                    let take = keep.min(s.asns.len());
                    out.segments.push(AsSegment {
                        ty: s.ty,
                        asns: s.asns[..take].to_vec(),
                    });
                    keep -= take;
                }
                AsSegmentType::AS_SET => {
                    out.segments.push(s.clone());
                    keep -= 1;
                }
                _ => out.segments.push(s.clone()),
            }
        }
        out.segments.extend(as4_path.segments.iter().cloned());
        out
    }
}

/// BIRD's notation: sequences as plain ASes, sets in braces, confederation sequences in
/// parentheses and confederation sets in square brackets.
impl std::fmt::Display for AsPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, s) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            let (open, close) = match s.ty.0 {
                1 => ("{", "}"),
                3 => ("(", ")"),
                4 => ("[", "]"),
                _ => ("", ""),
            };
            f.write_str(open)?;
            for (j, a) in s.asns.iter().enumerate() {
                if j > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{a}")?;
            }
            f.write_str(close)?;
        }
        Ok(())
    }
}

/// The path length the decision process compares (RFC 4271 §9.1.2.2) of an AS path given
/// as segments (type, how many ASes): an AS_SET counts one, confederation segments count
/// nothing (RFC 5065 §5.3).
pub fn route_len_of(segments: impl Iterator<Item = (AsSegmentType, usize)>) -> usize {
    segments
        .map(|(ty, n)| match ty {
            AsSegmentType::AS_SEQUENCE => n,
            AsSegmentType::AS_SET => 1,
            _ => 0,
        })
        .sum()
}

/// The encoded length of an AS path given as segments (type, ASes), as
/// [`encode_segments`] writes it: empty segments left out, longer ones than 255 ASes cut.
pub fn segments_len<'a>(
    segments: impl Iterator<Item = (AsSegmentType, &'a [u32])>,
    four_octet: bool,
) -> usize {
    let size = if four_octet { 4 } else { 2 };
    segments
        .map(|(_, asns)| asns.len().div_ceil(255) * 2 + asns.len() * size)
        .sum()
}

/// Appends an AS path given as segments (type, ASes), for a path held in another form
/// than [`AsPath`]: empty segments left out, longer ones than 255 ASes cut; without four
/// octets, AS numbers above 65535 become AS_TRANS (RFC 6793 §4.2.2).
pub fn encode_segments<'a>(
    segments: impl Iterator<Item = (AsSegmentType, &'a [u32])>,
    four_octet: bool,
    out: &mut BytesMut,
) {
    for (ty, asns) in segments {
        for chunk in asns.chunks(255) {
            out.put_u8(ty.0);
            out.put_u8(chunk.len() as u8);
            for &a in chunk {
                if four_octet {
                    out.put_u32(a);
                } else {
                    out.put_u16(two_octet(a));
                }
            }
        }
    }
}

/// An AS_PATH or AS4_PATH value borrowed from a message, already checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsPathView<'a> {
    bytes: &'a [u8],
    four_octet: bool,
}

impl<'a> AsPathView<'a> {
    pub(crate) const fn new(bytes: &'a [u8], four_octet: bool) -> Self {
        Self { bytes, four_octet }
    }

    /// The encoded value.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether AS numbers are four octets wide here.
    pub const fn four_octet(&self) -> bool {
        self.four_octet
    }

    /// The segments, each with an iterator over its AS numbers.
    pub fn segments(
        &self,
    ) -> impl Iterator<Item = (AsSegmentType, impl Iterator<Item = u32> + 'a)> + 'a {
        let size = if self.four_octet { 4 } else { 2 };
        let mut rest = self.bytes;
        std::iter::from_fn(move || {
            let (&[ty, count], tail) = rest.split_first_chunk::<2>()?;
            let n = usize::from(count) * size;
            let asns = tail.get(..n)?;
            rest = &tail[n..];
            Some((
                AsSegmentType(ty),
                asns.chunks_exact(size).map(move |c| match *c {
                    [a, b] => u32::from(u16::from_be_bytes([a, b])),
                    [a, b, c, d] => u32::from_be_bytes([a, b, c, d]),
                    _ => 0,
                }),
            ))
        })
    }

    /// The leftmost AS of a leading AS_SEQUENCE.
    pub fn first_as(&self) -> Option<u32> {
        let (ty, mut asns) = self.segments().next()?;
        if ty == AsSegmentType::AS_SEQUENCE {
            asns.next()
        } else {
            None
        }
    }

    /// The path length for the decision process (RFC 4271 §9.1.2.2).
    pub fn route_len(&self) -> usize {
        route_len_of(self.segments().map(|(ty, asns)| (ty, asns.count())))
    }

    /// The owned path.
    pub fn to_owned_path(&self) -> AsPath {
        AsPath {
            segments: self
                .segments()
                .map(|(ty, asns)| AsSegment {
                    ty,
                    asns: asns.collect(),
                })
                .collect(),
        }
    }
}

/// Checks an AS_PATH (`as4 == false`, width from the session) or an AS4_PATH (always four
/// octets; every fault but AS_SET policy is a discard, RFC 6793 §6).
pub(crate) fn check(value: &[u8], ctx: &SessionCtx, as4: bool) -> Result<(), Fault> {
    let size = if as4 || ctx.four_octet_as { 4 } else { 2 };
    let malformed = |kind| {
        if as4 {
            Fault::discard(kind)
        } else {
            Fault::withdraw(kind)
        }
    };
    if as4 && ctx.four_octet_as {
        return Err(Fault::discard(IssueKind::As4OnFourOctetSession));
    }
    if as4 && value.is_empty() {
        return Err(Fault::discard(IssueKind::AttributeLength));
    }
    let mut rest = value;
    let mut total = 0usize;
    let mut first: Option<(AsSegmentType, u32)> = None;
    let mut policy: Option<Fault> = None;
    while !rest.is_empty() {
        let Some((&[ty, count], tail)) = rest.split_first_chunk::<2>() else {
            return Err(malformed(IssueKind::MalformedAsPath));
        };
        let ty = AsSegmentType(ty);
        let n = usize::from(count) * size;
        if !(1..=4).contains(&ty.0) || count == 0 || n > tail.len() {
            return Err(malformed(IssueKind::MalformedAsPath));
        }
        let (asns, tail) = tail.split_at(n);
        rest = tail;
        let zero = if size == 4 {
            asns.chunks_exact(4)
                .any(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) == 0)
        } else {
            asns.chunks_exact(2).any(|c| c[0] | c[1] == 0)
        };
        if zero {
            return Err(malformed(IssueKind::AsZero));
        }
        if first.is_none() {
            let a = match *asns {
                [a, b, ..] if size == 2 => u32::from(u16::from_be_bytes([a, b])),
                [a, b, c, d, ..] => u32::from_be_bytes([a, b, c, d]),
                _ => 0,
            };
            first = Some((ty, a));
        }
        total += usize::from(count);
        if policy.is_none() {
            if ty.is_set() && ctx.policy.reject_as_set {
                policy = Some(Fault::withdraw(IssueKind::AsSet));
            } else if ty.is_confed() && !ctx.ibgp && !as4 {
                policy = Some(Fault::withdraw(IssueKind::ConfedFromEbgp));
            }
        }
    }
    if let Some(f) = policy {
        return Err(f);
    }
    if as4 {
        return Ok(());
    }
    if let Some(max) = ctx.policy.max_as_path_len
        && total > usize::from(max)
    {
        return Err(Fault::withdraw(IssueKind::AsPathTooLong));
    }
    if let (Some(peer), false) = (ctx.policy.enforce_first_as, ctx.ibgp) {
        let expect = if ctx.four_octet_as || peer <= 0xffff {
            peer
        } else {
            u32::from(AS_TRANS)
        };
        if first != Some((AsSegmentType::AS_SEQUENCE, expect)) {
            return Err(Fault::withdraw(IssueKind::FirstAsMismatch));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    fn seq(a: &[u32]) -> AsSegment {
        AsSegment {
            ty: AsSegmentType::AS_SEQUENCE,
            asns: a.to_vec(),
        }
    }

    #[test]
    fn two_octet_encoding_uses_as_trans() {
        let p = AsPath::from_sequence([65001, 4_200_000_000]);
        let mut out = BytesMut::new();
        p.encode(false, &mut out);
        assert_eq!(&out[..], &hex!("02 02 fde9 5ba0")[..]);
        assert_eq!(p.encoded_len(false), out.len());
    }

    #[test]
    fn long_segments_are_split() {
        let p = AsPath::from_sequence(1..=300);
        let mut out = BytesMut::new();
        p.encode(true, &mut out);
        assert_eq!(out.len(), p.encoded_len(true));
        assert_eq!(out.len(), 2 + 255 * 4 + 2 + 45 * 4);
        let back = AsPathView::new(&out, true).to_owned_path();
        assert_eq!(back.route_len(), 300);
    }

    // RFC 6793 §4.2.3 merge: AS_PATH 65001 23456 23456 65003 with AS4_PATH of three.
    #[test]
    fn merge_as4_path() {
        let as_path = AsPath {
            segments: vec![seq(&[65001, 23456, 23456, 65003])],
        };
        let as4 = AsPath {
            segments: vec![seq(&[4_200_000_001, 4_200_000_002, 65003])],
        };
        let merged = AsPath::merge_as4(&as_path, &as4);
        assert_eq!(
            merged.segments,
            vec![seq(&[65001]), seq(&[4_200_000_001, 4_200_000_002, 65003])]
        );
        // A leading confederation segment survives the merge.
        let confed = AsPath {
            segments: vec![
                AsSegment {
                    ty: AsSegmentType::AS_CONFED_SEQUENCE,
                    asns: vec![64512],
                },
                seq(&[23456, 65003]),
            ],
        };
        let as4 = AsPath::from_sequence([4_200_000_000, 65003]);
        assert_eq!(
            AsPath::merge_as4(&confed, &as4).segments,
            vec![confed.segments[0].clone(), seq(&[4_200_000_000, 65003])]
        );
        // An AS4_PATH longer than AS_PATH is ignored.
        let long = AsPath::from_sequence([1, 2, 3, 4, 5]);
        assert_eq!(AsPath::merge_as4(&as_path, &long), as_path);
    }

    #[test]
    fn checks() {
        let ctx = SessionCtx::default();
        assert_eq!(check(&hex!("02 01 0000fde9"), &ctx, false), Ok(()));
        // A6 overrun and underrun, A7 zero-length segment, A8 segment type 5.
        for bad in [
            &hex!("02 02 0000fde9")[..],
            &hex!("02 01 0000fd")[..],
            &hex!("02 00")[..],
            &hex!("05 01 0000fde9")[..],
            &hex!("02")[..],
        ] {
            assert_eq!(
                check(bad, &ctx, false),
                Err(Fault::withdraw(IssueKind::MalformedAsPath)),
                "{bad:02x?}"
            );
        }
        // A11 AS_SET.
        assert_eq!(
            check(&hex!("02 01 0000fde9 01 01 0000fdea"), &ctx, false),
            Err(Fault::withdraw(IssueKind::AsSet))
        );
        // RFC 7607 AS 0.
        assert_eq!(
            check(&hex!("02 01 00000000"), &ctx, false),
            Err(Fault::withdraw(IssueKind::AsZero))
        );
        // A9 first AS with enforce-first-as.
        let mut strict = ctx;
        strict.policy.enforce_first_as = Some(65001);
        assert_eq!(check(&hex!("02 01 0000fde9"), &strict, false), Ok(()));
        assert_eq!(
            check(&hex!("02 01 0000fdea"), &strict, false),
            Err(Fault::withdraw(IssueKind::FirstAsMismatch))
        );
        // A12 length limit.
        strict.policy.max_as_path_len = Some(1);
        assert_eq!(
            check(&hex!("02 02 0000fde9 0000fde9"), &strict, false),
            Err(Fault::withdraw(IssueKind::AsPathTooLong))
        );
        // A32: AS4_PATH faults are discards.
        let two = SessionCtx {
            four_octet_as: false,
            ..ctx
        };
        assert_eq!(
            check(&hex!("02 02 0000fde9"), &two, true),
            Err(Fault::discard(IssueKind::MalformedAsPath))
        );
        assert_eq!(
            check(&hex!("02 01 0000fde9"), &ctx, true),
            Err(Fault::discard(IssueKind::As4OnFourOctetSession))
        );
    }
}
