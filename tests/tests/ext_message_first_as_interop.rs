//! Extended messages (RFC 8654) and the first AS of eBGP paths (RFC 4271 §6.3) against
//! BIRD 2 and FRR.
//!
//! Topology: a hub namespace holding our daemon (192.0.2.1 on the bridge), three BIRD 2
//! in AS 65002 (one session each, each in a namespace of its own), and FRR, an iBGP
//! route-reflector client (192.0.2.11) that learns everything our daemon accepts.
//!
//! - `plain` (192.0.2.12): a normal eBGP session with extended messages on; it announces
//!   10,000 /24s under one attribute set and 198.51.102.0/24, all with AS_PATH 65002.
//! - `rs1` (192.0.2.13): BIRD is a route server towards us (`rs client`): it does not put
//!   its AS in the path, so 198.51.100.0/24 arrives with an empty AS_PATH, which the
//!   first-AS check treats as withdrawn (our default).
//! - `rs2` (192.0.2.14): the same towards a peer configured `enforce_first_as = false`:
//!   198.51.101.0/24 is accepted.
//!
//! Asserted at FRR (what it holds, its session's capabilities and message counters):
//! extended messages are advertised and received on its session; it holds the 10,000
//! /24s, 198.51.101.0/24 and 198.51.102.0/24 and not 198.51.100.0/24; and the 10,000
//! /24s reached it in UPDATEs larger than 4096 bytes (fewer UPDATEs than a
//! standard-sized encoding needs: 4096 bytes carry about a thousand of them). BIRD's sessions stay up
//! (treat-as-withdraw sends no NOTIFICATION) and BIRD sees extended messages
//! negotiated on `plain`.
//!
//! Needs root, BIRD 2 and FRR (`tests/scripts/install-peers.sh`). `KEEP_WORK=1` keeps the
//! work dir; a failed test keeps it and prints where.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use interop_tests::{
    Bird, BirdVersion, Daemon, Frr, Hub, Netns, WorkDir, ctl_route, poll_ok, require_root,
};

const RR: &str = "192.0.2.1";
const FRR_ADDR: &str = "192.0.2.11";
const PLAIN: &str = "192.0.2.12";
const RS1: &str = "192.0.2.13";
const RS2: &str = "192.0.2.14";
const API: &str = "127.0.0.1:9179";
/// The bulk of `plain`'s routes: 10.0.0.0/24 on, one attribute set.
const BULK: u32 = 10_000;
const P_RS1: &str = "198.51.100.0/24";
const P_RS2: &str = "198.51.101.0/24";
const P_PLAIN: &str = "198.51.102.0/24";
const WITHIN: Duration = Duration::from_secs(60);

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

fn bulk(i: u32) -> String {
    format!("10.{}.{}.0/24", i / 256, i % 256)
}

fn rr_config() -> String {
    format!(
        "[speaker]\nasn = 65000\nrouter_id = \"{RR}\"\nlisten = [\"{RR}:179\"]\n\
         hold_time = 9\nconnect_retry = 1\n\n\
         [api]\nlisten = \"{API}\"\n\n\
         [[peer_group]]\nname = \"bird\"\nasn = 65002\nimport = \"all\"\npassive = true\n\n\
         [[peer]]\naddress = \"{PLAIN}\"\ngroup = \"bird\"\n\n\
         [[peer]]\naddress = \"{RS1}\"\ngroup = \"bird\"\n\n\
         [[peer]]\naddress = \"{RS2}\"\ngroup = \"bird\"\nenforce_first_as = false\n\n\
         [[peer]]\naddress = \"{FRR_ADDR}\"\nasn = 65000\nrr_client = true\n"
    )
}

