use super::*;

fn net(s: &str) -> IpNet {
    s.parse().expect("prefix")
}

fn rules() -> Rules {
    Rules {
        table: 254,
        protocol: 12,
        pools: vec![net("192.168.0.0/16"), net("fd00:10::/48")],
        elevated_below: 1024,
        direct: true,
        direct_exclude: vec!["cali*".into(), "kube-ipvs*".into()],
        local_pref_from_metric: false,
        route_exclude: Vec::new(),
    }
}

fn scope() -> Scope {
    Scope {
        blocks: vec![net("192.168.0.0/26")],
        configured: [net("192.168.0.0/26"), net("10.99.0.0/24")]
            .into_iter()
            .collect(),
    }
}

/// Felix's workload route: `192.168.0.5/32 dev caliXYZ` (protocol boot).
fn workload(prefix: &str, metric: u32, oif: u32) -> SeenRoute {
    SeenRoute {
        prefix: net(prefix),
        table: 254,
        protocol: 3,
        metric,
        kind: RouteKind::Unicast,
        oif: Some(oif),
    }
}

fn link(index: u32, name: &str, up: bool) -> SeenLink {
    SeenLink {
        index,
        name: name.into(),
        up,
    }
}

fn addr(index: u32, a: &str, scope: u8) -> SeenAddr {
    SeenAddr {
        index,
        addr: net(a),
        scope,
    }
}

#[test]
fn test_decide_workload_in_own_block_normal_metric_is_skipped() {
    let v = decide_route(
        &rules(),
        &scope(),
        &workload("192.168.0.5/32", 1024, 7),
        None,
    );
    assert_eq!(v, Verdict::Skip(Why::InBlock));
}

#[test]
fn test_decide_workload_in_own_block_elevated_is_announced() {
    let v = decide_route(
        &rules(),
        &scope(),
        &workload("192.168.0.5/32", 512, 7),
        None,
    );
    assert_eq!(v, Verdict::Announce(Why::Elevated));
}

#[test]
fn test_decide_borrowed_workload_is_announced() {
    let v = decide_route(
        &rules(),
        &scope(),
        &workload("192.168.1.9/32", 1024, 7),
        None,
    );
    assert_eq!(v, Verdict::Announce(Why::OutsideBlocks));
}

#[test]
fn test_decide_outside_pools_ours_kernel_other_table() {
    let r = rules();
    let s = scope();
    assert_eq!(
        decide_route(&r, &s, &workload("10.1.0.0/24", 0, 7), None),
        Verdict::Skip(Why::NotInPool)
    );
    let mut ours = workload("192.168.1.0/26", 1024, 7);
    ours.protocol = 12;
    assert_eq!(
        decide_route(&r, &s, &ours, None),
        Verdict::Skip(Why::OurProtocol)
    );
    let mut kernel = workload("192.168.1.0/24", 0, 7);
    kernel.protocol = RTPROT_KERNEL;
    assert_eq!(
        decide_route(&r, &s, &kernel, None),
        Verdict::Skip(Why::KernelProtocol)
    );
    let mut other = workload("192.168.1.9/32", 0, 7);
    other.table = 255;
    assert_eq!(
        decide_route(&r, &s, &other, None),
        Verdict::Skip(Why::OtherTable)
    );
    let mut local = workload("192.168.1.9/32", 0, 7);
    local.kind = RouteKind::Other;
    assert_eq!(decide_route(&r, &s, &local, None), Verdict::Skip(Why::Kind));
}

#[test]
fn test_decide_configured_prefix_is_never_learned() {
    // The block itself, installed by someone else at a low metric: the config owns it.
    let v = decide_route(&rules(), &scope(), &workload("192.168.0.0/26", 10, 7), None);
    assert_eq!(v, Verdict::Skip(Why::Configured));
}

#[test]
fn test_decide_ipv6_pool() {
    let v = decide_route(
        &rules(),
        &scope(),
        &workload("fd00:10::5/128", 1024, 7),
        None,
    );
    assert_eq!(v, Verdict::Announce(Why::OutsideBlocks));
}

