//! BMP export (RFC 7854) and MRT dumps (RFC 6396) at size, read by decoders that are not
//! ours: the project's test collector (`bmp-collector`, a decoder of its own), tshark's
//! BMP dissector where tshark is installed, and Debian's `bgpdump` for MRT.
//!
//! Topology: a hub namespace with our daemon (`192.0.2.1`) and the collector on the
//! hub's loopback; a BIRD 2 client (`192.0.2.11`) in a namespace of its own announcing
//! 100,000 /24s (`RR_ROUTES` to change it) with AS path `64512` and community
//! `64512:7`. Counts are the collector's: the prefixes it holds per peer after applying
//! every Route Monitoring message in order, pre- and post-policy apart.
//!
//! A third scenario has IPv6 and ADD-PATH (RFC 7911): BIRD sends IPv4 without path
//! identifiers and two paths of every IPv6 prefix; the collector decodes each family as
//! the Peer Up's OPENs negotiated it.
//!
//! Needs root, BIRD 2 and bgpdump (`tests/scripts/install-peers.sh`).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use interop_tests::{Bird, BirdVersion, Daemon, Hub, Netns, Proc, WorkDir, poll_ok, require_root};
use serde_json::Value;

const AS: u32 = 65000;
const RR: &str = "192.0.2.1";
const API: &str = "192.0.2.1:9179";
const C1: &str = "192.0.2.11";
const COLLECTOR: &str = "127.0.0.1:11019";
/// A full table at the collector (100,000 routes through BIRD, us and the collector on a
/// loaded 2-core machine).
const TABLE_WITHIN: Duration = Duration::from_secs(120);
/// Routes BIRD withdraws in the withdrawal phase.
const WITHDRAWN: usize = 10_000;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

fn collector_exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bmp-collector"))
}

