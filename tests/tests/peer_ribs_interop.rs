//! Per-peer tables and neighbour detail against real peers: BIRD 2 sends 100,000 routes,
//! an import policy rejects 256 of them, a BIRD 2 client receives what is left.
//!
//! Topology: a hub namespace with the reflector (our daemon, 192.0.2.1, AS 65000), the
//! source BIRD 2 (192.0.2.2, eBGP AS 64513, router id 192.0.2.22) in a namespace of its
//! own, and the client BIRD 2 (192.0.2.3, an iBGP route-reflector client) in another.
//!
//! Checked, each against what the peers hold or say themselves:
//! * paging through `ctl routes --peer 192.0.2.2 --in --received` yields exactly the
//!   100,000 routes BIRD was configured to send, and `--in` (after import policy) exactly
//!   those minus the 256 the policy rejects;
//! * `ctl routes --peer 192.0.2.3 --out` equals, prefix by prefix and next hop by next
//!   hop, what the client BIRD holds in its own table (`show route all`);
//! * longest match (`ctl routes ADDRESS`, and `--peer ... --in ADDRESS`), more-specifics,
//!   community, origin AS, family filters;
//! * `ctl neighbor`: BIRD's router id and hold time (from `birdc show protocols all`),
//!   ports as `ss -tn` shows them in BIRD's namespace, flaps and the last NOTIFICATION
//!   received with its RFC 9003 text after `birdc disable feed "..."`.
//!
//! Needs root and BIRD 2 (`tests/scripts/install-peers.sh`). `KEEP_WORK=1` keeps the work
//! dir.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use interop_tests::{
    Bird, BirdVersion, ClientConfig, Daemon, Hub, Netns, WorkDir, ctl_json, poll, require_root,
};
use serde_json::Value;

const API: &str = "127.0.0.1:9179";
const SRC: &str = "192.0.2.2";
const CLIENT: &str = "192.0.2.3";
/// Routes BIRD sends: 99,998 /24s and two more-specifics inside 20.1.5.0/24.
const ROUTES: usize = 100_000;
/// What the import policy rejects: 20.2.0.0/16 and everything in it (256 /24s).
const REJECTED: usize = 256;
/// Bound on BIRD sending the table and the client receiving it (seconds on an idle
/// machine; this one is shared).
const BULK_WITHIN: Duration = Duration::from_secs(240);
/// Page size of the listings.
const PAGE: usize = 10_000;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

fn table() -> Vec<String> {
    let mut v: Vec<String> = (0..ROUTES as u32 - 2)
        .map(|i| format!("{}.{}.{}.0/24", 20 + (i >> 16), (i >> 8) & 255, i & 255))
        .collect();
    v.push("20.1.5.128/25".to_owned());
    v.push("20.1.5.192/26".to_owned());
    v
}

fn rejected(p: &str) -> bool {
    p.starts_with("20.2.")
}

fn tagged(p: &str) -> bool {
    p.starts_with("20.3.")
}

const DAEMON: &str = r#"
[speaker]
asn = 65000
router_id = "192.0.2.1"
listen = ["0.0.0.0:179"]
connect_retry = 1

[api]
listen = "127.0.0.1:9179"

[[policy]]
name = "not-20-2"
default_action = "accept"
[[policy.rule]]
prefixes = ["20.2.0.0/16 le 32"]
action = "reject"

[[peer]]
address = "192.0.2.2"
asn = 64513
import = "not-20-2"
soft_reconfiguration_inbound = true

[[peer]]
address = "192.0.2.3"
asn = 65000
rr_client = true
"#;

