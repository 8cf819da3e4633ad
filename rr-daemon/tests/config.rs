//! The configuration file: examples, the fixed contract, defaults, inheritance, mesh and
//! dynamic neighbours, diff, and the exact text of every kind of error.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bgp_wire::attr::{Community, LargeCommunity};
use bgp_wire::capability::{
    AddPathEntry, AddPathMode as WireAddPath, Capability, ExtendedNextHopEntry,
};
use bgp_wire::{Afi, Family, FamilySet, Safi};
use rib::policy::{Match, Modify, PrefixMatch, Rule, Verdict};
use rib::{AddPathMode, MaxPrefix, NextHopMode, Policy};
use rr_daemon::config::{AddPath, Config, ErrorKind, LogFormat, PeerSettings, PolicyBinding, Ttl};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn parse(text: &str) -> Config {
    Config::parse(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn error(text: &str) -> String {
    match Config::parse(text, "test.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

const HEAD: &str = "[speaker]\nasn = 65000\nrouter_id = \"10.0.0.1\"\n";

/// The contract outside tools generate configurations with.
const CONTRACT: &str = r#"
[speaker]
asn = 65000                       # local AS, 4-octet
router_id = "127.0.0.2"
listen = ["127.0.0.2:179"]        # [] = no listener
cluster_id = "1.0.0.1"            # present = route reflector for rr_client peers

[api]
listen = "127.0.0.1:9179"         # read-only HTTP, loopback by default

[[peer]]
address = "127.0.1.1"
asn = 65000                       # equal to speaker.asn = iBGP, else eBGP
rr_client = true                  # default false
passive = true                    # default false: we also connect out
multihop = 8                      # eBGP TTL; default 1 (directly connected)
families = ["ipv4-unicast", "ipv6-unicast"]   # default both
import = "all"                    # "all" | "none" | name of a policy; eBGP default "none" (RFC 8212)
export = "all"
"#;

#[test]
fn test_fixed_contract_parses_with_documented_defaults() {
    let cfg = parse(CONTRACT);
    let s = &cfg.speaker;
    assert_eq!(s.asn, 65000);
    assert_eq!(s.router_id, v4("127.0.0.2"));
    assert_eq!(
        s.listen,
        vec!["127.0.0.2:179".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(s.cluster_id, Some(v4("1.0.0.1")));
    assert_eq!(s.hold_time, 90);
    assert_eq!(s.keepalive_time, None);
    assert_eq!(s.send_hold_time, None);
    assert_eq!(s.connect_retry, 5);
    assert!(s.client_to_client);
    assert!(!s.always_compare_med);
    assert!(!s.missing_med_worst);
    assert_eq!(s.default_local_pref, 100);
    assert_eq!(s.graceful_restart, Some(120));
    assert_eq!(s.log_format, LogFormat::Text);
    assert!(cfg.api.enabled);
    assert_eq!(cfg.api.listen, "127.0.0.1:9179".parse().unwrap());
    assert_eq!(cfg.api.readiness_grace, Duration::from_secs(30));
    assert!(!cfg.fib.enabled);
    assert_eq!(
        (cfg.fib.table, cfg.fib.protocol, cfg.fib.metric),
        (254, 12, 1024)
    );
    assert!(cfg.dynamic_neighbors.is_empty() && cfg.mesh.is_none() && cfg.policies.is_empty());

    assert_eq!(cfg.peers.len(), 1);
    let p = cfg.peer(ip("127.0.1.1")).unwrap();
    assert_eq!(p.address, ip("127.0.1.1"));
    assert_eq!(p.asn, 65000);
    assert!(p.is_ibgp(s));
    assert!(p.rr_client && p.passive);
    assert_eq!(p.ttl, Ttl::Multihop(8));
    assert_eq!(p.families, FamilySet::ALL);
    assert_eq!(p.import, PolicyBinding::all());
    assert_eq!(p.export, PolicyBinding::all());
    // Defaults of everything the contract leaves out.
    assert_eq!(p.port, 179);
    assert_eq!(p.source_address, None);
    assert_eq!(
        (p.hold_time, p.keepalive_time, p.connect_retry),
        (90, None, 5)
    );
    assert_eq!(p.send_hold_time, None);
    assert_eq!(p.add_path, AddPath::default());
    assert!(!p.extended_next_hop);
    assert_eq!(p.cluster_id, None);
    assert_eq!(p.next_hop, NextHopMode::Auto);
    assert_eq!(p.max_prefix, None);
    assert_eq!(p.graceful_restart, Some(120));
    assert_eq!(p.password, None);

    let fsm = p.fsm_config(s);
    assert_eq!((fsm.local_as, fsm.peer_as), (65000, 65000));
    assert_eq!(fsm.router_id, v4("127.0.0.2"));
    assert!(fsm.passive);
    assert_eq!(fsm.timing.hold_time, 90);
    assert_eq!(fsm.timing.connect_retry, Duration::from_secs(5));
    // RFC 9687's default (max(480 s, 2 x hold time)) is the machine's to compute.
    assert_eq!(fsm.timing.send_hold, None);
    assert_eq!(fsm.families(), FamilySet::ALL);
    assert!(fsm.capabilities.iter().any(|c| matches!(
        c,
        Capability::GracefulRestart(gr) if gr.restart_time == 120
            && !gr.restart_state
            && gr.families.len() == 2
            && gr.families.iter().all(|f| !f.forwarding)
    )));
    assert!(
        !fsm.capabilities
            .iter()
            .any(|c| matches!(c, Capability::AddPath(_)))
    );

    let rib = p.rib_config();
    assert_eq!((rib.address, rib.remote_as), (ip("127.0.1.1"), 65000));
    assert!(rib.rr_client && rib.graceful_restart);
    assert_eq!(rib.import, Some(Arc::new(Policy::accept_all())));
    assert_eq!(rib.add_path_send, [None, None]);

    let rc = cfg.rib_config();
    assert_eq!(rc.cluster_id, Some(v4("1.0.0.1")));
    assert_eq!(rc.cluster_id(), v4("1.0.0.1"));
    assert!(!rc.track_best_changes);

    let spec = p.session_spec(s);
    assert_eq!(
        (spec.peer, spec.port, spec.local),
        (ip("127.0.1.1"), 179, None)
    );
}

#[test]
fn test_examples_load() {
    let rr = Config::load(example("route-reflector.toml")).unwrap();
    assert_eq!(rr.speaker.cluster_id, Some(v4("1.0.0.1")));
    assert_eq!(rr.peers.len(), 4);
    assert_eq!(rr.peers.values().filter(|p| p.rr_client).count(), 3);
    assert_eq!(rr.dynamic_neighbors.len(), 1);
    assert!(
        rr.peer(ip("172.17.42.41"))
            .unwrap()
            .password
            .as_ref()
            .is_some_and(|p| p.expose() == "rr-pair-secret")
    );

    let node = Config::load(example("mesh-node.toml")).unwrap();
    assert_eq!(node.mesh.as_ref().unwrap().local, vec![ip("172.17.42.31")]);
    assert_eq!(node.peers.len(), 3);
    assert_eq!(node.policies.len(), 3);
    let tor = node.peer(ip("172.17.42.1")).unwrap();
    assert_eq!(tor.ttl, Ttl::Security(1));
    assert_eq!(tor.ttl.min_incoming(), Some(255));
    assert_eq!(tor.import.name, "tor-in");

    let rack = Config::load(example("rack-reflector.toml")).unwrap();
    assert_eq!(
        rack.peer(ip("10.0.1.1")).unwrap().cluster_id,
        Some(v4("1.0.0.1"))
    );
    assert_eq!(
        rack.peer(ip("10.0.2.1")).unwrap().cluster_id,
        Some(v4("1.0.0.2"))
    );
    assert_eq!(rack.peer(ip("10.0.2.3")).unwrap().hold_time, 240);
    // Rack 1's nodes are meshed among themselves: nothing reflected between them.
    assert_eq!(
        rack.peer(ip("10.0.1.1")).unwrap().client_to_client,
        Some(false)
    );
    assert_eq!(rack.peer(ip("10.0.2.1")).unwrap().client_to_client, None);
    assert_eq!(
        rack.peer(ip("10.0.1.1"))
            .unwrap()
            .rib_config()
            .client_to_client,
        Some(false)
    );
    // Clients and no speaker cluster_id: the router ID serves (documented).
    assert_eq!(rack.speaker.cluster_id, Some(v4("10.0.0.1")));
    assert_eq!(rack.peers.len(), 9);
    // `check`'s line names the clusters the clients are in, not only the speaker's.
    assert!(
        rack.summary().contains(
            "route reflector (cluster id 10.0.0.1; clients' cluster ids 1.0.0.1, 1.0.0.2)"
        ),
        "{}",
        rack.summary()
    );
}

#[test]
fn test_summary_names_only_the_speakers_cluster_when_clients_are_in_it() {
    let cfg = parse(&format!(
        "{HEAD}cluster_id = \"1.0.0.9\"\n[[peer]]\naddress = \"10.0.0.2\"\nasn = 65000\nrr_client = true\n\
         [[peer]]\naddress = \"10.0.0.3\"\nasn = 65000\nrr_client = true\ncluster_id = \"1.0.0.9\"\n"
    ));
    assert!(
        cfg.summary()
            .contains("route reflector (cluster id 1.0.0.9);"),
        "{}",
        cfg.summary()
    );
}

#[test]
fn test_minimal_defaults() {
    let cfg = parse(HEAD);
    assert_eq!(
        cfg.speaker.listen,
        vec!["0.0.0.0:179".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(cfg.speaker.cluster_id, None);
    assert!(!cfg.speaker.is_route_reflector());
    assert_eq!(cfg.api.listen, "127.0.0.1:9179".parse().unwrap());
    assert_eq!(cfg.api.readiness_grace, Duration::from_secs(30), "Calico's");
    let cfg = parse(&format!("{HEAD}[api]\nreadiness_grace = 0\n"));
    assert_eq!(cfg.api.readiness_grace, Duration::ZERO);
    let cfg = parse(&format!("{HEAD}[api]\nreadiness_grace = 120\n"));
    assert_eq!(cfg.api.readiness_grace, Duration::from_secs(120));
    assert!(!cfg.api.ready_requires_fib, "off by default");
    let cfg = parse(&format!("{HEAD}[api]\nready_requires_fib = true\n"));
    assert!(cfg.api.ready_requires_fib);
    assert!(Config::parse(&format!("{HEAD}[api]\nreadiness_grace = -1\n"), "t.toml").is_err());
    let none = parse(&format!("{HEAD}listen = []\n"));
    assert!(none.speaker.listen.is_empty());
    let bare = parse(&format!("{HEAD}listen = [\"10.0.0.1\", \"[::1]:1179\"]\n"));
    assert_eq!(
        bare.speaker.listen,
        vec![
            "10.0.0.1:179".parse::<SocketAddr>().unwrap(),
            "[::1]:1179".parse().unwrap()
        ]
    );
}

#[test]
fn test_ebgp_defaults_follow_rfc_8212() {
    let cfg = parse(&format!(
        "{HEAD}[[peer]]\naddress = \"10.0.0.2\"\nasn = 65001\n\
         [[peer]]\naddress = \"10.0.0.3\"\nasn = 65001\nimport = \"all\"\nexport = \"all\"\n"
    ));
    let p = cfg.peer(ip("10.0.0.2")).unwrap();
    assert!(!p.is_ibgp(&cfg.speaker));
    assert_eq!(p.import, PolicyBinding::none());
    assert_eq!(p.export, PolicyBinding::none());
    assert_eq!(p.ttl, Ttl::Multihop(1));
    assert_eq!(p.rib_config().import, Some(Arc::new(Policy::reject_all())));
    // "all" on eBGP is allowed when written.
    let q = cfg.peer(ip("10.0.0.3")).unwrap();
    assert_eq!(q.import, PolicyBinding::all());
    assert_eq!(q.export, PolicyBinding::all());
    // iBGP: TTL 255 by default.
    let i = parse(&format!(
        "{HEAD}[[peer]]\naddress = \"10.0.0.2\"\nasn = 65000\n"
    ));
    assert_eq!(i.peer(ip("10.0.0.2")).unwrap().ttl, Ttl::Multihop(255));
}

#[test]
fn test_rr_client_without_cluster_id_defaults_to_router_id() {
    let cfg = parse(&format!(
        "{HEAD}[[peer]]\naddress = \"10.0.0.2\"\nasn = 65000\nrr_client = true\n"
    ));
    assert_eq!(cfg.speaker.cluster_id, Some(v4("10.0.0.1")));
    // A cluster ID without any client is kept, and is fine.
    let cfg = parse(
        "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\ncluster_id = \"9.9.9.9\"\n\
         [[peer]]\naddress = \"10.0.0.2\"\nasn = 1\n",
    );
    assert_eq!(cfg.speaker.cluster_id, Some(v4("9.9.9.9")));
}

#[test]
fn test_group_inheritance() {
    let cfg = parse(&format!(
        r#"{HEAD}hold_time = 60
[[policy]]
name = "p"
default_action = "accept"

[[peer_group]]
name = "g"
asn = 65000
rr_client = true
cluster_id = "1.0.0.9"
port = 1179
source_address = "10.0.0.1"
multihop = 4
hold_time = 30
keepalive_time = 10
connect_retry = 7
families = ["ipv4"]
add_path = {{ receive = true, send = "best-3" }}
next_hop_self = "force"
import = "p"
max_prefix = {{ limit = 10, warn_only = true }}
graceful_restart = false
password = "s3cret"

[[peer]]
address = "10.0.0.2"
group = "g"

[[peer]]
address = "10.0.0.3"
group = "g"
hold_time = 27
ttl_security = 2
next_hop_self = false
graceful_restart = 300
max_prefix = false
add_path = false
export = "p"
"#
    ));
    let a = cfg.peer(ip("10.0.0.2")).unwrap();
    assert_eq!(a.asn, 65000);
    assert!(a.rr_client);
    assert_eq!(a.cluster_id, Some(v4("1.0.0.9")));
    assert_eq!(a.port, 1179);
    assert_eq!(a.source_address, Some(ip("10.0.0.1")));
    assert_eq!(a.ttl, Ttl::Multihop(4));
    assert_eq!(
        (a.hold_time, a.keepalive_time, a.connect_retry),
        (30, Some(10), 7)
    );
    assert_eq!(a.families, FamilySet::only(Family::Ipv4Unicast));
    assert_eq!(
        a.add_path,
        AddPath {
            receive: true,
            send: Some(AddPathMode::Best(3))
        }
    );
    assert_eq!(a.next_hop, NextHopMode::SelfAll);
    assert_eq!(a.import.name, "p");
    assert_eq!(a.export, PolicyBinding::all());
    assert_eq!(
        a.max_prefix,
        Some(MaxPrefix {
            limit: 10,
            warn_only: true
        })
    );
    assert_eq!(a.graceful_restart, None);
    assert_eq!(a.password.as_ref().unwrap().expose(), "s3cret");
    assert!(!format!("{a:?}").contains("s3cret"));

    let rib = a.rib_config();
    assert_eq!(rib.add_path_send, [Some(AddPathMode::Best(3)), None]);
    assert!(!rib.graceful_restart);
    let fsm = a.fsm_config(&cfg.speaker);
    assert_eq!(fsm.families(), FamilySet::only(Family::Ipv4Unicast));
    assert!(
        fsm.capabilities
            .contains(&Capability::AddPath(vec![AddPathEntry {
                afi: Family::Ipv4Unicast.afi(),
                safi: Family::Ipv4Unicast.safi(),
                mode: WireAddPath::Both,
            }]))
    );
    assert!(
        !fsm.capabilities
            .iter()
            .any(|c| matches!(c, Capability::GracefulRestart(_)))
    );
    assert_eq!(fsm.timing.keepalive_time, Some(10));

    // The peer's own keys win; `ttl_security` replaces the group's `multihop`.
    let b = cfg.peer(ip("10.0.0.3")).unwrap();
    assert_eq!(b.hold_time, 27);
    assert_eq!(b.keepalive_time, Some(10));
    assert_eq!(b.ttl, Ttl::Security(2));
    assert_eq!(b.ttl.outgoing(), 255);
    assert_eq!(b.ttl.min_incoming(), Some(254));
    assert_eq!(b.next_hop, NextHopMode::Auto);
    assert_eq!(b.graceful_restart, Some(300));
    assert_eq!(b.max_prefix, None);
    assert_eq!(b.add_path, AddPath::default());
    assert_eq!(b.export.name, "p");
    // Untouched speaker defaults reach grouped peers too.
    let c = parse(&format!(
        "{HEAD}hold_time = 60\n[[peer_group]]\nname = \"g\"\nasn = 1\n\
         [[peer]]\naddress = \"10.0.0.2\"\ngroup = \"g\"\n"
    ));
    assert_eq!(c.peer(ip("10.0.0.2")).unwrap().hold_time, 60);
}

/// `send_hold_time` (RFC 9687) is inherited key by key like `hold_time`: `[speaker]`, then
/// the group, then the peer; it reaches the session's timers as `timing.send_hold`, and
/// unset everywhere it leaves the RFC's default to the machine.
#[test]
fn test_send_hold_time_inheritance() {
    let cfg = parse(&format!(
        r#"{HEAD}send_hold_time = 600
[[peer_group]]
name = "g"
asn = 65000
send_hold_time = 30

[[peer_group]]
name = "h"
asn = 65000

[[peer]]
address = "10.0.0.2"
asn = 65000

[[peer]]
address = "10.0.0.3"
group = "g"

[[peer]]
address = "10.0.0.4"
group = "g"
send_hold_time = 4

[[peer]]
address = "10.0.0.5"
group = "h"
"#
    ));
    assert_eq!(cfg.speaker.send_hold_time, Some(600));
    for (addr, want) in [
        ("10.0.0.2", 600),
        ("10.0.0.3", 30),
        ("10.0.0.4", 4),
        ("10.0.0.5", 600),
    ] {
        let p = cfg.peer(ip(addr)).unwrap();
        assert_eq!(p.send_hold_time, Some(want), "{addr}");
        let want = Some(Duration::from_secs(want.into()));
        assert_eq!(p.fsm_config(&cfg.speaker).timing.send_hold, want, "{addr}");
        assert_eq!(p.session_spec(&cfg.speaker).fsm.timing.send_hold, want);
        // The other timers are left alone.
        assert_eq!(p.fsm_config(&cfg.speaker).timing.hold_time, 90, "{addr}");
    }

    // Without `[speaker] send_hold_time`, a group's value still reaches its peers, and
    // a peer without one anywhere has none.
    let cfg = parse(&format!(
        "{HEAD}[[peer_group]]\nname = \"g\"\nasn = 1\nsend_hold_time = 7\n\
         [[peer]]\naddress = \"10.0.0.2\"\ngroup = \"g\"\n\
         [[peer]]\naddress = \"10.0.0.3\"\nasn = 1\n"
    ));
    let grouped = cfg.peer(ip("10.0.0.2")).unwrap();
    assert_eq!(grouped.send_hold_time, Some(7));
    let alone = cfg.peer(ip("10.0.0.3")).unwrap();
    assert_eq!(alone.send_hold_time, None);
    assert_eq!(alone.fsm_config(&cfg.speaker).timing.send_hold, None);
    // The key is part of the peer's settings: a reload that changes it changes the peer.
    assert_ne!(
        &PeerSettings {
            send_hold_time: Some(8),
            ..grouped.clone()
        },
        grouped
    );
    // On dynamic neighbours, from their group.
    let cfg = parse(&format!(
        "{HEAD}[[peer_group]]\nname = \"g\"\nasn = 65000\nsend_hold_time = 9\n\
         [[dynamic_neighbors]]\nprefix = \"10.1.0.0/16\"\ngroup = \"g\"\n"
    ));
    let d = cfg
        .dynamic_range(ip("10.1.2.3"))
        .unwrap()
        .peer(ip("10.1.2.3"));
    assert_eq!(
        d.fsm_config(&cfg.speaker).timing.send_hold,
        Some(Duration::from_secs(9))
    );
}

/// `extended_next_hop` (RFC 8950): off by default; on, the OPEN carries the capability
/// for IPv4 unicast with IPv6 next hops; a peer can turn off its group's; it needs IPv4
/// unicast among the families.
#[test]
fn test_extended_next_hop() {
    let enh = |c: &Capability| matches!(c, Capability::ExtendedNextHop(_));
    let cfg = parse(&format!(
        "{HEAD}[[peer_group]]\nname = \"v6\"\nasn = 65000\nextended_next_hop = true\n\
         [[peer]]\naddress = \"2001:db8::2\"\ngroup = \"v6\"\n\
         [[peer]]\naddress = \"2001:db8::3\"\ngroup = \"v6\"\nextended_next_hop = false\n\
         [[peer]]\naddress = \"2001:db8::4\"\nasn = 65000\n\
         [[peer]]\naddress = \"10.0.0.5\"\nasn = 65000\nextended_next_hop = true\n\
         families = [\"ipv4\"]\n"
    ));
    let on = cfg.peer(ip("2001:db8::2")).unwrap();
    assert!(on.extended_next_hop);
    let caps: Vec<_> = on
        .fsm_config(&cfg.speaker)
        .capabilities
        .into_iter()
        .filter(enh)
        .collect();
    assert_eq!(
        caps,
        vec![Capability::ExtendedNextHop(vec![ExtendedNextHopEntry {
            afi: Afi::IPV4,
            safi: Safi::UNICAST,
            next_hop_afi: Afi::IPV6,
        }])]
    );
    for off in ["2001:db8::3", "2001:db8::4"] {
        let p = cfg.peer(ip(off)).unwrap();
        assert!(!p.extended_next_hop, "{off}");
        assert!(!p.fsm_config(&cfg.speaker).capabilities.iter().any(enh));
    }
    // Allowed on an IPv4 session too (the capability is about the NLRI).
    assert!(cfg.peer(ip("10.0.0.5")).unwrap().extended_next_hop);
    // The group's peers differ by address and this key only, so a reload that flips it
    // changes the peer.
    let off = cfg.peer(ip("2001:db8::3")).unwrap();
    assert_eq!(
        &PeerSettings {
            address: on.address,
            extended_next_hop: true,
            ..off.clone()
        },
        on
    );

    assert_eq!(
        error(&format!(
            "{HEAD}[[peer]]\naddress = \"2001:db8::2\"\nasn = 65000\n\
             families = [\"ipv6\"]\nextended_next_hop = true\n"
        )),
        "test.toml:8:21: peer[0].extended_next_hop: extended_next_hop needs \"ipv4-unicast\" \
         in families"
    );
    assert_eq!(
        error(&format!(
            "{HEAD}[[peer]]\naddress = \"2001:db8::2\"\nasn = 65000\nextended_next_hop = 1\n"
        )),
        "test.toml:7:21: peer[0].extended_next_hop: invalid type: integer `1`, expected true or false"
    );
}

#[test]
fn test_dynamic_neighbors() {
    let cfg = parse(&format!(
        r#"{HEAD}
[[peer_group]]
name = "nodes"
asn = 65000
rr_client = true
passive = false

[[peer_group]]
name = "special"
asn = 65001
import = "all"

[[dynamic_neighbors]]
prefix = "10.1.0.0/16"
group = "nodes"
limit = 100

[[dynamic_neighbors]]
prefix = "10.1.2.0/24"
group = "special"

[[peer]]
address = "10.1.0.5"
asn = 65000
"#
    ));
    assert_eq!(cfg.dynamic_neighbors.len(), 2);
    let wide = cfg.dynamic_range(ip("10.1.9.9")).unwrap();
    assert_eq!(wide.prefix.to_string(), "10.1.0.0/16");
    assert_eq!(wide.limit, 100);
    assert_eq!(wide.group, "nodes");
    let p = wide.peer(ip("10.1.9.9"));
    assert_eq!(p.address, ip("10.1.9.9"));
    assert!(p.passive, "dynamic peers are always passive");
    assert!(p.rr_client);
    // Longest prefix wins.
    let narrow = cfg.dynamic_range(ip("10.1.2.3")).unwrap();
    assert_eq!(narrow.group, "special");
    assert_eq!(narrow.peer(ip("10.1.2.3")).asn, 65001);
    assert_eq!(narrow.limit, rr_daemon::config::DEFAULT_DYNAMIC_LIMIT);
    assert!(cfg.dynamic_range(ip("10.2.0.1")).is_none());
    // A configured peer inside a range is a configured peer.
    assert!(cfg.peer(ip("10.1.0.5")).is_some());
    assert!(cfg.peer(ip("10.1.9.9")).is_none());
    // A dynamic client makes the speaker a reflector.
    assert_eq!(cfg.speaker.cluster_id, Some(v4("10.0.0.1")));
}

#[test]
fn test_mesh_lower_address_string_is_passive() {
    let cfg = parse(
        r#"
[speaker]
asn = 64512
router_id = "10.0.0.2"

[mesh]
nodes = ["10.0.0.2", "10.0.0.9", "10.0.0.10", "10.0.0.11", "10.0.0.30"]
group = "mesh"

[[peer_group]]
name = "mesh"
add_path = true
passive = true          # the mesh rule decides instead
"#,
    );
    let m = cfg.mesh.as_ref().unwrap();
    assert_eq!(m.local, vec![ip("10.0.0.2")]);
    assert_eq!(cfg.peers.len(), 4);
    assert!(cfg.peer(ip("10.0.0.2")).is_none(), "not a peer of itself");
    // Calico compares the addresses as strings and the lower one waits. We are "10.0.0.2":
    // below "10.0.0.9" and "10.0.0.30", so we wait for them; above "10.0.0.10" and
    // "10.0.0.11" (though smaller as numbers), so we connect to them.
    assert!(cfg.peer(ip("10.0.0.9")).unwrap().passive);
    assert!(cfg.peer(ip("10.0.0.30")).unwrap().passive);
    assert!(!cfg.peer(ip("10.0.0.10")).unwrap().passive);
    assert!(!cfg.peer(ip("10.0.0.11")).unwrap().passive);
    for p in cfg.peers.values() {
        assert_eq!(p.asn, 64512);
        assert_eq!(p.source_address, Some(ip("10.0.0.2")));
        assert_eq!(p.add_path.send, Some(AddPathMode::All));
        assert!(p.add_path.receive);
    }
    assert!(cfg.summary().contains("4 mesh"));

    // Dual stack, our addresses given explicitly.
    let cfg = parse(
        r#"
[speaker]
asn = 64512
router_id = "192.0.2.1"
listen = []

[mesh]
nodes = ["10.0.0.5", "10.0.0.1", "fd00::9", "fd00::1", "fd00::10"]
local_address = ["10.0.0.3", "fd00::5"]
"#,
    );
    assert!(cfg.peer(ip("10.0.0.5")).unwrap().passive);
    assert!(!cfg.peer(ip("10.0.0.1")).unwrap().passive);
    assert!(cfg.peer(ip("fd00::9")).unwrap().passive);
    assert!(!cfg.peer(ip("fd00::1")).unwrap().passive);
    // "fd00::10" < "fd00::5" as text, though 0x10 > 5.
    assert!(!cfg.peer(ip("fd00::10")).unwrap().passive);
    assert_eq!(
        cfg.peer(ip("fd00::1")).unwrap().source_address,
        Some(ip("fd00::5"))
    );

    // Off: no peers, no mesh.
    let cfg = parse(&format!(
        "{HEAD}[mesh]\nenabled = false\nnodes = [\"10.0.0.1\", \"10.0.0.2\"]\n"
    ));
    assert!(cfg.mesh.is_none() && cfg.peers.is_empty());
}

/// Every pair of a five-node mesh, seen from both ends: exactly one side connects, and it
/// is the one whose address is the greater string, as in Calico's rendered BIRD config.
#[test]
fn test_mesh_every_pair_has_one_active_side() {
    let nodes = [
        "10.0.0.2",
        "10.0.0.9",
        "10.0.0.10",
        "10.0.0.11",
        "10.0.0.30",
    ];
    let list = nodes.map(|n| format!("\"{n}\"")).join(", ");
    let cfgs: Vec<Config> = nodes
        .iter()
        .map(|me| {
            parse(&format!(
                "[speaker]\nasn = 64512\nrouter_id = \"{me}\"\n[mesh]\nnodes = [{list}]\n"
            ))
        })
        .collect();
    for (i, a) in nodes.iter().enumerate() {
        for (j, b) in nodes.iter().enumerate() {
            if i == j {
                continue;
            }
            let a_waits = cfgs[i].peer(ip(b)).unwrap().passive;
            let b_waits = cfgs[j].peer(ip(a)).unwrap().passive;
            assert_ne!(
                a_waits, b_waits,
                "{a} and {b}: exactly one side must connect"
            );
            assert_eq!(a_waits, b > a, "{a} waits for {b} iff {b} > {a} as strings");
        }
    }
    // "10.0.0.10" is the lowest string: it waits for everyone, "10.0.0.9" the greatest.
    assert!(cfgs[2].peers.values().all(|p| p.passive));
    assert!(cfgs[1].peers.values().all(|p| !p.passive));
}

#[test]
fn test_diff_by_peer_address() {
    let old = parse(&format!(
        r#"{HEAD}
[[policy]]
name = "p"
[[policy.rule]]
prefixes = ["10.0.0.0/8 le 24"]
action = "accept"

[[peer]]
address = "10.0.0.2"
asn = 1
[[peer]]
address = "10.0.0.3"
asn = 1
[[peer]]
address = "10.0.0.4"
asn = 1
import = "p"
[[peer]]
address = "10.0.0.5"
asn = 1
"#
    ));
    let new = parse(&format!(
        r#"{HEAD}
[[policy]]
name = "p"
[[policy.rule]]
prefixes = ["10.0.0.0/8 le 16"]
action = "accept"

[[peer]]
address = "10.0.0.6"
asn = 1
[[peer]]
address = "10.0.0.3"
asn = 1
hold_time = 30
[[peer]]
address = "10.0.0.4"
asn = 1
import = "p"
[[peer]]
address = "10.0.0.5"
asn = 1
"#
    ));
    let d = Config::diff(&old, &new);
    assert_eq!(d.added, vec![ip("10.0.0.6")]);
    assert_eq!(d.removed, vec![ip("10.0.0.2")]);
    // .4's policy kept its name but not its content.
    assert_eq!(d.changed, vec![ip("10.0.0.3"), ip("10.0.0.4")]);
    assert_eq!(d.unchanged, vec![ip("10.0.0.5")]);
    // .4 only changed in policy; .3's hold time goes into the OPEN.
    assert_eq!(d.policy_only, vec![ip("10.0.0.4")]);
    let (o, n) = (&old.peers[&ip("10.0.0.3")], &new.peers[&ip("10.0.0.3")]);
    assert_eq!(o.reset_key(n), Some("hold_time"));
    assert!(!d.is_empty());
    let same = Config::diff(&new, &new.clone());
    assert!(same.is_empty());
    assert_eq!(same.unchanged.len(), 4);
}

#[test]
fn test_policy_maps_onto_rib_policy() {
    let cfg = parse(&format!(
        r#"{HEAD}
[[policy]]
name = "p"
default_action = "accept"

[[policy.rule]]
prefixes = ["10.0.0.0/8", "10.0.0.0/8 ge 16 le 24", {{ prefix = "fd00::/8", le = 64 }}]
communities = ["65000:1", "no-export"]
large_communities = ["65000:1:2"]
as_path_longer_than = 5
action = "reject"

[[policy.rule]]
set_local_pref = 200
set_med = 7
set_next_hop = "10.0.0.9"
add_communities = ["65000:2"]
remove_communities = ["BLACKHOLE"]
add_large_communities = ["1:2:3"]
remove_large_communities = ["4:5:6"]
action = "continue"
"#
    ));
    let net = |s: &str| s.parse().unwrap();
    let expected = Policy::new(
        vec![
            Rule {
                when: Match {
                    prefixes: vec![
                        PrefixMatch::exact(net("10.0.0.0/8")),
                        PrefixMatch {
                            prefix: net("10.0.0.0/8"),
                            ge: Some(16),
                            le: Some(24),
                        },
                        PrefixMatch::orlonger(net("fd00::/8"), 64),
                    ],
                    communities: vec![Community::new(65000, 1), Community::NO_EXPORT],
                    large_communities: vec![LargeCommunity {
                        global: 65000,
                        local1: 1,
                        local2: 2,
                    }],
                    as_path_longer_than: Some(5),
                },
                then: vec![],
                verdict: Verdict::Reject,
            },
            Rule {
                when: Match::default(),
                then: vec![
                    Modify::SetLocalPref(200),
                    Modify::SetMed(7),
                    Modify::SetNextHop(ip("10.0.0.9")),
                    Modify::AddCommunity(Community::new(65000, 2)),
                    Modify::RemoveCommunity(Community::BLACKHOLE),
                    Modify::AddLargeCommunity(LargeCommunity {
                        global: 1,
                        local1: 2,
                        local2: 3,
                    }),
                    Modify::RemoveLargeCommunity(LargeCommunity {
                        global: 4,
                        local1: 5,
                        local2: 6,
                    }),
                ],
                verdict: Verdict::Continue,
            },
        ],
        true,
    )
    .unwrap();
    assert_eq!(*cfg.policies["p"], expected);
    // No default_action: reject.
    let cfg = parse(&format!("{HEAD}[[policy]]\nname = \"q\"\n"));
    assert_eq!(*cfg.policies["q"], Policy::reject_all());
}

#[test]
fn test_policy_rule_limit_and_inherited_pairs() {
    let mut text = format!("{HEAD}[[policy]]\nname = \"p\"\n");
    for _ in 0..65 {
        text.push_str("[[policy.rule]]\naction = \"continue\"\n");
    }
    // The 65th rule header is on line 6 + 2 * 64.
    assert_eq!(
        error(&text),
        "test.toml:134:1: policy[0].rule[64]: a policy holds at most 64 rules"
    );
    // A peer's next_hop_self replaces its group's next_hop_keep.
    let cfg = parse(&format!(
        "{HEAD}[[peer_group]]\nname = \"g\"\nasn = 1\nnext_hop_keep = true\n\
         [[peer]]\naddress = \"10.0.0.2\"\ngroup = \"g\"\n\
         [[peer]]\naddress = \"10.0.0.3\"\ngroup = \"g\"\nnext_hop_self = true\n"
    ));
    assert_eq!(
        cfg.peer(ip("10.0.0.2")).unwrap().next_hop,
        NextHopMode::Keep
    );
    assert_eq!(
        cfg.peer(ip("10.0.0.3")).unwrap().next_hop,
        NextHopMode::SelfExceptReflected
    );
}

/// Every kind of error, with its exact `file:line:col: key: message`.
#[test]
fn test_error_messages_are_located() {
    let cases: &[(&str, &str)] = &[
        // Syntax.
        (
            "[speaker\n",
            "test.toml:1:9: syntax: unclosed table, expected `]`",
        ),
        // Unknown key, at top level and nested.
        (
            "[speakr]\n",
            "test.toml:1:2: speakr: unknown key: did you mean `speaker`?",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer]]\naddress = \"10.0.0.2\"\n\
             add_path = { receive = true, sned = \"all\" }\n",
            "test.toml:6:30: peer[0].add_path.sned: unknown key: did you mean `send`?",
        ),
        // Missing key.
        (
            "[speaker]\nasn = 1\n",
            "test.toml:1:1: speaker.router_id: missing (required)",
        ),
        ("", "test.toml:1:1: speaker: missing (required)"),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer]]\naddress = \"10.0.0.2\"\n\
             asn = 1\n[[peer]]\nasn = 2\n",
            "test.toml:7:1: peer[1].address: missing (required)",
        ),
        // A key or a table twice.
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\nasn = 2\n",
            "test.toml:4:1: syntax: duplicate key: `asn` is set twice in this table",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[speaker]\nasn = 2\n",
            "test.toml:4:2: syntax: duplicate key: table `[speaker]` is defined twice",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[peer]\naddress = \"10.0.0.2\"\n\
             [peer]\naddress = \"10.0.0.3\"\n",
            "test.toml:6:2: syntax: duplicate key: table `[peer]` is defined twice (each entry \
             of a list of tables is written `[[peer]]`)",
        ),
        // Wrong type, bad value.
        (
            "[speaker]\nasn = 1\nrouter_id = 10.0.0.1\n",
            "test.toml:3:17: syntax: invalid float, expected nothing: an address is a string, \
             quote it: \"10.0.0.1\"",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\nlisten = [\"10.0.0.1:179\", fe80::1%eth0]\n",
            "test.toml:4:27: syntax: invalid boolean, expected `false`: an address is a \
             string, quote it: \"fe80::1%eth0\"",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[peer]\naddress = \"10.0.0.2\"\n",
            "test.toml:4:1: peer: `[peer]` is one table, but `peer` is a list of tables: \
             write each entry as `[[peer]]`",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\nlisten = \"10.0.0.1:179\"\n",
            "test.toml:4:10: speaker.listen: invalid type: string \"10.0.0.1:179\", expected \
             a list: [ ... ]",
        ),
        (
            "[speaker]\nasn = \"65000\"\nrouter_id = \"10.0.0.1\"\n",
            "test.toml:2:7: speaker.asn: invalid type: string \"65000\", expected an integer from 0 to 4294967295",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.x\"\n",
            "test.toml:3:13: speaker.router_id: \"10.0.0.x\" is not an IP address",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer]]\naddress = \"10.0.0.2\"\n\
             families = [\"ipv4-unicast\", \"ipv5\"]\n",
            "test.toml:6:29: peer[0].families[1]: unknown family \"ipv5\", expected \
             \"ipv4-unicast\" or \"ipv6-unicast\"",
        ),
        (
            "[speaker]\nasn = 0\nrouter_id = \"10.0.0.1\"\n",
            "test.toml:2:7: speaker.asn: AS 0 is reserved (RFC 7607)",
        ),
        // Hold time 1 or 2.
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer]]\naddress = \"10.0.0.2\"\n\
             asn = 1\nhold_time = 2\n",
            "test.toml:7:13: peer[0].hold_time: hold time 2 is not allowed: 0 (no \
             keepalives) or at least 3 seconds (RFC 4271 §4.2)",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\nhold_time = 1\n",
            "test.toml:4:13: speaker.hold_time: hold time 1 is not allowed: 0 (no \
             keepalives) or at least 3 seconds (RFC 4271 §4.2)",
        ),
        // Send hold time 0, in a peer, a group and `[speaker]`, and of the wrong type.
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer]]\naddress = \"10.0.0.2\"\n\
             asn = 1\nsend_hold_time = 0\n",
            "test.toml:7:18: peer[0].send_hold_time: send hold time 0 is not allowed: at \
             least 1 second; leave it out for the default, the larger of 480 s and twice the \
             hold time (RFC 9687)",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer_group]]\nname = \"g\"\n\
             send_hold_time = 0\n",
            "test.toml:6:18: peer_group[0].send_hold_time: send hold time 0 is not allowed: \
             at least 1 second; leave it out for the default, the larger of 480 s and twice \
             the hold time (RFC 9687)",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\nsend_hold_time = 0\n",
            "test.toml:4:18: speaker.send_hold_time: send hold time 0 is not allowed: at \
             least 1 second; leave it out for the default, the larger of 480 s and twice the \
             hold time (RFC 9687)",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\nsend_hold_time = 70000\n",
            "test.toml:4:18: speaker.send_hold_time: invalid value: integer `70000`, \
             expected an integer from 0 to 65535",
        ),
        // Router ID not IPv4.
        (
            "[speaker]\nasn = 1\nrouter_id = \"fd00::1\"\n",
            "test.toml:3:13: speaker.router_id: must be an IPv4 address (a BGP identifier \
             is 32 bits), not fd00::1",
        ),
        // Unknown group, unknown policy (in a peer, and in a group).
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer]]\naddress = \"10.0.0.2\"\n\
             group = \"rack-9\"\n",
            "test.toml:6:9: peer[0].group: unknown peer group \"rack-9\" (define it with \
             [[peer_group]] name = ...)",
        ),
        // A misspelt group or policy: the one meant.
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer_group]]\nname = \"nodes\"\n\
             asn = 1\n[[peer]]\naddress = \"10.0.0.2\"\ngroup = \"nodez\"\n",
            "test.toml:9:9: peer[0].group: unknown peer group \"nodez\": did you mean \"nodes\"?",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer]]\naddress = \"10.0.0.2\"\n\
             asn = 2\nexport = \"nnoe\"\n",
            "test.toml:7:10: peer[0].export: unknown policy \"nnoe\": did you mean \"none\"?",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer]]\naddress = \"10.0.0.2\"\n\
             asn = 2\nexport = \"pools\"\n",
            "test.toml:7:10: peer[0].export: unknown policy \"pools\" (\"all\", \"none\" or \
             the name of a [[policy]])",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer_group]]\nname = \"g\"\n\
             import = \"x\"\n",
            "test.toml:6:10: peer_group[0].import: unknown policy \"x\" (\"all\", \"none\" \
             or the name of a [[policy]])",
        ),
        // Duplicates.
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer]]\naddress = \"10.0.0.2\"\n\
             asn = 1\n[[peer]]\naddress = \"10.0.0.2\"\nasn = 2\n",
            "test.toml:8:11: peer[1].address: peer 10.0.0.2 is already defined at peer[0]",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer_group]]\nname = \"g\"\n\
             [[peer_group]]\nname = \"g\"\n",
            "test.toml:7:8: peer_group[1].name: peer group \"g\" is already defined at \
             peer_group[0]",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[policy]]\nname = \"p\"\n\
             [[policy]]\nname = \"p\"\n",
            "test.toml:7:8: policy[1].name: policy \"p\" is already defined",
        ),
        // A peer that is us.
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer]]\naddress = \"10.0.0.1\"\n\
             asn = 1\n",
            "test.toml:5:11: peer[0].address: 10.0.0.1 is this speaker's own address \
             (speaker.router_id or speaker.listen)",
        ),
        // Missing asn, inherited from nowhere: at the peer's header.
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer]]\naddress = \"10.0.0.2\"\n",
            "test.toml:4:1: peer[0].asn: missing (required): set asn in the peer or in its group",
        ),
        // rr_client on eBGP: at the more specific of the two keys, here the group's.
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer_group]]\nname = \"g\"\n\
             rr_client = true\n[[peer]]\naddress = \"10.0.0.2\"\ngroup = \"g\"\nasn = 2\n",
            "test.toml:10:7: peer[0].asn: rr_client needs an internal peer, but asn 2 is \
             not speaker.asn 1",
        ),
        // client_to_client on a peer that is no client: at the key.
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer]]\naddress = \"10.0.0.2\"\n\
             asn = 1\nclient_to_client = false\n",
            "test.toml:7:20: peer[0].client_to_client: client_to_client applies to \
             route-reflector clients: set rr_client = true",
        ),
        // An inherited keepalive that the peer's hold time cannot carry.
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\nkeepalive_time = 30\n[[peer]]\n\
             address = \"10.0.0.2\"\nasn = 1\nhold_time = 20\n",
            "test.toml:8:13: peer[0].hold_time: keepalive_time 30 must be less than the \
             hold time 20",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer]]\naddress = \"10.0.0.2\"\n\
             asn = 2\nmultihop = 2\nttl_security = true\n",
            "test.toml:8:16: peer[0].ttl_security: cannot be combined with multihop: GTSM \
             always sends with TTL 255 (ttl_security = N allows N hops)",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer]]\naddress = \"10.0.0.2\"\n\
             asn = 1\nsource_address = \"fd00::1\"\n",
            "test.toml:7:18: peer[0].source_address: fd00::1 is not of the address family \
             of the peer 10.0.0.2",
        ),
        // Dynamic neighbours and mesh.
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer_group]]\nname = \"g\"\n\
             [[dynamic_neighbors]]\nprefix = \"10.0.0.0/8\"\ngroup = \"g\"\n",
            "test.toml:8:9: dynamic_neighbors[0].group: peer group \"g\" sets no asn, which \
             dynamic neighbours take from their group",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[dynamic_neighbors]]\n\
             prefix = \"10.0.0.1/8\"\ngroup = \"g\"\n",
            "test.toml:5:10: dynamic_neighbors[0].prefix: \"10.0.0.1/8\" has host bits set: \
             did you mean \"10.0.0.0/8\"?",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[mesh]\n\
             nodes = [\"10.0.0.5\", \"10.0.0.6\"]\n",
            "test.toml:5:10: mesh.nodes[0]: no IPv4 mesh node is this speaker (none is \
             speaker.router_id or a speaker.listen address): set mesh.local_address",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[mesh]\n\
             nodes = [\"10.0.0.1\", \"10.0.0.2\", \"10.0.0.1\"]\n",
            "test.toml:5:34: mesh.nodes[2]: 10.0.0.1 is already listed at mesh.nodes[0]",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[peer]]\naddress = \"10.0.0.2\"\n\
             asn = 1\n[mesh]\nnodes = [\"10.0.0.1\", \"10.0.0.2\"]\n",
            "test.toml:5:11: peer[0].address: 10.0.0.2 is also mesh.nodes[1]: a mesh node is \
             not a [[peer]]",
        ),
        // Policies.
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[policy]]\nname = \"p\"\n\
             [[policy.rule]]\ncommunities = [\"1:1\", \"65536:1\"]\naction = \"accept\"\n",
            "test.toml:7:23: policy[0].rule[0].communities[1]: \"65536:1\" is not a \
             community: \"ASN:VALUE\" (0-65535 each) or a well-known name",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[policy]]\nname = \"p\"\n\
             [[policy.rule]]\nprefixes = [\"10.0.0.0/8 le 40\"]\naction = \"accept\"\n",
            "test.toml:7:13: policy[0].rule[0].prefixes[0]: le 40 is outside 8..=32 for \
             10.0.0.0/8",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[policy]]\nname = \"p\"\n\
             [[policy.rule]]\nset_med = 5\naction = \"reject\"\n",
            "test.toml:8:10: policy[0].rule[0].action: a rule that rejects changes nothing: \
             drop its set_/add_/remove_ keys, or accept or continue",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[policy]]\nname = \"none\"\n",
            "test.toml:5:8: policy[0].name: \"none\" is built in and cannot be redefined",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[policy]]\nname = \"p\"\n\
             [[policy.rule]]\n",
            "test.toml:6:1: policy[0].rule[0].action: missing (required)",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[bmp]]\naddress = \"127.0.0.1\"\n\
             port = 11019\nroute_monitoring = \"pre\"\n",
            "test.toml:7:20: bmp[0].route_monitoring: unknown variant `pre`, expected one of \
             `pre-policy`, `post-policy`, `both`",
        ),
        (
            "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[bmp]]\naddress = \"127.0.0.1\"\n\
             port = 11019\n[[bmp]]\naddress = \"127.0.0.1\"\nport = 11019\n",
            "test.toml:9:8: bmp[1].port: the collector 127.0.0.1:11019 is already configured",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(&error(text), want, "for:\n{text}");
    }
}

