//! ROUTE-REFRESH (RFC 2918) with the enhanced route refresh subtypes of RFC 7313.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use crate::ctx::{Afi, Safi, open_newtype};
use crate::error::{DecodeError, ErrorKind};
use crate::header::{HEADER_LEN, MessageType, begin_message, finish_header};

open_newtype! {
    /// The subtype octet (RFC 7313 §3.2; "Reserved" in RFC 2918).
    RefreshSubtype(u8) {
        /// A plain route refresh request.
        NORMAL = 0 => "normal",
        /// Beginning of Route Refresh.
        BORR = 1 => "BoRR",
        /// End of Route Refresh.
        EORR = 2 => "EoRR",
    }
}

/// A ROUTE-REFRESH message; small enough that the view and the owned form are one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct RouteRefresh {
    /// Address family.
    pub afi: Afi,
    /// Subtype: request, BoRR or EoRR.
    pub subtype: RefreshSubtype,
    /// Subsequent address family.
    pub safi: Safi,
}

impl RouteRefresh {
    /// The length of every ROUTE-REFRESH.
    pub const LEN: usize = HEADER_LEN + 4;

    /// Parses a whole message (header included, as framed). A length other than 23 is a
    /// ROUTE-REFRESH Message Error whose data is the whole message (RFC 7313 §5).
    pub fn decode(message: &[u8]) -> Result<Self, DecodeError> {
        if message.len() != Self::LEN {
            return Err(DecodeError::new(
                16,
                ErrorKind::RouteRefreshLength {
                    message: Bytes::copy_from_slice(message),
                },
            ));
        }
        let b = &message[HEADER_LEN..];
        Ok(Self {
            afi: Afi(u16::from_be_bytes([b[0], b[1]])),
            subtype: RefreshSubtype(b[2]),
            safi: Safi(b[3]),
        })
    }

    /// Appends the encoded message to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = begin_message(out, MessageType::ROUTE_REFRESH);
        out.put_u16(self.afi.0);
        out.put_u8(self.subtype.0);
        out.put_u8(self.safi.0);
        finish_header(out, start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Notification;
    use hex_literal::hex;

    #[test]
    fn round_trip_borr() {
        let rr = RouteRefresh {
            afi: Afi::IPV6,
            subtype: RefreshSubtype::BORR,
            safi: Safi::UNICAST,
        };
        let mut out = BytesMut::new();
        rr.encode(&mut out);
        assert_eq!(
            &out[..],
            &hex!("ffffffffffffffffffffffffffffffff 0017 05 0002 01 01")[..]
        );
        assert_eq!(RouteRefresh::decode(&out).unwrap(), rr);
    }

    #[test]
    fn bad_length_is_7_1_with_the_message() {
        let msg = hex!("ffffffffffffffffffffffffffffffff 0018 05 0001 00 01 00");
        let n = Notification::from(&RouteRefresh::decode(&msg).unwrap_err());
        assert_eq!((n.code.0, n.subcode), (7, 1));
        assert_eq!(&n.data[..], &msg[..]);
    }
}