#[test]
fn test_decide_direct() {
    let r = rules();
    let s = scope();
    let eth0 = link(2, "eth0", true);
    let a = addr(2, "192.0.2.101/24", 0);
    assert_eq!(
        decide_direct(&r, &s, Some(&eth0), &a),
        Verdict::Announce(Why::Interface)
    );
    let cali = link(9, "cali12345", true);
    assert_eq!(
        decide_direct(&r, &s, Some(&cali), &addr(9, "169.254.1.1/32", 0)),
        Verdict::Skip(Why::Excluded)
    );
    let ipvs = link(10, "kube-ipvs0", true);
    assert_eq!(
        decide_direct(&r, &s, Some(&ipvs), &addr(10, "10.96.0.1/32", 0)),
        Verdict::Skip(Why::Excluded)
    );
    assert_eq!(
        decide_direct(&r, &s, Some(&eth0), &addr(2, "fe80::1/64", 253)),
        Verdict::Skip(Why::AddressScope)
    );
    assert_eq!(
        decide_direct(&r, &s, Some(&link(2, "eth0", false)), &a),
        Verdict::Skip(Why::LinkDown)
    );
    assert_eq!(
        decide_direct(&r, &s, None, &a),
        Verdict::Skip(Why::LinkDown)
    );
    let off = Rules {
        direct: false,
        ..rules()
    };
    assert_eq!(
        decide_direct(&off, &s, Some(&eth0), &a),
        Verdict::Skip(Why::DirectOff)
    );
}

#[test]
fn test_pattern_matches() {
    assert!(pattern_matches("cali*", "cali0123456789a"));
    assert!(pattern_matches("cali*", "cali"));
    assert!(!pattern_matches("cali*", "eth0"));
    assert!(!pattern_matches("cali*", "xcali0"));
    assert!(pattern_matches("*", ""));
    assert!(pattern_matches("eth?", "eth0"));
    assert!(!pattern_matches("eth?", "eth10"));
    assert!(pattern_matches("*ipvs*", "kube-ipvs0"));
    assert!(pattern_matches("a*b*c", "aXXbYYbZc"));
    assert!(!pattern_matches("a*b*c", "aXXbYYbZ"));
    assert!(pattern_matches("eth0", "eth0"));
}

#[test]
fn test_learner_workload_elevated_then_normal_then_gone() {
    let mut l = Learner::new(rules(), scope());
    l.link_changed(link(7, "caliXYZ", true));
    l.route_added(workload("192.168.0.5/32", 1024, 7));
    assert!(l.poll_diff().is_empty());
    // Felix replaces it at an elevated metric (a new key: both exist for a moment).
    l.route_added(workload("192.168.0.5/32", 512, 7));
    assert_eq!(l.poll_diff().originate, vec![net("192.168.0.5/32")]);
    l.route_deleted(&workload("192.168.0.5/32", 512, 7));
    assert_eq!(l.poll_diff().withdraw, vec![net("192.168.0.5/32")]);
    l.route_deleted(&workload("192.168.0.5/32", 1024, 7));
    assert!(l.poll_diff().is_empty());
    assert_eq!(l.stats().routes, 0);
}

#[test]
fn test_learner_link_deleted_forgets_routes_and_addrs_silently_gone() {
    let mut l = Learner::new(rules(), scope());
    l.link_changed(link(7, "caliXYZ", true));
    l.link_changed(link(2, "eth0", true));
    l.addr_added(addr(2, "192.0.2.101/24", 0));
    l.route_added(workload("192.168.1.9/32", 1024, 7));
    let d = l.poll_diff();
    assert_eq!(
        d.originate,
        vec![net("192.0.2.0/24"), net("192.168.1.9/32")]
    );
    // The kernel sends no RTM_DELROUTE for IPv4 routes of a deleted device.
    l.link_deleted(7);
    assert_eq!(l.poll_diff().withdraw, vec![net("192.168.1.9/32")]);
    l.link_changed(link(2, "eth0", false));
    assert_eq!(l.poll_diff().withdraw, vec![net("192.0.2.0/24")]);
    l.link_changed(link(2, "eth0", true));
    assert_eq!(l.poll_diff().originate, vec![net("192.0.2.0/24")]);
    l.link_deleted(2);
    assert_eq!(l.poll_diff().withdraw, vec![net("192.0.2.0/24")]);
    assert_eq!(l.stats(), Stats::default());
}

