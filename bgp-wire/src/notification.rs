//! NOTIFICATION (RFC 4271 §4.5) with every error code and subcode of RFC 4271, 4486, 6608,
//! 7313, 8538 and 9234, and the shutdown communication of RFC 9003.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use crate::ctx::open_newtype;
use crate::error::{DecodeError, ErrorKind};
use crate::header::{MessageType, begin_message, finish_header};

open_newtype! {
    /// The error code of a NOTIFICATION.
    ErrorCode(u8) {
        /// Message Header Error (RFC 4271).
        MESSAGE_HEADER = 1 => "Message Header Error",
        /// OPEN Message Error (RFC 4271).
        OPEN_MESSAGE = 2 => "OPEN Message Error",
        /// UPDATE Message Error (RFC 4271).
        UPDATE_MESSAGE = 3 => "UPDATE Message Error",
        /// Hold Timer Expired (RFC 4271).
        HOLD_TIMER_EXPIRED = 4 => "Hold Timer Expired",
        /// Finite State Machine Error (RFC 4271, RFC 6608).
        FSM = 5 => "Finite State Machine Error",
        /// Cease (RFC 4271, RFC 4486).
        CEASE = 6 => "Cease",
        /// ROUTE-REFRESH Message Error (RFC 7313).
        ROUTE_REFRESH_MESSAGE = 7 => "ROUTE-REFRESH Message Error",
        /// Send Hold Timer Expired (RFC 9687).
        SEND_HOLD_TIMER_EXPIRED = 8 => "Send Hold Timer Expired",
    }
}

/// Subcodes, one module per error code.
pub mod subcode {
    /// Subcodes of Message Header Error (RFC 4271 §6.1).
    pub mod header {
        /// Connection Not Synchronized.
        pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
        /// Bad Message Length.
        pub const BAD_MESSAGE_LENGTH: u8 = 2;
        /// Bad Message Type.
        pub const BAD_MESSAGE_TYPE: u8 = 3;
    }
    /// Subcodes of OPEN Message Error (RFC 4271 §6.2, RFC 5492, RFC 9234).
    pub mod open {
        /// No specific subcode (RFC 4271: used for malformed optional parameters).
        pub const UNSPECIFIC: u8 = 0;
        /// Unsupported Version Number.
        pub const UNSUPPORTED_VERSION: u8 = 1;
        /// Bad Peer AS.
        pub const BAD_PEER_AS: u8 = 2;
        /// Bad BGP Identifier.
        pub const BAD_BGP_IDENTIFIER: u8 = 3;
        /// Unsupported Optional Parameter.
        pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
        /// Authentication Failure (deprecated).
        pub const AUTHENTICATION_FAILURE: u8 = 5;
        /// Unacceptable Hold Time.
        pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
        /// Unsupported Capability (RFC 5492).
        pub const UNSUPPORTED_CAPABILITY: u8 = 7;
        /// Role Mismatch (RFC 9234).
        pub const ROLE_MISMATCH: u8 = 11;
    }
    /// Subcodes of UPDATE Message Error (RFC 4271 §6.3).
    pub mod update {
        /// Malformed Attribute List.
        pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
        /// Unrecognized Well-known Attribute.
        pub const UNRECOGNIZED_WELL_KNOWN: u8 = 2;
        /// Missing Well-known Attribute.
        pub const MISSING_WELL_KNOWN: u8 = 3;
        /// Attribute Flags Error.
        pub const ATTRIBUTE_FLAGS: u8 = 4;
        /// Attribute Length Error.
        pub const ATTRIBUTE_LENGTH: u8 = 5;
        /// Invalid ORIGIN Attribute.
        pub const INVALID_ORIGIN: u8 = 6;
        /// Invalid NEXT_HOP Attribute.
        pub const INVALID_NEXT_HOP: u8 = 8;
        /// Optional Attribute Error.
        pub const OPTIONAL_ATTRIBUTE: u8 = 9;
        /// Invalid Network Field.
        pub const INVALID_NETWORK_FIELD: u8 = 10;
        /// Malformed AS_PATH.
        pub const MALFORMED_AS_PATH: u8 = 11;
    }
    /// Subcodes of Finite State Machine Error (RFC 6608).
    pub mod fsm {
        /// Unspecified Error.
        pub const UNSPECIFIED: u8 = 0;
        /// Receive Unexpected Message in OpenSent State.
        pub const UNEXPECTED_IN_OPEN_SENT: u8 = 1;
        /// Receive Unexpected Message in OpenConfirm State.
        pub const UNEXPECTED_IN_OPEN_CONFIRM: u8 = 2;
        /// Receive Unexpected Message in Established State.
        pub const UNEXPECTED_IN_ESTABLISHED: u8 = 3;
    }
    /// Subcodes of Cease (RFC 4486, RFC 8538, RFC 9384).
    pub mod cease {
        /// Maximum Number of Prefixes Reached.
        pub const MAX_PREFIXES: u8 = 1;
        /// Administrative Shutdown.
        pub const ADMIN_SHUTDOWN: u8 = 2;
        /// Peer De-configured.
        pub const PEER_DECONFIGURED: u8 = 3;
        /// Administrative Reset.
        pub const ADMIN_RESET: u8 = 4;
        /// Connection Rejected.
        pub const CONNECTION_REJECTED: u8 = 5;
        /// Other Configuration Change.
        pub const OTHER_CONFIG_CHANGE: u8 = 6;
        /// Connection Collision Resolution.
        pub const CONNECTION_COLLISION: u8 = 7;
        /// Out of Resources.
        pub const OUT_OF_RESOURCES: u8 = 8;
        /// Hard Reset (RFC 8538).
        pub const HARD_RESET: u8 = 9;
        /// BFD Down (RFC 9384).
        pub const BFD_DOWN: u8 = 10;
    }
    /// Subcodes of ROUTE-REFRESH Message Error (RFC 7313).
    pub mod route_refresh {
        /// Invalid Message Length.
        pub const INVALID_MESSAGE_LENGTH: u8 = 1;
    }
}

