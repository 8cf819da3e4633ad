//! Errors of messages other than UPDATE, each mapped to the NOTIFICATION it calls for.
//!
//! UPDATE faults are not errors here: RFC 7606 wants most of them handled without a reset,
//! so [`crate::update::UpdateView`] records them as issues with a treatment instead.

use bytes::Bytes;
use thiserror::Error;

use crate::notification::{ErrorCode, Notification, subcode};

/// A message that cannot be accepted: where in the message (offset from the start of the
/// header) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{kind} (at byte {offset})")]
pub struct DecodeError {
    /// Offset of the fault from the start of the message header.
    pub offset: usize,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl DecodeError {
    /// An error at `offset`.
    pub const fn new(offset: usize, kind: ErrorKind) -> Self {
        Self { offset, kind }
    }

    /// Whether this error is answered with a NOTIFICATION. Errors in a received
    /// NOTIFICATION are only logged (RFC 4271 §6.4), and a stream that merely ended early is
    /// not the peer's protocol error.
    pub const fn sends_notification(&self) -> bool {
        !matches!(
            self.kind,
            ErrorKind::NotificationTooShort
                | ErrorKind::NotificationLength { .. }
                | ErrorKind::Truncated { .. }
        )
    }
}

/// What is wrong with a message.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The marker is not all ones (RFC 4271 §6.1).
    #[error("header marker is not all ones")]
    BadMarker,
    /// The header length is out of bounds or wrong for the type (RFC 4271 §6.1).
    #[error("bad message length {length}")]
    BadLength {
        /// The length field as received.
        length: u16,
    },
    /// A NOTIFICATION shorter than 21 bytes (RFC 4271 §6.1): like `BadLength`, but never
    /// answered (§6.4).
    #[error("NOTIFICATION of bad length {length}")]
    NotificationLength {
        /// The length field as received.
        length: u16,
    },
    /// The message type is unknown (RFC 4271 §6.1).
    #[error("bad message type {ty}")]
    BadType {
        /// The type octet as received.
        ty: u8,
    },
    /// The input ended inside a message (only for in-memory streams).
    #[error("input ends inside a message of {needed} bytes")]
    Truncated {
        /// The length the header announced.
        needed: usize,
    },
    /// OPEN version other than 4 (RFC 4271 §6.2).
    #[error("unsupported BGP version {version}")]
    UnsupportedVersion {
        /// The version as received.
        version: u8,
    },
    /// OPEN My Autonomous System unacceptable, or inconsistent with the 4-octet AS
    /// capability (RFC 4271 §6.2, RFC 6793 §4.1).
    #[error("bad peer AS {asn}")]
    BadPeerAs {
        /// The AS number the peer claimed.
        asn: u32,
    },
    /// OPEN BGP Identifier unacceptable (RFC 4271 §6.2, RFC 6286).
    #[error("bad BGP identifier {id}")]
    BadBgpIdentifier {
        /// The identifier as received.
        id: std::net::Ipv4Addr,
    },
    /// OPEN optional parameter of an unknown type (RFC 4271 §6.2).
    #[error("unsupported optional parameter type {ty}")]
    UnsupportedOptionalParameter {
        /// The parameter type as received.
        ty: u8,
    },
    /// OPEN hold time of 1 or 2 seconds (RFC 4271 §6.2).
    #[error("unacceptable hold time {hold}")]
    UnacceptableHoldTime {
        /// The hold time as received.
        hold: u16,
    },
    /// A capability we require is missing, or one the peer sent is unacceptable (RFC 5492).
    #[error("unsupported capability")]
    UnsupportedCapability {
        /// The capability or capabilities at fault, encoded as in the OPEN.
        data: Bytes,
    },
    /// RFC 9234 BGP roles do not fit together.
    #[error("BGP role mismatch")]
    RoleMismatch,
    /// The OPEN's optional parameters or capabilities do not fit their lengths
    /// (RFC 4271 §6.2 "no specific subcode", RFC 9072 §2).
    #[error("malformed OPEN: {0}")]
    MalformedOpen(&'static str),
    /// A NOTIFICATION without code and subcode.
    #[error("NOTIFICATION shorter than 21 bytes")]
    NotificationTooShort,
    /// A ROUTE-REFRESH whose length is not 23 (RFC 7313 §5).
    #[error("ROUTE-REFRESH of bad length")]
    RouteRefreshLength {
        /// The whole message, which is the NOTIFICATION's data.
        message: Bytes,
    },
}

impl From<&DecodeError> for Notification {
    fn from(e: &DecodeError) -> Self {
        use subcode::{header, open};
        let (code, sub, data) = match &e.kind {
            ErrorKind::BadMarker => (
                ErrorCode::MESSAGE_HEADER,
                header::CONNECTION_NOT_SYNCHRONIZED,
                Bytes::new(),
            ),
            ErrorKind::BadLength { length } | ErrorKind::NotificationLength { length } => (
                ErrorCode::MESSAGE_HEADER,
                header::BAD_MESSAGE_LENGTH,
                Bytes::copy_from_slice(&length.to_be_bytes()),
            ),
            ErrorKind::BadType { ty } => (
                ErrorCode::MESSAGE_HEADER,
                header::BAD_MESSAGE_TYPE,
                Bytes::copy_from_slice(&[*ty]),
            ),
            ErrorKind::Truncated { needed } => (
                ErrorCode::MESSAGE_HEADER,
                header::BAD_MESSAGE_LENGTH,
                Bytes::copy_from_slice(&(*needed as u16).to_be_bytes()),
            ),
            // RFC 4271 §6.2: the data is the largest locally supported version.
            ErrorKind::UnsupportedVersion { .. } => (
                ErrorCode::OPEN_MESSAGE,
                open::UNSUPPORTED_VERSION,
                Bytes::from_static(&[0, 4]),
            ),
            ErrorKind::BadPeerAs { .. } => {
                (ErrorCode::OPEN_MESSAGE, open::BAD_PEER_AS, Bytes::new())
            }
            ErrorKind::BadBgpIdentifier { .. } => (
                ErrorCode::OPEN_MESSAGE,
                open::BAD_BGP_IDENTIFIER,
                Bytes::new(),
            ),
            ErrorKind::UnsupportedOptionalParameter { .. } => (
                ErrorCode::OPEN_MESSAGE,
                open::UNSUPPORTED_OPTIONAL_PARAMETER,
                Bytes::new(),
            ),
            ErrorKind::UnacceptableHoldTime { .. } => (
                ErrorCode::OPEN_MESSAGE,
                open::UNACCEPTABLE_HOLD_TIME,
                Bytes::new(),
            ),
            ErrorKind::UnsupportedCapability { data } => (
                ErrorCode::OPEN_MESSAGE,
                open::UNSUPPORTED_CAPABILITY,
                data.clone(),
            ),
            ErrorKind::RoleMismatch => (ErrorCode::OPEN_MESSAGE, open::ROLE_MISMATCH, Bytes::new()),
            ErrorKind::MalformedOpen(_) => {
                (ErrorCode::OPEN_MESSAGE, open::UNSPECIFIC, Bytes::new())
            }
            // Never sent (see `sends_notification`); a Cease is the closest honest code if a
            // caller insists.
            ErrorKind::NotificationTooShort => (ErrorCode::CEASE, 0, Bytes::new()),
            ErrorKind::RouteRefreshLength { message } => (
                ErrorCode::ROUTE_REFRESH_MESSAGE,
                subcode::route_refresh::INVALID_MESSAGE_LENGTH,
                message.clone(),
            ),
        };
        Self::with_data(code, sub, data)
    }
}
