//! A peer that restarts gracefully (RFC 4724) and connects again while its session is
//! Established has restarted: the old session goes down gracefully and the new connection
//! is taken. But a connection that comes right after the session came up is the peer's
//! own attempt crossing ours (both sides connecting at once after a restart): it is
//! refused (RFC 4271 §6.8), and the session stays. Taking it instead replaced the
//! sessions back and forth for seconds with BIRD 1.6.
//!
//! One passive session task (`rr_daemon::session::spawn`) on loopback, the test playing
//! the peer at 127.0.96.2 (with the graceful restart capability) and the listener.

#[allow(dead_code)] // Shared with the other end-to-end tests.
mod rawpeer;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bgp_fsm::News;
use rawpeer::{V4, caps, hand_over, loopback_spec, open};
use rr_daemon::session::{self, SessionEvent, Writers};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const AS: u32 = 65000;

/// Graceful restart capability (64): restart time 120 s, IPv4 unicast with forwarding
/// state kept.
const GRACEFUL_RESTART: [u8; 10] = [2, 8, 64, 6, 0x00, 120, 0, 1, 1, 0x80];

/// The test's peer.
fn peer_ip() -> IpAddr {
    "127.0.96.2".parse().unwrap()
}

/// The session's news within `within`, Established and Down only.
async fn news(events: &mut mpsc::Receiver<SessionEvent>, within: Duration) -> Vec<String> {
    let until = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout_at(until, events.recv()).await {
        match e.news {
            News::Established { .. } => seen.push("established".to_string()),
            News::Down { graceful, .. } => seen.push(format!("down graceful={graceful}")),
            _ => {}
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crossing_connection_is_refused_a_later_one_is_a_restart() {
    let listener = TcpListener::bind("127.0.96.1:0").await.unwrap();
    let mut fsm = bgp_fsm::Config::new(AS, Ipv4Addr::new(127, 0, 96, 1), AS);
    fsm.passive = true;
    fsm.timing.hold_time = 30;
    let spec = loopback_spec(fsm, peer_ip(), 179, None);
    let (events_tx, mut events) = mpsc::channel(1024);
    let h = session::spawn(spec, 1, events_tx, Arc::new(Writers::default()));
    let mut params = caps(AS, &[V4]);
    params.extend_from_slice(&GRACEFUL_RESTART);
    let open = open(AS as u16, 30, Ipv4Addr::new(127, 0, 96, 2), &params);

    let mut first = hand_over(&listener, &h, peer_ip(), "first").await;
    first
        .establish(&open)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        news(&mut events, Duration::from_millis(100)).await,
        ["established"]
    );

    // Right after: the peer's own attempt, crossing. Refused; the session stays.
    let mut crossing = hand_over(&listener, &h, peer_ip(), "crossing").await;
    let _ = crossing.send(&open).await;
    crossing
        .expect_closed(true)
        .await
        .unwrap_or_else(|e| panic!("crossing: {e}"));
    assert!(
        news(&mut events, Duration::from_millis(200))
            .await
            .is_empty()
    );
    first.check_alive().unwrap_or_else(|e| panic!("{e}"));

    // Once the session has been up a while, a new connection is a restart: the old
    // session goes down gracefully and the new one is taken.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut again = hand_over(&listener, &h, peer_ip(), "after a restart").await;
    again
        .establish(&open)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        news(&mut events, Duration::from_millis(200)).await,
        ["down graceful=true", "established"]
    );
    drop(h);
}