/// The source BIRD: the table as static routes, sent to us with 20.3/16 tagged.
fn source_config() -> String {
    let mut s = String::from(
        "router id 192.0.2.22;\n\
         protocol device { scan time 10; }\n\
         protocol static st {\n  ipv4;\n",
    );
    for p in table() {
        let _ = writeln!(s, "  route {p} blackhole;");
    }
    s.push_str(
        "}\n\
         protocol bgp feed {\n\
         \x20 local 192.0.2.2 as 64513;\n\
         \x20 neighbor 192.0.2.1 as 65000;\n\
         \x20 direct;\n\
         \x20 hold time 21;\n\
         \x20 keepalive time 7;\n\
         \x20 connect retry time 1;\n\
         \x20 connect delay time 1;\n\
         \x20 error wait time 1,2;\n\
         \x20 ipv4 {\n\
         \x20   import none;\n\
         \x20   export filter { if net ~ [ 20.3.0.0/16+ ] then bgp_community.add((64513,7)); accept; };\n\
         \x20 };\n\
         }\n",
    );
    s
}

fn client() -> ClientConfig {
    ClientConfig {
        name: "client".into(),
        router_id: CLIENT.parse().unwrap(),
        asn: 65000,
        addr: CLIENT.parse().unwrap(),
        rr_addr: "192.0.2.1".parse().unwrap(),
        rr_asn: 65000,
        hold: 30,
        keepalive: 10,
        connect_retry: 1,
        connect_delay: 1,
        passive: false,
        routes: Vec::new(),
    }
}

struct World {
    hub: Hub,
    daemon: Daemon,
    src: Bird,
    client: Bird,
    src_ns: Netns,
    started: Instant,
}

impl World {
    fn log(&self, what: &str) {
        eprintln!(
            "[peer-ribs +{:6.1}s] {what}",
            self.started.elapsed().as_secs_f64()
        );
    }

    fn ctl(&self, args: &[&str]) -> Value {
        ctl_json(self.hub.ns(), exe(), API, args)
            .unwrap_or_else(|e| self.fail(&format!("ctl {}: {e}", args.join(" "))))
    }

    fn neighbor(&self, addr: &str) -> Value {
        self.ctl(&["neighbor", addr])
    }

    /// Every route of `ctl routes --peer ARGS`, paged by cursor; the prefixes with their
    /// route objects, checking none comes twice.
    fn peer_routes(&self, args: &[&str]) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        let mut cursor: Option<String> = None;
        let limit = PAGE.to_string();
        for _ in 0..1000 {
            let mut argv: Vec<&str> = vec!["routes"];
            argv.extend_from_slice(args);
            argv.extend_from_slice(&["--limit", &limit]);
            if let Some(c) = &cursor {
                argv.extend_from_slice(&["--cursor", c]);
            }
            let mut page = self.ctl(&argv);
            let routes = match page["routes"].take() {
                Value::Array(v) => v,
                other => self.fail(&format!("no routes in the answer: {other}")),
            };
            assert!(routes.len() <= PAGE, "a page holds at most its limit");
            for r in routes {
                let p = r["prefix"].as_str().unwrap().to_owned();
                if let Some(old) = out.insert(p.clone(), r) {
                    self.fail(&format!("{p} listed twice: {old}"));
                }
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
        self.fail("paging did not end after 1000 pages")
    }

    fn ipv4_counts(&self, addr: &str) -> Value {
        let n = self.neighbor(addr);
        n["prefixes"]
            .as_array()
            .and_then(|v| v.iter().find(|f| f["family"] == "ipv4-unicast").cloned())
            .unwrap_or(Value::Null)
    }

    fn fail(&self, msg: &str) -> ! {
        let mut s = format!("peer-ribs: {msg}\n");
        if let Ok(p) = ctl_json(self.hub.ns(), exe(), API, &["peers"]) {
            let _ = writeln!(s, "--- ctl peers ---\n{p:#}");
        }
        let _ = writeln!(s, "{}", self.daemon.transcript(60));
        let _ = writeln!(
            s,
            "{}",
            self.src
                .birdc(&["show", "protocols", "all", "feed"])
                .unwrap_or_else(|e| e)
        );
        let _ = writeln!(
            s,
            "{}",
            self.client
                .birdc(&["show", "protocols"])
                .unwrap_or_else(|e| e)
        );
        panic!("{s}");
    }
}

/// Routes in the client BIRD's table from the reflector (`show route count`).
fn bird_count(b: &Bird) -> Option<u64> {
    let out = b.birdc(&["show", "route", "count"]).ok()?;
    out.split_whitespace().find_map(|w| w.parse().ok())
}

/// `birdc show route`: each prefix with the next hop of its (one) route. BIRD 2 prints
/// the prefix and route on one line and `via ADDR on IFACE` on the next; the terse form
/// is a fraction of `show route all` for the same table.
fn bird_next_hops(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut prefix: Option<String> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("via ") {
            if let (Some(p), Some(nh)) = (prefix.take(), rest.split_whitespace().next()) {
                out.insert(p, nh.to_owned());
            }
        } else if !line.starts_with(char::is_whitespace)
            && let Some(first) = t.split_whitespace().next()
            && first.contains('/')
        {
            prefix = Some(first.to_owned());
        }
    }
    out
}

