//! COMMUNITIES (RFC 1997; errors RFC 7606 §7.8), with the well-known values of the IANA
//! registry.

use std::fmt;

use serde::Serialize;

use crate::update::issue::{Fault, IssueKind};

/// One community value, conventionally `AS:value`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u32);

impl Community {
    /// GRACEFUL_SHUTDOWN (RFC 8326).
    pub const GRACEFUL_SHUTDOWN: Self = Self(0xFFFF_0000);
    /// LLGR_STALE (RFC 9494).
    pub const LLGR_STALE: Self = Self(0xFFFF_0006);
    /// NO_LLGR (RFC 9494).
    pub const NO_LLGR: Self = Self(0xFFFF_0007);
    /// BLACKHOLE (RFC 7999).
    pub const BLACKHOLE: Self = Self(0xFFFF_029A);
    /// NO_EXPORT (RFC 1997).
    pub const NO_EXPORT: Self = Self(0xFFFF_FF01);
    /// NO_ADVERTISE (RFC 1997).
    pub const NO_ADVERTISE: Self = Self(0xFFFF_FF02);
    /// NO_EXPORT_SUBCONFED (RFC 1997).
    pub const NO_EXPORT_SUBCONFED: Self = Self(0xFFFF_FF03);
    /// NOPEER (RFC 3765).
    pub const NOPEER: Self = Self(0xFFFF_FF04);

    /// A community from its two halves.
    pub const fn new(asn: u16, value: u16) -> Self {
        Self(((asn as u32) << 16) | value as u32)
    }

    /// The well-known name, if any.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0xFFFF_0000 => "GRACEFUL_SHUTDOWN",
            0xFFFF_0006 => "LLGR_STALE",
            0xFFFF_0007 => "NO_LLGR",
            0xFFFF_029A => "BLACKHOLE",
            0xFFFF_FF01 => "NO_EXPORT",
            0xFFFF_FF02 => "NO_ADVERTISE",
            0xFFFF_FF03 => "NO_EXPORT_SUBCONFED",
            0xFFFF_FF04 => "NOPEER",
            _ => return None,
        })
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{}:{}", self.0 >> 16, self.0 & 0xffff),
        }
    }
}

impl fmt::Debug for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Community {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Checks a list of fixed-size items: a non-zero multiple of `size`, else treat-as-withdraw.
pub(crate) fn check_list(value: &[u8], size: usize) -> Result<(), Fault> {
    if !value.is_empty() && value.len().is_multiple_of(size) {
        Ok(())
    } else {
        Err(Fault::withdraw(IssueKind::AttributeLength))
    }
}

/// Iterates the communities of a checked value.
pub fn iter(value: &[u8]) -> impl Iterator<Item = Community> + '_ {
    value
        .chunks_exact(4)
        .map(|c| Community(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
}
