//! The embeddable BGP speaker and the route-reflector daemon.
//!
//! So far: [`session`], the tokio driver of one peer's [`bgp_fsm::Session`], and the
//! `rr-daemon session` command ([`cli`]) that brings one session up against a real peer.

#![warn(missing_docs)]

pub mod cli;
pub mod session;
