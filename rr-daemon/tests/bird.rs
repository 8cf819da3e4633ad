//! Calico's rendered BIRD files (`tests/data/bird/*`: a mesh node, a node with global
//! peers, a route reflector with a cluster ID, IP-in-IP always and cross-subnet, VXLAN,
//! communities, IPv6) translated into the native model, the important fields asserted;
//! broken files refused with file, line and column, by `rr-daemon check --bird` and by the
//! binary started as `bird -p -c FILE`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use bgp_wire::attr::Community;
use bgp_wire::{Family, FamilySet};
use ipnet::IpNet;
use rib::{AddPathMode, Attrs, NextHopMode};
use rr_daemon::bird::{Dialect, ProtoKind, Translation, load, translate_str};
use rr_daemon::config::{AddPath, Config, IpipMode, PeerSettings, Ttl};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/bird")
        .join(rel)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn translate(rel: &str, dialect: Dialect) -> Translation {
    load(data(rel), dialect).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn peer<'a>(c: &'a Config, a: &str) -> &'a PeerSettings {
    c.peers
        .get(&ip(a))
        .unwrap_or_else(|| panic!("no peer {a}: {:?}", c.peers.keys()))
}

/// Whether `p`'s export (or import) policy lets `prefix` through, with default attributes.
fn passes(policy: &rib::Policy, prefix: &str) -> bool {
    policy
        .evaluate(&net(prefix), &Attrs::default(), 0)
        .is_some()
}

fn names(t: &Translation) -> Vec<(&str, ProtoKind)> {
    t.protocols
        .iter()
        .map(|p| (p.name.as_str(), p.kind))
        .collect()
}