/// The name of a subcode of `code`, for logs; `None` when unassigned.
pub const fn subcode_name(code: ErrorCode, subcode: u8) -> Option<&'static str> {
    Some(match (code.0, subcode) {
        (1, 1) => "Connection Not Synchronized",
        (1, 2) => "Bad Message Length",
        (1, 3) => "Bad Message Type",
        (2, 0) => "Unspecific",
        (2, 1) => "Unsupported Version Number",
        (2, 2) => "Bad Peer AS",
        (2, 3) => "Bad BGP Identifier",
        (2, 4) => "Unsupported Optional Parameter",
        (2, 5) => "Authentication Failure",
        (2, 6) => "Unacceptable Hold Time",
        (2, 7) => "Unsupported Capability",
        (2, 11) => "Role Mismatch",
        (3, 1) => "Malformed Attribute List",
        (3, 2) => "Unrecognized Well-known Attribute",
        (3, 3) => "Missing Well-known Attribute",
        (3, 4) => "Attribute Flags Error",
        (3, 5) => "Attribute Length Error",
        (3, 6) => "Invalid ORIGIN Attribute",
        (3, 7) => "AS Routing Loop",
        (3, 8) => "Invalid NEXT_HOP Attribute",
        (3, 9) => "Optional Attribute Error",
        (3, 10) => "Invalid Network Field",
        (3, 11) => "Malformed AS_PATH",
        (5, 0) => "Unspecified Error",
        (5, 1) => "Receive Unexpected Message in OpenSent State",
        (5, 2) => "Receive Unexpected Message in OpenConfirm State",
        (5, 3) => "Receive Unexpected Message in Established State",
        (6, 1) => "Maximum Number of Prefixes Reached",
        (6, 2) => "Administrative Shutdown",
        (6, 3) => "Peer De-configured",
        (6, 4) => "Administrative Reset",
        (6, 5) => "Connection Rejected",
        (6, 6) => "Other Configuration Change",
        (6, 7) => "Connection Collision Resolution",
        (6, 8) => "Out of Resources",
        (6, 9) => "Hard Reset",
        (6, 10) => "BFD Down",
        (7, 1) => "Invalid Message Length",
        _ => return None,
    })
}

/// The longest shutdown communication (RFC 9003 §2).
pub const MAX_SHUTDOWN_COMMUNICATION: usize = 255;

/// A NOTIFICATION, owned.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Notification {
    /// Error code.
    pub code: ErrorCode,
    /// Error subcode (0 where the code has none).
    pub subcode: u8,
    /// Diagnostic data, as the RFC for the code and subcode says.
    #[serde(serialize_with = "crate::util::serialize_hex")]
    pub data: Bytes,
}

impl Notification {
    /// A NOTIFICATION with no data.
    pub const fn new(code: ErrorCode, subcode: u8) -> Self {
        Self {
            code,
            subcode,
            data: Bytes::new(),
        }
    }

    /// A NOTIFICATION with diagnostic data.
    pub fn with_data(code: ErrorCode, subcode: u8, data: impl Into<Bytes>) -> Self {
        Self {
            code,
            subcode,
            data: data.into(),
        }
    }

    /// A Cease with an RFC 9003 shutdown communication (for Administrative Shutdown and
    /// Administrative Reset). The text is cut at a character boundary to 255 bytes.
    pub fn cease_with_communication(subcode: u8, text: &str) -> Self {
        let mut end = text.len().min(MAX_SHUTDOWN_COMMUNICATION);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut data = BytesMut::with_capacity(end + 1);
        data.put_u8(end as u8);
        data.put_slice(&text.as_bytes()[..end]);
        Self::with_data(ErrorCode::CEASE, subcode, data.freeze())
    }

    /// The shutdown communication of a Cease 2 or 4 (RFC 9003), if the data holds a valid one.
    pub fn shutdown_communication(&self) -> Option<&str> {
        shutdown_communication(self.code, self.subcode, &self.data)
    }

