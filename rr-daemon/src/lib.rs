//! The embeddable BGP speaker and the route-reflector daemon.
//!
//! So far: [`config`], the configuration file and its resolved model; [`session`], the
//! tokio driver of one peer's [`bgp_fsm::Session`]; [`speaker`], the core that owns the
//! RIB and the sessions; [`api`], the read-only HTTP control API and Prometheus metrics;
//! and the command line ([`cli`]): `rr-daemon --config FILE` runs the daemon,
//! `rr-daemon session` brings one session up against a real peer, `rr-daemon check`
//! checks a configuration file, and `rr-daemon ctl` ([`ctl`]) asks a running daemon. [`tcp_md5`] sets TCP-MD5 keys
//! (RFC 2385) on sockets: the crate's only `unsafe` code.

#![warn(missing_docs)]

pub mod api;
pub mod cli;
pub mod config;
pub mod ctl;
pub mod session;
pub mod sockopt;
pub mod speaker;