#[test]
fn test_error_kinds() {
    let kind = |t: &str| Config::parse(t, "f").unwrap_err().kind;
    assert_eq!(kind("[x"), ErrorKind::Syntax);
    assert_eq!(kind("[speaker]\n"), ErrorKind::Schema);
    assert_eq!(
        kind("[speaker]\nasn = 1\nrouter_id = \"::1\"\n"),
        ErrorKind::Invalid
    );
    let e = Config::load("/nonexistent/rr.toml").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Io);
    assert!(
        e.to_string()
            .starts_with("/nonexistent/rr.toml: cannot read: ")
    );
    let e = Config::parse("[speaker]\nasn = 1\nrouter_id = \"::1\"\n", "f").unwrap_err();
    assert_eq!(
        (e.line, e.column, e.key.as_str()),
        (3, 13, "speaker.router_id")
    );
}

#[test]
fn test_check_command() {
    let bin = env!("CARGO_BIN_EXE_rr-daemon");
    for name in [
        "route-reflector.toml",
        "mesh-node.toml",
        "rack-reflector.toml",
    ] {
        let path = example(name);
        let out = Command::new(bin)
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {:?}", out);
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        assert!(
            stdout.starts_with(&format!("{}: ok: AS ", path.display())),
            "{stdout}"
        );
    }
    let dir = std::env::temp_dir().join(format!("rr-daemon-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[speaker]\nasn = 1\nrouter_id = \"10.0.0.1\"\nhold_time = 2\n",
    )
    .unwrap();
    let out = Command::new(bin)
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "rr-daemon: {}:4:13: speaker.hold_time: hold time 2 is not allowed: 0 (no \
             keepalives) or at least 3 seconds (RFC 4271 §4.2)\n",
            bad.display()
        )
    );
}

