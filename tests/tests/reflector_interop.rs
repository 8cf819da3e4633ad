//! Our daemon (`speaker --config FILE`) as a route reflector for real clients: BIRD 2,
//! BIRD 1.6 (what Calico ships) and FRR 8.4, all iBGP in AS 65000.
//!
//! Topology of every test: a hub namespace (the reflector) holding a bridge `br0` with
//! 192.0.2.1/24 or 2001:db8::1/64, and one namespace per client joined to the bridge by a
//! veth, so all clients share one subnet and a reflected next hop (the originator's
//! address) is on-link everywhere. Hold time 3 s; the clients are started before the
//! daemon, which connects to them at once.
//!
//! What is asserted is seen from the clients (`birdc show route all`, `show protocols all`;
//! FRR `show bgp ... json`) and in the daemon's log; the daemon has no control API yet.
//!
//! Needs root and the peers: `sudo tests/scripts/install-peers.sh` (BIRD 1.6 is found
//! through `BIRD16_DIR`, default `target/peers/bird16`). `KEEP_WORK=1` keeps every test's
//! work dir (configs, logs); a failed test always keeps it and prints where.

use std::collections::BTreeMap;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use interop_tests::{
    Bird, BirdVersion, Client, ClientConfig, ClientRoute, Daemon, Frr, Hub, Learned, Netns,
    WorkDir, poll, require_root, run_capture, same_since,
};

const RR_AS: u32 = 65000;
const RR_ID: &str = "192.0.2.1";
const CLUSTER_ID: &str = "1.0.0.1";
const HOLD: u16 = 3;
/// Sessions up, counted from the daemon's start.
const UP_WITHIN: Duration = Duration::from_secs(20);
/// Every client has every other client's routes, counted from all sessions up.
const CONVERGED_WITHIN: Duration = Duration::from_secs(15);
/// A withdrawal reaches the other clients.
const WITHDRAWN_WITHIN: Duration = Duration::from_secs(5);
/// BIRD clients wait this long before they connect (BIRD's own default): the daemon,
/// started right after them, connects first. When both sides connect at the same moment,
/// the collision can cost a session the daemon's idle hold (5 s; seen with BIRD 1.6).
const DEFAULT_CONNECT_DELAY: u16 = 5;
/// The communication of the daemon's Cease on SIGTERM.
const SHUTDOWN_MESSAGE: &str = "rr-daemon shutting down";

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_speaker"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bird2,
    Bird16,
    Frr,
}

/// One client: what it is, its address on the hub's subnet (also its router id for an
/// IPv4 session) and what it originates.
struct Spec {
    kind: Kind,
    name: &'static str,
    addr: &'static str,
    router_id: &'static str,
    routes: Vec<ClientRoute>,
    connect_delay: u16,
}

impl Spec {
    fn new(kind: Kind, name: &'static str, addr: &'static str, router_id: &'static str) -> Self {
        Self {
            kind,
            name,
            addr,
            router_id,
            routes: Vec::new(),
            connect_delay: DEFAULT_CONNECT_DELAY,
        }
    }

    fn connect_delay(mut self, seconds: u16) -> Self {
        self.connect_delay = seconds;
        self
    }

    fn routes(mut self, routes: Vec<ClientRoute>) -> Self {
        self.routes = routes;
        self
    }
}

/// One test's world. Fields drop in order: the daemon, the clients, their namespaces,
/// the hub, then the work dir (kept when the test failed).
struct World {
    daemon: Option<Daemon>,
    clients: Vec<Box<dyn Client>>,
    client_ns: Vec<Netns>,
    hub: Hub,
    dir: WorkDir,
    name: &'static str,
    /// The reflector's address on the hub (the clients' neighbor).
    rr_addr: &'static str,
    prefix_len: u8,
    started: Instant,
}

