//! A session whose owner (the core) takes none of its events for a long while: the
//! session still sends its KEEPALIVEs and its hold timer does not expire; once the owner
//! reads again, every event arrives, in order.
//!
//! One session task (`rr_daemon::session::spawn`) on loopback (127.0.94.1 to a raw peer
//! at 127.0.94.2 that the test plays), hold time 3 s, its events channel of capacity 1
//! left unread for 10 s while the peer sends 5,000 UPDATEs and a KEEPALIVE a second.

#[allow(dead_code)] // Shared with the other end-to-end tests.
mod rawpeer;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bgp_fsm::News;
use bgp_wire::Framer;
use bytes::BytesMut;
use rawpeer::{
    KEEPALIVE, NOTIFICATION, OPEN, V4, caps, describe_notification, keepalive, loopback_spec, open,
    update,
};
use rr_daemon::session::{self, Writers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const AS: u32 = 65000;
const HOLD: u16 = 3;
const BUSY: Duration = Duration::from_secs(10);
/// About 200 KB of UPDATEs: more than a session holds for a busy owner (64 KiB), so it
/// stops reading part of the time.
const UPDATES: usize = 5000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_core_is_busy_keeps_its_peer() {
    let listener = TcpListener::bind("127.0.94.2:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut fsm = bgp_fsm::Config::new(AS, Ipv4Addr::new(127, 0, 94, 1), AS);
    fsm.timing.hold_time = HOLD;
    fsm.timing.connect_retry = Duration::from_secs(1);
    let spec = loopback_spec(fsm, ip("127.0.94.2"), port, Some(ip("127.0.94.1")));
    // The owner: a channel of one event, not read during the busy period.
    let (events_tx, mut events) = mpsc::channel(1);
    let handle = session::spawn(spec, 7, events_tx, Arc::new(Writers::default()));

    let (stream, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("the session connects")
        .unwrap();
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(&open(
        AS as u16,
        HOLD,
        Ipv4Addr::new(127, 0, 94, 2),
        &caps(AS, &[V4]),
    ))
    .await
    .unwrap();
    wr.write_all(&keepalive()).await.unwrap();

    // The peer: 5,000 UPDATEs (one prefix each) at once, then a KEEPALIVE every second; it
    // counts the speaker's KEEPALIVEs and watches for a NOTIFICATION.
    let attrs = rawpeer::hex("40 01 01 00 40 02 00 40 03 04 C0000201 40 05 04 00000064");
    for i in 0..UPDATES {
        let nlri = [24u8, 10, (i / 256) as u8, (i % 256) as u8];
        wr.write_all(&update(&[], &attrs, &nlri)).await.unwrap();
    }
    let framer = Framer::new();
    let mut rbuf = BytesMut::new();
    let mut ours = (0usize, false, false); // keepalives, OPEN seen, NOTIFICATION seen
    let mut notification = None;
    let t0 = Instant::now();
    let mut next_keepalive = t0 + Duration::from_secs(1);
    while t0.elapsed() < BUSY {
        let until = tokio::time::Instant::from_std(next_keepalive.min(t0 + BUSY));
        match tokio::time::timeout_at(until, rd.read_buf(&mut rbuf)).await {
            Ok(Ok(0)) => panic!("the session closed the connection after {:?}", t0.elapsed()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("read: {e}"),
            Err(_) => {}
        }
        while let Ok(Some(f)) = framer.next_frame(&mut rbuf) {
            match f.ty.0 {
                OPEN => ours.1 = true,
                KEEPALIVE => ours.0 += 1,
                NOTIFICATION => {
                    ours.2 = true;
                    notification = Some(describe_notification(&f.bytes));
                }
                _ => {}
            }
        }
        if Instant::now() >= next_keepalive {
            wr.write_all(&keepalive()).await.unwrap();
            next_keepalive += Duration::from_secs(1);
        }
    }
    eprintln!(
        "busy {BUSY:?}: {} KEEPALIVEs from the session, OPEN {}, NOTIFICATION {notification:?}; {} event(s) queued for the owner",
        ours.0,
        ours.1,
        events.len()
    );
    assert!(ours.1, "no OPEN from the session");
    assert!(notification.is_none(), "the session sent {notification:?}");
    // One a second (a third of the hold time) over 10 s, minus start-up.
    assert!(ours.0 >= 7, "only {} KEEPALIVEs in {BUSY:?}", ours.0);

    // The owner reads at last: every event, in order; the session is still up.
    let mut updates = 0;
    let mut established = false;
    let mut down = None;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(2), events.recv()).await {
        assert_eq!(e.generation, 7);
        // One event carries the UPDATEs of a read.
        let carried = e.updates().count();
        match e.news {
            News::Established { .. } => {
                assert_eq!(updates, 0, "an UPDATE before Established");
                established = true;
            }
            News::Update(_) => updates += carried,
            News::Down { reason, .. } => down = Some(reason.to_string()),
            _ => {}
        }
    }
    assert!(established, "no Established event");
    assert_eq!(updates, UPDATES, "UPDATE events delivered");
    assert!(down.is_none(), "the session went down: {down:?}");
    drop(handle.commands);
    let _ = tokio::time::timeout(Duration::from_secs(5), handle.task).await;
}
