//! `/metrics` and the logs after a real session with BIRD 2: every series of issue 16
//! with its labels and values, a NOTIFICATION counted by code once BIRD disables the
//! protocol, the log level changed by a reload (SIGHUP), and JSON log lines flattened;
//! and `/metrics` at size (100,000 routes from BIRD 2, 500 clients of `bgp-load`).
//!
//! Topology: two namespaces joined by a veth; ours holds 192.0.2.1/24 (AS 64512, the peer
//! in group `clients`), BIRD 2 holds 192.0.2.2/24 (AS 64513) and announces three routes.
//!
//! Needs root and BIRD 2 (`sudo tests/scripts/install-peers.sh`).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use interop_tests::{
    Bird, BirdVersion, Daemon, Link, Netns, Proc, WorkDir, ctl_json, load_args, poll, require_root,
    run_cmd,
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

/// Ours (192.0.2.1/24) and BIRD 2's (192.0.2.2/24) namespaces joined by a veth, and the
/// work dir. The fields drop in order: the link, then the namespaces.
struct Pair {
    _link: Link,
    _theirs: Netns,
    ours: Netns,
    dir: std::path::PathBuf,
}

impl Pair {
    /// The namespaces `ours` and `theirs`, and BIRD 2 started in `theirs` with `config`
    /// (protocol `p1`). Declared after the pair, BIRD stops before the namespaces go.
    fn start(dir: &WorkDir, ours: &str, theirs: &str, config: &str) -> (Self, Bird) {
        let ours = Netns::create(ours).unwrap();
        let theirs = Netns::create(theirs).unwrap();
        let link = Link::new(&ours, &["192.0.2.1/24"], &theirs, &["192.0.2.2/24"]).unwrap();
        let bird = Bird::start_config(
            BirdVersion::V2,
            &theirs,
            dir.path(),
            "bird",
            "p1",
            false,
            config,
        )
        .unwrap_or_else(|e| panic!("cannot start BIRD 2: {e}"));
        let pair = Self {
            _link: link,
            _theirs: theirs,
            ours,
            dir: dir.path().to_owned(),
        };
        (pair, bird)
    }

    /// Fails with `msg`, our daemon's last lines, BIRD's view of `p1` and the work dir.
    fn fail(&self, d: &Daemon, bird: &Bird, msg: &str) -> ! {
        panic!(
            "{msg}\n{}\n{}\nwork dir: {}",
            d.transcript(60),
            bird.birdc(&["show", "protocols", "all", "p1"])
                .unwrap_or_else(|e| e),
            self.dir.display()
        )
    }
}

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
    let (pair, bird) = Pair::start(&dir, "rrmet", "birdmet", BIRD);
    let ours = &pair.ours;
    // `--log-level info` over the harness's RUST_LOG (which asks for debug).
    let mut d = Daemon::start_with(
        ours,
        dir.path(),
        exe(),
        &daemon_config(None),
        &["--log-level", "info"],
    )
    .unwrap_or_else(|e| panic!("cannot start the daemon: {e}"));
    let fail = |d: &Daemon, msg: &str| -> ! { pair.fail(d, &bird, msg) };
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
        let v = ctl_json(ours, exe(), API, &["neighbor", PEER]).ok()?;
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

/// Routes BIRD 2 announces in the test at size.
const SIZE_ROUTES: usize = 100_000;
/// Clients of `bgp-load fabric` in the test at size.
const SIZE_CLIENTS: usize = 500;
/// The fabric clients' AS (bgp-load's default, and ours: iBGP).
const SIZE_AS: u32 = 65000;

fn load_tool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bgp-load"))
}

/// Ours: BIRD 2 (eBGP, group `upstream`) on the link, and the clients (iBGP
/// route-reflector clients, group `nodes`) on the namespace's loopback, 127.0.1.1 on.
fn size_config() -> String {
    let mut s = format!(
        "[speaker]\nasn = {SIZE_AS}\nrouter_id = \"192.0.2.1\"\n\
         listen = [\"192.0.2.1:179\", \"127.0.0.1:179\"]\ncluster_id = \"1.0.0.1\"\n\
         connect_retry = 1\n\n\
         [api]\nlisten = \"{API}\"\n\n\
         [[peer_group]]\nname = \"upstream\"\nasn = 64513\nimport = \"all\"\nexport = \"all\"\n\
         hold_time = 30\n\n\
         [[peer_group]]\nname = \"nodes\"\nasn = {SIZE_AS}\nrr_client = true\n\n\
         [[peer]]\naddress = \"{PEER}\"\ngroup = \"upstream\"\n"
    );
    for a in size_clients() {
        let _ = write!(s, "\n[[peer]]\naddress = \"{a}\"\ngroup = \"nodes\"\n");
    }
    s
}

fn size_clients() -> impl Iterator<Item = std::net::Ipv4Addr> {
    let first = u32::from(std::net::Ipv4Addr::new(127, 0, 1, 1));
    (0..SIZE_CLIENTS as u32).map(move |i| std::net::Ipv4Addr::from(first + i))
}