/// `Hold timer: 12.345/21` in `birdc show protocols all`: the hold time in use.
fn bird_hold_time(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.trim().starts_with("Hold timer:"))?;
    line.rsplit('/').next()?.trim().parse().ok()
}

#[test]
fn peer_tables_and_neighbor_detail_against_bird() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let dir = WorkDir::new("peer-ribs").unwrap();
    let hub = Hub::create("rr", &["192.0.2.1/24"]).unwrap_or_else(|e| panic!("{e}"));
    let src_ns = Netns::create("src").unwrap();
    let cli_ns = Netns::create("cli").unwrap();
    let _l1 = hub.attach(&src_ns, &[&format!("{SRC}/24")]).unwrap();
    let _l2 = hub.attach(&cli_ns, &[&format!("{CLIENT}/24")]).unwrap();
    let daemon = Daemon::start(hub.ns(), dir.path(), exe(), DAEMON)
        .unwrap_or_else(|e| panic!("cannot start the daemon: {e}"));
    let client = Bird::start_client(BirdVersion::V2, &cli_ns, dir.path(), client())
        .unwrap_or_else(|e| panic!("cannot start the client BIRD: {e}"));
    let src = Bird::start_config(
        BirdVersion::V2,
        &src_ns,
        dir.path(),
        "src",
        "feed",
        false,
        &source_config(),
    )
    .unwrap_or_else(|e| panic!("cannot start the source BIRD: {e}"));
    let w = World {
        hub,
        daemon,
        src,
        client,
        src_ns,
        started,
    };
    w.log("daemon and both BIRDs started");

    // The whole table in, the client's share out.
    let accepted = (ROUTES - REJECTED) as u64;
    let t = Instant::now();
    let got = poll(BULK_WITHIN, Duration::from_millis(500), || {
        let c = w.ipv4_counts(SRC);
        let full = c["received"] == ROUTES as u64 && c["accepted"] == accepted;
        (full && bird_count(&w.client) == Some(accepted)).then_some(())
    });
    if got.is_none() {
        w.fail(&format!(
            "not every route in within {BULK_WITHIN:?}: source {}, client BIRD {:?}",
            w.ipv4_counts(SRC),
            bird_count(&w.client)
        ));
    }
    w.log(&format!(
        "{ROUTES} routes in, {accepted} at the client, in {:.1}s",
        t.elapsed().as_secs_f64()
    ));

    // --in --received: exactly what BIRD was told to send.
    let want: BTreeSet<String> = table().into_iter().collect();
    let t = Instant::now();
    let received = w.peer_routes(&["--peer", SRC, "--in", "--received"]);
    w.log(&format!(
        "--in --received: {} routes in {:.2}s",
        received.len(),
        t.elapsed().as_secs_f64()
    ));
    assert_eq!(received.len(), ROUTES);
    assert!(
        received.keys().eq(want.iter()),
        "--in --received is not the table sent"
    );
    assert!(
        received
            .iter()
            .all(|(p, r)| (r["status"] == "rejected") == rejected(p)),
        "exactly the policy's prefixes are marked rejected"
    );
    // --in (after import policy): the table less what the policy rejects.
    let after = w.peer_routes(&["--peer", SRC, "--in"]);
    assert_eq!(after.len(), ROUTES - REJECTED);
    let diff: BTreeSet<&String> = received
        .keys()
        .filter(|p| !after.contains_key(*p))
        .collect();
    let want_diff: BTreeSet<&String> = want.iter().filter(|p| rejected(p)).collect();
    assert_eq!(
        diff, want_diff,
        "before and after policy differ by the rejected set"
    );
    assert!(
        after
            .values()
            .all(|r| r["as_path"] == "64513" && r["status"] == "best")
    );

    // --out towards the client: what the client BIRD holds, next hops included.
    let out = w.peer_routes(&["--peer", CLIENT, "--out"]);
    let held = w
        .client
        .birdc(&["show", "route"])
        .unwrap_or_else(|e| w.fail(&format!("show route at the client: {e}")));
    let held = bird_next_hops(&held);
    assert_eq!(
        out.len(),
        held.len(),
        "--out and the client's table differ in size"
    );
    assert_eq!(held.len(), ROUTES - REJECTED);
    for (p, r) in &out {
        let Some(nh) = held.get(p) else {
            w.fail(&format!("--out lists {p}, which the client does not hold"));
        };
        assert_eq!(
            Some(nh.as_str()),
            r["next_hop"].as_str(),
            "{p}: next hop sent vs held"
        );
        assert_eq!(r["from"], SRC);
    }
    let counts = w.ipv4_counts(CLIENT);
    assert_eq!(counts["advertised"], accepted);
    w.log("--out equals the client's table");

    // Lookups and filters.
    let route = |args: &[&str]| w.ctl(args);
    assert_eq!(route(&["routes", "20.1.5.200"])["prefix"], "20.1.5.192/26");
    assert_eq!(route(&["routes", "20.1.5.130"])["prefix"], "20.1.5.128/25");
    assert_eq!(route(&["routes", "20.1.6.1"])["prefix"], "20.1.6.0/24");
    let lm = route(&["routes", "--peer", SRC, "--in", "20.1.5.130"]);
    let lm: Vec<&str> = lm["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["prefix"].as_str().unwrap())
        .collect();
    assert_eq!(lm, ["20.1.5.128/25"]);
    let ms = w.peer_routes(&["--peer", SRC, "--in", "--more-specifics", "20.1.5.0/24"]);
    assert_eq!(
        ms.keys().map(String::as_str).collect::<Vec<_>>(),
        ["20.1.5.0/24", "20.1.5.128/25", "20.1.5.192/26"]
    );
    let tagged_in = w.peer_routes(&["--peer", SRC, "--in", "--community", "64513:7"]);
    assert_eq!(tagged_in.len(), 256);
    assert!(tagged_in.keys().all(|p| tagged(p)));
    // (Scoped to a /16: a listing of the whole table costs some 15 s in a debug build.)
    let origin = w.peer_routes(&[
        "--peer",
        SRC,
        "--in",
        "--origin-as",
        "64513",
        "--more-specifics",
        "20.1.0.0/16",
    ]);
    assert_eq!(origin.len(), 258);
    assert!(
        w.peer_routes(&["--peer", SRC, "--in", "--as", "65999"])
            .is_empty()
    );
    assert!(
        w.peer_routes(&["--peer", SRC, "--in", "--family", "ipv6"])
            .is_empty()
    );
    // Without soft-reconfiguration inbound, "as received" is refused with the reason.
    let refused = w
        .hub
        .ns()
        .exec(
            &exe().to_string_lossy(),
            &[
                "ctl",
                "--api",
                API,
                "routes",
                "--peer",
                CLIENT,
                "--in",
                "--received",
            ],
        )
        .expect_err("--received without soft_reconfiguration_inbound must fail");
    assert!(
        refused.contains("soft_reconfiguration_inbound"),
        "{refused}"
    );
    w.log("lookups and filters");

    // Neighbour detail against BIRD's own view.
    let n = w.neighbor(SRC);
    assert_eq!(n["router_id"], "192.0.2.22");
    let proto = w
        .src
        .birdc(&["show", "protocols", "all", "feed"])
        .unwrap_or_else(|e| w.fail(&e));
    let bird_hold =
        bird_hold_time(&proto).unwrap_or_else(|| w.fail(&format!("no hold timer in:\n{proto}")));
    assert_eq!(n["hold_time"].as_u64(), Some(bird_hold), "{proto}");
    assert_eq!(n["hold_time"], 21);
    assert_eq!(n["keepalive_time"], 7);
    let ss = w
        .src_ns
        .exec("ss", &["-tnH", "state", "established"])
        .unwrap_or_else(|e| w.fail(&e));
    // In BIRD's namespace: local is BIRD's end, peer is ours.
    let conn = ss
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| {
            f.len() >= 4
                && f[f.len() - 2].starts_with("192.0.2.2:")
                && f[f.len() - 1].starts_with("192.0.2.1:")
        })
        .unwrap_or_else(|| w.fail(&format!("no BGP connection in `ss -tn`:\n{ss}")));
    let port = |s: &str| s.rsplit(':').next().unwrap().parse::<u64>().unwrap();
    assert_eq!(
        n["remote_port"].as_u64(),
        Some(port(conn[conn.len() - 2])),
        "{ss}"
    );
    assert_eq!(
        n["local_port"].as_u64(),
        Some(port(conn[conn.len() - 1])),
        "{ss}"
    );
    assert_eq!(n["local_address"], "192.0.2.1");
    assert_eq!(n["flaps"], 0);
    assert_eq!(n["last_up_s"], 0);
    let caps: Vec<&str> = n["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        caps.contains(&"four-octet-as") && caps.contains(&"route-refresh"),
        "{caps:?}"
    );
    assert_eq!(n["families"], serde_json::json!(["ipv4-unicast"]));
    let text = w
        .hub
        .ns()
        .exec(
            &exe().to_string_lossy(),
            &["ctl", "--api", API, "neighbor", SRC],
        )
        .unwrap_or_else(|e| w.fail(&e));
    assert!(
        text.contains("Router ID:") && text.contains("192.0.2.22"),
        "{text}"
    );
    w.log(&format!("ctl neighbor:\n{text}"));

    // A forced flap: BIRD disables the protocol with a message.
    w.src
        .birdc(&["disable", "feed", "\"going down for maintenance\""])
        .unwrap_or_else(|e| w.fail(&e));
    let down = poll(Duration::from_secs(30), Duration::from_millis(200), || {
        let n = w.neighbor(SRC);
        (n["state"] != "Established" && n["flaps"] == 1).then_some(n)
    })
    .unwrap_or_else(|| w.fail("no flap seen after `birdc disable feed`"));
    let nr = &down["notification_received"];
    assert_eq!(nr["code"], 6, "{down:#}");
    assert_eq!(nr["subcode"], 2, "{down:#}");
    assert_eq!(nr["message"], "going down for maintenance", "{down:#}");
    assert!(down["last_up_s"].as_u64().is_some());
    // The session's facts stay readable while it is down.
    assert_eq!(down["router_id"], "192.0.2.22");
    w.src
        .birdc(&["enable", "feed"])
        .unwrap_or_else(|e| w.fail(&e));
    let up = poll(Duration::from_secs(60), Duration::from_millis(250), || {
        let n = w.neighbor(SRC);
        (n["state"] == "Established").then_some(n)
    })
    .unwrap_or_else(|| w.fail("the session did not come back after `birdc enable feed`"));
    assert_eq!(up["flaps"], 1);
    assert_eq!(up["last_up_s"], 0);
    assert_eq!(
        up["notification_received"]["message"],
        "going down for maintenance"
    );
    w.log("flap and NOTIFICATION received");
}