impl World {
    /// The hub namespace with the reflector's address `rr_addr/prefix_len` on its bridge.
    fn new(name: &'static str, rr_addr: &'static str, prefix_len: u8) -> Self {
        require_root().unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        let dir = WorkDir::new(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let hub = Hub::create("rr", &[&format!("{rr_addr}/{prefix_len}")])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        Self {
            daemon: None,
            clients: Vec::new(),
            client_ns: Vec::new(),
            hub,
            dir,
            name,
            rr_addr,
            prefix_len,
            started,
        }
    }

    /// Starts a client in its own namespace on the hub; returns its index.
    fn add_client(&mut self, spec: Spec) -> usize {
        let ns = Netns::create(spec.name).unwrap_or_else(|e| self.fail(&e));
        self.hub
            .attach(&ns, &[&format!("{}/{}", spec.addr, self.prefix_len)])
            .unwrap_or_else(|e| self.fail(&e));
        let cfg = ClientConfig {
            name: spec.name.into(),
            router_id: spec.router_id.parse().expect("router id"),
            asn: RR_AS,
            addr: spec.addr.parse().expect("address"),
            rr_addr: self.rr_addr.parse().expect("address"),
            rr_asn: RR_AS,
            hold: HOLD,
            keepalive: 1,
            connect_retry: 1,
            connect_delay: spec.connect_delay,
            passive: false,
            routes: spec.routes,
        };
        let dir = self.dir.path();
        let client: Result<Box<dyn Client>, String> = match spec.kind {
            Kind::Bird2 => Bird::start_client(BirdVersion::V2, &ns, dir, cfg)
                .map(|b| Box::new(b) as Box<dyn Client>),
            Kind::Bird16 => Bird::start_client(BirdVersion::V16, &ns, dir, cfg)
                .map(|b| Box::new(b) as Box<dyn Client>),
            Kind::Frr => Frr::start_client(&ns, dir, cfg).map(|f| Box::new(f) as Box<dyn Client>),
        };
        let client = client.unwrap_or_else(|e| {
            self.fail(&format!(
                "cannot start the {:?} client {}: {e}",
                spec.kind, spec.name
            ))
        });
        self.log(&format!(
            "{} {} started at {}",
            client.kind(),
            spec.name,
            spec.addr
        ));
        self.client_ns.push(ns);
        self.clients.push(client);
        self.clients.len() - 1
    }

    fn start_daemon(&mut self, config: &str) {
        let d = Daemon::start(self.hub.ns(), self.dir.path(), exe(), config)
            .unwrap_or_else(|e| self.fail(&format!("cannot start the daemon: {e}")));
        self.log(&format!("daemon started (pid {})", d.pid()));
        self.daemon = Some(d);
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("daemon started")
    }

    fn daemon_mut(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("daemon started")
    }

    fn client(&self, i: usize) -> &dyn Client {
        self.clients[i].as_ref()
    }

    fn label(&self, i: usize) -> String {
        format!(
            "{} {}",
            self.clients[i].kind(),
            self.clients[i].client().name
        )
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
        let mut s = format!("{}: {msg}\n", self.name);
        match &self.daemon {
            Some(d) => s.push_str(&d.transcript(80)),
            None => s.push_str("(daemon not started)"),
        }
        for c in &self.clients {
            let details = c.details().unwrap_or_else(|e| format!("(no details: {e})"));
            s.push_str(&format!(
                "\n--- {} {} session ---\n{details}\n{}",
                c.kind(),
                c.client().name,
                c.log_tail(30)
            ));
        }
        s.push_str(&format!("\nwork dir: {}", self.dir.path().display()));
        panic!("{s}");
    }

    /// Waits until each client in `which` reports its session Established.
    fn expect_established(&self, which: &[usize], timeout: Duration) {
        let t = Instant::now();
        for &i in which {
            let mut last = String::new();
            let left = timeout.saturating_sub(t.elapsed());
            let up = poll(left, Duration::from_millis(100), || {
                match self.client(i).state() {
                    Ok(s) if s == "Established" => return Some(()),
                    Ok(s) => last = s,
                    Err(e) => last = e,
                }
                None
            });
            if up.is_none() {
                self.fail(&format!(
                    "{} not Established within {timeout:?}: {last}",
                    self.label(i)
                ));
            }
        }
        self.log(&format!(
            "{} Established after {:.1}s",
            which
                .iter()
                .map(|&i| self.label(i))
                .collect::<Vec<_>>()
                .join(", "),
            t.elapsed().as_secs_f64()
        ));
    }

    /// What client `i` must have learned when `members` are the reflector's clients and
    /// `withdrawn` prefixes are gone: every other member's routes, reflected (ORIGINATOR_ID
    /// the originator's router id, CLUSTER_LIST our cluster id, next hop, LOCAL_PREF and
    /// community as sent), and none of its own.
    fn expected_at(&self, i: usize, members: &[usize], withdrawn: &[&str]) -> Vec<Learned> {
        let mut want = Vec::new();
        for &j in members.iter().filter(|&&j| j != i) {
            let c = self.client(j).client();
            for r in c
                .routes
                .iter()
                .filter(|r| !withdrawn.contains(&r.prefix.as_str()))
            {
                want.push(Learned {
                    prefix: r.prefix.clone(),
                    next_hops: vec![c.addr.to_string()],
                    local_pref: Some(r.local_pref.unwrap_or(100)),
                    communities: r.community_text().into_iter().collect(),
                    originator_id: Some(c.router_id.to_string()),
                    cluster_list: vec![CLUSTER_ID.to_owned()],
                    as_path: String::new(),
                });
            }
        }
        want.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        want
    }

    /// The differences between what client `i` learned and what it should have.
    fn mismatches(&self, i: usize, want: &[Learned]) -> Vec<String> {
        let got = match self.client(i).learned() {
            Ok(g) => g,
            Err(e) => return vec![format!("{}: cannot read its routes: {e}", self.label(i))],
        };
        let mut by_prefix: BTreeMap<&str, Vec<&Learned>> = BTreeMap::new();
        for g in &got {
            by_prefix.entry(g.prefix.as_str()).or_default().push(g);
        }
        let mut out = Vec::new();
        for w in want {
            match by_prefix.remove(w.prefix.as_str()).as_deref() {
                None | Some([]) => out.push(format!("{}: missing {}", self.label(i), w.prefix)),
                Some([g]) => {
                    // The global next hop first; nothing else may differ.
                    let mut g = (*g).clone();
                    g.next_hops.truncate(1);
                    if g != *w {
                        out.push(format!(
                            "{}: {} is\n    {g:?}\n  want\n    {w:?}",
                            self.label(i),
                            w.prefix
                        ));
                    }
                }
                Some(many) => out.push(format!(
                    "{}: {} paths for {}: {many:?}",
                    self.label(i),
                    many.len(),
                    w.prefix
                )),
            }
        }
        for (p, g) in by_prefix {
            out.push(format!("{}: unexpected route {p}: {g:?}", self.label(i)));
        }
        out
    }

    /// Waits until every member has learned exactly what [`World::expected_at`] says.
    fn expect_reflected(&self, members: &[usize], withdrawn: &[&str], timeout: Duration) {
        let t = Instant::now();
        let wants: Vec<Vec<Learned>> = members
            .iter()
            .map(|&i| self.expected_at(i, members, withdrawn))
            .collect();
        let mut last = Vec::new();
        let done = poll(timeout, Duration::from_millis(100), || {
            last = members
                .iter()
                .zip(&wants)
                .flat_map(|(&i, w)| self.mismatches(i, w))
                .collect();
            last.is_empty().then_some(())
        });
        if done.is_none() {
            self.fail(&format!(
                "not reflected as expected within {timeout:?}:\n  {}",
                last.join("\n  ")
            ));
        }
        let n: usize = wants.iter().map(Vec::len).sum();
        self.log(&format!(
            "{n} reflected routes as expected at {} clients after {:.1}s",
            members.len(),
            t.elapsed().as_secs_f64()
        ));
    }

    /// No member got one of its own routes back.
    fn expect_no_echo(&self, members: &[usize]) {
        for &i in members {
            match self.client(i).own_routes_echoed() {
                Ok(None) => {}
                Ok(Some(evidence)) => self.fail(&format!("own routes sent back: {evidence}")),
                Err(e) => self.fail(&format!("{}: {e}", self.label(i))),
            }
        }
        self.log("no client got its own routes back");
    }

    /// SIGTERM: exit 0, and every client in `which` records our Cease with its message.
    fn expect_clean_stop(&mut self, which: &[usize]) {
        let st = self
            .daemon_mut()
            .terminate(Duration::from_secs(10))
            .unwrap_or_else(|e| self.fail(&e));
        if !st.success() {
            self.fail(&format!("the daemon exited with {st} on SIGTERM"));
        }
        for &i in which {
            let mut last = Ok(None);
            let _ = poll(Duration::from_secs(10), Duration::from_millis(100), || {
                last = self.client(i).received_admin_shutdown();
                matches!(&last, Ok(Some(_))).then_some(())
            });
            match last {
                Ok(Some(m)) if m == SHUTDOWN_MESSAGE => {}
                other => self.fail(&format!(
                    "{}: no Cease/Administrative Shutdown {SHUTDOWN_MESSAGE:?} recorded: \
                     {other:?}",
                    self.label(i)
                )),
            }
        }
        self.log(&format!(
            "SIGTERM: exit 0, {} clients got Cease {SHUTDOWN_MESSAGE:?}",
            which.len()
        ));
    }

    /// Log lines of the daemon that mention `peer=ADDR` and contain `what`.
    fn daemon_lines(&self, addr: &str, what: &str) -> Vec<String> {
        let tag = format!("peer={addr} ");
        self.daemon()
            .log()
            .lines()
            .filter(|l| {
                l.contains(what) && (l.contains(&tag) || l.ends_with(&tag[..tag.len() - 1]))
            })
            .map(str::to_owned)
            .collect()
    }
}

// ------------------------------------------------------------------------------ configs

/// `[speaker]` of the reflector, and the `clients` group every peer or range uses. A
/// stop is one for good (`graceful_stop = false`): the clients get our Cease (SIGTERM is a
/// planned restart otherwise, see failure_interop.rs).
fn speaker_config(listen: &str, families: &str) -> String {
    format!(
        "[speaker]\n\
         asn = {RR_AS}\n\
         router_id = \"{RR_ID}\"\n\
         listen = [\"{listen}\"]\n\
         cluster_id = \"{CLUSTER_ID}\"\n\
         hold_time = {HOLD}\n\
         connect_retry = 1\n\
         graceful_stop = false\n\
         \n\
         [[peer_group]]\n\
         name = \"clients\"\n\
         asn = {RR_AS}\n\
         rr_client = true\n\
         families = [\"{families}\"]\n"
    )
}

/// A `[[peer]]` in the `clients` group, connecting from `source`.
fn peer_config(addr: &str, source: &str) -> String {
    format!(
        "\n[[peer]]\naddress = \"{addr}\"\ngroup = \"clients\"\nsource_address = \"{source}\"\n"
    )
}

fn v4_clients_config(addrs: &[&str]) -> String {
    let mut s = speaker_config(&format!("{RR_ID}:179"), "ipv4-unicast");
    for a in addrs {
        s.push_str(&peer_config(a, RR_ID));
    }
    s
}

// ------------------------------------------------------------------------------ tests

/// BIRD 2, BIRD 1.6 and FRR as clients: each learns the others' routes reflected with
/// their attributes intact and never its own; withdrawals reach the others; SIGTERM sends
/// every client a Cease with the shutdown message.
#[test]
fn reflector_bird2_bird16_frr() {
    let mut w = World::new("rr-three", RR_ID, 24);
    let members = [
        w.add_client(
            Spec::new(Kind::Bird2, "b2", "192.0.2.11", "192.0.2.11").routes(vec![
                ClientRoute::plain("198.51.100.0/26"),
                ClientRoute::tagged("198.51.100.64/26", (65000, 11), 210),
            ]),
        ),
        w.add_client(
            Spec::new(Kind::Bird16, "b16", "192.0.2.12", "192.0.2.12").routes(vec![
                ClientRoute::plain("198.51.100.128/26"),
                ClientRoute::tagged("198.51.100.192/26", (65000, 12), 220),
            ]),
        ),
        w.add_client(
            Spec::new(Kind::Frr, "frr", "192.0.2.13", "192.0.2.13").routes(vec![
                ClientRoute::plain("203.0.113.0/26"),
                ClientRoute::tagged("203.0.113.64/26", (65000, 13), 230),
            ]),
        ),
    ];
    w.start_daemon(&v4_clients_config(&[
        "192.0.2.11",
        "192.0.2.12",
        "192.0.2.13",
    ]));
    w.expect_established(&members, UP_WITHIN);
    w.expect_reflected(&members, &[], CONVERGED_WITHIN);
    w.expect_no_echo(&members);

    // One prefix withdrawn at each client (BIRD: reconfigured without it; FRR: no network).
    let gone = ["198.51.100.0/26", "198.51.100.128/26", "203.0.113.0/26"];
    for (&i, p) in members.iter().zip(gone) {
        w.clients[i]
            .withdraw(p)
            .unwrap_or_else(|e| w.fail(&format!("cannot withdraw {p}: {e}")));
    }
    w.log(&format!("withdrawn at their originators: {gone:?}"));
    w.expect_reflected(&members, &gone, WITHDRAWN_WITHIN);

    w.expect_clean_stop(&members);
    w.log("done");
}

/// The same over IPv6 sessions with IPv6 routes: BIRD 2, BIRD 1.6 (`bird6`) and FRR; the
/// IPv6 next hop (MP_REACH) is the originator's address.
#[test]
fn reflector_ipv6() {
    const RR6: &str = "2001:db8::1";
    let mut w = World::new("rr-ipv6", RR6, 64);
    let members = [
        w.add_client(
            Spec::new(Kind::Bird2, "b2", "2001:db8::11", "192.0.2.11").routes(vec![
                ClientRoute::plain("2001:db8:11::/48"),
                ClientRoute::tagged("2001:db8:11:1::/64", (65000, 11), 210),
            ]),
        ),
        w.add_client(
            Spec::new(Kind::Bird16, "b16", "2001:db8::12", "192.0.2.12").routes(vec![
                ClientRoute::plain("2001:db8:12::/48"),
                ClientRoute::tagged("2001:db8:12:1::/64", (65000, 12), 220),
            ]),
        ),
        w.add_client(
            Spec::new(Kind::Frr, "frr", "2001:db8::13", "192.0.2.13").routes(vec![
                ClientRoute::plain("2001:db8:13::/48"),
                ClientRoute::tagged("2001:db8:13:1::/64", (65000, 13), 230),
            ]),
        ),
    ];
    let mut config = speaker_config(&format!("[{RR6}]:179"), "ipv6-unicast");
    for a in ["2001:db8::11", "2001:db8::12", "2001:db8::13"] {
        config.push_str(&peer_config(a, RR6));
    }
    w.start_daemon(&config);
    w.expect_established(&members, UP_WITHIN);
    w.expect_reflected(&members, &[], CONVERGED_WITHIN);
    w.expect_no_echo(&members);

    let gone = ["2001:db8:11::/48", "2001:db8:13:1::/64"];
    w.clients[members[0]]
        .withdraw(gone[0])
        .unwrap_or_else(|e| w.fail(&e));
    w.clients[members[2]]
        .withdraw(gone[1])
        .unwrap_or_else(|e| w.fail(&e));
    w.log(&format!("withdrawn at their originators: {gone:?}"));
    w.expect_reflected(&members, &gone, WITHDRAWN_WITHIN);
    w.log("done");
}

/// SIGHUP with a peer added, one removed and one unchanged: the added one comes up, the
/// removed one gets a Cease (Peer De-configured), the unchanged session is not touched;
/// a bad file on SIGHUP changes nothing.
#[test]
fn reflector_reload() {
    let mut w = World::new("rr-reload", RR_ID, 24);
    let (a, b, c) = ("192.0.2.11", "192.0.2.12", "192.0.2.13");
    let ia = w.add_client(
        Spec::new(Kind::Bird2, "a", a, a).routes(vec![ClientRoute::plain("198.51.100.0/26")]),
    );
    let ib = w.add_client(
        Spec::new(Kind::Bird2, "b", b, b).routes(vec![ClientRoute::tagged(
            "198.51.100.64/26",
            (65000, 12),
            150,
        )]),
    );
    // Not configured yet: its connections are refused until the reload.
    let ic = w.add_client(
        Spec::new(Kind::Bird2, "c", c, c).routes(vec![ClientRoute::plain("203.0.113.0/26")]),
    );
    w.start_daemon(&v4_clients_config(&[a, b]));
    w.expect_established(&[ia, ib], UP_WITHIN);
    w.expect_reflected(&[ia, ib], &[], CONVERGED_WITHIN);

    // The session's `Since`, to the millisecond: it changes whenever the session does.
    let bird_b = |w: &World| w.client(ib).session_since().unwrap_or_default();
    let b_since = bird_b(&w);
    if b_since.is_empty() {
        w.fail("cannot read b's `Since`");
    }
    let b_ups = w.daemon_lines(b, "session established").len();
    if b_ups != 1 {
        w.fail(&format!(
            "b established {b_ups} times before the reload, want 1"
        ));
    }

    // Reload: a removed, b unchanged, c added.
    let mark = w.daemon().log_mark();
    w.daemon_mut()
        .reload(&v4_clients_config(&[b, c]))
        .unwrap_or_else(|e| w.fail(&e));
    let line = w
        .daemon()
        .wait_log(mark, Duration::from_secs(5), |l| {
            l.contains("configuration reloaded") || l.contains("reload refused")
        })
        .unwrap_or_else(|e| w.fail(&format!("no reload logged after SIGHUP: {e}")));
    for want in ["added=1", "removed=1", "changed=0", "unchanged=1"] {
        if !line.contains(want) {
            w.fail(&format!("reload logged {line:?}, want {want}"));
        }
    }
    w.log(&format!("SIGHUP: {}", line.trim()));
    w.expect_established(&[ic], UP_WITHIN);
    // a got a Cease / Peer De-configured (BIRD logs it; its `Last error` may be replaced
    // by its refused reconnections afterwards).
    let deconfigured = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        // The whole log (BIRD logs `upstream: Received: Peer de-configured`).
        let in_log = w.clients[ia]
            .log_tail(100_000)
            .contains("Received: Peer de-configured");
        let last = w.clients[ia].details().unwrap_or_default();
        (in_log || last.contains("Received: Peer de-configured")).then_some(())
    });
    if deconfigured.is_none() {
        w.fail("a (removed) did not receive a Cease / Peer de-configured");
    }
    if w.clients[ia].state().as_deref() == Ok("Established") {
        w.fail("a (removed) is still Established");
    }
    w.log("a (removed) received Cease: Peer de-configured");
    // a's routes are withdrawn at b; b and c learn each other's.
    w.expect_reflected(&[ib, ic], &[], CONVERGED_WITHIN);
    let expect_b_untouched = |w: &World, when: &str| {
        let now = bird_b(w);
        if !same_since(&now, &b_since) {
            w.fail(&format!(
                "{when}: b (unchanged) was reset: BIRD's Since {b_since:?} -> {now:?}"
            ));
        }
        let ups = w.daemon_lines(b, "session established").len();
        let downs = w.daemon_lines(b, "session down");
        if ups != 1 || !downs.is_empty() {
            w.fail(&format!(
                "{when}: b (unchanged) established {ups} times, down: {downs:?}"
            ));
        }
    };
    expect_b_untouched(&w, "after the reload");
    w.log(&format!("b (unchanged) untouched: Since {b_since}"));

    // A file with an error: refused, everything stays as it is.
    let c_since = w.client(ic).session_since().unwrap_or_default();
    let mark = w.daemon().log_mark();
    let mut bad = v4_clients_config(&[b, c]);
    bad.push_str("hold_time = 2\n");
    w.daemon_mut().reload(&bad).unwrap_or_else(|e| w.fail(&e));
    let refused = w
        .daemon()
        .wait_log(mark, Duration::from_secs(5), |l| {
            l.contains("reload refused")
        })
        .unwrap_or_else(|e| w.fail(&format!("no `reload refused` after a bad SIGHUP: {e}")));
    if !refused.contains("rr.toml:") || !refused.contains("hold_time") {
        w.fail(&format!(
            "`reload refused` does not locate the error: {refused:?}"
        ));
    }
    w.log(&format!("bad SIGHUP: {}", refused.trim()));
    // More than a hold time: a session torn down by the bad file would show by now.
    thread::sleep(Duration::from_secs(u64::from(HOLD) + 1));
    if !w.daemon_mut().is_running() {
        w.fail("the daemon exited after a bad SIGHUP");
    }
    if let Some(l) = w
        .daemon()
        .log_since(mark)
        .iter()
        .find(|l| l.contains("configuration reloaded") || l.contains("session down"))
    {
        w.fail(&format!("a bad SIGHUP changed something: {l}"));
    }
    w.expect_established(&[ib, ic], Duration::from_secs(1));
    expect_b_untouched(&w, "after a bad SIGHUP");
    if !same_since(&w.client(ic).session_since().unwrap_or_default(), &c_since) {
        w.fail("after a bad SIGHUP: c was reset");
    }
    w.expect_reflected(&[ib, ic], &[], Duration::from_secs(2));
    w.log("done");
}