fn table_size() -> usize {
    std::env::var("RR_ROUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// The `i`-th prefix: distinct /24s in 16.0.0.0/4.
fn prefix(i: usize) -> String {
    format!("{}.{}.{}.0/24", 16 + i / 65_536, (i / 256) % 256, i % 256)
}

/// BIRD 2 announcing prefixes `routes` to ours over iBGP.
fn client_body(routes: std::ops::Range<usize>) -> String {
    let mut s = client_head(routes.len());
    static_protocol(&mut s, "s1", "ipv4", routes.map(prefix));
    upstream(
        &mut s,
        "ipv4 { import all; export filter { if source != RTS_STATIC then reject; \
         bgp_path.prepend(64512); bgp_community.add((64512, 7)); accept; }; };",
    );
    s
}

/// A BIRD 2 configuration of C1 for about `routes` routes, up to its first protocol.
fn client_head(routes: usize) -> String {
    let mut s = String::with_capacity(40 * routes + 1024);
    let _ = writeln!(s, "router id {C1};");
    let _ = writeln!(s, "protocol device {{ scan time 10; }}");
    s
}

/// `protocol static NAME` of `family` (`ipv4`, `ipv6`) with a blackhole route to each
/// of `prefixes`.
fn static_protocol(
    s: &mut String,
    name: &str,
    family: &str,
    prefixes: impl Iterator<Item = String>,
) {
    let _ = writeln!(s, "protocol static {name} {{\n  {family};");
    for p in prefixes {
        let _ = writeln!(s, "  route {p} blackhole;");
    }
    let _ = writeln!(s, "}}");
}

/// C1's iBGP session to ours, `protocol bgp upstream`, BIRD's timers shortened, with
/// the channel blocks `channels`.
fn upstream(s: &mut String, channels: &str) {
    let _ = write!(
        s,
        "protocol bgp upstream {{\n\
         \x20 local {C1} as {AS};\n\
         \x20 neighbor {RR} as {AS};\n\
         \x20 direct;\n\
         \x20 hold time 30;\n\
         \x20 connect retry time 1;\n\
         \x20 connect delay time 1;\n\
         \x20 error wait time 1,2;\n"
    );
    for line in channels.lines() {
        let _ = writeln!(s, "\x20 {}", line.trim());
    }
    let _ = writeln!(s, "}}");
}

fn our_config() -> String {
    format!(
        "[speaker]\nasn = {AS}\nrouter_id = \"{RR}\"\nlisten = [\"{RR}:179\"]\n\
         hold_time = 30\nconnect_retry = 1\n\n\
         [api]\nlisten = \"{API}\"\n\n\
         [[peer]]\naddress = \"{C1}\"\nasn = {AS}\nrr_client = true\n\
         source_address = \"{RR}\"\nfamilies = [\"ipv4-unicast\"]\n\n\
         [[bmp]]\naddress = \"127.0.0.1\"\nport = 11019\nroute_monitoring = \"both\"\n\
         statistics_interval = 1\nretry = 2\n"
    )
}

/// What the collector saw on one connection.
#[derive(Debug, Default)]
struct Conn {
    initiation: bool,
    peer_up: Vec<Value>,
    pre: HashSet<String>,
    post: HashSet<String>,
    pre_withdrawn: usize,
    post_withdrawn: usize,
    pre_eor: bool,
    post_eor: bool,
    peer_down: Vec<Value>,
    stats: Option<Value>,
    termination: Option<u64>,
    closed: bool,
    /// Message types in order of first appearance, with counts.
    types: BTreeMap<String, usize>,
}

/// The collector's output so far, by connection.
fn collected(path: &Path) -> Result<BTreeMap<u64, Conn>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut conns: BTreeMap<u64, Conn> = BTreeMap::new();
    for line in text.lines() {
        // A line being written is incomplete: stop there.
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            break;
        };
        let c = conns.entry(v["conn"].as_u64().unwrap_or(0)).or_default();
        let ty = v["type"].as_str().unwrap_or("").to_owned();
        *c.types.entry(ty.clone()).or_default() += 1;
        match ty.as_str() {
            "initiation" => c.initiation = true,
            "peer_up" => c.peer_up.push(v),
            "peer_down" => c.peer_down.push(v),
            "stats" => c.stats = Some(v),
            "termination" => c.termination = v["reason"].as_u64(),
            "closed" => c.closed = true,
            "route_monitoring" => {
                let post = v["post"] == true;
                let (set, wd, eor) = if post {
                    (&mut c.post, &mut c.post_withdrawn, &mut c.post_eor)
                } else {
                    (&mut c.pre, &mut c.pre_withdrawn, &mut c.pre_eor)
                };
                for p in v["withdraw"].as_array().into_iter().flatten() {
                    if set.remove(p.as_str().unwrap_or("")) {
                        *wd += 1;
                    }
                }
                for p in v["announce"].as_array().into_iter().flatten() {
                    set.insert(p.as_str().unwrap_or("").to_owned());
                }
                *eor |= v["eor"] == true;
            }
            _ => {}
        }
    }
    Ok(conns)
}

struct World {
    collector: Option<Proc>,
    ours: Option<Daemon>,
    bird: Option<Bird>,
    _ns: Vec<Netns>,
    hub: Hub,
    dir: WorkDir,
    started: Instant,
    collector_runs: u32,
}

impl World {
    /// A work dir `work` and a hub `hub` (ours on it at RR, its loopback up); nothing
    /// started yet.
    fn new(work: &str, hub: &str) -> Self {
        let dir = WorkDir::new(work).unwrap_or_else(|e| panic!("{e}"));
        let hub = Hub::create(hub, &[&format!("{RR}/24")]).unwrap_or_else(|e| panic!("{e}"));
        let w = Self {
            collector: None,
            ours: None,
            bird: None,
            _ns: Vec::new(),
            hub,
            dir,
            started: Instant::now(),
            collector_runs: 0,
        };
        w.hub
            .ns()
            .ip(&["link", "set", "lo", "up"])
            .unwrap_or_else(|e| w.fail(&e));
        w
    }

    fn log(&self, what: &str) {
        eprintln!(
            "[bmp +{:6.1}s] {what}",
            self.started.elapsed().as_secs_f64()
        );
    }

    fn fail(&self, msg: &str) -> ! {
        let mut s = format!("bmp_export: {msg}\n");
        if let Some(d) = &self.ours {
            let _ = writeln!(s, "{}", d.transcript(60));
        }
        if let Some(c) = &self.collector {
            let _ = writeln!(
                s,
                "--- collector stderr ---\n{}",
                interop_tests::tail(c.stderr_path(), 20)
            );
        }
        let _ = write!(s, "work dir: {}", self.dir.path().display());
        panic!("{s}");
    }