#[test]
fn test_learner_renamed_link_is_excluded() {
    let mut l = Learner::new(rules(), scope());
    l.link_changed(link(4, "veth0", true));
    l.addr_added(addr(4, "10.5.0.1/30", 0));
    assert_eq!(l.poll_diff().originate, vec![net("10.5.0.0/30")]);
    l.link_changed(link(4, "cali4", true));
    assert_eq!(l.poll_diff().withdraw, vec![net("10.5.0.0/30")]);
}

#[test]
fn test_learner_two_sources_one_prefix() {
    let mut l = Learner::new(rules(), scope());
    l.link_changed(link(2, "eth0", true));
    l.link_changed(link(3, "eth1", true));
    l.addr_added(addr(2, "192.0.2.1/24", 0));
    l.addr_added(addr(3, "192.0.2.2/24", 0));
    assert_eq!(l.poll_diff().originate, vec![net("192.0.2.0/24")]);
    l.addr_deleted(&addr(2, "192.0.2.1/24", 0));
    assert!(l.poll_diff().is_empty());
    l.addr_deleted(&addr(3, "192.0.2.2/24", 0));
    assert_eq!(l.poll_diff().withdraw, vec![net("192.0.2.0/24")]);
}

#[test]
fn test_learner_scope_change_reconsiders() {
    let mut l = Learner::new(rules(), Scope::default());
    l.route_added(workload("192.168.0.5/32", 1024, 7));
    assert_eq!(l.poll_diff().originate, vec![net("192.168.0.5/32")]);
    // The block becomes ours: the /32 at the normal metric is covered by it.
    l.set_scope(scope());
    assert_eq!(l.poll_diff().withdraw, vec![net("192.168.0.5/32")]);
    assert_eq!(
        l.explain(&net("192.168.0.5/32")),
        Some(Verdict::Skip(Why::InBlock))
    );
}

#[test]
fn test_learner_resync_corrects_missed_notifications() {
    let mut l = Learner::new(rules(), scope());
    l.route_added(workload("192.168.1.1/32", 0, 7));
    l.route_added(workload("192.168.1.2/32", 0, 7));
    let _ = l.poll_diff();
    // .1 went and .3 came while the notifications overflowed.
    l.resync(
        Snapshot {
            links: vec![link(7, "caliA", true)],
            addrs: vec![],
            routes: vec![
                workload("192.168.1.2/32", 0, 7),
                workload("192.168.1.3/32", 0, 7),
            ],
        },
        true,
    );
    let d = l.poll_diff();
    assert_eq!(d.originate, vec![net("192.168.1.3/32")]);
    assert_eq!(d.withdraw, vec![net("192.168.1.1/32")]);
}

#[test]
fn test_learner_churn_of_cali_links_keeps_nothing() {
    let mut l = Learner::new(rules(), scope());
    for round in 0..3 {
        for i in 0..20_000u32 {
            l.link_changed(link(1000 + i, &format!("cali{round}x{i}"), true));
        }
        for i in 0..20_000u32 {
            l.link_deleted(1000 + i);
        }
        assert!(l.poll_diff().is_empty());
        assert_eq!(l.stats(), Stats::default());
        assert!(l.links.capacity() <= 128, "{}", l.links.capacity());
    }
}

#[test]
fn test_local_pref_follows_lowest_announcing_metric() {
    let mut l = Learner::new(
        Rules {
            local_pref_from_metric: true,
            ..rules()
        },
        scope(),
    );
    l.link_changed(link(7, "caliXYZ", true));
    // Outside our blocks, metric 1024: LOCAL_PREF 2147482623 (Calico's default pair).
    l.route_added(workload("192.168.1.9/32", 1024, 7));
    assert_eq!(l.poll_diff().originate, vec![net("192.168.1.9/32")]);
    assert_eq!(l.local_pref(&net("192.168.1.9/32")), Some(2_147_482_623));
    // A second route at a lower metric: announced again with its LOCAL_PREF.
    l.route_added(workload("192.168.1.9/32", 300, 7));
    assert_eq!(l.poll_diff().originate, vec![net("192.168.1.9/32")]);
    assert_eq!(l.local_pref(&net("192.168.1.9/32")), Some(2_147_483_347));
    // A route at a higher metric changes nothing.
    l.route_added(workload("192.168.1.9/32", 2000, 7));
    assert!(l.poll_diff().is_empty());
    // Inside a block only the elevated one announces: its metric counts.
    l.route_added(workload("192.168.0.5/32", 1024, 7));
    l.route_added(workload("192.168.0.5/32", 100, 7));
    assert_eq!(l.poll_diff().originate, vec![net("192.168.0.5/32")]);
    assert_eq!(l.local_pref(&net("192.168.0.5/32")), Some(2_147_483_547));
    // An interface prefix carries none; without the rule, nothing does.
    l.link_changed(link(2, "eth0", true));
    l.addr_added(addr(2, "192.0.2.101/24", 0));
    assert_eq!(l.poll_diff().originate, vec![net("192.0.2.0/24")]);
    assert_eq!(l.local_pref(&net("192.0.2.0/24")), None);
    assert!(l.set_rules(rules()));
    let d = l.poll_diff();
    assert_eq!(
        d.originate,
        vec![net("192.168.0.5/32"), net("192.168.1.9/32")]
    );
    assert_eq!(l.local_pref(&net("192.168.1.9/32")), None);
}

