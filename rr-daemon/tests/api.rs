//! The control API, metrics and `rr-daemon ctl`, against speakers running in-process on
//! loopback addresses (127.0.0.0/8 only). Every wait is bounded.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use bgp_wire::attr::NextHop;
use ipnet::IpNet;
use rib::Attrs;
use rr_daemon::api::{self, ApiOptions};
use rr_daemon::config::Config;
use rr_daemon::ctl::{self, CtlArgs, CtlCommand};
use rr_daemon::speaker::{PeerStatus, Speaker};
use serde_json::Value;

/// A loopback port nothing listens on (bound, then released).
fn free_port(ip: &str) -> u16 {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    l.local_addr().unwrap().port()
}

/// Options for tests: no grace, so unestablished peers are reported at once.
fn options() -> ApiOptions {
    ApiOptions {
        readiness_grace: Duration::ZERO,
        ..ApiOptions::default()
    }
}

/// Starts a speaker on `toml` with its API on the configured address, port 0 replaced by
/// an ephemeral one. Returns the speaker and the API's address.
async fn start(toml: &str) -> (Speaker, SocketAddr) {
    let config = Config::parse(toml, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    let mut listen = config.api.listen;
    listen.set_port(0);
    assert!(config.api.enabled);
    let (speaker, _core) = Speaker::start(config).await.unwrap();
    let (addr, _task) = api::spawn(listen, speaker.clone(), options())
        .await
        .unwrap();
    (speaker, addr)
}

/// GET `path`: status and body. Blocking I/O off the runtime's workers.
async fn get(api: SocketAddr, path: &str) -> (u16, String) {
    let url = format!("http://{api}{path}");
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build(),
        );
        let mut r = agent.get(&url).call().unwrap();
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_string().unwrap())
    })
    .await
    .unwrap()
}

async fn get_json(api: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = get(api, path).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, v)
}

/// Polls `GET /v1/peers` until `done` holds for the peer at `address`, for at most 20 s.
async fn wait_peer(api: SocketAddr, address: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, peers) = get_json(api, "/v1/peers").await;
        let p = peers
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["address"] == address)
            .unwrap_or_else(|| panic!("{address} not in {peers}"))
            .clone();
        if done(&p) {
            return p;
        }
        assert!(Instant::now() < deadline, "gave up waiting; last: {p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `rr-daemon ARGS...`: exit success, stdout, stderr.
async fn run_bin(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_rr-daemon"))
            .args(&args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

/// Checks the Prometheus/OpenMetrics text format line by line: comments are `# HELP`,
/// `# TYPE`, `# UNIT` or the final `# EOF`; samples are `name{labels} value`. Returns the
/// samples as (name, labels, value).
fn parse_metrics(text: &str) -> Vec<(String, String, f64)> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c == '_' || c == ':' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
            })
    };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "{text}");
    let mut samples = Vec::new();
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut w = rest.splitn(3, ' ');
            let kind = w.next().unwrap();
            assert!(["HELP", "TYPE", "UNIT"].contains(&kind), "{line}");
            assert!(name_ok(w.next().unwrap()), "{line}");
            if kind == "TYPE" {
                assert!(
                    ["gauge", "counter", "histogram"].contains(&w.next().unwrap()),
                    "{line}"
                );
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => {
                let l = l.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
                for pair in l.split(',') {
                    let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
                    assert!(name_ok(k), "{line}");
                    assert!(
                        v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                        "{line}"
                    );
                }
                (n, l)
            }
            None => (series, ""),
        };
        assert!(name_ok(name), "{line}");
        samples.push((name.to_owned(), labels.to_owned(), value));
    }
    samples
}

/// The value of the series `name` whose labels are `labels`, or start with them and a
/// comma (per-peer series go on with `peer_asn`, `group`, ...).
fn sample(samples: &[(String, String, f64)], name: &str, labels: &str) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && (l == labels
                    || (!labels.is_empty()
                        && l.strip_prefix(labels).is_some_and(|r| r.starts_with(','))))
        })
        .map(|s| s.2)
}