#[test]
fn test_originated_routes() {
    let text = r#"
[speaker]
asn = 65000
router_id = "192.0.2.1"

[[route]]
prefix = "198.51.100.7/24"
next_hop = "192.0.2.9"
med = 5
communities = ["65000:2", "NO_EXPORT", "65000:2"]
large_communities = ["65000:1:2"]

[[route]]
prefix = "2001:db8:1::/48"
"#;
    let c = Config::parse(text, Path::new("r.toml")).expect("valid");
    assert_eq!(c.routes.len(), 2);
    let r = &c.routes[0];
    assert_eq!(r.prefix.to_string(), "198.51.100.0/24");
    assert_eq!(r.attrs.med, Some(5));
    assert_eq!(
        r.attrs.communities,
        [Community::new(65000, 2), Community::NO_EXPORT],
        "sorted, deduplicated"
    );
    assert_eq!(c.routes[1].attrs.next_hop, None);

    let bad = text.replace("next_hop = \"192.0.2.9\"", "next_hop = \"2001:db8::1\"");
    let e = Config::parse(&bad, Path::new("r.toml"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "r.toml:8:12: route[0].next_hop: 2001:db8::1 is not of the family of 198.51.100.0/24"
    );
    let dup = format!("{text}\n[[route]]\nprefix = \"198.51.100.0/24\"\n");
    let e = Config::parse(&dup, Path::new("r.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("route[2].prefix: 198.51.100.0/24 is already originated by route[0]"),
        "{e}"
    );
}

#[test]
fn test_fib_section_presence_turns_programming_on() {
    let base = "[speaker]\nasn = 65000\nrouter_id = \"192.0.2.1\"\n";
    let c = parse(base);
    assert!(!c.fib.enabled, "no [fib]: off");
    assert!(!c.rib_config().track_best_changes);
    // The fixed contract: `table = 254` alone turns it on.
    let c = parse(&format!("{base}[fib]\ntable = 254\n"));
    assert!(c.fib.enabled);
    assert!(c.rib_config().track_best_changes);
    assert_eq!((c.fib.table, c.fib.protocol, c.fib.metric), (254, 12, 1024));
    let c = parse(&format!("{base}[fib]\n"));
    assert!(c.fib.enabled, "an empty [fib] is on too");
    let c = parse(&format!(
        "{base}[fib]\nenabled = true\ntable = 100\nprotocol = 186\nmetric = 7\n"
    ));
    assert!(c.fib.enabled);
    assert_eq!((c.fib.table, c.fib.protocol, c.fib.metric), (100, 186, 7));
    let c = parse(&format!("{base}[fib]\nenabled = false\ntable = 254\n"));
    assert!(!c.fib.enabled, "`enabled = false` keeps it off");
    assert_eq!(
        error(&format!("{base}[fib]\nprotocol = 0\n"))
            .split(": ")
            .nth(1),
        Some("fib.protocol")
    );
    assert_eq!(
        error(&format!("{base}[fib]\ntabel = 254\n")),
        "test.toml:5:1: fib.tabel: unknown key: did you mean `table`?"
    );
}

#[test]
fn test_originate_blocks() {
    let text = r#"
[speaker]
asn = 64512
router_id = "10.0.0.1"

[[route]]
prefix = "198.51.100.0/24"

[[originate]]
prefix = "192.168.0.0/26"
blackhole = true

[[originate]]
prefix = "fd00:1:2:3::/122"

[[originate]]
prefix = "192.168.1.5/26"
blackhole = false
"#;
    let c = parse(text);
    let prefixes: Vec<String> = c.routes.iter().map(|r| r.prefix.to_string()).collect();
    assert_eq!(
        prefixes,
        [
            "198.51.100.0/24",
            "192.168.0.0/26",
            "fd00:1:2:3::/122",
            "192.168.1.0/26"
        ],
        "announced like [[route]]s, after them"
    );
    assert_eq!(c.routes[1].attrs, rib::Attrs::default());
    let blackholes: Vec<String> = c.blackholes().iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(
        blackholes,
        ["192.168.0.0/26", "fd00:1:2:3::/122"],
        "blackhole defaults to true"
    );
    assert_eq!(c.originate.len(), 3);
    assert!(!c.originate[2].blackhole);

    let dup = format!("{text}\n[[originate]]\nprefix = \"192.168.0.0/26\"\n");
    assert_eq!(
        error(&dup),
        "test.toml:21:10: originate[3].prefix: 192.168.0.0/26 is already originated by \
         originate[0]"
    );
    let dup = format!("{text}\n[[originate]]\nprefix = \"198.51.100.0/24\"\n");
    assert_eq!(
        error(&dup),
        "test.toml:21:10: originate[3].prefix: 198.51.100.0/24 is already originated by \
         route[0]"
    );
    let bad = format!("{text}\n[[originate]]\nprefix = \"10.0.0.0/8\"\nblackhole = 1\n");
    assert!(
        error(&bad).starts_with("test.toml:22:13: originate[3].blackhole: "),
        "{}",
        error(&bad)
    );
    let bad = format!("{text}\n[[originate]]\nprefix = \"10.0.0.0/8\"\nnext_hop = \"1.2.3.4\"\n");
    assert!(
        error(&bad).starts_with("test.toml:22:1: originate[3].next_hop: unknown key"),
        "{}",
        error(&bad)
    );
}

#[test]
fn test_fib_pools_metric_rule_and_block_metric() {
    use rr_daemon::config::{IpPool, IpipMode};
    let base = "[speaker]\nasn = 65000\nrouter_id = \"192.0.2.1\"\n";
    let c = parse(&format!("{base}[fib]\n"));
    assert!(
        c.fib.metric_from_local_pref,
        "Calico 3.32's rule is on by default"
    );
    assert_eq!(c.fib.tunnel_device, "tunl0");
    assert!(c.fib.ip_pools.is_empty() && c.fib.node_subnet.is_none());
    let c = parse(&format!(
        "{base}[fib]\nnode_subnet = \"192.0.2.7/24\"\ntunnel_device = \"tun9\"\n\
         [[fib.ip_pool]]\nprefix = \"192.168.0.0/16\"\nipip = \"cross-subnet\"\n\
         [[fib.ip_pool]]\nprefix = \"10.244.0.0/16\"\nipip = \"always\"\ninstall = false\n\
         [[fib.ip_pool]]\nprefix = \"fd00::/48\"\n\
         [[originate]]\nprefix = \"192.168.0.0/26\"\n\
         [[originate]]\nprefix = \"192.168.0.64/26\"\nmetric = 200\n"
    ));
    assert_eq!(c.fib.node_subnet, Some("192.0.2.0/24".parse().unwrap()));
    assert_eq!(c.fib.tunnel_device, "tun9");
    assert_eq!(
        c.fib.ip_pools,
        vec![
            IpPool {
                prefix: "192.168.0.0/16".parse().unwrap(),
                ipip: IpipMode::CrossSubnet,
                install: true
            },
            IpPool {
                prefix: "10.244.0.0/16".parse().unwrap(),
                ipip: IpipMode::Always,
                install: false
            },
            IpPool {
                prefix: "fd00::/48".parse().unwrap(),
                ipip: IpipMode::Never,
                install: true
            },
        ]
    );
    // Blocks: announced with LOCAL_PREF = 2147483647 - metric, installed with the metric.
    let lp: Vec<Option<u32>> = c.routes.iter().map(|r| r.attrs.local_pref).collect();
    assert_eq!(lp, [Some(2_147_482_623), Some(2_147_483_447)]);
    assert_eq!(
        c.blackholes(),
        vec![
            ("192.168.0.0/26".parse().unwrap(), 1024),
            ("192.168.0.64/26".parse().unwrap(), 200)
        ]
    );
    // BIRD 1.6's kernel metrics: blocks installed with metric 0, still announced with
    // LOCAL_PREF 2147483647 - 1024; learned routes metric 0 whatever their LOCAL_PREF.
    let c = parse(&format!(
        "{base}[fib]\nbird16_metric = true\n[[originate]]\nprefix = \"192.168.0.0/26\"\n"
    ));
    assert!(c.fib.bird16_metric);
    assert_eq!(c.routes[0].attrs.local_pref, Some(2_147_482_623));
    assert_eq!(c.blackholes(), vec![("192.168.0.0/26".parse().unwrap(), 0)]);
    let rules = rr_daemon::fib::reconcile::Rules::from_config(&c.fib);
    assert_eq!((rules.metric, rules.metric_from_local_pref), (0, false));
    // The rule off: blocks keep the default LOCAL_PREF.
    let c = parse(&format!(
        "{base}[fib]\nmetric_from_local_pref = false\n[[originate]]\nprefix = \"192.168.0.0/26\"\n"
    ));
    assert_eq!(c.routes[0].attrs.local_pref, None);
    // Without [fib], only a block's own metric sets LOCAL_PREF.
    let c = parse(&format!(
        "{base}[[originate]]\nprefix = \"192.168.0.0/26\"\n\
         [[originate]]\nprefix = \"192.168.0.64/26\"\nmetric = 1024\n"
    ));
    let lp: Vec<Option<u32>> = c.routes.iter().map(|r| r.attrs.local_pref).collect();
    assert_eq!(lp, [None, Some(2_147_482_623)]);
    // Errors.
    assert_eq!(
        error(&format!(
            "{base}[fib]\n[[fib.ip_pool]]\nprefix = \"192.168.0.0/16\"\nipip = \"cross-subnet\"\n"
        )),
        "test.toml:7:8: fib.ip_pool[0].ipip: \"cross-subnet\" needs [fib] node_subnet (the node's own subnet)"
    );
    assert_eq!(
        error(&format!(
            "{base}[fib]\n[[fib.ip_pool]]\nprefix = \"fd00::/48\"\nipip = \"always\"\n"
        ))
        .split(": ")
        .nth(1),
        Some("fib.ip_pool[0].ipip")
    );
    assert_eq!(
        error(&format!(
            "{base}[fib]\n[[fib.ip_pool]]\nprefix = \"10.0.0.0/8\"\n[[fib.ip_pool]]\nprefix = \"10.1.0.0/8\"\n"
        ))
        .split(": ")
        .nth(1),
        Some("fib.ip_pool[1].prefix")
    );
    assert!(
        error(&format!(
            "{base}[fib]\n[[fib.ip_pool]]\nprefix = \"10.0.0.0/8\"\nipip = \"sometimes\"\n"
        ))
        .contains("fib.ip_pool[0].ipip")
    );
}

/// `[[fib.static_route]]`: prefix (host bits cleared), gateway, own metric or `[fib]`'s
/// (0 with `bird16_metric`); the errors name their key.
#[test]
fn test_fib_static_routes() {
    let c = parse(&format!(
        "{HEAD}[fib]\nmetric = 512\n\
         [[fib.static_route]]\nprefix = \"10.225.0.4/32\"\nvia = \"10.224.0.1\"\n\
         [[fib.static_route]]\nprefix = \"fd00:225::1/64\"\nvia = \"fd00:224::1\"\nmetric = 7\n"
    ));
    let want: Vec<(ipnet::IpNet, IpAddr, u32)> = vec![
        (
            "10.225.0.4/32".parse().unwrap(),
            "10.224.0.1".parse().unwrap(),
            512,
        ),
        (
            "fd00:225::/64".parse().unwrap(),
            "fd00:224::1".parse().unwrap(),
            7,
        ),
    ];
    assert_eq!(c.fib.statics(), want);
    let c = parse(&format!(
        "{HEAD}[fib]\nbird16_metric = true\n\
         [[fib.static_route]]\nprefix = \"10.225.0.4/32\"\nvia = \"10.224.0.1\"\n"
    ));
    assert_eq!(
        c.fib.statics()[0].2,
        0,
        "BIRD 1.6's static routes carry no metric"
    );
    let key = |text: &str| {
        error(&format!("{HEAD}[fib]\n{text}"))
            .split(": ")
            .nth(1)
            .map(str::to_owned)
    };
    assert_eq!(
        key("[[fib.static_route]]\nprefix = \"10.225.0.4/32\"\nvia = \"fd00::1\"\n").as_deref(),
        Some("fib.static_route[0].via")
    );
    assert_eq!(
        key("[[fib.static_route]]\nprefix = \"10.225.0.4/32\"\nvia = \"0.0.0.0\"\n").as_deref(),
        Some("fib.static_route[0].via")
    );
    assert_eq!(
        key(
            "[[fib.static_route]]\nprefix = \"10.225.0.4/32\"\nvia = \"10.0.0.1\"\n\
             [[fib.static_route]]\nprefix = \"10.225.0.4/32\"\nvia = \"10.0.0.2\"\n"
        )
        .as_deref(),
        Some("fib.static_route[1].prefix")
    );
    assert!(
        error(&format!(
            "{HEAD}[fib]\n[[fib.static_route]]\nprefix = \"10.225.0.4/32\"\n"
        ))
        .contains("via")
    );
    let e = error(&format!(
        "{HEAD}[[originate]]\nprefix = \"192.168.0.0/26\"\n[fib]\n\
         [[fib.static_route]]\nprefix = \"192.168.0.0/26\"\nvia = \"10.0.0.1\"\n"
    ));
    assert!(
        e.contains("fib.static_route[0].prefix") && e.contains("originate[0]"),
        "{e}"
    );
}

/// Failure-semantics keys (issue 12): `stale_time`, `max_prefix` `restart`,
/// `long_lived_stale_time`, `[speaker] graceful_stop`: defaults, inheritance, errors.
#[test]
fn test_graceful_restart_and_max_prefix_keys() {
    let head = "[speaker]\nasn = 65000\nrouter_id = \"10.0.0.1\"\n";
    let cfg = parse(&format!(
        "{head}stale_time = 100\n\
         [[peer_group]]\nname = \"g\"\nasn = 65000\nlong_lived_stale_time = 3600\n\
         max_prefix = {{ limit = 10, restart = 30 }}\n\
         [[peer]]\naddress = \"10.0.0.2\"\ngroup = \"g\"\nstale_time = 50\n\
         [[peer]]\naddress = \"10.0.0.3\"\nasn = 65000\nmax_prefix = 5\n"
    ));
    assert!(cfg.speaker.graceful_stop);
    assert_eq!(cfg.speaker.stale_time, 100);
    let a = cfg.peer(ip("10.0.0.2")).unwrap();
    assert_eq!(a.stale_time, 50);
    assert_eq!(a.long_lived_stale_time, Some(3600));
    assert_eq!(
        a.max_prefix,
        Some(MaxPrefix {
            limit: 10,
            warn_only: false
        })
    );
    assert_eq!(a.max_prefix_restart, 30);
    let b = cfg.peer(ip("10.0.0.3")).unwrap();
    assert_eq!((b.stale_time, b.long_lived_stale_time), (100, None));
    assert_eq!(b.max_prefix_restart, 60, "the default hold-down");
    // The stale time and the hold-down are ours alone; LLGR goes into the OPEN.
    assert_eq!(
        a.reset_key(&PeerSettings {
            stale_time: 1,
            max_prefix_restart: 1,
            ..a.clone()
        }),
        None
    );
    assert_eq!(
        a.reset_key(&PeerSettings {
            long_lived_stale_time: None,
            ..a.clone()
        }),
        Some("long_lived_stale_time")
    );
    let cfg = parse(&format!("{head}graceful_stop = false\n"));
    assert!(!cfg.speaker.graceful_stop);
    for (text, want) in [
        (
            "[[peer]]\naddress = \"10.0.0.2\"\nasn = 1\nstale_time = 0\n",
            "test.toml:7:14: peer[0].stale_time: invalid value: integer `0`, expected a nonzero u16",
        ),
        (
            "[[peer]]\naddress = \"10.0.0.2\"\nasn = 1\n\
             max_prefix = { limit = 5, warn_only = true, restart = 9 }\n",
            "test.toml:7:14: peer[0].max_prefix: restart has no meaning with warn_only = true: \
             the session stays up",
        ),
        (
            "[[peer]]\naddress = \"10.0.0.2\"\nasn = 1\nlong_lived_stale_time = 16777216\n",
            "test.toml:7:25: peer[0].long_lived_stale_time: invalid value: integer `16777216`, \
             expected false or a long-lived stale time from 1 to 16777215 seconds",
        ),
    ] {
        assert_eq!(error(&format!("{head}{text}")), want);
    }
}

/// `address = "fe80::2%eth0"`: a link-local peer names its interface; nothing else takes
/// one. A `[[dynamic_neighbors]]` range may name an interface instead of a prefix.
#[test]
fn link_local_peers_name_their_interface() {
    let cfg = parse(&format!(
        "{HEAD}[[peer]]\naddress = \"fe80::2%eth0\"\nasn = 65001\n\
         [[peer_group]]\nname = \"g\"\nasn = 65002\n\
         [[dynamic_neighbors]]\ninterface = \"eth1\"\ngroup = \"g\"\n"
    ));
    let p = cfg.peer(ip("fe80::2")).unwrap();
    assert_eq!(p.interface.as_deref(), Some("eth0"));
    assert_eq!(
        p.session_spec(&cfg.speaker).interface.as_deref(),
        Some("eth0")
    );
    let d = &cfg.dynamic_neighbors[0];
    assert_eq!(d.prefix.to_string(), "fe80::/10");
    assert_eq!(d.interface.as_deref(), Some("eth1"));
    assert!(cfg.dynamic_range(ip("fe80::9")).is_none(), "only on eth1");
    let on = cfg.dynamic_range_on(ip("fe80::9"), Some("eth1")).unwrap();
    assert_eq!(on.peer(ip("fe80::9")).interface.as_deref(), Some("eth1"));
    assert!(cfg.dynamic_range_on(ip("fe80::9"), Some("eth2")).is_none());

    let e = error(&format!("{HEAD}[[peer]]\naddress = \"fe80::2\"\nasn = 1\n"));
    assert!(
        e.contains("peer[0].address") && e.contains("name its interface"),
        "{e}"
    );
    let e = error(&format!(
        "{HEAD}[[peer]]\naddress = \"10.0.0.2%eth0\"\nasn = 1\n"
    ));
    assert!(e.contains("only a link-local"), "{e}");
    let e = error(&format!(
        "{HEAD}[[peer]]\naddress = \"fe80::2%a/b\"\nasn = 1\n"
    ));
    assert!(e.contains("not an interface name"), "{e}");
    let e = error(&format!(
        "{HEAD}[[peer_group]]\nname = \"g\"\nasn = 2\n[[dynamic_neighbors]]\ngroup = \"g\"\n"
    ));
    assert!(
        e.contains("dynamic_neighbors[0]") && e.contains("missing prefix"),
        "{e}"
    );
}

/// Every schema mistake of a file at once, in file order, each at its line and key; a
/// misspelt key gets the name it is closest to.
#[test]
fn test_every_error_at_once_in_file_order() {
    let text = r#"[speaker]
asn = 65000
router_id = "10.0.0.1"
hold_tme = 30
keepalive_time = "often"

[[peer]]
address = "10.0.0.2"
asn = "x"

[[peer]]
asn = 65001

[[peer]]
address = "10.0.0.4"
asn = 65001
rr_clinet = true

[[route]]
prefix = "10.0.0.0/33"
"#;
    let errors = Config::parse_all(text, "rr.toml", &Default::default()).unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    let expect = [
        "rr.toml:4:1: speaker.hold_tme: unknown key: did you mean `hold_time`?",
        "rr.toml:5:18: speaker.keepalive_time: ",
        "rr.toml:9:7: peer[0].asn: ",
        "rr.toml:11:1: peer[1].address: missing (required)",
        "rr.toml:17:1: peer[2].rr_clinet: unknown key: did you mean `rr_client`?",
        "rr.toml:20:10: route[0].prefix: \"10.0.0.0/33\": prefix length 33 is longer than 32",
    ];
    assert_eq!(lines.len(), expect.len(), "{lines:#?}");
    for (got, want) in lines.iter().zip(expect) {
        assert!(got.starts_with(want), "{got}\n  wanted {want}");
    }
    // The first error alone, as before.
    let first = Config::parse(text, "rr.toml").unwrap_err();
    assert_eq!(first.to_string(), lines[0]);
    // A key far from every known one gets the list instead.
    let e = error("[speaker]\nasn = 65000\nrouter_id = \"10.0.0.1\"\nzzzzzz = 1\n");
    assert!(e.contains("unknown key, expected one of"), "{e}");
}

/// A `[speaker]` without `asn` is reported with the other mistakes, in file order (at
/// the end of its table, as every missing key), not after they are fixed; set from the
/// environment (`RR_ASN`), it is not missing.
#[test]
fn test_missing_speaker_asn_listed_with_the_other_errors() {
    let text = "[speaker]\nrouter_id = \"10.0.0.1\"\nhold_tme = 30\n\n\
                [[peer]]\naddress = \"10.0.0.2\"\nasn = 65001\nrr_clinet = true\n";
    let lines = |overrides: &rr_daemon::config::Overrides| -> Vec<String> {
        Config::parse_all(text, "rr.toml", overrides)
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(
        lines(&Default::default()),
        [
            "rr.toml:3:1: speaker.hold_tme: unknown key: did you mean `hold_time`?",
            "rr.toml:1:1: speaker.asn: missing (required)",
            "rr.toml:8:1: peer[0].rr_clinet: unknown key: did you mean `rr_client`?",
        ]
    );
    let asn =
        rr_daemon::config::Overrides::from_lookup(|n| (n == "RR_ASN").then(|| "65000".to_owned()));
    assert_eq!(
        lines(&asn),
        [
            "rr.toml:3:1: speaker.hold_tme: unknown key: did you mean `hold_time`?",
            "rr.toml:8:1: peer[0].rr_clinet: unknown key: did you mean `rr_client`?",
        ]
    );
    // Both required keys missing, nothing else wrong: both listed.
    let e =
        Config::parse_all("[speaker]\nlisten = []\n", "rr.toml", &Default::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "rr.toml:1:1: speaker.asn: missing (required)\n\
         rr.toml:1:1: speaker.router_id: missing (required)"
    );
}

/// `check`'s line counts the routes the file originates and its pools.
#[test]
fn test_check_counts_routes_and_pools() {
    let dir = std::env::temp_dir().join(format!("rr-daemon-check-count-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("node.toml");
    std::fs::write(
        &path,
        format!(
            "{HEAD}listen = []\n[[route]]\nprefix = \"198.51.100.0/24\"\n\
             [[originate]]\nprefix = \"10.244.1.0/26\"\n[[originate]]\nprefix = \"10.244.1.64/26\"\n\
             [fib]\n[[fib.ip_pool]]\nprefix = \"10.244.0.0/16\"\n\
             [learn]\npools = [\"10.244.0.0/16\", \"10.245.0.0/16\"]\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rr-daemon"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "{}: ok: AS 65000, router id 10.0.0.1; 0 peer(s) (0 iBGP, 0 eBGP, 0 rr clients); \
             0 dynamic ranges; 0 policies; 3 routes (1 [[route]], 2 [[originate]]); \
             3 pools (1 [[fib.ip_pool]], 2 [learn]); listening on nothing\n",
            path.display()
        )
    );
}

/// An invalid prefix says what is wrong with it.
#[test]
fn test_prefix_errors_say_what_is_wrong() {
    let head = "[speaker]\nasn = 65000\nrouter_id = \"10.0.0.1\"\n";
    for (prefix, says) in [
        ("10.0.0.0/33", "prefix length 33 is longer than 32"),
        ("2001:db8::/129", "prefix length 129 is longer than 128"),
        ("10.0.0.300/24", "\"10.0.0.300\" is not an IP address"),
        ("10.0.0.0", "no /LENGTH"),
    ] {
        let e = error(&format!("{head}[[route]]\nprefix = \"{prefix}\"\n"));
        assert!(e.contains(says), "{prefix}: {e}");
        let e = error(&format!("{head}[learn]\npools = [\"{prefix}\"]\n"));
        assert!(e.contains(says), "{prefix}: {e}");
    }
}

/// `include`: the tables of other files join the file's; errors name the file they are
/// in and its own line; cycles, files included twice, missing files and bare keys in an
/// included file are errors at their place.
#[test]
fn test_include() {
    let dir = std::env::temp_dir().join(format!("rr-include-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("peers")).unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    write(
        "main.toml",
        "include = [\"peers/a.toml\", \"b.toml\"]\n[speaker]\nasn = 65000\nrouter_id = \"10.0.0.1\"\n",
    );
    // Relative to the including file: peers/a.toml includes peers/c.toml.
    write(
        "peers/a.toml",
        "include = [\"c.toml\"]\n[[peer]]\naddress = \"10.0.0.2\"\nasn = 65001\n",
    );
    write(
        "peers/c.toml",
        "[[peer]]\naddress = \"10.0.0.3\"\nasn = 65001\n",
    );
    write(
        "b.toml",
        "# peers of b\n[[peer]]\naddress = \"10.0.0.4\"\nasn = 65001\n",
    );
    let c = Config::load(dir.join("main.toml")).unwrap_or_else(|e| panic!("{e}"));
    let addrs: Vec<String> = c.peers.keys().map(ToString::to_string).collect();
    assert_eq!(addrs, ["10.0.0.2", "10.0.0.3", "10.0.0.4"]);

    // A mistake in an included file: its name and its own line.
    write(
        "b.toml",
        "# peers of b\n[[peer]]\naddress = \"10.0.0.4\"\nasn = \"x\"\nhold_tme = 3\n",
    );
    let e = Config::load_all(dir.join("main.toml"), &Default::default()).unwrap_err();
    let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
    let b = dir.join("b.toml").display().to_string();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with(&format!("{b}:4:7: peer[2].asn: ")),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{b}:5:1: peer[2].hold_tme: unknown key: did you mean `hold_time`?"
        )),
        "{lines:#?}"
    );

    // A cycle, a missing file, a bare key.
    write("b.toml", "[[peer]]\naddress = \"10.0.0.4\"\nasn = 65001\n");
    write("peers/c.toml", "include = [\"a.toml\", \"gone.toml\"]\n");
    let e = Config::load_all(dir.join("main.toml"), &Default::default()).unwrap_err();
    let text = e.to_string();
    let c_file = dir.join("peers/c.toml").display().to_string();
    assert!(
        text.contains(&format!("{c_file}:1:12: include[0]: include cycle: ")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{c_file}:1:22: include[1]: cannot read ")),
        "{text}"
    );
    write("peers/c.toml", "hold_time = 3\n");
    let e = Config::load(dir.join("main.toml")).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{c_file}:1:1: hold_time: an included file holds tables only"
        )),
        "{e}"
    );
    // Included twice.
    write("peers/c.toml", "include = [\"../b.toml\"]\n");
    let e = Config::load(dir.join("main.toml")).unwrap_err().to_string();
    assert!(e.contains("is already included"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
