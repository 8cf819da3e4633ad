//! Failure semantics at size, against real BIRD 2 clients of our route reflector:
//!
//! - A client restarts with `bird -R` at 100,000 routes: ours keeps them (stale) while it
//!   is down, the other client never loses one, and after the client's End-of-RIB the
//!   1,000 it no longer has are withdrawn and nothing else (stale kept, then replaced).
//! - The same client comes back without graceful restart: its 100,000 stale routes go
//!   the moment its session is up (RFC 4724 §4.2), not at an End-of-RIB.
//! - The same client comes back with `-R` but never sends End-of-RIB (its own recovery
//!   waits for a peer that never comes): the stale routes go when `stale_time` runs out.
//! - Max-prefix: a client crosses its limit: every one of its routes is gone from the two
//!   other clients, it is held down for the restart time, then comes back.
//! - A planned restart (SIGTERM, then `--graceful-restart`): BIRD 2 clients keep our
//!   routes throughout.
//! - Long-lived graceful restart with BIRD 2: LLGR-stale routes after the restart time.
//! - A de-configured FRR peer (N bit on both sides) gets a Hard Reset and drops our
//!   routes at once.
//!
//! The world: a hub namespace with a bridge (192.0.2.0/24; ours at .1, the clients .11,
//! .12, .13), each client in a namespace of its own, all made here and named
//! `bgpt-<pid>-<n>-<role>`. Hold time 3 s. `RR_ROUTES=N` changes the 100,000 (for a
//! quick run); the default is the size.
//!
//! Needs root and BIRD 2: `sudo tests/scripts/install-peers.sh`. `KEEP_WORK=1` keeps the
//! work dirs; a failed test keeps its and prints where, with our log and the clients'.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use interop_tests::{
    Bird, BirdCtl, BirdVersion, Daemon, Hub, Netns, StopOnDrop, WorkDir, ctl_json, poll_ok,
    require_root,
};
use serde_json::Value;

const AS: u32 = 65000;
const HOLD: u16 = 3;
const RR: &str = "192.0.2.1";
const API: &str = "192.0.2.1:9179";
const C1: &str = "192.0.2.11";
const C2: &str = "192.0.2.12";
const C3: &str = "192.0.2.13";
/// An address on the hub's subnet where nobody answers.
const NOBODY: &str = "192.0.2.99";
/// Sessions up.
const UP_WITHIN: Duration = Duration::from_secs(30);
/// A full table where it should be (100,000 routes on a loaded 2-core machine).
const TABLE_WITHIN: Duration = Duration::from_secs(120);
/// How long a restarting client stays down: beyond the hold time, far within the restart
/// time.
const DOWN_FOR: Duration = Duration::from_secs(5);

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

