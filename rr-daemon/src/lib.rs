//! The embeddable BGP speaker and the route-reflector daemon.
//!
//! So far: [`config`], the configuration file and its resolved model; [`session`], the
//! tokio driver of one peer's [`bgp_fsm::Session`]; and the command line ([`cli`]):
//! `rr-daemon session` brings one session up against a real peer, `rr-daemon check`
//! checks a configuration file.

#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod session;
pub mod speaker;
