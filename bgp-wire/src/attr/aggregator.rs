//! AGGREGATOR (RFC 4271 §5.1.7) and AS4_AGGREGATOR (RFC 6793); errors RFC 7606 §7.7,
//! RFC 6793 §6, RFC 7607.

use std::net::Ipv4Addr;

use bytes::{BufMut, BytesMut};
use serde::Serialize;

use crate::attr::as_path::two_octet;
use crate::ctx::SessionCtx;
use crate::update::issue::{Fault, IssueKind};

/// The AS and router that aggregated a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Aggregator {
    /// The aggregating AS (4-octet).
    pub asn: u32,
    /// The aggregating router's BGP identifier.
    pub address: Ipv4Addr,
}

impl Aggregator {
    /// Decodes a value of 6 (2-octet AS) or 8 octets; `None` for any other length.
    pub fn decode(value: &[u8]) -> Option<Self> {
        match *value {
            [a, b, c, d, e, f] => Some(Self {
                asn: u32::from(u16::from_be_bytes([a, b])),
                address: Ipv4Addr::new(c, d, e, f),
            }),
            [a, b, c, d, e, f, g, h] => Some(Self {
                asn: u32::from_be_bytes([a, b, c, d]),
                address: Ipv4Addr::new(e, f, g, h),
            }),
            _ => None,
        }
    }

    pub(crate) fn encode(&self, four_octet: bool, out: &mut BytesMut) {
        if four_octet {
            out.put_u32(self.asn);
        } else {
            out.put_u16(two_octet(self.asn));
        }
        out.put_slice(&self.address.octets());
    }
}

pub(crate) fn check(value: &[u8], ctx: &SessionCtx) -> Result<(), Fault> {
    let want = if ctx.four_octet_as { 8 } else { 6 };
    if value.len() != want {
        return Err(Fault::discard(IssueKind::AttributeLength));
    }
    match Aggregator::decode(value) {
        Some(a) if a.asn != 0 => Ok(()),
        _ => Err(Fault::discard(IssueKind::AsZero)),
    }
}

pub(crate) fn check_as4(value: &[u8], ctx: &SessionCtx) -> Result<(), Fault> {
    if ctx.four_octet_as {
        return Err(Fault::discard(IssueKind::As4OnFourOctetSession));
    }
    if value.len() != 8 {
        return Err(Fault::discard(IssueKind::AttributeLength));
    }
    match Aggregator::decode(value) {
        Some(a) if a.asn != 0 => Ok(()),
        _ => Err(Fault::discard(IssueKind::AsZero)),
    }
}