const UNREACHABLE: &str = r#"
[speaker]
asn = 65000
router_id = "127.0.0.1"
listen = []

[api]
listen = "127.0.0.1:9179"

[[peer]]
address = "127.0.0.1"
port = PORT1
asn = 65001
import = "all"
connect_retry = 1

[[peer]]
address = "127.0.0.4"
port = PORT2
asn = 65000
connect_retry = 1
"#;

/// Peers that refuse connections: the API says so, readiness fails with them, metrics
/// have their series, an originated route shows, and `ctl` prints the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_peers_are_explained() {
    let toml = UNREACHABLE
        .replace("PORT1", &free_port("127.0.0.1").to_string())
        .replace("PORT2", &free_port("127.0.0.4").to_string())
        // The router ID must not be a peer's address: any other loopback one will do.
        .replace("router_id = \"127.0.0.1\"", "router_id = \"127.0.0.9\"");
    let (speaker, api) = start(&toml).await;

    for addr in ["127.0.0.1", "127.0.0.4"] {
        let p = wait_peer(api, addr, |p| {
            p["last_error"]
                .as_str()
                .is_some_and(|e| e.to_lowercase().contains("refused"))
        })
        .await;
        let state = p["state"].as_str().unwrap();
        assert!(["Idle", "Connect", "Active"].contains(&state), "{p}");
        for key in [
            "asn",
            "uptime_s",
            "prefixes_received",
            "prefixes_accepted",
            "prefixes_sent",
        ] {
            assert!(p.get(key).is_some(), "{key} missing: {p}");
        }
        assert_eq!(p["uptime_s"], Value::Null);
        // Nothing listens on the port: the machine-readable reason says so.
        let p = wait_peer(api, addr, |p| {
            p["down_reason"]["reason"] == "connect-refused"
        })
        .await;
        let why = &p["down_reason"];
        assert!(
            why["message"].as_str().unwrap().contains(addr),
            "the sentence names the peer: {p}"
        );
        assert!(why["since_s"].is_u64(), "{p}");
        // The same peer alone, by address.
        let (status, one) = get_json(api, &format!("/v1/peers/{addr}")).await;
        assert_eq!(status, 200, "{one}");
        assert_eq!(one["address"], addr);
        assert!(one.get("down_reason").is_some(), "{one}");
    }
    let (status, none) = get_json(api, "/v1/peers/127.0.0.99").await;
    assert_eq!(status, 404, "{none}");
    let (status, bad) = get_json(api, "/v1/peers/not-an-address").await;
    assert_eq!(status, 400, "{bad}");

    let (status, body) = get(api, "/healthz").await;
    assert_eq!(status, 200, "{body}");

    let (status, ready) = get_json(api, "/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["ready"], false);
    let listed: Vec<&str> = ready["not_ready"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["address"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["127.0.0.1", "127.0.0.4"], "{ready}");
    assert!(
        ready["not_ready"][0]["reason"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("refused")
    );
    assert_eq!(
        ready["not_ready"][0]["down_reason"], "connect-refused",
        "{ready}"
    );
    assert!(
        ready["not_ready"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("connect-refused: "),
        "{ready}"
    );

    let (status, text) = get(api, "/metrics").await;
    assert_eq!(status, 200);
    let samples = parse_metrics(&text);
    for peer in ["127.0.0.1", "127.0.0.4"] {
        let l = format!("peer=\"{peer}\"");
        let state = sample(&samples, "rr_peer_state", &l).unwrap_or_else(|| panic!("{text}"));
        assert!((1.0..=3.0).contains(&state), "{text}");
        for name in [
            "rr_peer_uptime_seconds",
            "rr_peer_updates_received_total",
            "rr_peer_updates_sent_total",
            "rr_peer_prefixes_received_total",
            "rr_peer_prefixes_accepted",
            "rr_peer_prefixes_sent_total",
            "rr_peer_update_queue_bytes",
        ] {
            assert!(
                sample(&samples, name, &l).is_some(),
                "{name}{{{l}}}:\n{text}"
            );
        }
    }
    assert_eq!(sample(&samples, "rr_ready", ""), Some(0.0));
    assert_eq!(sample(&samples, "rr_peers", ""), Some(2.0));
    // Series grow with peers only: every labelled series is per peer, but the twelve of
    // rr_peers_down, the fixed four of rr_bfd_sessions{state}, the two families of the
    // RIB's, the histograms' buckets and the build.
    assert!(
        samples.iter().all(|(n, l, _)| l.is_empty()
            || l.starts_with("peer=\"")
            || (n == "rr_peers_down" && l.starts_with("reason=\""))
            || (n == "rr_bfd_sessions" && l.starts_with("state=\""))
            || (n.starts_with("rr_rib_") && l.starts_with("afi_safi=\""))
            || (n.ends_with("_seconds_bucket") && l.starts_with("le=\""))
            || (n == "build_info" && l.starts_with("version=\""))),
        "{text}"
    );
    // Per-peer series carry the peer's AS and group.
    assert!(
        text.contains("rr_peer_state{peer=\"127.0.0.1\",peer_asn=\"65001\",group=\"\"}"),
        "{text}"
    );
    assert_eq!(
        sample(&samples, "rr_peer_up", "peer=\"127.0.0.1\""),
        Some(0.0)
    );
    let build = format!(
        "version=\"{}\",commit=\"{}\"",
        env!("CARGO_PKG_VERSION"),
        rr_daemon::cli::VERSION
            .split_once(" (")
            .unwrap()
            .1
            .trim_end_matches(')')
    );
    assert_eq!(sample(&samples, "build_info", &build), Some(1.0), "{text}");
    assert!(sample(&samples, "rr_process_resident_memory_bytes", "").unwrap() > 1e6);
    assert!(sample(&samples, "rr_process_cpu_seconds_total", "").is_some());
    // Twice the same: the series come in the same order.
    let (_, again) = get(api, "/metrics").await;
    let names = |t: &str| -> Vec<String> {
        parse_metrics(t)
            .into_iter()
            .map(|(n, l, _)| format!("{n}{{{l}}}"))
            .collect()
    };
    assert_eq!(names(&text), names(&again));
    let down: Vec<_> = samples
        .iter()
        .filter(|(n, _, _)| n == "rr_peers_down")
        .collect();
    assert_eq!(down.len(), 12, "{text}");
    assert_eq!(
        sample(&samples, "rr_peers_down", "reason=\"connect-refused\""),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&samples, "rr_peers_down", "reason=\"open-rejected\""),
        Some(0.0),
        "{text}"
    );
    for state in ["admin-down", "down", "init", "up"] {
        let l = format!("state=\"{state}\"");
        assert_eq!(sample(&samples, "rr_bfd_sessions", &l), Some(0.0), "{text}");
    }

    // A route of our own shows in the table and in the explanation.
    let prefix: IpNet = "10.1.0.0/24".parse().unwrap();
    speaker.originate(prefix, Attrs::default()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let routes = loop {
        let (status, v) = get_json(api, "/v1/routes?limit=10").await;
        assert_eq!(status, 200);
        if !v["routes"].as_array().unwrap().is_empty() {
            break v;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(routes["routes"][0]["prefix"], "10.1.0.0/24");
    assert_eq!(
        routes["routes"][0]["peer"],
        Value::Null,
        "local: no source peer"
    );
    assert_eq!(routes["routes"][0]["as_path"], "");
    assert_eq!(routes["next_offset"], Value::Null);
    let (_, capped) = get_json(api, "/v1/routes?limit=0").await;
    assert_eq!(capped["routes"].as_array().unwrap().len(), 0);
    assert_eq!(capped["next_offset"], 0);

    for path in ["/v1/routes/10.1.0.0%2F24", "/v1/routes/10.1.0.0/24"] {
        let (status, d) = get_json(api, path).await;
        assert_eq!(status, 200, "{path}: {d}");
        assert_eq!(d["prefix"], "10.1.0.0/24");
        assert_eq!(d["paths"][0]["status"], "best");
        assert_eq!(d["paths"][0]["reason"], Value::Null);
    }
    let (status, d) = get_json(api, "/v1/routes/10.9.0.0%2F24").await;
    assert_eq!(status, 404);
    assert_eq!(d["error"], "no route for 10.9.0.0/24");
    let (status, d) = get_json(api, "/v1/routes/nonsense").await;
    assert_eq!(status, 400, "{d}");

    let (status, s) = get_json(api, "/v1/status").await;
    assert_eq!(status, 200);
    assert_eq!(s["asn"], 65000);
    assert_eq!(s["rib"]["prefixes"], 1);
    assert_eq!(s["readiness"]["ready"], false);

    // ctl, as a function.
    let ctl_args = |what: CtlCommand, json: bool| CtlArgs {
        api: api.to_string(),
        json,
        what,
        socket: None,
    };
    let table = ctl::run(&ctl_args(CtlCommand::Peers, false)).unwrap();
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for column in ["Address", "AS", "State", "Since", "Info"] {
        assert!(header.contains(column), "{table}");
    }
    let row = lines.next().unwrap();
    assert!(row.starts_with("127.0.0.1 "), "{table}");
    assert!(
        row.contains("65001") && row.to_lowercase().contains("refused"),
        "{table}"
    );
    assert!(lines.next().unwrap().starts_with("127.0.0.4 "), "{table}");
    let json = ctl::run(&ctl_args(CtlCommand::Peers, true)).unwrap();
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);

    // ctl, as the binary.
    let a = api.to_string();
    let (ok, out, err) = run_bin(args(&["ctl", "--api", &a, "peers"])).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("Address"), "{out}");
    assert!(out.contains("127.0.0.4"), "{out}");
    let (ok, out, err) = run_bin(args(&["ctl", "--api", &a, "--json", "peers"])).await;
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["address"], "127.0.0.1");
    let (ok, out, err) = run_bin(args(&["ctl", "--api", &a, "routes"])).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("10.1.0.0/24") && out.contains("local"),
        "{out}"
    );
    let (ok, out, err) = run_bin(args(&["ctl", "--api", &a, "routes", "10.1.0.0/24"])).await;
    assert!(ok, "{err}");
    assert!(
        out.starts_with("10.1.0.0/24\n") && out.contains("* best"),
        "{out}"
    );
    let (ok, out, err) = run_bin(args(&["ctl", "--api", &a, "routes", "10.9.0.0/24"])).await;
    assert!(!ok, "{out}");
    assert_eq!(err, "rr-daemon ctl: no route for 10.9.0.0/24 (HTTP 404)\n");
    let (ok, out, err) = run_bin(args(&["ctl", "--api", &a, "status"])).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("AS 65000") && out.contains("Not ready:"),
        "{out}"
    );
    let (ok, out, err) = run_bin(args(&["ctl", "--json", "--api", &a, "status"])).await;
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rib"]["prefixes"], 1);

    // Routes are listed by family, then address, then length, whatever the order they
    // came in; pages follow that order.
    for p in ["2001:db8::/32", "10.0.0.0/8", "192.0.2.0/24", "10.1.0.0/16"] {
        speaker
            .originate(p.parse().unwrap(), Attrs::default())
            .await
            .unwrap();
    }
    let sorted = [
        "10.0.0.0/8",
        "10.1.0.0/16",
        "10.1.0.0/24",
        "192.0.2.0/24",
        "2001:db8::/32",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_json(api, "/v1/status").await.1["rib"]["prefixes"] != sorted.len() {
        assert!(Instant::now() < deadline, "the routes of our own");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (ok, out, err) = run_bin(args(&["ctl", "--api", &a, "routes", "--limit", "3"])).await;
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "Prefix       Next hop  AS path  From\n\
         10.0.0.0/8   -                  local\n\
         10.1.0.0/16  -                  local\n\
         10.1.0.0/24  -                  local\n\
         ... more routes: --offset 3 for the next 3\n"
    );
    let mut listed = Vec::new();
    for offset in ["0", "2", "4"] {
        let (ok, out, err) = run_bin(args(&[
            "ctl", "--api", &a, "--json", "routes", "--limit", "2", "--offset", offset,
        ]))
        .await;
        assert!(ok, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        listed.extend(
            v["routes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["prefix"].as_str().unwrap().to_owned()),
        );
    }
    assert_eq!(listed, sorted);

    speaker.shutdown().await.unwrap();
}

/// No daemon: one line and a non-zero exit, from the function and from the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_reports_an_unreachable_daemon() {
    let closed = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let e = ctl::run(&CtlArgs {
        api: closed.clone(),
        json: false,
        what: CtlCommand::Peers,
        socket: None,
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("cannot reach the daemon at {closed}: connection refused")
    );
    let (ok, out, err) = run_bin(args(&["ctl", "--api", &closed, "status"])).await;
    assert!(!ok);
    assert_eq!(out, "");
    assert_eq!(
        err,
        format!("rr-daemon ctl: cannot reach the daemon at {closed}: connection refused\n")
    );
}

/// Two speakers back to back on 127.0.0.2 and 127.0.0.3 (iBGP): Established, uptime, a
/// route counted as sent on one side and received on the other, readiness 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn established_session_counts_routes_both_ways() {
    let (pa, pb) = (free_port("127.0.0.2"), free_port("127.0.0.3"));
    let a = format!(
        r#"
[speaker]
asn = 65000
router_id = "127.0.0.2"
listen = ["127.0.0.2:{pa}"]
[api]
listen = "127.0.0.1:9179"
[[peer]]
address = "127.0.0.3"
port = {pb}
asn = 65000
source_address = "127.0.0.2"
connect_retry = 1
"#
    );
    let b = format!(
        r#"
[speaker]
asn = 65000
router_id = "127.0.0.3"
listen = ["127.0.0.3:{pb}"]
[api]
listen = "127.0.0.1:9179"
[[peer]]
address = "127.0.0.2"
port = {pa}
asn = 65000
source_address = "127.0.0.3"
passive = true
"#
    );
    let (sa, api_a) = start(&a).await;
    let (sb, api_b) = start(&b).await;
    // A next hop of our own: the receiver treats a loopback one as martian (RFC 7606).
    let attrs = Attrs {
        next_hop: Some(NextHop::V4("192.0.2.1".parse().unwrap())),
        ..Attrs::default()
    };
    sa.originate("10.2.0.0/24".parse().unwrap(), attrs)
        .await
        .unwrap();

    let pb_seen = wait_peer(api_b, "127.0.0.2", |p| {
        p["state"] == "Established" && p["prefixes_accepted"] == 1
    })
    .await;
    assert_eq!(pb_seen["prefixes_received"], 1, "{pb_seen}");
    assert!(
        pb_seen["updates_received"].as_u64().unwrap() >= 1,
        "{pb_seen}"
    );
    assert!(pb_seen["uptime_s"].is_u64(), "{pb_seen}");
    assert_eq!(pb_seen["last_error"], Value::Null, "{pb_seen}");
    let pa_seen = wait_peer(api_a, "127.0.0.3", |p| p["prefixes_sent"] == 1).await;
    assert_eq!(pa_seen["state"], "Established");
    assert!(pa_seen["updates_sent"].as_u64().unwrap() >= 1, "{pa_seen}");

    for api in [api_a, api_b] {
        let (status, r) = get_json(api, "/readyz").await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["established"], 1);
    }
    let (_, d) = get_json(api_b, "/v1/routes/10.2.0.0%2F24").await;
    assert_eq!(d["paths"][0]["peer"], "127.0.0.2", "{d}");
    assert_eq!(d["paths"][0]["status"], "best", "{d}");
    assert_eq!(d["paths"][0]["next_hop"], "192.0.2.1", "{d}");
    assert_eq!(d["paths"][0]["local_pref"], 100, "{d}");
    let (_, text) = get(api_a, "/metrics").await;
    let samples = parse_metrics(&text);
    let l = "peer=\"127.0.0.3\"";
    assert_eq!(sample(&samples, "rr_peer_state", l), Some(6.0));
    assert_eq!(sample(&samples, "rr_peer_up", l), Some(1.0));
    assert_eq!(
        sample(&samples, "rr_peer_prefixes_sent_total", l),
        Some(1.0)
    );
    // One OPEN each way, and the UPDATE of our route (with End-of-RIB) went out.
    for dir in ["received", "sent"] {
        let open = format!("{l},peer_asn=\"65000\",group=\"\",direction=\"{dir}\",type=\"open\"");
        assert!(
            sample(&samples, "rr_peer_messages_total", &open).unwrap_or(0.0) >= 1.0,
            "{open}\n{text}"
        );
    }
    let updates = format!("{l},peer_asn=\"65000\",group=\"\",direction=\"sent\",type=\"update\"");
    assert!(
        sample(&samples, "rr_peer_messages_total", &updates).unwrap() >= 1.0,
        "{text}"
    );
    assert!(sample(&samples, "rr_update_processing_seconds_count", "").is_some());
    assert!(sample(&samples, "rr_core_batch_seconds_count", "").unwrap() >= 1.0);
    let table = ctl::run(&CtlArgs {
        api: api_b.to_string(),
        json: false,
        what: CtlCommand::Peers,
        socket: None,
    })
    .unwrap();
    assert!(
        table.contains("Established") && table.contains("1/1/0"),
        "{table}"
    );

    // B originates the prefix too: its own route wins before any attribute is compared
    // (A's path has the same LOCAL_PREF and AS_PATH), and the explanation says why A's
    // path lost.
    sb.originate("10.2.0.0/24".parse().unwrap(), Attrs::default())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let d = loop {
        let (_, d) = get_json(api_b, "/v1/routes/10.2.0.0%2F24").await;
        if d["paths"].as_array().is_some_and(|p| p.len() == 2) {
            break d;
        }
        assert!(Instant::now() < deadline, "{d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(d["paths"][0]["peer"], Value::Null, "ours first: {d}");
    assert_eq!(d["paths"][0]["status"], "best", "{d}");
    assert_eq!(d["paths"][1]["peer"], "127.0.0.2", "{d}");
    assert_eq!(d["paths"][1]["status"], "lost", "{d}");
    assert_eq!(
        d["paths"][1]["reason"], "learned, while this speaker originates the prefix",
        "{d}"
    );

    sa.shutdown().await.unwrap();
    sb.shutdown().await.unwrap();
}

/// A wrong AS on one side: both sides say what does not match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mismatch_is_explained_on_both_sides() {
    let (pa, pb) = (free_port("127.0.0.5"), free_port("127.0.0.6"));
    let a = format!(
        r#"
[speaker]
asn = 65000
router_id = "127.0.0.5"
listen = ["127.0.0.5:{pa}"]
[[peer]]
address = "127.0.0.6"
port = {pb}
asn = 65000
source_address = "127.0.0.5"
connect_retry = 1
"#
    );
    // B expects AS 65001 from A, which says 65000.
    let b = format!(
        r#"
[speaker]
asn = 65000
router_id = "127.0.0.6"
listen = ["127.0.0.6:{pb}"]
[[peer]]
address = "127.0.0.5"
port = {pa}
asn = 65001
import = "all"
export = "all"
source_address = "127.0.0.6"
passive = true
"#
    );
    let (sa, api_a) = start(&a).await;
    let (sb, api_b) = start(&b).await;
    let has =
        |s: &'static str| move |p: &Value| p["last_error"].as_str().is_some_and(|e| e.contains(s));
    let pa_seen = wait_peer(api_a, "127.0.0.6", has("the peer refused our AS 65000")).await;
    assert!(
        pa_seen["last_notification_received"]
            .as_str()
            .unwrap()
            .contains("Bad Peer AS"),
        "{pa_seen}"
    );
    let pb_seen = wait_peer(
        api_b,
        "127.0.0.5",
        has("OPEN mismatch: peer says AS 65000, configured 65001"),
    )
    .await;
    assert!(
        pb_seen["last_error"]
            .as_str()
            .unwrap()
            .contains("Bad Peer AS"),
        "{pb_seen}"
    );
    assert!(
        pb_seen["last_notification_sent"]
            .as_str()
            .unwrap()
            .contains("Bad Peer AS"),
        "{pb_seen}"
    );
    sa.shutdown().await.unwrap();
    sb.shutdown().await.unwrap();
}

/// A configured peer's status for [`api::readiness`], in `state`.
fn status(address: &str, state: &str) -> PeerStatus {
    PeerStatus {
        address: address.parse().unwrap(),
        interface: None,
        asn: 65000,
        group: None,
        state: serde_json::from_str(&format!("\"{state}\"")).unwrap(),
        uptime_s: None,
        prefixes_received: 0,
        prefixes_accepted: 0,
        prefixes_sent: 0,
        updates_received: 0,
        updates_sent: 0,
        queued_bytes: 0,
        since_s: 3,
        age_s: 600,
        last_error: Some("connection failed: Connection refused".to_owned()),
        last_notification_sent: None,
        last_notification_received: None,
        graceful_restart_pending: false,
        dynamic: false,
        flaps: 0,
        bfd: None,
        down_reason: None,
        description: None,
        enabled: true,
    }
}

/// Calico's rule (`calico-node -bird-ready`): within the grace period after the start every
/// configured peer must be Established; after it one Established peer is enough, so that one
/// dead node does not make every node of a mesh unready; a node without peers is ready.
#[test]
fn test_readiness_every_peer_at_start_then_one() {
    let grace = Duration::from_secs(30);
    let s = Duration::from_secs;
    let (up, down) = (
        status("10.0.0.1", "Established"),
        status("10.0.0.2", "Active"),
    );
    let mesh = [up.clone(), down.clone(), status("10.0.0.3", "Established")];

    // Starting: the dead peer keeps us unready, and says why.
    let r = api::readiness(&mesh, s(10), grace);
    assert!(!r.ready);
    assert_eq!((r.peers, r.established), (3, 2));
    assert_eq!(r.not_ready.len(), 1);
    assert_eq!(r.not_ready[0].address.to_string(), "10.0.0.2");
    assert!(
        r.not_ready[0].reason.contains("Connection refused"),
        "{r:?}"
    );
    assert!(r.not_ready[0].reason.contains("first 30 s"), "{r:?}");
    // Up to the last instant of the grace period.
    assert!(!api::readiness(&mesh, s(29), grace).ready);
    // After it: one Established peer is enough.
    let r = api::readiness(&mesh, s(30), grace);
    assert!(r.ready && r.not_ready.is_empty(), "{r:?}");
    assert!(api::readiness(&[down.clone(), up.clone()], s(3600), grace).ready);
    // ... but not none.
    let r = api::readiness(&[down.clone(), status("10.0.0.4", "Idle")], s(3600), grace);
    assert!(!r.ready);
    assert_eq!(r.not_ready.len(), 2);
    assert!(
        r.not_ready[0].reason.contains("no peer is Established"),
        "{r:?}"
    );
    // All up at start: ready at once.
    assert!(api::readiness(std::slice::from_ref(&up), Duration::ZERO, grace).ready);

    // No peers, or only dynamic neighbours: ready, starting or not.
    assert!(api::readiness(&[], Duration::ZERO, grace).ready);
    let mut dynamic = status("10.1.0.1", "Idle");
    dynamic.dynamic = true;
    for t in [s(0), s(3600)] {
        let r = api::readiness(std::slice::from_ref(&dynamic), t, grace);
        assert!(r.ready && r.peers == 0, "{r:?}");
    }
    let r = api::readiness(&[dynamic, up.clone()], s(1), grace);
    assert!(r.ready, "dynamic neighbours do not count");
    assert_eq!((r.peers, r.established), (1, 1));

    // Graceful-restart recovery at start is not over until the peer's End-of-RIB.
    let mut restarting = up.clone();
    restarting.graceful_restart_pending = true;
    let r = api::readiness(std::slice::from_ref(&restarting), s(5), grace);
    assert!(!r.ready);
    assert!(r.not_ready[0].reason.contains("End-of-RIB"));
    assert!(api::readiness(&[restarting, up], s(60), grace).ready);

    // A zero grace period: one Established peer from the start.
    assert!(api::readiness(&mesh, Duration::ZERO, Duration::ZERO).ready);
    assert!(!api::readiness(&[down], Duration::ZERO, Duration::ZERO).ready);
}

const FIB_SPEAKER: &str = "[speaker]\nasn = 65000\nrouter_id = \"127.0.0.70\"\nlisten = []\n\
                           [api]\nlisten = \"127.0.0.70:0\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_fib_off_is_404() {
    let (_speaker, addr) = start(FIB_SPEAKER).await;
    let (code, body) = get(addr, "/v1/fib").await;
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("[fib] is off"), "{body}");
    let (_, metrics) = get(addr, "/metrics").await;
    assert!(!metrics.contains("rr_fib_"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_fib_report_metrics_and_readiness() {
    use rr_daemon::fib::{FibFailure, FibHandle, FibReport};
    let config = Config::parse(FIB_SPEAKER, "test.toml").unwrap();
    let (speaker, _core) = Speaker::start(config).await.unwrap();
    let (handle, mut requests) = FibHandle::new();
    let report = FibReport {
        table: 254,
        protocol: 12,
        synced: true,
        installed: 2,
        desired: 3,
        pending: 1,
        failing: 1,
        adds: 5,
        deletes: 3,
        errors: 2,
        adopted: 0,
        batches: 4,
        routes: vec!["10.0.0.0/24 via 192.0.2.1 metric 1024".into()],
        failed: vec![FibFailure {
            prefix: "10.0.1.0/24".parse().unwrap(),
            error: "Network is unreachable".into(),
        }],
    };
    let answer = report.clone();
    tokio::spawn(async move {
        while let Some(r) = requests.next().await {
            let _ = r.send(answer.clone());
        }
    });
    let options = ApiOptions {
        fib: Some(handle),
        ready_requires_fib: true,
        ..options()
    };
    let (addr, _task) = api::spawn("127.0.0.70:0".parse().unwrap(), speaker, options)
        .await
        .unwrap();
    let (code, body) = get(addr, "/v1/fib").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(serde_json::from_str::<FibReport>(&body).unwrap(), report);
    let (_, metrics) = get(addr, "/metrics").await;
    for line in [
        "rr_fib_routes_installed 2",
        "rr_fib_routes_pending 1",
        "rr_fib_ops_total{op=\"add\"} 5",
        "rr_fib_ops_total{op=\"delete\"} 3",
        "rr_fib_errors_total 2",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    // No peers: ready but for the failing route.
    let (code, body) = get(addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("1 route(s) failing"), "{body}");
    let text = ctl::run(&CtlArgs {
        api: addr.to_string(),
        json: false,
        what: CtlCommand::Fib,
        socket: None,
    })
    .unwrap();
    assert!(
        text.contains("FAILING 10.0.1.0/24: Network is unreachable"),
        "{text}"
    );
    assert!(
        text.contains("10.0.0.0/24 via 192.0.2.1 metric 1024"),
        "{text}"
    );
}