    /// BIRD 2 as client c1 ({C1}) in a namespace of its own named `ns`, on the hub, with
    /// `body` as its configuration.
    fn start_client(&mut self, ns: &str, body: &str) {
        let ns = Netns::create(ns).unwrap_or_else(|e| self.fail(&e));
        self.hub
            .attach(&ns, &[&format!("{C1}/24")])
            .unwrap_or_else(|e| self.fail(&e));
        let sub = self.dir.path().join("c1");
        std::fs::create_dir_all(&sub).unwrap_or_else(|e| self.fail(&e.to_string()));
        let b = Bird::start_config(BirdVersion::V2, &ns, &sub, "c1", "upstream", false, body)
            .unwrap_or_else(|e| self.fail(&format!("cannot start BIRD: {e}")));
        self._ns.push(ns);
        self.bird = Some(b);
    }

    fn start_collector(&mut self) {
        self.start_collector_with(&[]);
    }

    fn start_collector_with(&mut self, extra: &[&str]) {
        self.collector_runs += 1;
        let label = format!("collector-{}", self.collector_runs);
        let raw = self.dir.path().join(&label);
        std::fs::create_dir_all(&raw).unwrap_or_else(|e| self.fail(&e.to_string()));
        let args = vec![
            "--listen".to_owned(),
            COLLECTOR.to_owned(),
            "--raw-dir".to_owned(),
            raw.display().to_string(),
        ];
        let args: Vec<String> = args
            .into_iter()
            .chain(extra.iter().map(|a| (*a).to_owned()))
            .collect();
        let p = self
            .hub
            .ns()
            .spawn(self.dir.path(), &label, collector_exe(), &args, &[], false)
            .unwrap_or_else(|e| self.fail(&format!("cannot start the collector: {e}")));
        self.collector = Some(p);
        self.log(&format!(
            "collector {} listening on {COLLECTOR}",
            self.collector_runs
        ));
    }

    fn output(&self) -> PathBuf {
        self.collector
            .as_ref()
            .expect("collector")
            .stdout_path()
            .to_owned()
    }

    /// Waits until `check` passes on the collector's connection `conn`.
    fn wait(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Conn) -> Result<(), String>,
    ) {
        let out = self.output();
        let r = poll_ok(timeout, Duration::from_millis(500), || {
            let conns = collected(&out)?;
            let last = conns.values().next_back().ok_or("no connection yet")?;
            check(last)
        });
        match r {
            Ok(t) => self.log(&format!("{what}: after {:.1}s", t.as_secs_f64())),
            Err(last) => self.fail(&format!("{what}: not within {timeout:?}: {last}")),
        }
    }
}

fn count_is(c: &Conn, pre: usize, post: usize) -> Result<(), String> {
    if c.pre.len() == pre && c.post.len() == post {
        Ok(())
    } else {
        Err(format!(
            "pre-policy {} of {pre}, post-policy {} of {post}",
            c.pre.len(),
            c.post.len()
        ))
    }
}

fn full_table(c: &Conn, n: usize, eor: bool) -> Result<(), String> {
    if !c.initiation {
        return Err("no Initiation".into());
    }
    let up = c
        .peer_up
        .iter()
        .find(|u| u["peer"] == C1)
        .ok_or("no Peer Up")?;
    if up["sent_open"] != true || up["received_open"] != true || up["local"] != RR {
        return Err(format!("Peer Up without the OPENs or our address: {up}"));
    }
    if up["local_port"] != 179 && up["remote_port"] != 179 {
        return Err(format!("Peer Up ports: {up}"));
    }
    count_is(c, n, n)?;
    if eor && !(c.pre_eor && c.post_eor) {
        return Err(format!("End-of-RIB pre {} post {}", c.pre_eor, c.post_eor));
    }
    Ok(())
}

