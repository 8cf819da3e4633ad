//! Path attributes (RFC 4271 §4.3, §5 and the RFCs of each attribute): code points, flags,
//! the owned [`PathAttribute`] and one module per attribute with its decoding, encoding and
//! RFC 7606 checks.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use crate::ctx::{SessionCtx, open_newtype};

pub mod aggregator;
pub mod as_path;
pub mod atomic_aggregate;
pub mod cluster_list;
pub mod communities;
pub mod ext_communities;
pub mod large_communities;
pub mod local_pref;
pub mod med;
pub mod mp_reach;
pub mod mp_unreach;
pub mod next_hop;
pub mod origin;
pub mod originator_id;
pub mod otc;
pub mod unknown;

pub use aggregator::Aggregator;
pub use as_path::{AsPath, AsPathView, AsSegment, AsSegmentType};
pub use communities::Community;
pub use ext_communities::ExtCommunity;
pub use large_communities::LargeCommunity;
pub use mp_reach::{MpReach, MpReachView, NextHop};
pub use mp_unreach::{MpUnreach, MpUnreachView};
pub use origin::Origin;
pub use unknown::RawAttribute;

open_newtype! {
    /// The attribute type code.
    AttrType(u8) {
        /// ORIGIN (RFC 4271).
        ORIGIN = 1 => "ORIGIN",
        /// AS_PATH (RFC 4271).
        AS_PATH = 2 => "AS_PATH",
        /// NEXT_HOP (RFC 4271).
        NEXT_HOP = 3 => "NEXT_HOP",
        /// MULTI_EXIT_DISC (RFC 4271).
        MULTI_EXIT_DISC = 4 => "MULTI_EXIT_DISC",
        /// LOCAL_PREF (RFC 4271).
        LOCAL_PREF = 5 => "LOCAL_PREF",
        /// ATOMIC_AGGREGATE (RFC 4271).
        ATOMIC_AGGREGATE = 6 => "ATOMIC_AGGREGATE",
        /// AGGREGATOR (RFC 4271).
        AGGREGATOR = 7 => "AGGREGATOR",
        /// COMMUNITIES (RFC 1997).
        COMMUNITIES = 8 => "COMMUNITIES",
        /// ORIGINATOR_ID (RFC 4456).
        ORIGINATOR_ID = 9 => "ORIGINATOR_ID",
        /// CLUSTER_LIST (RFC 4456).
        CLUSTER_LIST = 10 => "CLUSTER_LIST",
        /// MP_REACH_NLRI (RFC 4760).
        MP_REACH_NLRI = 14 => "MP_REACH_NLRI",
        /// MP_UNREACH_NLRI (RFC 4760).
        MP_UNREACH_NLRI = 15 => "MP_UNREACH_NLRI",
        /// EXTENDED COMMUNITIES (RFC 4360).
        EXTENDED_COMMUNITIES = 16 => "EXTENDED_COMMUNITIES",
        /// AS4_PATH (RFC 6793).
        AS4_PATH = 17 => "AS4_PATH",
        /// AS4_AGGREGATOR (RFC 6793).
        AS4_AGGREGATOR = 18 => "AS4_AGGREGATOR",
        /// LARGE_COMMUNITY (RFC 8092).
        LARGE_COMMUNITIES = 32 => "LARGE_COMMUNITY",
        /// ONLY_TO_CUSTOMER (RFC 9234).
        ONLY_TO_CUSTOMER = 35 => "ONLY_TO_CUSTOMER",
    }
}

/// The attribute flags octet.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct AttrFlags(pub u8);

impl AttrFlags {
    /// Optional (vs well-known).
    pub const OPTIONAL: u8 = 0x80;
    /// Transitive.
    pub const TRANSITIVE: u8 = 0x40;
    /// Partial: some speaker on the way did not recognise this optional transitive attribute.
    pub const PARTIAL: u8 = 0x20;
    /// The length field is two octets.
    pub const EXTENDED_LENGTH: u8 = 0x10;

