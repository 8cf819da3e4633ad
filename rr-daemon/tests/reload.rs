//! Reloads on live sessions (loopback, two speakers back to back): a new export policy
//! keeps the session and changes what the peer holds; `[speaker] listen` is rebound
//! without touching the session.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use rr_daemon::config::Config;
use rr_daemon::speaker::{PeerState, Speaker};

const A: &str = "127.0.60.1";
const B: &str = "127.0.60.2";
const WAIT: Duration = Duration::from_secs(20);

/// A originates two routes to B; `export` is its export policy towards B, `listen` its
/// listeners.
fn config_a(export: &str, listen: &str) -> Config {
    let text = format!(
        r#"
[speaker]
asn = 65000
router_id = "{A}"
listen = [{listen}]

[api]
enabled = false

[[policy]]
name = "no-2"
default_action = "accept"
[[policy.rule]]
prefixes = ["10.60.2.0/24"]
action = "reject"

[[peer]]
address = "{B}"
asn = 65000
port = 1790
source_address = "{A}"
passive = true
export = "{export}"

[[route]]
prefix = "10.60.1.0/24"
[[route]]
prefix = "10.60.2.0/24"
"#
    );
    Config::parse(&text, Path::new("a.toml")).expect("valid")
}

fn config_b() -> Config {
    let text = format!(
        r#"
[speaker]
asn = 65000
router_id = "{B}"
listen = ["{B}:1790"]

[api]
enabled = false

[[peer]]
address = "{A}"
asn = 65000
port = 1790
source_address = "{B}"
connect_retry = 1
"#
    );
    Config::parse(&text, Path::new("b.toml")).expect("valid")
}

async fn has_route(s: &Speaker, prefix: &str) -> bool {
    let p: IpNet = prefix.parse().unwrap();
    s.route(p)
        .await
        .unwrap()
        .is_some_and(|e| !e.paths.is_empty())
}

async fn wait_for(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !f().await {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_reload_export_policy_keeps_the_session() {
    let listen_a = format!("\"{A}:1790\"");
    let (a, core_a) = Speaker::start(config_a("all", &listen_a)).await.expect("A");
    let (b, core_b) = Speaker::start(config_b()).await.expect("B");
    wait_for("both routes at B", async || {
        has_route(&b, "10.60.1.0/24").await && has_route(&b, "10.60.2.0/24").await
    })
    .await;
    let before = a.peers().await.unwrap()[0].clone();
    assert_eq!(before.state, PeerState::Established);

    let diff = a.reload(config_a("no-2", &listen_a)).await.unwrap();
    assert_eq!(
        diff.policy_only,
        vec![B.parse::<std::net::IpAddr>().unwrap()]
    );
    wait_for("10.60.2.0/24 withdrawn at B", async || {
        !has_route(&b, "10.60.2.0/24").await
    })
    .await;
    assert!(has_route(&b, "10.60.1.0/24").await, "the other route stays");
    let after = a.peers().await.unwrap()[0].clone();
    assert_eq!(after.state, PeerState::Established);
    assert!(after.uptime_s >= before.uptime_s, "the same session");
    assert_eq!(after.last_notification_sent, None);
    let at_b = b.peers().await.unwrap()[0].clone();
    assert_eq!(at_b.state, PeerState::Established);
    assert_eq!(at_b.last_notification_received, None);

    // Back to everything: the route returns, still no reset.
    a.reload(config_a("all", &listen_a)).await.unwrap();
    wait_for("10.60.2.0/24 back at B", async || {
        has_route(&b, "10.60.2.0/24").await
    })
    .await;
    assert_eq!(a.peers().await.unwrap()[0].last_notification_sent, None);

    // A second listener comes and goes; the session stays.
    let extra: SocketAddr = format!("{A}:1791").parse().unwrap();
    a.reload(config_a("all", &format!("{listen_a}, \"{extra}\"")))
        .await
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(extra).await.is_ok(),
        "new listener"
    );
    a.reload(config_a("all", &listen_a)).await.unwrap();
    let mut closed = false;
    for _ in 0..40 {
        if tokio::net::TcpStream::connect(extra).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed, "removed listener closed");
    let last = a.peers().await.unwrap()[0].clone();
    assert_eq!(last.state, PeerState::Established);
    assert_eq!(last.last_notification_sent, None);

    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(3), core_a).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), core_b).await;
}
