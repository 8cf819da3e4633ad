//! BFD (RFC 5880/5881) against BIRD 2 (`protocol bfd`) and FRR (`bfdd`): the sessions come
//! up; a new interval reaches the peer through a Poll Sequence with both sessions staying
//! Up; and when the link is silenced (nftables in both namespaces drops what arrives on the
//! veth: no interface goes down, this kernel has no netem), our BGP session goes down
//! within the detection time and the peer's routes leave our other client at once. The
//! same silence without BFD takes the hold time (9 s): both figures are printed.
//!
//! Three namespaces: ours (`rr`), the peer's, and an observer (BIRD 2, another client of
//! ours on a second veth that is never silenced). Needs root, BIRD 2, FRR with `bfdd` and
//! `nft` (`sudo tests/scripts/install-peers.sh`). `KEEP_WORK=1` keeps the work dirs.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use interop_tests::{
    Bird, BirdVersion, Daemon, Frr, Link, Netns, Peer, Proc, WorkDir, ctl_json, poll, require_root,
    run_cmd,
};
use serde_json::Value;

const RR: &str = "10.79.1.1";
const PEER: &str = "10.79.1.2";
const RR_OBS: &str = "10.79.2.1";
const OBS: &str = "10.79.2.2";
const API: &str = "127.0.0.1:9179";
const ROUTES: usize = 20;
/// Generous bounds (the machine is loaded); the figures measured are printed.
const BFD_DOWN_WITHIN: Duration = Duration::from_secs(3);
const HOLD_DOWN_WITHIN: Duration = Duration::from_secs(20);
const BFDD: &str = "/usr/lib/frr/bfdd";

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

fn prefix(i: usize) -> String {
    format!("198.18.{i}.0/24")
}

/// `gr`: graceful restart with the peer (the speaker's default, 120 s).
fn daemon_config(bfd: &str, gr: bool) -> String {
    let gr = if gr {
        ""
    } else {
        // FRR sends the N bit: with graceful restart a BFD Down keeps its routes as
        // stale, as a hold timer expiry would (RFC 8538). Here they are to go at once.
        "graceful_restart = false"
    };
    format!(
        r#"[speaker]
asn = 64512
router_id = "{RR}"
listen = ["{RR}:179", "{RR_OBS}:179"]
hold_time = 9
connect_retry = 1
[api]
listen = "{API}"
[[peer]]
address = "{PEER}"
asn = 64513
import = "all"
export = "all"
{gr}
{bfd}
[[peer]]
address = "{OBS}"
asn = 64514
import = "all"
export = "all"
"#
    )
}

/// The peer under test, with its BFD daemon.
enum Far {
    Bird(Bird),
    Frr { bgpd: Frr, bfdd: Proc, vty: String },
}

impl Far {
    /// The peer's BFD session with us: (state, transmit interval in ms).
    fn bfd(&self) -> Result<(String, u64), String> {
        match self {
            Self::Bird(b) => {
                // IP address  Interface  State  Since  Interval  Timeout
                let out = b.birdc(&["show", "bfd", "sessions"])?;
                let line = out
                    .lines()
                    .find(|l| l.starts_with(RR))
                    .ok_or_else(|| format!("no BFD session with {RR}:\n{out}"))?;
                let f: Vec<&str> = line.split_whitespace().collect();
                let interval: f64 = f[f.len() - 2]
                    .parse()
                    .map_err(|e| format!("interval in {line:?}: {e}"))?;
                Ok((f[2].to_owned(), (interval * 1000.0).round() as u64))
            }
            Self::Frr { vty, .. } => {
                let out = run_cmd(
                    "vtysh",
                    &[
                        "--vty_socket",
                        vty,
                        "-d",
                        "bfdd",
                        "-c",
                        "show bfd peers json",
                    ],
                    Duration::from_secs(5),
                )?;
                let v: Value = serde_json::from_str(&out)
                    .map_err(|e| format!("bfdd printed no JSON ({e}):\n{out}"))?;
                let p = v
                    .as_array()
                    .and_then(|a| a.iter().find(|p| p["peer"] == RR))
                    .ok_or_else(|| format!("no BFD peer {RR} in {out}"))?;
                // What FRR sends at: the larger of its own interval and what we ask for.
                let own = p["transmit-interval"].as_u64().unwrap_or(0);
                let asked = p["remote-receive-interval"].as_u64().unwrap_or(0);
                Ok((
                    p["status"].as_str().unwrap_or_default().to_owned(),
                    own.max(asked),
                ))
            }
        }
    }

