//! The control socket's actions against a real BIRD 2 (`ctl --socket PATH`): soft reset
//! out with 100,000 routes (BIRD holds exactly 100,000 afterwards and its session is
//! kept), soft reset in (BIRD answers the ROUTE-REFRESH by exporting its 100,000 routes
//! again), a hard reset (BIRD logs Received: Administrative reset) and a disable/enable
//! of the source (BIRD's table empty, then exactly 100,000 again), disable with a
//! shutdown communication and enable, run-time announce and withdraw seen in BIRD's
//! table (one, then hundreds in a loop, timed), `ctl reload` adding, moving and removing
//! 500 peers, with a change, with an unchanged file and with a broken file
//! (`FILE:LINE:COL`, non-zero exit), the socket's mode 0660 and a second daemon refused
//! on the live socket, and a per-peer `local_as` that BIRD is configured for.
//!
//! Topology: two namespaces joined by two veths: 192.0.2.1/24 (ours) to 192.0.2.2/24,
//! 198.18.0.1/24 (ours) to 198.18.0.2/24. One BIRD 2 with two BGP protocols in two tables:
//! `feed` (AS 65001, from 192.0.2.2) exports 100,000 static routes of table `t_src`;
//! `sink` (AS 65002, from 198.18.0.2) imports into table `t_dst` what we send it, so
//! `show route count table t_dst` is exactly what we advertise to it. We are AS 65000
//! but present AS 64999 to `sink` (`local_as`), which BIRD's `neighbor ... as 64999`
//! requires. Needs root and BIRD 2 (`sudo tests/scripts/install-peers.sh`).

use std::fmt::Write as _;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use interop_tests::{
    Bird, BirdVersion, Daemon, Link, Netns, Peer, WorkDir, poll, require_root, same_since,
};

const AS: u32 = 65000;
const LOCAL_AS: u32 = 64999;
const OURS: &str = "192.0.2.1";
const SRC: &str = "192.0.2.2";
/// Ours on the second link, towards `sink`.
const OURS2: &str = "198.18.0.1";
const DST: &str = "198.18.0.2";
const ROUTES: usize = 100_000;
/// Sessions up and 100,000 routes through (a debug build, a loaded machine).
const TABLE_WITHIN: Duration = Duration::from_secs(90);
/// An action's effect at BIRD.
const SEEN_WITHIN: Duration = Duration::from_secs(20);

