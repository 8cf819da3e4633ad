//! Packing many prefixes that share one attribute set into as few UPDATEs as fit the
//! session's maximum message length.

use bytes::{BufMut, BytesMut};

use crate::attr::{AttrFlags, AttrType, NextHop};
use crate::ctx::{Family, SessionCtx};
use crate::header::{HEADER_LEN, MessageType, begin_message, finish_header};
use crate::nlri::Nlri;
use crate::update::owned::EncodeError;

/// Packs announcements and withdrawals into UPDATE messages of at most the session's
/// maximum length, splitting wherever the next prefix would not fit: an attribute set that
/// grows (say, by a reflector's ORIGINATOR_ID and CLUSTER_LIST) costs more messages, never
/// a dropped route.
#[derive(Clone, Copy, Debug)]
pub struct UpdatePacker {
    ctx: SessionCtx,
    max: usize,
}

impl UpdatePacker {
    /// A packer for one session's encoding.
    pub fn new(ctx: &SessionCtx) -> Self {
        Self {
            ctx: *ctx,
            max: ctx.max_message_len(),
        }
    }

    /// Lowers the message length limit (for tests and for peers that want smaller
    /// messages); never above the session's maximum.
    pub fn with_max_len(mut self, max: usize) -> Self {
        self.max = max.min(self.ctx.max_message_len());
        self
    }

    /// Appends UPDATEs announcing `nlri` with the encoded path attributes `attrs`, which
    /// must not hold MP attributes. IPv4 prefixes with an IPv4 next hop use the NLRI field
    /// and `attrs` must then hold NEXT_HOP; any other case (IPv6, or IPv4 with an IPv6 next
    /// hop per RFC 8950) builds an MP_REACH_NLRI around `next_hop`. Returns the number of
    /// messages written.
    pub fn announce<'n>(
        &self,
        family: Family,
        attrs: &[u8],
        next_hop: Option<&NextHop>,
        nlri: impl IntoIterator<Item = &'n Nlri>,
        out: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        let ap = self.ctx.add_path_tx.contains(family);
        let mp_next_hop = match (family, next_hop) {
            (Family::Ipv4Unicast, None | Some(NextHop::V4(_))) => None,
            (_, Some(nh)) => Some(*nh),
            (_, None) => Some(NextHop::V6 {
                global: std::net::Ipv6Addr::UNSPECIFIED,
                link_local: None,
            }),
        };
        // Fixed part: header, empty withdrawn, TPAL, attributes, MP_REACH header.
        let mp_fixed = mp_next_hop.map_or(0, |nh| 4 + 5 + nh.len());
        let fixed = HEADER_LEN + 4 + attrs.len() + mp_fixed;
        let mut nlri = nlri.into_iter().peekable();
        let mut count = 0;
        while let Some(first) = nlri.peek() {
            self.fits(fixed + first.encoded_len(ap))?;
            let start = begin_message(out, MessageType::UPDATE);
            out.put_u16(0);
            let tpal_at = out.len();
            out.put_u16(0);
            match mp_next_hop {
                None => {
                    out.put_slice(attrs);
                    self.put_nlri(&mut nlri, ap, start, 0, out);
                }
                Some(nh) => {
                    // RFC 7606 §5.1: MP_REACH_NLRI goes first, so that a receiver can find
                    // the prefixes to withdraw even if a later attribute is malformed.
                    let mp_at = out.len();
                    out.put_u8(AttrFlags::OPTIONAL | AttrFlags::EXTENDED_LENGTH);
                    out.put_u8(AttrType::MP_REACH_NLRI.0);
                    out.put_u16(0);
                    out.put_u16(family.afi().0);
                    out.put_u8(family.safi().0);
                    out.put_u8(nh.len() as u8);
                    nh.encode(out);
                    out.put_u8(0);
                    self.put_nlri(&mut nlri, ap, start, attrs.len(), out);
                    let mp_len = out.len() - mp_at - 4;
                    out[mp_at + 2..mp_at + 4].copy_from_slice(&(mp_len as u16).to_be_bytes());
                    out.put_slice(attrs);
                }
            }
            let tpal = match mp_next_hop {
                None => attrs.len(),
                Some(_) => out.len() - tpal_at - 2,
            };
            out[tpal_at..tpal_at + 2].copy_from_slice(&(tpal as u16).to_be_bytes());
            finish_header(out, start);
            count += 1;
        }
        Ok(count)
    }

    /// Whether a message of `len` bytes fits the limit.
    fn fits(&self, len: usize) -> Result<(), EncodeError> {
        if len > self.max {
            return Err(EncodeError::TooLong { len, max: self.max });
        }
        Ok(())
    }

    /// Appends prefixes to the message begun at `start` while they fit, leaving `tail`
    /// bytes of room for what follows them.
    fn put_nlri<'n>(
        &self,
        nlri: &mut std::iter::Peekable<impl Iterator<Item = &'n Nlri>>,
        add_path: bool,
        start: usize,
        tail: usize,
        out: &mut BytesMut,
    ) {
        while let Some(n) = nlri.peek() {
            if out.len() - start + n.encoded_len(add_path) + tail > self.max {
                break;
            }
            n.encode(add_path, out);
            nlri.next();
        }
    }

    /// Appends UPDATEs withdrawing `nlri` (all of `family`). Returns the number of messages;
    /// fails only when a limit set by [`UpdatePacker::with_max_len`] is too small for one
    /// prefix.
    pub fn withdraw<'n>(
        &self,
        family: Family,
        nlri: impl IntoIterator<Item = &'n Nlri>,
        out: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        let ap = self.ctx.add_path_tx.contains(family);
        // Header, both length fields, and the MP_UNREACH_NLRI header outside IPv4.
        let fixed = HEADER_LEN + 4 + if family == Family::Ipv4Unicast { 0 } else { 7 };
        let mut nlri = nlri.into_iter().peekable();
        let mut count = 0;
        while let Some(first) = nlri.peek() {
            self.fits(fixed + first.encoded_len(ap))?;
            let start = begin_message(out, MessageType::UPDATE);
            let len_at = out.len();
            out.put_u16(0);
            if family != Family::Ipv4Unicast {
                out.put_u16(0);
                out.put_u8(AttrFlags::OPTIONAL | AttrFlags::EXTENDED_LENGTH);
                out.put_u8(AttrType::MP_UNREACH_NLRI.0);
                out.put_u16(0);
                out.put_u16(family.afi().0);
                out.put_u8(family.safi().0);
            }
            let body_at = out.len();
            // Room is reserved for the trailing TPAL of an IPv4 withdrawal.
            let tail = if family == Family::Ipv4Unicast { 2 } else { 0 };
            while let Some(n) = nlri.peek() {
                if out.len() - start + n.encoded_len(ap) + tail > self.max {
                    break;
                }
                n.encode(ap, out);
                nlri.next();
            }
            let len = out.len() - body_at;
            if family == Family::Ipv4Unicast {
                out[len_at..len_at + 2].copy_from_slice(&(len as u16).to_be_bytes());
                out.put_u16(0);
            } else {
                // Attribute length and TPAL.
                let attr_len = len + 3;
                out[body_at - 5..body_at - 3].copy_from_slice(&(attr_len as u16).to_be_bytes());
                out[len_at + 2..len_at + 4].copy_from_slice(&((attr_len + 4) as u16).to_be_bytes());
            }
            finish_header(out, start);
            count += 1;
        }
        Ok(count)
    }
}