/// No static peers, a dynamic range: two BIRD 2 clients from unconfigured addresses come
/// up (we never connect out), learn each other's routes, and a client that goes away is
/// forgotten with its routes.
#[test]
fn reflector_dynamic_neighbors() {
    let mut w = World::new("rr-dynamic", RR_ID, 24);
    let (x, y) = ("192.0.2.21", "192.0.2.22");
    // They connect; we only listen.
    let ix = w.add_client(
        Spec::new(Kind::Bird2, "x", x, x)
            .connect_delay(1)
            .routes(vec![
                ClientRoute::plain("198.51.100.0/26"),
                ClientRoute::tagged("198.51.100.64/26", (65000, 21), 120),
            ]),
    );
    let iy = w.add_client(
        Spec::new(Kind::Bird2, "y", y, y)
            .connect_delay(1)
            .routes(vec![ClientRoute::plain("203.0.113.0/26")]),
    );
    let mut config = speaker_config(&format!("{RR_ID}:179"), "ipv4-unicast");
    config.push_str("\n[[dynamic_neighbors]]\nprefix = \"192.0.2.0/24\"\ngroup = \"clients\"\n");
    w.start_daemon(&config);
    w.expect_established(&[ix, iy], UP_WITHIN);
    for addr in [x, y] {
        if w.daemon_lines(addr, "dynamic=true").is_empty() {
            w.fail(&format!("no `peer added ... dynamic=true` for {addr}"));
        }
        let out = w.daemon_lines(addr, "connecting");
        if !out.is_empty() {
            w.fail(&format!(
                "we connected out to dynamic neighbour {addr}: {out:?}"
            ));
        }
    }
    w.expect_reflected(&[ix, iy], &[], CONVERGED_WITHIN);
    w.expect_no_echo(&[ix, iy]);

    // y goes away (BIRD stops: Cease): forgotten, its routes withdrawn at x.
    w.clients[iy].stop().unwrap_or_else(|e| w.fail(&e));
    w.log("y stopped");
    w.expect_reflected(&[ix], &["203.0.113.0/26"], WITHDRAWN_WITHIN);
    w.daemon()
        .wait_log(0, Duration::from_secs(5), |l| {
            l.contains("dynamic neighbour removed") && l.contains(y)
        })
        .unwrap_or_else(|e| w.fail(&format!("y not forgotten: {e}")));
    w.log("done");
}