/// Prefixes announced (and withdrawn) one `ctl` at a time: 200 by default (a `ctl`
/// process each, about 15 ms in a debug build), `RR_CTL_ANNOUNCES=1000` (at most 16,384)
/// for the figure at size.
fn many() -> usize {
    std::env::var("RR_CTL_ANNOUNCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
        .clamp(1, 16_384)
}
/// Peers a reload adds, moves and removes.
const PEERS: usize = 500;

/// The `i`-th of the [`many`] prefixes: /24s in 100.64.0.0/10.
fn many_prefix(i: usize) -> String {
    format!("100.{}.{}.0/24", 64 + i / 256, i % 256)
}

/// [`PEERS`] peers on the namespace's loopback (127.0.1.1 on; nothing answers, so
/// connecting fails at once), in group `group` of two that differ in hold time.
fn many_peers(group: &str) -> String {
    let mut s = String::from(
        "\n[[peer_group]]\nname = \"a\"\nasn = 65010\nhold_time = 30\n\n\
         [[peer_group]]\nname = \"b\"\nasn = 65010\nhold_time = 60\n",
    );
    let first = u32::from(std::net::Ipv4Addr::new(127, 0, 1, 1));
    for i in 0..PEERS as u32 {
        let a = std::net::Ipv4Addr::from(first + i);
        let _ = write!(s, "\n[[peer]]\naddress = \"{a}\"\ngroup = \"{group}\"\n");
    }
    s
}

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

fn daemon_config(socket: &Path, extra: &str) -> String {
    format!(
        "[speaker]\nasn = {AS}\nrouter_id = \"{OURS}\"\nlisten = [\"{OURS}:179\"]\n\
         connect_retry = 1\n\n\
         [api]\nlisten = \"{OURS}:9179\"\n\n\
         [control]\nsocket = \"{}\"\n\n\
         [[peer]]\naddress = \"{SRC}\"\nasn = 65001\nsource_address = \"{OURS}\"\n\
         description = \"route source\"\nimport = \"all\"\nexport = \"none\"\nhold_time = 6\n\
         idle_hold = 1\nidle_hold_max = 2\n\n\
         [[peer]]\naddress = \"{DST}\"\nasn = 65002\nlocal_as = {LOCAL_AS}\n\
         source_address = \"{OURS2}\"\ndescription = \"route sink\"\nimport = \"none\"\n\
         export = \"all\"\nhold_time = 6\nidle_hold = 1\nidle_hold_max = 2\n{extra}",
        socket.display()
    )
}

fn bird_config() -> String {
    let mut s = format!(
        "router id {SRC};\n\
         protocol device {{ scan time 10; }}\n\
         ipv4 table t_src;\nipv4 table t_dst;\n\
         protocol static s100k {{\n  ipv4 {{ table t_src; }};\n"
    );
    for i in 0..ROUTES {
        let _ = writeln!(
            s,
            "  route {}.{}.{}.0/24 blackhole;",
            10 + (i >> 16),
            (i >> 8) & 255,
            i & 255
        );
    }
    s.push_str("}\n");
    for (name, local, neighbor, asn, peer_as, table, import, export) in [
        ("feed", SRC, OURS, 65001, AS, "t_src", "none", "all"),
        ("sink", DST, OURS2, 65002, LOCAL_AS, "t_dst", "all", "none"),
    ] {
        let _ = write!(
            s,
            "protocol bgp {name} {{\n\
             \x20 local {local} as {asn};\n\
             \x20 neighbor {neighbor} as {peer_as};\n\
             \x20 direct;\n\
             \x20 hold time 6;\n\
             \x20 keepalive time 2;\n\
             \x20 connect retry time 1;\n\
             \x20 connect delay time 1;\n\
             \x20 error wait time 1,2;\n\
             \x20 ipv4 {{ table {table}; import {import}; export {export}; }};\n\
             }}\n"
        );
    }
    s
}

struct World {
    daemon: Option<Daemon>,
    bird: Bird,
    _link: (Link, Link),
    ours_ns: Netns,
    _bird_ns: Netns,
    dir: WorkDir,
    socket: PathBuf,
    started: Instant,
}

/// What `ctl` said: exit success, stdout, stderr.
struct Said {
    ok: bool,
    out: String,
    err: String,
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
            &[&format!("{SRC}/24")],
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let link2 = Link::named(
            &ours_ns,
            "bgpt2",
            &[&format!("{OURS2}/24")],
            &bird_ns,
            "bgpt3",
            &[&format!("{DST}/24")],
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let bird = Bird::start_config(
            BirdVersion::V2,
            &bird_ns,
            dir.path(),
            "bird",
            "sink",
            false,
            &bird_config(),
        )
        .unwrap_or_else(|e| panic!("{name}: cannot start BIRD 2: {e}"));
        let socket = dir.path().join("run/control.sock");
        let daemon = Daemon::start(&ours_ns, dir.path(), exe(), &daemon_config(&socket, ""))
            .unwrap_or_else(|e| panic!("{name}: cannot start the daemon: {e}"));
        Self {
            daemon: Some(daemon),
            bird,
            _link: (link, link2),
            ours_ns,
            _bird_ns: bird_ns,
            dir,
            socket,
            started: Instant::now(),
        }
    }

    fn log(&self, what: &str) {
        eprintln!("[+{:5.1}s] {what}", self.started.elapsed().as_secs_f64());
    }

    fn fail(&self, msg: &str) -> ! {
        let mut s = format!("{msg}\n");
        if let Some(d) = &self.daemon {
            let _ = writeln!(s, "{}", d.transcript(60));
        }
        let _ = writeln!(
            s,
            "{}",
            self.bird
                .birdc(&["show", "protocols", "all"])
                .unwrap_or_else(|e| e)
        );
        let _ = writeln!(s, "{}", self.bird.log_tail(40));
        panic!("{s}");
    }

    /// `rr-daemon ctl --socket SOCKET ARGS` (the socket is a file: no namespace needed).
    fn ctl(&self, args: &[&str]) -> Said {
        let out = Command::new(exe())
            .args(["ctl", "--socket"])
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("ctl: {e}"));
        Said {
            ok: out.status.success(),
            out: String::from_utf8_lossy(&out.stdout).into_owned(),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn ctl_ok(&self, args: &[&str]) -> String {
        let s = self.ctl(args);
        if !s.ok {
            self.fail(&format!("ctl {}: {}", args.join(" "), s.err));
        }
        self.log(&format!("ctl {}: {}", args.join(" "), s.out.trim()));
        s.out
    }

    /// Like [`World::ctl_ok`], without logging the answer.
    fn ctl_ok_quiet(&self, args: &[&str]) -> String {
        let s = self.ctl(args);
        if !s.ok {
            self.fail(&format!("ctl {}: {}", args.join(" "), s.err));
        }
        s.out
    }

    fn count(&self, table: &str) -> Option<usize> {
        let out = self
            .bird
            .birdc(&["show", "route", "count", "table", table])
            .ok()?;
        out.lines()
            .find(|l| l.contains("routes for"))
            .and_then(|l| l.split_whitespace().find_map(|w| w.parse::<usize>().ok()))
    }

    fn proto(&self, name: &str) -> String {
        self.bird
            .birdc(&["show", "protocols", "all", name])
            .unwrap_or_default()
    }

    /// `Route change stats` of a BIRD 2 channel: the `received` column of `Import
    /// updates` and the `accepted` column... here the first number after `what:`.
    fn stat(&self, proto: &str, what: &str) -> u64 {
        self.proto(proto)
            .lines()
            .find_map(|l| l.trim().strip_prefix(what))
            .and_then(|r| r.split_whitespace().find_map(|w| w.parse::<u64>().ok()))
            .unwrap_or(0)
    }

    fn established(&self, proto: &str) -> bool {
        self.bird
            .protocol_state(proto)
            .is_ok_and(|s| s == "Established")
    }

    fn wait(&self, what: &str, within: Duration, mut f: impl FnMut() -> bool) {
        if poll(within, Duration::from_millis(250), || f().then_some(())).is_none() {
            self.fail(&format!("not within {within:?}: {what}"));
        }
        self.log(what);
    }
}

#[test]
fn ctl_socket_actions_against_bird() {
    let w = World::new("ctlsock");
    w.wait(
        "both sessions Established, 100,000 routes in t_dst",
        TABLE_WITHIN,
        || w.established("feed") && w.established("sink") && w.count("t_dst") == Some(ROUTES),
    );
    // local_as: BIRD's `sink` wants AS 64999 of us, and got it: in the OPEN, and as the
    // AS we prepend (not 65000).
    let r = w
        .bird
        .routes(&["10.0.0.0/24", "table", "t_dst"])
        .unwrap_or_else(|e| w.fail(&e));
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].as_path, format!("{LOCAL_AS} 65001"), "{r:?}");
    assert!(
        w.proto("sink")
            .contains(&format!("Neighbor AS:      {LOCAL_AS}")),
        "{}",
        w.proto("sink")
    );

    // The socket: mode 0660, and a second daemon on it refused with a clear error.
    let meta = std::fs::metadata(&w.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let other = w.dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let conf = other.join("rr.toml");
    std::fs::write(
        &conf,
        format!(
            "[speaker]\nasn = {AS}\nrouter_id = \"{OURS}\"\nlisten = []\n[api]\nenabled = false\n\
             [control]\nsocket = \"{}\"\n",
            w.socket.display()
        ),
    )
    .unwrap();
    let second = Command::new("timeout")
        .arg("20")
        .arg(exe())
        .arg("--config")
        .arg(&conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success(),
        "a second daemon started on a live socket: {err}"
    );
    assert!(err.contains("another daemon answers"), "{err}");
    assert!(w.socket.exists(), "the live socket is left alone");
    w.log("socket 0660; a second daemon refused");

    // Reads over the socket: the API's JSON, with the description.
    let peers = w.ctl_ok(&["--json", "peers"]);
    assert!(peers.contains("\"description\":\"route sink\""), "{peers}");

    // Soft reset out: the 100,000 routes again, the session kept, exactly 100,000 held.
    let since = w.bird.since().unwrap_or_else(|e| w.fail(&e));
    let before = w.stat("sink", "Import updates:");
    let t = Instant::now();
    w.ctl_ok(&["reset", DST, "--soft", "out"]);
    w.wait("BIRD received the table again", TABLE_WITHIN, || {
        w.stat("sink", "Import updates:") >= before + ROUTES as u64
    });
    w.log(&format!(
        "soft out of {ROUTES} routes: {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    assert_eq!(
        w.count("t_dst"),
        Some(ROUTES),
        "BIRD holds exactly the table"
    );
    let now = w.bird.since().unwrap();
    assert!(
        same_since(&now, &since),
        "the session was kept: {since} -> {now}"
    );

    // Soft reset in: BIRD's `feed` answers the ROUTE-REFRESH with its 100,000 routes.
    let before = w.stat("feed", "Export updates:");
    w.ctl_ok(&["reset", SRC, "--soft", "in"]);
    w.wait(
        "BIRD exported its table again (ROUTE-REFRESH)",
        TABLE_WITHIN,
        || w.stat("feed", "Export updates:") >= before + ROUTES as u64,
    );
    assert!(w.established("feed"));

    // Hard reset: BIRD sees Administrative reset (in its log: the new session may be up
    // before `show protocols` is read), and the session comes back; `sink` loses the
    // 100,000 routes and, after the idle hold, holds exactly 100,000 again.
    let withdrawn = w.stat("sink", "Import withdraws:");
    let t = Instant::now();
    w.ctl_ok(&["reset", SRC]);
    w.wait(
        "BIRD's feed: Received: Administrative reset",
        SEEN_WITHIN,
        || {
            w.bird
                .log_text()
                .contains("feed: Received: Administrative reset")
        },
    );
    w.wait("feed Established again", TABLE_WITHIN, || {
        w.established("feed")
    });
    w.wait(
        "sink: the 100,000 withdrawn, then exactly 100,000 again",
        TABLE_WITHIN,
        || {
            // (BIRD's counters of `feed` start again with the new session; `sink`'s go on.)
            w.stat("sink", "Import withdraws:") >= withdrawn + ROUTES as u64
                && w.count("t_dst") == Some(ROUTES)
        },
    );
    w.log(&format!(
        "hard reset of a peer with {ROUTES} routes: back at BIRD in {:.1} s",
        t.elapsed().as_secs_f64()
    ));

    // Disable and enable the source: `sink` empty, then exactly 100,000 again.
    let t = Instant::now();
    w.ctl_ok(&["disable", SRC]);
    w.wait("feed disabled: sink empty", TABLE_WITHIN, || {
        !w.established("feed") && w.count("t_dst") == Some(0)
    });
    w.log(&format!(
        "disable of a peer with {ROUTES} routes: sink empty in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    let t = Instant::now();
    w.ctl_ok(&["enable", SRC]);
    w.wait(
        "feed enabled: sink has exactly 100,000",
        TABLE_WITHIN,
        || w.established("feed") && w.count("t_dst") == Some(ROUTES),
    );
    w.log(&format!(
        "enable: {ROUTES} routes back at BIRD in {:.1} s",
        t.elapsed().as_secs_f64()
    ));

    // Disable with a message: BIRD sees Administrative shutdown and the text; the
    // session stays down until enable.
    w.ctl_ok(&["disable", DST, "--message", "maintenance window 42"]);
    w.wait("BIRD's sink: Administrative shutdown", SEEN_WITHIN, || {
        let p = w.proto("sink");
        p.contains("Administrative shutdown") && !w.established("sink")
    });
    let text = w.proto("sink") + &w.bird.log_text();
    assert!(
        text.contains("maintenance window 42"),
        "BIRD did not get the message:\n{text}"
    );
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !w.established("sink"),
        "a disabled peer came back by itself"
    );
    let peers = w.ctl_ok(&["--json", "peers"]);
    assert!(peers.contains("\"enabled\":false"), "{peers}");
    w.ctl_ok(&["enable", DST]);
    w.wait(
        "sink Established again with the table",
        TABLE_WITHIN,
        || w.established("sink") && w.count("t_dst") == Some(ROUTES),
    );

    // Announce and withdraw at run time.
    w.ctl_ok(&["announce", "203.0.113.0/24", "--next-hop", OURS]);
    w.wait("BIRD has the announced route", SEEN_WITHIN, || {
        w.count("t_dst") == Some(ROUTES + 1)
            && !w
                .bird
                .routes(&["203.0.113.0/24", "table", "t_dst"])
                .unwrap_or_default()
                .is_empty()
    });
    w.ctl_ok(&["withdraw", "203.0.113.0/24"]);
    w.wait("BIRD lost the withdrawn route", SEEN_WITHIN, || {
        w.count("t_dst") == Some(ROUTES)
    });

    // Many announces, one `ctl` each: all in BIRD's table, then all withdrawn.
    let many = many();
    for (verb, want) in [("announce", ROUTES + many), ("withdraw", ROUTES)] {
        let t = Instant::now();
        for i in 0..many {
            let p = many_prefix(i);
            let mut args = vec![verb, p.as_str()];
            if verb == "announce" {
                args.extend(["--next-hop", OURS]);
            }
            let s = w.ctl(&args);
            if !s.ok {
                w.fail(&format!("ctl {verb} {p}: {}", s.err));
            }
        }
        let each = t.elapsed().as_secs_f64() / many as f64;
        w.wait(
            &format!("{many} x ctl {verb}: BIRD holds {want}"),
            SEEN_WITHIN,
            || w.count("t_dst") == Some(want),
        );
        if verb == "announce" {
            let r = w
                .bird
                .routes(&[&many_prefix(many - 1), "table", "t_dst"])
                .unwrap_or_else(|e| w.fail(&e));
            assert_eq!(r.len(), 1, "the last announced: {r:?}");
        }
        w.log(&format!(
            "{many} x ctl {verb}: {:.2} ms per action, all at BIRD after {:.1} s",
            each * 1000.0,
            t.elapsed().as_secs_f64()
        ));
    }

    // Reload: unchanged, changed, broken.
    let out = w.ctl_ok(&["reload"]);
    assert!(out.contains("unchanged"), "{out}");
    let conf = w.daemon.as_ref().unwrap().config_path().to_owned();
    std::fs::write(
        &conf,
        daemon_config(&w.socket, "\n[[route]]\nprefix = \"198.51.100.0/24\"\n"),
    )
    .unwrap();
    let out = w.ctl_ok(&["reload"]);
    assert!(
        out.starts_with("reloaded ") && out.contains("[[route]]"),
        "{out}"
    );
    w.wait("BIRD has the reloaded route", SEEN_WITHIN, || {
        w.count("t_dst") == Some(ROUTES + 1)
    });
    // Reload that adds 500 peers, moves them to another group, then removes them: the
    // two BIRD sessions untouched throughout, the report listing the 500 each time.
    let route = "\n[[route]]\nprefix = \"198.51.100.0/24\"\n";
    let since = w.bird.since().unwrap_or_else(|e| w.fail(&e));
    for (step, extra, field) in [
        ("add", many_peers("a"), "added"),
        ("move", many_peers("b"), "changed"),
        ("remove", String::new(), "removed"),
    ] {
        std::fs::write(&conf, daemon_config(&w.socket, &format!("{route}{extra}"))).unwrap();
        let t = Instant::now();
        let s = w.ctl(&["--json", "reload"]);
        let took = t.elapsed().as_secs_f64();
        if !s.ok {
            w.fail(&format!("reload ({step} {PEERS} peers): {}", s.err));
        }
        let v: serde_json::Value = serde_json::from_str(s.out.trim())
            .unwrap_or_else(|e| w.fail(&format!("reload --json: {e}: {}", s.out)));
        let listed = v["reload"][field].as_array().map_or(0, Vec::len);
        assert_eq!(listed, PEERS, "reload ({step}): {field}: {}", v["reload"]);
        let peers = w.ctl_ok_quiet(&["--json", "peers"]);
        let n = serde_json::from_str::<serde_json::Value>(&peers)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len));
        let want = if step == "remove" { 2 } else { PEERS + 2 };
        assert_eq!(n, Some(want), "peers after the reload ({step})");
        w.log(&format!(
            "ctl reload ({step} {PEERS} peers): {:.2} s, {} bytes of answer",
            took,
            s.out.len()
        ));
    }
    let now = w.bird.since().unwrap();
    assert!(
        same_since(&now, &since),
        "the BIRD sessions were kept: {since} -> {now}"
    );
    assert!(w.established("feed") && w.established("sink"));
    assert_eq!(w.count("t_dst"), Some(ROUTES + 1));

    std::fs::write(
        &conf,
        daemon_config(&w.socket, "\n[[route]]\nprefix = \"10.0.0.0/33\"\n"),
    )
    .unwrap();
    let s = w.ctl(&["reload"]);
    assert!(!s.ok, "a broken file reloaded: {}", s.out);
    let file = conf.display().to_string();
    let line = s.err.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    let rest = line
        .strip_prefix("rr-daemon ctl: ")
        .and_then(|l| l.strip_prefix(&file))
        .unwrap_or_else(|| w.fail(&format!("not `FILE:LINE:COL: ...`: {line}")));
    let mut parts = rest.splitn(4, ':');
    assert_eq!(parts.next(), Some(""));
    assert!(
        parts.next().is_some_and(|l| l.parse::<u32>().is_ok()),
        "{line}"
    );
    assert!(
        parts.next().is_some_and(|c| c.parse::<u32>().is_ok()),
        "{line}"
    );
    assert_eq!(
        w.count("t_dst"),
        Some(ROUTES + 1),
        "a broken file changed nothing"
    );

    // A failure is one line and a non-zero exit.
    let s = w.ctl(&["reset", "192.0.2.99"]);
    assert!(
        !s.ok && s.err.trim() == "rr-daemon ctl: 192.0.2.99 is not a peer",
        "{}",
        s.err
    );
    let _ = &w.ours_ns;
}