/// BIRD 2 exporting 100,000 static /24s tagged NO_ADVERTISE (so that they stop at us
/// and the clients see only each other's blocks), importing what we send.
fn size_bird() -> String {
    let mut s = String::with_capacity(40 * SIZE_ROUTES + 1024);
    s.push_str(
        "router id 192.0.2.2;\nprotocol device { scan time 10; }\nprotocol static s100k {\n  ipv4;\n",
    );
    for i in 0..SIZE_ROUTES {
        let _ = writeln!(
            s,
            "  route {}.{}.{}.0/24 blackhole;",
            10 + (i >> 16),
            (i >> 8) & 255,
            i & 255
        );
    }
    let _ = write!(
        s,
        "}}\nprotocol bgp p1 {{\n  local 192.0.2.2 as 64513;\n  neighbor 192.0.2.1 as {SIZE_AS};\n\
         \x20 hold time 30;\n  connect retry time 1;\n  error wait time 1,2;\n\
         \x20 ipv4 {{ import all; export filter {{ if source != RTS_STATIC then reject; \
         bgp_community.add((65535, 65282)); accept; }}; }};\n}}\n"
    );
    s
}

/// `Routes: N imported, M filtered, K exported` of BIRD 2's channel of `proto`:
/// (imported, exported).
fn bird_routes(b: &Bird, proto: &str) -> Option<(u64, u64)> {
    let out = b.birdc(&["show", "protocols", "all", proto]).ok()?;
    let line = out.lines().find(|l| l.trim().starts_with("Routes:"))?;
    let num = |what: &str| {
        line.split(',')
            .find(|p| p.contains(what))
            .and_then(|p| p.split_whitespace().find_map(|w| w.parse::<u64>().ok()))
    };
    Some((num("imported")?, num("exported")?))
}

