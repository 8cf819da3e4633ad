//! EXTENDED COMMUNITIES (RFC 4360; errors RFC 7606 §7.14).

use std::fmt;

use serde::Serialize;

use crate::update::issue::Fault;

/// One extended community, kept as its eight octets.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtCommunity(pub [u8; 8]);

impl ExtCommunity {
    /// The type octet (high) and subtype octet.
    pub const fn type_subtype(&self) -> (u8, u8) {
        (self.0[0], self.0[1])
    }
}

impl fmt::Display for ExtCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        let kind = match b[1] {
            0x02 => "rt",
            0x03 => "ro",
            _ => "",
        };
        match (b[0] & 0x3f, kind.is_empty()) {
            // Two-octet AS specific (RFC 4360 §3.1).
            (0x00, false) => write!(
                f,
                "{kind}:{}:{}",
                u16::from_be_bytes([b[2], b[3]]),
                u32::from_be_bytes([b[4], b[5], b[6], b[7]])
            ),
            // IPv4 address specific (RFC 4360 §3.2).
            (0x01, false) => write!(
                f,
                "{kind}:{}.{}.{}.{}:{}",
                b[2],
                b[3],
                b[4],
                b[5],
                u16::from_be_bytes([b[6], b[7]])
            ),
            // Four-octet AS specific (RFC 5668).
            (0x02, false) => write!(
                f,
                "{kind}:{}:{}",
                u32::from_be_bytes([b[2], b[3], b[4], b[5]]),
                u16::from_be_bytes([b[6], b[7]])
            ),
            _ => write!(f, "0x{}", crate::util::Hex(b)),
        }
    }
}

impl fmt::Debug for ExtCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for ExtCommunity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

pub(crate) fn check(value: &[u8]) -> Result<(), Fault> {
    crate::attr::communities::check_list(value, 8)
}

/// Iterates the extended communities of a checked value.
pub fn iter(value: &[u8]) -> impl Iterator<Item = ExtCommunity> + '_ {
    value.chunks_exact(8).map(|c| {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        ExtCommunity(a)
    })
}
