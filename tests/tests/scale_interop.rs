//! The reflector at real size: a 100,000-route table through it to BIRD 2, FRR and the
//! load tool's receivers, and 500 clients each announcing its own block.
//!
//! Table test topology: a hub namespace holding the reflector (our daemon, `192.0.2.1` on
//! the bridge, the load tool's sessions on the namespace's own loopback, `127.0.1.x`),
//! one BIRD 2 and one FRR client each in a namespace of its own on the bridge. Counts are
//! read from each peer's own table (`birdc show route count`, FRR's `pfxRcd`) and from the
//! load tool's per-prefix bitmaps, never from our API.
//!
//! Fabric test: the daemon and the load tool alone in one namespace; 500 configured,
//! active `[[peer]]`s that the reflector cannot reach (nothing listens at their
//! addresses), which connect to it themselves.
//!
//! Needs root and the peers (`tests/scripts/install-peers.sh`). `KEEP_WORK=1` keeps every
//! test's work dir; a failed test keeps it and prints where.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use interop_tests::{
    Bird, BirdVersion, ClientConfig, Daemon, Frr, Hub, Netns, Peer, Proc, WorkDir, ctl_json,
    load_args, poll, require_root,
};
use serde_json::Value;

const RR_AS: u32 = 65000;
const RR_ADDR: &str = "192.0.2.1";
const API: &str = "127.0.0.1:9179";
/// The injected table.
const PREFIXES: u64 = 100_000;
/// Bound on each bulk phase as seen by BIRD and FRR (ours takes about a second; the
/// clients' own processing is most of this).
const BULK_WITHIN: Duration = Duration::from_secs(180);
/// Bound on what the daemon adds to one control API call while the table is being
/// processed (beyond the same call's cost with the daemon idle).
const API_WITHIN: Duration = Duration::from_secs(1);
/// Fabric size: configured clients, each announcing one /26.
const FABRIC: usize = 500;

fn speaker() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

fn load_tool() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bgp-load"))
}

fn log(test: &str, started: Instant, what: &str) {
    eprintln!("[{test} +{:6.1}s] {what}", started.elapsed().as_secs_f64());
}

/// A client config for BIRD 2 or FRR: no routes of its own, imports everything.
fn client(name: &str, addr: &str) -> ClientConfig {
    ClientConfig {
        name: name.into(),
        router_id: addr.parse().expect("router id"),
        asn: RR_AS,
        addr: addr.parse().expect("address"),
        rr_addr: RR_ADDR.parse().expect("address"),
        rr_asn: RR_AS,
        hold: 30,
        keepalive: 10,
        connect_retry: 1,
        connect_delay: 1,
        passive: false,
        routes: Vec::new(),
    }
}

/// IPv4 routes in BIRD's table (`show route count`: "N of M routes for K networks").
fn bird_count(b: &Bird) -> Result<u64, String> {
    let out = b.birdc(&["show", "route", "count"])?;
    out.split_whitespace()
        .find_map(|w| w.parse().ok())
        .ok_or_else(|| format!("no count in `show route count`: {out}"))
}

/// Prefixes FRR accepted from the reflector (`pfxRcd` of `show bgp ipv4 unicast summary`).
fn frr_count(f: &Frr) -> Result<u64, String> {
    let v = f.vtysh_json("show bgp ipv4 unicast summary json")?;
    v["peers"][RR_ADDR]["pfxRcd"]
        .as_u64()
        .ok_or_else(|| format!("no pfxRcd for {RR_ADDR}: {v}"))
}

/// Waits until BIRD and FRR both hold `want` routes from the reflector; returns the time
/// each took, or what each held when the bound ran out.
fn await_counts(bird: &Bird, frr: &Frr, want: u64) -> Result<(f64, f64), String> {
    let t = Instant::now();
    let (mut b_at, mut f_at) = (None, None);
    let (mut b_last, mut f_last) = (String::new(), String::new());
    poll(BULK_WITHIN, Duration::from_millis(250), || {
        if b_at.is_none() {
            match bird_count(bird) {
                Ok(n) if n == want => b_at = Some(t.elapsed().as_secs_f64()),
                Ok(n) => b_last = n.to_string(),
                Err(e) => b_last = e,
            }
        }
        if f_at.is_none() {
            match frr_count(frr) {
                Ok(n) if n == want => f_at = Some(t.elapsed().as_secs_f64()),
                Ok(n) => f_last = n.to_string(),
                Err(e) => f_last = e,
            }
        }
        b_at.zip(f_at)
    })
    .ok_or_else(|| {
        format!(
            "after {BULK_WITHIN:?} (want {want}): BIRD 2 {}, FRR {}",
            b_at.map_or(b_last, |s| format!("done at {s:.1}s")),
            f_at.map_or(f_last, |s| format!("done at {s:.1}s")),
        )
    })
}

