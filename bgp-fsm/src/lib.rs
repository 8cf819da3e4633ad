//! One peer's BGP-4 session (RFC 4271 §8) as a deterministic, sans-IO state machine.
//!
//! The caller owns sockets and the clock; the machine owns every decision and every
//! deadline. Drive it like this:
//!
//! ```text
//! fsm.handle(now, Input::…)        // an event: admin, TCP, a received message
//! fsm.handle_timeout(now)          // when now >= fsm.poll_timeout()
//! while let Some(out) = fsm.poll_output() {
//!     match out {
//!         Output::Action(a) => …,      // the driver: connect, send, close
//!         Output::News(n) => …,        // the owner: established, down, update, …
//!     }
//! }
//! ```
//!
//! [`Action`]s and [`News`] come in one stream because their relative order matters to
//! the driver (a NOTIFICATION sent before its connection closes, a close before the
//! `Down` that reports it): see [`Output`].
//!
//! A session may hold two TCP connections at once, one we opened ([`ConnId::Outbound`])
//! and one the peer opened ([`ConnId::Inbound`]); the machine resolves their collision by
//! BGP identifier (RFC 4271 §6.8). Every NOTIFICATION leaves through [`Action::Send`]:
//! the driver never writes one on its own. UPDATEs are handed on unparsed
//! ([`News::Update`]): the RIB parses them once with the negotiated [`bgp_wire::SessionCtx`]
//! and reports faults back ([`Input::UpdateError`]).
//!
//! # Failures and back-off
//!
//! What ends a connection decides what the session does next:
//!
//! * An outbound attempt that fails (refused, timed out) is no error: the session goes to
//!   Active, keeps listening and connects again when the jittered ConnectRetryTimer
//!   expires (RFC 4271 §8.2.2, Connect, Event 18 under DelayOpen; BIRD and FRR do the
//!   same without it). [`News::Failed`] reports it for `last_error`.
//! * An error (hold timer expiry, a malformed message, a NOTIFICATION we send for an
//!   error, an error NOTIFICATION received, an automatic stop) sends it to Idle: it
//!   connects out again after the idle hold time, doubled for each failure in a row
//!   (DampPeerOscillations, RFC 4271 §8.1.1) until a session stays up for
//!   [`Timing::stable_time`].
//! * A Cease received (any subcode: RFC 4271 §6.7, the peer's choice, not an error), a
//!   version error (§8.2.2, Event 24) or a graceful restart (RFC 4724 §4.2, RFC 8538)
//!   sends it to Idle too, but counts no failure: the idle hold time does not grow.
//!
//! The back-off only delays our own connects. A session that is not administratively
//! down accepts the peer's connection in every state ([`Input::Accepted`]): in Idle after
//! an error the connection starts it at once (RFC 4271 §8.1.2, Event 5, then Event 17),
//! so a peer that reconnects is never kept waiting. Only a session stopped by the
//! operator ([`Input::Stop`] with `automatic: false`), never started, or down after an
//! error without [`Config::allow_automatic_start`] refuses it (§8.2.2: Idle refuses
//! connections).
//!
//! A graceful end keeps the peer's routes as stale ([`News::Down`] with
//! `graceful: true`): TCP lost on an Established session with a peer that sent the
//! graceful restart capability (RFC 4724 §4.2), and, when both sides sent its N bit,
//! every NOTIFICATION that ends it but a Hard Reset, sent or received, the Cease of an
//! automatic stop included (RFC 8538 §4); not the Cease of a manual stop, which takes the
//! peer down for good. When a gracefully restarting peer connects while the
//! session is still Established (see [`Session::established`]), the driver reports the
//! old connection gone ([`Input::ConnectionFailed`]), then the new one
//! ([`Input::Accepted`]), which the session takes at once.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod io;
pub mod rng;
mod session;
mod timer;

pub use config::{Config, Timing};
pub use io::{Action, ConnId, DownReason, Input, News, Output};
pub use session::{Session, State};
pub use timer::Timer;
