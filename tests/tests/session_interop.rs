//! One BGP session between our speaker and a real peer (BIRD 2.0, BIRD 1.6 — what Calico
//! ships —, FRR 8.4), each test in its own pair of network namespaces joined by a veth:
//! ours 192.0.2.1 (AS 65000), theirs 192.0.2.2 (AS 65001 for eBGP), hold time 3 s.
//!
//! Needs root and the peers: `sudo tests/scripts/install-peers.sh` (BIRD 1.6 is found
//! through `BIRD16_DIR`, default `target/peers/bird16`). A missing peer fails the test.
//! `KEEP_WORK=1` keeps every test's work dir (configs, logs, our stdout/stderr); a failed
//! test always keeps it and prints where.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use interop_tests::{
    Bird, BirdVersion, Frr, Link, Netns, Peer, PeerConfig, Speaker, WorkDir, require_root,
};

const OURS: &str = "192.0.2.1";
const THEIRS: &str = "192.0.2.2";
const OUR_AS: u32 = 65000;
const HOLD: u16 = 3;
/// How long a session must stay up untouched: more than three hold periods.
const STABLE: Duration = Duration::from_secs(10);
const UP_WITHIN: Duration = Duration::from_secs(30);
/// The communication our speaker puts in its Cease on SIGTERM.
const STOP_MESSAGE: &str = "rr-daemon session stopped";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bird2,
    Bird16,
    Frr,
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Both sides connect.
    Both,
    /// We only listen, the peer connects.
    OursPassive,
    /// The peer only listens, we connect.
    PeerPassive,
}

/// One test's world. Fields drop in order: processes first, then namespaces, then the
/// work dir (kept when the test failed).
struct Ctx {
    speaker: Option<Speaker>,
    peer: Box<dyn Peer>,
    ours: Netns,
    _theirs: Netns,
    dir: WorkDir,
    name: &'static str,
    peer_as: u32,
    mode: Mode,
    started: Instant,
}