    /// Well-known (mandatory or discretionary), hence transitive.
    pub const WELL_KNOWN: Self = Self(Self::TRANSITIVE);
    /// Optional non-transitive.
    pub const OPTIONAL_NON_TRANSITIVE: Self = Self(Self::OPTIONAL);
    /// Optional transitive.
    pub const OPTIONAL_TRANSITIVE: Self = Self(Self::OPTIONAL | Self::TRANSITIVE);

    /// Whether the attribute is optional.
    pub const fn optional(self) -> bool {
        self.0 & Self::OPTIONAL != 0
    }
    /// Whether the attribute is transitive.
    pub const fn transitive(self) -> bool {
        self.0 & Self::TRANSITIVE != 0
    }
    /// Whether the Partial bit is set.
    pub const fn partial(self) -> bool {
        self.0 & Self::PARTIAL != 0
    }
    /// Whether the length field is two octets.
    pub const fn extended_length(self) -> bool {
        self.0 & Self::EXTENDED_LENGTH != 0
    }
    /// The optional and transitive bits only: what RFC 7606 §3(c) compares.
    pub const fn category(self) -> u8 {
        self.0 & (Self::OPTIONAL | Self::TRANSITIVE)
    }
}

impl fmt::Debug for AttrFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AttrFlags({:#04x})", self.0)
    }
}

impl AttrType {
    /// The optional/transitive bits the attribute's RFC requires, or `None` when unknown.
    pub const fn expected_category(self) -> Option<u8> {
        const WK: u8 = AttrFlags::TRANSITIVE;
        const ONT: u8 = AttrFlags::OPTIONAL;
        const OT: u8 = AttrFlags::OPTIONAL | AttrFlags::TRANSITIVE;
        Some(match self.0 {
            1..=3 | 5 | 6 => WK,
            4 | 9 | 10 | 14 | 15 => ONT,
            7 | 8 | 16..=18 | 32 | 35 => OT,
            _ => return None,
        })
    }

    /// Whether this codec decodes the attribute (otherwise it is kept raw).
    pub const fn is_known(self) -> bool {
        self.expected_category().is_some()
    }
}

/// One attribute as found in a received UPDATE, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawAttr<'a> {
    /// The flags as received.
    pub flags: AttrFlags,
    /// The type code.
    pub ty: AttrType,
    /// The value bytes.
    pub value: &'a [u8],
    /// The whole attribute (flags, type, length, value).
    pub bytes: &'a [u8],
}

/// A path attribute, owned and decoded.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PathAttribute {
    /// ORIGIN.
    Origin(Origin),
    /// AS_PATH, with 4-octet AS numbers whatever the session encodes.
    AsPath(AsPath),
    /// NEXT_HOP.
    NextHop(std::net::Ipv4Addr),
    /// MULTI_EXIT_DISC.
    MultiExitDisc(u32),
    /// LOCAL_PREF.
    LocalPref(u32),
    /// ATOMIC_AGGREGATE.
    AtomicAggregate,
    /// AGGREGATOR.
    Aggregator(Aggregator),
    /// COMMUNITIES.
    Communities(Vec<Community>),
    /// ORIGINATOR_ID.
    OriginatorId(std::net::Ipv4Addr),
    /// CLUSTER_LIST.
    ClusterList(Vec<std::net::Ipv4Addr>),
    /// MP_REACH_NLRI.
    MpReachNlri(MpReach),
    /// MP_UNREACH_NLRI.
    MpUnreachNlri(MpUnreach),
    /// EXTENDED COMMUNITIES.
    ExtendedCommunities(Vec<ExtCommunity>),
    /// AS4_PATH (only meaningful on sessions without 4-octet AS).
    As4Path(AsPath),
    /// AS4_AGGREGATOR (only meaningful on sessions without 4-octet AS).
    As4Aggregator(Aggregator),
    /// LARGE_COMMUNITY.
    LargeCommunities(Vec<LargeCommunity>),
    /// ONLY_TO_CUSTOMER.
    OnlyToCustomer(u32),
    /// Any other attribute, kept byte for byte.
    Unknown(RawAttribute),
}

