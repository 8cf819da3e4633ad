//! ONLY_TO_CUSTOMER (RFC 9234 §5): the AS that first sent the route to a customer or peer.

use crate::update::issue::Fault;

pub(crate) fn check(value: &[u8]) -> Result<(), Fault> {
    // RFC 9234 §5: a malformed OTC is treated as withdrawn, like other length errors.
    crate::attr::med::check(value)
}