    fn bgp_state(&self) -> Result<String, String> {
        match self {
            Self::Bird(b) => b.state(),
            Self::Frr { bgpd, .. } => bgpd.state(),
        }
    }

    fn logs(&self) -> String {
        match self {
            Self::Bird(b) => b.log_tail(60),
            Self::Frr { bgpd, bfdd, .. } => format!(
                "{}\n--- bfdd stderr ---\n{}",
                bgpd.log_tail(60),
                interop_tests::tail(bfdd.stderr_path(), 40)
                    + &interop_tests::tail(&bfdd.stderr_path().with_file_name("bfdd/bfdd.log"), 40)
            ),
        }
    }
}

struct Env {
    work: WorkDir,
    rr: Netns,
    peer_ns: Netns,
    _obs_ns: Netns,
    rr_if: String,
    peer_if: String,
    daemon: Daemon,
    far: Far,
    obs: Bird,
}

impl Env {
    fn start(kind: &str, bfd_line: &str) -> Result<Self, String> {
        require_root()?;
        if run_cmd("nft", &["--version"], Duration::from_secs(5)).is_err() {
            return Err("nft not found: run `sudo tests/scripts/install-peers.sh`".into());
        }
        let work = WorkDir::new(&format!("bfd-{kind}"))?;
        let rr = Netns::create("bfd-rr")?;
        let peer_ns = Netns::create(&format!("bfd-{kind}"))?;
        let obs_ns = Netns::create("bfd-obs")?;
        let link = Link::new(
            &rr,
            &[&format!("{RR}/24")],
            &peer_ns,
            &[&format!("{PEER}/24")],
        )?;
        let _obs_link = Link::named(
            &rr,
            "bgpt2",
            &[&format!("{RR_OBS}/24")],
            &obs_ns,
            "bgpt3",
            &[&format!("{OBS}/24")],
        )?;
        let dir = work.path();
        let mut statics = String::new();
        for i in 0..ROUTES {
            let _ = writeln!(statics, "  route {} blackhole;", prefix(i));
        }
        let far = match kind {
            "bird" => Far::Bird(Bird::start_config(
                BirdVersion::V2,
                &peer_ns,
                dir,
                "far",
                "upstream",
                false,
                &format!(
                    "router id {PEER};\n\
                     protocol device {{ scan time 5; }}\n\
                     protocol bfd {{ interface \"*\" {{ min rx interval 300 ms; \
                     min tx interval 300 ms; multiplier 3; \
                     authentication keyed sha1; password \"s3cret\" {{ id 7; }}; }}; }}\n\
                     protocol static blocks {{ ipv4; \n{statics} }}\n\
                     protocol bgp upstream {{ local {PEER} as 64513; neighbor {RR} as 64512; \
                     hold time 9; connect retry time 1; error wait time 1, 2; bfd on; \
                     ipv4 {{ import all; export all; }}; }}\n"
                ),
            )?),
            _ => {
                if !Path::new(BFDD).is_file() {
                    return Err(format!("{BFDD} not found (Debian frr)"));
                }
                // bfdd runs as `frr` (it has no --skip_runas): its files in a dir of
                // frr's.
                let bdir = dir.join("bfdd");
                let vty = bdir.join("vty");
                fs::create_dir_all(&vty).map_err(|e| e.to_string())?;
                let conf = bdir.join("bfdd.conf");
                fs::write(
                    &conf,
                    format!(
                        "bfd\n peer {RR} local-address {PEER}\n  receive-interval 300\n  \
                         transmit-interval 300\n  detect-multiplier 3\n !\n!\n"
                    ),
                )
                .map_err(|e| e.to_string())?;
                run_cmd(
                    "chown",
                    &["-R", "frr:frr", &bdir.to_string_lossy()],
                    Duration::from_secs(5),
                )?;
                let args: Vec<String> = [
                    "-f",
                    &conf.to_string_lossy(),
                    "-i",
                    &bdir.join("bfdd.pid").to_string_lossy(),
                    "--vty_socket",
                    &vty.to_string_lossy(),
                    "--bfdctl",
                    &bdir.join("bfdd.sock").to_string_lossy(),
                    "-z",
                    &bdir.join("zserv.api").to_string_lossy(),
                    "--log",
                    &format!("file:{}", bdir.join("bfdd.log").display()),
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
                let bfdd = peer_ns.spawn(dir, "bfdd", Path::new(BFDD), &args, &[], false)?;
                let mut networks = String::new();
                for i in 0..ROUTES {
                    let _ = writeln!(networks, "  network {}", prefix(i));
                }
                let bgpd = Frr::start_config(
                    &peer_ns,
                    dir,
                    "far",
                    RR.parse().unwrap(),
                    PEER.parse().unwrap(),
                    &format!(
                        "router bgp 64513\n bgp router-id {PEER}\n no bgp ebgp-requires-policy\n \
                         no bgp network import-check\n neighbor {RR} remote-as 64512\n \
                         neighbor {RR} timers 3 9\n neighbor {RR} timers connect 1\n \
                         address-family ipv4 unicast\n{networks} exit-address-family\n!\n"
                    ),
                )?;
                Far::Frr {
                    bgpd,
                    bfdd,
                    vty: vty.to_string_lossy().into_owned(),
                }
            }
        };
        let obs = Bird::start_config(
            BirdVersion::V2,
            &obs_ns,
            dir,
            "obs",
            "upstream",
            false,
            &format!(
                "router id {OBS};\nprotocol device {{ scan time 5; }}\n\
                 protocol bgp upstream {{ local {OBS} as 64514; neighbor {RR_OBS} as 64512; \
                 hold time 9; connect retry time 1; ipv4 {{ import all; export none; }}; }}\n"
            ),
        )?;
        let daemon = Daemon::start(&rr, dir, exe(), &daemon_config(bfd_line, false))?;
        let env = Self {
            work,
            rr,
            peer_ns,
            _obs_ns: obs_ns,
            rr_if: link.a_if,
            peer_if: link.b_if,
            daemon,
            far,
            obs,
        };
        env.prepare_silence()?;
        Ok(env)
    }

    fn fail(&self, what: &str) -> String {
        format!(
            "{what}\n--- work dir {} ---\n{}\n{}\n{}",
            self.work.path().display(),
            self.daemon.transcript(80),
            self.far.logs(),
            self.obs.log_tail(20)
        )
    }

    /// Our view of the peer: (BGP state, BFD state).
    fn ours(&self) -> Result<(String, Value), String> {
        let v = ctl_json(&self.rr, exe(), API, &["peers"])?;
        let p = v
            .as_array()
            .and_then(|a| a.iter().find(|p| p["address"] == PEER))
            .ok_or_else(|| format!("no peer {PEER} in {v}"))?;
        Ok((
            p["state"].as_str().unwrap_or_default().to_owned(),
            p["bfd"].clone(),
        ))
    }

    fn observed(&self) -> usize {
        self.obs
            .routes(&["protocol", "upstream"])
            .map(|r| r.iter().filter(|l| l.prefix.starts_with("198.18.")).count())
            .unwrap_or(usize::MAX)
    }

    fn wait(&self, what: &str, timeout: Duration, ok: impl Fn(&Self) -> bool) {
        if poll(timeout, Duration::from_millis(100), || {
            ok(self).then_some(())
        })
        .is_none()
        {
            panic!("{}", self.fail(&format!("not within {timeout:?}: {what}")));
        }
    }

    fn converged(&self, with_bfd: bool) -> bool {
        let ours = self.ours().ok();
        let bgp = ours.as_ref().is_some_and(|(s, _)| s == "Established");
        let bfd = !with_bfd || ours.as_ref().is_some_and(|(_, b)| b == "up");
        let far_bfd = !with_bfd
            || self
                .far
                .bfd()
                .is_ok_and(|(s, _)| s.eq_ignore_ascii_case("up"));
        bgp && bfd && far_bfd && self.observed() == ROUTES
    }

    /// Drops everything that arrives on the link, in both namespaces (`on`), ours first:
    /// what we stop receiving is what our detection counts; or lets it all through again.
    fn silence(&self, on: bool) {
        for (ns, dev) in [(&self.rr, &self.rr_if), (&self.peer_ns, &self.peer_if)] {
            let r = if on {
                ns.exec(
                    "nft",
                    &["add", "rule", "inet", "bfdt", "in", "iifname", dev, "drop"],
                )
            } else {
                ns.exec("nft", &["flush", "chain", "inet", "bfdt", "in"])
            };
            if let Err(e) = r {
                panic!("{}", self.fail(&format!("nft in {}: {e}", ns.name())));
            }
        }
    }

    /// The nftables table and input chain (accepting all) that [`Env::silence`] fills.
    fn prepare_silence(&self) -> Result<(), String> {
        for ns in [&self.rr, &self.peer_ns] {
            ns.exec("nft", &["add", "table", "inet", "bfdt"])?;
            ns.exec(
                "nft",
                &["add chain inet bfdt in { type filter hook input priority 0 ; policy accept ; }"],
            )?;
        }
        Ok(())
    }

    /// Silences the link and measures: our BGP session down (the time of the daemon's
    /// `session down` log line, to the microsecond) and the peer's routes gone at the
    /// observer (polled every 20 ms).
    fn measure_silence(&self, limit: Duration) -> (Duration, Duration) {
        let mark = self.daemon.log_mark();
        let t0 = Instant::now();
        let wall0 = time_of_day();
        self.silence(true);
        let mut down = None;
        let mut gone = None;
        while t0.elapsed() < limit + Duration::from_secs(5) {
            if down.is_none() {
                down = self
                    .daemon
                    .log_since(mark)
                    .iter()
                    .find(|l| l.contains("session down") && l.contains(&format!("peer={PEER}")))
                    .and_then(|l| log_time_of_day(l))
                    .map(|t| Duration::from_secs_f64((t - wall0).rem_euclid(86_400.0)));
            }
            if gone.is_none() && self.observed() == 0 {
                gone = Some(t0.elapsed());
            }
            if down.is_some() && gone.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (Some(down), Some(gone)) = (down, gone) else {
            panic!(
                "{}",
                self.fail(&format!(
                    "silenced link: BGP down {down:?}, routes gone {gone:?} within {:?}",
                    limit + Duration::from_secs(5)
                ))
            );
        };
        (down, gone)
    }
}

/// Seconds since midnight UTC, now.
fn time_of_day() -> f64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_secs_f64().rem_euclid(86_400.0)
}

/// Seconds since midnight UTC of a daemon log line (`2026-12-06T16:54:26.916858Z ...`).
fn log_time_of_day(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?.split_once('T')?.1;
    let t = t.strip_suffix('Z')?;
    let mut f = t.split(':');
    let (h, m, s) = (f.next()?, f.next()?, f.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

/// The `bfd` table of our peer, with `auth` inside.
fn bfd_line(interval: u32, auth: &str) -> String {
    format!("bfd = {{ interval = {interval}, multiplier = 3{auth} }}")
}

/// `auth`: extra keys of our `bfd` table (the peer's are fixed by `kind`).
fn scenario(kind: &str, auth: &str) {
    let env = match Env::start(kind, &bfd_line(300, auth)) {
        Ok(e) => e,
        Err(e) => panic!("setup: {e}"),
    };
    let mut env = env;
    env.wait(
        "BGP and BFD up, routes at the observer",
        Duration::from_secs(40),
        |e| e.converged(true),
    );
    let (_, interval) = env.far.bfd().unwrap();
    assert_eq!(
        interval,
        300,
        "{}",
        env.fail("peer's BFD interval at 300 ms")
    );
    let bgp_since = env.far.bgp_state().unwrap();
    eprintln!("{kind}: BGP {bgp_since}, BFD up at 300 ms");

    // Timer renegotiation: 600 ms by reload; both stay Up, the peer sends at 600 ms.
    let mark = env.daemon.log_mark();
    env.daemon
        .reload(&daemon_config(&bfd_line(600, auth), false))
        .unwrap();
    env.wait("the peer's BFD at 600 ms", Duration::from_secs(10), |e| {
        e.far
            .bfd()
            .is_ok_and(|(s, i)| s.eq_ignore_ascii_case("up") && i == 600)
    });
    env.daemon
        .reload(&daemon_config(&bfd_line(300, auth), false))
        .unwrap();
    env.wait(
        "the peer's BFD back at 300 ms",
        Duration::from_secs(10),
        |e| {
            e.far
                .bfd()
                .is_ok_and(|(s, i)| s.eq_ignore_ascii_case("up") && i == 300)
        },
    );
    let changes: Vec<String> = env
        .daemon
        .log_since(mark)
        .into_iter()
        .filter(|l| l.contains("BFD session state") || l.contains("Cease"))
        .collect();
    assert!(
        changes.is_empty(),
        "{}",
        env.fail(&format!("renegotiation changed a state: {changes:?}"))
    );
    assert!(
        env.converged(true),
        "{}",
        env.fail("still converged after renegotiation")
    );

    // Silence with BFD.
    let (down, gone) = env.measure_silence(BFD_DOWN_WITHIN);
    eprintln!(
        "{kind}: BFD 300 ms x 3: our BGP session down after {down:?}, routes gone from the observer after {gone:?}"
    );
    assert!(
        down <= BFD_DOWN_WITHIN && gone <= BFD_DOWN_WITHIN,
        "{}",
        env.fail("BFD took too long")
    );
    let (_, bfd) = env.ours().unwrap();
    assert_eq!(
        bfd,
        "down",
        "{}",
        env.fail("our BFD state after the silence")
    );
    let metrics = run_cmd(
        "ip",
        &[
            "netns",
            "exec",
            env.rr.name(),
            "curl",
            "-s",
            &format!("http://{API}/metrics"),
        ],
        Duration::from_secs(5),
    )
    .unwrap_or_default();
    if !metrics.is_empty() {
        assert!(
            metrics.contains("rr_bfd_sessions{state=\"down\"} 1"),
            "{}",
            env.fail(&format!("metrics: {metrics}"))
        );
    }

    // Back, then without BFD: the hold time.
    env.silence(false);
    env.wait("back up after the silence", Duration::from_secs(40), |e| {
        e.converged(true)
    });
    env.daemon.reload(&daemon_config("", false)).unwrap();
    env.wait("up without BFD", Duration::from_secs(40), |e| {
        e.converged(false) && e.ours().is_ok_and(|(_, b)| b.is_null())
    });
    let (down, gone) = env.measure_silence(HOLD_DOWN_WITHIN);
    eprintln!(
        "{kind}: no BFD, hold time 9 s: our BGP session down after {down:?}, routes gone from the observer after {gone:?}"
    );
    assert!(
        down >= Duration::from_secs(5),
        "{}",
        env.fail("down without BFD before the hold time?")
    );
    env.silence(false);

    if kind == "frr" {
        // Graceful restart on (FRR and we send the N bit, RFC 8538): a BFD Down is then
        // what a hold timer expiry is, a restart of the peer: its routes stay as stale.
        env.wait("back up without BFD", Duration::from_secs(40), |e| {
            e.converged(false)
        });
        env.daemon
            .reload(&daemon_config(&bfd_line(300, auth), true))
            .unwrap();
        env.wait(
            "up with BFD and graceful restart",
            Duration::from_secs(40),
            |e| e.converged(true),
        );
        let t0 = Instant::now();
        env.silence(true);
        env.wait("BGP down after BFD down", BFD_DOWN_WITHIN, |e| {
            e.ours().is_ok_and(|(s, _)| s != "Established")
        });
        let down = t0.elapsed();
        std::thread::sleep(Duration::from_secs(2));
        let v = ctl_json(&env.rr, exe(), API, &["peers"]).unwrap();
        let p = v
            .as_array()
            .and_then(|a| a.iter().find(|p| p["address"] == PEER))
            .cloned()
            .unwrap_or_default();
        eprintln!(
            "{kind}: BFD Down with graceful restart: BGP down after {down:?}; 2 s later the \
             observer holds {} of {ROUTES} routes, graceful_restart_pending {}",
            env.observed(),
            p["graceful_restart_pending"]
        );
        assert_eq!(env.observed(), ROUTES, "{}", env.fail("stale routes kept"));
        assert_eq!(
            p["graceful_restart_pending"],
            true,
            "{}",
            env.fail("helper")
        );
        env.silence(false);
    }
}

/// With Keyed SHA1 (RFC 5880 §6.7.4) on both sides.
#[test]
fn bfd_with_bird2() {
    scenario("bird", ", password = \"s3cret\", key_id = 7");
}

/// Without authentication (FRR 8.4's bfdd has none).
#[test]
fn bfd_with_frr_bfdd() {
    scenario("frr", "");
}

// ------------------------------------------------------------------------ scale

fn bfd_load_tool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bfd-load"))
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// `n` BFD sessions at 300 ms x 3 to raw clients (`bfd-load`), held `hold` after all are
/// Up: every one comes up, none goes down, and the daemon's CPU over the hold is printed.
fn scale(n: u32, hold: u64) {
    require_root().unwrap();
    let work = WorkDir::new(&format!("bfd-scale-{n}")).unwrap();
    let rr = Netns::create("bfds-rr").unwrap();
    let cl = Netns::create("bfds-cl").unwrap();
    Link::new(&rr, &["10.80.0.1/24"], &cl, &["10.80.0.2/24"]).unwrap();
    // The clients' addresses: all of 10.81.0.0/16 is local on the clients' `lo`, routed to
    // them on our side (no ARP entry per client).
    cl.ip(&["addr", "add", "10.81.0.1/16", "dev", "lo"])
        .unwrap();
    rr.ip(&["route", "add", "10.81.0.0/16", "via", "10.80.0.2"])
        .unwrap();
    let first = Ipv4Addr::new(10, 81, 0, 10);
    let mut config = format!(
        "[speaker]\nasn = 64512\nrouter_id = \"10.80.0.1\"\nlisten = []\n\
         [api]\nlisten = \"{API}\"\n\
         [[peer_group]]\nname = \"nodes\"\nasn = 64512\npassive = true\n\
         bfd = {{ interval = 300, multiplier = 3 }}\n"
    );
    for i in 0..n {
        let a = Ipv4Addr::from(u32::from(first) + i);
        let _ = writeln!(config, "[[peer]]\naddress = \"{a}\"\ngroup = \"nodes\"");
    }
    let daemon = Daemon::start(&rr, work.path(), exe(), &config).unwrap();
    // The clients at a higher priority (nice -10): on a loaded machine it is the
    // daemon under test that should be the one to fall behind, not its load.
    let args: Vec<String> = [
        "-n",
        "-10",
        &bfd_load_tool().to_string_lossy(),
        "--peer",
        "10.80.0.1",
        "--first",
        &first.to_string(),
        "--count",
        &n.to_string(),
        "--up-within",
        "60",
        "--hold",
        &hold.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut load = cl
        .spawn(
            work.path(),
            "bfd-load",
            Path::new("/usr/bin/nice"),
            &args,
            &[],
            false,
        )
        .unwrap();
    // CPU over the hold: from when every session is Up at our side.
    let all_up = poll(Duration::from_secs(70), Duration::from_millis(200), || {
        let v = ctl_json(&rr, exe(), API, &["peers"]).ok()?;
        let up = v.as_array()?.iter().filter(|p| p["bfd"] == "up").count();
        (up == n as usize).then_some(())
    });
    assert!(
        all_up.is_some(),
        "not all {n} BFD sessions up\n{}",
        daemon.transcript(40)
    );
    let (cpu0, t0) = (cpu_seconds(daemon.pid()), Instant::now());
    let mark = daemon.log_mark();
    let status = load
        .wait_exit(Duration::from_secs(hold + 90))
        .expect("bfd-load did not finish");
    let (cpu1, t1) = (cpu_seconds(daemon.pid()), Instant::now());
    let out = fs::read_to_string(load.stdout_path()).unwrap_or_default();
    let report: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| {
        panic!(
            "bfd-load printed no JSON ({e}, {status}):\n{out}\n{}",
            interop_tests::tail(load.stderr_path(), 20)
        )
    });
    let cpu = (cpu1 - cpu0) / (t1 - t0).as_secs_f64() * 100.0;
    eprintln!(
        "{n} BFD sessions at 300 ms x 3: daemon CPU {cpu:.1}% of one core over {:.0} s; bfd-load: {report}",
        (t1 - t0).as_secs_f64()
    );
    let downs: Vec<String> = daemon
        .log_since(mark)
        .into_iter()
        .filter(|l| l.contains("BFD session state") && l.contains("to=Down"))
        .collect();
    assert!(downs.is_empty(), "false Down at our side: {downs:?}");
    assert_eq!(report["up"], n, "{report}");
    assert_eq!(report["downs_after_up"], 0, "{report}");
    assert!(report["all_up_ms"].is_u64(), "{report}");
    let v = ctl_json(&rr, exe(), API, &["peers"]).unwrap();
    let up = v
        .as_array()
        .map_or(0, |a| a.iter().filter(|p| p["bfd"] == "up").count());
    assert_eq!(up, n as usize);
}

/// 1,000 sessions held 20 s (66 detection times with no false Down), about 22 s in all;
/// `RR_TEST_BFD_HOLD_S=60` holds them the minute over which the issue reads the daemon's
/// CPU.
#[test]
fn bfd_1000_sessions_to_raw_clients() {
    let hold = std::env::var("RR_TEST_BFD_HOLD_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    scale(1000, hold);
}

/// A peer without BFD (BIRD 2, no `protocol bfd`): with `bfd = true` the BGP session comes
/// up all the same, BFD staying down; `strict = true` (by reload) takes it down and keeps
/// it down; `strict = false` lets it up again.
#[test]
fn bfd_strict_holds_bgp_for_a_peer_without_bfd() {
    require_root().unwrap();
    let work = WorkDir::new("bfd-strict").unwrap();
    let rr = Netns::create("bfdx-rr").unwrap();
    let far = Netns::create("bfdx-far").unwrap();
    Link::new(&rr, &[&format!("{RR}/24")], &far, &[&format!("{PEER}/24")]).unwrap();
    let bird = Bird::start_config(
        BirdVersion::V2,
        &far,
        work.path(),
        "far",
        "upstream",
        false,
        &format!(
            "router id {PEER};\nprotocol device {{ scan time 5; }}\n\
             protocol bgp upstream {{ local {PEER} as 64513; neighbor {RR} as 64512; \
             hold time 9; connect retry time 1; error wait time 1, 2; \
             ipv4 {{ import all; export none; }}; }}\n"
        ),
    )
    .unwrap();
    let config = |strict: bool| {
        format!(
            "[speaker]\nasn = 64512\nrouter_id = \"{RR}\"\nlisten = [\"{RR}:179\"]\n\
             connect_retry = 1\n[api]\nlisten = \"{API}\"\n\
             [[peer]]\naddress = \"{PEER}\"\nasn = 64513\nbfd = {{ strict = {strict} }}\n"
        )
    };
    let mut daemon = Daemon::start(&rr, work.path(), exe(), &config(false)).unwrap();
    let ours = || -> (String, Value) {
        let v = ctl_json(&rr, exe(), API, &["peers"]).unwrap_or_default();
        let p = v
            .as_array()
            .and_then(|a| a.first().cloned())
            .unwrap_or_default();
        (
            p["state"].as_str().unwrap_or_default().to_owned(),
            p["bfd"].clone(),
        )
    };
    let fail =
        |d: &Daemon, what: &str| format!("{what}\n{}\n{}", d.transcript(40), bird.log_tail(20));
    let up = poll(Duration::from_secs(30), Duration::from_millis(200), || {
        (ours().0 == "Established").then_some(())
    });
    assert!(
        up.is_some(),
        "{}",
        fail(&daemon, "not strict: BGP up without BFD")
    );
    assert_eq!(ours().1, "down", "{}", fail(&daemon, "BFD never up"));

    daemon.reload(&config(true)).unwrap();
    let down = poll(Duration::from_secs(10), Duration::from_millis(200), || {
        (ours().0 != "Established").then_some(())
    });
    assert!(
        down.is_some(),
        "{}",
        fail(&daemon, "strict: BGP taken down")
    );
    // BIRD keeps trying every second or two; the session stays down.
    std::thread::sleep(Duration::from_secs(5));
    let (state, _) = ours();
    assert_ne!(
        state,
        "Established",
        "{}",
        fail(&daemon, "strict: BGP stays down")
    );
    assert_ne!(bird.state().unwrap_or_default(), "Established");

    daemon.reload(&config(false)).unwrap();
    let up = poll(Duration::from_secs(30), Duration::from_millis(200), || {
        (ours().0 == "Established").then_some(())
    });
    assert!(
        up.is_some(),
        "{}",
        fail(&daemon, "strict off: BGP up again")
    );
}