impl PathAttribute {
    /// The type code.
    pub fn ty(&self) -> AttrType {
        match self {
            Self::Origin(_) => AttrType::ORIGIN,
            Self::AsPath(_) => AttrType::AS_PATH,
            Self::NextHop(_) => AttrType::NEXT_HOP,
            Self::MultiExitDisc(_) => AttrType::MULTI_EXIT_DISC,
            Self::LocalPref(_) => AttrType::LOCAL_PREF,
            Self::AtomicAggregate => AttrType::ATOMIC_AGGREGATE,
            Self::Aggregator(_) => AttrType::AGGREGATOR,
            Self::Communities(_) => AttrType::COMMUNITIES,
            Self::OriginatorId(_) => AttrType::ORIGINATOR_ID,
            Self::ClusterList(_) => AttrType::CLUSTER_LIST,
            Self::MpReachNlri(_) => AttrType::MP_REACH_NLRI,
            Self::MpUnreachNlri(_) => AttrType::MP_UNREACH_NLRI,
            Self::ExtendedCommunities(_) => AttrType::EXTENDED_COMMUNITIES,
            Self::As4Path(_) => AttrType::AS4_PATH,
            Self::As4Aggregator(_) => AttrType::AS4_AGGREGATOR,
            Self::LargeCommunities(_) => AttrType::LARGE_COMMUNITIES,
            Self::OnlyToCustomer(_) => AttrType::ONLY_TO_CUSTOMER,
            Self::Unknown(r) => r.ty,
        }
    }

    /// The flags this attribute is sent with; unknown attributes keep theirs.
    pub fn flags(&self) -> AttrFlags {
        match self {
            Self::Unknown(r) => AttrFlags(r.flags.0 & !AttrFlags::EXTENDED_LENGTH),
            other => AttrFlags(other.ty().expected_category().unwrap_or(0)),
        }
    }

    /// Length of the value as encoded for `ctx`.
    pub fn value_len(&self, ctx: &SessionCtx) -> usize {
        match self {
            Self::Origin(_) => 1,
            Self::AsPath(p) => p.encoded_len(ctx.four_octet_as),
            Self::As4Path(p) => p.encoded_len(true),
            Self::NextHop(_)
            | Self::MultiExitDisc(_)
            | Self::LocalPref(_)
            | Self::OriginatorId(_)
            | Self::OnlyToCustomer(_) => 4,
            Self::AtomicAggregate => 0,
            Self::Aggregator(_) if ctx.four_octet_as => 8,
            Self::Aggregator(_) => 6,
            Self::As4Aggregator(_) => 8,
            Self::Communities(c) => 4 * c.len(),
            Self::ClusterList(c) => 4 * c.len(),
            Self::ExtendedCommunities(c) => 8 * c.len(),
            Self::LargeCommunities(c) => 12 * c.len(),
            Self::MpReachNlri(m) => m.value_len(ctx),
            Self::MpUnreachNlri(m) => m.value_len(ctx),
            Self::Unknown(r) => r.value.len(),
        }
    }

    /// Length of the whole encoded attribute for `ctx`.
    pub fn encoded_len(&self, ctx: &SessionCtx) -> usize {
        let v = self.value_len(ctx);
        v + if v > 255 { 4 } else { 3 }
    }