/// Reads the load tool's JSON report once it exited (at most `within`).
fn load_report(p: &mut Proc, within: Duration) -> Result<(Value, bool), String> {
    let status = p
        .wait_exit(within)
        .ok_or_else(|| format!("bgp-load still running after {within:?}"))?;
    let out = fs::read_to_string(p.stdout_path())
        .map_err(|e| format!("cannot read bgp-load's report: {e}"))?;
    let v = serde_json::from_str(&out)
        .map_err(|e| format!("bgp-load printed no JSON ({e}):\n{out}"))?;
    Ok((v, status.success()))
}

/// `bgp-load table` with the injector on 127.0.1.1, the whole table, a withdrawal that
/// waits for `pause` to exist, and `extra` (receivers and the like).
fn table_args(pause: &Path, extra: &[&str], timeout_s: u32) -> Vec<String> {
    // The next hop is on the hub's subnet.
    let mut args = load_args(
        "table",
        &[
            "--prefixes",
            &PREFIXES.to_string(),
            "--withdraw",
            "--pause-file",
            &pause.to_string_lossy(),
            "--timeout",
            &timeout_s.to_string(),
        ],
    );
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

fn table_config() -> String {
    let mut s = format!(
        "[speaker]\nasn = {RR_AS}\nrouter_id = \"{RR_ADDR}\"\nlisten = [\"0.0.0.0:179\"]\n\
         cluster_id = \"1.0.0.1\"\nconnect_retry = 1\n\n\
         [api]\nlisten = \"{API}\"\n\n\
         [[peer_group]]\nname = \"clients\"\nasn = {RR_AS}\nrr_client = true\n\
         next_hop_self = \"force\"\n\n\
         [[peer_group]]\nname = \"load\"\nasn = {RR_AS}\nrr_client = true\npassive = true\n"
    );
    for a in ["192.0.2.11", "192.0.2.13"] {
        let _ = write!(
            s,
            "\n[[peer]]\naddress = \"{a}\"\ngroup = \"clients\"\nsource_address = \"{RR_ADDR}\"\n"
        );
    }
    // Injector, two receivers, the late receiver.
    for i in 1..=4 {
        let _ = write!(
            s,
            "\n[[peer]]\naddress = \"127.0.1.{i}\"\ngroup = \"load\"\n"
        );
    }
    s
}

/// 100,000 prefixes from one client reach BIRD 2, FRR and two raw receivers exactly (each
/// counted in its own table), a receiver that comes late gets all of them and End-of-RIB,
/// a ROUTE-REFRESH while the withdrawals run loses none of them, and then everyone ends
/// with 0. The control API answers within a second all along. Then the table once more,
/// and its injector killed: BIRD 2 and FRR end with 0 again.
#[test]
fn table_100k_to_bird2_frr_and_raw() {
    const NAME: &str = "scale-table";
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let dir = WorkDir::new(NAME).unwrap_or_else(|e| panic!("{NAME}: {e}"));
    let hub = Hub::create("rr", &[&format!("{RR_ADDR}/24")]).unwrap_or_else(|e| panic!("{e}"));
    let b_ns = Netns::create("b2").unwrap_or_else(|e| panic!("{e}"));
    let f_ns = Netns::create("frr").unwrap_or_else(|e| panic!("{e}"));
    let _b_link = hub.attach(&b_ns, &["192.0.2.11/24"]).unwrap();
    let _f_link = hub.attach(&f_ns, &["192.0.2.13/24"]).unwrap();
    let bird = Bird::start_client(
        BirdVersion::V2,
        &b_ns,
        dir.path(),
        client("b2", "192.0.2.11"),
    )
    .unwrap_or_else(|e| panic!("BIRD 2: {e}"));
    let frr = Frr::start_client(&f_ns, dir.path(), client("frr", "192.0.2.13"))
        .unwrap_or_else(|e| panic!("FRR: {e}"));
    let mut daemon = Daemon::start(hub.ns(), dir.path(), speaker(), &table_config())
        .unwrap_or_else(|e| panic!("daemon: {e}"));
    let fail = |daemon: &Daemon, msg: String| -> ! {
        panic!(
            "{NAME}: {msg}\n{}\n--- BIRD 2 ---\n{}\n--- FRR ---\n{}\nwork dir: {}",
            daemon.transcript(60),
            bird.log_tail(20),
            frr.log_tail(20),
            dir.path().display()
        )
    };
    poll(Duration::from_secs(30), Duration::from_millis(100), || {
        (bird.state().ok()? == "Established" && frr.state().ok()? == "Established").then_some(())
    })
    .unwrap_or_else(|| fail(&daemon, "BIRD 2 and FRR not Established within 30 s".into()));
    log(NAME, started, "BIRD 2 and FRR Established");

    // What a `ctl status` costs with the daemon idle: starting `ctl` inside the namespace
    // is part of every call, and of no interest here.
    let mut idle = Duration::ZERO;
    for _ in 0..5 {
        let t = Instant::now();
        ctl_json(hub.ns(), speaker(), API, &["status"])
            .unwrap_or_else(|e| fail(&daemon, format!("ctl status: {e}")));
        idle = idle.max(t.elapsed());
    }

    let go = dir.path().join("withdraw-now");
    let args = table_args(
        &go,
        &["--receivers", "2", "--late-receiver", "--refresh"],
        400,
    );
    let mut tool = hub
        .ns()
        .spawn(dir.path(), "bgp-load", load_tool(), &args, &[], false)
        .unwrap_or_else(|e| fail(&daemon, format!("cannot start bgp-load: {e}")));

    // The control API stays responsive while the table goes through: `ctl status` in a
    // loop from the tool's start until BIRD and FRR hold the whole table.
    let done = AtomicBool::new(false);
    let (counted, api) = std::thread::scope(|s| {
        let api = s.spawn(|| {
            let (mut slowest, mut calls, mut failed) = (Duration::ZERO, 0, None);
            while !done.load(Ordering::Acquire) && calls < 10_000 {
                let t = Instant::now();
                if let Err(e) = ctl_json(hub.ns(), speaker(), API, &["status"]) {
                    failed = Some(e);
                }
                slowest = slowest.max(t.elapsed());
                calls += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            (slowest, calls, failed)
        });
        let counted = await_counts(&bird, &frr, PREFIXES);
        done.store(true, Ordering::Release);
        (counted, api.join().expect("ctl thread"))
    });
    let (b, f) = counted.unwrap_or_else(|e| fail(&daemon, format!("announce: {e}")));
    log(
        NAME,
        started,
        &format!("{PREFIXES} routes: BIRD 2 after {b:.1}s, FRR after {f:.1}s"),
    );
    let (slowest, calls, failed) = api;
    log(
        NAME,
        started,
        &format!("slowest of {calls} `ctl status` calls meanwhile: {slowest:?} ({idle:?} idle)"),
    );
    if let Some(e) = failed {
        fail(&daemon, format!("ctl status failed under load: {e}"));
    }
    // The daemon's share: what a call took beyond the slowest idle one.
    assert!(
        slowest.saturating_sub(idle) < API_WITHIN,
        "ctl status took {slowest:?} under load, {idle:?} idle"
    );
    let status = ctl_json(hub.ns(), speaker(), API, &["status"])
        .unwrap_or_else(|e| fail(&daemon, format!("ctl status: {e}")));
    log(NAME, started, &format!("status: {status}"));

    fs::write(&go, "").expect("pause file");
    let (b, f) =
        await_counts(&bird, &frr, 0).unwrap_or_else(|e| fail(&daemon, format!("withdraw: {e}")));
    log(
        NAME,
        started,
        &format!("withdrawn: BIRD 2 empty after {b:.1}s, FRR after {f:.1}s"),
    );

    let (report, ok) =
        load_report(&mut tool, Duration::from_secs(120)).unwrap_or_else(|e| fail(&daemon, e));
    log(NAME, started, &format!("bgp-load: {report}"));
    let receivers = report["announce"]["receivers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(ok, "bgp-load did not complete exactly: {report:#}");
    assert!(receivers.len() >= 2, "{report:#}");
    for r in &receivers {
        assert_eq!(r["count"].as_u64(), Some(PREFIXES), "{r}");
        assert_eq!(r["unexpected"].as_u64(), Some(0), "{r}");
        assert_eq!(r["end_of_rib"].as_bool(), Some(true), "{r}");
    }
    for r in report["withdraw"]["receivers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        assert_eq!(r["count"].as_u64(), Some(0), "{r}");
        assert_eq!(r["unexpected"].as_u64(), Some(0), "{r}");
    }
    assert_eq!(report["injector_received"].as_u64(), Some(0), "{report:#}");
    let late = &report["late_receiver"];
    assert_eq!(late["count"].as_u64(), Some(PREFIXES), "{late}");
    assert_eq!(
        late["end_of_rib_after_table"].as_bool(),
        Some(true),
        "{late}"
    );
    let refresh = &report["refresh"];
    assert_eq!(
        refresh["route_refresh_negotiated"].as_bool(),
        Some(true),
        "{refresh}"
    );
    assert_eq!(refresh["final_count"].as_u64(), Some(0), "{refresh}");

    // The table again, and then its injector dies (SIGKILL: no withdrawal, no Cease): the
    // reflector withdraws all 100,000 routes from every client because the peer is gone.
    let never = dir.path().join("never");
    let args = table_args(&never, &["--receivers", "1"], 300);
    let mut tool = hub
        .ns()
        .spawn(dir.path(), "bgp-load-2", load_tool(), &args, &[], false)
        .unwrap_or_else(|e| fail(&daemon, format!("cannot start bgp-load: {e}")));
    let (b, f) = await_counts(&bird, &frr, PREFIXES)
        .unwrap_or_else(|e| fail(&daemon, format!("announce again: {e}")));
    log(
        NAME,
        started,
        &format!("{PREFIXES} routes again: BIRD 2 after {b:.1}s, FRR after {f:.1}s"),
    );
    tool.signal("KILL").unwrap_or_else(|e| fail(&daemon, e));
    let _ = tool.wait_exit(Duration::from_secs(10));
    let (b, f) = await_counts(&bird, &frr, 0)
        .unwrap_or_else(|e| fail(&daemon, format!("after the injector died: {e}")));
    log(
        NAME,
        started,
        &format!("injector killed: BIRD 2 empty after {b:.1}s, FRR after {f:.1}s"),
    );
    assert!(daemon.is_running(), "the daemon exited");
    daemon
        .terminate(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    log(NAME, started, "done");
}

fn fabric_config() -> String {
    let mut s = format!(
        "[speaker]\nasn = {RR_AS}\nrouter_id = \"{RR_ADDR}\"\nlisten = [\"127.0.0.1:179\"]\n\
         cluster_id = \"1.0.0.1\"\nconnect_retry = 1\n\n\
         [api]\nlisten = \"{API}\"\n\n\
         [[peer_group]]\nname = \"nodes\"\nasn = {RR_AS}\nrr_client = true\n"
    );
    let first = u32::from(std::net::Ipv4Addr::new(127, 0, 1, 1));
    for i in 0..FABRIC as u32 {
        let a = std::net::Ipv4Addr::from(first + i);
        let _ = write!(s, "\n[[peer]]\naddress = \"{a}\"\ngroup = \"nodes\"\n");
    }
    s
}

/// 500 configured clients, started after the reflector, which has already tried (and
/// failed) to connect to each: every one is taken at once and ends with the 499 others'
/// blocks; one that sends a Cease and reconnects at once is Established again in under a
/// second, and every other client has its block again (or held it throughout).
#[test]
fn fabric_500_clients_and_a_flap() {
    const NAME: &str = "scale-fabric";
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let dir = WorkDir::new(NAME).unwrap_or_else(|e| panic!("{NAME}: {e}"));
    let ns = Netns::create("fabric").unwrap_or_else(|e| panic!("{e}"));
    let daemon = Daemon::start(&ns, dir.path(), speaker(), &fabric_config())
        .unwrap_or_else(|e| panic!("daemon: {e}"));
    // Let every outbound attempt fail first (nothing listens at the clients' addresses).
    std::thread::sleep(Duration::from_secs(2));
    let peers = ctl_json(&ns, speaker(), API, &["peers"]).unwrap_or_else(|e| panic!("{e}"));
    let refused = peers
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("refused"))
        })
        .count();
    log(
        NAME,
        started,
        &format!("{refused} of {FABRIC} outbound connects refused"),
    );
    assert!(
        refused > FABRIC / 2,
        "the reflector did not try to connect: {peers}"
    );

    let args = load_args(
        "fabric",
        &[
            "--clients",
            &FABRIC.to_string(),
            "--flap",
            "--timeout",
            "120",
        ],
    );
    let mut tool = ns
        .spawn(dir.path(), "bgp-load", load_tool(), &args, &[], false)
        .unwrap_or_else(|e| panic!("cannot start bgp-load: {e}"));
    let (report, ok) = load_report(&mut tool, Duration::from_secs(150)).unwrap_or_else(|e| {
        panic!(
            "{e}\n{}\nwork dir: {}",
            daemon.transcript(40),
            dir.path().display()
        )
    });
    log(NAME, started, &format!("bgp-load: {report}"));
    assert!(
        ok,
        "bgp-load did not complete exactly: {report:#}\n{}",
        daemon.transcript(40)
    );
    assert_eq!(
        report["incomplete"].as_array().map(Vec::len),
        Some(0),
        "{report:#}"
    );
    assert_eq!(report["unexpected"].as_u64(), Some(0), "{report:#}");
    let flap = &report["flap"];
    let back = flap["reestablished_s"]
        .as_f64()
        .expect("flap.reestablished_s");
    assert!(
        back < 1.0,
        "the flapped client took {back} s to come back: {flap}"
    );
    // Either every other client was sent the block again, or (the reflector coalesces
    // export for a few milliseconds) the withdrawal and the announcement met before they
    // went out, and every other client held the block throughout.
    let unchanged = flap["unchanged"].as_u64().unwrap_or(0);
    assert!(
        flap["all_updated_s"].as_f64().is_some() || unchanged == FABRIC as u64 - 1,
        "{flap}"
    );
    log(NAME, started, "done");
}
