//! ORIGIN (RFC 4271 §4.3, §5.1.1; errors RFC 7606 §7.1).

use crate::ctx::open_newtype;
use crate::update::issue::{Fault, IssueKind};

open_newtype! {
    /// The ORIGIN value; values above 2 are malformed on receipt.
    Origin(u8) {
        /// Learned from an interior protocol.
        IGP = 0 => "IGP",
        /// Learned from EGP.
        EGP = 1 => "EGP",
        /// Learned some other way.
        INCOMPLETE = 2 => "INCOMPLETE",
    }
}

pub(crate) fn check(value: &[u8]) -> Result<(), Fault> {
    match value {
        [0..=2] => Ok(()),
        [_] => Err(Fault::withdraw(IssueKind::InvalidOrigin)),
        _ => Err(Fault::withdraw(IssueKind::AttributeLength)),
    }
}

/// Decodes a value that passed the check.
pub(crate) fn decode(value: &[u8]) -> Origin {
    Origin(value.first().copied().unwrap_or(2))
}
