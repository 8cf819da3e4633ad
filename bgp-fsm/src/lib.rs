//! One peer's BGP-4 session (RFC 4271 §8) as a deterministic, sans-IO state machine.
//!
//! The caller owns sockets and the clock; the machine owns every decision and every
//! deadline. Drive it like this:
//!
//! ```text
//! fsm.handle(now, Input::…)        // an event: admin, TCP, a received message
//! fsm.handle_timeout(now)          // when now >= fsm.poll_timeout()
//! while let Some(out) = fsm.poll_output() { … }   // connect, send, close, established, …
//! ```
//!
//! A session may hold two TCP connections at once, one we opened ([`ConnId::Outbound`])
//! and one the peer opened ([`ConnId::Inbound`]); the machine resolves their collision by
//! BGP identifier (RFC 4271 §6.8). Every NOTIFICATION leaves through [`Output::Send`]:
//! the driver never writes one on its own. UPDATEs are handed on unparsed
//! ([`Output::Update`]): the RIB parses them once with the negotiated [`bgp_wire::SessionCtx`]
//! and reports faults back ([`Input::UpdateError`]).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod io;
mod rng;
mod session;
mod timer;

pub use config::{Config, Timing};
pub use io::{ConnId, DownReason, Input, Output};
pub use session::{Session, State};
pub use timer::Timer;
