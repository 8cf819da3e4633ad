//! RFC 8950 (extended next hop) against FRR 8.4: our daemon reflects IPv4 routes between
//! two FRR clients over IPv6-only sessions.
//!
//! Topology: a hub namespace (the reflector) with a bridge `br0` holding 2001:db8::1/64,
//! and one namespace per client (`a` 2001:db8::11, `b` 2001:db8::12) joined to it; no
//! IPv4 address anywhere. iBGP AS 65000, hold time 3 s, the peers' group sets
//! `extended_next_hop = true` and the family IPv4 unicast only; the FRR clients set
//! `neighbor 2001:db8::1 capability extended-nexthop` and activate IPv4 unicast on it.
//!
//! Asserted from FRR (`show bgp neighbors ... json`, `show bgp ipv4 unicast P json`): the
//! capability is advertised and received on both sessions; A's 198.51.100.0/24 reaches B
//! with A's IPv6 address as next hop, ORIGINATOR_ID A and CLUSTER_LIST our cluster ID;
//! our own `[[route]]` 203.0.113.0/24 reaches both with our IPv6 session address as next
//! hop (next hop self for an IPv4 route over an IPv6 session); A's withdrawal reaches B.
//!
//! Needs root and FRR (`sudo tests/scripts/install-peers.sh`). `KEEP_WORK=1` keeps the
//! work dir; a failed test always keeps it and prints where.

use std::path::Path;
use std::time::{Duration, Instant};

use interop_tests::{Daemon, Frr, Hub, Netns, WorkDir, poll_ok, require_root};
use serde_json::Value;

const AS: u32 = 65000;
const RR: &str = "2001:db8::1";
const RR_ID: &str = "192.0.2.1";
const CLUSTER_ID: &str = "1.0.0.1";
const A: &str = "2001:db8::11";
const A_ID: &str = "192.0.2.11";
const B: &str = "2001:db8::12";
const B_ID: &str = "192.0.2.12";
/// Originated by A.
const P_A: &str = "198.51.100.0/24";
/// Originated by the reflector (`[[route]]`, no next hop: ours).
const P_RR: &str = "203.0.113.0/24";
const HOLD: u16 = 3;
const UP_WITHIN: Duration = Duration::from_secs(20);
const CONVERGED_WITHIN: Duration = Duration::from_secs(15);
const WITHDRAWN_WITHIN: Duration = Duration::from_secs(5);

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

/// Drops in order: the daemon, the clients, their namespaces, the hub, the work dir.
struct World {
    daemon: Option<Daemon>,
    frr: Vec<(&'static str, Frr)>,
    client_ns: Vec<Netns>,
    hub: Hub,
    dir: WorkDir,
    started: Instant,
}

impl World {
    fn new() -> Self {
        require_root().unwrap_or_else(|e| panic!("{e}"));
        let dir = WorkDir::new("enh").unwrap_or_else(|e| panic!("{e}"));
        let hub = Hub::create("rr", &[&format!("{RR}/64")]).unwrap_or_else(|e| panic!("{e}"));
        Self {
            daemon: None,
            frr: Vec::new(),
            client_ns: Vec::new(),
            hub,
            dir,
            started: Instant::now(),
        }
    }

    fn log(&self, what: &str) {
        eprintln!(
            "[enh +{:5.1}s] {what}",
            self.started.elapsed().as_secs_f64()
        );
    }

    fn fail(&self, msg: &str) -> ! {
        let mut s = format!("extended next hop: {msg}\n");
        match &self.daemon {
            Some(d) => s.push_str(&d.transcript(80)),
            None => s.push_str("(daemon not started)"),
        }
        for (name, f) in &self.frr {
            let n = f
                .vtysh(&format!("show bgp neighbors {RR}"))
                .unwrap_or_else(|e| format!("(no neighbor: {e})"));
            let t = f
                .vtysh("show bgp ipv4 unicast")
                .unwrap_or_else(|e| format!("(no table: {e})"));
            s.push_str(&format!("\n--- FRR {name} ---\n{n}\n{t}"));
        }
        s.push_str(&format!("\nwork dir: {}", self.dir.path().display()));
        panic!("{s}");
    }

