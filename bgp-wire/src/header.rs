//! The 19-byte message header and the framing of a byte stream into whole messages
//! (RFC 4271 §4.1, RFC 8654).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::ctx::open_newtype;
use crate::error::{DecodeError, ErrorKind};

/// Length of the fixed header: marker, length and type.
pub const HEADER_LEN: usize = 19;
/// Largest message without RFC 8654 extended messages; always the limit for OPEN and KEEPALIVE.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Largest message after RFC 8654 extended messages were negotiated.
pub const MAX_EXTENDED_MESSAGE_LEN: usize = 65535;
/// The all-ones marker.
pub const MARKER: [u8; 16] = [0xff; 16];

open_newtype! {
    /// The message type octet of the header.
    MessageType(u8) {
        /// OPEN (RFC 4271 §4.2).
        OPEN = 1 => "OPEN",
        /// UPDATE (RFC 4271 §4.3).
        UPDATE = 2 => "UPDATE",
        /// NOTIFICATION (RFC 4271 §4.5).
        NOTIFICATION = 3 => "NOTIFICATION",
        /// KEEPALIVE (RFC 4271 §4.4).
        KEEPALIVE = 4 => "KEEPALIVE",
        /// ROUTE-REFRESH (RFC 2918, RFC 7313).
        ROUTE_REFRESH = 5 => "ROUTE-REFRESH",
    }
}

impl MessageType {
    /// The smallest legal length of a message of this type, header included, or `None` for
    /// a type we do not know (RFC 4271 §6.1; ROUTE-REFRESH per RFC 2918).
    pub const fn min_len(self) -> Option<usize> {
        match self.0 {
            1 => Some(29),
            2 => Some(23),
            3 => Some(21),
            4 => Some(19),
            5 => Some(23),
            _ => None,
        }
    }
}

/// Writes a header for a message of `len` bytes in all (header included).
pub fn put_header(out: &mut BytesMut, ty: MessageType, len: usize) {
    debug_assert!((HEADER_LEN..=MAX_EXTENDED_MESSAGE_LEN).contains(&len));
    out.put_slice(&MARKER);
    out.put_u16(len as u16);
    out.put_u8(ty.0);
}

/// Reserves a header at the end of `out`; returns its offset for [`finish_header`].
pub(crate) fn begin_message(out: &mut BytesMut, ty: MessageType) -> usize {
    let start = out.len();
    out.put_slice(&MARKER);
    out.put_u16(0);
    out.put_u8(ty.0);
    start
}

/// Writes the final length into a header begun at `start`.
pub(crate) fn finish_header(out: &mut BytesMut, start: usize) {
    let len = out.len() - start;
    debug_assert!(len <= MAX_EXTENDED_MESSAGE_LEN);
    out[start + 16..start + 18].copy_from_slice(&(len as u16).to_be_bytes());
}

/// One whole message split off a stream: its type and all its bytes, header included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The message type from the header (already checked to be one we know).
    pub ty: MessageType,
    /// The whole message, header included, sharing the stream's buffer.
    pub bytes: Bytes,
}

impl Frame {
    /// The message without its header.
    pub fn body(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }
}

/// Splits a byte stream into whole messages by the header length, without copying.
///
/// The header is checked as RFC 4271 §6.1 says (marker, length bounds, type, length for
/// type), so a bad header is found as soon as its 19 bytes are in, before the body is
/// waited for. A partial message never makes the buffer grow past one message.
#[derive(Clone, Copy, Debug)]
pub struct Framer {
    max_len: usize,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new()
    }
}

impl Framer {
    /// A framer for 4096-byte messages.
    pub const fn new() -> Self {
        Self {
            max_len: MAX_MESSAGE_LEN,
        }
    }

    /// Allows messages up to 65535 bytes (except OPEN and KEEPALIVE) once RFC 8654
    /// extended messages were negotiated.
    pub fn set_extended_message(&mut self, on: bool) {
        self.max_len = if on {
            MAX_EXTENDED_MESSAGE_LEN
        } else {
            MAX_MESSAGE_LEN
        };
    }

