//! Best-path subscribers are on a bounded channel: one that does not read is never sent
//! a backlog of every change, the changes wait in the RIB one per prefix, and what it
//! reads at last is each prefix in its latest state.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use rib::Attrs;
use rr_daemon::config::Config;
use rr_daemon::speaker::{SUBSCRIBER_CAPACITY, Speaker};

const CONFIG: &str = r#"
[speaker]
asn = 65000
router_id = "127.0.0.60"
listen = []

[api]
enabled = false
"#;

/// Distinct prefixes churned.
const PREFIXES: u32 = 10_000;
/// Times each is originated again with other attributes.
const ROUNDS: u32 = 5;

fn prefix(i: u32) -> IpNet {
    IpNet::V4(Ipv4Net::new((0x0a00_0000 + (i << 8)).into(), 24).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_does_not_read_gets_the_latest_state_per_prefix() {
    let config = Config::parse(CONFIG, Path::new("sub.toml")).expect("valid");
    let (speaker, core) = Speaker::start(config).await.expect("starts");
    let mut rx = speaker.subscribe().await.expect("subscribes");
    // 50,000 changes while the subscriber reads nothing; the odd prefixes end withdrawn.
    for round in 0..ROUNDS {
        for i in 0..PREFIXES {
            let attrs = Attrs {
                med: Some(round),
                ..Attrs::default()
            };
            speaker.originate(prefix(i), attrs).await.unwrap();
        }
    }
    for i in (1..PREFIXES).step_by(2) {
        speaker.withdraw(prefix(i)).await.unwrap();
    }
    // Every request above is handled once this answers.
    let page = speaker.routes(0, 2 * PREFIXES as usize).await.unwrap();
    assert_eq!(page.routes.len(), PREFIXES as usize / 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        rx.len() <= SUBSCRIBER_CAPACITY,
        "{} changes queued for a subscriber that reads nothing",
        rx.len()
    );
    // Now it reads: each prefix's last change is its final state.
    let mut last = HashMap::new();
    let mut received = 0usize;
    for _ in 0..10 * PREFIXES * ROUNDS {
        match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
            Ok(Some(c)) => {
                received += 1;
                last.insert(c.prefix, c);
            }
            Ok(None) => panic!("the stream ended"),
            Err(_) => break,
        }
    }
    assert_eq!(last.len(), PREFIXES as usize);
    for i in 0..PREFIXES {
        let c = &last[&prefix(i)];
        // Even prefixes are ours (local best path); odd ones are gone.
        assert_eq!(c.local, i % 2 == 0, "{c:?}");
    }
    // Coalesced: about one change per prefix once the channel filled, not one per
    // origination (55,000).
    assert!(
        received <= PREFIXES as usize + 2 * SUBSCRIBER_CAPACITY,
        "{received} changes delivered for {PREFIXES} prefixes"
    );
    eprintln!(
        "{received} best-path changes delivered for {PREFIXES} prefixes after {} changes",
        PREFIXES * ROUNDS + PREFIXES / 2
    );
    // Dropping the receiver unsubscribes; the speaker goes on.
    drop(rx);
    speaker
        .originate(prefix(0), Attrs::default())
        .await
        .unwrap();
    assert!(speaker.snapshot().await.is_ok());
    speaker.shutdown().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), core).await;
}
