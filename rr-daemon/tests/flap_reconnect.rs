//! A peer that ends its session with a Cease and connects again at once is taken on that
//! new connection, every time: the session reads the Cease already in its socket before
//! it judges the newcomer, instead of refusing it as a second connection beside an
//! Established one (and the peer waiting for its next attempt).
//!
//! One passive session task (`rr_daemon::session::spawn`) on loopback, the test playing
//! the peer at 127.0.97.2 and the listener: each accepted connection is handed to the
//! session's `inbound` at once, as the speaker's shell does. Twenty flaps.

#[allow(dead_code)] // Shared with the other end-to-end tests.
mod rawpeer;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bgp_fsm::News;
use rawpeer::{V4, WAIT, caps, hand_over, loopback_spec, message, open};
use rr_daemon::session::{self, SessionEvent, Writers};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const AS: u32 = 65000;
const FLAPS: usize = 20;
/// Cease (6), Administrative Reset (4).
const CEASE_RESET: [u8; 2] = [6, 4];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Waits for the session's next Established, skipping its other news.
async fn established(events: &mut mpsc::Receiver<SessionEvent>, name: &str) {
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(until, events.recv()).await {
            Ok(Some(SessionEvent {
                news: News::Established { .. },
                ..
            })) => return,
            Ok(Some(_)) => {}
            Ok(None) => panic!("{name}: the session task ended"),
            Err(_) => panic!("{name}: not Established within {WAIT:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_ceases_and_reconnects_at_once_is_taken() {
    let listener = TcpListener::bind("127.0.97.1:0").await.unwrap();
    let mut fsm = bgp_fsm::Config::new(AS, Ipv4Addr::new(127, 0, 97, 1), AS);
    fsm.passive = true;
    fsm.timing.hold_time = 30;
    let spec = loopback_spec(fsm, ip("127.0.97.2"), 179, None);
    let (events_tx, mut events) = mpsc::channel(1024);
    let h = session::spawn(spec, 1, events_tx, Arc::new(Writers::default()));
    let open = open(
        AS as u16,
        30,
        Ipv4Addr::new(127, 0, 97, 2),
        &caps(AS, &[V4]),
    );

    let mut peer = hand_over(&listener, &h, ip("127.0.97.2"), "first connection").await;
    peer.establish(&open)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    established(&mut events, "first connection").await;
    for i in 1..=FLAPS {
        let name = format!("connection after flap {i}");
        // The Cease, then the new connection at once: its SYN comes after the Cease and
        // the FIN, as from bgp-load or a node's BGP daemon restarting its session.
        peer.send(&message(3, &CEASE_RESET))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        drop(peer);
        peer = hand_over(&listener, &h, ip("127.0.97.2"), &name).await;
        peer.establish(&open)
            .await
            .unwrap_or_else(|e| panic!("{e}: refused instead of taken"));
        established(&mut events, &name).await;
    }
    drop(h);
}