    /// Appends the attribute encoded for `ctx`. The extended-length flag is set exactly when
    /// the value needs it. On a session without 4-octet AS, AS numbers above 65535 are
    /// written as AS_TRANS: the caller adds AS4_PATH / AS4_AGGREGATOR (as
    /// [`crate::update::Update::encode`] does).
    pub fn encode(&self, ctx: &SessionCtx, out: &mut BytesMut) {
        let len = self.value_len(ctx);
        put_attr_header(out, self.flags(), self.ty(), len);
        match self {
            Self::Origin(o) => out.put_u8(o.0),
            Self::AsPath(p) => p.encode(ctx.four_octet_as, out),
            Self::As4Path(p) => p.encode(true, out),
            Self::NextHop(a) | Self::OriginatorId(a) => out.put_slice(&a.octets()),
            Self::MultiExitDisc(v) | Self::LocalPref(v) | Self::OnlyToCustomer(v) => {
                out.put_u32(*v);
            }
            Self::AtomicAggregate => {}
            Self::Aggregator(a) => a.encode(ctx.four_octet_as, out),
            Self::As4Aggregator(a) => a.encode(true, out),
            Self::Communities(c) => c.iter().for_each(|c| out.put_u32(c.0)),
            Self::ClusterList(c) => c.iter().for_each(|a| out.put_slice(&a.octets())),
            Self::ExtendedCommunities(c) => c.iter().for_each(|c| out.put_slice(&c.0)),
            Self::LargeCommunities(c) => c.iter().for_each(|c| c.encode(out)),
            Self::MpReachNlri(m) => m.encode_value(ctx, out),
            Self::MpUnreachNlri(m) => m.encode_value(ctx, out),
            Self::Unknown(r) => out.put_slice(&r.value),
        }
    }
}

/// Writes an attribute header, choosing the length field's size from `len`.
pub fn put_attr_header(out: &mut BytesMut, flags: AttrFlags, ty: AttrType, len: usize) {
    debug_assert!(len <= usize::from(u16::MAX));
    if len > 255 {
        out.put_u8(flags.0 | AttrFlags::EXTENDED_LENGTH);
        out.put_u8(ty.0);
        out.put_u16(len as u16);
    } else {
        out.put_u8(flags.0 & !AttrFlags::EXTENDED_LENGTH);
        out.put_u8(ty.0);
        out.put_u8(len as u8);
    }
}

/// Copies a slice into `Bytes`; for owned forms decoded from borrowed views.
pub(crate) fn bytes_of(b: &[u8]) -> Bytes {
    Bytes::copy_from_slice(b)
}

fn join<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(" ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

/// The value as an operator reads it (`birdc show route all` style): `IGP`,
/// `65001 65002 {65010 65011}`, `65000:1 NO_EXPORT`, `ipv6-unicast via 2001:db8::1 [...]`.
impl fmt::Display for PathAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Origin(o) => write!(f, "{o}"),
            Self::AsPath(p) | Self::As4Path(p) => write!(f, "{p}"),
            Self::NextHop(a) | Self::OriginatorId(a) => write!(f, "{a}"),
            Self::MultiExitDisc(v) | Self::LocalPref(v) | Self::OnlyToCustomer(v) => {
                write!(f, "{v}")
            }
            Self::AtomicAggregate => f.write_str("set"),
            Self::Aggregator(a) | Self::As4Aggregator(a) => write!(f, "AS{} {}", a.asn, a.address),
            Self::Communities(c) => join(f, c),
            Self::ClusterList(c) => join(f, c),
            Self::ExtendedCommunities(c) => join(f, c),
            Self::LargeCommunities(c) => join(f, c),
            Self::MpReachNlri(m) => {
                write!(f, "{} via ", m.family)?;
                match m.next_hop {
                    NextHop::V4(a) => write!(f, "{a}")?,
                    NextHop::V6 { global, link_local } => {
                        write!(f, "{global}")?;
                        if let Some(l) = link_local {
                            write!(f, " {l}")?;
                        }
                    }
                }
                f.write_str(" [")?;
                join(f, &m.nlri)?;
                f.write_str("]")
            }
            Self::MpUnreachNlri(m) => {
                write!(f, "{} [", m.family)?;
                join(f, &m.withdrawn)?;
                f.write_str("]")
            }
            Self::Unknown(r) => write!(
                f,
                "flags {:#04x} value {}",
                r.flags.0,
                crate::util::Hex(&r.value)
            ),
        }
    }
}
