//! LOCAL_PREF (RFC 4271 §5.1.5; errors RFC 7606 §7.5).

use crate::ctx::SessionCtx;
use crate::update::issue::{Fault, IssueKind};

pub(crate) fn check(value: &[u8], ctx: &SessionCtx) -> Result<(), Fault> {
    if !ctx.ibgp {
        // RFC 4271 §5.1.5: ignored from external peers; RFC 7606 §7.5: discarded.
        return Err(Fault::discard(IssueKind::NotFromExternalPeer));
    }
    crate::attr::med::check(value)
}
