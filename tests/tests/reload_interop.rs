//! Reloads that change only policy keep the session with a real BIRD 2 (`speaker --config
//! FILE`, SIGHUP): a new export policy changes BIRD's table while BIRD's `Since` of the
//! session stays the same; a new import policy goes out as a ROUTE-REFRESH, and BIRD's
//! routes come back through it, again without a reset. A change of the hold time, which
//! goes into the OPEN, still resets the session, and the log names the key.
//!
//! Topology: two namespaces joined by a veth, ours with 192.0.2.1/24, BIRD's with
//! 192.0.2.2/24; iBGP in AS 65000, hold time 3 s. We originate 203.0.113.0/24 and
//! 203.0.113.128/25 (our export policy `no-128` drops the second), BIRD 198.51.100.0/24
//! (our import policy `no-bird` drops it). Needs root and BIRD 2
//! (`sudo tests/scripts/install-peers.sh`).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use interop_tests::{
    Bird, BirdVersion, Daemon, Link, Netns, Peer, WorkDir, ctl_json, ctl_route, poll, require_root,
    same_since,
};
use serde_json::Value;

const AS: u32 = 65000;
const OURS: &str = "192.0.2.1";
const BIRD: &str = "192.0.2.2";
const API: &str = "192.0.2.1:9179";
const KEPT: &str = "203.0.113.0/24";
const FILTERED: &str = "203.0.113.128/25";
const BIRD_ROUTE: &str = "198.51.100.0/24";
const UP_WITHIN: Duration = Duration::from_secs(20);
/// A reload's effect reaches the other side.
const APPLIED_WITHIN: Duration = Duration::from_secs(10);

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

/// Our configuration with these policies towards BIRD and its hold time.
fn daemon_config(export: &str, import: &str, hold: u16) -> String {
    let mut s = format!(
        "[speaker]\nasn = {AS}\nrouter_id = \"{OURS}\"\nlisten = [\"{OURS}:179\"]\n\
         connect_retry = 1\n\n\
         [api]\nlisten = \"{API}\"\n\n\
         [[policy]]\nname = \"no-128\"\ndefault_action = \"accept\"\n\
         [[policy.rule]]\nprefixes = [\"{FILTERED}\"]\naction = \"reject\"\n\n\
         [[policy]]\nname = \"no-bird\"\ndefault_action = \"accept\"\n\
         [[policy.rule]]\nprefixes = [\"{BIRD_ROUTE}\"]\naction = \"reject\"\n\n\
         [[route]]\nprefix = \"{KEPT}\"\n[[route]]\nprefix = \"{FILTERED}\"\n"
    );
    let _ = write!(
        s,
        "\n[[peer]]\naddress = \"{BIRD}\"\nasn = {AS}\nsource_address = \"{OURS}\"\n\
         hold_time = {hold}\nexport = \"{export}\"\nimport = \"{import}\"\n"
    );
    s
}

struct World {
    daemon: Option<Daemon>,
    bird: Option<Bird>,
    _link: Link,
    ours_ns: Netns,
    bird_ns: Netns,
    _dir: WorkDir,
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
        let body = format!(
            "router id {BIRD};\n\
             protocol device {{ scan time 10; }}\n\
             protocol static s4 {{ ipv4; route {BIRD_ROUTE} blackhole; }}\n\
             protocol bgp ours {{\n\
             \x20 debug all;\n\
             \x20 local {BIRD} as {AS};\n\
             \x20 neighbor {OURS} as {AS};\n\
             \x20 direct;\n\
             \x20 hold time 3;\n\
             \x20 keepalive time 1;\n\
             \x20 connect retry time 1;\n\
             \x20 connect delay time 1;\n\
             \x20 error wait time 1,2;\n\
             \x20 passive on;\n\
             \x20 ipv4 {{ import all; export all; }};\n\
             }}\n"
        );
        let bird = Bird::start_config(
            BirdVersion::V2,
            &bird_ns,
            dir.path(),
            "bird",
            "ours",
            false,
            &body,
        )
        .unwrap_or_else(|e| panic!("{name}: cannot start BIRD 2: {e}"));
        let daemon = Daemon::start(&ours_ns, dir.path(), exe(), &daemon_config("all", "all", 3))
            .unwrap_or_else(|e| panic!("{name}: cannot start the daemon: {e}"));
        Self {
            daemon: Some(daemon),
            bird: Some(bird),
            _link: link,
            ours_ns,
            bird_ns,
            _dir: dir,
            started: Instant::now(),
        }
    }

    fn log(&self, what: &str) {
        eprintln!("[+{:5.1}s] {what}", self.started.elapsed().as_secs_f64());
    }

    fn bird(&self) -> &Bird {
        self.bird.as_ref().expect("BIRD")
    }

    fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("daemon")
    }

    fn fail(&self, msg: &str) -> ! {
        let mut s = format!("{msg}\n");
        if let Some(d) = &self.daemon {
            let _ = writeln!(s, "{}", d.transcript(80));
        }
        if let Some(b) = &self.bird {
            let _ = writeln!(s, "{}", b.details().unwrap_or_else(|e| e));
            let _ = writeln!(s, "{}", b.log_tail(60));
        }
        let _ = &self.bird_ns;
        panic!("{s}");
    }

    fn bird_has(&self, prefix: &str) -> bool {
        !self.bird().routes(&[prefix]).unwrap_or_default().is_empty()
    }

    /// The status of BIRD's route at ours: `best`, `ineligible`, ...
    fn bird_route_status(&self) -> Option<String> {
        let r = ctl_route(&self.ours_ns, exe(), API, BIRD_ROUTE).ok()??;
        r["paths"][0]["status"].as_str().map(str::to_owned)
    }

    fn our_peer(&self) -> Value {
        let v = ctl_json(&self.ours_ns, exe(), API, &["peers"]).unwrap_or_default();
        v.as_array()
            .and_then(|a| a.iter().find(|p| p["address"] == BIRD).cloned())
            .unwrap_or_default()
    }

    fn wait(&self, what: &str, mut f: impl FnMut() -> bool) {
        if poll(APPLIED_WITHIN, Duration::from_millis(200), || {
            f().then_some(())
        })
        .is_none()
        {
            self.fail(&format!("not within {APPLIED_WITHIN:?}: {what}"));
        }
        self.log(what);
    }
}

