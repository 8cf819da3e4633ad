//! MP_REACH_NLRI (RFC 4760 §3; errors RFC 7606 §7.11, RFC 4760 §7), with IPv6 global and
//! link-local next hops (RFC 2545) and IPv6 next hops for IPv4 NLRI (RFC 8950).

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use serde::Serialize;

use crate::ctx::{Afi, Family, Safi, SessionCtx};
use crate::nlri::{self, Nlri, NlriIter};
use crate::update::issue::{Fault, IssueKind};

/// The next hop of an MP_REACH_NLRI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum NextHop {
    /// An IPv4 next hop (4 octets).
    V4(Ipv4Addr),
    /// An IPv6 global next hop, with the link-local one when 32 octets were sent.
    V6 {
        /// Global (or, from some senders, link-local) address.
        global: Ipv6Addr,
        /// Link-local address of the second half (RFC 2545 §3).
        #[serde(skip_serializing_if = "Option::is_none")]
        link_local: Option<Ipv6Addr>,
    },
}

impl NextHop {
    /// Encoded length.
    pub const fn len(&self) -> usize {
        match self {
            Self::V4(_) => 4,
            Self::V6 {
                link_local: None, ..
            } => 16,
            Self::V6 { .. } => 32,
        }
    }

    /// Always false: a next hop has at least four octets.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// Decodes a next hop of 4, 16 or 32 octets.
    pub fn decode(b: &[u8]) -> Option<Self> {
        match b.len() {
            4 => Some(Self::V4(crate::attr::next_hop::addr(b))),
            16 | 32 => {
                let mut g = [0u8; 16];
                g.copy_from_slice(&b[..16]);
                let link_local = (b.len() == 32).then(|| {
                    let mut l = [0u8; 16];
                    l.copy_from_slice(&b[16..]);
                    Ipv6Addr::from(l)
                });
                Some(Self::V6 {
                    global: Ipv6Addr::from(g),
                    link_local,
                })
            }
            _ => None,
        }
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        match self {
            Self::V4(a) => out.put_slice(&a.octets()),
            Self::V6 { global, link_local } => {
                out.put_slice(&global.octets());
                if let Some(l) = link_local {
                    out.put_slice(&l.octets());
                }
            }
        }
    }
}

/// An MP_REACH_NLRI, owned.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct MpReach {
    /// The family of the NLRI.
    pub family: Family,
    /// The next hop.
    pub next_hop: NextHop,
    /// The reachable prefixes.
    pub nlri: Vec<Nlri>,
}

impl MpReach {
    pub(crate) fn value_len(&self, ctx: &SessionCtx) -> usize {
        let ap = ctx.add_path_tx.contains(self.family);
        5 + self.next_hop.len() + self.nlri.iter().map(|n| n.encoded_len(ap)).sum::<usize>()
    }

    pub(crate) fn encode_value(&self, ctx: &SessionCtx, out: &mut BytesMut) {
        let ap = ctx.add_path_tx.contains(self.family);
        out.put_u16(self.family.afi().0);
        out.put_u8(self.family.safi().0);
        out.put_u8(self.next_hop.len() as u8);
        self.next_hop.encode(out);
        out.put_u8(0);
        for n in &self.nlri {
            n.encode(ap, out);
        }
    }
}

/// An MP_REACH_NLRI borrowed from a message, already checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MpReachView<'a> {
    family: Family,
    next_hop: &'a [u8],
    nlri: &'a [u8],
    add_path: bool,
}

impl<'a> MpReachView<'a> {
    /// The family.
    pub const fn family(&self) -> Family {
        self.family
    }

    /// The next hop.
    pub fn next_hop(&self) -> Option<NextHop> {
        NextHop::decode(self.next_hop)
    }

    /// The encoded next hop.
    pub const fn next_hop_bytes(&self) -> &'a [u8] {
        self.next_hop
    }

    /// The reachable prefixes.
    pub const fn nlri(&self) -> NlriIter<'a> {
        NlriIter::new(self.nlri, self.family, self.add_path)
    }

    /// The owned form.
    pub fn to_owned_attr(&self) -> Option<MpReach> {
        Some(MpReach {
            family: self.family,
            next_hop: self.next_hop()?,
            nlri: self.nlri().collect(),
        })
    }
}

/// The outcome of parsing an MP attribute's AFI/SAFI header.
pub(crate) enum MpHeader<'a> {
    /// A negotiated family and the bytes after AFI/SAFI.
    Family(Family, &'a [u8]),
    /// A family the session did not negotiate: ignore the attribute.
    Unnegotiated,
}

/// Reads AFI and SAFI; too short to tell them is a reset (RFC 7606 §7.11).
pub(crate) fn mp_header<'a>(value: &'a [u8], ctx: &SessionCtx) -> Result<MpHeader<'a>, Fault> {
    let Some((&[a0, a1, s], rest)) = value.split_first_chunk::<3>() else {
        return Err(Fault::reset(IssueKind::MpAttributeTooShort));
    };
    let (afi, safi) = (Afi(u16::from_be_bytes([a0, a1])), Safi(s));
    match Family::from_afi_safi(afi, safi) {
        Some(f) if ctx.families.contains(f) => Ok(MpHeader::Family(f, rest)),
        _ => Ok(MpHeader::Unnegotiated),
    }
}

/// Parses a value whose AFI/SAFI is negotiated; a fault is an AFI/SAFI disable.
pub(crate) fn parse<'a>(
    family: Family,
    rest: &'a [u8],
    ctx: &SessionCtx,
) -> Result<MpReachView<'a>, Fault> {
    let bad = Fault::disable(IssueKind::MalformedMpAttribute);
    let (&nh_len, rest) = rest.split_first().ok_or(bad)?;
    let nh_len = usize::from(nh_len);
    let next_hop = rest.get(..nh_len).ok_or(bad)?;
    let ok_len = match family {
        Family::Ipv6Unicast => matches!(nh_len, 16 | 32),
        Family::Ipv4Unicast if ctx.extended_next_hop.contains(family) => {
            matches!(nh_len, 4 | 16 | 32)
        }
        Family::Ipv4Unicast => nh_len == 4,
    };
    if !ok_len {
        return Err(bad);
    }
    // The reserved octet (RFC 4760 §3) must be there; its value is ignored.
    let nlri = rest.get(nh_len + 1..).ok_or(bad)?;
    let add_path = ctx.add_path_rx.contains(family);
    nlri::validate(nlri, family, add_path).map_err(|_| bad)?;
    Ok(MpReachView {
        family,
        next_hop,
        nlri,
        add_path,
    })
}
