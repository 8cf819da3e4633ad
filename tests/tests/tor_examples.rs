//! `examples/tor/`: the seed's top-of-rack topology as configuration files a user can copy.
//! Every file passes `rr-daemon check`, and every file says what the topology
//! `tests/topologies/tor.toml` (which `tor_interop.rs` brings up) says of its speaker: the
//! same address, peers, roles, cluster IDs and block.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use interop_tests::Topology;
use rr_daemon::config::Config;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tor")
}

/// `rr-daemon check --config FILE` (our daemon built as `speaker`): exit 0, one line.
#[test]
fn every_example_passes_check() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples())
        .expect("examples/tor")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 15, "rr1..rr6 and n1..n9: {files:?}");
    for f in &files {
        let out = Command::new(env!("CARGO_BIN_EXE_speaker"))
            .args(["check", "--config"])
            .arg(f)
            .output()
            .expect("run rr-daemon check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}{}",
            f.display(),
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.lines().count(), 1, "{}: {stdout}", f.display());
    }
}

/// Each example file against `tests/topologies/tor.toml`.
#[test]
fn examples_match_the_tested_topology() {
    let t = Topology::named("tor").unwrap_or_else(|e| panic!("{e}"));
    let ip = |a: Ipv4Addr| IpAddr::V4(a);
    for r in &t.reflectors {
        let path = examples().join(format!("{}.toml", r.name));
        let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let rack = &t.racks_of(&r.name)[0];
        assert_eq!(c.speaker.router_id, r.address, "{}", path.display());
        assert_eq!(c.speaker.asn, t.asn);
        assert_eq!(c.speaker.cluster_id, Some(rack.cluster_id));
        let clients: BTreeSet<IpAddr> = rack
            .nodes
            .iter()
            .filter_map(|n| t.node(n))
            .map(|n| ip(n.address))
            .collect();
        let others: BTreeSet<IpAddr> = t
            .reflectors
            .iter()
            .filter(|o| o.name != r.name)
            .map(|o| ip(o.address))
            .collect();
        let got_clients: BTreeSet<IpAddr> = c
            .peers
            .values()
            .filter(|p| p.rr_client && p.cluster_id == Some(rack.cluster_id))
            .map(|p| p.address)
            .collect();
        let got_others: BTreeSet<IpAddr> = c
            .peers
            .values()
            .filter(|p| !p.rr_client)
            .map(|p| p.address)
            .collect();
        assert_eq!(got_clients, clients, "{}: clients", path.display());
        assert_eq!(got_others, others, "{}: non-clients", path.display());
        assert!(c.peers.values().all(|p| p.asn == t.asn));
    }
    for n in &t.nodes {
        let path = examples().join(format!("{}.toml", n.name));
        let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.speaker.router_id, n.address, "{}", path.display());
        let rrs: BTreeSet<IpAddr> = t
            .rack_of_node(&n.name)
            .reflectors
            .iter()
            .filter_map(|x| t.reflector(x))
            .map(|r| ip(r.address))
            .collect();
        let got: BTreeSet<IpAddr> = c.peers.values().map(|p| p.address).collect();
        assert_eq!(got, rrs, "{}: peers", path.display());
        assert!(c.peers.values().all(|p| !p.rr_client && p.asn == t.asn));
        assert!(c.fib.enabled, "{}: [fib]", path.display());
        let blocks: Vec<String> = c.originate.iter().map(|o| o.prefix.to_string()).collect();
        assert_eq!(blocks, [n.block.to_string()], "{}", path.display());
    }
}