#[test]
fn reload_policy_keeps_bird_session() {
    let mut w = World::new("reload-policy");
    let up = poll(UP_WITHIN, Duration::from_millis(250), || {
        (w.bird().state().ok()? == "Established"
            && w.bird_has(KEPT)
            && w.bird_has(FILTERED)
            && w.bird_route_status()? == "best")
            .then_some(())
    });
    if up.is_none() {
        w.fail("not Established with routes exchanged");
    }
    let since = w.bird().since().unwrap_or_else(|e| w.fail(&e));
    w.log(&format!("Established, BIRD's Since {since}"));
    // BIRD's Since has millisecond resolution; a reset would also take a second or more.
    std::thread::sleep(Duration::from_millis(1500));

    // Export: BIRD loses the filtered route, keeps the other, same session.
    let mark = w.daemon().log_mark();
    w.daemon()
        .reload(&daemon_config("no-128", "all", 3))
        .unwrap_or_else(|e| panic!("reload: {e}"));
    w.wait("BIRD lost the filtered route", || !w.bird_has(FILTERED));
    assert!(w.bird_has(KEPT), "the other route stays");
    let now = w.bird().since().unwrap();
    assert!(
        same_since(&now, &since),
        "BIRD's session was reset: {since} -> {now}"
    );
    assert_eq!(w.bird().state().unwrap(), "Established");
    let log = w.daemon().log_since(mark).join("\n");
    assert!(log.contains("session kept"), "{log}");
    assert!(!log.contains("needs a new session"), "{log}");

    // Import: a ROUTE-REFRESH brings BIRD's route through the new policy.
    w.daemon()
        .reload(&daemon_config("no-128", "no-bird", 3))
        .unwrap_or_else(|e| panic!("reload: {e}"));
    // Rejected, and without soft_reconfiguration_inbound not kept at all.
    w.wait("BIRD's route rejected after the ROUTE-REFRESH", || {
        matches!(ctl_route(&w.ours_ns, exe(), API, BIRD_ROUTE), Ok(None))
    });
    w.daemon()
        .reload(&daemon_config("all", "all", 3))
        .unwrap_or_else(|e| panic!("reload: {e}"));
    w.wait("both back", || {
        w.bird_has(FILTERED) && w.bird_route_status().as_deref() == Some("best")
    });
    let now = w.bird().since().unwrap();
    assert!(
        same_since(&now, &since),
        "BIRD's session was reset: {since} -> {now}"
    );
    assert_eq!(w.our_peer()["last_notification_sent"], Value::Null);

    // The hold time goes into the OPEN: that reload resets, and says why.
    let mark = w.daemon().log_mark();
    w.daemon()
        .reload(&daemon_config("all", "all", 6))
        .unwrap_or_else(|e| panic!("reload: {e}"));
    w.wait("the log names the key that forced a reset", || {
        w.daemon
            .as_ref()
            .expect("daemon")
            .log_since(mark)
            .iter()
            .any(|l| l.contains("needs a new session") && l.contains("hold_time"))
    });
    w.wait("BIRD's session is a new one", || {
        w.bird().since().is_ok_and(|s| !same_since(&s, &since))
    });
}
