//! The owned UPDATE and its encoding.

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use thiserror::Error;

use crate::attr::{AsPath, AsSegment, AttrType, MpUnreach, PathAttribute};
use crate::ctx::{Family, SessionCtx};
use crate::header::{HEADER_LEN, MessageType, begin_message, finish_header};
use crate::nlri::Nlri;

/// An UPDATE that cannot be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The message would exceed the session's maximum length (RFC 4271 §4, RFC 8654).
    #[error("UPDATE of {len} bytes exceeds the session's maximum of {max}")]
    TooLong {
        /// The length the message would have.
        len: usize,
        /// The session's maximum.
        max: usize,
    },
}

/// An UPDATE, owned. Prefixes of IPv4 unicast go in `withdrawn` and `nlri`; other families
/// travel in [`PathAttribute::MpReachNlri`] / [`PathAttribute::MpUnreachNlri`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Update {
    /// Withdrawn IPv4 unicast prefixes.
    pub withdrawn: Vec<Nlri>,
    /// Path attributes, in the order they are encoded.
    pub attributes: Vec<PathAttribute>,
    /// Announced IPv4 unicast prefixes.
    pub nlri: Vec<Nlri>,
}

impl Update {
    /// The End-of-RIB marker of `family` (RFC 4724 §2).
    pub fn end_of_rib(family: Family) -> Self {
        match family {
            Family::Ipv4Unicast => Self::default(),
            _ => Self {
                attributes: vec![PathAttribute::MpUnreachNlri(MpUnreach {
                    family,
                    withdrawn: Vec::new(),
                })],
                ..Self::default()
            },
        }
    }

    /// The attribute of type `ty`, if present.
    pub fn attr(&self, ty: AttrType) -> Option<&PathAttribute> {
        self.attributes.iter().find(|a| a.ty() == ty)
    }

    /// AS4_PATH and AS4_AGGREGATOR that a 2-octet session needs to carry AS numbers above
    /// 65535 (RFC 6793 §4.2.2), unless the update already has them.
    fn as4_extras(&self, ctx: &SessionCtx) -> [Option<PathAttribute>; 2] {
        if ctx.four_octet_as {
            return [None, None];
        }
        let path = match self.attr(AttrType::AS_PATH) {
            Some(PathAttribute::AsPath(p))
                if p.needs_four_octets() && self.attr(AttrType::AS4_PATH).is_none() =>
            {
                // Confederation segments never go into AS4_PATH (RFC 6793 §3).
                let segments = p
                    .segments
                    .iter()
                    .filter(|s| matches!(s.ty.0, 1 | 2))
                    .cloned()
                    .collect::<Vec<AsSegment>>();
                Some(PathAttribute::As4Path(AsPath { segments }))
            }
            _ => None,
        };
        let aggregator = match self.attr(AttrType::AGGREGATOR) {
            Some(PathAttribute::Aggregator(a))
                if a.asn > 0xffff && self.attr(AttrType::AS4_AGGREGATOR).is_none() =>
            {
                Some(PathAttribute::As4Aggregator(*a))
            }
            _ => None,
        };
        [path, aggregator]
    }

    /// The encoded length, header included.
    pub fn encoded_len(&self, ctx: &SessionCtx) -> usize {
        let ap = ctx.add_path_tx.contains(Family::Ipv4Unicast);
        let w: usize = self.withdrawn.iter().map(|n| n.encoded_len(ap)).sum();
        let n: usize = self.nlri.iter().map(|n| n.encoded_len(ap)).sum();
        let a: usize = self
            .attributes
            .iter()
            .chain(self.as4_extras(ctx).iter().flatten())
            .map(|a| a.encoded_len(ctx))
            .sum();
        HEADER_LEN + 2 + w + 2 + a + n
    }

    /// Appends the encoded message to `out`, or fails without writing if it would exceed
    /// the session's maximum length ([`crate::update::UpdatePacker`] splits instead).
    pub fn encode(&self, ctx: &SessionCtx, out: &mut BytesMut) -> Result<(), EncodeError> {
        let len = self.encoded_len(ctx);
        let max = ctx.max_message_len();
        if len > max {
            return Err(EncodeError::TooLong { len, max });
        }
        out.reserve(len);
        let ap = ctx.add_path_tx.contains(Family::Ipv4Unicast);
        let start = begin_message(out, MessageType::UPDATE);
        let w: usize = self.withdrawn.iter().map(|n| n.encoded_len(ap)).sum();
        out.put_u16(w as u16);
        for n in &self.withdrawn {
            n.encode(ap, out);
        }
        let tpal_at = out.len();
        out.put_u16(0);
        let extras = self.as4_extras(ctx);
        for a in self.attributes.iter().chain(extras.iter().flatten()) {
            a.encode(ctx, out);
        }
        let tpal = out.len() - tpal_at - 2;
        out[tpal_at..tpal_at + 2].copy_from_slice(&(tpal as u16).to_be_bytes());
        for n in &self.nlri {
            n.encode(ap, out);
        }
        finish_header(out, start);
        Ok(())
    }
}