/// One BIRD 2 in AS 65002 with one session `name` from `local` (a route server towards
/// us with `rs`), announcing `routes` with next hop 192.0.2.99.
fn bird_config(name: &str, local: &str, rs: bool, routes: &[String]) -> String {
    let mut s = format!(
        "router id {local};\nprotocol device {{}}\n\nprotocol static announced {{\n ipv4;\n"
    );
    for r in routes {
        let _ = writeln!(s, " route {r} blackhole;");
    }
    let _ = write!(
        s,
        "}}\nprotocol bgp {name} {{\n local {local} as 65002;\n neighbor {RR} as 65000;\n \
         hold time 9;\n connect retry time 1;\n enable extended messages on;\n{}\
         ipv4 {{ import none; export filter {{ bgp_next_hop = 192.0.2.99; accept; }}; }};\n}}\n",
        if rs { " rs client;\n " } else { " " }
    );
    s
}

fn frr_config() -> String {
    format!(
        "router bgp 65000\n\
         \x20bgp router-id {FRR_ADDR}\n\
         \x20no bgp ebgp-requires-policy\n\
         \x20no bgp network import-check\n\
         \x20timers bgp 3 9\n\
         \x20neighbor {RR} remote-as 65000\n\
         \x20neighbor {RR} timers connect 1\n\
         \x20neighbor {RR} update-source {FRR_ADDR}\n\
         \x20address-family ipv4 unicast\n\
         \x20 neighbor {RR} activate\n\
         \x20exit-address-family\n!\n"
    )
}

