//! A session hands its owner the UPDATEs of a read in one event: every UPDATE arrives, in
//! order, before the news that followed it on the wire (here the peer's NOTIFICATION), no
//! event carries more than 64 KiB of UPDATEs, and the owner's intake (1 MiB of UPDATE
//! bytes on their way, `session::INTAKE`) comes back as the owner drops what it handled:
//! the peer sends about 2.5 MiB, more than twice the intake.
//!
//! One session task (`rr_daemon::session::spawn`) on loopback (127.0.95.1 to a raw peer at
//! 127.0.95.2 that the test plays).

#[allow(dead_code)] // Shared with the other end-to-end tests.
mod rawpeer;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bgp_fsm::News;
use rawpeer::{V4, caps, keepalive, loopback_spec, message, open, update};
use rr_daemon::session::{self, Writers};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const AS: u32 = 65000;
const UPDATES: usize = 50_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reads_updates_arrive_in_one_event_before_what_followed() {
    let listener = TcpListener::bind("127.0.95.2:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut fsm = bgp_fsm::Config::new(AS, Ipv4Addr::new(127, 0, 95, 1), AS);
    fsm.timing.connect_retry = Duration::from_secs(1);
    let spec = loopback_spec(fsm, ip("127.0.95.2"), port, Some(ip("127.0.95.1")));
    let (events_tx, mut events) = mpsc::channel(4096);
    let handle = session::spawn(spec, 3, events_tx, Arc::new(Writers::default()));
    let (stream, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("the session connects")
        .unwrap();
    let (_rd, mut wr) = stream.into_split();
    // OPEN, KEEPALIVE, the UPDATEs and a Cease, in one stream.
    let mut wire = open(
        AS as u16,
        90,
        Ipv4Addr::new(127, 0, 95, 2),
        &caps(AS, &[V4]),
    );
    wire.extend(keepalive());
    let attrs = rawpeer::hex("40 01 01 00 40 02 00 40 03 04 C0000201 40 05 04 00000064");
    for i in 0..UPDATES {
        let nlri = [24u8, 10, (i / 256) as u8, (i % 256) as u8];
        wire.extend(update(&[], &attrs, &nlri));
    }
    let sent_bytes = wire.len();
    wire.extend(message(3, &[6, 2]));
    let writer = tokio::spawn(async move {
        wr.write_all(&wire).await.unwrap();
        wr
    });

    let (mut updates, mut batched, mut biggest) = (0usize, false, 0usize);
    let mut next_prefix = 0usize;
    let mut down = false;
    // Bounded: the session ends with the peer's Cease; each wait at most 10 s.
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
        assert_eq!(e.generation, 3);
        let carried = e.updates().count();
        if carried > 0 {
            assert!(!down, "an UPDATE after the session went down");
            batched |= carried > 1;
            biggest = biggest.max(e.update_bytes());
            // In order: each frame's last NLRI octets count up.
            for f in e.updates() {
                let b = &f.bytes[f.bytes.len() - 2..];
                assert_eq!(
                    usize::from(b[0]) * 256 + usize::from(b[1]),
                    next_prefix % 65536
                );
                next_prefix += 1;
            }
            updates += carried;
        }
        if matches!(e.news, News::Down { .. }) {
            down = true;
            break;
        }
    }
    assert_eq!(updates, UPDATES, "UPDATEs delivered of {sent_bytes} bytes");
    assert!(down, "no Down after the peer's Cease");
    assert!(batched, "no event carried more than one UPDATE");
    assert!(biggest <= 64 << 10, "an event carried {biggest} bytes");
    let _ = writer.await;
    drop(handle.commands);
    let _ = tokio::time::timeout(Duration::from_secs(5), handle.task).await;
}
