//! One message of any type: the borrowed [`MessageView`] and the owned [`Message`].

use bytes::BytesMut;

use crate::ctx::SessionCtx;
use crate::error::DecodeError;
use crate::header::{HEADER_LEN, MessageType, check_header};
use crate::notification::{Notification, NotificationView};
use crate::open::{Open, OpenView};
use crate::route_refresh::RouteRefresh;
use crate::update::{EncodeError, Update, UpdateView};

/// A received message, borrowed and checked.
#[derive(Clone, Debug)]
pub enum MessageView<'a> {
    /// OPEN.
    Open(OpenView<'a>),
    /// UPDATE; faults are in its treatment, never an error here.
    Update(UpdateView<'a>),
    /// NOTIFICATION.
    Notification(NotificationView<'a>),
    /// KEEPALIVE.
    Keepalive,
    /// ROUTE-REFRESH.
    RouteRefresh(RouteRefresh),
}

impl<'a> MessageView<'a> {
    /// Parses one whole message, header included (as [`crate::Framer`] yields it).
    ///
    /// An error carries the NOTIFICATION to send ([`Notification::from`]); UPDATE faults
    /// are reported by [`UpdateView::treatment`] instead.
    pub fn parse(msg: &'a [u8], ctx: &SessionCtx) -> Result<Self, DecodeError> {
        let ty = check_header(msg, ctx.max_message_len())?;
        let declared = usize::from(u16::from_be_bytes([msg[16], msg[17]]));
        if declared != msg.len() {
            return Err(DecodeError::new(
                16,
                crate::error::ErrorKind::BadLength {
                    length: declared as u16,
                },
            ));
        }
        let body = &msg[HEADER_LEN..];
        Ok(match ty {
            MessageType::OPEN => Self::Open(OpenView::new(body)?),
            MessageType::UPDATE => Self::Update(UpdateView::parse(body, ctx)),
            MessageType::NOTIFICATION => Self::Notification(NotificationView::new(body)?),
            MessageType::ROUTE_REFRESH => Self::RouteRefresh(RouteRefresh::decode(msg)?),
            _ => Self::Keepalive,
        })
    }

    /// The message type.
    pub const fn ty(&self) -> MessageType {
        match self {
            Self::Open(_) => MessageType::OPEN,
            Self::Update(_) => MessageType::UPDATE,
            Self::Notification(_) => MessageType::NOTIFICATION,
            Self::Keepalive => MessageType::KEEPALIVE,
            Self::RouteRefresh(_) => MessageType::ROUTE_REFRESH,
        }
    }
}

/// A message, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// OPEN.
    Open(Open),
    /// UPDATE.
    Update(Update),
    /// NOTIFICATION.
    Notification(Notification),
    /// KEEPALIVE.
    Keepalive,
    /// ROUTE-REFRESH.
    RouteRefresh(RouteRefresh),
}

impl Message {
    /// Appends the encoded message to `out`; only an UPDATE too large for the session fails.
    pub fn encode(&self, ctx: &SessionCtx, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Self::Open(o) => o.encode(out),
            Self::Update(u) => u.encode(ctx, out)?,
            Self::Notification(n) => n.encode(out),
            Self::Keepalive => crate::keepalive::encode(out),
            Self::RouteRefresh(r) => r.encode(out),
        }
        Ok(())
    }

    /// Parses one whole message into its owned form. UPDATE faults do not fail here: use
    /// [`MessageView::parse`] to see the treatment.
    pub fn decode(msg: &[u8], ctx: &SessionCtx) -> Result<Self, DecodeError> {
        Ok(match MessageView::parse(msg, ctx)? {
            MessageView::Open(_) => Self::Open(Open::decode(&msg[HEADER_LEN..])?),
            MessageView::Update(u) => Self::Update(u.to_update()),
            MessageView::Notification(n) => Self::Notification(Notification::with_data(
                n.code,
                n.subcode,
                bytes::Bytes::copy_from_slice(n.data),
            )),
            MessageView::Keepalive => Self::Keepalive,
            MessageView::RouteRefresh(r) => Self::RouteRefresh(r),
        })
    }
}
