//! Network Layer Reachability Information: length-prefixed IPv4 and IPv6 prefixes, with the
//! RFC 7911 path identifier when ADD-PATH was negotiated for the direction.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;

use crate::ctx::Family;

/// One route key: a prefix and, under ADD-PATH, its path identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Nlri {
    /// RFC 7911 path identifier, present only where ADD-PATH was negotiated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_id: Option<u32>,
    /// The prefix, host bits cleared.
    pub prefix: IpNet,
}

impl Nlri {
    /// A prefix without path identifier.
    pub fn new(prefix: IpNet) -> Self {
        Self {
            path_id: None,
            prefix: prefix.trunc(),
        }
    }

    /// A prefix with an ADD-PATH path identifier.
    pub fn with_path_id(prefix: IpNet, path_id: u32) -> Self {
        Self {
            path_id: Some(path_id),
            prefix: prefix.trunc(),
        }
    }

    /// The family of the prefix.
    pub fn family(&self) -> Family {
        match self.prefix {
            IpNet::V4(_) => Family::Ipv4Unicast,
            IpNet::V6(_) => Family::Ipv6Unicast,
        }
    }

    /// Encoded length with or without a path identifier.
    pub fn encoded_len(&self, add_path: bool) -> usize {
        usize::from(add_path) * 4 + 1 + usize::from(self.prefix.prefix_len()).div_ceil(8)
    }

    /// Appends the encoded NLRI. With `add_path` and no identifier, identifier 0 is sent.
    #[inline]
    pub fn encode(&self, add_path: bool, out: &mut BytesMut) {
        if add_path {
            out.put_u32(self.path_id.unwrap_or(0));
        }
        let len = self.prefix.prefix_len();
        let n = usize::from(len).div_ceil(8);
        // Fixed-size writes (inlined moves, no memcpy call), then drop the unused octets.
        match self.prefix {
            IpNet::V4(p) => {
                let [a, b, c, d] = p.network().octets();
                out.put_slice(&[len, a, b, c, d]);
                out.truncate(out.len() - (4 - n));
            }
            IpNet::V6(p) => {
                let mut buf = [0u8; 17];
                buf[0] = len;
                buf[1..].copy_from_slice(&p.network().octets());
                out.put_slice(&buf);
                out.truncate(out.len() - (16 - n));
            }
        }
    }
}

impl std::fmt::Display for Nlri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.prefix)?;
        if let Some(id) = self.path_id {
            write!(f, "#{id}")?;
        }
        Ok(())
    }
}

/// Why an NLRI field is malformed (RFC 7606 §5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum NlriError {
    /// A prefix length beyond the family's address length.
    #[serde(rename = "prefix-too-long")]
    PrefixTooLong,
    /// The field ends inside a prefix or a path identifier.
    #[serde(rename = "truncated")]
    Truncated,
}

/// Checks an NLRI field and counts its prefixes; `Err` carries the offset inside `bytes`
/// of the first bad prefix.
pub fn validate(bytes: &[u8], family: Family, add_path: bool) -> Result<usize, (usize, NlriError)> {
    let max = family.max_prefix_len();
    // Monomorphised per ADD-PATH so that the plain walk has no path-id arithmetic.
    if add_path {
        walk::<4>(bytes, max)
    } else {
        walk::<0>(bytes, max)
    }
}

/// The validation walk, `SKIP` bytes of path identifier before each length.
#[inline(always)]
fn walk<const SKIP: usize>(bytes: &[u8], max: u8) -> Result<usize, (usize, NlriError)> {
    let (mut pos, mut start, mut count) = (0, 0, 0);
    // One dependent load per prefix; only the last prefix can overrun the field, so the
    // overrun is checked once, after the loop.
    while pos < bytes.len() {
        start = pos;
        let Some(&len) = bytes.get(pos + SKIP) else {
            return Err((start, NlriError::Truncated));
        };
        if len > max {
            return Err((start, NlriError::PrefixTooLong));
        }
        pos += SKIP + 1 + usize::from(len).div_ceil(8);
        count += 1;
    }
    if pos > bytes.len() {
        return Err((start, NlriError::Truncated));
    }
    Ok(count)
}

/// Iterates an NLRI field that [`validate`] accepted. On bytes it did not accept, the
/// iterator stops at the first bad prefix; it never panics.
#[derive(Clone, Debug)]
pub struct NlriIter<'a> {
    bytes: &'a [u8],
    family: Family,
    add_path: bool,
}

impl<'a> NlriIter<'a> {
    /// Iterates `bytes` as prefixes of `family`.
    pub const fn new(bytes: &'a [u8], family: Family, add_path: bool) -> Self {
        Self {
            bytes,
            family,
            add_path,
        }
    }