    /// Starts FRR `name` at `addr` in its own namespace on the hub.
    fn add_frr(&mut self, name: &'static str, addr: &str, router_id: &str, networks: &[&str]) {
        let ns = Netns::create(name).unwrap_or_else(|e| self.fail(&e));
        self.hub
            .attach(&ns, &[&format!("{addr}/64")])
            .unwrap_or_else(|e| self.fail(&e));
        let f = Frr::start_config(
            &ns,
            self.dir.path(),
            name,
            RR.parse().expect("address"),
            addr.parse().expect("address"),
            &frr_config(addr, router_id, networks),
        )
        .unwrap_or_else(|e| self.fail(&format!("cannot start FRR {name}: {e}")));
        self.log(&format!("FRR {name} started at {addr}"));
        self.client_ns.push(ns);
        self.frr.push((name, f));
    }

    fn frr(&self, i: usize) -> &Frr {
        &self.frr[i].1
    }

    /// Polls `check` every 200 ms until it is `Ok`, or fails with its last error.
    fn wait(&self, what: &str, within: Duration, mut check: impl FnMut() -> Result<(), String>) {
        if let Err(last) = poll_ok(within, Duration::from_millis(200), &mut check) {
            self.fail(&format!("{what} not within {within:?}: {last}"));
        }
        self.log(what);
    }