/// `/metrics` at size: 100,000 routes from BIRD 2 and 500 route-reflector clients
/// (`bgp-load fabric`, each announcing one block and learning the 499 others). Every
/// peer's prefix counters equal what it sent and what it holds (BIRD's own counts, the
/// load tool's exact completion), the labels are right, and a scrape's size and time
/// are measured and bounded (a 2-core machine shared with other work: loose bounds that
/// catch a series per route or a scrape that walks the table per peer).
/// About 15 s in a debug build.
#[test]
fn metrics_at_size_100k_routes_and_500_peers() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let log = |what: &str| {
        eprintln!(
            "[metrics-size +{:6.1}s] {what}",
            started.elapsed().as_secs_f64()
        )
    };
    let dir = WorkDir::new("metrics-size").unwrap();
    let (pair, bird) = Pair::start(&dir, "rrmsz", "birdmsz", &size_bird());
    let ours = &pair.ours;
    let mut d = Daemon::start(ours, dir.path(), exe(), &size_config())
        .unwrap_or_else(|e| panic!("cannot start the daemon: {e}"));
    let fail = |d: &Daemon, msg: &str| -> ! { pair.fail(d, &bird, msg) };
    let up = poll(Duration::from_secs(120), Duration::from_millis(500), || {
        let v = ctl_json(ours, exe(), API, &["neighbor", PEER]).ok()?;
        (v["prefixes_accepted"] == SIZE_ROUTES).then_some(())
    });
    if up.is_none() {
        fail(&d, "BIRD's 100,000 routes not in within 120 s");
    }
    log("BIRD 2: 100,000 routes in");

    // The clients: up until we stop the daemon (--await-cease), the ready file once every
    // one holds the 499 other blocks.
    let ready = dir.path().join("fabric.ready");
    let args = load_args(
        "fabric",
        &[
            "--clients",
            &SIZE_CLIENTS.to_string(),
            "--await-cease",
            "--ready-file",
            &ready.display().to_string(),
            "--timeout",
            "240",
        ],
    );
    let mut tool: Proc = ours
        .spawn(dir.path(), "bgp-load", load_tool(), &args, &[], false)
        .unwrap_or_else(|e| panic!("cannot start bgp-load: {e}"));
    if poll(Duration::from_secs(180), Duration::from_millis(500), || {
        ready.exists().then_some(())
    })
    .is_none()
    {
        fail(&d, "the 500 clients did not converge within 180 s");
    }
    log("500 clients: each holds the 499 other blocks");
    // BIRD holds the 500 blocks we send it.
    let blocks = SIZE_CLIENTS as u64;
    let held = poll(Duration::from_secs(60), Duration::from_millis(500), || {
        bird_routes(&bird, "p1").filter(|r| r.0 == blocks)
    });
    let Some((imported, exported)) = held else {
        fail(&d, "BIRD does not hold the 500 blocks")
    };
    assert_eq!(exported, SIZE_ROUTES as u64, "BIRD exported its table");
    log(&format!(
        "BIRD: {imported} imported from us, {exported} exported"
    ));

    // Scrapes: size and time, the last one checked; `/v1/status` (the same snapshot of
    // the core, no text to render) timed alongside for the split.
    let file = dir.path().join("metrics.txt");
    let mut times = Vec::new();
    let mut status_ms = Vec::new();
    let mut bytes = 0;
    for _ in 0..5 {
        let out = ours
            .exec(
                "curl",
                &[
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{time_total}",
                    &format!("http://{API}/v1/status"),
                ],
            )
            .unwrap_or_else(|e| fail(&d, &format!("curl: {e}")));
        status_ms.push(out.trim().parse::<f64>().unwrap_or(f64::NAN) * 1000.0);
        let out = ours
            .exec(
                "curl",
                &[
                    "-s",
                    "-o",
                    &file.display().to_string(),
                    "-w",
                    "%{http_code} %{size_download} %{time_total}",
                    &format!("http://{API}/metrics"),
                ],
            )
            .unwrap_or_else(|e| fail(&d, &format!("curl: {e}")));
        let f: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(f.first(), Some(&"200"), "{out}");
        bytes = f[1].parse::<u64>().unwrap();
        times.push(f[2].parse::<f64>().unwrap() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    status_ms.sort_by(f64::total_cmp);
    log(&format!(
        "/metrics with {} peers and {SIZE_ROUTES} routes: {bytes} bytes, {:.1} ms median \
         ({:.1} min, {:.1} max of 5); /v1/status {:.1} ms median",
        SIZE_CLIENTS + 1,
        times[2],
        times[0],
        times[4],
        status_ms[2]
    ));
    let text = std::fs::read_to_string(&file).unwrap();
    let s = samples(&text);
    // Bounded: series per peer, not per route (about 70 series a peer of under 100 bytes).
    assert!(
        bytes < 8_000_000,
        "/metrics is {bytes} bytes for {} peers",
        SIZE_CLIENTS + 1
    );
    assert!(times[2] < 2000.0, "/metrics takes {times:?} ms");

    let bird_labels = [
        "peer=\"192.0.2.2\"",
        "peer_asn=\"64513\"",
        "group=\"upstream\"",
    ];
    let v = |name: &str, labels: &[&str]| {
        value(&s, name, labels).unwrap_or_else(|| fail(&d, &format!("no {name}{labels:?}")))
    };
    assert_eq!(
        v("rr_peer_prefixes_received_total", &bird_labels),
        SIZE_ROUTES as f64
    );
    assert_eq!(
        v("rr_peer_prefixes_accepted", &bird_labels),
        SIZE_ROUTES as f64
    );
    assert_eq!(
        v("rr_peer_prefixes_sent_total", &bird_labels),
        imported as f64
    );
    assert_eq!(v("rr_peer_up", &bird_labels), 1.0);
    // Each client: its one block in, the 499 others out exactly once (sent counts
    // announcements: a client joining while the group's first walk or another catch-up
    // ran, or announcing in the turn it joined, was once sent blocks twice).
    let mut checked = 0;
    for a in size_clients() {
        let peer = format!("peer=\"{a}\"");
        let l = [peer.as_str(), "peer_asn=\"65000\"", "group=\"nodes\""];
        let got = (
            v("rr_peer_up", &l),
            v("rr_peer_prefixes_received_total", &l),
            v("rr_peer_prefixes_accepted", &l),
        );
        assert_eq!(got, (1.0, 1.0, 1.0), "client {a}: up, received, accepted");
        let sent = v("rr_peer_prefixes_sent_total", &l);
        let others = (SIZE_CLIENTS - 1) as f64;
        assert_eq!(sent, others, "client {a}: prefixes sent");
        checked += 1;
    }
    assert_eq!(checked, SIZE_CLIENTS);
    let series = |name: &str| s.iter().filter(|(n, _, _)| n == name).count();
    assert_eq!(series("rr_peer_prefixes_received_total"), SIZE_CLIENTS + 1);
    assert_eq!(series("rr_peer_up"), SIZE_CLIENTS + 1);
    assert_eq!(
        value(&s, "rr_rib_prefixes", &["afi_safi=\"ipv4-unicast\""]),
        Some((SIZE_ROUTES + SIZE_CLIENTS) as f64)
    );
    log(&format!(
        "counters of {} peers exact, {} samples",
        SIZE_CLIENTS + 1,
        s.len()
    ));

    // Ours stops: every client gets its Cease and the load tool reports exactly.
    d.terminate(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    let status = tool.wait_exit(Duration::from_secs(60));
    let out = std::fs::read_to_string(tool.stdout_path()).unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("bgp-load printed no JSON ({e}):\n{out}"));
    assert!(status.is_some_and(|s| s.success()), "bgp-load: {report:#}");
    assert_eq!(report["unexpected"].as_u64(), Some(0), "{report:#}");
    assert_eq!(
        report["incomplete"].as_array().map(Vec::len),
        Some(0),
        "{report:#}"
    );
    log("done");
}
