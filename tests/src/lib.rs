//! Shared helpers for the interop scenarios and the load generator.
//!
//! The interop harness: network namespaces ([`Netns`]) joined by veth pairs ([`Link`]) or
//! to a bridge ([`Hub`]), real BGP peers running inside them ([`Bird`] for BIRD 2 and
//! BIRD 1.6, [`Frr`] for FRR `bgpd`; as one session's peer, or as route-reflector clients
//! that originate routes and report what they learned, [`Client`]), our one-session
//! speaker ([`Speaker`]) whose JSON event lines are collected by a reader thread, and our
//! daemon on a configuration file ([`Daemon`]) with its control API read through
//! `speaker ctl --json` ([`ctl_json`], [`ctl_route`]). Beyond plain clients: ADD-PATH
//! clients ([`ClientOptions`]), and BIRD or FRR on a configuration of the test's own
//! ([`Bird::start_config`], [`Frr::start_config`]: a reflector, a mesh node). Graceful
//! restart (RFC 4724): clients with it on ([`ClientOptions::graceful_restart`]), a BIRD or
//! our daemon killed with SIGKILL and started again as a restarting speaker
//! ([`Bird::kill`], [`Bird::start_again_with`] `-R`; [`Daemon::kill`],
//! [`Daemon::start_again`] `--graceful-restart`), and a BIRD watched from another thread
//! ([`BirdCtl`]).
//!
//! Rules every helper follows:
//! - everything is created by the test that uses it: namespaces are named
//!   `bgpt-<pid>-<n>-<role>` so parallel tests (and parallel test binaries) never clash;
//! - every wait is bounded in time;
//! - guards clean up on drop, also when the test panics: a [`Proc`] is stopped by its PID
//!   (SIGTERM, then SIGKILL), a [`Netns`] kills what still runs inside it and is deleted,
//!   a [`WorkDir`] is removed (kept, and its path printed, when the test failed or
//!   `KEEP_WORK=1`).
//!
//! Needs root (namespaces) and the peers from `tests/scripts/install-peers.sh`.
//!
//! Modules:
//! - `proc`: running commands ([`run_cmd`], [`run_capture`]), bounded waits ([`poll`],
//!   [`poll_ok`]), [`tail`], and the guards [`Proc`] and [`WorkDir`]; also the crate's own
//!   `spawn_in` (start a [`Proc`] in a namespace by name), `await_control` and `which`;
//! - `netns`: [`require_root`], [`Netns`], [`Link`], [`Hub`];
//! - `peer`: what a real peer offers ([`Peer`], [`PeerConfig`]) and a route-reflector
//!   client ([`Client`], [`ClientConfig`], [`ClientRoute`], [`ClientOptions`], [`Learned`]);
//!   `INSTALL_HINT`, shared by BIRD and FRR;
//! - `bird`: [`Bird`], [`BirdCtl`], [`BirdVersion`], [`bird16_dir`], [`parse_bird_routes`];
//! - `frr`: [`Frr`], [`FRR_BGPD`];
//! - `daemon`: ours, the one-session [`Speaker`], the [`Daemon`] (also started as `bird`:
//!   [`Daemon::start_bird`]), and [`ctl_json`], [`ctl_route`];
//! - `kernel`: kernel routing tables compared field by field ([`kernel_routes`],
//!   [`route_diff`]);
//! - `etcd`: a real etcd for the agent's tests ([`Etcd`]), keys written with `etcdctl`;
//! - `calico`: Calico's rendered BIRD 1.6 node config ([`calico_bird16_node_config`]);
//! - `topology`: topologies as data ([`Topology`], files under `tests/topologies/`) and
//!   the harness that brings one up, checks it and breaks it ([`Fabric`]);
//! - here: [`load_args`], the command line of `bgp-load`.

mod bird;
mod calico;
mod daemon;
mod etcd;
mod frr;
mod kernel;
mod mesh;
mod netns;
pub mod pcap;
mod peer;
mod proc;
mod topology;

pub use bird::{Bird, BirdCtl, BirdVersion, bird16_dir, parse_bird_routes, same_since};
pub use calico::{CalicoPeer, calico_bird16_node_config, calico_passive, calico_proto};
pub use daemon::{Daemon, Speaker, ctl_json, ctl_route};
pub use etcd::{ETCD_INSTALL_HINT, Etcd, TlsFiles, calico_resource, etcd_and_node};
pub use frr::{FRR_BGPD, FRR_ZEBRA, Frr};
pub use kernel::{KRoute, KernelRoute, field, kernel_routes, kroutes, route_diff, route_of, show};
pub use mesh::{Kernels, MeshNode, await_programmed, kernels_diff, mesh_node_ns};
pub use netns::{Hub, Link, Netns, require_root};
pub use peer::{Client, ClientConfig, ClientOptions, ClientRoute, Learned, Peer, PeerConfig};
pub use proc::{Proc, StopOnDrop, WorkDir, poll, poll_ok, run_capture, run_cmd, tail, wait_for};
pub use topology::{
    EndState, Fabric, FabricRoute, Gap, Impl, KernelWatch, Member, Node, Rack, Reflector, RibPath,
    Topology, kernel_routes_of, rss_kib, topologies_dir,
};

/// The arguments of `bgp-load COMMAND` (`table`, `fabric`) against our daemon at
/// 127.0.0.1:179 from 127.0.1.1 (on: the fabric's clients take the next addresses), next
/// hop 192.0.2.100 (127/8 is no valid next hop, RFC 4271 §6.3), then `extra`
/// (`--clients N`, `--prefixes N`, `--timeout S` ...).
pub fn load_args(command: &str, extra: &[&str]) -> Vec<String> {
    [
        command,
        "--target",
        "127.0.0.1:179",
        "--source",
        "127.0.1.1",
        "--next-hop",
        "192.0.2.100",
    ]
    .iter()
    .chain(extra)
    .map(|s| (*s).to_owned())
    .collect()
}