#[test]
fn test_set_rules_new_pools_announce_and_withdraw() {
    let mut l = Learner::new(rules(), scope());
    l.link_changed(link(7, "caliXYZ", true));
    l.route_added(workload("192.168.1.9/32", 1024, 7));
    l.route_added(workload("10.70.0.3/32", 1024, 7));
    assert_eq!(l.poll_diff().originate, vec![net("192.168.1.9/32")]);
    assert!(!l.set_rules(rules()));
    assert!(l.set_rules(Rules {
        pools: vec![net("10.70.0.0/16")],
        ..rules()
    }));
    let d = l.poll_diff();
    assert_eq!(d.originate, vec![net("10.70.0.3/32")]);
    assert_eq!(d.withdraw, vec![net("192.168.1.9/32")]);
}

#[test]
fn test_former_protocol_of_ours_is_never_learned() {
    let mut l = Learner::new(rules(), scope());
    l.link_changed(link(7, "caliXYZ", true));
    // Protocol 12 is ours: never learned.
    let ours = SeenRoute {
        protocol: 12,
        ..workload("192.168.1.9/32", 1024, 7)
    };
    l.route_added(ours.clone());
    assert!(l.poll_diff().is_empty());
    // A reload makes 13 ours: the routes of 12 still in the kernel are not another
    // program's, and 13's are ours now.
    assert!(l.set_rules(Rules {
        protocol: 13,
        ..rules()
    }));
    l.resync(
        Snapshot {
            routes: vec![
                ours,
                SeenRoute {
                    protocol: 13,
                    ..workload("192.168.1.10/32", 1024, 7)
                },
            ],
            ..Snapshot::default()
        },
        false,
    );
    assert!(l.poll_diff().is_empty());
    assert_eq!(l.stats().routes, 0);
}

#[test]
fn test_route_exclude_skips_routes_through_tunnel_devices() {
    let r = Rules {
        route_exclude: vec!["*.calico".into(), "tunl0".into()],
        ..rules()
    };
    // Felix's VXLAN route to another node's block, in the pool and outside our blocks.
    let vxlan = workload("192.168.1.0/26", 1024, 9);
    assert_eq!(
        decide_route(&r, &scope(), &vxlan, Some(&link(9, "vxlan.calico", true))),
        Verdict::Skip(Why::RouteExcluded)
    );
    // Not known yet: not announced until its link says.
    assert_eq!(
        decide_route(&r, &scope(), &vxlan, None),
        Verdict::Skip(Why::RouteExcluded)
    );
    // A borrowed workload on a cali veth is still announced.
    let borrowed = workload("192.168.1.9/32", 1024, 7);
    assert_eq!(
        decide_route(&r, &scope(), &borrowed, Some(&link(7, "cali1234", true))),
        Verdict::Announce(Why::OutsideBlocks)
    );
    // In the learner: the route waits for its link, and a rename decides again.
    let mut l = Learner::new(r, scope());
    l.route_added(vxlan);
    assert!(l.poll_diff().is_empty());
    l.link_changed(link(9, "eth9", true));
    assert_eq!(l.poll_diff().originate, vec![net("192.168.1.0/26")]);
    l.link_changed(link(9, "vxlan.calico", true));
    assert_eq!(l.poll_diff().withdraw, vec![net("192.168.1.0/26")]);
}
