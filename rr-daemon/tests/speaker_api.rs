//! The embeddable `Speaker` as a node agent drives it (loopback only): peers added,
//! changed and left alone at run time; routes originated and withdrawn; best-path changes
//! streamed.

use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use rr_daemon::config::Config;
use rr_daemon::speaker::{PeerChange, Speaker};

const CONFIG: &str = r#"
[speaker]
asn = 65000
router_id = "127.0.0.40"
listen = []

[api]
enabled = false

[[peer]]
address = "127.0.0.41"
asn = 65000
port = 1
source_address = "127.0.0.40"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_change_at_run_time_and_routes_stream() {
    let config = Config::parse(CONFIG, Path::new("agent.toml")).expect("valid");
    let peer = config.peers.values().next().expect("one peer").clone();
    let (speaker, core) = Speaker::start(config).await.expect("starts");
    let mut best = speaker.subscribe().await.expect("subscribes");

    assert_eq!(
        speaker.set_peer(peer.clone()).await.unwrap(),
        PeerChange::Unchanged
    );
    let mut changed = peer.clone();
    changed.hold_time = 30;
    assert_eq!(
        speaker.set_peer(changed).await.unwrap(),
        PeerChange::Changed
    );
    let mut other = peer.clone();
    other.address = "127.0.0.42".parse().unwrap();
    assert_eq!(speaker.set_peer(other).await.unwrap(), PeerChange::Added);
    let addresses: Vec<String> = speaker
        .peers()
        .await
        .unwrap()
        .iter()
        .map(|p| p.address.to_string())
        .collect();
    assert_eq!(addresses, ["127.0.0.41", "127.0.0.42"]);
    assert!(
        speaker
            .remove_peer("127.0.0.42".parse().unwrap())
            .await
            .unwrap()
    );

    let block: IpNet = "192.168.0.0/26".parse().unwrap();
    speaker
        .originate(block, rib::Attrs::default())
        .await
        .unwrap();
    let c = tokio::time::timeout(Duration::from_secs(5), best.recv())
        .await
        .expect("a change within 5 s")
        .expect("stream open");
    assert_eq!((c.prefix, c.local), (block, true));
    speaker.withdraw(block).await.unwrap();
    let c = tokio::time::timeout(Duration::from_secs(5), best.recv())
        .await
        .expect("a change within 5 s")
        .expect("stream open");
    assert_eq!(c.prefix, block);
    assert!(c.next_hops.is_empty() && !c.local, "gone");

    speaker.shutdown().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), core).await;
}