/// bgpdump's one-line records (`-m`) of an MRT file.
fn bgpdump(file: &Path) -> Result<Vec<String>, String> {
    let out = std::process::Command::new("bgpdump")
        .args(["-m", "-q"])
        .arg(file)
        .output()
        .map_err(|e| format!("cannot run bgpdump: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "bgpdump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// A process's resident set (`VmRSS`), in kB.
fn rss_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn have(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The BMP message types tshark's dissector finds in a saved stream: it is wrapped
/// into a pcap of one TCP flow first (tshark reads captures, not streams).
fn tshark_types(stream: &Path, dir: &Path) -> Result<BTreeMap<String, usize>, String> {
    let pcap = dir.join("bmp.pcap");
    let bytes = std::fs::read(stream).map_err(|e| e.to_string())?;
    std::fs::write(&pcap, interop_tests::pcap::tcp_flow(&bytes, 11019))
        .map_err(|e| e.to_string())?;
    let out = std::process::Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&pcap)
        .args([
            "-o",
            "tcp.desegment_tcp_streams:TRUE",
            "-d",
            "tcp.port==11019,bmp",
            "-T",
            "fields",
            "-e",
            "bmp.type",
        ])
        .output()
        .map_err(|e| format!("cannot run tshark: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "tshark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut types = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        for t in line.split(',').filter(|t| !t.is_empty()) {
            *types.entry(t.to_owned()).or_default() += 1;
        }
    }
    Ok(types)
}

/// BIRD sends the table to ours with a collector attached (live Route Monitoring); the
/// collector is killed and comes back (resynchronisation from the RIB, End-of-RIB); an
/// MRT dump of the table goes through bgpdump; BIRD withdraws 10,000 routes; BIRD is
/// disabled (Peer Down with its Cease); ours stops (Termination).
#[test]
fn bmp_export() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let n = table_size();
    let mut w = World::new("bmp", "bmphub");
    w.start_collector();

    let sub = w.dir.path().join("ours");
    std::fs::create_dir_all(&sub).unwrap_or_else(|e| w.fail(&e.to_string()));
    let d = Daemon::start(w.hub.ns(), &sub, exe(), &our_config())
        .unwrap_or_else(|e| w.fail(&format!("cannot start our daemon: {e}")));
    w.ours = Some(d);
    w.wait("collector: Initiation", Duration::from_secs(20), |c| {
        if c.initiation {
            Ok(())
        } else {
            Err("none".into())
        }
    });

    w.start_client("bmpc1", &client_body(0..n));
    w.log(&format!("BIRD 2 c1 started with {n} routes"));

    // Live: Peer Up, then every UPDATE as BIRD sent it and the routes as stored.
    w.wait(
        &format!("live: Peer Up and {n} prefixes pre- and post-policy"),
        TABLE_WITHIN,
        |c| full_table(c, n, false),
    );
    w.wait(
        "statistics: Adj-RIB-In routes",
        Duration::from_secs(20),
        |c| {
            let s = c.stats.as_ref().ok_or("no Statistics Report")?;
            if s["peer"] == C1 && s["stats"]["7"] == n && s["stats"]["0"] == 0 {
                Ok(())
            } else {
                Err(s.to_string())
            }
        },
    );

    // The collector dies and comes back: everything again, from the RIB.
    if let Some(mut c) = w.collector.take() {
        c.stop(Duration::from_secs(2));
    }
    w.log("collector killed");
    std::thread::sleep(Duration::from_secs(1));
    w.start_collector();
    w.wait(
        &format!("resync: Peer Up, {n} prefixes pre- and post-policy, End-of-RIB"),
        TABLE_WITHIN,
        |c| full_table(c, n, true),
    );
    let stream = w.dir.path().join("collector-2").join("conn-1.bmp");

    // MRT: ctl dump-mrt, read by bgpdump; our RSS sampled during the dump.
    let mrt = w.dir.path().join("rib.mrt");
    let pid = w.ours.as_ref().expect("ours").pid();
    let rss_before = rss_kb(pid).unwrap_or(0);
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let on = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            // At most 10 minutes of samples, every 10 ms.
            for _ in 0..60_000 {
                if !on.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                peak = peak.max(rss_kb(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        })
    };
    let t = Instant::now();
    let out = w
        .hub
        .ns()
        .exec(
            exe().to_str().expect("utf-8 path"),
            &[
                "ctl",
                "--api",
                API,
                "dump-mrt",
                mrt.to_str().expect("utf-8 path"),
            ],
        )
        .unwrap_or_else(|e| w.fail(&format!("ctl dump-mrt: {e}")));
    let took = t.elapsed().as_secs_f64();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0);
    let size = std::fs::metadata(&mrt).map_or(0, |m| m.len());
    w.log(&format!(
        "ctl dump-mrt: {} in {took:.2}s, {size} bytes; our RSS {} MiB before, {} MiB at most \
         during the dump",
        out.trim(),
        rss_before / 1024,
        peak / 1024
    ));
    // Streamed a page at a time: the dump must not hold a second copy of the RIB.
    if rss_before > 0 && peak > rss_before + rss_before / 2 {
        w.fail(&format!(
            "RSS grew from {rss_before} kB to {peak} kB during the MRT dump"
        ));
    }
    let lines = bgpdump(&mrt).unwrap_or_else(|e| w.fail(&e));
    let mut seen = HashSet::new();
    for l in &lines {
        let f: Vec<&str> = l.split('|').collect();
        if f.len() < 12 || f[0] != "TABLE_DUMP2" || f[2] != "B" {
            w.fail(&format!("bgpdump line: {l}"));
        }
        if f[3] != C1
            || f[4] != AS.to_string()
            || f[6] != "64512"
            || f[7] != "IGP"
            || f[8] != C1
            || f[11] != "64512:7"
        {
            w.fail(&format!(
                "bgpdump: wrong peer, AS path, next hop or community: {l}"
            ));
        }
        seen.insert(f[5].to_owned());
    }
    if lines.len() != n || seen.len() != n || (0..n).any(|i| !seen.contains(&prefix(i))) {
        w.fail(&format!(
            "bgpdump: {} entries, {} prefixes, want {n} of ours",
            lines.len(),
            seen.len()
        ));
    }
    w.log(&format!(
        "bgpdump: {} entries, peer {C1}, AS path 64512, next hop {C1}",
        lines.len()
    ));

    // BIRD withdraws some.
    let keep = n - WITHDRAWN.min(n / 2);
    {
        let b = w.bird.as_mut().expect("bird");
        b.replace_config(&client_body(0..keep))
            .unwrap_or_else(|e| panic!("{e}"));
        b.configure().unwrap_or_else(|e| panic!("{e}"));
    }
    w.wait(
        &format!("withdrawals: {keep} prefixes left"),
        TABLE_WITHIN,
        |c| {
            count_is(c, keep, keep)?;
            if c.pre_withdrawn == n - keep && c.post_withdrawn == n - keep {
                Ok(())
            } else {
                Err(format!(
                    "withdrawn pre {} post {}",
                    c.pre_withdrawn, c.post_withdrawn
                ))
            }
        },
    );

    // BIRD disabled: it sends a Cease (Administrative Shutdown).
    w.bird
        .as_ref()
        .expect("bird")
        .birdc(&["disable", "upstream"])
        .unwrap_or_else(|e| w.fail(&e));
    w.wait(
        "Peer Down: the peer's NOTIFICATION (reason 3, Cease)",
        Duration::from_secs(30),
        |c| {
            let d = c
                .peer_down
                .iter()
                .find(|d| d["peer"] == C1)
                .ok_or("no Peer Down")?;
            if d["reason"] == 3 && d["notification"][0] == 6 {
                Ok(())
            } else {
                Err(d.to_string())
            }
        },
    );

    // Ours stops: Termination.
    if let Some(mut d) = w.ours.take() {
        let _ = d.terminate(Duration::from_secs(10));
    }
    w.wait(
        "Termination (administratively closed)",
        Duration::from_secs(15),
        |c| {
            if c.termination == Some(0) {
                Ok(())
            } else {
                Err(format!("{:?}", c.termination))
            }
        },
    );

    if have("tshark") {
        let types = tshark_types(&stream, w.dir.path()).unwrap_or_else(|e| w.fail(&e));
        let conns = collected(&w.output()).unwrap_or_else(|e| w.fail(&e));
        let ours = &conns.values().next().expect("a connection").types;
        // tshark numbers the types: 0 RM, 1 stats, 2 down, 3 up, 4 initiation, 5 termination.
        let want: BTreeMap<String, usize> = [
            ("0", "route_monitoring"),
            ("1", "stats"),
            ("2", "peer_down"),
            ("3", "peer_up"),
            ("4", "initiation"),
            ("5", "termination"),
        ]
        .into_iter()
        .filter_map(|(t, name)| ours.get(name).map(|n| (t.to_owned(), *n)))
        .collect();
        if types != want {
            w.fail(&format!(
                "tshark's BMP types {types:?}, the collector's {want:?}"
            ));
        }
        w.log(&format!("tshark: the same BMP messages by type: {types:?}"));
    } else {
        w.log("tshark not installed: its check skipped");
    }
}

/// A collector that stops reading: ours drops it once `queue_limit` bytes of live events
/// wait for it (Termination, out of resources), and the BGP session goes on; when it
/// connects again it gets the whole table from the RIB, exactly.
#[test]
fn bmp_slow_collector() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let n = table_size();
    let mut w = World::new("bmpslow", "bmpshub");
    // The kernel may grow our socket's send buffer to megabytes (tcp_wmem's maximum),
    // enough to hold the whole table's BMP stream: then nothing waits in our queue and the
    // collector is, rightly, never dropped. A 64 KiB cap in the hub's namespace makes our
    // queue the place where the stream waits.
    w.hub
        .ns()
        .exec("sysctl", &["-qw", "net.ipv4.tcp_wmem=4096 16384 65536"])
        .unwrap_or_else(|e| w.fail(&format!("cannot cap tcp_wmem: {e}")));
    // Initiation, the Peer Up, and then nothing more is read of the first connection.
    w.start_collector_with(&["--stall-after", "2", "--rcvbuf", "4096"]);
    let config = our_config().replace("statistics_interval = 1\n", "queue_limit = 65536\n");
    let sub = w.dir.path().join("ours");
    std::fs::create_dir_all(&sub).unwrap_or_else(|e| w.fail(&e.to_string()));
    let d = Daemon::start(w.hub.ns(), &sub, exe(), &config)
        .unwrap_or_else(|e| w.fail(&format!("cannot start our daemon: {e}")));
    w.ours = Some(d);
    w.start_client("bmpsc1", &client_body(0..n));
    w.log(&format!("BIRD 2 c1 started with {n} routes"));

    let out = w.output();
    let r = poll_ok(TABLE_WITHIN, Duration::from_millis(500), || {
        let conns = collected(&out)?;
        if conns.len() < 2 {
            let first = conns.values().next().map(|c| &c.types);
            return Err(format!(
                "{} connection(s); the first one's messages: {first:?}",
                conns.len()
            ));
        }
        let c = conns.values().next_back().ok_or("none")?;
        full_table(c, n, true)?;
        if !c.peer_down.is_empty() {
            return Err(format!(
                "Peer Down on the new connection: {:?}",
                c.peer_down
            ));
        }
        Ok(())
    });
    match r {
        Ok(t) => w.log(&format!(
            "dropped and resynchronised: {n} prefixes on a new connection after {:.1}s",
            t.as_secs_f64()
        )),
        Err(e) => {
            // What ours holds from C1, to tell a stalled session from a quiet monitor.
            let peers = interop_tests::ctl_json(w.hub.ns(), exe(), API, &["peers"])
                .map_or_else(|e| e, |v| v.to_string());
            w.fail(&format!(
                "no resynchronised connection within {TABLE_WITHIN:?}: {e}\nours: {peers}"
            ))
        }
    }
    let log = w.ours.as_ref().expect("ours").log();
    if !log.contains("fell behind") {
        w.fail("our log does not say the collector fell behind");
    }
    let state = w
        .bird
        .as_ref()
        .expect("bird")
        .protocol_state("upstream")
        .unwrap_or_else(|e| w.fail(&e));
    if !state.contains("Established") {
        w.fail(&format!("BIRD's session to ours is not up: {state}"));
    }
}

/// IPv4 prefixes of the IPv6 and ADD-PATH scenario.
const AP_V4: usize = 1_000;
/// IPv6 prefixes of that scenario, each with two paths.
const AP_V6: usize = 5_000;

/// The `i`-th IPv6 prefix of the scenario: distinct /48s in 2001:db8::/32 (2001:db8:1::
/// on; `i` below 65,535).
fn prefix6(i: usize) -> String {
    format!("2001:db8:{:x}::/48", i + 1)
}

/// BIRD 2 on an IPv4 session with two channels: IPv4 (`AP_V4` prefixes, no ADD-PATH)
/// and IPv6 with `add paths tx`, where every one of `AP_V6` prefixes has two routes (two
/// static protocols; AS paths 64512 and 64513) and both are sent.
fn add_path_client() -> String {
    let mut s = client_head(AP_V4 + 2 * AP_V6);
    static_protocol(&mut s, "s4", "ipv4", (0..AP_V4).map(prefix));
    for name in ["s6a", "s6b"] {
        static_protocol(&mut s, name, "ipv6", (0..AP_V6).map(prefix6));
    }
    upstream(
        &mut s,
        "ipv4 { import none; export filter { if source != RTS_STATIC then reject; \
         bgp_path.prepend(64512); accept; }; };\n\
         ipv6 { import none; add paths tx; next hop address 2001:db8::11; \
         export filter { if source != RTS_STATIC then reject; \
         if proto = \"s6b\" then bgp_path.prepend(64513); else bgp_path.prepend(64512); \
         accept; }; };",
    );
    s
}

/// Ours for that scenario: both families from C1, ADD-PATH receive.
fn add_path_config() -> String {
    our_config().replace(
        "families = [\"ipv4-unicast\"]\n",
        "families = [\"ipv4-unicast\", \"ipv6-unicast\"]\n\
         add_path = { receive = true, send = false }\n",
    )
}

/// The scenario's expected prefixes at the collector: IPv4 without path identifiers (not
/// negotiated for IPv4), IPv6 `prefix#id` with two distinct identifiers each.
fn add_path_table(c: &Conn) -> Result<(), String> {
    for (view, set) in [("pre", &c.pre), ("post", &c.post)] {
        let v4 = set.iter().filter(|p| !p.contains(':')).count();
        let mut ids: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
        for p in set.iter().filter(|p| p.contains(':')) {
            let (prefix, id) = p
                .split_once('#')
                .ok_or_else(|| format!("{view}: IPv6 {p} without a path identifier"))?;
            ids.entry(prefix).or_default().insert(id);
        }
        if let Some(p) = set.iter().find(|p| !p.contains(':') && p.contains('#')) {
            return Err(format!("{view}: IPv4 {p} with a path identifier"));
        }
        let two = ids.values().filter(|s| s.len() == 2).count();
        if v4 != AP_V4 || ids.len() != AP_V6 || two != AP_V6 {
            return Err(format!(
                "{view}: {v4} IPv4 of {AP_V4}, {} IPv6 prefixes of {AP_V6}, {two} with two paths",
                ids.len()
            ));
        }
        if (0..AP_V6).any(|i| !ids.contains_key(prefix6(i).as_str())) {
            return Err(format!("{view}: an IPv6 prefix is not ours"));
        }
    }
    Ok(())
}

/// BMP of IPv6 prefixes and of several paths of one prefix (ADD-PATH, RFC 7911): BIRD
/// sends IPv4 without ADD-PATH and IPv6 with two paths per prefix; the collector, which
/// decodes each family as the Peer Up's OPENs negotiated it, sees every path pre- and
/// post-policy, live and after a resynchronisation; tshark's BGP decode finds the same
/// path identifiers; bgpdump reads the MRT dump's ADD-PATH records.
#[test]
fn bmp_ipv6_and_add_path() {
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let mut w = World::new("bmpap", "bmpaphub");
    w.start_collector();
    let sub = w.dir.path().join("ours");
    std::fs::create_dir_all(&sub).unwrap_or_else(|e| w.fail(&e.to_string()));
    let d = Daemon::start(w.hub.ns(), &sub, exe(), &add_path_config())
        .unwrap_or_else(|e| w.fail(&format!("cannot start our daemon: {e}")));
    w.ours = Some(d);
    w.start_client("bmpapc1", &add_path_client());
    let within = Duration::from_secs(60);
    w.wait(
        &format!("live: {AP_V4} IPv4 and {AP_V6} IPv6 prefixes with two paths each"),
        within,
        add_path_table,
    );
    // The collector comes back: the same from the RIB, with the End-of-RIB of each family.
    if let Some(mut c) = w.collector.take() {
        c.stop(Duration::from_secs(2));
    }
    std::thread::sleep(Duration::from_secs(1));
    w.start_collector();
    w.wait("resync: the same, End-of-RIB", within, |c| {
        add_path_table(c)?;
        if c.pre_eor && c.post_eor {
            Ok(())
        } else {
            Err("no End-of-RIB".into())
        }
    });

    // tshark's own BGP decode of the resynchronised stream: the same IPv6 paths.
    if have("tshark") {
        let stream = w.dir.path().join("collector-2").join("conn-1.bmp");
        let pcap = w.dir.path().join("ap.pcap");
        let bytes = std::fs::read(&stream).unwrap_or_else(|e| w.fail(&e.to_string()));
        std::fs::write(&pcap, interop_tests::pcap::tcp_flow(&bytes, 11019))
            .unwrap_or_else(|e| w.fail(&e.to_string()));
        let out = std::process::Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&pcap)
            .args([
                "-o",
                "tcp.desegment_tcp_streams:TRUE",
                "-d",
                "tcp.port==11019,bmp",
                "-T",
                "fields",
                "-e",
                "bgp.mp_reach_nlri_ipv6_prefix",
                "-e",
                "bgp.nlri_path_id",
            ])
            .output()
            .unwrap_or_else(|e| w.fail(&format!("tshark: {e}")));
        let text = String::from_utf8_lossy(&out.stdout);
        // Each path once pre- and once post-policy: 4 x AP_V6 decoded, 2 x AP_V6 distinct.
        let mut decoded = 0;
        let mut paths: BTreeMap<String, HashSet<String>> = BTreeMap::new();
        for line in text.lines() {
            let (v6, ids) = line.split_once('\t').unwrap_or((line, ""));
            let v6: Vec<&str> = v6.split(',').filter(|x| !x.is_empty()).collect();
            let ids: Vec<&str> = ids.split(',').filter(|x| !x.is_empty()).collect();
            if v6.is_empty() {
                continue;
            }
            if v6.len() != ids.len() {
                w.fail(&format!(
                    "tshark: IPv6 prefixes without path identifiers: {line}"
                ));
            }
            for (p, id) in v6.iter().zip(&ids) {
                decoded += 1;
                paths
                    .entry((*p).to_owned())
                    .or_default()
                    .insert((*id).to_owned());
            }
        }
        let distinct: usize = paths.values().map(HashSet::len).sum();
        w.log(&format!(
            "tshark: {decoded} IPv6 paths decoded with identifiers, {} prefixes, {distinct} \
             distinct paths",
            paths.len()
        ));
        if decoded != 4 * AP_V6 || paths.len() != AP_V6 || distinct != 2 * AP_V6 {
            w.fail(&format!(
                "tshark: {decoded} IPv6 paths of {}, {} prefixes of {AP_V6}, {distinct} \
                 distinct of {}; stderr: {}",
                4 * AP_V6,
                paths.len(),
                2 * AP_V6,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    } else {
        w.log("tshark not installed: its check skipped");
    }

    // MRT: one RIB entry per path, the IPv6 ones in ADD-PATH records.
    let mrt = w.dir.path().join("rib.mrt");
    w.hub
        .ns()
        .exec(
            exe().to_str().expect("utf-8 path"),
            &[
                "ctl",
                "--api",
                API,
                "dump-mrt",
                mrt.to_str().expect("utf-8 path"),
            ],
        )
        .unwrap_or_else(|e| w.fail(&format!("ctl dump-mrt: {e}")));
    let lines = bgpdump(&mrt).unwrap_or_else(|e| w.fail(&e));
    let v6: Vec<&String> = lines.iter().filter(|l| l.contains("|2001:db8:")).collect();
    let v4 = lines.len() - v6.len();
    let s6b = v6.iter().filter(|l| l.contains("|64513|")).count();
    w.log(&format!(
        "bgpdump: {v4} IPv4 entries, {} IPv6 ({s6b} through 64513)",
        v6.len()
    ));
    if v4 != AP_V4 || v6.len() != 2 * AP_V6 || s6b != AP_V6 {
        w.fail(&format!(
            "bgpdump: {v4} IPv4 entries of {AP_V4}, {} IPv6 of {}, {s6b} via 64513; first: {:?}",
            v6.len(),
            2 * AP_V6,
            lines.iter().take(3).collect::<Vec<_>>()
        ));
    }
}
