//! Why a session is not up, produced for real: each `down_reason` of the fixed list that a
//! test can cause, against BIRD 2 and the kernel, read back with `ctl neighbor ADDRESS`.
//!
//! Topology: two namespaces joined by a veth; ours holds 192.0.2.1/24 (AS 64512) and
//! 192.0.2.10N for the BIRD protocol pN (BIRD runs one protocol at a time per neighbour
//! address), the peer namespace holds one address per case and one BIRD 2 with a
//! protocol per case, each bound to its own address (`strict bind`):
//!
//! | peer | what is wrong | expected |
//! | --- | --- | --- |
//! | 192.0.2.10 port 1790 | nothing listens | `connect-refused` |
//! | 192.0.2.11 port 1791 | nftables drops the port in the peer namespace | `connect-timeout` |
//! | 198.51.100.99 | no route in our namespace | `no-route` |
//! | 192.0.2.2 | BIRD is AS 64513, we expect 64514 | `open-rejected` (we refuse; NOTIFICATION sent) |
//! | 192.0.2.3 | BIRD expects AS 64599 from us | `open-rejected` (the peer refuses; NOTIFICATION received) |
//! | 192.0.2.4 | a password on our side only | `tcp-md5-mismatch-suspected` |
//! | 192.0.2.5 | passive, nobody connects | `waiting-for-peer` |
//! | 192.0.2.6 | BIRD sends 5 routes, our `max_prefix` is 2 | `max-prefix` |
//! | 192.0.2.7 | up, then `birdc disable` | `admin-down` |
//! | 192.0.2.8 | up, then nftables in our namespace drops what it sends | `hold-timer-expired` |
//!
//! Needs root, BIRD 2 and nftables (`sudo tests/scripts/install-peers.sh`).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use interop_tests::{
    Bird, BirdVersion, Daemon, Link, Netns, Peer, WorkDir, ctl_json, poll, require_root,
};
use serde_json::Value;

const OURS: &str = "192.0.2.1";
const API: &str = "192.0.2.1:9179";
/// Every reason shows within this, counted from the daemon's start (connect attempts
/// time out after 2 s, BIRD retries every second).
const WITHIN: Duration = Duration::from_secs(30);

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

const DAEMON: &str = r#"
[speaker]
asn = 64512
router_id = "192.0.2.1"
listen = ["0.0.0.0:179"]
connect_retry = 2

[api]
listen = "192.0.2.1:9179"

[[peer]]
address = "192.0.2.10"
port = 1790
asn = 64513

[[peer]]
address = "192.0.2.11"
port = 1791
asn = 64513

[[peer]]
address = "198.51.100.99"
asn = 64513

[[peer]]
address = "192.0.2.2"
source_address = "192.0.2.102"
asn = 64514

[[peer]]
address = "192.0.2.3"
source_address = "192.0.2.103"
asn = 64513

[[peer]]
address = "192.0.2.4"
source_address = "192.0.2.104"
asn = 64513
password = "s3cret"

[[peer]]
address = "192.0.2.5"
asn = 64513
passive = true

[[peer]]
address = "192.0.2.6"
source_address = "192.0.2.106"
asn = 64513
import = "all"
max_prefix = 2

[[peer]]
address = "192.0.2.7"
source_address = "192.0.2.107"
asn = 64513
hold_time = 3

[[peer]]
address = "192.0.2.8"
source_address = "192.0.2.108"
asn = 64513
hold_time = 3
"#;

/// One BIRD protocol per case, each on its own local address.
fn bird_config() -> String {
    let mut s = String::from(
        "router id 192.0.2.2;\n\
         protocol device { scan time 10; }\n\
         protocol static s4 {\n  ipv4;\n",
    );
    for i in 1..=5 {
        let _ = writeln!(s, "  route 203.0.113.{}/32 blackhole;", i * 8);
    }
    s.push_str("}\n");
    // (name, BIRD's address, the AS BIRD expects of us); our address for pN is
    // 192.0.2.10N (BIRD runs one protocol at a time per neighbour address).
    for (name, local, our_as) in [
        ("p2", "192.0.2.2", 64512),
        ("p3", "192.0.2.3", 64599),
        ("p4", "192.0.2.4", 64512),
        ("p6", "192.0.2.6", 64512),
        ("p7", "192.0.2.7", 64512),
        ("p8", "192.0.2.8", 64512),
    ] {
        let ours = format!("192.0.2.10{}", &name[1..]);
        let _ = write!(
            s,
            "protocol bgp {name} {{\n\
             \x20 local {local} as 64513;\n\
             \x20 neighbor {ours} as {our_as};\n\
             \x20 direct;\n\
             \x20 strict bind on;\n\
             \x20 hold time 3;\n\
             \x20 keepalive time 1;\n\
             \x20 connect retry time 1;\n\
             \x20 connect delay time 1;\n\
             \x20 error wait time 1,2;\n\
             \x20 ipv4 {{ import all; export all; }};\n\
             }}\n"
        );
    }
    s
}

struct World {
    daemon: Option<Daemon>,
    bird: Option<Bird>,
    _link: Link,
    ours_ns: Netns,
    peer_ns: Netns,
    dir: WorkDir,
    started: Instant,
}