    /// The paths FRR `i` holds for `prefix`.
    fn paths(&self, i: usize, prefix: &str) -> Result<Vec<Value>, String> {
        self.frr(i).prefix_paths(prefix)
    }
}

/// An FRR client with only an IPv6 session to the reflector, IPv4 unicast activated on it
/// with the extended next hop capability; `networks` originated (no zebra: no import
/// check).
fn frr_config(addr: &str, router_id: &str, networks: &[&str]) -> String {
    let mut s = format!(
        "router bgp {AS}\n\
         \x20bgp router-id {router_id}\n\
         \x20no bgp default ipv4-unicast\n\
         \x20no bgp network import-check\n\
         \x20timers bgp 1 {HOLD}\n\
         \x20neighbor {RR} remote-as {AS}\n\
         \x20neighbor {RR} timers 1 {HOLD}\n\
         \x20neighbor {RR} timers connect 1\n\
         \x20neighbor {RR} update-source {addr}\n\
         \x20neighbor {RR} capability extended-nexthop\n\
         \x20address-family ipv4 unicast\n"
    );
    for n in networks {
        s.push_str(&format!("  network {n}\n"));
    }
    s.push_str(&format!(
        "  neighbor {RR} activate\n exit-address-family\n!\n"
    ));
    s
}

fn rr_config() -> String {
    let mut s = format!(
        "[speaker]\n\
         asn = {AS}\n\
         router_id = \"{RR_ID}\"\n\
         listen = [\"[{RR}]:179\"]\n\
         cluster_id = \"{CLUSTER_ID}\"\n\
         hold_time = {HOLD}\n\
         connect_retry = 1\n\
         \n\
         [[peer_group]]\n\
         name = \"clients\"\n\
         asn = {AS}\n\
         rr_client = true\n\
         families = [\"ipv4-unicast\"]\n\
         extended_next_hop = true\n\
         \n\
         [[route]]\n\
         prefix = \"{P_RR}\"\n"
    );
    for a in [A, B] {
        s.push_str(&format!(
            "\n[[peer]]\naddress = \"{a}\"\ngroup = \"clients\"\nsource_address = \"{RR}\"\n"
        ));
    }
    s
}

/// The IPv6 addresses among a path's `nexthops` (FRR 8.4: `ip`, `afi`).
fn next_hops(path: &Value) -> Vec<String> {
    path["nexthops"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|n| n["afi"] == "ipv6")
                .filter_map(|n| n["ip"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `prefix` at FRR `i`: exactly one path, with `next_hop` as its global IPv6 next hop
/// (and no IPv4 one), and, when `originator` is set, that ORIGINATOR_ID and our cluster
/// ID as the whole CLUSTER_LIST.
fn check_path(
    w: &World,
    i: usize,
    prefix: &str,
    next_hop: &str,
    originator: Option<&str>,
) -> Result<(), String> {
    let paths = w.paths(i, prefix)?;
    let [p] = paths.as_slice() else {
        return Err(format!("{prefix} at {}: paths {paths:?}", w.frr[i].0));
    };
    let nh = next_hops(p);
    let v4 = p["nexthops"]
        .as_array()
        .is_some_and(|a| a.iter().any(|n| n["afi"] == "ipv4"));
    if nh.first().map(String::as_str) != Some(next_hop) || v4 {
        return Err(format!(
            "{prefix} at {}: next hops {}, expected {next_hop}",
            w.frr[i].0, p["nexthops"]
        ));
    }
    if let Some(o) = originator {
        let cluster: Vec<&str> = p["clusterList"]["list"]
            .as_array()
            .map(|l| l.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if p["originatorId"] != o || cluster != [CLUSTER_ID] {
            return Err(format!(
                "{prefix} at {}: originatorId {}, clusterList {}, expected {o}, [{CLUSTER_ID}]",
                w.frr[i].0, p["originatorId"], p["clusterList"]
            ));
        }
    }
    Ok(())
}

#[test]
fn extended_next_hop_frr() {
    let mut w = World::new();
    w.add_frr("a", A, A_ID, &[P_A]);
    w.add_frr("b", B, B_ID, &[]);
    let d = Daemon::start(w.hub.ns(), w.dir.path(), exe(), &rr_config())
        .unwrap_or_else(|e| w.fail(&format!("cannot start the daemon: {e}")));
    w.log(&format!("daemon started (pid {})", d.pid()));
    w.daemon = Some(d);

    // Established, the capability both ways, IPv4 unicast negotiated.
    w.wait("both sessions up with extended next hop", UP_WITHIN, || {
        for (name, f) in &w.frr {
            let n = f.neighbor_json()?;
            let caps = &n["neighborCapabilities"];
            if n["bgpState"] != "Established" {
                return Err(format!("{name}: state {}", n["bgpState"]));
            }
            if caps["extendedNexthop"] != "advertisedAndReceived" {
                return Err(format!(
                    "{name}: extendedNexthop {}",
                    caps["extendedNexthop"]
                ));
            }
            let fams = &caps["extendedNexthopFamililesByPeer"];
            let fams = if fams.is_null() {
                &caps["extendedNexthopFamiliesByPeer"]
            } else {
                fams
            };
            if fams["ipv4Unicast"].is_null() {
                return Err(format!("{name}: families by peer {fams}"));
            }
            if n["addressFamilyInfo"]["ipv4Unicast"].is_null()
                || n["addressFamilyInfo"]["ipv6Unicast"].is_object()
            {
                return Err(format!(
                    "{name}: no IPv4 unicast in {}",
                    n["addressFamilyInfo"]
                ));
            }
        }
        Ok(())
    });
    for (name, f) in &w.frr {
        let caps = f.neighbor_json().unwrap_or_else(|e| w.fail(&e))["neighborCapabilities"].clone();
        w.log(&format!(
            "{name}: extendedNexthop {}, by peer {}",
            caps["extendedNexthop"], caps["extendedNexthopFamililesByPeer"]
        ));
    }

    // A's route at B: A's IPv6 address as next hop, reflected; our route at both with our
    // IPv6 address as next hop.
    w.wait(
        "A's route reflected to B with A's IPv6 next hop; ours with our IPv6 next hop",
        CONVERGED_WITHIN,
        || {
            check_path(&w, 1, P_A, A, Some(A_ID))?;
            check_path(&w, 0, P_RR, RR, None)?;
            check_path(&w, 1, P_RR, RR, None)
        },
    );
    for (i, prefix) in [(1, P_A), (0, P_RR), (1, P_RR)] {
        let p = &w.paths(i, prefix).unwrap_or_else(|e| w.fail(&e))[0];
        w.log(&format!(
            "{prefix} at {}: nexthops {}, originatorId {}, clusterList {}",
            w.frr[i].0, p["nexthops"], p["originatorId"], p["clusterList"]
        ));
    }
    // Never echoed back to A (it has only its own, local path).
    let own = w
        .paths(0, P_A)
        .unwrap_or_else(|e| w.fail(&format!("A's table: {e}")));
    if own.len() != 1 {
        w.fail(&format!("{P_A} at A: {own:?}"));
    }

    // Withdrawal at A reaches B.
    w.frr(0)
        .vtysh_lines(&[
            "configure terminal",
            &format!("router bgp {AS}"),
            "address-family ipv4 unicast",
            &format!("no network {P_A}"),
        ])
        .unwrap_or_else(|e| w.fail(&format!("cannot withdraw {P_A} at A: {e}")));
    w.log(&format!("{P_A} withdrawn at A"));
    w.wait("A's withdrawal at B", WITHDRAWN_WITHIN, || {
        match w.paths(1, P_A)?.as_slice() {
            [] => Ok(()),
            paths => Err(format!("{P_A} still at B: {paths:?}")),
        }
    });
    // Our route is untouched.
    check_path(&w, 1, P_RR, RR, None).unwrap_or_else(|e| w.fail(&e));
    w.log("done");
}
