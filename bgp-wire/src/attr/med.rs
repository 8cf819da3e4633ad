//! MULTI_EXIT_DISC (RFC 4271 §5.1.4; errors RFC 7606 §7.4).

use crate::update::issue::{Fault, IssueKind};

pub(crate) fn check(value: &[u8]) -> Result<(), Fault> {
    if value.len() == 4 {
        Ok(())
    } else {
        Err(Fault::withdraw(IssueKind::AttributeLength))
    }
}

/// Reads a four-octet value; zero when the length is not four (never after a check).
#[inline]
pub(crate) fn u32_of(value: &[u8]) -> u32 {
    <[u8; 4]>::try_from(value).map_or(0, u32::from_be_bytes)
}
