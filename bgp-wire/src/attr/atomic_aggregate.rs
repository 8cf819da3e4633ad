//! ATOMIC_AGGREGATE (RFC 4271 §5.1.6; errors RFC 7606 §7.6).

use crate::update::issue::{Fault, IssueKind};

pub(crate) fn check(value: &[u8]) -> Result<(), Fault> {
    if value.is_empty() {
        Ok(())
    } else {
        Err(Fault::discard(IssueKind::AttributeLength))
    }
}
