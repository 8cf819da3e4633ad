//! TCP-MD5 signatures (RFC 2385) between our daemon (`speaker --config FILE`) and BIRD 2,
//! both with `password`: outbound (ours active, BIRD passive), on our listener (ours
//! passive, BIRD connects), on our listener for a dynamic neighbour range (the prefix form
//! of `TCP_MD5SIG_EXT`), and a wrong password, which keeps the session down because the
//! kernel drops every badly signed segment (until a reload fixes the password). Also GTSM
//! (RFC 5082) on both sides; that our kernel drops packets from too far is shown on
//! loopback by `rr-daemon/src/sockopt.rs`.
//!
//! Topology of every test: two namespaces joined by a veth, ours with 192.0.2.1/24, BIRD's
//! with 192.0.2.2/24; iBGP in AS 65000, hold time 3 s. We originate 203.0.113.0/24, BIRD
//! 198.51.100.0/24. Needs root and BIRD 2 (`sudo tests/scripts/install-peers.sh`).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use interop_tests::{
    Bird, BirdVersion, Daemon, Link, Netns, Peer, WorkDir, ctl_json, ctl_route, poll, require_root,
};
use serde_json::Value;

const AS: u32 = 65000;
const OURS: &str = "192.0.2.1";
const BIRD: &str = "192.0.2.2";
const API: &str = "192.0.2.1:9179";
const PASSWORD: &str = "s3cret";
const OUR_ROUTE: &str = "203.0.113.0/24";
const BIRD_ROUTE: &str = "198.51.100.0/24";
/// A session comes up, counted from the daemon's start.
const UP_WITHIN: Duration = Duration::from_secs(20);
/// How long a session with a wrong password is watched staying down.
const DOWN_FOR: Duration = Duration::from_secs(10);

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

/// How our side is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ours {
    /// `[[peer]]` for BIRD.
    Peer { passive: bool },
    /// `[[dynamic_neighbors]]` 192.0.2.0/24, which BIRD connects from.
    Range,
}

/// One test's world. Fields drop in order: the daemon, BIRD, the namespaces, the work dir
/// (kept when the test failed).
struct World {
    daemon: Option<Daemon>,
    bird: Option<Bird>,
    _link: Link,
    ours_ns: Netns,
    bird_ns: Netns,
    dir: WorkDir,
    name: &'static str,
    started: Instant,
}

