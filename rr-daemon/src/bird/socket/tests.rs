//! Exact bytes of replies, against what BIRD 1.6.8 sent for the same state (transcripts of
//! BIRD 1.6 on the seed's mesh files, its times replaced by the clock's here).

use super::*;
use crate::bird::Dialect;
use bgp_wire::ErrorCode;

fn clock() -> Clock {
    Clock {
        now: "2026-12-06T17:41:35Z".parse().unwrap(),
        tz: TimeZone::UTC,
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn framed(replies: &[Reply]) -> String {
    let mut f = Framer::new();
    let mut out = f.greeting();
    for r in replies {
        f.write(r, &mut out);
    }
    out
}

fn simple(name: &str, kind: ProtoKind) -> ProtoView {
    ProtoView {
        name: name.into(),
        kind,
        state: ProtoState::Up,
        since: ts("2026-12-06T17:41:21Z"),
        description: None,
        preference: default_preference(kind),
        import: "ACCEPT".into(),
        export: "REJECT".into(),
        recovery: None,
        routes: RouteCounts::default(),
        bgp: None,
    }
}

fn mesh(state: &'static str, error: Option<&str>) -> ProtoView {
    let up = state == "Established";
    ProtoView {
        state: if up {
            ProtoState::Up
        } else {
            ProtoState::Start
        },
        since: ts("2026-12-06T17:41:23Z"),
        description: Some("Connection to BGP peer".into()),
        import: "(unnamed)".into(),
        export: "(unnamed)".into(),
        bgp: Some(BgpView {
            state,
            neighbor: "172.17.42.32".parse().unwrap(),
            neighbor_as: 64512,
            helping: false,
            last_error: error.map(str::to_owned),
            session: None,
            source: None,
        }),
        ..simple("Mesh_172_17_42_32", ProtoKind::Bgp)
    }
}

fn node1(bgp: ProtoView) -> Vec<ProtoView> {
    vec![
        simple("static1", ProtoKind::Static),
        simple("kernel1", ProtoKind::Kernel),
        simple("device1", ProtoKind::Device),
        simple("direct1", ProtoKind::Direct),
        bgp,
    ]
}

#[test]
fn greeting_and_show_status() {
    let s = StatusView {
        router_id: "172.17.42.31".parse().unwrap(),
        boot: ts("2026-12-06T17:41:21Z"),
        reconfigured: ts("2026-12-06T17:41:21Z"),
        recovery: None,
        shutting_down: false,
    };
    assert_eq!(
        framed(&[show_status(&s, &clock())]),
        "0001 BIRD v0.3.3+birdv1.6.8 ready.\n\
         1000-BIRD v0.3.3+birdv1.6.8\n\
         1011-Router ID is 172.17.42.31\n \
         Current server time is 2026-12-06 17:41:35\n \
         Last reboot on 2026-12-06 17:41:21\n \
         Last reconfiguration on 2026-12-06 17:41:21\n\
         0013 Daemon is up and running\n"
    );
}

#[test]
fn show_status_during_graceful_restart_recovery() {
    let s = StatusView {
        router_id: "172.17.42.32".parse().unwrap(),
        boot: ts("2026-12-06T17:41:33Z"),
        reconfigured: ts("2026-12-06T17:41:33Z"),
        recovery: Some(Recovery {
            waiting: 1,
            remaining_s: 238,
            wait_s: 240,
        }),
        shutting_down: false,
    };
    let mut out = String::new();
    Framer::new().write(&show_status(&s, &clock()), &mut out);
    assert_eq!(
        out,
        "1000-BIRD v0.3.3+birdv1.6.8\n\
         1011-Router ID is 172.17.42.32\n \
         Current server time is 2026-12-06 17:41:35\n \
         Last reboot on 2026-12-06 17:41:33\n \
         Last reconfiguration on 2026-12-06 17:41:33\n\
         0024-Graceful restart recovery in progress\n   \
         Waiting for 1 protocols to recover\n   \
         Wait timer is 238/240\n\
         0013 Daemon is up and running\n"
    );
}

#[test]
fn show_protocols_as_bird_16() {
    let protos = node1(mesh("Established", None));
    let mut out = String::new();
    Framer::new().write(
        &show_protocols(&protos, false, &Which::All, &clock()),
        &mut out,
    );
    assert_eq!(
        out,
        "2002-name     proto    table    state  since       info\n\
         1002-static1  Static   master   up     17:41:21    \n \
         kernel1  Kernel   master   up     17:41:21    \n \
         device1  Device   master   up     17:41:21    \n \
         direct1  Direct   master   up     17:41:21    \n \
         Mesh_172_17_42_32 BGP      master   up     17:41:23    Established   \n\
         0000 \n"
    );
}

#[test]
fn show_protocols_all_of_a_session_down() {
    let protos = node1(mesh("Passive", Some("Received: Administrative shutdown")));
    let mut out = String::new();
    Framer::new().write(
        &show_protocols(
            &protos,
            true,
            &Which::Name("Mesh_172_17_42_32".into()),
            &clock(),
        ),
        &mut out,
    );
    assert_eq!(
        out,
        "2002-name     proto    table    state  since       info\n\
         1002-Mesh_172_17_42_32 BGP      master   start  17:41:23    Passive       Received: Administrative shutdown\n\
         1006-  Description:    Connection to BGP peer\n   \
         Preference:     100\n   \
         Input filter:   (unnamed)\n   \
         Output filter:  (unnamed)\n   \
         Routes:         0 imported, 0 exported, 0 preferred\n   \
         BGP state:          Passive\n     \
         Neighbor address: 172.17.42.32\n     \
         Neighbor AS:      64512\n     \
         Last error:       Received: Administrative shutdown\n \n\
         0000 \n"
    );
}

#[test]
fn show_protocols_names_and_patterns() {
    let protos = node1(mesh("Active", Some("Socket: Connection refused")));
    let c = clock();
    assert_eq!(
        show_protocols(&protos, true, &Which::Name("calico_aggr".into()), &c),
        Reply::one(9002, "calico_aggr is not a protocol")
    );
    assert_eq!(
        show_protocols(&protos, false, &Which::Pattern("zz*".into()), &c),
        Reply::one(8003, "No protocols match")
    );
    let mesh_only = show_protocols(&protos, false, &Which::Pattern("Mesh*".into()), &c);
    assert_eq!(mesh_only.lines.len(), 3);
    assert_eq!(
        mesh_only.lines[1].text,
        "Mesh_172_17_42_32 BGP      master   start  17:41:23    Active        Socket: Connection refused"
    );
    assert!(pattern_match("*_42_3?", "Mesh_172_17_42_32"));
    assert!(pattern_match("*", ""));
    assert!(!pattern_match("Node_*", "Mesh_172_17_42_32"));
}

#[test]
fn several_commands_on_one_connection_keep_the_framing() {
    // After `0000 `, a new table opens with its code again; a code repeated from the last
    // line of the previous reply still opens a group only when not last.
    let mut f = Framer::new();
    let mut out = f.greeting();
    f.write(&Reply::one(0, ""), &mut out);
    f.write(&show_protocols(&[], false, &Which::All, &clock()), &mut out);
    f.write(&Reply::syntax_error(), &mut out);
    assert_eq!(
        out,
        "0001 BIRD v0.3.3+birdv1.6.8 ready.\n0000 \n\
         2002-name     proto    table    state  since       info\n0000 \n9001 syntax error\n"
    );
}

#[test]
fn parses_the_commands_calico_and_operators_send() {
    assert_eq!(parse("show status", Dialect::Bird), Ok(Command::ShowStatus));
    assert_eq!(
        parse("  show    status   ", Dialect::Bird),
        Ok(Command::ShowStatus)
    );
    assert_eq!(
        parse("show protocols", Dialect::Bird),
        Ok(Command::ShowProtocols {
            all: false,
            which: Which::All
        })
    );
    assert_eq!(
        parse("show protocols all Mesh_10_0_0_2", Dialect::Bird),
        Ok(Command::ShowProtocols {
            all: true,
            which: Which::Name("Mesh_10_0_0_2".into())
        })
    );
    assert_eq!(
        parse("show protocols \"Mesh*\"", Dialect::Bird),
        Ok(Command::ShowProtocols {
            all: false,
            which: Which::Pattern("Mesh*".into())
        })
    );
    assert_eq!(
        parse(
            "show route for 192.168.0.70 all protocol Mesh_10_0_0_2",
            Dialect::Bird
        ),
        Ok(Command::ShowRoute(RouteQuery {
            prefix: Some(("192.168.0.70/32".parse().unwrap(), true)),
            all: true,
            protocol: Some("Mesh_10_0_0_2".into()),
            ..RouteQuery::default()
        }))
    );
    assert_eq!(
        parse("show route 192.168.0.0/26", Dialect::Bird),
        Ok(Command::ShowRoute(RouteQuery {
            prefix: Some(("192.168.0.0/26".parse().unwrap(), false)),
            ..RouteQuery::default()
        }))
    );
    assert_eq!(
        parse("configure check", Dialect::Bird),
        Ok(Command::Configure {
            check: true,
            file: None
        })
    );
    assert_eq!(
        parse(
            "configure soft \"/etc/calico/confd/config/bird.cfg\"",
            Dialect::Bird
        ),
        Ok(Command::Configure {
            check: false,
            file: Some("/etc/calico/confd/config/bird.cfg".into())
        })
    );
    assert_eq!(parse("down", Dialect::Bird), Ok(Command::Down));
    for bad in [
        "",
        "bogus",
        "show foo",
        "SHOW STATUS",
        "show route for 1.2.3",
        "show protocols all \"unterminated",
        "show status now",
        "configure soft check",
        "show protocols all all",
    ] {
        assert_eq!(
            parse(bad, Dialect::Bird),
            Err(Reply::syntax_error()),
            "{bad:?}"
        );
    }
    for (line, error) in [
        ("show route 192.168.0.1/26", "Invalid prefix"),
        ("show route for 10.0.0.0/33", "Invalid prefix length 33"),
        (
            "show route protocol static1 protocol kernel1",
            "Protocol specified twice",
        ),
        (
            "show route for fd00::1",
            "This is an IPv4 router, therefore IPv6 addresses are not supported",
        ),
    ] {
        assert_eq!(
            parse(line, Dialect::Bird),
            Err(Reply::one(9001, error)),
            "{line}"
        );
    }
    assert_eq!(
        parse("show route for 10.0.0.1", Dialect::Bird6),
        Err(Reply::one(
            9001,
            "This is an IPv6 router, therefore IPv4 addresses are not supported"
        ))
    );
    assert_eq!(
        parse("show interfaces", Dialect::Bird).unwrap_err().lines[0].code,
        9001,
        "valid in BIRD, not answered here"
    );
}

fn bgp_route() -> RouteRow {
    let attrs = rib::Attrs {
        local_pref: Some(2147482623),
        ..rib::Attrs::default()
    };
    RouteRow {
        prefix: "192.168.0.64/26".parse().unwrap(),
        dest: Dest::Router {
            gateway: "172.17.42.32".parse().unwrap(),
            iface: "eth0".into(),
        },
        protocol: "Mesh_172_17_42_32".into(),
        since: ts("2026-12-06T17:41:23Z"),
        from: Some("172.17.42.32".parse().unwrap()),
        primary: true,
        info: bgp_route_info(&attrs, 100, false, "/0"),
        attrs: bgp_attr_lines(&attrs, Some("172.17.42.32".parse().unwrap())),
    }
}

fn static_route() -> RouteRow {
    RouteRow {
        prefix: "192.168.0.0/26".parse().unwrap(),
        dest: Dest::Blackhole,
        protocol: "static1".into(),
        since: ts("2026-12-06T17:41:21Z"),
        from: None,
        primary: true,
        info: " (200)".into(),
        attrs: vec![(1008, "Type: static unicast univ".into())],
    }
}

const PROTOS: &[&str] = &["static1", "kernel1", "Mesh_172_17_42_32"];

#[test]
fn show_route_lines_as_bird_16() {
    let rows = [static_route(), bgp_route()];
    let c = clock();
    let mut out = String::new();
    let mut f = Framer::new();
    f.write(
        &show_route(&rows, &RouteQuery::default(), PROTOS, &c),
        &mut out,
    );
    let all = RouteQuery {
        all: true,
        ..RouteQuery::default()
    };
    f.write(&show_route(&rows, &all, PROTOS, &c), &mut out);
    assert_eq!(
        out,
        "1007-192.168.0.0/26     blackhole [static1 17:41:21] * (200)\n \
         192.168.0.64/26    via 172.17.42.32 on eth0 [Mesh_172_17_42_32 17:41:23] * (100/0) [i]\n\
         0000 \n\
         1007-192.168.0.0/26     blackhole [static1 17:41:21] * (200)\n\
         1008-\tType: static unicast univ\n\
         1007-192.168.0.64/26    via 172.17.42.32 on eth0 [Mesh_172_17_42_32 17:41:23] * (100/0) [i]\n\
         1008-\tType: BGP unicast univ\n\
         1012-\tBGP.origin: IGP\n \
         \tBGP.as_path: \n \
         \tBGP.next_hop: 172.17.42.32\n \
         \tBGP.local_pref: 2147482623\n\
         0000 \n"
    );
}

#[test]
fn show_route_selections_and_errors() {
    let rows = [static_route(), bgp_route()];
    let c = clock();
    let by_proto = RouteQuery {
        protocol: Some("Mesh_172_17_42_32".into()),
        ..RouteQuery::default()
    };
    let r = show_route(&rows, &by_proto, PROTOS, &c);
    assert_eq!(r.lines.len(), 2);
    assert!(r.lines[0].text.starts_with("192.168.0.64/26    via"));
    let nosuch = RouteQuery {
        protocol: Some("nosuch".into()),
        ..RouteQuery::default()
    };
    assert_eq!(
        show_route(&rows, &nosuch, PROTOS, &c),
        Reply::one(9001, "nosuch is not a protocol")
    );
    let missing = RouteQuery {
        prefix: Some(("10.9.9.9/32".parse().unwrap(), true)),
        ..RouteQuery::default()
    };
    assert_eq!(
        show_route(&[], &missing, PROTOS, &c),
        Reply::one(8001, "Network not in table")
    );
    let count = RouteQuery {
        count: true,
        ..RouteQuery::default()
    };
    assert_eq!(
        show_route(&rows, &count, PROTOS, &c),
        Reply::one(14, "2 of 2 routes for 2 networks")
    );
    assert_eq!(
        show_route(&[], &RouteQuery::default(), PROTOS, &c),
        Reply::one(0, "")
    );
}

#[test]
fn reflected_routes_say_where_they_came_from() {
    let mut r = bgp_route();
    r.from = Some("172.17.42.40".parse().unwrap());
    let a = rib::Attrs {
        as_path: bgp_wire::attr::AsPath::from_sequence([65001, 65002]),
        origin: bgp_wire::attr::Origin(2),
        ..rib::Attrs::default()
    };
    r.info = bgp_route_info(&a, 100, true, "/-");
    assert_eq!(
        route_line(&r, true, &clock()),
        "192.168.0.64/26    via 172.17.42.32 on eth0 [Mesh_172_17_42_32 17:41:23 from 172.17.42.40] * (100s/-) [AS65002?]"
    );
}

#[test]
fn down_reasons_in_birds_words() {
    let n = |c: u8, s: u8| Notification::new(ErrorCode(c), s);
    assert_eq!(
        bgp_error(&DownReason::ConnectionFailed(
            "Connection refused (os error 111)".into()
        ))
        .as_deref(),
        Some("Socket: Connection refused")
    );
    assert_eq!(
        bgp_error(&DownReason::NotificationReceived(n(6, 2))).as_deref(),
        Some("Received: Administrative shutdown")
    );
    assert_eq!(
        bgp_error(&DownReason::NotificationSent(n(4, 0))).as_deref(),
        Some("BGP Error: Hold timer expired")
    );
    assert_eq!(
        bgp_error(&DownReason::NotificationSent(n(9, 9))).as_deref(),
        Some("BGP Error: Unknown error 9.9")
    );
    assert_eq!(bgp_error(&DownReason::Stopped), None);
}

#[test]
fn configure_and_down_replies() {
    let mut out = String::new();
    let mut f = Framer::new();
    f.write(&configure_reply("/etc/bird.conf", Ok(()), false), &mut out);
    f.write(&configure_reply("/etc/bird.conf", Ok(()), true), &mut out);
    f.write(
        &configure_reply(
            "/etc/bird.conf",
            Err("/etc/bird.conf:3:7 syntax error".into()),
            true,
        ),
        &mut out,
    );
    f.write(&down_reply(), &mut out);
    assert_eq!(
        out,
        "0002-Reading configuration from /etc/bird.conf\n0020 Configuration OK\n\
         0002-Reading configuration from /etc/bird.conf\n0003 Reconfigured\n\
         0002-Reading configuration from /etc/bird.conf\n8002 /etc/bird.conf:3:7 syntax error\n\
         0007 Shutdown requested\n"
    );
}

#[test]
fn short_times_are_one_word() {
    let c = clock();
    assert_eq!(c.short(ts("2026-12-06T01:02:03Z")), "01:02:03");
    assert_eq!(c.short(ts("2026-11-05T01:02:03Z")), "Nov05");
    assert_eq!(c.short(ts("2024-11-05T01:02:03Z")), "2024");
}