#[test]
fn extended_messages_and_first_as_with_bird2_and_frr() {
    const NAME: &str = "extmsg-first-as";
    require_root().unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let log = |what: &str| eprintln!("[{NAME} +{:5.1}s] {what}", started.elapsed().as_secs_f64());
    let dir = WorkDir::new(NAME).unwrap_or_else(|e| panic!("{e}"));
    let hub = Hub::create("rr", &[&format!("{RR}/24")]).unwrap_or_else(|e| panic!("{e}"));
    // One BIRD per session, each in a namespace of its own.
    let mut bird_ns = Vec::new();
    for (role, addr) in [("plain", PLAIN), ("rs1", RS1), ("rs2", RS2)] {
        let ns = Netns::create(role).unwrap_or_else(|e| panic!("{e}"));
        hub.attach(&ns, &[&format!("{addr}/24")])
            .unwrap_or_else(|e| panic!("{e}"));
        bird_ns.push(ns);
    }
    let frr_ns = Netns::create("frr").unwrap_or_else(|e| panic!("{e}"));
    hub.attach(&frr_ns, &[&format!("{FRR_ADDR}/24")])
        .unwrap_or_else(|e| panic!("{e}"));
    let daemon = Daemon::start(hub.ns(), dir.path(), exe(), &rr_config())
        .unwrap_or_else(|e| panic!("daemon: {e}"));
    let frr = Frr::start_config(
        &frr_ns,
        dir.path(),
        "client",
        RR.parse().unwrap(),
        FRR_ADDR.parse().unwrap(),
        &frr_config(),
    )
    .unwrap_or_else(|e| panic!("FRR: {e}"));
    let mut plain_routes: Vec<String> = (0..BULK).map(bulk).collect();
    plain_routes.push(P_PLAIN.to_owned());
    let sessions = [
        ("plain", PLAIN, false, plain_routes),
        ("rs1", RS1, true, vec![P_RS1.to_owned()]),
        ("rs2", RS2, true, vec![P_RS2.to_owned()]),
    ];
    let birds: Vec<Bird> = sessions
        .iter()
        .zip(&bird_ns)
        .map(|((name, local, rs, routes), ns)| {
            Bird::start_config(
                BirdVersion::V2,
                ns,
                dir.path(),
                name,
                name,
                false,
                &bird_config(name, local, *rs, routes),
            )
            .unwrap_or_else(|e| panic!("BIRD {name}: {e}"))
        })
        .collect();
    let bird = &birds[0];
    let fail = |msg: String| -> ! {
        let n = frr
            .vtysh(&format!("show bgp neighbors {RR}"))
            .unwrap_or_default();
        let b = bird
            .birdc(&["show", "protocols", "all"])
            .unwrap_or_default();
        panic!(
            "{msg}\n--- FRR ---\n{n}\n--- BIRD ---\n{b}\n{}\nwork dir: {}",
            daemon.transcript(40),
            dir.path().display()
        );
    };

    // Every session up.
    let up = poll_ok(WITHIN, Duration::from_millis(250), || {
        for (b, p) in birds.iter().zip(["plain", "rs1", "rs2"]) {
            let s = b.protocol_state(p)?;
            if s != "Established" {
                return Err(format!("BIRD {p}: {s}"));
            }
        }
        match frr.neighbor_state(RR.parse().unwrap())?.as_str() {
            "Established" => Ok(()),
            s => Err(format!("FRR: {s}")),
        }
    });
    if let Err(e) = up {
        fail(format!("sessions not up within {WITHIN:?}: {e}"));
    }
    log("sessions up");

    // FRR holds what it must, exactly.
    let want = BULK as usize + 2;
    let held = poll_ok(WITHIN, Duration::from_millis(500), || {
        let t = frr.table_prefixes(false)?;
        if t.len() == want && t.iter().any(|p| p == P_RS2) && t.iter().any(|p| p == P_PLAIN) {
            Ok(())
        } else {
            Err(format!("FRR holds {} prefixes (want {want})", t.len()))
        }
    });
    let took = held.unwrap_or_else(|e| fail(format!("FRR's table: {e}")));
    log(&format!("FRR holds {want} prefixes after {took:?}"));
    // The route server's route without its AS: treated as withdrawn, never reflected.
    std::thread::sleep(Duration::from_secs(2));
    let t = frr.table_prefixes(false).unwrap_or_else(|e| fail(e));
    if t.iter().any(|p| p == P_RS1) || t.len() != want {
        fail(format!("FRR holds {P_RS1} or a wrong count ({})", t.len()));
    }
    for i in [0, 1234, BULK - 1] {
        if !t.contains(&bulk(i)) {
            fail(format!("FRR lacks {}", bulk(i)));
        }
    }
    let ours = ctl_route(hub.ns(), exe(), API, P_RS1).unwrap_or_else(|e| fail(e));
    log(&format!("our RIB for {P_RS1}: {ours:?}"));
    if let Some(r) = &ours {
        let best = r["paths"][0]["status"].as_str().unwrap_or("");
        if best == "best" {
            fail(format!("{P_RS1} is a best path in our RIB: {r}"));
        }
    }
    // BIRD's sessions stayed up: treat-as-withdraw, no NOTIFICATION.
    for (b, p) in birds.iter().zip(["plain", "rs1", "rs2"]) {
        match b.protocol_state(p) {
            Ok(s) if s == "Established" => {}
            other => fail(format!("BIRD {p} after the routes: {other:?}")),
        }
    }

    // Extended messages: negotiated with FRR, used for the bulk.
    let n = frr.neighbor_json().unwrap_or_else(|e| fail(e));
    let ext = n["neighborCapabilities"]["extendedMessage"].clone();
    let updates = n["messageStats"]["updatesRecv"]
        .as_u64()
        .unwrap_or(u64::MAX);
    log(&format!(
        "FRR: extendedMessage {ext}, {updates} UPDATEs received for {} prefixes",
        t.len()
    ));
    if ext != "advertisedAndReceived" {
        fail(format!("FRR's extendedMessage capability: {ext}"));
    }
    // 10,001 /24s under one attribute set (the bulk and 198.51.102.0/24) need at least
    // 10 UPDATEs of 4096 bytes (about 1,010 /24s each), plus one for 198.51.101.0/24 and
    // End-of-RIB: fewer than 12 means larger UPDATEs were sent. (Our export visits at
    // most 2,048 prefixes per turn of the core, so the bulk comes in UPDATEs of about
    // 8 KB, not one of 40 KB.)
    if updates >= 12 {
        fail(format!(
            "FRR received {updates} UPDATEs: not packed into extended messages"
        ));
    }
    let shown = bird
        .birdc(&["show", "protocols", "all", "plain"])
        .unwrap_or_default();
    let bird_ext = shown
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("extended message"))
        .count();
    log(&format!(
        "BIRD `plain` lists extended message {bird_ext} times (local and neighbor caps)"
    ));
    if bird_ext < 2 {
        fail(format!(
            "BIRD does not show extended messages on both sides:\n{shown}"
        ));
    }
    log("done");
}