impl Ctx {
    fn new(name: &'static str, kind: Kind, peer_as: u32, mode: Mode) -> Self {
        require_root().unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        let dir = WorkDir::new(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ours = Netns::create("ours").unwrap_or_else(|e| panic!("{name}: {e}"));
        let theirs = Netns::create("peer").unwrap_or_else(|e| panic!("{name}: {e}"));
        Link::new(
            &ours,
            &[&format!("{OURS}/24"), "2001:db8::1/64"],
            &theirs,
            &[&format!("{THEIRS}/24"), "2001:db8::2/64"],
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let cfg = PeerConfig {
            name: "rrd".into(),
            local_as: peer_as,
            local_addr: THEIRS.parse().expect("address"),
            remote_as: OUR_AS,
            remote_addr: OURS.parse().expect("address"),
            hold: HOLD,
            keepalive: 1,
            connect_retry: 1,
            passive: matches!(mode, Mode::PeerPassive),
        };
        let peer: Result<Box<dyn Peer>, String> = match kind {
            Kind::Bird2 => Bird::start(BirdVersion::V2, &theirs, dir.path(), cfg)
                .map(|b| Box::new(b) as Box<dyn Peer>),
            Kind::Bird16 => Bird::start(BirdVersion::V16, &theirs, dir.path(), cfg)
                .map(|b| Box::new(b) as Box<dyn Peer>),
            Kind::Frr => Frr::start(&theirs, dir.path(), cfg).map(|f| Box::new(f) as Box<dyn Peer>),
        };
        let peer = peer.unwrap_or_else(|e| panic!("{name}: cannot start the {kind:?} peer: {e}"));
        let mut ctx = Self {
            speaker: None,
            peer,
            ours,
            _theirs: theirs,
            dir,
            name,
            peer_as,
            mode,
            started,
        };
        ctx.start_speaker();
        ctx
    }

    fn start_speaker(&mut self) {
        let peer_as = self.peer_as.to_string();
        let our_as = OUR_AS.to_string();
        let hold = HOLD.to_string();
        let listen = format!("{OURS}:179");
        let mut args = vec![
            "--local-as",
            &our_as,
            "--router-id",
            OURS,
            "--peer",
            THEIRS,
            "--peer-as",
            &peer_as,
            "--hold",
            &hold,
            "--connect-retry",
            "1",
            "--idle-hold",
            "1",
            "--bind",
            OURS,
            "--listen",
            &listen,
        ];
        if matches!(self.mode, Mode::OursPassive) {
            args.push("--passive");
        }
        let exe = Path::new(env!("CARGO_BIN_EXE_speaker"));
        let s = Speaker::start(&self.ours, self.dir.path(), exe, &args)
            .unwrap_or_else(|e| self.fail(&format!("cannot start our speaker: {e}")));
        self.speaker = Some(s);
    }

    fn speaker(&self) -> &Speaker {
        self.speaker.as_ref().expect("speaker running")
    }

    fn log(&self, what: &str) {
        eprintln!(
            "[{} +{:5.1}s] {what}",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Panics with everything needed to tell what went wrong.
    fn fail(&self, msg: &str) -> ! {
        let transcript = self
            .speaker
            .as_ref()
            .map_or_else(|| "(speaker not running)".into(), |s| s.transcript(60));
        let details = self
            .peer
            .details()
            .unwrap_or_else(|e| format!("(no details: {e})"));
        panic!(
            "{} vs {}: {msg}\n{transcript}\n--- {} session ---\n{details}\n{}\nwork dir: {}",
            self.name,
            self.peer.kind(),
            self.peer.kind(),
            self.peer.log_tail(40),
            self.dir.path().display()
        );
    }

    /// Waits for the peer to report `want` (at most `timeout`).
    fn peer_state_is(&self, want: &str, timeout: Duration) -> Result<(), String> {
        let mut last = String::new();
        interop_tests::poll(timeout, Duration::from_millis(200), || {
            match self.peer.state() {
                Ok(s) if s == want => return Some(()),
                Ok(s) => last = s,
                Err(e) => last = e,
            }
            None
        })
        .ok_or_else(|| format!("{} state is {last:?}, not {want}", self.peer.kind()))
    }

    /// Our `established` event at or after `from`, and the peer Established too.
    fn expect_established(&self, from: usize, timeout: Duration) -> usize {
        let t = Instant::now();
        let (i, ev) = self
            .speaker()
            .wait_event(from, "established", timeout)
            .unwrap_or_else(|e| self.fail(&format!("our speaker not Established: {e}")));
        self.log(&format!(
            "we are Established after {:.1}s",
            t.elapsed().as_secs_f64()
        ));
        if ev["peer_as"] != self.peer_as
            || ev["peer_id"] != THEIRS
            || ev["hold_time"] != u64::from(HOLD)
        {
            self.fail(&format!(
                "unexpected negotiation: {ev} (want peer_as {}, peer_id {THEIRS}, hold_time {HOLD})",
                self.peer_as
            ));
        }
        self.peer_state_is("Established", Duration::from_secs(10))
            .unwrap_or_else(|e| self.fail(&e));
        i
    }

    /// Fails on any event at or after `from` that a healthy session does not produce.
    fn expect_quiet_since(&self, from: usize, what: &str) {
        let evs = self.speaker().events();
        if let Some(ev) = evs.iter().skip(from).find(|e| !benign(e)) {
            self.fail(&format!("{what}: unexpected event {ev}"));
        }
    }

    /// (b): nothing happens for `STABLE`; the peer stays Established throughout.
    fn expect_stable(&self, since: usize) {
        self.log(&format!("checking the session stays up for {STABLE:?}"));
        let until = Instant::now() + STABLE;
        while Instant::now() < until {
            thread::sleep(Duration::from_secs(1));
            self.expect_quiet_since(since + 1, "session not stable");
            match self.peer.state() {
                Ok(s) if s == "Established" => {}
                Ok(s) => self.fail(&format!("peer left Established: {s}")),
                Err(e) => self.fail(&format!("cannot query the peer: {e}")),
            }
        }
    }

    /// (c): stop the peer (it sends a Cease), see `down`; start it, see `established`.
    fn expect_survives_peer_restart(&mut self) -> usize {
        let mark = self.speaker().mark();
        self.log(&format!("stopping {}", self.peer.kind()));
        self.peer
            .stop()
            .unwrap_or_else(|e| self.fail(&format!("cannot stop the peer: {e}")));
        let (i, down) = self
            .speaker()
            .wait_event(mark, "down", Duration::from_secs(10))
            .unwrap_or_else(|e| self.fail(&format!("no `down` after the peer stopped: {e}")));
        self.log(&format!("we saw {down}"));
        // BIRD (Administrative Shutdown) and FRR (Peer De-configured) both send a Cease
        // when they stop.
        let reason = down["reason"].as_str().unwrap_or_default();
        if !reason.starts_with("received NOTIFICATION Cease") {
            self.fail(&format!(
                "`down` after the peer's Cease, but reason {reason:?}"
            ));
        }
        // Only what the peer's stop explains may precede it.
        if let Some(ev) = self.speaker().events()[mark..i].iter().find(|e| !benign(e)) {
            self.fail(&format!("unexpected event before `down`: {ev}"));
        }
        self.log(&format!("starting {} again", self.peer.kind()));
        self.peer
            .start_again()
            .unwrap_or_else(|e| self.fail(&format!("cannot restart the peer: {e}")));
        self.expect_established(i + 1, UP_WITHIN)
    }

    /// (d): SIGTERM to our speaker: exit 0, and the peer records our Cease /
    /// Administrative Shutdown with its shutdown communication.
    fn expect_clean_stop(&mut self) {
        self.log("stopping our speaker (SIGTERM)");
        let st = self
            .speaker
            .as_mut()
            .expect("speaker running")
            .terminate(Duration::from_secs(10))
            .unwrap_or_else(|e| self.fail(&e));
        if !st.success() {
            self.fail(&format!("speaker exited with {st}"));
        }
        let mut last = Ok(None);
        let _ = interop_tests::poll(Duration::from_secs(10), Duration::from_millis(200), || {
            last = self.peer.received_admin_shutdown();
            matches!(&last, Ok(Some(_))).then_some(())
        });
        match last {
            Ok(Some(m)) if m == STOP_MESSAGE => {}
            Ok(Some(m)) => self.fail(&format!(
                "the peer recorded our Administrative Shutdown with communication {m:?}, \
                 not {STOP_MESSAGE:?}"
            )),
            Ok(None) => self.fail(
                "the peer did not record a received Cease/Administrative Shutdown within 10 s",
            ),
            Err(e) => self.fail(&format!("cannot query the peer: {e}")),
        }
        self.log(&format!(
            "{} recorded our Cease/Administrative Shutdown {STOP_MESSAGE:?}",
            self.peer.kind()
        ));
    }
}

/// Events that may follow `established` on a healthy session: routes, route refreshes,
/// and the state change into Established (reported after the `established` event).
fn benign(e: &serde_json::Value) -> bool {
    match e["event"].as_str() {
        Some("update" | "route-refresh") => true,
        Some("state") => e["to"] == "Established",
        // Both sides connected at once: the losing connection is closed with Cease 6/7
        // right as the other one is Established (RFC 4271 §6.8); the session stays up.
        Some("failed") => e["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Connection Collision Resolution")),
        _ => false,
    }
}

/// (a) – (d) against one peer.
fn full_cycle(name: &'static str, kind: Kind, peer_as: u32, mode: Mode) {
    let mut ctx = Ctx::new(name, kind, peer_as, mode);
    ctx.log(&format!("{} and our speaker started", ctx.peer.kind()));
    let up = ctx.expect_established(0, UP_WITHIN);
    ctx.expect_stable(up);
    ctx.expect_survives_peer_restart();
    ctx.expect_clean_stop();
    if matches!(mode, Mode::OursPassive)
        && let Some(ev) = ctx
            .speaker()
            .events()
            .iter()
            .find(|e| e["event"] == "state" && e["to"] == "Connect")
    {
        ctx.fail(&format!("a passive speaker connected out: {ev}"));
    }
    ctx.log("done");
}

#[test]
fn bird2_ebgp_session() {
    full_cycle("bird2-ebgp", Kind::Bird2, 65001, Mode::Both);
}

#[test]
fn bird16_ebgp_session() {
    full_cycle("bird16-ebgp", Kind::Bird16, 65001, Mode::Both);
}

#[test]
fn frr_ebgp_session() {
    full_cycle("frr-ebgp", Kind::Frr, 65001, Mode::Both);
}

#[test]
fn frr_ibgp_session() {
    full_cycle("frr-ibgp", Kind::Frr, OUR_AS, Mode::Both);
}

#[test]
fn bird2_we_are_passive() {
    full_cycle("bird2-ours-passive", Kind::Bird2, 65001, Mode::OursPassive);
}

#[test]
fn bird2_peer_is_passive() {
    full_cycle("bird2-peer-passive", Kind::Bird2, 65001, Mode::PeerPassive);
}