/// The table size: 100,000, or `RR_ROUTES`.
fn table_size() -> usize {
    std::env::var("RR_ROUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// The `i`-th prefix of a client's table: distinct /24s in 16.0.0.0/4.
fn prefix(i: usize) -> String {
    format!("{}.{}.{}.0/24", 16 + i / 65_536, (i / 256) % 256, i % 256)
}

/// A BIRD 2 client at `addr`: static routes `routes` (indexes into [`prefix`]) exported to
/// ours (protocol `upstream`), everything from ours imported. `gr`: graceful restart on.
/// `extra`: more configuration at the end.
fn client_body(
    addr: &str,
    routes: std::ops::Range<usize>,
    gr: bool,
    extra_global: &str,
    extra: &str,
) -> String {
    let mut s = String::with_capacity(40 * routes.len() + 1024);
    let _ = writeln!(s, "router id {addr};");
    s.push_str(extra_global);
    let _ = writeln!(s, "protocol device {{ scan time 10; }}");
    let _ = writeln!(s, "protocol static s1 {{");
    let _ = writeln!(s, "  ipv4;");
    for i in routes {
        let _ = writeln!(s, "  route {} blackhole;", prefix(i));
    }
    let _ = writeln!(s, "}}");
    let _ = write!(
        s,
        "protocol bgp upstream {{\n\
         \x20 local {addr} as {AS};\n\
         \x20 neighbor {RR} as {AS};\n\
         \x20 direct;\n\
         \x20 hold time {HOLD};\n\
         \x20 keepalive time 1;\n\
         \x20 connect retry time 1;\n\
         \x20 connect delay time 2;\n\
         \x20 error wait time 1,2;\n\
         \x20 error forget time 10;\n\
         \x20 strict bind on;\n\
         \x20 graceful restart {};\n\
         \x20 ipv4 {{ import all; export where source = RTS_STATIC; }};\n\
         }}\n",
        if gr { "on" } else { "off" }
    );
    s.push_str(extra);
    s
}

/// Our reflector with clients `clients`, each with `peer_extra` (TOML keys).
fn reflector_config(clients: &[(&str, &str)]) -> String {
    let mut s = format!(
        "[speaker]\nasn = {AS}\nrouter_id = \"{RR}\"\nlisten = [\"{RR}:179\"]\n\
         cluster_id = \"1.0.0.1\"\nhold_time = {HOLD}\nconnect_retry = 1\n\n\
         [api]\nlisten = \"{API}\"\n\n\
         [[peer_group]]\nname = \"clients\"\nasn = {AS}\nrr_client = true\n\
         families = [\"ipv4-unicast\"]\n"
    );
    for (addr, extra) in clients {
        let _ = write!(
            s,
            "\n[[peer]]\naddress = \"{addr}\"\ngroup = \"clients\"\nsource_address = \"{RR}\"\n{extra}\n"
        );
    }
    s
}

/// The routes in BIRD's tables (`show route count`).
fn route_count(b: &BirdCtl) -> Result<usize, String> {
    let out = b.birdc(&["show", "route", "count"])?;
    out.lines()
        .find(|l| l.contains("routes for"))
        .and_then(|l| l.split_whitespace().find_map(|w| w.parse::<usize>().ok()))
        .ok_or_else(|| format!("no count in `show route count`:\n{out}"))
}

/// One test's world; fields drop in order: ours, the clients, their namespaces, the hub,
/// the work dir (kept when the test failed).
struct World {
    ours: Option<Daemon>,
    clients: Vec<(String, Bird)>,
    ns: Vec<Netns>,
    hub: Hub,
    dir: WorkDir,
    name: &'static str,
    started: Instant,
}

impl World {
    fn new(name: &'static str) -> Self {
        require_root().unwrap_or_else(|e| panic!("{e}"));
        let dir = WorkDir::new(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let hub =
            Hub::create("hub", &[&format!("{RR}/24")]).unwrap_or_else(|e| panic!("{name}: {e}"));
        Self {
            ours: None,
            clients: Vec::new(),
            ns: Vec::new(),
            hub,
            dir,
            name,
            started: Instant::now(),
        }
    }

    fn log(&self, what: &str) {
        eprintln!(
            "[{} +{:6.1}s] {what}",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
    }

    /// A BIRD 2 client named `name` at `addr` running `body`; returns its index.
    fn add_client(&mut self, name: &str, addr: &str, body: &str) -> usize {
        let ns = Netns::create(name).unwrap_or_else(|e| self.fail(&e));
        self.hub
            .attach(&ns, &[&format!("{addr}/24")])
            .unwrap_or_else(|e| self.fail(&e));
        let sub = self.dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap_or_else(|e| self.fail(&e.to_string()));
        let b = Bird::start_config(BirdVersion::V2, &ns, &sub, name, "upstream", false, body)
            .unwrap_or_else(|e| self.fail(&format!("cannot start BIRD 2 {name}: {e}")));
        self.ns.push(ns);
        self.clients.push((format!("{name} ({addr})"), b));
        self.log(&format!("BIRD 2 {name} at {addr} started"));
        self.clients.len() - 1
    }

    fn start_ours(&mut self, config: &str) {
        let sub = self.dir.path().join("ours");
        std::fs::create_dir_all(&sub).unwrap_or_else(|e| self.fail(&e.to_string()));
        let d = Daemon::start(self.hub.ns(), &sub, exe(), config)
            .unwrap_or_else(|e| self.fail(&format!("cannot start our daemon: {e}")));
        self.ours = Some(d);
    }

    fn bird(&self, i: usize) -> &Bird {
        &self.clients[i].1
    }

    fn ours(&self) -> &Daemon {
        self.ours.as_ref().expect("ours")
    }

    /// Our `ctl peers` entry of `addr`.
    fn our_peer(&self, addr: &str) -> Result<Value, String> {
        let v = ctl_json(self.hub.ns(), exe(), API, &["peers"])?;
        v.as_array()
            .and_then(|ps| ps.iter().find(|p| p["address"] == addr).cloned())
            .ok_or_else(|| format!("no peer {addr} in {v}"))
    }

    fn fail(&self, msg: &str) -> ! {
        let mut s = format!("{}: {msg}\n", self.name);
        if let Some(d) = &self.ours {
            let _ = writeln!(s, "{}", d.transcript(80));
            let peers = ctl_json(self.hub.ns(), exe(), API, &["peers"])
                .map_or_else(|e| format!("(no answer: {e})"), |v| v.to_string());
            let _ = writeln!(s, "--- our ctl peers ---\n{peers}");
        }
        for (label, b) in &self.clients {
            let p = b
                .birdc(&["show", "protocols", "all", "upstream"])
                .unwrap_or_else(|e| format!("(no answer: {e})"));
            let n = route_count(&b.control()).map_or_else(|e| e, |n| n.to_string());
            let log = std::fs::read_to_string(b.log_path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let _ = writeln!(
                s,
                "--- {label}: {n} routes ---\n{p}\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let _ = write!(s, "work dir: {}", self.dir.path().display());
        panic!("{s}");
    }

    /// Polls `check` every 100 ms up to `timeout`; fails with its last error. Returns the
    /// time it took.
    fn wait(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Result<(), String>,
    ) -> Duration {
        let took = poll_ok(timeout, Duration::from_millis(100), &mut check)
            .unwrap_or_else(|last| self.fail(&format!("{what}: not within {timeout:?}: {last}")));
        self.log(&format!("{what}: after {:.1}s", took.as_secs_f64()));
        took
    }

    /// Waits until client `i` holds exactly `n` routes.
    fn expect_count(&self, i: usize, n: usize, timeout: Duration) -> Duration {
        let label = self.clients[i].0.clone();
        self.wait(&format!("{label} holds {n} routes"), timeout, || {
            let got = route_count(&self.bird(i).control())?;
            if got == n {
                Ok(())
            } else {
                Err(format!("{got}"))
            }
        })
    }

    /// Waits until ours has `addr` Established and out of graceful restart (or in it).
    fn expect_our_peer(&self, addr: &str, established: bool, pending: bool, timeout: Duration) {
        self.wait(
            &format!("ours: {addr} established={established} graceful_restart_pending={pending}"),
            timeout,
            || {
                let p = self.our_peer(addr)?;
                if (p["state"] == "Established") == established
                    && p["graceful_restart_pending"] == pending
                {
                    Ok(())
                } else {
                    Err(p.to_string())
                }
            },
        );
    }
}

/// What a watcher saw of one client's table, every 100 ms.
#[derive(Debug, Default)]
struct Watch {
    polls: u32,
    min: Option<usize>,
    errors: Vec<String>,
}

/// Polls `b`'s route count every 100 ms until `stop` (bounded by `limit`).
fn watch_count(b: &BirdCtl, stop: &AtomicBool, limit: Duration, out: &Mutex<Watch>) {
    let t = Instant::now();
    while !stop.load(Ordering::Relaxed) && t.elapsed() < limit {
        let r = route_count(b);
        {
            let mut w = out.lock().unwrap_or_else(|p| p.into_inner());
            w.polls += 1;
            match r {
                Ok(n) => w.min = Some(w.min.map_or(n, |m| m.min(n))),
                Err(e) => w.errors.push(e),
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// How client c1 comes back after its `kill -9`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Comeback {
    /// `bird -R`, graceful restart on, 1,000 routes fewer.
    Restarting,
    /// A plain start with graceful restart off, 1,000 other routes.
    WithoutGr,
    /// `bird -R` whose recovery waits for a peer that never comes: no End-of-RIB.
    NoEndOfRib,
}

/// c1 (graceful restart on) sends the full table, c2 receives it through ours; c1 is
/// killed with -9 and comes back as `how` says. Returns the world for more checks.
fn client_restart(name: &'static str, how: Comeback) {
    let n = table_size();
    let mut w = World::new(name);
    let stale_time = if how == Comeback::NoEndOfRib { 15 } else { 300 };
    let c1 = w.add_client("c1", C1, &client_body(C1, 0..n, true, "", ""));
    let c2 = w.add_client("c2", C2, &client_body(C2, 0..0, false, "", ""));
    let t0 = Instant::now();
    w.start_ours(&reflector_config(&[
        (C1, &format!("stale_time = {stale_time}")),
        (C2, ""),
    ]));
    w.expect_our_peer(C1, true, false, UP_WITHIN);
    w.expect_count(c2, n, TABLE_WITHIN);
    w.log(&format!(
        "{n} routes from c1 at c2 through ours {:.1}s after our start",
        t0.elapsed().as_secs_f64()
    ));
    let withdraws_before = w
        .bird(c2)
        .import_withdraws_received("upstream")
        .unwrap_or_else(|e| w.fail(&e));

    let stop = AtomicBool::new(false);
    let watch = Mutex::new(Watch::default());
    let (expect_min, expect_final) = thread::scope(|s| {
        let (ctl, stop_ref, watch_ref) = (w.bird(c2).control(), &stop, &watch);
        s.spawn(move || watch_count(&ctl, stop_ref, Duration::from_secs(300), watch_ref));
        let _stop = StopOnDrop(&stop);

        w.clients[c1]
            .1
            .kill()
            .unwrap_or_else(|e| w.fail(&format!("kill c1: {e}")));
        let killed = Instant::now();
        w.log("c1's BIRD killed (SIGKILL)");
        w.expect_our_peer(C1, false, true, Duration::from_secs(10));
        thread::sleep(DOWN_FOR.saturating_sub(killed.elapsed()));
        let held = route_count(&w.bird(c2).control()).unwrap_or_else(|e| w.fail(&e));
        if held != n {
            w.fail(&format!("c2 holds {held} of {n} routes while c1 is down"));
        }
        let mark = w.ours().log_mark();
        let (body, args, min, fin): (String, &[&str], usize, usize) = match how {
            Comeback::Restarting => (
                client_body(C1, 0..n - 1000, true, "", ""),
                &["-R"],
                n - 1000,
                n - 1000,
            ),
            Comeback::WithoutGr => (client_body(C1, n..n + 1000, false, "", ""), &[], 0, 1000),
            Comeback::NoEndOfRib => {
                // BIRD's own recovery waits for every graceful restart peer, here one
                // that never answers; until it ends, BIRD sends ours no End-of-RIB.
                let dead = format!(
                    "protocol bgp nobody {{\n\
                     \x20 local {C1} as {AS};\n\
                     \x20 neighbor {NOBODY} as {AS};\n\
                     \x20 graceful restart on;\n\
                     \x20 strict bind on;\n\
                     \x20 connect retry time 1;\n\
                     \x20 ipv4 {{ import all; export none; }};\n\
                     }}\n"
                );
                (
                    client_body(C1, 0..n / 2, true, "graceful restart wait 600;\n", &dead),
                    &["-R"],
                    0,
                    usize::MAX,
                )
            }
        };
        w.clients[c1]
            .1
            .replace_config(&body)
            .unwrap_or_else(|e| w.fail(&e));
        w.clients[c1]
            .1
            .start_again_with(args)
            .unwrap_or_else(|e| w.fail(&format!("cannot start c1 again: {e}")));
        let restarted = Instant::now();
        w.log(&format!("c1's BIRD started again with {args:?}"));
        match how {
            Comeback::Restarting => {
                w.expect_our_peer(C1, true, false, TABLE_WITHIN);
                w.log(&format!(
                    "ours: c1's recovery over {:.1}s after its restart",
                    restarted.elapsed().as_secs_f64()
                ));
                w.expect_count(c2, n - 1000, Duration::from_secs(30));
                let log = w.ours().log_since(mark);
                if !log
                    .iter()
                    .any(|l| l.contains("graceful restart over: End-of-RIB received"))
                {
                    w.fail("ours did not end c1's recovery at its End-of-RIB");
                }
            }
            Comeback::WithoutGr => {
                w.expect_our_peer(C1, true, false, UP_WITHIN);
                let log = w.ours().log_since(mark);
                let swept: Vec<&String> = log
                    .iter()
                    .filter(|l| l.contains("the new OPEN keeps no forwarding state"))
                    .collect();
                w.log(&format!("ours: {swept:?}"));
                if swept.len() != 1 || !swept[0].contains(&format!("stale={n}")) {
                    w.fail(&format!("ours did not drop c1's {n} stale routes at once"));
                }
                w.expect_count(c2, 1000, Duration::from_secs(60));
            }
            Comeback::NoEndOfRib => {
                w.expect_our_peer(C1, true, true, UP_WITHIN);
                let back = Instant::now();
                w.log("ours: c1 Established, End-of-RIB awaited");
                // Kept while the stale time runs ...
                thread::sleep(Duration::from_secs(8));
                let still = route_count(&w.bird(c2).control()).unwrap_or_else(|e| w.fail(&e));
                if still != n {
                    w.fail(&format!(
                        "c2 holds {still} of {n} routes before the stale time is over"
                    ));
                }
                // ... and gone when it is over: whatever c1 did not send again.
                w.expect_our_peer(C1, true, false, Duration::from_secs(60));
                let over = back.elapsed();
                w.log(&format!(
                    "ours: c1's stale routes went {:.1}s after it was back (stale_time 15 s)",
                    over.as_secs_f64()
                ));
                if over < Duration::from_secs(12) {
                    w.fail(&format!(
                        "stale routes gone after {over:?}, before the stale time"
                    ));
                }
                let log = w.ours().log_since(mark);
                if !log
                    .iter()
                    .any(|l| l.contains("End-of-RIB not received within the stale time"))
                {
                    w.fail("ours did not remove c1's stale routes at the stale time");
                }
                let sent = w.our_peer(C1).unwrap_or_else(|e| w.fail(&e))["prefixes_received"]
                    .as_u64()
                    .unwrap_or(0) as usize;
                w.log(&format!("c1 sent ours {sent} routes again meanwhile"));
                w.expect_count(c2, sent, Duration::from_secs(60));
                return (0, sent);
            }
        }
        thread::sleep(Duration::from_secs(1));
        (min, fin)
    });
    let watch = watch.into_inner().unwrap_or_else(|p| p.into_inner());
    w.log(&format!(
        "c2 polled {} times, fewest routes seen {:?}",
        watch.polls, watch.min
    ));
    if watch.polls < 20 || !watch.errors.is_empty() {
        w.fail(&format!("c2's watcher: {watch:?}"));
    }
    if watch.min.is_none_or(|m| m < expect_min) {
        w.fail(&format!(
            "c2 held {:?} routes at one point, fewer than {expect_min}",
            watch.min
        ));
    }
    let withdraws = w
        .bird(c2)
        .import_withdraws_received("upstream")
        .unwrap_or_else(|e| w.fail(&e))
        - withdraws_before;
    w.log(&format!("c2 received {withdraws} withdrawals from ours"));
    let want = match how {
        Comeback::Restarting => Some(1000),
        Comeback::WithoutGr => Some(n as u64),
        Comeback::NoEndOfRib => Some((n - expect_final) as u64),
    };
    if want.is_some_and(|x| x != withdraws) {
        w.fail(&format!(
            "c2 received {withdraws} withdrawals, want {want:?}"
        ));
    }
    w.log("done");
}

/// `bird -R` at 100,000 routes: ours keeps them stale while c1 is down (c2 never holds
/// fewer), then c1's End-of-RIB replaces them: the 1,000 c1 no longer has are withdrawn
/// from c2, exactly, and nothing else.
#[test]
fn client_restart_100k_stale_kept_then_replaced() {
    client_restart("fail-gr-100k", Comeback::Restarting);
}

/// c1 comes back without graceful restart: its 100,000 stale routes go at once (the new
/// OPEN has no graceful restart capability), and c2 ends with c1's 1,000 new routes.
#[test]
fn client_back_without_gr_stale_gone_at_once() {
    client_restart("fail-gr-nogr", Comeback::WithoutGr);
}

/// c1 comes back with `-R` and never sends End-of-RIB: its stale routes stay for
/// `stale_time` (15 s), then go; c2 ends with what c1 sent again meanwhile.
#[test]
fn client_without_end_of_rib_stale_gone_at_stale_time() {
    client_restart("fail-gr-noeor", Comeback::NoEndOfRib);
}

/// Max-prefix: c1 (limit 1,000, restart 15 s) crosses its limit: all its routes are gone
/// from c2 and c3, its session stays down for the restart time (its reconnects refused),
/// then it comes back with a table under the limit, which reaches c2 and c3 again.
#[test]
fn max_prefix_purges_holds_down_and_comes_back() {
    const UNDER: usize = 900;
    const OVER: usize = 1100;
    const RESTART: u64 = 15;
    let mut w = World::new("fail-maxpfx");
    let c1 = w.add_client("c1", C1, &client_body(C1, 0..UNDER, true, "", ""));
    let c2 = w.add_client("c2", C2, &client_body(C2, 0..0, true, "", ""));
    let c3 = w.add_client("c3", C3, &client_body(C3, 0..0, false, "", ""));
    w.start_ours(&reflector_config(&[
        (
            C1,
            &format!("max_prefix = {{ limit = 1000, restart = {RESTART} }}"),
        ),
        (C2, ""),
        (C3, ""),
    ]));
    w.expect_count(c2, UNDER, TABLE_WITHIN);
    w.expect_count(c3, UNDER, Duration::from_secs(10));

    // Over the limit.
    let mark = w.ours().log_mark();
    w.clients[c1]
        .1
        .replace_config(&client_body(C1, 0..OVER, true, "", ""))
        .unwrap_or_else(|e| w.fail(&e));
    w.bird(c1).configure().unwrap_or_else(|e| w.fail(&e));
    let crossed = Instant::now();
    w.expect_count(c2, 0, Duration::from_secs(15));
    w.expect_count(c3, 0, Duration::from_secs(15));
    let log = w.ours().log_since(mark);
    let exceeded: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("maximum prefix count exceeded"))
        .collect();
    w.log(&format!("ours: {exceeded:?}"));
    if exceeded.is_empty() {
        w.fail("ours did not log the crossing");
    }
    // Back under the limit while held down: it comes back at the restart time.
    w.clients[c1]
        .1
        .replace_config(&client_body(C1, 0..UNDER, true, "", ""))
        .unwrap_or_else(|e| w.fail(&e));
    w.bird(c1).configure().unwrap_or_else(|e| w.fail(&e));
    let mut down_seen = 0u32;
    let back = poll_ok(
        Duration::from_secs(RESTART + 45),
        Duration::from_millis(200),
        || {
            let s = w.bird(c1).protocol_state("upstream")?;
            if s == "Established" {
                Ok(())
            } else {
                down_seen += 1;
                Err(s)
            }
        },
    )
    .unwrap_or_else(|e| w.fail(&format!("c1 never came back: {e}")));
    let held = crossed.elapsed();
    w.log(&format!(
        "c1 held down {:.1}s (restart {RESTART} s; {down_seen} polls saw it down, back after {:.1}s of polling)",
        held.as_secs_f64(),
        back.as_secs_f64()
    ));
    if held < Duration::from_secs(RESTART - 2) {
        w.fail(&format!("c1 back after {held:?}, before the restart time"));
    }
    let refused = w
        .ours()
        .log_since(mark)
        .iter()
        .filter(|l| l.contains("held down after crossing its max-prefix limit"))
        .count();
    w.log(&format!(
        "ours refused {refused} connections of c1 meanwhile"
    ));
    w.expect_count(c2, UNDER, Duration::from_secs(30));
    w.expect_count(c3, UNDER, Duration::from_secs(10));
    w.log("done");
}

/// A planned restart of ours: SIGTERM, then a start with `--graceful-restart`. Both BIRD
/// 2 clients (graceful restart on) keep our routes throughout: c2 never holds fewer than
/// c1's table (polled every 100 ms), receives no withdrawal, and its session's graceful
/// restart ends with our End-of-RIB.
#[test]
fn planned_restart_clients_keep_our_routes() {
    let n = table_size().min(10_000);
    let mut w = World::new("fail-planned");
    w.add_client("c1", C1, &client_body(C1, 0..n, true, "", ""));
    let c2 = w.add_client("c2", C2, &client_body(C2, 0..0, true, "", ""));
    w.start_ours(&reflector_config(&[(C1, ""), (C2, "")]));
    w.expect_count(c2, n, TABLE_WITHIN);
    let stop = AtomicBool::new(false);
    let watch = Mutex::new(Watch::default());
    thread::scope(|s| {
        let (ctl, stop_ref, watch_ref) = (w.bird(c2).control(), &stop, &watch);
        s.spawn(move || watch_count(&ctl, stop_ref, Duration::from_secs(120), watch_ref));
        let _stop = StopOnDrop(&stop);
        let t = Instant::now();
        let st = w
            .ours
            .as_mut()
            .expect("ours")
            .terminate(Duration::from_secs(10));
        w.log(&format!(
            "ours stopped by SIGTERM in {:.1}s: {st:?}",
            t.elapsed().as_secs_f64()
        ));
        if st.is_err() {
            w.fail("ours did not exit on SIGTERM");
        }
        w.wait(
            "c2 in graceful restart for ours",
            Duration::from_secs(5),
            || {
                let p = w.bird(c2).show_protocol()?;
                if p.contains("Neighbor graceful restart active") {
                    Ok(())
                } else {
                    Err(p)
                }
            },
        );
        thread::sleep(Duration::from_secs(2));
        let mark = w.ours().log_mark();
        w.ours
            .as_mut()
            .expect("ours")
            .start_again(&["--graceful-restart"])
            .unwrap_or_else(|e| w.fail(&format!("cannot start ours again: {e}")));
        w.wait("c2 out of graceful restart", UP_WITHIN, || {
            let b = w.bird(c2);
            let p = b.show_protocol()?;
            if p.contains("Neighbor graceful restart active")
                || b.protocol_state("upstream")? != "Established"
            {
                Err(p)
            } else {
                Ok(())
            }
        });
        w.expect_count(c2, n, Duration::from_secs(10));
        let log = w.ours().log_since(mark);
        if !log
            .iter()
            .any(|l| l.contains("graceful restart: every peer's End-of-RIB received"))
        {
            w.fail("ours did not defer its routes until the clients' End-of-RIBs");
        }
        thread::sleep(Duration::from_secs(1));
    });
    let watch = watch.into_inner().unwrap_or_else(|p| p.into_inner());
    w.log(&format!(
        "c2 polled {} times, fewest routes seen {:?}",
        watch.polls, watch.min
    ));
    if watch.polls < 20 || watch.min != Some(n) {
        w.fail(&format!(
            "c2 lost routes across the planned restart: {watch:?}"
        ));
    }
    let withdraws = w
        .bird(c2)
        .import_withdraws_received("upstream")
        .unwrap_or_else(|e| w.fail(&e));
    if withdraws != 0 {
        w.fail(&format!("c2 received {withdraws} withdrawals"));
    }
    w.log("done");
}

/// Long-lived graceful restart (RFC 9494) with BIRD 2: c1 (`graceful restart time 3`,
/// `long lived graceful restart on`) is killed with -9. Ours keeps its routes stale for
/// its restart time (3 s), then as long-lived stale routes: c2 (LLGR aware) holds them
/// with the LLGR_STALE and NO_EXPORT communities and LOCAL_PREF 0, well past the restart
/// time. c1 back with `-R`: the routes are fresh again at c2, none withdrawn.
#[test]
fn long_lived_graceful_restart_with_bird2() {
    const N: usize = 1000;
    let mut w = World::new("fail-llgr");
    let llgr = "  graceful restart time 3;\n  long lived graceful restart on;\n  long lived stale time 600;\n";
    let c1_body = |gr_extra: &str| {
        client_body(C1, 0..N, true, "", "").replace(
            "  graceful restart on;\n",
            &format!("  graceful restart on;\n{gr_extra}"),
        )
    };
    let c1 = w.add_client("c1", C1, &c1_body(llgr));
    let c2 = w.add_client(
        "c2",
        C2,
        &client_body(C2, 0..0, true, "", "").replace(
            "  graceful restart on;\n",
            "  graceful restart on;\n  long lived graceful restart aware;\n",
        ),
    );
    w.start_ours(&reflector_config(&[
        (C1, "long_lived_stale_time = 300"),
        (C2, "long_lived_stale_time = 300"),
    ]));
    w.expect_count(c2, N, TABLE_WITHIN);
    let p0 = prefix(0);
    let route_text = |w: &World| {
        w.bird(c2)
            .birdc(&["show", "route", &p0, "all"])
            .unwrap_or_else(|e| w.fail(&e))
    };
    let fresh = route_text(&w);
    if fresh.contains("(65535,6)") {
        w.fail(&format!("LLGR_STALE before any restart:\n{fresh}"));
    }
    let stop = AtomicBool::new(false);
    let watch = Mutex::new(Watch::default());
    thread::scope(|s| {
        let (ctl, stop_ref, watch_ref) = (w.bird(c2).control(), &stop, &watch);
        s.spawn(move || watch_count(&ctl, stop_ref, Duration::from_secs(120), watch_ref));
        let _stop = StopOnDrop(&stop);
        let mark = w.ours().log_mark();
        w.clients[c1]
            .1
            .kill()
            .unwrap_or_else(|e| w.fail(&format!("kill c1: {e}")));
        let killed = Instant::now();
        w.log("c1's BIRD killed (SIGKILL)");
        w.wait(
            "c2 holds c1's routes as long-lived stale",
            Duration::from_secs(15),
            || {
                let t = route_text(&w);
                if t.contains("(65535,6)") && t.contains("(65535,65281)") {
                    Ok(())
                } else {
                    Err(t)
                }
            },
        );
        w.log(&format!(
            "long-lived stale at c2 {:.1}s after the kill:\n{}",
            killed.elapsed().as_secs_f64(),
            route_text(&w)
        ));
        let t = route_text(&w);
        if !t.contains("BGP.local_pref: 0") {
            w.fail(&format!(
                "LLGR-stale route without LOCAL_PREF 0 at c2:\n{t}"
            ));
        }
        let log = w.ours().log_since(mark);
        if !log.iter().any(|l| {
            l.contains("routes kept as long-lived stale") && l.contains(&format!("kept={N}"))
        }) {
            w.fail("ours did not keep c1's routes as long-lived stale");
        }
        // Well past the restart time, still there.
        thread::sleep(Duration::from_secs(10).saturating_sub(killed.elapsed()));
        let n = route_count(&w.bird(c2).control()).unwrap_or_else(|e| w.fail(&e));
        if n != N {
            w.fail(&format!("c2 holds {n} of {N} routes 10 s after the kill"));
        }
        w.clients[c1]
            .1
            .start_again_with(&["-R"])
            .unwrap_or_else(|e| w.fail(&format!("cannot start c1 again: {e}")));
        w.expect_our_peer(C1, true, false, TABLE_WITHIN);
        w.wait(
            "c2 holds c1's routes fresh again",
            Duration::from_secs(15),
            || {
                let t = route_text(&w);
                if t.contains("(65535,6)") || !t.contains(&p0) {
                    Err(t)
                } else {
                    Ok(())
                }
            },
        );
        w.expect_count(c2, N, Duration::from_secs(10));
    });
    let watch = watch.into_inner().unwrap_or_else(|p| p.into_inner());
    w.log(&format!(
        "c2 polled {} times, fewest routes seen {:?}",
        watch.polls, watch.min
    ));
    if watch.polls < 20 || watch.min != Some(N) {
        w.fail(&format!("c2 lost routes: {watch:?}"));
    }
    let withdraws = w
        .bird(c2)
        .import_withdraws_received("upstream")
        .unwrap_or_else(|e| w.fail(&e));
    if withdraws != 0 {
        w.fail(&format!("c2 received {withdraws} withdrawals"));
    }
    w.log("done");
}

/// A peer removed from the configuration gets a Hard Reset (RFC 8538) where both sides
/// sent the N bit: FRR (`bgp graceful-restart`, N bit on) drops every route of ours at
/// once instead of keeping them stale for our restart time, and records the Hard Reset.
#[test]
fn deconfigured_frr_gets_hard_reset_and_drops_our_routes() {
    const N: usize = 100;
    let mut w = World::new("fail-hardreset");
    w.add_client("c1", C1, &client_body(C1, 0..N, true, "", ""));
    let ns = Netns::create("f2").unwrap_or_else(|e| w.fail(&e));
    w.hub
        .attach(&ns, &[&format!("{C2}/24")])
        .unwrap_or_else(|e| w.fail(&e));
    let sub = w.dir.path().join("f2");
    std::fs::create_dir_all(&sub).unwrap_or_else(|e| w.fail(&e.to_string()));
    let body = format!(
        "router bgp {AS}\n\
         \x20bgp router-id {C2}\n\
         \x20no bgp ebgp-requires-policy\n\
         \x20no bgp default ipv4-unicast\n\
         \x20bgp graceful-restart\n\
         \x20timers bgp 1 {HOLD}\n\
         \x20neighbor {RR} remote-as {AS}\n\
         \x20neighbor {RR} update-source {C2}\n\
         \x20neighbor {RR} timers connect 1\n\
         \x20address-family ipv4 unicast\n\
         \x20 neighbor {RR} activate\n\
         \x20exit-address-family\n\
         !\n"
    );
    let frr = interop_tests::Frr::start_config(
        &ns,
        &sub,
        "f2",
        RR.parse().expect("addr"),
        C2.parse().expect("addr"),
        &body,
    )
    .unwrap_or_else(|e| w.fail(&format!("cannot start FRR: {e}")));
    w.ns.push(ns);
    w.start_ours(&reflector_config(&[(C1, ""), (C2, "")]));
    let frr_count =
        |f: &interop_tests::Frr| -> Result<usize, String> { Ok(f.table_prefixes(false)?.len()) };
    w.wait("FRR holds c1's routes", TABLE_WITHIN, || {
        let n = frr_count(&frr)?;
        if n == N { Ok(()) } else { Err(format!("{n}")) }
    });
    // Both sides sent the N bit.
    let caps = frr.neighbor_json().unwrap_or_else(|e| w.fail(&e));
    w.log(&format!(
        "FRR's graceful restart with ours: {}",
        caps["gracefulRestartInfo"]
    ));
    // Removed from ours: a Hard Reset, and FRR drops the routes at once.
    let cfg = reflector_config(&[(C1, "")]);
    w.ours
        .as_mut()
        .expect("ours")
        .reload(&cfg)
        .unwrap_or_else(|e| w.fail(&e));
    let took = w.wait(
        "FRR dropped every route of ours",
        Duration::from_secs(10),
        || {
            let n = frr_count(&frr)?;
            if n == 0 {
                Ok(())
            } else {
                Err(format!("{n} left"))
            }
        },
    );
    let n = frr.neighbor_json().unwrap_or_else(|e| w.fail(&e));
    let reason = format!("{} / {}", n["lastNotificationReason"], n["lastResetDueTo"]);
    w.log(&format!("FRR: {reason} ({took:?})"));
    if n["lastNotificationHardReset"] != true
        || !reason.contains("Peer De-configured")
        || caps["gracefulRestartInfo"]["nBit"] != true
    {
        w.fail(&format!("FRR did not record a Hard Reset: {n}"));
    }
    drop(frr);
    w.log("done");
}
