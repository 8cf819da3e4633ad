//! Peers that left the node's plan, kept running a moment in case they come back.
//!
//! Calico's resources change one at a time: making a node a route reflector is a write of
//! its `Node` (the cluster ID; the mesh goes) and then of a `BGPPeer` (the sessions to the
//! reflector), each a resource of its own, and an operator's `calicoctl apply` writes them
//! some hundreds of milliseconds apart. Planned after the first write alone, the sessions
//! between the nodes disappear, and come back with the second: their routes leave every
//! kernel in between. confd and BIRD have the same gap (the protocol's name changes from
//! `Mesh_` to `Node_`, so BIRD removes one and adds the other).
//!
//! The agent instead keeps a peer the plan dropped for [`LINGER`] with its last settings:
//! back in the plan within that time, it is a change of settings (applied as any reload
//! does, with graceful restart keeping the routes on both sides where a new session is
//! needed), not a removal and an addition; still gone after it, it is removed. Its static
//! route (a BGPPeer's `reachableBy`: `[[fib.static_route]]` to the peer's address) stays
//! and goes with it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::config::{Config, PeerSettings, StaticRoute};

/// How long a peer that left the plan keeps running: longer than the writes of one change
/// by `calicoctl` or an operator's script take, short against how long a removed peer may
/// go on exchanging routes.
pub const LINGER: Duration = Duration::from_secs(2);

/// The peers of the last plan, and those that left it, each with when it goes.
#[derive(Debug, Default)]
pub struct Departing {
    planned: BTreeSet<IpAddr>,
    leaving: BTreeMap<IpAddr, (PeerSettings, Option<StaticRoute>, Instant)>,
}

impl Departing {
    /// Starts from the plan that `config` came from (everything in it is planned).
    pub fn new(config: &Config) -> Self {
        Self {
            planned: config.peers.keys().copied().collect(),
            leaving: BTreeMap::new(),
        }
    }

    /// The configuration to apply at `now` for the plan's `planned`, `applied` being what
    /// runs: `planned` plus the peers that left the plan less than [`LINGER`] ago, with
    /// the settings they run with.
    pub fn hold(&mut self, now: Instant, applied: &Config, mut planned: Config) -> Config {
        for a in &self.planned {
            if planned.peers.contains_key(a) {
                continue;
            }
            if let Some(s) = applied.peers.get(a) {
                let host = IpNet::from(*a);
                let route = applied
                    .fib
                    .static_routes
                    .iter()
                    .find(|r| r.prefix == host)
                    .copied();
                self.leaving
                    .entry(*a)
                    .or_insert_with(|| (s.clone(), route, now + LINGER));
            }
        }
        self.planned = planned.peers.keys().copied().collect();
        self.leaving
            .retain(|a, (.., until)| *until > now && !planned.peers.contains_key(a));
        for (a, (s, route, _)) in &self.leaving {
            planned.peers.insert(*a, s.clone());
            if let Some(r) = route
                && !planned
                    .fib
                    .static_routes
                    .iter()
                    .any(|x| x.prefix == r.prefix)
            {
                planned.fib.static_routes.push(*r);
            }
        }
        planned
    }

    /// The peers kept now.
    pub fn leaving(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.leaving.keys().copied()
    }

    /// When the next kept peer goes: the agent applies its plan again then.
    pub fn next(&self) -> Option<Instant> {
        self.leaving.values().map(|(.., until)| *until).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(peers: &[(&str, bool)]) -> Config {
        let mut text = String::from(
            "[speaker]\nasn = 64512\nrouter_id = \"192.0.2.1\"\ncluster_id = \"192.0.2.1\"\n",
        );
        for (a, rr_client) in peers {
            text.push_str(&format!(
                "[[peer]]\naddress = \"{a}\"\nasn = 64512\nrr_client = {rr_client}\n"
            ));
        }
        Config::parse(&text, "test.toml").expect("config")
    }

    fn peers(c: &Config) -> Vec<(String, bool)> {
        c.peers
            .iter()
            .map(|(a, s)| (a.to_string(), s.rr_client))
            .collect()
    }

    /// A node that becomes a reflector: the mesh peers leave the plan with the Node's
    /// write and come back as clients with the BGPPeer's; in between they still run.
    #[test]
    fn a_peer_back_within_the_linger_time_is_a_change_not_a_removal() {
        let t0 = Instant::now();
        let mesh = config(&[("10.0.0.2", false), ("10.0.0.3", false)]);
        let mut d = Departing::new(&mesh);
        let applied = d.hold(t0, &mesh, config(&[]));
        assert_eq!(
            peers(&applied),
            [("10.0.0.2".into(), false), ("10.0.0.3".into(), false)]
        );
        assert_eq!(d.next(), Some(t0 + LINGER));
        let t1 = t0 + Duration::from_millis(300);
        let clients = config(&[("10.0.0.2", true), ("10.0.0.3", true)]);
        let applied = d.hold(t1, &applied, clients);
        assert_eq!(
            peers(&applied),
            [("10.0.0.2".into(), true), ("10.0.0.3".into(), true)]
        );
        assert_eq!(d.next(), None);
    }

    /// A departing peer keeps its static route (`reachableBy`) while it is kept.
    #[test]
    fn a_departing_peer_keeps_its_static_route() {
        let t0 = Instant::now();
        let mut with = config(&[("10.225.0.4", false)]);
        with.fib.static_routes.push(StaticRoute {
            prefix: "10.225.0.4/32".parse().unwrap(),
            via: "192.0.2.254".parse().unwrap(),
            metric: None,
        });
        let mut d = Departing::new(&with);
        let applied = d.hold(t0, &with, config(&[]));
        assert_eq!(applied.peers.len(), 1);
        assert_eq!(applied.fib.static_routes, with.fib.static_routes);
        let applied = d.hold(t0 + LINGER, &applied, config(&[]));
        assert!(applied.peers.is_empty());
        assert!(applied.fib.static_routes.is_empty());
    }

    /// A peer removed for good goes once the linger time is over, and is not kept again
    /// by the plan made then.
    #[test]
    fn a_peer_still_gone_after_the_linger_time_is_removed() {
        let t0 = Instant::now();
        let two = config(&[("10.0.0.2", false), ("10.0.0.3", false)]);
        let one = config(&[("10.0.0.2", false)]);
        let mut d = Departing::new(&two);
        let applied = d.hold(t0, &two, one.clone());
        assert_eq!(applied.peers.len(), 2);
        assert_eq!(
            d.leaving().collect::<Vec<_>>(),
            ["10.0.0.3".parse::<IpAddr>().unwrap()]
        );
        // A change in between keeps the departing peer with its old settings.
        let applied = d.hold(t0 + Duration::from_secs(1), &applied, one.clone());
        assert_eq!(applied.peers.len(), 2);
        let applied = d.hold(t0 + LINGER, &applied, one.clone());
        assert_eq!(peers(&applied), [("10.0.0.2".into(), false)]);
        assert_eq!(d.next(), None);
        let applied = d.hold(t0 + LINGER * 2, &applied, one);
        assert_eq!(peers(&applied), [("10.0.0.2".into(), false)]);
    }
}
