//! `/metrics` and the logs after a real session with BIRD 2: every series of issue 16
//! with its labels and values, a NOTIFICATION counted by code once BIRD disables the
//! protocol, the log level changed by a reload (SIGHUP), and JSON log lines flattened.
//!
//! Topology: two namespaces joined by a veth; ours holds 192.0.2.1/24 (AS 64512, the peer
//! in group `clients`), BIRD 2 holds 192.0.2.2/24 (AS 64513) and announces three routes.
//!
//! Needs root and BIRD 2 (`sudo tests/scripts/install-peers.sh`).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use interop_tests::{
    Bird, BirdVersion, Daemon, Link, Netns, WorkDir, ctl_json, poll, require_root, run_cmd,
};

const API: &str = "192.0.2.1:9179";
const PEER: &str = "192.0.2.2";

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

fn daemon_config(log_level: Option<&str>) -> String {
    let mut s = String::from(
        "[speaker]\nasn = 64512\nrouter_id = \"192.0.2.1\"\nlisten = [\"192.0.2.1:179\"]\n\
         connect_retry = 1\n",
    );
    if let Some(l) = log_level {
        let _ = writeln!(s, "log_level = \"{l}\"");
    }
    s.push_str(
        "\n[api]\nlisten = \"192.0.2.1:9179\"\n\n\
         [[peer_group]]\nname = \"clients\"\nasn = 64513\nimport = \"all\"\nhold_time = 6\n\n\
         [[peer]]\naddress = \"192.0.2.2\"\ngroup = \"clients\"\n",
    );
    s
}

const BIRD: &str = "router id 192.0.2.2;\n\
protocol device { scan time 10; }\n\
protocol static s4 {\n  ipv4;\n  route 203.0.113.0/24 blackhole;\n  route 203.0.113.128/25 blackhole;\n  route 198.51.100.0/24 blackhole;\n}\n\
protocol bgp p1 {\n  local 192.0.2.2 as 64513;\n  neighbor 192.0.2.1 as 64512;\n  hold time 6;\n  connect retry time 1;\n  error wait time 1,2;\n  ipv4 { import all; export all; };\n}\n";

/// The samples of a scrape, as (name, labels, value).
fn samples(text: &str) -> Vec<(String, String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            Some((name.to_owned(), labels.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// The value of `name` whose labels hold every one of `labels` (`k="v"`).
fn value(s: &[(String, String, f64)], name: &str, labels: &[&str]) -> Option<f64> {
    s.iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|want| l.split(',').any(|have| have == *want))
        })
        .map(|x| x.2)
}