    /// The largest message currently accepted.
    pub const fn max_len(&self) -> usize {
        self.max_len
    }

    /// How many more bytes `buf` needs before [`Framer::next_frame`] can make progress; a
    /// reader uses it to size its next read without over-reading past one message.
    pub fn wanted(&self, buf: &[u8]) -> usize {
        if buf.len() < HEADER_LEN {
            return HEADER_LEN - buf.len();
        }
        let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
        len.saturating_sub(buf.len())
    }

    /// Splits the next whole message off the front of `buf`, if one is complete.
    ///
    /// Returns `Ok(None)` while more bytes are needed. An error means the session must be
    /// reset with the NOTIFICATION the error maps to; the buffer is then left as it was.
    pub fn next_frame(&self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        let Some((ty, len)) = self.whole(buf)? else {
            // The header is in: room for the rest of the message.
            if buf.len() >= HEADER_LEN {
                buf.reserve(self.wanted(buf));
            }
            return Ok(None);
        };
        let bytes = buf.split_to(len).freeze();
        Ok(Some(Frame { ty, bytes }))
    }

    /// The type and length of the whole message at the front of `buf`, if one is
    /// complete, without splitting it off: a reader that is done with a message before it
    /// reads the next one uses it on its own buffer, and pays no shared buffer per
    /// message. `Ok(None)` while more bytes are needed; an error as for
    /// [`Framer::next_frame`].
    pub fn whole(&self, buf: &[u8]) -> Result<Option<(MessageType, usize)>, DecodeError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let ty = check_header(&buf[..HEADER_LEN], self.max_len)?;
        let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
        Ok((buf.len() >= len).then_some((ty, len)))
    }

    /// Frames a complete in-memory stream (a capture, a test vector): every message in
    /// order, stopping at the first error or at a trailing partial message.
    pub fn frames(self, mut data: Bytes) -> impl Iterator<Item = Result<Frame, DecodeError>> {
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed || data.len() < HEADER_LEN {
                return None;
            }
            match check_header(&data[..HEADER_LEN], self.max_len) {
                Err(e) => {
                    failed = true;
                    Some(Err(e))
                }
                Ok(ty) => {
                    let len = usize::from((&data[16..18]).get_u16());
                    if data.len() < len {
                        failed = true;
                        return Some(Err(DecodeError::new(
                            data.len(),
                            ErrorKind::Truncated { needed: len },
                        )));
                    }
                    Some(Ok(Frame {
                        ty,
                        bytes: data.split_to(len),
                    }))
                }
            }
        })
    }
}

impl Framer {
    /// Like [`Framer::frames`] over borrowed bytes: each message as a slice of `data`
    /// (header included), without reference counting, for input already in memory.
    pub fn messages<'a>(
        self,
        data: &'a [u8],
    ) -> impl Iterator<Item = Result<(MessageType, &'a [u8]), DecodeError>> + 'a {
        let mut rest = data;
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed || rest.len() < HEADER_LEN {
                return None;
            }
            let ty = match check_header(&rest[..HEADER_LEN], self.max_len) {
                Ok(ty) => ty,
                Err(e) => {
                    failed = true;
                    return Some(Err(e));
                }
            };
            let len = usize::from(u16::from_be_bytes([rest[16], rest[17]]));
            let Some((msg, tail)) = rest.split_at_checked(len) else {
                failed = true;
                return Some(Err(DecodeError::new(
                    rest.len(),
                    ErrorKind::Truncated { needed: len },
                )));
            };
            rest = tail;
            Some(Ok((ty, msg)))
        })
    }
}