/// A bad file: `speaker --config BAD` (and `speaker check`) exit non-zero with one line,
/// `rr-daemon: FILE:LINE:COL: KEY: message`. Needs no root (no listener: it never starts).
#[test]
fn bad_config_exits_nonzero() {
    let dir = WorkDir::new("bad-config").unwrap_or_else(|e| panic!("{e}"));
    let head = "[speaker]\nasn = 65000\nrouter_id = \"192.0.2.1\"\nlisten = []\n\n";
    let cases = [
        (
            "value.toml",
            format!("{head}[[peer]]\naddress = \"192.0.2.11\"\nasn = 65000\nhold_time = 2\n"),
            "9:13: peer[0].hold_time: ",
        ),
        (
            "key.toml",
            format!("{head}[[peer]]\naddress = \"192.0.2.11\"\nasn = 65000\nhold_tme = 20\n"),
            "9:1: peer[0].hold_tme: ",
        ),
        (
            "missing.toml",
            format!("{head}[[peer]]\naddress = \"192.0.2.11\"\n"),
            "6:1: peer[0].asn: ",
        ),
        (
            "syntax.toml",
            "[speaker]\nasn = 65000\nrouter_id = \"192.0.2.1\n".to_owned(),
            "3:",
        ),
    ];
    for (file, text, want) in &cases {
        let path = dir.path().join(file);
        std::fs::write(&path, text).expect("write");
        let p = path.to_string_lossy().into_owned();
        for args in [
            vec!["--config", p.as_str()],
            vec!["check", "--config", p.as_str()],
        ] {
            let (st, stdout, stderr) =
                run_capture(&exe().to_string_lossy(), &args, Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("{file}: {e}"));
            let lines: Vec<&str> = stderr.lines().collect();
            let prefix = format!("rr-daemon: {p}:{want}");
            let ok = !st.success()
                && stdout.is_empty()
                && lines.len() == 1
                && lines[0].starts_with(&prefix)
                && lines[0].len() > prefix.len();
            assert!(
                ok,
                "`speaker {}`: want a non-zero exit and one line starting with {prefix:?}; \
                 got {st}, stdout {stdout:?}, stderr {stderr:?}\nfile:\n{text}",
                args.join(" ")
            );
            // Syntax errors name the key `syntax`.
            if *file == "syntax.toml" {
                assert!(lines[0].contains(": syntax: "), "{}", lines[0]);
            }
        }
    }
}
