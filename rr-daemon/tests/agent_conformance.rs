//! The agent's plan against confd, case by case: each scenario of `tests/data/agent/`
//! holds Calico's resources as etcd keys and values (`datastore.json`), the sessions
//! confd's templates render for a node (`expected-<node>.jsonl`, derived by hand from the
//! templates' and confd's logic, each file saying how in its `#` lines), the keys refused
//! when read (`rejected.txt`) and the resources a node's plan skips (`skipped-<node>.txt`),
//! as `KEY FIELD` lines, and the static routes `bird_aggr.cfg` renders for `reachableBy`
//! (`static-routes-<node>.txt`, `PREFIX via GATEWAY` lines; none without the file).
//! Secrets are read from the scenario's `secrets/` directory, Felix's endpoint status
//! files (local workload peering) from its `endpoint-status/` (a file that cannot be used
//! is refused as `endpoint-status/NAME FIELD`).
//!
//! Then `Plan::config` on a few scenarios (peers, originate, pools, policies), and the
//! same node through the BIRD files confd renders (`tests/data/bird/mesh-node2`) and
//! through the datastore: the same peers and policies.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use rib::Attrs;
use rr_daemon::agent::model::{Datastore, read_endpoint_status};
use rr_daemon::agent::plan::{NodeEnv, Plan, RouterId, plan};
use rr_daemon::config::{Config, IpipMode, Ttl};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/agent")
}

/// Loads a scenario: the datastore and the `KEY FIELD` of every refused key, sorted.
fn load(dir: &Path) -> (Datastore, Vec<String>) {
    let text = std::fs::read_to_string(dir.join("datastore.json")).unwrap();
    let all: BTreeMap<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut ds = Datastore::new();
    let mut rejected = Vec::new();
    for (k, v) in &all {
        if let Err(e) = ds.apply(k, Some(v.to_string().as_bytes())) {
            assert_eq!(e.key, *k);
            rejected.push(format!("{} {}", e.key, e.field));
        }
    }
    let (workloads, bad) = read_endpoint_status(&dir.join("endpoint-status"));
    ds.workloads = workloads;
    for e in bad {
        let name = Path::new(&e.key).file_name().unwrap().to_string_lossy();
        rejected.push(format!("endpoint-status/{name} {}", e.field));
    }
    rejected.sort();
    (ds, rejected)
}

