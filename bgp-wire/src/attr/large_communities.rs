//! LARGE_COMMUNITY (RFC 8092; errors RFC 8092 §6, RFC 7606).

use std::fmt;

use bytes::{BufMut, BytesMut};
use serde::Serialize;

use crate::update::issue::Fault;

/// One large community, `global:local1:local2`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    /// Global administrator (an AS number).
    pub global: u32,
    /// First local data part.
    pub local1: u32,
    /// Second local data part.
    pub local2: u32,
}

impl LargeCommunity {
    pub(crate) fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.global);
        out.put_u32(self.local1);
        out.put_u32(self.local2);
    }
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.global, self.local1, self.local2)
    }
}

impl fmt::Debug for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for LargeCommunity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

pub(crate) fn check(value: &[u8]) -> Result<(), Fault> {
    crate::attr::communities::check_list(value, 12)
}

/// Iterates the large communities of a checked value.
pub fn iter(value: &[u8]) -> impl Iterator<Item = LargeCommunity> + '_ {
    value.chunks_exact(12).map(|c| LargeCommunity {
        global: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
        local1: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
        local2: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
    })
}