impl World {
    fn log(&self, what: &str) {
        eprintln!(
            "[down-reason +{:5.1}s] {what}",
            self.started.elapsed().as_secs_f64()
        );
    }

    fn neighbor(&self, addr: &str) -> Result<Value, String> {
        ctl_json(&self.ours_ns, exe(), API, &["neighbor", addr])
    }

    fn reason(&self, addr: &str) -> Option<String> {
        let v = self.neighbor(addr).ok()?;
        v["down_reason"]["reason"].as_str().map(str::to_owned)
    }

    /// Waits until `ctl neighbor ADDR` shows `reason`; returns the peer object.
    fn wait_reason(&self, addr: &str, reason: &str, within: Duration) -> Value {
        let got = poll(within, Duration::from_millis(200), || {
            let v = self.neighbor(addr).ok()?;
            (v["down_reason"]["reason"] == reason).then_some(v)
        });
        got.unwrap_or_else(|| {
            self.fail(&format!(
                "{addr}: no down_reason {reason:?} within {within:?}; last: {:?}",
                self.neighbor(addr)
            ))
        })
    }

    fn nft(&self, ns: &Netns, name: &str, rules: &str) {
        let file = self.dir.path().join(format!("{name}.nft"));
        std::fs::write(&file, rules).unwrap();
        ns.exec("nft", &["-f", &file.to_string_lossy()])
            .unwrap_or_else(|e| self.fail(&format!("nft in {}: {e}", ns.name())));
    }

    fn fail(&self, msg: &str) -> ! {
        let mut s = format!("down-reason: {msg}\n");
        if let Ok(p) = ctl_json(&self.ours_ns, exe(), API, &["peers"]) {
            let _ = writeln!(s, "--- ctl peers ---\n{p:#}");
        }
        if let Some(d) = &self.daemon {
            let _ = writeln!(s, "{}", d.transcript(80));
        }
        if let Some(b) = &self.bird {
            let _ = writeln!(
                s,
                "{}",
                b.birdc(&["show", "protocols"]).unwrap_or_else(|e| e)
            );
            let _ = writeln!(s, "{}", b.log_tail(40));
        }
        panic!("{s}");
    }
}