    /// The name of the subcode, for logs.
    pub fn subcode_name(&self) -> Option<&'static str> {
        subcode_name(self.code, self.subcode)
    }

    /// The length of the encoded message, header included.
    pub fn encoded_len(&self) -> usize {
        crate::header::HEADER_LEN + 2 + self.data.len()
    }

    /// Appends the encoded message to `out`. Data that would not fit a 4096-byte message is
    /// cut (RFC 4271 §4.5 bounds the message, not the data).
    pub fn encode(&self, out: &mut BytesMut) {
        let start = begin_message(out, MessageType::NOTIFICATION);
        out.put_u8(self.code.0);
        out.put_u8(self.subcode);
        let room = crate::header::MAX_MESSAGE_LEN - crate::header::HEADER_LEN - 2;
        out.put_slice(&self.data[..self.data.len().min(room)]);
        finish_header(out, start);
    }

    /// Parses the body (after the header) of a NOTIFICATION.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let v = NotificationView::new(body)?;
        Ok(Self::with_data(
            v.code,
            v.subcode,
            Bytes::copy_from_slice(v.data),
        ))
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code, self.code.0)?;
        match self.subcode_name() {
            Some(n) => write!(f, " / {n} ({})", self.subcode)?,
            None => write!(f, " / subcode {}", self.subcode)?,
        }
        if let Some(text) = self.shutdown_communication() {
            write!(f, ": \"{}\"", text.escape_debug())?;
        } else if !self.data.is_empty() {
            write!(f, ", data {}", crate::util::Hex(&self.data))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn shutdown_communication(code: ErrorCode, subcode: u8, data: &[u8]) -> Option<&str> {
    if code != ErrorCode::CEASE
        || !matches!(
            subcode,
            subcode::cease::ADMIN_SHUTDOWN | subcode::cease::ADMIN_RESET
        )
    {
        return None;
    }
    let (&len, rest) = data.split_first()?;
    let text = rest.get(..usize::from(len))?;
    std::str::from_utf8(text).ok()
}

/// A NOTIFICATION borrowed from received bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotificationView<'a> {
    /// Error code.
    pub code: ErrorCode,
    /// Error subcode.
    pub subcode: u8,
    /// Diagnostic data.
    pub data: &'a [u8],
}

impl<'a> NotificationView<'a> {
    /// Parses the body (after the header) of a NOTIFICATION.
    ///
    /// A body under two bytes is an error that, per RFC 4271 §6.4, is logged and never
    /// answered with a NOTIFICATION of our own ([`DecodeError::sends_notification`] is false).
    /// Unknown codes are accepted: the session closes anyway.
    pub fn new(body: &'a [u8]) -> Result<Self, DecodeError> {
        match body {
            [code, subcode, data @ ..] => Ok(Self {
                code: ErrorCode(*code),
                subcode: *subcode,
                data,
            }),
            _ => Err(DecodeError::new(
                crate::header::HEADER_LEN + body.len(),
                ErrorKind::NotificationTooShort,
            )),
        }
    }

    /// The shutdown communication of a Cease 2 or 4 (RFC 9003), if valid.
    pub fn shutdown_communication(&self) -> Option<&'a str> {
        shutdown_communication(self.code, self.subcode, self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    #[test]
    fn cease_shutdown_communication_round_trip() {
        let n = Notification::cease_with_communication(subcode::cease::ADMIN_SHUTDOWN, "maint");
        let mut out = BytesMut::new();
        n.encode(&mut out);
        assert_eq!(
            &out[..],
            &hex!("ffffffffffffffffffffffffffffffff 001b 03 06 02 05 6d61696e74")[..]
        );
        let back = Notification::decode(&out[19..]).unwrap();
        assert_eq!(back, n);
        assert_eq!(back.shutdown_communication(), Some("maint"));
        assert_eq!(
            back.to_string(),
            "Cease (6) / Administrative Shutdown (2): \"maint\""
        );
    }

    #[test]
    fn communication_is_cut_on_a_char_boundary() {
        let text = "é".repeat(200);
        let n = Notification::cease_with_communication(subcode::cease::ADMIN_RESET, &text);
        assert_eq!(n.data[0], 254);
        assert_eq!(n.shutdown_communication().unwrap().len(), 254);
    }

    // N1: a NOTIFICATION of length 20 (no subcode) is logged, never answered.
    #[test]
    fn n1_short_notification_is_not_answered() {
        let e = NotificationView::new(&[6]).unwrap_err();
        assert!(!e.sends_notification());
        // An unknown code is accepted as is.
        let v = NotificationView::new(&[0x0a, 0x01]).unwrap();
        assert_eq!(v.code, ErrorCode(10));
        assert_eq!(format!("{:?}", v.code), "ErrorCode(10)");
    }

    #[test]
    fn names_cover_every_subcode() {
        assert_eq!(
            subcode_name(ErrorCode::FSM, subcode::fsm::UNEXPECTED_IN_OPEN_CONFIRM),
            Some("Receive Unexpected Message in OpenConfirm State")
        );
        assert_eq!(
            subcode_name(ErrorCode::CEASE, subcode::cease::HARD_RESET),
            Some("Hard Reset")
        );
        assert_eq!(subcode_name(ErrorCode::CEASE, 99), None);
    }
}