/// Checks one 19-byte header (RFC 4271 §6.1) against the largest length allowed.
pub fn check_header(header: &[u8], max_len: usize) -> Result<MessageType, DecodeError> {
    if header.len() < HEADER_LEN {
        return Err(DecodeError::new(
            header.len(),
            ErrorKind::Truncated { needed: HEADER_LEN },
        ));
    }
    if header[..16] != MARKER {
        return Err(DecodeError::new(0, ErrorKind::BadMarker));
    }
    let length = u16::from_be_bytes([header[16], header[17]]);
    let len = usize::from(length);
    let ty = MessageType(header[18]);
    let Some(min) = ty.min_len() else {
        if !(HEADER_LEN..=max_len).contains(&len) {
            return Err(DecodeError::new(16, ErrorKind::BadLength { length }));
        }
        return Err(DecodeError::new(18, ErrorKind::BadType { ty: ty.0 }));
    };
    // RFC 8654 §3: OPEN and KEEPALIVE stay within 4096 even after negotiation.
    let max = if matches!(ty, MessageType::OPEN | MessageType::KEEPALIVE) {
        MAX_MESSAGE_LEN
    } else {
        max_len
    };
    let bad_for_type = match ty {
        MessageType::KEEPALIVE => len != HEADER_LEN,
        // Length errors of ROUTE-REFRESH get their own code (RFC 7313 §5), raised when the
        // body is parsed, as long as the header length itself is sane.
        MessageType::ROUTE_REFRESH => len < HEADER_LEN,
        _ => len < min,
    };
    if len > max || bad_for_type {
        // RFC 4271 §6.4: an error in a received NOTIFICATION is never answered with one.
        let kind = if ty == MessageType::NOTIFICATION && len <= max {
            ErrorKind::NotificationLength { length }
        } else {
            ErrorKind::BadLength { length }
        };
        return Err(DecodeError::new(16, kind));
    }
    Ok(ty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::ErrorCode;
    use crate::notification::Notification;
    use hex_literal::hex;

    fn header(len: u16, ty: u8) -> Vec<u8> {
        let mut v = vec![0xff; 16];
        v.extend_from_slice(&len.to_be_bytes());
        v.push(ty);
        v
    }

    fn notif(e: &DecodeError) -> (u8, u8, Vec<u8>) {
        let n = Notification::from(e);
        (n.code.0, n.subcode, n.data.to_vec())
    }

    #[test]
    fn keepalive_frames() {
        let mut buf = BytesMut::from(&header(19, 4)[..]);
        buf.extend_from_slice(&header(19, 4)[..10]);
        let f = Framer::new().next_frame(&mut buf).unwrap().unwrap();
        assert_eq!(f.ty, MessageType::KEEPALIVE);
        assert_eq!(f.bytes.len(), 19);
        assert_eq!(Framer::new().next_frame(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), 10);
        assert_eq!(Framer::new().wanted(&buf), 9);
    }

    #[test]
    fn whole_finds_the_message_without_splitting() {
        let mut buf = header(23, 2).to_vec();
        buf.extend_from_slice(&[0, 0, 0]);
        let f = Framer::new();
        // One octet short, then whole, then with the next message's first octets after it.
        assert_eq!(f.whole(&buf).unwrap(), None);
        assert_eq!(f.whole(&buf[..10]).unwrap(), None);
        buf.push(0);
        assert_eq!(f.whole(&buf).unwrap(), Some((MessageType::UPDATE, 23)));
        buf.extend_from_slice(&header(19, 4)[..5]);
        assert_eq!(f.whole(&buf).unwrap(), Some((MessageType::UPDATE, 23)));
        assert_eq!(f.whole(&buf[23..]).unwrap(), None);
        // A bad header is the error next_frame gives.
        let bad = header(18, 2);
        assert_eq!(
            notif(&f.whole(&bad).unwrap_err()),
            notif(&f.next_frame(&mut BytesMut::from(&bad[..])).unwrap_err())
        );
    }

    // H1: marker FF×15 00 → 1/1.
    #[test]
    fn h1_bad_marker() {
        let mut h = header(19, 4);
        h[15] = 0;
        let e = check_header(&h, MAX_MESSAGE_LEN).unwrap_err();
        assert_eq!(notif(&e), (1, 1, vec![]));
    }

    // H2: length 18, or 4097 without RFC 8654 → 1/2 with the length as data.
    #[test]
    fn h2_bad_length() {
        let e = check_header(&header(18, 2), MAX_MESSAGE_LEN).unwrap_err();
        assert_eq!(notif(&e), (1, 2, hex!("0012").to_vec()));
        let e = check_header(&header(4097, 2), MAX_MESSAGE_LEN).unwrap_err();
        assert_eq!(notif(&e), (1, 2, hex!("1001").to_vec()));
        assert_eq!(
            check_header(&header(4097, 2), MAX_EXTENDED_MESSAGE_LEN).unwrap(),
            MessageType::UPDATE
        );
        // OPEN stays within 4096 even with extended messages.
        let e = check_header(&header(4097, 1), MAX_EXTENDED_MESSAGE_LEN).unwrap_err();
        assert_eq!(notif(&e), (1, 2, hex!("1001").to_vec()));
    }

    // H3: length inconsistent with the type → 1/2.
    #[test]
    fn h3_length_for_type() {
        for (len, ty) in [(20u16, 4u8), (28, 1), (22, 2), (20, 3)] {
            let e = check_header(&header(len, ty), MAX_MESSAGE_LEN).unwrap_err();
            assert_eq!(notif(&e), (1, 2, len.to_be_bytes().to_vec()), "type {ty}");
            // N1: the error of a NOTIFICATION is logged, never answered (RFC 4271 §6.4).
            assert_eq!(e.sends_notification(), ty != 3, "type {ty}");
        }
        assert!(check_header(&header(29, 1), MAX_MESSAGE_LEN).is_ok());
        assert!(check_header(&header(23, 2), MAX_MESSAGE_LEN).is_ok());
        assert!(check_header(&header(21, 3), MAX_MESSAGE_LEN).is_ok());
    }

    // H4: type 0 or 255 → 1/3 with the type as data.
    #[test]
    fn h4_bad_type() {
        for ty in [0u8, 0xff] {
            let e = check_header(&header(19, ty), MAX_MESSAGE_LEN).unwrap_err();
            assert_eq!(notif(&e), (1, 3, vec![ty]));
        }
        assert_eq!(
            Notification::from(&check_header(&header(19, 0), MAX_MESSAGE_LEN).unwrap_err()).code,
            ErrorCode::MESSAGE_HEADER
        );
    }

    // H5: a header announcing 47 bytes with only 30 present: no frame, and the buffer
    // reserves at most the one message it waits for.
    #[test]
    fn h5_partial_message_waits_bounded() {
        let mut v = header(47, 2);
        v.extend_from_slice(&[0u8; 11]);
        let mut buf = BytesMut::from(&v[..]);
        for _ in 0..3 {
            assert_eq!(Framer::new().next_frame(&mut buf).unwrap(), None);
        }
        assert_eq!(buf.len(), 30);
        assert!(buf.capacity() < 4096);
        assert_eq!(Framer::new().wanted(&buf), 17);
    }

    #[test]
    fn messages_borrow_a_stream() {
        let mut v = header(19, 4);
        v.extend(header(23, 2));
        v.extend([0; 4]);
        v.extend(&header(23, 2)[..5]);
        let m: Vec<_> = Framer::new().messages(&v).collect();
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[1].as_ref().map(|(t, b)| (*t, b.len())),
            Ok((MessageType::UPDATE, 23))
        );
        let mut bad = header(19, 4);
        bad[0] = 0;
        assert!(Framer::new().messages(&bad).next().unwrap().is_err());
    }

    #[test]
    fn frames_iterates_a_stream() {
        let mut v = header(19, 4);
        v.extend(header(19, 4));
        v.extend(&header(23, 2)[..5]);
        let frames: Vec<_> = Framer::new().frames(Bytes::from(v)).collect();
        assert_eq!(frames.len(), 2);
        assert!(frames.iter().all(Result::is_ok));
    }
}
