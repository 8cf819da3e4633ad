//! ORIGINATOR_ID (RFC 4456 §8; errors RFC 7606 §7.9).

use crate::ctx::SessionCtx;
use crate::update::issue::{Fault, IssueKind};

pub(crate) fn check(value: &[u8], ctx: &SessionCtx) -> Result<(), Fault> {
    if !ctx.ibgp {
        return Err(Fault::discard(IssueKind::NotFromExternalPeer));
    }
    crate::attr::med::check(value)
}