fn lines_of(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => t
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(str::to_owned)
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn env(dir: &Path, node: &str) -> NodeEnv {
    // An expected file may say `# CALICO_ROUTER_ID=hash` (a node without IPv4).
    let hash = std::fs::read_to_string(dir.join(format!("expected-{node}.jsonl"))).is_ok_and(|t| {
        t.lines()
            .any(|l| l.starts_with('#') && l.contains("CALICO_ROUTER_ID=hash"))
    });
    NodeEnv {
        node_name: node.to_owned(),
        router_id: if hash {
            RouterId::Hash
        } else {
            RouterId::Address
        },
        secrets_dir: Some(dir.join("secrets")),
    }
}

fn plan_of(scenario: &str, node: &str) -> Plan {
    let dir = root().join(scenario);
    let (ds, _) = load(&dir);
    plan(&ds, &env(&dir, node)).unwrap_or_else(|e| panic!("{scenario}/{node}: {e}"))
}

#[test]
fn sessions_equal_confds() {
    let mut scenarios: Vec<PathBuf> = std::fs::read_dir(root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("datastore.json").exists())
        .collect();
    scenarios.sort();
    assert!(scenarios.len() >= 10, "{scenarios:?}");
    let mut checked = 0;
    let mut failures = Vec::new();
    for dir in &scenarios {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let (ds, rejected) = load(dir);
        let mut want_rejected = lines_of(&dir.join("rejected.txt"));
        want_rejected.sort();
        if rejected != want_rejected {
            failures.push(format!(
                "{name}: refused keys\n  got  {rejected:?}\n  want {want_rejected:?}"
            ));
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let fname = f.file_name().unwrap().to_string_lossy().into_owned();
            let Some(node) = fname
                .strip_prefix("expected-")
                .and_then(|n| n.strip_suffix(".jsonl"))
            else {
                continue;
            };
            let p = match plan(&ds, &env(dir, node)) {
                Ok(p) => p,
                Err(e) => {
                    failures.push(format!("{name}/{node}: {e}"));
                    continue;
                }
            };
            let got: Vec<String> = p
                .sessions
                .iter()
                .map(|s| serde_json::to_string(s).unwrap())
                .collect();
            let want = lines_of(&f);
            if got != want {
                failures.push(format!(
                    "{name}/{node}: sessions\n  got:\n    {}\n  want:\n    {}",
                    got.join("\n    "),
                    want.join("\n    ")
                ));
            }
            let statics: Vec<String> = p
                .static_routes
                .iter()
                .map(|(p, gw)| format!("{p} via {gw}"))
                .collect();
            let want_statics = lines_of(&dir.join(format!("static-routes-{node}.txt")));
            if statics != want_statics {
                failures.push(format!(
                    "{name}/{node}: static routes\n  got  {statics:?}\n  want {want_statics:?}"
                ));
            }
            let mut skipped: Vec<String> = p
                .skipped
                .iter()
                .map(|e| format!("{} {}", e.key, e.field))
                .collect();
            skipped.sort();
            let mut want_skipped = lines_of(&dir.join(format!("skipped-{node}.txt")));
            want_skipped.sort();
            if skipped != want_skipped {
                failures.push(format!(
                    "{name}/{node}: skipped\n  got  {skipped:?}\n  want {want_skipped:?}\n  ({:?})",
                    p.skipped
                ));
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(checked >= 20, "only {checked} node files");
}

/// `--print-sessions`' keys, exactly and in order.
#[test]
fn print_sessions_keys() {
    let p = plan_of("explicit-peers", "n1");
    let line = serde_json::to_string(&p.sessions[0]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut order: Vec<(usize, &str)> = keys
        .iter()
        .map(|k| (line.find(&format!("\"{k}\":")).unwrap(), *k))
        .collect();
    order.sort();
    let order: Vec<&str> = order.into_iter().map(|(_, k)| k).collect();
    assert_eq!(
        order,
        [
            "name",
            "neighbor",
            "port",
            "asn",
            "local_asn",
            "passive",
            "rr_client",
            "cluster_id",
            "source_address",
            "ttl_security",
            "next_hop",
            "password",
            "graceful_restart_time",
            "import_filters",
            "export_filters"
        ]
    );
    assert!(
        !line.contains("rr-secret"),
        "the secret must never be printed"
    );
}

fn base() -> Config {
    Config::parse(
        "[speaker]\nasn = 1\nrouter_id = \"192.0.2.1\"\n[api]\nlisten = \"127.0.0.1:19179\"\n[fib]\ntable = 200\n[learn]\n",
        "base.toml",
    )
    .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn passes(p: &rib::Policy, prefix: &str) -> bool {
    p.evaluate(&net(prefix), &Attrs::default(), 0).is_some()
}

/// `reachableBy` in the running config: a `[[fib.static_route]]` to the peer via its
/// gateway at `[fib] metric` (Calico's 1024 here), beside the peer itself.
#[test]
fn config_of_reachable_by() {
    let p = plan_of("reachable-by", "kube-node-1");
    let c = p.try_config(&base()).unwrap();
    let statics: Vec<(IpNet, IpAddr, u32)> = c.fib.statics();
    assert_eq!(
        statics,
        [
            (net("10.225.0.4/32"), ip("10.224.0.1"), 1024),
            (net("10.225.0.5/32"), ip("10.224.0.1"), 1024),
            (net("fd00:225::10/128"), ip("fd00:224::1"), 1024),
            (net("10.192.0.2/32"), ip("10.192.0.1"), 1024),
        ]
    );
    assert!(c.peers.contains_key(&ip("10.225.0.4")));
    assert!(c.peers.contains_key(&ip("10.192.0.2")));
    // Not announced: the export refuses them like any address outside blocks and pools.
    let rr = &c.peers[&ip("10.225.0.4")];
    assert!(!passes(&rr.export.policy, "10.225.0.4/32"));
    // Without reachableBy, none.
    assert!(
        plan_of("mesh-ipip-off", "n1")
            .config(&base())
            .fib
            .static_routes
            .is_empty()
    );
}

/// Local workload sessions in the running config: passive, the BGPPeer's local AS, no
/// source address, TTL 64 (confd's `multihop`), the BGPFilter on import; an iBGP workload
/// of a reflector is its client.
#[test]
fn config_of_local_workloads() {
    let p = plan_of("local-workloads", "kube-master");
    let c = p.try_config(&base()).unwrap();
    let w = &c.peers[&ip("192.168.162.134")];
    assert!(w.passive);
    assert_eq!(w.asn, 64516);
    assert_eq!(w.local_as, Some(65002));
    assert_eq!(w.source_address, None);
    assert_eq!(w.ttl, Ttl::Multihop(64));
    assert_ne!(w.import.name, "all", "the BGPFilter is bound");
    assert!(passes(&w.import.policy, "44.0.1.0/24"));
    assert!(
        passes(&w.import.policy, "45.0.0.0/24"),
        "confd's import accepts what the filter leaves"
    );
    let w6 = &c.peers[&ip("fd00:10:244:0:586d:4461:e980:a286")];
    assert_eq!((w6.asn, w6.local_as), (64517, Some(65001)));
    assert!(passes(&w6.import.policy, "5000::/64"));
    let rr = plan_of("local-workloads", "kube-rr").config(&base());
    let w = &rr.peers[&ip("192.168.162.138")];
    assert!(w.rr_client && w.passive);
    assert_eq!(w.password, None);
    assert_eq!(w.allow_local_as, 0);
    assert!(
        rr.fib.static_routes.is_empty(),
        "no reachableBy for workloads"
    );
}

#[test]
fn config_of_a_mesh_node() {
    let p = plan_of("mesh-ipip-always", "n1");
    let c = p.config(&base());
    assert_eq!(c.speaker.asn, 64512);
    assert_eq!(c.speaker.router_id, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(c.speaker.cluster_id, None);
    assert_eq!(c.speaker.listen, vec!["0.0.0.0:179".parse().unwrap()]);
    // base's [api] and [fib] table kept.
    assert_eq!(c.api.listen, "127.0.0.1:19179".parse().unwrap());
    assert_eq!(c.fib.table, 200);
    assert_eq!(c.peers.len(), 2);
    let n3 = &c.peers[&ip("10.0.0.10")];
    assert!(n3.passive);
    assert_eq!(n3.asn, 64512);
    assert_eq!(n3.source_address, Some(ip("10.0.0.1")));
    assert_eq!(n3.ttl, Ttl::Multihop(64));
    assert_eq!(n3.graceful_restart, Some(120));
    assert_eq!(n3.connect_retry, 5);
    assert_eq!(n3.hold_time, 240);
    // The confirmed block only: the pending one and the /32 are not the node's blocks.
    let blocks: Vec<IpNet> = c.originate.iter().map(|o| o.prefix).collect();
    assert_eq!(blocks, vec![net("192.168.0.0/26")]);
    assert!(c.originate[0].blackhole);
    // IP-in-IP pools' routes are Felix's by default (programClusterRoutes
    // EnabledNoEncapOnly): not installed; tunl0's routes not learned.
    assert_eq!(c.fib.ip_pools.len(), 1);
    assert!(!c.fib.ip_pools[0].install);
    assert!(c.learn.route_exclude.contains(&"tunl0".to_owned()));
    assert_eq!(c.learn.pools, vec![net("192.168.0.0/16")]);
    // Export: the block and the pool, nothing else; more-specifics of the block only
    // when elevated (learned with a metric below 1024).
    let ex = &n3.export.policy;
    assert!(passes(ex, "192.168.0.0/26"));
    assert!(passes(ex, "192.168.5.0/26"));
    assert!(!passes(ex, "10.9.0.0/16"));
    assert!(
        n3.import
            .policy
            .evaluate(&net("10.9.0.0/16"), &Attrs::default(), 0)
            .is_some()
    );
}

#[test]
fn config_of_pools() {
    let c = plan_of("mesh-ipip-cross-subnet", "n1").config(&base());
    assert_eq!(c.fib.node_subnet, Some(net("10.0.0.0/24")));
    assert_eq!(c.fib.ip_pools.len(), 1);
    assert!(c.fib.ip_pools[0].install);
    assert_eq!(c.fib.ip_pools[0].ipip, IpipMode::CrossSubnet);
    // programClusterRoutes Enabled: tunl0's routes are ours.
    assert!(!c.learn.route_exclude.contains(&"tunl0".to_owned()));

    let c = plan_of("mesh-ipip-off", "n1").config(&base());
    assert_eq!(c.speaker.asn, 64513);
    assert_eq!(c.speaker.listen, vec!["0.0.0.0:1179".parse().unwrap()]);
    assert_eq!(c.peers[&ip("10.0.0.2")].port, 1790);
    let pools: Vec<(IpNet, IpipMode, bool)> = c
        .fib
        .ip_pools
        .iter()
        .map(|p| (p.prefix, p.ipip, p.install))
        .collect();
    assert_eq!(
        pools,
        vec![
            (net("10.244.0.0/16"), IpipMode::Never, true),
            (net("172.16.0.0/16"), IpipMode::Never, true),
            (net("192.168.0.0/16"), IpipMode::Never, true),
        ]
    );
    // disableBGPExport: never announced, nor learned for announcing.
    let ex = &c.peers[&ip("10.0.0.2")].export.policy;
    assert!(!passes(ex, "172.16.3.0/26"));
    assert!(passes(ex, "192.168.7.0/26"));
    assert!(
        passes(ex, "10.244.1.0/26"),
        "a disabled pool is still routed, as by confd"
    );
    assert!(!c.learn.pools.contains(&net("172.16.0.0/16")));

    // VXLAN: Felix's routes, both families; dual-stack listeners on the node's addresses
    // (bindMode NodeIP); the v4 and v6 blocks originated.
    let c = plan_of("vxlan", "n1").config(&base());
    assert!(c.fib.ip_pools.iter().all(|p| !p.install));
    assert_eq!(
        c.speaker.listen,
        vec![
            "10.0.0.1:179".parse().unwrap(),
            "[fd00::1]:179".parse().unwrap()
        ]
    );
    assert_eq!(c.peers.len(), 5);
    assert_eq!(c.peers[&ip("fd00::b")].graceful_restart, Some(300));
    assert_eq!(c.originate.len(), 2);
}

#[test]
fn config_of_reflectors_and_explicit_peers() {
    let c = plan_of("tor", "RR1").config(&base());
    assert_eq!(c.speaker.cluster_id, Some(Ipv4Addr::new(1, 0, 0, 1)));
    assert_eq!(c.peers.len(), 8);
    let clients = c.peers.values().filter(|p| p.rr_client).count();
    assert_eq!(clients, 7);
    assert!(!c.peers[&ip("10.1.0.102")].rr_client);
    assert_eq!(
        c.peers[&ip("10.1.0.1")].cluster_id,
        Some(Ipv4Addr::new(1, 0, 0, 1))
    );

    let p = plan_of("explicit-peers", "n1");
    let c = p.config(&base());
    // rack-a-v6 has its own local AS (BIRD's `local as` in its protocol): the peer's
    // `local_as`; tor's numAllowedLocalASNumbers is its `allow_local_as`.
    assert_eq!(p.sessions.len(), 5);
    assert_eq!(c.peers.len(), 5);
    let v6 = &c.peers[&ip("fd00::fe")];
    assert_eq!(v6.local_as, Some(65100));
    assert!(!v6.is_ibgp(&c.speaker));
    assert_eq!(c.peers[&ip("10.0.0.254")].allow_local_as, 2);
    assert_eq!(c.peers[&ip("10.0.0.253")].allow_local_as, 0);
    assert_eq!(c.peers[&ip("10.0.0.253")].local_as, None);
    assert_eq!(c.peers[&ip("10.0.0.3")].port, 1790);
    // n2 has two sessions to 10.0.0.3 (to-n3-port's global one on port 1790, to-n2's
    // reverse one on 179): one peer per address, the first by name kept.
    let p2 = plan_of("explicit-peers", "n2");
    let c2 = p2.config(&base());
    assert_eq!(p2.sessions.len(), 5);
    assert_eq!(c2.peers.len(), 4);
    assert_eq!(c2.peers[&ip("10.0.0.3")].port, 1790);
    let rr = &c.peers[&ip("10.0.0.253")];
    assert_eq!(rr.port, 1790);
    assert_eq!(rr.ttl, Ttl::Security(2));
    assert_eq!(rr.password.as_ref().map(|s| s.expose()), Some("rr-secret"));
    assert_eq!(rr.keepalive_time, Some(30));
    assert_eq!(rr.next_hop, rib::NextHopMode::SelfAll);
    let tor = &c.peers[&ip("10.0.0.254")];
    assert_eq!(tor.next_hop, rib::NextHopMode::Keep);
}

/// `logSeverityScreen`: the node's BGPConfiguration over the global one (confd's
/// `getNodeOrGlobalValue`), a value that is no severity skipped; the `--config` file's
/// `[speaker] log_level` (or BGP_LOGSEVERITYSCREEN, put there) over both.
#[test]
fn log_severity_screen_is_the_log_level() {
    let level = |node: &str, base: &Config| {
        plan_of("explicit-peers", node)
            .config(base)
            .speaker
            .log_level
    };
    assert_eq!(level("n1", &base()).as_deref(), Some("warn"));
    assert_eq!(level("n2", &base()).as_deref(), Some("debug"));
    // node.n3 says "Loud" (reported, see skipped-n3.txt): the global one.
    assert_eq!(level("n3", &base()).as_deref(), Some("warn"));
    let mut b = base();
    b.speaker.log_level = Some("error".to_owned());
    assert_eq!(level("n2", &b).as_deref(), Some("error"));
}

#[test]
fn config_of_filters() {
    let c = plan_of("filters", "n1").config(&base());
    let tor = &c.peers[&ip("10.0.0.254")];
    let im = &tor.import.policy;
    // import-v4: 10.100.0.0/16 with lengths 24..=28; then an iBGP-only reject (not for
    // this eBGP peer); then a community match; the rest accepted (confd's import).
    assert!(passes(im, "10.100.3.0/24"));
    assert!(passes(im, "10.7.0.0/16"));
    let ex = &tor.export.policy;
    assert!(
        !passes(ex, "192.168.200.0/24"),
        "export-pools rejects 192.168.128.0/17"
    );
    let mask = ex
        .evaluate(&net("192.168.0.0/26"), &Attrs::default(), 0)
        .expect("the block is exported");
    let mut attrs = Attrs::default();
    ex.apply(mask, &mut attrs);
    let comm = |a: u32, b: u32| bgp_wire::attr::Community((a << 16) | b);
    // export-pools' addCommunity; its accept ends the filter, as BIRD's `accept;` does,
    // before confd's apply_communities().
    assert_eq!(attrs.communities, vec![comm(65000, 7)]);
    assert!(attrs.large_communities.is_empty());
    // The iBGP peer: its by-interface filter cannot be said and is left out; import-v4's
    // iBGP rule rejects what the first rule does not accept.
    let ibgp = &c.peers[&ip("10.0.0.253")];
    assert!(passes(&ibgp.import.policy, "10.100.3.0/24"));
    assert!(!passes(&ibgp.import.policy, "10.7.0.0/16"));
    // Its export is confd's alone: prefixAdvertisements' communities (by name and by
    // value) on the block.
    let ex = &ibgp.export.policy;
    let mask = ex
        .evaluate(&net("192.168.0.0/26"), &Attrs::default(), 0)
        .unwrap();
    let mut attrs = Attrs::default();
    ex.apply(mask, &mut attrs);
    assert_eq!(attrs.communities, vec![comm(65000, 100)]);
    assert_eq!(attrs.large_communities.len(), 1);
}

/// The node of `tests/data/bird/mesh-node2` (rendered by confd for a two-node mesh with
/// one pool) from the datastore, and from its BIRD files: the same peers and policies.
#[test]
fn same_config_as_the_bird_files() {
    let bird = rr_daemon::bird::load(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/bird/mesh-node2/bird.cfg"),
        rr_daemon::bird::Dialect::Bird,
    )
    .unwrap()
    .config;
    let r = "/calico/resources/v3/projectcalico.org/";
    let mut ds = Datastore::new();
    for (k, v) in [
        (
            format!("{r}nodes/kube-node1"),
            r#"{"metadata":{"name":"kube-node1"},"spec":{"bgp":{"ipv4Address":"172.17.42.31/24"}}}"#,
        ),
        (
            format!("{r}nodes/kube-node2"),
            r#"{"metadata":{"name":"kube-node2"},"spec":{"bgp":{"ipv4Address":"172.17.42.32/24"}}}"#,
        ),
        (
            format!("{r}ippools/default-ipv4-ippool"),
            r#"{"spec":{"cidr":"192.168.0.0/16"}}"#,
        ),
        (
            "/calico/ipam/v2/host/kube-node2/ipv4/block/192.168.0.64-26".to_owned(),
            r#"{"state":"confirmed"}"#,
        ),
    ] {
        ds.apply(&k, Some(v.as_bytes())).unwrap();
    }
    let p = plan(
        &ds,
        &NodeEnv {
            node_name: "kube-node2".into(),
            router_id: RouterId::Address,
            secrets_dir: None,
        },
    )
    .unwrap();
    let c = p.config(&base());
    assert_eq!(c.speaker.asn, bird.speaker.asn);
    assert_eq!(c.speaker.router_id, bird.speaker.router_id);
    assert_eq!(c.peers, bird.peers);
    assert_eq!(c.policies, bird.policies);
    assert_eq!(c.learn.pools, bird.learn.pools);
    assert_eq!(c.learn.route_exclude, bird.learn.route_exclude);
    assert_eq!(c.learn.direct_exclude, bird.learn.direct_exclude);
    assert_eq!(c.fib.ip_pools, bird.fib.ip_pools);
    let blocks = |c: &Config| c.originate.iter().map(|o| o.prefix).collect::<Vec<_>>();
    assert_eq!(blocks(&c), blocks(&bird));
}

/// A thousand nodes in the mesh: one node's plan has 999 sessions and its Config 999
/// peers sharing one export policy. The time is printed (`--nocapture`), not asserted
/// tightly: the bound only catches a quadratic blow-up.
#[test]
fn thousand_node_mesh() {
    let r = "/calico/resources/v3/projectcalico.org/";
    let mut ds = Datastore::new();
    let start = std::time::Instant::now();
    for i in 0..1000u32 {
        let name = format!("node{i}");
        let v = format!(
            r#"{{"metadata":{{"name":"{name}","labels":{{"rack":"r{}"}}}},"spec":{{"bgp":{{"ipv4Address":"10.1.{}.{}/16"}}}}}}"#,
            i % 10,
            i / 250,
            i % 250 + 1,
        );
        ds.apply(&format!("{r}nodes/{name}"), Some(v.as_bytes()))
            .unwrap();
        ds.apply(
            &format!(
                "/calico/ipam/v2/host/{name}/ipv4/block/192.168.{}.{}-26",
                i / 4,
                (i % 4) * 64
            ),
            Some(br#"{"state":"confirmed"}"#),
        )
        .unwrap();
    }
    ds.apply(
        &format!("{r}ippools/p"),
        Some(br#"{"spec":{"cidr":"192.168.0.0/16"}}"#),
    )
    .unwrap();
    let loaded = start.elapsed();
    let env = NodeEnv {
        node_name: "node500".into(),
        router_id: RouterId::Address,
        secrets_dir: None,
    };
    let t = std::time::Instant::now();
    let p = plan(&ds, &env).unwrap();
    let planned = t.elapsed();
    let t = std::time::Instant::now();
    let c = p.config(&base());
    let configured = t.elapsed();
    println!("1000 nodes: loaded in {loaded:?}, planned in {planned:?}, Config in {configured:?}");
    assert_eq!(p.sessions.len(), 999);
    assert!(p.skipped.is_empty(), "{:?}", p.skipped);
    assert_eq!(c.peers.len(), 999);
    assert_eq!(
        c.policies.len(),
        1,
        "one export policy shared by every mesh peer"
    );
    assert_eq!(c.originate.len(), 1);
    assert!(
        (planned + configured).as_secs() < 60,
        "{planned:?} + {configured:?}"
    );
}

/// A node with 40 blocks: confd's export is three rules a block, more than a policy
/// holds (64); the rules are folded and every block still goes out. A keepaliveTime not
/// below the hold time is left out and reported, not a Config that fails.
#[test]
fn many_blocks_and_bad_keepalive() {
    let r = "/calico/resources/v3/projectcalico.org/";
    let mut ds = Datastore::new();
    for (k, v) in [
        (
            format!("{r}nodes/n1"),
            r#"{"spec":{"bgp":{"ipv4Address":"10.0.0.1/24"}}}"#.to_owned(),
        ),
        (
            format!("{r}nodes/n2"),
            r#"{"spec":{"bgp":{"ipv4Address":"10.0.0.2/24"}}}"#.to_owned(),
        ),
        (
            format!("{r}ippools/p"),
            r#"{"spec":{"cidr":"192.168.0.0/16"}}"#.to_owned(),
        ),
        (
            format!("{r}bgppeers/slow"),
            r#"{"spec":{"peerIP":"10.0.0.254","asNumber":65001,"keepaliveTime":"5m"}}"#.to_owned(),
        ),
    ] {
        ds.apply(&k, Some(v.as_bytes())).unwrap();
    }
    for i in 0..40 {
        ds.apply(
            &format!("/calico/ipam/v2/host/n1/ipv4/block/192.168.{i}.0-26"),
            Some(br#"{"state":"confirmed"}"#),
        )
        .unwrap();
    }
    let env = NodeEnv {
        node_name: "n1".into(),
        router_id: RouterId::Address,
        secrets_dir: None,
    };
    let p = plan(&ds, &env).unwrap();
    let skipped: Vec<&str> = p.skipped.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(skipped, ["spec.keepaliveTime"], "{:?}", p.skipped);
    let c = p.try_config(&base()).unwrap();
    assert_eq!(c.originate.len(), 40);
    let n2 = &c.peers[&ip("10.0.0.2")];
    assert!(n2.export.policy.rules().len() <= rib::policy::MAX_RULES);
    for i in 0..40 {
        assert!(passes(&n2.export.policy, &format!("192.168.{i}.0/26")));
    }
    assert!(passes(&n2.export.policy, "192.168.200.0/26"), "the pool");
    assert!(!passes(&n2.export.policy, "10.9.0.0/24"));
    assert_eq!(c.peers[&ip("10.0.0.254")].keepalive_time, None);
}
