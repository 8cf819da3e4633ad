//! BFD (RFC 5880) for BGP peers: single hop (RFC 5881) and multihop (RFC 5883),
//! asynchronous mode, authentication off or Keyed SHA1 (§6.7.4).
//!
//! ```text
//!   packet.rs    Control packets: decode (never panics), encode, SHA1 digests
//!   session.rs   one session's state machine (sans-IO, time passed in)
//!   endpoint.rs  every session: demultiplexing, one timer heap, output queues (sans-IO)
//!   shell.rs     the BFD thread (tokio, current-thread): UDP sockets, TTL 255, the clock
//!   sys.rs       recvmsg with the TTL of each datagram (the one unsafe part)
//! ```
//!
//! The speaker ties a session to each peer whose settings have `bfd`
//! ([`crate::config::Bfd`]): a session that goes from Up to Down takes the peer's BGP
//! session down at once (Cease, BFD Down, RFC 9384), which counts for graceful restart as
//! a hold timer expiry would. A session that never came up does not hold BGP back unless
//! the peer's BFD is `strict`.

mod endpoint;
mod packet;
mod session;
mod shell;
mod sys;
#[cfg(test)]
mod tests;

pub use endpoint::{Dropped, Endpoint, Event, Key, Transmit};
pub use packet::{
    AUTH_KEYED_SHA1, AUTH_METICULOUS_SHA1, Auth, DecodeError, Diag, MANDATORY_LEN, Packet,
    SHA1_AUTH_LEN, Sha1Auth, State, sha1_valid,
};
pub use session::{AuthKey, Change, Discard, Session, SessionConfig};
pub use shell::{Handle, MULTIHOP_PORT, Notice, SINGLE_HOP_PORT, SOURCE_PORTS, Spec, spawn};