#[test]
fn mesh_node() {
    let t = translate("mesh-node1/bird.cfg", Dialect::Bird);
    let c = &t.config;
    assert_eq!(c.speaker.asn, 64512);
    assert_eq!(
        c.speaker.router_id,
        "172.17.42.31".parse::<Ipv4Addr>().unwrap()
    );
    assert_eq!(
        c.speaker.listen,
        vec!["0.0.0.0:179".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(c.speaker.hold_time, 240, "BIRD's default hold time");
    assert_eq!(c.speaker.cluster_id, None);
    assert!(!c.api.enabled);
    // Names as BIRD lists them: unnamed protocols numbered per kind.
    assert_eq!(
        names(&t),
        vec![
            // bird_aggr.cfg is included first.
            ("static1", ProtoKind::Static),
            ("kernel1", ProtoKind::Kernel),
            ("device1", ProtoKind::Device),
            ("direct1", ProtoKind::Direct),
            ("Mesh_172_17_42_32", ProtoKind::Bgp),
        ]
    );
    let proto = t.protocol("Mesh_172_17_42_32").unwrap();
    assert_eq!(proto.peer, Some(ip("172.17.42.32")));
    assert_eq!(proto.description.as_deref(), Some("Connection to BGP peer"));
    assert_eq!(proto.template.as_deref(), Some("bgp_template"));
    assert_eq!(
        t.protocol_of_peer(ip("172.17.42.32")).unwrap().name,
        "Mesh_172_17_42_32"
    );

    assert_eq!(c.peers.len(), 1);
    let p = peer(c, "172.17.42.32");
    assert_eq!(p.asn, 64512);
    // "172.17.42.32" > "172.17.42.31": confd renders `passive on`.
    assert!(p.passive);
    assert_eq!(p.source_address, Some(ip("172.17.42.31")));
    assert_eq!(
        p.ttl,
        Ttl::Multihop(64),
        "multihop without a number: BIRD's 64"
    );
    assert_eq!(p.families, FamilySet::from_iter([Family::Ipv4Unicast]));
    assert_eq!(
        p.add_path,
        AddPath {
            receive: true,
            send: Some(AddPathMode::All)
        }
    );
    assert_eq!(p.graceful_restart, Some(120));
    assert_eq!(p.connect_retry, 5);
    assert_eq!(p.hold_time, 240);
    assert_eq!(p.next_hop, NextHopMode::Auto);
    assert_eq!(p.import.name, "all");
    // Export: the block, routes of the pool; not the node's subnet (direct), not others.
    let export = &p.export.policy;
    assert!(passes(export, "192.168.0.0/26"));
    assert!(
        passes(export, "192.168.0.64/26"),
        "another block of the pool"
    );
    assert!(!passes(export, "172.17.0.0/16"), "the node's own subnet");
    assert!(!passes(export, "10.0.0.0/8"));

    // [fib]: the pool without encapsulation, Calico's metric rule; the blackhole at 0.
    assert!(c.fib.enabled);
    assert_eq!(c.fib.table, 254);
    assert_eq!(c.fib.protocol, 12);
    assert!(c.fib.metric_from_local_pref);
    assert!(!c.fib.bird16_metric);
    assert_eq!(c.fib.metric, 1024);
    assert_eq!(c.fib.ip_pools.len(), 1);
    assert_eq!(c.fib.ip_pools[0].prefix, net("192.168.0.0/16"));
    assert_eq!(c.fib.ip_pools[0].ipip, IpipMode::Never);
    assert!(c.fib.ip_pools[0].install);
    assert_eq!(c.originate.len(), 1);
    assert_eq!(c.originate[0].prefix, net("192.168.0.0/26"));
    assert!(c.originate[0].blackhole);
    assert_eq!(c.blackholes(), vec![(net("192.168.0.0/26"), 0)]);

    // [learn]: kernel routes inside the pool, elevated below 1024, interfaces but cali*.
    assert!(c.learn.enabled);
    assert_eq!(c.learn.pools, vec![net("192.168.0.0/16")]);
    assert_eq!(c.learn.elevated_below, 1024);
    assert!(c.learn.direct);
    assert_eq!(c.learn.direct_exclude, vec!["cali*", "kube-ipvs*"]);
    // Felix's tunnel devices (IP-in-IP by Felix too) and BPF's: their routes not learned.
    assert_eq!(
        c.learn.route_exclude,
        vec!["*.cali", "*.calico", "tunl0", "bpf*.cali"]
    );

    // The TOML is what runs: it parses to the same model.
    let again = Config::parse(&t.toml, "again.toml").unwrap();
    assert_eq!(&again, c);
    assert!(t.toml.contains("metric_from_local_pref"), "{}", t.toml);
    // Every construct without a key of its own is reported.
    let notes: Vec<&str> = t.notes.iter().map(|n| n.text.as_str()).collect();
    for want in [
        "connect delay time",
        "error wait time",
        "ifname",
        "elevated",
        "kernel_metric = 0",
    ] {
        assert!(
            notes.iter().any(|n| n.contains(want)),
            "no note about {want}: {notes:#?}"
        );
    }

    // The other node: not passive (its peer is the lower string).
    let t2 = translate("mesh-node2/bird.cfg", Dialect::Bird);
    assert!(!peer(&t2.config, "172.17.42.31").passive);
}

#[test]
fn global_peers() {
    let t = translate("global-peers/bird.cfg", Dialect::Bird);
    let c = &t.config;
    assert_eq!(
        c.speaker.listen,
        vec!["10.0.0.1:179".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(c.peers.len(), 3);
    let tor = peer(c, "10.0.0.254");
    assert_eq!(tor.asn, 65001);
    assert!(!tor.is_ibgp(&c.speaker));
    assert_eq!(tor.ttl, Ttl::Security(1), "ttl security on; multihop 1");
    assert_eq!(tor.password.as_ref().map(|s| s.expose()), Some("s3cret"));
    assert_eq!(tor.keepalive_time, Some(20));
    assert_eq!(tor.graceful_restart, Some(300));
    assert!(!tor.passive);
    assert_eq!(tor.source_address, None);
    // The disabled pool is refused before anything else, the enabled one exported.
    assert!(!passes(&tor.export.policy, "10.96.0.0/12"));
    assert!(!passes(&tor.export.policy, "10.96.1.0/24"));
    assert!(passes(&tor.export.policy, "10.244.7.0/26"));
    assert!(passes(&tor.export.policy, "10.244.1.0/26"));

    let node = peer(c, "10.0.0.253");
    assert_eq!(node.port, 1179);
    assert_eq!(node.next_hop, NextHopMode::SelfAll, "next hop self");
    assert!(!node.passive);
    assert_eq!(
        t.protocol_of_peer(ip("10.0.0.253")).unwrap().name,
        "Node_10_0_0_253_port_1179"
    );
    assert!(peer(c, "10.0.0.2").passive);
    // Identical filters share one policy.
    assert_eq!(node.export.name, peer(c, "10.0.0.2").export.name);
}

#[test]
fn route_reflector() {
    let t = translate("route-reflector/bird.cfg", Dialect::Bird);
    let c = &t.config;
    assert_eq!(c.peers.len(), 4);
    for client in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        let p = peer(c, client);
        assert!(p.rr_client, "{client}");
        assert_eq!(p.cluster_id, Some("1.0.0.1".parse().unwrap()), "{client}");
        // Passive towards the greater strings: "10.0.0.2" > "10.0.0.100" > "10.0.0.1".
        assert_eq!(p.passive, client > "10.0.0.100", "{client}");
    }
    let other = peer(c, "10.0.0.101");
    assert!(!other.rr_client);
    assert_eq!(other.cluster_id, None);
    assert!(!other.passive);
    // A reflector: a cluster ID is in force.
    assert!(c.speaker.is_route_reflector());
    assert!(c.originate.is_empty());
    let p = &peer(c, "10.0.0.1").export.policy;
    assert!(passes(p, "10.244.3.0/26"));
    assert!(!passes(p, "10.0.0.0/24"));
}

#[test]
fn ipip_always_and_cross_subnet() {
    let c = translate("ipip-always/bird.cfg", Dialect::Bird).config;
    assert_eq!(c.fib.ip_pools.len(), 1);
    assert_eq!(c.fib.ip_pools[0].ipip, IpipMode::Always);
    assert_eq!(c.fib.tunnel_device, "tunl0");
    assert_eq!(c.fib.node_subnet, None);

    let c = translate("ipip-cross-subnet/bird.cfg", Dialect::Bird).config;
    let pool = |p: &str| {
        c.fib
            .ip_pools
            .iter()
            .find(|x| x.prefix == net(p))
            .unwrap_or_else(|| panic!("no pool {p}: {:?}", c.fib.ip_pools))
    };
    assert_eq!(pool("10.244.0.0/16").ipip, IpipMode::CrossSubnet);
    assert_eq!(pool("10.245.0.0/16").ipip, IpipMode::Always);
    assert_eq!(c.fib.node_subnet, Some(net("10.0.0.0/24")));
}

#[test]
fn vxlan_pool_left_to_felix() {
    let c = translate("vxlan/bird.cfg", Dialect::Bird).config;
    assert_eq!(c.fib.ip_pools.len(), 1);
    assert_eq!(c.fib.ip_pools[0].prefix, net("10.244.0.0/16"));
    assert!(!c.fib.ip_pools[0].install, "VXLAN routes are Felix's");
    // Still exported, and its kernel routes learned.
    assert!(passes(&peer(&c, "10.0.0.2").export.policy, "10.244.1.0/26"));
    assert_eq!(c.learn.pools, vec![net("10.244.0.0/16")]);
    // Felix's VXLAN routes to other nodes' blocks are not learned back.
    assert!(c.learn.route_exclude.contains(&"*.calico".to_owned()));
    // The block's blackhole stays.
    assert_eq!(c.blackholes(), vec![(net("10.244.1.0/26"), 0)]);
}

#[test]
fn communities() {
    let c = translate("communities/bird.cfg", Dialect::Bird).config;
    let mesh = &peer(&c, "10.0.0.2").export.policy;
    let mut attrs = Attrs::default();
    let mask = mesh
        .evaluate(&net("10.244.1.0/26"), &attrs, 0)
        .expect("the block is exported");
    mesh.apply(mask, &mut attrs);
    for (a, b) in [(65000, 100), (65000, 200)] {
        assert!(
            attrs.has_community(Community::new(a, b)),
            "{a}:{b} on the block"
        );
    }
    assert!(
        attrs
            .large_communities
            .iter()
            .any(|l| (l.global, l.local1, l.local2) == (65000, 1, 2))
    );
    // The BGPFilter on the ToR: import refuses 65001:666 inside 10.250/16, tags the rest.
    let tor = peer(&c, "10.0.0.254");
    let import = &tor.import.policy;
    let tagged = Attrs {
        communities: vec![Community::new(65001, 666)],
        ..Attrs::default()
    };
    assert!(import.evaluate(&net("10.250.1.0/24"), &tagged, 1).is_none());
    let mut plain = Attrs::default();
    let mask = import
        .evaluate(&net("10.250.1.0/24"), &plain, 1)
        .expect("accepted");
    import.apply(mask, &mut plain);
    assert!(plain.has_community(Community::new(65000, 300)));
    assert_eq!(plain.local_pref, Some(2147482623));
    assert!(
        import
            .evaluate(&net("192.0.2.0/24"), &Attrs::default(), 1)
            .is_some()
    );
}

#[test]
fn ipv6_bird6() {
    let t = translate("ipv6/bird6.cfg", Dialect::Bird6);
    let c = &t.config;
    assert_eq!(c.speaker.router_id, "10.0.0.1".parse::<Ipv4Addr>().unwrap());
    assert_eq!(
        c.speaker.listen,
        vec!["[::]:179".parse::<SocketAddr>().unwrap()]
    );
    let p = peer(c, "fd00::2");
    assert_eq!(p.families, FamilySet::from_iter([Family::Ipv6Unicast]));
    assert_eq!(p.source_address, Some(ip("fd00::1")));
    assert!(p.passive);
    assert_eq!(
        t.protocol_of_peer(ip("fd00::2")).unwrap().name,
        "Mesh_fd00__2"
    );
    assert_eq!(c.originate[0].prefix, net("fd00:10:244::/122"));
    // IPv6: only the VXLAN pool is named in the kernel filter (refused), the rest accepted.
    assert_eq!(c.fib.ip_pools.len(), 1);
    assert_eq!(c.fib.ip_pools[0].prefix, net("fd00:10:245::/64"));
    assert!(!c.fib.ip_pools[0].install);
    assert!(passes(&p.export.policy, "fd00:10:244::/122"));
    assert!(!passes(&p.export.policy, "fd00:99::/64"));
    // A bird6 file through bird: its IPv6 routes are refused.
    let e = load(data("ipv6/bird6.cfg"), Dialect::Bird).unwrap_err();
    assert!(e.message.contains("not of bird's family"), "{e}");
    let e = translate_str(
        "router id 10.0.0.1;\nprotocol bgp x { local as 1; neighbor fd00::2 as 1; }\n",
        "t.cfg",
        Dialect::Bird,
    )
    .unwrap_err();
    assert_eq!((e.line, e.col), (2, 39), "{e}");
    assert!(e.message.contains("bird is for IPv4 neighbors"), "{e}");
}

#[test]
fn translation_of_strings() {
    // Defaults as BIRD 1.6's: export none, import all, no graceful restart, eBGP TTL 1.
    let t = translate_str(
        "router id 10.0.0.1;\nprotocol bgp tor { local as 64512; neighbor 10.0.0.254 as 65001; }\n",
        "t.cfg",
        Dialect::Bird,
    )
    .unwrap();
    let p = peer(&t.config, "10.0.0.254");
    assert_eq!(p.import.name, "all");
    assert_eq!(p.export.name, "none");
    assert_eq!(p.graceful_restart, None);
    assert_eq!(p.ttl, Ttl::Multihop(1));
    assert_eq!(p.connect_retry, 120);
    // `where` and prefix sets with length ranges.
    let t = translate_str(
        "router id 10.0.0.1;\n\
         protocol bgp tor { local as 64512; neighbor 10.0.0.254 as 65001;\n\
         export where net ~ [ 10.0.0.0/8{16,24}, 192.168.0.0/16+ ]; }\n",
        "t.cfg",
        Dialect::Bird,
    )
    .unwrap();
    let e = &peer(&t.config, "10.0.0.254").export.policy;
    assert!(passes(e, "10.1.0.0/16"));
    assert!(passes(e, "10.1.2.0/24"));
    assert!(!passes(e, "10.1.2.0/25"));
    assert!(!passes(e, "10.0.0.0/8"));
    assert!(passes(e, "192.168.5.0/24"));
    assert!(!passes(e, "172.16.0.0/12"));
}

/// A broken file: the error's place and words.
fn refused(rel: &str) -> String {
    match load(data(rel), Dialect::Bird) {
        Ok(t) => panic!("{rel} translated:\n{}", t.toml),
        Err(e) => e.to_string(),
    }
}

/// confd's `reachableBy`: `route PEER/32 via GW` in bird_aggr.cfg's static protocol is
/// a `[[fib.static_route]]` (installed at metric 0, as BIRD 1.6 installs static routes;
/// never announced), beside the peer's session.
#[test]
fn reachable_by_static_route() {
    let t = translate("reachable-by/bird.cfg", Dialect::Bird);
    let c = &t.config;
    assert_eq!(
        c.fib.static_routes,
        [rr_daemon::config::StaticRoute {
            prefix: "10.225.0.4/32".parse().unwrap(),
            via: ip("10.0.0.250"),
            metric: Some(0),
        }]
    );
    assert_eq!(
        c.fib.statics(),
        [("10.225.0.4/32".parse().unwrap(), ip("10.0.0.250"), 0)]
    );
    assert!(t.toml.contains("[[fib.static_route]]"), "{}", t.toml);
    let rr = peer(c, "10.225.0.4");
    assert_eq!(rr.asn, 65515);
    assert_eq!(rr.next_hop, NextHopMode::Keep);
    // Not announced: the export refuses it as anything outside the blocks and pools.
    assert!(!passes(&rr.export.policy, "10.225.0.4/32"));
    assert!(passes(&rr.export.policy, "10.244.1.0/26"));
    // The block stays a blackhole; the static route is not an [[originate]].
    assert_eq!(c.originate.len(), 1);
    // A gateway of the other family is refused where it is written.
    let dir = std::env::temp_dir().join(format!("bird-static-via-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("bird.cfg"),
        "router id 10.0.0.1;\nprotocol static {\n   route 10.0.0.254/32 via fd00::1;\n}\n",
    )
    .unwrap();
    let e = load(dir.join("bird.cfg"), Dialect::Bird)
        .map(|_| ())
        .unwrap_err();
    assert_eq!((e.line, e.col), (3, 10), "{e}");
    assert!(e.message.contains("not of bird's family"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A protocol's own `local as` (a BGPPeer's localASNumber) is its peer's `local_as`, the
/// template's the speaker's AS; `allow local as [N]` is `allow_local_as` (without a
/// number, 255: BIRD drops the check).
#[test]
fn local_as_and_allow_local_as() {
    let t = translate("local-as/bird.cfg", Dialect::Bird);
    let c = &t.config;
    assert_eq!(c.speaker.asn, 64512);
    let tor = peer(c, "10.0.0.254");
    assert_eq!(tor.local_as, Some(65100));
    assert!(!tor.is_ibgp(&c.speaker));
    assert_eq!(tor.allow_local_as, 1);
    let node = peer(c, "10.0.0.253");
    assert_eq!(node.local_as, None);
    assert!(node.is_ibgp(&c.speaker));
    assert_eq!(node.allow_local_as, 255);
    // Without a template, the first protocol's AS is the speaker's.
    let t = translate("two-local-as.cfg", Dialect::Bird);
    assert_eq!(t.config.speaker.asn, 64512);
    assert_eq!(peer(&t.config, "10.0.0.253").local_as, Some(64513));
    assert_eq!(peer(&t.config, "10.0.0.254").local_as, None);
}

#[test]
fn broken_files_name_file_line_column() {
    let cases = [
        ("missing-semicolon.cfg", "6:3", "unexpected 'neighbor'"),
        ("unknown-protocol.cfg", "3:10", "protocol ospf"),
        ("unclosed-block.cfg", "6:1", "end of file"),
        ("missing-include.cfg", "2:1", "unable to open included file"),
        (
            "unknown-function.cfg",
            "7:5",
            "calico_export_to_bgp_peers: no such function",
        ),
        ("prepend.cfg", "4:48", "bgp_path.prepend"),
        (
            "allow-local-as.cfg",
            "6:18",
            "allow local as 300: at most 255",
        ),
        ("static-unreachable.cfg", "4:4", "static route unreachable"),
        ("unsupported-wireguard.cfg", "4:7", "WireGuard"),
    ];
    for (file, at, words) in cases {
        let e = refused(&format!("broken/{file}"));
        let want = format!("{}:{at} ", data(&format!("broken/{file}")).display());
        assert!(
            e.starts_with(&want),
            "{file}: {e:?} does not start with {want:?}"
        );
        assert!(e.contains(words), "{file}: {e:?} does not say {words:?}");
    }
}

#[test]
fn include_errors_name_the_included_file() {
    let dir = std::env::temp_dir().join(format!("bird-include-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(
        dir.join("main.cfg"),
        "router id 10.0.0.1;\ninclude \"sub/a.cfg\";\n",
    )
    .unwrap();
    // Relative to the including file's directory: sub/b.cfg, not b.cfg.
    std::fs::write(dir.join("sub/a.cfg"), "include \"b.cfg\";\n").unwrap();
    std::fs::write(dir.join("sub/b.cfg"), "\nprotocol device { scan time 2 }\n").unwrap();
    let e = load(dir.join("main.cfg"), Dialect::Bird).unwrap_err();
    assert_eq!(e.file, dir.join("sub/b.cfg").display().to_string());
    assert_eq!((e.line, e.col), (2, 31), "{e}");
    // A file that includes itself.
    std::fs::write(dir.join("sub/b.cfg"), "include \"a.cfg\";\n").unwrap();
    let e = load(dir.join("main.cfg"), Dialect::Bird).unwrap_err();
    assert!(e.message.contains("includes itself"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The binary behind a symlink named `bird` (and `bird6`), as calico-node runs it.
fn bird_link(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("bird-argv-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join(name);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_rr-daemon"), &link).unwrap();
    (dir, link)
}

#[test]
fn bird_p_exit_codes() {
    let (dir, bird) = bird_link("bird");
    for ok in [
        "mesh-node1/bird.cfg",
        "global-peers/bird.cfg",
        "reachable-by/bird.cfg",
        "route-reflector/bird.cfg",
        "ipip-always/bird.cfg",
        "ipip-cross-subnet/bird.cfg",
        "vxlan/bird.cfg",
        "communities/bird.cfg",
    ] {
        let out = Command::new(&bird)
            .args(["-p", "-c"])
            .arg(data(ok))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{ok}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let broken = data("broken/missing-semicolon.cfg");
    let out = Command::new(&bird)
        .arg("-p")
        .arg(format!("-c{}", broken.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.lines().next().unwrap_or_default(),
        format!(
            "bird: {}:6:3 syntax error, unexpected 'neighbor' (';' missing before it?)",
            broken.display()
        )
    );
    // bird6 reads bird6 files.
    let (dir6, bird6) = bird_link("bird6");
    let out = Command::new(&bird6)
        .args(["-p", "-c"])
        .arg(data("ipv6/bird6.cfg"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A missing file, an unknown option.
    let out = Command::new(&bird)
        .args(["-p", "-c", "/nonexistent/bird.cfg"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = Command::new(&bird).args(["-x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(dir6).unwrap();
}

#[test]
fn check_bird_prints_the_toml() {
    let out = Command::new(env!("CARGO_BIN_EXE_rr-daemon"))
        .args(["check", "--bird"])
        .arg(data("mesh-node1/bird.cfg"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let c = Config::parse(&text, "printed.toml").unwrap();
    assert_eq!(
        c,
        translate("mesh-node1/bird.cfg", Dialect::Bird).config,
        "{text}"
    );
    // The tables in CONFIG.md's order, `[speaker]` first, not sorted by name.
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(
        headers,
        [
            "[speaker]",
            "[api]",
            "[[peer]]",
            "[[policy]]",
            "[[policy.rule]]",
            "[[policy.rule]]",
            "[[policy.rule]]",
            "[[policy.rule]]",
            "[[originate]]",
            "[fib]",
            "[[fib.ip_pool]]",
            "[learn]",
        ],
        "{text}"
    );
    assert!(
        text.contains("\n\n[speaker]\nasn = 64512\n"),
        "the comments, a blank line, then [speaker]: {text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_rr-daemon"))
        .args(["check", "--bird"])
        .arg(data("broken/prepend.cfg"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("rr-daemon: "), "{err}");
    assert!(err.contains("prepend.cfg:4:48 "), "{err}");
}

/// Filters the daemon's policies cannot say are refused where they say it.
#[test]
fn untranslatable_filters_are_located() {
    let with = |filter: &str| {
        let text = format!(
            "router id 10.0.0.1;\nprotocol bgp tor {{\n  local as 64512;\n  neighbor 10.0.0.254 as \
             65001;\n  export filter {{\n{filter}\n  }};\n}}\n"
        );
        translate_str(&text, "f.cfg", Dialect::Bird)
    };
    let cases = [
        (
            "    if !(net ~ 10.0.0.0/8) then accept;",
            "6:8",
            "negated condition",
        ),
        (
            "    if net ~ 10.0.0.0/8 then accept; else reject;",
            "6:5",
            "else after a condition",
        ),
        (
            "    if bgp_path ~ [= 65000 * =] then accept;",
            "6:8",
            "bgp_path",
        ),
        ("    if source ~ [ RTS_BGP ] then accept;", "6:8", "source"),
        ("    bgp_origin = 1; accept;", "6:5", "bgp_origin"),
        ("    krt_tunnel = \"tunl0\"; accept;", "6:5", "krt_tunnel"),
        (
            "    if net ~ [ 10.0.0.0/16- ] then accept;",
            "2:1",
            "shorter than the prefix",
        ),
        ("    nope(); accept;", "6:5", "no such function"),
    ];
    for (filter, at, words) in cases {
        let e = match with(filter) {
            Ok(t) => panic!("{filter:?} translated:\n{}", t.toml),
            Err(e) => e.to_string(),
        };
        assert!(e.starts_with(&format!("f.cfg:{at} ")), "{filter:?}: {e}");
        assert!(e.contains(words), "{filter:?}: {e}");
    }
    // What it can say, it says: communities, MED, next hop, LOCAL_PREF, `||` of prefixes.
    let t = with(
        "    if (net ~ 10.1.0.0/16) || (net = 10.2.0.0/16) then { bgp_med = 7; \
         bgp_next_hop = 10.0.0.9; bgp_community.delete((1, 2)); accept; }\n    reject;",
    )
    .unwrap();
    let p = &peer(&t.config, "10.0.0.254").export.policy;
    assert!(passes(p, "10.1.5.0/24"));
    assert!(passes(p, "10.2.0.0/16"));
    assert!(!passes(p, "10.2.5.0/24"));
    let mut a = Attrs {
        communities: vec![Community::new(1, 2)],
        ..Attrs::default()
    };
    let mask = p.evaluate(&net("10.1.0.0/16"), &a, 0).unwrap();
    p.apply(mask, &mut a);
    assert_eq!(a.med, Some(7));
    assert!(a.communities.is_empty());
}

/// A mesh of 1,000 nodes as confd renders it for one node (999 `Mesh_` protocols with
/// their inline filters): every peer translated, `passive` by the string rule, one shared
/// export policy. Prints the time taken (no bound asserted).
#[test]
fn thousand_node_mesh() {
    let me = "10.1.0.1";
    let mut text = String::from(
        "router id 10.1.0.1;\n\
         function calico_aggr () { if ( net = 10.244.0.0/26 ) then { accept; } }\n\
         function calico_export_to_bgp_peers(bool internal_peer) {\n  calico_aggr();\n  \
         if (net ~ 10.244.0.0/16) then { accept; }\n}\n\
         template bgp bgp_template {\n  local as 64512;\n  add paths on;\n  graceful restart;\n}\n",
    );
    let mut addrs = Vec::new();
    for i in 0..1000u32 {
        let a = format!("10.1.{}.{}", i / 250, i % 250 + 1);
        if a == me {
            continue;
        }
        let passive = if a.as_str() > me {
            "  passive on;\n"
        } else {
            ""
        };
        text.push_str(&format!(
            "protocol bgp Mesh_{} from bgp_template {{\n  neighbor {a} as 64512;\n  \
             source address {me};\n  multihop;\n  import filter {{\n    \
             if (defined(bgp_local_pref)&&(bgp_local_pref > 2147482623)) then\n      \
             preference = 200;\n    accept;\n  }};\n  export filter {{\n    \
             calico_export_to_bgp_peers(true);\n    reject;\n  }};\n{passive}}}\n",
            a.replace('.', "_")
        ));
        addrs.push(a);
    }
    let t0 = std::time::Instant::now();
    let t = translate_str(&text, "mesh-1000.cfg", Dialect::Bird).unwrap();
    let took = t0.elapsed();
    eprintln!(
        "1,000-node mesh: {} bytes, {} peers translated and resolved in {:.1} ms",
        text.len(),
        t.config.peers.len(),
        took.as_secs_f64() * 1e3
    );
    assert_eq!(t.config.peers.len(), 999);
    assert_eq!(t.config.policies.len(), 1, "one shared export policy");
    for a in &addrs {
        let p = peer(&t.config, a);
        assert_eq!(p.passive, a.as_str() > me, "{a}");
    }
    assert_eq!(t.protocols.len(), 999);
}

/// What the native model refuses after translation is reported at the BIRD protocol it
/// came from: two protocols for one neighbour, a client that is not iBGP.
#[test]
fn model_errors_point_into_the_bird_file() {
    let e = translate_str(
        "router id 10.0.0.1;\n\
         protocol bgp a { local as 64512; neighbor 10.0.0.2 as 64512; }\n\
         protocol bgp b { local as 64512; neighbor 10.0.0.2 as 64512; }\n",
        "dup.cfg",
        Dialect::Bird,
    )
    .unwrap_err();
    assert_eq!((e.line, e.col), (3, 43), "{e}");
    assert!(e.message.contains("peer[1]"), "{e}");
    let e = translate_str(
        "router id 10.0.0.1;\nprotocol bgp a { local as 64512; neighbor 10.0.0.2 as 65000; rr client; }\n",
        "rr.cfg",
        Dialect::Bird,
    )
    .unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    assert!(
        e.message.contains("rr client needs an iBGP neighbor"),
        "{e}"
    );
}

/// A misspelt option is BIRD's syntax error, with the option meant; an option BIRD has
/// and we do not translate is "not supported".
#[test]
fn bgp_option_typos_are_syntax_errors() {
    let with = |opt: &str| {
        translate_str(
            &format!(
                "router id 10.0.0.1;\nprotocol bgp a {{\n  local as 64512;\n  {opt};\n  \
                 neighbor 10.0.0.2 as 64512;\n}}\n"
            ),
            "typo.cfg",
            Dialect::Bird,
        )
        .unwrap_err()
    };
    let e = with("improt all");
    assert_eq!((e.line, e.col), (4, 3), "{e}");
    assert_eq!(
        e.message,
        "syntax error, `improt` is no option of protocol bgp: did you mean `import`?"
    );
    let e = with("neighbour 10.0.0.3 as 1");
    assert!(e.message.ends_with("did you mean `neighbor`?"), "{e}");
    let e = with("frobnicate on");
    assert_eq!(
        e.message,
        "syntax error, `frobnicate` is no option of protocol bgp"
    );
    // BIRD 1.6 has it, we do not translate it: not a syntax error.
    let e = with("igp metric off");
    assert!(
        e.message
            .contains("not supported by rr-daemon in protocol bgp"),
        "{e}"
    );
}

/// BIRD programs IP-in-IP itself: `tunl0` routes are its own, not excluded.
#[test]
fn ipip_by_bird_keeps_tunl0_routes() {
    let c = translate("ipip-always/bird.cfg", Dialect::Bird).config;
    assert_eq!(
        c.learn.route_exclude,
        vec!["*.cali", "*.calico", "bpf*.cali"]
    );
}
