//! The embeddable BGP speaker and the route-reflector daemon.
//!
//! [`speaker`] is the library a node agent embeds: the core that owns the RIB and the
//! sessions. [`config`] is the configuration file and its resolved model; [`session`] the
//! tokio driver of one peer's [`bgp_fsm::Session`]; [`api`] the read-only HTTP control API
//! and Prometheus metrics; [`sockopt`] the socket options without a safe binding (TCP-MD5,
//! GTSM's minimum TTL) and [`memory`] the allocator's arenas and trim: with BFD's
//! `recvmsg`, the crate's only `unsafe` code; [`fib`] kernel routes (node
//! mode): a pure reconciler and its rtnetlink shell. The command line ([`cli`]):
//! `rr-daemon --config FILE` runs the daemon, `rr-daemon check` checks a configuration
//! file, `rr-daemon ctl` ([`ctl`]) asks a running daemon, and `rr-daemon session` brings
//! one session up against a real peer. [`notify`] tells systemd when the daemon is ready,
//! reloading or stopping. [`bird`] reads Calico's BIRD 1.6 files into the native model and
//! answers as `bird`/`bird6`. [`bmp`] reports peers and routes to BMP collectors
//! (RFC 7854); [`mrt`] dumps the RIB in MRT (RFC 6396).

#![warn(missing_docs)]

pub mod agent;
pub mod api;
pub mod bfd;
pub mod bird;
pub mod bmp;
pub mod cli;
pub mod config;
pub mod control;
pub mod ctl;
pub mod fib;
pub mod logging;
pub mod memory;
pub mod mrt;
pub mod notify;
pub mod running;
pub mod session;
pub mod sockopt;
pub mod speaker;
pub mod traffic;