    /// An iterator over nothing.
    pub const fn empty(family: Family) -> Self {
        Self::new(&[], family, false)
    }

    /// The family of the prefixes.
    pub const fn family(&self) -> Family {
        self.family
    }

    /// The bytes not yet iterated.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    #[inline]
    fn fail(&mut self) -> Option<Nlri> {
        self.bytes = &[];
        None
    }
}

impl Iterator for NlriIter<'_> {
    type Item = Nlri;

    #[inline]
    fn next(&mut self) -> Option<Nlri> {
        let mut b = self.bytes;
        if b.is_empty() {
            return None;
        }
        let path_id = if self.add_path {
            let Some((id, rest)) = b.split_first_chunk::<4>() else {
                return self.fail();
            };
            b = rest;
            Some(u32::from_be_bytes(*id))
        } else {
            None
        };
        let Some((&len, rest)) = b.split_first() else {
            return self.fail();
        };
        let n = usize::from(len).div_ceil(8);
        let Some(addr) = rest.get(..n) else {
            return self.fail();
        };
        self.bytes = &rest[n..];
        let prefix = match self.family {
            Family::Ipv4Unicast => {
                if len > 32 {
                    return self.fail();
                }
                // One unaligned load when 4 bytes are there (bytes past the prefix are
                // cleared by the mask); a register-only fold at the end of the field.
                let word = match rest.first_chunk::<4>() {
                    Some(w) => u32::from_be_bytes(*w),
                    None => addr
                        .iter()
                        .enumerate()
                        .fold(0, |a, (i, &b)| a | (u32::from(b) << (24 - 8 * i))),
                };
                let bits = word & mask32(len);
                IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::from(bits), len))
            }
            Family::Ipv6Unicast => {
                if len > 128 {
                    return self.fail();
                }
                let word = match rest.first_chunk::<16>() {
                    Some(w) => u128::from_be_bytes(*w),
                    None => addr
                        .iter()
                        .enumerate()
                        .fold(0, |a, (i, &b)| a | (u128::from(b) << (120 - 8 * i))),
                };
                let bits = word & mask128(len);
                IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(bits), len))
            }
        };
        Some(Nlri { path_id, prefix })
    }
}

#[inline]
const fn mask32(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len) }
}

#[inline]
const fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    #[test]
    fn ipv4_prefixes_with_host_bits_cleared() {
        let b = hex!("18 c63364  00  20 c0000201  19 c6336481");
        assert_eq!(validate(&b, Family::Ipv4Unicast, false), Ok(4));
        let v: Vec<String> = NlriIter::new(&b, Family::Ipv4Unicast, false)
            .map(|n| n.prefix.to_string())
            .collect();
        assert_eq!(
            v,
            [
                "198.51.100.0/24",
                "0.0.0.0/0",
                "192.0.2.1/32",
                "198.51.100.128/25"
            ]
        );
    }

    #[test]
    fn add_path_ids() {
        let b = hex!("00000007 18 c63364");
        let n: Vec<_> = NlriIter::new(&b, Family::Ipv4Unicast, true).collect();
        assert_eq!(
            n,
            [Nlri::with_path_id("198.51.100.0/24".parse().unwrap(), 7)]
        );
        let mut out = BytesMut::new();
        n[0].encode(true, &mut out);
        assert_eq!(&out[..], &b[..]);
    }

    #[test]
    fn ipv6_round_trip() {
        let b = hex!("20 20010db8  40 20010db800010002  80 20010db8000000000000000000000001");
        assert_eq!(validate(&b, Family::Ipv6Unicast, false), Ok(3));
        let mut out = BytesMut::new();
        for n in NlriIter::new(&b, Family::Ipv6Unicast, false) {
            n.encode(false, &mut out);
        }
        assert_eq!(&out[..], &b[..]);
    }

    // U7: a /33, a truncated /24, and a prefix missing its path identifier.
    #[test]
    fn malformed_fields() {
        let f = Family::Ipv4Unicast;
        assert_eq!(
            validate(&hex!("21 c6336400 00"), f, false),
            Err((0, NlriError::PrefixTooLong))
        );
        assert_eq!(
            validate(&hex!("18 c633"), f, false),
            Err((0, NlriError::Truncated))
        );
        assert_eq!(
            validate(&hex!("18 c63364 28"), f, false),
            Err((4, NlriError::PrefixTooLong))
        );
        assert_eq!(
            validate(&hex!("000001"), f, true),
            Err((0, NlriError::Truncated))
        );
        assert_eq!(
            validate(&hex!("81"), Family::Ipv6Unicast, false),
            Err((0, NlriError::PrefixTooLong))
        );
        // The iterator stops instead of panicking on unvalidated bytes.
        assert_eq!(NlriIter::new(&hex!("18 c63364 21 00"), f, false).count(), 1);
    }
}