impl World {
    fn new(name: &'static str) -> Self {
        require_root().unwrap_or_else(|e| panic!("{e}"));
        let dir = WorkDir::new(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ours_ns = Netns::create("rr").unwrap_or_else(|e| panic!("{name}: {e}"));
        let bird_ns = Netns::create("bird").unwrap_or_else(|e| panic!("{name}: {e}"));
        let link = Link::new(
            &ours_ns,
            &[&format!("{OURS}/24")],
            &bird_ns,
            &[&format!("{BIRD}/24")],
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        Self {
            daemon: None,
            bird: None,
            _link: link,
            ours_ns,
            bird_ns,
            dir,
            name,
            started: Instant::now(),
        }
    }

    fn log(&self, what: &str) {
        eprintln!(
            "[{} +{:5.1}s] {what}",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
    }

    /// BIRD 2 with `password "s3cret"`, passive or not.
    fn start_bird(&mut self, passive: bool) {
        let passive = if passive { "  passive on;\n" } else { "" };
        let body = format!(
            "router id {BIRD};\n\
             protocol device {{ scan time 10; }}\n\
             protocol static s4 {{ ipv4; route {BIRD_ROUTE} blackhole; }}\n\
             protocol bgp ours {{\n\
             \x20 debug all;\n\
             \x20 local {BIRD} as {AS};\n\
             \x20 neighbor {OURS} as {AS};\n\
             \x20 password \"{PASSWORD}\";\n\
             \x20 direct;\n\
             \x20 hold time 3;\n\
             \x20 keepalive time 1;\n\
             \x20 connect retry time 1;\n\
             \x20 connect delay time 1;\n\
             \x20 error wait time 1,2;\n\
             \x20 strict bind on;\n\
             {passive}\
             \x20 ipv4 {{ import all; export all; }};\n\
             }}\n"
        );
        let b = Bird::start_config(
            BirdVersion::V2,
            &self.bird_ns,
            self.dir.path(),
            "bird",
            "ours",
            false,
            &body,
        )
        .unwrap_or_else(|e| self.fail(&format!("cannot start BIRD 2: {e}")));
        self.log("BIRD 2 started");
        self.bird = Some(b);
    }

    fn start_daemon(&mut self, ours: Ours, password: &str) {
        let config = daemon_config(ours, password);
        let d = Daemon::start(&self.ours_ns, self.dir.path(), exe(), &config)
            .unwrap_or_else(|e| self.fail(&format!("cannot start the daemon: {e}")));
        self.log(&format!("daemon started (pid {})", d.pid()));
        self.daemon = Some(d);
    }

    fn bird(&self) -> &Bird {
        self.bird.as_ref().expect("BIRD started")
    }

    /// Our `ctl peers` entry of BIRD; `None` while there is none (a dynamic neighbour
    /// before it connected).
    fn our_peer(&self) -> Result<Option<Value>, String> {
        let v = ctl_json(&self.ours_ns, exe(), API, &["peers"])?;
        let peers = v.as_array().ok_or_else(|| format!("not a list: {v}"))?;
        Ok(peers.iter().find(|p| p["address"] == BIRD).cloned())
    }

    fn our_state(&self) -> Result<String, String> {
        Ok(self
            .our_peer()?
            .map(|p| p["state"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_else(|| "(no peer)".into()))
    }

    /// Both sides Established, and each has the other's route.
    fn wait_up_and_routes(&self) -> Value {
        let up = poll(UP_WITHIN, Duration::from_millis(250), || {
            (self.our_state().ok()? == "Established" && self.bird().state().ok()? == "Established")
                .then_some(())
        });
        if up.is_none() {
            self.fail(&format!(
                "not Established within {UP_WITHIN:?}: ours {:?}, BIRD {:?}",
                self.our_state(),
                self.bird().state()
            ));
        }
        self.log("Established on both sides");
        let routes = poll(Duration::from_secs(10), Duration::from_millis(250), || {
            let theirs = ctl_route(&self.ours_ns, exe(), API, BIRD_ROUTE).ok()??;
            let ours = self.bird().routes(&[OUR_ROUTE]).ok()?;
            (!ours.is_empty()).then_some(theirs)
        });
        let theirs = routes.unwrap_or_else(|| {
            self.fail(&format!(
                "routes not exchanged within 10 s: ours has {BIRD_ROUTE}: {:?}; BIRD has \
                 {OUR_ROUTE}: {:?}",
                ctl_route(&self.ours_ns, exe(), API, BIRD_ROUTE),
                self.bird().routes(&[OUR_ROUTE])
            ))
        });
        self.log("routes exchanged");
        let peer = self.our_peer().ok().flatten().unwrap_or_default();
        assert_eq!(peer["last_error"], Value::Null, "{peer}");
        theirs
    }

    /// Panics with everything needed to tell what went wrong.
    fn fail(&self, msg: &str) -> ! {
        let mut s = format!("{}: {msg}\n", self.name);
        if let Some(d) = &self.daemon {
            let _ = writeln!(s, "{}", d.transcript(80));
        }
        if let Some(b) = &self.bird {
            let _ = writeln!(s, "{}", b.details().unwrap_or_else(|e| e));
            let _ = writeln!(s, "{}", b.log_tail(60));
        }
        panic!("{s}");
    }
}

fn daemon_config(ours: Ours, password: &str) -> String {
    let mut s = format!(
        "[speaker]\nasn = {AS}\nrouter_id = \"{OURS}\"\nlisten = [\"{OURS}:179\"]\n\
         hold_time = 3\nconnect_retry = 1\n\n\
         [api]\nlisten = \"{API}\"\n\n\
         [[route]]\nprefix = \"{OUR_ROUTE}\"\n"
    );
    match ours {
        Ours::Peer { passive } => {
            let _ = write!(
                s,
                "\n[[peer]]\naddress = \"{BIRD}\"\nasn = {AS}\nsource_address = \"{OURS}\"\n\
                 password = \"{password}\"\npassive = {passive}\n"
            );
        }
        Ours::Range => {
            let _ = write!(
                s,
                "\n[[peer_group]]\nname = \"nodes\"\nasn = {AS}\npassword = \"{password}\"\n\
                 \n[[dynamic_neighbors]]\nprefix = \"192.0.2.0/24\"\ngroup = \"nodes\"\n"
            );
        }
    }
    s
}

/// Ours connects (the key on the connecting socket); BIRD only listens.
#[test]
fn md5_ours_active_bird_passive() {
    let mut w = World::new("md5-active");
    w.start_bird(true);
    w.start_daemon(Ours::Peer { passive: false }, PASSWORD);
    w.wait_up_and_routes();
    let log = w.bird().log_text();
    assert!(
        !log.contains("Received: Bad"),
        "BIRD saw a bad message:\n{log}"
    );
}

/// BIRD connects to our listener (the key on the listening socket); ours never connects.
#[test]
fn md5_ours_passive_bird_active() {
    let mut w = World::new("md5-passive");
    w.start_daemon(Ours::Peer { passive: true }, PASSWORD);
    w.start_bird(false);
    w.wait_up_and_routes();
}

/// A dynamic neighbour range with a password: the listener holds a prefix key, BIRD
/// connects from inside the range.
#[test]
fn md5_dynamic_range() {
    let mut w = World::new("md5-range");
    w.start_daemon(Ours::Range, PASSWORD);
    w.start_bird(false);
    w.wait_up_and_routes();
    let peer = w.our_peer().ok().flatten().unwrap_or_default();
    assert_eq!(peer["dynamic"], true, "{peer}");
}

/// A wrong password on our side: the kernels drop every segment, both directions, so
/// the session stays down; a reload with the right password brings it up (the listener's
/// key is replaced along with the peer).
#[test]
fn md5_wrong_password_never_established() {
    let mut w = World::new("md5-wrong");
    w.start_bird(false);
    w.start_daemon(Ours::Peer { passive: false }, "not-the-s3cret");
    let watch = Instant::now();
    let mut seen = Vec::new();
    while watch.elapsed() < DOWN_FOR {
        let ours = w.our_state().unwrap_or_else(|e| w.fail(&e));
        let bird = w.bird().state().unwrap_or_else(|e| w.fail(&e));
        if ours == "Established" || bird == "Established" {
            w.fail(&format!(
                "Established with a wrong password: ours {ours}, BIRD {bird}"
            ));
        }
        if seen.last() != Some(&ours) {
            seen.push(ours);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    w.log(&format!(
        "never Established in {DOWN_FOR:?}; our states: {seen:?}"
    ));
    // Our connection attempts go unanswered (the kernel drops the badly signed SYN), and
    // so do BIRD's: no session ever gets as far as OpenSent.
    assert!(
        seen.iter()
            .all(|s| ["Idle", "Connect", "Active"].contains(&s.as_str())),
        "our states: {seen:?}"
    );
    assert!(
        w.bird().routes(&[OUR_ROUTE]).unwrap_or_default().is_empty(),
        "BIRD has our route"
    );

    w.log("reloading with the right password");
    let config = daemon_config(Ours::Peer { passive: false }, PASSWORD);
    w.daemon
        .as_mut()
        .expect("daemon started")
        .reload(&config)
        .unwrap_or_else(|e| panic!("reload: {e}"));
    w.wait_up_and_routes();
}

// ---------------------------------------------------------------------------------------
// GTSM (RFC 5082): TTL 255 out, at least 255 in (one hop), on a direct link.

impl World {
    /// BIRD 2 without a password, connecting out, with or without `ttl security on`.
    fn start_bird_gtsm(&mut self, gtsm: bool) {
        let ttl = if gtsm { "  ttl security on;\n" } else { "" };
        let body = format!(
            "router id {BIRD};\n\
             protocol device {{ scan time 10; }}\n\
             protocol static s4 {{ ipv4; route {BIRD_ROUTE} blackhole; }}\n\
             protocol bgp ours {{\n\
             \x20 debug all;\n\
             \x20 local {BIRD} as {AS};\n\
             \x20 neighbor {OURS} as {AS};\n\
             \x20 direct;\n\
             {ttl}\
             \x20 hold time 3;\n\
             \x20 keepalive time 1;\n\
             \x20 connect retry time 1;\n\
             \x20 connect delay time 1;\n\
             \x20 error wait time 1,2;\n\
             \x20 strict bind on;\n\
             \x20 ipv4 {{ import all; export all; }};\n\
             }}\n"
        );
        let b = Bird::start_config(
            BirdVersion::V2,
            &self.bird_ns,
            self.dir.path(),
            "bird",
            "ours",
            false,
            &body,
        )
        .unwrap_or_else(|e| self.fail(&format!("cannot start BIRD 2: {e}")));
        self.log(&format!("BIRD 2 started (ttl security {gtsm})"));
        self.bird = Some(b);
    }

    /// Our daemon with `ttl` as the peer's TTL setting (`ttl_security = true` or
    /// `multihop = 1`).
    fn start_daemon_ttl(&mut self, ttl: &str) {
        let config = format!(
            "[speaker]\nasn = {AS}\nrouter_id = \"{OURS}\"\nlisten = [\"{OURS}:179\"]\n\
             hold_time = 3\nconnect_retry = 1\n\n\
             [api]\nlisten = \"{API}\"\n\n\
             [[route]]\nprefix = \"{OUR_ROUTE}\"\n\n\
             [[peer]]\naddress = \"{BIRD}\"\nasn = {AS}\nsource_address = \"{OURS}\"\n{ttl}\n"
        );
        let d = Daemon::start(&self.ours_ns, self.dir.path(), exe(), &config)
            .unwrap_or_else(|e| self.fail(&format!("cannot start the daemon: {e}")));
        self.daemon = Some(d);
    }
}

/// GTSM on both sides: TTL 255 each way, accepted; routes flow.
#[test]
fn gtsm_both_sides() {
    let mut w = World::new("gtsm-both");
    w.start_bird_gtsm(true);
    w.start_daemon_ttl("ttl_security = true");
    w.wait_up_and_routes();
}
