//! `ctl neighbor` and `ctl routes --peer` as the core answers them: what the session
//! negotiated, flaps and NOTIFICATIONs, per-family counts, a peer's Adj-RIB-In and
//! Adj-RIB-Out, and the longest match.

use super::*;
use crate::speaker::{Direction, PeerRoute, PeerRoutesError, PeerRoutesQuery};

fn query(address: IpAddr, dir: Direction, received: bool) -> PeerRoutesQuery {
    PeerRoutesQuery {
        address,
        dir,
        received,
        filter: rib::RouteFilter::default(),
        cursor: rib::Cursor::default(),
        offset: 0,
        limit: 1000,
    }
}

fn prefixes(page: &[PeerRoute]) -> Vec<String> {
    let mut v: Vec<String> = page
        .iter()
        .map(|r| match r {
            PeerRoute::In(r) => r.prefix.to_string(),
            PeerRoute::Out { route, .. } => route.prefix.to_string(),
        })
        .collect();
    v.sort();
    v
}

#[test]
fn test_neighbor_detail_tables_and_flaps() {
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let mut h = Harness::new(
        config(&format!(
            "{}{}",
            client("10.0.0.2", "keepalive_time = 10"),
            client("10.0.0.3", "")
        )),
        false,
    );
    let before = h.core.peer_detail(h.now, a, &|_| 0).unwrap();
    assert_eq!(before.router_id, None);
    assert_eq!(before.last_up_s, None);
    assert_eq!(before.status.flaps, 0);
    h.establish(a);
    h.establish(b);
    h.announce(a, &["10.1.0.0/16", "10.1.2.0/24", "10.1.2.128/25"]);
    h.flush();
    h.advance(Duration::from_secs(5));

    let d = h.core.peer_detail(h.now, a, &|_| 0).unwrap();
    assert_eq!(d.router_id, Some("10.0.0.2".parse().unwrap()));
    assert_eq!(d.hold_time, Some(90));
    // The configured keepalive is shorter than a third of the hold time: it is used.
    assert_eq!(d.keepalive_time, Some(10));
    assert_eq!(d.local_address, Some(ip("10.0.0.1")));
    assert_eq!(d.local_port, Some(179));
    assert_eq!(d.families, ["ipv4-unicast"]);
    assert!(d.capabilities.iter().any(|c| c == "route-refresh"));
    assert_eq!(d.last_up_s, Some(0));
    assert_eq!(d.status.asn, 65000);
    assert_eq!(d.prefixes.len(), 1);
    let f = &d.prefixes[0];
    assert_eq!((f.received, f.accepted, f.best, f.advertised), (3, 3, 3, 0));
    let db = h.core.peer_detail(h.now, b, &|_| 0).unwrap();
    assert_eq!(db.keepalive_time, Some(30));
    assert_eq!(db.prefixes[0].advertised, 3);

    // The tables.
    let in_a = h.core.peer_routes(&query(a, Direction::In, false)).unwrap();
    assert_eq!(
        prefixes(&in_a.routes),
        ["10.1.0.0/16", "10.1.2.0/24", "10.1.2.128/25"]
    );
    let out_b = h
        .core
        .peer_routes(&query(b, Direction::Out, false))
        .unwrap();
    assert_eq!(prefixes(&out_b.routes), prefixes(&in_a.routes));
    assert!(out_b.routes.iter().all(|r| matches!(
        r,
        PeerRoute::Out { from: Some(x), .. } if *x == a
    )));
    // Its own routes are not sent back to a.
    let out_a = h
        .core
        .peer_routes(&query(a, Direction::Out, false))
        .unwrap();
    assert!(out_a.routes.is_empty());
    assert_eq!(
        h.core
            .peer_routes(&query(a, Direction::In, true))
            .unwrap_err(),
        PeerRoutesError::NotKept(a)
    );
    assert_eq!(
        h.core
            .peer_routes(&query(ip("10.9.9.9"), Direction::In, false))
            .unwrap_err(),
        PeerRoutesError::NoPeer(ip("10.9.9.9"))
    );
    // Offset paging skips routes, not prefixes of a page.
    let mut q = query(a, Direction::In, false);
    q.offset = 1;
    q.limit = 1;
    let p = h.core.peer_routes(&q).unwrap();
    assert_eq!(p.routes.len(), 1);
    assert!(p.next.is_some());
    q.offset = 3;
    assert!(h.core.peer_routes(&q).unwrap().routes.is_empty());
    // Longest match in the Loc-RIB.
    let l = h.core.lookup(ip("10.1.2.200")).unwrap();
    assert_eq!(l.explanation.prefix, net("10.1.2.128/25"));
    assert_eq!(
        h.core.lookup(ip("10.1.3.1")).unwrap().explanation.prefix,
        net("10.1.0.0/16")
    );
    assert!(h.core.lookup(ip("192.0.2.1")).is_none());

    // The peer shuts the session down with a message: a flap, the NOTIFICATION kept
    // with its text, the session's facts still readable.
    let n = Notification::cease_with_communication(subcode::cease::ADMIN_SHUTDOWN, "maintenance");
    h.event(
        a,
        News::Down {
            reason: DownReason::NotificationReceived(n),
            graceful: false,
        },
    );
    h.event(
        a,
        News::StateChanged {
            from: State::Established,
            to: State::Idle,
        },
    );
    h.advance(Duration::from_secs(7));
    let d = h.core.peer_detail(h.now, a, &|_| 0).unwrap();
    assert_eq!(d.status.flaps, 1);
    assert_eq!(d.last_up_s, Some(7));
    assert_eq!(d.last_state_change_s, 7);
    let nr = d.notification_received.as_ref().unwrap();
    assert_eq!((nr.code, nr.subcode), (6, 2));
    assert_eq!(nr.message.as_deref(), Some("maintenance"));
    assert_eq!(nr.code_name, "Cease");
    assert_eq!(nr.age_s, 7);
    assert_eq!(d.router_id, Some("10.0.0.2".parse().unwrap()));
    assert_eq!(d.prefixes[0].received, 0);
    h.establish(a);
    let d = h.core.peer_detail(h.now, a, &|_| 0).unwrap();
    assert_eq!((d.status.flaps, d.last_up_s), (1, Some(0)));
}
