//! What a peer's sessions put on and took off the wire, for `/metrics`: messages by type
//! and direction, NOTIFICATIONs by code and subcode and direction.
//!
//! The session task counts as it frames a message read and as it queues a message for
//! the socket ([`Traffic::received`], [`Traffic::queued`]); the shell keeps one
//! [`Traffic`] per peer address for as long as the peer is configured, across its
//! sessions, so the counts only grow ([`crate::speaker::Snapshot::traffic`] carries them
//! to the API). Every label set is from a fixed list: five message types, and the
//! NOTIFICATION codes and subcodes RFC 4271 and its updates assign, anything else
//! counted as `other`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bgp_wire::notification::subcode_name;
use bgp_wire::{ErrorCode, MessageType};

/// The message types counted, in type-code order (1 to 5); index 5 is any other type
/// (never counted on receipt: the framer refuses unknown types).
pub const MESSAGE_TYPES: [&str; 6] = [
    "open",
    "update",
    "notification",
    "keepalive",
    "route_refresh",
    "other",
];

/// Which way a message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// From the peer.
    Received,
    /// To the peer.
    Sent,
}

impl Direction {
    /// `received` or `sent`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Sent => "sent",
        }
    }
}

/// A NOTIFICATION's code and subcode as counted: the number when RFC 4271 or an update of
/// it assigns it, `None` (`other`) when not, so that a peer sending every possible code
/// makes a bounded number of series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NotificationKey {
    /// Received or sent.
    pub direction: Direction,
    /// The error code, `None` for an unassigned one.
    pub code: Option<u8>,
    /// The subcode, `None` for one unassigned under its code.
    pub subcode: Option<u8>,
}

impl NotificationKey {
    /// The key of a NOTIFICATION with `code` and `subcode`.
    pub fn new(direction: Direction, code: u8, subcode: u8) -> Self {
        let known_code = (1..=7).contains(&code);
        // Subcode 0 (unspecific) is assigned under every code.
        let known_sub =
            known_code && (subcode == 0 || subcode_name(ErrorCode(code), subcode).is_some());
        Self {
            direction,
            code: known_code.then_some(code),
            subcode: known_sub.then_some(subcode),
        }
    }
}

/// One peer's counters, shared by its session tasks and the shell.
#[derive(Debug, Default)]
pub struct Traffic {
    received: [AtomicU64; 6],
    sent: [AtomicU64; 6],
    notifications: Mutex<BTreeMap<NotificationKey, u64>>,
}

/// A copy of a [`Traffic`]'s counts at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficCounts {
    /// Messages received, by [`MESSAGE_TYPES`] index.
    pub received: [u64; 6],
    /// Messages queued for the peer, by [`MESSAGE_TYPES`] index.
    pub sent: [u64; 6],
    /// NOTIFICATIONs by direction, code and subcode, in that order.
    pub notifications: Vec<(NotificationKey, u64)>,
}

/// The BGP header: marker, length, type.
const HEADER_LEN: usize = 19;

fn type_index(ty: u8) -> usize {
    match ty {
        1..=5 => usize::from(ty - 1),
        _ => 5,
    }
}

impl Traffic {
    /// Counts one whole message read from the peer (header included).
    pub fn received(&self, message: &[u8]) {
        self.count(Direction::Received, message);
    }

    /// Counts the messages of `bytes` (one or more whole messages, header included, as
    /// queued for the socket).
    pub fn queued(&self, bytes: &[u8]) {
        let mut rest = bytes;
        // Bounded: each round consumes at least a header's worth of bytes.
        while rest.len() >= HEADER_LEN {
            let len = usize::from(u16::from_be_bytes([rest[16], rest[17]]));
            let len = len.clamp(HEADER_LEN, rest.len());
            self.count(Direction::Sent, &rest[..len]);
            rest = &rest[len..];
        }
    }

    /// Counts `n` UPDATEs queued for the socket, whose bytes are not to be read again
    /// (an update group's output: the exporter knows how many it encoded).
    pub fn queued_updates(&self, n: usize) {
        self.sent[type_index(MessageType::UPDATE.0)].fetch_add(n as u64, Ordering::Relaxed);
    }

    fn count(&self, direction: Direction, message: &[u8]) {
        let Some(&ty) = message.get(18) else { return };
        let table = match direction {
            Direction::Received => &self.received,
            Direction::Sent => &self.sent,
        };
        table[type_index(ty)].fetch_add(1, Ordering::Relaxed);
        if ty == 3 {
            let code = message.get(19).copied().unwrap_or(0);
            let subcode = message.get(20).copied().unwrap_or(0);
            let key = NotificationKey::new(direction, code, subcode);
            let mut n = self
                .notifications
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *n.entry(key).or_insert(0) += 1;
        }
    }

    /// The counts now.
    pub fn counts(&self) -> TrafficCounts {
        let load = |t: &[AtomicU64; 6]| std::array::from_fn(|i| t[i].load(Ordering::Relaxed));
        TrafficCounts {
            received: load(&self.received),
            sent: load(&self.sent),
            notifications: self
                .notifications
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![0xff; 16];
        m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        m.push(ty);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn messages_are_counted_by_type_and_notifications_by_code() {
        let t = Traffic::default();
        t.received(&message(4, &[]));
        t.received(&message(3, &[6, 2]));
        // Two UPDATEs and a KEEPALIVE queued in one buffer.
        let mut buf = message(2, &[0, 0, 0, 0]);
        buf.extend(message(2, &[0, 0, 0, 0]));
        buf.extend(message(4, &[]));
        t.queued(&buf);
        t.queued(&message(3, &[2, 2, 0xfd, 0xe8]));
        // Unassigned code and subcode: `other`.
        t.received(&message(3, &[99, 1]));
        t.received(&message(3, &[6, 200]));
        let c = t.counts();
        assert_eq!(c.received, [0, 0, 3, 1, 0, 0]);
        assert_eq!(c.sent, [0, 2, 1, 1, 0, 0]);
        let keys: Vec<_> = c
            .notifications
            .iter()
            .map(|(k, n)| (k.direction, k.code, k.subcode, *n))
            .collect();
        assert_eq!(
            keys,
            vec![
                (Direction::Received, None, None, 1),
                (Direction::Received, Some(6), None, 1),
                (Direction::Received, Some(6), Some(2), 1),
                (Direction::Sent, Some(2), Some(2), 1),
            ]
        );
    }

    #[test]
    fn updates_queued_by_count_add_to_those_counted_from_bytes() {
        let t = Traffic::default();
        t.queued(&message(2, &[0, 0, 0, 0]));
        t.queued_updates(5);
        t.queued_updates(0);
        assert_eq!(t.counts().sent, [0, 6, 0, 0, 0, 0]);
    }

    #[test]
    fn a_short_buffer_is_counted_safely() {
        let t = Traffic::default();
        t.queued(&[0xff; 10]);
        // A length field beyond the buffer counts what is there, once.
        let mut m = message(2, &[0, 0, 0, 0]);
        m[16] = 0xff;
        t.queued(&m);
        assert_eq!(t.counts().sent, [0, 1, 0, 0, 0, 0]);
    }
}