#[test]
fn metrics_and_logs_after_a_bird_session() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let dir = WorkDir::new("metrics").unwrap();
    let ours = Netns::create("rrmet").unwrap();
    let theirs = Netns::create("birdmet").unwrap();
    let _link = Link::new(&ours, &["192.0.2.1/24"], &theirs, &["192.0.2.2/24"]).unwrap();
    let bird = Bird::start_config(
        BirdVersion::V2,
        &theirs,
        dir.path(),
        "bird",
        "p1",
        false,
        BIRD,
    )
    .unwrap_or_else(|e| panic!("cannot start BIRD 2: {e}"));
    // `--log-level info` over the harness's RUST_LOG (which asks for debug).
    let mut d = Daemon::start_with(
        &ours,
        dir.path(),
        exe(),
        &daemon_config(None),
        &["--log-level", "info"],
    )
    .unwrap_or_else(|e| panic!("cannot start the daemon: {e}"));
    let fail = |d: &Daemon, msg: &str| -> ! {
        panic!(
            "{msg}\n{}\n{}",
            d.transcript(60),
            bird.birdc(&["show", "protocols", "all", "p1"])
                .unwrap_or_else(|e| e)
        )
    };
    let scrape = || {
        let text = ours
            .exec("curl", &["-s", &format!("http://{API}/metrics")])
            .unwrap_or_default();
        (samples(&text), text)
    };
    let peer = format!("peer=\"{PEER}\"");
    let labels = [peer.as_str(), "peer_asn=\"64513\"", "group=\"clients\""];

    // Up, with BIRD's three routes in.
    let up = poll(Duration::from_secs(30), Duration::from_millis(250), || {
        let v = ctl_json(&ours, exe(), API, &["neighbor", PEER]).ok()?;
        (v["state"] == "Established" && v["prefixes_accepted"] == 3).then_some(v)
    });
    if up.is_none() {
        fail(&d, "no session with BIRD and its 3 routes within 30 s");
    }
    eprintln!("[metrics +{:.1}s] up", started.elapsed().as_secs_f64());
    // KEEPALIVEs come every 2 s (hold time 6): wait for one past the handshake's.
    std::thread::sleep(Duration::from_secs(3));
    let (s, text) = scrape();
    let v = |name: &str, more: &[&str]| {
        let all: Vec<&str> = labels.iter().chain(more).copied().collect();
        value(&s, name, &all).unwrap_or_else(|| fail(&d, &format!("no {name}{more:?}:\n{text}")))
    };
    assert_eq!(v("rr_peer_up", &[]), 1.0, "{text}");
    assert_eq!(v("rr_peer_state", &[]), 6.0, "{text}");
    assert_eq!(v("rr_peer_flaps_total", &[]), 0.0, "{text}");
    for dir in ["received", "sent"] {
        let d = format!("direction=\"{dir}\"");
        assert_eq!(
            v("rr_peer_messages_total", &[&d, "type=\"open\""]),
            1.0,
            "{text}"
        );
        assert!(
            v("rr_peer_messages_total", &[&d, "type=\"keepalive\""]) >= 2.0,
            "{text}"
        );
        assert_eq!(
            v("rr_peer_messages_total", &[&d, "type=\"notification\""]),
            0.0,
            "{text}"
        );
    }
    // BIRD's three routes came in at least one UPDATE, and its End-of-RIB in another.
    assert!(
        v(
            "rr_peer_messages_total",
            &["direction=\"received\"", "type=\"update\""]
        ) >= 2.0,
        "{text}"
    );
    assert_eq!(
        value(&s, "rr_rib_prefixes", &["afi_safi=\"ipv4-unicast\""]),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(&s, "rr_rib_prefixes", &["afi_safi=\"ipv6-unicast\""]),
        Some(0.0),
        "{text}"
    );
    let updates = value(&s, "rr_update_processing_seconds_count", &[]).unwrap_or(0.0);
    assert!(updates >= 2.0, "{text}");
    assert!(
        value(&s, "rr_core_batch_seconds_count", &[]).unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert!(
        value(&s, "rr_process_resident_memory_bytes", &[]).unwrap_or(0.0) > 1e6,
        "{text}"
    );
    assert!(
        value(&s, "rr_process_cpu_seconds_total", &[]).is_some(),
        "{text}"
    );
    // build_info: the commit `--version` prints.
    let version = run_cmd(
        &exe().to_string_lossy(),
        &["--version"],
        Duration::from_secs(5),
    )
    .unwrap();
    let commit = version
        .trim()
        .rsplit_once('(')
        .unwrap()
        .1
        .trim_end_matches(')');
    let head = run_cmd(
        "git",
        &["rev-parse", "--short", "HEAD"],
        Duration::from_secs(5),
    )
    .map(|h| h.trim().to_owned())
    .unwrap_or_default();
    eprintln!("[metrics] --version {version:?}, HEAD {head:?}");
    assert_eq!(
        value(&s, "build_info", &[&format!("commit=\"{commit}\"")]),
        Some(1.0),
        "{text}"
    );
    // Nothing below info so far.
    let before = d.log();
    assert!(
        !before.contains(" DEBUG "),
        "debug lines at info:\n{before}"
    );

    // The level goes to debug with a reload; BIRD then disables the protocol: a Cease
    // (6/2, Administrative Shutdown) comes in, the session flaps, and our reconnect
    // attempts log at debug.
    let mark = d.log_mark();
    d.reload(&daemon_config(Some("debug"))).unwrap();
    let changed = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        d.log_since(mark)
            .iter()
            .any(|l| l.contains("log level now debug"))
            .then_some(())
    });
    if changed.is_none() {
        fail(&d, "no `log level now debug` after SIGHUP");
    }
    bird.birdc(&["disable", "p1"]).unwrap();
    let down = poll(Duration::from_secs(15), Duration::from_millis(250), || {
        let (s, text) = scrape();
        let n = value(
            &s,
            "rr_peer_notifications_total",
            &[
                &peer,
                "direction=\"received\"",
                "code=\"6\"",
                "subcode=\"2\"",
            ],
        )?;
        (n == 1.0 && value(&s, "rr_peer_up", &[&peer]) == Some(0.0)).then_some((s, text))
    });
    let Some((s, text)) = down else {
        fail(&d, "no NOTIFICATION 6/2 counted within 15 s")
    };
    eprintln!(
        "[metrics +{:.1}s] down, counted",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        value(&s, "rr_peer_flaps_total", &labels),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &s,
            "rr_peer_messages_total",
            &[&peer, "direction=\"received\"", "type=\"notification\""]
        ),
        Some(1.0),
        "{text}"
    );
    // The state change is at info, with the reason.
    let after = d.log_since(mark);
    assert!(
        after.iter().any(|l| l.contains(" INFO ")
            && l.contains("state changed")
            && l.contains("Administrative Shutdown")),
        "{}",
        after.join("\n")
    );
    let debug = poll(Duration::from_secs(10), Duration::from_millis(250), || {
        d.log_since(mark)
            .iter()
            .any(|l| l.contains(" DEBUG "))
            .then_some(())
    });
    if debug.is_none() {
        fail(&d, "no debug line after the reload to debug");
    }
    let _ = d.terminate(Duration::from_secs(5));
    drop(bird);

    // JSON lines: the event's fields at the top level, no "fields" object.
    let conf = dir.path().join("json.toml");
    std::fs::write(
        &conf,
        "[speaker]\nasn = 64512\nrouter_id = \"192.0.2.1\"\nlisten = [\"192.0.2.1:1790\"]\n\
         log_format = \"json\"\n[api]\nenabled = false\n",
    )
    .unwrap();
    let log = dir.path().join("json.stderr");
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", ours.name()])
        .arg(exe())
        .arg("--config")
        .arg(&conf)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let line = poll(Duration::from_secs(10), Duration::from_millis(50), || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.lines()
            .find(|l| l.contains("\"listening\""))
            .map(str::to_owned)
    });
    // By its PID (`ip netns exec` execs the daemon).
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("a JSON `listening` line");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["message"], "listening", "{line}");
    assert_eq!(v["addr"], "192.0.2.1:1790", "{line}");
    assert!(v.get("fields").is_none(), "{line}");
    eprintln!("[metrics +{:.1}s] done", started.elapsed().as_secs_f64());
}
