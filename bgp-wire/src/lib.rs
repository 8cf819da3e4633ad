//! A zero-copy BGP-4 message codec.
//!
//! * [`header::Framer`] splits a byte stream into whole messages ([`header::Frame`]) without
//!   copying, checking each header as RFC 4271 §6.1 says.
//! * Views borrow a received message and validate it once: [`open::OpenView`],
//!   [`update::UpdateView`], [`notification::NotificationView`],
//!   [`route_refresh::RouteRefresh`]. An UPDATE's withdrawn routes, attributes and NLRI are
//!   then iterated lazily from the borrowed bytes.
//! * Owned forms build and encode every message: [`open::Open`], [`update::Update`],
//!   [`notification::Notification`], [`route_refresh::RouteRefresh`], [`keepalive`].
//! * UPDATE faults are classified as RFC 7606 says ([`update::Treatment`]): the view never
//!   refuses to parse, it reports what to do.
//!
//! Every decode and encode of UPDATEs takes the [`SessionCtx`] the session negotiated.
//! Nothing here does I/O, reads a clock or allocates in proportion to a length field that
//! was not first checked against the bytes present.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod attr;
pub mod capability;
mod ctx;
pub mod error;
pub mod header;
pub mod message;
pub mod negotiate;
pub mod nlri;
pub mod notification;
pub mod open;
pub mod route_refresh;
pub mod update;
mod util;

pub use ctx::{Afi, Family, FamilySet, Safi, SessionCtx, UpdatePolicy};
pub use error::{DecodeError, ErrorKind};
pub use header::{Frame, Framer, MessageType};
pub use message::{Message, MessageView};

pub use notification::{ErrorCode, Notification};

/// KEEPALIVE (RFC 4271 §4.4): a bare header.
pub mod keepalive {
    use bytes::BytesMut;

    use crate::header::{HEADER_LEN, MessageType, put_header};

    /// The 19 bytes of a KEEPALIVE.
    pub const KEEPALIVE: [u8; HEADER_LEN] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x00, 0x13, 0x04,
    ];

    /// Appends a KEEPALIVE to `out`.
    pub fn encode(out: &mut BytesMut) {
        put_header(out, MessageType::KEEPALIVE, HEADER_LEN);
    }
}