#[test]
fn down_reasons_for_real() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let dir = WorkDir::new("down-reason").unwrap();
    let ours_ns = Netns::create("rr").unwrap();
    let peer_ns = Netns::create("why").unwrap();
    let peer_addrs: Vec<String> = [2, 3, 4, 5, 6, 7, 8, 10, 11]
        .iter()
        .map(|i| format!("192.0.2.{i}/24"))
        .collect();
    let peer_addrs: Vec<&str> = peer_addrs.iter().map(String::as_str).collect();
    let our_addrs: Vec<String> = std::iter::once(format!("{OURS}/24"))
        .chain(
            [2, 3, 4, 6, 7, 8]
                .iter()
                .map(|i| format!("192.0.2.10{i}/24")),
        )
        .collect();
    let our_addrs: Vec<&str> = our_addrs.iter().map(String::as_str).collect();
    let link = Link::new(&ours_ns, &our_addrs, &peer_ns, &peer_addrs).unwrap();
    let mut w = World {
        daemon: None,
        bird: None,
        _link: link,
        ours_ns,
        peer_ns,
        dir,
        started: Instant::now(),
    };
    // A filtered port in the peer's namespace: SYNs to it vanish.
    w.nft(
        &w.peer_ns,
        "filtered",
        "table inet why_filter {\n  chain input {\n    type filter hook input priority 0;\n    \
         tcp dport 1791 drop\n  }\n}\n",
    );
    let bird = Bird::start_config(
        BirdVersion::V2,
        &w.peer_ns,
        w.dir.path(),
        "bird",
        "p7",
        false,
        &bird_config(),
    )
    .unwrap_or_else(|e| w.fail(&format!("cannot start BIRD 2: {e}")));
    w.bird = Some(bird);
    let d = Daemon::start(&w.ours_ns, w.dir.path(), exe(), DAEMON)
        .unwrap_or_else(|e| w.fail(&format!("cannot start the daemon: {e}")));
    w.daemon = Some(d);
    w.log("BIRD 2 and the daemon started");

    // The reasons that hold by themselves, all at once.
    let mut expect: Vec<(&str, &str)> = vec![
        ("192.0.2.10", "connect-refused"),
        ("192.0.2.11", "connect-timeout"),
        ("198.51.100.99", "no-route"),
        ("192.0.2.2", "open-rejected"),
        ("192.0.2.3", "open-rejected"),
        ("192.0.2.4", "tcp-md5-mismatch-suspected"),
        ("192.0.2.5", "waiting-for-peer"),
        ("192.0.2.6", "max-prefix"),
    ];
    let deadline = Instant::now() + WITHIN;
    let mut seen: Vec<(String, Value)> = Vec::new();
    while !expect.is_empty() && Instant::now() < deadline {
        expect.retain(|(addr, reason)| match w.neighbor(addr) {
            Ok(v) if v["down_reason"]["reason"] == *reason => {
                w.log(&format!(
                    "{addr}: {reason}: {}",
                    v["down_reason"]["message"]
                ));
                seen.push(((*addr).to_owned(), v));
                false
            }
            _ => true,
        });
        std::thread::sleep(Duration::from_millis(250));
    }
    if !expect.is_empty() {
        let last: Vec<String> = expect
            .iter()
            .map(|(a, r)| format!("{a}: want {r}, have {:?}", w.reason(a)))
            .collect();
        w.fail(&format!(
            "not every reason within {WITHIN:?}:\n{}",
            last.join("\n")
        ));
    }
    let of = |addr: &str| &seen.iter().find(|(a, _)| a == addr).unwrap().1["down_reason"];
    // The sentences say what an operator acts on.
    let msg = |addr: &str| of(addr)["message"].as_str().unwrap().to_owned();
    assert!(
        msg("192.0.2.10").contains("192.0.2.10:1790 refused"),
        "{}",
        msg("192.0.2.10")
    );
    assert!(
        msg("192.0.2.11").contains("no answer to our SYN"),
        "{}",
        msg("192.0.2.11")
    );
    assert!(
        msg("192.0.2.2").contains("peer says AS 64513, configured 64514"),
        "{}",
        msg("192.0.2.2")
    );
    assert!(
        of("192.0.2.2")["notification_sent"]
            .as_str()
            .unwrap()
            .contains("Bad Peer AS")
    );
    assert!(
        msg("192.0.2.3").contains("does not expect AS 64512"),
        "{}",
        msg("192.0.2.3")
    );
    assert!(
        of("192.0.2.3")["notification_received"]
            .as_str()
            .unwrap()
            .contains("Bad Peer AS")
    );
    assert!(msg("192.0.2.4").contains("TCP-MD5"), "{}", msg("192.0.2.4"));
    assert!(
        msg("192.0.2.5").starts_with("passive: no connection from 192.0.2.5"),
        "{}",
        msg("192.0.2.5")
    );
    assert!(
        msg("192.0.2.6").contains("more than 2 prefixes"),
        "{}",
        msg("192.0.2.6")
    );
    // An active peer that keeps failing says when it tries again.
    assert!(
        of("192.0.2.10")["next_try_in_s"].is_u64(),
        "{}",
        of("192.0.2.10")
    );
    assert!(
        of("192.0.2.5")["next_try_in_s"].is_null(),
        "passive: no next try"
    );

    // The table and the one-peer text show the same.
    let table = w
        .ours_ns
        .exec(&exe().to_string_lossy(), &["ctl", "--api", API, "peers"])
        .unwrap();
    assert!(table.lines().next().unwrap().contains("Why"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("192.0.2.10 "))
        .unwrap();
    assert!(row.contains("connect-refused"), "{table}");
    let text = w
        .ours_ns
        .exec(
            &exe().to_string_lossy(),
            &["ctl", "--api", API, "neighbor", "192.0.2.2"],
        )
        .unwrap();
    assert!(
        text.contains("open-rejected") && text.contains("Bad Peer AS"),
        "{text}"
    );

    // Up, then taken down administratively by the peer.
    let up = poll(WITHIN, Duration::from_millis(250), || {
        let a = w.neighbor("192.0.2.7").ok()?;
        let b = w.neighbor("192.0.2.8").ok()?;
        (a["state"] == "Established" && b["state"] == "Established").then_some((a, b))
    });
    let (a, b) = up.unwrap_or_else(|| w.fail("192.0.2.7 and 192.0.2.8 not Established"));
    assert_eq!(a["down_reason"], Value::Null, "{a}");
    assert_eq!(b["down_reason"], Value::Null, "{b}");
    w.log("192.0.2.7 and 192.0.2.8 Established, down_reason null");
    w.bird
        .as_ref()
        .unwrap()
        .birdc(&["disable", "p7"])
        .unwrap_or_else(|e| w.fail(&format!("birdc disable: {e}")));
    let v = w.wait_reason("192.0.2.7", "admin-down", Duration::from_secs(10));
    w.log(&format!(
        "192.0.2.7: admin-down: {}",
        v["down_reason"]["message"]
    ));
    assert!(
        v["down_reason"]["notification_received"]
            .as_str()
            .unwrap()
            .contains("Administrative Shutdown"),
        "{v}"
    );

    // Silenced: our namespace drops what 192.0.2.8 sends; our hold timer (3 s) runs out.
    let t = Instant::now();
    w.nft(
        &w.ours_ns,
        "silence",
        "table inet why_silence {\n  chain input {\n    type filter hook input priority 0;\n    \
         ip saddr 192.0.2.8 drop\n  }\n}\n",
    );
    let v = w.wait_reason("192.0.2.8", "hold-timer-expired", Duration::from_secs(15));
    w.log(&format!(
        "192.0.2.8: hold-timer-expired {:.1} s after the drop: {}",
        t.elapsed().as_secs_f64(),
        v["down_reason"]["message"]
    ));

    if let Some(mut d) = w.daemon.take() {
        let _ = d.terminate(Duration::from_secs(5));
    }
}
