//! CLUSTER_LIST (RFC 4456 §8; errors RFC 7606 §7.10).

use std::net::Ipv4Addr;

use crate::ctx::SessionCtx;
use crate::update::issue::{Fault, IssueKind};

pub(crate) fn check(value: &[u8], ctx: &SessionCtx) -> Result<(), Fault> {
    if !ctx.ibgp {
        return Err(Fault::discard(IssueKind::NotFromExternalPeer));
    }
    crate::attr::communities::check_list(value, 4)
}

/// Iterates the cluster IDs of a checked value.
pub fn iter(value: &[u8]) -> impl Iterator<Item = Ipv4Addr> + '_ {
    value
        .chunks_exact(4)
        .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
}
