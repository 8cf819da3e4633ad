//! NEXT_HOP (RFC 4271 §5.1.3; errors RFC 7606 §7.3, semantic checks RFC 4271 §6.3).

use std::net::Ipv4Addr;

use crate::ctx::SessionCtx;
use crate::update::issue::{Fault, IssueKind};

/// Whether an IPv4 address can never be a next hop: this network (0/8), loopback (127/8),
/// multicast and reserved (224/3, including the limited broadcast address).
pub const fn is_martian(a: Ipv4Addr) -> bool {
    let first = a.octets()[0];
    first == 0 || first == 127 || first >= 224
}

pub(crate) fn check(value: &[u8], ctx: &SessionCtx) -> Result<(), Fault> {
    let Ok(octets) = <[u8; 4]>::try_from(value) else {
        return Err(Fault::withdraw(IssueKind::AttributeLength));
    };
    if ctx.policy.reject_martian_next_hop && is_martian(Ipv4Addr::from(octets)) {
        // RFC 4271 §6.3: log and ignore the route, without a NOTIFICATION.
        return Err(Fault::withdraw(IssueKind::MartianNextHop));
    }
    Ok(())
}

/// Reads a four-octet value that passed a length check as an address.
pub(crate) fn addr(value: &[u8]) -> Ipv4Addr {
    Ipv4Addr::from(crate::attr::med::u32_of(value))
}
