//! BMP on the core: nothing while no collector is attached, a dump of every Established
//! peer when one attaches, then the live stream in the core's order.

use super::*;
use crate::bmp::Event;
use crate::bmp::wire::down_reason;

fn two_clients() -> Harness {
    let text = format!("{}{}", client("10.0.0.2", ""), client("10.0.0.3", ""));
    Harness::new(config(&text), false)
}

#[test]
fn nothing_is_told_without_a_collector() {
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let mut h = two_clients();
    h.establish(a);
    h.establish(b);
    h.announce(a, &["10.1.0.0/24", "10.1.1.0/24"]);
    h.flush();
    h.down(b, false);
    assert!(h.monitor.is_empty(), "{:?}", h.monitor);
}

#[test]
fn a_collector_gets_the_table_then_the_live_stream() {
    let (a, b) = (ip("10.0.0.2"), ip("10.0.0.3"));
    let mut h = two_clients();
    h.establish(a);
    h.establish(b);
    h.announce(a, &["10.1.0.0/24", "10.1.1.0/24"]);
    h.announce(b, &["10.2.0.0/24"]);
    h.flush();

    h.core.bmp_attach(7, true, true);
    h.drain();
    let [(Some(7), Event::Dump(dump))] = &h.monitor[..] else {
        panic!("{:?}", h.monitor)
    };
    let got: Vec<(IpAddr, usize, u16, Vec<u8>)> = dump
        .iter()
        .map(|d| {
            (
                d.up.header.address,
                d.routes.len(),
                d.up.remote_port,
                d.up.sent_open.to_vec(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(a, 2, 40000, vec![0xff; 19]), (b, 1, 40000, vec![0xff; 19])]
    );
    // The OPEN we received, whole: a BGP message of type OPEN.
    assert_eq!(dump[0].up.received_open[18], 1);
    h.monitor.clear();

    h.announce(a, &["10.1.2.0/24"]);
    let [
        (None, Event::Update { peer, frame }),
        (None, Event::Post { routes, .. }),
    ] = &h.monitor[..]
    else {
        panic!("{:?}", h.monitor)
    };
    assert_eq!(*peer, a);
    assert_eq!(frame[18], 2, "the UPDATE as received");
    assert_eq!(routes.len(), 1);
    assert!(routes[0].1.is_some(), "stored after import policy");
    h.monitor.clear();

    h.down(b, false);
    let downs: Vec<(IpAddr, u8)> = h
        .monitor
        .iter()
        .filter_map(|(_, e)| match e {
            Event::PeerDown { peer, reason, .. } => Some((*peer, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(downs, vec![(b, down_reason::REMOTE_NO_NOTIFICATION)]);
    h.monitor.clear();

    // Only pre-policy wanted: no post-policy lookups.
    h.core.bmp_detach(7);
    h.core.bmp_attach(8, true, false);
    h.drain();
    h.monitor.clear();
    h.announce(a, &["10.1.3.0/24"]);
    assert!(
        matches!(&h.monitor[..], [(None, Event::Update { .. })]),
        "{:?}",
        h.monitor
    );
    h.core.bmp_stats(8);
    h.drain();
    let Some((Some(8), Event::Stats(s))) = h.monitor.last() else {
        panic!("{:?}", h.monitor)
    };
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].peer, s[0].adj_rib_in, s[0].rejected), (a, 4, 0));
}

#[test]
fn a_removed_peer_goes_down_as_deconfigured() {
    let a = ip("10.0.0.2");
    let mut h = two_clients();
    h.establish(a);
    h.core.bmp_attach(1, true, false);
    h.drain();
    h.monitor.clear();
    assert!(h.core.remove_peer(a));
    h.drain();
    let [(None, Event::PeerDown { peer, reason, .. })] = &h.monitor[..] else {
        panic!("{:?}", h.monitor)
    };
    assert_eq!((*peer, *reason), (a, down_reason::DECONFIGURED));
}
